//! The receive side's accounting (`ws::inbox::Inbox`), driven the way `ws::conn::run` drives
//! it: bytes arrive in reads (through `extend` for small wants, else into `room`), events are
//! taken until none is left. Input: a knob byte, then the client's bytes. The knob picks the
//! message limit and the budget (bits 5–7) and how the bytes are cut into reads.
//!
//! Invariants beyond "never panics": after every step the memory really held (capacities) is
//! at most what is charged plus the free allowance, the budget's total never passes its cap,
//! and once the inbox is dropped the budget is back at 0.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livevote::net::STACK_READ;
use livevote::ws::inbox::{Budget, Inbox, FREE_BUFFER};
use livevote_fuzz::{knob, pieces};

/// (message limit, budget) pairs.
const LIMITS: [(usize, usize); 8] = [
    (4096, 1 << 20),
    (0, 1 << 20),
    (125, 4096),
    (1000, 8192),
    (16 << 20, 1 << 20),
    (1 << 20, 16 << 20),
    (70_000, 100_000),
    (16 << 20, 64 << 20),
];

fuzz_target!(|data: &[u8]| {
    let (k, wire) = knob(data);
    let (max, cap) = LIMITS[usize::from(k >> 5)];
    let budget = Budget::new(cap);
    let mut inbox = Inbox::new(&budget, max, Vec::new()).expect("an empty inbox fits");
    let check = |inbox: &Inbox| {
        assert!(inbox.held() <= inbox.charged() + FREE_BUFFER);
        assert!(budget.used() <= budget.max());
    };
    'reads: for mut read in pieces(k, wire) {
        while !read.is_empty() {
            loop {
                match inbox.next_event(true) {
                    Ok(Some(_)) => check(&inbox),
                    Ok(None) => break,
                    Err(_) => break 'reads,
                }
            }
            check(&inbox);
            if inbox.want() <= STACK_READ && inbox.free_tail() < inbox.want() {
                let n = read.len().min(STACK_READ);
                if inbox.extend(&read[..n]).is_err() {
                    break 'reads;
                }
                read = &read[n..];
            } else {
                let Ok(room) = inbox.room() else { break 'reads };
                let n = room.len().min(read.len());
                room[..n].copy_from_slice(&read[..n]);
                inbox.filled(n);
                read = &read[n..];
            }
            check(&inbox);
        }
    }
    let _ = inbox.next_event(true);
    check(&inbox);
    drop(inbox);
    assert_eq!(budget.used(), 0);
});
