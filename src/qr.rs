//! A QR code encoder (ISO/IEC 18004, model 2), so the presenter page can show the poll's join URL
//! as an SVG without a dependency. Pure: no I/O.
//!
//! Byte mode only: a join URL is bytes, and the numeric and alphanumeric modes would only save
//! modules for digits or upper-case text; UTF-8 that is not ASCII is declared so with an ECI
//! header (`declares_utf8`). Every version 1–40 and the four error-correction levels; the mask
//! is the one the standard's penalty rules score lowest. What a scanner reads is checked by
//! tests/qr_decode.rs, which decodes the codes with zbar.
//!
//! The steps, in the order [`QrCode::encode`] runs them:
//!
//! 1. the smallest version whose data capacity holds the bytes (`byte_capacity`);
//! 2. the data codewords: mode, count, the bytes, terminator and pad codewords (`data_codewords`);
//! 3. those split into the version's blocks, each given its Reed–Solomon codewords, and all
//!    interleaved (`interleave`);
//! 4. the function patterns drawn, and the codewords placed in the two-column zigzag (`Grid`);
//! 5. each of the eight masks scored, and the best one applied with its format information.
//!
//! ```
//! use livevote::qr::{Ecc, QrCode};
//! let qr = QrCode::encode(b"http://127.0.0.1:8080/p/demo", Ecc::M).unwrap();
//! assert_eq!((qr.version(), qr.size()), (3, 29));
//! assert!(qr.to_svg("Join the poll").starts_with("<svg"));
//! ```

use std::fmt::{self, Write as _};

/// Error-correction level: about how much of the symbol may be damaged and still be read back.
/// A higher level makes a bigger symbol for the same data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ecc {
    /// About 7 % of the codewords recoverable.
    L,
    /// About 15 %.
    M,
    /// About 25 %.
    Q,
    /// About 30 %.
    H,
}

impl Ecc {
    /// The row of the block tables.
    fn index(self) -> usize {
        match self {
            Ecc::L => 0,
            Ecc::M => 1,
            Ecc::Q => 2,
            Ecc::H => 3,
        }
    }

    /// The two bits the format information carries; not in order of strength (ISO/IEC 18004
    /// Table 12).
    fn format_bits(self) -> u32 {
        match self {
            Ecc::L => 0b01,
            Ecc::M => 0b00,
            Ecc::Q => 0b11,
            Ecc::H => 0b10,
        }
    }
}

/// Why no code could be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QrError {
    /// `len` bytes, when version 40 holds at most `max` at the level asked for.
    TooLong { len: usize, max: usize },
}

impl fmt::Display for QrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QrError::TooLong { len, max } => write!(
                f,
                "{len} bytes do not fit in a QR code at this error-correction level (at most {max})"
            ),
        }
    }
}

impl std::error::Error for QrError {}

/// The largest version; the smallest is 1.
const MAX_VERSION: u8 = 40;

/// Light modules around the symbol that scanners need to find its edge (the standard's minimum).
const QUIET_ZONE: usize = 4;

/// Error-correction codewords in each block, by level (L, M, Q, H) and version 1–40
/// (ISO/IEC 18004 Table 9).
const ECC_PER_BLOCK: [[u8; 40]; 4] = [
    [
        7, 10, 15, 20, 26, 18, 20, 24, 30, 18, 20, 24, 26, 30, 22, 24, 28, 30, 28, 28, 28, 28, 30,
        30, 26, 28, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30,
    ],
    [
        10, 16, 26, 18, 24, 16, 18, 22, 22, 26, 30, 22, 22, 24, 24, 28, 28, 26, 26, 26, 26, 28, 28,
        28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28,
    ],
    [
        13, 22, 18, 26, 18, 24, 18, 22, 20, 24, 28, 26, 24, 20, 30, 24, 28, 28, 26, 30, 28, 30, 30,
        30, 30, 28, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30,
    ],
    [
        17, 28, 22, 16, 22, 28, 26, 26, 24, 28, 24, 28, 22, 24, 24, 30, 28, 28, 26, 28, 30, 24, 30,
        30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30,
    ],
];

/// Error-correction blocks, by level (L, M, Q, H) and version 1–40 (ISO/IEC 18004 Table 9). The
/// codewords are split evenly, the last blocks holding one data codeword more when the split
/// does not come out even.
const BLOCKS: [[u8; 40]; 4] = [
    [
        1, 1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 4, 4, 6, 6, 6, 6, 7, 8, 8, 9, 9, 10, 12, 12, 12, 13,
        14, 15, 16, 17, 18, 19, 19, 20, 21, 22, 24, 25,
    ],
    [
        1, 1, 1, 2, 2, 4, 4, 4, 5, 5, 5, 8, 9, 9, 10, 10, 11, 13, 14, 16, 17, 17, 18, 20, 21, 23,
        25, 26, 28, 29, 31, 33, 35, 37, 38, 40, 43, 45, 47, 49,
    ],
    [
        1, 1, 2, 2, 4, 4, 6, 6, 8, 8, 8, 10, 12, 16, 12, 17, 16, 18, 21, 20, 23, 23, 25, 27, 29,
        34, 34, 35, 38, 40, 43, 45, 48, 51, 53, 56, 59, 62, 65, 68,
    ],
    [
        1, 1, 2, 4, 4, 4, 5, 6, 8, 8, 11, 11, 16, 16, 18, 16, 19, 21, 25, 25, 25, 34, 30, 32, 35,
        37, 40, 42, 45, 48, 51, 54, 57, 60, 63, 66, 70, 74, 77, 81,
    ],
];

/// The table entry for `version` (1–40) at `ecc`.
fn table(t: &[[u8; 40]; 4], version: u8, ecc: Ecc) -> usize {
    usize::from(t[ecc.index()][usize::from(version) - 1])
}

/// Modules per side: 21 for version 1, 4 more for each version after.
fn side(version: u8) -> usize {
    17 + 4 * usize::from(version)
}

