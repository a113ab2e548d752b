//! The front door's write-ahead log: a record is acknowledged only once it
//! is on disk.
//!
//! Input: batches of records (bytes and arrival time) from the request
//! handlers ([`LogWriter::append`]). Output: frames appended to segment
//! files in `dir` (`<n>.wal`, n ascending), made durable by one fsync per
//! group of appends that came while the previous fsync ran (group
//! commit); each append is answered with its records' places after that
//! fsync. The reader ([`super::log_source::LogSource`]) sees only what is
//! durable ([`LogShared::durable`]). Bounds: [`LogWriter::reserve`] refuses
//! records that would take the live log (segments not yet read, written
//! and deleted) past `max_bytes`; the handler then answers 503. Failure:
//! [`LogError`] for I/O: the writer stops, every waiting append gets the
//! error, and the door answers 503 from then on.
//!
//! A frame: u32 LE data length, u32 LE CRC-32 of the arrival time and the
//! data, i64 LE arrival time (epoch ms), the data. At start, a torn frame
//! at the end of the last segment (written, never fsynced, so never
//! acknowledged) is cut off, and writing goes on in a new segment.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, Notify};

/// Bytes of a frame's header.
pub const FRAME_HEADER: usize = 16;

#[derive(Debug, thiserror::Error, Clone)]
pub enum LogError {
    #[error("write-ahead log {path}: {message}")]
    Io { path: String, message: String },
    #[error("write-ahead log {path}: frame at byte {offset} is damaged ({what}); the disk lost data")]
    Damaged { path: String, offset: u64, what: &'static str },
    #[error("the write-ahead log stopped after an earlier error")]
    Stopped,
}

fn io(path: &Path, e: std::io::Error) -> LogError {
    LogError::Io { path: path.display().to_string(), message: e.to_string() }
}

/// The name of segment `n`: sorts as the numbers do.
pub fn segment_name(n: u64) -> String {
    format!("{n:016}.wal")
}

/// Appends the frame of `data` arriving at `arrival_ms` to `out`.
pub fn put_frame(out: &mut Vec<u8>, arrival_ms: i64, data: &[u8]) {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&arrival_ms.to_le_bytes());
    crc.update(data);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&arrival_ms.to_le_bytes());
    out.extend_from_slice(data);
}

/// A frame read back: arrival time and where its data is in `buf`.
pub struct Frame {
    pub arrival_ms: i64,
    pub data: std::ops::Range<usize>,
    /// Bytes of the whole frame.
    pub len: usize,
}

/// The frame at the start of `buf`: `Ok(None)` when `buf` holds only part
/// of it; an error when it is damaged (length over `max_data`, CRC).
pub fn read_frame(buf: &[u8], max_data: usize) -> Result<Option<Frame>, &'static str> {
    if buf.len() < FRAME_HEADER {
        return Ok(None);
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    if len > max_data {
        return Err("length over the record size limit");
    }
    if buf.len() < FRAME_HEADER + len {
        return Ok(None);
    }
    let want = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    let mut crc = crc32fast::Hasher::new();
    crc.update(&buf[8..FRAME_HEADER + len]);
    if crc.finalize() != want {
        return Err("checksum mismatch");
    }
    let arrival_ms = i64::from_le_bytes(buf[8..16].try_into().expect("8 bytes"));
    Ok(Some(Frame { arrival_ms, data: FRAME_HEADER..FRAME_HEADER + len, len: FRAME_HEADER + len }))
}

/// What the writer and the reader share: each segment's durable length,
/// and the bytes the live log holds.
#[derive(Default)]
pub struct LogShared {
    segments: Mutex<BTreeMap<u64, SegMeta>>,
    /// Bytes written or reserved, not yet deleted.
    used: AtomicU64,
    /// Wakes the reader when more is durable.
    pub more: Notify,
    /// The writer stopped on an error.
    failed: AtomicBool,
}

#[derive(Debug, Clone, Copy)]
pub struct SegMeta {
    /// Bytes fsynced (a frame boundary).
    pub durable: u64,
    /// No more frames come (the writer moved on).
    pub sealed: bool,
}

