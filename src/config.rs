//! Configuration: every limit and timeout the server enforces, with its default, in one place,
//! and the command-line parser that fills it. No I/O beyond reading arguments.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::ids;

/// Sizes, counts and timeouts. Each field's doc states its default and the flag that sets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line (method, target, version) in bytes; longer → `414`.
    /// Default 8 KiB. `--max-request-line`.
    pub max_request_line: usize,
    /// Most bytes in the whole request head (request line + headers); more → `431`.
    /// Default 16 KiB. `--max-header-bytes`.
    pub max_header_bytes: usize,
    /// Most header fields in one request; more → `431`. Default 100. `--max-headers`.
    pub max_headers: usize,
    /// Largest request body (decoded, for chunked); larger → `413`. Default 64 KiB.
    /// `--max-body`.
    pub max_body: usize,
    /// Deadline for a complete request head once its first byte has arrived (slowloris);
    /// exceeded → `408` and close. Default 10 s. `--head-timeout`.
    pub head_timeout: Duration,
    /// How long an idle keep-alive connection may wait for its next request before it is
    /// closed quietly. Default 30 s. `--idle-timeout`.
    pub idle_timeout: Duration,
    /// Deadline for a request body once the head is read. Default 30 s. `--body-timeout`.
    pub body_timeout: Duration,
    /// An HTTP response (or a batch of Server-Sent Events) not written in full within this
    /// long ends the connection, and so does a WebSocket write that makes no progress or a
    /// subscriber that stays behind the broadcast this long, so a peer that stops reading (or
    /// reads a byte now and then) cannot hold a thread. Default 10 s. `--write-timeout`.
    pub write_timeout: Duration,
    /// Most open connections (HTTP and WebSocket together); beyond it the server answers `503`
    /// with `Retry-After` and closes. Default 16,384, lowered at start to what the machine's
    /// limits allow (see `server::Server::bind`). `--max-connections`.
    pub max_connections: usize,
    /// Most open connections from one client address; beyond it `503` with `Retry-After`, so
    /// one host cannot take every slot. 0 turns the per-address cap off (the benchmarks, which
    /// open thousands of connections from 127.0.0.1). Default 256. `--max-connections-per-ip`.
    pub max_connections_per_ip: usize,
    /// Most polling and long-polling viewer ids (`viewer=`) counted for one client address
    /// (IPv6: one /64) at a time; further new ids from it are not counted, so made-up ids
    /// cannot fill the presence table or push out other addresses' viewers. 0: no per-address
    /// cap (the global cap of `presence::MAX_VIEWERS` stays). Default 64.
    /// `--max-viewers-per-ip`.
    pub max_viewers_per_ip: usize,
    /// Largest WebSocket message on the vote socket (`/get_new_vote`); larger → close 1009.
    /// Default 4 KiB. `--ws-max-vote-message`.
    pub ws_max_vote_message: usize,
    /// Largest WebSocket message on `/chatsocket`; larger → close 1009. Default 16 MiB (the
    /// Autobahn suite sends that much). `--ws-max-chat-message`.
    pub ws_max_chat_message: usize,
    /// Total bytes all WebSocket connections together may hold for messages being received —
    /// receive buffers, decoded copies and messages being handled, by allocated size (a
    /// message of N bytes needs about 2N), beyond 4 KiB per connection (`ws::inbox`); a frame
    /// that would exceed it closes its connection with 1009 (try again later), so many large
    /// messages at once cannot exhaust memory. Default 256 MiB. `--ws-max-buffered`.
    pub ws_max_buffered: usize,
    /// The server pings a WebSocket peer that has sent nothing for this long. Default 25 s.
    /// `--ws-ping-interval`.
    pub ws_ping_interval: Duration,
    /// A peer that sends nothing (not even the pong) for this long after a ping is closed with
    /// 1001... Default 25 s. `--ws-pong-timeout`.
    pub ws_pong_timeout: Duration,
    /// An idle Server-Sent Events stream gets a comment line this often, so proxies keep it
    /// open and a vanished client is noticed. Default 15 s. `--sse-heartbeat`.
    pub sse_heartbeat: Duration,
    /// Stack size of each connection thread. Small on purpose: thousands of threads are normal
    /// here, and nothing on our stacks is large. Default 128 KiB. `--thread-stack`.
    pub thread_stack: usize,
    /// How long a vote id is remembered: a retry with it within this time gets the first
    /// answer and counts nothing. Survives a restart. Default 600 s. `--vote-id-window`.
    pub vote_id_window: Duration,
    /// Memory the remembered vote ids may hold (counted as held: ids, tables' capacity); when
    /// one more would pass it while every id is younger than the window, new vote ids get
    /// `503` with `Retry-After` (votes without an id still count). Default 64 MiB, at most
    /// [`MAX_VOTE_ID_MEMORY`]. `--vote-id-memory`.
    pub vote_id_memory: usize,
    /// How long a vote waits for its store (the journal's fsync); then `503` with
    /// `"outcome":"unknown"`, and a retry with the vote id learns the real outcome.
    /// Default 5 s. `--vote-timeout`.
    pub vote_timeout: Duration,
}

