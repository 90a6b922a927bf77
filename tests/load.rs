//! A bounded load test (issue 5): for about two seconds, clients vote on every transport —
//! `POST /vote`, `POST /ticket`, WebSocket — most with vote ids, some sent twice in a row and
//! some sent twice at the same moment on two connections (even on two transports), while
//! subscribers follow the tally on every transport: WebSocket (tungstenite), Server-Sent Events
//! (raw TCP, parsed here), long-polling with `since=`, and `/votes` polling with `ETag`.
//!
//! Then: the tally equals the distinct acknowledged vote ids plus the acknowledged votes without
//! one; every answer to one vote id is the same; every subscriber ends on the final version with
//! exactly the final counts (read until it gets there, bounded), having seen each vote as the
//! exact next version with its candidate's count one higher. Run in memory and durable.
//!
//! No speed is asserted; everything is bounded in time and count and targets 127.0.0.1 only.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::metrics::metric;
use common::tempdir::TempDir;
use common::*;
use tungstenite::Message;

/// How long the voters vote.
const RUN: Duration = Duration::from_secs(2);
/// Bound on subscribers reaching the final version after the voters stop.
const SETTLE: Duration = Duration::from_secs(15);
/// How often a subscriber blocked in a read looks at whether it is done.
const TICK: Duration = Duration::from_millis(100);

/// The two variants share the machine one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn load_in_memory() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    run_load(None);
}

#[test]
fn load_durable() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("load");
    run_load(Some(dir.journal()));
}

