//! SIGTERM and SIGINT, for the graceful shutdown (`server::Server::run_until`). std has no
//! signal API, so this module declares the four libc calls it needs (`extern "C"`, no libc
//! crate) and is the one place in the crate allowed to use `unsafe` (the crate denies it in
//! Cargo.toml's `[lints]`); each `unsafe` block says why it is sound.
//!
//! The handler does only async-signal-safe work: it counts the signal in an atomic and writes
//! one byte to a self-pipe (a Unix socket pair, made by std) that a normal thread blocks on
//! ([`Signals::wait`]). A second signal, while the first one's shutdown is under way, exits at
//! once from the handler itself with `_exit(128 + signal)` (as a shell reports a process killed
//! by it), after a line on stderr, so it works however stuck the rest of the process is.
//! Acknowledged votes are already on disk (each batch is synced before it is answered), so
//! that immediate exit loses none of them.
//!
//! Linux only (glibc or musl, any architecture): `signal()` there has BSD semantics (the
//! handler stays installed, and interrupted system calls restart), and `__errno_location`
//! is where errno lives. Signal numbers are the Linux ones.
#![allow(unsafe_code)]

use std::ffi::c_int;
use std::io::{self, Read};
use std::os::fd::IntoRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

/// Interrupt (Ctrl-C).
pub const SIGINT: c_int = 2;
/// User-defined signal 1 (the unit tests use it, leaving Ctrl-C alone).
pub const SIGUSR1: c_int = 10;
/// Terminate (`kill`, systemd, Docker, Kubernetes).
pub const SIGTERM: c_int = 15;

/// `signal()`'s error return, `SIG_ERR` (`(void (*)(int)) -1`).
const SIG_ERR: usize = usize::MAX;

extern "C" {
    /// `sighandler_t signal(int signum, sighandler_t handler)`; a handler is a function
    /// pointer, passed and returned here as the address it is.
    fn signal(signum: c_int, handler: usize) -> usize;
    /// `ssize_t write(int fd, const void *buf, size_t count)`: async-signal-safe.
    fn write(fd: c_int, buf: *const u8, count: usize) -> isize;
    /// `void _exit(int status)`: async-signal-safe, runs no atexit handlers.
    fn _exit(status: c_int) -> !;
    /// `int *__errno_location(void)`: this thread's errno (glibc and musl).
    fn __errno_location() -> *mut c_int;
}

/// The write end of the self-pipe (-1 until [`Signals::install`]).
static PIPE: AtomicI32 = AtomicI32::new(-1);
/// Signals received so far.
static RECEIVED: AtomicUsize = AtomicUsize::new(0);

/// What the handler writes on stderr before a second signal's immediate exit.
const SECOND: &[u8] = b"livevote: second signal: exiting at once\n";

extern "C" fn on_signal(sig: c_int) {
    let before = RECEIVED.fetch_add(1, Ordering::SeqCst);
    if before >= 1 {
        // SAFETY: `write` and `_exit` are async-signal-safe (POSIX.1-2008 §2.4.3); the buffer
        // is a static byte string of the length given. Nothing of Rust's runs after `_exit`.
        unsafe {
            write(2, SECOND.as_ptr(), SECOND.len());
            _exit(128 + sig);
        }
    }
    let fd = PIPE.load(Ordering::SeqCst);
    if fd < 0 {
        return;
    }
    let byte = sig as u8;
    // SAFETY: `__errno_location` returns this thread's errno, valid for the thread's life;
    // `write` is async-signal-safe, and `byte` lives across the call. errno is put back as it
    // was, so the code this handler interrupted sees no change. The pipe is non-blocking: a
    // full one (signals nobody reads yet) loses the byte, never blocks the handler, and one
    // byte waiting is enough to wake the reader.
    unsafe {
        let errno = __errno_location();
        let saved = *errno;
        write(fd, &byte, 1);
        *errno = saved;
    }
}

/// The read end of the self-pipe: which signals arrived, in a normal thread.
pub struct Signals {
    rx: UnixStream,
}

impl Signals {
    /// Installs the handler for each of `signals` (e.g. [`SIGTERM`], [`SIGINT`]). Once per
    /// process: a second call is an error.
    pub fn install(signals: &[c_int]) -> io::Result<Signals> {
        let (rx, tx) = UnixStream::pair()?;
        tx.set_nonblocking(true)?;
        // The write end lives as long as the process: the handler may run at any time.
        let fd = tx.into_raw_fd();
        if PIPE
            .compare_exchange(-1, fd, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return Err(io::Error::other("signal handlers are already installed"));
        }
        for &sig in signals {
            let handler = on_signal as extern "C" fn(c_int) as usize;
            // SAFETY: `on_signal` is an `extern "C" fn(c_int)` that does only
            // async-signal-safe work (see above) and never unwinds; `signal` only records it.
            let previous = unsafe { signal(sig, handler) };
            if previous == SIG_ERR {
                return Err(io::Error::other(format!("cannot handle signal {sig}")));
            }
        }
        Ok(Signals { rx })
    }

    /// Blocks until a signal arrives; returns its number.
    pub fn wait(&mut self) -> io::Result<c_int> {
        let mut byte = [0u8; 1];
        loop {
            match self.rx.read(&mut byte) {
                Ok(1) => return Ok(c_int::from(byte[0])),
                Ok(_) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// How many handled signals have arrived.
pub fn received() -> usize {
    RECEIVED.load(Ordering::SeqCst)
}

/// A signal's name, for messages.
pub fn name(sig: c_int) -> &'static str {
    match sig {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGUSR1 => "SIGUSR1",
        _ => "a signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One signal, sent to this test process with `kill` (SIGUSR1: Ctrl-C keeps working for
    /// the test run). Only this test installs handlers: a second signal would end the process.
    #[test]
    fn a_signal_reaches_the_waiting_thread() {
        let mut signals = Signals::install(&[SIGUSR1]).expect("install");
        assert!(Signals::install(&[SIGUSR1]).is_err(), "installed once");
        let status = std::process::Command::new("kill")
            .args(["-USR1", &std::process::id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        assert_eq!(signals.wait().unwrap(), SIGUSR1);
        assert_eq!(received(), 1);
        assert_eq!(name(SIGTERM), "SIGTERM");
    }
}