impl LogShared {
    /// Segments with their durable length, in order.
    pub fn durable(&self) -> Vec<(u64, SegMeta)> {
        self.segments.lock().unwrap().iter().map(|(n, m)| (*n, *m)).collect()
    }

    /// A sealed segment was read, written and committed whole, and its
    /// file deleted: its bytes leave the live log.
    pub fn forget(&self, n: u64) {
        if let Some(m) = self.segments.lock().unwrap().remove(&n) {
            self.used.fetch_sub(m.durable.min(self.used.load(Ordering::Relaxed)), Ordering::Relaxed);
        }
    }

    /// Bytes the live log holds (with reservations).
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }
}

/// A record's place in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPlace {
    pub segment: u64,
    pub offset: u64,
}

struct Append {
    frames: Vec<u8>,
    /// Frame starts within `frames`.
    starts: Vec<u32>,
    done: oneshot::Sender<Result<Vec<RecordPlace>, LogError>>,
}

/// The handle request handlers append through (cheap to clone).
#[derive(Clone)]
pub struct LogWriter {
    tx: mpsc::Sender<Append>,
    shared: Arc<LogShared>,
    max_bytes: u64,
}

impl LogWriter {
    /// Opens the log in `dir` (made if absent), cuts a torn frame off the
    /// end of its last segment, and starts writing a new segment on a
    /// thread of its own. Segments are sealed past `segment_bytes`.
    pub fn open(dir: &Path, max_bytes: u64, segment_bytes: u64, max_record: usize) -> Result<(LogWriter, Arc<LogShared>), LogError> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let mut existing: Vec<u64> = std::fs::read_dir(dir)
            .map_err(|e| io(dir, e))?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".wal")?.parse().ok())
            .collect();
        existing.sort();
        let shared = Arc::new(LogShared::default());
        let mut used = 0;
        {
            let mut segs = shared.segments.lock().unwrap();
            for (i, &n) in existing.iter().enumerate() {
                let path = dir.join(segment_name(n));
                let len = if i + 1 == existing.len() { cut_torn_tail(&path, max_record)? } else { std::fs::metadata(&path).map_err(|e| io(&path, e))?.len() };
                segs.insert(n, SegMeta { durable: len, sealed: true });
                used += len;
            }
        }
        shared.used.store(used, Ordering::Relaxed);
        let next = existing.last().map_or(1, |n| n + 1);
        let seg = Segment::create(dir, next)?;
        shared.segments.lock().unwrap().insert(next, SegMeta { durable: 0, sealed: false });
        let (tx, rx) = mpsc::channel(1024);
        let writer = Committer { dir: dir.to_path_buf(), seg, shared: shared.clone(), segment_bytes };
        std::thread::Builder::new().name("lakehose-log".into()).spawn(move || writer.run(rx)).map_err(|e| io(dir, e))?;
        Ok((LogWriter { tx, shared: shared.clone(), max_bytes }, shared))
    }

    /// Takes `n` bytes of the log's room, if the live log stays within its
    /// limit; false: the log is full (answer 503 and come back later).
    pub fn reserve(&self, n: u64) -> bool {
        let before = self.shared.used.fetch_add(n, Ordering::Relaxed);
        if before + n > self.max_bytes {
            self.shared.used.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Gives back room reserved for records not appended after all.
    pub fn unreserve(&self, n: u64) {
        self.shared.used.fetch_sub(n, Ordering::Relaxed);
    }

    /// Whether the live log has room for `n` more bytes now.
    pub fn has_room(&self, n: u64) -> bool {
        self.shared.used() + n <= self.max_bytes
    }

    /// Appends records (arrival ms, bytes) whose room was reserved
    /// ([`frame_bytes`] each); returns their places once they are durable.
    pub async fn append(&self, records: &[(i64, &[u8])]) -> Result<Vec<RecordPlace>, LogError> {
        if self.shared.failed() {
            return Err(LogError::Stopped);
        }
        let mut frames = Vec::with_capacity(records.iter().map(|r| frame_bytes(r.1.len()) as usize).sum());
        let mut starts = Vec::with_capacity(records.len());
        for (arrival, data) in records {
            starts.push(frames.len() as u32);
            put_frame(&mut frames, *arrival, data);
        }
        let (done, answer) = oneshot::channel();
        self.tx.send(Append { frames, starts, done }).await.map_err(|_| LogError::Stopped)?;
        answer.await.map_err(|_| LogError::Stopped)?
    }
}

/// Bytes a record of `len` bytes takes in the log.
pub fn frame_bytes(len: usize) -> u64 {
    (FRAME_HEADER + len) as u64
}

/// Cuts what follows the last whole, intact frame of a segment; returns
/// the length left.
fn cut_torn_tail(path: &Path, max_record: usize) -> Result<u64, LogError> {
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(|e| io(path, e))?;
    let mut data = Vec::new();
    f.read_to_end(&mut data).map_err(|e| io(path, e))?;
    let mut at = 0;
    while let Ok(Some(frame)) = read_frame(&data[at..], max_record) {
        at += frame.len;
    }
    if at < data.len() {
        tracing::warn!(segment = %path.display(), kept = at, cut = data.len() - at, "write-ahead log: cutting a torn frame (written, never acknowledged)");
        f.set_len(at as u64).map_err(|e| io(path, e))?;
        f.sync_all().map_err(|e| io(path, e))?;
    }
    Ok(at as u64)
}

struct Segment {
    n: u64,
    file: std::fs::File,
    path: PathBuf,
    len: u64,
}

impl Segment {
    fn create(dir: &Path, n: u64) -> Result<Segment, LogError> {
        let path = dir.join(segment_name(n));
        let mut file = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(&path).map_err(|e| io(&path, e))?;
        file.seek(SeekFrom::Start(0)).map_err(|e| io(&path, e))?;
        file.sync_all().map_err(|e| io(&path, e))?;
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io(dir, e))?;
        Ok(Segment { n, file, path, len: 0 })
    }
}

