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

/// The transports a vote's delivery latency is measured on: polling's is the poller's own
/// interval, which the server does not choose.
const DELIVERY_TRANSPORTS: [Kind; 3] = [Kind::Ws, Kind::Sse, Kind::LongPoll];

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
        self.render_samples(out, name, "");
    }

    /// The samples only, each with `labels` (`name="value",` each, or empty) before `le`.
    fn render_samples(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (b, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let braced = labels.trim_end_matches(',');
        let braced = if braced.is_empty() {
            String::new()
        } else {
            format!("{{{braced}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braced} {sum}\n{name}_count{braced} {count}"
        );
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
    /// Long-poll answers by who wrote them: [the lot's writer, the request's own thread].
    longpoll_answers: [AtomicU64; 2],
    /// From a vote being counted to its delivery, by transport (see [`Metrics::delivered`]).
    delivery_latency: [Histogram; 4],
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
    /// The connection cap in force (`--max-connections`, as lowered at start to what the
    /// machine's limits allow).
    pub max_connections: usize,
    pub ws_subscribers: usize,
    /// SSE streams open on this instance (presence may be a total over instances).
    pub sse_streams: u64,
    pub presence: super::presence::Counts,
    pub version: u64,
    pub ws_buffered_bytes: usize,
    pub vote_ids: super::votes::IdStats,
    /// Polls running, the default one included, and `--max-polls`.
    pub polls: usize,
    pub max_polls: usize,
    /// Voters remembered over every poll, and `--max-voters` (per poll).
    pub voters: u64,
    pub max_voters: usize,
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

    /// A long-poll was answered, by the poll's long-poll writer or by its own thread.
    pub fn long_poll_answered(&self, by_writer: bool) {
        self.longpoll_answers[usize::from(!by_writer)].fetch_add(1, Relaxed);
    }

    /// A connection refused at the door (answered `503`).
    pub fn refused(&self, why: Refusal) {
        self.refused[why as usize].fetch_add(1, Relaxed);
        self.response(503, 0);
    }

    /// A vote counted `d` ago was delivered on `k`: for WebSocket once per vote, when the
    /// broadcast has reached every subscriber that could take it; for SSE and long-poll once
    /// per stream write or answer that carried votes, for the newest vote in it.
    pub fn delivered(&self, k: Kind, d: Duration) {
        self.delivery_latency[k as usize].observe(d);
    }

    pub fn fsync(&self, d: Duration) {
        self.fsyncs.fetch_add(1, Relaxed);
        self.fsync_latency.observe(d);
    }

    /// The exposition text.
    pub fn render(&self, g: &Gauges) -> String {
        let mut o = String::with_capacity(8192);
        let w = &mut o;
        let _ = writeln!(
            w,
            "# HELP livevote_build_info The running build (always 1).\n# TYPE livevote_build_info gauge\nlivevote_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        gauge(
            w,
            "livevote_http_connections",
            "Open TCP connections (all transports).",
            g.http_connections as u64,
        );
        gauge(
            w,
            "livevote_max_connections",
            "The cap on open TCP connections in force (--max-connections, lowered at start to what the open-files, memory-map and thread limits allow); beyond it 503.",
            g.max_connections as u64,
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
        let _ = writeln!(w, "# HELP livevote_longpoll_answers_total Long-poll answers by who wrote them: the poll's long-poll writer (once encoded, for every parked poller it answers) or the request's own thread (answered at once, timed out, or shutting down).\n# TYPE livevote_longpoll_answers_total counter");
        for (by, i) in [("writer", 0), ("poller", 1)] {
            let _ = writeln!(
                w,
                "livevote_longpoll_answers_total{{by=\"{by}\"}} {}",
                self.longpoll_answers[i].load(Relaxed)
            );
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
            "livevote_polls",
            "Polls running, the default one included.",
            g.polls as u64,
        );
        gauge(
            w,
            "livevote_max_polls",
            "The cap on polls (--max-polls); beyond it creating one is 409.",
            g.max_polls as u64,
        );
        gauge(
            w,
            "livevote_poll_voters",
            "Voters remembered by one-vote-per-voter and after_vote polls, over every poll.",
            g.voters,
        );
        gauge(
            w,
            "livevote_max_voters",
            "The cap on voters one poll remembers (--max-voters); a new voter beyond it is refused with 503.",
            g.max_voters as u64,
        );
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
        let name = "livevote_vote_delivery_seconds";
        let _ = writeln!(w, "# HELP {name} From a vote being counted to its delivery, by transport: websocket once per vote, when the broadcast has reached every subscriber that could take it; sse and longpoll once per stream write or answer that carried votes, for the newest vote in it.\n# TYPE {name} histogram");
        for k in DELIVERY_TRANSPORTS {
            self.delivery_latency[k as usize].render_samples(
                w,
                name,
                &format!("transport=\"{}\",", k.name()),
            );
        }
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
        let _ = writeln!(w, "# HELP livevote_ws_closes_total WebSocket connections closed, by close status code (0: without one).\n# TYPE livevote_ws_closes_total counter");
        for (c, n) in CLOSE_CODES.iter().zip(&self.ws_closes) {
            let _ = writeln!(
                w,
                "livevote_ws_closes_total{{status=\"{c}\"}} {}",
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

/// The `process_*` metrics of the Prometheus conventions, read from `/proc` (Linux; each
/// metric whose source cannot be read is left out). The parsers are pure, for tests.
pub mod process {
    use std::fmt::Write as _;

    /// Clock ticks per second in `/proc/PID/stat` (`USER_HZ`: 100 on every Linux architecture
    /// Rust supports; std has no `sysconf`).
    const TICKS_PER_SECOND: f64 = 100.0;

    /// What `/proc/self/stat` says, the fields the metrics need.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Stat {
        /// User and system CPU time, in clock ticks.
        pub utime: u64,
        pub stime: u64,
        pub threads: u64,
        /// Ticks after boot when the process started.
        pub start_ticks: u64,
        pub virtual_bytes: u64,
    }

    /// Parses `/proc/PID/stat` (proc(5)): `pid (comm) state ppid …`, where `comm` may hold
    /// spaces and parentheses, so fields are counted from the last `)`.
    pub fn parse_stat(text: &str) -> Option<Stat> {
        let after = &text[text.rfind(')')? + 1..];
        let f: Vec<&str> = after.split_whitespace().collect();
        // After `)`: f[0] is field 3 (state), so field N is f[N - 3].
        let n = |field: usize| -> Option<u64> { f.get(field - 3)?.parse().ok() };
        Some(Stat {
            utime: n(14)?,
            stime: n(15)?,
            threads: n(20)?,
            start_ticks: n(22)?,
            virtual_bytes: n(23)?,
        })
    }

    /// A `Key:   N kB` line of `/proc/PID/status`, in bytes.
    pub fn parse_status_kb(text: &str, key: &str) -> Option<u64> {
        let line = text.lines().find(|l| l.split(':').next() == Some(key))?;
        let mut words = line[key.len() + 1..].split_whitespace();
        let n: u64 = words.next()?.parse().ok()?;
        match words.next() {
            Some("kB") => Some(n * 1024),
            _ => None,
        }
    }

    /// The boot time (`btime`, seconds since the epoch) from `/proc/stat`.
    pub fn parse_btime(text: &str) -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()
    }

    /// The soft limit on open files from `/proc/PID/limits` (None when unlimited).
    pub fn parse_max_open_files(text: &str) -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with("Max open files"))?;
        line["Max open files".len()..]
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// The metrics, each None when its source was not readable.
    #[derive(Clone, Debug, Default, PartialEq)]
    pub struct Process {
        pub cpu_seconds: Option<f64>,
        pub resident_bytes: Option<u64>,
        pub virtual_bytes: Option<u64>,
        pub threads: Option<u64>,
        pub start_time_seconds: Option<f64>,
        pub open_fds: Option<u64>,
        pub max_fds: Option<u64>,
    }

    impl Process {
        /// From the texts of `/proc/self/stat`, `/proc/self/status`, `/proc/stat` and
        /// `/proc/self/limits`, and the number of entries in `/proc/self/fd`.
        pub fn from_texts(
            stat: Option<&str>,
            status: Option<&str>,
            system_stat: Option<&str>,
            limits: Option<&str>,
            open_fds: Option<u64>,
        ) -> Process {
            let st = stat.and_then(parse_stat);
            let btime = system_stat.and_then(parse_btime);
            Process {
                cpu_seconds: st.map(|s| (s.utime + s.stime) as f64 / TICKS_PER_SECOND),
                resident_bytes: status.and_then(|t| parse_status_kb(t, "VmRSS")),
                virtual_bytes: st.map(|s| s.virtual_bytes),
                threads: st.map(|s| s.threads),
                start_time_seconds: st
                    .zip(btime)
                    .map(|(s, b)| b as f64 + s.start_ticks as f64 / TICKS_PER_SECOND),
                open_fds,
                max_fds: limits.and_then(parse_max_open_files),
            }
        }

        /// This process, now.
        pub fn read() -> Process {
            let text = |p: &str| std::fs::read_to_string(p).ok();
            let fds = std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as u64);
            Process::from_texts(
                text("/proc/self/stat").as_deref(),
                text("/proc/self/status").as_deref(),
                text("/proc/stat").as_deref(),
                text("/proc/self/limits").as_deref(),
                fds,
            )
        }

        /// The exposition text of each metric there is.
        pub fn render(&self, w: &mut String) {
            let mut one = |name: &str, kind: &str, help: &str, v: Option<String>| {
                if let Some(v) = v {
                    let _ = writeln!(w, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
                }
            };
            let s = |v: Option<u64>| v.map(|v| v.to_string());
            let f = |v: Option<f64>| v.map(|v| v.to_string());
            one(
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
                f(self.cpu_seconds),
            );
            one(
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                s(self.resident_bytes),
            );
            one(
                "process_virtual_memory_bytes",
                "gauge",
                "Virtual memory size in bytes.",
                s(self.virtual_bytes),
            );
            one(
                "process_threads",
                "gauge",
                "OS threads in the process (one per open connection, plus a few).",
                s(self.threads),
            );
            one(
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                f(self.start_time_seconds),
            );
            one(
                "process_open_fds",
                "gauge",
                "Number of open file descriptors.",
                s(self.open_fds),
            );
            one(
                "process_max_fds",
                "gauge",
                "Maximum number of open file descriptors.",
                s(self.max_fds),
            );
        }
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
        m.delivered(Kind::Ws, Duration::from_millis(3));
        m.delivered(Kind::Sse, Duration::from_millis(30));
        m.resume(Kind::Ws, "delta");
        let g = Gauges {
            http_connections: 3,
            max_connections: 16_384,
            ws_subscribers: 1,
            sse_streams: 0,
            presence: Default::default(),
            version: 9,
            ws_buffered_bytes: 0,
            vote_ids: Default::default(),
            polls: 1,
            max_polls: 1000,
            voters: 0,
            max_voters: 100_000,
        };
        let text = m.render(&g);
        for line in [
            "livevote_votes_total{route=\"ticket\"} 1",
            "livevote_vote_replays_total 1",
            "livevote_build_info{version=\"0.1.0\"} 1",
            "livevote_max_connections 16384",
            "livevote_bytes_sent_total{transport=\"sse\"} 100",
            "livevote_updates_delivered_total{transport=\"sse\"} 2",
            "livevote_http_responses_total{status=\"404\"} 1",
            "livevote_http_responses_total{status=\"5xx_other\"} 1",
            "livevote_ws_closes_total{status=\"1009\"} 1",
            "livevote_vote_delivery_seconds_bucket{transport=\"ws\",le=\"0.002\"} 0",
            "livevote_vote_delivery_seconds_bucket{transport=\"ws\",le=\"0.005\"} 1",
            "livevote_vote_delivery_seconds_count{transport=\"ws\"} 1",
            "livevote_vote_delivery_seconds_bucket{transport=\"sse\",le=\"0.025\"} 0",
            "livevote_vote_delivery_seconds_bucket{transport=\"sse\",le=\"0.05\"} 1",
            "livevote_vote_delivery_seconds_sum{transport=\"sse\"} 0.03",
            "livevote_vote_delivery_seconds_count{transport=\"longpoll\"} 0",
            "livevote_journal_fsync_seconds_count 0",
            "livevote_resumes_total{transport=\"ws\",kind=\"delta\"} 1",
            "livevote_http_connections 3",
            "livevote_tally_version 9",
            "livevote_draining 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
        m.draining.store(true, Relaxed);
        assert!(m.render(&g).lines().any(|l| l == "livevote_draining 1"));
        // No lifetime ratios, no other status label.
        assert!(!text.contains("_per_update"), "{text}");
        assert!(!text.contains("code=\""), "{text}");
        assert!(!text.contains("transport=\"poll\",le="), "{text}");
        // Every sample line is `name{labels} value` or `name value`.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = l.rsplit_once(' ').unwrap();
            assert!(v.parse::<f64>().is_ok(), "{l}");
        }
    }

    /// A real `/proc/PID/stat` line, with a `comm` that holds a space and parentheses.
    const STAT: &str = "4242 (live vote (x)) S 1 4242 4242 0 -1 4194560 1203 0 0 0 \
        250 75 0 0 20 0 17 0 123456 1234567168 2500 18446744073709551615 1 1 0 0 0 0 0 4096 \
        17475 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0";

    const STATUS: &str = "Name:\tlivevote\nUmask:\t0022\nState:\tS (sleeping)\n\
        VmPeak:\t 1205640 kB\nVmSize:\t 1205636 kB\nVmRSS:\t   10000 kB\nThreads:\t17\n";

    const LIMITS: &str =
        "Limit                     Soft Limit           Hard Limit           Units     \n\
        Max cpu time              unlimited            unlimited            seconds   \n\
        Max open files            1024                 524288               files     \n";

    #[test]
    fn process_metrics_from_proc_texts() {
        use super::process::*;
        assert_eq!(
            parse_stat(STAT),
            Some(Stat {
                utime: 250,
                stime: 75,
                threads: 17,
                start_ticks: 123_456,
                virtual_bytes: 1_234_567_168,
            })
        );
        assert_eq!(parse_stat("4242 (x) S 1 2"), None);
        assert_eq!(parse_status_kb(STATUS, "VmRSS"), Some(10_240_000));
        assert_eq!(parse_status_kb(STATUS, "VmSwap"), None);
        assert_eq!(
            parse_btime("cpu  1 2 3\nintr 5\nbtime 1764633600\nprocesses 9\n"),
            Some(1_764_633_600)
        );
        assert_eq!(parse_max_open_files(LIMITS), Some(1024));
        let unlimited = LIMITS.replace("1024                 524288", "unlimited unlimited");
        assert_eq!(parse_max_open_files(&unlimited), None);
        let p = Process::from_texts(
            Some(STAT),
            Some(STATUS),
            Some("btime 1764633600\n"),
            Some(LIMITS),
            Some(9),
        );
        let mut text = String::new();
        p.render(&mut text);
        for line in [
            "process_cpu_seconds_total 3.25",
            "process_resident_memory_bytes 10240000",
            "process_virtual_memory_bytes 1234567168",
            "process_threads 17",
            "process_start_time_seconds 1764634834.56",
            "process_open_fds 9",
            "process_max_fds 1024",
            "# TYPE process_cpu_seconds_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
        // What cannot be read is left out, not reported as 0.
        let mut none = String::new();
        Process::from_texts(None, None, None, None, None).render(&mut none);
        assert_eq!(none, "");
        // This process, from the real /proc.
        let me = Process::read();
        assert!(me.threads.is_some_and(|n| n >= 1), "{me:?}");
        assert!(me.resident_bytes.is_some_and(|n| n > 0), "{me:?}");
        assert!(me.open_fds.is_some_and(|n| n >= 3), "{me:?}");
    }
}
