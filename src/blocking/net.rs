//! Blocking sockets under deadlines: name resolution and connection, reads and writes that
//! wait at most until a deadline, and waits that let the caller's signal handlers run.
//!
//! Reads block in `read` with the socket's receive timeout set to what is left (one system call
//! per read, as fast as a plain blocking read). Writes never block in the kernel: they send
//! with `MSG_DONTWAIT` and wait for room with `poll`, so every write has a deadline and a
//! writer blocked on a peer that stopped reading wakes when the socket is shut down.

use std::cell::Cell;
use std::io;
use std::mem::offset_of;
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV4, SocketAddrV6, TcpStream,
};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::net::RecvFlags;
use socket2::{Domain, Protocol as IpProtocol, Socket, Type};

use crate::buffer::Filling;
use crate::error::Error;

/// How often a wait on the main thread stops to run the caller's signal check: a signal sent to
/// the process may be delivered to another thread, which leaves this thread's system call
/// uninterrupted.
const SIGNAL_SLICE: Duration = Duration::from_millis(100);

/// The caller's signal check, run when a wait is interrupted (`EINTR`) and, on the thread that
/// receives signals, every `SIGNAL_SLICE`. It returns `Err(Error::Interrupted)` to abandon the
/// wait (a signal handler raised).
#[derive(Clone, Copy)]
pub struct Signals<'a> {
    check: Option<&'a (dyn Fn() -> Result<(), Error> + Sync)>,
    /// The check runs only on the process's main thread. Which thread this is gets decided
    /// when a wait needs to know, so that a call that does not wait pays nothing for it.
    main_only: bool,
}

impl<'a> Signals<'a> {
    /// No signal handling: interrupted waits are retried.
    pub const NONE: Signals<'static> = Signals {
        check: None,
        main_only: false,
    };

    /// Runs `check` on interruption and every `SIGNAL_SLICE` of waiting.
    pub fn new(check: &'a (dyn Fn() -> Result<(), Error> + Sync)) -> Self {
        Signals {
            check: Some(check),
            main_only: false,
        }
    }

    /// [`Signals::new`] on the process's main thread (the one Python runs signal handlers
    /// on), [`Signals::NONE`] on any other.
    pub fn on_main_thread(check: &'a (dyn Fn() -> Result<(), Error> + Sync)) -> Self {
        Signals {
            check: Some(check),
            main_only: true,
        }
    }

    /// The check, if it applies on this thread.
    #[inline]
    fn active(&self) -> Option<&'a (dyn Fn() -> Result<(), Error> + Sync)> {
        match self.check {
            Some(check) if !self.main_only || is_main_thread() => Some(check),
            _ => None,
        }
    }

    /// Runs the check.
    pub fn check(&self) -> Result<(), Error> {
        match self.active() {
            Some(check) => check(),
            None => Ok(()),
        }
    }

    /// How long one wait may last given what is `left` until the deadline.
    fn slice(&self, left: Option<Duration>) -> Option<Duration> {
        match (self.active(), left) {
            (None, left) => left,
            (Some(_), None) => Some(SIGNAL_SLICE),
            (Some(_), Some(left)) => Some(left.min(SIGNAL_SLICE)),
        }
    }
}

/// The [`current_thread`] identity of the thread that runs the interpreter's signal handlers,
/// or 0 until it is known: told by [`set_main_thread`] or [`set_main_thread_id`], else found by
/// a call on that thread (see [`find_main_thread`]).
static MAIN_THREAD: AtomicUsize = AtomicUsize::new(0);

/// The kernel thread id of that thread, when it was named while unknown to [`current_thread`]
/// (the module imported on another thread); 0: the thread whose id is the process id.
static MAIN_TID: AtomicI32 = AtomicI32::new(0);

/// The next identity [`current_thread`] hands out (0 is never one).
static NEXT_THREAD: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// This thread's identity, 0 until its first [`current_thread`] call.
    static THREAD: Cell<usize> = const { Cell::new(0) };
}

/// The calling thread's identity: no other thread of the process has it, and it is never 0.
/// (Each thread takes the next number once; a `usize` count does not run out.) A forked child
/// keeps the forking thread's identity, still unique since no other thread is copied.
#[inline]
pub fn current_thread() -> usize {
    THREAD.with(|id| match id.get() {
        0 => {
            let new = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
            id.set(new);
            new
        }
        known => known,
    })
}

