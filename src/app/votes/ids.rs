//! The exactly-once window: answers to recent votes by their vote id, each kept for a TIME
//! (`--vote-id-window`), within a memory cap (`--vote-id-memory`). Pure: the time is passed in
//! (`now`, ms since the Unix epoch), no clock and no I/O here, so the tests drive it.
//!
//! Ids are kept in the order they were counted, which is the order of their times (a time
//! earlier than the newest is raised to it, so a clock stepping back cannot reorder the queue):
//! expiry pops the front, O(expired). When remembering one more id would take the memory past
//! the cap while every id held is still inside the window, the new id is refused: forgetting a
//! young id would silently break the promise that its retry counts once, refusing it (the
//! caller answers `503` + `Retry-After`) keeps it.
//!
//! # What an id costs
//! The cap counts what is really held, not the ids' lengths: each id's own allocation (shared by
//! the map's key and the queue's entry, an `Arc<str>`: 16 bytes of counts plus the id, rounded
//! up as glibc's malloc does), and the two tables at their *capacity* (a `HashMap` slot holds
//! key and answer, 56 bytes, plus a control byte, at up to 7/8 load; a `VecDeque` slot is 16
//! bytes), projected to the doubling the next insert would cause. A 36-byte UUID costs 64 +
//! about 65 + 16 ≈ 145 bytes when the tables are full and up to about 230 just after they
//! doubled; the default 64 MiB holds roughly 290,000–460,000 UUIDs (at 1,000 votes/s with ids,
//! about 5–8 minutes: raise `--vote-id-memory` for more).

use std::collections::{HashMap, HashSet, VecDeque};
use std::mem::size_of;
use std::sync::Arc;
use std::time::Duration;

use super::Change;
use crate::app::store::RecentVote;

/// An answer kept for a vote id: what the vote did, and when it was counted.
struct Answer {
    uid: Arc<str>,
    count: u64,
    version: u64,
    at_ms: u64,
}

/// One slot of the map: key and answer.
const MAP_SLOT: usize = size_of::<(Arc<str>, Answer)>() + 1;
/// One slot of the queue.
const QUEUE_SLOT: usize = size_of::<Arc<str>>();
/// The header of an `Arc<str>`'s allocation: the strong and weak counts.
const ARC_HEADER: usize = 2 * size_of::<usize>();

/// Bytes a heap allocation of `request` bytes takes, as glibc's malloc lays it out: 8 bytes of
/// chunk header, rounded up to 16, at least 32.
fn alloc_bytes(request: usize) -> usize {
    ((request + 8 + 15) & !15).max(32)
}

/// Bytes the allocation of an id of `len` bytes takes.
fn id_bytes(len: usize) -> usize {
    alloc_bytes(ARC_HEADER + len)
}

/// Bytes of a hash table that can hold `capacity` entries (std's `HashMap` keeps one bucket in
/// eight free).
fn map_bytes(capacity: usize) -> usize {
    if capacity == 0 {
        0
    } else {
        (capacity * 8 / 7 + 1) * MAP_SLOT
    }
}

/// The window and its accounting.
pub struct VoteIds {
    window_ms: u64,
    cap: usize,
    answers: HashMap<Arc<str>, Answer>,
    /// Oldest first.
    order: VecDeque<Arc<str>>,
    /// Candidate uids, shared by every answer for them.
    uids: HashSet<Arc<str>>,
    /// Bytes of the ids' own allocations.
    heap: usize,
    /// The newest time given to an id.
    newest_ms: u64,
    expired: u64,
    refused: u64,
}

/// What the metrics show of the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdStats {
    /// Ids remembered now.
    pub remembered: usize,
    /// The bytes they hold (see the module docs).
    pub bytes: usize,
    /// Ids forgotten because their window passed.
    pub expired: u64,
    /// New ids refused because the cap was reached with every id still inside the window.
    pub refused: u64,
}

impl VoteIds {
    pub fn new(window: Duration, cap: usize) -> Self {
        VoteIds {
            window_ms: window.as_millis().min(u128::from(u64::MAX)) as u64,
            cap,
            answers: HashMap::new(),
            order: VecDeque::new(),
            uids: HashSet::new(),
            heap: 0,
            newest_ms: 0,
            expired: 0,
            refused: 0,
        }
    }

    /// The answer to `id`, if it was counted within the window before `now`.
    pub fn get(&self, id: &str, now: u64) -> Option<Change> {
        let a = self.answers.get(id)?;
        (now < a.at_ms.saturating_add(self.window_ms)).then(|| Change {
            moved: None,
            total: 0,
            uid: a.uid.to_string(),
            count: a.count,
            version: a.version,
        })
    }

