//! What a poll is, apart from its counts: its id, question, options, voter mode and who sees
//! the results — the rules for each (they come from the network now), and the small text file
//! a journaled poll keeps them in. Pure: no I/O.

use std::fmt;

use crate::app::votes::Mode;
use crate::http::form;

/// Longest question, in characters.
pub const MAX_QUESTION: usize = 300;
/// Longest option text, in characters.
pub const MAX_OPTION: usize = 100;
/// Fewest and most options a poll has.
pub const MIN_OPTIONS: usize = 2;
pub const MAX_OPTIONS: usize = 20;
/// The seed's poll: `/index`, `/vote`, `/votes`… are its routes; it cannot be deleted.
pub const DEFAULT_ID: &str = "default";
/// Starts a poll's metadata file; the number is its format.
const MAGIC: &str = "livevote-poll 1";

/// Who sees a poll's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Results {
    /// Everyone, always (the seed's rule).
    #[default]
    Always,
    /// A voter once they have voted (and the presenter).
    AfterVote,
    /// Nobody until the poll is closed (but the presenter).
    AfterClose,
}

impl Results {
    pub const ALL: [Results; 3] = [Results::Always, Results::AfterVote, Results::AfterClose];

    pub fn name(self) -> &'static str {
        match self {
            Results::Always => "always",
            Results::AfterVote => "after_vote",
            Results::AfterClose => "after_close",
        }
    }

    pub fn parse(s: &str) -> Option<Results> {
        Results::ALL.into_iter().find(|r| r.name() == s)
    }

    /// Whether a viewer sees the counts now: `closed` is the poll's state, `voted` whether
    /// this viewer has voted in it, `presenter` whether they hold the admin's cookie or token.
    pub fn visible(self, closed: bool, voted: bool, presenter: bool) -> bool {
        presenter
            || match self {
                Results::Always => true,
                Results::AfterVote => voted || closed,
                Results::AfterClose => closed,
            }
    }
}

/// A mode by its API name.
pub fn parse_mode(s: &str) -> Option<Mode> {
    Mode::ALL.into_iter().find(|m| m.name() == s)
}

/// A poll's fixed description: made once, when the poll is created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    pub id: String,
    pub question: String,
    /// (option id, text): ids `1`…`N` in the given order (the default poll's come from
    /// `--candidate`).
    pub options: Vec<(String, String)>,
    pub mode: Mode,
    pub results: Results,
    /// When it was created (ms since the Unix epoch).
    pub created_ms: u64,
}

/// Why a poll cannot be made as asked: the API's `400` (or `409`) with this message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetaError {
    BadId,
    Question(&'static str),
    Options(String),
    Mode(String),
    Results(String),
    /// A metadata file that is not one of ours.
    File(String),
}

impl fmt::Display for MetaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaError::BadId => write!(f, "{}", crate::ids::POLL.describe()),
            MetaError::Question(why) => write!(f, "question {why}"),
            MetaError::Options(why) => write!(f, "options: {why}"),
            MetaError::Mode(m) => write!(f, "unknown mode '{m}' (use unlimited, once or change)"),
            MetaError::Results(r) => write!(
                f,
                "unknown results '{r}' (use always, after_vote or after_close)"
            ),
            MetaError::File(why) => write!(f, "poll file: {why}"),
        }
    }
}

impl std::error::Error for MetaError {}

/// A question or option text: trimmed, 1..=`max` characters, no control characters (a line
/// break or a NUL has no place in a poll's one-line texts, and would only hide things).
fn text(s: &str, max: usize) -> Result<String, &'static str> {
    let t = s.trim();
    if t.is_empty() {
        return Err("must not be empty");
    }
    if t.chars().count() > max {
        return Err("is too long");
    }
    if t.chars().any(char::is_control) {
        return Err("must not contain control characters");
    }
    Ok(t.to_string())
}

