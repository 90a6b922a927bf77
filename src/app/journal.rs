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
//! 1–64 bytes.
//! ```text
//! journal header  "LVJ1" | base version u64 | epoch length u8 | epoch | CRC-32 of all before
//! record          A7 56 | payload length u16 (11..=106) | CRC-32 of (length, payload) | payload
//! payload         version u64 | uid length u8 | uid | vote-id length u8 (0: none) | vote id
//! snapshot        "LVS1" | body length u64 | body | CRC-32 of all before
//! body            epoch length u8 | epoch | version u64
//!                 | n u32 | n × (uid length u8 | uid | count u64)
//!                 | m u32 | m × (vote-id length u8 | vote id | uid length u8 | uid
//!                            | count after the vote u64 | version u64)
//! ```
//! The records of one journal have consecutive versions `base + 1, base + 2, …`; the record
//! magic starts with a byte that no id contains, and together with the length bound, the
//! checksum and that sequence it lets recovery find the next good record after a damaged one.
//!
//! # Recovery ([`open`])
//! - The snapshot, if present, must be valid: a corrupt one is an error (refusing to start beats
//!   silently losing its counts) unless the journal itself starts at version 0 and so covers
//!   every vote. A journal that starts after version 0 with no snapshot, or after the snapshot,
//!   or from another epoch, is an error too: votes would be missing.
//! - An unreadable journal header is an error.
//! - Records with versions up to the snapshot's are already counted and are skipped.
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

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest candidate uid a record can hold (the same bound as the configuration's ids).
pub const MAX_UID: usize = 32;
/// Longest vote id a record can hold.
pub const MAX_VOTE_ID: usize = 64;
/// Longest epoch a header can hold; generated epochs are 16 hex digits.
pub const MAX_EPOCH: usize = 32;

/// Starts every journal file; the `1` is the format's version.
const JOURNAL_MAGIC: &[u8; 4] = b"LVJ1";
/// Starts every snapshot file.
const SNAPSHOT_MAGIC: &[u8; 4] = b"LVS1";
/// Starts every record. The first byte is not ASCII, so it never occurs in an id, and runs of
/// zeroes (what a torn write often leaves) never look like a record.
const RECORD_MAGIC: [u8; 2] = [0xA7, 0x56];
/// Record framing: magic, payload length u16, CRC-32.
const FRAME: usize = 2 + 2 + 4;
/// Smallest payload: version, a 1-byte uid with its length, no vote id.
const MIN_PAYLOAD: usize = 8 + 1 + 1 + 1;
/// Largest payload: version, the longest uid and the longest vote id with their lengths.
const MAX_PAYLOAD: usize = 8 + 1 + MAX_UID + 1 + MAX_VOTE_ID;
/// Smallest record on disk; bounds how many votes a damaged stretch of bytes can have held.
const MIN_RECORD: usize = FRAME + MIN_PAYLOAD;
/// Largest record on disk.
pub const MAX_RECORD: usize = FRAME + MAX_PAYLOAD;
/// Versions read from disk above this are damage, not votes; keeps `version + 1` from overflowing.
const MAX_VERSION: u64 = 1 << 62;
/// A snapshot larger than this is refused before it is read (one with 100,000 recent vote ids
/// and a thousand candidates is about 12 MiB).
const MAX_SNAPSHOT_BYTES: u64 = 256 << 20;

/// Snapshot magic and body length u64; the body follows.
const SNAPSHOT_HEAD: usize = 4 + 8;
/// Snapshot framing: head and the closing CRC-32.
const SNAPSHOT_FRAME: usize = SNAPSHOT_HEAD + 4;
/// Smallest count entry in a snapshot: a 1-byte uid with its length, the count.
const MIN_COUNT_ENTRY: usize = 1 + 1 + 8;
/// Smallest recent-vote entry: 1-byte vote id and uid with their lengths, count, version.
const MIN_RECENT_ENTRY: usize = 1 + 1 + 1 + 1 + 8 + 8;

const SNAPSHOT_SUFFIX: &str = ".snapshot";
const LOCK_SUFFIX: &str = ".lock";
const TMP_SUFFIX: &str = ".tmp";

/// One acknowledged vote: the tally's `version` after it, the candidate, and the client's vote id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub version: u64,
    pub uid: String,
    pub vote_id: Option<String>,
}

/// A vote remembered by its vote id, so a retry gets the same answer: candidate `uid` had `count`
/// votes after it, at `version`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecentVote {
    pub vote_id: String,
    pub uid: String,
    pub count: u64,
    pub version: u64,
}

