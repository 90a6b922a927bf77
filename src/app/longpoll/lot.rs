//! The long-poll fan-out: a vote's answer to every waiting long-poller is encoded once and
//! written by one thread, as the WebSocket hub does for subscribers.
//!
//! A long-poller that is current parks here: its connection's thread lists its socket and
//! waits on its own condvar, reading nothing (a request pipelined behind it is answered after
//! it). The poll's writer thread waits on the vote table like any waiter; when the tally moves
//! it takes every parked poller that is now behind, encodes each distinct answer once (by the
//! version the pollers had, whether they see the counts, and what the `Connection` header
//! says), writes it to each socket without blocking, and hands each poller's thread what went
//! out. That thread finishes whatever its socket did not take (under its own write deadline:
//! a slow reader holds up only itself, never the writer or the other pollers), then goes back
//! to its connection's next request. A poller whose wait times out takes itself off the list
//! under the same lock the writer takes pollers under, so exactly one of them answers it.
//!
//! With no poller parked the writer sleeps on the lot's own condvar: a vote wakes it only when
//! someone waits.

use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::app::metrics::Metrics;
use crate::app::polls::{self, meta::Results};
use crate::app::votes::{Position, Votes};
use crate::app::{json, MAX_RESUME_DELTA};
use crate::http::conn::Written;
use crate::http::response::Response;
use crate::http::status::Status;

/// How long the writer waits on the tally before looking again with pollers parked (their own
/// deadlines are theirs: this only bounds a wait that nothing would otherwise end).
const WRITER_WAIT: Duration = Duration::from_secs(60);

/// A parked long-poll's question: where it stands and how its answer is shaped.
pub struct Waiter {
    /// Its cursor: the tally's version and epoch when it parked.
    pub since: u64,
    pub epoch: String,
    /// The presence version it has seen, when it asked to hear of changes (`pv=`).
    pub presence: Option<u64>,
    /// Who it is, for whether it sees the counts when it is answered.
    pub voter: Option<String>,
    pub presenter: bool,
    /// Its request allows the connection to stay open after the answer.
    pub keep_alive: bool,
}

/// How a parked long-poll ended.
pub enum Outcome {
    /// The writer encoded its answer and wrote what the socket took.
    Written {
        written: Written,
        /// For the metrics: the answer carried votes (`live`), and the newest of them was
        /// counted this long before it was written.
        votes: bool,
        delivered: Option<Duration>,
    },
    /// Its deadline passed, or streams are ending: its own thread answers it (from the tally
    /// as it is then, so a vote that came meanwhile is not lost).
    Yourself,
}

/// One parked poller's place, where the writer leaves its outcome.
#[derive(Default)]
struct Slot {
    outcome: Mutex<Option<Outcome>>,
    done: Condvar,
}

struct Parked {
    stream: Arc<TcpStream>,
    waiter: Waiter,
    slot: Arc<Slot>,
}

#[derive(Default)]
struct List {
    parked: Vec<Parked>,
    /// The writer sleeps on `joined` (none parked).
    idle: bool,
    /// The writer has ended (streams are ending): nobody parks any more.
    ended: bool,
}

impl List {
    /// Nobody parks any more, and every parked poller answers itself (its thread sees the end
    /// too: the poll is gone, or streams are ending).
    fn end(&mut self) {
        self.ended = true;
        for p in self.parked.drain(..) {
            tell(&p.slot, Outcome::Yourself);
        }
    }
}

