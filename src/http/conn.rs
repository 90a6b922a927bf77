//! The HTTP/1.1 connection loop: reads request heads and bodies under deadlines, hands each
//! request to a [`Handler`], writes the response, and keeps the connection alive, pipelined,
//! or hands it over after a `101 Switching Protocols`. This is the only place that maps read
//! failures to statuses (400/408/413/414/417/431/501/505).
//!
//! Every state a connection can be in ends by a wall-clock deadline fixed when the state is
//! entered, so a peer that trickles bytes (or reads a byte now and then) cannot stretch it:
//!
//! | state | bounded by |
//! |---|---|
//! | waiting for a request (keep-alive idle) | `idle_timeout` from the end of the last response; then a quiet close |
//! | reading a head | `head_timeout` from its first byte, in total; then `408` |
//! | reading a body | `body_timeout` from the end of the head, in total; then `408` |
//! | writing `100 Continue` | `write_timeout` for the whole write |
//! | handling (long-poll wait, parked or not) | `--longpoll-timeout` (the handler's own bound) |
//! | finishing a parked answer another thread began | `write_timeout` from when this thread takes it over |
//! | writing a response (or the head of an upgrade) | `write_timeout` for the whole write ([`net::Writer`]) |
//! | draining before close | [`LINGER`]: 200 ms quiet, 2 s and 64 KiB in total |
//! | upgraded (WebSocket, SSE) | owned by `ws::conn` and `app::sse`, each with its own bounds |
//!
//! [`net::Writer`]: crate::net::Writer

use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::access_log::{AccessLog, Entry, RequestLine};
use super::chunked;
use super::error::Error;
use super::request::{BodyFraming, HeadScan, Request, Version};
use super::response::Response;
use super::status::Status;
use crate::config::Limits;
use crate::net::{self, InBuf, Linger, Reader, Writer};

/// Most bytes one read takes from the socket.
const READ_CHUNK: usize = 8192;
/// Starting capacity of a connection's read and write buffers: a typical request head and
/// response fit without growing.
const BUF_START: usize = 4096;
/// A connection's receive buffer larger than this (after a large body) is given back once its
/// request is answered, so a keep-alive connection holds no more than this while idle.
const BUF_KEEP: usize = 16 * 1024;
/// Bytes of the last request's body a connection keeps for its next one (a vote's form is a
/// few dozen); a larger body's room is given back.
const BODY_KEEP: usize = 1024;

/// The drain before closing a connection after its last response: until the peer has been
/// quiet for 200 ms, it has sent 64 KiB, or 2 s have passed since the drain began, whichever
/// comes first. The total is what bounds it: without it a byte every 190 ms kept a thread and
/// a connection slot for hours.
pub const LINGER: Linger = Linger {
    max_bytes: 64 * 1024,
    quiet: Duration::from_millis(200),
    total: Duration::from_secs(2),
};

/// What the application answers to a request.
pub enum Reply {
    Response(Response),
    /// Write `response` (a `101`, or the head of a streamed body), then give the socket and
    /// every byte that arrived after the request head to `then`, which owns the connection from
    /// there on (RFC 6455 §4.1: the server may send frames right after the handshake, and so
    /// may the client).
    Upgrade(Response, Upgrade),
    /// A wait whose answer another thread may write (a long-poll): [`Park::wait`] is given the
    /// socket and returns once the answer is out, or is this thread's to write.
    Park(Box<dyn Park>),
}

/// The continuation of an upgraded connection, called on the thread that read its request
/// right after the response went out, with the socket and the bytes read past the head: it
/// sets the connection up and returns the rest to run ([`Run`]), which the caller of
/// [`serve`] runs on a thread of its own.
pub type Upgrade = Box<dyn FnOnce(Arc<TcpStream>, Vec<u8>) -> Run + Send>;

/// The rest of an upgraded connection; it returns when the connection has ended, with the
/// bytes it sent (for the access log's line).
pub type Run = Box<dyn FnOnce() -> u64 + Send>;

/// A request waiting for its answer on this connection's thread, while another thread may
/// write that answer to the socket: the connection reads nothing meanwhile (a request
/// pipelined behind is answered after it), and goes on with the next request once it returns.
pub trait Park: Send {
    /// Waits for the answer. `stream` is the connection's socket, `keep_alive` what the request
    /// allows after the answer.
    fn wait(self: Box<Self>, stream: &Arc<TcpStream>, keep_alive: bool) -> Parked;
}

