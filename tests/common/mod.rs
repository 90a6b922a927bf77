//! Shared helpers for the integration tests: start the real server on `127.0.0.1:0`, speak raw
//! HTTP/1.1 to it over TCP as curl and a browser do, and read its responses with an independent
//! parser (by `Content-Length`, or to the end of the connection), plus a small JSON reader so the
//! tests check the server's JSON without trusting its own writer.
//!
//! Every client socket has read and write timeouts ([`IO_TIMEOUT`]), so a server that hangs
//! fails one test instead of stalling the whole run.
//!
//! Submodules: [`binary`] (the real `livevote` process), [`metrics`] (scraping `/metrics`),
//! [`redis`] (a real redis-server), [`rng`] (deterministic random inputs) and [`tempdir`] (scratch directories removed when dropped).
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod binary;
pub mod metrics;
pub mod redis;
pub mod rng;
pub mod tempdir;

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::ops::Index;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use livevote::config::Config;
use livevote::server::Server;
use tungstenite::client::IntoClientRequest;

/// Hang guard for every client read and write. Generous: it is never the thing a test measures.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The repository's `www/` directory.
pub fn www() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("www")
}

/// The test configuration: port 0, the repo's `www/`, no access log, everything else default.
pub fn test_config() -> Config {
    Config {
        addr: "127.0.0.1:0".parse().expect("literal address"),
        www: Some(www()),
        access_log: false,
        ..Config::default()
    }
}

/// Starts a server with [`test_config`] adjusted by `config_tweak`; returns its address.
pub fn start(config_tweak: impl FnOnce(&mut Config)) -> SocketAddr {
    let mut config = test_config();
    config_tweak(&mut config);
    Server::bind(config)
        .expect("server binds")
        .spawn()
        .expect("server starts")
}

/// A server with the default configuration (the tutorial's two candidates).
pub fn start_default() -> SocketAddr {
    start(|_| {})
}

/// Candidates `ids`, each named `Candidate ID`.
pub fn candidates(ids: &[&str]) -> Vec<(String, String)> {
    ids.iter()
        .map(|id| (id.to_string(), format!("Candidate {id}")))
        .collect()
}

/// A TCP connection to `addr` with the hang guards on ([`IO_TIMEOUT`] on reads and writes) and
/// no Nagle delay; Err if it cannot be made (the server is gone).
pub fn try_tcp(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// [`try_tcp`], panicking if the connection cannot be made.
pub fn tcp(addr: SocketAddr) -> TcpStream {
    try_tcp(addr).expect("connect to the test server")
}

// ---------------------------------------------------------------------------------------------
// Responses

/// One HTTP response as read off the wire.
#[derive(Clone)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub reason: String,
    /// Header fields in order, names as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("reason", &self.reason)
            .field("headers", &self.headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish()
    }
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// How many times header `name` appears.
    pub fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    /// The body as UTF-8 text (panics if it is not).
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("response body is UTF-8")
    }

    /// The body parsed as JSON (panics with the body if it is not JSON).
    pub fn json(&self) -> Json {
        let text = self.text();
        Json::parse(&text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text}"))
    }

    /// Whether the server said it will close the connection.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }

    /// Asserts the headers every final response must carry: an IMF-fixdate `Date`, and, for a
    /// status that has a body (not 1xx/204/304), exactly one `Content-Length` (matching the body
    /// unless `head`) and a `Content-Type`.
    pub fn assert_standard_headers(&self, head: bool) {
        let date = self
            .header("date")
            .unwrap_or_else(|| panic!("no Date header: {self:?}"));
        assert!(is_imf_fixdate(date), "Date is not an IMF-fixdate: {date:?}");
        if self.status < 200 || self.status == 204 || self.status == 304 {
            return;
        }
        assert_eq!(
            self.header_count("content-length"),
            1,
            "exactly one Content-Length: {self:?}"
        );
        let len: usize = self
            .header("content-length")
            .unwrap()
            .parse()
            .expect("Content-Length is a number");
        if head {
            assert!(self.body.is_empty(), "HEAD response has a body");
        } else {
            assert_eq!(len, self.body.len(), "Content-Length matches the body");
        }
        assert!(
            self.header("content-type").is_some_and(|t| !t.is_empty()),
            "no Content-Type: {self:?}"
        );
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 §5.6.7), checked by shape.
pub fn is_imf_fixdate(s: &str) -> bool {
    let b = s.as_bytes();
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b.len() == 29
        && DAYS.contains(&&s[0..3])
        && &s[3..5] == ", "
        && digits(5..7)
        && b[7] == b' '
        && MONTHS.contains(&&s[8..11])
        && b[11] == b' '
        && digits(12..16)
        && b[16] == b' '
        && digits(17..19)
        && b[19] == b':'
        && digits(20..22)
        && b[22] == b':'
        && digits(23..25)
        && &s[25..] == " GMT"
}

