//! Opening a connection in the blocking driver: the route to the server (TCP, a Unix socket,
//! a socket the caller connected, a proxy tunnel), then the upgrade, following redirects, all
//! under the one `open_timeout` deadline. The rules (tunnel handshakes, redirects) are the
//! sans-IO pieces in `crate::proxy` and `crate::redirect`; this file only moves their bytes.

use std::os::fd::OwnedFd;
use std::time::Instant;

use socket2::Socket;

use super::client::Client;
use super::net::{self, connect_tcp, connect_unix, Peer, ReadTimeout, Signals, Stream};
use crate::error::{Error, HandshakeError};
use crate::options::Options;
use crate::protocol::Protocol;
use crate::proxy::{ProxyUrl, Tunnel};
use crate::redirect::Redirects;
use crate::url::WebSocketUrl;

/// What the proxy handshake waits for, in timeout messages.
const DURING_PROXY: &str = "during the proxy handshake";

/// A step of an opening that a log shows (the binding logs them: this driver never calls
/// Python). Neither carries credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hop {
    /// A proxy tunnel opened: the proxy as `scheme://host:port`, and the target.
    Tunnel {
        /// The proxy, without its credentials.
        proxy: String,
        /// The host the tunnel reaches.
        host: String,
        /// The port the tunnel reaches.
        port: u16,
    },
    /// The upgrade was redirected to `url` (without `user:password@`).
    Redirect {
        /// The redirect's HTTP status.
        status: u16,
        /// Where it leads.
        url: String,
    },
}

/// Opens a connection to `url` (which may carry `user:password@`, sent as Basic
/// `Authorization`) and runs the upgrade, following redirects. `sock`, when given, is an
/// already connected socket that the connection takes over (no redirect can be followed on
/// it: another hop needs another connection).
pub fn connect(
    url: &str,
    options: &Options,
    sock: Option<OwnedFd>,
    signals: Signals<'_>,
) -> Result<Client, Error> {
    connect_logged(url, options, sock, signals, None, &mut Vec::new())
}

/// [`connect`], for a log: the engine keeps a journal when `journal` is given (frame headers
/// too when it is `Some(true)`), and each proxy tunnel and redirect is added to `hops`.
pub fn connect_logged(
    url: &str,
    options: &Options,
    mut sock: Option<OwnedFd>,
    signals: Signals<'_>,
    journal: Option<bool>,
    hops: &mut Vec<Hop>,
) -> Result<Client, Error> {
    let deadline = options.open_timeout.map(|t| Instant::now() + t);
    let proxy = options.proxy.as_deref().map(ProxyUrl::parse).transpose()?;
    let max_redirects = if sock.is_some() {
        0
    } else {
        options.max_redirects
    };
    let mut redirects = Redirects::new(url, max_redirects, &options.request.headers)?;
    loop {
        let mut hop = options.clone();
        hop.request.headers = redirects.headers();
        let mut engine = Protocol::client(&redirects.url().to_string(), &hop, None)?;
        if let Some(frames) = journal {
            engine.set_journal(frames);
        }
        let (socket, peer, early) = match sock.take() {
            Some(fd) => {
                let socket = Socket::from(fd);
                let peer = Peer::from_sockaddr(&socket.peer_addr()?);
                (socket, peer, Vec::new())
            }
            None => {
                let routed = route(redirects.url(), options, proxy.as_ref(), deadline, signals)?;
                if let (Some(proxy), None) = (&proxy, &options.unix_socket) {
                    let target = redirects.url();
                    hops.push(Hop::Tunnel {
                        proxy: proxy.to_string(),
                        host: target.host.clone(),
                        port: target.port,
                    });
                }
                routed
            }
        };
        if !early.is_empty() {
            engine.receive_data(&early, 0.0)?;
        }
        match Client::handshake_over(Stream::new(socket), peer, engine, &hop, deadline, signals) {
            Err(Error::Handshake(HandshakeError::Status {
                status,
                headers,
                body,
            })) => {
                let location = crate::http::header_value(&headers, "location");
                if !redirects.follow(status, location)? {
                    return Err(Error::Handshake(HandshakeError::Status {
                        status,
                        headers,
                        body,
                    }));
                }
                hops.push(Hop::Redirect {
                    status,
                    url: redirects.url().to_string(),
                });
            }
            other => return other,
        }
    }
}

/// Connects to the server of `url` along the configured route. Returns the socket, the peer
/// it is connected to (the proxy, through one) and bytes the proxy passed on after its
/// answer, which belong to the server.
fn route(
    url: &WebSocketUrl,
    options: &Options,
    proxy: Option<&ProxyUrl>,
    deadline: Option<Instant>,
    signals: Signals<'_>,
) -> Result<(Socket, Peer, Vec<u8>), Error> {
    if let Some(path) = &options.unix_socket {
        let socket = connect_unix(path, deadline, signals)?;
        return Ok((
            socket,
            Peer::Unix(path.to_string_lossy().into_owned()),
            Vec::new(),
        ));
    }
    let Some(proxy) = proxy else {
        let (tcp, addr) = connect_tcp(&url.host, url.port, deadline, signals)?;
        return Ok((tcp.into(), Peer::Ip(addr), Vec::new()));
    };
    // socks5:// sends the proxy an address: the name is resolved here, first.
    let target = if proxy.resolves_locally() {
        net::resolve(&url.host, url.port, deadline, signals)?
            .first()
            .map(|a| a.ip().to_string())
            .unwrap_or_else(|| url.host.clone())
    } else {
        url.host.clone()
    };
    let mut tunnel = Tunnel::new(proxy, &target, url.port)?;
    if proxy.tls() {
        let (socket, addr, early) = super::relay::open(proxy, &mut tunnel, deadline, signals)?;
        return Ok((socket, Peer::Ip(addr), early));
    }
    let (tcp, addr) = connect_tcp(&proxy.host, proxy.port, deadline, signals)?;
    let stream = Stream::new(tcp);
    let early = open_tunnel(&stream, &mut tunnel, deadline, signals)?;
    // The handshake's reads set a receive timeout; the client starts from none.
    stream.socket().set_read_timeout(None)?;
    let socket = stream.into_socket();
    Ok((socket, Peer::Ip(addr), early))
}

/// Runs a proxy handshake over `stream`; returns what followed the proxy's answer.
pub fn open_tunnel(
    stream: &Stream,
    tunnel: &mut Tunnel,
    deadline: Option<Instant>,
    signals: Signals<'_>,
) -> Result<Vec<u8>, Error> {
    let mut timeout = ReadTimeout::default();
    let mut buf = vec![0u8; 4096];
    loop {
        let out = tunnel.data_to_send();
        if !out.is_empty() {
            let mut written = 0;
            stream
                .write_all(&out, &mut written, deadline, signals)
                .map_err(|e| match e {
                    Error::Timeout { .. } => Error::Timeout {
                        during: DURING_PROXY,
                    },
                    e => e,
                })?;
        }
        let n = match stream.read(&mut timeout, &mut buf, deadline, DURING_PROXY, signals)? {
            0 => return Err(tunnel.receive_eof().into()),
            n => n,
        };
        if let Some(rest) = tunnel.receive_data(buf.get(..n).unwrap_or_default())? {
            return Ok(rest);
        }
    }
}
