//! Crash safety of the vote journal, with the real binary (issue 5): `kill -9` in the middle of a
//! vote storm loses no acknowledged vote and counts none twice; a torn tail is reported and cut
//! off; a flipped byte in the middle costs exactly that vote; a corrupt snapshot or an unreadable
//! journal header stops start-up with exit code 1 and says why, without touching the files; a
//! second server on the same journal is refused; candidates renamed, added or configured out
//! between runs keep their votes, also across a checkpoint; the previous version's files (format
//! 1) open with every vote and vote id (issue 9).
//!
//! The journal's bytes are read and written here from the format in `src/app/journal/mod.rs`'s
//! module docs (with a CRC-32 of our own), not through the server's code. The shared helpers are
//! in `tests/common`; every server process is killed by its handle when its guard drops, so a
//! failing assertion leaves nothing running.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use common::binary::{Livevote, START_LIMIT};
use common::metrics::metric;
use common::tempdir::TempDir;
use common::*;

/// How long the storm's voters keep going (they stop earlier when the server is gone).
const STORM: Duration = Duration::from_millis(1500);
/// When the storm's server is killed.
const KILL_AT: Duration = Duration::from_millis(700);
const VOTERS: usize = 8;

impl TempDir {
    /// The journal's snapshot, beside it.
    fn snapshot(&self) -> PathBuf {
        self.path().join("votes.journal.snapshot")
    }
}

/// `--data journal`, then `extra`.
fn journal_args(journal: &Path, extra: &[&str]) -> Vec<OsString> {
    let mut args = vec!["--data".into(), journal.into()];
    args.extend(extra.iter().map(OsString::from));
    args
}

/// Starts the server on `journal` (on 127.0.0.1:0, quiet, with the repo's `www/`) and waits
/// for its address.
fn start_on(journal: &Path) -> Livevote {
    start_on_with(journal, &[])
}

/// [`start_on`] with more arguments.
fn start_on_with(journal: &Path, extra: &[&str]) -> Livevote {
    Livevote::start_local(journal_args(journal, extra))
}

/// Runs the server on `journal` when it is expected to refuse to start: its exit code and
/// stderr.
fn refused_start(journal: &Path) -> (Option<i32>, String) {
    let mut args = binary::local_args();
    args.extend(journal_args(journal, &[]));
    Livevote::spawn(args).exit_status()
}

fn total(counts: &BTreeMap<String, u64>) -> u64 {
    counts.values().sum()
}

/// One vote with a vote id.
#[derive(Clone, Debug)]
struct Ballot {
    vote_id: String,
    uid: String,
}

impl Ballot {
    fn new(vote_id: impl Into<String>, uid: &str) -> Ballot {
        Ballot {
            vote_id: vote_id.into(),
            uid: uid.to_string(),
        }
    }

    fn request(&self) -> String {
        post_req(
            "/vote",
            &format!("uid={}&vote_id={}", self.uid, self.vote_id),
        )
    }
}

/// Casts each ballot on one connection; asserts 200 and returns the JSON answers.
fn cast(addr: SocketAddr, ballots: &[Ballot]) -> Vec<Json> {
    let mut c = Client::connect(addr);
    ballots
        .iter()
        .map(|b| {
            let r = c.call(b.request());
            assert_eq!(r.status, 200, "{b:?}: {}", r.text());
            r.json()
        })
        .collect()
}

