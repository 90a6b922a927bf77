//! Message assembly (RFC 6455 §5.4–§5.6): decoded client frames in, events out. Enforces the
//! fragmentation rules, the per-message size limit, UTF-8 of text (fragment by fragment), and the
//! close payload format. Pure: no I/O, and no replies — answering pings and closes is the
//! connection's job.

use super::error::Error;
use super::frame::{apply_mask, is_valid_close_code, Frame, FrameHeader, OpCode};
use super::utf8::Utf8Validator;

/// Bytes unmasked at a time when looking into a text frame still arriving.
const PEEK_CHUNK: usize = 4096;

/// A complete data message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Vec<u8>),
}

/// What one frame from the client amounts to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Message(Message),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// The peer's close: its status code and reason, or `None` for an empty close payload.
    Close(Option<(u16, String)>),
}

/// A fragmented message whose final frame has not arrived yet.
#[derive(Debug)]
struct Partial {
    /// `Some` for text, holding the validation state across fragments.
    utf8: Option<Utf8Validator>,
    data: Vec<u8>,
}

/// How far the text frame still arriving has been validated (see [`Assembler::check_arriving`]).
#[derive(Debug)]
struct Arriving {
    utf8: Utf8Validator,
    /// Payload bytes of the frame validated so far.
    checked: usize,
}

/// Turns a connection's frames, in order, into events.
#[derive(Debug)]
pub struct Assembler {
    max_message: usize,
    open: Option<Partial>,
    /// Look-ahead state for the incomplete frame at the front of the caller's buffer; reset by
    /// `push`, which is how that frame leaves the buffer.
    arriving: Option<Arriving>,
}

impl Assembler {
    /// An assembler refusing messages longer than `max_message` bytes, however fragmented.
    pub fn new(max_message: usize) -> Self {
        Assembler {
            max_message,
            open: None,
            arriving: None,
        }
    }

    /// Validates the part of a text frame that has arrived, so that invalid UTF-8 fails the
    /// connection at the chunk that carries it rather than when the frame is complete (§8.1:
    /// "MUST _Fail the WebSocket Connection_" on invalid UTF-8; Autobahn 6.4.3–6.4.4 expect it
    /// to fail fast). `header` is the incomplete frame at the front of the caller's buffer and
    /// `payload` its (masked) payload bytes so far. Call it again as more arrive: only the new
    /// bytes are checked. Frames that are not text, and anything `push` will refuse anyway, are
    /// left to `push`.
    pub fn check_arriving(&mut self, header: &FrameHeader, payload: &[u8]) -> Result<(), Error> {
        let Some(mask) = header.mask else {
            return Ok(()); // `frame::decode` refuses it.
        };
        if header.payload_len > self.max_next_payload() {
            // `push` refuses it as too big (1009), however its bytes arrive.
            return Ok(());
        }
        if self.arriving.is_none() {
            let utf8 = match (header.opcode, &self.open) {
                (OpCode::Text, None) => Utf8Validator::new(),
                (OpCode::Continuation, Some(Partial { utf8: Some(v), .. })) => v.clone(),
                _ => return Ok(()),
            };
            self.arriving = Some(Arriving { utf8, checked: 0 });
        }
        let Some(arriving) = &mut self.arriving else {
            return Ok(());
        };
        let end =
            usize::try_from(header.payload_len).map_or(payload.len(), |n| n.min(payload.len()));
        let Some(new) = payload.get(arriving.checked..end) else {
            return Ok(());
        };
        let mut scratch = [0u8; PEEK_CHUNK];
        for piece in new.chunks(PEEK_CHUNK) {
            let unmasked = &mut scratch[..piece.len()];
            unmasked.copy_from_slice(piece);
            apply_mask(unmasked, mask, arriving.checked);
            arriving.utf8.feed(unmasked)?;
            arriving.checked += piece.len();
        }
        Ok(())
    }

    /// Bytes held for the open fragmented message (0 when none is open).
    pub fn buffered(&self) -> usize {
        self.open.as_ref().map_or(0, |p| p.data.len())
    }

    /// Memory held for the open fragmented message: its buffer's capacity.
    pub fn held(&self) -> usize {
        self.open.as_ref().map_or(0, |p| p.data.capacity())
    }

