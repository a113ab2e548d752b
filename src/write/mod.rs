//! Writers: sealed buffers → objects in the lake, the raw backup and the
//! error prefix.
//!
//! Input: a [`Sealed`] buffer. Output: one object stored under a key that
//! comes only from the data (partition prefix, shard, first position), so a
//! replay writes the same key and replaces the object: a table file through
//! the table format's [`Sink`] ([`HiveParquet`]: snappy Parquet in
//! Hive-style prefixes), raw and error lines through a [`LineSink`] (gzip
//! NDJSON). Failure: [`WriteError`]: an Arrow/Parquet encoding error (a
//! bug: the batch was built against the same schema) or the store's error.
//!
//! Parquet: timestamps INT64 TIMESTAMP(MILLIS, UTC-adjusted), lowercase
//! names, column statistics, dictionary encoding, row groups cut by
//! in-memory size (`row_group_bytes`, ~128 MiB like Athena's default).
//! A table buffer's rows are mostly encoded before it is sealed (see
//! [`RowBuffer`]); string columns are encoded by [`string_columns`], the
//! others by parquet-rs.
//! Key-value metadata: `lakehose.schema_version`, `lakehose.table`,
//! `lakehose.shard`, `lakehose.first_position`, `lakehose.last_position`.

use crate::buffers::{Sealed, SealedBody};
use crate::schema::TableSchema;
use crate::store::{Store, StoreError};
use futures::future::BoxFuture;
use object_store::PutPayload;
use parquet::file::metadata::KeyValue;
use std::time::{Duration, Instant};

mod gz_lines;
mod lines;
mod parquet_file;
mod stats;
mod dict;
mod hybrid;
mod pages;
mod string_columns;

pub use gz_lines::{gzip, GzLines};
pub use lines::{error_line, wrapped_raw_line, TableRef};
pub use parquet_file::RowBuffer;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("parquet encoding failed: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow conversion to the file schema failed: {0}; this is a bug, please report it")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("gzip encoding failed: {0}")]
    Gzip(#[from] std::io::Error),
    #[error("parquet file assembly failed: {0}; this is a bug, please report it")]
    Assembly(String),
    #[error(transparent)]
    Store(#[from] StoreError),
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

/// One object written.
#[derive(Debug, Clone)]
pub struct Written {
    /// Key below the destination's URL.
    pub key: String,
    pub bytes: u64,
    /// Time spent encoding it.
    pub encode_time: Duration,
}

/// A table format: how sealed table buffers become objects (an I/O edge).
/// Writing the same sealed content again writes the same key, replacing
/// the object.
pub trait Sink: Send + Sync {
    /// Encodes `sealed` (its body is taken) under `schema` and stores it.
    fn write<'a>(&'a self, sealed: &'a mut Sealed, schema: &'a TableSchema) -> BoxFuture<'a, Result<Written, WriteError>>;
}

/// Hive-style snappy Parquet: `<prefix><shard>-<firstSeq>-<firstSub>.snappy.parquet`.
pub struct HiveParquet {
    pub store: Store,
}

impl Sink for HiveParquet {
    fn write<'a>(&'a self, s: &'a mut Sealed, schema: &'a TableSchema) -> BoxFuture<'a, Result<Written, WriteError>> {
        Box::pin(async move {
            let started = Instant::now();
            let key = format!("{}{}-{}.snappy.parquet", s.prefix, s.shard, s.first.key_part());
            let SealedBody::Rows(rows) = std::mem::take(&mut s.body) else {
                unreachable!("a table buffer holds rows")
            };
            let (payload, _) = rows.finish(schema, file_meta(s, schema))?;
            put(&self.store, key, payload, started.elapsed()).await
        })
    }
}

/// The key-value metadata of a table file's footer.
pub fn file_meta(s: &Sealed, schema: &TableSchema) -> Vec<KeyValue> {
    vec![
        KeyValue::new("lakehose.schema_version".into(), schema.version.clone()),
        KeyValue::new("lakehose.table".into(), schema.table.clone()),
        KeyValue::new("lakehose.shard".into(), s.shard.to_string()),
        KeyValue::new("lakehose.first_position".into(), format!("{}/{}", s.first.seq, s.first.sub)),
        KeyValue::new("lakehose.last_position".into(), format!("{}/{}", s.last.seq, s.last.sub)),
    ]
}

/// Gzip NDJSON lines: `<dir><prefix><shard>-<firstSeq>-<firstSub>.json.gz`
/// (`dir` is `format-conversion-failed/` for error lines, as Firehose's).
pub struct LineSink {
    pub store: Store,
    pub dir: &'static str,
}

impl LineSink {
    pub fn write<'a>(&'a self, s: &'a mut Sealed) -> BoxFuture<'a, Result<Written, WriteError>> {
        Box::pin(async move {
            let started = Instant::now();
            let key = format!("{}{}{}-{}.json.gz", self.dir, s.prefix, s.shard, s.first.key_part());
            let SealedBody::Lines(lines) = std::mem::take(&mut s.body) else {
                unreachable!("a line buffer holds lines")
            };
            let payload = PutPayload::from(lines.finish().await?);
            put(&self.store, key, payload, started.elapsed()).await
        })
    }
}

async fn put(store: &Store, key: String, payload: PutPayload, encode_time: Duration) -> Result<Written, WriteError> {
    let bytes = payload.content_length() as u64;
    store.put(&key, payload).await?;
    Ok(Written { key, bytes, encode_time })
}