/// A question (`--question`, the API's `question`), checked and trimmed.
pub fn question(s: &str) -> Result<String, MetaError> {
    text(s, MAX_QUESTION).map_err(|why| match why {
        "is too long" => MetaError::Question("is longer than 300 characters"),
        why => MetaError::Question(why),
    })
}

impl Meta {
    /// A new poll as the API's form asks for it: `id` (made up by the caller when absent),
    /// `question`, every `option` in order, `mode` and `results` (defaults: unlimited,
    /// always).
    pub fn from_form(
        id: &str,
        fields: &[crate::http::form::Pair<'_>],
        created_ms: u64,
    ) -> Result<Meta, MetaError> {
        if !crate::ids::POLL.accepts(id) {
            return Err(MetaError::BadId);
        }
        let question = question(form::get(fields, "question").unwrap_or(""))?;
        let texts: Vec<&str> = fields
            .iter()
            .filter(|(k, _)| k == "option")
            .map(|(_, v)| v.as_ref())
            .collect();
        if !(MIN_OPTIONS..=MAX_OPTIONS).contains(&texts.len()) {
            return Err(MetaError::Options(format!(
                "give {MIN_OPTIONS} to {MAX_OPTIONS} 'option' fields, not {}",
                texts.len()
            )));
        }
        let mut options = Vec::with_capacity(texts.len());
        for (k, t) in texts.iter().enumerate() {
            let t = text(t, MAX_OPTION).map_err(|why| {
                MetaError::Options(match why {
                    "is too long" => {
                        format!("option {} is longer than {MAX_OPTION} characters", k + 1)
                    }
                    why => format!("option {} {why}", k + 1),
                })
            })?;
            options.push(((k + 1).to_string(), t));
        }
        let mode = match form::get(fields, "mode") {
            None | Some("") => Mode::Unlimited,
            Some(m) => parse_mode(m).ok_or_else(|| MetaError::Mode(m.to_string()))?,
        };
        let results = match form::get(fields, "results") {
            None | Some("") => Results::Always,
            Some(r) => Results::parse(r).ok_or_else(|| MetaError::Results(r.to_string()))?,
        };
        Ok(Meta {
            id: id.to_string(),
            question,
            options,
            mode,
            results,
            created_ms,
        })
    }

    /// The metadata file: a first line naming the format, then one form-encoded line (the
    /// API's own fields, so one parser reads both).
    pub fn encode(&self) -> String {
        let mut line = String::new();
        let mut field = |k: &str, v: &str| {
            if !line.is_empty() {
                line.push('&');
            }
            line.push_str(k);
            line.push('=');
            encode_component(v, &mut line);
        };
        field("id", &self.id);
        field("question", &self.question);
        for (_, text) in &self.options {
            field("option", text);
        }
        field("mode", self.mode.name());
        field("results", self.results.name());
        field("created", &self.created_ms.to_string());
        format!("{MAGIC}\n{line}\n")
    }

    /// Reads [`Meta::encode`]'s file back.
    pub fn decode(file: &str) -> Result<Meta, MetaError> {
        let bad = |why: &str| MetaError::File(why.to_string());
        let mut lines = file.lines();
        if lines.next() != Some(MAGIC) {
            return Err(bad("not a livevote poll file (or a newer format)"));
        }
        let fields =
            form::parse(lines.next().unwrap_or("").as_bytes()).map_err(|e| bad(&e.to_string()))?;
        let created = form::get(&fields, "created")
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad("no creation time"))?;
        let id = form::get(&fields, "id").unwrap_or("");
        Meta::from_form(id, &fields, created)
    }
}