/// Largest `--vote-id-memory`: the remembered ids go into each snapshot, and a snapshot is read
/// whole at start (and refused beyond 256 MiB); on disk an id takes at most 2/3 of its memory.
pub const MAX_VOTE_ID_MEMORY: usize = 256 << 20;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8 * 1024,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_body: 64 * 1024,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            max_connections: 16 * 1024,
            max_connections_per_ip: 256,
            max_viewers_per_ip: 64,
            ws_max_vote_message: 4 * 1024,
            ws_max_chat_message: 16 * 1024 * 1024,
            ws_max_buffered: 256 * 1024 * 1024,
            ws_ping_interval: Duration::from_secs(25),
            ws_pong_timeout: Duration::from_secs(25),
            sse_heartbeat: Duration::from_secs(15),
            thread_stack: 128 * 1024,
            vote_id_window: Duration::from_secs(600),
            vote_id_memory: 64 << 20,
            vote_timeout: Duration::from_secs(5),
        }
    }
}

/// Everything `server::run` needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Listen address. Default `127.0.0.1:8080`. `--addr`.
    pub addr: SocketAddr,
    /// Candidates as (id, name), in display order. Default the tutorial's `1=野味`, `2=海龙`.
    /// `--candidate ID=NAME`, repeatable.
    pub candidates: Vec<(String, String)>,
    /// Directory of the pages, scripts and styles. Default `www`. `--www`.
    pub www: PathBuf,
    /// How long `/get_new_vote` waits for a vote before answering `status:false`. Default 10 s.
    /// `--longpoll-timeout`.
    pub longpoll_timeout: Duration,
    /// Origins allowed besides the server's own (`http://host:port` as sent in `Origin`) for
    /// WebSocket upgrades and votes. `--allow-origin URL`, repeatable.
    pub allow_origins: Vec<String>,
    /// Names (`uri-host[:port]`) this server answers to besides `localhost`, `127.0.0.1`,
    /// `[::1]` and the bind address; any other `Host` gets `421`. An entry without a port
    /// matches any port; `*` accepts every well-formed Host (behind a proxy that checks it).
    /// Default none. `--host NAME`, repeatable.
    pub hosts: Vec<String>,
    /// Write one access-log line per request on stderr. Default on; `--quiet` turns it off.
    pub access_log: bool,
    /// How the access log and the levelled start, stop and error messages are written:
    /// `combined` (the Combined Log Format, then the duration in seconds), `common` (the
    /// Common Log Format) or `json` (one object per line). Default `combined`. `--log-format`.
    pub log_format: crate::log::LogFormat,
    /// The vote journal: acknowledged votes are on disk here before they are answered. `None`
    /// keeps votes in memory only (lost at exit). The command line's default is
    /// [`DEFAULT_DATA`] (`--data PATH`; `--memory` for none); a `Config` built in code defaults
    /// to memory, so tests and embedders opt in.
    pub data: Option<PathBuf>,
    /// The tally in Redis, shared with every instance given the same URL and prefix; each
    /// instance keeps a follower copy. Excludes `data` (`--redis` with `--data` or `--memory`
    /// is a usage error). Default none. `--redis redis://[USER:PASSWORD@]HOST[:PORT][/DB]`.
    pub redis: Option<crate::redis::RedisUrl>,
    /// What every Redis key starts with (several deployments can share one Redis). Default
    /// [`DEFAULT_REDIS_PREFIX`]. `--redis-prefix`.
    pub redis_prefix: String,
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            candidates: vec![
                ("1".to_string(), "野味".to_string()),
                ("2".to_string(), "海龙".to_string()),
            ],
            www: PathBuf::from("www"),
            longpoll_timeout: Duration::from_secs(10),
            allow_origins: Vec::new(),
            hosts: Vec::new(),
            access_log: true,
            log_format: crate::log::LogFormat::Combined,
            data: None,
            redis: None,
            redis_prefix: DEFAULT_REDIS_PREFIX.to_string(),
            limits: Limits::default(),
        }
    }
}

