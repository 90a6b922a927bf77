//! The vote table: candidates, counts, and a version that grows by one per vote, behind one
//! `Mutex`, with a `Condvar` that wakes every waiter (long-polls, the WebSocket fan-out) when a
//! vote lands. It keeps a bounded history of recent votes so any client can catch up from the
//! version it last saw without the server keeping anything per client. No HTTP types here.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How many recent votes are kept for catch-up. A client further behind gets a snapshot.
pub const HISTORY: usize = 4096;

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
}

impl fmt::Display for VoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VoteError::UnknownCandidate(id) => write!(f, "unknown candidate '{id}'"),
        }
    }
}

impl std::error::Error for VoteError {}

struct Tally {
    names: Vec<(String, String)>,
    counts: Vec<u64>,
    index: HashMap<String, usize>,
    version: u64,
    /// (candidate index, count after the vote) for versions `version - len + 1 ..= version`.
    history: VecDeque<(usize, u64)>,
}

pub struct Votes {
    tally: Mutex<Tally>,
    changed: Condvar,
    epoch: String,
}

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
            }),
            changed: Condvar::new(),
            epoch: format!("{:x}", nanos as u64),
        }
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
        let change = {
            let mut t = self.lock();
            let Some(&i) = t.index.get(uid) else {
                return Err(VoteError::UnknownCandidate(uid.to_string()));
            };
            t.counts[i] += 1;
            t.version += 1;
            let count = t.counts[i];
            if t.history.len() == HISTORY {
                t.history.pop_front();
            }
            t.history.push_back((i, count));
            Change {
                uid: uid.to_string(),
                count,
                version: t.version,
            }
        };
        self.changed.notify_all();
        Ok(change)
    }

    pub fn version(&self) -> u64 {
        self.lock().version
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
            .map(|(k, &(i, count))| Change {
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
        let deadline = Instant::now() + timeout;
        let mut t = self.lock();
        loop {
            let foreign = epoch.is_some_and(|e| e != self.epoch);
            if t.version != since || foreign {
                return Some(self.catch_up_locked(&t, since, epoch, max_delta));
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
