//! Limits and refusals not covered by `tests/http.rs` (issue 5): the per-address connection cap,
//! the origin check on `POST /vote` and `/ticket`, vote ids (malformed, repeated, over
//! WebSocket), and floods against the real binary — idle, half-open and never-reading
//! connections that the server must shed by itself until its thread and connection counts are
//! back at their baseline, and a flood beyond `--max-connections`.
//!
//! Every helper lives in this file. Every client socket has a timeout, every server process is
//! killed by its handle when its guard drops, and everything targets 127.0.0.1 only.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use livevote::config::Config;
use livevote::server::Server;
use tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_livevote");
/// Hang guard on every client socket.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on waiting for the server to shed a flood or free a slot.
const SHED_LIMIT: Duration = Duration::from_secs(10);
/// Threads that may come and go around a measurement (a connection thread finishing its close).
const THREAD_SLACK: usize = 2;

fn www() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("www")
}

/// An in-process server on `127.0.0.1:0` (in memory), adjusted by `tweak`.
fn start(tweak: impl FnOnce(&mut Config)) -> SocketAddr {
    let mut config = Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        www: www(),
        access_log: false,
        ..Config::default()
    };
    tweak(&mut config);
    Server::bind(config)
        .expect("bind")
        .spawn()
        .expect("start the server")
}

// ---------------------------------------------------------------------------------------------
// The per-address cap

#[test]
fn the_fourth_connection_from_one_address_gets_503_until_one_closes() {
    let addr = start(|c| c.limits.max_connections_per_ip = 3);
    // Three connections: two keep-alive HTTP, one WebSocket (an upgraded connection counts).
    let mut a = Conn::connect(addr);
    assert_eq!(a.call(&get_req("/votes", "")).status, 200);
    let mut b = Conn::connect(addr);
    assert_eq!(b.call(&get_req("/votes", "")).status, 200);
    let mut ws = ws_connect(addr, "/get_new_vote");
    assert_eq!(ws_next_json(&mut ws)["type"].str(), "resume");

    // The fourth, refused before its request is read, and again after a moment.
    for _ in 0..3 {
        assert_refused(addr);
    }
    // A WebSocket handshake beyond the cap is refused too.
    match tungstenite::client(format!("ws://{addr}/get_new_vote"), tcp(addr)) {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
            assert_eq!(r.status(), 503)
        }
        Err(e) => panic!("expected a 503, got {e}"),
        Ok(_) => panic!("a fourth connection from one address was accepted"),
    }
    // The three admitted ones still work.
    assert_eq!(a.call(&get_req("/votes", "")).status, 200);
    assert_eq!(b.call(&get_req("/votes", "")).status, 200);

    // One closes: its slot comes back, for one new connection only.
    drop(a);
    let mut c = wait_for("a free slot after a close", || {
        let mut c = Conn::connect(addr);
        c.send(&get_req("/votes", ""));
        (c.try_read().ok()?.status == 200).then_some(c)
    });
    assert_refused(addr);
    // A WebSocket closing gives its slot back the same way.
    ws.close(None).expect("close the WebSocket");
    while ws.read().is_ok() {}
    wait_for("a free slot after a WebSocket close", || {
        let mut c = Conn::connect(addr);
        c.send(&get_req("/votes", ""));
        (c.try_read().ok()?.status == 200).then_some(())
    });
    assert_eq!(c.call(&get_req("/votes", "")).status, 200);
    assert_eq!(b.call(&get_req("/votes", "")).status, 200);
}