// ---------------------------------------------------------------------------------------------
// A raw client

/// A TCP connection to the server with a read buffer, so pipelined responses and bytes that
/// arrive together are split correctly.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client {
            stream: tcp(addr),
            buf: Vec::new(),
        }
    }

    /// Like [`connect`](Self::connect) but reports a failure (the server may be gone).
    pub fn try_connect(addr: SocketAddr) -> io::Result<Client> {
        Ok(Client {
            stream: try_tcp(addr)?,
            buf: Vec::new(),
        })
    }

    /// Sets a different read timeout (still a hang guard).
    pub fn read_timeout(&self, t: Duration) {
        self.stream.set_read_timeout(Some(t)).unwrap();
    }

    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream
            .write_all(bytes.as_ref())
            .expect("write to the server");
    }

    /// Like [`send`](Self::send) but reports errors (the server may have closed already).
    pub fn try_send(&mut self, bytes: impl AsRef<[u8]>) -> io::Result<()> {
        self.stream.write_all(bytes.as_ref())
    }

    /// Reads more bytes into the buffer: Ok(0) at the end of the stream.
    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads one response to a request with `method` (a `HEAD` response has no body).
    /// `Ok(None)` when the server closed before sending anything.
    pub fn try_read_response_to(&mut self, method: &str) -> io::Result<Option<Response>> {
        let Some(mut resp) = self.try_read_head()? else {
            return Ok(None);
        };
        let status = resp.status;
        let bodyless = method == "HEAD" || status < 200 || status == 204 || status == 304;
        if bodyless {
            return Ok(Some(resp));
        }
        if let Some(len) = resp.header("content-length") {
            let len: usize = len
                .trim()
                .parse()
                .map_err(|_| bad(format!("bad Content-Length {len:?}")))?;
            while self.buf.len() < len {
                if self.fill()? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed inside a response body",
                    ));
                }
            }
            resp.body = self.buf.drain(..len).collect();
        } else if resp.closes() {
            // No length: the body runs to the end of the connection (RFC 9112 §6.3 ¶8).
            while self.fill()? > 0 {}
            resp.body = std::mem::take(&mut self.buf);
        } else {
            return Err(bad(format!(
                "response without Content-Length on a persistent connection: {resp:?}"
            )));
        }
        Ok(Some(resp))
    }

    /// Reads one response head (status line and fields) and leaves whatever follows it in the
    /// buffer: the body, or the stream of an event source. `Ok(None)` when the server closed
    /// before sending anything.
    pub fn try_read_head(&mut self) -> io::Result<Option<Response>> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            if self.fill()? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed inside a response head: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
        };
        let head = String::from_utf8(self.buf[..head_end].to_vec())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "head is not UTF-8"))?;
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("").to_string();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
        let reason = parts.next().unwrap_or("").to_string();
        if !version.starts_with("HTTP/1.") {
            return Err(bad(format!("bad status line {status_line:?}")));
        }
        let mut headers = Vec::new();
        for line in lines {
            let (n, v) = line
                .split_once(':')
                .ok_or_else(|| bad(format!("bad header line {line:?}")))?;
            headers.push((n.to_string(), v.trim().to_string()));
        }
        Ok(Some(Response {
            version,
            status,
            reason,
            headers,
            body: Vec::new(),
        }))
    }

    /// Sends one request and reads its response (to the request's method); panics on failure.
    pub fn call(&mut self, req: impl AsRef<[u8]>) -> Response {
        let method = method_of(req.as_ref());
        self.send(req);
        self.read_response_to(&method)
    }

    /// Like [`call`](Self::call) but reports every failure, a close before the response too.
    pub fn try_call(&mut self, req: impl AsRef<[u8]>) -> io::Result<Response> {
        let method = method_of(req.as_ref());
        self.try_send(req)?;
        self.try_read_response_to(&method)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            )
        })
    }

    /// Reads one response to a `GET`-like request; panics if there is none.
    pub fn read_response(&mut self) -> Response {
        self.read_response_to("GET")
    }

    /// Reads one response to a request with `method`; panics if there is none.
    pub fn read_response_to(&mut self, method: &str) -> Response {
        match self.try_read_response_to(method) {
            Ok(Some(r)) => r,
            Ok(None) => panic!("server closed the connection without a response"),
            Err(e) => panic!("reading a response: {e}"),
        }
    }

    /// Reads `n` responses in order (pipelining).
    pub fn read_responses(&mut self, n: usize) -> Vec<Response> {
        (0..n).map(|_| self.read_response()).collect()
    }

    /// Waits for the server to close the connection, and returns any bytes it sent first.
    /// A reset counts as closed. Panics if the connection is still open after the read timeout.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        loop {
            match self.fill() {
                Ok(0) => break,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!("connection still open after {IO_TIMEOUT:?}")
                }
                Err(_) => break, // reset
            }
        }
        std::mem::take(&mut self.buf)
    }

    /// Asserts the server closes the connection without sending anything more.
    pub fn assert_closed(&mut self) {
        let rest = self.read_to_close();
        assert!(
            rest.is_empty(),
            "expected the connection to close, got {:?}",
            String::from_utf8_lossy(&rest)
        );
    }

    /// Stops sending (half-close), as a client that has sent its last request does.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Reads until at least `n` bytes are buffered; Ok(false) if the stream ends first.
    pub fn fill_to(&mut self, n: usize) -> io::Result<bool> {
        while self.buf.len() < n {
            if self.fill()? == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The bytes read but not yet taken (what followed a response head, say).
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Takes the first `n` buffered bytes.
    pub fn take(&mut self, n: usize) -> Vec<u8> {
        self.buf.drain(..n).collect()
    }
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The method of a raw request: everything before its first space.
pub fn method_of(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .split(' ')
        .next()
        .unwrap_or("")
        .to_string()
}

/// `method path` with header lines `extra` (each ending in CRLF) and a form body.
pub fn call(addr: SocketAddr, method: &str, path: &str, extra: &str, body: &str) -> Response {
    request(
        addr,
        format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Content-Length: {}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// Opens a connection, sends `bytes`, and reads one response.
pub fn request(addr: SocketAddr, bytes: impl AsRef<[u8]>) -> Response {
    Client::connect(addr).call(bytes)
}

/// A new connection whose `GET /votes` was answered `200`, or None if it was refused, reset or
/// closed instead (for waiting until the server has a free slot again).
pub fn served_client(addr: SocketAddr) -> Option<Client> {
    let mut c = Client::connect(addr);
    let r = c.try_call(get_req("/votes")).ok()?;
    (r.status == 200).then_some(c)
}

/// `GET path` as curl sends it.
pub fn get_req(path: &str) -> String {
    get_req_with(path, "")
}

/// `GET path` as curl sends it, with `extra` header lines (each ending in CRLF).
pub fn get_req_with(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\
         {extra}\r\n"
    )
}

/// `POST path` with a form body, as `curl -d BODY` sends it.
pub fn post_req(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\
         Content-Length: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n{body}",
        body.len()
    )
}

pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, get_req(path))
}

