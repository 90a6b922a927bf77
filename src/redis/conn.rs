//! One blocking connection to Redis ([`Conn`]) and a client that replaces it when it fails
//! ([`Client`]). This is the layer's only I/O: bytes go through `resp`, and every read, write
//! and connect has a wall-clock deadline (`net::Reader`/`net::Writer`), so a dead or slow
//! server fails a call in bounded time instead of hanging it.
//!
//! The one thing a caller must know about a failed call is whether the command may have run:
//! a vote whose `EVAL` may have been applied must be answered "outcome unknown", one that
//! certainly was not may be answered "not counted". [`Error::may_have_run`] says which.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::resp::{self, Limits, Value};
use super::url::RedisUrl;
use crate::net::{is_timeout, InBuf, Reader, Writer};

/// Default for [`Options::connect_timeout`].
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default for [`Options::timeout`].
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes asked of one read: replies are small, except the odd large bulk string.
const READ_CHUNK: usize = 16 << 10;
/// A receive buffer that grew past this (a large reply) is given back once it is empty.
const KEEP_BUFFER: usize = 256 << 10;

/// The first reconnect delay after a failed connect; it doubles with each further failure.
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(50);
/// The longest reconnect delay, jitter included.
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Each delay is scattered by up to this many percent either way, so that many instances that
/// lost the same Redis at the same moment do not all come back in step.
pub const BACKOFF_JITTER_PERCENT: u64 = 50;

/// How a connection is made and how long its calls may take.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Longest wait for the TCP connection (per address the host resolves to, within one
    /// overall deadline). Default [`CONNECT_TIMEOUT`], 2 s.
    pub connect_timeout: Duration,
    /// Longest a call may take, from its first byte written to its last reply read, unless the
    /// caller gives its own deadline (`call_by`). Default [`CALL_TIMEOUT`], 5 s.
    pub timeout: Duration,
    /// What a reply may make us hold. Default [`Limits::default`].
    pub limits: Limits,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            connect_timeout: CONNECT_TIMEOUT,
            timeout: CALL_TIMEOUT,
            limits: Limits::default(),
        }
    }
}

/// What went wrong on the wire, whichever side of "sent" it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The deadline passed.
    Timeout,
    /// The server closed the connection.
    Closed,
    /// The server had closed the connection while it was idle (Redis's `timeout`, a restart),
    /// found before the command was written: it was not sent, and a new connection may send it.
    ClosedIdle,
    /// Any other socket error.
    Io {
        kind: io::ErrorKind,
        message: String,
    },
    /// The server's bytes are not RESP (or exceed our limits): we are out of step with it.
    Protocol(resp::Error),
    /// An earlier failure left this connection out of step; it sends nothing more.
    Broken,
}

impl Failure {
    fn io(e: &io::Error) -> Failure {
        if is_timeout(e) {
            Failure::Timeout
        } else {
            Failure::Io {
                kind: e.kind(),
                message: e.to_string(),
            }
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Timeout => f.write_str("timed out"),
            Failure::Closed => f.write_str("connection closed by the server"),
            Failure::ClosedIdle => f.write_str("connection closed by the server while idle"),
            Failure::Io { message, .. } => write!(f, "I/O error: {message}"),
            Failure::Protocol(e) => write!(f, "protocol error: {e}"),
            Failure::Broken => f.write_str("connection unusable after an earlier failure"),
        }
    }
}

/// Why a call failed. Error *replies* (`-ERR …`) are not errors here: they are
/// [`Value::Error`]s, one per command, because in a pipeline the others still ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// No TCP connection could be made to `addr` (or the host did not resolve).
    Connect { addr: String, message: String },
    /// The server answered `AUTH` or `SELECT` at connect with an error.
    Rejected { step: &'static str, message: String },
    /// The last connect failed and the next attempt is not due yet.
    Backoff { retry_in: Duration },
    /// The command did not reach the server whole, so it did not run: Redis runs only
    /// complete commands.
    NotSent(Failure),
    /// The command may have reached the server and run, but its reply did not come back.
    Unknown(Failure),
}

