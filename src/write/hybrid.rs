//! Parquet's RLE / bit-packing hybrid encoding, for definition and
//! repetition levels and dictionary indices.
//!
//! Input: values below 2^`width`. Output: their bytes in the encoding the
//! Parquet format specifies (runs of eight or more equal values as RLE
//! runs, the rest bit-packed in groups of eight); a reader of the spec
//! decodes them back (the tests hold such a reader). Never fails.

/// Appends `values` to `buf` in Parquet's RLE / bit-packing hybrid
/// encoding at `width` bits (at most 32): runs of eight or more equal
/// values as RLE runs, the rest bit-packed in groups of eight. A literal
/// stretch borrows values from the run after it to fill its last group;
/// only the last group of the stream is padded (readers stop at the page's
/// value count).
pub(super) fn rle_into<T: Copy + Into<u64> + PartialEq>(buf: &mut Vec<u8>, width: u8, values: &[T]) {
    let n = values.len();
    // one value throughout (the levels of a column without nulls or lists):
    // one run, found by a loop the compiler vectorizes
    if n >= 8 && values.iter().fold(true, |same, v| same & (*v == values[0])) {
        rle_run(buf, width, values[0].into(), n);
        return;
    }
    rle_runs::<T, true>(buf, width, values);
}

/// [`rle_into`]'s runs and literals. With `SKIP`, the scan for the next run
/// skips ahead: every run of eight starting in i..=i+7 covers i+7, and those
/// starting before i+7 cover i+6 too, so when those two differ the next
/// possible start is i+7 (dictionary indices of varied values skip 7 at a
/// time). Without, it steps one value at a time (the tests' reference).
fn rle_runs<T: Copy + Into<u64> + PartialEq, const SKIP: bool>(buf: &mut Vec<u8>, width: u8, values: &[T]) {
    let n = values.len();
    let (mut lit, mut i) = (0, 0); // literals not yet written start at lit
    while i + 8 <= n {
        if SKIP && values[i + 7] != values[i + 6] {
            i += 7;
            continue;
        }
        if values[i + 7] != values[i] {
            i += 1; // no run of eight starts here
            continue;
        }
        let mut j = i + 1;
        while j < n && values[j] == values[i] {
            j += 1;
        }
        if j - i >= 8 + (8 - (i - lit) % 8) % 8 {
            let fill = (8 - (i - lit) % 8) % 8;
            bit_packed(buf, width, &values[lit..i + fill]);
            rle_run(buf, width, values[i].into(), j - i - fill);
            lit = j;
        }
        i = j;
    }
    bit_packed(buf, width, &values[lit..]);
}

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// An RLE run: count << 1, then the value in ceil(width / 8) bytes.
fn rle_run(buf: &mut Vec<u8>, width: u8, value: u64, count: usize) {
    varint(buf, (count as u64) << 1);
    buf.extend_from_slice(&value.to_le_bytes()[..(width as usize).div_ceil(8)]);
}

/// A bit-packed run of `values` (groups of eight, the last padded with
/// zeros): groups << 1 | 1, then the values' low `width` bits, LSB first.
fn bit_packed<T: Copy + Into<u64>>(buf: &mut Vec<u8>, width: u8, values: &[T]) {
    if values.is_empty() {
        return;
    }
    let groups = values.len().div_ceil(8);
    varint(buf, (groups as u64) << 1 | 1);
    let w = width as usize;
    for chunk in values.chunks(8) {
        let mut g = [0u64; 8];
        for (k, &v) in chunk.iter().enumerate() {
            g[k] = v.into();
        }
        // eight values are `width` bytes
        // (whole words appended, then cut: a fixed-size copy, not a memcpy call)
        if w <= 8 {
            let acc = (0..8).fold(0u64, |acc, k| acc | g[k] << (k * w));
            let at = buf.len();
            buf.extend_from_slice(&acc.to_le_bytes());
            buf.truncate(at + w);
        } else if w <= 16 {
            let acc = (0..8).fold(0u128, |acc, k| acc | (g[k] as u128) << (k * w));
            let at = buf.len();
            buf.extend_from_slice(&acc.to_le_bytes());
            buf.truncate(at + w);
        } else {
            let (mut acc, mut bits) = (0u64, 0);
            for v in g {
                acc |= v << bits;
                bits += w;
                while bits >= 8 {
                    buf.push(acc as u8);
                    acc >>= 8;
                    bits -= 8;
                }
            }
        }
    }
}

