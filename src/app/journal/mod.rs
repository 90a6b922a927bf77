//! The vote journal: durable, checksummed storage of acknowledged votes, and the recovery of the
//! tally from it after a crash. Layer: storage for the vote table (`app::votes`), below it. It
//! knows files and bytes only — no threads, no HTTP, no candidates' names — and it never decides
//! what a vote means: it keeps candidate uids verbatim and hands back counts per uid, so a
//! candidate removed from the configuration keeps its count on disk and a renamed one (same uid)
//! keeps its votes. The caller decides what to do with uids it no longer knows.
//!
//! # Files
//! For a journal at `data/votes.journal`:
//! - `data/votes.journal`: a header, then records appended by [`Journal::commit`];
//! - `data/votes.journal.snapshot`: the tally at one version, written by [`Journal::checkpoint`];
//! - `data/votes.journal.lock`: advisory-locked while a [`Journal`] is open, so two servers never
//!   append to one journal (the lock dies with the process, even on `kill -9`);
//! - `*.tmp`: a file being written before its atomic rename; a stale one is simply overwritten.
//!
//! # On-disk format
//! Integers are little-endian; CRC-32 is CRC-32/IEEE (reflected polynomial `0xEDB88320`, the one
//! of zip and Ethernet). Ids are ASCII `A-Z a-z 0-9 _ -`: uids and epochs 1–32 bytes, vote ids
//! and voter ids 1–64 bytes. Times are wall-clock milliseconds since the Unix epoch (u64).
//! Format 3, written by this version:
//! ```text
//! journal header  "LVJF" | format u16 (3) | base version u64 | epoch length u8 | epoch
//!                 | CRC-32 of all before
//! record          A7 56 | payload length u16 (18..=213) | CRC-32 of (length, payload) | payload
//! payload         record type u8 | the type's fields
//!   type 1, vote    version u64 | time u64 | uid length u8 | uid | vote-id length u8 (0: none)
//!                   | vote id                                             (payload 20..=115)
//!   type 2, ballot  version u64 | time u64 | uid length u8 | uid | vote-id length u8 (0: none)
//!                   | vote id | voter length u8 | voter | from length u8 (0: none) | from
//!                                                                         (payload 23..=213)
//!   type 3, mark    version u64 | time u64 | mark u8 (1 closed, 2 opened, 3 reset)
//!                                                                         (payload 18)
//! snapshot        "LVSF" | format u16 (3) | body length u64 | body | CRC-32 of all before
//! body            epoch length u8 | epoch | version u64
//!                 | n u32 | n × (uid length u8 | uid | count u64)
//!                 | m u32 | m × (vote-id length u8 | vote id | uid length u8 | uid
//!                            | count after the vote u64 | version u64 | time u64)
//!                 | voters u32 | voters × (voter length u8 | voter | uid length u8 | uid)
//!                 | closed u8 (0 open, 1 closed)
//! ```
//! The records of one journal have consecutive versions `base + 1, base + 2, …`; the record
//! magic starts with a byte that no id contains, and together with the length bound, the
//! checksum and that sequence it lets recovery find the next good record after a damaged one.
//! A vote counts one for its uid. A ballot is a voter's vote in a one-vote-per-voter poll: one
//! for its uid and, when the voter moved their vote, one less for `from`, in the same version;
//! the voter now stands on its uid. A mark changes the poll's state in a version of its own:
//! closed, opened again, or reset (every count to 0 and every voter forgotten). The snapshot's
//! voters and `closed` are that standing at its version.
//!
//! **Versions.** The magic names the kind of file, the format field its layout: a later format
//! raises the field (a reader refuses one newer than it knows, saying so), and a later record
//! type is a new type byte (a reader refuses a checksum-valid record of a type it does not
//! know rather than guess what it meant). So new record types are additive.
//!
//! **Format 2** (read, never written): the same header, record framing and snapshot with the
//! format field 2, records of type 1 only (payload length 20..=115), and a snapshot body that
//! ends after the remembered votes (no voters, no `closed`: nothing but votes existed).
//!
//! **Format 1** (read, never written): `"LVJ1" | base version u64 | epoch length u8 | epoch |
//! CRC-32` as the header; records `A7 56 | length u16 (11..=106) | CRC-32 | version u64 | uid
//! length u8 | uid | vote-id length u8 | vote id` (no type, no time); snapshot `"LVS1" | body
//! length u64 | body | CRC-32` with remembered votes `vote id | uid | count u64 | version u64`
//! (no time). Its remembered vote ids get the time of opening, so they are kept for a whole
//! `--vote-id-window` after the restart (a retry then is still answered).
//!
//! Having read format 1 or 2 (the journal's or the snapshot's), [`open`] upgrades at once: a
//! checkpoint writes the tally as a format-3 snapshot and a fresh format-3 journal (a crash in
//! between is harmless, as for any checkpoint), so records of two formats never share a file.
//!
//! # Recovery ([`open`])
//! - The snapshot, if present, must be valid: a corrupt one is an error (refusing to start beats
//!   silently losing its counts) unless the journal itself starts at version 0 and so covers
//!   every vote. A journal that starts after version 0 with no snapshot, or after the snapshot,
//!   or from another epoch, is an error too: votes would be missing.
//! - An unreadable journal header is an error.
//! - Records with versions up to the snapshot's are already counted and are skipped; the rest
//!   are applied in order, on top of the snapshot's counts and standing. A ballot whose `from`
//!   has no vote left to take leaves that count at 0, with one report line for all of them.
//! - A damaged record (bad magic, length, checksum, content, or out of sequence) followed later
//!   by a good record whose version continues plausibly (no more votes missing than could fit in
//!   the skipped bytes) is reported and skipped, with the number of votes lost; counting resumes
//!   at that record. A checksum-valid record that does not fit the sequence is an error: we
//!   refuse to guess rather than count a vote twice or cut good records off.
//! - A damaged tail with no good record after it (a torn write: `kill -9` or power loss in the
//!   middle of a commit) is reported and cut off: the file is truncated to the last good record.
//! - No snapshot and no journal: a new epoch, at version 0.
//!
//! After [`open`], the journal's next record is always version `Recovery::version + 1`.

