//! Many polls: the registry of every poll this server runs, each with its own vote table and
//! WebSocket hub, so a vote in one poll never reaches another's subscribers and each poll's
//! `(epoch, version)` cursor is its own. The seed's poll is `default` (its routes stay where
//! they were); the others live under `/p/ID`. A journaled server keeps each created poll in a
//! directory of its own beside the default poll's journal: `PATH.polls/ID/poll.meta` (what
//! the poll is, written once) and `PATH.polls/ID/votes.journal` (its votes, voters and state,
//! as the default poll's journal keeps them). With `--redis` each poll's tally is under its own
//! keys in Redis (`redis_store::keys`), and the registry of polls too
//! (`redis_store::registry`): every instance runs every poll, and learns of new and deleted
//! ones from the registry's change stream.

pub mod meta;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use super::hub::{Fanout, Hub};
use super::longpoll::lot::Lot;
use super::metrics::Metrics;
use super::redis_store::{self, registry};
use super::store::{sync_dir_of, write_durably};
use super::votes::{Rules, Settings, Votes};
use meta::{Meta, Results};

/// Default of `--max-polls`: polls one server runs, the default one included.
pub const DEFAULT_MAX_POLLS: usize = 1000;
/// Default of `--max-voters`: voters one `once`/`change` poll remembers.
pub const DEFAULT_MAX_VOTERS: usize = 100_000;
/// The WebSocket close code and reason for a subscriber of a deleted poll (1001: going away).
const DELETED: (u16, &str) = (1001, "poll deleted");

/// One poll: what it is, its votes, and its live fan-out (started at its first subscriber, so
/// quiet polls hold no threads for it).
pub struct Poll {
    pub meta: Meta,
    pub votes: Arc<Votes>,
    hub: OnceLock<Arc<Hub>>,
    /// Its parked long-polls and their writer, started at the first one.
    long_polls: OnceLock<Arc<Lot>>,
    metrics: Arc<Metrics>,
    /// How its hub writes a broadcast (`--fanout-writers`).
    fanout: Fanout,
    /// A journaled poll's directory (not the default poll's).
    dir: Option<PathBuf>,
}

impl Poll {
    /// A poll over `votes`, its hub started now when `eager` (the default poll's, so its
    /// broadcaster is there before anyone subscribes, as it always was).
    pub fn new(
        meta: Meta,
        votes: Arc<Votes>,
        metrics: Arc<Metrics>,
        fanout: Fanout,
        eager: bool,
    ) -> io::Result<Arc<Poll>> {
        let poll = Poll {
            meta,
            votes,
            hub: OnceLock::new(),
            long_polls: OnceLock::new(),
            metrics,
            fanout,
            dir: None,
        };
        if eager {
            poll.hub()?;
        }
        Ok(Arc::new(poll))
    }

    pub fn id(&self) -> &str {
        &self.meta.id
    }

    /// The poll's hub, started on first use.
    #[inline(never)]
    pub fn hub(&self) -> io::Result<&Arc<Hub>> {
        if let Some(h) = self.hub.get() {
            return Ok(h);
        }
        // Two first subscribers at once: one hub wins, the other's threads end at once.
        let hub = Hub::start(
            Arc::clone(&self.votes),
            Arc::clone(&self.metrics),
            self.meta.results,
            self.fanout,
        )?;
        if let Err(lost) = self.hub.set(Arc::clone(&hub)) {
            lost.stop(DELETED.0, DELETED.1);
        }
        Ok(self.hub.get().expect("set above"))
    }

    /// The poll's long-poll lot, started on first use.
    pub fn long_polls(&self) -> io::Result<&Arc<Lot>> {
        if let Some(l) = self.long_polls.get() {
            return Ok(l);
        }
        // Two first pollers at once: one lot wins, the other's writer ends at once.
        let lot = Lot::start(
            Arc::clone(&self.votes),
            self.meta.results,
            Arc::clone(&self.metrics),
        )?;
        if let Err(lost) = self.long_polls.set(Arc::clone(&lot)) {
            lost.stop();
        }
        Ok(self.long_polls.get().expect("set above"))
    }

    /// WebSocket subscribers now (0 while the hub has not started).
    pub fn subscribers(&self) -> usize {
        self.hub.get().map_or(0, |h| h.subscribers())
    }

    /// Whether votes here are counted per voter, or voters are remembered to see results
    /// after their vote: a vote without a voter cookie then gets one.
    pub fn counts_voters(&self) -> bool {
        self.meta.mode.per_voter() || self.meta.results == Results::AfterVote
    }

    /// `voter` has voted: in `after_vote`, their open WebSockets get a snapshot with the
    /// counts now (event streams and long-polls see it at their next answer, which this vote
    /// is).
    pub fn voted(&self, voter: &str) {
        if self.meta.results == Results::AfterVote {
            if let Some(h) = self.hub.get() {
                h.reveal_to(voter);
            }
        }
    }

