//! The polls registry in Redis: which polls the admin API made, shared by every instance.
//! `PREFIX:polls` is a hash, id → the poll's meta (`Meta::encode`'s text); a creation is
//! `HSETNX` (a taken id is taken on every instance) under `--max-polls` in one script, and
//! every creation or deletion adds an entry to `PREFIX:polls-changes`, a stream each instance
//! reads with one blocking `XREAD` ([`Registry::wait`]), so each starts and stops the polls
//! locally. A stream, as for votes: its entries survive a reconnect. What an instance runs is
//! always brought to the hash itself (read whole), so a missed or repeated entry costs nothing.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::scripts::Script;
use super::{Error, Settings};
use crate::redis::{Client, Value};

/// Entries kept in the changes stream: only the newest matters (it wakes the readers).
const CHANGES_KEPT: &str = "1000";
/// How long one `XREAD` of the changes blocks.
pub const BLOCK: Duration = Duration::from_millis(1000);

/// Registers a poll: taken (`ARGV[1]` is in the hash) → `taken`; the hash holds `ARGV[3]`
/// polls already → `full`; else the meta is kept and the change said.
/// KEYS: polls, polls-changes. ARGV: id, meta, most polls in the hash, entries kept.
const REGISTER: &str = r#"#!lua
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 'taken' end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return 'full' end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'op', 'create', 'id', ARGV[1])
return 'ok'
"#;

/// Unregisters a poll and says so (when it was there). KEYS: polls, polls-changes.
/// ARGV: id, entries kept. Reply: 1 if it was registered.
const UNREGISTER: &str = r#"#!lua
local gone = redis.call('HDEL', KEYS[1], ARGV[1])
if gone == 1 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'op', 'delete', 'id', ARGV[1])
end
return gone
"#;

/// What a registration did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registered {
    Ok,
    Taken,
    Full,
}

/// The registry's keys and a connection for creations, deletions and reads (called under the
/// polls' lock, one at a time).
pub struct Registry {
    client: Mutex<Client>,
    polls: String,
    changes: String,
    timeout: Duration,
}

impl Registry {
    pub fn new(settings: &Settings) -> Registry {
        Registry {
            client: Mutex::new(Client::new(settings.url.clone(), settings.options())),
            polls: format!("{}:polls", settings.prefix),
            changes: format!("{}:polls-changes", settings.prefix),
            timeout: settings.vote_timeout,
        }
    }

    fn keys(&self) -> [String; 2] {
        [self.polls.clone(), self.changes.clone()]
    }

    fn run(&self, script: &'static str, args: &[Vec<u8>]) -> Result<Value, Error> {
        let mut c = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        let deadline = Instant::now() + self.timeout;
        Script::new(script).run(&mut c, &self.keys(), args, deadline)
    }

    /// Keeps poll `id`'s `meta` unless the id is taken or the hash holds `most` polls.
    pub fn register(&self, id: &str, meta: &str, most: usize) -> Result<Registered, Error> {
        let args = [
            id.as_bytes().to_vec(),
            meta.as_bytes().to_vec(),
            most.to_string().into_bytes(),
            CHANGES_KEPT.as_bytes().to_vec(),
        ];
        let reply = self.run(REGISTER, &args)?;
        match reply.as_bytes() {
            Some(b"ok") => Ok(Registered::Ok),
            Some(b"taken") => Ok(Registered::Taken),
            Some(b"full") => Ok(Registered::Full),
            _ => Err(Error::Reply(format!("registering a poll: {reply:?}"))),
        }
    }

    /// Removes poll `id`'s keys (`keys`: one hash slot), then its entry: nobody starts it
    /// again, and no instance that still runs it for a moment can create it anew (it may
    /// not: `Target::create`). Returns whether it was registered.
    pub fn unregister(&self, id: &str, keys: &[String]) -> Result<bool, Error> {
        {
            let mut c = self.client.lock().unwrap_or_else(PoisonError::into_inner);
            let mut del: Vec<&[u8]> = vec![b"DEL"];
            del.extend(keys.iter().map(|k| k.as_bytes()));
            let r = c
                .call_by(&del, Instant::now() + self.timeout)
                .map_err(Error::Redis)?;
            if let Some(e) = r.error_message() {
                return Err(Error::Reply(e));
            }
        }
        let args = [id.as_bytes().to_vec(), CHANGES_KEPT.as_bytes().to_vec()];
        let reply = self.run(UNREGISTER, &args)?;
        Ok(matches!(reply, Value::Integer(1)))
    }