mod crc;
mod files;
mod format;
mod scan;
#[cfg(test)]
mod tests;

use files::*;
use format::*;
use scan::*;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::store::{now_ms, Committed, Store};
pub use super::store::{Entry, Mark, RecentVote, Record, Recovery, Standing};

/// Longest candidate uid a record can hold (the configuration's rule, `ids::CANDIDATE`).
const MAX_UID: usize = crate::ids::CANDIDATE.max;
/// Longest vote id a record can hold (`ids::VOTE`).
const MAX_VOTE_ID: usize = crate::ids::VOTE.max;
/// Longest voter id a ballot or a checkpoint can hold (`ids::VOTER`).
const MAX_VOTER: usize = crate::ids::VOTER.max;
/// Longest epoch a header can hold (`ids::EPOCH`); generated epochs are 16 hex digits.
const MAX_EPOCH: usize = crate::ids::EPOCH.max;

/// Starts every journal file of the current format; a format version u16 follows. Later formats
/// keep this magic and raise the version.
const JOURNAL_MAGIC: &[u8; 4] = b"LVJF";
/// Starts every snapshot file of the current format; a format version u16 follows.
const SNAPSHOT_MAGIC: &[u8; 4] = b"LVSF";
/// The format this version writes (and the newest it reads).
const FORMAT: u16 = 3;
/// Starts a journal of format 1 (no format field, records without time): read, then upgraded.
const JOURNAL_MAGIC_V1: &[u8; 4] = b"LVJ1";
/// Starts a snapshot of format 1 (remembered votes without time).
const SNAPSHOT_MAGIC_V1: &[u8; 4] = b"LVS1";
/// Starts every record. The first byte is not ASCII, so it never occurs in an id, and runs of
/// zeroes (what a torn write often leaves) never look like a record.
const RECORD_MAGIC: [u8; 2] = [0xA7, 0x56];
/// Record framing: magic, payload length u16, CRC-32.
const FRAME: usize = 2 + 2 + 4;
/// The record type of a vote (formats 2 and 3). Types are additive: a reader that meets a type
/// it does not know refuses to start rather than guess what the record meant.
const RECORD_VOTE: u8 = 1;
/// The record type of a voter's ballot (format 3).
const RECORD_BALLOT: u8 = 2;
/// The record type of a poll's state mark (format 3).
const RECORD_MARK: u8 = 3;
/// Payload lengths of a vote: type, version, time, a uid and an optional vote id with their
/// lengths.
const VOTE_PAYLOAD: RangeInclusive<usize> =
    1 + 8 + 8 + 1 + 1 + 1..=1 + 8 + 8 + 1 + MAX_UID + 1 + MAX_VOTE_ID;
