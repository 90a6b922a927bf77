//! Every state of an HTTP connection has a wall-clock bound the peer cannot stretch by
//! trickling (issue 9, defect 2): the drain before close, and a response being written to a
//! client that reads a little now and then. The bounds are the server's promises
//! (`http::conn::LINGER` and `--write-timeout`); the tests allow generous slack on them and
//! fail long before the old code would have let go.
//!
//! And nothing a request does waits on stderr (defect 12): with the access log on and a
//! stderr pipe nobody reads, requests are still answered, and the lines that could not be
//! written are counted.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::binary::{Livevote, BIN};
use common::metrics::metric;
use common::tempdir::TempDir;
use common::*;

/// What a trickling drain may take at most: the server's total linger (2 s) plus slack. The
/// old code drained for up to 64 KiB at a byte per 100 ms, about 1.8 hours.
const DRAIN_BOUND: Duration = Duration::from_secs(6);

#[test]
fn a_peer_trickling_after_a_closing_response_is_cut_off_by_the_linger_deadline() {
    let addr = start_default();
    let mut c = Client::connect(addr);
    let r = c.call(get_req_with("/votes", "Connection: close\r\n"));
    assert_eq!(r.status, 200);
    assert!(r.closes());
    // The server has shut down its side and drains what we send before it closes. A byte
    // every 100 ms keeps each of its 200 ms reads busy; once it has closed, our bytes are
    // answered with a reset and a write fails.
    let t0 = Instant::now();
    let closed = loop {
        thread::sleep(Duration::from_millis(100));
        if c.try_send(b"x").is_err() {
            break t0.elapsed();
        }
        if t0.elapsed() > DRAIN_BOUND {
            panic!("the server still drains after {DRAIN_BOUND:?} of trickling");
        }
    };
    eprintln!("drain cut off after {closed:?}");
}

/// The body deadline is total too: a body trickled a byte at a time gets `408` when
/// `body_timeout` has passed since the head, not when the bytes stop coming.
#[test]
fn a_trickled_body_gets_408_at_the_body_deadline() {
    let body_timeout = Duration::from_millis(500);
    let addr = start(move |c| c.limits.body_timeout = body_timeout);
    let mut c = Client::connect(addr);
    c.send(
        "POST /vote HTTP/1.1\r\nHost: localhost\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n",
    );
    let t0 = Instant::now();
    let trickle = c.stream.try_clone().unwrap();
    let t = thread::spawn(move || {
        // 1000 bytes at one per 50 ms would take 50 s.
        let mut s = trickle;
        for _ in 0..1000 {
            if std::io::Write::write_all(&mut s, b"a").is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
    });
    let r = c.read_response_to("POST");
    assert_eq!(r.status, 408, "{r:?}");
    let took = t0.elapsed();
    assert!(
        took < body_timeout + Duration::from_secs(3),
        "408 after {took:?}"
    );
    c.shutdown_write();
    drop(c);
    t.join().unwrap();
}

/// Body of the large static file: far more than the socket buffers on both sides can hold, so
/// writing it takes as long as the client makes it.
const BIG: usize = 16 * 1024 * 1024;

#[test]
fn a_client_reading_a_large_response_slowly_is_dropped_at_the_write_deadline() {
    // A copy of www/ with one large file.
    let dir = TempDir::new("slow-reader");
    for entry in fs::read_dir(www()).unwrap() {
        let entry = entry.unwrap();
        if !entry.file_type().unwrap().is_file() {
            continue;
        }
        fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    fs::write(dir.path().join("big.txt"), vec![b'x'; BIG]).unwrap();
    let write_timeout = Duration::from_secs(1);
    let www = dir.path().to_path_buf();
    let addr = start(move |c| {
        c.www = Some(www);
        c.limits.write_timeout = write_timeout;
    });
    // Only the scraping connection is open.
    wait_for(IO_TIMEOUT, "a quiet server", || {
        (metric(addr, "livevote_http_connections") == 1).then_some(())
    });

    let mut c = Client::connect(addr);
    c.send(get_req("/big.txt"));
    // 64 KiB every 250 ms: every write the server makes progresses well within its write
    // timeout, so a per-call timeout never fires (16 MiB would take a minute); only a deadline
    // on the whole response ends it.
    let stop = Arc::new(AtomicBool::new(false));
    let got = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (stop, got) = (Arc::clone(&stop), Arc::clone(&got));
        let mut stream = c.stream.try_clone().unwrap();
        thread::spawn(move || {
            let mut chunk = vec![0u8; 64 * 1024];
            while !stop.load(Ordering::Relaxed) {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.fetch_add(n, Ordering::Relaxed),
                };
                thread::sleep(Duration::from_millis(250));
            }
        })
    };
    // The response has started (so its connection is open and counted).
    wait_for(IO_TIMEOUT, "the response to start", || {
        (got.load(Ordering::Relaxed) > 0).then_some(())
    });
    let t0 = Instant::now();
    wait_for(
        write_timeout + Duration::from_secs(5),
        "the slow reader's connection to be dropped",
        || (metric(addr, "livevote_http_connections") == 1).then_some(()),
    );
    eprintln!("slow reader dropped after {:?}", t0.elapsed());
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    let got = got.load(Ordering::Relaxed);
    assert!(got < BIG, "the whole response was read ({got} bytes)");
}