/// What the command line asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Run(Box<Config>),
    Help,
}

/// A bad command line; `main` prints it with the usage and exits with code 2.
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// What Redis keys start with unless `--redis-prefix` says otherwise.
pub const DEFAULT_REDIS_PREFIX: &str = "livevote";

/// Where the command line keeps the journal unless told otherwise.
pub const DEFAULT_DATA: &str = "data/votes.journal";

pub const USAGE: &str = "\
livevote — a live-voting server: polling, long-polling and WebSocket side by side

USAGE: livevote [OPTIONS]

OPTIONS:
  --addr HOST:PORT            listen address [default: 127.0.0.1:8080]
  --candidate ID=NAME         a candidate (repeatable) [default: 1=野味 2=海龙]
  --www DIR                   pages, scripts and styles [default: www]
  --longpoll-timeout SECS     long-poll wait before status:false [default: 10]
  --allow-origin URL          another Origin allowed to vote and open WebSockets (repeatable)
  --host NAME[:PORT]          another name to answer to (repeatable; '*': any) [default:
                              localhost, 127.0.0.1, [::1], the --addr]; others get 421
  --data PATH                 vote journal (and PATH.snapshot) [default: data/votes.journal]
  --memory                    keep votes in memory only (lost at exit)
  --redis URL                 the tally in Redis, shared by every instance given it:
                              redis://[USER:PASSWORD@]HOST[:PORT][/DB] (not with --data/--memory)
  --redis-prefix PREFIX       [default: livevote]  what every Redis key starts with
  --quiet                     no access log on stderr
  --log-format FORMAT         [default: combined]  access log and messages: combined, common
                              (the NCSA formats, UTC) or json (one object per line)
  --max-request-line BYTES    [default: 8192]      longer → 414
  --max-header-bytes BYTES    [default: 16384]     larger head → 431
  --max-headers N             [default: 100]       more → 431
  --max-body BYTES            [default: 65536]     larger → 413
  --head-timeout SECS         [default: 10]        request head deadline → 408
  --idle-timeout SECS         [default: 30]        idle keep-alive connection closed
  --body-timeout SECS         [default: 30]        request body deadline → 408
  --write-timeout SECS        [default: 10]        stalled writer disconnected
  --max-connections N         [default: 16384]     beyond → 503 + Retry-After
  --max-connections-per-ip N  [default: 256]       beyond → 503 (0: no cap)
  --max-viewers-per-ip N      [default: 64]        polling viewer ids counted per address
  --ws-max-vote-message BYTES [default: 4096]      larger → close 1009
  --ws-max-chat-message BYTES [default: 16777216]  larger → close 1009
  --ws-max-buffered BYTES     [default: 268435456] all connections' messages being received
  --ws-ping-interval SECS     [default: 25]        ping a silent WebSocket peer
  --ws-pong-timeout SECS      [default: 25]        close a peer silent after the ping
  --sse-heartbeat SECS        [default: 15]        comment line on an idle SSE stream
  --thread-stack BYTES        [default: 131072]    stack of each connection thread
  --vote-id-window SECS       [default: 600]       a retry with a vote id within it counts once
  --vote-id-memory BYTES      [default: 67108864]  remembered vote ids; full → 503 for new ids
  --vote-timeout SECS         [default: 5]         wait for the store → 503 outcome unknown
  -h, --help                  this text
