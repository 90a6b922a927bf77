//! Incremental UTF-8 validation for text messages that arrive in fragments (RFC 6455 §5.6, §8.1).
//! Pure: bytes in, verdict out, no I/O and no buffering beyond the ≤3 bytes of a character split
//! across fragments. It fails as soon as a byte makes the text invalid, so a peer sending garbage
//! is closed with 1007 at the fragment that shows it, not after the whole message.

use std::str;

use super::error::Error;

/// Validates a byte stream fed in pieces. Feed every fragment of one message, then `finish`.
#[derive(Clone, Debug, Default)]
pub struct Utf8Validator {
    /// The start of a character cut off at the end of the last piece — a valid prefix of a
    /// sequence, so at most 3 bytes.
    pending: [u8; 4],
    pending_len: usize,
}

impl Utf8Validator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates the next piece. Fails if the bytes so far cannot begin any valid UTF-8 text:
    /// overlong forms, surrogates (U+D800–DFFF), code points above U+10FFFF, stray continuation
    /// bytes, and sequences that are already impossible though unfinished (`F4 90`).
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), Error> {
        // Finish the character the last piece cut off, one byte at a time so that a bad byte is
        // caught without looking further.
        while self.pending_len > 0 {
            let Some((&byte, rest)) = bytes.split_first() else {
                return Ok(());
            };
            bytes = rest;
            // In bounds: a pending prefix is at most 3 bytes long (see `store_tail`).
            self.pending[self.pending_len] = byte;
            self.pending_len += 1;
            match str::from_utf8(&self.pending[..self.pending_len]) {
                Ok(_) => self.pending_len = 0,
                Err(e) if e.error_len().is_some() => {
                    // Forget the bad character, so a caller that feeds on after an error
                    // (it should not) gets answers, not an index out of bounds.
                    self.pending_len = 0;
                    return Err(Error::InvalidUtf8);
                }
                Err(_) => {} // still a valid prefix
            }
        }
        // The bulk: std's validator is fast and checks each byte against the ones before it, so
        // `error_len() == None` means the tail is a genuine prefix of a character, never an
        // impossible one.
        match str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(Error::InvalidUtf8),
            Err(e) => {
                self.store_tail(&bytes[e.valid_up_to()..]);
                Ok(())
            }
        }
    }

    /// Succeeds if the text fed so far ends on a character boundary (the end of a message).
    pub fn finish(&self) -> Result<(), Error> {
        if self.pending_len == 0 {
            Ok(())
        } else {
            Err(Error::InvalidUtf8)
        }
    }

    /// Keeps an incomplete character: by `from_utf8`'s contract it is 1–3 bytes.
    fn store_tail(&mut self, tail: &[u8]) {
        debug_assert!(!tail.is_empty() && tail.len() < 4);
        self.pending[..tail.len()].copy_from_slice(tail);
        self.pending_len = tail.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(pieces: &[&[u8]]) -> Result<(), Error> {
        let mut v = Utf8Validator::new();
        for piece in pieces {
            v.feed(piece)?;
        }
        v.finish()
    }

    #[test]
    fn feeding_on_after_an_error_does_not_panic() {
        // Found by fuzzing `ws::inbox`: a 3-byte prefix, then a byte that breaks it, left 4
        // bytes "pending" and the next feed indexed past the buffer.
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xF0, 0x9F, 0x98]), Ok(()));
        assert_eq!(v.feed(&[0x41]), Err(Error::InvalidUtf8));
        let _ = v.feed(&[0x80, 0x80]);
    }

    /// True when `bytes` could still be the start of valid UTF-8.
    fn possible_prefix(bytes: &[u8]) -> bool {
        match str::from_utf8(bytes) {
            Ok(_) => true,
            Err(e) => e.error_len().is_none(),
        }
    }

    #[test]
    fn valid_text_split_at_every_pair_of_points() {
        let text = "a κόσμε € 𝄞 ÿ\u{10FFFF}\u{FFFF}\u{800}\u{80}z".as_bytes();
        for i in 0..=text.len() {
            for j in i..=text.len() {
                assert_eq!(
                    feed_all(&[&text[..i], &text[i..j], &text[j..]]),
                    Ok(()),
                    "{i} {j}"
                );
            }
        }
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(feed_all(&bytes), Ok(()));
        assert_eq!(feed_all(&[]), Ok(()));
    }

    #[test]
    fn autobahn_6_4_fails_at_the_surrogate() {
        // "κόσμε" then ED A0 80 (U+D800, a surrogate) then "edited": invalid at A0, byte 11.
        let bytes = [
            0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80,
            0x65, 0x64, 0x69, 0x74, 0x65, 0x64,
        ];
        let bad = 12;
        let mut v = Utf8Validator::new();
        for (i, b) in bytes.iter().enumerate() {
            let result = v.feed(&[*b]);
            if i < bad {
                assert_eq!(result, Ok(()), "byte {i}");
            } else {
                assert_eq!(result, Err(Error::InvalidUtf8), "byte {i}");
                break;
            }
        }
        // Split in two anywhere: the error comes with the piece that holds A0.
        for split in 0..=bytes.len() {
            let mut v = Utf8Validator::new();
            let first = v.feed(&bytes[..split]);
            if split > bad {
                assert_eq!(first, Err(Error::InvalidUtf8), "split {split}");
            } else {
                assert_eq!(first, Ok(()), "split {split}");
                assert_eq!(v.feed(&bytes[split..]), Err(Error::InvalidUtf8));
            }
        }
    }

    #[test]
    fn fails_fast_on_impossible_prefixes() {
        let cases: &[(&[u8], &str)] = &[
            (&[0xF4, 0x90], "above U+10FFFF"),
            (&[0xF5], "lead byte beyond U+10FFFF"),
            (&[0xFF], "never in UTF-8"),
            (&[0xC0], "overlong 2-byte lead"),
            (&[0xC1], "overlong 2-byte lead"),
            (&[0xE0, 0x80], "overlong 3-byte"),
            (&[0xF0, 0x8F], "overlong 4-byte"),
            (&[0xED, 0xBF], "surrogate"),
            (&[0x80], "stray continuation"),
            (&[0xE2, 0x41], "missing continuation"),
            (&[0xF0, 0x9F, 0x98, 0x41], "missing last continuation"),
        ];
        for (bytes, why) in cases {
            let mut v = Utf8Validator::new();
            assert_eq!(v.feed(bytes), Err(Error::InvalidUtf8), "{why}");
            // Byte at a time, it fails exactly at the last byte.
            let mut v = Utf8Validator::new();
            let (last, init) = bytes.split_last().unwrap();
            for b in init {
                assert_eq!(v.feed(&[*b]), Ok(()), "{why}");
            }
            assert_eq!(v.feed(&[*last]), Err(Error::InvalidUtf8), "{why}");
        }
    }

    #[test]
    fn truncated_at_the_end() {
        for bytes in [&b"ab\xE2\x82"[..], b"\xF4", b"\xF0\x9F\x98", b"\xCE"] {
            let mut v = Utf8Validator::new();
            assert_eq!(v.feed(bytes), Ok(()));
            assert_eq!(v.finish(), Err(Error::InvalidUtf8));
        }
        assert_eq!(feed_all(&[b"\xF4\x8F", b"\xBF\xBF"]), Ok(()));
        assert_eq!(feed_all(&[b"\xE2\x82", b"A"]), Err(Error::InvalidUtf8));
    }

    #[test]
    fn agrees_with_std_on_random_bytes_and_splits() {
        // Bytes drawn mostly from the interesting edges of UTF-8.
        const ALPHABET: [u8; 24] = [
            b'a', 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xCE, 0xDF, 0xE0, 0xE1,
            0xED, 0xEF, 0xF0, 0xF1, 0xF4, 0xF5, 0xFF, 0xBA, 0x83, 0xB5,
        ];
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..50_000 {
            let len = (next() % 12) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect();
            let mut v = Utf8Validator::new();
            let mut start = 0;
            let mut failed = false;
            while start < len {
                let end = start + 1 + (next() as usize % (len - start));
                let expected = possible_prefix(&bytes[..end]);
                assert_eq!(v.feed(&bytes[start..end]).is_ok(), expected, "{bytes:x?}");
                if !expected {
                    failed = true;
                    break;
                }
                start = end;
            }
            if !failed {
                assert_eq!(v.finish().is_ok(), str::from_utf8(&bytes).is_ok());
            }
        }
    }
}
