//! The vote table: candidates, counts, and a version that grows by one per vote, behind one
//! `Mutex`, with a `Condvar` that wakes every waiter (long-polls, the WebSocket fan-out) when a
//! vote lands. It keeps a bounded history of recent votes so any client can catch up from the
//! version it last saw without the server keeping anything per client, and the answers to
//! recent votes by vote id (`ids`: exactly once within `--vote-id-window`). Where votes are kept
//! is a [`Store`] behind the group commit (`commit`); without one (memory) a vote counts at
//! once. No HTTP types here.

mod commit;
mod ids;
mod wakers;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::presence::{Counts, Kind, Presence, Viewers};
use super::store::{now_ms, Mark, Standing, Store, Streamed};
use commit::Durable;
pub use ids::IdStats;
use ids::VoteIds;
use wakers::{Ring, Wakers};

/// How many recent votes are kept for catch-up. A client further behind gets a snapshot.
pub const HISTORY: usize = 4096;

/// Longest vote id (a UUID, 36, fits): `ids::VOTE`.
pub const MAX_VOTE_ID: usize = crate::ids::VOTE.max;

/// How long a vote id is remembered by default (`--vote-id-window`): a retry within it gets the
/// first answer again and counts nothing.
pub const DEFAULT_VOTE_ID_WINDOW: Duration = Duration::from_secs(600);
/// Default memory cap of the remembered vote ids (`--vote-id-memory`), counted as the `ids`
/// module's docs say (about 145–230 bytes per UUID).
pub const DEFAULT_VOTE_ID_MEMORY: usize = 64 << 20;
/// How long a vote waits for its store by default (`--vote-timeout`) before it is answered
/// "outcome unknown".
pub const DEFAULT_VOTE_TIMEOUT: Duration = Duration::from_secs(5);
/// With a shared store, how long a client's cursor that is ahead of this instance's follower
/// copy (taken on a faster instance) waits for the follower before it is answered as a cursor
/// from the future (a snapshot). The follower is normally well under a millisecond behind.
pub const AHEAD_WAIT: Duration = Duration::from_secs(2);

/// How the vote table keeps its promises; each field's default is the constant above.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub vote_id_window: Duration,
    pub vote_id_memory: usize,
    pub vote_timeout: Duration,
    /// The poll's voter rules (default: every click counts).
    pub rules: Rules,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            vote_id_window: DEFAULT_VOTE_ID_WINDOW,
            vote_id_memory: DEFAULT_VOTE_ID_MEMORY,
            vote_timeout: DEFAULT_VOTE_TIMEOUT,
            rules: Rules::default(),
        }
    }
}

/// A vote id is 1–64 of `A-Z a-z 0-9 _ -` (a UUID fits).
pub fn valid_vote_id(id: &str) -> bool {
    crate::ids::VOTE.accepts(id)
}

/// The answer to a vote: its effect, and whether it is the replay of an earlier answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Voted {
    pub change: Change,
    /// A retry of a vote id already counted: nothing changed now.
    pub replayed: bool,
}

/// One vote's effect: candidate `uid` has `count` votes as of `version`; a voter who moved
/// their vote (`change` mode) also took one from `moved.0`, which has `moved.1` now. A poll's
/// state mark has an empty `uid` (it is a version of its own; clients get a snapshot).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    pub uid: String,
    pub count: u64,
    pub version: u64,
    pub moved: Option<(String, u64)>,
    /// Every candidate's votes together after it (what a viewer who may not see the counts
    /// is told). 0 where unknown (a replayed answer).
    pub total: u64,
}

/// Who may vote how often in a poll.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Every click counts (the seed's rule).
    #[default]
    Unlimited,
    /// One vote per voter; a second one is refused.
    Once,
    /// One vote per voter, who may move it: the old option −1 and the new +1 in one version.
    Change,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Unlimited, Mode::Once, Mode::Change];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Unlimited => "unlimited",
            Mode::Once => "once",
            Mode::Change => "change",
        }
    }

    /// Whether votes are counted per voter.
    pub fn per_voter(self) -> bool {
        self != Mode::Unlimited
    }
}

/// A poll's voter rules and state, given to its vote table at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    pub mode: Mode,
    /// Most voters remembered (`once`, `change`); a new voter beyond it is refused.
    pub max_voters: usize,
    /// In `unlimited` mode, remember who voted (for `after_vote` results); a voter beyond
    /// `max_voters` still counts, unremembered.
    pub track: bool,
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
    /// The poll is closed.
    pub closed: bool,
}

impl Snapshot {
    /// Every candidate's votes together.
    pub fn total(&self) -> u64 {
        self.candidates.iter().map(|c| c.count).sum()
    }
}

/// What a client that last saw some version needs to be current.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Catchup {
    /// Every vote after `from`, in order, each with the count it produced.
    Delta { from: u64, votes: Vec<Change> },
    /// The whole tally: the client was too far behind, from another epoch, or from the future.
    Snapshot(Snapshot),
}

/// Why a vote got no answer with a count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VoteError {
    /// Nothing changed.
    UnknownCandidate(String),
    /// The store could not keep the vote (disk full, I/O error, or it did not take the vote
    /// within `--vote-timeout`): not counted.
    NotStored(String),
    /// The store did not finish within `--vote-timeout`: the vote may or may not count. Its
    /// vote id remembers the real outcome once the store finishes, so a retry with the same id
    /// is answered with it (and counts at most once).
    OutcomeUnknown,
    /// Remembering one more vote id would pass `--vote-id-memory` while every remembered id is
    /// still inside its window: not counted, and the id is not remembered. Room comes back
    /// after `retry_after`.
    VoteIdsFull { retry_after: Duration },
    /// The poll is closed: nothing changed.
    Closed,
    /// `once`: this voter has voted (for `uid`), or a vote of theirs is being stored.
    AlreadyVoted { uid: Option<String> },
    /// `once`/`change`: the poll remembers as many voters as it may (`--max-voters`).
    VotersFull,
    /// A one-vote-per-voter poll got a vote with no voter.
    NoVoter,
    /// The poll was deleted while this vote was on its way: there is no poll to count it in.
    Deleted,
}

