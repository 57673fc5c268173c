//! Peers and floors for sigil-ws's benchmark suite.
//!
//! ```text
//! sigil-bench ws-server [CERT KEY]   WebSocket server (tokio-tungstenite): /echo, /push?n=N&size=S
//! sigil-bench raw-server             raw TCP: "echo\n" then echo; "push N S\n" then the push stream
//! sigil-bench pingpong PORT SIZE SECONDS    raw-TCP ping-pong floor client
//! ```
//! Servers print their port on the first line of stdout, then serve until killed.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;

type Tls = Option<tokio_rustls::TlsAcceptor>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("ws-server") => serve(ws_main(args.get(2).cloned(), args.get(3).cloned())),
        Some("raw-server") => serve(raw_main()),
        Some("pingpong") => pingpong(&args[2..]),
        _ => Err("usage: sigil-bench ws-server [CERT KEY] | raw-server | pingpong PORT SIZE SECONDS".into()),
    };
    if let Err(e) = result {
        eprintln!("sigil-bench: {e}");
        std::process::exit(1);
    }
}

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

async fn ws_main(cert: Option<String>, key: Option<String>) -> Result<()> {
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
                    Ok(s) => ws_connection(s).await,
                    Err(e) => Err(e.into()),
                },
                None => ws_connection(stream).await,
            };
            let _ = result;
        });
    }
}

async fn ws_connection<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> Result<()> {
    let mut path = String::new();
    let config = WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None);
    let callback = |req: &Request, resp: Response| {
        path = req.uri().to_string();
        Ok(resp)
    };
    let mut ws = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await?;
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
        ws.close(Some(CloseFrame { code: 1000.into(), reason: "done".into() })).await?;
        while let Some(Ok(_)) = ws.next().await {}
        return Ok(());
    }
    // Echo (also for "/" and anything else). After a close frame, keep polling: tungstenite
    // sends the close reply and then ends the stream.
    while let Some(message) = ws.next().await {
        match message? {
            m @ (Message::Text(_) | Message::Binary(_)) => ws.send(m).await?,
            _ => {}
        }
    }
    Ok(())
}

async fn raw_main() -> Result<()> {
    let listener = listen().await?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let _ = raw_connection(stream).await;
        });
    }
}

async fn raw_connection(stream: TcpStream) -> Result<()> {
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
        ["echo"] => {
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = reader.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                reader.get_mut().write_all(&buf[..n]).await?;
            }
        }
        _ => return Err(format!("unknown request {line:?}").into()),
    }
    Ok(())
}

/// Raw-TCP ping-pong: the floor for any client's round trips at this size.
fn pingpong(args: &[String]) -> Result<()> {
    let [port, size, seconds] = args else {
        return Err("pingpong PORT SIZE SECONDS".into());
    };
    let size: usize = size.parse()?;
    let duration = Duration::from_secs_f64(seconds.parse()?);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>()?))?;
    stream.set_nodelay(true)?;
    stream.write_all(b"echo\n")?;
    let out = vec![b'p'; size];
    let mut back = vec![0u8; size];
    let start = Instant::now();
    let cpu_start = cpu_seconds();
    let mut rounds = 0u64;
    while start.elapsed() < duration {
        stream.write_all(&out)?;
        stream.read_exact(&mut back)?;
        rounds += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_start;
    println!("{{\"count\": {rounds}, \"seconds\": {elapsed}, \"cpu\": {cpu}}}");
    Ok(())
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
