//! One cursor on every transport (issue 4, docs/PROTOCOL.md): the same (epoch, version) asked
//! for over WebSocket (`/get_new_vote?since=&epoch=`, through tungstenite), Server-Sent Events
//! (`/events`, parsed by hand) and long-polling (`/get_new_vote`, raw HTTP) gets the same answer
//! — `delta`, `snapshot` or `live` with the same counts — and clients that reconnect again and
//! again while votes flow see every version exactly once — as do a hundred WebSocket clients
//! connecting at once. Polling's cursor is the ETag of `/votes`.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;

/// Bound on anything that waits for the server (a hang guard, not a measurement).
const WAIT: Duration = Duration::from_secs(5);

/// Three candidates (so a delta can leave one out) and a short long-poll timeout.
fn three() -> SocketAddr {
    start(|c| {
        c.candidates = candidates(&["a", "b", "c"]);
        c.longpoll_timeout = Duration::from_millis(300);
    })
}

/// `?since=V&epoch=E`, either part left out when None.
fn cursor_query(since: Option<u64>, epoch: Option<&str>) -> String {
    let mut q = Vec::new();
    if let Some(v) = since {
        q.push(format!("since={v}"));
    }
    if let Some(e) = epoch {
        q.push(format!("epoch={e}"));
    }
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

/// What a transport answered to a cursor: kind, the version it brings the client to, and the
/// counts it carries (every candidate for a snapshot, the changed ones for a delta).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Outcome {
    kind: String,
    from: Option<u64>,
    to: u64,
    counts: BTreeMap<String, u64>,
}

impl From<Resume> for Outcome {
    fn from(r: Resume) -> Self {
        // A snapshot's `from` is only the client's cursor echoed back; it does not matter.
        let from = (r.kind != "snapshot").then_some(r.from);
        Outcome {
            kind: r.kind,
            from,
            to: r.to,
            counts: r.counts,
        }
    }
}

fn ws_resume(addr: SocketAddr, since: Option<u64>, epoch: Option<&str>) -> (Ws, Resume) {
    let mut ws = ws_connect(
        addr,
        &format!("/get_new_vote{}", cursor_query(since, epoch)),
    );
    // The resume is the first message: no skipping here.
    let r = resume(&ws_next_json(&mut ws));
    (ws, r)
}

fn sse_resume(addr: SocketAddr, since: Option<u64>, epoch: Option<&str>) -> (EventStream, Resume) {
    let mut s = open_events(addr, &format!("/events{}", cursor_query(since, epoch)), "");
    let e = s.next_event();
    let r = resume(&e.json());
    assert_eq!(
        e.id.as_deref(),
        Some(format!("{}-{}", r.epoch, r.to).as_str())
    );
    (s, r)
}

/// A long-poll answer: the JSON, checked for the fields every answer carries.
fn long_poll(addr: SocketAddr, query: &str) -> Json {
    let r = get(addr, &format!("/get_new_vote{query}"));
    assert_eq!(r.status, 200, "{query}: {r:?}");
    let j = r.json();
    assert!(!j["epoch"].as_str().is_empty(), "{j:?}");
    j["version"].as_u64();
    presence(&j["presence"]);
    j["presence_version"].as_u64();
    j
}

fn long_poll_outcome(j: &Json) -> Outcome {
    assert!(j["status"].as_bool(), "news expected: {j:?}");
    let kind = j["kind"].as_str().to_string();
    let changes = uid_counts(&j["changes"]);
    // The tutorial's `data` is the last change.
    let data = &j["data"];
    if changes.is_empty() {
        assert!(data.is_null(), "{j:?}");
    } else {
        assert_eq!(
            changes.get(data["uid"].as_str()),
            Some(&data["count"].as_u64())
        );
    }
    Outcome {
        from: (kind != "snapshot").then(|| j["from"].as_u64()),
        kind,
        to: j["version"].as_u64(),
        counts: changes,
    }
}

/// The three transports' answers to one cursor.
fn outcomes(addr: SocketAddr, since: Option<u64>, epoch: Option<&str>) -> [Outcome; 3] {
    let (_ws, w) = ws_resume(addr, since, epoch);
    let (_sse, s) = sse_resume(addr, since, epoch);
    let l = long_poll_outcome(&long_poll(addr, &cursor_query(since, epoch)));
    [w.into(), s.into(), l]
}

