//! Voting over HTTP: the vote page, the tally, `POST /vote` and `POST /ticket` with every way a
//! form can arrive (and every way it can be wrong), and 32 threads voting at once.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;

use common::*;

/// The `<li>` for one candidate: the tutorial's DOM (`<li id="user_ID" …>NAME<span>COUNT
/// </span>`), followed by its no-JavaScript form; returns the `<li>` for further checks.
fn li(page: &str, uid: &str, name: &str, count: u64) -> Li {
    assert_tutorial_li(page, uid, name, count)
}

/// The share of the votes a candidate's bar shows, as the `<li>`'s `--share` style.
fn share(li: &Li) -> &str {
    let tag = &li.start_tag;
    let at = tag
        .find("--share:")
        .unwrap_or_else(|| panic!("no --share in {tag}"));
    let rest = &tag[at + "--share:".len()..];
    &rest[..rest
        .find('%')
        .unwrap_or_else(|| panic!("--share without % in {tag}"))]
}

/// The `back` field of a candidate's form: where a no-JavaScript vote returns to.
fn back(li: &Li) -> &str {
    let key = "<input type=\"hidden\" name=\"back\" value=\"";
    let at = li
        .inner
        .find(key)
        .unwrap_or_else(|| panic!("no back field: {li:?}"));
    let rest = &li.inner[at + key.len()..];
    &rest[..rest.find('"').unwrap()]
}

fn assert_json_error(r: &Response, status: u16) {
    let j = assert_json(r, status);
    assert!(
        !j["error"].as_str().is_empty(),
        "error message expected: {j:?}"
    );
}

// --- /index ------------------------------------------------------------------------------------

#[test]
fn index_renders_the_tutorial_dom_with_current_counts_and_version() {
    let addr = start_default();
    let r = get(addr, "/index");
    assert_eq!(r.status, 200);
    r.assert_standard_headers(false);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let page = r.text();
    let (one, two) = (li(&page, "1", "野味", 0), li(&page, "2", "海龙", 0));
    // No votes yet: empty bars.
    assert_eq!((share(&one), share(&two)), ("0.0", "0.0"));
    assert_eq!(back(&one), "/index", "the form comes back to this page");
    assert!(page.contains("data-version=\"0\""), "{page}");
    assert!(
        page.contains("data-transport=\"auto\""),
        "default transport: {page}"
    );
    assert!(page.find("user_1").unwrap() < page.find("user_2").unwrap());

    vote(addr, "1");
    vote(addr, "2");
    vote(addr, "1");
    let (version, epoch, _) = tally(addr);
    assert_eq!(version, 3);
    let page = get(addr, "/index").text();
    let (one, two) = (li(&page, "1", "野味", 2), li(&page, "2", "海龙", 1));
    assert_eq!((share(&one), share(&two)), ("66.7", "33.3"));
    assert!(page.contains("data-version=\"3\""), "{page}");
    assert!(page.contains(&format!("data-epoch=\"{epoch}\"")), "{page}");
    assert!(!page.contains("{{"), "a placeholder left unfilled: {page}");
    // The page must work offline: no script or stylesheet from elsewhere.
    assert!(!page.contains("src=\"http"), "{page}");
    assert!(!page.contains("href=\"http"), "{page}");
}

#[test]
fn index_selects_the_transport_and_refuses_unknown_ones() {
    let addr = start_default();
    for (query, want) in [
        ("", "auto"),
        ("?transport=", "auto"),
        ("?transport=auto", "auto"),
        ("?transport=ws", "ws"),
        ("?transport=sse", "sse"),
        ("?transport=poll", "poll"),
        ("?transport=longpoll", "longpoll"),
        ("?x=1&transport=poll", "poll"),
    ] {
        let r = get(addr, &format!("/index{query}"));
        assert_eq!(r.status, 200, "{query}");
        let page = r.text();
        assert!(
            page.contains(&format!("data-transport=\"{want}\"")),
            "{query} → {want}: {page}"
        );
        let one = li(&page, "1", "野味", 0);
        // The no-JavaScript form comes back to this very page (escaped in the attribute).
        assert_eq!(
            back(&one),
            format!("/index{query}").replace('&', "&amp;"),
            "{query}"
        );
    }
    for query in [
        "?transport=websocket",
        "?transport=POLL",
        "?transport=%3Cscript%3E",
        "?transport=%zz",
    ] {
        let r = get(addr, &format!("/index{query}"));
        assert_json_error(&r, 400);
        assert!(
            !r.text().contains("<script>"),
            "input echoed unescaped: {}",
            r.text()
        );
    }
}