/// Modules left for codewords once the function patterns are drawn (a test checks this against
/// a drawn grid). Of the (4v + 17)² modules: the three finders with separators (3 × 64), the two
/// format copies and the dark module (31), the timing patterns between the finders (2 × (4v + 1))
/// leave 16v² + 128v + 64; each of the k² − 3 alignment patterns takes 25, less 5 for the
/// 2(k − 2) that sit on a timing pattern; from version 7, the two version areas take 36.
fn raw_modules(version: u8) -> usize {
    let v = usize::from(version);
    let mut n = (16 * v + 128) * v + 64;
    if v >= 2 {
        let k = v / 7 + 2; // alignment pattern centres per axis
        n -= (25 * k - 10) * k - 55;
        if v >= 7 {
            n -= 36;
        }
    }
    n
}

/// Data codewords of `version` at `ecc`: whole codewords (the 0–7 remainder bits are none) less
/// the error-correction codewords of every block.
fn data_len(version: u8, ecc: Ecc) -> usize {
    raw_modules(version) / 8 - table(&BLOCKS, version, ecc) * table(&ECC_PER_BLOCK, version, ecc)
}

/// Bits of the byte-mode character count: 8 up to version 9, 16 from version 10
/// (ISO/IEC 18004 Table 3).
fn count_bits(version: u8) -> usize {
    if version <= 9 {
        8
    } else {
        16
    }
}

/// The ECI assignment number that declares the bytes UTF-8.
const UTF8_ECI: u32 = 26;

/// Whether the bytes are declared UTF-8 with an ECI header: only when they are UTF-8 and not
/// plain ASCII. Byte mode's default charset is ISO-8859-1, so scanners guess; zbar reads
/// "Café" as Shift JIS without the header. ASCII reads the same under every guess, so a join URL
/// goes without it: 12 bits smaller, and readable by scanners that do not know ECI.
fn declares_utf8(data: &[u8]) -> bool {
    !data.is_ascii() && std::str::from_utf8(data).is_ok()
}

/// Bits before the bytes: the ECI header when `utf8` (mode 0111 and an 8-bit designator), the
/// byte mode indicator (4) and the count.
fn header_bits(version: u8, utf8: bool) -> usize {
    12 * usize::from(utf8) + 4 + count_bits(version)
}

/// The most bytes `version` holds at `ecc` in byte mode, with or without the UTF-8 header. (Up
/// to version 9 this is at most 230, so the 8-bit count always fits.)
fn byte_capacity(version: u8, ecc: Ecc, utf8: bool) -> usize {
    (data_len(version, ecc) * 8 - header_bits(version, utf8)) / 8
}

/// A bit stream, most significant bit first: the order the symbol is read in.
#[derive(Default)]
struct Bits {
    bytes: Vec<u8>,
    len: usize,
}

impl Bits {
    /// Appends the low `n` bits of `value`.
    fn push(&mut self, value: u32, n: usize) {
        for i in (0..n).rev() {
            if self.len.is_multiple_of(8) {
                self.bytes.push(0);
            }
            if (value >> i) & 1 == 1 {
                *self.bytes.last_mut().expect("a byte was pushed") |= 0x80 >> (self.len % 8);
            }
            self.len += 1;
        }
    }
}

/// The data codewords of `data` in byte mode, filled to the capacity of `version` at `ecc`
/// (which the caller checked `data` fits).
fn data_codewords(data: &[u8], version: u8, ecc: Ecc) -> Vec<u8> {
    let capacity = data_len(version, ecc);
    let mut bits = Bits::default();
    if declares_utf8(data) {
        bits.push(0b0111, 4); // the ECI mode indicator
        bits.push(UTF8_ECI, 8);
    }
    bits.push(0b0100, 4); // the byte mode indicator
    bits.push(data.len() as u32, count_bits(version));
    for &b in data {
        bits.push(b.into(), 8);
    }
    // The terminator is up to four 0 bits (fewer when the capacity ends sooner); then 0 bits to
    // the codeword boundary.
    bits.push(0, (capacity * 8 - bits.len).min(4));
    bits.push(0, (8 - bits.len % 8) % 8);
    let mut out = bits.bytes;
    // The standard's pad codewords, alternating, for the rest of the capacity.
    for pad in [0xEC, 0x11].into_iter().cycle() {
        if out.len() >= capacity {
            break;
        }
        out.push(pad);
    }
    out
}

/// Multiplication in GF(2⁸) modulo x⁸ + x⁴ + x³ + x² + 1 (0x11D), the field of the standard's
/// Reed–Solomon codes. Shift and add, no log tables: a code is made once per page.
fn gf_mul(a: u8, b: u8) -> u8 {
    let mut product = 0u8;
    for i in (0..8).rev() {
        // product · x, reduced: the x⁸ term that shifts out is replaced by x⁴ + x³ + x² + 1.
        product = (product << 1) ^ ((product >> 7) * 0x1D);
        product ^= ((b >> i) & 1) * a;
    }
    product
}

/// The generator polynomial of degree `n`, (x − α⁰)(x − α¹)…(x − αⁿ⁻¹) with α = 2: its
/// coefficients below the leading 1 (which `rs_remainder` implies), highest degree first.
fn rs_generator(n: usize) -> Vec<u8> {
    let mut g = vec![1u8];
    let mut root = 1u8;
    for _ in 0..n {
        // g · (x − root): g shifted up a degree plus root · g (minus is plus in GF(2⁸)).
        let mut next = g.clone();
        next.push(0);
        for (i, &c) in g.iter().enumerate() {
            next[i + 1] ^= gf_mul(c, root);
        }
        g = next;
        root = gf_mul(root, 2);
    }
    g.remove(0);
    g
}

/// The error-correction codewords of a block: the remainder of data · xⁿ divided by the
/// generator, by long division one data codeword at a time.
fn rs_remainder(data: &[u8], generator: &[u8]) -> Vec<u8> {
    let mut rem = vec![0u8; generator.len()];
    for &d in data {
        let factor = d ^ rem[0];
        rem.rotate_left(1);
        *rem.last_mut().expect("the degree is at least 1") = 0;
        for (r, &g) in rem.iter_mut().zip(generator) {
            *r ^= gf_mul(g, factor);
        }
    }
    rem
}

