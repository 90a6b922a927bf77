//! Limits and refusals not covered by `tests/http.rs` (issue 5): the per-address connection cap,
//! the origin check on `POST /vote` and `/ticket`, vote ids (malformed, repeated, over
//! WebSocket), and floods against the real binary — idle, half-open and never-reading
//! connections that the server must shed by itself until its thread and connection counts are
//! back at their baseline, WebSocket subscribers whose send buffers are full dropped by the
//! write timeout, a flood beyond `--max-connections`, and the refusals counted in `/metrics`.
//!
//! The shared helpers are in `tests/common`. Every client socket has a timeout, every server
//! process is killed by its handle when its guard drops, and everything targets 127.0.0.1 only.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::binary::Livevote;
use common::metrics::{metric, scrape, series, try_scrape};
use common::*;
use tungstenite::Message;

/// Bound on waiting for the server to shed a flood or free a slot.
const SHED_LIMIT: Duration = Duration::from_secs(10);
/// Threads that may come and go around a measurement (a connection thread finishing its close).
const THREAD_SLACK: usize = 2;

// ---------------------------------------------------------------------------------------------
// The per-address cap

#[test]
fn the_fourth_connection_from_one_address_gets_503_until_one_closes() {
    let addr = start(|c| c.limits.max_connections_per_ip = 3);
    // Three connections: two keep-alive HTTP, one WebSocket (an upgraded connection counts).
    let mut a = Client::connect(addr);
    assert_eq!(a.call(get_req("/votes")).status, 200);
    let mut b = Client::connect(addr);
    assert_eq!(b.call(get_req("/votes")).status, 200);
    let mut ws = ws_connect(addr, "/get_new_vote");
    assert_eq!(ws_next_json(&mut ws)["type"].as_str(), "resume");

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
    assert_eq!(a.call(get_req("/votes")).status, 200);
    assert_eq!(b.call(get_req("/votes")).status, 200);

    // One closes: its slot comes back, for one new connection only.
    drop(a);
    let mut c = wait_for(SHED_LIMIT, "a free slot after a close", || {
        served_client(addr)
    });
    assert_refused(addr);
    // A WebSocket closing gives its slot back the same way.
    ws.close(None).expect("close the WebSocket");
    while ws.read().is_ok() {}
    wait_for(SHED_LIMIT, "a free slot after a WebSocket close", || {
        served_client(addr)
    });
    assert_eq!(c.call(get_req("/votes")).status, 200);
    assert_eq!(b.call(get_req("/votes")).status, 200);
}

/// A new connection gets `503` with a `Retry-After` of whole seconds, and is closed.
fn assert_refused(addr: SocketAddr) {
    let mut c = Client::connect(addr);
    let _ = c.try_send(get_req("/votes"));
    let r = c
        .try_read_response_to("GET")
        .expect("a refusal, not a reset")
        .expect("a refusal, not a close");
    assert_eq!(r.status, 503, "{}", r.text());
    let retry = r.header("retry-after").expect("Retry-After on a 503");
    assert!(retry.parse::<u64>().is_ok_and(|s| s >= 1), "{retry}");
    assert!(r
        .header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close")));
    // The refused connection is closed.
    c.assert_closed();
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
    let mut c = Client::connect(addr);
    for origin in &foreign {
        for (path, body) in [
            ("/vote", "uid=1"),
            ("/ticket", "nid=2"),
            ("/vote", "uid=1&vote_id=x1"),
            ("/vote", "uid=1&back=%2Findex"),
        ] {
            let r = c.call(post_from(path, body, &host, Some(origin)));
            assert_eq!(r.status, 403, "{path} {body} from {origin}: {}", r.text());
        }
    }
    // The same vote id from the right origin counts: the refusal did not remember it.
    let r = c.call(post_from("/vote", "uid=1&vote_id=x1", &host, None));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["version"].as_u64(), 1);
    assert_eq!(version_counts(addr).0, 1, "only the last vote counted");
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
    let mut c = Client::connect(addr);
    for (i, (h, origin)) in cases.iter().enumerate() {
        for (path, field) in [("/vote", "uid"), ("/ticket", "nid")] {
            let r = c.call(post_from(path, &format!("{field}=1"), h, origin.as_deref()));
            assert_eq!(
                r.status,
                200,
                "case {i}: {path} from {origin:?}: {}",
                r.text()
            );
        }
    }
    assert_eq!(version_counts(addr).0, 2 * cases.len() as u64);
}

// ---------------------------------------------------------------------------------------------
// Vote ids

