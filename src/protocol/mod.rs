//! The sans-IO protocol engine: bytes in → events out, messages in → bytes out.
//!
//! It owns every protocol rule: the upgrade, framing, masking, reassembly, UTF-8, size limits,
//! automatic pong and close replies, pings and latency, close codes and the closing handshake.
//! It never touches a socket or a clock: drivers pass `now` (seconds on any monotonic clock).
//!
//! Driver contract: feed socket bytes to [`Protocol::receive_data`] and end of stream to
//! [`Protocol::receive_eof`]; pull events with [`Protocol::next_event`] until it returns
//! `None`; after every call, write [`Protocol::take_data_to_send`] out in full, in order. When
//! the transport fails or a deadline passes, [`Protocol::abort`]. Keepalive: wake at
//! [`Protocol::next_deadline`] and call [`Protocol::handle_deadline`] (after reading what the
//! socket holds, so a pong already there is not judged missing).
//!
//! Submodules: `wire` moves bytes (through TLS when there is a TLS layer), `message` turns
//! data frames into messages.

use std::collections::VecDeque;

pub use self::large::{LargeFrame, LARGE_PAYLOAD};
use self::message::{Completed, Payload, Reassembly};
pub use self::message::{Message, Text};
use self::wire::Wire;
use crate::buffer::{InputBuffer, KEEP_CAPACITY};
use crate::deflate::{self, Deflate};
use crate::error::{Error, Failure, ProtocolError, Termination};
use crate::frame::{decode_header, is_valid_close_code, OpCode};
use crate::handshake::{self, ClientHandshake, PackedHeaders};
use crate::options::Options;
use crate::tls::{client_config, TlsLayer};
use crate::url::{parse_url, WebSocketUrl};

mod journal;
mod large;
mod message;
mod wire;

