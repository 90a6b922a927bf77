//! The WebSocket fan-out: every vote reaches every subscriber of `/get_new_vote`, in version
//! order, without any subscriber able to slow the others or grow the server's memory.
//!
//! One broadcaster thread waits on the vote table like a long-poller does, encodes each new
//! vote once, and offers the frames to every subscriber without blocking. A subscriber whose
//! socket does not take them is marked stale and handed to the catch-up thread, which finishes
//! its pending bytes when it reads again and then sends it the latest tally as one snapshot:
//! a slow reader costs at most one queued write, never a backlog (coalescing). What one
//! subscriber's offer, flush and catch-up do is in `fanout`; this module runs the threads.

use std::cell::RefCell;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::cursor::Cursor;
use super::fanout::{Offer, Sequenced, Subscriber};
use super::metrics::Metrics;
use super::polls::meta::Results;
use super::presence::Kind;
use super::votes::Wake;
use super::votes::{Catchup, Votes};
use super::{json, MAX_LIVE_DELTA};
use crate::ws::frame::{self, OpCode};

/// How often the catch-up thread retries stalled subscribers.
const CATCH_UP_EVERY: Duration = Duration::from_millis(20);

/// How one broadcast is written: by up to `writers` threads, each with a shard of at least
/// `per_writer` subscribers (`--fanout-writers`). Below that, one thread writes them all: a
/// writer thread per broadcast costs more than it saves for a few hundred sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fanout {
    pub writers: usize,
    pub per_writer: usize,
}

/// Subscribers a fan-out writer takes at least.
const PER_WRITER: usize = 512;

impl Fanout {
    /// `writers` threads (at least one), shards of [`PER_WRITER`].
    pub fn new(writers: usize) -> Fanout {
        Fanout {
            writers: writers.max(1),
            per_writer: PER_WRITER,
        }
    }

    /// The default for this machine: one writer per two cores (the clients, the connection
    /// threads and the other poll's work need the rest), at least one.
    pub fn for_this_machine() -> usize {
        thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
    }

    /// How many writers a broadcast to `subscribers` uses.
    fn writers_for(&self, subscribers: usize) -> usize {
        self.writers
            .min(subscribers / self.per_writer.max(1))
            .max(1)
    }
}

pub struct Hub {
    votes: Arc<Votes>,
    /// Who sees the poll's counts: when not everyone does, every message is encoded twice,
    /// with the counts and without (`json::live_hidden`).
    results: Results,
    metrics: Arc<Metrics>,
    subs: Mutex<Subs>,
    /// Wakes an idle broadcaster when the first subscriber joins.
    joined: Condvar,
    next_id: AtomicU64,
    laggards: Mutex<Vec<(Arc<Subscriber>, Instant)>>,
    /// Wakes the catch-up thread when someone lags: with nobody behind it sleeps (a thousand
    /// polls' hubs must not wake fifty times a second each for nothing).
    lagged: Condvar,
    /// The poll is gone: both threads end.
    stopped: std::sync::atomic::AtomicBool,
    fanout: Fanout,
    /// The epoch of the versions subscribers have been sent: a catch-up builds deltas from a
    /// subscriber's last version only within it. The broadcaster moves it on a new epoch after
    /// it has cleared every subscriber's version, so no version is read in the wrong epoch.
    epoch: Mutex<String>,
}

/// The subscribers, and what an idle broadcaster needs to start again.
#[derive(Default)]
struct Subs {
    list: Vec<(u64, Arc<Subscriber>)>,
    /// The broadcaster waits for a subscriber, not for votes: with nobody to send them to,
    /// a vote wakes no thread here.
    idle: bool,
    /// The tally's (epoch, version) when the first subscriber joined an idle broadcaster,
    /// read before it was listed: its resume (sent after) is at least that new, so the
    /// broadcaster goes on from there and misses nothing anyone listed has not had.
    joined_at: Option<(String, u64)>,
}

