//! The sans-IO protocol engine: bytes in → events out, messages in → bytes out.
//!
//! It owns every protocol rule: the upgrade, framing, masking, reassembly, UTF-8, size limits,
//! automatic pong and close replies, pings and latency, close codes and the closing handshake.
//! It never touches a socket or a clock: drivers pass `now` (seconds on any monotonic clock).
//!
//! Driver contract: feed socket bytes to [`Protocol::receive_data`] and end of stream to
//! [`Protocol::receive_eof`]; pull events with [`Protocol::next_event`] until it returns
//! `None`; after every call, write [`Protocol::take_data_to_send`] out in full, in order.

use std::collections::VecDeque;
use std::sync::Arc;

pub use self::input::InputBuffer;
use crate::error::{Error, ProtocolError, Termination};
use crate::frame::{decode_header, encode_frame, is_valid_close_code, FrameHeader, OpCode};
use crate::handshake::{self, ClientHandshake, PackedHeaders, RequestOptions};
use crate::mask::mask_key;
use crate::tls::TlsLayer;
use crate::url::WebSocketUrl;
use crate::utf8::Utf8Validator;

/// Connection states (RFC 6455 §4, §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The opening handshake is under way.
    Connecting = 0,
    /// Messages flow both ways.
    Open = 1,
    /// We sent a close frame and wait for the peer's.
    Closing = 2,
    /// The closing handshake is over or the connection failed.
    Closed = 3,
}

impl State {
    /// The name of the Python `State` member (`"OPEN"`, …), for reprs and messages.
    pub fn name(self) -> &'static str {
        match self {
            State::Connecting => "CONNECTING",
            State::Open => "OPEN",
            State::Closing => "CLOSING",
            State::Closed => "CLOSED",
        }
    }
}

