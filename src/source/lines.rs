//! Line reading: NDJSON bytes from a reader → [`Batch`]es of whole lines.
//!
//! Input: reads of up to [`READ_SIZE`] bytes from a file, a pipe or a spool
//! segment, whose first byte is at offset `base` of its shard. Output:
//! batches of the complete lines read so far (blank lines skipped, `\r\n`
//! taken as `\n`), each line's position its byte offset; at the end of the
//! input the last line counts without a newline. The unconsumed rest of a
//! read (part of a line) is kept for the next. A batch holds one read's
//! worth, so its records are still in the CPU's cache when they are
//! decoded. Memory: one read buffer plus the batch the loop holds; a line
//! longer than the buffer grows it until the line fits, and a recycled
//! batch of such a size is dropped. Never fails itself; the reader's I/O
//! errors are returned as they are.

use super::{split_lines, Batch, SourceRecord};
use crate::ids::{Position, ShardId};
use std::io::Read;

/// Bytes read at a time: well inside a core's L2 cache.
pub const READ_SIZE: usize = 256 << 10;

pub struct LineReader {
    /// `buf[..filled]` holds bytes read and not yet in a batch.
    buf: Vec<u8>,
    filled: usize,
    /// Offset of `buf[0]` in the input.
    base: u64,
    /// A buffer of a batch handed back, ready to take the next read.
    spare: Option<(Vec<u8>, Vec<SourceRecord>)>,
}

impl LineReader {
    /// A reader of an input whose next byte is at offset `base`.
    pub fn new(base: u64) -> LineReader {
        LineReader { buf: Vec::new(), filled: 0, base, spare: None }
    }

    /// Offset of the next byte to read.
    pub fn read_pos(&self) -> u64 {
        self.base + self.filled as u64
    }

    /// The buffer's free room for the next read: grown when full (a line
    /// longer than it), and sized [`READ_SIZE`] at first.
    fn room(&mut self) -> &mut [u8] {
        if self.filled == self.buf.len() {
            let len = (self.buf.len() * 2).max(READ_SIZE);
            self.buf.resize(len, 0);
        }
        &mut self.buf[self.filled..]
    }

    /// Reads once from `r`; returns the bytes read (0 at the end of the input).
    pub fn read_from(&mut self, r: &mut impl Read) -> std::io::Result<usize> {
        loop {
            match r.read(self.room()) {
                Ok(n) => {
                    self.filled += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// [`LineReader::read_from`] for an asynchronous stream (a pipe, stdin).
    pub async fn read_from_async(&mut self, r: &mut (impl tokio::io::AsyncRead + Unpin + ?Sized)) -> std::io::Result<usize> {
        use tokio::io::AsyncReadExt;
        let n = r.read(self.room()).await?;
        self.filled += n;
        Ok(n)
    }

    /// Whether bytes of an unfinished line wait for the rest.
    pub fn has_partial(&self) -> bool {
        self.filled > 0
    }

    /// The complete lines read so far as a batch (with `eof`, the rest as
    /// the last line too), or None when there is no whole line yet.
    pub fn batch(&mut self, shard: &ShardId, arrival_ms: i64, eof: bool) -> Option<Batch> {
        let (spare_buf, mut records) = self.spare.take().unwrap_or_default();
        records.clear();
        let used = split_lines(&self.buf[..self.filled], self.base, eof, |off, range| {
            records.push(SourceRecord { pos: Position::offset(off), arrival_ms, range })
        });
        if records.is_empty() {
            self.consume(used); // blank lines only, or nothing whole
            self.spare = Some((spare_buf, records));
            return None;
        }
        // the batch takes the buffer; the rest of the read (part of a line) moves to the spare
        let rest = self.filled - used;
        let mut next = if spare_buf.len() >= rest.max(READ_SIZE) { spare_buf } else { vec![0; rest.max(READ_SIZE)] };
        next[..rest].copy_from_slice(&self.buf[used..self.filled]);
        let buf = std::mem::replace(&mut self.buf, next);
        self.filled = rest;
        self.base += used as u64;
        Some(Batch { shard: shard.clone(), buf, records })
    }

    /// Drops the first `n` bytes of the buffer.
    fn consume(&mut self, n: usize) {
        self.buf.copy_within(n..self.filled, 0);
        self.filled -= n;
        self.base += n as u64;
    }

    /// Takes back a batch's buffers for the next reads (a buffer grown for
    /// a long line is let go).
    pub fn recycle(&mut self, b: Batch) {
        if b.buf.len() == READ_SIZE {
            self.spare = Some((b.buf, b.records));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `input` a few bytes at a time (and with batches recycled or
    /// not): every line comes once, at its offset, with its bytes.
    #[test]
    fn every_line_once_at_its_offset_however_the_input_is_read() {
        let lines: Vec<String> = (0..3000).map(|i| format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(i * 37 % 700))).collect();
        let mut input = lines.join("\n").into_bytes();
        input.extend_from_slice(b"\n\n  \r\n");
        let long = format!("{{\"long\":\"{}\"}}", "y".repeat(3 * READ_SIZE));
        input.extend_from_slice(long.as_bytes()); // the last line: long, no newline
        let mut want: Vec<(u64, String)> = Vec::new();
        let mut off = 0u64;
        for l in lines.iter().chain([&long]) {
            want.push((off, l.clone()));
            off += l.len() as u64 + 1;
            if l.starts_with("{\"i\":2999,") {
                off += 5; // the blank lines
            }
        }
        for (step, recycle) in [(7usize, true), (4096, false), (1 << 20, true)] {
            let shard = ShardId::new("s");
            let mut r = LineReader::new(0);
            let mut got = Vec::new();
            let mut src = Chunked(&input, step);
            loop {
                let n = r.read_from(&mut src).unwrap();
                if let Some(b) = r.batch(&shard, 7, n == 0) {
                    for rec in &b.records {
                        let Position { seq, .. } = &rec.pos;
                        got.push((seq.to_string().parse::<u64>().unwrap(), String::from_utf8(b.buf[rec.range.clone()].to_vec()).unwrap()));
                    }
                    if recycle {
                        r.recycle(b);
                    }
                }
                if n == 0 {
                    break;
                }
            }
            assert!(!r.has_partial(), "step {step}");
            assert_eq!(got.len(), want.len(), "step {step}");
            assert!(got == want, "step {step}: lines differ");
        }
    }

    /// A reader that returns at most `step` bytes per read.
    struct Chunked<'a>(&'a [u8], usize);

    impl Read for Chunked<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.1.min(out.len()).min(self.0.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
}
