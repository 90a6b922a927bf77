//! The machine and the processes: starting and stopping a server by pid, reading
//! `/proc/<pid>/…`, the load generator's own CPU time, limits.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which server a scenario runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    Livevote,
    /// The bare thread-per-connection peer (bench/src/bin/peer_tungstenite.rs).
    Tungstenite,
    /// node's `http` and `ws` (bench/peer_node/server.js).
    Node,
    /// Three livevote instances on one Redis (`--redis`), clients spread over them.
    Cluster,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Livevote => "livevote",
            Target::Tungstenite => "tungstenite peer",
            Target::Node => "node ws peer",
            Target::Cluster => "livevote ×3 + Redis",
        }
    }

    /// A comparison peer (not livevote): it speaks only the subset the scenarios drive.
    pub fn is_peer(self) -> bool {
        matches!(self, Target::Tungstenite | Target::Node)
    }

    /// The one-word name in the gate lines.
    pub fn short(self) -> &'static str {
        match self {
            Target::Livevote => "livevote",
            Target::Tungstenite => "tungstenite",
            Target::Node => "node",
            Target::Cluster => "cluster",
        }
    }
}

/// How to start a server.
#[derive(Clone, Debug)]
pub struct Launch {
    pub bin: PathBuf,
    /// Arguments before `--addr` (node's script).
    pub pre: Vec<String>,
    /// Extra arguments after `--addr 127.0.0.1:PORT`.
    pub args: Vec<String>,
    /// Runs under `nice -n NICE` when not 0 (`nice` execs the server: the pid is the server's).
    pub nice: i32,
}

/// `program`, under `nice -n NICE` when `nice` is not 0.
fn command(program: &Path, nice: i32) -> Command {
    if nice == 0 {
        return Command::new(program);
    }
    let mut c = Command::new("nice");
    c.arg("-n").arg(nice.to_string()).arg(program);
    c
}

/// A running server process (for [`Target::Cluster`]: the first instance, holding the other
/// two and their redis-server).
pub struct Server {
    child: Child,
    pub pid: u32,
    pub port: u16,
    pub stderr_path: PathBuf,
    others: Vec<Server>,
    redis: Option<Child>,
}

/// What a scenario needs to know about its server (cheap to copy into tasks).
#[derive(Clone, Copy, Debug)]
pub struct Info {
    pub pid: u32,
    pub port: u16,
    pub target: Target,
    /// Every instance's port (the first is `port`); `instances` of them are used.
    pub ports: [u16; 3],
    pub instances: usize,
    pub pids: [u32; 3],
}

impl Info {
    /// The instance the `i`-th client uses: clients spread evenly over the instances.
    pub fn port_for(&self, i: usize) -> u16 {
        self.ports[i % self.instances.max(1)]
    }
}

