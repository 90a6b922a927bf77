//! The receive side of a WebSocket connection, without the socket: bytes in, events out, and
//! every byte held for them charged to a shared [`Budget`] first.
//!
//! The I/O loop asks for room to read into ([`Inbox::room`] or [`Inbox::extend`]), says how
//! many bytes arrived ([`Inbox::filled`]), and takes events ([`Inbox::next_event`]). What is
//! charged is what is really held — the receive buffer's allocation, the decoded copy of a
//! frame, the capacity of a fragmented message being assembled, and the last event handed out
//! until the caller asks for the next — and it is charged *before* it is allocated, so no
//! sequence of frames can hold more than the budget allows (beyond [`FREE_BUFFER`] per
//! connection, which is bounded by the connection cap). Large buffers are given back as soon as
//! what they held is handled. No I/O here: unit tests drive it with any sequence of bytes.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::error::Error;
use super::frame::{self, MAX_CONTROL_PAYLOAD};
use super::message::{Assembler, Event, Message};
use crate::net::InBuf;

/// Bytes each connection holds without charging the shared [`Budget`], so that small messages
/// never touch the shared counter. Small, because it is not capped by the budget: at most
/// this times `--max-connections` (4 KiB × 16 Ki = 64 MiB by default) escapes it.
pub const FREE_BUFFER: usize = 4 * 1024;

/// The receive buffer grows to at most double (and at least this) per step while a large frame
/// arrives, so a peer announcing a large frame gets memory as it sends, not on its word.
const GROW_STEP: usize = 64 * 1024;

/// A shared cap on bytes held for messages being received, across all connections.
pub struct Budget {
    used: AtomicUsize,
    max: usize,
}

impl Budget {
    pub fn new(max: usize) -> Self {
        Budget {
            used: AtomicUsize::new(0),
            max,
        }
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Moves one holder's share from `*held` to `want` bytes. Shrinking always succeeds;
    /// growing fails, changing nothing, if the total would pass the cap.
    fn set(&self, held: &mut usize, want: usize) -> bool {
        if want <= *held {
            if want < *held {
                self.used.fetch_sub(*held - want, Ordering::Relaxed);
            }
            *held = want;
            return true;
        }
        let add = want - *held;
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            // `add > max - cur`, not `cur + add > max`: cannot overflow.
            if add > self.max.saturating_sub(cur) {
                return false;
            }
            match self.used.compare_exchange_weak(
                cur,
                cur + add,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        *held = want;
        true
    }
}

/// One connection's share of a [`Budget`], returned when dropped.
struct Share<'a> {
    budget: &'a Budget,
    held: usize,
}

impl Share<'_> {
    /// Charges for holding `bytes` in all (the first [`FREE_BUFFER`] are free).
    fn want(&mut self, bytes: usize) -> bool {
        self.budget
            .set(&mut self.held, bytes.saturating_sub(FREE_BUFFER))
    }
}

impl Drop for Share<'_> {
    fn drop(&mut self) {
        self.budget.set(&mut self.held, 0);
    }
}

/// A connection's receive state: buffer, message assembly, and its share of the budget.
pub struct Inbox<'a> {
    buf: InBuf,
    asm: Assembler,
    share: Share<'a>,
    /// Bytes of the last event handed out: the caller holds them until it asks for the next.
    lent: usize,
    /// Bytes still to arrive for the frame at the front of `buf` (1 when its header is not
    /// complete yet).
    want: usize,
    /// The error that failed the connection: every later call answers it again (the codec's
    /// state after an error is not to be fed on).
    failed: Option<Error>,
}

impl<'a> Inbox<'a> {
    /// An inbox for messages of at most `max_message` bytes; `leftover` (bytes that came with
    /// the handshake) is its first input, charged like any other.
    pub fn new(budget: &'a Budget, max_message: usize, leftover: Vec<u8>) -> Result<Self, Error> {
        let mut inbox = Inbox {
            buf: InBuf::from_vec(leftover),
            asm: Assembler::new(max_message),
            share: Share { budget, held: 0 },
            lent: 0,
            want: 1,
            failed: None,
        };
        let held = inbox.held();
        inbox.charge(held)?;
        Ok(inbox)
    }

    /// Memory really held for received data: allocations' capacities.
    pub fn held(&self) -> usize {
        self.buf
            .held()
            .saturating_add(self.asm.held())
            .saturating_add(self.lent)
    }

