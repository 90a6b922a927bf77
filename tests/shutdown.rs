//! Graceful shutdown, health checks and `livevote probe`, with the real binary (issue 12):
//! SIGTERM (sent with `kill` to the child's pid) turns `/readyz` to 503 while `/healthz` stays
//! 200 and connections are still accepted for `--shutdown-delay`; then WebSockets get close
//! 1001, event streams and long-polls end at once, every vote acknowledged before is in the
//! journal after a restart, and the process exits 0 within `--shutdown-timeout`. A second
//! SIGTERM exits at once. `/healthz` and `/readyz` answer any Host, and HEAD.
//!
//! Every wait is on a condition (a line on stderr, a status, a closed port), each bounded.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::binary::{Livevote, BIN};
use common::metrics::metric;
use common::tempdir::TempDir;
use common::*;

/// Hang guard for anything a shutdown should have done by now.
const LIMIT: Duration = Duration::from_secs(15);

/// Sends `signal` (`TERM`, `INT`) to the server.
fn kill(server: &Livevote, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), server.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal}");
}

/// Waits for a line containing `what` on the server's stderr.
fn wait_for_line(server: &Livevote, what: &str) {
    wait_for(LIMIT, what, || {
        server.stderr_text().contains(what).then_some(())
    });
}

/// The status of `GET path` on a new connection, or None if it cannot be asked (refused).
fn status_of(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut c = Client::try_connect(addr).ok()?;
    c.try_call(get_req(path)).ok().map(|r| r.status)
}

