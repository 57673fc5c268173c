//! permessage-deflate (RFC 7692): the offer and the negotiation of the server's answer.
//!
//! Pure pieces, no I/O: [`offer`] is our `Sec-WebSocket-Extensions` request value, [`accept`]
//! turns the 101 response's values into negotiated [`Params`] (or refuses them). We offer
//! `client_max_window_bits` without a value, so the server may shrink our window, and accept
//! every valid answer.

use std::borrow::Cow;

use crate::error::ExtensionError;

/// The extension's registered name (RFC 7692 §7).
pub const EXTENSION: &str = "permessage-deflate";

const SERVER_NO_CONTEXT_TAKEOVER: &str = "server_no_context_takeover";
const CLIENT_NO_CONTEXT_TAKEOVER: &str = "client_no_context_takeover";
const SERVER_MAX_WINDOW_BITS: &str = "server_max_window_bits";
const CLIENT_MAX_WINDOW_BITS: &str = "client_max_window_bits";

/// Our `Sec-WebSocket-Extensions` request value.
///
/// `client_max_window_bits` without a value tells the server it may limit the window we compress
/// with (RFC 7692 §7.1.2.2: "a client informs the peer server that the client supports the
/// "client_max_window_bits" extension parameter in an extension negotiation response"), as
/// browsers and websockets offer it.
pub fn offer() -> String {
    format!("{EXTENSION}; {CLIENT_MAX_WINDOW_BITS}")
}

/// What the server accepted: the four parameters of RFC 7692 §7.1, as the response gave them.
///
/// `None` for a window means the parameter was absent: 15 bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Params {
    /// The server resets its compressor after each message (§7.1.1.1).
    pub server_no_context_takeover: bool,
    /// We reset our compressor after each message (§7.1.1.2).
    pub client_no_context_takeover: bool,
    /// The server compresses with at most this window, 8..=15 (§7.1.2.1).
    pub server_max_window_bits: Option<u8>,
    /// We compress with at most this window, 8..=15 (§7.1.2.2).
    pub client_max_window_bits: Option<u8>,
}

impl Params {
    /// The negotiated parameters, for `ws.extensions`: the ones the response carried, in the
    /// fixed order of RFC 7692 §7.1 (not the server's order), windows with their values.
    pub fn describe(&self) -> Vec<(&'static str, Option<String>)> {
        let mut out = Vec::new();
        if self.server_no_context_takeover {
            out.push((SERVER_NO_CONTEXT_TAKEOVER, None));
        }
        if self.client_no_context_takeover {
            out.push((CLIENT_NO_CONTEXT_TAKEOVER, None));
        }
        if let Some(bits) = self.server_max_window_bits {
            out.push((SERVER_MAX_WINDOW_BITS, Some(bits.to_string())));
        }
        if let Some(bits) = self.client_max_window_bits {
            out.push((CLIENT_MAX_WINDOW_BITS, Some(bits.to_string())));
        }
        out
    }

