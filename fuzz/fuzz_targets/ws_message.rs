//! Message assembly over a stream of client frames (`ws::message::Assembler` fed by
//! `ws::frame::decode`), driven the way `ws::conn::run` drives it: bytes arrive in reads, every
//! complete frame is decoded with the limit `max(max_next_payload(), 125)` and pushed, and the
//! frame still arriving is shown to `check_arriving`. Input: a knob byte, then the client's
//! bytes. The knob picks the message limit (bits 5–7) and how the bytes are cut into reads.
//!
//! Invariants beyond "never panics": every event and error equals that of a plain model of
//! RFC 6455 §5.4–§5.6 written below (fragments, interleaved control frames, size limit, UTF-8
//! failing at the first fragment that cannot be completed, close payloads);
//! `buffered() <= max` and `max_next_payload() == max - buffered()` between frames; and
//! `check_arriving` fails exactly when the text received so far, including the part of a
//! frame within the size limit that has arrived, can no longer be valid UTF-8; and the events
//! and the error (so the close code) are the same whether the bytes come in one read or many.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livevote::ws::frame::{decode, decode_header, Frame, FrameHeader, OpCode, MAX_CONTROL_PAYLOAD};
use livevote::ws::message::{Assembler, Event, Message};
use livevote::ws::Error;
use livevote_fuzz::{is_utf8_prefix, knob, mask_naive, pieces};

const LIMITS: [usize; 8] = [4096, 0, 1, 7, 125, 126, 1000, 16 << 20];

/// RFC 6455 §5.4–§5.6 and §7.4 written the obvious way, for comparison.
struct Model {
    max: usize,
    /// The fragmented message open: is it text, and its bytes so far.
    open: Option<(bool, Vec<u8>)>,
}

/// Close codes a peer may send (§7.4.1, §7.4.2, and the IANA registry's 1012–1014).
fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

impl Model {
    fn push(&mut self, f: Frame) -> Result<Option<Event>, Error> {
        let too_big = |held: usize, len: usize, max: usize| Error::TooBig {
            size: (held + len) as u64,
            max: max as u64,
        };
        match f.opcode {
            OpCode::Ping => Ok(Some(Event::Ping(f.payload))),
            OpCode::Pong => Ok(Some(Event::Pong(f.payload))),
            OpCode::Close => match f.payload.as_slice() {
                [] => Ok(Some(Event::Close(None))),
                [_] => Err(Error::CloseLengthOne),
                [hi, lo, reason @ ..] => {
                    let code = u16::from_be_bytes([*hi, *lo]);
                    if !close_code_allowed(code) {
                        return Err(Error::InvalidCloseCode(code));
                    }
                    let reason = std::str::from_utf8(reason).map_err(|_| Error::InvalidUtf8)?;
                    Ok(Some(Event::Close(Some((code, reason.to_owned())))))
                }
            },
            OpCode::Text | OpCode::Binary => {
                if self.open.is_some() {
                    return Err(Error::MessageAlreadyOpen);
                }
                if f.payload.len() > self.max {
                    return Err(too_big(0, f.payload.len(), self.max));
                }
                let text = f.opcode == OpCode::Text;
                self.finish_or_keep(text, f.payload, f.fin)
            }
            OpCode::Continuation => {
                let (text, mut data) = self.open.take().ok_or(Error::ContinuationWithoutStart)?;
                if f.payload.len() > self.max - data.len() {
                    return Err(too_big(data.len(), f.payload.len(), self.max));
                }
                data.extend_from_slice(&f.payload);
                self.finish_or_keep(text, data, f.fin)
            }
        }
    }

    fn finish_or_keep(
        &mut self,
        text: bool,
        data: Vec<u8>,
        fin: bool,
    ) -> Result<Option<Event>, Error> {
        if text && !is_utf8_prefix(&data) {
            return Err(Error::InvalidUtf8);
        }
        if !fin {
            self.open = Some((text, data));
            return Ok(None);
        }
        Ok(Some(Event::Message(if text {
            Message::Text(String::from_utf8(data).map_err(|_| Error::InvalidUtf8)?)
        } else {
            Message::Binary(data)
        })))
    }

    /// Whether the arriving part of a frame leaves the text so far completable: `None` when
    /// the frame is not text (or not masked, not allowed here, or too big for the message), so
    /// nothing is checked.
    fn arriving_ok(&self, h: &FrameHeader, payload: &[u8]) -> Option<bool> {
        let mask = h.mask?;
        let held: &[u8] = match (h.opcode, &self.open) {
            (OpCode::Text, None) => &[],
            (OpCode::Continuation, Some((true, data))) => data,
            _ => return None,
        };
        if h.payload_len > (self.max - held.len()) as u64 {
            return None; // refused as too big when complete, whatever it holds
        }
        let len = usize::try_from(h.payload_len).map_or(payload.len(), |n| n.min(payload.len()));
        let mut text = held.to_vec();
        text.extend_from_slice(&mask_naive(&payload[..len], mask, 0));
        Some(is_utf8_prefix(&text))
    }
}

/// What a connection saw: its events in order, and the error that failed it, if any.
type Outcome = (Vec<Event>, Option<Error>);

/// Drives an assembler over `reads` as `ws::conn::run` does, checking every step against the
/// model when `check` is set.
fn run(reads: &[&[u8]], max: usize, check: bool) -> Outcome {
    let mut asm = Assembler::new(max);
    let mut model = Model { max, open: None };
    let mut events = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    for read in reads {
        buf.extend_from_slice(read);
        loop {
            assert!(asm.buffered() <= max);
            assert_eq!(asm.max_next_payload(), (max - asm.buffered()) as u64);
            let limit = asm.max_next_payload().max(MAX_CONTROL_PAYLOAD);
            let frame = match decode(&buf, limit) {
                Ok(Some((frame, used))) => {
                    buf.drain(..used);
                    frame
                }
                Ok(None) => break,
                // The connection fails; the frame target checks why.
                Err(e) => return (events, Some(e)),
            };
            let got = if check {
                let got = asm.push(frame.clone());
                assert_eq!(got, model.push(frame));
                got
            } else {
                asm.push(frame)
            };
            match got {
                Ok(Some(event)) => events.push(event),
                Ok(None) => {}
                // The connection fails; the assembler is not fed again.
                Err(e) => return (events, Some(e)),
            }
        }
        if let Ok(Some((h, hl))) = decode_header(&buf) {
            let got = asm.check_arriving(&h, &buf[hl..]);
            if check {
                match model.arriving_ok(&h, &buf[hl..]) {
                    Some(true) | None => assert_eq!(got, Ok(())),
                    Some(false) => assert_eq!(got, Err(Error::InvalidUtf8)),
                }
            }
            if let Err(e) = got {
                return (events, Some(e));
            }
        }
    }
    (events, None)
}

fuzz_target!(|data: &[u8]| {
    let (k, wire) = knob(data);
    let max = LIMITS[usize::from(k >> 5)];
    let split = run(&pieces(k, wire), max, true);
    // However the bytes are cut into reads, the connection sees the same thing (an invalid
    // text frame fails early or at its end, but with the same error).
    assert_eq!(
        run(&[wire], max, false),
        split,
        "one read differs from the knob's reads"
    );
});