pub fn post(addr: SocketAddr, path: &str, body: &str) -> Response {
    request(addr, post_req(path, body))
}

/// The tally from `GET /votes`: (version, epoch, uid → count).
pub fn tally(addr: SocketAddr) -> (u64, String, BTreeMap<String, u64>) {
    let r = get(addr, "/votes");
    assert_eq!(r.status, 200, "{r:?}");
    let j = r.json();
    (
        j["version"].as_u64(),
        j["epoch"].as_str().to_string(),
        uid_counts(&j["candidates"]),
    )
}

/// The tally from `GET /votes` without its epoch: (version, uid → count).
pub fn version_counts(addr: SocketAddr) -> (u64, BTreeMap<String, u64>) {
    let (version, _, counts) = tally(addr);
    (version, counts)
}

/// Casts one vote with `POST /vote uid=…` and returns the JSON answer (asserting 200).
pub fn vote(addr: SocketAddr, uid: &str) -> Json {
    let r = post(addr, "/vote", &format!("uid={uid}"));
    assert_eq!(r.status, 200, "vote for {uid}: {r:?}");
    r.json()
}

/// Votes `a, b, a, c` on a fresh server whose candidates are a, b and c (version 4: a=2, b=1,
/// c=1) and returns the epoch.
pub fn four_votes(addr: SocketAddr) -> String {
    for uid in ["a", "b", "a", "c"] {
        vote(addr, uid);
    }
    let (version, epoch, _) = tally(addr);
    assert_eq!(version, 4);
    epoch
}

