//! The process-wide I/O thread of the blocking clients.
//!
//! One thread, started on the first connection and never attached to Python, serves every
//! sync connection that nobody is receiving on: it reads ahead (at most `max_queue` messages,
//! parked in the connection's reader), which answers pings and sees the peer's close and the
//! pongs of keepalive pings; and it runs each connection's keepalive deadlines. A caller in
//! `recv()` reads its own socket as before: the I/O thread only takes the reader lock with
//! `try_lock`, so the message path does not change and the hand-over is that one lock.
//!
//! Sockets are watched with epoll (mio), edge-triggered. When a connection's reader is busy
//! (a `recv()` or `close()` in progress), the thread runs only its deadlines and looks again
//! [`BUSY_RETRY`] later, so bytes that the caller leaves in the socket are not forgotten.
//!
//! After `os.fork()` the child starts a thread of its own on its first connection; the
//! connections it inherited are served by no thread in the child (their sockets are shared
//! with the parent, whose thread keeps serving them there).
//!
//! The thread also closes the TCP connection of a connection that is over ([`linger`]): it
//! writes what is left of the close frame, shuts the write side down after a failure, and
//! reads and discards until the peer's end of stream or a deadline (RFC 6455 §7.1.1), on a
//! duplicate of the socket that it owns, so that neither `recv()` nor dropping the connection
//! waits for it.

use std::collections::HashMap;
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use socket2::Socket;

use super::sync::lock;

/// How soon a connection whose reader was busy is looked at again; doubled for each visit in
/// a row that finds it busy, up to [`BUSY_RETRY_MAX`].
pub const BUSY_RETRY: Duration = Duration::from_millis(50);
/// The longest a connection whose caller stays in `recv()` waits for the next visit.
pub const BUSY_RETRY_MAX: Duration = Duration::from_secs(1);

const WAKER: Token = Token(0);

/// What the thread needs of a connection (the blocking client is one). Called on the thread
/// only, through `dyn`: the caller's message path never goes through this trait.
pub trait Served: Send + Sync {
    /// The socket to watch.
    fn fd(&self) -> RawFd;
    /// How many `recv()` calls returned so far: the sign that the application is receiving
    /// (then the thread stays away from the socket).
    fn recvs(&self) -> u64;
    /// One visit: reads ahead (when `read`, or when a deadline is due) if nobody receives,
    /// runs the keepalive, writes the replies. Never blocks.
    fn serve(&self, read: bool) -> Visit;
}

/// What a visit found.
#[derive(Debug, Clone, Copy)]
pub struct Visit {
    /// When the connection next needs a visit (keepalive), if ever.
    pub due: Option<Instant>,
    /// A caller held the reader: nothing was read.
    pub busy: bool,
    /// The connection is over.
    pub ended: bool,
    /// Reading stopped at its budget with bytes perhaps left in the socket (which the
    /// edge-triggered watch will not report again): visit again right after the others.
    pub more: bool,
}

/// A connection as the thread knows it.
struct Entry {
    conn: Weak<dyn Served>,
    fd: RawFd,
    /// When the connection next needs the thread (a deadline, or a look), if ever.
    due: Option<Instant>,
    /// The socket is watched. While the application receives, it is not: the thread would
    /// wake for every message the caller reads itself.
    armed: bool,
    /// [`Served::recvs`] at the last visit.
    seen_recvs: u64,
    /// Visits in a row that found the application receiving.
    busy_visits: u32,
}

/// The TCP close of a connection that is over (see [`linger`]).
struct Lingering {
    /// A duplicate of the connection's socket: the TCP connection lives until it is closed,
    /// whether or not the connection (and its descriptor) is still there.
    socket: Socket,
    /// What is left of the last frames (the close frame), written before the write side shuts.
    pending: Vec<u8>,
    /// Shut the write side down once `pending` is written.
    shut_write: bool,
    /// The peer's end of stream is awaited until then.
    deadline: Instant,
    /// The process that owns the close (a forked child shares the socket and leaves it be).
    pid: u32,
}