fn run_load(data: Option<PathBuf>) {
    let durable = data.is_some();
    let addr = start(|c| {
        c.longpoll_timeout = Duration::from_millis(500);
        c.data = data;
        c.limits.max_connections_per_ip = 0;
    });
    let shared = Arc::new(Shared {
        addr,
        stop: AtomicBool::new(false),
        target: OnceLock::new(),
        deadline: Instant::now() + RUN + SETTLE,
        abort: AtomicBool::new(false),
        ledger: Ledger::default(),
    });

    // Subscribers first, connected before any vote (and one joining in the middle).
    let mut subs: Vec<(String, JoinHandle<View>)> = Vec::new();
    for i in 0..2 {
        let ws = ws_connect(addr, "/get_new_vote");
        let s = Arc::clone(&shared);
        subs.push((format!("ws{i}"), spawn(move || ws_subscriber(ws, &s))));
        let sse = open_sse(addr, "/events");
        let s = Arc::clone(&shared);
        subs.push((format!("sse{i}"), spawn(move || sse_subscriber(sse, &s))));
        let s = Arc::clone(&shared);
        subs.push((format!("longpoll{i}"), spawn(move || long_poller(&s))));
        let s = Arc::clone(&shared);
        subs.push((format!("poll{i}"), spawn(move || poller(&s))));
    }
    let s = Arc::clone(&shared);
    subs.push((
        "ws-late".into(),
        spawn(move || {
            thread::sleep(RUN / 2);
            ws_subscriber(ws_connect(s.addr, "/get_new_vote?since=0"), &s)
        }),
    ));
    let s = Arc::clone(&shared);
    subs.push((
        "sse-late".into(),
        spawn(move || {
            thread::sleep(RUN / 2);
            sse_subscriber(open_sse(s.addr, "/events?since=0"), &s)
        }),
    ));

    // Voters.
    let mut voters: Vec<JoinHandle<()>> = Vec::new();
    for (tag, route, field) in [
        ("v0", "/vote", "uid"),
        ("v1", "/vote", "uid"),
        ("t0", "/ticket", "nid"),
    ] {
        let s = Arc::clone(&shared);
        voters.push(spawn(move || http_voter(&s, tag, route, field)));
    }
    for tag in ["w0", "w1"] {
        let s = Arc::clone(&shared);
        voters.push(spawn(move || ws_voter(&s, tag)));
    }
    let s = Arc::clone(&shared);
    voters.push(spawn(move || http_racer(&s, "rh")));
    let s = Arc::clone(&shared);
    voters.push(spawn(move || ws_racer(&s, "rw")));

    thread::sleep(RUN);
    shared.stop.store(true, Ordering::SeqCst);
    let mut panics = Vec::new();
    for v in voters {
        if let Err(e) = v.join() {
            panics.push(panic_text(e));
        }
    }
    if !panics.is_empty() {
        shared.abort.store(true, Ordering::SeqCst);
        panic!("voters failed: {panics:#?}");
    }

    // The final tally: exactly the acknowledged votes.
    let (version, counts) = version_counts(addr);
    let ledger = &shared.ledger;
    let answers = ledger.answers.lock().unwrap();
    let distinct = answers.len() as u64;
    let anonymous = ledger.anonymous.load(Ordering::SeqCst);
    let sends = ledger.answered_sends.load(Ordering::SeqCst);
    let total: u64 = counts.values().sum();
    eprintln!(
        "load ({}): {distinct} vote ids, {} answers to them, {anonymous} votes without an id, \
         {} WebSocket replays; version {version}",
        if durable { "durable" } else { "memory" },
        sends,
        ledger.ws_replayed.load(Ordering::SeqCst)
    );
    assert!(distinct > 0 && anonymous > 0 && sends > distinct);
    assert_eq!(
        total,
        distinct + anonymous,
        "the tally is the distinct acknowledged vote ids plus the votes without one"
    );
    assert_eq!(version, total, "one version per vote");
    // No two vote ids were given the same version.
    let versions: HashSet<u64> = answers.values().map(|a| a.version).collect();
    assert_eq!(
        versions.len() as u64,
        distinct,
        "two vote ids share a version"
    );
    assert!(versions.iter().all(|&v| (1..=version).contains(&v)));
    drop(answers);
    // Every repeated send was a replay, and the metrics agree with the tally.
    assert_eq!(
        metric(addr, "livevote_vote_replays_total"),
        sends - distinct
    );
    assert_eq!(metric(addr, "livevote_votes_total"), total);

    // Every subscriber ends on the final version with exactly the final counts.
    shared
        .target
        .set((version, counts.clone()))
        .expect("the target is set once");
    let mut failures = Vec::new();
    for (name, h) in subs {
        match h.join() {
            Ok(view) => {
                eprintln!("  {name}: {} updates", view.updates);
                if view.version != version || view.counts != counts {
                    failures.push(format!(
                        "{name} ended at version {} with {:?} ({} updates); the tally is \
                         version {version} with {counts:?}",
                        view.version, view.counts, view.updates
                    ));
                }
            }
            Err(e) => failures.push(format!("{name} failed: {}", panic_text(e))),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .expect("spawn a test thread")
}

fn panic_text(e: Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic".into())
}

// ---------------------------------------------------------------------------------------------
// What the threads share

struct Shared {
    addr: SocketAddr,
    /// Voters stop when set.
    stop: AtomicBool,
    /// The final (version, counts), once the voters have stopped.
    target: OnceLock<(u64, BTreeMap<String, u64>)>,
    /// Subscribers give up (and report where they are) after this.
    deadline: Instant,
    /// Set when the voters failed: subscribers stop at once.
    abort: AtomicBool,
    ledger: Ledger,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// A subscriber at `view` is done: it reached the final version, or ran out of time.
    fn done(&self, view: &View) -> bool {
        self.target.get().is_some_and(|t| view.version >= t.0)
            || self.abort.load(Ordering::SeqCst)
            || Instant::now() > self.deadline
    }
}

/// One answer to a vote: candidate `uid` has `count` votes as of `version`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Answer {
    uid: String,
    count: u64,
    version: u64,
}

impl Answer {
    fn of(j: &Json) -> Answer {
        Answer {
            uid: j["uid"].as_str().to_string(),
            count: j["count"].as_u64(),
            version: j["version"].as_u64(),
        }
    }
}

#[derive(Default)]
struct Ledger {
    /// The answer to each acknowledged vote id; every later answer to it must be the same.
    answers: Mutex<HashMap<String, Answer>>,
    /// Answered sends of a vote id, first ones and retries.
    answered_sends: AtomicU64,
    /// Acknowledged votes without a vote id.
    anonymous: AtomicU64,
    /// WebSocket acks marked `replayed`.
    ws_replayed: AtomicU64,
}

impl Ledger {
    fn record(&self, vote_id: &str, uid: &str, a: Answer) {
        assert_eq!(a.uid, uid, "{vote_id}: answered for another candidate");
        self.answered_sends.fetch_add(1, Ordering::SeqCst);
        let mut answers = self.answers.lock().unwrap();
        match answers.get(vote_id) {
            Some(first) => assert_eq!(first, &a, "two different answers to vote id {vote_id}"),
            None => {
                answers.insert(vote_id.to_string(), a);
            }
        }
    }

    fn anonymous(&self) {
        self.anonymous.fetch_add(1, Ordering::SeqCst);
    }
}

/// Which candidate the n-th vote of a voter is for.
fn candidate(n: u64) -> &'static str {
    ["1", "2"][(n % 3 % 2) as usize]
}