/// Bits to write values up to `max` (0 for 0), as parquet-rs counts them.
pub(super) fn bits(max: u64) -> u8 {
    (64 - max.leading_zeros()) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hybrid decoder of the Parquet spec, for `n` values.
    fn decode(mut b: &[u8], width: u8, n: usize) -> Vec<u64> {
        let mut out = Vec::new();
        let varint = |b: &mut &[u8]| {
            let (mut v, mut shift) = (0u64, 0);
            loop {
                let byte = b[0];
                *b = &b[1..];
                v |= ((byte & 0x7f) as u64) << shift;
                if byte < 0x80 {
                    return v;
                }
                shift += 7;
            }
        };
        while out.len() < n {
            let header = varint(&mut b);
            if header & 1 == 0 {
                let bytes = (width as usize).div_ceil(8);
                let mut v = [0u8; 8];
                v[..bytes].copy_from_slice(&b[..bytes]);
                b = &b[bytes..];
                out.extend(std::iter::repeat_n(u64::from_le_bytes(v), (header >> 1) as usize));
            } else {
                let count = (header >> 1) as usize * 8;
                let mut bit = 0usize;
                for _ in 0..count {
                    let mut v = 0u64;
                    for k in 0..width as usize {
                        v |= (((b[(bit + k) / 8] >> ((bit + k) % 8)) & 1) as u64) << k;
                    }
                    bit += width as usize;
                    out.push(v);
                }
                b = &b[count * width as usize / 8..];
            }
        }
        assert!(b.is_empty(), "bytes left over");
        out.truncate(n);
        out
    }

    /// The scan that skips ahead finds the runs the one-step scan finds, so
    /// both write the same bytes.
    #[test]
    fn the_hybrid_encoding_skips_ahead_to_the_runs_a_one_step_scan_finds() {
        let mut next = crate::hash::xorshift(0x9e37_79b9_7f4a_7c15);
        for case in 0..3000 {
            // few distinct values and short runs: many near-runs of 6 to 9
            let len = (next() % 300) as usize + case % 5;
            let distinct = 1 + next() % 4;
            let mut values: Vec<u32> = Vec::new();
            while values.len() < len {
                let v = (next() % distinct) as u32;
                let run = (next() % 12) as usize + 1;
                values.extend(std::iter::repeat_n(v, run.min(len - values.len())));
            }
            let (mut a, mut b) = (Vec::new(), Vec::new());
            rle_runs::<u32, true>(&mut a, 2, &values);
            rle_runs::<u32, false>(&mut b, 2, &values);
            assert_eq!(a, b, "values {values:?}");
        }
    }

    #[test]
    fn the_hybrid_encoding_decodes_to_its_values() {
        let mut next = crate::hash::xorshift(0x2545_f491_4f6c_dd1d);
        for width in [0u8, 1, 2, 3, 7, 8, 9, 16, 20, 32] {
            let max = if width == 0 { 0 } else { (1u64 << width) - 1 };
            for case in 0..300 {
                // runs of random lengths (1..40) of random values
                let len = (next() % 200) as usize + case % 3;
                let mut values: Vec<u32> = Vec::new();
                while values.len() < len {
                    let v = (next() & max) as u32;
                    let run = (next() % 40) as usize + 1;
                    values.extend(std::iter::repeat_n(v, run.min(len - values.len())));
                }
                let mut buf = vec![0xaa]; // appends after what is there
                rle_into(&mut buf, width, &values);
                assert_eq!(buf[0], 0xaa);
                let want: Vec<u64> = values.iter().map(|&v| v as u64).collect();
                assert_eq!(decode(&buf[1..], width, values.len()), want, "width {width} values {values:?}");
            }
        }
        // a long run is one RLE run: 2 bytes of header, 1 of value
        let mut buf = Vec::new();
        rle_into(&mut buf, 3, &[5u8; 1000]);
        assert_eq!(buf, vec![0xd0, 0x0f, 5]);
    }
}
