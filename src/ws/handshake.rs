//! The WebSocket opening handshake, server side (RFC 6455 §4.2): decides whether a parsed HTTP
//! request is a valid upgrade and computes `Sec-WebSocket-Accept`. Pure: no I/O and no response
//! writing, and no origin policy — the caller checks `Origin` and writes the 101 or the error.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::http::request::{Request, Version};
use crate::http::Status;

/// The GUID appended to the client's key before hashing (RFC 6455 §1.3, §4.2.2 item 5.4).
pub const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only protocol version we speak (RFC 6455 §4.1 item 9, §11.6).
pub const VERSION: &str = "13";

/// The key is "a randomly selected 16-byte value" (§4.1 item 7), so 24 base64 characters.
const KEY_BYTES: usize = 16;
const KEY_BASE64_LEN: usize = 24;

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`: base64 of the SHA-1 of the key
/// (as sent, not decoded) followed by [`ACCEPT_GUID`] (§4.2.2 item 5.4).
pub fn accept_key(key: &str) -> String {
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(ACCEPT_GUID.as_bytes());
    STANDARD.encode(sha1.digest().bytes())
}

/// True when the request asks for a WebSocket (`Upgrade` lists `websocket`), even if the rest
/// of the handshake is wrong: the router sends it to [`validate`] so it gets a precise answer.
pub fn is_upgrade_request(req: &Request) -> bool {
    req.has_token("Upgrade", "websocket")
}

/// Why an upgrade request is refused, and with which HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// §4.1 item 2: "The method of the request MUST be GET".
    MethodNotGet,
    /// §4.1 item 2: "the HTTP version MUST be at least 1.1".
    HttpVersion,
    /// §4.1 item 4: a `Host` header field is required.
    MissingHost,
    /// §4.1 item 5: `Upgrade` must include the `websocket` keyword.
    UpgradeNotWebsocket,
    /// §4.1 item 6: `Connection` must include the `Upgrade` token.
    ConnectionNotUpgrade,
    /// §4.2.2 item 4: a `Sec-WebSocket-Version` other than 13, or none.
    UnsupportedVersion,
    /// §4.1 item 7: no `Sec-WebSocket-Key`.
    MissingKey,
    /// More than one `Sec-WebSocket-Key` field (§11.3.1: it "MUST NOT appear more than once").
    DuplicateKey,
    /// A key that is not the base64 encoding of exactly 16 bytes (§4.1 item 7).
    InvalidKey,
}

impl HandshakeError {
    /// The HTTP status to answer with. For 426 the caller must add `Sec-WebSocket-Version: 13`
    /// (§4.2.2 item 4) so the client can retry with a version we speak.
    pub fn status(&self) -> Status {
        match self {
            HandshakeError::UnsupportedVersion => Status::UpgradeRequired,
            HandshakeError::MethodNotGet
            | HandshakeError::HttpVersion
            | HandshakeError::MissingHost
            | HandshakeError::UpgradeNotWebsocket
            | HandshakeError::ConnectionNotUpgrade
            | HandshakeError::MissingKey
            | HandshakeError::DuplicateKey
            | HandshakeError::InvalidKey => Status::BadRequest,
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HandshakeError::MethodNotGet => "WebSocket upgrade must use GET",
            HandshakeError::HttpVersion => "WebSocket upgrade needs HTTP/1.1",
            HandshakeError::MissingHost => "WebSocket upgrade without Host",
            HandshakeError::UpgradeNotWebsocket => "Upgrade header does not name websocket",
            HandshakeError::ConnectionNotUpgrade => "Connection header lacks the upgrade token",
            HandshakeError::UnsupportedVersion => "Sec-WebSocket-Version must be 13",
            HandshakeError::MissingKey => "missing Sec-WebSocket-Key",
            HandshakeError::DuplicateKey => "Sec-WebSocket-Key sent more than once",
            HandshakeError::InvalidKey => "Sec-WebSocket-Key is not 16 base64-encoded bytes",
        })
    }
}

impl std::error::Error for HandshakeError {}

/// Checks a client's opening handshake (§4.2.1) and returns the `Sec-WebSocket-Accept` value
/// for the 101 response. Origin checking is the caller's.
pub fn validate(req: &Request) -> Result<String, HandshakeError> {
    if req.method != "GET" {
        return Err(HandshakeError::MethodNotGet);
    }
    if req.version != Version::Http11 {
        return Err(HandshakeError::HttpVersion);
    }
    if req.header("Host").is_none() {
        return Err(HandshakeError::MissingHost);
    }
    if !req.has_token("Upgrade", "websocket") {
        return Err(HandshakeError::UpgradeNotWebsocket);
    }
    // A token list, not a substring: browsers send `Connection: keep-alive, Upgrade`.
    if !req.has_token("Connection", "upgrade") {
        return Err(HandshakeError::ConnectionNotUpgrade);
    }
    // §4.2.2 item 4: "If this version does not match a version understood by the server, the
    // server MUST abort the WebSocket handshake … and instead send an appropriate HTTP error code
    // (such as 426 Upgrade Required)".
    let mut versions = req.header_values("Sec-WebSocket-Version");
    match (versions.next(), versions.next()) {
        (Some(v), None) if v.trim() == VERSION => {}
        _ => return Err(HandshakeError::UnsupportedVersion),
    }
    let mut keys = req.header_values("Sec-WebSocket-Key");
    let key = match (keys.next(), keys.next()) {
        (None, _) => return Err(HandshakeError::MissingKey),
        (Some(_), Some(_)) => return Err(HandshakeError::DuplicateKey),
        (Some(key), None) => key.trim(),
    };
    // Length first, so decoding never allocates for an oversized value.
    let decodes_to_16 =
        key.len() == KEY_BASE64_LEN && STANDARD.decode(key).is_ok_and(|k| k.len() == KEY_BYTES);
    if !decodes_to_16 {
        return Err(HandshakeError::InvalidKey);
    }
    Ok(accept_key(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::BodyFraming;

    const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    // RFC 6455 §1.3 and the 101 example in §1.2.
    const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn request(method: &str, version: Version, headers: &[(&str, &str)]) -> Request {
        Request {
            method: method.to_string(),
            target: "/chatsocket".to_string(),
            path: "/chatsocket".to_string(),
            query: None,
            version,
            headers: headers.iter().copied().collect(),
            body: BodyFraming::None,
        }
    }

    /// The RFC 6455 §1.3 client handshake, with extra header fields as given, replacing any
    /// field of the same name.
    fn upgrade(changes: &[(&str, Option<&str>)]) -> Request {
        let mut headers = vec![
            ("Host", "server.example.com"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", RFC_KEY),
            ("Origin", "http://example.com"),
            ("Sec-WebSocket-Version", "13"),
        ];
        for (name, value) in changes {
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            if let Some(value) = value {
                headers.push((name, value));
            }
        }
        request("GET", Version::Http11, &headers)
    }

    #[test]
    fn rfc_accept_key() {
        assert_eq!(accept_key(RFC_KEY), RFC_ACCEPT);
        assert_eq!(validate(&upgrade(&[])), Ok(RFC_ACCEPT.to_string()));
    }

    #[test]
    fn headers_as_browsers_send_them() {
        let req = upgrade(&[
            ("Connection", Some("keep-alive, Upgrade")),
            ("Upgrade", Some("WebSocket")),
            ("Sec-WebSocket-Key", Some(" dGhlIHNhbXBsZSBub25jZQ== ")),
        ]);
        assert!(is_upgrade_request(&req));
        assert_eq!(validate(&req), Ok(RFC_ACCEPT.to_string()));
        // Connection split over two fields.
        let mut req = upgrade(&[("Connection", Some("keep-alive"))]);
        req.headers.push("connection", "upgrade");
        assert!(validate(&req).is_ok());
    }

    #[test]
    fn refusals() {
        let post = {
            let mut req = upgrade(&[]);
            req.method = "POST".to_string();
            req
        };
        let http10 = {
            let mut req = upgrade(&[]);
            req.version = Version::Http10;
            req
        };
        let mut two_keys = upgrade(&[]);
        two_keys.headers.push("Sec-WebSocket-Key", RFC_KEY);
        let cases = [
            (post, HandshakeError::MethodNotGet, 400),
            (http10, HandshakeError::HttpVersion, 400),
            (upgrade(&[("Host", None)]), HandshakeError::MissingHost, 400),
            (
                upgrade(&[("Upgrade", Some("h2c"))]),
                HandshakeError::UpgradeNotWebsocket,
                400,
            ),
            (
                upgrade(&[("Connection", Some("keep-alive"))]),
                HandshakeError::ConnectionNotUpgrade,
                400,
            ),
            // A substring is not a token.
            (
                upgrade(&[("Connection", Some("upgraded"))]),
                HandshakeError::ConnectionNotUpgrade,
                400,
            ),
            (
                upgrade(&[("Sec-WebSocket-Version", Some("8"))]),
                HandshakeError::UnsupportedVersion,
                426,
            ),
            (
                upgrade(&[("Sec-WebSocket-Version", None)]),
                HandshakeError::UnsupportedVersion,
                426,
            ),
            (
                upgrade(&[("Sec-WebSocket-Key", None)]),
                HandshakeError::MissingKey,
                400,
            ),
            (two_keys, HandshakeError::DuplicateKey, 400),
            // 15 and 17 bytes, not base64, and 16 bytes without padding.
            (
                upgrade(&[("Sec-WebSocket-Key", Some("MTIzNDU2Nzg5MDEyMzQ1"))]),
                HandshakeError::InvalidKey,
                400,
            ),
            (
                upgrade(&[("Sec-WebSocket-Key", Some("MTIzNDU2Nzg5MDEyMzQ1Njc="))]),
                HandshakeError::InvalidKey,
                400,
            ),
            (
                upgrade(&[("Sec-WebSocket-Key", Some("!!!!!!!!!!!!!!!!!!!!!!=="))]),
                HandshakeError::InvalidKey,
                400,
            ),
            (
                upgrade(&[("Sec-WebSocket-Key", Some("dGhlIHNhbXBsZSBub25jZQ"))]),
                HandshakeError::InvalidKey,
                400,
            ),
            (
                upgrade(&[("Sec-WebSocket-Key", Some(""))]),
                HandshakeError::InvalidKey,
                400,
            ),
        ];
        for (req, err, status) in cases {
            assert_eq!(validate(&req), Err(err), "{req:?}");
            assert_eq!(err.status().code(), status);
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn upgrade_detection() {
        assert!(is_upgrade_request(&upgrade(&[])));
        // Detected even when the rest is wrong, so the client gets the precise error.
        let req = upgrade(&[("Sec-WebSocket-Version", Some("8"))]);
        assert!(is_upgrade_request(&req));
        assert!(!is_upgrade_request(&upgrade(&[("Upgrade", None)])));
        assert!(!is_upgrade_request(&request("GET", Version::Http11, &[])));
        let req = upgrade(&[("Upgrade", Some("h2c, websocket"))]);
        assert!(is_upgrade_request(&req));
    }
}
