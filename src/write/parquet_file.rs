//! Parquet files encoded a chunk of rows at a time, while the rows are
//! still being buffered.
//!
//! Input: the rows of one table buffer, appended to [`RowBuffer::cols`] by
//! the decoder; [`RowBuffer::row_added`] after each. Every
//! `chunk_in_bytes` of input (4 MiB) the buffered rows are encoded into the
//! buffer's open Parquet file and the column vectors are refilled in place
//! ([`Columns::finish_reserving`]): a large buffer holds compressed pages,
//! not columns, and its column memory is reused. Chunk boundaries depend
//! only on the records' sizes, so a replay of the same records encodes the
//! same file.
//! Output: [`RowBuffer::finish`] gives the bytes of one snappy Parquet file:
//! row groups of about `row_group_bytes` of Arrow data each. String leaves
//! are written by [`string_columns`](super::string_columns) (dictionary or
//! PLAIN), every other leaf by parquet-rs's column writers (and a string
//! leaf of a shape that module does not take, should a schema have one).
//! Failure: [`WriteError`] (an encoding error, which would be a bug: the
//! batches are built against the file's schema). A chunk that fails to
//! encode makes `finish` fail.

use super::string_columns::{leaf_count, string_leaves, LeafPath, StringColumn};
use super::{ParquetOptions, WriteError};
use crate::decode::Columns;
use crate::schema::TableSchema;
use arrow_array::{Array, ArrayRef, RecordBatch, StructArray};
use arrow_schema::{DataType, SchemaRef};
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnWriter, ArrowRowGroupWriterFactory};
use parquet::arrow::{add_encoded_arrow_schema_to_metadata, ArrowSchemaConverter};
use parquet::basic::Compression;
use parquet::file::metadata::{KeyValue, ParquetMetaData};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use bytes::Bytes;
use object_store::PutPayload;
use parquet::schema::types::{ColumnDescPtr, ColumnPath};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A table buffer's rows: those not yet encoded in column builders, the
/// rest in an open Parquet file.
pub struct RowBuffer {
    /// Rows not yet encoded; the decoder appends here.
    pub cols: Columns,
    file: Option<ParquetFile>,
    /// The first encoding failure; `finish` returns it.
    failed: Option<WriteError>,
    /// Input bytes of the rows in `cols`.
    pending_in: usize,
    /// Memory of `file` after the last chunk.
    file_mem: usize,
    opts: ParquetOptions,
}

impl RowBuffer {
    pub fn new(schema: &TableSchema, opts: ParquetOptions) -> RowBuffer {
        RowBuffer { cols: Columns::new(schema), file: None, failed: None, pending_in: 0, file_mem: 0, opts }
    }

    /// Bytes held: columns plus encoded pages.
    pub fn mem_bytes(&self) -> usize {
        self.cols.mem_bytes() + self.file_mem
    }

    /// Counts a row of `in_len` input bytes just appended to `cols`, and
    /// encodes the buffered rows when they reach `chunk_in_bytes` of
    /// input. When it encoded (and the memory changed): the time it took.
    pub fn row_added(&mut self, in_len: usize, schema: &TableSchema) -> Option<Duration> {
        self.pending_in += in_len;
        if self.pending_in < self.opts.chunk_in_bytes {
            return None;
        }
        let started = Instant::now();
        self.pending_in = 0;
        let batch = self.cols.finish_reserving(schema);
        if self.failed.is_none() {
            if let Err(e) = self.write(&batch, schema) {
                self.failed = Some(e);
                self.file = None;
            }
        }
        self.file_mem = self.file.as_ref().map_or(0, ParquetFile::memory_size);
        Some(started.elapsed())
    }

    fn write(&mut self, batch: &RecordBatch, schema: &TableSchema) -> Result<(), WriteError> {
        let cast;
        let batch = match &schema.file_arrow {
            Some(to) => {
                cast = to_file_schema(batch, to)?;
                &cast
            }
            None => batch,
        };
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(ParquetFile::new(batch, &self.opts)?),
        };
        file.write(batch)
    }

    /// The Parquet file of every row, with `meta` in its footer, and the
    /// footer (row groups, column chunk sizes and statistics).
    pub fn finish(mut self, schema: &TableSchema, meta: Vec<KeyValue>) -> Result<(PutPayload, ParquetMetaData), WriteError> {
        let batch = self.cols.finish(schema);
        if let Some(e) = self.failed {
            return Err(e);
        }
        self.write(&batch, schema)?;
        self.file.take().expect("written above").finish(meta)
    }
}

/// `batch` cast to the file schema `to` (same columns; field ids,
/// timestamp unit and integer width may differ).
fn to_file_schema(batch: &RecordBatch, to: &SchemaRef) -> Result<RecordBatch, WriteError> {
    let cols = batch
        .columns()
        .iter()
        .zip(to.fields())
        .map(|(c, f)| if c.data_type() == f.data_type() { Ok(c.clone()) } else { arrow_cast::cast(c, f.data_type()) })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(to.clone(), cols)?)
}

/// An open Parquet file in memory: closed row groups in `writer`, the
/// current one in `group`.
struct ParquetFile {
    writer: SerializedFileWriter<FileParts>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    /// Leaves written by [`StringColumn`]s, not parquet-rs: leaf index, path
    /// and descriptor.
    strings: Vec<(usize, LeafPath, ColumnDescPtr)>,
    /// Leaves per top-level column.
    leaves: Vec<usize>,
    group: Option<Group>,
    groups: usize,
    row_group_bytes: usize,
}

