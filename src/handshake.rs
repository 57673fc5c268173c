//! The opening handshake: keys, the upgrade request, the client's rules for the response, and
//! the phase object that receives it (RFC 6455 §4.1, §4.2.2).

use crate::deflate;
pub use crate::error::HandshakeError;
use crate::http::{is_token, HeadReader};
use crate::random::random_bytes;
use crate::url::WebSocketUrl;

// The head codec moved to `http.rs`; these stay reachable here for the engine and the bindings.
pub use crate::http::{PackedHeaders, Response};

/// The GUID that RFC 6455 §1.3 appends to the key before hashing.
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// How many bytes of a refused response's body are kept for the error.
pub const MAX_BODY_EXCERPT: usize = 4096;

/// Encodes bytes as standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextet = |shift: u32| char::from(ALPHABET[((n >> shift) & 63) as usize]);
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
    out
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64-encoded (RFC 6455 §4.1 item 7).
pub fn generate_key() -> Result<String, std::io::Error> {
    let mut nonce = [0u8; 16];
    random_bytes(&mut nonce)?;
    Ok(base64_encode(&nonce))
}

/// `Sec-WebSocket-Accept` for a key: base64(SHA-1(key + GUID)) (RFC 6455 §4.2.2 item 5.4).
pub fn accept_key(key: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.trim().as_bytes());
    ctx.update(GUID.as_bytes());
    base64_encode(ctx.finish().as_ref())
}

pub use crate::options::RequestOptions;

fn check_header(name: &str, value: &str) -> Result<(), HandshakeError> {
    if !is_token(name) {
        return Err(HandshakeError::InvalidRequestHeader {
            name: name.to_string(),
            why: "the name is not an HTTP token",
        });
    }
    // RFC 9110 §5.5: CR, LF and NUL are never allowed in a field value; they would let a value
    // smuggle extra headers into the request.
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(HandshakeError::InvalidRequestHeader {
            name: name.to_string(),
            why: "the value contains CR, LF or NUL",
        });
    }
    Ok(())
}

/// Headers the library sets itself; a caller may not send them a second time.
const RESERVED_HEADERS: [&str; 6] = [
    "host",
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
];

/// Builds the HTTP/1.1 upgrade request (RFC 6455 §4.1).
pub fn build_request(
    url: &WebSocketUrl,
    key: &str,
    options: &RequestOptions,
) -> Result<Vec<u8>, HandshakeError> {
    let mut lines: Vec<(String, String)> = vec![
        ("Host".into(), url.host_header()),
        ("Upgrade".into(), "websocket".into()),
        ("Connection".into(), "Upgrade".into()),
        ("Sec-WebSocket-Key".into(), key.to_string()),
        ("Sec-WebSocket-Version".into(), "13".into()),
    ];
    if let Some(origin) = &options.origin {
        lines.push(("Origin".into(), origin.clone()));
    }
    if !options.subprotocols.is_empty() {
        for p in &options.subprotocols {
            if !is_token(p) {
                return Err(HandshakeError::InvalidRequestHeader {
                    name: "Sec-WebSocket-Protocol".into(),
                    why: "a subprotocol is not an HTTP token",
                });
            }
        }
        lines.push((
            "Sec-WebSocket-Protocol".into(),
            options.subprotocols.join(", "),
        ));
    }
    if options.compression {
        lines.push(("Sec-WebSocket-Extensions".into(), deflate::offer()));
    }
    if let Some(ua) = &options.user_agent {
        lines.push(("User-Agent".into(), ua.clone()));
    }
    for (name, value) in &options.headers {
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(HandshakeError::InvalidRequestHeader {
                name: name.clone(),
                why: "the library sets this header itself",
            });
        }
        lines.push((name.clone(), value.clone()));
    }
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(url.resource.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &lines {
        check_header(name, value)?;
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

/// Parses a response head from the start of `buf` (a fresh [`HeadReader`]: a caller that reads
/// the response in pieces keeps one, or a [`ClientHandshake`], instead).
///
/// Returns `Ok(None)` while the head is incomplete, or the response and the number of bytes it
/// used. Bytes past that are the start of the WebSocket stream (or the body of a refusal).
pub fn parse_response(buf: &[u8]) -> Result<Option<(Response, usize)>, HandshakeError> {
    Ok(HeadReader::new().poll(buf)?)
}

/// What the server agreed to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    /// The chosen subprotocol.
    pub subprotocol: Option<String>,
    /// The permessage-deflate parameters, when the server accepted our offer.
    pub deflate: Option<deflate::Params>,
}

/// Splits comma-separated header values into trimmed, non-empty items.
fn list_items<'a>(values: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    values
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// The value of a header that may appear at most once.
fn single_header<'a>(
    response: &'a Response,
    name: &'static str,
) -> Result<Option<&'a str>, HandshakeError> {
    let mut values = response.header_values(name);
    let first = values.next();
    if values.next().is_some() {
        return Err(HandshakeError::RepeatedHeader {
            name,
            values: response.header_values(name).map(str::to_string).collect(),
        });
    }
    Ok(first)
}

