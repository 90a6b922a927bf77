//! Many instances as one, through a real Redis (`--redis`): each test starts its own
//! `redis-server` on a free port in a temp dir and several real `livevote` processes on it,
//! and talks to them as clients do — raw HTTP, tungstenite WebSockets, SSE — never through our
//! own client code. What they check is what the issue promises: a vote on one instance reaches
//! every transport on every other; a cursor means the same everywhere; a vote id counts once
//! across instances; every acknowledged vote is in the tally, through `kill -9` and through a
//! Redis outage.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::binary::Livevote;
use common::metrics::{metric, series};
use common::redis::RedisServer;
use common::*;

/// Hang guard for conditions that follow a vote across instances (normally well under a
/// millisecond). Never what a test measures.
const CONVERGE: Duration = Duration::from_secs(10);

fn instance(redis: &RedisServer, extra: &[&str]) -> Livevote {
    let url = redis.url_string();
    let mut args = vec!["--redis", url.as_str(), "--max-connections-per-ip", "0"];
    args.extend_from_slice(extra);
    Livevote::start_local(args)
}

/// Three instances on `redis`, defaults otherwise.
fn three(redis: &RedisServer) -> [Livevote; 3] {
    [(); 3].map(|()| instance(redis, &[]))
}

fn total(counts: &BTreeMap<String, u64>) -> u64 {
    counts.values().sum()
}

/// Waits until every instance shows the same version and tally; returns it.
fn converged(addrs: &[SocketAddr]) -> (u64, String, BTreeMap<String, u64>) {
    wait_for(CONVERGE, "every instance to show the same tally", || {
        let all: Vec<_> = addrs.iter().map(|&a| tally(a)).collect();
        all.windows(2).all(|w| w[0] == w[1]).then(|| all[0].clone())
    })
}

fn vote_with_id(addr: SocketAddr, uid: &str, id: &str) -> Response {
    post(addr, "/vote", &format!("uid={uid}&vote_id={id}"))
}

#[test]
fn a_vote_on_one_instance_reaches_every_transport_on_the_others() {
    let redis = RedisServer::start(&[]);
    let [a, b, c] = three(&redis);
    let (v0, epoch, _) = tally(a.addr);
    assert_eq!(tally(b.addr).1, epoch, "one epoch for every instance");

    // A WebSocket subscriber on B, an SSE subscriber and a long-poller on C.
    let mut ws = ws_connect(b.addr, "/get_new_vote");
    assert_eq!(resume(&ws_next_non_presence(&mut ws)).to, v0);
    let mut sse = open_events(c.addr, "/events", "");
    let first = sse.next_non_presence();
    assert_eq!(first.id.as_deref(), Some(format!("{epoch}-{v0}").as_str()));
    let poll_addr = c.addr;
    let poller = thread::spawn(move || {
        get(
            poll_addr,
            &format!("/get_new_vote?since={v0}&epoch={epoch}"),
        )
    });
    // The long-poll is parked before the vote (its waiting gauge says so).
    wait_for(CONVERGE, "the long-poll to wait on C", || {
        let text = common::metrics::scrape(c.addr);
        (series(&text, "livevote_open_connections{transport=\"longpoll\"}") == Some(1))
            .then_some(())
    });

    let answer = vote(a.addr, "1");
    let v1 = answer["version"].as_u64();
    assert_eq!(v1, v0 + 1);
    // Read your writes: the instance that answered shows the vote at once.
    assert!(
        tally(a.addr).0 >= v1,
        "A answered before its copy had the vote"
    );

    let live = ws_next_non_presence(&mut ws);
    assert_eq!(
        (
            live["uid"].as_str(),
            live["count"].as_u64(),
            live["version"].as_u64()
        ),
        ("1", answer["count"].as_u64(), v1),
        "{live:?}"
    );
    let event = sse.next_non_presence();
    let data = event.json();
    assert_eq!((data["uid"].as_str(), data["version"].as_u64()), ("1", v1));
    let lp = poller.join().unwrap();
    assert_eq!(lp.status, 200, "{lp:?}");
    let lp = lp.json();
    assert_eq!(lp["status"], Json::Bool(true), "{lp:?}");
    assert_eq!(lp["version"].as_u64(), v1, "{lp:?}");
}

