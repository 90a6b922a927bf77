//! Configuration: every limit and timeout the server enforces, with its default, in one place,
//! and the parser that fills it from the command line and `LIVEVOTE_*` environment variables.
//! No I/O: the caller hands over the arguments and the environment.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
    /// Threads that write one WebSocket broadcast, each with a shard of at least 512
    /// subscribers (fewer subscribers: one thread). Default: one per two cores
    /// (`available_parallelism` / 2, at least 1). `--fanout-writers`.
    pub fanout_writers: usize,
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
    /// After SIGTERM or SIGINT, how long the server keeps accepting while `/readyz` answers
    /// `503`, so load balancers notice before connections are refused; 0 for none. Default
    /// 2 s. `--shutdown-delay`.
    pub shutdown_delay: Duration,
    /// The whole graceful shutdown (the delay included) must end within this long from the
    /// signal; past it the process exits anyway, with code 1. Default 10 s; more than
    /// `shutdown_delay`. `--shutdown-timeout`.
    pub shutdown_timeout: Duration,
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
            fanout_writers: crate::app::hub::Fanout::for_this_machine(),
            ws_pong_timeout: Duration::from_secs(25),
            sse_heartbeat: Duration::from_secs(15),
            thread_stack: 128 * 1024,
            vote_id_window: Duration::from_secs(600),
            vote_id_memory: 64 << 20,
            vote_timeout: Duration::from_secs(5),
            shutdown_delay: Duration::from_secs(2),
            shutdown_timeout: Duration::from_secs(10),
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
    /// A directory to serve the pages, scripts and styles (and `index.template`) from, read
    /// on every request (development). Default `None`: the files of `www/` built into the
    /// binary. `--www DIR`.
    pub www: Option<PathBuf>,
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
    /// [`default_data`]: `$STATE_DIRECTORY/votes.journal`, else [`DEFAULT_DATA`] (`--data PATH`;
    /// `--memory` for none); a `Config` built in code defaults to memory, so tests and
    /// embedders opt in.
    pub data: Option<PathBuf>,
    /// The tally in Redis, shared with every instance given the same URL and prefix; each
    /// instance keeps a follower copy. Excludes `data` (`--redis` with `--data` or `--memory`
    /// is a usage error). Default none. `--redis redis://[USER:PASSWORD@]HOST[:PORT][/DB]`.
    pub redis: Option<crate::redis::RedisUrl>,
    /// What every Redis key starts with (several deployments can share one Redis). Default
    /// [`DEFAULT_REDIS_PREFIX`]. `--redis-prefix`.
    pub redis_prefix: String,
    /// Reverse proxies whose forwarding headers are believed: from a peer inside one of these
    /// blocks, the client's address comes from `Forwarded` / `X-Forwarded-For` and the scheme
    /// and host from `proto=`/`host=` / `X-Forwarded-Proto` / `-Host` (`http::forwarded`);
    /// from any other peer those headers are ignored. Default none. `--trusted-proxy CIDR`,
    /// repeatable (a bare address is one host).
    pub trusted_proxies: Vec<crate::http::forwarded::Cidr>,
    /// Everything is served under this prefix (`/polls`: `/polls/index`, `/polls/vote`…), as a
    /// proxy passes it through; anything outside it is `404`. Default empty (the root).
    /// `--base-path` (rules: `http::base_path::check`).
    pub base_path: String,
    /// The default poll's question. Default "Live vote". `--question`.
    pub question: String,
    /// The admin API's bearer token; None: a random one is made at start and printed once.
    /// `--admin-token`.
    pub admin_token: Option<String>,
    /// The address people open to vote, shown (and drawn as a QR code) by the presenter view;
    /// None: the address the presenter used. `--public-url`.
    pub public_url: Option<String>,
    /// Most polls, the default one included; more → `409`. Default 1,000. `--max-polls`.
    pub max_polls: usize,
    /// Most voters one `once`/`change` poll remembers; a new one beyond → `503`. Default
    /// 100,000. `--max-voters`.
    pub max_voters: usize,
    /// Most votes per second per voter and per client address (a burst of as many), on
    /// every transport; beyond it `429` + `Retry-After`. None (default): no limit.
    /// `--vote-rate`.
    pub vote_rate: Option<u32>,
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
            www: None,
            longpoll_timeout: Duration::from_secs(10),
            allow_origins: Vec::new(),
            hosts: Vec::new(),
            access_log: true,
            log_format: crate::log::LogFormat::Combined,
            data: None,
            redis: None,
            redis_prefix: DEFAULT_REDIS_PREFIX.to_string(),
            trusted_proxies: Vec::new(),
            base_path: String::new(),
            question: DEFAULT_QUESTION.to_string(),
            admin_token: None,
            public_url: None,
            max_polls: crate::app::polls::DEFAULT_MAX_POLLS,
            max_voters: crate::app::polls::DEFAULT_MAX_VOTERS,
            vote_rate: None,
            limits: Limits::default(),
        }
    }
}

