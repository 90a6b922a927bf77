//! Pure encoding and decoding of the journal's headers, records and snapshots: bytes in, bytes
//! out, no I/O. The format is in the parent module's docs.

use std::collections::HashMap;
use std::fmt;
use std::io;

use super::crc::{crc32, crc_update};
use super::files::invalid_input;
use super::*;

/// `s` as an id if it is 1..=`max` bytes of `A-Z a-z 0-9 _ -`.
pub(super) fn id(bytes: &[u8], max: usize) -> Option<&str> {
    let ok = (1..=max).contains(&bytes.len()) && bytes.iter().all(|&b| crate::ids::is_id_byte(b));
    if ok {
        std::str::from_utf8(bytes).ok()
    } else {
        None
    }
}

pub(super) fn check_id(what: &str, s: &str, max: usize) -> io::Result<()> {
    match id(s.as_bytes(), max) {
        Some(_) => Ok(()),
        None => Err(invalid_input(format!(
            "journal: {what} {s:?} is not 1 to {max} of A-Z a-z 0-9 _ -"
        ))),
    }
}

pub(super) fn check_record(r: &Record) -> io::Result<()> {
    check_id("uid", &r.uid, MAX_UID)?;
    if let Some(v) = &r.vote_id {
        check_id("vote id", v, MAX_VOTE_ID)?;
    }
    Ok(())
}

/// A format of the journal's files: the current one, or an older one still read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Format {
    /// `LVJ1`/`LVS1`: no format field, no record type, no time. Read only.
    V1,
    /// `LVJF`/`LVSF` with format 2: typed records, each vote with its time.
    V2,
}

impl Format {
    /// Smallest payload: (type,) version, (time,) a 1-byte uid with its length, no vote id.
    pub(super) fn min_payload(self) -> usize {
        match self {
            Format::V1 => 8 + 1 + 1 + 1,
            Format::V2 => 1 + 8 + 8 + 1 + 1 + 1,
        }
    }

    /// Largest payload: the longest uid and vote id.
    pub(super) fn max_payload(self) -> usize {
        match self {
            Format::V1 => 8 + 1 + MAX_UID + 1 + MAX_VOTE_ID,
            Format::V2 => MAX_PAYLOAD,
        }
    }

    /// Smallest record on disk; bounds how many votes a damaged stretch of bytes can have held.
    pub(super) fn min_record(self) -> usize {
        FRAME + self.min_payload()
    }
}

/// A record as it lies in the journal's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RecordRef<'a> {
    pub(super) version: u64,
    pub(super) uid: &'a str,
    pub(super) vote_id: Option<&'a str>,
    /// When it was counted (ms since the Unix epoch); `None` in format 1.
    pub(super) at_ms: Option<u64>,
}

/// Why bytes are not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Defect {
    Magic,
    Length,
    Checksum,
    Payload,
    /// A checksum-valid record of a type this version does not know (a newer writer's).
    Type(u8),
}

impl fmt::Display for Defect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Defect::Magic => f.write_str("bad magic"),
            Defect::Length => f.write_str("bad length"),
            Defect::Checksum => f.write_str("checksum"),
            Defect::Payload => f.write_str("bad content"),
            Defect::Type(t) => write!(f, "record type {t}, unknown to this version"),
        }
    }
}