/// The final codeword sequence: the data split into the version's blocks, each given its
/// error-correction codewords, then interleaved (the i-th data codeword of every block in turn,
/// then the i-th error-correction codeword of every block), so that a burst of damage on the
/// symbol is spread over all the blocks.
fn interleave(data: &[u8], version: u8, ecc: Ecc) -> Vec<u8> {
    let blocks = table(&BLOCKS, version, ecc);
    let ecc_len = table(&ECC_PER_BLOCK, version, ecc);
    let total = raw_modules(version) / 8;
    // When the codewords do not divide evenly, the last `long` blocks hold one data codeword more.
    let short_len = total / blocks - ecc_len;
    let long = total % blocks;
    let generator = rs_generator(ecc_len);
    let mut split = Vec::with_capacity(blocks);
    let mut rest = data;
    for b in 0..blocks {
        let (block, tail) = rest.split_at(short_len + usize::from(b >= blocks - long));
        split.push((block, rs_remainder(block, &generator)));
        rest = tail;
    }
    debug_assert!(rest.is_empty(), "the data fills the blocks exactly");
    let mut out = Vec::with_capacity(total);
    for i in 0..=short_len {
        out.extend(split.iter().filter_map(|(block, _)| block.get(i)));
    }
    for i in 0..ecc_len {
        out.extend(split.iter().map(|(_, e)| e[i]));
    }
    out
}

/// The 15 format bits for `ecc` and `mask`: 5 data bits, a BCH(15, 5) remainder (generator
/// 0x537), and the XOR with 0x5412 so that the bits are never all light.
fn format_bits(ecc: Ecc, mask: u8) -> u32 {
    let data = (ecc.format_bits() << 3) | u32::from(mask);
    let mut rem = data;
    for _ in 0..10 {
        rem = (rem << 1) ^ ((rem >> 9) * 0x537);
    }
    ((data << 10) | rem) ^ 0x5412
}

/// The 18 version bits (versions 7 and up): the 6-bit version and a BCH(18, 6) remainder
/// (generator 0x1F25).
fn version_bits(version: u8) -> u32 {
    let data = u32::from(version);
    let mut rem = data;
    for _ in 0..12 {
        rem = (rem << 1) ^ ((rem >> 11) * 0x1F25);
    }
    (data << 12) | rem
}

/// The centres of the alignment patterns on each axis (ISO/IEC 18004 Annex E; a test checks the
/// whole table): 6 and the far side's `size − 7`, with evenly spaced ones between, the spacing
/// even and the leftover gap next to 6.
fn alignment_positions(version: u8) -> Vec<usize> {
    if version == 1 {
        return Vec::new();
    }
    let v = usize::from(version);
    let k = v / 7 + 2;
    // The spacing is even and about (size − 13) / (k − 1); this rounding is the table's for
    // every version (version 32 has 26 where rounding up to even would give 28).
    let step = (v * 8 + k * 3 + 5) / (k * 4 - 4) * 2;
    let last = side(version) - 7;
    let mut out: Vec<usize> = (0..k - 1).map(|i| last - i * step).collect();
    out.push(6);
    out.reverse();
    out
}

/// Which of the eight mask patterns (ISO/IEC 18004 Table 10) flips the module at column `x`,
/// row `y`.
fn mask_flips(mask: u8, x: usize, y: usize) -> bool {
    match mask {
        0 => (x + y).is_multiple_of(2),
        1 => y.is_multiple_of(2),
        2 => x.is_multiple_of(3),
        3 => (x + y).is_multiple_of(3),
        4 => (x / 3 + y / 2).is_multiple_of(2),
        5 => x * y % 2 + x * y % 3 == 0,
        6 => (x * y % 2 + x * y % 3).is_multiple_of(2),
        _ => ((x + y) % 2 + x * y % 3).is_multiple_of(2),
    }
}

/// The symbol being built: the modules, and which of them are function patterns (finders,
/// separators, timing, alignment, format and version areas), which codewords and masks skip.
struct Grid {
    size: usize,
    dark: Vec<bool>,
    function: Vec<bool>,
}

impl Grid {
    /// A symbol of `version` with every function pattern drawn and the format areas reserved.
    fn new(version: u8) -> Grid {
        let size = side(version);
        let mut grid = Grid {
            size,
            dark: vec![false; size * size],
            function: vec![false; size * size],
        };
        // Timing first: the finders and alignment patterns drawn after overwrite its ends.
        for i in 0..size {
            grid.set_function(6, i, i % 2 == 0);
            grid.set_function(i, 6, i % 2 == 0);
        }
        for (x, y) in [(3, 3), (size - 4, 3), (3, size - 4)] {
            grid.draw_finder(x, y);
        }
        let centres = alignment_positions(version);
        let ends = centres.len().saturating_sub(1);
        for (i, &x) in centres.iter().enumerate() {
            for (j, &y) in centres.iter().enumerate() {
                // The three corners with a finder have no alignment pattern.
                if ![(0, 0), (0, ends), (ends, 0)].contains(&(i, j)) {
                    grid.draw_alignment(x, y);
                }
            }
        }
        // Reserved now so the codewords go around them; written for the chosen mask at the end.
        grid.draw_format(Ecc::L, 0);
        if version >= 7 {
            grid.draw_version(version);
        }
        grid
    }

    fn set_function(&mut self, x: usize, y: usize, dark: bool) {
        self.dark[y * self.size + x] = dark;
        self.function[y * self.size + x] = true;
    }

    /// The 7×7 finder centred on (`cx`, `cy`) with its light separator ring, clipped at the
    /// symbol's edge: dark except the rings at distance 2 and 4.
    fn draw_finder(&mut self, cx: usize, cy: usize) {
        for dy in -4isize..=4 {
            for dx in -4isize..=4 {
                let (x, y) = (cx as isize + dx, cy as isize + dy);
                if (0..self.size as isize).contains(&x) && (0..self.size as isize).contains(&y) {
                    let ring = dx.abs().max(dy.abs());
                    self.set_function(x as usize, y as usize, ring != 2 && ring != 4);
                }
            }
        }
    }

