//! A WebSocket connection over a `TcpStream` (RFC 6455 §5–§7): the read loop that drives the
//! pure codec (frames → messages, control frames, the close handshake, keepalive pings), and
//! [`Sender`], the write half that the connection's own thread and a broadcaster share.
//!
//! One thread per connection reads; nobody else does. Writes come from that thread (echoes,
//! pongs, replies) and, for subscribers, from a broadcaster that must never wait on a slow
//! peer: [`Sender::offer`] writes only what the socket takes at once and otherwise marks the
//! connection stale, so whoever catches it up later sends the latest state, not a backlog.

use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use super::error::Error;
use super::frame::{self, encode_close, OpCode, MAX_HEADER_LEN};
use super::inbox::Inbox;
use super::message::{Event, Message};
use crate::net::{Reader, STACK_READ};

/// Write timeout of a socket that a broadcaster writes to: short, so a full send buffer costs
/// the broadcaster at most this long once (the kernel rounds it up to one tick).
pub const SHORT_WRITE: Duration = Duration::from_millis(1);

/// Frames up to this payload size are copied behind their header and written at once; larger
/// ones are written in two calls, without the copy.
const COPY_BELOW: usize = 16 * 1024;

/// After we send a close frame, how long we wait for the peer's (RFC 6455 §7.1.1: the server
/// closes the TCP connection once both close frames have been exchanged).
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

pub use super::inbox::Budget;

/// Frames tagged with increasing sequence numbers (vote versions), concatenated, so that the
/// part a subscriber still needs is one contiguous suffix, written with one call.
#[derive(Default)]
pub struct Sequenced {
    pub bytes: Vec<u8>,
    /// (sequence number, offset of its frame in `bytes`), increasing.
    pub starts: Vec<(u64, usize)>,
}

impl Sequenced {
    pub fn push(&mut self, seq: u64, opcode: OpCode, payload: &[u8]) {
        self.starts.push((seq, self.bytes.len()));
        frame::encode(true, opcode, payload, &mut self.bytes);
    }

    pub fn last(&self) -> Option<u64> {
        self.starts.last().map(|&(s, _)| s)
    }

    /// The frames after `seen`, as bytes.
    fn after(&self, seen: u64) -> &[u8] {
        let i = self.starts.partition_point(|&(s, _)| s <= seen);
        match self.starts.get(i) {
            Some(&(_, off)) => &self.bytes[off..],
            None => &[],
        }
    }
}

/// What [`Sender::offer`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    /// Written (or nothing new for this peer).
    Sent,
    /// Begun: the socket took part of it, the rest is queued. The caller must hand the peer
    /// to the catch-up path, which finishes it.
    Queued,
    /// Not written now: the peer is behind or the sender busy. It is marked stale; whoever
    /// flushes it next must send the latest state.
    Stale,
    /// The connection is closing or gone.
    Closed,
}

struct SendState {
    /// Shared with the reader: one descriptor per connection (`Read`/`Write` are implemented
    /// for `&TcpStream`), where `try_clone` would spend a second one.
    stream: Arc<TcpStream>,
    /// Bytes accepted for sending that the socket has not taken yet.
    pending: Vec<u8>,
    /// Reused to encode small frames, so sending one allocates nothing.
    scratch: Vec<u8>,
    /// Highest sequence number written (see [`Sequenced`]).
    seen: u64,
    /// A close frame has been sent: RFC 6455 §5.5.1, no data frames after it.
    closing: bool,
    /// The first sequenced frame (the snapshot on connect) has been written; broadcasts wait
    /// for it, so a subscriber never sees a vote before the tally it applies to.
    ready: bool,
    dead: bool,
}

/// The write half of a connection, shared by its reader thread and broadcasters.
pub struct Sender {
    state: Mutex<SendState>,
    /// How many times frames were withheld since the last catch-up (0: current). A count,
    /// not a flag: a catch-up clears only the marks it saw, so a mark made by a broadcaster
    /// while the catch-up held the lock is not lost.
    stale: AtomicU64,
    /// On the catch-up list: whoever lists it sets this, so a peer is listed once without
    /// searching the list (a search per stalled peer made each pass quadratic).
    listed: AtomicBool,
    write_timeout: Duration,
}

