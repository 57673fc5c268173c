//! sigil-ws: a sans-IO RFC 6455 WebSocket client engine, a blocking driver with rustls, and
//! (behind the `python` feature) the Python bindings.
pub mod client;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod http;
pub mod mask;
pub mod protocol;
#[cfg(feature = "python")]
mod py;
pub mod tls;
pub mod transport;
pub mod url;
pub mod utf8;
