//! The two WebSocket endpoints: `/get_new_vote` (votes in, the live tally out) and
//! `/chatsocket` (echo). Each joins its endpoint on the thread that read its upgrade request,
//! then runs on a thread of its own (see `server::run_upgraded`).

use std::collections::HashMap;
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::cursor::Cursor;
use super::fanout::{Subscriber, Written};
use super::metrics::{Metrics, Route};
use super::polls::Poll;
use super::presence::Kind;
use super::votes::{valid_vote_id, VoteError};
use super::{chat, json, App};
use crate::config::valid_id;
use crate::http::conn::Run;
use crate::ws::conn::{self, Ended, Sender, Settings};
use crate::ws::frame::{CloseCode, OpCode};
use crate::ws::message::Message;

pub enum Endpoint {
    /// A poll's live tally. Boxed: the endpoint rides on the frames under every idle
    /// subscriber's read loop, where each byte is resident for the connection's life.
    Votes(Box<VoteStream>),
    Chat,
}

/// A poll's live tally, resuming from the client's cursor; `voter` is the upgrade's voter
/// cookie (votes over the socket follow the poll's rules with it), `admin` whether it
/// carried the admin cookie (the presenter sees hidden results).
pub struct VoteStream {
    /// The client's address (`--vote-rate`).
    pub ip: std::net::IpAddr,
    pub poll: Arc<Poll>,
    pub cursor: Cursor,
    pub voter: Option<String>,
    pub admin: bool,
}

/// Joins the endpoint (for a poll's tally: subscribes and writes the resume), here, on the
/// thread that read the upgrade request; returns the rest, the connection's read loop, to run
/// on a thread of its own. What joining allocates and frees for a moment (the resume, the
/// snapshot it is encoded from) is freed by this thread, which ends before the connection
/// goes idle: glibc keeps a thread's freed small blocks in that thread's own cache while it
/// lives, and they would stay resident under every idle subscriber (measured: 1.6 KiB each).
pub fn serve(app: Arc<App>, endpoint: Endpoint, stream: Arc<TcpStream>, leftover: Vec<u8>) -> Run {
    let l = &app.config.limits;
    let settings = Settings {
        max_message: match endpoint {
            Endpoint::Votes(_) => l.ws_max_vote_message,
            Endpoint::Chat => l.ws_max_chat_message,
        },
        ping_interval: l.ws_ping_interval,
        pong_timeout: l.ws_pong_timeout,
    };
    match endpoint {
        Endpoint::Votes(v) => {
            let Some(joined) = join(
                &app,
                &v.poll,
                &stream,
                &v.cursor,
                v.voter.as_deref(),
                v.admin,
            ) else {
                return Box::new(|| 0);
            };
            Box::new(move || {
                let VoteStream {
                    ip,
                    poll,
                    voter,
                    admin,
                    ..
                } = *v;
                let sub = &joined.sub;
                if joined.resumed {
                    let mut ep = VoteSocket {
                        app: &app,
                        ip,
                        poll: &poll,
                        voter: voter.as_deref(),
                        admin,
                        metrics: &app.metrics,
                    };
                    let ended = conn::run(
                        &stream,
                        leftover,
                        &sub.tx,
                        &settings,
                        &app.ws_budget,
                        &mut ep,
                    );
                    app.metrics.ws_closed(close_code(&ended));
                }
                sub.shutdown();
                let sent = sub.tx.bytes_sent();
                // Unsubscribed, no longer a viewer, unlisted — before the poll is let go.
                drop(joined);
                sent
            })
        }
        Endpoint::Chat => Box::new(move || {
            let l = &app.config.limits;
            let Ok(tx) = Sender::new(Arc::clone(&stream), l.write_timeout, false, ()) else {
                return 0;
            };
            let tx = Arc::new(tx);
            let _open = app.sockets.open(Arc::clone(&tx) as Arc<dyn GoingAway>);
            if app.votes.ending() {
                tx.close_now(GOING_AWAY, SHUTTING_DOWN);
            }
            let mut ep = chat::Echo;
            app.metrics.chat(true);
            let ended = conn::run(&stream, leftover, &tx, &settings, &app.ws_budget, &mut ep);
            app.metrics.chat(false);
            app.metrics.ws_closed(close_code(&ended));
            tx.shutdown();
            tx.bytes_sent()
        }),
    }
}