/// Asserts `status`, the headers every response carries and a JSON `Content-Type`; returns the
/// body as JSON.
pub fn assert_json(r: &Response, status: u16) -> Json {
    assert_eq!(r.status, status, "{r:?}");
    r.assert_standard_headers(false);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json"),
        "{r:?}"
    );
    r.json()
}

/// Polls `f` until it returns Some, or panics after `limit` (a hang guard, not a measurement).
pub fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// The vote page

/// One candidate's `<li id="user_ID" …>…</li>` on a vote page.
#[derive(Debug)]
pub struct Li {
    /// The start tag, `<li id="user_ID" …>`.
    pub start_tag: String,
    /// Everything between the start tag and `</li>`.
    pub inner: String,
}

/// The `<li>` of candidate `uid` on `page` (the quote after the id keeps `user_1` from
/// matching `user_10`).
pub fn find_li(page: &str, uid: &str) -> Option<Li> {
    let open = format!("<li id=\"user_{uid}\"");
    let start = page.find(&open)?;
    let tag_end = start + page[start..].find('>')? + 1;
    let end = tag_end + page[tag_end..].find("</li>")?;
    Some(Li {
        start_tag: page[start..tag_end].to_string(),
        inner: page[tag_end..end].to_string(),
    })
}

/// Asserts the tutorial's DOM for one candidate still holds — `<li id="user_ID" …>NAME<span>
/// COUNT</span>…</li>` (`name_html` as escaped in HTML) — and that the `<li>` carries a real
/// form that votes for it without JavaScript. Returns the `<li>` for further checks.
pub fn assert_tutorial_li(page: &str, uid: &str, name_html: &str, count: u64) -> Li {
    let li = find_li(page, uid).unwrap_or_else(|| panic!("no <li id=\"user_{uid}\">: {page}"));
    let dom = format!("{name_html}<span>{count}</span>");
    assert!(
        li.inner.starts_with(&dom),
        "<li id=\"user_{uid}\"> must start with {dom:?}: {li:?}"
    );
    let mut form = &li.inner[dom.len()..];
    // The share in percent, for a viewer who sees the counts.
    if let Some(rest) = form.strip_prefix("<small class=\"pct\">") {
        form = &rest[rest.find("</small>").expect("a closed <small>") + "</small>".len()..];
    }
    assert!(
        form.starts_with("<form method=\"post\" action=\"/vote\">") && form.ends_with("</form>"),
        "a no-JavaScript vote form: {li:?}"
    );
    assert!(
        form.contains(&format!(
            "<input type=\"hidden\" name=\"uid\" value=\"{uid}\">"
        )),
        "the form votes for {uid}: {li:?}"
    );
    assert!(
        form.contains(&format!(
            "<button type=\"submit\" aria-label=\"Vote for {name_html}\">"
        )),
        "a labelled button: {li:?}"
    );
    li
}

// ---------------------------------------------------------------------------------------------
// Server-Sent Events, parsed by hand (WHATWG HTML §9.2.6)

/// One dispatched event: the fields of one block that had `data`.
#[derive(Clone, Debug, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Json {
        Json::parse(&self.data)
            .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {:?}", self.data))
    }

    pub fn is_presence(&self) -> bool {
        is_presence(&self.json())
    }
}

/// An open `GET /events` stream: the response head, then events read as they arrive.
pub struct EventStream {
    client: Client,
    pub head: Response,
    /// Every `retry:` value seen so far, in order.
    pub retries: Vec<u64>,
    /// Every comment line seen so far (without the leading `:`), in order.
    pub comments: Vec<String>,
    /// Every event dispatched so far, in order.
    pub seen: Vec<SseEvent>,
    /// The fields of the block being read, kept when a read times out inside it.
    partial: PartialEvent,
}

/// The fields of a block read so far.
#[derive(Default)]
struct PartialEvent {
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
    /// Whether the block has had a line yet (blank lines before one are skipped).
    any: bool,
}

