//! The chunked transfer-coding decoder (`http::chunked::Decoder`). Input: a knob byte, then a
//! body as it arrives after a `Transfer-Encoding: chunked` head. The knob picks the body limit
//! (bits 5–7) and how the bytes are cut into reads (see `livevote_fuzz::pieces`).
//!
//! Invariants beyond "never panics":
//! - Feeding everything at once, one byte at a time, and in the knob's pieces (each time
//!   keeping the unconsumed bytes in a buffer, as `http::conn` does) gives the same outcome:
//!   the same body, the same bytes consumed, or the same error.
//! - The body never exceeds the limit; what is consumed never exceeds what was given.
//! - A decoded body, chunked again by us, decodes to itself.
//! - Strict framing (RFC 9112 §7.1): a finished body ends in CRLF CRLF (the last chunk's or
//!   last trailer's line, then the empty line), never in a bare LF.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livevote::http::chunked::Decoder;
use livevote::http::Error;
use livevote_fuzz::{knob, pieces};

const LIMITS: [usize; 8] = [64 * 1024, 0, 1, 5, 16, 255, 4096, 1 << 20];

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The last chunk and trailers have arrived; `consumed` bytes of the input were used.
    Done {
        body: Vec<u8>,
        consumed: usize,
    },
    /// Input ran out first.
    Pending {
        body: Vec<u8>,
    },
    Failed(Error),
}

/// Feeds `reads` in order, keeping unconsumed bytes for the next call, as `http::conn` does.
fn decode(reads: &[&[u8]], max: usize) -> Outcome {
    let mut dec = Decoder::new(max);
    let mut buf: Vec<u8> = Vec::new();
    let mut consumed = 0;
    for read in reads {
        buf.extend_from_slice(read);
        let used = match dec.feed(&buf) {
            Ok(used) => used,
            Err(e) => return Outcome::Failed(e),
        };
        assert!(used <= buf.len(), "used {used} of {}", buf.len());
        assert!(dec.body.len() <= max, "body {} over {max}", dec.body.len());
        buf.drain(..used);
        consumed += used;
        if dec.is_done() {
            return Outcome::Done {
                body: dec.body,
                consumed,
            };
        }
    }
    Outcome::Pending { body: dec.body }
}

fuzz_target!(|data: &[u8]| {
    let (k, body) = knob(data);
    let max = LIMITS[usize::from(k >> 5)];

    let whole = decode(&[body], max);
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    assert_eq!(
        decode(&bytes, max),
        whole,
        "byte at a time differs from one read"
    );
    assert_eq!(
        decode(&pieces(k, body), max),
        whole,
        "pieces differ from one read"
    );

    if let Outcome::Done {
        body: decoded,
        consumed,
    } = &whole
    {
        assert!(*consumed <= body.len());
        assert!(
            body[..*consumed].ends_with(b"\r\n\r\n"),
            "a finished body that does not end in CRLF CRLF"
        );
        // Chunk it again, in chunks of a size the knob picks, and decode that.
        let size = 1 + usize::from(k & 0x1f);
        let mut wire = Vec::new();
        for chunk in decoded.chunks(size) {
            wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            wire.extend_from_slice(chunk);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        let again = Outcome::Done {
            body: decoded.clone(),
            consumed: wire.len(),
        };
        assert_eq!(decode(&[&wire], max), again, "re-chunked body differs");
    }
});
