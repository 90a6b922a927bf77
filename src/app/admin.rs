//! Who may run the polls, and the admin API: the bearer token (`--admin-token`, or one made at
//! start), the server secret that signs cookies (kept with the data, so cookies survive a
//! restart), the admin cookie a browser gets for the token (pages, EventSource and WebSocket
//! cannot send an `Authorization` header), the voter cookie `lv_voter`, and the `/api/polls`
//! routes. docs/API.md is the contract.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use super::json;
use super::polls::meta::Meta;
use super::polls::{CreateError, DeleteError, Poll};
use super::store::{now_ms, Mark};
use super::votes::VoteError;
use super::App;
use crate::config::Config;
use crate::http::form;
use crate::http::forwarded::{Client, Proto};
use crate::http::{Request, Response, Status};
use crate::sign;

/// The voter cookie's name.
pub const VOTER_COOKIE: &str = "lv_voter";
/// The admin cookie's name.
pub const ADMIN_COOKIE: &str = "lv_admin";
/// How long a voter cookie lives: a year.
const VOTER_MAX_AGE: u64 = 365 * 24 * 3600;
/// How long an admin cookie is good for: a working day.
pub const ADMIN_COOKIE_TTL: Duration = Duration::from_secs(12 * 3600);
/// Random bytes in a voter id (hex: twice as many characters).
const VOTER_BYTES: usize = 16;
/// How long a poll's deletion may wait for its store to finish.
const DELETE_WAIT: Duration = Duration::from_secs(5);

/// The token and the secret.
pub struct Keys {
    token: String,
    /// Signs voter cookies: kept with the data, so a voter stays the same voter across
    /// restarts.
    secret: Vec<u8>,
    /// Signs admin cookies: derived from the secret and the token, so a new token ends every
    /// admin cookie made for the old one.
    admin_key: [u8; 20],
}

impl Keys {
    /// The token the configuration gives (or a random one, printed once on stderr), and the
    /// secret kept beside the journal (`PATH.secret`, made at first start) or made for this
    /// run (memory). With `--redis`, both are kept in Redis ([`super::redis_store::shared_secrets`]).
    pub fn open(config: &Config) -> io::Result<Keys> {
        if let Some(url) = &config.redis {
            // Every instance signs and checks with the same secret and token, kept in Redis.
            let shared = super::redis_store::shared_secrets(
                url,
                &config.redis_prefix,
                config.admin_token.as_deref(),
                config.limits.vote_timeout,
            )?;
            if shared.made_token {
                // Straight to stderr, once, by the instance that made it.
                eprintln!(
                    "livevote: admin token (no --admin-token given; kept in Redis for every \
                     instance): {}",
                    shared.token
                );
            } else if config.admin_token.is_none() {
                eprintln!(
                    "livevote: admin token: the one in Redis (made by the first instance; \
                     it printed it)"
                );
            }
            return Ok(Keys::new(shared.token, shared.secret));
        }
        let token = match &config.admin_token {
            Some(t) => t.clone(),
            None => {
                let t = sign::random_hex(16)?;
                // Straight to stderr, once: not through the log, which must never hold it.
                eprintln!("livevote: admin token (no --admin-token given): {t}");
                t
            }
        };
        let secret = match &config.data {
            Some(path) => secret_file(&super::store::suffixed(path, ".secret"))?,
            None => sign::random_hex(32)?.into_bytes(),
        };
        Ok(Keys::new(token, secret))
    }

    pub fn new(token: String, secret: Vec<u8>) -> Keys {
        let admin_key = sign::hmac_sha1(&secret, token.as_bytes());
        Keys {
            token,
            secret,
            admin_key,
        }
    }

    /// Whether `token` is the admin token (compared in constant time).
    pub fn token_ok(&self, token: &str) -> bool {
        sign::constant_time_eq(token.as_bytes(), self.token.as_bytes())
    }

    /// A new admin cookie's value: its expiry, signed.
    pub fn admin_cookie(&self) -> String {
        let until = now_ms() + ADMIN_COOKIE_TTL.as_millis() as u64;
        sign::sign(&self.admin_key, "admin", &until.to_string())
    }

    /// Whether `value` is an admin cookie of ours that has not expired.
    pub fn admin_cookie_ok(&self, value: &str) -> bool {
        sign::verify(&self.admin_key, "admin", value)
            .and_then(|until| until.parse::<u64>().ok())
            .is_some_and(|until| now_ms() < until)
    }

    /// A voter cookie's value for `voter`.
    pub fn voter_cookie(&self, voter: &str) -> String {
        sign::sign(&self.secret, "voter", voter)
    }

    /// The voter a cookie value names, if we signed it.
    pub fn voter_of<'a>(&self, value: &'a str) -> Option<&'a str> {
        sign::verify(&self.secret, "voter", value).filter(|v| crate::ids::VOTER.accepts(v))
    }
}