impl Sender {
    /// `broadcast`: this socket is written to by a broadcaster too, so its writes must not
    /// block (see [`SHORT_WRITE`]); otherwise writes block up to `write_timeout`.
    pub fn new(
        stream: Arc<TcpStream>,
        write_timeout: Duration,
        broadcast: bool,
    ) -> io::Result<Self> {
        stream.set_write_timeout(Some(if broadcast {
            SHORT_WRITE
        } else {
            write_timeout
        }))?;
        Ok(Sender {
            state: Mutex::new(SendState {
                stream,
                pending: Vec::new(),
                scratch: Vec::new(),
                seen: 0,
                closing: false,
                ready: false,
                dead: false,
            }),
            stale: AtomicU64::new(0),
            listed: AtomicBool::new(false),
            write_timeout,
        })
    }

    fn lock(&self) -> MutexGuard<'_, SendState> {
        // A panic while writing leaves at worst a partial frame queued; the connection is then
        // broken for the peer anyway, and the lock must not take others down with it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends one frame from the connection's own thread, waiting (up to the write timeout
    /// without progress) until the socket has taken it.
    pub fn send(&self, opcode: OpCode, payload: &[u8]) -> io::Result<()> {
        let mut st = self.lock();
        if st.closing || st.dead {
            return Err(io::ErrorKind::NotConnected.into());
        }
        if payload.len() <= COPY_BELOW {
            // One write, one system call (and one TCP segment) for a small frame.
            let mut out = std::mem::take(&mut st.scratch);
            out.clear();
            frame::encode(true, opcode, payload, &mut out);
            let r = self.write_now(&mut st, &out);
            st.scratch = out;
            return r;
        }
        // A large payload is written from where it lies rather than copied behind the header.
        let mut head = Vec::with_capacity(MAX_HEADER_LEN);
        frame::encode_header(true, opcode, payload.len(), &mut head);
        // One deadline for the whole frame.
        let deadline = Instant::now() + self.write_timeout;
        self.write_until(&mut st, &head, deadline)?;
        self.write_until(&mut st, payload, deadline)
    }

    /// Sends the first frames of a subscriber — the first carrying sequence number `seq` —
    /// in one write, records `seq` as seen, and opens the connection to broadcasts. One write
    /// under one lock, so a broadcast never finds the lock taken by them (which would cost the
    /// subscriber a catch-up snapshot).
    pub fn send_sequenced(&self, seq: u64, opcode: OpCode, payloads: &[&[u8]]) -> io::Result<()> {
        let mut st = self.lock();
        if st.closing || st.dead {
            return Err(io::ErrorKind::NotConnected.into());
        }
        let size = payloads.iter().map(|p| p.len() + MAX_HEADER_LEN).sum();
        let mut out = Vec::with_capacity(size);
        for p in payloads {
            frame::encode(true, opcode, p, &mut out);
        }
        self.write_now(&mut st, &out)?;
        st.seen = st.seen.max(seq);
        st.ready = true;
        Ok(())
    }

    /// Sends a close frame; no data frame follows it.
    pub fn send_close(&self, code: u16, reason: &str) -> io::Result<()> {
        let mut st = self.lock();
        if st.closing || st.dead {
            return Ok(());
        }
        st.closing = true;
        // `encode_close` writes the whole frame (header, code, reason cut to fit §5.5).
        let mut out = Vec::with_capacity(MAX_HEADER_LEN + 2 + reason.len());
        encode_close(code, reason, &mut out);
        self.write_now(&mut st, &out)
    }

    /// Writes `bytes` after anything pending, waiting while the peer makes progress.
    fn write_now(&self, st: &mut SendState, bytes: &[u8]) -> io::Result<()> {
        self.write_until(st, bytes, Instant::now() + self.write_timeout)
    }

