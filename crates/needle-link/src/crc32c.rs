//! CRC-32C (Castagnoli, the `crc` crate's `CRC_32_ISCSI`) of a frame, slice-by-8.
//!
//! Hand-written rather than the `crc` crate's `Table<16>` because our frames are short
//! (a telemetry frame's checked bytes are about 20): the crate takes 16 bytes at a time and
//! the rest one at a time, and called from more than one place it is not inlined with its
//! constants, which cost about 140 instructions a telemetry frame against about 70 here.
//! The tables (8 KiB, in flash on an MCU) are built at compile time; the tests check this
//! CRC against the crate's on every length up to a frame's and on arbitrary bytes.

/// The reflected Castagnoli polynomial.
const POLY: u32 = 0x82F6_3B78;

/// `TABLES[k][b]`: the CRC register after byte `b` followed by `k` zero bytes.
static TABLES: [[u32; 256]; 8] = tables();

// Evaluated at compile time only (`TABLES` is a static): an index out of bounds here would be
// a build error, never a panic at run time.
#[allow(clippy::indexing_slicing)]
const fn tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut b = 0;
    while b < 256 {
        let mut crc = b as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
            bit += 1;
        }
        t[0][b] = crc;
        b += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut b = 0;
        while b < 256 {
            let prev = t[k - 1][b];
            t[k][b] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            b += 1;
        }
        k += 1;
    }
    t
}

/// One table's entry; `b` is a byte, so it is always in the table.
#[inline(always)]
fn entry(k: usize, b: u64) -> u32 {
    TABLES
        .get(k)
        .and_then(|t| t.get((b & 0xff) as usize))
        .copied()
        .unwrap_or(0)
}

/// The CRC-32C of `bytes`.
#[inline]
pub fn checksum(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        // Always eight bytes (`chunks_exact`).
        let &[a, b, c, d, e, f, g, h] = chunk else {
            continue;
        };
        // Two 32-bit halves: a byte of each is one zero-extending move on most machines,
        // where a byte of the upper half of a 64-bit word takes a shift and a move more.
        let lo = u64::from(u32::from_le_bytes([a, b, c, d]) ^ crc);
        let hi = u64::from(u32::from_le_bytes([e, f, g, h]));
        crc = entry(7, lo)
            ^ entry(6, lo >> 8)
            ^ entry(5, lo >> 16)
            ^ entry(4, lo >> 24)
            ^ entry(3, hi)
            ^ entry(2, hi >> 8)
            ^ entry(1, hi >> 16)
            ^ entry(0, hi >> 24);
    }
    let mut rest = chunks.remainder();
    if let Some((four, tail)) = rest.split_first_chunk::<4>() {
        // Four bytes at once with four of the tables, as the eight above.
        let v = u64::from(u32::from_le_bytes(*four) ^ crc);
        crc = entry(3, v) ^ entry(2, v >> 8) ^ entry(1, v >> 16) ^ entry(0, v >> 24);
        rest = tail;
    }
    for b in rest {
        crc = (crc >> 8) ^ entry(0, u64::from((crc as u8) ^ b));
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crc::{Crc, CRC_32_ISCSI};
    use proptest::prelude::*;

    const REFERENCE: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

    #[test]
    fn the_check_value_of_crc_32c() {
        assert_eq!(checksum(b"123456789"), 0xE306_9283);
        assert_eq!(checksum(b""), 0);
    }

    #[test]
    fn every_length_up_to_a_frame_matches_the_crc_crate() {
        let bytes: std::vec::Vec<u8> = (0..=crate::frame::MAX_ENCODED)
            .map(|i| (i * 167 + 13) as u8)
            .collect();
        for n in 0..bytes.len() {
            assert_eq!(
                checksum(&bytes[..n]),
                REFERENCE.checksum(&bytes[..n]),
                "{n}"
            );
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_match_the_crc_crate(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            prop_assert_eq!(checksum(&bytes), REFERENCE.checksum(&bytes));
        }
    }
}
