//! The runner: source → pipeline → writers → stores → checkpoint.
//!
//! Input: a validated config (daemon) or a list of files (`convert`).
//! Output: objects in the lake, raw-backup and error stores; checkpoints
//! stored only after the objects they cover are written. Shutdown: when the
//! cancellation token fires (SIGTERM/SIGINT), reading stops, every buffer is
//! flushed, checkpoints are stored, and the run returns its summary.
//! Failure: [`RunError`]; a failed upload stops the run without storing a
//! checkpoint past it, so a restart replays those records.

use crate::config::{Config, SourceConfig};
use crate::ids::ShardId;
use crate::catalog::{Catalog, CatalogError};
use crate::pipeline::{DestKind, FlushIntent, Pipeline, Sealed, ShardCheckpoint, Stats};
use crate::schema::TableSchema;
use crate::source::kinesis::KinesisSource;
use crate::source::spool::SpoolSource;
use crate::source::{now_ms, split_lines, Source, SourceError, SourceEvent};
use crate::store::{Store, StoreError, StoreOptions};
use crate::write::{encode, ParquetOptions, WriteError};
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("{path}: {source}")]
    Input { path: String, source: std::io::Error },
}

/// The three destinations.
pub struct Sinks {
    pub lake: Store,
    pub raw: Option<Store>,
    pub errors: Store,
    pub parquet: ParquetOptions,
}

impl Sinks {
    pub fn open(lake: &str, raw: Option<&str>, errors: &str, opts: &StoreOptions, parquet: ParquetOptions) -> Result<Sinks, StoreError> {
        Ok(Sinks {
            lake: Store::open(lake, opts)?,
            raw: raw.map(|r| Store::open(r, opts)).transpose()?,
            errors: Store::open(errors, opts)?,
            parquet,
        })
    }
}

/// Objects encoded and held at once before their uploads finish: bounds the
/// memory of a flush of many buffers (shutdown with 10,000 partitions open).
const UPLOAD_GROUP: usize = 16;

/// What a [`write_sealed`] call achieved.
#[derive(Default)]
pub struct Written {
    /// Shards whose checkpoints may now advance.
    pub shards: BTreeSet<ShardId>,
    /// Shards whose uploads the fence stopped: drop them.
    pub fenced: BTreeSet<ShardId>,
    /// Partition prefixes of the Parquet files written.
    pub table_prefixes: Vec<String>,
}

/// Encodes and uploads sealed buffers, then marks them durable in the
/// pipeline. An upload starts only while `may_write(shard)` holds; the
/// buffers of a shard that fails it are not written.
pub async fn write_sealed(p: &mut Pipeline, sealed: Vec<Sealed>, sinks: &Sinks, may_write: &dyn Fn(&ShardId) -> bool) -> Result<Written, RunError> {
    let schema = p.schema().clone();
    let mut out = Written::default();
    let mut sealed = sealed.into_iter().peekable();
    while sealed.peek().is_some() {
        let mut jobs = Vec::with_capacity(UPLOAD_GROUP);
        let mut metas = Vec::with_capacity(UPLOAD_GROUP);
        for mut s in sealed.by_ref().take(UPLOAD_GROUP) {
            if out.fenced.contains(&s.shard) || !may_write(&s.shard) {
                tracing::warn!(shard = %s.shard, "lease fence passed: not uploading; the next owner replays these records");
                out.fenced.insert(s.shard.clone());
                continue;
            }
            let (key, bytes) = encode(&mut s, &schema, &sinks.parquet)?;
            let store = match s.kind {
                DestKind::Table => &sinks.lake,
                DestKind::Errors => &sinks.errors,
                DestKind::Raw => sinks.raw.as_ref().expect("raw buffers exist only with a raw store"),
            };
            tracing::debug!(shard = %s.shard, file = %key, records = s.records, trigger = s.trigger.as_str(), "flush");
            jobs.push(async move { store.put(&key, bytes).await });
            metas.push(s);
        }
        let results: Vec<Result<(), StoreError>> = futures::stream::iter(jobs).buffer_unordered(UPLOAD_GROUP).collect().await;
        for r in results {
            r?;
        }
        for s in &metas {
            p.mark_durable(s);
            out.shards.insert(s.shard.clone());
            if s.kind == DestKind::Table {
                out.table_prefixes.push(s.prefix.clone());
            }
        }
    }
    for s in &out.fenced {
        out.shards.remove(s);
    }
    Ok(out)
}

