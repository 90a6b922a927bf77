//! The WebSocket frame codec (`ws::frame`). Input: a knob byte, then bytes as a client sends
//! them. The knob picks the payload limit (bits 0–2) and a masking offset (bits 3–7).
//!
//! Invariants beyond "never panics":
//! - `decode_header` and `decode` agree, and `decode` matches what the header announces: an
//!   unmasked frame is refused, a payload over the limit is refused, a short buffer is
//!   `None`, and a whole frame is the payload unmasked byte by byte (RFC 6455 §5.3).
//! - Every proper prefix of a decoded frame is incomplete (`Ok(None)`), never an error.
//! - A decoded frame encoded again (masked, with the same key) decodes to itself, and gives
//!   back exactly the input bytes when the input used the minimal length encoding; encoded
//!   as a server frame it is unmasked, and `encode_header` + payload is the same bytes.
//! - Any payload, encoded masked, decodes to itself (all three length encodings).
//! - `apply_mask` equals the obvious loop, in one piece or two, and undoes itself.
//! - `encode_close` writes a final close frame of at most 125 bytes whose reason is the
//!   longest prefix of ours that fits on a character boundary.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livevote::ws::frame::{
    apply_mask, decode, decode_header, encode, encode_close, encode_header, encode_masked,
    is_valid_close_code, Frame, OpCode, MAX_CONTROL_PAYLOAD,
};
use livevote::ws::message::{Assembler, Event};
use livevote::ws::Error;
use livevote_fuzz::{knob, mask_naive};

const LIMITS: [u64; 8] = [125, 0, 1, 126, 65_535, 65_536, 16 << 20, u64::MAX];
const OPCODES: [OpCode; 6] = [
    OpCode::Continuation,
    OpCode::Text,
    OpCode::Binary,
    OpCode::Close,
    OpCode::Ping,
    OpCode::Pong,
];

fuzz_target!(|data: &[u8]| {
    let (k, wire) = knob(data);
    let max = LIMITS[usize::from(k & 7)];
    let offset = usize::from(k >> 3);
    let mask = {
        let mut m = [0u8; 4];
        for (d, s) in m.iter_mut().zip(wire) {
            *d = *s;
        }
        m
    };

    check_decode(wire, max);
    check_encode_any(k, wire, mask);
    check_apply_mask(wire, mask, offset);
    check_encode_close(wire);
});

/// The header's length in bytes for a given 7-bit length field and mask bit.
fn header_len(len7: u8, masked: bool) -> usize {
    let ext = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + if masked { 4 } else { 0 }
}

fn check_decode(wire: &[u8], max: u64) {
    let frame = decode(wire, max);
    let header = match decode_header(wire) {
        Err(e) => return assert_eq!(frame, Err(e)),
        Ok(None) => return assert_eq!(frame, Ok(None)),
        Ok(Some(h)) => h,
    };
    let (h, hl) = header;
    assert_eq!(hl, header_len(wire[1] & 0x7f, h.mask.is_some()));
    assert!(hl <= wire.len());
    assert_eq!(h.payload_len >> 63, 0, "a length with the top bit set");
    if h.opcode.is_control() {
        assert!(h.fin && h.payload_len <= MAX_CONTROL_PAYLOAD, "{h:?}");
    }
    let expected = match h.mask {
        None => Err(Error::UnmaskedFrame),
        Some(_) if h.payload_len > max => Err(Error::TooBig {
            size: h.payload_len,
            max,
        }),
        Some(m) => match usize::try_from(h.payload_len)
            .ok()
            .and_then(|len| wire.get(hl..hl + len))
        {
            None => Ok(None),
            Some(masked) => Ok(Some((
                Frame {
                    fin: h.fin,
                    opcode: h.opcode,
                    payload: mask_naive(masked, m, 0),
                },
                hl + masked.len(),
            ))),
        },
    };
    assert_eq!(frame, expected);

    let Ok(Some((f, n))) = frame else {
        return;
    };
    for i in 0..n {
        assert_eq!(decode(&wire[..i], max), Ok(None), "prefix of {i} bytes");
    }

    let key = h.mask.expect("decoded frames are masked");
    let mut again = Vec::new();
    encode_masked(f.fin, f.opcode, &f.payload, key, &mut again);
    assert_eq!(decode(&again, max), Ok(Some((f.clone(), again.len()))));
    let minimal = match wire[1] & 0x7f {
        126 => f.payload.len() >= 126 && f.payload.len() <= 0xffff,
        127 => f.payload.len() > 0xffff,
        _ => true,
    };
    if minimal {
        assert_eq!(again, &wire[..n], "re-encoding changed the bytes");
    }

    let mut server = Vec::new();
    encode(f.fin, f.opcode, &f.payload, &mut server);
    let (sh, shl) = decode_header(&server)
        .expect("our frame has a valid header")
        .expect("our frame is complete");
    assert_eq!(sh.mask, None, "a server frame is never masked (§5.1)");
    assert_eq!((sh.fin, sh.opcode), (f.fin, f.opcode));
    assert_eq!(sh.payload_len, f.payload.len() as u64);
    assert_eq!(&server[shl..], &f.payload[..]);
    assert_eq!(decode(&server, max), Err(Error::UnmaskedFrame));
    let mut split = Vec::new();
    encode_header(f.fin, f.opcode, f.payload.len(), &mut split);
    split.extend_from_slice(&f.payload);
    assert_eq!(split, server);
}

