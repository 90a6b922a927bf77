//! The server-rendered vote page: `www/index.template` (built in, or from `--www DIR`) with the current tally filled in, and
//! the security headers every HTML page carries.

use std::io;

use super::presence::Counts;
use super::static_files::StaticFiles;
use super::votes::Snapshot;
use crate::http::response::html_escape;
use crate::http::Response;

/// The Content-Security-Policy of every HTML page. `frame-ancestors 'none'` (with
/// `X-Frame-Options: DENY` for browsers without CSP 2) keeps the pages out of other sites'
/// frames, so a lured click on a hidden frame cannot vote (clickjacking); `script-src 'self'`
/// runs only our own files, never inline script. What the pages need besides: inline `style`
/// attributes (the vote bars' `--share`, rendered for the no-JavaScript page too), the
/// `data:` favicon, and `fetch`, `EventSource` and WebSocket to this origin (CSP 3 `'self'`
/// covers same-origin `ws:`/`wss:`).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
    frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Adds the headers every HTML response carries (one place, so no page forgets them).
pub fn html_headers(resp: Response) -> Response {
    resp.header("X-Frame-Options", "DENY")
        .header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
}

/// The vote page's template, read once at start-up (so a page view costs no disk I/O) and
/// cut there into its literal runs and placeholders, so a page view copies the runs and fills
/// the slots without searching the text again (the search was 13% of a `GET /index`'s server
/// time, `perf record` of `get_index`).
pub struct Template {
    text: String,
    parts: Vec<Part>,
}

/// A piece of a template: literal text (a range of it), or a placeholder to fill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Text(usize, usize),
    Slot(Slot),
}

/// The placeholders a template may hold (`{{NAME}}`); any other `{{…}}` stays as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Title,
    Version,
    Epoch,
    Transport,
    Back,
    Base,
    PresenceVersion,
    PresenceText,
    Candidates,
    Root,
    Page,
    Total,
    State,
    Hidden,
    Mode,
    Results,
    Voted,
    StatusText,
    JoinUrl,
    Qr,
}

impl Slot {
    fn named(name: &str) -> Option<Slot> {
        Some(match name {
            "TITLE" => Slot::Title,
            "VERSION" => Slot::Version,
            "EPOCH" => Slot::Epoch,
            "TRANSPORT" => Slot::Transport,
            "BACK" => Slot::Back,
            "BASE" => Slot::Base,
            "PRESENCE_VERSION" => Slot::PresenceVersion,
            "PRESENCE_TEXT" => Slot::PresenceText,
            "CANDIDATES" => Slot::Candidates,
            "ROOT" => Slot::Root,
            "PAGE" => Slot::Page,
            "TOTAL" => Slot::Total,
            "STATE" => Slot::State,
            "HIDDEN" => Slot::Hidden,
            "MODE" => Slot::Mode,
            "RESULTS" => Slot::Results,
            "VOTED" => Slot::Voted,
            "STATUS_TEXT" => Slot::StatusText,
            "JOIN_URL" => Slot::JoinUrl,
            "QR" => Slot::Qr,
            _ => return None,
        })
    }
}

/// Cuts `text` into parts, left to right: what a slot is filled with is never read as a
/// template, so a candidate whose name looks like a placeholder stays text. An unknown
/// `{{NAME}}`, and a `{{` never closed, are text.
fn parse(text: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut lit = 0;
    let mut at = 0;
    while let Some(open) = text[at..].find("{{").map(|o| at + o) {
        let Some(close) = text[open + 2..].find("}}").map(|c| open + 2 + c) else {
            break;
        };
        if let Some(slot) = Slot::named(&text[open + 2..close]) {
            if lit < open {
                parts.push(Part::Text(lit, open));
            }
            parts.push(Part::Slot(slot));
            lit = close + 2;
        }
        at = close + 2;
    }
    if lit < text.len() {
        parts.push(Part::Text(lit, text.len()));
    }
    parts
}

pub const TEMPLATE_FILE: &str = "index.template";
/// The presenter view's template.
pub const PRESENT_FILE: &str = "present.template";

