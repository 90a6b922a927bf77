//! Pure HTTP/1.1 request-head parser (RFC 9112 §2–§6). Bytes in, `Complete`/`Incomplete`/error
//! out; no I/O and no allocation before a limit has been checked.

use super::error::Error;
use crate::config::Limits;

/// The protocol version of a request. Anything other than 1.0 and 1.1 is refused with 505.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// How the request body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

/// A request's header fields as received, in order: every name and value one after another
/// in one string, so a head costs two allocations however many fields it has (it was two per
/// field, and each of them, freed, sat in the connection thread's malloc cache for the life of
/// an idle WebSocket). Names keep their case; lookups ignore it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    text: String,
    /// Per field: where its name starts, where its value starts (the name's end), where its
    /// value ends, in `text`.
    spans: Vec<(usize, usize, usize)>,
}

/// Bytes of field text a head is given room for before it grows: browsers send 0.5–1 KiB.
const HEAD_ROOM: usize = 1024;
/// Fields a request kept for reuse has room for while its connection idles.
const KEPT_FIELDS: usize = 16;
/// Bytes of each request-line string (method, target, path, query) a request kept for reuse
/// holds on to while its connection idles; a longer one is given back.
const KEPT_LINE: usize = 256;

/// One header field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

impl Headers {
    /// Empties it, keeping its room.
    fn clear(&mut self) {
        self.text.clear();
        self.spans.clear();
    }

    /// Room for `bytes` more bytes and `fields` more fields.
    fn reserve(&mut self, bytes: usize, fields: usize) {
        self.text.reserve(bytes);
        self.spans.reserve(fields);
    }

    /// Empties it and gives back room beyond a usual head's, so that a request kept for reuse
    /// holds no more than that while its connection idles.
    fn trim(&mut self) {
        self.clear();
        self.text.shrink_to(HEAD_ROOM);
        self.spans.shrink_to(KEPT_FIELDS);
    }

    /// Adds a field after the others.
    pub fn push(&mut self, name: &str, value: &str) {
        let start = self.text.len();
        self.text.push_str(name);
        let mid = self.text.len();
        self.text.push_str(value);
        self.spans.push((start, mid, self.text.len()));
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The fields, in the order received.
    pub fn iter(&self) -> impl Iterator<Item = Field<'_>> + '_ {
        self.spans.iter().map(|&(a, b, c)| Field {
            name: &self.text[a..b],
            value: &self.text[b..c],
        })
    }
}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|h| (h.name, h.value)))
            .finish()
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for Headers {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(fields: I) -> Headers {
        let mut h = Headers::default();
        for (name, value) in fields {
            h.push(name, value);
        }
        h
    }
}

/// A parsed request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Method token, case-sensitive as RFC 9110 §9.1 says (`GET`, not `get`).
    pub method: String,
    /// The raw request-target as sent (origin-form, or absolute-form reduced to its path).
    pub target: String,
    /// The path part of the target, still percent-encoded.
    pub path: String,
    /// The query part after `?`, without the `?`, still percent-encoded.
    pub query: Option<String>,
    pub version: Version,
    pub headers: Headers,
    pub body: BodyFraming,
}

/// An empty request, to parse into ([`parse_request_into`]).
impl Default for Request {
    fn default() -> Request {
        Request {
            method: String::new(),
            target: String::new(),
            path: String::new(),
            query: None,
            version: Version::Http11,
            headers: Headers::default(),
            body: BodyFraming::None,
        }
    }
}

impl Request {
    /// Empties it for the connection's next request ([`parse_request_into`]) and gives back
    /// room beyond a usual request's (a long target, a large head), so that it holds little
    /// while the connection idles.
    pub fn trim(&mut self) {
        self.headers.trim();
        let query = self.query.iter_mut();
        for s in [&mut self.method, &mut self.target, &mut self.path]
            .into_iter()
            .chain(query)
        {
            s.clear();
            s.shrink_to(KEPT_LINE);
        }
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// Every value of header `name`, in order (a header may be sent more than once).
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// True when header `name`, read as a comma-separated token list over all its instances,
    /// holds `token` (case-insensitive): `Connection: keep-alive, Upgrade` has `upgrade`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.header_values(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// The outcome of parsing a buffer that may hold a partial request head.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse {
    /// A whole head, and how many bytes of the buffer it used (the body, or the next pipelined
    /// request, starts there).
    Complete(Request, usize),
    /// More bytes are needed; nothing was consumed.
    Incomplete,
}

impl Parse {
    /// The answer of `into` (a parse into a request) on a new request.
    fn fresh(
        into: impl FnOnce(&mut Request) -> Result<Option<usize>, Error>,
    ) -> Result<Parse, Error> {
        let mut req = Request::default();
        Ok(match into(&mut req)? {
            Some(used) => Parse::Complete(req, used),
            None => Parse::Incomplete,
        })
    }
}

/// Most CR/LF bytes skipped before a request line (RFC 9112 §2.2 asks for at least one empty
/// line); more is garbage, refused as a malformed request line.
pub const MAX_LEADING_EMPTY: usize = 8;

/// Reads a request head as its bytes arrive, examining each byte once.
///
/// Calling [`parse_request`] after every read costs quadratic work when a head arrives a byte
/// at a time (16 KiB: 128 M byte visits). `HeadScan` remembers how far it has scanned and
/// calls the parser only when its answer can have changed: once the request line has ended
/// (so a malformed one is refused at once), when a line is malformed or one too many, when a
/// size limit is passed, and when the blank line ending the head has arrived. Its answer after
/// each read is the one `parse_request` would give on the buffer so far.
///
/// The caller passes the same buffer each time, with new bytes appended; one `HeadScan` per
/// request (the buffer's start is the request's start).
#[derive(Debug, Default)]
pub struct HeadScan {
    /// Bytes of the buffer examined so far.
    scanned: usize,
    /// CR/LF bytes skipped before the request line.
    start: usize,
    /// Past the leading CR/LF bytes.
    in_line: bool,
    /// The request line has ended (its LF has arrived).
    request_line_done: bool,
    /// Where the line being scanned starts.
    line_start: usize,
    /// Header lines complete so far.
    fields: usize,
    /// Bytes examined: by the scan, by each line's check and by each parse it asked for.
    work: usize,
}

impl HeadScan {
    pub fn new() -> Self {
        HeadScan::default()
    }

