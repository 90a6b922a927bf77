//! Polls people can run (docs/API.md): the admin API's contract, voter modes under
//! concurrency over HTTP and WebSocket, isolation between polls on every transport, hidden
//! results on every transport, escaping of hostile texts, and persistence across `kill -9`.
//! Each test starts its own server; the other side is raw TCP, tungstenite, or our SSE reader.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::binary::Livevote;
use common::tempdir::TempDir;
use common::*;

const TOKEN: &str = "test-admin-token-0123456789";

fn auth() -> String {
    format!("Authorization: Bearer {TOKEN}\r\n")
}

fn server() -> SocketAddr {
    start(|c| {
        c.admin_token = Some(TOKEN.into());
        c.longpoll_timeout = Duration::from_secs(5);
    })
}

fn admin(addr: SocketAddr, method: &str, path: &str, body: &str) -> Response {
    call(addr, method, path, &auth(), body)
}

/// Creates a poll (asserting 201) and returns its JSON.
fn create(addr: SocketAddr, body: &str) -> Json {
    let r = admin(addr, "POST", "/api/polls", body);
    assert_eq!(r.status, 201, "{r:?}");
    r.json()
}

/// A voter: a cookie jar of one cookie, `lv_voter`, set by the server's first answer.
struct Voter {
    cookie: Option<String>,
}

impl Voter {
    fn new() -> Voter {
        Voter { cookie: None }
    }

    fn header(&self) -> String {
        self.cookie
            .as_ref()
            .map_or(String::new(), |c| format!("Cookie: {c}\r\n"))
    }

    fn vote(&mut self, addr: SocketAddr, poll: &str, uid: &str) -> Response {
        let r = call(
            addr,
            "POST",
            &format!("/p/{poll}/vote"),
            &self.header(),
            &format!("uid={uid}"),
        );
        if let Some(set) = r.header("set-cookie") {
            let pair = set.split(';').next().unwrap().to_string();
            assert!(pair.starts_with("lv_voter="), "{set}");
            self.cookie = Some(pair);
        }
        r
    }

    fn get(&self, addr: SocketAddr, path: &str) -> Response {
        request(addr, get_req_with(path, &self.header()))
    }
}

fn counts_of(j: &Json) -> Vec<u64> {
    j["candidates"]
        .as_array()
        .iter()
        .map(|c| c["count"].as_u64())
        .collect()
}

