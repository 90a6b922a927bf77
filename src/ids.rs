//! The one owner of id rules. Candidate ids, vote ids, viewer ids and epochs travel in URLs, form
//! fields, JSON, element ids, SSE event ids and journal records, so they are all plain: 1 to N
//! bytes of `A-Z a-z 0-9 _ -` (no escaping anywhere, no separator clash with `EPOCH-VERSION`
//! except the `-`, which event ids split at the last one). Pure: no I/O.
//!
//! The vote page (`www/vote.js`) makes viewer and vote ids in the browser; a test here checks
//! that its copy of the pattern is this module's.

/// One kind of id: its length bounds, in bytes (every allowed byte is ASCII).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdRule {
    pub what: &'static str,
    pub min: usize,
    pub max: usize,
}

/// A candidate (`--candidate ID=NAME`; `uid`/`nid` in votes).
pub const CANDIDATE: IdRule = IdRule {
    what: "candidate id",
    min: 1,
    max: 32,
};
/// A client's id for one vote, so a retry counts once (a UUID fits).
pub const VOTE: IdRule = IdRule {
    what: "vote id",
    min: 1,
    max: 64,
};
/// A polling page's id for presence (`viewer=`): at least 8, so it is not guessed by chance.
pub const VIEWER: IdRule = IdRule {
    what: "viewer id",
    min: 8,
    max: 64,
};
/// A poll (`/p/ID`, the API's `id`).
pub const POLL: IdRule = IdRule {
    what: "poll id",
    min: 1,
    max: 32,
};

/// An epoch, the name of one run of the tally (generated: 16 hex digits).
pub const EPOCH: IdRule = IdRule {
    what: "epoch",
    min: 1,
    max: 32,
};
/// A voter of a one-vote-per-voter poll (kept with the candidate they stand on, in the journal
/// and its checkpoints): as long as a vote id, so a viewer id or a UUID fits.
pub const VOTER: IdRule = IdRule {
    what: "voter id",
    min: 1,
    max: 64,
};

/// The bytes every id is made of.
pub fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

impl IdRule {
    /// `s` follows the rule.
    pub fn accepts(&self, s: &str) -> bool {
        self.accepts_bytes(s.as_bytes())
    }

    pub fn accepts_bytes(&self, b: &[u8]) -> bool {
        (self.min..=self.max).contains(&b.len()) && b.iter().all(|&c| is_id_byte(c))
    }

    /// `bytes` as an id, if they follow the rule (for decoders of stored bytes).
    pub fn parse<'a>(&self, bytes: &'a [u8]) -> Option<&'a str> {
        if self.accepts_bytes(bytes) {
            // Only ASCII bytes pass, so this cannot fail.
            std::str::from_utf8(bytes).ok()
        } else {
            None
        }
    }

    /// What the rule says, for error messages: `candidate id must be 1-32 of A-Z a-z 0-9 _ -`.
    pub fn describe(&self) -> String {
        format!(
            "{} must be {}-{} of A-Z a-z 0-9 _ -",
            self.what, self.min, self.max
        )
    }

    /// The same rule as a JavaScript regular expression, as `www/vote.js` writes it.
    pub fn js_pattern(&self) -> String {
        format!("/^[A-Za-z0-9_-]{{{},{}}}$/", self.min, self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_accept_exactly_their_alphabet_and_lengths() {
        for rule in [CANDIDATE, VOTE, VIEWER, EPOCH, POLL] {
            assert!(rule.accepts(&"a".repeat(rule.min)), "{rule:?}");
            assert!(rule.accepts(&"Z9_-".repeat(16)[..rule.max]), "{rule:?}");
            assert!(!rule.accepts(&"a".repeat(rule.max + 1)), "{rule:?}");
            assert!(!rule.accepts(&"a".repeat(rule.min - 1)), "{rule:?}");
            for bad in [" ", ".", "/", "é", "%", "+", "\0", ":"] {
                let s = format!("{}{bad}", "a".repeat(rule.min));
                assert!(!rule.accepts(&s), "{rule:?} {s:?}");
                assert_eq!(rule.parse(s.as_bytes()), None);
            }
            assert_eq!(rule.parse(b"abcdefgh"), Some("abcdefgh"));
        }
        assert!(VOTE.accepts("123e4567-e89b-12d3-a456-426614174000"));
        assert_eq!(
            CANDIDATE.describe(),
            "candidate id must be 1-32 of A-Z a-z 0-9 _ -"
        );
    }

    #[test]
    fn voter_ids_are_as_long_as_vote_ids() {
        assert!(VOTER.accepts("v") && VOTER.accepts(&"Z9_-".repeat(16)));
        assert!(!VOTER.accepts("") && !VOTER.accepts(&"a".repeat(65)) && !VOTER.accepts("a b"));
    }

    #[test]
    fn the_vote_page_uses_the_same_viewer_id_rule() {
        let js = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/www/vote.js"))
            .expect("www/vote.js");
        let pattern = VIEWER.js_pattern();
        assert!(
            js.contains(&pattern),
            "www/vote.js must check kept viewer ids with {pattern}"
        );
    }
}