/// What the command line asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Run(Box<Config>),
    /// `-h`, `--help`: print [`help`].
    Help,
    /// `-V`, `--version`: print [`version`].
    Version,
    /// `livevote probe [URL]`: exit 0 when the URL (default [`DEFAULT_PROBE`]) answers `200`.
    Probe(String),
}

/// A bad command line or `LIVEVOTE_*` variable; `main` prints it and exits with code 2.
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The default poll's question unless `--question` says otherwise.
pub const DEFAULT_QUESTION: &str = "Live vote";
/// Shortest admin token: a guessable one would hand the polls to anyone.
pub const MIN_ADMIN_TOKEN: usize = 16;

/// What Redis keys start with unless `--redis-prefix` says otherwise.
pub const DEFAULT_REDIS_PREFIX: &str = "livevote";

/// What `livevote probe` asks without a URL.
pub const DEFAULT_PROBE: &str = "http://127.0.0.1:8080/healthz";

/// Where the command line keeps the journal unless told otherwise (or `STATE_DIRECTORY` is
/// set: [`default_data`]).
pub const DEFAULT_DATA: &str = "data/votes.journal";

/// The journal's file name in `$STATE_DIRECTORY`.
pub const STATE_JOURNAL: &str = "votes.journal";

/// The default journal: `$STATE_DIRECTORY/votes.journal` when the environment has it (systemd's
/// `StateDirectory=`; of several colon-separated paths, the first), else [`DEFAULT_DATA`]
/// under the working directory.
pub fn default_data(env: &[(String, String)]) -> PathBuf {
    env.iter()
        .rev()
        .find(|(k, _)| k == "STATE_DIRECTORY")
        .and_then(|(_, v)| v.split(':').next())
        .filter(|dir| !dir.is_empty())
        .map_or_else(
            || PathBuf::from(DEFAULT_DATA),
            |dir| Path::new(dir).join(STATE_JOURNAL),
        )
}

/// The crate's version, `X.Y.Z`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit the binary was built from, when build.rs could tell (a build in the crate's
/// own git checkout with `git` at hand).
pub const COMMIT: Option<&str> = option_env!("LIVEVOTE_BUILD_COMMIT");

/// What `--version` prints: `livevote X.Y.Z`, and ` (commit C)` when known.
pub fn version() -> String {
    match COMMIT {
        Some(c) => format!("livevote {VERSION} (commit {c})"),
        None => format!("livevote {VERSION}"),
    }
}

pub const USAGE: &str = "\
livevote — a live-voting server: polling, long-polling and WebSocket side by side

USAGE: livevote [OPTIONS]
       livevote probe [URL]       exit 0 if URL answers 200, else 1 (a container's health
                                  check) [default: http://127.0.0.1:8080/healthz]

OPTIONS:
  --addr HOST:PORT            listen address [default: 127.0.0.1:8080]
  --candidate ID=NAME         a candidate (repeatable) [default: 1=野味 2=海龙]
  --www DIR                   serve pages, scripts and styles from DIR, not the built-in ones
  --longpoll-timeout SECS     long-poll wait before status:false [default: 10]
  --allow-origin URL          another Origin allowed to vote and open WebSockets (repeatable)
  --host NAME[:PORT]          another name to answer to (repeatable; '*': any) [default:
                              localhost, 127.0.0.1, [::1], the --addr]; others get 421
  --data PATH                 vote journal (and PATH.snapshot) [default: data/votes.journal,
                              or $STATE_DIRECTORY/votes.journal when that is set]
  --memory                    keep votes in memory only (lost at exit)
  --redis URL                 the tally in Redis, shared by every instance given it:
                              redis://[USER:PASSWORD@]HOST[:PORT][/DB] (not with --data/--memory)
  --redis-prefix PREFIX       [default: livevote]  what every Redis key starts with
  --quiet                     no access log on stderr
  --log-format FORMAT         [default: combined]  access log and messages: combined, common
                              (the NCSA formats, UTC) or json (one object per line)
  --trusted-proxy CIDR        a reverse proxy to believe (repeatable; ADDR or ADDR/BITS):
                              its Forwarded / X-Forwarded-* headers name the client
  --base-path PATH            serve everything under PATH, e.g. /polls [default: the root]
  --question TEXT             the default poll's question [default: Live vote]
  --admin-token TOKEN         the admin API's bearer token, 16+ characters [default: a random
                              one, printed once at start]
  --public-url URL            the join address the presenter view shows [default: the
                              address the presenter used]
  --max-polls N               [default: 1000]      polls, the default one included → 409
  --max-voters N              [default: 100000]    voters per one-vote poll; beyond → 503
  --vote-rate N               [default: no limit]  votes per second per voter and address;
                              beyond → 429 + Retry-After
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
  --fanout-writers N          [default: cores / 2] threads writing one WebSocket broadcast
  --sse-heartbeat SECS        [default: 15]        comment line on an idle SSE stream
  --thread-stack BYTES        [default: 131072]    stack of each connection thread
  --vote-id-window SECS       [default: 600]       a retry with a vote id within it counts once
  --vote-id-memory BYTES      [default: 67108864]  remembered vote ids; full → 503 for new ids
  --vote-timeout SECS         [default: 5]         wait for the store → 503 outcome unknown
  --shutdown-delay SECS       [default: 2]         after SIGTERM/SIGINT: /readyz 503, still
                              accepting (0: none)
  --shutdown-timeout SECS     [default: 10]        graceful shutdown's deadline; past it exit 1
  -h, --help                  this text
  -V, --version               the version

