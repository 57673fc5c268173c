//! The blocking driver: one engine and one socket behind three locks, and one receive loop.
//!
//! Lock order is reader → writer → engine. The reader lock is held by the one thread receiving
//! (it spans the read system call); the writer lock spans a write; the engine lock never spans
//! a system call. Frames are queued in the engine under its lock and leave it only under the
//! writer lock, so frames and TLS records reach the socket in the order the engine produced
//! them, and `send()` never waits for a blocked `recv()`.
//!
//! Every wait has a deadline that is checked on every turn of the receive loop (a peer that
//! keeps sending cannot starve it), every write has one too (a peer that stops reading cannot
//! hold `recv()` or `close()` beyond theirs), and every wait runs the caller's signal check.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, TryLockError};
use std::time::{Duration, Instant};

use rustix::event::PollFlags;

use super::large::{self, Large, LargeSink, NoLarge};
use super::net::{self, expired, Peer, ReadTimeout, Signals, Stream};
use super::service::{self, Registration, Served, Visit};
use super::sync::{lock, try_lock, Blocking, Direct};
use crate::buffer::KEEP_CAPACITY;
use crate::error::{Error, Termination};
use crate::options::{Options, CLOSE_TIMEOUT};
use crate::protocol::{Event, Message, Protocol, State, TcpClose, Text, KEEPALIVE_TIMEOUT_REASON};

/// Reads go to a stack buffer of this size until one fills it...
const SMALL_READ: usize = 4 * 1024;
thread_local! {
    /// Small reads land here: one buffer per thread, shared by its connections.
    static SMALL_BUFFER: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0; SMALL_READ].into_boxed_slice());
}

/// ...then to a heap buffer that starts at this size...
const READ_MIN: usize = 64 * 1024;
/// ...and grows (x4 each time a read fills it) to this size under bulk traffic, where large
/// reads measured fastest (bench push-16k: 1 MiB reads 327k msg/s, 256 KiB 177k, 64 KiB 178k).
const READ_MAX: usize = 1024 * 1024;

/// A read that starts a frame (nothing undecoded is buffered) takes at most this much: should
/// the frame be large, the rest of its payload then goes straight into the message
/// (`blocking/large.rs`) instead of through the engine's buffer. Above a 64 KiB message and
/// its header, so that such a message still arrives in one read.
const FIRST_READ: usize = 128 * 1024;

/// The I/O thread reads at most this many times (16 KiB each) from one connection per visit,
/// then serves the others before it comes back: a peer that sends faster than the socket can
/// be drained (a ping flood) must not keep the thread from the other connections' keepalives.
const READ_AHEAD_BUDGET: usize = 16;

/// A message the I/O thread read ahead, waiting for `recv()`; or, while a message is
/// streamed, a piece of it with more to come.
#[derive(Debug)]
enum Parked {
    /// The engine's text, kept as its bytes (see [`Text`]).
    Text(Vec<u8>),
    Binary(Vec<u8>),
    TextPiece(Vec<u8>),
    BinaryPiece(Vec<u8>),
}

impl Parked {
    fn message(&self) -> Message<'_> {
        match self {
            Parked::Text(t) | Parked::TextPiece(t) => Message::Text(Text::checked(t)),
            Parked::Binary(b) | Parked::BinaryPiece(b) => Message::Binary(b),
        }
    }

    fn is_piece(&self) -> bool {
        matches!(self, Parked::TextPiece(_) | Parked::BinaryPiece(_))
    }
}

/// The receiving side's private state, behind the reader lock.
#[derive(Debug, Default)]
struct Reader {
    /// Messages the I/O thread read ahead (at most `max_queue`), delivered first.
    parked: VecDeque<Parked>,
    /// The I/O thread stopped reading ahead: `max_queue` messages were parked.
    paused: bool,
    /// A message is being received in pieces (`recv_piece`), not all of them taken yet.
    streaming: bool,
    /// Bytes per read once bulk traffic started; 0 while reads go to the stack buffer.
    read_size: usize,
    /// The read buffer under TLS (plain TCP reads straight into the engine's input buffer).
    buf: Vec<u8>,
    timeout: ReadTimeout,
}

/// Bytes taken from the engine and not yet all written, behind the writer lock.
#[derive(Debug, Default)]
struct Outbox {
    buf: Vec<u8>,
    written: usize,
}

/// What the receive loop waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Goal {
    /// The upgrade response.
    Upgrade,
    /// The next message.
    Message,
    /// The next piece of a streamed message.
    Piece,
    /// The end of the connection (messages are dropped).
    Close,
}

/// What the receive loop ended with. Small on purpose: it is moved on every message, so how
/// the connection ended is read from the engine, not carried here.
enum Outcome<T> {
    Upgraded,
    Message(T),
    /// A piece of a streamed message, more to come.
    Piece(T),
    Closed,
}