    /// The parameters of one permessage-deflate element of the response.
    fn from_response(params: &[(&str, Option<Cow<'_, str>>)]) -> Result<Params, ExtensionError> {
        // RFC 7692 §7: "A client MUST _Fail the WebSocket Connection_ if the peer server
        // accepted an extension negotiation offer for this extension with an extension
        // negotiation response meeting any of the following conditions: The negotiation
        // response contains an extension parameter not defined for use in a response. The
        // negotiation response contains an extension parameter with an invalid value. The
        // negotiation response contains multiple extension parameters with the same name. The
        // client does not support the configuration that the response represents."
        let mut out = Params::default();
        let mut seen = [false; 4];
        for (name, value) in params {
            let (index, canonical) = match *name {
                SERVER_NO_CONTEXT_TAKEOVER => (0, SERVER_NO_CONTEXT_TAKEOVER),
                CLIENT_NO_CONTEXT_TAKEOVER => (1, CLIENT_NO_CONTEXT_TAKEOVER),
                SERVER_MAX_WINDOW_BITS => (2, SERVER_MAX_WINDOW_BITS),
                CLIENT_MAX_WINDOW_BITS => (3, CLIENT_MAX_WINDOW_BITS),
                other => {
                    return Err(ExtensionError::UnknownParameter {
                        name: other.to_string(),
                    })
                }
            };
            if let Some(seen) = seen.get_mut(index) {
                if *seen {
                    return Err(ExtensionError::DuplicateParameter {
                        name: canonical.to_string(),
                    });
                }
                *seen = true;
            }
            match index {
                // §7.1.1.1, §7.1.1.2: "This extension parameter has no value." A server may
                // send server_no_context_takeover even though we did not ask for it.
                0 | 1 => {
                    if let Some(value) = value {
                        return Err(ExtensionError::UnexpectedValue {
                            name: canonical,
                            value: value.to_string(),
                        });
                    }
                    if index == 0 {
                        out.server_no_context_takeover = true;
                    } else {
                        out.client_no_context_takeover = true;
                    }
                }
                // Both windows need a value in a response: §7.1.2.1 gives server_max_window_bits
                // one everywhere, and a client_max_window_bits without one would answer our
                // valueless offer with no limit at all.
                _ => {
                    let Some(value) = value else {
                        return Err(ExtensionError::MissingValue { name: canonical });
                    };
                    let bits = window_bits(value).ok_or_else(|| ExtensionError::InvalidValue {
                        name: canonical,
                        value: value.to_string(),
                    })?;
                    if index == 2 {
                        out.server_max_window_bits = Some(bits);
                    } else {
                        out.client_max_window_bits = Some(bits);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// A window size parameter's value.
///
/// RFC 7692 §7.1.2.1: "This parameter has a decimal integer value without leading zeroes between
/// 8 to 15, inclusive, indicating the base-2 logarithm of the LZ77 sliding window size, and MUST
/// conform to the ABNF below." (`1*DIGIT`; §7.1.2.2 says the same of client_max_window_bits.)
fn window_bits(value: &str) -> Option<u8> {
    match value.as_bytes() {
        [d @ b'8'..=b'9'] => Some(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Some(10 + d - b'0'),
        _ => None,
    }
}

/// Checks the `Sec-WebSocket-Extensions` values of the 101 response against our [`offer`].
///
/// Returns `None` when the server enabled no extension, the parameters when it accepted
/// permessage-deflate, and an error that names what is wrong otherwise.
pub fn accept(response_values: &[&str]) -> Result<Option<Params>, ExtensionError> {
    let mut accepted = None;
    for value in response_values {
        for (name, params) in parse_extensions(value)? {
            // RFC 6455 §4.1: "If the response includes a |Sec-WebSocket-Extensions| header field
            // and this header field indicates the use of an extension that was not present in the
            // client's handshake (the server has indicated an extension not requested by the
            // client), the client MUST _Fail the WebSocket Connection_."
            if name != EXTENSION {
                return Err(ExtensionError::UnexpectedExtension {
                    name: name.to_string(),
                });
            }
            // RFC 7692 §5: "A server MUST NOT accept a PMCE extension negotiation offer together
            // with another extension if the PMCE will conflict with the extension on their use
            // of the RSV1 bit. A client that received a response accepting a PMCE extension
            // negotiation offer together with such an extension MUST _Fail the WebSocket
            // Connection_." Two permessage-deflate elements would both claim RSV1.
            if accepted.is_some() {
                return Err(ExtensionError::DuplicateExtension {
                    name: name.to_string(),
                });
            }
            accepted = Some(Params::from_response(&params)?);
        }
    }
    Ok(accepted)
}

/// One extension element: its name and its parameters, values unquoted.
type Element<'a> = (&'a str, Vec<(&'a str, Option<Cow<'a, str>>)>);

/// Parses one header value (RFC 6455 §9.1):
///
/// ```text
/// extension-list = 1#extension
/// extension = extension-token *( ";" extension-param )
/// extension-param = token [ "=" (token | quoted-string) ]
/// ```
///
/// with optional whitespace around the separators, and the empty list elements that RFC 7230
/// §7 tells recipients to ignore.
fn parse_extensions(value: &str) -> Result<Vec<Element<'_>>, ExtensionError> {
    let invalid = |why| ExtensionError::InvalidHeader {
        value: value.to_string(),
        why,
    };
    let mut cursor = Cursor {
        text: value,
        pos: 0,
    };
    let mut out = Vec::new();
    loop {
        cursor.skip_ows();
        match cursor.peek() {
            None => return Ok(out),
            Some(b',') => {
                cursor.pos += 1;
                continue;
            }
            Some(_) => {}
        }
        let name = cursor
            .token()
            .ok_or_else(|| invalid("expected an extension name"))?;
        let mut params = Vec::new();
        loop {
            cursor.skip_ows();
            match cursor.peek() {
                None | Some(b',') => break,
                Some(b';') => cursor.pos += 1,
                Some(_) => {
                    return Err(invalid(
                        "expected ';' or ',' after an extension or parameter",
                    ))
                }
            }
            cursor.skip_ows();
            let param = cursor
                .token()
                .ok_or_else(|| invalid("expected a parameter name"))?;
            cursor.skip_ows();
            let param_value = if cursor.peek() == Some(b'=') {
                cursor.pos += 1;
                cursor.skip_ows();
                let v = if cursor.peek() == Some(b'"') {
                    let v = cursor
                        .quoted_string()
                        .ok_or_else(|| invalid("unterminated or invalid quoted-string"))?;
                    // RFC 6455 §9.1: "When using the quoted-string syntax variant, the value
                    // after quoted-string unescaping MUST conform to the 'token' ABNF."
                    if !is_token(&v) {
                        return Err(invalid("quoted parameter value is not a token"));
                    }
                    v
                } else {
                    Cow::Borrowed(
                        cursor
                            .token()
                            .ok_or_else(|| invalid("expected a parameter value"))?,
                    )
                };
                Some(v)
            } else {
                None
            };
            params.push((param, param_value));
        }
        out.push((name, params));
    }
}

/// A position in a header value; it only ever stops on character boundaries, because every byte
/// it steps over alone is ASCII.
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// `token = 1*tchar` (RFC 7230 §3.2.6).
    fn token(&mut self) -> Option<&'a str> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        self.text.get(start..self.pos).filter(|t| !t.is_empty())
    }

    /// `quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE` (RFC 7230 §3.2.6), unescaped.
    /// Called on the opening quote.
    fn quoted_string(&mut self) -> Option<Cow<'a, str>> {
        self.pos += 1;
        let start = self.pos;
        let mut unescaped: Option<String> = None;
        loop {
            let b = self.peek()?;
            match b {
                b'"' => {
                    let raw = self.text.get(start..self.pos)?;
                    self.pos += 1;
                    return Some(unescaped.map_or(Cow::Borrowed(raw), Cow::Owned));
                }
                b'\\' => {
                    let escaped = *self.text.as_bytes().get(self.pos + 1)?;
                    if !(escaped == b'\t' || (0x20..=0x7e).contains(&escaped)) {
                        return None;
                    }
                    let s = unescaped
                        .get_or_insert_with(|| self.text.get(start..self.pos).unwrap_or("").into());
                    s.push(char::from(escaped));
                    self.pos += 2;
                }
                // qdtext, ASCII only: a non-ASCII value could never be a token anyway.
                b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e => {
                    if let Some(s) = unescaped.as_mut() {
                        s.push(char::from(b));
                    }
                    self.pos += 1;
                }
                _ => return None,
            }
        }
    }
}

/// `tchar` (RFC 7230 §3.2.6).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(snct: bool, cnct: bool, sbits: Option<u8>, cbits: Option<u8>) -> Params {
        Params {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            server_max_window_bits: sbits,
            client_max_window_bits: cbits,
        }
    }

    mod rfc7692_5_negotiation {
        use super::*;

        fn ok(values: &[&str]) -> Params {
            match accept(values) {
                Ok(Some(p)) => p,
                other => panic!("{values:?}: {other:?}"),
            }
        }

        fn err(values: &[&str]) -> ExtensionError {
            match accept(values) {
                Err(e) => e,
                other => panic!("{values:?}: {other:?}"),
            }
        }

        #[test]
        fn offer_lets_the_server_limit_our_window() {
            assert_eq!(offer(), "permessage-deflate; client_max_window_bits");
        }

        #[test]
        fn no_extension_is_none() {
            assert_eq!(accept(&[]), Ok(None));
            assert_eq!(accept(&[""]), Ok(None));
            // RFC 7230 §7: empty list elements are ignored.
            assert_eq!(accept(&[" , ,\t", ""]), Ok(None));
        }

        #[test]
        fn accepts_every_valid_answer() {
            assert_eq!(ok(&["permessage-deflate"]), Params::default());
            assert_eq!(ok(&[" , permessage-deflate ,"]), Params::default());
            assert_eq!(
                ok(&["permessage-deflate; server_no_context_takeover"]),
                params(true, false, None, None)
            );
            assert_eq!(
                ok(&["permessage-deflate;client_no_context_takeover"]),
                params(false, true, None, None)
            );
            for bits in 8..=15u8 {
                let s = format!("permessage-deflate; server_max_window_bits={bits}");
                assert_eq!(ok(&[&s]), params(false, false, Some(bits), None), "{s}");
                let c = format!("permessage-deflate; client_max_window_bits={bits}");
                assert_eq!(ok(&[&c]), params(false, false, None, Some(bits)), "{c}");
            }
            assert_eq!(
                ok(&["permessage-deflate ; client_max_window_bits = 9 ;\tserver_max_window_bits=\"10\"; \
                      client_no_context_takeover; server_no_context_takeover"]),
                params(true, true, Some(10), Some(9))
            );
            // A quoted value is unescaped before it is read (RFC 7230 §3.2.6).
            assert_eq!(
                ok(&[r#"permessage-deflate; server_max_window_bits="1\2""#]),
                params(false, false, Some(12), None)
            );
            // One extension, whichever header line it is on.
            assert_eq!(
                ok(&["", "permessage-deflate; client_max_window_bits=15", " "]),
                params(false, false, None, Some(15))
            );
        }

        #[test]
        fn refuses_an_extension_we_did_not_offer() {
            for (values, name) in [
                (&["x-webkit-deflate-frame"][..], "x-webkit-deflate-frame"),
                (&["permessage-deflate, foo"][..], "foo"),
                (&["foo; bar=1, permessage-deflate"][..], "foo"),
                (
                    &["permessage-deflate", "permessage-bzip2"][..],
                    "permessage-bzip2",
                ),
                // Names are tokens, compared exactly.
                (&["Permessage-Deflate"][..], "Permessage-Deflate"),
            ] {
                assert_eq!(
                    err(values),
                    ExtensionError::UnexpectedExtension { name: name.into() },
                    "{values:?}"
                );
            }
        }

        #[test]
        fn refuses_the_extension_twice() {
            let twice = ExtensionError::DuplicateExtension {
                name: "permessage-deflate".into(),
            };
            assert_eq!(err(&["permessage-deflate, permessage-deflate"]), twice);
            assert_eq!(
                err(&[
                    "permessage-deflate; server_no_context_takeover",
                    "permessage-deflate"
                ]),
                twice
            );
            assert_eq!(
                twice.to_string(),
                "server enabled extension \"permessage-deflate\" more than once"
            );
        }

        #[test]
        fn refuses_unknown_parameters() {
            for (value, name) in [
                ("permessage-deflate; foo", "foo"),
                ("permessage-deflate; server_max_window_bits=10; x=1", "x"),
                (
                    "permessage-deflate; Server_No_Context_Takeover",
                    "Server_No_Context_Takeover",
                ),
            ] {
                assert_eq!(
                    err(&[value]),
                    ExtensionError::UnknownParameter { name: name.into() },
                    "{value}"
                );
            }
        }

        #[test]
        fn refuses_duplicate_parameters() {
            for (value, name) in [
                (
                    "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                    SERVER_NO_CONTEXT_TAKEOVER,
                ),
                (
                    "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
                    CLIENT_NO_CONTEXT_TAKEOVER,
                ),
                (
                    "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
                    SERVER_MAX_WINDOW_BITS,
                ),
                (
                    "permessage-deflate; client_max_window_bits=9; client_max_window_bits=12",
                    CLIENT_MAX_WINDOW_BITS,
                ),
            ] {
                assert_eq!(
                    err(&[value]),
                    ExtensionError::DuplicateParameter { name: name.into() },
                    "{value}"
                );
            }
        }

        #[test]
        fn window_sizes_need_a_value() {
            for name in [SERVER_MAX_WINDOW_BITS, CLIENT_MAX_WINDOW_BITS] {
                let value = format!("permessage-deflate; {name}");
                assert_eq!(err(&[&value]), ExtensionError::MissingValue { name });
            }
            assert_eq!(
                ExtensionError::MissingValue {
                    name: CLIENT_MAX_WINDOW_BITS
                }
                .to_string(),
                "permessage-deflate parameter client_max_window_bits requires a value"
            );
        }

        #[test]
        fn window_sizes_are_8_to_15_without_leading_zeroes() {
            for name in [SERVER_MAX_WINDOW_BITS, CLIENT_MAX_WINDOW_BITS] {
                for (raw, value) in [
                    ("7", "7"),
                    ("16", "16"),
                    ("0", "0"),
                    ("08", "08"),
                    ("015", "015"),
                    ("-9", "-9"),
                    ("+9", "+9"),
                    ("9a", "9a"),
                    ("1e1", "1e1"),
                    ("256", "256"),
                    ("\"08\"", "08"),
                ] {
                    let header = format!("permessage-deflate; {name}={raw}");
                    assert_eq!(
                        err(&[&header]),
                        ExtensionError::InvalidValue {
                            name,
                            value: value.into()
                        },
                        "{header}"
                    );
                }
            }
            assert_eq!(
                ExtensionError::InvalidValue {
                    name: SERVER_MAX_WINDOW_BITS,
                    value: "16".into()
                }
                .to_string(),
                "invalid value \"16\" for permessage-deflate parameter server_max_window_bits: \
                 expected 8 to 15"
            );
        }

        #[test]
        fn flags_take_no_value() {
            for name in [SERVER_NO_CONTEXT_TAKEOVER, CLIENT_NO_CONTEXT_TAKEOVER] {
                for (raw, value) in [("1", "1"), ("\"true\"", "true")] {
                    let header = format!("permessage-deflate; {name}={raw}");
                    assert_eq!(
                        err(&[&header]),
                        ExtensionError::UnexpectedValue {
                            name,
                            value: value.into()
                        },
                        "{header}"
                    );
                }
            }
        }

        #[test]
        fn refuses_malformed_headers() {
            for (value, why) in [
                ("permessage-deflate;", "expected a parameter name"),
                ("permessage-deflate; ; x", "expected a parameter name"),
                ("; server_no_context_takeover", "expected an extension name"),
                (
                    "permessage-deflate server_no_context_takeover",
                    "expected ';' or ',' after an extension or parameter",
                ),
                (
                    "permessage-deflate; server_max_window_bits=",
                    "expected a parameter value",
                ),
                (
                    "permessage-deflate; server_max_window_bits=10 10",
                    "expected ';' or ',' after an extension or parameter",
                ),
                (
                    "permessage-deflate; server_max_window_bits=\"10",
                    "unterminated or invalid quoted-string",
                ),
                (
                    "permessage-deflate; server_max_window_bits=\"1\u{0}\"",
                    "unterminated or invalid quoted-string",
                ),
                (
                    "permessage-deflate; server_max_window_bits=\"1 0\"",
                    "quoted parameter value is not a token",
                ),
                (
                    "permessage-deflate; server_max_window_bits=\"\"",
                    "quoted parameter value is not a token",
                ),
                (
                    "permessage-deflate; server_max_window_bits=\"1,0\"",
                    "quoted parameter value is not a token",
                ),
                (
                    "permessage-deflaté",
                    "expected ';' or ',' after an extension or parameter",
                ),
                (
                    "permessage-deflate; a=\"é\"",
                    "unterminated or invalid quoted-string",
                ),
            ] {
                assert_eq!(
                    err(&[value]),
                    ExtensionError::InvalidHeader {
                        value: value.into(),
                        why
                    },
                    "{value}"
                );
            }
        }

        #[test]
        fn describe_lists_what_was_negotiated_in_rfc_order() {
            assert_eq!(Params::default().describe(), vec![]);
            let p = ok(&[
                "permessage-deflate; client_max_window_bits=9; server_max_window_bits=10; \
                          client_no_context_takeover; server_no_context_takeover",
            ]);
            assert_eq!(
                p.describe(),
                vec![
                    (SERVER_NO_CONTEXT_TAKEOVER, None),
                    (CLIENT_NO_CONTEXT_TAKEOVER, None),
                    (SERVER_MAX_WINDOW_BITS, Some("10".to_string())),
                    (CLIENT_MAX_WINDOW_BITS, Some("9".to_string())),
                ]
            );
        }
    }
}
