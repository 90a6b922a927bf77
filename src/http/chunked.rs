//! Pure, incremental decoder for the `chunked` transfer coding (RFC 9112 §7.1). It is fed
//! whatever bytes have arrived and keeps its place, so a body sent one byte at a time costs
//! linear work. No I/O here.
//!
//! Strict on purpose: every line ends in CRLF (a bare LF is refused, unlike in request heads),
//! extensions must follow their grammar, and trailer fields must be well-formed fields. A
//! front proxy that reads the same bytes by other rules would otherwise see a different body
//! or a different next request (request smuggling).
//!
//! ```text
//! chunked-body   = *chunk last-chunk trailer-section CRLF
//! chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//! chunk-ext-name = token
//! chunk-ext-val  = token / quoted-string
//! trailer-section = *( field-line CRLF )
//! ```

use super::error::Error;
use super::request::{is_tchar, split_header};

/// Longest chunk-size line: the size and its extensions, without the CRLF. Default 1 KiB:
/// sizes are at most 15 hex digits and nothing we serve uses extensions.
pub const MAX_SIZE_LINE: usize = 1024;
/// Most extension bytes (everything after the size on its line) in one body, over all its
/// chunks, so that a body of many tiny chunks cannot make us parse megabytes of extensions.
/// Default 4 KiB.
pub const MAX_EXTENSIONS: usize = 4 * 1024;
/// Most bytes in the trailer section (each field line with its CRLF). Default 16 KiB.
pub const MAX_TRAILERS: usize = 16 * 1024;
/// Most hex digits in a chunk size: 15 cannot overflow a u64.
const MAX_SIZE_DIGITS: usize = 15;

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
    /// Bytes at the start of the unconsumed input already searched for the current line's LF,
    /// so a line arriving a byte at a time is scanned once.
    scanned: usize,
    ext_bytes: usize,
    trailer_bytes: usize,
    pub body: Vec<u8>,
}

impl Decoder {
    pub fn new(max: usize) -> Self {
        Decoder {
            state: State::Size,
            max,
            scanned: 0,
            ext_bytes: 0,
            trailer_bytes: 0,
            body: Vec::new(),
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes what it can of `buf`; returns how many bytes it used. The caller keeps the
    /// unused bytes and passes them again, with more appended, on the next call (as
    /// `http::conn` does). Once [`is_done`] the rest of `buf` (if any) belongs to the next
    /// request.
    ///
    /// [`is_done`]: Decoder::is_done
    pub fn feed(&mut self, buf: &[u8]) -> Result<usize, Error> {
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            match self.state {
                State::Done => return Ok(pos),
                State::Size => {
                    let Some(text) = self.line(rest, MAX_SIZE_LINE, "chunk size line too long")?
                    else {
                        return Ok(pos);
                    };
                    pos += text.len() + 2;
                    let (size, ext) = parse_size_line(text)?;
                    if ext > MAX_EXTENSIONS - self.ext_bytes {
                        return Err(Error::BadRequest("chunk extensions too large"));
                    }
                    self.ext_bytes += ext;
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
                    _ => return Err(Error::BadRequest("chunk data not followed by CRLF")),
                },
                State::Trailers => {
                    let room = MAX_TRAILERS - self.trailer_bytes;
                    let Some(text) = self.line(rest, room, "trailer section too large")? else {
                        return Ok(pos);
                    };
                    pos += text.len() + 2;
                    if text.is_empty() {
                        self.state = State::Done;
                        continue;
                    }
                    // The line and its CRLF fit in `room` (`line` allows `room` bytes before
                    // the CRLF); the CRLF is charged here.
                    if text.len() + 2 > room {
                        return Err(Error::BadRequest("trailer section too large"));
                    }
                    self.trailer_bytes += text.len() + 2;
                    // RFC 9112 §7.1.2: trailer fields are field lines; parsed like header
                    // fields, then dropped (nothing here needs them).
                    split_header(text)?;
                }
            }
        }
    }

    /// The line at the start of `buf` without its CRLF, or None if its LF has not arrived.
    /// More than `max` bytes before the CRLF is an error as soon as they are there. The LF
    /// must follow a CR (RFC 9112 §7.1: chunk lines end in CRLF), and no other CR may appear.
    fn line<'a>(
        &mut self,
        buf: &'a [u8],
        max: usize,
        too_long: &'static str,
    ) -> Result<Option<&'a [u8]>, Error> {
        // Bytes of a line: max, its CR, its LF.
        let window = &buf[..buf.len().min(max + 2)];
        let from = self.scanned.min(window.len());
        let Some(lf) = window[from..].iter().position(|&b| b == b'\n') else {
            // A CR may still be the first half of the CRLF, so it does not count yet.
            let held = window.strip_suffix(b"\r").unwrap_or(window);
            if held.len() > max {
                return Err(Error::BadRequest(too_long));
            }
            self.scanned = window.len();
            return Ok(None);
        };
        self.scanned = 0;
        let lf = from + lf;
        match window[..lf].strip_suffix(b"\r") {
            Some(text) if text.len() > max => Err(Error::BadRequest(too_long)),
            Some(text) if !text.contains(&b'\r') => Ok(Some(text)),
            Some(_) => Err(Error::BadRequest("bare CR in a chunk line")),
            None => Err(Error::BadRequest("chunk line not ended by CRLF")),
        }
    }
}

