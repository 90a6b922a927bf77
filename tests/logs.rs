//! The real binary's stderr in each `--log-format`: access-log lines in the Combined and
//! Common Log Formats (UTC) or as JSON lines, one line for a WebSocket or SSE connection when
//! it ends (its bytes, its duration), and start messages that carry a level.

mod common;

use std::ffi::OsString;
use std::time::Duration;

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::CloseFrame;

use common::binary::Livevote;
use common::*;

const LIMIT: Duration = Duration::from_secs(10);

fn start(format: &str) -> Livevote {
    let mut args: Vec<OsString> = ["--log-format", format].map(OsString::from).to_vec();
    args.extend(base_args());
    Livevote::start(args)
}

/// Port 0, no journal, the repository's pages, and a heartbeat quick enough that a closed
/// event stream is noticed (and logged) within a second: its server only learns of the close
/// when a write fails.
fn base_args() -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "--addr",
        "127.0.0.1:0",
        "--memory",
        "--sse-heartbeat",
        "0.2",
    ]
    .map(OsString::from)
    .to_vec();
    args.push("--www".into());
    args.push(www().into());
    args
}

/// Waits for a stderr line that contains every one of `parts`.
fn line_with(server: &Livevote, parts: &[&str]) -> String {
    wait_for(LIMIT, &format!("a line with {parts:?}"), || {
        server
            .stderr_text()
            .lines()
            .find(|l| parts.iter().all(|p| l.contains(p)))
            .map(str::to_owned)
    })
}

/// One WebSocket and one event stream, each opened and then closed by the client.
fn live_connections(addr: std::net::SocketAddr) {
    let mut ws = ws_connect(addr, "/get_new_vote");
    ws.get_ref().set_read_timeout(Some(LIMIT)).unwrap();
    ws_next_non_presence(&mut ws);
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "done".into(),
    }))
    .unwrap();
    while ws.read().is_ok() {}
    let mut sse = open_events(addr, "/events", "");
    sse.read_timeout(LIMIT);
    sse.next_non_presence();
    drop(sse);
}

/// `[10/Oct/2000:13:55:36 +0000]`: day, month name, year, time, and the UTC offset.
fn is_clf_time(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 28
        && b[0] == b'['
        && b[27] == b']'
        && s[1..3].bytes().all(|c| c.is_ascii_digit())
        && [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ]
        .contains(&&s[4..7])
        && &s[21..] == " +0000]"
}

#[test]
fn combined_is_the_default_with_utc_times_and_levelled_messages() {
    let server = Livevote::start(base_args());
    assert!(
        server
            .banner
            .starts_with("livevote: [info] listening on http://"),
        "{}",
        server.banner
    );
    let addr = server.addr;
    assert_eq!(
        request(
            addr,
            "GET /votes?x=1 HTTP/1.1\r\nHost: localhost\r\nReferer: http://localhost/index\r\n\
             User-Agent: test \"agent\"\r\nConnection: close\r\n\r\n"
        )
        .status,
        200
    );
    let line = line_with(&server, &["\"GET /votes?x=1 HTTP/1.1\" 200 "]);
    // host ident user [time] "request" status bytes "referer" "agent" seconds
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(is_clf_time(&line[14..42]), "{line}");
    assert!(
        line.contains("\" 200 ")
            && line.contains(" \"http://localhost/index\" \"test \\\"agent\\\"\" "),
        "{line}"
    );
    let seconds = line.rsplit(' ').next().unwrap();
    assert!(
        seconds.parse::<f64>().is_ok() && seconds.contains('.'),
        "{line}"
    );

    live_connections(addr);
    let ws = line_with(&server, &["\"GET /get_new_vote HTTP/1.1\" 101 "]);
    let fields: Vec<&str> = ws.split(' ').collect();
    let bytes: u64 = fields[9].parse().unwrap_or_else(|_| panic!("{ws}"));
    assert!(bytes > 50, "the resume, presence and close frames: {ws}");
    let sse = line_with(&server, &["\"GET /events HTTP/1.1\" 200 "]);
    let bytes: u64 = sse.split(' ').nth(9).unwrap().parse().unwrap();
    assert!(bytes > 50, "{sse}");
}

#[test]
fn common_is_exactly_the_common_log_format() {
    let server = start("common");
    assert_eq!(get(server.addr, "/nowhere").status, 404);
    let line = line_with(&server, &["\"GET /nowhere HTTP/1.1\" 404 "]);
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields.len(), 10, "{line}");
    assert_eq!(&fields[..3], ["127.0.0.1", "-", "-"]);
    assert!(
        is_clf_time(&format!("{} {}", fields[3], fields[4])),
        "{line}"
    );
    assert!(fields[9].parse::<u64>().is_ok(), "{line}");
}

#[test]
fn json_lines_for_requests_connections_and_messages() {
    let server = start("json");
    assert!(
        server.banner.starts_with("{\"time\":\"") && server.banner.contains("\"level\":\"info\""),
        "{}",
        server.banner
    );
    assert!(Json::parse(&server.banner).is_ok(), "{}", server.banner);
    assert_eq!(get(server.addr, "/votes").status, 200);
    let line = line_with(&server, &["\"path\":\"/votes\""]);
    let j = Json::parse(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let time = j["time"].as_str();
    assert!(
        time.len() == 24 && time.ends_with('Z') && &time[10..11] == "T",
        "{line}"
    );
    assert_eq!(j["remote"].as_str(), "127.0.0.1");
    assert_eq!(j["method"].as_str(), "GET");
    assert_eq!(j["status"].as_u64(), 200);
    assert!(j["bytes"].as_u64() > 0);
    assert!(j["user_agent"].as_str().starts_with("curl/"), "{line}");
    assert!(
        j["referer"].is_null() && j["connection"].is_null(),
        "{line}"
    );
    assert!(j.has("duration_ms"), "{line}");

    live_connections(server.addr);
    for (kind, status) in [("websocket", 101), ("sse", 200)] {
        let line = line_with(&server, &[&format!("\"connection\":\"{kind}\"")]);
        let j = Json::parse(&line).unwrap();
        assert_eq!(j["status"].as_u64(), status, "{line}");
        assert!(j["bytes"].as_u64() > 50, "{line}");
        assert!(j.has("duration_ms"), "{line}");
    }
}
