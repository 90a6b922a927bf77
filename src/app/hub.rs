//! The WebSocket fan-out: every vote reaches every subscriber of `/get_new_vote`, in version
//! order, without any subscriber able to slow the others or grow the server's memory.
//!
//! One broadcaster thread waits on the vote table like a long-poller does, encodes each new
//! vote once, and offers the frames to every subscriber without blocking. A subscriber whose
//! socket does not take them is marked stale and handed to the catch-up thread, which finishes
//! its pending bytes when it reads again and then sends it the latest tally as one snapshot:
//! a slow reader costs at most one queued write, never a backlog (coalescing).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::json;
use super::votes::{Catchup, Votes};
use crate::config::Limits;
use crate::ws::conn::{Offer, Sender, Sequenced};
use crate::ws::frame::OpCode;

/// Most votes broadcast one by one in a round; more at once go out as one snapshot.
const MAX_BATCH: usize = 64;
/// How often the catch-up thread retries stalled subscribers.
const CATCH_UP_EVERY: Duration = Duration::from_millis(20);

pub struct Hub {
    votes: Arc<Votes>,
    subs: Mutex<Vec<(u64, Arc<Sender>)>>,
    next_id: AtomicU64,
    laggards: Mutex<Vec<(Arc<Sender>, Instant)>>,
}

/// A subscriber's registration; dropping it unsubscribes.
pub struct Subscription {
    hub: Arc<Hub>,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subs = lock(&self.hub.subs);
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
    pub fn start(votes: Arc<Votes>, _limits: &Limits) -> io::Result<Arc<Hub>> {
        let hub = Arc::new(Hub {
            votes,
            subs: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            laggards: Mutex::new(Vec::new()),
        });
        // Read the version here, not in the thread: a vote cast before the thread first runs
        // must still be broadcast.
        let seen = hub.votes.version();
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

    pub fn subscribe(self: &Arc<Self>, tx: Arc<Sender>) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.subs).push((id, tx));
        Subscription {
            hub: Arc::clone(self),
            id,
        }
    }

    pub fn subscribers(&self) -> usize {
        lock(&self.subs).len()
    }

    /// The whole tally as one frame, tagged with its version.
    fn snapshot_frame(&self) -> Sequenced {
        let s = self.votes.snapshot();
        let mut batch = Sequenced::default();
        batch.push(
            s.version,
            OpCode::Text,
            json::snapshot(&s, "\"type\":\"snapshot\",").as_bytes(),
        );
        batch
    }

    /// Sends the whole tally from the subscriber's own thread (on connect).
    pub fn send_snapshot(&self, tx: &Sender) -> io::Result<()> {
        let s = self.votes.snapshot();
        let msg = json::snapshot(&s, "\"type\":\"snapshot\",");
        tx.send_sequenced(s.version, OpCode::Text, msg.as_bytes())
    }

    fn broadcast_loop(&self, mut seen: u64) {
        loop {
            let batch = match self
                .votes
                .wait_past(seen, None, MAX_BATCH, Duration::from_secs(60))
            {
                None => continue,
                Some(Catchup::Delta { votes, .. }) => {
                    let mut batch = Sequenced::default();
                    for c in &votes {
                        batch.push(c.version, OpCode::Text, json::live_change(c).as_bytes());
                    }
                    batch
                }
                Some(Catchup::Snapshot(_)) => self.snapshot_frame(),
            };
            let Some(last) = batch.last() else { continue };
            seen = last;
            let mut stalled = Vec::new();
            for (_, tx) in lock(&self.subs).iter() {
                if tx.offer(&batch) == Offer::Stale {
                    stalled.push(Arc::clone(tx));
                }
            }
            if !stalled.is_empty() {
                let mut lag = lock(&self.laggards);
                for tx in stalled {
                    if !lag.iter().any(|(t, _)| Arc::ptr_eq(t, &tx)) {
                        lag.push((tx, Instant::now()));
                    }
                }
            }
        }
    }

    fn catch_up_loop(&self) {
        loop {
            thread::sleep(CATCH_UP_EVERY);
            let mut work = std::mem::take(&mut *lock(&self.laggards));
            if work.is_empty() {
                continue;
            }
            let mut snapshot: Option<Sequenced> = None;
            work.retain_mut(|(tx, since_progress)| match tx.try_flush(since_progress) {
                Err(_) => false,
                Ok(false) => true,
                Ok(true) => {
                    if !tx.take_stale() {
                        return false;
                    }
                    let snap = snapshot.get_or_insert_with(|| self.snapshot_frame());
                    match tx.offer(snap) {
                        Offer::Closed => false,
                        Offer::Stale => true,
                        Offer::Sent => tx.has_pending(),
                    }
                }
            });
            let mut lag = lock(&self.laggards);
            for entry in work {
                if !lag.iter().any(|(t, _)| Arc::ptr_eq(t, &entry.0)) {
                    lag.push(entry);
                }
            }
        }
    }
}
