//! One subscriber of the live tally, as the hub sees it: a WebSocket write half plus the
//! fan-out policy — which version it has, whether it is behind (stale), whether it is on the
//! catch-up list. Built from `ws::conn`'s primitive writes that never wait (beyond one kernel
//! tick on the broadcaster's path, none on the catch-up path), so a broadcaster never waits on
//! a slow peer: a frame the socket does not take at once marks the subscriber stale, and
//! whoever catches it up later sends it the latest tally, not a backlog.

use std::io;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ws::conn::{Locked, Sender, WriteState, Wrote};
use crate::ws::frame::{self, OpCode};

/// Frames tagged with increasing versions, concatenated, so that the part a subscriber still
/// needs is one contiguous suffix, written with one call.
#[derive(Clone, Default)]
pub struct Sequenced {
    pub bytes: Vec<u8>,
    /// (version, offset of its frame in `bytes`), increasing.
    pub starts: Vec<(u64, usize)>,
}

impl Sequenced {
    pub fn push(&mut self, version: u64, opcode: OpCode, payload: &[u8]) {
        self.starts.push((version, self.bytes.len()));
        frame::encode(true, opcode, payload, &mut self.bytes);
    }

    pub fn last(&self) -> Option<u64> {
        self.starts.last().map(|&(s, _)| s)
    }

    /// The frames after `seen` (all of them when nothing was seen), as bytes.
    fn after(&self, seen: Option<u64>) -> &[u8] {
        let i = self
            .starts
            .partition_point(|&(s, _)| seen.is_some_and(|seen| s <= seen));
        match self.starts.get(i) {
            Some(&(_, off)) => &self.bytes[off..],
            None => &[],
        }
    }
}

/// What an offer to a subscriber did.
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

/// A subscriber's write state, kept under its sender's lock so that it changes with the
/// writes it describes.
#[derive(Debug, Default)]
pub struct Written {
    /// Highest version written (see [`Sequenced`]).
    seen: Option<u64>,
    /// The first sequenced frames (the resume on connect) are out; broadcasts wait for them,
    /// so a subscriber never sees a vote before the tally it applies to.
    ready: bool,
}

/// A subscriber: its connection's write half and where it stands.
pub struct Subscriber {
    pub tx: Sender<Written>,
    /// How many times frames were withheld since the last catch-up (0: current). A count,
    /// not a flag: a catch-up clears only the marks it saw, so a mark made by a broadcaster
    /// while the catch-up held the lock is not lost.
    stale: AtomicU64,
    /// On the catch-up list: whoever lists it sets this, so a peer is listed once without
    /// searching the list (a search per stalled peer made each pass quadratic).
    listed: AtomicBool,
    /// The voter its upgrade's cookie named, for a reveal after their vote.
    voter: Option<String>,
    /// It may see the poll's counts (the presenter, a voter in `after_vote` who voted):
    /// when the poll hides them from others, it gets the full messages.
    sees: AtomicBool,
    /// It holds the admin cookie: it sees every count, whatever the poll's state.
    presenter: bool,
}

impl Subscriber {
    pub fn new(stream: Arc<TcpStream>, write_timeout: Duration) -> io::Result<Self> {
        Ok(Subscriber {
            tx: Sender::new(stream, write_timeout, true, Written::default())?,
            stale: AtomicU64::new(0),
            listed: AtomicBool::new(false),
            voter: None,
            sees: AtomicBool::new(true),
            presenter: false,
        })
    }

    /// A subscriber for a poll's viewer: `voter`, whether they see the counts now, whether
    /// they are the presenter. Built in place behind the `Arc`, in a frame of its own: the
    /// subscriber is large, and a copy of it on the caller's frame would stay in every idle
    /// subscriber thread's resident stack.
    #[inline(never)]
    pub fn open(
        stream: Arc<TcpStream>,
        write_timeout: Duration,
        voter: Option<String>,
        sees: bool,
        presenter: bool,
    ) -> io::Result<Arc<Self>> {
        let mut sub = Subscriber::new(stream, write_timeout)?;
        sub.voter = voter;
        sub.sees = AtomicBool::new(sees || presenter);
        sub.presenter = presenter;
        Ok(Arc::new(sub))
    }

    /// Sets whether it sees the counts (the presenter always does).
    pub fn set_sees(&self, sees: bool) {
        self.sees.store(sees || self.presenter, Ordering::Release);
    }

    pub fn sees(&self) -> bool {
        self.sees.load(Ordering::Acquire)
    }

    pub fn voter(&self) -> Option<&str> {
        self.voter.as_deref()
    }

    /// From now on it sees the counts; true if it did not before.
    pub fn reveal(&self) -> bool {
        !self.sees.swap(true, Ordering::AcqRel)
    }