    /// What [`held`](Assembler::held) becomes when `push` takes a data frame with this header
    /// (it grows only for a continuation; the first fragment's payload becomes the buffer). A
    /// caller charges this, plus the decoded payload, before decoding the frame.
    pub fn held_after(&self, header: &FrameHeader) -> usize {
        match (&self.open, header.opcode) {
            (Some(p), OpCode::Continuation) => {
                let add = usize::try_from(header.payload_len).unwrap_or(usize::MAX);
                grown_capacity(p.data.len(), p.data.capacity(), add, self.max_message)
            }
            _ => self.held(),
        }
    }

    /// The most a data frame may carry now without the message exceeding the limit. Pass
    /// `max(max_next_payload(), 125)` to `frame::decode` so control frames always fit; a data
    /// frame that then exceeds this budget is still refused by `push` with `TooBig`.
    pub fn max_next_payload(&self) -> u64 {
        // `buffered() <= max_message` always holds: `push` refuses anything that would break it.
        self.max_message.saturating_sub(self.buffered()) as u64
    }

    /// Takes the next frame from the client. Returns the event it completes, `None` for a
    /// non-final fragment, or the error to fail the connection with (after which the assembler
    /// is not to be fed again).
    pub fn push(&mut self, frame: Frame) -> Result<Option<Event>, Error> {
        // The frame that `check_arriving` looked into, if any, is this one: it is complete now.
        self.arriving = None;
        let Frame {
            fin,
            opcode,
            payload,
        } = frame;
        match opcode {
            // §5.4: "Control frames MAY be injected in the middle of a fragmented message."
            OpCode::Ping => Ok(Some(Event::Ping(payload))),
            OpCode::Pong => Ok(Some(Event::Pong(payload))),
            OpCode::Close => parse_close(payload).map(|close| Some(Event::Close(close))),
            OpCode::Text | OpCode::Binary => {
                // §5.4: the fragments of one message are not interleaved with those of another.
                if self.open.is_some() {
                    return Err(Error::MessageAlreadyOpen);
                }
                check_size(0, payload.len(), self.max_message)?;
                let text = opcode == OpCode::Text;
                if fin {
                    // Unfragmented: the payload becomes the message without a copy.
                    return if text {
                        let text = String::from_utf8(payload).map_err(|_| Error::InvalidUtf8)?;
                        Ok(Some(Event::Message(Message::Text(text))))
                    } else {
                        Ok(Some(Event::Message(Message::Binary(payload))))
                    };
                }
                let utf8 = if text {
                    let mut v = Utf8Validator::new();
                    v.feed(&payload)?;
                    Some(v)
                } else {
                    None
                };
                // The first fragment's buffer becomes the message buffer.
                self.open = Some(Partial {
                    utf8,
                    data: payload,
                });
                Ok(None)
            }
            OpCode::Continuation => {
                // §5.4: a continuation frame only continues a message that was started.
                let mut partial = self.open.take().ok_or(Error::ContinuationWithoutStart)?;
                check_size(partial.data.len(), payload.len(), self.max_message)?;
                if let Some(utf8) = &mut partial.utf8 {
                    utf8.feed(&payload)?;
                }
                // Grow by the rule `held_after` announced, never by `Vec`'s own.
                let data = &partial.data;
                let cap =
                    grown_capacity(data.len(), data.capacity(), payload.len(), self.max_message);
                partial
                    .data
                    .reserve_exact(cap.saturating_sub(partial.data.len()));
                partial.data.extend_from_slice(&payload);
                if !fin {
                    self.open = Some(partial);
                    return Ok(None);
                }
                let message = match partial.utf8 {
                    Some(utf8) => {
                        utf8.finish()?;
                        // Validated piecewise already; without `unsafe` the conversion checks
                        // once more, which is cheap next to the I/O.
                        let text =
                            String::from_utf8(partial.data).map_err(|_| Error::InvalidUtf8)?;
                        Message::Text(text)
                    }
                    None => Message::Binary(partial.data),
                };
                Ok(Some(Event::Message(message)))
            }
        }
    }
}

/// The capacity a message buffer gets to take `add` more bytes: unchanged if they fit, else
/// doubled (so many small fragments cost linear copying) but never past the larger of what
/// is needed and `max`.
fn grown_capacity(len: usize, cap: usize, add: usize, max: usize) -> usize {
    let need = len.saturating_add(add);
    if need <= cap {
        return cap;
    }
    need.max(cap.saturating_mul(2).min(max))
}