";

/// Parses the arguments (without the program name).
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Command, UsageError> {
    let mut cfg = Config {
        data: Some(PathBuf::from(DEFAULT_DATA)),
        ..Config::default()
    };
    let mut candidates: Vec<(String, String)> = Vec::new();
    // The store flag given, if any: `--redis` excludes the other two.
    let mut store_flag: Option<&str> = None;
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(Command::Help);
        }
        if flag == "--quiet" {
            cfg.access_log = false;
            continue;
        }
        if flag == "--memory" {
            cfg.data = None;
            store_flag = store_flag.or(Some("--memory"));
            continue;
        }
        // Accept both `--flag value` and `--flag=value`.
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), v.to_string()),
            _ => {
                if !flag.starts_with("--") {
                    return Err(UsageError(format!("unexpected argument '{flag}'")));
                }
                let v = args
                    .next()
                    .ok_or_else(|| UsageError(format!("{flag} needs a value")))?;
                (flag.clone(), v)
            }
        };
        let l = &mut cfg.limits;
        match name.as_str() {
            "--addr" => {
                cfg.addr = value
                    .parse()
                    .map_err(|_| UsageError(format!("--addr: '{value}' is not HOST:PORT")))?
            }
            "--candidate" => {
                let (id, nm) = value
                    .split_once('=')
                    .ok_or_else(|| UsageError(format!("--candidate: '{value}' is not ID=NAME")))?;
                candidates.push((id.to_string(), nm.to_string()));
            }
            "--www" => cfg.www = PathBuf::from(value),
            "--log-format" => {
                cfg.log_format = crate::log::LogFormat::parse(&value).ok_or_else(|| {
                    UsageError(format!(
                        "--log-format: '{value}' is not {}",
                        crate::log::LogFormat::NAMES
                    ))
                })?
            }
            "--data" => {
                cfg.data = Some(PathBuf::from(value));
                store_flag = store_flag.or(Some("--data"));
            }
            "--redis" => {
                let url = crate::redis::RedisUrl::parse(&value)
                    .map_err(|e| UsageError(format!("--redis: {e}")))?;
                cfg.redis = Some(url);
            }
            "--redis-prefix" => {
                if value.is_empty()
                    || value.contains(['{', '}'])
                    || value.contains(char::is_whitespace)
                {
                    return Err(UsageError(format!(
                        "--redis-prefix: '{value}' must be non-empty, without spaces or braces"
                    )));
                }
                cfg.redis_prefix = value;
            }
            "--longpoll-timeout" => cfg.longpoll_timeout = secs(&name, &value)?,
            "--allow-origin" => cfg
                .allow_origins
                .push(value.trim_end_matches('/').to_string()),
            "--host" => {
                if value != "*" && crate::http::request::split_host(&value).is_err() {
                    return Err(UsageError(format!(
                        "--host: '{value}' is not NAME or NAME:PORT (or '*')"
                    )));
                }
                cfg.hosts.push(value)
            }
            "--max-request-line" => l.max_request_line = count(&name, &value)?,
            "--max-header-bytes" => l.max_header_bytes = count(&name, &value)?,
            "--max-headers" => l.max_headers = count(&name, &value)?,
            "--max-body" => l.max_body = count(&name, &value)?,
            "--head-timeout" => l.head_timeout = secs(&name, &value)?,
            "--idle-timeout" => l.idle_timeout = secs(&name, &value)?,
            "--body-timeout" => l.body_timeout = secs(&name, &value)?,
            "--write-timeout" => l.write_timeout = secs(&name, &value)?,
            "--max-connections" => l.max_connections = count(&name, &value)?,
            "--max-connections-per-ip" => l.max_connections_per_ip = count(&name, &value)?,
            "--max-viewers-per-ip" => l.max_viewers_per_ip = count(&name, &value)?,
            "--ws-max-vote-message" => l.ws_max_vote_message = count(&name, &value)?,
            "--ws-max-chat-message" => l.ws_max_chat_message = count(&name, &value)?,
            "--ws-max-buffered" => l.ws_max_buffered = count(&name, &value)?,
            "--ws-ping-interval" => l.ws_ping_interval = secs(&name, &value)?,
            "--ws-pong-timeout" => l.ws_pong_timeout = secs(&name, &value)?,
            "--sse-heartbeat" => l.sse_heartbeat = secs(&name, &value)?,
            "--thread-stack" => l.thread_stack = count(&name, &value)?,
            "--vote-id-window" => l.vote_id_window = secs(&name, &value)?,
            "--vote-id-memory" => l.vote_id_memory = count(&name, &value)?,
            "--vote-timeout" => l.vote_timeout = secs(&name, &value)?,
            _ => return Err(UsageError(format!("unknown option '{name}'"))),
        }
    }
    if !candidates.is_empty() {
        cfg.candidates = candidates;
    }
    if cfg.redis.is_some() {
        if let Some(other) = store_flag {
            return Err(UsageError(format!(
                "--redis keeps the tally in Redis: it cannot go with {other}"
            )));
        }
        cfg.data = None;
    }
    cfg.validate()?;
    Ok(Command::Run(Box::new(cfg)))
}

