//! WebSocket protocol errors (RFC 6455): what a client did wrong, and the one place that maps it
//! to the close code we answer with. Pure data — no I/O, no logging here.

use std::fmt;

use super::frame::CloseCode;

/// Why we must fail the WebSocket connection (RFC 6455 §7.1.7). Every variant is the peer's
/// fault; a peer closing normally is an `Event::Close`, not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// RSV1–3 set without a negotiated extension (§5.2: "MUST be 0").
    ReservedBits,
    /// An opcode that §5.2 reserves (3–7, 0xB–0xF).
    UnknownOpCode(u8),
    /// A client frame without a masking key (§5.1).
    UnmaskedFrame,
    /// A control frame whose payload exceeds 125 bytes (§5.5).
    ControlFrameTooLong(u64),
    /// A control frame with FIN clear (§5.5: "MUST NOT be fragmented").
    FragmentedControlFrame,
    /// A 64-bit payload length with its most significant bit set (§5.2).
    LengthTopBitSet,
    /// A continuation frame with no fragmented message open (§5.4).
    ContinuationWithoutStart,
    /// A new Text/Binary frame while a fragmented message is still open (§5.4).
    MessageAlreadyOpen,
    /// A close payload of exactly one byte: half a status code (§5.5.1).
    CloseLengthOne,
    /// A close status code that may not be sent on the wire (§7.4).
    InvalidCloseCode(u16),
    /// A text message or close reason that is not UTF-8 (§8.1).
    InvalidUtf8,
    /// A frame or message larger than our limit; `size` is what the peer announced or
    /// accumulated, `max` what we allow.
    TooBig { size: u64, max: u64 },
}

impl Error {
    /// The status code of the close frame we send for this error (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> u16 {
        let code = match self {
            Error::InvalidUtf8 => CloseCode::InvalidPayload,
            Error::TooBig { .. } => CloseCode::TooBig,
            Error::ReservedBits
            | Error::UnknownOpCode(_)
            | Error::UnmaskedFrame
            | Error::ControlFrameTooLong(_)
            | Error::FragmentedControlFrame
            | Error::LengthTopBitSet
            | Error::ContinuationWithoutStart
            | Error::MessageAlreadyOpen
            | Error::CloseLengthOne
            | Error::InvalidCloseCode(_) => CloseCode::Protocol,
        };
        code.as_u16()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ReservedBits => f.write_str("reserved bits set without an extension"),
            Error::UnknownOpCode(op) => write!(f, "unknown opcode {op:#x}"),
            Error::UnmaskedFrame => f.write_str("client frame is not masked"),
            Error::ControlFrameTooLong(len) => {
                write!(f, "control frame payload of {len} bytes (max 125)")
            }
            Error::FragmentedControlFrame => f.write_str("fragmented control frame"),
            Error::LengthTopBitSet => f.write_str("64-bit payload length has its top bit set"),
            Error::ContinuationWithoutStart => {
                f.write_str("continuation frame without a message to continue")
            }
            Error::MessageAlreadyOpen => {
                f.write_str("new data frame while a fragmented message is open")
            }
            Error::CloseLengthOne => f.write_str("close payload of 1 byte"),
            Error::InvalidCloseCode(code) => write!(f, "invalid close code {code}"),
            Error::InvalidUtf8 => f.write_str("text is not valid UTF-8"),
            Error::TooBig { size, max } => write!(f, "{size} bytes exceeds the limit of {max}"),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes() {
        let cases = [
            (Error::ReservedBits, 1002),
            (Error::UnknownOpCode(3), 1002),
            (Error::UnmaskedFrame, 1002),
            (Error::ControlFrameTooLong(126), 1002),
            (Error::FragmentedControlFrame, 1002),
            (Error::LengthTopBitSet, 1002),
            (Error::ContinuationWithoutStart, 1002),
            (Error::MessageAlreadyOpen, 1002),
            (Error::CloseLengthOne, 1002),
            (Error::InvalidCloseCode(1005), 1002),
            (Error::InvalidUtf8, 1007),
            (Error::TooBig { size: 2, max: 1 }, 1009),
        ];
        for (err, code) in cases {
            assert_eq!(err.close_code(), code, "{err:?}");
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn display_carries_data() {
        assert_eq!(
            Error::TooBig { size: 20, max: 10 }.to_string(),
            "20 bytes exceeds the limit of 10"
        );
        assert_eq!(Error::UnknownOpCode(0xb).to_string(), "unknown opcode 0xb");
    }
}
