//! The JSON this application speaks, written by hand (the only dependencies allowed are
//! `sha1_smol` and `base64`). Every string goes through `json_string`, so names are escaped.

use super::votes::{Catchup, Change, Snapshot};
use crate::http::response::json_string;

/// `{"version":N,"epoch":"E","candidates":[{"uid":"1","name":"野味","count":5},…]}`, with
/// extra leading fields (`"type":"snapshot",` and the like) if `prefix` is not empty.
pub fn snapshot(s: &Snapshot, prefix: &str) -> String {
    let mut o = String::with_capacity(64 + 48 * s.candidates.len());
    o.push('{');
    o.push_str(prefix);
    o.push_str(&format!("\"version\":{},\"epoch\":", s.version));
    json_string(&mut o, &s.epoch);
    o.push_str(",\"candidates\":[");
    for (i, c) in s.candidates.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        o.push_str("{\"uid\":");
        json_string(&mut o, &c.uid);
        o.push_str(",\"name\":");
        json_string(&mut o, &c.name);
        o.push_str(&format!(",\"count\":{}}}", c.count));
    }
    o.push_str("]}");
    o
}

/// `{"uid":"1","count":5}`
pub fn uid_count(o: &mut String, uid: &str, count: u64) {
    o.push_str("{\"uid\":");
    json_string(o, uid);
    o.push_str(&format!(",\"count\":{count}}}"));
}

/// The answer to a vote: `{"uid":"1","count":5,"version":N,"epoch":"E"}`.
pub fn vote_result(c: &Change, epoch: &str) -> String {
    let mut o = String::with_capacity(80);
    uid_count(&mut o, &c.uid, c.count);
    o.pop();
    o.push_str(&format!(",\"version\":{},\"epoch\":", c.version));
    json_string(&mut o, epoch);
    o.push('}');
    o
}

/// The WebSocket broadcast of one vote: `{"uid":"1","count":5,"version":N}`.
pub fn live_change(c: &Change) -> String {
    let mut o = String::with_capacity(48);
    uid_count(&mut o, &c.uid, c.count);
    o.pop();
    o.push_str(&format!(",\"version\":{}}}", c.version));
    o
}

/// `{"error":"…","uid":"…"}`, with `"type":"error",` first when `typed`.
pub fn error_with_uid(message: &str, uid: &str, typed: bool) -> String {
    let mut o = String::from("{");
    if typed {
        o.push_str("\"type\":\"error\",");
    }
    o.push_str("\"error\":");
    json_string(&mut o, message);
    o.push_str(",\"uid\":");
    json_string(&mut o, uid);
    o.push('}');
    o
}

/// The long-poll answer, compatible with the tutorial's client (`status`, `data.uid`,
/// `data.count`), plus what makes it lossless: `version`, `epoch`, `kind`, `from`, and
/// `changes` — the current count of every candidate that changed after `from` (every
/// candidate for a snapshot). `kind` is `live` when the client was current and waited,
/// `delta` when it was behind, `snapshot` when it gets the whole tally.
pub fn longpoll(c: &Catchup, waited: bool, epoch: &str) -> String {
    let (kind, from, version, changes): (&str, u64, u64, Vec<(&str, u64)>) = match c {
        Catchup::Delta { from, votes } => {
            // Latest count per candidate, in the order of their last vote.
            let mut latest: Vec<(&str, u64)> = Vec::new();
            for v in votes {
                latest.retain(|(u, _)| *u != v.uid);
                latest.push((&v.uid, v.count));
            }
            let to = votes.last().map_or(*from, |v| v.version);
            (if waited { "live" } else { "delta" }, *from, to, latest)
        }
        Catchup::Snapshot(s) => (
            "snapshot",
            0,
            s.version,
            s.candidates
                .iter()
                .map(|c| (c.uid.as_str(), c.count))
                .collect(),
        ),
    };
    let mut o = String::from("{\"status\":true,\"data\":");
    match changes.last() {
        Some((uid, count)) => uid_count(&mut o, uid, *count),
        None => o.push_str("null"),
    }
    o.push_str(&format!(
        ",\"version\":{version},\"from\":{from},\"kind\":\"{kind}\",\"epoch\":"
    ));
    json_string(&mut o, epoch);
    o.push_str(",\"changes\":[");
    for (i, (uid, count)) in changes.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        uid_count(&mut o, uid, *count);
    }
    o.push_str("]}");
    o
}

/// The long-poll timeout answer: `{"status":false,"data":null,"version":N,"epoch":"E"}`.
pub fn longpoll_timeout(version: u64, epoch: &str) -> String {
    let mut o = format!("{{\"status\":false,\"data\":null,\"version\":{version},\"epoch\":");
    json_string(&mut o, epoch);
    o.push('}');
    o
}