#[test]
fn a_cursor_taken_on_one_instance_resumes_as_a_delta_on_another() {
    let redis = RedisServer::start(&[]);
    let [a, b, c] = three(&redis);
    vote(a.addr, "1");
    // The cursor, as a page on A holds it.
    let (since, epoch, _) = tally(a.addr);
    vote(c.addr, "2");
    vote(c.addr, "2");
    let last = vote(c.addr, "1")["version"].as_u64();
    assert_eq!(last, since + 3);
    // C answered once its own copy showed the votes; B's follower may still be on its way.
    // A resume on an instance that is behind is answered with what it has, then live: what is
    // tested here is the delta once it has them all.
    assert_eq!(converged(&[a.addr, b.addr, c.addr]).0, last);

    // WebSocket resume on B: exactly the three votes, as a delta.
    let mut ws = ws_connect(
        b.addr,
        &format!("/get_new_vote?since={since}&epoch={epoch}"),
    );
    let r = resume(&ws_next_non_presence(&mut ws));
    assert_eq!(
        (r.kind.as_str(), r.from, r.to, r.epoch.as_str()),
        ("delta", since, last, epoch.as_str())
    );
    assert_eq!(r.counts, counts(&[("1", 2), ("2", 2)]));
    // SSE's Last-Event-ID on C, and a long-poll's since= on B: the same delta.
    let mut sse = open_events(
        c.addr,
        "/events",
        &format!("Last-Event-ID: {epoch}-{since}\r\n"),
    );
    let r = resume(&sse.next_non_presence().json());
    assert_eq!((r.kind.as_str(), r.from, r.to), ("delta", since, last));
    let lp = get(
        b.addr,
        &format!("/get_new_vote?since={since}&epoch={epoch}"),
    )
    .json();
    assert_eq!(lp["kind"].as_str(), "delta", "{lp:?}");
    assert_eq!(lp["from"].as_u64(), since);
    assert_eq!(lp["version"].as_u64(), last);
    // A cursor from another epoch is a snapshot anywhere.
    let lp = get(c.addr, &format!("/get_new_vote?since={since}&epoch=other")).json();
    assert_eq!(lp["kind"].as_str(), "snapshot", "{lp:?}");
}

#[test]
fn a_vote_id_retried_on_other_instances_counts_once() {
    let redis = RedisServer::start(&[]);
    let [a, b, c] = three(&redis);
    let first = vote_with_id(a.addr, "1", "retry-across-1");
    assert_eq!(first.status, 200, "{first:?}");
    let first = first.json();
    for addr in [b.addr, c.addr, a.addr] {
        // Even naming another candidate: the id names the vote.
        let again = vote_with_id(addr, "2", "retry-across-1");
        assert_eq!(again.status, 200, "{again:?}");
        let again = again.json();
        assert_eq!(again["version"], first["version"]);
        assert_eq!(again["uid"], first["uid"]);
        assert_eq!(again["count"], first["count"]);
    }
    // Over WebSocket on C too: the ack says it is a replay.
    let mut ws = ws_connect(c.addr, "/get_new_vote");
    ws.send(tungstenite::Message::text(vote_message(
        "1",
        "retry-across-1",
    )))
    .unwrap();
    let ack = ws_next_of_type(&mut ws, "ack");
    assert_eq!(ack["replayed"], Json::Bool(true), "{ack:?}");
    assert_eq!(ack["version"], first["version"]);
    let (version, _, tally) = converged(&[a.addr, b.addr, c.addr]);
    assert_eq!((version, total(&tally)), (1, 1));
}

/// Votes from `threads` clients, each on every instance in turn, with a vote id each; returns
/// the ids acknowledged with 200, and how many got another answer.
fn storm(addrs: Vec<SocketAddr>, threads: usize, per: usize, tag: &str) -> (Vec<String>, u64) {
    let failed = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (addrs, failed, tag) = (addrs.clone(), Arc::clone(&failed), tag.to_string());
            thread::spawn(move || {
                let mut acked = Vec::new();
                for k in 0..per {
                    let addr = addrs[(t + k) % addrs.len()];
                    let id = format!("{tag}-{t}-{k}");
                    let uid = if k % 3 == 0 { "2" } else { "1" };
                    let body = format!("uid={uid}&vote_id={id}");
                    match try_request(addr, post_req("/vote", &body)) {
                        Some(r) if r.status == 200 => acked.push(id),
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                acked
            })
        })
        .collect();
    let acked = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    (acked, failed.load(Ordering::Relaxed))
}

