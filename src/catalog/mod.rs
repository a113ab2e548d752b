//! Catalog: making new partitions visible to query engines.
//!
//! Input: the partition prefixes of Parquet files just uploaded. Output:
//! each prefix registered as a partition of the table (Glue), once — a
//! cache of known partitions keeps steady state free of catalog calls.
//! The runner calls it after each group of uploads (a shard's Parquet files
//! come before its error and raw-backup files, so a partition is visible
//! right after its own file lands, not after the whole flush) and before the checkpoint, so a checkpointed
//! record's partition is always registered. Failure:
//! [`CatalogError`] after retries; the run stops without checkpointing, and
//! the replay registers again (registration is idempotent).

pub mod glue;

use crate::schema::TableSchema;
use std::collections::HashSet;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("Glue: {0}")]
    Other(String),
    #[error("Glue table {table} cannot take this schema without breaking files already written:\n  {}\nfix the schema file (see `lakehose schema check --against-glue`) or migrate the table by hand", changes.join("\n  "))]
    Incompatible { table: String, changes: Vec<String> },
}

/// Where partitions are registered.
pub enum Catalog {
    /// No catalog: files only (a crawler or MSCK REPAIR finds them).
    None,
    Glue(Box<glue::GlueCatalog>),
    /// The in-memory twin for unit tests: each register call's new
    /// partitions, in order.
    Memory { known: Known, calls: Vec<Vec<String>> },
}

/// Partitions registered so far, so each is registered once per process.
#[derive(Default, Debug)]
pub struct Known(HashSet<String>);

impl Known {
    /// The prefixes of `prefixes` not yet registered (deduplicated).
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

impl Catalog {
    /// Registers the partitions of freshly uploaded table files.
    pub async fn register(&mut self, prefixes: &[String]) -> Result<(), CatalogError> {
        match self {
            Catalog::None => {
                let _ = prefixes;
                Ok(())
            }
            Catalog::Glue(g) => g.register(prefixes).await,
            Catalog::Memory { known, calls } => {
                let new = known.new_ones(prefixes.iter().map(String::as_str));
                if !new.is_empty() {
                    known.insert_all(&new);
                    calls.push(new);
                }
                Ok(())
            }
        }
    }

    /// Updates the table to a new schema (already checked compatible with the old one).
    pub async fn update_schema(&mut self, s: &TableSchema) -> Result<(), CatalogError> {
        match self {
            Catalog::None | Catalog::Memory { .. } => Ok(()),
            Catalog::Glue(g) => g.update_schema(s).await,
        }
    }

    /// (calls, failed calls) made so far.
    pub fn calls(&self) -> (u64, u64) {
        match self {
            Catalog::None => (0, 0),
            Catalog::Glue(g) => (g.calls, g.errors),
            Catalog::Memory { calls, .. } => (calls.len() as u64, 0),
        }
    }
}
