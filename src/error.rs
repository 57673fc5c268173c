//! Every error type of the crate and the map to close codes.

use std::fmt::Write;

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// The scheme is neither `ws` nor `wss`.
    #[error("unsupported scheme {0:?}: expected ws or wss")]
    UnsupportedScheme(String),
    /// No `scheme://` prefix.
    #[error("missing scheme in {0:?}: expected ws:// or wss://")]
    MissingScheme(String),
    /// The URL carries a `#fragment`.
    #[error("fragment {0:?} is not allowed in a WebSocket URL")]
    Fragment(String),
    /// The host is empty.
    #[error("missing host")]
    MissingHost,
    /// The host contains a character that no host may contain.
    #[error("invalid host {0:?}")]
    InvalidHost(String),
    /// The port is not a number in 1..=65535.
    #[error("invalid port {0:?}")]
    InvalidPort(String),
    /// `user:password@` in the authority.
    #[error("user info in the URL is not supported; send an Authorization header instead")]
    UserInfo,
    /// The path or query contains whitespace or a control character.
    #[error("invalid character {0:?} in the resource name")]
    InvalidResource(char),
}

/// Why a proxy could not open a tunnel, or a proxy URL is unusable. Messages name the proxy
/// as `scheme://host:port`, never with its credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The proxy URL cannot be used (the message never repeats it: it may hold a password).
    #[error("invalid proxy URL: {why}")]
    InvalidUrl {
        /// What is wrong with it.
        why: &'static str,
    },
    /// The HTTP proxy answered `CONNECT` with a status other than 2xx.
    #[error("proxy {proxy} refused the tunnel: HTTP {status}")]
    Status {
        /// The proxy.
        proxy: String,
        /// The status code (407: the proxy wants credentials).
        status: u16,
        /// The response headers.
        headers: Vec<(String, String)>,
    },
    /// The HTTP proxy's answer is not a valid HTTP response head.
    #[error("proxy {proxy} sent an invalid response: {error}")]
    Http {
        /// The proxy.
        proxy: String,
        /// What is wrong with it.
        error: HttpError,
    },
    /// The SOCKS proxy refused the connection with a reply code (RFC 1928 §6, SOCKS4 90-93).
    #[error("SOCKS proxy {proxy} refused the connection: {message} (reply code {code})")]
    SocksReply {
        /// The proxy.
        proxy: String,
        /// The reply code.
        code: u8,
        /// The code's meaning.
        message: &'static str,
    },
    /// The SOCKS5 proxy accepts none of the offered authentication methods (X'FF').
    #[error(
        "SOCKS proxy {proxy} accepts none of the offered authentication methods{}",
        if *.offered_credentials { "" } else { ": it may need a user name and password" }
    )]
    NoAcceptableMethod {
        /// The proxy.
        proxy: String,
        /// Username/password was offered.
        offered_credentials: bool,
    },
    /// The SOCKS5 proxy refused the user name and password (RFC 1929).
    #[error("SOCKS proxy {proxy} refused the user name and password (status {status})")]
    AuthFailed {
        /// The proxy.
        proxy: String,
        /// The RFC 1929 status byte.
        status: u8,
    },
    /// The proxy's answer breaks its protocol.
    #[error("proxy {proxy} sent an invalid reply: {why}")]
    InvalidReply {
        /// The proxy.
        proxy: String,
        /// What is wrong with it.
        why: String,
    },
    /// The proxy closed the connection before the tunnel was open.
    #[error(
        "proxy {proxy} closed the connection during the proxy handshake (after {received} bytes)"
    )]
    Closed {
        /// The proxy.
        proxy: String,
        /// Bytes of its answer that had arrived.
        received: usize,
    },
    /// A value does not fit the one-octet length of a SOCKS field.
    #[error("{what} of {len} bytes is too long for SOCKS (at most 255)")]
    TooLong {
        /// Which value.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
    },
}