impl VoteError {
    /// When a client may usefully try again, for the errors that are worth a retry.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            VoteError::UnknownCandidate(_)
            | VoteError::Closed
            | VoteError::AlreadyVoted { .. }
            | VoteError::VotersFull
            | VoteError::NoVoter
            | VoteError::Deleted => None,
            VoteError::NotStored(_) | VoteError::OutcomeUnknown => Some(Duration::from_secs(1)),
            VoteError::VoteIdsFull { retry_after } => Some(*retry_after),
        }
    }
}

impl fmt::Display for VoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VoteError::UnknownCandidate(id) => write!(f, "unknown candidate '{id}'"),
            VoteError::NotStored(why) => write!(f, "vote not stored: {why}"),
            VoteError::OutcomeUnknown => f.write_str(
                "the store did not answer in time: the vote may or may not count; retry with \
                 the same vote_id to learn which",
            ),
            VoteError::VoteIdsFull { .. } => f.write_str(
                "too many recent vote ids to remember another: not counted; retry later, or \
                 vote without a vote_id",
            ),
            VoteError::Closed => f.write_str("poll closed"),
            VoteError::AlreadyVoted { .. } => f.write_str("already voted"),
            VoteError::VotersFull => f.write_str("too many voters"),
            VoteError::NoVoter => f.write_str("this poll counts one vote per voter: no voter"),
            VoteError::Deleted => f.write_str("no such poll"),
        }
    }
}

impl std::error::Error for VoteError {}

struct Tally {
    /// Names this history of votes (see [`Snapshot::epoch`]); a shared store may start a new
    /// one while we run (Redis restarted empty).
    epoch: String,
    /// Votes are numbered by a store several instances share: the committer only answers
    /// voters, the follower (`follow_*`) counts every instance's votes in the store's order.
    shared: bool,
    /// The shared store is unreachable: votes are refused, the tally shown is the last known.
    degraded: bool,
    names: Vec<(String, String)>,
    counts: Vec<u64>,
    index: HashMap<String, usize>,
    version: u64,
    /// What each of the versions `version - len + 1 ..= version` did.
    history: VecDeque<Step>,
    /// The poll's voter rules.
    rules: Rules,
    /// Each voter's candidate (`once`, `change`).
    voters: HashMap<String, usize>,
    /// The poll is closed (a [`Mark::Closed`]): votes are refused.
    poll_closed: bool,
    /// Viewers by transport; under the same lock so that one condvar wakes waiters for both.
    presence: Presence,
    /// Answers to recent votes by vote id.
    ids: VoteIds,
    /// Present when votes go through a store.
    durable: Option<Durable>,
    /// Counts recovered for ids that are not candidates now: not shown, but carried into every
    /// checkpoint, so configuring the candidate again brings its votes back.
    retired: Vec<(String, u64)>,
    /// Threads waiting on `changed` now: a change with none wakes nobody (std's `Condvar`
    /// makes a system call for every notification, waiters or not).
    watchers: usize,
    /// Shut down: no more votes are taken, and the committer stops once its queue is empty
    /// ([`Votes::close`]).
    closed: bool,
    /// Closed because the poll was deleted ([`Votes::delete`]), not for a shutdown.
    deleted: bool,
    /// The last snapshot handed out ([`Votes::shared_snapshot`]): a page or poll answer at an
    /// unchanged version takes it without copying every candidate's id and name again.
    /// Valid while version, epoch and state match; dropped when the candidates are replaced.
    snap: Option<Arc<Snapshot>>,
}

/// What one version did: candidate `i` got to `count` (and `from`, when a voter moved their
/// vote, lost one), or, with `i == MARK`, the poll's state changed.
#[derive(Clone, Copy, Debug)]
struct Step {
    i: usize,
    count: u64,
    from: Option<(usize, u64)>,
    total: u64,
    at: Instant,
}

/// [`Step::i`] of a state mark: a client whose catch-up crosses one gets a snapshot.
const MARK: usize = usize::MAX;

/// What a queued or applied change does, by candidate index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Act {
    /// +1 for the candidate.
    Vote(usize),
    /// +1 for the candidate by `voter`, −1 for `from` (their earlier vote) when given.
    Ballot {
        i: usize,
        voter: String,
        from: Option<usize>,
    },
    Mark(Mark),
}

impl Tally {
    /// Why a closed tally takes nothing more.
    fn closed_error(&self) -> VoteError {
        match self.deleted {
            true => VoteError::Deleted,
            false => VoteError::NotStored("the server is shutting down".to_string()),
        }
    }

    /// Applies one change, counted at `at_ms`; returns its effect.
    fn apply_act(&mut self, act: &Act, vote_id: Option<&str>, at_ms: u64) -> Change {
        self.version += 1;
        let (i, from) = match act {
            Act::Vote(i) => (*i, None),
            Act::Ballot { i, voter, from } => {
                let from = from.map(|f| {
                    self.counts[f] = self.counts[f].saturating_sub(1);
                    (f, self.counts[f])
                });
                self.voters.insert(voter.clone(), *i);
                (*i, from)
            }
            Act::Mark(m) => {
                match m {
                    Mark::Closed => self.poll_closed = true,
                    Mark::Opened => self.poll_closed = false,
                    Mark::Reset => {
                        self.counts.iter_mut().for_each(|c| *c = 0);
                        self.retired.clear();
                        self.voters.clear();
                    }
                }
                let total = self.counts.iter().sum();
                self.push_step(Step {
                    i: MARK,
                    count: 0,
                    from: None,
                    total,
                    at: Instant::now(),
                });
                return Change {
                    version: self.version,
                    ..Change::default()
                };
            }
        };
        self.counts[i] += 1;
        let count = self.counts[i];
        let total = self.counts.iter().sum();
        self.push_step(Step {
            i,
            count,
            from,
            total,
            at: Instant::now(),
        });
        let change = self.change_of(i, count, from, self.version, total);
        if let Some(id) = vote_id {
            self.ids.insert(id, &change, at_ms);
        }
        change
    }