/// Candidate ids travel in URLs, form fields, JSON and element ids: keep them plain
/// ([`ids::CANDIDATE`]).
pub fn valid_id(id: &str) -> bool {
    ids::CANDIDATE.accepts(id)
}

/// Reads one size or count limit.
type LimitOf = fn(&Limits) -> usize;
/// Reads one timeout.
type TimeoutOf = fn(&Config) -> Duration;

/// The smallest value of each size or count limit, by flag: the one owner of these rules, used
/// by the command line and by [`Config::validate`] (so `Server::bind` applies them to a
/// `Config` built in code too).
const MINIMUMS: [(&str, LimitOf, usize); 12] = [
    ("--max-request-line", |l| l.max_request_line, 64),
    ("--max-header-bytes", |l| l.max_header_bytes, 256),
    ("--max-headers", |l| l.max_headers, 1),
    ("--max-body", |l| l.max_body, 0),
    ("--max-connections", |l| l.max_connections, 1),
    ("--max-connections-per-ip", |l| l.max_connections_per_ip, 0),
    ("--max-viewers-per-ip", |l| l.max_viewers_per_ip, 0),
    ("--ws-max-vote-message", |l| l.ws_max_vote_message, 1),
    ("--ws-max-chat-message", |l| l.ws_max_chat_message, 1),
    ("--ws-max-buffered", |l| l.ws_max_buffered, 1),
    ("--thread-stack", |l| l.thread_stack, 32 * 1024),
    ("--vote-id-memory", |l| l.vote_id_memory, 0),
];

/// Every timeout, by flag.
const DURATIONS: [(&str, TimeoutOf); 10] = [
    ("--longpoll-timeout", |c| c.longpoll_timeout),
    ("--head-timeout", |c| c.limits.head_timeout),
    ("--idle-timeout", |c| c.limits.idle_timeout),
    ("--body-timeout", |c| c.limits.body_timeout),
    ("--write-timeout", |c| c.limits.write_timeout),
    ("--ws-ping-interval", |c| c.limits.ws_ping_interval),
    ("--ws-pong-timeout", |c| c.limits.ws_pong_timeout),
    ("--sse-heartbeat", |c| c.limits.sse_heartbeat),
    ("--vote-id-window", |c| c.limits.vote_id_window),
    ("--vote-timeout", |c| c.limits.vote_timeout),
];

/// The shortest and longest timeout: 1 ms (a zero timeout means "none" to a socket) and a day.
const SHORTEST: Duration = Duration::from_millis(1);
const LONGEST: Duration = Duration::from_secs(86_400);

fn minimum(flag: &str) -> usize {
    MINIMUMS
        .iter()
        .find(|(f, _, _)| *f == flag)
        .map_or(0, |&(_, _, min)| min)
}

