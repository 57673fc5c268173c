//! Peers and floors for sigil-ws's benchmark suite.
//!
//! ```text
//! sigil-bench ws-server [--deflate] [CERT KEY]
//!                                    WebSocket server (tokio-tungstenite): /echo, /push?n=N&size=S;
//!                                    with --deflate it accepts permessage-deflate, echoes
//!                                    compressed messages and pushes compressed JSON-like text
//! sigil-bench inflate-push PORT N SIZE   native inflate floor: receives the --deflate server's
//!                                    push and inflates each message with flate2 over zlib-rs,
//!                                    the codec sigil-ws inflates with
//! sigil-bench raw-server [CERT KEY]  raw TCP (or raw TLS): "echo S\n" then message echo;
//!                                    "push N S\n" then the push stream
//! sigil-bench pingpong PORT SIZE SECONDS [CA]   ping-pong floor client (TLS with a CA file)
//! sigil-bench ws-pingpong PORT SIZE SECONDS [CA]
//!                                    native WebSocket client (tungstenite, blocking; rustls over
//!                                    TLS): the same ping-pong as the Python clients, against the
//!                                    same WebSocket server
//! ```
//! Servers print their port on the first line of stdout, then serve until killed.
//!
//! The floors do what a WebSocket peer must do, minus WebSocket: the echo server answers a
//! ping of S bytes only once all S bytes have arrived (a WebSocket server can echo a message
//! only once it is whole), and the push stream is the same byte stream the WebSocket server
//! sends (frames of S bytes), so each floor moves exactly the bytes of its scenario. Over TLS,
//! both ends use rustls with ring, as the WebSocket server and sigil-ws do.

use std::io::{BufRead, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod deflate;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;

type Tls = Option<tokio_rustls::TlsAcceptor>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("ws-server") if args.get(2).map(String::as_str) == Some("--deflate") => {
            serve(ws_main(true, args.get(3).cloned(), args.get(4).cloned()))
        }
        Some("ws-server") => serve(ws_main(false, args.get(2).cloned(), args.get(3).cloned())),
        Some("inflate-push") => inflate_push(&args[2..]),
        Some("raw-server") => serve(raw_main(args.get(2).cloned(), args.get(3).cloned())),
        Some("pingpong") => pingpong(&args[2..]),
        Some("ws-pingpong") => ws_pingpong(&args[2..]),
        _ => Err(USAGE.into()),
    };
    if let Err(e) = result {
        eprintln!("sigil-bench: {e}");
        std::process::exit(1);
    }
}

const USAGE: &str = "usage: sigil-bench ws-server [--deflate] [CERT KEY] | raw-server [CERT KEY] \
                     | pingpong PORT SIZE SECONDS [CA] | ws-pingpong PORT SIZE SECONDS [CA] \
                     | inflate-push PORT N SIZE";

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn serve(fut: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    // One worker: the server must leave the other core to the client under test.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?
        .block_on(fut)
}

async fn listen() -> Result<TcpListener> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?.port());
    std::io::stdout().flush()?;
    Ok(listener)
}

/// Writes N binary frames of S bytes: one frame encoded by tungstenite, replayed in batches of
/// about 256 KiB, so the server never allocates the whole stream or becomes the bottleneck.
async fn write_push<W: AsyncWrite + Unpin>(out: &mut W, n: usize, size: usize) -> Result<()> {
    let mut one = Vec::new();
    Frame::message(vec![b'x'; size], OpCode::Data(Data::Binary), true).format(&mut one)?;
    let per_batch = (256 * 1024 / one.len()).max(1);
    let batch = one.repeat(per_batch);
    let mut left = n;
    while left >= per_batch {
        out.write_all(&batch).await?;
        left -= per_batch;
    }
    out.write_all(&batch[..left * one.len()]).await?;
    out.flush().await?;
    Ok(())
}

