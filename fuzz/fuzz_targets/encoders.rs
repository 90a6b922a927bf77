//! The output encoders: the JSON writer (`livevote::json`), HTML escaping, and the Prometheus
//! text of `/metrics`. Input: arbitrary bytes, read as text (lossily) and as numbers.
//!
//! Invariants beyond "never panics":
//! - a JSON string or object we write is read back by an independent parser (`serde_json`) to
//!   exactly the values that went in, and holds no raw `<`, `>`, `&`, U+2028, U+2029 or control
//!   character (safe to embed in HTML and scripts);
//! - HTML-escaped text holds no `<`, `>`, `"` or `'`, and decodes back to the text;
//! - after any sequence of counter updates, every line of the exposition text is a comment or
//!   `name{labels} value` with a valid metric name and a number, each sample follows its
//!   `# TYPE`, and counters never read below what was added.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livevote::app::metrics::{Gauges, Metrics, Route};
use livevote::app::presence::{Counts, Kind};
use livevote::http::response::html_escape;
use livevote::json;
use serde_json::Value;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    check_json(&text);
    check_html(&text);
    check_metrics(data);
});

fn check_json(s: &str) {
    let mut out = String::new();
    json::string(&mut out, s);
    let back: Value = serde_json::from_str(&out).expect("our JSON string parses");
    assert_eq!(back, Value::String(s.to_owned()));
    assert!(!out.contains(['<', '>', '&', '\u{2028}', '\u{2029}']));
    assert!(!out.chars().any(|c| (c as u32) < 0x20));
    // Keys are escaped like values.
    let parts: Vec<&str> = s.split('\u{0}').collect();
    let obj = json::to_object(|o| {
        for (i, p) in parts.iter().enumerate() {
            o.object(&format!("{i}:{p}"), |o| {
                o.str("v", p).u64("n", p.len() as u64);
            });
        }
    });
    let back: Value = serde_json::from_str(&obj).expect("our JSON object parses");
    for (i, p) in parts.iter().enumerate() {
        let member = &back[format!("{i}:{p}").as_str()];
        assert_eq!(member["v"], Value::String((*p).to_owned()));
        assert_eq!(member["n"].as_u64(), Some(p.len() as u64));
    }
}

fn check_html(s: &str) {
    let mut out = String::new();
    html_escape(&mut out, s);
    assert!(!out.contains(['<', '>', '"', '\'']));
    let decoded = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    assert_eq!(decoded, s);
}

fn check_metrics(data: &[u8]) {
    let m = Metrics::default();
    for chunk in data.chunks(3) {
        let n = u64::from(
            chunk
                .iter()
                .fold(0u16, |a, &b| a.wrapping_mul(31) ^ u16::from(b)),
        );
        match chunk[0] % 6 {
            0 => m.response(
                livevote::http::Status::from_code(100 + (n % 500) as u16).map_or(599, |s| s.code()),
                n as usize,
            ),
            1 => m.vote(
                [Route::Vote, Route::Ticket, Route::WebSocket][(n % 3) as usize],
                n % 2 == 0,
            ),
            2 => m.sent(Kind::ALL[(n % 4) as usize], n, n * 7, n / 2),
            3 => m.delivered(Kind::ALL[(n % 4) as usize], Duration::from_micros(n * 997)),
            4 => m.ws_closed(1000 + (n % 20) as u16),
            _ => m.resume(
                Kind::ALL[(n % 4) as usize],
                ["live", "delta", "snapshot", "x"][(n % 4) as usize],
            ),
        }
    }
    let g = Gauges {
        http_connections: data.len(),
        max_connections: data.len() * 2,
        ws_subscribers: data.len() / 2,
        sse_streams: data.len() as u64 / 3,
        presence: Counts([1, 2, 3, data.len() as u64]),
        version: data.len() as u64,
        ws_buffered_bytes: 0,
        vote_ids: livevote::app::votes::IdStats {
            remembered: data.len(),
            bytes: data.len() * 150,
            expired: data.len() as u64 / 3,
            refused: data.len() as u64 / 5,
        },
        polls: 1 + data.len() % 7,
        max_polls: 1000,
        voters: data.len() as u64,
        max_voters: 100_000,
    };
    let text = m.render(&g);
    let mut typed: Vec<String> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            typed.push(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample: name value");
        assert!(value.parse::<f64>().is_ok(), "{line}");
        let name = series.split('{').next().unwrap_or("");
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
                && !name.as_bytes()[0].is_ascii_digit(),
            "{line}"
        );
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
        }
        let family = typed.last().expect("a sample after its # TYPE");
        assert!(name.starts_with(family.as_str()), "{line} outside {family}");
    }
}
