//! HTTP/1.1 as curl and browsers speak it, over real TCP: persistence, pipelining, HTTP/1.0,
//! HEAD, request bodies (length, chunked, 100-continue), every error status with the connection
//! closed after it, the timeouts, the connection cap, and hostile input that must not hurt.

mod common;

use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use common::rng::Rng;
use common::*;

/// Sends `raw` on a new connection; expects `status` with `Connection: close`, then the close.
fn expect_error_and_close(addr: SocketAddr, raw: &[u8], status: u16) -> Response {
    let mut c = Client::connect(addr);
    // The server may answer (and close) before it has read everything we send.
    let _ = c.try_send(raw);
    let r = match c.try_read_response_to("GET") {
        Ok(Some(r)) => r,
        other => panic!(
            "no response to {:?}: {other:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(200)])
        ),
    };
    assert_eq!(
        r.status,
        status,
        "for {:?}: {r:?}",
        String::from_utf8_lossy(&raw[..raw.len().min(200)])
    );
    r.assert_standard_headers(false);
    assert!(r.closes(), "an error response must say Connection: close");
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json"),
        "{r:?}"
    );
    let _ = c.read_to_close();
    r
}

// --- persistence and framing -------------------------------------------------------------------

#[test]
fn keep_alive_serves_many_requests_on_one_socket() {
    let addr = start_default();
    let mut c = Client::connect(addr);
    let steps: [(String, &str, u16); 7] = [
        (get_req("/votes"), "GET", 200),
        (post_req("/vote", "uid=1"), "POST", 200),
        (get_req("/nope"), "GET", 404),
        (get_req("/vote"), "GET", 405),
        (post_req("/vote", "uid=x"), "POST", 404),
        (
            "HEAD /index HTTP/1.1\r\nHost: localhost\r\n\r\n".into(),
            "HEAD",
            200,
        ),
        (get_req("/votes"), "GET", 200),
    ];
    for (req, method, status) in &steps {
        c.send(req);
        let r = c.read_response_to(method);
        assert_eq!(r.status, *status, "{req}");
        r.assert_standard_headers(*method == "HEAD");
        assert_eq!(r.header("connection"), Some("keep-alive"), "{req}");
    }
    let r = {
        c.send(get_req("/votes"));
        c.read_response()
    };
    assert_eq!(r.json()["version"].as_u64(), 1);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let addr = start_default();
    let mut c = Client::connect(addr);
    let batch = format!(
        "{}{}{}",
        get_req("/votes"),
        post_req("/vote", "uid=2"),
        get_req("/votes")
    );
    c.send(batch);
    let rs = c.read_responses(3);
    assert_eq!(rs[0].json()["version"].as_u64(), 0);
    assert_eq!(rs[1].json()["uid"].as_str(), "2");
    assert_eq!(rs[1].json()["version"].as_u64(), 1);
    assert_eq!(rs[2].json()["version"].as_u64(), 1);
    for r in &rs {
        assert_eq!(r.status, 200);
        r.assert_standard_headers(false);
    }

    // Mixed: HEAD, a chunked body, an error, a 1.0 keep-alive request, and a final close.
    let batch = [
        "HEAD /votes HTTP/1.1\r\nHost: localhost\r\n\r\n".to_string(),
        "POST /ticket HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\r\n5\r\nnid=1\r\n0\r\n\r\n"
            .to_string(),
        get_req("/missing.js"),
        "GET /votes HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".to_string(),
        "GET /votes HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_string(),
    ]
    .concat();
    c.send(batch);
    let head = c.read_response_to("HEAD");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let rs = c.read_responses(4);
    assert_eq!(rs[0].json()["version"].as_u64(), 2);
    assert_eq!(rs[1].status, 404);
    assert_eq!(rs[2].json()["version"].as_u64(), 2);
    assert_eq!(rs[2].header("connection"), Some("keep-alive"));
    assert!(rs[3].closes());
    c.assert_closed();
}