impl ProxyError {
    /// The HTTP status of a refusal, if the proxy sent one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ProxyError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The SOCKS reply code (SOCKS5 REP, SOCKS4 CD), or X'FF' when no authentication method
    /// was acceptable (the METHOD reply of RFC 1928 §3), if any. Refused credentials carry
    /// their RFC 1929 status in the message only: it is not a reply code.
    pub fn reply_code(&self) -> Option<u8> {
        match self {
            ProxyError::SocksReply { code, .. } => Some(*code),
            ProxyError::NoAcceptableMethod { .. } => Some(0xFF),
            _ => None,
        }
    }
}

/// Why a response head cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The status line is not `HTTP/1.1 NNN reason`.
    #[error("invalid status line {0:?}")]
    InvalidStatusLine(String),
    /// The first bytes cannot begin an HTTP response: the server speaks another protocol.
    /// A TLS record means a plain-text client reached a TLS port; this codec's one user is the
    /// WebSocket upgrade, whose remedy is the secure scheme.
    #[error(
        "invalid status line: server answered with non-HTTP data {}{}",
        escape_bytes(.first_bytes),
        if looks_like_tls(.first_bytes) { ": this looks like TLS; use a wss:// URL" } else { "" }
    )]
    NotHttp {
        /// The first bytes received, at most [`crate::http::MAX_FIRST_BYTES`].
        first_bytes: Vec<u8>,
    },
    /// A header line is not `name: value`.
    #[error("invalid header line {0:?}")]
    InvalidHeaderLine(String),
    /// The header block grew past `http::MAX_HEADER_BYTES`.
    #[error("response headers exceed {limit} bytes")]
    HeadersTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// More than `http::MAX_HEADERS` header lines.
    #[error("response has more than {limit} headers")]
    TooManyHeaders {
        /// The limit in lines.
        limit: usize,
    },
}

/// Why the upgrade failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The response head is not valid HTTP/1.1.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The server answered with a status other than 101.
    #[error("server rejected WebSocket connection: HTTP {status}")]
    Status {
        /// The status code.
        status: u16,
        /// The response headers.
        headers: Vec<(String, String)>,
        /// The first bytes of the body, if any arrived with the headers.
        body: Vec<u8>,
    },
    /// `Upgrade` is missing or is not `websocket`.
    #[error("invalid Upgrade header: {0:?}")]
    InvalidUpgrade(Option<String>),
    /// `Connection` is missing or lacks the `upgrade` token.
    #[error("invalid Connection header: {0:?}")]
    InvalidConnection(Option<String>),
    /// `Sec-WebSocket-Accept` is missing.
    #[error("missing Sec-WebSocket-Accept header")]
    MissingAccept,
    /// A header that may appear once appears more often.
    #[error("multiple {name} headers: {values:?}")]
    RepeatedHeader {
        /// The header's name.
        name: &'static str,
        /// Every value received, in order.
        values: Vec<String>,
    },
    /// `Sec-WebSocket-Accept` does not match the key.
    #[error("invalid Sec-WebSocket-Accept {got:?}: expected {expected:?}")]
    AcceptMismatch {
        /// What the key implies.
        expected: String,
        /// What the server sent.
        got: String,
    },
    /// The server chose a subprotocol the client did not offer.
    #[error("server chose subprotocol {0:?}, which was not offered")]
    UnexpectedSubprotocol(String),
    /// The server enabled an extension the client did not offer.
    #[error("server enabled extension {0:?}, which was not offered")]
    UnexpectedExtension(String),
    /// The `Sec-WebSocket-Extensions` answer to our permessage-deflate offer is invalid.
    #[error(transparent)]
    Extension(#[from] ExtensionError),
    /// A request header name or value would break the request.
    #[error("invalid request header {name:?}: {why}")]
    InvalidRequestHeader {
        /// The header's name.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A redirect whose `Location` cannot be followed.
    #[error("cannot follow HTTP {status} redirect to {location:?}: {why}")]
    InvalidRedirect {
        /// The redirect's status.
        status: u16,
        /// The `Location` value (empty when missing).
        location: String,
        /// What is wrong with it.
        why: String,
    },
    /// A redirect from `wss://` to `ws://`, which would drop TLS.
    #[error("refusing to follow a redirect from {from} to {to}: it drops TLS")]
    InsecureRedirect {
        /// The secure URL.
        from: String,
        /// The insecure target.
        to: String,
    },
    /// A redirect back to a URL already in the chain.
    #[error("redirect loop: {chain}")]
    RedirectLoop {
        /// The URLs, joined by " -> ".
        chain: String,
    },
    /// More redirects than `max_redirects`.
    #[error("too many redirects (max_redirects={max}): {chain}")]
    TooManyRedirects {
        /// The limit.
        max: usize,
        /// The URLs, joined by " -> ".
        chain: String,
    },
    /// The connection ended before any byte of the response arrived.
    #[error("connection closed during the opening handshake before any response")]
    UnexpectedEof,
    /// The connection ended in the middle of the response head.
    #[error(
        "connection closed during the opening handshake after {received} bytes of an \
         incomplete HTTP response"
    )]
    IncompleteResponse {
        /// How many bytes of the response arrived.
        received: usize,
    },
}

