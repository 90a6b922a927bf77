//! HTTP/1.1 request heads, pipelined, with their bodies: `parse_request`, then the body by its
//! framing (`Content-Length` or the chunked `Decoder`), then the next request in the buffer —
//! the way `http::conn` walks a connection's bytes. Each input runs twice: with the default
//! limits and with tiny ones, so the limit checks are reached by short inputs too.
//!
//! Invariants beyond "never panics":
//! - `Complete(req, n)`: `0 < n <= len`; re-parsing exactly the `n` bytes gives the same
//!   request and `n`; every proper prefix of those bytes is `Incomplete` (however the head is
//!   split into reads, it parses the same); `n` and any `Incomplete` buffer stay within the
//!   head limits (the server never buffers an unbounded head).
//! - The request is well formed: method a token, target visible ASCII, path `*` or `/…`
//!   without `?`/`#`, header names tokens, values trimmed and without control characters, one
//!   `Host` for HTTP/1.1, and a body framing that agrees with the headers and `max_body`.
//! - What the app does next with a request never panics: handshake validation (and its
//!   accept key), keep-alive, the decoded path and query, `Last-Event-ID`.
//! - `parse_request_into` on one request reused for every head (as `http::conn` does) gives
//!   what a fresh `parse_request` gives.
//! - `HeadScan` (what `http::conn` uses) fed a byte at a time stops where `parse_request`
//!   first stops being `Incomplete`, with the same answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livevote::app::cursor::parse_event_id;
use livevote::config::Limits;
use livevote::http::chunked::Decoder;
use livevote::http::conn::keep_alive;
use livevote::http::form;
use livevote::http::request::{
    parse_request, parse_request_into, BodyFraming, HeadScan, Parse, Request, Version,
};
use livevote::ws::handshake;

/// Requests taken from one input; more only repeats what the first ones reached.
const MAX_PIPELINED: usize = 8;
/// `parse_request` skips at most this many CR/LF bytes before a request line.
const MAX_LEADING_EMPTY: usize = 8;

fn tiny_limits() -> Limits {
    Limits {
        max_request_line: 40,
        max_header_bytes: 160,
        max_headers: 4,
        max_body: 16,
        ..Limits::default()
    }
}

fuzz_target!(|data: &[u8]| {
    walk(data, &Limits::default());
    walk(data, &tiny_limits());
});

fn walk(data: &[u8], limits: &Limits) {
    // An unfinished head: the limit, the empty lines skipped before it, and a CR awaiting its LF.
    let head_bound = MAX_LEADING_EMPTY + limits.max_request_line.max(limits.max_header_bytes) + 1;
    let mut rest = data;
    // One request reused for every head, as a connection does, trimmed after each.
    let mut kept = Request::default();
    for _ in 0..MAX_PIPELINED {
        check_scan(rest, limits);
        let fresh = parse_request(rest, limits);
        let reused = parse_request_into(rest, limits, &mut kept);
        match (&fresh, &reused) {
            (Ok(Parse::Complete(req, n)), Ok(Some(m))) => {
                assert_eq!((req, n), (&kept, m), "a reused request parses differently")
            }
            (Ok(Parse::Incomplete), Ok(None)) => {}
            (Err(a), Err(b)) => assert_eq!(a.status(), b.status()),
            _ => panic!("fresh {fresh:?}, reused {reused:?}"),
        }
        kept.trim();
        let (req, n) = match fresh {
            Ok(Parse::Complete(req, n)) => (req, n),
            Ok(Parse::Incomplete) => {
                assert!(rest.len() <= head_bound, "incomplete head past the limits");
                return;
            }
            Err(e) => {
                assert!(
                    matches!(e.status().code(), 400 | 413 | 414 | 431 | 501 | 505),
                    "{e:?}"
                );
                return;
            }
        };
        assert!(n > 0 && n <= rest.len(), "consumed {n} of {}", rest.len());
        // `pos <= max_header_bytes` is checked before the empty line (at most CRLF) is read.
        assert!(
            n <= MAX_LEADING_EMPTY + limits.max_header_bytes + 2,
            "head of {n} bytes"
        );
        assert_eq!(
            parse_request(&rest[..n], limits),
            Ok(Parse::Complete(req.clone(), n)),
            "the consumed bytes alone parse differently"
        );
        check_prefixes(&rest[..n], limits);
        check_request(&req, limits);
        exercise_app_views(&req);

        rest = &rest[n..];
        match req.body {
            BodyFraming::None => {}
            BodyFraming::Length(len) => {
                let Some(tail) = usize::try_from(len).ok().and_then(|l| rest.get(l..)) else {
                    return;
                };
                rest = tail;
            }
            BodyFraming::Chunked => {
                let mut dec = Decoder::new(limits.max_body);
                match dec.feed(rest) {
                    Ok(used) if dec.is_done() => {
                        assert!(used <= rest.len());
                        assert!(dec.body.len() <= limits.max_body);
                        rest = &rest[used..];
                    }
                    Ok(_) | Err(_) => return,
                }
            }
        }
    }
}