/// Reads the secret at `path`, or makes one there (mode 0600, written durably).
fn secret_file(path: &Path) -> io::Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(s) if s.len() >= 32 => return Ok(s),
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: too short to be a secret", path.display()),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
    let secret = sign::random_hex(32)?;
    // Kept from the other users of the machine: it signs every voter's and admin's cookie.
    super::store::write_durably(path, secret.as_bytes(), 0o600)?;
    Ok(secret.into_bytes())
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.header_values("cookie")
        .flat_map(|h| h.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// `Authorization: Bearer TOKEN`'s token.
fn bearer(req: &Request) -> Option<&str> {
    let h = req.header("authorization")?.trim();
    let (scheme, token) = h.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A `Set-Cookie` value: `Path` the base path, `Secure` when the browser used TLS.
fn set_cookie(name: &str, value: &str, base: &str, attrs: &str, client: &Client) -> String {
    let path = if base.is_empty() { "/" } else { base };
    let secure = if client.proto == Some(Proto::Https) {
        "; Secure"
    } else {
        ""
    };
    format!("{name}={value}; Path={path}; HttpOnly{attrs}{secure}")
}

/// Who a request comes from, as far as polls care.
pub struct Caller {
    /// The voter its cookie names (checked).
    pub voter: Option<String>,
    /// It holds the admin token or cookie: it sees every result.
    pub admin: bool,
}

impl App {
    /// Whether the request carries the admin token, or (from a page of ours) the admin cookie.
    pub fn is_admin(&self, req: &Request, client: &Client) -> bool {
        if let Some(t) = bearer(req) {
            return self.admin.token_ok(t);
        }
        cookie(req, ADMIN_COOKIE).is_some_and(|c| self.admin.admin_cookie_ok(c))
            && self.origin_allowed(req, client)
    }

    pub fn caller(&self, req: &Request, client: &Client) -> Caller {
        Caller {
            voter: cookie(req, VOTER_COOKIE)
                .and_then(|c| self.admin.voter_of(c))
                .map(str::to_string),
            admin: self.is_admin(req, client),
        }
    }

    /// A new voter id and the `Set-Cookie` that gives it to the browser.
    pub fn new_voter(&self, client: &Client) -> io::Result<(String, String)> {
        let voter = sign::random_hex(VOTER_BYTES)?;
        let value = self.admin.voter_cookie(&voter);
        let attrs = format!("; SameSite=Lax; Max-Age={VOTER_MAX_AGE}");
        let header = set_cookie(VOTER_COOKIE, &value, &self.config.base_path, &attrs, client);
        Ok((voter, header))
    }

    /// `POST /admin`: the token (`Authorization: Bearer`, or a form's `token`) for the admin
    /// cookie; `logout=1` clears it. `204`, or `303` to `back` for a form.
    #[inline(never)]
    pub fn admin_login(&self, req: &Request, client: &Client, body: &[u8]) -> Response {
        if !self.origin_allowed(req, client) {
            return Response::error(Status::Forbidden, "cross-origin request refused");
        }
        let fields = form::parse(body).unwrap_or_default();
        if form::get(&fields, "logout").is_some() {
            let gone = set_cookie(
                ADMIN_COOKIE,
                "",
                &self.config.base_path,
                "; SameSite=Strict; Max-Age=0",
                client,
            );
            return Response::new(Status::NoContent).header("Set-Cookie", gone);
        }
        let token = bearer(req).or_else(|| form::get(&fields, "token"));
        if !token.is_some_and(|t| self.admin.token_ok(t)) {
            return unauthorized();
        }
        let attrs = format!("; SameSite=Strict; Max-Age={}", ADMIN_COOKIE_TTL.as_secs());
        let c = set_cookie(
            ADMIN_COOKIE,
            &self.admin.admin_cookie(),
            &self.config.base_path,
            &attrs,
            client,
        );
        let back = form::get(&fields, "back")
            .filter(|b| b.starts_with('/') && !b.starts_with("//") && !b.contains('\\'));
        match back {
            Some(to) => Response::text(Status::SeeOther, format!("see {to}\n"))
                .header("Location", to.to_string()),
            None => Response::new(Status::NoContent),
        }
        .header("Set-Cookie", c)
        .header("Cache-Control", "no-store")
    }

    /// `/api/polls[/ID[/ACTION]]` (`rest` is what follows `/api/polls`).
    #[inline(never)]
    pub fn api(&self, req: &Request, client: &Client, body: &[u8], rest: &str) -> Response {
        if !self.is_admin(req, client) {
            return unauthorized();
        }
        let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        let m = req.method.as_str();
        let resp = match (m, parts.as_slice()) {
            ("GET" | "HEAD", [""]) => self.api_list(),
            ("POST", [""]) => self.api_create(req, body),
            (_, [""]) => not_allowed("GET, HEAD, POST"),
            (_, [id, ..]) if !crate::ids::POLL.accepts(id) => poll_not_found(),
            ("GET" | "HEAD", [id]) => {
                self.with_poll(id, |p| Response::json(Status::Ok, json::poll(p)))
            }
            ("DELETE", [id]) => match self.polls.delete(id, Instant::now() + DELETE_WAIT) {
                Ok(()) => Response::new(Status::NoContent),
                Err(DeleteError::Default) => {
                    Response::error(Status::Conflict, "the default poll cannot be deleted")
                }
                Err(DeleteError::NotFound) => poll_not_found(),
                Err(DeleteError::Io(e)) => {
                    Response::error(Status::InternalServerError, &format!("delete: {e}"))
                }
            },
            (_, [_]) => not_allowed("GET, HEAD, DELETE"),
            ("POST", [id, action]) => {
                let mark = match *action {
                    "open" => Mark::Opened,
                    "close" => Mark::Closed,
                    "reset" => Mark::Reset,
                    _ => return Response::error(Status::NotFound, "not found"),
                };
                self.with_poll(id, |p| self.api_mark(p, mark))
            }
            (_, [_, "open" | "close" | "reset"]) => not_allowed("POST"),
            _ => Response::error(Status::NotFound, "not found"),
        };
        resp.header("Cache-Control", "no-store")
    }

    fn with_poll(&self, id: &str, f: impl FnOnce(&Poll) -> Response) -> Response {
        match self.polls.get(id) {
            Some(p) => f(&p),
            None => poll_not_found(),
        }
    }

    fn api_list(&self) -> Response {
        let polls = self.polls.all();
        let body = crate::json::to_object(|o| {
            o.array("polls", |a| {
                for p in &polls {
                    let s = p.votes.snapshot();
                    a.object(|o| {
                        json::poll_fields(o, &p.meta, &s, true);
                        o.u64("voters", p.votes.voters() as u64);
                    });
                }
            });
        });
        Response::json(Status::Ok, body)
    }

    fn api_create(&self, req: &Request, body: &[u8]) -> Response {
        let fields = match super::routes::form_body(req, body, "poll", false) {
            Ok(f) => f,
            Err(r) => return r,
        };
        let id = match form::get(&fields, "id") {
            Some(id) if !id.is_empty() => id.to_string(),
            _ => match sign::random_hex(4) {
                Ok(id) => id,
                Err(e) => return Response::error(Status::InternalServerError, &e.to_string()),
            },
        };
        let meta = match Meta::from_form(&id, &fields, now_ms()) {
            Ok(m) => m,
            Err(e) => return Response::error(Status::BadRequest, &e.to_string()),
        };
        match self.polls.create(meta) {
            Ok(p) => Response::json(Status::Created, json::poll(&p)).header(
                "Location",
                format!("{}/p/{}", self.config.base_path, p.id()),
            ),
            Err(CreateError::Taken) => {
                Response::error(Status::Conflict, &format!("poll id '{id}' is taken"))
            }
            Err(CreateError::TooMany) => Response::error(Status::Conflict, "too many polls"),
            Err(CreateError::Io(e)) => {
                Response::error(Status::InternalServerError, &format!("create: {e}"))
            }
        }
    }

    /// Opens, closes or resets a poll: a version of its own, so every client gets a snapshot.
    /// Opening an open poll (or closing a closed one) changes nothing.
    fn api_mark(&self, p: &Poll, mark: Mark) -> Response {
        let same = match mark {
            Mark::Opened => !p.votes.poll_closed(),
            Mark::Closed => p.votes.poll_closed(),
            Mark::Reset => false,
        };
        if same {
            return Response::json(Status::Ok, json::poll(p));
        }
        match p.votes.mark(mark) {
            Ok(_) => Response::json(Status::Ok, json::poll(p)),
            Err(e @ (VoteError::NotStored(_) | VoteError::OutcomeUnknown)) => {
                Response::error(Status::ServiceUnavailable, &e.to_string())
                    .header("Retry-After", "1")
            }
            Err(e @ VoteError::Deleted) => Response::error(Status::NotFound, &e.to_string()),
            Err(e) => Response::error(Status::InternalServerError, &e.to_string()),
        }
    }
}

fn unauthorized() -> Response {
    Response::error(
        Status::Unauthorized,
        "admin token required: Authorization: Bearer TOKEN",
    )
    .header("WWW-Authenticate", "Bearer realm=\"livevote\"")
    .header("Cache-Control", "no-store")
}

fn poll_not_found() -> Response {
    Response::error(Status::NotFound, "no such poll")
}

fn not_allowed(allow: &'static str) -> Response {
    Response::error(Status::MethodNotAllowed, "method not allowed").header("Allow", allow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_signed_per_purpose_and_expire() {
        let k = Keys::new("t".repeat(16), b"s".repeat(64));
        let v = k.voter_cookie("abc");
        assert_eq!(k.voter_of(&v), Some("abc"));
        assert!(!k.admin_cookie_ok(&v), "a voter cookie is no admin cookie");
        let a = k.admin_cookie();
        assert!(k.admin_cookie_ok(&a));
        assert_eq!(k.voter_of(&a), None);
        let other = Keys::new("u".repeat(16), b"s".repeat(64));
        assert!(
            !other.admin_cookie_ok(&a),
            "a new token ends old admin cookies"
        );
        assert_eq!(
            other.voter_of(&v),
            Some("abc"),
            "voters survive a new token"
        );
        let expired = sign::sign(&k.admin_key, "admin", &(now_ms() - 1).to_string());
        assert!(!k.admin_cookie_ok(&expired));
        assert!(k.token_ok(&"t".repeat(16)) && !k.token_ok("t"));
    }
}