/// Why the server's `Sec-WebSocket-Extensions` answer to our permessage-deflate offer is refused
/// (RFC 6455 §9.1, RFC 7692 §5 and §7).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtensionError {
    /// A header value that is not a list of `token *( ";" token [ "=" value ] )`.
    #[error("invalid Sec-WebSocket-Extensions header {value:?}: {why}")]
    InvalidHeader {
        /// The header value.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// An extension other than the one we offered.
    #[error("server enabled extension {name:?}, which was not offered")]
    UnexpectedExtension {
        /// The extension's name.
        name: String,
    },
    /// permessage-deflate accepted more than once.
    #[error("server enabled extension {name:?} more than once")]
    DuplicateExtension {
        /// The extension's name.
        name: String,
    },
    /// A parameter permessage-deflate does not define for a response.
    #[error("unknown permessage-deflate parameter {name:?}")]
    UnknownParameter {
        /// The parameter's name.
        name: String,
    },
    /// A parameter given more than once.
    #[error("duplicate permessage-deflate parameter {name:?}")]
    DuplicateParameter {
        /// The parameter's name.
        name: String,
    },
    /// A parameter that requires a value came without one.
    #[error("permessage-deflate parameter {name} requires a value")]
    MissingValue {
        /// The parameter's name.
        name: &'static str,
    },
    /// A window size that is not a decimal 8..=15 without leading zeroes.
    #[error("invalid value {value:?} for permessage-deflate parameter {name}: expected 8 to 15")]
    InvalidValue {
        /// The parameter's name.
        name: &'static str,
        /// The value received (unquoted).
        value: String,
    },
    /// A value on a parameter that takes none.
    #[error("permessage-deflate parameter {name} takes no value, got {value:?}")]
    UnexpectedValue {
        /// The parameter's name.
        name: &'static str,
        /// The value received (unquoted).
        value: String,
    },
}

/// Why a message cannot be compressed or inflated (RFC 7692 §7.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeflateError {
    /// The payload of a compressed message is not valid DEFLATE data.
    #[error("invalid compressed data at byte {offset} of the message: {reason}")]
    InvalidData {
        /// How many compressed bytes of the message were consumed when inflating failed.
        offset: u64,
        /// The inflater's diagnosis, e.g. "invalid distance too far back".
        reason: String,
    },
    /// The message inflates to more than the limit (`max_size`).
    #[error("decompressed message of {size} bytes or more exceeds the limit of {limit} bytes")]
    TooBig {
        /// The decompressed size reached when inflating stopped.
        size: u64,
        /// The limit.
        limit: usize,
    },
    /// Our compressor failed, which zlib only does when misused: an internal error.
    #[error("compression failed: {reason}")]
    Compress {
        /// The compressor's diagnosis.
        reason: String,
    },
}

