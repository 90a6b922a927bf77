//! Routing: which path and method does what. Each handler turns a parsed request into a
//! response; the vote table does the counting.

use std::borrow::Cow;
use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::cursor::{self, Cursor};
use super::metrics::{Gauges, Route};
use super::pages::{self, Page};
use super::polls::meta::DEFAULT_ID;
use super::polls::Poll;
use super::presence::{valid_viewer, Kind};
use super::rate::Key;
use super::sse;
use super::votes::Votes;
use super::votes::{valid_vote_id, VoteError};
use super::{json, App};
use crate::config::valid_id;
use crate::config::Config;
use crate::http::base_path::{self, Under};
use crate::http::conn::{Handler, Reply};
use crate::http::form;
use crate::http::forwarded::{self, Client, Proto};
use crate::http::request::{split_host, target_authority};
use crate::http::{Request, Response, Status};
use crate::ws::handshake;
use std::time::Duration;

/// Transports the vote page knows; the first is the default (`auto`: the page's fallback
/// ladder, WebSocket → SSE → long-poll → polling).
pub const TRANSPORTS: [&str; 5] = ["auto", "ws", "sse", "longpoll", "poll"];

const GET_HEAD: &str = "GET, HEAD";

/// The methods of RFC 9110 §9 and PATCH: known, so answered `405` where not allowed.
const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// A request being handled or answered on this thread: counted in the app's in-flight
/// requests from [`Handler::handle`] until [`Handler::observe`] (told once the response is
/// written) or the thread's end, a panic included.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

thread_local! {
    static IN_FLIGHT: RefCell<Option<InFlight>> = const { RefCell::new(None) };
}

impl Handler for App {
    fn handle(&self, req: &Request, body: &[u8], peer: SocketAddr) -> Reply {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let counted = InFlight(Arc::clone(&self.in_flight));
        // A request before this one that was never observed is over now.
        drop(IN_FLIGHT.with(|f| f.replace(Some(counted))));
        match self.route(req, body, peer) {
            // Shutting down: every client goes elsewhere (through the load balancer, which
            // has seen `/readyz` fail) for its next request.
            Reply::Response(r) if self.draining() => Reply::Response(r.closing()),
            reply => reply,
        }
    }

    fn observe(&self, status: Status, bytes: usize) {
        self.metrics.response(status.code(), bytes);
        // Written: no longer in flight (an error answered before any handling has none).
        drop(IN_FLIGHT.with(RefCell::take));
    }

    /// The access log's address: the client a trusted proxy names, else the peer.
    fn client(&self, req: &Request, peer: SocketAddr) -> IpAddr {
        self.client_of(req, peer).ip
    }
}

impl App {
    fn route(&self, req: &Request, body: &[u8], peer: SocketAddr) -> Reply {
        // A load balancer's or orchestrator's probe names the instance by its address, which
        // the Host allowlist need not list: these two answer every Host (they say nothing a
        // rebound page could use).
        if let Some(r) = self.health(req) {
            return Reply::Response(r);
        }
        // Who this is from: the peer, or what a trusted proxy in front says.
        let client = self.client_of(req, peer);
        // Before anything else, so no route (votes, WebSockets, /metrics) answers a name we
        // are not: the DNS-rebinding guard.
        if let Err(r) = self.host_allowed(req, &client) {
            return Reply::Response(r);
        }
        let get = req.method == "GET" || req.method == "HEAD";
        // Route on the decoded path, so `/%69ndex` is `/index`; it is decoded exactly once.
        // Nothing to decode (the usual case): the path as it is, without a copy.
        let decoded: std::borrow::Cow<str> = if !req.path.contains('%') {
            req.path.as_str().into()
        } else {
            match form::percent_decode(req.path.as_bytes(), false) {
                Ok(p) => p.into(),
                Err(_) => {
                    return Reply::Response(Response::error(Status::BadRequest, "malformed path"))
                }
            }
        };
        // Under `--base-path`, the routes are below it, and nothing is outside it.
        let path = match base_path::split(&self.config.base_path, &decoded) {
            Under::Inside(p) => p,
            Under::Bare => return Reply::Response(self.to_base(req)),
            Under::Outside => {
                return Reply::Response(Response::error(
                    Status::NotFound,
                    &format!(
                        "not found (this server serves under {}/)",
                        self.config.base_path
                    ),
                ))
            }
        };
        if !KNOWN_METHODS.contains(&req.method.as_str()) {
            // RFC 9110 §9.1: a method the server does not recognise gets 501.
            return Reply::Response(Response::error(
                Status::NotImplemented,
                "method not implemented",
            ));
        }
        // `/p/ID…`: a poll's own routes; everything else is the default poll's, or the
        // server's.
        if let Some(rest) = path.strip_prefix("/p/") {
            let (id, sub) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            let Some(poll) = self.polls.get(id) else {
                return Reply::Response(Response::error(Status::NotFound, "no such poll"));
            };
            let page = match sub {
                "" | "/" => Some("/index"),
                "/present" => Some("/present"),
                _ => None,
            };
            if sub == "/get_new_vote" && handshake::is_upgrade_request(req) {
                return self.vote_socket(req, &client, &poll);
            }
            return match page {
                Some(p) if get => Reply::Response(self.page(req, &client, &poll, p)),
                Some(_) => Reply::Response(not_allowed(GET_HEAD)),
                None => self
                    .poll_route(req, body, peer, &client, &poll, sub)
                    .unwrap_or_else(|| {
                        Reply::Response(Response::error(Status::NotFound, "not found"))
                    }),
            };
        }
        if let Some(rest) = path.strip_prefix("/api/polls") {
            if rest.is_empty() || rest.starts_with('/') {
                return Reply::Response(self.api(req, &client, body, rest));
            }
        }
        let default = Arc::clone(self.polls.default_poll());
        if path == "/get_new_vote" && handshake::is_upgrade_request(req) {
            return self.vote_socket(req, &client, &default);
        }
        if let Some(reply) = self.poll_route(req, body, peer, &client, &default, path) {
            return reply;
        }
        let resp = match path {
            "/chatsocket" if handshake::is_upgrade_request(req) => {
                return self.upgrade(req, &client, super::live::Endpoint::Chat)
            }
            "/ticket" if req.method == "POST" => {
                self.vote(req, &client, body, "nid", Route::Ticket, &default)
            }
            "/ticket" => not_allowed("POST"),
            "/admin" if req.method == "POST" => self.admin_login(req, &client, body),
            _ if !get => not_allowed(GET_HEAD),
            "/" => self.file(req, "/home.html"),
            "/index" => self.page(req, &client, &default, "/index"),
            "/present" => self.page(req, &client, &default, "/present"),
            "/admin" => self.file(req, "/admin.html"),
            "/metrics" => self.metrics_page(),
            "/chat" => self.file(req, "/chat.html"),
            "/chatsocket" => Response::error(
                Status::UpgradeRequired,
                "this endpoint speaks WebSocket only",
            )
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13"),
            path => self.file(req, path),
        };
        Reply::Response(resp)
    }

