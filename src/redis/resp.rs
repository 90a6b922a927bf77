//! Pure RESP2 codec (the Redis serialization protocol, "RESP protocol specification" on
//! redis.io): commands to bytes, reply bytes to [`Value`]s. No I/O here and nothing about what
//! a command means: that is the connection's and its callers' business.
//!
//! [`decode`] works like `ws::frame::decode`: it returns a complete value and the bytes it
//! used, `None` when more bytes are needed (nothing consumed, so the caller just reads more and
//! calls again), or an error. Every length is checked against [`Limits`] before anything is
//! allocated for it, with arithmetic that cannot overflow.

use std::fmt;

/// The line terminator: the spec says every part "is terminated by CRLF (`\r\n`)". A bare LF
/// or a lone CR is refused, not tolerated: it would mean we and the server disagree on framing.
const CRLF: &[u8; 2] = b"\r\n";

/// The smallest encoding of any value (`+\r\n`): an array of n elements needs at least 3n more
/// bytes, which bounds what is reserved for an announced count before its elements arrive.
const MIN_VALUE_LEN: usize = 3;

/// How much a reply may make us hold. Defaults are what a Redis server can really send us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest bulk string, in bytes. Default 512 MiB: Redis's own `proto-max-bulk-len`, so any
    /// value Redis can store can be read back.
    pub max_bulk: usize,
    /// Most elements in one array. Default 1,048,576 (2^20): far above any reply this program
    /// asks for (history ranges and stream reads are bounded by their `COUNT`).
    pub max_array: usize,
    /// Deepest nesting of arrays; a top-level array is depth 1. Default 16 (a stream read
    /// reply, the deepest we use, is 4 levels).
    pub max_depth: usize,
    /// Longest line (a simple string, an error, an integer or a length), without its CRLF.
    /// Default 65,536 bytes: error messages from scripts can be long, but not unbounded.
    pub max_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk: 512 << 20,
            max_array: 1 << 20,
            max_depth: 16,
            max_line: 64 << 10,
        }
    }
}

/// A decoded RESP2 value. Simple strings and errors are kept as bytes: the spec only forbids
/// CR and LF in them, it does not promise UTF-8.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `+OK\r\n`
    Simple(Vec<u8>),
    /// `-ERR message\r\n`: a reply, not a failure of the connection.
    Error(Vec<u8>),
    /// `:1000\r\n`, a signed 64-bit integer.
    Integer(i64),
    /// `$5\r\nhello\r\n`, binary safe.
    Bulk(Vec<u8>),
    /// `$-1\r\n`, the null bulk string (e.g. `GET` of a missing key).
    Null,
    /// `*2\r\n...`, possibly nested.
    Array(Vec<Value>),
    /// `*-1\r\n`, the null array (e.g. a `BLPOP` that timed out).
    NullArray,
}

impl Value {
    /// The bytes of a bulk or simple string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(b) | Value::Simple(b) => Some(b),
            _ => None,
        }
    }

    /// The error message of an error reply.
    pub fn error_message(&self) -> Option<String> {
        match self {
            Value::Error(e) => Some(String::from_utf8_lossy(e).into_owned()),
            _ => None,
        }
    }
}

/// Why a reply cannot be decoded. Each is a protocol violation (or a reply beyond our
/// limits): the connection cannot stay in step with the server afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// A first byte that is not one of `+ - : $ *` (RESP3 types are not asked for).
    UnknownType(u8),
    /// A LF not preceded by CR.
    BareLf,
    /// A CR not followed by LF (inside a line, or after a bulk string's bytes).
    BareCr,
    /// A line longer than `Limits::max_line` without its CRLF.
    LineTooLong { max: usize },
    /// A bulk or array length that is not digits, or negative other than `-1`.
    BadLength,
    /// An integer reply that is not an optionally signed decimal fitting in 64 bits.
    BadInteger,
    /// A bulk string announced longer than `Limits::max_bulk`.
    BulkTooLong { size: u64, max: usize },
    /// An array announced with more than `Limits::max_array` elements.
    ArrayTooLong { size: u64, max: usize },
    /// Arrays nested deeper than `Limits::max_depth`.
    TooDeep { max: usize },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnknownType(b) => write!(f, "unknown RESP type byte 0x{b:02x}"),
            Error::BareLf => f.write_str("LF without CR in a RESP line"),
            Error::BareCr => f.write_str("CR without LF in a RESP value"),
            Error::LineTooLong { max } => write!(f, "RESP line longer than {max} bytes"),
            Error::BadLength => f.write_str("RESP length is not digits or -1"),
            Error::BadInteger => f.write_str("RESP integer is not a 64-bit decimal"),
            Error::BulkTooLong { size, max } => {
                write!(f, "RESP bulk string of {size} bytes (limit {max})")
            }
            Error::ArrayTooLong { size, max } => {
                write!(f, "RESP array of {size} elements (limit {max})")
            }
            Error::TooDeep { max } => write!(f, "RESP arrays nested deeper than {max}"),
        }
    }
}

