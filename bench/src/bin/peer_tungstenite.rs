//! The bare comparison peer for the benchmarks: the "obvious" blocking thread-per-connection
//! server one writes in an afternoon, `httparse` for HTTP/1.1 requests and `tungstenite` for
//! WebSockets, speaking the subset of livevote's protocol the load generator drives:
//!
//! - `GET /index`: an ~860-byte HTML page with the current counts, rendered per request.
//! - `GET /votes`: `{"version":V,"epoch":"E","candidates":[{"uid","name","count"}…]}`.
//! - `POST /vote` with the form body `uid=N`: the count is incremented under the one `Mutex`,
//!   the answer is the 2 bytes `ok`.
//! - `GET /get_new_vote?since=V`: answers at once when the version is past V, else waits on a
//!   `Condvar` (10 s at most) until a vote moves it; the answer is livevote's long-poll JSON
//!   (`{"status":true,"data":{"uid","count"},"version","from","kind","changes":[…]}`, the
//!   candidates changed since V; `status:false` on the timeout). Without `since`: waits for
//!   the next vote. Each woken thread builds its own answer.
//! - `/get_new_vote` upgraded to a WebSocket: every subscriber gets one
//!   `{"uid":"1","count":N,"version":V}` text message per vote (no resume, no presence); a
//!   text message naming a candidate (`1`, `2`) is a vote. Every vote (WebSocket or POST) is
//!   counted and written to every subscriber by the voter's own thread, under the tally's lock,
//!   so the messages go out in version order.
//! - `/chatsocket` upgraded: echo (text as text, binary as binary).
//!
//! Keep-alive (HTTP/1.1's default; `Connection: close` and HTTP/1.0 close), pipelined requests
//! are answered in order. One OS thread per connection with std's default stack, blocking I/O,
//! `TCP_NODELAY`, one 8 KiB read buffer and one reused output buffer per connection (dropped
//! before a WebSocket starts), the head and body in one write, a 10 s write timeout so a
//! subscriber that stops reading cannot stall the broadcast forever. A vote notifies the
//! `Condvar` only when a long-poll waits. Nothing else is tuned.
//!
//! Usage: `peer_tungstenite --addr 127.0.0.1:PORT`

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::{Role, WebSocket};
use tungstenite::Message;

/// How long a long-poll waits for a vote.
const LONGPOLL_TIMEOUT: Duration = Duration::from_secs(10);
/// The read buffer: a request head (and its body) must fit.
const READ_BUF: usize = 8192;

struct Subscriber {
    id: u64,
    out: Mutex<TcpStream>,
    dead: AtomicBool,
}

struct Candidate {
    uid: &'static str,
    name: &'static str,
    count: u64,
    /// The version of this candidate's last vote.
    changed: u64,
}

struct Tally {
    candidates: Vec<Candidate>,
    version: u64,
    /// The candidate of the last vote (livevote's `data`).
    last: Option<usize>,
    /// Long-polls waiting on the condvar.
    waiters: usize,
}

struct State {
    tally: Mutex<Tally>,
    changed: Condvar,
    subs: Mutex<Vec<Arc<Subscriber>>>,
    next_id: AtomicU64,
    epoch: String,
}

fn main() {
    let mut addr = "127.0.0.1:9090".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--addr" => addr = args.next().expect("--addr needs a value"),
            other => {
                eprintln!("peer_tungstenite: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let listener = TcpListener::bind(&addr).unwrap_or_else(|e| {
        eprintln!("peer_tungstenite: cannot bind {addr}: {e}");
        std::process::exit(1);
    });
    eprintln!("peer_tungstenite listening on {addr}");
    let epoch = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    );
    let state = Arc::new(State {
        tally: Mutex::new(Tally {
            candidates: vec![
                Candidate {
                    uid: "1",
                    name: "野味",
                    count: 0,
                    changed: 0,
                },
                Candidate {
                    uid: "2",
                    name: "海龙",
                    count: 0,
                    changed: 0,
                },
            ],
            version: 0,
            last: None,
            waiters: 0,
        }),
        changed: Condvar::new(),
        subs: Mutex::new(Vec::new()),
        next_id: AtomicU64::new(1),
        epoch,
    });
    let mut last_complaint = Instant::now() - Duration::from_secs(2);
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) => {
                if last_complaint.elapsed() >= Duration::from_secs(1) {
                    eprintln!("peer_tungstenite: accept: {e}");
                    last_complaint = Instant::now();
                }
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let st = Arc::clone(&state);
        if let Err(e) = thread::Builder::new().spawn(move || serve(st, stream)) {
            if last_complaint.elapsed() >= Duration::from_secs(1) {
                eprintln!("peer_tungstenite: cannot start a connection thread: {e}");
                last_complaint = Instant::now();
            }
        }
    }
}

