//! permessage-deflate (RFC 7692): the offer, the answer's negotiation, and the per-message codec.
//!
//! Pure pieces, no I/O: [`offer`] is our `Sec-WebSocket-Extensions` request value, [`accept`]
//! turns the 101 response's values into negotiated [`Params`] (or refuses them), and [`Deflate`]
//! compresses our messages and inflates the server's, message by message and frame by frame.
//!
//! Decisions, each argued where it is implemented:
//! - The codec is zlib-rs (a zlib in Rust, through flate2): [`Compressor`] and [`Inflater`]
//!   wrap one raw DEFLATE stream each way, kept from message to message and reset in place
//!   when the parameters forbid context takeover.
//! - We offer `client_max_window_bits` without a value, so the server may shrink our window, and
//!   we accept every valid answer, `client_max_window_bits=8` included (zlib compresses with 9
//!   bits then, whose matches never reach past 250 bytes: see [`Compressor::new`]).
//! - We inflate with a 32 KiB window whatever the server announced: a larger window accepts
//!   every stream made with a smaller one.
//! - Both states are allocated on first use, so an idle connection that negotiated the
//!   extension costs `size_of::<Deflate>()` and no heap.
//! - The decompressed size is checked while inflating: the output buffer never grows past the
//!   limit, however small the compressed input (a deflate bomb).
//! - Invalid DEFLATE data fails with 1007 ([`DeflateError::close_code`]).

use std::borrow::Cow;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::error::{DeflateError, ExtensionError};

/// The extension's registered name (RFC 7692 §7).
pub const EXTENSION: &str = "permessage-deflate";

/// The largest LZ77 window, 32 KiB (RFC 1951 §2: distances are at most 32,768).
const MAX_WINDOW_BITS: u8 = 15;
const WINDOW: usize = 1 << MAX_WINDOW_BITS;

/// At most 2^6 - 1 = 63 messages go uncompressed between two tries (see `compress_message`).
const MAX_BACKOFF: u8 = 6;

/// The smallest window RFC 7692 §7.1.2.2 allows a server to ask of us.
const MIN_WINDOW_BITS: u8 = 8;

/// The 4 octets that end a sync flush (the LEN and NLEN of an empty stored block): RFC 7692
/// §7.2.1 removes them from each compressed message and §7.2.2 appends them before inflating.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Our compression level: zlib-rs's fastest, 1 (its "quick" strategy: hash-chain-free matches
/// and the fixed Huffman codes, or stored blocks).
const LEVEL: u32 = 1;

/// Room kept at the end of a compressed message's buffer before each call to zlib.
const SLACK: usize = 64;

/// The smallest step by which an inflated message's buffer grows.
const GROW: usize = 4096;

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

/// The window our compressor keeps to for a negotiated `client_max_window_bits` (15 when
/// absent). Values outside 8..=15 can only come from a hand-built [`Params`]; they are clamped.
fn compress_window_bits(client_max_window_bits: Option<u8>) -> u8 {
    client_max_window_bits
        .unwrap_or(MAX_WINDOW_BITS)
        .clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS)
}

/// Our messages' compressor: zlib-rs (through flate2) writing one raw DEFLATE stream, which
/// goes on from message to message unless client_no_context_takeover was agreed.
struct Compressor {
    z: Compress,
}

impl Compressor {
    /// A compressor whose matches stay within `bits` of window.
    ///
    /// zlib refuses a raw stream with a window of 8 bits and makes it 9 ("until 256-byte window
    /// bug fixed", zlib-rs says, as zlib does). That still honours 8: zlib's matches reach at
    /// most the window less its look-ahead back (`MAX_DIST`: 512 - 262 = 250 bytes for 9 bits,
    /// enforced by every one of zlib-rs's match finders), inside the 256 bytes a server that
    /// asked for client_max_window_bits=8 keeps. `client_window_8_compresses_for_a_256_byte_window`
    /// checks it with an inflater that refuses any distance beyond 256.
    fn new(bits: u8) -> Compressor {
        Compressor {
            z: Compress::new_with_window_bits(Compression::new(LEVEL), false, bits.max(9)),
        }
    }

    /// Compresses `input` onto `out`'s end, growing `out` while zlib wants more room.
    fn run(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        flush: FlushCompress,
    ) -> Result<(), DeflateError> {
        loop {
            if out.capacity() - out.len() < SLACK {
                // Stored blocks cost 5 bytes per 65,535: the input and a little more is
                // almost always enough; `reserve` doubles the capacity when it is not.
                out.reserve(input.len() + input.len() / 1024 + SLACK);
            }
            let before = self.z.total_in();
            self.z
                .compress_vec(input, out, flush)
                .map_err(|e| DeflateError::Compress {
                    reason: e.message().unwrap_or("zlib stream error").to_string(),
                })?;
            let used = usize::try_from(self.z.total_in() - before).unwrap_or(usize::MAX);
            input = input.get(used..).unwrap_or_default();
            // zlib stops with room left only when it has nothing more to write (the flush, if
            // any, complete: zlib's deflate() "must be called again" only when it filled the
            // output).
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(());
            }
        }
    }

    /// Compresses a message (`parts` concatenated) onto `out`'s end as RFC 7692 §7.2.1 says:
    /// "1. Compress all the octets of the payload of the message using DEFLATE. 2. If the
    /// resulting data does not end with an empty DEFLATE block with no compression (the "BTYPE"
    /// bits are set to 00), append an empty DEFLATE block with no compression to the tail end.
    /// 3. Remove 4 octets (that are 0x00 0x00 0xff 0xff) from the tail end." A sync flush ends
    /// the data with that empty block; with `keep_tail` its 4 octets stay (a fragment that is
    /// not the message's last, see [`Deflate::compress_fragment`]).
    fn compress(
        &mut self,
        parts: &[&[u8]],
        out: &mut Vec<u8>,
        keep_tail: bool,
    ) -> Result<(), DeflateError> {
        let start = out.len();
        let result = self
            .compress_parts(parts, out)
            .and_then(|()| end_message(out, start, keep_tail));
        if result.is_err() {
            // The stream may be cut anywhere: start a new one (the server's next message
            // cannot refer to what it never got).
            out.truncate(start);
            self.reset();
        }
        result
    }

    fn compress_parts(&mut self, parts: &[&[u8]], out: &mut Vec<u8>) -> Result<(), DeflateError> {
        let total: usize = parts.iter().map(|part| part.len()).sum();
        out.reserve(total + total / 1024 + SLACK);
        let Some((last, rest)) = parts.split_last() else {
            return self.run(&[], out, FlushCompress::Sync);
        };
        for part in rest {
            self.run(part, out, FlushCompress::None)?;
        }
        self.run(last, out, FlushCompress::Sync)
    }

    /// Forgets every message before: the next starts with an empty window.
    fn reset(&mut self) {
        self.z.reset();
    }
}