/// Payload lengths of a ballot: a vote's fields, then a voter and an optional `from` uid with
/// their lengths.
const BALLOT_PAYLOAD: RangeInclusive<usize> =
    *VOTE_PAYLOAD.start() + 1 + 1 + 1..=*VOTE_PAYLOAD.end() + 1 + MAX_VOTER + 1 + MAX_UID;
/// Payload length of a mark: type, version, time, the mark.
const MARK_PAYLOAD: RangeInclusive<usize> = 1 + 8 + 8 + 1..=1 + 8 + 8 + 1;
/// Smallest payload of the current format: a mark's. With the framing it bounds how many
/// records a damaged stretch of bytes can have held.
const MIN_PAYLOAD: usize = *MARK_PAYLOAD.start();
/// Largest payload of any format: the longest ballot's.
const MAX_PAYLOAD: usize = *BALLOT_PAYLOAD.end();
/// Versions read from disk above this are damage, not votes; keeps `version + 1` from overflowing.
const MAX_VERSION: u64 = 1 << 62;
/// A snapshot larger than this is refused before it is read (one with 1,000,000 remembered
/// UUID vote ids and a thousand candidates is about 70 MiB).
const MAX_SNAPSHOT_BYTES: u64 = 256 << 20;

/// Smallest count entry in a snapshot: a 1-byte uid with its length, the count.
const MIN_COUNT_ENTRY: usize = 1 + 1 + 8;
/// Smallest voter entry in a snapshot: a 1-byte voter and a 1-byte uid with their lengths.
const MIN_VOTER_ENTRY: usize = 1 + 1 + 1 + 1;

const SNAPSHOT_SUFFIX: &str = ".snapshot";
const LOCK_SUFFIX: &str = ".lock";
const TMP_SUFFIX: &str = ".tmp";

/// An open journal: appends votes durably and takes checkpoints. Holds the lock file while alive.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    _lock: File,
    epoch: String,
    /// Version of the last record on disk (or the base or snapshot version); the next is `+ 1`.
    version: u64,
    /// Bytes of the journal that are good records; the file's length and write position.
    len: u64,
    /// Records in the current journal file.
    records: u64,
    sync: SyncStats,
    /// Set when a failed commit could not be undone: later commits refuse rather than append
    /// after a half-written batch whose records a recovery might count.
    poisoned: bool,
    /// The encoding buffer, reused by every commit.
    buf: Vec<u8>,
    /// Tests only: the next write stops after this many bytes and fails.
    #[cfg(test)]
    fail_write_after: Option<usize>,
}

/// Opens (creating if needed) the journal at `path` and its snapshot at `path` + `.snapshot`,
/// and rebuilds the tally from them; see the module docs for the rules. Creates the parent
/// directory if it is missing. Fails if another `Journal` holds the files. Files of format 1 are
/// read and then upgraded (a checkpoint in the current format).
pub fn open(path: &Path) -> io::Result<(Journal, Recovery)> {
    open_at(path, now_ms())
}

