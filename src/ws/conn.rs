//! A WebSocket connection over a `TcpStream` (RFC 6455 §5–§7): [`run`], the read loop that
//! drives the pure codec (frames → messages, control frames, the close handshake, keepalive
//! pings), and [`Sender`], the write half that the connection's own thread and others share.
//!
//! One thread per connection reads; nobody else does. Writes come from that thread (echoes,
//! pongs, replies), which may wait for the peer up to the write timeout, and from whoever else
//! the application lets write (say, a fan-out thread), which must not wait: under
//! [`Sender::try_lock`] it gets primitive writes that return at once ([`Locked::try_write`],
//! [`Locked::try_flush`]) and composes its own policy from them. What `T` a sender carries under its lock is the
//! application's (its per-connection write state); this layer only stores it.

use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use super::error::Error;
use super::frame::{self, encode_close, OpCode, MAX_HEADER_LEN};
use super::inbox::Inbox;
use super::message::{Event, Message};
use crate::net::{Reader, STACK_READ};

pub use super::inbox::Budget;
pub use crate::net::is_timeout;

/// Write timeout of a socket that another thread writes to as well: short, so a full send
/// buffer costs such a writer at most this long (the kernel rounds it up to one tick).
pub const SHORT_WRITE: Duration = Duration::from_millis(1);

/// Frames up to this payload size are copied behind their header and written at once; larger
/// ones are written in two calls, without the copy.
const COPY_BELOW: usize = 16 * 1024;

/// After we send a close frame, how long we wait for the peer's (RFC 6455 §7.1.1: the server
/// closes the TCP connection once both close frames have been exchanged).
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The write half's phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteState {
    /// Data frames may be sent.
    Open,
    /// Our close frame is out: RFC 6455 §5.5.1, no data frames after it.
    CloseSent,
    /// A write failed, or the connection was shut down: nothing more is sent.
    Dead,
}

/// What one write that does not wait did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wrote {
    /// The socket took everything.
    All,
    /// The socket took part; the rest is pending and goes out before anything else.
    Part,
    /// The socket took nothing (its buffer is full); nothing is pending from this write.
    Nothing,
    /// Not written: the connection is not open, or the write failed (it is dead now).
    Closed,
}

struct Half<T> {
    /// Shared with the reader: one descriptor per connection (`Read`/`Write` are implemented
    /// for `&TcpStream`), where `try_clone` would spend a second one.
    stream: Arc<TcpStream>,
    /// Bytes accepted for sending that the socket has not taken yet.
    pending: Vec<u8>,
    /// Reused to encode small frames, so sending one allocates nothing.
    scratch: Vec<u8>,
    state: WriteState,
    /// Bytes the socket has taken so far (for the access log).
    sent: u64,
    /// The application's per-connection write state.
    ext: T,
}

/// The write half of a connection, shared by its reader thread and others.
pub struct Sender<T = ()> {
    half: Mutex<Half<T>>,
    write_timeout: Duration,
}

/// The write half, locked: primitive writes for a writer that composes its own policy.
pub struct Locked<'a, T> {
    half: MutexGuard<'a, Half<T>>,
    write_timeout: Duration,
}

impl<T> Sender<T> {
    /// `shared`: another thread writes to this socket too and must not wait on it, so single
    /// writes are bounded by [`SHORT_WRITE`]; otherwise by `write_timeout`. Either way a whole
    /// [`send`](Sender::send) has `write_timeout` in all.
    pub fn new(
        stream: Arc<TcpStream>,
        write_timeout: Duration,
        shared: bool,
        ext: T,
    ) -> io::Result<Self> {
        stream.set_write_timeout(Some(if shared { SHORT_WRITE } else { write_timeout }))?;
        Ok(Sender {
            half: Mutex::new(Half {
                stream,
                pending: Vec::new(),
                scratch: Vec::new(),
                state: WriteState::Open,
                sent: 0,
                ext,
            }),
            write_timeout,
        })
    }