    fn push_step(&mut self, step: Step) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(step);
    }

    fn change_of(
        &self,
        i: usize,
        count: u64,
        from: Option<(usize, u64)>,
        version: u64,
        total: u64,
    ) -> Change {
        Change {
            uid: self.names[i].0.clone(),
            count,
            version,
            moved: from.map(|(f, c)| (self.names[f].0.clone(), c)),
            total,
        }
    }

    /// What `rules` make of a vote by `voter` for candidate `i`: the act to apply, or why not.
    /// `Ok(None)`: a `change` voter voting again for the candidate they stand on (nothing
    /// changes).
    fn ballot(&self, i: usize, voter: Option<&str>) -> Result<Option<Act>, VoteError> {
        if !self.rules.mode.per_voter() {
            let track = voter.filter(|v| {
                self.rules.track
                    && (self.voters.contains_key(*v) || self.voters.len() < self.rules.max_voters)
            });
            return Ok(Some(match track {
                Some(v) => Act::Ballot {
                    i,
                    voter: v.to_string(),
                    from: None,
                },
                None => Act::Vote(i),
            }));
        }
        let voter = voter.ok_or(VoteError::NoVoter)?;
        if self.shared {
            // The shared store decides by its own voters (this copy may be a moment behind a
            // reset or a vote on another instance), in the same script that counts it.
            return Ok(Some(Act::Ballot {
                i,
                voter: voter.to_string(),
                from: None,
            }));
        }
        let standing = self.voters.get(voter).copied();
        match (self.rules.mode, standing) {
            (Mode::Once, Some(s)) => Err(VoteError::AlreadyVoted {
                uid: Some(self.names[s].0.clone()),
            }),
            (_, Some(s)) if s == i => Ok(None),
            (_, None) if self.voters.len() >= self.rules.max_voters => Err(VoteError::VotersFull),
            (_, from) => Ok(Some(Act::Ballot {
                i,
                voter: voter.to_string(),
                from,
            })),
        }
    }

    /// The voters, for a checkpoint.
    fn standing(&self) -> Standing {
        Standing {
            voters: self
                .voters
                .iter()
                .map(|(v, &i)| (v.clone(), self.names[i].0.clone()))
                .collect(),
            closed: self.poll_closed,
        }
    }
}

/// Where the tally stands: what a waiter compares its cursor with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub version: u64,
    pub epoch: String,
    /// The published presence's version.
    pub presence: u64,
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
    /// Wakes voters waiting for the committer's answers (durable mode): a voter is woken
    /// when its answer is given, not by every vote, presence change or other voter's answer.
    answered: Wakers,
    /// The store, used by the committer thread only (its own lock: I/O never holds the
    /// tally's).
    store: Mutex<Option<Box<dyn Store>>>,
    /// How long a vote waits for the store (`--vote-timeout`).
    timeout: Duration,
    /// Presence bookkeeping, in its own lock: only changed counts reach the tally's.
    viewers: Mutex<Viewers>,
    /// Shutting down: every wait ends at once ([`Votes::end_streams`]), and live streams end.
    /// Outside the lock, so a stream checks it for free.
    ending: AtomicBool,
    /// The store is closed ([`Votes::close`]): the Redis follower and presence threads end.
    stopped: AtomicBool,
}

impl Votes {
    /// A tally in memory with the default [`Settings`].
    pub fn new(candidates: &[(String, String)]) -> Self {
        Votes::with_settings(candidates, &Settings::default())
    }