/// [`open`] at the time `opened_ms` (ms since the Unix epoch): the time given to remembered
/// votes of format 1, which carry none.
fn open_at(path: &Path, opened_ms: u64) -> io::Result<(Journal, Recovery)> {
    let started = Instant::now();
    let mut sync = SyncStats::default();
    let dir = parent_dir(path);
    create_dir_durably(&dir, &mut sync).map_err(|e| annotate(e, &dir))?;
    let lock = lock(path)?;
    let mut report = Vec::new();
    let snapshot_path = suffixed(path, SNAPSHOT_SUFFIX);
    let snapshot = read_snapshot(&snapshot_path, opened_ms)?;
    let data = match fs::read(path) {
        Ok(data) => Some(data),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(annotate(e, path)),
    };
    let header = match &data {
        Some(data) => Some(decode_header(data).map_err(|e| {
            invalid_data(format!(
                "journal {}: header unreadable ({e}); refusing to start — move it away only \
                 if its votes may be lost",
                path.display()
            ))
        })?),
        None => None,
    };

    let mut snapshot = match snapshot {
        SnapshotFile::Missing => None,
        SnapshotFile::Valid(s) => Some(s),
        SnapshotFile::Corrupt(why) => match &header {
            Some(h) if h.base == 0 => {
                report.push(format!(
                    "journal: snapshot {} is corrupt ({why}); ignored, the journal holds every \
                     vote from version 0",
                    snapshot_path.display()
                ));
                None
            }
            _ => {
                return Err(invalid_data(format!(
                    "journal: snapshot {} is corrupt ({why}); refusing to start rather than lose \
                     its counts — restore it from a backup, or move it and {} away to start over",
                    snapshot_path.display(),
                    path.display()
                )))
            }
        },
    };
    let covered = snapshot.as_ref().map_or(0, |s| s.version);
    // The oldest format of the two files, if older than the current one (both are upgraded).
    let old_format = [
        header.as_ref().map(|h| h.format),
        snapshot.as_ref().map(|s| s.format),
    ]
    .into_iter()
    .flatten()
    .min()
    .filter(|&f| f < Format::V3);

    let mut tally = Tally::default();
    if let Some(s) = &mut snapshot {
        for (uid, n) in std::mem::take(&mut s.counts) {
            tally.set(&uid, n);
        }
        tally.recent = std::mem::take(&mut s.recent);
        for (voter, uid) in std::mem::take(&mut s.standing.voters) {
            tally.stand(&voter, &uid);
        }
        tally.standing.closed = s.standing.closed;
        if s.format == Format::V1 {
            tally.legacy += tally.recent.len() as u64;
        }
    }

    let (epoch, version, file, len, records) = match (data, header) {
        (Some(data), Some(h)) => {
            match &snapshot {
                Some(s) if s.epoch != h.epoch => {
                    return Err(invalid_data(format!(
                        "journal {} (epoch {}) and its snapshot (epoch {}) are from different \
                         histories; refusing to start",
                        path.display(),
                        h.epoch,
                        s.epoch
                    )))
                }
                Some(s) if h.base > s.version => {
                    return Err(invalid_data(format!(
                        "journal {} starts after version {} but its snapshot is at version {}: \
                         votes {} to {} are missing; refusing to start",
                        path.display(),
                        h.base,
                        s.version,
                        s.version + 1,
                        h.base
                    )))
                }
                None if h.base > 0 => {
                    return Err(invalid_data(format!(
                        "journal {} starts after version {} but its snapshot {} is missing; \
                         refusing to start",
                        path.display(),
                        h.base,
                        snapshot_path.display()
                    )))
                }
                _ => {}
            }
            let scan = scan(&data, h.len, h.base, covered, h.format, |r| {
                tally.apply(r, opened_ms)
            })
            .map_err(|e| invalid_data(format!("journal {}: {e}", path.display())))?;
            report.extend(scan.notes);
            if scan.old > 0 {
                report.push(format!(
                    "journal: {} records already in the snapshot skipped",
                    thousands(scan.old)
                ));
            }
            tally.lost = scan.lost;
            if scan.last < covered {
                // Only if the journal lost records the snapshot has (e.g. a damaged tail after a
                // crash between the snapshot and the fresh journal): continue after the snapshot.
                report.push(format!(
                    "journal: ends at version {} before the snapshot's {}; a fresh journal \
                     continues from the snapshot",
                    thousands(scan.last),
                    thousands(covered)
                ));
                let bytes = encode_header(&h.epoch, covered);
                let file = replace_file(path, &bytes, &mut sync)?;
                (h.epoch, covered, file, bytes.len() as u64, 0)
            } else {
                let mut file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map_err(|e| annotate(e, path))?;
                let keep = scan.keep as u64;
                if keep < data.len() as u64 {
                    file.set_len(keep).map_err(|e| annotate(e, path))?;
                    sync.sync(&file, false).map_err(|e| annotate(e, path))?;
                }
                file.seek(SeekFrom::Start(keep))?;
                (h.epoch, scan.last, file, keep, scan.records)
            }
        }
        _ => {
            let (epoch, version) = match &snapshot {
                Some(s) => {
                    report.push(format!(
                        "journal: {} missing; a fresh journal continues from the snapshot at \
                         version {}",
                        path.display(),
                        thousands(s.version)
                    ));
                    (s.epoch.clone(), s.version)
                }
                None => {
                    let epoch = new_epoch();
                    report.push(format!(
                        "journal: new journal {}, epoch {epoch}",
                        path.display()
                    ));
                    (epoch, 0)
                }
            };
            let bytes = encode_header(&epoch, version);
            let file = replace_file(path, &bytes, &mut sync)?;
            (epoch, version, file, bytes.len() as u64, 0)
        }
    };

    if let Some((n, first)) = tally.unbacked {
        report.push(format!(
            "journal: {} ballot(s) moved a vote away from a candidate that had none (the first \
             at version {}); that count stays at 0",
            thousands(n),
            thousands(first)
        ));
    }
    let total: u64 = tally.counts.iter().map(|(_, n)| n).sum();
    report.push(format!(
        "journal: recovered {} votes (snapshot at {} + {} records) in {} ms",
        thousands(total),
        thousands(covered),
        thousands(tally.applied),
        started.elapsed().as_millis()
    ));
    if !tally.standing.voters.is_empty() || tally.standing.closed {
        report.push(format!(
            "journal: {} voter(s) standing on a candidate; the poll is {}",
            thousands(tally.standing.voters.len() as u64),
            if tally.standing.closed {
                "closed"
            } else {
                "open"
            }
        ));
    }
    let mut journal = Journal {
        path: path.to_path_buf(),
        file,
        _lock: lock,
        epoch: epoch.clone(),
        version,
        len,
        records,
        sync,
        poisoned: false,
        buf: Vec::new(),
        #[cfg(test)]
        fail_write_after: None,
    };
    if let Some(old) = old_format {
        // Records of the current format must never follow old ones in one file: rewrite the
        // tally as a checkpoint (snapshot, then a fresh journal) before anything is appended.
        let old = old.number();
        journal
            .checkpoint(version, &tally.counts, &tally.recent, &tally.standing)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("journal: upgrading format {old} to {FORMAT} failed: {e}"),
                )
            })?;
        let mut line = format!(
            "journal: upgraded from format {old} to {FORMAT} (checkpoint at version {})",
            thousands(version)
        );
        if old == 1 {
            line.push_str(&format!(
                "; the {} remembered vote ids it held without a time are kept for a whole \
                 window from now",
                thousands(tally.legacy)
            ));
        }
        report.push(line);
    }
    let recovery = Recovery {
        epoch,
        version,
        counts: tally.counts,
        recent: tally.recent,
        lost: tally.lost,
        report,
        standing: tally.standing,
    };
    Ok((journal, recovery))
}

