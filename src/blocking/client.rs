//! The blocking driver: one engine and one socket behind three locks.
//!
//! Lock order is reader → writer → engine. The reader lock is held by the one thread receiving
//! (it spans the read system call); the writer lock spans a write; the engine lock never spans a
//! system call. Outbound bytes leave the engine only under the writer lock, so frames and TLS
//! records reach the socket in the order the engine produced them, and a `send()` never waits
//! for a blocked `recv()`: it needs the writer and engine locks, which a reader holds only
//! briefly.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, TryLockError};
use std::time::{Duration, Instant};

use super::net::{connect_tcp, is_disconnect, shutdown, ReadTimeout};
use crate::error::{Error, Termination};
use crate::handshake::{generate_key, RequestOptions};
use crate::protocol::{Config, Event, Protocol, State};
use crate::tls::{client_config, TlsOptions};
use crate::url::{parse_url, WebSocketUrl};

/// Reads go to a stack buffer of this size until one fills it...
const SMALL_READ: usize = 4 * 1024;
/// ...then to a heap buffer that starts at this size...
const READ_MIN: usize = 64 * 1024;
/// ...and grows (x4 each time a read fills it) to this size under bulk traffic, where large
/// reads measured fastest (bench push-16k: 1 MiB reads 327k msg/s, 256 KiB 177k, 64 KiB 178k).
const READ_MAX: usize = 1024 * 1024;

/// Options of [`Client::connect`].
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// DNS + TCP + TLS + upgrade together; `None` for no limit.
    pub open_timeout: Option<Duration>,
    /// How long `close()` waits for the peer's close frame.
    pub close_timeout: Option<Duration>,
    /// Headers, subprotocols, origin and user agent of the upgrade request.
    pub request: RequestOptions,
    /// Largest incoming message; `None` for no limit.
    pub max_size: Option<usize>,
    /// TLS settings for `wss://`.
    pub tls: TlsOptions,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            open_timeout: Some(Duration::from_secs(10)),
            close_timeout: Some(Duration::from_secs(10)),
            request: RequestOptions::default(),
            max_size: Config::default().max_size,
            tls: TlsOptions::system(),
        }
    }
}

/// The receiving side's private state, behind the reader lock.
#[derive(Debug)]
pub struct Reader {
    /// Bytes per read once bulk traffic started; 0 while reads go to the stack buffer.
    read_size: usize,
    /// The read buffer under TLS (plain TCP reads straight into the engine's input buffer).
    buf: Vec<u8>,
    timeout: ReadTimeout,
}

/// What one attempt to take a message from the engine's buffer gave.
#[derive(Debug)]
pub enum Received<T> {
    /// A message, converted by the caller's closure.
    Message(T),
    /// The buffer holds no complete message: read more.
    NeedData,
    /// The connection is over.
    Closed(Termination),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic elsewhere; the data is still consistent for our purposes
    // (every critical section leaves the engine in a valid state between calls).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A connected WebSocket client over a blocking socket.
pub struct Client {
    stream: TcpStream,
    url: WebSocketUrl,
    /// Looked up on first use (most connections never ask).
    local_addr: OnceLock<SocketAddr>,
    remote_addr: SocketAddr,
    /// The socket was shut down (so `Drop` need not do it again).
    shut: AtomicBool,
    close_timeout: Option<Duration>,
    origin: Instant,
    reader: Mutex<Reader>,
    writer: Mutex<Vec<u8>>,
    engine: Mutex<Protocol>,
    /// Signalled when the engine terminates, for a `close()` that waits on another reader.
    terminated: Condvar,
}

impl Client {
    /// Opens a connection: DNS, TCP, TLS and the upgrade, all within `open_timeout`.
    pub fn connect(url: &str, options: &ConnectOptions) -> Result<Client, Error> {
        let deadline = options.open_timeout.map(|t| Instant::now() + t);
        let url = parse_url(url)?;
        let tls = if url.secure() {
            Some((
                client_config(&options.tls)?,
                options.tls.server_hostname.as_deref(),
            ))
        } else {
            None
        };
        let engine = Protocol::client(
            &url,
            generate_key()?,
            &options.request,
            Config {
                max_size: options.max_size,
            },
            tls,
        )?;
        let (stream, remote_addr) = connect_tcp(&url.host, url.port, deadline)?;
        let client = Client {
            local_addr: OnceLock::new(),
            remote_addr,
            shut: AtomicBool::new(false),
            stream,
            url,
            close_timeout: options.close_timeout,
            origin: Instant::now(),
            reader: Mutex::new(Reader {
                read_size: 0,
                buf: Vec::new(),
                timeout: ReadTimeout::default(),
            }),
            writer: Mutex::new(Vec::new()),
            engine: Mutex::new(engine),
            terminated: Condvar::new(),
        };
        client
            .handshake(deadline)
            .inspect_err(|_| client.shutdown())?;
        Ok(client)
    }

