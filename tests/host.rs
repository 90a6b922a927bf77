//! The `Host` header (RFC 9112 §3.2, RFC 9110 §7.2): a malformed one is `400`; a well-formed
//! one this server does not answer to is `421 Misdirected Request` on every route; and the
//! Origin checks (votes, WebSocket upgrades) accept only an Origin naming exactly the allowed
//! Host (scheme, host, port) or one given with `--allow-origin`. Together they close DNS
//! rebinding: a page from `evil.example` re-resolved to 127.0.0.1 sends `Host: evil.example`.
//! And the other half of "only our own pages may drive us": every HTML page refuses to be
//! framed (clickjacking) and runs only our own scripts.

mod common;

use std::net::SocketAddr;

use common::metrics::scrape;
use common::*;

/// `GET path` with `Host: host` (no Host line when None), HTTP/1.1 unless `version` says so.
fn get_with_host(path: &str, host: Option<&str>, version: &str) -> String {
    let host = host.map_or(String::new(), |h| format!("Host: {h}\r\n"));
    format!("GET {path} {version}\r\n{host}\r\n")
}

fn status_of(addr: SocketAddr, raw: &str) -> u16 {
    Client::connect(addr).call(raw).status
}

/// A vote from `origin` (if any) to a server asked as `host`.
fn vote_from(host: &str, origin: Option<&str>) -> String {
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    format!(
        "POST /vote HTTP/1.1\r\nHost: {host}\r\n{origin}\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 5\r\n\r\nuid=1"
    )
}

/// A WebSocket upgrade of `/get_new_vote` with `Host: host` and `Origin: origin` (if any).
fn upgrade_with(host: &str, origin: Option<&str>) -> String {
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    format!(
        "GET /get_new_vote HTTP/1.1\r\nHost: {host}\r\n{}{origin}\r\n",
        upgrade_headers()
    )
}

#[test]
fn malformed_hosts_are_400() {
    let addr = start_default();
    let port = addr.port();
    let bad = [
        "bad host/..".to_string(),
        "bad host".to_string(),
        "localhost/".to_string(),
        "/".to_string(),
        "localhost/index".to_string(),
        "user@localhost".to_string(),
        format!("user:pw@localhost:{port}"),
        "localhost:80a".to_string(),
        "localhost:-1".to_string(),
        "localhost:65536".to_string(),
        "localhost:99999999999999999999".to_string(),
        "localhost:80:80".to_string(),
        ":80".to_string(),
        "[::1".to_string(),
        "::1".to_string(),
        "[::1]x".to_string(),
        "[not-ipv6]".to_string(),
        "[::1%25eth0]".to_string(),
        "local%zzhost".to_string(),
        "local%4".to_string(),
        "lo\"calhost".to_string(),
        "local<host>".to_string(),
        "local\\host".to_string(),
        "localhost?x".to_string(),
        "localhost#x".to_string(),
        "локалхост".to_string(),
    ];
    for host in &bad {
        for path in ["/index", "/metrics"] {
            let s = status_of(addr, &get_with_host(path, Some(host), "HTTP/1.1"));
            assert_eq!(s, 400, "Host: {host:?} on {path}");
        }
    }
    // An empty Host names no authority, and every URI we serve has one (RFC 9110 §4.2.1): 400
    // in either version.
    for v in ["HTTP/1.1", "HTTP/1.0"] {
        let raw = format!("GET /index {v}\r\nHost:\r\n\r\n");
        assert_eq!(status_of(addr, &raw), 400, "empty Host, {v}");
    }
    // An absolute-form target's authority is checked the same way.
    let raw = "GET http://bad<host/index HTTP/1.1\r\nHost: localhost\r\n\r\n";
    assert_eq!(status_of(addr, raw), 400);
    let raw = "GET http://u@localhost/index HTTP/1.1\r\nHost: localhost\r\n\r\n";
    assert_eq!(status_of(addr, raw), 400);
}