#[test]
fn http10_closes_unless_keep_alive_is_asked_for() {
    let addr = start_default();
    let mut c = Client::connect(addr);
    c.send("GET /votes HTTP/1.0\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    r.assert_standard_headers(false);
    assert!(r.closes(), "{r:?}");
    c.assert_closed();

    let mut c = Client::connect(addr);
    c.send("GET /votes HTTP/1.0\r\nConnection: keep-alive\r\nHost: localhost\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.header("connection"), Some("keep-alive"));
    c.send("POST /vote HTTP/1.0\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5\r\n\r\nuid=1");
    let r = c.read_response_to("POST");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["count"].as_u64(), 1);
    assert!(r.closes(), "the second request did not ask for keep-alive");
    c.assert_closed();
}

#[test]
fn connection_close_is_honoured() {
    let addr = start_default();
    for conn in ["close", "Close", "keep-alive, close", "TE, close"] {
        let mut c = Client::connect(addr);
        c.send(format!(
            "GET /votes HTTP/1.1\r\nHost: localhost\r\nConnection: {conn}\r\n\r\n{}",
            get_req("/votes")
        ));
        let r = c.read_response();
        assert_eq!(r.status, 200);
        assert!(r.closes(), "Connection: {conn}");
        // The pipelined request after it is not answered.
        c.assert_closed();
    }
}

/// RFC 9112 §9.3: "If the close connection option is present, the connection will not persist
/// after the current response" — checked before the HTTP/1.0 keep-alive rule, so it wins there
/// too.
#[test]
fn connection_close_wins_over_keep_alive_in_http10() {
    let addr = start_default();
    let mut c = Client::connect(addr);
    c.send("GET /votes HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(r.closes(), "Connection: close was asked for: {r:?}");
    c.assert_closed();
}

#[test]
fn a_client_that_stops_reading_is_disconnected_after_write_timeout() {
    let addr = start(|c| {
        c.limits.write_timeout = Duration::from_millis(300);
        c.limits.max_connections = 1;
    });
    let stalled = Client::connect(addr);
    // Ask for far more than the socket buffers hold, and never read it.
    let one = get_req("/vote.js");
    let batch = one.repeat(3000);
    let mut w = stalled.stream.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let _ = std::io::Write::write_all(&mut w, batch.as_bytes());
    });
    // The stalled connection holds the only slot until the server gives up on it; then a new
    // client is served.
    wait_for(
        Duration::from_secs(8),
        "the stalled connection to be dropped",
        || served_client(addr),
    );
    stalled.shutdown_write();
    drop(stalled);
    writer.join().unwrap();
}

#[test]
fn head_has_the_get_headers_and_no_body() {
    let addr = start_default();
    for path in ["/", "/index", "/votes", "/style.css", "/vote.js", "/nope"] {
        let g = get(addr, path);
        let mut c = Client::connect(addr);
        c.send(format!("HEAD {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"));
        let h = c.read_response_to("HEAD");
        assert_eq!(h.status, g.status, "{path}");
        h.assert_standard_headers(true);
        assert_eq!(
            h.header("content-length").unwrap(),
            g.body.len().to_string(),
            "{path}"
        );
        assert_eq!(h.header("content-type"), g.header("content-type"), "{path}");
        // No body bytes were sent: the next response on the socket starts right away.
        c.send(get_req("/votes"));
        let next = c.read_response();
        assert_eq!(next.status, 200, "after HEAD {path}");
        assert_eq!(next.json()["version"].as_u64(), 0);
    }
}

#[test]
fn absolute_form_and_leading_blank_lines_and_bare_lf_are_accepted() {
    let addr = start_default();
    for raw in [
        "GET http://localhost/votes HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "\r\nGET /votes HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "GET /votes HTTP/1.1\nHost: localhost\n\n",
        "GET /votes?x=1#frag HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "GET /votes HTTP/1.1\r\nhOsT:localhost\r\nX-Empty:\r\n\r\n",
    ] {
        let r = request(addr, raw);
        assert_eq!(r.status, 200, "{raw:?}");
        assert_eq!(r.json()["version"].as_u64(), 0);
    }
}