/// Checkpoint (snapshot + fresh journal) after this many journal records, so start-up reads a
/// snapshot and a short journal however many votes there are.
pub const CHECKPOINT_EVERY: u64 = 100_000;

impl Store for Journal {
    fn commit(&mut self, records: &[Record]) -> io::Result<Committed> {
        Journal::commit(self, records).map(|()| Committed::AsNumbered)
    }

    fn checkpoint_due(&self) -> bool {
        self.records >= CHECKPOINT_EVERY
    }

    /// Not after a failed write that could not be undone, and the file opens for writing
    /// (not on a file system remounted read-only, not made read-only).
    fn usable(&self) -> io::Result<()> {
        Journal::usable(self)?;
        fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map(drop)
            .map_err(|e| annotate(e, &self.path))
    }

    fn checkpoint(
        &mut self,
        version: u64,
        counts: &[(String, u64)],
        recent: &[RecentVote],
        standing: &Standing,
    ) -> io::Result<()> {
        Journal::checkpoint(self, version, counts, recent, standing)
    }
}

impl Journal {
    /// Appends `records` with one write and one `fdatasync` (group commit: the caller gathers
    /// concurrent votes into one batch); when it returns `Ok`, they are on disk. Their versions
    /// must be consecutive, starting at [`Journal::version`] + 1, and their ids valid; otherwise
    /// nothing is written (`InvalidInput`). If writing or syncing fails, the file is truncated
    /// back to its length before the call, so a failed batch leaves no partial record; if even
    /// that fails, every later commit fails too (restart to recover).
    pub fn commit(&mut self, records: &[Record]) -> io::Result<()> {
        self.usable()?;
        if records.is_empty() {
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut next = self.version + 1;
        for r in records {
            if r.version != next {
                self.buf = buf;
                return Err(invalid_input(format!(
                    "journal: record version {} out of sequence (expected {next})",
                    r.version
                )));
            }
            if let Err(e) = check_record(r) {
                self.buf = buf;
                return Err(e);
            }
            encode_record(r, &mut buf);
            next += 1;
        }
        let mut result = self.append(&buf);
        match result {
            Ok(()) => {
                self.len += buf.len() as u64;
                self.version = next - 1;
                self.records += records.len() as u64;
            }
            Err(e) => {
                self.undo();
                // Not cut back: the batch may be on disk, and a restart would count it.
                result = Err(if self.poisoned {
                    super::store::maybe_stored(e)
                } else {
                    e
                });
            }
        }
        self.buf = buf;
        result
    }

    /// Writes the tally at `version` (which must be the last committed version, so the snapshot
    /// holds exactly the journal's votes) as the snapshot, atomically, then replaces the journal
    /// with an empty one continuing from `version`, atomically. A crash between the two is
    /// harmless: the old journal's records are all at or below the snapshot's version. If it
    /// fails, the old journal stays in use. `recent` is the vote-id window to keep across a
    /// restart, `standing` the voters and the state as of `version`.
    pub fn checkpoint(
        &mut self,
        version: u64,
        counts: &[(String, u64)],
        recent: &[RecentVote],
        standing: &Standing,
    ) -> io::Result<()> {
        self.usable()?;
        if version != self.version {
            return Err(invalid_input(format!(
                "journal: checkpoint at version {version}, but the last committed version is {}",
                self.version
            )));
        }
        let snapshot = encode_snapshot(&self.epoch, version, counts, recent, standing)?;
        replace_file(
            &suffixed(&self.path, SNAPSHOT_SUFFIX),
            &snapshot,
            &mut self.sync,
        )?;
        let header = encode_header(&self.epoch, version);
        let file = write_temp(&self.path, &header, &mut self.sync)?;
        let tmp = suffixed(&self.path, TMP_SUFFIX);
        if let Err(e) = fs::rename(&tmp, &self.path) {
            let _ = fs::remove_file(&tmp);
            return Err(annotate(e, &self.path));
        }
        self.file = file;
        self.len = header.len() as u64;
        self.records = 0;
        if let Err(e) = sync_dir(&self.path, &mut self.sync) {
            // The new journal's name may not survive a crash, and with it every vote appended
            // to it: refuse to acknowledge any.
            self.poisoned = true;
            return Err(e);
        }
        Ok(())
    }

    /// Records in the journal file since the last checkpoint (or since it was created).
    #[cfg(test)]
    fn records_since_checkpoint(&self) -> u64 {
        self.records
    }

    /// The last committed version; the next record must be this + 1.
    #[cfg(test)]
    fn version(&self) -> u64 {
        self.version
    }

    #[cfg(test)]
    fn epoch(&self) -> &str {
        &self.epoch
    }

    #[cfg(test)]
    fn path(&self) -> &Path {
        &self.path
    }

    /// Every `fsync`/`fdatasync` this journal has issued (commits, checkpoints, directories,
    /// repairs at open), failed ones included.
    #[cfg(test)]
    fn fsyncs(&self) -> u64 {
        self.sync.count
    }

    fn usable(&self) -> io::Result<()> {
        if self.poisoned {
            return Err(io::Error::other(format!(
                "journal {}: a failed write could not be undone; restart to recover",
                self.path.display()
            )));
        }
        Ok(())
    }

    /// One write of the whole batch, then one `fdatasync`.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        #[cfg(test)]
        if let Some(n) = self.fail_write_after.take() {
            self.file.write_all(&bytes[..n.min(bytes.len())])?;
            return Err(io::Error::other("injected write failure"));
        }
        self.file.write_all(bytes)?;
        self.sync.sync(&self.file, true)
    }