#[test]
fn well_formed_hosts_of_other_kinds_are_not_400() {
    // Syntax alone: with '*' these all pass the allowlist, so they show the parser accepts them.
    let addr = start(|c| c.hosts = vec!["*".into()]);
    for host in [
        "example.com",
        "EXAMPLE.com.",
        "a-b_c~d.example:8080",
        "xn--80akhbyknj4f",
        "%41bc",
        "sub!$&'()*+,;=delims",
        "192.168.0.1:1",
        "[::1]:8080",
        "[2001:db8::1]",
        "[v7.fe:80]",
        "localhost:",
        "localhost:0080",
    ] {
        let s = status_of(addr, &get_with_host("/index", Some(host), "HTTP/1.1"));
        assert_eq!(s, 200, "Host: {host:?}");
    }
}

#[test]
fn an_unknown_host_is_421_on_every_route() {
    let addr = start_default();
    let host = format!("evil.example:{}", addr.port());
    for path in [
        "/index",
        "/",
        "/metrics",
        "/votes",
        "/chat",
        "/style.css",
        "/nope",
    ] {
        let r = Client::connect(addr).call(get_with_host(path, Some(&host), "HTTP/1.1"));
        assert_eq!(r.status, 421, "{path}: {}", r.text());
        let j = assert_json(&r, 421);
        let msg = j["error"].as_str().to_string();
        assert!(
            msg.contains("evil.example") && msg.contains("--host"),
            "{msg}"
        );
    }
    // A vote is refused and counts nothing.
    let r = Client::connect(addr).call(vote_from(&host, None));
    assert_eq!(r.status, 421, "{}", r.text());
    // The WebSocket upgrade too, and the connection is closed.
    let mut c = Client::connect(addr);
    let r = c.call(upgrade_with(&host, None));
    assert_eq!(r.status, 421, "{}", r.text());
    c.assert_closed();
    // An absolute-form target names the authority instead of Host (RFC 9112 §3.2.2).
    let raw = "GET http://evil.example/index HTTP/1.1\r\nHost: localhost\r\n\r\n";
    assert_eq!(status_of(addr, raw), 421);
    let raw = "GET http://localhost/index HTTP/1.1\r\nHost: evil.example\r\n\r\n";
    assert_eq!(status_of(addr, raw), 200);
    assert_eq!(version_counts(addr).0, 0);
}

#[test]
fn dns_rebinding_cannot_vote_open_websockets_or_read_metrics() {
    // The attacker's page at http://evil.example:PORT, its name re-resolved to 127.0.0.1: the
    // browser sends Host and Origin that match each other, and neither is ours.
    let addr = start_default();
    let host = format!("evil.example:{}", addr.port());
    let origin = format!("http://{host}");
    let r = Client::connect(addr).call(vote_from(&host, Some(&origin)));
    assert_eq!(r.status, 421, "{}", r.text());
    let r = Client::connect(addr).call(upgrade_with(&host, Some(&origin)));
    assert_eq!(r.status, 421, "{}", r.text());
    let raw = format!("GET /metrics HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\n\r\n");
    assert_eq!(status_of(addr, &raw), 421);
    assert_eq!(version_counts(addr).0, 0, "nothing was counted");
}

#[test]
fn the_default_names_and_the_bind_address_pass() {
    let addr = start_default();
    let port = addr.port();
    for host in [
        "localhost".to_string(),
        format!("localhost:{port}"),
        "LOCALHOST.".to_string(),
        format!("LocalHost.:{port}"),
        "127.0.0.1".to_string(),
        format!("127.0.0.1:{port}"),
        "127.0.0.1:1".to_string(),
        "[::1]".to_string(),
        format!("[::1]:{port}"),
        format!("[0:0::1]:{port}"),
    ] {
        let s = status_of(addr, &get_with_host("/index", Some(&host), "HTTP/1.1"));
        assert_eq!(s, 200, "Host: {host}");
    }
    // HTTP/1.0 without Host is still served (it may not have one).
    let s = status_of(addr, &get_with_host("/index", None, "HTTP/1.0"));
    assert_eq!(s, 200);
}