    /// Waits for the lock.
    pub fn lock(&self) -> Locked<'_, T> {
        // A panic while writing leaves at worst a partial frame queued; the connection is then
        // broken for the peer anyway, and the lock must not take others down with it.
        Locked {
            half: self.half.lock().unwrap_or_else(PoisonError::into_inner),
            write_timeout: self.write_timeout,
        }
    }

    /// The lock if it is free now.
    pub fn try_lock(&self) -> Option<Locked<'_, T>> {
        let half = match self.half.try_lock() {
            Ok(h) => h,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        Some(Locked {
            half,
            write_timeout: self.write_timeout,
        })
    }

    pub fn write_timeout(&self) -> Duration {
        self.write_timeout
    }

    /// Bytes the socket has taken so far.
    pub fn bytes_sent(&self) -> u64 {
        self.lock().half.sent
    }

    /// Sends one frame, waiting (up to the write timeout from now) until the socket has taken
    /// it.
    pub fn send(&self, opcode: OpCode, payload: &[u8]) -> io::Result<()> {
        let mut l = self.lock();
        if l.half.state != WriteState::Open {
            return Err(io::ErrorKind::NotConnected.into());
        }
        let deadline = Instant::now() + self.write_timeout;
        if payload.len() <= COPY_BELOW {
            // One write, one system call (and one TCP segment) for a small frame.
            let mut out = std::mem::take(&mut l.half.scratch);
            out.clear();
            frame::encode(true, opcode, payload, &mut out);
            let r = l.write_until(&out, deadline);
            l.half.scratch = out;
            return r;
        }
        // A large payload is written from where it lies rather than copied behind the header;
        // one deadline for the whole frame.
        let mut head = Vec::with_capacity(MAX_HEADER_LEN);
        frame::encode_header(true, opcode, payload.len(), &mut head);
        l.write_until(&head, deadline)?;
        l.write_until(payload, deadline)
    }

    /// Sends a close frame; no data frame follows it.
    pub fn send_close(&self, code: u16, reason: &str) -> io::Result<()> {
        // `encode_close` writes the whole frame (header, code, reason cut to fit §5.5).
        let mut out = Vec::with_capacity(MAX_HEADER_LEN + 2 + reason.len());
        encode_close(code, reason, &mut out);
        self.close_with(&out)
    }

    /// Sends a close frame with an empty payload (the answer to one, §5.5.1).
    fn send_close_empty(&self) -> io::Result<()> {
        let mut out = Vec::with_capacity(2);
        frame::encode(true, OpCode::Close, &[], &mut out);
        self.close_with(&out)
    }

    fn close_with(&self, frame: &[u8]) -> io::Result<()> {
        let mut l = self.lock();
        if l.half.state != WriteState::Open {
            return Ok(());
        }
        l.half.state = WriteState::CloseSent;
        l.write_until(frame, Instant::now() + self.write_timeout)
    }

    /// From another thread (a shutdown going through every connection): sends a close frame
    /// without waiting on the peer. `false` when the lock is taken (try again later). Behind
    /// bytes still pending, the frame is queued after them (whoever flushes this sender's
    /// pending bytes sends it); a socket that does not take the frame whole at once is shut
    /// down instead. Either way no data frame follows; the connection's own thread sees the
    /// peer's answering close (or the end of the socket) and ends.
    pub fn close_now(&self, code: u16, reason: &str) -> bool {
        let Some(mut l) = self.try_lock() else {
            return false;
        };
        if l.half.state != WriteState::Open {
            return true;
        }
        let mut out = Vec::with_capacity(MAX_HEADER_LEN + 2 + reason.len());
        encode_close(code, reason, &mut out);
        l.half.state = WriteState::CloseSent;
        if !l.half.pending.is_empty() {
            l.half.pending.extend_from_slice(&out);
            return true;
        }
        match retry_interrupted(|| write_nonblocking(&l.half.stream, &out)) {
            Ok(n) if n == out.len() => {}
            _ => l.kill(),
        }
        true
    }

    /// Our side is done sending (after a close frame): FIN, after anything still pending
    /// (within the write timeout).
    fn shutdown_write(&self) {
        let mut l = self.lock();
        if !l.half.pending.is_empty() && l.half.state != WriteState::Dead {
            let _ = l.write_until(&[], Instant::now() + self.write_timeout);
        }
        let _ = l.half.stream.shutdown(Shutdown::Write);
    }

    /// Ends the connection for both directions (wakes its reader).
    pub fn shutdown(&self) {
        self.lock().kill();
    }
}