    /// Whether a viewer sees the counts now (see [`Results::visible`]).
    #[inline(never)]
    pub fn visible_to(&self, voter: Option<&str>, presenter: bool) -> bool {
        visible(self.meta.results, &self.votes, voter, presenter)
    }

    /// Ends everything the poll runs: its streams, its hub, its committer.
    fn end(&self, deadline: Instant) {
        self.votes.end_streams();
        if let Some(h) = self.hub.get() {
            h.stop(DELETED.0, DELETED.1);
        }
        if let Some(l) = self.long_polls.get() {
            l.stop();
        }
        self.votes.delete(deadline);
    }
}

/// Whether a viewer (`voter`, the presenter or not) of a poll whose results are `r` and whose
/// votes are `votes` sees the counts now (see [`Results::visible`]).
pub fn visible(r: Results, votes: &Votes, voter: Option<&str>, presenter: bool) -> bool {
    if r == Results::Always || presenter {
        return true;
    }
    let voted = r == Results::AfterVote && voter.is_some_and(|v| votes.voted_for(v).is_some());
    r.visible(votes.poll_closed(), voted, presenter)
}

/// Why a poll was not created.
#[derive(Debug)]
pub enum CreateError {
    /// The id is another poll's.
    Taken,
    /// `--max-polls` polls run already.
    TooMany,
    Io(io::Error),
}

/// Why a poll was not deleted.
#[derive(Debug)]
pub enum DeleteError {
    /// The default poll stays.
    Default,
    NotFound,
    Io(io::Error),
}

/// How the registry makes polls.
pub struct Making {
    pub settings: Settings,
    pub max_polls: usize,
    pub max_voters: usize,
    /// Where journaled polls live (`PATH.polls`); None: in memory (or Redis).
    pub dir: Option<PathBuf>,
    /// `--redis`: every poll's tally, and the registry, in Redis.
    pub redis: Option<redis_store::Settings>,
    pub metrics: Arc<Metrics>,
    pub fanout: Fanout,
}

/// How long a poll stopped because another instance deleted it may take to finish.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// Every poll, by id, in id order.
pub struct Polls {
    list: Mutex<BTreeMap<String, Arc<Poll>>>,
    default: Arc<Poll>,
    making: Making,
    /// With `--redis`: the polls every instance runs.
    registry: Option<registry::Registry>,
    /// Shutting down: the registry starts no more polls.
    ending: AtomicBool,
}

/// Registered polls this instance could not start yet: id → why.
type Unstarted = BTreeMap<String, String>;

const META_FILE: &str = "poll.meta";
const JOURNAL_FILE: &str = "votes.journal";