// --- /votes ------------------------------------------------------------------------------------

#[test]
fn votes_is_json_with_every_candidate_and_the_version() {
    let addr = start_default();
    let r = get(addr, "/votes");
    assert_eq!(r.status, 200);
    r.assert_standard_headers(false);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let j = r.json();
    assert_eq!(j["version"].as_u64(), 0);
    assert!(!j["epoch"].as_str().is_empty());
    let cands = j["candidates"].as_array();
    assert_eq!(cands.len(), 2);
    assert_eq!(cands[0]["uid"].as_str(), "1");
    assert_eq!(cands[0]["name"].as_str(), "野味");
    assert_eq!(cands[0]["count"].as_u64(), 0);
    assert_eq!(cands[1]["uid"].as_str(), "2");
    assert_eq!(cands[1]["name"].as_str(), "海龙");

    vote(addr, "2");
    let (version, epoch, c) = tally(addr);
    assert_eq!(version, 1);
    assert_eq!(epoch, j["epoch"].as_str(), "the epoch is fixed for a run");
    assert_eq!(c, counts(&[("1", 0), ("2", 1)]));
}

#[test]
fn votes_etag_gives_304_until_the_tally_changes() {
    let addr = start_default();
    let first = get(addr, "/votes");
    let etag = first.header("etag").expect("ETag on /votes").to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");

    let cond = |tag: &str| {
        format!("GET /votes HTTP/1.1\r\nHost: localhost\r\nIf-None-Match: {tag}\r\n\r\n")
    };
    let r = request(addr, cond(&etag));
    assert_eq!(r.status, 304, "{r:?}");
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    r.assert_standard_headers(false);
    // A list holding it, and `*`, match too; another tag does not.
    assert_eq!(
        request(addr, cond(&format!("\"nope\", {etag}"))).status,
        304
    );
    assert_eq!(request(addr, cond("*")).status, 304);
    assert_eq!(request(addr, cond("\"nope\"")).status, 200);

    vote(addr, "1");
    let r = request(addr, cond(&etag));
    assert_eq!(r.status, 200, "a vote must change the ETag");
    let new_tag = r.header("etag").unwrap().to_string();
    assert_ne!(new_tag, etag);
    assert_eq!(r.json()["version"].as_u64(), 1);
    assert_eq!(request(addr, cond(&new_tag)).status, 304);

    // 304 keeps the connection usable: the next response on it parses.
    let mut c = Client::connect(addr);
    c.send(cond(&new_tag));
    c.send(get_req("/votes"));
    let rs = c.read_responses(2);
    assert_eq!(rs[0].status, 304);
    assert_eq!(rs[1].status, 200);
    assert_eq!(rs[1].json()["version"].as_u64(), 1);
}

/// RFC 9110 §13.1.2: "A recipient MUST use the weak comparison function when comparing
/// entity tags for If-None-Match", so `W/"x"` matches `"x"`.
#[test]
fn a_weak_etag_in_if_none_match_also_matches() {
    let addr = start_default();
    let etag = get(addr, "/votes").header("etag").unwrap().to_string();
    let r = request(
        addr,
        format!("GET /votes HTTP/1.1\r\nHost: localhost\r\nIf-None-Match: W/{etag}\r\n\r\n"),
    );
    assert_eq!(r.status, 304, "W/{etag} must match {etag}: {r:?}");
}

// --- POST /vote and /ticket --------------------------------------------------------------------

#[test]
fn vote_and_ticket_count_and_answer_with_count_and_version() {
    let addr = start_default();
    let j = assert_json(&post(addr, "/vote", "uid=1"), 200);
    assert_eq!(j["uid"].as_str(), "1");
    assert_eq!(j["count"].as_u64(), 1);
    assert_eq!(j["version"].as_u64(), 1);
    let epoch = j["epoch"].as_str().to_string();

    let j = post(addr, "/ticket", "nid=2").json();
    assert_eq!(j["uid"].as_str(), "2");
    assert_eq!(j["count"].as_u64(), 1);
    assert_eq!(j["version"].as_u64(), 2);
    assert_eq!(j["epoch"].as_str(), epoch);

    let j = post(addr, "/ticket", "nid=1").json();
    assert_eq!((j["count"].as_u64(), j["version"].as_u64()), (2, 3));

    let (version, e, c) = tally(addr);
    assert_eq!((version, e), (3, epoch));
    assert_eq!(c, counts(&[("1", 2), ("2", 1)]));
}