/// Sends `GET target` with `extra` header lines (each ending in CRLF) and reads the head.
/// Panics unless it is a `200` event stream.
pub fn open_events(addr: SocketAddr, target: &str, extra: &str) -> EventStream {
    let (client, head) = events_request(addr, target, extra);
    assert_eq!(head.status, 200, "{target}: {head:?}");
    EventStream {
        client,
        head,
        retries: Vec::new(),
        comments: Vec::new(),
        seen: Vec::new(),
        partial: PartialEvent::default(),
    }
}

/// Sends `GET target` as a browser's `EventSource` does and reads only the response head.
pub fn events_request(addr: SocketAddr, target: &str, extra: &str) -> (Client, Response) {
    let mut c = Client::connect(addr);
    c.send(format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\
         Cache-Control: no-cache\r\n{extra}\r\n"
    ));
    let head = c
        .try_read_head()
        .expect("read the event stream's head")
        .expect("server closed without a response");
    (c, head)
}

impl EventStream {
    /// Sets a different read timeout (still a hang guard).
    pub fn read_timeout(&self, t: Duration) {
        self.client.read_timeout(t);
    }

    /// The next line of the stream without its terminator (LF or CRLF); None at its end.
    fn line(&mut self) -> io::Result<Option<String>> {
        loop {
            if let Some(i) = self.client.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.client.buf.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return String::from_utf8(line)
                    .map(Some)
                    .map_err(|_| bad("event stream line is not UTF-8".into()));
            }
            if self.client.fill()? == 0 {
                assert!(
                    self.client.buf.is_empty(),
                    "stream ended inside a line: {:?}",
                    String::from_utf8_lossy(&self.client.buf)
                );
                return Ok(None);
            }
        }
    }

    /// Reads up to and including the next blank line: `Ok(Some(event))` if the block
    /// dispatched one, `Ok(None)` if not (comments, `retry:` alone), Err at the end of the
    /// stream or on a read error (a timeout). After a timeout, the next call carries on with
    /// the block where it stopped.
    pub fn block(&mut self) -> io::Result<Option<SseEvent>> {
        loop {
            let Some(line) = self.line()? else {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "event stream ended",
                ));
            };
            if line.is_empty() {
                if !self.partial.any {
                    continue;
                }
                break;
            }
            self.partial.any = true;
            if let Some(comment) = line.strip_prefix(':') {
                self.comments.push(comment.to_string());
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_str(), ""),
            };
            match field {
                "id" => self.partial.id = Some(value.to_string()),
                "event" => self.partial.event = Some(value.to_string()),
                "data" => {
                    let d = self.partial.data.get_or_insert_with(String::new);
                    if !d.is_empty() {
                        d.push('\n');
                    }
                    d.push_str(value);
                }
                "retry" => {
                    let ms = value
                        .parse()
                        .unwrap_or_else(|_| panic!("retry: is not a number: {line:?}"));
                    self.retries.push(ms);
                }
                other => panic!("unknown event stream field {other:?}: {line:?}"),
            }
        }
        let PartialEvent {
            id, event, data, ..
        } = std::mem::take(&mut self.partial);
        Ok(data.map(|data| {
            let e = SseEvent { id, event, data };
            self.seen.push(e.clone());
            e
        }))
    }

    /// The next dispatched event (skipping comments); panics at the end or on a timeout.
    pub fn next_event(&mut self) -> SseEvent {
        loop {
            match self.block() {
                Ok(Some(e)) => return e,
                Ok(None) => {}
                Err(e) => panic!("reading the event stream: {e}"),
            }
        }
    }

    /// The next event that is not presence.
    pub fn next_non_presence(&mut self) -> SseEvent {
        loop {
            let e = self.next_event();
            if !e.is_presence() {
                return e;
            }
        }
    }

    /// Reads events until one satisfies `f`, or panics after `limit`.
    pub fn until(
        &mut self,
        limit: Duration,
        what: &str,
        mut f: impl FnMut(&SseEvent) -> bool,
    ) -> SseEvent {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {what}; saw {:#?}",
                self.seen
            );
            self.read_timeout(left);
            match self.block() {
                Ok(Some(e)) if f(&e) => {
                    self.read_timeout(IO_TIMEOUT);
                    return e;
                }
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {
                    panic!("timed out waiting for {what}; saw {:#?}", self.seen)
                }
                Err(e) => panic!("waiting for {what}: {e}"),
            }
        }
    }

    /// Asserts that no event other than presence (comments are fine) arrives for `quiet`.
    pub fn assert_nothing_but_presence_for(&mut self, quiet: Duration) {
        let end = Instant::now() + quiet;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.read_timeout(left);
            match self.block() {
                Ok(Some(e)) => assert!(e.is_presence(), "unexpected event {e:?}"),
                Ok(None) => {}
                Err(e) if is_timeout(&e) => break,
                Err(e) => panic!("{e}"),
            }
        }
        self.read_timeout(IO_TIMEOUT);
    }
}

pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

// ---------------------------------------------------------------------------------------------
// WebSocket through tungstenite (an independent implementation)

pub type Ws = tungstenite::WebSocket<TcpStream>;

/// A tungstenite client on `path` (query included); tungstenite checks the accept key.
pub fn ws_connect(addr: SocketAddr, path: &str) -> Ws {
    ws_connect_with(addr, path, &[])
}

/// [`ws_connect`] with more header fields in the handshake request (an `Origin`, say).
pub fn ws_connect_with(addr: SocketAddr, path: &str, headers: &[(&'static str, &str)]) -> Ws {
    let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
    for (name, value) in headers {
        req.headers_mut().insert(*name, value.parse().unwrap());
    }
    let (ws, resp) = tungstenite::client(req, tcp(addr)).expect("WebSocket handshake");
    assert_eq!(resp.status(), 101);
    ws
}

/// The next text message as JSON, skipping pings and pongs (tungstenite answers pings); None
/// when the read timed out first (the socket stays usable).
pub fn ws_try_next_json(ws: &mut Ws) -> Option<Json> {
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => {
                return Some(Json::parse(&t).unwrap_or_else(|e| panic!("not JSON ({e}): {t}")))
            }
            Ok(tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_)) => {}
            Ok(other) => panic!("expected a text message, got {other:?}"),
            Err(tungstenite::Error::Io(e)) if is_timeout(&e) => return None,
            Err(e) => panic!("read a WebSocket message: {e}"),
        }
    }
}

/// The next text message as JSON, skipping pings and pongs; panics on a timeout.
pub fn ws_next_json(ws: &mut Ws) -> Json {
    ws_try_next_json(ws).unwrap_or_else(|| panic!("no WebSocket message within the read timeout"))
}

/// The next message of type `kind` (`ack`, `error`), skipping broadcasts and presence; an
/// `ack` or `error` of the other type fails.
pub fn ws_next_of_type(ws: &mut Ws, kind: &str) -> Json {
    loop {
        let j = ws_next_json(ws);
        match &j["type"] {
            Json::Str(t) if t == kind => return j,
            Json::Str(t) if t == "ack" || t == "error" => panic!("expected {kind}: {j:?}"),
            _ => {}
        }
    }
}

/// A vote message with a vote id, `{"uid":…,"vote_id":…}`.
pub fn vote_message(uid: &str, vote_id: &str) -> String {
    format!("{{\"uid\":\"{uid}\",\"vote_id\":\"{vote_id}\"}}")
}

/// The key of the example handshake in RFC 6455 §1.3.
pub const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// The header lines of a WebSocket upgrade with [`RFC_KEY`], each ending in CRLF.
pub fn upgrade_headers() -> String {
    format!(
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {RFC_KEY}\r\n\
         Sec-WebSocket-Version: 13\r\n"
    )
}

/// A raw WebSocket upgrade request for `path`.
pub fn upgrade_req(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{}\r\n",
        upgrade_headers()
    )
}

