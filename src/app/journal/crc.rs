//! CRC-32/IEEE, table-driven: the checksum of every journal header, record and snapshot.
//! Pure: no I/O.

/// The byte-at-a-time table for the reflected polynomial 0xEDB88320, built at compile time.
pub(super) const CRC_TABLE: [u32; 256] = crc_table();

pub(super) const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

/// Continues a CRC-32 over `bytes`; start with `!0` and invert the result.
pub(super) fn crc_update(mut crc: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        crc = CRC_TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    crc
}

/// CRC-32/IEEE of `bytes` ("123456789" → 0xCBF43926).
pub(super) fn crc32(bytes: &[u8]) -> u32 {
    !crc_update(!0, bytes)
}
