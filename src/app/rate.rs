//! `--vote-rate N`: at most N votes per second per voter and per client address (an IPv6
//! client by its /64), on every transport; beyond it `429` + `Retry-After` (over WebSocket an
//! `error` message). A token bucket per key, holding up to N tokens (a burst of N, then N per
//! second), in one table capped at [`MAX_KEYS`] keys: a full table first forgets the buckets
//! that are full again (they say nothing an empty table would not), and if every bucket is
//! still in use a new key goes unlimited rather than locking everyone out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Most keys (voters and addresses) the table holds.
pub const MAX_KEYS: usize = 100_000;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    Voter(String),
    Addr(IpAddr),
}

impl Key {
    /// An address as limited: IPv4 whole, IPv6 by its /64 (one host's share).
    pub fn addr(ip: IpAddr) -> Key {
        match ip {
            IpAddr::V4(_) => Key::Addr(ip),
            IpAddr::V6(v6) => {
                let s = v6.segments();
                Key::Addr(IpAddr::V6(std::net::Ipv6Addr::new(
                    s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                )))
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

pub struct RateLimit {
    /// Votes per second (and the burst).
    rate: f64,
    max_keys: usize,
    table: Mutex<HashMap<Key, Bucket>>,
}

impl RateLimit {
    pub fn new(rate: f64) -> RateLimit {
        RateLimit::with_cap(rate, MAX_KEYS)
    }

    pub fn with_cap(rate: f64, max_keys: usize) -> RateLimit {
        RateLimit {
            rate,
            max_keys,
            table: Mutex::new(HashMap::new()),
        }
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let dt = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + dt * self.rate).min(self.rate);
        b.at = now;
    }

    /// Takes one vote from every key's bucket, or none: `Err(wait)` when one is empty, with
    /// how long until it has a token again.
    pub fn take(&self, keys: &[Key], now: Instant) -> Result<(), Duration> {
        let mut t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let mut wait = Duration::ZERO;
        for k in keys {
            if let Some(b) = t.get_mut(k) {
                self.refill(b, now);
                if b.tokens < 1.0 {
                    let w = Duration::from_secs_f64((1.0 - b.tokens) / self.rate);
                    wait = wait.max(w);
                }
            }
        }
        if !wait.is_zero() {
            return Err(wait);
        }
        for k in keys {
            if let Some(b) = t.get_mut(k) {
                b.tokens -= 1.0;
                continue;
            }
            if t.len() >= self.max_keys {
                let rate = self.rate;
                t.retain(|_, b| {
                    let dt = now.saturating_duration_since(b.at).as_secs_f64();
                    b.tokens + dt * rate < rate
                });
            }
            if t.len() < self.max_keys {
                t.insert(
                    k.clone(),
                    Bucket {
                        tokens: self.rate - 1.0,
                        at: now,
                    },
                );
            }
        }
        Ok(())
    }

    /// Keys held now (for tests and metrics).
    pub fn len(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Key {
        Key::addr(s.parse().unwrap())
    }

    #[test]
    fn a_burst_of_n_then_n_per_second() {
        let r = RateLimit::new(2.0);
        let t0 = Instant::now();
        let k = [Key::Voter("v".into()), ip("10.0.0.1")];
        assert!(r.take(&k, t0).is_ok());
        assert!(r.take(&k, t0).is_ok());
        let wait = r.take(&k, t0).unwrap_err();
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500));
        assert!(r.take(&k, t0 + Duration::from_millis(499)).is_err());
        assert!(r.take(&k, t0 + Duration::from_millis(1000)).is_ok());
    }

    #[test]
    fn either_key_limits_and_a_refusal_takes_nothing() {
        let r = RateLimit::new(1.0);
        let t0 = Instant::now();
        assert!(r
            .take(&[Key::Voter("a".into()), ip("10.0.0.1")], t0)
            .is_ok());
        // Another voter from the same address: the address is spent.
        assert!(r
            .take(&[Key::Voter("b".into()), ip("10.0.0.1")], t0)
            .is_err());
        // So b's bucket was not touched: from another address, b votes.
        assert!(r
            .take(&[Key::Voter("b".into()), ip("10.0.0.2")], t0)
            .is_ok());
        // An IPv6 client is its /64.
        assert!(r.take(&[ip("2001:db8::1")], t0).is_ok());
        assert!(r.take(&[ip("2001:db8::ffff:1")], t0).is_err());
        assert!(r.take(&[ip("2001:db8:0:1::1")], t0).is_ok());
    }

    #[test]
    fn the_table_is_capped_and_forgets_full_buckets_first() {
        let r = RateLimit::with_cap(1.0, 3);
        let t0 = Instant::now();
        for i in 0..3 {
            r.take(&[Key::Voter(format!("v{i}"))], t0).unwrap();
        }
        assert_eq!(r.len(), 3);
        // Full and busy: a new key is not held (and not refused).
        assert!(r.take(&[Key::Voter("new".into())], t0).is_ok());
        assert_eq!(r.len(), 3);
        // A second later the old buckets are full again: forgotten to make room.
        let t1 = t0 + Duration::from_secs(2);
        assert!(r.take(&[Key::Voter("new".into())], t1).is_ok());
        assert_eq!(r.len(), 1);
        assert!(r.take(&[Key::Voter("new".into())], t1).is_err());
    }
}