impl std::error::Error for Error {}

/// Appends a command to `out` as the spec says clients send them: "an array that consists of
/// only bulk strings".
pub fn encode_command(args: &[&[u8]], out: &mut Vec<u8>) {
    write_len(b'*', args.len(), out);
    for arg in args {
        write_bulk(arg, out);
    }
}

/// Appends any value in its canonical encoding (shortest numbers, no `+` sign). Commands use
/// [`encode_command`]; this is for tests and the fuzz target, which re-encode what they decode.
pub fn encode_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Simple(s) => write_line(b'+', s, out),
        Value::Error(s) => write_line(b'-', s, out),
        Value::Integer(n) => write_line(b':', n.to_string().as_bytes(), out),
        Value::Bulk(b) => write_bulk(b, out),
        Value::Null => out.extend_from_slice(b"$-1\r\n"),
        Value::NullArray => out.extend_from_slice(b"*-1\r\n"),
        Value::Array(items) => {
            write_len(b'*', items.len(), out);
            for item in items {
                encode_value(item, out);
            }
        }
    }
}

fn write_line(kind: u8, line: &[u8], out: &mut Vec<u8>) {
    out.push(kind);
    out.extend_from_slice(line);
    out.extend_from_slice(CRLF);
}

fn write_len(kind: u8, len: usize, out: &mut Vec<u8>) {
    write_line(kind, len.to_string().as_bytes(), out);
}

fn write_bulk(bytes: &[u8], out: &mut Vec<u8>) {
    write_len(b'$', bytes.len(), out);
    out.extend_from_slice(bytes);
    out.extend_from_slice(CRLF);
}

/// Decodes one value from the start of `buf`: the value and the bytes it used, `None` when it
/// is not complete yet (nothing consumed), or an error as soon as the bytes seen prove one.
pub fn decode(buf: &[u8], limits: &Limits) -> Result<Option<(Value, usize)>, Error> {
    decode_at(buf, 0, limits, 0)
}

