//! The real `livevote` binary as a child process: started on the address it prints, its stderr
//! drained for the life of the process (so it never blocks on a full pipe) and kept, and killed
//! by its handle (never by name) and reaped when its guard drops, also when a test fails.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::www;

pub const BIN: &str = env!("CARGO_BIN_EXE_livevote");

/// Hang guard for the binary to print its address, or to exit when it must refuse to start.
pub const START_LIMIT: Duration = Duration::from_secs(20);

/// `--addr 127.0.0.1:0 --quiet --www <the repository's www/>`.
pub fn local_args() -> Vec<OsString> {
    let mut args: Vec<OsString> = ["--addr", "127.0.0.1:0", "--quiet", "--www"]
        .map(OsString::from)
        .to_vec();
    args.push(www().into());
    args
}

/// A `livevote` process; killed (SIGKILL, by its handle) and reaped when dropped.
pub struct Livevote {
    child: Child,
    /// Where it listens, from its `listening on http://ADDR/` line (0.0.0.0:0 until then).
    pub addr: SocketAddr,
    /// That line.
    pub banner: String,
    stderr: Arc<Mutex<Vec<String>>>,
    drain: Option<JoinHandle<()>>,
}

impl Livevote {
    /// Spawns the binary with `args` in the repository's directory, and a thread that keeps
    /// draining its stderr into a shared list and the returned channel.
    fn spawn_with_lines(
        args: impl IntoIterator<Item = impl AsRef<OsStr>>,
    ) -> (Livevote, mpsc::Receiver<String>) {
        let mut cmd = Command::new(BIN);
        cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
        Livevote::spawn_command(cmd)
    }

    /// [`spawn_with_lines`](Self::spawn_with_lines) for a command the caller built (its own
    /// directory and environment).
    fn spawn_command(mut cmd: Command) -> (Livevote, mpsc::Receiver<String>) {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn livevote");
        let pipe = child.stderr.take().expect("stderr is piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = Arc::clone(&lines);
        let drain = thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let server = Livevote {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            banner: String::new(),
            stderr: lines,
            drain: Some(drain),
        };
        (server, rx)
    }

    /// Spawns the binary with `args` without waiting for anything.
    pub fn spawn(args: impl IntoIterator<Item = impl AsRef<OsStr>>) -> Livevote {
        Livevote::spawn_with_lines(args).0
    }

    /// Spawns the binary with `args` and waits for its `listening on http://ADDR/` line.
    pub fn start(args: impl IntoIterator<Item = impl AsRef<OsStr>>) -> Livevote {
        let mut cmd = Command::new(BIN);
        cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
        Livevote::start_command(cmd)
    }

    /// [`start`](Self::start) for a command the caller built (its own directory and
    /// environment).
    pub fn start_command(cmd: Command) -> Livevote {
        let (mut server, rx) = Livevote::spawn_command(cmd);
        let deadline = Instant::now() + START_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on http://").nth(1) {
                        let addr = rest.split('/').next().unwrap_or_default();
                        server.addr = addr.parse().expect("the printed address");
                        server.banner = line;
                        return server;
                    }
                }
                Err(_) => {
                    let status = server.child.try_wait();
                    panic!(
                        "livevote did not start ({status:?}); stderr:\n{}",
                        server.stderr_text()
                    )
                }
            }
        }
    }

    /// [`start`](Self::start) with [`local_args`], then `extra`.
    pub fn start_local(extra: impl IntoIterator<Item = impl AsRef<OsStr>>) -> Livevote {
        let mut args = local_args();
        args.extend(extra.into_iter().map(|a| a.as_ref().to_os_string()));
        Livevote::start(args)
    }

    /// Its process id (to send it a signal).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it has written on stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Threads of the process, from `/proc/PID/status` (Linux).
    pub fn threads(&self) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("a Threads: line")
    }

    /// `kill -9`, reap, and return everything it wrote on stderr.
    pub fn kill9(mut self) -> String {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server");
        self.finish_stderr()
    }

    /// Waits for a process that must refuse to start to exit: its exit code and stderr. Panics
    /// (and kills it) if it is still running after [`START_LIMIT`].
    pub fn exit_status(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + START_LIMIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("poll the server") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "livevote started although it should have refused; stderr:\n{}",
                self.stderr_text()
            );
            thread::sleep(Duration::from_millis(20));
        };
        (status.code(), self.finish_stderr())
    }

    /// Everything it wrote on stderr, once the process has ended and the pipe is drained.
    fn finish_stderr(&mut self) -> String {
        if let Some(d) = self.drain.take() {
            let _ = d.join();
        }
        self.stderr_text()
    }
}

impl Drop for Livevote {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
