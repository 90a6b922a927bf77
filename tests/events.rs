//! `GET /events` (issue 4): the tally as Server-Sent Events, read off a raw TCP socket and parsed
//! by hand as WHATWG HTML §9.2.6 says a browser does — the stream's head, the `retry:` hint,
//! the resume event with `id: EPOCH-VERSION`, presence, each vote as its own event, heartbeat
//! comments, and every way a client can resume (`Last-Event-ID`, `?since=&epoch=`).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

/// Bound on anything that waits for the server (a hang guard, not a measurement).
const WAIT: Duration = Duration::from_secs(5);

/// Three candidates, so a delta can leave one out.
fn three() -> SocketAddr {
    start(|c| c.candidates = candidates(&["a", "b", "c"]))
}

/// The stream's first event, which must be the resume, with `id: EPOCH-TO`.
fn first_resume(s: &mut EventStream, epoch: &str) -> Resume {
    let e = s.next_event();
    let r = resume(&e.json());
    assert_eq!(r.epoch, epoch, "{e:?}");
    assert_eq!(
        e.id.as_deref(),
        Some(format!("{epoch}-{}", r.to).as_str()),
        "{e:?}"
    );
    assert_eq!(e.event, None, "resume is an unnamed (message) event: {e:?}");
    r
}

/// A vote event: `{"uid","count","version"}` with `id: EPOCH-VERSION`.
fn vote_event(e: &SseEvent, epoch: &str) -> (String, u64, u64) {
    let j = e.json();
    assert_eq!(j.keys(), ["uid", "count", "version"], "vote shape: {e:?}");
    let version = j["version"].as_u64();
    assert_eq!(
        e.id.as_deref(),
        Some(format!("{epoch}-{version}").as_str()),
        "{e:?}"
    );
    (j["uid"].as_str().to_string(), j["count"].as_u64(), version)
}

#[test]
fn the_stream_has_the_right_head_a_retry_hint_a_resume_presence_and_then_each_vote() {
    let addr = start_default();
    let (_, epoch, _) = tally(addr);
    let mut s = open_events(addr, "/events", "");
    let h = &s.head;
    assert!(
        h.header("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream")),
        "{h:?}"
    );
    assert_eq!(h.header("cache-control"), Some("no-store"), "{h:?}");
    assert_eq!(h.header("x-accel-buffering"), Some("no"), "{h:?}");
    assert_eq!(
        h.header("content-length"),
        None,
        "a stream has no length: {h:?}"
    );
    assert_eq!(h.header("transfer-encoding"), None, "{h:?}");
    assert!(h.closes(), "the stream ends with the connection: {h:?}");
    assert!(
        is_imf_fixdate(h.header("date").unwrap_or("")),
        "Date: {h:?}"
    );

    // The first event is the resume (no cursor: the whole tally); the retry hint comes first.
    let r = first_resume(&mut s, &epoch);
    assert_eq!(s.retries.len(), 1, "one retry: hint before the first event");
    assert!(
        (1000..2000).contains(&s.retries[0]),
        "retry {} ms",
        s.retries[0]
    );
    assert_eq!(
        r,
        Resume {
            kind: "snapshot".into(),
            from: 0,
            to: 0,
            epoch: epoch.clone(),
            counts: counts(&[("1", 0), ("2", 0)]),
        }
    );
    // Then presence (this stream counts itself once the next publication is out).
    let p = s.next_event();
    assert!(p.is_presence(), "second event is presence: {p:?}");
    presence(&p.json());

    // Each vote is its own event, in order, with its cursor as the id.
    for uid in ["1", "2", "1"] {
        vote(addr, uid);
    }
    let votes: Vec<(String, u64, u64)> = (0..3)
        .map(|_| vote_event(&s.next_non_presence(), &epoch))
        .collect();
    assert_eq!(
        votes,
        [
            ("1".to_string(), 1, 1),
            ("2".to_string(), 1, 2),
            ("1".to_string(), 2, 3)
        ]
    );
    // A second stream gets a different retry hint sometimes; always within 1–2 s.
    let mut other = open_events(addr, "/events", "");
    first_resume(&mut other, &epoch);
    assert!((1000..2000).contains(&other.retries[0]));
}

#[test]
fn an_idle_stream_gets_heartbeat_comments() {
    let addr = start(|c| c.limits.sse_heartbeat = Duration::from_millis(200));
    let (_, epoch, _) = tally(addr);
    let mut s = open_events(addr, "/events", "");
    first_resume(&mut s, &epoch);
    wait_for(WAIT, "two heartbeats", || {
        s.read_timeout(WAIT);
        match s.block() {
            Ok(Some(e)) => assert!(e.is_presence(), "no votes were cast: {e:?}"),
            Ok(None) => {}
            Err(e) => panic!("{e}"),
        }
        (s.comments.iter().filter(|c| c.trim() == "hb").count() >= 2).then_some(())
    });
    assert!(
        s.comments.iter().all(|c| c.trim() == "hb"),
        "{:?}",
        s.comments
    );
    // The stream still carries votes after its heartbeats.
    vote(addr, "2");
    assert_eq!(
        vote_event(&s.next_non_presence(), &epoch),
        ("2".to_string(), 1, 1)
    );
}

