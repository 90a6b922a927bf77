//! The group commit between the vote table and its [`Store`]: voters queue their votes under
//! the tally's lock, one committer thread takes every queued vote, has the store keep them with
//! one call (one write and one fsync for the journal), then counts them and wakes their voters.
//! Votes that arrive meanwhile form the next batch. A voter waits at most `--vote-timeout`:
//! a vote the committer has not taken yet is then withdrawn (not counted, and said so); one
//! being stored is answered "outcome unknown", and its vote id (kept in flight until the store
//! finishes) then remembers the real outcome for a retry.

use std::collections::HashMap;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use super::wakers::Ring;
use super::{Act, Change, Tally, VoteError, Voted, Votes};
use crate::app::store::{
    now_ms, Committed, Entry, Outcome, RecentVote, Record, Recovery, Standing, Store,
};

/// A vote waiting for the store: counted (and answered) only once it is kept.
struct Pending {
    ticket: u64,
    act: Act,
    vote_id: Option<String>,
}

/// The queue and the answers between voters and the committer; under the tally's lock.
pub(super) struct Durable {
    queue: Vec<Pending>,
    next_ticket: u64,
    /// Voters still waiting, by ticket, with their answer once their batch is resolved. A
    /// voter that gave up is not here, so its answer is dropped (its vote id has it).
    waiting: HashMap<u64, Option<Result<Voted, VoteError>>>,
    /// Vote ids queued or being stored, with their ticket: a concurrent retry waits for the
    /// first instead of queueing a second vote.
    inflight: HashMap<String, u64>,
    /// A shared store's answers, kept until this instance's copy shows them (read your
    /// writes): (epoch, the batch's last version counted, tickets and answers). The follower
    /// releases them as it applies the store's changes; meanwhile the committer goes on with
    /// the next batch.
    unseen: Vec<(String, u64, Vec<Answer>)>,
    /// The committer has taken a batch and not answered it yet.
    committing: bool,
}

/// Starts a voter's key among the in-flight ids: no vote id has it (`ids::VOTE`).
const VOTER_KEY: &str = "~";

fn voter_key(voter: &str) -> String {
    format!("{VOTER_KEY}{voter}")
}

/// A voter's ticket and its answer.
type Answer = (u64, Result<Voted, VoteError>);

impl Durable {
    fn new() -> Self {
        Durable {
            queue: Vec::new(),
            next_ticket: 0,
            waiting: HashMap::new(),
            inflight: HashMap::new(),
            unseen: Vec::new(),
            committing: false,
        }
    }

