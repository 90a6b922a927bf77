//! Tests of the journal: the pure parts on byte vectors, then the files.

use super::crc::*;
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

/// Largest record on disk.
const MAX_RECORD: usize = FRAME + MAX_PAYLOAD;

const UIDS: [&str; 3] = ["alice", "bob", "carol-2"];

/// Vote `v` goes to `UIDS[v % 3]`; even votes carry a vote id.
fn vote(v: u64) -> Record {
    Record {
        version: v,
        uid: UIDS[(v % 3) as usize].to_string(),
        vote_id: v.is_multiple_of(2).then(|| format!("id-{v}")),
        at_ms: at(v),
        entry: Default::default(),
    }
}

/// When vote `v` was counted: a plausible wall-clock time, a millisecond per vote.
fn at(v: u64) -> u64 {
    1_764_000_000_000 + v
}

fn votes(from: u64, to: u64) -> Vec<Record> {
    (from..=to).map(vote).collect()
}

/// What replaying `records` in order gives: counts and the vote-id window.
fn replay(records: &[Record]) -> (Vec<(String, u64)>, Vec<RecentVote>) {
    let (counts, recent, _) = replay_all(records);
    (counts, recent)
}

/// What replaying `records` in order gives, the standing too: the module docs' rules, written
/// again here the plain way (linear searches, no index).
fn replay_all(records: &[Record]) -> (Vec<(String, u64)>, Vec<RecentVote>, Standing) {
    let mut counts: Vec<(String, u64)> = Vec::new();
    let mut recent = Vec::new();
    let mut standing = Standing::default();
    for r in records {
        match &r.entry {
            Entry::Mark(Mark::Closed) => standing.closed = true,
            Entry::Mark(Mark::Opened) => standing.closed = false,
            Entry::Mark(Mark::Reset) => {
                counts.iter_mut().for_each(|(_, n)| *n = 0);
                standing.voters.clear();
            }
            Entry::Vote | Entry::Ballot { .. } => {}
        }
        if let Entry::Mark(_) = r.entry {
            continue;
        }
        let i = match counts.iter().position(|(u, _)| *u == r.uid) {
            Some(i) => i,
            None => {
                counts.push((r.uid.clone(), 0));
                counts.len() - 1
            }
        };
        counts[i].1 += 1;
        if let Entry::Ballot { voter, from } = &r.entry {
            if let Some((_, n)) = counts.iter_mut().find(|(u, _)| Some(u) == from.as_ref()) {
                *n = n.saturating_sub(1);
            }
            match standing.voters.iter_mut().find(|(v, _)| v == voter) {
                Some((_, uid)) => *uid = r.uid.clone(),
                None => standing.voters.push((voter.clone(), r.uid.clone())),
            }
        }
        if let Some(id) = &r.vote_id {
            recent.push(RecentVote {
                vote_id: id.clone(),
                uid: r.uid.clone(),
                count: counts[i].1,
                version: r.version,
                at_ms: r.at_ms,
            });
        }
    }
    (counts, recent, standing)
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
            at_ms: version.wrapping_mul(7),
            entry: Default::default(),
        };
        check_record(&r).expect("valid");
        let mut buf = vec![];
        encode_record(&r, &mut buf);
        assert!((Format::V3.min_record()..=MAX_RECORD).contains(&buf.len()));
        let (got, used) = decode_record(&buf, Format::V3)
            .expect("valid")
            .expect("complete");
        assert_eq!(used, buf.len());
        assert_eq!(
            (got.version, got.uid, got.vote_id, got.at_ms),
            (version, uid, vote_id, Some(r.at_ms))
        );
        // Trailing bytes are the next record's business.
        buf.extend_from_slice(b"junk");
        assert_eq!(decode_record(&buf, Format::V3).unwrap().unwrap().1, used);
    }
}

#[test]
fn every_proper_prefix_of_a_record_is_incomplete() {
    let mut buf = vec![];
    encode_record(&vote(12), &mut buf);
    for n in 0..buf.len() {
        assert_eq!(
            decode_record(&buf[..n], Format::V3),
            Ok(None),
            "prefix of {n} bytes"
        );
    }
}

#[test]
fn damaged_records_are_refused_for_the_right_reason() {
    let mut good = vec![];
    encode_record(&vote(7), &mut good);
    let len = good[2]; // 22: type, version, time, "bob", no vote id
    let table: [(usize, u8, Defect); 6] = [
        (0, 0xFF, Defect::Magic),
        (1, 0x01, Defect::Magic),
        (2, len, Defect::Length),  // length 0
        (3, 0x01, Defect::Length), // length 278 > MAX_PAYLOAD
        (5, 0x01, Defect::Checksum),
        (9, 0x01, Defect::Checksum),
    ];
    for (at, mask, defect) in table {
        let mut b = good.clone();
        b[at] ^= mask;
        assert_eq!(
            decode_record(&b, Format::V3),
            Err(defect),
            "byte {at} ^ {mask:#x}"
        );
    }
    // A checksum over nonsense content: valid framing, invalid uid.
    let with_crc = |mut b: Vec<u8>| {
        let crc = !crc_update(crc_update(!0, &b[2..4]), &b[FRAME..]);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
        b
    };
    let mut b = good.clone();
    b[FRAME + 18] = b' ';
    assert_eq!(
        decode_record(&with_crc(b), Format::V3),
        Err(Defect::Payload)
    );
    // A record type this version does not know: not damage, a newer writer.
    let mut b = good.clone();
    b[FRAME] = 9;
    assert_eq!(
        decode_record(&with_crc(b), Format::V3),
        Err(Defect::Type(9))
    );
}

/// A format-1 record, from the layout in the module docs: no type, no time.
fn v1_record(version: u64, uid: &str, vote_id: Option<&str>, out: &mut Vec<u8>) {
    let vote_id = vote_id.unwrap_or("");
    let mut payload = version.to_le_bytes().to_vec();
    payload.push(uid.len() as u8);
    payload.extend_from_slice(uid.as_bytes());
    payload.push(vote_id.len() as u8);
    payload.extend_from_slice(vote_id.as_bytes());
    let len = (payload.len() as u16).to_le_bytes();
    let mut checked = len.to_vec();
    checked.extend_from_slice(&payload);
    out.extend_from_slice(&[0xA7, 0x56]);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc32(&checked).to_le_bytes());
    out.extend_from_slice(&payload);
}