impl Error {
    /// True when the command may have run (the caller cannot tell, and must say so or ask
    /// again); false when it certainly did not.
    pub fn may_have_run(&self) -> bool {
        matches!(self, Error::Unknown(_))
    }

    /// True when a deadline passed.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            Error::NotSent(Failure::Timeout) | Error::Unknown(Failure::Timeout)
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Connect { addr, message } => {
                write!(
                    f,
                    "cannot connect to Redis at {addr}: {message} (command not sent)"
                )
            }
            Error::Rejected { step, message } => write!(f, "Redis refused {step}: {message}"),
            Error::Backoff { retry_in } => write!(
                f,
                "Redis unreachable, next reconnect in {} ms (command not sent)",
                retry_in.as_millis()
            ),
            Error::NotSent(e) => write!(f, "Redis command not sent: {e}; it did not run"),
            Error::Unknown(e) => write!(
                f,
                "Redis command may have been sent: {e}; it may or may not have run"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// A connection's life: usable, or out of step after a failure (a late reply could be taken
/// for the next command's), so it must be dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Ready,
    Broken,
}

/// One connection to Redis, authenticated and on its database.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    reader: Reader,
    writer: Writer,
    /// Bytes received and not decoded yet (zeroed only where it grows).
    buf: InBuf,
    opts: Options,
    state: State,
}

impl Conn {
    /// Connects to `url` within `opts.connect_timeout`, then sends `AUTH` and `SELECT` as the
    /// URL asks (pipelined, one round trip) within `opts.timeout`.
    pub fn connect(url: &RedisUrl, opts: &Options) -> Result<Conn, Error> {
        Conn::connect_by(url, opts, Instant::now() + opts.timeout)
    }

