//! Socket helpers shared by the HTTP and WebSocket connection loops: reads under a deadline
//! that do not pay a `setsockopt` per read, a receive buffer that is zeroed only when it grows,
//! and the one test for "that was a timeout".

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
/// is left alone; a read may then wake up to that much late (by at most 1/16 of a long
/// timeout); one that wakes early is simply retried.
#[derive(Debug, Default)]
pub struct Reader {
    timeout: SocketTimeout,
}

/// The timeout last set on one direction of a socket: the one place that decides when a new
/// `setsockopt` is worth its system call (see [`Reader`]).
#[derive(Debug, Default)]
struct SocketTimeout(Option<Duration>);

impl SocketTimeout {
    /// Makes the socket's timeout about the time left before `deadline` (`set` sets it), or
    /// fails with `TimedOut` if the deadline has passed. A timeout already set within 1/16 of
    /// the time left is kept.
    fn arm(
        &mut self,
        deadline: Instant,
        set: impl FnOnce(Duration) -> io::Result<()>,
    ) -> io::Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        // A zero timeout would mean "none" to the socket.
        let left = left.max(Duration::from_millis(1));
        if self.0.is_none_or(|t| t.abs_diff(left) > left / 16) {
            set(left)?;
            self.0 = Some(left);
        }
        Ok(())
    }
}

impl Reader {
    pub fn new() -> Self {
        Reader::default()
    }

    /// Reads what is available onto the end of `buf` (at most `chunk` bytes), waiting at most
    /// until `deadline`. `Ok(0)`: the peer closed. The buffer is zeroed only where it grows
    /// (see [`InBuf`]), so a read of a few bytes with room for many costs no `memset`.
    pub fn read(
        &mut self,
        stream: &TcpStream,
        buf: &mut InBuf,
        chunk: usize,
        deadline: Instant,
    ) -> io::Result<usize> {
        if chunk <= STACK_READ {
            // Small reads go through the stack, so an idle connection's buffer stays empty.
            let mut tmp = [0u8; STACK_READ];
            let n = self.read_into(stream, &mut tmp[..chunk.max(1)], deadline)?;
            buf.extend(&tmp[..n]);
            return Ok(n);
        }
        let r = self.read_into(stream, buf.room(chunk), deadline);
        buf.filled_by(*r.as_ref().unwrap_or(&0));
        r
    }

    /// Reads what is available into `into`, waiting at most until `deadline`. `Ok(0)`: the
    /// peer closed (or `into` is empty).
    ///
    /// A `WouldBlock` before the deadline is retried, not reported: the timeout set may be a
    /// little shorter than the time left (see above), and another thread sharing this socket's
    /// file description may have made it non-blocking for a moment (the fan-out's catch-up
    /// writes do, so that they never wait on a peer).
    pub fn read_into(
        &mut self,
        stream: &TcpStream,
        into: &mut [u8],
        deadline: Instant,
    ) -> io::Result<usize> {
        loop {
            self.timeout
                .arm(deadline, |t| stream.set_read_timeout(Some(t)))?;
            match read_retry(stream, into) {
                Err(e) if is_timeout(&e) => std::thread::yield_now(),
                r => return r,
            }
        }
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

/// A receive buffer that is zero-filled only where it grows.
///
/// Safe Rust cannot read into a `Vec`'s spare capacity, so a buffer that is `resize`d before
/// each read and truncated after zero-fills the whole read size every time: a 1-byte segment
/// read with room for 1 MiB costs a 1 MiB `memset`. Here the initialised region (`data`, zeroed
/// once, as it grows) is kept apart from the bytes filled (`start..end`): reads go into
/// `data[end..]`, consuming moves `start`, and bytes are moved to the front only when the tail
/// has no room for what is wanted. `held()` is the real memory held: the allocation's capacity.
#[derive(Debug, Default)]
pub struct InBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
    /// Bytes zero-filled over the buffer's life, so tests can show reads do not re-zero.
    zeroed: usize,
}

impl InBuf {
    /// A buffer holding `bytes` (its allocation is kept as it is).
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        let end = bytes.len();
        InBuf {
            data: bytes,
            start: 0,
            end,
            zeroed: 0,
        }
    }

    /// The bytes filled and not consumed.
    pub fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Memory held: the allocation, whatever part of it is filled.
    pub fn held(&self) -> usize {
        self.data.capacity()
    }

    /// Bytes zero-filled so far (each initialised byte is zeroed once).
    pub fn zeroed(&self) -> usize {
        self.zeroed
    }

    /// Drops the first `n` filled bytes (without moving the rest).
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// What [`room`](InBuf::room) would make the allocation for `want` free bytes after the
    /// filled ones: the capacity, unchanged when they fit (moving the filled bytes to the front
    /// if need be), else exactly enough. A caller charges this before asking for the room.
    pub fn held_after_room(&self, want: usize) -> usize {
        self.data.capacity().max(self.len().saturating_add(want))
    }

