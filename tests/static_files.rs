//! Static files from `www/`: the right bytes with the right `Content-Type`, and nothing from
//! outside `www/` (or private inside it), however the path is spelled.

mod common;

use std::fs;

use common::tempdir::TempDir;
use common::*;

#[test]
fn pages_scripts_and_styles_are_served_with_their_content_type() {
    let addr = start_default();
    let www = www();
    for (path, file, ctype) in [
        ("/", "home.html", "text/html; charset=utf-8"),
        ("/vote.js", "vote.js", "text/javascript; charset=utf-8"),
        ("/chat.js", "chat.js", "text/javascript; charset=utf-8"),
        ("/style.css", "style.css", "text/css; charset=utf-8"),
        ("/chat.html", "chat.html", "text/html; charset=utf-8"),
        ("/chat", "chat.html", "text/html; charset=utf-8"),
        ("/home.html", "home.html", "text/html; charset=utf-8"),
        ("/style.css?v=2", "style.css", "text/css; charset=utf-8"),
        ("/%76ote.js", "vote.js", "text/javascript; charset=utf-8"),
    ] {
        let r = get(addr, path);
        assert_eq!(r.status, 200, "{path}");
        r.assert_standard_headers(false);
        assert_eq!(r.header("content-type"), Some(ctype), "{path}");
        let want = fs::read(www.join(file)).unwrap();
        assert_eq!(r.body, want, "{path} serves {file}");
    }
}

#[test]
fn the_landing_page_links_to_every_demo() {
    let addr = start_default();
    let page = get(addr, "/").text();
    // Relative, so that they resolve under a --base-path too.
    for link in [
        "index?transport=poll",
        "index?transport=longpoll",
        "index?transport=ws",
        "chat",
    ] {
        assert!(page.contains(&format!("href=\"{link}\"")), "{link}");
    }
}

#[test]
fn the_pages_load_nothing_from_other_hosts() {
    let addr = start_default();
    for path in ["/", "/index", "/chat", "/vote.js", "/chat.js", "/style.css"] {
        let body = get(addr, path).text();
        for needle in [
            "src=\"http",
            "href=\"http",
            "src=\"//",
            "href=\"//",
            "@import url(http",
        ] {
            assert!(
                !body.contains(needle),
                "{path} loads from elsewhere: {needle}"
            );
        }
    }
}

#[test]
fn nothing_outside_www_or_private_inside_it_is_served() {
    let addr = start_default();
    let cargo_toml =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    assert!(cargo_toml.contains("[package]"));
    for target in [
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/%2E%2E/Cargo.toml",
        "/..%2fCargo.toml",
        "/..%2FCargo.toml",
        "/.%2e/Cargo.toml",
        "/%2e%2e%2fCargo.toml",
        "/chat/../../Cargo.toml",
        "/www/../../Cargo.toml",
        "/..\\Cargo.toml",
        "/..%5cCargo.toml",
        "/%252e%252e/Cargo.toml",
        "/%c0%ae%c0%ae/Cargo.toml",
        "/Cargo.toml",
        "/src/main.rs",
        "/../src/main.rs",
        "/index.template",
        "/%69ndex.template",
        "/index.template%00.html",
        "/vote.js%00",
        "/vote.js/../index.template",
        "/.gitignore",
        "/%2fetc%2fpasswd",
        "//etc/passwd",
        "/../../../../../../etc/passwd",
        "/C:/Windows/win.ini",
        "http://localhost/../Cargo.toml",
    ] {
        let r = request(
            addr,
            format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        );
        // A path that does not decode to UTF-8 (the overlong `%c0%ae`) is malformed: 400.
        let expected = if target.contains("%c0") { 400 } else { 404 };
        assert_eq!(r.status, expected, "{target}: {:?}", r.text());
        let body = String::from_utf8_lossy(&r.body);
        assert!(!body.contains("[package]"), "{target} leaked Cargo.toml");
        assert!(!body.contains("root:"), "{target} leaked /etc/passwd");
        assert!(
            !body.contains("{{CANDIDATES}}"),
            "{target} leaked the template"
        );
    }
    // The server is still fine, and the real files are still served.
    assert_eq!(get(addr, "/vote.js").status, 200);
}

#[test]
fn a_directory_is_not_a_file() {
    let addr = start_default();
    for target in ["/.", "/%2e", "/www", "/chat/"] {
        let r = get(addr, target);
        assert_eq!(r.status, 404, "{target}");
    }
}

#[test]
fn www_can_be_elsewhere_and_its_absence_is_a_startup_error() {
    let tmp = TempDir::new("livevote-www");
    let dir = tmp.path();
    fs::copy(www().join("index.template"), dir.join("index.template")).unwrap();
    fs::write(dir.join("hello.txt"), "hi").unwrap();
    fs::write(dir.join("data.json"), "{}").unwrap();
    let d = dir.to_path_buf();
    let addr = start(move |c| c.www = Some(d));
    let r = get(addr, "/hello.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.body, b"hi");
    assert_eq!(
        get(addr, "/data.json").header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(get(addr, "/vote.js").status, 404, "the old www is not used");
    assert_eq!(get(addr, "/index").status, 200);
    drop(tmp);

    let mut cfg = test_config();
    cfg.www = Some(std::env::temp_dir().join("livevote-no-such-dir-xyz"));
    assert!(livevote::server::Server::bind(cfg).is_err());
}