#[test]
fn a_browser_request_is_served() {
    let addr = start_default();
    let r = request(
        addr,
        "GET /index?transport=longpoll HTTP/1.1\r\n\
         Host: 127.0.0.1:8080\r\n\
         Connection: keep-alive\r\n\
         sec-ch-ua: \"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n\
         sec-ch-ua-mobile: ?0\r\n\
         sec-ch-ua-platform: \"Linux\"\r\n\
         Upgrade-Insecure-Requests: 1\r\n\
         User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
         Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
         Sec-Fetch-Site: none\r\n\
         Sec-Fetch-Mode: navigate\r\n\
         Sec-Fetch-User: ?1\r\n\
         Sec-Fetch-Dest: document\r\n\
         Accept-Encoding: gzip, deflate, br, zstd\r\n\
         Accept-Language: en-US,en;q=0.9,zh-CN;q=0.8\r\n\
         Cookie: session=abc; theme=dark\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert!(r.text().contains("data-transport=\"longpoll\""));
    assert!(r.header("content-encoding").is_none());
}

// --- request bodies ----------------------------------------------------------------------------

#[test]
fn chunked_request_bodies_are_decoded() {
    let addr = start_default();
    let mut c = Client::connect(addr);
    c.send(
        "POST /vote HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Transfer-Encoding: chunked\r\n\r\n2\r\nui\r\n2;name=value\r\nd=\r\n1\r\n2\r\n0\r\nX-Trailer: t\r\n\r\n",
    );
    let r = c.read_response_to("POST");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["uid"].as_str(), "2");
    // Sent in pieces, with the next request right behind the last chunk.
    c.send("POST /ticket HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n");
    thread::sleep(Duration::from_millis(30));
    c.send("5\r\nnid=1\r\n");
    thread::sleep(Duration::from_millis(30));
    c.send(format!("0\r\n\r\n{}", get_req("/votes")));
    let rs = c.read_responses(2);
    assert_eq!(rs[0].json()["uid"].as_str(), "1");
    assert_eq!(rs[1].json()["version"].as_u64(), 2);
    // An empty chunked body is an empty form: the query string is used.
    c.send("POST /vote?uid=1 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_eq!(c.read_response_to("POST").json()["count"].as_u64(), 2);
}

#[test]
fn expect_100_continue_gets_the_interim_response_before_the_body_is_sent() {
    let addr = start_default();
    let mut c = Client::connect(addr);
    c.send(
        "POST /vote HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\
         Content-Length: 5\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Expect: 100-continue\r\n\r\n",
    );
    // curl waits 1 s for this, then sends the body anyway; we never send it before the 100.
    let interim = c.read_response();
    assert_eq!(interim.status, 100, "{interim:?}");
    assert!(interim.body.is_empty());
    c.send("uid=1");
    let r = c.read_response_to("POST");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["count"].as_u64(), 1);
    r.assert_standard_headers(false);

    // The body already sent with the head: no interim response, just the answer.
    c.send(format!(
        "POST /ticket HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\r\nnid=1{}",
        get_req("/votes")
    ));
    let rs = c.read_responses(2);
    assert_eq!(rs[0].status, 200);
    assert_eq!(rs[0].json()["count"].as_u64(), 2);
    assert_eq!(rs[1].json()["version"].as_u64(), 2);
}

#[test]
fn expect_100_continue_with_a_too_large_body_is_refused_without_the_interim() {
    let addr = start(|c| c.limits.max_body = 16);
    let mut c = Client::connect(addr);
    c.send(
        "POST /vote HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nExpect: 100-continue\r\n\r\n",
    );
    let r = c.read_response();
    assert_eq!(r.status, 413, "{r:?}");
    assert!(r.closes());
    c.assert_closed();
}

