//! Files from the `www/` directory, and never from anywhere else: the request path is decoded,
//! every segment is checked (no `..`, no hidden files, no separators), and the resolved path
//! must still lie inside the canonical root (a symlink pointing out is refused too).

use std::fs;
use std::path::{Path, PathBuf};

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

/// The static file root.
pub struct StaticFiles {
    root: PathBuf,
}

impl StaticFiles {
    /// `root` must exist; it is canonicalised once so every check compares real paths.
    pub fn new(root: &Path) -> std::io::Result<Self> {
        Ok(StaticFiles {
            root: fs::canonicalize(root)?,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves a decoded request path to a servable file, or None.
    pub fn resolve(&self, path_in: &str) -> Option<PathBuf> {
        // A file's URL has no trailing slash and no empty segments (`/a//b`).
        let rest = path_in.strip_prefix('/')?;
        let mut path = self.root.clone();
        for seg in rest.split('/') {
            if seg.is_empty() {
                return None;
            }
            if seg.starts_with('.') || seg.contains(['\\', '\0', ':']) {
                return None;
            }
            path.push(seg);
        }
        content_type(&path)?;
        let real = fs::canonicalize(&path).ok()?;
        (real.starts_with(&self.root) && real.is_file()).then_some(real)
    }

    /// Reads a servable file: (content type, bytes). `path` is already percent-decoded.
    pub fn read(&self, path: &str) -> Option<(&'static str, Vec<u8>)> {
        let path = self.resolve(path)?;
        let bytes = fs::read(&path).ok()?;
        Some((content_type(&path)?, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let s = StaticFiles::new(&www).unwrap();
        assert_eq!(
            s.read("/a.js").unwrap(),
            ("text/javascript; charset=utf-8", b"x".to_vec())
        );
        assert!(s.read("/sub/b.css").is_some());
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
}
