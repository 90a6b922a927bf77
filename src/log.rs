//! Levelled messages on stderr (start, stop, errors), in the format `--log-format` chose for
//! the access log too, and the UTC clock both write their times with: civil dates computed
//! from `SystemTime` with std alone (no time zone database: the logs are in UTC).
//!
//! - `combined` and `common`: `livevote: [info] listening on …` (a line a person reads;
//!   journald and `docker logs` add their own timestamps);
//! - `json`: `{"time":"2026-12-02T16:40:00.123Z","level":"info","msg":"listening on …"}`.

use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How the access log and these messages are written. Default `combined`. `--log-format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// The NCSA Combined Log Format, then the request's duration in seconds.
    #[default]
    Combined,
    /// The NCSA Common Log Format, exactly.
    Common,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    pub const NAMES: &'static str = "combined, common or json";

    pub fn parse(s: &str) -> Option<LogFormat> {
        match s {
            "combined" => Some(LogFormat::Combined),
            "common" => Some(LogFormat::Common),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Combined => "combined",
            LogFormat::Common => "common",
            LogFormat::Json => "json",
        }
    }
}

/// How serious a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// The process's format for messages (set once at start; `combined` until then).
static FORMAT: AtomicU8 = AtomicU8::new(0);

pub fn set_format(f: LogFormat) {
    FORMAT.store(f as u8, Relaxed);
}

pub fn format() -> LogFormat {
    match FORMAT.load(Relaxed) {
        1 => LogFormat::Common,
        2 => LogFormat::Json,
        _ => LogFormat::Combined,
    }
}

/// One message as a line (without its newline), in `format` at time `now`.
pub fn line(format: LogFormat, now: SystemTime, level: Level, msg: &str) -> String {
    match format {
        LogFormat::Combined | LogFormat::Common => format!("livevote: [{}] {msg}", level.name()),
        LogFormat::Json => crate::json::to_object(|o| {
            o.str("time", &iso8601(now))
                .str("level", level.name())
                .str("msg", msg);
        }),
    }
}

/// Writes one message to stderr now. For threads that may wait on stderr: the accept loop and
/// connections offer their lines to the access log's queue instead (`line` + `AccessLog::log`).
pub fn emit(level: Level, msg: &str) {
    eprintln!("{}", line(format(), SystemTime::now(), level, msg));
}

pub fn info(msg: &str) {
    emit(Level::Info, msg);
}

pub fn warn(msg: &str) {
    emit(Level::Warn, msg);
}

pub fn error(msg: &str) {
    emit(Level::Error, msg);
}

/// Words in a line of the store's start-up report (journal recovery, Redis) that say
/// something was wrong and dealt with: such a line is a warning, the others are information.
const REPORT_WARNINGS: [&str; 6] = [
    "corrupt",
    "torn",
    "missing",
    "not used",
    "not a candidate",
    "before the snapshot",
];

/// One line of the store's start-up report, at the level its content calls for.
pub fn report(line: &str) {
    emit(report_level(line), line);
}

fn report_level(line: &str) -> Level {
    if REPORT_WARNINGS.iter().any(|w| line.contains(w)) {
        Level::Warn
    } else {
        Level::Info
    }
}

/// The proleptic Gregorian date (year, month 1–12, day 1–31) `days` days after 1970-01-01
/// (before it when negative). Howard Hinnant's `civil_from_days`, in 400-year eras.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365], from March 1
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A moment in UTC, to the millisecond.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utc {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
}

impl Utc {
    /// `t` in UTC; a time before 1970 (a clock set wrong) counts back from the epoch.
    pub fn of(t: SystemTime) -> Utc {
        let (secs, millis) = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => (d.as_secs() as i64, d.subsec_millis()),
            Err(e) => {
                let d = e.duration();
                let back = d.as_secs() as i64 + i64::from(d.subsec_nanos() > 0);
                let ms = (Duration::from_secs(d.as_secs() + 1) - d).subsec_millis();
                (-back, if d.subsec_nanos() > 0 { ms } else { 0 })
            }
        };
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        let s = secs.rem_euclid(86_400) as u32;
        Utc {
            year,
            month,
            day,
            hour: s / 3600,
            minute: s / 60 % 60,
            second: s % 60,
            millis,
        }
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The Common Log Format's time, without its brackets: `10/Oct/2000:13:55:36 +0000`.
pub fn clf_time(t: SystemTime) -> String {
    let u = Utc::of(t);
    format!(
        "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
        u.day,
        MONTHS[(u.month - 1) as usize],
        u.year,
        u.hour,
        u.minute,
        u.second
    )
}

/// ISO 8601 / RFC 3339 in UTC, to the millisecond: `2000-10-10T13:55:36.000Z`.
pub fn iso8601(t: SystemTime) -> String {
    let u = Utc::of(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        u.year, u.month, u.day, u.hour, u.minute, u.second, u.millis
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn civil_dates_of_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        // 2000 is a leap year (divisible by 400): Feb 29 exists.
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        assert_eq!(civil_from_days(11_240), (2000, 10, 10));
        // 1900 and 2100 are not leap years.
        assert_eq!(civil_from_days(-25_508), (1900, 3, 1));
        assert_eq!(civil_from_days(-25_509), (1900, 2, 28));
        assert_eq!(civil_from_days(47_540), (2100, 2, 28));
        assert_eq!(civil_from_days(47_541), (2100, 3, 1));
        // The 32-bit time_t limit: 2038-01-19.
        assert_eq!(civil_from_days(24_855), (2038, 1, 19));
        assert_eq!(civil_from_days(-719_468), (0, 3, 1));
    }

    #[test]
    fn civil_from_days_walks_every_day_in_order() {
        // Over 1600-2400: each next day is the next date of the calendar.
        let leap = |y: i64| y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
        let len = |y: i64, m: u32| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let mut prev = civil_from_days(-135_140);
        assert_eq!(prev, (1600, 1, 1));
        for d in -135_139..157_000 {
            let (y, m, day) = prev;
            let next = if day < len(y, m) {
                (y, m, day + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
            let got = civil_from_days(d);
            assert_eq!(got, next, "day {d}");
            prev = got;
        }
    }

    #[test]
    fn clf_and_iso_times() {
        // The Apache documentation's example moment, in UTC.
        assert_eq!(clf_time(at(971_186_136)), "10/Oct/2000:13:55:36 +0000");
        assert_eq!(iso8601(at(971_186_136)), "2000-10-10T13:55:36.000Z");
        assert_eq!(clf_time(at(0)), "01/Jan/1970:00:00:00 +0000");
        let t = at(1_709_164_799) + Duration::from_millis(987);
        assert_eq!(iso8601(t), "2024-02-28T23:59:59.987Z");
        assert_eq!(clf_time(at(1_709_164_800)), "29/Feb/2024:00:00:00 +0000");
        assert_eq!(
            iso8601(UNIX_EPOCH - Duration::from_millis(1500)),
            "1969-12-31T23:59:58.500Z"
        );
    }

    #[test]
    fn messages_carry_their_level() {
        let t = at(971_186_136);
        assert_eq!(
            line(
                LogFormat::Combined,
                t,
                Level::Info,
                "listening on http://x/"
            ),
            "livevote: [info] listening on http://x/"
        );
        assert_eq!(
            line(LogFormat::Json, t, Level::Error, "cannot start: \"x\""),
            r#"{"time":"2000-10-10T13:55:36.000Z","level":"error","msg":"cannot start: \"x\""}"#
        );
        for f in ["combined", "common", "json"] {
            assert_eq!(LogFormat::parse(f).unwrap().name(), f);
        }
        assert_eq!(LogFormat::parse("apache"), None);
        assert_eq!(
            report_level("journal: recovered 3 votes (snapshot at 0 + 3 records) in 1 ms"),
            Level::Info
        );
        assert_eq!(
            report_level("journal: torn record at byte 90 (short): cut off 7 bytes"),
            Level::Warn
        );
    }
}