/// Reads per visit of one lingering socket (64 KiB each): a peer that keeps sending does not
/// keep the thread from the other connections (as [`Served::serve`] reads within a budget).
const LINGER_BUDGET: usize = 16;

/// What a step of a lingering socket's close left to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Linger {
    /// Over: close the socket.
    Done,
    /// Wait for the socket to be ready (or the deadline).
    Wait,
    /// The read budget ran out with bytes perhaps left (which the edge-triggered watch will
    /// not report again): look again right after the others.
    More,
}

impl Lingering {
    /// Moves the close along without blocking.
    fn step(&mut self) -> Linger {
        if Instant::now() >= self.deadline {
            return Linger::Done;
        }
        while !self.pending.is_empty() {
            match self
                .socket
                .send_with_flags(&self.pending, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
            {
                Ok(n) => drop(self.pending.drain(..n)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Linger::Wait,
                Err(_) => return Linger::Done,
            }
        }
        if std::mem::take(&mut self.shut_write) {
            // RFC 6455 §7.1.1: "call shutdown() with SHUT_WR on the socket, call recv() until
            // obtaining a return value of 0 [...] and finally call close() on the socket". Only
            // the write side: with the read side shut down too, the kernel resets the
            // connection when the peer's next bytes come, and the reset can destroy our close
            // frame before the peer reads it.
            if self.socket.shutdown(Shutdown::Write).is_err() {
                return Linger::Done;
            }
        }
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 64 * 1024];
        for _ in 0..LINGER_BUDGET {
            match self.socket.recv_with_flags(&mut buf, libc::MSG_DONTWAIT) {
                // The peer closed its side: so can we.
                Ok(0) => return Linger::Done,
                // RFC 6455 §7.1.1: "discarding any trailing bytes that may have been received".
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Linger::Wait,
                Err(_) => return Linger::Done,
            }
        }
        Linger::More
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        // Ends the TCP connection even while the connection still holds its descriptor. After
        // the peer's end of stream no byte can come any more; after the deadline, the peer
        // has had its time.
        if self.pid == std::process::id() {
            let _ = self.socket.shutdown(Shutdown::Both);
        }
    }
}

struct Service {
    registry: Registry,
    waker: Waker,
    entries: Mutex<HashMap<usize, Entry>>,
    /// Sockets whose TCP close is under way, by token (tokens are shared with `entries`), with
    /// when to look at them next.
    lingering: Mutex<HashMap<usize, (Lingering, Instant)>>,
    next_token: Mutex<usize>,
    pid: u32,
}

/// The service of this process, started on first use (and again in a forked child).
fn service() -> std::io::Result<Arc<Service>> {
    static CURRENT: Mutex<Option<Arc<Service>>> = Mutex::new(None);
    let mut current = lock(&CURRENT);
    let pid = std::process::id();
    if let Some(s) = current.as_ref().filter(|s| s.pid == pid) {
        return Ok(Arc::clone(s));
    }
    let poll = Poll::new()?;
    let service = Arc::new(Service {
        registry: poll.registry().try_clone()?,
        waker: Waker::new(poll.registry(), WAKER)?,
        entries: Mutex::new(HashMap::new()),
        lingering: Mutex::new(HashMap::new()),
        next_token: Mutex::new(1),
        pid,
    });
    let for_thread = Arc::clone(&service);
    std::thread::Builder::new()
        .name("sigil-ws-io".into())
        .spawn(move || for_thread.run(poll))?;
    // An inherited service (after fork) is dropped here without touching its epoll instance,
    // which the child shares with the parent: its Registry only closes the child's copy.
    *current = Some(Arc::clone(&service));
    Ok(service)
}

/// A connection's place in the service; dropping it takes the connection out.
pub struct Registration {
    service: Arc<Service>,
    token: usize,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("token", &self.token)
            .finish()
    }
}