    /// Bytes examined so far, counting every parse it asked for (the work a head costs).
    pub fn work(&self) -> usize {
        self.work
    }

    /// The head in `buf`, if it has arrived; see [`parse_request`].
    pub fn feed(&mut self, buf: &[u8], limits: &Limits) -> Result<Parse, Error> {
        Parse::fresh(|req| self.feed_into(buf, limits, req))
    }

    /// [`feed`](HeadScan::feed) into `req`, reusing its strings (a connection parses each of
    /// its requests into the same one): the bytes the head used once it has arrived.
    pub fn feed_into(
        &mut self,
        buf: &[u8],
        limits: &Limits,
        req: &mut Request,
    ) -> Result<Option<usize>, Error> {
        let mut parse_now = false;
        while self.scanned < buf.len() {
            let b = buf[self.scanned];
            self.scanned += 1;
            self.work += 1;
            if !self.in_line {
                if self.start < MAX_LEADING_EMPTY && (b == b'\r' || b == b'\n') {
                    self.start += 1;
                    self.line_start = self.start;
                    continue;
                }
                self.in_line = true;
            }
            if b != b'\n' {
                continue;
            }
            let line = &buf[self.line_start..self.scanned - 1];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            self.line_start = self.scanned;
            if !self.request_line_done {
                // Whether the request line is well formed is known now.
                self.request_line_done = true;
                parse_now = true;
            } else if line.is_empty() {
                return self.parse(buf, limits, req);
            } else {
                self.fields += 1;
                self.work += line.len();
                if self.fields > limits.max_headers || split_header(line).is_err() {
                    parse_now = true;
                }
            }
        }
        // The limits as the parser checks them on a partial head: everything after the
        // skipped empty lines, less a final CR that may be half of a CRLF.
        let held = without_final_cr(&buf[self.start.min(buf.len())..]).len();
        let max = if self.request_line_done {
            limits.max_header_bytes
        } else {
            limits.max_request_line
        };
        if parse_now || held > max {
            return self.parse(buf, limits, req);
        }
        Ok(None)
    }

    fn parse(
        &mut self,
        buf: &[u8],
        limits: &Limits,
        req: &mut Request,
    ) -> Result<Option<usize>, Error> {
        self.work += buf.len();
        parse_request_into(buf, limits, req)
    }
}

/// Parses one request head from the start of `buf`.
///
/// Limits are checked on the bytes seen so far, so an endless request line or header block is
/// refused as soon as it passes its limit, not when it ends.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Parse, Error> {
    Parse::fresh(|req| parse_request_into(buf, limits, req))
}