// ---------------------------------------------------------------------------------------------
// Voters

/// Votes on one keep-alive connection: every 9th vote without an id, every 10th sent twice.
fn http_voter(s: &Shared, tag: &str, route: &str, field: &str) {
    let mut c = Client::connect(s.addr);
    let mut n = 0u64;
    while !s.stopping() {
        n += 1;
        let uid = candidate(n);
        if n.is_multiple_of(9) {
            let r = c.call(post_req(route, &format!("{field}={uid}")));
            assert_eq!(r.status, 200, "{route} {uid}: {}", r.text());
            assert_eq!(Answer::of(&r.json()).uid, uid);
            s.ledger.anonymous();
            continue;
        }
        let id = format!("{tag}-{n}");
        let req = post_req(route, &format!("{field}={uid}&vote_id={id}"));
        for _ in 0..if n.is_multiple_of(10) { 2 } else { 1 } {
            let r = c.call(&req);
            assert_eq!(r.status, 200, "{route} {id}: {}", r.text());
            s.ledger.record(&id, uid, Answer::of(&r.json()));
        }
    }
}

/// Votes over a WebSocket with `{"uid":…,"vote_id":…}` and waits for each ack; every 9th
/// time a plain vote (no ack) goes first, acknowledged by the next ack since the server handles
/// one socket's messages in order; every 10th vote is sent twice and must be a replay.
fn ws_voter(s: &Shared, tag: &str) {
    let mut ws = ws_connect(s.addr, "/get_new_vote");
    let mut n = 0u64;
    while !s.stopping() {
        n += 1;
        let uid = candidate(n);
        let plain = n.is_multiple_of(9);
        if plain {
            ws.send(Message::Text(uid.into())).expect("send a vote");
        }
        let id = format!("{tag}-{n}");
        let retry = n.is_multiple_of(10);
        for attempt in 0..if retry { 2 } else { 1 } {
            ws.send(Message::Text(vote_message(uid, &id)))
                .expect("send a vote");
            let (replayed, a) = read_ack(&mut ws, &id);
            assert_eq!(replayed, attempt > 0, "{id}: replayed on attempt {attempt}");
            if replayed {
                s.ledger.ws_replayed.fetch_add(1, Ordering::SeqCst);
            }
            s.ledger.record(&id, uid, a);
        }
        if plain {
            s.ledger.anonymous();
        }
    }
    let _ = ws.close(None);
}