/// The next message that is not presence.
pub fn ws_next_non_presence(ws: &mut Ws) -> Json {
    loop {
        let j = ws_next_json(ws);
        if !is_presence(&j) {
            return j;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The live protocol's messages (docs/PROTOCOL.md)

pub fn is_presence(j: &Json) -> bool {
    matches!(&j["type"], Json::Str(t) if t == "presence")
}

/// Viewers by transport, as a presence message or a `presence` object carries them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Presence {
    pub ws: u64,
    pub sse: u64,
    pub longpoll: u64,
    pub poll: u64,
}

/// Reads a presence object (a presence message, or a long-poll's or `/votes`' `presence`),
/// checking that `total` is the sum.
pub fn presence(j: &Json) -> Presence {
    let p = Presence {
        ws: j["ws"].as_u64(),
        sse: j["sse"].as_u64(),
        longpoll: j["longpoll"].as_u64(),
        poll: j["poll"].as_u64(),
    };
    assert_eq!(
        j["total"].as_u64(),
        p.ws + p.sse + p.longpoll + p.poll,
        "total is the sum: {j:?}"
    );
    p
}

/// A resume message (the first on every WebSocket or SSE connection), checked for its shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resume {
    pub kind: String,
    pub from: u64,
    pub to: u64,
    pub epoch: String,
    /// `candidates` (snapshot) or `changes` (delta) as uid → count; empty for live.
    pub counts: BTreeMap<String, u64>,
}

pub fn resume(j: &Json) -> Resume {
    assert_eq!(j["type"], Json::Str("resume".into()), "a resume: {j:?}");
    let kind = j["kind"].as_str().to_string();
    let (list, required): (&str, &[&str]) = match kind.as_str() {
        "snapshot" => (
            "candidates",
            &["type", "kind", "from", "to", "epoch", "candidates"],
        ),
        "delta" => (
            "changes",
            &["type", "kind", "from", "to", "epoch", "changes"],
        ),
        "live" => ("", &["type", "kind", "from", "to", "epoch"]),
        other => panic!("unknown resume kind {other:?}: {j:?}"),
    };
    let keys = j.keys();
    for k in required {
        assert!(keys.contains(k), "resume without {k:?}: {j:?}");
    }
    for k in &keys {
        // A snapshot may also say `version` (the same as `to`), the poll's `state` and
        // `total` (docs/API.md).
        let snapshot_extra = ["version", "state", "total"].contains(k) && kind == "snapshot";
        assert!(
            required.contains(k) || snapshot_extra,
            "unexpected field {k:?} in {j:?}"
        );
        if kind == "snapshot" && j.has("total") {
            let sum: u64 = j["candidates"]
                .as_array()
                .iter()
                .map(|c| c["count"].as_u64())
                .sum();
            assert_eq!(j["total"].as_u64(), sum, "total is the sum: {j:?}");
        }
    }
    let to = j["to"].as_u64();
    if j.has("version") {
        assert_eq!(j["version"].as_u64(), to, "version and to differ: {j:?}");
    }
    let counts = if list.is_empty() {
        BTreeMap::new()
    } else {
        uid_counts(&j[list])
    };
    Resume {
        kind,
        from: j["from"].as_u64(),
        to,
        epoch: j["epoch"].as_str().to_string(),
        counts,
    }
}

/// A list of `{"uid":…,"count":…}` as uid → count; each uid at most once.
pub fn uid_counts(list: &Json) -> BTreeMap<String, u64> {
    let items = list.as_array();
    let map: BTreeMap<String, u64> = items
        .iter()
        .map(|c| (c["uid"].as_str().to_string(), c["count"].as_u64()))
        .collect();
    assert_eq!(map.len(), items.len(), "a candidate listed twice: {list:?}");
    map
}

/// uid → count from literal pairs.
pub fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(u, c)| (u.to_string(), *c)).collect()
}

/// Casts `n` votes for `uid` on one keep-alive connection, pipelined, checking each.
pub fn cast_pipelined(addr: SocketAddr, uid: &str, n: usize) {
    let mut c = Client::connect(addr);
    let one = post_req("/vote", &format!("uid={uid}"));
    let batch = one.repeat(n);
    // Written from another thread so a server that answers while we are still writing cannot
    // fill both socket buffers and deadlock the test.
    let mut w = c.stream.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(batch.as_bytes()));
    for _ in 0..n {
        assert_eq!(c.read_response_to("POST").status, 200);
    }
    writer.join().unwrap().unwrap();
}

// ---------------------------------------------------------------------------------------------
// A small JSON reader (RFC 8259), independent of the server's writer.

#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

static NULL: Json = Json::Null;

impl Index<&str> for Json {
    type Output = Json;
    /// A missing key (or indexing a non-object) gives `Null`.
    fn index(&self, key: &str) -> &Json {
        match self {
            Json::Obj(fields) => fields
                .iter()
                .find(|(k, _)| k == key)
                .map_or(&NULL, |(_, v)| v),
            _ => &NULL,
        }
    }
}

impl Index<usize> for Json {
    type Output = Json;
    fn index(&self, i: usize) -> &Json {
        match self {
            Json::Arr(items) => items.get(i).unwrap_or(&NULL),
            _ => &NULL,
        }
    }
}

