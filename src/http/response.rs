//! Responses and their serialisation (RFC 9112 §4, RFC 9110 §6). Pure: builds bytes, no I/O.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use super::status::Status;

/// A response: status, extra headers, body. `Date`, `Content-Length` and `Connection` are
/// added when it is written, so no handler can forget or contradict them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: Status,
    /// A value the code names (`"no-store"`) is borrowed, not copied: most headers cost no
    /// allocation.
    pub headers: Vec<(&'static str, Cow<'static, str>)>,
    pub body: Vec<u8>,
    /// Close the connection after this response, whatever the request asked for.
    pub close: bool,
    /// The body is not in `body`: it is streamed after the head until the connection closes
    /// (RFC 9112 §6.3 ¶8: a close-delimited body), e.g. Server-Sent Events.
    pub stream: bool,
}

/// Headers a response usually carries beyond the ones written for it (a page: type, cache,
/// frame and content policies, a cookie).
const HEADERS_USUAL: usize = 6;

impl Response {
    pub fn new(status: Status) -> Self {
        Response {
            status,
            // Room for the usual few, so adding them does not reallocate.
            headers: Vec::with_capacity(HEADERS_USUAL),
            body: Vec::new(),
            close: false,
            stream: false,
        }
    }

    pub fn with_body(status: Status, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response::new(status)
            .header("Content-Type", content_type)
            .body(body)
    }

    pub fn json(status: Status, body: impl Into<Vec<u8>>) -> Self {
        Response::with_body(status, "application/json; charset=utf-8", body)
            .header("Cache-Control", "no-store")
    }

    pub fn html(status: Status, body: impl Into<Vec<u8>>) -> Self {
        Response::with_body(status, "text/html; charset=utf-8", body)
    }

    pub fn text(status: Status, body: impl Into<Vec<u8>>) -> Self {
        Response::with_body(status, "text/plain; charset=utf-8", body)
    }

    /// A JSON error `{"error": "..."}` with the given status.
    pub fn error(status: Status, message: &str) -> Self {
        Response::json(
            status,
            crate::json::to_object(|o| {
                o.str("error", message);
            }),
        )
    }

    pub fn header(mut self, name: &'static str, value: impl Into<Cow<'static, str>>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    /// A close-delimited streamed body: no `Content-Length`, `Connection: close`.
    pub fn streaming(mut self) -> Self {
        self.stream = true;
        self.close = true;
        self
    }

    /// Serialises the head, and the body unless `head_only` (a `HEAD` request, or a status
    /// that has no body). `keep_alive` is the connection's decision for after this response.
    pub fn write_to(&self, out: &mut Vec<u8>, keep_alive: bool, head_only: bool) {
        // Numbers are written in place (`io::Write` for a `Vec` allocates nothing of its own).
        use std::io::Write as _;
        out.extend_from_slice(b"HTTP/1.1 ");
        let _ = write!(out, "{}", self.status.code());
        out.push(b' ');
        out.extend_from_slice(self.status.reason().as_bytes());
        out.extend_from_slice(b"\r\nDate: ");
        with_date(|d| out.extend_from_slice(d.as_bytes()));
        out.extend_from_slice(b"\r\nServer: livevote\r\n");
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        // RFC 9110 §8.6: no Content-Length in 1xx and 204; 304 carries none here either.
        let bodyless = self.status.is_bodyless();
        if !bodyless && !self.stream {
            out.extend_from_slice(b"Content-Length: ");
            let _ = write!(out, "{}", self.body.len());
            out.extend_from_slice(b"\r\n");
            if !self.headers.iter().any(|(n, _)| *n == "Content-Type") {
                out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n");
            }
        }
        if self.status != Status::SwitchingProtocols {
            out.extend_from_slice(if keep_alive {
                b"Connection: keep-alive\r\n"
            } else {
                b"Connection: close\r\n"
            });
        }
        out.extend_from_slice(b"\r\n");
        if !head_only && !bodyless {
            out.extend_from_slice(&self.body);
        }
    }
}

/// JSON strings come from the crate's one JSON writer.
pub use crate::json::string as json_string;

/// Escapes text for HTML element content and quoted attribute values. Copies the runs between
/// the five special bytes whole (they are ASCII, so a run always ends on a character boundary).
pub fn html_escape(out: &mut String, s: &str) {
    let mut from = 0;
    for (i, b) in s.bytes().enumerate() {
        let with = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            _ => continue,
        };
        out.push_str(&s[from..i]);
        out.push_str(with);
        from = i + 1;
    }
    out.push_str(&s[from..]);
}

/// Calls `f` with the current `Date` value, formatted at most once a second per thread.
fn with_date(f: impl FnOnce(&str)) {
    thread_local! {
        static CACHED: std::cell::RefCell<(u64, String)> = const {
            std::cell::RefCell::new((u64::MAX, String::new()))
        };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            *c = (secs, http_date(now));
        }
        f(&c.1);
    });
}

/// IMF-fixdate (RFC 9110 §5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        WD[(days % 7) as usize],
        d,
        MON[(m - 1) as usize],
        y,
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month 1-12, day 1-31); Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_match_the_rfc_example() {
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(http_date(leap), "Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn serialises_head_and_body() {
        let r = Response::json(Status::Ok, "{}").header("X-A", "b");
        let mut out = Vec::new();
        r.write_to(&mut out, true, false);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 200 OK\r\nDate: "));
        assert!(s.contains("\r\nX-A: b\r\n"));
        assert!(s.contains("\r\nContent-Length: 2\r\n"));
        assert!(s.contains("\r\nConnection: keep-alive\r\n"));
        assert!(s.ends_with("\r\n\r\n{}"));
        let mut head = Vec::new();
        r.write_to(&mut head, false, true);
        let s = String::from_utf8(head).unwrap();
        assert!(s.contains("Content-Length: 2\r\n"));
        assert!(s.ends_with("Connection: close\r\n\r\n"));
    }

    #[test]
    fn escapes() {
        let mut h = String::new();
        html_escape(&mut h, "<b>&\"'");
        assert_eq!(h, "&lt;b&gt;&amp;&quot;&#39;");
        // Runs between the special bytes, multi-byte characters in them, at both ends.
        let mut h = String::new();
        html_escape(&mut h, "野味<海龙>é&");
        assert_eq!(h, "野味&lt;海龙&gt;é&amp;");
        let mut h = String::from("kept|");
        html_escape(&mut h, "plain");
        assert_eq!(h, "kept|plain");
    }
}
