//! Sources: where records come from, with a position per record (an I/O edge).
//!
//! Every source hands the ingestion loop [`Batch`]es: records of one shard
//! in position order, each with its [`Position`] (sequence and sub-sequence
//! number; a byte offset for files), its arrival time and its bytes.
//! Replayable sources (spool, Kinesis, the front door's log) hand over
//! each shard's stored [`ShardCheckpoint`] before reading, and store a new
//! one durably when the commit stage commits it (after the objects it
//! covers are written); one-shot sources (`convert`'s units, stdin) store
//! nothing and end with [`SourceEvent::Finished`].

pub mod feed;
pub mod http;
pub mod coordinator;
pub mod inputs;
pub mod kafka;
pub mod kinesis;
pub mod lease;
pub mod leased;
pub mod lines;
pub mod read_ahead;
pub mod segments;
pub mod spool;
pub mod sqlite_leases;
pub mod stdin;
pub mod units;
pub mod unwrap;
pub mod work;

use crate::checkpoint::{FlushIntent, ShardCheckpoint};
use crate::ids::{Position, ShardId};
use std::future::Future;
use std::ops::Range;

pub struct SourceRecord {
    pub pos: Position,
    pub arrival_ms: i64,
    /// Where the record's bytes are in [`Batch::buf`].
    pub range: Range<usize>,
}

pub struct Batch {
    pub shard: ShardId,
    pub buf: Vec<u8>,
    pub records: Vec<SourceRecord>,
    /// Records cut short because they were longer than the record size
    /// limit: (index in `records`, full length); ascending. Their bytes are
    /// the first `max_record_size` of the record.
    pub oversized: Vec<(usize, u64)>,
}

impl Batch {
    pub fn iter(&self) -> impl Iterator<Item = (&Position, i64, &[u8])> {
        self.records.iter().map(|r| (&r.pos, r.arrival_ms, &self.buf[r.range.clone()]))
    }