/// A head split across reads must parse the same as in one read: every proper prefix of a
/// complete head is `Incomplete` — not complete, and not an error (a limit must not be hit by
/// a read that ends between a CR and its LF). Short heads (all of those under the tiny limits):
/// every prefix; long ones, to keep the target fast: the cuts around their first and last
/// line ends, where the limits bite.
fn check_prefixes(head: &[u8], limits: &Limits) {
    const ALL_PREFIXES_UP_TO: usize = 192;
    const LINE_ENDS_EACH_SIDE: usize = 16;
    let check = |len: usize| {
        assert_eq!(
            parse_request(&head[..len], limits),
            Ok(Parse::Incomplete),
            "the first {len} of {} bytes of a complete head",
            head.len()
        );
    };
    if head.len() <= ALL_PREFIXES_UP_TO {
        (0..head.len()).for_each(check);
        return;
    }
    let ends: Vec<usize> = (0..head.len()).filter(|&i| head[i] == b'\n').collect();
    let first = ends.iter().take(LINE_ENDS_EACH_SIDE);
    let last = ends.iter().rev().take(LINE_ENDS_EACH_SIDE);
    for &i in first.chain(last) {
        for len in [i.saturating_sub(1), i, i + 1] {
            if len < head.len() {
                check(len);
            }
        }
    }
}

/// `HeadScan` fed `bytes` one byte at a time: its first answer other than `Incomplete` (or
/// its last) is `parse_request`'s on the same bytes, which the scan looked at once each.
fn check_scan(bytes: &[u8], limits: &Limits) {
    let mut scan = HeadScan::new();
    for len in 0..=bytes.len() {
        let got = scan.feed(&bytes[..len], limits);
        if got != Ok(Parse::Incomplete) || len == bytes.len() {
            assert_eq!(got, parse_request(&bytes[..len], limits), "after {len} bytes");
            return;
        }
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn check_request(req: &Request, limits: &Limits) {
    assert!(!req.method.is_empty() && req.method.bytes().all(is_tchar));
    assert!(!req.target.is_empty());
    assert!(req.target.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    assert!(
        req.path == "*" || req.path.starts_with('/'),
        "path {:?}",
        req.path
    );
    assert!(!req.path.contains(['?', '#']), "path {:?}", req.path);
    if let Some(q) = &req.query {
        assert!(!q.contains('#'), "query {q:?}");
    }
    if req.path == "*" {
        assert_eq!(req.method, "OPTIONS");
    }

    assert!(req.headers.len() <= limits.max_headers);
    for h in req.headers.iter() {
        assert!(!h.name.is_empty() && h.name.bytes().all(is_tchar), "{h:?}");
        let v = h.value.as_bytes();
        assert!(
            !v.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f),
            "{h:?}"
        );
        assert!(!v.starts_with(b" ") && !v.starts_with(b"\t"), "{h:?}");
        assert!(!v.ends_with(b" ") && !v.ends_with(b"\t"), "{h:?}");
    }

    let hosts = req.header_values("host").count();
    match req.version {
        Version::Http11 => assert_eq!(hosts, 1),
        Version::Http10 => assert!(hosts <= 1),
    }

    let has_te = req.header("transfer-encoding").is_some();
    let has_cl = req.header("content-length").is_some();
    assert!(!(has_te && has_cl), "both framings accepted");
    match req.body {
        BodyFraming::None => assert!(!has_te),
        BodyFraming::Length(n) => {
            assert!(has_cl);
            assert!(n > 0 && n <= limits.max_body as u64, "length {n}");
        }
        BodyFraming::Chunked => {
            assert!(has_te);
            assert_eq!(req.version, Version::Http11);
        }
    }
}

/// What the app layer derives from a parsed request: none of it may panic.
fn exercise_app_views(req: &Request) {
    let _ = keep_alive(req);
    let _ = form::percent_decode(req.path.as_bytes(), false);
    if let Some(q) = &req.query {
        let _ = form::parse(q.as_bytes());
    }
    if let Some(id) = req.header("last-event-id") {
        let _ = parse_event_id(id);
    }
    let upgrade = handshake::is_upgrade_request(req);
    match handshake::validate(req) {
        Ok(accept) => {
            assert!(upgrade, "validated without Upgrade: websocket");
            let key = req
                .header("sec-websocket-key")
                .expect("validated without a key");
            assert_eq!(accept, handshake::accept_key(key.trim()));
            assert_eq!(accept.len(), 28);
        }
        Err(e) => assert!(matches!(e.status().code(), 400 | 426)),
    }
}
