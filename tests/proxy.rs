//! Behind a reverse proxy, against the real binary: `--trusted-proxy` makes `X-Forwarded-For` /
//! `Forwarded` decide the client's address (the per-address viewer cap, presence, the access
//! log) and `X-Forwarded-Host` / `-Proto` the Host allowlist and the Origin check; without it
//! the same headers change nothing. `--base-path /polls` serves every page and live endpoint
//! below the prefix, redirects carry it, and nothing outside it is served.

mod common;

use std::time::Duration;

use common::binary::Livevote;
use common::*;

/// Hang guard for a condition (presence is published within a second; the access log is
/// written by a thread of its own).
const WAIT: Duration = Duration::from_secs(10);

/// The binary on a free port, in memory, with its access log on, and `extra`.
fn server(extra: &[&str]) -> Livevote {
    let mut args = vec!["--addr", "127.0.0.1:0", "--memory"];
    args.extend_from_slice(extra);
    Livevote::start(args)
}

/// `GET /votes` as a polling viewer `id`, with `headers` (lines ending in CRLF).
fn poll_as(s: &Livevote, id: &str, headers: &str) -> Response {
    let r = request(
        s.addr,
        get_req_with(&format!("/votes?viewer={id}&transport=poll"), headers),
    );
    assert_eq!(r.status, 200, "{r:?}");
    r
}

/// The published presence: (polling viewers, WebSocket viewers).
fn presence(s: &Livevote) -> (u64, u64) {
    let j = get(s.addr, "/votes").json();
    (j["presence"]["poll"].as_u64(), j["presence"]["ws"].as_u64())
}

/// Three clients behind the proxy, five made-up viewer ids each, with a cap of 2 per address;
/// then a WebSocket viewer, so that the publication that counts it counts every poll before it.
/// Returns the polling viewers counted.
fn three_clients_five_ids_each(s: &Livevote) -> u64 {
    for i in 0..5 {
        poll_as(
            s,
            &format!("viewer-a-{i:04}"),
            "X-Forwarded-For: 198.51.100.1\r\n",
        );
        // A client's own claim to the left of what the proxy appended is not read.
        poll_as(
            s,
            &format!("viewer-b-{i:04}"),
            &format!("X-Forwarded-For: 203.0.113.{i}, 198.51.100.2\r\n"),
        );
        poll_as(
            s,
            &format!("viewer-c-{i:04}"),
            "Forwarded: for=\"[2001:db8::1]:4711\";proto=https\r\n",
        );
    }
    let _ws = ws_connect(s.addr, "/get_new_vote");
    let (poll, _) = wait_for(WAIT, "the WebSocket viewer to be published", || {
        let p = presence(s);
        (p.1 == 1).then_some(p)
    });
    poll
}

#[test]
fn from_a_trusted_proxy_the_forwarded_client_decides_the_viewer_cap_presence_and_the_log() {
    let s = server(&["--trusted-proxy", "127.0.0.1", "--max-viewers-per-ip", "2"]);
    // Two ids counted for each of the three addresses (an IPv6 /64 counts as one).
    assert_eq!(three_clients_five_ids_each(&s), 6);
    // The access log shows the client, not the proxy.
    wait_for(WAIT, "the access log's lines", || {
        let log = s.stderr_text();
        let line = |id: &str| {
            log.lines()
                .find(|l| l.contains(&format!("viewer={id}&")))
                .map(|l| l.split(' ').next().unwrap_or("").to_string())
        };
        let who = [
            line("viewer-a-0000")?,
            line("viewer-b-0003")?,
            line("viewer-c-0004")?,
        ];
        assert_eq!(
            who,
            ["198.51.100.1", "198.51.100.2", "2001:db8::1"],
            "{log}"
        );
        Some(())
    });
}

#[test]
fn from_an_untrusted_peer_the_forwarding_headers_are_ignored() {
    // No --trusted-proxy at all, then one that is not the peer.
    for extra in [&[][..], &["--trusted-proxy", "10.0.0.0/8"]] {
        let mut args = vec!["--max-viewers-per-ip", "2"];
        args.extend_from_slice(extra);
        let s = server(&args);
        // Fifteen ids, all from 127.0.0.1: two counted.
        assert_eq!(three_clients_five_ids_each(&s), 2, "{extra:?}");
        wait_for(WAIT, "the access log's lines", || {
            let log = s.stderr_text();
            let lines: Vec<&str> = log.lines().filter(|l| l.contains("viewer=")).collect();
            (lines.len() == 15).then_some(())?;
            for l in lines {
                assert!(l.starts_with("127.0.0.1 - - ["), "{l}");
            }
            Some(())
        });
        // Nor does a forwarded host count: the Host itself is checked.
        let r = request(
            s.addr,
            get_req_with("/votes", "X-Forwarded-Host: evil.example\r\n"),
        );
        assert_eq!(r.status, 200, "{r:?}");
    }
}

