//! Shared helpers for the integration tests: start the real server on `127.0.0.1:0`, speak raw
//! HTTP/1.1 to it over TCP as curl and a browser do, and read its responses with an independent
//! parser (by `Content-Length`, or to the end of the connection), plus a small JSON reader so the
//! tests check the server's JSON without trusting its own writer.
//!
//! Every client socket has read and write timeouts ([`IO_TIMEOUT`]), so a server that hangs
//! fails one test instead of stalling the whole run.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::ops::Index;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use livevote::config::Config;
use livevote::server::Server;

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
        www: www(),
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
        let stream = TcpStream::connect(addr).expect("connect to the test server");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
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
        let mut resp = Response {
            version,
            status,
            reason,
            headers,
            body: Vec::new(),
        };
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
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Opens a connection, sends `bytes`, and reads one response.
pub fn request(addr: SocketAddr, bytes: impl AsRef<[u8]>) -> Response {
    let method = String::from_utf8_lossy(bytes.as_ref())
        .split(' ')
        .next()
        .unwrap_or("")
        .to_string();
    let mut c = Client::connect(addr);
    c.send(bytes);
    c.read_response_to(&method)
}

/// `GET path` as curl sends it.
pub fn get_req(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"
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
    let counts = j["candidates"]
        .as_array()
        .iter()
        .map(|c| (c["uid"].as_str().to_string(), c["count"].as_u64()))
        .collect();
    (
        j["version"].as_u64(),
        j["epoch"].as_str().to_string(),
        counts,
    )
}

/// Casts one vote with `POST /vote uid=…` and returns the JSON answer (asserting 200).
pub fn vote(addr: SocketAddr, uid: &str) -> Json {
    let r = post(addr, "/vote", &format!("uid={uid}"));
    assert_eq!(r.status, 200, "vote for {uid}: {r:?}");
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