/// Ends a compressed message that zlib's sync flush left at `out[start..]`: its last 4 octets
/// removed unless `keep_tail`.
fn end_message(out: &mut Vec<u8>, start: usize, keep_tail: bool) -> Result<(), DeflateError> {
    if out.get(start..).is_some_and(|data| data.ends_with(&TAIL)) {
        if !keep_tail {
            out.truncate(out.len() - TAIL.len());
        }
    } else if out.len() == start {
        // zlib writes nothing for a flush right after another with no input between (an
        // empty message after an empty one): the empty stored block is ours to write,
        // 0x00 (§7.2.3.6) or, with its length octets, 0x00 0x00 0x00 0xff 0xff.
        out.push(0x00);
        if keep_tail {
            out.extend_from_slice(&TAIL);
        }
    } else {
        return Err(DeflateError::Compress {
            reason: "the sync flush did not end the data with an empty stored block".into(),
        });
    }
    Ok(())
}

/// The server's messages' inflater: zlib-rs (through flate2), writing straight into the
/// engine's message buffer, with a 32 KiB window whatever the server announced (a larger window
/// accepts every stream made with a smaller one).
struct Inflater {
    z: Decompress,
    /// Bytes of the current message inflated so far.
    produced: u64,
    /// Bytes of the current message's compressed payload inflated so far (for error offsets).
    consumed: u64,
    /// A block with BFINAL set ended the stream, which then restarted, and nothing was fed
    /// since.
    restarted: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("produced", &self.produced)
            .field("consumed", &self.consumed)
            .field("restarted", &self.restarted)
            .finish_non_exhaustive()
    }
}

impl Inflater {
    fn new() -> Inflater {
        Inflater {
            z: Decompress::new_with_window_bits(false, MAX_WINDOW_BITS),
            produced: 0,
            consumed: 0,
            restarted: false,
        }
    }

    fn begin(&mut self) {
        self.produced = 0;
        self.consumed = 0;
    }

    /// Inflates `input` onto `out`'s end; `limit` bounds the bytes of the message inflated
    /// since [`begin`](Self::begin).
    fn run(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        limit: Option<usize>,
    ) -> Result<(), DeflateError> {
        loop {
            let room = limit.map(|limit| (limit as u64).saturating_sub(self.produced));
            let (before_in, before_out) = (self.z.total_in(), self.z.total_out());
            // Whether zlib stopped for want of output room rather than of input.
            let filled;
            let status = if out.len() == out.capacity() && room == Some(0) {
                // The message reached the limit: whether it goes past it shows in a few bytes
                // of scratch, and `out` never grows for it.
                let mut probe = [0u8; 256];
                let status = self.z.decompress(input, &mut probe, FlushDecompress::None);
                filled = self.z.total_out() - before_out == probe.len() as u64;
                status
            } else {
                if out.len() == out.capacity() {
                    // Geometric growth, guessing 4x from the input; never past the limit.
                    let want = out.len().max(input.len().saturating_mul(4)).max(GROW);
                    let want =
                        room.map_or(want, |room| want.min(usize::try_from(room).unwrap_or(want)));
                    out.reserve_exact(want);
                }
                let status = self.z.decompress_vec(input, out, FlushDecompress::None);
                filled = out.len() == out.capacity();
                status
            };
            let used = self.z.total_in() - before_in;
            let made = self.z.total_out() - before_out;
            self.consumed += used;
            self.produced += made;
            input = input
                .get(usize::try_from(used).unwrap_or(usize::MAX)..)
                .unwrap_or_default();
            if used > 0 {
                self.restarted = false;
            }
            match status {
                Err(e) => {
                    return Err(DeflateError::InvalidData {
                        offset: self.consumed,
                        reason: e.message().unwrap_or("invalid deflate data").to_string(),
                    })
                }
                Ok(Status::StreamEnd) => self.restart(out),
                Ok(Status::Ok | Status::BufError) => {}
            }
            if let Some(limit) = limit {
                if self.produced > limit as u64 {
                    return Err(DeflateError::TooBig {
                        size: self.produced,
                        limit,
                    });
                }
            }
            // zlib stops with room left only when the input is used up (or it cannot go on).
            if !filled && input.is_empty() {
                return Ok(());
            }
            if !filled && used == 0 && made == 0 {
                return Err(DeflateError::InvalidData {
                    offset: self.consumed,
                    reason: "the inflater made no progress".into(),
                });
            }
        }
    }

    /// A block with BFINAL set ended the DEFLATE stream. §7.2.1: "The next DEFLATE block
    /// follows the padded data if any", so a new stream starts, its window the end of the
    /// message's output that `out` still holds (a sender that ends its stream this way may
    /// refer to it; earlier output, handed out or of earlier messages, is gone).
    fn restart(&mut self, out: &[u8]) {
        self.z.reset(false);
        let kept = usize::try_from(self.produced).map_or(out.len(), |n| n.min(out.len()));
        let window = out.get(out.len() - kept.min(WINDOW)..).unwrap_or_default();
        if !window.is_empty() {
            // A raw stream takes a dictionary right after a reset; it cannot fail then.
            let _ = self.z.set_dictionary(window);
        }
        self.restarted = true;
    }

    /// Inflates the message's last payload and the tail RFC 7692 §7.2.2 appends ("1. Append
    /// 4 octets of 0x00 0x00 0xff 0xff to the tail end of the payload of the message. 2.
    /// Decompress the resulting data using DEFLATE."); `keep` tells whether the next message may
    /// refer to this one.
    fn finish(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: Option<usize>,
        keep: bool,
    ) -> Result<(), DeflateError> {
        let result = self.run(input, out, limit).and_then(|()| {
            // An empty payload (which §7.2.1 never produces: an empty message is 0x00) is an
            // empty message: the tail alone would start a stored block of 65,280 bytes. After
            // a final block and nothing else the message is complete: the tail would be the
            // start of the next stream.
            if self.consumed == 0 || self.restarted {
                return Ok(());
            }
            self.run(&TAIL, out, limit)
        });
        if result.is_err() || !keep {
            // After an error the stream is lost anyway (the connection fails).
            self.z.reset(false);
            self.restarted = false;
        }
        result
    }
}

/// The per-message codec of one connection: compresses our messages, inflates the server's.
///
/// The compressor and the inflater are allocated on first use and kept between messages
/// (reset in place when the parameters forbid context takeover).
pub struct Deflate {
    params: Params,
    compressor: Option<Box<Compressor>>,
    inflater: Option<Box<Inflater>>,
    /// Per kind of message (text, binary): messages still to send as they are, and the
    /// back-off exponent (see `compress_message`).
    skip: [u8; 2],
    backoff: [u8; 2],
}

impl std::fmt::Debug for Deflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflate")
            .field("params", &self.params)
            .field("compressor", &self.compressor.is_some())
            .field("inflater", &self.inflater)
            .finish_non_exhaustive()
    }
}

impl Deflate {
    /// A codec for the negotiated parameters; allocates nothing yet.
    pub fn new(params: Params) -> Deflate {
        Deflate {
            params,
            compressor: None,
            inflater: None,
            skip: [0; 2],
            backoff: [0; 2],
        }
    }

    /// The negotiated parameters.
    pub fn params(&self) -> Params {
        self.params
    }

    /// Appends the compressed payload of one message, the concatenation of `parts`, to `out`.
    ///
    /// The payload goes out in one frame or several, with RSV1 on the first only. On error
    /// `out` is left as it was.
    pub fn compress(&mut self, parts: &[&[u8]], out: &mut Vec<u8>) -> Result<(), DeflateError> {
        let no_context = self.params.client_no_context_takeover;
        let compressor = self.compressor();
        compressor.compress(parts, out, false)?;
        // RFC 7692 §7.1.1.2: with client_no_context_takeover the server may decompress each
        // message with an empty window, so the next one must not refer to this one.
        if no_context {
            compressor.reset();
        }
        Ok(())
    }