    /// As [`connect`](Conn::connect), and done by `deadline` whatever the options say.
    pub fn connect_by(url: &RedisUrl, opts: &Options, deadline: Instant) -> Result<Conn, Error> {
        let now = Instant::now();
        let connect_deadline = deadline.min(now + opts.connect_timeout);
        let stream = connect_tcp(&url.addr(), connect_deadline)?;
        // Commands are small and answered one round trip at a time: do not let Nagle hold
        // them back waiting for the previous reply's ACK.
        let _ = stream.set_nodelay(true);
        let mut conn = Conn {
            stream,
            reader: Reader::new(),
            writer: Writer::new(),
            buf: InBuf::from_vec(Vec::new()),
            opts: *opts,
            state: State::Ready,
        };
        let mut setup: Vec<(&'static str, Vec<Vec<u8>>)> = Vec::new();
        if let Some(auth) = &url.auth {
            let mut cmd = vec![b"AUTH".to_vec()];
            cmd.extend(auth.user.clone());
            cmd.push(auth.password.clone());
            setup.push(("AUTH", cmd));
        }
        if url.db != 0 {
            setup.push((
                "SELECT",
                vec![b"SELECT".to_vec(), url.db.to_string().into()],
            ));
        }
        if !setup.is_empty() {
            let cmds: Vec<Vec<Vec<u8>>> = setup.iter().map(|(_, c)| c.clone()).collect();
            // The caller's command has not been sent, whatever happened to these.
            let replies = conn
                .call_many_by(&cmds, deadline.max(Instant::now()))
                .map_err(|e| match e {
                    Error::Unknown(f) => Error::NotSent(f),
                    e => e,
                })?;
            for ((step, _), reply) in setup.iter().zip(&replies) {
                if let Some(message) = reply.error_message() {
                    return Err(Error::Rejected { step, message });
                }
            }
        }
        Ok(conn)
    }

    /// Sends one command and reads its reply within `opts.timeout`.
    pub fn call(&mut self, args: &[&[u8]]) -> Result<Value, Error> {
        self.call_by(args, Instant::now() + self.opts.timeout)
    }

    /// Sends one command and reads its reply by `deadline` (a blocking command such as
    /// `XREAD BLOCK` needs a deadline past its own blocking time).
    pub fn call_by(&mut self, args: &[&[u8]], deadline: Instant) -> Result<Value, Error> {
        let mut out = Vec::new();
        resp::encode_command(args, &mut out);
        let mut replies = self.exchange(&out, 1, deadline)?;
        Ok(replies
            .pop()
            .expect("exchange returns one reply per command"))
    }

    /// Pipelines `cmds` (each a command's arguments): one write, then every reply in order,
    /// all within `opts.timeout`.
    pub fn call_many(&mut self, cmds: &[Vec<Vec<u8>>]) -> Result<Vec<Value>, Error> {
        self.call_many_by(cmds, Instant::now() + self.opts.timeout)
    }

    /// As [`call_many`](Conn::call_many), by `deadline`.
    pub fn call_many_by(
        &mut self,
        cmds: &[Vec<Vec<u8>>],
        deadline: Instant,
    ) -> Result<Vec<Value>, Error> {
        let mut out = Vec::new();
        for cmd in cmds {
            let args: Vec<&[u8]> = cmd.iter().map(Vec::as_slice).collect();
            resp::encode_command(&args, &mut out);
        }
        self.exchange(&out, cmds.len(), deadline)
    }

    /// False once a failure has left the connection out of step.
    pub fn is_usable(&self) -> bool {
        self.state == State::Ready
    }

    /// Writes `out` (`count` encoded commands), then reads `count` replies.
    fn exchange(
        &mut self,
        out: &[u8],
        count: usize,
        deadline: Instant,
    ) -> Result<Vec<Value>, Error> {
        if self.state == State::Broken {
            return Err(Error::NotSent(Failure::Broken));
        }
        if count == 0 {
            return Ok(Vec::new());
        }
        if self.buf.is_empty() {
            if let Err(f) = self.check_idle() {
                self.state = State::Broken;
                return Err(Error::NotSent(f));
            }
        }
        if let Err(e) = self.writer.write_all(&self.stream, out, deadline) {
            self.state = State::Broken;
            // Part of the bytes may have left. One command cut short never runs; in a
            // pipeline the commands before the cut may have.
            let failure = Failure::io(&e);
            return Err(if count == 1 {
                Error::NotSent(failure)
            } else {
                Error::Unknown(failure)
            });
        }
        let mut replies = Vec::with_capacity(count);
        while replies.len() < count {
            match self.next_reply(deadline) {
                Ok(v) => replies.push(v),
                Err(f) => {
                    self.state = State::Broken;
                    return Err(Error::Unknown(f));
                }
            }
        }
        // A large reply's buffer is given back once it is decoded.
        self.buf.shrink(KEEP_BUFFER);
        Ok(replies)
    }

    /// Fails if the server has already closed this connection, before anything is written.
    ///
    /// Without this, a command written into a connection the server closed while it was idle
    /// would be taken by our kernel, and only the read would fail: "may have run", although
    /// it certainly did not. One non-blocking peek (three system calls) tells the cases apart.
    fn check_idle(&self) -> Result<(), Failure> {
        let io = |e: io::Error| Failure::io(&e);
        self.stream.set_nonblocking(true).map_err(io)?;
        let mut probe = [0u8; 1];
        let peeked = self.stream.peek(&mut probe);
        self.stream.set_nonblocking(false).map_err(io)?;
        match peeked {
            Ok(0) => Err(Failure::ClosedIdle),
            // Bytes nobody asked for: the next decode reports them if they are not RESP.
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(Failure::io(&e)),
        }
    }

    fn next_reply(&mut self, deadline: Instant) -> Result<Value, Failure> {
        loop {
            match resp::decode(self.buf.filled(), &self.opts.limits) {
                Ok(Some((value, used))) => {
                    self.buf.consume(used);
                    return Ok(value);
                }
                Ok(None) => {}
                Err(e) => return Err(Failure::Protocol(e)),
            }
            // The buffer moves the undecoded rest to the front before it grows, so pipelined
            // replies do not make it creep.
            match self
                .reader
                .read(&self.stream, &mut self.buf, READ_CHUNK, deadline)
            {
                Ok(0) => return Err(Failure::Closed),
                Ok(_) => {}
                Err(e) => return Err(Failure::io(&e)),
            }
        }
    }
}

/// Connects to the first address `addr` resolves to that answers by `deadline`.
fn connect_tcp(addr: &str, deadline: Instant) -> Result<TcpStream, Error> {
    let fail = |message: String| Error::Connect {
        addr: addr.to_owned(),
        message,
    };
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| fail(format!("cannot resolve: {e}")))?
        .collect();
    let mut last = String::from("the host resolves to no address");
    for a in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            last = String::from("timed out");
            break;
        }
        match TcpStream::connect_timeout(&a, left) {
            Ok(s) => return Ok(s),
            Err(e) => last = e.to_string(),
        }
    }
    Err(fail(last))
}