    /// `/get_new_vote` upgraded to WebSocket, called from `route` itself: the handshake's
    /// SHA-1 is the deepest the thread of an idle subscriber ever goes, and one more frame
    /// under it cost one more resident stack page per connection (measured: 8 → 12 KiB at 500
    /// idle subscribers, the page found with a watchpoint on its first word).
    fn vote_socket(&self, req: &Request, client: &Client, poll: &Arc<Poll>) -> Reply {
        // Two calls, not nested: the handshake's deepest frame is the larger one's.
        match self.ws_votes(req, client, poll) {
            Ok(endpoint) => self.upgrade(req, client, endpoint),
            Err(r) => Reply::Response(r.closing()),
        }
    }

    /// What `/get_new_vote` upgraded to WebSocket serves. Not inlined, and not calling the
    /// upgrade itself: an idle subscriber's thread keeps every stack page its handshake
    /// touched, so the handshake's frames stay shallow.
    #[inline(never)]
    fn ws_votes(
        &self,
        req: &Request,
        client: &Client,
        poll: &Arc<Poll>,
    ) -> Result<super::live::Endpoint, Response> {
        let cursor = query(req).and_then(|q| cursor_of(&q))?;
        let caller = self.caller(req, client);
        Ok(super::live::Endpoint::Votes(Box::new(
            super::live::VoteStream {
                ip: client.ip,
                poll: Arc::clone(poll),
                cursor,
                voter: caller.voter,
                admin: caller.admin,
            },
        )))
    }

    /// The routes every poll has, `path` below the poll's own root: None for any other path.
    fn poll_route(
        &self,
        req: &Request,
        body: &[u8],
        peer: SocketAddr,
        client: &Client,
        poll: &Arc<Poll>,
        path: &str,
    ) -> Option<Reply> {
        let get = req.method == "GET" || req.method == "HEAD";
        let resp = match path {
            "/events" if req.method == "GET" => return Some(self.events(req, client, peer, poll)),
            // The stream's head, without a stream.
            "/events" if req.method == "HEAD" => Response::new(Status::Ok)
                .header("Content-Type", "text/event-stream; charset=utf-8")
                .header("Cache-Control", "no-store")
                .header("X-Accel-Buffering", "no")
                .streaming(),
            "/vote" if req.method == "POST" => {
                self.vote(req, client, body, "uid", Route::Vote, poll)
            }
            "/vote" => not_allowed("POST"),
            "/votes" | "/get_new_vote" | "/results.csv" | "/results.json" if !get => {
                not_allowed(GET_HEAD)
            }
            "/votes" => self.tally(req, client, poll),
            "/get_new_vote" => return Some(self.long_poll(req, client, poll)),
            "/results.csv" => self.export(req, client, poll, super::export::Format::Csv),
            "/results.json" => self.export(req, client, poll, super::export::Format::Json),
            _ => return None,
        };
        Some(Reply::Response(resp))
    }

    /// `GET /healthz` (alive: `200`, with details) and `GET /readyz` (`200` when not draining
    /// and the store takes votes, else `503` saying why); None for any other path. A Redis
    /// outage shows in `/healthz` but leaves `/readyz` alone: it is every instance's at once,
    /// and the pages they serve still work.
    #[inline(never)]
    fn health(&self, req: &Request) -> Option<Response> {
        let ready = match req.path.as_str() {
            "/healthz" => false,
            "/readyz" => true,
            _ => return None,
        };
        if req.method != "GET" && req.method != "HEAD" {
            return Some(not_allowed(GET_HEAD));
        }
        let draining = self.draining();
        let store = self.votes.store_usable();
        let (status, body) = if ready {
            let why = if draining {
                Some("draining: the server is shutting down".to_string())
            } else {
                store.as_ref().err().map(|e| format!("store: {e}"))
            };
            let status = match why {
                None => Status::Ok,
                Some(_) => Status::ServiceUnavailable,
            };
            let body = crate::json::to_object(|o| {
                o.bool("ready", why.is_none())
                    .bool("draining", draining)
                    .opt_str("reason", why.as_deref());
            });
            (status, body)
        } else {
            let body = crate::json::to_object(|o| {
                o.str("status", "ok")
                    .bool("draining", draining)
                    .str("store", self.store_kind)
                    .bool("store_usable", store.is_ok());
                if self.config.redis.is_some() {
                    let up = !self.votes.degraded();
                    o.object("redis", |r| {
                        r.bool("up", up);
                    });
                }
                o.u64("connections", self.admission.open() as u64);
            });
            (Status::Ok, body)
        };
        Some(Response::json(status, body).header("Cache-Control", "no-store"))
    }
}