    /// The compressor, made on first use (an idle connection never holds one).
    fn compressor(&mut self) -> &mut Compressor {
        let bits = compress_window_bits(self.params.client_max_window_bits);
        self.compressor
            .get_or_insert_with(|| Box::new(Compressor::new(bits)))
    }

    /// Compresses one fragment of a message sent in pieces, appending its deflate data to
    /// `out`. The fragments' payloads are one DEFLATE stream (RFC 7692 §6.1 compresses the
    /// message, then fragments it). Each fragment but the last ends with a whole sync flush (the
    /// empty stored block with its four length octets), so that everything it holds can be
    /// inflated before the next fragment comes and the next starts on a byte boundary; the
    /// last ends as a whole message does (§7.2.1: those four octets removed). An empty fragment
    /// that is not the last adds nothing. The fragments refer to each other; the context is
    /// dropped after the last when client_no_context_takeover was agreed (§7.1.1.2).
    pub fn compress_fragment(
        &mut self,
        data: &[u8],
        fin: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), DeflateError> {
        if data.is_empty() && !fin {
            return Ok(());
        }
        let no_context = self.params.client_no_context_takeover;
        let compressor = self.compressor();
        compressor.compress(&[data], out, !fin)?;
        if fin && no_context {
            compressor.reset();
        }
        Ok(())
    }

    /// Compresses one message for sending: appends its payload to `out` and returns true, or
    /// returns false with `out` unchanged when the message is better sent as it is.
    ///
    /// RFC 7692 §2: the RSV1 bit tells "whether a message is compressed or not, so that an
    /// endpoint can choose not to compress messages with incompressible contents". Two rules
    /// use that, kept apart for text and binary messages (`binary`):
    ///
    /// - Back-off: a message that deflate shrinks by less than an eighth (images, archives,
    ///   encrypted or already compressed data) makes the next 1, then 3, 7… up to 63 messages
    ///   of its kind go out as they are, without compressing them, before the next one is
    ///   tried again; one that shrinks well ends the back-off. Messages never given to the
    ///   compressor are in neither window, so the windows stay in step. On Autobahn's
    ///   compression cases this halves the client's CPU (a bitmap and a PDF are two of its five
    ///   data sets), and on a stream of such data it costs nothing but the probes.
    /// - Incompressible data goes in stored blocks, 5 bytes per 65,535 longer. A message at
    ///   least as long as the window that deflate made longer is sent as it is; the compressor
    ///   is then reset, because the server's window never holds that message and our next
    ///   messages must not refer to it. The reset (clearing the history) forgets nothing of
    ///   value: the window held only that message. Shorter messages keep their deflate form, a
    ///   few bytes more at most.
    pub fn compress_message(
        &mut self,
        data: &[u8],
        binary: bool,
        out: &mut Vec<u8>,
    ) -> Result<bool, DeflateError> {
        let kind = usize::from(binary);
        if let Some(left) = self.skip.get_mut(kind).filter(|left| **left > 0) {
            *left -= 1;
            return Ok(false);
        }
        let start = out.len();
        self.compress(&[data], out)?;
        let size = out.len() - start;
        if !data.is_empty() {
            let (skip, backoff) = (&mut self.skip[kind], &mut self.backoff[kind]);
            if 8 * size > 7 * data.len() {
                *backoff = (*backoff + 1).min(MAX_BACKOFF);
                *skip = (1 << *backoff) - 1;
            } else {
                *backoff = 0;
            }
        }
        let window = 1usize << compress_window_bits(self.params.client_max_window_bits);
        if data.len() >= window && size > data.len() {
            out.truncate(start);
            if let Some(compressor) = self.compressor.as_mut() {
                compressor.reset();
            }
            return Ok(false);
        }
        Ok(true)
    }

    /// Starts inflating a compressed message (the first frame had RSV1).
    pub fn begin_message(&mut self) {
        if let Some(inflater) = self.inflater.as_mut() {
            inflater.begin();
        }
    }

    /// Inflates the payload of a frame of the message that is not its last, appending to `out`
    /// (the engine's message buffer, which may hold earlier output of the message, or the
    /// part of it not handed out yet).
    ///
    /// `limit` bounds the decompressed size of the message since
    /// [`begin_message`](Self::begin_message): past it the call fails with
    /// [`DeflateError::TooBig`], and `out` was never reallocated past the limit's worth of the
    /// message (spare capacity it already had may be filled).
    pub fn feed(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: Option<usize>,
    ) -> Result<(), DeflateError> {
        if input.is_empty() {
            return Ok(());
        }
        self.inflater().run(input, out, limit)
    }

    /// Inflates the payload of the message's last frame and ends the message: inflates what
    /// the compressed tail releases, and forgets the window when the server does not keep its
    /// context.
    pub fn feed_last(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: Option<usize>,
    ) -> Result<(), DeflateError> {
        let keep = !self.params.server_no_context_takeover;
        if input.is_empty() && self.inflater.is_none() {
            return Ok(());
        }
        self.inflater().finish(input, out, limit, keep)
    }

    /// Ends the message after its last frame went to [`feed`](Self::feed):
    /// [`feed_last`](Self::feed_last) with no more payload.
    pub fn finish(&mut self, out: &mut Vec<u8>, limit: Option<usize>) -> Result<(), DeflateError> {
        self.feed_last(&[], out, limit)
    }

    /// Inflates a whole single-frame message: [`begin_message`](Self::begin_message) and
    /// [`feed_last`](Self::feed_last).
    pub fn decompress(
        &mut self,
        payload: &[u8],
        out: &mut Vec<u8>,
        limit: Option<usize>,
    ) -> Result<(), DeflateError> {
        self.begin_message();
        self.feed_last(payload, out, limit)
    }