    fn mark_stale(&self) -> Offer {
        self.stale.fetch_add(1, Ordering::AcqRel);
        Offer::Stale
    }

    /// Sends the first frames — the first carrying version `version` — in one write (from
    /// the subscriber's own thread, waiting up to the write timeout), records `version` as
    /// seen, and opens the subscriber to broadcasts. One write under one lock, so a broadcast
    /// never finds the lock taken by them (which would cost the subscriber a catch-up
    /// snapshot).
    pub fn send_first(&self, version: u64, opcode: OpCode, payloads: &[&[u8]]) -> io::Result<()> {
        let size = payloads
            .iter()
            .map(|p| p.len() + frame::MAX_HEADER_LEN)
            .sum();
        let mut out = Vec::with_capacity(size);
        for p in payloads {
            frame::encode(true, opcode, p, &mut out);
        }
        let mut l = self.tx.lock();
        l.write(&out)?;
        let w = l.ext();
        w.seen = Some(w.seen.map_or(version, |s| s.max(version)));
        w.ready = true;
        Ok(())
    }

    /// Broadcaster path: writes the frames of `batch` this peer has not seen, if the socket
    /// takes them now. Never waits for the lock, nor (beyond one tick) for the peer.
    pub fn offer(&self, batch: &Sequenced) -> Offer {
        // Once behind, only the catch-up path (which clears the mark) writes here: trying again
        // on every batch would cost the broadcaster a blocked write each time.
        if self.stale.load(Ordering::Acquire) > 0 {
            // Withheld: count it, so a catch-up under way does not clear it unseen.
            return self.mark_stale();
        }
        let Some(mut l) = self.tx.try_lock() else {
            return self.mark_stale();
        };
        if l.state() != WriteState::Open {
            return Offer::Closed;
        }
        // Again under the lock: the mark is cleared only under it, after the catch-up state
        // went out, so a batch can never slip in between a skipped one and the catch-up.
        if self.stale.load(Ordering::Acquire) > 0 || l.has_pending() || !l.ext().ready {
            // Behind already (or not yet started): don't queue more, remember to send the
            // latest state instead.
            return self.mark_stale();
        }
        let seen = l.ext().seen;
        let bytes = batch.after(seen);
        if bytes.is_empty() {
            return Offer::Sent;
        }
        match l.try_write(bytes) {
            Wrote::All => {
                l.ext().seen = batch.last().or(seen);
                Offer::Sent
            }
            // Whatever the socket did not take is queued: it finishes frames begun.
            Wrote::Part => {
                l.ext().seen = batch.last().or(seen);
                Offer::Queued
            }
            // Nothing taken: the peer is not reading. Forget these frames; it gets the latest
            // state when it catches up.
            Wrote::Nothing => self.mark_stale(),
            Wrote::Closed => Offer::Closed,
        }
    }

    /// Broadcaster path for an encoded frame outside the sequence (presence): written only if
    /// the peer is current and the socket takes it at once; otherwise dropped (the next such
    /// frame supersedes this one). `Queued` when part of it is left pending: the caller must
    /// hand the peer to the catch-up path.
    pub fn offer_unsequenced(&self, frame: &[u8]) -> Offer {
        if self.stale.load(Ordering::Acquire) > 0 {
            return Offer::Stale;
        }
        let Some(mut l) = self.tx.try_lock() else {
            return Offer::Sent;
        };
        if !l.ext().ready {
            return Offer::Sent;
        }
        match l.try_write(frame) {
            Wrote::All | Wrote::Nothing => Offer::Sent,
            Wrote::Part => Offer::Queued,
            Wrote::Closed => Offer::Closed,
        }
    }

    /// Catch-up path: one attempt, without waiting, to write what is pending. `Ok(true)` when
    /// nothing is left. Gives up on (and shuts down) a peer still behind a write timeout after
    /// `behind_since`: a trickle is not progress.
    pub fn try_flush(&self, behind_since: &Instant) -> io::Result<bool> {
        let Some(mut l) = self.tx.try_lock() else {
            return Ok(false);
        };
        if l.try_flush()? {
            return Ok(true);
        }
        if behind_since.elapsed() >= self.tx.write_timeout() {
            l.kill();
            return Err(io::ErrorKind::TimedOut.into());
        }
        Ok(false)
    }