/// What [`open`] rebuilt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// Names this history of votes; kept across restarts, new only when there was nothing.
    pub epoch: String,
    /// The last version recovered; the next vote is `version + 1`. Versions are never reused,
    /// so after lost votes `version` is more than the sum of the counts.
    pub version: u64,
    /// Votes per uid, in the snapshot's order, then by first appearance in the journal. May name
    /// uids that are no longer configured.
    pub counts: Vec<(String, u64)>,
    /// The snapshot's vote-id window, then every journal record after it that has a vote id, in
    /// version order. Bounding it is the caller's business.
    pub recent: Vec<RecentVote>,
    /// Acknowledged votes that damaged records made unrecoverable (each is also in `report`).
    pub lost: u64,
    /// Lines for stderr: what was recovered, in how long, and every damage found and repaired.
    pub report: Vec<String>,
}

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
/// directory if it is missing. Fails if another `Journal` holds the files.
pub fn open(path: &Path) -> io::Result<(Journal, Recovery)> {
    let started = Instant::now();
    let mut sync = SyncStats::default();
    let dir = parent_dir(path);
    create_dir_durably(&dir, &mut sync).map_err(|e| annotate(e, &dir))?;
    let lock = lock(path)?;
    let mut report = Vec::new();
    let snapshot_path = suffixed(path, SNAPSHOT_SUFFIX);
    let snapshot = read_snapshot(&snapshot_path)?;
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

    let mut tally = Tally::default();
    if let Some(s) = &mut snapshot {
        for (uid, n) in std::mem::take(&mut s.counts) {
            tally.set(&uid, n);
        }
        tally.recent = std::mem::take(&mut s.recent);
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
            let scan = scan(&data, h.len, h.base, covered, |r| tally.apply(r))
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

    let total: u64 = tally.counts.iter().map(|(_, n)| n).sum();
    report.push(format!(
        "journal: recovered {} votes (snapshot at {} + {} records) in {} ms",
        thousands(total),
        thousands(covered),
        thousands(tally.applied),
        started.elapsed().as_millis()
    ));
    let journal = Journal {
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
    let recovery = Recovery {
        epoch,
        version,
        counts: tally.counts,
        recent: tally.recent,
        lost: tally.lost,
        report,
    };
    Ok((journal, recovery))
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
        let result = self.append(&buf);
        match &result {
            Ok(()) => {
                self.len += buf.len() as u64;
                self.version = next - 1;
                self.records += records.len() as u64;
            }
            Err(_) => self.undo(),
        }
        self.buf = buf;
        result
    }

    /// Writes the tally at `version` (which must be the last committed version, so the snapshot
    /// holds exactly the journal's votes) as the snapshot, atomically, then replaces the journal
    /// with an empty one continuing from `version`, atomically. A crash between the two is
    /// harmless: the old journal's records are all at or below the snapshot's version. If it
    /// fails, the old journal stays in use. `recent` is the vote-id window to keep across a
    /// restart.
    pub fn checkpoint(
        &mut self,
        version: u64,
        counts: &[(String, u64)],
        recent: &[RecentVote],
    ) -> io::Result<()> {
        self.usable()?;
        if version != self.version {
            return Err(invalid_input(format!(
                "journal: checkpoint at version {version}, but the last committed version is {}",
                self.version
            )));
        }
        let snapshot = encode_snapshot(&self.epoch, version, counts, recent)?;
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

    /// Records in the journal file since the last checkpoint (or since it was created); the
    /// caller checkpoints when this grows large, so start-up stays fast.
    pub fn records_since_checkpoint(&self) -> u64 {
        self.records
    }

    /// The last committed version; the next record must be this + 1.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every `fsync`/`fdatasync` this journal has issued (commits, checkpoints, directories,
    /// repairs at open), failed ones included.
    pub fn fsyncs(&self) -> u64 {
        self.sync.count
    }

    /// The total time spent in those syncs.
    pub fn fsync_time(&self) -> Duration {
        self.sync.time
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

/// Counts fsyncs and the time they take.
#[derive(Debug, Default)]
struct SyncStats {
    count: u64,
    time: Duration,
}

impl SyncStats {
    fn sync(&mut self, file: &File, data_only: bool) -> io::Result<()> {
        let started = Instant::now();
        let result = if data_only {
            file.sync_data()
        } else {
            file.sync_all()
        };
        self.count += 1;
        self.time += started.elapsed();
        result
    }
}

/// Counts and the vote-id window being rebuilt.
#[derive(Default)]
struct Tally {
    counts: Vec<(String, u64)>,
    index: HashMap<String, usize>,
    recent: Vec<RecentVote>,
    /// Journal records counted on top of the snapshot.
    applied: u64,
    lost: u64,
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

    fn apply(&mut self, r: RecordRef<'_>) {
        let i = match self.index.get(r.uid) {
            Some(&i) => i,
            None => {
                self.set(r.uid, 0);
                self.counts.len() - 1
            }
        };
        self.counts[i].1 += 1;
        self.applied += 1;
        if let Some(vote_id) = r.vote_id {
            self.recent.push(RecentVote {
                vote_id: vote_id.to_string(),
                uid: r.uid.to_string(),
                count: self.counts[i].1,
                version: r.version,
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CRC-32/IEEE, table-driven.

/// The byte-at-a-time table for the reflected polynomial 0xEDB88320, built at compile time.
const CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

/// Continues a CRC-32 over `bytes`; start with `!0` and invert the result.
fn crc_update(mut crc: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        crc = CRC_TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    crc
}

/// CRC-32/IEEE of `bytes` ("123456789" → 0xCBF43926).
pub fn crc32(bytes: &[u8]) -> u32 {
    !crc_update(!0, bytes)
}

// ---------------------------------------------------------------------------------------------
// Pure encoding and decoding: bytes in, bytes out, no I/O.

/// `s` as an id if it is 1..=`max` bytes of `A-Z a-z 0-9 _ -`.
fn id(bytes: &[u8], max: usize) -> Option<&str> {
    let ok = (1..=max).contains(&bytes.len())
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        std::str::from_utf8(bytes).ok()
    } else {
        None
    }
}

fn check_id(what: &str, s: &str, max: usize) -> io::Result<()> {
    match id(s.as_bytes(), max) {
        Some(_) => Ok(()),
        None => Err(invalid_input(format!(
            "journal: {what} {s:?} is not 1 to {max} of A-Z a-z 0-9 _ -"
        ))),
    }
}

fn check_record(r: &Record) -> io::Result<()> {
    check_id("uid", &r.uid, MAX_UID)?;
    if let Some(v) = &r.vote_id {
        check_id("vote id", v, MAX_VOTE_ID)?;
    }
    Ok(())
}

/// A record as it lies in the journal's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RecordRef<'a> {
    version: u64,
    uid: &'a str,
    vote_id: Option<&'a str>,
}

/// Why bytes are not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Defect {
    Magic,
    Length,
    Checksum,
    Payload,
}

impl fmt::Display for Defect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Defect::Magic => "bad magic",
            Defect::Length => "bad length",
            Defect::Checksum => "checksum",
            Defect::Payload => "bad content",
        })
    }
}

/// Appends `r`, which must be valid ([`check_record`]).
fn encode_record(r: &Record, out: &mut Vec<u8>) {
    let vote_id = r.vote_id.as_deref().unwrap_or("");
    let len = 8 + 1 + r.uid.len() + 1 + vote_id.len();
    debug_assert!((MIN_PAYLOAD..=MAX_PAYLOAD).contains(&len));
    let start = out.len();
    out.extend_from_slice(&RECORD_MAGIC);
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&r.version.to_le_bytes());
    out.push(r.uid.len() as u8);
    out.extend_from_slice(r.uid.as_bytes());
    out.push(vote_id.len() as u8);
    out.extend_from_slice(vote_id.as_bytes());
    let crc = !crc_update(
        crc_update(!0, &out[start + 2..start + 4]),
        &out[start + FRAME..],
    );
    out[start + 4..start + FRAME].copy_from_slice(&crc.to_le_bytes());
}

/// The record at the start of `buf`: `Ok(Some((record, bytes used)))`, `Ok(None)` if `buf` is a
/// proper prefix of a record (more bytes could complete it), or why it is not one.
fn decode_record(buf: &[u8]) -> Result<Option<(RecordRef<'_>, usize)>, Defect> {
    let have = buf.len().min(RECORD_MAGIC.len());
    if buf[..have] != RECORD_MAGIC[..have] {
        return Err(Defect::Magic);
    }
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = usize::from(u16::from_le_bytes([buf[2], buf[3]]));
    if !(MIN_PAYLOAD..=MAX_PAYLOAD).contains(&len) {
        return Err(Defect::Length);
    }
    let total = FRAME + len;
    if buf.len() < total {
        return Ok(None);
    }
    let stored = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let payload = &buf[FRAME..total];
    if !crc_update(crc_update(!0, &buf[2..4]), payload) != stored {
        return Err(Defect::Checksum);
    }
    let record = decode_payload(payload).ok_or(Defect::Payload)?;
    Ok(Some((record, total)))
}

fn decode_payload(p: &[u8]) -> Option<RecordRef<'_>> {
    let mut r = Reader::new(p);
    let version = r.u64()?;
    let uid = r.id(MAX_UID)?;
    let vote_id = match r.u8()? {
        0 => None,
        n => Some(id(r.take(usize::from(n))?, MAX_VOTE_ID)?),
    };
    r.is_empty().then_some(RecordRef {
        version,
        uid,
        vote_id,
    })
}

/// A journal's header.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Header {
    base: u64,
    epoch: String,
    /// Bytes it takes; the first record follows.
    len: usize,
}

/// Why a journal header is unreadable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HeaderError {
    Short,
    Magic,
    Epoch,
    Checksum,
    Version,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HeaderError::Short => "too short",
            HeaderError::Magic => "not a livevote journal",
            HeaderError::Epoch => "bad epoch",
            HeaderError::Checksum => "checksum",
            HeaderError::Version => "impossible base version",
        })
    }
}