#[test]
fn a_trusted_proxys_forwarded_host_and_scheme_meet_the_host_allowlist_and_the_origin_check() {
    let s = server(&["--trusted-proxy", "127.0.0.1", "--host", "vote.example"]);
    let via = |host: &str, proto: &str| {
        format!("X-Forwarded-For: 198.51.100.1\r\nX-Forwarded-Host: {host}\r\nX-Forwarded-Proto: {proto}\r\n")
    };
    // The name the browser used is what the allowlist checks (the proxy's Host is local).
    let r = request(
        s.addr,
        get_req_with("/votes", &via("vote.example", "https")),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = request(
        s.addr,
        get_req_with("/votes", &via("evil.example", "https")),
    );
    assert_eq!(r.status, 421, "{r:?}");
    let r = request(s.addr, get_req_with("/votes", &via("bad host", "https")));
    assert_eq!(r.status, 400, "{r:?}");
    // The same through RFC 7239's Forwarded.
    let r = request(
        s.addr,
        get_req_with(
            "/votes",
            "Forwarded: for=198.51.100.1;host=evil.example;proto=https\r\n",
        ),
    );
    assert_eq!(r.status, 421, "{r:?}");

    // A vote's Origin must name the scheme and host the browser used.
    let vote_from = |origin: &str, proto: &str| {
        let body = "uid=1";
        request(
            s.addr,
            format!(
                "POST /vote HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: {origin}\r\n{}\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                via("vote.example", proto),
                body.len()
            ),
        )
        .status
    };
    assert_eq!(vote_from("https://vote.example", "https"), 200);
    assert_eq!(vote_from("http://vote.example", "https"), 403);
    assert_eq!(vote_from("http://vote.example", "http"), 200);
    assert_eq!(vote_from("https://vote.example:8443", "https"), 403);
    // And so must a WebSocket's.
    let upgrade = |origin: &str| {
        request(
            s.addr,
            format!(
                "GET /get_new_vote HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n{}\r\n",
                via("vote.example", "https")
            ),
        )
        .status
    };
    assert_eq!(upgrade("https://vote.example"), 101);
    assert_eq!(upgrade("http://vote.example"), 403);
    assert_eq!(upgrade("https://evil.example"), 403);
}

#[test]
fn under_a_base_path_everything_is_below_it_and_nothing_outside() {
    let s = server(&["--base-path", "/polls"]);
    let a = s.addr;

    // The page, its script and style, the landing page and the chat page.
    let page = get(a, "/polls/index?transport=ws");
    assert_eq!(page.status, 200, "{page:?}");
    let html = page.text();
    for needle in [
        "src=\"/polls/vote.js\"",
        "href=\"/polls/style.css\"",
        "data-base=\"/polls\"",
        "action=\"/polls/vote\"",
        "name=\"back\" value=\"/polls/index?transport=ws\"",
        "href=\"/polls/index?transport=sse\"",
    ] {
        assert!(html.contains(needle), "{needle}: {html}");
    }
    for path in [
        "/polls/vote.js",
        "/polls/style.css",
        "/polls/",
        "/polls/chat",
    ] {
        assert_eq!(get(a, path).status, 200, "{path}");
    }
    // The base without its slash: a redirect into it, the query kept.
    let r = get(a, "/polls?x=1");
    assert_eq!(r.status, 308, "{r:?}");
    assert_eq!(r.header("location"), Some("/polls/?x=1"));
    // Outside the prefix: nothing.
    for path in [
        "/",
        "/index",
        "/vote.js",
        "/votes",
        "/metrics",
        "/pollsx/index",
        "/get_new_vote",
    ] {
        assert_eq!(get(a, path).status, 404, "{path}");
    }
    assert_eq!(post(a, "/vote", "uid=1").status, 404);

    // Votes, and the no-JavaScript form's redirect back to the page under the prefix.
    assert_eq!(post(a, "/polls/vote", "uid=1").status, 200);
    assert_eq!(post(a, "/polls/ticket", "nid=2").status, 200);
    let r = post(
        a,
        "/polls/vote",
        "uid=1&back=%2Fpolls%2Findex%3Ftransport%3Dpoll",
    );
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.header("location"), Some("/polls/index?transport=poll"));
    // A `back` outside the prefix is no page of ours: no redirect there.
    let r = post(a, "/polls/vote", "uid=1&back=%2Findex");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.header("location").is_none(), "{r:?}");

    // The live endpoints: the tally, a long-poll, SSE, WebSocket, the chat echo, metrics.
    let j = get(a, "/polls/votes").json();
    let version = j["version"].as_u64();
    assert_eq!(version, 4);
    let r = get(a, "/polls/get_new_vote?since=0");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["version"].as_u64(), version);
    let mut sse = open_events(a, "/polls/events", "");
    assert_eq!(resume(&sse.next_non_presence().json()).to, version);
    let mut ws = ws_connect(a, "/polls/get_new_vote");
    assert_eq!(resume(&ws_next_non_presence(&mut ws)).to, version);
    // A vote over the socket reaches the stream.
    ws.send(tungstenite::Message::text("2")).unwrap();
    let e = sse.until(WAIT, "the WebSocket vote on the stream", |e| {
        !e.is_presence() && e.json()["version"].as_u64() == version + 1
    });
    assert_eq!(e.json()["uid"].as_str(), "2");
    let mut chat = ws_connect(a, "/polls/chatsocket");
    chat.send(tungstenite::Message::text("hi")).unwrap();
    assert_eq!(chat.read().unwrap(), tungstenite::Message::text("hi"));
    let m = get(a, "/polls/metrics");
    assert_eq!(m.status, 200);
    assert!(m.text().contains("livevote_"), "{m:?}");
}