impl<T> Locked<'_, T> {
    pub fn state(&self) -> WriteState {
        self.half.state
    }

    /// The application's write state.
    pub fn ext(&mut self) -> &mut T {
        &mut self.half.ext
    }

    pub fn has_pending(&self) -> bool {
        !self.half.pending.is_empty()
    }

    /// Writes encoded frames after anything pending, waiting up to the write timeout.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.half.state != WriteState::Open {
            return Err(io::ErrorKind::NotConnected.into());
        }
        self.write_until(bytes, Instant::now() + self.write_timeout)
    }

    /// Writes what is pending, then `bytes`, by `deadline` (the write timeout from when the
    /// write started): a peer that reads a little now and then (each bit of progress used to
    /// restart the clock) cannot stretch a write for ever. One `write` call blocks at most
    /// `SO_SNDTIMEO`, so this ends within twice the write timeout. A failure kills the
    /// connection (a frame may be half out).
    fn write_until(&mut self, bytes: &[u8], deadline: Instant) -> io::Result<()> {
        let pending = std::mem::take(&mut self.half.pending);
        let h = &mut *self.half;
        let mut r = write_all(&h.stream, &pending, deadline, &mut h.sent);
        if r.is_ok() {
            r = write_all(&h.stream, bytes, deadline, &mut h.sent);
        }
        if r.is_err() {
            self.half.state = WriteState::Dead;
        }
        r
    }

    /// One write of encoded frames that waits at most [`SHORT_WRITE`] (a kernel tick) when the
    /// socket is full; what it does not take is kept pending. Only when nothing is pending
    /// (else `Nothing`: the caller decides what to do about a peer that is behind).
    pub fn try_write(&mut self, bytes: &[u8]) -> Wrote {
        self.try_write_with(bytes, |s, b| (&*s).write(b))
    }

    /// [`try_write`](Locked::try_write) that does not wait at all: the socket is non-blocking
    /// for the duration of the write. For a writer that goes through many peers in turn,
    /// where a tick per full peer adds up; costs two `fcntl`s.
    pub fn try_write_now(&mut self, bytes: &[u8]) -> Wrote {
        self.try_write_with(bytes, write_nonblocking)
    }

    fn try_write_with(
        &mut self,
        bytes: &[u8],
        write: impl Fn(&TcpStream, &[u8]) -> io::Result<usize>,
    ) -> Wrote {
        if self.half.state != WriteState::Open {
            return Wrote::Closed;
        }
        if !self.half.pending.is_empty() {
            return Wrote::Nothing;
        }
        if bytes.is_empty() {
            return Wrote::All;
        }
        let r = retry_interrupted(|| write(&self.half.stream, bytes));
        if let Ok(n) = r {
            self.half.sent += n as u64;
        }
        match r {
            Ok(n) if n == bytes.len() => Wrote::All,
            Ok(n) => {
                // The start of a frame went out: the rest must follow before anything else.
                self.half.pending.extend_from_slice(&bytes[n..]);
                Wrote::Part
            }
            Err(e) if is_timeout(&e) => Wrote::Nothing,
            Err(_) => {
                self.half.state = WriteState::Dead;
                Wrote::Closed
            }
        }
    }

    /// One attempt, without waiting, to write what is pending. `Ok(true)` when nothing is
    /// left.
    pub fn try_flush(&mut self) -> io::Result<bool> {
        if self.half.state == WriteState::Dead {
            return Err(io::ErrorKind::NotConnected.into());
        }
        if self.half.pending.is_empty() {
            return Ok(true);
        }
        match retry_interrupted(|| write_nonblocking(&self.half.stream, &self.half.pending)) {
            Ok(n) => {
                self.half.pending.drain(..n);
                self.half.sent += n as u64;
            }
            Err(e) if is_timeout(&e) => {}
            Err(e) => {
                self.half.state = WriteState::Dead;
                return Err(e);
            }
        }
        Ok(self.half.pending.is_empty())
    }

    /// Ends the connection for both directions (wakes its reader).
    pub fn kill(&mut self) {
        self.half.state = WriteState::Dead;
        let _ = self.half.stream.shutdown(Shutdown::Both);
    }
}

/// Writes `bytes` by `deadline`, adding what the socket takes to `sent`.
fn write_all(
    mut stream: &TcpStream,
    mut bytes: &[u8],
    deadline: Instant,
    sent: &mut u64,
) -> io::Result<()> {
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                bytes = &bytes[n..];
                *sent += n as u64;
            }
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        if !bytes.is_empty() && Instant::now() >= deadline {
            return Err(io::ErrorKind::TimedOut.into());
        }
    }
    Ok(())
}

