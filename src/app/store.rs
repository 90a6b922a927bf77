//! The storage boundary of the tally. Layer: below the vote table (`app::votes`), above the
//! concrete stores. The vote table hands a [`Store`] each batch of acknowledged votes and, now
//! and then, a checkpoint of the whole tally; at start it is rebuilt from the store's
//! [`Recovery`]. Routes and transports never see which store runs: memory (no store at all —
//! votes count at once and are lost at exit) or the journal (`app::journal`, files with a
//! checksum per record) — both the one writer of their tally, so the vote table numbers the
//! votes — or Redis (`app::redis_store`), shared by many instances, which numbers them itself
//! and whose changes reach every instance's table through its follower.

use std::io;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::journal;
use crate::config::Config;

/// One acknowledged change of the tally: its `version`, the candidate, the client's vote id,
/// when it was counted (wall-clock milliseconds since the Unix epoch), so the vote id's
/// exactly-once window survives a restart, and what it did (`entry`: a vote, unless a poll's
/// voter rules or its state made it something else).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub version: u64,
    /// The candidate voted for; empty for a [`Entry::Mark`].
    pub uid: String,
    pub vote_id: Option<String>,
    pub at_ms: u64,
    pub entry: Entry,
}

/// What one record did to the tally.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Entry {
    /// `uid` +1: every click counts (the `unlimited` mode, and the seed's poll).
    #[default]
    Vote,
    /// A voter's vote in a one-vote-per-voter poll (`once`, `change`): `uid` +1 and, when the
    /// voter moved their vote, `from` −1 in the same version; the voter now stands on `uid`.
    Ballot { voter: String, from: Option<String> },
    /// The poll's state changed, as a version of its own, so that every client's cursor sees
    /// it (its next answer is a snapshot).
    Mark(Mark),
}

/// A change of a poll's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// Votes are refused from here on.
    Closed,
    /// Votes are taken again.
    Opened,
    /// Every count back to zero and every voter forgotten (the state stays).
    Reset,
}

impl Mark {
    /// Its name in a shared store's change stream.
    pub fn name(self) -> &'static str {
        match self {
            Mark::Closed => "closed",
            Mark::Opened => "opened",
            Mark::Reset => "reset",
        }
    }

    pub fn parse(s: &str) -> Option<Mark> {
        [Mark::Closed, Mark::Opened, Mark::Reset]
            .into_iter()
            .find(|m| m.name() == s)
    }
}

/// What a poll's voters stand on and whether it is closed: the part of a poll's state that
/// changes with its records, kept in checkpoints with the counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Standing {
    /// (voter, uid) for every voter of a one-vote-per-voter poll, in no particular order.
    pub voters: Vec<(String, String)>,
    /// The last [`Mark::Closed`] has not been followed by a [`Mark::Opened`].
    pub closed: bool,
}

/// A vote remembered by its vote id, so a retry gets the same answer: candidate `uid` had `count`
/// votes after it, at `version`, counted at `at_ms` (ms since the Unix epoch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecentVote {
    pub vote_id: String,
    pub uid: String,
    pub count: u64,
    pub version: u64,
    pub at_ms: u64,
}

/// What a commit did with its records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Committed {
    /// Kept as numbered (the store has one writer, us): the vote table counts them itself.
    AsNumbered,
    /// A store shared by several instances numbered them itself, in `epoch`: one outcome per
    /// record, in order. The vote table counts them from the store's change stream: `tail`,
    /// the changes after the copy's version when the batch was taken, up to a cap, in order
    /// (every instance's, ours among them), so the committer brings the copy up to its own
    /// votes without waiting for the follower; the follower applies the rest.
    Shared {
        epoch: String,
        outcomes: Vec<Outcome>,
        tail: Vec<Streamed>,
    },
}

/// One version of a shared store's change stream, as every instance's copy applies it: a vote
/// (`uid` has `count` now), a voter's ballot (`voter` stands on `uid` now; when they moved
/// their vote, `from` has its count after the −1, in the same version), or a mark (the
/// poll's state changed: `uid` is empty).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Streamed {
    pub version: u64,
    pub uid: String,
    pub count: u64,
    pub voter: Option<String>,
    pub from: Option<(String, u64)>,
    pub mark: Option<Mark>,
}

