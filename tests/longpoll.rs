//! `GET /get_new_vote`: the tutorial's long-poll (woken by the next vote, `status:false` after the
//! timeout) and the lossless `since` catch-up (delta when a little behind, snapshot when far
//! behind, from another epoch, or from the future).

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;

fn short_timeout() -> SocketAddr {
    start(|c| c.longpoll_timeout = Duration::from_millis(300))
}

/// `changes` as uid → count.
fn changes(j: &Json) -> BTreeMap<String, u64> {
    uid_counts(&j["changes"])
}

#[test]
fn a_waiting_long_poll_is_woken_by_a_vote() {
    let addr = start(|c| c.longpoll_timeout = Duration::from_secs(8));
    let done = Arc::new(AtomicBool::new(false));
    let cast: Arc<Mutex<Vec<Json>>> = Arc::default();
    // The voter keeps voting until the poll answers, so the test does not depend on when the
    // server starts waiting: the poll is answered by the first vote after it began to wait.
    let voter = {
        let (done, cast) = (Arc::clone(&done), Arc::clone(&cast));
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            while !done.load(Ordering::SeqCst) {
                let j = vote(addr, "1");
                cast.lock().unwrap().push(j);
                thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let r = get(addr, "/get_new_vote");
    done.store(true, Ordering::SeqCst);
    voter.join().unwrap();

    let j = assert_json(&r, 200);
    assert!(j["status"].as_bool(), "{j:?}");
    assert_eq!(j["kind"].as_str(), "live");
    assert_eq!(j["data"]["uid"].as_str(), "1");
    let version = j["version"].as_u64();
    let cast = cast.lock().unwrap();
    let answered = cast
        .iter()
        .find(|v| v["version"].as_u64() == version)
        .unwrap_or_else(|| panic!("no vote has version {version}: {cast:?}"));
    assert_eq!(j["data"]["count"].as_u64(), answered["count"].as_u64());
    assert_eq!(j["epoch"].as_str(), answered["epoch"].as_str());
    assert!(j["from"].as_u64() < version);
    assert_eq!(changes(&j)["1"], j["data"]["count"].as_u64());
}

#[test]
fn every_waiter_is_woken_by_one_vote() {
    let addr = start(|c| c.longpoll_timeout = Duration::from_secs(8));
    vote(addr, "2");
    let (v, epoch, _) = tally(addr);
    let waiters: Vec<_> = (0..8)
        .map(|_| {
            let path = format!("/get_new_vote?since={v}&epoch={epoch}");
            thread::spawn(move || get(addr, &path))
        })
        .collect();
    // Vote once every poller is waiting (the server counts them), not after a guessed pause.
    wait_for(IO_TIMEOUT, "8 waiting long-polls", || {
        let text = metrics::scrape(addr);
        (metrics::series(&text, "livevote_open_connections{transport=\"longpoll\"}") == Some(8))
            .then_some(())
    });
    let cast = vote(addr, "2");
    for w in waiters {
        let j = assert_json(&w.join().unwrap(), 200);
        assert!(j["status"].as_bool(), "{j:?}");
        // Every poller was waiting when the vote landed: each is woken with it, live.
        assert_eq!(j["kind"].as_str(), "live", "{j:?}");
        assert_eq!(j["version"].as_u64(), v + 1);
        assert_eq!(j["from"].as_u64(), v);
        assert_eq!(j["data"]["uid"].as_str(), "2");
        assert_eq!(j["data"]["count"].as_u64(), cast["count"].as_u64());
        assert_eq!(j["data"]["count"].as_u64(), 2);
    }
}

#[test]
fn parked_long_polls_are_answered_by_one_writer_and_keep_their_connections() {
    let addr = start(|c| c.longpoll_timeout = Duration::from_secs(8));
    let (v, epoch, _) = tally(addr);
    let answered_by = |by: &str| {
        let text = metrics::scrape(addr);
        metrics::series(
            &text,
            &format!("livevote_longpoll_answers_total{{by=\"{by}\"}}"),
        )
        .expect("the long-poll answers series")
    };
    let before = answered_by("writer");
    let poller_before = answered_by("poller");
    const N: usize = 30;
    let mut pollers: Vec<Client> = (0..N)
        .map(|_| {
            let mut c = Client::connect(addr);
            c.send(get_req(&format!("/get_new_vote?since={v}&epoch={epoch}")));
            c
        })
        .collect();
    wait_for(IO_TIMEOUT, "every long-poll parked", || {
        let text = metrics::scrape(addr);
        (metrics::series(&text, "livevote_open_connections{transport=\"longpoll\"}")
            == Some(N as u64))
        .then_some(())
    });
    let cast = vote(addr, "1");
    let mut bodies = Vec::new();
    for c in &mut pollers {
        let r = c.read_response();
        assert!(!r.closes(), "a parked answer keeps the connection");
        let j = assert_json(&r, 200);
        assert_eq!(j["kind"].as_str(), "live", "{j:?}");
        assert_eq!(j["version"].as_u64(), v + 1);
        assert_eq!(j["data"]["count"].as_u64(), cast["count"].as_u64());
        bodies.push(r.text());
    }
    assert!(bodies.iter().all(|b| *b == bodies[0]), "one answer for all");
    // Each connection's thread went back to reading it: its next request is answered.
    for c in &mut pollers {
        let j = assert_json(&c.call(get_req("/votes")), 200);
        assert_eq!(j["version"].as_u64(), v + 1);
    }
    // Every one was written by the poll's long-poll writer, none by its own thread. Read now:
    // a poller's thread counts its answer when it wakes, which may be after its client has
    // read it, but always before it reads the connection's next request.
    assert_eq!(answered_by("writer") - before, N as u64);
    assert_eq!(answered_by("poller") - poller_before, 0);
}

#[test]
fn a_request_pipelined_behind_a_parked_long_poll_is_answered_after_it() {
    let addr = start(|c| c.longpoll_timeout = Duration::from_secs(8));
    let (v, epoch, _) = tally(addr);
    let mut c = Client::connect(addr);
    // Both requests in one write: the second is already in the server's buffer while the
    // first waits.
    c.send(format!(
        "GET /get_new_vote?since={v}&epoch={epoch} HTTP/1.1\r\nHost: {addr}\r\n\r\n\
         GET /votes HTTP/1.1\r\nHost: {addr}\r\n\r\n"
    ));
    wait_for(IO_TIMEOUT, "the long-poll to wait", || {
        let text = metrics::scrape(addr);
        (metrics::series(&text, "livevote_open_connections{transport=\"longpoll\"}") == Some(1))
            .then_some(())
    });
    // Parked: nothing is answered, not even the request behind it.
    c.read_timeout(Duration::from_millis(50));
    match c.fill_to(1) {
        Err(e) if is_timeout(&e) => {}
        other => panic!("something was answered while the long-poll waited: {other:?}"),
    }
    c.read_timeout(IO_TIMEOUT);
    vote(addr, "1");
    let [first, second]: [Response; 2] = c.read_responses(2).try_into().unwrap();
    let j = assert_json(&first, 200);
    assert!(
        j["status"].as_bool(),
        "the long-poll is answered first: {j:?}"
    );
    assert_eq!(j["version"].as_u64(), v + 1);
    let j = assert_json(&second, 200);
    assert_eq!(
        j["version"].as_u64(),
        v + 1,
        "then /votes, after the vote: {j:?}"
    );
}

#[test]
fn a_long_poll_without_news_times_out_with_status_false() {
    let addr = short_timeout();
    vote(addr, "1");
    let (v, epoch, _) = tally(addr);
    for path in [
        "/get_new_vote".to_string(),
        format!("/get_new_vote?since={v}"),
        format!("/get_new_vote?since={v}&epoch={epoch}"),
        "/get_new_vote?since=".to_string(),
    ] {
        let j = assert_json(&get(addr, &path), 200);
        assert_eq!(j["status"], Json::Bool(false), "{path}: {j:?}");
        assert!(j.has("data") && j["data"].is_null(), "{path}: {j:?}");
        assert_eq!(j["version"].as_u64(), v, "{path}");
        assert_eq!(j["epoch"].as_str(), epoch, "{path}");
    }
    // The connection stays usable after a timeout answer.
    let mut c = Client::connect(addr);
    c.send(get_req("/get_new_vote"));
    c.send(get_req("/votes"));
    let rs = c.read_responses(2);
    assert!(!rs[0].json()["status"].as_bool());
    assert_eq!(rs[1].json()["version"].as_u64(), v);
}

#[test]
fn a_client_that_was_away_gets_every_changed_count_at_once() {
    let addr = short_timeout();
    vote(addr, "2");
    let (v, epoch, _) = tally(addr);
    // Away while four votes are cast.
    for uid in ["1", "2", "1", "1"] {
        vote(addr, uid);
    }
    let (now, _, counts) = tally(addr);
    assert_eq!(now, v + 4);
    for path in [
        format!("/get_new_vote?since={v}&epoch={epoch}"),
        format!("/get_new_vote?since={v}"),
    ] {
        let j = assert_json(&get(addr, &path), 200);
        assert!(j["status"].as_bool(), "{j:?}");
        assert_eq!(j["kind"].as_str(), "delta", "{j:?}");
        assert_eq!(j["from"].as_u64(), v);
        assert_eq!(j["version"].as_u64(), now);
        assert_eq!(j["epoch"].as_str(), epoch);
        assert_eq!(
            changes(&j),
            counts,
            "every changed count, at its latest value"
        );
        // `data` (the tutorial's field) is the last vote.
        assert_eq!(j["data"]["uid"].as_str(), "1");
        assert_eq!(j["data"]["count"].as_u64(), counts["1"]);
    }
    // Only what changed: one vote behind lists one candidate.
    let j = get(addr, &format!("/get_new_vote?since={}", now - 1)).json();
    assert_eq!(j["kind"].as_str(), "delta");
    assert_eq!(
        changes(&j),
        BTreeMap::from([("1".to_string(), counts["1"])])
    );
    // A client that is current waits (and here times out).
    let j = get(addr, &format!("/get_new_vote?since={now}&epoch={epoch}")).json();
    assert!(!j["status"].as_bool());
}

#[test]
fn since_zero_on_a_fresh_tally_lists_every_vote() {
    let addr = short_timeout();
    for uid in ["1", "1", "2"] {
        vote(addr, uid);
    }
    let j = get(addr, "/get_new_vote?since=0").json();
    assert_eq!(j["kind"].as_str(), "delta");
    assert_eq!(j["from"].as_u64(), 0);
    assert_eq!(
        changes(&j),
        BTreeMap::from([("1".to_string(), 2), ("2".to_string(), 1)])
    );
}

#[test]
fn far_behind_foreign_epoch_or_future_version_gets_a_snapshot() {
    let addr = short_timeout();
    vote(addr, "2");
    let base = tally(addr).0;
    cast_pipelined(addr, "1", 1024);
    let (now, epoch, counts) = tally(addr);
    assert_eq!(now, base + 1024);

    // Exactly 1024 behind: still a delta.
    let j = get(addr, &format!("/get_new_vote?since={base}&epoch={epoch}")).json();
    assert_eq!(j["kind"].as_str(), "delta", "{j:?}");
    assert_eq!(changes(&j), BTreeMap::from([("1".to_string(), 1024)]));

    // 1025 behind, a foreign epoch, a future version: the whole tally.
    for path in [
        format!("/get_new_vote?since={}&epoch={epoch}", base - 1),
        format!("/get_new_vote?since={now}&epoch=someone-else"),
        format!("/get_new_vote?since={base}&epoch=someone-else"),
        format!("/get_new_vote?since={}&epoch={epoch}", now + 1),
        format!("/get_new_vote?since={}", u64::MAX),
    ] {
        let j = assert_json(&get(addr, &path), 200);
        assert!(j["status"].as_bool(), "{path}: {j:?}");
        assert_eq!(j["kind"].as_str(), "snapshot", "{path}: {j:?}");
        assert_eq!(j["version"].as_u64(), now, "{path}");
        assert_eq!(j["epoch"].as_str(), epoch, "{path}");
        assert_eq!(
            changes(&j),
            counts,
            "{path}: every candidate, zero counts too"
        );
        assert_eq!(j["changes"].as_array().len(), 2, "{path}");
    }
}

#[test]
fn malformed_since_is_400() {
    let addr = short_timeout();
    for q in [
        "since=abc",
        "since=-1",
        "since=1.5",
        "since=%20",
        "since=18446744073709551616",
        "since=%zz",
    ] {
        let r = get(addr, &format!("/get_new_vote?{q}"));
        assert_eq!(r.status, 400, "{q}: {r:?}");
        r.assert_standard_headers(false);
        assert!(r.json().has("error"));
    }
}