/// What the engine reports. Payloads borrow the engine's buffers until the next call.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete text message.
    Text(&'a str),
    /// A complete binary message.
    Binary(&'a [u8]),
    /// The peer pinged; the pong is already queued.
    Ping(&'a [u8]),
    /// The peer ponged.
    Pong(&'a [u8]),
    /// The peer's close frame (code 1005 when it carried none); a reply is queued when needed.
    Close {
        /// The code.
        code: u16,
        /// The reason.
        reason: &'a str,
    },
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest message accepted, in bytes; `None` for no limit.
    pub max_size: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_size: Some(16 * 1024 * 1024),
        }
    }
}

/// An unfinished fragmented message.
#[derive(Debug)]
struct Fragmented {
    text: bool,
}

/// A ping we sent and whose pong has not come back.
#[derive(Debug)]
struct PendingPing {
    data: Vec<u8>,
    sent_at: f64,
}

/// Buffers above this capacity are released once empty, so one big message does not pin memory;
/// below it they are kept, so a stream of messages up to a few MiB reuses warm memory instead of
/// faulting in fresh pages for each one.
pub const KEEP_CAPACITY: usize = 4 * 1024 * 1024;

/// At most this much is reserved ahead for a frame whose header has arrived: enough to receive
/// most frames without regrowing, never a declared length that no data backs.
const RESERVE_AHEAD: usize = 16 * 1024 * 1024;

/// The engine of one client connection.
pub struct Protocol {
    state: State,
    config: Config,
    /// Boxed: a rustls connection is about 1 KiB, which a `ws://` connection should not carry.
    tls: Option<Box<TlsLayer>>,
    /// Plaintext received and not yet consumed.
    input: InputBuffer,
    /// Bytes for the socket.
    out: Vec<u8>,
    /// Frame scratch when frames go through TLS.
    scratch: Vec<u8>,
    key: String,
    offered_subprotocols: Vec<String>,
    subprotocol: Option<String>,
    response_headers: PackedHeaders,
    /// Reassembly of a fragmented message.
    fragmented: Option<Fragmented>,
    message: Vec<u8>,
    /// The message buffer was handed out in the previous event and must be cleared.
    message_delivered: bool,
    utf8: Utf8Validator,
    /// Payload bytes of the current (incomplete) text frame already validated.
    validated: usize,
    pings: VecDeque<PendingPing>,
    latency: f64,
    /// Arrival time of the bytes being processed.
    now: f64,
    eof: bool,
    /// The upgrade succeeded.
    opened: bool,
    /// Leave a violating frame unread instead of failing (see `set_defer_failure`).
    defer_failure: bool,
    /// A violating frame waits at the head of the buffer.
    failure_deferred: bool,
    close_sent: Option<(u16, String)>,
    close_received: Option<(u16, String)>,
    termination: Option<Termination>,
}

impl Protocol {
    /// A client engine that has queued its upgrade request for `url`.
    ///
    /// `tls` is required for `wss://` URLs; `server_name` overrides the URL host for SNI and
    /// certificate checks.
    pub fn client(
        url: &WebSocketUrl,
        key: String,
        request: &RequestOptions,
        config: Config,
        tls: Option<(Arc<rustls::ClientConfig>, Option<&str>)>,
    ) -> Result<Protocol, Error> {
        let tls = match (url.secure(), tls) {
            (true, Some((tls_config, name))) => Some(Box::new(TlsLayer::new(
                tls_config,
                name.unwrap_or(&url.host),
            )?)),
            (true, None) => {
                return Err(Error::InvalidArgument(
                    "wss:// needs a TLS configuration".into(),
                ))
            }
            (false, _) => None,
        };
        let request_bytes = handshake::build_request(url, &key, request)?;
        let mut engine = Protocol {
            state: State::Connecting,
            config,
            tls,
            input: InputBuffer::default(),
            out: Vec::new(),
            scratch: Vec::new(),
            key,
            offered_subprotocols: request.subprotocols.clone(),
            subprotocol: None,
            response_headers: PackedHeaders::default(),
            fragmented: None,
            message: Vec::new(),
            message_delivered: false,
            utf8: Utf8Validator::new(),
            validated: 0,
            pings: VecDeque::new(),
            latency: 0.0,
            now: 0.0,
            eof: false,
            opened: false,
            defer_failure: false,
            failure_deferred: false,
            close_sent: None,
            close_received: None,
            termination: None,
        };
        engine.write_plain(&request_bytes)?;
        Ok(engine)
    }

    // ---- accessors -------------------------------------------------------------------------

    /// The connection state.
    pub fn state(&self) -> State {
        self.state
    }

    /// True once the upgrade succeeded (also after the connection closed).
    pub fn handshake_complete(&self) -> bool {
        self.opened
    }

    /// The subprotocol the server chose.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    /// The headers of the 101 response.
    pub fn response_headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.response_headers.iter()
    }

    /// How the connection ended, once it has.
    pub fn termination(&self) -> Option<&Termination> {
        self.termination.as_ref()
    }

    /// Seconds of the last ping/pong round trip, 0.0 before any.
    pub fn latency(&self) -> f64 {
        self.latency
    }

    /// The ALPN protocol negotiated by TLS.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.tls.as_ref().and_then(|t| t.alpn_protocol())
    }

    /// True while we wait for the peer's close frame: the driver arms `close_timeout`.
    pub fn close_expected(&self) -> bool {
        self.state == State::Closing
    }

    /// True when bytes are waiting for the socket.
    pub fn has_data_to_send(&self) -> bool {
        !self.out.is_empty()
    }

    /// Hands the bytes for the socket over by swapping them with `buf` (which should be
    /// empty; its capacity is reused).
    pub fn take_data_to_send(&mut self, buf: &mut Vec<u8>) {
        buf.clear();
        std::mem::swap(&mut self.out, buf);
    }

    /// Runs `f` on the bytes waiting for the socket and empties the buffer, keeping its
    /// capacity (for drivers that copy the bytes out anyway).
    pub fn drain_data_to_send<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> R {
        let result = f(&self.out);
        self.out.clear();
        if self.out.capacity() > KEEP_CAPACITY {
            self.out = Vec::new();
        }
        result
    }

    /// Bytes received and not yet turned into events.
    pub fn buffered_len(&self) -> usize {
        self.input.pending().len()
    }

    // ---- input -----------------------------------------------------------------------------

    /// Feeds bytes read from the socket, received at time `now`.
    ///
    /// Nothing is parsed here: [`Protocol::next_event`] decodes lazily, so the memory held
    /// ahead of the consumer is what the driver chose to read.
    pub fn receive_data(&mut self, data: &[u8], now: f64) -> Result<(), Error> {
        self.now = now;
        if self.ignores_input() {
            return Ok(());
        }
        self.input.compact();
        match &mut self.tls {
            Some(tls) => {
                let result = tls.read(data, &mut self.input);
                // Alerts and handshake records go out whether or not reading failed.
                tls.drain(&mut self.out)?;
                if result?.closed {
                    self.eof = true;
                }
            }
            None => self.input.extend(data),
        }
        Ok(())
    }

    /// RFC 6455 §7.1.7: after failing the connection an endpoint "MUST NOT continue to attempt
    /// to process data" from the peer; nor is there any after the end of the stream.
    fn ignores_input(&self) -> bool {
        self.eof || self.termination.is_some() && self.state == State::Closed
    }

    /// For a driver that reads plain TCP itself: the input buffer, taken out of the engine so
    /// that the socket can be read straight into its free space (one copy fewer than
    /// [`Protocol::receive_data`]) without holding the engine during the read. Give it back
    /// with [`Protocol::receive_into`] on every path, with 0 bytes when the read failed: it
    /// holds what is not decoded yet. Meanwhile nothing may decode (the reader lock of a
    /// driver guarantees it).
    ///
    /// `None` over TLS (ciphertext goes through rustls first) and once input is ignored.
    pub fn take_input(&mut self) -> Option<InputBuffer> {
        if self.tls.is_some() || self.ignores_input() {
            return None;
        }
        self.input.compact();
        Some(std::mem::take(&mut self.input))
    }

    /// Puts back the buffer from [`Protocol::take_input`] with `n` bytes read into its free
    /// space at time `now` (dropped if input has become ignored meanwhile).
    pub fn receive_into(&mut self, mut input: InputBuffer, n: usize, now: f64) {
        self.now = now;
        if n > 0 && !self.ignores_input() {
            input.commit(n);
        }
        self.input = input;
    }

    /// The socket reached end of stream.
    pub fn receive_eof(&mut self) {
        self.eof = true;
    }

    /// Defers failing the connection while `defer` is set: a frame that breaks the protocol is
    /// left unread and [`Protocol::failure_deferred`] turns true. A driver that already holds
    /// messages for its application sets this, so that the application can still answer them
    /// before the connection fails (as the lazy sync driver naturally allows).
    pub fn set_defer_failure(&mut self, defer: bool) {
        self.defer_failure = defer;
    }

    /// True when a violating frame waits, unread, for deferral to end.
    pub fn failure_deferred(&self) -> bool {
        self.failure_deferred
    }

    /// The next event, or `None` when more bytes are needed (or the connection is over).
    ///
    /// A protocol violation fails the connection: the close frame with the matching code is
    /// queued, the state becomes `Closed`, and the error is returned once; later calls return
    /// `None` and [`Protocol::termination`] tells what happened.
    pub fn next_event(&mut self) -> Result<Option<Event<'_>>, Error> {
        self.failure_deferred = false;
        if self.message_delivered {
            self.message_delivered = false;
            self.message.clear();
            if self.message.capacity() > KEEP_CAPACITY {
                self.message = Vec::new();
            }
        }
        match self.poll_handshake()? {
            // The response may have arrived with the first frames: go on decoding.
            State::Open | State::Closing => {}
            State::Connecting | State::Closed => return Ok(None),
        }
        match self.decode_frame() {
            Ok(Some(step)) => Ok(Some(self.event_for(step))),
            Ok(None) => {
                if self.eof && self.termination.is_none() {
                    // RFC 6455 §7.1.5: no close frame received → "_The WebSocket Connection
                    // Close Code_ is considered to be 1006."
                    self.terminate(1006, String::new(), None);
                }
                Ok(None)
            }
            Err(Error::Protocol(e)) => {
                self.fail(e.clone());
                Err(Error::Protocol(e))
            }
            Err(e) => {
                self.abort();
                Err(e)
            }
        }
    }

    /// Processes the upgrade response, if it is still awaited, without decoding any frame.
    ///
    /// Returns the state afterwards; a refused or malformed upgrade is returned as an error
    /// once, and leaves the engine `Closed`.
    pub fn poll_handshake(&mut self) -> Result<State, Error> {
        if self.state == State::Connecting {
            if let Err(e) = self.receive_handshake() {
                self.state = State::Closed;
                self.termination = Some(Termination {
                    code: 1006,
                    reason: String::new(),
                    cause: None,
                });
                return Err(e);
            }
        }
        Ok(self.state)
    }

    fn receive_handshake(&mut self) -> Result<(), Error> {
        if self.eof && self.tls.as_ref().is_some_and(|t| t.is_handshaking()) {
            return Err(Error::TlsHandshakeEof);
        }
        // A phase made afresh for each read searches the head from its start every time; the
        // engine holding one while connecting would search each byte once.
        let mut phase = ClientHandshake::new(self.key.clone(), self.offered_subprotocols.clone());
        let Some((accepted, headers, used)) = phase.receive(self.input.pending(), self.eof)? else {
            return Ok(());
        };
        self.input.set_pos(self.input.pos() + used);
        self.subprotocol = accepted.subprotocol;
        self.response_headers = headers;
        self.state = State::Open;
        self.opened = true;
        // What only the handshake needed goes now: an idle connection keeps little memory.
        self.key = String::new();
        self.offered_subprotocols = Vec::new();
        self.input.compact();
        self.input.release_if_drained();
        if self.out.is_empty() {
            self.out = Vec::new(); // the request's capacity
        }
        Ok(())
    }

    /// Decodes frames up to the next event; `None` when more bytes are needed.
    ///
    /// With failures deferred, a frame that breaks the protocol is left unread (nothing of it is
    /// consumed) and decoding stops, so that it fails the same way once deferral ends.
    fn decode_frame(&mut self) -> Result<Option<Step>, Error> {
        loop {
            let (frame_start, validated, utf8) =
                (self.input.pos(), self.validated, self.utf8.clone());
            match self.decode_next_frame() {
                Ok(Decoded::NeedData) => return Ok(None),
                Ok(Decoded::Fragment) => continue,
                Ok(Decoded::Event(step)) => return Ok(Some(step)),
                Err(Error::Protocol(_)) if self.defer_failure => {
                    self.input.set_pos(frame_start);
                    self.validated = validated;
                    self.utf8 = utf8;
                    self.failure_deferred = true;
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Decodes one frame. Errors happen before the frame changes any state but the input position,
    /// `validated` and the UTF-8 validator, which `decode_frame` restores when it defers.
    fn decode_next_frame(&mut self) -> Result<Decoded, Error> {
        let in_pos = self.input.pos();
        let pending = self.input.pending();
        let Some((header, header_len)) = decode_header(pending)? else {
            return Ok(Decoded::NeedData);
        };
        self.check_header(&header)?;
        // `check_header` bounded the length by `max_size` (or 125 for control frames);
        // without a limit it is at most 2^63 - 1, which fits a 64-bit usize.
        let payload_len =
            usize::try_from(header.payload_len).map_err(|_| ProtocolError::InvalidLength {
                len: header.payload_len,
            })?;
        let available = pending.len() - header_len;
        if available < payload_len {
            // Fail fast on invalid UTF-8 in the part of a text frame that has arrived.
            if self.in_text_message(&header) && available > self.validated {
                let start = in_pos + header_len + self.validated;
                let end = in_pos + header_len + available;
                self.utf8
                    .feed(&self.input.bytes()[start..end])
                    .map_err(|_| ProtocolError::InvalidUtf8 {
                        context: "text message",
                    })?;
                self.validated = available;
            }
            // Make room for the rest of the frame now rather than regrowing (and copying) the
            // buffer several times while it arrives. `check_header` bounded the length by
            // `max_size`; RESERVE_AHEAD bounds it when there is no limit.
            let missing = (payload_len - available).min(RESERVE_AHEAD);
            self.input.reserve(missing);
            return Ok(Decoded::NeedData);
        }
        let start = in_pos + header_len;
        let end = start + payload_len;
        self.input.set_pos(end);
        let already_validated = std::mem::take(&mut self.validated);
        let step = match header.opcode {
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                match self.data_frame(&header, start, end, already_validated)? {
                    Some(step) => step,
                    None => return Ok(Decoded::Fragment),
                }
            }
            OpCode::Ping => {
                if self.state == State::Open {
                    let payload = self.input.bytes()[start..end].to_vec();
                    self.write_frame(OpCode::Pong, &[&payload])?;
                }
                Step::Ping { start, end }
            }
            OpCode::Pong => {
                self.match_pong(start, end);
                Step::Pong { start, end }
            }
            OpCode::Close => self.close_frame(start, end)?,
        };
        Ok(Decoded::Event(step))
    }

    fn in_text_message(&self, header: &FrameHeader) -> bool {
        match header.opcode {
            OpCode::Text => true,
            OpCode::Continuation => self.fragmented.as_ref().is_some_and(|f| f.text),
            _ => false,
        }
    }

    fn check_header(&self, header: &FrameHeader) -> Result<(), ProtocolError> {
        // RFC 6455 §5.2: "If a nonzero value is received and none of the negotiated extensions
        // defines the meaning of such a nonzero value, the receiving endpoint MUST _Fail the
        // WebSocket Connection_."
        if header.rsv != 0 {
            return Err(ProtocolError::ReservedBits { bits: header.rsv });
        }
        // RFC 6455 §5.1: "The client MUST close a connection if it detects a masked frame."
        if header.mask.is_some() {
            return Err(ProtocolError::MaskedFrame);
        }
        if header.opcode.is_control() {
            // RFC 6455 §5.5: "All control frames MUST have a payload length of 125 bytes or
            // less and MUST NOT be fragmented."
            if header.payload_len > 125 {
                return Err(ProtocolError::ControlFrameTooLong {
                    len: header.payload_len,
                });
            }
            if !header.fin {
                return Err(ProtocolError::FragmentedControlFrame {
                    opcode: header.opcode.as_u8(),
                });
            }
            return Ok(());
        }
        // RFC 6455 §5.4: fragments of one message are not interleaved with another message.
        match (header.opcode, &self.fragmented) {
            (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Text | OpCode::Binary, Some(_)) => {
                return Err(ProtocolError::ExpectedContinuation {
                    opcode: header.opcode.as_u8(),
                })
            }
            _ => {}
        }
        if let Some(limit) = self.config.max_size {
            let size = (self.message.len() as u64).saturating_add(header.payload_len);
            if size > limit as u64 {
                return Err(ProtocolError::MessageTooBig { size, limit });
            }
        }
        Ok(())
    }

    fn data_frame(
        &mut self,
        header: &FrameHeader,
        start: usize,
        end: usize,
        already_validated: usize,
    ) -> Result<Option<Step>, ProtocolError> {
        let text = self.in_text_message(header);
        let invalid = |_| ProtocolError::InvalidUtf8 {
            context: "text message",
        };
        if header.opcode != OpCode::Continuation && header.fin {
            // A whole message in one frame: hand out the payload in place.
            if text {
                if already_validated == 0 {
                    std::str::from_utf8(&self.input.bytes()[start..end]).map_err(|_| {
                        ProtocolError::InvalidUtf8 {
                            context: "text message",
                        }
                    })?;
                } else {
                    self.utf8
                        .feed(&self.input.bytes()[start + already_validated..end])
                        .map_err(invalid)?;
                    self.utf8.finish().map_err(invalid)?;
                }
            }
            return Ok(Some(Step::Message {
                text,
                in_place: true,
                start,
                end,
            }));
        }
        if text {
            self.utf8
                .feed(&self.input.bytes()[start + already_validated..end])
                .map_err(invalid)?;
        }
        if header.opcode != OpCode::Continuation {
            self.fragmented = Some(Fragmented { text });
        }
        self.message
            .extend_from_slice(&self.input.bytes()[start..end]);
        if !header.fin {
            return Ok(None);
        }
        if text {
            self.utf8.finish().map_err(invalid)?;
        }
        self.fragmented = None;
        self.message_delivered = true;
        Ok(Some(Step::Message {
            text,
            in_place: false,
            start: 0,
            end: self.message.len(),
        }))
    }

    fn match_pong(&mut self, start: usize, end: usize) {
        let payload = &self.input.bytes()[start..end];
        if let Some(i) = self.pings.iter().position(|p| p.data == payload) {
            // A pong answers the ping with the same payload; earlier pings are answered too
            // (RFC 6455 §5.5.3 lets a peer answer only the most recent ping).
            if let Some(ping) = self.pings.get(i) {
                self.latency = (self.now - ping.sent_at).max(0.0);
            }
            self.pings.drain(..=i);
        }
    }

    fn close_frame(&mut self, start: usize, end: usize) -> Result<Step, ProtocolError> {
        let payload = &self.input.bytes()[start..end];
        let (code, reason_start) = match payload {
            [] => (1005, start),
            // RFC 6455 §5.5.1: a close body starts with a 2-byte status code.
            [_] => return Err(ProtocolError::ClosePayloadTooShort),
            [hi, lo, ..] => {
                let code = u16::from_be_bytes([*hi, *lo]);
                // RFC 6455 §7.4: only defined or registered codes, never 1005/1006/1015.
                if !is_valid_close_code(code) {
                    return Err(ProtocolError::InvalidCloseCode { code });
                }
                (code, start + 2)
            }
        };
        // RFC 6455 §5.5.1: the reason's "data is not guaranteed to be human readable" but is
        // UTF-8 (§7.1.6); invalid UTF-8 fails the connection with 1007 (§8.1).
        let reason = std::str::from_utf8(&self.input.bytes()[reason_start..end])
            .map_err(|_| ProtocolError::InvalidUtf8 {
                context: "close reason",
            })?
            .to_string();
        if self.state == State::Open {
            // RFC 6455 §5.5.1: "If an endpoint receives a Close frame and did not previously
            // send a Close frame, the endpoint MUST send a Close frame in response."
            // Echo the code, as is customary; none when the peer sent none.
            let reply = if code == 1005 { None } else { Some(code) };
            let _ = self.queue_close(reply, "");
        }
        self.close_received = Some((code, reason.clone()));
        self.terminate(code, reason, None);
        Ok(Step::Close {
            code,
            start: reason_start,
            end,
        })
    }

    fn event_for(&self, step: Step) -> Event<'_> {
        match step {
            Step::Message {
                text,
                in_place,
                start,
                end,
            } => {
                let data = if in_place {
                    &self.input.bytes()[start..end]
                } else {
                    &self.message[start..end]
                };
                if text {
                    // Validated above; `from_utf8` cannot fail here, and an empty string is
                    // the harmless fallback that keeps this path panic-free.
                    Event::Text(std::str::from_utf8(data).unwrap_or_default())
                } else {
                    Event::Binary(data)
                }
            }
            Step::Ping { start, end } => Event::Ping(&self.input.bytes()[start..end]),
            Step::Pong { start, end } => Event::Pong(&self.input.bytes()[start..end]),
            Step::Close { code, start, end } => Event::Close {
                code,
                reason: std::str::from_utf8(&self.input.bytes()[start..end]).unwrap_or_default(),
            },
        }
    }

    /// Fails the connection (RFC 6455 §7.1.7): send a close frame with the error's code unless
    /// one was sent already, then stop processing input.
    fn fail(&mut self, error: ProtocolError) {
        let code = error.close_code();
        if self.close_sent.is_none() && self.state == State::Open {
            let _ = self.queue_close(Some(code), "");
        }
        self.state = State::Closed;
        self.fragmented = None;
        self.termination = Some(Termination {
            code,
            reason: String::new(),
            cause: Some(error),
        });
    }

    fn terminate(&mut self, code: u16, reason: String, cause: Option<ProtocolError>) {
        self.state = State::Closed;
        if self.termination.is_none() {
            self.termination = Some(Termination {
                code,
                reason,
                cause,
            });
        }
    }

    // ---- output ----------------------------------------------------------------------------

    fn write_plain(&mut self, bytes: &[u8]) -> Result<(), Error> {
        match &mut self.tls {
            Some(tls) => {
                tls.write(bytes)?;
                tls.drain(&mut self.out)?;
            }
            None => self.out.extend_from_slice(bytes),
        }
        Ok(())
    }

    fn write_frame(&mut self, opcode: OpCode, parts: &[&[u8]]) -> Result<(), Error> {
        let key = mask_key()?;
        match &mut self.tls {
            Some(tls) => {
                self.scratch.clear();
                encode_frame(&mut self.scratch, opcode, true, parts, Some(key));
                tls.write(&self.scratch)?;
                tls.drain(&mut self.out)?;
                if self.scratch.capacity() > KEEP_CAPACITY {
                    self.scratch = Vec::new();
                }
            }
            // RFC 6455 §5.3: a client masks every frame with a fresh key.
            None => encode_frame(&mut self.out, opcode, true, parts, Some(key)),
        }
        Ok(())
    }

    fn check_open(&self) -> Result<(), Error> {
        match self.state {
            State::Open => Ok(()),
            State::Connecting => Err(Error::InvalidArgument(
                "the opening handshake is not complete".into(),
            )),
            State::Closing | State::Closed => Err(Error::Closed(self.closed_info())),
        }
    }

    /// What `ConnectionClosed` reports now: the termination, or the close we sent.
    pub fn closed_info(&self) -> Termination {
        if let Some(t) = &self.termination {
            return t.clone();
        }
        let (code, reason) = self.close_sent.clone().unwrap_or((1006, String::new()));
        Termination {
            code,
            reason,
            cause: None,
        }
    }

    /// Queues a text message.
    pub fn send_text(&mut self, text: &str) -> Result<(), Error> {
        self.check_open()?;
        self.write_frame(OpCode::Text, &[text.as_bytes()])
    }

    /// Queues a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), Error> {
        self.check_open()?;
        self.write_frame(OpCode::Binary, &[data])
    }

    /// Queues a ping sent at `now`; its pong updates [`Protocol::latency`].
    pub fn send_ping(&mut self, data: &[u8], now: f64) -> Result<(), Error> {
        check_control_len(data.len(), "ping")?;
        self.check_open()?;
        self.write_frame(OpCode::Ping, &[data])?;
        self.pings.push_back(PendingPing {
            data: data.to_vec(),
            sent_at: now,
        });
        Ok(())
    }

    /// Queues an unsolicited pong.
    pub fn send_pong(&mut self, data: &[u8]) -> Result<(), Error> {
        check_control_len(data.len(), "pong")?;
        self.check_open()?;
        self.write_frame(OpCode::Pong, &[data])
    }

    /// Starts the closing handshake. Idempotent: once closing or closed, it does nothing.
    ///
    /// `code` must be one an endpoint may send (1000–1003, 1007–1014, 3000–4999); `None` sends
    /// a close frame without a body. The reason is at most 123 bytes of UTF-8.
    pub fn send_close(&mut self, code: Option<u16>, reason: &str) -> Result<(), Error> {
        if let Some(c) = code {
            if !is_valid_close_code(c) {
                return Err(Error::InvalidArgument(format!(
                    "invalid close code {c}: use 1000-1003, 1007-1014 or 3000-4999"
                )));
            }
        } else if !reason.is_empty() {
            return Err(Error::InvalidArgument(
                "a close reason needs a close code".into(),
            ));
        }
        check_control_len(reason.len() + 2, "close")?;
        match self.state {
            State::Connecting => {
                self.state = State::Closed;
                self.terminate(code.unwrap_or(1005), reason.to_string(), None);
                Ok(())
            }
            State::Open => self.queue_close(code, reason),
            State::Closing | State::Closed => Ok(()),
        }
    }

    fn queue_close(&mut self, code: Option<u16>, reason: &str) -> Result<(), Error> {
        let code_bytes;
        let parts: &[&[u8]] = match code {
            Some(c) => {
                code_bytes = c.to_be_bytes();
                &[&code_bytes, reason.as_bytes()]
            }
            None => &[],
        };
        self.write_frame(OpCode::Close, parts)?;
        self.close_sent = Some((code.unwrap_or(1005), reason.to_string()));
        if self.state == State::Open {
            self.state = if self.close_received.is_some() {
                State::Closed
            } else {
                State::Closing
            };
        }
        if let Some(tls) = &mut self.tls {
            if self.close_received.is_some() {
                tls.close();
                tls.drain(&mut self.out)?;
            }
        }
        Ok(())
    }

    /// Marks the connection closed because the driver gave up waiting (close timeout) or the
    /// transport failed. Has no effect once terminated.
    pub fn abort(&mut self) {
        self.terminate(1006, String::new(), None);
    }
}

fn check_control_len(len: usize, what: &str) -> Result<(), Error> {
    // RFC 6455 §5.5: "All control frames MUST have a payload length of 125 bytes or less".
    if len > 125 {
        let limit = if what == "close" { 123 } else { 125 };
        let len = if what == "close" { len - 2 } else { len };
        let part = if what == "close" { "reason" } else { "payload" };
        return Err(Error::InvalidArgument(format!(
            "{what} {part} of {len} bytes exceeds {limit} bytes"
        )));
    }
    Ok(())
}

/// What decoding one frame gave.
enum Decoded {
    /// The frame is incomplete.
    NeedData,
    /// A non-final fragment, absorbed into the message being reassembled.
    Fragment,
    /// A frame that makes an event.
    Event(Step),
}

/// A decoded frame's meaning, as buffer offsets (so the borrow can be taken afterwards).
#[derive(Debug, Clone, Copy)]
enum Step {
    Message {
        text: bool,
        in_place: bool,
        start: usize,
        end: usize,
    },
    Ping {
        start: usize,
        end: usize,
    },
    Pong {
        start: usize,
        end: usize,
    },
    Close {
        code: u16,
        start: usize,
        end: usize,
    },
}

mod input;

#[cfg(test)]
mod tests;
