//! Spool source: a directory of NDJSON segment files, read with durable offsets.
//!
//! Input: files in `dir` (names not starting with `.`), read in name order,
//! each a shard whose positions are byte offsets of its lines. Writers
//! append whole lines (ending in `\n`); an unterminated last line waits for
//! its newline. Output: [`Batch`]es of complete lines. Durability: the
//! state file (`.lakehose-spool-state.json` in the state directory) holds
//! each segment's arrival time and [`ShardCheckpoint`]; it is replaced
//! atomically (write, fsync, rename, fsync dir) on every commit, which the
//! runner makes only after the objects it describes are written. A restart
//! after a crash or kill -9 resumes from it, neither losing nor repeating a
//! record. Segments are never modified or deleted by lakehose.

use super::lines::LineReader;
use super::segments::{SegmentState, StateError};
use super::{now_ms, Batch, Source, SourceError, SourceEvent};
use crate::checkpoint::{Resume, ShardCheckpoint};
use crate::ids::{Position, ShardId};
use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

pub const STATE_FILE: &str = ".lakehose-spool-state.json";

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool directory {dir}: {source}")]
    Dir { dir: String, source: std::io::Error },
    #[error("spool segment {path}: {source}")]
    Segment { path: String, source: std::io::Error },
    #[error(transparent)]
    State(#[from] StateError),
}

struct Segment {
    path: PathBuf,
    shard: ShardId,
    /// The segment's lines from its resume point on, once positioned.
    lines: Option<LineReader>,
    /// Open while the segment has unread bytes.
    file: Option<std::fs::File>,
    /// The position of a line read before the restart, the first to come.
    skip: Option<Position>,
}

/// The byte offset a spool position stands for.
fn offset_of(p: &Position) -> u64 {
    p.seq.to_string().parse().unwrap_or(0)
}

pub struct SpoolSource {
    dir: PathBuf,
    state: SegmentState,
    segments: BTreeMap<String, Segment>,
    /// The segment of the last batch, whose reader takes the batch back.
    reading: Option<String>,
    /// Longest line held whole (the record size limit).
    max_line: usize,
}

impl SpoolSource {
    /// Opens the spool in `dir`; lines longer than `max_line` come cut to
    /// it (see [`LineReader`]).
    pub fn open(dir: &Path, state_dir: Option<&Path>, max_line: usize) -> Result<SpoolSource, SpoolError> {
        let derr = |source| SpoolError::Dir { dir: dir.display().to_string(), source };
        std::fs::create_dir_all(dir).map_err(derr)?;
        if let Some(s) = state_dir {
            std::fs::create_dir_all(s).map_err(|source| SpoolError::Dir { dir: s.display().to_string(), source })?;
        }
        let state = SegmentState::load(&state_dir.unwrap_or(dir).join(STATE_FILE))?;
        Ok(SpoolSource { dir: dir.to_path_buf(), state, segments: BTreeMap::new(), reading: None, max_line })
    }


    fn scan(&mut self) -> Result<bool, SpoolError> {
        let mut new = false;
        let rd = std::fs::read_dir(&self.dir).map_err(|source| SpoolError::Dir { dir: self.dir.display().to_string(), source })?;
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !e.file_type().map(|t| t.is_file()).unwrap_or(false) || self.segments.contains_key(&name) {
                continue;
            }
            if !self.state.contains(&name) {
                self.state.add(&name, now_ms());
                new = true;
            }
            self.segments.insert(name.clone(), Segment { path: e.path(), shard: ShardId::new(&name), lines: None, file: None, skip: None });
        }
        if new {
            self.state.save()?;
        }
        Ok(new)
    }

    /// The next batch of complete lines from the first segment with unread data,
    /// or None when every segment is read to its end.
    pub fn next_batch(&mut self) -> Result<Option<Batch>, SpoolError> {
        self.scan()?;
        let names: Vec<String> = self.segments.keys().cloned().collect();
        for name in names {
            let st = self.state.get(&name).expect("scanned");
            let arrival_ms = st.arrival_ms;
            let seg = self.segments.get_mut(&name).expect("scanned");
            if seg.lines.is_none() {
                // the line at an `After` position was read: its batch drops it
                let (start, skip) = match &st.checkpoint.resume {
                    Resume::Start => (0, None),
                    Resume::At(p) => (offset_of(p), None),
                    Resume::After(p) => (offset_of(p), Some(p.clone())),
                };
                seg.lines = Some(LineReader::new(start, self.max_line));
                seg.skip = skip;
            }
            let serr = |source| SpoolError::Segment { path: seg.path.display().to_string(), source };
            if seg.file.is_none() {
                let mut f = match std::fs::File::open(&seg.path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(serr(e)),
                };
                let lines = seg.lines.as_ref().expect("made above");
                f.seek(SeekFrom::Start(lines.read_pos())).map_err(serr)?;
                seg.file = Some(f);
            }
            let (file, lines) = (seg.file.as_mut().expect("opened"), seg.lines.as_mut().expect("made"));
            loop {
                let n = lines.read_from(file).map_err(serr)?;
                if let Some(mut b) = lines.batch(&seg.shard, arrival_ms, false) {
                    if let Some(p) = seg.skip.take() {
                        if b.records.first().is_some_and(|r| r.pos == p) {
                            b.records.remove(0);
                        }
                    }
                    if b.records.is_empty() {
                        continue;
                    }
                    self.reading = Some(name);
                    return Ok(Some(b));
                }
                if n == 0 {
                    break; // the segment is read to its end: its writer may append more later
                }
            }
            seg.file = None; // no descriptor held for a segment at its end
        }
        Ok(None)
    }

    /// Stores a shard's checkpoint durably.
    pub fn commit(&mut self, shard: &ShardId, cp: ShardCheckpoint) -> Result<(), SpoolError> {
        match self.segments.iter().find(|(_, s)| &s.shard == shard) {
            Some((name, _)) => Ok(self.state.commit(&name.clone(), cp)?),
            None => Ok(()),
        }
    }
}

impl Source for SpoolSource {
    fn checkpoints(&self) -> Vec<(ShardId, ShardCheckpoint)> {
        self.state.iter().map(|(name, s)| (ShardId::new(name), s.checkpoint.clone())).collect()
    }
    async fn next_event(&mut self) -> Result<Option<SourceEvent>, SourceError> {
        Ok(SpoolSource::next_batch(self)?.map(SourceEvent::Batch))
    }
    async fn commit(&mut self, shard: &ShardId, cp: ShardCheckpoint) -> Result<bool, SourceError> {
        SpoolSource::commit(self, shard, cp)?;
        Ok(true)
    }
    fn recycle(&mut self, batch: Batch) {
        if let Some(lines) = self.reading.as_ref().and_then(|n| self.segments.get_mut(n)).and_then(|s| s.lines.as_mut()) {
            lines.recycle(batch);
        }
    }
}
