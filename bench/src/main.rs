//! `livevote-bench`: the benchmark suite behind `make bench`.
//!
//! Starts a fresh server for every run of every scenario (on 127.0.0.1, a free port), drives it
//! with an async load generator in this process, stops it by pid, and prints a table of medians
//! over the runs; with `--out FILE` it also writes the results into FILE between two marker
//! lines (BENCHMARKS.md), keeping everything else in the file.
//!
//! ```text
//! livevote-bench --server target/release/livevote --www www \
//!     [--peer-tungstenite bench/target/release/peer_tungstenite] [--peer-node bench/peer_node [--node PATH]] \
//!     [--out BENCHMARKS.md]
//! ```
//!
//! Environment: `BENCH_RUNS` (runs per scenario, default 3), `BENCH_ONLY` (comma-separated
//! scenario ids), `BENCH_PEERS=0` (livevote only; `tungstenite`, `node`: those peers only),
//! `BENCH_VOTES` (50),
//! `BENCH_VOTE_INTERVAL_MS` (20), `BENCH_HTTP_SECONDS` (5), `BENCH_CAPACITY_MAX` (20000,
//! capped by this process's open-files limit), `BENCH_CAPACITY_STEP` (1000),
//! `BENCH_QUIET_WAIT` (10: seconds to wait before each run for other work on the machine to
//! calm down; 0 to not wait), `BENCH_SERVER_NICE` (10: the servers' nice in the fan-outs, see
//! `server_nice`; 0 to run them at the load generator's priority).

#![allow(clippy::field_reassign_with_default)]

mod http;
mod report;
mod scen;
mod sys;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use report::{fmt_value, median, summarize, RunResult, Unit};
use scen::{Knobs, Step};
use sys::{Launch, Server, Target};

/// Whether a scenario runs against the comparison peers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Peers {
    /// Against livevote and every peer, alternating.
    Run,
    /// The peers do not implement it (SSE, the durable journal): their rows say so.
    NotImplemented,
    /// Not a comparison with the peers (the many-instance scenarios).
    Skip,
}

struct Scenario {
    id: &'static str,
    title: &'static str,
    peers: Peers,
    /// Wall-clock bound of one run (setup included); past it the run is reported as timed out.
    limit: Duration,
    /// The issue's target, as text.
    target: &'static str,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        id: "ws_fanout_1k",
        title: "WS fan-out N=1,000",
        peers: Peers::Run,
        limit: Duration::from_secs(60),
        target: "p99 ≤ 8 ms",
    },
    Scenario {
        id: "ws_fanout_10k",
        title: "WS fan-out N=10,000",
        peers: Peers::Run,
        limit: Duration::from_secs(150),
        target: "all connected, p99 ≤ 60 ms",
    },
    Scenario {
        id: "longpoll_1k",
        title: "long-poll fan-out N=1,000",
        peers: Peers::Run,
        limit: Duration::from_secs(60),
        target: "p99 ≤ 12 ms, none missed",
    },
    Scenario {
        id: "sse_1k",
        title: "SSE fan-out N=1,000",
        peers: Peers::NotImplemented,
        limit: Duration::from_secs(60),
        target: "–",
    },
    Scenario {
        id: "get_index",
        title: "GET /index, 50 keep-alive conns",
        peers: Peers::Run,
        limit: Duration::from_secs(60),
        target: "≥ 110,000 req/s",
    },
    Scenario {
        id: "post_vote_memory",
        title: "POST /vote (--memory), 50 conns",
        peers: Peers::Run,
        limit: Duration::from_secs(60),
        target: "≥ 120,000 req/s",
    },
    Scenario {
        id: "post_vote_durable",
        title: "POST /vote (--data, journal), 50 conns",
        peers: Peers::NotImplemented,
        limit: Duration::from_secs(60),
        target: "reported beside",
    },
    Scenario {
        id: "idle_memory_5k",
        title: "idle WS memory, 5,000 open",
        peers: Peers::Run,
        limit: Duration::from_secs(90),
        target: "≤ 8 KiB/conn",
    },
    Scenario {
        id: "echo",
        title: "echo 50 × 2,000 × 128 B",
        peers: Peers::Run,
        limit: Duration::from_secs(90),
        target: "≥ 125,000 msg/s",
    },
    Scenario {
        id: "capacity",
        title: "WS capacity, default limits",
        peers: Peers::Run,
        limit: Duration::from_secs(300),
        target: "≥ 15,000",
    },
    // Many instances (`--redis`): each beside one instance, alternating, in the same run.
    Scenario {
        id: "cluster_ws_fanout_1k",
        title: "WS fan-out N=1,000 over 3 instances",
        peers: Peers::Skip,
        limit: Duration::from_secs(60),
        target: "p99 ≤ 1.5× one instance",
    },
    Scenario {
        id: "cluster_ws_fanout_10k",
        title: "WS fan-out N=10,000 over 3 instances",
        peers: Peers::Skip,
        limit: Duration::from_secs(150),
        target: "p99 ≤ 1.5× one instance",
    },
    Scenario {
        id: "cluster_post_vote",
        title: "POST /vote through Redis over 3 instances, 50 conns (1 instance: --data journal)",
        peers: Peers::Skip,
        limit: Duration::from_secs(60),
        target: "≥ 1.0× one durable instance",
    },
    Scenario {
        id: "cluster_capacity",
        title: "WS capacity over 3 instances, one vote reaching all",
        peers: Peers::Skip,
        limit: Duration::from_secs(420),
        target: "≥ 40,000",
    },
];