#[test]
fn unknown_candidate_is_404_json_and_changes_nothing() {
    let addr = start_default();
    vote(addr, "1");
    for (path, body, uid) in [
        ("/vote", "uid=99", "99"),
        ("/ticket", "nid=3", "3"),
        ("/vote", "uid=user_1", "user_1"),
        ("/vote", "uid=A", "A"),
    ] {
        let r = post(addr, path, body);
        assert_json_error(&r, 404);
        assert_eq!(r.json()["uid"].as_str(), uid, "{path} {body}");
        assert!(!r.closes(), "a 404 keeps the connection");
    }
    let (version, _, c) = tally(addr);
    assert_eq!(version, 1);
    assert_eq!(c, counts(&[("1", 1), ("2", 0)]));
}

#[test]
fn missing_or_malformed_field_is_400_and_changes_nothing() {
    let addr = start_default();
    let cases: &[(&str, &str)] = &[
        ("/vote", ""),
        ("/vote", "x=1"),
        ("/vote", "nid=1"),   // /vote's field is uid
        ("/ticket", "uid=1"), // /ticket's field is nid
        ("/vote", "uid="),
        ("/vote", "uid"),
        ("/vote", "uid=a%20b"),
        ("/vote", "uid=1+"),
        ("/vote", "uid=1%00"),
        ("/vote", "uid=%zz"),
        ("/vote", "uid=%4"),
        ("/vote", "uid=%FF"),
        ("/vote", "uid=%3Cb%3E"),
        ("/vote", "uid=..%2F1"),
        ("/ticket", "nid=野味"),
        ("/vote", "uid=123456789012345678901234567890123"), // 33 characters
    ];
    for (path, body) in cases {
        let r = post(addr, path, body);
        assert_json_error(&r, 400);
        assert!(
            !r.text().contains('<'),
            "{path} {body}: raw input in {}",
            r.text()
        );
    }
    // The same errors through the query string.
    for target in [
        "/vote?uid=",
        "/vote?uid=%zz",
        "/ticket?nid=a+b",
        "/vote?x=1",
    ] {
        let r = request(
            addr,
            format!("POST {target} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"),
        );
        assert_json_error(&r, 400);
    }
    let (version, _, c) = tally(addr);
    assert_eq!(version, 0, "nothing may change on an error");
    assert_eq!(c, counts(&[("1", 0), ("2", 0)]));
}

#[test]
fn fields_may_be_percent_encoded_or_in_the_query_string() {
    let addr = start_default();
    let no_body = |target: &str| {
        request(
            addr,
            format!("POST {target} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"),
        )
    };
    let uid_of = |r: Response| {
        assert_eq!(r.status, 200, "{r:?}");
        r.json()["uid"].as_str().to_string()
    };
    assert_eq!(uid_of(post(addr, "/vote", "uid=%31")), "1");
    assert_eq!(uid_of(post(addr, "/vote", "u%69d=2")), "2");
    assert_eq!(uid_of(post(addr, "/ticket", "x=%26&nid=2&y=")), "2");
    assert_eq!(
        uid_of(post(addr, "/vote", "uid=1&uid=2")),
        "1",
        "first wins"
    );
    assert_eq!(uid_of(no_body("/vote?uid=2")), "2");
    assert_eq!(uid_of(no_body("/ticket?nid=%31")), "1");
    // A body field takes precedence over the query string.
    assert_eq!(uid_of(post(addr, "/vote?uid=2", "uid=1")), "1");
    // Without any Content-Length (curl -X POST with no data).
    assert_eq!(
        uid_of(request(
            addr,
            "POST /vote?uid=1 HTTP/1.1\r\nHost: localhost\r\n\r\n"
        )),
        "1"
    );
    // A charset parameter and odd case in the media type are fine.
    let r = request(
        addr,
        "POST /vote HTTP/1.1\r\nHost: localhost\r\nContent-Type: Application/X-WWW-Form-Urlencoded; charset=UTF-8\r\nContent-Length: 5\r\n\r\nuid=2",
    );
    assert_eq!(uid_of(r), "2");

    let (version, _, c) = tally(addr);
    assert_eq!(version, 9);
    assert_eq!(c, counts(&[("1", 5), ("2", 4)]));
}

