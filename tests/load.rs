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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use livevote::config::{Config, Limits};
use livevote::server::Server;
use tungstenite::Message;

/// How long the voters vote.
const RUN: Duration = Duration::from_secs(2);
/// Bound on subscribers reaching the final version after the voters stop.
const SETTLE: Duration = Duration::from_secs(15);
/// Hang guard on every client socket.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
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
    run_load(Some(dir.0.join("votes.journal")));
}

fn run_load(data: Option<PathBuf>) {
    let durable = data.is_some();
    let config = Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        www: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("www"),
        access_log: false,
        longpoll_timeout: Duration::from_millis(500),
        data,
        limits: Limits {
            max_connections_per_ip: 0,
            ..Limits::default()
        },
        ..Config::default()
    };
    let addr = Server::bind(config)
        .expect("bind")
        .spawn()
        .expect("start the server");
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
        let sse = Sse::open(addr, "/events");
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
            sse_subscriber(Sse::open(s.addr, "/events?since=0"), &s)
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
    let (version, counts) = tally(addr);
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
        metric_sum(addr, "livevote_vote_replays_total"),
        sends - distinct
    );
    assert_eq!(metric_sum(addr, "livevote_votes_total"), total);

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
            uid: j["uid"].str().to_string(),
            count: j["count"].u64(),
            version: j["version"].u64(),
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
    let mut c = Conn::connect(s.addr).expect("connect");
    let mut n = 0u64;
    while !s.stopping() {
        n += 1;
        let uid = candidate(n);
        if n.is_multiple_of(9) {
            let r = c.call(&post_req(route, &format!("{field}={uid}")));
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
    let mut a = Conn::connect(s.addr).expect("connect");
    let mut b = Conn::connect(s.addr).expect("connect");
    let mut n = 0u64;
    while !s.stopping() {
        n += 1;
        let uid = candidate(n);
        let id = format!("{tag}-{n}");
        a.send(&post_req("/vote", &format!("uid={uid}&vote_id={id}")));
        b.send(&post_req("/ticket", &format!("nid={uid}&vote_id={id}")));
        for c in [&mut a, &mut b] {
            let r = c.read();
            assert_eq!(r.status, 200, "{id}: {}", r.text());
            s.ledger.record(&id, uid, Answer::of(&r.json()));
        }
    }
}

/// The same vote id at the same moment over `POST /vote` and a WebSocket.
fn ws_racer(s: &Shared, tag: &str) {
    let mut a = Conn::connect(s.addr).expect("connect");
    let mut ws = ws_connect(s.addr, "/get_new_vote");
    let mut n = 0u64;
    while !s.stopping() {
        n += 1;
        let uid = candidate(n);
        let id = format!("{tag}-{n}");
        a.send(&post_req("/vote", &format!("uid={uid}&vote_id={id}")));
        ws.send(Message::Text(vote_message(uid, &id)))
            .expect("send a vote");
        let r = a.read();
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

fn vote_message(uid: &str, vote_id: &str) -> String {
    format!("{{\"uid\":\"{uid}\",\"vote_id\":\"{vote_id}\"}}")
}

/// Reads until the ack for `vote_id`, skipping broadcasts; any other ack or an error fails.
fn read_ack(ws: &mut Ws, vote_id: &str) -> (bool, Answer) {
    loop {
        let j = ws_next_json(ws).expect("the socket stays open");
        match &j["type"] {
            Json::Str(t) if t == "ack" => {
                assert_eq!(j["vote_id"].str(), vote_id, "ack for another vote: {j:?}");
                return (j["replayed"].bool(), Answer::of(&j));
            }
            Json::Str(t) if t == "error" => panic!("{vote_id}: {j:?}"),
            _ => {}
        }
    }
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
                let to = j["to"].u64();
                match j["kind"].str() {
                    "snapshot" => self.replace(to, &j["candidates"], what),
                    "delta" => self.merge(to, &j["changes"], what),
                    "live" => self.merge(to, &Json::Arr(Vec::new()), what),
                    other => panic!("{what}: resume kind {other}"),
                }
            }
            Json::Str(t) if t == "snapshot" => {
                self.replace(j["version"].u64(), &j["candidates"], what)
            }
            Json::Null => self.vote(j, what),
            _ => panic!("{what}: unexpected message {j:?}"),
        }
    }
}

