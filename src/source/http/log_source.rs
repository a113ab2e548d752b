//! The front door's log as a source: its segments are the shards.
//!
//! Input: the segments of the write-ahead log ([`super::log`]), read only
//! as far as they are durable, and the state file beside them
//! (`.lakehose-log-state.json`: each segment's checkpoint, as the spool
//! keeps). Output: [`Batch`]es of the records of one segment in order,
//! each record's position its frame's byte offset and its arrival time the
//! one the door gave it (so a replay is the same). A segment the writer has
//! sealed and that is read to its end and committed whole is deleted, and
//! its bytes leave the log's budget. Waits up to [`IDLE_WAKE`] for more
//! when everything durable is read. Failure: [`SourceError::Input`] for
//! I/O or a damaged frame, naming the segment.

use super::log::{read_frame, segment_name, LogShared, FRAME_HEADER};
use crate::checkpoint::{Resume, ShardCheckpoint};
use crate::ids::{Position, ShardId};
use crate::source::stdin::IDLE_WAKE;
use crate::source::segments::SegmentState;
use crate::source::{now_ms, Batch, Source, SourceError, SourceEvent, SourceRecord};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const STATE_FILE: &str = ".lakehose-log-state.json";

/// Bytes read from a segment at a time (more when one frame is larger).
const CHUNK: usize = 1 << 20;

struct Reading {
    file: std::fs::File,
    /// Offset of the next frame to read.
    next: u64,
    /// The frame at this offset was read before a restart: skip it.
    skip: Option<u64>,
    /// The last frame handed over.
    last: Option<u64>,
}

pub struct LogSource {
    dir: PathBuf,
    shared: Arc<LogShared>,
    state: SegmentState,
    reading: BTreeMap<u64, Reading>,
    max_record: usize,
    spare: Option<(Vec<u8>, Vec<SourceRecord>)>,
}

fn err(path: &Path, source: std::io::Error) -> SourceError {
    SourceError::Input { path: path.display().to_string(), source }
}

/// The segment number of a shard named after its file.
fn number(shard: &ShardId) -> Option<u64> {
    shard.as_str().strip_suffix(".wal")?.parse().ok()
}

impl LogSource {
    pub fn open(dir: &Path, shared: Arc<LogShared>, max_record: usize) -> Result<LogSource, SourceError> {
        let state = SegmentState::load(&dir.join(STATE_FILE))?;
        Ok(LogSource { dir: dir.to_path_buf(), shared, state, reading: BTreeMap::new(), max_record, spare: None })
    }

    fn path(&self, n: u64) -> PathBuf {
        self.dir.join(segment_name(n))
    }

    /// The next batch of durable frames of the first segment with unread
    /// ones, or None.
    fn next_batch(&mut self) -> Result<Option<Batch>, SourceError> {
        for (n, meta) in self.shared.durable() {
            let name = segment_name(n);
            if !self.state.contains(&name) {
                self.state.add(&name, now_ms());
                self.state.save()?;
            }
            if !self.reading.contains_key(&n) {
                let path = self.path(n);
                let file = std::fs::File::open(&path).map_err(|e| err(&path, e))?;
                let (next, skip) = match &self.state.get(&name).expect("added").checkpoint.resume {
                    Resume::Start => (0, None),
                    Resume::At(p) => (offset(p), None),
                    Resume::After(p) => (offset(p), Some(offset(p))),
                };
                self.reading.insert(n, Reading { file, next, skip, last: None });
            }
            let r = self.reading.get_mut(&n).expect("opened");
            if r.next >= meta.durable {
                continue;
            }
            let path = self.dir.join(&name);
            let want = ((meta.durable - r.next) as usize).min(CHUNK.max(FRAME_HEADER + self.max_record));
            let (mut buf, mut records) = self.spare.take().unwrap_or_default();
            records.clear();
            buf.resize(want, 0);
            r.file.seek(SeekFrom::Start(r.next)).map_err(|e| err(&path, e))?;
            r.file.read_exact(&mut buf).map_err(|e| err(&path, e))?;
            let mut at = 0;
            loop {
                let frame = match read_frame(&buf[at..], self.max_record) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(what) => return Err(err(&path, std::io::Error::other(format!("frame at byte {} is damaged ({what}); the disk lost data", r.next + at as u64)))),
                };
                let pos = r.next + at as u64;
                if r.skip.take() != Some(pos) {
                    records.push(SourceRecord { pos: Position::offset(pos), arrival_ms: frame.arrival_ms, range: at + frame.data.start..at + frame.data.end });
                }
                r.last = Some(pos);
                at += frame.len;
            }
            r.next += at as u64;
            if records.is_empty() {
                self.spare = Some((buf, records));
                continue;
            }
            return Ok(Some(Batch { shard: ShardId::new(&name), buf, records, oversized: Vec::new() }));
        }
        Ok(None)
    }

    /// Deletes segment `n` when the writer sealed it and it is read to its
    /// end, with every record of it committed (`resume` after its last).
    fn delete_if_done(&mut self, n: u64, resume: &Resume) -> Result<(), SourceError> {
        let Some((_, meta)) = self.shared.durable().into_iter().find(|(m, _)| *m == n) else { return Ok(()) };
        let (next, last) = self.reading.get(&n).map_or((0, None), |r| (r.next, r.last));
        let all_read = meta.sealed && next >= meta.durable;
        let all_committed = match (resume, last) {
            (Resume::After(p), Some(last)) => offset(p) == last,
            (_, None) => true,
            _ => false,
        };
        if !(all_read && all_committed) {
            return Ok(());
        }
        let path = self.path(n);
        std::fs::remove_file(&path).map_err(|e| err(&path, e))?;
        self.state.remove(&segment_name(n))?;
        self.reading.remove(&n);
        self.shared.forget(n);
        tracing::debug!(segment = n, "write-ahead log segment read and committed whole: deleted");
        Ok(())
    }
}