/// Appends `r` as a format-2 vote record; `r` must be valid ([`check_record`]).
pub(super) fn encode_record(r: &Record, out: &mut Vec<u8>) {
    let vote_id = r.vote_id.as_deref().unwrap_or("");
    let len = 1 + 8 + 8 + 1 + r.uid.len() + 1 + vote_id.len();
    debug_assert!((Format::V2.min_payload()..=MAX_PAYLOAD).contains(&len));
    let start = out.len();
    out.extend_from_slice(&RECORD_MAGIC);
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(RECORD_VOTE);
    out.extend_from_slice(&r.version.to_le_bytes());
    out.extend_from_slice(&r.at_ms.to_le_bytes());
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

/// The record of `format` at the start of `buf`: `Ok(Some((record, bytes used)))`, `Ok(None)`
/// if `buf` is a proper prefix of a record (more bytes could complete it), or why it is not one.
pub(super) fn decode_record(
    buf: &[u8],
    format: Format,
) -> Result<Option<(RecordRef<'_>, usize)>, Defect> {
    let have = buf.len().min(RECORD_MAGIC.len());
    if buf[..have] != RECORD_MAGIC[..have] {
        return Err(Defect::Magic);
    }
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = usize::from(u16::from_le_bytes([buf[2], buf[3]]));
    if !(format.min_payload()..=format.max_payload()).contains(&len) {
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
    let record = decode_payload(payload, format)?;
    Ok(Some((record, total)))
}

fn decode_payload(p: &[u8], format: Format) -> Result<RecordRef<'_>, Defect> {
    let mut r = Reader::new(p);
    let at_ms = match format {
        Format::V1 => None,
        Format::V2 => match r.u8() {
            Some(RECORD_VOTE) => None,
            Some(t) => return Err(Defect::Type(t)),
            None => return Err(Defect::Payload),
        },
    };
    let fields = (|| {
        let version = r.u64()?;
        let at_ms = match format {
            Format::V1 => at_ms,
            Format::V2 => Some(r.u64()?),
        };
        let uid = r.id(MAX_UID)?;
        let vote_id = match r.u8()? {
            0 => None,
            n => Some(id(r.take(usize::from(n))?, MAX_VOTE_ID)?),
        };
        r.is_empty().then_some(RecordRef {
            version,
            uid,
            vote_id,
            at_ms,
        })
    })();
    fields.ok_or(Defect::Payload)
}

/// A journal's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Header {
    pub(super) format: Format,
    pub(super) base: u64,
    pub(super) epoch: String,
    /// Bytes it takes; the first record follows.
    pub(super) len: usize,
}

/// Why a journal header is unreadable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum HeaderError {
    Short,
    Magic,
    /// A format newer than this version reads.
    Format(u16),
    Epoch,
    Checksum,
    Version,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::Short => f.write_str("too short"),
            HeaderError::Magic => f.write_str("not a livevote journal"),
            HeaderError::Format(v) => write!(
                f,
                "format {v}, newer than this version reads (up to {FORMAT})"
            ),
            HeaderError::Epoch => f.write_str("bad epoch"),
            HeaderError::Checksum => f.write_str("checksum"),
            HeaderError::Version => f.write_str("impossible base version"),
        }
    }
}

/// A format-2 header; `epoch` must be valid ([`new_epoch`] or a decoded one).
pub(super) fn encode_header(epoch: &str, base: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 2 + 8 + 1 + epoch.len() + 4);
    out.extend_from_slice(JOURNAL_MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&base.to_le_bytes());
    out.push(epoch.len() as u8);
    out.extend_from_slice(epoch.as_bytes());
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Which format `buf` starts with, given the current and the old magic; the format field
/// (current magic only) is consumed from `r`.
fn format_of(
    buf: &[u8],
    r: &mut Reader<'_>,
    magic: &[u8; 4],
    magic_v1: &[u8; 4],
) -> Result<Format, HeaderError> {
    let have = buf.len().min(magic.len());
    if buf[..have] == magic_v1[..have] && buf[..have] != magic[..have] {
        r.take(magic_v1.len()).ok_or(HeaderError::Short)?;
        return Ok(Format::V1);
    }
    if buf[..have] != magic[..have] {
        return Err(HeaderError::Magic);
    }
    r.take(magic.len()).ok_or(HeaderError::Short)?;
    match r.u16().ok_or(HeaderError::Short)? {
        FORMAT => Ok(Format::V2),
        v => Err(HeaderError::Format(v)),
    }
}

pub(super) fn decode_header(buf: &[u8]) -> Result<Header, HeaderError> {
    let mut r = Reader::new(buf);
    let format = format_of(buf, &mut r, JOURNAL_MAGIC, JOURNAL_MAGIC_V1)?;
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
        format,
        base,
        epoch: epoch.to_string(),
        len: r.pos,
    })
}