impl App {
    /// The client behind `peer`: `peer` itself, unless it is one of `--trusted-proxy`; then
    /// what its forwarding headers say (`http::forwarded`).
    fn client_of(&self, req: &Request, peer: SocketAddr) -> Client {
        let proxies = &self.config.trusted_proxies;
        if !forwarded::trusted(proxies, peer.ip()) {
            return Client::direct(peer.ip());
        }
        let h = forwarded::Headers {
            forwarded: req.header_values("forwarded").collect(),
            x_forwarded_for: req.header_values("x-forwarded-for").collect(),
            x_forwarded_proto: req.header_values("x-forwarded-proto").collect(),
            x_forwarded_host: req.header_values("x-forwarded-host").collect(),
        };
        forwarded::resolve(peer.ip(), proxies, &h)
    }

    /// `/polls` (the base path without its slash): `308` to `/polls/`, so that the landing
    /// page's relative links resolve below the base.
    fn to_base(&self, req: &Request) -> Response {
        let to = match &req.query {
            Some(q) => format!("{}/?{q}", self.config.base_path),
            None => format!("{}/", self.config.base_path),
        };
        Response::text(Status::PermanentRedirect, format!("see {to}\n")).header("Location", to)
    }
}

impl App {
    /// `GET /metrics`: Prometheus text format.
    #[inline(never)]
    fn metrics_page(&self) -> Response {
        let (presence, _) = self.votes.presence();
        let polls = self.polls.all();
        let g = Gauges {
            http_connections: self.admission.open(),
            max_connections: self.config.limits.max_connections,
            ws_subscribers: polls.iter().map(|p| p.subscribers()).sum(),
            sse_streams: self.votes.local_connected()[1],
            presence,
            version: self.votes.version(),
            ws_buffered_bytes: self.ws_budget.used(),
            vote_ids: self.votes.id_stats(),
            polls: polls.len(),
            max_polls: self.config.limits_max_polls(),
            voters: polls.iter().map(|p| p.votes.voters() as u64).sum(),
            max_voters: self.config.max_voters,
        };
        Response::with_body(Status::Ok, "text/plain; version=0.0.4; charset=utf-8", {
            let mut text = self.metrics.render(&g);
            super::metrics::process::Process::read().render(&mut text);
            text
        })
        .header("Cache-Control", "no-store")
    }
}

/// The join address as a QR code (SVG markup, drawn by `qr`; nothing for an address too
/// long for any QR code).
fn qr_svg(join: &str) -> String {
    match crate::qr::QrCode::encode(join.as_bytes(), crate::qr::Ecc::M) {
        Ok(code) => code.to_svg(&format!("QR code: {join}")),
        Err(_) => String::new(),
    }
}

/// Where a poll's routes are: the base path for the default poll, `BASE/p/ID` for others.
fn poll_root(base: &str, poll: &Poll) -> String {
    if poll.id() == DEFAULT_ID {
        base.to_string()
    } else {
        format!("{base}/p/{}", poll.id())
    }
}

/// The answer to a vote that got no count.
pub fn vote_error(e: VoteError) -> Response {
    match e {
        VoteError::UnknownCandidate(uid) => Response::json(
            Status::NotFound,
            json::error_with_uid("unknown candidate", &uid, false),
        ),
        VoteError::Closed => Response::error(Status::Conflict, "poll closed"),
        VoteError::AlreadyVoted { uid } => Response::json(
            Status::Conflict,
            crate::json::to_object(|o| {
                o.str("error", "already voted")
                    .opt_str("uid", uid.as_deref());
            }),
        ),
        VoteError::NoVoter => Response::error(Status::BadRequest, &e.to_string()),
        VoteError::Deleted => Response::error(Status::NotFound, &e.to_string()),
        // Not counted (not stored, or no room for one more vote id or voter), or not known
        // to be: the client may retry, and with its vote id a retry counts at most once.
        e => {
            let r = match e {
                VoteError::OutcomeUnknown => {
                    Response::json(Status::ServiceUnavailable, json::outcome_unknown(None))
                }
                _ => Response::error(Status::ServiceUnavailable, &e.to_string()),
            };
            let wait = e.retry_after().unwrap_or_default().as_secs_f64().ceil();
            r.header("Retry-After", wait.max(1.0).to_string())
        }
    }
}

/// A form-encoded body's fields (`what` names it in the `415`); an empty body is allowed
/// without a `Content-Type` when `empty_ok`.
pub fn form_body<'a>(
    req: &Request,
    body: &'a [u8],
    what: &str,
    empty_ok: bool,
) -> Result<form::Pairs<'a>, Response> {
    let mime = req.header("content-type").unwrap_or("");
    let mime = mime.split(';').next().unwrap_or("").trim();
    if !empty_ok && !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(Response::error(
            Status::UnsupportedMediaType,
            &format!("send the {what} as application/x-www-form-urlencoded"),
        )
        .header("Accept-Post", "application/x-www-form-urlencoded"));
    }
    form::parse(body).map_err(|e| Response::error(Status::BadRequest, &format!("form: {e}")))
}