/// What a page view adds to the tally.
pub struct Page<'a> {
    /// `auto` or the forced transport.
    pub transport: &'a str,
    pub title: &'a str,
    /// `--base-path` (empty: the root): what every link, script and form action starts with.
    pub base: &'a str,
    /// This page's own path and query, where the no-JavaScript forms come back to.
    pub back: &'a str,
    pub presence: &'a Counts,
    pub presence_version: u64,
    /// Where the poll's routes are (`BASE` for the default poll, `BASE/p/ID` for others):
    /// what the page's script and forms ask.
    pub root: &'a str,
    /// The page's own path without its query (`BASE/index`, `BASE/p/ID`).
    pub page: &'a str,
    /// The viewer may see the counts; otherwise none is written (only the total).
    pub visible: bool,
    /// The candidate this viewer's vote stands on (`once`, `change`).
    pub voted: Option<&'a str>,
    /// The poll's `mode` and `results`, for the script.
    pub mode: &'a str,
    pub results: &'a str,
    /// The presenter view's join address, and its QR code as SVG markup (ours, trusted).
    pub join: &'a str,
    pub qr: &'a str,
}

impl Template {
    /// [`TEMPLATE_FILE`] from the static files (built in, or `--www DIR`'s).
    pub fn load(files: &StaticFiles) -> io::Result<Template> {
        Template::load_named(files, TEMPLATE_FILE)
    }

    /// Another template from the static files (`present.template`).
    pub fn load_named(files: &StaticFiles, name: &str) -> io::Result<Template> {
        Ok(Template::new(files.private_text(name)?))
    }

    fn new(text: String) -> Template {
        let parts = parse(&text);
        Template { text, parts }
    }

    /// Renders the page: the template's runs, its slots filled in.
    pub fn render(&self, s: &Snapshot, page: &Page) -> String {
        let mut out = String::with_capacity(self.text.len() + 512 * s.candidates.len());
        for part in &self.parts {
            let slot = match *part {
                Part::Text(from, to) => {
                    out.push_str(&self.text[from..to]);
                    continue;
                }
                Part::Slot(slot) => slot,
            };
            match slot {
                Slot::Title => html_escape(&mut out, page.title),
                Slot::Version => number(&mut out, s.version),
                Slot::Epoch => html_escape(&mut out, &s.epoch),
                Slot::Transport => html_escape(&mut out, page.transport),
                Slot::Back => html_escape(&mut out, page.back),
                Slot::Base => html_escape(&mut out, page.base),
                Slot::PresenceVersion => number(&mut out, page.presence_version),
                Slot::PresenceText => page.presence.write_text(&mut out),
                Slot::Candidates => candidates(&mut out, s, page),
                Slot::Root => html_escape(&mut out, page.root),
                Slot::Page => html_escape(&mut out, page.page),
                Slot::Total => number(&mut out, s.total()),
                Slot::State => out.push_str(if s.closed { "closed" } else { "open" }),
                Slot::Hidden => out.push_str(if page.visible { "false" } else { "true" }),
                Slot::Mode => html_escape(&mut out, page.mode),
                Slot::Results => html_escape(&mut out, page.results),
                Slot::Voted => html_escape(&mut out, page.voted.unwrap_or("")),
                Slot::StatusText => status_text(&mut out, s, page),
                Slot::JoinUrl => html_escape(&mut out, page.join),
                Slot::Qr => out.push_str(page.qr),
            }
        }
        out
    }
}

/// Writes `n` in decimal, without a string of its own.
fn number(out: &mut String, n: u64) {
    use std::fmt::Write;
    let _ = write!(out, "{n}");
}

/// The line under the question: the total, the leader (when the viewer sees the counts), the
/// viewer's own vote and the poll's state.
fn status_text(out: &mut String, s: &Snapshot, page: &Page) {
    let total = s.total();
    number(out, total);
    out.push_str(if total == 1 { " vote" } else { " votes" });
    if page.visible && total > 0 {
        let top = s.candidates.iter().map(|c| c.count).max().unwrap_or(0);
        let leaders = || s.candidates.iter().filter(|c| c.count == top);
        out.push_str(if leaders().count() == 1 {
            " · leading: "
        } else {
            " · tied: "
        });
        // Written in place: a list and its joined copy would be two allocations per page.
        for (k, c) in leaders().enumerate() {
            if k > 0 {
                out.push_str(", ");
            }
            html_escape(out, &c.name);
        }
    }
    if let Some(name) = page
        .voted
        .and_then(|v| s.candidates.iter().find(|c| c.uid == v))
    {
        out.push_str(" · You voted for ");
        html_escape(out, &name.name);
    }
    if s.closed {
        out.push_str(" · This poll is closed");
    } else if !page.visible {
        out.push_str(" · Results are hidden for now");
    }
}

