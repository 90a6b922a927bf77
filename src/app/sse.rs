//! `GET /events`: the tally as Server-Sent Events (WHATWG HTML §9.2). Each stream runs on the
//! thread that accepted it and waits on the vote table like a long-poll that never ends: a
//! slow reader only delays itself, and when it catches up it gets what it missed (the votes,
//! or one snapshot when far behind) — coalesced by construction, with no queue anywhere.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::admin::Caller;
use super::cursor::Cursor;
use super::polls::Poll;
use super::presence::Kind;
use super::votes::{Catchup, Wake};
use super::{json, App, MAX_LIVE_DELTA};

/// The reconnect delay we suggest, 1–2 s, different per connection so that a restart does not
/// bring every client back in the same instant.
fn retry_ms(peer: SocketAddr) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mix = u64::from(nanos) ^ u64::from(peer.port()).wrapping_mul(0x9E37_79B9);
    1000 + mix % 1000
}

fn event(out: &mut String, epoch: &str, version: Option<u64>, data: &str) {
    if let Some(v) = version {
        out.push_str(&format!("id: {epoch}-{v}\n"));
    }
    out.push_str("data: ");
    out.push_str(data);
    out.push_str("\n\n");
}

/// Runs one event stream until the client goes away or the server shuts down; returns the bytes it sent.
pub fn serve(
    app: &App,
    poll: &Poll,
    caller: &Caller,
    cursor: Cursor,
    stream: Arc<TcpStream>,
    peer: SocketAddr,
) -> u64 {
    let votes = &poll.votes;
    // Whether this viewer sees the counts, decided again at every wake-up: their own vote
    // (after_vote) or the poll's close (after_close) reveals them with a snapshot.
    let sees = || poll.visible_to(caller.voter.as_deref(), caller.admin);
    let mut visible = sees();
    let _viewer = votes.viewer(Kind::Sse, cursor.viewer.as_deref());
    let _ = stream.set_write_timeout(Some(app.config.limits.write_timeout));
    let mut epoch = votes.epoch();
    let mut degraded = false;

    let catchup = cursor.catch_up(votes);
    let (resume, mut at) = json::resume(&catchup, cursor.since, &epoch, visible);
    let metrics = &app.metrics;
    metrics.request(Kind::Sse);
    metrics.resume(Kind::Sse, json::resume_kind(&catchup));
    let (counts, mut pv) = votes.presence();
    let mut out = format!("retry: {}\n", retry_ms(peer));
    event(&mut out, &epoch, Some(at), &resume);
    event(&mut out, &epoch, None, &json::presence(&counts, pv));
    let (mut messages, mut updates) = (2, 1);
    // One writer for the stream: it keeps the send timeout set, not one setsockopt per event.
    let mut writer = crate::net::Writer::new();
    let mut sent = 0;
    // The newest vote in `out` (not in the resume): its delivery latency once written.
    let mut newest = None;
    loop {
        if writer
            .write_all(
                &stream,
                out.as_bytes(),
                std::time::Instant::now() + app.config.limits.write_timeout,
            )
            .is_err()
        {
            return sent;
        }
        sent += out.len() as u64;
        metrics.sent(Kind::Sse, messages, out.len() as u64, updates);
        if let Some(at) = newest.take().and_then(|v| votes.counted_at(v)) {
            metrics.delivered(Kind::Sse, at.elapsed());
        }
        (messages, updates) = (0, 0);
        out.clear();
        // Shutting down: the stream ends, and the browser reconnects (elsewhere) after the
        // `retry` it was given.
        if votes.ending() {
            return sent;
        }
        match votes.wait(
            at,
            Some(&epoch),
            Some(pv),
            MAX_LIVE_DELTA,
            app.config.limits.sse_heartbeat,
        ) {
            // A comment line: keeps proxies from closing an idle stream, and finds out
            // whether the client is still there.
            None => out.push_str(": hb\n\n"),
            Some(Wake::Votes(Catchup::Delta { votes: list, .. })) if visible || !sees() => {
                for c in &list {
                    let msg = if visible {
                        json::live_change(c)
                    } else {
                        json::live_hidden(c)
                    };
                    event(&mut out, &epoch, Some(c.version), &msg);
                    at = c.version;
                }
                (messages, updates) = (list.len() as u64, list.len() as u64);
                newest = list.last().map(|c| c.version);
            }
            // Revealed just now: the whole tally, with its counts.
            Some(Wake::Votes(Catchup::Delta { .. })) => {
                visible = true;
                let s = votes.snapshot();
                at = s.version;
                (messages, updates) = (1, 1);
                event(&mut out, &epoch, Some(at), &json::snapshot(&s, true, true));
            }
            Some(Wake::Votes(Catchup::Snapshot(s))) => {
                visible = sees();
                // Perhaps a new epoch (a shared store restarted empty): its ids from now on.
                epoch.clone_from(&s.epoch);
                at = s.version;
                (messages, updates) = (1, 1);
                metrics.coalesce();
                newest = Some(at);
                event(
                    &mut out,
                    &epoch,
                    Some(at),
                    &json::snapshot(&s, true, visible),
                );
            }
            Some(Wake::Presence(c, p)) => {
                pv = p;
                messages = 1;
                if votes.degraded() != degraded {
                    degraded = !degraded;
                    messages += 1;
                    event(&mut out, &epoch, None, &json::degraded(degraded));
                }
                event(&mut out, &epoch, None, &json::presence(&c, p));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_is_jittered_within_bounds() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        for _ in 0..100 {
            assert!((1000..2000).contains(&retry_ms(peer)));
        }
    }
}