/// `epoch` must be valid ([`new_epoch`] or a decoded one).
fn encode_header(epoch: &str, base: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 8 + 1 + epoch.len() + 4);
    out.extend_from_slice(JOURNAL_MAGIC);
    out.extend_from_slice(&base.to_le_bytes());
    out.push(epoch.len() as u8);
    out.extend_from_slice(epoch.as_bytes());
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn decode_header(buf: &[u8]) -> Result<Header, HeaderError> {
    let have = buf.len().min(JOURNAL_MAGIC.len());
    if buf[..have] != JOURNAL_MAGIC[..have] {
        return Err(HeaderError::Magic);
    }
    let mut r = Reader::new(buf);
    r.take(JOURNAL_MAGIC.len()).ok_or(HeaderError::Short)?;
    let base = r.u64().ok_or(HeaderError::Short)?;
    let n = usize::from(r.u8().ok_or(HeaderError::Short)?);
    if !(1..=MAX_EPOCH).contains(&n) {
        return Err(HeaderError::Epoch);
    }
    let epoch = r.take(n).ok_or(HeaderError::Short)?;
    let len = r.pos;
    let stored = r.u32().ok_or(HeaderError::Short)?;
    if crc32(&buf[..len]) != stored {
        return Err(HeaderError::Checksum);
    }
    let epoch = id(epoch, MAX_EPOCH).ok_or(HeaderError::Epoch)?;
    if base > MAX_VERSION {
        return Err(HeaderError::Version);
    }
    Ok(Header {
        base,
        epoch: epoch.to_string(),
        len: r.pos,
    })
}

/// The tally at one version, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Snapshot {
    epoch: String,
    version: u64,
    counts: Vec<(String, u64)>,
    recent: Vec<RecentVote>,
}

/// Checks what the caller hands to a checkpoint, then encodes it.
fn encode_snapshot(
    epoch: &str,
    version: u64,
    counts: &[(String, u64)],
    recent: &[RecentVote],
) -> io::Result<Vec<u8>> {
    let mut seen = HashMap::with_capacity(counts.len());
    for (uid, _) in counts {
        check_id("uid", uid, MAX_UID)?;
        if seen.insert(uid.as_str(), ()).is_some() {
            return Err(invalid_input(format!(
                "journal: uid {uid:?} appears twice in a checkpoint"
            )));
        }
    }
    for v in recent {
        check_id("vote id", &v.vote_id, MAX_VOTE_ID)?;
        check_id("uid", &v.uid, MAX_UID)?;
    }
    let (Ok(n), Ok(m)) = (u32::try_from(counts.len()), u32::try_from(recent.len())) else {
        return Err(invalid_input("journal: checkpoint too large".to_string()));
    };
    let mut body = Vec::new();
    body.push(epoch.len() as u8);
    body.extend_from_slice(epoch.as_bytes());
    body.extend_from_slice(&version.to_le_bytes());
    body.extend_from_slice(&n.to_le_bytes());
    for (uid, count) in counts {
        body.push(uid.len() as u8);
        body.extend_from_slice(uid.as_bytes());
        body.extend_from_slice(&count.to_le_bytes());
    }
    body.extend_from_slice(&m.to_le_bytes());
    for v in recent {
        body.push(v.vote_id.len() as u8);
        body.extend_from_slice(v.vote_id.as_bytes());
        body.push(v.uid.len() as u8);
        body.extend_from_slice(v.uid.as_bytes());
        body.extend_from_slice(&v.count.to_le_bytes());
        body.extend_from_slice(&v.version.to_le_bytes());
    }
    let mut out = Vec::with_capacity(SNAPSHOT_FRAME + body.len());
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Why a snapshot is unreadable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SnapshotError {
    Magic,
    Length,
    Checksum,
    Content,
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SnapshotError::Magic => "not a livevote snapshot",
            SnapshotError::Length => "wrong length",
            SnapshotError::Checksum => "checksum",
            SnapshotError::Content => "bad content",
        })
    }
}

fn decode_snapshot(buf: &[u8]) -> Result<Snapshot, SnapshotError> {
    let have = buf.len().min(SNAPSHOT_MAGIC.len());
    if buf[..have] != SNAPSHOT_MAGIC[..have] {
        return Err(SnapshotError::Magic);
    }
    let mut r = Reader::new(buf);
    r.take(SNAPSHOT_MAGIC.len()).ok_or(SnapshotError::Length)?;
    let body_len = r.u64().ok_or(SnapshotError::Length)?;
    // Exactly magic, length, body and CRC; compared without overflow whatever `body_len` says.
    if buf.len() < SNAPSHOT_FRAME || body_len != (buf.len() - SNAPSHOT_FRAME) as u64 {
        return Err(SnapshotError::Length);
    }
    let end = buf.len() - 4;
    let stored = u32::from_le_bytes([buf[end], buf[end + 1], buf[end + 2], buf[end + 3]]);
    if crc32(&buf[..end]) != stored {
        return Err(SnapshotError::Checksum);
    }
    let mut r = Reader::new(&buf[SNAPSHOT_HEAD..end]);
    let bad = SnapshotError::Content;
    let epoch = r.id(MAX_EPOCH).ok_or(bad)?.to_string();
    let version = r.u64().filter(|&v| v <= MAX_VERSION).ok_or(bad)?;
    let n = r.u32().ok_or(bad)? as usize;
    // No allocation the file's bytes cannot back.
    if n > r.remaining() / MIN_COUNT_ENTRY {
        return Err(bad);
    }
    let mut counts = Vec::with_capacity(n);
    let mut seen = HashMap::with_capacity(n);
    for _ in 0..n {
        let uid = r.id(MAX_UID).ok_or(bad)?;
        let count = r.u64().ok_or(bad)?;
        if seen.insert(uid, ()).is_some() {
            return Err(bad);
        }
        counts.push((uid.to_string(), count));
    }
    let m = r.u32().ok_or(bad)? as usize;
    if m > r.remaining() / MIN_RECENT_ENTRY {
        return Err(bad);
    }
    let mut recent = Vec::with_capacity(m);
    for _ in 0..m {
        let vote_id = r.id(MAX_VOTE_ID).ok_or(bad)?.to_string();
        let uid = r.id(MAX_UID).ok_or(bad)?.to_string();
        let count = r.u64().ok_or(bad)?;
        let version = r.u64().ok_or(bad)?;
        recent.push(RecentVote {
            vote_id,
            uid,
            count,
            version,
        });
    }
    if !r.is_empty() {
        return Err(bad);
    }
    Ok(Snapshot {
        epoch,
        version,
        counts,
        recent,
    })
}

/// A bounds-checked cursor over bytes; every read is `None` past the end.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.remaining() {
            return None;
        }
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Some(bytes)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Option<u64> {
        let mut a = [0; 8];
        a.copy_from_slice(self.take(8)?);
        Some(u64::from_le_bytes(a))
    }

    /// A length byte, then an id of that many bytes.
    fn id(&mut self, max: usize) -> Option<&'a str> {
        let n = usize::from(self.u8()?);
        id(self.take(n)?, max)
    }
}

