//! Presence: how many viewers are connected, by transport. Pure bookkeeping, no locks here.
//!
//! WebSocket and SSE viewers count while connected. Long-polling and polling viewers have no
//! connection to count: they name themselves with a random `viewer` id on each request and are
//! counted until [`VIEWER_TTL`] after their last one. The count clients see is *published* at
//! most once per [`PUBLISH_EVERY`], so a thousand connects cost a thousand subscribers one
//! message, not a thousand each.
//!
//! Two parts, so the tally's lock stays cheap: [`Viewers`] (the table of ids, in its own lock)
//! does the bookkeeping, and hands its counts to [`Presence`] (what was published, under the
//! tally's lock so one condvar wakes waiters for votes and presence alike) only when they
//! changed. Ids are capped per client address, and expire from a queue ordered by last sight,
//! so a publication touches only the ids that expired, never the whole table.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A polling or long-polling viewer is forgotten this long after its last request.
pub const VIEWER_TTL: Duration = Duration::from_secs(30);
/// Most viewer ids remembered at once, from all addresses together; beyond it new ids are not
/// counted (memory stays bounded whatever ids clients invent, from however many addresses).
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
        let mut out = String::with_capacity(64);
        self.write_text(&mut out);
        out
    }

    /// [`text`](Counts::text), written onto `out`: digits and the fixed labels only, nothing
    /// that HTML would need escaped.
    pub fn write_text(&self, out: &mut String) {
        use std::fmt::Write as _;
        let total = self.total();
        let noun = if total == 1 { "viewer" } else { "viewers" };
        let _ = write!(out, "{total} {noun}: ");
        for (i, &k) in Kind::ALL.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(out, "{sep}{} {}", self.get(k), k.label());
        }
    }
}

/// What was last published: the counts clients see and their version. Lives under the
/// tally's lock; every change comes from [`Viewers::publish`].
#[derive(Debug, Default)]
pub struct Presence {
    published: Counts,
    version: u64,
}

impl Presence {
    pub fn published(&self) -> (Counts, u64) {
        (self.published, self.version)
    }

    /// A new version with the same counts: something else live streams show changed (the
    /// store's health), and waiters on presence must wake.
    pub fn bump(&mut self) {
        self.version += 1;
    }

    /// Publishes `counts` as a new version if they differ from the last; true when they did.
    pub fn set(&mut self, counts: Counts) -> bool {
        if counts == self.published {
            return false;
        }
        self.published = counts;
        self.version += 1;
        true
    }
}

/// A viewer id is 8–64 of `A-Z a-z 0-9 _ -`.
pub fn valid_viewer(id: &str) -> bool {
    crate::ids::VIEWER.accepts(id)
}

/// The address a viewer id is charged to: an IPv4 address, or an IPv6 /64 (one host commonly
/// holds a whole /64, so counting single IPv6 addresses would be no cap at all).
fn addr_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// One polling viewer: its transport, when it was last seen, its place in the expiry queue,
/// and the address it is charged to.
#[derive(Debug)]
struct Seen {
    kind: Kind,
    last: Instant,
    seq: u64,
    addr: IpAddr,
}

/// The bookkeeping: connected viewers, and polling viewers by id.
#[derive(Debug, Default)]
pub struct Viewers {
    /// WebSocket and SSE viewers connected now.
    connected: [u64; 2],
    /// Polling viewers by id.
    seen: HashMap<String, Seen>,
    /// The same ids by `seq`, which grows with every sighting: oldest sighting first, so expiry
    /// pops from the front and stops at the first id still alive.
    queue: BTreeMap<u64, String>,
    next_seq: u64,
    /// Ids per address, for the per-address cap.
    per_addr: HashMap<IpAddr, usize>,
    /// Polling viewers now, by transport (long-poll, poll): kept as ids come and go, so no
    /// count walks the table.
    polling: [u64; 2],
    /// The latest sighting: a sighting stamped earlier (its thread was slow to the lock) is
    /// stamped with this instead, so queue order is time order.
    latest: Option<Instant>,
    published: Counts,
    last_publish: Option<Instant>,
    /// With a shared store: the polling viewers seen and forgotten since the last
    /// [`Viewers::take_local`], for the store's presence over every instance.
    log: Option<Log>,
}

