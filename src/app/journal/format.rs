//! Pure encoding and decoding of the journal's headers, records and snapshots: bytes in, bytes
//! out, no I/O. The format is in the parent module's docs.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::ops::RangeInclusive;

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

/// Whether `r` can be written as it is: every id valid, and a mark with neither a candidate nor
/// a vote id (its record has no room for them, and dropping them silently would lie).
pub(super) fn check_record(r: &Record) -> io::Result<()> {
    if let Entry::Mark(m) = r.entry {
        if !r.uid.is_empty() || r.vote_id.is_some() {
            return Err(invalid_input(format!(
                "journal: a mark ({m:?}) carries no candidate and no vote id, but got uid {:?} \
                 and vote id {:?}",
                r.uid, r.vote_id
            )));
        }
        return Ok(());
    }
    check_id("uid", &r.uid, MAX_UID)?;
    if let Some(v) = &r.vote_id {
        check_id("vote id", v, MAX_VOTE_ID)?;
    }
    if let Entry::Ballot { voter, from } = &r.entry {
        check_id("voter id", voter, MAX_VOTER)?;
        if let Some(from) = from {
            check_id("uid", from, MAX_UID)?;
        }
    }
    Ok(())
}

/// A format of the journal's files: the current one, or an older one still read. Ordered from
/// the oldest, so the oldest of a journal and its snapshot says what an upgrade starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Format {
    /// `LVJ1`/`LVS1`: no format field, no record type, no time. Read only.
    V1,
    /// `LVJF`/`LVSF` with format 2: typed records (votes only), each with its time. Read only.
    V2,
    /// `LVJF`/`LVSF` with format 3: votes, ballots and marks; snapshots with the standing.
    V3,
}

impl Format {
    /// The number the docs and the reports call it by.
    pub(super) fn number(self) -> u16 {
        match self {
            Format::V1 => 1,
            Format::V2 => 2,
            Format::V3 => 3,
        }
    }

    /// Smallest payload of any record of the format: format 1's vote (version, a 1-byte uid
    /// with its length, no vote id), format 2's typed and timed vote, format 3's mark.
    pub(super) fn min_payload(self) -> usize {
        match self {
            Format::V1 => 8 + 1 + 1 + 1,
            Format::V2 => *VOTE_PAYLOAD.start(),
            Format::V3 => MIN_PAYLOAD,
        }
    }

    /// Largest payload of any record of the format: format 1's and 2's longest vote, format
    /// 3's longest ballot.
    pub(super) fn max_payload(self) -> usize {
        match self {
            Format::V1 => 8 + 1 + MAX_UID + 1 + MAX_VOTE_ID,
            Format::V2 => *VOTE_PAYLOAD.end(),
            Format::V3 => MAX_PAYLOAD,
        }
    }