#[test]
fn host_entries_pass_with_the_port_rules() {
    let addr = start(|c| {
        c.hosts = vec![
            "vote.example".into(),
            "lan.example:8080".into(),
            "192.168.1.5".into(),
            "[fe80::1]:9".into(),
            "Dotted.Example.".into(),
        ]
    });
    for (host, want) in [
        // No port in the entry: any port.
        ("vote.example", 200),
        ("VOTE.example.:1234", 200),
        ("vote.example:80", 200),
        ("192.168.1.5:8080", 200),
        ("dotted.example", 200),
        ("dotted.example.:5", 200),
        // A port in the entry: that port only (no port in Host means the default port).
        ("lan.example:8080", 200),
        ("lan.example:08080", 200),
        ("lan.example", 421),
        ("lan.example:80", 421),
        ("lan.example:8081", 421),
        ("[fe80::1]:9", 200),
        ("[fe80:0::1]:9", 200),
        ("[fe80::1]:10", 421),
        // Not a prefix or suffix match.
        ("vote.example.evil", 421),
        ("evil.vote.example", 421),
        ("192.168.1.50", 421),
    ] {
        let s = status_of(addr, &get_with_host("/index", Some(host), "HTTP/1.1"));
        assert_eq!(s, want, "Host: {host}");
    }
}

#[test]
fn star_accepts_any_well_formed_host_but_origins_must_still_match() {
    let addr = start(|c| c.hosts = vec!["*".into()]);
    let host = format!("evil.example:{}", addr.port());
    assert_eq!(
        status_of(addr, &get_with_host("/index", Some(&host), "HTTP/1.1")),
        200
    );
    assert_eq!(
        status_of(addr, &get_with_host("/", Some("bad host"), "HTTP/1.1")),
        400
    );
    // Behind a proxy that checks Host, the Origin must still name the Host it forwarded.
    let r = Client::connect(addr).call(vote_from(&host, Some(&format!("http://{host}"))));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = Client::connect(addr).call(vote_from(&host, Some("http://other.example")));
    assert_eq!(r.status, 403, "{}", r.text());
}

#[test]
fn the_origin_must_name_the_hosts_scheme_host_and_port() {
    let addr = start(|c| {
        c.hosts = vec!["vote.example".into()];
        c.allow_origins = vec!["http://allowed.example:81".into()];
    });
    let port = addr.port();
    let h = format!("127.0.0.1:{port}");
    let cases: &[(&str, &str, u16)] = &[
        // Same host and port, either scheme (TLS may end in a proxy in front).
        (&h, &format!("http://127.0.0.1:{port}"), 200),
        (&h, &format!("https://127.0.0.1:{port}"), 200),
        (&h, &format!("HTTP://127.0.0.1:{port}/"), 200),
        // Another port, host or scheme: refused.
        (
            &h,
            &format!("http://127.0.0.1:{}", port.wrapping_add(1).max(1)),
            403,
        ),
        (&h, "http://127.0.0.1", 403),
        (&h, &format!("http://localhost:{port}"), 403),
        (&h, &format!("ws://127.0.0.1:{port}"), 403),
        (&h, &format!("ftp://127.0.0.1:{port}"), 403),
        (&h, &format!("http://127.0.0.1:{port}@evil.example"), 403),
        (&h, &format!("http://evil.example@127.0.0.1:{port}"), 403),
        (&h, "null", 403),
        // A Host without a port is the default port of the Origin's scheme.
        ("vote.example", "http://vote.example", 200),
        ("vote.example", "https://vote.example", 200),
        ("vote.example", "http://vote.example:80", 200),
        ("vote.example", "https://vote.example:443", 200),
        ("vote.example:80", "http://vote.example", 200),
        ("vote.example:443", "https://vote.example", 200),
        ("vote.example", "http://vote.example:8080", 403),
        ("vote.example:8080", "http://vote.example", 403),
        ("vote.example:80", "https://vote.example", 403),
        ("VOTE.example.", "http://vote.EXAMPLE", 200),
        // Listed with --allow-origin: exactly that origin.
        (&h, "http://allowed.example:81", 200),
        (&h, "http://allowed.example", 403),
    ];
    let mut c = Client::connect(addr);
    for (i, &(host, origin, want)) in cases.iter().enumerate() {
        let r = c.call(vote_from(host, Some(origin)));
        assert_eq!(
            r.status,
            want,
            "case {i}: Host {host}, Origin {origin}: {}",
            r.text()
        );
        let r = Client::connect(addr).call(upgrade_with(host, Some(origin)));
        let want_ws = if want == 200 { 101 } else { 403 };
        assert_eq!(
            r.status, want_ws,
            "case {i} (upgrade): Host {host}, Origin {origin}"
        );
    }
}