/// Polling viewers to tell a shared store about. Bounded like the table: at most
/// [`MAX_VIEWERS`] ids each.
#[derive(Debug, Default)]
struct Log {
    sighted: HashMap<String, Kind>,
    forgotten: Vec<String>,
}

/// This instance's presence, for a shared store that adds up every instance's.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Local {
    /// WebSocket and SSE viewers connected here now.
    pub connected: [u64; 2],
    /// Polling viewers seen since the last time, with their transport.
    pub sighted: Vec<(String, Kind)>,
    /// Polling viewers that moved to a connected transport since the last time.
    pub forgotten: Vec<String>,
}

impl Viewers {
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

    /// WebSocket and SSE viewers connected now.
    pub fn connected_now(&self) -> [u64; 2] {
        self.connected
    }

    /// A viewer moved to a connected transport: it no longer counts as polling.
    pub fn forget(&mut self, id: &str) {
        if let Some(s) = self.seen.remove(id) {
            self.queue.remove(&s.seq);
            self.untrack(&s);
        }
        if let Some(log) = &mut self.log {
            log.sighted.remove(id);
            if log.forgotten.len() < MAX_VIEWERS {
                log.forgotten.push(id.to_string());
            }
        }
    }

    /// Takes what a shared store needs to know since the last call (and starts keeping it).
    pub fn take_local(&mut self, now: Instant) -> Local {
        self.expire(now);
        let log = self.log.replace(Log::default()).unwrap_or_default();
        Local {
            connected: self.connected,
            sighted: log.sighted.into_iter().collect(),
            forgotten: log.forgotten,
        }
    }

    fn log_sighting(&mut self, id: &str, k: Kind) {
        if let Some(log) = &mut self.log {
            if log.sighted.len() < MAX_VIEWERS || log.sighted.contains_key(id) {
                log.sighted.insert(id.to_string(), k);
            }
        }
    }

    /// A long-polling or polling viewer made a request from `ip`. A new id is counted only
    /// while its address has fewer than `max_per_addr` ids (0: no cap) and the table fewer
    /// than [`MAX_VIEWERS`]; a known id stays charged to the address that brought it. Returns
    /// whether the id counts.
    pub fn seen(
        &mut self,
        id: &str,
        k: Kind,
        ip: IpAddr,
        max_per_addr: usize,
        now: Instant,
    ) -> bool {
        if !matches!(k, Kind::LongPoll | Kind::Poll) {
            return false;
        }
        let now = self.latest.map_or(now, |l| l.max(now));
        self.latest = Some(now);
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(s) = self.seen.get_mut(id) {
            self.queue.remove(&s.seq);
            self.queue.insert(seq, id.to_string());
            let old = s.kind;
            (s.kind, s.last, s.seq) = (k, now, seq);
            if old != k {
                self.polling[poll_index(old)] -= 1;
                self.polling[poll_index(k)] += 1;
            }
            self.log_sighting(id, k);
            return true;
        }
        let addr = addr_key(ip);
        let held = self.per_addr.get(&addr).copied().unwrap_or(0);
        if (max_per_addr != 0 && held >= max_per_addr) || self.seen.len() >= MAX_VIEWERS {
            return false;
        }
        *self.per_addr.entry(addr).or_default() += 1;
        self.polling[poll_index(k)] += 1;
        self.queue.insert(seq, id.to_string());
        self.seen.insert(
            id.to_string(),
            Seen {
                kind: k,
                last: now,
                seq,
                addr,
            },
        );
        self.log_sighting(id, k);
        true
    }

    /// Takes a forgotten viewer out of the counts.
    fn untrack(&mut self, s: &Seen) {
        self.polling[poll_index(s.kind)] -= 1;
        if let Some(n) = self.per_addr.get_mut(&s.addr) {
            *n -= 1;
            if *n == 0 {
                self.per_addr.remove(&s.addr);
            }
        }
    }

    /// Forgets viewers silent for [`VIEWER_TTL`], oldest first, stopping at the first one still
    /// alive. Returns how many queue entries it looked at (the expired ones, plus one).
    fn expire(&mut self, now: Instant) -> usize {
        let mut visited = 0;
        while let Some(entry) = self.queue.first_entry() {
            visited += 1;
            let alive = self
                .seen
                .get(entry.get())
                .is_some_and(|s| now.saturating_duration_since(s.last) < VIEWER_TTL);
            if alive {
                break;
            }
            let id = entry.remove();
            if let Some(s) = self.seen.remove(&id) {
                self.untrack(&s);
            }
        }
        visited
    }