/// Summary of a finished run.
#[derive(Debug, Clone)]
pub struct Summary {
    pub stats: Stats,
    pub elapsed: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.stats;
        write!(f, "{} records ({} bytes) in {:.2}s: {} rows written, {} errors", s.records_in, s.bytes_in,
            self.elapsed.as_secs_f64(), s.rows, s.error_total())?;
        for (code, n) in &s.errors {
            write!(f, ", {code}: {n}")?;
        }
        Ok(())
    }
}

/// One-shot conversion of NDJSON files (`-` for stdin).
pub async fn convert(p: &mut Pipeline, inputs: &[String], sinks: &Sinks) -> Result<Summary, RunError> {
    let started = Instant::now();
    for input in inputs {
        let (shard, arrival_ms): (ShardId, i64) = if input == "-" {
            (ShardId::new("stdin"), now_ms())
        } else {
            let stem = std::path::Path::new(input).file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let mtime = std::fs::metadata(input)
                .and_then(|m| m.modified())
                .map_err(|source| RunError::Input { path: input.clone(), source })?;
            let ms = mtime.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
            (ShardId::new(&stem), ms)
        };
        let mut reader: Box<dyn tokio::io::AsyncRead + Unpin> = if input == "-" {
            Box::new(tokio::io::stdin())
        } else {
            Box::new(tokio::fs::File::open(input).await.map_err(|source| RunError::Input { path: input.clone(), source })?)
        };
        read_stream(p, &mut *reader, &shard, arrival_ms, input, sinks, None).await?;
    }
    let rest = p.take_all();
    write_sealed(p, rest, sinks, &|_| true).await?;
    Ok(Summary { stats: p.stats().clone(), elapsed: started.elapsed() })
}

const READ_CHUNK: usize = 8 << 20;

/// How often open buffers are checked against `max_age` (a scan of all of
/// them), whatever the rate of incoming reads.
const AGE_CHECK: Duration = Duration::from_millis(500);

/// Reads NDJSON from a stream to its end, flushing as buffers come due.
async fn read_stream(
    p: &mut Pipeline,
    reader: &mut (dyn tokio::io::AsyncRead + Unpin),
    shard: &ShardId,
    arrival_ms: i64,
    name: &str,
    sinks: &Sinks,
    cancel: Option<&CancellationToken>,
) -> Result<(), RunError> {
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut base: u64 = 0;
    let mut records = Vec::new();
    let mut eof = false;
    let mut last_age_check = Instant::now();
    while !eof {
        let want = READ_CHUNK.max(buf.len() + 1);
        let mut filled = buf.len();
        buf.resize(want, 0);
        while filled < want {
            let read = match cancel {
                // a live stream: wake up to honour max_age while no data comes
                Some(c) => tokio::select! {
                    _ = c.cancelled() => Some(Ok(0)),
                    r = reader.read(&mut buf[filled..]) => Some(r),
                    _ = tokio::time::sleep(AGE_CHECK) => None,
                },
                None => Some(reader.read(&mut buf[filled..]).await),
            };
            let Some(read) = read else { break };
            let n = read.map_err(|source| RunError::Input { path: name.to_string(), source })?;
            if n == 0 {
                eof = true;
                break;
            }
            filled += n;
            if cancel.is_some() {
                break; // a live stream: process what has come
            }
        }
        buf.truncate(filled);
        records.clear();
        let used = split_lines(&buf, base, eof, &mut records);
        let batch_arrival = if cancel.is_some() { now_ms() } else { arrival_ms };
        for (off, r) in &records {
            p.push(shard, crate::ids::Position::offset(*off), batch_arrival, &buf[r.clone()]);
            if p.has_due() {
                let due = p.take_due(Instant::now());
                write_sealed(p, due, sinks, &|_| true).await?;
            }
        }
        buf.drain(..used);
        base += used as u64;
        if last_age_check.elapsed() >= AGE_CHECK {
            last_age_check = Instant::now();
            let due = p.take_due(Instant::now());
            write_sealed(p, due, sinks, &|_| true).await?;
        }
    }
    Ok(())
}