#[test]
fn unknown_expectation_is_417() {
    let addr = start_default();
    let r = expect_error_and_close(
        addr,
        b"POST /vote HTTP/1.1\r\nHost: localhost\r\nExpect: 200-ok\r\nContent-Length: 5\r\n\r\nuid=1",
        417,
    );
    assert!(r.json().has("error"));
    assert_eq!(tally(addr).0, 0);
}

// --- error statuses ----------------------------------------------------------------------------

#[test]
fn malformed_requests_get_400_and_the_connection_is_closed() {
    let addr = start_default();
    let cases: &[&[u8]] = &[
        b"GET /\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\nHost: localhost\r\n\r\n",
        b"GET  / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"GET / HTTX/1.1\r\nHost: localhost\r\n\r\n",
        b"GET / http/1.1\r\nHost: localhost\r\n\r\n",
        b"G(T / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b" GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"GET /a\x01b HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"GET /\xe9 HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"GET index HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"GET * HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",                        // no Host in 1.1
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", // two Hosts
        b"GET / HTTP/1.1\r\nHost: localhost\r\nNo colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: localhost\r\nBad Name: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: localhost\r\n: empty name\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: 1\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: a\rb\r\n\r\n",
        b"POST /vote HTTP/1.1\r\nHost: localhost\r\nContent-Length: abc\r\n\r\n",
        b"POST /vote HTTP/1.1\r\nHost: localhost\r\nContent-Length: -5\r\n\r\n",
        b"POST /vote HTTP/1.1\r\nHost: localhost\r\nContent-Length: +5\r\n\r\nuid=1",
        b"POST /vote HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nuid=1",
        b"POST /vote HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5, 6\r\n\r\nuid=1",
        b"POST /vote HTTP/1.1\r\nHost: localhost\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        b"POST /vote HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST /vote HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        b"POST /vote HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /vote HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST /vote HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nuid=1\r\n0\r\n\r\n",
    ];
    for raw in cases {
        expect_error_and_close(addr, raw, 400);
    }
    assert_eq!(tally(addr).0, 0, "no malformed request may count a vote");
}

/// RFC 9112 §7.1: chunk lines end in CRLF and extensions follow their grammar. A lenient
/// decoder reads such bytes differently from a strict front proxy (request smuggling), so
/// every one of these is 400 and the connection closes, and no vote in them is counted.
#[test]
fn lenient_chunked_framing_is_400_and_the_connection_is_closed() {
    let addr = start_default();
    let head = "POST /vote HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\
                Content-Type: application/x-www-form-urlencoded\r\n\r\n";
    let bodies: &[&str] = &[
        "5\nuid=1\r\n0\r\n\r\n",               // bare LF after the size
        "5\r\nuid=1\n0\r\n\r\n",               // bare LF after the data
        "5\r\nuid=1\r\n0\n\r\n",               // bare LF after the last chunk
        "5\r\nuid=1\r\n0\r\n\n",               // bare LF ending the trailers
        "5\r\nuid=1\r\n0\r\nX: y\n\r\n",       // bare LF after a trailer
        "5;\r\nuid=1\r\n0\r\n\r\n",            // extension without a name
        "5;a b\r\nuid=1\r\n0\r\n\r\n",         // space inside an extension
        "5;a=\"x\r\nuid=1\r\n0\r\n\r\n",       // unterminated quoted string
        "5;a@b\r\nuid=1\r\n0\r\n\r\n",         // not a token
        "5 \r\nuid=1\r\n0\r\n\r\n",            // whitespace without an extension
        "5\r\nuid=1\r\n0\r\nNo colon\r\n\r\n", // a trailer that is not a field
    ];
    for body in bodies {
        expect_error_and_close(addr, format!("{head}{body}").as_bytes(), 400);
    }
    assert_eq!(tally(addr).0, 0, "no malformed request may count a vote");
}