fn tls_acceptor(cert: &str, key: &str) -> Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)?.collect::<std::result::Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn ws_main(deflate: bool, cert: Option<String>, key: Option<String>) -> Result<()> {
    let tls: Tls = match (cert, key) {
        (Some(c), Some(k)) => Some(tls_acceptor(&c, &k)?),
        _ => None,
    };
    let listener = listen().await?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let tls = tls.clone();
        tokio::spawn(async move {
            let result = match tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(s) => ws_connection(s, deflate).await,
                    Err(e) => Err(e.into()),
                },
                None => ws_connection(stream, deflate).await,
            };
            let _ = result;
        });
    }
}

// tungstenite's handshake callback returns its (large) HTTP error response by value.
#[allow(clippy::result_large_err)]
async fn ws_connection<S: AsyncRead + AsyncWrite + Unpin>(stream: S, deflate: bool) -> Result<()> {
    let mut path = String::new();
    let mut compressed = false;
    let mut no_context = false;
    let config = WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None);
    let callback = |req: &Request, mut resp: Response| {
        path = req.uri().to_string();
        let offer = req
            .headers()
            .get("sec-websocket-extensions")
            .and_then(|v| v.to_str().ok())
            .and_then(deflate::offer);
        if let (true, Some(offer)) = (deflate, offer) {
            // Context takeover both ways, 15-bit windows: every parameter left at its default,
            // unless the client asks for server_no_context_takeover (websocket-rs does), which
            // is accepted by echoing it (RFC 7692 §7.1.1.1).
            no_context = deflate::asks_server_no_context_takeover(offer);
            let value = if no_context {
                "permessage-deflate; server_no_context_takeover"
            } else {
                "permessage-deflate"
            };
            let value = value.parse().expect("a valid header value");
            resp.headers_mut().insert("sec-websocket-extensions", value);
            compressed = true;
        }
        Ok(resp)
    };
    let mut ws =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await?;
    if compressed {
        // tungstenite has no permessage-deflate: frames go over the socket directly (the client
        // sends nothing before it has the whole 101 answer, so tungstenite buffered nothing).
        return deflate_connection(ws.get_mut(), &path, no_context).await;
    }
    if let Some(query) = path.strip_prefix("/push?") {
        let mut n = 0;
        let mut size = 0;
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("n", v)) => n = v.parse()?,
                Some(("size", v)) => size = v.parse()?,
                _ => {}
            }
        }
        // Replay the pre-encoded frames straight onto the socket, then close normally.
        write_push(ws.get_mut(), n, size).await?;
        ws.close(Some(CloseFrame {
            code: 1000.into(),
            reason: "done".into(),
        }))
        .await?;
        while let Some(Ok(_)) = ws.next().await {}
        return Ok(());
    }
    // Echo (also for "/" and anything else). After a close frame, keep polling: tungstenite
    // sends the close reply and then ends the stream.
    while let Some(message) = ws.next().await {
        if let m @ (Message::Text(_) | Message::Binary(_)) = message? {
            ws.send(m).await?;
        }
    }
    Ok(())
}

/// The `n` and `size` parameters of a push URL's query.
fn push_params(query: &str) -> Result<(usize, usize)> {
    let (mut n, mut size) = (0, 0);
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("n", v)) => n = v.parse()?,
            Some(("size", v)) => size = v.parse()?,
            _ => {}
        }
    }
    Ok((n, size))
}