/// The daemon: runs until the source ends (stdin) or `cancel` fires.
pub async fn run(cfg: &Config, schema: Arc<TableSchema>, cancel: CancellationToken) -> Result<Summary, RunError> {
    let started = Instant::now();
    let sinks = Sinks::open(
        &cfg.sink.url,
        cfg.sink.raw_backup.as_deref(),
        &cfg.sink.errors,
        &cfg.sink.store,
        ParquetOptions { row_group_bytes: cfg.sink.row_group_bytes },
    )?;
    let mut p = Pipeline::new(schema, cfg.limits.clone(), cfg.max_record_bytes).with_raw_backup(sinks.raw.is_some());
    match &cfg.source {
        SourceConfig::Stdin => {
            let mut stdin = tokio::io::stdin();
            read_stream(&mut p, &mut stdin, &ShardId::new("stdin"), now_ms(), "stdin", &sinks, Some(&cancel)).await?;
            let rest = p.take_all();
            write_sealed(&mut p, rest, &sinks, &|_| true).await?;
        }
        SourceConfig::Spool { dir, state_dir, poll } => {
            let mut src = SpoolSource::open(dir, state_dir.as_deref()).map_err(SourceError::from)?;
            tracing::info!(dir = %dir.display(), "reading spool");
            run_source(&mut src, &mut p, &sinks, &mut Catalog::None, *poll, &cancel, false).await?;
        }
        SourceConfig::Kinesis(k) => {
            let mut src = KinesisSource::open(k.clone()).await.map_err(SourceError::from)?;
            run_source(&mut src, &mut p, &sinks, &mut Catalog::None, Duration::ZERO, &cancel, false).await?;
        }
    }
    Ok(Summary { stats: p.stats().clone(), elapsed: started.elapsed() })
}

/// Largest per-destination progress map a checkpoint may carry before the
/// shard is flushed whole (the lease row must stay under DynamoDB's 400 KB).
const MAX_DONE: usize = 1000;