pub use self::journal::{opcode_name, Closer, Note, JOURNAL_CAPACITY};

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
    /// A complete message; while streaming ([`Protocol::stream_message`]), the last piece of
    /// the message streamed (the whole of it when it came in one frame).
    Message(Message<'a>),
    /// A piece of the message streamed, more to come: text pieces end on a character
    /// boundary (each is valid UTF-8); never empty.
    Fragment(Message<'a>),
    /// The peer pinged; the pong is queued (only the latest ping's, RFC 6455 §5.5.3).
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

/// How the driver closes TCP once the connection is over ([`Protocol::tcp_close`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpClose {
    /// Close the socket now: the peer's end of stream arrived, or the connection was
    /// abandoned (1006: the transport failed, a deadline passed).
    Now,
    /// Keep reading, discarding what arrives, until the peer's end of stream or
    /// `close_timeout`, then close; with `shut_write`, shut our write side down first, once
    /// the close frame is written.
    AfterPeer {
        /// Send our FIN before waiting for the peer's (we failed the connection).
        shut_write: bool,
    },
}

/// A ping we sent and whose pong has not come back.
#[derive(Debug)]
struct PendingPing {
    data: Vec<u8>,
    sent_at: f64,
    /// Sent by the keepalive (its pong ends the wait).
    keepalive: bool,
}

/// The keepalive schedule (the times are on the driver's clock, like `now`).
#[derive(Debug, Clone, Copy)]
struct Keepalive {
    interval: f64,
    /// `f64::INFINITY` to wait for a pong forever.
    timeout: f64,
    /// When the next ping is due.
    next_ping: f64,
    /// When the pong of the ping in flight is due; `None` while no keepalive ping waits.
    pong_due: Option<f64>,
    /// `Protocol::reads` when that ping was sent.
    reads_at_ping: u64,
}

/// Another message is being sent in fragments (the driver waits for its end).
fn fragments_under_way() -> Error {
    Error::Concurrency("another message is being sent in fragments")
}

/// The reason of the close frame sent when a keepalive pong does not come back.
pub const KEEPALIVE_TIMEOUT_REASON: &str = "keepalive ping timeout";

/// Pongs are written as their pings arrive while fewer bytes than this wait for the socket;
/// beyond it (the peer does not read), only the latest ping's pong is kept.
const PONG_BACKLOG: usize = 16 * 1024;

/// At most this much is reserved ahead for a frame whose header has arrived: enough to receive
/// most frames without regrowing, never a declared length that no data backs.
const RESERVE_AHEAD: usize = 16 * 1024 * 1024;

/// The smallest payload [`Protocol::send_streamed`] leaves with the driver: below it, masking
/// it into the output costs less than the calls that would hand it out in parts.
pub const STREAM_PAYLOAD: usize = 64 * 1024;

/// Runs `f` with the engine's compression scratch (`scratch`, emptied), then keeps the buffer
/// for the next compressed message unless it grew past [`KEEP_CAPACITY`].
#[inline(always)]
fn with_scratch<R>(scratch: &mut Vec<u8>, f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    scratch.clear();
    let result = f(scratch);
    if scratch.capacity() > KEEP_CAPACITY {
        *scratch = Vec::new();
    }
    result
}

/// The message being sent in fragments ([`Protocol::send_fragment`]).
#[derive(Debug, Clone, Copy)]
struct Sending {
    text: bool,
    /// Its fragments carry one DEFLATE stream; RSV1 was set on the first.
    compressed: bool,
}

/// The engine of one client connection.
pub struct Protocol {
    state: State,
    url: WebSocketUrl,
    /// `Some` while the upgrade response is awaited; it searches each received byte once.
    upgrade: Option<Box<ClientHandshake>>,
    wire: Wire,
    reassembly: Reassembly,
    /// The permessage-deflate codec, when negotiated (its zlib states are made on first use).
    deflate: Option<Box<Deflate>>,
    /// Scratch for compressing a message before framing it.
    deflated: Vec<u8>,
    /// A message is being sent in fragments, until its last one.
    sending: Option<Sending>,
    /// Streaming was armed after frames of the message under way arrived: they are the
    /// next event.
    piece_ready: bool,
    subprotocol: Option<String>,
    response_headers: PackedHeaders,
    pings: VecDeque<PendingPing>,
    /// `None` when `ping_interval` is `None`.
    keepalive: Option<Keepalive>,
    /// Reads that brought bytes: the keepalive's sign of life.
    reads: u64,
    /// The payload of the pong owed for the latest ping, while `pong_owed`.
    pong: Vec<u8>,
    pong_owed: bool,
    latency: f64,
    /// Arrival time of the bytes being processed.
    now: f64,
    /// No more bytes will arrive.
    eof: bool,
    /// The upgrade succeeded.
    opened: bool,
    /// Frames are decoded: false before the upgrade and once the peer's close frame arrived or
    /// the connection failed (RFC 6455 §7.1.7: an endpoint that failed the connection "MUST
    /// NOT continue to attempt to process data").
    decoding: bool,
    /// Hold a violation back instead of failing (see `set_defer_failure`).
    defer_failure: bool,
    /// A violation held back, applied once deferral ends.
    deferred: Option<ProtocolError>,
    close_sent: Option<(u16, String)>,
    close_received: Option<(u16, String)>,
    termination: Option<Termination>,
    /// The peer's close frame came before ours: the peer closed (for logs).
    closed_by_peer: bool,
}

impl Protocol {
    /// A client engine for `url` that has queued its upgrade request: the one way an engine is
    /// made, for every driver.
    ///
    /// `key` overrides the random `Sec-WebSocket-Key` (for tests).
    pub fn client(url: &str, options: &Options, key: Option<String>) -> Result<Protocol, Error> {
        let url = parse_url(url)?;
        let tls = match (url.secure(), &options.tls) {
            (true, tls) => {
                let tls = tls.clone().unwrap_or_default();
                let name = tls.server_hostname.as_deref().unwrap_or(&url.host);
                Some(TlsLayer::new(client_config(&tls)?, name)?)
            }
            (false, None) => None,
            (false, Some(_)) => {
                return Err(Error::InvalidArgument(
                    "tls is only for wss:// URLs, not ws://".into(),
                ))
            }
        };
        let key = match key {
            Some(k) => k,
            None => handshake::generate_key()?,
        };
        let request = handshake::build_request(&url, &key, &options.request)?;
        let mut engine = Protocol {
            state: State::Connecting,
            url,
            upgrade: Some(Box::new(ClientHandshake::new(
                key,
                options.request.subprotocols.clone(),
                options.request.compression,
            ))),
            wire: Wire::new(tls),
            reassembly: Reassembly::new(options.max_size),
            deflate: None,
            deflated: Vec::new(),
            sending: None,
            piece_ready: false,
            subprotocol: None,
            response_headers: PackedHeaders::default(),
            pings: VecDeque::new(),
            keepalive: options.ping_interval.map(|interval| Keepalive {
                interval: interval.as_secs_f64(),
                timeout: options
                    .ping_timeout
                    .map_or(f64::INFINITY, |t| t.as_secs_f64()),
                next_ping: f64::INFINITY,
                pong_due: None,
                reads_at_ping: 0,
            }),
            reads: 0,
            pong: Vec::new(),
            pong_owed: false,
            latency: 0.0,
            now: 0.0,
            eof: false,
            opened: false,
            decoding: false,
            defer_failure: false,
            deferred: None,
            close_sent: None,
            close_received: None,
            termination: None,
            closed_by_peer: false,
        };
        engine.wire.write_plain(&request)?;
        Ok(engine)
    }

    // ---- accessors -------------------------------------------------------------------------

    /// The connection state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The URL this engine connects to.
    pub fn url(&self) -> &WebSocketUrl {
        &self.url
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

    /// How the connection ended, once no further event can come: the connection ended and
    /// either input is over or nothing more is decoded.
    pub fn finished(&self) -> Option<&Termination> {
        self.termination
            .as_ref()
            .filter(|_| self.eof || !self.decoding)
    }

    /// Seconds of the last ping/pong round trip, 0.0 before any.
    pub fn latency(&self) -> f64 {
        self.latency
    }

    /// The ALPN protocol negotiated by TLS.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.wire.alpn_protocol()
    }

    /// True while we wait for the peer's close frame: the driver arms `close_timeout`.
    pub fn close_expected(&self) -> bool {
        self.state == State::Closing
    }

    /// How to close TCP, once the connection is over (`None` before).
    ///
    /// RFC 6455 §7.1.1: "when a client is instructed to do the same, it SHOULD wait for a TCP
    /// Close from the server": after the closing handshake, the driver waits for the server's
    /// end of stream (the server holds TIME_WAIT). After failing the connection (§7.1.7: the
    /// client "MUST _Close the WebSocket Connection_"), it shuts its write side down and reads
    /// until the end of stream, as §7.1.1's example does ("call shutdown() with SHUT_WR on the
    /// socket, call recv() until obtaining a return value of 0 [...] and finally call close()
    /// on the socket"): closing a socket that still holds unread bytes makes the kernel answer
    /// with a reset, which can destroy our close frame before the peer reads it. Neither wait
    /// delivers anything (§7.1.7: an endpoint that failed the connection "MUST NOT continue to
    /// attempt to process data"), and both are bounded by `close_timeout`.
    pub fn tcp_close(&self) -> Option<TcpClose> {
        let termination = self.termination.as_ref()?;
        if self.eof || self.close_sent.is_none() || termination.code == 1006 {
            return Some(TcpClose::Now);
        }
        Some(TcpClose::AfterPeer {
            shut_write: self.close_received.is_none(),
        })
    }

    /// Bytes received and not yet turned into events.
    pub fn buffered_len(&self) -> usize {
        self.wire.input.pending().len()
    }

    // ---- input -----------------------------------------------------------------------------

    /// Feeds bytes read from the socket, received at time `now`.
    ///
    /// Nothing is decoded here: [`Protocol::next_event`] decodes lazily, so the memory held
    /// ahead of the consumer is what the driver chose to read. A TLS failure during the
    /// opening handshake is returned; after it, a TLS failure fails the connection like a
    /// protocol error (state `Closed`, the error as the termination's cause).
    pub fn receive_data(&mut self, data: &[u8], now: f64) -> Result<(), Error> {
        self.now = now;
        self.reads += u64::from(!data.is_empty());
        if self.ignores_input() {
            return Ok(());
        }
        match self.wire.receive(data) {
            Ok(closed) => {
                self.eof |= closed;
                Ok(())
            }
            Err(e) => self.transport_failed(e),
        }
    }

    fn transport_failed(&mut self, error: Error) -> Result<(), Error> {
        self.eof = true;
        if self.state == State::Connecting {
            self.terminate(1006, String::new(), None);
            return Err(error);
        }
        let cause = match error {
            Error::Tls(e) => Some(Failure::Tls(e)),
            _ => None,
        };
        self.terminate(1006, String::new(), cause);
        Ok(())
    }

    /// No input is taken after the end of the stream, after the peer's close frame, or once
    /// the connection failed (RFC 6455 §7.1.7).
    fn ignores_input(&self) -> bool {
        self.eof || self.opened && !self.decoding || self.deferred.is_some()
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
        if self.ignores_input() {
            return None;
        }
        self.wire.take_input()
    }

    /// Puts back the buffer from [`Protocol::take_input`] with `n` bytes read into its free
    /// space at time `now` (dropped if input has become ignored meanwhile).
    pub fn receive_into(&mut self, input: InputBuffer, n: usize, now: f64) {
        self.now = now;
        self.reads += u64::from(n > 0);
        let accept = !self.ignores_input();
        self.wire.put_input(input, n, accept);
    }

    /// The socket reached end of stream. What arrived before it is still decoded.
    pub fn receive_eof(&mut self) {
        self.eof = true;
    }

    /// The transport failed or the driver gave up waiting (a close timeout): the connection
    /// is closed with 1006 unless it already ended. Complete messages that arrived before are
    /// still delivered, and bytes the socket still holds may be fed until its end.
    pub fn abort(&mut self) {
        self.terminate(1006, String::new(), None);
    }

    /// Defers failing the connection while `defer` is set: a frame that breaks the protocol is
    /// held back (nothing after it is decoded) and [`Protocol::failure_deferred`] turns true;
    /// the next call without deferral fails the connection with it. A driver that reads ahead of
    /// its application (asyncio, to answer pings while nobody receives) sets this while it
    /// holds undelivered messages, so that the application can still answer them before the
    /// connection fails, as RFC 6455 §5.4's ordering and Autobahn's 3.2, 4.1.3 and 5.15 expect.
    pub fn set_defer_failure(&mut self, defer: bool) {
        self.defer_failure = defer;
    }

    /// True when a violation waits for deferral to end.
    pub fn failure_deferred(&self) -> bool {
        self.deferred.is_some()
    }

    /// The next event, or `None` when more bytes are needed (or the connection is over).
    ///
    /// A refused or malformed upgrade is returned as an error once. A protocol violation
    /// fails the connection: the close frame with the matching code is queued, the state
    /// becomes `Closed`, and the error is returned once; later calls return `None` and
    /// [`Protocol::termination`] tells what happened.
    pub fn next_event(&mut self) -> Result<Option<Event<'_>>, Error> {
        self.reassembly.recycle();
        if self.state == State::Connecting {
            self.poll_handshake()?;
        }
        if let Some(error) = self.deferred.take() {
            if self.defer_failure {
                self.deferred = Some(error);
                return Ok(None);
            }
            self.fail(error.clone());
            return Err(Error::Protocol(error));
        }
        if !self.decoding {
            return Ok(None);
        }
        match self.decode_frame() {
            Ok(Some(step)) => Ok(Some(self.event_for(step))),
            Ok(None) => {
                if self.piece_ready {
                    // Streaming was armed after frames of the message under way arrived, and
                    // no frame follows them yet: they are the first piece. (A frame that
                    // follows would have handed them out with it.)
                    if let Some(piece) = self.ready_piece() {
                        return Ok(Some(self.event_for(Step::Message(piece))));
                    }
                }
                if self.eof {
                    // RFC 6455 §7.1.5: no close frame received → "_The WebSocket Connection
                    // Close Code_ is considered to be 1006."
                    self.decoding = false;
                    self.terminate(1006, String::new(), None);
                }
                Ok(None)
            }
            Err(e) if self.defer_failure => {
                self.deferred = Some(e);
                Ok(None)
            }
            Err(e) => {
                self.fail(e.clone());
                Err(Error::Protocol(e))
            }
        }
    }

    /// Hands the message under way, or else the next one, out in pieces as its frames arrive:
    /// [`Event::Fragment`] for each piece but the last, [`Event::Message`] for the last. The
    /// message after it is handed out whole again. UTF-8, `max_size` and inflating apply as
    /// to a whole message.
    pub fn stream_message(&mut self) {
        self.piece_ready = self.reassembly.stream();
    }

    #[cold]
    #[inline(never)]
    fn ready_piece(&mut self) -> Option<Completed> {
        self.piece_ready = false;
        self.reassembly.piece_now()
    }

    /// Stops streaming: when pieces of the message under way were handed out, the rest of it
    /// is dropped as it arrives (still checked); otherwise it is handed out whole.
    pub fn stop_streaming(&mut self) {
        self.piece_ready = false;
        self.reassembly.stop_streaming();
    }

    /// A message is being handed out in pieces (or armed to be).
    pub fn is_streaming(&self) -> bool {
        self.reassembly.streaming() == message::Streaming::Pieces
    }

    /// Releases the memory of the event returned last: call it when done with the event's
    /// payload, so an idle connection does not keep the buffers of one large message.
    #[inline]
    pub fn trim(&mut self) {
        self.reassembly.recycle();
        if self.wire.input.is_drained() {
            // A drained buffer is rewound, and released when it grew past KEEP_CAPACITY.
            self.wire.input.compact();
        }
    }

    /// Processes the upgrade response, if it is still awaited, without decoding any frame.
    ///
    /// Returns the state afterwards; a refused or malformed upgrade is returned as an error
    /// once, and leaves the engine `Closed`.
    pub fn poll_handshake(&mut self) -> Result<State, Error> {
        if self.state == State::Connecting {
            if let Err(e) = self.receive_handshake() {
                self.upgrade = None;
                self.terminate(1006, String::new(), None);
                return Err(e);
            }
        }
        Ok(self.state)
    }

    fn receive_handshake(&mut self) -> Result<(), Error> {
        if self.eof && self.wire.tls_handshaking() {
            return Err(Error::TlsHandshakeEof);
        }
        let Some(upgrade) = &mut self.upgrade else {
            return Ok(());
        };
        let Some((accepted, headers, used)) =
            upgrade.receive(self.wire.input.pending(), self.eof)?
        else {
            return Ok(());
        };
        let pos = self.wire.input.pos() + used;
        self.wire.input.set_pos(pos);
        self.subprotocol = accepted.subprotocol;
        self.deflate = accepted
            .deflate
            .map(|params| Box::new(Deflate::new(params)));
        self.response_headers = headers;
        self.state = State::Open;
        self.opened = true;
        self.decoding = true;
        if let Some(k) = &mut self.keepalive {
            k.next_ping = self.now + k.interval;
        }
        // What only the handshake needed goes now: an idle connection keeps little memory.
        self.upgrade = None;
        self.wire.input.compact();
        self.wire.input.release_if_drained();
        self.wire.shrink_out(true);
        Ok(())
    }

    /// Decodes frames up to the next event; `None` when more bytes are needed.
    // Inlined into its one caller: this is the message path (bench/callgrind.py).
    #[inline(always)]
    fn decode_frame(&mut self) -> Result<Option<Step>, ProtocolError> {
        loop {
            let in_pos = self.wire.input.pos();
            let pending = self.wire.input.pending();
            let Some((header, header_len)) = decode_header(pending)? else {
                return Ok(None);
            };
            self.reassembly
                .check_header(&header, self.deflate.is_some())?;
            // `check_header` bounded the length by `max_size` (or 125 for control frames);
            // without a limit it is at most 2^63 - 1, which fits a 64-bit usize.
            let payload_len =
                usize::try_from(header.payload_len).map_err(|_| ProtocolError::InvalidLength {
                    len: header.payload_len,
                })?;
            let available = pending.len() - header_len;
            if available < payload_len {
                if !header.opcode.is_control() {
                    let arrived = pending.get(header_len..).unwrap_or_default();
                    self.reassembly.partial(&header, arrived)?;
                }
                // Make room for the rest of the frame now rather than regrowing (and copying)
                // the buffer several times while it arrives. `check_header` bounded the length
                // by `max_size`; RESERVE_AHEAD bounds it when there is no limit.
                let missing = (payload_len - available).min(RESERVE_AHEAD);
                self.wire.input.reserve(missing);
                return Ok(None);
            }
            let start = in_pos + header_len;
            let end = start + payload_len;
            self.wire.input.set_pos(end);
            if let Some(journal) = self.wire.journal.as_deref_mut() {
                let h = &header;
                journal.frame(true, h.opcode, h.fin, h.rsv, h.payload_len);
            }
            let step = match header.opcode {
                OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                    match self.reassembly.frame(
                        &header,
                        self.wire.input.bytes(),
                        start,
                        end,
                        self.deflate.as_deref_mut(),
                    )? {
                        Some(completed) => Step::Message(completed),
                        None => continue,
                    }
                }
                OpCode::Ping => {
                    if self.state == State::Open {
                        let payload = self.wire.input.bytes().get(start..end).unwrap_or_default();
                        self.pong.clear();
                        self.pong.extend_from_slice(payload);
                        if !self.pong_owed && self.wire.out_len() < PONG_BACKLOG {
                            // RFC 6455 §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST
                            // send a Pong frame in response".
                            let _ = self.wire.write_frame(OpCode::Pong, &[&self.pong]);
                        } else {
                            // RFC 6455 §5.5.3: "If an endpoint receives a Ping frame and has
                            // not yet sent Pong frame(s) in response to previous Ping
                            // frame(s), the endpoint MAY elect to send a Pong frame for only
                            // the most recently processed Ping frame." Output waits for a peer
                            // that does not read: one pong is owed at most, so pings cannot
                            // make memory grow.
                            self.pong_owed = true;
                        }
                    }
                    Step::Ping { start, end }
                }
                OpCode::Pong => {
                    self.match_pong(start, end);
                    Step::Pong { start, end }
                }
                OpCode::Close => self.close_frame(start, end)?,
            };
            return Ok(Some(step));
        }
    }

    fn match_pong(&mut self, start: usize, end: usize) {
        let payload = self.wire.input.bytes().get(start..end).unwrap_or_default();
        if let Some(i) = self.pings.iter().position(|p| p.data == payload) {
            // A pong answers the ping with the same payload; earlier pings are answered too
            // (RFC 6455 §5.5.3 lets a peer answer only the most recent ping).
            if let Some(ping) = self.pings.get(i) {
                self.latency = (self.now - ping.sent_at).max(0.0);
                if let Some(journal) = self.wire.journal.as_deref_mut() {
                    journal.pong(self.latency, ping.keepalive);
                }
            }
            self.pings.drain(..=i);
            // The keepalive's wait ends when its ping (the latest keepalive ping) is answered.
            if !self.pings.iter().any(|p| p.keepalive) {
                if let Some(k) = &mut self.keepalive {
                    k.pong_due = None;
                }
            }
        }
    }

    fn close_frame(&mut self, start: usize, end: usize) -> Result<Step, ProtocolError> {
        let payload = self.wire.input.bytes().get(start..end).unwrap_or_default();
        let (code, reason) = match payload {
            [] => (1005, &[][..]),
            // RFC 6455 §5.5.1: a close body starts with a 2-byte status code.
            [_] => return Err(ProtocolError::ClosePayloadTooShort),
            [hi, lo, reason @ ..] => {
                let code = u16::from_be_bytes([*hi, *lo]);
                // RFC 6455 §7.4: only defined or registered codes, never 1005/1006/1015.
                if !is_valid_close_code(code) {
                    return Err(ProtocolError::InvalidCloseCode { code });
                }
                (code, reason)
            }
        };
        // RFC 6455 §5.5.1: the reason's "data is not guaranteed to be human readable" but is
        // UTF-8 (§7.1.6); invalid UTF-8 fails the connection with 1007 (§8.1).
        let reason = std::str::from_utf8(reason)
            .map_err(|_| ProtocolError::InvalidUtf8 {
                context: "close reason",
            })?
            .to_string();
        self.close_received = Some((code, reason.clone()));
        self.decoding = false;
        self.closed_by_peer = self.state == State::Open;
        if self.state == State::Open {
            // RFC 6455 §5.5.1: "If an endpoint receives a Close frame and did not previously
            // send a Close frame, the endpoint MUST send a Close frame in response."
            // Echo the code, as is customary; none when the peer sent none.
            let reply = if code == 1005 { None } else { Some(code) };
            let _ = self.queue_close(reply, "");
        }
        self.terminate(code, reason, None);
        Ok(Step::Close)
    }

    #[inline(always)]
    fn event_for(&self, step: Step) -> Event<'_> {
        let input = self.wire.input.bytes();
        let slice = |start: usize, end: usize| input.get(start..end).unwrap_or_default();
        match step {
            Step::Message(Completed { text, payload }) => {
                let message = |data| {
                    if text {
                        Message::Text(Text::checked(data))
                    } else {
                        Message::Binary(data)
                    }
                };
                match payload {
                    Payload::InPlace { start, end } => Event::Message(message(slice(start, end))),
                    Payload::Reassembled => match self.reassembly.handed_out() {
                        (data, false) => Event::Message(message(data)),
                        (piece, true) => Event::Fragment(message(piece)),
                    },
                }
            }
            Step::Ping { start, end } => Event::Ping(slice(start, end)),
            Step::Pong { start, end } => Event::Pong(slice(start, end)),
            Step::Close => match &self.close_received {
                Some((code, reason)) => Event::Close {
                    code: *code,
                    reason,
                },
                None => Event::Close {
                    code: 1005,
                    reason: "",
                },
            },
        }
    }

    /// Fails the connection (RFC 6455 §7.1.7): send a close frame with the error's code unless
    /// one was sent already, then stop processing input.
    fn fail(&mut self, error: ProtocolError) {
        let code = error.close_code();
        if self.state == State::Open {
            let _ = self.queue_close(Some(code), "");
        }
        self.decoding = false;
        self.reassembly.abandon();
        self.terminate(code, String::new(), Some(Failure::Protocol(error)));
    }

    fn terminate(&mut self, code: u16, reason: String, cause: Option<Failure>) {
        self.state = State::Closed;
        self.sending = None;
        if self.termination.is_none() {
            self.termination = Some(Termination {
                code,
                reason,
                cause,
            });
        }
    }

    // ---- output ----------------------------------------------------------------------------

    /// True when bytes are waiting for the socket.
    pub fn has_data_to_send(&self) -> bool {
        self.pong_owed || !self.wire.out_is_empty()
    }

    /// Hands the bytes for the socket over by swapping them with `buf` (which should be
    /// empty; its capacity is reused).
    pub fn take_data_to_send(&mut self, buf: &mut Vec<u8>) {
        self.write_owed_pong();
        buf.clear();
        std::mem::swap(self.wire.out(), buf);
    }

    /// Runs `f` on the bytes waiting for the socket and empties the buffer, keeping its
    /// capacity (for drivers that copy the bytes out anyway).
    pub fn drain_data_to_send<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> R {
        self.write_owed_pong();
        let out = self.wire.out();
        let result = f(out);
        out.clear();
        self.wire.shrink_out(false);
        result
    }

    /// How many bytes wait for the socket (a pong owed is queued first).
    pub fn pending_output(&mut self) -> usize {
        self.write_owed_pong();
        self.wire.out_len()
    }

    fn write_owed_pong(&mut self) {
        if self.pong_owed {
            self.pong_owed = false;
            if self.state == State::Open {
                let _ = self.wire.write_frame(OpCode::Pong, &[&self.pong]);
            }
        }
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

    /// Queues a text message, compressed when permessage-deflate was negotiated and
    /// `compress` is true.
    pub fn send_text(&mut self, text: &str, compress: bool) -> Result<(), Error> {
        self.send_data(OpCode::Text, text.as_bytes(), compress)
    }

    /// Queues a binary message, compressed when permessage-deflate was negotiated and
    /// `compress` is true.
    pub fn send_binary(&mut self, data: &[u8], compress: bool) -> Result<(), Error> {
        self.send_data(OpCode::Binary, data, compress)
    }

    fn send_data(&mut self, opcode: OpCode, data: &[u8], compress: bool) -> Result<(), Error> {
        self.check_open()?;
        if self.sending.is_some() {
            return Err(fragments_under_way());
        }
        let Some(deflate) = self.deflate.as_deref_mut().filter(|_| compress) else {
            return self.wire.write_frame(opcode, &[data]);
        };
        // RFC 7692 §6: a compressed message is sent with RSV1 set on its first frame.
        let binary = opcode == OpCode::Binary;
        let wire = &mut self.wire;
        with_scratch(&mut self.deflated, |out| {
            match deflate.compress_message(data, binary, out) {
                Ok(true) => wire.write_frame_rsv1(opcode, &[out], true),
                Ok(false) => wire.write_frame(opcode, &[data]),
                Err(e) => Err(Error::Protocol(e.into())),
            }
        })
    }

    /// Queues a message whose payload the driver keeps, unchanged and alive, until it is
    /// written: the header is queued now, and [`Protocol::write_streamed`] masks the payload
    /// part by part as the driver writes it, so a large message is never copied whole. Frames
    /// queued meanwhile (pongs, a close) wait behind it, in order. Returns false when the
    /// message was queued the usual way instead: it is shorter than [`STREAM_PAYLOAD`], it is
    /// to be compressed, the connection is encrypted, or a payload already streams.
    pub fn send_streamed(
        &mut self,
        text: bool,
        data: &[u8],
        compress: bool,
    ) -> Result<bool, Error> {
        let opcode = if text { OpCode::Text } else { OpCode::Binary };
        let compressed = compress && self.deflate.is_some();
        if data.len() < STREAM_PAYLOAD || compressed {
            self.send_data(opcode, data, compress)?;
            return Ok(false);
        }
        self.check_open()?;
        if self.sending.is_some() {
            return Err(fragments_under_way());
        }
        // A pong owed goes ahead of the message, as it would when the output is taken.
        self.write_owed_pong();
        if self.wire.stream_frame(opcode, data)? {
            return Ok(true);
        }
        self.wire.write_frame(opcode, &[data])?;
        Ok(false)
    }

    /// The bytes of the payload given to [`Protocol::send_streamed`] not yet written.
    pub fn streamed_left(&self) -> usize {
        self.wire.stream_left()
    }

    /// Writes the next bytes of the streamed payload, masked, into `dst`; returns how many.
    /// `payload` is the one given to [`Protocol::send_streamed`], and what was queued before
    /// it must have been taken ([`Protocol::take_data_to_send`]) first; otherwise nothing is
    /// written.
    pub fn write_streamed(&mut self, payload: &[u8], dst: &mut [u8]) -> usize {
        self.wire.stream_into(payload, dst)
    }

    /// Queues one fragment of a message sent in pieces: the first call starts a text (or
    /// binary) message, `fin` ends it. Until then no other message may be sent (RFC 6455
    /// §5.4: "the fragments of one message MUST NOT be interleaved between the fragments of
    /// another message"); control frames may go in between. With permessage-deflate
    /// negotiated and `compress` true on the first fragment, the message is compressed: its
    /// fragments carry one DEFLATE stream, each fragment's data flushed as it is sent (see
    /// [`Deflate::compress_fragment`]), and RSV1 is set on the first frame only (RFC 7692
    /// §6.1). `compress` on later fragments is ignored.
    pub fn send_fragment(
        &mut self,
        text: bool,
        data: &[u8],
        fin: bool,
        compress: bool,
    ) -> Result<(), Error> {
        self.check_open()?;
        let (opcode, compressed) = match self.sending {
            None if text => (OpCode::Text, compress && self.deflate.is_some()),
            None => (OpCode::Binary, compress && self.deflate.is_some()),
            Some(s) if s.text == text => (OpCode::Continuation, s.compressed),
            Some(_) => {
                return Err(Error::InvalidArgument(
                    "a fragmented message cannot mix text and binary fragments".into(),
                ))
            }
        };
        match self.deflate.as_deref_mut().filter(|_| compressed) {
            Some(deflate) => {
                let first = opcode != OpCode::Continuation;
                let wire = &mut self.wire;
                with_scratch(&mut self.deflated, |out| {
                    deflate
                        .compress_fragment(data, fin, out)
                        .map_err(|e| Error::Protocol(e.into()))?;
                    wire.write_frame_fin(opcode, &[out], first, fin)
                })?;
            }
            None => self.wire.write_frame_fin(opcode, &[data], false, fin)?,
        }
        self.sending = (!fin).then_some(Sending { text, compressed });
        Ok(())
    }

    /// A message is being sent in fragments ([`Protocol::send_fragment`]).
    pub fn sending_fragments(&self) -> bool {
        self.sending.is_some()
    }

    /// The permessage-deflate parameters, when the server accepted our offer.
    pub fn extensions(&self) -> Option<deflate::Params> {
        self.deflate.as_ref().map(|d| d.params())
    }

    /// Queues a ping sent at `now`; its pong updates [`Protocol::latency`].
    pub fn send_ping(&mut self, data: &[u8], now: f64) -> Result<(), Error> {
        check_control_len(data.len(), "ping")?;
        self.check_open()?;
        self.wire.write_frame(OpCode::Ping, &[data])?;
        self.pings.push_back(PendingPing {
            data: data.to_vec(),
            sent_at: now,
            keepalive: false,
        });
        Ok(())
    }

    /// When [`Protocol::handle_deadline`] may next have work: the next keepalive ping, or the
    /// end of the wait for its pong if that comes first. (While a pong is awaited the next
    /// ping waits for it, but the pong may arrive meanwhile, and a driver does not have to
    /// re-arm its timer when it does.) `None` when keepalive is off or the connection is not
    /// open.
    pub fn next_deadline(&self) -> Option<f64> {
        let k = self
            .keepalive
            .as_ref()
            .filter(|_| self.state == State::Open)?;
        Some(k.pong_due.map_or(k.next_ping, |due| due.min(k.next_ping)))
    }

    /// Runs the keepalive at time `now`: sends the ping that is due, or fails the connection
    /// with 1011 when the pong of the last one is overdue and nothing at all arrived since it
    /// was sent. Call it at [`Protocol::next_deadline`], after feeding what the socket holds,
    /// and not while reading is paused because the application is behind (the pong may wait
    /// in the socket behind messages).
    ///
    /// Bytes that arrived after the ping prove the connection is alive as well as its pong
    /// would, so they end the wait too (the pong still updates `latency` when it comes): a
    /// peer that is busy sending a long message, or whose pong is queued behind many, is not
    /// failed; a peer or a path that went silent is.
    pub fn handle_deadline(&mut self, now: f64) -> Result<(), Error> {
        let Some(k) = self.keepalive.filter(|_| self.state == State::Open) else {
            return Ok(());
        };
        match k.pong_due {
            Some(due) if now >= due && self.reads > k.reads_at_ping => {
                if let Some(k) = &mut self.keepalive {
                    k.pong_due = None;
                }
                return self.handle_deadline(now);
            }
            Some(due) if now >= due => {
                // RFC 6455 §7.4.1, 1011: "an unexpected condition that prevented it from
                // fulfilling the request" — the peer is gone or stuck; as websockets does.
                let _ = self.queue_close(Some(1011), KEEPALIVE_TIMEOUT_REASON);
                self.decoding = false;
                self.reassembly.abandon();
                self.terminate(1011, KEEPALIVE_TIMEOUT_REASON.to_string(), None);
            }
            None if now >= k.next_ping => {
                let mut data = [0u8; 4];
                crate::random::random_bytes(&mut data)?;
                self.wire.write_frame(OpCode::Ping, &[&data])?;
                // An earlier keepalive ping whose wait ended with other data is forgotten: a
                // peer that never answers pings cannot make this list grow.
                self.pings.retain(|p| !p.keepalive);
                self.pings.push_back(PendingPing {
                    data: data.to_vec(),
                    sent_at: now,
                    keepalive: true,
                });
                if let Some(journal) = self.wire.journal.as_deref_mut() {
                    journal.keepalive_ping();
                }
                let reads = self.reads;
                if let Some(k) = &mut self.keepalive {
                    k.pong_due = Some(now + k.timeout);
                    k.next_ping = now + k.interval;
                    k.reads_at_ping = reads;
                }
            }
            Some(due) if now >= k.next_ping => {
                // The next ping is due but the last one's pong is still awaited: it goes once
                // the pong is in, at the end of the wait at the latest (or an interval later
                // when the wait has no end), so that no driver spins on a passed deadline.
                let next = if due.is_finite() {
                    due
                } else {
                    now + k.interval
                };
                if let Some(k) = &mut self.keepalive {
                    k.next_ping = next;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Queues an unsolicited pong.
    pub fn send_pong(&mut self, data: &[u8]) -> Result<(), Error> {
        check_control_len(data.len(), "pong")?;
        self.check_open()?;
        self.wire.write_frame(OpCode::Pong, &[data])
    }

    /// Starts the closing handshake. Idempotent: once closing or closed, it does nothing.
    ///
    /// `code` must be one an endpoint may send (1000–1003, 1007–1014, 3000–4999); `None` sends
    /// a close frame without a body. The reason is at most 123 bytes of UTF-8.
    pub fn send_close(&mut self, code: Option<u16>, reason: &str) -> Result<(), Error> {
        check_close(code, reason)?;
        match self.state {
            State::Connecting => {
                self.upgrade = None;
                self.terminate(code.unwrap_or(1005), reason.to_string(), None);
                Ok(())
            }
            State::Open => self.queue_close(code, reason),
            State::Closing | State::Closed => Ok(()),
        }
    }

    fn queue_close(&mut self, code: Option<u16>, reason: &str) -> Result<(), Error> {
        // The pong owed goes first: after our close frame, nothing else is sent.
        self.write_owed_pong();
        let code_bytes;
        let parts: &[&[u8]] = match code {
            Some(c) => {
                code_bytes = c.to_be_bytes();
                &[&code_bytes, reason.as_bytes()]
            }
            None => &[],
        };
        self.wire.write_frame(OpCode::Close, parts)?;
        // A message sent in fragments can never be finished after the close frame.
        self.sending = None;
        self.close_sent = Some((code.unwrap_or(1005), reason.to_string()));
        if self.state == State::Open {
            self.state = if self.close_received.is_some() {
                State::Closed
            } else {
                State::Closing
            };
        }
        if self.close_received.is_some() {
            self.wire.close_tls()?;
        }
        Ok(())
    }
}

/// A close code given as any integer: out of range is as invalid as any code we may not send.
pub fn close_code(code: i64) -> Result<u16, Error> {
    u16::try_from(code)
        .ok()
        .filter(|c| is_valid_close_code(*c))
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "invalid close code {code}: use 1000-1003, 1007-1014 or 3000-4999"
            ))
        })
}

/// The arguments of a close frame we send.
pub fn check_close(code: Option<u16>, reason: &str) -> Result<(), Error> {
    if let Some(c) = code {
        close_code(i64::from(c))?;
    } else if !reason.is_empty() {
        return Err(Error::InvalidArgument(
            "a close reason needs a close code".into(),
        ));
    }
    check_control_len(reason.len() + 2, "close")
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

/// A decoded frame's meaning, as buffer offsets (so the borrow can be taken afterwards).
#[derive(Debug, Clone, Copy)]
enum Step {
    Message(Completed),
    Ping { start: usize, end: usize },
    Pong { start: usize, end: usize },
    Close,
}

#[cfg(test)]
mod tests;
