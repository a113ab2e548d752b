//! A small, fast, non-cryptographic hasher for short keys (column names,
//! partition prefixes, shard ids) in hot-path maps. Keys come from our own
//! schema and data layout, so hash flooding is not a concern here.

use std::hash::{BuildHasherDefault, Hasher};

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

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