/// Names the calling thread as the main one (the Python module does at import on the thread
/// `threading.main_thread()` names, and in a child after `os.fork()`, where the forking thread
/// becomes the main one), so that no thread has to ask the kernel on each wait.
pub fn set_main_thread() {
    MAIN_THREAD.store(current_thread(), Ordering::Relaxed);
}

/// Names the main thread by its kernel thread id (`threading.main_thread().native_id`), for an
/// import on another thread: the main thread recognises itself on its first wait.
pub fn set_main_thread_id(tid: i32) {
    MAIN_TID.store(tid, Ordering::Relaxed);
    MAIN_THREAD.store(0, Ordering::Relaxed);
}

/// True on the process's main thread: once that is known, one comparison (this runs on every
/// wait of every call).
fn is_main_thread() -> bool {
    let me = current_thread();
    match MAIN_THREAD.load(Ordering::Relaxed) {
        0 => find_main_thread(me),
        main => main == me,
    }
}

/// Until the main thread is known: the calling thread is the main one when its kernel thread
/// id is the one named, or else the process id. (rustix makes the `gettid` system call itself:
/// glibc's wrapper is from 2.30, newer than the manylinux2014 wheels' glibc 2.17.)
#[cold]
fn find_main_thread(me: usize) -> bool {
    let main = match MAIN_TID.load(Ordering::Relaxed) {
        0 => rustix::process::getpid().as_raw_nonzero().get(),
        tid => tid,
    };
    let found = rustix::thread::gettid().as_raw_nonzero().get() == main;
    if found {
        MAIN_THREAD.store(me, Ordering::Relaxed);
    }
    found
}

/// Time left until `deadline` (`None`: no deadline), or a timeout error naming `during`.
pub fn remaining(
    deadline: Option<Instant>,
    during: &'static str,
) -> Result<Option<Duration>, Error> {
    match deadline {
        None => Ok(None),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                Err(Error::Timeout { during })
            } else {
                Ok(Some(left))
            }
        }
    }
}

/// True once `deadline` has passed.
pub fn expired(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// Resolves `host:port`. IP literals skip the resolver; names are resolved on a helper thread
/// so that the deadline holds, and signals are seen, even when the system resolver hangs.
pub fn resolve(
    host: &str,
    port: u16,
    deadline: Option<Instant>,
    signals: Signals<'_>,
) -> Result<Vec<SocketAddr>, Error> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = mpsc::channel();
    let name = host.to_string();
    std::thread::Builder::new()
        .name("sigil-ws-resolver".into())
        .spawn(move || {
            let _ = tx.send(getaddrinfo(&name, port));
        })?;
    let during = "resolving the host name";
    let addrs = loop {
        let wait = signals
            .slice(remaining(deadline, during)?)
            .unwrap_or(Duration::from_secs(3600));
        match rx.recv_timeout(wait) {
            Ok(result) => break result?,
            Err(mpsc::RecvTimeoutError::Timeout) => signals.check()?,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(dns_error(
                    host,
                    libc::EAI_FAIL,
                    "the resolver thread failed".into(),
                ))
            }
        }
    };
    if addrs.is_empty() {
        return Err(dns_error(
            host,
            libc::EAI_NONAME,
            "no addresses found".into(),
        ));
    }
    Ok(addrs)
}

fn dns_error(host: &str, code: i32, message: String) -> Error {
    Error::Dns {
        host: host.to_string(),
        code,
        message,
    }
}

