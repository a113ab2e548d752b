//! KPL aggregated records: de-aggregation.
//!
//! Input: the bytes of one Kinesis record. Output: its user records. A KPL
//! aggregate is `F3 89 9A C2` + an `AggregatedRecord` protobuf + the MD5 of
//! that protobuf; its user records share the Kinesis sequence number and
//! are told apart by their sub-sequence number (their index). Failure: none
//! — bytes that lack the magic, fail the MD5 check or do not parse as the
//! protobuf are one plain record, exactly as the KCL treats them.

use md5::{Digest, Md5};
use std::ops::Range;

pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const DIGEST: usize = 16;

/// Splits `data` into the byte ranges of its user records: one range
/// covering everything for a plain record, one per user record for a KPL
/// aggregate.
pub fn deaggregate(data: &[u8]) -> Vec<Range<usize>> {
    aggregated(data).unwrap_or_else(|| std::iter::once(0..data.len()).collect())
}

fn aggregated(data: &[u8]) -> Option<Vec<Range<usize>>> {
    if data.len() < MAGIC.len() + DIGEST || data[..4] != MAGIC {
        return None;
    }
    let body = 4..data.len() - DIGEST;
    if Md5::digest(&data[body.clone()]).as_slice() != &data[body.end..] {
        return None;
    }
    let mut out = Vec::new();
    let mut r = Reader { b: data, at: body.start, end: body.end };
    while r.at < r.end {
        let (field, wire) = r.key()?;
        match (field, wire) {
            // records: a nested Record message
            (3, 2) => {
                let msg = r.len_delimited()?;
                out.push(record_data(data, msg)?);
            }
            (_, 2) => {
                r.len_delimited()?;
            }
            (_, w) => r.skip(w)?,
        }
    }
    Some(out)
}

/// The `data` field (3) of one `Record` message.
fn record_data(b: &[u8], msg: Range<usize>) -> Option<Range<usize>> {
    let mut r = Reader { b, at: msg.start, end: msg.end };
    let mut data = None;
    while r.at < r.end {
        let (field, wire) = r.key()?;
        match (field, wire) {
            (3, 2) => data = Some(r.len_delimited()?),
            (_, 2) => {
                r.len_delimited()?;
            }
            (_, w) => r.skip(w)?,
        }
    }
    data
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
    end: usize,
}

impl Reader<'_> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            if self.at >= self.end {
                return None;
            }
            let byte = self.b[self.at];
            self.at += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    fn key(&mut self) -> Option<(u64, u8)> {
        let k = self.varint()?;
        Some((k >> 3, (k & 7) as u8))
    }
    fn len_delimited(&mut self) -> Option<Range<usize>> {
        let n = usize::try_from(self.varint()?).ok()?;
        let start = self.at;
        let end = start.checked_add(n).filter(|e| *e <= self.end)?;
        self.at = end;
        Some(start..end)
    }
    fn skip(&mut self, wire: u8) -> Option<()> {
        match wire {
            0 => {
                self.varint()?;
            }
            1 => self.at = self.at.checked_add(8).filter(|e| *e <= self.end)?,
            5 => self.at = self.at.checked_add(4).filter(|e| *e <= self.end)?,
            _ => return None,
        }
        Some(())
    }
}

/// Builds a KPL aggregate (for tests and the bench producer): the same wire
/// format the KPL writes.
pub fn aggregate(partition_key: &str, records: &[&[u8]]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn field(out: &mut Vec<u8>, n: u64, bytes: &[u8]) {
        varint(out, n << 3 | 2);
        varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
    let mut body = Vec::new();
    field(&mut body, 1, partition_key.as_bytes());
    for r in records {
        let mut rec = Vec::new();
        varint(&mut rec, 1 << 3); // partition_key_index = 0
        varint(&mut rec, 0);
        field(&mut rec, 3, r);
        field(&mut body, 3, &rec);
    }
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&body);
    out.extend_from_slice(&Md5::digest(&body));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_an_aggregate_and_keeps_plain_or_corrupt_records_whole() {
        let recs: [&[u8]; 3] = [b"{\"a\":1}", b"", b"{\"c\":3}"];
        let agg = aggregate("pk", &recs);
        let parts: Vec<&[u8]> = deaggregate(&agg).into_iter().map(|r| &agg[r]).collect();
        assert_eq!(parts, recs);
        assert_eq!(deaggregate(b"{\"plain\":true}"), vec![0..14]);
        let mut bad = agg.clone();
        let n = bad.len();
        bad[n - 1] ^= 1; // MD5 mismatch: one plain record, as the KCL does
        assert_eq!(deaggregate(&bad), vec![0..bad.len()]);
        let mut cut = MAGIC.to_vec();
        cut.extend_from_slice(&[0x1a, 0x50]); // length runs past the end
        cut.extend_from_slice(&Md5::digest([0x1a, 0x50]));
        assert_eq!(deaggregate(&cut), vec![0..cut.len()]);
    }
}
