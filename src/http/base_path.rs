//! `--base-path /polls`: everything served under a prefix, as a reverse proxy passes it through
//! unchanged (`/polls/index` arrives as `/polls/index`). Pure: the flag's rules and the split
//! of a request path.

/// Longest base path, in bytes.
pub const MAX_LEN: usize = 200;

/// Checks a `--base-path`: empty (the root), or `/` and segments of `A-Z a-z 0-9 - . _ ~`
/// (RFC 3986 unreserved characters: nothing to escape in a URL or an HTML attribute), no
/// trailing slash, no empty, `.` or `..` segment, at most [`MAX_LEN`] bytes.
pub fn check(base: &str) -> Result<(), String> {
    if base.is_empty() {
        return Ok(());
    }
    let why = if !base.starts_with('/') {
        "must start with '/'"
    } else if base.len() > MAX_LEN {
        "is too long (at most 200 bytes)"
    } else if base.ends_with('/') {
        "must not end with '/' (use '' for the root)"
    } else if base[1..]
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        "must not have empty, '.' or '..' segments"
    } else if !base
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"/-._~".contains(&c))
    {
        "may hold only A-Z a-z 0-9 - . _ ~ and '/'"
    } else {
        return Ok(());
    };
    Err(format!("'{base}' {why}"))
}

/// Where a (decoded) request path stands with respect to the base path.
#[derive(Debug, PartialEq, Eq)]
pub enum Under<'a> {
    /// Inside: the path below the base, starting with `/` (`/polls/index` → `/index`).
    Inside(&'a str),
    /// The base itself without its slash (`/polls`): answered with a redirect to `/polls/`,
    /// so that relative links resolve below it.
    Bare,
    /// Outside the base: `404`.
    Outside,
}

/// Splits `path` by `base` (checked by [`check`]; empty: everything is inside).
pub fn split<'a>(base: &str, path: &'a str) -> Under<'a> {
    if base.is_empty() {
        return Under::Inside(path);
    }
    match path.strip_prefix(base) {
        Some("") => Under::Bare,
        Some(rest) if rest.starts_with('/') => Under::Inside(rest),
        _ => Under::Outside,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_paths_are_checked() {
        for good in ["", "/polls", "/a/b-c/d_e.f~g", "/v1.2", "/..a", "/a.."] {
            assert_eq!(check(good), Ok(()), "{good}");
        }
        for bad in [
            "polls", "/", "/polls/", "//polls", "/a//b", "/a/../b", "/..", "/.", "/a/.", "/a b",
            "/a%2fb", "/a?b", "/a#b", "/a\"b", "/a<b", "/é", "/a\\b",
        ] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
        assert!(check(&format!("/{}", "a".repeat(MAX_LEN))).is_err());
        assert!(check(&format!("/{}", "a".repeat(MAX_LEN - 1))).is_ok());
    }

    #[test]
    fn paths_split_at_the_base() {
        assert_eq!(split("", "/index"), Under::Inside("/index"));
        assert_eq!(split("/polls", "/polls/index"), Under::Inside("/index"));
        assert_eq!(split("/polls", "/polls/"), Under::Inside("/"));
        assert_eq!(split("/polls", "/polls"), Under::Bare);
        assert_eq!(split("/polls", "/pollsx/index"), Under::Outside);
        assert_eq!(split("/polls", "/index"), Under::Outside);
        assert_eq!(split("/polls", "/"), Under::Outside);
        assert_eq!(split("/a/b", "/a/b/c"), Under::Inside("/c"));
        assert_eq!(split("/a/b", "/a/c"), Under::Outside);
    }
}