    fn inflater(&mut self) -> &mut Inflater {
        self.inflater
            .get_or_insert_with(|| Box::new(Inflater::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
    use proptest::prelude::*;

    /// Deterministic bytes: xorshift, so tests need no randomness source.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// JSON-like text that compresses about 5x.
    fn json(len: usize, seed: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 64);
        let mut i = seed;
        while out.len() < len {
            out.extend_from_slice(
                format!(
                    r#"{{"sym":"BTC{}","px":{}.{},"qty":{}}},"#,
                    i % 7,
                    30000 + i % 97,
                    i % 10,
                    i % 13
                )
                .as_bytes(),
            );
            i = i
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407)
                >> 3;
        }
        out.truncate(len);
        out
    }

    fn params(snct: bool, cnct: bool, sbits: Option<u8>, cbits: Option<u8>) -> Params {
        Params {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            server_max_window_bits: sbits,
            client_max_window_bits: cbits,
        }
    }

    fn inflate_one(d: &mut Deflate, payload: &[u8]) -> Result<Vec<u8>, DeflateError> {
        let mut out = Vec::new();
        d.decompress(payload, &mut out, None)?;
        Ok(out)
    }

    /// One message inflated by zlib-rs with a window of exactly 2^`bits` (9..=15) bytes, as a
    /// server that negotiated client_max_window_bits=`bits` inflates it; panics on an error.
    fn zlib_inflate(payload: &[u8], bits: u8) -> Vec<u8> {
        let mut d = Decompress::new_with_window_bits(false, bits);
        zlib_inflate_with(&mut d, payload).unwrap()
    }

    /// One message (tail appended) through `d`, whose window goes on to the next message.
    ///
    /// A compatibility check, not a distance check: zlib-rs keeps a 32 KiB window whatever
    /// its window bits, and accepts a match up to that far back (see
    /// `the_reference_inflater_enforces_its_window`); `reference_inflate` checks distances.
    fn zlib_inflate_with(d: &mut Decompress, payload: &[u8]) -> Result<Vec<u8>, String> {
        let mut input = payload.to_vec();
        input.extend_from_slice(&TAIL);
        let mut out = Vec::with_capacity(4 * input.len() + 64);
        let mut input = &input[..];
        loop {
            let before = d.total_in();
            d.decompress_vec(input, &mut out, FlushDecompress::Sync)
                .map_err(|e| e.to_string())?;
            input = &input[(d.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
            out.reserve(out.capacity());
        }
    }

    fn deflate_one(d: &mut Deflate, message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        d.compress(&[message], &mut out).unwrap();
        out
    }

    /// A server's compressor: flate2 at `bits` (9 when 8 is asked, as zlib does), sync flush,
    /// tail stripped, reset after each message when `reset`.
    struct Server {
        c: Compress,
        reset: bool,
    }

    impl Server {
        fn new(bits: u8, reset: bool) -> Server {
            Server {
                c: Compress::new_with_window_bits(Compression::default(), false, bits.max(9)),
                reset,
            }
        }

        fn send(&mut self, message: &[u8]) -> Vec<u8> {
            let mut out = Vec::with_capacity(message.len() + 64);
            self.c
                .compress_vec(message, &mut out, FlushCompress::Sync)
                .unwrap();
            assert!(out.ends_with(&TAIL));
            out.truncate(out.len() - 4);
            if self.reset {
                self.c.reset();
            }
            out
        }
    }

    #[test]
    fn deflate_is_send_and_small() {
        fn assert_send<T: Send>() {}
        assert_send::<Deflate>();
        // Idle connections hold only this until the first compressed message.
        assert!(
            std::mem::size_of::<Deflate>() <= 64,
            "{}",
            std::mem::size_of::<Deflate>()
        );
    }

    /// A reference inflater after zlib's puff.c: appends the message `payload` (tail added)
    /// inflates to, to `history`, the output of the earlier messages, and fails on any match
    /// farther back than `window` bytes, as a server inflating with that window would.
    fn reference_inflate(
        payload: &[u8],
        window: usize,
        history: &mut Vec<u8>,
    ) -> Result<(), String> {
        struct Bits<'a> {
            data: &'a [u8],
            pos: usize,
            buf: u32,
            cnt: u32,
        }
        impl Bits<'_> {
            fn need(&mut self, n: u32) -> Result<u32, String> {
                while self.cnt < n {
                    let b = *self.data.get(self.pos).ok_or("out of input")?;
                    self.buf |= u32::from(b) << self.cnt;
                    self.cnt += 8;
                    self.pos += 1;
                }
                let v = self.buf & ((1 << n) - 1);
                self.buf >>= n;
                self.cnt -= n;
                Ok(v)
            }
        }
        struct Huffman {
            count: [u16; 16],
            symbol: Vec<u16>,
        }
        fn build(lengths: &[u8]) -> Huffman {
            let mut count = [0u16; 16];
            for &l in lengths {
                count[l as usize] += 1;
            }
            let mut offs = [0u16; 16];
            for len in 1..15 {
                offs[len + 1] = offs[len] + count[len];
            }
            let mut symbol = vec![0; lengths.len()];
            for (sym, &l) in lengths.iter().enumerate() {
                if l != 0 {
                    symbol[offs[l as usize] as usize] = sym as u16;
                    offs[l as usize] += 1;
                }
            }
            Huffman { count, symbol }
        }
        fn decode(b: &mut Bits, h: &Huffman) -> Result<u16, String> {
            let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
            for len in 1..16 {
                code |= b.need(1)? as i32;
                let count = i32::from(h.count[len]);
                if code - count < first {
                    return Ok(h.symbol[(index + code - first) as usize]);
                }
                index += count;
                first = (first + count) << 1;
                code <<= 1;
            }
            Err("invalid code".into())
        }
        const LBASE: [u16; 29] = [
            3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99,
            115, 131, 163, 195, 227, 258,
        ];
        const LEXT: [u32; 29] = [
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
        ];
        const DBASE: [u16; 30] = [
            1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025,
            1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
        ];
        const DEXT: [u32; 30] = [
            0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12,
            12, 13, 13,
        ];
        const ORDER: [usize; 19] = [
            16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
        ];
        let mut data = payload.to_vec();
        data.extend_from_slice(&TAIL);
        let mut b = Bits {
            data: &data,
            pos: 0,
            buf: 0,
            cnt: 0,
        };
        // Blocks until the input ends on a block boundary (the tail's empty stored block).
        while b.pos < data.len() {
            let _bfinal = b.need(1)?;
            match b.need(2)? {
                0 => {
                    b.buf = 0;
                    b.cnt = 0;
                    let len = b.need(16)?;
                    if b.need(16)? != !len & 0xffff {
                        return Err("stored lengths".into());
                    }
                    for _ in 0..len {
                        history.push(b.need(8)? as u8);
                    }
                }
                btype @ (1 | 2) => {
                    let (lencode, distcode) = if btype == 1 {
                        let mut l = [8u8; 288];
                        l[144..256].fill(9);
                        l[256..280].fill(7);
                        (build(&l), build(&[5; 30]))
                    } else {
                        let nlen = b.need(5)? as usize + 257;
                        let ndist = b.need(5)? as usize + 1;
                        let ncode = b.need(4)? as usize + 4;
                        let mut cl = [0u8; 19];
                        for &i in &ORDER[..ncode] {
                            cl[i] = b.need(3)? as u8;
                        }
                        let clcode = build(&cl);
                        let mut lengths = Vec::new();
                        while lengths.len() < nlen + ndist {
                            let (value, times) = match decode(&mut b, &clcode)? {
                                sym @ 0..=15 => (sym as u8, 1),
                                16 => (*lengths.last().ok_or("repeat first")?, 3 + b.need(2)?),
                                17 => (0, 3 + b.need(3)?),
                                _ => (0, 11 + b.need(7)?),
                            };
                            lengths.extend(std::iter::repeat_n(value, times as usize));
                        }
                        (build(&lengths[..nlen]), build(&lengths[nlen..]))
                    };
                    loop {
                        let sym = decode(&mut b, &lencode)? as usize;
                        if sym < 256 {
                            history.push(sym as u8);
                            continue;
                        }
                        if sym == 256 {
                            break;
                        }
                        let len = LBASE[sym - 257] as usize + b.need(LEXT[sym - 257])? as usize;
                        let d = decode(&mut b, &distcode)? as usize;
                        let dist = DBASE[d] as usize + b.need(DEXT[d])? as usize;
                        if dist > window {
                            return Err(format!(
                                "match {dist} bytes back, beyond the {window}-byte window"
                            ));
                        }
                        if dist > history.len() {
                            return Err("match before the start".into());
                        }
                        for _ in 0..len {
                            history.push(history[history.len() - dist]);
                        }
                    }
                }
                _ => return Err("invalid block type".into()),
            }
        }
        Ok(())
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

    mod rfc7692_7_2_3_examples {
        use super::*;

        pub(super) const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

        #[test]
        fn one_compressed_block() {
            // §7.2.3.1: "Hello" compressed, byte for byte, and inflated back.
            let mut d = Deflate::new(Params::default());
            assert_eq!(deflate_one(&mut d, b"Hello"), HELLO);
            assert_eq!(inflate_one(&mut d, &HELLO).unwrap(), b"Hello");
        }

        #[test]
        fn one_compressed_block_in_two_frames() {
            // §7.2.3.1: the same payload split over a text frame and a continuation frame.
            let mut d = Deflate::new(Params::default());
            let mut out = Vec::new();
            d.begin_message();
            d.feed(&[0xf2, 0x48, 0xcd], &mut out, None).unwrap();
            d.feed(&[0xc9, 0xc9, 0x07, 0x00], &mut out, None).unwrap();
            d.finish(&mut out, None).unwrap();
            assert_eq!(out, b"Hello");
        }

        #[test]
        fn sharing_the_window() {
            // §7.2.3.2: with context takeover the second "Hello" is a back-reference (the RFC's
            // bytes are zlib's at its default level; ours are our encoder's, as short).
            let mut d = Deflate::new(Params::default());
            let first = deflate_one(&mut d, b"Hello");
            assert_eq!(first, HELLO);
            let second = deflate_one(&mut d, b"Hello");
            assert!(second.len() < first.len(), "{second:02x?}");
            let mut shared = Deflate::new(Params::default());
            assert_eq!(inflate_one(&mut shared, &first).unwrap(), b"Hello");
            assert_eq!(inflate_one(&mut shared, &second).unwrap(), b"Hello");
            // Alone, the back-reference points before the start of the window.
            assert!(inflate_one(&mut Deflate::new(Params::default()), &second).is_err());
            // The RFC's own bytes for the second message inflate the same way.
            let mut rfc = Deflate::new(Params::default());
            assert_eq!(inflate_one(&mut rfc, &HELLO).unwrap(), b"Hello");
            assert_eq!(
                inflate_one(&mut rfc, &[0xf2, 0x00, 0x11, 0x00, 0x00]).unwrap(),
                b"Hello"
            );
        }

        #[test]
        fn no_context_takeover_compresses_each_message_alone() {
            // §7.1.1.2: the second "Hello" must not refer to the first.
            let mut d = Deflate::new(params(false, true, None, None));
            assert_eq!(deflate_one(&mut d, b"Hello"), HELLO);
            assert_eq!(deflate_one(&mut d, b"Hello"), HELLO);
        }

        #[test]
        fn a_block_with_no_compression() {
            // §7.2.3.3: a stored block.
            let payload = [
                0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
            ];
            let mut d = Deflate::new(Params::default());
            assert_eq!(inflate_one(&mut d, &payload).unwrap(), b"Hello");
            // The window goes on: the next message may refer to it.
            assert_eq!(
                inflate_one(&mut d, &[0xf2, 0x00, 0x11, 0x00, 0x00]).unwrap(),
                b"Hello"
            );
        }

        #[test]
        fn a_block_with_bfinal_set() {
            // §7.2.3.4: a final block, then 0x00 so that the tail makes an empty stored block.
            let payload = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
            let mut d = Deflate::new(Params::default());
            assert_eq!(inflate_one(&mut d, &payload).unwrap(), b"Hello");
            // The inflater was restarted with the message as its window: the next message
            // inflates, and may refer to "Hello".
            assert_eq!(inflate_one(&mut d, &HELLO).unwrap(), b"Hello");
            assert_eq!(
                inflate_one(&mut d, &[0xf2, 0x00, 0x11, 0x00, 0x00]).unwrap(),
                b"Hello"
            );
        }

        #[test]
        fn a_block_with_bfinal_set_and_nothing_after() {
            // A sender that ends with the final block and no padding octet: the message is
            // complete, and the next one inflates.
            let payload = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
            let mut d = Deflate::new(Params::default());
            assert_eq!(inflate_one(&mut d, &payload).unwrap(), b"Hello");
            assert_eq!(inflate_one(&mut d, &HELLO).unwrap(), b"Hello");
        }

        #[test]
        fn blocks_after_a_final_block_in_one_message() {
            // §7.2.1: "The next DEFLATE block follows the padded data if any." A final block
            // with "Hello", then "Hello" again as a back-reference into it, in one message.
            let mut c = Compress::new(Compression::default(), false);
            let mut first = Vec::with_capacity(64);
            c.compress_vec(b"Hello", &mut first, FlushCompress::Finish)
                .unwrap();
            let mut payload = first.clone();
            payload.extend_from_slice(&[0xf2, 0x00, 0x11, 0x00, 0x00]);
            let mut d = Deflate::new(Params::default());
            assert_eq!(inflate_one(&mut d, &payload).unwrap(), b"HelloHello");
            // Split at every byte, over two frames.
            for cut in 0..=payload.len() {
                let mut d = Deflate::new(Params::default());
                let mut out = Vec::new();
                d.begin_message();
                d.feed(&payload[..cut], &mut out, None).unwrap();
                d.feed(&payload[cut..], &mut out, None).unwrap();
                d.finish(&mut out, None).unwrap();
                assert_eq!(out, b"HelloHello", "cut at {cut}");
            }
        }

        #[test]
        fn two_blocks_in_one_message() {
            // §7.2.3.5: two compressed blocks, the first ended by a sync flush.
            let payload = [
                0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
            ];
            let mut d = Deflate::new(Params::default());
            assert_eq!(inflate_one(&mut d, &payload).unwrap(), b"Hello");
        }

        #[test]
        fn an_empty_message_is_one_octet() {
            // §7.2.3.6: an empty stored block's header and padding, 0x00.
            for p in [Params::default(), params(true, true, Some(8), Some(8))] {
                let mut d = Deflate::new(p);
                assert_eq!(deflate_one(&mut d, b""), [0x00]);
                assert_eq!(deflate_one(&mut d, b"Hello"), HELLO);
                assert_eq!(deflate_one(&mut d, b""), [0x00]);
                assert_eq!(inflate_one(&mut d, &[0x00]).unwrap(), b"");
                assert_eq!(inflate_one(&mut d, &HELLO).unwrap(), b"Hello");
            }
        }

        #[test]
        fn an_empty_payload_is_an_empty_message() {
            // Not what §7.2.1 produces, but harmless: it must not derail the next message.
            let mut d = Deflate::new(Params::default());
            assert_eq!(inflate_one(&mut d, &[]).unwrap(), b"");
            assert_eq!(inflate_one(&mut d, &HELLO).unwrap(), b"Hello");
        }
    }

    mod rfc7692_7_1_2_window_bits {
        use super::*;

        #[test]
        fn inflates_every_server_window() {
            // §7.1.2.1: the server may compress with 8..=15 bits; zlib makes 9 of 8.
            for bits in 8..=15u8 {
                for snct in [false, true] {
                    let mut server = Server::new(bits, snct);
                    let mut d = Deflate::new(params(snct, false, Some(bits), None));
                    for (i, len) in [0usize, 1, 100, 3000, 70_000].into_iter().enumerate() {
                        let message = json(len, i as u64 + u64::from(bits));
                        let payload = server.send(&message);
                        assert_eq!(
                            inflate_one(&mut d, &payload).unwrap(),
                            message,
                            "{bits} {snct}"
                        );
                    }
                }
            }
        }

        #[test]
        fn the_reference_inflater_enforces_its_window() {
            // The check below would prove nothing if the reference accepted longer matches.
            let mut message = noise(300, 7);
            message.extend_from_within(..);
            let payload = Server::new(15, false).send(&message);
            let e = reference_inflate(&payload, 256, &mut Vec::new()).unwrap_err();
            assert_eq!(e, "match 300 bytes back, beyond the 256-byte window");
            let mut out = Vec::new();
            reference_inflate(&payload, 512, &mut out).unwrap();
            assert_eq!(out, message);
            // zlib-rs, by contrast, accepts a match 600 bytes back with 9 window bits: it cannot
            // serve as the distance check.
            let mut far = noise(600, 8);
            far.extend_from_within(..);
            let payload = Server::new(15, false).send(&far);
            assert!(zlib_inflate(&payload, 9) == far);
            assert!(reference_inflate(&payload, 512, &mut Vec::new()).is_err());
            // And it reads the RFC's examples as zlib does.
            let mut out = Vec::new();
            reference_inflate(&rfc7692_7_2_3_examples::HELLO, 256, &mut out).unwrap();
            reference_inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00], 256, &mut out).unwrap();
            assert_eq!(out, b"HelloHello");
        }

        #[test]
        fn client_window_8_compresses_for_a_256_byte_window() {
            // The decision of `compress_window_bits`: an 8-bit window never reaches back more than
            // 256 bytes, so a server inflating with 8 bits accepts every message, with and
            // without context takeover, even for data that repeats 300 bytes back.
            for cnct in [false, true] {
                let mut d = Deflate::new(params(false, cnct, None, Some(8)));
                let mut history = Vec::new();
                for i in 0..6u64 {
                    let mut message = noise(300, i);
                    message.extend_from_within(..);
                    message.extend(json(5000, i));
                    message.extend_from_within(..);
                    let payload = deflate_one(&mut d, &message);
                    if cnct {
                        history.clear();
                    }
                    let start = history.len();
                    reference_inflate(&payload, 256, &mut history).unwrap();
                    assert!(history[start..] == message[..]);
                }
            }
        }

        #[test]
        fn client_windows_bound_the_compressor() {
            // RFC 7692 §7.1.2.2: the server inflates with 2^bits bytes of window. zlib matches
            // data at most the window less its 262-byte look-ahead back (with 9 bits for 8, see
            // `Compressor::new`), never one byte beyond the window; the reference inflater with
            // that window (and zlib-rs set to it) accepts both.
            for bits in 8..=15u8 {
                let window = 1usize << bits;
                let reach = (1usize << bits.max(9)) - 262;
                for (gap, matched) in [(reach, true), (window + 1, false)] {
                    let mut d = Deflate::new(params(false, false, None, Some(bits)));
                    let block = noise(gap, u64::from(bits));
                    let mut message = block.clone();
                    message.extend_from_slice(&block);
                    let payload = deflate_one(&mut d, &message);
                    if matched {
                        assert!(
                            payload.len() < gap + gap / 8 + 64,
                            "{bits}: {}",
                            payload.len()
                        );
                    } else {
                        assert!(payload.len() > 2 * gap, "{bits}: {}", payload.len());
                    }
                    let mut history = Vec::new();
                    reference_inflate(&payload, window, &mut history).unwrap();
                    assert!(history == message, "{bits}");
                    if bits >= 9 {
                        assert!(zlib_inflate(&payload, bits) == message, "{bits}");
                    }
                }
            }
        }

        #[test]
        fn window_sizes_out_of_range_are_clamped() {
            assert_eq!(compress_window_bits(None), 15);
            assert_eq!(compress_window_bits(Some(8)), 8);
            assert_eq!(compress_window_bits(Some(12)), 12);
            assert_eq!(compress_window_bits(Some(0)), 8);
            assert_eq!(compress_window_bits(Some(200)), 15);
            // Only a hand-built Params can carry these.
            let mut d = Deflate::new(params(false, false, Some(0), Some(0)));
            let payload = deflate_one(&mut d, b"Hello");
            assert_eq!(inflate_one(&mut d, &payload).unwrap(), b"Hello");
            let mut d = Deflate::new(params(false, false, Some(200), Some(200)));
            let payload = deflate_one(&mut d, b"Hello");
            assert_eq!(inflate_one(&mut d, &payload).unwrap(), b"Hello");
        }
    }