/// The system resolver for a TCP connection to `host:port`, keeping its error code: a failure
/// is `Error::Dns` with the `EAI_*` code and `gai_strerror` text (as `socket.getaddrinfo`
/// raises `gaierror(code, strerror)`), and `EAI_SYSTEM` is the `errno` behind it, an
/// `Error::Io` (as the standard library raises `OSError` for it). `ToSocketAddrs` would lose
/// the code in an `io::Error` message.
fn getaddrinfo(host: &str, port: u16) -> Result<Vec<SocketAddr>, Error> {
    let Ok(c_host) = std::ffi::CString::new(host) else {
        return Err(dns_error(
            host,
            libc::EAI_NONAME,
            "host name contains a NUL byte".into(),
        ));
    };
    let hints = libc::addrinfo {
        ai_flags: 0,
        ai_family: libc::AF_UNSPEC,
        ai_socktype: libc::SOCK_STREAM,
        ai_protocol: 0,
        ai_addrlen: 0,
        ai_addr: std::ptr::null_mut(),
        ai_canonname: std::ptr::null_mut(),
        ai_next: std::ptr::null_mut(),
    };
    let mut list: *mut libc::addrinfo = std::ptr::null_mut();
    // No service: the port is set on each address below (no services database lookup).
    // SAFETY: `c_host` is a NUL-terminated string and `hints` an initialised addrinfo, both alive
    // for the whole call; the service may be null since the node is not; `list` is a valid
    // place for the call to store the list's head in.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::getaddrinfo(c_host.as_ptr(), std::ptr::null(), &hints, &mut list) };
    if rc != 0 {
        if rc == libc::EAI_SYSTEM {
            // Read errno at once, on the thread that called getaddrinfo.
            return Err(Error::Io(io::Error::last_os_error()));
        }
        return Err(dns_error(host, rc, gai_message(rc)));
    }
    let mut addrs = Vec::new();
    let mut node = list.cast_const();
    // SAFETY: `node` is null (the loop ends) or the head returned by the successful call above,
    // or an `ai_next` link of that list: an `addrinfo` that stays allocated until
    // freeaddrinfo below. The reference lives for one iteration, which reads it only.
    #[allow(unsafe_code)]
    while let Some(info) = unsafe { node.as_ref() } {
        let len = usize::try_from(info.ai_addrlen).unwrap_or(0);
        let bytes: &[u8] = if info.ai_addr.is_null() {
            &[]
        } else {
            // SAFETY: `info` is an entry of the list above, and getaddrinfo(3) points a non-null
            // `ai_addr` at a socket address of `ai_addrlen` bytes allocated with the entry:
            // alive until freeaddrinfo, after the loop. Only read; `u8` needs no alignment.
            #[allow(unsafe_code)]
            unsafe {
                std::slice::from_raw_parts(info.ai_addr.cast::<u8>().cast_const(), len)
            }
        };
        if let Some(addr) = socket_addr(info.ai_family, bytes, port) {
            addrs.push(addr);
        }
        node = info.ai_next;
    }
    // SAFETY: `list` is the head getaddrinfo returned on success (non-null then), freed once
    // here; the loop above, which alone read the list, has ended.
    #[allow(unsafe_code)]
    unsafe {
        libc::freeaddrinfo(list)
    };
    Ok(addrs)
}

/// The text of a resolver error code, as `socket.gaierror` shows it.
fn gai_message(code: i32) -> String {
    // SAFETY: gai_strerror takes any code and returns a pointer to a static, NUL-terminated
    // string (an "Unknown error" text for codes it does not know), never null in glibc or musl;
    // it is copied out at once.
    #[allow(unsafe_code)]
    let text = unsafe { std::ffi::CStr::from_ptr(libc::gai_strerror(code)) };
    text.to_string_lossy().into_owned()
}

/// The IPv4 or IPv6 address in `bytes` (a `sockaddr_in` or `sockaddr_in6` of `family`) with
/// `port`; `None` for other families or too few bytes.
fn socket_addr(family: i32, bytes: &[u8], port: u16) -> Option<SocketAddr> {
    // The fields are read at their offsets in the C structs, in the byte order they are stored.
    let field = |offset: usize, size: usize| bytes.get(offset..offset + size);
    match family {
        libc::AF_INET => {
            let addr = field(offset_of!(libc::sockaddr_in, sin_addr), 4)?;
            let ip = Ipv4Addr::from(<[u8; 4]>::try_from(addr).ok()?);
            Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
        }
        libc::AF_INET6 => {
            let u32_at = |offset| Some(u32::from_ne_bytes(field(offset, 4)?.try_into().ok()?));
            let addr = field(offset_of!(libc::sockaddr_in6, sin6_addr), 16)?;
            let ip = Ipv6Addr::from(<[u8; 16]>::try_from(addr).ok()?);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                port,
                u32_at(offset_of!(libc::sockaddr_in6, sin6_flowinfo))?,
                u32_at(offset_of!(libc::sockaddr_in6, sin6_scope_id))?,
            )))
        }
        _ => None,
    }
}

/// Connects to `host`, before `deadline`, racing its addresses with Happy Eyeballs
/// ([`connect_addrs`]). Sets TCP_NODELAY.
///
/// Returns the stream and the address it connected to.
pub fn connect_tcp(
    host: &str,
    port: u16,
    deadline: Option<Instant>,
    signals: Signals<'_>,
) -> Result<(TcpStream, SocketAddr), Error> {
    let addrs = resolve(host, port, deadline, signals)?;
    connect_addrs(&addrs, deadline, signals)
}

