//! Signed values for cookies, and the constant-time comparison secrets need: HMAC-SHA1
//! (RFC 2104) over `sha1_smol`, the one hash the dependencies allow. A signed value is
//! `VALUE.SIG`, SIG the HMAC of `CONTEXT\0VALUE` under the server's secret in unpadded
//! base64url, so a voter cookie can never be replayed as an admin cookie (another context).
//! Pure: the caller brings the secret.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

const BLOCK: usize = 64;

/// HMAC-SHA1 of `msg` under `key` (RFC 2104).
pub fn hmac_sha1(key: &[u8], msg: &[u8]) -> [u8; 20] {
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..20].copy_from_slice(&sha1_smol::Sha1::from(key).digest().bytes());
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = sha1_smol::Sha1::new();
    inner.update(&k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = sha1_smol::Sha1::new();
    outer.update(&k.map(|b| b ^ 0x5c));
    outer.update(&inner.digest().bytes());
    outer.digest().bytes()
}

/// Whether `a` and `b` are equal, in a time that depends on their lengths only (a secret
/// compared byte by byte would tell an attacker how much of a guess was right).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn mac(secret: &[u8], context: &str, value: &str) -> String {
    let mut msg = Vec::with_capacity(context.len() + 1 + value.len());
    msg.extend_from_slice(context.as_bytes());
    msg.push(0);
    msg.extend_from_slice(value.as_bytes());
    URL_SAFE_NO_PAD.encode(hmac_sha1(secret, &msg))
}

/// `value` signed for `context`: `VALUE.SIG`. `value` must not contain `.`.
pub fn sign(secret: &[u8], context: &str, value: &str) -> String {
    debug_assert!(!value.contains('.'));
    format!("{value}.{}", mac(secret, context, value))
}

/// The value of a [`sign`]ed string, if its signature is right for `context`.
pub fn verify<'a>(secret: &[u8], context: &str, signed: &'a str) -> Option<&'a str> {
    let (value, sig) = signed.rsplit_once('.')?;
    constant_time_eq(sig.as_bytes(), mac(secret, context, value).as_bytes()).then_some(value)
}

/// `n` random bytes as lowercase hex, from the kernel's generator (`/dev/urandom`); for
/// secrets, tokens and voter ids.
pub fn random_hex(n: usize) -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn hmac_sha1_matches_rfc_2202() {
        // RFC 2202 §3, test cases 1, 2, 3, 6 (a key longer than the block).
        let cases: [(&[u8], &[u8], &str); 4] = [
            (
                &[0x0b; 20],
                b"Hi There",
                "b617318655057264e28bc0b6fb378c8ef146be00",
            ),
            (
                b"Jefe",
                b"what do ya want for nothing?",
                "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
            ),
            (
                &[0xaa; 20],
                &[0xdd; 50],
                "125d7342b9ac11cd91a39af48aa17b4f63f175d3",
            ),
            (
                &[0xaa; 80],
                b"Test Using Larger Than Block-Size Key - Hash Key First",
                "aa4ae5e15272d00e95705637ce8a3b55ed402112",
            ),
        ];
        for (key, msg, want) in cases {
            assert_eq!(hex(&hmac_sha1(key, msg)), want);
        }
    }

    #[test]
    fn a_signature_holds_for_its_value_and_context_only() {
        let s = sign(b"secret", "voter", "abc123");
        assert_eq!(verify(b"secret", "voter", &s), Some("abc123"));
        assert_eq!(verify(b"secret", "admin", &s), None);
        assert_eq!(verify(b"other", "voter", &s), None);
        let forged = s.replacen("abc123", "abc124", 1);
        assert_eq!(verify(b"secret", "voter", &forged), None);
        assert_eq!(verify(b"secret", "voter", "abc123"), None);
        assert_eq!(verify(b"secret", "voter", ""), None);
    }

    #[test]
    fn equal_means_every_byte() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert_eq!(random_hex(16).unwrap().len(), 32);
        assert_ne!(random_hex(16).unwrap(), random_hex(16).unwrap());
    }
}
