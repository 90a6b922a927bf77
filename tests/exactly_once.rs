//! Exactly once, for a time (issue 9, defects 5 and 8): a vote id is remembered for
//! `--vote-id-window`, however many other votes come meanwhile, also across a restart; when the
//! memory for ids is full of ids still inside the window, new ids get `503` + `Retry-After` and
//! votes without one still count; and a store that hangs cannot park a voter past
//! `--vote-timeout`: the voter hears "outcome unknown", and a retry with the same vote id later
//! hears the real outcome, counted once.
//!
//! The hanging store is a test implementation of the `Store` trait that blocks on a gate: the
//! behaviour under test is the vote table's deadline, not a disk (there is no slow device here).

mod common;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::binary::Livevote;
use common::tempdir::TempDir;
use common::*;
use livevote::app::store::{self, Committed, RecentVote, Record, Recovery, Store};
use livevote::app::votes::{Settings, VoteError, Votes};
use livevote::app::App;
use livevote::http::conn;
use tungstenite::Message;

// ---------------------------------------------------------------------------------------------
// The window is a time, not a count

#[test]
fn a_vote_id_retried_after_more_than_100_000_other_ids_is_still_a_replay() {
    // The old window held the last 100,000 ids: about 2 s of votes at full speed.
    let v = Votes::new(&candidates(&["1", "2"]));
    let first = v.vote_once("1", Some("early-bird")).expect("vote");
    for i in 0..100_001 {
        v.vote_once("2", Some(&format!("other-{i}"))).expect("vote");
    }
    let again = v.vote_once("1", Some("early-bird")).expect("retry");
    assert!(again.replayed, "the retry was counted a second time");
    // The first answer (its total is not part of it: a replay does not know it).
    assert_eq!(
        (again.change.uid, again.change.count),
        (first.change.uid, first.change.count)
    );
    assert_eq!(again.change.version, first.change.version);
    assert_eq!(v.version(), 100_002);
}

#[test]
fn a_vote_id_is_answered_as_a_replay_after_a_restart_from_the_new_journal_format() {
    let dir = TempDir::new("exactly-once-restart");
    let args = |extra: &[&str]| {
        let mut a = vec!["--data".to_string(), dir.journal().display().to_string()];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let server = Livevote::start_local(args(&[]));
    let body = "uid=1&vote_id=retry-me";
    let first = assert_json(&post(server.addr, "/vote", body), 200);
    server.kill9();
    // The journal is in the versioned format, and every record carries its time.
    let bytes = std::fs::read(dir.journal()).expect("journal");
    assert_eq!(&bytes[..6], b"LVJF\x03\x00", "format header");

    let server = Livevote::start_local(args(&[]));
    assert!(
        server.stderr_text().contains("1 vote id(s) remembered"),
        "{}",
        server.stderr_text()
    );
    let again = assert_json(&post(server.addr, "/vote", body), 200);
    assert_eq!(
        again, first,
        "the retry after the restart gets the first answer"
    );
    assert_eq!(version_counts(server.addr).0, 1, "counted once");
}

#[test]
fn new_vote_ids_get_503_with_retry_after_when_their_memory_is_full() {
    let addr = start(|c| c.limits.vote_id_memory = 16 * 1024);
    let mut c = Client::connect(addr);
    let mut n = 0;
    let refused = loop {
        let r = c.call(post_req("/vote", &format!("uid=1&vote_id=id-{n}")));
        if r.status != 200 {
            break r;
        }
        n += 1;
        assert!(n < 10_000, "never refused");
    };
    let j = assert_json(&refused, 503);
    assert!(j["error"].as_str().contains("vote id"), "{j:?}");
    let wait: u64 = refused
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=600).contains(&wait), "Retry-After {wait}");
    assert_eq!(version_counts(addr).0, n, "the refused vote did not count");
    // A retry of a remembered id still gets its answer, and a vote without an id still counts.
    let r = c.call(post_req("/vote", "uid=1&vote_id=id-0"));
    assert_eq!(assert_json(&r, 200)["version"].as_u64(), 1);
    assert_eq!(
        assert_json(&c.call(post_req("/vote", "uid=1")), 200)["version"].as_u64(),
        n + 1
    );
    let m = common::metrics::scrape(addr);
    assert_eq!(
        common::metrics::series(&m, "livevote_vote_ids_refused_total"),
        Some(1)
    );
    assert_eq!(
        common::metrics::series(&m, "livevote_vote_ids_remembered"),
        Some(n)
    );
    let held = common::metrics::series(&m, "livevote_vote_ids_bytes").expect("bytes gauge");
    assert!(held > 0 && held <= 16 * 1024, "{held}");
}

