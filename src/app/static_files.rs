//! The pages, scripts and styles of `www/`: built into the binary (the default, so the binary
//! runs from any directory), or read from a directory on disk with `--www DIR` (development:
//! an edit shows on the next request). Each file is served with a strong `ETag` (a hash of its
//! bytes) and answers `If-None-Match` with `304`.
//!
//! Never anything else: the request path is decoded, every segment is checked (no `..`, no
//! hidden files, no separators), and on disk the resolved path must still lie inside the
//! canonical root (a symlink pointing out is refused too).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::pages;
use crate::http::{Request, Response, Status};

// `EMBEDDED`: every file of `www/`, listed by build.rs at build time.
include!(concat!(env!("OUT_DIR"), "/www_files.rs"));

/// How browsers may cache a file: keep it, but ask again before each use (`If-None-Match`,
/// answered `304` while it is unchanged). The URLs carry no version, so a longer lifetime
/// would leave an old script running against a new server after an upgrade.
pub const CACHE_CONTROL: &str = "no-cache";

/// Content type by extension; a file whose extension is not listed is not served (templates
/// and anything unexpected stay private).
pub fn content_type(path: &Path) -> Option<&'static str> {
    Some(match path.extension()?.to_str()? {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json; charset=utf-8",
        "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        _ => return None,
    })
}

/// One servable file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    pub content_type: &'static str,
    pub bytes: Cow<'static, [u8]>,
    /// A strong validator: `"` + the SHA-1 of the bytes in hex + `"`.
    pub etag: String,
}

/// Where the files come from.
enum Source {
    /// `--www DIR`, canonicalised once so every check compares real paths.
    Disk(PathBuf),
    /// Built in: path relative to `www/` → (bytes, ETag computed once).
    Embedded(HashMap<&'static str, (&'static [u8], String)>),
}

/// The static files: the embedded ones or a directory's.
pub struct StaticFiles {
    source: Source,
}

/// The strong ETag of `bytes`.
pub fn etag_of(bytes: &[u8]) -> String {
    format!("\"{}\"", sha1_smol::Sha1::from(bytes).digest())
}

/// The path relative to the root if every segment of `path_in` may be served: it starts with
/// `/`, has no empty segment (`/a//b`, a trailing `/`), none hidden or with a separator.
fn relative(path_in: &str) -> Option<&str> {
    let rest = path_in.strip_prefix('/')?;
    rest.split('/')
        .all(|seg| !seg.is_empty() && !seg.starts_with('.') && !seg.contains(['\\', '\0', ':']))
        .then_some(rest)
}

impl StaticFiles {
    /// The files built into the binary.
    pub fn embedded() -> Self {
        let files = EMBEDDED
            .iter()
            .map(|&(path, bytes)| (path, (bytes, etag_of(bytes))))
            .collect();
        StaticFiles {
            source: Source::Embedded(files),
        }
    }

    /// The files of `root` on disk; `root` must exist.
    pub fn from_dir(root: &Path) -> io::Result<Self> {
        Ok(StaticFiles {
            source: Source::Disk(fs::canonicalize(root)?),
        })
    }

    /// `Some(dir)`: [`from_dir`](Self::from_dir); `None`: [`embedded`](Self::embedded).
    pub fn new(www: Option<&Path>) -> io::Result<Self> {
        match www {
            Some(dir) => StaticFiles::from_dir(dir),
            None => Ok(StaticFiles::embedded()),
        }
    }

    /// The directory served from, or None for the embedded files.
    pub fn root(&self) -> Option<&Path> {
        match &self.source {
            Source::Disk(root) => Some(root),
            Source::Embedded(_) => None,
        }
    }

