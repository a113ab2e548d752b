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
use parquet::file::properties::{EnabledStatistics, WriterProperties};
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
            let props = WriterProperties::builder()
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

/// Gzip at a fast level: the output is ordinary gzip any tool reads.
pub fn gzip(data: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    let mut enc = GzEncoder::new(Vec::with_capacity(data.len() / 4), flate2::Compression::new(1));
    enc.write_all(data)?;
    enc.finish()
}
