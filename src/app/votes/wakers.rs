//! Wake-ups for voters waiting on the group commit: one `Condvar` per slot of tickets, so that
//! an answer wakes the voter it is for (and the rare one sharing its slot), not every voter
//! waiting on the instance. With one `Condvar`, each batch woke every waiting voter to find
//! its answer missing and sleep again: a wake-up, a lock and a context switch per waiting voter
//! per batch, for nothing.

use std::sync::Condvar;

/// Slots: tickets are consecutive, so up to this many voters in flight never share one.
const SLOTS: usize = 64;

/// The slots to wake, one bit each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Ring(u64);

impl Ring {
    pub(super) fn add(&mut self, ticket: u64) {
        self.0 |= 1 << (ticket % SLOTS as u64);
    }

    pub(super) fn join(&mut self, other: Ring) {
        self.0 |= other.0;
    }
}

pub(super) struct Wakers {
    slots: [Condvar; SLOTS],
}

impl Wakers {
    pub(super) fn new() -> Self {
        Wakers {
            slots: std::array::from_fn(|_| Condvar::new()),
        }
    }

    /// Where the voter holding `ticket` waits (and a retry of its vote id waits for it).
    pub(super) fn of(&self, ticket: u64) -> &Condvar {
        &self.slots[(ticket % SLOTS as u64) as usize]
    }

    /// Wakes every voter waiting in `ring`'s slots.
    pub(super) fn wake(&self, ring: Ring) {
        let mut bits = ring.0;
        while bits != 0 {
            let k = bits.trailing_zeros() as usize;
            self.slots[k].notify_all();
            bits &= bits - 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_names_the_slots_of_its_tickets() {
        let mut r = Ring::default();
        assert_eq!(r, Ring(0));
        r.add(3);
        r.add(3 + SLOTS as u64);
        let mut s = Ring::default();
        s.add(5);
        r.join(s);
        assert_eq!(r, Ring((1 << 3) | (1 << 5)));
        let w = Wakers::new();
        assert!(std::ptr::eq(w.of(3), w.of(3 + SLOTS as u64)));
        assert!(!std::ptr::eq(w.of(3), w.of(4)));
        w.wake(r);
    }
}
