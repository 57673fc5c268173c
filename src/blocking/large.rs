//! The blocking driver's large-payload path: a large binary frame's payload is read from the
//! socket (or from rustls' plaintext) straight into the object `recv()` returns, one copy in
//! all. The engine picks the frame and keeps every rule (`protocol/large.rs`); this module
//! only moves bytes.

use std::mem::MaybeUninit;
use std::sync::Mutex;
use std::time::Instant;

use super::net::{ReadTimeout, Signals, Stream};
use super::sync::{lock, Blocking};
use crate::buffer::Filling;
use crate::error::Error;
use crate::protocol::{LargeFrame, Protocol};

/// What the large path uses of a connection (the blocking client lends it): its socket, its
/// engine and the engine's clock. Generic, not `dyn`: this is a message path too.
pub(super) trait Wire: Sync {
    /// The socket.
    fn stream(&self) -> &Stream;
    /// The engine, behind its lock.
    fn engine(&self) -> &Mutex<Protocol>;
    /// The engine's clock (seconds since the connection was made).
    fn now(&self) -> f64;
}

/// The reader's read state, lent for one payload (the caller holds the reader lock).
pub(super) struct Reads<'a> {
    /// The reader's read timeout.
    pub(super) timeout: &'a mut ReadTimeout,
    /// Under TLS, the ciphertext buffer.
    pub(super) buf: &'a mut Vec<u8>,
    /// Under TLS, the size of a read.
    pub(super) size: usize,
}