/// Which WebSocket endpoint an upgrade asked for.
enum Endpoint {
    Votes,
    Chat,
}

/// A connection handed over to a WebSocket after its `101`: the bytes read past the request.
struct Upgrade {
    endpoint: Endpoint,
    leftover: Vec<u8>,
}

fn serve(state: Arc<State>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    // The HTTP buffers live in serve_http's frame only: an upgraded connection does not keep them.
    let Some((stream, up)) = serve_http(&state, stream) else {
        return;
    };
    let ws = WebSocket::from_partially_read(stream, up.leftover, Role::Server, None);
    match up.endpoint {
        Endpoint::Chat => echo(ws),
        Endpoint::Votes => subscriber(&state, ws),
    }
}

/// What a parsed request asks for (taken out of httparse's borrow of the read buffer).
enum Route {
    Index,
    Votes,
    Vote,
    LongPoll(Option<u64>),
    Upgrade(Endpoint, String),
    NotFound,
    BadRequest(&'static str),
}

/// Answers requests on a keep-alive connection until it closes, or returns it for a WebSocket.
fn serve_http(state: &State, mut stream: TcpStream) -> Option<(TcpStream, Upgrade)> {
    let mut buf = vec![0u8; READ_BUF];
    let mut filled = 0usize;
    let mut out: Vec<u8> = Vec::with_capacity(2048);
    loop {
        // Parse what is there; read more while the head is incomplete.
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        let head_len = match req.parse(&buf[..filled]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if filled == buf.len() {
                    let _ = stream.write_all(
                        b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    return None;
                }
                match stream.read(&mut buf[filled..]) {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => filled += n,
                }
                continue;
            }
            Err(_) => {
                let _ = stream.write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                return None;
            }
        };
        let method = req.method.unwrap_or("");
        let target = req.path.unwrap_or("/");
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, q),
            None => (target, ""),
        };
        let mut content_length = 0usize;
        let mut close = req.version != Some(1);
        let mut upgrade = false;
        let mut key: Option<&[u8]> = None;
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                match std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                {
                    Some(n) => content_length = n,
                    None => {
                        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                        return None;
                    }
                }
            } else if h.name.eq_ignore_ascii_case("connection") {
                let v = h.value;
                if contains_token(v, b"close") {
                    close = true;
                } else if contains_token(v, b"keep-alive") {
                    close = false;
                }
            } else if h.name.eq_ignore_ascii_case("upgrade") {
                upgrade = h.value.eq_ignore_ascii_case(b"websocket");
            } else if h.name.eq_ignore_ascii_case("sec-websocket-key") {
                key = Some(h.value);
            }
        }
        let route = match (method, path) {
            ("GET", "/get_new_vote") if upgrade => match key {
                Some(k) => Route::Upgrade(Endpoint::Votes, derive_accept_key(k)),
                None => Route::BadRequest("missing Sec-WebSocket-Key"),
            },
            ("GET", "/chatsocket") if upgrade => match key {
                Some(k) => Route::Upgrade(Endpoint::Chat, derive_accept_key(k)),
                None => Route::BadRequest("missing Sec-WebSocket-Key"),
            },
            ("GET", "/index") => Route::Index,
            ("GET", "/votes") => Route::Votes,
            ("POST", "/vote") => Route::Vote,
            ("GET", "/get_new_vote") => match query_u64(query, "since") {
                Ok(since) => Route::LongPoll(since),
                Err(()) => Route::BadRequest("'since' must be a version number"),
            },
            _ => Route::NotFound,
        };
        // The body (POST /vote's form) follows the head in the buffer.
        let end = head_len + content_length;
        if end > buf.len() {
            let _ = stream.write_all(
                b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return None;
        }
        while filled < end {
            match stream.read(&mut buf[filled..]) {
                Ok(0) | Err(_) => return None,
                Ok(n) => filled += n,
            }
        }
        out.clear();
        match route {
            Route::Upgrade(endpoint, accept) => {
                let resp = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                );
                if stream.write_all(resp.as_bytes()).is_err() {
                    return None;
                }
                let leftover = buf[end..filled].to_vec();
                return Some((stream, Upgrade { endpoint, leftover }));
            }
            Route::Index => {
                let body = render_index(state);
                respond(
                    &mut out,
                    "200 OK",
                    "text/html; charset=utf-8",
                    body.as_bytes(),
                    close,
                );
            }
            Route::Votes => {
                let body = render_votes(state);
                respond(
                    &mut out,
                    "200 OK",
                    "application/json",
                    body.as_bytes(),
                    close,
                );
            }
            Route::Vote => {
                let body = &buf[head_len..end];
                let uid = form_value(body, b"uid");
                if uid.is_some_and(|u| vote(state, u)) {
                    respond(&mut out, "200 OK", "text/plain", b"ok", close);
                } else {
                    respond(
                        &mut out,
                        "400 Bad Request",
                        "text/plain",
                        b"unknown candidate",
                        close,
                    );
                }
            }
            Route::LongPoll(since) => {
                let body = long_poll(state, since);
                respond(
                    &mut out,
                    "200 OK",
                    "application/json",
                    body.as_bytes(),
                    close,
                );
            }
            Route::NotFound => {
                respond(&mut out, "404 Not Found", "text/plain", b"not found", close);
            }
            Route::BadRequest(why) => {
                respond(
                    &mut out,
                    "400 Bad Request",
                    "text/plain",
                    why.as_bytes(),
                    true,
                );
                let _ = stream.write_all(&out);
                return None;
            }
        }
        if stream.write_all(&out).is_err() || close {
            return None;
        }
        // Keep what follows this request (a pipelined one) at the front of the buffer.
        buf.copy_within(end..filled, 0);
        filled -= end;
    }
}