fn retry_interrupted(mut f: impl FnMut() -> io::Result<usize>) -> io::Result<usize> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// One write that never waits: the socket is non-blocking for its duration. A blocking write
/// with a send timeout costs at least one kernel tick on a full socket (`SO_SNDTIMEO` is
/// rounded up to a tick), so a pass over thousands of full peers took seconds. Called under
/// the sender's lock, so no other write sees the flag; the reader thread shares the file
/// description and may see a `WouldBlock` meanwhile, which `net::Reader` retries.
fn write_nonblocking(mut stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    stream.set_nonblocking(true)?;
    let r = stream.write(bytes);
    // Blocking again for the connection's own writes; should this fail, the connection is
    // unusable anyway, and its next write says so.
    let _ = stream.set_nonblocking(false);
    r
}

/// How a connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The peer started the close handshake (with this code) and we answered.
    PeerClosed(Option<u16>),
    /// We closed with this code (protocol error, too big, policy, ping timeout, …).
    WeClosed(u16),
    /// The TCP connection ended without a close handshake.
    Vanished,
}

/// What a connection's application does with messages.
pub trait Endpoint<T = ()> {
    /// Handles one complete message. An `Err` closes the connection with that code and reason.
    fn on_message(&mut self, msg: Message, tx: &Sender<T>) -> Result<(), (u16, String)>;
}

/// Per-connection settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub max_message: usize,
    /// Silence (no byte from the peer) after which we ping. The open state has no total
    /// bound — a WebSocket lives as long as its peer does — but a silent peer is found out
    /// within `ping_interval + pong_timeout`, and what a peer that trickles a frame makes us
    /// hold is charged to the receive budget (see `ws::inbox`).
    pub ping_interval: Duration,
    /// After our ping, silence after which the peer is taken for gone.
    pub pong_timeout: Duration,
}

/// The read side's phase while the connection lasts (the ends are [`Ended`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Open, and we heard from the peer at this time.
    Open { last_heard: Instant },
    /// Open, silent: we pinged at this time and wait for any byte.
    Pinged { at: Instant },
    /// We sent a close frame with `code` at `since` and wait for the peer's (§7.1.1).
    ClosingByUs { since: Instant, code: u16 },
}

impl Phase {
    /// When this phase runs out. Each has a wall-clock bound the peer cannot stretch: open,
    /// the ping interval from the last byte heard; pinged, the pong timeout from the ping;
    /// closing, [`CLOSE_TIMEOUT`] from our close frame, whatever the peer sends meanwhile.
    fn deadline(&self, s: &Settings) -> Instant {
        match *self {
            Phase::Open { last_heard } => last_heard + s.ping_interval,
            Phase::Pinged { at } => at + s.pong_timeout,
            Phase::ClosingByUs { since, .. } => since + CLOSE_TIMEOUT,
        }
    }
}

/// Runs a connection until it ends. `leftover` holds bytes that arrived with the handshake.
/// Besides the phases' bounds (see `Phase::deadline`), failing drains for [`CLOSE_TIMEOUT`] at
/// most (see [`fail`]) and every write has the write timeout (see [`Sender::send`]).
pub fn run<T>(
    stream: &TcpStream,
    leftover: Vec<u8>,
    tx: &Sender<T>,
    s: &Settings,
    budget: &Budget,
    ep: &mut dyn Endpoint<T>,
) -> Ended {
    // The inbox (and its share of the budget) is gone before `fail` drains the socket.
    match receive(stream, leftover, tx, s, budget, ep) {
        Ok(ended) => ended,
        Err(e) => fail(stream, tx, &e),
    }
}