/// A vote socket's place in its poll, held while it is open: listed for a shutdown, counted
/// as a viewer, subscribed to the hub, resumed.
struct Joined {
    // Dropped in this order: unsubscribed, then no longer a viewer, then unlisted.
    _subscription: super::hub::Subscription,
    _viewer: super::votes::Viewer,
    _open: Open,
    sub: Arc<Subscriber>,
    /// The resume went out (else the socket is closed at once).
    resumed: bool,
}

/// Joins `poll`'s live tally.
fn join(
    app: &App,
    poll: &Poll,
    stream: &Arc<TcpStream>,
    cursor: &Cursor,
    voter: Option<&str>,
    admin: bool,
) -> Option<Joined> {
    let hub = poll.hub().ok()?;
    let sees = poll.visible_to(voter, admin);
    let sub = Subscriber::open(
        Arc::clone(stream),
        app.config.limits.write_timeout,
        voter.map(str::to_string),
        sees,
        admin,
    )
    .ok()?;
    let open = app.sockets.open(Arc::clone(&sub) as Arc<dyn GoingAway>);
    // Opened as a shutdown began: after its close-all, so it closes itself.
    if poll.votes.ending() {
        sub.tx.close_now(GOING_AWAY, SHUTTING_DOWN);
    }
    let viewer = poll.votes.viewer(Kind::Ws, cursor.viewer.as_deref());
    // Subscribe before the resume, so no vote falls between the two (broadcasts wait until
    // the resume is written; see `Subscriber::offer`).
    let subscription = hub.subscribe(Arc::clone(&sub));
    let resumed = hub.send_resume(&sub, cursor).is_ok();
    Some(Joined {
        _subscription: subscription,
        _viewer: viewer,
        _open: open,
        sub,
        resumed,
    })
}

/// The close code a shutdown closes WebSockets with (RFC 6455 §7.4.1: going away).
pub const GOING_AWAY: u16 = 1001;
/// The reason it gives.
pub const SHUTTING_DOWN: &str = "server shutting down";

/// What a shutdown does to one open WebSocket.
pub trait GoingAway: Send + Sync {
    /// Sends it a close frame with `code` without waiting (see [`Sender::close_now`]);
    /// false when its lock is taken (try again).
    fn close_now(&self, code: u16, reason: &str) -> bool;
    /// Ends it for both directions.
    fn kill(&self);
}

impl<T: Send> GoingAway for Sender<T> {
    fn close_now(&self, code: u16, reason: &str) -> bool {
        Sender::close_now(self, code, reason)
    }
    fn kill(&self) {
        self.shutdown();
    }
}

impl GoingAway for Subscriber {
    fn close_now(&self, code: u16, reason: &str) -> bool {
        self.tx.close_now(code, reason)
    }
    fn kill(&self) {
        self.shutdown();
    }
}

/// Every open WebSocket (votes and chat), so that a shutdown can close each with 1001.
#[derive(Default)]
pub struct Sockets {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<dyn GoingAway>>>,
}

/// A WebSocket's place in [`Sockets`]; dropping it takes it out.
pub struct Open {
    sockets: Arc<Sockets>,
    id: u64,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.sockets.lock().remove(&self.id);
    }
}

/// How often [`Sockets::close_all`] tries again a socket whose lock was taken.
const CLOSE_RETRY: Duration = Duration::from_millis(5);

impl Sockets {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<dyn GoingAway>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lists an open WebSocket until the guard is dropped.
    pub fn open(self: &Arc<Self>, socket: Arc<dyn GoingAway>) -> Open {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, socket);
        Open {
            sockets: Arc::clone(self),
            id,
        }
    }

    /// How many are open.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sends every open WebSocket a close frame with `code` (none waits on its peer); one
    /// whose lock stays taken until `deadline` is shut down instead. Returns how many were
    /// sent a close frame (or shut down).
    pub fn close_all(&self, code: u16, reason: &str, deadline: Instant) -> usize {
        let mut left: Vec<Arc<dyn GoingAway>> = self.lock().values().cloned().collect();
        let all = left.len();
        loop {
            left.retain(|s| !s.close_now(code, reason));
            if left.is_empty() {
                return all;
            }
            if Instant::now() >= deadline {
                for s in &left {
                    s.kill();
                }
                return all;
            }
            std::thread::sleep(CLOSE_RETRY);
        }
    }

    /// Ends every WebSocket still open for both directions (their peers never answered).
    pub fn kill_all(&self) {
        let all: Vec<Arc<dyn GoingAway>> = self.lock().values().cloned().collect();
        for s in all {
            s.kill();
        }
    }
}

