//! The accept loop: one thread per connection, with a cap on open connections (beyond it a
//! `503` with `Retry-After`, never an unbounded pile of threads), small stacks, and a guard
//! that gives each connection's slot back however its thread ends, panics included; and the
//! graceful shutdown ([`Server::run_until`]).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::admission::{Admission, Refusal};
use crate::app::{live, App};
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
    /// Set to end the accept loop (see [`wake`]).
    stop: Arc<AtomicBool>,
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
        Ok(Server {
            listener,
            app,
            log,
            stop: Arc::default(),
        })
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

    /// Accepts connections until [`Server::run_until`]'s shutdown stops it (forever
    /// otherwise); the listener closes when it returns, so new connections are refused.
    pub fn run(self) -> io::Result<()> {
        let max = self.app.config.limits.max_connections;
        let max_per_ip = self.app.config.limits.max_connections_per_ip;
        let stack = self.app.config.limits.thread_stack;
        let mut last_complaint = None;
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            let (stream, peer) = match self.listener.accept() {
                // Woken to stop (by `wake`, or a client just then): closed unanswered.
                Ok(_) if self.stop.load(Ordering::SeqCst) => return Ok(()),
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
            let spawned = spawn_connection(stack, (stream, slot), move |(stream, slot)| {
                let settings = Settings {
                    limits: &app.config.limits,
                    access_log: log.as_deref(),
                };
                if let Some(upgraded) = conn::serve(stream, peer, &*app, &settings) {
                    run_upgraded(upgraded, slot, log, stack);
                }
            });
            if let Err(((stream, slot), e)) = spawned {
                drop(slot);
                self.app.metrics.refused(Refusal::NoThread);
                refuse(stream);
                if last_complaint.is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(1)) {
                    let why = format!("cannot start a connection thread: {e}");
                    self.log.message(Level::Error, &why);
                    last_complaint = Some(Instant::now());
                }
            }
        }
    }

    /// Accepts connections until `until` returns (it waits for SIGTERM or SIGINT, say), then
    /// shuts down gracefully, in this order:
    ///
    /// 1. `/readyz` answers `503` at once (and `livevote_draining` is 1), every response
    ///    closes its connection, and connections are still accepted for `--shutdown-delay`,
    ///    so that load balancers notice before anyone is refused;
    /// 2. the listener closes;
    /// 3. WebSockets are sent a close frame with 1001 (going away), event streams end and
    ///    long-polls are answered at once with the current state, so every client reconnects
    ///    elsewhere at once; a WebSocket that has not answered its close within
    ///    `ws::conn::CLOSE_TIMEOUT` is cut;
    /// 4. the requests in flight (votes being stored) finish and are answered;
    /// 5. the store takes no more votes, and is closed once the votes queued are stored (the
    ///    journal's file; with `--redis`, the connection, and the follower and presence
    ///    threads stop).
    ///
    /// All of it within `--shutdown-timeout` from the moment `until` returns: past it this
    /// returns [`Drained::TimedOut`] whatever is left (the caller exits anyway). A keep-alive
    /// connection idle between requests is not waited for: it has nothing in flight.
    pub fn run_until(self, until: impl FnOnce()) -> io::Result<Drained> {
        let app = Arc::clone(&self.app);
        let stop = Arc::clone(&self.stop);
        let addr = self.local_addr()?;
        let (accepting, stopped) = mpsc::channel();
        thread::Builder::new()
            .name("accept".into())
            .spawn(move || {
                let _ = accepting.send(self.run());
            })?;
        until();
        let deadline = Instant::now() + app.config.limits.shutdown_timeout;
        // On a thread of its own, so that the deadline holds however stuck a step is.
        let (done, finished) = mpsc::channel();
        let a = Arc::clone(&app);
        thread::Builder::new()
            .name("shutdown".into())
            .spawn(move || {
                let _ = done.send(drain(&a, &stop, addr, &stopped, deadline));
            })?;
        let left = deadline.saturating_duration_since(Instant::now());
        Ok(finished.recv_timeout(left).unwrap_or(Drained::TimedOut {
            requests: app.requests_in_flight(),
            websockets: app.sockets.len(),
        }))
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

/// How a graceful shutdown ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Drained {
    /// Everything in flight finished and the store is closed.
    Clean,
    /// `--shutdown-timeout` passed first, with this much still open.
    TimedOut { requests: usize, websockets: usize },
}

