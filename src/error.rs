//! The one error type of the crate and its map to close codes.

use crate::handshake::HandshakeError;
use crate::url::UrlError;

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
            // 1002: "terminating the connection due to a protocol error"
            _ => 1002,
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
