//! Page buffers of the string column chunks: snappy compression into a
//! reused buffer, the chunk's pages kept as the `Bytes` they are, and
//! their reading back when the chunk is appended to its row group.
//!
//! Input: page headers and bodies as parquet-rs's page writer writes them.
//! Output: [`Pages`], a `ChunkReader` over them, without one copy of the
//! chunk's bytes. Failure: a [`ParquetError`] from compression.

use bytes::Bytes;
use parquet::column::page::{CompressedPage, PageWriter};
use parquet::errors::ParquetError;
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};

/// `data` compressed by this thread's [`Snappy`].
pub(super) fn snappy(data: &[u8]) -> Result<Bytes, ParquetError> {
    thread_local! {
        static SNAPPY: std::cell::RefCell<Snappy> = std::cell::RefCell::new(Snappy::default());
    }
    SNAPPY.with_borrow_mut(|s| s.compress(data))
}

/// A snappy encoder and an output buffer kept from page to page and from
/// column to column (per thread).
pub(super) struct Snappy {
    encoder: snap::raw::Encoder,
    out: Vec<u8>,
}

impl Default for Snappy {
    fn default() -> Self {
        Snappy { encoder: snap::raw::Encoder::new(), out: Vec::new() }
    }
}

impl Snappy {
    fn compress(&mut self, data: &[u8]) -> Result<Bytes, ParquetError> {
        let max = snap::raw::max_compress_len(data.len());
        if self.out.len() < max {
            self.out.resize(max, 0);
        }
        let n = self.encoder.compress(data, &mut self.out).map_err(|e| ParquetError::External(Box::new(e)))?;
        Ok(Bytes::copy_from_slice(&self.out[..n]))
    }
}


/// A column chunk's pages (header and body each), in file order; read back
/// in one pass when the chunk is appended to its row group, without being
/// copied into one buffer first.
#[derive(Default)]
pub struct Pages {
    pub(super) parts: Vec<Bytes>,
    pub(super) len: u64,
}

impl Pages {
    /// The chunk's bytes, in file order.
    pub fn parts(&self) -> &[Bytes] {
        &self.parts
    }

    /// Appends a page: its header, then its body. Returns the parts added.
    pub(super) fn write(&mut self, page: CompressedPage, body: Bytes) -> Result<(parquet::column::page::PageWriteSpec, usize), ParquetError> {
        let before = self.parts.len();
        let mut sink = TrackedWrite::new(PageSink { body, parts: &mut self.parts, pending: Vec::with_capacity(64) });
        let spec = SerializedPageWriter::new(&mut sink).write_page(page)?;
        sink.into_inner()?.finish();
        self.len = self.parts[before..].iter().fold(self.len, |n, p| n + p.len() as u64);
        Ok((spec, self.parts.len() - before))
    }
}

/// Where parquet-rs writes a page: the header is copied, the body is kept
/// as the page's own `Bytes` when it comes in one piece with the body's
/// address (as it does past `BufWriter`'s 8 KiB), not copied again.
pub(super) struct PageSink<'a> {
    body: Bytes,
    parts: &'a mut Vec<Bytes>,
    pending: Vec<u8>,
}

impl PageSink<'_> {
    fn finish(&mut self) {
        if !self.pending.is_empty() {
            self.parts.push(Bytes::from(std::mem::take(&mut self.pending)));
        }
    }
}

impl std::io::Write for PageSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !buf.is_empty() && std::ptr::eq(buf, &self.body[..]) {
            self.finish();
            self.parts.push(self.body.clone());
        } else {
            self.pending.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl parquet::file::reader::Length for Pages {
    fn len(&self) -> u64 {
        self.len
    }
}

impl parquet::file::reader::ChunkReader for Pages {
    type T = PagesRead;

    fn get_read(&self, start: u64) -> Result<PagesRead, ParquetError> {
        let mut read = PagesRead { parts: self.parts.clone().into(), skip: start as usize };
        while let Some(first) = read.parts.front() {
            if read.skip < first.len() {
                break;
            }
            read.skip -= first.len();
            read.parts.pop_front();
        }
        Ok(read)
    }

    fn get_bytes(&self, start: u64, length: usize) -> Result<Bytes, ParquetError> {
        let mut out = Vec::with_capacity(length);
        std::io::Read::read_to_end(&mut std::io::Read::take(self.get_read(start)?, length as u64), &mut out)?;
        Ok(out.into())
    }
}

/// Reads [`Pages`] from an offset.
pub struct PagesRead {
    parts: std::collections::VecDeque<Bytes>,
    /// Bytes of the first part already read.
    skip: usize,
}

impl std::io::Read for PagesRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(first) = self.parts.front() else { return Ok(0) };
        let n = buf.len().min(first.len() - self.skip);
        buf[..n].copy_from_slice(&first[self.skip..self.skip + n]);
        self.skip += n;
        if self.skip == first.len() {
            self.parts.pop_front();
            self.skip = 0;
        }
        Ok(n)
    }
}