/// How long the shutdown waits for the accept loop to see its wake-up.
const ACCEPT_STOP: Duration = Duration::from_secs(2);

/// How often the shutdown looks whether what it waits for is done.
const DRAIN_POLL: Duration = Duration::from_millis(5);

/// Waits until `done` or `deadline`; whether it was done.
fn wait_until(deadline: Instant, done: impl Fn() -> bool) -> bool {
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(DRAIN_POLL);
    }
}

/// Where to connect to reach a listener on `addr` (an unspecified address: its loopback).
fn wake_addr(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// Ends the accept loop: the flag, then one connection to ourselves to end its blocking
/// `accept` (std has no other way to interrupt it). Connects to a listener with a full
/// backlog may wait: bounded.
fn wake(stop: &AtomicBool, addr: SocketAddr) {
    stop.store(true, Ordering::SeqCst);
    let _ = TcpStream::connect_timeout(&wake_addr(addr), Duration::from_secs(1));
}

/// The steps of [`Server::run_until`] after the signal.
fn drain(
    app: &App,
    stop: &AtomicBool,
    addr: SocketAddr,
    accept_stopped: &mpsc::Receiver<io::Result<()>>,
    deadline: Instant,
) -> Drained {
    let l = &app.config.limits;
    app.metrics.draining.store(true, Ordering::SeqCst);
    crate::log::info(&format!(
        "shutting down: /readyz answers 503; still accepting for {:.1} s \
         (--shutdown-delay), done within {:.1} s (--shutdown-timeout)",
        l.shutdown_delay.as_secs_f64(),
        l.shutdown_timeout.as_secs_f64()
    ));
    let left = || deadline.saturating_duration_since(Instant::now());
    thread::sleep(l.shutdown_delay.min(left()));
    wake(stop, addr);
    // Should the wake-up not have got through (a full backlog), the loop stops at its next
    // connection, which it closes unanswered: go on meanwhile.
    let _ = accept_stopped.recv_timeout(left().min(ACCEPT_STOP));
    let websockets = app.sockets.len();
    let streams = app.votes.local_connected()[1];
    crate::log::info(&format!(
        "no longer accepting; closing {websockets} WebSocket(s) (1001), ending \
         {streams} event stream(s) and the long-polls"
    ));
    app.polls.end_streams();
    let cut_at = (Instant::now() + crate::ws::conn::CLOSE_TIMEOUT).min(deadline);
    app.sockets
        .close_all(live::GOING_AWAY, live::SHUTTING_DOWN, cut_at);
    if !wait_until(cut_at, || app.sockets.is_empty()) {
        // Peers that did not answer the close (§7.1.1 lets us end the connection).
        app.sockets.kill_all();
    }
    let answered = wait_until(deadline, || app.requests_in_flight() == 0);
    let closed = answered && app.polls.close(deadline);
    let all_gone = wait_until(deadline, || app.sockets.is_empty());
    if answered && closed && all_gone {
        Drained::Clean
    } else {
        Drained::TimedOut {
            requests: app.requests_in_flight(),
            websockets: app.sockets.len(),
        }
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
/// Runs an upgraded connection (a WebSocket, an event stream) on a thread of its own, started
/// now, and lets the thread that read its HTTP requests end. A long-lived connection then holds
/// only what its own loop touches: the HTTP thread's deeper stack pages, and the small blocks
/// its requests freed (glibc keeps them in that thread's own cache while it lives, and gives
/// them back when it ends), are not kept for the connection's life. If no thread can be
/// started, it runs here. Out of line: see `conn::set_up`.
#[inline(never)]
fn run_upgraded(
    upgraded: conn::Handoff,
    slot: crate::admission::Slot,
    log: Option<Arc<AccessLog>>,
    stack: usize,
) {
    let run = |(upgraded, _slot, log): (conn::Handoff, _, Option<Arc<AccessLog>>)| {
        upgraded.run(log.as_deref())
    };
    if let Err((here, _)) = spawn_connection(stack, (upgraded, slot, log), run) {
        run(here);
    }
}

/// Runs `f(value)` on a new connection thread. If no thread can be started (memory maps,
/// pids), `value` is given back with the error, for the caller to answer or run here: it waits
/// in a cell the new thread takes it from, not in the closure the failed spawn drops.
fn spawn_connection<T: Send + 'static>(
    stack: usize,
    value: T,
    f: impl FnOnce(T) + Send + 'static,
) -> Result<(), (T, io::Error)> {
    fn take<T>(cell: &Mutex<Option<T>>) -> Option<T> {
        cell.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
    let cell = Arc::new(Mutex::new(Some(value)));
    let theirs = Arc::clone(&cell);
    let spawned = thread::Builder::new()
        .name("conn".into())
        .stack_size(stack)
        .spawn(move || {
            let value = take(&theirs);
            drop(theirs);
            if let Some(v) = value {
                f(v);
            }
        });
    match spawned {
        Ok(_) => Ok(()),
        Err(e) => take(&cell).map_or(Ok(()), |v| Err((v, e))),
    }
}

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
    crate::app::metrics::process::parse_max_open_files(&text).and_then(|n| usize::try_from(n).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::conn::Handler;
    use crate::http::request::{parse_request, Parse};

    fn config(timeout: Duration) -> Config {
        let mut c = Config {
            addr: "127.0.0.1:0".parse().unwrap(),
            access_log: false,
            ..Config::default()
        };
        c.limits.shutdown_delay = Duration::ZERO;
        c.limits.shutdown_timeout = timeout;
        c
    }

    #[test]
    fn a_shutdown_with_nothing_in_flight_is_clean_and_closes_the_listener() {
        let server = Server::bind(config(Duration::from_secs(10))).unwrap();
        let addr = server.local_addr().unwrap();
        let app = server.app();
        let (go, signal) = mpsc::channel::<()>();
        let runner = thread::spawn(move || server.run_until(|| signal.recv().unwrap()));
        // Accepting until the signal.
        drop(TcpStream::connect(addr).unwrap());
        go.send(()).unwrap();
        assert_eq!(runner.join().unwrap().unwrap(), Drained::Clean);
        assert!(app.draining());
        assert!(app.votes.stopped());
        assert!(TcpStream::connect(addr).is_err(), "the listener is closed");
    }

    #[test]
    fn a_request_that_never_ends_times_the_shutdown_out() {
        let server = Server::bind(config(Duration::from_millis(300))).unwrap();
        let app = server.app();
        // A request handled whose response is never written (a peer that never reads).
        let limits = app.config.limits.clone();
        let Ok(Parse::Complete(req, _)) =
            parse_request(b"GET /votes HTTP/1.1\r\nHost: localhost\r\n\r\n", &limits)
        else {
            panic!("a complete request")
        };
        let (handled, in_flight) = mpsc::channel();
        let (release, stuck) = mpsc::channel::<()>();
        let a = Arc::clone(&app);
        let writer = thread::spawn(move || {
            let _ = a.handle(&req, b"", "127.0.0.1:1".parse().unwrap());
            handled.send(()).unwrap();
            stuck.recv().unwrap();
            a.observe(Status::Ok, 0);
        });
        in_flight.recv().unwrap();
        assert_eq!(app.requests_in_flight(), 1);
        let t0 = Instant::now();
        let drained = server.run_until(|| {}).unwrap();
        assert_eq!(
            drained,
            Drained::TimedOut {
                requests: 1,
                websockets: 0
            }
        );
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        release.send(()).unwrap();
        writer.join().unwrap();
        assert_eq!(app.requests_in_flight(), 0);
    }

    #[test]
    fn the_wake_up_reaches_a_listener_on_every_interface() {
        let v4: SocketAddr = "0.0.0.0:7".parse().unwrap();
        assert_eq!(wake_addr(v4), "127.0.0.1:7".parse().unwrap());
        let v6: SocketAddr = "[::]:7".parse().unwrap();
        assert_eq!(wake_addr(v6), "[::1]:7".parse().unwrap());
        let own: SocketAddr = "10.1.2.3:7".parse().unwrap();
        assert_eq!(wake_addr(own), own);
    }
}