/// One request on a fresh connection; None when the server could not be reached or cut the
/// connection (a killed instance).
fn try_request(addr: SocketAddr, req: String) -> Option<Response> {
    Client::try_connect(addr).ok()?.try_call(req).ok()
}

#[test]
fn concurrent_votes_over_three_instances_give_exactly_the_acknowledged_total_everywhere() {
    let redis = RedisServer::start(&[]);
    let servers = three(&redis);
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let (acked, failed) = storm(addrs.clone(), 6, 60, "concurrent");
    assert_eq!((acked.len(), failed), (360, 0));
    let (version, _, tally) = converged(&addrs);
    assert_eq!(total(&tally), 360);
    assert_eq!(version, 360, "one version per vote, no gaps");
    assert_eq!(tally, counts(&[("1", 240), ("2", 120)]));
}

#[test]
fn kill_9_of_one_instance_during_a_storm_loses_no_acknowledged_vote() {
    let redis = RedisServer::start(&[]);
    let a = instance(&redis, &[]);
    let b = instance(&redis, &[]);
    let c = instance(&redis, &[]);
    let addrs = vec![a.addr, b.addr, c.addr];
    let storming = thread::spawn(move || storm(addrs, 6, 150, "storm"));
    // Kill B once the storm is well under way (votes counted through it).
    wait_for(CONVERGE, "the storm to be under way", || {
        (tally(a.addr).0 >= 200).then_some(())
    });
    let _ = b.kill9();
    let (acked, failed) = storming.join().unwrap();
    assert!(failed > 0, "some votes went to the killed instance");
    let (version, epoch, tally_now) = converged(&[a.addr, c.addr]);
    // Every acknowledged vote is in the tally; at most the ones cut off with B beside them.
    let counted = total(&tally_now);
    assert!(
        counted >= acked.len() as u64 && counted <= acked.len() as u64 + failed,
        "counted {counted}, acknowledged {}, not acknowledged {failed}",
        acked.len()
    );
    // And each of them, retried, is known as counted (not counted again).
    for id in acked.iter().step_by(7) {
        let uid = if id.ends_with("-0") { "2" } else { "1" };
        let again = vote_with_id(c.addr, uid, id);
        assert_eq!(again.status, 200, "{again:?}");
    }
    assert_eq!(tally(a.addr).0, version, "retries counted nothing");
    // A restarted instance shows the same tally.
    let b2 = instance(&redis, &[]);
    assert_eq!(tally(b2.addr), (version, epoch, tally_now));
}

#[test]
fn redis_down_refuses_votes_at_once_keeps_pages_and_recovers_by_itself() {
    // With AOF: Redis restarted keeps the epoch, so cursors stay valid.
    let mut redis = RedisServer::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let a = instance(&redis, &["--vote-timeout", "2"]);
    let b = instance(&redis, &["--vote-timeout", "2"]);
    vote(a.addr, "1");
    let (since, epoch, _) = converged(&[a.addr, b.addr]);
    let mut ws = ws_connect(b.addr, "/get_new_vote");
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    resume(&ws_next_non_presence(&mut ws));

    redis.kill();
    let asked = Instant::now();
    let r = vote_with_id(a.addr, "1", "during-outage-1");
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.header("retry-after").is_some(), "{r:?}");
    // Within --vote-timeout (2 s), never a hang.
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "{:?}",
        asked.elapsed()
    );
    // Pages are still served, with the last tally.
    assert_eq!(get(a.addr, "/index").status, 200);
    assert_eq!(tally(b.addr).0, since);
    // The WebSocket page is told, in the one documented message.
    let degraded = ws_next_of_type_skipping(&mut ws, "degraded");
    assert_eq!(degraded["degraded"], Json::Bool(true), "{degraded:?}");
    wait_for(CONVERGE, "redis_up to say 0", || {
        (metric(a.addr, "livevote_redis_up") == 0).then_some(())
    });

    redis.restart();
    // Votes are accepted again without restarting livevote.
    let back = wait_for(CONVERGE, "a vote to be accepted again", || {
        let r = vote_with_id(a.addr, "2", "after-outage-1");
        (r.status == 200).then(|| r.json())
    });
    let recovered = ws_next_of_type_skipping(&mut ws, "degraded");
    assert_eq!(recovered["degraded"], Json::Bool(false), "{recovered:?}");
    let (version, epoch_after, tally_after) = converged(&[a.addr, b.addr]);
    assert_eq!(epoch_after, epoch, "AOF kept the poll: same epoch");
    assert_eq!(version, back["version"].as_u64());
    // The refused vote was not counted; the vote before the outage was kept.
    assert_eq!(tally_after, counts(&[("1", 1), ("2", 1)]));
    // A cursor from before the outage is still a delta on either instance.
    let lp = get(
        b.addr,
        &format!("/get_new_vote?since={since}&epoch={epoch}"),
    )
    .json();
    assert_eq!(lp["kind"].as_str(), "delta", "{lp:?}");
}