#[test]
fn a_malformed_vote_id_is_400_and_counts_nothing() {
    let addr = start(|_| {});
    let long = "x".repeat(65);
    let bad = ["", "a+b", "a%20b", "%C3%A9", "a%2Fb", "a.b", "a%00", &long];
    let mut c = Client::connect(addr);
    for id in bad {
        for (path, field) in [("/vote", "uid"), ("/ticket", "nid")] {
            let r = c.call(post_req(path, &format!("{field}=1&vote_id={id}")));
            assert_eq!(r.status, 400, "{path} vote_id={id:?}: {}", r.text());
            let r = c.call(post_req(
                &format!("{path}?vote_id={id}"),
                &format!("{field}=1"),
            ));
            assert_eq!(r.status, 400, "{path}?vote_id={id:?}: {}", r.text());
        }
    }
    assert_eq!(version_counts(addr).0, 0);
    // The longest allowed id is fine.
    let r = c.call(post_req(
        "/vote",
        &format!("uid=1&vote_id={}", "y".repeat(64)),
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(version_counts(addr).0, 1);
}

#[test]
fn a_vote_id_sent_again_gets_the_first_answer_and_counts_once() {
    let addr = start(|_| {});
    let mut c = Client::connect(addr);
    let first = c.call(post_req("/vote", "uid=1&vote_id=same-1"));
    assert_eq!(first.status, 200, "{}", first.text());
    // Another vote in between: the retry still gets the first answer, not today's count.
    assert_eq!(c.call(post_req("/vote", "uid=1&vote_id=other")).status, 200);
    for (path, body) in [
        ("/vote", "uid=1&vote_id=same-1"),
        ("/vote", "uid=2&vote_id=same-1"),
        ("/ticket", "nid=1&vote_id=same-1"),
        ("/vote?vote_id=same-1", "uid=1"),
    ] {
        let again = c.call(post_req(path, body));
        assert_eq!(again.status, 200, "{path} {body}");
        assert_eq!(
            again.body, first.body,
            "{path} {body}: not the first answer"
        );
    }
    // On a new connection, and as the query string's id: the same.
    let q = Client::connect(addr).call(post_req("/ticket?vote_id=q-1", "nid=2"));
    assert_eq!(q.status, 200);
    let q2 = Client::connect(addr).call(post_req("/ticket?vote_id=q-1", "nid=2"));
    assert_eq!(q2.body, q.body);
    let (version, counts) = version_counts(addr);
    assert_eq!(version, 3);
    assert_eq!(counts, [("1".into(), 2), ("2".into(), 1)].into());
}

#[test]
fn a_vote_id_over_websocket_is_acknowledged_then_replayed() {
    let addr = start(|_| {});
    let mut ws = ws_connect(addr, "/get_new_vote");
    let vote = |id: &str| Message::Text(vote_message("1", id));

    ws.send(vote("ws-1")).unwrap();
    let ack = ws_next_of_type(&mut ws, "ack");
    assert_eq!(ack["vote_id"].as_str(), "ws-1");
    assert_eq!(ack["uid"].as_str(), "1");
    assert_eq!((ack["count"].as_u64(), ack["version"].as_u64()), (1, 1));
    assert!(!ack["replayed"].as_bool());

    ws.send(vote("ws-1")).unwrap();
    let again = ws_next_of_type(&mut ws, "ack");
    assert!(again["replayed"].as_bool(), "{again:?}");
    assert_eq!((again["count"].as_u64(), again["version"].as_u64()), (1, 1));

    // The same id over HTTP is the same vote; and an HTTP vote's id replays over WebSocket.
    let r = Client::connect(addr).call(post_req("/vote", "uid=1&vote_id=ws-1"));
    assert_eq!(r.status, 200);
    assert_eq!(
        (r.json()["count"].as_u64(), r.json()["version"].as_u64()),
        (1, 1)
    );
    let r = Client::connect(addr).call(post_req("/vote", "uid=2&vote_id=http-1"));
    assert_eq!(r.json()["version"].as_u64(), 2);
    ws.send(vote("http-1")).unwrap();
    let ack = ws_next_of_type(&mut ws, "ack");
    assert!(ack["replayed"].as_bool());
    assert_eq!(
        (
            ack["uid"].as_str(),
            ack["count"].as_u64(),
            ack["version"].as_u64()
        ),
        ("2", 1, 2)
    );

    // A malformed id is an error message, and counts nothing.
    for bad in ["", "a b", &"z".repeat(65)] {
        ws.send(vote(bad)).unwrap();
        let e = ws_next_of_type(&mut ws, "error");
        assert!(e["error"].as_str().contains("vote_id"), "{e:?}");
    }
    assert_eq!(version_counts(addr).0, 2);
}

// ---------------------------------------------------------------------------------------------
// Floods against the real binary

/// The thread count once the server is quiet: two readings 300 ms apart that agree.
fn quiet_threads(server: &Livevote) -> usize {
    wait_for(SHED_LIMIT, "a stable thread count", || {
        let a = server.threads();
        thread::sleep(Duration::from_millis(300));
        (server.threads() == a).then_some(a)
    })
}

#[test]
fn a_flood_of_idle_half_open_and_never_reading_connections_is_shed_back_to_baseline() {
    let server = Livevote::start_local([
        "--memory",
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
    let mut flood = |n: usize, first: &dyn Fn(usize) -> Option<String>| -> Vec<Client> {
        (0..n)
            .map(|i| {
                let mut s = Client::connect(addr);
                if let Some(bytes) = first(i) {
                    s.send(bytes);
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
            get_req("/get_new_vote")
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
    let mut c = Client::connect(addr);
    for _ in 0..20 {
        assert_eq!(c.call(post_req("/vote", "uid=1")).status, 200);
    }
    drop(c);
    // Close half of the idle ones; abandon the rest: the server must drop them by itself.
    idle.truncate(150);

    let settled = wait_for(SHED_LIMIT, "the flood to be shed", || {
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
            s.read_to_close(),
            b"",
            "an idle connection is closed without a word"
        );
    }
    for mut s in half {
        let bytes = s.read_to_close();
        assert!(
            bytes.starts_with(b"HTTP/1.1 408 "),
            "{:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
    for (i, mut s) in deaf.into_iter().enumerate() {
        let bytes = s.read_to_close();
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
    assert_eq!(Client::connect(addr).call(get_req("/votes")).status, 200);
    assert_eq!(version_counts(addr).0, 20);
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
    let server = Livevote::start_local([
        "--memory",
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
        series(&scrape(addr), "livevote_open_connections{transport=\"ws\"}")
            .expect("the ws connection gauge")
    };
    wait_for(SHED_LIMIT, "the deaf subscribers to connect", || {
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

    // A write timeout can only fire on a write: keep a trickle of votes going. The kernel may
    // still take some bytes now and then (that is progress, and restarts the timeout); once
    // the send queues have not moved for the write timeout (1 s) plus a generous margin for a
    // busy machine, every one of these connections must be gone.
    const STILL: Duration = Duration::from_secs(6);
    let mut c = Client::connect(addr);
    let (mut queues, mut moved) = (last.clone(), Instant::now());
    loop {
        let (open, threads) = (ws_open(addr), server.threads());
        if open == 0 && threads <= baseline + THREAD_SLACK {
            break;
        }
        let now = send_queues(addr, &ports);
        if now != queues {
            (queues, moved) = (now, Instant::now());
        }
        assert!(
            moved.elapsed() < STILL && full_at.elapsed() < SHED_LIMIT * 6,
            "{open} of 4 WebSocket subscribers that never read are still connected \
             ({threads} threads, baseline {baseline}) {:?} after their send buffers filled, \
             their send queues still for {:?}, votes flowing: {last:?} then, {queues:?} now",
            full_at.elapsed(),
            moved.elapsed(),
        );
        for _ in 0..10 {
            let r = c.call(post_req("/vote", &format!("uid={one}")));
            assert_eq!(r.status, 200);
        }
        thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "deaf subscribers dropped {:?} after their buffers filled",
        full_at.elapsed()
    );
    drop(deaf);
}

#[test]
fn max_connections_50_refuses_a_flood_of_80_and_serves_again_afterwards() {
    let server = Livevote::start_local(["--memory", "--max-connections", "50"]);
    let addr = server.addr;
    let mut flood: Vec<Client> = (0..80)
        .map(|_| {
            let mut c = Client::connect(addr);
            c.send(get_req("/votes"));
            c
        })
        .collect();
    let mut served = Vec::new();
    let mut refused = 0;
    for (i, c) in flood.iter_mut().enumerate() {
        let r = c.read_response();
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
        assert_eq!(flood[i].call(get_req("/votes")).status, 200);
    }
    drop(flood);
    wait_for(SHED_LIMIT, "the server to serve again", || {
        served_client(addr)
    });
    wait_for(SHED_LIMIT, "the connection gauge back at 1", || {
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
        let mut held: Vec<Client> = (0..2)
            .map(|_| {
                let mut c = Client::connect(addr);
                assert_eq!(c.call(get_req("/votes")).status, 200);
                c
            })
            .collect();
        for _ in 0..5 {
            assert_refused(addr);
        }
        held.clear();
        let name = format!("livevote_connections_refused_total{{reason=\"{reason}\"}}");
        // Until the server has seen the closes, the scrape itself may be refused: count those.
        let mut attempts = 0;
        let text = wait_for(SHED_LIMIT, "a free slot", || {
            attempts += 1;
            try_scrape(addr)
        });
        let refused =
            series(&text, &name).unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"));
        assert!(
            (5..5 + attempts).contains(&refused),
            "{name} is {refused}: 5 refused, then {} scrapes refused at most",
            attempts - 1
        );
    }
}
