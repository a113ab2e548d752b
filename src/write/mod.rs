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
//! Key-value metadata: `lakehose.schema_version`, `lakehose.table`,
//! `lakehose.shard`, `lakehose.first_position`, `lakehose.last_position`.

use crate::pipeline::{Sealed, SealedBody};
use crate::schema::TableSchema;
use bytes::Bytes;
use flate2::write::GzEncoder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use arrow_array::{Array, ArrayRef, RecordBatch, StructArray};
use arrow_schema::DataType;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use std::io::Write;

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
            let mut props = WriterProperties::builder();
            for path in high_cardinality_columns(&batch) {
                props = props.set_column_dictionary_enabled(ColumnPath::from(path), false);
            }
            let props = props
                .set_compression(Compression::SNAPPY)
                .set_dictionary_enabled(true)
                .set_statistics_enabled(EnabledStatistics::Page)
                .set_created_by(format!("lakehose version {}", env!("CARGO_PKG_VERSION")))
                .set_key_value_metadata(Some(meta))
                .set_max_row_group_row_count(None)
                .set_max_row_group_bytes(Some(opts.row_group_bytes.max(1)))
                .build();
            let mut out = Vec::with_capacity(batch.get_array_memory_size() / 4);
            let mut w = ArrowWriter::try_new(&mut out, batch.schema(), Some(props))?;
            w.write(&batch)?;
            w.close()?;
            out
        }
        SealedBody::Lines(lines) => gzip(&lines)?,
    };
    Ok((key, Bytes::from(bytes)))
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
    use std::sync::Arc;

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
}
