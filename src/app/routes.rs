//! Routing: which path and method does what. Each handler turns a parsed request into a
//! response; the vote table does the counting.

use std::net::SocketAddr;

use super::votes::{Catchup, VoteError};
use super::{json, App};
use crate::config::valid_id;
use crate::http::conn::{Handler, Reply};
use crate::http::form;
use crate::http::{Request, Response};
use crate::ws::handshake;

/// Transports the vote page knows; the first is the default.
pub const TRANSPORTS: [&str; 3] = ["ws", "longpoll", "poll"];

/// Largest delta a long-poll answer lists before it sends the whole tally instead.
const LONGPOLL_MAX_DELTA: usize = 1024;

const GET_HEAD: &str = "GET, HEAD";

/// The methods of RFC 9110 §9 and PATCH: known, so answered `405` where not allowed.
const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

impl Handler for App {
    fn handle(&self, req: &Request, body: &[u8], _peer: SocketAddr) -> Reply {
        let get = req.method == "GET" || req.method == "HEAD";
        // Route on the decoded path, so `/%69ndex` is `/index`; it is decoded exactly once.
        let path = match form::percent_decode(req.path.as_bytes(), false) {
            Ok(p) => p,
            Err(_) => return Reply::Response(Response::error(400, "malformed path")),
        };
        if !KNOWN_METHODS.contains(&req.method.as_str()) {
            // RFC 9110 §9.1: a method the server does not recognise gets 501.
            return Reply::Response(Response::error(501, "method not implemented"));
        }
        let resp = match path.as_str() {
            "/get_new_vote" if handshake::is_upgrade_request(req) => {
                return self.upgrade(req, super::live::Endpoint::Votes)
            }
            "/chatsocket" if handshake::is_upgrade_request(req) => {
                return self.upgrade(req, super::live::Endpoint::Chat)
            }
            "/vote" if req.method == "POST" => self.vote(req, body, "uid"),
            "/ticket" if req.method == "POST" => self.vote(req, body, "nid"),
            "/vote" | "/ticket" => not_allowed("POST"),
            _ if !get => not_allowed(GET_HEAD),
            "/" => self.file("/home.html"),
            "/index" => self.index(req),
            "/votes" => self.tally(req),
            "/get_new_vote" => self.long_poll(req),
            "/chat" => self.file("/chat.html"),
            "/chatsocket" => Response::error(426, "this endpoint speaks WebSocket only")
                .header("Upgrade", "websocket")
                .header("Sec-WebSocket-Version", "13"),
            path => self.file(path),
        };
        Reply::Response(resp)
    }
}

fn not_allowed(allow: &'static str) -> Response {
    Response::error(405, "method not allowed").header("Allow", allow)
}

/// The decoded query string; a malformed one is a 400.
fn query(req: &Request) -> Result<Vec<(String, String)>, Response> {
    form::parse(req.query.as_deref().unwrap_or("").as_bytes())
        .map_err(|e| Response::error(400, &format!("query string: {e}")))
}

impl App {
    fn file(&self, path: &str) -> Response {
        match self.files.read(path) {
            Some((ctype, bytes)) => Response::with_body(200, ctype, bytes)
                .header("Cache-Control", "no-cache")
                .header("X-Content-Type-Options", "nosniff"),
            None => Response::error(404, "not found"),
        }
    }

    fn index(&self, req: &Request) -> Response {
        let q = match query(req) {
            Ok(q) => q,
            Err(r) => return r,
        };
        let transport = match form::get(&q, "transport") {
            None | Some("") => TRANSPORTS[0],
            Some(t) => match TRANSPORTS.iter().find(|&&k| k == t) {
                Some(k) => k,
                None => {
                    return Response::error(
                        400,
                        &format!(
                            "unknown transport '{t}' (use one of {})",
                            TRANSPORTS.join(", ")
                        ),
                    )
                }
            },
        };
        let snap = self.votes.snapshot();
        Response::html(200, self.template.render(&snap, transport, "Live vote"))
            .header("Cache-Control", "no-store")
    }