#[test]
fn the_admin_api_keeps_its_contract() {
    let addr = server();
    // No token, a wrong one, another scheme: 401 with the challenge.
    for extra in [
        String::new(),
        "Authorization: Bearer wrong-token-wrong-token\r\n".to_string(),
        format!("Authorization: Basic {TOKEN}\r\n"),
    ] {
        let r = call(addr, "GET", "/api/polls", &extra, "");
        assert_eq!(r.status, 401, "{extra:?}: {r:?}");
        assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    }
    let r = call(
        addr,
        "POST",
        "/api/polls",
        "",
        "question=Q&option=a&option=b",
    );
    assert_eq!(r.status, 401);

    // Create: 201, Location, the poll; options numbered in order; open, nothing counted.
    let r = admin(
        addr,
        "POST",
        "/api/polls",
        "id=lunch&question=Lunch%3F&option=Pizza&option=Soup&option=Salad&mode=once",
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("location"), Some("/p/lunch"));
    let p = r.json();
    assert_eq!(p["id"].as_str(), "lunch");
    assert_eq!(p["question"].as_str(), "Lunch?");
    assert_eq!(p["mode"].as_str(), "once");
    assert_eq!(p["results"].as_str(), "always");
    assert_eq!(p["state"].as_str(), "open");
    assert_eq!(p["total"].as_u64(), 0);
    let options: Vec<(&str, &str)> = p["candidates"]
        .as_array()
        .iter()
        .map(|c| (c["uid"].as_str(), c["name"].as_str()))
        .collect();
    assert_eq!(options, [("1", "Pizza"), ("2", "Soup"), ("3", "Salad")]);
    // Without an id, one is made.
    let made = create(addr, "question=Q&option=a&option=b");
    assert!(!made["id"].as_str().is_empty());

    // Taken, malformed, out of the limits, not a form.
    let q300 = "q".repeat(300);
    let q301 = "q".repeat(301);
    let o101 = "o".repeat(101);
    let too_many: String = (0..21).map(|i| format!("&option={i}")).collect();
    let bad = [
        ("id=lunch&question=Q&option=a&option=b", 409),
        ("id=a%20b&question=Q&option=a&option=b", 400),
        ("question=Q&option=a", 400),
        (&*format!("question=Q{too_many}"), 400),
        (&*format!("question={q301}&option=a&option=b"), 400),
        (&*format!("question=Q&option=a&option={o101}"), 400),
        ("question=&option=a&option=b", 400),
        ("question=Q&option=a&option=b&mode=twice", 400),
        ("question=Q&option=a&option=b&results=never", 400),
    ];
    for (body, status) in bad {
        let r = admin(addr, "POST", "/api/polls", body);
        assert_eq!(r.status, status, "{body}: {r:?}");
        assert!(r.json().has("error"), "{r:?}");
    }
    assert_eq!(
        admin(
            addr,
            "POST",
            "/api/polls",
            &format!("id=q300&question={q300}&option=a&option=b")
        )
        .status,
        201
    );
    let r = request(
        addr,
        format!(
            "POST /api/polls HTTP/1.1\r\nHost: localhost\r\n{}Content-Type: application/json\r\n\
             Content-Length: 2\r\n\r\n{{}}",
            auth()
        ),
    );
    assert_eq!(r.status, 415, "{r:?}");

    // List (default among them), get, 404s, 405s.
    let list = admin(addr, "GET", "/api/polls", "").json();
    let ids: Vec<&str> = list["polls"]
        .as_array()
        .iter()
        .map(|p| p["id"].as_str())
        .collect();
    assert!(
        ids.contains(&"default") && ids.contains(&"lunch"),
        "{ids:?}"
    );
    assert_eq!(
        admin(addr, "GET", "/api/polls/lunch", "").json()["id"].as_str(),
        "lunch"
    );
    assert_eq!(admin(addr, "GET", "/api/polls/nope", "").status, 404);
    assert_eq!(admin(addr, "POST", "/api/polls/nope/close", "").status, 404);
    assert_eq!(
        admin(addr, "POST", "/api/polls/lunch/explode", "").status,
        404
    );
    assert_eq!(admin(addr, "GET", "/api/polls/lunch/close", "").status, 405);
    assert_eq!(admin(addr, "PUT", "/api/polls/lunch", "").status, 405);
    assert_eq!(get(addr, "/p/nope").status, 404);
    assert_eq!(get(addr, "/p/nope/votes").status, 404);

    // Close: votes get 409 on HTTP; open again: counted.
    let mut v = Voter::new();
    assert_eq!(v.vote(addr, "lunch", "1").status, 200);
    let closed = admin(addr, "POST", "/api/polls/lunch/close", "").json();
    assert_eq!(closed["state"].as_str(), "closed");
    let r = Voter::new().vote(addr, "lunch", "2");
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.json()["error"].as_str(), "poll closed");
    assert_eq!(
        admin(addr, "POST", "/api/polls/lunch/open", "").json()["state"].as_str(),
        "open"
    );
    assert_eq!(Voter::new().vote(addr, "lunch", "2").status, 200);
    assert_eq!(counts_of(&get(addr, "/p/lunch/votes").json()), [1, 1, 0]);

    // Reset: counts zero, voters forgotten (the first voter may vote again), a new version.
    let before = get(addr, "/p/lunch/votes").json()["version"].as_u64();
    let reset = admin(addr, "POST", "/api/polls/lunch/reset", "").json();
    assert_eq!(counts_of(&reset), [0, 0, 0]);
    assert_eq!(reset["voters"].as_u64(), 0);
    assert!(reset["version"].as_u64() > before);
    assert_eq!(v.vote(addr, "lunch", "3").status, 200);

    // Delete: 204, then gone; the default poll stays.
    let r = admin(addr, "DELETE", "/api/polls/default", "");
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(admin(addr, "DELETE", "/api/polls/lunch", "").status, 204);
    assert_eq!(admin(addr, "GET", "/api/polls/lunch", "").status, 404);
    assert_eq!(get(addr, "/p/lunch/votes").status, 404);
    assert_eq!(admin(addr, "DELETE", "/api/polls/lunch", "").status, 404);
    // The default poll answers under its old routes and its id.
    assert_eq!(
        admin(addr, "GET", "/api/polls/default", "").json()["mode"].as_str(),
        "unlimited"
    );
}