    mod rfc7692_7_2_2_decompression {
        use super::*;

        #[test]
        fn server_no_context_takeover_resets_the_inflater() {
            // A server that claims server_no_context_takeover but refers to its last message: we
            // inflated with an empty window, as §7.2.2 allows, so the reference is invalid.
            let mut server = Server::new(15, false);
            let first = server.send(b"Hello, world! Hello, world!");
            let second = server.send(b"Hello, world! Hello, world!");
            let mut d = Deflate::new(params(true, false, None, None));
            assert_eq!(
                inflate_one(&mut d, &first).unwrap(),
                b"Hello, world! Hello, world!"
            );
            let e = inflate_one(&mut d, &second).unwrap_err();
            assert!(
                matches!(&e, DeflateError::InvalidData { reason, .. } if reason.contains("too far back")),
                "{e:?}"
            );
            // With context takeover the same bytes inflate.
            let mut d = Deflate::new(Params::default());
            inflate_one(&mut d, &first).unwrap();
            assert_eq!(
                inflate_one(&mut d, &second).unwrap(),
                b"Hello, world! Hello, world!"
            );
        }

        #[test]
        fn invalid_data_fails_with_1007() {
            // BTYPE 11 is reserved (RFC 1951 §3.2.3).
            let mut d = Deflate::new(Params::default());
            let e = inflate_one(&mut d, &[0x07, 0x00]).unwrap_err();
            assert_eq!(
                e,
                DeflateError::InvalidData {
                    offset: 1,
                    reason: "invalid block type".into()
                }
            );
            assert_eq!(e.close_code(), 1007);
            assert_eq!(
                e.to_string(),
                "invalid compressed data at byte 1 of the message: invalid block type"
            );
            let p = crate::error::ProtocolError::from(e);
            assert_eq!(p.close_code(), 1007);
            // A stored block whose length and its complement disagree, in the second frame.
            let mut d = Deflate::new(Params::default());
            let mut out = Vec::new();
            d.begin_message();
            d.feed(&HELLO_STORED[..3], &mut out, None).unwrap();
            let e = d.feed(&[0x00, 0xfa, 0xfe], &mut out, None).unwrap_err();
            assert!(
                matches!(&e, DeflateError::InvalidData { reason, .. } if reason.contains("stored block lengths")),
                "{e:?}"
            );
        }