/// The tutorial's `<li id="user_ID">NAME<span>COUNT</span></li>`, with the candidate's share
/// for the bar (`--share`) and a real form, so voting works without JavaScript. A viewer who
/// may not see the counts gets no count (an empty `<span>`) and no share.
fn candidates(out: &mut String, s: &Snapshot, page: &Page) {
    use std::fmt::Write;
    let total: u64 = s.candidates.iter().map(|c| c.count).sum();
    for c in &s.candidates {
        let share = if total == 0 || !page.visible {
            0.0
        } else {
            c.count as f64 * 100.0 / total as f64
        };
        out.push_str("      <li id=\"user_");
        html_escape(out, &c.uid);
        let _ = write!(out, "\" tabindex=\"0\" style=\"--share:{share:.1}%\"");
        if page.voted == Some(c.uid.as_str()) {
            out.push_str(" class=\"mine\"");
        }
        out.push('>');
        html_escape(out, &c.name);
        out.push_str("<span>");
        if page.visible {
            number(out, c.count);
        }
        out.push_str("</span>");
        if page.visible {
            let _ = write!(out, "<small class=\"pct\">{share:.0}%</small>");
        }
        out.push_str("<form method=\"post\" action=\"");
        html_escape(out, page.root);
        out.push_str("/vote\"><input type=\"hidden\" name=\"uid\" value=\"");
        html_escape(out, &c.uid);
        out.push_str("\"><input type=\"hidden\" name=\"back\" value=\"");
        html_escape(out, page.back);
        out.push_str("\"><button type=\"submit\" aria-label=\"Vote for ");
        html_escape(out, &c.name);
        out.push_str("\">Vote</button></form></li>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::votes::Candidate;
    use std::fs;
    use std::path::Path;

    /// What in `html` would need inline script to run (a `<script>` with a body or without
    /// `src`, a `javascript:` URL, an `on…=` handler attribute), if anything.
    fn inline_script(html: &str) -> Option<String> {
        let text = html.to_ascii_lowercase();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("<script") {
            let tag = &rest[i..];
            let open_end = tag.find('>')?;
            if !tag[..open_end].contains(" src=") {
                return Some("<script> without src".into());
            }
            let body_end = tag.find("</script>")?;
            if !tag[open_end + 1..body_end].trim().is_empty() {
                return Some("inline <script> body".into());
            }
            rest = &tag[body_end..];
        }
        if text.contains("javascript:") {
            return Some("javascript: URL".into());
        }
        // ` on` + letters + `=` inside a tag (after its last `<`, before any `>`).
        for (i, _) in text.match_indices(|c: char| c.is_ascii_whitespace()) {
            let after = &text[i + 1..];
            let Some(name) = after.strip_prefix("on") else {
                continue;
            };
            let word = name.bytes().take_while(u8::is_ascii_alphabetic).count();
            let in_tag = text[..i].rfind('<') > text[..i].rfind('>');
            if word > 0 && in_tag && name[word..].trim_start().starts_with('=') {
                return Some(format!("handler attribute on{}", &name[..word]));
            }
        }
        None
    }

    /// `script-src 'self'` forbids inline script: none of our pages may rely on it (it would
    /// silently stop working).
    #[test]
    fn no_page_in_www_has_inline_script() {
        let www = Path::new(env!("CARGO_MANIFEST_DIR")).join("www");
        let mut pages = 0;
        for entry in fs::read_dir(&www).expect("www/ is readable") {
            let path = entry.expect("a www/ entry").path();
            let name = path.display().to_string();
            if !(name.ends_with(".html") || name.ends_with(".template")) {
                continue;
            }
            pages += 1;
            let text = fs::read_to_string(&path).expect("a page is UTF-8");
            assert_eq!(inline_script(&text), None, "{name}");
        }
        assert!(pages >= 3, "found the pages ({pages})");
    }

    #[test]
    fn the_scan_sees_inline_script() {
        for bad in [
            "<button onclick=\"x()\">",
            "<body class=a\n  onLoad = 'x'>",
            "<script>x()</script>",
            "<script src=/a.js>x()</script>",
            "<a href=\"JavaScript:x()\">",
        ] {
            assert!(inline_script(bad).is_some(), "{bad}");
        }
        for good in [
            "<script src=\"/vote.js\" defer></script>",
            "<p>carry on = fine</p>",
            "<p data-x=\"online\">once</p>",
        ] {
            assert_eq!(inline_script(good), None, "{good}");
        }
    }

    #[test]
    fn html_headers_deny_framing() {
        let r = html_headers(Response::html(crate::http::Status::Ok, "x"));
        let mut out = Vec::new();
        r.write_to(&mut out, false, false);
        let text = String::from_utf8(out).expect("ASCII head");
        assert!(text.contains("X-Frame-Options: DENY\r\n"), "{text}");
        assert!(text.contains("frame-ancestors 'none'"), "{text}");
        assert!(
            !CONTENT_SECURITY_POLICY.contains("  "),
            "{CONTENT_SECURITY_POLICY}"
        );
    }

    #[test]
    fn a_template_is_cut_into_runs_and_known_slots() {
        let text = "a{{NOPE}}b{{TITLE}}{{QR}}c{{ {{VERSION";
        assert_eq!(
            parse(text),
            vec![
                Part::Text(0, 10),
                Part::Slot(Slot::Title),
                Part::Slot(Slot::Qr),
                Part::Text(25, text.len()),
            ]
        );
        assert_eq!(parse(""), vec![]);
        assert_eq!(parse("{{TOTAL}}"), vec![Part::Slot(Slot::Total)]);
    }

    #[test]
    fn renders_escaped_and_in_one_pass() {
        let t = Template::new(
            "<b data-v=\"{{VERSION}}\">{{TITLE}}</b><ul>{{CANDIDATES}}</ul>{{NOPE}}{{".into(),
        );
        let s = Snapshot {
            version: 7,
            epoch: "e".into(),
            candidates: vec![Candidate {
                uid: "1".into(),
                name: "<i>{{VERSION}}</i>".into(),
                count: 3,
            }],
            closed: false,
        };
        let counts = Counts([1, 0, 2, 0]);
        let page = Page {
            transport: "ws",
            title: "T&",
            base: "",
            back: "/index?a=1&b=2",
            presence: &counts,
            presence_version: 4,
            root: "",
            page: "/index",
            visible: true,
            voted: None,
            mode: "unlimited",
            results: "always",
            join: "",
            qr: "",
        };
        let html = t.render(&s, &page);
        assert_eq!(
            html,
            "<b data-v=\"7\">T&amp;</b><ul>      <li id=\"user_1\" tabindex=\"0\" style=\"--share:100.0%\">&lt;i&gt;{{VERSION}}&lt;/i&gt;<span>3</span><small class=\"pct\">100%</small><form method=\"post\" action=\"/vote\"><input type=\"hidden\" name=\"uid\" value=\"1\"><input type=\"hidden\" name=\"back\" value=\"/index?a=1&amp;b=2\"><button type=\"submit\" aria-label=\"Vote for &lt;i&gt;{{VERSION}}&lt;/i&gt;\">Vote</button></form></li>\n</ul>{{NOPE}}{{"
        );
        let t = Template::new("{{PRESENCE_TEXT}}|{{PRESENCE_VERSION}}|{{BACK}}".into());
        assert_eq!(
            t.render(&s, &page),
            "3 viewers: 1 WebSocket, 0 SSE, 2 long-polling, 0 polling|4|/index?a=1&amp;b=2"
        );
        // Under a base path, the forms post below it.
        let t = Template::new("{{BASE}}|{{CANDIDATES}}".into());
        let page = Page {
            base: "/polls",
            root: "/polls",
            back: "/polls/index",
            ..page
        };
        let html = t.render(&s, &page);
        assert!(html.starts_with("/polls|"), "{html}");
        assert!(html.contains("action=\"/polls/vote\""), "{html}");
        assert!(
            html.contains("name=\"back\" value=\"/polls/index\""),
            "{html}"
        );
    }
}