impl Json {
    pub fn parse(s: &str) -> Result<Json, String> {
        let mut p = JsonParser {
            b: s.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.b.len() {
            return Err(format!("trailing bytes at {}", p.i));
        }
        Ok(v)
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    pub fn has(&self, key: &str) -> bool {
        matches!(self, Json::Obj(f) if f.iter().any(|(k, _)| k == key))
    }

    pub fn as_str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            other => panic!("expected a JSON string, got {other:?}"),
        }
    }

    pub fn as_bool(&self) -> bool {
        match self {
            Json::Bool(b) => *b,
            other => panic!("expected a JSON boolean, got {other:?}"),
        }
    }

    pub fn as_u64(&self) -> u64 {
        match self {
            Json::Num(n) if *n >= 0.0 && n.fract() == 0.0 && *n < 9.0e15 => *n as u64,
            other => panic!("expected a non-negative JSON integer, got {other:?}"),
        }
    }

    pub fn as_array(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            other => panic!("expected a JSON array, got {other:?}"),
        }
    }

    pub fn keys(&self) -> Vec<&str> {
        match self {
            Json::Obj(f) => f.iter().map(|(k, _)| k.as_str()).collect(),
            other => panic!("expected a JSON object, got {other:?}"),
        }
    }
}

struct JsonParser<'a> {
    b: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &str) -> Result<(), String> {
        if self.b[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            Ok(())
        } else {
            Err(format!("expected {lit:?} at {}", self.i))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.b.get(self.i) {
            None => Err("unexpected end".into()),
            Some(b'n') => self.eat("null").map(|_| Json::Null),
            Some(b't') => self.eat("true").map(|_| Json::Bool(true)),
            Some(b'f') => self.eat("false").map(|_| Json::Bool(false)),
            Some(b'"') => self.string().map(Json::Str),
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return Err(format!("expected , or ] at {}", self.i)),
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut fields = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(fields));
                }
                loop {
                    self.ws();
                    if self.b.get(self.i) != Some(&b'"') {
                        return Err(format!("expected a key at {}", self.i));
                    }
                    let k = self.string()?;
                    self.ws();
                    self.eat(":")?;
                    let v = self.value()?;
                    if fields.iter().any(|(f, _)| f == &k) {
                        return Err(format!("duplicate key {k:?}"));
                    }
                    fields.push((k, v));
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(fields));
                        }
                        _ => return Err(format!("expected , or }} at {}", self.i)),
                    }
                }
            }
            Some(_) => {
                let start = self.i;
                while self.i < self.b.len()
                    && matches!(
                        self.b[self.i],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.i += 1;
                }
                let text = std::str::from_utf8(&self.b[start..self.i]).unwrap();
                text.parse::<f64>()
                    .map(Json::Num)
                    .map_err(|_| format!("bad number {text:?} at {start}"))
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self
            .b
            .get(self.i..self.i + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| format!("bad \\u escape at {}", self.i))?;
        self.i += 4;
        Ok(h)
    }

    fn string(&mut self) -> Result<String, String> {
        self.i += 1; // the opening quote
        let mut out = String::new();
        loop {
            let start = self.i;
            while self.i < self.b.len() && !matches!(self.b[self.i], b'"' | b'\\') {
                if self.b[self.i] < 0x20 {
                    return Err(format!("raw control character in a string at {}", self.i));
                }
                self.i += 1;
            }
            out.push_str(std::str::from_utf8(&self.b[start..self.i]).map_err(|e| e.to_string())?);
            match self.b.get(self.i) {
                None => return Err("unterminated string".into()),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                _ => {}
            }
            self.i += 1; // the backslash
            let c = *self.b.get(self.i).ok_or("unterminated escape")?;
            self.i += 1;
            match c {
                b'"' => out.push('"'),
                b'\\' => out.push('\\'),
                b'/' => out.push('/'),
                b'b' => out.push('\u{8}'),
                b'f' => out.push('\u{c}'),
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                b'u' => {
                    let mut cp = self.hex4()?;
                    if (0xd800..0xdc00).contains(&cp) {
                        self.eat("\\u")?;
                        let lo = self.hex4()?;
                        if !(0xdc00..0xe000).contains(&lo) {
                            return Err("unpaired surrogate".into());
                        }
                        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    }
                    out.push(char::from_u32(cp).ok_or("bad code point")?);
                }
                other => return Err(format!("bad escape \\{}", other as char)),
            }
        }
    }
}