    /// After a failed append: cut the file back to the last good record, or refuse from now on.
    fn undo(&mut self) {
        let len = self.len;
        let undone = self.file.set_len(len).is_ok()
            && self.file.seek(SeekFrom::Start(len)).is_ok()
            && self.sync.sync(&self.file, false).is_ok();
        if !undone {
            self.poisoned = true;
        }
    }
}

/// Counts fsyncs (the tests check that a batch costs one).
#[derive(Debug, Default)]
struct SyncStats {
    count: u64,
}

impl SyncStats {
    fn sync(&mut self, file: &File, data_only: bool) -> io::Result<()> {
        let result = if data_only {
            file.sync_data()
        } else {
            file.sync_all()
        };
        self.count += 1;
        result
    }
}

/// Counts, the vote-id window and the standing being rebuilt.
#[derive(Default)]
struct Tally {
    counts: Vec<(String, u64)>,
    index: HashMap<String, usize>,
    recent: Vec<RecentVote>,
    standing: Standing,
    /// Where each voter is in `standing.voters`.
    voters: HashMap<String, usize>,
    /// Journal records applied on top of the snapshot.
    applied: u64,
    lost: u64,
    /// Remembered votes without a time of their own (format 1).
    legacy: u64,
    /// Ballots whose `from` had no vote to take away: how many, and the first one's version.
    unbacked: Option<(u64, u64)>,
}