/// The many-instance scenarios: run with [`Target::Cluster`] beside one instance.
fn is_cluster(id: &str) -> bool {
    id.starts_with("cluster_")
}

/// Whether the medians meet the issue's target (None: no target).
fn check(id: &str, runs: &[RunResult]) -> Option<bool> {
    let med = |k: &str| median(runs.iter().filter_map(|r| r.get(k)).collect());
    let worst = |k: &str| runs.iter().filter_map(|r| r.get(k)).fold(0.0f64, f64::max);
    if runs.is_empty() {
        return Some(false);
    }
    Some(match id {
        "ws_fanout_1k" => med("p99") <= 8.0,
        "ws_fanout_10k" => {
            med("p99") <= 60.0 && med("connected") >= 10_000.0 && worst("missing") == 0.0
        }
        "longpoll_1k" => med("p99") <= 12.0 && worst("missing") == 0.0,
        "get_index" => med("req/s") >= 110_000.0,
        "post_vote_memory" => med("req/s") >= 120_000.0,
        "idle_memory_5k" => med("RSS/conn") <= 8.0,
        "echo" => med("msg/s") >= 125_000.0,
        "capacity" => med("held") >= 15_000.0 && worst("server died") == 0.0,
        "cluster_capacity" => med("held") >= 40_000.0 && med("vote reached") >= 40_000.0,
        _ => return None,
    })
}

/// The headline metric compared with the peer: (key, lower is better).
fn headline(id: &str) -> Option<(&'static str, bool)> {
    match id {
        "ws_fanout_1k" | "ws_fanout_10k" | "longpoll_1k" => Some(("p99", true)),
        "get_index" | "post_vote_memory" => Some(("CPU/req", true)),
        "idle_memory_5k" => Some(("RSS/conn", true)),
        "echo" => Some(("msg/s", false)),
        "capacity" | "cluster_capacity" => Some(("held", false)),
        "cluster_ws_fanout_1k" | "cluster_ws_fanout_10k" => Some(("p99", true)),
        "cluster_post_vote" => Some(("req/s", false)),
        _ => None,
    }
}

struct Row {
    scenario: &'static Scenario,
    target: Target,
    /// A peer's row for a scenario it does not implement: nothing is run.
    unsupported: bool,
    runs: Vec<RunResult>,
    failures: Vec<String>,
    stderr_notes: Vec<String>,
    steps: Vec<Step>,
    seconds: f64,
}