/// RFC 8305 §5: "A simple implementation can have a fixed delay for how long to wait before
/// starting the next connection attempt. [...] The recommended value for a default delay is
/// 250 milliseconds."
pub const CONNECTION_ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// The order of connection attempts (RFC 8305 §4): the families alternate, IPv6 first, each
/// family in the resolver's order.
pub fn attempt_order(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let (v6, v4): (Vec<SocketAddr>, Vec<SocketAddr>) = addrs.iter().partition(|a| a.is_ipv6());
    let mut order = Vec::with_capacity(addrs.len());
    let (mut v6, mut v4) = (v6.into_iter(), v4.into_iter());
    loop {
        match (v6.next(), v4.next()) {
            (None, None) => return order,
            (a, b) => order.extend(a.into_iter().chain(b)),
        }
    }
}

/// Connects to the first of `addrs` that accepts, before `deadline`, with Happy Eyeballs
/// (RFC 8305 §5): attempts start in [`attempt_order`], the next one
/// [`CONNECTION_ATTEMPT_DELAY`] after the previous (at once when the previous one failed),
/// earlier ones keep running, and the first to connect wins; the others are closed. A dead
/// IPv6 route so costs 250 ms, not the whole timeout. Sets TCP_NODELAY.
pub fn connect_addrs(
    addrs: &[SocketAddr],
    deadline: Option<Instant>,
    signals: Signals<'_>,
) -> Result<(TcpStream, SocketAddr), Error> {
    let order = attempt_order(addrs);
    let mut queue = order.iter().copied();
    let mut running: Vec<(Socket, SocketAddr)> = Vec::new();
    let mut last_error: Option<io::Error> = None;
    let mut next_start = Instant::now();
    let mut more = true;
    loop {
        if more && (running.is_empty() || Instant::now() >= next_start) {
            match queue.next() {
                Some(addr) => {
                    match start_connect(addr) {
                        Ok((socket, true)) => return finish_connect(socket, addr),
                        Ok((socket, false)) => {
                            running.push((socket, addr));
                            next_start = Instant::now() + CONNECTION_ATTEMPT_DELAY;
                        }
                        // Refused at once (no route, no such family): on to the next.
                        Err(e) => last_error = Some(e),
                    }
                    continue;
                }
                None => more = false,
            }
        }
        if running.is_empty() {
            return Err(Error::Io(
                last_error.unwrap_or_else(|| io::Error::other("no address to connect to")),
            ));
        }
        let during = "connecting";
        let left = remaining(deadline, during)?;
        let until_next = more.then(|| next_start.saturating_duration_since(Instant::now()));
        let wait_for = match (left, until_next) {
            (Some(l), Some(n)) => Some(l.min(n)),
            (l, n) => l.or(n),
        };
        let ready = poll_writable(&running, signals.slice(wait_for))?;
        if ready.is_empty() {
            // A slice ended, the next attempt is due, or a signal arrived.
            signals.check()?;
            continue;
        }
        // Index order is start order: among attempts ready together the earliest wins.
        let mut failed = Vec::new();
        for i in ready {
            let Some((socket, _)) = running.get(i) else {
                continue;
            };
            match socket.take_error() {
                Ok(None) => {
                    let (socket, addr) = running.swap_remove(i);
                    return finish_connect(socket, addr);
                }
                Ok(Some(e)) | Err(e) => {
                    last_error = Some(e);
                    failed.push(i);
                }
            }
        }
        failed.sort_unstable();
        for i in failed.into_iter().rev() {
            running.remove(i);
        }
        // RFC 8305 §5: a failed attempt starts the next one without waiting for the delay.
        next_start = Instant::now();
    }
}

/// Starts a non-blocking connection; `true` when it completed at once.
fn start_connect(addr: SocketAddr) -> io::Result<(Socket, bool)> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(IpProtocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => Ok((socket, true)),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok((socket, false)),
        Err(e) => Err(e),
    }
}

fn finish_connect(socket: Socket, addr: SocketAddr) -> Result<(TcpStream, SocketAddr), Error> {
    socket.set_nonblocking(false)?;
    socket.set_tcp_nodelay(true)?;
    Ok((socket.into(), addr))
}

/// Waits up to `timeout` (`None`: forever) for any of the connecting sockets to become
/// writable (connected or failed); returns their indexes, in order.
fn poll_writable(
    running: &[(Socket, SocketAddr)],
    timeout: Option<Duration>,
) -> Result<Vec<usize>, Error> {
    let mut fds: Vec<PollFd<'_>> = running
        .iter()
        .map(|(s, _)| PollFd::new(s, PollFlags::OUT))
        .collect();
    match poll_until(&mut fds, timeout) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Vec::new()),
        Err(e) => return Err(Error::Io(e)),
    }
    Ok(fds
        .iter()
        .enumerate()
        .filter(|(_, fd)| !fd.revents().is_empty())
        .map(|(i, _)| i)
        .collect())
}