/// How a parked request was answered.
pub enum Parked {
    /// This thread writes it, as any response.
    Respond(Response),
    /// Encoded (head and body) by another thread, which wrote its first `sent` bytes: this
    /// thread writes the rest, under its own write deadline.
    Written(Written),
}

/// A response another thread encoded and began (or finished) writing.
pub struct Written {
    pub bytes: Arc<[u8]>,
    pub sent: usize,
    pub status: Status,
    pub body_len: usize,
    /// What its `Connection` header said.
    pub keep_alive: bool,
}

/// The application side of an HTTP connection.
pub trait Handler: Send + Sync {
    fn handle(&self, req: &Request, body: &[u8], peer: SocketAddr) -> Reply;

    /// Told of every response written (status, body bytes), errors included: for metrics.
    fn observe(&self, _status: Status, _bytes: usize) {}

    /// The client's address for the access log: the peer's, unless the handler knows better
    /// (a trusted reverse proxy in front names the real client).
    fn client(&self, _req: &Request, peer: SocketAddr) -> IpAddr {
        peer.ip()
    }
}

/// Per-connection settings.
pub struct Settings<'a> {
    pub limits: &'a Limits,
    /// Where each request's line goes; None: no access log.
    pub access_log: Option<&'a AccessLog>,
}

/// RFC 9112 §9.3: HTTP/1.1 persists unless `Connection: close`; HTTP/1.0 only with
/// `Connection: keep-alive`.
pub fn keep_alive(req: &Request) -> bool {
    // `close` wins in every version, even next to `keep-alive`.
    if req.has_token("connection", "close") {
        return false;
    }
    match req.version {
        Version::Http11 => true,
        Version::Http10 => req.has_token("connection", "keep-alive"),
    }
}

/// How reading a request ended, when it did not produce one.
enum ReadEnd {
    /// The peer closed or the idle timeout passed between requests: close quietly.
    Quiet,
    /// Answer with this error, then close.
    Fail(Error),
}

/// Serves one connection's HTTP requests until it closes or fails (None), or is upgraded: then
/// the upgraded connection is returned, for the caller to run ([`Handoff::run`]).
pub fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    handler: &dyn Handler,
    s: &Settings,
) -> Option<Handoff> {
    let upgraded = serve_http(Arc::new(stream), peer, handler, s)?;
    Some(set_up(upgraded))
}

/// Sets the upgraded connection up (see [`Upgrade`]). Out of line, so that none of its work
/// sits in the frames above the HTTP loop: every byte there pushes the loop's deepest frames
/// (the handshake's SHA-1) further down the stack, and a stack page the HTTP thread touches
/// stays resident when glibc hands its stack to the next thread (it keeps the stacks of
/// threads that ended for reuse).
#[inline(never)]
fn set_up((then, stream, leftover, line): Upgraded) -> Handoff {
    Handoff {
        run: then(stream, leftover),
        line,
    }
}

/// An upgraded connection (a WebSocket, an event stream), set up, that has not run yet.
#[must_use = "an upgraded connection does nothing until it is run"]
pub struct Handoff {
    run: Run,
    line: Option<Box<UpgradeLine>>,
}

impl Handoff {
    /// Runs the upgraded connection to its end, then writes its access-log line to `log`.
    pub fn run(self, log: Option<&AccessLog>) {
        let bytes = (self.run)();
        if let (Some(log), Some(l)) = (log, self.line) {
            log_upgraded(log, &l, bytes);
        }
    }
}

/// The upgraded connection's one line, now that it has ended: its bytes, its whole duration.
/// Never inlined, and the request's fields boxed: [`Handoff::run`]'s frame sits under the upgraded
/// connection for its whole life, and holding them there cost one more resident stack page
/// per idle WebSocket (measured: 8.0 → 12.0 KiB of stack per connection at 2,000; idle_memory_5k
/// 11.7 → 15.8 KiB per connection).
#[inline(never)]
fn log_upgraded(log: &AccessLog, l: &UpgradeLine, bytes: u64) {
    log.entry(&Entry {
        time: SystemTime::now(),
        remote: l.client,
        request: Some(RequestLine {
            method: &l.method,
            target: &l.target,
            protocol: l.protocol,
        }),
        status: l.status,
        bytes,
        duration: l.started.elapsed(),
        referer: l.referer.as_deref(),
        user_agent: l.user_agent.as_deref(),
        connection: Some(if l.status == 101 { "websocket" } else { "sse" }),
    });
}

