//! The tally in Redis (`--redis`), shared by many instances: Redis is the source of truth
//! for the epoch, the candidates, the counts, the version, the history of changes and the vote
//! ids; each instance keeps a follower copy (`app::votes`) for serving and fan-out.
//!
//! Three parts, each with its own connection, so none waits behind another:
//! - [`RedisStore`], the [`Store`] the group committer calls: one batch of votes is one script
//!   run ([`scripts::VOTE`]), applying each vote with its history entry and its vote id
//!   record atomically, in Redis's order across every instance;
//! - the follower ([`follower`]), one thread blocked on `XREAD` of the change stream, which
//!   applies every instance's votes to the local copy, resynchronises from a snapshot after a
//!   gap, a reconnect or a new epoch, and says when Redis is unreachable (degraded);
//! - presence ([`presence`]), which adds this instance's viewers to every other's once per
//!   tick, with a time-to-live, so a dead instance's viewers drop out.
//!
//! Keys: [`keys`]. Replies are read by the pure functions of [`scripts`].

pub mod follower;
pub mod keys;
pub mod presence;
pub mod registry;
pub mod scripts;

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::metrics::Metrics;
use super::store::{self, Committed, Entry, RecentVote, Record, Recovery, Standing, Store};
use super::votes::Rules;
use crate::redis::{self, Client, Options, RedisUrl, Value};
use keys::Keys;
use scripts::{PollState, Script};

/// Votes kept in the stream (`XADD … MINID ~`, by version): an instance whose follower was
/// cut off for fewer votes than this catches up vote by vote; further behind, from a snapshot.
/// Above the
/// local history ([`super::votes::HISTORY`]), so a short outage costs no client a snapshot.
pub const STREAM_LENGTH: u64 = 16_384;

/// Most votes one [`scripts::VOTE`] run takes: its stream entry and its writes hold four
/// values per vote in one Lua `unpack`, and Lua's stack takes at most 8,000 (a larger batch is
/// several runs, in order).
pub const VOTES_PER_SCRIPT: usize = 1_000;

/// Most records one run takes when the batch holds ballots or marks: a moved ballot is ten
/// values of its stream entry (voter, uid, count, the old option and its count, each with its
/// field name), and Lua's `unpack` still takes them all.
pub const BALLOTS_PER_SCRIPT: usize = 400;

/// Most stream entries a vote batch's reply carries back (the changes after the committer's
/// copy, every instance's): enough for the votes all instances commit in one round trip, so the
/// copy shows the batch's own votes at once; a copy further behind leaves the rest to the
/// follower (the batch's answers then wait for it, as read-your-writes requires).
pub const TAIL_MAX: u64 = 1_024;

/// What one vote-id record holds in Redis (its hash field and value, its sorted-set entry and
/// their overhead), for a UUID: 264 bytes measured by `INFO memory`'s `used_memory` over
/// 100,000 records on Redis 7.0, rounded up. `--vote-id-memory` divided by this is the most
/// records Redis holds for the poll (64 MiB: 246,723 ids).
pub const REDIS_BYTES_PER_VOTE_ID: usize = 272;

