//! Every option of a connection with its default and its check, once.
//!
//! The Python bindings and the blocking driver read defaults and checks here; nothing else
//! repeats a default or re-implements a range check.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::Error;

/// `open_timeout` default: DNS + TCP + TLS + upgrade together, in seconds.
pub const OPEN_TIMEOUT: f64 = 10.0;
/// `close_timeout` default, in seconds.
pub const CLOSE_TIMEOUT: f64 = 10.0;
/// `max_size` default: the largest incoming message, in bytes.
pub const MAX_SIZE: usize = 16 * 1024 * 1024;
/// `ping_interval` default: seconds between keepalive pings.
pub const PING_INTERVAL: f64 = 20.0;
/// `ping_timeout` default: seconds a keepalive ping waits for its pong.
pub const PING_TIMEOUT: f64 = 20.0;
/// `max_queue` default: received messages held ahead of the application.
pub const MAX_QUEUE: usize = 16;
/// `write_limit` default (asyncio): transport bytes above which `send()` waits for a drain.
pub const WRITE_LIMIT: usize = 32 * 1024;
/// `max_redirects` default: redirects of the upgrade followed.
pub const MAX_REDIRECTS: usize = 10;
/// The default `User-Agent`.
pub const USER_AGENT: &str = concat!("sigil-ws/", env!("CARGO_PKG_VERSION"));

/// What the upgrade request carries besides the URL and the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestOptions {
    /// Extra headers, sent in order after the standard ones.
    pub headers: Vec<(String, String)>,
    /// Offered subprotocols, in order of preference.
    pub subprotocols: Vec<String>,
    /// The `Origin` header.
    pub origin: Option<String>,
    /// The `User-Agent` header; `None` omits it.
    pub user_agent: Option<String>,
    /// Offer permessage-deflate (RFC 7692).
    pub compression: bool,
}

impl Default for RequestOptions {
    fn default() -> Self {
        RequestOptions {
            headers: Vec::new(),
            subprotocols: Vec::new(),
            origin: None,
            user_agent: Some(USER_AGENT.to_string()),
            compression: true,
        }
    }
}

/// TLS settings for `wss://` (the fields of Python's `TLSConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of trusted CA certificates, replacing the system store.
    pub ca_file: Option<PathBuf>,
    /// PEM text of trusted CA certificates, replacing the system store.
    pub ca_data: Option<Vec<u8>>,
    /// PEM file with the client certificate chain (and the key, when `key_file` is unset).
    pub cert_file: Option<PathBuf>,
    /// PEM file with the client's private key.
    pub key_file: Option<PathBuf>,
    /// Verify the server's certificate and name. `false` only when explicitly asked.
    pub verify: bool,
    /// The name to send as SNI and verify, instead of the URL's host.
    pub server_hostname: Option<String>,
    /// ALPN protocols to offer, in order.
    pub alpn: Vec<Vec<u8>>,
}

impl Default for TlsOptions {
    /// Verification against the system trust store, nothing else set.
    fn default() -> Self {
        TlsOptions {
            ca_file: None,
            ca_data: None,
            cert_file: None,
            key_file: None,
            verify: true,
            server_hostname: None,
            alpn: Vec::new(),
        }
    }
}

