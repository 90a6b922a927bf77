//! The access log: one line per request, written to its sink (stderr) by one thread that reads
//! them from a bounded queue. A request only ever *offers* its line: when the sink is slow (a
//! stderr pipe nobody reads fills after 64 KiB, and then every write blocks) the queue fills,
//! further lines are dropped and counted, and no connection thread ever waits on the log.
//! The accept loop's complaints (out of descriptors, no thread) go the same way: a blocked
//! `eprintln!` there would stop the server taking connections at all.
//!
//! A line is in one of three formats (`--log-format`, [`format_entry`]):
//!
//! - `combined`: the NCSA Combined Log Format, then the duration in seconds (as nginx's
//!   `$request_time`, which log tools read as a last field):
//!   `127.0.0.1 - - [10/Oct/2000:13:55:36 +0000] "GET /votes HTTP/1.1" 200 123 "-" "curl/8.5.0" 0.001`
//! - `common`: the NCSA Common Log Format, exactly:
//!   `127.0.0.1 - - [10/Oct/2000:13:55:36 +0000] "GET /votes HTTP/1.1" 200 123`
//! - `json`: one object per line: `time` (ISO 8601, UTC, milliseconds), `remote`, `method`,
//!   `path`, `query`, `protocol`, `status`, `bytes`, `duration_ms`, `referer`, `user_agent`,
//!   and `connection` (`websocket`, `sse` or null).
//!
//! Times are UTC and are when the line is written: when the response went out, or for a
//! WebSocket or event stream, when the connection ended. Such a connection has one line, written
//! when it ends: its status is the `101` (WebSocket) or `200` (SSE) it began with, its bytes
//! everything sent on it, its duration its whole life.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use crate::log::{self as levels, LogFormat};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread;

/// Lines waiting for the writer; more are dropped. Default 4096: enough to ride out a burst,
/// small enough that a stalled sink costs little memory. A line shows at most 512 bytes of the
/// target, 32 of the method and 256 each of `Referer` and `User-Agent` (`http::conn`); escaped
/// (`\xHH`: at most 4 bytes for 1) that is under 4.5 KiB, so the queue holds at most about
/// 18 MiB, and typically (200-byte lines) under 1 MiB.
pub const ACCESS_LOG_QUEUE: usize = 4096;

/// Most lines the writer puts into one write to its sink.
const WRITE_BATCH: usize = 256;

/// The sending side; the writer thread ends when it is dropped.
pub struct AccessLog {
    queue: SyncSender<String>,
    dropped: Arc<AtomicU64>,
    format: LogFormat,
}

impl AccessLog {
    /// Starts the writer thread over `sink`, with room for `capacity` waiting lines; each line
    /// that finds no room adds one to `dropped`.
    pub fn start(
        sink: impl Write + Send + 'static,
        capacity: usize,
        dropped: Arc<AtomicU64>,
    ) -> io::Result<AccessLog> {
        let (queue, lines) = mpsc::sync_channel(capacity);
        thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(sink, lines))?;
        Ok(AccessLog {
            queue,
            dropped,
            format: LogFormat::default(),
        })
    }

    /// Lines in `format` from now on (default `combined`).
    pub fn with_format(mut self, format: LogFormat) -> AccessLog {
        self.format = format;
        self
    }

    pub fn format(&self) -> LogFormat {
        self.format
    }

    /// Offers one request's line.
    pub fn entry(&self, e: &Entry) {
        self.log(format_entry(self.format, e));
    }

    /// Offers one levelled message (the accept loop's complaints).
    pub fn message(&self, level: levels::Level, msg: &str) {
        self.log(levels::line(self.format, SystemTime::now(), level, msg));
    }

    /// Offers one line (without its newline); never waits.
    pub fn log(&self, line: String) {
        match self.queue.try_send(line) {
            Ok(()) => {}
            // A writer that has gone (its sink failed) also drops the line.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Relaxed);
            }
        }
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }
}

/// What one access-log line says.
#[derive(Clone, Debug)]
pub struct Entry<'a> {
    /// When the line is written (the response went out, the connection ended).
    pub time: SystemTime,
    pub remote: IpAddr,
    /// None when the request could not be read (a `400`, `408`, `431`…): logged as `"-"`.
    pub request: Option<RequestLine<'a>>,
    pub status: u16,
    /// Body bytes (a WebSocket or event stream: every byte sent after the upgrade's head).
    pub bytes: u64,
    pub duration: Duration,
    pub referer: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    /// `websocket` or `sse` for a connection's line at its end; None for a request.
    pub connection: Option<&'a str>,
}