    /// The 5×5 alignment pattern centred on (`cx`, `cy`): dark except the ring at distance 1.
    fn draw_alignment(&mut self, cx: usize, cy: usize) {
        for dy in -2isize..=2 {
            for dx in -2isize..=2 {
                let ring = dx.abs().max(dy.abs());
                let (x, y) = (cx as isize + dx, cy as isize + dy);
                self.set_function(x as usize, y as usize, ring != 1);
            }
        }
    }

    /// Both copies of the format information (ISO/IEC 18004 Figure 25), and the dark module
    /// next to the bottom-left finder that the standard puts at (8, 4v + 9).
    fn draw_format(&mut self, ecc: Ecc, mask: u8) {
        let bits = format_bits(ecc, mask);
        let bit = |i: usize| (bits >> i) & 1 == 1;
        let n = self.size;
        // Around the top-left finder: down column 8 (skipping the timing row), then left along
        // row 8 (skipping the timing column).
        for i in 0..6 {
            self.set_function(8, i, bit(i));
        }
        self.set_function(8, 7, bit(6));
        self.set_function(8, 8, bit(7));
        self.set_function(7, 8, bit(8));
        for i in 9..15 {
            self.set_function(14 - i, 8, bit(i));
        }
        // The copy split between the other two finders.
        for i in 0..8 {
            self.set_function(n - 1 - i, 8, bit(i));
        }
        for i in 8..15 {
            self.set_function(8, n - 15 + i, bit(i));
        }
        self.set_function(8, n - 8, true);
    }

    /// Both copies of the version information: 6×3 blocks beside the top-right finder and, the
    /// transpose, above the bottom-left one.
    fn draw_version(&mut self, version: u8) {
        let bits = version_bits(version);
        for i in 0..18 {
            let dark = (bits >> i) & 1 == 1;
            let (a, b) = (self.size - 11 + i % 3, i / 3);
            self.set_function(a, b, dark);
            self.set_function(b, a, dark);
        }
    }

    /// The codewords, most significant bit first, along the standard's path: two-module-wide
    /// columns from the right edge, upwards then downwards in turn, right module before left,
    /// stepping over the vertical timing pattern and every function module. Modules left over
    /// (the remainder bits) stay light.
    fn place(&mut self, codewords: &[u8]) {
        let n = self.size;
        let mut bits = codewords
            .iter()
            .flat_map(|&c| (0..8).rev().map(move |i| (c >> i) & 1 == 1));
        let mut right = n - 1;
        loop {
            for step in 0..n {
                let y = if goes_up(n, right) {
                    n - 1 - step
                } else {
                    step
                };
                for x in [right, right - 1] {
                    if !self.function[y * n + x] {
                        self.dark[y * n + x] = bits.next().unwrap_or(false);
                    }
                }
            }
            if right == 1 {
                break;
            }
            // Two columns left; the timing column 6 is skipped whole.
            right -= 2;
            if right == 6 {
                right = 5;
            }
        }
    }

    /// Flips every non-function module the mask selects; applying it twice undoes it.
    fn apply_mask(&mut self, mask: u8) {
        for y in 0..self.size {
            for x in 0..self.size {
                let i = y * self.size + x;
                if !self.function[i] && mask_flips(mask, x, y) {
                    self.dark[i] = !self.dark[i];
                }
            }
        }
    }

    /// The mask with the lowest penalty (the first on a tie), each scored with its own format
    /// information drawn, as the standard asks.
    fn best_mask(&mut self, ecc: Ecc) -> u8 {
        let mut best = (u32::MAX, 0);
        for mask in 0..8 {
            self.apply_mask(mask);
            self.draw_format(ecc, mask);
            let score = self.penalty();
            if score < best.0 {
                best = (score, mask);
            }
            self.apply_mask(mask);
        }
        best.1
    }

    /// The standard's score of how hard the symbol is to read (ISO/IEC 18004 7.8.3): long runs,
    /// 2×2 blocks, finder look-alikes, and an unbalanced share of dark modules.
    fn penalty(&self) -> u32 {
        let n = self.size;
        // The columns are scored as the rows of the transpose: slices, no copy per line (the
        // score is computed eight times a code).
        let mut transposed = vec![false; n * n];
        for (i, &d) in self.dark.iter().enumerate() {
            transposed[(i % n) * n + i / n] = d;
        }
        let mut score = 0;
        let mut lengths = Vec::with_capacity(n);
        for line in self.dark.chunks(n).chain(transposed.chunks(n)) {
            let first_dark = runs(line, &mut lengths);
            score += run_penalty(&lengths) + finder_penalty(&lengths, first_dark);
        }
        // Rule 2: each 2×2 block of one colour scores 3 (overlapping blocks each count).
        for (upper, lower) in self.dark.chunks(n).zip(self.dark.chunks(n).skip(1)) {
            for x in 0..n - 1 {
                let c = upper[x];
                if c == upper[x + 1] && c == lower[x] && c == lower[x + 1] {
                    score += 3;
                }
            }
        }
        let dark = self.dark.iter().filter(|&&d| d).count();
        score + balance_penalty(dark, n * n)
    }
}

/// Whether the column pair whose right column is `right` is filled upwards: the pair at the
/// right edge is, and the direction alternates pair by pair. Left of the timing column the pairs
/// sit one column further left, so they are counted as if it were not there.
fn goes_up(size: usize, right: usize) -> bool {
    let right = if right < 6 { right + 1 } else { right };
    ((size - 1 - right) / 2).is_multiple_of(2)
}

/// The lengths of the runs of one colour along a row or column, into `out`; returns whether the
/// first run is dark (the runs alternate from there).
fn runs(line: &[bool], out: &mut Vec<usize>) -> bool {
    out.clear();
    let mut len = 0;
    for (i, &m) in line.iter().enumerate() {
        if i > 0 && m != line[i - 1] {
            out.push(len);
            len = 0;
        }
        len += 1;
    }
    out.push(len);
    line[0]
}

/// Rule 1: each run of five or more modules of one colour scores 3, plus 1 for each module past
/// five.
fn run_penalty(runs: &[usize]) -> u32 {
    runs.iter()
        .filter(|&&r| r >= 5)
        .map(|&r| r as u32 - 2)
        .sum()
}

