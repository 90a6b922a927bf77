//! Presence over every instance: once per [`SYNC_EVERY`], each instance sends Redis its
//! connected viewers (with a time-to-live, so a dead instance's drop out) and the polling
//! viewers it saw (by id, so a poller whose requests alternate between instances counts once),
//! and publishes the totals Redis answers to its own pages. Redis's clock is the only one
//! used: instances need no synchronised clocks.

use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

use super::scripts::{self, Script};
use super::Target;
use crate::app::presence::{Counts, Kind, VIEWER_TTL};
use crate::app::votes::Votes;
use crate::redis::Client;

/// How often an instance adds its viewers to the total.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);
/// How long an instance's connected viewers count after its last sync: a few missed syncs
/// (a pause), not a dead instance's viewers for long.
pub const INSTANCE_TTL: Duration = Duration::from_secs(5);

/// Starts the presence thread; it ends when the app is gone.
pub fn start(votes: &Arc<Votes>, target: Target) -> std::io::Result<()> {
    let votes: Weak<Votes> = Arc::downgrade(votes);
    let me = crate::app::store::new_epoch();
    thread::Builder::new()
        .name("redis-presence".into())
        .spawn(move || {
            let mut client = Client::new(target.url.clone(), target.opts);
            let script = Script::new(scripts::PRESENCE);
            // Ends with the app, or when the server shuts down (`Votes::close`).
            while let Some(v) = votes.upgrade().filter(|v| !v.stopped()) {
                let next = Instant::now() + SYNC_EVERY;
                if let Some(counts) = sync(&mut client, &script, &target, &me, &v) {
                    v.set_presence(counts);
                }
                drop(v);
                thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        })?;
    Ok(())
}

/// One sync: this instance's viewers in, the totals out (`None` when Redis is unreachable:
/// pages keep the last totals; the polling viewers seen meanwhile count again at their next
/// request).
fn sync(
    client: &mut Client,
    script: &Script,
    target: &Target,
    me: &str,
    votes: &Votes,
) -> Option<Counts> {
    let local = votes.take_presence();
    let k = &target.keys;
    let keys = [k.instances(), k.connected(), k.longpoll(), k.poll()];
    let ms = |d: Duration| d.as_millis().to_string().into_bytes();
    let mut args = vec![
        me.as_bytes().to_vec(),
        ms(INSTANCE_TTL),
        ms(VIEWER_TTL),
        local.connected[0].to_string().into_bytes(),
        local.connected[1].to_string().into_bytes(),
    ];
    for kind in [Kind::LongPoll, Kind::Poll] {
        let ids: Vec<&String> = local
            .sighted
            .iter()
            .filter(|(_, k)| *k == kind)
            .map(|(id, _)| id)
            .collect();
        args.push(ids.len().to_string().into_bytes());
        args.extend(ids.into_iter().map(|id| id.clone().into_bytes()));
    }
    args.push(local.forgotten.len().to_string().into_bytes());
    args.extend(local.forgotten.into_iter().map(String::into_bytes));
    let deadline = Instant::now() + target.opts.timeout.min(SYNC_EVERY * 2);
    let reply = script.run(client, &keys, &args, deadline).ok()?;
    scripts::read_presence(&reply).ok().map(Counts)
}
