//! The accept loop: one thread per connection, with a cap on open connections (beyond it a
//! `503` with `Retry-After`, never an unbounded pile of threads), small stacks, and a guard
//! that gives each connection's slot back however its thread ends, panics included.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::admission::{Admission, Refusal};
use crate::app::App;
use crate::config::Config;
use crate::http::access_log::{AccessLog, ACCESS_LOG_QUEUE};
use crate::http::conn::{self, Settings};
use crate::http::{Response, Status};
use crate::log::Level;
use crate::net::{self, Linger};

/// A bound server, not yet accepting.
pub struct Server {
    listener: TcpListener,
    app: Arc<App>,
    /// The queue to stderr: the access log (when it is on) and the accept loop's complaints,
    /// so that a stderr nobody reads stalls neither connections nor the accept loop.
    log: Arc<AccessLog>,
}

impl Server {
    pub fn bind(mut config: Config) -> io::Result<Server> {
        // Start, stop and error messages from here on are in the access log's format.
        crate::log::set_format(config.log_format);
        // The same rules as the command line's, for a `Config` built in code.
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.0))?;
        // Every connection holds a descriptor and a thread, and the machine's limits on those
        // are hard walls: past the open-files limit `accept` fails and nobody gets the clear
        // 503; past `vm.max_map_count` a new thread cannot map its signal stack and the Rust
        // runtime aborts the whole process. Keep the cap below all of them.
        let limits = system_limits();
        if let Some((room, why)) = limits.connection_room() {
            if config.limits.max_connections > room {
                crate::log::warn(&format!(
                    "--max-connections {} lowered to {room}: {why}",
                    config.limits.max_connections
                ));
                config.limits.max_connections = room;
            }
        }
        let listener = TcpListener::bind(config.addr)?;
        // The real port (for `--addr …:0`): the Host allowlist names the bind address with it.
        config.addr = listener.local_addr()?;
        let app = App::new(config)?;
        let log = Arc::new(
            AccessLog::start(
                io::stderr(),
                ACCESS_LOG_QUEUE,
                Arc::clone(&app.metrics.access_log_dropped),
            )?
            .with_format(app.config.log_format),
        );
        Ok(Server { listener, app, log })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn app(&self) -> Arc<App> {
        Arc::clone(&self.app)
    }

    /// The connection counts (they return to zero when every client has gone).
    pub fn admission(&self) -> Arc<Admission> {
        Arc::clone(&self.app.admission)
    }

    /// Accepts connections forever.
    pub fn run(self) -> io::Result<()> {
        let max = self.app.config.limits.max_connections;
        let max_per_ip = self.app.config.limits.max_connections_per_ip;
        let stack = self.app.config.limits.thread_stack;
        let mut last_complaint = None;
        loop {
            let (stream, peer) = match self.listener.accept() {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors or similar: back off instead of spinning; the
                    // listener stays up and recovers as connections close. Say so once a
                    // second at most.
                    if last_complaint.is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(1))
                    {
                        self.log.message(Level::Error, &format!("accept: {e}"));
                        last_complaint = Some(Instant::now());
                    }
                    thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            let slot = match self.app.admission.admit(peer.ip(), max, max_per_ip) {
                Ok(slot) => slot,
                Err(why) => {
                    self.app.metrics.refused(why);
                    refuse(stream);
                    continue;
                }
            };
            let app = Arc::clone(&self.app);
            let log = app.config.access_log.then(|| Arc::clone(&self.log));
            // The stream waits in a cell the new thread takes it from, so that if the thread
            // cannot be created (memory maps, pids) it is still here to be told `503`.
            let cell = Arc::new(Mutex::new(Some(stream)));
            let theirs = Arc::clone(&cell);
            let spawned = thread::Builder::new()
                .name("conn".into())
                .stack_size(stack)
                .spawn(move || {
                    let _slot = slot;
                    let Some(stream) = theirs.lock().unwrap_or_else(PoisonError::into_inner).take()
                    else {
                        return;
                    };
                    drop(theirs);
                    let settings = Settings {
                        limits: &app.config.limits,
                        access_log: log.as_deref(),
                    };
                    conn::serve(stream, peer, &*app, &settings);
                });
            if let Err(e) = spawned {
                // The closure (and its slot) was dropped: the slot is back.
                if let Some(stream) = cell.lock().unwrap_or_else(PoisonError::into_inner).take() {
                    self.app.metrics.refused(Refusal::NoThread);
                    refuse(stream);
                }
                if last_complaint.is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(1)) {
                    let why = format!("cannot start a connection thread: {e}");
                    self.log.message(Level::Error, &why);
                    last_complaint = Some(Instant::now());
                }
            }
        }
    }

    /// Runs the accept loop on a background thread and returns the bound address (tests).
    pub fn spawn(self) -> io::Result<SocketAddr> {
        let addr = self.local_addr()?;
        thread::Builder::new()
            .name("accept".into())
            .spawn(move || self.run())?;
        Ok(addr)
    }
}

