//! The server-rendered vote page: `www/index.template` with the current tally filled in.

use std::fs;
use std::io;
use std::path::Path;

use super::votes::Snapshot;
use crate::http::response::html_escape;

/// The vote page's template, read once at start-up (so a page view costs no disk I/O).
pub struct Template {
    text: String,
}

pub const TEMPLATE_FILE: &str = "index.template";

impl Template {
    pub fn load(www: &Path) -> io::Result<Template> {
        let path = www.join(TEMPLATE_FILE);
        let text = fs::read_to_string(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(Template { text })
    }

    /// Renders the page. Placeholders are replaced in one left-to-right pass, so a candidate
    /// whose name looks like a placeholder stays text.
    pub fn render(&self, s: &Snapshot, transport: &str, title: &str) -> String {
        let mut out = String::with_capacity(self.text.len() + 96 * s.candidates.len());
        let mut rest = self.text.as_str();
        while let Some(open) = rest.find("{{") {
            out.push_str(&rest[..open]);
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                break;
            };
            match &after[..close] {
                "TITLE" => html_escape(&mut out, title),
                "VERSION" => out.push_str(&s.version.to_string()),
                "EPOCH" => html_escape(&mut out, &s.epoch),
                "TRANSPORT" => html_escape(&mut out, transport),
                "CANDIDATES" => candidates(&mut out, s),
                other => {
                    out.push_str("{{");
                    out.push_str(other);
                    out.push_str("}}");
                }
            }
            rest = &after[close + 2..];
        }
        out.push_str(rest);
        out
    }
}

/// `<li id="user_ID" tabindex="0">NAME<span>COUNT</span></li>` — the tutorial's DOM.
fn candidates(out: &mut String, s: &Snapshot) {
    for c in &s.candidates {
        out.push_str("      <li id=\"user_");
        html_escape(out, &c.uid);
        out.push_str("\" tabindex=\"0\">");
        html_escape(out, &c.name);
        out.push_str("<span>");
        out.push_str(&c.count.to_string());
        out.push_str("</span></li>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::votes::Candidate;

    #[test]
    fn renders_escaped_and_in_one_pass() {
        let t = Template {
            text: "<b data-v=\"{{VERSION}}\">{{TITLE}}</b><ul>{{CANDIDATES}}</ul>{{NOPE}}{{".into(),
        };
        let s = Snapshot {
            version: 7,
            epoch: "e".into(),
            candidates: vec![Candidate {
                uid: "1".into(),
                name: "<i>{{VERSION}}</i>".into(),
                count: 3,
            }],
        };
        let html = t.render(&s, "ws", "T&");
        assert_eq!(
            html,
            "<b data-v=\"7\">T&amp;</b><ul>      <li id=\"user_1\" tabindex=\"0\">&lt;i&gt;{{VERSION}}&lt;/i&gt;<span>3</span></li>\n</ul>{{NOPE}}{{"
        );
    }
}
