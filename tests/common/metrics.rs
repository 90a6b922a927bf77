//! `/metrics` read as a scraper does: the Prometheus text format, one sample a line.

use std::net::SocketAddr;

use super::{get_req_with, Client};

/// `GET /metrics` on a new connection that asks to be closed (while open it counts itself in
/// `livevote_http_connections`): the text, or None if it was not answered `200` (refused at
/// the door, say).
pub fn try_scrape(addr: SocketAddr) -> Option<String> {
    let r = Client::connect(addr)
        .try_call(get_req_with("/metrics", "Connection: close\r\n"))
        .ok()?;
    (r.status == 200).then(|| r.text())
}

/// [`try_scrape`], which must succeed.
pub fn scrape(addr: SocketAddr) -> String {
    try_scrape(addr).expect("GET /metrics answered 200")
}

/// A metric's samples in `text`, summed over their label sets; panics if it has none.
pub fn metric_sum(text: &str, name: &str) -> u64 {
    let samples: Vec<u64> = text
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .map(|l| {
            let value = l.rsplit(' ').next().unwrap_or_default();
            value.parse().unwrap_or_else(|_| panic!("{l}"))
        })
        .collect();
    assert!(!samples.is_empty(), "no {name} in /metrics:\n{text}");
    samples.iter().sum()
}

/// A metric from a fresh scrape, summed over its label sets.
pub fn metric(addr: SocketAddr, name: &str) -> u64 {
    metric_sum(&scrape(addr), name)
}

/// The value of one series (`name{labels}` exactly as the server writes it) in `text`.
pub fn series(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))?
        .parse()
        .ok()
}
