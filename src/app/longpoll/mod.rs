//! `GET /get_new_vote` as a long-poll: answered at once when the client is behind, else parked
//! in the poll's [`lot`] until the next vote (written by the lot's writer, once for all), a
//! presence change it asked for, or `--longpoll-timeout`.

pub mod lot;

use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::admin::Caller;
use super::metrics::Metrics;
use super::polls::Poll;
use super::presence::Kind;
use super::votes::{Catchup, Wake};
use super::{json, App, MAX_RESUME_DELTA};
use crate::http::conn::{Park, Parked, Reply};
use crate::http::{Response, Status};
use lot::{Outcome, Waiter};

/// What a long-poll asks, parsed from its request.
pub struct Ask {
    /// Its cursor (the tally's version now when it named none).
    pub since: u64,
    pub epoch: Option<String>,
    /// The presence version it has (`pv=`): a change of presence answers it too.
    pub pv: Option<u64>,
    /// Its last answer hid the counts (`hidden=1`).
    pub was_hidden: bool,
    pub caller: Caller,
    /// It was current when it asked: its answer is `live`.
    pub waited: bool,
    /// Its request allows parking: a `GET` (a `HEAD` is answered by this thread, without
    /// its body).
    pub parkable: bool,
}

/// A long-poll parked in its poll's lot, from the connection's thread.
struct LongPoll {
    app: Arc<App>,
    poll: Arc<Poll>,
    ask: Ask,
    deadline: Instant,
}

impl Park for LongPoll {
    fn wait(self: Box<Self>, stream: &Arc<TcpStream>, keep_alive: bool) -> Parked {
        let LongPoll {
            app,
            poll,
            ask,
            deadline,
        } = *self;
        let outcome = poll.long_polls().ok().and_then(|lot| {
            let waiter = Waiter {
                since: ask.since,
                epoch: ask.epoch.clone().unwrap_or_else(|| poll.votes.epoch()),
                presence: ask.pv,
                voter: ask.caller.voter.clone(),
                presenter: ask.caller.admin,
                keep_alive,
            };
            lot.wait(stream, waiter, deadline)
        });
        let m = &app.metrics;
        match outcome {
            Some(Outcome::Written {
                written,
                votes,
                delivered,
            }) => {
                m.long_poll_answered(true);
                if votes {
                    carried_votes(m, "live", written.body_len, delivered);
                }
                Parked::Written(written)
            }
            // Not parked (the tally moved meanwhile), timed out, or ending: answered here,
            // from the tally as it is now.
            Some(Outcome::Yourself) | None => {
                let r = app.long_poll_answer(&poll, &ask, deadline);
                Parked::Respond(if app.draining() { r.closing() } else { r })
            }
        }
    }
}

impl App {
    /// A long-poll's reply: parked when it is current and may be, else answered now.
    pub(super) fn long_poll_reply(&self, poll: &Arc<Poll>, ask: Ask) -> Reply {
        let deadline = Instant::now() + self.config.longpoll_timeout;
        // A hidden client who may see the counts now is answered at once (a snapshot).
        let reveal =
            ask.was_hidden && poll.visible_to(ask.caller.voter.as_deref(), ask.caller.admin);
        if ask.parkable && ask.waited && !reveal {
            return Reply::Park(Box::new(LongPoll {
                app: self.shared(),
                poll: Arc::clone(poll),
                ask,
                deadline,
            }));
        }
        Reply::Response(self.long_poll_answer(poll, &ask, deadline))
    }

    /// A long-poll answered by its own thread: waits (until `deadline`) only if it is current.
    fn long_poll_answer(&self, poll: &Poll, ask: &Ask, deadline: Instant) -> Response {
        let votes = &poll.votes;
        let since = ask.since;
        let caller = &ask.caller;
        self.metrics.long_poll_answered(false);
        // A client whose last answer was hidden (`hidden=1`) and who may see the counts now
        // (they voted, the poll closed) needs the whole tally, not a delta.
        let answer = if ask.was_hidden && poll.visible_to(caller.voter.as_deref(), caller.admin) {
            Some(Wake::Votes(Catchup::Snapshot(votes.snapshot())))
        } else {
            self.metrics.long_poll(true);
            let a = votes.wait(
                since,
                ask.epoch.as_deref(),
                ask.pv,
                MAX_RESUME_DELTA,
                deadline.saturating_duration_since(Instant::now()),
            );
            self.metrics.long_poll(false);
            a
        };
        let (counts, pv) = votes.presence();
        let presence = |o: &mut crate::json::Object| json::presence_members(o, &counts, pv);
        let body = match answer {
            Some(Wake::Votes(c)) => {
                // Decided when answering: a vote, a close or a reveal meanwhile counts.
                let visible = poll.visible_to(caller.voter.as_deref(), caller.admin);
                let body = json::longpoll(&c, since, ask.waited, &votes.epoch(), visible, presence);
                let kind = if ask.waited {
                    "live"
                } else {
                    json::resume_kind(&c)
                };
                let newest = votes.newest_counted(&c);
                carried_votes(&self.metrics, kind, body.len(), newest.map(|t| t.elapsed()));
                body
            }
            // Nothing new in the tally (presence changed, or the wait timed out): the tutorial's
            // "no news" answer, with the current presence.
            Some(Wake::Presence(..)) | None => {
                json::longpoll_timeout(votes.version(), &votes.epoch(), presence)
            }
        };
        Response::json(Status::Ok, body)
    }
}

/// The metrics of a long-poll answer that carried votes (`kind`: live, delta or snapshot), the
/// newest of them counted `delivered` before it went out.
fn carried_votes(m: &Metrics, kind: &str, body_len: usize, delivered: Option<Duration>) {
    m.resume(Kind::LongPoll, kind);
    m.sent(Kind::LongPoll, 1, body_len as u64, 1);
    if let Some(d) = delivered {
        m.delivered(Kind::LongPoll, d);
    }
}