// ---------------------------------------------------------------------------------------------
// A store that hangs

/// A gate the test opens; the store's commits wait at it.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
    /// Commits that reached the gate.
    arrived: Mutex<u64>,
    arrival: Condvar,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    /// Waits (bounded) until `n` commits have reached the gate.
    fn wait_arrivals(&self, n: u64) {
        let mut a = self.arrived.lock().unwrap();
        while *a < n {
            let (g, t) = self.arrival.wait_timeout(a, IO_TIMEOUT).unwrap();
            assert!(!t.timed_out(), "no commit reached the store");
            a = g;
        }
    }
}

/// Keeps records in memory, each commit only once the gate is open.
struct GatedStore {
    gate: Arc<Gate>,
    kept: Arc<Mutex<Vec<Record>>>,
}

impl Store for GatedStore {
    fn commit(&mut self, records: &[Record]) -> io::Result<Committed> {
        *self.gate.arrived.lock().unwrap() += 1;
        self.gate.arrival.notify_all();
        let mut open = self.gate.open.lock().unwrap();
        while !*open {
            open = self.gate.opened.wait(open).unwrap();
        }
        self.kept.lock().unwrap().extend_from_slice(records);
        Ok(Committed::AsNumbered)
    }

    fn checkpoint_due(&self) -> bool {
        false
    }

    fn checkpoint(
        &mut self,
        _: u64,
        _: &[(String, u64)],
        _: &[RecentVote],
        _: &livevote::app::store::Standing,
    ) -> io::Result<()> {
        Ok(())
    }
}

const VOTE_TIMEOUT: Duration = Duration::from_secs(1);
/// What "within --vote-timeout" allows on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(3);

/// A gated store (closed), what it keeps, and its gate.
fn gated() -> (GatedStore, Arc<Gate>, Arc<Mutex<Vec<Record>>>) {
    let gate = Arc::new(Gate::default());
    let kept = Arc::new(Mutex::new(Vec::new()));
    let store = GatedStore {
        gate: Arc::clone(&gate),
        kept: Arc::clone(&kept),
    };
    (store, gate, kept)
}

/// An empty store's recovery.
fn nothing_recovered() -> Recovery {
    Recovery {
        epoch: "gated".into(),
        version: 0,
        counts: Vec::new(),
        recent: Vec::new(),
        lost: 0,
        report: Vec::new(),
        standing: Default::default(),
    }
}

/// Serves `app` on 127.0.0.1:0 through the real HTTP and WebSocket stack, one thread per
/// connection as `Server::run` does (without its connection caps); returns the address.
fn serve(app: Arc<App>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let app = Arc::clone(&app);
            thread::spawn(move || {
                let Ok(peer) = stream.peer_addr() else { return };
                let settings = conn::Settings {
                    limits: &app.config.limits,
                    access_log: None,
                };
                if let Some(upgraded) = conn::serve(stream, peer, &*app, &settings) {
                    upgraded.run(None);
                }
            });
        }
    });
    addr
}

#[test]
fn a_hung_store_answers_outcome_unknown_in_time_and_a_retry_learns_the_real_outcome() {
    let (store, gate, kept) = gated();
    let recovery = nothing_recovered();
    let settings = Settings {
        vote_timeout: VOTE_TIMEOUT,
        ..Settings::default()
    };
    let (votes, _) = Votes::durable(
        &candidates(&["1", "2"]),
        Box::new(store),
        recovery,
        &settings,
    );
    let votes = Arc::new(votes);
    let committer = Arc::clone(&votes);
    thread::spawn(move || committer.commit_loop(&|_| {}));

    // The store hangs in the commit of this vote: the voter is freed, outcome unknown.
    let started = Instant::now();
    let first = votes.vote_once("1", Some("hung-1"));
    assert_eq!(first, Err(VoteError::OutcomeUnknown));
    assert!(
        started.elapsed() < VOTE_TIMEOUT + SLACK,
        "{:?}",
        started.elapsed()
    );
    gate.wait_arrivals(1);
    // A retry while it is still being stored waits as long, and hears the same.
    let started = Instant::now();
    assert_eq!(
        votes.vote_once("1", Some("hung-1")),
        Err(VoteError::OutcomeUnknown)
    );
    assert!(started.elapsed() < VOTE_TIMEOUT + SLACK);
    // A vote the committer has not taken yet (it is stuck) is withdrawn: certainly not counted.
    match votes.vote_once("2", None) {
        Err(VoteError::NotStored(_)) => {}
        other => panic!("{other:?}"),
    }

    // The store finishes: the first vote counted; its id answers the retry with that outcome.
    gate.open();
    assert!(
        votes.wait_past(0, None, 10, IO_TIMEOUT).is_some(),
        "the hung commit never finished"
    );
    let again = votes
        .vote_once("1", Some("hung-1"))
        .expect("the real outcome");
    assert!(again.replayed, "counted twice");
    assert_eq!((again.change.uid.as_str(), again.change.version), ("1", 1));
    assert_eq!(votes.version(), 1, "the withdrawn vote was not counted");
    let kept = kept.lock().unwrap().clone();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].vote_id.as_deref(), Some("hung-1"));
    // And the store is usable again.
    assert_eq!(votes.vote("2").expect("vote").version, 2);
}