fn expect(kind: &str, from: Option<u64>, to: u64, c: &[(&str, u64)]) -> Outcome {
    Outcome {
        kind: kind.into(),
        from,
        to,
        counts: counts(c),
    }
}

#[test]
fn the_same_cursor_gets_the_same_answer_on_every_transport() {
    let addr = three();
    let epoch = four_votes(addr);
    let e = Some(epoch.as_str());
    let all = [("a", 2), ("b", 1), ("c", 1)];
    let cases: [(Option<u64>, Option<&str>, Outcome); 6] = [
        // Behind, our epoch: the current counts of what changed after the cursor, only.
        (
            Some(2),
            e,
            expect("delta", Some(2), 4, &[("a", 2), ("c", 1)]),
        ),
        (Some(3), e, expect("delta", Some(3), 4, &[("c", 1)])),
        // Without an epoch the version is taken as ours.
        (
            Some(2),
            None,
            expect("delta", Some(2), 4, &[("a", 2), ("c", 1)]),
        ),
        (Some(0), e, expect("delta", Some(0), 4, &all)),
        // Another epoch, or a version we never had: the whole tally.
        (Some(2), Some("another"), expect("snapshot", None, 4, &all)),
        (Some(5), e, expect("snapshot", None, 4, &all)),
    ];
    for (since, ep, want) in cases {
        let [ws, sse, lp] = outcomes(addr, since, ep);
        assert_eq!(ws, want, "WebSocket, since={since:?} epoch={ep:?}");
        assert_eq!(sse, want, "SSE, since={since:?} epoch={ep:?}");
        assert_eq!(lp, want, "long-poll, since={since:?} epoch={ep:?}");
    }
    // No cursor at all: WebSocket and SSE start with the whole tally (a long-poll without a
    // cursor waits for the next vote, like the tutorial's).
    let (_ws, w) = ws_resume(addr, None, None);
    let (_s, s) = sse_resume(addr, None, None);
    assert_eq!(Outcome::from(w), expect("snapshot", None, 4, &all));
    assert_eq!(Outcome::from(s), expect("snapshot", None, 4, &all));
    // Up to date: live on the streams; the long-poll has nothing to say (status:false at
    // the timeout, still at version 4).
    let (_ws, w) = ws_resume(addr, Some(4), e);
    let (_s, s) = sse_resume(addr, Some(4), e);
    assert_eq!(Outcome::from(w), expect("live", Some(4), 4, &[]));
    assert_eq!(Outcome::from(s), expect("live", Some(4), 4, &[]));
    let j = long_poll(addr, &cursor_query(Some(4), e));
    assert!(!j["status"].as_bool(), "{j:?}");
    assert_eq!(
        (j["version"].as_u64(), j["epoch"].as_str()),
        (4, epoch.as_str())
    );
}

#[test]
fn far_behind_is_a_snapshot_on_every_transport_at_the_same_boundary() {
    let addr = three();
    let epoch = four_votes(addr);
    cast_pipelined(addr, "b", 1100);
    let now = 1104;
    let e = Some(epoch.as_str());
    let all = [("a", 2), ("b", 1101), ("c", 1)];
    for (since, want) in [
        (2, expect("snapshot", None, now, &all)),
        (now - 1025, expect("snapshot", None, now, &all)),
        // At most 1,024 behind is a delta.
        (
            now - 1024,
            expect("delta", Some(now - 1024), now, &[("b", 1101)]),
        ),
    ] {
        for (name, got) in
            ["WebSocket", "SSE", "long-poll"]
                .iter()
                .zip(outcomes(addr, Some(since), e))
        {
            assert_eq!(got, want, "{name}, since={since}");
        }
    }
}