fn env_num(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

struct Args {
    server: PathBuf,
    /// The bare peer's binary (`--peer-tungstenite`, or `--peer` as before).
    peer: Option<PathBuf>,
    /// The node peer's directory (bench/peer_node: server.js, package.json, package-lock.json).
    peer_node: Option<PathBuf>,
    /// The node binary (`--node`, default `node` on PATH).
    node: PathBuf,
    www: PathBuf,
    out: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut a = Args {
        server: PathBuf::from("target/release/livevote"),
        peer: None,
        peer_node: None,
        node: PathBuf::from("node"),
        www: PathBuf::from("www"),
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        let mut val = || {
            it.next().unwrap_or_else(|| {
                eprintln!("livevote-bench: {x} needs a value");
                std::process::exit(2)
            })
        };
        match x.as_str() {
            "--server" => a.server = PathBuf::from(val()),
            "--peer" | "--peer-tungstenite" => a.peer = Some(PathBuf::from(val())),
            "--peer-node" => a.peer_node = Some(PathBuf::from(val())),
            "--node" => a.node = PathBuf::from(val()),
            "--www" => a.www = PathBuf::from(val()),
            "--out" => a.out = Some(PathBuf::from(val())),
            "-h" | "--help" => {
                println!("usage: livevote-bench --server PATH --www DIR [--peer-tungstenite PATH] [--peer-node DIR [--node PATH]] [--out BENCHMARKS.md]\n(see bench/src/main.rs for the BENCH_* environment)");
                std::process::exit(0);
            }
            _ => {
                eprintln!("livevote-bench: unknown argument {x}");
                std::process::exit(2);
            }
        }
    }
    a
}

fn main() {
    // A capacity worker (`--hold PORT COUNT SRC`), started by the cluster_capacity scenario.
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("--hold") && argv.len() == 5 {
        let port = argv[2].parse().expect("--hold PORT");
        let count = argv[3].parse().expect("--hold COUNT");
        let src = argv[4].parse().expect("--hold SRC");
        scen::hold_worker(port, count, src);
        return;
    }
    let args = parse_args();
    let (nofile, nofile_hard) = sys::raise_nofile();
    let runs = env_num("BENCH_RUNS", 3.0).max(1.0) as usize;
    let only: Option<Vec<String>> = std::env::var("BENCH_ONLY")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.split(',').map(|x| x.trim().to_string()).collect());
    let peers = select_peers(&args);
    // The node peer's package (ws), installed from its lockfile when missing.
    let node_setup = peers
        .contains(&Target::Node)
        .then(|| install_node_peer(&args));
    let node_error = node_setup.as_ref().and_then(|r| r.as_ref().err().cloned());
    let node_info = node_setup.and_then(|r| r.ok());
    if let Some(e) = &node_error {
        eprintln!("livevote-bench: the node peer cannot run: {e}");
    }
    // The load generator needs one descriptor per connection, plus some to spare.
    let fd_room = (nofile as usize).saturating_sub(200);
    let knobs = Knobs {
        votes: env_num("BENCH_VOTES", 50.0) as usize,
        vote_interval: Duration::from_millis(env_num("BENCH_VOTE_INTERVAL_MS", 20.0) as u64),
        http_seconds: env_num("BENCH_HTTP_SECONDS", 5.0),
        capacity_max: (env_num("BENCH_CAPACITY_MAX", 20_000.0) as usize).min(fd_room),
        capacity_step: (env_num("BENCH_CAPACITY_STEP", 1_000.0) as usize).max(1),
    };
    let tmp = std::env::temp_dir().join(format!("livevote-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let www = args.www.to_string_lossy().to_string();
    let quiet_wait = Duration::from_secs_f64(env_num("BENCH_QUIET_WAIT", 10.0).max(0.0));
    let started = Instant::now();
    let load_at_start = sys::loadavg();
    eprintln!(
        "livevote-bench: {runs} run(s) per scenario; open files {nofile}/{nofile_hard}; peers {}",
        if peers.is_empty() {
            "off".to_string()
        } else {
            peers
                .iter()
                .map(|t| t.short())
                .collect::<Vec<_>>()
                .join(", ")
        }
    );

    let mut rows: Vec<Row> = Vec::new();
    for sc in SCENARIOS {
        if let Some(o) = &only {
            if !o.iter().any(|x| x == sc.id) {
                continue;
            }
        }
        let mut targets = vec![Target::Livevote];
        if sc.peers != Peers::Skip {
            targets.extend(peers.iter().copied());
        }
        if is_cluster(sc.id) {
            targets.push(Target::Cluster);
        }
        // Runs alternate between the servers (livevote, tungstenite, node, livevote, …), so
        // that all see the same background load on a shared machine.
        let mut scenario_rows: Vec<Row> = targets
            .iter()
            .map(|&target| Row {
                scenario: sc,
                target,
                unsupported: target.is_peer() && sc.peers == Peers::NotImplemented,
                runs: Vec::new(),
                failures: Vec::new(),
                stderr_notes: Vec::new(),
                steps: Vec::new(),
                seconds: 0.0,
            })
            .collect();
        for run in 1..=runs {
            for row in scenario_rows.iter_mut() {
                let target = row.target;
                if row.unsupported {
                    continue;
                }
                if let (Target::Node, Some(e)) = (target, &node_error) {
                    row.failures.push(e.clone());
                    continue;
                }
                let t = Instant::now();
                wait_for_quiet(quiet_wait);
                let launch = launch_for(sc.id, target, &args, &www, &tmp, run);
                let tag = format!("{}-{}-{run}", sc.id, target.name().replace(' ', "_"));
                let started = if target == Target::Cluster {
                    Server::start_cluster(&launch, &tmp, &tag)
                } else {
                    Server::start(&launch, &tmp, &tag)
                };
                let mut server = match started {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!(
                            "[{} {} {run}/{runs}] cannot start: {e}",
                            sc.id,
                            target.name()
                        );
                        row.failures.push(e);
                        continue;
                    }
                };
                let info = server.info(target);
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                let k = knobs.clone();
                let id = sc.id;
                let outcome = rt.block_on(async move {
                    tokio::time::timeout(sc.limit, run_one(id, info, &k)).await
                });
                // Every task (and so every socket) of this run ends here.
                rt.shutdown_timeout(Duration::from_secs(3));
                let crashed = server.exited();
                server.stop();
                for line in server.stderr().lines() {
                    let l = line.trim();
                    // The random admin token a server prints at start is a secret, even a
                    // throwaway one: it stays out of the report.
                    if l.is_empty() || l.contains("listening on") || l.contains("admin token") {
                        continue;
                    }
                    if !row.stderr_notes.iter().any(|n| n == l) && row.stderr_notes.len() < 8 {
                        row.stderr_notes.push(l.to_string());
                    }
                }
                let label = format!("[{} · {} · run {run}/{runs}]", sc.id, target.name());
                match outcome {
                    Ok(Ok((r, steps))) => {
                        eprintln!(
                            "{label} {} | client CPU {:.2} s, server CPU {:.2} s, other CPU {:.2} s, {:.1} s measured{}",
                            summarize(std::slice::from_ref(&r)),
                            r.client_cpu_s,
                            r.server_cpu_s,
                            r.other_cpu_s,
                            r.wall_s,
                            if r.notes.is_empty() { String::new() } else { format!(" | {}", r.notes.join("; ")) }
                        );
                        if !steps.is_empty() {
                            row.steps = steps;
                        }
                        row.runs.push(r);
                    }
                    Ok(Err(e)) => {
                        eprintln!("{label} FAILED: {e}");
                        row.failures.push(e);
                    }
                    Err(_) => {
                        let e = format!("timed out after {} s", sc.limit.as_secs());
                        eprintln!("{label} {e}");
                        row.failures.push(e);
                    }
                }
                if let Some(status) = crashed {
                    let e = format!("server exited during the run ({status})");
                    eprintln!("{label} {e}");
                    row.failures.push(e);
                }
                // Let sockets and threads of the stopped server go before the next run.
                std::thread::sleep(Duration::from_millis(300));
                row.seconds += t.elapsed().as_secs_f64();
            }
        }
        rows.extend(scenario_rows);
    }
    let total = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&tmp);

    let table = render_table(&rows, runs);
    println!("\n{table}");
    let gates = gate_lines(&rows);
    for g in &gates {
        println!("{g}");
    }
    println!("load generator + servers: {total:.0} s in all");
    if let Some(out) = &args.out {
        let about = About {
            total,
            load_at_start: &load_at_start,
            node_info: node_info.as_deref(),
        };
        let block = render_block(&rows, runs, &table, &gates, &knobs, &args, &about);
        match write_block(out, &block) {
            Ok(()) => eprintln!("livevote-bench: results written to {}", out.display()),
            Err(e) => eprintln!("livevote-bench: cannot write {}: {e}", out.display()),
        }
    }
    let failed = rows.iter().any(|r| !r.unsupported && r.runs.is_empty());
    std::process::exit(if failed { 1 } else { 0 });
}