fn start_on(journal: &Path, extra: &[&str]) -> Livevote {
    let mut args: Vec<String> = vec!["--data".into(), journal.display().to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    Livevote::start_local(args)
}

#[test]
fn health_routes_answer_any_host_and_head() {
    let addr = start(|_| {});
    let r = get(addr, "/healthz");
    assert_eq!(r.status, 200, "{r:?}");
    r.assert_standard_headers(false);
    let j = r.json();
    assert_eq!(j["status"].as_str(), "ok");
    assert!(!j["draining"].as_bool());
    assert_eq!(j["store"].as_str(), "memory");
    assert!(j["store_usable"].as_bool());
    assert!(!j.has("redis"), "no Redis configured: {j:?}");
    let r = get(addr, "/readyz");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.json()["ready"].as_bool());
    // A name the allowlist does not know: 421 elsewhere, answered here.
    let other = "Host: lb-probe.internal\r\n";
    for path in ["/healthz", "/readyz"] {
        let raw = format!("GET {path} HTTP/1.1\r\n{other}\r\n");
        assert_eq!(request(addr, raw).status, 200, "{path}");
        let head = format!("HEAD {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let r = request(addr, head);
        assert_eq!(r.status, 200, "HEAD {path}");
        assert!(r.body.is_empty());
        let post = format!("POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(request(addr, post).status, 405, "POST {path}");
    }
    let raw = format!("GET /votes HTTP/1.1\r\n{other}\r\n");
    assert_eq!(request(addr, raw).status, 421);
    assert_eq!(metric(addr, "livevote_draining"), 0);
}

#[test]
fn a_journal_server_says_its_store() {
    let dir = TempDir::new("health");
    let server = start_on(&dir.journal(), &[]);
    let j = get(server.addr, "/healthz").json();
    assert_eq!(j["store"].as_str(), "journal");
    assert!(j["store_usable"].as_bool());
    assert_eq!(get(server.addr, "/readyz").status, 200);
    // The journal's file is gone (deleted by hand): votes appended now would be lost at the
    // next start, so the instance is not ready, and says why; it is still alive.
    std::fs::remove_file(dir.journal()).expect("remove the journal");
    let r = get(server.addr, "/readyz");
    assert_eq!(r.status, 503, "{r:?}");
    let j = r.json();
    assert!(!j["ready"].as_bool());
    assert!(!j["draining"].as_bool());
    assert!(j["reason"].as_str().starts_with("store: "), "{j:?}");
    let h = get(server.addr, "/healthz");
    assert_eq!(h.status, 200);
    assert!(!h.json()["store_usable"].as_bool());
}

/// One vote and its answer.
struct Acked {
    vote_id: String,
    uid: String,
    count: u64,
    version: u64,
}

/// Votes with vote ids as fast as one connection allows until the server refuses connections;
/// reconnects whenever a response closes its connection. What was acknowledged (200), and
/// whether any answer was something else than 200 or a 503 "shutting down".
fn storm_voter(addr: SocketAddr, t: usize) -> (Vec<Acked>, Vec<String>) {
    let (mut acked, mut odd) = (Vec::new(), Vec::new());
    let started = Instant::now();
    let mut n = 0;
    'connections: while started.elapsed() < LIMIT {
        let Ok(mut c) = Client::try_connect(addr) else {
            break; // refused: the server stopped accepting
        };
        loop {
            n += 1;
            let id = format!("v{t}-{n}");
            let uid = ["1", "2"][(n + t) % 2];
            let r = match c.try_call(post_req("/vote", &format!("uid={uid}&vote_id={id}"))) {
                Ok(r) => r,
                Err(_) => continue 'connections,
            };
            match r.status {
                200 => {
                    let j = r.json();
                    acked.push(Acked {
                        vote_id: id,
                        uid: j["uid"].as_str().to_string(),
                        count: j["count"].as_u64(),
                        version: j["version"].as_u64(),
                    })
                }
                503 => {}
                s => odd.push(format!("{id}: {s} {}", String::from_utf8_lossy(&r.body))),
            }
            if r.closes() {
                continue 'connections;
            }
        }
    }
    (acked, odd)
}

#[test]
fn sigterm_drains_every_client_and_loses_no_acknowledged_vote() {
    let dir = TempDir::new("shutdown");
    let journal = dir.journal();
    let server = start_on(
        &journal,
        &[
            "--shutdown-delay",
            "2.5",
            "--shutdown-timeout",
            "12",
            "--longpoll-timeout",
            "60",
            "--sse-heartbeat",
            "60",
        ],
    );
    let addr = server.addr;

    // The live clients, each connected and current before the signal.
    let mut ws = ws_connect(addr, "/get_new_vote");
    ws.get_ref().set_read_timeout(Some(LIMIT)).unwrap();
    ws_next_json(&mut ws); // the resume
    let mut sse = open_events(addr, "/events", "");
    sse.read_timeout(LIMIT);
    sse.next_event(); // the resume
                      // Both read all along (as browsers do), each until its end: the WebSocket's close code,
                      // and how the event stream ended.
    let ws_reader = thread::spawn(move || close_code(&mut ws));
    let sse_reader = thread::spawn(move || loop {
        if let Err(e) = sse.block() {
            return e.kind();
        }
    });
    // A long-poller that keeps polling from its last version until it is refused.
    let long_poller = thread::spawn(move || {
        let mut answers = 0;
        let mut version = version_counts(addr).0;
        let started = Instant::now();
        'connections: while started.elapsed() < LIMIT {
            let Ok(mut c) = Client::try_connect(addr) else {
                return answers;
            };
            loop {
                let Ok(r) = c.try_call(get_req(&format!("/get_new_vote?since={version}"))) else {
                    continue 'connections;
                };
                assert_eq!(r.status, 200, "{r:?}");
                answers += 1;
                version = r.json()["version"].as_u64().max(version);
                if r.closes() {
                    continue 'connections;
                }
            }
        }
        panic!("the long-poller was never refused");
    });
    let voters: Vec<_> = (0..4)
        .map(|t| thread::spawn(move || storm_voter(addr, t)))
        .collect();
    // The storm is under way.
    wait_for(LIMIT, "votes counted", || {
        (version_counts(addr).0 >= 50).then_some(())
    });

    kill(&server, "TERM");
    let signalled = Instant::now();
    wait_for_line(&server, "SIGTERM received");
    // Draining: not ready, still alive and accepting (for the delay: refused after it).
    wait_for(LIMIT, "/readyz 503", || match status_of(addr, "/readyz") {
        Some(503) => Some(()),
        Some(_) => None,
        None => panic!("refused before /readyz was seen answering 503"),
    });
    assert_eq!(status_of(addr, "/healthz"), Some(200));
    let mut c = Client::connect(addr);
    let r = c.call(get_req("/readyz"));
    assert!(
        r.closes(),
        "responses close their connections while draining"
    );
    assert!(!r.json()["ready"].as_bool());
    assert!(r.json()["draining"].as_bool());
    let h = get(addr, "/healthz").json();
    assert!(h["draining"].as_bool());
    assert_eq!(metric(addr, "livevote_draining"), 1);

    // The WebSocket is closed with 1001 (going away), after whatever it was sent before.
    assert_eq!(ws_reader.join().expect("the WebSocket reader"), Some(1001));
    // The event stream ends (after the events it was sent).
    assert_eq!(
        sse_reader.join().expect("the event stream reader"),
        std::io::ErrorKind::UnexpectedEof
    );
    let answers = long_poller.join().expect("the long-poller");
    assert!(answers > 0);
    let mut acked = Vec::new();
    for v in voters {
        let (a, odd) = v.join().expect("a voter");
        assert!(odd.is_empty(), "unexpected answers: {odd:#?}");
        acked.extend(a);
    }
    assert!(!acked.is_empty(), "no vote acknowledged");
    let (code, stderr) = server.exit_status();
    let took = signalled.elapsed();
    assert_eq!(code, Some(0), "exit code; stderr:\n{stderr}");
    assert!(took < Duration::from_secs(12), "took {took:?}");
    assert!(stderr.contains("livevote: [info] stopped"), "{stderr}");
    eprintln!(
        "shutdown: {} votes acknowledged, {answers} long-poll answers, exit after {took:?}",
        acked.len()
    );

    // Every acknowledged vote is in the journal: after a restart, each vote id replays with
    // the answer it was acknowledged with (whatever candidate the retry names), and the
    // tally holds at least them all.
    let server = start_on(&journal, &[]);
    let total: u64 = version_counts(server.addr).1.values().sum();
    assert!(total >= acked.len() as u64, "{total} < {}", acked.len());
    let mut c = Client::connect(server.addr);
    for a in &acked {
        let r = c.call(post_req("/vote", &format!("uid=1&vote_id={}", a.vote_id)));
        assert_eq!(r.status, 200, "{r:?}");
        let j = r.json();
        let answer = (
            j["uid"].as_str(),
            j["count"].as_u64(),
            j["version"].as_u64(),
        );
        assert_eq!(
            answer,
            (a.uid.as_str(), a.count, a.version),
            "{}: not the acknowledged answer",
            a.vote_id
        );
    }
    assert_eq!(
        metric(server.addr, "livevote_vote_replays_total"),
        acked.len() as u64
    );
    assert_eq!(
        version_counts(server.addr).1.values().sum::<u64>(),
        total,
        "the retries counted nothing"
    );
}