/// The request line: method, target (path and query as sent) and protocol.
#[derive(Clone, Copy, Debug)]
pub struct RequestLine<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub protocol: &'a str,
}

/// One line (without its newline) in `format`.
pub fn format_entry(format: LogFormat, e: &Entry) -> String {
    let mut out = String::with_capacity(160);
    if format == LogFormat::Json {
        let (method, path, query, protocol) = match e.request {
            Some(r) => {
                let (path, query) = match r.target.split_once('?') {
                    Some((p, q)) => (p, Some(q)),
                    None => (r.target, None),
                };
                (Some(r.method), Some(path), query, Some(r.protocol))
            }
            None => (None, None, None, None),
        };
        crate::json::object(&mut out, |o| {
            o.str("time", &levels::iso8601(e.time))
                .str("remote", &e.remote.to_string())
                .opt_str("method", method)
                .opt_str("path", path)
                .opt_str("query", query)
                .opt_str("protocol", protocol)
                .u64("status", u64::from(e.status))
                .u64("bytes", e.bytes)
                .f64("duration_ms", e.duration.as_micros() as f64 / 1000.0)
                .opt_str("referer", e.referer)
                .opt_str("user_agent", e.user_agent)
                .opt_str("connection", e.connection);
        });
        return out;
    }
    let _ = write!(out, "{} - - [{}] \"", e.remote, levels::clf_time(e.time));
    match e.request {
        Some(r) => {
            quoted(&mut out, r.method);
            out.push(' ');
            quoted(&mut out, r.target);
            out.push(' ');
            quoted(&mut out, r.protocol);
        }
        None => out.push('-'),
    }
    let _ = write!(out, "\" {} ", e.status);
    // %b: `-` for no body.
    match e.bytes {
        0 => out.push('-'),
        n => {
            let _ = write!(out, "{n}");
        }
    }
    if format == LogFormat::Combined {
        for v in [e.referer, e.user_agent] {
            out.push_str(" \"");
            match v {
                Some(v) => quoted(&mut out, v),
                None => out.push('-'),
            }
            out.push('"');
        }
        let _ = write!(out, " {:.3}", e.duration.as_secs_f64());
    }
    out
}

/// `s` for inside a quoted field: `"`, `\`, control and non-ASCII bytes as `\xHH` (Apache's
/// escaping), so that a request cannot forge a field or a line.
fn quoted(out: &mut String, s: &str) {
    for b in s.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
}

