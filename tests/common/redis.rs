//! A real `redis-server` of the test's own: Debian's binary (`make redis-deps`), on a free
//! port of 127.0.0.1, its files in a temp directory, killed by its handle (never by name) when
//! dropped. Persistence is off unless the test asks for it (`start(&["--appendonly", "yes"])`:
//! later options override earlier ones).

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tempdir::TempDir;
use livevote::redis::RedisUrl;

/// How long a starting redis-server may take to accept connections, and a reconnect to
/// succeed once it is back. Generous: never what a test measures.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A redis-server of our own, killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: TempDir,
    extra: Vec<String>,
}

impl RedisServer {
    /// A server on a free port; `extra` are more command-line options (`--requirepass x`).
    pub fn start(extra: &[&str]) -> RedisServer {
        let mut server = RedisServer {
            child: None,
            port: 0,
            dir: TempDir::new("redis"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        // Another process may take the free port between our release and redis's bind: try
        // a few ports before giving up.
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn() {
                return server;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// Starts the server again on the same port, after [`kill`](RedisServer::kill).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "still running");
        assert!(
            self.spawn(),
            "redis-server did not start again on port {}",
            self.port
        );
    }

    /// Runs redis-server and waits until it accepts connections; false if it exited first.
    pub fn spawn(&mut self) -> bool {
        let port = self.port.to_string();
        let dir = self
            .dir
            .path()
            .to_str()
            .expect("UTF-8 temp path")
            .to_owned();
        let spawned = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1", "--dir", &dir])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not on PATH: run `make redis-deps` (installs Debian's \
                 redis-server) before these tests"
            ),
            Err(e) => panic!("cannot run redis-server: {e}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            // Listening, and it is ours: another test's server may hold the port we were
            // given (ours then exits at once, unable to bind).
            let pid = self.child.as_ref().expect("just spawned").id();
            if TcpStream::connect(("127.0.0.1", self.port))
                .is_ok_and(|s| server_pid(s, self.password()) == Some(pid))
            {
                return true;
            }
            let child = self.child.as_mut().expect("just spawned");
            if child.try_wait().expect("try_wait").is_some() {
                self.child = None;
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen in time"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The `--requirepass` it was given.
    fn password(&self) -> Option<&str> {
        let at = self.extra.iter().position(|a| a == "--requirepass")?;
        self.extra.get(at + 1).map(String::as_str)
    }

    /// Kills the server (SIGKILL, by its pid) and waits until it has exited.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self, auth_and_db: (&str, &str)) -> RedisUrl {
        let (auth, db) = auth_and_db;
        RedisUrl::parse(&format!("redis://{auth}127.0.0.1:{}{db}", self.port)).expect("url")
    }

    pub fn plain_url(&self) -> RedisUrl {
        self.url(("", ""))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `process_id` of the server on `stream`, from `INFO server` (after `AUTH` when the
/// server wants a password).
fn server_pid(mut stream: TcpStream, password: Option<&str>) -> Option<u32> {
    use std::io::{Read, Write};
    stream.set_read_timeout(Some(START_TIMEOUT)).ok()?;
    let mut ask = Vec::new();
    if let Some(p) = password {
        ask.extend_from_slice(format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{p}\r\n", p.len()).as_bytes());
    }
    ask.extend_from_slice(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n");
    stream.write_all(&ask).ok()?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        reply.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&reply);
        if let Some(rest) = text.split("process_id:").nth(1) {
            if let Some(line) = rest.split("\r\n").next().filter(|_| rest.contains("\r\n")) {
                return line.trim().parse().ok();
            }
        }
    }
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

impl RedisServer {
    /// `redis://127.0.0.1:PORT`, for `--redis`.
    pub fn url_string(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Whether it is running now.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}
