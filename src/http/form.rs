//! Pure decoding of `application/x-www-form-urlencoded` data (WHATWG URL §5) and query strings:
//! `+` is a space, `%XX` a byte, and the result must be UTF-8. No I/O here.

use std::borrow::Cow;
use std::fmt;

/// Why a form or query could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormError {
    /// `%` not followed by two hex digits.
    BadEscape,
    /// The decoded bytes are not UTF-8.
    NotUtf8,
}

impl fmt::Display for FormError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormError::BadEscape => f.write_str("malformed percent-escape"),
            FormError::NotUtf8 => f.write_str("decoded value is not UTF-8"),
        }
    }
}

impl std::error::Error for FormError {}

/// Percent-decodes one component; `plus_is_space` for form data and query strings.
pub fn percent_decode(s: &[u8], plus_is_space: bool) -> Result<String, FormError> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                let hi = s.get(i + 1).and_then(|&b| hex(b));
                let lo = s.get(i + 2).and_then(|&b| hex(b));
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => return Err(FormError::BadEscape),
                }
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| FormError::NotUtf8)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// [`percent_decode`], borrowing `s` when there is nothing to decode (no `%`, and no `+` when
/// it is a space): a usual form's names and values cost no allocation.
pub fn decode(s: &[u8], plus_is_space: bool) -> Result<Cow<'_, str>, FormError> {
    if s.iter().any(|&b| b == b'%' || (plus_is_space && b == b'+')) {
        return percent_decode(s, plus_is_space).map(Cow::Owned);
    }
    std::str::from_utf8(s)
        .map(Cow::Borrowed)
        .map_err(|_| FormError::NotUtf8)
}

/// One decoded `name=value` pair, borrowing the input where nothing was escaped.
pub type Pair<'a> = (Cow<'a, str>, Cow<'a, str>);

/// Decoded pairs, in order.
pub type Pairs<'a> = Vec<Pair<'a>>;

/// Decodes `a=1&b=2` into pairs, in order. Empty pieces (`a=1&&b=2`) are skipped; a piece
/// without `=` is a name with an empty value.
pub fn parse(s: &[u8]) -> Result<Pairs<'_>, FormError> {
    s.split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = match p.iter().position(|&b| b == b'=') {
                Some(i) => (&p[..i], &p[i + 1..]),
                None => (p, &b""[..]),
            };
            Ok((decode(k, true)?, decode(v, true)?))
        })
        .collect()
}

/// The first value of `name` in decoded pairs.
pub fn get<'a>(pairs: &'a [Pair<'_>], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_forms() {
        let p = parse(b"uid=1&name=%E9%87%8E+%E5%91%B3&&flag&e=").unwrap();
        assert_eq!(get(&p, "uid"), Some("1"));
        assert_eq!(get(&p, "name"), Some("野 味"));
        assert_eq!(get(&p, "flag"), Some(""));
        assert_eq!(get(&p, "e"), Some(""));
        assert_eq!(get(&p, "missing"), None);
        assert_eq!(percent_decode(b"a+b%2B", false).unwrap(), "a+b+");
    }

    #[test]
    fn plain_names_and_values_are_borrowed_escaped_ones_decoded() {
        assert!(matches!(decode(b"uid", true), Ok(Cow::Borrowed("uid"))));
        assert!(matches!(decode(b"a+b", false), Ok(Cow::Borrowed("a+b"))));
        assert!(matches!(decode(b"a+b", true), Ok(Cow::Owned(s)) if s == "a b"));
        assert!(matches!(decode(b"%41", true), Ok(Cow::Owned(s)) if s == "A"));
        assert_eq!(decode(b"\xff", true), Err(FormError::NotUtf8));
        assert_eq!(decode(b"%ff", true), Err(FormError::NotUtf8));
        let p = parse(b"uid=1&x=%41").unwrap();
        assert!(matches!(&p[0], (Cow::Borrowed("uid"), Cow::Borrowed("1"))));
        assert_eq!(get(&p, "x"), Some("A"));
    }

    #[test]
    fn refuses_bad_input() {
        assert_eq!(parse(b"uid=%"), Err(FormError::BadEscape));
        assert_eq!(parse(b"uid=%4"), Err(FormError::BadEscape));
        assert_eq!(parse(b"uid=%zz"), Err(FormError::BadEscape));
        assert_eq!(parse(b"uid=%ff"), Err(FormError::NotUtf8));
        assert_eq!(parse(b"uid=\xff"), Err(FormError::NotUtf8));
    }
}