        const HELLO_STORED: [u8; 11] = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];

        #[test]
        fn fragments_inflate_at_every_split() {
            let message = json(20_000, 3);
            let payload = Server::new(15, false).send(&message);
            for step in [1usize, 2, 7, 100, 4096] {
                let mut d = Deflate::new(Params::default());
                let mut out = Vec::new();
                d.begin_message();
                for chunk in payload.chunks(step) {
                    d.feed(chunk, &mut out, None).unwrap();
                }
                d.finish(&mut out, None).unwrap();
                assert_eq!(out, message, "step {step}");
            }
        }

        #[test]
        fn the_limit_counts_decompressed_bytes() {
            let message = json(100_000, 5);
            let payload = Server::new(15, false).send(&message);
            assert!(payload.len() < 50_000);
            // Exactly the limit passes; one byte less fails, whatever the framing.
            let mut d = Deflate::new(Params::default());
            let mut out = Vec::new();
            d.decompress(&payload, &mut out, Some(100_000)).unwrap();
            assert_eq!(out, message);
            for step in [payload.len(), 1000, 1] {
                let mut d = Deflate::new(Params::default());
                let mut out = Vec::new();
                d.begin_message();
                let mut result = Ok(());
                for chunk in payload.chunks(step) {
                    result = d.feed(chunk, &mut out, Some(99_999));
                    if result.is_err() {
                        break;
                    }
                }
                let result = result.and_then(|()| d.finish(&mut out, Some(99_999)));
                assert_eq!(
                    result,
                    Err(DeflateError::TooBig {
                        size: 100_000,
                        limit: 99_999
                    }),
                    "step {step}"
                );
                assert!(out.capacity() <= 100_000, "{}", out.capacity());
            }
            let e = DeflateError::TooBig { size: 2, limit: 1 };
            assert_eq!(e.close_code(), 1009);
            assert_eq!(
                crate::error::ProtocolError::from(e),
                crate::error::ProtocolError::MessageTooBig { size: 2, limit: 1 }
            );
        }