#[test]
fn content_length_with_transfer_encoding_is_400_and_nothing_behind_it_is_served() {
    let addr = start_default();
    // A classic smuggling shape: whichever framing the server picked, the rest would be a
    // second request that votes. It must be refused and the connection closed.
    let raw = format!(
        "POST /vote HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{}",
        post_req("/vote", "uid=1")
    );
    let mut c = Client::connect(addr);
    c.send(&raw);
    let r = c.read_response_to("POST");
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.closes());
    c.assert_closed();
    // Header order reversed, and the names in odd case.
    let raw = "POST /vote?uid=1 HTTP/1.1\r\nHost: localhost\r\ntransfer-encoding: chunked\r\nCONTENT-LENGTH: 0\r\n\r\n0\r\n\r\n";
    expect_error_and_close(addr, raw.as_bytes(), 400);
    assert_eq!(tally(addr).0, 0);
}

#[test]
fn a_body_over_max_body_is_413() {
    let addr = start(|c| c.limits.max_body = 16);
    let big = "uid=1&pad=".to_string() + &"x".repeat(90);
    expect_error_and_close(addr, post_req("/vote", &big).as_bytes(), 413);
    // Chunked: the decoded size counts, across chunks.
    expect_error_and_close(
        addr,
        b"POST /vote HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n8\r\nuid=1&aa\r\n9\r\naaaaaaaaa\r\n0\r\n\r\n",
        413,
    );
    assert_eq!(tally(addr).0, 0);
    // Exactly max_body is fine.
    let r = post(addr, "/vote", "uid=1&pad=123456");
    assert_eq!(r.status, 200, "{r:?}");
    let r = request(
        addr,
        "POST /vote HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n8\r\nuid=1&aa\r\n8\r\naaaaaaaa\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(tally(addr).0, 2);
}

#[test]
fn a_request_line_over_the_limit_is_414() {
    let addr = start_default();
    let long = format!(
        "GET /{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "a".repeat(9000)
    );
    expect_error_and_close(addr, long.as_bytes(), 414);
    // Also while the line is still arriving (no end of line yet).
    let endless = format!("GET /{}", "a".repeat(9000));
    expect_error_and_close(addr, endless.as_bytes(), 414);
    // A long query string that fits is fine.
    let r = get(addr, &format!("/votes?pad={}", "a".repeat(7000)));
    assert_eq!(r.status, 200);
}

#[test]
fn too_many_headers_or_too_large_a_head_is_431() {
    let addr = start_default();
    let with_headers = |n: usize| {
        let mut raw = String::from("GET /votes HTTP/1.1\r\nHost: localhost\r\n");
        for i in 1..n {
            raw.push_str(&format!("X-H{i}: v\r\n"));
        }
        raw + "\r\n"
    };
    // Default max_headers is 100: 100 fields are fine, 101 are not.
    assert_eq!(request(addr, with_headers(100)).status, 200);
    expect_error_and_close(addr, with_headers(101).as_bytes(), 431);

    // Default max_header_bytes is 16 KiB.
    let mut raw = String::from("GET /votes HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..20 {
        raw.push_str(&format!("X-Big{i}: {}\r\n", "v".repeat(1000)));
    }
    raw.push_str("\r\n");
    expect_error_and_close(addr, raw.as_bytes(), 431);
    // One huge header name, with no end in sight.
    let raw = format!(
        "GET /votes HTTP/1.1\r\nHost: localhost\r\nX-{}",
        "n".repeat(20_000)
    );
    expect_error_and_close(addr, raw.as_bytes(), 431);
}

#[test]
fn limits_from_the_config_are_enforced() {
    let addr = start(|c| {
        c.limits.max_headers = 3;
        c.limits.max_request_line = 100;
        c.limits.max_header_bytes = 300;
    });
    assert_eq!(
        request(
            addr,
            "GET /votes HTTP/1.1\r\nHost: localhost\r\nA: 1\r\nB: 2\r\n\r\n"
        )
        .status,
        200
    );
    expect_error_and_close(
        addr,
        b"GET /votes HTTP/1.1\r\nHost: localhost\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
        431,
    );
    expect_error_and_close(
        addr,
        format!(
            "GET /{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
            "a".repeat(100)
        )
        .as_bytes(),
        414,
    );
    expect_error_and_close(
        addr,
        format!(
            "GET /votes HTTP/1.1\r\nHost: localhost\r\nA: {}\r\n\r\n",
            "a".repeat(300)
        )
        .as_bytes(),
        431,
    );
}

#[test]
fn transfer_codings_other_than_chunked_are_501() {
    let addr = start_default();
    for te in [
        "Transfer-Encoding: gzip, chunked\r\n",
        "Transfer-Encoding: deflate\r\nTransfer-Encoding: chunked\r\n",
    ] {
        let raw = format!("POST /vote HTTP/1.1\r\nHost: localhost\r\n{te}\r\n0\r\n\r\n");
        expect_error_and_close(addr, raw.as_bytes(), 501);
    }
}

#[test]
fn other_http_versions_are_505() {
    let addr = start_default();
    for v in ["HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "HTTP/3.0"] {
        let raw = format!("GET /votes {v}\r\nHost: localhost\r\n\r\n");
        expect_error_and_close(addr, raw.as_bytes(), 505);
    }
}

#[test]
fn every_response_has_date_content_length_and_content_type() {
    let addr = start(|c| c.limits.max_body = 64);
    let cases: Vec<(String, u16)> = vec![
        (get_req("/"), 200),
        (get_req("/index"), 200),
        (get_req("/votes"), 200),
        (get_req("/style.css"), 200),
        (post_req("/vote", "uid=1"), 200),
        (get_req("/index?transport=x"), 400),
        (post_req("/vote", "uid=9"), 404),
        (get_req("/nothing"), 404),
        (get_req("/ticket"), 405),
        (
            "POST /vote HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nuid=1"
                .into(),
            415,
        ),
        (post_req("/vote", &"x".repeat(100)), 413),
        ("GET / HTTP/1.1\r\n\r\n".into(), 400),
        ("GET / HTTP/2.0\r\nHost: localhost\r\n\r\n".into(), 505),
        (
            "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: br, chunked\r\n\r\n".into(),
            501,
        ),
    ];
    for (raw, status) in cases {
        let r = request(addr, &raw);
        assert_eq!(r.status, status, "{raw:?}");
        r.assert_standard_headers(false);
        assert_eq!(r.header_count("date"), 1);
        assert_eq!(r.header_count("content-type"), 1);
        assert_eq!(r.header_count("connection"), 1);
    }
}

// --- timeouts and the connection cap -----------------------------------------------------------

#[test]
fn a_half_sent_head_gets_408_after_head_timeout_then_close() {
    let addr = start(|c| c.limits.head_timeout = Duration::from_millis(300));
    let mut c = Client::connect(addr);
    c.send("GET /votes HTTP/1.1\r\nHost: localhost\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 408, "{r:?}");
    r.assert_standard_headers(false);
    assert!(r.closes());
    c.assert_closed();

    // Trickling bytes does not extend the deadline (slowloris).
    let mut c = Client::connect(addr);
    let trickle = c.stream.try_clone().unwrap();
    let t = thread::spawn(move || {
        let mut s = trickle;
        for b in b"GET /votes HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa".iter() {
            if std::io::Write::write_all(&mut s, &[*b]).is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(25));
        }
    });
    let r = c.read_response();
    assert_eq!(r.status, 408, "{r:?}");
    t.join().unwrap();
}

#[test]
fn a_body_that_does_not_arrive_in_time_gets_408() {
    let addr = start(|c| c.limits.body_timeout = Duration::from_millis(300));
    let mut c = Client::connect(addr);
    c.send("POST /vote HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5\r\n\r\nui");
    let r = c.read_response();
    assert_eq!(r.status, 408, "{r:?}");
    assert!(r.closes());
    c.assert_closed();
    assert_eq!(tally(addr).0, 0);
}

#[test]
fn an_idle_keep_alive_connection_is_closed_quietly() {
    let addr = start(|c| c.limits.idle_timeout = Duration::from_millis(300));
    let mut c = Client::connect(addr);
    c.send(get_req("/votes"));
    assert_eq!(c.read_response().status, 200);
    c.send(get_req("/votes"));
    assert_eq!(c.read_response().status, 200);
    // Idle now: the server closes without sending anything (no 408 for an idle connection).
    c.assert_closed();

    // A connection that never sends a byte is closed the same way.
    let mut c = Client::connect(addr);
    c.assert_closed();
}

#[test]
fn over_max_connections_gets_503_with_retry_after() {
    let addr = start(|c| c.limits.max_connections = 2);
    let mut held: Vec<Client> = (0..2)
        .map(|_| {
            let mut c = Client::connect(addr);
            c.send(get_req("/votes"));
            assert_eq!(c.read_response().status, 200);
            c
        })
        .collect();

    let mut third = Client::connect(addr);
    let r = third.read_response();
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.header("retry-after").is_some(), "{r:?}");
    r.assert_standard_headers(false);
    assert!(r.closes());
    third.assert_closed();

    // The held connections still work.
    for c in &mut held {
        c.send(get_req("/votes"));
        assert_eq!(c.read_response().status, 200);
    }
    // Once one closes its slot is free again.
    drop(held.pop());
    wait_for(Duration::from_secs(5), "a free connection slot", || {
        served_client(addr)
    });
}

