//! The commit protocol: sealed buffers → durable objects → catalog →
//! checkpoint, per shard.
//!
//! Input: [`Sealed`] buffers from the pipeline, and the source whose
//! records they hold. Output: for each shard, in order: the flush intent
//! (the objects about to be written, with any replay boundaries still to
//! reproduce) stored by the source ([`Source::begin_flush`]) → every object
//! uploaded, each only while the source's fence holds
//! ([`Source::may_write`]) → the table files' partitions registered in the
//! catalog, group by group → the pipeline told they are durable → for a
//! table that keeps checkpoints (Iceberg) one commit of the flush's files
//! and every shard's checkpoint ([`Catalog::commit`]), which may refuse a
//! shard another owner committed → the shard's checkpoint stored
//! ([`Source::commit`]), which clears the intent.
//! A shard whose lease is gone at any step is dropped: nothing more is
//! written or committed for it, and its next owner replays from its stored
//! checkpoint and intent. Failure: [`CommitError`]; a failed upload or
//! catalog call stops the run without storing a checkpoint past it, so a
//! restart replays those records (keys come only from the data: the
//! replay overwrites, never duplicates).

use crate::buffers::Sealed;
use crate::catalog::{Catalog, CatalogError, TableFile};
use crate::checkpoint::{DestKind, FlushIntent, ShardCheckpoint};
use crate::ids::ShardId;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::source::{Source, SourceError};
use crate::store::{Store, StoreError, StoreOptions};
use crate::write::{HiveParquet, LineSink, Sink, WriteError, Written};
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// Objects encoded and held at once before their uploads finish: bounds the
/// memory of a flush of many buffers (shutdown with 10,000 partitions open).
pub const UPLOAD_GROUP: usize = 16;

/// Largest per-destination progress map a checkpoint may carry before the
/// shard is flushed whole (the lease row must stay under DynamoDB's 400 KB).
const MAX_DONE: usize = 1000;

/// The destinations: per lane (see [`crate::lanes`]) a table and its error
/// lines, and the raw backup. Lane 0 is the one table of an unrouted config;
/// with routing it has no table and its errors are the shared error prefix
/// (records no table takes, records whose route cannot be read).
pub struct Sinks {
    pub table: Option<Box<dyn Sink>>,
    pub raw: Option<LineSink>,
    pub errors: LineSink,
    /// Routed tables: lane `k` at `k - 1`.
    pub lanes: Vec<(Box<dyn Sink>, LineSink)>,
}

impl Sinks {
    /// Hive-style Parquet in `lake`, gzip lines in `raw` and `errors`.
    pub fn open(lake: &str, raw: Option<&str>, errors: &str, opts: &StoreOptions) -> Result<Sinks, StoreError> {
        Ok(Sinks::hive(Store::open(lake, opts)?, raw.map(|r| Store::open(r, opts)).transpose()?, Store::open(errors, opts)?))
    }

    /// A table format's own sink, gzip lines in `raw` and `errors`.
    pub fn with_table(table: Box<dyn Sink>, raw: Option<&str>, errors: &str, opts: &StoreOptions) -> Result<Sinks, StoreError> {
        Ok(Sinks::lines(table, raw.map(|r| Store::open(r, opts)).transpose()?, Store::open(errors, opts)?))
    }

    pub fn hive(lake: Store, raw: Option<Store>, errors: Store) -> Sinks {
        Sinks::lines(Box::new(HiveParquet { store: lake }), raw, errors)
    }

    fn lines(table: Box<dyn Sink>, raw: Option<Store>, errors: Store) -> Sinks {
        Sinks {
            table: Some(table),
            raw: raw.map(|store| LineSink { store, dir: "" }),
            errors: LineSink { store: errors, dir: "format-conversion-failed/" },
            lanes: Vec::new(),
        }
    }

    /// Adds a routed table (the next lane): Parquet in `lake`, error lines in `errors`.
    pub fn with_lane(mut self, lake: Store, errors: Store) -> Sinks {
        self.lanes.push((Box::new(HiveParquet { store: lake }), LineSink { store: errors, dir: "format-conversion-failed/" }));
        self
    }

