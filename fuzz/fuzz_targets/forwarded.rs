//! Behind a reverse proxy: `http::forwarded::{Cidr::parse, resolve}` (RFC 7239 `Forwarded`,
//! `X-Forwarded-For`/`-Proto`/`-Host`) and `http::base_path::{check, split}`. Input: lines of
//! text; the first is a CIDR (and a base path), each further line a header value, its first
//! character saying which header (`F` Forwarded, `X` X-Forwarded-For, `P` -Proto, `H` -Host).
//!
//! Invariants beyond "never panics":
//! - A CIDR that parses prints as one that parses back to itself, and contains its own address.
//! - From a peer no proxy covers, nothing forwarded counts: the client is the peer.
//! - The walk from the right: a hop a trusted proxy appends to `X-Forwarded-For` does not change
//!   an untrusted client found, and nothing a client writes left of an untrusted address counts.
//! - A base path that passes `check` splits its own paths back (`BASE/x` is `/x` inside it).
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use livevote::http::base_path::{self, Under};
use livevote::http::forwarded::{resolve, Cidr, Client, Headers};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or("");
    check_cidr(first);
    check_base_path(first);
    let mut h = Headers::default();
    for line in lines {
        let mut chars = line.chars();
        let kind = chars.next();
        let value = chars.as_str();
        match kind {
            Some('F') => h.forwarded.push(value),
            Some('X') => h.x_forwarded_for.push(value),
            Some('P') => h.x_forwarded_proto.push(value),
            Some('H') => h.x_forwarded_host.push(value),
            _ => {}
        }
    }
    check_resolve(first, &h);
});

fn check_cidr(s: &str) {
    if let Ok(c) = Cidr::parse(s) {
        let shown = c.to_string();
        let again = Cidr::parse(&shown).expect("a printed CIDR parses");
        assert_eq!(again, c, "{s:?} → {shown}");
        let addr: IpAddr = shown.split('/').next().unwrap().parse().unwrap();
        assert!(c.contains(addr), "{shown} contains its own address");
    }
}

fn check_base_path(s: &str) {
    if base_path::check(s).is_ok() && !s.is_empty() {
        assert_eq!(base_path::split(s, &format!("{s}/x")), Under::Inside("/x"));
        assert_eq!(base_path::split(s, s), Under::Bare);
        assert_eq!(base_path::split(s, &format!("{s}x")), Under::Outside);
    }
}

fn check_resolve(first: &str, h: &Headers) {
    let proxies: Vec<Cidr> = ["127.0.0.0/8", "10.0.0.0/8", "::1", first]
        .iter()
        .filter_map(|c| Cidr::parse(c).ok())
        .collect();
    let trusted_peer: IpAddr = "127.0.0.1".parse().unwrap();
    let untrusted_peer: IpAddr = "192.0.2.1".parse().unwrap();
    if !proxies.iter().any(|c| c.contains(untrusted_peer)) {
        assert_eq!(resolve(untrusted_peer, &proxies, h), Client::direct(untrusted_peer));
    }
    // With Forwarded too: never panics.
    let _ = resolve(trusted_peer, &proxies, h);
    // Only X-Forwarded-For decides when no Forwarded element names a hop; keep to that case by
    // leaving Forwarded out.
    let xff_only = Headers {
        forwarded: Vec::new(),
        ..h.clone()
    };
    let base = resolve(trusted_peer, &proxies, &xff_only);
    // A trusted proxy appending its own address on the right changes nothing, once the walk
    // found an untrusted client (an opaque hop or no hop at all leaves the last trusted one,
    // which the appended hop then is).
    if !proxies.iter().any(|c| c.contains(base.ip)) {
        let mut more = xff_only.clone();
        more.x_forwarded_for.push("10.1.2.3");
        assert_eq!(resolve(trusted_peer, &proxies, &more).ip, base.ip);
    }
    // Whatever stands left of an untrusted address is never read.
    let mut right = xff_only.clone();
    right.x_forwarded_for.push("198.51.100.7");
    if !proxies.iter().any(|c| c.contains("198.51.100.7".parse().unwrap())) {
        assert_eq!(
            resolve(trusted_peer, &proxies, &right).ip,
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
    }
}
