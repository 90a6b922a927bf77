//! The Redis key layout of one poll. Every key of a poll carries the same Cluster hash tag,
//! `{poll:ID}`, so a poll's keys sit in one hash slot: a script may touch them all on a Redis
//! Cluster, and many polls spread over the slots. The default poll is `default`; the polls the
//! admin API makes have theirs, and the registry of them is under the prefix alone:
//!
//! ```text
//! PREFIX:polls           hash    poll id → its meta (`Meta::encode`), every poll but default
//! PREFIX:polls-changes   stream  one entry per creation or deletion (op, id)
//! PREFIX:secret          string  signs voter and admin cookies (made once, SET NX)
//! PREFIX:admin-token     string  the admin token, when none is given (made once, SET NX)
//! ```
//!
//! A poll's keys:
//!
//! ```text
//! PREFIX:{poll:default}:epoch        string   names this history of votes
//! PREFIX:{poll:default}:candidates   list     uid, name, uid, name, … in display order
//! PREFIX:{poll:default}:counts       hash     uid → votes
//! PREFIX:{poll:default}:version      string   the last version (one per vote)
//! PREFIX:{poll:default}:changes      stream   one entry per batch: id LAST-VERSION-0, fields
//!                                             f (first version), then u (uid), c (count) per vote
//!                                             (a ballot: v voter first; moved: m uid, n count
//!                                             after), or k NAME per mark
//! PREFIX:{poll:default}:state        string   open (absent) or closed
//! PREFIX:{poll:default}:voters       hash     voter → the uid they stand on (once, change,
//!                                             after_vote)
//! PREFIX:{poll:default}:vote-ids     hash     vote id → "uid count version"
//! PREFIX:{poll:default}:vote-expiry  zset     vote id → when it expires (ms, Redis's clock)
//! PREFIX:{poll:default}:presence:instances  zset  instance → expiry (ms, Redis's clock)
//! PREFIX:{poll:default}:presence:connected  hash  INSTANCE:ws / INSTANCE:sse → viewers
//! PREFIX:{poll:default}:presence:longpoll   zset  viewer id → expiry
//! PREFIX:{poll:default}:presence:poll       zset  viewer id → expiry
//! ```

/// The poll every instance serves today.
pub const DEFAULT_POLL: &str = "default";

/// Key names for one poll under one prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    base: String,
}

impl Keys {
    pub fn new(prefix: &str, poll: &str) -> Keys {
        Keys {
            base: format!("{prefix}:{{poll:{poll}}}"),
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.base)
    }

    pub fn epoch(&self) -> String {
        self.key("epoch")
    }
    pub fn candidates(&self) -> String {
        self.key("candidates")
    }
    pub fn counts(&self) -> String {
        self.key("counts")
    }
    pub fn version(&self) -> String {
        self.key("version")
    }
    pub fn changes(&self) -> String {
        self.key("changes")
    }
    pub fn state(&self) -> String {
        self.key("state")
    }
    pub fn voters(&self) -> String {
        self.key("voters")
    }
    pub fn vote_ids(&self) -> String {
        self.key("vote-ids")
    }
    pub fn vote_expiry(&self) -> String {
        self.key("vote-expiry")
    }
    pub fn instances(&self) -> String {
        self.key("presence:instances")
    }
    pub fn connected(&self) -> String {
        self.key("presence:connected")
    }
    pub fn longpoll(&self) -> String {
        self.key("presence:longpoll")
    }
    pub fn poll(&self) -> String {
        self.key("presence:poll")
    }

    /// What [`super::scripts::OPEN`] takes: the tally, the state and the voters.
    pub fn open(&self) -> Vec<String> {
        let mut k = self.tally().to_vec();
        k.push(self.state());
        k.push(self.voters());
        k
    }

    /// Every key of the poll (what deleting it removes).
    pub fn all(&self) -> Vec<String> {
        let mut k = self.open();
        k.extend([
            self.vote_ids(),
            self.vote_expiry(),
            self.instances(),
            self.connected(),
            self.longpoll(),
            self.poll(),
        ]);
        k
    }

    /// The tally's keys, in the order the scripts take them.
    pub fn tally(&self) -> [String; 5] {
        [
            self.epoch(),
            self.candidates(),
            self.counts(),
            self.version(),
            self.changes(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_poll_has_its_hash_tag() {
        let k = Keys::new("livevote", DEFAULT_POLL);
        assert_eq!(k.epoch(), "livevote:{poll:default}:epoch");
        assert_eq!(k.vote_ids(), "livevote:{poll:default}:vote-ids");
        assert_eq!(k.all().len(), 13);
        for key in k.all() {
            // Redis Cluster hashes only what is inside the first {…}.
            let tag = &key[key.find('{').unwrap() + 1..key.find('}').unwrap()];
            assert_eq!(tag, "poll:default", "{key}");
        }
    }
}