/// [`parse_request`] into `req`, whose strings are cleared and refilled (no allocation when
/// they have room): the bytes the head used, or `None` while it is incomplete. What `req`
/// holds after an error or an incomplete head is unspecified.
pub fn parse_request_into(
    buf: &[u8],
    limits: &Limits,
    req: &mut Request,
) -> Result<Option<usize>, Error> {
    // RFC 9112 §2.2: a server SHOULD ignore at least one empty line received before the
    // request-line (old clients send CRLF after a POST body).
    let mut start = 0;
    while start < buf.len()
        && start < MAX_LEADING_EMPTY
        && (buf[start] == b'\r' || buf[start] == b'\n')
    {
        start += 1;
    }
    let buf = &buf[start..];

    let Some(line_end) = find_line_end(buf) else {
        // A CR at the end may be the first half of the line's CRLF, which no limit counts.
        if without_final_cr(buf).len() > limits.max_request_line {
            return Err(Error::UriTooLong {
                max: limits.max_request_line,
            });
        }
        return Ok(None);
    };
    let (line, mut pos) = line_end;
    if line.len() > limits.max_request_line {
        return Err(Error::UriTooLong {
            max: limits.max_request_line,
        });
    }
    let (method, target, version) = parse_request_line(line)?;
    let (path, query) = split_target(target, method)?;
    let set = |s: &mut String, v: &str| {
        s.clear();
        s.push_str(v);
    };
    set(&mut req.method, method);
    set(&mut req.target, target);
    set(&mut req.path, path);
    match query {
        Some(q) => set(req.query.get_or_insert_with(String::new), q),
        None => req.query = None,
    }
    req.version = version;
    req.body = BodyFraming::None;

    // Room for a usual head at once; what follows it in the buffer (a body, pipelined
    // requests) is not a measure of it.
    let headers = &mut req.headers;
    headers.clear();
    headers.reserve(buf.len().min(HEAD_ROOM), 8);
    loop {
        if pos > limits.max_header_bytes {
            return Err(Error::HeadersTooLarge {
                max: limits.max_header_bytes,
            });
        }
        let Some((line, next)) = find_line_end(&buf[pos..]) else {
            if without_final_cr(buf).len() > limits.max_header_bytes {
                return Err(Error::HeadersTooLarge {
                    max: limits.max_header_bytes,
                });
            }
            return Ok(None);
        };
        pos += next;
        if line.is_empty() {
            break;
        }
        if pos > limits.max_header_bytes {
            return Err(Error::HeadersTooLarge {
                max: limits.max_header_bytes,
            });
        }
        if headers.len() == limits.max_headers {
            return Err(Error::TooManyHeaders {
                max: limits.max_headers,
            });
        }
        let (name, value) = split_header(line)?;
        // The name is ASCII (checked); a value may hold obs-text, kept as the replacement
        // character (no allocation when it is UTF-8 already).
        headers.push(
            &String::from_utf8_lossy(name),
            &String::from_utf8_lossy(value),
        );
    }

    validate_host(req)?;
    req.body = body_framing(req, limits)?;
    Ok(Some(start + pos))
}

/// Finds the first line of `buf`: returns it without its terminator, and the offset just past
/// the terminator. RFC 9112 §2.2 lets a recipient accept a bare LF as a line terminator; a bare
/// CR elsewhere is rejected when the line is parsed.
fn find_line_end(buf: &[u8]) -> Option<(&[u8], usize)> {
    let lf = buf.iter().position(|&b| b == b'\n')?;
    let line = &buf[..lf];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some((line, lf + 1))
}

/// `buf` less a final CR: while its LF has not arrived, a CR may end the line and must not
/// count against a limit, or a head's fate would depend on where a read cut it.
fn without_final_cr(buf: &[u8]) -> &[u8] {
    buf.strip_suffix(b"\r").unwrap_or(buf)
}

/// RFC 9110 §5.6.2: `tchar`.
pub(super) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_request_line(line: &[u8]) -> Result<(&str, &str, Version), Error> {
    // RFC 9112 §3: request-line = method SP request-target SP HTTP-version, single spaces.
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::BadRequest("malformed request line"));
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(Error::BadRequest("malformed method"));
    }
    // Visible ASCII only: no controls, no spaces, no raw non-ASCII in the target.
    if target.is_empty() || !target.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
        return Err(Error::BadRequest("malformed request target"));
    }
    let version = match version {
        b"HTTP/1.1" => Version::Http11,
        b"HTTP/1.0" => Version::Http10,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Err(Error::VersionNotSupported)
        }
        _ => return Err(Error::BadRequest("malformed HTTP version")),
    };
    // Both checked above to be ASCII.
    let ascii = |b| std::str::from_utf8(b).map_err(|_| Error::BadRequest("malformed request line"));
    Ok((ascii(method)?, ascii(target)?, version))
}

/// Checks one field line and splits it into name and value, without allocating: the scan of an
/// arriving head and the trailer check use it to validate, `parse_request` to keep the field.
pub(super) fn split_header(line: &[u8]) -> Result<(&[u8], &[u8]), Error> {
    // RFC 9112 §5.2: obs-fold is rejected with 400 (we are not a proxy).
    if line[0] == b' ' || line[0] == b'\t' {
        return Err(Error::BadRequest("obsolete header line folding"));
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(Error::BadRequest("header line without a colon"))?;
    let name = &line[..colon];
    // RFC 9112 §5.1: no whitespace is allowed between the field name and colon; a server MUST
    // reject such a request with 400 (it is a request-smuggling vector).
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(Error::BadRequest("malformed header name"));
    }
    let value = trim_ows(&line[colon + 1..]);
    // RFC 9110 §5.5: field values are VCHAR, SP, HTAB and obs-text; CR, LF and NUL are never
    // allowed.
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(Error::BadRequest("control character in header value"));
    }
    Ok((name, value))
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Splits the request-target into path and query (RFC 9112 §3.2). Absolute-form is reduced to
/// its path; asterisk-form is allowed for OPTIONS only.
fn split_target<'a>(target: &'a str, method: &str) -> Result<(&'a str, Option<&'a str>), Error> {
    let path_and_query = if target.starts_with('/') {
        target
    } else if target == "*" {
        if method != "OPTIONS" {
            return Err(Error::BadRequest("'*' target is for OPTIONS only"));
        }
        "*"
    } else if let Some(rest) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => &rest[i..],
            // RFC 9110 §4.2.3: an empty path is "/", so `http://h?q` asks for `/?q`.
            Some(i) => {
                let query = &rest[i + 1..];
                let query = query.split_once('#').map_or(query, |(q, _)| q);
                return Ok(("/", Some(query)));
            }
            None => "/",
        }
    } else {
        return Err(Error::BadRequest("malformed request target"));
    };
    // A fragment is never sent by a client; if one is, it is not part of the resource.
    let path_and_query = path_and_query
        .split_once('#')
        .map_or(path_and_query, |(p, _)| p);
    Ok(match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    })
}