/// Puts `conn` in the service's care until the returned registration is dropped.
pub fn register<C: Served + 'static>(conn: &Arc<C>) -> std::io::Result<Registration> {
    let service = service()?;
    let token = service.token();
    let fd = conn.fd();
    // Visit at once: bytes that came with the upgrade response (a ping, a close) are in the
    // engine already, and the edge-triggered watch will not report them.
    let due = Some(Instant::now());
    lock(&service.entries).insert(
        token,
        Entry {
            conn: Arc::downgrade(conn) as Weak<dyn Served>,
            fd,
            due,
            armed: true,
            seen_recvs: conn.recvs(),
            busy_visits: 0,
        },
    );
    // Readable for data, read-closed for the peer's end of stream.
    service
        .registry
        .register(&mut SourceFd(&fd), Token(token), Interest::READABLE)?;
    // The thread's sleep may end later than this connection's first deadline.
    service.waker.wake()?;
    Ok(Registration { service, token })
}

/// Hands the TCP close of a connection that is over to the thread: `socket` (a duplicate of
/// the connection's, owned by the thread from now on) gets `pending` written, its write side
/// shut down when `shut_write`, and is read with what arrives discarded until the peer's end
/// of stream or `deadline`; then it is shut down and closed (see [`Lingering`]).
pub fn linger(
    socket: Socket,
    pending: Vec<u8>,
    shut_write: bool,
    deadline: Instant,
) -> io::Result<()> {
    let service = service()?;
    let token = service.token();
    let fd = socket.as_raw_fd();
    // Writable too, for what is left of the close frame; the first look is at once (the
    // edge-triggered watch reports only what changes from now on).
    service.registry.register(
        &mut SourceFd(&fd),
        Token(token),
        Interest::READABLE | Interest::WRITABLE,
    )?;
    let lingering = Lingering {
        socket,
        pending,
        shut_write,
        deadline,
        pid: std::process::id(),
    };
    lock(&service.lingering).insert(token, (lingering, Instant::now()));
    service.waker.wake()
}

impl Registration {
    /// Takes the connection out of the thread's care before the registration is dropped
    /// (its socket is lingering: the thread watches a duplicate of it).
    pub fn retire(&self) {
        if let Some(entry) = lock(&self.service.entries).remove(&self.token) {
            if entry.armed {
                let _ = self.service.registry.deregister(&mut SourceFd(&entry.fd));
            }
        }
    }

    /// Asks the thread to look at the connection now (its reader stopped reading ahead
    /// because `max_queue` messages were parked, and the application took them).
    pub fn nudge(&self) {
        if let Some(entry) = lock(&self.service.entries).get_mut(&self.token) {
            entry.due = Some(Instant::now());
        }
        let _ = self.service.waker.wake();
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // In a forked child the epoll instance is the parent's too: leave it alone there.
        if self.service.pid != std::process::id() {
            return;
        }
        if let Some(entry) = lock(&self.service.entries).remove(&self.token) {
            if entry.armed {
                let _ = self.service.registry.deregister(&mut SourceFd(&entry.fd));
            }
        }
    }
}

impl Service {
    /// A token for a new connection or lingering socket.
    fn token(&self) -> usize {
        let mut next = lock(&self.next_token);
        let token = *next;
        *next += 1;
        token
    }

    /// Moves the lingering sockets in `ready` along (and those whose look is due); closes
    /// those that are done.
    fn linger_step(&self, ready: &[usize], now: Instant) {
        let mut lingering = lock(&self.lingering);
        if lingering.is_empty() {
            return;
        }
        lingering.retain(|token, (socket, look)| {
            if *look > now && ready.binary_search(token).is_err() {
                return true;
            }
            match socket.step() {
                Linger::Done => {
                    let fd = socket.socket.as_raw_fd();
                    let _ = self.registry.deregister(&mut SourceFd(&fd));
                    false
                }
                Linger::Wait => {
                    *look = socket.deadline;
                    true
                }
                Linger::More => {
                    *look = Instant::now();
                    true
                }
            }
        });
    }

