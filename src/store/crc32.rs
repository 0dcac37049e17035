//! CRC-32 (IEEE 802.3, the one zlib, gzip and PNG use): reflected polynomial
//! `0xEDB88320`, initial value and final XOR `0xFFFFFFFF`.
//!
//! Owns the checksum arithmetic only; it knows nothing about records, lines
//! or files. The 256-entry table is built at compile time, so there is no
//! lazy initialisation and no global state.

/// Reflected form of the IEEE polynomial `0x04C11DB7`.
const POLY: u32 = 0xEDB8_8320;

/// `TABLE[n]` is the CRC register after feeding byte `n` into a zero register.
const TABLE: [u32; 256] = make_table();

const fn make_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 { POLY ^ (c >> 1) } else { c >> 1 };
            bit += 1;
        }
        table[n] = c;
        n += 1;
    }
    table
}

/// The CRC-32 of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    update(0, bytes)
}

/// Continues `crc` (a value [`crc32`] or `update` returned) over more bytes:
/// `update(crc32(a), b) == crc32(a ++ b)`.
pub fn update(crc: u32, bytes: &[u8]) -> u32 {
    let mut c = !crc;
    for &b in bytes {
        // A `u8` index into a 256-entry table is always in bounds.
        c = TABLE[usize::from((c as u8) ^ b)] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn matches_the_standard_check_value() {
        // The "check" value of CRC-32/ISO-HDLC in the CRC catalogue.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn matches_known_vectors() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"a"), 0xE8B7_BE43);
        assert_eq!(crc32(b"abc"), 0x3524_41C2);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
        assert_eq!(crc32(&[0u8; 32]), 0x190A_55AD);
        assert_eq!(crc32(&[0xFFu8; 32]), 0xFF6C_AB0B);
    }

    #[test]
    fn table_starts_and_ends_as_published() {
        assert_eq!(TABLE[0], 0);
        assert_eq!(TABLE[1], 0x7707_3096);
        assert_eq!(TABLE[255], 0x2D02_EF8D);
    }

    proptest! {
        #[test]
        fn update_continues_a_checksum(
            a in proptest::collection::vec(any::<u8>(), 0..64),
            b in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut whole = a.clone();
            whole.extend_from_slice(&b);
            prop_assert_eq!(update(crc32(&a), &b), crc32(&whole));
        }

        #[test]
        fn detects_any_single_byte_change(
            data in proptest::collection::vec(any::<u8>(), 1..128),
            at in any::<proptest::sample::Index>(),
            delta in 1u8..=255,
        ) {
            let mut changed = data.clone();
            let i = at.index(changed.len());
            changed[i] ^= delta;
            prop_assert_ne!(crc32(&data), crc32(&changed));
        }
    }
}
