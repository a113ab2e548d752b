//! Column-chunk statistics for string columns, computed here instead of
//! by parquet-rs.
//!
//! Input: the values of a string column chunk, one at a time ([`MinMax`]),
//! and the min and max and null count of each part of it
//! ([`StringStats::add_min_max`], [`StringStats::add_nulls`]), as
//! [`string_columns`](super::string_columns) finds them.
//! Output: the chunk's [`Statistics`] — null count and byte-wise min and
//! max, as parquet-rs would write them (values longer than
//! [`TRUNCATE`] bytes are cut, and such a max is raised so it stays an
//! upper bound). No failure: an all-null chunk has no min or max.
//!
//! A comparison is decided by the first eight bytes in a register, which
//! separates most values, and falls back to a word-by-word walk (the
//! dictionary's min and max are found among its distinct values only).

use parquet::data_type::ByteArray;
use parquet::file::statistics::{Statistics, ValueStatistics};
use std::cmp::Ordering;

/// Longest min or max kept, as parquet-rs's default `statistics_truncate_length`.
pub const TRUNCATE: usize = 64;

/// The statistics of a chunk written in parts: the min and max and nulls
/// of each part, then [`StringStats::finish`].
#[derive(Debug, Default)]
pub struct StringStats {
    null_count: u64,
    /// Untruncated min and max so far.
    min_max: Option<(Vec<u8>, Vec<u8>)>,
}

impl StringStats {
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
pub(super) fn truncate_min(v: &[u8]) -> (Vec<u8>, bool) {
    if v.len() <= TRUNCATE {
        return (v.to_vec(), true);
    }
    let mut end = TRUNCATE;
    while end > 0 && (v[end] & 0xc0) == 0x80 {
        end -= 1; // v[end] continues a character: cut before that character
    }
    (v[..end].to_vec(), false)
}

/// The value itself if short enough; else a short upper bound, as
/// parquet-rs makes it: the longest prefix of at most [`TRUNCATE`] bytes
/// that ends at a character boundary (at most three bytes short), with its
/// last character that can be raised without growing raised by one (so
/// it is still UTF-8, and greater than every value with that prefix).
/// When no character can be raised, the value itself.
pub(super) fn truncate_max(v: &[u8]) -> (Vec<u8>, bool) {
    if v.len() <= TRUNCATE {
        return (v.to_vec(), true);
    }
    let bound = match std::str::from_utf8(v) {
        Ok(s) => (TRUNCATE - 3..=TRUNCATE).rfind(|&i| s.is_char_boundary(i)).and_then(|i| raise_last_char(&s[..i])),
        // not text (string columns always are): add one to the prefix as a number
        Err(_) => {
            let mut b = v[..TRUNCATE].to_vec();
            let carried = b.iter_mut().rev().all(|x| {
                *x = x.wrapping_add(1);
                *x == 0
            });
            (!carried).then_some(b)
        }
    };
    match bound {
        Some(b) => (b, false),
        None => (v.to_vec(), true),
    }
}

/// `s` up to its last character that has a successor of the same UTF-8
/// width, with that character replaced by its successor.
fn raise_last_char(s: &str) -> Option<Vec<u8>> {
    s.char_indices().rev().find_map(|(i, c)| {
        let next = char::from_u32(c as u32 + 1).filter(|n| n.len_utf8() == c.len_utf8())?;
        let mut out = s.as_bytes()[..i + c.len_utf8()].to_vec();
        next.encode_utf8(&mut out[i..]);
        Some(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Statistics of `values` (None: null) taken in parts cut at `cuts`,
    /// each part through a [`MinMax`], as a string column writes them.
    fn chunk_in_parts(values: &[Option<&str>], cuts: &[usize]) -> Statistics {
        let mut s = StringStats::default();
        for w in cuts.windows(2) {
            let mut part = MinMax::default();
            for v in &values[w[0]..w[1]] {
                match v {
                    Some(v) => part.add(v.as_bytes()),
                    None => s.add_nulls(1),
                }
            }
            if let Some((lo, hi)) = part.get() {
                s.add_min_max(lo, hi);
            }
        }
        s.finish()
    }

    fn string_chunk(values: &[Option<&str>]) -> Statistics {
        chunk_in_parts(values, &[0, values.len()])
    }

    fn minmax(s: &Statistics) -> (Option<Vec<u8>>, Option<Vec<u8>>, u64) {
        let Statistics::ByteArray(v) = s else { panic!("byte array stats") };
        (v.min_opt().map(|b| b.data().to_vec()), v.max_opt().map(|b| b.data().to_vec()), v.null_count_opt().unwrap())
    }

    /// Seeded strings over a small alphabet with shared prefixes, zero bytes
    /// and multi-byte characters, so ties past eight bytes and pads are common.
    fn corpus(n: usize, seed: u64) -> Vec<Option<String>> {
        let parts = ["", "a", "ab", "https://shop.example.com/p/", "\0", "é", "z", "ab\0", "abcdefgh", "abcdefghi"];
        let mut next = crate::hash::xorshift(seed);
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
            let values: Vec<Option<&str>> = rows.iter().map(|v| v.as_deref()).collect();
            let got = minmax(&string_chunk(&values));
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
            let rows = corpus(300, seed);
            let values: Vec<Option<&str>> = rows.iter().map(|v| v.as_deref()).collect();
            let whole = minmax(&string_chunk(&values));
            let (a, b) = (seed as usize * 7 % 300, seed as usize * 13 % 300);
            let cuts = [0, a.min(b), a.max(b), 300];
            assert_eq!(minmax(&chunk_in_parts(&values, &cuts)), whole, "seed {seed}, cuts {cuts:?}");
        }
    }

    #[test]
    fn an_all_null_chunk_has_no_min_or_max() {
        assert_eq!(minmax(&chunk_in_parts(&[None, None, None], &[0, 1, 3])), (None, None, 3));
        assert_eq!(minmax(&chunk_in_parts(&[None, Some("m"), None], &[0, 1, 3])), (Some(b"m".to_vec()), Some(b"m".to_vec()), 2));
    }

    #[test]
    fn long_values_are_cut_to_bounds() {
        let long_max = format!("{}b{}", "z".repeat(70), "c");
        let long_min = format!("{}{}", "a".repeat(63), "ééé");
        let Statistics::ByteArray(v) = string_chunk(&[Some(long_min.as_str()), Some("m"), Some(long_max.as_str())]) else { panic!() };
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
