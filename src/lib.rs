//! sigil-ws: a sans-IO RFC 6455 WebSocket client engine, a blocking driver with rustls, and
//! (behind the `python` feature) the Python bindings.
pub mod error;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod protocol;
pub mod tls;
pub mod url;
pub mod utf8;