ENVIRONMENT:
  Every option can be set by the variable under it instead: LIVEVOTE_ and the option's name,
  upper case, '-' as '_'. A flag on the command line wins over its variable, and a repeatable
  flag given on the command line replaces its variable's whole list. A switch's variable takes
  1, 0, true or false; a repeatable flag's, a comma-separated list. An empty variable counts as
  unset; a bad value is a usage error (exit 2). Other LIVEVOTE_* names are ignored.
  STATE_DIRECTORY (systemd's StateDirectory=): the journal's default is
  $STATE_DIRECTORY/votes.journal (the first directory, if it lists several).

EXIT STATUS:
  0  stopped normally (a graceful shutdown on SIGTERM or SIGINT finished in time), or printed
     --help or --version; `probe`: the URL answered 200
  1  could not start (address in use, journal unreadable, no --www DIR...) or failed running;
     a shutdown not finished within --shutdown-timeout; `probe`: no 200
  2  usage error: a bad flag or LIVEVOTE_* variable
  128+N  a second signal N during the shutdown: exited at once (143: SIGTERM, 130: SIGINT)
";

/// How an option takes its value: the command line and its `LIVEVOTE_*` variable read it the
/// same way from this table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    /// A switch: no value (its variable: `1`/`0`/`true`/`false`).
    Switch,
    /// One value; the last one given counts.
    Value,
    /// Repeatable (its variable: a comma-separated list).
    Repeated,
}

/// Every option of [`USAGE`] but `--help` and `--version`, with how it takes its value. A unit
/// test checks this table against [`USAGE`] and sets every option through its variable.
pub const FLAGS: &[(&str, Arity)] = &[
    ("--addr", Arity::Value),
    ("--candidate", Arity::Repeated),
    ("--www", Arity::Value),
    ("--longpoll-timeout", Arity::Value),
    ("--allow-origin", Arity::Repeated),
    ("--host", Arity::Repeated),
    ("--data", Arity::Value),
    ("--memory", Arity::Switch),
    ("--redis", Arity::Value),
    ("--redis-prefix", Arity::Value),
    ("--quiet", Arity::Switch),
    ("--log-format", Arity::Value),
    ("--trusted-proxy", Arity::Repeated),
    ("--base-path", Arity::Value),
    ("--question", Arity::Value),
    ("--admin-token", Arity::Value),
    ("--public-url", Arity::Value),
    ("--max-polls", Arity::Value),
    ("--max-voters", Arity::Value),
    ("--vote-rate", Arity::Value),
    ("--max-request-line", Arity::Value),
    ("--max-header-bytes", Arity::Value),
    ("--max-headers", Arity::Value),
    ("--max-body", Arity::Value),
    ("--head-timeout", Arity::Value),
    ("--idle-timeout", Arity::Value),
    ("--body-timeout", Arity::Value),
    ("--write-timeout", Arity::Value),
    ("--max-connections", Arity::Value),
    ("--max-connections-per-ip", Arity::Value),
    ("--max-viewers-per-ip", Arity::Value),
    ("--ws-max-vote-message", Arity::Value),
    ("--ws-max-chat-message", Arity::Value),
    ("--ws-max-buffered", Arity::Value),
    ("--ws-ping-interval", Arity::Value),
    ("--fanout-writers", Arity::Value),
    ("--ws-pong-timeout", Arity::Value),
    ("--sse-heartbeat", Arity::Value),
    ("--thread-stack", Arity::Value),
    ("--vote-id-window", Arity::Value),
    ("--vote-id-memory", Arity::Value),
    ("--vote-timeout", Arity::Value),
    ("--shutdown-delay", Arity::Value),
    ("--shutdown-timeout", Arity::Value),
];

/// The environment variable of `flag`: `--max-body` → `LIVEVOTE_MAX_BODY`.
pub fn env_var(flag: &str) -> String {
    format!(
        "LIVEVOTE_{}",
        flag.trim_start_matches('-')
            .replace('-', "_")
            .to_uppercase()
    )
}

fn arity(flag: &str) -> Option<Arity> {
    FLAGS.iter().find(|(f, _)| *f == flag).map(|&(_, a)| a)
}

/// Where the descriptions in [`USAGE`] start.
const HELP_COLUMN: usize = 30;

