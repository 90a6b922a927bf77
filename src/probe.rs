//! `livevote probe [URL]`: one `GET` of `/healthz` (or the URL's path) with std's TCP, for a
//! container's `HEALTHCHECK` where there is no curl. Healthy when the status is `200`; each
//! step (connect, write, read of the status line) has a short deadline.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::http::request::split_host;

/// The whole probe's deadline.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Most bytes read looking for the status line.
const MAX_STATUS_LINE: usize = 1024;

/// A probe target: `http://HOST[:PORT][/PATH]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// As sent in `Host` (`[::1]:8080`, `localhost`).
    pub authority: String,
    /// Host name or address, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    /// Origin-form: `/healthz` when the URL has no path.
    pub path: String,
}

/// Parses a probe URL (only `http://`: TLS ends in a proxy, never here).
pub fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("'{url}': only http:// URLs can be probed"))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (host, port) =
        split_host(authority).map_err(|_| format!("'{url}': '{authority}' is not HOST[:PORT]"))?;
    let path = match path {
        "" | "/" => "/healthz".to_string(),
        p if p.starts_with('?') => format!("/healthz{p}"),
        p => p.to_string(),
    };
    if path.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
        return Err(format!(
            "'{url}': the path must be printable ASCII without spaces"
        ));
    }
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Ok(Target {
        authority: authority.to_string(),
        host: host.to_string(),
        port: port.unwrap_or(80),
        path,
    })
}

/// The status code of a response's first line (`HTTP/1.1 200 OK`); None if it is not one.
pub fn status_of(line: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    let code = parts.next()?;
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

/// Asks `url`; the status it answered.
pub fn probe(url: &str) -> Result<u16, String> {
    let t = parse_url(url)?;
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let addrs = (t.host.as_str(), t.port)
        .to_socket_addrs()
        .map_err(|e| format!("{}: {e}", t.authority))?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    let mut stream = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, left()) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let mut s = stream.ok_or_else(|| format!("{}: {last}", t.authority))?;
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: livevote-probe\r\nConnection: close\r\n\r\n",
        t.path, t.authority
    );
    let io_err = |e: io::Error| format!("{}: {e}", t.authority);
    s.set_write_timeout(Some(left())).map_err(io_err)?;
    s.write_all(req.as_bytes()).map_err(io_err)?;
    let mut got = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    loop {
        if let Some(end) = got.iter().position(|&b| b == b'\n') {
            let line = got[..end].strip_suffix(b"\r").unwrap_or(&got[..end]);
            return status_of(line).ok_or_else(|| format!("{}: not an HTTP response", t.authority));
        }
        if got.len() > MAX_STATUS_LINE {
            return Err(format!("{}: not an HTTP response", t.authority));
        }
        s.set_read_timeout(Some(left())).map_err(io_err)?;
        match s.read(&mut buf) {
            Ok(0) => return Err(format!("{}: closed without an answer", t.authority)),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_default_to_healthz() {
        let t = parse_url("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 8080, "/healthz")
        );
        assert_eq!(parse_url("http://h/").unwrap().path, "/healthz");
        assert_eq!(parse_url("http://h").unwrap().port, 80);
        assert_eq!(parse_url("http://h:1/readyz").unwrap().path, "/readyz");
        assert_eq!(parse_url("http://h:1?x=1").unwrap().path, "/healthz?x=1");
        let v6 = parse_url("http://[::1]:9/healthz").unwrap();
        assert_eq!(
            (v6.host.as_str(), v6.authority.as_str()),
            ("::1", "[::1]:9")
        );
        for bad in [
            "https://h/",
            "h:1",
            "http://",
            "http://a b/",
            "http://h:99999/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_status_line() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK"), Some(200));
        assert_eq!(status_of(b"HTTP/1.0 503 Service Unavailable"), Some(503));
        assert_eq!(status_of(b"HTTP/1.1 204"), Some(204));
        assert_eq!(status_of(b"SSH-2.0-OpenSSH"), None);
        assert_eq!(status_of(b"HTTP/1.1 2000 x"), None);
        assert_eq!(status_of(b""), None);
    }

    #[test]
    fn a_closed_port_is_an_error() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        assert!(probe(&format!("http://127.0.0.1:{port}/")).is_err());
    }
}