/// Why the Redis store failed: the connection, or a reply we did not expect (an error reply
/// or a wrong shape).
#[derive(Debug)]
pub enum Error {
    Redis(redis::Error),
    Reply(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Redis(e) => write!(f, "{e}"),
            Error::Reply(e) => write!(f, "Redis answered: {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    /// As the store boundary says it: a command that may have run is "maybe stored" (its votes'
    /// outcome is unknown); anything else did not count.
    fn into_io(self) -> io::Error {
        match self {
            Error::Redis(e) if e.may_have_run() => store::maybe_stored(io::Error::other(e)),
            Error::Redis(e) => io::Error::other(e),
            Error::Reply(e) => io::Error::other(format!("Redis answered: {e}")),
        }
    }
}

/// What every part needs to reach the poll.
#[derive(Clone, Debug)]
pub struct Target {
    pub url: RedisUrl,
    pub keys: Keys,
    pub opts: Options,
    /// Written with a new epoch when Redis has lost the poll.
    pub candidates: Vec<(String, String)>,
    /// Whether this instance may create the poll in Redis when it is not there: the default
    /// poll, always (an empty Redis is a new epoch); a poll of the admin API only where it is
    /// made, so a lagging instance never brings a deleted poll back.
    pub create: bool,
}

impl Target {
    /// Creates the poll if Redis does not have it (and we may), and reads it whole.
    pub fn open_poll(&self, client: &mut Client, deadline: Instant) -> Result<PollState, Error> {
        let epoch = if self.create {
            store::new_epoch()
        } else {
            String::new()
        };
        let mut args = vec![epoch.into_bytes()];
        for (uid, name) in &self.candidates {
            args.push(uid.clone().into_bytes());
            args.push(name.clone().into_bytes());
        }
        let reply = Script::new(scripts::OPEN).run(client, &self.keys.open(), &args, deadline)?;
        scripts::read_open(&reply)
    }
}

/// How this instance reaches Redis, for every poll's store (the command line's `--redis`
/// flags).
#[derive(Clone, Debug)]
pub struct Settings {
    pub url: RedisUrl,
    pub prefix: String,
    pub vote_id_window: Duration,
    pub vote_id_memory: usize,
    pub vote_timeout: Duration,
}

impl Settings {
    pub fn options(&self) -> Options {
        Options {
            timeout: self.vote_timeout,
            ..Options::default()
        }
    }
}

/// The poll a store serves.
pub struct PollSpec<'a> {
    pub id: &'a str,
    pub candidates: &'a [(String, String)],
    pub rules: Rules,
    /// See [`Target::create`].
    pub create: bool,
}

/// The store the committer calls.
pub struct RedisStore {
    client: Client,
    target: Target,
    vote: Script,
    /// The poll's voter rules, which the script enforces across instances.
    rules: Rules,
    window_ms: u64,
    /// Most vote-id records in Redis: `--vote-id-memory` / [`REDIS_BYTES_PER_VOTE_ID`].
    max_ids: u64,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

/// What [`open`] found.
pub struct Opened {
    pub store: RedisStore,
    pub recovery: Recovery,
    /// The poll's candidates as Redis has them (they win over `--candidate`).
    pub candidates: Vec<(String, String)>,
    pub target: Target,
}

/// A poll's tally kept in Redis, running: opened (see [`open`]), this instance's copy built
/// with `votes` settings, and its committer (thread `commit_name`), stream follower and
/// presence threads started. Returns the copy and what the opening has to report.
pub fn start(
    settings: &Settings,
    poll: &PollSpec,
    votes: &super::votes::Settings,
    commit_name: String,
    metrics: Arc<Metrics>,
) -> io::Result<(Arc<super::votes::Votes>, Vec<String>)> {
    let opened = open(settings, poll, Arc::clone(&metrics))?;
    let (copy, report) = super::votes::Votes::durable(
        &opened.candidates,
        Box::new(opened.store),
        opened.recovery,
        votes,
    );
    let copy = Arc::new(copy);
    let v = Arc::clone(&copy);
    std::thread::Builder::new()
        .name(commit_name)
        .spawn(move || v.commit_loop(&|_| {}))?;
    follower::start(&copy, opened.target.clone(), metrics)?;
    presence::start(&copy, opened.target)?;
    Ok((copy, report))
}

/// Connects to Redis (failing now when it cannot: a wrong address or password should stop
/// the start, not every vote), creates the poll if Redis has none (a new epoch and a zero
/// tally, with our candidates) and we may, and reads it.
pub fn open(settings: &Settings, poll: &PollSpec, metrics: Arc<Metrics>) -> io::Result<Opened> {
    let url = &settings.url;
    let opts = settings.options();
    let fail = |e: Error| io::Error::other(format!("--redis {url}, poll {}: {e}", poll.id));
    let mut client = Client::connect(url.clone(), opts).map_err(|e| fail(Error::Redis(e)))?;
    let target = Target {
        url: url.clone(),
        keys: Keys::new(&settings.prefix, poll.id),
        opts,
        candidates: poll.candidates.to_vec(),
        create: poll.create,
    };
    let mut report = Vec::new();
    if poll.id == keys::DEFAULT_POLL {
        report.extend(eviction_warning(&mut client));
    }
    let state = target
        .open_poll(&mut client, Instant::now() + settings.vote_timeout)
        .map_err(fail)?;
    if state.candidates != poll.candidates {
        let list = |c: &[(String, String)]| {
            c.iter()
                .map(|(u, n)| format!("{u}={n}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        report.push(format!(
            "redis: the poll in Redis has the candidates {}; the --candidate flags ({}) are \
             not used",
            list(&state.candidates),
            list(poll.candidates)
        ));
    }
    report.push(format!(
        "redis: {url}, poll {}: epoch {}, version {}, {} vote(s)",
        poll.id,
        state.epoch,
        state.version,
        state.counts.iter().map(|(_, c)| c).sum::<u64>()
    ));
    metrics
        .redis
        .enabled
        .store(true, std::sync::atomic::Ordering::Relaxed);
    metrics
        .redis
        .up
        .store(1, std::sync::atomic::Ordering::Relaxed);
    let target = Target {
        candidates: state.candidates.clone(),
        ..target
    };
    let recovery = Recovery {
        epoch: state.epoch.clone(),
        version: state.version,
        counts: state.counts.clone(),
        recent: Vec::new(),
        lost: 0,
        report,
        standing: Standing {
            voters: state.voters.clone(),
            closed: state.closed,
        },
    };
    Ok(Opened {
        store: RedisStore {
            client,
            target: target.clone(),
            vote: Script::new(scripts::VOTE),
            rules: poll.rules.clone(),
            window_ms: settings
                .vote_id_window
                .as_millis()
                .clamp(1, u128::from(u64::MAX)) as u64,
            max_ids: (settings.vote_id_memory / REDIS_BYTES_PER_VOTE_ID) as u64,
            timeout: settings.vote_timeout,
            metrics,
        },
        recovery,
        candidates: state.candidates,
        target,
    })
}

/// The secrets every instance must share: the cookie-signing secret, and the admin token
/// when none was given.
pub struct Shared {
    pub secret: Vec<u8>,
    pub token: String,
    /// This instance made the token now (it says it once on stderr; the others do not).
    pub made_token: bool,
}

/// The cookie-signing secret (`PREFIX:secret`) and, without `token`, the admin token
/// (`PREFIX:admin-token`), each made once by whichever instance comes first (`SET NX`) and
/// read by every one, so every instance accepts the same voter cookies and the same token.
pub fn shared_secrets(
    url: &RedisUrl,
    prefix: &str,
    token: Option<&str>,
    timeout: Duration,
) -> io::Result<Shared> {
    let opts = Options {
        timeout,
        ..Options::default()
    };
    let fail = |e: Error| io::Error::other(format!("--redis {url}: {e}"));
    let mut client = Client::connect(url.clone(), opts).map_err(|e| fail(Error::Redis(e)))?;
    let deadline = Instant::now() + timeout;
    let mut once = |key: String, value: &str| -> Result<String, Error> {
        let set = [b"SET".as_slice(), key.as_bytes(), value.as_bytes(), b"NX"];
        let r = client.call_by(&set, deadline).map_err(Error::Redis)?;
        if let Some(e) = r.error_message() {
            return Err(Error::Reply(e));
        }
        let r = client
            .call_by(&[b"GET", key.as_bytes()], deadline)
            .map_err(Error::Redis)?;
        r.as_bytes()
            .and_then(|b| std::str::from_utf8(b).ok())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .ok_or_else(|| Error::Reply(format!("{key}: {r:?}")))
    };
    let secret = once(format!("{prefix}:secret"), &crate::sign::random_hex(32)?).map_err(fail)?;
    let (token, made_token) = match token {
        Some(t) => (t.to_string(), false),
        None => {
            let mine = crate::sign::random_hex(16)?;
            let t = once(format!("{prefix}:admin-token"), &mine).map_err(fail)?;
            let made = t == mine;
            (t, made)
        }
    };
    Ok(Shared {
        secret: secret.into_bytes(),
        token,
        made_token,
    })
}

/// A warning when Redis may evict keys: an evicted vote id would count its retry again.
fn eviction_warning(client: &mut Client) -> Option<String> {
    let reply = client.call(&[b"CONFIG", b"GET", b"maxmemory-policy"]);
    let policy = match &reply {
        Ok(Value::Array(a)) => a.get(1).and_then(Value::as_bytes),
        _ => None,
    };
    match policy {
        Some(b"noeviction") => None,
        Some(p) => Some(format!(
            "redis: WARNING: maxmemory-policy is {}: Redis may evict keys, and an evicted vote \
             id counts its retry again. Set maxmemory-policy noeviction.",
            String::from_utf8_lossy(p)
        )),
        None => Some(
            "redis: WARNING: cannot read maxmemory-policy (CONFIG GET refused): make sure it \
             is noeviction, or an evicted vote id counts its retry again"
                .to_string(),
        ),
    }
}

impl RedisStore {
    /// One script run per [`VOTES_PER_SCRIPT`] records, in order; the last run's tail covers
    /// them all (it starts at the copy's version).
    fn run_batch(&mut self, records: &[Record], deadline: Instant) -> Result<Committed, Error> {
        // The copy's version when the batch was taken: the records are numbered after it.
        let after = records.first().map_or(0, |r| r.version.saturating_sub(1));
        let mut all = Vec::with_capacity(records.len());
        let mut last = None;
        let per = if records.iter().all(|r| r.entry == Entry::Vote) {
            VOTES_PER_SCRIPT
        } else {
            BALLOTS_PER_SCRIPT
        };
        for chunk in records.chunks(per) {
            let r = self.run_votes(chunk, after, deadline)?;
            all.extend(r.outcomes);
            last = Some((r.epoch, r.tail));
        }
        let (epoch, tail) = last.unwrap_or_default();
        Ok(Committed::Shared {
            epoch,
            outcomes: all,
            tail,
        })
    }

    fn run_votes(
        &mut self,
        records: &[Record],
        after: u64,
        deadline: Instant,
    ) -> Result<scripts::VoteReply, Error> {
        let mut keys: Vec<String> = self.target.keys.tally().to_vec();
        keys.push(self.target.keys.vote_ids());
        keys.push(self.target.keys.vote_expiry());
        keys.push(self.target.keys.state());
        keys.push(self.target.keys.voters());
        let mut args: Vec<Vec<u8>> = Vec::with_capacity(9 + 2 * records.len());
        args.push(self.window_ms.to_string().into_bytes());
        args.push(STREAM_LENGTH.to_string().into_bytes());
        args.push(self.max_ids.to_string().into_bytes());
        args.push(records.len().to_string().into_bytes());
        args.push(after.to_string().into_bytes());
        args.push(TAIL_MAX.to_string().into_bytes());
        for r in records {
            args.push(r.uid.clone().into_bytes());
            args.push(r.vote_id.clone().unwrap_or_default().into_bytes());
        }
        // Ballots and marks, by index, after the votes: plain votes pay nothing for them.
        let mut extras: Vec<Vec<u8>> = Vec::new();
        for (k, r) in records.iter().enumerate() {
            let (kind, value) = match &r.entry {
                Entry::Vote => continue,
                Entry::Ballot { voter, .. } => ("b", voter.as_str()),
                Entry::Mark(m) => ("k", m.name()),
            };
            extras.push(k.to_string().into_bytes());
            extras.push(kind.as_bytes().to_vec());
            extras.push(value.as_bytes().to_vec());
        }
        args.push(self.rules.mode.name().as_bytes().to_vec());
        args.push(self.rules.max_voters.to_string().into_bytes());
        args.push((extras.len() / 3).to_string().into_bytes());
        args.extend(extras);
        let reply = self.vote.run(&mut self.client, &keys, &args, deadline)?;
        scripts::read_vote(&reply, records.len())
    }
}

impl Store for RedisStore {
    fn commit(&mut self, records: &[Record]) -> io::Result<Committed> {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let r = match self.run_batch(records, deadline) {
            // Redis lost the poll (restarted empty): a new epoch, then the votes, once.
            Err(Error::Reply(e)) if e.starts_with("LVNOPOLL") => self
                .target
                .open_poll(&mut self.client, deadline)
                .and_then(|_| self.run_batch(records, deadline)),
            r => r,
        };
        let m = &self.metrics.redis;
        m.commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        m.commit_latency.observe(started.elapsed());
        r.map_err(Error::into_io)
    }

    fn shared(&self) -> bool {
        true
    }

    fn checkpoint_due(&self) -> bool {
        false
    }

    /// Redis keeps the whole tally at every vote: nothing to do.
    fn checkpoint(
        &mut self,
        _: u64,
        _: &[(String, u64)],
        _: &[RecentVote],
        _: &Standing,
    ) -> io::Result<()> {
        Ok(())
    }
}