/// `n` ballots `PREFIX0, PREFIX1, …`, alternating candidates 1 and 2.
fn ballots(prefix: &str, n: usize) -> Vec<Ballot> {
    (0..n)
        .map(|i| Ballot::new(format!("{prefix}{i}"), ["1", "2"][i % 2]))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// (a) kill -9 in the middle of a storm

#[derive(Default)]
struct StormLog {
    acked: Vec<(Ballot, Json)>,
    unanswered: Vec<Ballot>,
    /// Answers other than 200 (none expected).
    odd: Vec<String>,
}

/// A body as text, whatever its bytes (a storm voter records what it got, it does not panic).
fn body_text(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// Votes as fast as one keep-alive connection allows until the storm ends or the server is
/// gone; reconnects after a failure.
fn storm_voter(addr: SocketAddr, t: usize, started: Instant) -> StormLog {
    let mut log = StormLog::default();
    let mut conn: Option<Client> = None;
    let mut n = 0;
    while started.elapsed() < STORM {
        if conn.is_none() {
            match Client::try_connect(addr) {
                Ok(c) => conn = Some(c),
                Err(_) => break, // the server is gone
            }
        }
        let c = conn.as_mut().expect("connected above");
        n += 1;
        let b = Ballot::new(format!("s{t}-{n}"), ["1", "2"][(n + t) % 2]);
        match c.try_call(b.request()) {
            Ok(r) if r.status == 200 => match Json::parse(&body_text(&r)) {
                Ok(j) => log.acked.push((b, j)),
                Err(_) => {
                    log.odd
                        .push(format!("{b:?}: 200 without JSON: {}", body_text(&r)));
                    log.unanswered.push(b);
                }
            },
            Ok(r) => {
                log.odd
                    .push(format!("{b:?}: {} {}", r.status, body_text(&r)));
                log.unanswered.push(b);
            }
            Err(_) => {
                log.unanswered.push(b);
                conn = None;
            }
        }
    }
    log
}

#[test]
fn kill_9_mid_storm_keeps_every_acknowledged_vote_and_counts_none_twice() {
    let dir = TempDir::new("storm");
    let journal = dir.journal();
    let server = start_on(&journal);
    let addr = server.addr;
    let started = Instant::now();
    let voters: Vec<_> = (0..VOTERS)
        .map(|t| thread::spawn(move || storm_voter(addr, t, started)))
        .collect();
    thread::sleep(KILL_AT.saturating_sub(started.elapsed()));
    server.kill9();
    let mut log = StormLog::default();
    for v in voters {
        let l = v.join().expect("a voter panicked");
        log.acked.extend(l.acked);
        log.unanswered.extend(l.unanswered);
        log.odd.extend(l.odd);
    }
    assert!(log.odd.is_empty(), "unexpected answers: {:#?}", log.odd);
    assert!(
        !log.acked.is_empty(),
        "no vote was acknowledged before the kill"
    );
    let attempted = (log.acked.len() + log.unanswered.len()) as u64;
    let acked = log.acked.len() as u64;
    eprintln!(
        "storm: {acked} acknowledged, {} unanswered at the kill",
        log.unanswered.len()
    );

    // Restart on the same journal.
    let server = start_on(&journal);
    let addr = server.addr;
    assert!(
        server.stderr_text().contains("journal: recovered"),
        "{}",
        server.stderr_text()
    );
    let (version, counts) = version_counts(addr);
    let recovered = total(&counts);
    assert!(
        recovered >= acked,
        "{recovered} votes recovered but {acked} were acknowledged"
    );
    assert!(
        recovered <= attempted,
        "{recovered} > {attempted} attempted"
    );
    assert_eq!(
        version, recovered,
        "a kill -9 loses no version in the middle"
    );
    eprintln!(
        "storm: {recovered} recovered, {} of them unanswered",
        recovered - acked
    );

    // Every acknowledged vote is there: its retry is a replay with the very same answer.
    let mut c = Client::connect(addr);
    for (b, first) in &log.acked {
        let r = c.call(b.request());
        assert_eq!(r.status, 200, "{b:?}: {}", r.text());
        assert_eq!(&r.json(), first, "the retry of acknowledged {b:?}");
    }
    assert_eq!(
        version_counts(addr),
        (version, counts.clone()),
        "retries counted"
    );
    assert_eq!(metric(addr, "livevote_vote_replays_total"), acked);

    // Each unanswered vote counts at most once: those on disk replay, the others count now.
    for b in &log.unanswered {
        let r = c.call(b.request());
        assert_eq!(r.status, 200, "{b:?}: {}", r.text());
    }
    let (version, counts) = version_counts(addr);
    assert_eq!(
        total(&counts),
        attempted,
        "every vote id counted exactly once"
    );
    assert_eq!(version, attempted);
    assert_eq!(
        metric(addr, "livevote_vote_replays_total"),
        recovered,
        "the unanswered votes that were on disk replay, the others count"
    );

    // A second restart: the same tally and version, and every id still replays.
    server.kill9();
    let server = start_on(&journal);
    let addr = server.addr;
    assert_eq!(version_counts(addr), (version, counts.clone()));
    let mut c = Client::connect(addr);
    for b in log.acked.iter().map(|(b, _)| b).chain(&log.unanswered) {
        assert_eq!(c.call(b.request()).status, 200, "{b:?}");
    }
    assert_eq!(version_counts(addr), (version, counts));
    assert_eq!(metric(addr, "livevote_vote_replays_total"), attempted);
}

// ---------------------------------------------------------------------------------------------
// (b) a torn tail

/// Ten votes, the server killed, `damage` done to the journal; the restart must report the cut,
/// count exactly the first `complete` votes, then take new votes that survive a restart.
fn torn_tail(damage: impl FnOnce(&Path), complete: usize) {
    let dir = TempDir::new("torn");
    let journal = dir.journal();
    let server = start_on(&journal);
    let first = ballots("t", 10);
    let answers = cast(server.addr, &first);
    server.kill9();
    damage(&journal);

    let server = start_on(&journal);
    let report = server.stderr_text();
    assert!(
        report.contains("torn record") && report.contains("cut off"),
        "no report of the cut:\n{report}"
    );
    let addr = server.addr;
    let (version, counts) = version_counts(addr);
    assert_eq!(total(&counts), complete as u64, "{report}");
    assert_eq!(version, complete as u64);
    // The complete votes replay with their answers; nothing counts again.
    let replays = cast(addr, &first[..complete]);
    assert_eq!(replays, answers[..complete].to_vec());
    assert_eq!(version_counts(addr).0, complete as u64);
    // A cut vote was never counted: sent again, it counts once.
    let cut = cast(addr, &first[complete..]);
    assert_eq!(version_counts(addr).0, 10);
    // New votes continue the sequence.
    let more = ballots("u", 5);
    let more_answers = cast(addr, &more);
    assert_eq!(more_answers[4]["version"].as_u64(), 15);
    let before = version_counts(addr);
    server.kill9();

    // The repaired journal restarts cleanly with everything.
    let server = start_on(&journal);
    let report = server.stderr_text();
    assert!(!report.contains("torn"), "{report}");
    assert_eq!(version_counts(server.addr), before);
    assert_eq!(cast(server.addr, &first[complete..]), cut);
    assert_eq!(cast(server.addr, &more), more_answers);
    assert_eq!(version_counts(server.addr), before);
}

#[test]
fn a_last_record_cut_in_half_is_reported_and_cut_off() {
    torn_tail(
        |journal| {
            let len = fs::metadata(journal).unwrap().len();
            let f = fs::OpenOptions::new().write(true).open(journal).unwrap();
            f.set_len(len - 5).unwrap();
        },
        9,
    );
}

#[test]
fn garbage_after_the_last_record_is_reported_and_cut_off() {
    for garbage in [
        &b"\xa7\x56\x30"[..],
        b"\0\0\0\0\0\0\0",
        b"garbage after a crash",
    ] {
        torn_tail(
            |journal| {
                let mut f = fs::OpenOptions::new().append(true).open(journal).unwrap();
                f.write_all(garbage).unwrap();
            },
            10,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// (c) a flipped byte in the middle

/// (offset, length) of every record of a journal, read by the documented format: a header
/// `"LVJF" | format u16 (3) | base u64 | epoch length u8 | epoch | CRC-32`, then records
/// `A7 56 | payload length u16 | CRC-32 | payload`.
fn records(data: &[u8]) -> Vec<(usize, usize)> {
    assert_eq!(&data[..6], b"LVJF\x03\x00", "a journal of format 3");
    let mut pos = 4 + 2 + 8 + 1 + usize::from(data[14]) + 4;
    let mut out = Vec::new();
    while pos < data.len() {
        assert_eq!(&data[pos..pos + 2], &[0xA7, 0x56], "a record at {pos}");
        let len = 8 + usize::from(u16::from_le_bytes([data[pos + 2], data[pos + 3]]));
        out.push((pos, len));
        pos += len;
    }
    assert_eq!(pos, data.len(), "the last record is complete");
    out
}

#[test]
fn a_flipped_byte_in_the_middle_costs_that_vote_only_and_is_reported() {
    let dir = TempDir::new("flip");
    let journal = dir.journal();
    let server = start_on(&journal);
    let first = ballots("f", 9);
    let answers = cast(server.addr, &first);
    server.kill9();

    let mut data = fs::read(&journal).unwrap();
    let recs = records(&data);
    assert_eq!(recs.len(), 9);
    let lost = 4;
    let (at, len) = recs[lost];
    data[at + 8 + (len - 8) / 2] ^= 0x5A; // inside the payload: the checksum fails
    fs::write(&journal, &data).unwrap();

    let server = start_on(&journal);
    let report = server.stderr_text();
    assert!(
        report.contains("corrupt record") && report.contains("1 vote lost"),
        "no report of the damage:\n{report}"
    );
    let addr = server.addr;
    let (version, counts) = version_counts(addr);
    assert_eq!(total(&counts), 8, "{report}");
    assert_eq!(version, 9, "versions are never reused");

    // The other votes replay (counted once); a later vote for the lost vote's candidate now
    // says one less, as its count is rebuilt from the journal.
    for (i, (b, first_answer)) in first.iter().zip(&answers).enumerate() {
        if i == lost {
            continue;
        }
        let mut expected = first_answer.clone();
        if i > lost && b.uid == first[lost].uid {
            expected.set("count", first_answer["count"].as_u64() - 1);
        }
        assert_eq!(cast(addr, std::slice::from_ref(b))[0], expected, "{b:?}");
    }
    assert_eq!(version_counts(addr), (version, counts));
    // The lost vote's id is unknown now: sent again it counts once, then replays.
    let again = cast(addr, &first[lost..=lost]);
    assert_eq!(again[0]["version"].as_u64(), 10);
    assert_eq!(cast(addr, &first[lost..=lost]), again);
    let (version, counts) = version_counts(addr);
    assert_eq!((version, total(&counts)), (10, 9));
    server.kill9();

    // A restart finds the same damage (it is in the middle, not cut off) and the same tally.
    let server = start_on(&journal);
    assert!(server.stderr_text().contains("1 vote lost"));
    assert_eq!(version_counts(server.addr), (version, counts));
    assert_eq!(cast(server.addr, &first[lost..=lost]), again);
}

// ---------------------------------------------------------------------------------------------
// (d) damage that must stop start-up

/// CRC-32/IEEE, bit by bit (independent of the server's table).
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A journal header of format 3 continuing from version `base`.
fn journal_header(epoch: &str, base: u64) -> Vec<u8> {
    let mut out = b"LVJF".to_vec();
    out.extend_from_slice(&3u16.to_le_bytes());
    out.extend_from_slice(&base.to_le_bytes());
    out.push(epoch.len() as u8);
    out.extend_from_slice(epoch.as_bytes());
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A journal header of format 1 (the previous version's), continuing from version `base`.
fn journal_header_v1(epoch: &str, base: u64) -> Vec<u8> {
    let mut out = b"LVJ1".to_vec();
    out.extend_from_slice(&base.to_le_bytes());
    out.push(epoch.len() as u8);
    out.extend_from_slice(epoch.as_bytes());
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A snapshot of format 1 (the previous version's): counts per uid, and remembered votes (vote
/// id, uid, count after, version) without their time.
fn snapshot_file_v1(
    epoch: &str,
    version: u64,
    counts: &[(&str, u64)],
    recent: &[(&str, &str, u64, u64)],
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
    for (vote_id, uid, count, v) in recent {
        body.push(vote_id.len() as u8);
        body.extend_from_slice(vote_id.as_bytes());
        body.push(uid.len() as u8);
        body.extend_from_slice(uid.as_bytes());
        body.extend_from_slice(&count.to_le_bytes());
        body.extend_from_slice(&v.to_le_bytes());
    }
    let mut out = b"LVS1".to_vec();
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Asserts the server refuses to start on `dir`'s files with exit code 1 and a message with
/// every one of `says`, and leaves the journal and snapshot as they were.
fn assert_refuses(dir: &TempDir, says: &[&str]) {
    let before = (fs::read(dir.journal()).ok(), fs::read(dir.snapshot()).ok());
    let (code, stderr) = refused_start(&dir.journal());
    assert_eq!(code, Some(1), "exit code; stderr:\n{stderr}");
    for s in says {
        assert!(stderr.contains(s), "stderr lacks {s:?}:\n{stderr}");
    }
    let after = (fs::read(dir.journal()).ok(), fs::read(dir.snapshot()).ok());
    assert!(before == after, "a refused start changed the files");
}

#[test]
fn an_unreadable_journal_header_stops_start_up_with_exit_1() {
    let dir = TempDir::new("header");
    let journal = dir.journal();
    let server = start_on(&journal);
    cast(server.addr, &ballots("h", 3));
    server.kill9();
    let good = fs::read(&journal).unwrap();

    let mut not_ours = good.clone();
    not_ours[..4].copy_from_slice(b"XXXX");
    let mut bad_crc = good.clone();
    bad_crc[16] ^= 0x01; // inside the epoch
    let short = good[..6].to_vec();
    for (what, bytes) in [
        ("magic", not_ours),
        ("checksum", bad_crc),
        ("short", short),
        ("empty", Vec::new()),
    ] {
        fs::write(&journal, &bytes).unwrap();
        eprintln!("header damage: {what}");
        assert_refuses(
            &dir,
            &["cannot start", "header unreadable", "refusing to start"],
        );
    }

    // Put back, it starts with every vote.
    fs::write(&journal, &good).unwrap();
    let server = start_on(&journal);
    assert_eq!(version_counts(server.addr).0, 3);
}

#[test]
fn a_corrupt_snapshot_stops_start_up_unless_the_journal_has_every_vote() {
    let dir = TempDir::new("snapshot");
    let epoch = "00c0ffee00c0ffee";
    // A checkpoint at version 5 (3 votes for 1, 2 for 2), and the journal after it.
    // The files of the previous version (format 1): they open, and are upgraded at once.
    let snapshot = snapshot_file_v1(epoch, 5, &[("1", 3), ("2", 2)], &[("snap-a", "1", 3, 5)]);
    fs::write(dir.snapshot(), &snapshot).unwrap();
    fs::write(dir.journal(), journal_header_v1(epoch, 5)).unwrap();
    let server = start_on(&dir.journal());
    let addr = server.addr;
    let report = server.stderr_text();
    assert!(report.contains("upgraded from format 1 to 3"), "{report}");
    assert_eq!(&fs::read(dir.journal()).unwrap()[..4], b"LVJF");
    assert_eq!(&fs::read(dir.snapshot()).unwrap()[..4], b"LVSF");
    assert_eq!(
        version_counts(addr),
        (5, [("1".into(), 3), ("2".into(), 2)].into_iter().collect())
    );
    // The snapshot's vote ids are remembered.
    let replay = cast(addr, &[Ballot::new("snap-a", "1")]);
    assert_eq!(replay[0]["version"].as_u64(), 5);
    assert_eq!(replay[0]["count"].as_u64(), 3);
    assert_eq!(replay[0]["epoch"].as_str(), epoch);
    assert_eq!(
        cast(addr, &[Ballot::new("new-1", "2")])[0]["version"].as_u64(),
        6
    );
    server.kill9();

    // A flipped byte in the snapshot: its votes are not in the journal, so it must not start.
    let mut corrupt = snapshot.clone();
    corrupt[snapshot.len() / 2] ^= 0x10;
    fs::write(dir.snapshot(), &corrupt).unwrap();
    assert_refuses(
        &dir,
        &["cannot start", "snapshot", "corrupt", "refusing to start"],
    );
    // Cut short, or not a snapshot at all: the same.
    fs::write(dir.snapshot(), &snapshot[..snapshot.len() - 3]).unwrap();
    assert_refuses(&dir, &["snapshot", "corrupt", "refusing to start"]);
    fs::write(dir.snapshot(), b"hello").unwrap();
    assert_refuses(&dir, &["snapshot", "corrupt", "refusing to start"]);
    // Missing: votes 1 to 5 would be lost.
    fs::remove_file(dir.snapshot()).unwrap();
    assert_refuses(&dir, &["snapshot", "missing", "refusing to start"]);
    // From another history.
    fs::write(
        dir.snapshot(),
        snapshot_file_v1("0ther0ther0ther0", 5, &[("1", 3), ("2", 2)], &[]),
    )
    .unwrap();
    assert_refuses(&dir, &["different histories", "refusing to start"]);

    // Restored, everything is back.
    fs::write(dir.snapshot(), &snapshot).unwrap();
    let server = start_on(&dir.journal());
    assert_eq!(version_counts(server.addr).0, 6);
}

#[test]
fn a_corrupt_snapshot_beside_a_journal_from_version_0_is_ignored_with_a_report() {
    let dir = TempDir::new("snapshot0");
    let server = start_on(&dir.journal());
    cast(server.addr, &ballots("z", 4));
    server.kill9();
    fs::write(dir.snapshot(), b"LVS1 but not really a snapshot").unwrap();
    let server = start_on(&dir.journal());
    let report = server.stderr_text();
    assert!(
        report.contains("corrupt") && report.contains("ignored"),
        "{report}"
    );
    assert_eq!(version_counts(server.addr).0, 4);
}

#[test]
fn a_second_server_on_the_same_journal_is_refused() {
    let dir = TempDir::new("lock");
    let server = start_on(&dir.journal());
    cast(server.addr, &ballots("l", 2));
    let (code, stderr) = refused_start(&dir.journal());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("in use by another process"), "{stderr}");
    // The first one is unharmed.
    assert_eq!(version_counts(server.addr).0, 2);
    cast(server.addr, &ballots("m", 1));
    assert_eq!(version_counts(server.addr).0, 3);
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

/// A vote record of format 3 (and 2, the same): `A7 56 | payload length u16 | CRC-32 of (length,
/// payload) | payload`, the payload `type u8 (1: vote) | version u64 | time u64 (ms since the
/// Unix epoch) | uid length u8 | uid | vote-id length u8 | vote id`. Format 1's payload has
/// neither the type nor the time.
fn record(version: u64, uid: &str, vote_id: Option<&str>, out: &mut Vec<u8>) {
    let mut payload = vec![1];
    payload.extend_from_slice(&version.to_le_bytes());
    payload.extend_from_slice(&now_ms().to_le_bytes());
    frame(&mut payload, uid, vote_id, out);
}

/// A journal record of format 1 (the previous version's).
fn record_v1(version: u64, uid: &str, vote_id: Option<&str>, out: &mut Vec<u8>) {
    frame(&mut version.to_le_bytes().to_vec(), uid, vote_id, out);
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Completes `payload` with the uid and vote id and appends it, framed, to `out`.
fn frame(payload: &mut Vec<u8>, uid: &str, vote_id: Option<&str>, out: &mut Vec<u8>) {
    let vote_id = vote_id.unwrap_or("");
    payload.push(uid.len() as u8);
    payload.extend_from_slice(uid.as_bytes());
    payload.push(vote_id.len() as u8);
    payload.extend_from_slice(vote_id.as_bytes());
    let len = (payload.len() as u16).to_le_bytes();
    let mut checked = len.to_vec();
    checked.extend_from_slice(payload);
    out.extend_from_slice(&[0xA7, 0x56]);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc32(&checked).to_le_bytes());
    out.extend_from_slice(payload);
}

#[test]
fn a_journal_of_the_previous_format_opens_with_its_votes_and_vote_ids() {
    let dir = TempDir::new("format-1");
    let epoch = "0ld0ld0ld0ld0ld0";
    let mut data = journal_header_v1(epoch, 0);
    record_v1(1, "1", Some("old-a"), &mut data);
    record_v1(2, "2", None, &mut data);
    record_v1(3, "1", Some("old-b"), &mut data);
    fs::write(dir.journal(), &data).unwrap();
    let server = start_on(&dir.journal());
    let report = server.stderr_text();
    assert!(report.contains("upgraded from format 1 to 3"), "{report}");
    assert!(report.contains("2 vote id(s) remembered"), "{report}");
    let addr = server.addr;
    assert_eq!(version_counts(addr), (3, counts(&[("1", 2), ("2", 1)])));
    // Its vote ids replay (kept for a window from this start: they carried no time).
    let replay = cast(
        addr,
        &[Ballot::new("old-a", "1"), Ballot::new("old-b", "1")],
    );
    assert_eq!(
        (replay[0]["version"].as_u64(), replay[0]["count"].as_u64()),
        (1, 1)
    );
    assert_eq!(
        (replay[1]["version"].as_u64(), replay[1]["count"].as_u64()),
        (3, 2)
    );
    assert_eq!(replay[0]["epoch"].as_str(), epoch);
    let next = cast(addr, &[Ballot::new("new-c", "2")]);
    server.kill9();
    // Now in format 3, with every vote and vote id, new or old.
    assert_eq!(&fs::read(dir.journal()).unwrap()[..4], b"LVJF");
    let server = start_on(&dir.journal());
    assert!(!server.stderr_text().contains("upgraded"));
    assert_eq!(version_counts(server.addr).0, 4);
    assert_eq!(cast(server.addr, &[Ballot::new("new-c", "2")]), next);
    assert_eq!(cast(server.addr, &[Ballot::new("old-b", "1")]), replay[1..]);
}

#[test]
fn votes_for_a_candidate_configured_out_survive_a_checkpoint() {
    // The start-up report promises that votes for a candidate no longer configured are "kept on
    // disk": configure it again and they are back. That must hold after the journal is
    // replaced by a snapshot, which happens once CHECKPOINT_EVERY records are in it.
    use livevote::app::journal::CHECKPOINT_EVERY;
    let dir = TempDir::new("checkpoint");
    let epoch = "0123456789abcdef";
    let mut data = journal_header(epoch, 0);
    let n = CHECKPOINT_EVERY;
    for v in 1..=n {
        // Ten votes for candidate 3 (not configured below), the rest for 1; the last five
        // with vote ids.
        let uid = if v <= 10 { "3" } else { "1" };
        let id = (v > n - 5).then(|| format!("old-{}", n - v));
        record(v, uid, id.as_deref(), &mut data);
    }
    fs::write(dir.journal(), &data).unwrap();
    drop(data);

    // Candidates 1 and 2 only: 3's votes are reported, not shown.
    let server = start_on(&dir.journal());
    let report = server.stderr_text();
    assert!(
        report.contains("10 vote(s) for '3', not a candidate now: kept on disk"),
        "{report}"
    );
    let addr = server.addr;
    assert_eq!(version_counts(addr).0, n);
    // One more vote takes the journal past the checkpoint threshold.
    let answer = cast(addr, &[Ballot::new("new-0", "2")]);
    assert_eq!(answer[0]["version"].as_u64(), n + 1);
    wait_for(
        START_LIMIT,
        &format!("a checkpoint after {} records", n + 1),
        || dir.snapshot().exists().then_some(()),
    );
    // The journal was replaced: it now starts after the snapshot.
    wait_for(START_LIMIT, "the journal to be replaced", || {
        (fs::metadata(dir.journal()).unwrap().len() <= 100).then_some(())
    });
    server.kill9();

    // Back with candidate 3: every vote is there, and the vote ids still replay.
    let server = start_on_with(
        &dir.journal(),
        &[
            "--candidate",
            "1=a",
            "--candidate",
            "2=b",
            "--candidate",
            "3=c",
        ],
    );
    let addr = server.addr;
    let (version, counts) = version_counts(addr);
    assert_eq!(version, n + 1);
    assert_eq!(counts.get("1"), Some(&(n - 10)));
    assert_eq!(counts.get("2"), Some(&1));
    assert_eq!(cast(addr, &[Ballot::new("new-0", "2")]), answer);
    let old = cast(addr, &[Ballot::new("old-2", "1")]);
    assert_eq!(old[0]["version"].as_u64(), n - 2);
    assert_eq!(
        counts.get("3"),
        Some(&10),
        "the votes for candidate 3, kept on disk before the checkpoint, are gone after it"
    );
}

#[test]
fn candidates_renamed_added_or_reordered_between_runs_keep_their_votes() {
    let dir = TempDir::new("rename");
    let server = start_on_with(&dir.journal(), &["--candidate", "a=Alpha"]);
    let votes = [Ballot::new("r0", "a"), Ballot::new("r1", "a")];
    let answers = cast(server.addr, &votes);
    server.kill9();
    // Renamed, and another added before it: a's votes follow its uid, not its name or place.
    let server = start_on_with(
        &dir.journal(),
        &["--candidate", "b=Beta", "--candidate", "a=Renamed"],
    );
    let addr = server.addr;
    let (version, counts) = version_counts(addr);
    assert_eq!(version, 2);
    assert_eq!(counts, [("a".into(), 2), ("b".into(), 0)].into());
    assert_eq!(
        cast(addr, &votes),
        answers,
        "vote ids replay after the rename"
    );
    assert_eq!(
        cast(addr, &[Ballot::new("r2", "b")])[0]["version"].as_u64(),
        3
    );
}

impl Json {
    /// Sets a number field of an object.
    fn set(&mut self, key: &str, n: u64) {
        if let Json::Obj(f) = self {
            if let Some((_, v)) = f.iter_mut().find(|(k, _)| k == key) {
                *v = Json::Num(n as f64);
            }
        }
    }
}
