//! Presence: how many viewers are connected, by transport. Pure bookkeeping (the vote table
//! holds it under its lock, so waiters wake on presence changes the way they wake on votes).
//!
//! WebSocket and SSE viewers count while connected. Long-polling and polling viewers have no
//! connection to count: they name themselves with a random `viewer` id on each request and are
//! counted until [`VIEWER_TTL`] after their last one. The count clients see is *published* at
//! most once per [`PUBLISH_EVERY`], so a thousand connects cost a thousand subscribers one
//! message, not a thousand each.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A polling or long-polling viewer is forgotten this long after its last request.
pub const VIEWER_TTL: Duration = Duration::from_secs(30);
/// Most viewer ids remembered at once; beyond it new ids are not counted (memory stays bounded
/// whatever ids clients invent).
pub const MAX_VIEWERS: usize = 100_000;
/// Presence changes are published at most this often.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Ws,
    Sse,
    LongPoll,
    Poll,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Ws, Kind::Sse, Kind::LongPoll, Kind::Poll];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Ws => "ws",
            Kind::Sse => "sse",
            Kind::LongPoll => "longpoll",
            Kind::Poll => "poll",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::Ws => "WebSocket",
            Kind::Sse => "SSE",
            Kind::LongPoll => "long-polling",
            Kind::Poll => "polling",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Viewers per transport, as published.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts(pub [u64; 4]);

impl Counts {
    pub fn get(&self, k: Kind) -> u64 {
        self.0[k.index()]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `3 viewers: 1 WebSocket, 1 SSE, 1 long-polling, 0 polling`
    pub fn text(&self) -> String {
        let parts: Vec<String> = Kind::ALL
            .iter()
            .map(|&k| format!("{} {}", self.get(k), k.label()))
            .collect();
        let total = self.total();
        let noun = if total == 1 { "viewer" } else { "viewers" };
        format!("{total} {noun}: {}", parts.join(", "))
    }
}

/// The live bookkeeping and what was last published.
#[derive(Debug, Default)]
pub struct Presence {
    connected: [u64; 2],
    viewers: HashMap<String, (Kind, Instant)>,
    published: Counts,
    version: u64,
    last_publish: Option<Instant>,
}

/// A viewer id is 8–64 of `A-Z a-z 0-9 _ -`.
pub fn valid_viewer(id: &str) -> bool {
    (8..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Presence {
    pub fn published(&self) -> (Counts, u64) {
        (self.published, self.version)
    }

    /// A WebSocket or SSE viewer connected (`+1`) or left (`-1`).
    pub fn connected(&mut self, k: Kind, joined: bool) {
        let i = match k {
            Kind::Ws => 0,
            Kind::Sse => 1,
            _ => return,
        };
        self.connected[i] = if joined {
            self.connected[i] + 1
        } else {
            self.connected[i].saturating_sub(1)
        };
    }

    /// A viewer moved to a connected transport: it no longer counts as polling.
    pub fn forget(&mut self, id: &str) {
        self.viewers.remove(id);
    }

    /// A long-polling or polling viewer made a request.
    pub fn seen(&mut self, id: &str, k: Kind, now: Instant) {
        if let Some(v) = self.viewers.get_mut(id) {
            *v = (k, now);
        } else if self.viewers.len() < MAX_VIEWERS {
            self.viewers.insert(id.to_string(), (k, now));
        }
    }

    /// The counts right now, forgetting viewers silent for longer than the TTL.
    fn live(&mut self, now: Instant) -> Counts {
        self.viewers
            .retain(|_, (_, last)| now.saturating_duration_since(*last) < VIEWER_TTL);
        let mut c = Counts([self.connected[0], self.connected[1], 0, 0]);
        for (k, _) in self.viewers.values() {
            c.0[k.index()] += 1;
        }
        c
    }

    /// Publishes the live counts if they changed and the last publication is old enough.
    /// Returns true when a new version was published.
    pub fn publish(&mut self, now: Instant) -> bool {
        if self
            .last_publish
            .is_some_and(|t| now.saturating_duration_since(t) < PUBLISH_EVERY)
        {
            return false;
        }
        let live = self.live(now);
        if live == self.published {
            return false;
        }
        self.published = live;
        self.version += 1;
        self.last_publish = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_connections_and_viewers_and_publishes_at_a_bounded_rate() {
        let mut p = Presence::default();
        let t0 = Instant::now();
        p.connected(Kind::Ws, true);
        p.connected(Kind::Ws, true);
        p.connected(Kind::Sse, true);
        p.seen("viewer-aaaa", Kind::LongPoll, t0);
        p.seen("viewer-bbbb", Kind::Poll, t0);
        p.seen("viewer-bbbb", Kind::Poll, t0); // the same viewer again
        assert!(p.publish(t0));
        let (c, v) = p.published();
        assert_eq!((c.0, v), ([2, 1, 1, 1], 1));
        assert_eq!(
            c.text(),
            "5 viewers: 2 WebSocket, 1 SSE, 1 long-polling, 1 polling"
        );
        // A change within PUBLISH_EVERY waits; after it, it is published.
        p.connected(Kind::Ws, false);
        assert!(!p.publish(t0 + Duration::from_millis(10)));
        assert!(p.publish(t0 + PUBLISH_EVERY));
        assert_eq!(p.published().0.get(Kind::Ws), 1);
        // Nothing changed: no new version.
        assert!(!p.publish(t0 + PUBLISH_EVERY * 3));
        // Silent viewers expire.
        assert!(p.publish(t0 + VIEWER_TTL + PUBLISH_EVERY));
        assert_eq!(p.published().0 .0, [1, 1, 0, 0]);
        // Disconnects never go below zero.
        p.connected(Kind::Sse, false);
        p.connected(Kind::Sse, false);
        assert_eq!(p.live(t0).get(Kind::Sse), 0);
    }

    #[test]
    fn viewer_ids_are_checked_and_bounded() {
        assert!(valid_viewer("abcdEFGH_-12"));
        assert!(!valid_viewer("short"));
        assert!(!valid_viewer("has space in it"));
        assert!(!valid_viewer(&"x".repeat(65)));
        let mut p = Presence::default();
        let now = Instant::now();
        for i in 0..MAX_VIEWERS + 10 {
            p.seen(&format!("viewer-{i:08}"), Kind::Poll, now);
        }
        assert_eq!(p.viewers.len(), MAX_VIEWERS);
    }
}
