//! Counters for `GET /metrics`, in the Prometheus text exposition format (version 0.0.4).
//! Plain atomics, updated where things happen, read only when scraped: no locks on hot paths.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use super::presence::Kind;
use crate::admission::Refusal;

/// The transports, in the order of [`Kind::ALL`].
const TRANSPORTS: [Kind; 4] = Kind::ALL;

/// Where votes come in.
#[derive(Clone, Copy, Debug)]
pub enum Route {
    Vote,
    Ticket,
    WebSocket,
}

const ROUTES: [&str; 3] = ["vote", "ticket", "websocket"];

/// Statuses counted one by one; others are counted by class.
const STATUSES: [u16; 16] = [
    200, 303, 304, 400, 403, 404, 405, 408, 413, 414, 415, 417, 426, 431, 501, 503,
];

/// WebSocket close codes counted one by one (index 0: any other).
const CLOSE_CODES: [u16; 9] = [0, 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011];

/// Resume outcomes: `live`, `delta`, `snapshot`.
const RESUMES: [&str; 3] = ["live", "delta", "snapshot"];

/// Latency buckets, seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A cumulative histogram.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; 12],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| s <= b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros().min(u64::MAX as u128) as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Every counter the server keeps.
#[derive(Default)]
pub struct Metrics {
    votes: [AtomicU64; 3],
    vote_replays: AtomicU64,
    broadcasts: AtomicU64,
    messages: [AtomicU64; 4],
    bytes: [AtomicU64; 4],
    requests: [AtomicU64; 4],
    updates: [AtomicU64; 4],
    coalesced: AtomicU64,
    resumes: [[AtomicU64; 3]; 4],
    statuses: [AtomicU64; 16],
    status_classes: [AtomicU64; 6],
    http_bytes: AtomicU64,
    ws_closes: [AtomicU64; 9],
    chat_open: AtomicU64,
    longpoll_waiting: AtomicU64,
    pub delivery_latency: Histogram,
    pub fsync_latency: Histogram,
    fsyncs: AtomicU64,
    refused: [AtomicU64; 3],
    /// Lines for stderr dropped because the log's queue was full (shared with the log).
    pub access_log_dropped: Arc<AtomicU64>,
    pub redis: RedisMetrics,
    /// Shutting down (SIGTERM or SIGINT received): `/readyz` answers `503`. The one place
    /// this is kept; the app and the server read it here.
    pub draining: AtomicBool,
}

/// The shared store's connection (`--redis`); rendered only when one is configured.
#[derive(Default)]
pub struct RedisMetrics {
    pub enabled: std::sync::atomic::AtomicBool,
    /// 1 while the follower's last call reached Redis.
    pub up: AtomicU64,
    /// Times the follower connected again after losing Redis.
    pub reconnects: AtomicU64,
    /// Times the follower rebuilt its copy from a snapshot of Redis (a gap, a new epoch).
    pub resyncs: AtomicU64,
    /// Batches of votes sent to Redis, and how long each took.
    pub commits: AtomicU64,
    pub commit_latency: Histogram,
}

impl RedisMetrics {
    fn render(&self, w: &mut String) {
        if !self.enabled.load(Relaxed) {
            return;
        }
        gauge(
            w,
            "livevote_redis_up",
            "1 while this instance reaches Redis (--redis), else 0.",
            self.up.load(Relaxed),
        );
        counter(
            w,
            "livevote_redis_reconnects_total",
            "Times this instance connected to Redis again after losing it.",
            &self.reconnects,
        );
        counter(
            w,
            "livevote_redis_resyncs_total",
            "Times this instance rebuilt its copy of the tally from a Redis snapshot.",
            &self.resyncs,
        );
        counter(
            w,
            "livevote_redis_commits_total",
            "Batches of votes applied by Redis (group commit).",
            &self.commits,
        );
        self.commit_latency.render(
            w,
            "livevote_redis_commit_seconds",
            "Latency of one batch of votes through Redis's vote script.",
        );
    }
}

/// Live gauges read from elsewhere when scraped.
pub struct Gauges {
    pub http_connections: usize,
    pub ws_subscribers: usize,
    /// SSE streams open on this instance (presence may be a total over instances).
    pub sse_streams: u64,
    pub presence: super::presence::Counts,
    pub version: u64,
    pub ws_buffered_bytes: usize,
    pub vote_ids: super::votes::IdStats,
}

