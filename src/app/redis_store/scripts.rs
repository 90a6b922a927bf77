//! The Lua scripts that change a poll's keys atomically, and the pure readers of their replies
//! (tested on values, no I/O). Each script is sent by its SHA-1 (`EVALSHA`), and whole
//! (`EVAL`) only when Redis answers `NOSCRIPT` (a restarted or flushed script cache): a
//! `NOSCRIPT` reply means the script did not run, so sending it again is safe.
//!
//! The scripts start with `#!lua` (Redis 7's script flags, none given): Redis then treats them
//! as writers and refuses them whole, before they run, when it is over `maxmemory` — a vote
//! is never half applied for want of memory. Redis 7.0 or later (or Valkey) is needed.

use std::time::Instant;

use super::Error;
use crate::app::store::{Mark, Outcome, Streamed};
use crate::redis::{Client, Value};

/// A script and its SHA-1, computed here (the same as Redis's `SCRIPT LOAD` would return).
pub struct Script {
    pub source: &'static str,
    sha: String,
}

impl Script {
    pub fn new(source: &'static str) -> Script {
        Script {
            source,
            sha: sha1_smol::Sha1::from(source).digest().to_string(),
        }
    }

    pub fn sha(&self) -> &str {
        &self.sha
    }

    /// Runs the script on `keys` and `args` by `deadline`. An error reply is returned as
    /// [`Error::Reply`].
    pub fn run(
        &self,
        client: &mut Client,
        keys: &[String],
        args: &[Vec<u8>],
        deadline: Instant,
    ) -> Result<Value, Error> {
        let n = keys.len().to_string();
        let mut cmd: Vec<&[u8]> = Vec::with_capacity(3 + keys.len() + args.len());
        cmd.push(b"EVALSHA");
        cmd.push(self.sha.as_bytes());
        cmd.push(n.as_bytes());
        cmd.extend(keys.iter().map(|k| k.as_bytes()));
        cmd.extend(args.iter().map(Vec::as_slice));
        let reply = client.call_by(&cmd, deadline).map_err(Error::Redis)?;
        let reply = match reply.error_message() {
            Some(e) if e.starts_with("NOSCRIPT") => {
                cmd[0] = b"EVAL";
                cmd[1] = self.source.as_bytes();
                client.call_by(&cmd, deadline).map_err(Error::Redis)?
            }
            _ => reply,
        };
        match reply.error_message() {
            Some(e) => Err(Error::Reply(e)),
            None => Ok(reply),
        }
    }
}

/// Creates the poll if Redis does not have it (no epoch: a new Redis, or one restarted
/// without persistence): a new epoch `ARGV[1]`, the candidates `ARGV[2..]` (uid, name, …)
/// at zero, version 0, no changes, open, no voters. With `ARGV[1]` empty nothing is created:
/// a poll made by the admin API is created once, by the instance that made it, so a lagging
/// instance never brings back a deleted one (error `LVNOPOLL`). Then reads the whole poll, in
/// one step.
/// KEYS: epoch, candidates, counts, version, changes, state, voters.
/// Reply: {epoch, version, {uid, name, …}, {uid, count, …}, state, {voter, uid, …}}.
pub const OPEN: &str = r#"#!lua
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[1] == '' then return redis.error_reply('LVNOPOLL the poll is not in Redis') end
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
  redis.call('SET', KEYS[1], ARGV[1])
  for i = 2, #ARGV, 2 do
    redis.call('RPUSH', KEYS[2], ARGV[i], ARGV[i + 1])
    redis.call('HSET', KEYS[3], ARGV[i], 0)
  end
  redis.call('SET', KEYS[4], 0)
end
return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[4]) or '0',
        redis.call('LRANGE', KEYS[2], 0, -1), redis.call('HGETALL', KEYS[3]),
        redis.call('GET', KEYS[6]) or 'open', redis.call('HGETALL', KEYS[7])}
"#;