/// A closed column chunk of a row group, before it is appended.
enum Chunk {
    Strings((super::pages::Pages, parquet::column::writer::ColumnCloseResult)),
    Arrow(parquet::arrow::arrow_writer::ArrowColumnChunk),
}

/// A row group being written.
struct Group {
    columns: Vec<ArrowColumnWriter>,
    /// One per entry of `ParquetFile::strings`.
    strings: Vec<StringColumn>,
    /// Arrow bytes written so far (estimated from the batches' row sizes).
    bytes: usize,
}

impl ParquetFile {
    /// A file for batches of `first`'s schema. Which columns go without a
    /// dictionary is judged on `first`'s leading rows.
    fn new(first: &RecordBatch, opts: &ParquetOptions) -> Result<ParquetFile, WriteError> {
        let schema = first.schema();
        let parquet_schema = ArrowSchemaConverter::new().convert(&schema)?;
        let plain = high_cardinality_columns(first);
        let strings: Vec<_> = string_leaves(&parquet_schema, &schema, &plain).into_iter().map(|(l, p)| (l, p, parquet_schema.column(l))).collect();
        let leaves = schema.fields().iter().map(|f| leaf_count(f.data_type())).collect();
        let mut props = WriterProperties::builder();
        for path in plain {
            props = props.set_column_dictionary_enabled(ColumnPath::from(path), false);
        }
        let mut props = props
            .set_compression(Compression::SNAPPY)
            .set_dictionary_enabled(true)
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_created_by(format!("lakehose version {}", env!("CARGO_PKG_VERSION")))
            .build();
        // readers take timestamp zones and the like from the embedded Arrow schema
        add_encoded_arrow_schema_to_metadata(&schema, &mut props);
        let writer = SerializedFileWriter::new(FileParts::default(), parquet_schema.root_schema_ptr(), Arc::new(props))?;
        let factory = ArrowRowGroupWriterFactory::new(&writer, schema.clone());
        Ok(ParquetFile { writer, factory, schema, strings, leaves, group: None, groups: 0, row_group_bytes: opts.row_group_bytes.max(1) })
    }

    /// Appends `batch`'s rows: to the open row group while it has room for
    /// them (by their average size), closing each group that fills.
    fn write(&mut self, batch: &RecordBatch) -> Result<(), WriteError> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let bytes: usize = batch.columns().iter().map(|c| c.to_data().get_slice_memory_size().unwrap_or(0)).sum();
        let per_row = bytes as f64 / rows as f64;
        let mut start = 0;
        while start < rows {
            let group = match &mut self.group {
                Some(g) => g,
                None => self.group.insert(Group {
                    columns: self.factory.create_column_writers(self.groups)?,
                    strings: self.strings.iter().map(|(_, p, d)| StringColumn::new(p.clone(), d.clone())).collect(),
                    bytes: 0,
                }),
            };
            let fit = match per_row > 0.0 {
                true => (self.row_group_bytes.saturating_sub(group.bytes) as f64 / per_row) as usize,
                false => usize::MAX,
            };
            let remaining = rows - start;
            let take = fit.clamp(1, remaining); // a group holds at least one row
            let part = batch.slice(start, take);
            // parquet-rs writes the leaves that are not a StringColumn's
            let mut own = self.strings.iter().map(|(l, _, _)| *l).peekable();
            let mut first = 0;
            for ((field, array), &n) in self.schema.fields().iter().zip(part.columns()).zip(&self.leaves) {
                let mine: Vec<usize> = std::iter::from_fn(|| own.next_if(|l| *l < first + n)).collect();
                if mine.len() < n {
                    let writers = &mut group.columns[first..first + n];
                    for (k, leaf) in compute_leaves(field, array)?.into_iter().enumerate() {
                        if !mine.contains(&(first + k)) {
                            writers[k].write(&leaf)?;
                        }
                    }
                }
                first += n;
            }
            for d in &mut group.strings {
                d.write(part.column(d.path().column))?;
            }
            group.bytes += (take as f64 * per_row) as usize;
            start += take;
            if fit < remaining {
                self.close_group()?; // full
            }
        }
        Ok(())
    }

    fn close_group(&mut self) -> Result<(), WriteError> {
        let Some(group) = self.group.take() else { return Ok(()) };
        let mut strings = self.strings.iter().zip(group.strings).peekable();
        let mut chunks = Vec::with_capacity(group.columns.len());
        for (leaf, column) in group.columns.into_iter().enumerate() {
            if let Some((_, d)) = strings.next_if(|((l, _, _), _)| *l == leaf) {
                chunks.push(Chunk::Strings(d.close()?));
                continue;
            }
            chunks.push(Chunk::Arrow(column.close()?));
        }
        // the string chunks' pages go into the file as they are (their bytes
        // pass through parquet-rs's copy but are not stored again); room for
        // the other chunks at once, instead of the buffer growing by doubling
        let mut at = self.writer.bytes_written() as u64;
        let mut copied = 0;
        for c in &mut chunks {
            match c {
                Chunk::Strings((pages, close)) => {
                    let len = close.metadata.compressed_size() as u64;
                    self.writer.inner_mut().splice(at, len, pages.parts());
                    at += len;
                }
                Chunk::Arrow(chunk) => {
                    let len = chunk.close_mut().metadata.compressed_size() as u64;
                    (at, copied) = (at + len, copied + len as usize);
                }
            }
        }
        self.writer.inner_mut().pending.reserve(copied);
        let mut row_group = self.writer.next_row_group()?;
        for chunk in chunks {
            match chunk {
                Chunk::Strings((pages, close)) => row_group.append_column(&pages, close)?,
                Chunk::Arrow(chunk) => chunk.append_to_row_group(&mut row_group)?,
            }
        }
        row_group.close()?;
        self.groups += 1;
        Ok(())
    }

    /// Bytes held: closed row groups plus the open group's pages.
    fn memory_size(&self) -> usize {
        let open = self.group.as_ref().map_or(0, |g| {
            g.columns.iter().map(ArrowColumnWriter::memory_size).sum::<usize>() + g.strings.iter().map(StringColumn::memory_size).sum::<usize>()
        });
        self.writer.inner().held() + open
    }

    fn finish(mut self, meta: Vec<KeyValue>) -> Result<(PutPayload, ParquetMetaData), WriteError> {
        self.close_group()?;
        for kv in meta {
            self.writer.append_key_value_metadata(kv);
        }
        let footer = self.writer.finish()?;
        Ok((std::mem::take(self.writer.inner_mut()).into_payload()?, footer))
    }
}