#[test]
fn max_polls_counts_the_default_poll() {
    let addr = start(|c| {
        c.admin_token = Some(TOKEN.into());
        c.max_polls = 3;
    });
    create(addr, "id=a&question=Q&option=x&option=y");
    create(addr, "id=b&question=Q&option=x&option=y");
    let r = admin(
        addr,
        "POST",
        "/api/polls",
        "id=c&question=Q&option=x&option=y",
    );
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.json()["error"].as_str(), "too many polls");
    // A deletion makes room again.
    assert_eq!(admin(addr, "DELETE", "/api/polls/a", "").status, 204);
    create(addr, "id=c&question=Q&option=x&option=y");
}

#[test]
fn the_admin_cookie_is_the_token_exchanged_and_works_from_the_same_origin_only() {
    let addr = server();
    assert_eq!(call(addr, "POST", "/admin", "", "token=wrong").status, 401);
    let r = call(addr, "POST", "/admin", "", &format!("token={TOKEN}"));
    assert_eq!(r.status, 204, "{r:?}");
    let set = r.header("set-cookie").unwrap().to_string();
    for attr in ["lv_admin=", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{attr}: {set}");
    }
    assert!(!set.contains(TOKEN), "the token is not the cookie: {set}");
    let cookie = format!("Cookie: {}\r\n", set.split(';').next().unwrap());
    assert_eq!(call(addr, "GET", "/api/polls", &cookie, "").status, 200);
    let foreign = format!("{cookie}Origin: http://evil.example\r\n");
    assert_eq!(call(addr, "GET", "/api/polls", &foreign, "").status, 401);
    // A forged or voter cookie is not an admin cookie.
    let forged = "Cookie: lv_admin=99999999999999.AAAA\r\n";
    assert_eq!(call(addr, "GET", "/api/polls", forged, "").status, 401);
}

