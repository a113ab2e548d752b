//! Stdin source: the daemon's records piped in (`source.kind = "stdin"`).
//!
//! Input: the process's stdin, read asynchronously as one shard named
//! `stdin` whose positions are byte offsets, until it ends or the
//! cancellation token fires (what has come by then is the last line).
//! Arrival time: when each read came in. Output: [`Batch`]es of whole
//! lines ([`LineReader`]: lines over the record size limit come cut); the
//! loop is woken every [`IDLE_WAKE`] while nothing comes (so buffers age
//! out); at the end [`SourceEvent::Ended`] then [`SourceEvent::Finished`].
//! An input of which no record parsed is described by [`Source::diagnose`]
//! (a JSON array, pretty-printed JSON, binary data). Nothing is
//! replayable: checkpoints are not stored. Failure:
//! [`SourceError::Input`] when stdin cannot be read. (`convert`'s inputs
//! are read by [`super::units`].)

use super::lines::LineReader;
use super::{now_ms, Batch, Source, SourceError, SourceEvent};
use crate::checkpoint::ShardCheckpoint;
use crate::ids::ShardId;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a read waits before the loop gets control back.
pub const IDLE_WAKE: Duration = Duration::from_millis(500);

/// Bytes of stdin's start kept to diagnose it.
const SNIFF: usize = 4096;

pub struct StdinSource {
    stdin: tokio::io::Stdin,
    shard: ShardId,
    lines: LineReader,
    cancel: CancellationToken,
    eof: bool,
    /// False once the shard ended.
    open: bool,
    start: Vec<u8>,
}

impl StdinSource {
    /// Stdin, read until its end or `cancel`; lines longer than `max_line`
    /// come cut to it.
    pub fn new(cancel: CancellationToken, max_line: usize) -> StdinSource {
        StdinSource { stdin: tokio::io::stdin(), shard: ShardId::new("stdin"), lines: LineReader::new(0, max_line), cancel, eof: false, open: true, start: Vec::new() }
    }

    /// Keeps stdin's first bytes from its first batch.
    fn sniffed(&mut self, b: Batch) -> Batch {
        if self.start.is_empty() {
            let end = b.records.last().map_or(0, |r| r.range.end).min(SNIFF);
            self.start = b.buf[..end].to_vec();
        }
        b
    }
}

impl Source for StdinSource {
    fn checkpoints(&self) -> Vec<(ShardId, ShardCheckpoint)> {
        Vec::new()
    }

    async fn next_event(&mut self) -> Result<Option<SourceEvent>, SourceError> {
        loop {
            if !self.open {
                return Ok(Some(SourceEvent::Finished));
            }
            if self.eof {
                return Ok(Some(match self.lines.batch(&self.shard, now_ms(), true) {
                    Some(b) => SourceEvent::Batch(self.sniffed(b)),
                    None => {
                        self.open = false;
                        SourceEvent::Ended(self.shard.clone())
                    }
                }));
            }
            let read = tokio::select! {
                _ = self.cancel.cancelled() => Some(Ok(0)), // what has come is all there is
                r = self.lines.read_from_async(&mut self.stdin) => Some(r),
                _ = tokio::time::sleep(IDLE_WAKE) => None,
            };
            let n = match read {
                None => return Ok(None),
                Some(r) => r.map_err(|source| SourceError::Input { path: "-".into(), source })?,
            };
            if n == 0 {
                self.eof = true;
                continue;
            }
            if let Some(b) = self.lines.batch(&self.shard, now_ms(), false) {
                return Ok(Some(SourceEvent::Batch(self.sniffed(b))));
            }
        }
    }

    async fn commit(&mut self, _: &ShardId, _: ShardCheckpoint) -> Result<bool, SourceError> {
        Ok(true)
    }

    fn recycle(&mut self, batch: Batch) {
        self.lines.recycle(batch);
    }

    fn diagnose(&self, shard: &ShardId) -> Option<String> {
        (shard == &self.shard && !self.open).then(|| super::diagnose_ndjson("-", &self.start)).flatten()
    }
}