/// Rule 3: each dark-light-dark-light-dark sequence of runs of 1, 1, 3, 1, 1 modules (a
/// finder's cross-section) with four light modules before or after it scores 40. Beyond the
/// ends of the line counts as light: it is the quiet zone.
fn finder_penalty(runs: &[usize], first_dark: bool) -> u32 {
    let mut score = 0;
    for i in (usize::from(!first_dark)..runs.len()).step_by(2) {
        if runs.get(i..i + 5) == Some(&[1, 1, 3, 1, 1]) {
            let before = i == 0 || runs[i - 1] >= 4;
            let after = i + 5 == runs.len() || runs[i + 5] >= 4;
            if before || after {
                score += 40;
            }
        }
    }
    score
}

/// Rule 4: 10 for each whole 5 % step that the share of dark modules is away from half (so
/// nothing from 45 % to 55 %).
fn balance_penalty(dark: usize, total: usize) -> u32 {
    // |dark / total − 1/2| in twentieths, rounded up, less the first (free) step.
    let steps = (dark * 20).abs_diff(total * 10).div_ceil(total);
    10 * steps.saturating_sub(1) as u32
}

/// A QR code symbol: the modules, without the quiet zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QrCode {
    size: usize,
    modules: Vec<bool>,
}

impl QrCode {
    /// Byte mode (UTF-8 bytes), the smallest version 1..=40 that fits at `ecc`, best mask by the
    /// standard's penalty rules. Bytes that are UTF-8 but not ASCII are declared UTF-8 (an ECI
    /// header), so that scanners do not guess another charset.
    pub fn encode(data: &[u8], ecc: Ecc) -> Result<QrCode, QrError> {
        let utf8 = declares_utf8(data);
        let version = (1..=MAX_VERSION)
            .find(|&v| data.len() <= byte_capacity(v, ecc, utf8))
            .ok_or(QrError::TooLong {
                len: data.len(),
                max: byte_capacity(MAX_VERSION, ecc, utf8),
            })?;
        let codewords = interleave(&data_codewords(data, version, ecc), version, ecc);
        let mut grid = Grid::new(version);
        grid.place(&codewords);
        let mask = grid.best_mask(ecc);
        grid.apply_mask(mask);
        grid.draw_format(ecc, mask);
        Ok(QrCode {
            size: grid.size,
            modules: grid.dark,
        })
    }

    /// Modules per side (21 for version 1), without the quiet zone.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether the module at column `x`, row `y` is dark; outside the symbol, false (the quiet
    /// zone is light).
    pub fn dark(&self, x: usize, y: usize) -> bool {
        x < self.size && y < self.size && self.modules[y * self.size + x]
    }

    /// The version, 1–40.
    pub fn version(&self) -> u8 {
        ((self.size - 17) / 4) as u8
    }