#[test]
fn a_503_survives_a_client_that_sends_its_request_at_once() {
    // curl writes its request right after connecting; the refusal must still arrive intact.
    let addr = start(|c| c.limits.max_connections = 1);
    let mut hold = Client::connect(addr);
    hold.send(get_req("/votes"));
    assert_eq!(hold.read_response().status, 200);
    for _ in 0..20 {
        let mut c = Client::connect(addr);
        let _ = c.try_send(post_req("/vote", "uid=1"));
        match c.try_read_response_to("POST") {
            Ok(Some(r)) => assert_eq!(r.status, 503),
            other => panic!("the 503 was lost: {other:?}"),
        }
    }
    assert_eq!(tally_on(&mut hold), 0);
}

fn tally_on(c: &mut Client) -> u64 {
    c.send(get_req("/votes"));
    c.read_response().json()["version"].as_u64()
}

// --- hostile input -----------------------------------------------------------------------------

fn hostile_inputs() -> Vec<Vec<u8>> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let valid = post_req("/vote", "uid=1").into_bytes();
    let mut out: Vec<Vec<u8>> = Vec::new();
    for i in 0..300 {
        let v = match i % 10 {
            // Random bytes, some with line ends.
            0 => {
                let n = 1 + rng.below(2000);
                rng.bytes(n)
            }
            1 => {
                let n = rng.below(300);
                let mut b = rng.bytes(n);
                b.extend_from_slice(b"\r\n\r\n");
                b
            }
            // A valid vote truncated anywhere inside its head (never counted: no body).
            2 => valid[..rng.below(valid.len() - 5)].to_vec(),
            // A valid vote with one byte replaced by garbage.
            3 => {
                let mut b = valid.clone();
                let at = rng.below(b.len() - 5);
                b[at] = rng.next() as u8;
                b.truncate(b.len() - 5); // without its body: nothing can be counted
                b.extend_from_slice(b"uid=9");
                b
            }
            // Huge header names and values.
            4 => {
                let mut b = b"GET /votes HTTP/1.1\r\nHost: localhost\r\n".to_vec();
                b.extend(std::iter::repeat_n(b'X', 1000 + rng.below(30_000)));
                b.extend_from_slice(b": v\r\n\r\n");
                b
            }
            // NUL bytes in every position of a request.
            5 => {
                let mut b = get_req("/votes").into_bytes();
                let at = rng.below(b.len());
                b.insert(at, 0);
                b
            }
            // Huge chunk sizes, negative sizes, endless chunk extensions.
            6 => {
                let sizes = ["ffffffffffffffffffff", "-1", "0x10", "1;a=\"", "fffffff"];
                let mut b =
                    b"POST /vote HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                        .to_vec();
                b.extend_from_slice(sizes[rng.below(sizes.len())].as_bytes());
                b.extend(std::iter::repeat_n(b';', rng.below(6000)));
                b.extend_from_slice(b"\r\n");
                b
            }
            // Absurd Content-Length values.
            7 => {
                let lens = [
                    "18446744073709551615",
                    "18446744073709551616",
                    "1e9",
                    "0x5",
                    " ",
                ];
                format!(
                    "POST /vote HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\nuid=1",
                    lens[rng.below(lens.len())]
                )
                .into_bytes()
            }
            // Weird targets, percent escapes and methods.
            8 => {
                let targets = [
                    "/%",
                    "/%f",
                    "/%ff%fe",
                    "/..%00/",
                    "/%c0%ae%c0%ae/Cargo.toml",
                    "//",
                    "/?%",
                    "/index?transport=%ff",
                    "/get_new_vote?since=%ff",
                    "/vote?uid=%",
                ];
                let methods = ["GET", "POST", "HEAD", "BREW", "OPTIONS", "X"];
                format!(
                    "{} {} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
                    methods[rng.below(methods.len())],
                    targets[rng.below(targets.len())]
                )
                .into_bytes()
            }
            // Many tiny headers, many blank lines, lone CRs.
            _ => {
                let mut b = b"GET /votes HTTP/1.1\r\n".to_vec();
                for _ in 0..rng.below(400) {
                    b.extend_from_slice([&b"a:b\r\n"[..], b"\r", b"\n", b":\r\n"][rng.below(4)]);
                }
                b
            }
        };
        out.push(v);
    }
    out
}

