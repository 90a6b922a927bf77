//! The RESP2 reply codec (`redis::resp`). Input: a knob byte, then bytes as a Redis server
//! might send them. The knob picks tiny or default limits (bit 7) and how the bytes are cut
//! into reads (`pieces`, bits 0–4).
//!
//! Invariants beyond "never panics":
//! - Every proper prefix of a decoded value is incomplete (`Ok(None)`), never an error.
//! - A decoded value, encoded canonically, decodes to itself using all of the re-encoded
//!   bytes; the canonical form is never longer than the input, and when the input was
//!   canonical it is exactly the bytes decoded.
//! - Decoding a stream of values as reads deliver it (the buffer grows piece by piece and each
//!   complete value is consumed) gives the same values, and the same error, as decoding the
//!   whole input at once.
//! - The store's readers of script and stream replies (`app::redis_store::scripts`) take any
//!   decoded value without panicking: a reply of the wrong shape is an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livevote::app::redis_store::scripts;
use livevote::redis::resp::{decode, encode_value, Limits, Value};
use livevote_fuzz::{knob, pieces};

const TINY: Limits = Limits {
    max_bulk: 8,
    max_array: 4,
    max_depth: 3,
    max_line: 8,
};

type Decoded = Result<Vec<Value>, livevote::redis::resp::Error>;

fuzz_target!(|data: &[u8]| {
    let (k, wire) = knob(data);
    let limits = if k & 0x80 != 0 { TINY } else { Limits::default() };

    if let Ok(Some((value, used))) = decode(wire, &limits) {
        assert!(used <= wire.len());
        for i in 0..used {
            assert_eq!(decode(&wire[..i], &limits), Ok(None), "prefix of {i} bytes");
        }
        let _ = scripts::read_open(&value);
        let _ = scripts::read_vote(&value, usize::from(k & 0x7));
        let _ = scripts::read_changes(&value);
        let _ = scripts::read_presence(&value);
        let mut again = Vec::new();
        encode_value(&value, &mut again);
        assert!(again.len() <= used, "the canonical form is longer than the input");
        assert_eq!(decode(&again, &limits), Ok(Some((value, again.len()))));
        if again == wire[..again.len()] {
            assert_eq!(again.len(), used, "canonical input, different byte count");
        }
    }

    let at_once = all_at_once(wire, &limits);
    let piecewise = piece_by_piece(pieces(k, wire), &limits);
    assert_eq!(at_once, piecewise);
});

/// Every complete value in `wire`, in order, until the bytes run out or an error.
fn all_at_once(mut wire: &[u8], limits: &Limits) -> Decoded {
    let mut values = Vec::new();
    while let Some((v, n)) = decode(wire, limits)? {
        values.push(v);
        wire = &wire[n..];
    }
    Ok(values)
}

/// The same, as a connection sees it: each read appended to a buffer, complete values
/// consumed from its front.
fn piece_by_piece(reads: Vec<&[u8]>, limits: &Limits) -> Decoded {
    let mut values = Vec::new();
    let mut buf = Vec::new();
    for read in reads {
        buf.extend_from_slice(read);
        while let Some((v, n)) = decode(&buf, limits)? {
            values.push(v);
            buf.drain(..n);
        }
    }
    Ok(values)
}
