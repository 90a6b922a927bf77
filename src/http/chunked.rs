//! Pure, incremental decoder for the `chunked` transfer coding (RFC 9112 §7.1). It is fed
//! whatever bytes have arrived and keeps its place, so a body sent one byte at a time costs
//! linear work. No I/O here.

use super::error::Error;

/// Longest chunk-size line (size, extensions) or trailer line we accept.
const MAX_LINE: usize = 4096;
/// Most trailer bytes we skip before giving up.
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading `chunk-size [ chunk-ext ] CRLF`.
    Size,
    /// Reading chunk data; this many bytes remain.
    Data(u64),
    /// Expecting the CRLF that ends a chunk's data.
    DataEnd,
    /// Reading trailer lines after the last chunk, until an empty line.
    Trailers,
    Done,
}

/// Decodes one chunked body into `body`, refusing bodies over `max`.
#[derive(Debug)]
pub struct Decoder {
    state: State,
    max: usize,
    trailer_bytes: usize,
    pub body: Vec<u8>,
}

impl Decoder {
    pub fn new(max: usize) -> Self {
        Decoder {
            state: State::Size,
            max,
            trailer_bytes: 0,
            body: Vec::new(),
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes what it can of `buf`; returns how many bytes it used. Once [`is_done`] the
    /// rest of `buf` (if any) belongs to the next request.
    ///
    /// [`is_done`]: Decoder::is_done
    pub fn feed(&mut self, buf: &[u8]) -> Result<usize, Error> {
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            match self.state {
                State::Done => return Ok(pos),
                State::Size => {
                    let Some(line_len) = line(rest)? else {
                        return Ok(pos);
                    };
                    let text = &rest[..line_len];
                    let text = text.strip_suffix(b"\r").unwrap_or(text);
                    pos += line_len + 1;
                    let size = parse_size(text)?;
                    if size > (self.max - self.body.len()) as u64 {
                        return Err(Error::BodyTooLarge {
                            size: self.body.len() as u64 + size,
                            max: self.max,
                        });
                    }
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    if rest.is_empty() {
                        return Ok(pos);
                    }
                    let take = (left.min(rest.len() as u64)) as usize;
                    self.body.extend_from_slice(&rest[..take]);
                    pos += take;
                    self.state = if take as u64 == left {
                        State::DataEnd
                    } else {
                        State::Data(left - take as u64)
                    };
                }
                State::DataEnd => match rest {
                    [] | [b'\r'] => return Ok(pos),
                    [b'\r', b'\n', ..] => {
                        pos += 2;
                        self.state = State::Size;
                    }
                    [b'\n', ..] => {
                        pos += 1;
                        self.state = State::Size;
                    }
                    _ => return Err(Error::BadRequest("chunk data not followed by CRLF")),
                },
                State::Trailers => {
                    let Some(line_len) = line(rest)? else {
                        return Ok(pos);
                    };
                    pos += line_len + 1;
                    self.trailer_bytes += line_len + 1;
                    if self.trailer_bytes > MAX_TRAILERS {
                        return Err(Error::BadRequest("trailer section too large"));
                    }
                    let text = &rest[..line_len];
                    if text.is_empty() || text == b"\r" {
                        self.state = State::Done;
                    }
                    // Trailer fields are read and dropped: nothing here needs them.
                }
            }
        }
    }
}

/// Length of the line at the start of `buf` (excluding its LF), or None if no LF has arrived.
fn line(buf: &[u8]) -> Result<Option<usize>, Error> {
    match buf.iter().take(MAX_LINE + 1).position(|&b| b == b'\n') {
        Some(i) => Ok(Some(i)),
        None if buf.len() > MAX_LINE => Err(Error::BadRequest("chunk line too long")),
        None => Ok(None),
    }
}

fn parse_size(text: &[u8]) -> Result<u64, Error> {
    // chunk-size = 1*HEXDIG, then optional `;ext` (ignored) — RFC 9112 §7.1.1.
    let end = text
        .iter()
        .position(|&b| b == b';' || b == b' ' || b == b'\t')
        .unwrap_or(text.len());
    let hex = &text[..end];
    if hex.is_empty() || hex.len() > 15 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return Err(Error::BadRequest("malformed chunk size"));
    }
    let rest = &text[end..];
    if rest.iter().any(|&b| b == b'\r' || b == 0) {
        return Err(Error::BadRequest("malformed chunk extension"));
    }
    // ≤ 15 hex digits cannot overflow u64.
    let s = std::str::from_utf8(hex).map_err(|_| Error::BadRequest("malformed chunk size"))?;
    u64::from_str_radix(s, 16).map_err(|_| Error::BadRequest("malformed chunk size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(raw: &[u8], max: usize) -> Result<(Vec<u8>, usize), Error> {
        let mut d = Decoder::new(max);
        let n = d.feed(raw)?;
        assert!(d.is_done(), "not done after {n} of {}", raw.len());
        Ok((d.body, n))
    }

    const BODY: &[u8] = b"4\r\nuid=\r\n1;ext=1\r\n1\r\n0\r\nX-Trailer: y\r\n\r\nNEXT";

    #[test]
    fn decodes_with_extensions_and_trailers() {
        let (body, n) = decode_all(BODY, 100).unwrap();
        assert_eq!(body, b"uid=1");
        assert_eq!(&BODY[n..], b"NEXT");
    }

    #[test]
    fn byte_at_a_time_gives_the_same_result() {
        let mut d = Decoder::new(100);
        let mut buf = Vec::new();
        for &b in BODY {
            buf.push(b);
            let n = d.feed(&buf).unwrap();
            buf.drain(..n);
            if d.is_done() {
                break;
            }
        }
        assert!(d.is_done());
        assert_eq!(d.body, b"uid=1");
    }

    #[test]
    fn prefixes_are_incomplete_not_errors() {
        for i in 0..BODY.len() - 4 - 1 {
            let mut d = Decoder::new(100);
            d.feed(&BODY[..i]).unwrap();
            assert!(!d.is_done(), "prefix {i}");
        }
    }

    #[test]
    fn refuses_bad_chunks() {
        for raw in [
            &b"x\r\n"[..],
            b"\r\n",
            b"-1\r\n",
            b"1\r\nab\r\n",
            b"ffffffffffffffffff\r\n",
        ] {
            let mut d = Decoder::new(100);
            assert!(matches!(d.feed(raw), Err(Error::BadRequest(_))), "{raw:?}");
        }
    }

    #[test]
    fn limit_is_checked_before_the_data_arrives() {
        let mut d = Decoder::new(10);
        assert_eq!(
            d.feed(b"6\r\nabcdef\r\n5\r\n"),
            Err(Error::BodyTooLarge { size: 11, max: 10 })
        );
        let mut d = Decoder::new(10);
        assert!(matches!(
            d.feed(b"fffffffffffffff\r\n"),
            Err(Error::BodyTooLarge { .. })
        ));
    }
}
