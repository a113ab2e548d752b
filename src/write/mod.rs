//! Writers: sealed buffers → object bytes.
//!
//! Input: a [`Sealed`] buffer. Output: the bytes of one object — snappy
//! Parquet for table buffers, gzip NDJSON for raw backups and error lines —
//! and its key. Failure: [`WriteError`] (an Arrow/Parquet encoding error,
//! which would be a bug: the batch was built against the same schema).
//!
//! Parquet: timestamps INT64 TIMESTAMP(MILLIS, UTC-adjusted), lowercase
//! names, column statistics, dictionary encoding, row groups cut by
//! in-memory size (`row_group_bytes`, ~128 MiB like Athena's default).
//! Chunk statistics of flat string columns come from [`stats`].
//! Key-value metadata: `lakehose.schema_version`, `lakehose.table`,
//! `lakehose.shard`, `lakehose.first_position`, `lakehose.last_position`.

use crate::pipeline::{Sealed, SealedBody};
use crate::schema::TableSchema;
use bytes::Bytes;
use flate2::write::GzEncoder;
use parquet::arrow::arrow_writer::{compute_leaves, ArrowRowGroupWriterFactory};
use parquet::arrow::{add_encoded_arrow_schema_to_metadata, ArrowSchemaConverter};
use parquet::file::writer::SerializedFileWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, StructArray};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, Schema};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::{ColumnPath, SchemaDescriptor};
use std::io::Write;
use std::sync::Arc;

mod stats;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("parquet encoding failed: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("gzip encoding failed: {0}")]
    Gzip(#[from] std::io::Error),
}

#[derive(Debug, Clone)]
pub struct ParquetOptions {
    pub row_group_bytes: usize,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        ParquetOptions { row_group_bytes: 128 << 20 }
    }
}

/// Encodes a sealed buffer's body (which is taken out of it) and returns its key and bytes.
pub fn encode(s: &mut Sealed, schema: &TableSchema, opts: &ParquetOptions) -> Result<(String, Bytes), WriteError> {
    let key = s.key();
    let bytes = match std::mem::replace(&mut s.body, SealedBody::Lines(Vec::new())) {
        SealedBody::Rows(mut cols) => {
            let batch = cols.finish(schema);
            drop(cols);
            let meta = vec![
                KeyValue::new("lakehose.schema_version".into(), schema.version.clone()),
                KeyValue::new("lakehose.table".into(), schema.table.clone()),
                KeyValue::new("lakehose.shard".into(), s.shard.to_string()),
                KeyValue::new("lakehose.first_position".into(), format!("{}/{}", s.first.seq, s.first.sub)),
                KeyValue::new("lakehose.last_position".into(), format!("{}/{}", s.last.seq, s.last.sub)),
            ];
            parquet_bytes(&batch, meta, opts)?
        }
        SealedBody::Lines(lines) => gzip(&lines)?,
    };
    Ok((key, Bytes::from(bytes)))
}