        #[test]
        fn a_deflate_bomb_stops_at_the_limit() {
            // 256 MiB of zeros arrives as about 256 KiB; it must fail before `out` grows past
            // the limit, however it is framed.
            let zeros = vec![0u8; 1 << 20];
            let mut c = Compress::new(Compression::default(), false);
            let mut payload = Vec::with_capacity(300 << 10);
            for _ in 0..256 {
                let mut input: &[u8] = &zeros;
                while !input.is_empty() {
                    if payload.len() == payload.capacity() {
                        payload.reserve(64 << 10);
                    }
                    let before = c.total_in();
                    c.compress_vec(input, &mut payload, FlushCompress::None)
                        .unwrap();
                    input = &input[(c.total_in() - before) as usize..];
                }
            }
            payload.reserve(64);
            c.compress_vec(&[], &mut payload, FlushCompress::Sync)
                .unwrap();
            payload.truncate(payload.len() - 4);
            assert!(payload.len() < 300 << 10, "{}", payload.len());
            for limit in [1 << 20, 16 << 20] {
                for frame in [payload.len(), 16 << 10] {
                    let mut d = Deflate::new(Params::default());
                    let mut out = Vec::new();
                    d.begin_message();
                    let mut result = Ok(());
                    for chunk in payload.chunks(frame) {
                        result = d.feed(chunk, &mut out, Some(limit));
                        if result.is_err() {
                            break;
                        }
                    }
                    // The size is what the message reached when inflating stopped: at least
                    // the limit plus one, plus at most the last match.
                    assert!(
                        matches!(result, Err(DeflateError::TooBig { size, limit: l })
                            if l == limit && size > limit as u64 && size <= limit as u64 + 258),
                        "{result:?}"
                    );
                    assert!(out.capacity() <= limit, "{}", out.capacity());
                }
            }
        }