fn uid_counts(list: &Json) -> BTreeMap<String, u64> {
    list.items()
        .iter()
        .map(|c| (c["uid"].str().to_string(), c["count"].u64()))
        .collect()
}

fn ws_subscriber(mut ws: Ws, s: &Shared) -> View {
    ws.get_ref().set_read_timeout(Some(TICK)).unwrap();
    let mut view = View::default();
    while !s.done(&view) {
        if let Some(j) = ws_next_json(&mut ws) {
            view.apply(&j, "ws");
        }
    }
    let _ = ws.close(None);
    view
}

fn sse_subscriber(mut sse: Sse, s: &Shared) -> View {
    sse.conn.stream.set_read_timeout(Some(TICK)).unwrap();
    let mut view = View::default();
    let mut epoch = String::new();
    while !s.done(&view) {
        let Some((id, data)) = sse.next_event() else {
            continue;
        };
        let j = Json::parse(&data).unwrap_or_else(|| panic!("sse: not JSON: {data}"));
        if let Json::Str(e) = &j["epoch"] {
            epoch = e.clone();
        }
        view.apply(&j, "sse");
        if j["type"] != Json::Str("presence".into()) {
            assert_eq!(
                id,
                Some(format!("{epoch}-{}", view.version)),
                "sse: the event id is the cursor: {data}"
            );
        }
    }
    view
}

/// Long-polls with `since=` (and the epoch once known) on one keep-alive connection.
fn long_poller(s: &Shared) -> View {
    let mut c = Conn::connect(s.addr).expect("connect");
    let mut view = View::default();
    let mut epoch: Option<String> = None;
    while !s.done(&view) {
        let path = match &epoch {
            Some(e) => format!("/get_new_vote?since={}&epoch={e}", view.version),
            None => format!("/get_new_vote?since={}", view.version),
        };
        let r = c.call(&get_req(&path, ""));
        assert_eq!(r.status, 200, "longpoll: {}", r.text());
        let j = r.json();
        epoch = Some(j["epoch"].str().to_string());
        if j["status"].bool() {
            let version = j["version"].u64();
            match j["kind"].str() {
                "snapshot" => view.replace(version, &j["changes"], "longpoll"),
                _ => {
                    assert_eq!(j["from"].u64(), view.version, "longpoll: {j:?}");
                    view.merge(version, &j["changes"], "longpoll")
                }
            }
        } else {
            assert!(j["version"].u64() >= view.version, "longpoll: {j:?}");
        }
    }
    view
}

/// Polls `/votes` with `If-None-Match`; a `304` means nothing changed.
fn poller(s: &Shared) -> View {
    let mut c = Conn::connect(s.addr).expect("connect");
    let mut view = View::default();
    let mut etag: Option<String> = None;
    while !s.done(&view) {
        let extra = etag
            .as_ref()
            .map_or(String::new(), |e| format!("If-None-Match: {e}\r\n"));
        let r = c.call(&get_req("/votes?transport=poll", &extra));
        match r.status {
            304 => assert!(etag.is_some()),
            200 => {
                let j = r.json();
                view.replace(j["version"].u64(), &j["candidates"], "poll");
                etag = Some(r.header("etag").expect("an ETag").to_string());
            }
            other => panic!("poll: {other} {}", r.text()),
        }
        thread::sleep(Duration::from_millis(10));
    }
    view
}

// ---------------------------------------------------------------------------------------------
// WebSocket through tungstenite

type Ws = tungstenite::WebSocket<TcpStream>;

fn ws_connect(addr: SocketAddr, path: &str) -> Ws {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    let (ws, resp) =
        tungstenite::client(format!("ws://{addr}{path}"), stream).expect("WebSocket handshake");
    assert_eq!(resp.status(), 101);
    ws
}