#[test]
fn redis_restarted_without_persistence_is_a_new_epoch_and_every_client_gets_a_snapshot() {
    let mut redis = RedisServer::start(&[]);
    let a = instance(&redis, &[]);
    let b = instance(&redis, &[]);
    vote(a.addr, "1");
    vote(a.addr, "1");
    let (_, epoch, _) = converged(&[a.addr, b.addr]);
    let mut ws = ws_connect(b.addr, "/get_new_vote");
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    resume(&ws_next_non_presence(&mut ws));
    let mut sse = open_events(a.addr, "/events", "");
    sse.next_non_presence();

    redis.kill();
    redis.restart();
    // Each instance notices the empty Redis, writes the poll again: a new epoch, zero tally.
    let (version, new_epoch, tally_now) = wait_for(CONVERGE, "a new epoch on both", || {
        let (a_t, b_t) = (tally(a.addr), tally(b.addr));
        (a_t.1 != epoch && a_t == b_t).then_some(a_t)
    });
    assert_eq!((version, total(&tally_now)), (0, 0));
    let snap = ws_next_of_type_skipping(&mut ws, "snapshot");
    assert_eq!(snap["epoch"].as_str(), new_epoch, "{snap:?}");
    let event = loop {
        let e = sse.next_non_presence();
        if matches!(&e.json()["type"], Json::Str(t) if t == "snapshot") {
            break e;
        }
    };
    assert_eq!(
        event.id.as_deref(),
        Some(format!("{new_epoch}-0").as_str()),
        "its id carries the new epoch"
    );
    // The new epoch counts from one, on every instance.
    assert_eq!(vote(b.addr, "2")["version"].as_u64(), 1);
    let live = ws_next_non_presence(&mut ws);
    assert_eq!(live["version"].as_u64(), 1, "{live:?}");
}

#[test]
fn presence_is_the_total_over_every_instance_and_a_poller_counts_once() {
    let redis = RedisServer::start(&[]);
    let a = instance(&redis, &[]);
    let b = instance(&redis, &[]);
    let _ws = ws_connect(a.addr, "/get_new_vote");
    let _sse = open_events(b.addr, "/events", "");
    // One poller whose requests alternate between the instances.
    for addr in [a.addr, b.addr, a.addr, b.addr] {
        assert_eq!(
            get(addr, "/votes?viewer=poller-alternating-1&transport=poll").status,
            200
        );
    }
    for addr in [a.addr, b.addr] {
        wait_for(CONVERGE, "presence over both instances", || {
            let j = get(addr, "/votes").json();
            let p = &j["presence"];
            ((p["ws"].as_u64(), p["sse"].as_u64(), p["poll"].as_u64()) == (1, 1, 1)).then_some(())
        });
    }
}

#[test]
fn redis_with_another_flag_for_the_store_is_a_usage_error() {
    for other in [&["--memory"][..], &["--data", "x.journal"]] {
        let mut args = vec!["--redis", "redis://127.0.0.1:1"];
        args.extend_from_slice(other);
        let (code, stderr) = Livevote::spawn(args).exit_status();
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains("--redis"), "{stderr}");
    }
    // Unreachable at start: a start-up error (1), saying where.
    let port = common::redis::free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let (code, stderr) =
        Livevote::spawn(["--redis", url.as_str(), "--addr", "127.0.0.1:0"]).exit_status();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
}

#[test]
fn different_candidates_use_the_ones_in_redis_and_say_so() {
    let redis = RedisServer::start(&[]);
    let a = instance(&redis, &["--candidate", "x=Ex", "--candidate", "y=Why"]);
    let b = instance(&redis, &["--candidate", "z=Zed"]);
    assert!(
        b.stderr_text()
            .contains("the --candidate flags (z=Zed) are not used"),
        "{}",
        b.stderr_text()
    );
    let (_, _, tally_b) = tally(b.addr);
    assert_eq!(tally_b, counts(&[("x", 0), ("y", 0)]));
    vote(b.addr, "y");
    assert_eq!(
        converged(&[a.addr, b.addr]).2,
        counts(&[("x", 0), ("y", 1)])
    );
}