/// The refusal runs on the accept thread, so it never waits for the peer: the `503` (a few
/// hundred bytes, which a new connection's empty send buffer always takes) has 100 ms in all.
const REFUSE_WRITE: Duration = Duration::from_millis(100);

/// After a refusal: take only what the client has already sent (so that closing sends no
/// reset, which could destroy the `503` before the client reads it), at most 64 KiB, without
/// waiting.
const REFUSE_LINGER: Linger = Linger {
    max_bytes: 64 * 1024,
    quiet: Duration::ZERO,
    total: Duration::ZERO,
};

/// Over the connection cap: a short `503` written without waiting, then close.
fn refuse(stream: TcpStream) {
    let mut out = Vec::with_capacity(256);
    Response::error(
        Status::ServiceUnavailable,
        "too many connections, try again shortly",
    )
    .header("Retry-After", "1")
    .closing()
    .write_to(&mut out, false, false);
    let _ = net::write_all_by(&stream, &out, Instant::now() + REFUSE_WRITE);
    net::linger_close(&stream, REFUSE_LINGER);
}

/// Descriptors kept free for everything that is not a connection (listener, files, stdio).
const FD_RESERVE: usize = 64;
/// Memory maps one connection thread costs: its stack and guard page, and the runtime's
/// signal stack and its guard page (measured: 4.0 per thread).
const MAPS_PER_THREAD: usize = 4;
/// Memory maps kept free for everything else (the binary, libraries, heap arenas, growth).
const MAPS_RESERVE: usize = 2048;
/// Thread ids kept free for the rest of the machine (pids and threads share one space).
const PIDS_RESERVE: usize = 4096;

/// The machine's limits that bound how many connection threads can exist.
struct SystemLimits {
    open_files: Option<usize>,
    max_map_count: Option<usize>,
    pid_max: Option<usize>,
}

fn system_limits() -> SystemLimits {
    let number =
        |path: &str| -> Option<usize> { std::fs::read_to_string(path).ok()?.trim().parse().ok() };
    SystemLimits {
        open_files: open_files_limit(),
        max_map_count: number("/proc/sys/vm/max_map_count"),
        pid_max: number("/proc/sys/kernel/pid_max"),
    }
}

impl SystemLimits {
    /// The most connections these limits leave room for, and which limit that is.
    fn connection_room(&self) -> Option<(usize, String)> {
        let candidates = [
            self.open_files.map(|n| {
                (
                    n.saturating_sub(FD_RESERVE),
                    format!("the open-files limit is {n}"),
                )
            }),
            self.max_map_count.map(|n| {
                (
                    n.saturating_sub(MAPS_RESERVE) / MAPS_PER_THREAD,
                    format!("vm.max_map_count is {n} ({MAPS_PER_THREAD} per connection thread)"),
                )
            }),
            self.pid_max.map(|n| {
                (
                    n.saturating_sub(PIDS_RESERVE),
                    format!("kernel.pid_max is {n}"),
                )
            }),
        ];
        candidates
            .into_iter()
            .flatten()
            .min_by_key(|(room, _)| *room)
            .map(|(room, why)| (room.max(1), why))
    }
}
/// The soft limit on open files, from `/proc/self/limits` (std has no `getrlimit`; Linux only,
/// None elsewhere or when unlimited).
fn open_files_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