    /// A file by its name relative to the root, servable or not (the page template): its text.
    pub fn private_text(&self, name: &str) -> io::Result<String> {
        match &self.source {
            Source::Disk(root) => {
                let path = root.join(name);
                fs::read_to_string(&path)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
            }
            Source::Embedded(files) => {
                let (bytes, _) = files.get(name).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("www/{name} is not built in"),
                    )
                })?;
                String::from_utf8(bytes.to_vec()).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("www/{name}: not UTF-8"))
                })
            }
        }
    }

    /// Resolves a decoded request path to a servable file on disk, or None.
    fn resolve(root: &Path, rel: &str) -> Option<PathBuf> {
        let path = root.join(rel);
        let real = fs::canonicalize(&path).ok()?;
        (real.starts_with(root) && real.is_file()).then_some(real)
    }

    /// A servable file. `path` is already percent-decoded.
    pub fn read(&self, path: &str) -> Option<File> {
        let rel = relative(path)?;
        let content_type = content_type(Path::new(rel))?;
        match &self.source {
            Source::Disk(root) => {
                let bytes = fs::read(StaticFiles::resolve(root, rel)?).ok()?;
                Some(File {
                    content_type,
                    etag: etag_of(&bytes),
                    bytes: Cow::Owned(bytes),
                })
            }
            Source::Embedded(files) => {
                let (bytes, etag) = files.get(rel)?;
                Some(File {
                    content_type,
                    bytes: Cow::Borrowed(bytes),
                    etag: etag.clone(),
                })
            }
        }
    }

    /// The response to a `GET` or `HEAD` of `path`: the file with its `ETag`, or `304` when the
    /// request's `If-None-Match` names it; None when there is no such servable file.
    pub fn respond(&self, req: &Request, path: &str) -> Option<Response> {
        let file = self.read(path)?;
        let fresh = req
            .header_values("if-none-match")
            .flat_map(|v| v.split(','))
            .map(str::trim)
            // RFC 9110 §13.1.2: If-None-Match uses the weak comparison.
            .map(|t| t.strip_prefix("W/").unwrap_or(t))
            .any(|t| t == file.etag || t == "*");
        let resp = if fresh {
            Response::new(Status::NotModified)
        } else {
            Response::with_body(Status::Ok, file.content_type, file.bytes.into_owned())
        };
        let resp = resp
            .header("ETag", file.etag)
            .header("Cache-Control", CACHE_CONTROL)
            .header("X-Content-Type-Options", "nosniff");
        Some(if file.content_type.starts_with("text/html") {
            pages::html_headers(resp)
        } else {
            resp
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{BodyFraming, Version};

    fn body(f: File) -> (&'static str, Vec<u8>) {
        (f.content_type, f.bytes.into_owned())
    }

    #[test]
    fn stays_inside_the_root() {
        let dir = std::env::temp_dir().join(format!("livevote-static-{}", std::process::id()));
        let www = dir.join("www");
        fs::create_dir_all(www.join("sub")).unwrap();
        fs::write(www.join("a.js"), "x").unwrap();
        fs::write(www.join("sub/b.css"), "y").unwrap();
        fs::write(www.join("page.template"), "t").unwrap();
        fs::write(www.join(".hidden.txt"), "h").unwrap();
        fs::write(dir.join("secret.txt"), "s").unwrap();
        let s = StaticFiles::new(Some(&www)).unwrap();
        assert_eq!(
            body(s.read("/a.js").unwrap()),
            ("text/javascript; charset=utf-8", b"x".to_vec())
        );
        assert!(s.read("/sub/b.css").is_some());
        assert_eq!(s.private_text("page.template").unwrap(), "t");
        for bad in [
            "/../secret.txt",
            "/sub/../../secret.txt",
            "/.hidden.txt",
            "/page.template",
            "/sub",
            "/sub/",
            "/a.js/",
            "//a.js",
            "/missing.js",
            "/a.js\0",
            "a.js",
        ] {
            assert!(s.read(bad).is_none(), "{bad}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    /// The build script lists `www/`; the embedded set is exactly the directory's files (so a
    /// file added to `www/` cannot be missing from the binary), byte for byte.
    #[test]
    fn the_embedded_files_are_exactly_www() {
        fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
            for entry in fs::read_dir(dir).unwrap() {
                let entry = entry.unwrap();
                let name = entry.file_name().into_string().unwrap();
                let kind = entry.file_type().unwrap();
                if name.starts_with('.') {
                    continue;
                }
                if kind.is_dir() {
                    walk(&entry.path(), &format!("{prefix}{name}/"), out);
                } else if kind.is_file() {
                    out.push(format!("{prefix}{name}"));
                }
            }
        }
        let www = Path::new(env!("CARGO_MANIFEST_DIR")).join("www");
        let mut on_disk = Vec::new();
        walk(&www, "", &mut on_disk);
        on_disk.sort();
        let embedded: Vec<String> = EMBEDDED.iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(embedded, on_disk);
        for (path, bytes) in EMBEDDED {
            assert_eq!(*bytes, fs::read(www.join(path)).unwrap(), "{path}");
        }
        for page in [
            "index.template",
            "home.html",
            "chat.html",
            "vote.js",
            "style.css",
        ] {
            assert!(on_disk.iter().any(|p| p == page), "{page}");
        }
        // Served the same way from either source.
        let (mem, disk) = (
            StaticFiles::embedded(),
            StaticFiles::from_dir(&www).unwrap(),
        );
        for path in [
            "/home.html",
            "/vote.js",
            "/style.css",
            "/index.template",
            "/nope.js",
        ] {
            assert_eq!(mem.read(path), disk.read(path), "{path}");
        }
        assert_eq!(
            mem.private_text("index.template").unwrap(),
            disk.private_text("index.template").unwrap()
        );
        assert!(mem.private_text("nope.template").is_err());
        assert_eq!(mem.root(), None);
    }

    fn get(if_none_match: &[&str]) -> Request {
        Request {
            method: "GET".into(),
            target: "/vote.js".into(),
            path: "/vote.js".into(),
            query: None,
            version: Version::Http11,
            headers: if_none_match
                .iter()
                .map(|v| ("If-None-Match", *v))
                .collect(),
            body: BodyFraming::None,
        }
    }

    #[test]
    fn a_strong_etag_and_304_when_it_matches() {
        let s = StaticFiles::embedded();
        let r = s.respond(&get(&[]), "/vote.js").unwrap();
        assert_eq!(r.status, Status::Ok);
        let etag = r
            .headers
            .iter()
            .find(|(n, _)| *n == "ETag")
            .map(|(_, v)| v.clone())
            .unwrap();
        let (_, bytes) = EMBEDDED.iter().find(|(p, _)| *p == "vote.js").unwrap();
        assert_eq!(etag, etag_of(bytes));
        assert!(
            etag.starts_with('"') && etag.ends_with('"') && etag.len() == 42,
            "{etag}"
        );
        assert!(!etag.starts_with("W/"), "strong");
        let weak = format!("W/{etag}");
        for matching in [
            &[&*etag][..],
            &["\"x\", ", &etag],
            &[&weak],
            &["*"],
            &["\"a\"", &etag],
        ] {
            let r = s.respond(&get(matching), "/vote.js").unwrap();
            assert_eq!(r.status, Status::NotModified, "{matching:?}");
            assert!(r.body.is_empty());
            assert!(r.headers.iter().any(|(n, v)| *n == "ETag" && *v == etag));
            assert!(r
                .headers
                .iter()
                .any(|(n, v)| *n == "Cache-Control" && v == CACHE_CONTROL));
        }
        let r = s.respond(&get(&["\"other\""]), "/vote.js").unwrap();
        assert_eq!(r.status, Status::Ok);
        // Another file, another tag; an HTML page keeps its security headers on a 304 too.
        let page = s.respond(&get(&[]), "/home.html").unwrap();
        assert!(!page.headers.iter().any(|(n, v)| *n == "ETag" && *v == etag));
        let tag = page
            .headers
            .iter()
            .find(|(n, _)| *n == "ETag")
            .unwrap()
            .1
            .clone();
        let r = s.respond(&get(&[&tag]), "/home.html").unwrap();
        assert_eq!(r.status, Status::NotModified);
        assert!(r
            .headers
            .iter()
            .any(|(n, _)| *n == "Content-Security-Policy"));
        assert!(s.respond(&get(&[]), "/index.template").is_none());
    }
}