    /// Bytes charged to the budget for this connection (what is held beyond [`FREE_BUFFER`]).
    pub fn charged(&self) -> usize {
        self.share.held
    }

    /// Bytes still needed to complete the frame in progress (at least 1).
    pub fn want(&self) -> usize {
        self.want
    }

    fn charge(&mut self, held: usize) -> Result<(), Error> {
        if self.share.want(held) {
            return Ok(());
        }
        let others = self.share.budget.used().saturating_sub(self.share.held);
        Err(Error::TooBig {
            size: held as u64,
            max: self.share.budget.max().saturating_sub(others) as u64,
        })
    }

    /// Charges what is held now (after something was freed, this gives bytes back).
    fn settle(&mut self) {
        let held = self.held();
        // Never more than was charged before the allocations it counts, so it cannot fail.
        let ok = self.share.want(held);
        debug_assert!(ok, "held more than was charged");
    }

    /// Appends bytes read elsewhere (through a small buffer on the stack).
    pub fn extend(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.lent = 0;
        let after = self.buf.held_after_room(bytes.len());
        self.charge(after + self.asm.held())?;
        self.buf.extend(bytes);
        Ok(())
    }

    /// Free bytes already allocated behind the filled ones.
    pub fn free_tail(&self) -> usize {
        self.buf.held().saturating_sub(self.buf.len())
    }

    /// Room to read into: the rest of the frame in progress, growing the buffer at most
    /// [`GROW_STEP`] or double at a time, and all the room already allocated. Charged first.
    /// Mark what the read filled with [`filled`](Inbox::filled).
    pub fn room(&mut self) -> Result<&mut [u8], Error> {
        self.lent = 0;
        let step = self.want.min(self.buf.len().max(GROW_STEP)).max(1);
        let size = step.max(self.free_tail());
        let after = self.buf.held_after_room(size);
        self.charge(after + self.asm.held())?;
        Ok(self.buf.room(size))
    }

    /// `n` bytes were read into the last [`room`](Inbox::room).
    pub fn filled(&mut self, n: usize) {
        self.buf.filled_by(n);
    }

    /// The next event from the bytes held, or `None` when more must arrive. `fail_fast`:
    /// also validate a text frame still arriving (§8.1; off once we are closing, when data
    /// is discarded anyway). An error fails the connection; do not feed the inbox after it.
    pub fn next_event(&mut self, fail_fast: bool) -> Result<Option<Event>, Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        // The caller is done with the last event.
        self.lent = 0;
        let r = self.decode_next(fail_fast);
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn decode_next(&mut self, fail_fast: bool) -> Result<Option<Event>, Error> {
        loop {
            let limit = self.asm.max_next_payload().max(MAX_CONTROL_PAYLOAD);
            let filled = self.buf.filled();
            let Some((header, header_len)) = frame::decode_header(filled)? else {
                self.want = 1;
                self.idle();
                return Ok(None);
            };
            let payload = usize::try_from(header.payload_len).unwrap_or(usize::MAX);
            let total = header_len.saturating_add(payload);
            if filled.len() < total {
                // Incomplete: `decode` still refuses an unmasked or too-big frame now, without
                // copying anything, so such a frame is never buffered.
                frame::decode(filled, limit)?;
                if fail_fast {
                    self.asm.check_arriving(&header, &filled[header_len..])?;
                }
                self.want = total - filled.len();
                self.idle();
                return Ok(None);
            }
            // Complete: charge the decoded copy and the message buffer's growth before either
            // is allocated; the masked bytes stay in `buf` until the copy is made.
            let after = self
                .buf
                .held()
                .saturating_add(payload)
                .saturating_add(self.asm.held_after(&header));
            self.charge(after)?;
            let (frame, used) = match frame::decode(self.buf.filled(), limit)? {
                Some(done) => done,
                None => unreachable!("a complete frame decodes"),
            };
            self.buf.consume(used);
            match self.asm.push(frame)? {
                None => self.settle(),
                Some(event) => {
                    self.lent = event_held(&event);
                    self.idle();
                    return Ok(Some(event));
                }
            }
        }
    }

    /// Between frames: give a large buffer back, and the budget with it.
    fn idle(&mut self) {
        self.buf.shrink(FREE_BUFFER);
        self.settle();
    }
}