#[test]
fn a_second_sigterm_exits_at_once() {
    let server = Livevote::start_local([
        "--memory",
        "--shutdown-delay",
        "8",
        "--shutdown-timeout",
        "9",
    ]);
    kill(&server, "TERM");
    // Printed once draining has begun.
    wait_for_line(&server, "livevote: [info] shutting down:");
    assert_eq!(status_of(server.addr, "/readyz"), Some(503));
    let second = Instant::now();
    kill(&server, "TERM");
    let (code, stderr) = server.exit_status();
    assert_eq!(code, Some(128 + 15), "stderr:\n{stderr}");
    assert!(
        second.elapsed() < Duration::from_secs(2),
        "{:?}",
        second.elapsed()
    );
    assert!(stderr.contains("second signal"), "{stderr}");
}

/// Reads a WebSocket until its close frame: the code (None: a close without one).
fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Close(frame)) => {
                let _ = ws.flush();
                return frame.map(|f| u16::from(f.code));
            }
            Ok(_) => {}
            Err(e) => panic!("the WebSocket ended without a close frame: {e}"),
        }
    }
}

#[test]
fn sigint_ends_idle_streams_and_long_polls_at_once() {
    let server = Livevote::start_local([
        "--memory",
        "--shutdown-delay",
        "0",
        "--longpoll-timeout",
        "60",
        "--sse-heartbeat",
        "60",
    ]);
    let addr = server.addr;
    let mut chat = ws_connect(addr, "/chatsocket");
    let mut votes = ws_connect(addr, "/get_new_vote");
    for ws in [&mut chat, &mut votes] {
        ws.get_ref().set_read_timeout(Some(LIMIT)).unwrap();
    }
    ws_next_json(&mut votes); // the resume
    let mut sse = open_events(addr, "/events", "");
    sse.read_timeout(LIMIT);
    sse.next_event();
    let version = version_counts(addr).0;
    let mut poll = Client::connect(addr);
    poll.read_timeout(LIMIT);
    poll.send(get_req(&format!("/get_new_vote?since={version}")));
    // The long-poll is waiting (a request in flight, so the shutdown waits for it).
    wait_for(LIMIT, "the long-poll to wait", || {
        (metric(addr, "livevote_open_connections") >= 4).then_some(())
    });
    kill(&server, "INT");
    let signalled = Instant::now();
    // Answered at once (not after its 60 s), with the current state, and closed.
    let r = poll.read_response();
    assert_eq!(r.status, 200);
    assert!(r.closes(), "{r:?}");
    let j = r.json();
    assert!(!j["status"].as_bool(), "no news: {j:?}");
    assert_eq!(j["version"].as_u64(), version);
    poll.assert_closed();
    assert_eq!(close_code(&mut chat), Some(1001));
    assert_eq!(close_code(&mut votes), Some(1001));
    let ended = loop {
        if let Err(e) = sse.block() {
            break e;
        }
    };
    assert_eq!(ended.kind(), std::io::ErrorKind::UnexpectedEof, "{ended}");
    let (code, stderr) = server.exit_status();
    assert_eq!(code, Some(0), "stderr:\n{stderr}");
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "{:?}",
        signalled.elapsed()
    );
    assert!(stderr.contains("SIGINT received"), "{stderr}");
    assert!(
        stderr.contains("closing 2 WebSocket(s) (1001), ending 1 event stream(s)"),
        "{stderr}"
    );
}

