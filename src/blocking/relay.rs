//! `https://` proxies in the blocking driver: TLS to the proxy (verified against the default
//! trust store) carries the tunnel, inside which the engine runs its own TLS to the server.
//!
//! The client reads and writes one plain socket; a second TLS session under the engine's would
//! sit in every read and write of the message path, and in every wait on the socket (plaintext
//! held by that session is invisible to `poll`). So the connection runs on one end of a Unix
//! socket pair instead, and a relay thread, started only for `https://` proxies, moves bytes
//! between the other end and the proxy through the proxy's TLS session (the sans-IO
//! [`TlsLayer`]). The handshakes with the proxy (TLS, then the tunnel) run on the caller's
//! thread under `open_timeout` first.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use rustix::event::{PollFd, PollFlags};
use socket2::Socket;

use super::net::{connect_tcp, ReadTimeout, Signals, Stream};
use crate::buffer::InputBuffer;
use crate::error::Error;
use crate::options::TlsOptions;
use crate::proxy::{ProxyUrl, Tunnel};
use crate::tls::{client_config, TlsLayer};

/// What the handshakes with the proxy wait for, in timeout messages.
const DURING: &str = "during the proxy handshake";

/// Bytes read from either side at a time.
const CHUNK: usize = 64 * 1024;

/// Connects to an `https://` proxy, runs TLS and then `tunnel` with it, and starts the relay.
///
/// Returns the socket the connection runs on, the proxy's address, and what followed the
/// proxy's answer (the server's first bytes).
pub fn open(
    proxy: &ProxyUrl,
    tunnel: &mut Tunnel,
    deadline: Option<Instant>,
    signals: Signals<'_>,
) -> Result<(Socket, SocketAddr, Vec<u8>), Error> {
    let (tcp, addr) = connect_tcp(&proxy.host, proxy.port, deadline, signals)?;
    let stream = Stream::new(tcp);
    let mut tls = TlsLayer::new(client_config(&TlsOptions::default())?, &proxy.host)?;
    let mut plain = InputBuffer::default();
    let mut timeout = ReadTimeout::default();
    let mut buf = vec![0u8; CHUNK];
    let mut out = Vec::new();
    let rest = loop {
        let request = tunnel.data_to_send();
        if !request.is_empty() {
            // Buffered by rustls until its handshake is done.
            tls.write(&request)?;
        }
        out.clear();
        tls.drain(&mut out)?;
        if !out.is_empty() {
            let mut written = 0;
            stream.write_all(&out, &mut written, deadline, signals)?;
        }
        let n = stream.read(&mut timeout, &mut buf, deadline, DURING, signals)?;
        if n == 0 {
            if tls.is_handshaking() {
                return Err(Error::TlsHandshakeEof);
            }
            return Err(tunnel.receive_eof().into());
        }
        let read = tls.read(buf.get(..n).unwrap_or_default(), &mut plain)?;
        if !plain.pending().is_empty() {
            let answer = plain.pending().to_vec();
            plain.set_pos(plain.bytes().len());
            if let Some(rest) = tunnel.receive_data(&answer)? {
                break rest;
            }
        }
        if read.closed {
            return Err(tunnel.receive_eof().into());
        }
    };
    // What the handshake left queued (a tunnel opens once the proxy answered: nothing, in
    // practice) goes out before the relay takes over.
    out.clear();
    tls.drain(&mut out)?;
    if !out.is_empty() {
        let mut written = 0;
        stream.write_all(&out, &mut written, deadline, signals)?;
    }
    stream.socket().set_read_timeout(None)?;
    let proxy_side: TcpStream = stream.into_socket().into();
    let (ours, theirs) = UnixStream::pair()?;
    std::thread::Builder::new()
        .name("sigil-ws-proxy-tls".into())
        .spawn(move || {
            let _ = relay(proxy_side, theirs, tls, plain);
        })?;
    Ok((Socket::from(std::os::fd::OwnedFd::from(ours)), addr, rest))
}

/// Moves bytes until either side ends: plaintext from `local` is encrypted to the proxy,
/// ciphertext from the proxy is decrypted to `local`. Then both are shut down, which the
/// connection sees as the end of its stream.
fn relay(
    proxy: TcpStream,
    local: UnixStream,
    mut tls: TlsLayer,
    mut plain: InputBuffer,
) -> Result<(), Error> {
    let result = pump(&proxy, &local, &mut tls, &mut plain);
    let _ = proxy.shutdown(std::net::Shutdown::Both);
    let _ = local.shutdown(std::net::Shutdown::Both);
    result
}

fn pump(
    proxy: &TcpStream,
    local: &UnixStream,
    tls: &mut TlsLayer,
    plain: &mut InputBuffer,
) -> Result<(), Error> {
    let mut buf = vec![0u8; CHUNK];
    let mut cipher = Vec::new();
    loop {
        let mut fds = [
            PollFd::new(proxy, PollFlags::IN),
            PollFd::new(local, PollFlags::IN),
        ];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(Error::Io(e.into())),
        }
        let [proxy_ready, local_ready] = fds.map(|fd| !fd.revents().is_empty());
        if proxy_ready {
            let n = (&*proxy).read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            let read = tls.read(buf.get(..n).unwrap_or_default(), plain)?;
            if !plain.pending().is_empty() {
                (&*local).write_all(plain.pending())?;
                plain.set_pos(plain.bytes().len());
                plain.compact();
            }
            // Replies rustls owes (key updates) go out at once.
            cipher.clear();
            tls.drain(&mut cipher)?;
            (&*proxy).write_all(&cipher)?;
            if read.closed {
                return Ok(());
            }
        }
        if local_ready {
            let n = (&*local).read(&mut buf)?;
            if n == 0 {
                tls.close();
                cipher.clear();
                tls.drain(&mut cipher)?;
                let _ = (&*proxy).write_all(&cipher);
                return Ok(());
            }
            tls.write(buf.get(..n).unwrap_or_default())?;
            cipher.clear();
            tls.drain(&mut cipher)?;
            (&*proxy).write_all(&cipher)?;
        }
    }
}
