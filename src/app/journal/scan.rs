//! Recovery: the pure scan of a journal's records, and resynchronisation after damage. No I/O.

use std::fmt;

use super::files::thousands;
use super::format::{decode_record, Defect, Format, RecordRef};
use super::*;

/// Why the scan stopped at a byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flaw {
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
pub(super) struct Scan {
    /// Bytes to keep: everything after is a damaged tail to cut off.
    pub(super) keep: usize,
    /// The version of the last good record (the base if none).
    pub(super) last: u64,
    /// Good records in the kept bytes.
    pub(super) records: u64,
    /// Good records at or below the snapshot's version, not counted again.
    pub(super) old: u64,
    /// Versions above the snapshot's that damaged records took with them.
    pub(super) lost: u64,
    /// Report lines for every damage found.
    pub(super) notes: Vec<String>,
}

/// Scans the records in `data[start..]`, which continue from version `base`, and hands every
/// good record above version `covered` (the snapshot's) to `count`, in order. Fails if a
/// checksum-valid record cannot be placed in the sequence, or is of a type this version does not
/// know. The records are of `format`.
pub(super) fn scan(
    data: &[u8],
    start: usize,
    base: u64,
    covered: u64,
    format: Format,
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
        let flaw = match decode_record(&data[pos..], format) {
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
            Err(Defect::Type(t)) => {
                // Not damage (the checksum holds): a newer version wrote it. Skipping it could
                // lose what it means, so refuse.
                return Err(format!(
                    "record at byte {} is of type {t}, unknown to this version (written by a \
                     newer livevote?); refusing to start",
                    thousands(pos as u64)
                ));
            }
            Err(d) => Flaw::Defect(d),
        };
        match resync(data, pos, expected, format) {
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
pub(super) enum Resync {
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
pub(super) fn resync(data: &[u8], pos: usize, expected: u64, format: Format) -> Resync {
    let mut at = pos + 1;
    while let Some(i) = data[at..].iter().position(|&b| b == RECORD_MAGIC[0]) {
        at += i;
        if let Ok(Some((r, _))) = decode_record(&data[at..], format) {
            let room = ((at - pos) / format.min_record()) as u64;
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
