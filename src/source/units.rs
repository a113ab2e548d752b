//! Unit source: one `convert` worker's records, unit after unit.
//!
//! Input: jobs taken from the shared [`Work`]: ranges of plain local files
//! (read here with plain reads), streamed inputs (their decoder is started
//! here, [`super::feed`], and its first chunk read here) and chunks of
//! streams being decoded. Output: per unit, [`Batch`]es of its lines
//! ([`LineReader`], so lines longer than the record size limit are cut and
//! never held whole), with the records inside error lines and raw-backup
//! wrappers taken out ([`unwrap`]), then [`SourceEvent::Ended`] with the
//! input's id as shard: its buffers are written at each unit's end, so a
//! unit's objects depend on the unit alone and a re-run writes the same
//! keys. Positions are byte offsets in the input (decoded bytes for a
//! compressed one); arrival, the input's (an error line's own). After the
//! last job: [`SourceEvent::Finished`]. Nothing is replayable: checkpoints
//! are not stored. Failure: an input that cannot be opened or read is
//! reported ([`Work::problem`]) and what was read of it stands; the
//! source itself never fails.

use super::feed;
use super::inputs::Input;
use super::lines::LineReader;
use super::unwrap::{line_limit, unwrap, LineKind};
use super::work::{Job, Piece, PieceRx, Work};
use super::{Batch, Source, SourceError, SourceEvent};
use crate::checkpoint::ShardCheckpoint;
use crate::ids::ShardId;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use tokio::runtime::Handle;

/// Bytes of a unit's start kept to say what it is when no record parses.
const SNIFF: usize = 4096;

/// Batches between two yields to the runtime (a file range never waits).
const YIELD_EVERY: u32 = 64;

enum Reader {
    File(std::io::Take<std::fs::File>),
    Pieces { rx: PieceRx, cur: Option<(Piece, usize)> },
}

struct Unit {
    input: Arc<Input>,
    start: u64,
    reader: Reader,
    lines: LineReader,
    eof: bool,
    sniff: Vec<u8>,
}

pub struct UnitSource {
    work: Arc<Work>,
    /// Runs the decoders' S3 reads.
    handle: Handle,
    chunk: u64,
    max_line: usize,
    cur: Option<Unit>,
    /// The unit that ended last: its shard, input name and start (when it
    /// began at the input's start).
    ended: Option<(ShardId, String, Vec<u8>)>,
    batches: u32,
}

impl UnitSource {
    /// A worker's source of `work`, for records of up to `max_record`
    /// bytes (lines are held whole up to [`line_limit`] of it, so that
    /// error lines and raw-backup wrappers of records cut to the limit
    /// unwrap; longer lines come cut); streamed inputs are cut in chunks of
    /// `chunk` decoded bytes.
    pub fn new(work: Arc<Work>, handle: Handle, chunk: u64, max_record: usize) -> UnitSource {
        UnitSource { work, handle, chunk, max_line: line_limit(max_record), cur: None, ended: None, batches: 0 }
    }

    fn open(&self, job: Job) -> Option<Unit> {
        let unit = |input: Arc<Input>, start: u64, reader| Unit { input, start, reader, lines: LineReader::new(start, self.max_line), eof: false, sniff: Vec::new() };
        match job {
            Job::Range { input, start, end } => {
                let super::inputs::Location::Local(path) = &input.location else { unreachable!("ranges are of local files") };
                let opened = std::fs::File::open(path).and_then(|mut f| f.seek(SeekFrom::Start(start)).map(|_| f));
                match opened {
                    Ok(f) => {
                        let r = f.take(end.map_or(u64::MAX, |e| e - start));
                        Some(unit(input, start, Reader::File(r)))
                    }
                    Err(e) => {
                        self.work.problem(&input.name, format!("cannot read it: {e}"));
                        None
                    }
                }
            }
            Job::Stream(input) => {
                let rx = feed::start(input.clone(), self.work.clone(), self.handle.clone(), self.chunk);
                Some(unit(input, 0, Reader::Pieces { rx, cur: None }))
            }
            Job::Piped { input, start, pieces, taken } => {
                // the decoder waits for this before feeding the chunk
                let _ = taken.send(());
                Some(unit(input, start, Reader::Pieces { rx: pieces, cur: None }))
            }
        }
    }
}