/// Decodes the value starting at `buf[at]`, inside `depth` enclosing arrays; returns the value
/// and the offset just after it.
fn decode_at(
    buf: &[u8],
    at: usize,
    limits: &Limits,
    depth: usize,
) -> Result<Option<(Value, usize)>, Error> {
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    if !matches!(kind, b'+' | b'-' | b':' | b'$' | b'*') {
        return Err(Error::UnknownType(kind));
    }
    let Some((line, next)) = line(buf, at + 1, limits.max_line)? else {
        return Ok(None);
    };
    let value = match kind {
        b'+' => Value::Simple(line.to_vec()),
        b'-' => Value::Error(line.to_vec()),
        b':' => Value::Integer(parse_integer(line)?),
        b'$' => {
            let Some(size) = parse_length(line)? else {
                return Ok(Some((Value::Null, next)));
            };
            if size > limits.max_bulk as u64 {
                return Err(Error::BulkTooLong {
                    size,
                    max: limits.max_bulk,
                });
            }
            // Within max_bulk, so it fits in usize; `next + size` cannot overflow a buffer
            // that exists, but a huge limit on a short buffer could: checked.
            let end = usize::try_from(size)
                .ok()
                .and_then(|s| next.checked_add(s))
                .ok_or(Error::BulkTooLong {
                    size,
                    max: limits.max_bulk,
                })?;
            let Some(bytes) = buf.get(next..end) else {
                return Ok(None);
            };
            match buf.get(end..end + 2) {
                Some(t) if t == CRLF => {}
                Some(_) => return Err(Error::BareCr),
                // Only the CR has arrived: it must still be followed by LF.
                None if buf.get(end).is_some_and(|&b| b != b'\r') => return Err(Error::BareCr),
                None => return Ok(None),
            }
            return Ok(Some((Value::Bulk(bytes.to_vec()), end + 2)));
        }
        _ => {
            let Some(count) = parse_length(line)? else {
                return Ok(Some((Value::NullArray, next)));
            };
            if count > limits.max_array as u64 {
                return Err(Error::ArrayTooLong {
                    size: count,
                    max: limits.max_array,
                });
            }
            if depth >= limits.max_depth {
                return Err(Error::TooDeep {
                    max: limits.max_depth,
                });
            }
            let count = count as usize; // <= max_array, a usize
                                        // Reserve only what the bytes already here could hold: a short reply announcing a
                                        // million elements must not make us allocate for a million.
            let room = (buf.len() - next) / MIN_VALUE_LEN;
            let mut items = Vec::with_capacity(count.min(room));
            let mut pos = next;
            for _ in 0..count {
                let Some((item, after)) = decode_at(buf, pos, limits, depth + 1)? else {
                    return Ok(None);
                };
                items.push(item);
                pos = after;
            }
            return Ok(Some((Value::Array(items), pos)));
        }
    };
    Ok(Some((value, next)))
}

/// The line starting at `buf[from]` (without CRLF) and the offset after its CRLF, `None` if its
/// CRLF has not arrived. Errors as soon as a bare LF, a lone CR or too long a line is seen.
fn line(buf: &[u8], from: usize, max: usize) -> Result<Option<(&[u8], usize)>, Error> {
    let rest = buf.get(from..).unwrap_or_default();
    // Look no further than the limit allows: a line's end must come within max + 1 bytes.
    let window = &rest[..rest.len().min(max.saturating_add(1))];
    match window.iter().position(|&b| b == b'\r' || b == b'\n') {
        Some(i) if window[i] == b'\n' => Err(Error::BareLf),
        Some(i) => match rest.get(i + 1) {
            Some(b'\n') => Ok(Some((&rest[..i], from + i + 2))),
            Some(_) => Err(Error::BareCr),
            None => Ok(None),
        },
        None if window.len() > max => Err(Error::LineTooLong { max }),
        None => Ok(None),
    }
}

/// A bulk or array length: `None` for the null `-1`, else decimal digits only.
fn parse_length(line: &[u8]) -> Result<Option<u64>, Error> {
    if line == b"-1" {
        return Ok(None);
    }
    if line.is_empty() || !line.iter().all(u8::is_ascii_digit) {
        return Err(Error::BadLength);
    }
    let mut n: u64 = 0;
    for &d in line {
        // A length past u64 is over every limit anyway: saturate, and the limit check refuses.
        n = n.saturating_mul(10).saturating_add(u64::from(d - b'0'));
    }
    Ok(Some(n))
}