/// The phases of [`run`]; an error is to fail the connection with.
fn receive<T>(
    stream: &TcpStream,
    leftover: Vec<u8>,
    tx: &Sender<T>,
    s: &Settings,
    budget: &Budget,
    ep: &mut dyn Endpoint<T>,
) -> Result<Ended, Error> {
    let mut inbox = Inbox::new(budget, s.max_message, leftover)?;
    let mut reader = Reader::new();
    let mut phase = Phase::Open {
        last_heard: Instant::now(),
    };
    loop {
        // Take every event the bytes held make.
        let closing = matches!(phase, Phase::ClosingByUs { .. });
        while let Some(event) = inbox.next_event(!closing)? {
            match (event, phase) {
                // §5.5.1: after sending a close, incoming data is discarded, pings unanswered.
                (
                    Event::Message(_) | Event::Ping(_) | Event::Pong(_),
                    Phase::ClosingByUs { .. },
                ) => {}
                (Event::Message(msg), _) => {
                    if let Err((code, reason)) = ep.on_message(msg, tx) {
                        let _ = tx.send_close(code, &reason);
                        phase = Phase::ClosingByUs {
                            since: Instant::now(),
                            code,
                        };
                    }
                }
                (Event::Ping(payload), _) => {
                    // §5.5.2: a pong with the same payload.
                    if tx.send(OpCode::Pong, &payload).is_err() {
                        return Ok(Ended::Vanished);
                    }
                }
                (Event::Pong(_), _) => {}
                (Event::Close(_), Phase::ClosingByUs { code, .. }) => {
                    // Our close is answered: the handshake is complete, and the caller closes
                    // the TCP connection (§7.1.1).
                    return Ok(Ended::WeClosed(code));
                }
                (Event::Close(code), _) => {
                    // §5.5.1: echo the status code (or send an empty close for an empty one).
                    let _ = match code {
                        Some((c, _)) => tx.send_close(c, ""),
                        None => tx.send_close_empty(),
                    };
                    tx.shutdown_write();
                    return Ok(Ended::PeerClosed(code.map(|(c, _)| c)));
                }
            }
        }

        let deadline = phase.deadline(s);
        // A few bytes wanted and no room allocated: read through the stack, so an idle
        // connection's buffer stays small. Otherwise straight into the buffer, whose room is
        // charged to the budget before it is allocated.
        let read = if inbox.want() <= STACK_READ && inbox.free_tail() < inbox.want() {
            let mut tmp = [0u8; STACK_READ];
            let r = reader.read_into(stream, &mut tmp, deadline);
            if let Ok(n) = r {
                inbox.extend(&tmp[..n])?;
            }
            r
        } else {
            let room = inbox.room()?;
            let r = reader.read_into(stream, room, deadline);
            inbox.filled(*r.as_ref().unwrap_or(&0));
            r
        };
        match (read, phase) {
            (Ok(0), _) => return Ok(Ended::Vanished),
            (Ok(_), Phase::ClosingByUs { .. }) => {}
            (Ok(_), _) => {
                phase = Phase::Open {
                    last_heard: Instant::now(),
                }
            }
            (Err(e), _) if !is_timeout(&e) => return Ok(Ended::Vanished),
            // The peer never answered our close: give up on it (§7.1.1).
            (Err(_), Phase::ClosingByUs { code, .. }) => return Ok(Ended::WeClosed(code)),
            (Err(_), Phase::Pinged { .. }) => {
                // Silent through a whole ping interval and the pong timeout: gone.
                let code = frame::CloseCode::GoingAway.as_u16();
                let _ = tx.send_close(code, "ping timeout");
                return Ok(Ended::WeClosed(code));
            }
            (Err(_), Phase::Open { .. }) => {
                if tx.send(OpCode::Ping, b"").is_err() {
                    return Ok(Ended::Vanished);
                }
                phase = Phase::Pinged { at: Instant::now() };
            }
        }
    }
}

