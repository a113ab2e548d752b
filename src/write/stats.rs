//! Column-chunk statistics for string columns, computed here instead of
//! by parquet-rs.
//!
//! Input: a flat string leaf of a row group (a top-level column or a field
//! of structs), whole or in consecutive parts, with the nulls of its
//! ancestors ([`StringStats::add`]); or the min and max and null count a
//! writer found itself ([`StringStats::add_min_max`], [`StringStats::add_nulls`],
//! and [`MinMax`] for values taken one at a time, as
//! [`string_columns`](super::string_columns) does).
//! Output: the chunk's [`Statistics`] — null count and byte-wise min and
//! max, as parquet-rs would write them (values longer than
//! [`TRUNCATE`] bytes are cut, and such a max is raised so it stays an
//! upper bound). No failure: an all-null chunk has no min or max.
//!
//! Why: parquet-rs compares every value with the running min and max by
//! `memcmp` (a call per comparison); that was 7% of `convert`. Here a
//! comparison is decided by the first eight bytes in registers, which
//! separates most values, and falls back to a word-by-word walk.

use arrow_array::{Array, StringArray};
use arrow_buffer::NullBuffer;
use parquet::data_type::ByteArray;
use parquet::file::statistics::{Statistics, ValueStatistics};
use std::cmp::Ordering;

/// Longest min or max kept, as parquet-rs's default `statistics_truncate_length`.
pub const TRUNCATE: usize = 64;

/// The statistics of a chunk written in parts: [`StringStats::add`] each
/// part, then [`StringStats::finish`].
#[derive(Debug, Default)]
pub struct StringStats {
    null_count: u64,
    /// Untruncated min and max so far.
    min_max: Option<(Vec<u8>, Vec<u8>)>,
}

impl StringStats {
    /// Takes in a part of the chunk: `values`, where `nulls` (the leaf's
    /// own nulls joined with its ancestors') marks the rows without a value.
    pub fn add(&mut self, values: &StringArray, nulls: Option<&NullBuffer>) {
        let offsets = values.value_offsets();
        let data = values.value_data();
        let at = |i: usize| &data[offsets[i] as usize..offsets[i + 1] as usize];
        let mut best: Option<(&[u8], u64, &[u8], u64)> = None; // min, its key, max, its key
        for i in 0..values.len() {
            if nulls.is_some_and(|n| n.is_null(i)) {
                self.null_count += 1;
                continue;
            }
            let v = at(i);
            let k = key(data, offsets[i] as usize, v.len());
            match &mut best {
                None => best = Some((v, k, v, k)),
                Some((min, kmin, max, kmax)) => {
                    if k < *kmin || (k == *kmin && cmp_tail(v, min) == Ordering::Less) {
                        (*min, *kmin) = (v, k);
                    } else if k > *kmax || (k == *kmax && cmp_tail(v, max) == Ordering::Greater) {
                        (*max, *kmax) = (v, k);
                    }
                }
            }
        }
        let Some((min, _, max, _)) = best else { return };
        self.add_min_max(min, max);
    }

    /// Takes in a part's min and max (untruncated).
    pub fn add_min_max(&mut self, min: &[u8], max: &[u8]) {
        match &mut self.min_max {
            None => self.min_max = Some((min.to_vec(), max.to_vec())),
            Some((lo, hi)) => {
                if min < lo.as_slice() {
                    *lo = min.to_vec();
                }
                if max > hi.as_slice() {
                    *hi = max.to_vec();
                }
            }
        }
    }

    /// Counts `n` more nulls.
    pub fn add_nulls(&mut self, n: u64) {
        self.null_count += n;
    }

    /// The chunk's statistics, min and max truncated as parquet-rs does.
    pub fn finish(self) -> Statistics {
        let Some((min, max)) = self.min_max else {
            return Statistics::ByteArray(ValueStatistics::new(None, None, None, Some(self.null_count), false));
        };
        let (min, min_exact) = truncate_min(&min);
        let (max, max_exact) = truncate_max(&max);
        Statistics::ByteArray(
            ValueStatistics::new(Some(ByteArray::from(min)), Some(ByteArray::from(max)), None, Some(self.null_count), false)
                .with_min_is_exact(min_exact)
                .with_max_is_exact(max_exact),
        )
    }
}

