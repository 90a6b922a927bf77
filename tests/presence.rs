//! Presence (issue 4, docs/PROTOCOL.md): viewers connected right now, by transport, pushed live
//! through every channel. A WebSocket or SSE viewer counts while connected; a long-polling or
//! polling viewer counts while it keeps naming itself with `viewer=`. Presence is published at
//! most once a second, so every wait here is bounded generously and nothing is timed.

mod common;

use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use common::*;

/// Bound on anything that waits for a presence publication (a hang guard, not a measurement).
const WAIT: Duration = Duration::from_secs(5);

/// The published presence and its version, as `/votes` says.
fn published(addr: SocketAddr) -> (Presence, u64) {
    let j = get(addr, "/votes").json();
    (presence(&j["presence"]), j["presence_version"].as_u64())
}

fn wait_presence(addr: SocketAddr, what: &str, want: Presence) -> u64 {
    wait_for(WAIT, what, || {
        let (p, v) = published(addr);
        (p == want).then_some(v)
    })
}

/// Waits on the SSE stream for a presence event equal to `want`; returns its version.
fn sse_sees(s: &mut EventStream, what: &str, want: Presence) -> u64 {
    let e = s.until(WAIT, what, |e| {
        e.is_presence() && presence(&e.json()) == want
    });
    e.json()["presence_version"].as_u64()
}

fn ws(n: u64) -> Presence {
    Presence {
        ws: n,
        sse: 1,
        ..Presence::default()
    }
}

/// A long-poll with `pv=` (the presence version it last saw) in another thread, so the test
/// can change presence meanwhile. The server's long-poll timeout is far longer than the
/// client's read timeout, so an answer can only be the early one.
fn long_poll_presence(addr: SocketAddr, pv: u64) -> thread::JoinHandle<Json> {
    let (version, epoch, _) = tally(addr);
    thread::spawn(move || {
        let r = get(
            addr,
            &format!("/get_new_vote?since={version}&epoch={epoch}&pv={pv}"),
        );
        assert_eq!(r.status, 200, "{r:?}");
        r.json()
    })
}

#[test]
fn a_websocket_viewer_shows_up_for_sse_and_long_poll_viewers_and_leaves() {
    let addr = start(|c| c.longpoll_timeout = Duration::from_secs(60));
    let (_, epoch, _) = tally(addr);
    // An SSE viewer: it counts itself as `sse`.
    let mut sse = open_events(addr, "/events", "");
    let first = resume(&sse.next_event().json());
    assert_eq!(first.epoch, epoch);
    let pv = sse_sees(&mut sse, "the SSE viewer itself", ws(0));
    assert_eq!(published(addr), (ws(0), pv), "/votes agrees");

    // A long-poller that saw that presence waits...
    let poll = long_poll_presence(addr, pv);
    // ...and a WebSocket viewer connects: everyone hears of it.
    let mut socket = ws_connect(addr, "/get_new_vote");
    assert_eq!(resume(&ws_next_json(&mut socket)).kind, "snapshot");
    let pv2 = sse_sees(&mut sse, "the WebSocket viewer", ws(1));
    assert!(pv2 > pv);
    let j = poll
        .join()
        .expect("the long-poll is answered when presence changes");
    assert!(!j["status"].as_bool(), "no vote, so status:false: {j:?}");
    assert!(j["data"].is_null());
    assert_eq!(presence(&j["presence"]), ws(1), "{j:?}");
    assert_eq!(j["presence_version"].as_u64(), pv2);
    // The WebSocket viewer hears presence too, counting itself.
    let own = loop {
        let m = ws_next_json(&mut socket);
        if is_presence(&m) && presence(&m) == ws(1) {
            break m;
        }
    };
    assert_eq!(own["presence_version"].as_u64(), pv2);

    // The WebSocket viewer leaves: counted out again, for the stream and the long-poller.
    let poll = long_poll_presence(addr, pv2);
    socket.close(None).unwrap();
    while socket.read().is_ok() {}
    drop(socket);
    let pv3 = sse_sees(&mut sse, "the WebSocket viewer leaving", ws(0));
    let j = poll.join().unwrap();
    assert_eq!(presence(&j["presence"]), ws(0), "{j:?}");
    assert_eq!(j["presence_version"].as_u64(), pv3);
    // A vote still wakes a long-poller that gave a presence version (votes come first).
    let poll = long_poll_presence(addr, pv3);
    vote(addr, "1");
    let j = poll.join().unwrap();
    assert!(j["status"].as_bool(), "{j:?}");
    assert_eq!(j["data"]["uid"].as_str(), "1");
}

