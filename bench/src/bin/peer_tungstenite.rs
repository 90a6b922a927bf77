//! A comparison peer for the benchmarks: the "obvious" blocking, thread-per-connection
//! WebSocket server on the `tungstenite` crate, speaking the subset of livevote's protocol
//! the load generator drives:
//!
//! - `/get_new_vote`: every subscriber gets one `{"uid":"1","count":N,"version":V}` text
//!   message per vote (no resume, no presence); a text message naming a candidate (`1`, `2`)
//!   is a vote. The vote is counted and written to every subscriber by the voter's own thread,
//!   under one lock, so the messages go out in version order.
//! - `/chatsocket`: echo (text as text, binary as binary).
//!
//! One OS thread per connection with std's default stack, blocking I/O, `TCP_NODELAY`, a 10 s
//! write timeout so a subscriber that stops reading cannot stall the broadcast forever. It is
//! what one writes in an afternoon with tungstenite; nothing here is tuned.
//!
//! Usage: `peer_tungstenite --addr 127.0.0.1:PORT`

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use tungstenite::handshake::server::{Request, Response};
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::Message;

struct Subscriber {
    id: u64,
    out: Mutex<TcpStream>,
    dead: AtomicBool,
}

#[derive(Default)]
struct Tally {
    counts: Vec<(String, u64)>,
    version: u64,
}

struct State {
    tally: Mutex<Tally>,
    subs: Mutex<Vec<Arc<Subscriber>>>,
    next_id: AtomicU64,
}

fn main() {
    let mut addr = "127.0.0.1:9090".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--addr" => addr = args.next().expect("--addr needs a value"),
            other => {
                eprintln!("peer_tungstenite: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let listener = TcpListener::bind(&addr).unwrap_or_else(|e| {
        eprintln!("peer_tungstenite: cannot bind {addr}: {e}");
        std::process::exit(1);
    });
    eprintln!("peer_tungstenite listening on {addr}");
    let state = Arc::new(State {
        tally: Mutex::new(Tally {
            counts: vec![("1".into(), 0), ("2".into(), 0)],
            version: 0,
        }),
        subs: Mutex::new(Vec::new()),
        next_id: AtomicU64::new(1),
    });
    let mut last_complaint = std::time::Instant::now() - Duration::from_secs(2);
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) => {
                if last_complaint.elapsed() >= Duration::from_secs(1) {
                    eprintln!("peer_tungstenite: accept: {e}");
                    last_complaint = std::time::Instant::now();
                }
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let st = Arc::clone(&state);
        if let Err(e) = thread::Builder::new().spawn(move || serve(st, stream)) {
            if last_complaint.elapsed() >= Duration::from_secs(1) {
                eprintln!("peer_tungstenite: cannot start a connection thread: {e}");
                last_complaint = std::time::Instant::now();
            }
        }
    }
}

fn serve(state: Arc<State>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let mut path = String::new();
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| {
        path = req.uri().path().to_string();
        Ok(resp)
    };
    let Ok(out) = stream.try_clone() else { return };
    let mut ws = match tungstenite::accept_hdr(stream, callback) {
        Ok(ws) => ws,
        Err(_) => return,
    };
    if path == "/chatsocket" {
        loop {
            match ws.read() {
                Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                    if ws.send(m).is_err() {
                        return;
                    }
                }
                Ok(Message::Close(_)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
    // /get_new_vote (any other path is treated the same).
    let me = Arc::new(Subscriber {
        id: state.next_id.fetch_add(1, Ordering::Relaxed),
        out: Mutex::new(out),
        dead: AtomicBool::new(false),
    });
    state.subs.lock().unwrap().push(Arc::clone(&me));
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => vote(&state, t.trim()),
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    me.dead.store(true, Ordering::Relaxed);
    state.subs.lock().unwrap().retain(|s| s.id != me.id);
}

/// Counts a vote and writes the new count to every subscriber, in version order.
fn vote(state: &State, uid: &str) {
    let mut tally = state.tally.lock().unwrap();
    let Some(i) = tally.counts.iter().position(|(id, _)| id == uid) else {
        return;
    };
    tally.counts[i].1 += 1;
    tally.version += 1;
    let msg = format!(
        "{{\"uid\":\"{}\",\"count\":{},\"version\":{}}}",
        uid, tally.counts[i].1, tally.version
    );
    let mut frame = Vec::with_capacity(msg.len() + 4);
    Frame::message(msg.into_bytes(), OpCode::Data(Data::Text), true)
        .format(&mut frame)
        .expect("formatting into a Vec cannot fail");
    let subs: Vec<Arc<Subscriber>> = state.subs.lock().unwrap().clone();
    for s in subs {
        if s.dead.load(Ordering::Relaxed) {
            continue;
        }
        let mut out = s.out.lock().unwrap();
        if out.write_all(&frame).is_err() {
            s.dead.store(true, Ordering::Relaxed);
        }
    }
    drop(tally);
}