/// A connection that is replaced when it fails: every call either uses the live connection
/// or makes a new one, and connects that keep failing are spaced out by [`Backoff`].
///
/// A failed call is not retried here, with one exception: a connection found closed while idle
/// before the command was written (`NotSent(ClosedIdle)`) is replaced and the command sent on
/// the new one, once. Otherwise only the caller knows whether its command may safely run twice;
/// it can tell from [`Error::may_have_run`].
#[derive(Debug)]
pub struct Client {
    url: RedisUrl,
    opts: Options,
    conn: Option<Conn>,
    backoff: Backoff,
}

impl Client {
    /// A client that connects at its first call.
    pub fn new(url: RedisUrl, opts: Options) -> Client {
        Client {
            url,
            opts,
            conn: None,
            backoff: Backoff::default(),
        }
    }

    /// A client connected now, so that a wrong address or password fails at start-up.
    pub fn connect(url: RedisUrl, opts: Options) -> Result<Client, Error> {
        let mut client = Client::new(url, opts);
        client.conn_by(Instant::now() + opts.timeout)?;
        Ok(client)
    }

    pub fn url(&self) -> &RedisUrl {
        &self.url
    }

    /// True while a connection is open (it may still turn out dead at the next call).
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    pub fn call(&mut self, args: &[&[u8]]) -> Result<Value, Error> {
        self.call_by(args, Instant::now() + self.opts.timeout)
    }

    /// One command by `deadline`, connecting first if need be (within the same deadline).
    pub fn call_by(&mut self, args: &[&[u8]], deadline: Instant) -> Result<Value, Error> {
        self.send_by(deadline, |c| c.call_by(args, deadline))
    }

    pub fn call_many(&mut self, cmds: &[Vec<Vec<u8>>]) -> Result<Vec<Value>, Error> {
        self.call_many_by(cmds, Instant::now() + self.opts.timeout)
    }

    /// A pipeline by `deadline`, connecting first if need be.
    pub fn call_many_by(
        &mut self,
        cmds: &[Vec<Vec<u8>>],
        deadline: Instant,
    ) -> Result<Vec<Value>, Error> {
        self.send_by(deadline, |c| c.call_many_by(cmds, deadline))
    }

    /// Runs `send` on the connection (connecting first if need be, by `deadline`). Certainly
    /// not sent, on a connection that had died while idle: sent again on a new one, once.
    fn send_by<T>(
        &mut self,
        deadline: Instant,
        send: impl Fn(&mut Conn) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let r = send(self.conn_by(deadline)?);
        match self.after(r) {
            Err(Error::NotSent(Failure::ClosedIdle)) => {
                let r = send(self.conn_by(deadline)?);
                self.after(r)
            }
            r => r,
        }
    }

