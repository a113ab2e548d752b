//! Decoders: streamed inputs (S3 objects, compressed files, pipes, stdin)
//! read on a thread of their own and cut into chunks for the workers.
//!
//! Input: one [`Input`] read as a stream; its packing found from its first
//! bytes ([`Packing`]: gzip, multi-member included, through flate2; zstd,
//! several frames included; plain). Output: its decoded bytes as
//! [`Piece`]s of about [`PIECE`] bytes, in chunks: a chunk ends just after
//! the first newline at or past every `chunk` decoded bytes (the same
//! grid as plain files, fixed by the data), and every chunk after the first
//! is queued for any worker ([`Work::push_chunk`]), ahead of other work.
//! The decoder produces a chunk's pieces only once a worker has taken it,
//! and waits for room in the shared budget of decoded bytes before each
//! piece: memory stays bounded and never deadlocks (every piece in flight
//! is read by a worker that is reading). Before the first piece the
//! input's [`LineKind`] is set from its first line. Failure: a read or
//! decoding error (a corrupt gzip object, an S3 error) is reported with
//! the input's name and the decoded offset ([`Work::problem`]); the lines
//! before it are converted, the rest of that input is not; other inputs go
//! on.

use super::inputs::{Input, Location, Packing};
use super::unwrap::kind_of;
use super::work::{Job, Piece, PieceRx, PieceTx, Work, PIECE};
use std::io::Read;
use std::sync::Arc;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

/// Starts decoding `input` (a [`Job::Stream`] just taken); returns its
/// first chunk's pieces. `handle` runs the S3 reads.
pub fn start(input: Arc<Input>, work: Arc<Work>, handle: Handle, chunk: u64) -> PieceRx {
    let (tx, rx) = mpsc::unbounded_channel();
    let name = input.name.clone();
    let spawned = std::thread::Builder::new().name(format!("lakehose-decode-{}", input.id)).spawn({
        let work = work.clone();
        move || {
            let _done = Done(work.clone());
            let mut d = Decoder { input, work, handle, chunk, tx: Some(tx) };
            d.run();
        }
    });
    if let Err(e) = spawned {
        work.problem(&name, format!("could not start a thread to read it: {e}"));
        work.decoder_done();
    }
    rx
}

/// Tells the work the decoder ended, however it ends.
struct Done(Arc<Work>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.decoder_done();
    }
}

struct Decoder {
    input: Arc<Input>,
    work: Arc<Work>,
    handle: Handle,
    chunk: u64,
    /// The chunk being fed; None between a cut and the next bytes.
    tx: Option<PieceTx>,
}

/// A reader that counts the bytes it reads into the work's progress.
struct Counted<R> {
    inner: R,
    work: Arc<Work>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.work.add_bytes(n as u64);
        Ok(n)
    }
}

/// An S3 object's byte stream as a blocking reader.
struct StreamRead {
    handle: Handle,
    stream: futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>,
    cur: bytes::Bytes,
}