#[test]
fn the_test_helpers_hosts_still_pass() {
    let addr = start_default();
    assert_eq!(get(addr, "/index").status, 200);
    assert!(scrape(addr).contains("livevote_"));
    let raw = format!("GET /index HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    assert_eq!(status_of(addr, &raw), 200);
}

// ---------------------------------------------------------------------------------------------
// Framing (clickjacking) and scripts

/// The directives of a Content-Security-Policy, by name.
fn csp_directives(csp: &str) -> Vec<(String, Vec<String>)> {
    csp.split(';')
        .filter_map(|d| {
            let mut words = d.split_whitespace();
            let name = words.next()?.to_ascii_lowercase();
            Some((name, words.map(str::to_string).collect()))
        })
        .collect()
}

#[test]
fn every_html_page_refuses_framing_and_foreign_scripts() {
    let addr = start_default();
    for (method, path) in [
        ("GET", "/index"),
        ("GET", "/index?transport=ws"),
        ("HEAD", "/index"),
        ("GET", "/"),
        ("GET", "/chat"),
        ("GET", "/home.html"),
        ("GET", "/chat.html"),
    ] {
        let mut c = Client::connect(addr);
        c.send(format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"
        ));
        let r = c.read_response_to(method);
        assert_eq!(r.status, 200, "{method} {path}");
        let ctype = r.header("content-type").unwrap_or_default();
        assert!(ctype.starts_with("text/html"), "{path}: {ctype}");
        assert_eq!(r.header_count("x-frame-options"), 1, "{path}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(r.header_count("content-security-policy"), 1, "{path}");
        let csp = r.header("content-security-policy").unwrap_or_default();
        let d = csp_directives(csp);
        let get = |name: &str| {
            let found: Vec<_> = d.iter().filter(|(n, _)| n == name).collect();
            assert_eq!(found.len(), 1, "{path}: one {name} in {csp}");
            found[0].1.clone()
        };
        assert_eq!(get("frame-ancestors"), ["'none'"], "{path}: {csp}");
        assert_eq!(get("script-src"), ["'self'"], "{path}: {csp}");
        assert_eq!(get("default-src"), ["'self'"], "{path}: {csp}");
        assert_eq!(get("base-uri"), ["'none'"], "{path}: {csp}");
        assert_eq!(get("connect-src"), ["'self'"], "{path}: {csp}");
    }
}

#[test]
fn two_origins_name_no_single_origin_and_are_refused() {
    let addr = start_default();
    let own = format!("http://127.0.0.1:{}", addr.port());
    let host = format!("127.0.0.1:{}", addr.port());
    // The first names this server, the second another site: neither is "the" origin.
    let two = format!(
        "POST /vote HTTP/1.1\r\nHost: {host}\r\nOrigin: {own}\r\nOrigin: http://evil.example\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 5\r\n\r\nuid=1"
    );
    assert_eq!(status_of(addr, &two), 403);
    assert_eq!(status_of(addr, &vote_from(&host, Some(&own))), 200);
    assert_eq!(tally(addr).0, 1, "only the vote with one Origin counted");
}
