//! HTTP/1.1 layer (RFC 9110 / 9112): pure parsing in `request` and `chunked`, serialisation in
//! `response`, the connection I/O loop in `conn`, and its access log in `access_log`; behind a
//! reverse proxy, `forwarded` (trusted proxies and what they forward) and `base_path`. Nothing
//! here knows about votes.
pub mod access_log;
pub mod base_path;
pub mod chunked;
pub mod conn;
pub mod error;
pub mod form;
pub mod forwarded;
pub mod request;
pub mod response;
pub mod status;

pub use error::Error;
pub use request::{parse_request, Parse, Request, Version};
pub use response::Response;
pub use status::Status;