/// Counts a batch of votes, in order, each atomically with its history entry and its vote id
/// record: a vote id already recorded (by any instance, within its window, or earlier in the
/// batch) is answered with its first outcome and counts nothing; an unknown candidate counts
/// nothing. Vote ids are a hash (id → "uid count version") and a sorted set by expiry (Redis's
/// clock), at most `max ids` of them: when full of ids still inside their window, a new id is
/// refused with the time until the oldest expires. Each run expires at most 256 old ids
/// (bounded work); an expired id not yet removed counts as absent.
///
/// The batch costs a fixed number of Redis commands, not a few per vote: it reads the counts,
/// the version and its vote ids' records once, counts in Lua, and writes each changed key once
/// — one stream entry for the whole batch (id: its last version; fields `f` its first version,
/// then `u`/`c` per vote, in order), trimmed by version (`MINID`) so the stream keeps the last
/// `keep` votes however the batches fall. Profiled on `appendfsync always` with three
/// instances, the script with four commands per vote spent ~17 µs of Redis per vote in Lua and
/// in writing each command to the AOF.
///
/// Polls with voters and states ride on the same run, at no cost to plain votes: the batch's
/// ballots and marks are listed after its votes (by index), and only they read or write the
/// voters hash and the state. Redis is the authority across instances (each instance's vote
/// table only orders its own voters): a closed poll refuses votes (`X`); a `once` voter who
/// has voted, on any instance, is answered their choice (`A`); a `change` voter who moves
/// takes −1 from the old option and +1 to the new in one version (`M`; the stream entry adds
/// `m`/`n`, the old option and its count, after the vote's `c`); voting again for the option
/// one stands on changes nothing (`R`, the current count). A ballot's entry names its voter
/// (`v` before its `u`), so every copy knows who stands where. A mark is a version of its
/// own (`k` and its name in the entry): `closed`/`opened` set the state; `reset` zeroes the
/// counts and forgets every voter.
/// KEYS: epoch, candidates, counts, version, changes, vote-id records, vote-id expiries, state,
/// voters.
/// ARGV: window ms, votes kept in the stream, max ids, n, the caller's version `after`, the
/// most tail entries, then per vote: uid, vote id ('' for none); then the poll's mode
/// (`unlimited`, `once`, `change`), its most voters, and the extras: their number, then per
/// extra its vote's index (from 0), `b` and the voter (a ballot) or `k` and the mark's name.
/// Reply: {epoch, tail, per vote {'C', count, version} | {'M', count, version, from uid, its
/// count} | {'R', uid, count, version} | {'U'} | {'F', ms until room} | {'X'} | {'A', uid} |
/// {'V'}}, where tail is the stream's entries after version `after` (every instance's changes
/// since the caller's copy, this batch's included), at most the cap: the caller's copy
/// catches up to its own votes from the reply, without a round trip.
/// Without an epoch (Redis lost the poll) nothing runs: error `LVNOPOLL`.
pub const VOTE: &str = r#"#!lua
local epoch = redis.call('GET', KEYS[1])
if not epoch then return redis.error_reply('LVNOPOLL the poll is not in Redis') end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local old = redis.call('ZRANGEBYSCORE', KEYS[7], '-inf', now, 'LIMIT', 0, 256)
if #old > 0 then
  redis.call('HDEL', KEYS[6], unpack(old))
  redis.call('ZREM', KEYS[7], unpack(old))
end
local window, keep = tonumber(ARGV[1]), tonumber(ARGV[2])
local max_ids, n = tonumber(ARGV[3]), tonumber(ARGV[4])
local counts, flat = {}, redis.call('HGETALL', KEYS[3])
for k = 1, #flat, 2 do counts[flat[k]] = tonumber(flat[k + 1]) end
local version = tonumber(redis.call('GET', KEYS[4]) or '0')
local base = 7 + 2 * n
local mode, max_voters = ARGV[base] or 'unlimited', tonumber(ARGV[base + 1] or '0')
local extra = {}
for j = 0, tonumber(ARGV[base + 2] or '0') - 1 do
  local p = base + 3 + 3 * j
  extra[tonumber(ARGV[p])] = {ARGV[p + 1], ARGV[p + 2]}