/// The same vote id at the same moment on two connections: `POST /vote` and `POST /ticket`.
fn http_racer(s: &Shared, tag: &str) {
    let mut a = Client::connect(s.addr);
    let mut b = Client::connect(s.addr);
    let mut n = 0u64;
    while !s.stopping() {
        n += 1;
        let uid = candidate(n);
        let id = format!("{tag}-{n}");
        a.send(post_req("/vote", &format!("uid={uid}&vote_id={id}")));
        b.send(post_req("/ticket", &format!("nid={uid}&vote_id={id}")));
        for c in [&mut a, &mut b] {
            let r = c.read_response_to("POST");
            assert_eq!(r.status, 200, "{id}: {}", r.text());
            s.ledger.record(&id, uid, Answer::of(&r.json()));
        }
    }
}

/// The same vote id at the same moment over `POST /vote` and a WebSocket.
fn ws_racer(s: &Shared, tag: &str) {
    let mut a = Client::connect(s.addr);
    let mut ws = ws_connect(s.addr, "/get_new_vote");
    let mut n = 0u64;
    while !s.stopping() {
        n += 1;
        let uid = candidate(n);
        let id = format!("{tag}-{n}");
        a.send(post_req("/vote", &format!("uid={uid}&vote_id={id}")));
        ws.send(Message::Text(vote_message(uid, &id)))
            .expect("send a vote");
        let r = a.read_response_to("POST");
        assert_eq!(r.status, 200, "{id}: {}", r.text());
        s.ledger.record(&id, uid, Answer::of(&r.json()));
        let (replayed, ack) = read_ack(&mut ws, &id);
        if replayed {
            s.ledger.ws_replayed.fetch_add(1, Ordering::SeqCst);
        }
        s.ledger.record(&id, uid, ack);
    }
    let _ = ws.close(None);
}

/// Reads until the ack for `vote_id`, skipping broadcasts; any other ack or an error fails.
fn read_ack(ws: &mut Ws, vote_id: &str) -> (bool, Answer) {
    let j = ws_next_of_type(ws, "ack");
    assert_eq!(
        j["vote_id"].as_str(),
        vote_id,
        "ack for another vote: {j:?}"
    );
    (j["replayed"].as_bool(), Answer::of(&j))
}

// ---------------------------------------------------------------------------------------------
// Subscribers

/// What a subscriber knows of the tally.
#[derive(Debug, Default)]
struct View {
    version: u64,
    counts: BTreeMap<String, u64>,
    updates: u64,
}

impl View {
    /// Replaces everything with a whole tally's `candidates`.
    fn replace(&mut self, version: u64, candidates: &Json, what: &str) {
        assert!(
            version >= self.version,
            "{what}: a snapshot went back from {} to {version}",
            self.version
        );
        self.counts = uid_counts(candidates);
        self.version = version;
        self.updates += 1;
    }

    /// Sets the counts of the candidates in `changes`.
    fn merge(&mut self, version: u64, changes: &Json, what: &str) {
        assert!(
            version >= self.version,
            "{what}: went back from {} to {version}",
            self.version
        );
        self.counts.extend(uid_counts(changes));
        self.version = version;
        self.updates += 1;
    }

    /// One vote: it must be the next version, and its candidate's count one more.
    fn vote(&mut self, j: &Json, what: &str) {
        let a = Answer::of(j);
        assert_eq!(
            a.version,
            self.version + 1,
            "{what}: vote out of sequence: {j:?}"
        );
        let before = self.counts.get(&a.uid).copied().unwrap_or(0);
        assert_eq!(a.count, before + 1, "{what}: a vote's count skipped: {j:?}");
        self.counts.insert(a.uid, a.count);
        self.version = a.version;
        self.updates += 1;
    }

    /// A WebSocket or SSE message (docs/PROTOCOL.md).
    fn apply(&mut self, j: &Json, what: &str) {
        match &j["type"] {
            Json::Str(t) if t == "presence" => {}
            Json::Str(t) if t == "resume" => {
                let to = j["to"].as_u64();
                match j["kind"].as_str() {
                    "snapshot" => self.replace(to, &j["candidates"], what),
                    "delta" => self.merge(to, &j["changes"], what),
                    "live" => self.merge(to, &Json::Arr(Vec::new()), what),
                    other => panic!("{what}: resume kind {other}"),
                }
            }
            Json::Str(t) if t == "snapshot" => {
                self.replace(j["version"].as_u64(), &j["candidates"], what)
            }
            Json::Null => self.vote(j, what),
            _ => panic!("{what}: unexpected message {j:?}"),
        }
    }
}