/// A WebSocket frame header as a server writes it (unmasked), FIN set.
fn server_header(first_byte: u8, len: usize, out: &mut Vec<u8>) {
    out.push(first_byte);
    match len {
        0..=125 => out.push(len as u8),
        126..=0xffff => {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

const FIN_RSV1_TEXT: u8 = 0x80 | 0x40 | 0x1;

/// The compressed connection: `/push?n=N&size=S` sends N JSON-like text messages of S bytes,
/// anything else echoes every message, recompressed.
async fn deflate_connection<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    path: &str,
    no_context: bool,
) -> Result<()> {
    if let Some(query) = path.strip_prefix("/push?") {
        let (n, size) = push_params(query)?;
        // 256 distinct messages compressed as one stream from an empty window, replayed: each
        // replay refers only to its own earlier messages, so the stream stays valid.
        let (mut deflater, mut rng) = (deflate::Deflater::new(), 0x9e37_79b9_7f4a_7c15);
        let (mut batch, mut ends, mut payload) = (Vec::new(), Vec::new(), Vec::new());
        for seq in 0..256 {
            payload.clear();
            deflater.compress(&deflate::market_message(&mut rng, seq, size), &mut payload)?;
            if no_context {
                deflater.reset();
            }
            server_header(FIN_RSV1_TEXT, payload.len(), &mut batch);
            batch.extend_from_slice(&payload);
            ends.push(batch.len());
        }
        let mut left = n;
        while left >= ends.len() {
            stream.write_all(&batch).await?;
            left -= ends.len();
        }
        if left > 0 {
            stream.write_all(&batch[..ends[left - 1]]).await?;
        }
        stream.write_all(&[0x88, 2, 0x03, 0xe8]).await?; // close 1000
        stream.flush().await?;
        // Wait for the client's close frame (8 bytes: masked, code 1000) or the end of the
        // connection, then close TCP first, as a server should (RFC 6455 §7.1.1).
        let (mut sink, mut got) = ([0u8; 256], 0);
        while got < 8 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => got += n,
            }
        }
        return Ok(());
    }
    let (mut inflater, mut deflater) = (deflate::Inflater::new(), deflate::Deflater::new());
    let mut reader = BufReader::with_capacity(256 * 1024, stream);
    let (mut payload, mut message, mut plain, mut out) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut opcode, mut rsv1) = (0u8, false);
    loop {
        let mut head = [0u8; 2];
        match reader.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let len = match head[1] & 0x7f {
            126 => reader.read_u16().await? as usize,
            127 => reader.read_u64().await? as usize,
            n => n as usize,
        };
        let mut mask = [0u8; 4];
        if head[1] & 0x80 != 0 {
            reader.read_exact(&mut mask).await?;
        }
        payload.resize(len, 0);
        reader.read_exact(&mut payload).await?;
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i & 3];
        }
        let (fin, code) = (head[0] & 0x80 != 0, head[0] & 0x0f);
        match code {
            0x8 => {
                let reply = [0x88, 2, 0x03, 0xe8];
                reader.get_mut().write_all(&reply).await?;
                reader.get_mut().flush().await?;
                return Ok(());
            }
            0x9 => {
                out.clear();
                server_header(0x8a, payload.len(), &mut out);
                out.extend_from_slice(&payload);
                reader.get_mut().write_all(&out).await?;
                continue;
            }
            0xa => continue,
            0x0 => {}
            _ => {
                (opcode, rsv1) = (code, head[0] & 0x40 != 0);
                message.clear();
            }
        }
        message.extend_from_slice(&payload);
        if !fin {
            continue;
        }
        let data = if rsv1 {
            inflater.inflate(&message, &mut plain)?;
            &plain
        } else {
            &message
        };
        payload.clear();
        deflater.compress(data, &mut payload)?;
        if no_context {
            deflater.reset();
        }
        out.clear();
        server_header(0x80 | 0x40 | opcode, payload.len(), &mut out);
        out.extend_from_slice(&payload);
        reader.get_mut().write_all(&out).await?;
        reader.get_mut().flush().await?;
    }
}

async fn raw_main(cert: Option<String>, key: Option<String>) -> Result<()> {
    let tls: Tls = match (cert, key) {
        (Some(c), Some(k)) => Some(tls_acceptor(&c, &k)?),
        _ => None,
    };
    let listener = listen().await?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let tls = tls.clone();
        tokio::spawn(async move {
            let _ = match tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(s) => raw_connection(s).await,
                    Err(e) => Err(e.into()),
                },
                None => raw_connection(stream).await,
            };
        });
    }
}

async fn raw_connection<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["push", n, size] => {
            let stream = reader.get_mut();
            write_push(stream, n.parse()?, size.parse()?).await?;
            stream.shutdown().await?;
        }
        ["echo", size] => {
            // Whole message in, whole message out, like a WebSocket echo.
            let mut buf = vec![0u8; size.parse()?];
            loop {
                match reader.read_exact(&mut buf).await {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e.into()),
                }
                let stream = reader.get_mut();
                stream.write_all(&buf).await?;
                stream.flush().await?;
            }
        }
        _ => return Err(format!("unknown request {line:?}").into()),
    }
    Ok(())
}

