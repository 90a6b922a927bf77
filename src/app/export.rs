//! A poll's results as files: `/p/ID/results.csv` and `/p/ID/results.json`. Pure encoders of a
//! snapshot (tested on bytes), and the route that serves them — `403` while the results are
//! hidden from the caller.

use super::polls::meta::Meta;
use super::votes::Snapshot;
use super::App;
use crate::http::forwarded::Client;
use crate::http::{Request, Response, Status};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

/// `count` as a share of `total`, in percent with one decimal (0 for no votes).
fn percent(count: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        (count as f64 * 1000.0 / total as f64).round() / 10.0
    }
}

/// One CSV field (RFC 4180), safe to open in a spreadsheet: a text that a spreadsheet would
/// run as a formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage return — OWASP's
/// "CSV injection") gets a leading `'`, and a field with a comma, quote or line break is
/// quoted with its quotes doubled.
pub fn csv_field(out: &mut String, s: &str) {
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = formula || s.contains([',', '"', '\n', '\r']) || s.trim() != s;
    if quote {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    for c in s.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    if quote {
        out.push('"');
    }
}

/// The CSV file: a header row, then per option its id, text, count and percentage. Lines end
/// with CRLF (RFC 4180).
pub fn csv(s: &Snapshot) -> String {
    let total = s.total();
    let mut out = String::from("id,option,count,percentage\r\n");
    for c in &s.candidates {
        csv_field(&mut out, &c.uid);
        out.push(',');
        csv_field(&mut out, &c.name);
        out.push_str(&format!(",{},{:.1}\r\n", c.count, percent(c.count, total)));
    }
    out
}

/// The JSON file: the poll, then `options` with each one's `percentage`.
pub fn results_json(m: &Meta, s: &Snapshot) -> String {
    let total = s.total();
    crate::json::to_object(|o| {
        o.str("id", &m.id)
            .str("question", &m.question)
            .str("mode", m.mode.name())
            .str("results", m.results.name())
            .str("state", if s.closed { "closed" } else { "open" })
            .u64("version", s.version)
            .str("epoch", &s.epoch)
            .u64("total", total)
            .array("options", |a| {
                for c in &s.candidates {
                    a.object(|o| {
                        o.str("id", &c.uid)
                            .str("option", &c.name)
                            .u64("count", c.count)
                            .f64("percentage", percent(c.count, total));
                    });
                }
            });
    })
}

impl App {
    #[inline(never)]
    pub fn export(
        &self,
        req: &Request,
        client: &Client,
        poll: &super::polls::Poll,
        format: Format,
    ) -> Response {
        let caller = self.caller(req, client);
        if !poll.visible_to(caller.voter.as_deref(), caller.admin) {
            return Response::error(
                Status::Forbidden,
                "the results are hidden for now: the admin token or cookie is needed",
            )
            .header("Cache-Control", "no-store");
        }
        let s = poll.votes.snapshot();
        let name = format!("{}-results", poll.id());
        let (ctype, body, ext) = match format {
            Format::Csv => ("text/csv; charset=utf-8", csv(&s), "csv"),
            Format::Json => (
                "application/json; charset=utf-8",
                results_json(&poll.meta, &s),
                "json",
            ),
        };
        Response::with_body(Status::Ok, ctype, body)
            .header(
                "Content-Disposition",
                format!("inline; filename=\"{name}.{ext}\""),
            )
            .header("Cache-Control", "no-store")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::votes::Candidate;

    fn snap(c: &[(&str, &str, u64)]) -> Snapshot {
        Snapshot {
            version: 3,
            epoch: "e".into(),
            candidates: c
                .iter()
                .map(|(u, n, k)| Candidate {
                    uid: u.to_string(),
                    name: n.to_string(),
                    count: *k,
                })
                .collect(),
            closed: true,
        }
    }

    #[test]
    fn csv_rows_with_percentages_and_crlf() {
        let s = snap(&[("1", "Pizza", 2), ("2", "Soup", 1)]);
        assert_eq!(
            csv(&s),
            "id,option,count,percentage\r\n1,Pizza,2,66.7\r\n2,Soup,1,33.3\r\n"
        );
        assert_eq!(
            csv(&snap(&[("1", "a", 0)])),
            "id,option,count,percentage\r\n1,a,0,0.0\r\n"
        );
    }

    #[test]
    fn csv_defuses_formulas_and_quotes_what_needs_it() {
        for (text, want) in [
            (
                "=HYPERLINK(\"http://x\",\"y\")",
                "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\"",
            ),
            ("+1", "\"'+1\""),
            ("-2", "\"'-2\""),
            ("@SUM(A1)", "\"'@SUM(A1)\""),
            ("\tx", "\"'\tx\""),
            ("a,b", "\"a,b\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("line\nbreak", "\"line\nbreak\""),
            ("plain é ✓", "plain é ✓"),
        ] {
            let mut out = String::new();
            csv_field(&mut out, text);
            assert_eq!(out, want, "{text:?}");
        }
    }

    #[test]
    fn json_escapes_and_carries_state() {
        let m = Meta {
            id: "p".into(),
            question: "<b>\"Q\"</b>".into(),
            options: vec![],
            mode: Default::default(),
            results: Default::default(),
            created_ms: 0,
        };
        let j = results_json(&m, &snap(&[("1", "</script>", 1)]));
        assert!(
            j.contains("\"question\":\"\\u003cb\\u003e\\\"Q\\\"\\u003c/b\\u003e\""),
            "{j}"
        );
        assert!(j.contains("\"option\":\"\\u003c/script\\u003e\""), "{j}");
        assert!(j.contains("\"state\":\"closed\""), "{j}");
        assert!(j.contains("\"percentage\":100"), "{j}");
    }
}