    /// Gives the answers the copy now shows (at `version` of `epoch`, or of another epoch:
    /// counted either way) to their voters. Returns whom to wake.
    pub(super) fn release_seen(&mut self, epoch: &str, version: u64) -> Ring {
        let mut ring = Ring::default();
        if self.unseen.is_empty() {
            return ring;
        }
        let (seen, unseen): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unseen)
            .into_iter()
            .partition(|(e, until, _)| e != epoch || *until <= version);
        self.unseen = unseen;
        for (_, _, answers) in seen {
            for (ticket, answer) in answers {
                if let Some(slot) = self.waiting.get_mut(&ticket) {
                    *slot = Some(answer);
                    ring.add(ticket);
                }
            }
        }
        ring
    }

    /// Queues `act`; returns its ticket. A ballot's voter is in flight with it, as its vote
    /// id is: the voter's next vote waits for this one's outcome.
    pub(super) fn enqueue(&mut self, act: Act, vote_id: Option<&str>) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        if let Act::Ballot { voter, .. } = &act {
            self.inflight.insert(voter_key(voter), ticket);
        }
        self.queue.push(Pending {
            ticket,
            act,
            vote_id: vote_id.map(str::to_string),
        });
        if let Some(id) = vote_id {
            self.inflight.insert(id.to_string(), ticket);
        }
        self.waiting.insert(ticket, None);
        ticket
    }

    /// The answer for `ticket`, once its batch is resolved.
    pub(super) fn take(&mut self, ticket: u64) -> Option<Result<Voted, VoteError>> {
        match self.waiting.get(&ticket) {
            Some(Some(_)) => self.waiting.remove(&ticket).flatten(),
            _ => None,
        }
    }

    /// The voter of `ticket` stops waiting: what to answer it (its answer, when the store
    /// counted it and only the copy is behind).
    pub(super) fn give_up(
        &mut self,
        ticket: u64,
        vote_id: Option<&str>,
    ) -> Result<Voted, VoteError> {
        self.waiting.remove(&ticket);
        for (_, _, answers) in &mut self.unseen {
            if let Some(at) = answers.iter().position(|(t, _)| *t == ticket) {
                return answers.swap_remove(at).1;
            }
        }
        Err(self.withdraw(ticket, vote_id))
    }

    fn withdraw(&mut self, ticket: u64, vote_id: Option<&str>) -> VoteError {
        match self.queue.iter().position(|p| p.ticket == ticket) {
            // Not taken by the committer: withdrawn, so certainly not counted.
            Some(at) => {
                let p = self.queue.remove(at);
                if let Some(id) = vote_id {
                    self.inflight.remove(id);
                }
                self.forget_voter(&p);
                VoteError::NotStored("the store did not take the vote in time".to_string())
            }
            // Being stored: the committer resolves it later, under its vote id.
            None => VoteError::OutcomeUnknown,
        }
    }

    /// The ticket of the vote with `vote_id` being queued or stored, if one is.
    pub(super) fn inflight_ticket(&self, vote_id: &str) -> Option<u64> {
        self.inflight.get(vote_id).copied()
    }

    /// The ticket of `voter`'s vote being queued or stored, if one is.
    pub(super) fn inflight_voter(&self, voter: &str) -> Option<u64> {
        self.inflight.get(&voter_key(voter)).copied()
    }

    fn forget_voter(&mut self, p: &Pending) {
        if let Act::Ballot { voter, .. } = &p.act {
            self.inflight.remove(&voter_key(voter));
        }
    }

    /// Vote ids queued or being stored (not remembered yet, but admitted).
    pub(super) fn inflight(&self) -> usize {
        self.inflight
            .keys()
            .filter(|k| !k.starts_with(VOTER_KEY))
            .count()
    }

    /// Votes queued, or a batch being stored.
    pub(super) fn busy(&self) -> bool {
        !self.queue.is_empty() || self.committing
    }
}

/// A voter's answer from a shared store's outcome for its vote (None: the store answered for
/// other records than it was given, so the outcome is unknown). The copy counts the vote from
/// the store's change stream (the batch reply's tail, or the follower), not from this.
fn shared_answer(outcome: Option<&Outcome>, uid: &str) -> Result<Voted, VoteError> {
    let voted = |uid: &str, count: u64, version: u64, replayed: bool| Voted {
        change: Change {
            uid: uid.to_string(),
            count,
            version,
            moved: None,
            total: 0,
        },
        replayed,
    };
    match outcome {
        Some(Outcome::Counted { count, version }) => Ok(voted(uid, *count, *version, false)),
        Some(Outcome::Replayed {
            uid,
            count,
            version,
        }) => Ok(voted(uid, *count, *version, true)),
        Some(Outcome::Moved {
            count,
            version,
            from,
        }) => {
            let mut v = voted(uid, *count, *version, false);
            v.change.moved = Some(from.clone());
            Ok(v)
        }
        Some(Outcome::UnknownCandidate) => Err(VoteError::UnknownCandidate(uid.to_string())),
        Some(Outcome::Closed) => Err(VoteError::Closed),
        Some(Outcome::AlreadyVoted { uid }) => Err(VoteError::AlreadyVoted {
            uid: Some(uid.clone()),
        }),
        Some(Outcome::VotersFull) => Err(VoteError::VotersFull),
        Some(Outcome::VoteIdsFull { retry_after_ms }) => Err(VoteError::VoteIdsFull {
            retry_after: Duration::from_millis(*retry_after_ms),
        }),
        None => Err(VoteError::OutcomeUnknown),
    }
}

/// What a checkpoint needs: version, counts (retired uids included) and remembered ids.
struct Checkpoint {
    version: u64,
    counts: Vec<(String, u64)>,
    recent: Vec<RecentVote>,
    standing: Standing,
}