#[test]
fn last_event_id_resumes_with_the_changed_candidates_only_and_no_replay() {
    let addr = three();
    let epoch = four_votes(addr);
    // The browser resends the last id it saw: version 2 (a=1, b=1). Since then: a→2, c→1.
    let mut s = open_events(addr, "/events", &format!("Last-Event-ID: {epoch}-2\r\n"));
    let r = first_resume(&mut s, &epoch);
    assert_eq!(
        r,
        Resume {
            kind: "delta".into(),
            from: 2,
            to: 4,
            epoch: epoch.clone(),
            counts: counts(&[("a", 2), ("c", 1)]),
        }
    );
    // Nothing older is replayed: the next event that is not presence is the next new vote.
    s.assert_nothing_but_presence_for(Duration::from_millis(300));
    vote(addr, "b");
    assert_eq!(
        vote_event(&s.next_non_presence(), &epoch),
        ("b".to_string(), 2, 5)
    );
    assert!(
        s.seen.iter().filter(|e| !e.is_presence()).count() == 2,
        "resume and one vote: {:#?}",
        s.seen
    );

    // The header wins over the URL's cursor (the browser's reconnect keeps the original URL).
    let mut s = open_events(
        addr,
        "/events?since=0",
        &format!("Last-Event-ID: {epoch}-4\r\n"),
    );
    let r = first_resume(&mut s, &epoch);
    assert_eq!((r.kind.as_str(), r.from, r.to), ("delta", 4, 5));
    assert_eq!(r.counts, counts(&[("b", 2)]));
}

#[test]
fn last_event_id_from_another_epoch_or_unreadable_gets_a_snapshot() {
    let addr = three();
    let epoch = four_votes(addr);
    let all = counts(&[("a", 2), ("b", 1), ("c", 1)]);
    for id in [
        "18c0ffee-2".to_string(),
        format!("{epoch}x-2"),
        "garbage".to_string(),
        format!("{epoch}-"),
        String::new(),
    ] {
        let mut s = open_events(addr, "/events", &format!("Last-Event-ID: {id}\r\n"));
        let r = first_resume(&mut s, &epoch);
        assert_eq!(
            (r.kind.as_str(), r.to, &r.counts),
            ("snapshot", 4, &all),
            "Last-Event-ID: {id:?}"
        );
    }
}

#[test]
fn since_and_epoch_in_the_url_resume_when_there_is_no_header() {
    let addr = three();
    let epoch = four_votes(addr);
    for target in [
        format!("/events?since=2&epoch={epoch}"),
        // Without an epoch the version is taken as ours.
        "/events?since=2".to_string(),
    ] {
        let mut s = open_events(addr, &target, "");
        let r = first_resume(&mut s, &epoch);
        assert_eq!(
            (r.kind.as_str(), r.from, r.to, &r.counts),
            ("delta", 2, 4, &counts(&[("a", 2), ("c", 1)])),
            "{target}"
        );
    }
    // Another epoch in the URL: the whole tally.
    let mut s = open_events(addr, "/events?since=2&epoch=another", "");
    let r = first_resume(&mut s, &epoch);
    assert_eq!((r.kind.as_str(), r.to), ("snapshot", 4));
    assert_eq!(r.counts, counts(&[("a", 2), ("b", 1), ("c", 1)]));
    // `since=` empty is no cursor.
    let mut s = open_events(addr, "/events?since=&epoch=", "");
    assert_eq!(first_resume(&mut s, &epoch).kind, "snapshot");
}

#[test]
fn a_version_from_the_future_gets_a_snapshot() {
    let addr = three();
    let epoch = four_votes(addr);
    for (target, header) in [
        (format!("/events?since=5&epoch={epoch}"), String::new()),
        (
            "/events".to_string(),
            format!("Last-Event-ID: {epoch}-99\r\n"),
        ),
        (
            "/events".to_string(),
            format!("Last-Event-ID: {epoch}-1000000000000000\r\n"),
        ),
    ] {
        let mut s = open_events(addr, &target, &header);
        let r = first_resume(&mut s, &epoch);
        assert_eq!(
            (r.kind.as_str(), r.to, &r.counts),
            ("snapshot", 4, &counts(&[("a", 2), ("b", 1), ("c", 1)])),
            "{target} {header}"
        );
    }
}