#[test]
fn over_http_and_websocket_a_hung_store_is_503_outcome_unknown_then_the_retry_is_answered() {
    let (store, gate, kept) = gated();
    let mut config = test_config();
    config.limits.vote_timeout = VOTE_TIMEOUT;
    let app = App::with_store(config, Box::new(store), nothing_recovered()).expect("app");
    let addr = serve(Arc::clone(&app));
    let mut c = Client::connect(addr);

    let started = Instant::now();
    let r = c.call(post_req("/vote", "uid=1&vote_id=hung-h"));
    assert!(
        started.elapsed() < VOTE_TIMEOUT + SLACK,
        "{:?}",
        started.elapsed()
    );
    let j = assert_json(&r, 503);
    assert_eq!(j["outcome"].as_str(), "unknown", "{j:?}");
    assert!(j["error"].as_str().contains("vote_id"), "{j:?}");
    assert_eq!(r.header("retry-after"), Some("1"));
    gate.wait_arrivals(1);

    // Over WebSocket, a retry of the same id while it is still being stored.
    let mut ws = ws_connect(addr, "/get_new_vote");
    ws.send(Message::Text(vote_message("1", "hung-h")))
        .expect("send");
    let e = ws_next_of_type(&mut ws, "error");
    assert_eq!(e["outcome"].as_str(), "unknown", "{e:?}");
    assert_eq!(e["uid"].as_str(), "1");

    // The store finishes: both transports' retries get the real outcome, counted once.
    gate.open();
    assert!(app.votes.wait_past(0, None, 10, IO_TIMEOUT).is_some());
    let j = assert_json(&c.call(post_req("/vote", "uid=1&vote_id=hung-h")), 200);
    assert_eq!((j["version"].as_u64(), j["count"].as_u64()), (1, 1));
    ws.send(Message::Text(vote_message("1", "hung-h")))
        .expect("send");
    let ack = ws_next_of_type(&mut ws, "ack");
    assert!(ack["replayed"].as_bool(), "{ack:?}");
    assert_eq!(ack["version"].as_u64(), 1);
    assert_eq!(version_counts(addr).0, 1);
    assert_eq!(kept.lock().unwrap().len(), 1);
}

/// A store whose every commit fails and cannot be undone (a failed fsync, then a failed
/// truncate): the records may be on disk, so a restart may count them.
struct UndoFailsStore;

impl Store for UndoFailsStore {
    fn commit(&mut self, _: &[Record]) -> io::Result<Committed> {
        Err(store::maybe_stored(io::Error::other(
            "fsync failed, and so did cutting the file back",
        )))
    }

    fn checkpoint_due(&self) -> bool {
        false
    }

    fn checkpoint(
        &mut self,
        _: u64,
        _: &[(String, u64)],
        _: &[RecentVote],
        _: &livevote::app::store::Standing,
    ) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_commit_the_store_cannot_undo_is_outcome_unknown_not_not_stored() {
    let (votes, _) = Votes::durable(
        &candidates(&["1"]),
        Box::new(UndoFailsStore),
        nothing_recovered(),
        &Settings::default(),
    );
    let votes = Arc::new(votes);
    let committer = Arc::clone(&votes);
    thread::spawn(move || committer.commit_loop(&|_| {}));
    // "Not stored" would promise that it never counts; a restart could count it.
    assert_eq!(
        votes.vote_once("1", Some("maybe-1")),
        Err(VoteError::OutcomeUnknown)
    );
    assert_eq!(votes.vote_once("1", None), Err(VoteError::OutcomeUnknown));
    assert_eq!(votes.version(), 0, "nothing is counted here");
}