/// A connected WebSocket client over a blocking socket.
pub struct Client {
    /// The I/O thread's care of this connection (first field: it must go before the socket
    /// is closed, so that the thread never watches a descriptor number reused by another).
    registration: OnceLock<Registration>,
    stream: Stream,
    /// Looked up on first use (most connections never ask).
    local_addr: OnceLock<Peer>,
    remote_addr: Peer,
    /// The socket was shut down, or its TCP close handed to the I/O thread (so `Drop` leaves
    /// it alone).
    shut: AtomicBool,
    /// Bytes wait in the outbox because the peer does not read: the receive loop then also
    /// waits for room to write them.
    backlog: AtomicBool,
    close_timeout: Option<Duration>,
    origin: Instant,
    reader: Mutex<Reader>,
    writer: Mutex<Outbox>,
    engine: Mutex<Protocol>,
    /// Signalled when the engine terminates, for a `close()` that waits on another reader.
    terminated: Condvar,
    /// Messages the I/O thread may read ahead; `None` for no bound.
    max_queue: Option<usize>,
    /// Odd while the I/O thread holds (or is taking) the reader lock; it counts up on the way
    /// in and on the way out. A `recv()` or `close()` that finds the lock taken waits for it
    /// instead of reporting a second reader when the count is odd or moved since it looked:
    /// then the I/O thread was there, even if it has let go already.
    service_turns: AtomicU64,
    /// Callers waiting for the reader lock that the I/O thread holds (see [`Wanted`]).
    reader_wanted: AtomicU32,
    /// Threads in `flush_now` (writes that never wait), counted from taking the writer lock
    /// until after letting it go: `finish` waits for them (see `flush_last`).
    quick_writers: AtomicU32,
    /// `recv()` calls that returned (see `recvs`).
    recvs: AtomicU64,
}

/// A caller's claim on the reader lock while the I/O thread holds it: the thread's read-ahead
/// stops at its next read, and its visits leave the reader alone, until the claim is dropped.
/// Without it, a peer that keeps the socket full keeps the thread reading ahead, and the
/// caller waiting for the lock, with no deadline (std's mutex is not fair either: a thread
/// back for its next visit takes the lock before the waiter it just woke).
struct Wanted<'a>(&'a AtomicU32);

impl<'a> Wanted<'a> {
    fn raise(count: &'a AtomicU32) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Wanted(count)
    }
}

impl Drop for Wanted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Client {
    /// Runs the upgrade of `engine` over a connected socket (the proxy tunnel, if any, open),
    /// before `deadline`.
    pub fn handshake_over(
        stream: Stream,
        remote_addr: Peer,
        engine: Protocol,
        options: &Options,
        deadline: Option<Instant>,
        signals: Signals<'_>,
    ) -> Result<Client, Error> {
        let client = Client {
            registration: OnceLock::new(),
            stream,
            local_addr: OnceLock::new(),
            remote_addr,
            shut: AtomicBool::new(false),
            backlog: AtomicBool::new(false),
            close_timeout: options.close_timeout,
            origin: Instant::now(),
            reader: Mutex::new(Reader::default()),
            writer: Mutex::new(Outbox::default()),
            engine: Mutex::new(engine),
            terminated: Condvar::new(),
            max_queue: options.max_queue,
            service_turns: AtomicU64::new(0),
            reader_wanted: AtomicU32::new(0),
            quick_writers: AtomicU32::new(0),
            recvs: AtomicU64::new(0),
        };
        client
            .handshake(deadline, signals)
            .inspect_err(|_| client.shutdown())?;
        Ok(client)
    }

