//! The two WebSocket endpoints: `/get_new_vote` (votes in, the live tally out) and
//! `/chatsocket` (echo). Each runs on the thread that accepted its connection.

use std::net::TcpStream;
use std::sync::Arc;

use super::votes::{VoteError, Votes};
use super::{chat, json, App};
use crate::config::valid_id;
use crate::ws::conn::{self, Sender, Settings};
use crate::ws::frame::{CloseCode, OpCode};
use crate::ws::message::Message;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Votes,
    Chat,
}

/// Runs an upgraded connection to its end.
pub fn serve(app: &App, endpoint: Endpoint, stream: TcpStream, leftover: Vec<u8>) {
    let l = &app.config.limits;
    let broadcast = endpoint == Endpoint::Votes;
    let stream = Arc::new(stream);
    let tx = match Sender::new(Arc::clone(&stream), l.write_timeout, broadcast) {
        Ok(tx) => Arc::new(tx),
        Err(_) => return,
    };
    let settings = Settings {
        max_message: match endpoint {
            Endpoint::Votes => l.ws_max_vote_message,
            Endpoint::Chat => l.ws_max_chat_message,
        },
        ping_interval: l.ws_ping_interval,
        pong_timeout: l.ws_pong_timeout,
    };
    match endpoint {
        Endpoint::Votes => {
            // Subscribe before the snapshot, so no vote falls between the two.
            let _sub = app.hub.subscribe(Arc::clone(&tx));
            if app.hub.send_snapshot(&tx).is_ok() {
                let mut ep = VoteSocket { votes: &app.votes };
                conn::run(&stream, leftover, &tx, &settings, &app.ws_budget, &mut ep);
            }
        }
        Endpoint::Chat => {
            let mut ep = chat::Echo;
            conn::run(&stream, leftover, &tx, &settings, &app.ws_budget, &mut ep);
        }
    }
    tx.shutdown();
}

/// `/get_new_vote` over WebSocket: a text message naming a candidate is a vote.
struct VoteSocket<'a> {
    votes: &'a Votes,
}

impl conn::Endpoint for VoteSocket<'_> {
    fn on_message(&mut self, msg: Message, tx: &Sender) -> Result<(), (u16, String)> {
        let Message::Text(text) = msg else {
            return Err((
                CloseCode::Unsupported.as_u16(),
                "votes are text messages".into(),
            ));
        };
        let uid = text.trim();
        let reply = if !valid_id(uid) {
            Some(json::error_with_uid("malformed candidate id", uid, true))
        } else {
            match self.votes.vote(uid) {
                // The broadcaster delivers the new count to everyone, this client included.
                Ok(_) => None,
                Err(VoteError::UnknownCandidate(uid)) => {
                    Some(json::error_with_uid("unknown candidate", &uid, true))
                }
            }
        };
        if let Some(r) = reply {
            tx.send(OpCode::Text, r.as_bytes())
                .map_err(|_| (CloseCode::GoingAway.as_u16(), String::new()))?;
        }
        Ok(())
    }
}
