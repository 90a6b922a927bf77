//! `/chatsocket`: echoes every message to its sender, text as text and binary as binary —
//! the tutorial's chat server, and the endpoint the Autobahn conformance suite drives.

use crate::ws::conn::{Endpoint, Sender};
use crate::ws::frame::{CloseCode, OpCode};
use crate::ws::message::Message;

pub struct Echo;

impl Endpoint for Echo {
    fn on_message(&mut self, msg: Message, tx: &Sender) -> Result<(), (u16, String)> {
        let sent = match &msg {
            Message::Text(t) => tx.send(OpCode::Text, t.as_bytes()),
            Message::Binary(b) => tx.send(OpCode::Binary, b),
        };
        sent.map_err(|_| (CloseCode::GoingAway.as_u16(), String::new()))
    }
}