impl Config {
    /// Checks every rule a configuration must follow, whoever built it: each limit at least its
    /// minimum, each timeout within [1 ms, 1 day], candidates present, well-formed and unique.
    pub fn validate(&self) -> Result<(), UsageError> {
        for (flag, get, min) in MINIMUMS {
            if get(&self.limits) < min {
                return Err(UsageError(format!(
                    "{flag}: {} is less than the minimum {min}",
                    get(&self.limits)
                )));
            }
        }
        if self.limits.vote_id_memory > MAX_VOTE_ID_MEMORY {
            return Err(UsageError(format!(
                "--vote-id-memory: at most {MAX_VOTE_ID_MEMORY} (a snapshot must stay readable)"
            )));
        }
        for (flag, get) in DURATIONS {
            if !(SHORTEST..=LONGEST).contains(&get(self)) {
                return Err(UsageError(format!(
                    "{flag}: {:?} is not between 1 ms and a day",
                    get(self)
                )));
            }
        }
        if self.candidates.is_empty() {
            return Err(UsageError("no candidates".into()));
        }
        for (i, (id, name)) in self.candidates.iter().enumerate() {
            if !valid_id(id) {
                return Err(UsageError(format!(
                    "--candidate: '{id}': {}",
                    ids::CANDIDATE.describe()
                )));
            }
            if name.is_empty() || name.len() > MAX_NAME {
                return Err(UsageError(format!(
                    "--candidate: name for '{id}' must be 1-{MAX_NAME} bytes"
                )));
            }
            if self.candidates[..i].iter().any(|(other, _)| other == id) {
                return Err(UsageError(format!("--candidate: id '{id}' given twice")));
            }
        }
        Ok(())
    }
}

/// Longest candidate name, in bytes.
pub const MAX_NAME: usize = 200;

/// A whole number for `flag`, at least its minimum.
fn count(flag: &str, value: &str) -> Result<usize, UsageError> {
    let min = minimum(flag);
    match value.parse::<usize>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(UsageError(format!(
            "{flag}: '{value}' is not a whole number ≥ {min}"
        ))),
    }
}