// ---------------------------------------------------------------------------------------------
// Recovery: the pure scan of a journal's records.

/// Why the scan stopped at a byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flaw {
    /// The bytes end inside a record.
    Incomplete,
    Defect(Defect),
    /// A good record, but not the version that comes next.
    Sequence {
        found: u64,
        expected: u64,
    },
}

impl fmt::Display for Flaw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Flaw::Incomplete => f.write_str("incomplete"),
            Flaw::Defect(d) => d.fmt(f),
            Flaw::Sequence { found, expected } => {
                write!(f, "version {found} where {expected} was due")
            }
        }
    }
}

/// What a scan of a journal found.
#[derive(Debug, PartialEq, Eq)]
struct Scan {
    /// Bytes to keep: everything after is a damaged tail to cut off.
    keep: usize,
    /// The version of the last good record (the base if none).
    last: u64,
    /// Good records in the kept bytes.
    records: u64,
    /// Good records at or below the snapshot's version, not counted again.
    old: u64,
    /// Versions above the snapshot's that damaged records took with them.
    lost: u64,
    /// Report lines for every damage found.
    notes: Vec<String>,
}

/// Scans the records in `data[start..]`, which continue from version `base`, and hands every
/// good record above version `covered` (the snapshot's) to `count`, in order. Fails if a
/// checksum-valid record cannot be placed in the sequence.
fn scan(
    data: &[u8],
    start: usize,
    base: u64,
    covered: u64,
    mut count: impl FnMut(RecordRef<'_>),
) -> Result<Scan, String> {
    let mut s = Scan {
        keep: data.len(),
        last: base,
        records: 0,
        old: 0,
        lost: 0,
        notes: Vec::new(),
    };
    let mut pos = start;
    while pos < data.len() {
        let expected = s.last + 1;
        let flaw = match decode_record(&data[pos..]) {
            Ok(Some((r, used))) if r.version == expected => {
                if r.version > covered {
                    count(r);
                } else {
                    s.old += 1;
                }
                s.records += 1;
                s.last = expected;
                pos += used;
                continue;
            }
            Ok(Some((r, _))) => Flaw::Sequence {
                found: r.version,
                expected,
            },
            Ok(None) => Flaw::Incomplete,
            Err(d) => Flaw::Defect(d),
        };
        match resync(data, pos, expected) {
            Resync::At { at, version } => {
                // Versions `expected..version` were in the skipped bytes; those the snapshot
                // has are not lost.
                let lost = version - expected.max(covered + 1).min(version);
                s.lost += lost;
                s.notes.push(format!(
                    "journal: corrupt record at byte {} ({flaw}): skipped, resynchronised at {} \
                     — {}",
                    thousands(pos as u64),
                    thousands(at as u64),
                    match lost {
                        0 => "no vote lost".to_string(),
                        1 => "1 vote lost".to_string(),
                        n => format!("{} votes lost", thousands(n)),
                    }
                ));
                s.last = version - 1;
                pos = at;
            }
            Resync::Misplaced { at, version } => {
                return Err(format!(
                    "record at byte {} has version {version}, but after the damage at byte {} \
                     ({flaw}) version {expected} or a little later was due; refusing to guess",
                    thousands(at as u64),
                    thousands(pos as u64)
                ))
            }
            Resync::None => {
                s.notes.push(format!(
                    "journal: torn record at byte {} ({flaw}): cut off {} bytes",
                    thousands(pos as u64),
                    thousands((data.len() - pos) as u64)
                ));
                s.keep = pos;
                break;
            }
        }
    }
    Ok(s)
}

/// Where reading can resume after damage at some byte.
#[derive(Debug, PartialEq, Eq)]
enum Resync {
    /// The next good record, `at` that byte, continues the sequence plausibly.
    At { at: usize, version: u64 },
    /// The next good record does not: something other than a torn write or a bad byte happened.
    Misplaced { at: usize, version: u64 },
    /// No good record follows: the damage is the tail.
    None,
}

/// Looks for the first checksum-valid record after byte `pos`. It continues plausibly if its
/// version is at least `expected` and no more versions are missing than records could fit in
/// the skipped bytes.
fn resync(data: &[u8], pos: usize, expected: u64) -> Resync {
    let mut at = pos + 1;
    while let Some(i) = data[at..].iter().position(|&b| b == RECORD_MAGIC[0]) {
        at += i;
        if let Ok(Some((r, _))) = decode_record(&data[at..]) {
            let room = ((at - pos) / MIN_RECORD) as u64;
            let fits = r.version >= expected && r.version - expected <= room;
            return if fits {
                Resync::At {
                    at,
                    version: r.version,
                }
            } else {
                Resync::Misplaced {
                    at,
                    version: r.version,
                }
            };
        }
        at += 1;
    }
    Resync::None
}

// ---------------------------------------------------------------------------------------------
// Files.

enum SnapshotFile {
    Missing,
    Valid(Snapshot),
    Corrupt(String),
}

fn read_snapshot(path: &Path) -> io::Result<SnapshotFile> {
    let size = match fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(SnapshotFile::Missing),
        Err(e) => return Err(annotate(e, path)),
    };
    if size > MAX_SNAPSHOT_BYTES {
        return Ok(SnapshotFile::Corrupt(format!(
            "{} bytes, more than {}",
            thousands(size),
            thousands(MAX_SNAPSHOT_BYTES)
        )));
    }
    let bytes = fs::read(path).map_err(|e| annotate(e, path))?;
    Ok(match decode_snapshot(&bytes) {
        Ok(s) => SnapshotFile::Valid(s),
        Err(e) => SnapshotFile::Corrupt(e.to_string()),
    })
}

/// Replaces `path` with `bytes` atomically: a temporary file, fsync, rename, fsync of the
/// directory. Returns the new file, open for reading and writing, positioned at its end.
fn replace_file(path: &Path, bytes: &[u8], sync: &mut SyncStats) -> io::Result<File> {
    let file = write_temp(path, bytes, sync)?;
    let tmp = suffixed(path, TMP_SUFFIX);
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(annotate(e, path));
    }
    sync_dir(path, sync)?;
    Ok(file)
}

/// Writes `bytes` to `path` + `.tmp` and fsyncs it; the file is positioned at its end.
fn write_temp(path: &Path, bytes: &[u8], sync: &mut SyncStats) -> io::Result<File> {
    let tmp = suffixed(path, TMP_SUFFIX);
    let result = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            sync.sync(&file, false)?;
            Ok(file)
        });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| annotate(e, &tmp))
}

/// Creates `dir` and its missing parents, each durably: a journal in a directory whose own
/// name a crash forgets would be lost with it.
fn create_dir_durably(dir: &Path, sync: &mut SyncStats) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.exists() {
        missing.push(d);
        match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => d = p,
            _ => break,
        }
    }
    fs::create_dir_all(dir)?;
    for d in missing.iter().rev() {
        sync_dir(d, sync)?;
    }
    Ok(())
}

/// Makes a rename or creation in `path`'s directory durable.
fn sync_dir(path: &Path, sync: &mut SyncStats) -> io::Result<()> {
    let dir = parent_dir(path);
    let d = File::open(&dir).map_err(|e| annotate(e, &dir))?;
    sync.sync(&d, false).map_err(|e| annotate(e, &dir))
}