    /// `POST /vote` (`uid`) and `POST /ticket` (`nid`): the field from a form body, or else
    /// from the query string.
    fn vote(&self, req: &Request, body: &[u8], field: &str) -> Response {
        if !body.is_empty() {
            let ctype = req.header("content-type").unwrap_or("");
            let mime = ctype.split(';').next().unwrap_or("").trim();
            if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
                return Response::error(415, "send the vote as application/x-www-form-urlencoded")
                    .header("Accept-Post", "application/x-www-form-urlencoded");
            }
        }
        let from_body = match form::parse(body) {
            Ok(p) => p,
            Err(e) => return Response::error(400, &format!("form: {e}")),
        };
        let from_query = match query(req) {
            Ok(q) => q,
            Err(r) => return r,
        };
        let Some(id) = form::get(&from_body, field).or_else(|| form::get(&from_query, field))
        else {
            return Response::error(400, &format!("missing form field '{field}'"));
        };
        if !valid_id(id) {
            return Response::error(400, &format!("malformed '{field}'"));
        }
        match self.votes.vote(id) {
            Ok(change) => Response::json(200, json::vote_result(&change, self.votes.epoch())),
            Err(VoteError::UnknownCandidate(uid)) => {
                Response::json(404, json::error_with_uid("unknown candidate", &uid, false))
            }
        }
    }

    /// `GET /votes`: the whole tally. The ETag is the tally's epoch and version, so a poller
    /// asking `If-None-Match` gets a bodiless `304` while nothing changed.
    fn tally(&self, req: &Request) -> Response {
        let snap = self.votes.snapshot();
        let etag = format!("\"{}-{}\"", snap.epoch, snap.version);
        let fresh = req
            .header_values("if-none-match")
            .flat_map(|v| v.split(','))
            .map(str::trim)
            // RFC 9110 §13.1.2: If-None-Match uses the weak comparison.
            .map(|t| t.strip_prefix("W/").unwrap_or(t))
            .any(|t| t == etag || t == "*");
        let resp = if fresh {
            Response::new(304)
        } else {
            Response::with_body(
                200,
                "application/json; charset=utf-8",
                json::snapshot(&snap, ""),
            )
        };
        resp.header("ETag", etag)
            .header("Cache-Control", "no-cache")
    }

    /// `GET /get_new_vote[?since=V&epoch=E]`: answers at once when the client is behind,
    /// else waits for the next vote or the timeout. Without `since`, waits for the next vote
    /// like the tutorial did.
    fn long_poll(&self, req: &Request) -> Response {
        let q = match query(req) {
            Ok(q) => q,
            Err(r) => return r,
        };
        let since = match form::get(&q, "since") {
            None | Some("") => None,
            Some(s) => match s.parse::<u64>() {
                Ok(v) => Some(v),
                Err(_) => return Response::error(400, "'since' must be a version number"),
            },
        };
        let epoch = form::get(&q, "epoch");
        let now = self.votes.version();
        let since_v = since.unwrap_or(now);
        let waited = since_v == now && epoch.is_none_or(|e| e == self.votes.epoch());
        let answer = self.votes.wait_past(
            since_v,
            epoch,
            LONGPOLL_MAX_DELTA,
            self.config.longpoll_timeout,
        );
        let body = match answer {
            Some(c @ Catchup::Delta { .. }) | Some(c @ Catchup::Snapshot(_)) => {
                json::longpoll(&c, waited, self.votes.epoch())
            }
            None => json::longpoll_timeout(self.votes.version(), self.votes.epoch()),
        };
        Response::json(200, body)
    }

    /// Validates a WebSocket handshake and the browser's `Origin`, and hands the connection to
    /// the endpoint after the `101`.
    fn upgrade(&self, req: &Request, endpoint: super::live::Endpoint) -> Reply {
        let accept = match handshake::validate(req) {
            Ok(a) => a,
            Err(e) => {
                let mut r = Response::error(e.status(), &e.to_string());
                if e.status() == 426 {
                    r = r
                        .header("Sec-WebSocket-Version", "13")
                        .header("Upgrade", "websocket");
                }
                return Reply::Response(r.closing());
            }
        };
        if !self.origin_allowed(req) {
            return Reply::Response(
                Response::error(
                    403,
                    "cross-origin WebSocket refused (Origin does not match Host)",
                )
                .closing(),
            );
        }
        let resp = Response::new(101)
            .header("Upgrade", "websocket")
            .header("Connection", "Upgrade")
            .header("Sec-WebSocket-Accept", accept);
        let app = self.shared();
        Reply::Upgrade(
            resp,
            Box::new(move |stream, leftover| super::live::serve(&app, endpoint, stream, leftover)),
        )
    }

    /// A request without `Origin` (curl, scripts) is allowed; a browser's `Origin` must name
    /// this server's own `Host` (either scheme), or be listed with `--allow-origin`.
    pub fn origin_allowed(&self, req: &Request) -> bool {
        let Some(origin) = req.header("origin") else {
            return true;
        };
        let origin = origin.trim().trim_end_matches('/');
        // `get` rather than indexing: a non-ASCII Origin must not split a character.
        let own = req.header("host").map(str::trim).is_some_and(|host| {
            ["http://", "https://"].iter().any(|scheme| {
                origin
                    .get(..scheme.len())
                    .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
                    && origin
                        .get(scheme.len()..)
                        .is_some_and(|h| h.eq_ignore_ascii_case(host))
            })
        });
        if own {
            return true;
        }
        self.config
            .allow_origins
            .iter()
            .any(|a| a.eq_ignore_ascii_case(origin))
    }
}