    /// [`write_now`](Sender::write_now) within `deadline`.
    fn write_until(&self, st: &mut SendState, bytes: &[u8], deadline: Instant) -> io::Result<()> {
        if !st.pending.is_empty() {
            let pending = std::mem::take(&mut st.pending);
            let r = self.write_all(st, &pending, deadline);
            if r.is_err() {
                st.dead = true;
                return r;
            }
        }
        let r = self.write_all(st, bytes, deadline);
        if r.is_err() {
            st.dead = true;
        }
        r
    }

    /// Writes all of `bytes` by `deadline` (the write timeout from when the write started): a
    /// peer that reads a little now and then (each bit of progress used to restart the clock)
    /// cannot stretch a write for ever. One `write` call blocks at most `SO_SNDTIMEO` (the
    /// write timeout, or [`SHORT_WRITE`] on a broadcast socket), so a write ends within twice
    /// the write timeout.
    fn write_all(&self, st: &mut SendState, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
        while !bytes.is_empty() {
            match (&*st.stream).write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if !bytes.is_empty() && Instant::now() >= deadline {
                return Err(io::ErrorKind::TimedOut.into());
            }
        }
        Ok(())
    }

    /// Broadcaster path: writes the frames of `batch` this peer has not seen, if the socket
    /// takes them now. Never waits for the lock, nor (beyond [`SHORT_WRITE`]) for the peer.
    pub fn offer(&self, batch: &Sequenced) -> Offer {
        // Once behind, only the catch-up path (which clears the mark) writes here: trying again
        // on every batch would cost the broadcaster a blocked write each time.
        if self.stale.load(Ordering::Acquire) > 0 {
            // Withheld: count it, so a catch-up under way does not clear it unseen.
            self.stale.fetch_add(1, Ordering::AcqRel);
            return Offer::Stale;
        }
        let mut st = match self.state.try_lock() {
            Ok(st) => st,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                self.stale.fetch_add(1, Ordering::AcqRel);
                return Offer::Stale;
            }
        };
        if st.closing || st.dead {
            return Offer::Closed;
        }
        // Again under the lock: the mark is cleared only under it, after the catch-up state
        // went out, so a batch can never slip in between a skipped one and the catch-up.
        if self.stale.load(Ordering::Acquire) > 0 {
            // Withheld: count it, so a catch-up under way does not clear it unseen.
            self.stale.fetch_add(1, Ordering::AcqRel);
            return Offer::Stale;
        }
        if !st.pending.is_empty() || !st.ready {
            // Behind already (or not yet started): don't queue more, remember to send the
            // latest state instead.
            self.stale.fetch_add(1, Ordering::AcqRel);
            return Offer::Stale;
        }
        let bytes = batch.after(st.seen);
        if bytes.is_empty() {
            return Offer::Sent;
        }
        let last = batch.last().unwrap_or(st.seen);
        match (&*st.stream).write(bytes) {
            Ok(n) => {
                // Whatever the socket did not take is queued: it finishes frames already
                // begun, so it must go out before anything else.
                st.pending.extend_from_slice(&bytes[n..]);
                st.seen = last;
                if st.pending.is_empty() {
                    Offer::Sent
                } else {
                    Offer::Queued
                }
            }
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {
                // Nothing taken: the peer is not reading. Forget these frames; it gets the
                // latest state when it catches up.
                self.stale.fetch_add(1, Ordering::AcqRel);
                Offer::Stale
            }
            Err(_) => {
                st.dead = true;
                Offer::Closed
            }
        }
    }

    /// Broadcaster path for a frame outside the sequence (presence): written only if the peer
    /// is current and the socket takes it at once; otherwise dropped (the peer is stale or
    /// busy, and the next such frame supersedes this one). `Queued` when part of the frame is
    /// left pending: the caller must hand the peer to the catch-up path.
    pub fn offer_unsequenced(&self, opcode: OpCode, payload: &[u8]) -> Offer {
        if self.stale.load(Ordering::Acquire) > 0 {
            return Offer::Stale;
        }
        let Ok(mut st) = self.state.try_lock() else {
            return Offer::Sent;
        };
        if st.closing || st.dead {
            return Offer::Closed;
        }
        if !st.ready || !st.pending.is_empty() {
            return Offer::Sent;
        }
        let mut out = Vec::with_capacity(payload.len() + MAX_HEADER_LEN);
        frame::encode(true, opcode, payload, &mut out);
        match (&*st.stream).write(&out) {
            Ok(n) if n == out.len() => Offer::Sent,
            Ok(n) => {
                // The start of a frame went out: the rest must follow.
                st.pending.extend_from_slice(&out[n..]);
                Offer::Queued
            }
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => Offer::Sent,
            Err(_) => {
                st.dead = true;
                Offer::Closed
            }
        }
    }

    /// Catch-up path: one attempt to write what is pending. `Ok(true)` when nothing is left.
    /// Gives up on (and shuts down) a peer still behind a write timeout after `behind_since`.
    pub fn try_flush(&self, behind_since: &Instant) -> io::Result<bool> {
        let mut st = match self.state.try_lock() {
            Ok(st) => st,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return Ok(false),
        };
        if st.dead {
            return Err(io::ErrorKind::NotConnected.into());
        }
        if st.pending.is_empty() {
            return Ok(true);
        }
        let pending = std::mem::take(&mut st.pending);
        match write_nonblocking(&st.stream, &pending) {
            // A trickle is not progress: a peer that has not drained its queue (and caught up)
            // within the write timeout of falling behind is dropped, however many bytes its
            // kernel still takes now and then.
            Ok(n) => {
                st.pending = pending;
                st.pending.drain(..n);
            }
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {
                st.pending = pending
            }
            Err(e) => {
                st.dead = true;
                return Err(e);
            }
        }
        if st.pending.is_empty() {
            return Ok(true);
        }
        if behind_since.elapsed() >= self.write_timeout {
            st.dead = true;
            let _ = st.stream.shutdown(Shutdown::Both);
            return Err(io::ErrorKind::TimedOut.into());
        }
        Ok(false)
    }

    /// Catch-up path, after [`try_flush`](Sender::try_flush) emptied the queue: if this peer
    /// missed frames, sends it `latest()` — built here, under the lock, so that it is at least
    /// as new as every frame the peer missed — and clears the mark. `Sent` when the peer is
    /// current (or nothing was missed), `Stale` to try again later.
    pub fn catch_up(&self, latest: &dyn Fn() -> Sequenced) -> Offer {
        let mut st = match self.state.try_lock() {
            Ok(st) => st,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return Offer::Stale,
        };
        if st.closing || st.dead {
            return Offer::Closed;
        }
        let marks = self.stale.load(Ordering::Acquire);
        if marks == 0 {
            return Offer::Sent;
        }
        if !st.pending.is_empty() || !st.ready {
            return Offer::Stale;
        }
        let batch = latest();
        let bytes = batch.after(st.seen);
        if !bytes.is_empty() {
            match write_nonblocking(&st.stream, bytes) {
                Ok(n) => {
                    st.pending.extend_from_slice(&bytes[n..]);
                    st.seen = batch.last().unwrap_or(st.seen);
                }
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {
                    return Offer::Stale
                }
                Err(_) => {
                    st.dead = true;
                    return Offer::Closed;
                }
            }
        }
        // Clear the marks this catch-up answered; a newer one keeps the peer stale.
        match self
            .stale
            .compare_exchange(marks, 0, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Offer::Sent,
            Err(_) => Offer::Stale,
        }
    }

    pub fn write_timeout(&self) -> Duration {
        self.write_timeout
    }

    /// Marks this peer as on the catch-up list: `true` if it was not (the caller lists it).
    pub fn list(&self) -> bool {
        !self.listed.swap(true, Ordering::AcqRel)
    }

    /// Takes this peer off the catch-up list (the caller has dropped it from the list).
    pub fn unlist(&self) {
        self.listed.store(false, Ordering::Release);
    }

    pub fn has_pending(&self) -> bool {
        !self.lock().pending.is_empty()
    }

    /// Ends the connection for both directions (wakes its reader).
    pub fn shutdown(&self) {
        let mut st = self.lock();
        st.dead = true;
        let _ = st.stream.shutdown(Shutdown::Both);
    }
}