impl Votes {
    /// A tally kept in `store`: rebuilt from its `recovery`, every vote kept by it before it
    /// counts. Returns the report lines for the operator. The caller starts
    /// [`Votes::commit_loop`] on a thread of its own.
    pub fn durable(
        candidates: &[(String, String)],
        store: Box<dyn Store>,
        recovery: Recovery,
        settings: &super::Settings,
    ) -> (Self, Vec<String>) {
        let mut v = Votes::with_settings(candidates, settings);
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
            t.poll_closed = recovery.standing.closed;
            for (voter, uid) in &recovery.standing.voters {
                if let Some(&i) = t.index.get(uid) {
                    t.voters.insert(voter.clone(), i);
                }
            }
            // Every remembered id, in order; those whose window has passed go at once. A time
            // after now (a clock that ran ahead and was set back) counts as now: otherwise the
            // ids it stamps would never expire and the window would fill for good.
            let recovered_at = now_ms();
            for r in &recovery.recent {
                let change = Change {
                    uid: r.uid.clone(),
                    count: r.count,
                    version: r.version,
                    moved: None,
                    total: 0,
                };
                t.ids.insert(&r.vote_id, &change, r.at_ms.min(recovered_at));
            }
            let expired = t.ids.expire(now_ms());
            let kept = t.ids.stats().remembered;
            if kept > 0 || expired > 0 {
                report.push(format!(
                    "journal: {kept} vote id(s) remembered for retries, {expired} older than \
                     the window forgotten"
                ));
            }
            t.durable = Some(Durable::new());
        }
        // The store's epoch: a client's cursor from before a restart stays valid.
        let t = v.tally.get_mut().unwrap_or_else(PoisonError::into_inner);
        t.epoch = recovery.epoch;
        t.shared = store.shared();
        *v.store.get_mut().unwrap_or_else(PoisonError::into_inner) = Some(store);
        (v, report)
    }

    /// The committer: takes every queued vote, has the store keep them with one call, then
    /// counts them and wakes their voters. Votes that arrive meanwhile form the next batch
    /// (group commit). `observe` is told each commit's duration. Returns when the tally has no
    /// store, or once it is closed ([`Votes::close`]) and nothing is queued.
    pub fn commit_loop(&self, observe: &dyn Fn(Duration)) {
        loop {
            let (batch, records, base) = {
                let mut t = self.lock();
                loop {
                    match &t.durable {
                        None => return,
                        Some(d) if !d.queue.is_empty() => break,
                        Some(_) if t.closed => return,
                        Some(_) => {}
                    }
                    t = self.queued.wait(t).unwrap_or_else(PoisonError::into_inner);
                }
                let base = t.version;
                let at_ms = now_ms();
                let d = t.durable.as_mut().expect("checked above");
                d.committing = true;
                let batch = std::mem::take(&mut d.queue);
                let records: Vec<Record> = batch
                    .iter()
                    .enumerate()
                    .map(|(k, p)| {
                        let name = |i: usize| t.names[i].0.clone();
                        let (uid, entry) = match &p.act {
                            Act::Vote(i) => (name(*i), Entry::Vote),
                            Act::Ballot { i, voter, from } => (
                                name(*i),
                                Entry::Ballot {
                                    voter: voter.clone(),
                                    from: from.map(name),
                                },
                            ),
                            Act::Mark(m) => (String::new(), Entry::Mark(*m)),
                        };
                        Record {
                            version: base + 1 + k as u64,
                            uid,
                            vote_id: p.vote_id.clone(),
                            at_ms,
                            entry,
                        }
                    })
                    .collect();
                (batch, records, base)
            };
            let started = Instant::now();
            let written = {
                let mut s = self.store.lock().unwrap_or_else(PoisonError::into_inner);
                match s.as_mut() {
                    Some(s) => s.commit(&records),
                    None => Err(std::io::Error::other("no store")),
                }
            };
            observe(started.elapsed());
            let (checkpoint, watched, ring) = {
                let mut t = self.lock();
                // The reply's tail brings the copy up to this batch (and whatever every other
                // instance committed before it); what does not follow the copy is the
                // follower's to resolve.
                let moved = match &written {
                    Ok(Committed::Shared { epoch, tail, .. }) if t.epoch == *epoch => {
                        Self::follow_locked(&mut t, tail).0
                    }
                    _ => false,
                };
                let mut answers = Vec::with_capacity(batch.len());
                let shared = match &written {
                    Ok(Committed::Shared { outcomes, .. }) if outcomes.len() == batch.len() => {
                        Some(outcomes.as_slice())
                    }
                    _ => None,
                };
                if shared.is_none() && !t.shared {
                    debug_assert_eq!(t.version, base, "only the committer counts here");
                }
                for (k, (p, r)) in batch.iter().zip(&records).enumerate() {
                    let answer = match &written {
                        // A shared store counted it (or knew it): its change stream (the
                        // tail applied above, or the follower) counts it in the copy.
                        Ok(Committed::Shared { .. }) => {
                            shared_answer(shared.map(|o| &o[k]), &r.uid)
                        }
                        Ok(Committed::AsNumbered) => Ok(Voted {
                            change: t.apply_act(&p.act, p.vote_id.as_deref(), r.at_ms),
                            replayed: false,
                        }),
                        // The store could not undo a partial write: a restart may count it.
                        Err(e) if crate::app::store::may_be_stored(e) => {
                            Err(VoteError::OutcomeUnknown)
                        }
                        Err(e) => Err(VoteError::NotStored(e.to_string())),
                    };
                    answers.push((p, answer));
                }
                // Read your writes: a shared store's counted votes are answered once this
                // instance's copy shows them (the follower releases them).
                let until = match &written {
                    Ok(Committed::Shared { epoch, .. }) => answers
                        .iter()
                        .filter_map(|(_, a)| match a {
                            Ok(v) if !v.replayed => Some(v.change.version),
                            _ => None,
                        })
                        .max()
                        .filter(|&v| t.epoch == *epoch && v > t.version)
                        .map(|v| (epoch.clone(), v)),
                    _ => None,
                };
                let d = t.durable.as_mut().expect("durable mode");
                d.committing = false;
                let mut held = Vec::new();
                // Every voter of the batch, and retries of its vote ids (which wait on the
                // first vote's slot): answered, held or not, the in-flight id is resolved.
                let mut ring = Ring::default();
                for (p, answer) in answers {
                    ring.add(p.ticket);
                    if let Some(id) = &p.vote_id {
                        d.inflight.remove(id);
                    }
                    d.forget_voter(p);
                    if !d.waiting.contains_key(&p.ticket) {
                        continue;
                    }
                    match (&until, &answer) {
                        (Some(_), Ok(v)) if !v.replayed => held.push((p.ticket, answer)),
                        _ => {
                            d.waiting.insert(p.ticket, Some(answer));
                        }
                    }
                }
                if let Some((epoch, until)) = until {
                    d.unseen.push((epoch, until, held));
                }
                if moved {
                    // Earlier batches' answers the follower had not released yet.
                    ring.join(Self::release_seen(&mut t));
                }
                let watched =
                    (moved || matches!(written, Ok(Committed::AsNumbered))) && t.watchers > 0;
                (self.wants_checkpoint(&t), watched, ring)
            };
            self.answered.wake(ring);
            self.changed(watched);
            if let Some(c) = checkpoint {
                let mut s = self.store.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(s) = s.as_mut() {
                    if let Err(e) = s.checkpoint(c.version, &c.counts, &c.recent, &c.standing) {
                        crate::log::error(&format!("checkpoint failed: {e}"));
                    }
                }
            }
        }
    }

    /// What a checkpoint needs, when one is due. Taken under the tally's lock, so it matches
    /// the store exactly (only the committer thread counts or commits).
    fn wants_checkpoint(&self, t: &Tally) -> Option<Checkpoint> {
        let due = self
            .store
            .try_lock()
            .ok()
            .and_then(|s| s.as_ref().map(|s| s.checkpoint_due()))
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
        Some(Checkpoint {
            version: t.version,
            counts,
            recent: t.ids.recent(),
            standing: t.standing(),
        })
    }
}