#[test]
fn hostile_input_never_hurts_the_server() {
    let addr = start(|c| {
        c.limits.head_timeout = Duration::from_millis(500);
        c.limits.body_timeout = Duration::from_millis(500);
    });
    vote(addr, "2");
    let before = tally(addr);
    let inputs = hostile_inputs();
    let workers: Vec<_> = inputs
        .chunks(inputs.len().div_ceil(8))
        .map(|chunk| {
            let chunk = chunk.to_vec();
            thread::spawn(move || {
                for raw in chunk {
                    let mut c = Client::connect(addr);
                    let method = method_of(&raw);
                    let _ = c.try_send(&raw);
                    c.shutdown_write();
                    // Whatever the server says, it must end the exchange (answer and/or close)
                    // within the hang guard, and anything it says must be a valid response.
                    while let Ok(Some(r)) = c.try_read_response_to(&method) {
                        assert!(
                            (100..600).contains(&r.status),
                            "nonsense status for {raw:?}"
                        );
                        if r.status >= 400 {
                            r.assert_standard_headers(method == "HEAD");
                        }
                    }
                    let _ = c.read_to_close();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a hostile-input worker failed");
    }
    // Still serving, and nothing was counted.
    let after = tally(addr);
    assert_eq!(after, before, "hostile input changed the tally");
    assert_eq!(get(addr, "/index").status, 200);
    let j = vote(addr, "1");
    assert_eq!(j["version"].as_u64(), before.0 + 1);
}

#[test]
fn unknown_methods_are_501_and_known_ones_405() {
    let addr = start_default();
    for method in ["BREW", "get", "PROPFIND"] {
        let r = request(
            addr,
            format!("{method} /index HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        );
        assert_eq!(r.status, 501, "{method}");
    }
    let r = request(addr, "DELETE /index HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
}

#[test]
fn routes_match_the_percent_decoded_path() {
    let addr = start_default();
    let r = get(addr, "/%69ndex");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("id=\"user_1\""));
    let before = tally(addr).2;
    let r = post(addr, "/%76ote", "uid=1");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(tally(addr).2["1"], before["1"] + 1);
    assert_eq!(get(addr, "/vote.js/").status, 404);
}