pub use crate::net::is_timeout;

/// One write that never waits: the socket is non-blocking for its duration. The catch-up path
/// writes to many peers in turn, and a blocking write with a send timeout costs at least one
/// kernel tick on each full one (`SO_SNDTIMEO` is rounded up to a tick), so a pass over
/// thousands of stale peers took seconds. Called under the sender's lock, so no other write
/// sees the flag; the reader thread shares the file description and may see a `WouldBlock`
/// meanwhile, which `net::Reader` retries. Two `fcntl`s per catch-up write, never on the
/// broadcaster's path.
fn write_nonblocking(stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    stream.set_nonblocking(true)?;
    let r = loop {
        match (&*stream).write(bytes) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => break r,
        }
    };
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
pub trait Endpoint {
    /// Handles one complete message. An `Err` closes the connection with that code and reason.
    fn on_message(&mut self, msg: Message, tx: &Sender) -> Result<(), (u16, String)>;

    /// Called after each read: a place to catch up a stale subscriber.
    fn after_read(&mut self, _tx: &Sender) {}
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

/// Runs a connection until it ends. `leftover` holds bytes that arrived with the handshake.
///
/// Each state has a wall-clock bound the peer cannot stretch: open and silent, a ping after
/// `ping_interval` and the end after `pong_timeout` more; closing by us, [`CLOSE_TIMEOUT`] from
/// our close frame; failing, [`CLOSE_TIMEOUT`] of draining (see [`fail`]); every write, the
/// write timeout from its start (see [`Sender::send`]).
pub fn run(
    stream: &TcpStream,
    leftover: Vec<u8>,
    tx: &Sender,
    s: &Settings,
    budget: &Budget,
    ep: &mut dyn Endpoint,
) -> Ended {
    // The inbox (and its share of the budget) is gone before `fail` drains the socket.
    match receive(stream, leftover, tx, s, budget, ep) {
        Ok(ended) => ended,
        Err(e) => fail(stream, tx, &e),
    }
}

/// The open and closing-by-us states of [`run`]; an error is to fail the connection with.
fn receive(
    stream: &TcpStream,
    leftover: Vec<u8>,
    tx: &Sender,
    s: &Settings,
    budget: &Budget,
    ep: &mut dyn Endpoint,
) -> Result<Ended, Error> {
    let mut inbox = Inbox::new(budget, s.max_message, leftover)?;
    let mut reader = Reader::new();
    // When we sent our close frame, and its code (we wait for the peer's, §7.1.1).
    let mut closing: Option<(Instant, u16)> = None;
    let mut last_heard = Instant::now();
    let mut ping_sent: Option<Instant> = None;
    loop {
        // Take every event the bytes held make.
        while let Some(event) = inbox.next_event(closing.is_none())? {
            match event {
                Event::Message(msg) => {
                    // §5.5.1: after sending a close, incoming data is discarded.
                    if closing.is_none() {
                        if let Err((code, reason)) = ep.on_message(msg, tx) {
                            let _ = tx.send_close(code, &reason);
                            closing = Some((Instant::now(), code));
                        }
                    }
                }
                Event::Ping(payload) => {
                    // §5.5.2: a pong with the same payload (not after our close).
                    if closing.is_none() && tx.send(OpCode::Pong, &payload).is_err() {
                        return Ok(Ended::Vanished);
                    }
                }
                Event::Pong(_) => {}
                Event::Close(code) => {
                    if let Some((_, ours)) = closing {
                        // Our close is answered: the handshake is complete, and the caller
                        // closes the TCP connection (§7.1.1).
                        return Ok(Ended::WeClosed(ours));
                    }
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

        let deadline = match (closing, ping_sent) {
            (Some((t, _)), _) => t + CLOSE_TIMEOUT,
            (None, Some(t)) => t + s.pong_timeout,
            (None, None) => last_heard + s.ping_interval,
        };
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
        match read {
            Ok(0) => return Ok(Ended::Vanished),
            Ok(_) => {
                last_heard = Instant::now();
                ping_sent = None;
                ep.after_read(tx);
            }
            Err(e) if is_timeout(&e) => {
                if let Some((_, ours)) = closing {
                    // The peer never answered our close: give up on it (§7.1.1).
                    return Ok(Ended::WeClosed(ours));
                }
                if ping_sent.is_some() {
                    // Silent through a whole ping interval and the pong timeout: gone.
                    let _ = tx.send_close(frame::CloseCode::GoingAway.as_u16(), "ping timeout");
                    return Ok(Ended::WeClosed(frame::CloseCode::GoingAway.as_u16()));
                }
                if tx.send(OpCode::Ping, b"").is_err() {
                    return Ok(Ended::Vanished);
                }
                ping_sent = Some(Instant::now());
            }
            Err(_) => return Ok(Ended::Vanished),
        }
    }
}

/// Fails the connection (§7.1.7): a close frame with the error's code, then TCP close.
fn fail(stream: &TcpStream, tx: &Sender, e: &Error) -> Ended {
    let code = e.close_code();
    let _ = tx.send_close(code, &e.to_string());
    tx.shutdown_write();
    // Read until the peer closes too, briefly, so unread input does not turn our close into
    // a reset that destroys the close frame before the peer reads it.
    // Bounded by CLOSE_TIMEOUT in all, however the peer trickles.
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

impl Sender {
    fn send_close_empty(&self) -> io::Result<()> {
        let mut st = self.lock();
        if st.closing || st.dead {
            return Ok(());
        }
        st.closing = true;
        let mut out = Vec::with_capacity(2);
        frame::encode(true, OpCode::Close, &[], &mut out);
        self.write_now(&mut st, &out)
    }

    /// Our side is done sending (after a close frame): FIN, after anything still pending.
    fn shutdown_write(&self) {
        let mut st = self.lock();
        if !st.pending.is_empty() && !st.dead {
            let pending = std::mem::take(&mut st.pending);
            let deadline = Instant::now() + self.write_timeout;
            let _ = self.write_all(&mut st, &pending, deadline);
        }
        let _ = st.stream.shutdown(Shutdown::Write);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catch_up_writes_never_wait_on_the_peer() {
        use std::net::TcpListener;
        use std::sync::mpsc;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let stream = Arc::new(l.accept().unwrap().0);
        let tx = Arc::new(Sender::new(Arc::clone(&stream), Duration::from_secs(60), true).unwrap());
        tx.send_sequenced(0, OpCode::Text, &[b"hello"]).unwrap();
        // Broadcast until the peer (which never reads) is full and something is pending.
        let mut seq = 0;
        loop {
            seq += 1;
            let mut batch = Sequenced::default();
            batch.push(seq, OpCode::Binary, &[0; 64 * 1024]);
            match tx.offer(&batch) {
                Offer::Queued => break,
                Offer::Sent => continue,
                other => panic!("{other:?}"),
            }
        }
        // Even with a send timeout far past this test's patience, the catch-up path returns:
        // it does not wait on the peer.
        stream
            .set_write_timeout(Some(Duration::from_secs(600)))
            .unwrap();
        let (done, wait) = mpsc::channel();
        let t = std::thread::spawn({
            let tx = Arc::clone(&tx);
            move || {
                let since = Instant::now();
                let flushed = tx.try_flush(&since);
                let caught = tx.catch_up(&Sequenced::default);
                let _ = done.send((flushed.ok(), caught));
            }
        });
        let got = wait.recv_timeout(Duration::from_secs(20));
        // Not `tx.shutdown()`: a write stuck under the lock would keep it from returning.
        let _ = stream.shutdown(Shutdown::Both);
        drop(client);
        let _ = t.join();
        let (flushed, _) = got.expect("the catch-up path waited on a full peer");
        assert_eq!(
            flushed,
            Some(false),
            "nothing can be flushed to a full peer"
        );
    }

    #[test]
    fn sequenced_suffixes() {
        let mut s = Sequenced::default();
        s.push(3, OpCode::Text, b"a");
        s.push(4, OpCode::Text, b"bb");
        assert_eq!(s.after(0).len(), 3 + 4);
        assert_eq!(s.after(3), &[0x81, 2, b'b', b'b']);
        assert!(s.after(4).is_empty());
        assert_eq!(s.last(), Some(4));
    }
}