#[test]
fn an_evicting_redis_is_warned_about_at_start() {
    let redis = RedisServer::start(&["--maxmemory-policy", "allkeys-lru"]);
    let a = instance(&redis, &[]);
    let text = a.stderr_text();
    assert!(
        text.contains("maxmemory-policy is allkeys-lru") && text.contains("noeviction"),
        "{text}"
    );
}

/// The next WebSocket message of type `kind`, skipping every other (presence, votes).
fn ws_next_of_type_skipping(ws: &mut Ws, kind: &str) -> Json {
    loop {
        let j = ws_next_json(ws);
        if matches!(&j["type"], Json::Str(t) if t == kind) {
            return j;
        }
    }
}

#[test]
fn a_long_poller_alternating_between_instances_never_misses_or_repeats_a_vote() {
    let redis = RedisServer::start(&[]);
    let [a, b, c] = three(&redis);
    let (mut since, epoch, _) = tally(a.addr);
    let voter = thread::spawn(move || storm(vec![c.addr], 2, 60, "alternate").0.len());
    // Each request goes to the other instance, with the cursor the last answer gave.
    let mut seen = Vec::new();
    let deadline = Instant::now() + CONVERGE * 3;
    for k in 0.. {
        assert!(
            Instant::now() < deadline,
            "the poller did not see every vote"
        );
        let addr = if k % 2 == 0 { a.addr } else { b.addr };
        let j = get(addr, &format!("/get_new_vote?since={since}&epoch={epoch}")).json();
        assert_eq!(j["epoch"].as_str(), epoch, "{j:?}");
        if j["status"] == Json::Bool(true) {
            assert_eq!(j["from"].as_u64(), since, "{j:?}");
            let to = j["version"].as_u64();
            assert!(to > since, "answered {to} after {since}: went back");
            seen.extend(since + 1..=to);
            since = to;
        }
        if since == 120 {
            break;
        }
    }
    assert_eq!(voter.join().unwrap(), 120);
    assert_eq!(
        seen,
        (1..=120).collect::<Vec<_>>(),
        "each vote once, in order"
    );
}

#[test]
fn a_polling_etag_from_a_faster_instance_is_never_answered_with_an_older_tally() {
    let redis = RedisServer::start(&[]);
    let (a, b) = (instance(&redis, &[]), instance(&redis, &[]));
    for _ in 0..20 {
        vote(a.addr, "1");
        // The ETag as A gives it, asked of B at once: B answers nothing older.
        let r = get(a.addr, "/votes?transport=poll");
        let etag = r.header("etag").unwrap().to_string();
        let on_a = r.json()["version"].as_u64();
        let r = request(
            b.addr,
            get_req_with(
                "/votes?transport=poll",
                &format!("If-None-Match: {etag}\r\n"),
            ),
        );
        match r.status {
            304 => {}
            200 => assert!(r.json()["version"].as_u64() >= on_a, "{r:?}"),
            other => panic!("{other}: {r:?}"),
        }
    }
}

#[test]
fn a_vote_whose_answer_is_lost_is_outcome_unknown_and_its_retry_learns_the_truth() {
    let redis = RedisServer::start(&["--enable-debug-command", "yes"]);
    let a = instance(&redis, &["--vote-timeout", "1"]);
    let b = instance(&redis, &["--vote-timeout", "1"]);
    // Redis stops answering for 3 s (DEBUG SLEEP blocks it), longer than --vote-timeout: the
    // script reaches it, runs after the sleep, but its answer misses the deadline.
    let url = redis.url_string();
    let sleeper = thread::spawn(move || {
        let mut c = livevote::redis::Client::connect(
            livevote::redis::RedisUrl::parse(&url).unwrap(),
            livevote::redis::Options {
                timeout: Duration::from_secs(10),
                ..Default::default()
            },
        )
        .unwrap();
        c.call(&[b"DEBUG", b"SLEEP", b"3"]).unwrap();
    });
    // DEBUG SLEEP has begun once Redis stops answering a PING in time.
    wait_for(CONVERGE, "Redis to be asleep", || {
        let mut c = livevote::redis::Client::connect(
            livevote::redis::RedisUrl::parse(&redis.url_string()).unwrap(),
            livevote::redis::Options {
                timeout: Duration::from_millis(200),
                ..Default::default()
            },
        )
        .ok()?;
        c.call(&[b"PING"]).is_err().then_some(())
    });
    let r = vote_with_id(a.addr, "2", "lost-answer-1");
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.json()["outcome"].as_str(), "unknown", "{r:?}");
    sleeper.join().unwrap();
    // The retry, on another instance, gets the true outcome: counted, once.
    let retry = wait_for(CONVERGE, "the retry to be answered", || {
        let r = vote_with_id(b.addr, "2", "lost-answer-1");
        (r.status == 200).then(|| r.json())
    });
    assert_eq!((retry["uid"].as_str(), retry["count"].as_u64()), ("2", 1));
    let (version, _, tally) = converged(&[a.addr, b.addr]);
    assert_eq!((version, tally), (1, counts(&[("1", 0), ("2", 1)])));
}

