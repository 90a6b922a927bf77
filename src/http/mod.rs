//! HTTP/1.1 layer (RFC 9110 / 9112): pure parsing in `request` and `chunked`, serialisation in
//! `response`, the connection I/O loop in `conn`, and its access log in `access_log`. Nothing here knows about votes.
pub mod access_log;
pub mod chunked;
pub mod conn;
pub mod error;
pub mod form;
pub mod request;
pub mod response;
pub mod status;

pub use error::Error;
pub use request::{parse_request, Parse, Request, Version};
pub use response::Response;
pub use status::Status;