impl Tally {
    fn set(&mut self, uid: &str, n: u64) {
        match self.index.get(uid) {
            Some(&i) => self.counts[i].1 = n,
            None => {
                self.index.insert(uid.to_string(), self.counts.len());
                self.counts.push((uid.to_string(), n));
            }
        }
    }

    /// Where `uid` is in `counts`, added at 0 if it is not there yet.
    fn slot(&mut self, uid: &str) -> usize {
        match self.index.get(uid) {
            Some(&i) => i,
            None => {
                self.set(uid, 0);
                self.counts.len() - 1
            }
        }
    }

    /// `voter` now stands on `uid`.
    fn stand(&mut self, voter: &str, uid: &str) {
        match self.voters.get(voter) {
            Some(&i) => self.standing.voters[i].1 = uid.to_string(),
            None => {
                self.voters
                    .insert(voter.to_string(), self.standing.voters.len());
                self.standing
                    .voters
                    .push((voter.to_string(), uid.to_string()));
            }
        }
    }

    /// Applies `r`, in the journal's order: a vote counts for its uid; a ballot too, takes one
    /// from its `from` (never below 0) and moves its voter onto its uid; a mark closes, opens
    /// or resets (every count 0, retired uids' too, and every voter forgotten; the vote-id
    /// window stays, so a retry of an earlier vote is still answered, not counted). A record
    /// without a time (format 1) is taken as counted at `legacy_ms`.
    fn apply(&mut self, r: RecordRef<'_>, legacy_ms: u64) {
        self.applied += 1;
        let i = match r.entry {
            EntryRef::Mark(mark) => {
                match mark {
                    Mark::Closed => self.standing.closed = true,
                    Mark::Opened => self.standing.closed = false,
                    Mark::Reset => {
                        for (_, n) in &mut self.counts {
                            *n = 0;
                        }
                        self.standing.voters.clear();
                        self.voters.clear();
                    }
                }
                return;
            }
            EntryRef::Vote => {
                let i = self.slot(r.uid);
                self.counts[i].1 += 1;
                i
            }
            EntryRef::Ballot { voter, from } => {
                let i = self.slot(r.uid);
                self.counts[i].1 += 1;
                if let Some(from) = from {
                    match self.index.get(from) {
                        Some(&j) if self.counts[j].1 > 0 => self.counts[j].1 -= 1,
                        _ => {
                            let (n, _) = self.unbacked.get_or_insert((0, r.version));
                            *n += 1;
                        }
                    }
                }
                self.stand(voter, r.uid);
                i
            }
        };
        if let Some(vote_id) = r.vote_id {
            self.recent.push(RecentVote {
                vote_id: vote_id.to_string(),
                uid: r.uid.to_string(),
                count: self.counts[i].1,
                version: r.version,
                at_ms: r.at_ms.unwrap_or(legacy_ms),
            });
            if r.at_ms.is_none() {
                self.legacy += 1;
            }
        }
    }
}