    /// Writes a sealed buffer of lane `lane` whose prefix is already
    /// stripped of the lane's marker.
    async fn write(&self, lane: usize, s: &mut Sealed, schema: &crate::schema::TableSchema) -> Result<Written, WriteError> {
        let (table, errors) = match lane {
            0 => (self.table.as_deref(), &self.errors),
            k => {
                let (t, e) = &self.lanes[k - 1];
                (Some(&**t), e)
            }
        };
        match s.kind {
            DestKind::Table => table.expect("table buffers exist only in lanes with a table").write(s, schema).await,
            DestKind::Errors => errors.write(s).await,
            DestKind::Raw => self.raw.as_ref().expect("raw buffers exist only with a raw store").write(s).await,
        }
    }
}

/// What a [`Committer::write_sealed`] call achieved.
#[derive(Default)]
struct Outcome {
    /// Shards whose checkpoints may now advance.
    shards: BTreeSet<ShardId>,
    /// Shards whose uploads the fence stopped: drop them.
    fenced: BTreeSet<ShardId>,
}

/// Runs the protocol: owns the writers and the catalogs (one per lane).
pub struct Committer {
    pub sinks: Sinks,
    pub catalogs: Vec<Box<dyn Catalog>>,
    pub metrics: Arc<Metrics>,
    /// Every open buffer is flushed when one is due (a table whose every
    /// flush is a commit: one commit per interval for all shards).
    pub whole_flushes: bool,
}

impl Committer {
    pub fn new(sinks: Sinks, catalog: Box<dyn Catalog>, metrics: Arc<Metrics>) -> Committer {
        Committer { sinks, catalogs: vec![catalog], metrics, whole_flushes: false }
    }

    /// Adds the catalog of the next routed lane.
    pub fn with_lane_catalog(mut self, c: Box<dyn Catalog>) -> Committer {
        self.catalogs.push(c);
        self
    }

    /// The buffers to flush now: those due, and with
    /// [`Committer::whole_flushes`] every other one with them.
    pub fn due(&self, p: &mut Pipeline, now: std::time::Instant) -> Vec<Sealed> {
        let mut due = p.take_due(now);
        if self.whole_flushes && !due.is_empty() {
            due.extend(p.take_all());
        }
        due
    }

    /// (commits, conflicts retried) of every table that commits.
    pub fn table_commits(&self) -> (u64, u64) {
        self.catalogs.iter().map(|c| c.commits()).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }

    /// (calls, failed calls) of every catalog.
    pub fn catalog_calls(&self) -> (u64, u64) {
        self.catalogs.iter().map(|c| c.calls()).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }

    /// Writes `sealed` and commits each shard's checkpoint after them. A
    /// shard whose checkpoint grew past [`MAX_DONE`] destinations has its
    /// every buffer written too, and is committed again.
    pub async fn flush<S: Source>(&mut self, p: &mut Pipeline, src: &mut S, mut sealed: Vec<Sealed>) -> Result<(), CommitError> {
        while !sealed.is_empty() {
            let mut by_shard: BTreeMap<ShardId, Vec<FlushIntent>> = BTreeMap::new();
            for s in &sealed {
                by_shard.entry(s.shard.clone()).or_default().push(s.intent());
            }
            // an interrupted flush's boundaries not yet reproduced ride along
            for (shard, intent) in by_shard.iter_mut() {
                intent.extend(p.pending_replay(shard));
            }
            for (shard, intent) in &by_shard {
                if !src.begin_flush(shard, intent).await? {
                    sealed.retain(|s| &s.shard != shard);
                    p.drop_shard(shard);
                }
            }
            let written = self.write_sealed(p, std::mem::take(&mut sealed), &|s| src.may_write(s)).await?;
            for s in &written.fenced {
                p.drop_shard(s);
                src.abandon(s).await?;
            }
            commit(p, src, &mut self.catalogs, written.shards.clone()).await?;
            // a checkpoint that grew too large: flush those shards whole
            for s in written.shards {
                if p.done_len(&s) > MAX_DONE {
                    sealed.extend(p.take_shard(&s));
                }
            }
        }
        Ok(())
    }