/// What an upgraded connection's access-log line needs from its request, kept (only while the
/// access log is on) until the connection ends.
struct UpgradeLine {
    /// Who it is from (a trusted proxy's client, else the peer).
    client: IpAddr,
    method: String,
    target: String,
    protocol: &'static str,
    referer: Option<String>,
    user_agent: Option<String>,
    status: u16,
    started: Instant,
}

/// What [`serve_http`] hands over for an upgrade.
type Upgraded = (Upgrade, Arc<TcpStream>, Vec<u8>, Option<Box<UpgradeLine>>);

/// The HTTP part of [`serve`]: requests until the connection closes, or the upgrade to run.
#[inline(never)]
fn serve_http(
    stream: Arc<TcpStream>,
    peer: SocketAddr,
    handler: &dyn Handler,
    s: &Settings,
) -> Option<Upgraded> {
    let limits = s.limits;
    let _ = stream.set_nodelay(true);
    // Every write goes through `writer`, which sets the send timeout it needs.
    let mut buf = InBuf::from_vec(Vec::with_capacity(BUF_START));
    let mut out: Vec<u8> = Vec::with_capacity(BUF_START);
    let mut reader = Reader::new();
    let mut writer = Writer::new();
    // Each request is parsed into the last one's strings and body: no allocation for a usual
    // request. Boxed, so the loop's frame stays small (see `read_request`).
    let mut kept = Box::<Request>::default();
    let mut body = Vec::new();
    loop {
        let read = read_request(&stream, &mut reader, &mut buf, limits, &mut kept, &mut body);
        let started = match read {
            Ok(started) => started,
            Err(ReadEnd::Quiet) => return None,
            Err(ReadEnd::Fail(e)) => {
                let resp = Response::error(e.status(), &e.to_string()).closing();
                let _ = send(&stream, &mut writer, &mut out, &resp, false, false, limits);
                handler.observe(e.status(), resp.body.len());
                log_line(
                    s,
                    peer.ip(),
                    None,
                    e.status(),
                    resp.body.len(),
                    Instant::now(),
                );
                net::linger_close(&stream, LINGER);
                return None;
            }
        };
        let req: &Request = &kept;
        let head_only = req.method == "HEAD";
        let client = handler.client(req, peer);
        let allowed = keep_alive(req);
        let (status, body_len, keep, ok) = match handler.handle(req, &body, peer) {
            Reply::Response(resp) => {
                let io = (&*stream, &mut writer, &mut out);
                answer(io, &resp, allowed, head_only, limits)
            }
            Reply::Park(park) => match park.wait(&stream, allowed) {
                Parked::Respond(resp) => {
                    let io = (&*stream, &mut writer, &mut out);
                    answer(io, &resp, allowed, head_only, limits)
                }
                Parked::Written(w) => {
                    let rest = &w.bytes[w.sent.min(w.bytes.len())..];
                    let deadline = Instant::now() + limits.write_timeout;
                    let ok = writer.write_all(&stream, rest, deadline).is_ok();
                    (w.status, w.body_len, w.keep_alive, ok)
                }
            },
            Reply::Upgrade(resp, then) => {
                let ok = send(
                    &stream,
                    &mut writer,
                    &mut out,
                    &resp,
                    !resp.close,
                    false,
                    limits,
                )
                .is_ok();
                handler.observe(resp.status, 0);
                if !ok {
                    log_line(s, client, Some(req), resp.status, 0, started);
                    return None;
                }
                let line = s.access_log.map(|_| {
                    Box::new(UpgradeLine {
                        client,
                        method: cut_at_char(&req.method, MAX_LOGGED_METHOD).to_owned(),
                        target: cut_at_char(&req.target, MAX_LOGGED_TARGET).to_owned(),
                        protocol: req.version.as_str(),
                        referer: logged_header(req, "referer").map(str::to_owned),
                        user_agent: logged_header(req, "user-agent").map(str::to_owned),
                        status: resp.status.code(),
                        started,
                    })
                });
                // What runs next sets its own timeouts; leave it the plain one.
                let _ = stream.set_write_timeout(Some(limits.write_timeout));
                // The HTTP buffers are done with: free them before a long-lived upgrade.
                drop(out);
                let leftover = buf.filled().to_vec();
                drop(buf);
                return Some((then, stream, leftover, line));
            }
        };
        handler.observe(status, body_len);
        log_line(s, client, Some(req), status, body_len, started);
        if !after_answer(&stream, &mut buf, ok, keep) {
            return None;
        }
        kept.trim();
        body.clear();
        body.shrink_to(BODY_KEEP);
    }
}