/// Where a file is written: the bytes parquet-rs writes, copied, except
/// those of registered ranges, whose bytes are already held as page
/// buffers and are taken as they are: the string chunks' pages (most of a
/// file) are held once, not copied into a second buffer the size of the
/// file. A range that does not fit where parquet-rs writes fails the file.
#[derive(Default)]
struct FileParts {
    /// The file so far: copied runs and page buffers, in order.
    parts: Vec<Bytes>,
    /// Bytes in `parts`.
    held: usize,
    /// Copied bytes not yet in `parts`.
    pending: Vec<u8>,
    /// Bytes received so far.
    pos: u64,
    /// Ranges still to come, in order: start, length, and the buffers that
    /// are their bytes.
    splices: std::collections::VecDeque<(u64, u64, Vec<Bytes>)>,
    /// Where the last registered range ends: the next must start there or later.
    registered_to: u64,
    /// A range registered out of place: the file would be wrong.
    broken: Option<String>,
}

impl FileParts {
    /// The `len` bytes parquet-rs will write at `start` are `parts`.
    /// A range that does not fit (its buffers are not `len` long, it starts
    /// before bytes already received or inside another range) breaks the
    /// file: [`FileParts::into_payload`] fails.
    fn splice(&mut self, start: u64, len: u64, parts: &[Bytes]) {
        let held = parts.iter().map(|p| p.len() as u64).sum::<u64>();
        if held != len || start < self.pos || start < self.registered_to {
            self.broken.get_or_insert_with(|| format!("page range at {start} of {len} bytes (buffers of {held}) after byte {}", self.pos.max(self.registered_to)));
            return;
        }
        self.registered_to = start + len;
        self.splices.push_back((start, len, parts.to_vec()));
    }

    fn push_pending(&mut self) {
        if !self.pending.is_empty() {
            self.held += self.pending.len();
            self.parts.push(Bytes::from(std::mem::take(&mut self.pending)));
        }
    }

    /// Bytes held: the parts and the copy buffer.
    fn held(&self) -> usize {
        self.held + self.pending.capacity()
    }

    /// The file, once every registered range was written where it was registered.
    fn into_payload(mut self) -> Result<PutPayload, WriteError> {
        if let Some(b) = self.broken.take() {
            return Err(WriteError::Assembly(b));
        }
        if let Some((start, len, _)) = self.splices.front() {
            return Err(WriteError::Assembly(format!("page range at {start} of {len} bytes never written (the file ends at {})", self.pos)));
        }
        self.push_pending();
        Ok(PutPayload::from_iter(self.parts))
    }
}

