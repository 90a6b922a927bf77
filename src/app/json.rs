//! The JSON this application speaks, built with the crate's JSON writer ([`crate::json`]): every
//! message is written member by member, never edited after the fact, and every string is
//! escaped by the writer. (The only dependencies allowed are `sha1_smol` and `base64`.)

use super::presence::{Counts, Kind};
use super::votes::{Catchup, Change, Snapshot};
use crate::json::{self as w, Array, Object};

/// The tally's members: `"version":N,"epoch":"E","candidates":[{"uid","name","count"},…],
/// "state":"open","total":T`. For a viewer who may not see the results (`visible` false),
/// the candidates have no `count` and `"hidden":true` follows: the total is all they learn.
pub fn snapshot_fields(o: &mut Object, s: &Snapshot, visible: bool) {
    o.u64("version", s.version)
        .str("epoch", &s.epoch)
        .array("candidates", |a| {
            for c in &s.candidates {
                a.object(|o| {
                    o.str("uid", &c.uid).str("name", &c.name);
                    if visible {
                        o.u64("count", c.count);
                    }
                });
            }
        })
        .str("state", if s.closed { "closed" } else { "open" })
        .u64("total", s.total());
    if !visible {
        o.bool("hidden", true);
    }
}

/// `{"version":N,"epoch":"E","candidates":[…],…}`, led by `"type":"snapshot"` when `typed`
/// (the live streams' snapshot message).
pub fn snapshot(s: &Snapshot, typed: bool, visible: bool) -> String {
    w::to_object(|o| {
        if typed {
            o.str("type", "snapshot");
        }
        snapshot_fields(o, s, visible);
    })
}

/// A poll as the admin API shows it: `id`, `question`, `mode`, `results`, then the tally's
/// members (every count) and `voters`.
pub fn poll(p: &crate::app::polls::Poll) -> String {
    let s = p.votes.snapshot();
    w::to_object(|o| {
        poll_fields(o, &p.meta, &s, true);
        o.u64("voters", p.votes.voters() as u64);
    })
}

/// A poll's own members, then its tally's ([`snapshot_fields`]).
pub fn poll_fields(o: &mut Object, m: &crate::app::polls::meta::Meta, s: &Snapshot, visible: bool) {
    o.str("id", &m.id)
        .str("question", &m.question)
        .str("mode", m.mode.name())
        .str("results", m.results.name());
    snapshot_fields(o, s, visible);
}

/// The answer to a vote: `{"uid":"1","count":5,"version":N,"epoch":"E"}`, and the moved
/// vote's other count (`change` mode) in `changes`. Where the voter may not see the results
/// yet: `{"uid":"1","version":N,"epoch":"E","hidden":true}`.
pub fn vote_result(c: &Change, epoch: &str, visible: bool) -> String {
    w::to_object(|o| {
        o.str("uid", &c.uid);
        if visible {
            o.u64("count", c.count);
        }
        o.u64("version", c.version).str("epoch", epoch);
        if !visible {
            o.bool("hidden", true);
        } else if let Some((from, count)) = &c.moved {
            o.array("changes", |a| {
                changes_array(a, &[(&c.uid, c.count), (from, *count)]);
            });
        }
    })
}

/// A WebSocket voter's acknowledgement:
/// `{"type":"ack","vote_id":"…","uid":"1","count":5,"version":N,"replayed":false}`.
pub fn ack(vote_id: &str, c: &Change, replayed: bool, visible: bool) -> String {
    w::to_object(|o| {
        o.str("type", "ack")
            .str("vote_id", vote_id)
            .str("uid", &c.uid);
        if visible {
            o.u64("count", c.count);
        }
        o.u64("version", c.version).bool("replayed", replayed);
        if !visible {
            o.bool("hidden", true);
        }
    })
}

/// The live broadcast of one vote: `{"uid":"1","count":5,"version":N}`; a moved vote
/// (`change` mode) adds `"changes":[{"uid":"1","count":5},{"uid":"2","count":3}]`, both
/// counts of its one version.
pub fn live_change(c: &Change) -> String {
    w::to_object(|o| {
        o.str("uid", &c.uid)
            .u64("count", c.count)
            .u64("version", c.version);
        if let Some((from, count)) = &c.moved {
            o.array("changes", |a| {
                changes_array(a, &[(&c.uid, c.count), (from, *count)]);
            });
        }
    })
}

/// The same vote for a viewer who may not see the results: `{"version":N,"total":T}` — no
/// candidate, so not even which option moved.
pub fn live_hidden(c: &Change) -> String {
    w::to_object(|o| {
        o.u64("version", c.version).u64("total", c.total);
    })
}

/// `{"error":"…","uid":"…"}`, with `"type":"error",` first when `typed`.
pub fn error_with_uid(message: &str, uid: &str, typed: bool) -> String {
    w::to_object(|o| {
        if typed {
            o.str("type", "error");
        }
        o.str("error", message).str("uid", uid);
    })
}

/// A vote whose store did not finish in time (`--vote-timeout`): it may or may not count, and
/// a retry with the same vote id learns which. Over WebSocket (`uid` given) it is a typed error
/// message naming the candidate; over HTTP, the body of the `503`.
pub fn outcome_unknown(uid: Option<&str>) -> String {
    w::to_object(|o| {
        if uid.is_some() {
            o.str("type", "error");
        }
        o.str(
            "error",
            "the store did not answer in time: the vote may or may not count; \
             retry with the same vote_id to learn which",
        )
        .str("outcome", "unknown");
        if let Some(uid) = uid {
            o.str("uid", uid);
        }
    })
}

