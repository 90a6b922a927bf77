//! `livevote-bench`: the benchmark suite behind `make bench`.
//!
//! Starts a fresh server for every run of every scenario (on 127.0.0.1, a free port), drives it
//! with an async load generator in this process, stops it by pid, and prints a table of medians
//! over the runs; with `--out FILE` it also writes the results into FILE between two marker
//! lines (BENCHMARKS.md), keeping everything else in the file.
//!
//! ```text
//! livevote-bench --server target/release/livevote --www www [--peer bench/target/release/peer_tungstenite] [--out BENCHMARKS.md]
//! ```
//!
//! Environment: `BENCH_RUNS` (runs per scenario, default 3), `BENCH_ONLY` (comma-separated
//! scenario ids), `BENCH_PEERS=0` (livevote only), `BENCH_VOTES` (50),
//! `BENCH_VOTE_INTERVAL_MS` (20), `BENCH_HTTP_SECONDS` (5), `BENCH_CAPACITY_MAX` (20000,
//! capped by this process's open-files limit), `BENCH_CAPACITY_STEP` (1000),
//! `BENCH_QUIET_WAIT` (10: seconds to wait before each run for other work on the machine to
//! calm down; 0 to not wait).

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

struct Scenario {
    id: &'static str,
    title: &'static str,
    peers: bool,
    /// Wall-clock bound of one run (setup included); past it the run is reported as timed out.
    limit: Duration,
    /// The issue's target, as text.
    target: &'static str,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        id: "ws_fanout_1k",
        title: "WS fan-out N=1,000",
        peers: true,
        limit: Duration::from_secs(60),
        target: "p99 ≤ 8 ms",
    },
    Scenario {
        id: "ws_fanout_10k",
        title: "WS fan-out N=10,000",
        peers: true,
        limit: Duration::from_secs(150),
        target: "all connected, p99 ≤ 60 ms",
    },
    Scenario {
        id: "longpoll_1k",
        title: "long-poll fan-out N=1,000",
        peers: false,
        limit: Duration::from_secs(60),
        target: "p99 ≤ 12 ms, none missed",
    },
    Scenario {
        id: "sse_1k",
        title: "SSE fan-out N=1,000",
        peers: false,
        limit: Duration::from_secs(60),
        target: "–",
    },
    Scenario {
        id: "get_index",
        title: "GET /index, 50 keep-alive conns",
        peers: false,
        limit: Duration::from_secs(60),
        target: "≥ 110,000 req/s",
    },
    Scenario {
        id: "post_vote_memory",
        title: "POST /vote (--memory), 50 conns",
        peers: false,
        limit: Duration::from_secs(60),
        target: "≥ 120,000 req/s",
    },
    Scenario {
        id: "post_vote_durable",
        title: "POST /vote (--data, journal), 50 conns",
        peers: false,
        limit: Duration::from_secs(60),
        target: "reported beside",
    },
    Scenario {
        id: "idle_memory_5k",
        title: "idle WS memory, 5,000 open",
        peers: true,
        limit: Duration::from_secs(90),
        target: "≤ 8 KiB/conn",
    },
    Scenario {
        id: "echo",
        title: "echo 50 × 2,000 × 128 B",
        peers: true,
        limit: Duration::from_secs(90),
        target: "≥ 125,000 msg/s",
    },
    Scenario {
        id: "capacity",
        title: "WS capacity, default limits",
        peers: true,
        limit: Duration::from_secs(300),
        target: "≥ 15,000",
    },
    // Many instances (`--redis`): each beside one instance, alternating, in the same run.
    Scenario {
        id: "cluster_ws_fanout_1k",
        title: "WS fan-out N=1,000 over 3 instances",
        peers: false,
        limit: Duration::from_secs(60),
        target: "p99 ≤ 1.5× one instance",
    },
    Scenario {
        id: "cluster_ws_fanout_10k",
        title: "WS fan-out N=10,000 over 3 instances",
        peers: false,
        limit: Duration::from_secs(150),
        target: "p99 ≤ 1.5× one instance",
    },
    Scenario {
        id: "cluster_post_vote",
        title: "POST /vote through Redis over 3 instances, 50 conns (1 instance: --data journal)",
        peers: false,
        limit: Duration::from_secs(60),
        target: "≥ 1.0× one durable instance",
    },
    Scenario {
        id: "cluster_capacity",
        title: "WS capacity over 3 instances, one vote reaching all",
        peers: false,
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
        "ws_fanout_1k" | "ws_fanout_10k" => Some(("p99", true)),
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
    peer: Option<PathBuf>,
    www: PathBuf,
    out: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut a = Args {
        server: PathBuf::from("target/release/livevote"),
        peer: None,
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
            "--peer" => a.peer = Some(PathBuf::from(val())),
            "--www" => a.www = PathBuf::from(val()),
            "--out" => a.out = Some(PathBuf::from(val())),
            "-h" | "--help" => {
                println!("usage: livevote-bench --server PATH --www DIR [--peer PATH] [--out BENCHMARKS.md]\n(see bench/src/main.rs for the BENCH_* environment)");
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
    let peers = env_num("BENCH_PEERS", 1.0) != 0.0 && args.peer.is_some();
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
        if peers { "on" } else { "off" }
    );

    let mut rows: Vec<Row> = Vec::new();
    for sc in SCENARIOS {
        if let Some(o) = &only {
            if !o.iter().any(|x| x == sc.id) {
                continue;
            }
        }
        let mut targets = vec![Target::Livevote];
        if sc.peers && peers {
            targets.push(Target::Peer);
        }
        if is_cluster(sc.id) {
            targets.push(Target::Cluster);
        }
        // Runs alternate between the servers (livevote, peer, livevote, …), so that both
        // see the same background load on a shared machine.
        let mut scenario_rows: Vec<Row> = targets
            .iter()
            .map(|&target| Row {
                scenario: sc,
                target,
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
                    if l.is_empty() || l.contains("listening on") {
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
    println!("load generator + servers: {total:.0} s in all");
    if let Some(out) = &args.out {
        let block = render_block(&rows, runs, &table, &knobs, &args, total, &load_at_start);
        match write_block(out, &block) {
            Ok(()) => eprintln!("livevote-bench: results written to {}", out.display()),
            Err(e) => eprintln!("livevote-bench: cannot write {}: {e}", out.display()),
        }
    }
    let failed = rows.iter().any(|r| r.runs.is_empty());
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

fn launch_for(id: &str, target: Target, args: &Args, www: &str, tmp: &Path, run: usize) -> Launch {
    match target {
        Target::Peer => Launch {
            bin: args.peer.clone().expect("peer binary"),
            args: vec![],
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
                args: a,
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

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = v.collect();
    median(v)
}

fn render_table(rows: &[Row], runs: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| scenario | server | result (median of {runs} run{}) | load generator CPU | server CPU | other CPU | measured | issue target | target met | vs peer (or one instance) |",
        if runs == 1 { "" } else { "s" }
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    let by_id: BTreeMap<(&str, Target), &Row> = rows
        .iter()
        .map(|r| ((r.scenario.id, r.target), r))
        .collect();
    for r in rows {
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
            Target::Peer => false,
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
        // Peers are compared with livevote; three instances with one instance.
        let (against, other_name) = match r.target {
            Target::Cluster => (Some(Target::Livevote), "1 instance"),
            Target::Livevote if !is_cluster(r.scenario.id) => (Some(Target::Peer), "peer"),
            _ => (None, ""),
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

fn render_block(
    rows: &[Row],
    runs: usize,
    table: &str,
    k: &Knobs,
    args: &Args,
    total: f64,
    load_at_start: &str,
) -> String {
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
        "Load generator: `bench/target/release/livevote-bench --server {} --www {}{}` (tokio, 2 worker threads, on the same 2 cores as the server). \
Servers: `livevote --addr 127.0.0.1:PORT --www www --quiet --max-connections-per-ip 0 --memory` (durable POST: `--data TMP/votes.journal` instead of `--memory`); \
the capacity run uses exactly these flags, so every other limit is the default. Peer: `peer_tungstenite --addr 127.0.0.1:PORT` (bench/src/bin/peer_tungstenite.rs).\n",
        args.server.display(),
        args.www.display(),
        args.peer
            .as_ref()
            .map(|p| format!(" --peer {}", p.display()))
            .unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "Fan-out: {} votes, one every {} ms; latency = delivery time at a subscriber − the vote's send time, over every (vote, subscriber) pair; \
`to-all p50` = median over votes of the time until the last subscriber had it; `missing` = (vote, subscriber) pairs never delivered within 10 s after the last vote. \
HTTP: 50 keep-alive connections, one request in flight each, {} s. CPU columns: seconds of CPU during the measured phase (load generator from getrusage, server from /proc/PID/stat, other = the rest of the machine from /proc/stat: anything else running on the same two cores); `measured` = that phase's wall time.\n",
        k.votes,
        k.vote_interval.as_millis(),
        k.http_seconds
    );
    s.push_str(table);
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