/// Writes `resp` as the answer to a request that allows `keep_alive`: its status, body length,
/// whether the connection stays open, whether the write succeeded.
fn answer(
    (stream, writer, out): (&TcpStream, &mut Writer, &mut Vec<u8>),
    resp: &Response,
    keep_alive: bool,
    head_only: bool,
    limits: &Limits,
) -> (Status, usize, bool, bool) {
    let keep = keep_alive && !resp.close;
    let ok = send(stream, writer, out, resp, keep, head_only, limits).is_ok();
    (resp.status, resp.body.len(), keep, ok)
}

/// After an answer: whether the connection goes on to its next request (else it is closed, with
/// a drain when the answer was written).
fn after_answer(stream: &TcpStream, buf: &mut InBuf, written: bool, keep: bool) -> bool {
    if !written {
        return false;
    }
    if !keep {
        net::linger_close(stream, LINGER);
        return false;
    }
    buf.shrink(BUF_KEEP);
    true
}

/// Reads one request head and its body. Deadlines: `idle_timeout` until the first byte of a
/// request, then `head_timeout` for the whole head, then `body_timeout` for the body. Out of
/// line: its scanner and decoder are gone from the stack before the request is handled (an
/// upgrade's handshake is the deepest a connection thread goes, and every page it touches
/// stays resident under an idle WebSocket). The head is parsed into `req` and the body read
/// into `body` (the connection's last request's, emptied), so a usual request allocates
/// nothing to be read. Returns when the head was complete (the request's start).
#[inline(never)]
fn read_request(
    stream: &TcpStream,
    reader: &mut Reader,
    buf: &mut InBuf,
    limits: &Limits,
    req: &mut Request,
    body: &mut Vec<u8>,
) -> Result<Instant, ReadEnd> {
    let idle_deadline = Instant::now() + limits.idle_timeout;
    let mut head_deadline = None;
    // Each byte of the head is looked at once, however it is cut into reads.
    let mut scan = HeadScan::new();
    let used = loop {
        if !buf.is_empty() && head_deadline.is_none() {
            head_deadline = Some(Instant::now() + limits.head_timeout);
        }
        match scan.feed_into(buf.filled(), limits, req) {
            Ok(Some(used)) => break used,
            Ok(None) => {}
            Err(e) => return Err(ReadEnd::Fail(e)),
        }
        match reader.read(
            stream,
            buf,
            READ_CHUNK,
            head_deadline.unwrap_or(idle_deadline),
        ) {
            Ok(0) => return Err(ReadEnd::Quiet),
            Ok(_) => {}
            // A half-sent head past its deadline is a slow client (or slowloris): say so.
            Err(e) if is_timeout(&e) && head_deadline.is_some() => {
                return Err(ReadEnd::Fail(Error::Timeout))
            }
            Err(_) => return Err(ReadEnd::Quiet),
        }
    };
    let started = Instant::now();
    buf.consume(used);

    let needs_body = req.body != BodyFraming::None;
    if let Some(expect) = req.header("expect") {
        // RFC 9110 §10.1.1: only 100-continue is defined; anything else gets 417.
        if !expect.eq_ignore_ascii_case("100-continue") {
            return Err(ReadEnd::Fail(Error::ExpectationFailed));
        }
        // Tell the client to go on only if it is waiting for us (HTTP/1.1, body not sent yet).
        if req.version == Version::Http11 && needs_body && buf.is_empty() {
            let deadline = Instant::now() + limits.write_timeout;
            net::write_all_by(stream, b"HTTP/1.1 100 Continue\r\n\r\n", deadline)
                .map_err(|_| ReadEnd::Quiet)?;
        }
    }

    let body_deadline = started + limits.body_timeout;
    body.clear();
    match req.body {
        BodyFraming::None => {}
        BodyFraming::Length(n) => {
            // The parser has checked n ≤ max_body, so this fits in usize and memory.
            let n = n as usize;
            while buf.len() < n {
                read_body_more(stream, reader, buf, body_deadline)?;
            }
            body.extend_from_slice(&buf.filled()[..n]);
            buf.consume(n);
        }
        BodyFraming::Chunked => {
            let mut dec = chunked::Decoder::new(limits.max_body);
            loop {
                let used = dec.feed(buf.filled()).map_err(ReadEnd::Fail)?;
                buf.consume(used);
                if dec.is_done() {
                    *body = dec.body;
                    break;
                }
                read_body_more(stream, reader, buf, body_deadline)?;
            }
        }
    }
    Ok(started)
}