#[test]
fn vote_id_records_are_capped_in_redis_and_expire_with_the_window() {
    let redis = RedisServer::start(&[]);
    // Room for 3 records (272 bytes each), remembered for 2 s.
    let args = ["--vote-id-memory", "816", "--vote-id-window", "2"];
    let (a, b) = (instance(&redis, &args), instance(&redis, &args));
    for (k, addr) in [a.addr, b.addr, a.addr].into_iter().enumerate() {
        let r = vote_with_id(addr, "1", &format!("capped-{k}"));
        assert_eq!(r.status, 200, "{r:?}");
    }
    // Full of ids inside their window, on every instance: a new id is refused, not counted.
    let full = vote_with_id(b.addr, "1", "capped-3");
    assert_eq!(full.status, 503, "{full:?}");
    let wait: u64 = full.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "{full:?}");
    // A remembered id is still answered; a vote without an id still counts.
    assert_eq!(
        vote_with_id(a.addr, "2", "capped-0").json()["version"].as_u64(),
        1
    );
    assert_eq!(vote(b.addr, "2")["version"].as_u64(), 4);
    // After the window, the ids are forgotten: room again, and an old id counts anew. (The
    // three were recorded one after another, so they expire one after another: each retry
    // waits for its room rather than assume all three went at once.)
    let v = wait_for(CONVERGE, "the window to pass", || {
        let r = vote_with_id(b.addr, "1", "capped-3");
        (r.status == 200).then(|| r.json()["version"].as_u64())
    });
    assert_eq!(v, 5, "a refused id was not counted");
    wait_for(CONVERGE, "the first id to be forgotten", || {
        let r = vote_with_id(a.addr, "1", "capped-0");
        // Remembered, it would answer its first version (1) again.
        (r.status == 200 && r.json()["version"].as_u64() == 6).then_some(())
    });
    assert_eq!(converged(&[a.addr, b.addr]).0, 6);
}