impl Streamed {
    /// A plain vote: `uid` has `count` as of `version`.
    pub fn vote(version: u64, uid: &str, count: u64) -> Streamed {
        Streamed {
            version,
            uid: uid.to_string(),
            count,
            ..Streamed::default()
        }
    }
}

/// What a shared store did with one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Counted: the record's candidate has `count` votes as of `version`.
    Counted { count: u64, version: u64 },
    /// Its vote id was counted before (on any instance): that vote's answer; nothing changed.
    Replayed {
        uid: String,
        count: u64,
        version: u64,
    },
    /// A voter moved their vote (`change`): the record's candidate has `count` as of
    /// `version`, and `from` (the old one) has the count after its −1, in the same version.
    Moved {
        count: u64,
        version: u64,
        from: (String, u64),
    },
    /// The store does not know the candidate (its candidates changed meanwhile): not counted.
    UnknownCandidate,
    /// The poll is closed (as the store has it, whichever instance closed it): not counted.
    Closed,
    /// `once`: the voter has voted (for `uid`), on any instance: not counted.
    AlreadyVoted { uid: String },
    /// The poll remembers as many voters as it may: not counted.
    VotersFull,
    /// Its vote id is new and the store's vote-id records are full of ids still inside their
    /// window: not counted; room comes back after `retry_after_ms`.
    VoteIdsFull { retry_after_ms: u64 },
}

/// What a store rebuilt at open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// Names this history of votes; kept across restarts, new only when there was nothing.
    pub epoch: String,
    /// The last version recovered; the next vote is `version + 1`. Versions are never reused,
    /// so after lost votes `version` is more than the sum of the counts.
    pub version: u64,
    /// Votes per uid. May name uids that are no longer configured.
    pub counts: Vec<(String, u64)>,
    /// Remembered vote ids, oldest first. Which of them are still inside the window is the
    /// caller's business (it knows the window and the time).
    pub recent: Vec<RecentVote>,
    /// Acknowledged votes that damage made unrecoverable (each is also in `report`).
    pub lost: u64,
    /// Lines for stderr: what was recovered, in how long, and every damage found and repaired.
    pub report: Vec<String>,
    /// The voters and the state, as the records and the checkpoint left them.
    pub standing: Standing,
}

/// A failed commit whose records may still be recovered later (see [`Store::commit`]).
#[derive(Debug)]
struct MaybeStored(io::Error);

impl std::fmt::Display for MaybeStored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (the records may still be recovered)", self.0)
    }
}

impl std::error::Error for MaybeStored {}

/// Marks `e` as a failure after which the records may still be recovered.
pub fn maybe_stored(e: io::Error) -> io::Error {
    io::Error::new(e.kind(), MaybeStored(e))
}

/// Whether `e` is [`maybe_stored`]: the votes' outcome is unknown, not "not counted".
pub fn may_be_stored(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<MaybeStored>())
}

/// Where acknowledged votes are kept. Only the committer thread calls it, one call at a time;
/// a call may block (disk, network): the vote table's own deadline (`--vote-timeout`) frees the
/// voters meanwhile.
pub trait Store: Send {
    /// Makes `records` durable, in order: when it returns `Ok`, a restart recovers them. Their
    /// versions are consecutive, continuing from the last committed one. On `Err` none of them
    /// may be recovered later (the caller answers that they were not counted) — unless the error
    /// is [`maybe_stored`]: the store could not undo a partial write, so a restart may recover
    /// them (the caller answers "outcome unknown").
    ///
    /// A shared store ignores the records' versions and answers [`Committed::Shared`]; a
    /// store with one writer answers [`Committed::AsNumbered`].
    fn commit(&mut self, records: &[Record]) -> io::Result<Committed>;