/// The tally at one version, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Snapshot {
    pub(super) format: Format,
    pub(super) epoch: String,
    pub(super) version: u64,
    pub(super) counts: Vec<(String, u64)>,
    pub(super) recent: Vec<RecentVote>,
}

/// Checks what the caller hands to a checkpoint, then encodes it in format 2.
pub(super) fn encode_snapshot(
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
        body.extend_from_slice(&v.at_ms.to_le_bytes());
    }
    let mut out = Vec::with_capacity(snapshot_head(Format::V2) + body.len() + 4);
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Snapshot magic, (format,) and body length u64; the body follows.
fn snapshot_head(format: Format) -> usize {
    match format {
        Format::V1 => 4 + 8,
        Format::V2 => 4 + 2 + 8,
    }
}

/// Smallest remembered-vote entry: 1-byte vote id and uid with their lengths, count, version
/// (, time).
fn min_recent_entry(format: Format) -> usize {
    match format {
        Format::V1 => 1 + 1 + 1 + 1 + 8 + 8,
        Format::V2 => 1 + 1 + 1 + 1 + 8 + 8 + 8,
    }
}

/// Why a snapshot is unreadable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SnapshotError {
    Magic,
    Format(u16),
    Length,
    Checksum,
    Content,
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::Magic => f.write_str("not a livevote snapshot"),
            SnapshotError::Format(v) => write!(
                f,
                "format {v}, newer than this version reads (up to {FORMAT})"
            ),
            SnapshotError::Length => f.write_str("wrong length"),
            SnapshotError::Checksum => f.write_str("checksum"),
            SnapshotError::Content => f.write_str("bad content"),
        }
    }
}

/// Decodes a snapshot of either format; the remembered votes of format 1, which have no time,
/// get `legacy_ms` (the time of opening: kept for a whole window from the restart).
pub(super) fn decode_snapshot(buf: &[u8], legacy_ms: u64) -> Result<Snapshot, SnapshotError> {
    let mut r = Reader::new(buf);
    let format = match format_of(buf, &mut r, SNAPSHOT_MAGIC, SNAPSHOT_MAGIC_V1) {
        Ok(f) => f,
        Err(HeaderError::Format(v)) => return Err(SnapshotError::Format(v)),
        Err(HeaderError::Magic) => return Err(SnapshotError::Magic),
        Err(_) => return Err(SnapshotError::Length),
    };
    let body_len = r.u64().ok_or(SnapshotError::Length)?;
    let head = snapshot_head(format);
    // Exactly head, body and CRC; compared without overflow whatever `body_len` says.
    if buf.len() < head + 4 || body_len != (buf.len() - head - 4) as u64 {
        return Err(SnapshotError::Length);
    }
    let end = buf.len() - 4;
    let stored = u32::from_le_bytes([buf[end], buf[end + 1], buf[end + 2], buf[end + 3]]);
    if crc32(&buf[..end]) != stored {
        return Err(SnapshotError::Checksum);
    }
    let mut r = Reader::new(&buf[head..end]);
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
    if m > r.remaining() / min_recent_entry(format) {
        return Err(bad);
    }
    let mut recent = Vec::with_capacity(m);
    for _ in 0..m {
        let vote_id = r.id(MAX_VOTE_ID).ok_or(bad)?.to_string();
        let uid = r.id(MAX_UID).ok_or(bad)?.to_string();
        let count = r.u64().ok_or(bad)?;
        let version = r.u64().ok_or(bad)?;
        let at_ms = match format {
            Format::V1 => legacy_ms,
            Format::V2 => r.u64().ok_or(bad)?,
        };
        recent.push(RecentVote {
            vote_id,
            uid,
            count,
            version,
            at_ms,
        });
    }
    if !r.is_empty() {
        return Err(bad);
    }
    Ok(Snapshot {
        format,
        epoch,
        version,
        counts,
        recent,
    })
}

/// A bounds-checked cursor over bytes; every read is `None` past the end.
pub(super) struct Reader<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
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

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_le_bytes([b[0], b[1]]))
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