    fn handshake(&self, deadline: Option<Instant>) -> Result<(), Error> {
        self.flush()?;
        let mut reader = lock(&self.reader);
        loop {
            if lock(&self.engine).poll_handshake()? == State::Open {
                // The request is sent: free its buffer rather than keep it for the connection's
                // lifetime (most connections send small messages, if any).
                *lock(&self.writer) = Vec::new();
                return Ok(());
            }
            // read_some writes what the engine queued (TLS handshake records) as it goes.
            match self.read_some(&mut reader, deadline, "during the opening handshake") {
                Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => other?,
            }
        }
    }

    /// Seconds since the connection was made: the engine's clock.
    pub fn now(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }

    /// The URL connected to.
    pub fn url(&self) -> &WebSocketUrl {
        &self.url
    }

    /// The local socket address.
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        if let Some(addr) = self.local_addr.get() {
            return Ok(*addr);
        }
        let addr = self.stream.local_addr()?;
        Ok(*self.local_addr.get_or_init(|| addr))
    }

    /// Shuts the socket down once, waking any thread blocked on it.
    fn shutdown(&self) {
        if !self.shut.swap(true, Ordering::AcqRel) {
            shutdown(&self.stream);
        }
    }

    /// The peer's socket address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote_addr
    }

    /// The socket.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// The engine lock. Never hold it across a system call or while waiting for another lock.
    pub fn engine(&self) -> &Mutex<Protocol> {
        &self.engine
    }

    /// The reader lock: `Err(WouldBlock)` when another thread is receiving.
    pub fn try_reader(&self) -> Result<MutexGuard<'_, Reader>, Error> {
        match self.reader.try_lock() {
            Ok(guard) => Ok(guard),
            Err(TryLockError::Poisoned(e)) => Ok(e.into_inner()),
            Err(TryLockError::WouldBlock) => Err(Error::Concurrency(
                "cannot call recv() while another thread is already running recv()",
            )),
        }
    }

    /// Runs `op` on the engine and writes what it queued, under the writer lock.
    pub fn with_engine<T>(
        &self,
        op: impl FnOnce(&mut Protocol, f64) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut out = lock(&self.writer);
        let value = {
            let mut engine = lock(&self.engine);
            let value = op(&mut engine, self.now());
            engine.take_data_to_send(&mut out);
            value
        };
        self.write_out(&mut out)?;
        value
    }

    /// Writes whatever the engine has queued.
    pub fn flush(&self) -> Result<(), Error> {
        self.with_engine(|_, _| Ok(()))
    }

    fn write_out(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        if out.is_empty() {
            return Ok(());
        }
        let result = (&self.stream).write_all(out);
        out.clear();
        if out.capacity() > crate::buffer::KEEP_CAPACITY {
            *out = Vec::new();
        }
        match result {
            Ok(()) => Ok(()),
            Err(e) if is_disconnect(&e) => {
                let mut engine = lock(&self.engine);
                engine.abort();
                let info = engine.closed_info();
                drop(engine);
                self.terminated.notify_all();
                Err(Error::Closed(info))
            }
            Err(e) => Err(Error::Io(e)),
        }
    }

    /// Queues a text message and writes it.
    pub fn send_text(&self, text: &str) -> Result<(), Error> {
        self.with_engine(|e, _| e.send_text(text))
    }

    /// Queues a binary message and writes it.
    pub fn send_binary(&self, data: &[u8]) -> Result<(), Error> {
        self.with_engine(|e, _| e.send_binary(data))
    }

    /// Sends a ping; its pong updates the latency.
    pub fn ping(&self, data: &[u8]) -> Result<(), Error> {
        self.with_engine(|e, now| e.send_ping(data, now))
    }

    /// Takes the next message out of the engine's buffer, converting it with `convert` while
    /// the engine lock is held (the payload is borrowed from the engine).
    ///
    /// Pings, pongs and close frames are consumed on the way; when they queue a reply,
    /// `needs_flush` is set and the caller must [`Client::flush`] after releasing the engine.
    pub fn poll_message<T>(
        engine: &mut Protocol,
        needs_flush: &mut bool,
        mut convert: impl FnMut(bool, &[u8]) -> T,
    ) -> Received<T> {
        let received = loop {
            match engine.next_event() {
                Ok(Some(Event::Text(text))) => {
                    break Received::Message(convert(true, text.as_bytes()))
                }
                Ok(Some(Event::Binary(data))) => break Received::Message(convert(false, data)),
                Ok(Some(Event::Ping(_) | Event::Pong(_) | Event::Close { .. })) => continue,
                Ok(None) | Err(_) => match engine.termination() {
                    Some(t) => break Received::Closed(t.clone()),
                    None => break Received::NeedData,
                },
            }
        };
        *needs_flush |= engine.has_data_to_send();
        received
    }

    /// Reads once from the socket (waiting until `deadline` at most) and feeds the engine.
    pub fn read_some(
        &self,
        reader: &mut Reader,
        deadline: Option<Instant>,
        during: &'static str,
    ) -> Result<(), Error> {
        let Reader {
            read_size,
            buf,
            timeout,
        } = reader;
        let size = *read_size;
        // Until a read fills it, a small stack buffer serves, so an idle connection keeps no
        // read buffer at all. With bulk traffic, plain TCP is read straight into the engine's
        // input buffer (no copy from a read buffer); TLS reads into a buffer of its own.
        let taken = if size > 0 {
            lock(&self.engine).take_input()
        } else {
            None
        };
        let mut small = [0u8; SMALL_READ];
        let (full, fed, pending) = if let Some(mut input) = taken {
            let target = &mut input.free_space(size)[..size];
            let n = match self.read_or_eof(timeout, target, deadline, during) {
                Ok(n) => n,
                Err(e) => {
                    // The buffer holds what is not decoded yet: it goes back on every path.
                    lock(&self.engine).receive_into(input, 0, self.now());
                    return Err(e);
                }
            };
            let mut engine = lock(&self.engine);
            engine.receive_into(input, n, self.now());
            if n == 0 {
                engine.receive_eof();
            }
            (n == size, Ok(()), engine.has_data_to_send())
        } else {
            if size > 0 {
                buf.resize(size, 0);
            }
            let target: &mut [u8] = if size == 0 { &mut small } else { buf };
            let n = self.read_or_eof(timeout, target, deadline, during)?;
            let now = self.now();
            let mut engine = lock(&self.engine);
            let fed = if n == 0 {
                engine.receive_eof();
                Ok(())
            } else {
                engine.receive_data(&target[..n], now)
            };
            (n == target.len(), fed, engine.has_data_to_send())
        };
        if full && size < READ_MAX {
            *read_size = if size == 0 { READ_MIN } else { size * 4 }.min(READ_MAX);
        }
        if pending {
            self.flush()?;
        }
        fed
    }

    /// One read from the socket; a connection the peer dropped reads as end of stream (0).
    fn read_or_eof(
        &self,
        timeout: &mut ReadTimeout,
        target: &mut [u8],
        deadline: Option<Instant>,
        during: &'static str,
    ) -> Result<usize, Error> {
        match timeout.read(&self.stream, target, deadline, during) {
            Ok(n) => Ok(n),
            Err(Error::Io(e)) if is_disconnect(&e) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Called once the engine reports termination: writes any last frame, wakes a waiting
    /// `close()` and shuts the socket down.
    pub fn finish(&self) {
        let _ = self.flush();
        self.terminated.notify_all();
        self.shutdown();
    }

    /// Receives the next message as owned bytes (`true` for text): the plain-Rust API.
    pub fn recv(&self, timeout: Option<Duration>) -> Result<(bool, Vec<u8>), Error> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut reader = self.try_reader()?;
        loop {
            let mut needs_flush = false;
            let received = {
                let mut engine = lock(&self.engine);
                Self::poll_message(&mut engine, &mut needs_flush, |text, data| {
                    (text, data.to_vec())
                })
            };
            if needs_flush {
                self.flush()?;
            }
            match received {
                Received::Message(m) => return Ok(m),
                Received::Closed(t) => {
                    self.finish();
                    return Err(Error::Closed(t));
                }
                Received::NeedData => {
                    self.read_some(&mut reader, deadline, "waiting for a message")?
                }
            }
        }
    }

    /// The closing handshake: sends a close frame, waits up to `close_timeout` for the
    /// peer's, then shuts the socket down. Idempotent.
    pub fn close(&self, code: Option<u16>, reason: &str) -> Result<(), Error> {
        match self.with_engine(|e, _| e.send_close(code, reason)) {
            Ok(()) | Err(Error::Closed(_)) => {}
            Err(e) => return Err(e),
        }
        let deadline = self.close_timeout.map(|t| Instant::now() + t);
        match self.try_reader() {
            Ok(mut reader) => loop {
                let mut needs_flush = false;
                let received =
                    Self::poll_message(&mut lock(&self.engine), &mut needs_flush, |_, _| ());
                if needs_flush {
                    let _ = self.flush();
                }
                if let Received::Closed(_) = received {
                    break;
                }
                if let Received::Message(()) = received {
                    continue;
                }
                match self.read_some(&mut reader, deadline, "waiting for the peer's close frame") {
                    Ok(()) => {}
                    Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        lock(&self.engine).abort();
                        break;
                    }
                }
            },
            Err(_) => {
                // Another thread is in recv(): it will see the peer's close frame.
                let mut engine = lock(&self.engine);
                while engine.termination().is_none() {
                    let wait = match deadline {
                        None => Duration::from_secs(3600),
                        Some(d) => d.saturating_duration_since(Instant::now()),
                    };
                    if wait.is_zero() {
                        engine.abort();
                        break;
                    }
                    engine = self
                        .terminated
                        .wait_timeout(engine, wait)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
            }
        }
        self.finish();
        Ok(())
    }

    /// The engine's state.
    pub fn state(&self) -> State {
        lock(&self.engine).state()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.shutdown();
    }
}
