//! The incremental UTF-8 validator for fragmented text (`ws::utf8::Utf8Validator`). Input: a
//! knob byte, then text bytes; the knob picks how they are cut into fragments.
//!
//! Invariants beyond "never panics":
//! - Each `feed` succeeds exactly when everything fed so far can still begin valid UTF-8
//!   (so it fails at the first fragment that makes the text invalid, as §8.1 asks, and never
//!   earlier), checked against `std::str::from_utf8`.
//! - After feeding everything, `finish` succeeds exactly when `std::str::from_utf8` accepts
//!   the concatenation; the answer does not depend on how the bytes were cut (one piece, byte
//!   by byte, or the knob's pieces), and a clone taken midway goes on the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livevote::ws::utf8::Utf8Validator;
use livevote_fuzz::{is_utf8_prefix, knob, pieces};

/// Feeds `parts` and returns whether the whole was accepted, checking each step.
fn validate(parts: &[&[u8]]) -> bool {
    let mut v = Utf8Validator::new();
    let mut so_far = 0;
    let mut all = Vec::new();
    let mut clone_at_half: Option<(Utf8Validator, usize)> = None;
    for (i, part) in parts.iter().enumerate() {
        if i == parts.len() / 2 {
            clone_at_half = Some((v.clone(), i));
        }
        all.extend_from_slice(part);
        so_far += part.len();
        let ok = v.feed(part).is_ok();
        assert_eq!(
            ok,
            is_utf8_prefix(&all),
            "feed disagrees after {so_far} bytes"
        );
        if !ok {
            if let Some((mut c, from)) = clone_at_half {
                let clone_ok = parts[from..=i].iter().all(|p| c.feed(p).is_ok());
                assert!(!clone_ok, "a clone accepted what the original refused");
            }
            return false;
        }
    }
    let ok = v.finish().is_ok();
    assert_eq!(ok, std::str::from_utf8(&all).is_ok(), "finish disagrees");
    if let Some((mut c, from)) = clone_at_half {
        assert!(parts[from..].iter().all(|p| c.feed(p).is_ok()));
        assert_eq!(c.finish().is_ok(), ok, "a clone finished differently");
    }
    ok
}

fuzz_target!(|data: &[u8]| {
    let (k, text) = knob(data);
    let whole = validate(&[text]);
    assert_eq!(whole, std::str::from_utf8(text).is_ok());
    let bytes: Vec<&[u8]> = text.chunks(1).collect();
    assert_eq!(validate(&bytes), whole, "byte by byte differs");
    assert_eq!(validate(&pieces(k, text)), whole, "pieces differ");
});
