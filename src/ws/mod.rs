//! WebSocket layer (RFC 6455). `frame`, `utf8`, `message`, `inbox` and `handshake` are pure
//! (no I/O); `conn` drives them over a socket.
pub mod conn;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod inbox;
pub mod message;
pub mod utf8;

pub use error::Error;