/// Before a run: waits (at most `limit`) until the rest of the machine uses less than a third
/// of a core, measured over half a second; says so when it gives up.
fn wait_for_quiet(limit: Duration) {
    let until = Instant::now() + limit;
    loop {
        let a = sys::machine_busy_s();
        let me = sys::self_cpu_s();
        std::thread::sleep(Duration::from_millis(500));
        let others = (sys::machine_busy_s() - a) - (sys::self_cpu_s() - me);
        if others < 0.5 / 3.0 {
            return;
        }
        if Instant::now() >= until {
            eprintln!(
                "livevote-bench: the machine is busy with other work ({:.1} cores); running anyway",
                others / 0.5
            );
            return;
        }
    }
}

/// The scheduling priority (nice) of every server under test — livevote, the peers and the
/// cluster's Redis alike — in the scenarios that time deliveries (the fan-outs): the load
/// generator is the clock, and on two shared cores it must not wait behind the servers'
/// threads for a core, or its own wait would be measured as the servers' latency (and grow
/// with how many server threads are runnable, e.g. three instances' broadcasters against
/// one's). `BENCH_SERVER_NICE` (10; 0: the servers run at the load generator's priority).
fn server_nice(id: &str) -> i32 {
    let times_deliveries = id.contains("fanout") || id == "longpoll_1k" || id == "sse_1k";
    if times_deliveries {
        env_num("BENCH_SERVER_NICE", 10.0) as i32
    } else {
        0
    }
}

fn launch_for(id: &str, target: Target, args: &Args, www: &str, tmp: &Path, run: usize) -> Launch {
    let nice = server_nice(id);
    match target {
        Target::Tungstenite => Launch {
            bin: args.peer.clone().expect("peer binary"),
            pre: vec![],
            args: vec![],
            nice,
        },
        Target::Node => Launch {
            bin: args.node.clone(),
            pre: vec![args
                .peer_node
                .as_ref()
                .expect("node peer directory")
                .join("server.js")
                .to_string_lossy()
                .into()],
            args: vec![],
            nice,
        },
        Target::Livevote | Target::Cluster => {
            let mut a: Vec<String> = vec![
                "--www".into(),
                www.into(),
                "--quiet".into(),
                "--max-connections-per-ip".into(),
                "0".into(),
            ];
            if target == Target::Cluster {
                // The tally in Redis (start_cluster adds --redis). For capacity, the
                // instance's own cap (--max-connections, default 16,384) must not be what
                // stops the ramp: a third of the subscribers each, with room to spare.
                if id == "cluster_capacity" {
                    a.push("--max-connections".into());
                    a.push("65536".into());
                }
            } else if id == "post_vote_durable" || id == "cluster_post_vote" {
                let dir = tmp.join(format!("journal-{run}"));
                let _ = std::fs::create_dir_all(&dir);
                a.push("--data".into());
                a.push(dir.join("votes.journal").to_string_lossy().into());
            } else {
                a.push("--memory".into());
            }
            Launch {
                bin: args.server.clone(),
                pre: vec![],
                args: a,
                nice,
            }
        }
    }
}

async fn run_one(id: &str, info: sys::Info, k: &Knobs) -> Result<(RunResult, Vec<Step>), String> {
    let plain = |r: Result<RunResult, String>| r.map(|r| (r, Vec::new()));
    match id {
        "ws_fanout_1k" => plain(scen::ws_fanout(info, 1_000, k).await),
        "ws_fanout_10k" => plain(scen::ws_fanout(info, 10_000, k).await),
        "longpoll_1k" => plain(scen::longpoll_fanout(info, 1_000, k).await),
        "sse_1k" => plain(scen::sse_fanout(info, 1_000, k).await),
        "get_index" => {
            plain(scen::http_throughput(info, 50, k.http_seconds, scen::GET_INDEX).await)
        }
        "post_vote_memory" | "post_vote_durable" => {
            plain(scen::http_throughput(info, 50, k.http_seconds, scen::POST_VOTE_REQ).await)
        }
        "idle_memory_5k" => plain(scen::idle_memory(info, 5_000).await),
        "echo" => plain(scen::echo(info, 50, 2_000, 128).await),
        "capacity" => scen::capacity(info, k).await,
        "cluster_ws_fanout_1k" => plain(scen::ws_fanout(info, 1_000, k).await),
        "cluster_ws_fanout_10k" => plain(scen::ws_fanout(info, 10_000, k).await),
        "cluster_post_vote" => {
            plain(scen::http_throughput(info, 50, k.http_seconds, scen::POST_VOTE_REQ).await)
        }
        "cluster_capacity" => match info.target {
            Target::Cluster => scen::cluster_capacity(info, k).await,
            _ => scen::capacity(info, k).await,
        },
        other => Err(format!("unknown scenario {other}")),
    }
}

/// Whether three instances meet their target against one (fan-out p99 at most 1.5× one
/// instance's; votes/s at least one durable instance's). None when not a ratio target.
fn cluster_ratio(r: &Row, by_id: &BTreeMap<(&str, Target), &Row>) -> Option<bool> {
    if r.target != Target::Cluster {
        return None;
    }
    let base = by_id.get(&(r.scenario.id, Target::Livevote))?;
    let med = |row: &Row, k: &str| median(row.runs.iter().filter_map(|x| x.get(k)).collect());
    match r.scenario.id {
        "cluster_ws_fanout_1k" | "cluster_ws_fanout_10k" => {
            Some(med(r, "p99") <= 1.5 * med(base, "p99") && med(r, "missing") == 0.0)
        }
        "cluster_post_vote" => Some(med(r, "req/s") >= med(base, "req/s")),
        _ => None,
    }
}

