//! The follower: one thread per instance, blocked on `XREAD` of the poll's change stream, that
//! applies every instance's votes to this instance's copy in Redis's order. The stream keeps
//! its entries across a reconnect (Pub/Sub would lose what was published meanwhile), and its
//! entry ids are the versions, so the follower reads on from the copy's version after any
//! cut, and a client's cursor means the same on every instance.
//!
//! Each read also fetches the epoch, so a poll Redis lost (a restart without persistence, a
//! flush) is noticed within one read even while the stream is quiet. On any failure the copy
//! is marked degraded (live streams say so; votes are refused meanwhile by the committer's
//! own connection), and the follower reconnects with the client's backoff, then
//! resynchronises: the changes it missed one by one when the stream still has them, else a
//! snapshot, which sends clients further behind than the copy's history a snapshot too.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

use super::scripts::{self, PollState, Script};
use super::{Error, Target};
use crate::app::metrics::Metrics;
use crate::app::store::new_epoch;
use crate::app::votes::Votes;
use crate::redis::{Client, Value};

/// How long one `XREAD` blocks in Redis: also how soon a quiet stream notices a lost poll,
/// and how soon the thread notices that its app is gone.
pub const BLOCK: Duration = Duration::from_millis(1000);
/// Most changes taken per read.
pub const READ_COUNT: usize = 1024;

/// Starts the follower thread. It holds the vote table weakly and ends when the app is gone.
pub fn start(votes: &Arc<Votes>, target: Target, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let votes = Arc::downgrade(votes);
    thread::Builder::new()
        .name("redis-follow".into())
        .spawn(move || Follower::new(target, metrics).run(&votes))?;
    Ok(())
}

struct Follower {
    client: Client,
    target: Target,
    metrics: Arc<Metrics>,
    /// The copy is known to match Redis up to its version (false after any failure, until
    /// the next resync).
    synced: bool,
    /// The last failure, said once per outage on stderr.
    down_since: Option<Instant>,
}

impl Follower {
    fn new(target: Target, metrics: Arc<Metrics>) -> Follower {
        // The reads block up to BLOCK in Redis: the call's deadline is on top of that.
        let client = Client::new(target.url.clone(), target.opts);
        Follower {
            client,
            target,
            metrics,
            synced: false,
            down_since: None,
        }
    }

    fn run(mut self, votes: &Weak<Votes>) {
        // Ends with the app, or when the server shuts down (`Votes::close`).
        while let Some(v) = votes.upgrade().filter(|v| !v.stopped()) {
            let step = if self.synced {
                self.read(&v)
            } else {
                self.resync(&v)
            };
            match step {
                Ok(()) => self.up(&v),
                Err(e) => {
                    self.down(&v, &e);
                    drop(v);
                    // Between attempts the client's backoff spaces the connects; a failure
                    // that is not a connect (a reply we did not expect) waits the shortest.
                    let wait = match &e {
                        Error::Redis(crate::redis::Error::Backoff { retry_in }) => *retry_in,
                        _ => crate::redis::conn::BACKOFF_INITIAL,
                    };
                    thread::sleep(wait.min(BLOCK));
                }
            }
        }
    }

    /// After a read that reached Redis: ends an outage, if there was one (nothing to do on
    /// every other read, which is most of them).
    fn up(&mut self, votes: &Votes) {
        let Some(since) = self.down_since.take() else {
            return;
        };
        crate::log::info(&format!(
            "redis: reachable again after {:.1} s; the copy is resynchronised",
            since.elapsed().as_secs_f64()
        ));
        self.metrics.redis.reconnects.fetch_add(1, Relaxed);
        self.metrics.redis.up.store(1, Relaxed);
        votes.set_degraded(false);
    }

    fn down(&mut self, votes: &Votes, e: &Error) {
        self.synced = false;
        if self.down_since.is_none() {
            self.down_since = Some(Instant::now());
            crate::log::error(&format!(
                "redis: unreachable ({e}); votes are refused until it is back"
            ));
        }
        self.metrics.redis.up.store(0, Relaxed);
        votes.set_degraded(true);
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.target.opts.timeout
    }

