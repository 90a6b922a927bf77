//! Pure WebSocket frame codec (RFC 6455 §5): opcodes, close codes, masking, and frames to and from
//! byte buffers. No I/O here, and no message-level rules (fragment order, UTF-8, close payloads):
//! those live in `message`. The decoder never consumes or allocates before a frame is complete
//! and within the caller's limit.

use super::error::Error;

/// FIN: this is the final fragment of a message (§5.2).
const FIN_BIT: u8 = 0x80;
/// RSV1, RSV2, RSV3: meaningful only with an extension, and we negotiate none.
const RSV_BITS: u8 = 0x70;
const OPCODE_BITS: u8 = 0x0F;
/// MASK: a masking key follows the length (§5.2).
const MASK_BIT: u8 = 0x80;
const LEN7_BITS: u8 = 0x7F;
/// 7-bit length values announcing a 16-bit or 64-bit extended length (§5.2).
const LEN7_EXT16: u8 = 126;
const LEN7_EXT64: u8 = 127;
/// §5.5: "All control frames MUST have a payload length of 125 bytes or less."
pub const MAX_CONTROL_PAYLOAD: u64 = 125;
/// 2 bytes of flags and 7-bit length, 8 of extended length, 4 of masking key.
pub const MAX_HEADER_LEN: usize = 14;