/// `livevote probe ARGS`: its exit code.
fn probe(args: &[&str]) -> Option<i32> {
    Command::new(BIN)
        .arg("probe")
        .args(args)
        .output()
        .expect("run livevote probe")
        .status
        .code()
}

#[test]
fn probe_exits_0_for_a_healthy_server_and_1_otherwise() {
    let server = Livevote::start_local(["--memory"]);
    let addr = server.addr;
    assert_eq!(probe(&[&format!("http://{addr}")]), Some(0));
    assert_eq!(probe(&[&format!("http://{addr}/healthz")]), Some(0));
    assert_eq!(probe(&[&format!("http://{addr}/readyz")]), Some(0));
    assert_eq!(probe(&[&format!("http://{addr}/nope")]), Some(1), "404");
    drop(server);
    // The port is closed now (the server was killed and reaped).
    wait_for(LIMIT, "the port to close", || {
        std::net::TcpStream::connect(addr).is_err().then_some(())
    });
    assert_eq!(probe(&[&format!("http://{addr}/healthz")]), Some(1));
    assert_eq!(probe(&["ftp://x"]), Some(1), "not an http URL");
}

#[test]
fn a_redis_outage_shows_in_healthz_not_in_readyz_and_shutdown_still_ends() {
    let mut redis = common::redis::RedisServer::start(&[]);
    let url = redis.url_string();
    let server = Livevote::start_local(["--redis", url.as_str(), "--shutdown-delay", "0"]);
    let addr = server.addr;
    vote(addr, "1");
    let j = get(addr, "/healthz").json();
    assert_eq!(j["store"].as_str(), "redis");
    assert!(j["redis"]["up"].as_bool(), "{j:?}");
    assert_eq!(get(addr, "/readyz").status, 200);

    redis.kill();
    wait_for(LIMIT, "/healthz to say Redis is down", || {
        (!get(addr, "/healthz").json()["redis"]["up"].as_bool()).then_some(())
    });
    assert_eq!(metric(addr, "livevote_redis_up"), 0);
    let r = get(addr, "/readyz");
    assert_eq!(
        r.status, 200,
        "a Redis outage leaves readiness alone: {r:?}"
    );

    kill(&server, "TERM");
    let signalled = Instant::now();
    let (code, stderr) = server.exit_status();
    assert_eq!(code, Some(0), "stderr:\n{stderr}");
    assert!(signalled.elapsed() < Duration::from_secs(10));
}
