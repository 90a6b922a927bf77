//! The `livevote` binary: `--help`, bad flags (exit 2), start-up failures (exit 1), and a real
//! run with candidates from the command line, whose names must come out escaped in JSON and HTML.

mod common;

use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::binary::{Livevote, BIN};
use common::tempdir::TempDir;
use common::*;

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run livevote")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_lists_every_flag_and_exits_0() {
    for flag in ["--help", "-h"] {
        let o = run(&[flag]);
        assert_eq!(o.status.code(), Some(0), "{flag}");
        let out = String::from_utf8(o.stdout.clone()).unwrap();
        for f in [
            "--addr",
            "--candidate",
            "--www",
            "--longpoll-timeout",
            "--help",
            "--quiet",
            "--max-body",
            "--max-headers",
            "--head-timeout",
            "--idle-timeout",
            "--max-connections",
        ] {
            assert!(out.contains(f), "{flag} output lacks {f}:\n{out}");
        }
        assert!(out.contains("127.0.0.1:8080"), "default address documented");
        assert!(o.stderr.is_empty(), "{}", stderr(&o));
    }
    // --help wins wherever it is, and nothing is started.
    let o = run(&["--addr", "127.0.0.1:1", "--help"]);
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn bad_flags_exit_2_with_a_message_on_stderr() {
    for (args, mention) in [
        (&["--nope"][..], "--nope"),
        (&["--addr"], "--addr"),
        (&["--addr", "localhost"], "localhost"),
        (&["--addr", "127.0.0.1:99999"], "--addr"),
        (&["--candidate", "x"], "--candidate"),
        (&["--candidate", "a b=x"], "--candidate"),
        (&["--candidate", "a="], "--candidate"),
        (&["--candidate", "a=x", "--candidate", "a=y"], "twice"),
        (&["--longpoll-timeout", "-1"], "--longpoll-timeout"),
        (&["--longpoll-timeout", "soon"], "--longpoll-timeout"),
        (&["--max-body", "big"], "--max-body"),
        (&["stray"], "stray"),
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains(mention),
            "{args:?}: message lacks {mention:?}: {err}"
        );
        assert!(err.contains("--help"), "{args:?}: points to --help: {err}");
        assert!(o.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn start_up_failures_exit_1() {
    // `--memory`: these runs must not touch a journal on disk.
    let o = run(&[
        "--addr",
        "127.0.0.1:0",
        "--memory",
        "--www",
        "/nonexistent/livevote-www",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot start"), "{}", stderr(&o));

    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = run(&["--addr", &addr, "--memory"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot start"), "{}", stderr(&o));
}

#[test]
fn candidates_from_the_command_line_are_served_escaped() {
    let www = www();
    let www = www.to_str().unwrap();
    // `--memory`: a fresh tally on every run, and no journal left in the repository.
    let server = Livevote::start([
        "--addr",
        "127.0.0.1:0",
        "--memory",
        "--quiet",
        "--www",
        www,
        "--candidate",
        "a=Alice",
        "--candidate",
        "b=Bob <i>",
        "--candidate=c=Say \"hi\" \\ & 'bye'",
        "--longpoll-timeout",
        "0.3",
    ]);
    let addr = server.addr;
    assert_ne!(addr.port(), 0, "{}", server.banner);
    wait_for(Duration::from_secs(10), "the server to answer", || {
        std::net::TcpStream::connect(addr).ok()
    });

    let r = get(addr, "/votes");
    assert_eq!(r.status, 200);
    let raw = r.text();
    assert!(!raw.contains("<i>"), "'<' and '>' escaped in JSON: {raw}");
    let j = r.json();
    let names: Vec<(&str, &str)> = j["candidates"]
        .as_array()
        .iter()
        .map(|c| (c["uid"].as_str(), c["name"].as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("a", "Alice"),
            ("b", "Bob <i>"),
            ("c", "Say \"hi\" \\ & 'bye'")
        ]
    );

    let page = get(addr, "/index").text();
    assert_tutorial_li(&page, "a", "Alice", 0);
    assert_tutorial_li(&page, "b", "Bob &lt;i&gt;", 0);
    assert_tutorial_li(&page, "c", "Say &quot;hi&quot; \\ &amp; &#39;bye&#39;", 0);
    assert!(!page.contains("Bob <i>"), "unescaped name in HTML");
    assert!(
        !page.contains("user_1"),
        "the default candidates are replaced"
    );

    let r = post(addr, "/vote", "uid=b");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["count"].as_u64(), 1);
    assert_eq!(post(addr, "/vote", "uid=1").status, 404);
    assert_tutorial_li(&get(addr, "/index").text(), "b", "Bob &lt;i&gt;", 1);

    // --longpoll-timeout 0.3: a poll with nothing new ends well before the 10 s default.
    let started = Instant::now();
    let j = get(addr, "/get_new_vote").json();
    assert!(!j["status"].as_bool());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "--longpoll-timeout ignored"
    );
}

#[test]
fn addr_flag_picks_the_port_and_defaults_apply() {
    // A port that was free a moment ago (the tiny race is acceptable in a test).
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    // Everything default but the journal, which goes to a scratch directory rather than the
    // repository's `data/` (and so starts empty on every run).
    let dir = TempDir::new("cli-defaults");
    let journal = dir.journal();
    let server = Livevote::start(["--addr", &addr, "--data", journal.to_str().unwrap()]);
    assert_eq!(server.addr.to_string(), addr, "{}", server.banner);
    // The pages built into the binary (no --www) and the tutorial's candidates.
    let r = get(server.addr, "/votes");
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["candidates"][0]["name"].as_str(), "野味");
    assert_eq!(j["candidates"][1]["name"].as_str(), "海龙");
    assert_eq!(get(server.addr, "/vote.js").status, 200);
    // Without --quiet, each request is logged on stderr (drained by the reader thread).
    assert_eq!(get(server.addr, "/index").status, 200);
    drop(server);
    drop(dir);
}