    /// Catch-up path, after [`try_flush`](Subscriber::try_flush) emptied the queue: if this
    /// peer missed frames, sends it `latest(seen)` — built here, under the lock, so that it is
    /// at least as new as every frame the peer missed, from the version it last had (`None`:
    /// nothing in this epoch) — without waiting, and clears the mark. `Sent` when the peer is
    /// current (or nothing was missed), `Stale` to try again later.
    pub fn catch_up(&self, latest: &dyn Fn(Option<u64>) -> Sequenced) -> Offer {
        let Some(mut l) = self.tx.try_lock() else {
            return Offer::Stale;
        };
        if l.state() != WriteState::Open {
            return Offer::Closed;
        }
        let marks = self.stale.load(Ordering::Acquire);
        if marks == 0 {
            return Offer::Sent;
        }
        if l.has_pending() || !l.ext().ready {
            return Offer::Stale;
        }
        let batch = latest(l.ext().seen);
        if let Some(offer) = write_latest(&mut l, &batch) {
            return offer;
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

    /// The tally started a new epoch (a shared store restarted empty): versions begin again,
    /// so what this peer has seen says nothing. It is marked stale, and the catch-up path
    /// sends it the new epoch's tally. Waits for the sender's lock: this happens once per
    /// epoch, not per vote.
    pub fn new_epoch(&self) {
        self.tx.lock().ext().seen = None;
        self.mark_stale();
    }

    /// Marks this peer as on the catch-up list: `true` if it was not (the caller lists it).
    pub fn list(&self) -> bool {
        !self.listed.swap(true, Ordering::AcqRel)
    }

    /// Takes this peer off the catch-up list (the caller has dropped it from the list).
    pub fn unlist(&self) {
        self.listed.store(false, Ordering::Release);
    }

    /// Bytes queued for this peer. Never waits: a sender busy on its own thread (a pong, an
    /// ack being written) counts as pending, so the catch-up thread looks again next pass
    /// instead of blocking behind it for up to a write timeout.
    pub fn has_pending(&self) -> bool {
        self.tx.try_lock().is_none_or(|l| l.has_pending())
    }

    pub fn write_timeout(&self) -> Duration {
        self.tx.write_timeout()
    }

    pub fn shutdown(&self) {
        self.tx.shutdown();
    }
}

/// Writes what of `batch` the peer has not seen, without waiting. `None` when it went out (in
/// whole or begun, the rest pending), else what to report.
fn write_latest(l: &mut Locked<'_, Written>, batch: &Sequenced) -> Option<Offer> {
    let seen = l.ext().seen;
    let bytes = batch.after(seen);
    if bytes.is_empty() {
        return None;
    }
    match l.try_write_now(bytes) {
        Wrote::All | Wrote::Part => {
            l.ext().seen = batch.last().or(seen);
            None
        }
        Wrote::Nothing => Some(Offer::Stale),
        Wrote::Closed => Some(Offer::Closed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Shutdown, TcpListener};
    use std::sync::mpsc;

    #[test]
    fn sequenced_suffixes() {
        let mut s = Sequenced::default();
        s.push(3, OpCode::Text, b"a");
        s.push(4, OpCode::Text, b"bb");
        assert_eq!(s.after(Some(0)).len(), 3 + 4);
        assert_eq!(s.after(Some(3)), &[0x81, 2, b'b', b'b']);
        assert!(s.after(Some(4)).is_empty());
        assert_eq!(s.last(), Some(4));
        // Nothing seen (a new epoch): every frame, even one at version 0.
        let mut new = Sequenced::default();
        new.push(0, OpCode::Text, b"a");
        assert_eq!(new.after(None).len(), 3);
        assert!(new.after(Some(0)).is_empty());
    }

    #[test]
    fn catch_up_writes_never_wait_on_the_peer() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let stream = Arc::new(l.accept().unwrap().0);
        let sub = Arc::new(Subscriber::new(Arc::clone(&stream), Duration::from_secs(60)).unwrap());
        sub.send_first(0, OpCode::Text, &[b"hello"]).unwrap();
        // Broadcast until the peer (which never reads) is full and something is pending.
        let mut version = 0;
        loop {
            version += 1;
            let mut batch = Sequenced::default();
            batch.push(version, OpCode::Binary, &[0; 64 * 1024]);
            match sub.offer(&batch) {
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
            let sub = Arc::clone(&sub);
            move || {
                let since = Instant::now();
                let flushed = sub.try_flush(&since);
                let caught = sub.catch_up(&|_| Sequenced::default());
                let _ = done.send((flushed.ok(), caught));
            }
        });
        let got = wait.recv_timeout(Duration::from_secs(20));
        // Not `shutdown()`: a write stuck under the lock would keep it from returning.
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
    fn a_subscriber_is_listed_once() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let stream = Arc::new(l.accept().unwrap().0);
        let sub = Subscriber::new(stream, Duration::from_secs(1)).unwrap();
        assert!(sub.list());
        assert!(!sub.list());
        sub.unlist();
        assert!(sub.list());
    }
}