impl Unit {
    /// Reads once; 0 at the unit's end.
    async fn read(&mut self, work: &Work) -> usize {
        match &mut self.reader {
            Reader::File(f) => match self.lines.read_from(f) {
                Ok(n) => {
                    work.add_bytes(n as u64);
                    n
                }
                Err(e) => {
                    work.problem(&self.input.name, format!("reading it failed at byte {}: {e}; the lines before were converted", self.lines.read_pos()));
                    0
                }
            },
            Reader::Pieces { rx, cur } => loop {
                if let Some((piece, at)) = cur {
                    if *at < piece.bytes.len() {
                        let mut rest = &piece.bytes[*at..];
                        let n = self.lines.read_from(&mut rest).expect("reading memory");
                        *at += n;
                        return n;
                    }
                }
                match rx.recv().await {
                    Some(p) => *cur = Some((p, 0)),
                    None => return 0,
                }
            },
        }
    }

    fn prepare(&mut self, mut b: Batch) -> Batch {
        if self.start == 0 && self.sniff.is_empty() {
            let end = b.records.last().map_or(0, |r| r.range.end).min(SNIFF);
            self.sniff = b.buf[..end].to_vec();
        }
        unwrap(&mut b, self.input.kind.get().copied().unwrap_or(LineKind::Records));
        b
    }
}

impl Source for UnitSource {
    fn checkpoints(&self) -> Vec<(ShardId, ShardCheckpoint)> {
        Vec::new()
    }

    async fn next_event(&mut self) -> Result<Option<SourceEvent>, SourceError> {
        self.batches += 1;
        if self.batches % YIELD_EVERY == 0 {
            tokio::task::yield_now().await;
        }
        loop {
            let Some(u) = &mut self.cur else {
                match self.work.next().await {
                    None => return Ok(Some(SourceEvent::Finished)),
                    Some(job) => {
                        self.cur = self.open(job);
                        if let Some(u) = &self.cur {
                            tracing::debug!(input = %u.input.name, start = u.start, "unit begins");
                        }
                    }
                }
                continue;
            };
            let (shard, arrival) = (u.input.id.clone(), u.input.arrival_ms);
            if u.eof {
                match u.lines.batch(&shard, arrival, true) {
                    Some(b) => return Ok(Some(SourceEvent::Batch(u.prepare(b)))),
                    None => {
                        let done = self.cur.take().expect("current");
                        tracing::debug!(input = %done.input.name, start = done.start, "unit read");
                        self.ended = Some((shard.clone(), done.input.name.clone(), done.sniff));
                        return Ok(Some(SourceEvent::Ended(shard)));
                    }
                }
            }
            if u.read(&self.work).await == 0 {
                u.eof = true;
                continue;
            }
            if let Some(b) = u.lines.batch(&shard, arrival, false) {
                return Ok(Some(SourceEvent::Batch(u.prepare(b))));
            }
        }
    }

    async fn commit(&mut self, _: &ShardId, _: ShardCheckpoint) -> Result<bool, SourceError> {
        Ok(true)
    }

    fn recycle(&mut self, batch: Batch) {
        if let Some(u) = &mut self.cur {
            u.lines.recycle(batch);
        }
    }

    fn diagnose(&self, shard: &ShardId) -> Option<String> {
        let (_, name, start) = self.ended.as_ref().filter(|e| &e.0 == shard && !e.2.is_empty())?;
        super::diagnose_ndjson(name, start)
    }
}