impl DeflateError {
    /// The close code this failure sends (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> u16 {
        match self {
            // RFC 7692 names no close code for data that does not inflate. The payload of a
            // message marked compressed (RSV1) that is not DEFLATE data is, in RFC 6455 §7.4.1's
            // words for 1007, "data within a message that was not consistent with the type of
            // the message", as invalid UTF-8 in a text message is; 1002 is for framing errors.
            DeflateError::InvalidData { .. } => 1007,
            // 1009: "a message that is too big for it to process"
            DeflateError::TooBig { .. } => 1009,
            // 1011: "an unexpected condition that prevented it from fulfilling the request"
            DeflateError::Compress { .. } => 1011,
        }
    }
}

/// Bytes as Python writes them (`b'SSH-2.0\r\n'`), for messages that show what arrived.
fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 3);
    out.push_str("b'");
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\'' => out.push_str("\\'"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push('\'');
    out
}

/// A TLS record header: content type handshake (22) or alert (21), then major version 3
/// (RFC 8446 §5.1). What a TLS server sends to a client that speaks plain HTTP to it.
fn looks_like_tls(bytes: &[u8]) -> bool {
    matches!(bytes, [0x16 | 0x15, 0x03, ..])
}

/// The peer broke RFC 6455. Each variant fails the connection with the code of
/// [`ProtocolError::close_code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// An opcode that RFC 6455 reserves.
    #[error("reserved opcode {opcode:#x}")]
    ReservedOpcode {
        /// The opcode received.
        opcode: u8,
    },
    /// RSV1–3 set without a negotiated extension.
    #[error("reserved bits {bits:#05b} set without a negotiated extension")]
    ReservedBits {
        /// The three RSV bits.
        bits: u8,
    },
    /// A 64-bit length with its most significant bit set.
    #[error("invalid payload length {len}")]
    InvalidLength {
        /// The declared length.
        len: u64,
    },
    /// The server masked a frame.
    #[error("server sent a masked frame")]
    MaskedFrame,
    /// A control frame with more than 125 bytes of payload.
    #[error("control frame payload of {len} bytes exceeds 125")]
    ControlFrameTooLong {
        /// The declared length.
        len: u64,
    },
    /// A control frame without FIN.
    #[error("fragmented control frame (opcode {opcode:#x})")]
    FragmentedControlFrame {
        /// The opcode received.
        opcode: u8,
    },
    /// A continuation frame outside a fragmented message.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A new data frame while a fragmented message is unfinished.
    #[error("new data frame (opcode {opcode:#x}) inside a fragmented message")]
    ExpectedContinuation {
        /// The opcode received.
        opcode: u8,
    },
    /// Text or a close reason that is not UTF-8.
    #[error("invalid UTF-8 in a {context}")]
    InvalidUtf8 {
        /// Where: "text message" or "close reason".
        context: &'static str,
    },
    /// A close frame with a one-byte payload.
    #[error("close frame payload of 1 byte")]
    ClosePayloadTooShort,
    /// A close code that may not be sent.
    #[error("invalid close code {code}")]
    InvalidCloseCode {
        /// The code received.
        code: u16,
    },
    /// RSV1 ("Per-Message Compressed") on a control frame. RFC 7692 §6.1: "An endpoint MUST NOT
    /// set the "Per-Message Compressed" bit of control frames and non-first fragments of a data
    /// message. An endpoint receiving such a frame MUST _Fail the WebSocket Connection_."
    #[error("compressed bit (RSV1) set on a control frame (opcode {opcode:#x})")]
    CompressedControlFrame {
        /// The opcode received.
        opcode: u8,
    },
    /// RSV1 ("Per-Message Compressed") on a continuation frame (RFC 7692 §6.1, as above).
    #[error("compressed bit (RSV1) set on a continuation frame")]
    CompressedContinuation,
    /// A compressed message that does not inflate, or a failure of our compressor.
    #[error(transparent)]
    Deflate(DeflateError),
    /// A message larger than `max_size`.
    #[error("message of {size} bytes or more exceeds the limit of {limit} bytes")]
    MessageTooBig {
        /// The size reached (declared or accumulated).
        size: u64,
        /// The configured `max_size`.
        limit: usize,
    },
}