/// A rustls client connection (ring) to 127.0.0.1 trusting the certificates of `ca`.
fn tls_client(ca: &str) -> Result<tokio_rustls::rustls::ClientConnection> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1")?.to_owned();
    Ok(rustls::ClientConnection::new(Arc::new(config), name)?)
}

/// A blocking connection to the raw server: plain TCP, or TLS (rustls, ring) trusting `ca`.
fn raw_connect(port: &str, ca: Option<&String>) -> Result<Box<dyn ReadWrite>> {
    let stream = std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>()?))?;
    stream.set_nodelay(true)?;
    let Some(ca) = ca else {
        return Ok(Box::new(stream));
    };
    let mut conn = tls_client(ca)?;
    conn.set_buffer_limit(None);
    let mut stream = stream;
    while conn.is_handshaking() {
        conn.complete_io(&mut stream)?;
    }
    Ok(Box::new(TlsFloor {
        conn,
        stream,
        incoming: vec![0; 1 << 20],
        start: 0,
        end: 0,
    }))
}

/// rustls over a blocking socket, reading ciphertext in chunks of up to 1 MiB (rustls'
/// `StreamOwned` reads a few KiB per call, which makes it slower than a tuned client).
struct TlsFloor {
    conn: tokio_rustls::rustls::ClientConnection,
    stream: std::net::TcpStream,
    incoming: Vec<u8>,
    start: usize,
    end: usize,
}

impl Read for TlsFloor {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            // Borrow the decrypted chunk (`fill_buf`) rather than `read`: rustls then hands
            // out the record in place instead of copying it into a queue first.
            let mut reader = self.conn.reader();
            match reader.fill_buf() {
                Ok(chunk) => {
                    let n = chunk.len().min(out.len());
                    out[..n].copy_from_slice(&chunk[..n]);
                    reader.consume(n);
                    return Ok(n); // 0: the peer closed cleanly
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if self.start == self.end {
                self.start = 0;
                self.end = self.stream.read(&mut self.incoming)?;
                if self.end == 0 {
                    return Ok(0);
                }
            }
            // Feed what rustls takes (it buffers a bounded amount), decrypt, hand it out.
            let mut data = &self.incoming[self.start..self.end];
            let taken = self.conn.read_tls(&mut data)?;
            self.start += taken;
            self.conn
                .process_new_packets()
                .map_err(std::io::Error::other)?;
        }
    }
}

impl Write for TlsFloor {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = self.conn.writer().write(data)?;
        self.flush()?;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(&mut self.stream)?;
        }
        Ok(())
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Ping-pong floor: round trips of SIZE bytes against the raw server's message echo.
fn pingpong(args: &[String]) -> Result<()> {
    let (port, size, seconds, ca) = match args {
        [p, s, t] => (p, s, t, None),
        [p, s, t, ca] => (p, s, t, Some(ca)),
        _ => return Err(USAGE.into()),
    };
    let size: usize = size.parse()?;
    let duration = Duration::from_secs_f64(seconds.parse()?);
    let mut stream = raw_connect(port, ca)?;
    stream.write_all(format!("echo {size}\n").as_bytes())?;
    stream.flush()?;
    let out = vec![b'p'; size];
    let mut back = vec![0u8; size];
    let start = Instant::now();
    let cpu_start = cpu_seconds();
    let mut rounds = 0u64;
    while start.elapsed() < duration {
        stream.write_all(&out)?;
        stream.flush()?;
        stream.read_exact(&mut back)?;
        rounds += 1;
    }
    report(rounds, start, cpu_start);
    Ok(())
}