#[test]
fn once_counts_one_vote_per_voter_under_concurrency() {
    let addr = server();
    create(addr, "id=p&question=Q&option=a&option=b&mode=once");
    let mut v = Voter::new();
    assert_eq!(v.vote(addr, "p", "1").status, 200);
    let mut second = Voter::new();
    assert_eq!(second.vote(addr, "p", "2").status, 200);
    // Twenty tabs of a third voter at the same moment: one counts.
    let mut third = Voter::new();
    let r = third.vote(addr, "p", "1");
    assert_eq!(r.status, 200);
    admin(addr, "POST", "/api/polls/p/reset", "");
    let header = Arc::new(third.header());
    let barrier = Arc::new(Barrier::new(20));
    let statuses: Vec<u16> = (0..20)
        .map(|k| {
            let (h, b) = (Arc::clone(&header), Arc::clone(&barrier));
            std::thread::spawn(move || {
                b.wait();
                let uid = if k % 2 == 0 { "1" } else { "2" };
                call(addr, "POST", "/p/p/vote", &h, &format!("uid={uid}")).status
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 409).count(),
        19,
        "{statuses:?}"
    );
    let j = get(addr, "/p/p/votes").json();
    assert_eq!(j["total"].as_u64(), 1);
    // The answer names what they voted for.
    let r = call(addr, "POST", "/p/p/vote", &header, "uid=2");
    assert_eq!(r.status, 409);
    assert!(r.json().has("uid"));
    // A replayed vote id gets its first answer, not 409.
    let mut w = Voter::new();
    let first = call(addr, "POST", "/p/p/vote", "", "uid=1&vote_id=abc-1");
    assert_eq!(first.status, 200);
    let cookie = first
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    w.cookie = Some(cookie);
    let again = call(
        addr,
        "POST",
        "/p/p/vote",
        &w.header(),
        "uid=1&vote_id=abc-1",
    );
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(
        again.json()["version"].as_u64(),
        first.json()["version"].as_u64()
    );
}

#[test]
fn change_moves_a_vote_in_one_version_and_counts_one_per_voter_under_concurrency() {
    let addr = server();
    create(
        addr,
        "id=p&question=Q&option=a&option=b&option=c&mode=change",
    );
    let mut ws = ws_connect(addr, "/p/p/get_new_vote");
    let resume = ws_next_non_presence(&mut ws);
    assert_eq!(resume["kind"].as_str(), "snapshot");
    let mut v = Voter::new();
    assert_eq!(v.vote(addr, "p", "1").json()["count"].as_u64(), 1);
    let moved = v.vote(addr, "p", "2").json();
    assert_eq!(moved["version"].as_u64(), 2);
    let changes: Vec<(&str, u64)> = moved["changes"]
        .as_array()
        .iter()
        .map(|c| (c["uid"].as_str(), c["count"].as_u64()))
        .collect();
    assert_eq!(changes, [("2", 1), ("1", 0)]);
    // Live: one message per version; the move carries both counts.
    let first = ws_next_non_presence(&mut ws);
    assert_eq!((first["uid"].as_str(), first["version"].as_u64()), ("1", 1));
    let live = ws_next_non_presence(&mut ws);
    assert_eq!(live["version"].as_u64(), 2);
    assert_eq!(live["changes"].as_array().len(), 2, "{live:?}");
    // Many tabs of one voter moving at once: still one vote, wherever it ends.
    let header = Arc::new(v.header());
    let barrier = Arc::new(Barrier::new(12));
    let threads: Vec<_> = (0..12)
        .map(|k| {
            let (h, b) = (Arc::clone(&header), Arc::clone(&barrier));
            std::thread::spawn(move || {
                b.wait();
                let uid = ["1", "2", "3"][k % 3];
                call(addr, "POST", "/p/p/vote", &h, &format!("uid={uid}")).status
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 200);
    }
    let j = get(addr, "/p/p/votes").json();
    assert_eq!(j["total"].as_u64(), 1, "{j:?}");
    assert_eq!(counts_of(&j).iter().sum::<u64>(), 1);
}

#[test]
fn websocket_votes_follow_the_voter_cookie() {
    let addr = server();
    create(addr, "id=p&question=Q&option=a&option=b&mode=once");
    let mut v = Voter::new();
    assert_eq!(v.vote(addr, "p", "1").status, 200);
    let cookie = v.cookie.clone().unwrap();
    let mut ws = ws_connect_with(addr, "/p/p/get_new_vote", &[("Cookie", &cookie)]);
    ws.send(tungstenite::Message::Text(vote_message("2", "w-1")))
        .unwrap();
    let e = ws_next_of_type(&mut ws, "error");
    assert_eq!(e["error"].as_str(), "already voted");
    // Without a cookie, a one-vote poll refuses WebSocket votes (nobody to count once).
    let mut anon = ws_connect(addr, "/p/p/get_new_vote");
    anon.send(tungstenite::Message::Text(vote_message("2", "w-2")))
        .unwrap();
    let e = ws_next_of_type(&mut anon, "error");
    assert!(e["error"].as_str().contains("voter"), "{e:?}");
    // A new voter's WebSocket vote counts, once.
    let mut w = Voter::new();
    w.get(addr, "/p/p");
    assert_eq!(w.vote(addr, "p", "2").status, 200);
    assert_eq!(get(addr, "/p/p/votes").json()["total"].as_u64(), 2);
}

#[test]
fn a_vote_in_one_poll_never_reaches_another_polls_subscribers() {
    let addr = server();
    create(addr, "id=a&question=A&option=x&option=y");
    create(addr, "id=b&question=B&option=x&option=y");
    let mut ws = ws_connect(addr, "/p/b/get_new_vote");
    assert_eq!(ws_next_non_presence(&mut ws)["type"].as_str(), "resume");
    let mut sse = open_events(addr, "/p/b/events", "");
    assert_eq!(sse.next_non_presence().json()["type"].as_str(), "resume");
    let b_version = get(addr, "/p/b/votes").json()["version"].as_u64();
    let poller = std::thread::spawn(move || {
        get(addr, &format!("/p/b/get_new_vote?since={b_version}")).json()
    });
    // Votes in A (and the default poll), then one in B: B's subscribers' first vote is B's.
    for _ in 0..3 {
        assert_eq!(post(addr, "/p/a/vote", "uid=1").status, 200);
    }
    vote(addr, "1");
    assert_eq!(post(addr, "/p/b/vote", "uid=2").status, 200);
    let live = ws_next_non_presence(&mut ws);
    assert_eq!(
        (live["uid"].as_str(), live["version"].as_u64()),
        ("2", 1),
        "{live:?}"
    );
    let e = sse.next_non_presence().json();
    assert_eq!(
        (e["uid"].as_str(), e["version"].as_u64()),
        ("2", 1),
        "{e:?}"
    );
    let lp = poller.join().unwrap();
    assert_eq!(lp["version"].as_u64(), 1, "{lp:?}");
    assert_eq!(lp["data"]["uid"].as_str(), "2");
    // Each poll's cursor is its own.
    assert_eq!(get(addr, "/p/a/votes").json()["version"].as_u64(), 3);
    assert_eq!(get(addr, "/p/b/votes").json()["version"].as_u64(), 1);
}

/// Whether `text` shows any count: a `"count"` member, or a number inside a `<span>`.
fn leaks_count(text: &str) -> bool {
    text.contains("\"count\"")
        || text
            .split("<span>")
            .skip(1)
            .any(|s| s.split("</span>").next().is_some_and(|n| !n.is_empty()))
}

#[test]
fn after_close_hides_every_count_on_every_transport_until_the_close() {
    let addr = server();
    create(
        addr,
        "id=h&question=Q&option=a&option=b&results=after_close",
    );
    let mut ws = ws_connect(addr, "/p/h/get_new_vote");
    let resume = ws_next_non_presence(&mut ws);
    assert!(
        !resume.has("changes") && resume["hidden"].as_bool(),
        "{resume:?}"
    );
    for c in resume["candidates"].as_array() {
        assert!(!c.has("count"), "{resume:?}");
    }
    let mut sse = open_events(addr, "/p/h/events", "");
    sse.next_non_presence();
    let poller = std::thread::spawn(move || get(addr, "/p/h/get_new_vote?since=0").text());

    let mut v = Voter::new();
    let r = v.vote(addr, "h", "2");
    assert_eq!(r.status, 200);
    assert!(
        !leaks_count(&r.text()),
        "the vote's own answer: {}",
        r.text()
    );
    v.vote(addr, "h", "2");
    Voter::new().vote(addr, "h", "1");

    // Live: the total, and not which option moved.
    for _ in 0..3 {
        let live = ws_next_non_presence(&mut ws);
        assert!(
            !live.has("uid") && !live.has("count") && live.has("total"),
            "{live:?}"
        );
        let e = sse.next_non_presence();
        assert!(
            !e.data.contains("\"uid\"") && !leaks_count(&e.data),
            "{e:?}"
        );
    }
    let lp = poller.join().unwrap();
    assert!(!leaks_count(&lp) && !lp.contains("\"uid\""), "{lp}");
    let lp = v.get(addr, "/p/h/get_new_vote?since=0").text();
    assert!(
        !leaks_count(&lp) && !lp.contains("\"uid\""),
        "a catch-up: {lp}"
    );
    let polled = v.get(addr, "/p/h/votes").text();
    assert!(!leaks_count(&polled), "{polled}");
    assert!(polled.contains("\"total\":3"), "{polled}");
    let page = v.get(addr, "/p/h").text();
    assert!(!leaks_count(&page), "the page: {page}");
    assert!(
        !page.contains("--share:33") && !page.contains("--share:66"),
        "{page}"
    );
    assert_eq!(v.get(addr, "/p/h/results.csv").status, 403);
    assert_eq!(v.get(addr, "/p/h/results.json").status, 403);
    // The admin sees everything meanwhile.
    let csv = request(addr, get_req_with("/p/h/results.csv", &auth())).text();
    assert!(csv.contains("2,b,2,66.7"), "{csv}");

    // Closed: everyone gets the counts, live.
    admin(addr, "POST", "/api/polls/h/close", "");
    let snap = ws_next_non_presence(&mut ws);
    assert_eq!(snap["type"].as_str(), "snapshot", "{snap:?}");
    assert_eq!(counts_of(&snap), [1, 2]);
    assert_eq!(snap["state"].as_str(), "closed");
    let e = sse.next_non_presence().json();
    assert_eq!(counts_of(&e), [1, 2], "{e:?}");
    assert_eq!(counts_of(&get(addr, "/p/h/votes").json()), [1, 2]);
    assert_eq!(get(addr, "/p/h/results.csv").status, 200);
}

#[test]
fn after_vote_reveals_the_counts_to_a_voter_right_after_their_vote() {
    let addr = server();
    create(addr, "id=h&question=Q&option=a&option=b&results=after_vote");
    Voter::new().vote(addr, "h", "1");
    // A viewer with a cookie (from a page load... here from a first vote elsewhere): make
    // one by voting in another after_vote poll, so this poll has not seen them vote.
    create(
        addr,
        "id=other&question=Q&option=a&option=b&results=after_vote",
    );
    let mut v = Voter::new();
    v.vote(addr, "other", "1");
    let cookie = v.cookie.clone().unwrap();
    let mut ws = ws_connect_with(addr, "/p/h/get_new_vote", &[("Cookie", &cookie)]);
    let resume = ws_next_non_presence(&mut ws);
    assert!(resume["hidden"].as_bool(), "{resume:?}");
    assert!(!leaks_count(&v.get(addr, "/p/h/votes").text()));
    let mut sse = open_events(addr, "/p/h/events", &format!("Cookie: {cookie}\r\n"));
    assert!(sse.next_non_presence().json()["hidden"].as_bool());

    assert_eq!(v.vote(addr, "h", "2").json()["count"].as_u64(), 1);
    // Their WebSocket: the hidden live vote, then the snapshot with the counts (or the
    // snapshot at once); from then on, full messages.
    let snap = loop {
        let m = ws_next_non_presence(&mut ws);
        if m.has("type") && m["type"].as_str() == "snapshot" {
            break m;
        }
        assert!(!m.has("count"), "before the reveal: {m:?}");
    };
    assert_eq!(counts_of(&snap), [1, 1]);
    let e = sse.next_non_presence().json();
    assert_eq!(counts_of(&e), [1, 1], "{e:?}");
    Voter::new().vote(addr, "h", "1");
    assert_eq!(ws_next_non_presence(&mut ws)["count"].as_u64(), 2);
    assert_eq!(counts_of(&v.get(addr, "/p/h/votes").json()), [2, 1]);
    // Someone who has not voted still sees nothing.
    assert!(!leaks_count(&get(addr, "/p/h/votes").text()));
}

#[test]
fn hostile_texts_are_escaped_everywhere() {
    let addr = server();
    let q = "<script>alert(1)</script> \"q\" & 'x'";
    let o1 = "=HYPERLINK(\"http://evil\",\"x\")";
    let o2 = "\"><img src=x onerror=alert(1)>";
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    create(
        addr,
        &format!(
            "id=x&question={}&option={}&option={}",
            enc(q),
            enc(o1),
            enc(o2)
        ),
    );
    let page = get(addr, "/p/x").text();
    assert!(
        !page.contains("<script>alert") && !page.contains("<img src=x"),
        "{page}"
    );
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(
        page.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"),
        "{page}"
    );
    let present = get(addr, "/p/x/present").text();
    assert!(!present.contains("<script>alert") && !present.contains("<img src=x"));
    let j = get(addr, "/p/x/votes");
    assert!(!j.text().contains('<'), "{}", j.text());
    assert_eq!(j.json()["question"].as_str(), q);
    let csv = get(addr, "/p/x/results.csv").text();
    assert!(
        csv.contains("\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\""),
        "{csv}"
    );
    assert!(
        csv.contains("\"\"\"><img src=x onerror=alert(1)>\""),
        "{csv}"
    );
}

#[test]
fn polls_votes_voters_and_states_survive_kill_9() {
    let dir = TempDir::new("polls-persist");
    let data = dir.path().join("votes.journal");
    let args = |extra: &[&str]| {
        let mut a: Vec<String> = ["--data", data.to_str().unwrap(), "--admin-token", TOKEN]
            .map(String::from)
            .to_vec();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let server = Livevote::start_local(args(&[]));
    let addr = server.addr;
    create(addr, "id=once&question=Once%3F&option=a&option=b&mode=once");
    create(
        addr,
        "id=move&question=Move%3F&option=a&option=b&mode=change&results=after_close",
    );
    let mut v = Voter::new();
    v.vote(addr, "once", "2");
    v.vote(addr, "move", "1");
    v.vote(addr, "move", "2");
    Voter::new().vote(addr, "move", "2");
    admin(addr, "POST", "/api/polls/move/close", "");
    vote(addr, "1");
    let before: Vec<Json> = ["once", "move", "default"]
        .iter()
        .map(|p| admin(addr, "GET", &format!("/api/polls/{p}"), "").json())
        .collect();
    server.kill9();

    let server = Livevote::start_local(args(&[]));
    let addr = server.addr;
    for (p, want) in ["once", "move", "default"].iter().zip(&before) {
        let got = admin(addr, "GET", &format!("/api/polls/{p}"), "").json();
        for k in [
            "question", "mode", "results", "state", "version", "epoch", "total",
        ] {
            assert_eq!(format!("{:?}", got[k]), format!("{:?}", want[k]), "{p} {k}");
        }
        assert_eq!(counts_of(&got), counts_of(want), "{p}");
    }
    // The voter is still the voter (the secret was kept): `once` refuses them, `move` is
    // closed.
    let r = v.vote(addr, "once", "1");
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.json()["error"].as_str(), "already voted");
    assert_eq!(
        v.vote(addr, "move", "1").json()["error"].as_str(),
        "poll closed"
    );
    // Opened again, the voter's move is a move, not a second vote.
    admin(addr, "POST", "/api/polls/move/open", "");
    v.vote(addr, "move", "1");
    assert_eq!(
        counts_of(&admin(addr, "GET", "/api/polls/move", "").json()),
        [1, 1]
    );
    // A deleted poll stays deleted.
    assert_eq!(admin(addr, "DELETE", "/api/polls/once", "").status, 204);
    server.kill9();
    let server = Livevote::start_local(args(&[]));
    assert_eq!(admin(server.addr, "GET", "/api/polls/once", "").status, 404);
    assert_eq!(admin(server.addr, "GET", "/api/polls/move", "").status, 200);
}

#[test]
fn vote_rate_answers_429_with_retry_after_on_http_and_websocket() {
    let addr = start(|c| {
        c.admin_token = Some(TOKEN.into());
        c.vote_rate = Some(2);
    });
    // A burst of two from this address, then 429 (the address's bucket, whoever votes).
    assert_eq!(post(addr, "/vote", "uid=1").status, 200);
    assert_eq!(post(addr, "/vote", "uid=1").status, 200);
    let r = post(addr, "/vote", "uid=1");
    assert_eq!(r.status, 429, "{r:?}");
    assert_eq!(r.header("retry-after"), Some("1"));
    let mut ws = ws_connect(addr, "/get_new_vote");
    ws.send(tungstenite::Message::Text(vote_message("1", "r-1")))
        .unwrap();
    let e = ws_next_of_type(&mut ws, "error");
    assert!(e["error"].as_str().contains("too many votes"), "{e:?}");
    // Nothing refused was counted; after a second there is a token again.
    assert_eq!(tally(addr).0, 2);
    wait_for(Duration::from_secs(5), "a token", || {
        (post(addr, "/vote", "uid=2").status == 200).then_some(())
    });
}

#[test]
fn under_a_base_path_polls_cookies_and_the_join_address_are_below_it() {
    let addr = start(|c| {
        c.admin_token = Some(TOKEN.into());
        c.base_path = "/live".into();
    });
    let r = admin(
        addr,
        "POST",
        "/live/api/polls",
        "id=q&question=Q&option=a&option=b&mode=once",
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("location"), Some("/live/p/q"));
    assert_eq!(
        admin(addr, "POST", "/api/polls", "question=Q&option=a&option=b").status,
        404
    );
    let r = call(addr, "POST", "/live/p/q/vote", "", "uid=1");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.header("set-cookie").unwrap().contains("Path=/live;"),
        "{r:?}"
    );
    let page = get(addr, "/live/p/q").text();
    assert!(page.contains("data-base=\"/live/p/q\""), "{page}");
    assert!(page.contains("action=\"/live/p/q/vote\""), "{page}");
    let present = get(addr, "/live/p/q/present").text();
    assert!(
        present.contains("http://localhost/live/p/q</p>"),
        "{present}"
    );
    assert!(present.contains("<svg"), "the QR code: {present}");
}

#[test]
fn the_voter_cookie_is_secure_when_the_browser_used_tls_and_the_question_is_shown() {
    let addr = start(|c| {
        c.admin_token = Some(TOKEN.into());
        c.trusted_proxies = vec![livevote::http::forwarded::Cidr::parse("127.0.0.1").unwrap()];
        c.question = "What's for <lunch>?".into();
    });
    create(addr, "id=q&question=Q&option=a&option=b&mode=once");
    let tls = "X-Forwarded-Proto: https\r\n";
    let r = call(addr, "POST", "/p/q/vote", tls, "uid=1");
    let c = r.header("set-cookie").unwrap();
    for attr in ["HttpOnly", "SameSite=Lax", "Max-Age=31536000", "Secure"] {
        assert!(c.contains(attr), "{attr}: {c}");
    }
    let r = call(addr, "POST", "/p/q/vote", "", "uid=1");
    assert!(!r.header("set-cookie").unwrap().contains("Secure"), "{r:?}");
    let page = get(addr, "/index").text();
    assert!(
        page.contains("<h1 id=\"title\">What&#39;s for &lt;lunch&gt;?</h1>"),
        "{page}"
    );
    let j = get(addr, "/votes").json();
    assert_eq!(j["state"].as_str(), "open");
}

#[test]
fn a_page_load_makes_the_voter_and_a_hidden_long_poller_gets_the_counts_after_voting() {
    let addr = server();
    create(addr, "id=h&question=Q&option=a&option=b&results=after_vote");
    Voter::new().vote(addr, "h", "1");
    let page = get(addr, "/p/h");
    let cookie = page.header("set-cookie").expect("the page makes the voter");
    let mut v = Voter::new();
    v.cookie = Some(cookie.split(';').next().unwrap().to_string());
    assert!(!leaks_count(&page.text()));
    // Its long-poll is hidden; after its vote, `hidden=1` brings the whole tally at once.
    let lp = v.get(addr, "/p/h/get_new_vote?since=0").json();
    assert!(lp["hidden"].as_bool(), "{lp:?}");
    v.vote(addr, "h", "2");
    let version = lp["version"].as_u64();
    let lp = v
        .get(addr, &format!("/p/h/get_new_vote?since={version}&hidden=1"))
        .json();
    assert_eq!(lp["kind"].as_str(), "snapshot", "{lp:?}");
    let changes: Vec<u64> = lp["changes"]
        .as_array()
        .iter()
        .map(|c| c["count"].as_u64())
        .collect();
    assert_eq!(changes, [1, 1]);
    // The same page again: their vote is shown, and no new voter is made.
    let page = v.get(addr, "/p/h");
    assert!(page.header("set-cookie").is_none());
    assert!(page.text().contains("You voted for b"), "{}", page.text());
}
