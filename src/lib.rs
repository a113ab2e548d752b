//! lakehose: JSON records → partitioned snappy Parquet, exactly once.
//!
//! Stages: [`source`] → [`decode`] (per [`schema`]) → [`pipeline`]
//! (partition buffers, checkpoints) → [`write`] → [`store`], driven by [`run`].

pub mod aws;
pub mod catalog;
pub mod config;
pub mod decode;
pub mod hash;
pub mod ids;
pub mod metrics;
pub mod partition;
pub mod retry;
pub mod pipeline;
pub mod run;
pub mod schema;
pub mod source;
pub mod store;
pub mod timefmt;
pub mod write;