#[test]
fn far_behind_gets_a_snapshot_and_at_most_1024_behind_a_delta() {
    let addr = three();
    let epoch = four_votes(addr);
    cast_pipelined(addr, "b", 1100);
    let now = 1104;
    let all = counts(&[("a", 2), ("b", 1101), ("c", 1)]);
    let mut s = open_events(addr, &format!("/events?since=2&epoch={epoch}"), "");
    let r = first_resume(&mut s, &epoch);
    assert_eq!((r.kind.as_str(), r.to, &r.counts), ("snapshot", now, &all));
    // Exactly 1,024 behind is still a delta; 1,025 is a snapshot.
    let mut s = open_events(
        addr,
        "/events",
        &format!("Last-Event-ID: {epoch}-{}\r\n", now - 1024),
    );
    let r = first_resume(&mut s, &epoch);
    assert_eq!(
        (r.kind.as_str(), r.from, r.to, &r.counts),
        ("delta", now - 1024, now, &counts(&[("b", 1101)]))
    );
    let mut s = open_events(
        addr,
        "/events",
        &format!("Last-Event-ID: {epoch}-{}\r\n", now - 1025),
    );
    assert_eq!(first_resume(&mut s, &epoch).kind, "snapshot");
}

#[test]
fn up_to_date_is_live_and_the_next_vote_follows() {
    let addr = three();
    let epoch = four_votes(addr);
    let mut s = open_events(addr, &format!("/events?since=4&epoch={epoch}"), "");
    let r = first_resume(&mut s, &epoch);
    assert_eq!(
        r,
        Resume {
            kind: "live".into(),
            from: 4,
            to: 4,
            epoch: epoch.clone(),
            counts: counts(&[]),
        }
    );
    vote(addr, "c");
    assert_eq!(
        vote_event(&s.next_non_presence(), &epoch),
        ("c".to_string(), 2, 5)
    );
}

#[test]
fn a_malformed_since_is_400() {
    let addr = start_default();
    for q in [
        "since=abc",
        "since=-1",
        "since=1.5",
        "since=%201",
        "since=18446744073709551616",
        "since=%zz",
    ] {
        let r = get(addr, &format!("/events?{q}"));
        assert_eq!(r.status, 400, "{q}: {r:?}");
        r.assert_standard_headers(false);
        assert!(
            !r.header("content-type")
                .unwrap_or("")
                .starts_with("text/event-stream"),
            "{q}: an error is not a stream"
        );
    }
}

#[test]
fn post_is_405_and_head_is_consistent_with_allow() {
    let addr = start_default();
    let r = post(addr, "/events", "x=1");
    assert_eq!(r.status, 405, "{r:?}");
    let allow: Vec<String> = r
        .header("allow")
        .expect("Allow on 405")
        .split(',')
        .map(|m| m.trim().to_string())
        .collect();
    assert!(allow.iter().any(|m| m == "GET"), "{allow:?}");
    assert!(!allow.iter().any(|m| m == "POST"), "{allow:?}");
    assert_eq!(tally(addr).0, 0, "a POST to /events votes for nobody");

    // HEAD: either the stream's head without a body (RFC 9110 §9.3.2: the same header fields as
    // GET) or a 405 — but only a 405 if `Allow` does not offer HEAD. Never a 404 for a resource
    // that exists.
    let r = request(addr, "HEAD /events HTTP/1.1\r\nHost: localhost\r\n\r\n");
    match r.status {
        200 => {
            assert!(
                r.header("content-type")
                    .is_some_and(|t| t.starts_with("text/event-stream")),
                "{r:?}"
            );
            assert!(r.body.is_empty());
        }
        405 => {
            let head_allow = r.header("allow").unwrap_or("");
            assert!(!head_allow.contains("HEAD"), "{r:?}");
            assert!(
                !allow.iter().any(|m| m == "HEAD"),
                "POST's Allow offers HEAD, but HEAD is refused: {allow:?}"
            );
        }
        _ => panic!(
            "HEAD /events answered {} although GET /events exists (and POST's Allow says \
             {allow:?}): {r:?}",
            r.status
        ),
    }
}

#[test]
fn a_closed_stream_is_forgotten_and_others_keep_streaming() {
    // Heartbeats find the streams whose clients went away.
    let addr = start(|c| c.limits.sse_heartbeat = Duration::from_millis(200));
    let (_, epoch, _) = tally(addr);
    let mut keep = open_events(addr, "/events", "");
    first_resume(&mut keep, &epoch);
    for _ in 0..20 {
        let mut gone = open_events(addr, "/events", "");
        first_resume(&mut gone, &epoch);
    }
    vote(addr, "1");
    assert_eq!(
        vote_event(&keep.next_non_presence(), &epoch),
        ("1".to_string(), 1, 1)
    );
    // Once the dropped streams are noticed, presence counts only the one left.
    keep.until(WAIT, "presence with one SSE viewer", |e| {
        e.is_presence() && presence(&e.json()).sse == 1
    });
}
