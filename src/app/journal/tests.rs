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
                at_ms: r.at_ms,
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
            at_ms: version.wrapping_mul(7),
            entry: Default::default(),
        };
        check_record(&r).expect("valid");
        let mut buf = vec![];
        encode_record(&r, &mut buf);
        assert!((Format::V2.min_record()..=MAX_RECORD).contains(&buf.len()));
        let (got, used) = decode_record(&buf, Format::V2)
            .expect("valid")
            .expect("complete");
        assert_eq!(used, buf.len());
        assert_eq!(
            (got.version, got.uid, got.vote_id, got.at_ms),
            (version, uid, vote_id, Some(r.at_ms))
        );
        // Trailing bytes are the next record's business.
        buf.extend_from_slice(b"junk");
        assert_eq!(decode_record(&buf, Format::V2).unwrap().unwrap().1, used);
    }
}

#[test]
fn every_proper_prefix_of_a_record_is_incomplete() {
    let mut buf = vec![];
    encode_record(&vote(12), &mut buf);
    for n in 0..buf.len() {
        assert_eq!(
            decode_record(&buf[..n], Format::V2),
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
        (3, 0x01, Defect::Length), // length 269 > MAX_PAYLOAD
        (5, 0x01, Defect::Checksum),
        (9, 0x01, Defect::Checksum),
    ];
    for (at, mask, defect) in table {
        let mut b = good.clone();
        b[at] ^= mask;
        assert_eq!(
            decode_record(&b, Format::V2),
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
        decode_record(&with_crc(b), Format::V2),
        Err(Defect::Payload)
    );
    // A record type this version does not know: not damage, a newer writer.
    let mut b = good.clone();
    b[FRAME] = 9;
    assert_eq!(
        decode_record(&with_crc(b), Format::V2),
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
    assert!(decode_record(&buf, Format::V2).is_err());
    let h = decode_header(&v1_header("ep0ch", 12)).unwrap();
    assert_eq!(
        (h.format, h.base, h.epoch.as_str()),
        (Format::V1, 12, "ep0ch")
    );
    let h = decode_header(&encode_header("ep0ch", 12)).unwrap();
    assert_eq!(h.format, Format::V2);
    // A newer format is refused, saying so.
    let mut newer = encode_header("ep0ch", 12);
    newer[4] = 3;
    assert_eq!(decode_header(&newer), Err(HeaderError::Format(3)));
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
    let bytes = encode_snapshot("ep0ch", 9, &counts, &recent).expect("valid");
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
        let _ = decode_record(&g, Format::V2);
        let _ = decode_header(&g);
        let _ = decode_snapshot(&g, 0);
        let _ = scan(&g, 0, 0, 0, Format::V2, |_| {});
        // Good records with garbage spliced in somewhere.
        let mut mixed = good.clone();
        let at = (seed as usize) % mixed.len();
        mixed.splice(at..at, g);
        if let Ok(h) = decode_header(&mixed) {
            let _ = scan(&mixed, h.len, h.base, 0, Format::V2, |_| {});
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
    let s = scan(&data, 0, 0, 2, Format::V2, |r| seen.push(r.version)).expect("scans");
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
    let s = scan(&data, 0, 0, 0, Format::V2, |_| {}).expect("scans");
    assert_eq!((s.last, s.records, s.lost), (2, 2, 0));
}

#[test]
fn a_scan_refuses_a_good_record_it_cannot_place() {
    let mut data = vec![];
    encode_record(&vote(1), &mut data);
    data.extend_from_slice(&[0; 5]);
    // Version 50 after 5 damaged bytes: 48 votes cannot hide in 5 bytes.
    encode_record(&vote(50), &mut data);
    let e = scan(&data, 0, 0, 0, Format::V2, |_| {}).unwrap_err();
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
    let e = j.commit(&votes(3, 3)).unwrap_err();
    // Not cut back, the batch may be on disk: its outcome is unknown, not "not stored".
    assert!(crate::app::store::may_be_stored(&e), "{e}");
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
        mentions(&r.report, "upgraded from format 1 to 2"),
        "{:?}",
        r.report
    );
    // Both files are format 2 now, and the next vote is appended to them.
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
    let bytes = encode_snapshot("e", 2, &counts, &recent).unwrap();
    assert_eq!(&bytes[..6], b"LVSF\x02\x00");
    let s = decode_snapshot(&bytes, 0).unwrap();
    assert_eq!((s.format, s.recent), (Format::V2, recent));
    let mut newer = bytes.clone();
    newer[4] = 3;
    assert_eq!(decode_snapshot(&newer, 0), Err(SnapshotError::Format(3)));
}