fn not_allowed(allow: &'static str) -> Response {
    Response::error(Status::MethodNotAllowed, "method not allowed").header("Allow", allow)
}

/// The decoded query string; a malformed one is a 400.
fn query(req: &Request) -> Result<form::Pairs<'_>, Response> {
    form::parse(req.query.as_deref().unwrap_or("").as_bytes())
        .map_err(|e| Response::error(Status::BadRequest, &format!("query string: {e}")))
}

/// `since` and `epoch` from a query; a malformed `since` is a 400.
fn cursor_of(q: &[form::Pair<'_>]) -> Result<Cursor, Response> {
    let since = match form::get(q, "since") {
        None | Some("") => None,
        Some(s) => Some(s.parse::<u64>().map_err(|_| {
            Response::error(Status::BadRequest, "'since' must be a version number")
        })?),
    };
    Ok(Cursor {
        since,
        epoch: form::get(q, "epoch").map(str::to_string),
        viewer: form::get(q, "viewer")
            .filter(|v| valid_viewer(v))
            .map(str::to_string),
    })
}

/// A `back` address for a no-JavaScript form: a path on this server, nothing else (an open
/// redirect would let any site bounce users through us).
fn local_path<'a>(back: &'a str, base: &str) -> Option<&'a str> {
    let ok = back.starts_with('/')
        && matches!(
            base_path::split(base, back.split('?').next().unwrap_or("")),
            Under::Inside(_)
        )
        && !back.starts_with("//")
        && back.len() <= 2048
        && back
            .bytes()
            .all(|b| (0x21..0x7f).contains(&b) && b != b'\\');
    ok.then_some(back)
}

impl App {
    /// A static file with its `ETag` (`304` on `If-None-Match`), or `404`.
    fn file(&self, req: &Request, path: &str) -> Response {
        self.files
            .respond(req, path)
            .unwrap_or_else(|| Response::error(Status::NotFound, "not found"))
    }

