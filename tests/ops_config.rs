//! The binary as an operator runs it (issue 12): from any directory, with the pages built in
//! (strong ETags, `304` on `If-None-Match`); `--www DIR` from disk for development;
//! `LIVEVOTE_*` variables and their precedence; `--version`; exit codes; and the journal under
//! `$STATE_DIRECTORY`.
//!
//! Each server here is the real binary, started with its working directory set to a fresh
//! temporary directory (never the repository) and an environment without `LIVEVOTE_*` and
//! `STATE_DIRECTORY` from the test's own environment, then killed by its handle.

mod common;

use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::Instant;

use common::binary::{Livevote, BIN, START_LIMIT};
use common::tempdir::TempDir;
use common::*;

/// `livevote` in `dir` with `args` and, of the test's environment, nothing `LIVEVOTE_*` or
/// `STATE_DIRECTORY`; then `env` on top.
fn command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(dir).stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if name.starts_with("LIVEVOTE_") || name == "STATE_DIRECTORY" {
            cmd.env_remove(&key);
        }
    }
    cmd.envs(
        env.iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v))),
    );
    cmd
}

/// Runs to the end (`--help`, `--version`, a refusal to start); killed by its handle if it
/// is still running after [`START_LIMIT`] (and the test fails).
fn output(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut child = command(dir, args, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn livevote");
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + START_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll livevote") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("livevote did not exit: {args:?} {env:?}");
        }
        thread::sleep(std::time::Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// A running server in `dir` (the shared helper: killed by its handle and reaped when dropped).
fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Livevote {
    Livevote::start_command(command(dir, args, env))
}

const LOCAL: [&str; 3] = ["--addr", "127.0.0.1:0", "--quiet"];

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    LOCAL.iter().copied().chain(extra.iter().copied()).collect()
}

/// `GET path` with `If-None-Match: tag`.
fn get_if_none_match(addr: SocketAddr, path: &str, tag: &str) -> Response {
    request(
        addr,
        get_req_with(path, &format!("If-None-Match: {tag}\r\n")),
    )
}

/// Asserts `path` is served `200` as `ctype` with `body` and a strong ETag, and `304` with the
/// same ETag (and no body) when asked with it; returns the ETag.
fn assert_cached(addr: SocketAddr, path: &str, ctype: &str, body: &[u8]) -> String {
    let r = get(addr, path);
    assert_eq!(r.status, 200, "{path}: {r:?}");
    r.assert_standard_headers(false);
    assert_eq!(r.header("content-type"), Some(ctype), "{path}");
    assert_eq!(r.body, body, "{path}: the bytes of www/");
    assert_eq!(r.header("cache-control"), Some("no-cache"), "{path}");
    let tag = r.header("etag").expect("an ETag").to_string();
    assert!(
        tag.starts_with('"') && tag.ends_with('"') && tag.len() > 2,
        "a strong ETag: {tag}"
    );
    for ask in [tag.clone(), format!("W/{tag}"), format!("\"nope\", {tag}")] {
        let r = get_if_none_match(addr, path, &ask);
        assert_eq!(r.status, 304, "{path} If-None-Match {ask}: {r:?}");
        assert!(r.body.is_empty(), "{path}: a 304 has no body");
        assert_eq!(r.header("etag"), Some(tag.as_str()), "{path}");
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{path}");
    }
    let r = get_if_none_match(addr, path, "\"something-else\"");
    assert_eq!(r.status, 200, "{path}: another tag gets the file");
    assert_eq!(r.body, body);
    tag
}

#[test]
fn the_binary_serves_its_built_in_pages_from_any_directory() {
    let dir = TempDir::new("ops-embedded");
    // No --www, and nothing in the working directory: the pages come from the binary.
    let server = start(dir.path(), &args(&["--memory"]), &[]);
    let addr = server.addr;
    let repo = www();

    let page = get(addr, "/index");
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_tutorial_li(&page.text(), "1", "野味", 0);
    assert!(
        page.text().contains("/vote.js"),
        "the page loads its script"
    );

    let mut tags = Vec::new();
    for (path, file, ctype) in [
        ("/vote.js", "vote.js", "text/javascript; charset=utf-8"),
        ("/style.css", "style.css", "text/css; charset=utf-8"),
        ("/", "home.html", "text/html; charset=utf-8"),
        ("/chat", "chat.html", "text/html; charset=utf-8"),
    ] {
        let bytes = fs::read(repo.join(file)).unwrap();
        tags.push(assert_cached(addr, path, ctype, &bytes));
    }
    tags.sort();
    tags.dedup();
    assert_eq!(tags.len(), 4, "each file its own ETag: {tags:?}");
    // An HTML page keeps its framing and script policy.
    let home = get(addr, "/");
    assert_eq!(home.header("x-frame-options"), Some("DENY"));
    assert!(home.header("content-security-policy").is_some());
    // The template is built in but not served; nothing else is.
    for private in [
        "/index.template",
        "/Cargo.toml",
        "/../Cargo.toml",
        "/nope.js",
    ] {
        assert_eq!(get(addr, private).status, 404, "{private}");
    }
    // --memory: nothing was written where it runs.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn www_serves_from_disk_with_etags_that_follow_the_file() {
    let dir = TempDir::new("ops-www");
    let www_dir = dir.path().join("site");
    fs::create_dir(&www_dir).unwrap();
    fs::copy(www().join("index.template"), www_dir.join("index.template")).unwrap();
    fs::write(www_dir.join("app.js"), "let a = 1;\n").unwrap();
    let site = www_dir.to_str().unwrap();
    let server = start(dir.path(), &args(&["--memory", "--www", site]), &[]);
    let addr = server.addr;
    let ctype = "text/javascript; charset=utf-8";
    let first = assert_cached(addr, "/app.js", ctype, b"let a = 1;\n");
    assert_eq!(get(addr, "/vote.js").status, 404, "only DIR's files");
    assert_eq!(get(addr, "/index").status, 200, "DIR's template");
    // An edit shows on the next request, with a new tag: the old one no longer matches.
    fs::write(www_dir.join("app.js"), "let a = 2;\n").unwrap();
    let r = get_if_none_match(addr, "/app.js", &first);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, b"let a = 2;\n");
    assert_ne!(r.header("etag"), Some(first.as_str()));
    // The same variable works for it.
    drop(server);
    let server = start(dir.path(), &args(&["--memory"]), &[("LIVEVOTE_WWW", site)]);
    assert_eq!(get(server.addr, "/app.js").body, b"let a = 2;\n");
}