/// The options of one client connection, as both drivers and the sans-IO engine take them.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// DNS + TCP + TLS + upgrade together; `None` for no limit.
    pub open_timeout: Option<Duration>,
    /// How long `close()` waits for the peer's close frame; `None` for no limit.
    pub close_timeout: Option<Duration>,
    /// Headers, subprotocols, origin and user agent of the upgrade request.
    pub request: RequestOptions,
    /// Largest incoming message in bytes; `None` for no limit.
    pub max_size: Option<usize>,
    /// TLS settings; `None` uses the defaults for `wss://` and is required for `ws://`.
    pub tls: Option<TlsOptions>,
    /// Keepalive: seconds between pings while the connection is open; `None` for none.
    pub ping_interval: Option<Duration>,
    /// Received messages held ahead of the application (the sync client's I/O thread reads
    /// ahead this far); `None` for no bound.
    pub max_queue: Option<usize>,
    /// Keepalive: how long a ping waits for its pong before the connection fails with 1011;
    /// `None` waits forever.
    pub ping_timeout: Option<Duration>,
    /// The proxy URL (`http://`, `https://`, `socks5://`, `socks5h://`, `socks4a://`, with
    /// `user:password@`); `None` connects directly. The environment is read by the caller.
    pub proxy: Option<String>,
    /// 301/302/303/307/308 answers to the upgrade followed; 0 follows none.
    pub max_redirects: usize,
    /// A Unix domain socket to connect to instead of TCP (the URL still names Host and path).
    pub unix_socket: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            open_timeout: Some(Duration::from_secs_f64(OPEN_TIMEOUT)),
            close_timeout: Some(Duration::from_secs_f64(CLOSE_TIMEOUT)),
            request: RequestOptions::default(),
            max_size: Some(MAX_SIZE),
            tls: None,
            ping_interval: Some(Duration::from_secs_f64(PING_INTERVAL)),
            max_queue: Some(MAX_QUEUE),
            ping_timeout: Some(Duration::from_secs_f64(PING_TIMEOUT)),
            proxy: None,
            max_redirects: MAX_REDIRECTS,
            unix_socket: None,
        }
    }
}

/// A number of seconds as a deadline length: `None` and infinity wait forever; NaN and negative
/// values are refused (as `socket.settimeout` and `queue.Queue.get` refuse them).
pub fn timeout(name: &str, seconds: Option<f64>) -> Result<Option<Duration>, Error> {
    match seconds {
        None => Ok(None),
        Some(s) if s == f64::INFINITY => Ok(None),
        Some(s) if s >= 0.0 => Duration::try_from_secs_f64(s)
            .map(Some)
            .map_err(|_| Error::InvalidArgument(format!("{name} {s} is out of range"))),
        Some(s) => Err(Error::InvalidArgument(format!(
            "{name} must be a non-negative number of seconds or None, not {s}"
        ))),
    }
}

/// A period in seconds that must be positive (`ping_interval`): `None` and infinity turn it
/// off; zero, negative and NaN are refused (zero would ping without pause).
pub fn interval(name: &str, seconds: Option<f64>) -> Result<Option<Duration>, Error> {
    match seconds {
        Some(s) if s.is_nan() || s <= 0.0 => Err(Error::InvalidArgument(format!(
            "{name} must be a positive number of seconds or None, not {s}"
        ))),
        other => timeout(name, other),
    }
}

/// A size limit that must be positive, or `None` for no limit.
pub fn positive(name: &str, value: Option<i64>) -> Result<Option<usize>, Error> {
    match value {
        None => Ok(None),
        Some(n) if n > 0 => usize::try_from(n)
            .map(Some)
            .map_err(|_| Error::InvalidArgument(format!("{name} {n} is too large"))),
        Some(n) => Err(Error::InvalidArgument(format!(
            "{name} must be positive or None, not {n}"
        ))),
    }
}

/// A byte count that may be zero.
pub fn non_negative(name: &str, value: i64) -> Result<usize, Error> {
    usize::try_from(value)
        .map_err(|_| Error::InvalidArgument(format!("{name} must be non-negative, not {value}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts() {
        assert_eq!(timeout("t", None).unwrap(), None);
        assert_eq!(timeout("t", Some(f64::INFINITY)).unwrap(), None);
        assert_eq!(timeout("t", Some(0.0)).unwrap(), Some(Duration::ZERO));
        assert_eq!(
            timeout("t", Some(1.5)).unwrap(),
            Some(Duration::from_millis(1500))
        );
        for bad in [f64::NAN, -1.0, f64::NEG_INFINITY, -0.001] {
            let e = timeout("timeout", Some(bad)).unwrap_err();
            assert!(e.to_string().starts_with("timeout must be"), "{e}");
        }
        assert!(timeout("t", Some(1e300)).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(positive("max_size", None).unwrap(), None);
        assert_eq!(positive("max_size", Some(1)).unwrap(), Some(1));
        assert!(positive("max_size", Some(0)).is_err());
        assert!(positive("max_size", Some(-5)).is_err());
        assert_eq!(non_negative("write_limit", 0).unwrap(), 0);
        assert!(non_negative("write_limit", -1).is_err());
    }
}