#[test]
fn sse_viewers_count_as_sse_while_connected() {
    let addr = start(|c| c.limits.sse_heartbeat = Duration::from_millis(200));
    let a = open_events(addr, "/events", "");
    let b = open_events(addr, "/events", "");
    let two = Presence {
        sse: 2,
        ..Presence::default()
    };
    wait_presence(addr, "two SSE viewers", two);
    drop(a);
    // The heartbeat finds the closed stream.
    wait_presence(
        addr,
        "one SSE viewer",
        Presence {
            sse: 1,
            ..Presence::default()
        },
    );
    drop(b);
    wait_presence(addr, "no viewers", Presence::default());
}

#[test]
fn a_long_poller_that_names_itself_counts_as_longpoll() {
    let addr = start_default();
    // Ids that are not 8–64 of `A-Z a-z 0-9 _ -` are not counted. (A foreign epoch gets an
    // answer at once, so each request has been handled when it returns.)
    let long = "x".repeat(65);
    for bad in [
        "short",
        "has%20space%20in%20it",
        "%3Cscript%3Eabcdef",
        long.as_str(),
    ] {
        let j = get(addr, &format!("/get_new_vote?since=0&epoch=x&viewer={bad}")).json();
        assert!(j["status"].as_bool());
    }
    let viewer = "longpoll-viewer-1";
    let j = get(
        addr,
        &format!("/get_new_vote?since=0&epoch=x&viewer={viewer}"),
    )
    .json();
    assert!(j["status"].as_bool());
    // The first presence published after these requests counts exactly the one good id.
    let first = wait_for(WAIT, "the long-poller to be counted", || {
        let (p, _) = published(addr);
        (p != Presence::default()).then_some(p)
    });
    assert_eq!(
        first,
        Presence {
            longpoll: 1,
            ..Presence::default()
        }
    );
    // It is one viewer however often it polls.
    for _ in 0..3 {
        get(
            addr,
            &format!("/get_new_vote?since=0&epoch=x&viewer={viewer}"),
        );
    }
    let j = get(addr, "/get_new_vote?since=0&epoch=x").json();
    assert_eq!(presence(&j["presence"]).longpoll, 1, "{j:?}");
}

#[test]
fn a_polling_viewer_counts_as_poll() {
    let addr = start_default();
    for _ in 0..3 {
        let r = get(addr, "/votes?viewer=abcdefgh&transport=poll");
        assert_eq!(r.status, 200);
    }
    get(addr, "/votes?viewer=ijklmnop&transport=poll");
    wait_presence(
        addr,
        "two polling viewers",
        Presence {
            poll: 2,
            ..Presence::default()
        },
    );
}

#[test]
fn a_flood_of_made_up_viewer_ids_from_one_address_is_capped() {
    const CAP: u64 = 8;
    let addr = start(|c| c.limits.max_viewers_per_ip = CAP as usize);
    let mut c = Client::connect(addr);
    for i in 0..2000 {
        let r = c.call(get_req(&format!(
            "/votes?viewer=made-up-viewer-{i:06}&transport=poll"
        )));
        assert_eq!(r.status, 200, "{r:?}");
    }
    // A WebSocket viewer joins after the flood: the publication that counts it counts the
    // whole flood too.
    let _ws = ws_connect(addr, "/get_new_vote");
    let p = wait_for(WAIT, "the WebSocket viewer to be published", || {
        let (p, _) = published(addr);
        (p.ws == 1).then_some(p)
    });
    assert_eq!(p.poll, CAP, "{p:?}");
    let text = common::metrics::scrape(addr);
    let poll = common::metrics::series(&text, "livevote_viewers{transport=\"poll\"}");
    assert_eq!(poll, Some(CAP), "{text}");
}