fn validate_host(req: &Request) -> Result<(), Error> {
    // RFC 9112 §3.2: a server MUST respond 400 to an HTTP/1.1 request that lacks a Host header
    // field, to any request with more than one, and to one "with an invalid field value".
    let hosts = req.header_values("host").count();
    if hosts > 1 || (hosts == 0 && req.version == Version::Http11) {
        return Err(Error::BadRequest("missing or repeated Host header"));
    }
    // An empty Host is only right for a URI without an authority (RFC 9110 §7.2), and every
    // `http` URI has one (§4.2.1: an empty host MUST be rejected), so it is refused like any
    // other malformed value, in HTTP/1.0 as in 1.1.
    if let Some(host) = req.header("host") {
        split_host(host).map_err(Error::BadRequest)?;
    }
    // An absolute-form target's authority replaces Host (RFC 9112 §3.2.2): the same rules.
    if let Some(authority) = target_authority(&req.target) {
        split_host(authority).map_err(Error::BadRequest)?;
    }
    Ok(())
}

/// The authority of an absolute-form request-target (`http://HOST[:PORT]/…`), if it is one.
pub fn target_authority(target: &str) -> Option<&str> {
    let rest = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))?;
    Some(rest.find(['/', '?', '#']).map_or(rest, |i| &rest[..i]))
}

/// Splits `uri-host [ ":" port ]` (RFC 9110 §7.2 with RFC 3986 §3.2.2–§3.2.3) into the host as
/// sent and its port (None when absent or empty: the scheme's default). The host is an
/// IP-literal in brackets (IPv6 or IPvFuture, no zone id), or a reg-name of unreserved,
/// pct-encoded and sub-delims characters, which covers IPv4 too. Userinfo (`@`), spaces,
/// slashes and an empty host are errors; the port is digits and at most 65535.
pub fn split_host(value: &str) -> Result<(&str, Option<u16>), &'static str> {
    let (host, port) = if let Some(inner) = value.strip_prefix('[') {
        let close = inner.find(']').ok_or("Host: '[' without ']'")?;
        if !valid_ip_literal(&inner[..close]) {
            return Err("Host: malformed IP literal");
        }
        let after = &inner[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err("Host: junk after the IP literal"),
        };
        (&value[..close + 2], port)
    } else {
        // A second ':' stays in the port, which then is not all digits.
        let (host, port) = match value.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (value, None),
        };
        if host.is_empty() {
            return Err("Host: empty host name");
        }
        if !valid_reg_name(host) {
            return Err("Host: malformed host name");
        }
        (host, port)
    };
    let port = match port {
        None | Some("") => None,
        Some(p) => {
            let digits = p.trim_start_matches('0');
            if !p.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 5 {
                return Err("Host: malformed port");
            }
            let n: u32 = if digits.is_empty() {
                0
            } else {
                digits.parse().map_err(|_| "Host: malformed port")?
            };
            Some(u16::try_from(n).map_err(|_| "Host: port above 65535")?)
        }
    };
    Ok((host, port))
}

/// RFC 3986 §3.2.2: `reg-name = *( unreserved / pct-encoded / sub-delims )`.
fn valid_reg_name(name: &str) -> bool {
    let b = name.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3);
                if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 3;
            }
            c if c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&c) => i += 1,
            _ => return false,
        }
    }
    true
}

/// RFC 3986 §3.2.2: `IPv6address / IPvFuture` inside the brackets. No zone id: RFC 6874 is
/// not part of HTTP's `uri-host`.
fn valid_ip_literal(lit: &str) -> bool {
    if let Some(rest) = lit.strip_prefix(['v', 'V']) {
        // IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
        let Some((ver, addr)) = rest.split_once('.') else {
            return false;
        };
        return !ver.is_empty()
            && ver.bytes().all(|b| b.is_ascii_hexdigit())
            && !addr.is_empty()
            && addr
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:".contains(&c));
    }
    lit.parse::<std::net::Ipv6Addr>().is_ok()
}

#[cfg(test)]
mod host_tests {
    use super::*;

    #[test]
    fn hosts_split_into_name_and_port() {
        for (value, host, port) in [
            ("localhost", "localhost", None),
            ("localhost:8080", "localhost", Some(8080)),
            ("localhost:", "localhost", None),
            ("localhost:0080", "localhost", Some(80)),
            ("localhost:65535", "localhost", Some(65535)),
            ("127.0.0.1:0", "127.0.0.1", Some(0)),
            ("[::1]", "[::1]", None),
            ("[::1]:9", "[::1]", Some(9)),
            ("[::ffff:1.2.3.4]:9", "[::ffff:1.2.3.4]", Some(9)),
            ("[v1.x:y]", "[v1.x:y]", None),
            ("a%41b", "a%41b", None),
            ("s!$&'()*+,;=d~_-.", "s!$&'()*+,;=d~_-.", None),
        ] {
            assert_eq!(split_host(value), Ok((host, port)), "{value}");
        }
    }

