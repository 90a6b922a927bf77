//! Every status this server sends, typed, each with its registered reason phrase (RFC 9110 §15,
//! the IANA "HTTP Status Code Registry"). A response can only carry one of these, so no status
//! line can go out as `415 Unknown`. Pure: no I/O.

/// A status code the server emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    Continue,
    SwitchingProtocols,
    Ok,
    Created,
    NoContent,
    SeeOther,
    NotModified,
    PermanentRedirect,
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    Conflict,
    ContentTooLarge,
    UriTooLong,
    UnsupportedMediaType,
    ExpectationFailed,
    MisdirectedRequest,
    UpgradeRequired,
    TooManyRequests,
    RequestHeaderFieldsTooLarge,
    InternalServerError,
    NotImplemented,
    ServiceUnavailable,
    HttpVersionNotSupported,
}

/// The one table: status, code, registered reason phrase.
const TABLE: [(Status, u16, &str); 27] = [
    (Status::Continue, 100, "Continue"),
    (Status::SwitchingProtocols, 101, "Switching Protocols"),
    (Status::Ok, 200, "OK"),
    (Status::Created, 201, "Created"),
    (Status::NoContent, 204, "No Content"),
    (Status::SeeOther, 303, "See Other"),
    (Status::NotModified, 304, "Not Modified"),
    (Status::PermanentRedirect, 308, "Permanent Redirect"),
    (Status::BadRequest, 400, "Bad Request"),
    (Status::Unauthorized, 401, "Unauthorized"),
    (Status::Forbidden, 403, "Forbidden"),
    (Status::NotFound, 404, "Not Found"),
    (Status::MethodNotAllowed, 405, "Method Not Allowed"),
    (Status::RequestTimeout, 408, "Request Timeout"),
    (Status::Conflict, 409, "Conflict"),
    (Status::ContentTooLarge, 413, "Content Too Large"),
    (Status::UriTooLong, 414, "URI Too Long"),
    (Status::UnsupportedMediaType, 415, "Unsupported Media Type"),
    (Status::ExpectationFailed, 417, "Expectation Failed"),
    (Status::MisdirectedRequest, 421, "Misdirected Request"),
    (Status::UpgradeRequired, 426, "Upgrade Required"),
    (Status::TooManyRequests, 429, "Too Many Requests"),
    (
        Status::RequestHeaderFieldsTooLarge,
        431,
        "Request Header Fields Too Large",
    ),
    (Status::InternalServerError, 500, "Internal Server Error"),
    (Status::NotImplemented, 501, "Not Implemented"),
    (Status::ServiceUnavailable, 503, "Service Unavailable"),
    (
        Status::HttpVersionNotSupported,
        505,
        "HTTP Version Not Supported",
    ),
];

impl Status {
    /// Every status, in code order.
    pub fn all() -> impl Iterator<Item = Status> {
        TABLE.iter().map(|&(s, _, _)| s)
    }

    fn row(self) -> &'static (Status, u16, &'static str) {
        TABLE
            .iter()
            .find(|(s, _, _)| *s == self)
            .expect("every Status has a row in TABLE (tested)")
    }

    /// The three-digit code.
    pub fn code(self) -> u16 {
        self.row().1
    }

    /// The registered reason phrase.
    pub fn reason(self) -> &'static str {
        self.row().2
    }

    /// The status for a code, if this server sends it.
    pub fn from_code(code: u16) -> Option<Status> {
        TABLE
            .iter()
            .find(|(_, c, _)| *c == code)
            .map(|&(s, _, _)| s)
    }

    /// 1xx, 204 and 304 carry no body (RFC 9110 §6.4.1, §15.3.5, §15.4.5).
    pub fn is_bodyless(self) -> bool {
        let c = self.code();
        c < 200 || c == 204 || c == 304
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code(), self.reason())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The IANA registry's phrases (RFC 9110 §15), written out independently of `TABLE`.
    const REGISTRY: &[(u16, &str)] = &[
        (100, "Continue"),
        (101, "Switching Protocols"),
        (200, "OK"),
        (201, "Created"),
        (204, "No Content"),
        (303, "See Other"),
        (304, "Not Modified"),
        (308, "Permanent Redirect"),
        (400, "Bad Request"),
        (403, "Forbidden"),
        (404, "Not Found"),
        (405, "Method Not Allowed"),
        (408, "Request Timeout"),
        (413, "Content Too Large"),
        (414, "URI Too Long"),
        (401, "Unauthorized"),
        (409, "Conflict"),
        (415, "Unsupported Media Type"),
        (417, "Expectation Failed"),
        (421, "Misdirected Request"),
        (426, "Upgrade Required"),
        (429, "Too Many Requests"),
        (431, "Request Header Fields Too Large"),
        (500, "Internal Server Error"),
        (501, "Not Implemented"),
        (503, "Service Unavailable"),
        (505, "HTTP Version Not Supported"),
    ];

    #[test]
    fn every_status_has_its_registered_phrase_on_the_wire() {
        let mut codes = std::collections::HashSet::new();
        for s in Status::all() {
            assert!(codes.insert(s.code()), "{s:?} listed twice");
            let registered = REGISTRY
                .iter()
                .find(|(c, _)| *c == s.code())
                .unwrap_or_else(|| panic!("{} is not in the registry list", s.code()));
            assert_eq!(s.reason(), registered.1);
            assert_eq!(Status::from_code(s.code()), Some(s));
            let mut out = Vec::new();
            crate::http::Response::new(s).write_to(&mut out, true, false);
            let line = format!("HTTP/1.1 {} {}\r\n", s.code(), registered.1);
            assert!(out.starts_with(line.as_bytes()), "{s:?}");
        }
        assert_eq!(codes.len(), REGISTRY.len());
        assert_eq!(Status::from_code(299), None);
    }
}