fn names(addr: SocketAddr) -> Vec<String> {
    get(addr, "/votes").json()["candidates"]
        .as_array()
        .iter()
        .map(|c| c["name"].as_str().to_string())
        .collect()
}

#[test]
fn variables_apply_and_flags_override_them() {
    let dir = TempDir::new("ops-env");
    let env = [
        ("LIVEVOTE_CANDIDATE", "a=Alice, b=Bob"),
        ("LIVEVOTE_MAX_BODY", "16"),
        ("LIVEVOTE_MEMORY", "true"),
    ];
    let server = start(dir.path(), &args(&[]), &env);
    assert_eq!(names(server.addr), ["Alice", "Bob"]);
    let long = "uid=a&x=0123456789";
    assert_eq!(
        post(server.addr, "/vote", long).status,
        413,
        "LIVEVOTE_MAX_BODY"
    );
    assert_eq!(post(server.addr, "/vote", "uid=a").status, 200);
    drop(server);

    // The flags win: --candidate replaces the variable's whole list, --max-body its value.
    let server = start(
        dir.path(),
        &args(&["--candidate", "c=Carol", "--max-body", "1000"]),
        &env,
    );
    assert_eq!(names(server.addr), ["Carol"]);
    assert_eq!(post(server.addr, "/vote", "uid=c&x=0123456789").status, 200);
    drop(server);
    // LIVEVOTE_MEMORY: no journal anywhere under the working directory.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_bad_variable_exits_2_naming_it() {
    let dir = TempDir::new("ops-bad-env");
    for (var, value) in [
        ("LIVEVOTE_MAX_BODY", "lots"),
        ("LIVEVOTE_QUIET", "yes"),
        ("LIVEVOTE_ADDR", "localhost"),
        ("LIVEVOTE_CANDIDATE", "a=A,a=B"),
    ] {
        // Neither --quiet nor --addr here: each would override its variable.
        let mut flags = vec!["--memory"];
        if var != "LIVEVOTE_ADDR" {
            flags.extend(["--addr", "127.0.0.1:0"]);
        }
        let o = output(dir.path(), &flags, &[(var, value)]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{var}={value}: {err}");
        assert!(err.contains(var), "{var}={value}: names it: {err}");
        assert!(err.contains("--help"), "points to --help: {err}");
        assert!(o.stdout.is_empty());
    }
    // The flag wins, so its variable is not even read; --help wins over everything.
    let bad = [("LIVEVOTE_MAX_BODY", "lots")];
    let o = output(
        dir.path(),
        &["--max-body", "1", "--addr", "127.0.0.1:1", "--help"],
        &bad,
    );
    assert_eq!(o.status.code(), Some(0));
    let server = start(dir.path(), &args(&["--memory", "--max-body", "100"]), &bad);
    assert_eq!(post(server.addr, "/vote", "uid=1").status, 200);
}

#[test]
fn version_and_help() {
    let dir = TempDir::new("ops-version");
    for flag in ["--version", "-V"] {
        let o = output(dir.path(), &[flag], &[]);
        assert_eq!(o.status.code(), Some(0), "{flag}");
        let out = String::from_utf8(o.stdout).unwrap();
        let want = format!("livevote {}", env!("CARGO_PKG_VERSION"));
        assert!(out.starts_with(&want), "{flag}: {out}");
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(o.stderr.is_empty());
    }
    let o = output(dir.path(), &["--help"], &[]);
    assert_eq!(o.status.code(), Some(0));
    let help = String::from_utf8(o.stdout).unwrap();
    for needle in [
        "--max-body BYTES",
        "env LIVEVOTE_MAX_BODY\n",
        "env LIVEVOTE_QUIET=1",
        "env LIVEVOTE_CANDIDATE (comma-separated)",
        "--version",
        "STATE_DIRECTORY",
        "EXIT STATUS:",
        "  0  ",
        "  1  ",
        "  2  ",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}

/// Votes for candidate 1 `n` times, then the tally's count for it.
fn vote_and_count(addr: SocketAddr, n: usize) -> u64 {
    for _ in 0..n {
        vote(addr, "1");
    }
    let (_, _, counts) = tally(addr);
    counts["1"]
}

#[test]
fn state_directory_holds_the_default_journal() {
    let dir = TempDir::new("ops-state");
    let state = dir.path().join("state");
    fs::create_dir(&state).unwrap();
    let other = dir.path().join("second");
    let listed = format!("{}:{}", state.display(), other.display());
    let env = [("STATE_DIRECTORY", listed.as_str())];
    // No --data, --memory or --redis: the default journal, in the first directory listed.
    let server = start(dir.path(), &args(&[]), &env);
    assert_eq!(vote_and_count(server.addr, 2), 2);
    let journal = state.join("votes.journal");
    assert!(
        fs::metadata(&journal).is_ok_and(|m| m.len() > 0),
        "{journal:?} holds the votes"
    );
    assert!(
        !dir.path().join("data").exists(),
        "not data/ under the working directory"
    );
    assert!(!other.exists());
    drop(server);
    // A restart finds them there.
    let server = start(dir.path(), &args(&[]), &env);
    assert_eq!(vote_and_count(server.addr, 1), 3);
    drop(server);

    // Without it: data/votes.journal under the working directory, as before.
    let plain = TempDir::new("ops-nostate");
    let server = start(plain.path(), &args(&[]), &[]);
    assert_eq!(vote_and_count(server.addr, 1), 1);
    let journal = plain.path().join("data").join("votes.journal");
    assert!(
        fs::metadata(&journal).is_ok_and(|m| m.len() > 0),
        "{journal:?}"
    );
    drop(server);

    // --data still decides.
    let chosen = dir.path().join("chosen.journal");
    let server = start(
        dir.path(),
        &args(&["--data", chosen.to_str().unwrap()]),
        &env,
    );
    assert_eq!(vote_and_count(server.addr, 1), 1);
    assert!(chosen.exists());
    drop(server);
}
