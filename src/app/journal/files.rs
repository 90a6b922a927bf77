//! The journal's files: reading the snapshot, atomic replacement, durable directories, the
//! lock file, and small helpers for paths, errors and report lines.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::format::{decode_snapshot, Snapshot};
use super::*;

pub(super) enum SnapshotFile {
    Missing,
    Valid(Snapshot),
    Corrupt(String),
}

/// Reads the snapshot at `path`; remembered votes without a time (format 1) get `legacy_ms`.
pub(super) fn read_snapshot(path: &Path, legacy_ms: u64) -> io::Result<SnapshotFile> {
    let size = match fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(SnapshotFile::Missing),
        Err(e) => return Err(annotate(e, path)),
    };
    if size > MAX_SNAPSHOT_BYTES {
        return Ok(SnapshotFile::Corrupt(format!(
            "{} bytes, more than {}",
            thousands(size),
            thousands(MAX_SNAPSHOT_BYTES)
        )));
    }
    let bytes = fs::read(path).map_err(|e| annotate(e, path))?;
    Ok(match decode_snapshot(&bytes, legacy_ms) {
        Ok(s) => SnapshotFile::Valid(s),
        Err(e) => SnapshotFile::Corrupt(e.to_string()),
    })
}

/// Replaces `path` with `bytes` atomically: a temporary file, fsync, rename, fsync of the
/// directory. Returns the new file, open for reading and writing, positioned at its end.
pub(super) fn replace_file(path: &Path, bytes: &[u8], sync: &mut SyncStats) -> io::Result<File> {
    let file = write_temp(path, bytes, sync)?;
    let tmp = suffixed(path, TMP_SUFFIX);
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(annotate(e, path));
    }
    sync_dir(path, sync)?;
    Ok(file)
}

/// Writes `bytes` to `path` + `.tmp` and fsyncs it; the file is positioned at its end.
pub(super) fn write_temp(path: &Path, bytes: &[u8], sync: &mut SyncStats) -> io::Result<File> {
    let tmp = suffixed(path, TMP_SUFFIX);
    let result = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            sync.sync(&file, false)?;
            Ok(file)
        });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| annotate(e, &tmp))
}

/// Creates `dir` and its missing parents, each durably: a journal in a directory whose own
/// name a crash forgets would be lost with it.
pub(super) fn create_dir_durably(dir: &Path, sync: &mut SyncStats) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.exists() {
        missing.push(d);
        match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => d = p,
            _ => break,
        }
    }
    fs::create_dir_all(dir)?;
    for d in missing.iter().rev() {
        sync_dir(d, sync)?;
    }
    Ok(())
}

/// Makes a rename or creation in `path`'s directory durable.
pub(super) fn sync_dir(path: &Path, sync: &mut SyncStats) -> io::Result<()> {
    let dir = parent_dir(path);
    let d = File::open(&dir).map_err(|e| annotate(e, &dir))?;
    sync.sync(&d, false).map_err(|e| annotate(e, &dir))
}

/// Takes the lock file beside `path`, failing at once if another journal holds it. On a file
/// system without locks, goes on without one.
pub(super) fn lock(path: &Path) -> io::Result<File> {
    let lock_path = suffixed(path, LOCK_SUFFIX);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| annotate(e, &lock_path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "journal {} is in use by another process (lock {})",
                path.display(),
                lock_path.display()
            ),
        )),
        Err(fs::TryLockError::Error(e)) if e.kind() == io::ErrorKind::Unsupported => Ok(file),
        Err(fs::TryLockError::Error(e)) => Err(annotate(e, &lock_path)),
    }
}

pub(super) use crate::app::store::new_epoch;

pub(super) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

pub(super) fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(suffix);
    PathBuf::from(s)
}

pub(super) fn annotate(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

pub(super) fn invalid_data(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

pub(super) fn invalid_input(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// `12345` → `"12,345"`, for report lines.
pub(super) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