    /// Encodes and uploads sealed buffers, then marks them durable in the
    /// pipeline. An upload starts only while `may_write(shard)` holds; the
    /// buffers of a shard that fails it are not written. Each upload
    /// group's table files are registered in the catalog as soon as the
    /// group has landed.
    async fn write_sealed(&mut self, p: &mut Pipeline, sealed: Vec<Sealed>, may_write: &dyn Fn(&ShardId) -> bool) -> Result<Outcome, CommitError> {
        let mut out = Outcome::default();
        let mut sealed = sealed.into_iter().peekable();
        while sealed.peek().is_some() {
            let mut group = Vec::with_capacity(UPLOAD_GROUP);
            for s in sealed.by_ref().take(UPLOAD_GROUP) {
                if out.fenced.contains(&s.shard) {
                    continue;
                }
                if !may_write(&s.shard) {
                    tracing::warn!(shard = %s.shard, "lease fence passed: not uploading; the shard is given up and its next owner replays these records");
                    out.fenced.insert(s.shard.clone());
                    continue;
                }
                group.push(s);
            }
            let sinks = &self.sinks;
            let p_ref = &*p;
            let results: Vec<(Result<Written, WriteError>, Sealed)> = futures::stream::iter(group.into_iter().map(|mut s| async move {
                // the object's key and the sink are the lane's: its marker is
                // stripped for the write and kept for the ledger
                let marked = std::mem::take(&mut s.prefix);
                let (lane, bare) = crate::lanes::split_marker(&marked);
                s.prefix = bare.to_string();
                let r = sinks.write(lane, &mut s, p_ref.lane_schema(lane)).await;
                s.prefix = marked;
                (r, s)
            }))
            .buffered(UPLOAD_GROUP)
            .collect()
            .await;
            // the group lands whole or the run stops: nothing is durable before every upload is
            let mut landed = Vec::with_capacity(results.len());
            for (r, s) in results {
                landed.push((r?, s));
            }
            let mut files: Vec<Vec<TableFile>> = self.catalogs.iter().map(|_| Vec::new()).collect();
            for (w, s) in landed {
                tracing::debug!(shard = %s.shard, file = %w.key, records = s.records, trigger = s.trigger.as_str(), "flush");
                p.add_encode_time(w.encode_time);
                self.metrics.update(|m| {
                    let e = m.delivered.entry(s.kind.as_str()).or_default();
                    e.0 += 1;
                    e.1 += w.bytes;
                    *m.flushes.entry(s.trigger.as_str()).or_default() += 1;
                });
                p.mark_durable(&s);
                out.shards.insert(s.shard.clone());
                if s.kind == DestKind::Table {
                    let (lane, bare) = crate::lanes::split_marker(&s.prefix);
                    files[lane].push(TableFile { prefix: bare.to_string(), key: w.key, records: s.records, bytes: w.bytes });
                }
            }
            for (i, (c, f)) in self.catalogs.iter_mut().zip(&files).enumerate() {
                if i == 0 || !f.is_empty() {
                    c.register(f).await?;
                }
            }
        }
        for s in &out.fenced {
            out.shards.remove(s);
        }
        Ok(out)
    }
}

/// Commits each shard's checkpoint: first to the tables that keep
/// checkpoints (Iceberg: the commit of the files written since the last
/// one), which may refuse shards another owner committed, then to the
/// source. A shard refused or no longer ours is dropped. Returns how many
/// shards the source stored.
pub async fn commit<S: Source>(p: &mut Pipeline, src: &mut S, catalogs: &mut [Box<dyn Catalog>], shards: BTreeSet<ShardId>) -> Result<usize, CommitError> {
    let mut cps: Vec<(ShardId, ShardCheckpoint)> = shards.into_iter().map(|s| (s.clone(), p.checkpoint(&s))).collect();
    for c in catalogs.iter_mut() {
        for refused in c.commit(&cps).await? {
            p.drop_shard(&refused);
            src.abandon(&refused).await?;
            cps.retain(|(s, _)| *s != refused);
        }
    }
    let mut stored = 0;
    for (s, cp) in cps {
        if src.commit(&s, cp).await? {
            stored += 1;
        } else {
            p.drop_shard(&s);
        }
    }
    Ok(stored)
}