fn ws_subscriber(mut ws: Ws, s: &Shared) -> View {
    ws.get_ref().set_read_timeout(Some(TICK)).unwrap();
    let mut view = View::default();
    while !s.done(&view) {
        if let Some(j) = ws_try_next_json(&mut ws) {
            view.apply(&j, "ws");
        }
    }
    let _ = ws.close(None);
    view
}

/// `GET target` as an event stream, checked to be one.
fn open_sse(addr: SocketAddr, target: &str) -> EventStream {
    let sse = open_events(addr, target, "");
    assert!(sse
        .head
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/event-stream")));
    sse
}

fn sse_subscriber(mut sse: EventStream, s: &Shared) -> View {
    sse.read_timeout(TICK);
    let mut view = View::default();
    let mut epoch = String::new();
    while !s.done(&view) {
        // None: a comment or `retry:` alone, or no event within a tick (an event cut by the
        // timeout is finished by the next read).
        let e = match sse.block() {
            Ok(e) => e,
            Err(e) if is_timeout(&e) => None,
            Err(e) => panic!("sse: {e}"),
        };
        let Some(e) = e else {
            continue;
        };
        assert_eq!(e.event, None, "sse: an unnamed event: {e:?}");
        let j = e.json();
        if let Json::Str(ep) = &j["epoch"] {
            epoch = ep.clone();
        }
        view.apply(&j, "sse");
        if j["type"] != Json::Str("presence".into()) {
            assert_eq!(
                e.id,
                Some(format!("{epoch}-{}", view.version)),
                "sse: the event id is the cursor: {}",
                e.data
            );
        }
    }
    view
}

/// Long-polls with `since=` (and the epoch once known) on one keep-alive connection.
fn long_poller(s: &Shared) -> View {
    let mut c = Client::connect(s.addr);
    let mut view = View::default();
    let mut epoch: Option<String> = None;
    while !s.done(&view) {
        let path = match &epoch {
            Some(e) => format!("/get_new_vote?since={}&epoch={e}", view.version),
            None => format!("/get_new_vote?since={}", view.version),
        };
        let r = c.call(get_req(&path));
        assert_eq!(r.status, 200, "longpoll: {}", r.text());
        let j = r.json();
        epoch = Some(j["epoch"].as_str().to_string());
        if j["status"].as_bool() {
            let version = j["version"].as_u64();
            match j["kind"].as_str() {
                "snapshot" => view.replace(version, &j["changes"], "longpoll"),
                _ => {
                    assert_eq!(j["from"].as_u64(), view.version, "longpoll: {j:?}");
                    view.merge(version, &j["changes"], "longpoll")
                }
            }
        } else {
            assert!(j["version"].as_u64() >= view.version, "longpoll: {j:?}");
        }
    }
    view
}

/// Polls `/votes` with `If-None-Match`; a `304` means nothing changed.
fn poller(s: &Shared) -> View {
    let mut c = Client::connect(s.addr);
    let mut view = View::default();
    let mut etag: Option<String> = None;
    while !s.done(&view) {
        let extra = etag
            .as_ref()
            .map_or(String::new(), |e| format!("If-None-Match: {e}\r\n"));
        let r = c.call(get_req_with("/votes?transport=poll", &extra));
        match r.status {
            304 => assert!(etag.is_some()),
            200 => {
                let j = r.json();
                view.replace(j["version"].as_u64(), &j["candidates"], "poll");
                etag = Some(r.header("etag").expect("an ETag").to_string());
            }
            other => panic!("poll: {other} {}", r.text()),
        }
        thread::sleep(Duration::from_millis(10));
    }
    view
}