    /// Forgets every id whose window has passed at `now`; returns how many.
    pub fn expire(&mut self, now: u64) -> u64 {
        let mut n = 0;
        while let Some(front) = self.order.front() {
            let at = self.answers.get(front).map_or(0, |a| a.at_ms);
            if now < at.saturating_add(self.window_ms) {
                break;
            }
            let id = self.order.pop_front().expect("front exists");
            self.answers.remove(&id);
            self.heap -= id_bytes(id.len());
            n += 1;
        }
        self.expired += n;
        // Give back tables a burst left mostly empty: the cap counts their capacity.
        if n > 0 && self.answers.len() < self.answers.capacity() / 4 {
            self.answers.shrink_to_fit();
            self.order.shrink_to_fit();
        }
        n
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.heap + map_bytes(self.answers.capacity()) + self.order.capacity() * QUEUE_SLOT
    }

    /// Bytes held once `more` more ids, whose allocations take `more_heap` bytes, are
    /// remembered: the tables' growth (a doubling) included.
    fn bytes_with(&self, more: usize, more_heap: usize) -> usize {
        let n = self.answers.len() + more;
        let map_cap = match self.answers.capacity() {
            c if n <= c => c,
            c => n.max(2 * c + 1),
        };
        let queue_cap = match self.order.capacity() {
            c if n <= c => c,
            c => n.max(2 * c).max(4),
        };
        self.heap + more_heap + map_bytes(map_cap) + queue_cap * QUEUE_SLOT
    }

    /// May a new id of `len` bytes be remembered at `now`, besides `pending` ids admitted but
    /// not yet remembered (being written)? Expired ids are forgotten first. `Err` tells when
    /// the oldest id expires (the earliest a retry can succeed); the refusal is counted.
    pub fn admit(&mut self, len: usize, pending: usize, now: u64) -> Result<(), Duration> {
        self.expire(now);
        // Pending ids are charged as the longest id: their lengths are not kept.
        let more_heap = pending * id_bytes(super::MAX_VOTE_ID) + id_bytes(len);
        if self.bytes_with(pending + 1, more_heap) <= self.cap {
            return Ok(());
        }
        self.refused += 1;
        let oldest = self
            .order
            .front()
            .and_then(|id| self.answers.get(id))
            .map_or(now, |a| a.at_ms);
        let wait = oldest.saturating_add(self.window_ms).saturating_sub(now);
        Err(Duration::from_millis(wait))
    }

    /// Remembers `id`'s answer, counted at `at_ms` (raised to the newest time given so far, so
    /// the queue stays in time order). Not checked against the cap: [`admit`](Self::admit)
    /// decides before the vote is counted, and recovery keeps what the store had.
    pub fn insert(&mut self, id: &str, change: &Change, at_ms: u64) {
        let at_ms = at_ms.max(self.newest_ms);
        self.newest_ms = at_ms;
        let uid = match self.uids.get(change.uid.as_str()) {
            Some(u) => Arc::clone(u),
            None => {
                let u: Arc<str> = Arc::from(change.uid.as_str());
                self.uids.insert(Arc::clone(&u));
                u
            }
        };
        let answer = Answer {
            uid,
            count: change.count,
            version: change.version,
            at_ms,
        };
        if let Some(old) = self.answers.get_mut(id) {
            // Only recovery can name an id twice (the same vote in a snapshot and a journal
            // record): keep the later answer, in its old place.
            *old = answer;
            return;
        }
        let key: Arc<str> = Arc::from(id);
        self.heap += id_bytes(key.len());
        self.order.push_back(Arc::clone(&key));
        self.answers.insert(key, answer);
    }

    /// Every remembered id, oldest first, for a checkpoint.
    pub fn recent(&self) -> Vec<RecentVote> {
        self.order
            .iter()
            .filter_map(|id| {
                self.answers.get(id).map(|a| RecentVote {
                    vote_id: id.to_string(),
                    uid: a.uid.to_string(),
                    count: a.count,
                    version: a.version,
                    at_ms: a.at_ms,
                })
            })
            .collect()
    }