impl Polls {
    /// The registry with the default poll, and every poll kept under `making.dir` (their
    /// recovery reports go to the log).
    pub fn open(default: Arc<Poll>, making: Making) -> io::Result<Polls> {
        let mut list = BTreeMap::new();
        list.insert(default.id().to_string(), Arc::clone(&default));
        let registry = making.redis.as_ref().map(registry::Registry::new);
        let polls = Polls {
            list: Mutex::new(list),
            default,
            making,
            registry,
            ending: AtomicBool::new(false),
        };
        if polls.registry.is_some() {
            let unstarted = polls.reconcile().map_err(io::Error::other)?;
            Polls::report_unstarted(&unstarted, &Unstarted::new());
        }
        if let Some(dir) = &polls.making.dir {
            let mut found = Vec::new();
            match fs::read_dir(dir) {
                Ok(entries) => {
                    for e in entries {
                        let e = e?;
                        let name = e.file_name().to_string_lossy().into_owned();
                        if crate::ids::POLL.accepts(&name) && e.path().join(META_FILE).exists() {
                            found.push(e.path());
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
            }
            found.sort();
            for path in found {
                let text = fs::read_to_string(path.join(META_FILE))?;
                let meta = Meta::decode(&text).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: {e}", path.display()),
                    )
                })?;
                let poll = polls.start(meta, Some(path), false)?;
                polls.lock().insert(poll.id().to_string(), poll);
            }
        }
        Ok(polls)
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Poll>>> {
        self.list.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn default_poll(&self) -> &Arc<Poll> {
        &self.default
    }

    pub fn get(&self, id: &str) -> Option<Arc<Poll>> {
        self.lock().get(id).cloned()
    }

    /// Every poll, in id order.
    pub fn all(&self) -> Vec<Arc<Poll>> {
        self.lock().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The vote table for `meta`, from its journal in `dir`, from Redis (its keys created
    /// there when `create`: by the instance that made the poll), or in memory, with its
    /// committer (and with Redis, its follower and presence threads) running.
    fn start(&self, meta: Meta, dir: Option<PathBuf>, create: bool) -> io::Result<Arc<Poll>> {
        let settings = Settings {
            rules: Rules {
                mode: meta.mode,
                max_voters: self.making.max_voters,
                track: meta.results == Results::AfterVote,
            },
            ..self.making.settings.clone()
        };
        let votes = match &dir {
            None if self.making.redis.is_some() => {
                let rs = self.making.redis.as_ref().expect("checked");
                let spec = redis_store::PollSpec {
                    id: &meta.id,
                    candidates: &meta.options,
                    rules: settings.rules.clone(),
                    create,
                };
                let (votes, report) = redis_store::start(
                    rs,
                    &spec,
                    &settings,
                    format!("commit-{}", meta.id),
                    Arc::clone(&self.making.metrics),
                )?;
                for line in report {
                    crate::log::info(&format!("poll {}: {line}", meta.id));
                }
                votes
            }
            None => Arc::new(Votes::with_settings(&meta.options, &settings)),
            Some(d) => {
                let (journal, recovery) = super::journal::open(&d.join(JOURNAL_FILE))?;
                let (votes, report) =
                    Votes::durable(&meta.options, Box::new(journal), recovery, &settings);
                for line in report {
                    crate::log::report(&format!("poll {}: {line}", meta.id));
                }
                let votes = Arc::new(votes);
                let (v, m) = (Arc::clone(&votes), Arc::clone(&self.making.metrics));
                std::thread::Builder::new()
                    .name(format!("commit-{}", meta.id))
                    .spawn(move || v.commit_loop(&|d| m.fsync(d)))?;
                votes
            }
        };
        Ok(Arc::new(Poll {
            meta,
            votes,
            hub: OnceLock::new(),
            long_polls: OnceLock::new(),
            metrics: Arc::clone(&self.making.metrics),
            fanout: self.making.fanout,
            dir,
        }))
    }

    /// Makes a new poll (open, no votes) and keeps it.
    pub fn create(&self, meta: Meta) -> Result<Arc<Poll>, CreateError> {
        // Under the registry's lock: two creations of one id, or of the last free place,
        // cannot both win. Creating a poll is rare; its I/O is a directory and two small files.
        let mut list = self.lock();
        if list.contains_key(&meta.id) {
            return Err(CreateError::Taken);
        }
        if list.len() >= self.making.max_polls {
            return Err(CreateError::TooMany);
        }
        if let Some(r) = &self.registry {
            // Redis decides, for every instance: the hash holds every poll but the default.
            let io = |e: redis_store::Error| CreateError::Io(io::Error::other(e));
            match r
                .register(
                    &meta.id,
                    &meta.encode(),
                    self.making.max_polls.saturating_sub(1),
                )
                .map_err(io)?
            {
                registry::Registered::Taken => return Err(CreateError::Taken),
                registry::Registered::Full => return Err(CreateError::TooMany),
                registry::Registered::Ok => {}
            }
            let id = meta.id.clone();
            return match self.start(meta, None, true) {
                Ok(poll) => {
                    list.insert(id, Arc::clone(&poll));
                    Ok(poll)
                }
                Err(e) => {
                    let keys = self.redis_keys(&id);
                    let _ = r.unregister(&id, &keys);
                    Err(CreateError::Io(e))
                }
            };
        }
        let dir = match &self.making.dir {
            None => None,
            Some(root) => {
                let d = root.join(&meta.id);
                write_meta(&d, &meta).map_err(CreateError::Io)?;
                Some(d)
            }
        };
        let poll = self.start(meta, dir, false).map_err(CreateError::Io)?;
        list.insert(poll.id().to_string(), Arc::clone(&poll));
        Ok(poll)
    }

    /// Deletes a poll: its subscribers are closed (WebSocket 1001 "poll deleted"), its streams
    /// end, and its files go.
    pub fn delete(&self, id: &str, deadline: Instant) -> Result<(), DeleteError> {
        if id == meta::DEFAULT_ID {
            return Err(DeleteError::Default);
        }
        let poll = {
            let mut list = self.lock();
            let poll = list.remove(id).ok_or(DeleteError::NotFound)?;
            if let Some(r) = &self.registry {
                // Its keys, then its entry (every instance stops it when it reads that).
                if let Err(e) = r.unregister(id, &self.redis_keys(id)) {
                    list.insert(id.to_string(), poll);
                    return Err(DeleteError::Io(io::Error::other(e)));
                }
            }
            poll
        };
        poll.end(deadline);
        if let Some(dir) = &poll.dir {
            // Renamed first, so a crash during the removal leaves no half poll to load.
            let gone = dir.with_file_name(format!(".deleted-{id}-{}", super::store::now_ms()));
            fs::rename(dir, &gone).map_err(DeleteError::Io)?;
            let _ = sync_dir_of(dir);
            fs::remove_dir_all(&gone).map_err(DeleteError::Io)?;
        }
        Ok(())
    }

    /// Every key of poll `id` in Redis.
    fn redis_keys(&self, id: &str) -> Vec<String> {
        let prefix = self.making.redis.as_ref().map_or("", |r| r.prefix.as_str());
        redis_store::keys::Keys::new(prefix, id).all()
    }

    /// Brings the polls this instance runs to the registry in Redis: starts the ones it lacks,
    /// stops the ones deleted (or deleted and made again: another meta). Under the registry's
    /// lock, so a creation or deletion here is never half seen. Returns the polls that could not
    /// be started yet: the instance that made it registers it before it creates its keys
    /// (they live in another hash slot, so not in the same script), and a follower quick
    /// enough finds the entry first; it tries again soon, not only at the next change.
    fn reconcile(&self) -> Result<Unstarted, redis_store::Error> {
        let Some(r) = &self.registry else {
            return Ok(Unstarted::new());
        };
        let mut stopped = Vec::new();
        let mut pending = Unstarted::new();
        {
            let mut list = self.lock();
            if self.ending.load(Ordering::Relaxed) {
                return Ok(pending);
            }
            let wanted: BTreeMap<String, String> = r.load()?.into_iter().collect();
            let gone: Vec<String> = list
                .iter()
                .filter(|(id, p)| {
                    id.as_str() != meta::DEFAULT_ID
                        && wanted.get(id.as_str()) != Some(&p.meta.encode())
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in gone {
                stopped.extend(list.remove(&id));
            }
            for (id, text) in wanted {
                if list.contains_key(&id) || id == meta::DEFAULT_ID {
                    continue;
                }
                let started = Meta::decode(&text)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
                    .and_then(|m| self.start(m, None, false));
                match started {
                    Ok(poll) => {
                        list.insert(id, poll);
                    }
                    // Tried again within a registry read (`registry::BLOCK`).
                    Err(e) => {
                        pending.insert(id, e.to_string());
                    }
                }
            }
        }
        for p in stopped {
            crate::log::info(&format!("poll {}: deleted on another instance", p.id()));
            p.end(Instant::now() + STOP_WAIT);
        }
        Ok(pending)
    }

    /// Says which polls could not start, each once while it stays so (they are tried again
    /// every second: a poll whose keys are gone for good must not fill the log).
    fn report_unstarted(now: &Unstarted, before: &Unstarted) {
        for (id, why) in now.iter().filter(|(id, _)| !before.contains_key(*id)) {
            crate::log::info(&format!("poll {id}: not started yet: {why}"));
        }
    }

    /// With `--redis`: starts the thread that follows the registry's changes (one blocking
    /// read of its stream at a time); it ends with the registry.
    pub fn follow_registry(polls: &Arc<Polls>) -> io::Result<()> {
        let Some(settings) = polls.making.redis.clone() else {
            return Ok(());
        };
        let weak: Weak<Polls> = Arc::downgrade(polls);
        std::thread::Builder::new()
            .name("redis-polls".into())
            .spawn(move || {
                let mut watch = registry::Watch::new(&settings);
                let mut down = false;
                let mut pending = Unstarted::new();
                while let Some(polls) = weak.upgrade() {
                    if polls.ending.load(Ordering::Relaxed) {
                        return;
                    }
                    let read =
                        watch
                            .wait()
                            .and_then(|changed| match changed || !pending.is_empty() {
                                true => polls.reconcile().map(Some),
                                false => Ok(None),
                            });
                    match read {
                        Ok(Some(now)) => {
                            Polls::report_unstarted(&now, &pending);
                            pending = now;
                            down = false;
                        }
                        Ok(None) => down = false,
                        Err(e) => {
                            if !down {
                                crate::log::error(&format!("redis: the polls registry: {e}"));
                                down = true;
                            }
                            drop(polls);
                            std::thread::sleep(registry::BLOCK);
                        }
                    }
                }
            })?;
        Ok(())
    }

    /// Ends every poll's streams (a shutdown).
    pub fn end_streams(&self) {
        self.ending.store(true, Ordering::Relaxed);
        for p in self.all() {
            p.votes.end_streams();
        }
    }

    /// Closes every poll's store; false if one was still storing votes at `deadline`.
    pub fn close(&self, deadline: Instant) -> bool {
        // Every one, even after one that timed out (no short circuit).
        let closed: Vec<bool> = self.all().iter().map(|p| p.votes.close(deadline)).collect();
        closed.into_iter().all(|c| c)
    }
}

/// Writes a new poll's directory and its metadata file durably; the new directory's entry in
/// its parent is made durable too.
fn write_meta(dir: &Path, meta: &Meta) -> io::Result<()> {
    write_durably(&dir.join(META_FILE), meta.encode().as_bytes(), 0o644)?;
    sync_dir_of(dir)
}