#[test]
fn each_instance_reports_its_own_open_streams_in_metrics() {
    let redis = RedisServer::start(&[]);
    let (a, b) = (instance(&redis, &[]), instance(&redis, &[]));
    let _sse = open_events(a.addr, "/events", "");
    // Presence adds up every instance; the connection gauge is this instance's.
    wait_for(CONVERGE, "presence on B to count A's stream", || {
        (get(b.addr, "/votes").json()["presence"]["sse"].as_u64() == 1).then_some(())
    });
    let sse = |addr| {
        series(
            &common::metrics::scrape(addr),
            "livevote_open_connections{transport=\"sse\"}",
        )
    };
    assert_eq!((sse(a.addr), sse(b.addr)), (Some(1), Some(0)));
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

/// `POST /api/polls` with `body`, authorised by the header line `auth`.
fn create(auth: &str, addr: SocketAddr, body: &str) -> Response {
    call(addr, "POST", "/api/polls", auth, body)
}

#[test]
fn without_an_admin_token_every_instance_accepts_the_one_made_in_redis() {
    let redis = RedisServer::start(&[]);
    let a = instance(&redis, &[]);
    let b = instance(&redis, &[]);
    let said = a.stderr_text();
    let token = said
        .lines()
        .find_map(|l| l.split_once("kept in Redis for every instance): "))
        .map(|(_, t)| t.trim().to_string())
        .unwrap_or_else(|| panic!("the first instance prints the token it made: {said}"));
    let other = b.stderr_text();
    assert!(
        !other.contains(&token) && other.contains("the one in Redis"),
        "the second one uses it without printing it: {other}"
    );
    for addr in [a.addr, b.addr] {
        let r = call(addr, "GET", "/api/polls", &bearer(&token), "");
        assert_eq!(r.status, 200, "{r:?}");
        let r = call(
            addr,
            "GET",
            "/api/polls",
            &bearer("not-the-token-at-all"),
            "",
        );
        assert_eq!(r.status, 401);
    }
}

#[test]
fn closing_and_resetting_the_default_poll_on_one_instance_holds_on_every_other() {
    let redis = RedisServer::start(&[]);
    let token = "cluster-admin-token-0123456789";
    let [a, b] = [(); 2].map(|()| instance(&redis, &["--admin-token", token]));
    vote(a.addr, "1");
    let mut ws = ws_connect(b.addr, "/get_new_vote");
    ws_next_non_presence(&mut ws);
    let r = call(
        a.addr,
        "POST",
        "/api/polls/default/close",
        &bearer(token),
        "",
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["state"].as_str(), "closed");
    // Redis says so at once, whether B's copy has followed yet or not.
    let r = post(b.addr, "/vote", "uid=2");
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.json()["error"].as_str(), "poll closed");
    let snap = ws_next_of_type_skipping(&mut ws, "snapshot");
    assert_eq!(snap["state"].as_str(), "closed", "{snap:?}");
    let r = call(
        b.addr,
        "POST",
        "/api/polls/default/reset",
        &bearer(token),
        "",
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = call(
        b.addr,
        "POST",
        "/api/polls/default/open",
        &bearer(token),
        "",
    );
    assert_eq!(r.status, 200, "{r:?}");
    let (_, _, counts) = converged(&[a.addr, b.addr]);
    assert_eq!(total(&counts), 0);
    assert_eq!(vote(b.addr, "2")["count"].as_u64(), 1);
    // A restarted instance reads the state and the tally from Redis.
    let c = instance(&redis, &["--admin-token", token]);
    let (_, _, counts) = converged(&[a.addr, b.addr, c.addr]);
    assert_eq!(total(&counts), 1);
}

/// The `lv_voter=…` pair of a response's `Set-Cookie`.
fn voter_cookie(r: &Response) -> String {
    let set = r.header("set-cookie").expect("a voter cookie");
    let pair = set.split(';').next().unwrap();
    assert!(pair.starts_with("lv_voter="), "{set}");
    format!("Cookie: {pair}\r\n")
}

fn poll_total(addr: SocketAddr, token: &str, id: &str) -> Option<(u64, String)> {
    let r = call(addr, "GET", &format!("/api/polls/{id}"), &bearer(token), "");
    (r.status == 200).then(|| {
        let j = r.json();
        (j["total"].as_u64(), j["state"].as_str().to_string())
    })
}

#[test]
fn polls_made_closed_reset_and_deleted_on_one_instance_hold_on_every_other() {
    let redis = RedisServer::start(&[]);
    let token = "cluster-admin-token-0123456789";
    let [a, b, c] = [(); 3].map(|()| instance(&redis, &["--admin-token", token]));
    let auth = bearer(token);
    let r = create(
        &auth,
        a.addr,
        "id=lunch&question=Lunch%3F&option=Pizza&option=Soup&mode=once",
    );
    assert_eq!(r.status, 201, "{r:?}");
    // Taken on every instance.
    let r = create(&auth, b.addr, "id=lunch&question=Again&option=x&option=y");
    assert_eq!(r.status, 409, "{r:?}");
    for addr in [b.addr, c.addr] {
        wait_for(CONVERGE, "the poll to start on every instance", || {
            poll_total(addr, token, "lunch")
        });
    }
    let mut ws = ws_connect(c.addr, "/p/lunch/get_new_vote");
    ws_next_non_presence(&mut ws);

    // A voter cookie from C counts on B; the same voter on C is refused by Redis's rule.
    let page = get(c.addr, "/p/lunch");
    assert_eq!(page.status, 200);
    let voter = voter_cookie(&page);
    let r = call(b.addr, "POST", "/p/lunch/vote", &voter, "uid=1");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["count"].as_u64(), 1);
    let r = call(c.addr, "POST", "/p/lunch/vote", &voter, "uid=2");
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.json()["uid"].as_str(), "1", "{r:?}");
    for addr in [a.addr, b.addr, c.addr] {
        wait_for(CONVERGE, "the vote on every instance", || {
            (poll_total(addr, token, "lunch")? == (1, "open".into())).then_some(())
        });
    }

    // Closed on A: a vote on B is refused; C's subscriber gets the closing snapshot.
    let r = call(a.addr, "POST", "/api/polls/lunch/close", &auth, "");
    assert_eq!(r.status, 200, "{r:?}");
    let r = post(b.addr, "/p/lunch/vote", "uid=2");
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.json()["error"].as_str(), "poll closed");
    let snap = ws_next_of_type_skipping(&mut ws, "snapshot");
    assert_eq!(snap["state"].as_str(), "closed", "{snap:?}");

    // Reset on B: zero everywhere, and the voter may vote again (once reopened).
    let r = call(b.addr, "POST", "/api/polls/lunch/reset", &auth, "");
    assert_eq!(r.status, 200, "{r:?}");
    for addr in [a.addr, b.addr, c.addr] {
        wait_for(CONVERGE, "zero counts on every instance", || {
            (poll_total(addr, token, "lunch")? == (0, "closed".into())).then_some(())
        });
    }
    assert_eq!(
        call(c.addr, "POST", "/api/polls/lunch/open", &auth, "").status,
        200
    );
    let r = call(a.addr, "POST", "/p/lunch/vote", &voter, "uid=2");
    assert_eq!(r.status, 200, "{r:?}");

    // Deleted on C: gone from A and B, and A's subscriber is told so.
    let mut on_a = ws_connect(a.addr, "/p/lunch/get_new_vote");
    ws_next_non_presence(&mut on_a);
    let r = call(c.addr, "DELETE", "/api/polls/lunch", &auth, "");
    assert_eq!(r.status, 204, "{r:?}");
    let close = loop {
        match on_a.read().expect("A's subscriber reads until the close") {
            tungstenite::Message::Close(frame) => break frame.expect("a close code"),
            _ => continue,
        }
    };
    assert_eq!(
        (u16::from(close.code), &*close.reason),
        (1001, "poll deleted")
    );
    for addr in [a.addr, b.addr] {
        wait_for(CONVERGE, "the poll to go from every instance", || {
            let r = call(addr, "GET", "/api/polls/lunch", &auth, "");
            (r.status == 404).then_some(())
        });
    }
    // The id is free again, everywhere, with a fresh tally.
    let r = create(&auth, b.addr, "id=lunch&question=Again&option=x&option=y");
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.json()["total"].as_u64(), 0);
}

