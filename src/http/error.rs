//! The HTTP layer's one error type, and its one mapping to the wire: [`Error::status`].

use std::fmt;

use super::status::Status;

/// Why a request could not be read. Every variant ends the connection after its status is sent,
/// because after a framing error the next request's first byte cannot be found reliably.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Malformed syntax; the text says what (it goes into the response body).
    BadRequest(&'static str),
    /// Request line longer than `Limits::max_request_line`.
    UriTooLong { max: usize },
    /// Request head larger than `Limits::max_header_bytes`.
    HeadersTooLarge { max: usize },
    /// More header fields than `Limits::max_headers`.
    TooManyHeaders { max: usize },
    /// A body larger than `Limits::max_body`.
    BodyTooLarge { size: u64, max: usize },
    /// An HTTP version other than 1.0 and 1.1.
    VersionNotSupported,
    /// A transfer coding we do not implement (only `chunked` is).
    NotImplemented(&'static str),
    /// An `Expect` other than `100-continue`.
    ExpectationFailed,
    /// The head or body did not arrive before its deadline.
    Timeout,
}

impl Error {
    /// The status code this error is answered with.
    pub fn status(&self) -> Status {
        match self {
            Error::BadRequest(_) => Status::BadRequest,
            Error::UriTooLong { .. } => Status::UriTooLong,
            Error::HeadersTooLarge { .. } | Error::TooManyHeaders { .. } => {
                Status::RequestHeaderFieldsTooLarge
            }
            Error::BodyTooLarge { .. } => Status::ContentTooLarge,
            Error::VersionNotSupported => Status::HttpVersionNotSupported,
            Error::NotImplemented(_) => Status::NotImplemented,
            Error::ExpectationFailed => Status::ExpectationFailed,
            Error::Timeout => Status::RequestTimeout,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadRequest(why) => write!(f, "bad request: {why}"),
            Error::UriTooLong { max } => write!(f, "request line longer than {max} bytes"),
            Error::HeadersTooLarge { max } => write!(f, "request head larger than {max} bytes"),
            Error::TooManyHeaders { max } => write!(f, "more than {max} header fields"),
            Error::BodyTooLarge { size, max } => {
                write!(f, "body of {size} bytes is larger than {max} bytes")
            }
            Error::VersionNotSupported => f.write_str("only HTTP/1.0 and HTTP/1.1 are supported"),
            Error::NotImplemented(what) => write!(f, "not implemented: {what}"),
            Error::ExpectationFailed => f.write_str("only 'Expect: 100-continue' is supported"),
            Error::Timeout => f.write_str("request not received in time"),
        }
    }
}

impl std::error::Error for Error {}