    /// The whole poll (created if Redis lost it).
    fn poll(&mut self) -> Result<PollState, Error> {
        let deadline = self.deadline();
        self.target.open_poll(&mut self.client, deadline)
    }

    /// Brings the copy to Redis's poll: the missed changes when Redis still has them all,
    /// else a snapshot.
    fn resync(&mut self, votes: &Votes) -> Result<(), Error> {
        let poll = self.poll()?;
        let (epoch, version) = votes.followed();
        if poll.epoch == epoch && poll.version < version {
            // Redis's version went back within our epoch: it lost acknowledged votes, and
            // their versions would be reused. A new epoch, so no cursor holding them stays
            // valid (only if no other instance did it first).
            crate::log::warn(&format!(
                "redis: its version {} is behind the {version} this instance saw in the same \
                 epoch (acknowledged votes were lost: see appendfsync); starting a new epoch",
                poll.version
            ));
            let keys = [self.target.keys.epoch(), self.target.keys.version()];
            let args = [
                epoch.into_bytes(),
                version.to_string().into_bytes(),
                new_epoch().into_bytes(),
            ];
            let deadline = self.deadline();
            Script::new(scripts::NEW_EPOCH_IF_BEHIND).run(
                &mut self.client,
                &keys,
                &args,
                deadline,
            )?;
            let poll = self.poll()?;
            return self.snapshot(votes, &poll);
        }
        if poll.epoch == epoch && poll.candidates == self.target.candidates {
            // The same history: read on from our version; a gap means a snapshot.
            self.synced = true;
            return self.read(votes);
        }
        self.snapshot(votes, &poll)
    }

    fn snapshot(&mut self, votes: &Votes, poll: &PollState) -> Result<(), Error> {
        if poll.candidates != self.target.candidates {
            crate::log::info("redis: the poll's candidates changed in Redis; following them");
            self.target.candidates.clone_from(&poll.candidates);
        }
        let standing = crate::app::store::Standing {
            voters: poll.voters.clone(),
            closed: poll.closed,
        };
        votes.follow_snapshot(
            &poll.epoch,
            &poll.candidates,
            &poll.counts,
            poll.version,
            &standing,
        );
        self.metrics.redis.resyncs.fetch_add(1, Relaxed);
        self.synced = true;
        Ok(())
    }

    /// One blocking read of the stream after the copy's version, and the epoch.
    fn read(&mut self, votes: &Votes) -> Result<(), Error> {
        let (epoch, version) = votes.followed();
        let keys = &self.target.keys;
        let cmds = vec![
            vec![
                b"XREAD".to_vec(),
                b"COUNT".to_vec(),
                READ_COUNT.to_string().into_bytes(),
                b"BLOCK".to_vec(),
                BLOCK.as_millis().to_string().into_bytes(),
                b"STREAMS".to_vec(),
                keys.changes().into_bytes(),
                format!("{version}-0").into_bytes(),
            ],
            vec![b"GET".to_vec(), keys.epoch().into_bytes()],
        ];
        let replies = self
            .client
            .call_many_by(&cmds, self.deadline() + BLOCK)
            .map_err(Error::Redis)?;
        let [changes, now_epoch] = replies.as_slice() else {
            return Err(Error::Reply("a pipeline of two answered otherwise".into()));
        };
        if let Some(e) = changes.error_message().or(now_epoch.error_message()) {
            return Err(Error::Reply(e));
        }
        if now_epoch.as_bytes() != Some(epoch.as_bytes()) {
            // Redis lost the poll, or another instance started a new epoch.
            self.synced = false;
            return if matches!(now_epoch, Value::Null) {
                self.resync(votes)
            } else {
                let poll = self.poll()?;
                self.snapshot(votes, &poll)
            };
        }
        let changes = scripts::read_changes(changes)?;
        if let Err(gap) = votes.follow(&changes) {
            // The stream no longer has what we missed (or a candidate we do not know).
            let poll = self.poll()?;
            if poll.epoch == epoch && poll.version < gap.have {
                self.synced = false;
                return self.resync(votes);
            }
            return self.snapshot(votes, &poll);
        }
        Ok(())
    }
}