    /// An SVG document: the viewBox in modules with a 4-module quiet zone, a white background,
    /// and one `<path>` of the dark modules, each horizontal run one rectangle, so the markup
    /// stays small and no seams show between neighbours (`shape-rendering="crispEdges"`). It
    /// scales to its box (`width` and `height` 100 %, for CSS to size); `title` is its
    /// accessible name.
    pub fn to_svg(&self, title: &str) -> String {
        let n = self.size + 2 * QUIET_ZONE;
        let mut out = String::with_capacity(256 + self.size * self.size * 2);
        let _ = write!(
            out,
            concat!(
                r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {n} {n}""#,
                r#" width="100%" height="100%" shape-rendering="crispEdges" role="img"><title>"#
            ),
            n = n
        );
        // The five characters XML and HTML both escape (the SVG is inlined in our pages).
        crate::http::response::html_escape(&mut out, title);
        let _ = write!(
            out,
            r##"</title><rect width="{n}" height="{n}" fill="#fff"/><path fill="#000" d=""##
        );
        for y in 0..self.size {
            let mut x = 0;
            while x < self.size {
                if !self.dark(x, y) {
                    x += 1;
                    continue;
                }
                let start = x;
                while self.dark(x, y) {
                    x += 1;
                }
                let w = x - start;
                let (px, py) = (start + QUIET_ZONE, y + QUIET_ZONE);
                let _ = write!(out, "M{px},{py}h{w}v1h-{w}z");
            }
        }
        out.push_str(r#""/></svg>"#);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The standard's worked example (ISO/IEC 18004 Annex I, "01234567" at 1-M): its 16 data
    /// codewords and the 10 error-correction codewords it lists for them.
    #[test]
    fn reed_solomon_remainder_of_the_standards_example() {
        let data = [
            0x10, 0x20, 0x0C, 0x56, 0x61, 0x80, 0xEC, 0x11, 0xEC, 0x11, 0xEC, 0x11, 0xEC, 0x11,
            0xEC, 0x11,
        ];
        let ecc = rs_remainder(&data, &rs_generator(10));
        assert_eq!(
            ecc,
            [0xA5, 0x24, 0xD4, 0xC1, 0xED, 0x36, 0xC7, 0x87, 0x2C, 0x55]
        );
    }

    /// The degree-7 generator in the standard's exponent form: α⁸⁷, α²²⁹, α¹⁴⁶, α¹⁴⁹, α²³⁸, α¹⁰²,
    /// α²¹ below the leading x⁷.
    #[test]
    fn generator_polynomial_of_degree_7() {
        let pow = |e: u32| (0..e).fold(1u8, |acc, _| gf_mul(acc, 2));
        let expected: Vec<u8> = [87, 229, 146, 149, 238, 102, 21].map(pow).to_vec();
        assert_eq!(rs_generator(7), expected);
    }

    #[test]
    fn field_multiplication() {
        assert_eq!(gf_mul(0x80, 2), 0x1D); // x⁸ reduced by 0x11D
        assert_eq!(gf_mul(0, 0xFF), 0);
        assert_eq!(gf_mul(1, 0xA7), 0xA7);
        // Every non-zero element has an inverse: α is a generator of the 255-element group.
        let mut x = 1u8;
        for i in 1..=255 {
            x = gf_mul(x, 2);
            assert_eq!(x == 1, i == 255, "α^{i}");
        }
    }

    #[test]
    fn format_and_version_bits() {
        assert_eq!(format_bits(Ecc::M, 0), 0b101010000010010);
        assert_eq!(format_bits(Ecc::L, 0), 0b111011111000100);
        assert_eq!(format_bits(Ecc::H, 7), 0b000100000111011);
        assert_eq!(version_bits(7), 0x07C94);
        assert_eq!(version_bits(40), 0x28C69);
    }

    /// Annex E of the standard, in full.
    #[test]
    fn alignment_positions_are_the_standards_table() {
        let table: [&[usize]; 40] = [
            &[],
            &[6, 18],
            &[6, 22],
            &[6, 26],
            &[6, 30],
            &[6, 34],
            &[6, 22, 38],
            &[6, 24, 42],
            &[6, 26, 46],
            &[6, 28, 50],
            &[6, 30, 54],
            &[6, 32, 58],
            &[6, 34, 62],
            &[6, 26, 46, 66],
            &[6, 26, 48, 70],
            &[6, 26, 50, 74],
            &[6, 30, 54, 78],
            &[6, 30, 56, 82],
            &[6, 30, 58, 86],
            &[6, 34, 62, 90],
            &[6, 28, 50, 72, 94],
            &[6, 26, 50, 74, 98],
            &[6, 30, 54, 78, 102],
            &[6, 28, 54, 80, 106],
            &[6, 32, 58, 84, 110],
            &[6, 30, 58, 86, 114],
            &[6, 34, 62, 90, 118],
            &[6, 26, 50, 74, 98, 122],
            &[6, 30, 54, 78, 102, 126],
            &[6, 26, 52, 78, 104, 130],
            &[6, 30, 56, 82, 108, 134],
            &[6, 34, 60, 86, 112, 138],
            &[6, 30, 58, 86, 114, 142],
            &[6, 34, 62, 90, 118, 146],
            &[6, 30, 54, 78, 102, 126, 150],
            &[6, 24, 50, 76, 102, 128, 154],
            &[6, 28, 54, 80, 106, 132, 158],
            &[6, 32, 58, 84, 110, 136, 162],
            &[6, 26, 54, 82, 110, 138, 166],
            &[6, 30, 58, 86, 114, 142, 170],
        ];
        for v in 1..=MAX_VERSION {
            assert_eq!(
                alignment_positions(v),
                table[usize::from(v) - 1],
                "version {v}"
            );
        }
    }

    /// The formula for the codeword modules agrees with the function patterns actually drawn,
    /// and the block tables leave every block some data.
    #[test]
    fn codeword_modules_match_the_drawn_grid() {
        for v in 1..=MAX_VERSION {
            let grid = Grid::new(v);
            let free = grid.function.iter().filter(|&&f| !f).count();
            assert_eq!(free, raw_modules(v), "version {v}");
            // The remainder bits: 0, 3, 4 or 7 (ISO/IEC 18004 Table 1).
            assert!([0, 3, 4, 7].contains(&(free % 8)), "version {v}");
            for ecc in [Ecc::L, Ecc::M, Ecc::Q, Ecc::H] {
                let blocks = table(&BLOCKS, v, ecc);
                let per = table(&ECC_PER_BLOCK, v, ecc);
                assert!(raw_modules(v) / 8 / blocks > per, "version {v} {ecc:?}");
            }
        }
    }

    /// Byte-mode capacities from the standard's Table 7, a few versions.
    #[test]
    fn byte_capacities() {
        let known: [(u8, [usize; 4]); 7] = [
            (1, [17, 14, 11, 7]),
            (2, [32, 26, 20, 14]),
            (7, [154, 122, 86, 64]),
            (9, [230, 180, 130, 98]),
            (10, [271, 213, 151, 119]),
            (27, [1465, 1125, 805, 625]),
            (40, [2953, 2331, 1663, 1273]),
        ];
        for (v, caps) in known {
            for (ecc, cap) in [Ecc::L, Ecc::M, Ecc::Q, Ecc::H].into_iter().zip(caps) {
                assert_eq!(byte_capacity(v, ecc, false), cap, "version {v} {ecc:?}");
            }
        }
        // The 8-bit count of versions 1-9 holds any length they can carry.
        assert!(byte_capacity(9, Ecc::L, false) <= 255);
        // Capacity grows with the version and shrinks with the level.
        for v in 1..MAX_VERSION {
            assert!(byte_capacity(v + 1, Ecc::H, false) > byte_capacity(v, Ecc::H, false));
            assert!(byte_capacity(v, Ecc::L, false) > byte_capacity(v, Ecc::M, false));
            assert!(byte_capacity(v, Ecc::M, false) > byte_capacity(v, Ecc::Q, false));
            assert!(byte_capacity(v, Ecc::Q, false) > byte_capacity(v, Ecc::H, false));
        }
    }

    #[test]
    fn capacity_boundaries() {
        assert_eq!(QrCode::encode(&[b'a'; 14], Ecc::M).unwrap().version(), 1);
        assert_eq!(QrCode::encode(&[b'a'; 15], Ecc::M).unwrap().version(), 2);
        assert_eq!(QrCode::encode(b"", Ecc::H).unwrap().version(), 1);
        assert_eq!(QrCode::encode(&[0; 2953], Ecc::L).unwrap().version(), 40);
        let err = QrCode::encode(&[0; 2954], Ecc::L).unwrap_err();
        assert_eq!(
            err,
            QrError::TooLong {
                len: 2954,
                max: 2953
            }
        );
        assert_eq!(
            QrCode::encode(&[0; 1274], Ecc::H).unwrap_err(),
            QrError::TooLong {
                len: 1274,
                max: 1273
            }
        );
        assert!(err.to_string().contains("2954"));
        // The UTF-8 header takes 12 bits: 1-M holds 13 bytes of it, not 14.
        assert_eq!(
            QrCode::encode("é".repeat(6).as_bytes(), Ecc::M)
                .unwrap()
                .version(),
            1
        );
        assert_eq!(
            QrCode::encode("é".repeat(7).as_bytes(), Ecc::M)
                .unwrap()
                .version(),
            2
        );
        assert_eq!(
            QrCode::encode("aéaéaéaéa".as_bytes(), Ecc::M)
                .unwrap()
                .version(),
            1
        );
        assert_eq!(
            QrCode::encode("aéaéaéaéaa".as_bytes(), Ecc::M)
                .unwrap()
                .version(),
            2
        );
        assert_eq!(
            QrCode::encode("é".repeat(1477).as_bytes(), Ecc::L).unwrap_err(),
            QrError::TooLong {
                len: 2954,
                max: 2952
            }
        );
    }

    #[test]
    fn data_codewords_are_mode_count_bytes_terminator_and_pads() {
        // "ab" at 1-M: 0100 | 00000010 | 01100001 01100010 | 0000, then pads to 16 codewords.
        let cw = data_codewords(b"ab", 1, Ecc::M);
        assert_eq!(cw.len(), 16);
        assert_eq!(&cw[..4], &[0x40, 0x26, 0x16, 0x20]);
        assert_eq!(&cw[4..8], &[0xEC, 0x11, 0xEC, 0x11]);
        // Full to the last bit: 14 bytes at 1-M leave 4 bits, all terminator, and no pad.
        let cw = data_codewords(&[0xFF; 14], 1, Ecc::M);
        assert_eq!(cw.len(), 16);
        assert_eq!(cw[15], 0xF0);
        // UTF-8 beyond ASCII: 0111 | 00011010 (ECI 26) | 0100 | 00000010 | C3 A9 | 0000.
        let cw = data_codewords("é".as_bytes(), 1, Ecc::M);
        assert_eq!(&cw[..6], &[0x71, 0xA4, 0x02, 0xC3, 0xA9, 0x00]);
        assert_eq!(cw[6], 0xEC);
        // Not UTF-8, or plain ASCII: no header.
        assert!(!declares_utf8(&[0xE9]) && !declares_utf8(b"abc") && declares_utf8("ü".as_bytes()));
        assert_eq!(data_codewords(&[0xE9], 1, Ecc::M)[0], 0x40);
    }

    /// Interleaving at 5-Q (2 blocks of 15 data codewords, 2 of 16, 18 error-correction
    /// codewords each): data column by column, the long blocks' extra codewords last.
    #[test]
    fn interleaving_with_short_and_long_blocks() {
        let data: Vec<u8> = (0..62).collect();
        let out = interleave(&data, 5, Ecc::Q);
        assert_eq!(out.len(), raw_modules(5) / 8);
        assert_eq!(&out[..4], &[0, 15, 30, 46]);
        assert_eq!(&out[56..62], &[14, 29, 44, 60, 45, 61]);
        let ecc_of = |block: &[u8]| rs_remainder(block, &rs_generator(18));
        assert_eq!(out[62], ecc_of(&data[0..15])[0]);
        assert_eq!(out[63], ecc_of(&data[15..30])[0]);
        assert_eq!(out[65], ecc_of(&data[46..62])[0]);
        assert_eq!(*out.last().unwrap(), *ecc_of(&data[46..62]).last().unwrap());
    }

    fn assert_finder(qr: &QrCode, ox: usize, oy: usize) {
        for dy in 0..7usize {
            for dx in 0..7usize {
                let ring = dx.abs_diff(3).max(dy.abs_diff(3));
                assert_eq!(
                    qr.dark(ox + dx, oy + dy),
                    ring != 2,
                    "finder at ({ox}, {oy})"
                );
            }
        }
    }

    /// Format bits as read back from the two copies (the reader's order: bit 14 first).
    fn read_format(qr: &QrCode) -> (u32, u32) {
        let n = qr.size();
        let mut first = [
            (8, 0),
            (8, 1),
            (8, 2),
            (8, 3),
            (8, 4),
            (8, 5),
            (8, 7),
            (8, 8),
        ]
        .to_vec();
        first.extend([(7, 8), (5, 8), (4, 8), (3, 8), (2, 8), (1, 8), (0, 8)]);
        let second: Vec<(usize, usize)> = (0..8)
            .map(|i| (n - 1 - i, 8))
            .chain((8..15).map(|i| (8, n - 15 + i)))
            .collect();
        let read = |cells: &[(usize, usize)]| {
            cells
                .iter()
                .enumerate()
                .fold(0, |acc, (i, &(x, y))| acc | (u32::from(qr.dark(x, y)) << i))
        };
        (read(&first), read(&second))
    }

    #[test]
    fn structural_invariants() {
        let inputs: [&[u8]; 3] = [b"http://127.0.0.1:8080/p/demo", &[b'x'; 300], &[7; 2000]];
        for data in inputs {
            for ecc in [Ecc::L, Ecc::M, Ecc::Q, Ecc::H] {
                let Ok(qr) = QrCode::encode(data, ecc) else {
                    continue;
                };
                let (n, v) = (qr.size(), usize::from(qr.version()));
                assert_eq!(n, 4 * v + 17);
                assert_finder(&qr, 0, 0);
                assert_finder(&qr, n - 7, 0);
                assert_finder(&qr, 0, n - 7);
                // Separators: the light line between each finder and the rest.
                for i in 0..8 {
                    assert!(!qr.dark(7, i) && !qr.dark(i, 7));
                    assert!(!qr.dark(n - 8, i) && !qr.dark(n - 8 + i, 7));
                    assert!(!qr.dark(7, n - 8 + i) && !qr.dark(i, n - 8));
                }
                // Timing: alternating, dark on even positions, between the separators.
                for i in 8..n - 8 {
                    assert_eq!(qr.dark(i, 6), i % 2 == 0, "timing row at {i}");
                    assert_eq!(qr.dark(6, i), i % 2 == 0, "timing column at {i}");
                }
                assert!(qr.dark(8, 4 * v + 9), "the dark module");
                // An alignment pattern in the bottom-right corner (version 2 and up).
                if v >= 2 {
                    let c = n - 7;
                    for dy in 0..5usize {
                        for dx in 0..5usize {
                            let ring = dx.abs_diff(2).max(dy.abs_diff(2));
                            assert_eq!(qr.dark(c - 2 + dx, c - 2 + dy), ring != 1);
                        }
                    }
                }
                // Both format copies agree and carry this level with one of the eight masks.
                let (first, second) = read_format(&qr);
                assert_eq!(first, second);
                assert!((0..8).any(|m| format_bits(ecc, m) == first), "{first:015b}");
                // Both version copies, from version 7.
                if v >= 7 {
                    for i in 0..18 {
                        let bit = (version_bits(qr.version()) >> i) & 1 == 1;
                        let (a, b) = (n - 11 + i % 3, i / 3);
                        assert_eq!(qr.dark(a, b), bit);
                        assert_eq!(qr.dark(b, a), bit);
                    }
                }
                assert!(!qr.dark(n, 0) && !qr.dark(0, n), "outside is light");
            }
        }
    }

    #[test]
    fn penalty_rules() {
        // Rules 1 and 3 on one line.
        let score = |line: &[bool]| {
            let mut lengths = Vec::new();
            let first_dark = runs(line, &mut lengths);
            (run_penalty(&lengths), finder_penalty(&lengths, first_dark))
        };
        assert_eq!(score(&[true; 4]).0, 0);
        assert_eq!(score(&[true; 5]).0, 3);
        assert_eq!(score(&[false; 7]).0, 5);
        assert_eq!(score(&[true, true, true, true, true, false, false]).0, 3);
        let core = [true, false, true, true, true, false, true];
        let mut line = vec![true, false, false];
        line.extend(core);
        line.extend([false; 4]);
        line.push(true);
        assert_eq!(score(&line), (0, 40), "light after");
        line[11] = true;
        assert_eq!(score(&line).1, 0, "dark on both sides");
        assert_eq!(score(&core).1, 40, "the quiet zone is light");
        let mut light_first = vec![false];
        light_first.extend(core);
        assert_eq!(score(&light_first).1, 40);
        light_first[1] = false;
        assert_eq!(score(&light_first).1, 0, "no longer a finder");
        assert_eq!(balance_penalty(50, 100), 0);
        assert_eq!(balance_penalty(45, 100), 0);
        assert_eq!(balance_penalty(56, 100), 10);
        assert_eq!(balance_penalty(40, 100), 10);
        assert_eq!(balance_penalty(39, 100), 20);
        assert_eq!(balance_penalty(100, 100), 90);
    }

    /// The chosen mask scores no worse than any other.
    #[test]
    fn the_chosen_mask_has_the_lowest_penalty() {
        let data = b"http://127.0.0.1:8080/p/demo";
        let qr = QrCode::encode(data, Ecc::M).unwrap();
        let (chosen, _) = read_format(&qr);
        let mut grid = Grid::new(qr.version());
        grid.place(&interleave(&data_codewords(data, 3, Ecc::M), 3, Ecc::M));
        let mut scores = Vec::new();
        for mask in 0..8 {
            grid.apply_mask(mask);
            grid.draw_format(Ecc::M, mask);
            scores.push(grid.penalty());
            if format_bits(Ecc::M, mask) == chosen {
                assert_eq!(grid.dark, qr.modules);
            }
            grid.apply_mask(mask);
        }
        let mask = (0..8).find(|&m| format_bits(Ecc::M, m) == chosen).unwrap();
        assert_eq!(scores[usize::from(mask)], *scores.iter().min().unwrap());
    }

    /// The dark squares of the SVG's path, read back into a grid, are the modules; and each
    /// subpath is a whole horizontal run (light or the edge on both sides).
    #[test]
    fn svg_path_is_the_modules_in_runs() {
        let qr = QrCode::encode(b"http://127.0.0.1:8080/p/demo?x=1", Ecc::Q).unwrap();
        let svg = qr.to_svg("Join");
        let n = qr.size() + 8;
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.contains(&format!("viewBox=\"0 0 {n} {n}\"")));
        assert!(svg.contains("shape-rendering=\"crispEdges\""));
        assert!(svg.contains(&format!(
            "<rect width=\"{n}\" height=\"{n}\" fill=\"#fff\"/>"
        )));
        assert_eq!(svg.matches("<path").count(), 1);
        assert!(svg.ends_with("\"/></svg>"));
        let d = svg
            .split(" d=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let mut grid = vec![false; n * n];
        let mut subpaths = 0;
        for sub in d.split('z').filter(|s| !s.is_empty()) {
            subpaths += 1;
            let rest = sub.strip_prefix('M').expect("starts with M");
            let (xy, rest) = rest.split_once('h').unwrap();
            let (w, rest) = rest.split_once("v1h-").unwrap();
            assert_eq!(rest, w, "closes back over the same width");
            let (x, y) = xy.split_once(',').unwrap();
            let (x, y, w): (usize, usize, usize) =
                (x.parse().unwrap(), y.parse().unwrap(), w.parse().unwrap());
            assert!(w >= 1);
            for i in x..x + w {
                assert!(!grid[y * n + i], "overlap at ({i}, {y})");
                grid[y * n + i] = true;
            }
            // A whole run: nothing dark just before or after it.
            let (qx, qy) = (x - 4, y - 4);
            assert!(
                qx == 0 || !qr.dark(qx - 1, qy),
                "run at ({x}, {y}) not merged left"
            );
            assert!(!qr.dark(qx + w, qy), "run at ({x}, {y}) not merged right");
        }
        for y in 0..n {
            for x in 0..n {
                let module = x >= 4 && y >= 4 && qr.dark(x - 4, y - 4);
                assert_eq!(grid[y * n + x], module, "({x}, {y})");
            }
        }
        let runs: usize = (0..qr.size())
            .map(|y| {
                (0..qr.size())
                    .filter(|&x| qr.dark(x, y) && (x == 0 || !qr.dark(x - 1, y)))
                    .count()
            })
            .sum();
        assert_eq!(subpaths, runs);
    }

    #[test]
    fn svg_title_is_escaped() {
        let svg = QrCode::encode(b"x", Ecc::L)
            .unwrap()
            .to_svg(r#"Join <b>"Tom & Jerry's"</b>"#);
        assert!(svg
            .contains("<title>Join &lt;b&gt;&quot;Tom &amp; Jerry&#39;s&quot;&lt;/b&gt;</title>"));
        assert_eq!(
            svg.matches('<').count(),
            6,
            "svg, title, /title, rect, path, /svg"
        );
    }
}