    /// A poll's page: the vote page (`/index`, `/p/ID`) or the presenter view (`present`).
    #[inline(never)]
    fn page(&self, req: &Request, client: &Client, poll: &Arc<Poll>, which: &str) -> Response {
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
                        Status::BadRequest,
                        &format!(
                            "unknown transport '{t}' (use one of {})",
                            TRANSPORTS.join(", ")
                        ),
                    )
                }
            },
        };
        let base = &self.config.base_path;
        let root = poll_root(base, poll);
        if which == "/present" {
            return self.present(req, client, poll, &root);
        }
        // Where the no-JavaScript forms come back to: this page, as a local path (an
        // absolute-form request target names the host too).
        let back: Cow<str> = match &req.query {
            Some(q) => Cow::Owned(format!("{}?{q}", req.path)),
            None => Cow::Borrowed(&req.path),
        };
        let caller = self.caller(req, client);
        let voted = caller
            .voter
            .as_deref()
            .and_then(|v| poll.votes.voted_for(v));
        // Rendered on every request: caching the page per version was measured (get_index,
        // 2×3 runs side by side) and gave no gain beyond the noise.
        let snap = poll.votes.shared_snapshot();
        let (counts, pv) = poll.votes.presence();
        let own: Cow<str> = match (poll.id() == DEFAULT_ID, base.is_empty()) {
            (true, true) => Cow::Borrowed("/index"),
            (true, false) => Cow::Owned(format!("{base}/index")),
            (false, _) => Cow::Borrowed(&root),
        };
        let page = Page {
            transport,
            title: &poll.meta.question,
            base,
            back: &back,
            presence: &counts,
            presence_version: pv,
            root: &root,
            page: &own,
            visible: poll.visible_to(caller.voter.as_deref(), caller.admin),
            voted: voted.as_deref(),
            mode: poll.meta.mode.name(),
            results: poll.meta.results.name(),
            join: "",
            qr: "",
        };
        let resp = pages::html_headers(Response::html(
            Status::Ok,
            self.template.render(&snap, &page),
        ))
        .header("Cache-Control", "no-store");
        // A poll that counts voters gives the page its voter now, so that its tabs, its
        // WebSocket and its first vote are one voter.
        if poll.counts_voters() && caller.voter.is_none() {
            if let Ok((_, cookie)) = self.new_voter(client) {
                return resp.header("Set-Cookie", cookie);
            }
        }
        resp
    }

    /// The presenter view: the question, big live bars (every count for the admin), the join
    /// address in large letters and its QR code, drawn here as SVG.
    #[inline(never)]
    fn present(&self, req: &Request, client: &Client, poll: &Arc<Poll>, root: &str) -> Response {
        let caller = self.caller(req, client);
        let own = if poll.id() == DEFAULT_ID {
            format!("{}/index", self.config.base_path)
        } else {
            root.to_string()
        };
        let join = match &self.config.public_url {
            Some(u) => format!(
                "{u}{}",
                own.strip_prefix(&self.config.base_path).unwrap_or(&own)
            ),
            None => {
                let scheme = match client.proto {
                    Some(Proto::Https) => "https",
                    _ => "http",
                };
                let host = own_authority(req, client).unwrap_or("localhost");
                format!("{scheme}://{host}{own}")
            }
        };
        let qr = qr_svg(&join);
        let snap = poll.votes.shared_snapshot();
        let (counts, pv) = poll.votes.presence();
        let page = Page {
            transport: TRANSPORTS[0],
            title: &poll.meta.question,
            base: &self.config.base_path,
            back: &own,
            presence: &counts,
            presence_version: pv,
            root,
            page: &own,
            visible: poll.visible_to(None, caller.admin),
            voted: None,
            mode: poll.meta.mode.name(),
            results: poll.meta.results.name(),
            join: &join,
            qr: &qr,
        };
        pages::html_headers(Response::html(
            Status::Ok,
            self.presenter.render(&snap, &page),
        ))
        .header("Cache-Control", "no-store")
    }

    /// `POST /vote` (`uid`) and `POST /ticket` (`nid`): the field from a form body, or else
    /// from the query string.
    #[inline(never)]
    fn vote(
        &self,
        req: &Request,
        client: &Client,
        body: &[u8],
        field: &str,
        route: Route,
        poll: &Poll,
    ) -> Response {
        // Cross-site request forgery: a page elsewhere may make a browser post here, but the
        // browser then names that page's origin. The twin of the WebSocket origin check.
        if !self.origin_allowed(req, client) {
            return Response::error(
                Status::Forbidden,
                "cross-origin vote refused (Origin does not match Host)",
            );
        }
        let from_body = match form_body(req, body, "vote", body.is_empty()) {
            Ok(p) => p,
            Err(r) => return r,
        };
        let from_query = match query(req) {
            Ok(q) => q,
            Err(r) => return r,
        };
        let Some(id) = form::get(&from_body, field).or_else(|| form::get(&from_query, field))
        else {
            return Response::error(Status::BadRequest, &format!("missing form field '{field}'"));
        };
        if !valid_id(id) {
            return Response::error(Status::BadRequest, &format!("malformed '{field}'"));
        }
        // The client's id for this vote: a retry with it counts once (exactly-once effect).
        let vote_id =
            form::get(&from_body, "vote_id").or_else(|| form::get(&from_query, "vote_id"));
        if vote_id.is_some_and(|v| !valid_vote_id(v)) {
            return Response::error(Status::BadRequest, "malformed 'vote_id'");
        }
        // A no-JavaScript form names the page to go back to: answer with a redirect there
        // (303: the browser follows with a GET, so a reload does not vote again).
        let back =
            form::get(&from_body, "back").and_then(|b| local_path(b, &self.config.base_path));
        // Who votes: the voter cookie, or (in a poll that counts voters) a new one.
        let caller = self.caller(req, client);
        let mut cookie = None;
        let voter = match caller.voter {
            None if poll.counts_voters() => match self.new_voter(client) {
                Ok((v, c)) => {
                    cookie = Some(c);
                    Some(v)
                }
                Err(e) => return Response::error(Status::InternalServerError, &e.to_string()),
            },
            v => v,
        };
        if let Err(wait) = self.rate_limited(client.ip, voter.as_deref()) {
            let secs = wait.as_secs_f64().ceil().max(1.0);
            return Response::error(Status::TooManyRequests, "too many votes: slow down")
                .header("Retry-After", secs.to_string());
        }
        let voted = poll.votes.cast(id, vote_id, voter.as_deref()).map(|v| {
            self.metrics.vote(route, v.replayed);
            v.change
        });
        if voted.is_ok() {
            if let Some(v) = &voter {
                poll.voted(v);
            }
        }
        let visible = poll.visible_to(voter.as_deref(), caller.admin);
        let resp = match voted {
            Ok(_) if back.is_some() => {
                let to = back.unwrap_or("/index");
                Response::text(Status::SeeOther, format!("vote counted; see {to}\n"))
                    .header("Location", to.to_string())
            }
            Ok(change) => Response::json(
                Status::Ok,
                json::vote_result(&change, &poll.votes.epoch(), visible),
            ),
            Err(e) => vote_error(e),
        };
        match cookie {
            Some(c) => resp.header("Set-Cookie", c),
            None => resp,
        }
    }

    /// `--vote-rate`: takes one vote from the client's address and voter, or says how long to
    /// wait.
    pub fn rate_limited(&self, ip: IpAddr, voter: Option<&str>) -> Result<(), Duration> {
        let Some(rate) = &self.rate else {
            return Ok(());
        };
        let mut keys = vec![Key::addr(ip)];
        keys.extend(voter.map(|v| Key::Voter(v.to_string())));
        rate.take(&keys, std::time::Instant::now())
    }

    /// `GET /votes`: the whole tally. The ETag is the tally's epoch and version, so a poller
    /// asking `If-None-Match` gets a bodiless `304` while nothing changed.
    #[inline(never)]
    fn tally(&self, req: &Request, client: &Client, poll: &Poll) -> Response {
        let q = match query(req) {
            Ok(q) => q,
            Err(r) => return r,
        };
        let votes = &poll.votes;
        let polling = form::get(&q, "transport") == Some("poll");
        if polling {
            self.seen(&q, Kind::Poll, client.ip, votes);
            self.metrics.request(Kind::Poll);
        }
        // An ETag taken on a faster instance (several behind one balancer): not answered
        // with a tally older than it.
        if let Some((epoch, version)) = req
            .header("if-none-match")
            .and_then(|t| {
                t.trim()
                    .trim_start_matches("W/")
                    .trim_matches('"')
                    .split_once('-')
            })
            .and_then(|(e, rest)| Some((e, rest.split('-').next()?.parse::<u64>().ok()?)))
        {
            votes.await_cursor(version, Some(epoch));
        }
        let caller = self.caller(req, client);
        let visible = poll.visible_to(caller.voter.as_deref(), caller.admin);
        let snap = votes.shared_snapshot();
        let (counts, pv) = votes.presence();
        // The cursor, plus the presence version (a changed viewer count is news to a poller)
        // and whether the counts were shown (a reveal is news too).
        let seen = if visible { "" } else { "-h" };
        let etag = format!("\"{}-{}-{pv}{seen}\"", snap.epoch, snap.version);
        let fresh = req
            .header_values("if-none-match")
            .flat_map(|v| v.split(','))
            .map(str::trim)
            // RFC 9110 §13.1.2: If-None-Match uses the weak comparison.
            .map(|t| t.strip_prefix("W/").unwrap_or(t))
            .any(|t| t == etag || t == "*");
        let resp = if fresh {
            Response::new(Status::NotModified)
        } else {
            let body = if poll.id() == DEFAULT_ID {
                json::tally(&snap, &counts, pv, visible)
            } else {
                crate::json::to_object(|o| {
                    json::poll_fields(o, &poll.meta, &snap, visible);
                    json::presence_members(o, &counts, pv);
                })
            };
            if polling {
                self.metrics.sent(Kind::Poll, 1, body.len() as u64, 1);
            }
            Response::with_body(Status::Ok, "application/json; charset=utf-8", body)
        };
        resp.header("ETag", etag)
            .header("Cache-Control", "no-cache")
    }

    /// Counts a polling or long-polling viewer that named itself (up to the per-address cap:
    /// made-up ids from one client cannot crowd out everyone else).
    fn seen(&self, q: &[form::Pair<'_>], kind: Kind, client: IpAddr, votes: &Votes) {
        if let Some(id) = form::get(q, "viewer").filter(|id| valid_viewer(id)) {
            let cap = self.config.limits.max_viewers_per_ip;
            votes.viewer_seen(id, kind, client, cap);
        }
    }

    /// `GET /events`: hands the connection to an event stream.
    #[inline(never)]
    fn events(&self, req: &Request, client: &Client, peer: SocketAddr, poll: &Arc<Poll>) -> Reply {
        let q = match query(req) {
            Ok(q) => q,
            Err(r) => return Reply::Response(r),
        };
        // The browser's own reconnect sends the last id it saw; it wins over the URL's.
        let cursor = match req.header("last-event-id") {
            Some(id) => Cursor {
                viewer: cursor_of(&q).ok().and_then(|c| c.viewer),
                ..cursor::parse_event_id(id)
            },
            None => match cursor_of(&q) {
                Ok(c) => c,
                Err(r) => return Reply::Response(r),
            },
        };
        let head = Response::new(Status::Ok)
            .header("Content-Type", "text/event-stream; charset=utf-8")
            .header("Cache-Control", "no-store")
            // Tells nginx-style proxies not to buffer the stream.
            .header("X-Accel-Buffering", "no")
            .streaming();
        let app = self.shared();
        let caller = self.caller(req, client);
        let poll = Arc::clone(poll);
        Reply::Upgrade(
            head,
            Box::new(move |stream, _| -> crate::http::conn::Run {
                Box::new(move || sse::serve(&app, &poll, &caller, cursor, stream, peer))
            }),
        )
    }

    /// `GET /get_new_vote[?since=V&epoch=E]`: answers at once when the client is behind,
    /// else waits for the next vote or the timeout (see [`super::longpoll`]). Without
    /// `since`, waits for the next vote like the tutorial did.
    #[inline(never)]
    fn long_poll(&self, req: &Request, client: &Client, poll: &Arc<Poll>) -> Reply {
        let q = match query(req) {
            Ok(q) => q,
            Err(r) => return Reply::Response(r),
        };
        let cursor = match cursor_of(&q) {
            Ok(c) => c,
            Err(r) => return Reply::Response(r),
        };
        let pv = match form::get(&q, "pv").map(str::parse::<u64>) {
            None => None,
            Some(Ok(p)) => Some(p),
            Some(Err(_)) => {
                return Reply::Response(Response::error(
                    Status::BadRequest,
                    "'pv' must be a presence version",
                ))
            }
        };
        let votes = &poll.votes;
        self.seen(&q, Kind::LongPoll, client.ip, votes);
        self.metrics.request(Kind::LongPoll);
        let now = votes.version();
        let since = cursor.since.unwrap_or(now);
        let waited = since == now && cursor.epoch.as_deref().is_none_or(|e| e == votes.epoch());
        let ask = super::longpoll::Ask {
            since,
            epoch: cursor.epoch,
            pv,
            was_hidden: form::get(&q, "hidden") == Some("1"),
            caller: self.caller(req, client),
            waited,
            parkable: req.method == "GET",
        };
        self.long_poll_reply(poll, ask)
    }

    /// Validates a WebSocket handshake and the browser's `Origin`, and hands the connection to
    /// the endpoint after the `101`.
    fn upgrade(&self, req: &Request, client: &Client, endpoint: super::live::Endpoint) -> Reply {
        let accept = match handshake::validate(req) {
            Ok(a) => a,
            Err(e) => return refused_upgrade(&e),
        };
        if !self.origin_allowed(req, client) {
            return cross_origin_upgrade();
        }
        let resp = Response::new(Status::SwitchingProtocols)
            .header("Upgrade", "websocket")
            .header("Connection", "Upgrade")
            .header("Sec-WebSocket-Accept", accept);
        let app = self.shared();
        Reply::Upgrade(
            resp,
            Box::new(move |stream, leftover| super::live::serve(app, endpoint, stream, leftover)),
        )
    }

    /// `421 Misdirected Request` (RFC 9110 §15.5.20) for a Host (or absolute-form authority)
    /// that is not one of [`host_names`]; already checked for syntax by the parser. Behind a
    /// trusted proxy that names the Host the browser used, that one is checked instead (a
    /// malformed one is `400`).
    fn host_allowed(&self, req: &Request, client: &Client) -> Result<(), Response> {
        if let Some(h) = &client.host {
            if split_host(h).is_err() {
                return Err(Response::error(
                    Status::BadRequest,
                    "malformed forwarded host (X-Forwarded-Host or Forwarded host=)",
                )
                .closing());
            }
        }
        // HTTP/1.0 may come without Host: it names no one else either.
        let Some(authority) = own_authority(req, client) else {
            return Ok(());
        };
        let Ok((host, port)) = split_host(authority) else {
            return Err(misdirected(authority));
        };
        // No allocation per request: the names are compared where they are.
        let c = &self.config;
        let bind = c.addr;
        let is_bind = port_matches(Some(bind.port()), port) && ip_of(host) == Some(bind.ip());
        if is_bind
            || LOCAL_NAMES.iter().any(|n| host_matches(n, host, port))
            || c.hosts.iter().any(|n| host_matches(n, host, port))
        {
            return Ok(());
        }
        Err(misdirected(host))
    }

    /// A request without `Origin` (curl, scripts) is allowed. A browser's `Origin` must name
    /// exactly the request's own authority (already on the allowlist): same host, same port
    /// (a missing port is the scheme's default), scheme `http` or `https` (TLS may end in a
    /// proxy in front, which forwards the same Host) — or be listed with `--allow-origin`.
    /// `null` (sandboxed frames, some redirects) names no origin we can trust: refused.
    ///
    /// Behind a trusted proxy the authority is the Host the browser used (`X-Forwarded-Host`,
    /// `Forwarded` `host=`), and when the proxy names the scheme (`X-Forwarded-Proto`, `proto=`)
    /// the Origin must have that scheme.
    pub fn origin_allowed(&self, req: &Request, client: &Client) -> bool {
        let Some(origin) = req.header("origin") else {
            return true;
        };
        // A browser sends one Origin (RFC 6454 §7); more than one names no single origin.
        if req.header_values("origin").nth(1).is_some() {
            return false;
        }
        let origin = origin.trim().trim_end_matches('/');
        if self
            .config
            .allow_origins
            .iter()
            .any(|a| a.eq_ignore_ascii_case(origin))
        {
            return true;
        }
        own_authority(req, client).is_some_and(|own| same_origin(origin, own, client.proto))
    }
}