/// Writes what arrives, a batch per write, until every sender has gone.
fn write_lines(mut sink: impl Write, lines: Receiver<String>) {
    let mut out = String::new();
    while let Ok(first) = lines.recv() {
        out.clear();
        out.push_str(&first);
        out.push('\n');
        for line in lines.try_iter().take(WRITE_BATCH - 1) {
            out.push_str(&line);
            out.push('\n');
        }
        // A failed write loses its batch; the log is best-effort by design.
        let _ = sink.write_all(out.as_bytes()).and_then(|()| sink.flush());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Condvar, Mutex};

    /// Whether the gate is open, and what went through it.
    type Passed = Mutex<(bool, Vec<u8>)>;

    /// A sink that blocks every write until it is opened, then keeps what it was given.
    #[derive(Clone, Default)]
    struct Gate(Arc<(Passed, Condvar)>);

    impl Write for Gate {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let (m, cv) = &*self.0;
            let mut g = cv
                .wait_while(m.lock().unwrap(), |(open, _)| !*open)
                .unwrap();
            g.1.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn entry() -> Entry<'static> {
        Entry {
            time: std::time::UNIX_EPOCH + Duration::from_secs(971_186_136),
            remote: "127.0.0.1".parse().unwrap(),
            request: Some(RequestLine {
                method: "GET",
                target: "/votes?transport=poll",
                protocol: "HTTP/1.1",
            }),
            status: 200,
            bytes: 2326,
            duration: Duration::from_micros(1500),
            referer: Some("http://localhost/index"),
            user_agent: Some("curl/8.5.0"),
            connection: None,
        }
    }

    #[test]
    fn lines_in_each_format() {
        let e = entry();
        assert_eq!(
            format_entry(LogFormat::Common, &e),
            r#"127.0.0.1 - - [10/Oct/2000:13:55:36 +0000] "GET /votes?transport=poll HTTP/1.1" 200 2326"#
        );
        assert_eq!(
            format_entry(LogFormat::Combined, &e),
            r#"127.0.0.1 - - [10/Oct/2000:13:55:36 +0000] "GET /votes?transport=poll HTTP/1.1" 200 2326 "http://localhost/index" "curl/8.5.0" 0.002"#
        );
        assert_eq!(
            format_entry(LogFormat::Json, &e),
            r#"{"time":"2000-10-10T13:55:36.000Z","remote":"127.0.0.1","method":"GET","path":"/votes","query":"transport=poll","protocol":"HTTP/1.1","status":200,"bytes":2326,"duration_ms":1.5,"referer":"http://localhost/index","user_agent":"curl/8.5.0","connection":null}"#
        );
    }

    #[test]
    fn unread_requests_missing_headers_and_connections() {
        let mut e = entry();
        e.request = None;
        e.status = 400;
        e.bytes = 0;
        e.referer = None;
        e.user_agent = None;
        assert_eq!(
            format_entry(LogFormat::Combined, &e),
            r#"127.0.0.1 - - [10/Oct/2000:13:55:36 +0000] "-" 400 - "-" "-" 0.002"#
        );
        let json = format_entry(LogFormat::Json, &e);
        assert!(json.contains(r#""method":null,"path":null"#), "{json}");
        let mut ws = entry();
        ws.remote = "::1".parse().unwrap();
        ws.status = 101;
        ws.connection = Some("websocket");
        ws.duration = Duration::from_secs(90);
        let json = format_entry(LogFormat::Json, &ws);
        assert!(json.contains(r#""remote":"::1""#), "{json}");
        assert!(json.contains(r#""duration_ms":90000,"#), "{json}");
        assert!(json.ends_with(r#""connection":"websocket"}"#), "{json}");
        assert!(format_entry(LogFormat::Combined, &ws).ends_with(" 90.000"));
    }

    #[test]
    fn quotes_and_control_bytes_cannot_forge_fields() {
        let mut e = entry();
        e.user_agent = Some("a\"b\\c\nd é");
        let line = format_entry(LogFormat::Combined, &e);
        assert!(
            line.ends_with(r#" "a\"b\\c\x0ad \xc3\xa9" 0.002"#),
            "{line}"
        );
        assert!(!line.contains('\n'));
        let json = format_entry(LogFormat::Json, &e);
        assert!(json.contains(r#""user_agent":"a\"b\\c\nd é""#), "{json}");
    }

    #[test]
    fn a_blocked_sink_drops_and_counts_lines_instead_of_waiting() {
        let gate = Gate::default();
        let dropped = Arc::new(AtomicU64::new(0));
        let log = AccessLog::start(gate.clone(), 4, Arc::clone(&dropped)).unwrap();
        // The writer takes at most one batch and blocks in it; the queue holds 4 more; the
        // rest is dropped, and none of these calls waits.
        let n = 4 + WRITE_BATCH + 100;
        for i in 0..n {
            log.log(format!("line {i}"));
        }
        let lost = log.dropped();
        assert!(lost >= 100, "{lost} dropped");
        // Opened, the sink gets every line that was not dropped, in order.
        let (m, cv) = &*gate.0;
        m.lock().unwrap().0 = true;
        cv.notify_all();
        drop(log);
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let text = loop {
            assert!(
                std::time::Instant::now() < give_up,
                "the lines never arrived"
            );
            let g = m.lock().unwrap();
            let text = String::from_utf8(g.1.clone()).unwrap();
            if text.lines().count() as u64 == n as u64 - lost {
                break text;
            }
            drop(g);
            thread::sleep(std::time::Duration::from_millis(5));
        };
        let numbers: Vec<usize> = text
            .lines()
            .map(|l| l.strip_prefix("line ").unwrap().parse().unwrap())
            .collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
        assert_eq!(numbers[0], 0);
    }
}