    /// The counts right now, forgetting viewers silent for longer than the TTL.
    fn live(&mut self, now: Instant) -> Counts {
        self.expire(now);
        Counts([
            self.connected[0],
            self.connected[1],
            self.polling[0],
            self.polling[1],
        ])
    }

    /// The live counts, if they changed and the last publication is old enough (at most once
    /// per [`PUBLISH_EVERY`]); the caller hands them to [`Presence::set`].
    pub fn publish(&mut self, now: Instant) -> Option<Counts> {
        if self
            .last_publish
            .is_some_and(|t| now.saturating_duration_since(t) < PUBLISH_EVERY)
        {
            return None;
        }
        let live = self.live(now);
        if live == self.published {
            return None;
        }
        self.published = live;
        self.last_publish = Some(now);
        Some(live)
    }
}

/// Index of a polling kind in [`Viewers::polling`].
fn poll_index(k: Kind) -> usize {
    match k {
        Kind::LongPoll => 0,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    /// Publishes through both halves, as `Votes::publish_presence` does.
    fn publish(v: &mut Viewers, p: &mut Presence, now: Instant) -> bool {
        v.publish(now).is_some_and(|c| p.set(c))
    }

    #[test]
    fn counts_connections_and_viewers_and_publishes_at_a_bounded_rate() {
        let (mut v, mut p) = (Viewers::default(), Presence::default());
        let t0 = Instant::now();
        v.connected(Kind::Ws, true);
        v.connected(Kind::Ws, true);
        v.connected(Kind::Sse, true);
        v.seen("viewer-aaaa", Kind::LongPoll, HOME, 64, t0);
        v.seen("viewer-bbbb", Kind::Poll, HOME, 64, t0);
        v.seen("viewer-bbbb", Kind::Poll, HOME, 64, t0); // the same viewer again
        assert!(publish(&mut v, &mut p, t0));
        let (c, ver) = p.published();
        assert_eq!((c.0, ver), ([2, 1, 1, 1], 1));
        assert_eq!(
            c.text(),
            "5 viewers: 2 WebSocket, 1 SSE, 1 long-polling, 1 polling"
        );
        // The page writes it unescaped: nothing in it may need escaping.
        let mut escaped = String::new();
        crate::http::response::html_escape(&mut escaped, &c.text());
        assert_eq!(escaped, c.text());
        // A change within PUBLISH_EVERY waits; after it, it is published.
        v.connected(Kind::Ws, false);
        assert!(!publish(&mut v, &mut p, t0 + Duration::from_millis(10)));
        assert!(publish(&mut v, &mut p, t0 + PUBLISH_EVERY));
        assert_eq!(p.published().0.get(Kind::Ws), 1);
        // Nothing changed: no new version.
        assert!(!publish(&mut v, &mut p, t0 + PUBLISH_EVERY * 3));
        // A viewer that moves to another polling transport counts once, under the new one.
        v.seen("viewer-aaaa", Kind::Poll, HOME, 64, t0);
        assert_eq!(v.live(t0).0, [1, 1, 0, 2]);
        // Silent viewers expire.
        assert!(publish(&mut v, &mut p, t0 + VIEWER_TTL + PUBLISH_EVERY));
        assert_eq!(p.published().0 .0, [1, 1, 0, 0]);
        assert!(v.per_addr.is_empty() && v.queue.is_empty());
        // Disconnects never go below zero.
        v.connected(Kind::Sse, false);
        v.connected(Kind::Sse, false);
        assert_eq!(v.live(t0).get(Kind::Sse), 0);
    }

    #[test]
    fn viewer_ids_are_checked_and_bounded() {
        assert!(valid_viewer("abcdEFGH_-12"));
        assert!(!valid_viewer("short"));
        assert!(!valid_viewer("has space in it"));
        assert!(!valid_viewer(&"x".repeat(65)));
        // Without a per-address cap, the global one still holds.
        let mut v = Viewers::default();
        let now = Instant::now();
        for i in 0..MAX_VIEWERS + 10 {
            v.seen(&format!("viewer-{i:08}"), Kind::Poll, HOME, 0, now);
        }
        assert_eq!(v.seen.len(), MAX_VIEWERS);
        assert_eq!(v.queue.len(), MAX_VIEWERS);
    }

    #[test]
    fn ids_are_capped_per_address() {
        let mut v = Viewers::default();
        let now = Instant::now();
        for i in 0..10 {
            let counted = v.seen(&format!("viewer-{i:04}"), Kind::Poll, HOME, 4, now);
            assert_eq!(counted, i < 4, "id {i}");
        }
        // A known id still refreshes; a new one from another address still counts.
        assert!(v.seen("viewer-0000", Kind::Poll, HOME, 4, now));
        assert!(v.seen("viewer-other", Kind::Poll, OTHER, 4, now));
        assert_eq!(v.live(now).get(Kind::Poll), 5);
        // A forgotten id frees its place.
        v.forget("viewer-0001");
        assert!(v.seen("viewer-0009", Kind::Poll, HOME, 4, now));
        // IPv6 addresses count by /64; IPv4-mapped ones as IPv4.
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(v.seen("viewer-v6-a", Kind::Poll, a, 1, now));
        assert!(!v.seen("viewer-v6-b", Kind::Poll, b, 1, now));
        assert!(v.seen("viewer-v6-c", Kind::Poll, c, 1, now));
        let mapped: IpAddr = "::ffff:10.0.0.2".parse().unwrap();
        assert!(!v.seen("viewer-mapped", Kind::Poll, mapped, 1, now));
        // Only polling transports are tracked by id.
        assert!(!v.seen("viewer-ws-1", Kind::Ws, OTHER, 0, now));
    }

    #[test]
    fn a_flood_from_one_address_cannot_push_out_another_addresses_viewers() {
        let mut v = Viewers::default();
        let t0 = Instant::now();
        assert!(v.seen("real-viewer", Kind::LongPoll, OTHER, 64, t0));
        for i in 0..100_000 {
            v.seen(&format!("fake-{i:08}"), Kind::Poll, HOME, 64, t0);
        }
        assert_eq!(v.seen.len(), 65);
        // The real viewer keeps polling and stays counted, and new real viewers still get in.
        let t1 = t0 + VIEWER_TTL / 2;
        assert!(v.seen("real-viewer", Kind::LongPoll, OTHER, 64, t1));
        assert!(v.seen("another-real", Kind::Poll, OTHER, 64, t1));
        let later = t0 + VIEWER_TTL + Duration::from_millis(1);
        assert_eq!(v.live(later).0, [0, 0, 1, 1]);
    }

    #[test]
    fn expiry_touches_only_what_expired() {
        let mut v = Viewers::default();
        let t0 = Instant::now();
        // 1,000 viewers seen a millisecond apart.
        for i in 0..1000u64 {
            let t = t0 + Duration::from_millis(i);
            v.seen(&format!("viewer-{i:06}"), Kind::Poll, HOME, 0, t);
        }
        // Nothing expired: one entry looked at.
        assert_eq!(v.expire(t0 + VIEWER_TTL - Duration::from_millis(1)), 1);
        // Ten expired: eleven looked at, ten gone.
        assert_eq!(v.expire(t0 + VIEWER_TTL + Duration::from_millis(9)), 11);
        assert_eq!(v.seen.len(), 990);
        // A refreshed viewer moves to the back of the queue: the old place is not kept.
        v.seen("viewer-000010", Kind::Poll, HOME, 0, t0 + VIEWER_TTL);
        assert_eq!(v.queue.len(), 990);
        assert_eq!(v.expire(t0 + VIEWER_TTL + Duration::from_millis(11)), 2);
        assert!(v.seen.contains_key("viewer-000010"));
        // A sighting stamped before the latest one is queued as the latest (queue order is
        // time order).
        v.seen("viewer-late", Kind::Poll, HOME, 0, t0);
        assert_eq!(v.seen["viewer-late"].last, t0 + VIEWER_TTL);
        // All of them expire in one pass over exactly the table.
        let n = v.seen.len();
        assert_eq!(v.expire(t0 + VIEWER_TTL * 3), n);
        assert!(v.seen.is_empty() && v.per_addr.is_empty());
    }
}