// ---------------------------------------------------------------------------------------------
// Host allowlist and origins

/// The names every server answers to, whatever `--host` says.
const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// The authority a request names: an absolute-form target's (RFC 9112 §3.2.2: it replaces
/// Host), else the Host header; None for HTTP/1.0 without Host.
fn authority(req: &Request) -> Option<&str> {
    target_authority(&req.target).or_else(|| req.header("host").map(str::trim))
}

/// The authority the browser named: a trusted proxy's forwarded host, else [`authority`].
fn own_authority<'a>(req: &'a Request, client: &'a Client) -> Option<&'a str> {
    client.host.as_deref().or_else(|| authority(req))
}

/// What the server answers to: `localhost`, `127.0.0.1`, `[::1]` (any port), the bind address
/// with its port, then each `--host` entry (`*`: any name).
pub fn host_names(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = LOCAL_NAMES.iter().map(|n| n.to_string()).collect();
    names.push(config.addr.to_string());
    names.extend(config.hosts.iter().cloned());
    names
}

/// Does allowlist entry `entry` (`*`, `NAME` or `NAME:PORT`) cover host `host` with `port`?
/// Names compare case-insensitively and without a trailing dot (`Example.COM.` is
/// `example.com`), IPv6 literals by address. An entry without a port matches any port; one
/// with a port matches that port, and a Host without one only when it is 80 or 443 (the
/// defaults of the two schemes a browser may have used in front of us).
fn host_matches(entry: &str, host: &str, port: Option<u16>) -> bool {
    if entry == "*" {
        return true;
    }
    let Ok((name, want)) = split_host(entry) else {
        return false;
    };
    port_matches(want, port) && same_host(name, host)
}