/// Percent-encodes `v` for a form line: everything but the unreserved bytes.
fn encode_component(v: &str, out: &mut String) {
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> crate::http::form::Pairs<'static> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string().into(), v.to_string().into()))
            .collect()
    }

    #[test]
    fn a_poll_from_the_form_numbers_its_options_in_order() {
        let f = fields(&[
            ("question", "  Lunch?  "),
            ("option", "Pizza"),
            ("option", "Soup & bread"),
            ("mode", "change"),
            ("results", "after_vote"),
        ]);
        let m = Meta::from_form("lunch", &f, 7).unwrap();
        assert_eq!(m.question, "Lunch?");
        assert_eq!(
            m.options,
            vec![
                ("1".to_string(), "Pizza".to_string()),
                ("2".to_string(), "Soup & bread".to_string())
            ]
        );
        assert_eq!((m.mode, m.results), (Mode::Change, Results::AfterVote));
    }

    #[test]
    fn the_limits_are_refused_with_what_is_wrong() {
        let ok = [("question", "Q"), ("option", "a"), ("option", "b")];
        assert!(Meta::from_form("p", &fields(&ok), 0).is_ok());
        let long_q = "é".repeat(MAX_QUESTION + 1);
        let exact_q = "é".repeat(MAX_QUESTION);
        let long_o = "x".repeat(MAX_OPTION + 1);
        let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
            ("p", vec![("option", "a"), ("option", "b")]),
            (
                "p",
                vec![("question", &long_q), ("option", "a"), ("option", "b")],
            ),
            ("p", vec![("question", "Q"), ("option", "a")]),
            (
                "p",
                vec![("question", "Q"), ("option", "a"), ("option", &long_o)],
            ),
            (
                "p",
                vec![("question", "Q"), ("option", "a"), ("option", " ")],
            ),
            (
                "p",
                vec![("question", "Q\nX"), ("option", "a"), ("option", "b")],
            ),
            (
                "p",
                vec![
                    ("question", "Q"),
                    ("option", "a"),
                    ("option", "b"),
                    ("mode", "twice"),
                ],
            ),
            (
                "p",
                vec![
                    ("question", "Q"),
                    ("option", "a"),
                    ("option", "b"),
                    ("results", "x"),
                ],
            ),
            ("a b", ok.to_vec()),
            ("", ok.to_vec()),
        ];
        for (id, f) in cases {
            assert!(Meta::from_form(id, &fields(&f), 0).is_err(), "{id:?} {f:?}");
        }
        let many: Vec<(&str, &str)> = std::iter::once(("question", "Q"))
            .chain(std::iter::repeat_n(("option", "o"), MAX_OPTIONS + 1))
            .collect();
        assert!(Meta::from_form("p", &fields(&many), 0).is_err());
        let at_limit = [
            ("question", exact_q.as_str()),
            ("option", "a"),
            ("option", "b"),
        ];
        assert!(Meta::from_form("p", &fields(&at_limit), 0).is_ok());
    }

    #[test]
    fn the_file_round_trips_hostile_text() {
        let f = fields(&[
            (
                "question",
                "<script>alert('x')</script> & \"q\" =1+1 ? 100%",
            ),
            ("option", "=HYPERLINK(\"http://x\")"),
            ("option", "Ünïcödé ✓"),
            ("mode", "once"),
            ("results", "after_close"),
        ]);
        let m = Meta::from_form("p-1", &f, 1_700_000_000_000).unwrap();
        let file = m.encode();
        assert_eq!(file.lines().count(), 2, "{file}");
        assert_eq!(Meta::decode(&file).unwrap(), m);
        assert!(Meta::decode("livevote-poll 9\nid=x").is_err());
        assert!(Meta::decode(&file.replace("created=", "made=")).is_err());
    }

    #[test]
    fn visibility_follows_the_rule_state_and_voter() {
        use Results::*;
        for (r, closed, voted, presenter, sees) in [
            (Always, false, false, false, true),
            (AfterVote, false, false, false, false),
            (AfterVote, false, true, false, true),
            (AfterVote, true, false, false, true),
            (AfterClose, false, true, false, false),
            (AfterClose, true, false, false, true),
            (AfterClose, false, false, true, true),
        ] {
            assert_eq!(r.visible(closed, voted, presenter), sees, "{r:?}");
        }
    }
}
