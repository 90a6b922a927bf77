//! Where a client resumes from, and what it is sent first: one cursor and one resume decision
//! for every push transport (WebSocket, SSE) and the long-poll's query (docs/PROTOCOL.md).

use super::votes::{Catchup, Votes};
use super::MAX_RESUME_DELTA;

/// Where a client resumes from: `Last-Event-ID` or `?since=&epoch=`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    pub since: Option<u64>,
    pub epoch: Option<String>,
    /// The page's viewer id (`viewer=`), for presence.
    pub viewer: Option<String>,
}

impl Cursor {
    /// What the client missed since its cursor (at most [`MAX_RESUME_DELTA`] votes, else the
    /// whole tally), or the whole tally when it has no cursor.
    pub fn catch_up(&self, votes: &Votes) -> Catchup {
        match self.since {
            Some(v) => votes.catch_up(v, self.epoch.as_deref(), MAX_RESUME_DELTA),
            None => Catchup::Snapshot(votes.snapshot()),
        }
    }
}

/// Reads an event id as we write them, `EPOCH-VERSION`; a bare `VERSION` is taken as ours.
/// Anything else is no cursor (the client then gets a snapshot).
pub fn parse_event_id(id: &str) -> Cursor {
    let id = id.trim();
    let (epoch, version) = match id.rsplit_once('-') {
        Some((e, v)) => (Some(e.to_string()), v),
        None => (None, id),
    };
    match version.parse::<u64>() {
        Ok(v) => Cursor {
            since: Some(v),
            epoch,
            viewer: None,
        },
        Err(_) => Cursor::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_parse() {
        assert_eq!(
            parse_event_id("18eb-12"),
            Cursor {
                since: Some(12),
                epoch: Some("18eb".into()),
                viewer: None,
            }
        );
        assert_eq!(parse_event_id(" 7 ").since, Some(7));
        assert_eq!(parse_event_id("7").epoch, None);
        assert_eq!(parse_event_id("x-y"), Cursor::default());
        assert_eq!(parse_event_id(""), Cursor::default());
    }
}