/// An entry's port `want` against a Host's `port` (see [`host_matches`]).
fn port_matches(want: Option<u16>, port: Option<u16>) -> bool {
    match (want, port) {
        (None, _) => true,
        (Some(w), Some(p)) => w == p,
        (Some(w), None) => w == 80 || w == 443,
    }
}

/// The IP address a host names literally (`127.0.0.1`, `[::1]`), if it is one.
fn ip_of(host: &str) -> Option<IpAddr> {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(lit) => lit.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => host.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

/// Two hosts as compared: ASCII case-insensitive, a trailing dot ignored, IP literals by
/// address (`[0:0::1]` is `[::1]`).
fn same_host(a: &str, b: &str) -> bool {
    if let (Some(x), Some(y)) = (ip_of(a), ip_of(b)) {
        return x == y;
    }
    let a = a.strip_suffix('.').unwrap_or(a);
    let b = b.strip_suffix('.').unwrap_or(b);
    a.eq_ignore_ascii_case(b)
}

/// Does `origin` (`scheme://host[:port]`, as a browser serialises it) name `authority`,
/// reached over `proto` when a trusted proxy said which (else either scheme)?
fn same_origin(origin: &str, authority: &str, proto: Option<Proto>) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    if proto.is_some_and(|p| !scheme.eq_ignore_ascii_case(p.as_str())) {
        return false;
    }
    let default = if scheme.eq_ignore_ascii_case("http") {
        80
    } else if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        return false;
    };
    // `split_host` refuses userinfo and paths, so `http://ours@evil.example` is no match.
    let (Ok((oh, op)), Ok((hh, hp))) = (split_host(rest), split_host(authority)) else {
        return false;
    };
    op.unwrap_or(default) == hp.unwrap_or(default) && same_host(oh, hh)
}

