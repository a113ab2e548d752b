//! Catalog: making new table files visible to query engines (an I/O edge).
//!
//! Input: the table files of each group of uploads, after they landed.
//! Output: their partitions registered with the table (Glue), once — a
//! cache of known partitions keeps steady state free of catalog calls; and
//! the table brought to a new schema when a compatible edit is applied.
//! The commit stage calls [`Catalog::register`] after each group of
//! uploads (a shard's Parquet files come before its error and raw-backup
//! files, so a partition is visible right after its own file lands, not
//! after the whole flush) and before the checkpoint, so a checkpointed
//! record's partition is always registered. Registering again is harmless.
//! A table that keeps the checkpoints itself (Iceberg, [`crate::iceberg`])
//! registers nothing per group: [`Catalog::commit`] commits the flush's
//! files with the shards' checkpoints before the source stores them, and
//! [`Catalog::stored`] gives the table's checkpoint back on restore.
//! Failure: [`CatalogError`] after retries; the run stops without
//! checkpointing, and the replay registers (commits) again.

pub mod glue;

use crate::checkpoint::ShardCheckpoint;
use crate::ids::ShardId;
use crate::schema::TableSchema;
use futures::future::BoxFuture;
use std::collections::HashSet;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("Glue: {0}")]
    Other(String),
    #[error("{0}")]
    Iceberg(String),
    #[error("Glue table {table} cannot take this schema without breaking files already written:\n  {}\nfix the schema file (see `lakehose schema check --against-glue`) or migrate the table by hand", changes.join("\n  "))]
    Incompatible { table: String, changes: Vec<String> },
}

/// A table file just written.
#[derive(Debug, Clone, PartialEq)]
pub struct TableFile {
    /// Its partition prefix (`dt=…/hr=…/…/`).
    pub prefix: String,
    /// Its key below the lake URL.
    pub key: String,
    pub records: usize,
    pub bytes: u64,
}

/// Where table files are made visible.
pub trait Catalog: Send {
    /// Registers the partitions of freshly written table files.
    fn register<'a>(&'a mut self, files: &'a [TableFile]) -> BoxFuture<'a, Result<(), CatalogError>>;
    /// Brings the table to a new schema (already checked compatible with
    /// the old one, and [adapted](Catalog::adapt)); the schema is adapted
    /// again to the table it now is.
    fn update_schema<'a>(&'a mut self, s: &'a mut TableSchema) -> BoxFuture<'a, Result<(), CatalogError>>;
    /// (calls, failed calls) made so far, for metrics.
    fn calls(&self) -> (u64, u64);
    /// The schema file as this table format writes it (Iceberg: its
    /// partition path layout, field ids): every schema loaded goes
    /// through here before the pipeline sees it.
    fn adapt(&self, s: TableSchema) -> Result<TableSchema, CatalogError> {
        Ok(s)
    }
    /// For a table that keeps the checkpoints (Iceberg): commits the files
    /// written since the last call together with these shards'
    /// checkpoints, before any of them is stored by the source. Returns
    /// the shards refused because the table holds another checkpoint for
    /// them than this process last saw (another owner committed them):
    /// their files are not committed and they must be dropped.
    fn commit<'a>(&'a mut self, _cps: &'a [(ShardId, ShardCheckpoint)]) -> BoxFuture<'a, Result<Vec<ShardId>, CatalogError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    /// (commits made, commit conflicts retried) of a table that commits
    /// (Iceberg), for metrics.
    fn commits(&self) -> (u64, u64) {
        (0, 0)
    }
    /// The checkpoint the table holds for the shard, for a table that
    /// keeps checkpoints: it wins over the source's on restore.
    fn stored<'a>(&'a mut self, _shard: &'a ShardId) -> BoxFuture<'a, Result<Option<ShardCheckpoint>, CatalogError>> {
        Box::pin(async { Ok(None) })
    }
}

/// No catalog: files only (a crawler or MSCK REPAIR finds them).
pub struct NoCatalog;

impl Catalog for NoCatalog {
    fn register<'a>(&'a mut self, _: &'a [TableFile]) -> BoxFuture<'a, Result<(), CatalogError>> {
        Box::pin(async { Ok(()) })
    }
    fn update_schema<'a>(&'a mut self, _: &'a mut TableSchema) -> BoxFuture<'a, Result<(), CatalogError>> {
        Box::pin(async { Ok(()) })
    }
    fn calls(&self) -> (u64, u64) {
        (0, 0)
    }
}

/// Partitions registered so far, so each is registered once per process.
#[derive(Default, Debug)]
pub struct Known(HashSet<String>);

impl Known {
    /// The prefixes of `prefixes` not yet registered (deduplicated, sorted).
    pub fn new_ones<'a>(&self, prefixes: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut out: Vec<String> = prefixes.into_iter().filter(|p| !self.0.contains(*p)).map(str::to_string).collect();
        out.sort();
        out.dedup();
        out
    }
    pub fn insert_all(&mut self, ps: &[String]) {
        self.0.extend(ps.iter().cloned());
    }
}