/// A frame opcode (RFC 6455 §5.2, §11.8). Reserved values have no variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    /// The opcode for a 4-bit value, or `None` for the reserved 0x3–0x7 and 0xB–0xF.
    pub fn from_u8(value: u8) -> Option<OpCode> {
        Some(match value {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Control frames (close, ping, pong) have the high bit of the opcode set (§5.5).
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

/// A decoded frame. `payload` is always unmasked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: OpCode,
    pub payload: Vec<u8>,
}

/// A frame header as it appeared on the wire; `payload_len` is what the peer announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    pub opcode: OpCode,
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
}

/// Parses a frame header from the start of `buf`. Returns the header and its length in bytes,
/// or `None` when more bytes are needed (nothing is consumed). Checks every rule that holds
/// whatever the direction: RSV bits, opcode, control-frame size and fragmentation, and the top
/// bit of a 64-bit length. Each check runs as soon as its byte has arrived.
pub fn decode_header(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, Error> {
    let Some(&b0) = buf.first() else {
        return Ok(None);
    };
    // §5.2: RSV1–3 "MUST be 0 unless an extension is negotiated that defines meanings for
    // non-zero values" — and we negotiate no extension.
    if b0 & RSV_BITS != 0 {
        return Err(Error::ReservedBits);
    }
    // §5.2: "If an unknown opcode is received, the receiving endpoint MUST _Fail the WebSocket
    // Connection_."
    let opcode = OpCode::from_u8(b0 & OPCODE_BITS).ok_or(Error::UnknownOpCode(b0 & OPCODE_BITS))?;
    let fin = b0 & FIN_BIT != 0;
    // §5.5: "Control frames themselves MUST NOT be fragmented."
    if opcode.is_control() && !fin {
        return Err(Error::FragmentedControlFrame);
    }

    let Some(&b1) = buf.get(1) else {
        return Ok(None);
    };
    let (payload_len, len_end) = match b1 & LEN7_BITS {
        LEN7_EXT16 => match buf.get(2..4) {
            Some(bytes) => (be_uint(bytes), 4),
            None => return Ok(None),
        },
        LEN7_EXT64 => match buf.get(2..10) {
            Some(bytes) => (be_uint(bytes), 10),
            None => return Ok(None),
        },
        short => (u64::from(short), 2),
    };
    // §5.2: for a 64-bit length, "the most significant bit MUST be 0".
    if payload_len >> 63 != 0 {
        return Err(Error::LengthTopBitSet);
    }
    if opcode.is_control() && payload_len > MAX_CONTROL_PAYLOAD {
        return Err(Error::ControlFrameTooLong(payload_len));
    }

    let (mask, header_len) = if b1 & MASK_BIT == 0 {
        (None, len_end)
    } else {
        match buf.get(len_end..len_end + 4) {
            Some(&[a, b, c, d]) => (Some([a, b, c, d]), len_end + 4),
            _ => return Ok(None),
        }
    };
    let header = FrameHeader {
        fin,
        opcode,
        mask,
        payload_len,
    };
    Ok(Some((header, header_len)))
}

/// Decodes one frame sent by a client from the start of `buf`. Returns the frame and the bytes
/// it used, or `None` when the frame is incomplete (nothing consumed). A payload longer than
/// `max_payload` is refused with [`Error::TooBig`] as soon as the header is complete, so the
/// caller never has to buffer it.
pub fn decode(buf: &[u8], max_payload: u64) -> Result<Option<(Frame, usize)>, Error> {
    let Some((header, header_len)) = decode_header(buf)? else {
        return Ok(None);
    };
    // §5.1: "The server MUST close the connection upon receiving a frame that is not masked."
    let mask = header.mask.ok_or(Error::UnmaskedFrame)?;
    let size = header.payload_len;
    if size > max_payload {
        return Err(Error::TooBig {
            size,
            max: max_payload,
        });
    }
    // Within the limit but not addressable (a 32-bit target with a huge limit): still too big.
    let Some(end) = usize::try_from(size)
        .ok()
        .and_then(|len| len.checked_add(header_len))
    else {
        return Err(Error::TooBig {
            size,
            max: usize::MAX as u64,
        });
    };
    let Some(masked) = buf.get(header_len..end) else {
        return Ok(None);
    };
    let mut payload = masked.to_vec();
    apply_mask(&mut payload, mask, 0);
    let frame = Frame {
        fin: header.fin,
        opcode: header.opcode,
        payload,
    };
    Ok(Some((frame, end)))
}

/// Appends a server frame to `out`: unmasked (§5.1: "A server MUST NOT mask any frames"), with the
/// shortest length encoding (§5.2: "the minimal number of bytes MUST be used").
pub fn encode(fin: bool, opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(MAX_HEADER_LEN.saturating_add(payload.len()));
    write_header(fin, opcode, payload.len(), None, out);
    out.extend_from_slice(payload);
}

/// Appends only the header of a server frame whose payload is `len` bytes, so a large payload
/// can be written from where it lies instead of being copied behind the header.
pub fn encode_header(fin: bool, opcode: OpCode, len: usize, out: &mut Vec<u8>) {
    write_header(fin, opcode, len, None, out);
}

/// Appends a masked frame to `out`, as a client sends it (tests, clients).
pub fn encode_masked(fin: bool, opcode: OpCode, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    out.reserve(MAX_HEADER_LEN.saturating_add(payload.len()));
    write_header(fin, opcode, payload.len(), Some(mask), out);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask, 0);
}

fn write_header(fin: bool, opcode: OpCode, len: usize, mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    debug_assert!(
        !opcode.is_control() || (fin && len as u64 <= MAX_CONTROL_PAYLOAD),
        "control frames must be final and at most 125 bytes (§5.5)"
    );
    out.push(if fin { FIN_BIT } else { 0 } | opcode.as_u8());
    let mask_bit = if mask.is_some() { MASK_BIT } else { 0 };
    if len < usize::from(LEN7_EXT16) {
        out.push(mask_bit | len as u8);
    } else if let Ok(len16) = u16::try_from(len) {
        out.push(mask_bit | LEN7_EXT16);
        out.extend_from_slice(&len16.to_be_bytes());
    } else {
        out.push(mask_bit | LEN7_EXT64);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
}

/// A big-endian unsigned integer of at most 8 bytes.
fn be_uint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |acc, &b| acc << 8 | u64::from(b))
}

/// XORs `buf` with `mask` (§5.3), where `buf[0]` is byte `offset` of the payload, so a payload
/// can be unmasked in pieces. Works 8 bytes at a time: this is on the echo path of every message.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    // Rotate so that `key[0]` applies to `buf[0]`; an 8-byte word then holds the key twice.
    let mut key = mask;
    key.rotate_left(offset % 4);
    let [a, b, c, d] = key;
    let word = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let bytes: [u8; 8] = (&*chunk)
            .try_into()
            .expect("chunks_exact_mut(8) yields 8 bytes");
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    // Every chunk was a multiple of 4 long, so the tail starts in phase with `key`.
    for (byte, k) in chunks.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