impl Read for StreamRead {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        use futures::StreamExt;
        while self.cur.is_empty() {
            match self.handle.block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
            }
        }
        let n = out.len().min(self.cur.len());
        out[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// Reads until `buf` is full or the input ends; the bytes read.
fn fill(r: &mut (impl Read + ?Sized), buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl Decoder {
    fn run(&mut self) {
        let name = self.input.name.clone();
        let raw: Box<dyn Read + Send> = match self.open() {
            Ok(r) => Box::new(Counted { inner: r, work: self.work.clone() }),
            Err(e) => {
                self.set_kind(b"");
                return self.work.problem(&name, e);
            }
        };
        let mut raw = std::io::BufReader::with_capacity(256 << 10, raw);
        let mut magic = [0u8; 4];
        let n = match fill(&mut raw, &mut magic) {
            Ok(n) => n,
            Err(e) => {
                self.set_kind(b"");
                return self.work.problem(&name, format!("reading it failed: {e}"));
            }
        };
        let packing = Packing::of(&magic[..n]);
        let raw = std::io::Cursor::new(magic[..n].to_vec()).chain(raw);
        let mut decoded: Box<dyn Read + Send> = match packing {
            Packing::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
            Packing::Zstd => match zstd::stream::read::Decoder::new(raw) {
                Ok(d) => Box::new(d),
                Err(e) => return self.work.problem(&name, format!("zstd: {e}")),
            },
            Packing::Plain => Box::new(raw),
        };
        if let Err(e) = self.feed(&mut *decoded) {
            let what = match packing {
                Packing::Gzip => "gzip data",
                Packing::Zstd => "zstd data",
                Packing::Plain => "data",
            };
            self.work.problem(&name, format!("reading its {what} failed after {} decoded bytes: {e}; the lines before were converted, the rest of this input was not", e.offset));
        }
    }

    fn open(&self) -> Result<Box<dyn Read + Send>, String> {
        match &self.input.location {
            Location::Stdin => Ok(Box::new(std::io::stdin())),
            Location::Local(path) => std::fs::File::open(path).map(|f| Box::new(f) as Box<dyn Read + Send>).map_err(|e| format!("cannot open it: {e}")),
            Location::S3 { store, key } => {
                let stream = self.handle.block_on(store.get_stream(key)).map_err(|e| format!("cannot read it: {e}"))?;
                Ok(Box::new(StreamRead { handle: self.handle.clone(), stream, cur: bytes::Bytes::new() }))
            }
        }
    }

    fn set_kind(&self, start: &[u8]) {
        let _ = self.input.kind.set(kind_of(start, self.work.from_errors));
    }

    /// Reads `r` to its end in pieces, cutting chunks on the grid.
    fn feed(&mut self, r: &mut dyn Read) -> Result<(), FeedError> {
        let mut pos = 0u64; // decoded offset of the next piece
        let mut mark = self.chunk; // cut after the first newline at or past mark - 1
        loop {
            let Some(permit) = self.work.room_blocking(&self.handle, PIECE) else { return Ok(()) };
            let mut piece = vec![0u8; PIECE];
            let n = fill(r, &mut piece).map_err(|e| FeedError { offset: pos, e })?;
            if pos == 0 {
                self.set_kind(&piece[..n]);
            }
            if n == 0 {
                return Ok(());
            }
            piece.truncate(n);
            let mut at = 0usize; // bytes of the piece already sent
            while pos + (n as u64) >= mark {
                let from = ((mark - 1).saturating_sub(pos) as usize).max(at);
                let Some(i) = memchr::memchr(b'\n', &piece[from..]) else { break };
                let cut = from + i + 1;
                if !self.send(Piece { bytes: piece[at..cut].to_vec(), _permit: None }, pos + at as u64) {
                    return Ok(());
                }
                self.tx = None; // the chunk ends here
                at = cut;
                mark = pos + cut as u64 + self.chunk;
            }
            if at < n {
                piece.drain(..at);
                if !self.send(Piece { bytes: piece, _permit: Some(permit) }, pos + at as u64) {
                    return Ok(());
                }
            }
            pos += n as u64;
        }
    }

    /// Sends a piece starting at decoded offset `start` to the chunk being
    /// fed, opening a new chunk when there is none (and waiting until a
    /// worker takes it). False: nobody will read it (the backfill stopped).
    fn send(&mut self, piece: Piece, start: u64) -> bool {
        if self.tx.is_none() {
            let (tx, pieces) = mpsc::unbounded_channel();
            let (taken, was_taken) = oneshot::channel();
            self.work.push_chunk(Job::Piped { input: self.input.clone(), start, pieces, taken });
            if was_taken.blocking_recv().is_err() {
                return false;
            }
            self.tx = Some(tx);
        }
        self.tx.as_ref().is_some_and(|tx| tx.send(piece).is_ok())
    }
}

struct FeedError {
    offset: u64,
    e: std::io::Error,
}

impl std::fmt::Display for FeedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.e.fmt(f)
    }
}