/// The next text message as JSON; None when the read timed out (the socket stays usable).
fn ws_next_json(ws: &mut Ws) -> Option<Json> {
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => {
                return Some(Json::parse(&t).unwrap_or_else(|| panic!("not JSON: {t}")))
            }
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Ok(other) => panic!("unexpected WebSocket message {other:?}"),
            Err(tungstenite::Error::Io(e)) if is_timeout(&e) => return None,
            Err(e) => panic!("WebSocket read: {e}"),
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

// ---------------------------------------------------------------------------------------------
// HTTP and Server-Sent Events over raw TCP

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Json {
        Json::parse(&self.text()).unwrap_or_else(|| panic!("not JSON: {}", self.text()))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
        })
    }

    fn send(&mut self, request: &str) {
        self.stream
            .write_all(request.as_bytes())
            .expect("write a request");
    }

    /// More bytes into the buffer; false at the end of the stream, None on a read timeout.
    fn fill(&mut self) -> Option<bool> {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Some(n > 0)
            }
            Err(e) if is_timeout(&e) => None,
            Err(e) => panic!("read: {e}"),
        }
    }

    /// The next response head; the body stays in the buffer.
    fn head(&mut self) -> Resp {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            match self.fill() {
                Some(true) => {}
                Some(false) => panic!("the server closed before a response"),
                None => panic!("no response within {IO_TIMEOUT:?}"),
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line: {head}"));
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        Resp {
            status,
            headers,
            body: Vec::new(),
        }
    }

    /// The next response, its body read by `Content-Length` (none for a `304`).
    fn read(&mut self) -> Resp {
        let mut r = self.head();
        if r.status == 304 {
            return r;
        }
        let len: usize = r
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no Content-Length: {:?}", r.headers));
        while self.buf.len() < len {
            assert_eq!(self.fill(), Some(true), "the body of a response");
        }
        r.body = self.buf.drain(..len).collect();
        r
    }

    fn call(&mut self, request: &str) -> Resp {
        self.send(request);
        self.read()
    }
}

fn post_req(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn get_req(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n")
}

fn tally(addr: SocketAddr) -> (u64, BTreeMap<String, u64>) {
    let r = Conn::connect(addr)
        .expect("connect")
        .call(&get_req("/votes", ""));
    assert_eq!(r.status, 200);
    let j = r.json();
    (j["version"].u64(), uid_counts(&j["candidates"]))
}

/// The sum of a metric's samples (all label sets).
fn metric_sum(addr: SocketAddr, name: &str) -> u64 {
    let r = Conn::connect(addr)
        .expect("connect")
        .call(&get_req("/metrics", ""));
    let text = r.text();
    let samples: Vec<u64> = text
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .map(|l| {
            let value = l.rsplit(' ').next().unwrap_or_default();
            value.parse().unwrap_or_else(|_| panic!("{l}"))
        })
        .collect();
    assert!(!samples.is_empty(), "no {name} in /metrics:\n{text}");
    samples.iter().sum()
}

/// An open `GET /events` stream.
struct Sse {
    conn: Conn,
}

impl Sse {
    fn open(addr: SocketAddr, target: &str) -> Sse {
        let mut conn = Conn::connect(addr).expect("connect");
        conn.send(&get_req(target, "Accept: text/event-stream\r\n"));
        let head = conn.head();
        assert_eq!(head.status, 200);
        assert!(head
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream")));
        Sse { conn }
    }

    /// The next event as (id, data), or None if the read timed out first or the block had no
    /// data (a comment, `retry:`). An event split by a timeout is kept for the next call.
    fn next_event(&mut self) -> Option<(Option<String>, String)> {
        loop {
            if let Some(end) = self.conn.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.conn.buf.drain(..end + 2).collect();
                let block = String::from_utf8(block).expect("UTF-8 events");
                let (mut id, mut data) = (None, None::<String>);
                for line in block.lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "" | "retry" => {}
                        "id" => id = Some(value.to_string()),
                        "data" => data = Some(value.to_string()),
                        other => panic!("unknown SSE field {other:?}"),
                    }
                }
                return data.map(|d| (id, d));
            }
            match self.conn.fill() {
                Some(true) => {}
                Some(false) => panic!("the event stream ended"),
                None => return None,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A temporary directory, removed when dropped.

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{tag}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// A small JSON reader (RFC 8259), independent of the server's writer.

#[derive(Clone, Debug, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

static NULL: Json = Json::Null;

impl std::ops::Index<&str> for Json {
    type Output = Json;
    fn index(&self, key: &str) -> &Json {
        match self {
            Json::Obj(f) => f.iter().find(|(k, _)| k == key).map_or(&NULL, |(_, v)| v),
            _ => &NULL,
        }
    }
}

impl Json {
    fn parse(s: &str) -> Option<Json> {
        let b = s.as_bytes();
        let mut i = 0;
        let v = json_value(b, &mut i)?;
        skip_ws(b, &mut i);
        (i == b.len()).then_some(v)
    }

    fn u64(&self) -> u64 {
        match self {
            Json::Num(n) if *n >= 0.0 && n.fract() == 0.0 => *n as u64,
            other => panic!("not a whole number: {other:?}"),
        }
    }

    fn str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            other => panic!("not a string: {other:?}"),
        }
    }

    fn bool(&self) -> bool {
        match self {
            Json::Bool(b) => *b,
            other => panic!("not a boolean: {other:?}"),
        }
    }

    fn items(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            other => panic!("not an array: {other:?}"),
        }
    }
}