/// Checks a response head against the request (RFC 6455 §4.1, client requirements 1–6).
///
/// `body` is whatever followed the head, kept for the error of a refused upgrade.
pub fn validate_response(
    response: &Response,
    key: &str,
    offered_subprotocols: &[String],
    offered_deflate: bool,
    body: &[u8],
) -> Result<Accepted, HandshakeError> {
    // RFC 6455 §4.1: "If the status code received from the server is not 101, the client
    // handles the response per HTTP [RFC2616] procedures."
    if response.status != 101 {
        return Err(HandshakeError::Status {
            status: response.status,
            headers: response.headers.clone(),
            body: body[..body.len().min(MAX_BODY_EXCERPT)].to_vec(),
        });
    }
    // RFC 6455 §4.1: "If the response lacks an |Upgrade| header field or the |Upgrade| header
    // field contains a value that is not an ASCII case-insensitive match for the value
    // "websocket", the client MUST _Fail the WebSocket Connection_."
    match response.header("Upgrade") {
        Some(v) if v.trim().eq_ignore_ascii_case("websocket") => {}
        other => return Err(HandshakeError::InvalidUpgrade(other.map(str::to_string))),
    }
    // RFC 6455 §4.1: "If the response lacks a |Connection| header field or the |Connection|
    // header field doesn't contain a token that is an ASCII case-insensitive match for the value
    // "Upgrade", the client MUST _Fail the WebSocket Connection_."
    let connection = list_items(response.header_values("Connection"));
    if !connection.iter().any(|t| t.eq_ignore_ascii_case("upgrade")) {
        return Err(HandshakeError::InvalidConnection(
            response.header("Connection").map(str::to_string),
        ));
    }
    // RFC 6455 §4.1: "If the response lacks a |Sec-WebSocket-Accept| header field or the
    // |Sec-WebSocket-Accept| contains a value other than the base64-encoded SHA-1 of the
    // concatenation of the |Sec-WebSocket-Key| ... the client MUST _Fail the WebSocket
    // Connection_."
    // RFC 6455 §11.3.3: "The |Sec-WebSocket-Accept| header MUST NOT appear more than once in
    // an HTTP response."
    let expected = accept_key(key);
    match single_header(response, "Sec-WebSocket-Accept")? {
        None => return Err(HandshakeError::MissingAccept),
        Some(got) if got.trim() != expected => {
            return Err(HandshakeError::AcceptMismatch {
                expected,
                got: got.to_string(),
            })
        }
        Some(_) => {}
    }
    // RFC 6455 §4.1: "If the response includes a |Sec-WebSocket-Extensions| header field and
    // this header field indicates the use of an extension that was not present in the client's
    // handshake ... the client MUST _Fail the WebSocket Connection_." We offer
    // permessage-deflate at most; `deflate::accept` checks the answer to it.
    let extensions: Vec<&str> = response.header_values("Sec-WebSocket-Extensions").collect();
    let deflate = if offered_deflate {
        deflate::accept(&extensions)?
    } else {
        if let Some(ext) = list_items(extensions.into_iter()).first() {
            return Err(HandshakeError::UnexpectedExtension(ext.to_string()));
        }
        None
    };
    // RFC 6455 §4.1: "If the response includes a |Sec-WebSocket-Protocol| header field and this
    // header field indicates the use of a subprotocol that was not present in the client's
    // handshake ... the client MUST _Fail the WebSocket Connection_." The value names one
    // subprotocol (§4.3: `Sec-WebSocket-Protocol-Server = token`): a list, or an empty value,
    // is not one the client offered.
    // RFC 6455 §11.3.4: "the |Sec-WebSocket-Protocol| header field MUST NOT appear more than
    // once in an HTTP response."
    let subprotocol = match single_header(response, "Sec-WebSocket-Protocol")? {
        None => None,
        Some(chosen) if offered_subprotocols.iter().any(|o| o == chosen) => Some(chosen.into()),
        Some(chosen) => return Err(HandshakeError::UnexpectedSubprotocol(chosen.into())),
    };
    Ok(Accepted {
        subprotocol,
        deflate,
    })
}

