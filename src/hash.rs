//! A small, fast, non-cryptographic hasher for short keys (column names,
//! partition prefixes, shard ids) in hot-path maps. Keys come from our own
//! schema and data layout, so hash flooding is not a concern here.

use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default)]
pub struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf29ce484222325 } else { self.0 };
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        self.0 = h;
    }
}

pub type FastMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<Fnv>>;