/// A poll's parked long-polls and their writer.
pub struct Lot {
    votes: Arc<Votes>,
    results: Results,
    metrics: Arc<Metrics>,
    list: Mutex<List>,
    /// Wakes an idle writer when the first poller parks.
    joined: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Lot {
    /// A lot for `votes`, with its writer thread running.
    pub fn start(
        votes: Arc<Votes>,
        results: Results,
        metrics: Arc<Metrics>,
    ) -> io::Result<Arc<Lot>> {
        let lot = Arc::new(Lot {
            votes,
            results,
            metrics,
            list: Mutex::new(List::default()),
            joined: Condvar::new(),
        });
        let writer = Arc::clone(&lot);
        thread::Builder::new()
            .name("longpoll".into())
            .spawn(move || writer.write_loop())?;
        Ok(lot)
    }

    /// Ends the writer (the poll is gone): every parked poller answers itself, and nobody
    /// parks any more.
    pub fn stop(&self) {
        lock(&self.list).end();
        // An idle writer ends now; one waiting on the tally at its next wake-up (a deleted
        // poll's streams end, which wakes it).
        self.joined.notify_one();
    }

    /// Pollers parked now.
    pub fn parked(&self) -> usize {
        lock(&self.list).parked.len()
    }

    /// Parks `waiter` on `stream` until its answer is out or `deadline`. None at once (not
    /// parked) when the tally is not where the waiter stands, or streams are ending: the
    /// caller answers it itself. While parked, the socket is non-blocking (the writer must
    /// never wait on it); it is blocking again when this returns.
    pub fn wait(
        &self,
        stream: &Arc<TcpStream>,
        waiter: Waiter,
        deadline: Instant,
    ) -> Option<Outcome> {
        stream.set_nonblocking(true).ok()?;
        let slot = Arc::new(Slot::default());
        {
            let mut l = lock(&self.list);
            // Under the list's lock, so the writer's pass (which reads the tally under it too)
            // sees this poller either listed or already current with what it read.
            let current = !l.ended
                && !self.votes.ending()
                && self
                    .votes
                    .is_at(waiter.since, Some(&waiter.epoch), waiter.presence);
            if !current {
                drop(l);
                let _ = stream.set_nonblocking(false);
                return None;
            }
            l.parked.push(Parked {
                stream: Arc::clone(stream),
                waiter,
                slot: Arc::clone(&slot),
            });
            if l.idle {
                self.joined.notify_one();
            }
        }
        self.metrics.long_poll(true);
        let outcome = self.await_outcome(&slot, deadline);
        self.metrics.long_poll(false);
        // Blocking again for the connection's own reads and writes. Should this fail, the
        // socket is unusable anyway and its next write says so.
        let _ = stream.set_nonblocking(false);
        Some(outcome)
    }

    fn await_outcome(&self, slot: &Arc<Slot>, deadline: Instant) -> Outcome {
        let mut o = lock(&slot.outcome);
        loop {
            if let Some(done) = o.take() {
                return done;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                drop(o);
                let mut l = lock(&self.list);
                if let Some(i) = l.parked.iter().position(|p| Arc::ptr_eq(&p.slot, slot)) {
                    l.parked.swap_remove(i);
                    return Outcome::Yourself;
                }
                drop(l);
                // The writer has taken it and is writing it (it never blocks): wait for it.
                o = lock(&slot.outcome);
                while o.is_none() {
                    o = slot.done.wait(o).unwrap_or_else(PoisonError::into_inner);
                }
                continue;
            }
            o = slot
                .done
                .wait_timeout(o, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn write_loop(&self) {
        let mut l = lock(&self.list);
        loop {
            while l.parked.is_empty() && !l.ended && !self.votes.ending() {
                l.idle = true;
                l = self.joined.wait(l).unwrap_or_else(PoisonError::into_inner);
            }
            l.idle = false;
            if l.ended || self.votes.ending() {
                // Shutting down or deleted.
                l.end();
                return;
            }
            let at = self.votes.position();
            let mut due = Vec::new();
            let mut i = 0;
            while i < l.parked.len() {
                if is_due(&l.parked[i].waiter, &at) {
                    due.push(l.parked.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            drop(l);
            if due.is_empty() {
                self.votes.await_change(&at, WRITER_WAIT);
            } else {
                self.answer(due, &at);
            }
            l = lock(&self.list);
        }
    }

    /// Encodes each distinct answer once and writes it to every poller that gets it.
    fn answer(&self, due: Vec<Parked>, at: &Position) {
        let (counts, pv) = self.votes.presence();
        let presence = |o: &mut crate::json::Object| json::presence_members(o, &counts, pv);
        let draining = self.metrics.draining.load(Ordering::Relaxed);
        let mut answers: Vec<(Key, Encoded)> = Vec::new();
        // Every socket is written before any poller is told: a poller's thread woken mid-pass
        // would take a core from the writer while the other sockets still wait for their bytes.
        let mut told = Vec::with_capacity(due.len());
        for p in due {
            let w = &p.waiter;
            let behind = w.since != at.version || w.epoch != at.epoch;
            let visible = behind
                && polls::visible(self.results, &self.votes, w.voter.as_deref(), w.presenter);
            let keep_alive = w.keep_alive && !draining;
            let same = |k: &Key| {
                k.visible == visible
                    && k.keep_alive == keep_alive
                    && match &k.votes {
                        Some((since, epoch)) => behind && *since == w.since && *epoch == w.epoch,
                        None => !behind,
                    }
            };
            let k = match answers.iter().position(|(k, _)| same(k)) {
                Some(k) => k,
                None => {
                    let key = Key {
                        votes: behind.then(|| (w.since, w.epoch.clone())),
                        visible,
                        keep_alive,
                    };
                    let e = self.encode(&key, at, &presence);
                    answers.push((key, e));
                    answers.len() - 1
                }
            };
            let e = &answers[k].1;
            let sent = write_now(&p.stream, &e.bytes);
            let delivered = e.newest.map(|t| t.elapsed());
            // The socket is the poller's again before it learns its outcome.
            drop(p.stream);
            told.push((
                p.slot,
                Outcome::Written {
                    written: Written {
                        bytes: Arc::clone(&e.bytes),
                        sent,
                        status: Status::Ok,
                        body_len: e.body_len,
                        keep_alive: answers[k].0.keep_alive,
                    },
                    votes: answers[k].0.votes.is_some(),
                    delivered,
                },
            ));
        }
        for (slot, outcome) in told {
            tell(&slot, outcome);
        }
    }

    /// One answer: the votes since the pollers' version (or the tally), else the "no news"
    /// answer with the presence that changed; head and body, encoded as any response is.
    fn encode(
        &self,
        key: &Key,
        at: &Position,
        presence: &dyn Fn(&mut crate::json::Object),
    ) -> Encoded {
        let (body, newest) = match &key.votes {
            Some((since, epoch)) => {
                let c = self.votes.catch_up(*since, Some(epoch), MAX_RESUME_DELTA);
                let newest = self.votes.newest_counted(&c);
                let epoch = self.votes.epoch();
                (
                    json::longpoll(&c, *since, true, &epoch, key.visible, presence),
                    newest,
                )
            }
            None => (
                json::longpoll_timeout(at.version, &at.epoch, presence),
                None,
            ),
        };
        let resp = Response::json(Status::Ok, body);
        let mut out = Vec::with_capacity(resp.body.len() + 256);
        resp.write_to(&mut out, key.keep_alive, false);
        Encoded {
            bytes: Arc::from(out),
            body_len: resp.body.len(),
            newest,
        }
    }
}

/// What makes two pollers' answers the same bytes.
struct Key {
    /// The version and epoch the pollers had, when the tally moved past it; None: only the
    /// presence changed.
    votes: Option<(u64, String)>,
    visible: bool,
    keep_alive: bool,
}

struct Encoded {
    bytes: Arc<[u8]>,
    body_len: usize,
    /// When the newest vote in it was counted.
    newest: Option<Instant>,
}

/// A parked poller with something to be told: the tally moved past its cursor, or the
/// presence it watches changed.
fn is_due(w: &Waiter, at: &Position) -> bool {
    w.since != at.version || w.epoch != at.epoch || w.presence.is_some_and(|p| p != at.presence)
}

/// One write on a non-blocking socket: the bytes it took (none when full or failed; the
/// poller's own write then says what is wrong).
fn write_now(mut stream: &TcpStream, bytes: &[u8]) -> usize {
    loop {
        match stream.write(bytes) {
            Ok(n) => return n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return 0,
        }
    }
}

fn tell(slot: &Slot, outcome: Outcome) {
    *lock(&slot.outcome) = Some(outcome);
    slot.done.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;
    use std::thread::JoinHandle;

    const LONG: Duration = Duration::from_secs(20);

    /// A two-candidate tally and its lot.
    fn lot() -> (Arc<Votes>, Arc<Lot>) {
        let votes = Arc::new(Votes::new(&[
            ("1".into(), "a".into()),
            ("2".into(), "b".into()),
        ]));
        let lot = Lot::start(
            Arc::clone(&votes),
            Results::Always,
            Arc::new(Metrics::default()),
        )
        .unwrap();
        (votes, lot)
    }

    /// A poller current with `votes`.
    fn current(votes: &Votes) -> Waiter {
        Waiter {
            since: votes.version(),
            epoch: votes.epoch(),
            presence: None,
            voter: None,
            presenter: false,
            keep_alive: true,
        }
    }

    /// A connection: the client's end, and the server's (as a connection thread holds it).
    fn connection(l: &TcpListener) -> (TcpStream, Arc<TcpStream>) {
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        client.set_read_timeout(Some(LONG)).unwrap();
        (client, Arc::new(l.accept().unwrap().0))
    }

    /// Parks `w` on its own thread, as a connection's thread does.
    fn park(
        lot: &Arc<Lot>,
        stream: &Arc<TcpStream>,
        w: Waiter,
        deadline: Instant,
    ) -> JoinHandle<Option<Outcome>> {
        let (lot, stream) = (Arc::clone(lot), Arc::clone(stream));
        thread::spawn(move || lot.wait(&stream, w, deadline))
    }

    /// Waits (a bounded while) until `n` pollers are parked.
    fn until_parked(lot: &Lot, n: usize) {
        let deadline = Instant::now() + LONG;
        while lot.parked() != n {
            assert!(
                Instant::now() < deadline,
                "{} parked, not {n}",
                lot.parked()
            );
            thread::yield_now();
        }
    }

    /// One HTTP response from `c`: its head and body, as bytes.
    fn response(c: &mut TcpStream) -> Vec<u8> {
        let mut got = Vec::new();
        let mut byte = [0; 1];
        while !got.ends_with(b"\r\n\r\n") {
            c.read_exact(&mut byte).unwrap();
            got.push(byte[0]);
        }
        let head = String::from_utf8(got.clone()).unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .expect("a Content-Length")
            .parse()
            .unwrap();
        let mut body = vec![0; len];
        c.read_exact(&mut body).unwrap();
        got.extend(body);
        got
    }

    fn written(o: Option<Outcome>) -> (Written, bool) {
        match o {
            Some(Outcome::Written { written, votes, .. }) => (written, votes),
            Some(Outcome::Yourself) => panic!("answered by its own thread"),
            None => panic!("not parked"),
        }
    }

    #[test]
    fn one_vote_is_encoded_once_and_written_to_every_parked_poller() {
        let (votes, lot) = lot();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let deadline = Instant::now() + LONG;
        let mut clients = Vec::new();
        let mut pollers = Vec::new();
        for _ in 0..20 {
            let (client, server) = connection(&l);
            pollers.push(park(&lot, &server, current(&votes), deadline));
            clients.push(client);
        }
        until_parked(&lot, 20);
        votes.vote("2").unwrap();
        let answers: Vec<Vec<u8>> = clients.iter_mut().map(response).collect();
        let text = String::from_utf8(answers[0].clone()).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("\r\nConnection: keep-alive\r\n"), "{text}");
        assert!(text.contains(r#""kind":"live""#), "{text}");
        assert!(text.contains(r#""data":{"uid":"2","count":1}"#), "{text}");
        assert!(text.contains(r#""version":1,"from":0"#), "{text}");
        let outcomes: Vec<_> = pollers
            .into_iter()
            .map(|p| written(p.join().unwrap()))
            .collect();
        for (i, (w, carried_votes)) in outcomes.iter().enumerate() {
            assert_eq!(answers[i], answers[0], "every poller got the same answer");
            assert!(*carried_votes);
            assert_eq!(w.sent, w.bytes.len(), "the writer wrote it whole");
            assert_eq!(&w.bytes[..], &answers[i][..]);
            assert!(
                Arc::ptr_eq(&w.bytes, &outcomes[0].0.bytes),
                "encoded once for all"
            );
        }
        assert_eq!(lot.parked(), 0);
    }

    #[test]
    fn a_poller_whose_socket_is_full_holds_up_only_itself() {
        let (votes, lot) = lot();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let (mut stuck, stuck_server) = connection(&l);
        let (mut reading, reading_server) = connection(&l);
        // Fill the stuck connection until its socket takes nothing more: the client reads
        // nothing yet.
        stuck_server.set_nonblocking(true).unwrap();
        let mut filled = 0;
        let chunk = [b'x'; 65536];
        loop {
            match (&*stuck_server).write(&chunk) {
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        stuck_server.set_nonblocking(false).unwrap();
        let deadline = Instant::now() + LONG;
        let p_stuck = park(&lot, &stuck_server, current(&votes), deadline);
        let p_reading = park(&lot, &reading_server, current(&votes), deadline);
        until_parked(&lot, 2);
        votes.vote("1").unwrap();
        // The other poller is answered while the stuck one has read nothing.
        let answer = response(&mut reading);
        written(p_reading.join().unwrap());
        let (w, _) = written(p_stuck.join().unwrap());
        assert!(w.sent < w.bytes.len(), "a full socket took it whole");
        // Its own thread writes the rest (as the HTTP loop does) once the client reads.
        let rest = Arc::clone(&w.bytes);
        let finisher = thread::spawn(move || {
            crate::net::write_all_by(&stuck_server, &rest[w.sent..], Instant::now() + LONG)
        });
        let mut junk = vec![0; filled];
        stuck.read_exact(&mut junk).unwrap();
        assert!(junk.iter().all(|&b| b == b'x'));
        assert_eq!(
            response(&mut stuck),
            answer,
            "the same answer, whole and in order"
        );
        finisher.join().unwrap().unwrap();
    }

    #[test]
    fn a_poller_past_its_deadline_answers_itself_and_leaves_the_lot() {
        let (votes, lot) = lot();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let (mut client, server) = connection(&l);
        let o = lot.wait(
            &server,
            current(&votes),
            Instant::now() + Duration::from_millis(50),
        );
        assert!(matches!(o, Some(Outcome::Yourself)));
        assert_eq!(lot.parked(), 0);
        // The writer no longer writes to it: a vote, then another poller answered.
        votes.vote("1").unwrap();
        let (mut other, other_server) = connection(&l);
        let p = park(&lot, &other_server, current(&votes), Instant::now() + LONG);
        until_parked(&lot, 1);
        votes.vote("2").unwrap();
        response(&mut other);
        written(p.join().unwrap());
        client
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut b = [0; 1];
        let r = client.read(&mut b);
        assert!(
            r.as_ref().is_err_and(crate::net::is_timeout),
            "the timed-out poller's socket was written to: {r:?}"
        );
    }

    #[test]
    fn a_poller_behind_or_elsewhere_is_not_parked() {
        let (votes, lot) = lot();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let (_client, server) = connection(&l);
        let behind = current(&votes);
        votes.vote("1").unwrap();
        assert!(lot.wait(&server, behind, Instant::now() + LONG).is_none());
        let other_epoch = Waiter {
            epoch: "0000000000000000".into(),
            ..current(&votes)
        };
        assert!(lot
            .wait(&server, other_epoch, Instant::now() + LONG)
            .is_none());
        assert_eq!(lot.parked(), 0);
    }

    #[test]
    fn stopping_the_lot_hands_every_poller_back_to_its_thread() {
        let (votes, lot) = lot();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let (_client, server) = connection(&l);
        let p = park(&lot, &server, current(&votes), Instant::now() + LONG);
        until_parked(&lot, 1);
        lot.stop();
        assert!(matches!(p.join().unwrap(), Some(Outcome::Yourself)));
        assert!(lot
            .wait(&server, current(&votes), Instant::now() + LONG)
            .is_none());
    }
}