#[test]
fn up_to_date_clients_on_every_transport_get_the_next_vote_once() {
    let addr = start(|c| c.longpoll_timeout = Duration::from_secs(8));
    vote(addr, "1");
    vote(addr, "2");
    let (_, epoch, _) = tally(addr);
    let e = Some(epoch.as_str());
    let (mut ws, w) = ws_resume(addr, Some(2), e);
    let (mut sse, s) = sse_resume(addr, Some(2), e);
    assert_eq!(Outcome::from(w), expect("live", Some(2), 2, &[]));
    assert_eq!(Outcome::from(s), expect("live", Some(2), 2, &[]));
    // The long-poller at the same cursor waits for the next vote.
    let mut poll = Client::connect(addr);
    poll.send(get_req(&format!("/get_new_vote?since=2&epoch={epoch}")));
    poll.read_timeout(Duration::from_millis(300));
    assert!(
        poll.try_read_response_to("GET").is_err(),
        "an up-to-date long-poll must wait"
    );
    poll.read_timeout(IO_TIMEOUT);
    let poller = thread::spawn(move || poll.read_response());
    vote(addr, "1");
    let j = poller.join().unwrap().json();
    assert_eq!(
        long_poll_outcome(&j),
        expect("live", Some(2), 3, &[("1", 2)])
    );
    // The streams get it as one vote each, version 3, and nothing before it.
    let v = ws_next_non_presence(&mut ws);
    assert_eq!(
        (
            v["uid"].as_str(),
            v["count"].as_u64(),
            v["version"].as_u64()
        ),
        ("1", 2, 3)
    );
    let v = sse.next_non_presence();
    assert_eq!(v.id.as_deref(), Some(format!("{epoch}-3").as_str()));
    let j = v.json();
    assert_eq!(
        (
            j["uid"].as_str(),
            j["count"].as_u64(),
            j["version"].as_u64()
        ),
        ("1", 2, 3)
    );
}

#[test]
fn a_malformed_since_is_refused_on_every_transport() {
    let addr = start_default();
    // WebSocket: refused before the upgrade.
    let req = format!("ws://{addr}/get_new_vote?since=x");
    match tungstenite::client(req, tcp(addr)) {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            assert_eq!(resp.status(), 400)
        }
        Err(e) => panic!("expected a 400, got {e}"),
        Ok(_) => panic!("upgraded with a malformed since"),
    }
    assert_eq!(get(addr, "/events?since=x").status, 400);
    assert_eq!(get(addr, "/get_new_vote?since=x").status, 400);
    assert_eq!(get(addr, "/get_new_vote?since=0&pv=x").status, 400);
}

// --- reconnecting while votes flow -------------------------------------------------------------

/// What a client knows, built only from what it received. Every step checks that nothing is
/// replayed or skipped: a vote is exactly the next version, a resume starts exactly at the
/// client's version, and a snapshot (a first connect, or a coalesced catch-up) only moves
/// forward.
#[derive(Debug, Default)]
struct Follower {
    transport: &'static str,
    /// What happened on the current connection, for the failure message.
    log: Vec<String>,
    epoch: Option<String>,
    version: u64,
    counts: BTreeMap<String, u64>,
    connects: usize,
    votes: usize,
}

impl Follower {
    fn cursor(&self) -> (Option<u64>, Option<&str>) {
        match &self.epoch {
            Some(e) => (Some(self.version), Some(e.as_str())),
            None => (None, None),
        }
    }

    fn set(&mut self, uid: &str, count: u64) {
        let old = self.counts.get(uid).copied().unwrap_or(0);
        assert!(count >= old, "count of {uid} went from {old} to {count}");
        self.counts.insert(uid.to_string(), count);
    }

    fn resume(&mut self, r: &Resume) {
        self.connects += 1;
        self.log = vec![format!("{r:?}")];
        match (r.kind.as_str(), &self.epoch) {
            ("snapshot", None) => {
                self.counts = r.counts.clone();
                self.epoch = Some(r.epoch.clone());
            }
            ("delta" | "live", Some(e)) => {
                assert_eq!(&r.epoch, e);
                assert_eq!(r.from, self.version, "resume from another version: {r:?}");
                if r.kind == "live" {
                    assert_eq!(r.to, r.from, "{r:?}");
                    assert!(r.counts.is_empty());
                } else {
                    assert!(r.to > r.from && !r.counts.is_empty(), "{r:?}");
                }
                for (uid, count) in &r.counts {
                    self.set(uid, *count);
                }
            }
            _ => panic!(
                "resume {r:?} for a client at {:?}/{}",
                self.epoch, self.version
            ),
        }
        self.version = r.to;
    }