/// Encodes one batch as a Parquet file: row groups of about
/// `row_group_bytes` of column data each, every leaf through parquet-rs's
/// column writers, except that the chunk statistics of flat string leaves
/// come from [`stats`] (parquet-rs's own are switched off for them).
fn parquet_bytes(batch: &RecordBatch, meta: Vec<KeyValue>, opts: &ParquetOptions) -> Result<Vec<u8>, WriteError> {
    let arrow_schema = batch.schema();
    let parquet_schema = ArrowSchemaConverter::new().convert(&arrow_schema)?;
    let own_stats = flat_string_leaves(&parquet_schema, &arrow_schema);
    let mut props = WriterProperties::builder();
    for path in high_cardinality_columns(batch) {
        props = props.set_column_dictionary_enabled(ColumnPath::from(path), false);
    }
    for (leaf, _) in &own_stats {
        props = props.set_column_statistics_enabled(parquet_schema.column(*leaf).path().clone(), EnabledStatistics::None);
    }
    let mut props = props
        .set_compression(Compression::SNAPPY)
        .set_dictionary_enabled(true)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_created_by(format!("lakehose version {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(meta))
        .build();
    // readers take timestamp zones and the like from the embedded Arrow schema
    add_encoded_arrow_schema_to_metadata(&arrow_schema, &mut props);
    let mut out = Vec::with_capacity(batch.get_array_memory_size() / 4);
    let mut writer = SerializedFileWriter::new(&mut out, parquet_schema.root_schema_ptr(), Arc::new(props))?;
    let factory = ArrowRowGroupWriterFactory::new(&writer, arrow_schema.clone());
    for (index, rows) in row_groups(batch, opts.row_group_bytes).into_iter().enumerate() {
        let group = batch.slice(rows.start, rows.len());
        let mut columns = factory.create_column_writers(index)?;
        let mut next = columns.iter_mut();
        for (field, array) in arrow_schema.fields().iter().zip(group.columns()) {
            for leaf in compute_leaves(field, array)? {
                next.next().expect("one writer per leaf").write(&leaf)?;
            }
        }
        let mut own = own_stats.iter().peekable();
        let mut row_group = writer.next_row_group()?;
        for (leaf, column) in columns.into_iter().enumerate() {
            let mut chunk = column.close()?;
            if let Some((_, path)) = own.next_if(|(l, _)| *l == leaf) {
                let (values, nulls) = string_leaf(&group, path);
                let close = chunk.close_mut();
                close.metadata = close.metadata.clone().into_builder().set_statistics(stats::string_chunk(values, nulls.as_ref())).build()?;
            }
            chunk.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
    }
    writer.close()?;
    Ok(out)
}

/// Row ranges of about `row_group_bytes` of Arrow data each (one range for
/// a batch below that, as most are: buffers are flushed at `max_bytes`).
fn row_groups(batch: &RecordBatch, row_group_bytes: usize) -> Vec<std::ops::Range<usize>> {
    let rows = batch.num_rows();
    let bytes: usize = batch.columns().iter().map(|c| c.to_data().get_slice_memory_size().unwrap_or(0)).sum();
    let groups = bytes.div_ceil(row_group_bytes.max(1)).clamp(1, rows.max(1));
    let per = rows.div_ceil(groups).max(1);
    (0..groups).map(|g| g * per..((g + 1) * per).min(rows)).filter(|r| !r.is_empty()).collect()
}

/// String leaves outside lists and maps (top-level columns and struct
/// fields at any depth): their leaf index in `parquet` (leaves with no
/// repetition level) and the child indices that lead to them in `arrow`.
fn flat_string_leaves(parquet: &SchemaDescriptor, arrow: &Schema) -> Vec<(usize, Vec<usize>)> {
    let at = |names: &[String]| {
        let (mut fields, mut path, mut dt) = (arrow.fields(), Vec::new(), None);
        for name in names {
            let (i, f) = fields.find(name)?;
            path.push(i);
            dt = Some(f.data_type());
            if let DataType::Struct(inner) = f.data_type() {
                fields = inner;
            }
        }
        matches!(dt, Some(DataType::Utf8)).then_some(path)
    };
    let leaves = parquet.columns().iter().enumerate().filter(|(_, c)| c.max_rep_level() == 0);
    leaves.filter_map(|(leaf, c)| Some((leaf, at(c.path().parts())?))).collect()
}

/// The string array at `path` (see [`flat_string_leaves`]) and the nulls
/// of it and every struct around it.
fn string_leaf<'a>(batch: &'a RecordBatch, path: &[usize]) -> (&'a arrow_array::StringArray, Option<NullBuffer>) {
    let mut array: &ArrayRef = batch.column(path[0]);
    let mut nulls = array.nulls().cloned();
    for &i in &path[1..] {
        array = array.as_struct().column(i);
        nulls = NullBuffer::union(nulls.as_ref(), array.nulls());
    }
    (array.as_string::<i32>(), nulls)
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
    use std::hash::Hasher;
    const SLOTS: usize = 2 * SAMPLE;
    let mut table = [0u64; SLOTS];
    let mut distinct = 0;
    for v in values.take(SAMPLE) {
        let mut h = crate::hash::Fast::default();
        h.write(v);
        h.write_usize(v.len());
        let h = h.finish() | 1; // 0 marks an empty slot
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

/// Gzip at a fast level: the output is ordinary gzip any tool reads.
pub fn gzip(data: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    let mut enc = GzEncoder::new(Vec::with_capacity(data.len() / 4), flate2::Compression::new(1));
    enc.write_all(data)?;
    enc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn chunk_statistics_are_those_parquet_rs_writes() {
        let batch = mixed_batch(1000);
        let parquet_schema = ArrowSchemaConverter::new().convert(&batch.schema()).unwrap();
        // top, outer.deep.s and outer.t are ours; outer.n is no string, tags and props repeat
        assert_eq!(flat_string_leaves(&parquet_schema, &batch.schema()), vec![(0, vec![0]), (2, vec![1, 1, 0]), (3, vec![1, 2])]);
        let ours = parquet_bytes(&batch, Vec::new(), &ParquetOptions::default()).unwrap();
        let mut theirs = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut theirs, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let (ours, theirs) = (chunk_stats(ours), chunk_stats(theirs));
        assert_eq!(ours.len(), 1);
        assert_eq!(ours[0].len(), 7, "top, outer.n, outer.deep.s, outer.t, tags, props key, props value");
        assert_eq!(ours, theirs);
        // and a reader takes the file: same rows back
        let file = Bytes::from(parquet_bytes(&batch, Vec::new(), &ParquetOptions::default()).unwrap());
        let back: Vec<RecordBatch> = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 4096).unwrap().map(|b| b.unwrap()).collect();
        assert_eq!(back, vec![batch]);
    }

    #[test]
    fn row_groups_are_cut_by_bytes() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let batch = mixed_batch(3000);
        let bytes: usize = batch.columns().iter().map(|c| c.to_data().get_slice_memory_size().unwrap()).sum();
        let file = parquet_bytes(&batch, Vec::new(), &ParquetOptions { row_group_bytes: bytes / 3 + 1 }).unwrap();
        let r = SerializedFileReader::new(Bytes::from(file)).unwrap();
        let rows: Vec<i64> = r.metadata().row_groups().iter().map(|g| g.num_rows()).collect();
        assert_eq!(rows, vec![1000, 1000, 1000]);
        assert_eq!(row_groups(&batch, 1 << 30), vec![0..3000]);
        assert_eq!(row_groups(&batch.slice(0, 0), 1), Vec::<std::ops::Range<usize>>::new());
    }
}
