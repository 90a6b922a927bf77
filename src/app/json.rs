//! The JSON this application speaks, written by hand (the only dependencies allowed are
//! `sha1_smol` and `base64`). Every string goes through `json_string`, so names are escaped.

use super::presence::{Counts, Kind};
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

/// A WebSocket voter's acknowledgement:
/// `{"type":"ack","vote_id":"…","uid":"1","count":5,"version":N,"replayed":false}`.
pub fn ack(vote_id: &str, c: &Change, replayed: bool) -> String {
    let mut o = String::from("{\"type\":\"ack\",\"vote_id\":");
    json_string(&mut o, vote_id);
    o.push(',');
    let mut rest = String::new();
    uid_count(&mut rest, &c.uid, c.count);
    o.push_str(&rest[1..rest.len() - 1]);
    o.push_str(&format!(
        ",\"version\":{},\"replayed\":{replayed}}}",
        c.version
    ));
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

/// The current count of each candidate changed by `votes`, in the order of their last vote.
fn latest_counts(votes: &[Change]) -> Vec<(&str, u64)> {
    let mut latest: Vec<(&str, u64)> = Vec::new();
    for v in votes {
        latest.retain(|(u, _)| *u != v.uid);
        latest.push((&v.uid, v.count));
    }
    latest
}

fn changes_array(o: &mut String, changes: &[(&str, u64)]) {
    o.push('[');
    for (i, (uid, count)) in changes.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        uid_count(o, uid, *count);
    }
    o.push(']');
}

/// `{"total":N,"ws":a,"sse":b,"longpoll":c,"poll":d}`
pub fn presence_counts(o: &mut String, c: &Counts) {
    o.push_str(&format!("{{\"total\":{}", c.total()));
    for k in Kind::ALL {
        o.push_str(&format!(",\"{}\":{}", k.name(), c.get(k)));
    }
    o.push('}');
}

/// The presence message: `{"type":"presence","total":N,…,"presence_version":P}`.
pub fn presence(c: &Counts, version: u64) -> String {
    let mut o = String::with_capacity(96);
    presence_counts(&mut o, c);
    o.pop();
    o.insert_str(1, "\"type\":\"presence\",");
    o.push_str(&format!(",\"presence_version\":{version}}}"));
    o
}

/// What a resume says: `live` (nothing missed), `delta` or `snapshot`.
pub fn resume_kind(c: &Catchup) -> &'static str {
    match c {
        Catchup::Delta { votes, .. } if votes.is_empty() => "live",
        Catchup::Delta { .. } => "delta",
        Catchup::Snapshot(_) => "snapshot",
    }
}

/// The first message after every (re)connect (docs/PROTOCOL.md), and the version it brings
/// the client to.
pub fn resume(c: &Catchup, since: Option<u64>, epoch: &str) -> (String, u64) {
    let mut o = String::from("{\"type\":\"resume\",\"kind\":\"");
    o.push_str(resume_kind(c));
    match c {
        Catchup::Delta { from, votes } => {
            let to = votes.last().map_or(*from, |v| v.version);
            o.push_str(&format!("\",\"from\":{from},\"to\":{to},\"epoch\":"));
            json_string(&mut o, epoch);
            if !votes.is_empty() {
                o.push_str(",\"changes\":");
                changes_array(&mut o, &latest_counts(votes));
            }
            o.push('}');
            (o, to)
        }
        Catchup::Snapshot(s) => {
            let prefix = format!(
                "\"type\":\"resume\",\"kind\":\"snapshot\",\"from\":{},\"to\":{},",
                since.unwrap_or(0),
                s.version
            );
            (snapshot(s, &prefix), s.version)
        }
    }
}

/// The long-poll answer, compatible with the tutorial's client (`status`, `data.uid`,
/// `data.count`), plus what makes it lossless: `version`, `epoch`, `kind`, `from`, and
/// `changes` — the current count of every candidate that changed after `from` (every
/// candidate for a snapshot). `kind` is `live` when the client was current and waited,
/// `delta` when it was behind, `snapshot` when it gets the whole tally.
/// `since` is the client's version (a snapshot answers `from` it, as a resume does).
pub fn longpoll(c: &Catchup, since: u64, waited: bool, epoch: &str) -> String {
    let (kind, from, version, changes): (&str, u64, u64, Vec<(&str, u64)>) = match c {
        Catchup::Delta { from, votes } => {
            let to = votes.last().map_or(*from, |v| v.version);
            (
                if waited { "live" } else { "delta" },
                *from,
                to,
                latest_counts(votes),
            )
        }
        Catchup::Snapshot(s) => (
            "snapshot",
            since,
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
    o.push_str(",\"changes\":");
    changes_array(&mut o, &changes);
    o.push('}');
    o
}

/// The long-poll timeout answer: `{"status":false,"data":null,"version":N,"epoch":"E"}`.
pub fn longpoll_timeout(version: u64, epoch: &str) -> String {
    let mut o = format!("{{\"status\":false,\"data\":null,\"version\":{version},\"epoch\":");
    json_string(&mut o, epoch);
    o.push('}');
    o
}

/// Reads a flat JSON object whose values are strings (or numbers, kept as written):
/// `{"uid":"1","vote_id":"abc"}` — the only JSON clients send us. Anything else is None.
pub fn parse_flat_object(s: &str) -> Option<Vec<(String, String)>> {
    let mut p = s.trim().strip_prefix('{')?.trim_start();
    let mut out = Vec::new();
    if let Some(rest) = p.strip_prefix('}') {
        return rest.trim().is_empty().then_some(out);
    }
    loop {
        let (key, rest) = parse_string(p)?;
        let rest = rest.trim_start().strip_prefix(':')?.trim_start();
        let (value, rest) = if rest.starts_with('"') {
            parse_string(rest)?
        } else {
            let end = rest.find([',', '}']).unwrap_or(rest.len());
            let raw = rest[..end].trim();
            if raw.is_empty()
                || !raw
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
            {
                return None;
            }
            (raw.to_string(), &rest[end..])
        };
        out.push((key, value));
        let rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            p = r.trim_start();
        } else {
            return rest.strip_prefix('}')?.trim().is_empty().then_some(out);
        }
    }
}

/// A JSON string at the start of `s` (RFC 8259 §7): its value and the rest.
fn parse_string(s: &str) -> Option<(String, &str)> {
    let mut chars = s.strip_prefix('"')?.char_indices();
    let body = &s[1..];
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &body[i + 1..])),
            '\\' => match chars.next()?.1 {
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                '/' => out.push('/'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'u' => {
                    let hex: String = (0..4)
                        .map(|_| chars.next().map(|(_, c)| c))
                        .collect::<Option<_>>()?;
                    // Surrogate pairs are not needed for ids; an unpaired one is refused.
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                _ => return None,
            },
            c if (c as u32) < 0x20 => return None,
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_objects_parse() {
        assert_eq!(
            parse_flat_object(r#" {"uid":"1", "vote_id" : "a\"b\u0041", "n": 12} "#),
            Some(vec![
                ("uid".into(), "1".into()),
                ("vote_id".into(), "a\"bA".into()),
                ("n".into(), "12".into())
            ])
        );
        assert_eq!(parse_flat_object("{}"), Some(vec![]));
        for bad in [
            "",
            "1",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":\"b\"",
            "{\"a\":\"b\"} x",
            "{\"a\":[1]}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"b\",}",
            "{\"a\":\"\\ud800\"}",
            "{\"a\":true}",
        ] {
            assert_eq!(parse_flat_object(bad), None, "{bad}");
        }
    }
}
