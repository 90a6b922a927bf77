//! The QR codes of `livevote::qr` read back by a real scanner: zbar's `zbarimg` (Debian's
//! `zbar-tools`; `make qr-deps` installs it). Each code is rendered as a binary PGM image (8×8
//! pixels a module, a 4-module quiet zone) in a temp directory, and what zbar decodes must be
//! exactly the input. Besides the join URL at every level: a long URL (a version ≥ 7, so the
//! version information is read too), UTF-8 text, and one code of every version at every level,
//! so that every row of the block tables is exercised.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use livevote::qr::{Ecc, QrCode};

const LEVELS: [Ecc; 4] = [Ecc::L, Ecc::M, Ecc::Q, Ecc::H];

/// A temp directory of this test process, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "livevote-qr-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The symbol as a binary PGM (P5): `scale` pixels a module, a 4-module light quiet zone, dark 0
/// and light 255.
fn pgm(qr: &QrCode, scale: usize) -> Vec<u8> {
    let quiet = 4;
    let side = (qr.size() + 2 * quiet) * scale;
    let mut out = format!("P5\n{side} {side}\n255\n").into_bytes();
    for py in 0..side {
        for px in 0..side {
            let (x, y) = (px / scale, py / scale);
            let dark = x >= quiet && y >= quiet && qr.dark(x - quiet, y - quiet);
            out.push(if dark { 0 } else { 255 });
        }
    }
    out
}

/// What `zbarimg --raw -q` decodes from the image at `path`, without the newline it ends with.
fn zbarimg(path: &Path) -> String {
    let out = match Command::new("zbarimg")
        .arg("--raw")
        .arg("-q")
        .arg(path)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "zbarimg is not on PATH: run `make qr-deps` (installs Debian's zbar-tools) before \
             this test"
        ),
        Err(e) => panic!("run zbarimg: {e}"),
    };
    assert!(
        out.status.success(),
        "zbarimg found no code in {} ({}): {}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("zbarimg printed UTF-8");
    text.strip_suffix('\n').unwrap_or(&text).to_string()
}

/// Encodes `data` at `ecc`, has zbar decode it, and checks it reads back exactly. Returns the
/// version it was encoded at.
fn round_trip(dir: &TempDir, data: &str, ecc: Ecc, scale: usize) -> u8 {
    let qr = QrCode::encode(data.as_bytes(), ecc).expect("fits");
    let path = dir.0.join(format!("v{}-{ecc:?}.pgm", qr.version()));
    std::fs::write(&path, pgm(&qr, scale)).expect("write the image");
    let read = zbarimg(&path);
    assert_eq!(
        read,
        data,
        "version {} at {ecc:?}: zbar read something else",
        qr.version()
    );
    qr.version()
}

#[test]
fn the_join_url_reads_back_at_every_level() {
    let dir = TempDir::new();
    for ecc in LEVELS {
        round_trip(&dir, "http://127.0.0.1:8080/p/demo", ecc, 8);
    }
}

#[test]
fn a_long_url_with_version_information_reads_back() {
    let dir = TempDir::new();
    let mut url = String::from("http://127.0.0.1:8080/p/demo?");
    let mut i = 0;
    while url.len() < 300 {
        url.push_str(&format!("k{i}=v{i}&"));
        i += 1;
    }
    for ecc in [Ecc::L, Ecc::M, Ecc::H] {
        let version = round_trip(&dir, &url, ecc, 8);
        assert!(
            version >= 7,
            "{} bytes at {ecc:?}: version {version}",
            url.len()
        );
    }
}

#[test]
fn utf8_text_reads_back() {
    let dir = TempDir::new();
    for text in [
        "Café crème, Grüße aus Zürich",
        "http://127.0.0.1:8080/p/d%C3%A9mo — é, ü",
    ] {
        for ecc in [Ecc::M, Ecc::Q] {
            round_trip(&dir, text, ecc, 8);
        }
    }
}

/// One code of every version at every level: a wrong entry in the block tables, the alignment
/// positions or the version information shows up as a code zbar cannot read. A thread a level:
/// this is the slow test (a debug build takes tens of ms to encode a version 40).
#[test]
fn every_version_at_every_level_reads_back() {
    let threads: Vec<_> = LEVELS
        .into_iter()
        .map(|ecc| std::thread::spawn(move || every_version_reads_back(ecc)))
        .collect();
    for t in threads {
        t.join().expect("every version reads back");
    }
}

fn every_version_reads_back(ecc: Ecc) {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-._~";
    let text = |len: usize| -> String {
        (0..len)
            .map(|i| char::from(ALPHABET[i % ALPHABET.len()]))
            .collect()
    };
    let version_of =
        |len: usize| QrCode::encode(text(len).as_bytes(), ecc).map_or(u8::MAX, |qr| qr.version());
    let dir = TempDir::new();
    // The lengths chosen for the last two versions.
    let (mut before, mut last) = (0usize, 0usize);
    for version in 1..=40u8 {
        // A length at `version`: capacity grows by about as much each version as the last, so
        // the guess is the last length plus the last increase; a miss narrows the range it is
        // in (longer text never needs a smaller version). `low` is below `version`.
        let (mut low, mut high) = (last, None);
        let mut len = (2 * last).saturating_sub(before).max(last + 1);
        loop {
            let v = version_of(len);
            if v == version {
                break;
            }
            if v < version {
                low = len;
            } else {
                high = Some(len);
            }
            len = high.map_or(2 * len + 1, |h| (low + h) / 2);
        }
        (before, last) = (last, len);
        let got = round_trip(&dir, &text(len), ecc, 3);
        assert_eq!(got, version, "{len} bytes at {ecc:?}");
    }
}