/// `chunk-size [ chunk-ext ]`: the size, and how many bytes of extensions followed it.
fn parse_size_line(text: &[u8]) -> Result<(u64, usize), Error> {
    let digits = text.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > MAX_SIZE_DIGITS {
        return Err(Error::BadRequest("malformed chunk size"));
    }
    let ext = &text[digits..];
    check_extensions(ext)?;
    let size = text[..digits]
        .iter()
        .fold(0u64, |n, &b| (n << 4) | u64::from(hex_value(b)));
    Ok((size, ext.len()))
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// RFC 9112 §7.1.1: `*( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )`. The
/// extensions are validated and ignored (we understand none).
fn check_extensions(mut s: &[u8]) -> Result<(), Error> {
    const BAD: Error = Error::BadRequest("malformed chunk extension");
    while !s.is_empty() {
        s = skip_bws(s);
        s = s.strip_prefix(b";").ok_or(BAD)?;
        s = skip_bws(s);
        let name = token_len(s);
        if name == 0 {
            return Err(BAD);
        }
        s = &s[name..];
        let after = skip_bws(s);
        if let Some(v) = after.strip_prefix(b"=") {
            let v = skip_bws(v);
            let len = match v.first() {
                Some(b'"') => quoted_string_len(v).ok_or(BAD)?,
                _ => token_len(v),
            };
            if len == 0 {
                return Err(BAD);
            }
            s = &v[len..];
        }
    }
    Ok(())
}

/// RFC 9110 §5.6.3: BWS = OWS = *( SP / HTAB ).
fn skip_bws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &s[n..]
}

fn token_len(s: &[u8]) -> usize {
    s.iter().take_while(|&&b| is_tchar(b)).count()
}