    /// One visit: the socket is read only when the application has not received since the
    /// last visit (and is watched again then); while it receives, the thread stays away and
    /// looks again after [`BUSY_RETRY`], doubling up to [`BUSY_RETRY_MAX`].
    fn visit(&self, token: usize, conn: &dyn Served) {
        let recvs = conn.recvs();
        let (quiet, fd) = {
            let mut entries = lock(&self.entries);
            let Some(entry) = entries.get_mut(&token) else {
                return;
            };
            let quiet = entry.seen_recvs == recvs;
            entry.seen_recvs = recvs;
            if quiet && !entry.armed {
                // Watched again before reading, so that no arrival between the two is missed.
                let interest = Interest::READABLE;
                entry.armed = self
                    .registry
                    .register(&mut SourceFd(&entry.fd), Token(token), interest)
                    .is_ok();
            }
            (quiet, entry.fd)
        };
        let visit = conn.serve(quiet);
        let mut entries = lock(&self.entries);
        let Some(entry) = entries.get_mut(&token) else {
            return;
        };
        if visit.ended {
            entry.due = None;
            return;
        }
        if quiet && !visit.busy {
            entry.busy_visits = 0;
            entry.due = if visit.more {
                Some(Instant::now())
            } else {
                visit.due
            };
            return;
        }
        if entry.armed {
            entry.armed = self.registry.deregister(&mut SourceFd(&fd)).is_err();
        }
        let step = entry.busy_visits.min(5);
        entry.busy_visits += 1;
        let look = Instant::now() + (BUSY_RETRY * (1 << step)).min(BUSY_RETRY_MAX);
        entry.due = Some(visit.due.map_or(look, |d| d.min(look)));
    }

    fn run(self: Arc<Self>, mut poll: Poll) {
        let mut events = Events::with_capacity(256);
        let mut ready: Vec<usize> = Vec::new();
        let mut work: Vec<(usize, Arc<dyn Served>)> = Vec::new();
        loop {
            let timeout = {
                let entries = lock(&self.entries);
                let lingering = lock(&self.lingering);
                entries
                    .values()
                    .filter_map(|e| e.due)
                    .chain(lingering.values().map(|(_, look)| *look))
                    .min()
                    .map(|due| due.saturating_duration_since(Instant::now()))
            };
            if let Err(e) = poll.poll(&mut events, timeout) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    // The epoll instance failed: nothing can be served any more. Connections
                    // keep working for callers in recv(); only reading ahead stops.
                    return;
                }
            }
            ready.clear();
            ready.extend(
                events
                    .iter()
                    .map(|e| e.token())
                    .filter(|t| *t != WAKER)
                    .map(|t| t.0),
            );
            let now = Instant::now();
            ready.sort_unstable();
            ready.dedup();
            self.linger_step(&ready, now);
            {
                let mut entries = lock(&self.entries);
                ready.extend(
                    entries
                        .iter()
                        .filter(|(_, e)| e.due.is_some_and(|d| d <= now))
                        .map(|(t, _)| *t),
                );
                ready.sort_unstable();
                ready.dedup();
                for token in &ready {
                    match entries.get(token).map(|e| e.conn.upgrade()) {
                        Some(Some(conn)) => work.push((*token, conn)),
                        Some(None) => {
                            // Dropped without its registration (cannot happen: the connection
                            // owns it); forget the entry all the same.
                            entries.remove(token);
                        }
                        None => {}
                    }
                }
            }
            for (token, conn) in work.drain(..) {
                self.visit(token, &*conn);
                // The last reference may go here: the connection's registration then takes
                // the entry out, under the entries lock, which is not held now.
                drop(conn);
            }
        }
    }
}