#[test]
fn wrong_content_type_is_415_and_changes_nothing() {
    let addr = start_default();
    for ctype in [
        Some("application/json"),
        Some("text/plain"),
        Some("multipart/form-data; boundary=x"),
        Some("application/x-www-form-urlencodedx"),
        None,
    ] {
        let ct = ctype.map_or(String::new(), |c| format!("Content-Type: {c}\r\n"));
        let r = request(
            addr,
            format!("POST /vote HTTP/1.1\r\nHost: localhost\r\n{ct}Content-Length: 5\r\n\r\nuid=1"),
        );
        assert_json_error(&r, 415);
        // The registered reason phrase, not a placeholder (it was `415 Unknown`).
        assert_eq!(r.reason, "Unsupported Media Type");
        // Also when the query string names a valid candidate.
        let r = request(
            addr,
            format!("POST /ticket?nid=1 HTTP/1.1\r\nHost: localhost\r\n{ct}Content-Length: 5\r\n\r\nnid=1"),
        );
        assert_eq!(r.status, 415, "{ctype:?}");
    }
    assert_eq!(tally(addr).0, 0);
}

#[test]
fn vote_routes_allow_only_post() {
    let addr = start_default();
    for path in ["/vote", "/ticket", "/vote?uid=1"] {
        for method in ["GET", "HEAD", "PUT", "DELETE", "PATCH"] {
            let r = request(
                addr,
                format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"),
            );
            assert_eq!(r.status, 405, "{method} {path}");
            assert_eq!(r.header("allow"), Some("POST"), "{method} {path}");
            r.assert_standard_headers(method == "HEAD");
        }
    }
    // And the other way round: the pages are GET/HEAD only.
    for path in ["/index", "/votes", "/", "/get_new_vote", "/style.css"] {
        let r = post(addr, path, "uid=1");
        assert_eq!(r.status, 405, "POST {path}");
        let allow = r.header("allow").expect("Allow on 405").to_string();
        let methods: Vec<&str> = allow.split(',').map(str::trim).collect();
        assert!(
            methods.contains(&"GET") && methods.contains(&"HEAD"),
            "{allow}"
        );
        assert!(!methods.contains(&"POST"), "{allow}");
    }
    assert_eq!(tally(addr).0, 0, "no 405 may count a vote");
}

// --- voting without JavaScript -----------------------------------------------------------------

/// A form post that names the page to go back to (`back`, a local path) is answered `303 See
/// Other` there, so the browser reloads the page with a GET; the vote counts once.
#[test]
fn a_form_vote_with_back_is_a_303_to_that_page_and_counts_once() {
    let addr = start_default();
    for (path, body, location) in [
        // As a browser encodes the hidden field…
        (
            "/vote",
            "uid=1&back=%2Findex%3Ftransport%3Dpoll",
            "/index?transport=poll",
        ),
        // …and as written by hand.
        (
            "/vote",
            "uid=1&back=/index?transport=poll",
            "/index?transport=poll",
        ),
        ("/ticket", "nid=2&back=%2Findex", "/index"),
        (
            "/vote",
            "back=%2Findex%3Fa%3D1%26b%3D2&uid=2",
            "/index?a=1&b=2",
        ),
    ] {
        let before = tally(addr).0;
        let r = post(addr, path, body);
        assert_eq!(r.status, 303, "{path} {body}: {r:?}");
        assert_eq!(r.reason, "See Other");
        assert_eq!(r.header("location"), Some(location), "{body}");
        assert_eq!(r.header_count("location"), 1);
        r.assert_standard_headers(false);
        assert_eq!(tally(addr).0, before + 1, "{body}: counted exactly once");
    }
    assert_eq!(tally(addr).2, counts(&[("1", 2), ("2", 2)]));
    // Following the redirect gives the page with the new count.
    let page = get(addr, "/index?transport=poll").text();
    li(&page, "1", "野味", 2);
}

/// RFC 9112 §3.2.2: a server must accept a request target in absolute form. The page's forms
/// must still come back to a local path, or a no-JavaScript vote from it gets JSON instead of
/// the page.
#[test]
fn the_forms_come_back_to_a_local_path_even_for_an_absolute_form_request() {
    let addr = start_default();
    let r = request(
        addr,
        "GET http://localhost/index?transport=poll HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{r:?}");
    let page = r.text();
    let one = li(&page, "1", "野味", 0);
    assert_eq!(back(&one), "/index?transport=poll", "{one:?}");
}

