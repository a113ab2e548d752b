//! Sources: where records come from, with a position per record.
//!
//! Every source hands the pipeline [`Batch`]es: records of one shard in
//! position order, each with its byte range in the batch buffer and its
//! arrival time. Replayable sources (spool, Kinesis) restore a shard's
//! [`ShardCheckpoint`](crate::pipeline::ShardCheckpoint) before reading and
//! store it durably when the pipeline reports progress.

pub mod spool;

use crate::ids::{Position, ShardId};
use std::ops::Range;

pub struct Batch {
    pub shard: ShardId,
    pub arrival_ms: i64,
    pub buf: Vec<u8>,
    /// (byte offset in the shard = position, range in `buf`).
    pub records: Vec<(u64, Range<usize>)>,
}

impl Batch {
    pub fn iter(&self) -> impl Iterator<Item = (Position, &[u8])> {
        self.records.iter().map(|(off, r)| (Position::offset(*off), &self.buf[r.clone()]))
    }
}

/// Splits complete lines of `buf` (which starts at shard offset `base`) into
/// records; blank lines are skipped. Returns the bytes consumed (up to the
/// last newline, or everything when `eof`).
pub fn split_lines(buf: &[u8], base: u64, eof: bool, out: &mut Vec<(u64, Range<usize>)>) -> usize {
    let mut start = 0;
    while start < buf.len() {
        let end = match memchr::memchr(b'\n', &buf[start..]) {
            Some(i) => start + i,
            None if eof => buf.len(),
            None => break,
        };
        let mut stop = end;
        if stop > start && buf[stop - 1] == b'\r' {
            stop -= 1;
        }
        if buf[start..stop].iter().any(|b| !b.is_ascii_whitespace()) {
            out.push((base + start as u64, start..stop));
        }
        start = (end + 1).min(buf.len());
        if end == buf.len() {
            break;
        }
    }
    start
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_complete_lines_only() {
        let mut out = Vec::new();
        let n = split_lines(b"{\"a\":1}\n\n  \r\n{\"b\":2}\r\n{\"c\"", 100, false, &mut out);
        assert_eq!(n, 22);
        assert_eq!(out, vec![(100, 0..7), (113, 13..20)]);
        out.clear();
        let n = split_lines(b"{\"c\":3}", 0, true, &mut out);
        assert_eq!((n, out), (7, vec![(0, 0..7)]));
    }
}
