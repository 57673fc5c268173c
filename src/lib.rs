//! sigil-ws: a sans-IO RFC 6455 WebSocket client engine, a blocking driver with rustls, and
//! (behind the `python` feature) the Python bindings.
//!
//! The modules form layers; an import only points down this list.
// Leaves: import nothing of ours.
pub mod buffer;
pub mod error;
pub mod options;
pub mod random;
// Protocol pieces.
pub mod deflate;
pub mod frame;
pub mod handshake;
pub mod http;
pub mod mask;
pub mod proxy;
pub mod redirect;
pub mod tls;
pub mod url;
pub mod utf8;
// The sans-IO engine.
pub mod protocol;
// The blocking driver.
pub mod blocking;
// Bindings.
#[cfg(feature = "python")]
mod py;