    fn handshake(&self, deadline: Option<Instant>, signals: Signals<'_>) -> Result<(), Error> {
        let during = "during the opening handshake";
        self.write_out(&mut lock(&self.writer), deadline, during, signals)
            .map_err(|e| match e {
                // No WebSocket connection exists yet to report as closed.
                Error::Closed(_) => Error::Io(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "connection closed before the upgrade request was sent",
                )),
                e => e,
            })?;
        let mut reader = lock(&self.reader);
        self.receive(
            &mut reader,
            Goal::Upgrade,
            deadline,
            during,
            signals,
            &Direct,
            |_| (),
            &mut NoLarge,
        )?;
        // The request is sent: free its buffer rather than keep it for the connection's
        // lifetime (most connections send small messages, if any).
        *lock(&self.writer) = Outbox::default();
        Ok(())
    }

    /// Seconds since the connection was made: the engine's clock.
    pub fn now(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }

    /// The local socket address.
    pub fn local_addr(&self) -> Result<Peer, Error> {
        if let Some(addr) = self.local_addr.get() {
            return Ok(addr.clone());
        }
        let addr = Peer::from_sockaddr(&self.stream.socket().local_addr()?);
        Ok(self.local_addr.get_or_init(|| addr).clone())
    }

    /// The peer's socket address (the proxy's, through a proxy).
    pub fn remote_addr(&self) -> &Peer {
        &self.remote_addr
    }

    /// The socket.
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// Reads the engine (state, headers, close code…) under its lock.
    pub fn inspect<R, B: Blocking>(&self, blocking: &B, f: impl FnOnce(&Protocol) -> R) -> R {
        f(&self.lock_engine(blocking))
    }

    /// Runs `f` on the engine under its lock, for what changes no protocol state (taking
    /// the notes its journal recorded for a log).
    pub fn inspect_mut<R, B: Blocking>(
        &self,
        blocking: &B,
        f: impl FnOnce(&mut Protocol) -> R,
    ) -> R {
        f(&mut self.lock_engine(blocking))
    }

    /// The engine lock, taken with `try_lock` first; when another thread holds it, it is
    /// waited for inside `blocking` (detached from the interpreter), so no thread ever blocks
    /// on a lock while attached.
    fn lock_engine<B: Blocking>(&self, blocking: &B) -> MutexGuard<'_, Protocol> {
        loop {
            match self.engine.try_lock() {
                Ok(guard) => return guard,
                Err(TryLockError::Poisoned(e)) => return e.into_inner(),
                Err(TryLockError::WouldBlock) => blocking.run(|| drop(lock(&self.engine))),
            }
        }
    }

    /// Shuts the socket down once, waking any thread blocked on it.
    fn shutdown(&self) {
        if !self.shut.swap(true, Ordering::AcqRel) {
            self.stream.shutdown();
        }
    }

    /// The transport failed or a deadline passed: the connection is over (1006 unless it
    /// already ended).
    fn abort(&self) -> Termination {
        let info = {
            let mut engine = lock(&self.engine);
            engine.abort();
            engine.closed_info()
        };
        self.terminated.notify_all();
        info
    }

    // ---- writing ---------------------------------------------------------------------------

    /// Writes the outbox and everything the engine queued until the engine is empty, waiting
    /// for room until `deadline`. A peer that is gone aborts the connection.
    fn write_out(
        &self,
        outbox: &mut Outbox,
        deadline: Option<Instant>,
        during: &'static str,
        signals: Signals<'_>,
    ) -> Result<(), Error> {
        let result = self.write_loop(outbox, Some((deadline, signals)));
        self.after_write(outbox, result, during)
    }

    /// Writes what the socket takes now, without waiting; what it does not take stays in the
    /// outbox (and the engine holds at most one more pong meanwhile).
    fn write_now(&self, outbox: &mut Outbox) -> Result<(), Error> {
        let result = self.write_loop(outbox, None);
        self.after_write(outbox, result, "writing")
    }

    fn write_loop(
        &self,
        outbox: &mut Outbox,
        wait: Option<(Option<Instant>, Signals<'_>)>,
    ) -> Result<(), Error> {
        loop {
            if outbox.written >= outbox.buf.len() {
                outbox.written = 0;
                outbox.buf.clear();
                let mut engine = lock(&self.engine);
                if !engine.has_data_to_send() {
                    return Ok(());
                }
                engine.take_data_to_send(&mut outbox.buf);
            }
            match wait {
                Some((deadline, signals)) => {
                    self.stream
                        .write_all(&outbox.buf, &mut outbox.written, deadline, signals)?;
                }
                None => {
                    let rest = outbox.buf.get(outbox.written..).unwrap_or_default();
                    match self.stream.write_now(rest)? {
                        0 => {
                            self.backlog.store(true, Ordering::Release);
                            return Ok(());
                        }
                        n => outbox.written += n,
                    }
                }
            }
        }
    }

    fn after_write(
        &self,
        outbox: &mut Outbox,
        result: Result<(), Error>,
        during: &'static str,
    ) -> Result<(), Error> {
        if outbox.written >= outbox.buf.len() {
            self.backlog.store(false, Ordering::Release);
            if outbox.buf.capacity() > KEEP_CAPACITY {
                *outbox = Outbox::default();
            }
        }
        match result {
            Err(Error::Io(e)) if net::is_disconnect(&e) => Err(Error::Closed(self.abort())),
            Err(Error::Timeout { .. }) => Err(Error::Timeout { during }),
            other => other,
        }
    }

    /// Writes whatever the engine queued, if no other thread is writing (that thread writes
    /// it then), without waiting for a peer that does not read. Errors are left to the receive
    /// loop, which sees how the connection ended.
    fn flush_now(&self) {
        let outbox = match self.writer.try_lock() {
            Ok(outbox) => outbox,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        self.quick_writers.fetch_add(1, Ordering::AcqRel);
        let mut outbox = outbox;
        let _ = self.write_now(&mut outbox);
        drop(outbox);
        self.quick_writers.fetch_sub(1, Ordering::AcqRel);
    }

    /// `flush_now` for the last frames before the socket is shut down. When a thread that
    /// writes without waiting (the I/O thread) holds the writer, it may have looked at the
    /// engine before the close frame was queued and then shutting down would lose the frame:
    /// wait for it to let go (it never blocks), then write. A thread that blocks on a peer
    /// that does not read is not waited for.
    fn flush_last(&self) {
        loop {
            let mut outbox = match self.writer.try_lock() {
                Ok(outbox) => outbox,
                Err(TryLockError::Poisoned(e)) => e.into_inner(),
                Err(TryLockError::WouldBlock) if self.quick_writers.load(Ordering::Acquire) > 0 => {
                    std::thread::yield_now();
                    continue;
                }
                Err(TryLockError::WouldBlock) => return,
            };
            let _ = self.write_now(&mut outbox);
            return;
        }
    }

    /// Queues a frame with `queue` (run attached: it may read a Python buffer) and writes it.
    ///
    /// `timeout` bounds the wait for a peer that does not read; when it passes, a frame may be
    /// half-written, so the connection is failed and `TimeoutError` raised.
    pub fn send<B: Blocking>(
        &self,
        blocking: &B,
        signals: Signals<'_>,
        timeout: Option<Duration>,
        queue: impl FnOnce(&mut Protocol, f64) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.send_inner(blocking, signals, timeout, true, queue)
    }

    /// Queues and writes a control frame (ping, close): it may go between the fragments of
    /// a message (RFC 6455 §5.4), so it never waits for one to end.
    pub fn send_control<B: Blocking>(
        &self,
        blocking: &B,
        signals: Signals<'_>,
        timeout: Option<Duration>,
        queue: impl FnOnce(&mut Protocol, f64) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.send_inner(blocking, signals, timeout, false, queue)
    }

    /// Queues and writes one fragment of a message sent in pieces (`first` for its first,
    /// which waits for another thread's message in pieces to end, like `send`).
    pub fn send_fragment<B: Blocking>(
        &self,
        blocking: &B,
        signals: Signals<'_>,
        timeout: Option<Duration>,
        first: bool,
        queue: impl FnOnce(&mut Protocol, f64) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.send_inner(blocking, signals, timeout, first, queue)
    }

    fn send_inner<B: Blocking>(
        &self,
        blocking: &B,
        signals: Signals<'_>,
        timeout: Option<Duration>,
        new_message: bool,
        queue: impl FnOnce(&mut Protocol, f64) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let deadline = timeout.map(|t| Instant::now() + t);
        {
            let mut engine = self.lock_engine(blocking);
            while new_message && engine.sending_fragments() {
                // Another thread sends a message in fragments: ours goes after it (RFC 6455
                // §5.4: no interleaving), as `send()` waits for a write in progress.
                drop(engine);
                blocking.run(|| self.wait_fragments_sent(deadline, signals))?;
                engine = self.lock_engine(blocking);
            }
            let now = self.now();
            let was_fragmenting = engine.sending_fragments();
            queue(&mut engine, now)?;
            if was_fragmenting && !engine.sending_fragments() {
                self.terminated.notify_all();
            }
        }
        let during = "waiting for the peer to read";
        let result = blocking.run(|| {
            let mut outbox = match deadline {
                None => lock(&self.writer),
                Some(_) => loop {
                    match self.writer.try_lock() {
                        Ok(outbox) => break outbox,
                        Err(TryLockError::Poisoned(e)) => break e.into_inner(),
                        Err(TryLockError::WouldBlock) if expired(deadline) => {
                            return Err(Error::Timeout { during })
                        }
                        Err(TryLockError::WouldBlock) => {
                            std::thread::sleep(Duration::from_millis(1));
                            signals.check()?;
                        }
                    }
                },
            };
            self.write_out(&mut outbox, deadline, during, signals)
        });
        if let Err(Error::Timeout { .. }) = result {
            // Part of a frame may be on the wire: the stream cannot go on.
            self.abort();
            self.shutdown();
        }
        result
    }

    // ---- receiving -------------------------------------------------------------------------

    /// The reader lock. When another thread holds it: if the connection is closing, `close()`
    /// has it and will end the connection, so wait for it; otherwise two threads receive at
    /// once, which is refused.
    #[inline(always)]
    fn lock_reader<B: Blocking>(&self, blocking: &B) -> Result<MutexGuard<'_, Reader>, Error> {
        let mut wanted = None;
        loop {
            let turn = self.service_turns.load(Ordering::Acquire);
            match self.reader.try_lock() {
                Ok(guard) => return Ok(guard),
                Err(TryLockError::Poisoned(e)) => return Ok(e.into_inner()),
                Err(TryLockError::WouldBlock) if self.service_was_there(turn) => {
                    // The I/O thread reads ahead, without blocking; claimed, it lets go after
                    // its current read (held until the lock is ours, see `Wanted`).
                    wanted.get_or_insert_with(|| Wanted::raise(&self.reader_wanted));
                    blocking.run(|| drop(lock(&self.reader)));
                }
                Err(TryLockError::WouldBlock) => {
                    if self.lock_engine(blocking).state() == State::Open {
                        return Err(Error::Concurrency(
                            "cannot call recv() while another thread is already running recv()",
                        ));
                    }
                    blocking.run(|| drop(lock(&self.reader)));
                }
            }
        }
    }

    /// Receives the next message, converted by `convert` while the engine lock is held (the
    /// payload is borrowed from the engine), or received into a target of `large` when it is
    /// one large frame (see `blocking/large.rs`). Steps that may block run inside `blocking`.
    #[inline(always)]
    pub fn recv<T, B: Blocking>(
        &self,
        timeout: Option<Duration>,
        signals: Signals<'_>,
        blocking: &B,
        mut convert: impl FnMut(Message<'_>) -> T,
        large: &mut impl LargeSink<T>,
    ) -> Result<T, Error> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut reader = self.lock_reader(blocking)?;
        if reader.streaming {
            return Err(Error::Concurrency(
                "cannot call recv() while a recv_streaming() iteration is under way",
            ));
        }
        self.recvs.fetch_add(1, Ordering::Relaxed);
        if let Some(parked) = reader.parked.pop_front() {
            let message = convert(parked.message());
            self.took_parked(&mut reader);
            return Ok(message);
        }
        let during = "waiting for a message";
        match self.receive(
            &mut reader,
            Goal::Message,
            deadline,
            during,
            signals,
            blocking,
            convert,
            large,
        )? {
            Outcome::Message(m) => Ok(m),
            Outcome::Closed => Err(self.ended(blocking)),
            Outcome::Upgraded | Outcome::Piece(_) => {
                Err(Error::InvalidArgument("not connected".into()))
            }
        }
    }

    /// The receive loop saw the connection end: finishes it and tells how it ended.
    #[cold]
    fn ended<B: Blocking>(&self, blocking: &B) -> Error {
        let termination = self.lock_engine(blocking).finished().cloned();
        blocking.run(|| self.finish());
        Error::Closed(termination.unwrap_or_else(|| Termination {
            code: 1006,
            reason: String::new(),
            cause: None,
        }))
    }

    /// A parked message was taken: when the I/O thread had paused, it may read ahead again.
    fn took_parked(&self, reader: &mut Reader) {
        if reader.paused && reader.parked.is_empty() {
            reader.paused = false;
            if let Some(registration) = self.registration.get() {
                registration.nudge();
            }
        }
    }

    /// Receives the next piece of a message handed out in pieces as its frames arrive
    /// (`recv_streaming`): `(piece, true)` for its last piece. The first call starts the next
    /// message; a message read ahead whole is its own one piece. Text pieces end on
    /// character boundaries.
    pub fn recv_piece<T, B: Blocking>(
        &self,
        timeout: Option<Duration>,
        signals: Signals<'_>,
        blocking: &B,
        mut convert: impl FnMut(Message<'_>) -> T,
    ) -> Result<(T, bool), Error> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut reader = self.lock_reader(blocking)?;
        self.recvs.fetch_add(1, Ordering::Relaxed);
        if !reader.streaming {
            if let Some(parked) = reader.parked.pop_front() {
                let message = convert(parked.message());
                self.took_parked(&mut reader);
                return Ok((message, true));
            }
            self.lock_engine(blocking).stream_message();
            reader.streaming = true;
        }
        if let Some(parked) = reader.parked.pop_front() {
            let last = !parked.is_piece();
            let message = convert(parked.message());
            reader.streaming = !last;
            self.took_parked(&mut reader);
            return Ok((message, last));
        }
        let during = "waiting for a message";
        let outcome = self.receive(
            &mut reader,
            Goal::Piece,
            deadline,
            during,
            signals,
            blocking,
            convert,
            &mut NoLarge,
        );
        match outcome {
            Ok(Outcome::Piece(m)) => Ok((m, false)),
            Ok(Outcome::Message(m)) => {
                reader.streaming = false;
                Ok((m, true))
            }
            Ok(Outcome::Closed) => {
                reader.streaming = false;
                Err(self.ended(blocking))
            }
            Ok(Outcome::Upgraded) => Err(Error::InvalidArgument("not connected".into())),
            Err(e) => Err(e),
        }
    }

    /// Ends a `recv_piece` iteration before its last piece (the application stopped reading
    /// the message): the rest of that message is dropped, read ahead or still to come.
    pub fn end_pieces<B: Blocking>(&self, blocking: &B) {
        let mut reader = match self.reader.try_lock() {
            Ok(reader) => reader,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => {
                let _wanted = Wanted::raise(&self.reader_wanted);
                blocking.run(|| drop(lock(&self.reader)));
                return self.end_pieces(blocking);
            }
        };
        if !std::mem::take(&mut reader.streaming) {
            return;
        }
        while let Some(parked) = reader.parked.pop_front() {
            if !parked.is_piece() {
                // Its last piece was read ahead: the engine hands out whole messages again.
                self.took_parked(&mut reader);
                return;
            }
        }
        self.lock_engine(blocking).stop_streaming();
        self.took_parked(&mut reader);
    }

    /// The one receive loop (the upgrade, messages, the closing handshake). Each turn decodes
    /// what is buffered, writes any reply without waiting, checks the deadline, then waits for
    /// bytes. Complete messages are delivered before how the connection ended is reported.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn receive<T, B: Blocking>(
        &self,
        reader: &mut Reader,
        goal: Goal,
        deadline: Option<Instant>,
        during: &'static str,
        signals: Signals<'_>,
        blocking: &B,
        mut convert: impl FnMut(Message<'_>) -> T,
        large: &mut impl LargeSink<T>,
    ) -> Result<Outcome<T>, Error> {
        let mut turn = 0u32;
        loop {
            let (reply, large_frame) = {
                let mut engine = self.lock_engine(blocking);
                let outcome = match goal {
                    Goal::Upgrade => match engine.poll_handshake()? {
                        State::Connecting => None,
                        _ => Some(Outcome::Upgraded),
                    },
                    Goal::Message => Self::poll(&mut engine, &mut convert, false),
                    Goal::Piece => Self::poll_piece(&mut engine, &mut convert),
                    Goal::Close => Self::poll(&mut engine, &mut convert, true),
                };
                let reply = engine.has_data_to_send();
                if let Some(outcome) = outcome {
                    drop(engine);
                    if reply {
                        blocking.run(|| self.flush_now());
                    }
                    return Ok(outcome);
                }
                // Once per read, not per message: a large frame's payload may go straight
                // into the message (blocking/large.rs).
                let large_frame = match goal {
                    Goal::Message => engine.large_frame(),
                    _ => None,
                };
                (reply, large_frame)
            };
            // RFC 6455 says nothing of deadlines; this one holds however fast bytes arrive.
            if turn > 0 && expired(deadline) {
                return Err(Error::Timeout { during });
            }
            turn += 1;
            if let Some(frame) = large_frame {
                if reply {
                    blocking.run(|| self.flush_now());
                }
                let reads = large::Reads {
                    timeout: &mut reader.timeout,
                    buf: &mut reader.buf,
                    size: reader.read_size.clamp(READ_MIN, READ_MAX),
                };
                match large::receive_large(
                    self, reads, &frame, large, deadline, during, signals, blocking,
                )? {
                    Large::Message(message) => return Ok(Outcome::Message(message)),
                    Large::Cut => continue,
                    Large::Declined => {}
                }
            }
            blocking.run(|| {
                if reply {
                    self.flush_now();
                }
                self.read_some(reader, deadline, during, signals)
            })?;
        }
    }

    /// Decodes buffered bytes up to the next message (or past every message, when `drop`)
    /// or the end of the connection.
    #[inline(always)]
    fn poll<T>(
        engine: &mut Protocol,
        convert: &mut impl FnMut(Message<'_>) -> T,
        drop: bool,
    ) -> Option<Outcome<T>> {
        loop {
            match engine.next_event() {
                Ok(Some(Event::Message(_) | Event::Fragment(_))) if drop => engine.trim(),
                Ok(Some(Event::Message(message))) => {
                    let converted = convert(message);
                    engine.trim();
                    return Some(Outcome::Message(converted));
                }
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return engine.finished().map(|_| Outcome::Closed),
            }
        }
    }

    /// `poll` for the pieces of a streamed message (kept apart: `poll` is the message path).
    #[inline(never)]
    fn poll_piece<T>(
        engine: &mut Protocol,
        convert: &mut impl FnMut(Message<'_>) -> T,
    ) -> Option<Outcome<T>> {
        loop {
            let (message, last) = match engine.next_event() {
                Ok(Some(Event::Message(message))) => (message, true),
                Ok(Some(Event::Fragment(message))) => (message, false),
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return engine.finished().map(|_| Outcome::Closed),
            };
            let converted = convert(message);
            engine.trim();
            return Some(if last {
                Outcome::Message(converted)
            } else {
                Outcome::Piece(converted)
            });
        }
    }

    /// Reads once from the socket (waiting until `deadline` at most) and feeds the engine.
    fn read_some(
        &self,
        reader: &mut Reader,
        deadline: Option<Instant>,
        during: &'static str,
        signals: Signals<'_>,
    ) -> Result<(), Error> {
        if self.backlog.load(Ordering::Acquire) {
            // Replies wait for a peer that does not read: wait for either direction.
            let ready = net::wait(
                &self.stream,
                PollFlags::IN | PollFlags::OUT,
                deadline,
                during,
                signals,
            )?;
            if ready.contains(PollFlags::OUT) {
                self.flush_now();
            }
            if !ready.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) {
                return Ok(());
            }
        }
        let Reader {
            read_size,
            buf,
            timeout,
            ..
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
        let full = if let Some(mut input) = taken {
            let want = if input.is_drained() {
                size.min(FIRST_READ)
            } else {
                size
            };
            let target = &mut input.free_space(want)[..want];
            let n = match self.stream.read(timeout, target, deadline, during, signals) {
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
            n == want
        } else {
            let mut read = |target: &mut [u8]| -> Result<bool, Error> {
                let n = self
                    .stream
                    .read(timeout, target, deadline, during, signals)?;
                let now = self.now();
                let mut engine = lock(&self.engine);
                if n == 0 {
                    engine.receive_eof();
                } else {
                    // An error here is a failed TLS handshake, reported by the upgrade.
                    engine.receive_data(&target[..n], now)?;
                }
                Ok(n == target.len())
            };
            if size > 0 {
                buf.resize(size, 0);
                let want = if lock(&self.engine).buffered_len() == 0 {
                    size.min(FIRST_READ)
                } else {
                    size
                };
                read(buf.get_mut(..want).unwrap_or_default())?
            } else {
                // The thread's small buffer, zeroed once per thread rather than once per read
                // (zeroing a stack buffer cost half of a 64-byte ping-pong's instructions). A
                // signal handler that receives on another connection of this thread while
                // this read waits finds it taken and uses the stack.
                SMALL_BUFFER.with(|cell| match cell.try_borrow_mut() {
                    Ok(mut small) => read(&mut small[..]),
                    Err(_) => read(&mut [0u8; SMALL_READ]),
                })?
            }
        };
        if full && size < READ_MAX {
            *read_size = if size == 0 { READ_MIN } else { size * 4 }.min(READ_MAX);
        }
        Ok(())
    }

    /// Called once the connection is over: writes any last frame without waiting, wakes a
    /// waiting `close()` and closes TCP.
    fn finish(&self) {
        self.flush_last();
        self.terminated.notify_all();
        self.close_tcp();
    }

    /// Closes TCP once, as the engine says (`Protocol::tcp_close`, RFC 6455 §7.1.1): shut down
    /// at once, or handed to the I/O thread, which waits there for the peer's end of stream
    /// (after shutting the write side down, when we failed the connection) on a duplicate of
    /// the socket. Nobody waits for that here: `recv()` reports the failure at once, and the
    /// connection may be dropped meanwhile.
    fn close_tcp(&self) {
        if self.shut.swap(true, Ordering::AcqRel) {
            return;
        }
        let how = lock(&self.engine).tcp_close();
        if let Some(TcpClose::AfterPeer { shut_write }) = how {
            if self.linger(shut_write).is_ok() {
                return;
            }
        }
        self.stream.shutdown();
    }

    fn linger(&self, shut_write: bool) -> std::io::Result<()> {
        // What the socket did not take of the last frames (the peer does not read) goes with
        // it. A sender blocked on such a peer holds the writer: it has them, and the write
        // side shut down wakes it (the close frame is lost then, as it is behind that write).
        let mut pending = Vec::new();
        if let Some(mut outbox) = try_lock(&self.writer) {
            pending.extend_from_slice(outbox.buf.get(outbox.written..).unwrap_or_default());
            *outbox = Outbox::default();
            let mut engine = lock(&self.engine);
            if engine.has_data_to_send() {
                engine.drain_data_to_send(|rest| pending.extend_from_slice(rest));
            }
        }
        // Bounded even without a close_timeout: the connection may be gone already.
        let wait = self
            .close_timeout
            .unwrap_or(Duration::from_secs_f64(CLOSE_TIMEOUT));
        let socket = self.stream.socket().try_clone()?;
        if let Some(registration) = self.registration.get() {
            // The I/O thread watches the duplicate from now on.
            registration.retire();
        }
        service::linger(socket, pending, shut_write, Instant::now() + wait)
    }

    /// The closing handshake: sends a close frame, waits up to `close_timeout` for the
    /// peer's, then shuts the socket down. Idempotent.
    pub fn close<B: Blocking>(
        &self,
        code: Option<u16>,
        reason: &str,
        signals: Signals<'_>,
        blocking: &B,
    ) -> Result<(), Error> {
        self.lock_engine(blocking).send_close(code, reason)?;
        let deadline = self.close_timeout.map(|t| Instant::now() + t);
        let during = "waiting for the peer's close frame";
        let result = blocking.run(|| {
            // If a sender holds the writer lock, it writes our close frame after its own.
            if let Ok(mut outbox) = self.writer.try_lock() {
                self.write_out(&mut outbox, deadline, during, signals)?;
            }
            Ok(())
        });
        let result = result.and_then(|()| match self.reader_for_close(blocking) {
            Some(mut reader) => {
                self.receive(
                    &mut reader,
                    Goal::Close,
                    deadline,
                    during,
                    signals,
                    blocking,
                    |_| (),
                    &mut NoLarge,
                )?;
                self.await_peer_end(&mut reader, deadline, signals, blocking)
            }
            // Another thread is in recv(): it will see the peer's close frame (and the TCP
            // close is left to the I/O thread).
            None => blocking.run(|| self.wait_terminated(deadline, signals)),
        });
        blocking.run(|| {
            if result.is_err() {
                // A deadline passed (or a signal handler raised): TCP closes now.
                self.abort();
                self.shutdown();
            }
            self.finish();
        });
        match result {
            Err(Error::Interrupted) => Err(Error::Interrupted),
            _ => Ok(()),
        }
    }

    /// `close()` after the closing handshake: RFC 6455 §7.1.1, the client "SHOULD wait for a
    /// TCP Close from the server"; reads (what arrives is discarded) until the server's end of
    /// stream or `deadline`, so that TCP is closed when `close()` returns. After a failure,
    /// the write side is shut down first (see `Protocol::tcp_close`).
    fn await_peer_end<B: Blocking>(
        &self,
        reader: &mut Reader,
        deadline: Option<Instant>,
        signals: Signals<'_>,
        blocking: &B,
    ) -> Result<(), Error> {
        let mut shut = false;
        loop {
            if self.shut.load(Ordering::Acquire) {
                // The I/O thread has it in hand (see `close_tcp`).
                return Ok(());
            }
            let Some(TcpClose::AfterPeer { shut_write }) = self.lock_engine(blocking).tcp_close()
            else {
                return Ok(());
            };
            blocking.run(|| {
                if shut_write && !shut {
                    shut = true;
                    self.flush_last();
                    let _ = self.stream.socket().shutdown(std::net::Shutdown::Write);
                }
                self.read_some(
                    reader,
                    deadline,
                    "waiting for the server to close TCP",
                    signals,
                )
            })?;
        }
    }

    /// A caller waits for the reader lock (see `Wanted`).
    fn reader_wanted(&self) -> bool {
        self.reader_wanted.load(Ordering::Acquire) > 0
    }

    /// The I/O thread holds the reader lock, or took it since `turn` was read.
    #[cold]
    fn service_was_there(&self, turn: u64) -> bool {
        turn % 2 == 1 || self.service_turns.load(Ordering::Acquire) != turn
    }

    /// The reader lock for `close()`, with the messages read ahead dropped (after `close()`,
    /// `recv()` reports the close); `None` while a `recv()` in another thread holds it.
    fn reader_for_close<B: Blocking>(&self, blocking: &B) -> Option<MutexGuard<'_, Reader>> {
        let mut wanted = None;
        let mut reader = loop {
            let turn = self.service_turns.load(Ordering::Acquire);
            match self.reader.try_lock() {
                Ok(reader) => break reader,
                Err(TryLockError::Poisoned(e)) => break e.into_inner(),
                Err(TryLockError::WouldBlock) if self.service_was_there(turn) => {
                    wanted.get_or_insert_with(|| Wanted::raise(&self.reader_wanted));
                    blocking.run(|| drop(lock(&self.reader)));
                }
                Err(TryLockError::WouldBlock) => return None,
            }
        };
        reader.parked.clear();
        reader.paused = false;
        reader.streaming = false;
        Some(reader)
    }

    // ---- the I/O thread ----------------------------------------------------------------------

    /// Hands the connection to the process's I/O thread (see `service`): call it once the
    /// client is shared. Without it, the connection is served only inside `recv()`/`close()`.
    pub fn register(self: &Arc<Self>) -> std::io::Result<()> {
        let registration = service::register(self)?;
        let _ = self.registration.set(registration);
        Ok(())
    }

    /// When the engine's next deadline (keepalive) falls, on the monotonic clock.
    pub fn next_due(&self) -> Option<Instant> {
        lock(&self.engine).next_deadline().map(|d| self.instant(d))
    }

    /// A time on the engine's clock (seconds since `origin`) as an `Instant`.
    fn instant(&self, seconds: f64) -> Instant {
        self.origin + Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(Duration::MAX)
    }

    /// Reads what the socket holds and parks the messages it completes, up to `max_queue`;
    /// stops early when a caller wants the reader (see `Wanted`), and after
    /// [`READ_AHEAD_BUDGET`] reads: true then, as the socket may hold more.
    fn read_ahead(&self, reader: &mut Reader) -> bool {
        if reader.paused {
            return false;
        }
        let mut buf = [0u8; 16 * 1024];
        for _ in 0..READ_AHEAD_BUDGET {
            if self.park(reader) || self.reader_wanted() {
                return false;
            }
            match self.stream.read_now(&mut buf) {
                Ok(None) => return false,
                Ok(Some(0)) => {
                    lock(&self.engine).receive_eof();
                    self.park(reader);
                    return false;
                }
                Ok(Some(n)) => {
                    let now = self.now();
                    // A TLS failure here ends the connection; recv() reports it.
                    let _ = lock(&self.engine).receive_data(buf.get(..n).unwrap_or_default(), now);
                }
                Err(_) => {
                    lock(&self.engine).abort();
                    return false;
                }
            }
        }
        // What the last read completed is parked now; the rest waits for the next visit.
        self.park(reader);
        true
    }

    /// Decodes what the engine holds, parking messages; true once `max_queue` are parked.
    ///
    /// A violation is held back, not applied: the application may still answer the messages
    /// before it (as when `recv()` decodes them itself); its own `recv()` applies it.
    fn park(&self, reader: &mut Reader) -> bool {
        let mut engine = lock(&self.engine);
        engine.set_defer_failure(true);
        let full = self.park_with(&mut engine, reader);
        engine.set_defer_failure(false);
        full
    }

    fn park_with(&self, engine: &mut Protocol, reader: &mut Reader) -> bool {
        loop {
            if self.max_queue.is_some_and(|max| reader.parked.len() >= max) {
                reader.paused = true;
                return true;
            }
            match engine.next_event() {
                Ok(Some(Event::Message(message))) => {
                    reader.parked.push_back(match message {
                        Message::Text(t) => Parked::Text(t.as_bytes().to_vec()),
                        Message::Binary(b) => Parked::Binary(b.to_vec()),
                    });
                    engine.trim();
                }
                Ok(Some(Event::Fragment(message))) => {
                    reader.parked.push_back(match message {
                        Message::Text(t) => Parked::TextPiece(t.as_bytes().to_vec()),
                        Message::Binary(b) => Parked::BinaryPiece(b.to_vec()),
                    });
                    engine.trim();
                }
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return false,
            }
        }
    }

    /// Waits until no message is being sent in fragments (or `deadline`).
    fn wait_fragments_sent(
        &self,
        deadline: Option<Instant>,
        signals: Signals<'_>,
    ) -> Result<(), Error> {
        let during = "waiting for a message sent in fragments to end";
        let mut engine = lock(&self.engine);
        while engine.sending_fragments() {
            let left = net::remaining(deadline, during)?;
            let wait = left.map_or(Duration::from_millis(100), |l| {
                l.min(Duration::from_millis(100))
            });
            engine = self
                .terminated
                .wait_timeout(engine, wait)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
            if engine.sending_fragments() {
                drop(engine);
                signals.check()?;
                engine = lock(&self.engine);
            }
        }
        Ok(())
    }

    fn wait_terminated(
        &self,
        deadline: Option<Instant>,
        signals: Signals<'_>,
    ) -> Result<(), Error> {
        let mut engine = lock(&self.engine);
        while engine.termination().is_none() {
            let left = net::remaining(deadline, "waiting for the peer's close frame")?;
            let wait = left
                .map(|l| l.min(Duration::from_millis(100)))
                .unwrap_or(Duration::from_millis(100));
            engine = self
                .terminated
                .wait_timeout(engine, wait)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
            if engine.termination().is_none() {
                drop(engine);
                signals.check()?;
                engine = lock(&self.engine);
            }
        }
        Ok(())
    }
}

/// The large path's view of a connection (see `large`).
impl large::Wire for Client {
    fn stream(&self) -> &Stream {
        &self.stream
    }

    fn engine(&self) -> &Mutex<Protocol> {
        &self.engine
    }

    fn now(&self) -> f64 {
        Client::now(self)
    }
}

/// The I/O thread's side of a connection (see `service`).
impl Served for Client {
    fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// How many `recv()` calls returned so far: the I/O thread's sign that the application
    /// is receiving (then it stays away from the socket).
    fn recvs(&self) -> u64 {
        self.recvs.load(Ordering::Relaxed)
    }

    /// The I/O thread's visit: reads ahead (when `read`, or when a deadline is due: read
    /// before judging) if nobody receives, runs the keepalive, writes the replies. Never
    /// blocks.
    fn serve(&self, read: bool) -> Visit {
        let due_now = self.next_due().is_some_and(|d| d <= Instant::now());
        let (mut busy, mut paused, mut more) = (false, false, false);
        if self.reader_wanted() {
            // A caller waits for the reader: it reads the socket itself.
            busy = true;
        } else if read || due_now {
            self.service_turns.fetch_add(1, Ordering::AcqRel);
            let reader = try_lock(&self.reader);
            busy = reader.is_none();
            if let Some(mut reader) = reader {
                // A pong in the socket is fed before the deadline runs.
                more = self.read_ahead(&mut reader);
                paused = reader.paused;
            }
            self.service_turns.fetch_add(1, Ordering::AcqRel);
        }
        let (failed, ended, next) = {
            let mut engine = lock(&self.engine);
            let now = self.now();
            // While max_queue messages wait for the application, the socket is not read:
            // the pong may wait there behind messages, so the keepalive does not judge.
            if !paused && engine.next_deadline().is_some_and(|d| d <= now) {
                let _ = engine.handle_deadline(now);
            }
            let termination = engine.termination();
            // The keepalive failed, or the connection dropped: nothing more will come.
            let failed = termination.is_some_and(|t| {
                t.code == 1006 || t.code == 1011 && t.reason == KEEPALIVE_TIMEOUT_REASON
            });
            (failed, termination.is_some(), engine.next_deadline())
        };
        self.flush_now();
        // Whoever holds the reader (a recv() or close() in progress) ends the connection
        // itself; else it ends here, so that TCP is closed without waiting for the
        // application's next call (the peer's close was read and answered here, or the
        // keepalive failed).
        let held = ended && {
            self.service_turns.fetch_add(1, Ordering::AcqRel);
            let held = try_lock(&self.reader).is_none();
            self.service_turns.fetch_add(1, Ordering::AcqRel);
            held
        };
        if held {
            self.terminated.notify_all();
            if failed {
                // Failed here (keepalive, or the peer vanished) while the holder may be
                // blocked reading the socket: wake it.
                self.shutdown();
            }
        } else if ended {
            self.finish();
        }
        Visit {
            // Paused: nothing to do until recv() takes the parked messages (it nudges then).
            due: next.filter(|_| !ended && !paused).map(|d| self.instant(d)),
            // Held: looked at again later, in case the holder leaves without ending it.
            busy: busy || held,
            ended: ended && !held,
            more: more && !ended && !paused,
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Out of the I/O thread's care before the socket closes (see `registration`).
        drop(self.registration.take());
        self.shutdown();
    }
}
