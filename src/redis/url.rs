//! Pure parser for the Redis address given on the command line:
//! `redis://[USER:PASSWORD@]HOST[:PORT][/DB]` (the `redis` URI scheme as Redis clients use it).
//! No I/O here: resolving the host is the connection's job.
//!
//! The password never appears in `Debug` or `Display` output, so a URL can be logged.

use std::fmt;

/// The port Redis listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 6379;

/// A parsed `redis://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// A host name or IP address; an IPv6 address without its brackets.
    pub host: String,
    pub port: u16,
    /// `AUTH` credentials, percent-decoded: `None` for no `AUTH`; a user `None` for the
    /// one-argument `AUTH password` (the default user, as with `requirepass`).
    pub auth: Option<Auth>,
    /// The database `SELECT`ed at connect (0 when the path is empty).
    pub db: u32,
}

/// Credentials for `AUTH`. Bytes, since percent-decoding may yield any.
#[derive(Clone, PartialEq, Eq)]
pub struct Auth {
    pub user: Option<Vec<u8>>,
    pub password: Vec<u8>,
}

/// Why a Redis URL is refused; each names the part at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// Not `redis://` (`rediss://`, TLS, is not supported).
    Scheme,
    /// Nothing between `//` (or `@`) and the port or path.
    MissingHost,
    /// A `[` without its `]`, or something other than `:PORT` after the `]`.
    BadIpv6,
    /// A port that is not 1–65535.
    BadPort(String),
    /// A path that is not `/` followed by a database number.
    BadDb(String),
    /// Credentials without `:`: it would be unclear whether they name a user or a password.
    BadUserinfo,
    /// A `%` not followed by two hex digits.
    BadPercent,
    /// A `?query` or `#fragment`: no options are supported.
    Unsupported(char),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid Redis URL (want redis://[USER:PASSWORD@]HOST[:PORT][/DB]): ")?;
        match self {
            Error::Scheme => f.write_str("it must start with redis:// (TLS is not supported)"),
            Error::MissingHost => f.write_str("the host is missing"),
            Error::BadIpv6 => f.write_str("an IPv6 address must be written [ADDRESS]:PORT"),
            Error::BadPort(p) => write!(f, "port {p:?} is not a number from 1 to 65535"),
            Error::BadDb(d) => write!(f, "database {d:?} is not a number"),
            Error::BadUserinfo => {
                f.write_str("credentials must be USER:PASSWORD or :PASSWORD, before the @")
            }
            Error::BadPercent => {
                f.write_str("a % in the credentials is not followed by 2 hex digits")
            }
            Error::Unsupported(c) => write!(f, "'{c}' options are not supported"),
        }
    }
}

impl std::error::Error for Error {}

impl RedisUrl {
    /// Parses `redis://[USER:PASSWORD@]HOST[:PORT][/DB]`.
    pub fn parse(s: &str) -> Result<RedisUrl, Error> {
        let rest = strip_prefix_ignore_case(s, "redis://").ok_or(Error::Scheme)?;
        if let Some(c) = rest.chars().find(|&c| c == '?' || c == '#') {
            return Err(Error::Unsupported(c));
        }
        // The authority ends at the first '/': a '/' in a password must be written %2F.
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        // The last '@' ends the credentials, so a raw '@' in a password still works.
        let (auth, hostport) = match authority.rfind('@') {
            Some(i) => (Some(parse_auth(&authority[..i])?), &authority[i + 1..]),
            None => (None, authority),
        };
        let (host, port) = split_host_port(hostport)?;
        if host.is_empty() {
            return Err(Error::MissingHost);
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(Error::BadPort(p.to_owned())),
            },
        };
        let db = match path.strip_prefix('/').unwrap_or(path) {
            "" => 0,
            d if d.bytes().all(|b| b.is_ascii_digit()) => {
                d.parse().map_err(|_| Error::BadDb(d.to_owned()))?
            }
            d => return Err(Error::BadDb(d.to_owned())),
        };
        Ok(RedisUrl {
            host: host.to_owned(),
            port,
            auth,
            db,
        })
    }

    /// `HOST:PORT` as `ToSocketAddrs` takes it (an IPv6 address in brackets).
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn parse_auth(userinfo: &str) -> Result<Auth, Error> {
    let (user, password) = userinfo.split_once(':').ok_or(Error::BadUserinfo)?;
    let user = percent_decode(user)?;
    Ok(Auth {
        user: (!user.is_empty()).then_some(user),
        password: percent_decode(password)?,
    })
}

/// `HOST[:PORT]` or `[V6][:PORT]`: the host and the port text, if any.
fn split_host_port(s: &str) -> Result<(&str, Option<&str>), Error> {
    if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or(Error::BadIpv6)?;
        return match after {
            "" => Ok((host, None)),
            a => a
                .strip_prefix(':')
                .map(|p| (host, Some(p)))
                .ok_or(Error::BadIpv6),
        };
    }
    if s.contains(']') {
        return Err(Error::BadIpv6);
    }
    Ok(match s.rsplit_once(':') {
        // Two colons without brackets: an IPv6 address that should have had them.
        Some((h, _)) if h.contains(':') => return Err(Error::BadIpv6),
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    })
}