/// A subscriber's registration; dropping it unsubscribes.
pub struct Subscription {
    hub: Arc<Hub>,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let subs = &mut lock(&self.hub.subs).list;
        if let Some(i) = subs.iter().position(|(id, _)| *id == self.id) {
            subs.swap_remove(i);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Hub {
    /// Starts the broadcaster and catch-up threads.
    pub fn start(
        votes: Arc<Votes>,
        metrics: Arc<Metrics>,
        results: Results,
        fanout: Fanout,
    ) -> io::Result<Arc<Hub>> {
        let hub = Arc::new(Hub {
            votes,
            results,
            metrics,
            subs: Mutex::new(Subs::default()),
            joined: Condvar::new(),
            next_id: AtomicU64::new(1),
            laggards: Mutex::new(Vec::new()),
            lagged: Condvar::new(),
            stopped: Default::default(),
            fanout,
            epoch: Mutex::new(String::new()),
        });
        // Read the version here, not in the thread: a vote cast before the thread first runs
        // must still be broadcast.
        let seen = hub.votes.version();
        *lock(&hub.epoch) = hub.votes.epoch();
        let h = Arc::clone(&hub);
        thread::Builder::new()
            .name("ws-broadcast".into())
            .spawn(move || h.broadcast_loop(seen))?;
        let h = Arc::clone(&hub);
        thread::Builder::new()
            .name("ws-catch-up".into())
            .spawn(move || h.catch_up_loop())?;
        Ok(hub)
    }

    pub fn subscribe(self: &Arc<Self>, tx: Arc<Subscriber>) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let at = self.votes.followed();
        let mut subs = lock(&self.subs);
        if subs.idle && subs.joined_at.is_none() {
            subs.joined_at = Some(at);
            self.joined.notify_one();
        }
        subs.list.push((id, tx));
        drop(subs);
        Subscription {
            hub: Arc::clone(self),
            id,
        }
    }

    pub fn subscribers(&self) -> usize {
        lock(&self.subs).list.len()
    }

    /// Closes every subscriber with `code` and ends both threads (the poll was deleted).
    pub fn stop(&self, code: u16, reason: &str) {
        self.stopped.store(true, Ordering::SeqCst);
        let subs = lock(&self.subs);
        for (_, tx) in &subs.list {
            tx.tx.close_now(code, reason);
        }
        self.joined.notify_all();
        drop(subs);
        drop(lock(&self.laggards));
        self.lagged.notify_all();
    }

    fn stopping(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// Returns at once while anyone subscribes; otherwise waits (votes unseen) until someone
    /// does, and gives the cursor to go on from (see [`Subs::joined_at`]).
    fn await_subscriber(&self) -> Option<(String, u64)> {
        let mut subs = lock(&self.subs);
        if !subs.list.is_empty() {
            return None;
        }
        subs.idle = true;
        while subs.joined_at.is_none() && !self.stopping() {
            subs = self
                .joined
                .wait(subs)
                .unwrap_or_else(PoisonError::into_inner);
        }
        subs.idle = false;
        subs.joined_at.take()
    }

    /// The whole tally as one frame, tagged with its version: with the counts, and (when the
    /// poll hides them from some) without.
    fn snapshot_frames(&self) -> (Sequenced, Option<Sequenced>) {
        let s = self.votes.snapshot();
        let mut batch = Sequenced::default();
        batch.push(
            s.version,
            OpCode::Text,
            json::snapshot(&s, true, true).as_bytes(),
        );
        let hidden = self.hides().then(|| {
            let mut h = Sequenced::default();
            h.push(
                s.version,
                OpCode::Text,
                json::snapshot(&s, true, false).as_bytes(),
            );
            h
        });
        (batch, hidden)
    }

    /// Whether some subscribers may not see the counts now (the poll's rule and state).
    fn hides(&self) -> bool {
        // `always` (the default poll) asks nothing of the tally.
        self.results != Results::Always
            && !self.results.visible(self.votes.poll_closed(), false, false)
    }

    /// Whether `tx` may see the counts now.
    fn sees(&self, tx: &Subscriber) -> bool {
        tx.sees() || !self.hides()
    }

    /// Decides again for every subscriber whether it sees the counts: a reset forgets who
    /// voted (after_vote). Rare (a state mark): one look at the voters per subscriber.
    fn refresh_sight(&self) {
        if self.results != Results::AfterVote {
            return;
        }
        for (_, tx) in lock(&self.subs).list.iter() {
            let voted = tx
                .voter()
                .is_some_and(|v| self.votes.voted_for(v).is_some());
            tx.set_sees(voted);
        }
    }

    /// `voter` has voted: their subscribers that did not see the counts get a snapshot with
    /// them (through the catch-up thread), and the full messages from now on.
    pub fn reveal_to(&self, voter: &str) {
        let revealed: Vec<Arc<Subscriber>> = lock(&self.subs)
            .list
            .iter()
            .filter(|(_, tx)| tx.voter() == Some(voter) && tx.reveal())
            .map(|(_, tx)| Arc::clone(tx))
            .collect();
        for tx in &revealed {
            tx.new_epoch();
        }
        self.lagging(revealed);
    }

    /// Sends the resume message (docs/PROTOCOL.md) from the subscriber's own thread, on
    /// connect: what the client missed since its cursor, or the whole tally; then presence.
    pub fn send_resume(&self, tx: &Subscriber, cursor: &Cursor) -> io::Result<()> {
        let catchup = cursor.catch_up(&self.votes);
        let visible = self.sees(tx);
        let (msg, version) = json::resume(&catchup, cursor.since, &self.votes.epoch(), visible);
        self.metrics.request(Kind::Ws);
        self.metrics.resume(Kind::Ws, json::resume_kind(&catchup));
        let (counts, pv) = self.votes.presence();
        let presence = json::presence(&counts, pv);
        tx.send_first(
            version,
            OpCode::Text,
            &[msg.as_bytes(), presence.as_bytes()],
        )?;
        self.metrics
            .sent(Kind::Ws, 2, (msg.len() + presence.len()) as u64, 1);
        Ok(())
    }

    fn broadcast_loop(&self, mut seen: u64) {
        let mut pv = self.votes.presence().1;
        let mut epoch = lock(&self.epoch).clone();
        let mut degraded = false;
        loop {
            if let Some((e, v)) = self.await_subscriber() {
                // Nobody was listed: no subscriber holds a version of another epoch.
                (epoch, seen) = (e, v);
                lock(&self.epoch).clone_from(&epoch);
            }
            // Shutting down: the WebSockets are being closed (`live::Sockets`).
            if self.votes.ending() || self.stopping() {
                return;
            }
            let batch = match self.votes.wait(
                seen,
                Some(&epoch),
                Some(pv),
                MAX_LIVE_DELTA,
                Duration::from_secs(60),
            ) {
                None => continue,
                Some(Wake::Presence(counts, p)) => {
                    pv = p;
                    let msg = json::presence(&counts, p);
                    let now_degraded = self.votes.degraded();
                    if now_degraded != degraded {
                        // The store's health changed: the one message that says so, then
                        // presence, in one frame each.
                        degraded = now_degraded;
                        let d = json::degraded(degraded);
                        let mut out = Vec::with_capacity(d.len() + frame::MAX_HEADER_LEN);
                        frame::encode(true, OpCode::Text, d.as_bytes(), &mut out);
                        let (_, stalled) = self.fan_out(|tx| tx.offer_unsequenced(&out));
                        self.lagging(stalled);
                    }
                    // Encoded once for everyone. Best effort: a subscriber that cannot take it
                    // now gets the next one.
                    let mut out = Vec::with_capacity(msg.len() + frame::MAX_HEADER_LEN);
                    frame::encode(true, OpCode::Text, msg.as_bytes(), &mut out);
                    let (sent, stalled) = self.fan_out(|tx| tx.offer_unsequenced(&out));
                    self.metrics
                        .sent(Kind::Ws, sent, sent * msg.len() as u64, 0);
                    self.lagging(stalled);
                    continue;
                }
                Some(Wake::Votes(Catchup::Delta { votes, .. })) => (
                    encode_changes(&votes, false),
                    self.hides().then(|| encode_changes(&votes, true)),
                ),
                Some(Wake::Votes(Catchup::Snapshot(s))) if s.epoch != epoch => {
                    // A new epoch: every subscriber starts over from its tally.
                    epoch = s.epoch;
                    seen = s.version;
                    let all: Vec<Arc<Subscriber>> = lock(&self.subs)
                        .list
                        .iter()
                        .map(|(_, tx)| Arc::clone(tx))
                        .collect();
                    for tx in &all {
                        tx.new_epoch();
                    }
                    // A subscriber listed meanwhile resumed in the new epoch already.
                    lock(&self.epoch).clone_from(&epoch);
                    self.lagging(all);
                    continue;
                }
                Some(Wake::Votes(Catchup::Snapshot(_))) => {
                    // A state mark (close, open, reset) may change who sees the counts.
                    self.refresh_sight();
                    self.snapshot_frames()
                }
            };
            let (batch, hidden) = batch;
            let Some(last) = batch.last() else { continue };
            let first = seen + 1;
            seen = last;
            let (sent, stalled) = self.fan_out(|tx| match &hidden {
                Some(h) if !tx.sees() => tx.offer(h),
                _ => tx.offer(&batch),
            });
            let frames = batch.starts.len() as u64;
            self.metrics.broadcast();
            self.metrics.sent(
                Kind::Ws,
                sent * frames,
                sent * batch.bytes.len() as u64,
                sent * frames,
            );
            // Every subscriber that could take it has it: the vote's last delivery.
            for v in first..=last {
                if let Some(at) = self.votes.counted_at(v) {
                    self.metrics.delivered(Kind::Ws, at.elapsed());
                }
            }
            self.lagging(stalled);
        }
    }

    /// Offers something to every subscriber: how many took it, and who must be caught up.
    /// Each offer is a non-blocking write, so one thread goes through thousands of sockets;
    /// with more cores, the list is split between `--fanout-writers` threads (scoped to this
    /// broadcast, so a shard never outlives the lock on the list). On this 2-core machine the
    /// default is one writer: splitting was measured (`ws_fanout_10k`, 2×3 runs side by side)
    /// and gave no clear gain, the clients needing the other core.
    fn fan_out(&self, offer: impl Fn(&Subscriber) -> Offer + Sync) -> (u64, Vec<Arc<Subscriber>>) {
        let subs = lock(&self.subs);
        let list = subs.list.as_slice();
        let writers = self.fanout.writers_for(list.len());
        if writers == 1 {
            return offer_all(list, &offer);
        }
        let shard = list.len().div_ceil(writers);
        thread::scope(|scope| {
            let mut shards = list.chunks(shard);
            // This thread writes the first shard itself, the others one thread each.
            let first = shards.next().unwrap_or_default();
            let others: Vec<_> = shards
                .map(|part| {
                    let offer = &offer;
                    let spawned = thread::Builder::new()
                        .name("ws-fanout".into())
                        .spawn_scoped(scope, move || offer_all(part, offer));
                    // No thread to be had (a machine out of them): written here instead.
                    spawned.map_err(|_| part)
                })
                .collect();
            let (mut sent, mut stalled) = offer_all(first, &offer);
            for other in others {
                let (s, mut st) = match other {
                    Ok(h) => h.join().unwrap_or_default(),
                    Err(part) => offer_all(part, &offer),
                };
                sent += s;
                stalled.append(&mut st);
            }
            (sent, stalled)
        })
    }

    /// Hands subscribers that could not take a broadcast to the catch-up thread. O(1) per
    /// subscriber: a peer already on the list (its flag says so) is not searched for or added.
    fn lagging(&self, stalled: Vec<Arc<Subscriber>>) {
        if stalled.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut lag = lock(&self.laggards);
        let was_empty = lag.is_empty();
        lag.extend(
            stalled
                .into_iter()
                .filter(|tx| tx.list())
                .map(|tx| (tx, now)),
        );
        if was_empty && !lag.is_empty() {
            self.lagged.notify_one();
        }
    }

    /// The votes after `since` in the subscribers' epoch, encoded for a peer that does or does
    /// not see the counts, or None when only a snapshot says what changed (too far behind, a
    /// state mark, another epoch). Kept in `memo` for the pass: a batch from an older version
    /// serves every peer that is further on (the peer takes the frames after its version).
    fn missed(
        &self,
        memo: &RefCell<Option<(u64, bool, Sequenced)>>,
        since: u64,
        sees: bool,
        now: u64,
    ) -> Option<Sequenced> {
        let mut memo = memo.borrow_mut();
        if let Some((from, s, batch)) = &*memo {
            if *from <= since && *s == sees && batch.last() >= Some(now) {
                return Some(batch.clone());
            }
        }
        let epoch = lock(&self.epoch).clone();
        let Catchup::Delta { votes, .. } = self.votes.catch_up(since, Some(&epoch), MAX_LIVE_DELTA)
        else {
            return None;
        };
        let batch = encode_changes(&votes, self.hides() && !sees);
        batch.last()?;
        *memo = Some((since, sees, batch.clone()));
        Some(batch)
    }

    fn catch_up_loop(&self) {
        loop {
            {
                let mut lag = lock(&self.laggards);
                while lag.is_empty() && !self.stopping() {
                    lag = self
                        .lagged
                        .wait(lag)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            }
            if self.stopping() {
                return;
            }
            thread::sleep(CATCH_UP_EVERY);
            let mut work = std::mem::take(&mut *lock(&self.laggards));
            if work.is_empty() {
                continue;
            }
            // One snapshot per tally version, not one per stale peer: a pass over thousands of
            // them takes the tally lock (and encodes the tally) only when the tally moved.
            // (A snapshot at least as new as the current version is as good as a fresh one.)
            let memo = RefCell::new((Sequenced::default(), None));
            // A peer only a few votes behind (one whose socket was busy for a moment, say with
            // its own resume) gets those votes rather than the tally, when they are fewer
            // bytes: a snapshot is for a backlog, not for a short delay.
            let deltas = RefCell::new(None::<(u64, bool, Sequenced)>);
            let latest = |seen: Option<u64>, sees: bool| {
                let now = self.votes.version();
                let missed = seen.and_then(|since| self.missed(&deltas, since, sees, now));
                let mut memo = memo.borrow_mut();
                if memo.0.last() < Some(now) {
                    *memo = self.snapshot_frames();
                }
                let snap = match &memo.1 {
                    Some(h) if !sees => h,
                    _ => &memo.0,
                };
                match missed {
                    Some(d) if d.bytes.len() < snap.bytes.len() => {
                        let frames = d.starts.len() as u64;
                        self.metrics
                            .sent(Kind::Ws, frames, d.bytes.len() as u64, frames);
                        d
                    }
                    _ => {
                        self.metrics.coalesce();
                        self.metrics.sent(Kind::Ws, 1, snap.bytes.len() as u64, 1);
                        snap.clone()
                    }
                }
            };
            let keep =
                |tx: &Arc<Subscriber>, behind_since: &Instant| match tx.try_flush(behind_since) {
                    Err(_) => false,
                    Ok(false) => true,
                    Ok(true) => match tx.catch_up(&|seen| latest(seen, tx.sees())) {
                        Offer::Closed => false,
                        // Behind for a whole write timeout without catching up once: a peer that
                        // does not read must not hold its thread and socket forever.
                        Offer::Stale if behind_since.elapsed() >= tx.write_timeout() => {
                            tx.shutdown();
                            false
                        }
                        Offer::Stale => true,
                        Offer::Sent | Offer::Queued => tx.has_pending(),
                    },
                };
            work.retain(|(tx, since)| {
                let kept = keep(tx, since);
                if !kept {
                    // Off the list: the next stall lists it again, with a new time.
                    tx.unlist();
                }
                kept
            });
            // Merge back: a peer kept is still flagged as listed, so the broadcaster cannot
            // have listed it again meanwhile (no duplicates, and it keeps its older time, or a
            // peer that never reads would never reach its write timeout).
            lock(&self.laggards).append(&mut work);
        }
    }
}

/// The live messages for `votes`, one frame each: with their counts, or (`hidden`) only the
/// version and total, for a viewer who may not see the counts yet.
fn encode_changes(votes: &[super::votes::Change], hidden: bool) -> Sequenced {
    let mut batch = Sequenced::default();
    for c in votes {
        let msg = match hidden {
            true => json::live_hidden(c),
            false => json::live_change(c),
        };
        batch.push(c.version, OpCode::Text, msg.as_bytes());
    }
    batch
}

/// Offers to each subscriber of `list`: how many took it, and who must be caught up.
fn offer_all(
    list: &[(u64, Arc<Subscriber>)],
    offer: &impl Fn(&Subscriber) -> Offer,
) -> (u64, Vec<Arc<Subscriber>>) {
    let mut sent = 0;
    let mut stalled = Vec::new();
    for (_, tx) in list {
        match offer(tx) {
            Offer::Stale => stalled.push(Arc::clone(tx)),
            Offer::Queued => {
                sent += 1;
                stalled.push(Arc::clone(tx));
            }
            Offer::Sent => sent += 1,
            Offer::Closed => {}
        }
    }
    (sent, stalled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    /// The text of the next frame a client reads (a small unmasked server frame).
    fn next_text(client: &mut TcpStream) -> String {
        let mut head = [0; 2];
        client.read_exact(&mut head).unwrap();
        assert_eq!(head[0], 0x81, "a final text frame");
        let mut body = vec![0; usize::from(head[1] & 0x7f)];
        client.read_exact(&mut body).unwrap();
        String::from_utf8(body).unwrap()
    }

    /// A two-candidate tally and its hub.
    fn hub_with(fanout: Fanout) -> (Arc<Votes>, Arc<Hub>) {
        let votes = Arc::new(Votes::new(&[
            ("1".into(), "a".into()),
            ("2".into(), "b".into()),
        ]));
        let hub = Hub::start(
            Arc::clone(&votes),
            Arc::new(Metrics::default()),
            Results::Always,
            fanout,
        )
        .unwrap();
        (votes, hub)
    }

    /// A subscriber of `hub` over a real socket, its resume read: the client end, the
    /// subscriber, its registration.
    fn joined(l: &TcpListener, hub: &Arc<Hub>) -> (TcpStream, Arc<Subscriber>, Subscription) {
        let mut client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let stream = Arc::new(l.accept().unwrap().0);
        let sub = Subscriber::open(stream, Duration::from_secs(20), None, true, false).unwrap();
        let subscription = hub.subscribe(Arc::clone(&sub));
        sub.send_first(0, OpCode::Text, &[b"resume"]).unwrap();
        assert_eq!(next_text(&mut client), "resume");
        (client, sub, subscription)
    }

    #[test]
    fn a_subscriber_busy_for_a_moment_gets_the_votes_it_missed_not_a_snapshot() {
        let (votes, hub) = hub_with(Fanout::new(1));
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let (mut client, sub, _subscription) = joined(&l, &hub);
        // Its own thread holds its sender (as while its resume is still being written) when
        // the vote is broadcast: the broadcaster cannot wait, and hands it to the catch-up.
        let held = sub.tx.lock();
        votes.vote("2").unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while lock(&hub.laggards).is_empty() {
            assert!(
                Instant::now() < deadline,
                "the busy subscriber was never behind"
            );
            thread::yield_now();
        }
        drop(held);
        assert_eq!(
            next_text(&mut client),
            r#"{"uid":"2","count":1,"version":1}"#
        );
        hub.stop(1001, "done");
    }

    #[test]
    fn a_broadcast_is_split_into_shards_only_when_each_is_large_enough() {
        let f = Fanout {
            writers: 4,
            per_writer: 8,
        };
        assert_eq!(
            [0, 7, 8, 16, 31, 40, 1000].map(|n| f.writers_for(n)),
            [1, 1, 1, 2, 3, 4, 4]
        );
        assert_eq!(Fanout::new(0).writers, 1);
        assert!(Fanout::for_this_machine() >= 1);
    }

    #[test]
    fn a_broadcast_split_over_writers_reaches_every_subscriber_in_order() {
        const SUBSCRIBERS: usize = 40;
        const VOTES: u64 = 30;
        // Four writers, shards of ten.
        let fanout = Fanout {
            writers: 4,
            per_writer: 8,
        };
        let (votes, hub) = hub_with(fanout);
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut clients = Vec::new();
        let mut held = Vec::new();
        for _ in 0..SUBSCRIBERS {
            let (client, _, subscription) = joined(&l, &hub);
            held.push(subscription);
            clients.push(client);
        }
        assert_eq!(fanout.writers_for(hub.subscribers()), 4);
        for v in 1..=VOTES {
            votes.vote(if v % 2 == 0 { "2" } else { "1" }).unwrap();
        }
        for client in &mut clients {
            for v in 1..=VOTES {
                let (uid, count) = if v % 2 == 0 {
                    ("2", v / 2)
                } else {
                    ("1", v.div_ceil(2))
                };
                assert_eq!(
                    next_text(client),
                    format!(r#"{{"uid":"{uid}","count":{count},"version":{v}}}"#)
                );
            }
        }
        hub.stop(1001, "done");
    }
}
