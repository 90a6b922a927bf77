//! `/metrics` of the real binary after traffic on every transport (WebSocket, SSE, long-poll,
//! polling, plain HTTP and an error), checked by Prometheus's own linter: `promtool check
//! metrics` (Debian's `prometheus` package; `make promtool-deps` installs it) must exit 0 and
//! say nothing. Also: the `process_*` metrics, the build info, the connection cap, and the
//! delivery-latency histogram on each transport.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::CloseFrame;

use common::binary::Livevote;
use common::metrics::{scrape, series};
use common::*;

/// A hang guard for each wait on the server.
const LIMIT: Duration = Duration::from_secs(10);

/// `promtool check metrics` over `text`: its exit code and everything it printed.
fn promtool_check(text: &str) -> (Option<i32>, String) {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool is not on PATH: run `make promtool-deps` (installs Debian's prometheus \
             package, which has it) before this test"
        ),
        Err(e) => panic!("run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("promtool ran");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), said)
}

/// Waits until the series is at least `n`.
fn wait_series(server: &Livevote, name: &str, n: u64) {
    wait_for(LIMIT, name, || {
        series(&scrape(server.addr), name).filter(|&v| v >= n)
    });
}

#[test]
fn metrics_after_traffic_on_every_transport_pass_promtool() {
    let server = Livevote::start_local(["--memory"]);
    let addr = server.addr;

    // A WebSocket and an event stream, each past its resume.
    let mut ws = ws_connect(addr, "/get_new_vote");
    ws.get_ref().set_read_timeout(Some(LIMIT)).unwrap();
    ws_next_non_presence(&mut ws);
    let mut sse = open_events(addr, "/events", "");
    sse.read_timeout(LIMIT);
    sse.next_non_presence();
    let (v, epoch, _) = tally(addr);

    // One vote reaches both live transports, a long-poll behind it, and a poller.
    vote(addr, "1");
    assert_eq!(ws_next_non_presence(&mut ws)["uid"].as_str(), "1");
    sse.next_non_presence();
    let lp = get(addr, &format!("/get_new_vote?since={v}&epoch={epoch}"));
    assert_eq!(assert_json(&lp, 200)["data"]["uid"].as_str(), "1");
    assert_eq!(get(addr, "/votes?transport=poll&viewer=p1").status, 200);
    assert_eq!(get(addr, "/nowhere").status, 404);
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "done".into(),
    }))
    .unwrap();
    while ws.read().is_ok() {}
    drop(sse);

    for transport in ["ws", "sse", "longpoll"] {
        wait_series(
            &server,
            &format!("livevote_vote_delivery_seconds_count{{transport=\"{transport}\"}}"),
            1,
        );
    }
    wait_series(&server, "livevote_ws_closes_total{status=\"1000\"}", 1);

    let text = scrape(addr);
    let (code, said) = promtool_check(&text);
    assert_eq!(code, Some(0), "promtool check metrics: {said}\n{text}");
    assert_eq!(
        said.trim(),
        "",
        "promtool check metrics found problems\n{text}"
    );

    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "process_threads",
    ] {
        let line = text
            .lines()
            .find(|l| l.split(' ').next() == Some(name))
            .unwrap_or_else(|| panic!("no {name}\n{text}"));
        let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        // CPU time counts in ticks of 10 ms: a fresh server may have used less.
        assert!(
            v > 0.0 || name == "process_cpu_seconds_total" && v == 0.0,
            "{line}"
        );
    }
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        series(
            &text,
            &format!("livevote_build_info{{version=\"{version}\"}}")
        ),
        Some(1)
    );
    assert!(series(&text, "livevote_max_connections").is_some_and(|n| n >= 1));
    // The histogram's +Inf bucket equals its count, per transport.
    for t in ["ws", "sse", "longpoll"] {
        let inf = series(
            &text,
            &format!("livevote_vote_delivery_seconds_bucket{{transport=\"{t}\",le=\"+Inf\"}}"),
        );
        let count = series(
            &text,
            &format!("livevote_vote_delivery_seconds_count{{transport=\"{t}\"}}"),
        );
        assert!(inf.is_some() && inf == count, "{t}: {inf:?} {count:?}");
    }
    assert!(!text.contains("_per_update"), "no lifetime ratios:\n{text}");
}

#[test]
fn promtool_finds_a_lint_problem_when_there_is_one() {
    // The check above is only worth something if promtool does complain about bad text.
    let (code, said) = promtool_check(
        "# HELP livevote_things Things.\n# TYPE livevote_things counter\nlivevote_things 1\n",
    );
    assert!(
        code != Some(0) || !said.trim().is_empty(),
        "{code:?} {said}"
    );
    assert!(said.contains("_total"), "{said}");
}