    #[test]
    fn malformed_hosts_are_errors() {
        for value in [
            "",
            ":80",
            "bad host/..",
            "a b",
            "a/",
            "u@h",
            "u:p@h:1",
            "h:1:2",
            "h:x",
            "h:-1",
            "h:65536",
            "h:000000065536",
            "h:99999999999",
            "[::1",
            "[::1]x",
            "[::1]:x",
            "::1",
            "[]",
            "[x]",
            "[::1%25lo]",
            "[v.x]",
            "[vg.x]",
            "[v1.]",
            "%",
            "a%4",
            "a%4g",
            "a\\b",
            "a\"b",
            "<a>",
            "a?b",
            "a#b",
            "é",
            "a\tb",
        ] {
            assert!(split_host(value).is_err(), "{value:?} accepted");
        }
    }

    #[test]
    fn the_host_header_is_checked_in_the_parser() {
        let lim = Limits::default();
        let code = |raw: &[u8]| parse_request(raw, &lim).map_err(|e| e.status().code());
        assert!(code(b"GET / HTTP/1.1\r\nHost: localhost:1\r\n\r\n").is_ok());
        assert!(code(b"GET / HTTP/1.0\r\n\r\n").is_ok());
        assert_eq!(
            code(b"GET / HTTP/1.1\r\nHost: bad host/..\r\n\r\n"),
            Err(400)
        );
        assert_eq!(code(b"GET / HTTP/1.1\r\nHost:\r\n\r\n"), Err(400));
        assert_eq!(code(b"GET / HTTP/1.0\r\nHost: \r\n\r\n"), Err(400));
        assert_eq!(
            code(b"GET http://a<b/ HTTP/1.1\r\nHost: a\r\n\r\n"),
            Err(400)
        );
        assert_eq!(
            code(b"GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n"),
            Err(400)
        );
        assert_eq!(target_authority("http://a:1/x?y"), Some("a:1"));
        assert_eq!(target_authority("https://a?y"), Some("a"));
        assert_eq!(target_authority("/x"), None);
    }
}

/// Most digits in a `Content-Length`: 19 always fit in a u64 (its largest value has 20).
/// Longer values are refused as malformed; `max_body` refuses anything large long before.
const MAX_LENGTH_DIGITS: usize = 19;