/// RFC 9110 §5.6.4: the length of the quoted-string at the start of `s` (quotes included),
/// or None if it is malformed or unterminated.
fn quoted_string_len(s: &[u8]) -> Option<usize> {
    // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
    let qdtext = |b: u8| {
        b == b'\t'
            || b == b' '
            || b == 0x21
            || (0x23..=0x7e).contains(&b) && b != b'\\'
            || b >= 0x80
    };
    // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
    let pair = |b: u8| b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80;
    let mut i = 1;
    loop {
        match *s.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' if pair(*s.get(i + 1)?) => i += 2,
            b if qdtext(b) => i += 1,
            _ => return None,
        }
    }
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

    fn refused(raw: &[u8]) -> bool {
        let mut d = Decoder::new(100);
        matches!(d.feed(raw), Err(Error::BadRequest(_)))
    }

    #[test]
    fn every_line_must_end_in_crlf() {
        for raw in [
            &b"1\nx\r\n0\r\n\r\n"[..], // after the size
            b"1;a=b\nx\r\n0\r\n\r\n",  // after an extension
            b"1\r\nx\n0\r\n\r\n",      // after the data
            b"1\r\nxy\r\n",            // data longer than its size
            b"1\r\nx\r\r\n",           // CR CR LF after the data
            b"1\r\nx\r\n0\n\r\n",      // after the last chunk
            b"1\r\nx\r\n0\r\n\n",      // the empty line ending the trailers
            b"0\r\nX: y\n\r\n",        // after a trailer field
            b"1\rx\r\n",               // a bare CR in the size line
            b"1;a=\"\r\"\r\n",         // … even quoted
            b"0\r\nX: a\rb\r\n\r\n",   // … or in a trailer
        ] {
            assert!(refused(raw), "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn extensions_follow_their_grammar() {
        for ext in [
            &b";"[..],
            b";=v",
            b";a=",
            b";a= ",
            b";a=b c",
            b";a b",
            b" ",
            b"\t",
            b";a ",
            b";a;",
            b";a@b",
            b";a=b@",
            b";a=\"x",
            b";a=\"x\"y",
            b";a=\"\x01\"",
            b";a=\"\\\x7f\"",
            b"\x00",
            b";a=\x80",
            b"x",
        ] {
            let mut raw = b"1".to_vec();
            raw.extend_from_slice(ext);
            raw.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
            assert!(refused(&raw), "{:?}", String::from_utf8_lossy(ext));
        }
        for ext in [
            &b""[..],
            b";a",
            b";a=b",
            b";a;b=c;d",
            b" ; a = b",
            b"\t;\ta\t=\tb",
            b";!#$%&'*+-.^_`|~=!#$%&'*+-.^_`|~",
            b";a=\"\"",
            b";a=\"q \\\" \\\\ ;=\"",
            b";a=\"\x80\xff\t\"",
        ] {
            let mut raw = b"1".to_vec();
            raw.extend_from_slice(ext);
            raw.extend_from_slice(b"\r\nx\r\n0");
            raw.extend_from_slice(ext);
            raw.extend_from_slice(b"\r\n\r\n");
            let (body, n) = decode_all(&raw, 100)
                .unwrap_or_else(|e| panic!("{e} for {:?}", String::from_utf8_lossy(ext)));
            assert_eq!((body.as_slice(), n), (&b"x"[..], raw.len()));
        }
    }

    #[test]
    fn trailers_are_field_lines() {
        for t in [
            &b"NoColon"[..],
            b" folded: x",
            b"Bad Name: x",
            b": empty",
            b"X : y",
            b"X: a\x00b",
        ] {
            let mut raw = b"0\r\n".to_vec();
            raw.extend_from_slice(t);
            raw.extend_from_slice(b"\r\n\r\n");
            assert!(refused(&raw), "{:?}", String::from_utf8_lossy(t));
        }
        let (body, _) = decode_all(b"0\r\nA: 1\r\nB:\r\nC:\t x y \r\n\r\n", 100).unwrap();
        assert!(body.is_empty());
    }

    #[test]
    fn a_size_line_over_its_limit_is_refused_as_soon_as_it_is() {
        let mut at = b"1;a=".to_vec();
        at.resize(MAX_SIZE_LINE, b'v');
        let mut whole = at.clone();
        whole.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert_eq!(decode_all(&whole, 100).unwrap().0, b"x");
        // At the limit with its CR, still waiting for the LF: not an error yet.
        at.push(b'\r');
        assert_eq!(Decoder::new(100).feed(&at), Ok(0));
        // One byte more, before any CRLF: refused without waiting for the end of the line.
        at.pop();
        at.push(b'v');
        assert!(refused(&at));
    }

    #[test]
    fn extensions_over_their_total_are_refused() {
        // Each line within its own limit; together more extension bytes than allowed.
        let ext = format!(";n={}", "v".repeat(MAX_SIZE_LINE - 5));
        let mut raw = Vec::new();
        for _ in 0..=MAX_EXTENSIONS / ext.len() {
            raw.extend_from_slice(format!("1{ext}\r\nx\r\n").as_bytes());
        }
        let mut d = Decoder::new(1 << 20);
        assert_eq!(
            d.feed(&raw),
            Err(Error::BadRequest("chunk extensions too large"))
        );
        // Up to the total they pass.
        let mut d = Decoder::new(1 << 20);
        let fits = MAX_EXTENSIONS / ext.len();
        let line = format!("1{ext}\r\nx\r\n");
        assert_eq!(d.feed(line.repeat(fits).as_bytes()), Ok(line.len() * fits));
    }

    #[test]
    fn trailers_over_their_total_are_refused() {
        let field = format!("X: {}\r\n", "v".repeat(1000));
        let fits = MAX_TRAILERS / field.len();
        let mut raw = b"0\r\n".to_vec();
        raw.extend_from_slice(field.repeat(fits).as_bytes());
        let mut ok = raw.clone();
        ok.extend_from_slice(b"\r\n");
        assert_eq!(decode_all(&ok, 100).unwrap().1, ok.len());
        raw.extend_from_slice(field.as_bytes());
        assert_eq!(
            Decoder::new(100).feed(&raw),
            Err(Error::BadRequest("trailer section too large"))
        );
    }

    /// A long line arriving a byte at a time is searched for its end once, not once per byte.
    #[test]
    fn a_line_arriving_a_byte_at_a_time_gives_the_same_result() {
        let mut raw = b"1;a=".to_vec();
        raw.resize(MAX_SIZE_LINE, b'v');
        raw.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        let mut d = Decoder::new(100);
        let mut buf = Vec::new();
        for &b in &raw {
            buf.push(b);
            let n = d.feed(&buf).unwrap();
            buf.drain(..n);
        }
        assert!(d.is_done());
        assert_eq!(d.body, b"x");
    }
}