/// Memory a large payload is received into, and what it becomes once whole.
pub trait LargeTarget<T>: Send {
    /// Runs `receive` on the memory, exactly the payload's length and empty; afterwards the
    /// target keeps whether `receive` filled it. Called once.
    fn receive<R>(&mut self, receive: impl FnOnce(&mut Filling<'_>) -> R) -> R;
    /// The received message, if [`LargeTarget::receive`] filled every byte. Called with the
    /// interpreter attached, as the message conversion is.
    fn finish(self) -> Option<T>;
}

/// Makes [`LargeTarget`]s.
pub trait LargeSink<T> {
    /// The target type.
    type Target: LargeTarget<T>;
    /// A target for a payload of `len` bytes, or `None` to leave it to the engine's buffer.
    /// Called with the interpreter attached.
    fn target(&mut self, len: usize) -> Option<Self::Target>;
}

/// What [`receive_large`] did.
pub(super) enum Large<T> {
    /// The message, received whole.
    Message(T),
    /// No target was made: the frame takes the usual path.
    Declined,
    /// Cut short (the end of the stream, the connection failed); what was read is back in
    /// the engine.
    Cut,
}

/// No large-payload path: every payload goes through the engine's buffer.
pub struct NoLarge;

/// The target [`NoLarge`] never makes.
pub enum Never {}

impl<T> LargeTarget<T> for Never {
    fn receive<R>(&mut self, _receive: impl FnOnce(&mut Filling<'_>) -> R) -> R {
        match *self {}
    }
    fn finish(self) -> Option<T> {
        match self {}
    }
}

impl<T> LargeSink<T> for NoLarge {
    type Target = Never;
    fn target(&mut self, _len: usize) -> Option<Never> {
        None
    }
}

/// A plain Rust target: a vector (for tests and Rust users).
pub struct VecSink;

/// The memory being filled, and the message once it is whole.
pub struct VecTarget {
    memory: Vec<MaybeUninit<u8>>,
    message: Option<Vec<u8>>,
}

impl LargeTarget<Vec<u8>> for VecTarget {
    fn receive<R>(&mut self, receive: impl FnOnce(&mut Filling<'_>) -> R) -> R {
        let mut memory = Filling::new(&mut self.memory);
        let result = receive(&mut memory);
        // Safe and copy-free would need `Vec::assume_init` (unstable); a copy is fine here.
        if memory.is_full() {
            self.message = Some(memory.filled().to_vec());
        }
        result
    }
    fn finish(self) -> Option<Vec<u8>> {
        self.message
    }
}

impl LargeSink<Vec<u8>> for VecSink {
    type Target = VecTarget;
    fn target(&mut self, len: usize) -> Option<VecTarget> {
        let mut memory = Vec::new();
        memory.resize_with(len, MaybeUninit::uninit);
        Some(VecTarget {
            memory,
            message: None,
        })
    }
}

/// After the engine found no message in what it holds and reported `frame` as the large
/// frame under way (nothing feeds the engine meanwhile: the caller holds the reader lock):
/// receives the rest of its payload into a target from `sink` and returns the message.
/// When reading fails, what was read is back in the engine before the error is returned.
#[allow(clippy::too_many_arguments)]
pub(super) fn receive_large<T, S: LargeSink<T>, B: Blocking>(
    wire: &impl Wire,
    mut reads: Reads<'_>,
    frame: &LargeFrame,
    sink: &mut S,
    deadline: Option<Instant>,
    during: &'static str,
    signals: Signals<'_>,
    blocking: &B,
) -> Result<Large<T>, Error> {
    let frame = *frame;
    lock(wire.engine()).begin_large(&frame);
    // Made attached (a Python object), outside the engine lock.
    let Some(mut target) = sink.target(frame.len) else {
        return Ok(Large::Declined);
    };
    let result = target.receive(|memory| {
        if memory.capacity() != frame.len {
            // Not the payload's length: the frame takes the engine's buffer after all.
            return Ok(false);
        }
        lock(wire.engine()).copy_large_prefix(&frame, memory);
        let result = blocking
            .run(|| read_payload(wire, &mut reads, &frame, memory, deadline, during, signals));
        let mut engine = lock(wire.engine());
        if memory.is_full() && engine.complete_large(&frame).is_ok() {
            engine.trim();
            return Ok(true);
        }
        // Cut short (a timeout, a signal, the end of the stream): what was read goes back to
        // the engine, which continues as if it had been fed normally.
        let received = memory.filled().get(frame.buffered..).unwrap_or_default();
        engine.abandon_large(received);
        result.map(|()| false)
    });
    match result? {
        true => Ok(target.finish().map_or(Large::Cut, Large::Message)),
        false => Ok(Large::Cut),
    }
}

/// Reads until `memory` is full or the stream ends.
fn read_payload(
    wire: &impl Wire,
    reads: &mut Reads<'_>,
    frame: &LargeFrame,
    memory: &mut Filling<'_>,
    deadline: Option<Instant>,
    during: &'static str,
    signals: Signals<'_>,
) -> Result<(), Error> {
    while !memory.is_full() {
        if !frame.tls {
            let n = wire
                .stream()
                .read_into(reads.timeout, memory, deadline, during, signals)?;
            let mut engine = lock(wire.engine());
            if n == 0 {
                engine.receive_eof();
                return Ok(());
            }
            engine.large_progress(wire.now());
            continue;
        }
        // Under TLS: ciphertext into the reader's buffer, plaintext straight into `memory`.
        reads.buf.resize(reads.size, 0);
        let read = wire
            .stream()
            .read(reads.timeout, reads.buf, deadline, during, signals)?;
        let mut engine = lock(wire.engine());
        if read == 0 {
            engine.receive_eof();
            return Ok(());
        }
        let data = reads.buf.get(..read).unwrap_or_default();
        engine.receive_data_large(data, memory, wire.now())?;
        if engine.termination().is_some() {
            // A TLS failure or close_notify: nothing more comes.
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::blocking::client::Client;
    use crate::blocking::open;
    use crate::blocking::sync::Direct;
    use crate::handshake::accept_key;
    use crate::options::Options;
    use crate::protocol::{Message, LARGE_PAYLOAD};

    /// A `VecSink` that counts the targets it makes.
    #[derive(Default)]
    struct Counting(usize);

    impl LargeSink<Vec<u8>> for Counting {
        type Target = VecTarget;
        fn target(&mut self, len: usize) -> Option<VecTarget> {
            self.0 += 1;
            VecSink.target(len)
        }
    }

    fn header(first: u8, len: usize) -> Vec<u8> {
        let mut h = vec![first, 127];
        h.extend_from_slice(&(len as u64).to_be_bytes());
        h
    }

    /// A raw server: accepts the upgrade, then writes each chunk `script` sends it, so that
    /// a test decides what the client has received at each step.
    fn server() -> (u16, mpsc::Sender<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        std::thread::spawn(move || {
            let (mut sock, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") {
                sock.read_exact(&mut byte).unwrap();
                request.push(byte[0]);
            }
            let request = String::from_utf8(request).unwrap();
            let key = request
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap();
            let response = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                accept_key(key)
            );
            sock.write_all(response.as_bytes()).unwrap();
            for chunk in rx {
                if sock.write_all(&chunk).is_err() {
                    return;
                }
            }
        });
        (port, tx)
    }

    fn recv(client: &Client, sink: &mut Counting, timeout: f64) -> Result<Vec<u8>, Error> {
        let timeout = Some(Duration::from_secs_f64(timeout));
        let convert = |m: Message<'_>| m.as_bytes().to_vec();
        client.recv(timeout, Signals::NONE, &Direct, convert, sink)
    }

    #[test]
    fn a_large_binary_frame_is_received_into_the_target_also_when_cut_short() {
        let (port, script) = server();
        let url = format!("ws://127.0.0.1:{port}");
        let client = open::connect(&url, &Options::default(), None, Signals::NONE).unwrap();
        let mut sink = Counting::default();
        let len = LARGE_PAYLOAD + 12_345;
        let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();

        // The header and part of the payload first: the rest goes straight to the target.
        let mut first = header(0x82, len);
        first.extend_from_slice(&payload[..1000]);
        script.send(first).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        script.send(payload[1000..].to_vec()).unwrap();
        assert_eq!(recv(&client, &mut sink, 5.0).unwrap(), payload);
        assert_eq!(sink.0, 1);

        // Cut short by the timeout: what was read goes back to the engine, and the next
        // recv() delivers the whole message (through a second target).
        let mut first = header(0x82, len);
        first.extend_from_slice(&payload[..5000]);
        script.send(first).unwrap();
        script.send(payload[5000..200_000].to_vec()).unwrap();
        let cut = recv(&client, &mut sink, 0.3);
        assert!(matches!(cut, Err(Error::Timeout { .. })), "{cut:?}");
        assert_eq!(sink.0, 2);
        script.send(payload[200_000..].to_vec()).unwrap();
        // A small message right behind it stays buffered for the next recv().
        script.send(vec![0x82, 3, 1, 2, 3]).unwrap();
        assert_eq!(recv(&client, &mut sink, 5.0).unwrap(), payload);
        assert_eq!(recv(&client, &mut sink, 5.0).unwrap(), vec![1, 2, 3]);

        // Fragments and small frames never take the path.
        let before = sink.0;
        let mut fragments = header(0x02, len);
        fragments.extend_from_slice(&payload);
        fragments.extend_from_slice(&header(0x80, len));
        script.send(fragments).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        script.send(payload.clone()).unwrap();
        let whole = recv(&client, &mut sink, 5.0).unwrap();
        assert_eq!(whole.len(), 2 * len);
        assert_eq!(sink.0, before);

        // The end of the stream in the middle of a payload: no message, the connection is
        // closed with 1006.
        let mut first = header(0x82, len);
        first.extend_from_slice(&payload[..100]);
        script.send(first).unwrap();
        drop(script);
        let end = recv(&client, &mut sink, 5.0);
        assert!(
            matches!(&end, Err(Error::Closed(t)) if t.code == 1006),
            "{end:?}"
        );
    }
}
