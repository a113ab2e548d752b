//! Line reading: NDJSON bytes from a reader → [`Batch`]es of whole lines,
//! in bounded memory.
//!
//! Input: reads of up to [`READ_SIZE`] bytes from a file, a pipe or a spool
//! segment, whose first byte is at offset `base` of its shard. Output:
//! batches of the complete lines read so far (blank lines skipped, `\r\n`
//! taken as `\n`), each line's position its byte offset; at the end of the
//! input the last line counts without a newline. The unconsumed rest of a
//! read (part of a line) is kept for the next. A batch holds one read's
//! worth, so its records are still in the CPU's cache when they are
//! decoded. A line longer than `max_line` comes cut to its first
//! `max_line` bytes, marked with its full length ([`Batch::oversized`]).
//! Memory: such a line is never held whole: past `max_line` bytes the
//! rest is skipped while the newline is looked for (it then comes as a
//! batch of its own). So the reader holds
//! at most `max_line` plus [`READ_SIZE`] bytes, and the batch the loop
//! holds (whose buffer it takes back). Never fails itself; the reader's I/O errors are returned as they
//! are.

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
    /// Longest line held whole.
    max_line: usize,
    /// A line longer than `max_line` being skipped: `buf[..max_line]` is
    /// its start.
    skip: Option<Skip>,
    /// A buffer of a batch handed back, ready to take the next read.
    spare: Option<(Vec<u8>, Vec<SourceRecord>)>,
}

struct Skip {
    /// The line's bytes so far (kept and skipped).
    len: u64,
    /// Where the bytes after its newline start in `buf`, once it came.
    rest_at: Option<usize>,
}

impl LineReader {
    /// A reader of an input whose next byte is at offset `base`, holding
    /// lines of up to `max_line` bytes whole.
    pub fn new(base: u64, max_line: usize) -> LineReader {
        LineReader { buf: Vec::new(), filled: 0, base, max_line, skip: None, spare: None }
    }

    /// Offset of the next byte to read.
    pub fn read_pos(&self) -> u64 {
        match &self.skip {
            Some(Skip { len, rest_at: None }) => self.base + len,
            Some(Skip { len, rest_at: Some(r) }) => self.base + len + 1 + (self.filled - r) as u64,
            None => self.base + self.filled as u64,
        }
    }

    /// The buffer's room for the next read, at most [`READ_SIZE`]: the
    /// buffer is grown when full (a line longer than it, up to `max_line`
    /// and a read), and sized [`READ_SIZE`] at first.
    fn room(&mut self) -> &mut [u8] {
        if self.filled == self.buf.len() {
            let len = (self.buf.len() * 2).max(READ_SIZE).min(self.max_line + READ_SIZE);
            self.buf.resize(len.max(self.filled + 1), 0);
        }
        let end = (self.filled + READ_SIZE).min(self.buf.len());
        &mut self.buf[self.filled..end]
    }

    /// Takes in `n` bytes just read into the room: while a long line is
    /// skipped they are dropped up to its newline.
    fn took(&mut self, n: usize) {
        let Some(skip) = self.skip.as_mut().filter(|s| s.rest_at.is_none()) else {
            self.filled += n;
            return;
        };
        let new = &self.buf[self.filled..self.filled + n];
        match memchr::memchr(b'\n', new) {
            None => skip.len += n as u64,
            Some(k) => {
                skip.len += k as u64;
                skip.rest_at = Some(self.filled + k + 1);
                self.filled += n;
            }
        }
    }