    /// Every registered poll: (id, meta), in no particular order.
    pub fn load(&self) -> Result<Vec<(String, String)>, Error> {
        let mut c = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        let reply = c
            .call_by(
                &[b"HGETALL", self.polls.as_bytes()],
                Instant::now() + self.timeout,
            )
            .map_err(Error::Redis)?;
        read_pairs(&reply).ok_or_else(|| Error::Reply(format!("the polls: {reply:?}")))
    }
}

/// The registry follower's side: its own connection, blocked on the changes stream.
pub struct Watch {
    client: Client,
    changes: String,
    timeout: Duration,
    /// The last entry seen; None: not read yet (or after a failure).
    last: Option<String>,
}

impl Watch {
    pub fn new(settings: &Settings) -> Watch {
        Watch {
            client: Client::new(settings.url.clone(), settings.options()),
            changes: format!("{}:polls-changes", settings.prefix),
            timeout: settings.vote_timeout,
            last: None,
        }
    }

    /// Waits up to [`BLOCK`] for a creation or deletion after the last one seen. True: the
    /// registry may have changed (something came, or this is the first read since a
    /// failure, after which the caller reads the registry whole).
    pub fn wait(&mut self) -> Result<bool, Error> {
        let deadline = Instant::now() + self.timeout + BLOCK;
        let Some(last) = self.last.clone() else {
            let r = self
                .client
                .call_by(
                    &[
                        b"XREVRANGE",
                        self.changes.as_bytes(),
                        b"+",
                        b"-",
                        b"COUNT",
                        b"1",
                    ],
                    deadline,
                )
                .map_err(Error::Redis)?;
            self.last = Some(last_id(&r).unwrap_or_else(|| "0-0".to_string()));
            return Ok(true);
        };
        let block = BLOCK.as_millis().to_string();
        let r = self.client.call_by(
            &[
                b"XREAD",
                b"BLOCK",
                block.as_bytes(),
                b"STREAMS",
                self.changes.as_bytes(),
                last.as_bytes(),
            ],
            deadline,
        );
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                self.last = None;
                return Err(Error::Redis(e));
            }
        };
        if let Some(e) = r.error_message() {
            self.last = None;
            return Err(Error::Reply(e));
        }
        // XREAD: [[key, [[id, fields], …]]]
        let newest = match &r {
            Value::Array(streams) => streams.iter().find_map(|s| match s {
                Value::Array(kv) => kv.get(1).and_then(last_id),
                _ => None,
            }),
            _ => None,
        };
        match newest {
            Some(id) => {
                self.last = Some(id);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// The id of the last entry of a list of stream entries (`XRANGE`'s, or one stream's of
/// `XREAD`); for `XREVRANGE … COUNT 1`, its only one.
fn last_id(v: &Value) -> Option<String> {
    let Value::Array(list) = v else { return None };
    let Value::Array(e) = list.last()? else {
        return None;
    };
    let id = e.first()?.as_bytes()?;
    std::str::from_utf8(id).ok().map(str::to_string)
}

fn read_pairs(v: &Value) -> Option<Vec<(String, String)>> {
    let Value::Array(items) = v else { return None };
    if items.len() % 2 != 0 {
        return None;
    }
    items
        .chunks(2)
        .map(|p| {
            let t = |v: &Value| Some(std::str::from_utf8(v.as_bytes()?).ok()?.to_string());
            Some((t(&p[0])?, t(&p[1])?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::Bulk(s.as_bytes().to_vec())
    }

    #[test]
    fn replies_read() {
        let entries = Value::Array(vec![
            Value::Array(vec![bulk("1-0"), Value::Array(vec![])]),
            Value::Array(vec![bulk("2-1"), Value::Array(vec![])]),
        ]);
        assert_eq!(last_id(&entries).as_deref(), Some("2-1"));
        assert_eq!(last_id(&Value::Array(vec![])), None);
        assert_eq!(
            read_pairs(&Value::Array(vec![bulk("a"), bulk("m")])),
            Some(vec![("a".into(), "m".into())])
        );
        assert_eq!(read_pairs(&Value::Array(vec![bulk("a")])), None);
    }
}