/// Head and body into `out`, to go out in one write.
fn respond(out: &mut Vec<u8>, status: &str, ctype: &str, body: &[u8], close: bool) {
    let _ = write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{}\r\n",
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    );
    out.extend_from_slice(body);
}

/// Whether a comma-separated header value has `token` (case-insensitive).
fn contains_token(v: &[u8], token: &[u8]) -> bool {
    v.split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// `key`'s number in a query string: None when absent or empty, Err when not a number.
fn query_u64(query: &str, key: &str) -> Result<Option<u64>, ()> {
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == key {
            if v.is_empty() {
                return Ok(None);
            }
            return v.parse().map(Some).map_err(|_| ());
        }
    }
    Ok(None)
}

/// `key`'s value in an `application/x-www-form-urlencoded` body (no percent-decoding: the
/// candidates' ids are digits).
fn form_value<'a>(body: &'a [u8], key: &[u8]) -> Option<&'a str> {
    body.split(|&b| b == b'&').find_map(|pair| {
        let eq = pair.iter().position(|&b| b == b'=')?;
        (&pair[..eq] == key)
            .then(|| std::str::from_utf8(&pair[eq + 1..]).ok())
            .flatten()
    })
}

fn render_index(state: &State) -> String {
    let t = state.tally.lock().unwrap();
    let total: u64 = t.candidates.iter().map(|c| c.count).sum::<u64>().max(1);
    let mut items = String::with_capacity(512);
    for c in &t.candidates {
        let _ = std::fmt::Write::write_fmt(
            &mut items,
            format_args!(
                "<li id=\"user_{uid}\" style=\"--share:{share:.1}%\">{name} <span>{count}</span>\
<form method=\"post\" action=\"/vote\"><input type=\"hidden\" name=\"uid\" value=\"{uid}\">\
<button type=\"submit\" aria-label=\"Vote for {name}\">Vote</button></form></li>\n",
                uid = c.uid,
                name = c.name,
                count = c.count,
                share = 100.0 * c.count as f64 / total as f64
            ),
        );
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<title>Live vote</title>\n<link rel=\"icon\" href=\"data:,\">\n</head>\n\
<body data-version=\"{version}\" data-epoch=\"{epoch}\">\n<h1>Live vote</h1>\n\
<p>Press a candidate's <strong>Vote</strong> button.</p>\n<ul id=\"candidates\">\n{items}</ul>\n\
<footer><p>Version <strong id=\"version\">{version}</strong></p></footer>\n</body>\n</html>\n",
        version = t.version,
        epoch = state.epoch,
    )
}

