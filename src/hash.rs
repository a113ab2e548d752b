//! A small, fast, non-cryptographic hasher for short keys (column names,
//! partition prefixes, shard ids) in hot-path maps. Keys come from our own
//! schema and data layout, so hash flooding is not a concern here.

use std::hash::{BuildHasherDefault, Hasher};

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn byte_hashes_spread_sequential_values_in_their_high_and_low_bits() {
        for values in [
            (0..4096).map(|i| format!("big-value-{i:014}")).collect::<Vec<_>>(),
            (0..4096).map(|i| format!("id{i:04}")).collect(), // 6 bytes
            (0..4096).map(|i| format!("{i}")).collect(),      // 1 to 4 bytes
        ] {
            let hashes: Vec<u64> = values.iter().map(|v| bytes(v.as_bytes())).collect();
            let high: std::collections::HashSet<u64> = hashes.iter().map(|h| h >> 52).collect();
            let low: std::collections::HashSet<u64> = hashes.iter().map(|h| h & 0xfff).collect();
            // 4096 random values fill ~2590 of 4096 buckets
            assert!(high.len() > 2300 && low.len() > 2300, "{}: {} high, {} low", values[1], high.len(), low.len());
        }
        let all: std::collections::HashSet<u64> = ["", "a", "a\0", "\0", "abcdefgh", "abcdefgh\0", "abcdefghi"].iter().map(|v| bytes(v.as_bytes())).collect();
        assert_eq!(all.len(), 7, "lengths and tails count");
    }

    #[test]
    fn distinguishes_lengths_and_tails() {
        let b = BuildHasherDefault::<Fast>::default();
        let hs: std::collections::HashSet<u64> =
            ["", "a", "a\0", "abcdefgh", "abcdefgh\0", "dt=2026-11-21/hr=13/", "dt=2026-11-21/hr=14/"].iter().map(|s| b.hash_one(s)).collect();
        assert_eq!(hs.len(), 7);
    }
}

/// Multiply-rotate hashing eight bytes at a time (the FxHash scheme).
#[derive(Default)]
pub struct Fast(u64);

const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Fast {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
    }
}

impl Hasher for Fast {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, mut bytes: &[u8]) {
        while bytes.len() >= 8 {
            self.add(u64::from_le_bytes(bytes[..8].try_into().unwrap()));
            bytes = &bytes[8..];
        }
        if !bytes.is_empty() {
            let mut tail = [0u8; 8];
            tail[..bytes.len()].copy_from_slice(bytes);
            self.add(u64::from_le_bytes(tail) ^ ((bytes.len() as u64) << 59));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
}

pub type FastMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<Fast>>;

/// Seeded xorshift64 numbers for tests that want many varied inputs.
#[cfg(test)]
pub fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// The hash of a byte string (its length included, so "a" and "a\0"
/// differ): [`Fast`]'s rounds, with overlapping loads for the last word
/// instead of a copied tail (a few instructions for short values), then
/// murmur3's finalizer, so that every bit of the result depends on every
/// byte: open-addressing tables index by the high bits, and values that
/// differ only in their last byte (sequential ids) must spread there too.
#[inline(always)]
pub fn bytes(v: &[u8]) -> u64 {
    let n = v.len();
    let w8 = |at: usize| u64::from_le_bytes(v[at..at + 8].try_into().expect("8 bytes"));
    let w4 = |at: usize| u32::from_le_bytes(v[at..at + 4].try_into().expect("4 bytes")) as u64;
    let mut h = Fast(0);
    h.add(n as u64);
    match n {
        0 => {}
        1..=3 => h.add(v[0] as u64 | (v[n / 2] as u64) << 8 | (v[n - 1] as u64) << 16),
        4..=7 => h.add(w4(0) | w4(n - 4) << 32),
        _ => {
            let mut at = 0;
            while at + 8 < n {
                h.add(w8(at));
                at += 8;
            }
            h.add(w8(n - 8));
        }
    }
    let mut x = h.0;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^ (x >> 33)
}