/// RFC 3986 §2.1 percent-decoding, strict: `%` must be followed by two hex digits.
fn percent_decode(s: &str) -> Result<Vec<u8>, Error> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or(Error::BadPercent)?;
            let hex = std::str::from_utf8(hex).map_err(|_| Error::BadPercent)?;
            if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(Error::BadPercent);
            }
            out.push(u8::from_str_radix(hex, 16).map_err(|_| Error::BadPercent)?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// The URL with the password hidden, for logs and messages.
impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("redis://")?;
        if let Some(auth) = &self.auth {
            if let Some(user) = &auth.user {
                f.write_str(&String::from_utf8_lossy(user))?;
            }
            f.write_str(":***@")?;
        }
        write!(f, "{}/{}", self.addr(), self.db)
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("user", &self.user.as_deref().map(String::from_utf8_lossy))
            .field("password", &"***")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(user: Option<&str>, password: &str) -> Option<Auth> {
        Some(Auth {
            user: user.map(|u| u.as_bytes().to_vec()),
            password: password.as_bytes().to_vec(),
        })
    }

    #[test]
    fn valid_urls() {
        let cases: &[(&str, &str, u16, Option<Auth>, u32)] = &[
            ("redis://127.0.0.1", "127.0.0.1", 6379, None, 0),
            ("redis://127.0.0.1:6380", "127.0.0.1", 6380, None, 0),
            ("redis://localhost:6379/", "localhost", 6379, None, 0),
            ("redis://localhost/3", "localhost", 6379, None, 3),
            ("REDIS://Host:1/15", "Host", 1, None, 15),
            ("redis://h:65535/4294967295", "h", 65535, None, u32::MAX),
            ("redis://[::1]", "::1", 6379, None, 0),
            ("redis://[::1]:7000/2", "::1", 7000, None, 2),
            ("redis://:secret@h", "h", 6379, auth(None, "secret"), 0),
            (
                "redis://alice:secret@h:1/1",
                "h",
                1,
                auth(Some("alice"), "secret"),
                1,
            ),
            ("redis://alice:@h", "h", 6379, auth(Some("alice"), ""), 0),
            (
                "redis://a%3Ab:p%40ss%2Fw%25rd@h",
                "h",
                6379,
                auth(Some("a:b"), "p@ss/w%rd"),
                0,
            ),
            // A raw '@' or ':' in the password: the last '@' ends the credentials.
            (
                "redis://u:p@ss:w@h",
                "h",
                6379,
                auth(Some("u"), "p@ss:w"),
                0,
            ),
            ("redis://u:%e2%9c%93@h", "h", 6379, auth(Some("u"), "✓"), 0),
        ];
        for (s, host, port, auth, db) in cases {
            let url = RedisUrl::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(
                url,
                RedisUrl {
                    host: host.to_string(),
                    port: *port,
                    auth: auth.clone(),
                    db: *db
                },
                "{s}"
            );
        }
    }

    #[test]
    fn invalid_urls() {
        let cases: &[(&str, Error)] = &[
            ("", Error::Scheme),
            ("127.0.0.1:6379", Error::Scheme),
            ("http://h", Error::Scheme),
            ("rediss://h", Error::Scheme),
            ("redis:/h", Error::Scheme),
            ("redis://", Error::MissingHost),
            ("redis://:6379", Error::MissingHost),
            ("redis://u:p@", Error::MissingHost),
            ("redis:///0", Error::MissingHost),
            ("redis://h:", Error::BadPort(String::new())),
            ("redis://h:0", Error::BadPort("0".into())),
            ("redis://h:65536", Error::BadPort("65536".into())),
            ("redis://h:+1", Error::BadPort("+1".into())),
            ("redis://h:x", Error::BadPort("x".into())),
            ("redis://h/x", Error::BadDb("x".into())),
            ("redis://h/-1", Error::BadDb("-1".into())),
            ("redis://h/1/2", Error::BadDb("1/2".into())),
            ("redis://h/4294967296", Error::BadDb("4294967296".into())),
            ("redis://::1", Error::BadIpv6),
            ("redis://[::1", Error::BadIpv6),
            ("redis://[::1]6379", Error::BadIpv6),
            ("redis://h]:1", Error::BadIpv6),
            ("redis://secret@h", Error::BadUserinfo),
            ("redis://u:%4@h", Error::BadPercent),
            ("redis://u:%zz@h", Error::BadPercent),
            ("redis://u:%@h", Error::BadPercent),
            ("redis://h?db=1", Error::Unsupported('?')),
            ("redis://h#x", Error::Unsupported('#')),
        ];
        for (s, want) in cases {
            assert_eq!(RedisUrl::parse(s).as_ref(), Err(want), "{s}");
        }
    }

    #[test]
    fn the_password_is_never_printed() {
        let url = RedisUrl::parse("redis://alice:hunter2@[::1]:7000/3").expect("valid");
        assert_eq!(url.to_string(), "redis://alice:***@[::1]:7000/3");
        assert!(!format!("{url:?}").contains("hunter2"));
        assert!(!format!("{:?}", url.auth).contains("hunter2"));
        assert_eq!(url.addr(), "[::1]:7000");
        let plain = RedisUrl::parse("redis://h").expect("valid");
        assert_eq!(plain.to_string(), "redis://h:6379/0");
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = RedisUrl::parse("redis://h:99999").expect_err("bad port");
        assert_eq!(
            e.to_string(),
            "invalid Redis URL (want redis://[USER:PASSWORD@]HOST[:PORT][/DB]): \
             port \"99999\" is not a number from 1 to 65535"
        );
    }
}