impl Metrics {
    pub fn vote(&self, r: Route, replayed: bool) {
        if replayed {
            self.vote_replays.fetch_add(1, Relaxed);
        } else {
            self.votes[r as usize].fetch_add(1, Relaxed);
        }
    }

    pub fn broadcast(&self) {
        self.broadcasts.fetch_add(1, Relaxed);
    }

    /// `messages` messages of `bytes` in all sent on `k`, carrying `updates` tally updates.
    pub fn sent(&self, k: Kind, messages: u64, bytes: u64, updates: u64) {
        let i = k as usize;
        self.messages[i].fetch_add(messages, Relaxed);
        self.bytes[i].fetch_add(bytes, Relaxed);
        self.updates[i].fetch_add(updates, Relaxed);
    }

    /// A request (or, for WebSocket and SSE, a connection) on `k`.
    pub fn request(&self, k: Kind) {
        self.requests[k as usize].fetch_add(1, Relaxed);
    }

    /// A slow subscriber was sent the latest state instead of what it missed.
    pub fn coalesce(&self) {
        self.coalesced.fetch_add(1, Relaxed);
    }

    pub fn resume(&self, k: Kind, kind: &str) {
        if let Some(j) = RESUMES.iter().position(|&r| r == kind) {
            self.resumes[k as usize][j].fetch_add(1, Relaxed);
        }
    }

    pub fn response(&self, status: u16, bytes: usize) {
        match STATUSES.iter().position(|&s| s == status) {
            Some(i) => self.statuses[i].fetch_add(1, Relaxed),
            None => self.status_classes[(status / 100).min(5) as usize].fetch_add(1, Relaxed),
        };
        self.http_bytes.fetch_add(bytes as u64, Relaxed);
    }

    pub fn ws_closed(&self, code: u16) {
        let i = CLOSE_CODES.iter().position(|&c| c == code).unwrap_or(0);
        self.ws_closes[i].fetch_add(1, Relaxed);
    }

    pub fn chat(&self, open: bool) {
        if open {
            self.chat_open.fetch_add(1, Relaxed);
        } else {
            self.chat_open.fetch_sub(1, Relaxed);
        }
    }

    pub fn long_poll(&self, waiting: bool) {
        if waiting {
            self.longpoll_waiting.fetch_add(1, Relaxed);
        } else {
            self.longpoll_waiting.fetch_sub(1, Relaxed);
        }
    }

    /// A connection refused at the door (answered `503`).
    pub fn refused(&self, why: Refusal) {
        self.refused[why as usize].fetch_add(1, Relaxed);
        self.response(503, 0);
    }

    pub fn fsync(&self, d: Duration) {
        self.fsyncs.fetch_add(1, Relaxed);
        self.fsync_latency.observe(d);
    }