    /// The payload lengths a record of type `t` may have in this format (type byte included);
    /// `None` for a type the format does not have. Format 1 has no types.
    pub(super) fn payload_of_type(self, t: u8) -> Option<RangeInclusive<usize>> {
        match (self, t) {
            (Format::V1, _) => None,
            (Format::V2 | Format::V3, RECORD_VOTE) => Some(VOTE_PAYLOAD),
            (Format::V3, RECORD_BALLOT) => Some(BALLOT_PAYLOAD),
            (Format::V3, RECORD_MARK) => Some(MARK_PAYLOAD),
            _ => None,
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
    /// The candidate; empty for a mark.
    pub(super) uid: &'a str,
    pub(super) vote_id: Option<&'a str>,
    /// When it was counted (ms since the Unix epoch); `None` in format 1.
    pub(super) at_ms: Option<u64>,
    pub(super) entry: EntryRef<'a>,
}

/// What a record did, borrowed from the journal's bytes ([`Entry`]'s shape).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum EntryRef<'a> {
    Vote,
    Ballot {
        voter: &'a str,
        from: Option<&'a str>,
    },
    Mark(Mark),
}

/// A mark's byte in a type-3 record.
fn mark_code(m: Mark) -> u8 {
    match m {
        Mark::Closed => 1,
        Mark::Opened => 2,
        Mark::Reset => 3,
    }
}

fn mark_of(code: u8) -> Option<Mark> {
    match code {
        1 => Some(Mark::Closed),
        2 => Some(Mark::Opened),
        3 => Some(Mark::Reset),
        _ => None,
    }
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

/// Appends `r` as a format-3 record of its entry's type (a vote, a ballot or a mark); `r` must
/// be valid ([`check_record`]).
pub(super) fn encode_record(r: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&RECORD_MAGIC);
    out.extend_from_slice(&[0; 6]); // payload length and CRC-32, once the payload is there
    let kind = match r.entry {
        Entry::Vote => RECORD_VOTE,
        Entry::Ballot { .. } => RECORD_BALLOT,
        Entry::Mark(_) => RECORD_MARK,
    };
    out.push(kind);
    out.extend_from_slice(&r.version.to_le_bytes());
    out.extend_from_slice(&r.at_ms.to_le_bytes());
    // An id with its length byte; an absent one is just the length 0.
    let push = |out: &mut Vec<u8>, s: &str| {
        out.push(s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    };
    match &r.entry {
        Entry::Mark(m) => out.push(mark_code(*m)),
        entry => {
            push(out, &r.uid);
            push(out, r.vote_id.as_deref().unwrap_or(""));
            if let Entry::Ballot { voter, from } = entry {
                push(out, voter);
                push(out, from.as_deref().unwrap_or(""));
            }
        }
    }
    let len = out.len() - start - FRAME;
    debug_assert!(Format::V3
        .payload_of_type(kind)
        .is_some_and(|bounds| bounds.contains(&len)));
    out[start + 2..start + 4].copy_from_slice(&(len as u16).to_le_bytes());
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

/// A checksum-valid payload of `format` as a record. A type the format does not have is
/// [`Defect::Type`] whatever its length (a newer writer's, not damage); a known type whose
/// length or fields do not fit is [`Defect::Payload`].
fn decode_payload(p: &[u8], format: Format) -> Result<RecordRef<'_>, Defect> {
    let mut r = Reader::new(p);
    let kind = match format {
        Format::V1 => RECORD_VOTE,
        Format::V2 | Format::V3 => {
            let t = r.u8().ok_or(Defect::Payload)?;
            let bounds = format.payload_of_type(t).ok_or(Defect::Type(t))?;
            if !bounds.contains(&p.len()) {
                return Err(Defect::Payload);
            }
            t
        }
    };
    let fields = (|| {
        let version = r.u64()?;
        let at_ms = match format {
            Format::V1 => None,
            Format::V2 | Format::V3 => Some(r.u64()?),
        };
        let (uid, vote_id, entry) = match kind {
            RECORD_MARK => ("", None, EntryRef::Mark(mark_of(r.u8()?)?)),
            _ => {
                let uid = r.id(MAX_UID)?;
                let vote_id = r.optional_id(MAX_VOTE_ID)?;
                let entry = match kind {
                    RECORD_BALLOT => EntryRef::Ballot {
                        voter: r.id(MAX_VOTER)?,
                        from: r.optional_id(MAX_UID)?,
                    },
                    _ => EntryRef::Vote,
                };
                (uid, vote_id, entry)
            }
        };
        r.is_empty().then_some(RecordRef {
            version,
            uid,
            vote_id,
            at_ms,
            entry,
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
            HeaderError::Format(v) => unknown_format(f, *v),
            HeaderError::Epoch => f.write_str("bad epoch"),
            HeaderError::Checksum => f.write_str("checksum"),
            HeaderError::Version => f.write_str("impossible base version"),
        }
    }
}

/// A format field this version does not read: a newer writer's, or nonsense.
fn unknown_format(f: &mut fmt::Formatter<'_>, v: u16) -> fmt::Result {
    if v > FORMAT {
        write!(
            f,
            "format {v}, newer than this version reads (up to {FORMAT})"
        )
    } else {
        write!(f, "format {v}, not one this version knows")
    }
}

/// A header of the current format; `epoch` must be valid ([`new_epoch`] or a decoded one).
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
        2 => Ok(Format::V2),
        3 => Ok(Format::V3),
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
    /// Empty in formats 1 and 2, which had no voters and no state.
    pub(super) standing: Standing,
}

/// Checks what the caller hands to a checkpoint, then encodes it in the current format.
pub(super) fn encode_snapshot(
    epoch: &str,
    version: u64,
    counts: &[(String, u64)],
    recent: &[RecentVote],
    standing: &Standing,
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
    let mut voters = HashMap::with_capacity(standing.voters.len());
    for (voter, uid) in &standing.voters {
        check_id("voter id", voter, MAX_VOTER)?;
        check_id("uid", uid, MAX_UID)?;
        if voters.insert(voter.as_str(), ()).is_some() {
            return Err(invalid_input(format!(
                "journal: voter {voter:?} appears twice in a checkpoint"
            )));
        }
    }
    let (Ok(n), Ok(m), Ok(w)) = (
        u32::try_from(counts.len()),
        u32::try_from(recent.len()),
        u32::try_from(standing.voters.len()),
    ) else {
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
    body.extend_from_slice(&w.to_le_bytes());
    for (voter, uid) in &standing.voters {
        body.push(voter.len() as u8);
        body.extend_from_slice(voter.as_bytes());
        body.push(uid.len() as u8);
        body.extend_from_slice(uid.as_bytes());
    }
    body.push(u8::from(standing.closed));
    let mut out = Vec::with_capacity(snapshot_head(Format::V3) + body.len() + 4);
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
        Format::V2 | Format::V3 => 4 + 2 + 8,
    }
}

/// Smallest remembered-vote entry: 1-byte vote id and uid with their lengths, count, version
/// (, time).
fn min_recent_entry(format: Format) -> usize {
    match format {
        Format::V1 => 1 + 1 + 1 + 1 + 8 + 8,
        Format::V2 | Format::V3 => 1 + 1 + 1 + 1 + 8 + 8 + 8,
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
            SnapshotError::Format(v) => unknown_format(f, *v),
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
            Format::V2 | Format::V3 => r.u64().ok_or(bad)?,
        };
        recent.push(RecentVote {
            vote_id,
            uid,
            count,
            version,
            at_ms,
        });
    }
    let mut standing = Standing::default();
    if format == Format::V3 {
        let w = r.u32().ok_or(bad)? as usize;
        if w > r.remaining() / MIN_VOTER_ENTRY {
            return Err(bad);
        }
        standing.voters.reserve_exact(w);
        let mut seen = HashMap::with_capacity(w);
        for _ in 0..w {
            let voter = r.id(MAX_VOTER).ok_or(bad)?;
            let uid = r.id(MAX_UID).ok_or(bad)?;
            if seen.insert(voter, ()).is_some() {
                return Err(bad);
            }
            standing.voters.push((voter.to_string(), uid.to_string()));
        }
        standing.closed = match r.u8().ok_or(bad)? {
            0 => false,
            1 => true,
            _ => return Err(bad),
        };
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
        standing,
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

    /// A length byte, then an id of that many bytes, or none if the length is 0: `None` if
    /// the bytes are neither.
    fn optional_id(&mut self, max: usize) -> Option<Option<&'a str>> {
        match self.u8()? {
            0 => Some(None),
            n => Some(Some(id(self.take(usize::from(n))?, max)?)),
        }
    }
}
