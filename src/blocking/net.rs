//! Blocking TCP: name resolution and connection under a deadline, socket options, and reads
//! that honour a deadline.

use std::io::{self, Read};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::Error;

/// Time left until `deadline`, or a timeout error naming `during`.
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

/// Resolves `host:port`. IP literals skip the resolver; names are resolved on a helper thread
/// so that the deadline holds even when the system resolver hangs.
pub fn resolve(host: &str, port: u16, deadline: Option<Instant>) -> Result<Vec<SocketAddr>, Error> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let dns_error = |message: String| Error::Dns {
        host: host.to_string(),
        message,
    };
    let lookup = {
        let host = host.to_string();
        move || -> io::Result<Vec<SocketAddr>> {
            Ok((host.as_str(), port).to_socket_addrs()?.collect())
        }
    };
    let addrs = match remaining(deadline, "resolving the host name")? {
        None => lookup().map_err(|e| dns_error(e.to_string()))?,
        Some(left) => {
            let (tx, rx) = mpsc::channel();
            std::thread::Builder::new()
                .name("sigil-ws-resolver".into())
                .spawn(move || {
                    let _ = tx.send(lookup());
                })?;
            match rx.recv_timeout(left) {
                Ok(result) => result.map_err(|e| dns_error(e.to_string()))?,
                Err(_) => {
                    return Err(Error::Timeout {
                        during: "resolving the host name",
                    })
                }
            }
        }
    };
    if addrs.is_empty() {
        return Err(dns_error("no addresses found".into()));
    }
    Ok(addrs)
}

/// Connects to the first address of `host` that accepts, before `deadline`. Sets TCP_NODELAY.
///
/// Returns the stream and the address it connected to.
pub fn connect_tcp(
    host: &str,
    port: u16,
    deadline: Option<Instant>,
) -> Result<(TcpStream, SocketAddr), Error> {
    let addrs = resolve(host, port, deadline)?;
    let mut last_error = None;
    for addr in addrs {
        let attempt = match remaining(deadline, "connecting")? {
            None => TcpStream::connect(addr),
            Some(left) => TcpStream::connect_timeout(&addr, left),
        };
        match attempt {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok((stream, addr));
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return Err(Error::Timeout {
                    during: "connecting",
                })
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error
        .map(Error::Io)
        .unwrap_or_else(|| Error::Io(io::Error::other("no address to connect to"))))
}

/// The read side's socket timeout, set only when it changes (one system call saved per read).
#[derive(Debug, Default)]
pub struct ReadTimeout {
    current: Option<Duration>,
}

impl ReadTimeout {
    /// Reads into `buf`, waiting until `deadline` at most.
    ///
    /// `Ok(0)` is end of stream. A passed deadline is `Error::Timeout`; `Interrupted` is passed
    /// through for the caller to check for signals and retry.
    pub fn read(
        &mut self,
        mut stream: &TcpStream,
        buf: &mut [u8],
        deadline: Option<Instant>,
        during: &'static str,
    ) -> Result<usize, Error> {
        // Once the deadline has passed, still take what is already there (so that
        // `recv(timeout=0)` polls) by waiting the shortest time the socket allows.
        let want = deadline.map(|d| {
            d.saturating_duration_since(Instant::now())
                .max(Duration::from_micros(1))
        });
        if want != self.current {
            stream.set_read_timeout(want)?;
            self.current = want;
        }
        match stream.read(buf) {
            Ok(n) => Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(Error::Timeout { during })
            }
            Err(e) => Err(Error::Io(e)),
        }
    }
}

/// Shuts both directions down, waking any thread blocked on the socket. Errors (the peer may
/// have gone already) are irrelevant at this point.
pub fn shutdown(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Both);
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
        let (stream, addr) = connect_tcp("127.0.0.1", port, deadline).unwrap();
        assert!(stream.nodelay().unwrap());
        assert_eq!(addr, stream.peer_addr().unwrap());
        let stream = connect_tcp("localhost", port, deadline);
        // localhost may resolve to ::1 first; some address must accept.
        assert!(stream.is_ok(), "{stream:?}");
    }

    #[test]
    fn refused_is_an_io_error() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = connect_tcp("127.0.0.1", port, None).unwrap_err();
        assert!(
            matches!(e, Error::Io(ref io) if io.kind() == io::ErrorKind::ConnectionRefused),
            "{e:?}"
        );
    }

    #[test]
    fn unknown_host_is_a_dns_error() {
        let e = resolve(
            "no-such-host.invalid",
            80,
            Some(Instant::now() + Duration::from_secs(5)),
        )
        .unwrap_err();
        assert!(
            matches!(e, Error::Dns { .. } | Error::Timeout { .. }),
            "{e:?}"
        );
    }

    #[test]
    fn read_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stream, _) = connect_tcp("127.0.0.1", port, None).unwrap();
        let (server, _) = listener.accept().unwrap();
        let mut rt = ReadTimeout::default();
        let start = Instant::now();
        let e = rt
            .read(
                &stream,
                &mut [0; 8],
                Some(start + Duration::from_millis(50)),
                "reading",
            )
            .unwrap_err();
        assert!(matches!(e, Error::Timeout { during: "reading" }));
        assert!(start.elapsed() >= Duration::from_millis(45));
        let e = rt
            .read(&stream, &mut [0; 8], Some(start), "reading")
            .unwrap_err();
        assert!(matches!(e, Error::Timeout { .. }));
        // A passed deadline still returns what is already there.
        (&server).write_all(b"ready").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let mut buf = [0; 8];
        assert_eq!(
            rt.read(&stream, &mut buf, Some(start), "reading").unwrap(),
            5
        );
    }
}