/// The current count of each candidate changed by `votes`, in the order of their last vote.
fn latest_counts(votes: &[Change]) -> Vec<(&str, u64)> {
    let mut latest: Vec<(&str, u64)> = Vec::new();
    for v in votes {
        if let Some((from, count)) = &v.moved {
            latest.retain(|(u, _)| u != from);
            latest.push((from, *count));
        }
        latest.retain(|(u, _)| *u != v.uid);
        latest.push((&v.uid, v.count));
    }
    latest
}

fn changes_array(a: &mut Array, changes: &[(&str, u64)]) {
    for (uid, count) in changes {
        a.object(|o| {
            o.str("uid", uid).u64("count", *count);
        });
    }
}

/// The presence members: `"total":N,"ws":a,"sse":b,"longpoll":c,"poll":d`.
pub fn presence_fields(o: &mut Object, c: &Counts) {
    o.u64("total", c.total());
    for k in Kind::ALL {
        o.u64(k.name(), c.get(k));
    }
}

/// The store's health on live streams (docs/PROTOCOL.md): `{"type":"degraded","degraded":true,
/// "message":"…"}` when the shared store (Redis) became unreachable — votes are refused, the
/// tally shown is the last known — and `{"type":"degraded","degraded":false}` when it is back.
pub fn degraded(degraded: bool) -> String {
    w::to_object(|o| {
        o.str("type", "degraded").bool("degraded", degraded);
        if degraded {
            o.str(
                "message",
                "the vote store is unreachable: votes are refused for now; the tally shown is \
                 the last known",
            );
        }
    })
}

/// The presence message: `{"type":"presence","total":N,…,"presence_version":P}`.
pub fn presence(c: &Counts, version: u64) -> String {
    w::to_object(|o| {
        o.str("type", "presence");
        presence_fields(o, c);
        o.u64("presence_version", version);
    })
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
pub fn resume(c: &Catchup, since: Option<u64>, epoch: &str, visible: bool) -> (String, u64) {
    let to = match c {
        Catchup::Delta { from, votes } => votes.last().map_or(*from, |v| v.version),
        Catchup::Snapshot(s) => s.version,
    };
    let msg = w::to_object(|o| {
        o.str("type", "resume").str("kind", resume_kind(c));
        match c {
            Catchup::Delta { from, votes } => {
                o.u64("from", *from).u64("to", to).str("epoch", epoch);
                match votes.last() {
                    Some(last) if !visible => {
                        o.u64("total", last.total).bool("hidden", true);
                    }
                    Some(_) => {
                        o.array("changes", |a| changes_array(a, &latest_counts(votes)));
                    }
                    None => {}
                }
            }
            Catchup::Snapshot(s) => {
                o.u64("from", since.unwrap_or(0)).u64("to", to);
                snapshot_fields(o, s, visible);
            }
        }
    });
    (msg, to)
}

/// The long-poll answer, compatible with the tutorial's client (`status`, `data.uid`,
/// `data.count`), plus what makes it lossless: `version`, `epoch`, `kind`, `from`, and
/// `changes` — the current count of every candidate that changed after `from` (every
/// candidate for a snapshot). `kind` is `live` when the client was current and waited,
/// `delta` when it was behind, `snapshot` when it gets the whole tally.
/// `since` is the client's version (a snapshot answers `from` it, as a resume does).
/// `more` adds members at the end (presence).
pub fn longpoll(
    c: &Catchup,
    since: u64,
    waited: bool,
    epoch: &str,
    visible: bool,
    more: impl FnOnce(&mut Object),
) -> String {
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
    let total = match c {
        Catchup::Delta { votes, .. } => votes.last().map(|v| v.total),
        Catchup::Snapshot(s) => Some(s.total()),
    };
    w::to_object(|o| {
        o.bool("status", true);
        match changes.last() {
            Some((uid, count)) if visible => o.object("data", |o| {
                o.str("uid", uid).u64("count", *count);
            }),
            _ => o.null("data"),
        };
        o.u64("version", version)
            .u64("from", from)
            .str("kind", kind)
            .str("epoch", epoch);
        if visible {
            o.array("changes", |a| changes_array(a, &changes));
        } else {
            o.array("changes", |_| {}).bool("hidden", true);
            if let Some(t) = total {
                o.u64("total", t);
            }
        }
        if let Catchup::Snapshot(s) = c {
            o.str("state", if s.closed { "closed" } else { "open" });
        }
        more(o);
    })
}

/// The long-poll timeout answer: `{"status":false,"data":null,"version":N,"epoch":"E"}`, then
/// the members `more` adds (presence).
pub fn longpoll_timeout(version: u64, epoch: &str, more: impl FnOnce(&mut Object)) -> String {
    w::to_object(|o| {
        o.bool("status", false)
            .null("data")
            .u64("version", version)
            .str("epoch", epoch);
        more(o);
    })
}

/// The presence members a polled answer ends with: `"presence":{…},"presence_version":P`.
pub fn presence_members(o: &mut Object, counts: &Counts, pv: u64) {
    o.object("presence", |o| presence_fields(o, counts))
        .u64("presence_version", pv);
}

/// `GET /votes`: the tally, then its presence.
pub fn tally(s: &Snapshot, counts: &Counts, pv: u64, visible: bool) -> String {
    w::to_object(|o| {
        snapshot_fields(o, s, visible);
        presence_members(o, counts, pv);
    })
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
