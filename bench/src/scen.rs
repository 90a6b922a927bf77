//! The scenarios. Each one runs against a server that was just started for it, on
//! 127.0.0.1 only, bounded in count and in time (the caller wraps it in a timeout).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::http::{self, find, json_str, json_u64};
use crate::report::{bad, count, kib, ms, pct, rate, us, RunResult};
use crate::sys::{self, Info};

/// Handshakes in flight at once while opening many connections.
const CONNECT_CONCURRENCY: usize = 128;

pub type Ws = WebSocketStream<TcpStream>;

/// Shared knobs (from the environment, see main).
#[derive(Clone, Debug)]
pub struct Knobs {
    pub votes: usize,
    pub vote_interval: Duration,
    pub http_seconds: f64,
    pub capacity_max: usize,
    pub capacity_step: usize,
}

fn ns_since(t0: Instant) -> u64 {
    t0.elapsed().as_nanos() as u64
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig {
        write_buffer_size: 0,
        ..Default::default()
    }
}

/// Opens a WebSocket to `path`; errors are short descriptions, grouped later.
pub async fn ws_connect(port: u16, path: &str) -> Result<Ws, String> {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| describe_io(&e))?;
    ws_handshake(tcp, port, path).await
}

/// The client handshake on a connected socket.
async fn ws_handshake(tcp: TcpStream, port: u16, path: &str) -> Result<Ws, String> {
    let _ = tcp.set_nodelay(true);
    let url = format!("ws://127.0.0.1:{port}{path}");
    match tokio_tungstenite::client_async_with_config(url, tcp, Some(ws_config())).await {
        Ok((ws, _)) => Ok(ws),
        Err(WsError::Http(resp)) => Err(format!("HTTP {}", resp.status().as_u16())),
        Err(WsError::Io(e)) => Err(describe_io(&e)),
        Err(e) => Err(format!("handshake: {e}")),
    }
}

fn describe_io(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => format!("{} (os error {code})", e.kind()),
        None => format!("{}", e.kind()),
    }
}