/// A new connection gets `503` with a `Retry-After` of whole seconds, and is closed.
fn assert_refused(addr: SocketAddr) {
    let mut c = Conn::connect(addr);
    let _ = c.stream.write_all(get_req("/votes", "").as_bytes());
    let r = c.try_read().expect("a refusal, not a reset");
    assert_eq!(r.status, 503, "{}", r.text());
    let retry = r.header("retry-after").expect("Retry-After on a 503");
    assert!(retry.parse::<u64>().is_ok_and(|s| s >= 1), "{retry}");
    assert!(r
        .header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close")));
    assert!(c.at_eof(), "the refused connection is closed");
}

// ---------------------------------------------------------------------------------------------
// Origin checks on votes

/// `POST path` with `Origin: origin` (if any) and `Host: host`.
fn post_from(path: &str, body: &str, host: &str, origin: Option<&str>) -> String {
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\n{origin}\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn a_foreign_origin_cannot_vote_and_nothing_is_counted() {
    let addr = start(|c| c.allow_origins = vec!["http://allowed.example".into()]);
    let host = addr.to_string();
    let port = addr.port();
    let foreign = [
        "http://evil.example".to_string(),
        "https://evil.example".to_string(),
        "null".to_string(),
        format!("http://{host}.evil.example"),
        format!("http://127.0.0.2:{port}"),
        format!("http://127.0.0.1:{}", port.wrapping_add(1).max(1)),
        format!("ftp://{host}"),
        format!("http://{host}@evil.example"),
        "http://allowed.example.evil".to_string(),
        "http://allowed.example:8080".to_string(),
    ];
    let mut c = Conn::connect(addr);
    for origin in &foreign {
        for (path, body) in [
            ("/vote", "uid=1"),
            ("/ticket", "nid=2"),
            ("/vote", "uid=1&vote_id=x1"),
            ("/vote", "uid=1&back=%2Findex"),
        ] {
            let r = c.call(&post_from(path, body, &host, Some(origin)));
            assert_eq!(r.status, 403, "{path} {body} from {origin}: {}", r.text());
        }
    }
    // The same vote id from the right origin counts: the refusal did not remember it.
    let r = c.call(&post_from("/vote", "uid=1&vote_id=x1", &host, None));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["version"].u64(), 1);
    assert_eq!(tally(addr).0, 1, "only the last vote counted");
}

#[test]
fn the_own_origin_an_allowed_origin_or_no_origin_may_vote() {
    let addr = start(|c| c.allow_origins = vec!["http://allowed.example".into()]);
    let host = addr.to_string();
    let local = format!("localhost:{}", addr.port());
    let cases: [(&str, Option<String>); 8] = [
        (&host, None),
        (&host, Some(format!("http://{host}"))),
        (&host, Some(format!("https://{host}"))),
        (&host, Some(format!("HTTP://{host}/"))),
        (&local, Some(format!("http://{local}"))),
        (&host, Some("http://allowed.example".into())),
        (&host, Some("http://allowed.example/".into())),
        (&host, Some("HTTP://ALLOWED.EXAMPLE".into())),
    ];
    let mut c = Conn::connect(addr);
    for (i, (h, origin)) in cases.iter().enumerate() {
        for (path, field) in [("/vote", "uid"), ("/ticket", "nid")] {
            let r = c.call(&post_from(
                path,
                &format!("{field}=1"),
                h,
                origin.as_deref(),
            ));
            assert_eq!(
                r.status,
                200,
                "case {i}: {path} from {origin:?}: {}",
                r.text()
            );
        }
    }
    assert_eq!(tally(addr).0, 2 * cases.len() as u64);
}

// ---------------------------------------------------------------------------------------------
// Vote ids

#[test]
fn a_malformed_vote_id_is_400_and_counts_nothing() {
    let addr = start(|_| {});
    let long = "x".repeat(65);
    let bad = ["", "a+b", "a%20b", "%C3%A9", "a%2Fb", "a.b", "a%00", &long];
    let mut c = Conn::connect(addr);
    for id in bad {
        for (path, field) in [("/vote", "uid"), ("/ticket", "nid")] {
            let r = c.call(&post_req(path, &format!("{field}=1&vote_id={id}")));
            assert_eq!(r.status, 400, "{path} vote_id={id:?}: {}", r.text());
            let r = c.call(&post_req(
                &format!("{path}?vote_id={id}"),
                &format!("{field}=1"),
            ));
            assert_eq!(r.status, 400, "{path}?vote_id={id:?}: {}", r.text());
        }
    }
    assert_eq!(tally(addr).0, 0);
    // The longest allowed id is fine.
    let r = c.call(&post_req(
        "/vote",
        &format!("uid=1&vote_id={}", "y".repeat(64)),
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(tally(addr).0, 1);
}

#[test]
fn a_vote_id_sent_again_gets_the_first_answer_and_counts_once() {
    let addr = start(|_| {});
    let mut c = Conn::connect(addr);
    let first = c.call(&post_req("/vote", "uid=1&vote_id=same-1"));
    assert_eq!(first.status, 200, "{}", first.text());
    // Another vote in between: the retry still gets the first answer, not today's count.
    assert_eq!(
        c.call(&post_req("/vote", "uid=1&vote_id=other")).status,
        200
    );
    for (path, body) in [
        ("/vote", "uid=1&vote_id=same-1"),
        ("/vote", "uid=2&vote_id=same-1"),
        ("/ticket", "nid=1&vote_id=same-1"),
        ("/vote?vote_id=same-1", "uid=1"),
    ] {
        let again = c.call(&post_req(path, body));
        assert_eq!(again.status, 200, "{path} {body}");
        assert_eq!(
            again.body, first.body,
            "{path} {body}: not the first answer"
        );
    }
    // On a new connection, and as the query string's id: the same.
    let q = Conn::connect(addr).call(&post_req("/ticket?vote_id=q-1", "nid=2"));
    assert_eq!(q.status, 200);
    let q2 = Conn::connect(addr).call(&post_req("/ticket?vote_id=q-1", "nid=2"));
    assert_eq!(q2.body, q.body);
    let (version, counts) = tally(addr);
    assert_eq!(version, 3);
    assert_eq!(counts, [("1".into(), 2), ("2".into(), 1)].into());
}

#[test]
fn a_vote_id_over_websocket_is_acknowledged_then_replayed() {
    let addr = start(|_| {});
    let mut ws = ws_connect(addr, "/get_new_vote");
    let vote = |id: &str| Message::Text(format!("{{\"uid\":\"1\",\"vote_id\":\"{id}\"}}"));

    ws.send(vote("ws-1")).unwrap();
    let ack = next_of_type(&mut ws, "ack");
    assert_eq!(ack["vote_id"].str(), "ws-1");
    assert_eq!(ack["uid"].str(), "1");
    assert_eq!((ack["count"].u64(), ack["version"].u64()), (1, 1));
    assert!(!ack["replayed"].bool());

    ws.send(vote("ws-1")).unwrap();
    let again = next_of_type(&mut ws, "ack");
    assert!(again["replayed"].bool(), "{again:?}");
    assert_eq!((again["count"].u64(), again["version"].u64()), (1, 1));

    // The same id over HTTP is the same vote; and an HTTP vote's id replays over WebSocket.
    let r = Conn::connect(addr).call(&post_req("/vote", "uid=1&vote_id=ws-1"));
    assert_eq!(r.status, 200);
    assert_eq!((r.json()["count"].u64(), r.json()["version"].u64()), (1, 1));
    let r = Conn::connect(addr).call(&post_req("/vote", "uid=2&vote_id=http-1"));
    assert_eq!(r.json()["version"].u64(), 2);
    ws.send(vote("http-1")).unwrap();
    let ack = next_of_type(&mut ws, "ack");
    assert!(ack["replayed"].bool());
    assert_eq!(
        (ack["uid"].str(), ack["count"].u64(), ack["version"].u64()),
        ("2", 1, 2)
    );

    // A malformed id is an error message, and counts nothing.
    for bad in ["", "a b", &"z".repeat(65)] {
        ws.send(vote(bad)).unwrap();
        let e = next_of_type(&mut ws, "error");
        assert!(e["error"].str().contains("vote_id"), "{e:?}");
    }
    assert_eq!(tally(addr).0, 2);
}

/// The next message of `kind` (`ack`, `error`), skipping broadcasts and presence.
fn next_of_type(ws: &mut Ws, kind: &str) -> Json {
    loop {
        let j = ws_next_json(ws);
        match &j["type"] {
            Json::Str(t) if t == kind => return j,
            Json::Str(t) if t == "ack" || t == "error" => panic!("expected {kind}: {j:?}"),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Floods against the real binary

/// A running `livevote`; killed (by its handle) and reaped when dropped.
struct Livevote {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Livevote {
    /// Starts the binary in memory with `args` and waits for its address on stderr.
    fn start(args: &[&str]) -> Livevote {
        let mut child = Command::new(BIN)
            .args(["--addr", "127.0.0.1:0", "--quiet", "--memory", "--www"])
            .arg(www())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn livevote");
        let pipe = child.stderr.take().expect("stderr is piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = Arc::clone(&lines);
        // Drains stderr for the life of the process, so it never blocks on a full pipe.
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let mut server = Livevote {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            stderr: lines,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("livevote did not start:\n{}", server.stderr_text()));
            if let Some(rest) = line.split("listening on http://").nth(1) {
                server.addr = rest.split('/').next().unwrap_or_default().parse().unwrap();
                return server;
            }
        }
    }

    fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Threads of the process, from `/proc/PID/status`.
    fn threads(&self) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("a Threads: line")
    }
}

impl Drop for Livevote {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A metric's samples summed over their labels, from a fresh connection (which counts itself
/// in `livevote_http_connections`).
fn metric(addr: SocketAddr, name: &str) -> u64 {
    let r = Conn::connect(addr).call(&get_req("/metrics", "Connection: close\r\n"));
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let samples: Vec<u64> = text
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .map(|l| l.rsplit(' ').next().unwrap_or_default().parse().unwrap())
        .collect();
    assert!(!samples.is_empty(), "no {name} in /metrics");
    samples.iter().sum()
}

/// The thread count once the server is quiet: two readings 300 ms apart that agree.
fn quiet_threads(server: &Livevote) -> usize {
    wait_for("a stable thread count", || {
        let a = server.threads();
        thread::sleep(Duration::from_millis(300));
        (server.threads() == a).then_some(a)
    })
}

fn upgrade_req(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

#[test]
fn a_flood_of_idle_half_open_and_never_reading_connections_is_shed_back_to_baseline() {
    let server = Livevote::start(&[
        "--idle-timeout",
        "1",
        "--head-timeout",
        "1",
        "--write-timeout",
        "1",
        "--ws-ping-interval",
        "1",
        "--ws-pong-timeout",
        "1",
        "--longpoll-timeout",
        "1",
        "--max-connections-per-ip",
        "0",
    ]);
    let addr = server.addr;
    assert_eq!(metric(addr, "livevote_http_connections"), 1);
    let baseline = quiet_threads(&server);

    // 300 idle, 100 half-open, 25 + 25 that never read: WebSocket and long-poll. The thread
    // count is sampled as they arrive: with a 1 s idle timeout the first ones may be shed
    // before the last are accepted when the machine is busy.
    let started = Instant::now();
    let mut peak = 0;
    let mut flood = |n: usize, first: &dyn Fn(usize) -> Option<String>| -> Vec<TcpStream> {
        (0..n)
            .map(|i| {
                let mut s = tcp(addr);
                if let Some(bytes) = first(i) {
                    s.write_all(bytes.as_bytes()).unwrap();
                }
                if i % 25 == 24 {
                    peak = peak.max(server.threads());
                }
                s
            })
            .collect()
    };
    let mut idle = flood(300, &|_| None);
    let half = flood(100, &|_| {
        Some("GET /votes HTTP/1.1\r\nHost: localhost\r\nX-Half: ".into())
    });
    let deaf = flood(50, &|i| {
        Some(if i % 2 == 0 {
            upgrade_req("/get_new_vote")
        } else {
            get_req("/get_new_vote", "")
        })
    });
    let open = metric(addr, "livevote_http_connections");
    eprintln!(
        "flood: baseline {baseline} threads; opened in {:?}; peak {peak} threads; {open} \
         connections open after it",
        started.elapsed()
    );
    assert!(
        peak > baseline + 100,
        "the flood was admitted: {peak} threads at the peak"
    );
    // Votes for the deaf subscribers to not read.
    let mut c = Conn::connect(addr);
    for _ in 0..20 {
        assert_eq!(c.call(&post_req("/vote", "uid=1")).status, 200);
    }
    drop(c);
    // Close half of the idle ones; abandon the rest: the server must drop them by itself.
    idle.truncate(150);

    let settled = wait_for("the flood to be shed", || {
        let threads = server.threads();
        let open = metric(addr, "livevote_http_connections");
        (open == 1 && threads <= baseline + THREAD_SLACK).then_some(threads)
    });
    assert!(
        settled + THREAD_SLACK >= baseline,
        "{settled} threads, baseline {baseline}"
    );

    // Each abandoned connection was closed by the server: the idle ones silently, the half-open
    // ones with a 408, the deaf ones after what they were sent.
    for s in &mut idle {
        assert_eq!(
            read_all(s),
            b"",
            "an idle connection is closed without a word"
        );
    }
    for mut s in half {
        let bytes = read_all(&mut s);
        assert!(
            bytes.starts_with(b"HTTP/1.1 408 "),
            "{:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
    for (i, mut s) in deaf.into_iter().enumerate() {
        let bytes = read_all(&mut s);
        let expect: &[u8] = if i % 2 == 0 {
            b"HTTP/1.1 101 "
        } else {
            b"HTTP/1.1 200 "
        };
        assert!(
            bytes.starts_with(expect),
            "{:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
    // And the server still serves.
    assert_eq!(Conn::connect(addr).call(&get_req("/votes", "")).status, 200);
    assert_eq!(tally(addr).0, 20);
}

/// Casts `n` votes for `uid` pipelined on one connection (written from another thread, so that
/// neither side can block the other with full buffers), checking each answer.
fn cast_pipelined(addr: SocketAddr, uid: &str, n: usize) {
    let mut c = Conn::connect(addr);
    let batch = post_req("/vote", &format!("uid={uid}")).repeat(n);
    let mut w = c.stream.try_clone().unwrap();
    let writer = thread::spawn(move || w.write_all(batch.as_bytes()));
    for _ in 0..n {
        let r = c.try_read().expect("a vote's answer");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    writer.join().unwrap().expect("write the votes");
}

/// The server side's send queue (bytes) of each established connection from one of `ports` to
/// `server`, from `/proc/net/tcp` (Linux).
fn send_queues(server: SocketAddr, ports: &[u16]) -> BTreeMap<u16, u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let port_of = |hex: &str| u16::from_str_radix(hex.rsplit(':').next().unwrap_or(""), 16).ok();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (local, remote) = (port_of(f.get(1)?)?, port_of(f.get(2)?)?);
            let established = *f.get(3)? == "01";
            let tx = u64::from_str_radix(f.get(4)?.split(':').next()?, 16).ok()?;
            (established && local == server.port() && ports.contains(&remote))
                .then_some((remote, tx))
        })
        .collect()
}

#[test]
fn a_websocket_subscriber_that_never_reads_is_dropped_after_the_write_timeout() {
    // Issue 5: "write timeouts so a stalled peer cannot hold a thread forever". Pings are
    // pushed far away, so only the write timeout can end these connections.
    let one = "candidate-one-with-a-long-id-000";
    let two = "candidate-two-with-a-long-id-000";
    let server = Livevote::start(&[
        "--write-timeout",
        "1",
        "--ws-ping-interval",
        "60",
        "--ws-pong-timeout",
        "60",
        "--max-connections-per-ip",
        "0",
        "--candidate",
        &format!("{one}=One"),
        "--candidate",
        &format!("{two}=Two"),
    ]);
    let addr = server.addr;
    assert_eq!(metric(addr, "livevote_http_connections"), 1);
    let baseline = quiet_threads(&server);
    let deaf: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = tcp(addr);
            s.write_all(upgrade_req("/get_new_vote").as_bytes())
                .unwrap();
            s
        })
        .collect();
    let ports: Vec<u16> = deaf
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect();
    let ws_open = |addr| {
        let r = Conn::connect(addr).call(&get_req("/metrics", "Connection: close\r\n"));
        r.text()
            .lines()
            .find_map(|l| l.strip_prefix("livevote_open_connections{transport=\"ws\"} "))
            .and_then(|n| n.parse::<u64>().ok())
            .expect("the ws connection gauge")
    };
    wait_for("the deaf subscribers to connect", || {
        (ws_open(addr) == 4).then_some(())
    });

    // Vote until the server's send queues to them stop growing: their buffers are full.
    let started = Instant::now();
    let (mut cast, mut unchanged, mut last) = (0, 0, BTreeMap::new());
    while unchanged < 3 {
        if cast >= 400_000 || started.elapsed() > Duration::from_secs(60) {
            eprintln!("inconclusive: the buffers did not fill ({cast} votes, {last:?})");
            return;
        }
        let voters: Vec<_> = [one, two]
            .into_iter()
            .map(|uid| thread::spawn(move || cast_pipelined(addr, uid, 2_000)))
            .collect();
        for v in voters {
            v.join().expect("a voter");
        }
        cast += 4_000;
        let queues = send_queues(addr, &ports);
        if queues.len() < ports.len() {
            break; // some were dropped already: fine, the rest must follow
        }
        unchanged = if queues == last { unchanged + 1 } else { 0 };
        last = queues;
    }
    let full_at = Instant::now();
    eprintln!("deaf buffers full after {cast} votes: {last:?}");

    // A write timeout can only fire on a write: keep a trickle of votes going (the kernel may
    // still take a frame now and then). Within the write timeout (1 s) and a generous margin,
    // every one of them is gone.
    let end = full_at + Duration::from_secs(8);
    let mut c = Conn::connect(addr);
    loop {
        let (open, threads) = (ws_open(addr), server.threads());
        if open == 0 && threads <= baseline + THREAD_SLACK {
            break;
        }
        assert!(
            Instant::now() < end,
            "{open} of 4 WebSocket subscribers that never read are still connected \
             ({threads} threads, baseline {baseline}) {:?} after their send buffers filled, \
             votes still flowing; send queues: {last:?} then, {:?} now",
            full_at.elapsed(),
            send_queues(addr, &ports)
        );
        for _ in 0..10 {
            assert_eq!(
                c.call(&post_req("/vote", &format!("uid={one}"))).status,
                200
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
    drop(deaf);
}

/// Everything until the peer closes (bounded by the read timeout, which fails the test).
fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => out,
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => out,
        Err(e) => panic!("the server did not close the connection: {e}"),
    }
}

#[test]
fn max_connections_50_refuses_a_flood_of_80_and_serves_again_afterwards() {
    let server = Livevote::start(&["--max-connections", "50"]);
    let addr = server.addr;
    let mut flood: Vec<Conn> = (0..80)
        .map(|_| {
            let mut c = Conn::connect(addr);
            c.send(&get_req("/votes", ""));
            c
        })
        .collect();
    let mut served = Vec::new();
    let mut refused = 0;
    for (i, c) in flood.iter_mut().enumerate() {
        let r = c.try_read().expect("an answer for every connection");
        match r.status {
            200 => served.push(i),
            503 => {
                assert!(r.header("retry-after").is_some());
                refused += 1;
            }
            other => panic!("{other}: {}", r.text()),
        }
    }
    assert_eq!(
        (served.len(), refused),
        (50, 30),
        "50 served, the rest refused"
    );
    // At the cap, a new connection is refused (even for /metrics); the served ones still work.
    assert_refused(addr);
    for &i in &served {
        assert_eq!(flood[i].call(&get_req("/votes", "")).status, 200);
    }
    drop(flood);
    wait_for("the server to serve again", || {
        let mut c = Conn::connect(addr);
        c.send(&get_req("/votes", ""));
        (c.try_read().ok()?.status == 200).then_some(())
    });
    wait_for("the connection gauge back at 1", || {
        (metric(addr, "livevote_http_connections") == 1).then_some(())
    });
    drop(server);
}

#[test]
fn connections_refused_by_admission_control_show_in_the_metrics() {
    // An operator watching /metrics during a flood must see the refusals, by reason (issue 5:
    // "rejected requests and closes by reason").
    for (reason, tweak) in [
        ("max_connections", (2, 0)),
        ("max_connections_per_ip", (100, 2)),
    ] {
        let addr = start(|c| {
            (c.limits.max_connections, c.limits.max_connections_per_ip) = tweak;
        });
        let mut held: Vec<Conn> = (0..2)
            .map(|_| {
                let mut c = Conn::connect(addr);
                assert_eq!(c.call(&get_req("/votes", "")).status, 200);
                c
            })
            .collect();
        for _ in 0..5 {
            assert_refused(addr);
        }
        held.clear();
        let series = format!("livevote_connections_refused_total{{reason=\"{reason}\"}}");
        // Until the server has seen the closes, the scrape itself may be refused: count those.
        let mut attempts = 0;
        let text = wait_for("a free slot", || {
            attempts += 1;
            let mut c = Conn::connect(addr);
            c.send(&get_req("/metrics", "Connection: close\r\n"));
            let r = c.try_read().ok()?;
            (r.status == 200).then(|| r.text())
        });
        let refused: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
            .parse()
            .unwrap();
        assert!(
            (5..5 + attempts).contains(&refused),
            "{series} is {refused}: 5 refused, then {} scrapes refused at most",
            attempts - 1
        );
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP over raw TCP

fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect to the server");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

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
    fn connect(addr: SocketAddr) -> Conn {
        Conn {
            stream: tcp(addr),
            buf: Vec::new(),
        }
    }

    fn send(&mut self, request: &str) {
        self.stream
            .write_all(request.as_bytes())
            .expect("write a request");
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// The next response (by `Content-Length`), or an error if the connection ends first.
    fn try_read(&mut self) -> io::Result<Resp> {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            if self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, head.clone()))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        let mut r = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        let len: usize = r
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while self.buf.len() < len {
            if self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        r.body = self.buf.drain(..len).collect();
        Ok(r)
    }

    fn call(&mut self, request: &str) -> Resp {
        self.send(request);
        self.try_read().expect("read a response")
    }

    /// Whether the server has closed the connection (nothing more to read).
    fn at_eof(&mut self) -> bool {
        self.buf.is_empty() && matches!(self.fill(), Ok(0) | Err(_))
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
    let r = Conn::connect(addr).call(&get_req("/votes", ""));
    assert_eq!(r.status, 200);
    let j = r.json();
    let counts = j["candidates"]
        .items()
        .iter()
        .map(|c| (c["uid"].str().to_string(), c["count"].u64()))
        .collect();
    (j["version"].u64(), counts)
}

/// Polls `f` until it gives Some; panics after [`SHED_LIMIT`].
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + SHED_LIMIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// WebSocket through tungstenite

type Ws = tungstenite::WebSocket<TcpStream>;

fn ws_connect(addr: SocketAddr, path: &str) -> Ws {
    let (ws, resp) =
        tungstenite::client(format!("ws://{addr}{path}"), tcp(addr)).expect("WebSocket handshake");
    assert_eq!(resp.status(), 101);
    ws
}

fn ws_next_json(ws: &mut Ws) -> Json {
    loop {
        match ws.read().expect("read a WebSocket message") {
            Message::Text(t) => return Json::parse(&t).unwrap_or_else(|| panic!("not JSON: {t}")),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected WebSocket message {other:?}"),
        }
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