/// The writer thread: appends groups of requests' frames and fsyncs them.
struct Committer {
    dir: PathBuf,
    seg: Segment,
    shared: Arc<LogShared>,
    segment_bytes: u64,
}

impl Committer {
    fn run(mut self, mut rx: mpsc::Receiver<Append>) {
        let mut group = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            group.push(first);
            while let Ok(more) = rx.try_recv() {
                group.push(more);
            }
            match self.write(&group) {
                Ok(bases) => {
                    for (a, (n, base)) in group.drain(..).zip(bases) {
                        let places = a.starts.iter().map(|&s| RecordPlace { segment: n, offset: base + s as u64 }).collect();
                        let _ = a.done.send(Ok(places));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "write-ahead log failed: refusing new records");
                    self.shared.failed.store(true, Ordering::Relaxed);
                    for a in group.drain(..) {
                        let _ = a.done.send(Err(e.clone()));
                    }
                    rx.close();
                }
            }
        }
    }

    /// Writes the group's frames to the current segment and fsyncs them;
    /// returns where each append's frames start (segment, offset). A full
    /// segment is sealed afterwards and the next one begun.
    fn write(&mut self, group: &[Append]) -> Result<Vec<(u64, u64)>, LogError> {
        let mut bases = Vec::with_capacity(group.len());
        for a in group {
            bases.push((self.seg.n, self.seg.len));
            self.seg.file.write_all(&a.frames).map_err(|e| io(&self.seg.path, e))?;
            self.seg.len += a.frames.len() as u64;
        }
        self.seg.file.sync_data().map_err(|e| io(&self.seg.path, e))?;
        let full = self.seg.len >= self.segment_bytes;
        {
            let mut segs = self.shared.segments.lock().unwrap();
            segs.insert(self.seg.n, SegMeta { durable: self.seg.len, sealed: full });
        }
        if full {
            let next = Segment::create(&self.dir, self.seg.n + 1)?;
            self.shared.segments.lock().unwrap().insert(next.n, SegMeta { durable: 0, sealed: false });
            self.seg = next;
        }
        self.shared.more.notify_one();
        Ok(bases)
    }
}