    /// A message after the resume: a vote or a coalesced snapshot (presence is skipped).
    fn message(&mut self, j: &Json) {
        self.log.push(format!("{j:?}"));
        if matches!(&j["type"], Json::Str(t) if t == "snapshot") {
            let v = j["version"].as_u64();
            assert!(v > self.version, "snapshot at {v} after {}", self.version);
            for (uid, count) in uid_counts(&j["candidates"]) {
                self.set(&uid, count);
            }
            self.version = v;
            return;
        }
        assert_eq!(j.keys(), ["uid", "count", "version"], "{j:?}");
        let v = j["version"].as_u64();
        assert_eq!(
            v,
            self.version + 1,
            "{}: vote {j:?} at version {}; this connection: {:?}",
            self.transport,
            self.version,
            self.log
        );
        self.set(j["uid"].as_str(), j["count"].as_u64());
        self.version = v;
        self.votes += 1;
    }

    /// A long-poll answer with news: it must continue exactly from the client's version.
    fn long_poll(&mut self, j: &Json) {
        self.connects += 1;
        let kind = j["kind"].as_str();
        let to = j["version"].as_u64();
        let changes = uid_counts(&j["changes"]);
        if self.epoch.is_none() {
            assert_eq!(kind, "snapshot", "{j:?}");
            self.counts = changes;
            self.epoch = Some(j["epoch"].as_str().to_string());
        } else {
            assert!(["delta", "live"].contains(&kind), "{j:?}");
            assert_eq!(j["from"].as_u64(), self.version, "{j:?}");
            assert!(to > self.version, "{j:?}");
            for (uid, count) in changes {
                self.set(&uid, count);
            }
        }
        self.version = to;
    }
}

/// Cursor when done: the final version once the voter has finished, else 0.
type Done = Arc<AtomicU64>;

fn finished(done: &Done, f: &Follower) -> bool {
    let last = done.load(Ordering::SeqCst);
    last > 0 && f.version >= last
}

