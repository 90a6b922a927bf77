//! A small JSON writer (RFC 8259): objects, arrays, strings, numbers, booleans and null, written
//! straight into a `String`. Pure: no I/O. Every JSON text the server sends is built with it, so
//! no answer is made by editing another (popping a closing brace, slicing a prefix), and every
//! string goes through [`string`], which escapes what RFC 8259 §7 requires plus `<`, `>`, `&`,
//! U+2028 and U+2029, so JSON can be embedded in HTML and in JavaScript source safely.
//!
//! ```
//! let mut out = String::new();
//! livevote::json::object(&mut out, |o| {
//!     o.str("uid", "1").u64("count", 5).array("ids", |a| {
//!         a.str("x");
//!     });
//! });
//! assert_eq!(out, r#"{"uid":"1","count":5,"ids":["x"]}"#);
//! ```

use std::fmt::Write as _;

/// Appends `s` as a JSON string literal.
pub fn string(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut plain = 0; // start of the run of bytes that need no escape
    let mut i = 0;
    while i < bytes.len() {
        // Everything to escape is ASCII, but for U+2028 and U+2029 (E2 80 A8, E2 80 A9): the
        // run boundaries below are therefore always character boundaries.
        let (esc, len): (&str, usize) = match bytes[i] {
            b'"' => ("\\\"", 1),
            b'\\' => ("\\\\", 1),
            b'\n' => ("\\n", 1),
            b'\r' => ("\\r", 1),
            b'\t' => ("\\t", 1),
            b'<' => ("\\u003c", 1),
            b'>' => ("\\u003e", 1),
            b'&' => ("\\u0026", 1),
            b if b < 0x20 => {
                out.push_str(&s[plain..i]);
                let _ = write!(out, "\\u{b:04x}");
                i += 1;
                plain = i;
                continue;
            }
            0xE2 if bytes.get(i + 1) == Some(&0x80) && bytes.get(i + 2) == Some(&0xA8) => {
                ("\\u2028", 3)
            }
            0xE2 if bytes.get(i + 1) == Some(&0x80) && bytes.get(i + 2) == Some(&0xA9) => {
                ("\\u2029", 3)
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.push_str(&s[plain..i]);
        out.push_str(esc);
        i += len;
        plain = i;
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

/// Writes one JSON object into `out`: `f` adds its members.
pub fn object(out: &mut String, f: impl FnOnce(&mut Object)) {
    out.push('{');
    let mut o = Object { out, first: true };
    f(&mut o);
    o.out.push('}');
}

/// A JSON object as one `String`.
pub fn to_object(f: impl FnOnce(&mut Object)) -> String {
    let mut out = String::with_capacity(96);
    object(&mut out, f);
    out
}

/// Writes one JSON array into `out`: `f` adds its elements.
pub fn array(out: &mut String, f: impl FnOnce(&mut Array)) {
    out.push('[');
    let mut a = Array { out, first: true };
    f(&mut a);
    a.out.push(']');
}

/// The members of an object being written.
pub struct Object<'a> {
    out: &'a mut String,
    first: bool,
}

impl Object<'_> {
    fn key(&mut self, k: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        string(self.out, k);
        self.out.push(':');
        self.out
    }

    pub fn str(&mut self, k: &str, v: &str) -> &mut Self {
        string(self.key(k), v);
        self
    }

    pub fn u64(&mut self, k: &str, v: u64) -> &mut Self {
        let _ = write!(self.key(k), "{v}");
        self
    }

    /// A finite number; NaN and infinities (which JSON cannot carry) are written as `null`.
    pub fn f64(&mut self, k: &str, v: f64) -> &mut Self {
        let out = self.key(k);
        if v.is_finite() {
            let _ = write!(out, "{v}");
        } else {
            out.push_str("null");
        }
        self
    }

    pub fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        self.key(k).push_str(if v { "true" } else { "false" });
        self
    }

    pub fn null(&mut self, k: &str) -> &mut Self {
        self.key(k).push_str("null");
        self
    }

    /// A string member, or `null` for `None`.
    pub fn opt_str(&mut self, k: &str, v: Option<&str>) -> &mut Self {
        match v {
            Some(v) => self.str(k, v),
            None => self.null(k),
        }
    }

    pub fn object(&mut self, k: &str, f: impl FnOnce(&mut Object)) -> &mut Self {
        object(self.key(k), f);
        self
    }

    pub fn array(&mut self, k: &str, f: impl FnOnce(&mut Array)) -> &mut Self {
        array(self.key(k), f);
        self
    }
}

/// The elements of an array being written.
pub struct Array<'a> {
    out: &'a mut String,
    first: bool,
}

impl Array<'_> {
    fn next(&mut self) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.out
    }

    pub fn str(&mut self, v: &str) -> &mut Self {
        string(self.next(), v);
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        let _ = write!(self.next(), "{v}");
        self
    }

    pub fn object(&mut self, f: impl FnOnce(&mut Object)) -> &mut Self {
        object(self.next(), f);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_nested_values() {
        let s = to_object(|o| {
            o.str("a", "x\"y")
                .u64("n", 0)
                .bool("t", true)
                .null("z")
                .opt_str("o", None)
                .f64("f", 0.5)
                .f64("nan", f64::NAN)
                .object("in", |o| {
                    o.u64("k", u64::MAX);
                })
                .array("l", |a| {
                    a.u64(1).str("2").object(|_| {});
                })
                .array("e", |_| {});
        });
        assert_eq!(
            s,
            r#"{"a":"x\"y","n":0,"t":true,"z":null,"o":null,"f":0.5,"nan":null,"in":{"k":18446744073709551615},"l":[1,"2",{}],"e":[]}"#
        );
        assert_eq!(to_object(|_| {}), "{}");
    }

    #[test]
    fn escapes_what_must_be_escaped() {
        let mut s = String::new();
        string(&mut s, "a\"\\\n<\u{1}>&\u{2028}é\u{7f}");
        // DEL needs no escape (RFC 8259 §7: only U+0000–U+001F, quote and backslash must be).
        assert_eq!(
            s,
            "\"a\\\"\\\\\\n\\u003c\\u0001\\u003e\\u0026\\u2028é\u{7f}\""
        );
    }
}