/// Byte-wise min and max of values taken one at a time, compared by their
/// first eight bytes in a register first (see [`key`]); the buffers are
/// reused when a new min or max comes (ever-increasing ids).
#[derive(Debug, Default)]
pub struct MinMax {
    /// min, its key, max, its key
    best: Option<(Vec<u8>, u64, Vec<u8>, u64)>,
}

impl MinMax {
    #[inline(always)]
    pub fn add(&mut self, v: &[u8]) {
        let k = key(v, 0, v.len());
        let Some((min, kmin, max, kmax)) = &mut self.best else {
            self.best = Some((v.to_vec(), k, v.to_vec(), k));
            return;
        };
        if k < *kmin || (k == *kmin && cmp_tail(v, min) == Ordering::Less) {
            min.clear();
            min.extend_from_slice(v);
            *kmin = k;
        }
        if k > *kmax || (k == *kmax && cmp_tail(v, max) == Ordering::Greater) {
            max.clear();
            max.extend_from_slice(v);
            *kmax = k;
        }
    }

    pub fn get(&self) -> Option<(&[u8], &[u8])> {
        self.best.as_ref().map(|(min, _, max, _)| (min.as_slice(), max.as_slice()))
    }
}

/// The first eight bytes of the value of `len` bytes at `data[start..]`,
/// big-endian and zero-padded: keys that differ order their values as the
/// bytes do (a zero pad only ties with a real zero byte, and ties are
/// settled by [`cmp_tail`]).
#[inline(always)]
fn key(data: &[u8], start: usize, len: usize) -> u64 {
    if start + 8 <= data.len() {
        let w = u64::from_be_bytes(data[start..start + 8].try_into().expect("8 bytes"));
        match len {
            0 => 0,
            1..=7 => w & (!0u64 << (8 * (8 - len))),
            _ => w,
        }
    } else {
        let mut b = [0u8; 8];
        let n = len.min(8);
        b[..n].copy_from_slice(&data[start..start + n]);
        u64::from_be_bytes(b)
    }
}

/// Byte-wise order of two values whose keys are equal: eight bytes at a
/// time from the ninth (the first eight are equal, or the values are
/// shorter), then the tail and the lengths.
#[inline]
fn cmp_tail(a: &[u8], b: &[u8]) -> Ordering {
    let n = a.len().min(b.len());
    let mut i = 8.min(n);
    while i + 8 <= n {
        let x = u64::from_be_bytes(a[i..i + 8].try_into().expect("8 bytes"));
        let y = u64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if x != y {
            return x.cmp(&y);
        }
        i += 8;
    }
    a[i..].cmp(&b[i..])
}

/// A prefix of at most [`TRUNCATE`] bytes cut at a character boundary (a
/// prefix is never greater than the value), and whether it is the value.
fn truncate_min(v: &[u8]) -> (Vec<u8>, bool) {
    if v.len() <= TRUNCATE {
        return (v.to_vec(), true);
    }
    let mut end = TRUNCATE;
    while end > 0 && (v[end] & 0xc0) == 0x80 {
        end -= 1; // v[end] continues a character: cut before that character
    }
    (v[..end].to_vec(), false)
}

