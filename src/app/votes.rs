//! The vote table: candidates, counts, and a version that grows by one per vote, behind one
//! `Mutex`, with a `Condvar` that wakes every waiter (long-polls, the WebSocket fan-out) when a
//! vote lands. It keeps a bounded history of recent votes so any client can catch up from the
//! version it last saw without the server keeping anything per client. No HTTP types here.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::journal::{Journal, RecentVote, Record, Recovery};
use super::presence::{Counts, Kind, Presence, Viewers};

/// How many recent votes are kept for catch-up. A client further behind gets a snapshot.
pub const HISTORY: usize = 4096;

/// How many recent vote ids are remembered: a retry with one of them gets the first answer
/// again and counts nothing. Older ids are forgotten (the window is bounded by count).
pub const VOTE_ID_WINDOW: usize = 100_000;

/// A vote id is 1–64 of `A-Z a-z 0-9 _ -` (a UUID fits).
pub fn valid_vote_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The answer to a vote: its effect, and whether it is the replay of an earlier answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Voted {
    pub change: Change,
    /// A retry of a vote id already counted: nothing changed now.
    pub replayed: bool,
}

/// One vote's effect: candidate `uid` has `count` votes as of `version`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub uid: String,
    pub count: u64,
    pub version: u64,
}

/// One candidate as shown to clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub uid: String,
    pub name: String,
    pub count: u64,
}

/// The whole tally at one version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub version: u64,
    pub epoch: String,
    pub candidates: Vec<Candidate>,
}

/// What a client that last saw some version needs to be current.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Catchup {
    /// Every vote after `from`, in order, each with the count it produced.
    Delta { from: u64, votes: Vec<Change> },
    /// The whole tally: the client was too far behind, from another epoch, or from the future.
    Snapshot(Snapshot),
}

/// Why a vote was refused; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VoteError {
    UnknownCandidate(String),
    /// The journal could not make the vote durable (disk full, I/O error): not counted.
    NotStored(String),
}

impl fmt::Display for VoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VoteError::UnknownCandidate(id) => write!(f, "unknown candidate '{id}'"),
            VoteError::NotStored(why) => write!(f, "vote not stored: {why}"),
        }
    }
}

/// A vote waiting for the journal: counted (and answered) only once it is on disk.
struct Pending {
    ticket: u64,
    candidate: usize,
    vote_id: Option<String>,
}

/// The durable side: the journal and the group-commit queue.
struct Durable {
    queue: Vec<Pending>,
    next_ticket: u64,
    /// Answers for tickets whose batch was committed (or failed), until their voter takes them.
    results: HashMap<u64, Result<Change, VoteError>>,
    /// Vote ids queued but not yet answered, with their ticket: a concurrent retry waits for
    /// the first instead of queueing a second vote.
    inflight: HashMap<String, u64>,
}

impl std::error::Error for VoteError {}

struct Tally {
    names: Vec<(String, String)>,
    counts: Vec<u64>,
    index: HashMap<String, usize>,
    version: u64,
    /// (candidate index, count after the vote, when it was counted) for versions
    /// `version - len + 1 ..= version`.
    history: VecDeque<(usize, u64, Instant)>,
    /// Viewers by transport; under the same lock so that one condvar wakes waiters for both.
    presence: Presence,
    /// Answers to recent votes by vote id, and their order (oldest first).
    answered: HashMap<String, Change>,
    answered_order: VecDeque<String>,
    /// Present when votes go through a journal.
    durable: Option<Durable>,
    /// Counts recovered for ids that are not candidates now: not shown, but carried into every
    /// checkpoint, so configuring the candidate again brings its votes back.
    retired: Vec<(String, u64)>,
}

impl Tally {
    /// Applies one vote for candidate `i`; returns its effect.
    fn apply(&mut self, i: usize, vote_id: Option<&str>) -> Change {
        self.counts[i] += 1;
        self.version += 1;
        let count = self.counts[i];
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back((i, count, Instant::now()));
        let change = Change {
            uid: self.names[i].0.clone(),
            count,
            version: self.version,
        };
        if let Some(id) = vote_id {
            if self.answered_order.len() == VOTE_ID_WINDOW {
                if let Some(old) = self.answered_order.pop_front() {
                    self.answered.remove(&old);
                }
            }
            self.answered.insert(id.to_string(), change.clone());
            self.answered_order.push_back(id.to_string());
        }
        change
    }
}