impl ProtocolError {
    /// The close code this failure sends (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> u16 {
        match self {
            // 1007: "data within a message that was not consistent with the type of the message"
            ProtocolError::InvalidUtf8 { .. } => 1007,
            // 1009: "a message that is too big for it to process"
            ProtocolError::MessageTooBig { .. } => 1009,
            ProtocolError::Deflate(e) => e.close_code(),
            // 1002: "terminating the connection due to a protocol error"
            _ => 1002,
        }
    }
}

impl From<DeflateError> for ProtocolError {
    /// A decompressed message past the limit is the same failure as any message past
    /// `max_size`; the other deflate failures keep their own variant.
    fn from(e: DeflateError) -> Self {
        match e {
            DeflateError::TooBig { size, limit } => ProtocolError::MessageTooBig { size, limit },
            other => ProtocolError::Deflate(other),
        }
    }
}

/// Why we failed a connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The peer broke RFC 6455.
    Protocol(ProtocolError),
    /// The TLS layer failed after the handshake (a corrupted record, a bad alert).
    Tls(rustls::Error),
}

/// How a connection ended: what `ConnectionClosed` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Termination {
    /// The close code: the peer's (1005 when its close frame had none), ours when we failed the
    /// connection, 1006 when the connection dropped without a close frame.
    pub code: u16,
    /// The close reason.
    pub reason: String,
    /// What made us fail the connection, if anything.
    pub cause: Option<Failure>,
}

impl Termination {
    /// 1000 (normal closure), 1001 (going away) and a close frame without a code (1005) are
    /// normal, as `ConnectionClosedOK` is defined (as websockets does); anything else, or any
    /// failure, is `ConnectionClosedError`.
    pub fn is_normal(&self) -> bool {
        self.cause.is_none() && matches!(self.code, 1000 | 1001 | 1005)
    }
}