/// The byte offset a log position stands for.
fn offset(p: &Position) -> u64 {
    p.seq.to_string().parse().unwrap_or(0)
}

impl Source for LogSource {
    fn checkpoints(&self) -> Vec<(ShardId, ShardCheckpoint)> {
        self.state.iter().map(|(name, s)| (ShardId::new(name), s.checkpoint.clone())).collect()
    }

    async fn next_event(&mut self) -> Result<Option<SourceEvent>, SourceError> {
        if let Some(b) = self.next_batch()? {
            return Ok(Some(SourceEvent::Batch(b)));
        }
        // sealed segments read and committed whole (empty ones, ones whose
        // last commit came before a restart) go
        for (n, meta) in self.shared.durable() {
            if meta.sealed {
                let resume = self.state.get(&segment_name(n)).map_or(Resume::Start, |s| s.checkpoint.resume.clone());
                self.delete_if_done(n, &resume)?;
            }
        }
        let _ = tokio::time::timeout(IDLE_WAKE, self.shared.more.notified()).await;
        Ok(self.next_batch()?.map(SourceEvent::Batch))
    }

    async fn commit(&mut self, shard: &ShardId, cp: ShardCheckpoint) -> Result<bool, SourceError> {
        let Some(n) = number(shard) else { return Ok(true) };
        let resume = cp.resume.clone();
        self.state.commit(shard.as_str(), cp)?;
        self.delete_if_done(n, &resume)?;
        Ok(true)
    }

    fn recycle(&mut self, batch: Batch) {
        self.spare = Some((batch.buf, batch.records));
    }
}

#[cfg(test)]
mod tests {
    use super::super::log::{frame_bytes, LogWriter};
    use super::*;
    use std::io::Write;

    /// Everything `src` has now, per shard: (offset, arrival, bytes).
    async fn drain(src: &mut LogSource) -> Vec<(String, u64, i64, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(b) = src.next_batch().unwrap() {
            for r in &b.records {
                out.push((b.shard.as_str().to_string(), offset(&r.pos), r.arrival_ms, b.buf[r.range.clone()].to_vec()));
            }
            src.recycle(b);
        }
        out
    }

