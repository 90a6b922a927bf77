//! The access log: one line per request, written to its sink (stderr) by one thread that reads
//! them from a bounded queue. A request only ever *offers* its line: when the sink is slow (a
//! stderr pipe nobody reads fills after 64 KiB, and then every write blocks) the queue fills,
//! further lines are dropped and counted, and no connection thread ever waits on the log.
//! The accept loop's complaints (out of descriptors, no thread) go the same way: a blocked
//! `eprintln!` there would stop the server taking connections at all.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread;

/// Lines waiting for the writer; more are dropped. Default 4096: enough to ride out a burst,
/// small enough that a stalled sink costs little memory (a line shows at most 512 bytes of the
/// target, so the queue holds about 2.5 MiB at most).
pub const ACCESS_LOG_QUEUE: usize = 4096;

/// Most lines the writer puts into one write to its sink.
const WRITE_BATCH: usize = 256;

/// The sending side; the writer thread ends when it is dropped.
pub struct AccessLog {
    queue: SyncSender<String>,
    dropped: Arc<AtomicU64>,
}

impl AccessLog {
    /// Starts the writer thread over `sink`, with room for `capacity` waiting lines; each line
    /// that finds no room adds one to `dropped`.
    pub fn start(
        sink: impl Write + Send + 'static,
        capacity: usize,
        dropped: Arc<AtomicU64>,
    ) -> io::Result<AccessLog> {
        let (queue, lines) = mpsc::sync_channel(capacity);
        thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(sink, lines))?;
        Ok(AccessLog { queue, dropped })
    }

    /// Offers one line (without its newline); never waits.
    pub fn log(&self, line: String) {
        match self.queue.try_send(line) {
            Ok(()) => {}
            // A writer that has gone (its sink failed) also drops the line.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Relaxed);
            }
        }
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }
}

/// Writes what arrives, a batch per write, until every sender has gone.
fn write_lines(mut sink: impl Write, lines: Receiver<String>) {
    let mut out = String::new();
    while let Ok(first) = lines.recv() {
        out.clear();
        out.push_str(&first);
        out.push('\n');
        for line in lines.try_iter().take(WRITE_BATCH - 1) {
            out.push_str(&line);
            out.push('\n');
        }
        // A failed write loses its batch; the log is best-effort by design.
        let _ = sink.write_all(out.as_bytes()).and_then(|()| sink.flush());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Condvar, Mutex};

    /// Whether the gate is open, and what went through it.
    type Passed = Mutex<(bool, Vec<u8>)>;

    /// A sink that blocks every write until it is opened, then keeps what it was given.
    #[derive(Clone, Default)]
    struct Gate(Arc<(Passed, Condvar)>);

    impl Write for Gate {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let (m, cv) = &*self.0;
            let mut g = cv
                .wait_while(m.lock().unwrap(), |(open, _)| !*open)
                .unwrap();
            g.1.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_blocked_sink_drops_and_counts_lines_instead_of_waiting() {
        let gate = Gate::default();
        let dropped = Arc::new(AtomicU64::new(0));
        let log = AccessLog::start(gate.clone(), 4, Arc::clone(&dropped)).unwrap();
        // The writer takes at most one batch and blocks in it; the queue holds 4 more; the
        // rest is dropped, and none of these calls waits.
        let n = 4 + WRITE_BATCH + 100;
        for i in 0..n {
            log.log(format!("line {i}"));
        }
        let lost = log.dropped();
        assert!(lost >= 100, "{lost} dropped");
        // Opened, the sink gets every line that was not dropped, in order.
        let (m, cv) = &*gate.0;
        m.lock().unwrap().0 = true;
        cv.notify_all();
        drop(log);
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let text = loop {
            assert!(
                std::time::Instant::now() < give_up,
                "the lines never arrived"
            );
            let g = m.lock().unwrap();
            let text = String::from_utf8(g.1.clone()).unwrap();
            if text.lines().count() as u64 == n as u64 - lost {
                break text;
            }
            drop(g);
            thread::sleep(std::time::Duration::from_millis(5));
        };
        let numbers: Vec<usize> = text
            .lines()
            .map(|l| l.strip_prefix("line ").unwrap().parse().unwrap())
            .collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
        assert_eq!(numbers[0], 0);
    }
}