    pub fn stats(&self) -> IdStats {
        IdStats {
            remembered: self.answers.len(),
            bytes: self.bytes(),
            expired: self.expired,
            refused: self.refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn change(version: u64) -> Change {
        Change {
            uid: "1".into(),
            count: version,
            version,
            ..Change::default()
        }
    }

    fn ids(window_ms: u64, cap: usize) -> VoteIds {
        VoteIds::new(Duration::from_millis(window_ms), cap)
    }

    #[test]
    fn an_id_is_answered_for_the_window_and_then_forgotten() {
        let mut w = ids(10 * MIN, usize::MAX);
        w.insert("a", &change(1), 1_000);
        w.insert("b", &change(2), 1_000 + MIN);
        assert_eq!(w.get("a", 1_000 + 10 * MIN - 1), Some(change(1)));
        // Past its window it is no answer, even before the sweep.
        assert_eq!(w.get("a", 1_000 + 10 * MIN), None);
        assert_eq!(w.expire(1_000 + 10 * MIN - 1), 0);
        assert_eq!(w.expire(1_000 + 10 * MIN), 1);
        assert_eq!(w.get("b", 1_000 + 10 * MIN), Some(change(2)));
        assert_eq!(w.expire(u64::MAX), 1);
        let s = w.stats();
        assert_eq!((s.remembered, s.expired, s.refused), (0, 2, 0));
    }

    #[test]
    fn a_clock_stepping_back_keeps_the_queue_in_time_order() {
        let mut w = ids(MIN, usize::MAX);
        w.insert("late", &change(1), 5 * MIN);
        w.insert("early", &change(2), MIN); // the clock stepped back
                                            // "early" is treated as counted at 5 min: it does not expire before "late".
        assert_eq!(w.expire(5 * MIN + MIN - 1), 0);
        assert_eq!(w.expire(6 * MIN), 2);
    }

    #[test]
    fn many_ids_within_the_window_are_all_remembered() {
        // The old window was 100,000 ids; a time window has no count.
        let mut w = ids(10 * MIN, usize::MAX);
        for v in 0..150_000 {
            w.insert(&format!("id{v}"), &change(v), 1_000 + v / 100);
        }
        assert_eq!(w.get("id0", 2_000), Some(change(0)));
        assert_eq!(w.stats().remembered, 150_000);
    }

    #[test]
    fn bytes_count_each_id_and_the_tables_capacity() {
        let mut w = ids(MIN, usize::MAX);
        assert_eq!(w.bytes(), 0);
        let uuid = "123e4567-e89b-12d3-a456-426614174000";
        assert_eq!(id_bytes(uuid.len()), 64);
        assert_eq!(id_bytes(1), 32);
        for v in 0..1000 {
            w.insert(&format!("{v:0>36}"), &change(v), 0);
        }
        let b = w.bytes();
        // At least the ids and a slot each in both tables; at most with the tables twice full.
        let per_full = 64 + MAP_SLOT * 8 / 7 + QUEUE_SLOT;
        assert!(b >= 1000 * per_full, "{b}");
        assert!(
            b <= 1000 * (64 + 2 * (MAP_SLOT * 8 / 7 + 1 + QUEUE_SLOT)),
            "{b}"
        );
        assert_eq!(w.stats().bytes, b);
        // Forgetting them gives the ids' bytes back, and the tables shrink.
        w.expire(MIN);
        assert!(w.bytes() < b / 4, "{}", w.bytes());
        assert_eq!(w.heap, 0);
    }

    #[test]
    fn the_cap_refuses_new_ids_while_every_id_is_young_and_admits_once_one_expires() {
        let cap = 64 * 1024;
        let mut w = ids(10 * MIN, cap);
        let mut admitted = 0;
        let now = 1_000_000;
        while w.admit(36, 0, now + admitted).is_ok() {
            w.insert(
                &format!("{admitted:0>36}"),
                &change(admitted),
                now + admitted,
            );
            admitted += 1;
            assert!(w.bytes() <= cap, "over the cap after {admitted}");
        }
        assert!(admitted > 100, "{admitted} ids in 64 KiB");
        // Refused: the oldest id (counted at `now`) frees room in 10 minutes.
        let t = now + admitted;
        let wait = w.admit(36, 0, t).unwrap_err();
        assert_eq!(wait, Duration::from_millis(now + 10 * MIN - t));
        assert_eq!(w.stats().refused, 2);
        // Nothing was forgotten: every id still answers.
        assert_eq!(w.get(&format!("{:0>36}", 0), t), Some(change(0)));
        // Ids being written count too.
        let mut w2 = ids(10 * MIN, cap);
        assert!(w2.admit(36, cap / 100, now).is_err());
        // Once the oldest expires there is room again.
        assert!(w.admit(36, 0, now + 10 * MIN).is_ok());
        assert_eq!(w.stats().expired, 1);
    }
}
