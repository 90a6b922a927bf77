//! Helpers shared by the fuzz targets in `fuzz_targets/`: how a target turns its first input
//! byte (the "knob") into a limit and a way of cutting the rest into the pieces a socket might
//! deliver, and small reference implementations the targets check the real code against.
//! Nothing here is used by the server.

/// Splits an input into its knob (first byte, 0 when empty) and the bytes after it.
pub fn knob(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&k, rest)) => (k, rest),
        None => (0, data),
    }
}

/// Cuts `data` into consecutive non-empty pieces, as reads from a socket would: the knob's low
/// two bits choose one piece (`0`), one byte at a time (`1`), or pseudo-random sizes up to
/// 2^(bits 2–4) bytes (`2`, `3`), seeded by the knob so a crash reproduces.
pub fn pieces(knob: u8, data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut state = u32::from(knob) | 0x9E37_7900; // xorshift32 must not start at 0
    let max = 1usize << ((knob >> 2) & 7);
    while !rest.is_empty() {
        let len = match knob & 3 {
            0 => rest.len(),
            1 => 1,
            _ => {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                1 + state as usize % max
            }
        };
        let (piece, tail) = rest.split_at(len.min(rest.len()));
        out.push(piece);
        rest = tail;
    }
    out
}

/// True when `bytes` could begin a UTF-8 text: valid so far, ending at most inside a character
/// that can still be completed (the reference for the incremental validator).
pub fn is_utf8_prefix(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

/// RFC 6455 §5.3 masking written the obvious way: byte `i` of the payload is XORed with
/// `mask[i % 4]`; `offset` is the payload index of `bytes[0]`.
pub fn mask_naive(bytes: &[u8], mask: [u8; 4], offset: usize) -> Vec<u8> {
    bytes
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[(offset + i) % 4])
        .collect()
}