/// The median of `key` over a row's runs (NaN without runs).
fn med_of(row: &Row, key: &str) -> f64 {
    median(row.runs.iter().filter_map(|x| x.get(key)).collect())
}

/// The peer with the best median `key` in scenario `id` (lowest when `lower`), among the peers
/// that have runs.
fn best_peer(rows: &[Row], id: &str, key: &str, lower: bool) -> Option<Target> {
    rows.iter()
        .filter(|r| r.scenario.id == id && r.target.is_peer() && !r.runs.is_empty())
        .map(|r| (r.target, med_of(r, key)))
        .filter(|(_, v)| !v.is_nan())
        .min_by(|a, b| {
            let o = a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal);
            if lower {
                o
            } else {
                o.reverse()
            }
        })
        .map(|(t, _)| t)
}

/// The peers to run: those given on the command line, less what `BENCH_PEERS` leaves out
/// (`0`: none; `tungstenite`, `node`, or both comma-separated: only those; unset or `1`: all).
fn select_peers(args: &Args) -> Vec<Target> {
    let want = std::env::var("BENCH_PEERS").unwrap_or_default();
    let want = want.trim();
    let mut v = Vec::new();
    if want == "0" {
        return v;
    }
    let all = want.is_empty() || want == "1";
    let named = |n: &str| all || want.split(',').any(|x| x.trim() == n);
    if args.peer.is_some() && named("tungstenite") {
        v.push(Target::Tungstenite);
    }
    if args.peer_node.is_some() && named("node") {
        v.push(Target::Node);
    }
    v
}

/// The node peer's versions ("node v20.…, ws 8.…"), after `npm ci` in its directory when
/// `node_modules/ws` is missing (from the committed package-lock.json; the directory's .npmrc
/// keeps registry addresses out of the lockfile).
fn install_node_peer(args: &Args) -> Result<String, String> {
    let dir = args.peer_node.as_ref().expect("node peer directory");
    if !dir.join("server.js").is_file() {
        return Err(format!("{} has no server.js", dir.display()));
    }
    let node = std::process::Command::new(&args.node)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", args.node.display()))?;
    let node_version = String::from_utf8_lossy(&node.stdout).trim().to_string();
    let ws_manifest = dir.join("node_modules/ws/package.json");
    if !ws_manifest.is_file() {
        eprintln!(
            "livevote-bench: npm ci in {} (the node peer's ws package)",
            dir.display()
        );
        let st = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(dir)
            .status()
            .map_err(|e| format!("cannot run npm: {e}"))?;
        if !st.success() || !ws_manifest.is_file() {
            return Err(format!("npm ci in {} failed ({st})", dir.display()));
        }
    }
    let manifest = std::fs::read(&ws_manifest).unwrap_or_default();
    let ws_version = http::json_str(&manifest, "version").unwrap_or_else(|| "?".into());
    Ok(format!("node {node_version}, ws {ws_version}"))
}

/// One of the issue's ratios: livevote's median `key` against a peer's (`None`: the best peer
/// by `key`) in scenario `id`.
struct Gate {
    id: &'static str,
    /// The metric's key in the results, and its name in the line.
    key: &'static str,
    name: &'static str,
    against: Option<Target>,
    lower_better: bool,
    /// The line's ratio is "x better" (peer / livevote for a lower-is-better metric) rather
    /// than livevote / peer.
    better: bool,
    target: f64,
    /// A second ratio shown on the same line, against the best peer: (key, name, lower better).
    also: Option<(&'static str, &'static str, bool)>,
}

const GATES: &[Gate] = &[
    Gate {
        id: "get_index",
        key: "CPU/req",
        name: "cpu/req",
        against: Some(Target::Tungstenite),
        lower_better: true,
        better: false,
        target: 0.80,
        also: Some(("req/s", "req/s", false)),
    },
    Gate {
        id: "post_vote_memory",
        key: "CPU/req",
        name: "cpu/req",
        against: Some(Target::Tungstenite),
        lower_better: true,
        better: false,
        target: 0.80,
        also: Some(("req/s", "req/s", false)),
    },
    Gate {
        id: "longpoll_1k",
        key: "p99",
        name: "p99",
        against: Some(Target::Node),
        lower_better: true,
        better: false,
        target: 0.70,
        also: None,
    },
    Gate {
        id: "echo",
        key: "msg/s",
        name: "msg/s",
        against: Some(Target::Tungstenite),
        lower_better: false,
        better: false,
        target: 1.10,
        also: Some(("CPU/msg", "cpu/msg", true)),
    },
    Gate {
        id: "idle_memory_5k",
        key: "RSS/conn",
        name: "rss/conn",
        against: Some(Target::Node),
        lower_better: true,
        better: false,
        target: 1.00,
        also: None,
    },
    Gate {
        id: "ws_fanout_1k",
        key: "p99",
        name: "p99",
        against: None,
        lower_better: true,
        better: true,
        target: 3.00,
        also: None,
    },
    Gate {
        id: "ws_fanout_10k",
        key: "p99",
        name: "p99",
        against: None,
        lower_better: true,
        better: true,
        target: 3.00,
        also: None,
    },
];