fn free_port() -> std::io::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl Server {
    pub fn start(launch: &Launch, tmp: &Path, tag: &str) -> Result<Server, String> {
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        let stderr_path = tmp.join(format!("{tag}.stderr"));
        let err = fs::File::create(&stderr_path).map_err(|e| format!("{e}"))?;
        let mut cmd = command(&launch.bin, launch.nice);
        cmd.args(&launch.pre)
            .arg("--addr")
            .arg(format!("127.0.0.1:{port}"))
            .args(&launch.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(err));
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", launch.bin.display()))?;
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let text = fs::read_to_string(&stderr_path).unwrap_or_default();
                return Err(format!(
                    "server exited at start ({status}): {}",
                    text.trim()
                ));
            }
            if TcpStream::connect_timeout(
                &format!("127.0.0.1:{port}").parse().unwrap(),
                Duration::from_millis(200),
            )
            .is_ok()
            {
                break;
            }
            if Instant::now() > deadline {
                let mut s = Server {
                    child,
                    pid,
                    port,
                    stderr_path,
                    others: Vec::new(),
                    redis: None,
                };
                s.stop();
                return Err("server did not listen within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Let the probe connection's thread go away before anything is measured.
        std::thread::sleep(Duration::from_millis(100));
        Ok(Server {
            child,
            pid,
            port,
            stderr_path,
            others: Vec::new(),
            redis: None,
        })
    }

    /// Debian's redis-server on a free port in its own directory, durable (`appendonly yes`,
    /// `appendfsync always`, `noeviction`), then three instances of `launch` with `--redis`.
    pub fn start_cluster(launch: &Launch, tmp: &Path, tag: &str) -> Result<Server, String> {
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        let dir = tmp.join(format!("{tag}-redis"));
        fs::create_dir_all(&dir).map_err(|e| format!("{e}"))?;
        let mut redis = command(Path::new("redis-server"), launch.nice)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&dir)
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .args(["--maxmemory-policy", "noeviction", "--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot run redis-server ({e}): run `make redis-deps` (Debian's redis-server)"
                )
            })?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if redis.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
                let _ = redis.kill();
                let _ = redis.wait();
                return Err("redis-server did not start".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut with_redis = launch.clone();
        with_redis.args.push("--redis".into());
        with_redis.args.push(format!("redis://127.0.0.1:{port}"));
        let mut started = Vec::new();
        for k in 0..3 {
            match Server::start(&with_redis, tmp, &format!("{tag}-{k}")) {
                Ok(s) => started.push(s),
                Err(e) => {
                    drop(started);
                    let _ = redis.kill();
                    let _ = redis.wait();
                    return Err(e);
                }
            }
        }
        let mut first = started.remove(0);
        first.others = started;
        first.redis = Some(redis);
        Ok(first)
    }

    pub fn info(&self, target: Target) -> Info {
        let mut ports = [self.port; 3];
        let mut pids = [self.pid; 3];
        for (k, o) in self.others.iter().enumerate() {
            ports[k + 1] = o.port;
            pids[k + 1] = o.pid;
        }
        Info {
            pid: self.pid,
            port: self.port,
            target,
            ports,
            instances: 1 + self.others.len(),
            pids,
        }
    }

    /// SIGTERM to this pid, then SIGKILL to it after 2 s, and the same to the other
    /// instances; their redis-server is killed last, so that no instance still running logs
    /// Redis going away (the results quote the servers' stderr).
    pub fn stop(&mut self) {
        for o in &mut self.others {
            o.stop();
        }
        self.stop_self();
        if let Some(mut r) = self.redis.take() {
            let _ = r.kill();
            let _ = r.wait();
        }
    }

    fn stop_self(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn exited(&mut self) -> Option<String> {
        for o in &mut self.others {
            if let Some(e) = o.exited() {
                return Some(e);
            }
        }
        match self.child.try_wait() {
            Ok(Some(s)) => Some(s.to_string()),
            _ => None,
        }
    }

    pub fn stderr(&self) -> String {
        let mut text = fs::read_to_string(&self.stderr_path).unwrap_or_default();
        for o in &self.others {
            text.push_str(&o.stderr());
        }
        text
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One look at a process through /proc.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcSample {
    pub rss_kib: u64,
    pub threads: u64,
    pub maps: u64,
    pub fds: u64,
    /// user + system CPU seconds so far.
    pub cpu_s: f64,
    /// The process exists and is not a zombie.
    pub alive: bool,
}

pub fn sample(pid: u32) -> ProcSample {
    let mut s = ProcSample::default();
    if let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) {
        for line in status.lines() {
            let num = || {
                line.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            if let Some(state) = line.strip_prefix("State:") {
                s.alive = !matches!(state.trim().chars().next(), Some('Z') | Some('X'));
            } else if line.starts_with("VmRSS:") {
                s.rss_kib = num();
            } else if line.starts_with("Threads:") {
                s.threads = num();
            }
        }
    }
    if let Ok(maps) = fs::read(format!("/proc/{pid}/maps")) {
        s.maps = maps.iter().filter(|&&b| b == b'\n').count() as u64;
    }
    if let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) {
        s.fds = dir.count() as u64;
    }
    s.cpu_s = proc_cpu_s(pid);
    s
}

/// utime + stime of a process, in seconds, from /proc/<pid>/stat.
pub fn proc_cpu_s(pid: u32) -> f64 {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    // Fields after the comm: state is field 3, utime 14, stime 15 → indexes 11 and 12 here.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / if hz > 0.0 { hz } else { 100.0 }
}

/// CPU seconds the whole machine spent busy so far (all CPUs; /proc/stat, idle and iowait
/// excluded).
pub fn machine_busy_s() -> f64 {
    let Ok(stat) = fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(line) = stat.lines().next() else {
        return 0.0;
    };
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    if f.len() < 5 {
        return 0.0;
    }
    // user nice system idle iowait irq softirq steal (guest time is inside user already).
    let busy: f64 = f.iter().take(8).sum::<f64>() - f[3] - f[4];
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    busy / if hz > 0.0 { hz } else { 100.0 }
}

/// The 1-minute load average.
pub fn loadavg() -> String {
    read_trim("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// This process's CPU time (all threads, user + system), from getrusage.
pub fn self_cpu_s() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe {
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Raises this process's soft open-files limit to the hard limit; returns (soft, hard).
pub fn raise_nofile() -> (u64, u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        if r.rlim_cur < r.rlim_max {
            let want = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                r = want;
            }
        }
    }
    (r.rlim_cur, r.rlim_max)
}

pub fn read_trim(path: &str) -> String {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// A one-paragraph description of the machine.
pub fn machine() -> Vec<(String, String)> {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let mem = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0))
        .unwrap_or_else(|| "?".into());
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get().to_string())
        .unwrap_or_else(|_| "?".into());
    let (soft, hard) = {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
        (r.rlim_cur, r.rlim_max)
    };
    vec![
        ("CPU".into(), cpu),
        ("nproc".into(), nproc),
        ("memory".into(), mem),
        (
            "kernel".into(),
            format!(
                "{} {}",
                read_trim("/proc/sys/kernel/ostype"),
                read_trim("/proc/sys/kernel/osrelease")
            ),
        ),
        (
            "open files (soft/hard, per process)".into(),
            format!("{soft}/{hard}"),
        ),
        (
            "kernel.pid_max".into(),
            read_trim("/proc/sys/kernel/pid_max"),
        ),
        (
            "kernel.threads-max".into(),
            read_trim("/proc/sys/kernel/threads-max"),
        ),
        (
            "vm.max_map_count".into(),
            read_trim("/proc/sys/vm/max_map_count"),
        ),
        (
            "net.core.somaxconn".into(),
            read_trim("/proc/sys/net/core/somaxconn"),
        ),
        (
            "ephemeral ports".into(),
            read_trim("/proc/sys/net/ipv4/ip_local_port_range").replace('\t', "–"),
        ),
    ]
}
