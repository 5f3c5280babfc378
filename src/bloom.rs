//! Bloom filter bit layout and similarity on packed words.
//!
//! Shared by both sides: the agency sets bits, the hub compares filters. Bit
//! `i` of a filter is bit `7 - i % 8` of byte `i / 8` (clkhash's order), so the
//! base64 of the bytes equals clkhash's output. Dice is invariant under any bit
//! permutation, so the hub reads the bytes as little-endian `u64` words without
//! reordering. This module never sees keys or plaintext.

/// Set bit `i` (clkhash order) in `bytes`.
#[inline]
pub fn set_bit(bytes: &mut [u8], i: usize) {
    bytes[i >> 3] |= 0x80 >> (i & 7);
}

/// Whether bit `i` (clkhash order) is set.
#[inline]
pub fn get_bit(bytes: &[u8], i: usize) -> bool {
    bytes[i >> 3] & (0x80 >> (i & 7)) != 0
}

/// Number of set bits in a byte slice.
pub fn popcount_bytes(bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(8);
    let mut n = 0u32;
    for c in &mut chunks {
        n += u64::from_le_bytes(c.try_into().expect("chunk of 8")).count_ones();
    }
    n + chunks
        .remainder()
        .iter()
        .map(|b| b.count_ones())
        .sum::<u32>()
}

/// Append the little-endian `u64` words of `bytes` (whose length must be a
/// multiple of 8) to `out`.
pub fn extend_words(out: &mut Vec<u64>, bytes: &[u8]) {
    debug_assert_eq!(bytes.len() % 8, 0);
    out.extend(
        bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("chunk of 8"))),
    );
}

/// Number of set bits in a word slice.
#[inline]
pub fn popcount(words: &[u64]) -> u32 {
    words.iter().map(|w| w.count_ones()).sum()
}

/// Number of bits set in both word slices.
#[inline]
pub fn and_popcount(a: &[u64], b: &[u64]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x & y).count_ones()).sum()
}

/// Dice coefficient from the intersection count and both popcounts. Two empty
/// filters are defined to have Dice 0 (no evidence of agreement).
#[inline]
pub fn dice_from_counts(common: u32, pa: u32, pb: u32) -> f64 {
    let total = pa + pb;
    if total == 0 {
        0.0
    } else {
        2.0 * common as f64 / total as f64
    }
}

/// Dice coefficient of two filters given as words.
#[inline]
pub fn dice(a: &[u64], b: &[u64]) -> f64 {
    dice_from_counts(and_popcount(a, b), popcount(a), popcount(b))
}

/// XOR-fold a filter in half: bit `i` of the result is `bit i ^ bit i + l/2`.
/// The input length in bytes must be even.
pub fn xor_fold(bytes: &[u8]) -> Vec<u8> {
    let half = bytes.len() / 2;
    bytes[..half]
        .iter()
        .zip(&bytes[half..])
        .map(|(a, b)| a ^ b)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_order_is_msb_first_like_clkhash() {
        let mut b = [0u8; 2];
        set_bit(&mut b, 0);
        set_bit(&mut b, 9);
        assert_eq!(b, [0x80, 0x40]);
        assert!(get_bit(&b, 0) && get_bit(&b, 9) && !get_bit(&b, 1));
    }

    #[test]
    fn dice_of_identical_is_one_and_disjoint_is_zero() {
        let a = [0b1011u64, 0];
        let b = [0b0100u64, 0];
        assert_eq!(dice(&a, &a), 1.0);
        assert_eq!(dice(&a, &b), 0.0);
        assert_eq!(dice(&[0, 0], &[0, 0]), 0.0);
    }

    #[test]
    fn words_match_bytes_popcount() {
        let bytes: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37)).collect();
        let mut w = Vec::new();
        extend_words(&mut w, &bytes);
        assert_eq!(popcount(&w), popcount_bytes(&bytes));
    }

    #[test]
    fn xor_fold_halves() {
        assert_eq!(xor_fold(&[0xF0, 0x0F, 0xFF, 0x0F]), vec![0x0F, 0x00]);
    }
}
