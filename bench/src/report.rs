//! Results: one scenario run's numbers, medians over runs, and their rendering.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Milliseconds (stored as ms).
    Ms,
    /// Microseconds (stored as µs).
    Us,
    PerSec,
    KiB,
    Count,
}

#[derive(Clone, Debug)]
pub struct Metric {
    pub key: &'static str,
    pub value: f64,
    pub unit: Unit,
    /// Also show the worst run (the largest value), for counts that should be zero.
    pub show_worst: bool,
}

pub fn ms(key: &'static str, ns: u64) -> Metric {
    Metric {
        key,
        value: ns as f64 / 1e6,
        unit: Unit::Ms,
        show_worst: false,
    }
}

/// A duration given in seconds, stored and shown in microseconds.
pub fn us(key: &'static str, seconds: f64) -> Metric {
    Metric {
        key,
        value: seconds * 1e6,
        unit: Unit::Us,
        show_worst: false,
    }
}

pub fn rate(key: &'static str, v: f64) -> Metric {
    Metric {
        key,
        value: v,
        unit: Unit::PerSec,
        show_worst: false,
    }
}

pub fn kib(key: &'static str, v: f64) -> Metric {
    Metric {
        key,
        value: v,
        unit: Unit::KiB,
        show_worst: false,
    }
}

pub fn count(key: &'static str, v: f64) -> Metric {
    Metric {
        key,
        value: v,
        unit: Unit::Count,
        show_worst: false,
    }
}

/// A count that should be zero: the worst run is shown beside the median.
pub fn bad(key: &'static str, v: f64) -> Metric {
    Metric {
        key,
        value: v,
        unit: Unit::Count,
        show_worst: true,
    }
}

#[derive(Clone, Debug, Default)]
pub struct RunResult {
    pub metrics: Vec<Metric>,
    pub notes: Vec<String>,
    /// The load generator's CPU seconds during the measured phase.
    pub client_cpu_s: f64,
    /// The server's CPU seconds during the measured phase.
    pub server_cpu_s: f64,
    /// Wall seconds of the measured phase.
    pub wall_s: f64,
    /// CPU seconds the rest of the machine (neither the load generator nor the server) used
    /// during the measured phase: other work sharing the two cores.
    pub other_cpu_s: f64,
}

impl RunResult {
    pub fn get(&self, key: &str) -> Option<f64> {
        self.metrics.iter().find(|m| m.key == key).map(|m| m.value)
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Nearest-rank percentile of sorted samples.
pub fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

pub fn fmt_value(v: f64, unit: Unit) -> String {
    if v.is_nan() {
        return "–".into();
    }
    match unit {
        Unit::Ms if v < 1.0 => format!("{v:.2} ms"),
        Unit::Ms if v < 100.0 => format!("{v:.1} ms"),
        Unit::Ms => format!("{v:.0} ms"),
        Unit::Us => format!("{v:.1} µs"),
        Unit::PerSec => format!("{}/s", thousands(v)),
        Unit::KiB => format!("{v:.1} KiB"),
        Unit::Count => thousands(v),
    }
}

/// Metrics shown with their range over the runs.
const RANGED: [&str; 8] = [
    "p99", "req/s", "msg/s", "RTT p99", "RSS/conn", "held", "CPU/req", "CPU/msg",
];

/// Medians of every metric over the successful runs, in the first run's order.
pub fn summarize(runs: &[RunResult]) -> String {
    let Some(first) = runs.first() else {
        return "no successful run".into();
    };
    let mut parts = Vec::new();
    for m in &first.metrics {
        let vals: Vec<f64> = runs.iter().filter_map(|r| r.get(m.key)).collect();
        let med = median(vals.clone());
        let mut s = format!("{} {}", m.key, fmt_value(med, m.unit));
        // The spread over runs of the numbers that matter most (a shared machine is noisy).
        if runs.len() > 1 && RANGED.contains(&m.key) {
            let lo = vals.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            if lo != hi {
                s.push_str(&format!(
                    " [{}–{}]",
                    fmt_value(lo, m.unit)
                        .trim_end_matches(" ms")
                        .trim_end_matches(" µs")
                        .trim_end_matches("/s")
                        .trim_end_matches(" KiB"),
                    fmt_value(hi, m.unit)
                ));
            }
        }
        if m.show_worst && runs.len() > 1 {
            let worst = vals.iter().cloned().fold(f64::NAN, f64::max);
            if worst != med {
                s.push_str(&format!(" (worst run {})", fmt_value(worst, m.unit)));
            }
        }
        parts.push(s);
    }
    parts.join(" · ")
}