/// Refuses a data payload of `len` bytes that would take a message holding `buffered` bytes past
/// `max`. Written as a subtraction so it cannot overflow; `buffered <= max` always holds.
fn check_size(buffered: usize, len: usize, max: usize) -> Result<(), Error> {
    if len > max.saturating_sub(buffered) {
        return Err(Error::TooBig {
            size: (buffered as u64).saturating_add(len as u64),
            max: max as u64,
        });
    }
    Ok(())
}

/// Reads a close payload (§5.5.1): empty, or a 2-byte status code and a UTF-8 reason.
fn parse_close(mut payload: Vec<u8>) -> Result<Option<(u16, String)>, Error> {
    let code = match payload[..] {
        [] => return Ok(None),
        [_] => return Err(Error::CloseLengthOne),
        [hi, lo, ..] => u16::from_be_bytes([hi, lo]),
    };
    if !is_valid_close_code(code) {
        return Err(Error::InvalidCloseCode(code));
    }
    payload.drain(..2);
    let reason = String::from_utf8(payload).map_err(|_| Error::InvalidUtf8)?;
    Ok(Some((code, reason)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::frame::{decode, encode_masked};

    fn frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Frame {
        Frame {
            fin,
            opcode,
            payload: payload.to_vec(),
        }
    }

    fn text(s: &str) -> Option<Event> {
        Some(Event::Message(Message::Text(s.to_string())))
    }

    #[test]
    fn unfragmented_messages() {
        let mut a = Assembler::new(100);
        assert_eq!(
            a.push(frame(true, OpCode::Text, b"Hello")),
            Ok(text("Hello"))
        );
        let binary = a.push(frame(true, OpCode::Binary, &[0, 255]));
        assert_eq!(
            binary,
            Ok(Some(Event::Message(Message::Binary(vec![0, 255]))))
        );
        assert_eq!(a.push(frame(true, OpCode::Text, b"")), Ok(text("")));
        assert_eq!(a.buffered(), 0);
    }

    #[test]
    fn rfc_fragmented_hello_from_the_wire() {
        let mut wire = Vec::new();
        encode_masked(false, OpCode::Text, b"Hel", [1, 2, 3, 4], &mut wire);
        encode_masked(true, OpCode::Continuation, b"lo", [5, 6, 7, 8], &mut wire);
        let mut a = Assembler::new(100);
        let mut events = Vec::new();
        let mut rest = &wire[..];
        while let Some((f, n)) = decode(rest, a.max_next_payload().max(125)).unwrap() {
            events.push(a.push(f).unwrap());
            rest = &rest[n..];
        }
        assert_eq!(events, [None, text("Hello")]);
    }

    #[test]
    fn control_frames_interleave_with_fragments() {
        let mut a = Assembler::new(100);
        assert_eq!(a.push(frame(false, OpCode::Binary, b"ab")), Ok(None));
        assert_eq!(
            a.push(frame(true, OpCode::Ping, b"p")),
            Ok(Some(Event::Ping(b"p".to_vec())))
        );
        assert_eq!(a.push(frame(false, OpCode::Continuation, b"cd")), Ok(None));
        assert_eq!(
            a.push(frame(true, OpCode::Pong, b"")),
            Ok(Some(Event::Pong(vec![])))
        );
        assert_eq!(a.buffered(), 4);
        assert_eq!(
            a.push(frame(true, OpCode::Continuation, b"e")),
            Ok(Some(Event::Message(Message::Binary(b"abcde".to_vec()))))
        );
        assert_eq!(a.buffered(), 0);
        // A close in the middle of a message is an event too.
        assert_eq!(a.push(frame(false, OpCode::Text, b"x")), Ok(None));
        assert_eq!(
            a.push(frame(true, OpCode::Close, &[0x03, 0xe8])),
            Ok(Some(Event::Close(Some((1000, String::new())))))
        );
    }

    #[test]
    fn fragmentation_errors() {
        let mut a = Assembler::new(100);
        let err = a.push(frame(true, OpCode::Continuation, b"x")).unwrap_err();
        assert_eq!(
            (err.clone(), err.close_code()),
            (Error::ContinuationWithoutStart, 1002)
        );
        let err = a.push(frame(false, OpCode::Continuation, b"")).unwrap_err();
        assert_eq!(err, Error::ContinuationWithoutStart);

        for second in [OpCode::Text, OpCode::Binary] {
            let mut a = Assembler::new(100);
            assert_eq!(a.push(frame(false, OpCode::Text, b"a")), Ok(None));
            let err = a.push(frame(true, second, b"b")).unwrap_err();
            assert_eq!(
                (err.clone(), err.close_code()),
                (Error::MessageAlreadyOpen, 1002)
            );
        }
    }

    #[test]
    fn size_limit_across_fragments() {
        let mut a = Assembler::new(10);
        assert_eq!(a.max_next_payload(), 10);
        assert_eq!(a.push(frame(false, OpCode::Binary, &[0; 6])), Ok(None));
        assert_eq!(a.max_next_payload(), 4);
        assert_eq!(
            a.push(frame(false, OpCode::Continuation, &[0; 4])),
            Ok(None)
        );
        assert_eq!(a.max_next_payload(), 0);
        // Empty continuations are still allowed at the limit.
        assert!(a
            .push(frame(true, OpCode::Continuation, &[]))
            .unwrap()
            .is_some());

        let mut a = Assembler::new(10);
        a.push(frame(false, OpCode::Text, b"123456")).unwrap();
        let err = a
            .push(frame(true, OpCode::Continuation, b"12345"))
            .unwrap_err();
        assert_eq!(err, Error::TooBig { size: 11, max: 10 });
        assert_eq!(err.close_code(), 1009);

        let err = Assembler::new(10)
            .push(frame(true, OpCode::Binary, &[0; 11]))
            .unwrap_err();
        assert_eq!(err, Error::TooBig { size: 11, max: 10 });
    }

    #[test]
    fn continuation_over_budget_from_the_wire() {
        // The caller lets 125 bytes through for control frames; a data frame within 125 but
        // over the remaining budget must still be refused with 1009.
        let mut a = Assembler::new(200);
        let mut wire = Vec::new();
        encode_masked(false, OpCode::Binary, &[7; 150], [9; 4], &mut wire);
        let (f, n) = decode(&wire, a.max_next_payload().max(125))
            .unwrap()
            .unwrap();
        assert_eq!((a.push(f), n), (Ok(None), wire.len()));

        let mut wire = Vec::new();
        encode_masked(true, OpCode::Continuation, &[7; 100], [9; 4], &mut wire);
        let (f, _) = decode(&wire, a.max_next_payload().max(125))
            .unwrap()
            .unwrap();
        let err = a.push(f).unwrap_err();
        assert_eq!(
            err,
            Error::TooBig {
                size: 250,
                max: 200
            }
        );
        assert_eq!(err.close_code(), 1009);

        // Far over budget, `decode` refuses it from the header.
        let mut wire = Vec::new();
        encode_masked(true, OpCode::Continuation, &[7; 1000], [9; 4], &mut wire);
        let err = decode(&wire[..14], 125).unwrap_err();
        assert_eq!(err.close_code(), 1009);
    }

    #[test]
    fn utf8_fails_at_the_bad_fragment() {
        let mut a = Assembler::new(100);
        // "κόσμε" split inside a character, then a surrogate in the next fragment.
        assert_eq!(
            a.push(frame(false, OpCode::Text, b"\xce\xba\xe1\xbd")),
            Ok(None)
        );
        assert_eq!(
            a.push(frame(
                false,
                OpCode::Continuation,
                b"\xb9\xcf\x83\xce\xbc\xce\xb5"
            )),
            Ok(None)
        );
        let err = a
            .push(frame(false, OpCode::Continuation, b"\xed\xa0\x80edited"))
            .unwrap_err();
        assert_eq!((err.clone(), err.close_code()), (Error::InvalidUtf8, 1007));

        // Valid split characters assemble.
        let mut a = Assembler::new(100);
        let euro = "€".as_bytes();
        assert_eq!(a.push(frame(false, OpCode::Text, &euro[..1])), Ok(None));
        assert_eq!(
            a.push(frame(false, OpCode::Continuation, &euro[1..2])),
            Ok(None)
        );
        assert_eq!(
            a.push(frame(true, OpCode::Continuation, &euro[2..])),
            Ok(text("€"))
        );

        // Truncated at the end of the message.
        let mut a = Assembler::new(100);
        assert_eq!(a.push(frame(false, OpCode::Text, &euro[..2])), Ok(None));
        let err = a.push(frame(true, OpCode::Continuation, b"")).unwrap_err();
        assert_eq!(err, Error::InvalidUtf8);

        // Invalid in a single frame, and binary is never checked.
        let mut a = Assembler::new(100);
        assert_eq!(
            a.push(frame(true, OpCode::Text, b"\xff")),
            Err(Error::InvalidUtf8)
        );
        assert!(a.push(frame(true, OpCode::Binary, b"\xff")).is_ok());
    }

    /// Feeds `wire` (one masked frame) to `check_arriving` in pieces ending at `cuts`, as a
    /// connection would while the frame arrives; returns the index of the first failing cut.
    fn first_failing_cut(a: &mut Assembler, wire: &[u8], cuts: &[usize]) -> Option<usize> {
        cuts.iter().position(|&cut| {
            let (h, hl) = crate::ws::frame::decode_header(&wire[..cut])
                .unwrap()
                .unwrap();
            a.check_arriving(&h, &wire[hl..cut]).is_err()
        })
    }

    #[test]
    fn utf8_fails_fast_inside_an_arriving_frame() {
        // Autobahn 6.4.3: one text frame, "κόσμε" + ED A0 80 (a surrogate) + "edited", arriving
        // in chops. The chop holding A0 must fail, before the frame is complete.
        let payload = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited";
        let mut wire = Vec::new();
        encode_masked(
            true,
            OpCode::Text,
            payload,
            [0x37, 0xfa, 0x21, 0x3d],
            &mut wire,
        );
        let hl = wire.len() - payload.len();
        let cuts = [hl, hl + 11, hl + 13, hl + 16];
        assert_eq!(
            first_failing_cut(&mut Assembler::new(100), &wire, &cuts),
            Some(2)
        );
        // Byte by byte, it fails exactly at A0 (payload byte 12).
        let cuts: Vec<usize> = (hl..wire.len()).collect();
        let mut a = Assembler::new(100);
        assert_eq!(first_failing_cut(&mut a, &wire, &cuts), Some(13));

        // A valid text frame passes every prefix, then assembles as usual; binary is never
        // looked into.
        let text = "κόσμε € 𝄞".repeat(1000);
        for opcode in [OpCode::Text, OpCode::Binary] {
            let mut wire = Vec::new();
            encode_masked(true, opcode, text.as_bytes(), [1, 2, 3, 4], &mut wire);
            let hl = wire.len() - text.len();
            let cuts: Vec<usize> = (hl..wire.len()).step_by(7).collect();
            let mut a = Assembler::new(1 << 20);
            assert_eq!(first_failing_cut(&mut a, &wire, &cuts), None);
            let (f, _) = decode(&wire, 1 << 20).unwrap().unwrap();
            assert!(matches!(a.push(f), Ok(Some(Event::Message(_)))));
        }
        let mut wire = Vec::new();
        encode_masked(true, OpCode::Binary, b"\xff\xff", [1, 2, 3, 4], &mut wire);
        let mut a = Assembler::new(100);
        assert_eq!(first_failing_cut(&mut a, &wire, &[wire.len() - 1]), None);
    }

    #[test]
    fn utf8_fails_fast_in_an_arriving_continuation() {
        // The continuation carries on from the open message's state: its first byte completes
        // the euro sign the first fragment began, its next breaks the text.
        let euro = "€".as_bytes();
        let mut a = Assembler::new(100);
        assert_eq!(a.push(frame(false, OpCode::Text, &euro[..2])), Ok(None));
        let mut wire = Vec::new();
        encode_masked(
            true,
            OpCode::Continuation,
            b"\xac\xff rest",
            [9, 8, 7, 6],
            &mut wire,
        );
        let hl = wire.len() - 7;
        assert_eq!(
            first_failing_cut(&mut a, &wire, &[hl + 1, hl + 2, hl + 3]),
            Some(1)
        );

        // A continuation of binary is not looked into; a valid one completes the text.
        let mut a = Assembler::new(100);
        assert_eq!(a.push(frame(false, OpCode::Binary, b"\xff")), Ok(None));
        assert_eq!(first_failing_cut(&mut a, &wire, &[hl + 3]), None);
        let mut a = Assembler::new(100);
        assert_eq!(a.push(frame(false, OpCode::Text, &euro[..2])), Ok(None));
        let mut wire = Vec::new();
        encode_masked(
            true,
            OpCode::Continuation,
            b"\xac ok",
            [9, 8, 7, 6],
            &mut wire,
        );
        assert_eq!(first_failing_cut(&mut a, &wire, &[wire.len() - 1]), None);
        let (f, _) = decode(&wire, 100).unwrap().unwrap();
        assert_eq!(a.push(f), Ok(text("€ ok")));
    }

    /// Found by `fuzz/` (target `ws_message`): a text frame too big for the message limit
    /// (though within the 125 bytes every frame may announce) and holding invalid UTF-8 was
    /// closed with 1009 when it came in one read but 1007 when it came in pieces, because
    /// `check_arriving` looked into a frame that `push` refuses as too big anyway.
    #[test]
    fn an_arriving_frame_over_the_limit_is_left_to_push() {
        let wire = [
            0x01, 0x89, 0xad, 0x01, 0x00, 0xb7, 0x00, 0xbb, 0x3d, 0x35, 0x00, 0x00, 0x00, 0x00,
            0x35,
        ];
        let mut a = Assembler::new(7);
        let cuts: Vec<usize> = (6..wire.len()).collect();
        assert_eq!(first_failing_cut(&mut a, &wire, &cuts), None);
        let (f, _) = decode(&wire, a.max_next_payload().max(125))
            .unwrap()
            .unwrap();
        assert_eq!(a.push(f), Err(Error::TooBig { size: 9, max: 7 }));
    }

    #[test]
    fn close_payloads() {
        type Case = (&'static [u8], Result<Option<Event>, Error>);
        let cases: &[Case] = &[
            (b"", Ok(Some(Event::Close(None)))),
            (b"\x03", Err(Error::CloseLengthOne)),
            (
                b"\x03\xe8",
                Ok(Some(Event::Close(Some((1000, String::new()))))),
            ),
            (
                b"\x03\xe9bye \xe2\x82\xac",
                Ok(Some(Event::Close(Some((1001, "bye €".to_string()))))),
            ),
            (
                b"\x0f\xa0",
                Ok(Some(Event::Close(Some((4000, String::new()))))),
            ),
            (b"\x03\xed", Err(Error::InvalidCloseCode(1005))),
            (b"\x03\xee", Err(Error::InvalidCloseCode(1006))),
            (b"\x03\xe7", Err(Error::InvalidCloseCode(999))),
            (b"\x00\x00", Err(Error::InvalidCloseCode(0))),
            (b"\x13\x88", Err(Error::InvalidCloseCode(5000))),
            (b"\x03\xe8\xce\xba\xed\xa0\x80", Err(Error::InvalidUtf8)),
        ];
        for (payload, expected) in cases {
            let mut a = Assembler::new(100);
            let got = a.push(frame(true, OpCode::Close, payload));
            assert_eq!(&got, expected, "{payload:x?}");
        }
        assert_eq!(Error::CloseLengthOne.close_code(), 1002);
        assert_eq!(Error::InvalidCloseCode(1005).close_code(), 1002);
    }

    /// Deterministic xorshift64, so a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut a = Assembler::new(64);
        let mut buf = Vec::with_capacity(96);
        let (mut frames, mut errors) = (0u32, 0u32);
        for _ in 0..300_000 {
            buf.clear();
            let len = (rng.next() % 80) as usize;
            buf.extend((0..len).map(|_| rng.next() as u8));
            // Bias towards frames that get past the header: a known opcode, no RSV bits, the
            // mask bit, and short lengths.
            if len >= 2 && rng.next().is_multiple_of(2) {
                const OPS: [u8; 6] = [0x0, 0x1, 0x2, 0x8, 0x9, 0xA];
                let op = OPS[(rng.next() % 6) as usize];
                buf[0] = (buf[0] & 0x80) | op;
                buf[1] = 0x80 | (buf[1] % 70);
            }
            // Decode every frame the bytes hold, as the connection loop would.
            let mut rest = &buf[..];
            loop {
                match decode(rest, a.max_next_payload().max(125)) {
                    Ok(Some((frame, used))) => {
                        assert!(used > 0 && used <= rest.len());
                        rest = &rest[used..];
                        frames += 1;
                        if a.push(frame).is_err() {
                            errors += 1;
                            a = Assembler::new(64);
                        }
                        assert!(a.buffered() <= 64);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        assert!(matches!(e.close_code(), 1002 | 1007 | 1009));
                        errors += 1;
                        break;
                    }
                }
            }
        }
        // The bias works: the assembler saw plenty of frames, and plenty were refused.
        assert!(frames > 10_000 && errors > 10_000, "{frames} {errors}");
    }
}