fn skip_ws(b: &[u8], i: &mut usize) {
    while *i < b.len() && b" \t\r\n".contains(&b[*i]) {
        *i += 1;
    }
}

fn json_value(b: &[u8], i: &mut usize) -> Option<Json> {
    skip_ws(b, i);
    let lit = |i: &mut usize, word: &[u8], v: Json| {
        b[*i..].starts_with(word).then(|| {
            *i += word.len();
            v
        })
    };
    match *b.get(*i)? {
        b'n' => lit(i, b"null", Json::Null),
        b't' => lit(i, b"true", Json::Bool(true)),
        b'f' => lit(i, b"false", Json::Bool(false)),
        b'"' => json_string(b, i).map(Json::Str),
        b'[' => {
            *i += 1;
            let mut items = Vec::new();
            skip_ws(b, i);
            if b.get(*i) == Some(&b']') {
                *i += 1;
                return Some(Json::Arr(items));
            }
            loop {
                items.push(json_value(b, i)?);
                skip_ws(b, i);
                match b.get(*i)? {
                    b',' => *i += 1,
                    b']' => {
                        *i += 1;
                        return Some(Json::Arr(items));
                    }
                    _ => return None,
                }
            }
        }
        b'{' => {
            *i += 1;
            let mut fields = Vec::new();
            skip_ws(b, i);
            if b.get(*i) == Some(&b'}') {
                *i += 1;
                return Some(Json::Obj(fields));
            }
            loop {
                skip_ws(b, i);
                let k = json_string(b, i)?;
                skip_ws(b, i);
                (b.get(*i)? == &b':').then_some(())?;
                *i += 1;
                let v = json_value(b, i)?;
                if fields.iter().any(|(f, _)| f == &k) {
                    return None; // a duplicate key
                }
                fields.push((k, v));
                skip_ws(b, i);
                match b.get(*i)? {
                    b',' => *i += 1,
                    b'}' => {
                        *i += 1;
                        return Some(Json::Obj(fields));
                    }
                    _ => return None,
                }
            }
        }
        _ => {
            let start = *i;
            while *i < b.len() && b"+-.eE0123456789".contains(&b[*i]) {
                *i += 1;
            }
            std::str::from_utf8(&b[start..*i])
                .ok()?
                .parse()
                .ok()
                .map(Json::Num)
        }
    }
}

fn json_string(b: &[u8], i: &mut usize) -> Option<String> {
    (b.get(*i)? == &b'"').then_some(())?;
    *i += 1;
    let mut out = Vec::new();
    loop {
        match *b.get(*i)? {
            b'"' => {
                *i += 1;
                return String::from_utf8(out).ok();
            }
            b'\\' => {
                let c = *b.get(*i + 1)?;
                *i += 2;
                let ch = match c {
                    b'"' => '"',
                    b'\\' => '\\',
                    b'/' => '/',
                    b'b' => '\u{8}',
                    b'f' => '\u{c}',
                    b'n' => '\n',
                    b'r' => '\r',
                    b't' => '\t',
                    b'u' => {
                        let hex = std::str::from_utf8(b.get(*i..*i + 4)?).ok()?;
                        *i += 4;
                        char::from_u32(u32::from_str_radix(hex, 16).ok()?).unwrap_or('\u{fffd}')
                    }
                    _ => return None,
                };
                let mut tmp = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
            }
            c if c < 0x20 => return None,
            c => {
                out.push(c);
                *i += 1;
            }
        }
    }
}