    /// Reads once from `r`; returns the bytes read (0 at the end of the input).
    pub fn read_from(&mut self, r: &mut impl Read) -> std::io::Result<usize> {
        loop {
            match r.read(self.room()) {
                Ok(n) => {
                    self.took(n);
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
        self.took(n);
        Ok(n)
    }

    /// Whether bytes of an unfinished line wait for the rest.
    pub fn has_partial(&self) -> bool {
        self.filled > 0
    }

    /// The complete lines read so far as a batch (with `eof`, the rest as
    /// the last line too), or None when there is no whole line yet.
    pub fn batch(&mut self, shard: &ShardId, arrival_ms: i64, eof: bool) -> Option<Batch> {
        if self.skip.as_ref().is_some_and(|s| s.rest_at.is_some() || eof) {
            return Some(self.oversized(shard, arrival_ms));
        }
        if self.skip.is_some() {
            return None;
        }
        let (spare_buf, mut records) = self.spare.take().unwrap_or_default();
        records.clear();
        let used = split_lines(&self.buf[..self.filled], self.base, eof, |off, range| {
            records.push(SourceRecord { pos: Position::offset(off), arrival_ms, range })
        });
        if records.is_empty() {
            self.consume(used); // blank lines only, or nothing whole
            self.spare = Some((spare_buf, records));
            if self.filled > self.max_line && !eof {
                // the line at buf[0] is too long to hold: keep its start, skip the rest
                self.skip = Some(Skip { len: self.filled as u64, rest_at: None });
                self.filled = self.max_line;
            }
            return None;
        }
        // a long line that fit in the buffer whole is cut as a skipped one is
        let mut oversized = Vec::new();
        if used > self.max_line {
            for (i, r) in records.iter_mut().enumerate().filter(|(_, r)| r.range.len() > self.max_line) {
                oversized.push((i, r.range.len() as u64));
                r.range.end = r.range.start + self.max_line;
            }
        }
        // the batch takes the buffer; the rest of the read (part of a line) moves to the spare
        let rest = self.filled - used;
        let buf = self.take_buffer(spare_buf, used, rest);
        self.base += used as u64;
        Some(Batch { shard: shard.clone(), buf, records, oversized })
    }

    /// The long line being skipped, ended by its newline (or the end of
    /// the input), as a batch of one record: its first `max_line` bytes,
    /// marked with its full length.
    fn oversized(&mut self, shard: &ShardId, arrival_ms: i64) -> Batch {
        let skip = self.skip.take().expect("skipping");
        let rest_at = skip.rest_at.unwrap_or(self.filled);
        let (spare_buf, mut records) = self.spare.take().unwrap_or_default();
        records.clear();
        records.push(SourceRecord { pos: Position::offset(self.base), arrival_ms, range: 0..self.max_line });
        let buf = self.take_buffer(spare_buf, rest_at, self.filled - rest_at);
        self.base += skip.len + u64::from(skip.rest_at.is_some());
        Batch { shard: shard.clone(), buf, records, oversized: vec![(0, skip.len)] }
    }

    /// Hands the buffer over (to a batch), with `rest` bytes from `from` on
    /// moved to the start of the next buffer (`spare` when it fits).
    fn take_buffer(&mut self, spare: Vec<u8>, from: usize, rest: usize) -> Vec<u8> {
        let mut next = if spare.len() >= rest.max(READ_SIZE) { spare } else { vec![0; rest.max(READ_SIZE)] };
        next[..rest].copy_from_slice(&self.buf[from..from + rest]);
        self.filled = rest;
        std::mem::replace(&mut self.buf, next)
    }

    /// Drops the first `n` bytes of the buffer.
    fn consume(&mut self, n: usize) {
        self.buf.copy_within(n..self.filled, 0);
        self.filled -= n;
        self.base += n as u64;
    }

    /// Takes back a batch's buffers for the next reads (one grown for a
    /// long line too: it is at most `max_line` and a read).
    pub fn recycle(&mut self, b: Batch) {
        self.spare = Some((b.buf, b.records));
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
            let mut r = LineReader::new(0, 4 * READ_SIZE);
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

    /// Lines longer than the limit come cut to it, marked with their full
    /// length, at their offset; the lines around
    /// them come whole at theirs, however the input is read, with or
    /// without a newline at the end; the reader's buffer stays bounded.
    #[test]
    fn long_lines_come_cut_with_their_length() {
        let max = 1000;
        let lens = [10, 999, 1000, 1001, 5000, 3 * READ_SIZE + 7, 20, 1000, 2 * READ_SIZE, 5];
        let lines: Vec<Vec<u8>> = lens.iter().enumerate().map(|(i, &n)| std::iter::repeat_n(b'a' + i as u8, n).collect()).collect();
        for newline_at_end in [true, false] {
            let mut input = lines.join(&b'\n');
            if newline_at_end {
                input.push(b'\n');
            }
            for step in [3usize, 4096, 1 << 20] {
                let mut r = LineReader::new(0, max);
                let mut got: Vec<(u64, usize, Option<u64>, u8)> = Vec::new();
                let mut src = Chunked(&input, step);
                loop {
                    let n = r.read_from(&mut src).unwrap();
                    assert!(r.buf.len() <= max + READ_SIZE, "buffer of {} bytes", r.buf.len());
                    while let Some(b) = r.batch(&ShardId::new("s"), 0, n == 0) {
                        for (i, rec) in b.records.iter().enumerate() {
                            let cut = b.oversized.iter().find(|o| o.0 == i).map(|o| o.1);
                            let bytes = &b.buf[rec.range.clone()];
                            assert!(bytes.iter().all(|&c| c == bytes[0]));
                            got.push((rec.pos.seq.to_string().parse().unwrap(), bytes.len(), cut, bytes[0]));
                        }
                        r.recycle(b);
                    }
                    if n == 0 {
                        break;
                    }
                }
                let mut off = 0u64;
                let want: Vec<(u64, usize, Option<u64>, u8)> = lens
                    .iter()
                    .enumerate()
                    .map(|(i, &n)| {
                        let w = (off, n.min(max), (n > max).then_some(n as u64), b'a' + i as u8);
                        off += n as u64 + 1;
                        w
                    })
                    .collect();
                assert_eq!(got, want, "step {step}, newline at end {newline_at_end}");
                assert_eq!(r.read_pos(), input.len() as u64);
            }
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
