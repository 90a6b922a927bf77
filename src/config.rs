//! Configuration: every limit and timeout the server enforces, with its default, in one place,
//! and the command-line parser that fills it. No I/O beyond reading arguments.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// A write that makes no progress for this long ends the connection, and so does a
    /// WebSocket subscriber that stays behind the broadcast this long, so a peer that stops
    /// reading cannot hold a thread. Default 10 s. `--write-timeout`.
    pub write_timeout: Duration,
    /// Most open connections (HTTP and WebSocket together); beyond it the server answers `503`
    /// with `Retry-After` and closes. Default 16,384, lowered at start to what the machine's
    /// limits allow (see `server::Server::bind`). `--max-connections`.
    pub max_connections: usize,
    /// Most open connections from one client address; beyond it `503` with `Retry-After`, so
    /// one host cannot take every slot. 0 turns the per-address cap off (the benchmarks, which
    /// open thousands of connections from 127.0.0.1). Default 256. `--max-connections-per-ip`.
    pub max_connections_per_ip: usize,
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
}

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
            ws_max_vote_message: 4 * 1024,
            ws_max_chat_message: 16 * 1024 * 1024,
            ws_max_buffered: 256 * 1024 * 1024,
            ws_ping_interval: Duration::from_secs(25),
            ws_pong_timeout: Duration::from_secs(25),
            sse_heartbeat: Duration::from_secs(15),
            thread_stack: 128 * 1024,
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
    /// Write one access-log line per request on stderr. Default on; `--quiet` turns it off.
    pub access_log: bool,
    /// The vote journal: acknowledged votes are on disk here before they are answered. `None`
    /// keeps votes in memory only (lost at exit). The command line's default is
    /// [`DEFAULT_DATA`] (`--data PATH`; `--memory` for none); a `Config` built in code defaults
    /// to memory, so tests and embedders opt in.
    pub data: Option<PathBuf>,
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
            access_log: true,
            data: None,
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
  --data PATH                 vote journal (and PATH.snapshot) [default: data/votes.journal]
  --memory                    keep votes in memory only (lost at exit)
  --quiet                     no access log on stderr
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
  --ws-max-vote-message BYTES [default: 4096]      larger → close 1009
  --ws-max-chat-message BYTES [default: 16777216]  larger → close 1009
  --ws-max-buffered BYTES     [default: 268435456] all connections' partial messages
  --ws-ping-interval SECS     [default: 25]        ping a silent WebSocket peer
  --ws-pong-timeout SECS      [default: 25]        close a peer silent after the ping
  --sse-heartbeat SECS        [default: 15]        comment line on an idle SSE stream
  --thread-stack BYTES        [default: 131072]    stack of each connection thread
  -h, --help                  this text
";

/// Parses the arguments (without the program name).
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Command, UsageError> {
    let mut cfg = Config {
        data: Some(PathBuf::from(DEFAULT_DATA)),
        ..Config::default()
    };
    let mut candidates: Vec<(String, String)> = Vec::new();
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
                if !valid_id(id) {
                    return Err(UsageError(format!(
                        "--candidate: id '{id}' must be 1-32 of A-Z a-z 0-9 _ -"
                    )));
                }
                if nm.is_empty() || nm.len() > 200 {
                    return Err(UsageError(format!(
                        "--candidate: name for '{id}' must be 1-200 bytes"
                    )));
                }
                if candidates.iter().any(|(i, _)| i == id) {
                    return Err(UsageError(format!("--candidate: id '{id}' given twice")));
                }
                candidates.push((id.to_string(), nm.to_string()));
            }
            "--www" => cfg.www = PathBuf::from(value),
            "--data" => cfg.data = Some(PathBuf::from(value)),
            "--longpoll-timeout" => cfg.longpoll_timeout = secs(&name, &value)?,
            "--allow-origin" => cfg
                .allow_origins
                .push(value.trim_end_matches('/').to_string()),
            "--max-request-line" => l.max_request_line = count(&name, &value, 64)?,
            "--max-header-bytes" => l.max_header_bytes = count(&name, &value, 256)?,
            "--max-headers" => l.max_headers = count(&name, &value, 1)?,
            "--max-body" => l.max_body = count(&name, &value, 0)?,
            "--head-timeout" => l.head_timeout = secs(&name, &value)?,
            "--idle-timeout" => l.idle_timeout = secs(&name, &value)?,
            "--body-timeout" => l.body_timeout = secs(&name, &value)?,
            "--write-timeout" => l.write_timeout = secs(&name, &value)?,
            "--max-connections" => l.max_connections = count(&name, &value, 1)?,
            "--max-connections-per-ip" => l.max_connections_per_ip = count(&name, &value, 0)?,
            "--ws-max-vote-message" => l.ws_max_vote_message = count(&name, &value, 1)?,
            "--ws-max-chat-message" => l.ws_max_chat_message = count(&name, &value, 1)?,
            "--ws-max-buffered" => l.ws_max_buffered = count(&name, &value, 1)?,
            "--ws-ping-interval" => l.ws_ping_interval = secs(&name, &value)?,
            "--ws-pong-timeout" => l.ws_pong_timeout = secs(&name, &value)?,
            "--sse-heartbeat" => l.sse_heartbeat = secs(&name, &value)?,
            "--thread-stack" => l.thread_stack = count(&name, &value, 32 * 1024)?,
            _ => return Err(UsageError(format!("unknown option '{name}'"))),
        }
    }
    if !candidates.is_empty() {
        cfg.candidates = candidates;
    }
    Ok(Command::Run(Box::new(cfg)))
}

/// Candidate ids travel in URLs, form fields, JSON and element ids: keep them plain.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn count(name: &str, value: &str, min: usize) -> Result<usize, UsageError> {
    match value.parse::<usize>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(UsageError(format!(
            "{name}: '{value}' is not a whole number ≥ {min}"
        ))),
    }
}

/// Seconds, fractions allowed (`0.5`), at least 1 ms and at most a day.
fn secs(name: &str, value: &str) -> Result<Duration, UsageError> {
    match value.parse::<f64>() {
        Ok(s) if (0.001..=86_400.0).contains(&s) => Ok(Duration::from_secs_f64(s)),
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
            &["stray"],
        ] {
            assert!(run(bad).is_err(), "{bad:?} should fail");
        }
        assert_eq!(parse_args(["--help".to_string()]).unwrap(), Command::Help);
    }
}