/// `poll(2)` for up to `timeout` (`None`: forever); the number of ready descriptors. The
/// kernel rounds the timeout up, never down, so a wait does not end early and spin.
fn poll_until(fds: &mut [PollFd<'_>], timeout: Option<Duration>) -> io::Result<usize> {
    // A timeout too long for a timespec is forever.
    let timeout = timeout.and_then(|d| Timespec::try_from(d).ok());
    Ok(rustix::event::poll(fds, timeout.as_ref())?)
}

/// Waits until the socket is ready for `events` (`IN`, `OUT`) or the deadline passes;
/// returns the events that are ready (errors and hang-ups count as ready: the next read or
/// write reports them).
pub fn wait(
    socket: &impl AsFd,
    events: PollFlags,
    deadline: Option<Instant>,
    during: &'static str,
    signals: Signals<'_>,
) -> Result<PollFlags, Error> {
    loop {
        let left = remaining(deadline, during)?;
        let mut fd = [PollFd::new(socket, events)];
        match poll_until(&mut fd, signals.slice(left)) {
            Ok(0) => {}
            Ok(_) => return Ok(fd[0].revents()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Io(e)),
        }
        // Interrupted, or a slice ended: let the caller's handlers run.
        signals.check()?;
    }
}

/// Who the socket is connected to: an IP address and port, or a Unix socket path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A TCP peer.
    Ip(SocketAddr),
    /// A Unix domain socket (the path, empty when unnamed).
    Unix(String),
}

impl Peer {
    /// `(host, port)` as Python shows addresses: a Unix socket's path with port 0.
    pub fn host_port(&self) -> (String, u16) {
        match self {
            Peer::Ip(a) => (a.ip().to_string(), a.port()),
            Peer::Unix(path) => (path.clone(), 0),
        }
    }

    /// The address of a socket name (`getsockname` / `getpeername`).
    pub fn from_sockaddr(addr: &socket2::SockAddr) -> Peer {
        match addr.as_socket() {
            Some(a) => Peer::Ip(a),
            None => Peer::Unix(
                addr.as_pathname()
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
        }
    }
}

impl From<SocketAddr> for Peer {
    fn from(addr: SocketAddr) -> Peer {
        Peer::Ip(addr)
    }
}

/// Connects to the Unix domain socket at `path` before `deadline`.
pub fn connect_unix(
    path: &std::path::Path,
    deadline: Option<Instant>,
    signals: Signals<'_>,
) -> Result<Socket, Error> {
    let addr = socket2::SockAddr::unix(path)?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    match socket.connect(&addr) {
        Ok(()) => {}
        Err(e)
            if e.raw_os_error() == Some(libc::EINPROGRESS)
                || e.kind() == io::ErrorKind::WouldBlock =>
        {
            wait(&socket, PollFlags::OUT, deadline, "connecting", signals)?;
            if let Some(e) = socket.take_error()? {
                return Err(Error::Io(e));
            }
        }
        Err(e) => return Err(Error::Io(e)),
    }
    socket.set_nonblocking(false)?;
    Ok(socket)
}

/// A connected socket whose reads and writes honour deadlines: TCP, or a Unix domain socket.
#[derive(Debug)]
pub struct Stream {
    tcp: Socket,
}

/// The read side's socket timeout, set only when it changes (one system call saved per read).
#[derive(Debug, Default)]
pub struct ReadTimeout {
    current: Option<Duration>,
}

impl Stream {
    /// Wraps a connected, blocking stream socket (TCP or Unix).
    pub fn new(socket: impl Into<Socket>) -> Stream {
        Stream { tcp: socket.into() }
    }

    /// The socket.
    pub fn socket(&self) -> &Socket {
        &self.tcp
    }

    /// Gives the socket back.
    pub fn into_socket(self) -> Socket {
        self.tcp
    }

    /// Reads into `buf`, waiting until `deadline` at most.
    ///
    /// `Ok(0)` is end of stream, also for a peer that reset the connection. Once the deadline
    /// has passed, what is already there is still taken (so that `recv(timeout=0)` polls).
    pub fn read(
        &self,
        timeout: &mut ReadTimeout,
        buf: &mut [u8],
        deadline: Option<Instant>,
        during: &'static str,
        signals: Signals<'_>,
    ) -> Result<usize, Error> {
        self.read_with(timeout, deadline, during, signals, || {
            rustix::net::recv(&self.tcp, &mut *buf, RecvFlags::empty()).map(|(n, _)| n)
        })
    }