    /// A tally in memory.
    pub fn with_settings(candidates: &[(String, String)], settings: &Settings) -> Self {
        // The epoch names this run of the tally: a client holding a version from another run
        // (a memory-only restart) must not mistake it for one of ours.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Votes {
            tally: Mutex::new(Tally {
                epoch: format!("{:x}", nanos as u64),
                shared: false,
                degraded: false,
                names: candidates.to_vec(),
                counts: vec![0; candidates.len()],
                index: candidates
                    .iter()
                    .enumerate()
                    .map(|(i, (id, _))| (id.clone(), i))
                    .collect(),
                version: 0,
                // Grown as votes come: a thousand quiet polls hold next to nothing.
                history: VecDeque::new(),
                rules: settings.rules.clone(),
                voters: HashMap::new(),
                poll_closed: false,
                presence: Presence::default(),
                ids: VoteIds::new(settings.vote_id_window, settings.vote_id_memory),
                durable: None,
                retired: Vec::new(),
                watchers: 0,
                closed: false,
                deleted: false,
                snap: None,
            }),
            changed: Condvar::new(),
            queued: Condvar::new(),
            answered: Wakers::new(),
            store: Mutex::new(None),
            timeout: settings.vote_timeout,
            viewers: Mutex::new(Viewers::default()),
            ending: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        }
    }

    /// The epoch now (a shared store can start a new one while we run).
    pub fn epoch(&self) -> String {
        self.lock().epoch.clone()
    }

    /// Every mutation below leaves the tally consistent before anything that could panic, so a
    /// panic elsewhere while the lock is held cannot leave it half-updated: recover the guard.
    fn lock(&self) -> MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a change until `deadline`; false (at once) once it has passed.
    fn wait_until<'a>(
        &self,
        mut t: MutexGuard<'a, Tally>,
        deadline: Instant,
    ) -> (MutexGuard<'a, Tally>, bool) {
        t.watchers += 1;
        let (mut t, in_time) = Self::wait_on(&self.changed, t, deadline);
        t.watchers -= 1;
        (t, in_time)
    }

    /// Wakes the threads waiting for a change, if any were when the lock was let go
    /// (`watched`, read under it: a thread that starts waiting later sees the change itself).
    fn changed(&self, watched: bool) {
        if watched {
            self.changed.notify_all();
        }
    }

    /// Waits on `cv` until `deadline`; false (at once) once it has passed.
    fn wait_on<'a>(
        cv: &Condvar,
        t: MutexGuard<'a, Tally>,
        deadline: Instant,
    ) -> (MutexGuard<'a, Tally>, bool) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (t, false);
        }
        let t = cv
            .wait_timeout(t, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        (t, true)
    }

    /// Counts one vote for `uid` and wakes every waiter.
    pub fn vote(&self, uid: &str) -> Result<Change, VoteError> {
        self.vote_once(uid, None).map(|v| v.change)
    }

    /// Counts one vote for `uid` unless `vote_id` was already counted within the window, in
    /// which case the first answer is given again and nothing changes. With a store, waits at
    /// most `--vote-timeout` for it (see [`VoteError::OutcomeUnknown`]).
    pub fn vote_once(&self, uid: &str, vote_id: Option<&str>) -> Result<Voted, VoteError> {
        self.cast(uid, vote_id, None)
    }

    /// [`vote_once`](Votes::vote_once) by `voter`, under the poll's [`Rules`]: in `once` and
    /// `change` polls a voter's votes are decided one at a time (one being stored makes the
    /// next wait for its outcome), so two tabs voting at the same moment count once. A vote id
    /// counted before gets its first answer whatever the rules would say now.
    pub fn cast(
        &self,
        uid: &str,
        vote_id: Option<&str>,
        voter: Option<&str>,
    ) -> Result<Voted, VoteError> {
        let deadline = Instant::now() + self.timeout;
        let mut t = self.lock();
        if t.closed {
            return Err(t.closed_error());
        }
        // A retry of a vote id being written right now waits for that vote's outcome, as long
        // as the first would have.
        while let Some(first) = vote_id.and_then(|id| t.durable.as_ref()?.inflight_ticket(id)) {
            let (g, in_time) = Self::wait_on(self.answered.of(first), t, deadline);
            t = g;
            if !in_time {
                return Err(VoteError::OutcomeUnknown);
            }
        }
        let now = now_ms();
        // A shared store remembers vote ids itself, for every instance.
        let local_ids = !t.shared;
        if let Some(change) = vote_id
            .filter(|_| local_ids)
            .and_then(|id| t.ids.get(id, now))
        {
            return Ok(Voted {
                change,
                replayed: true,
            });
        }
        let Some(&i) = t.index.get(uid) else {
            return Err(VoteError::UnknownCandidate(uid.to_string()));
        };
        // A shared store knows whether the poll is closed now (this copy may be a moment
        // behind an open on another instance): its script refuses a closed poll's votes.
        if t.poll_closed && !t.shared {
            return Err(VoteError::Closed);
        }
        // This voter's earlier vote, still being stored, decides what this one may do.
        while let Some(first) = voter
            .filter(|_| t.rules.mode.per_voter())
            .and_then(|v| t.durable.as_ref()?.inflight_voter(v))
        {
            let (g, in_time) = Self::wait_on(self.answered.of(first), t, deadline);
            t = g;
            if !in_time {
                return Err(VoteError::OutcomeUnknown);
            }
        }
        let Some(act) = t.ballot(i, voter)? else {
            // Already standing on this candidate: nothing changes.
            let (version, total) = (t.version, t.counts.iter().sum());
            return Ok(Voted {
                change: t.change_of(i, t.counts[i], None, version, total),
                replayed: true,
            });
        };
        if let Some(id) = vote_id.filter(|_| local_ids) {
            let pending = t.durable.as_ref().map_or(0, Durable::inflight);
            t.ids
                .admit(id.len(), pending, now)
                .map_err(|retry_after| VoteError::VoteIdsFull { retry_after })?;
        }
        self.submit(t, act, vote_id, now, deadline)
    }

    /// Changes the poll's state (close, open, reset) as a version of its own, through the
    /// store like a vote; returns that version.
    pub fn mark(&self, mark: Mark) -> Result<u64, VoteError> {
        let deadline = Instant::now() + self.timeout;
        let t = self.lock();
        if t.closed {
            return Err(t.closed_error());
        }
        self.submit(t, Act::Mark(mark), None, now_ms(), deadline)
            .map(|v| v.change.version)
    }

    /// Applies `act` at once (memory), or queues it for the committer and waits until it is
    /// stored and counted.
    fn submit(
        &self,
        mut t: MutexGuard<'_, Tally>,
        act: Act,
        vote_id: Option<&str>,
        now: u64,
        deadline: Instant,
    ) -> Result<Voted, VoteError> {
        let Some(d) = t.durable.as_mut() else {
            // In memory: counted at once.
            let change = t.apply_act(&act, vote_id, now);
            let watched = t.watchers > 0;
            drop(t);
            self.changed(watched);
            return Ok(Voted {
                change,
                replayed: false,
            });
        };
        let ticket = d.enqueue(act, vote_id);
        self.queued.notify_one();
        loop {
            let d = t.durable.as_mut().expect("durable mode");
            if let Some(answer) = d.take(ticket) {
                return answer;
            }
            // Woken only when answers are given, not by every change of the tally.
            let (g, in_time) = Self::wait_on(self.answered.of(ticket), t, deadline);
            t = g;
            if !in_time {
                let d = t.durable.as_mut().expect("durable mode");
                let answer = d.give_up(ticket, vote_id);
                drop(t);
                // A retry of the same id may be waiting for this one.
                let mut ring = Ring::default();
                ring.add(ticket);
                self.answered.wake(ring);
                return answer;
            }
        }
    }

    /// Whether the poll is closed.
    pub fn poll_closed(&self) -> bool {
        self.lock().poll_closed
    }

    /// The candidate `voter` stands on (`once`, `change`), if they have voted.
    pub fn voted_for(&self, voter: &str) -> Option<String> {
        let t = self.lock();
        t.voters.get(voter).map(|&i| t.names[i].0.clone())
    }

    /// Voters remembered (`once`, `change`), for the metrics.
    pub fn voters(&self) -> usize {
        self.lock().voters.len()
    }

    /// The remembered vote ids, for the metrics.
    pub fn id_stats(&self) -> IdStats {
        self.lock().ids.stats()
    }

    pub fn version(&self) -> u64 {
        self.lock().version
    }

    /// When the vote that made `version` was counted, while it is in the history.
    pub fn counted_at(&self, version: u64) -> Option<Instant> {
        let t = self.lock();
        let back = t.version.checked_sub(version)? as usize;
        let i = t.history.len().checked_sub(back + 1)?;
        t.history.get(i).map(|s| s.at)
    }

    pub fn snapshot(&self) -> Snapshot {
        let t = self.lock();
        self.snapshot_of(&t)
    }

    /// [`snapshot`](Votes::snapshot), shared: built once per version, then the same `Arc`
    /// for every reader until the tally moves (no allocation per request).
    pub fn shared_snapshot(&self) -> Arc<Snapshot> {
        let mut t = self.lock();
        if let Some(s) = &t.snap {
            if s.version == t.version && s.closed == t.poll_closed && s.epoch == t.epoch {
                return Arc::clone(s);
            }
        }
        let s = Arc::new(self.snapshot_of(&t));
        t.snap = Some(Arc::clone(&s));
        s
    }

    fn snapshot_of(&self, t: &Tally) -> Snapshot {
        Snapshot {
            version: t.version,
            epoch: t.epoch.clone(),
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
            closed: t.poll_closed,
        }
    }

    /// What a client at version `since` of `epoch` (None: ours) needs. At most `max_delta`
    /// votes are listed; further behind gets a snapshot.
    pub fn catch_up(&self, since: u64, epoch: Option<&str>, max_delta: usize) -> Catchup {
        let t = self.await_cursor_locked(since, epoch);
        self.catch_up_locked(&t, since, epoch, max_delta)
    }

    /// With a shared store, a cursor from a faster instance (ahead of our copy, in our epoch)
    /// waits up to [`AHEAD_WAIT`] for the copy to get there, so that what it is answered is
    /// never older than what the client has already seen.
    pub fn await_cursor(&self, since: u64, epoch: Option<&str>) {
        drop(self.await_cursor_locked(since, epoch));
    }

    fn await_cursor_locked(&self, since: u64, epoch: Option<&str>) -> MutexGuard<'_, Tally> {
        let mut t = self.lock();
        let ahead_until = Instant::now() + AHEAD_WAIT;
        while Self::ahead(&t, since, epoch) {
            let (g, in_time) = self.wait_until(t, ahead_until);
            t = g;
            if !in_time {
                break;
            }
        }
        t
    }

    /// With a shared store: the client's cursor, in our epoch, is past our copy.
    fn ahead(t: &Tally, since: u64, epoch: Option<&str>) -> bool {
        t.shared && since > t.version && epoch.is_none_or(|e| e == t.epoch)
    }

    fn catch_up_locked(
        &self,
        t: &Tally,
        since: u64,
        epoch: Option<&str>,
        max_delta: usize,
    ) -> Catchup {
        let behind = t.version.wrapping_sub(since);
        let same_epoch = epoch.is_none_or(|e| e == t.epoch);
        let missed = |skip| t.history.iter().skip(skip);
        if !same_epoch
            || since > t.version
            || behind > max_delta as u64
            || behind > t.history.len() as u64
            // The poll's state changed meanwhile: only a snapshot says so.
            || missed(t.history.len() - behind as usize).any(|s| s.i == MARK)
        {
            return Catchup::Snapshot(self.snapshot_of(t));
        }
        let votes = missed(t.history.len() - behind as usize)
            .enumerate()
            .map(|(k, s)| t.change_of(s.i, s.count, s.from, since + 1 + k as u64, s.total))
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

    /// When the newest vote a catch-up lists was counted (None for a snapshot, or once it is
    /// out of the history).
    pub fn newest_counted(&self, c: &Catchup) -> Option<Instant> {
        match c {
            Catchup::Delta { votes, .. } => votes.last().and_then(|v| self.counted_at(v.version)),
            Catchup::Snapshot(_) => None,
        }
    }

    /// The tally's version, epoch and published presence version now.
    pub fn position(&self) -> Position {
        let t = self.lock();
        Position {
            version: t.version,
            epoch: t.epoch.clone(),
            presence: t.presence.published().1,
        }
    }

    /// Whether the tally is at version `since` of `epoch` (None: ours) with presence version
    /// `presence_seen` (when given): a waiter there has nothing to be told yet.
    pub fn is_at(&self, since: u64, epoch: Option<&str>, presence_seen: Option<u64>) -> bool {
        Self::at(&self.lock(), since, epoch, presence_seen)
    }

    fn at(t: &Tally, since: u64, epoch: Option<&str>, presence_seen: Option<u64>) -> bool {
        t.version == since
            && epoch.is_none_or(|e| e == t.epoch)
            && presence_seen.is_none_or(|p| p == t.presence.published().1)
    }

    /// Waits until the tally has left `at` (a vote, a mark, a new epoch, a presence change),
    /// streams are ending, or `timeout` has passed; builds nothing (the caller looks).
    pub fn await_change(&self, at: &Position, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut t = self.lock();
        while Self::at(&t, at.version, Some(&at.epoch), Some(at.presence)) && !self.ending() {
            let (g, in_time) = self.wait_until(t, deadline);
            t = g;
            if !in_time {
                return;
            }
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
        let ahead_until = Instant::now() + AHEAD_WAIT;
        let mut t = self.lock();
        loop {
            let foreign = epoch.is_some_and(|e| e != t.epoch);
            // A cursor ahead of our copy (a shared store) is not a change: wait for the
            // follower to get there, up to AHEAD_WAIT.
            let waiting_ahead = Self::ahead(&t, since, epoch) && Instant::now() < ahead_until;
            if (t.version != since || foreign) && !waiting_ahead {
                return Some(Wake::Votes(
                    self.catch_up_locked(&t, since, epoch, max_delta),
                ));
            }
            let (counts, pv) = t.presence.published();
            if presence_seen.is_some_and(|seen| seen != pv) {
                return Some(Wake::Presence(counts, pv));
            }
            // Shutting down: nothing more to wait for (the caller checks `ending`).
            if self.ending() {
                return None;
            }
            let mut left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            if waiting_ahead {
                left = left.min(ahead_until.saturating_duration_since(Instant::now()));
            }
            t.watchers += 1;
            t = self
                .changed
                .wait_timeout(t, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            t.watchers -= 1;
        }
    }
}

/// A change from a shared store's stream that does not follow the copy: the follower must
/// resynchronise from a snapshot of the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gap {
    /// The copy's version.
    pub have: u64,
    /// The change's version.
    pub got: u64,
}

/// The follower's side (a shared store): this instance's copy of the tally follows the store's
/// change stream, in the store's order, and says when the store is unreachable.
impl Votes {
    /// The copy's epoch and version.
    pub fn followed(&self) -> (String, u64) {
        let t = self.lock();
        (t.epoch.clone(), t.version)
    }

    /// Replaces the copy with the store's whole tally: `names` its candidates in order,
    /// `counts` by uid, and its voters and state (`standing`). The history is dropped (it no
    /// longer leads to this version), so a client further behind gets a snapshot; a new epoch
    /// moves every client to it.
    pub fn follow_snapshot(
        &self,
        epoch: &str,
        names: &[(String, String)],
        counts: &[(String, u64)],
        version: u64,
        standing: &Standing,
    ) {
        let mut t = self.lock();
        if t.epoch == epoch && t.version == version && t.names == names {
            return;
        }
        t.snap = None;
        if t.names != names {
            t.names = names.to_vec();
            t.index = names
                .iter()
                .enumerate()
                .map(|(i, (id, _))| (id.clone(), i))
                .collect();
        }
        let by_uid: HashMap<&str, u64> = counts.iter().map(|(u, c)| (u.as_str(), *c)).collect();
        t.counts = t
            .names
            .iter()
            .map(|(uid, _)| by_uid.get(uid.as_str()).copied().unwrap_or(0))
            .collect();
        let voters = standing
            .voters
            .iter()
            .filter_map(|(v, uid)| Some((v.clone(), *t.index.get(uid)?)))
            .collect();
        t.voters = voters;
        t.poll_closed = standing.closed;
        t.epoch = epoch.to_string();
        t.version = version;
        t.history.clear();
        let released = Self::release_seen(&mut t);
        drop(t);
        self.changed.notify_all();
        self.answered.wake(released);
    }

    /// [`Votes::follow`] under the tally's lock, for the follower and for the committer (whose
    /// batch's reply carries the stream's tail): true when anything was applied.
    fn follow_locked(t: &mut Tally, changes: &[Streamed]) -> (bool, Result<(), Gap>) {
        let mut applied = false;
        for s in changes {
            if s.version <= t.version {
                continue;
            }
            let gap = Gap {
                have: t.version,
                got: s.version,
            };
            if s.version != t.version + 1 {
                return (applied, Err(gap));
            }
            if let Some(m) = s.mark {
                // A version of its own that forces a snapshot, as where it was made.
                t.apply_act(&Act::Mark(m), None, 0);
                applied = true;
                continue;
            }
            let i = t.index.get(s.uid.as_str()).copied();
            let from = match &s.from {
                None => Some(None),
                Some((f, c)) => t.index.get(f.as_str()).map(|&f| Some((f, *c))),
            };
            let (Some(i), Some(from)) = (i, from) else {
                return (applied, Err(gap));
            };
            t.counts[i] = s.count;
            if let Some((f, c)) = from {
                t.counts[f] = c;
            }
            if let Some(v) = &s.voter {
                t.voters.insert(v.clone(), i);
            }
            t.version = s.version;
            let total = t.counts.iter().sum();
            t.push_step(Step {
                i,
                count: s.count,
                from,
                total,
                at: Instant::now(),
            });
            applied = true;
        }
        (applied, Ok(()))
    }

    /// Answers the votes the copy now shows (a shared store's read-your-writes).
    fn release_seen(t: &mut Tally) -> Ring {
        let (epoch, version) = (t.epoch.clone(), t.version);
        t.durable
            .as_mut()
            .map_or(Ring::default(), |d| d.release_seen(&epoch, version))
    }

    /// Applies changes from the store's stream, in order. Those the copy has already are
    /// skipped; the first that does not follow the copy (a gap, or a candidate the copy does
    /// not know) stops it. Wakes the waiters once.
    pub fn follow(&self, changes: &[Streamed]) -> Result<(), Gap> {
        let mut t = self.lock();
        let (applied, result) = Self::follow_locked(&mut t, changes);
        let released = if applied {
            Self::release_seen(&mut t)
        } else {
            Ring::default()
        };
        let watched = applied && t.watchers > 0;
        drop(t);
        self.changed(watched);
        self.answered.wake(released);
        result
    }

    /// Whether the shared store is unreachable.
    pub fn degraded(&self) -> bool {
        self.lock().degraded
    }

    /// Says whether the shared store is reachable; a change wakes every live stream (as a
    /// presence change does), which tells its client.
    pub fn set_degraded(&self, degraded: bool) {
        let mut t = self.lock();
        if t.degraded == degraded {
            return;
        }
        t.degraded = degraded;
        t.presence.bump();
        drop(t);
        self.changed.notify_all();
    }

    /// Publishes presence counted elsewhere (a shared store's totals over every instance).
    pub fn set_presence(&self, counts: Counts) {
        let published = self.lock().presence.set(counts);
        if published {
            self.changed.notify_all();
        }
    }

    /// Presence bookkeeping for a shared store: this instance's connected viewers, and the
    /// polling viewers seen and forgotten since the last call.
    pub fn take_presence(&self) -> super::presence::Local {
        self.viewers().take_local(Instant::now())
    }
}

/// How often [`Votes::close`] looks whether the committer is done.
const CLOSE_POLL: Duration = Duration::from_millis(1);

/// Shutting down.
impl Votes {
    /// Ends every wait at once, now and from now on ([`Votes::wait`] answers `None` instead
    /// of waiting): long-polls are answered, event streams and the broadcaster end (they
    /// check [`Votes::ending`]). Votes are still taken.
    pub fn end_streams(&self) {
        self.ending.store(true, Ordering::SeqCst);
        // Through the lock: a waiter that checked the flag before it was set is waiting by
        // now, and is woken.
        drop(self.lock());
        self.changed.notify_all();
    }

    /// Whether [`Votes::end_streams`] was called.
    pub fn ending(&self) -> bool {
        self.ending.load(Ordering::Relaxed)
    }

    /// Takes no more votes (they are answered "not stored"), lets the committer finish the
    /// votes queued and stop, then closes the store (the journal's file, the Redis
    /// connection). Waits until `deadline` at most: false if votes were still being stored
    /// then (the store is left open; every answered vote is kept by it either way).
    pub fn close(&self, deadline: Instant) -> bool {
        self.lock().closed = true;
        self.finish(deadline)
    }

    /// [`close`](Votes::close) for a poll being deleted: a vote that arrives meanwhile is told
    /// the poll is gone (404), not to retry.
    pub fn delete(&self, deadline: Instant) -> bool {
        {
            let mut t = self.lock();
            t.closed = true;
            t.deleted = true;
        }
        self.finish(deadline)
    }

    fn finish(&self, deadline: Instant) -> bool {
        self.end_streams();
        self.queued.notify_all();
        // Looked at now and then rather than woken: this happens once, and voters' wake-ups
        // stay theirs alone (`wakers`).
        while self.lock().durable.as_ref().is_some_and(|d| d.busy()) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(CLOSE_POLL);
        }
        // The committer is done (or was never started): nothing uses the store any more.
        let store = self
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(store);
        self.stopped.store(true, Ordering::SeqCst);
        true
    }

    /// Whether [`Votes::close`] has closed the store (the Redis threads stop then).
    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// Whether the store can take votes (readiness): `Ok` in memory, and while the store is
    /// busy committing (it is in use); otherwise what the store says of itself.
    pub fn store_usable(&self) -> Result<(), String> {
        match self.store.try_lock() {
            Ok(s) => match s.as_ref() {
                Some(s) => s.usable().map_err(|e| e.to_string()),
                None if self.lock().durable.is_some() => Err("the store is closed".to_string()),
                None => Ok(()),
            },
            Err(std::sync::TryLockError::Poisoned(p)) => match p.into_inner().as_ref() {
                Some(s) => s.usable().map_err(|e| e.to_string()),
                None => Ok(()),
            },
            Err(std::sync::TryLockError::WouldBlock) => Ok(()),
        }
    }
}