    /// `want` writable bytes after the filled ones (mark what a read put there with
    /// [`filled_by`](InBuf::filled_by)). Zero-fills only bytes the allocation never had.
    pub fn room(&mut self, want: usize) -> &mut [u8] {
        if self.data.len() - self.end < want {
            if self.start > 0 {
                // The tail is short: move the filled bytes to the front, once.
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let need = self.end + want;
            if self.data.len() < need {
                if self.data.capacity() < need {
                    // Exactly what is wanted: the caller charged this size.
                    self.data.reserve_exact(need - self.data.len());
                }
                // Initialise the whole allocation once, so later reads find it ready.
                let init = self.data.capacity();
                self.zeroed += init - self.data.len();
                self.data.resize(init, 0);
            }
        }
        &mut self.data[self.end..self.end + want]
    }

    /// Marks `n` bytes of the last [`room`](InBuf::room) as filled.
    pub fn filled_by(&mut self, n: usize) {
        self.end = (self.end + n).min(self.data.len());
    }

    /// Appends `bytes` (growing the allocation to fit, zeroing only what is new).
    pub fn extend(&mut self, bytes: &[u8]) {
        self.room(bytes.len()).copy_from_slice(bytes);
        self.filled_by(bytes.len());
    }

    /// Gives the allocation back when it is larger than `keep` and at most a quarter used
    /// (a large message has just left): the filled bytes move to the front and the allocation
    /// shrinks to them (in place, not beside a second allocation), or to none.
    pub fn shrink(&mut self, keep: usize) {
        let cap = self.data.capacity();
        let len = self.len();
        if cap > keep && len <= cap / 4 {
            self.data.copy_within(self.start..self.end, 0);
            self.data.truncate(len);
            self.data.shrink_to_fit();
            self.start = 0;
            self.end = len;
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
    timeout: SocketTimeout,
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
            self.timeout
                .arm(deadline, |t| stream.set_write_timeout(Some(t)))?;
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
        let mut buf = InBuf::from_vec(Vec::new());
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
        assert_eq!(&buf.filled()[..n], b"hello");
        c.write_all(&[7; 10_000]).unwrap();
        let mut got = 0;
        while got < 10_000 {
            got += r
                .read(&s, &mut buf, 65536, Instant::now() + Duration::from_secs(5))
                .unwrap();
        }
        assert_eq!(buf.len(), 5 + 10_000);
        // 10,000 bytes in reads of up to 64 KiB: zeroed as the buffer grew, not per read.
        assert!(buf.zeroed() <= 2 * 65536 + 8192, "{}", buf.zeroed());
        drop(c);
        assert_eq!(
            r.read(&s, &mut buf, 4096, Instant::now() + Duration::from_secs(5))
                .unwrap(),
            0
        );
    }

    #[test]
    fn a_spurious_would_block_before_the_deadline_is_retried() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        // Another thread sharing the description makes it non-blocking for a while: the
        // read must wait for the data, not report a timeout at once.
        s.set_nonblocking(true).unwrap();
        let s2 = s.try_clone().unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            s2.set_nonblocking(false).unwrap();
            c.write_all(b"x").unwrap();
            c
        });
        let mut r = Reader::new();
        let mut into = [0u8; 8];
        let n = r
            .read_into(&s, &mut into, Instant::now() + Duration::from_secs(5))
            .unwrap();
        assert_eq!(&into[..n], b"x");
        drop(t.join());
    }

    #[test]
    fn inbuf_zeroes_each_byte_once_and_consumes_without_moving() {
        let mut b = InBuf::default();
        let room = b.room(1 << 20);
        assert_eq!(room.len(), 1 << 20);
        room[0] = 7;
        b.filled_by(1);
        assert_eq!(b.zeroed(), 1 << 20);
        assert_eq!(b.held(), 1 << 20);
        // A thousand 1-byte reads, each offered room for a mebibyte minus what is filled: no
        // further zeroing, and consuming from the front moves nothing.
        for i in 0..1000u32 {
            let want = (1 << 20) - b.len();
            let room = b.room(want);
            room[0] = i as u8;
            b.filled_by(1);
            if i % 2 == 1 {
                b.consume(1);
            }
        }
        assert_eq!(b.zeroed(), 1 << 20, "the region was zeroed again");
        assert_eq!(b.held(), 1 << 20);
        assert_eq!(b.len(), 501);
        // Room for more than the tail has: the filled bytes move to the front, still no zeroing.
        let first = b.filled()[0];
        let want = (1 << 20) - b.len();
        assert_eq!(b.held_after_room(want), 1 << 20);
        b.room(want);
        assert_eq!(b.filled()[0], first);
        assert_eq!(b.zeroed(), 1 << 20);
        // Growing zeroes only the new part.
        assert_eq!(b.held_after_room(1 << 20), 501 + (1 << 20));
        b.room(1 << 20);
        assert_eq!(b.zeroed(), (1 << 20) + 501);
    }

    #[test]
    fn inbuf_gives_a_large_allocation_back() {
        let mut b = InBuf::default();
        b.extend(&vec![1; 100_000]);
        b.extend(b"tail");
        b.consume(100_000);
        b.shrink(4096);
        assert_eq!(b.filled(), b"tail");
        assert!(b.held() < 4096, "{}", b.held());
        b.consume(4);
        b.shrink(0);
        assert_eq!(b.held(), 0);
        // A buffer mostly full is kept.
        b.extend(&[2; 10_000]);
        b.shrink(4096);
        assert_eq!(b.held(), 10_000);
    }
}