#[test]
fn a_moved_vote_across_instances_is_one_version_and_max_polls_counts_every_instance() {
    let redis = RedisServer::start(&[]);
    let token = "cluster-admin-token-0123456789";
    let args = ["--admin-token", token, "--max-polls", "2"];
    let [a, b] = [(); 2].map(|()| instance(&redis, &args));
    let auth = bearer(token);
    let r = create(
        &auth,
        a.addr,
        "id=mv&question=Q&option=x&option=y&mode=change",
    );
    assert_eq!(r.status, 201, "{r:?}");
    let r = create(&auth, b.addr, "question=Q&option=x&option=y");
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.json()["error"].as_str(), "too many polls");
    wait_for(CONVERGE, "the poll on B", || {
        poll_total(b.addr, token, "mv")
    });
    let r = post(a.addr, "/p/mv/vote", "uid=1");
    assert_eq!(r.status, 200, "{r:?}");
    let voter = voter_cookie(&r);
    let v1 = r.json()["version"].as_u64();
    // Moved on B, which may not have seen the first vote yet: Redis moves it.
    let r = call(b.addr, "POST", "/p/mv/vote", &voter, "uid=2");
    assert_eq!(r.status, 200, "{r:?}");
    let j = r.json();
    assert_eq!(j["version"].as_u64(), v1 + 1, "one version: {j:?}");
    assert_eq!(uid_counts(&j["changes"]), counts(&[("2", 1), ("1", 0)]));
    for addr in [a.addr, b.addr] {
        wait_for(CONVERGE, "the move on every instance", || {
            let r = get(addr, "/p/mv/votes");
            let c = uid_counts(&r.json()["candidates"]);
            (c == counts(&[("1", 0), ("2", 1)])).then_some(())
        });
    }
}