/// A format-1 journal header.
fn v1_header(epoch: &str, base: u64) -> Vec<u8> {
    let mut out = b"LVJ1".to_vec();
    out.extend_from_slice(&base.to_le_bytes());
    out.push(epoch.len() as u8);
    out.extend_from_slice(epoch.as_bytes());
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

#[test]
fn format_1_records_and_headers_still_decode() {
    let mut buf = vec![];
    v1_record(7, "bob", Some("x-1"), &mut buf);
    let (r, used) = decode_record(&buf, Format::V1).unwrap().unwrap();
    assert_eq!(used, buf.len());
    assert_eq!(
        (r.version, r.uid, r.vote_id, r.at_ms),
        (7, "bob", Some("x-1"), None)
    );
    // Read as the current format it is not a record.
    assert!(decode_record(&buf, Format::V3).is_err());
    let h = decode_header(&v1_header("ep0ch", 12)).unwrap();
    assert_eq!(
        (h.format, h.base, h.epoch.as_str()),
        (Format::V1, 12, "ep0ch")
    );
    let h = decode_header(&encode_header("ep0ch", 12)).unwrap();
    assert_eq!(h.format, Format::V3);
    // A newer format is refused, saying so.
    let mut newer = encode_header("ep0ch", 12);
    newer[4] = 4;
    assert_eq!(decode_header(&newer), Err(HeaderError::Format(4)));
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
            at_ms: 0,
            entry: Default::default(),
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
        at_ms: at(9),
    }];
    let bytes = encode_snapshot("ep0ch", 9, &counts, &recent, &Standing::default()).expect("valid");
    let s = decode_snapshot(&bytes, 0).expect("decodes");
    assert_eq!((s.epoch.as_str(), s.version), ("ep0ch", 9));
    assert_eq!((s.counts, s.recent), (counts.clone(), recent.clone()));
    for n in 0..bytes.len() {
        assert!(decode_snapshot(&bytes[..n], 0).is_err(), "prefix {n}");
    }
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x20;
        assert!(decode_snapshot(&b, 0).is_err(), "byte {i}");
    }
    let twice = vec![("a".to_string(), 1), ("a".to_string(), 2)];
    assert!(encode_snapshot("e", 3, &twice, &[], &Standing::default()).is_err());
    let bad_uid = vec![("a b".to_string(), 1)];
    assert!(encode_snapshot("e", 1, &bad_uid, &[], &Standing::default()).is_err());
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
    encode_record(
        &ballot(21, "alice", "ann", Some("bob"), Some("b")),
        &mut good,
    );
    encode_record(&mark(22, Mark::Reset), &mut good);
    encode_record(&ballot(23, "bob", "cy", None, None), &mut good);
    for round in 0..2000 {
        let len = (round % 300) as usize;
        let mut g = garbage(&mut seed, len);
        if round % 3 == 0 && len > 2 {
            g[0] = RECORD_MAGIC[0];
            g[1] = RECORD_MAGIC[1];
        }
        let _ = decode_record(&g, Format::V3);
        let _ = decode_header(&g);
        let _ = decode_snapshot(&g, 0);
        let _ = scan(&g, 0, 0, 0, Format::V3, |_| {});
        let _ = scan(&g, 0, 0, 0, Format::V2, |_| {});
        // Good records with garbage spliced in somewhere.
        let mut mixed = good.clone();
        let at = (seed as usize) % mixed.len();
        mixed.splice(at..at, g);
        if let Ok(h) = decode_header(&mixed) {
            let _ = scan(&mixed, h.len, h.base, 0, Format::V3, |_| {});
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
    let s = scan(&data, 0, 0, 2, Format::V3, |r| seen.push(r.version)).expect("scans");
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
    let s = scan(&data, 0, 0, 0, Format::V3, |_| {}).expect("scans");
    assert_eq!((s.last, s.records, s.lost), (2, 2, 0));
}

#[test]
fn a_scan_refuses_a_good_record_it_cannot_place() {
    let mut data = vec![];
    encode_record(&vote(1), &mut data);
    data.extend_from_slice(&[0; 5]);
    // Version 50 after 5 damaged bytes: 48 votes cannot hide in 5 bytes.
    encode_record(&vote(50), &mut data);
    let e = scan(&data, 0, 0, 0, Format::V3, |_| {}).unwrap_err();
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
        at_ms: at(5),
        entry: Default::default(),
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
            at_ms: at(5),
            entry: Default::default(),
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
    let e = j
        .checkpoint(999, &counts, window, &Standing::default())
        .unwrap_err();
    assert_eq!(
        e.kind(),
        io::ErrorKind::InvalidInput,
        "not the last version"
    );
    j.checkpoint(1000, &counts, window, &Standing::default())
        .expect("checkpoint");
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
    let snap =
        encode_snapshot(&r0.epoch, 50, &counts, &recent, &Standing::default()).expect("encode");
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
    let mut snap =
        encode_snapshot(&r0.epoch, 20, &counts, &recent, &Standing::default()).expect("encode");
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
    j.checkpoint(20, &counts, &recent, &Standing::default())
        .expect("checkpoint");
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
    j.checkpoint(30, &counts, &recent, &Standing::default())
        .expect("checkpoint");
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
    j.checkpoint(3, &replay(&votes(1, 3)).0, &[], &Standing::default())
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
    let e = j.commit(&votes(3, 3)).unwrap_err();
    // Not cut back, the batch may be on disk: its outcome is unknown, not "not stored".
    assert!(crate::app::store::may_be_stored(&e), "{e}");
    let e = j.commit(&votes(3, 3)).unwrap_err();
    assert!(e.to_string().contains("restart"), "{e}");
    assert!(j.checkpoint(2, &[], &[], &Standing::default()).is_err());
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

/// A format-1 snapshot, from the layout in the module docs: remembered votes without time.
fn v1_snapshot(
    epoch: &str,
    version: u64,
    counts: &[(&str, u64)],
    recent: &[RecentVote],
) -> Vec<u8> {
    let mut body = vec![epoch.len() as u8];
    body.extend_from_slice(epoch.as_bytes());
    body.extend_from_slice(&version.to_le_bytes());
    body.extend_from_slice(&(counts.len() as u32).to_le_bytes());
    for (uid, n) in counts {
        body.push(uid.len() as u8);
        body.extend_from_slice(uid.as_bytes());
        body.extend_from_slice(&n.to_le_bytes());
    }
    body.extend_from_slice(&(recent.len() as u32).to_le_bytes());
    for r in recent {
        body.push(r.vote_id.len() as u8);
        body.extend_from_slice(r.vote_id.as_bytes());
        body.push(r.uid.len() as u8);
        body.extend_from_slice(r.uid.as_bytes());
        body.extend_from_slice(&r.count.to_le_bytes());
        body.extend_from_slice(&r.version.to_le_bytes());
    }
    let mut out = b"LVS1".to_vec();
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

#[test]
fn a_format_1_journal_opens_its_ids_get_the_opening_time_and_it_is_upgraded() {
    let dir = TempDir::new("format-1");
    let path = dir.journal();
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let epoch = "00c0ffee00c0ffee";
    // A snapshot at version 2 (with vote id "s-2"), then records 3..=4 ("id-4" has an id).
    let in_snapshot = RecentVote {
        vote_id: "s-2".into(),
        uid: "alice".into(),
        count: 2,
        version: 2,
        at_ms: 0,
    };
    let snap = v1_snapshot(
        epoch,
        2,
        &[("alice", 2)],
        std::slice::from_ref(&in_snapshot),
    );
    fs::write(suffixed(&path, SNAPSHOT_SUFFIX), snap).unwrap();
    let mut data = v1_header(epoch, 2);
    v1_record(3, "bob", None, &mut data);
    v1_record(4, "alice", Some("id-4"), &mut data);
    fs::write(&path, data).unwrap();

    let opened = at(1_000);
    let (mut j, r) = open_at(&path, opened).expect("a format-1 journal opens");
    assert_eq!((r.epoch.as_str(), r.version, r.lost), (epoch, 4, 0));
    assert_eq!(
        sorted(r.counts.clone()),
        vec![("alice".into(), 3), ("bob".into(), 1)]
    );
    // Without a time of their own, remembered ids count from the opening.
    let ids: Vec<(&str, u64)> = r.recent.iter().map(|v| (&*v.vote_id, v.at_ms)).collect();
    assert_eq!(ids, [("s-2", opened), ("id-4", opened)]);
    assert!(
        mentions(&r.report, "upgraded from format 1 to 3"),
        "{:?}",
        r.report
    );
    // Both files are format 3 now, and the next vote is appended to them.
    assert_eq!(&fs::read(&path).unwrap()[..4], b"LVJF");
    assert_eq!(
        &fs::read(suffixed(&path, SNAPSHOT_SUFFIX)).unwrap()[..4],
        b"LVSF"
    );
    let next = Record {
        version: 5,
        uid: "bob".into(),
        vote_id: Some("id-5".into()),
        at_ms: opened + 7,
        entry: Default::default(),
    };
    j.commit(std::slice::from_ref(&next)).expect("commit");
    drop(j);
    // Reopened later: the times are on disk now, so the window does not restart again.
    let (_, r) = open_at(&path, opened + 60_000).expect("reopen");
    let ids: Vec<(&str, u64)> = r.recent.iter().map(|v| (&*v.vote_id, v.at_ms)).collect();
    assert_eq!(
        ids,
        [("s-2", opened), ("id-4", opened), ("id-5", opened + 7)]
    );
    assert!(!mentions(&r.report, "upgraded"), "{:?}", r.report);
    assert_eq!(r.version, 5);
}

#[test]
fn a_record_of_an_unknown_type_stops_start_up() {
    let dir = TempDir::new("unknown-type");
    let path = dir.journal();
    write_one_by_one(&path, 2);
    // A checksum-valid record of type 200 after them: a newer version's.
    let mut bytes = fs::read(&path).unwrap();
    let start = bytes.len();
    encode_record(&vote(3), &mut bytes);
    bytes[start + FRAME] = 200;
    let crc = !crc_update(
        crc_update(!0, &bytes[start + 2..start + 4]),
        &bytes[start + FRAME..],
    );
    bytes[start + 4..start + FRAME].copy_from_slice(&crc.to_le_bytes());
    fs::write(&path, &bytes).unwrap();
    let e = open(&path).unwrap_err();
    assert!(
        e.to_string().contains("type 200, unknown to this version"),
        "{e}"
    );
    assert_eq!(fs::read(&path).unwrap(), bytes, "nothing cut off");
}

#[test]
fn a_snapshot_keeps_each_remembered_votes_time() {
    let recent = vec![
        RecentVote {
            vote_id: "a".into(),
            uid: "alice".into(),
            count: 1,
            version: 1,
            at_ms: at(1),
        },
        RecentVote {
            vote_id: "b".into(),
            uid: "bob".into(),
            count: 1,
            version: 2,
            at_ms: u64::MAX,
        },
    ];
    let counts = vec![("alice".to_string(), 1), ("bob".to_string(), 1)];
    let bytes = encode_snapshot("e", 2, &counts, &recent, &Standing::default()).unwrap();
    assert_eq!(&bytes[..6], b"LVSF\x03\x00");
    let s = decode_snapshot(&bytes, 0).unwrap();
    assert_eq!((s.format, s.recent), (Format::V3, recent));
    let mut newer = bytes.clone();
    newer[4] = 4;
    assert_eq!(decode_snapshot(&newer, 0), Err(SnapshotError::Format(4)));
}

// --- format 3: ballots, marks, the standing ----------------------------------------------

/// Version `v` is `voter`'s ballot for `uid`, moved from `from` when given.
fn ballot(v: u64, uid: &str, voter: &str, from: Option<&str>, vote_id: Option<&str>) -> Record {
    Record {
        version: v,
        uid: uid.to_string(),
        vote_id: vote_id.map(str::to_string),
        at_ms: at(v),
        entry: Entry::Ballot {
            voter: voter.to_string(),
            from: from.map(str::to_string),
        },
    }
}

/// Version `v` is the mark `m`.
fn mark(v: u64, m: Mark) -> Record {
    Record {
        version: v,
        uid: String::new(),
        vote_id: None,
        at_ms: at(v),
        entry: Entry::Mark(m),
    }
}

/// `payload` framed as a record (magic, length, CRC-32 of length and payload), from the docs.
fn framed(payload: &[u8], out: &mut Vec<u8>) {
    let len = (payload.len() as u16).to_le_bytes();
    let mut checked = len.to_vec();
    checked.extend_from_slice(payload);
    out.extend_from_slice(&[0xA7, 0x56]);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc32(&checked).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Appends an id with its length byte (0 for none), as every record and snapshot stores ids.
fn push_id(out: &mut Vec<u8>, id: Option<&str>) {
    let id = id.unwrap_or("");
    out.push(id.len() as u8);
    out.extend_from_slice(id.as_bytes());
}

/// Writes `records` in one commit to a new journal at `path`; the offset of each record's
/// start, then the end of the file.
fn write_records(path: &Path, records: &[Record]) -> Vec<u64> {
    let (mut j, _) = open(path).expect("open");
    let mut offsets = vec![j.len];
    for r in records {
        j.commit(std::slice::from_ref(r)).expect("commit");
        offsets.push(j.len);
    }
    offsets
}

#[test]
fn the_payload_bounds_are_the_documented_ones() {
    assert_eq!(VOTE_PAYLOAD, 20..=115);
    assert_eq!(BALLOT_PAYLOAD, 23..=213);
    assert_eq!(MARK_PAYLOAD, 18..=18);
    assert_eq!((MIN_PAYLOAD, MAX_PAYLOAD), (18, 213));
    assert_eq!(
        (Format::V3.min_payload(), Format::V3.max_payload()),
        (18, 213)
    );
    assert_eq!(
        (Format::V2.min_payload(), Format::V2.max_payload()),
        (20, 115)
    );
    assert_eq!(
        (Format::V1.min_payload(), Format::V1.max_payload()),
        (11, 106)
    );
    // The smallest record of the current format is a mark: damage arithmetic counts with it.
    let mut b = vec![];
    encode_record(&mark(1, Mark::Reset), &mut b);
    assert_eq!(b.len(), Format::V3.min_record());
    let docs = include_str!("mod.rs");
    for line in [
        "payload length u16 (18..=213)",
        "(payload 20..=115)",
        "(payload 23..=213)",
        "(payload 18)",
        "format u16 (3)",
    ] {
        assert!(docs.contains(line), "the module docs say {line:?}");
    }
}

#[test]
fn ballots_and_marks_are_laid_out_as_documented() {
    // A ballot moving voter "ann" from bob to alice, with a vote id.
    let r = ballot(7, "alice", "ann", Some("bob"), Some("id-7"));
    check_record(&r).expect("valid");
    let mut payload = vec![2];
    payload.extend_from_slice(&7u64.to_le_bytes());
    payload.extend_from_slice(&at(7).to_le_bytes());
    push_id(&mut payload, Some("alice"));
    push_id(&mut payload, Some("id-7"));
    push_id(&mut payload, Some("ann"));
    push_id(&mut payload, Some("bob"));
    let mut want = vec![];
    framed(&payload, &mut want);
    let mut got = vec![];
    encode_record(&r, &mut got);
    assert_eq!(got, want);
    // Without `from` and without a vote id: both lengths 0.
    let r = ballot(8, "bob", "cy", None, None);
    let mut payload = vec![2];
    payload.extend_from_slice(&8u64.to_le_bytes());
    payload.extend_from_slice(&at(8).to_le_bytes());
    push_id(&mut payload, Some("bob"));
    push_id(&mut payload, None);
    push_id(&mut payload, Some("cy"));
    push_id(&mut payload, None);
    let (mut want, mut got) = (vec![], vec![]);
    framed(&payload, &mut want);
    encode_record(&r, &mut got);
    assert_eq!(got, want);
    // Marks: 1 closed, 2 opened, 3 reset.
    for (m, code) in [(Mark::Closed, 1), (Mark::Opened, 2), (Mark::Reset, 3)] {
        let mut payload = vec![3];
        payload.extend_from_slice(&9u64.to_le_bytes());
        payload.extend_from_slice(&at(9).to_le_bytes());
        payload.push(code);
        let (mut want, mut got) = (vec![], vec![]);
        framed(&payload, &mut want);
        encode_record(&mark(9, m), &mut got);
        assert_eq!(got, want, "{m:?}");
    }
}

#[test]
fn ballots_and_marks_round_trip_at_every_size() {
    let long_uid = "u".repeat(MAX_UID);
    let long_id = "v".repeat(MAX_VOTE_ID);
    let long_voter = "w".repeat(MAX_VOTER);
    let long_from = "f".repeat(MAX_UID);
    let cases = [
        ballot(1, "a", "b", None, None),
        ballot(2, "a", "b", Some("c"), None),
        ballot(3, "bob", "ann", None, Some("x")),
        Record {
            version: u64::MAX,
            at_ms: u64::MAX,
            ..ballot(1, &long_uid, &long_voter, Some(&long_from), Some(&long_id))
        },
        mark(4, Mark::Closed),
        mark(5, Mark::Opened),
        mark(6, Mark::Reset),
    ];
    for r in cases {
        check_record(&r).expect("valid");
        let mut buf = vec![];
        encode_record(&r, &mut buf);
        assert!(
            (Format::V3.min_record()..=MAX_RECORD).contains(&buf.len()),
            "{r:?}"
        );
        let (got, used) = decode_record(&buf, Format::V3)
            .expect("valid")
            .expect("complete");
        assert_eq!(used, buf.len());
        let entry = match &r.entry {
            Entry::Vote => EntryRef::Vote,
            Entry::Ballot { voter, from } => EntryRef::Ballot {
                voter,
                from: from.as_deref(),
            },
            Entry::Mark(m) => EntryRef::Mark(*m),
        };
        assert_eq!(
            got,
            RecordRef {
                version: r.version,
                uid: &r.uid,
                vote_id: r.vote_id.as_deref(),
                at_ms: Some(r.at_ms),
                entry,
            }
        );
        // Every proper prefix is incomplete, not damage.
        for n in 0..buf.len() {
            assert_eq!(decode_record(&buf[..n], Format::V3), Ok(None), "{r:?} {n}");
        }
        // Trailing bytes are the next record's business.
        buf.extend_from_slice(b"junk");
        assert_eq!(decode_record(&buf, Format::V3).unwrap().unwrap().1, used);
    }
    // The longest ballot is the longest record.
    let mut b = vec![];
    encode_record(
        &ballot(1, &long_uid, &long_voter, Some(&long_from), Some(&long_id)),
        &mut b,
    );
    assert_eq!(b.len(), MAX_RECORD);
}

#[test]
fn checksum_valid_nonsense_in_ballots_and_marks_is_damage_and_unknown_types_are_refused() {
    let payload_of = |r: &Record| {
        let mut b = vec![];
        encode_record(r, &mut b);
        b[FRAME..].to_vec()
    };
    let decode = |payload: &[u8], format: Format| {
        let mut b = vec![];
        framed(payload, &mut b);
        decode_record(&b, format).map(|r| r.map(|(r, _)| r.version))
    };
    let mut p = payload_of(&mark(3, Mark::Reset));
    assert_eq!(decode(&p, Format::V3), Ok(Some(3)));
    for code in [0, 4, 255] {
        p[17] = code;
        assert_eq!(decode(&p, Format::V3), Err(Defect::Payload), "mark {code}");
    }
    // A mark one byte too long, though the byte is a valid length 0.
    let mut p = payload_of(&mark(3, Mark::Reset));
    p.push(0);
    assert_eq!(decode(&p, Format::V3), Err(Defect::Payload));
    // A ballot without its voter (length 0), or with a bad byte in `from`.
    let p = payload_of(&ballot(4, "alice", "ann", Some("bob"), None));
    let voter_len = 1 + 8 + 8 + 1 + 5 + 1;
    let mut q = p.clone();
    q.splice(voter_len..voter_len + 4, [0]);
    assert_eq!(decode(&q, Format::V3), Err(Defect::Payload));
    let mut q = p.clone();
    *q.last_mut().unwrap() = b'.';
    assert_eq!(decode(&q, Format::V3), Err(Defect::Payload));
    // A ballot cut to its vote's fields is no vote either.
    let q = p[..voter_len].to_vec();
    assert_eq!(decode(&q, Format::V3), Err(Defect::Payload));
    // Format 2 had votes only: a ballot or a mark there is a type it does not know.
    assert_eq!(decode(&p, Format::V2), Err(Defect::Type(2)));
    let m = payload_of(&mark(3, Mark::Closed));
    // (A mark is shorter than format 2's shortest record: its framing is already wrong.)
    assert_eq!(decode(&m, Format::V2), Err(Defect::Length));
    // Type 9, checksum-valid, at any length the framing allows: refused as unknown.
    for len in [MIN_PAYLOAD, 30, MAX_PAYLOAD] {
        let mut q = vec![0; len];
        q[0] = 9;
        assert_eq!(decode(&q, Format::V3), Err(Defect::Type(9)), "{len}");
    }
}

#[test]
fn invalid_ballots_and_marks_are_refused_before_writing() {
    let long_voter = "w".repeat(MAX_VOTER + 1);
    let bad = [
        ballot(1, "alice", "", None, None),
        ballot(1, "alice", &long_voter, None, None),
        ballot(1, "alice", "a b", None, None),
        ballot(1, "alice", "ann", Some(""), None),
        ballot(1, "alice", "ann", Some("b/b"), None),
        ballot(1, "alice", "ann", Some(&"f".repeat(MAX_UID + 1)), None),
        ballot(1, "", "ann", None, None),
        ballot(1, "alice", "ann", None, Some("")),
        Record {
            uid: "alice".into(),
            ..mark(1, Mark::Closed)
        },
        Record {
            vote_id: Some("id-1".into()),
            ..mark(1, Mark::Opened)
        },
    ];
    for r in bad {
        assert!(check_record(&r).is_err(), "{r:?}");
    }
    check_record(&ballot(1, "alice", &"w".repeat(MAX_VOTER), None, None)).expect("64 bytes");
    // Through a commit: nothing is written.
    let dir = TempDir::new("bad-ballot");
    let path = dir.journal();
    let (mut j, _) = open(&path).expect("open");
    let len = file_len(&path);
    let batch = [
        ballot(1, "alice", "ann", None, None),
        Record {
            uid: "alice".into(),
            ..mark(2, Mark::Closed)
        },
    ];
    let e = j.commit(&batch).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("mark"), "{e}");
    assert_eq!((file_len(&path), j.version()), (len, 0));
}

#[test]
fn snapshots_keep_the_standing_and_every_damage_is_refused() {
    let counts = vec![("alice".to_string(), 2), ("bob".to_string(), 1)];
    let standing = Standing {
        voters: vec![
            ("ann".into(), "alice".into()),
            ("w".repeat(MAX_VOTER), "bob".into()),
            ("cy".into(), "alice".into()),
        ],
        closed: true,
    };
    let bytes = encode_snapshot("ep0ch", 3, &counts, &[], &standing).expect("valid");
    assert_eq!(&bytes[..6], b"LVSF\x03\x00");
    let s = decode_snapshot(&bytes, 0).expect("decodes");
    assert_eq!(
        (s.format, s.version, &s.counts, &s.standing),
        (Format::V3, 3, &counts, &standing)
    );
    // The body's end, as documented: voters u32, each voter and uid, closed u8.
    let mut tail = 3u32.to_le_bytes().to_vec();
    for (voter, uid) in &standing.voters {
        push_id(&mut tail, Some(voter));
        push_id(&mut tail, Some(uid));
    }
    tail.push(1);
    let body_end = bytes.len() - 4;
    assert_eq!(&bytes[body_end - tail.len()..body_end], &tail[..]);
    for n in 0..bytes.len() {
        assert!(decode_snapshot(&bytes[..n], 0).is_err(), "prefix {n}");
    }
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x20;
        assert!(decode_snapshot(&b, 0).is_err(), "byte {i}");
    }
    // `closed` other than 0 or 1, with a good checksum: bad content.
    let mut b = bytes.clone();
    b[body_end - 1] = 2;
    let crc = crc32(&b[..body_end]);
    b[body_end..].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(decode_snapshot(&b, 0), Err(SnapshotError::Content));
    // Open, no voters.
    let open_poll = Standing::default();
    let bytes = encode_snapshot("e", 0, &[], &[], &open_poll).expect("valid");
    assert_eq!(decode_snapshot(&bytes, 0).unwrap().standing, open_poll);
    // What a checkpoint may not hold: a voter twice, a bad voter id, a bad uid.
    for voters in [
        vec![("ann", "alice"), ("ann", "bob")],
        vec![("", "alice")],
        vec![("a b", "alice")],
        vec![("ann", "")],
    ] {
        let standing = Standing {
            voters: voters
                .iter()
                .map(|(v, u)| (v.to_string(), u.to_string()))
                .collect(),
            closed: false,
        };
        assert!(
            encode_snapshot("e", 1, &counts, &[], &standing).is_err(),
            "{voters:?}"
        );
    }
}

#[test]
fn ballots_and_marks_recover_in_order() {
    let dir = TempDir::new("ballots");
    let path = dir.journal();
    let records = [
        vote(1),                                                 // bob (1 % 3), no vote id
        ballot(2, "alice", "ann", None, Some("b-2")),            // ann on alice
        ballot(3, "bob", "cy", None, None),                      // cy on bob
        ballot(4, "carol-2", "ann", Some("alice"), Some("b-4")), // ann moves to carol-2
        mark(5, Mark::Closed),
        mark(6, Mark::Opened),
        mark(7, Mark::Closed),
        ballot(8, "bob", "dee", None, Some("b-8")),
    ];
    let (mut j, _) = open(&path).expect("open");
    j.commit(&records[..3]).expect("commit");
    j.commit(&records[3..]).expect("commit");
    drop(j);
    let (mut j, r) = open(&path).expect("reopen");
    assert_eq!((r.version, r.lost), (8, 0));
    assert_eq!(
        sorted(r.counts.clone()),
        vec![
            ("alice".into(), 0),
            ("bob".into(), 3),
            ("carol-2".into(), 1)
        ]
    );
    assert_eq!(
        r.standing,
        Standing {
            voters: vec![
                ("ann".into(), "carol-2".into()),
                ("cy".into(), "bob".into()),
                ("dee".into(), "bob".into())
            ],
            closed: true,
        }
    );
    // Ballots' vote ids are remembered like votes', with the count after them.
    let ids: Vec<(&str, &str, u64, u64)> = r
        .recent
        .iter()
        .map(|v| (&*v.vote_id, &*v.uid, v.count, v.version))
        .collect();
    assert_eq!(
        ids,
        [
            ("b-2", "alice", 1, 2),
            ("b-4", "carol-2", 1, 4),
            ("b-8", "bob", 3, 8)
        ]
    );
    let (counts, recent, standing) = replay_all(&records);
    assert_eq!(
        (&r.counts, &r.recent, &r.standing),
        (&counts, &recent, &standing)
    );
    assert!(
        mentions(
            &r.report,
            "3 voter(s) standing on a candidate; the poll is closed"
        ),
        "{:?}",
        r.report
    );
    // Opened again: the next start says so.
    j.commit(&[mark(9, Mark::Opened)]).expect("commit");
    drop(j);
    let (_, r) = open(&path).expect("reopen");
    assert!(!r.standing.closed);
    assert!(mentions(&r.report, "the poll is open"), "{:?}", r.report);
}

#[test]
fn a_ballot_moving_a_vote_from_a_candidate_without_one_stays_at_zero_with_one_line() {
    let dir = TempDir::new("unbacked");
    let path = dir.journal();
    let records = [
        ballot(1, "alice", "ann", Some("bob"), None), // bob has no count at all
        ballot(2, "bob", "ann", Some("alice"), None),
        ballot(3, "alice", "ann", Some("bob"), None),
        ballot(4, "alice", "cy", Some("bob"), None), // bob is at 0 again
    ];
    write_records(&path, &records);
    let (_, r) = open(&path).expect("reopen");
    assert_eq!(
        sorted(r.counts.clone()),
        vec![("alice".into(), 2), ("bob".into(), 0)]
    );
    assert_eq!(r.counts, replay_all(&records).0);
    let lines: Vec<&String> = r.report.iter().filter(|l| l.contains("had none")).collect();
    assert_eq!(lines.len(), 1, "{:?}", r.report);
    assert!(
        lines[0].contains("2 ballot(s)") && lines[0].contains("first at version 1"),
        "{lines:?}"
    );
}

#[test]
fn a_reset_zeroes_every_count_retired_ones_too_and_forgets_every_voter() {
    let dir = TempDir::new("reset");
    let path = dir.journal();
    let (mut j, _) = open(&path).expect("open");
    let before = [
        vote(1),
        vote(2),
        ballot(3, "zed", "ann", None, Some("b-3")), // zed: not configured later, still a uid
        ballot(4, "alice", "cy", None, None),
    ];
    j.commit(&before).expect("commit");
    let (counts, recent, standing) = replay_all(&before);
    j.checkpoint(4, &counts, &recent, &standing)
        .expect("checkpoint");
    let after = [
        vote(5),
        mark(6, Mark::Closed),
        mark(7, Mark::Reset),
        ballot(8, "bob", "ann", None, Some("b-8")),
    ];
    j.commit(&after).expect("commit");
    drop(j);
    let (_, r) = open(&path).expect("reopen");
    assert_eq!(r.version, 8);
    let mut want: Vec<(String, u64)> = ["alice", "bob", "carol-2", "zed"]
        .iter()
        .map(|u| (u.to_string(), u64::from(*u == "bob")))
        .collect();
    want.sort();
    assert_eq!(sorted(r.counts.clone()), want);
    // Every voter forgotten but the one who voted since; the state stays closed.
    assert_eq!(
        r.standing,
        Standing {
            voters: vec![("ann".into(), "bob".into())],
            closed: true
        }
    );
    // Vote ids from before the reset are still answered (as they were), not counted again.
    let ids: Vec<&str> = r.recent.iter().map(|v| &*v.vote_id).collect();
    assert_eq!(ids, ["id-2", "b-3", "b-8"]);
    let mut all = before.to_vec();
    all.extend(after);
    assert_eq!((r.counts, r.recent, r.standing), replay_all(&all));
}

#[test]
fn a_checkpoint_keeps_voters_and_closed_and_the_records_after_it_apply_on_top() {
    let dir = TempDir::new("standing-checkpoint");
    let path = dir.journal();
    let (mut j, _) = open(&path).expect("open");
    let before = [
        ballot(1, "alice", "ann", None, Some("b-1")),
        ballot(2, "bob", "cy", None, None),
        ballot(3, "alice", "dee", None, None),
        mark(4, Mark::Closed),
    ];
    j.commit(&before).expect("commit");
    let (counts, recent, standing) = replay_all(&before);
    assert!(standing.closed);
    j.checkpoint(4, &counts, &recent, &standing)
        .expect("checkpoint");
    drop(j);
    let snap = fs::read(suffixed(&path, SNAPSHOT_SUFFIX)).unwrap();
    assert_eq!(decode_snapshot(&snap, 0).unwrap().standing, standing);

    // Only the snapshot: everything is there.
    let (mut j, r) = open(&path).expect("reopen");
    assert_eq!((r.version, &r.counts, &r.standing), (4, &counts, &standing));
    assert!(
        mentions(&r.report, "snapshot at 4 + 0 records"),
        "{:?}",
        r.report
    );
    // Records after it: cy moves from bob to alice, the poll opens, a new voter.
    let after = [
        mark(5, Mark::Opened),
        ballot(6, "alice", "cy", Some("bob"), Some("b-6")),
        ballot(7, "bob", "eve", None, None),
    ];
    j.commit(&after).expect("commit");
    drop(j);
    let (_, r) = open(&path).expect("reopen");
    assert_eq!(r.version, 7);
    assert_eq!(
        sorted(r.counts.clone()),
        vec![("alice".into(), 3), ("bob".into(), 1)]
    );
    assert_eq!(
        r.standing,
        Standing {
            voters: vec![
                ("ann".into(), "alice".into()),
                ("cy".into(), "alice".into()),
                ("dee".into(), "alice".into()),
                ("eve".into(), "bob".into())
            ],
            closed: false
        }
    );
    let mut all = before.to_vec();
    all.extend(after);
    assert_eq!((r.counts, r.recent, r.standing), replay_all(&all));
}

#[test]
fn a_torn_ballot_is_cut_off_at_every_cut_point_and_the_standing_is_the_last_good_records() {
    let dir = TempDir::new("torn-ballot");
    let path = dir.journal();
    let records = [
        vote(1),
        ballot(2, "alice", "ann", None, Some("b-2")),
        mark(3, Mark::Closed),
        ballot(4, "bob", "ann", Some("alice"), Some("b-4")),
    ];
    let offsets = write_records(&path, &records);
    let whole = fs::read(&path).expect("read");
    let (last_start, end) = (offsets[3], offsets[4]);
    let good = replay_all(&records[..3]);
    for cut in last_start + 1..end {
        fs::write(&path, &whole[..cut as usize]).expect("write");
        let (mut j, r) = open(&path).expect("open");
        assert_eq!((r.version, r.lost), (3, 0), "cut at {cut}");
        assert_eq!(
            (&r.counts, &r.recent, &r.standing),
            (&good.0, &good.1, &good.2),
            "cut at {cut}"
        );
        let line = format!(
            "torn record at byte {} (incomplete): cut off {} bytes",
            thousands(last_start),
            cut - last_start
        );
        assert!(mentions(&r.report, &line), "{:?}", r.report);
        assert_eq!(file_len(&path), last_start, "cut at {cut}");
        // The ballot sent again lands where it was.
        j.commit(&records[3..]).expect("commit");
        drop(j);
        let (_, r) = open(&path).expect("reopen");
        assert_eq!((r.counts, r.recent, r.standing), replay_all(&records));
    }
}

#[test]
fn damage_as_long_as_the_marks_it_took_resynchronises() {
    // Four marks are 4 × 26 bytes: zeroed, the next good record is 4 versions on, exactly as
    // many as the smallest record (a mark) lets hide in them.
    let dir = TempDir::new("marks-lost");
    let path = dir.journal();
    let records = [
        vote(1),
        mark(2, Mark::Closed),
        mark(3, Mark::Opened),
        mark(4, Mark::Closed),
        mark(5, Mark::Opened),
        vote(6),
    ];
    let offsets = write_records(&path, &records);
    let mut bytes = fs::read(&path).unwrap();
    let (from, to) = (offsets[1] as usize, offsets[5] as usize);
    assert_eq!(to - from, 4 * Format::V3.min_record());
    bytes[from..to].fill(0);
    fs::write(&path, &bytes).unwrap();
    let (_, r) = open(&path).expect("resynchronises");
    assert_eq!((r.version, r.lost), (6, 4));
    assert!(mentions(&r.report, "4 votes lost"), "{:?}", r.report);
    assert_eq!(r.counts, replay(&[vote(1), vote(6)]).0);
    assert!(!r.standing.closed);
}

#[test]
fn a_checksum_valid_record_of_type_9_stops_start_up() {
    let dir = TempDir::new("type-9");
    let path = dir.journal();
    write_records(
        &path,
        &[ballot(1, "alice", "ann", None, None), mark(2, Mark::Closed)],
    );
    let mut bytes = fs::read(&path).unwrap();
    let mut payload = vec![9];
    payload.extend_from_slice(&3u64.to_le_bytes());
    payload.extend_from_slice(&at(3).to_le_bytes());
    payload.push(1);
    framed(&payload, &mut bytes);
    fs::write(&path, &bytes).unwrap();
    let e = open(&path).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    assert!(
        e.to_string().contains("type 9, unknown to this version"),
        "{e}"
    );
    assert_eq!(fs::read(&path).unwrap(), bytes, "nothing cut off");
}

/// A format-2 journal header (the previous version's), from the docs.
fn v2_header(epoch: &str, base: u64) -> Vec<u8> {
    let mut out = b"LVJF".to_vec();
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&base.to_le_bytes());
    push_id(&mut out, Some(epoch));
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A format-2 vote record: type 1, version, time, uid, vote id.
fn v2_record(r: &Record, out: &mut Vec<u8>) {
    let mut payload = vec![1];
    payload.extend_from_slice(&r.version.to_le_bytes());
    payload.extend_from_slice(&r.at_ms.to_le_bytes());
    push_id(&mut payload, Some(&r.uid));
    push_id(&mut payload, r.vote_id.as_deref());
    framed(&payload, out);
}

/// A format-2 snapshot: counts, and remembered votes with their time; no standing.
fn v2_snapshot(
    epoch: &str,
    version: u64,
    counts: &[(String, u64)],
    recent: &[RecentVote],
) -> Vec<u8> {
    let mut body = vec![];
    push_id(&mut body, Some(epoch));
    body.extend_from_slice(&version.to_le_bytes());
    body.extend_from_slice(&(counts.len() as u32).to_le_bytes());
    for (uid, n) in counts {
        push_id(&mut body, Some(uid));
        body.extend_from_slice(&n.to_le_bytes());
    }
    body.extend_from_slice(&(recent.len() as u32).to_le_bytes());
    for v in recent {
        push_id(&mut body, Some(&v.vote_id));
        push_id(&mut body, Some(&v.uid));
        body.extend_from_slice(&v.count.to_le_bytes());
        body.extend_from_slice(&v.version.to_le_bytes());
        body.extend_from_slice(&v.at_ms.to_le_bytes());
    }
    let mut out = b"LVSF".to_vec();
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

#[test]
fn a_format_2_journal_and_snapshot_open_with_the_same_counts_and_are_upgraded() {
    let dir = TempDir::new("format-2");
    let path = dir.journal();
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let epoch = "00c0ffee00c0ffee";
    // A snapshot at version 10, then records 11..=14, as the previous version wrote them.
    let (counts, recent) = replay(&votes(1, 10));
    fs::write(
        suffixed(&path, SNAPSHOT_SUFFIX),
        v2_snapshot(epoch, 10, &counts, &recent),
    )
    .unwrap();
    let mut data = v2_header(epoch, 10);
    for r in votes(11, 14) {
        v2_record(&r, &mut data);
    }
    fs::write(&path, &data).unwrap();
    // The old files read as format 2.
    assert_eq!(decode_header(&data).unwrap().format, Format::V2);

    let (mut j, r) = open(&path).expect("a format-2 journal opens");
    let (all_counts, all_recent) = replay(&votes(1, 14));
    assert_eq!((r.epoch.as_str(), r.version, r.lost), (epoch, 14, 0));
    // The same counts, and every vote id with its own time (format 2 had them).
    assert_eq!((&r.counts, &r.recent), (&all_counts, &all_recent));
    assert_eq!(r.standing, Standing::default());
    assert!(
        mentions(
            &r.report,
            "upgraded from format 2 to 3 (checkpoint at version 14)"
        ),
        "{:?}",
        r.report
    );
    assert!(!mentions(&r.report, "without a time"), "{:?}", r.report);
    // Both files are format 3 now: a snapshot at 14 and an empty journal continuing from it.
    let journal = fs::read(&path).unwrap();
    assert_eq!(&journal[..6], b"LVJF\x03\x00");
    assert_eq!(journal, encode_header(epoch, 14));
    let snap = fs::read(suffixed(&path, SNAPSHOT_SUFFIX)).unwrap();
    assert_eq!(&snap[..6], b"LVSF\x03\x00");
    let s = decode_snapshot(&snap, 0).unwrap();
    assert_eq!(
        (s.version, s.counts, s.recent),
        (14, all_counts, all_recent)
    );
    // Ballots and marks follow in format 3; reopened, nothing is upgraded again.
    let next = [
        ballot(15, "bob", "ann", None, Some("b-15")),
        mark(16, Mark::Closed),
    ];
    j.commit(&next).expect("commit");
    drop(j);
    let (_, r) = open(&path).expect("reopen");
    assert!(!mentions(&r.report, "upgraded"), "{:?}", r.report);
    let mut all = votes(1, 14);
    all.extend(next);
    assert_eq!((r.version, r.counts, r.recent, r.standing), {
        let (c, v, s) = replay_all(&all);
        (16, c, v, s)
    });
}

#[test]
fn a_format_2_journal_alone_is_upgraded_too() {
    let dir = TempDir::new("format-2-alone");
    let path = dir.journal();
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let epoch = "0123456789abcdef";
    let mut data = v2_header(epoch, 0);
    for r in votes(1, 5) {
        v2_record(&r, &mut data);
    }
    // A torn last record: cut off first, then the rest is upgraded.
    let torn = data.len();
    v2_record(&vote(6), &mut data);
    data.truncate(torn + 10);
    fs::write(&path, &data).unwrap();
    let (_, r) = open(&path).expect("opens");
    assert_eq!((r.version, &r.counts), (5, &replay(&votes(1, 5)).0));
    assert!(mentions(&r.report, "torn record"), "{:?}", r.report);
    assert!(
        mentions(&r.report, "upgraded from format 2 to 3"),
        "{:?}",
        r.report
    );
    assert_eq!(fs::read(&path).unwrap(), encode_header(epoch, 5));
    let s = decode_snapshot(&fs::read(suffixed(&path, SNAPSHOT_SUFFIX)).unwrap(), 0).unwrap();
    assert_eq!((s.format, s.version), (Format::V3, 5));
}