/// The client's side of the opening handshake while it waits for the response: what the request
/// offered, and the search for the end of the response head.
///
/// A driver or engine holds one from sending the request until the upgrade succeeds and calls
/// [`ClientHandshake::receive`] after every read: however the response is split across reads,
/// its head is searched once.
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    key: String,
    offered_subprotocols: Vec<String>,
    offered_deflate: bool,
    head: HeadReader,
}

impl ClientHandshake {
    /// The phase after sending a request with `key` that offered `offered_subprotocols`.
    pub fn new(
        key: String,
        offered_subprotocols: Vec<String>,
        offered_deflate: bool,
    ) -> ClientHandshake {
        ClientHandshake {
            key,
            offered_subprotocols,
            offered_deflate,
            head: HeadReader::new(),
        }
    }

    /// Takes the response so far: `buf` is every byte received since the request (the same
    /// prefix plus new bytes on each call), `eof` says that the stream has ended.
    ///
    /// Returns `Ok(None)` while more bytes are needed. Once the upgrade succeeds, returns what
    /// the server agreed to, the response headers, and how many bytes of `buf` the head used:
    /// the bytes after them are WebSocket frames. A refused or invalid upgrade, or a stream that
    /// ends before the head does, is an error.
    pub fn receive(
        &mut self,
        buf: &[u8],
        eof: bool,
    ) -> Result<Option<(Accepted, PackedHeaders, usize)>, HandshakeError> {
        let Some((response, used)) = self.head.poll(buf)? else {
            return match (eof, buf.len()) {
                (false, _) => Ok(None),
                (true, 0) => Err(HandshakeError::UnexpectedEof),
                (true, received) => Err(HandshakeError::IncompleteResponse { received }),
            };
        };
        let body = buf.get(used..).unwrap_or_default();
        let accepted = validate_response(
            &response,
            &self.key,
            &self.offered_subprotocols,
            self.offered_deflate,
            body,
        )?;
        Ok(Some((
            accepted,
            PackedHeaders::new(&response.headers),
            used,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::HttpError;
    use crate::url::parse_url;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, output) in vectors {
            assert_eq!(base64_encode(input.as_bytes()), output);
        }
    }

    #[test]
    fn rfc6455_1_3_accept_key_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn generated_keys_are_24_chars_and_differ() {
        let a = generate_key().unwrap();
        let b = generate_key().unwrap();
        assert_eq!(a.len(), 24);
        assert!(a.ends_with("=="));
        assert_ne!(a, b);
    }

    fn request(url: &str, options: &RequestOptions) -> String {
        let url = parse_url(url).unwrap();
        String::from_utf8(build_request(&url, "KEY", options).unwrap()).unwrap()
    }

    #[test]
    fn request_has_the_required_headers() {
        let r = request("ws://example.com:9000/chat?x=1", &RequestOptions::default());
        assert!(r.starts_with("GET /chat?x=1 HTTP/1.1\r\n"));
        assert!(r.contains("\r\nHost: example.com:9000\r\n"));
        assert!(r.contains("\r\nUpgrade: websocket\r\n"));
        assert!(r.contains("\r\nConnection: Upgrade\r\n"));
        assert!(r.contains("\r\nSec-WebSocket-Key: KEY\r\n"));
        assert!(r.contains("\r\nSec-WebSocket-Version: 13\r\n"));
        assert!(r.ends_with("\r\n\r\n"));
        assert!(!r.contains("Origin"));
    }

    #[test]
    fn request_optional_headers() {
        let options = RequestOptions {
            headers: vec![("Authorization".into(), "Bearer t".into())],
            subprotocols: vec!["chat".into(), "superchat".into()],
            origin: Some("http://example.com".into()),
            user_agent: Some("sigil-ws/0".into()),
            compression: true,
        };
        let r = request("wss://example.com/", &options);
        assert!(r.contains(
            "\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        ));
        assert!(r.contains("\r\nHost: example.com\r\n"));
        assert!(r.contains("\r\nOrigin: http://example.com\r\n"));
        assert!(r.contains("\r\nSec-WebSocket-Protocol: chat, superchat\r\n"));
        assert!(r.contains("\r\nUser-Agent: sigil-ws/0\r\n"));
        assert!(r.contains("\r\nAuthorization: Bearer t\r\n"));
    }

    #[test]
    fn request_refuses_header_injection() {
        let url = parse_url("ws://h/").unwrap();
        for (name, value) in [
            ("X-A", "v\r\nEvil: 1"),
            ("X-A", "v\nx"),
            ("X-A", "v\0"),
            ("X A", "v"),
            ("X-A\r\n", "v"),
            ("", "v"),
            ("host", "other"),
        ] {
            let options = RequestOptions {
                headers: vec![(name.into(), value.into())],
                ..Default::default()
            };
            assert!(
                matches!(
                    build_request(&url, "K", &options),
                    Err(HandshakeError::InvalidRequestHeader { .. })
                ),
                "{name:?}: {value:?}"
            );
        }
        let options = RequestOptions {
            origin: Some("a\r\nb".into()),
            ..Default::default()
        };
        assert!(build_request(&url, "K", &options).is_err());
        let options = RequestOptions {
            subprotocols: vec!["a b".into()],
            ..Default::default()
        };
        assert!(build_request(&url, "K", &options).is_err());
    }

    fn good_head(key: &str) -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: keep-alive, \
             Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            accept_key(key)
        )
    }

    #[test]
    fn response_parse_keeps_trailing_bytes() {
        let mut buf = good_head("k").into_bytes();
        let head_len = buf.len();
        buf.extend_from_slice(b"\x81\x02hi");
        let (resp, used) = parse_response(&buf).unwrap().unwrap();
        assert_eq!(used, head_len);
        assert_eq!(&buf[used..], b"\x81\x02hi");
        assert_eq!(resp.status, 101);
        assert_eq!(resp.header("upgrade"), Some("WebSocket"));
        validate_response(&resp, "k", &[], false, &[]).unwrap();
    }

    fn validate(head: &str, offered: &[&str]) -> Result<Accepted, HandshakeError> {
        let (resp, used) = parse_response(head.as_bytes()).unwrap().unwrap();
        let offered: Vec<String> = offered.iter().map(|s| s.to_string()).collect();
        validate_response(&resp, "k", &offered, false, &head.as_bytes()[used..])
    }

    #[test]
    fn validation_failures() {
        let accept = accept_key("k");
        let e = validate("HTTP/1.1 403 Forbidden\r\nX: y\r\n\r\nnope", &[]).unwrap_err();
        assert_eq!(
            e,
            HandshakeError::Status {
                status: 403,
                headers: vec![("X".into(), "y".into())],
                body: b"nope".to_vec()
            }
        );
        let e = validate(
            &format!(
                "HTTP/1.1 101 OK\r\nConnection: upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            ),
            &[],
        )
        .unwrap_err();
        assert_eq!(e, HandshakeError::InvalidUpgrade(None));
        let e = validate(
            &format!("HTTP/1.1 101 OK\r\nUpgrade: h2c\r\nConnection: upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"),
            &[],
        )
        .unwrap_err();
        assert_eq!(e, HandshakeError::InvalidUpgrade(Some("h2c".into())));
        let e = validate(
            &format!("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: close\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"),
            &[],
        )
        .unwrap_err();
        assert_eq!(e, HandshakeError::InvalidConnection(Some("close".into())));
        let e = validate(
            "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            &[],
        )
        .unwrap_err();
        assert_eq!(e, HandshakeError::MissingAccept);
        let e = validate(
            "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Accept: xxx\r\n\r\n",
            &[],
        )
        .unwrap_err();
        assert!(matches!(e, HandshakeError::AcceptMismatch { .. }));
        let base = format!(
            "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
        );
        let e = validate(
            &format!("{base}Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"),
            &[],
        )
        .unwrap_err();
        assert_eq!(
            e,
            HandshakeError::UnexpectedExtension("permessage-deflate".into())
        );
        let e = validate(&format!("{base}Sec-WebSocket-Protocol: chat\r\n\r\n"), &[]).unwrap_err();
        assert_eq!(e, HandshakeError::UnexpectedSubprotocol("chat".into()));
        let e = validate(
            &format!("{base}Sec-WebSocket-Protocol: chat, other\r\n\r\n"),
            &["chat", "other"],
        )
        .unwrap_err();
        assert!(matches!(e, HandshakeError::UnexpectedSubprotocol(_)));
        let ok = validate(
            &format!("{base}Sec-WebSocket-Protocol: chat\r\n\r\n"),
            &["x", "chat"],
        )
        .unwrap();
        assert_eq!(ok.subprotocol.as_deref(), Some("chat"));
        assert_eq!(
            validate(&format!("{base}\r\n"), &["chat"])
                .unwrap()
                .subprotocol,
            None
        );
    }

    mod rfc6455_4_1 {
        use super::*;

        fn offered(protocols: &[&str]) -> Vec<String> {
            protocols.iter().map(|s| s.to_string()).collect()
        }

        #[test]
        fn client_handshake_takes_the_response_in_any_pieces() {
            let head = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: chat\r\n\r\n",
                accept_key("k")
            );
            let mut buf = head.clone().into_bytes();
            buf.extend_from_slice(b"\x81\x02hi");
            for cut in 0..=buf.len() {
                let mut phase = ClientHandshake::new("k".into(), offered(&["x", "chat"]), false);
                let first = phase.receive(&buf[..cut], false).unwrap();
                assert_eq!(first.is_some(), cut >= head.len(), "cut at {cut}");
                let (accepted, headers, used) = phase.receive(&buf, false).unwrap().unwrap();
                assert_eq!(accepted.subprotocol.as_deref(), Some("chat"));
                assert_eq!(used, head.len());
                assert_eq!(
                    headers.iter().collect::<Vec<_>>()[..2],
                    [("Upgrade", "websocket"), ("Connection", "Upgrade")]
                );
            }
        }

        #[test]
        fn client_handshake_refuses_what_validation_refuses() {
            let mut phase = ClientHandshake::new("k".into(), vec![], false);
            assert_eq!(phase.receive(b"HTTP/1.1 403 No", false), Ok(None));
            assert!(matches!(
                phase.receive(b"HTTP/1.1 403 No\r\n\r\nbody", false),
                Err(HandshakeError::Status { status: 403, ref body, .. }) if body == b"body"
            ));
        }

        #[test]
        fn client_handshake_fails_at_eof_before_the_head_ends() {
            let mut phase = ClientHandshake::new("k".into(), vec![], false);
            assert_eq!(phase.receive(b"", false), Ok(None));
            assert_eq!(phase.receive(b"", true), Err(HandshakeError::UnexpectedEof));
            let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r";
            for cut in 1..head.len() {
                let mut phase = ClientHandshake::new("k".into(), vec![], false);
                assert_eq!(phase.receive(&head[..cut], false), Ok(None));
                let e = phase.receive(&head[..cut], true).unwrap_err();
                assert_eq!(e, HandshakeError::IncompleteResponse { received: cut });
                assert_eq!(
                    e.to_string(),
                    format!(
                        "connection closed during the opening handshake after {cut} bytes of an \
                         incomplete HTTP response"
                    )
                );
            }
        }

        #[test]
        fn client_handshake_names_a_non_http_answer_without_waiting() {
            let mut phase = ClientHandshake::new("k".into(), vec![], false);
            let tls_alert = b"\x15\x03\x01\x00\x02\x02\x32";
            let e = phase.receive(tls_alert, false).unwrap_err();
            assert_eq!(
                e,
                HandshakeError::Http(HttpError::NotHttp {
                    first_bytes: tls_alert.to_vec()
                })
            );
            assert!(e
                .to_string()
                .ends_with("this looks like TLS; use a wss:// URL"));
        }

        fn head_with(extra: &str) -> String {
            format!(
                "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\n{extra}\r\n",
                accept_key("k")
            )
        }

        #[test]
        fn a_repeated_accept_is_refused_whatever_its_values() {
            let accept = accept_key("k");
            for second in [accept.as_str(), "AAAA"] {
                let e = validate(
                    &head_with(&format!("Sec-WebSocket-Accept: {second}\r\n")),
                    &[],
                )
                .unwrap_err();
                assert_eq!(
                    e,
                    HandshakeError::RepeatedHeader {
                        name: "Sec-WebSocket-Accept",
                        values: vec![accept.clone(), second.to_string()],
                    }
                );
                assert_eq!(
                    e.to_string(),
                    format!("multiple Sec-WebSocket-Accept headers: [{accept:?}, {second:?}]")
                );
            }
        }

        #[test]
        fn an_empty_subprotocol_is_one_that_was_not_offered() {
            for (extra, value, protocols) in [
                ("Sec-WebSocket-Protocol:\r\n", "", &[][..]),
                ("Sec-WebSocket-Protocol: \t\r\n", "", &[]),
                ("Sec-WebSocket-Protocol: ,\r\n", ",", &[]),
                ("Sec-WebSocket-Protocol:\r\n", "", &["chat"]),
            ] {
                assert_eq!(
                    validate(&head_with(extra), protocols),
                    Err(HandshakeError::UnexpectedSubprotocol(value.into())),
                    "{extra:?}"
                );
            }
        }

        #[test]
        fn a_repeated_subprotocol_is_refused() {
            let e = validate(
                &head_with("Sec-WebSocket-Protocol: chat\r\nsec-websocket-protocol: chat\r\n"),
                &["chat"],
            )
            .unwrap_err();
            assert_eq!(
                e,
                HandshakeError::RepeatedHeader {
                    name: "Sec-WebSocket-Protocol",
                    values: offered(&["chat", "chat"]),
                }
            );
        }
    }
}