/// An integer reply: "an optional plus (+) or minus (-) as the sign", then digits (the spec).
fn parse_integer(line: &[u8]) -> Result<i64, Error> {
    let (negative, digits) = match line.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, line),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(Error::BadInteger);
    }
    let mut n: i64 = 0;
    for &d in digits {
        let d = i64::from(d - b'0');
        // Accumulate towards the sign, so i64::MIN (one more than i64::MAX) fits.
        n = n
            .checked_mul(10)
            .and_then(|n| {
                if negative {
                    n.checked_sub(d)
                } else {
                    n.checked_add(d)
                }
            })
            .ok_or(Error::BadInteger)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::Bulk(s.as_bytes().to_vec())
    }

    fn simple(s: &str) -> Value {
        Value::Simple(s.as_bytes().to_vec())
    }

    fn err(s: &str) -> Value {
        Value::Error(s.as_bytes().to_vec())
    }

    fn whole(bytes: &[u8]) -> Value {
        match decode(bytes, &Limits::default()) {
            Ok(Some((v, n))) => {
                assert_eq!(
                    n,
                    bytes.len(),
                    "{:?} used {n} bytes",
                    String::from_utf8_lossy(bytes)
                );
                v
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
        }
    }

    /// Every example of RESP2 values in the protocol specification (redis.io, "RESP protocol
    /// specification"), with the value it stands for.
    fn spec_examples() -> Vec<(&'static [u8], Value)> {
        use Value::{Array, Integer};
        vec![
            (b"+OK\r\n", simple("OK")),
            (b"-Error message\r\n", err("Error message")),
            (
                b"-ERR unknown command 'asdf'\r\n",
                err("ERR unknown command 'asdf'"),
            ),
            (
                b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
                err("WRONGTYPE Operation against a key holding the wrong kind of value"),
            ),
            (b":0\r\n", Integer(0)),
            (b":1000\r\n", Integer(1000)),
            (b"$5\r\nhello\r\n", bulk("hello")),
            (b"$0\r\n\r\n", bulk("")),
            (b"$-1\r\n", Value::Null),
            (b"*0\r\n", Array(vec![])),
            (
                b"*2\r\n$5\r\nhello\r\n$5\r\nworld\r\n",
                Array(vec![bulk("hello"), bulk("world")]),
            ),
            (
                b"*3\r\n:1\r\n:2\r\n:3\r\n",
                Array(vec![Integer(1), Integer(2), Integer(3)]),
            ),
            (
                b"*5\r\n:1\r\n:2\r\n:3\r\n:4\r\n$5\r\nhello\r\n",
                Array(vec![
                    Integer(1),
                    Integer(2),
                    Integer(3),
                    Integer(4),
                    bulk("hello"),
                ]),
            ),
            (
                b"*2\r\n*3\r\n:1\r\n:2\r\n:3\r\n*2\r\n+Hello\r\n-World\r\n",
                Array(vec![
                    Array(vec![Integer(1), Integer(2), Integer(3)]),
                    Array(vec![simple("Hello"), err("World")]),
                ]),
            ),
            (b"*-1\r\n", Value::NullArray),
            (
                b"*3\r\n$5\r\nhello\r\n$-1\r\n$5\r\nworld\r\n",
                Array(vec![bulk("hello"), Value::Null, bulk("world")]),
            ),
            // The spec's command example: `LLEN mylist` as a client sends it.
            (
                b"*2\r\n$4\r\nLLEN\r\n$6\r\nmylist\r\n",
                Array(vec![bulk("LLEN"), bulk("mylist")]),
            ),
        ]
    }

    #[test]
    fn spec_examples_decode_and_encode_back() {
        for (bytes, value) in spec_examples() {
            assert_eq!(whole(bytes), value);
            let mut out = Vec::new();
            encode_value(&value, &mut out);
            assert_eq!(out, bytes, "canonical encoding of {value:?}");
        }
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode_command(&[b"LLEN", b"mylist"], &mut out);
        assert_eq!(out, b"*2\r\n$4\r\nLLEN\r\n$6\r\nmylist\r\n");
        out.clear();
        encode_command(&[b"SET", b"k", b"a\r\nb\0"], &mut out);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\na\r\nb\0\r\n");
        assert_eq!(
            whole(&out),
            Value::Array(vec![
                bulk("SET"),
                bulk("k"),
                Value::Bulk(b"a\r\nb\0".to_vec())
            ])
        );
    }

    #[test]
    fn every_proper_prefix_is_incomplete() {
        for (bytes, _) in spec_examples() {
            for i in 0..bytes.len() {
                assert_eq!(
                    decode(&bytes[..i], &Limits::default()),
                    Ok(None),
                    "{:?} cut at {i}",
                    String::from_utf8_lossy(bytes)
                );
            }
        }
    }

    #[test]
    fn pipelined_values_are_used_one_at_a_time() {
        let buf = b":1\r\n$2\r\nab\r\n*-1\r\n";
        let l = Limits::default();
        assert_eq!(decode(buf, &l), Ok(Some((Value::Integer(1), 4))));
        assert_eq!(decode(&buf[4..], &l), Ok(Some((bulk("ab"), 8))));
        assert_eq!(decode(&buf[12..], &l), Ok(Some((Value::NullArray, 5))));
    }

    #[test]
    fn integers() {
        let l = Limits::default();
        for (line, want) in [
            (&b":+5\r\n"[..], Ok(Some((Value::Integer(5), 5)))),
            (b":-0\r\n", Ok(Some((Value::Integer(0), 5)))),
            (b":007\r\n", Ok(Some((Value::Integer(7), 6)))),
            (
                b":-9223372036854775808\r\n",
                Ok(Some((Value::Integer(i64::MIN), 23))),
            ),
            (
                b":9223372036854775807\r\n",
                Ok(Some((Value::Integer(i64::MAX), 22))),
            ),
            (b":9223372036854775808\r\n", Err(Error::BadInteger)),
            (b":-9223372036854775809\r\n", Err(Error::BadInteger)),
            (b":\r\n", Err(Error::BadInteger)),
            (b":-\r\n", Err(Error::BadInteger)),
            (b":1 \r\n", Err(Error::BadInteger)),
            (b":0x10\r\n", Err(Error::BadInteger)),
        ] {
            assert_eq!(
                decode(line, &l),
                want,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn lengths_are_digits_or_minus_one() {
        let l = Limits::default();
        for bad in [
            &b"$-2\r\n"[..],
            b"$-0\r\n",
            b"$+1\r\n",
            b"$\r\n",
            b"$ 1\r\n",
            b"$1a\r\n",
            b"*-2\r\n",
            b"*x\r\n",
            b"*\r\n",
        ] {
            assert_eq!(
                decode(bad, &l),
                Err(Error::BadLength),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn crlf_only() {
        let l = Limits::default();
        assert_eq!(decode(b"+OK\n", &l), Err(Error::BareLf));
        assert_eq!(decode(b"+O\rK\r\n", &l), Err(Error::BareCr));
        assert_eq!(decode(b":1\n", &l), Err(Error::BareLf));
        assert_eq!(decode(b"$1\na\r\n", &l), Err(Error::BareLf));
        // A bulk string's bytes must be followed by CRLF exactly.
        assert_eq!(decode(b"$1\r\nab\r\n", &l), Err(Error::BareCr));
        assert_eq!(decode(b"$1\r\na\n", &l), Err(Error::BareCr));
        assert_eq!(decode(b"$1\r\na\rx", &l), Err(Error::BareCr));
        // ...but CR and LF inside a bulk string are data.
        assert_eq!(
            decode(b"$2\r\n\r\n\r\n", &l),
            Ok(Some((Value::Bulk(b"\r\n".to_vec()), 8)))
        );
        // An error is reported as soon as the byte that proves it arrives.
        assert_eq!(decode(b"$1\r\na", &l), Ok(None));
        assert_eq!(decode(b"$1\r\nax", &l), Err(Error::BareCr));
        assert_eq!(decode(b"+O\r", &l), Ok(None));
    }

    #[test]
    fn unknown_types_are_refused_at_once() {
        let l = Limits::default();
        for b in [
            b'_', b'#', b'%', b'~', b'>', b'(', b'=', b'!', b',', b'|', b' ', b'\r', 0,
        ] {
            assert_eq!(decode(&[b], &l), Err(Error::UnknownType(b)));
        }
    }

    #[test]
    fn bulk_limit_is_checked_before_the_bytes_arrive() {
        let l = Limits {
            max_bulk: 4,
            ..Limits::default()
        };
        assert_eq!(decode(b"$4\r\nabcd\r\n", &l), Ok(Some((bulk("abcd"), 10))));
        assert_eq!(
            decode(b"$5\r\n", &l),
            Err(Error::BulkTooLong { size: 5, max: 4 })
        );
        // Lengths past u64 saturate and are still refused, never wrap.
        assert_eq!(
            decode(b"$99999999999999999999999\r\n", &l),
            Err(Error::BulkTooLong {
                size: u64::MAX,
                max: 4
            })
        );
        // A huge limit with a huge announced length on a short buffer: incomplete, no panic,
        // and nothing allocated for it.
        let huge = Limits {
            max_bulk: usize::MAX,
            ..Limits::default()
        };
        let line = format!("${}\r\n", usize::MAX);
        assert_eq!(
            decode(line.as_bytes(), &huge),
            Err(Error::BulkTooLong {
                size: usize::MAX as u64,
                max: usize::MAX
            })
        );
        let line = format!("${}\r\n", usize::MAX - 100);
        assert_eq!(decode(line.as_bytes(), &huge), Ok(None));
    }

    #[test]
    fn array_limit_and_depth() {
        let l = Limits {
            max_array: 2,
            max_depth: 2,
            ..Limits::default()
        };
        assert!(matches!(decode(b"*2\r\n:1\r\n:2\r\n", &l), Ok(Some(_))));
        assert_eq!(
            decode(b"*3\r\n", &l),
            Err(Error::ArrayTooLong { size: 3, max: 2 })
        );
        assert!(matches!(decode(b"*1\r\n*1\r\n:1\r\n", &l), Ok(Some(_))));
        assert_eq!(
            decode(b"*1\r\n*1\r\n*1\r\n:1\r\n", &l),
            Err(Error::TooDeep { max: 2 })
        );
        // Null and empty arrays at the limit's depth are not nesting further.
        assert!(matches!(decode(b"*1\r\n*1\r\n*-1\r\n", &l), Ok(Some(_))));
        assert_eq!(
            decode(b"*1\r\n*1\r\n*0\r\n", &l),
            Err(Error::TooDeep { max: 2 })
        );
        // A deep input well past the limit: refused, not a stack overflow.
        let deep = b"*1\r\n".repeat(100_000);
        assert_eq!(
            decode(&deep, &Limits::default()),
            Err(Error::TooDeep { max: 16 })
        );
    }

    #[test]
    fn announced_count_does_not_reserve_beyond_the_bytes_here() {
        // A million elements announced, three arrived: incomplete, and the reservation is
        // bounded by the buffer (this would take seconds and ~40 MB if it were not).
        let mut buf = b"*1000000\r\n".to_vec();
        buf.extend_from_slice(b":1\r\n:2\r\n:3\r\n");
        assert_eq!(decode(&buf, &Limits::default()), Ok(None));
    }

    #[test]
    fn line_limit() {
        let l = Limits {
            max_line: 4,
            ..Limits::default()
        };
        assert_eq!(decode(b"+abcd\r\n", &l), Ok(Some((simple("abcd"), 7))));
        assert_eq!(decode(b"+abcd", &l), Ok(None));
        assert_eq!(decode(b"+abcd\r", &l), Ok(None));
        assert_eq!(decode(b"+abcde", &l), Err(Error::LineTooLong { max: 4 }));
        assert_eq!(decode(b"-abcde", &l), Err(Error::LineTooLong { max: 4 }));
        assert_eq!(decode(b":12345", &l), Err(Error::LineTooLong { max: 4 }));
        assert_eq!(decode(b"$12345", &l), Err(Error::LineTooLong { max: 4 }));
    }

    #[test]
    fn errors_display_clearly() {
        assert_eq!(
            Error::BulkTooLong { size: 9, max: 4 }.to_string(),
            "RESP bulk string of 9 bytes (limit 4)"
        );
        assert_eq!(
            Error::UnknownType(b'_').to_string(),
            "unknown RESP type byte 0x5f"
        );
        assert_eq!(Error::BareLf.to_string(), "LF without CR in a RESP line");
    }

    /// Pseudo-random bytes biased towards RESP's own bytes never panic, and whatever decodes
    /// re-encodes to something that decodes to the same value.
    #[test]
    fn garbage_never_panics() {
        const ALPHABET: &[u8] = b"+-:$*\r\n0123456789-1abc";
        let limits = Limits {
            max_bulk: 64,
            max_array: 8,
            max_depth: 4,
            max_line: 16,
        };
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if r % 4 == 0 {
                        (r >> 8) as u8
                    } else {
                        ALPHABET[(r >> 8) as usize % ALPHABET.len()]
                    }
                })
                .collect();
            if let Ok(Some((value, used))) = decode(&buf, &limits) {
                assert!(used <= buf.len());
                let mut again = Vec::new();
                encode_value(&value, &mut again);
                assert!(again.len() <= used, "canonical is never longer");
                assert_eq!(decode(&again, &limits), Ok(Some((value, again.len()))));
            }
        }
    }
}