/// The `--help` text: [`USAGE`] with each option's variable on a line under it.
pub fn help() -> String {
    let mut out = String::with_capacity(USAGE.len() * 2);
    let mut pending: Option<String> = None;
    for line in USAGE.lines() {
        let continues = line.starts_with(&" ".repeat(HELP_COLUMN));
        if !continues {
            if let Some(var) = pending.take() {
                out.push_str(&var);
            }
        }
        out.push_str(line);
        out.push('\n');
        let flag = line
            .split_whitespace()
            .next()
            .filter(|_| line.starts_with("  --"));
        if let Some((flag, arity)) = flag.and_then(|f| Some((f, arity(f)?))) {
            let how = match arity {
                Arity::Switch => "=1",
                Arity::Value => "",
                Arity::Repeated => " (comma-separated)",
            };
            let pad = " ".repeat(HELP_COLUMN);
            pending = Some(format!("{pad}env {}{how}\n", env_var(flag)));
        }
    }
    out
}

/// What the command line gave: settings (flag, value; a switch's value is empty) in order, or
/// a request for help or the version.
enum Given {
    Settings(Vec<(String, String)>),
    Help,
    Version,
}

/// Splits the arguments into settings by [`FLAGS`]; `--help` and `--version` win wherever they
/// are. Values are checked later, by [`configure`].
fn command_line<I: IntoIterator<Item = String>>(args: I) -> Result<Given, UsageError> {
    let mut settings = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Given::Help),
            "-V" | "--version" => return Ok(Given::Version),
            _ => {}
        }
        // Accept both `--flag value` and `--flag=value`.
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if !name.starts_with("--") {
            return Err(UsageError(format!("unexpected argument '{arg}'")));
        }
        let arity = arity(&name).ok_or_else(|| UsageError(format!("unknown option '{name}'")))?;
        let value = match (arity, inline) {
            (Arity::Switch, None) => String::new(),
            (Arity::Switch, Some(_)) => return Err(UsageError(format!("{name} takes no value"))),
            (_, Some(v)) => v,
            (_, None) => args
                .next()
                .ok_or_else(|| UsageError(format!("{name} needs a value")))?,
        };
        settings.push((name, value));
    }
    Ok(Given::Settings(settings))
}

/// The settings the `LIVEVOTE_*` variables make, in [`FLAGS`] order, leaving out every flag the
/// command line gives (it wins, and a repeatable one replaces the variable's whole list).
fn environment(
    env: &[(String, String)],
    given: &[(String, String)],
) -> Result<Vec<(String, String)>, UsageError> {
    let mut settings = Vec::new();
    for &(flag, arity) in FLAGS {
        if given.iter().any(|(g, _)| g == flag) {
            continue;
        }
        let var = env_var(flag);
        // A name set twice (possible in a hand-made environment): the last one, as a shell does.
        let Some((_, value)) = env.iter().rev().find(|(k, _)| *k == var) else {
            continue;
        };
        if value.is_empty() {
            continue;
        }
        match arity {
            Arity::Switch => match value.to_ascii_lowercase().as_str() {
                "1" | "true" => settings.push((flag.to_string(), String::new())),
                "0" | "false" => {}
                _ => {
                    return Err(UsageError(format!(
                        "{var}: '{value}' is not 1, 0, true or false"
                    )))
                }
            },
            Arity::Value => settings.push((flag.to_string(), value.clone())),
            Arity::Repeated => settings.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(|item| (flag.to_string(), item.to_string())),
            ),
        }
    }
    Ok(settings)
}

/// `message` with every mention of a flag in `from_env` (as a whole word) replaced by its
/// variable, so an error names what the operator actually set.
fn relabel(message: &str, from_env: &[&str]) -> String {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '-';
    let mut out = message.to_string();
    for flag in from_env {
        let mut result = String::with_capacity(out.len());
        let mut done = 0;
        for (i, _) in out.match_indices(flag) {
            let end = i + flag.len();
            if !out[..i].ends_with(word) && !out[end..].starts_with(word) {
                result.push_str(&out[done..i]);
                result.push_str(&env_var(flag));
                done = end;
            }
        }
        result.push_str(&out[done..]);
        out = result;
    }
    out
}

/// Parses the arguments (without the program name) and the environment (`(name, value)`
/// pairs: the `LIVEVOTE_*` variables and `STATE_DIRECTORY`; anything else is ignored).
pub fn parse_args<I, E>(args: I, env: E) -> Result<Command, UsageError>
where
    I: IntoIterator<Item = String>,
    E: IntoIterator<Item = (String, String)>,
{
    let mut args = args.into_iter().peekable();
    if args.peek().is_some_and(|a| a == "probe") {
        args.next();
        let url = args.next().unwrap_or_else(|| DEFAULT_PROBE.to_string());
        if let Some(extra) = args.next() {
            return Err(UsageError(format!("probe: unexpected argument '{extra}'")));
        }
        return Ok(Command::Probe(url));
    }
    let given = match command_line(args)? {
        Given::Help => return Ok(Command::Help),
        Given::Version => return Ok(Command::Version),
        Given::Settings(given) => given,
    };
    let env: Vec<(String, String)> = env.into_iter().collect();
    let from_env = environment(&env, &given)?;
    let mut env_flags: Vec<&str> = from_env.iter().map(|(f, _)| f.as_str()).collect();
    env_flags.dedup();
    let settings = from_env.iter().chain(&given).cloned();
    configure(settings, default_data(&env))
        .map(|cfg| Command::Run(Box::new(cfg)))
        .map_err(|e| UsageError(relabel(&e.0, &env_flags)))
}