    /// [`Stream::read`] into memory that need not be initialised (a large payload's final
    /// object, see `blocking/large.rs`), appended to what `memory` holds.
    pub fn read_into(
        &self,
        timeout: &mut ReadTimeout,
        memory: &mut Filling<'_>,
        deadline: Option<Instant>,
        during: &'static str,
        signals: Signals<'_>,
    ) -> Result<usize, Error> {
        self.read_with(timeout, deadline, during, signals, || {
            memory.fill_with(|free| {
                rustix::net::recv(&self.tcp, free, RecvFlags::empty()).map(|((init, _), _)| init)
            })
        })
    }

    /// One `recv` by `recv` under the read timeout, retried until the deadline.
    fn read_with(
        &self,
        timeout: &mut ReadTimeout,
        deadline: Option<Instant>,
        during: &'static str,
        signals: Signals<'_>,
        mut recv: impl FnMut() -> rustix::io::Result<usize>,
    ) -> Result<usize, Error> {
        loop {
            let left = deadline.map(|d| {
                d.saturating_duration_since(Instant::now())
                    .max(Duration::from_micros(1))
            });
            let want = signals.slice(left);
            if want != timeout.current {
                self.tcp.set_read_timeout(want)?;
                timeout.current = want;
            }
            match recv().map_err(io::Error::from) {
                Ok(n) => return Ok(n),
                Err(e) if is_disconnect(&e) => return Ok(0),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    if expired(deadline) {
                        return Err(Error::Timeout { during });
                    }
                    signals.check()?;
                }
                Err(e) => return Err(Error::Io(e)),
            }
        }
    }

