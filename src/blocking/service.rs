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

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};

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

struct Service {
    registry: Registry,
    waker: Waker,
    entries: Mutex<HashMap<usize, Entry>>,
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
    let token = {
        let mut next = lock(&service.next_token);
        let token = *next;
        *next += 1;
        token
    };
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

impl Registration {
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
                entries
                    .values()
                    .filter_map(|e| e.due)
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