/// Memory an event holds.
fn event_held(e: &Event) -> usize {
    match e {
        Event::Message(Message::Text(t)) => t.capacity(),
        Event::Message(Message::Binary(b)) => b.capacity(),
        Event::Ping(p) | Event::Pong(p) => p.capacity(),
        Event::Close(c) => c.as_ref().map_or(0, |(_, r)| r.capacity()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::frame::{encode_masked, OpCode};

    const MASK: [u8; 4] = [1, 2, 3, 4];

    fn masked(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_masked(fin, op, payload, MASK, &mut out);
        out
    }

    /// Feeds `wire` in pieces of `piece` bytes through `room`/`filled` (or `extend` for small
    /// wants, as the I/O loop does), checking the accounting after every step. Returns the
    /// events, or the error that failed the connection.
    fn feed(
        inbox: &mut Inbox,
        budget: &Budget,
        wire: &[u8],
        piece: usize,
    ) -> Result<Vec<Event>, Error> {
        let mut events = Vec::new();
        let mut at = 0;
        let check = |inbox: &Inbox| {
            assert!(
                inbox.held() <= inbox.charged() + FREE_BUFFER,
                "held {} but charged {}",
                inbox.held(),
                inbox.charged()
            );
            assert!(budget.used() <= budget.max());
        };
        loop {
            while let Some(ev) = inbox.next_event(true)? {
                check(inbox);
                events.push(ev);
            }
            check(inbox);
            if at == wire.len() {
                return Ok(events);
            }
            let n = piece.min(wire.len() - at);
            if inbox.want() <= crate::net::STACK_READ && inbox.free_tail() < inbox.want() {
                inbox.extend(&wire[at..at + n])?;
                at += n;
            } else {
                let room = inbox.room()?;
                let n = n.min(room.len());
                room[..n].copy_from_slice(&wire[at..at + n]);
                inbox.filled(n);
                at += n;
            }
            check(inbox);
        }
    }

    #[test]
    fn budget_caps_the_total_and_returns_shares() {
        let b = Budget::new(100);
        let mut a = 0;
        let mut c = 0;
        assert!(b.set(&mut a, 60));
        assert!(!b.set(&mut c, 41));
        assert_eq!(c, 0);
        assert!(b.set(&mut c, 40));
        assert_eq!(b.used(), 100);
        assert!(b.set(&mut a, 10));
        assert_eq!(b.used(), 50);
        {
            let mut s = Share {
                budget: &b,
                held: 0,
            };
            assert!(s.want(FREE_BUFFER + 50));
            assert_eq!(b.used(), 100);
            assert!(!s.want(FREE_BUFFER + 51));
        }
        assert_eq!(b.used(), 50);
    }

    #[test]
    fn a_big_message_then_a_trickled_header_holds_nothing_uncharged() {
        // The attack of issue 9: one 16 MiB message, then the first byte of a small frame.
        let budget = Budget::new(64 << 20);
        let mut inbox = Inbox::new(&budget, 32 << 20, Vec::new()).unwrap();
        let big = vec![b'a'; 16 << 20];
        let mut wire = masked(true, OpCode::Binary, &big);
        wire.push(0x82);
        let events = feed(&mut inbox, &budget, &wire, 1 << 20).unwrap();
        assert_eq!(events.len(), 1);
        drop(events);
        // The big buffer is gone; what is left (one byte of a header) is small.
        assert!(inbox.held() <= FREE_BUFFER, "held {}", inbox.held());
        assert_eq!(inbox.charged(), 0);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn while_a_big_message_is_held_it_is_charged() {
        let budget = Budget::new(64 << 20);
        let mut inbox = Inbox::new(&budget, 32 << 20, Vec::new()).unwrap();
        let wire = masked(true, OpCode::Binary, &vec![7; 8 << 20]);
        // All but the last byte: the buffer holds ~8 MiB, and the budget says so.
        feed(&mut inbox, &budget, &wire[..wire.len() - 1], 1 << 20).unwrap();
        assert!(inbox.held() >= 8 << 20);
        assert!(budget.used() + FREE_BUFFER >= inbox.held());
        inbox.room().unwrap()[0] = wire[wire.len() - 1];
        inbox.filled(1);
        let event = inbox.next_event(true).unwrap();
        assert!(matches!(event, Some(Event::Message(_))));
        // The message handed out is still charged until the next call.
        assert!(budget.used() >= (8 << 20) - FREE_BUFFER);
        drop(event);
        assert_eq!(inbox.next_event(true).unwrap(), None);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn many_fragments_are_charged_as_they_grow() {
        let budget = Budget::new(8 << 20);
        let mut inbox = Inbox::new(&budget, 4 << 20, Vec::new()).unwrap();
        let mut wire = masked(false, OpCode::Binary, &[1; 1000]);
        for _ in 0..2000 {
            wire.extend(masked(false, OpCode::Continuation, &[2; 1000]));
            wire.extend(masked(true, OpCode::Ping, b"p"));
        }
        wire.extend(masked(true, OpCode::Continuation, &[3; 1000]));
        let events = feed(&mut inbox, &budget, &wire, 777).unwrap();
        let Some(Event::Message(Message::Binary(b))) = events.last() else {
            panic!("no message")
        };
        assert_eq!(b.len(), 2002 * 1000);
        assert_eq!(events.len(), 2001);
        drop(events);
        assert_eq!(inbox.next_event(true).unwrap(), None);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn the_budget_refuses_what_it_cannot_hold() {
        let budget = Budget::new(1 << 20);
        let mut inbox = Inbox::new(&budget, 8 << 20, Vec::new()).unwrap();
        let wire = masked(true, OpCode::Binary, &vec![0; 2 << 20]);
        let err = feed(&mut inbox, &budget, &wire, 1 << 20).unwrap_err();
        assert_eq!(err.close_code(), 1009);
        assert!(budget.used() <= budget.max());
        drop(inbox);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn random_frame_sequences_never_hold_more_than_charged() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..200 {
            let budget = Budget::new(2 << 20);
            let max_message = 1 + rand(1 << 20) as usize;
            let mut inbox = Inbox::new(&budget, max_message, Vec::new()).unwrap();
            let mut wire = Vec::new();
            let mut open = false;
            for _ in 0..rand(20) {
                let len = match rand(4) {
                    0 => rand(126),
                    1 => rand(70_000),
                    _ => rand(600_000),
                } as usize;
                let (fin, op) = match (rand(5), open) {
                    (0, _) => (true, OpCode::Ping),
                    (1, false) => (false, OpCode::Binary),
                    (_, false) => (true, OpCode::Binary),
                    (_, true) => (rand(3) == 0, OpCode::Continuation),
                };
                let len = if op == OpCode::Ping {
                    len.min(125)
                } else {
                    len
                };
                if op != OpCode::Ping {
                    open = !fin;
                }
                wire.extend(masked(fin, op, &vec![0x55; len]));
            }
            let piece = 1 + rand(300_000) as usize;
            // An error (too big, over budget) is a fine outcome; the accounting held anyway.
            let _ = feed(&mut inbox, &budget, &wire, piece);
            let _ = inbox.next_event(true);
            drop(inbox);
            assert_eq!(budget.used(), 0);
        }
    }

    #[test]
    fn after_an_error_the_same_error_again() {
        // A text frame whose arriving payload is invalid UTF-8 after a 3-byte prefix: the
        // fail-fast check errs; asking again must not touch the codec's spent state.
        let budget = Budget::new(1 << 20);
        let mut wire = masked(true, OpCode::Text, &[0xF0, 0x9F, 0x98, 0x41, b'x', b'y']);
        wire.truncate(wire.len() - 2);
        let mut inbox = Inbox::new(&budget, 100, wire).unwrap();
        let err = inbox.next_event(true).unwrap_err();
        assert_eq!(err, Error::InvalidUtf8);
        inbox.extend(&[0x41 ^ MASK[0], 0x41 ^ MASK[1]]).unwrap();
        assert_eq!(inbox.next_event(true).unwrap_err(), err);
    }

    #[test]
    fn leftover_handshake_bytes_are_events_too() {
        let budget = Budget::new(1 << 20);
        let mut inbox = Inbox::new(&budget, 100, masked(true, OpCode::Text, b"hi")).unwrap();
        assert_eq!(
            inbox.next_event(true).unwrap(),
            Some(Event::Message(Message::Text("hi".into())))
        );
        assert_eq!(inbox.next_event(true).unwrap(), None);
    }
}