end
local closed = redis.call('GET', KEYS[8]) == 'closed'
local state, wiped, stands, vwrites, nvoters = nil, false, {}, {}, nil
local function standing(v)
  if stands[v] == nil then stands[v] = (not wiped and redis.call('HGET', KEYS[9], v)) or false end
  return stands[v]
end
-- The batch's vote ids: their records (live ones answer a retry) and whether each is in the
-- expiry set (one there, even expired, takes no new room).
local ids, seen = {}, {}
for k = 0, n - 1 do
  local id = ARGV[8 + 2 * k]
  if id ~= '' and not seen[id] then seen[id] = true; ids[#ids + 1] = id end
end
local prior, listed, held = {}, {}, 0
if #ids > 0 then
  local recs = redis.call('HMGET', KEYS[6], unpack(ids))
  local exps = redis.call('ZMSCORE', KEYS[7], unpack(ids))
  for k = 1, #ids do
    if exps[k] then
      listed[ids[k]] = true
      if recs[k] and tonumber(exps[k]) > now then prior[ids[k]] = recs[k] end
    end
  end
  held = redis.call('ZCARD', KEYS[7])
end
local out = {epoch, {}}
local first = version + 1
local entry, changed, records, expiries = {}, {}, {}, {}
for k = 0, n - 1 do
  local uid, id = ARGV[7 + 2 * k], ARGV[8 + 2 * k]
  local x = extra[k]
  local p = id ~= '' and prior[id]
  local voter = x and x[1] == 'b' and x[2]
  local from, stood = nil, nil
  if voter and not p and not closed and counts[uid] then
    stood = standing(voter)
    if mode ~= 'unlimited' and stood then
      if mode == 'once' then
        p = 'A'
      elseif stood == uid then
        p = 'S'
      else
        from = stood
      end
    elseif mode ~= 'unlimited' then
      if nvoters == nil then nvoters = wiped and 0 or redis.call('HLEN', KEYS[9]) end
      if nvoters >= max_voters then p = 'V' end
    end
  end
  if p == 'A' then
    out[#out + 1] = {'A', stood}
  elseif p == 'S' then
    out[#out + 1] = {'R', uid, counts[uid], version}
  elseif p == 'V' then
    out[#out + 1] = {'V'}
  elseif p then
    local u, c, v = string.match(p, '^(%S+) (%d+) (%d+)$')
    out[#out + 1] = {'R', u, c, v}
  elseif x and x[1] == 'k' then
    version = version + 1
    if x[2] == 'closed' then closed = true; state = 'closed'
    elseif x[2] == 'opened' then closed = false; state = 'open'
    else
      for u in pairs(counts) do counts[u] = 0; changed[u] = true end
      wiped, stands, vwrites, nvoters = true, {}, {}, 0
    end
    entry[#entry + 1] = 'k'; entry[#entry + 1] = x[2]
    out[#out + 1] = {'C', 0, version}
  elseif closed then
    out[#out + 1] = {'X'}
  elseif not counts[uid] then
    out[#out + 1] = {'U'}
  elseif id ~= '' and held >= max_ids and not listed[id] then
    local wait = window
    local oldest = redis.call('ZRANGE', KEYS[7], 0, 0, 'WITHSCORES')
    if oldest[2] then wait = math.max(1, tonumber(oldest[2]) - now) end
    out[#out + 1] = {'F', wait}
  else
    local c = counts[uid] + 1
    counts[uid] = c
    changed[uid] = true
    version = version + 1
    if voter then
      entry[#entry + 1] = 'v'; entry[#entry + 1] = voter
      stands[voter] = uid; vwrites[voter] = uid
      if not stood and nvoters then nvoters = nvoters + 1 end
    end
    entry[#entry + 1] = 'u'; entry[#entry + 1] = uid
    entry[#entry + 1] = 'c'; entry[#entry + 1] = tostring(c)
    if from then
      local fc = math.max(0, (counts[from] or 0) - 1)
      counts[from] = fc
      changed[from] = true
      entry[#entry + 1] = 'm'; entry[#entry + 1] = from
      entry[#entry + 1] = 'n'; entry[#entry + 1] = tostring(fc)
      out[#out + 1] = {'M', c, version, from, fc}
    else
      out[#out + 1] = {'C', c, version}
    end
    if id ~= '' then
      local rec = uid .. ' ' .. c .. ' ' .. version
      prior[id] = rec
      records[#records + 1] = id; records[#records + 1] = rec
      expiries[#expiries + 1] = now + window; expiries[#expiries + 1] = id
      if not listed[id] then listed[id] = true; held = held + 1 end
    end
  end
end
if version >= first then
  local fields = {}
  for uid in pairs(changed) do fields[#fields + 1] = uid; fields[#fields + 1] = counts[uid] end
  if #fields > 0 then redis.call('HSET', KEYS[3], unpack(fields)) end
  redis.call('SET', KEYS[4], version)
  if wiped then redis.call('DEL', KEYS[9]) end
  if state then redis.call('SET', KEYS[8], state) end
  local vw = {}
  for v, u in pairs(vwrites) do vw[#vw + 1] = v; vw[#vw + 1] = u end
  if #vw > 0 then redis.call('HSET', KEYS[9], unpack(vw)) end
  redis.call('XADD', KEYS[5], 'MINID', '~', math.max(0, version - keep), version .. '-0',
             'f', first, unpack(entry))
  if #records > 0 then
    redis.call('HSET', KEYS[6], unpack(records))
    redis.call('ZADD', KEYS[7], unpack(expiries))
  end
end
out[2] = redis.call('XRANGE', KEYS[5], '(' .. ARGV[5] .. '-0', '+', 'COUNT', ARGV[6])
return out
"#;

/// Starts a new epoch when Redis's version went back below one an instance had seen in the
/// same epoch (Redis lost acknowledged writes: `appendfsync everysec` and a crash): those
/// versions would be reused for other votes, so cursors holding them must not stay valid.
/// Only if the epoch is still `ARGV[1]` and the version still below `ARGV[2]`.
/// KEYS: epoch, version. ARGV: epoch seen, version seen, new epoch. Reply: the epoch now.
pub const NEW_EPOCH_IF_BEHIND: &str = r#"#!lua
local v = tonumber(redis.call('GET', KEYS[2]) or '0')
if redis.call('GET', KEYS[1]) == ARGV[1] and v < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[3])
end
return redis.call('GET', KEYS[1])
"#;

/// Presence over every instance, on Redis's clock (instances need no synchronised clocks):
/// this instance's connected viewers with a time-to-live (an instance that dies drops out),
/// polling viewers by id with theirs, and the totals.
/// KEYS: instances, connected, longpoll, poll.
/// ARGV: instance id, instance ttl ms, viewer ttl ms, ws, sse, then three lists, each a count
/// and ids: long-polling viewers seen, polling viewers seen, viewers forgotten.
/// Reply: {ws, sse, longpoll, poll}.
pub const PRESENCE: &str = r#"#!lua
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local me = ARGV[1]
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), me)
redis.call('HSET', KEYS[2], me .. ':ws', ARGV[4], me .. ':sse', ARGV[5])
for _, dead in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  redis.call('HDEL', KEYS[2], dead .. ':ws', dead .. ':sse')
  redis.call('ZREM', KEYS[1], dead)
end
local expires = now + tonumber(ARGV[3])
local p = 6
for z = 3, 4 do
  local n = tonumber(ARGV[p])
  for k = 1, n do
    redis.call('ZADD', KEYS[z], expires, ARGV[p + k])
    redis.call('ZREM', KEYS[7 - z], ARGV[p + k])
  end
  p = p + n + 1
end
local n = tonumber(ARGV[p])
for k = 1, n do
  redis.call('ZREM', KEYS[3], ARGV[p + k])
  redis.call('ZREM', KEYS[4], ARGV[p + k])
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
local ws, sse = 0, 0
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  if string.sub(all[i], -3) == ':ws' then ws = ws + tonumber(all[i + 1])
  else sse = sse + tonumber(all[i + 1]) end
end
return {ws, sse, redis.call('ZCARD', KEYS[3]), redis.call('ZCARD', KEYS[4])}
"#;

/// The whole poll as Redis has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollState {
    pub epoch: String,
    pub version: u64,
    pub candidates: Vec<(String, String)>,
    pub counts: Vec<(String, u64)>,
    /// Its state is `closed`.
    pub closed: bool,
    /// (voter, uid) for every voter it remembers.
    pub voters: Vec<(String, String)>,
}

fn bad(what: &str, v: &Value) -> Error {
    Error::Reply(format!("unexpected reply to {what}: {v:?}"))
}

fn text(v: &Value) -> Option<String> {
    v.as_bytes()
        .and_then(|b| std::str::from_utf8(b).ok())
        .map(str::to_string)
}

/// A number sent as an integer or as its digits.
fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Integer(n) => u64::try_from(*n).ok(),
        _ => text(v)?.parse().ok(),
    }
}

/// Pairs of a flat array (`uid, name, …`).
fn pairs<T>(v: &Value, second: impl Fn(&Value) -> Option<T>) -> Option<Vec<(String, T)>> {
    let Value::Array(items) = v else { return None };
    if items.len() % 2 != 0 {
        return None;
    }
    items
        .chunks(2)
        .map(|p| Some((text(&p[0])?, second(&p[1])?)))
        .collect()
}

/// Reads [`OPEN`]'s reply.
pub fn read_open(v: &Value) -> Result<PollState, Error> {
    let read = || {
        let Value::Array(a) = v else { return None };
        let (rest, closed, voters) = match a.as_slice() {
            [rest @ .., state, voters] if a.len() == 6 => {
                (rest, text(state)? == "closed", pairs(voters, text)?)
            }
            rest => (rest, false, Vec::new()),
        };
        let [epoch, version, candidates, counts] = rest else {
            return None;
        };
        Some(PollState {
            epoch: text(epoch)?,
            version: number(version)?,
            candidates: pairs(candidates, text)?,
            counts: pairs(counts, number)?,
            closed,
            voters,
        })
    };
    read().ok_or_else(|| bad("the poll", v))
}

/// What [`VOTE`] answered: the epoch, the stream's tail after the caller's version, and one
/// outcome per vote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoteReply {
    pub epoch: String,
    pub tail: Vec<StreamChange>,
    pub outcomes: Vec<Outcome>,
}

/// Reads [`VOTE`]'s reply for `n` votes.
pub fn read_vote(v: &Value, n: usize) -> Result<VoteReply, Error> {
    let read = || {
        let Value::Array(a) = v else { return None };
        let [epoch, Value::Array(tail), outcomes @ ..] = a.as_slice() else {
            return None;
        };
        if outcomes.len() != n {
            return None;
        }
        let outcomes = outcomes
            .iter()
            .map(|o| {
                let Value::Array(f) = o else { return None };
                match (text(f.first()?)?.as_str(), f.len()) {
                    ("C", 3) => Some(Outcome::Counted {
                        count: number(&f[1])?,
                        version: number(&f[2])?,
                    }),
                    ("R", 4) => Some(Outcome::Replayed {
                        uid: text(&f[1])?,
                        count: number(&f[2])?,
                        version: number(&f[3])?,
                    }),
                    ("M", 5) => Some(Outcome::Moved {
                        count: number(&f[1])?,
                        version: number(&f[2])?,
                        from: (text(&f[3])?, number(&f[4])?),
                    }),
                    ("U", 1) => Some(Outcome::UnknownCandidate),
                    ("X", 1) => Some(Outcome::Closed),
                    ("A", 2) => Some(Outcome::AlreadyVoted { uid: text(&f[1])? }),
                    ("V", 1) => Some(Outcome::VotersFull),
                    ("F", 2) => Some(Outcome::VoteIdsFull {
                        retry_after_ms: number(&f[1])?,
                    }),
                    _ => None,
                }
            })
            .collect::<Option<Vec<_>>>()?;
        Some(VoteReply {
            epoch: text(epoch)?,
            tail: entries(tail)?,
            outcomes,
        })
    };
    read().ok_or_else(|| bad("the votes", v))
}

/// One change from the stream.
pub type StreamChange = Streamed;

/// Reads an `XREAD … STREAMS KEY ID` reply: its changes in order (none when the block timed
/// out).
pub fn read_changes(v: &Value) -> Result<Vec<StreamChange>, Error> {
    let read = || {
        let streams = match v {
            Value::NullArray | Value::Null => return Some(Vec::new()),
            Value::Array(s) => s,
            _ => return None,
        };
        let mut out = Vec::new();
        for s in streams {
            let Value::Array(kv) = s else { return None };
            let [_, Value::Array(list)] = kv.as_slice() else {
                return None;
            };
            out.extend(entries(list)?);
        }
        Some(out)
    };
    read().ok_or_else(|| bad("the change stream", v))
}

/// A stream's entries (`XRANGE`'s reply, or one stream of `XREAD`'s) as changes, in order.
/// An entry is one batch: its id is the batch's last version, `f` its first (absent: a batch of
/// one), then per version either a vote — `v` (its voter, for a ballot), `u` (uid) and `c`
/// (count), then `m`/`n` (the option it moved from and its count) for a moved vote — or a
/// mark, `k` and its name; an entry whose changes do not fill its versions exactly is not
/// believed.
fn entries(list: &[Value]) -> Option<Vec<StreamChange>> {
    let mut out = Vec::with_capacity(list.len());
    for e in list {
        let Value::Array(e) = e else { return None };
        let [id, Value::Array(f)] = e.as_slice() else {
            return None;
        };
        let last: u64 = text(id)?.split_once('-')?.0.parse().ok()?;
        let (mut first, mut voter, mut uid, mut moved) = (None, None, None, None);
        let mut changes: Vec<Streamed> = Vec::new();
        for p in f.chunks(2) {
            match (p[0].as_bytes()?, p.get(1)) {
                (b"f", Some(v)) => first = Some(number(v)?),
                (b"v", Some(v)) => voter = Some(text(v)?),
                (b"u", Some(u)) => uid = Some(text(u)?),
                (b"c", Some(c)) => changes.push(Streamed {
                    uid: uid.take()?,
                    count: number(c)?,
                    voter: voter.take(),
                    ..Streamed::default()
                }),
                (b"m", Some(m)) => moved = Some(text(m)?),
                (b"n", Some(n)) => {
                    let last = changes.last_mut().filter(|c| c.mark.is_none())?;
                    last.from = Some((moved.take()?, number(n)?));
                }
                (b"k", Some(k)) => changes.push(Streamed {
                    mark: Some(Mark::parse(&text(k)?)?),
                    ..Streamed::default()
                }),
                _ => {}
            }
        }
        let first = first.unwrap_or(last);
        if first == 0 || last.checked_sub(first)? + 1 != changes.len() as u64 {
            return None;
        }
        out.extend(changes.into_iter().enumerate().map(|(k, c)| Streamed {
            version: first + k as u64,
            ..c
        }));
    }
    Some(out)
}

/// Reads [`PRESENCE`]'s reply: viewers by transport (ws, sse, longpoll, poll).
pub fn read_presence(v: &Value) -> Result<[u64; 4], Error> {
    let read = || {
        let Value::Array(a) = v else { return None };
        let [ws, sse, lp, poll] = a.as_slice() else {
            return None;
        };
        Some([number(ws)?, number(sse)?, number(lp)?, number(poll)?])
    };
    read().ok_or_else(|| bad("presence", v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::Bulk(s.as_bytes().to_vec())
    }

    #[test]
    fn the_sha_is_the_one_redis_computes() {
        // `redis-cli SCRIPT LOAD "return 1"` answers this digest.
        assert_eq!(
            Script::new("return 1").sha(),
            "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
        );
    }

    #[test]
    fn the_poll_reads() {
        let v = Value::Array(vec![
            bulk("18ab"),
            bulk("7"),
            Value::Array(vec![bulk("1"), bulk("野味"), bulk("2"), bulk("海龙")]),
            Value::Array(vec![bulk("2"), bulk("3"), bulk("1"), bulk("4")]),
        ]);
        assert_eq!(
            read_open(&v).unwrap(),
            PollState {
                epoch: "18ab".into(),
                version: 7,
                candidates: vec![("1".into(), "野味".into()), ("2".into(), "海龙".into())],
                counts: vec![("2".into(), 3), ("1".into(), 4)],
                closed: false,
                voters: vec![],
            }
        );
        // With its state and voters.
        let Value::Array(mut a) = v else {
            unreachable!()
        };
        a.push(bulk("closed"));
        a.push(Value::Array(vec![bulk("v1"), bulk("2")]));
        let p = read_open(&Value::Array(a)).unwrap();
        assert!(p.closed);
        assert_eq!(p.voters, vec![("v1".into(), "2".into())]);
        // An odd pair list, a missing field, a wrong type: errors, not panics.
        for bad in [
            Value::Array(vec![
                bulk("e"),
                bulk("1"),
                Value::Array(vec![bulk("1")]),
                Value::Array(vec![]),
            ]),
            Value::Array(vec![bulk("e"), bulk("1")]),
            Value::Integer(3),
            Value::Array(vec![
                bulk("e"),
                bulk("x"),
                Value::Array(vec![]),
                Value::Array(vec![]),
            ]),
        ] {
            assert!(read_open(&bad).is_err(), "{bad:?}");
        }
    }

    /// One stream entry as `XRANGE` and `XREAD` give it.
    fn entry(id: &str, u: &str, c: &str) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(vec![bulk("u"), bulk(u), bulk("c"), bulk(c)]),
        ])
    }

    #[test]
    fn vote_outcomes_read() {
        let v = Value::Array(vec![
            bulk("e1"),
            Value::Array(vec![entry("8-0", "2", "3"), entry("9-0", "1", "5")]),
            Value::Array(vec![bulk("C"), Value::Integer(5), Value::Integer(9)]),
            Value::Array(vec![bulk("R"), bulk("2"), bulk("3"), bulk("8")]),
            Value::Array(vec![bulk("U")]),
            Value::Array(vec![bulk("F"), Value::Integer(1500)]),
            Value::Array(vec![
                bulk("M"),
                Value::Integer(2),
                Value::Integer(10),
                bulk("1"),
                Value::Integer(4),
            ]),
            Value::Array(vec![bulk("X")]),
            Value::Array(vec![bulk("A"), bulk("2")]),
            Value::Array(vec![bulk("V")]),
        ]);
        let r = read_vote(&v, 8).unwrap();
        assert_eq!(r.epoch, "e1");
        assert_eq!(
            r.tail,
            vec![Streamed::vote(8, "2", 3), Streamed::vote(9, "1", 5)]
        );
        assert_eq!(
            r.outcomes,
            vec![
                Outcome::Counted {
                    count: 5,
                    version: 9
                },
                Outcome::Replayed {
                    uid: "2".into(),
                    count: 3,
                    version: 8
                },
                Outcome::UnknownCandidate,
                Outcome::VoteIdsFull {
                    retry_after_ms: 1500
                },
                Outcome::Moved {
                    count: 2,
                    version: 10,
                    from: ("1".into(), 4)
                },
                Outcome::Closed,
                Outcome::AlreadyVoted { uid: "2".into() },
                Outcome::VotersFull,
            ]
        );
        // One outcome per vote sent, or the reply is not believed.
        assert!(read_vote(&v, 7).is_err());
        let short = Value::Array(vec![
            bulk("e1"),
            Value::Array(vec![]),
            Value::Array(vec![bulk("C"), Value::Integer(5)]),
        ]);
        assert!(read_vote(&short, 1).is_err());
        // The tail is part of the reply's shape: without it, not believed either.
        let no_tail = Value::Array(vec![
            bulk("e1"),
            Value::Array(vec![bulk("C"), Value::Integer(5), Value::Integer(9)]),
        ]);
        assert!(read_vote(&no_tail, 1).is_err());
    }

    #[test]
    fn stream_entries_read_in_order() {
        let v = Value::Array(vec![Value::Array(vec![
            bulk("livevote:{poll:default}:changes"),
            Value::Array(vec![entry("11-0", "1", "6"), entry("12-0", "2", "6")]),
        ])]);
        assert_eq!(
            read_changes(&v).unwrap(),
            vec![Streamed::vote(11, "1", 6), Streamed::vote(12, "2", 6)]
        );
        assert_eq!(read_changes(&Value::NullArray).unwrap(), vec![]);
        // A batch: one entry, its id the last version, `f` the first, a vote per version.
        let batch = |id: &str, fields: &[&str]| {
            Value::Array(vec![
                bulk(id),
                Value::Array(fields.iter().map(|f| bulk(f)).collect()),
            ])
        };
        let v = Value::Array(vec![Value::Array(vec![
            bulk("k"),
            Value::Array(vec![
                batch("13-0", &["f", "11", "u", "1", "c", "6", "u", "2", "c", "6"]),
                batch("13-0", &["f", "12", "u", "1", "c", "7", "u", "2", "c", "6"]),
            ]),
        ])]);
        assert!(
            read_changes(&v).is_err(),
            "two votes cannot fill versions 11 to 13"
        );
        let v = Value::Array(vec![Value::Array(vec![
            bulk("k"),
            Value::Array(vec![
                batch("12-0", &["f", "11", "u", "1", "c", "6", "u", "2", "c", "6"]),
                batch("13-0", &["u", "1", "c", "7"]),
            ]),
        ])]);
        assert_eq!(
            read_changes(&v).unwrap(),
            vec![
                Streamed::vote(11, "1", 6),
                Streamed::vote(12, "2", 6),
                Streamed::vote(13, "1", 7)
            ]
        );
        // Ballots (with their voter, one moved) and a mark: one version each.
        let v = Value::Array(vec![Value::Array(vec![
            bulk("k"),
            Value::Array(vec![batch(
                "16-0",
                &[
                    "f", "14", "v", "a", "u", "1", "c", "1", "v", "a", "u", "2", "c", "1", "m",
                    "1", "n", "0", "k", "closed",
                ],
            )]),
        ])]);
        let ballot = |version, uid: &str, from: Option<(&str, u64)>| Streamed {
            version,
            uid: uid.into(),
            count: 1,
            voter: Some("a".into()),
            from: from.map(|(f, c)| (f.into(), c)),
            mark: None,
        };
        assert_eq!(
            read_changes(&v).unwrap(),
            vec![
                ballot(14, "1", None),
                ballot(15, "2", Some(("1", 0))),
                Streamed {
                    version: 16,
                    mark: Some(Mark::Closed),
                    ..Streamed::default()
                }
            ]
        );
        for fields in [
            &["f", "0", "u", "1", "c", "1"][..],
            &["f", "14", "u", "1", "c", "1"],
            &["c", "1", "u", "1"],
            &["f", "13", "u", "1"],
            &["k", "shut"],
            &["m", "1", "n", "0"],
        ] {
            let v = Value::Array(vec![Value::Array(vec![
                bulk("k"),
                Value::Array(vec![batch("13-0", fields)]),
            ])]);
            assert!(read_changes(&v).is_err(), "{fields:?}");
        }
        let broken = Value::Array(vec![Value::Array(vec![
            bulk("k"),
            Value::Array(vec![entry("x-0", "1", "6")]),
        ])]);
        assert!(read_changes(&broken).is_err());
    }

    #[test]
    fn presence_reads() {
        let v = Value::Array((1..=4).map(Value::Integer).collect());
        assert_eq!(read_presence(&v).unwrap(), [1, 2, 3, 4]);
        assert!(read_presence(&Value::Array(vec![Value::Integer(-1); 4])).is_err());
    }
}