    /// The exposition text.
    pub fn render(&self, g: &Gauges) -> String {
        let mut o = String::with_capacity(8192);
        let w = &mut o;
        gauge(
            w,
            "livevote_http_connections",
            "Open TCP connections (all transports).",
            g.http_connections as u64,
        );
        let _ = writeln!(w, "# HELP livevote_open_connections Open live connections by transport (long-poll: requests waiting).\n# TYPE livevote_open_connections gauge");
        for (t, n) in [
            ("ws", g.ws_subscribers as u64),
            ("chat", self.chat_open.load(Relaxed)),
            ("sse", g.sse_streams),
            ("longpoll", self.longpoll_waiting.load(Relaxed)),
        ] {
            let _ = writeln!(w, "livevote_open_connections{{transport=\"{t}\"}} {n}");
        }
        let _ = writeln!(w, "# HELP livevote_viewers Viewers by transport, as published to pages.\n# TYPE livevote_viewers gauge");
        for k in TRANSPORTS {
            let _ = writeln!(
                w,
                "livevote_viewers{{transport=\"{}\"}} {}",
                k.name(),
                g.presence.get(k)
            );
        }
        gauge(
            w,
            "livevote_tally_version",
            "The tally's version (votes counted this epoch).",
            g.version,
        );
        gauge(
            w,
            "livevote_ws_buffered_bytes",
            "Bytes WebSocket connections hold for messages being received (buffers, decoded copies, messages being handled; by allocated size, beyond 4 KiB each).",
            g.ws_buffered_bytes as u64,
        );
        let ids = &g.vote_ids;
        gauge(
            w,
            "livevote_vote_ids_remembered",
            "Vote ids remembered for exactly-once retries.",
            ids.remembered as u64,
        );
        gauge(
            w,
            "livevote_vote_ids_bytes",
            "Memory the remembered vote ids hold (--vote-id-memory caps it).",
            ids.bytes as u64,
        );
        let _ = writeln!(w, "# HELP livevote_vote_ids_expired_total Vote ids forgotten after --vote-id-window.\n# TYPE livevote_vote_ids_expired_total counter\nlivevote_vote_ids_expired_total {}", ids.expired);
        let _ = writeln!(w, "# HELP livevote_vote_ids_refused_total New vote ids refused (503) because --vote-id-memory was full of ids inside the window.\n# TYPE livevote_vote_ids_refused_total counter\nlivevote_vote_ids_refused_total {}", ids.refused);
        let _ = writeln!(w, "# HELP livevote_votes_total Votes counted, by route.\n# TYPE livevote_votes_total counter");
        for (r, n) in ROUTES.iter().zip(&self.votes) {
            let _ = writeln!(
                w,
                "livevote_votes_total{{route=\"{r}\"}} {}",
                n.load(Relaxed)
            );
        }
        counter(
            w,
            "livevote_vote_replays_total",
            "Retries of an already counted vote id, answered again without counting.",
            &self.vote_replays,
        );
        counter(
            w,
            "livevote_broadcasts_total",
            "WebSocket broadcast rounds.",
            &self.broadcasts,
        );
        per_transport(w, "livevote_messages_sent_total", "Messages (WebSocket frames, SSE events, HTTP answers) sent with tally or presence updates.", &self.messages);
        per_transport(
            w,
            "livevote_bytes_sent_total",
            "Bytes sent for live updates.",
            &self.bytes,
        );
        per_transport(
            w,
            "livevote_requests_total",
            "Requests (WebSocket and SSE: connections).",
            &self.requests,
        );
        per_transport(
            w,
            "livevote_updates_delivered_total",
            "Tally updates delivered (one per vote per client; a snapshot counts once).",
            &self.updates,
        );
        let _ = writeln!(w, "# HELP livevote_requests_per_update Requests per delivered update.\n# TYPE livevote_requests_per_update gauge");
        for (i, k) in TRANSPORTS.iter().enumerate() {
            let _ = writeln!(
                w,
                "livevote_requests_per_update{{transport=\"{}\"}} {}",
                k.name(),
                ratio(&self.requests[i], &self.updates[i])
            );
        }
        let _ = writeln!(w, "# HELP livevote_bytes_per_update Bytes sent per delivered update.\n# TYPE livevote_bytes_per_update gauge");
        for (i, k) in TRANSPORTS.iter().enumerate() {
            let _ = writeln!(
                w,
                "livevote_bytes_per_update{{transport=\"{}\"}} {}",
                k.name(),
                ratio(&self.bytes[i], &self.updates[i])
            );
        }
        self.delivery_latency.render(
            w,
            "livevote_vote_delivery_seconds",
            "From a vote to its delivery to the last WebSocket subscriber.",
        );
        counter(
            w,
            "livevote_coalesced_updates_total",
            "Slow subscribers sent the latest tally instead of what they missed.",
            &self.coalesced,
        );
        let _ = writeln!(w, "# HELP livevote_resumes_total First message after a (re)connect, by transport and outcome.\n# TYPE livevote_resumes_total counter");
        for (i, k) in TRANSPORTS.iter().enumerate() {
            for (j, r) in RESUMES.iter().enumerate() {
                let _ = writeln!(
                    w,
                    "livevote_resumes_total{{transport=\"{}\",kind=\"{r}\"}} {}",
                    k.name(),
                    self.resumes[i][j].load(Relaxed)
                );
            }
        }
        let _ = writeln!(w, "# HELP livevote_http_responses_total HTTP responses by status (4xx/5xx: rejected requests by reason).\n# TYPE livevote_http_responses_total counter");
        for (s, n) in STATUSES.iter().zip(&self.statuses) {
            let _ = writeln!(
                w,
                "livevote_http_responses_total{{status=\"{s}\"}} {}",
                n.load(Relaxed)
            );
        }
        for (c, n) in self.status_classes.iter().enumerate().skip(1) {
            let _ = writeln!(
                w,
                "livevote_http_responses_total{{status=\"{c}xx_other\"}} {}",
                n.load(Relaxed)
            );
        }
        counter(
            w,
            "livevote_http_bytes_total",
            "HTTP response body bytes.",
            &self.http_bytes,
        );
        let _ = writeln!(w, "# HELP livevote_connections_refused_total Connections answered 503 at the door, by reason.\n# TYPE livevote_connections_refused_total counter");
        for r in [
            Refusal::TooMany,
            Refusal::TooManyFromAddress,
            Refusal::NoThread,
        ] {
            let _ = writeln!(
                w,
                "livevote_connections_refused_total{{reason=\"{}\"}} {}",
                r.name(),
                self.refused[r as usize].load(Relaxed)
            );
        }
        counter(
            w,
            "livevote_access_log_dropped_lines_total",
            "Lines for stderr (access log, accept errors) dropped because stderr did not keep up.",
            &self.access_log_dropped,
        );
        let _ = writeln!(w, "# HELP livevote_ws_closes_total WebSocket connections closed, by close code (0: without one).\n# TYPE livevote_ws_closes_total counter");
        for (c, n) in CLOSE_CODES.iter().zip(&self.ws_closes) {
            let _ = writeln!(
                w,
                "livevote_ws_closes_total{{code=\"{c}\"}} {}",
                n.load(Relaxed)
            );
        }
        counter(
            w,
            "livevote_journal_fsyncs_total",
            "Journal fsyncs (each makes a group of votes durable).",
            &self.fsyncs,
        );
        self.fsync_latency.render(
            w,
            "livevote_journal_fsync_seconds",
            "Journal write + fsync latency.",
        );
        gauge(
            w,
            "livevote_draining",
            "1 while shutting down (after SIGTERM or SIGINT; /readyz answers 503), else 0.",
            u64::from(self.draining.load(Relaxed)),
        );
        self.redis.render(w);
        o
    }
}