/// The regression gate: one line per ratio of the issue, for every gated scenario that ran,
/// from the medians of the runs, e.g.
/// `gate get_index cpu/req 0.93x tungstenite (target <=0.80) missed; req/s 0.72x tungstenite [...]`.
fn gate_lines(rows: &[Row]) -> Vec<String> {
    let unit_of = |r: &Row, key: &str| {
        r.runs
            .iter()
            .flat_map(|x| x.metrics.iter())
            .find(|m| m.key == key)
            .map_or(Unit::Count, |m| m.unit)
    };
    let mut out = Vec::new();
    for g in GATES {
        let Some(lv) = rows
            .iter()
            .find(|r| r.scenario.id == g.id && r.target == Target::Livevote)
        else {
            continue;
        };
        let head = format!("gate {} {}", g.id, g.name);
        let peer = g
            .against
            .or_else(|| best_peer(rows, g.id, g.key, g.lower_better));
        let prow = peer.and_then(|t| rows.iter().find(|r| r.scenario.id == g.id && r.target == t));
        let Some(prow) = prow.filter(|p| !p.runs.is_empty()) else {
            let who = g.against.map_or("any peer", |t| t.short());
            out.push(format!("{head} n/a (no runs of {who})"));
            continue;
        };
        if lv.runs.is_empty() {
            out.push(format!("{head} n/a (no livevote runs)"));
            continue;
        }
        let ours = med_of(lv, g.key);
        let theirs = med_of(prow, g.key);
        let ratio = if g.better {
            theirs / ours
        } else {
            ours / theirs
        };
        let met = if g.better || !g.lower_better {
            ratio >= g.target
        } else {
            ratio <= g.target
        };
        let unit = unit_of(lv, g.key);
        let mut line = format!(
            "{head} {ratio:.2}x {}{} (target {}{:.2}) {}",
            if g.better { "better than " } else { "" },
            prow.target.short(),
            if g.better || !g.lower_better {
                ">="
            } else {
                "<="
            },
            g.target,
            if met { "met" } else { "missed" }
        );
        if let Some((key, name, lower)) = g.also {
            if let Some(b) = best_peer(rows, g.id, key, lower) {
                let brow = rows
                    .iter()
                    .find(|r| r.scenario.id == g.id && r.target == b)
                    .expect("the best peer has a row");
                let _ = write!(
                    line,
                    "; {name} {:.2}x {}",
                    med_of(lv, key) / med_of(brow, key),
                    b.short()
                );
            }
        }
        let _ = write!(
            line,
            " [livevote {}, {} {}",
            fmt_value(ours, unit),
            prow.target.short(),
            fmt_value(theirs, unit)
        );
        // A fan-out peer that held fewer subscribers than livevote had an easier job.
        let (lc, pc) = (med_of(lv, "connected"), med_of(prow, "connected"));
        if !lc.is_nan() && !pc.is_nan() && pc < lc {
            let _ = write!(
                line,
                "; {} connected {} of {}",
                prow.target.short(),
                report::thousands(pc),
                report::thousands(lc)
            );
        }
        line.push(']');
        out.push(line);
    }
    out
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = v.collect();
    median(v)
}

fn render_table(rows: &[Row], runs: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| scenario | server | result (median of {runs} run{}) | load generator CPU | server CPU | other CPU | measured | issue target | target met | vs best peer (or one instance) |",
        if runs == 1 { "" } else { "s" }
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    let by_id: BTreeMap<(&str, Target), &Row> = rows
        .iter()
        .map(|r| ((r.scenario.id, r.target), r))
        .collect();
    for r in rows {
        if r.unsupported {
            let _ = writeln!(
                s,
                "| {} | {} | not implemented by this peer | – | – | – | – |  |  |  |",
                r.scenario.title,
                r.target.name()
            );
            continue;
        }
        let result = if r.runs.is_empty() {
            format!("**failed**: {}", r.failures.join("; "))
        } else {
            let mut x = summarize(&r.runs);
            if !r.failures.is_empty() {
                let mut uniq: Vec<(String, usize)> = Vec::new();
                for f in &r.failures {
                    match uniq.iter_mut().find(|(u, _)| u == f) {
                        Some((_, n)) => *n += 1,
                        None => uniq.push((f.clone(), 1)),
                    }
                }
                let text: Vec<String> = uniq
                    .iter()
                    .map(|(f, n)| {
                        if *n > 1 {
                            format!("{f} ×{n}")
                        } else {
                            f.clone()
                        }
                    })
                    .collect();
                x.push_str(&format!(
                    " — in {} of {runs} runs: {}",
                    r.failures.len().min(runs),
                    text.join("; ")
                ));
            }
            x
        };
        let cpu = |f: fn(&RunResult) -> f64| {
            if r.runs.is_empty() {
                "–".to_string()
            } else {
                format!("{:.2} s", mean(r.runs.iter().map(f)))
            }
        };
        // A many-instance scenario's target is the three instances'; one instance is its
        // baseline.
        let judged = match r.target {
            Target::Livevote => !is_cluster(r.scenario.id),
            Target::Cluster => true,
            Target::Tungstenite | Target::Node => false,
        };
        let (target, met) = if judged {
            let ratio = cluster_ratio(r, &by_id);
            (
                r.scenario.target.to_string(),
                match check(r.scenario.id, &r.runs).or(ratio) {
                    Some(true) => "yes".to_string(),
                    Some(false) => "**no**".to_string(),
                    None => "–".to_string(),
                },
            )
        } else if is_cluster(r.scenario.id) && r.target == Target::Livevote {
            ("baseline".into(), "".into())
        } else {
            ("".into(), "".into())
        };
        // Livevote is compared with the best peer; three instances with one instance.
        let best = headline(r.scenario.id)
            .and_then(|(key, lower)| best_peer(rows, r.scenario.id, key, lower));
        let (against, other_name) = match r.target {
            Target::Cluster => (Some(Target::Livevote), "1 instance".to_string()),
            Target::Livevote if !is_cluster(r.scenario.id) => match best {
                Some(b) => (Some(b), format!("best peer ({})", b.short())),
                None => (None, String::new()),
            },
            _ => (None, String::new()),
        };
        let vs = match (against, headline(r.scenario.id)) {
            (Some(against), Some((key, lower_better))) => {
                match by_id.get(&(r.scenario.id, against)) {
                    Some(p) if !p.runs.is_empty() && !r.runs.is_empty() => {
                        let ours = median(r.runs.iter().filter_map(|x| x.get(key)).collect());
                        let theirs = median(p.runs.iter().filter_map(|x| x.get(key)).collect());
                        let unit = r.runs[0]
                            .metrics
                            .iter()
                            .find(|m| m.key == key)
                            .map_or(Unit::Count, |m| m.unit);
                        let ratio = if lower_better {
                            theirs / ours
                        } else {
                            ours / theirs
                        };
                        format!(
                            "{key}: {other_name} {} → {:.2}× {}",
                            fmt_value(theirs, unit),
                            ratio,
                            if ratio >= 1.0 { "better" } else { "worse" }
                        )
                    }
                    Some(p) if p.runs.is_empty() => format!("{other_name} failed"),
                    _ => "".into(),
                }
            }
            _ => "".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.scenario.title,
            r.target.name(),
            result,
            cpu(|x| x.client_cpu_s),
            cpu(|x| x.server_cpu_s),
            cpu(|x| x.other_cpu_s),
            cpu(|x| x.wall_s),
            target,
            met,
            vs
        );
    }
    s
}