/// Any payload the knob's opcode may carry, encoded masked, decodes to itself.
fn check_encode_any(k: u8, wire: &[u8], key: [u8; 4]) {
    let opcode = OPCODES[usize::from(k) % OPCODES.len()];
    let mut fin = k & 0x80 != 0;
    let mut payload = wire.to_vec();
    if opcode.is_control() {
        fin = true;
        payload.truncate(MAX_CONTROL_PAYLOAD as usize);
    } else if k & 0x70 == 0x70 && !wire.is_empty() {
        // Long enough for the 64-bit length encoding.
        payload = wire
            .iter()
            .copied()
            .cycle()
            .take(65_536 + wire.len())
            .collect();
    }
    let mut out = Vec::new();
    encode_masked(fin, opcode, &payload, key, &mut out);
    let len = payload.len();
    let expected_header = header_len(
        match len {
            0..=125 => len as u8,
            126..=0xffff => 126,
            _ => 127,
        },
        true,
    );
    assert_eq!(out.len(), expected_header + len);
    let frame = Frame {
        fin,
        opcode,
        payload,
    };
    assert_eq!(decode(&out, u64::MAX), Ok(Some((frame, out.len()))));
}

fn check_apply_mask(wire: &[u8], key: [u8; 4], offset: usize) {
    let expected = mask_naive(wire, key, offset);
    let mut whole = wire.to_vec();
    apply_mask(&mut whole, key, offset);
    assert_eq!(whole, expected);

    let cut = offset.min(wire.len());
    let mut halves = wire.to_vec();
    let (a, b) = halves.split_at_mut(cut);
    apply_mask(a, key, offset);
    apply_mask(b, key, offset + cut);
    assert_eq!(halves, expected);

    apply_mask(&mut whole, key, offset);
    assert_eq!(whole, wire, "masking twice is not the identity");
}

fn check_encode_close(wire: &[u8]) {
    let code = match wire {
        [hi, lo, ..] => u16::from_be_bytes([*hi, *lo]),
        _ => 1000,
    };
    let reason = String::from_utf8_lossy(wire.get(2..).unwrap_or_default());
    let mut out = Vec::new();
    encode_close(code, &reason, &mut out);
    let (h, hl) = decode_header(&out).expect("valid").expect("complete");
    assert!(h.fin && h.opcode == OpCode::Close && h.mask.is_none());
    assert!(h.payload_len <= MAX_CONTROL_PAYLOAD);
    let payload = &out[hl..];
    assert_eq!(payload.len() as u64, h.payload_len);
    assert_eq!(payload[..2], code.to_be_bytes());
    let sent = std::str::from_utf8(&payload[2..]).expect("the reason stays UTF-8");
    assert!(reason.starts_with(sent));
    if sent.len() < reason.len() {
        // Cut only as far as a character boundary needs: at most 3 bytes short of the room.
        assert!(
            sent.len() + 3 >= MAX_CONTROL_PAYLOAD as usize - 2,
            "cut too short"
        );
    }

    let event = Assembler::new(0).push(Frame {
        fin: true,
        opcode: OpCode::Close,
        payload: payload.to_vec(),
    });
    if is_valid_close_code(code) {
        assert_eq!(event, Ok(Some(Event::Close(Some((code, sent.to_owned()))))));
    } else {
        assert_eq!(event, Err(Error::InvalidCloseCode(code)));
    }
}