/// A connected WebSocket or SSE viewer; counted until dropped.
pub struct Viewer {
    votes: Arc<Votes>,
    kind: Kind,
}

impl Drop for Viewer {
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
    pub fn viewer(self: &Arc<Self>, kind: Kind, id: Option<&str>) -> Viewer {
        let mut v = self.viewers();
        v.connected(kind, true);
        if let Some(id) = id {
            v.forget(id);
        }
        Viewer {
            votes: Arc::clone(self),
            kind,
        }
    }

    /// A long-polling or polling viewer made a request from `ip`; at most `max_per_ip` ids
    /// count per address (0: no cap). Returns whether this one counts.
    pub fn viewer_seen(&self, id: &str, k: Kind, ip: IpAddr, max_per_ip: usize) -> bool {
        self.viewers().seen(id, k, ip, max_per_ip, Instant::now())
    }

    /// WebSocket and SSE viewers connected to this instance (the published presence may be
    /// the total over several).
    pub fn local_connected(&self) -> [u64; 2] {
        self.viewers().connected_now()
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
    fn a_deleted_poll_says_so_and_a_shut_down_one_says_retry() {
        let soon = Instant::now() + Duration::from_secs(5);
        let deleted = votes();
        assert!(deleted.delete(soon));
        assert_eq!(deleted.vote("1"), Err(VoteError::Deleted));
        assert_eq!(deleted.mark(Mark::Closed), Err(VoteError::Deleted));
        assert_eq!(VoteError::Deleted.retry_after(), None);
        let shut = votes();
        assert!(shut.close(soon));
        assert!(matches!(shut.vote("1"), Err(VoteError::NotStored(_))));
    }

    #[test]
    fn votes_count_and_version_grows() {
        let v = votes();
        assert_eq!(
            v.vote("1").unwrap(),
            Change {
                uid: "1".into(),
                count: 1,
                version: 1,
                moved: None,
                total: 1,
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
    fn a_shared_snapshot_is_reused_until_the_tally_moves() {
        let v = votes();
        let a = v.shared_snapshot();
        assert!(
            Arc::ptr_eq(&a, &v.shared_snapshot()),
            "same version: same snapshot"
        );
        v.vote("1").unwrap();
        let b = v.shared_snapshot();
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!((b.version, b.candidates[0].count), (1, 1));
        assert_eq!(*b, v.snapshot());
        v.mark(Mark::Closed).unwrap();
        let c = v.shared_snapshot();
        assert!(c.closed && c.version == 2);
        // New candidates at the same version and epoch: a new snapshot, not the cached one.
        let names = vec![("x".to_string(), "X".to_string())];
        let standing = Standing {
            voters: Vec::new(),
            closed: true,
        };
        v.follow_snapshot(&c.epoch, &names, &[("x".into(), 5)], 2, &standing);
        let d = v.shared_snapshot();
        assert_eq!(d.candidates.len(), 1);
        assert_eq!(
            (d.candidates[0].uid.as_str(), d.candidates[0].count),
            ("x", 5)
        );
        assert_eq!(*d, v.snapshot());
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
                            version: 2,
                            moved: None,
                            total: 2,
                        },
                        Change {
                            uid: "1".into(),
                            count: 2,
                            version: 3,
                            moved: None,
                            total: 3,
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
        // The same answer (the total is not part of it: a replay does not know it).
        let answer = Change {
            total: 0,
            ..first.change.clone()
        };
        assert_eq!(again.change, answer);
        // The id names the vote, whatever the retry says.
        assert_eq!(v.vote_once("2", Some("abc")).unwrap().change, answer);
        assert_eq!(v.version(), 1);
        assert!(!v.vote_once("1", Some("other")).unwrap().replayed);
        assert_eq!(v.version(), 2);
        assert!(valid_vote_id("123e4567-e89b-12d3-a456-426614174000"));
        assert!(!valid_vote_id(""));
        assert!(!valid_vote_id("a b"));
    }

    #[test]
    fn a_full_vote_id_memory_refuses_new_ids_only() {
        let settings = Settings {
            vote_id_memory: 16 * 1024,
            ..Settings::default()
        };
        let v = Votes::with_settings(&[("1".into(), "a".into())], &settings);
        let mut n = 0;
        let refused = loop {
            match v.vote_once("1", Some(&format!("id-{n}"))) {
                Ok(voted) => assert!(!voted.replayed),
                Err(e) => break e,
            }
            n += 1;
            assert!(n < 10_000, "never refused");
        };
        // Every id is inside the window: the new one is refused, with when to come back.
        let VoteError::VoteIdsFull { retry_after } = refused else {
            panic!("{refused:?}")
        };
        assert!(retry_after > Duration::ZERO && retry_after <= DEFAULT_VOTE_ID_WINDOW);
        assert_eq!(v.version(), n, "the refused vote did not count");
        let stats = v.id_stats();
        assert!(stats.bytes <= settings.vote_id_memory, "{stats:?}");
        assert_eq!((stats.remembered, stats.refused), (n as usize, 1));
        // A retry of a remembered id still gets its answer; a vote without an id still counts.
        assert!(v.vote_once("1", Some("id-0")).unwrap().replayed);
        assert_eq!(v.vote("1").unwrap().version, n + 1);
        assert_eq!(
            refused.retry_after(),
            Some(retry_after),
            "the wire's Retry-After"
        );
    }

    #[test]
    fn the_default_settings_are_the_command_lines() {
        let l = crate::config::Limits::default();
        let s = Settings::default();
        assert_eq!(
            (s.vote_id_window, s.vote_id_memory, s.vote_timeout),
            (l.vote_id_window, l.vote_id_memory, l.vote_timeout)
        );
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
    fn a_follower_applies_changes_in_order_and_reports_a_gap() {
        let v = votes();
        let e = v.epoch();
        let s = Streamed::vote;
        v.follow(&[s(1, "1", 1), s(2, "2", 1)]).unwrap();
        // Changes the copy has are skipped; the next must follow the copy.
        v.follow(&[s(2, "2", 1), s(3, "1", 2)]).unwrap();
        assert_eq!(v.followed(), (e.clone(), 3));
        assert_eq!(
            v.follow(&[s(5, "1", 3)]),
            Err(Gap { have: 3, got: 5 }),
            "version 4 is missing"
        );
        assert_eq!(
            v.follow(&[s(4, "9", 1)]),
            Err(Gap { have: 3, got: 4 }),
            "a candidate the copy does not know"
        );
        match v.catch_up(1, None, 100) {
            Catchup::Delta { votes, .. } => assert_eq!(votes.len(), 2),
            other => panic!("{other:?}"),
        }
        // A snapshot replaces the copy: a new epoch, new candidates, no history.
        let names = vec![("x".to_string(), "X".to_string())];
        let standing = Standing {
            voters: vec![("v1".into(), "x".into())],
            closed: true,
        };
        v.follow_snapshot("new", &names, &[("x".into(), 7)], 9, &standing);
        let s = v.snapshot();
        assert_eq!((s.epoch.as_str(), s.version), ("new", 9));
        assert_eq!(s.candidates[0].count, 7);
        assert!(s.closed && v.voted_for("v1").as_deref() == Some("x"));
        assert!(matches!(
            v.catch_up(8, Some("new"), 100),
            Catchup::Snapshot(_)
        ));
        assert!(matches!(v.catch_up(3, Some(&e), 100), Catchup::Snapshot(_)));
    }

    #[test]
    fn a_follower_applies_moved_ballots_in_one_version_and_marks_as_snapshots() {
        let v = votes();
        let e = v.epoch();
        let ballot = |version, uid: &str, count, from: Option<(&str, u64)>| Streamed {
            version,
            uid: uid.into(),
            count,
            voter: Some("v1".into()),
            from: from.map(|(f, c)| (f.into(), c)),
            mark: None,
        };
        v.follow(&[ballot(1, "1", 1, None), ballot(2, "2", 1, Some(("1", 0)))])
            .unwrap();
        let s = v.snapshot();
        assert_eq!(
            s.candidates.iter().map(|c| c.count).collect::<Vec<_>>(),
            [0, 1]
        );
        assert_eq!(v.voted_for("v1").as_deref(), Some("2"));
        match v.catch_up(1, Some(&e), 100) {
            Catchup::Delta { votes, .. } => {
                assert_eq!(votes.len(), 1);
                assert_eq!(votes[0].moved, Some(("1".into(), 0)));
            }
            other => panic!("{other:?}"),
        }
        let mark = |version, m| Streamed {
            version,
            mark: Some(m),
            ..Streamed::default()
        };
        v.follow(&[mark(3, Mark::Closed)]).unwrap();
        assert!(v.poll_closed());
        assert!(matches!(v.catch_up(2, Some(&e), 100), Catchup::Snapshot(_)));
        v.follow(&[mark(4, Mark::Reset), mark(5, Mark::Opened)])
            .unwrap();
        assert!(!v.poll_closed() && v.voted_for("v1").is_none());
        assert_eq!(v.snapshot().total(), 0);
        assert_eq!(v.version(), 5);
    }

    #[test]
    fn degraded_wakes_waiters_as_presence_does() {
        let v = Arc::new(votes());
        let pv = v.presence().1;
        let w = Arc::clone(&v);
        let waiter = thread::spawn(move || w.wait(0, None, Some(pv), 10, Duration::from_secs(10)));
        thread::sleep(Duration::from_millis(20));
        v.set_degraded(true);
        assert!(matches!(waiter.join().unwrap(), Some(Wake::Presence(..))));
        assert!(v.degraded());
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

    #[test]
    fn ending_streams_answers_every_wait_at_once_and_still_takes_votes() {
        let v = Arc::new(votes());
        let w = Arc::clone(&v);
        let waiter = thread::spawn(move || {
            let started = Instant::now();
            let woke = w.wait(0, None, None, 10, Duration::from_secs(60));
            (woke, started.elapsed())
        });
        // Until the waiter waits: a wait that began after `end_streams` ends at once too.
        thread::sleep(Duration::from_millis(20));
        v.end_streams();
        let (woke, took) = waiter.join().unwrap();
        assert_eq!(woke, None);
        assert!(took < Duration::from_secs(30), "{took:?}");
        assert!(v.ending());
        assert_eq!(v.wait(0, None, None, 10, Duration::from_secs(60)), None);
        // A client behind still gets what it missed; votes still count.
        v.vote("1").unwrap();
        assert!(matches!(
            v.wait(0, None, None, 10, Duration::from_secs(60)),
            Some(Wake::Votes(_))
        ));
    }

    #[test]
    fn closing_stores_the_queued_votes_then_refuses_more_and_closes_the_store() {
        let dir = std::env::temp_dir().join(format!(
            "livevote-votes-close-{}-{:?}",
            std::process::id(),
            thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("votes.journal");
        let names = [("1".to_string(), "a".to_string())];
        let (journal, recovery) = crate::app::journal::open(&path).unwrap();
        let (v, _) = Votes::durable(&names, Box::new(journal), recovery, &Settings::default());
        let v = Arc::new(v);
        let c = Arc::clone(&v);
        let committer = thread::spawn(move || c.commit_loop(&|_| {}));
        let voters: Vec<_> = (0..4)
            .map(|_| {
                let v = Arc::clone(&v);
                thread::spawn(move || (0..50).filter(|_| v.vote("1").is_ok()).count())
            })
            .collect();
        let acked: usize = voters.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(acked, 200);
        assert_eq!(v.store_usable(), Ok(()));
        assert!(v.close(Instant::now() + Duration::from_secs(10)));
        committer.join().unwrap();
        assert!(v.stopped());
        assert!(matches!(v.vote("1"), Err(VoteError::NotStored(_))));
        assert!(v.store_usable().is_err(), "closed");
        // Closed: the lock is free, and every vote is on disk.
        let (_, recovery) = crate::app::journal::open(&path).unwrap();
        assert_eq!(recovery.version, 200);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