    /// The memory the batch holds (its record bytes and their entries).
    pub fn footprint(&self) -> usize {
        self.buf.capacity() + self.records.capacity() * std::mem::size_of::<SourceRecord>()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Spool(#[from] spool::SpoolError),
    #[error(transparent)]
    Kinesis(#[from] kinesis::KinesisError),
    #[error(transparent)]
    Kafka(#[from] kafka::KafkaSourceError),
    #[error("{path}: {source}")]
    Input { path: String, source: std::io::Error },
    #[error(transparent)]
    State(#[from] segments::StateError),
}

/// What a source hands the runner.
pub enum SourceEvent {
    /// Records of one shard, in order.
    Batch(Batch),
    /// This process now owns the shard (a lease was taken): restore its
    /// checkpoint, and replay the flush intent found with it, before its
    /// first batch arrives.
    Assigned { shard: ShardId, checkpoint: ShardCheckpoint, intent: Vec<FlushIntent> },
    /// The shard's lease is gone: drop its buffers unwritten.
    Revoked(ShardId),
    /// The shard was read to its end: flush it, then call [`Source::end_shard`].
    Ended(ShardId),
    /// The source has nothing more, ever (the end of `convert`'s inputs,
    /// of stdin): flush everything and stop.
    Finished,
}

/// A source of records.
///
/// The commit stage's order per shard is [`Source::begin_flush`] (the
/// intent) → uploads, each only while [`Source::may_write`] → catalog →
/// [`Source::commit`] (the checkpoint, which clears the intent).
pub trait Source {
    /// The checkpoints stored for the shards this source knows at start.
    fn checkpoints(&self) -> Vec<(ShardId, ShardCheckpoint)>;
    /// The next event, or None when nothing new is available right now.
    fn next_event(&mut self) -> impl Future<Output = Result<Option<SourceEvent>, SourceError>>;
    /// Stores a shard's checkpoint durably. False: the shard is no longer
    /// ours (lease lost), nothing was stored.
    fn commit(&mut self, shard: &ShardId, cp: ShardCheckpoint) -> impl Future<Output = Result<bool, SourceError>>;
    /// Records the objects a flush is about to write. False: the shard is
    /// no longer ours; write nothing for it.
    fn begin_flush(&mut self, _shard: &ShardId, _intent: &[FlushIntent]) -> impl Future<Output = Result<bool, SourceError>> {
        async { Ok(true) }
    }
    /// Whether uploads for the shard may go ahead now (self-fencing).
    fn may_write(&self, _shard: &ShardId) -> bool {
        true
    }
    /// The runner dropped the shard's buffers mid-flush (the fence passed
    /// before every upload started): stop reading it and give it up, so
    /// that it is read again only from its stored checkpoint and intent.
    /// Reading on from where the dropped buffers ended would lose them.
    fn abandon(&mut self, _shard: &ShardId) -> impl Future<Output = Result<(), SourceError>> {
        async { Ok(()) }
    }
    /// Marks a shard finished after its last checkpoint (resharding).
    fn end_shard(&mut self, _shard: &ShardId) -> impl Future<Output = Result<(), SourceError>> {
        async { Ok(()) }
    }
    /// Gives up every shard after the final flush (shutdown).
    fn close(&mut self) -> impl Future<Output = Result<(), SourceError>> {
        async { Ok(()) }
    }
    /// Takes back a batch the loop is done with, to reuse its buffers.
    fn recycle(&mut self, _batch: Batch) {}
    /// What a shard that just [`SourceEvent::Ended`] looks like when its
    /// start is not NDJSON (a JSON array, pretty-printed JSON, binary
    /// data): one sentence for the user, naming the fix.
    fn diagnose(&self, _shard: &ShardId) -> Option<String> {
        None
    }
}

/// What the start of an input looks like when it is not NDJSON, and how to
/// make NDJSON of it (`name` is how the user called the input); None when
/// it starts like NDJSON.
pub fn diagnose_ndjson(name: &str, start: &[u8]) -> Option<String> {
    let text = start.strip_prefix(b"\xef\xbb\xbf").unwrap_or(start);
    let first = text.iter().position(|b| !b.is_ascii_whitespace()).map(|i| &text[i..]).unwrap_or_default();
    let utf8 = match std::str::from_utf8(text) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && e.valid_up_to() + 4 > text.len(), // cut inside a character at the end
    };
    // a pretty-printer puts an opening bracket alone (or a first member) on
    // the first line; only a first line seen whole is judged
    let first_line = first.iter().position(|&b| b == b'\n').map(|n| first[..n].trim_ascii());
    let pretty = first_line.is_some_and(|l| l == b"{" || (l.starts_with(b"{") && (l.ends_with(b",") || l.ends_with(b"{") || l.ends_with(b"["))));
    Some(if !utf8 || text.contains(&0) {
        "this looks like binary data, not UTF-8 text; lakehose reads NDJSON: one JSON object per line".into()
    } else if first.starts_with(b"[") {
        format!("this looks like a JSON array; lakehose reads one JSON object per line; `jq -c '.[]' {name}` converts it")
    } else if pretty {
        format!("this looks like pretty-printed JSON; lakehose reads one JSON object per line; `jq -c . {name}` converts it")
    } else {
        return None;
    })
}

/// Splits complete lines of `buf` (which starts at shard offset `base`):
/// `each(offset, range)` for every line but blank ones, without its `\n`
/// or `\r\n`. Returns the bytes consumed (up to the last newline, or
/// everything when `eof`).
pub fn split_lines(buf: &[u8], base: u64, eof: bool, mut each: impl FnMut(u64, Range<usize>)) -> usize {
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
            each(base + start as u64, start..stop);
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
        let n = split_lines(b"{\"a\":1}\n\n  \r\n{\"b\":2}\r\n{\"c\"", 100, false, |o, r| out.push((o, r)));
        assert_eq!(n, 22);
        assert_eq!(out, vec![(100, 0..7), (113, 13..20)]);
        out.clear();
        let n = split_lines(b"{\"c\":3}", 0, true, |o, r| out.push((o, r)));
        assert_eq!((n, out), (7, vec![(0, 0..7)]));
    }
}