    /// Drops a connection the call left out of step; the next call makes a new one at once
    /// (the server may just have restarted), and only failed connects back off.
    fn after<T>(&mut self, r: Result<T, Error>) -> Result<T, Error> {
        if self.conn.as_ref().is_some_and(|c| !c.is_usable()) {
            self.conn = None;
        }
        r
    }

    fn conn_by(&mut self, deadline: Instant) -> Result<&mut Conn, Error> {
        if self.conn.is_none() {
            let now = Instant::now();
            if let Some(retry_in) = self.backoff.wait(now) {
                return Err(Error::Backoff { retry_in });
            }
            match Conn::connect_by(&self.url, &self.opts, deadline) {
                Ok(c) => {
                    self.backoff.succeeded();
                    self.conn = Some(c);
                }
                Err(e) => {
                    self.backoff.failed(Instant::now());
                    return Err(e);
                }
            }
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }
}

/// Spacing of reconnect attempts: after n failed connects in a row, the next waits
/// `BACKOFF_INITIAL · 2^(n-1)`, at most `BACKOFF_MAX`, scattered by ±`BACKOFF_JITTER_PERCENT`.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
    next_try: Option<Instant>,
}

/// Distinguishes jitter drawn at the same clock reading (many clients in one process).
static JITTER_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Backoff {
    /// How long until the next attempt is due, or `None` if it is due now.
    pub fn wait(&self, now: Instant) -> Option<Duration> {
        self.next_try
            .map(|t| t.saturating_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    pub fn failed(&mut self, now: Instant) {
        let delay = backoff_delay(self.failures, jitter_seed());
        self.failures = self.failures.saturating_add(1);
        self.next_try = Some(now + delay);
    }

    pub fn succeeded(&mut self) {
        *self = Backoff::default();
    }
}

/// The delay after `failures` earlier failures in a row, jittered by `seed` (any value).
pub fn backoff_delay(failures: u32, seed: u64) -> Duration {
    let base = BACKOFF_INITIAL
        .checked_mul(1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(BACKOFF_MAX)
        .min(BACKOFF_MAX);
    // A factor from (100 - J)% to (100 + J)%, in thousandths.
    let spread = BACKOFF_JITTER_PERCENT * 10;
    let permille = 1000 - spread + mix(seed) % (2 * spread + 1);
    let nanos = base.as_nanos() as u64 / 1000 * permille;
    Duration::from_nanos(nanos).min(BACKOFF_MAX)
}

/// A seed from the clock and a process-wide counter: no rand crate, and jitter only has to
/// differ between clients, not be unpredictable.
fn jitter_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos
        ^ JITTER_COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// splitmix64's finaliser: nearby seeds give unrelated outputs.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_its_jitter_and_stops_at_the_max() {
        for failures in 0..40u32 {
            let base = (BACKOFF_INITIAL.as_millis() as u64)
                .saturating_mul(1u64 << failures.min(40))
                .min(BACKOFF_MAX.as_millis() as u64);
            let (lo, hi) = (base / 2, (base * 3 / 2).min(BACKOFF_MAX.as_millis() as u64));
            let mut seen = std::collections::BTreeSet::new();
            for seed in 0..200u64 {
                let d = backoff_delay(failures, seed).as_millis() as u64;
                assert!(
                    d >= lo && d <= hi,
                    "failures {failures}: {d} ms not in {lo}..={hi}"
                );
                seen.insert(d);
            }
            assert!(seen.len() > 10, "jitter spreads the delays: {seen:?}");
        }
        assert!(backoff_delay(u32::MAX, u64::MAX) <= BACKOFF_MAX);
    }

    #[test]
    fn backoff_waits_after_a_failure_and_not_after_a_success() {
        let mut b = Backoff::default();
        let now = Instant::now();
        assert_eq!(b.wait(now), None);
        b.failed(now);
        let first = b.wait(now).expect("a failure sets a delay");
        assert!(first >= BACKOFF_INITIAL / 2 && first <= BACKOFF_INITIAL * 3 / 2);
        assert_eq!(
            b.wait(now + BACKOFF_MAX),
            None,
            "due once the delay has passed"
        );
        b.failed(now);
        assert!(b.wait(now).expect("delay") >= BACKOFF_INITIAL);
        b.succeeded();
        assert_eq!(b.wait(now), None);
    }

    #[test]
    fn jitter_seeds_differ_between_calls() {
        assert_ne!(jitter_seed(), jitter_seed());
    }

    #[test]
    fn errors_say_whether_the_command_may_have_run() {
        let unknown = Error::Unknown(Failure::Closed);
        assert!(unknown.may_have_run());
        assert_eq!(
            unknown.to_string(),
            "Redis command may have been sent: connection closed by the server; \
             it may or may not have run"
        );
        let not_sent = Error::NotSent(Failure::Timeout);
        assert!(!not_sent.may_have_run() && not_sent.is_timeout());
        assert_eq!(
            not_sent.to_string(),
            "Redis command not sent: timed out; it did not run"
        );
        for e in [
            Error::Connect {
                addr: "h:1".into(),
                message: "refused".into(),
            },
            Error::Rejected {
                step: "AUTH",
                message: "WRONGPASS".into(),
            },
            Error::Backoff {
                retry_in: Duration::from_millis(5),
            },
        ] {
            assert!(!e.may_have_run(), "{e}");
        }
    }

    /// A connection the server closed while idle fails before writing: not sent (so a
    /// client may resend it), where a write would have succeeded and the read failed.
    #[test]
    fn a_connection_closed_while_idle_is_found_before_writing() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = std::sync::mpsc::channel();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().expect("accept");
            drop(s);
            tx.send(()).expect("send");
        });
        let url = RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).expect("url");
        let mut conn = Conn::connect(&url, &Options::default()).expect("connect");
        rx.recv().expect("the server closed");
        server.join().expect("server thread");
        // On loopback the FIN is queued on our side by the time the server's close returns.
        assert_eq!(
            conn.call(&[b"PING"]),
            Err(Error::NotSent(Failure::ClosedIdle))
        );
        assert!(!conn.is_usable());
    }

    /// After a reply larger than `KEEP_BUFFER` the receive buffer is given back; a small one
    /// keeps it for the next call.
    #[test]
    fn a_large_reply_does_not_keep_its_buffer() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let big = vec![b'x'; KEEP_BUFFER * 2];
        let mut reply = format!("${}\r\n", big.len()).into_bytes();
        reply.extend_from_slice(&big);
        reply.extend_from_slice(b"\r\n");
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut buf = [0u8; 64];
            for answer in [&reply[..], b"+PONG\r\n"] {
                let _ = s.read(&mut buf);
                s.write_all(answer).expect("write");
            }
        });
        let url = RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).expect("url");
        let mut conn = Conn::connect(&url, &Options::default()).expect("connect");
        assert_eq!(conn.call(&[b"GET", b"big"]), Ok(Value::Bulk(big)));
        assert_eq!(conn.buf.held(), 0, "the large buffer is given back");
        assert_eq!(conn.call(&[b"PING"]), Ok(Value::Simple(b"PONG".to_vec())));
        assert!(conn.buf.held() > 0 && conn.buf.held() <= KEEP_BUFFER);
        server.join().expect("server thread");
    }

    /// A server that answers garbage: the call fails as a protocol error, may have run, and
    /// the connection refuses further commands rather than reading out of step.
    #[test]
    fn a_protocol_error_breaks_the_connection() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf);
            s.write_all(b"+OK\n").expect("write");
        });
        let url = RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).expect("url");
        let mut conn = Conn::connect(&url, &Options::default()).expect("connect");
        assert_eq!(
            conn.call(&[b"PING"]),
            Err(Error::Unknown(Failure::Protocol(resp::Error::BareLf)))
        );
        assert!(!conn.is_usable());
        assert_eq!(conn.call(&[b"PING"]), Err(Error::NotSent(Failure::Broken)));
        server.join().expect("server thread");
    }
}