/// Fails the connection (§7.1.7): a close frame with the error's code, then TCP close.
fn fail<T>(stream: &TcpStream, tx: &Sender<T>, e: &Error) -> Ended {
    let code = e.close_code();
    let _ = tx.send_close(code, &e.to_string());
    tx.shutdown_write();
    // Read until the peer closes too, briefly, so unread input does not turn our close into
    // a reset that destroys the close frame before the peer reads it. Bounded by
    // CLOSE_TIMEOUT in all, however the peer trickles.
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    let mut sink = [0u8; STACK_READ];
    let mut reader = Reader::new();
    while let Ok(n) = reader.read_into(stream, &mut sink, deadline) {
        if n == 0 {
            break;
        }
    }
    Ended::WeClosed(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    fn pair() -> (TcpStream, Arc<TcpStream>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        (client, Arc::new(l.accept().unwrap().0))
    }

    #[test]
    fn try_write_keeps_the_rest_of_a_frame_begun_and_flush_finishes_it() {
        let (mut client, stream) = pair();
        let tx = Sender::new(Arc::clone(&stream), Duration::from_secs(5), true, ()).unwrap();
        let big = vec![7u8; 64 << 20];
        let mut l = tx.lock();
        // More than any socket buffer: part goes, the rest is pending; nothing else is
        // written until it is out.
        assert_eq!(l.try_write(&big), Wrote::Part);
        assert!(l.has_pending());
        assert_eq!(l.try_write(b"x"), Wrote::Nothing);
        drop(l);
        let reader = std::thread::spawn(move || {
            let mut got = 0;
            let mut buf = vec![0u8; 1 << 20];
            while got < 64 << 20 {
                got += client.read(&mut buf).unwrap();
            }
            got
        });
        let t0 = Instant::now();
        while !tx.lock().try_flush().unwrap() {
            assert!(t0.elapsed() < Duration::from_secs(30), "flush made no way");
            std::thread::yield_now();
        }
        assert_eq!(reader.join().unwrap(), 64 << 20);
        assert_eq!(tx.lock().try_write(b"x"), Wrote::All);
        tx.shutdown();
        assert_eq!(tx.lock().try_write(b"x"), Wrote::Closed);
        assert_eq!(tx.lock().state(), WriteState::Dead);
    }

    #[test]
    fn close_now_sends_the_close_frame_or_queues_it_behind_what_is_pending() {
        // Nothing pending: the frame goes at once, and no data frame after it.
        let (mut client, stream) = pair();
        let tx = Sender::new(Arc::clone(&stream), Duration::from_secs(5), true, ()).unwrap();
        assert!(tx.close_now(1001, "bye"));
        assert_eq!(tx.lock().state(), WriteState::CloseSent);
        assert_eq!(tx.lock().try_write(b"x"), Wrote::Closed);
        let mut got = [0u8; 7];
        client.read_exact(&mut got).unwrap();
        assert_eq!(got, [0x88, 5, 0x03, 0xe9, b'b', b'y', b'e']);

        // Bytes pending (a peer behind): the close frame follows them.
        let (mut client, stream) = pair();
        let tx = Sender::new(Arc::clone(&stream), Duration::from_secs(5), true, ()).unwrap();
        let big = vec![7u8; 16 << 20];
        assert_eq!(tx.lock().try_write(&big), Wrote::Part);
        assert!(tx.close_now(1001, ""));
        assert_eq!(tx.lock().state(), WriteState::CloseSent);
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut buf = vec![0u8; 1 << 20];
            while all.len() < big.len() + 4 {
                let n = client.read(&mut buf).unwrap();
                assert!(n > 0, "closed early");
                all.extend_from_slice(&buf[..n]);
            }
            all
        });
        let t0 = Instant::now();
        while !tx.lock().try_flush().unwrap() {
            assert!(t0.elapsed() < Duration::from_secs(30), "flush made no way");
            std::thread::yield_now();
        }
        let all = reader.join().unwrap();
        assert_eq!(&all[all.len() - 4..], &[0x88, 2, 0x03, 0xe9]);
    }

    #[test]
    fn writes_that_must_not_wait_do_not() {
        use std::sync::mpsc;
        let (client, stream) = pair();
        let tx =
            Arc::new(Sender::new(Arc::clone(&stream), Duration::from_secs(60), true, ()).unwrap());
        // Fill the peer (it never reads) until something is pending.
        let chunk = vec![0u8; 64 * 1024];
        while tx.lock().try_write(&chunk) == Wrote::All {}
        // Even with a send timeout far past this test's patience, the non-waiting writes
        // return at once.
        stream
            .set_write_timeout(Some(Duration::from_secs(600)))
            .unwrap();
        let (done, wait) = mpsc::channel();
        let t = std::thread::spawn({
            let tx = Arc::clone(&tx);
            move || {
                let mut l = tx.lock();
                let flushed = l.try_flush().ok();
                let _ = done.send(flushed);
            }
        });
        let got = wait.recv_timeout(Duration::from_secs(20));
        // Not `tx.shutdown()`: a write stuck under the lock would keep it from returning.
        let _ = stream.shutdown(Shutdown::Both);
        drop(client);
        let _ = t.join();
        let flushed = got.expect("a non-waiting write waited on a full peer");
        assert_eq!(
            flushed,
            Some(false),
            "nothing can be flushed to a full peer"
        );
    }
}