/// The native WebSocket client: the Python clients' ping-pong (binary messages of SIZE bytes
/// to the WebSocket server's /echo, each sent once the echo of the last is whole) done by a
/// Rust client, tungstenite's blocking `WebSocket` over the socket or over rustls'
/// `StreamOwned`. What a binding cannot beat without beating tungstenite itself.
fn ws_pingpong(args: &[String]) -> Result<()> {
    let (port, size, seconds, ca) = match args {
        [p, s, t] => (p, s, t, None),
        [p, s, t, ca] => (p, s, t, Some(ca)),
        _ => return Err(USAGE.into()),
    };
    let size: usize = size.parse()?;
    let duration = Duration::from_secs_f64(seconds.parse()?);
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>()?))?;
    tcp.set_nodelay(true)?;
    let stream: Box<dyn ReadWrite> = match ca {
        None => Box::new(tcp),
        Some(ca) => Box::new(tokio_rustls::rustls::StreamOwned::new(tls_client(ca)?, tcp)),
    };
    let scheme = if ca.is_some() { "wss" } else { "ws" };
    let url = format!("{scheme}://127.0.0.1:{port}/echo");
    let (mut ws, _) = tungstenite::client(url.as_str(), stream).map_err(|e| e.to_string())?;
    let payload = tungstenite::Bytes::from(vec![b'p'; size]);
    let round = |ws: &mut tungstenite::WebSocket<Box<dyn ReadWrite>>| -> Result<()> {
        ws.send(tungstenite::Message::Binary(payload.clone()))?;
        loop {
            match ws.read()? {
                tungstenite::Message::Binary(b) if b.len() == size => return Ok(()),
                tungstenite::Message::Binary(b) => {
                    return Err(format!("echo of {} bytes, not {size}", b.len()).into())
                }
                tungstenite::Message::Close(_) => return Err("the server closed".into()),
                _ => {}
            }
        }
    };
    for _ in 0..20 {
        round(&mut ws)?; // warm up, as the Python clients do
    }
    let start = Instant::now();
    let cpu_start = cpu_seconds();
    let mut rounds = 0u64;
    while start.elapsed() < duration {
        for _ in 0..10 {
            round(&mut ws)?;
        }
        rounds += 10;
    }
    report(rounds, start, cpu_start);
    let _ = ws.close(None);
    let _ = ws.flush();
    Ok(())
}

/// Native inflate floor: the --deflate server's push of N messages of SIZE bytes, each message
/// inflated into one reused buffer by flate2 over zlib-rs (the codec sigil-ws uses) and checked
/// as UTF-8, as a client must.
fn inflate_push(args: &[String]) -> Result<()> {
    let [port, n, size] = args else {
        return Err(USAGE.into());
    };
    let n: u64 = n.parse()?;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>()?))?;
    stream.set_nodelay(true)?;
    write!(
        stream,
        "GET /push?n={n}&size={size} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
    )?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err("the server closed during the handshake".into());
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    if !head.starts_with("http/1.1 101") || !head.contains("permessage-deflate") {
        return Err(format!("no permessage-deflate upgrade: {head:?}").into());
    }
    let mut inflater = deflate::Inflater::new();
    let (mut payload, mut message) = (Vec::new(), Vec::new());
    let start = Instant::now();
    let cpu_start = cpu_seconds();
    let mut count = 0u64;
    while count < n {
        let mut h = [0u8; 2];
        reader.read_exact(&mut h)?;
        let len = match h[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                reader.read_exact(&mut b)?;
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                reader.read_exact(&mut b)?;
                u64::from_be_bytes(b) as usize
            }
            l => l as usize,
        };
        payload.resize(len, 0);
        reader.read_exact(&mut payload)?;
        if h[0] & 0x0f == 0x8 {
            break;
        }
        message.clear();
        inflater.inflate(&payload, &mut message)?;
        std::str::from_utf8(&message)?;
        count += 1;
    }
    report(count, start, cpu_start);
    Ok(())
}

fn report(count: u64, start: Instant, cpu_start: f64) {
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_start;
    println!("{{\"count\": {count}, \"seconds\": {elapsed}, \"cpu\": {cpu}}}");
}

/// User + system CPU seconds of this process, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<f64>().ok()))
        .sum();
    ticks / 100.0
}