        #[test]
        fn the_output_grows_geometrically_without_a_limit() {
            let message = vec![7u8; 10 << 20];
            let payload = Server::new(15, false).send(&message);
            let mut d = Deflate::new(Params::default());
            let mut out = Vec::new();
            d.decompress(&payload, &mut out, None).unwrap();
            assert!(out == message);
            assert!(
                out.capacity() < 2 * message.len() + (64 << 10),
                "{}",
                out.capacity()
            );
        }
    }

    mod rfc7692_7_2_1_compression {
        use super::*;

        #[test]
        fn parts_compress_as_their_concatenation() {
            let message = json(10_000, 9);
            let (a, b) = message.split_at(3333);
            let mut whole = Deflate::new(Params::default());
            let mut split = Deflate::new(Params::default());
            let mut out = Vec::new();
            split.compress(&[a, &[], b], &mut out).unwrap();
            assert_eq!(out, deflate_one(&mut whole, &message));
        }

        #[test]
        fn appends_to_what_out_holds() {
            let mut d = Deflate::new(Params::default());
            let mut out = b"header".to_vec();
            d.compress(&[b"Hello"], &mut out).unwrap();
            assert_eq!(&out[..6], b"header");
            assert_eq!(&out[6..], [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        }

        #[test]
        fn incompressible_and_large_messages() {
            for message in [vec![0u8; 3 << 20], json(1 << 20, 2)] {
                let mut d = Deflate::new(Params::default());
                let mut payload = Vec::new();
                assert!(d.compress_message(&message, true, &mut payload).unwrap());
                assert!(payload.len() < message.len() / 2);
                let mut r = Deflate::new(Params::default());
                assert!(inflate_one(&mut r, &payload).unwrap() == message);
            }
        }

        #[test]
        fn large_incompressible_messages_go_as_they_are() {
            // §2: RSV1 lets an endpoint leave incompressible contents uncompressed.
            let mut d = Deflate::new(Params::default());
            let mut r = Deflate::new(Params::default());
            let text = json(4000, 7);
            let mut out = b"head".to_vec();
            assert!(d.compress_message(&text, false, &mut out).unwrap());
            assert_eq!(inflate_one(&mut r, &out[4..]).unwrap(), text);
            // Level 1 would make noise longer: it is not compressed, out is unchanged...
            let mut out = b"head".to_vec();
            assert!(!d
                .compress_message(&noise(1 << 15, 3), true, &mut out)
                .unwrap());
            assert_eq!(out, b"head");
            // ...and the next message may not refer to it: the server's window never held it.
            // (Without the reset this message is a back-reference into the noise.)
            let mut again = Vec::new();
            let tail = noise(1 << 15, 3)[(1 << 15) - 300..].to_vec();
            assert!(d.compress_message(&tail, false, &mut again).unwrap());
            assert_eq!(inflate_one(&mut r, &again).unwrap(), tail);
            // Shorter messages keep their deflate form, even when it is longer.
            let small = noise(1000, 4);
            let mut out = Vec::new();
            let mut d = Deflate::new(Params::default());
            assert!(d.compress_message(&small, true, &mut out).unwrap());
            assert!(out.len() > small.len());
            assert_eq!(inflate_one(&mut r, &out).unwrap(), small);
            // A smaller window lowers the bar to its size.
            let mut d = Deflate::new(params(false, false, None, Some(10)));
            let mut out = Vec::new();
            assert!(!d.compress_message(&noise(1024, 5), true, &mut out).unwrap());
        }

        #[test]
        fn poorly_compressing_messages_back_off_per_kind() {
            let mut d = Deflate::new(Params::default());
            let mut r = Deflate::new(Params::default());
            let mut send = |d: &mut Deflate, m: &[u8], binary: bool| -> bool {
                let mut out = Vec::new();
                let compressed = d.compress_message(m, binary, &mut out).unwrap();
                if compressed {
                    assert_eq!(inflate_one(&mut r, &out).unwrap(), m);
                } else {
                    assert!(out.is_empty());
                }
                compressed
            };
            // Each poor try (noise) sends the next 1, 3, 7, 15, 31, 63, 63… binary messages as
            // they are, untouched by the compressor.
            let mut pattern = Vec::new();
            for i in 0..200 {
                pattern.push(send(&mut d, &noise(2000, i), true));
            }
            let tries: Vec<usize> = (0..200).filter(|&i| pattern[i]).collect();
            assert_eq!(tries, [0, 2, 6, 14, 30, 62, 126, 190]);
            // Text messages are judged apart: they still compress.
            let text = json(2000, 1);
            assert!(send(&mut d, &text, false));
            // A binary message that compresses well ends the back-off at its next try. The
            // windows stayed in step: every compressed message above inflated in turn.
            let good = json(2000, 2);
            let mut sent = Vec::new();
            for _ in 0..70 {
                sent.push(send(&mut d, &good, true));
            }
            let first = sent.iter().position(|&c| c).unwrap();
            assert!(sent[first..].iter().all(|&c| c), "{sent:?}");
            // Empty messages neither count nor change anything.
            let mut fresh = Deflate::new(Params::default());
            for _ in 0..3 {
                assert!(send(&mut fresh, b"", true));
            }
        }

        #[test]
        fn incompressible_data_grows_by_at_most_an_eighth() {
            // Level 1 codes noise with the fixed codes (9 bits for half the bytes) or stored
            // blocks: at most 1/8 longer. The window keeps the message either way: the next
            // message may refer to it.
            let mut d = Deflate::new(Params::default());
            let mut r = Deflate::new(Params::default());
            for len in [1000usize, 65_535, 65_536, 200_000] {
                let message = noise(len, len as u64);
                let payload = deflate_one(&mut d, &message);
                assert!(
                    payload.len() <= len + len / 8 + 16,
                    "{len}: {}",
                    payload.len()
                );
                assert!(inflate_one(&mut r, &payload).unwrap() == message, "{len}");
                let again = deflate_one(&mut d, &message[len - 100..]);
                assert!(again.len() < 10, "{len}: {again:02x?}");
                assert!(inflate_one(&mut r, &again).unwrap() == message[len - 100..]);
            }
            // Split into parts, the same bytes.
            let message = noise(70_000, 9);
            let whole = deflate_one(&mut Deflate::new(Params::default()), &message);
            let mut out = Vec::new();
            let (a, b) = message.split_at(12_345);
            Deflate::new(Params::default())
                .compress(&[a, b], &mut out)
                .unwrap();
            let mut r = Deflate::new(Params::default());
            assert!(inflate_one(&mut r, &out).unwrap() == message);
            assert!(
                out.len() <= whole.len() + 16,
                "{} {}",
                out.len(),
                whole.len()
            );
        }

        #[test]
        fn allocates_on_first_use() {
            let mut d = Deflate::new(Params::default());
            assert!(d.compressor.is_none() && d.inflater.is_none());
            deflate_one(&mut d, b"x");
            assert!(d.compressor.is_some() && d.inflater.is_none());
            inflate_one(&mut d, &[0x00]).unwrap();
            assert!(d.inflater.is_some());
        }
    }

    /// Messages that exercise matches: noise, a small alphabet, and noise with copies of
    /// earlier bytes from anywhere up to 40,000 bytes back (past every window).
    fn message_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..2000),
            proptest::collection::vec(0u8..4, 0..20_000),
            (
                any::<u64>(),
                proptest::collection::vec((1usize..40_000, 1usize..600), 0..40)
            )
                .prop_map(|(seed, copies)| {
                    let mut m = noise(300, seed);
                    for (back, len) in copies {
                        let from = m.len().saturating_sub(back);
                        for k in 0..len {
                            m.push(m[from + k]);
                        }
                        m.extend(noise(back % 50, seed ^ back as u64));
                    }
                    m
                }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// RFC 7692 §7.1.2.2: what we send inflates in a server's inflater whose window is
        /// exactly 2^client_max_window_bits bytes (the reference inflater, which refuses any
        /// distance past the window, and zlib-rs set to that window for 9..=15), message after
        /// message, with and without context takeover, whatever the parts a message comes in.
        #[test]
        fn a_server_with_the_negotiated_window_inflates_our_messages(
            messages in proptest::collection::vec(message_strategy(), 1..6),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
            bits in 8u8..=15,
            cnct in any::<bool>(),
        ) {
            let window = 1usize << bits;
            let mut sender = Deflate::new(params(false, cnct, None, Some(bits)));
            let mut zlib = (bits >= 9).then(|| Decompress::new_with_window_bits(false, bits));
            let mut history = Vec::new();
            for message in &messages {
                let mut points: Vec<usize> =
                    cuts.iter().map(|i| i.index(message.len() + 1)).collect();
                points.push(0);
                points.push(message.len());
                points.sort_unstable();
                let parts: Vec<&[u8]> = points.windows(2).map(|w| &message[w[0]..w[1]]).collect();
                let mut payload = Vec::new();
                sender.compress(&parts, &mut payload).unwrap();
                if cnct {
                    history.clear();
                    if let Some(z) = zlib.as_mut() {
                        z.reset(false);
                    }
                }
                let start = history.len();
                prop_assert_eq!(reference_inflate(&payload, window, &mut history), Ok(()));
                prop_assert!(history[start..] == message[..]);
                if let Some(z) = zlib.as_mut() {
                    let out = zlib_inflate_with(z, &payload);
                    prop_assert!(out.as_deref() == Ok(&message[..]), "{:?}", out.err());
                }
            }
        }

        /// Compress-then-inflate is the identity, for any messages, any parameters and any
        /// split of each payload into frames.
        #[test]
        fn round_trip(
            messages in proptest::collection::vec(
                prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..2000),
                    proptest::collection::vec(0u8..4, 0..20_000),
                ],
                1..6,
            ),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
            client_bits in prop_oneof![Just(None), (8u8..=15).prop_map(Some)],
            cnct in any::<bool>(),
        ) {
            let p = params(cnct, cnct, client_bits, client_bits);
            let mut sender = Deflate::new(p);
            let mut receiver = Deflate::new(p);
            for message in &messages {
                let mut payload = Vec::new();
                sender.compress(&[message], &mut payload).unwrap();
                prop_assert!(!payload.is_empty());
                let mut points: Vec<usize> = cuts.iter().map(|i| i.index(payload.len() + 1)).collect();
                points.push(0);
                points.push(payload.len());
                points.sort_unstable();
                let mut out = Vec::new();
                receiver.begin_message();
                for w in points.windows(2) {
                    receiver.feed(&payload[w[0]..w[1]], &mut out, None).unwrap();
                }
                receiver.finish(&mut out, None).unwrap();
                prop_assert_eq!(&out, message);
            }
        }
    }
}
