//! lakehose: JSON records → partitioned snappy Parquet, exactly once.
//!
//! One record's path, stage by stage (each a module named for its job):
//! [`source`] (a batch of records with positions) → [`ingest`] (the one
//! loop driving every source) → [`pipeline`] → [`route`] (partition guess,
//! [`decode`] per [`schema`] into the partition's buffer, check) →
//! [`buffers`] (per-partition buffers, due queue, memory budget, seal) →
//! [`commit`] (intent → [`write`] to [`store`] → [`catalog`] →
//! checkpoint), with the per-shard [`checkpoint`] ledger saying what is
//! durable and what a restart replays. [`run`] wires a config to them;
//! [`backfill`] runs `convert`'s inputs through them on every core, with
//! [`progress`] on stderr.

pub mod aws;
pub mod backfill;
pub mod buffers;
pub mod catalog;
pub mod checkpoint;
pub mod commit;
pub mod config;
pub mod decode;
pub mod hash;
pub mod iceberg;
pub mod ids;
pub mod ingest;
pub mod lanes;
pub mod metrics;
pub mod partition;
pub mod pipeline;
pub mod progress;
pub mod retry;
pub mod route;
pub mod run;
pub mod schema;
pub mod source;
pub mod store;
pub mod testing;
pub mod timefmt;
pub mod write;
