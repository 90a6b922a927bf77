//! Admission control: how many connections are open, in all and per client address, and the
//! slot each one holds until it ends (returned by `Drop`, so also when its thread unwinds).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Open connections, in all and per client address.
#[derive(Default)]
pub struct Admission {
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl Admission {
    /// Connections open right now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Takes a slot for a connection from `ip`, or says which cap it is over (0: no per-IP
    /// cap).
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        max: usize,
        max_per_ip: usize,
    ) -> Result<Slot, Refusal> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::TooMany);
        }
        if max_per_ip > 0 {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
            let n = per_ip.entry(ip).or_insert(0);
            if *n >= max_per_ip {
                drop(per_ip);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::TooManyFromAddress);
            }
            *n += 1;
        }
        Ok(Slot {
            adm: Arc::clone(self),
            ip: (max_per_ip > 0).then_some(ip),
        })
    }
}

/// Why a connection was refused at the door.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `--max-connections` reached.
    TooMany,
    /// `--max-connections-per-ip` reached for this address.
    TooManyFromAddress,
    /// No thread could be started for it.
    NoThread,
}

impl Refusal {
    pub fn name(self) -> &'static str {
        match self {
            Refusal::TooMany => "max_connections",
            Refusal::TooManyFromAddress => "max_connections_per_ip",
            Refusal::NoThread => "no_thread",
        }
    }
}

/// Holds one connection slot; returns it when dropped (also when the thread unwinds).
pub struct Slot {
    adm: Arc<Admission>,
    ip: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            let mut per_ip = self
                .adm
                .per_ip
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(n) = per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    per_ip.remove(&ip);
                }
            }
        }
        self.adm.open.fetch_sub(1, Ordering::AcqRel);
    }
}