/// The value itself if short enough; else a short upper bound: the longest
/// prefix of at most [`TRUNCATE`] bytes that ends in an ASCII byte below
/// 0x7f, with that byte raised by one (still UTF-8, and greater than every
/// value that starts with the prefix). Without such a byte, the value.
fn truncate_max(v: &[u8]) -> (Vec<u8>, bool) {
    if v.len() <= TRUNCATE {
        return (v.to_vec(), true);
    }
    match v[..TRUNCATE].iter().rposition(|&b| b < 0x7f) {
        Some(last) => {
            let mut out = v[..=last].to_vec();
            out[last] += 1;
            (out, false)
        }
        None => (v.to_vec(), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string_chunk(values: &StringArray, nulls: Option<&NullBuffer>) -> Statistics {
        let mut s = StringStats::default();
        s.add(values, nulls);
        s.finish()
    }

    fn minmax(s: &Statistics) -> (Option<Vec<u8>>, Option<Vec<u8>>, u64) {
        let Statistics::ByteArray(v) = s else { panic!("byte array stats") };
        (v.min_opt().map(|b| b.data().to_vec()), v.max_opt().map(|b| b.data().to_vec()), v.null_count_opt().unwrap())
    }

    /// Seeded strings over a small alphabet with shared prefixes, zero bytes
    /// and multi-byte characters, so ties past eight bytes and pads are common.
    fn corpus(n: usize, seed: u64) -> Vec<Option<String>> {
        let parts = ["", "a", "ab", "https://shop.example.com/p/", "\0", "é", "z", "ab\0", "abcdefgh", "abcdefghi"];
        let mut x = seed;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        (0..n)
            .map(|_| {
                if next() % 7 == 0 {
                    return None;
                }
                let k = next() % 4;
                Some((0..k).map(|_| parts[(next() % parts.len() as u64) as usize]).collect())
            })
            .collect()
    }

    #[test]
    fn min_max_and_nulls_match_a_plain_sort() {
        for seed in 1..40u64 {
            let rows = corpus(300, seed);
            let arr = StringArray::from(rows.clone());
            let got = minmax(&string_chunk(&arr, arr.nulls()));
            let present: Vec<&[u8]> = rows.iter().flatten().map(|s| s.as_bytes()).collect();
            let nulls = rows.len() - present.len();
            let want_min = present.iter().min().map(|v| truncate_min(v).0);
            let want_max = present.iter().max().map(|v| truncate_max(v).0);
            assert_eq!(got, (want_min, want_max, nulls as u64), "seed {seed}");
        }
    }

    #[test]
    fn a_chunk_added_in_parts_has_the_statistics_of_the_whole() {
        for seed in 1..40u64 {
            let arr = StringArray::from(corpus(300, seed));
            let whole = minmax(&string_chunk(&arr, arr.nulls()));
            let (a, b) = (seed as usize * 7 % 300, seed as usize * 13 % 300);
            let cuts = [0, a.min(b), a.max(b), 300];
            let mut parts = StringStats::default();
            for w in cuts.windows(2) {
                let part = arr.slice(w[0], w[1] - w[0]);
                parts.add(&part, part.nulls());
            }
            assert_eq!(minmax(&parts.finish()), whole, "seed {seed}, cuts {cuts:?}");
        }
    }

    #[test]
    fn ancestor_nulls_hide_values() {
        // the struct around the leaf is null in rows 0 and 2: "a" and "zz" do not count
        let arr = StringArray::from(vec![Some("a"), Some("m"), Some("zz"), None]);
        let parent = NullBuffer::from(vec![false, true, false, true]);
        let joined = NullBuffer::union(Some(&parent), arr.nulls());
        assert_eq!(minmax(&string_chunk(&arr, joined.as_ref())), (Some(b"m".to_vec()), Some(b"m".to_vec()), 3));
        let none = StringArray::from(vec![None::<&str>, None]);
        assert_eq!(minmax(&string_chunk(&none, none.nulls())), (None, None, 2));
    }

    #[test]
    fn long_values_are_cut_to_bounds() {
        let long_max = format!("{}b{}", "z".repeat(70), "c");
        let long_min = format!("{}{}", "a".repeat(63), "ééé");
        let arr = StringArray::from(vec![long_min.as_str(), "m", long_max.as_str()]);
        let Statistics::ByteArray(v) = string_chunk(&arr, None) else { panic!() };
        // min: cut before the two-byte character that straddles byte 64
        assert_eq!(v.min_opt().unwrap().data(), "a".repeat(63).as_bytes());
        assert!(!v.min_is_exact() && !v.max_is_exact());
        // max: 64 bytes, the last raised: "zzz…{" is above every "zzz…z…"
        let max = v.max_opt().unwrap().data().to_vec();
        assert_eq!(max, format!("{}{{", "z".repeat(63)).as_bytes());
        assert!(max.as_slice() > long_max.as_bytes());
        assert!(std::str::from_utf8(&max).is_ok());
    }
}
