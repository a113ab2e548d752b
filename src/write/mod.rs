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
//! A table buffer's rows are mostly encoded before it is sealed (see
//! [`RowBuffer`]); string columns are encoded by [`string_columns`], the
//! others by parquet-rs.
//! Key-value metadata: `lakehose.schema_version`, `lakehose.table`,
//! `lakehose.shard`, `lakehose.first_position`, `lakehose.last_position`.

use crate::pipeline::{Sealed, SealedBody};
use crate::schema::TableSchema;
use object_store::PutPayload;
use flate2::write::GzEncoder;
use parquet::file::metadata::KeyValue;
use std::io::Write;

mod parquet_file;
mod stats;
mod string_columns;

pub use parquet_file::RowBuffer;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("parquet encoding failed: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("gzip encoding failed: {0}")]
    Gzip(#[from] std::io::Error),
}

#[derive(Debug, Clone)]
pub struct ParquetOptions {
    /// Arrow bytes per row group.
    pub row_group_bytes: usize,
    /// Input bytes of buffered rows encoded together ([`RowBuffer`]).
    pub chunk_in_bytes: usize,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        ParquetOptions { row_group_bytes: 128 << 20, chunk_in_bytes: 4 << 20 }
    }
}

/// Encodes a sealed buffer's body (which is taken out of it) and returns
/// its key and bytes (a Parquet file as its buffers, in order).
pub fn encode(s: &mut Sealed, schema: &TableSchema) -> Result<(String, PutPayload), WriteError> {
    let key = s.key();
    let bytes = match std::mem::replace(&mut s.body, SealedBody::Lines(Vec::new())) {
        SealedBody::Rows(rows) => {
            let meta = vec![
                KeyValue::new("lakehose.schema_version".into(), schema.version.clone()),
                KeyValue::new("lakehose.table".into(), schema.table.clone()),
                KeyValue::new("lakehose.shard".into(), s.shard.to_string()),
                KeyValue::new("lakehose.first_position".into(), format!("{}/{}", s.first.seq, s.first.sub)),
                KeyValue::new("lakehose.last_position".into(), format!("{}/{}", s.last.seq, s.last.sub)),
            ];
            rows.finish(schema, meta)?
        }
        SealedBody::Lines(lines) => PutPayload::from(gzip(&lines)?),
    };
    Ok((key, bytes))
}

/// Gzip at a fast level: the output is ordinary gzip any tool reads.
pub fn gzip(data: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    let mut enc = GzEncoder::new(Vec::with_capacity(data.len() / 4), flate2::Compression::new(1));
    enc.write_all(data)?;
    enc.finish()
}