fn render_votes(state: &State) -> String {
    let t = state.tally.lock().unwrap();
    let mut s = format!(
        "{{\"version\":{},\"epoch\":\"{}\",\"candidates\":[",
        t.version, state.epoch
    );
    for (k, c) in t.candidates.iter().enumerate() {
        if k > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            "{{\"uid\":\"{}\",\"name\":\"{}\",\"count\":{}}}",
            c.uid, c.name, c.count
        ));
    }
    s.push_str("]}");
    s
}

/// Waits (on the condvar) until the version passes `since`, then answers the candidates that
/// changed since it.
fn long_poll(state: &State, since: Option<u64>) -> String {
    let mut t = state.tally.lock().unwrap();
    let since = since.unwrap_or(t.version);
    if t.version == since {
        let deadline = Instant::now() + LONGPOLL_TIMEOUT;
        t.waiters += 1;
        while t.version == since {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            t = state.changed.wait_timeout(t, deadline - now).unwrap().0;
        }
        t.waiters -= 1;
    }
    if t.version == since {
        return format!(
            "{{\"status\":false,\"data\":null,\"version\":{},\"from\":{since},\"kind\":\"timeout\",\"epoch\":\"{}\",\"changes\":[]}}",
            t.version, state.epoch
        );
    }
    // A `since` past our version (another server's) gets every count.
    let from = if since > t.version { 0 } else { since };
    let mut changes = String::new();
    for c in t.candidates.iter().filter(|c| c.changed > from) {
        if !changes.is_empty() {
            changes.push(',');
        }
        changes.push_str(&format!("{{\"uid\":\"{}\",\"count\":{}}}", c.uid, c.count));
    }
    let data = match t.last {
        Some(i) => format!(
            "{{\"uid\":\"{}\",\"count\":{}}}",
            t.candidates[i].uid, t.candidates[i].count
        ),
        None => "null".into(),
    };
    format!(
        "{{\"status\":true,\"data\":{data},\"version\":{},\"from\":{since},\"kind\":\"live\",\"epoch\":\"{}\",\"changes\":[{changes}]}}",
        t.version, state.epoch
    )
}

fn echo(mut ws: WebSocket<TcpStream>) {
    loop {
        match ws.read() {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                if ws.send(m).is_err() {
                    return;
                }
            }
            Ok(Message::Close(_)) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// A `/get_new_vote` WebSocket: registered for the broadcast; its text messages are votes.
fn subscriber(state: &State, mut ws: WebSocket<TcpStream>) {
    let Ok(out) = ws.get_ref().try_clone() else {
        return;
    };
    let me = Arc::new(Subscriber {
        id: state.next_id.fetch_add(1, Ordering::Relaxed),
        out: Mutex::new(out),
        dead: AtomicBool::new(false),
    });
    state.subs.lock().unwrap().push(Arc::clone(&me));
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => {
                vote(state, t.trim());
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    me.dead.store(true, Ordering::Relaxed);
    state.subs.lock().unwrap().retain(|s| s.id != me.id);
}

/// Counts a vote: wakes the waiting long-polls (if any) and writes the new count to every
/// WebSocket subscriber, in version order. False for an unknown candidate.
fn vote(state: &State, uid: &str) -> bool {
    let mut tally = state.tally.lock().unwrap();
    let Some(i) = tally.candidates.iter().position(|c| c.uid == uid) else {
        return false;
    };
    tally.version += 1;
    let version = tally.version;
    let c = &mut tally.candidates[i];
    c.count += 1;
    c.changed = version;
    let count = c.count;
    tally.last = Some(i);
    if tally.waiters > 0 {
        state.changed.notify_all();
    }
    let subs: Vec<Arc<Subscriber>> = state.subs.lock().unwrap().clone();
    if subs.is_empty() {
        return true;
    }
    let msg = format!("{{\"uid\":\"{uid}\",\"count\":{count},\"version\":{version}}}");
    let mut frame = Vec::with_capacity(msg.len() + 4);
    Frame::message(msg.into_bytes(), OpCode::Data(Data::Text), true)
        .format(&mut frame)
        .expect("formatting into a Vec cannot fail");
    for s in subs {
        if s.dead.load(Ordering::Relaxed) {
            continue;
        }
        let mut out = s.out.lock().unwrap();
        if out.write_all(&frame).is_err() {
            s.dead.store(true, Ordering::Relaxed);
        }
    }
    drop(tally);
    true
}