/// Groups error descriptions: "HTTP 503 ×384, connection reset ×2".
fn group(errors: &[String]) -> String {
    let mut m: HashMap<&str, usize> = HashMap::new();
    for e in errors {
        *m.entry(e.as_str()).or_default() += 1;
    }
    let mut v: Vec<_> = m.into_iter().collect();
    v.sort_by_key(|x| std::cmp::Reverse(x.1));
    v.iter()
        .map(|(e, n)| format!("{e} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How a received message advances what a subscriber has seen.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// One vote, by its version.
    Exact,
    /// Everything up to this version (a resume, or a long-poll answer).
    Upto,
    /// Everything up to this version, as one coalesced snapshot.
    Snapshot,
}

/// Classifies a livevote/peer JSON message: (version, how).
/// The viewer total of a livevote presence message.
fn presence_total(text: &[u8]) -> Option<u64> {
    if text.starts_with(b"{\"type\":\"presence\"") {
        json_u64(text, "total")
    } else {
        None
    }
}

fn classify(text: &[u8]) -> Option<(u64, Seen)> {
    if text.starts_with(b"{\"uid\"") {
        return json_u64(text, "version").map(|v| (v, Seen::Exact));
    }
    if text.starts_with(b"{\"type\":\"snapshot\"") {
        return json_u64(text, "version").map(|v| (v, Seen::Snapshot));
    }
    if text.starts_with(b"{\"type\":\"resume\"") {
        return json_u64(text, "to").map(|v| (v, Seen::Upto));
    }
    None
}

/// Per-subscriber record: (version, ns since t0, how).
type Events = Vec<(u64, u64, Seen)>;

/// Latency from each vote to its delivery at every subscriber, and what never arrived.
fn delivery_metrics(sends: &[(u64, u64)], subs: &[Events], wanted: usize) -> RunResult {
    let index: HashMap<u64, usize> = sends.iter().enumerate().map(|(k, s)| (s.0, k)).collect();
    let mut lat = Vec::with_capacity(sends.len() * subs.len());
    let mut missing = 0usize;
    let mut coalesced = 0usize;
    let mut last_delivery = vec![0u64; sends.len()];
    for events in subs {
        let mut got: Vec<Option<u64>> = vec![None; sends.len()];
        for &(v, t, how) in events {
            match how {
                Seen::Exact => {
                    if let Some(&k) = index.get(&v) {
                        if got[k].is_none() {
                            got[k] = Some(t);
                        }
                    }
                }
                Seen::Upto | Seen::Snapshot => {
                    for (k, s) in sends.iter().enumerate() {
                        if s.0 <= v && got[k].is_none() {
                            got[k] = Some(t);
                            if how == Seen::Snapshot {
                                coalesced += 1;
                            }
                        }
                    }
                }
            }
        }
        for (k, g) in got.iter().enumerate() {
            match g {
                Some(t) => {
                    let l = t.saturating_sub(sends[k].1);
                    lat.push(l);
                    last_delivery[k] = last_delivery[k].max(l);
                }
                None => missing += 1,
            }
        }
    }
    lat.sort_unstable();
    last_delivery.sort_unstable();
    let connected = subs.len();
    let mut r = RunResult::default();
    r.metrics = vec![
        ms("p50", pct(&lat, 50.0)),
        ms("p99", pct(&lat, 99.0)),
        ms("max", lat.last().copied().unwrap_or(0)),
        ms("to-all p50", pct(&last_delivery, 50.0)),
        bad("missing", missing as f64),
        count("connected", connected as f64),
    ];
    if coalesced > 0 {
        r.metrics.push(bad("coalesced", coalesced as f64));
    }
    if connected < wanted {
        r.notes.push(format!(
            "only {connected} of {wanted} subscribers connected"
        ));
    }
    r
}

/// Waits until `counter` reaches `n`, polling; false on timeout.
async fn wait_for(counter: &AtomicUsize, n: usize, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while counter.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// The measured phase's CPU bookkeeping.
struct Window {
    t: Instant,
    client: f64,
    server: f64,
    machine: f64,
    pid: u32,
}

impl Window {
    fn open(pid: u32) -> Window {
        Window {
            t: Instant::now(),
            client: sys::self_cpu_s(),
            server: sys::proc_cpu_s(pid),
            machine: sys::machine_busy_s(),
            pid,
        }
    }
    fn close(&self, r: &mut RunResult) {
        r.wall_s = self.t.elapsed().as_secs_f64();
        r.client_cpu_s = sys::self_cpu_s() - self.client;
        r.server_cpu_s = sys::proc_cpu_s(self.pid) - self.server;
        let busy = sys::machine_busy_s() - self.machine;
        r.other_cpu_s = (busy - r.client_cpu_s - r.server_cpu_s).max(0.0);
    }
}

/// The counters a fan-out's subscriber tasks share with it (each task takes a clone): how many
/// are ready (subscribed), failed, done (saw version `last`), and the permits that bound the
/// handshakes in flight.
#[derive(Clone)]
struct Fanout {
    ready: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    done: Arc<AtomicUsize>,
    last: Arc<AtomicU64>,
    sem: Arc<Semaphore>,
    /// The last viewer total each subscriber was told (livevote only; 0 before any).
    totals: Arc<Vec<AtomicU64>>,
}

impl Fanout {
    fn new(n: usize) -> Self {
        Fanout {
            totals: Arc::new((0..n).map(|_| AtomicU64::new(0)).collect()),
            ready: Arc::new(AtomicUsize::new(0)),
            failed: Arc::new(AtomicUsize::new(0)),
            done: Arc::new(AtomicUsize::new(0)),
            last: Arc::new(AtomicU64::new(u64::MAX)),
            sem: Arc::new(Semaphore::new(CONNECT_CONCURRENCY)),
        }
    }

    /// Waits (10 s at most) until every connected subscriber has been told the viewer total
    /// `want`: presence changes are broadcasts too, and one still going out while the votes
    /// are measured would be measured with them. Over several instances the total settles
    /// only once each has synced with Redis, so a fixed pause would not do. Whether it
    /// settled.
    async fn presence_settled(&self, connected: usize, want: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let told = self
                .totals
                .iter()
                .filter(|t| t.load(Ordering::Relaxed) == want)
                .count();
            if told >= connected {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// After the last vote: waits (10 s at most) for every connected subscriber to have seen
    /// it, then closes the measuring window; its wall and CPU times are in the result.
    async fn close(&self, win: Window, connected: usize) -> RunResult {
        wait_for(&self.done, connected, Duration::from_secs(10)).await;
        let mut rw = RunResult::default();
        win.close(&mut rw);
        rw
    }
}

/// Stops the subscribers, gathers what they saw and measures the deliveries of `sends` to `n`
/// of them, with the window's times `rw`; also returns the subscribers' errors.
async fn finish_fanout(
    stop_tx: watch::Sender<bool>,
    handles: Vec<JoinHandle<Result<Events, String>>>,
    sends: &[(u64, u64)],
    n: usize,
    rw: &RunResult,
) -> (RunResult, Vec<String>) {
    let _ = stop_tx.send(true);
    let (subs, errors) = collect(handles).await;
    let mut r = delivery_metrics(sends, &subs, n);
    (r.wall_s, r.client_cpu_s, r.server_cpu_s, r.other_cpu_s) =
        (rw.wall_s, rw.client_cpu_s, rw.server_cpu_s, rw.other_cpu_s);
    (r, errors)
}

// ---------------------------------------------------------------------------------------------
// WebSocket fan-out

/// N subscribers on `/get_new_vote`; one more connection votes `votes` times, one vote every
/// `interval`; each delivery is timed against its vote's send time.
pub async fn ws_fanout(info: Info, n: usize, k: &Knobs) -> Result<RunResult, String> {
    let t0 = Instant::now();
    // Livevote sends a resume first; the peers have none.
    let resume = !info.target.is_peer();
    // The voter connects first, so its own presence change is published before the votes.
    let mut voter = ws_connect(info.port, "/get_new_vote")
        .await
        .map_err(|e| format!("voter: {e}"))?;
    let baseline = if resume {
        first_resume(&mut voter).await?
    } else {
        0
    };
    let fan = Fanout::new(n);
    let Fanout {
        ready,
        failed,
        last,
        ..
    } = fan.clone();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut handles: Vec<JoinHandle<Result<Events, String>>> = Vec::with_capacity(n);
    for i in 0..n {
        let Fanout {
            ready,
            failed,
            done,
            last,
            sem,
            totals,
        } = fan.clone();
        let mut stop = stop_rx.clone();
        // Spread evenly over the instances (one, or three on one Redis).
        let port = info.port_for(i);
        handles.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await.unwrap();
            let mut ws = match tokio::time::timeout(
                Duration::from_secs(20),
                ws_connect(port, "/get_new_vote"),
            )
            .await
            {
                Ok(Ok(ws)) => ws,
                Ok(Err(e)) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    return Err(e);
                }
                Err(_) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    return Err("handshake timed out".into());
                }
            };
            let mut events = Events::with_capacity(64);
            let mut is_ready = false;
            if !resume {
                is_ready = true;
                drop(permit);
                ready.fetch_add(1, Ordering::Relaxed);
            } else {
                // Hold the permit until the resume arrived: the subscription is then live.
                let mut permit = Some(permit);
                loop {
                    tokio::select! {
                        biased;
                        _ = stop.changed() => return Ok(events),
                        m = ws.next() => match m {
                            Some(Ok(Message::Text(t))) => {
                                let now = ns_since(t0);
                                if let Some(total) = presence_total(t.as_bytes()) {
                                    totals[i].store(total, Ordering::Relaxed);
                                }
                                if let Some((v, how)) = classify(t.as_bytes()) {
                                    events.push((v, now, how));
                                    if !is_ready {
                                        is_ready = true;
                                        permit.take();
                                        ready.fetch_add(1, Ordering::Relaxed);
                                        break;
                                    }
                                }
                            }
                            Some(Ok(_)) => {}
                            Some(Err(e)) => { failed.fetch_add(1, Ordering::Relaxed); return Err(format!("before resume: {e}")) }
                            None => { failed.fetch_add(1, Ordering::Relaxed); return Err("closed before resume".into()) }
                        }
                    }
                }
            }
            let _ = is_ready;
            let mut at = events.last().map_or(0, |e| e.0);
            loop {
                tokio::select! {
                    biased;
                    _ = stop.changed() => break,
                    m = ws.next() => match m {
                        Some(Ok(Message::Text(t))) => {
                            let now = ns_since(t0);
                            if let Some(total) = presence_total(t.as_bytes()) {
                                totals[i].store(total, Ordering::Relaxed);
                            }
                            if let Some((v, how)) = classify(t.as_bytes()) {
                                events.push((v, now, how));
                                at = at.max(v);
                                if at >= last.load(Ordering::Relaxed) {
                                    done.fetch_add(1, Ordering::Relaxed);
                                    break;
                                }
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => break,
                    }
                }
            }
            Ok(events)
        }));
    }
    let setup_limit = Duration::from_secs(30 + n as u64 / 200);
    let all_in = async {
        let deadline = Instant::now() + setup_limit;
        while ready.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < n
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    all_in.await;
    let connected = ready.load(Ordering::Relaxed);
    let connect_s = t0.elapsed().as_secs_f64();
    // Presence is published at most once a second: the last change goes out first. The peers
    // publish none (a pause keeps their runs as they were).
    let settled = if resume {
        // Every subscriber and the voter, over all instances.
        fan.presence_settled(connected, connected as u64 + 1).await
    } else {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        true
    };
    let win = Window::open(info.pid);
    last.store(baseline + k.votes as u64, Ordering::Relaxed);
    let mut sends = Vec::with_capacity(k.votes);
    let start = tokio::time::Instant::now();
    for i in 0..k.votes {
        tokio::time::sleep_until(start + k.vote_interval * i as u32).await;
        sends.push((baseline + 1 + i as u64, ns_since(t0)));
        voter
            .send(Message::Text("1".into()))
            .await
            .map_err(|e| format!("voter send: {e}"))?;
    }
    let rw = fan.close(win, connected).await;
    let (mut r, errors) = finish_fanout(stop_tx, handles, &sends, n, &rw).await;
    r.notes.push(format!(
        "{connected} subscribers connected in {connect_s:.1} s"
    ));
    if !settled {
        r.notes
            .push("the viewer total had not settled within 10 s".into());
    }
    if !errors.is_empty() {
        r.notes.push(format!("connect errors: {}", group(&errors)));
    }
    let _ = voter.close(None).await;
    Ok(r)
}

/// Reads until the resume message; returns its `to`.
async fn first_resume(ws: &mut Ws) -> Result<u64, String> {
    let limit = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(limit);
    loop {
        tokio::select! {
            _ = &mut limit => return Err("no resume message within 10 s".into()),
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    if let Some((v, Seen::Upto)) = classify(t.as_bytes()) {
                        return Ok(v);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("voter: {e}")),
                None => return Err("voter: closed".into()),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Long-poll and SSE fan-out (the voter uses POST /vote on a keep-alive connection)

const POST_VOTE: &[u8] = b"POST /vote HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5\r\n\r\nuid=1";

/// Votes `votes` times over POST /vote, from version `v0`; returns (version, send time) per
/// vote. Livevote answers the vote's version; the peers answer `ok`, and since this voter is the
/// only one, each of its votes is the next version.
async fn http_voter(port: u16, k: &Knobs, t0: Instant, v0: u64) -> Result<Vec<(u64, u64)>, String> {
    let mut c = http::Conn::connect(port).await?;
    let mut sends = Vec::with_capacity(k.votes);
    let start = tokio::time::Instant::now();
    let mut at = v0;
    for i in 0..k.votes {
        tokio::time::sleep_until(start + k.vote_interval * i as u32).await;
        let t = ns_since(t0);
        let rep = c.request(POST_VOTE).await?;
        if rep.status != 200 {
            return Err(format!("POST /vote: HTTP {}", rep.status));
        }
        let v = match json_u64(&rep.body, "version") {
            Some(v) => v,
            None if rep.body == b"ok" => at + 1,
            None => return Err("POST /vote: no version".into()),
        };
        at = v;
        sends.push((v, t));
    }
    Ok(sends)
}

/// (version, epoch) from GET /votes.
async fn tally(port: u16) -> Result<(u64, String), String> {
    let mut c = http::Conn::connect(port).await?;
    let rep = c
        .request(b"GET /votes HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    let v = json_u64(&rep.body, "version").ok_or("GET /votes: no version")?;
    let e = json_str(&rep.body, "epoch").ok_or("GET /votes: no epoch")?;
    Ok((v, e))
}

/// N clients looping on `GET /get_new_vote?since=V&epoch=E` (keep-alive), one voter.
pub async fn longpoll_fanout(info: Info, n: usize, k: &Knobs) -> Result<RunResult, String> {
    let t0 = Instant::now();
    let (v0, epoch) = tally(info.port).await?;
    let fan = Fanout::new(0);
    let Fanout {
        ready,
        failed,
        last,
        ..
    } = fan.clone();
    let requests = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut handles: Vec<JoinHandle<Result<Events, String>>> = Vec::with_capacity(n);
    for _ in 0..n {
        let Fanout {
            ready,
            failed,
            done,
            last,
            sem,
            ..
        } = fan.clone();
        let requests = requests.clone();
        let epoch = epoch.clone();
        let mut stop = stop_rx.clone();
        handles.push(tokio::spawn(async move {
            let mut permit = Some(sem.acquire_owned().await.unwrap());
            let mut c = match http::Conn::connect(info.port).await {
                Ok(c) => c,
                Err(e) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    return Err(e);
                }
            };
            let mut at = v0;
            let mut events = Events::new();
            let mut first = true;
            loop {
                let req = format!(
                    "GET /get_new_vote?since={at}&epoch={epoch} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                );
                if let Err(e) = c.send(req.as_bytes()).await {
                    if first {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    return Err(e);
                }
                requests.fetch_add(1, Ordering::Relaxed);
                if first {
                    first = false;
                    permit.take();
                    ready.fetch_add(1, Ordering::Relaxed);
                }
                let rep = tokio::select! {
                    biased;
                    _ = stop.changed() => break,
                    r = c.read_reply() => r?,
                };
                let now = ns_since(t0);
                if rep.status != 200 {
                    return Err(format!("long-poll: HTTP {}", rep.status));
                }
                if let Some(v) = json_u64(&rep.body, "version") {
                    if v > at {
                        events.push((v, now, Seen::Upto));
                        at = v;
                    }
                }
                if at >= last.load(Ordering::Relaxed) {
                    done.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
            Ok(events)
        }));
    }
    wait_for(&ready, n, Duration::from_secs(30)).await;
    let connected = ready.load(Ordering::Relaxed);
    // Let every poll reach its server thread and park there.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let win = Window::open(info.pid);
    let req0 = requests.load(Ordering::Relaxed);
    last.store(v0 + k.votes as u64, Ordering::Relaxed);
    let sends = http_voter(info.port, k, t0, v0).await?;
    let rw = fan.close(win, connected).await;
    let polls = requests.load(Ordering::Relaxed) - req0;
    let (mut r, errors) = finish_fanout(stop_tx, handles, &sends, n, &rw).await;
    r.metrics.push(count("polls", polls as f64));
    if failed.load(Ordering::Relaxed) > 0 || !errors.is_empty() {
        r.notes.push(format!("errors: {}", group(&errors)));
    }
    Ok(r)
}

/// Awaits every task: what the ones that succeeded returned, and the others' errors.
async fn collect<T>(handles: Vec<JoinHandle<Result<T, String>>>) -> (Vec<T>, Vec<String>) {
    let mut subs = Vec::with_capacity(handles.len());
    let mut errors = Vec::new();
    for h in handles {
        match h.await {
            Ok(Ok(ev)) => subs.push(ev),
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(format!("task: {e}")),
        }
    }
    (subs, errors)
}

/// N clients on `GET /events`, one voter.
pub async fn sse_fanout(info: Info, n: usize, k: &Knobs) -> Result<RunResult, String> {
    let t0 = Instant::now();
    let (v0, _) = tally(info.port).await?;
    let fan = Fanout::new(n);
    let Fanout { ready, last, .. } = fan.clone();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut handles: Vec<JoinHandle<Result<Events, String>>> = Vec::with_capacity(n);
    for i in 0..n {
        let Fanout {
            ready,
            failed,
            done,
            last,
            sem,
            totals,
        } = fan.clone();
        let mut stop = stop_rx.clone();
        handles.push(tokio::spawn(async move {
            let mut permit = Some(sem.acquire_owned().await.unwrap());
            let fail = |e: String| {
                failed.fetch_add(1, Ordering::Relaxed);
                Err(e)
            };
            let mut c = match http::Conn::connect(info.port).await {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            if let Err(e) = c
                .send(
                    b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n",
                )
                .await
            {
                return fail(e);
            }
            let (status, mut buf) = match c.read_stream_head().await {
                Ok(x) => x,
                Err(e) => return fail(e),
            };
            if status != 200 {
                return fail(format!("HTTP {status}"));
            }
            let mut events = Events::new();
            let mut at = 0u64;
            let mut is_ready = false;
            buf.reserve(8192);
            'read: loop {
                // Every complete event in the buffer.
                while let Some(end) = find(&buf, b"\n\n") {
                    let now = ns_since(t0);
                    let ev = &buf[..end];
                    for line in ev.split(|&b| b == b'\n') {
                        if let Some(data) = line.strip_prefix(b"data: ") {
                            if let Some(total) = presence_total(data) {
                                totals[i].store(total, Ordering::Relaxed);
                            }
                            if let Some((v, how)) = classify(data) {
                                events.push((v, now, how));
                                at = at.max(v);
                                if how == Seen::Upto && !is_ready {
                                    is_ready = true;
                                    permit.take();
                                    ready.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                    buf.drain(..end + 2);
                    if at >= last.load(Ordering::Relaxed) {
                        done.fetch_add(1, Ordering::Relaxed);
                        break 'read;
                    }
                }
                if buf.capacity() - buf.len() < 2048 {
                    buf.reserve(8192);
                }
                tokio::select! {
                    biased;
                    _ = stop.changed() => break,
                    r = c.stream.read_buf(&mut buf) => match r {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            }
            if !is_ready {
                return fail("no resume event".into());
            }
            Ok(events)
        }));
    }
    wait_for(&ready, n, Duration::from_secs(30)).await;
    let connected = ready.load(Ordering::Relaxed);
    // The last presence change out first (see `ws_fanout`); the voter is no viewer here.
    let settled = if info.target.is_peer() {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        true
    } else {
        fan.presence_settled(connected, connected as u64).await
    };
    let win = Window::open(info.pid);
    last.store(v0 + k.votes as u64, Ordering::Relaxed);
    let sends = http_voter(info.port, k, t0, v0).await?;
    let rw = fan.close(win, connected).await;
    let (mut r, errors) = finish_fanout(stop_tx, handles, &sends, n, &rw).await;
    if !errors.is_empty() {
        r.notes.push(format!("errors: {}", group(&errors)));
    }
    if !settled {
        r.notes
            .push("the viewer total had not settled within 10 s".into());
    }
    Ok(r)
}

// ---------------------------------------------------------------------------------------------
// HTTP throughput

/// `conns` keep-alive connections, each sending `req` and waiting for the answer, for
/// `seconds`: requests/s and latency.
pub async fn http_throughput(
    info: Info,
    conns: usize,
    seconds: f64,
    req: &'static [u8],
) -> Result<RunResult, String> {
    let mut cs = Vec::with_capacity(conns);
    for i in 0..conns {
        cs.push(http::Conn::connect(info.port_for(i)).await?);
    }
    // A short warm-up on every connection (each server thread is started and has answered).
    for c in cs.iter_mut() {
        let rep = c.request(req).await?;
        if rep.status != 200 {
            return Err(format!("warm-up: HTTP {}", rep.status));
        }
    }
    let win = Window::open(info.pid);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let mut handles = Vec::with_capacity(conns);
    for mut c in cs {
        handles.push(tokio::spawn(async move {
            let mut lat: Vec<u64> = Vec::with_capacity(200_000);
            let mut errors = 0u64;
            let mut err = None;
            loop {
                let t = Instant::now();
                if t >= end {
                    break;
                }
                match c.request(req).await {
                    Ok(rep) if rep.status == 200 => lat.push(t.elapsed().as_nanos() as u64),
                    Ok(rep) => {
                        errors += 1;
                        err = Some(format!("HTTP {}", rep.status));
                    }
                    Err(e) => {
                        errors += 1;
                        err = Some(e);
                        break;
                    }
                }
            }
            (lat, errors, err)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    let mut errs = Vec::new();
    for h in handles {
        let (l, e, s) = h.await.map_err(|e| format!("task: {e}"))?;
        lat.extend(l);
        errors += e;
        if let Some(s) = s {
            errs.push(s);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut r = RunResult::default();
    win.close(&mut r);
    lat.sort_unstable();
    r.metrics = vec![
        rate("req/s", lat.len() as f64 / elapsed),
        // The server's CPU per answered request, over the measured phase.
        us("CPU/req", r.server_cpu_s / lat.len().max(1) as f64),
        ms("p50", pct(&lat, 50.0)),
        ms("p99", pct(&lat, 99.0)),
        ms("max", lat.last().copied().unwrap_or(0)),
        bad("errors", errors as f64),
    ];
    if !errs.is_empty() {
        r.notes.push(format!("errors: {}", group(&errs)));
    }
    Ok(r)
}

pub const GET_INDEX: &[u8] = b"GET /index HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
pub const POST_VOTE_REQ: &[u8] = POST_VOTE;

// ---------------------------------------------------------------------------------------------
// Echo

/// `clients` connections on /chatsocket, each sending `messages` text messages of `size` bytes
/// one at a time and waiting for the echo.
pub async fn echo(
    info: Info,
    clients: usize,
    messages: usize,
    size: usize,
) -> Result<RunResult, String> {
    let mut socks = Vec::with_capacity(clients);
    for _ in 0..clients {
        socks.push(ws_connect(info.port, "/chatsocket").await?);
    }
    let payload: String = (0..size).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let win = Window::open(info.pid);
    let start = Instant::now();
    let mut handles = Vec::with_capacity(clients);
    for mut ws in socks {
        let payload = payload.clone();
        handles.push(tokio::spawn(async move {
            let mut rtt = Vec::with_capacity(messages);
            for _ in 0..messages {
                let t = Instant::now();
                ws.send(Message::Text(payload.clone()))
                    .await
                    .map_err(|e| format!("send: {e}"))?;
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Text(t2))) => {
                            if t2.len() != payload.len() {
                                return Err("echo of another length".to_string());
                            }
                            break;
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Err(format!("read: {e}")),
                        None => return Err("closed".into()),
                    }
                }
                rtt.push(t.elapsed().as_nanos() as u64);
            }
            let _ = ws.close(None).await;
            Ok::<_, String>(rtt)
        }));
    }
    let mut rtt = Vec::new();
    let mut errs = Vec::new();
    for h in handles {
        match h.await {
            Ok(Ok(l)) => rtt.extend(l),
            Ok(Err(e)) => errs.push(e),
            Err(e) => errs.push(format!("task: {e}")),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut r = RunResult::default();
    win.close(&mut r);
    rtt.sort_unstable();
    r.metrics = vec![
        rate("msg/s", rtt.len() as f64 / elapsed),
        // The server's CPU per echoed message, over the measured phase.
        us("CPU/msg", r.server_cpu_s / rtt.len().max(1) as f64),
        ms("RTT p50", pct(&rtt, 50.0)),
        ms("RTT p99", pct(&rtt, 99.0)),
        bad("failed clients", errs.len() as f64),
    ];
    if !errs.is_empty() {
        r.notes.push(format!("errors: {}", group(&errs)));
    }
    Ok(r)
}

// ---------------------------------------------------------------------------------------------
// Holding many idle subscribers: idle memory and capacity

/// A subscriber that only drains what it is sent, until `stop`; counts itself in `alive` when
/// it sees a vote message, in `dropped` when the server closes it.
fn hold(
    mut ws: Ws,
    mut stop: watch::Receiver<bool>,
    alive: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut counted = false;
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => return,
                m = ws.next() => match m {
                    Some(Ok(Message::Text(t))) => {
                        if !counted && t.starts_with("{\"uid\"") {
                            counted = true;
                            alive.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }
    })
}

/// Opens `n` subscribers (CONNECT_CONCURRENCY handshakes at a time); returns the open
/// sockets and the errors of those that failed.
async fn open_many(port: u16, n: usize) -> (Vec<Ws>, Vec<String>) {
    let sem = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut hs = Vec::with_capacity(n);
    for _ in 0..n {
        let sem = sem.clone();
        hs.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await.unwrap();
            match tokio::time::timeout(Duration::from_secs(20), ws_connect(port, "/get_new_vote"))
                .await
            {
                Ok(r) => r,
                Err(_) => Err("handshake timed out (20 s)".into()),
            }
        }));
    }
    collect(hs).await
}

/// Server RSS per idle WebSocket connection with `n` open; threads.
pub async fn idle_memory(info: Info, n: usize) -> Result<RunResult, String> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = sys::sample(info.pid);
    let (stop_tx, stop_rx) = watch::channel(false);
    let alive = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let win = Window::open(info.pid);
    let (socks, errs) = open_many(info.port, n).await;
    let open = socks.len();
    let holders: Vec<_> = socks
        .into_iter()
        .map(|ws| hold(ws, stop_rx.clone(), alive.clone(), dropped.clone()))
        .collect();
    // Settle: presence publications, lazily touched pages.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = sys::sample(info.pid);
    let mut r = RunResult::default();
    win.close(&mut r);
    let per = (after.rss_kib as f64 - before.rss_kib as f64) / open.max(1) as f64;
    r.metrics = vec![
        kib("RSS/conn", per),
        count("open", open as f64),
        count("RSS before KiB", before.rss_kib as f64),
        count("RSS after KiB", after.rss_kib as f64),
        count("threads", after.threads as f64),
        count("maps", after.maps as f64),
        bad("dropped", dropped.load(Ordering::Relaxed) as f64),
    ];
    if !errs.is_empty() {
        r.notes.push(format!("connect errors: {}", group(&errs)));
    }
    let _ = stop_tx.send(true);
    for h in holders {
        let _ = h.await;
    }
    Ok(r)
}

/// One step of the capacity ramp.
#[derive(Clone, Debug)]
pub struct Step {
    /// Connections open after the step (before the server died, if it did).
    pub open: usize,
    pub failed: usize,
    pub errors: String,
    pub s: sys::ProcSample,
    pub died: bool,
}

/// Ramps WebSocket subscribers up in steps until a step has failures, the server dies, or
/// `max` is reached; then checks that every held subscriber still receives a vote.
pub async fn capacity(info: Info, k: &Knobs) -> Result<(RunResult, Vec<Step>), String> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let alive = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    // The voter first (it is one of the connections counted).
    let mut voter = ws_connect(info.port, "/get_new_vote")
        .await
        .map_err(|e| format!("voter: {e}"))?;
    let mut holders = Vec::new();
    let mut steps = Vec::new();
    let mut open = 1usize;
    let mut peak = 1usize;
    let mut died = false;
    let mut last_live = sys::sample(info.pid);
    let mut all_errs: Vec<String> = Vec::new();
    let win = Window::open(info.pid);
    let t = Instant::now();
    while open < k.capacity_max {
        let want = k.capacity_step.min(k.capacity_max - open);
        let (socks, errs) = open_many(info.port, want).await;
        open += socks.len();
        peak = peak.max(open - dropped.load(Ordering::Relaxed));
        for ws in socks {
            holders.push(hold(ws, stop_rx.clone(), alive.clone(), dropped.clone()));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let s = sys::sample(info.pid);
        let failed = errs.len();
        died = !s.alive;
        if died {
            // Every connection accepted so far was open at once when it died.
            peak = peak.max(open);
        } else {
            last_live = s;
        }
        steps.push(Step {
            open: open - dropped.load(Ordering::Relaxed).min(open),
            failed,
            errors: group(&errs),
            s,
            died,
        });
        all_errs.extend(errs);
        if failed > 0 || died {
            break;
        }
    }
    let ramp_s = t.elapsed().as_secs_f64();
    // Is everyone still there? One vote must reach every held subscriber.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut reached = 0;
    let mut held = open - dropped.load(Ordering::Relaxed).min(open);
    if !died && voter.send(Message::Text("1".into())).await.is_ok() {
        let deadline = Instant::now() + Duration::from_secs(15);
        // The voter is a subscriber too: its own vote must come back to it.
        let mut voter_got = 0;
        while voter_got == 0 && Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_millis(200), voter.next()).await {
                Ok(Some(Ok(Message::Text(t)))) if t.starts_with("{\"uid\"") => voter_got = 1,
                Ok(Some(Ok(_))) | Err(_) => {}
                Ok(_) => break,
            }
        }
        while alive.load(Ordering::Relaxed) + voter_got < held && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        reached = alive.load(Ordering::Relaxed) + voter_got;
        held = open - dropped.load(Ordering::Relaxed).min(open);
    }
    let end = sys::sample(info.pid);
    died = died || !end.alive;
    if died {
        held = 0;
    } else {
        last_live = end;
    }
    let mut r = RunResult::default();
    win.close(&mut r);
    r.metrics = vec![
        count("held", held as f64),
        count("vote reached", reached as f64),
        count("peak", peak as f64),
        count("refused", all_errs.len() as f64),
        bad("server died", if died { 1.0 } else { 0.0 }),
        count("threads", last_live.threads as f64),
        count("maps", last_live.maps as f64),
        count("fds", last_live.fds as f64),
        count("RSS MiB", last_live.rss_kib as f64 / 1024.0),
    ];
    r.notes.push(format!(
        "ramp to {peak} in {ramp_s:.1} s, {} per step",
        k.capacity_step
    ));
    if !all_errs.is_empty() {
        r.notes.push(format!("refused: {}", group(&all_errs)));
    }
    if died {
        r.notes.push(format!(
            "the server process died with about {peak} connections open"
        ));
    }
    let _ = stop_tx.send(true);
    for h in holders {
        let _ = h.await;
    }
    Ok((r, steps))
}

// ---------------------------------------------------------------------------------------------
// Capacity over three instances: beyond one process's open-files limit (20,000 here, hard), so
// the subscribers are held by worker processes (this binary, `--hold`), one per instance, each
// from its own source address (127.0.0.2, .3, .4: every worker has a whole ephemeral port
// range). `kernel.pid_max` (32,768) is below the threads three instances need: it is raised for
// the run (as root) and restored.

/// A WebSocket subscriber from source address `src`.
async fn ws_connect_from(src: std::net::Ipv4Addr, port: u16) -> Result<Ws, String> {
    let sock = tokio::net::TcpSocket::new_v4().map_err(|e| describe_io(&e))?;
    sock.bind((src, 0).into()).map_err(|e| describe_io(&e))?;
    let tcp = sock
        .connect(([127, 0, 0, 1], port).into())
        .await
        .map_err(|e| describe_io(&e))?;
    ws_handshake(tcp, port, "/get_new_vote").await
}

/// The worker (`livevote-bench --hold PORT COUNT SRC`): opens up to COUNT subscribers on PORT
/// from SRC in steps of 1,000, stopping at the first step with failures; prints
/// `open N refused R errors …`; then waits (at most 120 s) for one vote and prints
/// `reached M dropped D` once every held subscriber has it or 20 s after the first did.
pub fn hold_worker(port: u16, count: usize, src: std::net::Ipv4Addr) {
    use std::io::Write;
    let (nofile, _) = sys::raise_nofile();
    let count = count.min((nofile as usize).saturating_sub(100));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let (stop_tx, stop_rx) = watch::channel(false);
        let alive = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        let mut holders = Vec::new();
        let mut errs: Vec<String> = Vec::new();
        let mut open = 0;
        while open < count {
            let want = 1000.min(count - open);
            let sem = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
            let mut hs = Vec::with_capacity(want);
            for _ in 0..want {
                let sem = sem.clone();
                hs.push(tokio::spawn(async move {
                    let _p = sem.acquire_owned().await.unwrap();
                    match tokio::time::timeout(Duration::from_secs(20), ws_connect_from(src, port))
                        .await
                    {
                        Ok(r) => r,
                        Err(_) => Err("handshake timed out (20 s)".into()),
                    }
                }));
            }
            let (socks, e) = collect(hs).await;
            open += socks.len();
            for ws in socks {
                holders.push(hold(ws, stop_rx.clone(), alive.clone(), dropped.clone()));
            }
            let failed = !e.is_empty();
            errs.extend(e);
            if failed {
                break;
            }
        }
        println!(
            "open {open} refused {} errors {}",
            errs.len(),
            if errs.is_empty() {
                "none".into()
            } else {
                group(&errs)
            }
        );
        let _ = std::io::stdout().flush();
        let limit = Instant::now() + Duration::from_secs(120);
        while alive.load(Ordering::Relaxed) == 0 && Instant::now() < limit {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let first = Instant::now();
        while alive.load(Ordering::Relaxed) + dropped.load(Ordering::Relaxed) < open
            && first.elapsed() < Duration::from_secs(20)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!(
            "reached {} dropped {}",
            alive.load(Ordering::Relaxed),
            dropped.load(Ordering::Relaxed)
        );
        let _ = std::io::stdout().flush();
        // Hold on until the parent is done with the instances (it closes our stdin).
        let _ = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        })
        .await;
        let _ = stop_tx.send(true);
        for h in holders {
            let _ = h.await;
        }
    });
}

/// A value under /proc/sys.
fn sysctl(name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/sys/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Raises `kernel.pid_max` to at least `want` for the run; restores it when dropped.
struct PidMax {
    was: Option<u64>,
}

impl PidMax {
    fn raise(want: u64) -> (PidMax, String) {
        let Some(now) = sysctl("kernel/pid_max") else {
            return (PidMax { was: None }, "kernel.pid_max unreadable".into());
        };
        if now >= want {
            return (PidMax { was: None }, format!("kernel.pid_max {now}"));
        }
        match std::fs::write("/proc/sys/kernel/pid_max", want.to_string()) {
            Ok(()) => (
                PidMax { was: Some(now) },
                format!("kernel.pid_max raised {now} → {want} for the run"),
            ),
            Err(e) => (
                PidMax { was: None },
                format!("kernel.pid_max {now} could not be raised ({e}): it may stop the ramp"),
            ),
        }
    }
}

impl Drop for PidMax {
    fn drop(&mut self) {
        if let Some(was) = self.was {
            let _ = std::fs::write("/proc/sys/kernel/pid_max", was.to_string());
        }
    }
}

/// The capacity worker processes: killed by their pids and reaped when dropped, also when
/// the run ends early (an error, or its wall-clock bound dropping the future).
struct Workers(Vec<std::process::Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for w in self.0.iter_mut() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

/// Three instances holding `BENCH_CLUSTER_CAPACITY` (default 42,000) subscribers between them,
/// each a third, through worker processes; then one vote must reach every one of them.
pub async fn cluster_capacity(info: Info, _k: &Knobs) -> Result<(RunResult, Vec<Step>), String> {
    let total = std::env::var("BENCH_CLUSTER_CAPACITY")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(42_000);
    let per = total.div_ceil(info.instances.max(1));
    let (pid_max, pid_note) = PidMax::raise((total as u64 + 16_384).next_power_of_two());
    let mut notes = vec![
        pid_note,
        format!(
            "threads-max {}, vm.max_map_count {} (per process), open files {} (per process: one worker per instance)",
            sysctl("kernel/threads-max").unwrap_or(0),
            sysctl("vm/max_map_count").unwrap_or(0),
            sys::raise_nofile().1
        ),
    ];
    let me = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut voter = ws_connect(info.port, "/get_new_vote")
        .await
        .map_err(|e| format!("voter: {e}"))?;
    first_resume(&mut voter).await?;
    let win = Window::open(info.pid);
    let t = Instant::now();
    let mut workers = Workers(Vec::new());
    for k in 0..info.instances {
        let child = std::process::Command::new(&me)
            .args(["--hold", &info.ports[k].to_string(), &per.to_string()])
            .arg(format!("127.0.0.{}", 2 + k))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("worker: {e}"))?;
        workers.0.push(child);
    }
    // Each worker's lines, read on blocking threads.
    let mut lines = Vec::new();
    for w in workers.0.iter_mut() {
        let out = w.stdout.take().expect("piped");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        lines.push(rx);
    }
    let word = |l: &str, w: &str| -> usize {
        l.split_whitespace()
            .skip_while(|x| *x != w)
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let (mut held, mut refused) = (0usize, 0usize);
    let mut errors = Vec::new();
    for rx in lines.iter_mut() {
        match tokio::time::timeout(Duration::from_secs(300), rx.recv()).await {
            Ok(Some(l)) => {
                held += word(&l, "open");
                refused += word(&l, "refused");
                if let Some(e) = l.split(" errors ").nth(1).filter(|e| *e != "none") {
                    errors.push(e.to_string());
                }
            }
            _ => errors.push("a worker did not report".into()),
        }
    }
    let ramp_s = t.elapsed().as_secs_f64();
    // Presence settles, then one vote on the first instance.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let samples: Vec<sys::ProcSample> = info.pids[..info.instances]
        .iter()
        .map(|&p| sys::sample(p))
        .collect();
    voter
        .send(Message::Text("1".into()))
        .await
        .map_err(|e| format!("voter send: {e}"))?;
    let mut reached = 0usize;
    let mut dropped = 0usize;
    for rx in lines.iter_mut() {
        match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
            Ok(Some(l)) => {
                reached += word(&l, "reached");
                dropped += word(&l, "dropped");
            }
            _ => errors.push("a worker did not report the vote".into()),
        }
    }
    let died = samples.iter().any(|s| !s.alive)
        || info.pids[..info.instances]
            .iter()
            .any(|&p| !sys::sample(p).alive);
    for w in workers.0.iter_mut() {
        drop(w.stdin.take());
    }
    for w in workers.0.iter_mut() {
        let deadline = Instant::now() + Duration::from_secs(20);
        while w.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    drop(workers);
    drop(pid_max);
    let mut r = RunResult::default();
    win.close(&mut r);
    let threads: u64 = samples.iter().map(|s| s.threads).sum();
    let rss: u64 = samples.iter().map(|s| s.rss_kib).sum();
    r.metrics = vec![
        count("held", held as f64),
        count("vote reached", reached as f64),
        count("refused", refused as f64),
        bad("dropped", dropped as f64),
        bad("server died", if died { 1.0 } else { 0.0 }),
        count("threads", threads as f64),
        count("RSS MiB", rss as f64 / 1024.0),
    ];
    notes.push(format!(
        "{held} of {total} asked held in {ramp_s:.1} s ({per} per instance, by {} worker processes)",
        info.instances
    ));
    if held < total {
        notes.push(format!(
            "the ramp stopped at {held}: {}",
            if errors.is_empty() {
                "no error reported".into()
            } else {
                errors.join("; ")
            }
        ));
    }
    r.notes = notes;
    let _ = voter.close(None).await;
    Ok((r, Vec::new()))
}