/// Every error the crate reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL is not a valid WebSocket URL.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The opening handshake failed.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// The peer broke the protocol (the connection is failed with a close code).
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// TLS handshake, certificate or record failure.
    #[error("TLS error: {0}")]
    Tls(#[from] rustls::Error),
    /// The peer closed the connection before the TLS handshake finished.
    #[error("TLS error: connection closed during the TLS handshake")]
    TlsHandshakeEof,
    /// TLS settings that cannot be used (unreadable files, bad PEM, bad names).
    #[error("TLS configuration error: {0}")]
    TlsConfig(String),
    /// A proxy refused or failed the tunnel, or its URL is unusable.
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    /// Name resolution failed.
    #[error("cannot resolve {host:?}: {message}")]
    Dns {
        /// The host name.
        host: String,
        /// The resolver's `EAI_*` code (negative on glibc), what `socket.gaierror.errno` is.
        code: i32,
        /// The resolver's message (`gai_strerror`).
        message: String,
    },
    /// An operating system error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A deadline passed.
    #[error("timed out {during}")]
    Timeout {
        /// What was waiting, e.g. "during the opening handshake".
        during: &'static str,
    },
    /// The connection is closed (or closing) and cannot carry the operation.
    #[error("connection closed: code {}{}", .0.code, if .0.reason.is_empty() { String::new() } else { format!(", reason {:?}", .0.reason) })]
    Closed(Termination),
    /// A signal handler raised while a blocking call waited (the binding holds the exception).
    #[error("interrupted by a signal")]
    Interrupted,
    /// Two threads called `recv()` at once.
    #[error("{0}")]
    Concurrency(&'static str),
    /// An argument the caller passed is out of range.
    #[error("{0}")]
    InvalidArgument(String),
}

impl Error {
    /// The close code this error fails the connection with, if it is a protocol failure.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            Error::Protocol(e) => Some(e.close_code()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_follow_rfc6455_7_4_1() {
        assert_eq!(
            Error::from(ProtocolError::InvalidUtf8 {
                context: "text message"
            })
            .close_code(),
            Some(1007)
        );
        assert_eq!(
            ProtocolError::MessageTooBig { size: 2, limit: 1 }.close_code(),
            1009
        );
        assert_eq!(ProtocolError::MaskedFrame.close_code(), 1002);
        assert_eq!(ProtocolError::ReservedBits { bits: 4 }.close_code(), 1002);
        assert_eq!(Error::Concurrency("x").close_code(), None);
    }

    #[test]
    fn deflate_close_codes() {
        // RFC 7692 §6.1 violations are protocol errors; bad compressed data is 1007, a message
        // that inflates past max_size is the usual MessageTooBig.
        assert_eq!(
            ProtocolError::CompressedControlFrame { opcode: 9 }.close_code(),
            1002
        );
        assert_eq!(ProtocolError::CompressedContinuation.close_code(), 1002);
        let invalid = DeflateError::InvalidData {
            offset: 3,
            reason: "invalid block type".into(),
        };
        assert_eq!(ProtocolError::from(invalid.clone()).close_code(), 1007);
        assert_eq!(
            ProtocolError::from(invalid),
            ProtocolError::Deflate(DeflateError::InvalidData {
                offset: 3,
                reason: "invalid block type".into(),
            })
        );
        assert_eq!(
            ProtocolError::from(DeflateError::TooBig {
                size: 11,
                limit: 10
            }),
            ProtocolError::MessageTooBig {
                size: 11,
                limit: 10
            }
        );
        assert_eq!(
            ProtocolError::from(DeflateError::Compress { reason: "x".into() }).close_code(),
            1011
        );
    }

    #[test]
    fn deflate_messages_name_the_value() {
        assert_eq!(
            ProtocolError::CompressedControlFrame { opcode: 9 }.to_string(),
            "compressed bit (RSV1) set on a control frame (opcode 0x9)"
        );
        assert_eq!(
            ProtocolError::Deflate(DeflateError::InvalidData {
                offset: 3,
                reason: "invalid block type".into(),
            })
            .to_string(),
            "invalid compressed data at byte 3 of the message: invalid block type"
        );
        assert_eq!(
            HandshakeError::from(ExtensionError::UnknownParameter { name: "x".into() }).to_string(),
            "unknown permessage-deflate parameter \"x\""
        );
        assert_eq!(
            ExtensionError::UnexpectedValue {
                name: "server_no_context_takeover",
                value: "1".into()
            }
            .to_string(),
            "permessage-deflate parameter server_no_context_takeover takes no value, got \"1\""
        );
        assert_eq!(
            ExtensionError::InvalidHeader {
                value: "a;".into(),
                why: "expected a parameter name"
            }
            .to_string(),
            "invalid Sec-WebSocket-Extensions header \"a;\": expected a parameter name"
        );
    }

    #[test]
    fn bytes_are_shown_as_python_writes_them() {
        assert_eq!(escape_bytes(b"'\\\t\x7f\xff"), r"b'\'\\\t\x7f\xff'");
    }

    #[test]
    fn messages_name_the_value() {
        assert_eq!(
            ProtocolError::ControlFrameTooLong { len: 126 }.to_string(),
            "control frame payload of 126 bytes exceeds 125"
        );
        assert_eq!(
            ProtocolError::ReservedBits { bits: 4 }.to_string(),
            "reserved bits 0b100 set without a negotiated extension"
        );
    }
}