/// Reconnects over WebSocket after a few messages each time, resuming from its cursor.
fn ws_follower(addr: SocketAddr, done: Done) -> Follower {
    let mut f = Follower {
        transport: "WebSocket",
        ..Follower::default()
    };
    let mut round = 0usize;
    while !finished(&done, &f) {
        round += 1;
        let (since, epoch) = f.cursor();
        let (mut ws, r) = ws_resume(addr, since, epoch);
        f.resume(&r);
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        // A few messages, then drop the connection (a short read timeout also ends it).
        for _ in 0..(round % 7 + 1) {
            if finished(&done, &f) {
                break;
            }
            match ws.read() {
                Ok(tungstenite::Message::Text(t)) => {
                    let j = Json::parse(&t).unwrap();
                    if !is_presence(&j) {
                        f.message(&j);
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    f
}

/// Reconnects over SSE as a browser does: `Last-Event-ID` set to the last id it saw.
fn sse_follower(addr: SocketAddr, done: Done) -> Follower {
    let mut f = Follower {
        transport: "SSE",
        ..Follower::default()
    };
    let mut last_id: Option<String> = None;
    let mut round = 0usize;
    while !finished(&done, &f) {
        round += 1;
        let header = last_id
            .as_ref()
            .map_or(String::new(), |id| format!("Last-Event-ID: {id}\r\n"));
        let mut s = open_events(addr, "/events", &header);
        let e = s.next_event();
        f.resume(&resume(&e.json()));
        last_id = e.id.clone();
        s.read_timeout(Duration::from_millis(200));
        for _ in 0..(round % 7 + 1) {
            if finished(&done, &f) {
                break;
            }
            match s.block() {
                Ok(Some(e)) if !e.is_presence() => {
                    f.message(&e.json());
                    assert_eq!(
                        e.id.as_deref(),
                        Some(format!("{}-{}", f.epoch.as_ref().unwrap(), f.version).as_str())
                    );
                    last_id = e.id.clone();
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    f
}

/// Long-polls with its cursor until it reaches the final version.
fn long_poll_follower(addr: SocketAddr, done: Done) -> Follower {
    let mut f = Follower {
        transport: "long-poll",
        ..Follower::default()
    };
    // The first request asks with a foreign epoch, so it gets the whole tally at once.
    let j = long_poll(addr, "?since=0&epoch=none");
    f.long_poll(&j);
    while !finished(&done, &f) {
        let (since, epoch) = f.cursor();
        let j = long_poll(addr, &cursor_query(since, epoch));
        if j["status"].as_bool() {
            f.long_poll(&j);
        } else {
            assert_eq!(
                j["version"].as_u64(),
                f.version,
                "no news, yet moved: {j:?}"
            );
        }
    }
    f
}

#[test]
fn clients_that_reconnect_while_votes_flow_see_every_vote_once_on_every_transport() {
    const VOTES: usize = 600;
    let addr = three();
    let done: Done = Arc::default();
    let followers: Vec<(&str, thread::JoinHandle<Follower>)> = vec![
        ("WebSocket", {
            let d = Arc::clone(&done);
            thread::spawn(move || ws_follower(addr, d))
        }),
        ("SSE", {
            let d = Arc::clone(&done);
            thread::spawn(move || sse_follower(addr, d))
        }),
        ("long-poll", {
            let d = Arc::clone(&done);
            thread::spawn(move || long_poll_follower(addr, d))
        }),
    ];
    // The voter: in small bursts, so reconnects fall both inside and between bursts.
    let mut c = Client::connect(addr);
    let mut last = 0;
    for i in 0..VOTES {
        c.send(post_req(
            "/vote",
            &format!("uid={}", ["a", "b", "c"][i * 7 % 3]),
        ));
        let r = c.read_response_to("POST");
        assert_eq!(r.status, 200);
        last = r.json()["version"].as_u64();
        if i % 20 == 19 {
            thread::sleep(Duration::from_millis(15));
        }
    }
    assert_eq!(last, VOTES as u64);
    done.store(last, Ordering::SeqCst);
    let (version, _, want) = tally(addr);
    assert_eq!(version, last);
    for (name, h) in followers {
        let f = h
            .join()
            .unwrap_or_else(|_| panic!("{name} follower failed"));
        assert_eq!(f.version, last, "{name}");
        assert_eq!(f.counts, want, "{name} ended on another tally: {f:?}");
        assert!(f.connects > 1, "{name} never reconnected: {f:?}");
        eprintln!(
            "{name}: {} (re)connects, {} single votes, to version {}",
            f.connects, f.votes, f.version
        );
    }
}

// --- polling: the ETag is the cursor -----------------------------------------------------------

fn conditional(addr: SocketAddr, target: &str, etag: &str) -> Response {
    request(
        addr,
        get_req_with(target, &format!("If-None-Match: {etag}\r\n")),
    )
}

#[test]
fn the_votes_etag_is_epoch_version_and_presence_version() {
    let addr = start_default();
    let r = get(addr, "/votes");
    let j = r.json();
    let etag = r.header("etag").expect("ETag on /votes").to_string();
    assert_eq!(
        etag,
        format!(
            "\"{}-{}-{}\"",
            j["epoch"].as_str(),
            j["version"].as_u64(),
            j["presence_version"].as_u64()
        )
    );
    presence(&j["presence"]);
    // Nothing changed: 304, no body, the same tag; as often as asked.
    for _ in 0..3 {
        let r = conditional(addr, "/votes", &etag);
        assert_eq!(r.status, 304, "{r:?}");
        assert!(r.body.is_empty());
        assert_eq!(r.header("content-length"), None, "{r:?}");
        assert_eq!(r.header("etag"), Some(etag.as_str()));
    }
    // A vote: 200 with the new tally and a new tag, which is then the one that matches.
    vote(addr, "2");
    let r = conditional(addr, "/votes", &etag);
    assert_eq!(r.status, 200);
    let new_tag = r.header("etag").unwrap().to_string();
    assert_ne!(new_tag, etag);
    assert_eq!(r.json()["version"].as_u64(), 1);
    assert_eq!(conditional(addr, "/votes", &new_tag).status, 304);
}

#[test]
fn a_polling_viewer_changes_presence_and_so_the_etag() {
    let addr = start_default();
    let first = get(addr, "/votes");
    let etag = first.header("etag").unwrap().to_string();
    assert_eq!(presence(&first.json()["presence"]), Presence::default());
    // A polling page names itself on each request; presence is published within a tick.
    let target = "/votes?viewer=abcdefgh&transport=poll";
    let changed = wait_for(WAIT, "the poll viewer to change the ETag", || {
        let r = conditional(addr, target, &etag);
        (r.status == 200).then_some(r)
    });
    let j = changed.json();
    assert_eq!(
        presence(&j["presence"]),
        Presence {
            poll: 1,
            ..Presence::default()
        }
    );
    assert_eq!(j["version"].as_u64(), 0, "no vote was cast");
    let new_tag = changed.header("etag").unwrap().to_string();
    assert_ne!(new_tag, etag);
    // Only the presence part changed.
    let (old, new) = (etag.trim_matches('"'), new_tag.trim_matches('"'));
    assert_eq!(
        old.rsplit_once('-').unwrap().0,
        new.rsplit_once('-').unwrap().0
    );
    // The same viewer polling again is no news.
    assert_eq!(conditional(addr, target, &new_tag).status, 304);
}

/// Many subscribers connect at once while votes flow, with a tally big enough (160 KB) that
/// building and writing the catch-up snapshot for each of them takes a while: each must still
/// see every vote after its resume exactly once — as a vote, or inside a snapshot that comes
/// before any later vote. The scene is played twice, each on a fresh server.
#[test]
fn a_crowd_connecting_while_votes_flow_misses_no_vote() {
    for _ in 0..2 {
        crowd_round();
    }
}

fn crowd_round() {
    const CROWD: usize = 100;
    /// Votes cast after the whole crowd has its resume.
    const MORE: usize = 300;
    let ids: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    // A resume of ~160 KB (800 candidates with names of the longest allowed length), larger
    // than a socket takes at once, so connects and broadcasts overlap mid-write.
    let addr = start(|c| {
        c.candidates = (0..800)
            .map(|i| {
                let id = format!("c{i}");
                let name = format!("{id} {}", "x".repeat(livevote::config::MAX_NAME - 8));
                (id, name)
            })
            .collect();
    });
    let done: Done = Arc::default();
    let resumed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let barrier = Arc::new(std::sync::Barrier::new(CROWD));
    let crowd: Vec<thread::JoinHandle<Follower>> = (0..CROWD)
        .map(|_| {
            let (d, n, b) = (
                Arc::clone(&done),
                Arc::clone(&resumed),
                Arc::clone(&barrier),
            );
            thread::spawn(move || {
                let mut f = Follower {
                    transport: "WebSocket",
                    ..Follower::default()
                };
                b.wait();
                let (mut ws, r) = ws_resume(addr, None, None);
                f.resume(&r);
                n.fetch_add(1, Ordering::SeqCst);
                while !finished(&d, &f) {
                    let j = ws_next_json(&mut ws);
                    if !is_presence(&j) {
                        f.message(&j);
                    }
                }
                f
            })
        })
        .collect();
    // One vote at a time (each broadcast on its own) while the crowd connects, and then some.
    let mut c = Client::connect(addr);
    let mut cast = 0;
    let mut after = 0;
    while after < MORE {
        if resumed.load(Ordering::SeqCst) == CROWD {
            after += 1;
        }
        c.send(post_req("/vote", &format!("uid={}", ids[cast % ids.len()])));
        assert_eq!(c.read_response_to("POST").status, 200);
        cast += 1;
    }
    done.store(cast as u64, Ordering::SeqCst);
    let (version, _, want) = tally(addr);
    assert_eq!(version, cast as u64);
    let mut failed = Vec::new();
    for (i, h) in crowd.into_iter().enumerate() {
        match h.join() {
            Ok(f) => assert_eq!(f.counts, want, "client {i}"),
            Err(_) => failed.push(i),
        }
    }
    assert!(
        failed.is_empty(),
        "clients {failed:?} of {CROWD} missed votes ({cast} cast)"
    );
}
