//! livevote — a live-voting server over hand-written HTTP/1.1 and WebSocket (RFC 6455).
//!
//! Layers, lowest first; dependencies point down only:
//!
//! ```text
//! main → server → app → (http, ws) → pure parsers → config/std
//! ```
//!
//! - [`config`]: `Config` and `Limits`, every default documented in one place.
//! - [`ids`]: the one owner of id rules (candidates, vote ids, viewers, epochs).
//! - [`json`]: the JSON writer every message is built with.
//! - [`qr`]: a QR code encoder (byte mode, versions 1–40) and its SVG, for the presenter page's
//!   join link.
//! - [`log`]: levelled messages on stderr and the UTC clock the logs are written with.
//! - [`net`]: socket helpers: reads and writes under wall-clock deadlines, the receive buffer.
//! - [`http`]: the pure request parser, responses, and the per-connection HTTP loop.
//! - [`ws`]: the pure frame codec, handshake, message assembly, and the WebSocket I/O loop.
//! - [`redis`]: a hand-written Redis client (RESP codec, connection, reconnecting client);
//!   nothing in it knows votes; `app::redis_store` uses it for `--redis`.
//! - [`app`]: the vote table (no HTTP types), routes, pages, static files.
//! - [`server`]: the accept loop, one thread per connection, and the graceful shutdown.
//! - [`sign`]: HMAC-SHA1 signed cookie values and constant-time comparison.
//! - [`signals`]: SIGTERM and SIGINT (libc's `signal`, through a self-pipe).
//! - [`probe`]: `livevote probe [URL]`, a health check without curl.
//!
//! `unsafe` is denied for the whole crate (`[lints]` in Cargo.toml), not forbidden: [`signals`]
//! declares the few libc calls std lacks (`extern "C"`) and is the one module allowed to use
//! it (`#[allow(unsafe_code)]`), with a `// SAFETY:` comment on each `unsafe` block.

pub mod admission;
pub mod app;
pub mod config;
pub mod http;
pub mod ids;
pub mod json;
pub mod log;
pub mod net;
pub mod probe;
pub mod qr;
pub mod redis;
pub mod server;
pub mod sign;
pub mod signals;
pub mod ws;