/// Takes the lock file beside `path`, failing at once if another journal holds it. On a file
/// system without locks, goes on without one.
fn lock(path: &Path) -> io::Result<File> {
    let lock_path = suffixed(path, LOCK_SUFFIX);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| annotate(e, &lock_path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "journal {} is in use by another process (lock {})",
                path.display(),
                lock_path.display()
            ),
        )),
        Err(fs::TryLockError::Error(e)) if e.kind() == io::ErrorKind::Unsupported => Ok(file),
        Err(fs::TryLockError::Error(e)) => Err(annotate(e, &lock_path)),
    }
}

/// A new epoch: the time in nanoseconds mixed with the process id, as 16 hex digits.
fn new_epoch() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let pid = u64::from(std::process::id());
    format!("{:016x}", nanos ^ pid.rotate_left(48))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(suffix);
    PathBuf::from(s)
}

fn annotate(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn invalid_data(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn invalid_input(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// `12345` → `"12,345"`, for report lines.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A directory under the system temp dir, unique per test, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "livevote-journal-{}-{}-{name}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("create temp dir");
            TempDir(dir)
        }

        /// The journal's path, in a `data/` directory that does not exist yet.
        fn journal(&self) -> PathBuf {
            self.0.join("data").join("votes.journal")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const UIDS: [&str; 3] = ["alice", "bob", "carol-2"];

    /// Vote `v` goes to `UIDS[v % 3]`; even votes carry a vote id.
    fn vote(v: u64) -> Record {
        Record {
            version: v,
            uid: UIDS[(v % 3) as usize].to_string(),
            vote_id: v.is_multiple_of(2).then(|| format!("id-{v}")),
        }
    }

    fn votes(from: u64, to: u64) -> Vec<Record> {
        (from..=to).map(vote).collect()
    }

    /// What replaying `records` in order gives: counts and the vote-id window.
    fn replay(records: &[Record]) -> (Vec<(String, u64)>, Vec<RecentVote>) {
        let mut counts: Vec<(String, u64)> = Vec::new();
        let mut recent = Vec::new();
        for r in records {
            let i = match counts.iter().position(|(u, _)| *u == r.uid) {
                Some(i) => i,
                None => {
                    counts.push((r.uid.clone(), 0));
                    counts.len() - 1
                }
            };
            counts[i].1 += 1;
            if let Some(id) = &r.vote_id {
                recent.push(RecentVote {
                    vote_id: id.clone(),
                    uid: r.uid.clone(),
                    count: counts[i].1,
                    version: r.version,
                });
            }
        }
        (counts, recent)
    }

    fn sorted(mut counts: Vec<(String, u64)>) -> Vec<(String, u64)> {
        counts.sort();
        counts
    }

    fn file_len(path: &Path) -> u64 {
        fs::metadata(path).expect("metadata").len()
    }

    fn mentions(report: &[String], text: &str) -> bool {
        report.iter().any(|l| l.contains(text))
    }

    /// Writes versions 1..=n, one commit per version, and returns each record's start offset
    /// (plus the end of the file last).
    fn write_one_by_one(path: &Path, n: u64) -> Vec<u64> {
        let (mut j, _) = open(path).expect("open");
        let mut offsets = vec![j.len];
        for v in 1..=n {
            j.commit(&[vote(v)]).expect("commit");
            offsets.push(j.len);
        }
        assert_eq!(file_len(path), j.len);
        offsets
    }

    // --- pure parts ---------------------------------------------------------------------

    #[test]
    fn crc32_matches_the_standard_check_values() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
        // Feeding in pieces is the same as all at once.
        assert_eq!(!crc_update(crc_update(!0, b"1234"), b"56789"), 0xCBF4_3926);
    }

    #[test]
    fn records_round_trip_at_every_size() {
        let cases = [
            (0, "a", None),
            (1, "bob", Some("x")),
            (
                u64::MAX,
                &*"u".repeat(MAX_UID),
                Some(&*"v".repeat(MAX_VOTE_ID)),
            ),
            (42, "Z_9-", Some("123e4567-e89b-12d3-a456-426614174000")),
        ];
        for (version, uid, vote_id) in cases {
            let r = Record {
                version,
                uid: uid.to_string(),
                vote_id: vote_id.map(str::to_string),
            };
            check_record(&r).expect("valid");
            let mut buf = vec![];
            encode_record(&r, &mut buf);
            assert!((MIN_RECORD..=MAX_RECORD).contains(&buf.len()));
            let (got, used) = decode_record(&buf).expect("valid").expect("complete");
            assert_eq!(used, buf.len());
            assert_eq!((got.version, got.uid, got.vote_id), (version, uid, vote_id));
            // Trailing bytes are the next record's business.
            buf.extend_from_slice(b"junk");
            assert_eq!(decode_record(&buf).unwrap().unwrap().1, used);
        }
    }

    #[test]
    fn every_proper_prefix_of_a_record_is_incomplete() {
        let mut buf = vec![];
        encode_record(&vote(12), &mut buf);
        for n in 0..buf.len() {
            assert_eq!(decode_record(&buf[..n]), Ok(None), "prefix of {n} bytes");
        }
    }

    #[test]
    fn damaged_records_are_refused_for_the_right_reason() {
        let mut good = vec![];
        encode_record(&vote(7), &mut good);
        let len = good[2]; // 13: "bob", no vote id
        let table: [(usize, u8, Defect); 6] = [
            (0, 0xFF, Defect::Magic),
            (1, 0x01, Defect::Magic),
            (2, len, Defect::Length),  // length 0
            (3, 0x01, Defect::Length), // length 269 > MAX_PAYLOAD
            (5, 0x01, Defect::Checksum),
            (9, 0x01, Defect::Checksum),
        ];
        for (at, mask, defect) in table {
            let mut b = good.clone();
            b[at] ^= mask;
            assert_eq!(decode_record(&b), Err(defect), "byte {at} ^ {mask:#x}");
        }
        // A checksum over nonsense content: valid framing, invalid uid.
        let mut b = good.clone();
        b[FRAME + 9] = b' ';
        let crc = !crc_update(crc_update(!0, &b[2..4]), &b[FRAME..]);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_record(&b), Err(Defect::Payload));
    }

    #[test]
    fn invalid_ids_are_refused_before_writing() {
        let bad = [
            ("", None),
            ("a b", None),
            (&*"u".repeat(MAX_UID + 1), None),
            ("é", None),
            ("ok", Some("")),
            ("ok", Some(&*"v".repeat(MAX_VOTE_ID + 1))),
            ("ok", Some("a/b")),
        ];
        for (uid, vote_id) in bad {
            let r = Record {
                version: 1,
                uid: uid.to_string(),
                vote_id: vote_id.map(str::to_string),
            };
            assert!(check_record(&r).is_err(), "{r:?}");
        }
    }

    #[test]
    fn headers_round_trip_and_every_damage_is_refused() {
        let h = encode_header("0123456789abcdef", 1234);
        let got = decode_header(&h).expect("valid");
        assert_eq!(
            (got.base, got.epoch.as_str(), got.len),
            (1234, "0123456789abcdef", h.len())
        );
        for n in 0..h.len() {
            assert!(decode_header(&h[..n]).is_err(), "prefix {n}");
        }
        for i in 0..h.len() {
            for mask in [0x01, 0x80, 0xFF] {
                let mut b = h.clone();
                b[i] ^= mask;
                b.extend_from_slice(&[0; 64]); // a longer epoch length must not reach good bytes
                assert!(decode_header(&b).is_err(), "byte {i} ^ {mask:#x}");
            }
        }
        assert_eq!(
            decode_header(&encode_header("e", u64::MAX)),
            Err(HeaderError::Version)
        );
    }

    #[test]
    fn snapshots_round_trip_and_every_damage_is_refused() {
        let counts = vec![("alice".to_string(), 5), ("bob".to_string(), 0)];
        let recent = vec![RecentVote {
            vote_id: "id-1".into(),
            uid: "alice".into(),
            count: 5,
            version: 9,
        }];
        let bytes = encode_snapshot("ep0ch", 9, &counts, &recent).expect("valid");
        let s = decode_snapshot(&bytes).expect("decodes");
        assert_eq!((s.epoch.as_str(), s.version), ("ep0ch", 9));
        assert_eq!((s.counts, s.recent), (counts.clone(), recent.clone()));
        for n in 0..bytes.len() {
            assert!(decode_snapshot(&bytes[..n]).is_err(), "prefix {n}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x20;
            assert!(decode_snapshot(&b).is_err(), "byte {i}");
        }
        let twice = vec![("a".to_string(), 1), ("a".to_string(), 2)];
        assert!(encode_snapshot("e", 3, &twice, &[]).is_err());
        let bad_uid = vec![("a b".to_string(), 1)];
        assert!(encode_snapshot("e", 1, &bad_uid, &[]).is_err());
    }

    /// A tiny xorshift generator: deterministic garbage without a dependency.
    fn garbage(seed: &mut u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                *seed as u8
            })
            .collect()
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x9E37_79B9_7F4A_7C15;
        let mut good = encode_header("e", 0);
        for r in votes(1, 20) {
            encode_record(&r, &mut good);
        }
        for round in 0..2000 {
            let len = (round % 300) as usize;
            let mut g = garbage(&mut seed, len);
            if round % 3 == 0 && len > 2 {
                g[0] = RECORD_MAGIC[0];
                g[1] = RECORD_MAGIC[1];
            }
            let _ = decode_record(&g);
            let _ = decode_header(&g);
            let _ = decode_snapshot(&g);
            let _ = scan(&g, 0, 0, 0, |_| {});
            // Good records with garbage spliced in somewhere.
            let mut mixed = good.clone();
            let at = (seed as usize) % mixed.len();
            mixed.splice(at..at, g);
            if let Ok(h) = decode_header(&mixed) {
                let _ = scan(&mixed, h.len, h.base, 0, |_| {});
            }
        }
    }

    #[test]
    fn a_scan_skips_what_the_snapshot_has_and_what_is_out_of_sequence() {
        let mut data = vec![];
        for v in [1, 2, 3, 3, 4] {
            encode_record(&vote(v), &mut data);
        }
        let mut seen = vec![];
        let s = scan(&data, 0, 0, 2, |r| seen.push(r.version)).expect("scans");
        // Versions 1 and 2 are in the snapshot; the duplicate 3 is skipped, not counted twice.
        assert_eq!(seen, [3, 4]);
        assert_eq!(
            (s.last, s.records, s.old, s.lost, s.keep),
            (4, 4, 2, 0, data.len())
        );
        assert!(
            mentions(&s.notes, "version 3 where 4 was due"),
            "{:?}",
            s.notes
        );
        assert!(mentions(&s.notes, "no vote lost"));
    }

    #[test]
    fn a_scan_skips_inserted_garbage_without_losing_votes() {
        let mut data = vec![];
        encode_record(&vote(1), &mut data);
        data.extend_from_slice(&[0; 100]);
        encode_record(&vote(2), &mut data);
        let s = scan(&data, 0, 0, 0, |_| {}).expect("scans");
        assert_eq!((s.last, s.records, s.lost), (2, 2, 0));
    }

    #[test]
    fn a_scan_refuses_a_good_record_it_cannot_place() {
        let mut data = vec![];
        encode_record(&vote(1), &mut data);
        data.extend_from_slice(&[0; 5]);
        // Version 50 after 5 damaged bytes: 48 votes cannot hide in 5 bytes.
        encode_record(&vote(50), &mut data);
        let e = scan(&data, 0, 0, 0, |_| {}).unwrap_err();
        assert!(e.contains("version 50"), "{e}");
    }

    #[test]
    fn thousands_are_grouped() {
        let table = [
            (0, "0"),
            (999, "999"),
            (1000, "1,000"),
            (12345, "12,345"),
            (1_000_000, "1,000,000"),
        ];
        for (n, s) in table {
            assert_eq!(thousands(n), s);
        }
    }

    // --- files --------------------------------------------------------------------------

    #[test]
    fn a_new_journal_starts_a_new_epoch_at_version_zero() {
        let dir = TempDir::new("new");
        let path = dir.journal();
        let (j, r) = open(&path).expect("open");
        assert_eq!((r.version, r.lost), (0, 0));
        assert!(r.counts.is_empty() && r.recent.is_empty());
        assert_eq!(r.epoch.len(), 16);
        assert!(r.epoch.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!((j.epoch(), j.path(), j.version()), (&*r.epoch, &*path, 0));
        assert!(mentions(&r.report, "new journal"));
        assert_eq!(file_len(&path), encode_header(&r.epoch, 0).len() as u64);
        drop(j);
        let (_, again) = open(&path).expect("reopen");
        assert_eq!((again.epoch, again.version), (r.epoch, 0));
    }

    #[test]
    fn committed_batches_survive_a_reopen() {
        let dir = TempDir::new("round-trip");
        let path = dir.journal();
        let (mut j, _) = open(&path).expect("open");
        let epoch = j.epoch().to_string();
        let fsyncs = j.fsyncs();
        let batches = [votes(1, 1), votes(2, 10), votes(11, 11), votes(12, 100)];
        for b in &batches {
            j.commit(b).expect("commit");
        }
        j.commit(&[]).expect("empty commit");
        // Group commit: one fsync per non-empty batch.
        assert_eq!(j.fsyncs() - fsyncs, batches.len() as u64);
        assert_eq!((j.version(), j.records_since_checkpoint()), (100, 100));
        drop(j);

        let (j, r) = open(&path).expect("reopen");
        let (counts, recent) = replay(&votes(1, 100));
        assert_eq!((r.epoch.as_str(), r.version, r.lost), (&*epoch, 100, 0));
        assert_eq!((r.counts, r.recent), (counts, recent));
        assert!(mentions(
            &r.report,
            "recovered 100 votes (snapshot at 0 + 100 records)"
        ));
        assert_eq!(r.report.len(), 1, "{:?}", r.report);
        assert_eq!((j.version(), j.records_since_checkpoint()), (100, 100));
    }

    #[test]
    fn commits_out_of_sequence_or_with_bad_ids_write_nothing() {
        let dir = TempDir::new("refused");
        let path = dir.journal();
        let (mut j, _) = open(&path).expect("open");
        j.commit(&votes(1, 3)).expect("commit");
        let len = file_len(&path);
        let bad_uid = Record {
            version: 5,
            uid: "no spaces".into(),
            vote_id: None,
        };
        let refused = [
            votes(5, 6),                    // a gap
            votes(3, 4),                    // a repeat
            vec![vote(4), bad_uid.clone()], // a bad record after a good one
        ];
        for batch in refused {
            let e = j.commit(&batch).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{batch:?}");
            assert_eq!((file_len(&path), j.version()), (len, 3));
        }
        j.commit(&votes(4, 4)).expect("the journal still works");
    }

    #[test]
    fn a_torn_tail_is_cut_off_at_every_cut_point() {
        let dir = TempDir::new("torn");
        let path = dir.journal();
        let offsets = write_one_by_one(&path, 5);
        let whole = fs::read(&path).expect("read");
        let (last_start, end) = (offsets[4], offsets[5]);
        let (counts4, recent4) = replay(&votes(1, 4));
        for cut in last_start..end {
            fs::write(&path, &whole[..cut as usize]).expect("write");
            let (mut j, r) = open(&path).expect("open");
            assert_eq!((r.version, r.lost), (4, 0), "cut at {cut}");
            assert_eq!((&r.counts, &r.recent), (&counts4, &recent4), "cut at {cut}");
            if cut > last_start {
                let line = format!(
                    "torn record at byte {} (incomplete): cut off {} bytes",
                    thousands(last_start),
                    cut - last_start
                );
                assert!(mentions(&r.report, &line), "{:?}", r.report);
            } else {
                assert_eq!(r.report.len(), 1, "{:?}", r.report);
            }
            assert_eq!(
                file_len(&path),
                last_start,
                "truncated to the last good record"
            );
            // The next vote lands right after the last good record, and all reads back.
            let next = Record {
                version: 5,
                uid: "dave".into(),
                vote_id: Some("retry-5".into()),
            };
            j.commit(std::slice::from_ref(&next)).expect("commit");
            drop(j);
            let (_, r) = open(&path).expect("reopen");
            let mut all = votes(1, 4);
            all.push(next);
            let (counts, recent) = replay(&all);
            assert_eq!((r.version, r.counts, r.recent), (5, counts, recent));
            assert_eq!(r.report.len(), 1, "clean now: {:?}", r.report);
        }
    }

    #[test]
    fn a_corrupt_last_record_is_cut_off() {
        let dir = TempDir::new("bad-tail");
        let path = dir.journal();
        let offsets = write_one_by_one(&path, 3);
        let mut bytes = fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        fs::write(&path, &bytes).expect("write");
        let (_, r) = open(&path).expect("open");
        assert_eq!(r.version, 2);
        let line = format!("torn record at byte {} (checksum)", offsets[2]);
        assert!(mentions(&r.report, &line), "{:?}", r.report);
        assert_eq!(file_len(&path), offsets[2]);
    }

    #[test]
    fn a_flipped_byte_in_a_middle_record_loses_that_vote_only() {
        let dir = TempDir::new("flip");
        let path = dir.journal();
        let offsets = write_one_by_one(&path, 5);
        let whole = fs::read(&path).expect("read");
        let (start, end) = (offsets[2], offsets[3]); // record 3
        let mut survivors = votes(1, 2);
        survivors.extend(votes(4, 5));
        let (counts, _) = replay(&survivors);
        for i in start..end {
            for mask in [0x01, 0x80, 0xFF] {
                let mut bytes = whole.clone();
                bytes[i as usize] ^= mask;
                fs::write(&path, &bytes).expect("write");
                let (j, r) = open(&path).expect("open");
                let what = format!("byte {i} ^ {mask:#x}: {:?}", r.report);
                assert_eq!((r.version, r.lost), (5, 1), "{what}");
                assert_eq!(sorted(r.counts.clone()), sorted(counts.clone()), "{what}");
                let versions: Vec<u64> = r.recent.iter().map(|v| v.version).collect();
                assert_eq!(versions, [2, 4], "{what}");
                let line = format!(
                    "corrupt record at byte {start} ({}",
                    if i < start + 2 { "bad magic" } else { "" }
                );
                assert!(mentions(&r.report, &line), "{what}");
                assert!(mentions(
                    &r.report,
                    &format!("resynchronised at {end} — 1 vote lost")
                ));
                assert_eq!(file_len(&path), whole.len() as u64, "nothing cut: {what}");
                drop(j);
            }
        }
    }

    #[test]
    fn a_damaged_header_is_an_error() {
        let dir = TempDir::new("header");
        let path = dir.journal();
        let offsets = write_one_by_one(&path, 2);
        let whole = fs::read(&path).expect("read");
        for i in 0..offsets[0] as usize {
            let mut bytes = whole.clone();
            bytes[i] ^= 0x01;
            fs::write(&path, &bytes).expect("write");
            let e = open(&path).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "byte {i}");
            assert!(e.to_string().contains("header unreadable"), "{e}");
        }
        fs::write(&path, b"").expect("write");
        assert!(open(&path).is_err(), "an empty journal has no header");
    }

    #[test]
    fn a_checkpoint_keeps_the_tally_and_empties_the_journal() {
        let dir = TempDir::new("checkpoint");
        let path = dir.journal();
        let (mut j, r0) = open(&path).expect("open");
        let header = file_len(&path);
        j.commit(&votes(1, 1000)).expect("commit");
        let (counts, recent) = replay(&votes(1, 1000));
        let window = &recent[recent.len() - 10..];
        let e = j.checkpoint(999, &counts, window).unwrap_err();
        assert_eq!(
            e.kind(),
            io::ErrorKind::InvalidInput,
            "not the last version"
        );
        j.checkpoint(1000, &counts, window).expect("checkpoint");
        assert_eq!((file_len(&path), j.records_since_checkpoint()), (header, 0));
        j.commit(&votes(1001, 1010)).expect("commit");
        assert_eq!(j.records_since_checkpoint(), 10);
        drop(j);

        let (j, r) = open(&path).expect("reopen");
        let (all_counts, all_recent) = replay(&votes(1, 1010));
        assert_eq!((r.epoch.as_str(), r.version, r.lost), (&*r0.epoch, 1010, 0));
        assert_eq!(r.counts, all_counts);
        let mut expected_recent = window.to_vec();
        expected_recent.extend(all_recent.into_iter().filter(|v| v.version > 1000));
        assert_eq!(r.recent, expected_recent);
        assert!(mentions(
            &r.report,
            "recovered 1,010 votes (snapshot at 1,000 + 10 records)"
        ));
        assert_eq!(j.records_since_checkpoint(), 10);
        assert!(
            file_len(&path) < header + 10 * MAX_RECORD as u64,
            "small again"
        );
    }

    #[test]
    fn a_crash_between_snapshot_and_fresh_journal_counts_nothing_twice() {
        let dir = TempDir::new("half-checkpoint");
        let path = dir.journal();
        let (mut j, r0) = open(&path).expect("open");
        j.commit(&votes(1, 50)).expect("commit");
        let (counts, recent) = replay(&votes(1, 50));
        // Only the snapshot half of a checkpoint: the old journal still holds versions 1..=50.
        let snap = encode_snapshot(&r0.epoch, 50, &counts, &recent).expect("encode");
        replace_file(
            &suffixed(&path, SNAPSHOT_SUFFIX),
            &snap,
            &mut SyncStats::default(),
        )
        .expect("snapshot");
        drop(j);
        let (mut j, r) = open(&path).expect("reopen");
        assert_eq!((r.version, &r.counts, &r.recent), (50, &counts, &recent));
        assert!(mentions(
            &r.report,
            "50 records already in the snapshot skipped"
        ));
        j.commit(&votes(51, 52)).expect("commit");
        drop(j);
        let (_, r) = open(&path).expect("reopen");
        assert_eq!((r.version, r.counts), (52, replay(&votes(1, 52)).0));
    }

    #[test]
    fn a_corrupt_snapshot_is_an_error_unless_the_journal_covers_everything() {
        let dir = TempDir::new("bad-snapshot");
        let path = dir.journal();
        let snap_path = suffixed(&path, SNAPSHOT_SUFFIX);
        let (mut j, r0) = open(&path).expect("open");
        j.commit(&votes(1, 20)).expect("commit");
        let (counts, recent) = replay(&votes(1, 20));

        // Snapshot written, journal not yet replaced: the journal still starts at 0.
        let mut snap = encode_snapshot(&r0.epoch, 20, &counts, &recent).expect("encode");
        snap[20] ^= 0x01;
        fs::write(&snap_path, &snap).expect("write");
        drop(j);
        let (mut j, r) = open(&path).expect("covered");
        assert_eq!((r.version, &r.counts), (20, &counts));
        assert!(
            mentions(&r.report, "is corrupt (checksum); ignored"),
            "{:?}",
            r.report
        );

        // After a real checkpoint the journal starts at 20: a corrupt snapshot now loses votes.
        j.checkpoint(20, &counts, &recent).expect("checkpoint");
        j.commit(&votes(21, 22)).expect("commit");
        drop(j);
        let mut bytes = fs::read(&snap_path).expect("read");
        bytes[30] ^= 0x01;
        fs::write(&snap_path, &bytes).expect("write");
        let e = open(&path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("refusing to start"), "{e}");
        fs::write(&snap_path, b"LVS1").expect("write");
        assert!(open(&path).is_err(), "a truncated snapshot too");
        fs::remove_file(&snap_path).expect("remove");
        let e = open(&path).unwrap_err();
        assert!(
            e.to_string().contains("snapshot") && e.to_string().contains("missing"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_journal_continues_from_the_snapshot() {
        let dir = TempDir::new("no-journal");
        let path = dir.journal();
        let (mut j, r0) = open(&path).expect("open");
        j.commit(&votes(1, 30)).expect("commit");
        let (counts, recent) = replay(&votes(1, 30));
        j.checkpoint(30, &counts, &recent).expect("checkpoint");
        drop(j);
        fs::remove_file(&path).expect("remove");
        let (mut j, r) = open(&path).expect("reopen");
        assert_eq!((&*r.epoch, r.version, &r.counts), (&*r0.epoch, 30, &counts));
        assert!(mentions(&r.report, "missing"));
        j.commit(&votes(31, 31)).expect("commit");
    }

    #[test]
    fn files_from_different_histories_are_an_error() {
        let dir = TempDir::new("epochs");
        let path = dir.journal();
        let (mut j, _) = open(&path).expect("open");
        j.commit(&votes(1, 3)).expect("commit");
        j.checkpoint(3, &replay(&votes(1, 3)).0, &[])
            .expect("checkpoint");
        drop(j);
        fs::write(&path, encode_header("another", 3)).expect("write");
        let e = open(&path).unwrap_err();
        assert!(e.to_string().contains("different histories"), "{e}");
        fs::write(&path, encode_header(&"x".repeat(5), 9)).expect("write");
        assert!(open(&path).is_err());
    }

    #[test]
    fn a_failed_commit_leaves_the_file_as_it_was() {
        let dir = TempDir::new("failed-commit");
        let path = dir.journal();
        let (mut j, _) = open(&path).expect("open");
        j.commit(&votes(1, 5)).expect("commit");
        let len = file_len(&path);
        for n in [0, 1, 7, 30, 100] {
            j.fail_write_after = Some(n);
            assert!(j.commit(&votes(6, 10)).is_err(), "fails after {n} bytes");
            assert_eq!((file_len(&path), j.version()), (len, 5), "after {n} bytes");
        }
        j.commit(&votes(6, 7)).expect("the journal still works");
        drop(j);
        let (_, r) = open(&path).expect("reopen");
        assert_eq!((r.version, r.counts), (7, replay(&votes(1, 7)).0));
        assert_eq!(r.report.len(), 1, "{:?}", r.report);
    }

    #[test]
    fn a_commit_that_cannot_be_undone_stops_the_journal() {
        let dir = TempDir::new("poisoned");
        let path = dir.journal();
        let (mut j, _) = open(&path).expect("open");
        j.commit(&votes(1, 2)).expect("commit");
        // A read-only handle: the write fails, and so does cutting the file back.
        j.file = File::open(&path).expect("read-only");
        assert!(j.commit(&votes(3, 3)).is_err());
        let e = j.commit(&votes(3, 3)).unwrap_err();
        assert!(e.to_string().contains("restart"), "{e}");
        assert!(j.checkpoint(2, &[], &[]).is_err());
        drop(j);
        let (_, r) = open(&path).expect("reopen");
        assert_eq!(r.version, 2);
    }

    #[test]
    fn a_journal_can_be_open_only_once() {
        let dir = TempDir::new("lock");
        let path = dir.journal();
        let (j, _) = open(&path).expect("open");
        let e = open(&path).unwrap_err();
        assert!(e.to_string().contains("in use"), "{e}");
        drop(j);
        open(&path).expect("free again");
    }

    #[test]
    fn a_million_votes_recover() {
        const N: u64 = 1_000_000;
        const BATCH: u64 = 10_000;
        let dir = TempDir::new("million");
        let path = dir.journal();
        let (mut j, _) = open(&path).expect("open");
        let started = Instant::now();
        for from in (1..=N).step_by(BATCH as usize) {
            j.commit(&votes(from, from + BATCH - 1)).expect("commit");
        }
        let written = started.elapsed();
        drop(j);
        let started = Instant::now();
        let (j, r) = open(&path).expect("reopen");
        let took = started.elapsed();
        eprintln!(
            "1,000,000 records ({} bytes): written in {written:?} ({} fsyncs), recovered in \
             {took:?}",
            thousands(file_len(&path)),
            N / BATCH
        );
        assert_eq!((r.version, r.lost, j.records_since_checkpoint()), (N, 0, N));
        let mut expected = vec![0u64; 3];
        for v in 1..=N {
            expected[(v % 3) as usize] += 1;
        }
        let want: Vec<(String, u64)> = UIDS.iter().map(|u| u.to_string()).zip(expected).collect();
        assert_eq!(sorted(r.counts), sorted(want));
        assert_eq!(r.recent.len() as u64, N / 2);
        let last = r.recent.last().expect("recent");
        assert_eq!((last.vote_id.as_str(), last.version), ("id-1000000", N));
    }
}
