//! Socket helpers shared by the HTTP and WebSocket connection loops: reads under a deadline
//! that do not pay a `setsockopt` per read, and the one test for "that was a timeout".

use std::io::{self, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Reads of at most this many bytes go through a buffer on the stack. Small, because every
/// stack page a connection thread touches stays resident for the connection's life.
pub const STACK_READ: usize = 1024;

/// Reads from one socket under deadlines, remembering the read timeout last set on it.
///
/// A blocking read with a deadline needs `SO_RCVTIMEO` = time left; setting it before every
/// read costs a system call per request or message. While the time left stays within 1/16 of
/// the timeout already set (the common case: the deadline moves with each read), the timeout
/// is left alone; a read may then wake that much early (the caller sees a timeout and checks
/// its deadline) or late (by at most 1/16 of a long timeout).
#[derive(Debug, Default)]
pub struct Reader {
    timeout: Option<Duration>,
}

impl Reader {
    pub fn new() -> Self {
        Reader::default()
    }

    /// Reads what is available onto the end of `buf` (at most `chunk` bytes), waiting at most
    /// until `deadline`. `Ok(0)`: the peer closed.
    pub fn read(
        &mut self,
        stream: &TcpStream,
        buf: &mut Vec<u8>,
        chunk: usize,
        deadline: Instant,
    ) -> io::Result<usize> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let left = left.max(Duration::from_millis(1));
        let close_enough = self.timeout.is_some_and(|t| t.abs_diff(left) <= left / 16);
        if !close_enough {
            stream.set_read_timeout(Some(left))?;
            self.timeout = Some(left);
        }
        if chunk <= STACK_READ {
            // Small reads go through the stack, so an idle connection's buffer stays empty.
            let mut tmp = [0u8; STACK_READ];
            let n = read_retry(stream, &mut tmp[..chunk.max(1)])?;
            buf.extend_from_slice(&tmp[..n]);
            return Ok(n);
        }
        let old = buf.len();
        buf.resize(old + chunk, 0);
        let r = read_retry(stream, &mut buf[old..]);
        buf.truncate(old + *r.as_ref().unwrap_or(&0));
        r
    }
}

fn read_retry(mut stream: &TcpStream, into: &mut [u8]) -> io::Result<usize> {
    loop {
        match stream.read(into) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// A read or write that ran out of time (`SO_RCVTIMEO`/`SO_SNDTIMEO` report `WouldBlock`).
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Writes to one socket under deadlines, remembering the send timeout last set on it.
///
/// `SO_SNDTIMEO` bounds one `write` call only: a peer that reads a little now and then lets
/// every call make some progress, and `write_all` would go on for as long as it likes. So the
/// send timeout is the time left before each call, and the whole write ends at the deadline.
/// As with [`Reader`], a timeout within 1/16 of the time left is left alone (the common case
/// on a keep-alive connection: every response gets the same allowance), so a write may end
/// that much after its deadline.
#[derive(Debug, Default)]
pub struct Writer {
    timeout: Option<Duration>,
}

impl Writer {
    pub fn new() -> Self {
        Writer::default()
    }

    /// Writes all of `bytes` by `deadline`, or fails with `TimedOut` once it has passed.
    pub fn write_all(
        &mut self,
        mut stream: &TcpStream,
        mut bytes: &[u8],
        deadline: Instant,
    ) -> io::Result<()> {
        while !bytes.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            let left = left.max(Duration::from_millis(1));
            let close_enough = self.timeout.is_some_and(|t| t.abs_diff(left) <= left / 16);
            if !close_enough {
                stream.set_write_timeout(Some(left))?;
                self.timeout = Some(left);
            }
            match io::Write::write(&mut stream, bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Writes all of `bytes` by `deadline` (see [`Writer`]), for a socket written to now and then.
pub fn write_all_by(stream: &TcpStream, bytes: &[u8], deadline: Instant) -> io::Result<()> {
    Writer::new().write_all(stream, bytes, deadline)
}

/// How much a drain before close may read, and for how long.
#[derive(Clone, Copy, Debug)]
pub struct Linger {
    /// Most bytes read before closing anyway.
    pub max_bytes: usize,
    /// The drain ends when the peer sends nothing for this long; zero: take only what has
    /// already arrived, without waiting.
    pub quiet: Duration,
    /// The drain ends this long after it started, however the peer paces its bytes.
    pub total: Duration,
}

/// Shuts down our side, then reads and drops what the peer still sends, within `linger`'s
/// bounds, before the stream is closed (by the caller dropping it).
///
/// Closing a socket with unread input makes the kernel send a reset, which can destroy a
/// response the peer has not read yet (RFC 9112 §9.6). The peer controls how fast its bytes
/// come, so the drain has a total deadline besides the quiet time: a byte every 190 ms must
/// not hold a thread and a connection slot for hours.
pub fn linger_close(mut stream: &TcpStream, linger: Linger) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let deadline = Instant::now() + linger.total;
    let wait = !linger.quiet.is_zero();
    if !wait && stream.set_nonblocking(true).is_err() {
        return;
    }
    let mut sink = [0u8; STACK_READ];
    let mut total = 0;
    while total < linger.max_bytes {
        if wait {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let t = left.min(linger.quiet).max(Duration::from_millis(1));
            if stream.set_read_timeout(Some(t)).is_err() {
                break;
            }
        }
        match stream.read(&mut sink) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    #[test]
    fn reads_and_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let mut r = Reader::new();
        let mut buf = Vec::new();
        let t0 = Instant::now();
        let e = r
            .read(&s, &mut buf, 4096, t0 + Duration::from_millis(50))
            .unwrap_err();
        assert!(is_timeout(&e));
        assert!(t0.elapsed() >= Duration::from_millis(40));
        c.write_all(b"hello").unwrap();
        let n = r
            .read(&s, &mut buf, 4096, Instant::now() + Duration::from_secs(5))
            .unwrap();
        assert_eq!(&buf[..n], b"hello");
        c.write_all(&[7; 10_000]).unwrap();
        let mut got = 0;
        while got < 10_000 {
            got += r
                .read(&s, &mut buf, 65536, Instant::now() + Duration::from_secs(5))
                .unwrap();
        }
        assert_eq!(buf.len(), 5 + 10_000);
        drop(c);
        assert_eq!(
            r.read(&s, &mut buf, 4096, Instant::now() + Duration::from_secs(5))
                .unwrap(),
            0
        );
    }
}