/// The close code a connection ended with (0: none, the peer vanished).
fn close_code(e: &Ended) -> u16 {
    match e {
        Ended::PeerClosed(code) => code.unwrap_or(1005),
        Ended::WeClosed(code) => *code,
        Ended::Vanished => 0,
    }
}

/// `/get_new_vote` over WebSocket: a text message naming a candidate is a vote.
struct VoteSocket<'a> {
    app: &'a App,
    ip: std::net::IpAddr,
    poll: &'a Poll,
    /// The upgrade's voter cookie. A poll that counts voters refuses votes without one (the
    /// page has one: its first HTTP vote, or its page load, set it).
    voter: Option<&'a str>,
    admin: bool,
    metrics: &'a Metrics,
}

impl conn::Endpoint<Written> for VoteSocket<'_> {
    fn on_message(&mut self, msg: Message, tx: &Sender<Written>) -> Result<(), (u16, String)> {
        let Message::Text(text) = msg else {
            return Err((
                CloseCode::Unsupported.as_u16(),
                "votes are text messages".into(),
            ));
        };
        // A vote is the candidate's id (`1`, the tutorial's form), or
        // `{"uid":"1","vote_id":"…"}` when the client wants a retry to count once.
        let text = text.trim();
        let (uid, vote_id) = if text.starts_with('{') {
            match json::parse_flat_object(text) {
                Some(fields) => {
                    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                    (get("uid").unwrap_or_default(), get("vote_id"))
                }
                None => (String::new(), None),
            }
        } else {
            (text.to_string(), None)
        };
        let reply = if !valid_id(&uid) {
            Some(json::error_with_uid("malformed candidate id", &uid, true))
        } else if vote_id.as_deref().is_some_and(|v| !valid_vote_id(v)) {
            Some(json::error_with_uid("malformed vote_id", &uid, true))
        } else if self.app.rate_limited(self.ip, self.voter).is_err() {
            Some(json::error_with_uid(
                "too many votes: slow down",
                &uid,
                true,
            ))
        } else {
            let votes = &self.poll.votes;
            match votes.cast(&uid, vote_id.as_deref(), self.voter) {
                // The broadcaster delivers the new count to everyone, this client included;
                // a client that named its vote also gets an acknowledgement (the same one
                // again for a retry).
                Ok(v) => {
                    self.metrics.vote(Route::WebSocket, v.replayed);
                    if let Some(voter) = self.voter {
                        self.poll.voted(voter);
                    }
                    let visible = self.poll.visible_to(self.voter, self.admin);
                    vote_id.map(|id| json::ack(&id, &v.change, v.replayed, visible))
                }
                Err(VoteError::UnknownCandidate(uid)) => {
                    Some(json::error_with_uid("unknown candidate", &uid, true))
                }
                Err(VoteError::Closed) => Some(json::error_with_uid("poll closed", &uid, true)),
                Err(VoteError::AlreadyVoted { .. }) => {
                    Some(json::error_with_uid("already voted", &uid, true))
                }
                Err(VoteError::VotersFull) => Some(json::error_with_uid(
                    "too many voters, try again later",
                    &uid,
                    true,
                )),
                Err(VoteError::NoVoter) => Some(json::error_with_uid(
                    "this poll counts one vote per voter: load its page first (no voter cookie)",
                    &uid,
                    true,
                )),
                Err(VoteError::NotStored(_)) => Some(json::error_with_uid(
                    "vote not stored, try again",
                    &uid,
                    true,
                )),
                Err(VoteError::VoteIdsFull { .. }) => Some(json::error_with_uid(
                    "too many recent vote ids, try again later",
                    &uid,
                    true,
                )),
                Err(VoteError::OutcomeUnknown) => Some(json::outcome_unknown(Some(&uid))),
                // The socket is being closed with 1001 "poll deleted".
                Err(VoteError::Deleted) => Some(json::error_with_uid("no such poll", &uid, true)),
            }
        };
        if let Some(r) = reply {
            tx.send(OpCode::Text, r.as_bytes())
                .map_err(|_| (CloseCode::GoingAway.as_u16(), String::new()))?;
        }
        Ok(())
    }
}