fn limit_line(s: &sys::ProcSample, nofile: &str) -> String {
    format!(
        "threads {} of kernel.pid_max {} (threads-max {}); memory maps {} of vm.max_map_count {}; descriptors {} of open files {}",
        s.threads,
        sys::read_trim("/proc/sys/kernel/pid_max"),
        sys::read_trim("/proc/sys/kernel/threads-max"),
        s.maps,
        sys::read_trim("/proc/sys/vm/max_map_count"),
        s.fds,
        nofile
    )
}

/// What the results block says about the whole run.
struct About<'a> {
    /// Seconds for the scenarios.
    total: f64,
    load_at_start: &'a str,
    /// The node peer's versions, when it ran.
    node_info: Option<&'a str>,
}

fn render_block(
    rows: &[Row],
    runs: usize,
    table: &str,
    gates: &[String],
    k: &Knobs,
    args: &Args,
    about: &About,
) -> String {
    let About {
        total,
        load_at_start,
        node_info,
    } = *about;
    let mut s = String::new();
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into());
    let _ = writeln!(s, "## Results ({date})\n");
    let _ = writeln!(s, "Machine:\n");
    for (k2, v) in sys::machine() {
        let _ = writeln!(s, "- {k2}: {v}");
    }
    let _ = writeln!(s, "- load average when the run started: {load_at_start}");
    let nofile = sys::machine()
        .into_iter()
        .find(|(k2, _)| k2.starts_with("open files"))
        .map(|(_, v)| v)
        .unwrap_or_default();
    let env: Vec<String> = [
        "BENCH_RUNS",
        "BENCH_ONLY",
        "BENCH_PEERS",
        "BENCH_VOTES",
        "BENCH_SERVER_NICE",
        "BENCH_VOTE_INTERVAL_MS",
        "BENCH_HTTP_SECONDS",
        "BENCH_CAPACITY_MAX",
        "BENCH_CAPACITY_STEP",
        "BENCH_QUIET_WAIT",
    ]
    .iter()
    .filter_map(|n| std::env::var(n).ok().map(|v| format!("{n}={v}")))
    .collect();
    let _ = writeln!(
        s,
        "\nCommand: `{}make bench` — {runs} run(s) of each scenario, a fresh server per run; {total:.0} s for the scenarios (builds not included).\n",
        if env.is_empty() { String::new() } else { format!("{} ", env.join(" ")) }
    );
    let _ = writeln!(
        s,
        "Load generator: `bench/target/release/livevote-bench --server {} --www {}{}{}` (tokio, 2 worker threads, on the same 2 cores as the server). \
Servers: `livevote --addr 127.0.0.1:PORT --www www --quiet --max-connections-per-ip 0 --memory` (durable POST: `--data TMP/votes.journal` instead of `--memory`); \
the capacity run uses exactly these flags, so every other limit is the default. \
Peers (the same scenario definitions, alternating with livevote run by run): `peer_tungstenite --addr 127.0.0.1:PORT` (bench/src/bin/peer_tungstenite.rs: std threads, httparse, tungstenite) \
and `node bench/peer_node/server.js --addr 127.0.0.1:PORT` (node's http and the ws package{}); see the method section above for what they implement.\n",
        args.server.display(),
        args.www.display(),
        args.peer
            .as_ref()
            .map(|p| format!(" --peer-tungstenite {}", p.display()))
            .unwrap_or_default(),
        args.peer_node
            .as_ref()
            .map(|p| format!(" --peer-node {}", p.display()))
            .unwrap_or_default(),
        node_info.map(|i| format!(": {i}")).unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "Fan-out: {} votes, one every {} ms; latency = delivery time at a subscriber − the vote's send time, over every (vote, subscriber) pair; \
`to-all p50` = median over votes of the time until the last subscriber had it; `missing` = (vote, subscriber) pairs never delivered within 10 s after the last vote. \
The votes start once every livevote subscriber was told the final viewer total (presence is a broadcast too); the servers under test (and the cluster's Redis) run at nice {} in the fan-outs, so that the load generator, which is the clock, does not wait behind their threads for a core. \
HTTP: 50 keep-alive connections, one request in flight each, {} s. CPU columns: seconds of CPU during the measured phase (load generator from getrusage, server from /proc/PID/stat, other = the rest of the machine from /proc/stat: anything else running on the same two cores); `measured` = that phase's wall time.\n",
        k.votes,
        k.vote_interval.as_millis(),
        server_nice("ws_fanout_1k"),
        k.http_seconds
    );
    s.push_str(table);
    if !gates.is_empty() {
        let _ = writeln!(
            s,
            "\n### Regression gate\n\nThe issue's ratios, livevote against the peers of this run (medians of the runs; `make bench` prints the same lines):\n\n```text"
        );
        for g in gates {
            let _ = writeln!(s, "{g}");
        }
        let _ = writeln!(s, "```");
    }
    // Capacity detail.
    for r in rows.iter().filter(|r| r.scenario.id == "capacity") {
        let _ = writeln!(s, "\n### Capacity ramp: {} (last run)\n", r.target.name());
        if r.steps.is_empty() {
            let _ = writeln!(s, "No ramp recorded.");
            continue;
        }
        let _ = writeln!(
            s,
            "| connections opened | refused in step | server threads | maps | fds | RSS |\n|---|---|---|---|---|---|"
        );
        for st in &r.steps {
            if st.died {
                let _ = writeln!(
                    s,
                    "| {} accepted before it died | {}{} | **server process gone** | | | |",
                    report::thousands(r.runs.last().and_then(|x| x.get("peak")).unwrap_or(0.0)),
                    st.failed,
                    if st.errors.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", st.errors)
                    }
                );
                continue;
            }
            let _ = writeln!(
                s,
                "| {} | {}{} | {} | {} | {} | {:.0} MiB |",
                report::thousands(st.open as f64),
                st.failed,
                if st.errors.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", st.errors)
                },
                st.s.threads,
                st.s.maps,
                st.s.fds,
                st.s.rss_kib as f64 / 1024.0
            );
        }
        let last = r.steps.last().unwrap();
        let live = r.steps.iter().rev().find(|st| !st.died).unwrap_or(last);
        let stop = if last.died {
            format!(
                "stopped by: the server process died during the step after {} connections (load generator saw: {})",
                report::thousands(live.open as f64),
                if last.errors.is_empty() { "nothing" } else { &last.errors }
            )
        } else if last.failed > 0 {
            format!("stopped by: {}", last.errors)
        } else {
            format!(
                "not stopped by the server: the ramp ended at {} (BENCH_CAPACITY_MAX, capped by the load generator's own open-files limit)",
                report::thousands(k.capacity_max as f64)
            )
        };
        let _ = writeln!(
            s,
            "\nAt the last step the server was alive: {}. {stop}.",
            limit_line(&live.s, &nofile)
        );
        if !r.stderr_notes.is_empty() {
            let _ = writeln!(s, "\nServer stderr: `{}`", r.stderr_notes.join("` · `"));
        }
    }
    // Notes: each kind of note once (notes that differ only in their numbers are one kind).
    let shape = |t: &str| -> String { t.chars().filter(|c| !c.is_ascii_digit()).collect() };
    let mut seen_stderr: Vec<String> = Vec::new();
    let mut notes = String::new();
    for r in rows {
        let mut ns: Vec<String> = Vec::new();
        let mut kinds: Vec<String> = Vec::new();
        for run in &r.runs {
            for n in &run.notes {
                if !kinds.contains(&shape(n)) && ns.len() < 6 {
                    kinds.push(shape(n));
                    ns.push(n.clone());
                }
            }
        }
        if r.scenario.id != "capacity" {
            for n in &r.stderr_notes {
                if !seen_stderr.contains(&shape(n)) {
                    seen_stderr.push(shape(n));
                    ns.push(format!("server stderr: `{n}`"));
                }
            }
        }
        for f in &r.failures {
            let n = format!("run failed: {f}");
            if !ns.contains(&n) {
                ns.push(n);
            }
        }
        if !ns.is_empty() {
            let _ = writeln!(
                notes,
                "- {} · {}: {}",
                r.scenario.title,
                r.target.name(),
                ns.join("; ")
            );
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(s, "\n### Notes from the runs\n\n{notes}");
    }
    s
}

const BEGIN: &str = "<!-- BEGIN bench results: written by `make bench` (bench/src/main.rs); edits inside are overwritten -->";
const END: &str = "<!-- END bench results -->";

const TEMPLATE_HEAD: &str = "# Benchmarks\n\n`make bench` builds the server and the load generator (`bench/`, its own crate) in release mode, runs every scenario against a fresh server on 127.0.0.1, and rewrites the results section below.\n\n";

fn write_block(path: &Path, block: &str) -> std::io::Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if e > b => format!(
            "{}{BEGIN}\n{block}{END}{}",
            &old[..b],
            &old[e + END.len()..]
        ),
        _ if old.trim().is_empty() => format!("{TEMPLATE_HEAD}{BEGIN}\n{block}{END}\n"),
        _ => format!("{old}\n{BEGIN}\n{block}{END}\n"),
    };
    std::fs::write(path, new)
}