/// The real binary with the access log on, its stderr a pipe that is read only up to its
/// `listening on` line and then never again (held open, so writes block once it is full).
/// Killed by its handle and reaped when dropped.
struct Unread {
    child: Child,
    addr: std::net::SocketAddr,
    _stderr: BufReader<ChildStderr>,
}

impl Unread {
    fn start() -> Unread {
        let mut child = Command::new(BIN)
            .args(["--addr", "127.0.0.1:0", "--memory", "--www"])
            .arg(www())
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn livevote");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr is piped"));
        let mut line = String::new();
        let addr = loop {
            line.clear();
            // The binary prints its address first thing; the pipe's read has the hang guard
            // of the test harness (the process is killed when `child` drops on a panic).
            if stderr.read_line(&mut line).expect("read stderr") == 0 {
                let _ = child.kill();
                panic!("livevote exited before listening");
            }
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.split('/').next().unwrap().parse().expect("address");
            }
        };
        Unread {
            child,
            addr,
            _stderr: stderr,
        }
    }
}

impl Drop for Unread {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Requests sent: their access-log lines (about 60 bytes each) fill a 64 KiB pipe about 20
/// times over.
const LOGGED_REQUESTS: usize = 20_000;
/// Requests pipelined per round trip.
const BATCH: usize = 100;

#[test]
fn a_stderr_nobody_reads_does_not_stall_requests_and_dropped_lines_are_counted() {
    let server = Unread::start();
    let mut c = Client::connect(server.addr);
    let batch = get_req("/votes").repeat(BATCH);
    for _ in 0..LOGGED_REQUESTS / BATCH {
        c.send(&batch);
        // Every read has the IO_TIMEOUT hang guard: a server thread stuck writing its log
        // line to the full pipe fails the test here.
        for r in c.read_responses(BATCH) {
            assert_eq!(r.status, 200);
        }
    }
    let dropped = metric(server.addr, "livevote_access_log_dropped_lines_total");
    assert!(dropped > 0, "no access-log line was dropped");
}

#[test]
fn with_a_reader_on_stderr_every_request_is_logged() {
    let server = Livevote::start(
        ["--addr", "127.0.0.1:0", "--memory", "--www"]
            .map(Into::into)
            .into_iter()
            .chain([www().into_os_string()]),
    );
    let mut c = Client::connect(server.addr);
    for path in ["/votes", "/nowhere"] {
        c.call(get_req(path));
    }
    wait_for(IO_TIMEOUT, "both access-log lines", || {
        let log = server.stderr_text();
        (log.contains("\"GET /votes HTTP/1.1\" 200 ")
            && log.contains("\"GET /nowhere HTTP/1.1\" 404 "))
        .then_some(())
    });
}