/// `back` must be a path on this server: anything else (another host, a scheme, a header
/// injection) is not a redirect — the vote is still counted once and answered as JSON.
#[test]
fn a_back_that_is_not_a_local_path_is_no_redirect_but_still_one_vote() {
    let addr = start_default();
    let bodies = [
        "uid=1&back=%2F%2Fevil.example%2F",
        "uid=1&back=//evil.example/",
        "uid=1&back=http://evil",
        "uid=1&back=http%3A%2F%2Fevil",
        "uid=1&back=https:%2F%2Fevil.example",
        "uid=1&back=%2F%5Cevil.example",
        "uid=1&back=evil.example",
        "uid=1&back=%2Findex%0D%0ASet-Cookie:%20x=1",
        "uid=1&back=%2Findex%20x",
        "uid=1&back=",
        "uid=1&back",
    ];
    for (i, body) in bodies.iter().enumerate() {
        let r = post(addr, "/vote", body);
        assert_eq!(r.status, 200, "{body}: {r:?}");
        assert_eq!(r.header("location"), None, "{body}: {r:?}");
        assert!(r
            .header("content-type")
            .unwrap()
            .starts_with("application/json"));
        let j = r.json();
        assert_eq!(j["count"].as_u64(), i as u64 + 1, "{body}");
        assert_eq!(j["version"].as_u64(), i as u64 + 1, "{body}");
        assert!(!r.text().contains("Set-Cookie"), "{body}");
    }
    assert_eq!(
        tally(addr).2,
        counts(&[("1", bodies.len() as u64), ("2", 0)])
    );
    // A refused vote is never a redirect either.
    let r = post(addr, "/vote", "uid=9&back=%2Findex");
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.header("location"), None);
    assert_eq!(tally(addr).0, bodies.len() as u64);
}

// --- concurrency -------------------------------------------------------------------------------

const THREADS: usize = 32;
const VOTES_PER_THREAD: usize = 40;

/// 32 threads, each on its own keep-alive connection, vote through both routes at once. Every
/// vote is counted exactly once: the final counts are exact, every answer's version is distinct
/// and they are exactly 1..=total, and each candidate's answered counts are exactly 1..=n.
#[test]
fn thirty_two_threads_voting_through_both_routes_are_each_counted_once() {
    let cands = ["a", "b", "c"];
    let addr: SocketAddr = start(|c| c.candidates = candidates(&cands));
    let barrier = Arc::new(std::sync::Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                barrier.wait();
                let mut answers = Vec::with_capacity(VOTES_PER_THREAD);
                for i in 0..VOTES_PER_THREAD {
                    let uid = cands[(t + i) % cands.len()];
                    let req = if (t + i) % 2 == 0 {
                        post_req("/vote", &format!("uid={uid}"))
                    } else {
                        post_req("/ticket", &format!("nid={uid}"))
                    };
                    c.send(req);
                    let r = c.read_response_to("POST");
                    assert_eq!(r.status, 200, "{r:?}");
                    assert!(!r.closes(), "keep-alive expected");
                    let j = r.json();
                    assert_eq!(j["uid"].as_str(), uid);
                    answers.push((uid, j["count"].as_u64(), j["version"].as_u64()));
                }
                answers
            })
        })
        .collect();
    let answers: Vec<(&str, u64, u64)> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("worker thread"))
        .collect();

    let total = (THREADS * VOTES_PER_THREAD) as u64;
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for t in 0..THREADS {
        for i in 0..VOTES_PER_THREAD {
            *expected
                .entry(cands[(t + i) % cands.len()].into())
                .or_default() += 1;
        }
    }
    let (version, _, c) = tally(addr);
    assert_eq!(version, total);
    assert_eq!(c, expected);

    let mut versions: Vec<u64> = answers.iter().map(|a| a.2).collect();
    versions.sort_unstable();
    let unique: HashSet<u64> = versions.iter().copied().collect();
    assert_eq!(unique.len(), answers.len(), "two answers share a version");
    assert_eq!(versions, (1..=total).collect::<Vec<_>>());
    for uid in cands {
        let mut seen: Vec<u64> = answers.iter().filter(|a| a.0 == uid).map(|a| a.1).collect();
        seen.sort_unstable();
        assert_eq!(seen, (1..=expected[uid]).collect::<Vec<_>>(), "{uid}");
    }
}