    /// Whether several instances share this store (it numbers the votes; see
    /// [`Committed::Shared`]).
    fn shared(&self) -> bool {
        false
    }

    /// Whether a checkpoint would now make recovery faster (e.g. the journal grew long).
    fn checkpoint_due(&self) -> bool;

    /// Whether the store can take votes now, as far as it can tell without writing (`/readyz`).
    /// A shared store says `Ok`: its outage is every instance's, and readiness must not flip
    /// on all of them at once.
    fn usable(&self) -> io::Result<()> {
        Ok(())
    }

    /// Stores the whole tally at `version` (the last committed one), the remembered vote ids
    /// and the standing, so recovery can start from it. A failed checkpoint loses nothing.
    fn checkpoint(
        &mut self,
        version: u64,
        counts: &[(String, u64)],
        recent: &[RecentVote],
        standing: &Standing,
    ) -> io::Result<()>;
}

/// Opens the store the configuration names and recovers the tally from it: `None` for memory
/// (`--memory`), the journal for `--data PATH`.
pub fn open(config: &Config) -> io::Result<Option<(Box<dyn Store>, Recovery)>> {
    match &config.data {
        None => Ok(None),
        Some(path) => {
            let (journal, recovery) = journal::open(path)?;
            Ok(Some((Box::new(journal), recovery)))
        }
    }
}

/// `path` with `suffix` added to its file name (`votes.journal` → `votes.journal.polls`).
pub fn suffixed(path: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    s.into()
}

/// Writes a small file so that a crash leaves either the old one or the new one, whole: its
/// directories made, a temporary file (permissions `mode`) written and fsynced, renamed over
/// `path`, the directory fsynced so the rename itself survives. For the files written once or
/// rarely (a poll's meta, the cookie secret); the journal has its own, with fsync metrics.
pub fn write_durably(path: &std::path::Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::fs;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(d) = dir {
        fs::create_dir_all(d)?;
    }
    let tmp = suffixed(path, ".tmp");
    let written = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    sync_dir_of(path)
}

/// Makes a change in `path`'s directory (a rename, a creation, a removal) durable.
pub fn sync_dir_of(path: &std::path::Path) -> std::io::Result<()> {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => std::fs::File::open(d)?.sync_all(),
        _ => Ok(()),
    }
}

/// A new epoch: the time in nanoseconds mixed with the process id, as 16 hex digits.
pub fn new_epoch() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let pid = u64::from(std::process::id());
    format!("{:016x}", nanos ^ pid.rotate_left(48))
}

/// Wall-clock milliseconds since the Unix epoch (0 for a clock before 1970): the time stored
/// with each vote.
///
/// The wall clock is read once, at the first call, and advanced from there by the monotonic
/// clock: a wall clock stepped while the server runs (NTP after a pause, a corrected RTC) moves
/// no vote id's expiry, so the window neither forgets young ids at once (a step forward) nor
/// stops expiring them (a step back). Across a restart, times come from the new reading, and
/// recovery treats a stored time after it as now.
pub fn now_ms() -> u64 {
    static START: OnceLock<(u64, Instant)> = OnceLock::new();
    let (wall, at) = *START.get_or_init(|| {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis().min(u128::from(u64::MAX)) as u64);
        (wall, Instant::now())
    });
    let since = at.elapsed().as_millis().min(u128::from(u64::MAX)) as u64;
    wall.saturating_add(since)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_follows_the_monotonic_clock_from_one_wall_clock_reading() {
        let a = now_ms();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        // The same clock as the wall's, read once: close to it (a minute covers a slow start).
        assert!(a.abs_diff(wall) < 60_000, "{a} vs {wall}");
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = now_ms();
        assert!(
            b >= a + 19,
            "{a} then {b}: it advances with the monotonic clock"
        );
    }
    #[test]
    fn a_small_file_is_written_whole_with_its_mode_and_replaced_whole() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("livevote-durably-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // Its directories are made.
        let path = dir.join("a/b/secret");
        write_durably(&path, b"first", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        write_durably(&path, b"second", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        // No temporary file is left beside it.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["secret"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