impl std::io::Write for FileParts {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            let Some(&(start, len, _)) = self.splices.front() else {
                self.pending.extend_from_slice(rest);
                self.pos += rest.len() as u64;
                break;
            };
            let n = if self.pos < start {
                // copied bytes before the next range
                let n = (start - self.pos).min(rest.len() as u64) as usize;
                self.pending.extend_from_slice(&rest[..n]);
                n
            } else {
                // bytes of the range: already held
                (start + len - self.pos).min(rest.len() as u64) as usize
            };
            self.pos += n as u64;
            rest = &rest[n..];
            if self.pos == start + len {
                let (_, _, parts) = self.splices.pop_front().expect("front");
                self.push_pending();
                self.held += len as usize;
                self.parts.extend(parts);
            }
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Dotted paths of string, binary and fixed-width leaves (top level and
/// inside structs) whose values are mostly distinct in a sample: a dictionary
/// would cost time to build and then be abandoned (ids, URLs, session tokens,
/// millisecond timestamps), so they go plain.
fn high_cardinality_columns(batch: &RecordBatch) -> Vec<Vec<String>> {
    fn visit(name: Vec<String>, a: &ArrayRef, out: &mut Vec<Vec<String>>) {
        if let DataType::Struct(_) = a.data_type() {
            let s = a.as_any().downcast_ref::<StructArray>().expect("struct");
            for (f, c) in s.fields().iter().zip(s.columns()) {
                let mut p = name.clone();
                p.push(f.name().clone());
                visit(p, c, out);
            }
            return;
        }
        let n = a.len().min(SAMPLE);
        if n < 64 {
            return; // too few rows to judge: keep the default
        }
        let distinct = match a.data_type() {
            DataType::Utf8 | DataType::Binary => {
                let data = a.to_data();
                let offsets = data.buffers()[0].typed_data::<i32>();
                let values = data.buffers()[1].as_slice();
                distinct_hashes((data.offset()..data.offset() + n).map(|j| &values[offsets[j] as usize..offsets[j + 1] as usize]))
            }
            // fixed-width values (timestamps, ids, amounts): the same test on their bytes
            dt if dt.primitive_width().is_some_and(|w| w >= 4) => {
                let width = dt.primitive_width().expect("checked");
                let data = a.to_data();
                let start = data.offset() * width;
                distinct_hashes(data.buffers()[0].as_slice()[start..start + n * width].chunks_exact(width))
            }
            _ => return,
        };
        if distinct * 2 > n {
            out.push(name);
        }
    }
    let mut out = Vec::new();
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        visit(vec![f.name().clone()], c, &mut out);
    }
    out
}

/// Values per column looked at to judge its cardinality.
const SAMPLE: usize = 256;

/// Number of distinct values among at most [`SAMPLE`] byte strings, counted
/// by their 64-bit hashes in a fixed open-addressing table (a collision can
/// only make the count one lower; this is a heuristic). It runs once per
/// string column per file, so it must cost little next to a small file.
fn distinct_hashes<'a>(values: impl Iterator<Item = &'a [u8]>) -> usize {
    const SLOTS: usize = 2 * SAMPLE;
    let mut table = [0u64; SLOTS];
    let mut distinct = 0;
    for v in values.take(SAMPLE) {
        let h = crate::hash::bytes(v) | 1; // 0 marks an empty slot
        // the high bits of a multiplicative hash are the well-mixed ones
        let mut i = (h >> (64 - SLOTS.trailing_zeros())) as usize;
        while table[i] != 0 && table[i] != h {
            i = (i + 1) % SLOTS;
        }
        if table[i] == 0 {
            table[i] = h;
            distinct += 1;
        }
    }
    distinct
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Registered page ranges are taken as their buffers where parquet-rs
    /// writes them; a range that does not fit fails the file (in release
    /// builds too) instead of writing a wrong one.
    #[test]
    fn file_parts_take_registered_ranges_or_fail() {
        use std::io::Write;
        let payload = |p: PutPayload| p.into_iter().flat_map(|b| b.to_vec()).collect::<Vec<u8>>();
        let mut f = FileParts::default();
        f.write_all(b"abc").unwrap();
        f.splice(3, 3, &[Bytes::from_static(b"XY"), Bytes::from_static(b"Z")]);
        f.splice(7, 2, &[Bytes::from_static(b"PQ")]);
        f.write_all(b"xyz").unwrap(); // the range's bytes pass through: the buffers are kept
        f.write_all(b"d").unwrap();
        f.write_all(b"pqe").unwrap();
        assert_eq!(payload(f.into_payload().unwrap()), b"abcXYZdPQe");
        let broken: [fn(&mut FileParts); 4] = [
            |f| f.splice(3, 4, &[Bytes::from_static(b"XYZ")]), // buffers shorter than the range
            |f| f.splice(1, 1, &[Bytes::from_static(b"X")]),   // before bytes already written
            |f| {
                f.splice(3, 2, &[Bytes::from_static(b"XY")]);
                f.splice(4, 1, &[Bytes::from_static(b"Z")]) // inside another range
            },
            |f| f.splice(9, 1, &[Bytes::from_static(b"X")]), // never written: the file ends first
        ];
        for (i, wrong) in broken.iter().enumerate() {
            let mut f = FileParts::default();
            f.write_all(b"abc").unwrap();
            wrong(&mut f);
            f.write_all(b"defgh").unwrap();
            assert!(matches!(f.into_payload(), Err(WriteError::Assembly(_))), "case {i}");
        }
    }
    use arrow_buffer::NullBuffer;
    use arrow_schema::Schema;
    use bytes::Bytes;

    #[test]
    fn mostly_distinct_columns_go_without_a_dictionary() {
        use arrow_array::{Int32Array, Int64Array, StringArray};
        let n = 300;
        let ids = StringArray::from_iter_values((0..n).map(|i| format!("e-{i}")));
        let kinds = StringArray::from_iter_values((0..n).map(|i| ["view", "click", "buy"][i % 3]));
        let ts = Int64Array::from_iter_values((0..n).map(|i| 1_763_730_300_000 + 37 * i as i64));
        let small = Int32Array::from_iter_values((0..n).map(|i| (i % 7) as i32));
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(ids) as ArrayRef),
            ("kind", Arc::new(kinds) as ArrayRef),
            ("ts", Arc::new(ts) as ArrayRef),
            ("small", Arc::new(small) as ArrayRef),
        ])
        .unwrap();
        assert_eq!(high_cardinality_columns(&batch), vec![vec!["id".to_string()], vec!["ts".to_string()]]);
        assert!(high_cardinality_columns(&batch.slice(0, 40)).is_empty(), "too few rows to judge: keep the default");
    }

    #[test]
    fn counts_distinct_values_in_a_sample() {
        let ids: Vec<String> = (0..1000).map(|i| format!("e-{i:08}")).collect();
        assert_eq!(distinct_hashes(ids.iter().map(|s| s.as_bytes())), SAMPLE, "only the sample is looked at");
        let kinds = ["view", "click", "add_to_cart", "purchase", "", "view"];
        assert_eq!(distinct_hashes(kinds.iter().cycle().take(300).map(|s| s.as_bytes())), 5);
        assert_eq!(distinct_hashes(["a", "a\0", "aa"].iter().map(|s| s.as_bytes())), 3, "lengths and tails count");
    }

    /// A batch with strings at the top level, in nested structs (some null),
    /// in a list and a map, long values and nulls.
    fn mixed_batch(rows: usize) -> RecordBatch {
        use arrow_array::builder::{ListBuilder, MapBuilder, StringBuilder};
        use arrow_array::{Int64Array, StringArray};
        use arrow_schema::Field;
        let word = |i: usize| ["view", "click", "", "é-ü", "https://shop.example.com/p/1234?ref=home"][i % 5];
        let long = |i: usize| format!("{}{}", "x".repeat(60 + i % 9), i);
        let top = StringArray::from_iter((0..rows).map(|i| (i % 11 != 3).then(|| long(i))));
        let inner = StringArray::from_iter((0..rows).map(|i| (i % 4 != 1).then(|| word(i * 7))));
        let deep = StructArray::from(vec![(Arc::new(Field::new("s", DataType::Utf8, true)), Arc::new(inner) as ArrayRef)]);
        let outer_nulls = NullBuffer::from_iter((0..rows).map(|i| i % 6 != 0));
        let outer = StructArray::try_new(
            vec![
                Field::new("n", DataType::Int64, true),
                Field::new("deep", deep.data_type().clone(), true),
                Field::new("t", DataType::Utf8, true),
            ]
            .into(),
            vec![
                Arc::new(Int64Array::from_iter_values((0..rows).map(|i| i as i64))) as ArrayRef,
                Arc::new(deep),
                Arc::new(StringArray::from_iter_values((0..rows).map(|i| word(i + 2)))),
            ],
            Some(outer_nulls),
        )
        .unwrap();
        let mut list = ListBuilder::new(StringBuilder::new());
        let mut map = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        for i in 0..rows {
            list.values().append_value(word(i + 1));
            list.append(i % 5 != 2);
            map.keys().append_value(word(i + 3));
            map.values().append_value(word(i));
            map.append(true).unwrap();
        }
        RecordBatch::try_from_iter([
            ("top", Arc::new(top) as ArrayRef),
            ("outer", Arc::new(outer) as ArrayRef),
            ("tags", Arc::new(list.finish()) as ArrayRef),
            ("props", Arc::new(map.finish()) as ArrayRef),
        ])
        .unwrap()
    }

    fn chunk_stats(bytes: Vec<u8>) -> Vec<Vec<(String, Option<Vec<u8>>, Option<Vec<u8>>, Option<u64>)>> {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        use parquet::file::statistics::Statistics;
        let r = SerializedFileReader::new(Bytes::from(bytes)).unwrap();
        r.metadata()
            .row_groups()
            .iter()
            .map(|g| {
                g.columns()
                    .iter()
                    .map(|c| {
                        let s = c.statistics();
                        let bytes = |v: Option<&[u8]>| v.map(|v| v.to_vec());
                        let (min, max) = match s {
                            Some(Statistics::ByteArray(v)) => (bytes(v.min_opt().map(|b| b.data())), bytes(v.max_opt().map(|b| b.data()))),
                            Some(other) => (bytes(other.min_bytes_opt()), bytes(other.max_bytes_opt())),
                            None => (None, None),
                        };
                        (c.column_path().string(), min, max, s.and_then(|s| s.null_count_opt()))
                    })
                    .collect()
            })
            .collect()
    }

    /// The chunk statistics parquet-rs's ArrowWriter gives `batch`.
    fn arrow_writer_stats(batch: &RecordBatch) -> Vec<Vec<(String, Option<Vec<u8>>, Option<Vec<u8>>, Option<u64>)>> {
        let mut file = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut file, batch.schema(), None).unwrap();
        w.write(batch).unwrap();
        w.close().unwrap();
        chunk_stats(file)
    }

    /// A file of `parts` written one after another.
    fn file_of(parts: &[RecordBatch], opts: &ParquetOptions) -> Bytes {
        let mut f = ParquetFile::new(&parts[0], opts).unwrap();
        for p in parts {
            f.write(p).unwrap();
        }
        Bytes::from(f.finish(vec![KeyValue::new("k".into(), "v".to_string())]).unwrap().0)
    }

    /// The file's rows in batches of `rows`.
    fn read_back(file: Bytes, rows: usize) -> Vec<RecordBatch> {
        parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, rows).unwrap().map(|b| b.unwrap()).collect()
    }

    #[test]
    fn chunk_statistics_are_those_parquet_rs_writes() {
        let batch = mixed_batch(1000);
        let parquet_schema = ArrowSchemaConverter::new().convert(&batch.schema()).unwrap();
        // every string leaf is a StringColumn's: top, outer.deep.s, outer.t, tags, props key and value
        let leaves: Vec<usize> = string_leaves(&parquet_schema, &batch.schema(), &[]).into_iter().map(|(l, _)| l).collect();
        assert_eq!(leaves, vec![0, 2, 3, 4, 5, 6]);
        let theirs = arrow_writer_stats(&batch);
        // whole, and in parts of uneven sizes as a buffer encodes its chunks
        let cuts = [0, 1, 97, 98, 640, 1000];
        let parts: Vec<RecordBatch> = cuts.windows(2).map(|w| batch.slice(w[0], w[1] - w[0])).collect();
        // `top` is mostly distinct: PLAIN pages, no dictionary (judged on
        // the first part: the one-row part leaves it the dictionary)
        let whole = file_of(&[batch.clone()], &ParquetOptions::default());
        assert_eq!(data_page_encodings(whole.clone())[0], vec![(parquet::basic::Encoding::PLAIN, 1)]);
        for file in [whole, file_of(&parts, &ParquetOptions::default())] {
            let ours = chunk_stats(file.to_vec());
            assert_eq!(ours.len(), 1);
            assert_eq!(ours[0].len(), 7, "top, outer.n, outer.deep.s, outer.t, tags, props key, props value");
            assert_eq!(ours, theirs);
            // and a reader takes the file: same rows back
            assert_eq!(read_back(file, 4096), vec![batch.clone()]);
        }
    }

    /// Long values of every UTF-8 width (CJK, emoji, and characters whose
    /// successor is wider or no character: U+007F, U+07FF, U+D7FF, U+FFFF,
    /// U+10FFFF) have the truncated min and max parquet-rs writes, and
    /// neither is longer than its 64 bytes.
    #[test]
    fn long_non_ascii_statistics_are_those_parquet_rs_writes() {
        use arrow_array::StringArray;
        let alphabet = ['a', 'z', '~', '\u{7f}', 'é', '\u{7ff}', '中', '語', '\u{d7ff}', '\u{ffff}', '😀', '\u{10ffff}'];
        let mut next = crate::hash::xorshift(0x5eed);
        let mut value = |len: usize| -> String {
            let mut s = String::new();
            while s.len() < len {
                s.push(alphabet[(next() % alphabet.len() as u64) as usize]);
            }
            s
        };
        let values: Vec<String> = (0..400).map(|i| value(50 + i % 120)).collect();
        let schema = Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new("s", DataType::Utf8, false)]));
        let batch = |v: &[String]| RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from_iter_values(v))]).unwrap();
        // each value alone (min and max both truncated from it), then all together
        let mut cases: Vec<Vec<String>> = values.iter().map(|v| vec![v.clone()]).collect();
        cases.push(values.clone());
        for (i, case) in cases.iter().enumerate() {
            let b = batch(case);
            let theirs = arrow_writer_stats(&b);
            let ours = chunk_stats(file_of(&[b], &ParquetOptions::default()).to_vec());
            assert_eq!(ours, theirs, "case {i}: {:?}", case.first());
            let (_, min, max, _) = &ours[0][0];
            assert!(min.as_ref().unwrap().len() <= 64, "case {i}: min of {} bytes", min.as_ref().unwrap().len());
            let max = max.as_ref().unwrap();
            assert!(max.len() <= 64 || case.iter().any(|v| v.as_bytes() == max.as_slice()), "case {i}: max of {} bytes", max.len());
        }
    }

    #[test]
    fn row_groups_are_cut_by_bytes() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let groups = |file: Bytes| -> Vec<i64> {
            let r = SerializedFileReader::new(file).unwrap();
            r.metadata().row_groups().iter().map(|g| g.num_rows()).collect()
        };
        let size = |b: &RecordBatch| -> usize { b.columns().iter().map(|c| c.to_data().get_slice_memory_size().unwrap()).sum() };
        let batch = mixed_batch(3000);
        let opts = ParquetOptions { row_group_bytes: size(&batch) / 3 + 1, ..Default::default() };
        assert_eq!(groups(file_of(&[batch.clone()], &opts)), vec![1000, 1000, 1000]);
        // in parts: a group fills across parts and closes inside one
        let part = mixed_batch(1000);
        let opts = ParquetOptions { row_group_bytes: size(&part) * 3 / 2 + 1, ..Default::default() };
        let file = file_of(&[part.clone(), part.clone(), part.clone()], &opts);
        assert_eq!(groups(file.clone()), vec![1500, 1500]);
        assert_eq!(read_back(file, 1000), vec![part.clone(), part.clone(), part]);
        assert_eq!(groups(file_of(&[batch], &ParquetOptions::default())), vec![3000]);
    }

    /// Strings at every shape [`StringColumn`] writes: under a struct with a
    /// null buffer but no nulls and one with nulls, a required column, a
    /// column of one value, a nullable list (null and empty lists, null
    /// elements) inside a struct with nulls, a map with null values and
    /// null and empty maps.
    fn nested_batch(rows: usize) -> RecordBatch {
        use arrow_array::builder::{ListBuilder, MapBuilder, StringBuilder};
        use arrow_array::StringArray;
        use arrow_schema::Field;
        let word = |i: usize| ["view", "click", "", "é-ü", "https://shop.example.com/p/1234?ref=home", "a"][i % 6];
        let s = StringArray::from_iter((0..rows).map(|i| (i % 3 != 0).then(|| word(i))));
        let b = StructArray::try_new(
            vec![Field::new("s", DataType::Utf8, true)].into(),
            vec![Arc::new(s) as ArrayRef],
            Some(NullBuffer::from_iter((0..rows).map(|i| i % 5 != 1))),
        )
        .unwrap();
        let a = StructArray::try_new(
            vec![Field::new("b", b.data_type().clone(), true)].into(),
            vec![Arc::new(b) as ArrayRef],
            Some(NullBuffer::new_valid(rows)), // a null buffer without nulls
        )
        .unwrap();
        let mut list = ListBuilder::new(StringBuilder::new());
        let mut map = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        for i in 0..rows {
            for j in 0..(i % 4) {
                list.values().append_option((j != 2).then(|| word(i + j)));
                map.keys().append_value(word(i + j + 1));
                map.values().append_option(((i + j) % 5 != 0).then(|| word(i * 7 + j)));
            }
            list.append(i % 7 != 3);
            map.append(i % 9 != 4).unwrap();
        }
        let (list, map) = (list.finish(), map.finish());
        let st = StructArray::try_new(
            vec![Field::new("tags", list.data_type().clone(), true)].into(),
            vec![Arc::new(list) as ArrayRef],
            Some(NullBuffer::from_iter((0..rows).map(|i| i % 11 != 5))),
        )
        .unwrap();
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("a", a.data_type().clone(), true),
                Field::new("req", DataType::Utf8, false),
                Field::new("id", DataType::Utf8, false),
                Field::new("one", DataType::Utf8, true),
                Field::new("st", st.data_type().clone(), true),
                Field::new("m", map.data_type().clone(), true),
            ])),
            vec![
                Arc::new(a) as ArrayRef,
                Arc::new(StringArray::from_iter_values((0..rows).map(|i| word(i + 1)))),
                Arc::new(StringArray::from_iter_values((0..rows).map(|i| format!("id-{i}")))),
                Arc::new(StringArray::from_iter_values((0..rows).map(|_| "only"))),
                Arc::new(st),
                Arc::new(map),
            ],
        )
        .unwrap()
    }

    /// The data pages of the file's first row group, per column: runs of
    /// pages of one encoding, (encoding, pages).
    fn data_page_encodings(file: Bytes) -> Vec<Vec<(parquet::basic::Encoding, i32)>> {
        use parquet::basic::PageType;
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let r = SerializedFileReader::new(file).unwrap();
        let group = r.get_row_group(0).unwrap();
        (0..group.num_columns())
            .map(|c| {
                let mut runs: Vec<(parquet::basic::Encoding, i32)> = Vec::new();
                for page in group.get_column_page_reader(c).unwrap() {
                    let page = page.unwrap();
                    if page.page_type() != PageType::DATA_PAGE {
                        continue;
                    }
                    match runs.last_mut() {
                        Some((e, n)) if *e == page.encoding() => *n += 1,
                        _ => runs.push((page.encoding(), 1)),
                    }
                }
                runs
            })
            .collect()
    }

    #[test]
    fn dictionary_string_columns_read_back_with_parquet_rs_statistics() {
        use parquet::basic::Encoding;
        let batch = nested_batch(2000);
        let parquet_schema = ArrowSchemaConverter::new().convert(&batch.schema()).unwrap();
        // every string leaf is a StringColumn's: a.b.s, req, id, one, st.tags, m key, m value
        let leaves: Vec<usize> = string_leaves(&parquet_schema, &batch.schema(), &[]).into_iter().map(|(l, _)| l).collect();
        assert_eq!(leaves, vec![0, 1, 2, 3, 4, 5, 6]);
        let theirs = arrow_writer_stats(&batch);
        let cuts = [0, 1, 333, 334, 1500, 2000];
        let parts: Vec<RecordBatch> = cuts.windows(2).map(|w| batch.slice(w[0], w[1] - w[0])).collect();
        // (the whole batch, whose rows judge `id` mostly distinct; parts, of which the first has one row)
        for (file, judged) in [(file_of(&[batch.clone()], &ParquetOptions::default()), true), (file_of(&parts, &ParquetOptions::default()), false)] {
            assert_eq!(chunk_stats(file.to_vec()), theirs);
            assert_eq!(read_back(file.clone(), 4096), vec![batch.clone()]);
            // `id` (required, mostly distinct) goes PLAIN when it was judged
            let want = |column: usize| if column == 2 && judged { Encoding::PLAIN } else { Encoding::RLE_DICTIONARY };
            for (column, pages) in data_page_encodings(file).iter().enumerate() {
                assert_eq!(pages, &vec![(want(column), 1)], "column {column}");
            }
        }
    }

    /// PLAIN pages of nullable columns: levels short enough to go in the
    /// room before the values (no nulls; a few nulls) and longer ones (a
    /// third null), top level and inside a struct, over several pages; all
    /// read back, with parquet-rs's statistics.
    #[test]
    fn plain_string_pages_with_levels_read_back() {
        use arrow_array::StringArray;
        use parquet::basic::Encoding;
        let rows = 50_000;
        let ids = |every: usize| StringArray::from_iter((0..rows).map(|i| (every == 0 || i % every != 7).then(|| format!("id-{i:08}"))));
        let inner = StructArray::try_new(
            vec![arrow_schema::Field::new("s", DataType::Utf8, true)].into(),
            vec![Arc::new(ids(2500)) as ArrayRef],
            Some(NullBuffer::from_iter((0..rows).map(|i| i % 4000 != 11))),
        )
        .unwrap();
        let batch = RecordBatch::try_from_iter([
            ("none", Arc::new(ids(0)) as ArrayRef),
            ("few", Arc::new(ids(3000)) as ArrayRef),
            ("third", Arc::new(ids(3)) as ArrayRef),
            ("st", Arc::new(inner) as ArrayRef),
        ])
        .unwrap();
        let file = file_of(&[batch.slice(0, 20_000), batch.slice(20_000, 30_000)], &ParquetOptions::default());
        assert_eq!(chunk_stats(file.to_vec()), arrow_writer_stats(&batch));
        assert_eq!(read_back(file.clone(), rows), vec![batch]);
        for (column, pages) in data_page_encodings(file).iter().enumerate() {
            assert!(pages.iter().all(|p| p.0 == Encoding::PLAIN) && pages.iter().map(|p| p.1).sum::<i32>() >= 3, "column {column}: {pages:?}");
        }
    }

    #[test]
    fn a_dictionary_past_its_limit_goes_on_in_plain_pages() {
        use arrow_array::builder::{ListBuilder, StringBuilder};
        use parquet::basic::Encoding;
        // 60k rows of two distinct 20-byte values: 2.9 MB of dictionary, and
        // pages of at most 20k rows
        let rows = 60_000;
        let mut list = ListBuilder::new(StringBuilder::new());
        for i in 0..rows {
            list.values().append_value(format!("value-{:014}", 2 * i));
            list.values().append_value(format!("value-{:014}", 2 * i + 1));
            list.append(true);
        }
        let batch = RecordBatch::try_from_iter([("l", Arc::new(list.finish()) as ArrayRef)]).unwrap();
        let parquet_schema = ArrowSchemaConverter::new().convert(&batch.schema()).unwrap();
        assert_eq!(string_leaves(&parquet_schema, &batch.schema(), &[]).len(), 1);
        let file = file_of(&[batch.slice(0, 25_000), batch.slice(25_000, 35_000)], &ParquetOptions::default());
        assert_eq!(chunk_stats(file.to_vec()), arrow_writer_stats(&batch));
        assert_eq!(read_back(file.clone(), rows), vec![batch]);
        let pages = &data_page_encodings(file)[0];
        assert_eq!(pages[0].0, Encoding::RLE_DICTIONARY);
        assert_eq!(pages.last().unwrap().0, Encoding::PLAIN, "{pages:?}");
        assert!(pages.iter().map(|p| p.1).sum::<i32>() >= 3, "pages of at most 20k rows: {pages:?}");
    }

    /// String columns carry a page index: per page the min, max and nulls of
    /// exactly the rows the offset index gives it; a reader skipping pages
    /// by it reads the right rows.
    #[test]
    fn string_columns_have_a_page_index_that_bounds_each_page() {
        use arrow_array::cast::AsArray;
        use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector};
        use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};
        use parquet::file::page_index::column_index::ColumnIndexMetaData;
        let rows = 45_000;
        let batch = nested_batch(rows);
        let file = file_of(&[batch.slice(0, 10_000), batch.slice(10_000, rows - 10_000)], &ParquetOptions::default());
        let md = ParquetMetaDataReader::new().with_page_index_policy(PageIndexPolicy::Optional).parse_and_finish(&file).unwrap();
        let (index, offsets) = (md.column_index().expect("a page index"), md.offset_index().expect("an offset index"));
        // a.b.s (leaf 0: null when b or s is), req, id and one (leaves 1-3)
        fn value(batch: &RecordBatch, leaf: usize, i: usize) -> Option<&[u8]> {
            if leaf == 0 {
                let b = batch.column(0).as_struct().column(0).as_struct();
                return (b.is_valid(i) && b.column(0).is_valid(i)).then(|| b.column(0).as_string::<i32>().value(i).as_bytes());
            }
            Some(batch.column(leaf).as_string::<i32>().value(i).as_bytes())
        }
        for leaf in 0..4 {
            let Some(ColumnIndexMetaData::BYTE_ARRAY(ci)) = index[0].get(leaf) else { panic!("leaf {leaf}: no column index") };
            let locations = &offsets[0][leaf].page_locations;
            assert!(locations.len() >= 3, "pages of at most 20k rows");
            for (p, loc) in locations.iter().enumerate() {
                let start = loc.first_row_index as usize;
                let end = locations.get(p + 1).map_or(rows, |l| l.first_row_index as usize);
                let page: Vec<Option<&[u8]>> = (start..end).map(|i| value(&batch, leaf, i)).collect();
                let present = page.iter().flatten();
                assert_eq!(ci.min_value(p), present.clone().min().copied(), "leaf {leaf} page {p}");
                assert_eq!(ci.max_value(p), present.clone().max().copied(), "leaf {leaf} page {p}");
                assert_eq!(ci.null_count(p), Some(page.iter().filter(|v| v.is_none()).count() as i64), "leaf {leaf} page {p}");
            }
        }
        // every string leaf: pages cover the rows from the first, nulls add up to the chunk's
        let chunk = md.row_group(0);
        for leaf in 0..7 {
            let ci = index[0].get(leaf).expect("a column index");
            let first_rows: Vec<i64> = offsets[0][leaf].page_locations.iter().map(|l| l.first_row_index).collect();
            assert_eq!(first_rows[0], 0);
            assert!(first_rows.windows(2).all(|w| w[0] < w[1]), "leaf {leaf}: {first_rows:?}");
            let nulls: i64 = ci.null_counts().unwrap().iter().sum();
            assert_eq!(Some(nulls as u64), chunk.column(leaf).statistics().unwrap().null_count_opt(), "leaf {leaf}");
        }
        // a reader that skips pages by the offset index reads the right rows
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
        let selection = RowSelection::from(vec![RowSelector::skip(25_000), RowSelector::select(100), RowSelector::skip(rows - 25_100)]);
        let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options).unwrap().with_row_selection(selection).build().unwrap();
        let mut at = 25_000;
        for got in reader.map(|b| b.unwrap()) {
            assert_eq!(got, batch.slice(at, got.num_rows()));
            at += got.num_rows();
        }
        assert_eq!(at, 25_100);
    }
}
