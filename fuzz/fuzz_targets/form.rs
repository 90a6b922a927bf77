//! Form and query decoding (`http::form::{parse, percent_decode}`) and the SSE resume cursor
//! (`app::cursor::parse_event_id`). Input: a query string or `x-www-form-urlencoded` body.
//!
//! Invariants beyond "never panics":
//! - `parse` of the whole is `parse` of each `&`-separated piece, in order, failing exactly
//!   when a piece does; a piece is one pair named by what precedes its first `=`; `get` finds
//!   the first pair with a name.
//! - `percent_decode` never grows its input; without `%` and `+` it is plain UTF-8 checking;
//!   `+` is a space only when asked, and then exactly like `%20`.
//! - Encoding any string (every byte `%XX`, or the usual mix of literal, `+` and `%XX`) and
//!   decoding it gives the string back.
//! - An event id we write, `EPOCH-VERSION`, is read back as that epoch and version.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livevote::app::cursor::parse_event_id;
use livevote::http::form::{self, percent_decode};

fuzz_target!(|data: &[u8]| {
    check_parse(data);
    check_percent_decode(data);
    check_round_trips(&String::from_utf8_lossy(data));
    check_event_id(data);
});

fn check_parse(data: &[u8]) {
    let got = form::parse(data);
    // Compositional, without restating the parser: the whole is its `&`-pieces parsed one by
    // one, in order, and it fails exactly when one of them does.
    let pieces: Vec<_> = data.split(|&b| b == b'&').map(form::parse).collect();
    match &got {
        Ok(pairs) => {
            let joined: form::Pairs = pieces
                .into_iter()
                .flat_map(|p| p.expect("a piece of a form that parsed"))
                .collect();
            assert_eq!(pairs, &joined);
        }
        Err(_) => assert!(pieces.iter().any(Result::is_err)),
    }
    // A single piece is one pair whose name is what stands before its first `=`, decoded.
    for piece in data.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        if let Ok(pair) = form::parse(piece) {
            assert_eq!(pair.len(), 1);
            let name_end = piece.iter().position(|&b| b == b'=').unwrap_or(piece.len());
            let name = percent_decode(&piece[..name_end], true);
            assert_eq!(Ok(pair[0].0.as_ref()), name.as_deref());
            // Borrowed exactly when there was nothing to decode, and the same either way.
            assert_eq!(form::decode(&piece[..name_end], true).as_deref(), name.as_deref());
        }
    }
    if let Ok(pairs) = got {
        for (name, _) in &pairs {
            let first = pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_ref());
            assert_eq!(form::get(&pairs, name), first);
        }
    }
}

fn check_percent_decode(data: &[u8]) {
    let plus = percent_decode(data, true);
    let raw = percent_decode(data, false);
    for decoded in [&plus, &raw].into_iter().flatten() {
        assert!(decoded.len() <= data.len());
    }
    // `+` as a space is the same as a literal `+` written `%20`.
    let mut spaced = Vec::with_capacity(data.len());
    for &b in data {
        match b {
            b'+' => spaced.extend_from_slice(b"%20"),
            b => spaced.push(b),
        }
    }
    assert_eq!(plus, percent_decode(&spaced, false));
    if !data.contains(&b'+') {
        assert_eq!(plus, raw);
    }
    if !data.contains(&b'%') {
        let plain = std::str::from_utf8(data).map(str::to_owned);
        assert_eq!(raw.as_deref().ok(), plain.as_deref().ok());
        assert_eq!(raw.is_err(), plain.is_err());
    }
}

/// The unreserved characters of RFC 3986 §2.3, which an encoder leaves as they are.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

fn check_round_trips(s: &str) {
    let mut every = String::new();
    let mut usual = String::new();
    for &b in s.as_bytes() {
        every.push_str(&format!("%{b:02X}"));
        match b {
            b' ' => usual.push('+'),
            b if unreserved(b) => usual.push(char::from(b)),
            b => usual.push_str(&format!("%{b:02x}")),
        }
    }
    assert_eq!(percent_decode(every.as_bytes(), true).as_deref(), Ok(s));
    assert_eq!(percent_decode(every.as_bytes(), false).as_deref(), Ok(s));
    assert_eq!(percent_decode(usual.as_bytes(), true).as_deref(), Ok(s));
    let encoded = format!("a={usual}&{usual}=b");
    let pairs = form::parse(encoded.as_bytes()).expect("encoded form");
    assert_eq!(form::get(&pairs, "a"), Some(s));
}

fn check_event_id(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let cursor = parse_event_id(&text);
    if cursor.epoch.is_some() {
        assert!(
            cursor.since.is_some(),
            "an epoch without a version: {cursor:?}"
        );
    }
    // An id as we write it: the epoch is ours to choose, so any text without surrounding
    // whitespace; the version any u64.
    let epoch = text.trim();
    let version = data
        .iter()
        .fold(0u64, |acc, &b| acc.rotate_left(8) ^ u64::from(b));
    let back = parse_event_id(&format!("{epoch}-{version}"));
    assert_eq!(back.since, Some(version));
    assert_eq!(back.epoch.as_deref(), Some(epoch));
}
