//! Property tests of the output encoders against independent parsers: every JSON text the writer
//! makes is read back by `serde_json` to the values that went in, and HTML escaping leaves no
//! markup character and decodes back to the text. Random inputs from a fixed seed, so a failure
//! reproduces.

use livevote::http::response::html_escape;
use livevote::json;
use serde_json::Value;

mod common;

use common::rng::Rng;

/// Random strings for the encoders.
trait Strings {
    fn string(&mut self) -> String;
}

impl Strings for Rng {
    /// A string mixing ASCII (controls and markup included), and characters from every plane.
    fn string(&mut self) -> String {
        let len = self.below(24);
        (0..len)
            .map(|_| match self.below(4) {
                0 => char::from(self.below(0x80) as u8),
                1 => [
                    '"', '\\', '<', '>', '&', '\'', '\u{2028}', '\u{2029}', '\u{7f}', '/',
                ][self.below(10)],
                2 => char::from_u32(self.below(0x800) as u32).unwrap_or('x'),
                _ => char::from_u32(self.below(0x11_0000) as u32).unwrap_or('\u{fffd}'),
            })
            .collect()
    }
}

#[test]
fn json_strings_round_trip_through_an_independent_parser() {
    let mut rng = Rng(0x5eed);
    for _ in 0..20_000 {
        let s = rng.string();
        let mut out = String::new();
        json::string(&mut out, &s);
        let back: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{out:?}: {e}"));
        assert_eq!(back, Value::String(s.clone()), "{out:?}");
        // Safe inside HTML and JavaScript source too.
        assert!(
            !out.contains(['<', '>', '&', '\u{2028}', '\u{2029}']),
            "{out:?}"
        );
        assert!(!out.chars().any(|c| (c as u32) < 0x20), "{out:?}");
    }
}

#[test]
fn json_objects_round_trip_through_an_independent_parser() {
    let mut rng = Rng(7);
    for _ in 0..5_000 {
        let fields: Vec<(String, String, u64, bool)> = (0..rng.below(6))
            .map(|_| (rng.string(), rng.string(), rng.next(), rng.below(2) == 0))
            .collect();
        let text = json::to_object(|o| {
            o.array("list", |a| {
                for (k, v, n, b) in &fields {
                    a.object(|o| {
                        o.str("k", k).str("v", v).u64("n", *n).bool("b", *b);
                    });
                }
            })
            .null("none");
        });
        let back: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let list = back["list"].as_array().expect("list is an array");
        assert_eq!(list.len(), fields.len());
        for (got, (k, v, n, b)) in list.iter().zip(&fields) {
            assert_eq!(got["k"], Value::String(k.clone()));
            assert_eq!(got["v"], Value::String(v.clone()));
            assert_eq!(got["n"].as_u64(), Some(*n));
            assert_eq!(got["b"].as_bool(), Some(*b));
        }
        assert!(back["none"].is_null());
    }
}

/// Decodes the five entities `html_escape` writes (and nothing else: any other `&` fails).
fn html_unescape(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let (c, len) = [
            ("&amp;", '&'),
            ("&lt;", '<'),
            ("&gt;", '>'),
            ("&quot;", '"'),
            ("&#39;", '\''),
        ]
        .iter()
        .find(|(e, _)| rest.starts_with(e))
        .map(|(e, c)| (*c, e.len()))?;
        out.push(c);
        rest = &rest[len..];
    }
    out.push_str(rest);
    Some(out)
}

#[test]
fn html_escaping_leaves_no_markup_and_decodes_back() {
    let mut rng = Rng(99);
    for _ in 0..20_000 {
        let s = rng.string();
        let mut out = String::new();
        html_escape(&mut out, &s);
        assert!(!out.contains(['<', '>', '"', '\'']), "{out:?}");
        assert_eq!(html_unescape(&out).as_deref(), Some(s.as_str()), "{out:?}");
    }
}