    /// Appends from concurrent callers are each answered with their
    /// records' places once durable; the reader reads every record once,
    /// in order, with its arrival time; a torn frame at the end (written,
    /// never acknowledged) is cut at the next start, where writing goes on
    /// in a new segment; full segments are sealed, and a sealed segment
    /// read and committed whole is deleted and leaves the budget.
    #[tokio::test]
    async fn appended_records_are_read_once_and_committed_segments_go() {
        let dir = tempfile::tempdir().unwrap();
        let (w, shared) = LogWriter::open(dir.path(), 1 << 30, 4096, 1 << 20).unwrap();
        let mut tasks = Vec::new();
        for t in 0..8u8 {
            let w = w.clone();
            tasks.push(tokio::spawn(async move {
                let mut placed = Vec::new();
                for i in 0..20u8 {
                    let recs: Vec<Vec<u8>> = (0..5u8).map(|k| vec![t, i, k, b'\n', 0xff]).collect();
                    let refs: Vec<(i64, &[u8])> = recs.iter().map(|r| (1000 + t as i64, r.as_slice())).collect();
                    assert!(w.reserve(refs.iter().map(|r| frame_bytes(r.1.len())).sum()));
                    placed.extend(w.append(&refs).await.unwrap().into_iter().zip(recs));
                }
                placed
            }));
        }
        let mut placed = Vec::new();
        for t in tasks {
            placed.extend(t.await.unwrap());
        }
        assert_eq!(placed.len(), 800);
        let mut src = LogSource::open(dir.path(), shared.clone(), 1 << 20).unwrap();
        let got = drain(&mut src).await;
        let mut want: Vec<(String, u64, Vec<u8>)> = placed.iter().map(|(p, r)| (segment_name(p.segment), p.offset, r.clone())).collect();
        want.sort();
        let mut read: Vec<(String, u64, Vec<u8>)> = got.iter().map(|g| (g.0.clone(), g.1, g.3.clone())).collect();
        read.sort();
        assert_eq!(read, want, "every record once, at its place");
        assert!(got.iter().all(|g| g.2 == 1000 + g.3[0] as i64), "arrival times kept");
        let segments = shared.durable();
        assert!(segments.len() > 3 && segments.iter().rev().skip(1).all(|s| s.1.sealed), "4 KiB segments: {segments:?}");
        // commit everything read: sealed segments go
        let used = shared.used();
        let mut last: BTreeMap<String, u64> = BTreeMap::new();
        for g in &got {
            last.insert(g.0.clone(), g.1);
        }
        for (name, off) in &last {
            src.commit(&ShardId::new(name), ShardCheckpoint { resume: Resume::After(Position::offset(*off)), ..Default::default() }).await.unwrap();
        }
        let left: Vec<u64> = shared.durable().iter().map(|s| s.0).collect();
        assert_eq!(left.len(), 1, "only the open segment is left: {left:?}");
        assert!(shared.used() < used / 4);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".wal")).count(), 1);
        drop(src);
        drop(w);

        // a torn frame after the last acknowledged one: cut at the next start
        let open = segment_name(left[0]);
        let mut f = std::fs::OpenOptions::new().append(true).open(dir.path().join(&open)).unwrap();
        f.write_all(&[9, 0, 0, 0, 1, 2, 3]).unwrap();
        drop(f);
        let (w, shared) = LogWriter::open(dir.path(), 1 << 30, 4096, 1 << 20).unwrap();
        assert!(w.reserve(frame_bytes(3)));
        let p = w.append(&[(7, b"new")]).await.unwrap();
        assert!(p[0].segment > left[0], "writing goes on in a new segment");
        let mut src = LogSource::open(dir.path(), shared, 1 << 20).unwrap();
        let got = drain(&mut src).await;
        assert_eq!(got.iter().map(|g| g.3.clone()).collect::<Vec<_>>(), [b"new".to_vec()], "the torn frame is gone; the committed records are not read again");
    }

    /// The log takes no more than its limit: a reservation past it fails,
    /// and room comes back when segments are deleted.
    #[tokio::test]
    async fn the_log_keeps_to_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let (w, shared) = LogWriter::open(dir.path(), 1000, 100, 1 << 20).unwrap();
        let rec = [7u8; 84]; // a 100-byte frame: a segment each
        let mut n = 0;
        while w.reserve(frame_bytes(rec.len())) {
            w.append(&[(0, &rec)]).await.unwrap();
            n += 1;
        }
        assert_eq!(n, 10);
        assert!(!w.has_room(1));
        let mut src = LogSource::open(dir.path(), shared, 1 << 20).unwrap();
        let got = drain(&mut src).await;
        assert_eq!(got.len(), 10);
        src.commit(&ShardId::new(&got[0].0), ShardCheckpoint { resume: Resume::After(Position::offset(got[0].1)), ..Default::default() }).await.unwrap();
        assert!(w.reserve(frame_bytes(rec.len())), "a deleted segment's room comes back");
    }
}