    /// Reads what the socket holds now without waiting: `Ok(None)` when it holds nothing,
    /// `Ok(Some(0))` at end of stream (also for a peer that reset the connection).
    pub fn read_now(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            match rustix::net::recv(&self.tcp, &mut *buf, RecvFlags::DONTWAIT)
                .map_err(io::Error::from)
            {
                Ok((n, _)) => return Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_disconnect(&e) => return Ok(Some(0)),
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes what the socket takes now without waiting; `Ok(0)` when it takes nothing.
    pub fn write_now(&self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match self
                .tcp
                .send_with_flags(buf, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
            {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes all of `buf`, waiting for room until `deadline` at most. On a timeout, part of
    /// `buf` may have been written: `written` counts it.
    pub fn write_all(
        &self,
        buf: &[u8],
        written: &mut usize,
        deadline: Option<Instant>,
        signals: Signals<'_>,
    ) -> Result<(), Error> {
        while let Some(rest) = buf.get(*written..).filter(|r| !r.is_empty()) {
            match self.write_now(rest)? {
                0 => {
                    wait(
                        &self.tcp,
                        PollFlags::OUT,
                        deadline,
                        "waiting for the peer to read",
                        signals,
                    )?;
                }
                n => *written += n,
            }
        }
        Ok(())
    }

    /// Shuts both directions down, waking any thread blocked on the socket. Errors (the peer
    /// may have gone already) are irrelevant at this point.
    pub fn shutdown(&self) {
        let _ = self.tcp.shutdown(Shutdown::Both);
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.tcp.as_fd()
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.tcp.as_raw_fd()
    }
}

/// True for errors that mean the peer is gone rather than that something is misconfigured.
pub fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::NotConnected
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    #[test]
    fn connects_and_sets_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let deadline = Some(Instant::now() + Duration::from_secs(5));
        let (stream, addr) = connect_tcp("127.0.0.1", port, deadline, Signals::NONE).unwrap();
        assert!(stream.nodelay().unwrap());
        assert_eq!(addr, stream.peer_addr().unwrap());
        let stream = connect_tcp("localhost", port, deadline, Signals::NONE);
        // localhost may resolve to ::1 first; some address must accept.
        assert!(stream.is_ok(), "{stream:?}");
    }

    /// A listener whose accept queue is full: the kernel drops further SYNs, so a connection
    /// attempt to it hangs (no answer, no reset), as to an address behind a dead route.
    fn blackhole(ip: &str) -> (Socket, TcpStream, SocketAddr) {
        let addr: SocketAddr = format!("{ip}:0").parse().unwrap();
        let listener = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
        listener.bind(&addr.into()).unwrap();
        listener.listen(0).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        // Backlog 0 admits one connection; it fills the queue.
        let filler = TcpStream::connect(addr).unwrap();
        (listener, filler, addr)
    }

    mod rfc8305 {
        use super::*;

        #[test]
        fn families_alternate_ipv6_first() {
            let a = |s: &str| s.parse::<SocketAddr>().unwrap();
            let addrs = [
                a("10.0.0.1:1"),
                a("10.0.0.2:1"),
                a("[::2]:1"),
                a("[::3]:1"),
                a("[::4]:1"),
            ];
            assert_eq!(
                attempt_order(&addrs),
                [
                    a("[::2]:1"),
                    a("10.0.0.1:1"),
                    a("[::3]:1"),
                    a("10.0.0.2:1"),
                    a("[::4]:1")
                ]
            );
        }

        #[test]
        fn a_dead_ipv6_address_costs_the_attempt_delay_not_the_timeout() {
            let (_listener, _filler, dead) = blackhole("[::1]");
            let live = TcpListener::bind("127.0.0.1:0").unwrap();
            let live_addr = live.local_addr().unwrap();
            // The dead address really hangs: alone, it takes the whole deadline.
            let start = Instant::now();
            let e = connect_addrs(
                &[dead],
                Some(start + Duration::from_millis(600)),
                Signals::NONE,
            )
            .unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::Timeout {
                        during: "connecting"
                    }
                ),
                "{e:?}"
            );
            assert!(start.elapsed() >= Duration::from_millis(550));
            // With a working IPv4 address beside it, IPv4 starts after 250 ms and wins.
            let start = Instant::now();
            let (stream, addr) = connect_addrs(
                &[live_addr, dead],
                Some(start + Duration::from_secs(5)),
                Signals::NONE,
            )
            .unwrap();
            let took = start.elapsed();
            assert_eq!(addr, live_addr);
            assert_eq!(stream.peer_addr().unwrap(), live_addr);
            assert!(stream.nodelay().unwrap());
            assert!(
                took >= CONNECTION_ATTEMPT_DELAY && took < Duration::from_secs(2),
                "{took:?}"
            );
        }

        #[test]
        fn a_failed_attempt_starts_the_next_at_once() {
            let refused = {
                let l = TcpListener::bind("[::1]:0").unwrap();
                l.local_addr().unwrap()
            };
            let live = TcpListener::bind("127.0.0.1:0").unwrap();
            let live_addr = live.local_addr().unwrap();
            let start = Instant::now();
            let (_, addr) = connect_addrs(&[live_addr, refused], None, Signals::NONE).unwrap();
            assert_eq!(addr, live_addr);
            assert!(
                start.elapsed() < CONNECTION_ATTEMPT_DELAY,
                "{:?}",
                start.elapsed()
            );
            // All refused: the last error, with its errno.
            let e = connect_addrs(&[refused], None, Signals::NONE).unwrap_err();
            assert!(
                matches!(e, Error::Io(ref io) if io.raw_os_error() == Some(libc::ECONNREFUSED)),
                "{e:?}"
            );
        }
    }

    #[test]
    fn refused_is_an_io_error_with_errno() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = connect_tcp("127.0.0.1", port, None, Signals::NONE).unwrap_err();
        assert!(
            matches!(e, Error::Io(ref io) if io.raw_os_error() == Some(libc::ECONNREFUSED)),
            "{e:?}"
        );
    }

    #[test]
    fn unknown_host_is_a_dns_error() {
        let e = resolve(
            "no-such-host.invalid",
            80,
            Some(Instant::now() + Duration::from_secs(5)),
            Signals::NONE,
        )
        .unwrap_err();
        // EAI_NONAME from a working resolver; EAI_AGAIN / EAI_NODATA where there is none.
        assert!(
            matches!(
                e,
                Error::Dns { code, .. }
                    if [libc::EAI_NONAME, libc::EAI_AGAIN, libc::EAI_NODATA].contains(&code)
            ),
            "{e:?}"
        );
        let Error::Dns {
            code, ref message, ..
        } = e
        else {
            unreachable!()
        };
        assert_eq!(message, &gai_message(code));
        assert!(
            !message.is_empty() && !message.starts_with("Unknown error"),
            "{message}"
        );
        assert_eq!(
            e.to_string(),
            format!("cannot resolve \"no-such-host.invalid\": {message}")
        );
    }