fn read_body_more(
    stream: &TcpStream,
    reader: &mut Reader,
    buf: &mut InBuf,
    deadline: Instant,
) -> Result<(), ReadEnd> {
    match reader.read(stream, buf, READ_CHUNK, deadline) {
        Ok(0) => Err(ReadEnd::Quiet),
        Ok(_) => Ok(()),
        Err(e) if is_timeout(&e) => Err(ReadEnd::Fail(Error::Timeout)),
        Err(_) => Err(ReadEnd::Quiet),
    }
}

pub use crate::net::is_timeout;

/// Writes one response; the whole write must be done within `write_timeout`.
#[inline(never)]
fn send(
    stream: &TcpStream,
    writer: &mut Writer,
    out: &mut Vec<u8>,
    resp: &Response,
    keep_alive: bool,
    head_only: bool,
    limits: &Limits,
) -> io::Result<()> {
    out.clear();
    resp.write_to(out, keep_alive, head_only);
    writer.write_all(stream, out, Instant::now() + limits.write_timeout)
}

/// Most bytes of a request target an access-log line shows; the rest is cut.
const MAX_LOGGED_TARGET: usize = 512;

/// Most bytes of a `Referer` or `User-Agent` an access-log line shows.
const MAX_LOGGED_HEADER: usize = 256;

/// Most bytes of a method an access-log line shows.
const MAX_LOGGED_METHOD: usize = 32;

/// A header for the access log, cut to [`MAX_LOGGED_HEADER`].
fn logged_header<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    req.header(name).map(|v| cut_at_char(v, MAX_LOGGED_HEADER))
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut_at_char(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn log_line(
    s: &Settings,
    client: IpAddr,
    req: Option<&Request>,
    status: Status,
    bytes: usize,
    started: Instant,
) {
    let Some(log) = s.access_log else {
        return;
    };
    // A line's size is bounded, so the queue's memory is too (ACCESS_LOG_QUEUE lines).
    // Offered to the log's own thread, never written here: a slow stderr must not stall us.
    log.entry(&Entry {
        time: SystemTime::now(),
        remote: client,
        request: req.map(|r| RequestLine {
            method: cut_at_char(&r.method, MAX_LOGGED_METHOD),
            target: cut_at_char(&r.target, MAX_LOGGED_TARGET),
            protocol: r.version.as_str(),
        }),
        status: status.code(),
        bytes: bytes as u64,
        duration: started.elapsed(),
        referer: req.and_then(|r| logged_header(r, "referer")),
        user_agent: req.and_then(|r| logged_header(r, "user-agent")),
        connection: None,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_targets_are_cut_at_a_character_boundary() {
        assert_eq!(cut_at_char("/abc", 10), "/abc");
        assert_eq!(cut_at_char("/abc", 2), "/a");
        // 'é' is two bytes: a cut inside it moves back before it.
        assert_eq!(cut_at_char("/é", 2), "/");
        let long = "x".repeat(MAX_LOGGED_TARGET * 2);
        assert_eq!(
            cut_at_char(&long, MAX_LOGGED_TARGET).len(),
            MAX_LOGGED_TARGET
        );
    }
}
