//! File source: `convert`'s inputs (files, `-`) and the daemon's stdin.
//!
//! Input: a list of inputs read one after the other, each a shard named
//! after its file name (`stdin` for `-`) whose positions are byte offsets.
//! A regular file is read with plain reads (it is in the page cache or on
//! a local disk; `convert` has nothing else to run meanwhile), a pipe or
//! stdin asynchronously. Arrival time: a file's modification time, `-`'s
//! start; for the live stdin of the daemon, the time each read came in.
//! Output: [`Batch`]es of whole lines ([`LineReader`]), then
//! [`SourceEvent::Finished`] after the last input. The live stdin wakes
//! the loop every [`IDLE_WAKE`] while nothing comes (so buffers age out),
//! and at cancellation takes what it has as the last line. Each input ends
//! with [`SourceEvent::Ended`] (its buffers are written then); an input of
//! which no record parsed is described by [`Source::diagnose`] (a JSON
//! array, pretty-printed JSON, binary data). Nothing is replayable:
//! checkpoints are not stored. Failure: [`SourceError::Input`]
//! naming the input that could not be opened or read.

use super::lines::LineReader;
use super::{now_ms, Batch, Source, SourceError, SourceEvent};
use crate::checkpoint::ShardCheckpoint;
use crate::ids::ShardId;
use std::collections::VecDeque;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a live stream's read waits before the loop gets control back.
pub const IDLE_WAKE: Duration = Duration::from_millis(500);

enum Reader {
    File(std::fs::File),
    Stream(Box<dyn tokio::io::AsyncRead + Unpin + Send>),
}

struct Input {
    name: String,
    shard: ShardId,
    arrival_ms: i64,
    reader: Reader,
    lines: LineReader,
    eof: bool,
    /// Its first bytes (up to [`SNIFF`]), to say what it is when none of
    /// its records parses.
    start: Vec<u8>,
}

/// Bytes of an input's start kept to diagnose it.
const SNIFF: usize = 4096;

pub struct FileSource {
    inputs: VecDeque<String>,
    current: Option<Input>,
    /// The daemon's stdin: arrival per read, wakes while idle, stops at cancellation.
    live: Option<CancellationToken>,
    /// Longest line held whole (the record size limit).
    max_line: usize,
    /// The input that ended last: its shard, name and start.
    ended: Option<(ShardId, String, Vec<u8>)>,
}

impl FileSource {
    /// `convert`'s inputs, in order; `-` is stdin. Lines longer than
    /// `max_line` come cut to it (see [`LineReader`]).
    pub fn new(inputs: &[String], max_line: usize) -> FileSource {
        FileSource { inputs: inputs.iter().cloned().collect(), current: None, live: None, max_line, ended: None }
    }

    /// The daemon's stdin, read until its end or `cancel`.
    pub fn stdin(cancel: CancellationToken, max_line: usize) -> FileSource {
        FileSource { inputs: VecDeque::from(["-".to_string()]), current: None, live: Some(cancel), max_line, ended: None }
    }

    fn open(name: &str, max_line: usize) -> Result<Input, SourceError> {
        let input = |shard: ShardId, arrival_ms, reader| Input { name: name.to_string(), shard, arrival_ms, reader, lines: LineReader::new(0, max_line), eof: false, start: Vec::new() };
        if name == "-" {
            return Ok(input(ShardId::new("stdin"), now_ms(), Reader::Stream(Box::new(tokio::io::stdin()))));
        }
        let err = |source| SourceError::Input { path: name.to_string(), source };
        let stem = std::path::Path::new(name).file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let mtime = std::fs::metadata(name).and_then(|m| m.modified()).map_err(err)?;
        let ms = mtime.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        let file = std::fs::File::open(name).map_err(err)?;
        let reader = match file.metadata().is_ok_and(|m| m.is_file() && m.len() > 0) {
            true => Reader::File(file),
            // a pipe, a device or an empty file: read it as a stream
            false => Reader::Stream(Box::new(tokio::fs::File::from_std(file))),
        };
        Ok(input(ShardId::new(&stem), ms, reader))
    }
}

impl Source for FileSource {
    fn checkpoints(&self) -> Vec<(ShardId, ShardCheckpoint)> {
        Vec::new()
    }

    async fn next_event(&mut self) -> Result<Option<SourceEvent>, SourceError> {
        loop {
            let Some(cur) = &mut self.current else {
                match self.inputs.pop_front() {
                    Some(name) => self.current = Some(FileSource::open(&name, self.max_line)?),
                    None => return Ok(Some(SourceEvent::Finished)),
                }
                continue;
            };
            if cur.eof {
                match cur.lines.batch(&cur.shard, cur.arrival_ms, true) {
                    Some(b) => return Ok(Some(SourceEvent::Batch(cur.sniffed(b)))),
                    None => {
                        let done = self.current.take().expect("current");
                        self.ended = Some((done.shard.clone(), done.name, done.start));
                        return Ok(Some(SourceEvent::Ended(done.shard)));
                    }
                }
            }
            let err = |source| SourceError::Input { path: cur.name.clone(), source };
            let n = match (&mut cur.reader, &self.live) {
                (Reader::File(f), _) => cur.lines.read_from(f).map_err(err)?,
                (Reader::Stream(s), None) => cur.lines.read_from_async(s).await.map_err(err)?,
                (Reader::Stream(s), Some(cancel)) => {
                    let read = tokio::select! {
                        _ = cancel.cancelled() => Some(Ok(0)), // what has come is all there is
                        r = cur.lines.read_from_async(s) => Some(r),
                        _ = tokio::time::sleep(IDLE_WAKE) => None,
                    };
                    match read {
                        None => return Ok(None),
                        Some(r) => {
                            cur.arrival_ms = now_ms();
                            r.map_err(err)?
                        }
                    }
                }
            };
            if n == 0 {
                cur.eof = true;
                continue;
            }
            if let Some(b) = cur.lines.batch(&cur.shard, cur.arrival_ms, false) {
                return Ok(Some(SourceEvent::Batch(cur.sniffed(b))));
            }
        }
    }

    async fn commit(&mut self, _: &ShardId, _: ShardCheckpoint) -> Result<bool, SourceError> {
        Ok(true)
    }

    fn recycle(&mut self, batch: Batch) {
        if let Some(cur) = &mut self.current {
            cur.lines.recycle(batch);
        }
    }

    fn diagnose(&self, shard: &ShardId) -> Option<String> {
        let (_, name, start) = self.ended.as_ref().filter(|e| &e.0 == shard)?;
        super::diagnose_ndjson(name, start)
    }
}

impl Input {
    /// Keeps the input's first bytes from its first batch.
    fn sniffed(&mut self, b: Batch) -> Batch {
        if self.start.is_empty() {
            let end = b.records.last().map_or(0, |r| r.range.end).min(SNIFF);
            self.start = b.buf[..end].to_vec();
        }
        b
    }
}
