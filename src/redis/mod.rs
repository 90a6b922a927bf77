//! The Redis client layer, written by hand over `std::net` like the HTTP and WebSocket code.
//!
//! Layers, lowest first (dependencies point down only):
//!
//! ```text
//! bytes → resp (pure RESP2 codec) → conn (one blocking connection) → Client (reconnects)
//! ```
//!
//! - [`resp`]: commands to bytes and reply bytes to values; no I/O, every length checked
//!   against [`resp::Limits`] before anything is allocated.
//! - [`url`]: `redis://[USER:PASSWORD@]HOST:PORT[/DB]`, pure.
//! - [`conn`]: a connection with connect/read/write deadlines, `AUTH` and `SELECT` at connect,
//!   single calls and pipelines; and [`conn::Client`], which reconnects with jittered
//!   exponential backoff and says whether a failed command may have reached the server.
//!
//! This layer speaks commands and replies only: it knows nothing of votes, polls or keys.
//! The store that keeps the tally in Redis is built on it.

pub mod conn;
pub mod resp;
pub mod url;

pub use conn::{Client, Conn, Error, Options};
pub use resp::Value;
pub use url::RedisUrl;