/// Why a wait ended early.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wake {
    /// The tally moved past the waiter's version (or its epoch is not ours).
    Votes(Catchup),
    /// The published presence is not the version the waiter had.
    Presence(Counts, u64),
}

pub struct Votes {
    tally: Mutex<Tally>,
    changed: Condvar,
    /// Wakes the committer when votes are queued (durable mode).
    queued: Condvar,
    epoch: String,
    /// The journal, used by the committer thread only (its own lock: I/O never holds the
    /// tally's).
    journal: Mutex<Option<Journal>>,
    /// Presence bookkeeping, in its own lock: only changed counts reach the tally's.
    viewers: Mutex<Viewers>,
}

/// Checkpoint (snapshot + fresh journal) after this many journal records, so start-up reads a
/// snapshot and a short journal however many votes there are.
pub const CHECKPOINT_EVERY: u64 = 100_000;

impl Votes {
    pub fn new(candidates: &[(String, String)]) -> Self {
        // The epoch names this run of the tally: a client holding a version from another run
        // (a memory-only restart) must not mistake it for one of ours.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Votes {
            tally: Mutex::new(Tally {
                names: candidates.to_vec(),
                counts: vec![0; candidates.len()],
                index: candidates
                    .iter()
                    .enumerate()
                    .map(|(i, (id, _))| (id.clone(), i))
                    .collect(),
                version: 0,
                history: VecDeque::with_capacity(HISTORY),
                presence: Presence::default(),
                answered: HashMap::new(),
                answered_order: VecDeque::new(),
                durable: None,
                retired: Vec::new(),
            }),
            changed: Condvar::new(),
            queued: Condvar::new(),
            epoch: format!("{:x}", nanos as u64),
            journal: Mutex::new(None),
            viewers: Mutex::new(Viewers::default()),
        }
    }

    /// A durable tally: rebuilt from the journal's recovery, every vote written to it (and
    /// fsynced) before it counts. Returns the report lines for the operator. The caller starts
    /// [`Votes::commit_loop`] on a thread of its own.
    pub fn durable(
        candidates: &[(String, String)],
        journal: Journal,
        recovery: Recovery,
    ) -> (Self, Vec<String>) {
        let mut v = Votes::new(candidates);
        let mut report = recovery.report;
        {
            let t = v.tally.get_mut().unwrap_or_else(PoisonError::into_inner);
            for (uid, count) in &recovery.counts {
                match t.index.get(uid) {
                    Some(&i) => t.counts[i] = *count,
                    // Kept on disk: configure the candidate again and its votes are back.
                    None => {
                        report.push(format!(
                            "journal: {count} vote(s) for '{uid}', not a candidate now: kept on disk, not shown"
                        ));
                        t.retired.push((uid.clone(), *count));
                    }
                }
            }
            t.version = recovery.version;
            let skip = recovery.recent.len().saturating_sub(VOTE_ID_WINDOW);
            for r in recovery.recent.iter().skip(skip) {
                t.answered.insert(
                    r.vote_id.clone(),
                    Change {
                        uid: r.uid.clone(),
                        count: r.count,
                        version: r.version,
                    },
                );
                t.answered_order.push_back(r.vote_id.clone());
            }
            t.durable = Some(Durable {
                queue: Vec::new(),
                next_ticket: 0,
                results: HashMap::new(),
                inflight: HashMap::new(),
            });
        }
        // The journal's epoch: a client's cursor from before a restart stays valid.
        v.epoch = recovery.epoch;
        *v.journal.get_mut().unwrap_or_else(PoisonError::into_inner) = Some(journal);
        (v, report)
    }

    /// The committer (durable mode): takes every queued vote, writes them with one write and
    /// one fsync, then counts them and wakes their voters. Votes that arrive meanwhile form the
    /// next batch (group commit). `observe` is told each commit's duration. Returns when the
    /// tally is not durable.
    pub fn commit_loop(&self, observe: &dyn Fn(Duration)) {
        loop {
            let (batch, records, base) = {
                let mut t = self.lock();
                loop {
                    match &t.durable {
                        None => return,
                        Some(d) if !d.queue.is_empty() => break,
                        Some(_) => {}
                    }
                    t = self.queued.wait(t).unwrap_or_else(PoisonError::into_inner);
                }
                let base = t.version;
                let batch = std::mem::take(&mut t.durable.as_mut().expect("checked above").queue);
                let records: Vec<Record> = batch
                    .iter()
                    .enumerate()
                    .map(|(k, p)| Record {
                        version: base + 1 + k as u64,
                        uid: t.names[p.candidate].0.clone(),
                        vote_id: p.vote_id.clone(),
                    })
                    .collect();
                (batch, records, base)
            };
            let started = Instant::now();
            let written = {
                let mut j = self.journal.lock().unwrap_or_else(PoisonError::into_inner);
                match j.as_mut() {
                    Some(j) => j.commit(&records),
                    None => Err(std::io::Error::other("no journal")),
                }
            };
            observe(started.elapsed());
            let checkpoint = {
                let mut t = self.lock();
                debug_assert_eq!(t.version, base, "only the committer counts in durable mode");
                let mut answers = Vec::with_capacity(batch.len());
                for p in &batch {
                    let answer = match &written {
                        Ok(()) => Ok(t.apply(p.candidate, p.vote_id.as_deref())),
                        Err(e) => Err(VoteError::NotStored(e.to_string())),
                    };
                    answers.push((p, answer));
                }
                let d = t.durable.as_mut().expect("durable mode");
                for (p, answer) in answers {
                    if let Some(id) = &p.vote_id {
                        d.inflight.remove(id);
                    }
                    d.results.insert(p.ticket, answer);
                }
                self.wants_checkpoint(&t)
            };
            self.changed.notify_all();
            if let Some((version, counts, recent)) = checkpoint {
                let mut j = self.journal.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(j) = j.as_mut() {
                    if let Err(e) = j.checkpoint(version, &counts, &recent) {
                        eprintln!("livevote: journal checkpoint failed: {e}");
                    }
                }
            }
        }
    }

    /// What a checkpoint needs, when one is due. Taken under the tally's lock, so it matches
    /// the journal exactly (only the committer thread counts or commits).
    #[allow(clippy::type_complexity)]
    fn wants_checkpoint(&self, t: &Tally) -> Option<(u64, Vec<(String, u64)>, Vec<RecentVote>)> {
        let due = self
            .journal
            .try_lock()
            .ok()
            .and_then(|j| {
                j.as_ref()
                    .map(|j| j.records_since_checkpoint() >= CHECKPOINT_EVERY)
            })
            .unwrap_or(false);
        if !due {
            return None;
        }
        let counts = t
            .names
            .iter()
            .zip(&t.counts)
            .map(|((uid, _), &c)| (uid.clone(), c))
            .chain(t.retired.iter().cloned())
            .collect();
        let recent = t
            .answered_order
            .iter()
            .filter_map(|id| {
                t.answered.get(id).map(|c| RecentVote {
                    vote_id: id.clone(),
                    uid: c.uid.clone(),
                    count: c.count,
                    version: c.version,
                })
            })
            .collect();
        Some((t.version, counts, recent))
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Every mutation below leaves the tally consistent before anything that could panic, so a
    /// panic elsewhere while the lock is held cannot leave it half-updated: recover the guard.
    fn lock(&self) -> MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one vote for `uid` and wakes every waiter.
    pub fn vote(&self, uid: &str) -> Result<Change, VoteError> {
        self.vote_once(uid, None).map(|v| v.change)
    }

    /// Counts one vote for `uid` unless `vote_id` was already counted (within
    /// [`VOTE_ID_WINDOW`]), in which case the first answer is given again and nothing changes.
    pub fn vote_once(&self, uid: &str, vote_id: Option<&str>) -> Result<Voted, VoteError> {
        let mut t = self.lock();
        // A retry of a vote id being written right now waits for that vote's answer.
        while vote_id.is_some_and(|id| {
            t.durable
                .as_ref()
                .is_some_and(|d| d.inflight.contains_key(id))
        }) {
            t = self.changed.wait(t).unwrap_or_else(PoisonError::into_inner);
        }
        if let Some(change) = vote_id.and_then(|id| t.answered.get(id)) {
            return Ok(Voted {
                change: change.clone(),
                replayed: true,
            });
        }
        let Some(&i) = t.index.get(uid) else {
            return Err(VoteError::UnknownCandidate(uid.to_string()));
        };
        let Some(d) = t.durable.as_mut() else {
            // In memory: counted at once.
            let change = t.apply(i, vote_id);
            drop(t);
            self.changed.notify_all();
            return Ok(Voted {
                change,
                replayed: false,
            });
        };
        // Durable: queue it for the committer and wait until it is on disk and counted.
        let ticket = d.next_ticket;
        d.next_ticket += 1;
        d.queue.push(Pending {
            ticket,
            candidate: i,
            vote_id: vote_id.map(str::to_string),
        });
        if let Some(id) = vote_id {
            d.inflight.insert(id.to_string(), ticket);
        }
        self.queued.notify_one();
        loop {
            if let Some(answer) = t.durable.as_mut().and_then(|d| d.results.remove(&ticket)) {
                return answer.map(|change| Voted {
                    change,
                    replayed: false,
                });
            }
            t = self.changed.wait(t).unwrap_or_else(PoisonError::into_inner);
        }
    }

    pub fn version(&self) -> u64 {
        self.lock().version
    }

    /// When the vote that made `version` was counted, while it is in the history.
    pub fn counted_at(&self, version: u64) -> Option<Instant> {
        let t = self.lock();
        let back = t.version.checked_sub(version)? as usize;
        let i = t.history.len().checked_sub(back + 1)?;
        t.history.get(i).map(|&(_, _, at)| at)
    }

    pub fn is_candidate(&self, uid: &str) -> bool {
        self.lock().index.contains_key(uid)
    }

    pub fn snapshot(&self) -> Snapshot {
        let t = self.lock();
        self.snapshot_of(&t)
    }

    fn snapshot_of(&self, t: &Tally) -> Snapshot {
        Snapshot {
            version: t.version,
            epoch: self.epoch.clone(),
            candidates: t
                .names
                .iter()
                .zip(&t.counts)
                .map(|((uid, name), &count)| Candidate {
                    uid: uid.clone(),
                    name: name.clone(),
                    count,
                })
                .collect(),
        }
    }

    /// What a client at version `since` of `epoch` (None: ours) needs. At most `max_delta`
    /// votes are listed; further behind gets a snapshot.
    pub fn catch_up(&self, since: u64, epoch: Option<&str>, max_delta: usize) -> Catchup {
        let t = self.lock();
        self.catch_up_locked(&t, since, epoch, max_delta)
    }

    fn catch_up_locked(
        &self,
        t: &Tally,
        since: u64,
        epoch: Option<&str>,
        max_delta: usize,
    ) -> Catchup {
        let behind = t.version.wrapping_sub(since);
        let same_epoch = epoch.is_none_or(|e| e == self.epoch);
        if !same_epoch
            || since > t.version
            || behind > max_delta as u64
            || behind > t.history.len() as u64
        {
            return Catchup::Snapshot(self.snapshot_of(t));
        }
        let skip = t.history.len() - behind as usize;
        let votes = t
            .history
            .iter()
            .skip(skip)
            .enumerate()
            .map(|(k, &(i, count, _))| Change {
                uid: t.names[i].0.clone(),
                count,
                version: since + 1 + k as u64,
            })
            .collect();
        Catchup::Delta { from: since, votes }
    }

    /// Waits until the tally is past `since` (or `epoch` is not ours) and returns the catch-up,
    /// or None after `timeout`.
    pub fn wait_past(
        &self,
        since: u64,
        epoch: Option<&str>,
        max_delta: usize,
        timeout: Duration,
    ) -> Option<Catchup> {
        match self.wait(since, epoch, None, max_delta, timeout) {
            Some(Wake::Votes(c)) => Some(c),
            _ => None,
        }
    }

    /// Like [`wait_past`](Votes::wait_past), and also ends when the published presence
    /// version is not `presence_seen` (when given). Votes come first.
    pub fn wait(
        &self,
        since: u64,
        epoch: Option<&str>,
        presence_seen: Option<u64>,
        max_delta: usize,
        timeout: Duration,
    ) -> Option<Wake> {
        let deadline = Instant::now() + timeout;
        let mut t = self.lock();
        loop {
            let foreign = epoch.is_some_and(|e| e != self.epoch);
            if t.version != since || foreign {
                return Some(Wake::Votes(
                    self.catch_up_locked(&t, since, epoch, max_delta),
                ));
            }
            let (counts, pv) = t.presence.published();
            if presence_seen.is_some_and(|seen| seen != pv) {
                return Some(Wake::Presence(counts, pv));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            t = self
                .changed
                .wait_timeout(t, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// A connected WebSocket or SSE viewer; counted until dropped.
pub struct Viewer<'a> {
    votes: &'a Votes,
    kind: Kind,
}

impl Drop for Viewer<'_> {
    fn drop(&mut self) {
        self.votes.viewers().connected(self.kind, false);
    }
}

/// Presence: the bookkeeping under its own lock; the tally's lock is taken only to publish
/// changed counts (O(1)) and wake the waiters.
impl Votes {
    fn viewers(&self) -> MutexGuard<'_, Viewers> {
        self.viewers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A WebSocket or SSE viewer joined; it leaves when the guard is dropped. A page that
    /// names itself (`viewer=ID`, the id it polled with before moving up the ladder) stops
    /// counting as a poller at once, not 30 s later.
    pub fn viewer(&self, kind: Kind, id: Option<&str>) -> Viewer<'_> {
        let mut v = self.viewers();
        v.connected(kind, true);
        if let Some(id) = id {
            v.forget(id);
        }
        Viewer { votes: self, kind }
    }

    /// A long-polling or polling viewer made a request from `ip`; at most `max_per_ip` ids
    /// count per address (0: no cap). Returns whether this one counts.
    pub fn viewer_seen(&self, id: &str, k: Kind, ip: IpAddr, max_per_ip: usize) -> bool {
        self.viewers().seen(id, k, ip, max_per_ip, Instant::now())
    }

    /// The published presence and its version.
    pub fn presence(&self) -> (Counts, u64) {
        self.lock().presence.published()
    }

    /// Publishes presence if it changed (at a bounded rate) and wakes the waiters. The viewers'
    /// lock is held across the publication, so two publishers cannot publish out of order
    /// (lock order: viewers, then tally; nothing takes them the other way round).
    pub fn publish_presence(&self) -> bool {
        let mut viewers = self.viewers();
        let Some(counts) = viewers.publish(Instant::now()) else {
            return false;
        };
        let published = self.lock().presence.set(counts);
        drop(viewers);
        if published {
            self.changed.notify_all();
        }
        published
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    fn votes() -> Votes {
        Votes::new(&[("1".into(), "a".into()), ("2".into(), "b".into())])
    }

    #[test]
    fn votes_count_and_version_grows() {
        let v = votes();
        assert_eq!(
            v.vote("1").unwrap(),
            Change {
                uid: "1".into(),
                count: 1,
                version: 1
            }
        );
        assert_eq!(v.vote("2").unwrap().version, 2);
        assert_eq!(v.vote("9"), Err(VoteError::UnknownCandidate("9".into())));
        assert_eq!(v.version(), 2);
        let s = v.snapshot();
        assert_eq!(
            s.candidates.iter().map(|c| c.count).collect::<Vec<_>>(),
            [1, 1]
        );
    }

    #[test]
    fn catch_up_lists_each_missed_vote() {
        let v = votes();
        for id in ["1", "2", "1"] {
            v.vote(id).unwrap();
        }
        match v.catch_up(1, None, 100) {
            Catchup::Delta { from, votes } => {
                assert_eq!(from, 1);
                assert_eq!(
                    votes,
                    vec![
                        Change {
                            uid: "2".into(),
                            count: 1,
                            version: 2
                        },
                        Change {
                            uid: "1".into(),
                            count: 2,
                            version: 3
                        },
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            v.catch_up(3, None, 100),
            Catchup::Delta {
                from: 3,
                votes: vec![]
            }
        );
        assert!(matches!(v.catch_up(0, None, 2), Catchup::Snapshot(_)));
        assert!(matches!(v.catch_up(9, None, 100), Catchup::Snapshot(_)));
        assert!(matches!(
            v.catch_up(1, Some("other"), 100),
            Catchup::Snapshot(_)
        ));
        let epoch = v.epoch().to_string();
        assert!(matches!(
            v.catch_up(1, Some(&epoch), 100),
            Catchup::Delta { .. }
        ));
    }

    #[test]
    fn a_panic_while_the_lock_is_held_does_not_poison_the_tally() {
        let v = Arc::new(votes());
        v.vote("1").unwrap();
        let w = Arc::clone(&v);
        let crashed = thread::spawn(move || {
            let _held = w.lock();
            panic!("a connection thread dies holding the lock");
        })
        .join();
        assert!(crashed.is_err());
        assert!(v.tally.is_poisoned());
        // Every operation still works, on the same consistent tally.
        assert_eq!(v.vote("1").unwrap().count, 2);
        assert_eq!(v.snapshot().version, 2);
        assert!(v.wait_past(0, None, 10, Duration::from_millis(1)).is_some());
    }

    #[test]
    fn a_vote_id_counts_once() {
        let v = votes();
        let first = v.vote_once("1", Some("abc")).unwrap();
        assert!(!first.replayed);
        let again = v.vote_once("1", Some("abc")).unwrap();
        assert!(again.replayed);
        assert_eq!(again.change, first.change);
        // The id names the vote, whatever the retry says.
        assert_eq!(v.vote_once("2", Some("abc")).unwrap().change, first.change);
        assert_eq!(v.version(), 1);
        assert!(!v.vote_once("1", Some("other")).unwrap().replayed);
        assert_eq!(v.version(), 2);
        assert!(valid_vote_id("123e4567-e89b-12d3-a456-426614174000"));
        assert!(!valid_vote_id(""));
        assert!(!valid_vote_id("a b"));
    }

    #[test]
    fn the_vote_id_window_is_bounded() {
        let v = votes();
        for i in 0..VOTE_ID_WINDOW + 1 {
            v.vote_once("1", Some(&format!("id{i}"))).unwrap();
        }
        // The oldest id was forgotten; the newest is remembered.
        assert!(!v.vote_once("1", Some("id0")).unwrap().replayed);
        assert!(
            v.vote_once("1", Some(&format!("id{VOTE_ID_WINDOW}")))
                .unwrap()
                .replayed
        );
        assert_eq!(v.lock().answered.len(), VOTE_ID_WINDOW);
    }

    #[test]
    fn history_is_bounded() {
        let v = votes();
        for _ in 0..HISTORY + 10 {
            v.vote("1").unwrap();
        }
        assert!(matches!(
            v.catch_up(5, None, usize::MAX),
            Catchup::Snapshot(_)
        ));
        match v.catch_up(10, None, usize::MAX) {
            Catchup::Delta { votes, .. } => assert_eq!(votes.len(), HISTORY),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn waiters_wake_on_a_vote_and_time_out_without_one() {
        let v = Arc::new(votes());
        assert_eq!(v.wait_past(0, None, 10, Duration::from_millis(20)), None);
        let w = Arc::clone(&v);
        let waiter = thread::spawn(move || w.wait_past(0, None, 10, Duration::from_secs(10)));
        thread::sleep(Duration::from_millis(20));
        v.vote("2").unwrap();
        match waiter.join().unwrap() {
            Some(Catchup::Delta { votes, .. }) => assert_eq!(votes[0].uid, "2"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn concurrent_votes_are_each_counted_once() {
        let v = Arc::new(votes());
        let threads: Vec<_> = (0..8)
            .map(|k| {
                let v = Arc::clone(&v);
                thread::spawn(move || {
                    for _ in 0..1000 {
                        v.vote(if k % 2 == 0 { "1" } else { "2" }).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = v.snapshot();
        assert_eq!(s.version, 8000);
        assert_eq!(s.candidates[0].count + s.candidates[1].count, 8000);
    }
}