/// Decides how the body is framed (RFC 9112 §6.3), refusing every ambiguous combination.
fn body_framing(req: &Request, limits: &Limits) -> Result<BodyFraming, Error> {
    let has_te = req.header("transfer-encoding").is_some();
    let has_cl = req.header("content-length").is_some();
    if has_te && has_cl {
        // §6.3 ¶3: a sender MUST NOT send both; when both arrive the message is a likely
        // smuggling attempt, and we refuse it rather than guess.
        return Err(Error::BadRequest(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    if has_te {
        if req.version == Version::Http10 {
            // §6.1: a server that receives it in 1.0 MUST treat the framing as faulty.
            return Err(Error::BadRequest(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        let codings: Vec<&str> = req
            .header_values("transfer-encoding")
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        return match codings.as_slice() {
            [c] if c.eq_ignore_ascii_case("chunked") => Ok(BodyFraming::Chunked),
            [] => Err(Error::BadRequest("empty Transfer-Encoding")),
            // §7.1: chunked MUST NOT be applied more than once.
            cs if cs
                .iter()
                .filter(|c| c.eq_ignore_ascii_case("chunked"))
                .count()
                > 1 =>
            {
                Err(Error::BadRequest("chunked applied more than once"))
            }
            // §6.3 ¶4: chunked not last → 400 (length cannot be determined).
            cs if !cs[cs.len() - 1].eq_ignore_ascii_case("chunked") => Err(Error::BadRequest(
                "chunked is not the final transfer coding",
            )),
            _ => Err(Error::NotImplemented("transfer codings other than chunked")),
        };
    }
    if has_cl {
        // All values (repeated headers or a comma list) must be the same decimal number.
        let mut len: Option<u64> = None;
        for v in req
            .header_values("content-length")
            .flat_map(|v| v.split(','))
        {
            let v = v.trim();
            if v.is_empty() || v.len() > MAX_LENGTH_DIGITS || !v.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(Error::BadRequest("malformed Content-Length"));
            }
            let n: u64 = v
                .parse()
                .map_err(|_| Error::BadRequest("malformed Content-Length"))?;
            if len.is_some_and(|l| l != n) {
                return Err(Error::BadRequest("conflicting Content-Length values"));
            }
            len = Some(n);
        }
        let n = len.unwrap_or(0);
        if n > limits.max_body as u64 {
            return Err(Error::BodyTooLarge {
                size: n,
                max: limits.max_body,
            });
        }
        return Ok(if n == 0 {
            BodyFraming::None
        } else {
            BodyFraming::Length(n)
        });
    }
    Ok(BodyFraming::None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim() -> Limits {
        Limits::default()
    }

    fn ok(raw: &[u8]) -> (Request, usize) {
        match parse_request(raw, &lim()) {
            Ok(Parse::Complete(r, n)) => (r, n),
            other => panic!("{:?} for {:?}", other, String::from_utf8_lossy(raw)),
        }
    }

    fn err(raw: &[u8]) -> Error {
        match parse_request(raw, &lim()) {
            Err(e) => e,
            other => panic!("{:?} for {:?}", other, String::from_utf8_lossy(raw)),
        }
    }

    const CURL_POST: &[u8] = b"POST /vote?x=1 HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\nContent-Length: 5\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\nuid=1";

    #[test]
    fn a_request_parsed_into_the_last_ones_strings_is_the_same_as_a_fresh_one() {
        let heads: [&[u8]; 5] = [
            CURL_POST,
            b"GET /index HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET http://h?q=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-B: 2\r\n\r\n",
            b"OPTIONS * HTTP/1.0\r\n\r\n",
            b"\r\nHEAD /p%20x?a=%41 HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ];
        let mut kept = Request::default();
        for round in 0..2 {
            for raw in heads {
                let (fresh, n) = ok(raw);
                let used = parse_request_into(raw, &lim(), &mut kept).unwrap();
                assert_eq!((&kept, used), (&fresh, Some(n)), "round {round}: {raw:?}");
            }
        }
        // The same heads again fit in the room the first round made.
        let room = (kept.headers.text.capacity(), kept.headers.spans.capacity());
        for raw in heads {
            parse_request_into(raw, &lim(), &mut kept).unwrap();
        }
        assert_eq!(
            room,
            (kept.headers.text.capacity(), kept.headers.spans.capacity())
        );
    }

    #[test]
    fn a_kept_request_gives_back_a_large_heads_room() {
        let big = format!(
            "GET /{} HTTP/1.1\r\nHost: a\r\n{}\r\n",
            "p".repeat(4000),
            "X-F: 0123456789012345678901234567890123456789\r\n".repeat(60)
        );
        let mut req = Request::default();
        parse_request_into(big.as_bytes(), &lim(), &mut req).unwrap();
        assert!(req.headers.text.capacity() > HEAD_ROOM && req.target.capacity() >= 4001);
        req.trim();
        assert!(req.headers.text.capacity() <= HEAD_ROOM);
        assert!(req.headers.spans.capacity() <= KEPT_FIELDS);
        assert!(req.target.capacity() <= KEPT_LINE && req.path.capacity() <= KEPT_LINE);
        // Still usable, and right.
        let (fresh, _) = ok(CURL_POST);
        parse_request_into(CURL_POST, &lim(), &mut req).unwrap();
        assert_eq!(req, fresh);
    }

    #[test]
    fn header_fields_are_kept_in_order_in_one_string() {
        let (r, _) = ok(b"GET / HTTP/1.1\r\nHost: a\r\nX-Two: 1\r\nx-two: 2\r\nEmpty:\r\n\r\n");
        let fields: Vec<(&str, &str)> = r.headers.iter().map(|h| (h.name, h.value)).collect();
        assert_eq!(
            fields,
            [("Host", "a"), ("X-Two", "1"), ("x-two", "2"), ("Empty", "")]
        );
        assert_eq!(r.header("x-TWO"), Some("1"));
        assert_eq!(r.header_values("X-Two").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(r.header("empty"), Some(""));
        assert_eq!(r.header("missing"), None);
        let built: Headers = [("A", "b")].into_iter().collect();
        assert_eq!(
            (built.len(), format!("{built:?}")),
            (1, r#"[("A", "b")]"#.to_string())
        );
    }

    #[test]
    fn parses_a_curl_post() {
        let (r, n) = ok(CURL_POST);
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/vote");
        assert_eq!(r.query.as_deref(), Some("x=1"));
        assert_eq!(r.version, Version::Http11);
        assert_eq!(r.header("HOST"), Some("localhost:8080"));
        assert_eq!(r.headers.len(), 5);
        assert_eq!(r.body, BodyFraming::Length(5));
        assert_eq!(&CURL_POST[n..], b"uid=1");
    }

    #[test]
    fn every_proper_prefix_is_incomplete() {
        let head_len = CURL_POST.len() - 5;
        for i in 0..head_len {
            assert_eq!(
                parse_request(&CURL_POST[..i], &lim()),
                Ok(Parse::Incomplete),
                "prefix {i}"
            );
        }
    }

    #[test]
    fn table_of_valid_requests() {
        let cases: &[(&[u8], &str, Option<&str>, Version)] = &[
            (
                b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
                "/",
                None,
                Version::Http11,
            ),
            (
                b"GET /index?transport=poll HTTP/1.1\r\nHost: a\r\n\r\n",
                "/index",
                Some("transport=poll"),
                Version::Http11,
            ),
            (b"GET /x HTTP/1.0\r\n\r\n", "/x", None, Version::Http10),
            (
                b"GET /lf HTTP/1.1\nHost: a\n\n",
                "/lf",
                None,
                Version::Http11,
            ),
            (
                b"\r\nGET /after-crlf HTTP/1.1\r\nHost: a\r\n\r\n",
                "/after-crlf",
                None,
                Version::Http11,
            ),
            (
                b"GET http://example.com/abs?q HTTP/1.1\r\nHost: a\r\n\r\n",
                "/abs",
                Some("q"),
                Version::Http11,
            ),
            (
                b"GET http://example.com HTTP/1.1\r\nHost: a\r\n\r\n",
                "/",
                None,
                Version::Http11,
            ),
            // An empty path is "/" (RFC 9110 §4.2.3), also before a query.
            (
                b"GET http://example.com?q=1 HTTP/1.1\r\nHost: a\r\n\r\n",
                "/",
                Some("q=1"),
                Version::Http11,
            ),
            (
                b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
                "*",
                None,
                Version::Http11,
            ),
            (
                b"GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n",
                "/a",
                None,
                Version::Http11,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Tabs:\t v \t\r\n\r\n",
                "/",
                None,
                Version::Http11,
            ),
        ];
        for (raw, path, query, version) in cases {
            let (r, n) = ok(raw);
            assert_eq!(&r.path, path);
            assert_eq!(r.query.as_deref(), *query);
            assert_eq!(r.version, *version);
            assert_eq!(n, raw.len());
        }
        let (r, _) = ok(b"GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Tabs:\t v \t\r\n\r\n");
        assert_eq!(r.header("x-empty"), Some(""));
        assert_eq!(r.header("x-tabs"), Some("v"));
    }

    #[test]
    fn pipelined_requests_leave_the_rest() {
        let raw = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n";
        let (r, n) = ok(raw);
        assert_eq!(r.path, "/a");
        let (r2, m) = ok(&raw[n..]);
        assert_eq!(r2.path, "/b");
        assert_eq!(n + m, raw.len());
    }

    #[test]
    fn token_lists_and_repeated_headers() {
        let (r, _) = ok(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n\r\n");
        assert!(r.has_token("connection", "upgrade"));
        assert!(r.has_token("Upgrade", "websocket"));
        assert!(!r.has_token("connection", "close"));
        let (r, _) = ok(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: a\r\nconnection: Close\r\n\r\n");
        assert!(r.has_token("connection", "close"));
    }

    #[test]
    fn body_framing_decisions() {
        let (r, _) = ok(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(r.body, BodyFraming::Chunked);
        let (r, _) =
            ok(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(r.body, BodyFraming::Length(3));
        let (r, _) = ok(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(r.body, BodyFraming::None);
    }

    #[test]
    fn malformed_and_hostile_requests() {
        let cases: &[(&[u8], u16)] = &[
            (b"GET / HTTP/1.1\r\n\r\n", 400),                       // no Host
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),  // two Hosts
            (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),           // double space
            (b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400),           // trailing space
            (b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400),        // control in target
            (b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),            // bad method char
            (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
            (b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505),
            (b"GET / HTTQ/1.1\r\nHost: a\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),           // space before colon
            (b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400), // obs-fold
            (b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400), // bare CR
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 65537\r\n\r\n", 413),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"GET example.com HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ];
        for (raw, status) in cases {
            assert_eq!(
                err(raw).status().code(),
                *status,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn limits_apply_before_the_end_arrives() {
        let l = lim();
        let long_line = vec![b'a'; l.max_request_line + 1];
        assert_eq!(
            parse_request(&long_line, &l),
            Err(Error::UriTooLong {
                max: l.max_request_line
            })
        );
        let mut big = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
        big.extend(vec![b'v'; l.max_header_bytes]);
        assert_eq!(
            parse_request(&big, &l),
            Err(Error::HeadersTooLarge {
                max: l.max_header_bytes
            })
        );
        let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..l.max_headers {
            many.extend(format!("X-{i}: 1\r\n").bytes());
        }
        many.extend(b"\r\n");
        assert_eq!(
            parse_request(&many, &l),
            Err(Error::TooManyHeaders { max: l.max_headers })
        );
        // Exactly at the header-count limit is fine.
        let mut at = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..l.max_headers - 1 {
            at.extend(format!("X-{i}: 1\r\n").bytes());
        }
        at.extend(b"\r\n");
        assert!(matches!(parse_request(&at, &l), Ok(Parse::Complete(..))));
    }

    /// Found by `fuzz/` (target `http_request`): a line that fits its limit was refused when a
    /// read ended between its CR and LF, so whether a request was accepted depended on how TCP
    /// cut it into segments.
    #[test]
    fn a_cr_awaiting_its_lf_does_not_count_against_a_limit() {
        let l = Limits {
            max_request_line: 40,
            max_header_bytes: 160,
            max_headers: 4,
            max_body: 16,
            ..Limits::default()
        };
        // The fuzzer's input: a request line of exactly 40 bytes.
        // (Its empty Host, refused since, is given a name.)
        let head: &[u8] = b"GET http://l/votjesx*?=%41#frag HTTP/1.1\r\nHosT:l\n\n";
        assert!(matches!(
            parse_request(head, &l),
            Ok(Parse::Complete(_, 50))
        ));
        // The same at the head limit: 160 bytes of request line and fields, then the CR of the
        // empty line.
        let mut at_limit = b"GET / HTTP/1.0\r\nX: ".to_vec();
        at_limit.resize(158, b'v');
        at_limit.extend(b"\r\n\r\n");
        assert!(matches!(
            parse_request(&at_limit, &l),
            Ok(Parse::Complete(_, 162))
        ));
        for raw in [head, &at_limit[..]] {
            for len in 0..raw.len() {
                assert_eq!(
                    parse_request(&raw[..len], &l),
                    Ok(Parse::Incomplete),
                    "{len}"
                );
            }
        }
    }

    /// Inputs that reach every outcome: valid heads, malformed ones, limits.
    fn scan_inputs() -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = vec![
            CURL_POST.to_vec(),
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
            b"GET /lf HTTP/1.1\nHost: a\n\nGET /b HTTP/1.1\n\n".to_vec(),
            b"\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
            b"\n\n\n\n\n\n\n\n\nGET / HTTP/1.1\r\n\r\n".to_vec(),
            b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
            b"GET / HTTP/2.0\r\nHost: a\r\n\r\n".to_vec(),
            b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\nX: y\r\n\r\n".to_vec(),
            b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n".to_vec(),
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n".to_vec(),
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n\r\n".to_vec(),
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
                .to_vec(),
            b"GET http://l/votjesx*?=%41#frag HTTP/1.1\r\nHosT:\n\n".to_vec(),
        ];
        let mut long = b"GET /".to_vec();
        long.resize(60, b'a');
        long.extend(b" HTTP/1.1\r\n\r\n");
        v.push(long);
        let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..8 {
            many.extend(format!("X-{i}: 1\r\n").bytes());
        }
        many.extend(b"\r\n");
        v.push(many);
        let mut big = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
        big.resize(170, b'v');
        big.extend(b"\r\n\r\n");
        v.push(big);
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let alphabet = b"GET / HTTP/1.1\r\n\r\n:Host: Content-Length: 1 \t\r\n";
        for _ in 0..1500 {
            let len = (x % 120) as usize;
            let mut g = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                g.push(alphabet[(x >> 16) as usize % alphabet.len()]);
            }
            v.push(g);
        }
        v
    }

    /// After every read, `HeadScan` answers what `parse_request` answers on the bytes so far:
    /// the same request, the same error at the same byte, `Incomplete` for every proper prefix.
    #[test]
    fn head_scan_agrees_with_the_parser_after_every_byte() {
        let tiny = Limits {
            max_request_line: 40,
            max_header_bytes: 160,
            max_headers: 4,
            max_body: 16,
            ..Limits::default()
        };
        for raw in scan_inputs() {
            for limits in [&lim(), &tiny] {
                let mut scan = HeadScan::new();
                for i in 0..=raw.len() {
                    let got = scan.feed(&raw[..i], limits);
                    let want = parse_request(&raw[..i], limits);
                    assert_eq!(got, want, "{i} of {:?}", String::from_utf8_lossy(&raw));
                    if got != Ok(Parse::Incomplete) {
                        break;
                    }
                }
            }
        }
    }

    /// Feeds `head` a byte at a time; returns the bytes examined.
    fn work_byte_at_a_time(head: &[u8]) -> usize {
        let mut scan = HeadScan::new();
        for i in 1..head.len() {
            assert_eq!(scan.feed(&head[..i], &lim()), Ok(Parse::Incomplete), "{i}");
        }
        assert!(matches!(
            scan.feed(head, &lim()),
            Ok(Parse::Complete(_, n)) if n == head.len()
        ));
        scan.work()
    }

    /// A 16 KiB head sent a byte at a time costs linear work (re-parsing the buffer after
    /// every byte cost 16 K² / 2 = 128 M byte visits).
    #[test]
    fn a_head_arriving_a_byte_at_a_time_costs_linear_work() {
        let max = lim().max_header_bytes;
        // Many fields…
        let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..lim().max_headers - 1 {
            many.extend(format!("X-{i:02}: {}\r\n", "v".repeat(150)).bytes());
        }
        many.extend(b"\r\n");
        // …and one field as large as the limit allows.
        let mut one = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
        one.resize(max - 2, b'v');
        one.extend(b"\r\n\r\n");
        for head in [many, one] {
            assert!(head.len() > max * 9 / 10, "{}", head.len());
            let work = work_byte_at_a_time(&head);
            assert!(
                work <= 4 * head.len(),
                "{work} bytes examined for a {}-byte head",
                head.len()
            );
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let alphabet = b"GET POST / HTTP/1.1\r\n:Host Content-Length: 0123456789 chunked\x00\xff?#";
        for _ in 0..20_000 {
            let len = (x % 200) as usize;
            let mut v = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v.push(if x.is_multiple_of(3) {
                    (x >> 8) as u8
                } else {
                    alphabet[(x >> 16) as usize % alphabet.len()]
                });
            }
            let _ = parse_request(&v, &lim());
        }
    }
}