/// Applies the settings, in order, to the defaults (the journal at `data`), and checks the
/// result.
fn configure(
    settings: impl Iterator<Item = (String, String)>,
    data: PathBuf,
) -> Result<Config, UsageError> {
    let mut cfg = Config {
        data: Some(data),
        ..Config::default()
    };
    let mut candidates: Vec<(String, String)> = Vec::new();
    // The store flag given, if any: `--redis` excludes the other two.
    let mut store_flag: Option<&str> = None;
    for (name, value) in settings {
        if name == "--quiet" {
            cfg.access_log = false;
            continue;
        }
        if name == "--memory" {
            cfg.data = None;
            store_flag = store_flag.or(Some("--memory"));
            continue;
        }
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
            "--www" => cfg.www = Some(PathBuf::from(value)),
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
            "--trusted-proxy" => cfg.trusted_proxies.push(
                crate::http::forwarded::Cidr::parse(&value)
                    .map_err(|e| UsageError(format!("--trusted-proxy: {e}")))?,
            ),
            "--base-path" => cfg.base_path = value,
            "--question" => {
                cfg.question = crate::app::polls::meta::question(&value)
                    .map_err(|e| UsageError(format!("--question: {e}")))?
            }
            "--admin-token" => {
                let ok =
                    value.len() >= MIN_ADMIN_TOKEN && value.bytes().all(|b| b.is_ascii_graphic());
                if !ok {
                    return Err(UsageError(format!(
                        "--admin-token: at least {MIN_ADMIN_TOKEN} printable ASCII characters, \
                         no spaces"
                    )));
                }
                cfg.admin_token = Some(value)
            }
            "--public-url" => {
                let ok = (value.starts_with("http://") || value.starts_with("https://"))
                    && value.len() <= 512
                    && value.bytes().all(|b| b.is_ascii_graphic());
                if !ok {
                    return Err(UsageError(format!(
                        "--public-url: '{value}' is not an http:// or https:// URL"
                    )));
                }
                cfg.public_url = Some(value.trim_end_matches('/').to_string())
            }
            "--max-polls" => cfg.max_polls = count(&name, &value)?.max(1),
            "--max-voters" => cfg.max_voters = count(&name, &value)?,
            "--vote-rate" => match value.trim().parse::<u32>() {
                Ok(r @ 1..=1_000_000) => cfg.vote_rate = Some(r),
                _ => {
                    return Err(UsageError(format!(
                        "--vote-rate: '{value}' is not a whole number of votes per second \
                             from 1 to 1000000"
                    )))
                }
            },
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
            "--fanout-writers" => l.fanout_writers = count(&name, &value)?,
            "--ws-pong-timeout" => l.ws_pong_timeout = secs(&name, &value)?,
            "--sse-heartbeat" => l.sse_heartbeat = secs(&name, &value)?,
            "--thread-stack" => l.thread_stack = count(&name, &value)?,
            "--vote-id-window" => l.vote_id_window = secs(&name, &value)?,
            "--vote-id-memory" => l.vote_id_memory = count(&name, &value)?,
            "--vote-timeout" => l.vote_timeout = secs(&name, &value)?,
            "--shutdown-delay" if value.trim() == "0" => l.shutdown_delay = Duration::ZERO,
            "--shutdown-delay" => l.shutdown_delay = secs(&name, &value)?,
            "--shutdown-timeout" => l.shutdown_timeout = secs(&name, &value)?,
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
    Ok(cfg)
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
const MINIMUMS: [(&str, LimitOf, usize); 13] = [
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
    ("--fanout-writers", |l| l.fanout_writers, 1),
    ("--vote-id-memory", |l| l.vote_id_memory, 0),
];

/// Every timeout, by flag.
const DURATIONS: [(&str, TimeoutOf); 11] = [
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
    ("--shutdown-timeout", |c| c.limits.shutdown_timeout),
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
    /// `--max-polls`, at least the default poll.
    pub fn limits_max_polls(&self) -> usize {
        self.max_polls.max(1)
    }

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
        let l = &self.limits;
        if l.shutdown_delay >= l.shutdown_timeout {
            return Err(UsageError(format!(
                "--shutdown-delay ({:?}) must be shorter than --shutdown-timeout ({:?})",
                l.shutdown_delay, l.shutdown_timeout
            )));
        }
        crate::http::base_path::check(&self.base_path)
            .map_err(|e| UsageError(format!("--base-path: {e}")))?;
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
        run_env(args, &[])
    }

    /// Parses `args` with `env` as the whole environment.
    fn run_env(args: &[&str], env: &[(&str, &str)]) -> Result<Config, UsageError> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        match parse_args(args.iter().map(|s| s.to_string()), env)? {
            Command::Run(c) => Ok(*c),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn no_env() -> std::iter::Empty<(String, String)> {
        std::iter::empty()
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
        assert_eq!(
            parse_args(["--help".to_string()], no_env()).unwrap(),
            Command::Help
        );
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

    /// The options [`USAGE`] documents: (flag, metavariable or "" for a switch, repeatable).
    fn documented() -> Vec<(String, String, bool)> {
        let options = USAGE
            .split("OPTIONS:\n")
            .nth(1)
            .and_then(|rest| rest.split("\n\n").next())
            .expect("an OPTIONS section");
        options
            .lines()
            .filter(|l| l.starts_with("  --"))
            .map(|l| {
                let mut words = l.split_whitespace();
                let flag = words.next().unwrap().to_string();
                let meta = words
                    .next()
                    .filter(|w| w.starts_with(|c: char| c.is_ascii_uppercase()))
                    .unwrap_or("")
                    .to_string();
                (flag, meta, l.contains("(repeatable"))
            })
            .collect()
    }

    /// A valid value for `flag`, other than its default.
    fn sample(flag: &str, meta: &str) -> &'static str {
        match (flag, meta) {
            (_, "") => "",
            (_, "HOST:PORT") => "127.0.0.1:9999",
            (_, "ID=NAME") => "x=Ex",
            (_, "DIR") => "/srv/livevote/www",
            (_, "SECS") => "7.5",
            (_, "BYTES" | "N") => "300000",
            ("--base-path", "PATH") => "/polls",
            (_, "TEXT") => "Lunch?",
            (_, "TOKEN") => "0123456789abcdef-token",
            ("--public-url", "URL") => "https://vote.example/x",
            (_, "PATH") => "/var/lib/livevote/votes.journal",
            (_, "CIDR") => "10.0.0.0/8",
            (_, "PREFIX") => "pfx",
            (_, "FORMAT") => "json",
            (_, "NAME[:PORT]") => "vote.lan",
            ("--allow-origin", "URL") => "http://vote.example",
            ("--redis", "URL") => "redis://127.0.0.1:6390/2",
            _ => panic!("{flag} {meta}: add a sample value for this kind of option"),
        }
    }

    /// Every option in USAGE is in FLAGS with the arity USAGE shows, and the other way round, so
    /// no option lacks its variable (nor `help()` its `env` line).
    #[test]
    fn flags_is_the_table_of_usage() {
        let documented = documented();
        assert!(documented.len() >= 30, "{documented:?}");
        for (flag, meta, repeatable) in &documented {
            let want = match (meta.is_empty(), repeatable) {
                (true, _) => Arity::Switch,
                (false, false) => Arity::Value,
                (false, true) => Arity::Repeated,
            };
            assert_eq!(
                arity(flag),
                Some(want),
                "{flag} is in USAGE: add it to config::FLAGS as {want:?}"
            );
        }
        for (flag, _) in FLAGS {
            assert!(
                documented.iter().any(|(f, _, _)| f == flag),
                "{flag} is in FLAGS but not in USAGE"
            );
        }
        let text = help();
        for (flag, _) in FLAGS {
            assert!(text.contains(&format!("env {}", env_var(flag))), "{flag}");
        }
        assert!(text.contains("\n  --max-body BYTES "));
        assert!(text.contains("\n                              env LIVEVOTE_MAX_BODY\n"));
        assert!(text.contains("env LIVEVOTE_QUIET=1\n"));
        assert!(text.contains("env LIVEVOTE_CANDIDATE (comma-separated)\n"));
        // The --host entry's second line stays with it, above its variable.
        assert!(text.contains("others get 421\n                              env LIVEVOTE_HOST"));
        assert!(text.contains("EXIT STATUS:"), "{text}");
        assert_eq!(env_var("--max-body"), "LIVEVOTE_MAX_BODY");
        assert_eq!(
            env_var("--ws-max-vote-message"),
            "LIVEVOTE_WS_MAX_VOTE_MESSAGE"
        );
    }

    /// Every option set through its variable gives what the flag gives, and not the default.
    #[test]
    fn every_flag_has_a_working_variable() {
        let default = run(&[]).unwrap();
        for (flag, meta, _) in documented() {
            let var = env_var(&flag);
            let (args, env): (Vec<&str>, String) = match arity(&flag).unwrap() {
                Arity::Switch => (vec![flag.as_str()], "1".into()),
                Arity::Value => (
                    vec![flag.as_str(), sample(&flag, &meta)],
                    sample(&flag, &meta).into(),
                ),
                Arity::Repeated => {
                    let two = if flag == "--candidate" {
                        "y=Why"
                    } else {
                        "other.lan"
                    };
                    let two = match flag.as_str() {
                        "--allow-origin" => "http://other.example",
                        "--trusted-proxy" => "2001:db8::/32",
                        _ => two,
                    };
                    (
                        vec![flag.as_str(), sample(&flag, &meta), flag.as_str(), two],
                        format!("{}, {two}", sample(&flag, &meta)),
                    )
                }
            };
            let by_flag = run(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            let by_var =
                run_env(&[], &[(&var, &env)]).unwrap_or_else(|e| panic!("{var}={env}: {e}"));
            assert_eq!(by_var, by_flag, "{var}={env}");
            assert_ne!(by_var, default, "{var}={env} changes nothing");
        }
    }

    #[test]
    fn the_command_line_wins_over_the_environment() {
        let env = [
            ("LIVEVOTE_MAX_BODY", "100"),
            ("LIVEVOTE_ADDR", "127.0.0.1:7000"),
            ("LIVEVOTE_CANDIDATE", "a=A,b=B"),
            ("LIVEVOTE_HOST", "vote.lan"),
            ("LIVEVOTE_QUIET", "true"),
        ];
        let c = run_env(&[], &env).unwrap();
        assert_eq!(c.limits.max_body, 100);
        assert_eq!(c.addr.port(), 7000);
        assert_eq!(
            c.candidates,
            vec![("a".into(), "A".into()), ("b".into(), "B".into())]
        );
        assert_eq!(c.hosts, ["vote.lan"]);
        assert!(!c.access_log);
        // A flag replaces its variable; a repeatable flag replaces the variable's whole list.
        let c = run_env(
            &[
                "--max-body",
                "200",
                "--candidate",
                "c=C",
                "--addr=127.0.0.1:7001",
            ],
            &env,
        )
        .unwrap();
        assert_eq!(c.limits.max_body, 200);
        assert_eq!(c.addr.port(), 7001);
        assert_eq!(c.candidates, vec![("c".into(), "C".into())]);
        assert_eq!(c.hosts, ["vote.lan"], "other variables still apply");
        // A variable the command line overrides is not even read.
        let c = run_env(&["--max-body", "5"], &[("LIVEVOTE_MAX_BODY", "lots")]).unwrap();
        assert_eq!(c.limits.max_body, 5);
        // Switches: 1/0/true/false; 0 leaves the default.
        for (value, quiet) in [
            ("1", true),
            ("true", true),
            ("TRUE", true),
            ("0", false),
            ("false", false),
        ] {
            let c = run_env(&[], &[("LIVEVOTE_QUIET", value)]).unwrap();
            assert_eq!(!c.access_log, quiet, "{value}");
        }
        assert_eq!(
            run_env(&[], &[("LIVEVOTE_MEMORY", "1")]).unwrap().data,
            None
        );
        // Empty means unset; other LIVEVOTE_ names (the scripts' LIVEVOTE_BIN) are not options.
        let c = run_env(
            &[],
            &[
                ("LIVEVOTE_MAX_BODY", ""),
                ("LIVEVOTE_BIN", "/x"),
                ("LIVEVOTE_CANDIDATE", " , "),
            ],
        )
        .unwrap();
        assert_eq!(c, run(&[]).unwrap());
        // --help and --version win over a bad variable.
        let bad = [("LIVEVOTE_MAX_BODY".to_string(), "big".to_string())];
        for (arg, want) in [
            ("--help", Command::Help),
            ("-V", Command::Version),
            ("--version", Command::Version),
        ] {
            assert_eq!(parse_args([arg.to_string()], bad.clone()).unwrap(), want);
        }
    }

    #[test]
    fn a_bad_variable_is_a_usage_error_naming_it() {
        for (var, value) in [
            ("LIVEVOTE_MAX_BODY", "big"),
            ("LIVEVOTE_MAX_HEADERS", "0"),
            ("LIVEVOTE_ADDR", "localhost"),
            ("LIVEVOTE_QUIET", "yes"),
            ("LIVEVOTE_MEMORY", "2"),
            ("LIVEVOTE_CANDIDATE", "a=A,a=B"),
            ("LIVEVOTE_CANDIDATE", "not an id=x"),
            ("LIVEVOTE_HOST", "a b"),
            ("LIVEVOTE_LONGPOLL_TIMEOUT", "-1"),
            ("LIVEVOTE_REDIS", "http://x"),
            ("LIVEVOTE_VOTE_ID_MEMORY", "999999999999"),
        ] {
            let e = run_env(&[], &[(var, value)]).expect_err(var);
            assert!(e.0.starts_with(var), "{var}={value}: {e}");
            assert!(!e.0.contains("--"), "names the variable, not the flag: {e}");
        }
        // A conflict names each side as it was given.
        let e = run_env(&["--memory"], &[("LIVEVOTE_REDIS", "redis://127.0.0.1")]).unwrap_err();
        assert_eq!(
            e.0,
            "LIVEVOTE_REDIS keeps the tally in Redis: it cannot go with --memory"
        );
        let e = run_env(&["--redis", "redis://127.0.0.1"], &[("LIVEVOTE_DATA", "j")]).unwrap_err();
        assert_eq!(
            e.0,
            "--redis keeps the tally in Redis: it cannot go with LIVEVOTE_DATA"
        );
        // Whole words only: LIVEVOTE_REDIS does not rename --redis-prefix.
        assert_eq!(
            relabel("--redis-prefix: x, --redis: y", &["--redis"]),
            "--redis-prefix: x, LIVEVOTE_REDIS: y"
        );
    }

    #[test]
    fn state_directory_decides_the_default_journal() {
        let at = |env: &[(&str, &str)]| run_env(&[], env).unwrap().data;
        assert_eq!(at(&[]), Some(PathBuf::from(DEFAULT_DATA)));
        assert_eq!(
            at(&[("STATE_DIRECTORY", "/var/lib/livevote")]),
            Some(PathBuf::from("/var/lib/livevote/votes.journal"))
        );
        assert_eq!(
            at(&[("STATE_DIRECTORY", "/var/lib/a:/var/lib/b")]),
            Some(PathBuf::from("/var/lib/a/votes.journal"))
        );
        assert_eq!(
            at(&[("STATE_DIRECTORY", "")]),
            Some(PathBuf::from(DEFAULT_DATA))
        );
        // Only the default: --data, --memory and --redis still decide.
        let env = [("STATE_DIRECTORY", "/var/lib/livevote")];
        assert_eq!(
            run_env(&["--data", "j"], &env).unwrap().data,
            Some(PathBuf::from("j"))
        );
        assert_eq!(run_env(&["--memory"], &env).unwrap().data, None);
        assert_eq!(
            run_env(&["--redis", "redis://127.0.0.1"], &env)
                .unwrap()
                .data,
            None
        );
    }

    #[test]
    fn trusted_proxies_and_the_base_path() {
        let c = run(&[]).unwrap();
        assert!(c.trusted_proxies.is_empty());
        assert_eq!(c.base_path, "");
        let c = run(&[
            "--trusted-proxy",
            "127.0.0.1",
            "--trusted-proxy=10.0.0.0/8",
            "--trusted-proxy",
            "::1",
            "--base-path",
            "/polls",
        ])
        .unwrap();
        let shown: Vec<String> = c.trusted_proxies.iter().map(|p| p.to_string()).collect();
        assert_eq!(shown, ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]);
        assert_eq!(c.base_path, "/polls");
        let c = run_env(&[], &[("LIVEVOTE_TRUSTED_PROXY", "127.0.0.1, fd00::/8")]).unwrap();
        assert_eq!(c.trusted_proxies.len(), 2);
        for bad in [
            &["--trusted-proxy", "10.0.0.1/8"][..],
            &["--trusted-proxy", "proxy.lan"],
            &["--trusted-proxy", "10.0.0.0/33"],
            &["--base-path", "polls"],
            &["--base-path", "/polls/"],
            &["--base-path", "/a/../b"],
            &["--base-path", "/a b"],
        ] {
            assert!(run(bad).is_err(), "{bad:?}");
        }
        let e = run_env(&[], &[("LIVEVOTE_BASE_PATH", "/x/")]).unwrap_err();
        assert!(e.0.starts_with("LIVEVOTE_BASE_PATH: "), "{e}");
        // A Config built in code gets the same check.
        let c = Config {
            base_path: "nope".into(),
            ..Config::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn version_and_the_built_in_pages() {
        assert_eq!(
            parse_args(["--version".to_string()], no_env()).unwrap(),
            Command::Version
        );
        let v = version();
        assert!(
            v.starts_with(&format!("livevote {}", env!("CARGO_PKG_VERSION"))),
            "{v}"
        );
        assert_eq!(run(&[]).unwrap().www, None, "the built-in pages by default");
        assert_eq!(run(&["--www", "w"]).unwrap().www, Some(PathBuf::from("w")));
        assert!(
            run(&["--quiet=1"]).is_err(),
            "a switch takes no value on the command line"
        );
    }

    #[test]
    fn the_shutdown_flags_and_the_probe_command() {
        let l = run(&[]).unwrap().limits;
        assert_eq!(
            (l.shutdown_delay, l.shutdown_timeout),
            (Duration::from_secs(2), Duration::from_secs(10))
        );
        let l = run(&["--shutdown-delay", "0", "--shutdown-timeout=3.5"])
            .unwrap()
            .limits;
        assert_eq!(
            (l.shutdown_delay, l.shutdown_timeout),
            (Duration::ZERO, Duration::from_millis(3500))
        );
        let l = run_env(&[], &[("LIVEVOTE_SHUTDOWN_DELAY", "0")])
            .unwrap()
            .limits;
        assert_eq!(l.shutdown_delay, Duration::ZERO);
        assert!(run(&["--shutdown-delay", "5", "--shutdown-timeout", "5"]).is_err());
        assert!(run(&["--shutdown-timeout", "0"]).is_err());
        assert!(run(&["--shutdown-delay", "-1"]).is_err());
        let probe = |a: &[&str]| parse_args(a.iter().map(|s| s.to_string()), []);
        assert_eq!(
            probe(&["probe"]),
            Ok(Command::Probe(DEFAULT_PROBE.to_string()))
        );
        assert_eq!(
            probe(&["probe", "http://h:1/x"]),
            Ok(Command::Probe("http://h:1/x".to_string()))
        );
        assert!(probe(&["probe", "a", "b"]).is_err());
        // Only as the first word: elsewhere it is a stray argument.
        assert!(probe(&["--quiet", "probe"]).is_err());
    }
}