/// Seconds, fractions allowed (`0.5`), at least 1 ms and at most a day.
fn secs(name: &str, value: &str) -> Result<Duration, UsageError> {
    match value.parse::<f64>() {
        Ok(s) if (SHORTEST.as_secs_f64()..=LONGEST.as_secs_f64()).contains(&s) => {
            Ok(Duration::from_secs_f64(s))
        }
        _ => Err(UsageError(format!(
            "{name}: '{value}' is not a number of seconds between 0.001 and 86400"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, UsageError> {
        match parse_args(args.iter().map(|s| s.to_string()))? {
            Command::Run(c) => Ok(*c),
            Command::Help => panic!("unexpected help"),
        }
    }

    #[test]
    fn defaults_are_the_tutorials() {
        let c = run(&[]).unwrap();
        assert_eq!(c.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.candidates[0], ("1".into(), "野味".into()));
        assert_eq!(c.candidates[1], ("2".into(), "海龙".into()));
        assert_eq!(c.longpoll_timeout, Duration::from_secs(10));
        assert_eq!(c.data, Some(PathBuf::from(DEFAULT_DATA)));
        assert_eq!(run(&["--memory"]).unwrap().data, None);
        assert_eq!(
            run(&["--data", "x/j"]).unwrap().data,
            Some(PathBuf::from("x/j"))
        );
    }

    #[test]
    fn flags_parse_in_both_forms() {
        let c = run(&[
            "--addr=0.0.0.0:9",
            "--candidate",
            "a=A",
            "--candidate=b=B=C",
            "--longpoll-timeout",
            "0.5",
            "--max-body",
            "10",
            "--quiet",
        ])
        .unwrap();
        assert_eq!(c.addr.port(), 9);
        assert_eq!(
            c.candidates,
            vec![("a".into(), "A".into()), ("b".into(), "B=C".into())]
        );
        assert_eq!(c.longpoll_timeout, Duration::from_millis(500));
        assert_eq!(c.limits.max_body, 10);
        assert!(!c.access_log);
        assert!(run(&[]).unwrap().hosts.is_empty());
        use crate::log::LogFormat;
        assert_eq!(run(&[]).unwrap().log_format, LogFormat::Combined);
        let json = run(&["--log-format", "json"]).unwrap();
        assert_eq!(json.log_format, LogFormat::Json);
        assert_eq!(
            run(&["--log-format=common"]).unwrap().log_format,
            LogFormat::Common
        );
        assert!(run(&["--log-format", "apache"]).is_err());
        assert_eq!(run(&[]).unwrap().limits.max_viewers_per_ip, 64);
        let c = run(&["--max-viewers-per-ip", "0"]).unwrap();
        assert_eq!(c.limits.max_viewers_per_ip, 0);
        assert!(run(&["--max-viewers-per-ip", "-1"]).is_err());
        let c = run(&[
            "--host",
            "vote.lan",
            "--host=192.168.1.5:8080",
            "--host",
            "*",
        ])
        .unwrap();
        assert_eq!(c.hosts, ["vote.lan", "192.168.1.5:8080", "*"]);
    }

    #[test]
    fn bad_flags_are_errors() {
        for bad in [
            &["--nope"][..],
            &["--addr"],
            &["--addr", "localhost"],
            &["--candidate", "x"],
            &["--candidate", "a b=x"],
            &["--candidate", "a=x", "--candidate", "a=y"],
            &["--longpoll-timeout", "-1"],
            &["--max-headers", "0"],
            &["--host", "a b"],
            &["--host", "u@h"],
            &["--host", "h:99999"],
            &["--host", ""],
            &["stray"],
        ] {
            assert!(run(bad).is_err(), "{bad:?} should fail");
        }
        assert_eq!(parse_args(["--help".to_string()]).unwrap(), Command::Help);
        // Candidate names: 1 to MAX_NAME bytes.
        assert!(run(&["--candidate", &format!("a={}", "x".repeat(MAX_NAME))]).is_ok());
        assert!(run(&["--candidate", &format!("a={}", "x".repeat(MAX_NAME + 1))]).is_err());
        assert!(run(&["--candidate", "a="]).is_err());
    }

    #[test]
    fn a_config_built_in_code_gets_the_command_lines_checks() {
        assert_eq!(Config::default().validate(), Ok(()));
        let bad: [fn(&mut Config); 7] = [
            |c| c.limits.thread_stack = 1024,
            |c| c.limits.max_headers = 0,
            |c| c.limits.write_timeout = Duration::ZERO,
            |c| c.longpoll_timeout = Duration::from_secs(2 * 86_400),
            |c| c.candidates.clear(),
            |c| c.candidates.push(("1".into(), "again".into())),
            |c| c.candidates[0].0 = "not an id".into(),
        ];
        for (i, tweak) in bad.iter().enumerate() {
            let mut c = Config::default();
            tweak(&mut c);
            assert!(c.validate().is_err(), "case {i}");
            let e = crate::server::Server::bind(Config {
                addr: "127.0.0.1:0".parse().unwrap(),
                ..c
            })
            .err()
            .expect("bind refuses an invalid config");
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "case {i}");
        }
        // Every minimum is the one the command line enforces.
        for (flag, _, min) in MINIMUMS {
            if min > 0 {
                assert!(run(&[flag, &(min - 1).to_string()]).is_err(), "{flag}");
            }
            assert!(run(&[flag, &min.max(1).to_string()]).is_ok(), "{flag}");
        }
    }

    #[test]
    fn the_vote_id_window_memory_and_timeout_flags() {
        let l = run(&[]).unwrap().limits;
        assert_eq!(
            (l.vote_id_window, l.vote_id_memory, l.vote_timeout),
            (Duration::from_secs(600), 64 << 20, Duration::from_secs(5))
        );
        let l = run(&[
            "--vote-id-window",
            "30",
            "--vote-id-memory=1000",
            "--vote-timeout",
            "0.25",
        ])
        .unwrap()
        .limits;
        assert_eq!(
            (l.vote_id_window, l.vote_id_memory, l.vote_timeout),
            (Duration::from_secs(30), 1000, Duration::from_millis(250))
        );
        let too_much = (MAX_VOTE_ID_MEMORY + 1).to_string();
        assert!(run(&["--vote-id-memory", &too_much]).is_err());
        assert!(run(&["--vote-timeout", "0"]).is_err());
    }
}