    #[test]
    fn reads_socket_addresses_from_their_bytes() {
        // A sockaddr_in and a sockaddr_in6 as getaddrinfo stores them, built field by field.
        let mut v4 = vec![0u8; std::mem::size_of::<libc::sockaddr_in>()];
        let at = offset_of!(libc::sockaddr_in, sin_addr);
        v4[at..at + 4].copy_from_slice(&[192, 0, 2, 7]);
        assert_eq!(
            socket_addr(libc::AF_INET, &v4, 443),
            Some("192.0.2.7:443".parse().unwrap())
        );
        // Too short for the address: skipped, not read past its end.
        assert_eq!(socket_addr(libc::AF_INET, &v4[..6], 443), None);
        let mut v6 = vec![0u8; std::mem::size_of::<libc::sockaddr_in6>()];
        let put = |bytes: &mut Vec<u8>, at: usize, value: &[u8]| {
            bytes[at..at + value.len()].copy_from_slice(value);
        };
        let ip: Ipv6Addr = "2001:db8::1".parse().unwrap();
        put(
            &mut v6,
            offset_of!(libc::sockaddr_in6, sin6_addr),
            &ip.octets(),
        );
        put(
            &mut v6,
            offset_of!(libc::sockaddr_in6, sin6_flowinfo),
            &5u32.to_ne_bytes(),
        );
        put(
            &mut v6,
            offset_of!(libc::sockaddr_in6, sin6_scope_id),
            &3u32.to_ne_bytes(),
        );
        assert_eq!(
            socket_addr(libc::AF_INET6, &v6, 80),
            Some(SocketAddr::V6(SocketAddrV6::new(ip, 80, 5, 3)))
        );
        assert_eq!(socket_addr(libc::AF_INET6, &v6[..20], 80), None);
        assert_eq!(socket_addr(libc::AF_UNIX, &v6, 80), None);
        assert_eq!(socket_addr(libc::AF_INET6, &[], 80), None);
    }

    #[test]
    fn resolves_names_to_socket_addresses_with_the_port() {
        let addrs = resolve("localhost", 8765, None, Signals::NONE).unwrap();
        assert!(!addrs.is_empty());
        assert!(
            addrs
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 8765),
            "{addrs:?}"
        );
    }

    fn pair() -> (Stream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stream, _) = connect_tcp("127.0.0.1", port, None, Signals::NONE).unwrap();
        let (server, _) = listener.accept().unwrap();
        (Stream::new(stream), server)
    }

    #[test]
    fn read_deadline() {
        let (stream, server) = pair();
        let mut rt = ReadTimeout::default();
        let start = Instant::now();
        let e = stream
            .read(
                &mut rt,
                &mut [0; 8],
                Some(start + Duration::from_millis(50)),
                "reading",
                Signals::NONE,
            )
            .unwrap_err();
        assert!(matches!(e, Error::Timeout { during: "reading" }));
        assert!(start.elapsed() >= Duration::from_millis(45));
        let e = stream
            .read(&mut rt, &mut [0; 8], Some(start), "reading", Signals::NONE)
            .unwrap_err();
        assert!(matches!(e, Error::Timeout { .. }));
        // A passed deadline still returns what is already there.
        (&server).write_all(b"ready").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let mut buf = [0; 8];
        let n = stream
            .read(&mut rt, &mut buf, Some(start), "reading", Signals::NONE)
            .unwrap();
        assert_eq!(n, 5);
    }

    #[test]
    fn write_deadline_against_a_peer_that_does_not_read() {
        let (stream, _server) = pair();
        let chunk = vec![0u8; 1 << 20];
        let start = Instant::now();
        let deadline = Some(start + Duration::from_millis(200));
        let (e, written) = loop {
            let mut written = 0;
            if let Err(e) = stream.write_all(&chunk, &mut written, deadline, Signals::NONE) {
                break (e, written);
            }
        };
        assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(written < chunk.len());
    }

    #[test]
    fn signal_check_ends_a_wait() {
        let (stream, _server) = pair();
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let check = || {
            if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 2 {
                Err(Error::Interrupted)
            } else {
                Ok(())
            }
        };
        let start = Instant::now();
        let e = stream
            .read(
                &mut ReadTimeout::default(),
                &mut [0; 8],
                None,
                "reading",
                Signals::new(&check),
            )
            .unwrap_err();
        assert!(matches!(e, Error::Interrupted), "{e:?}");
        let took = start.elapsed();
        assert!(
            took >= 2 * SIGNAL_SLICE && took < 10 * SIGNAL_SLICE,
            "{took:?}"
        );
    }
}