fn ratio(num: &AtomicU64, den: &AtomicU64) -> f64 {
    match den.load(Relaxed) {
        0 => 0.0,
        d => num.load(Relaxed) as f64 / d as f64,
    }
}

fn gauge(w: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(w, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
}

fn counter(w: &mut String, name: &str, help: &str, v: &AtomicU64) {
    let _ = writeln!(
        w,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
        v.load(Relaxed)
    );
}

fn per_transport(w: &mut String, name: &str, help: &str, v: &[AtomicU64; 4]) {
    let _ = writeln!(w, "# HELP {name} {help}\n# TYPE {name} counter");
    for (k, n) in TRANSPORTS.iter().zip(v) {
        let _ = writeln!(
            w,
            "{name}{{transport=\"{}\"}} {}",
            k.name(),
            n.load(Relaxed)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.vote(Route::Ticket, false);
        m.vote(Route::Ticket, true);
        m.sent(Kind::Sse, 2, 100, 2);
        m.request(Kind::Sse);
        m.response(404, 10);
        m.response(599, 0);
        m.ws_closed(1009);
        m.delivery_latency.observe(Duration::from_millis(3));
        m.resume(Kind::Ws, "delta");
        let g = Gauges {
            http_connections: 3,
            ws_subscribers: 1,
            sse_streams: 0,
            presence: Default::default(),
            version: 9,
            ws_buffered_bytes: 0,
            vote_ids: Default::default(),
        };
        let text = m.render(&g);
        for line in [
            "livevote_votes_total{route=\"ticket\"} 1",
            "livevote_vote_replays_total 1",
            "livevote_bytes_per_update{transport=\"sse\"} 50",
            "livevote_requests_per_update{transport=\"sse\"} 0.5",
            "livevote_http_responses_total{status=\"404\"} 1",
            "livevote_http_responses_total{status=\"5xx_other\"} 1",
            "livevote_ws_closes_total{code=\"1009\"} 1",
            "livevote_vote_delivery_seconds_bucket{le=\"0.002\"} 0",
            "livevote_vote_delivery_seconds_bucket{le=\"0.005\"} 1",
            "livevote_vote_delivery_seconds_count 1",
            "livevote_resumes_total{transport=\"ws\",kind=\"delta\"} 1",
            "livevote_http_connections 3",
            "livevote_tally_version 9",
            "livevote_draining 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
        m.draining.store(true, Relaxed);
        assert!(m.render(&g).lines().any(|l| l == "livevote_draining 1"));
        // Every sample line is `name{labels} value` or `name value`.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = l.rsplit_once(' ').unwrap();
            assert!(v.parse::<f64>().is_ok(), "{l}");
        }
    }
}