/// Close status codes we send (RFC 6455 §7.4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseCode {
    Normal,
    GoingAway,
    Protocol,
    Unsupported,
    InvalidPayload,
    Policy,
    TooBig,
    InternalError,
}

impl CloseCode {
    pub fn as_u16(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::Protocol => 1002,
            CloseCode::Unsupported => 1003,
            CloseCode::InvalidPayload => 1007,
            CloseCode::Policy => 1008,
            CloseCode::TooBig => 1009,
            CloseCode::InternalError => 1011,
        }
    }
}

/// Whether a peer may put `code` in a close frame (RFC 6455 §7.4). Allowed: the defined codes
/// 1000–1003 and 1007–1011, the IANA-registered 1012–1014 (restart, try again later, bad
/// gateway), and 3000–4999 (libraries and applications). Refused: below 1000; 1004 (reserved);
/// 1005, 1006 and 1015, which §7.4.1 says "MUST NOT be set as a status code in a Close control
/// frame"; the unassigned rest of 1000–2999; and 5000 and above. This matches the Autobahn
/// suite (cases 7.7.x valid, 7.9.x invalid), which does not test 1012–1014.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Appends a close frame carrying `code` and `reason` to `out`. The reason is cut at a character
/// boundary so the payload stays within the 125 bytes a control frame may carry (§5.5) and
/// stays UTF-8 (§5.5.1).
pub fn encode_close(code: u16, reason: &str, out: &mut Vec<u8>) {
    const MAX_REASON: usize = MAX_CONTROL_PAYLOAD as usize - 2;
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD as usize];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    encode(true, OpCode::Close, &payload[..2 + end], out);
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn masked(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_masked(fin, opcode, payload, RFC_MASK, &mut out);
        out
    }

    fn unmasked(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(fin, opcode, payload, &mut out);
        out
    }

    fn frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Frame {
        Frame {
            fin,
            opcode,
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn opcodes_round_trip() {
        for v in 0..=255u8 {
            match OpCode::from_u8(v) {
                Some(op) => assert_eq!(op.as_u8(), v),
                None => assert!(!matches!(v, 0..=2 | 8..=10)),
            }
        }
        assert!(OpCode::Close.is_control() && OpCode::Ping.is_control());
        assert!(OpCode::Pong.is_control() && !OpCode::Continuation.is_control());
        assert!(!OpCode::Text.is_control() && !OpCode::Binary.is_control());
    }

    // RFC 6455 §5.7 examples.

    #[test]
    fn rfc_unmasked_hello() {
        let wire = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(unmasked(true, OpCode::Text, b"Hello"), wire);
        let (header, len) = decode_header(&wire).unwrap().unwrap();
        let expected = FrameHeader {
            fin: true,
            opcode: OpCode::Text,
            mask: None,
            payload_len: 5,
        };
        assert_eq!((header, len), (expected, 2));
        // The same frame from a client is a protocol error (§5.1).
        assert_eq!(decode(&wire, 1000), Err(Error::UnmaskedFrame));
    }

    #[test]
    fn rfc_masked_hello() {
        let wire = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(masked(true, OpCode::Text, b"Hello"), wire);
        let expected = frame(true, OpCode::Text, b"Hello");
        assert_eq!(decode(&wire, 1000), Ok(Some((expected, 11))));
    }

    #[test]
    fn rfc_fragmented_hello() {
        let first = [0x01, 0x03, 0x48, 0x65, 0x6c];
        let last = [0x80, 0x02, 0x6c, 0x6f];
        assert_eq!(unmasked(false, OpCode::Text, b"Hel"), first);
        assert_eq!(unmasked(true, OpCode::Continuation, b"lo"), last);

        let mut wire = masked(false, OpCode::Text, b"Hel");
        let split = wire.len();
        wire.extend(masked(true, OpCode::Continuation, b"lo"));
        let (f1, n1) = decode(&wire, 100).unwrap().unwrap();
        assert_eq!((f1, n1), (frame(false, OpCode::Text, b"Hel"), split));
        let (f2, n2) = decode(&wire[n1..], 100).unwrap().unwrap();
        assert_eq!(f2, frame(true, OpCode::Continuation, b"lo"));
        assert_eq!(n1 + n2, wire.len());
    }

    #[test]
    fn rfc_ping_and_pong() {
        let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(unmasked(true, OpCode::Ping, b"Hello"), ping);
        let pong = [
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(masked(true, OpCode::Pong, b"Hello"), pong);
        let expected = frame(true, OpCode::Pong, b"Hello");
        assert_eq!(decode(&pong, 125), Ok(Some((expected, 11))));
    }

    #[test]
    fn rfc_extended_lengths() {
        let wire = unmasked(true, OpCode::Binary, &[0xAB; 256]);
        assert_eq!(wire[..4], [0x82, 0x7E, 0x01, 0x00]);
        assert_eq!(wire.len(), 4 + 256);

        let wire = unmasked(true, OpCode::Binary, &[0xAB; 65536]);
        assert_eq!(
            wire[..10],
            [0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00]
        );
        assert_eq!(wire.len(), 10 + 65536);
    }

    #[test]
    fn lengths_round_trip_with_shortest_encoding() {
        for (len, header_len) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            assert_eq!(
                unmasked(true, OpCode::Binary, &payload).len(),
                header_len + len
            );
            let wire = masked(true, OpCode::Binary, &payload);
            assert_eq!(wire.len(), header_len + 4 + len);
            let (header, n) = decode_header(&wire).unwrap().unwrap();
            assert_eq!((header.payload_len, n), (len as u64, header_len + 4));
            let decoded = decode(&wire, len as u64).unwrap().unwrap();
            assert_eq!(decoded, (frame(true, OpCode::Binary, &payload), wire.len()));
        }
    }

    #[test]
    fn every_proper_prefix_is_incomplete() {
        let frames = [
            masked(true, OpCode::Text, b"Hello"),
            masked(true, OpCode::Ping, b""),
            masked(false, OpCode::Binary, &[1; 200]),
            masked(true, OpCode::Continuation, &[2; 70000]),
            masked(true, OpCode::Close, &[0x03, 0xe8, b'b', b'y', b'e']),
        ];
        for wire in &frames {
            for cut in 0..wire.len() {
                assert_eq!(decode(&wire[..cut], u64::MAX >> 1), Ok(None), "cut {cut}");
            }
            // Trailing bytes belong to the next frame and are not consumed.
            let mut longer = wire.clone();
            longer.extend_from_slice(&[0x81, 0x80]);
            let (_, n) = decode(&longer, u64::MAX >> 1).unwrap().unwrap();
            assert_eq!(n, wire.len());
        }
    }

    #[test]
    fn invalid_frames() {
        let mask = [0, 0, 0, 0];
        let cases: Vec<(Vec<u8>, Error)> = vec![
            (vec![0xC1], Error::ReservedBits),
            (vec![0xA1], Error::ReservedBits),
            (vec![0x91], Error::ReservedBits),
            (vec![0x83], Error::UnknownOpCode(3)),
            (vec![0x87], Error::UnknownOpCode(7)),
            (vec![0x8B], Error::UnknownOpCode(0xB)),
            (vec![0x8F], Error::UnknownOpCode(0xF)),
            (vec![0x09], Error::FragmentedControlFrame),
            (vec![0x08, 0x80], Error::FragmentedControlFrame),
            (
                vec![0x89, 0xFE, 0x00, 0x7E],
                Error::ControlFrameTooLong(126),
            ),
            (
                vec![0x88, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0x7E],
                Error::ControlFrameTooLong(126),
            ),
            (vec![0x81, 0x00], Error::UnmaskedFrame),
            (
                vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0],
                Error::LengthTopBitSet,
            ),
            (
                vec![0x82, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
                Error::LengthTopBitSet,
            ),
        ];
        for (wire, err) in cases {
            assert_eq!(decode(&wire, 1 << 20), Err(err.clone()), "{wire:x?}");
            assert_eq!(err.close_code(), 1002);
        }
        // An unmasked frame still has a well-formed header.
        let mut wire = vec![0x82, 0x7E, 0x01, 0x00];
        assert!(decode_header(&wire).unwrap().is_some());
        wire.extend_from_slice(&mask);
        assert_eq!(decode(&wire, 0), Err(Error::UnmaskedFrame));
    }

    #[test]
    fn too_big_from_the_header_alone() {
        // 1 MiB announced with a 64-bit length, masked, and no payload byte yet.
        let mut wire = vec![0x82, 0xFF, 0, 0, 0, 0, 0, 0x10, 0, 0];
        wire.extend_from_slice(&RFC_MASK);
        let err = decode(&wire, 1000).unwrap_err();
        assert_eq!(
            err,
            Error::TooBig {
                size: 1 << 20,
                max: 1000
            }
        );
        assert_eq!(err.close_code(), 1009);
        // The largest legal length is refused the same way, without overflow.
        let mut wire = vec![0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        wire.extend_from_slice(&RFC_MASK);
        assert!(matches!(
            decode(&wire, u64::MAX),
            Err(Error::TooBig { .. }) | Ok(None)
        ));
        // Exactly at the limit is fine.
        let wire = masked(true, OpCode::Text, b"12345");
        assert!(decode(&wire, 5).unwrap().is_some());
        assert_eq!(decode(&wire, 4), Err(Error::TooBig { size: 5, max: 4 }));
    }

    #[test]
    fn masking_matches_bytewise_at_any_offset_and_length() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| i as u8 ^ 0xA5).collect();
            for offset in 0..9 {
                let mut fast = data.clone();
                apply_mask(&mut fast, mask, offset);
                let slow: Vec<u8> = (0..len).map(|i| data[i] ^ mask[(offset + i) % 4]).collect();
                assert_eq!(fast, slow, "len {len} offset {offset}");
                apply_mask(&mut fast, mask, offset);
                assert_eq!(fast, data, "masking twice is the identity");
            }
            // Unmasking in two pieces at any split equals unmasking at once.
            let mut whole = data.clone();
            apply_mask(&mut whole, mask, 0);
            for split in 0..=len {
                let mut pieces = data.clone();
                let (head, tail) = pieces.split_at_mut(split);
                apply_mask(head, mask, 0);
                apply_mask(tail, mask, split);
                assert_eq!(pieces, whole, "len {len} split {split}");
            }
        }
    }

    #[test]
    fn close_code_validity() {
        let valid = [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
            4000, 4999,
        ];
        let invalid = [
            0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ];
        for code in valid {
            assert!(is_valid_close_code(code), "{code}");
        }
        for code in invalid {
            assert!(!is_valid_close_code(code), "{code}");
        }
        let named = [
            (CloseCode::Normal, 1000),
            (CloseCode::GoingAway, 1001),
            (CloseCode::Protocol, 1002),
            (CloseCode::Unsupported, 1003),
            (CloseCode::InvalidPayload, 1007),
            (CloseCode::Policy, 1008),
            (CloseCode::TooBig, 1009),
            (CloseCode::InternalError, 1011),
        ];
        for (code, value) in named {
            assert_eq!(code.as_u16(), value);
            assert!(is_valid_close_code(value));
        }
    }

    #[test]
    fn close_frames() {
        let mut out = Vec::new();
        encode_close(1000, "bye", &mut out);
        assert_eq!(out, [0x88, 0x05, 0x03, 0xe8, b'b', b'y', b'e']);

        // A long reason is cut to 123 bytes, on a character boundary: "é" is 2 bytes, so 61 of
        // them (122 bytes) fit and the 62nd would straddle the limit.
        let mut out = Vec::new();
        encode_close(1001, &"é".repeat(100), &mut out);
        assert_eq!(out[1] as usize, 2 + 122);
        assert!(std::str::from_utf8(&out[4..]).is_ok());

        let mut out = Vec::new();
        encode_close(1001, &"x".repeat(200), &mut out);
        assert_eq!(out.len(), 2 + 125);
    }
}