/// The `421` for a name we do not answer to, saying how to answer to it.
fn misdirected(host: &str) -> Response {
    Response::error(
        Status::MisdirectedRequest,
        &format!(
            "this server does not answer to the name '{host}' (start it with --host {host} to allow it)"
        ),
    )
    .closing()
}

/// The answer to a handshake that breaks RFC 6455 §4.2.1. Out of line, like
/// [`cross_origin_upgrade`]: the error responses would otherwise widen `upgrade`'s frame,
/// which sits under the handshake's SHA-1, the deepest any connection thread goes (each stack
/// page it touches stays resident under an idle WebSocket; `idle_memory_5k`).
#[cold]
#[inline(never)]
fn refused_upgrade(e: &handshake::HandshakeError) -> Reply {
    let mut r = Response::error(e.status(), &e.to_string());
    if e.status() == Status::UpgradeRequired {
        r = r
            .header("Sec-WebSocket-Version", "13")
            .header("Upgrade", "websocket");
    }
    Reply::Response(r.closing())
}

/// `403` for a browser's WebSocket from another origin (see [`refused_upgrade`]).
#[cold]
#[inline(never)]
fn cross_origin_upgrade() -> Reply {
    Reply::Response(
        Response::error(
            Status::Forbidden,
            "cross-origin WebSocket refused (Origin does not match Host)",
        )
        .closing(),
    )
}

#[cfg(test)]
mod host_tests {
    use super::*;

    #[test]
    fn allowlist_entries_match_by_name_and_port() {
        for (entry, host, port, want) in [
            ("*", "anything", None, true),
            ("localhost", "LOCALHOST.", Some(1), true),
            ("localhost", "localhost.evil", None, false),
            ("Example.COM.", "example.com", None, true),
            ("a:8080", "a", Some(8080), true),
            ("a:8080", "a", Some(8081), false),
            ("a:8080", "a", None, false),
            ("a:80", "a", None, true),
            ("a:443", "a", None, true),
            ("[::1]", "[0:0::1]", Some(5), true),
            ("[::1]:5", "[::1]", Some(6), false),
            ("[::]:5", "[::]", Some(5), true),
            ("127.0.0.1", "127.000.000.001", None, false),
            ("v.example", "v.example..", None, false),
            ("127.0.0.1", "127.0.0.2", None, false),
        ] {
            assert_eq!(
                host_matches(entry, host, port),
                want,
                "{entry} vs {host} {port:?}"
            );
        }
    }

    #[test]
    fn origins_name_scheme_host_and_port() {
        for (origin, authority, want) in [
            ("http://a:1", "a:1", true),
            ("https://a:1", "a:1", true),
            ("HTTP://A:1", "a:1", true),
            ("http://a", "a", true),
            ("http://a", "a:80", true),
            ("https://a", "a:443", true),
            ("https://a", "a", true),
            ("https://a", "a:80", false),
            ("http://a:2", "a:1", false),
            ("http://a", "a:8080", false),
            ("http://b:1", "a:1", false),
            ("ws://a:1", "a:1", false),
            ("http://a:1@b", "a:1", false),
            ("http://u@a:1", "a:1", false),
            ("http://a:1/x", "a:1", false),
            ("null", "a", false),
            ("http://[::1]:3", "[::1]:3", true),
        ] {
            assert_eq!(
                same_origin(origin, authority, None),
                want,
                "{origin} vs {authority}"
            );
        }
    }

    #[test]
    fn a_forwarded_scheme_decides_the_origins_scheme() {
        let https = Some(Proto::Https);
        let http = Some(Proto::Http);
        for (origin, authority, proto, want) in [
            ("https://vote.example", "vote.example", https, true),
            ("http://vote.example", "vote.example", https, false),
            ("https://vote.example", "vote.example", http, false),
            ("http://vote.example", "vote.example", http, true),
            (
                "https://vote.example:8443",
                "vote.example:8443",
                https,
                true,
            ),
            ("https://vote.example", "vote.example:443", https, true),
            ("HTTPS://vote.example", "vote.example", https, true),
        ] {
            assert_eq!(
                same_origin(origin, authority, proto),
                want,
                "{origin} vs {authority} {proto:?}"
            );
        }
    }

    #[test]
    fn back_paths_stay_local_and_under_the_base() {
        assert_eq!(local_path("/index?x=1", ""), Some("/index?x=1"));
        assert_eq!(local_path("//evil.example/", ""), None);
        assert_eq!(local_path("http://evil.example/", ""), None);
        assert_eq!(
            local_path("/polls/index?t=ws", "/polls"),
            Some("/polls/index?t=ws")
        );
        assert_eq!(local_path("/index", "/polls"), None);
        assert_eq!(local_path("/pollsx/index", "/polls"), None);
    }
}