/// Reads a replayable source until `cancel` fires (or, with `stop_when_idle`,
/// until it has nothing new), writing buffers as they come due and committing
/// each shard's checkpoint only after the objects it covers are written.
/// On the way out every open buffer is written, every shard committed and
/// the source closed (leases released).
pub async fn run_source<S: Source>(
    src: &mut S,
    p: &mut Pipeline,
    sinks: &Sinks,
    catalog: &mut Catalog,
    poll: Duration,
    cancel: &CancellationToken,
    stop_when_idle: bool,
) -> Result<(), RunError> {
    for (shard, cp) in src.checkpoints() {
        p.restore(&shard, &cp);
    }
    let mut last_age_check = Instant::now();
    while !cancel.is_cancelled() {
        let event = src.next_event().await?;
        let idle = event.is_none();
        match event {
            Some(SourceEvent::Batch(b)) => {
                for (pos, arrival_ms, data) in b.iter() {
                    p.push(&b.shard, pos.clone(), arrival_ms, data);
                    if p.has_due() {
                        let due = p.take_due(Instant::now());
                        flush(p, src, sinks, catalog, due).await?;
                    }
                }
            }
            Some(SourceEvent::Assigned { shard, checkpoint, intent }) => p.restore_with_intent(&shard, &checkpoint, &intent),
            Some(SourceEvent::Revoked(shard)) => p.drop_shard(&shard),
            Some(SourceEvent::Ended(shard)) => {
                let rest = p.take_shard(&shard);
                flush(p, src, sinks, catalog, rest).await?;
                let cp = p.checkpoint(&shard);
                if src.commit(&shard, cp).await? {
                    src.end_shard(&shard).await?;
                }
                p.drop_shard(&shard);
            }
            None => {}
        }
        if last_age_check.elapsed() >= AGE_CHECK {
            last_age_check = Instant::now();
            let due = p.take_due(Instant::now());
            flush(p, src, sinks, catalog, due).await?;
        }
        if idle {
            if stop_when_idle {
                break;
            }
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }
    tracing::info!("flushing every buffer");
    let rest = p.take_all();
    let all: BTreeSet<ShardId> = p.shards().cloned().collect();
    flush(p, src, sinks, catalog, rest).await?;
    // shards with nothing to flush still record how far they were read
    let live: BTreeSet<ShardId> = p.shards().cloned().collect();
    commit(p, src, all.intersection(&live).cloned().collect()).await?;
    src.close().await?;
    Ok(())
}

/// The commit protocol for sealed buffers: per shard, the intent → uploads
/// (fenced) → catalog → checkpoint. A shard whose lease is gone at any step
/// is dropped: nothing more is written or committed for it.
pub async fn flush<S: Source>(p: &mut Pipeline, src: &mut S, sinks: &Sinks, catalog: &mut Catalog, mut sealed: Vec<Sealed>) -> Result<(), RunError> {
    while !sealed.is_empty() {
        let mut by_shard: BTreeMap<ShardId, Vec<FlushIntent>> = BTreeMap::new();
        for s in &sealed {
            by_shard.entry(s.shard.clone()).or_default().push(FlushIntent::of(s));
        }
        for (shard, intent) in &by_shard {
            if !src.begin_flush(shard, intent).await? {
                sealed.retain(|s| &s.shard != shard);
                p.drop_shard(shard);
            }
        }
        let written = write_sealed(p, std::mem::take(&mut sealed), sinks, &|s| src.may_write(s)).await?;
        for s in &written.fenced {
            p.drop_shard(s);
        }
        catalog.register(&written.table_prefixes).await?;
        commit(p, src, written.shards.clone()).await?;
        // a checkpoint that grew too large: flush those shards whole
        for s in written.shards {
            if p.done_len(&s) > MAX_DONE {
                sealed.extend(p.take_shard(&s));
            }
        }
    }
    Ok(())
}

async fn commit<S: Source>(p: &mut Pipeline, src: &mut S, shards: BTreeSet<ShardId>) -> Result<(), RunError> {
    for s in shards {
        let cp: ShardCheckpoint = p.checkpoint(&s);
        if !src.commit(&s, cp).await? {
            p.drop_shard(&s);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Position;
    use crate::pipeline::{Limits, Resume};
    use crate::source::memory::MemorySource;
    use std::collections::BTreeMap;

    const SCHEMA: &str = "table = \"t\"\n[[columns]]\nname = \"id\"\ntype = \"string\"\nrequired = true\n[partition]\ntime = { column = \"arrival\", granularity = \"day\" }\n";

    fn records(shard: u64) -> Vec<(Position, i64, Vec<u8>)> {
        (0..100u64)
            .map(|i| {
                let data = if i % 10 == 9 { format!("{{\"id\":{shard}{i}") } else { format!("{{\"id\":\"s{shard}-{i}\"}}") };
                (Position::new(crate::ids::SequenceNumber::parse(&format!("4959{shard}{i:030}")).unwrap(), 0), 86_400_000 * (i as i64 / 50), data.into_bytes())
            })
            .collect()
    }

    fn sinks() -> Sinks {
        Sinks { lake: Store::memory(), raw: Some(Store::memory()), errors: Store::memory(), parquet: ParquetOptions::default() }
    }

    #[tokio::test]
    async fn commits_follow_writes_and_a_restart_reads_nothing_twice() {
        let schema = Arc::new(TableSchema::parse("t.toml", SCHEMA).unwrap());
        let shards: BTreeMap<ShardId, _> = (1..=2).map(|s| (ShardId::new(&format!("shardId-{s}")), records(s))).collect();
        let limits = Limits { max_records: 7, ..Limits::default() };
        let sinks = sinks();
        let mut src = MemorySource::new(shards.clone(), BTreeMap::new(), 13);
        let mut p = Pipeline::new(schema.clone(), limits.clone(), 1000).with_raw_backup(true);
        run_source(&mut src, &mut p, &sinks, &mut Catalog::None, Duration::from_millis(1), &CancellationToken::new(), true).await.unwrap();
        assert_eq!(p.stats().rows, 180);
        assert_eq!(p.stats().error_total(), 20);
        assert!(src.commits > 10, "checkpoints advance during the run, not only at the end");
        let lake = sinks.lake.keys().await;
        assert!(lake.iter().all(|k| k.starts_with("dt=1970-01-0") && k.contains("/shardId-") && k.ends_with(".snappy.parquet")), "{lake:?}");
        assert!(lake.iter().any(|k| k.starts_with("dt=1970-01-02/")), "arrival day partitions: {lake:?}");
        for (s, recs) in &shards {
            assert_eq!(src.committed[s].resume, Resume::After(recs.last().unwrap().0.clone()));
        }
        // restart from what was committed: nothing is read or written again
        let committed = src.committed.clone();
        let mut src2 = MemorySource::new(shards, committed, 13);
        let mut p2 = Pipeline::new(schema, limits, 1000).with_raw_backup(true);
        run_source(&mut src2, &mut p2, &sinks, &mut Catalog::None, Duration::from_millis(1), &CancellationToken::new(), true).await.unwrap();
        assert_eq!(p2.stats().records_in, 0);
        assert_eq!(sinks.lake.keys().await, lake);
    }
}
