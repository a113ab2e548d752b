//! `convert`: files, directories, globs, stdin and S3 prefixes → the lake,
//! on every core, through the same record path as the daemon.
//!
//! Input: the command line's inputs ([`inputs::expand`]) and options.
//! Output: the lake, raw backup and error objects of every input, written
//! by `jobs` workers, each a thread with its own pipeline and committer
//! taking units of input from one shared [`Work`] ([`UnitSource`]); a
//! unit's objects depend on the unit alone (keys from the input's id and
//! the byte offset of each object's first record), so re-running the same
//! command after a crash, or on the same inputs, replaces the same objects
//! instead of adding rows. Memory: `--memory-limit` is shared: half for the
//! workers' buffers (each `limit / 2 / jobs`), a quarter for decoded bytes
//! in flight, an eighth for line readers (each holds a line of up to a
//! third more than the record size limit, [`line_limit`]; `jobs` is
//! lowered when they would not fit). With a Glue
//! catalog the partitions written are registered as they land. Progress
//! on stderr ([`Progress`]); at the end a [`Summary`] with a line per
//! input. Failure: [`BackfillError`]: bad inputs (nothing matched, an S3
//! listing failed) before anything is written; a worker's write or
//! catalog failure stops every worker (what was written stays, a re-run
//! replaces it). An input that cannot be read whole is a problem in the
//! summary, not a failure: the others are converted.

use crate::buffers::Limits;
use crate::catalog::glue::GlueCatalog;
use crate::catalog::{Catalog, CatalogError, NoCatalog};
use crate::checkpoint::Tally;
use crate::commit::{Committer, Sinks};
use crate::ids::ShardId;
use crate::ingest::{drive, IngestError, Report};
use crate::metrics::{Metrics, Stats};
use crate::pipeline::Pipeline;
use crate::progress::{Mode, Progress};
use crate::schema::TableSchema;
use crate::source::inputs::{self, Input, InputError, CHUNK};
use crate::source::units::UnitSource;
use crate::source::unwrap::line_limit;
use crate::source::work::Work;
use crate::store::{StoreError, StoreOptions};
use crate::write::TableRef;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error("a worker stopped: {0}")]
    Worker(String),
}

/// What `convert` was asked to do.
pub struct Backfill {
    pub schema: Arc<TableSchema>,
    pub limits: Limits,
    pub max_record_bytes: usize,
    /// Workers wanted (lowered to fit the memory limit).
    pub jobs: usize,
    /// Every input is error lines (else detected from each input's start).
    pub from_errors: bool,
    pub progress: Mode,
    pub lake: String,
    pub raw: Option<String>,
    pub errors: String,
    pub store: StoreOptions,
    /// Register partitions in this Glue database.
    pub glue_database: Option<String>,
    /// Write this Iceberg table instead of Hive-style Parquet in `lake`
    /// (already created; `schema` is adapted to it).
    pub iceberg: Option<crate::iceberg::IcebergConfig>,
    /// Decoded bytes per unit at most.
    pub chunk: u64,
}

/// What became of one input.
#[derive(Debug, Clone)]
pub struct InputLine {
    pub name: String,
    pub tally: Tally,
    pub error_lines: bool,
    /// What it looks like, when it is not NDJSON.
    pub not_ndjson: Option<String>,
}

/// The end of a backfill.
#[derive(Debug, Clone)]
pub struct Summary {
    pub stats: Stats,
    pub elapsed: Duration,
    pub workers: usize,
    pub inputs: Vec<InputLine>,
    /// Inputs that could not be read whole, and why.
    pub problems: Vec<(String, String)>,
    pub peak_rss: Option<u64>,
}

impl Summary {
    pub fn not_ndjson(&self) -> bool {
        self.inputs.iter().any(|i| i.not_ndjson.is_some())
    }
}

/// Inputs listed one per line in the summary at most (beyond, only those
/// with errors or problems).
const LISTED: usize = 50;

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.stats;
        write!(f, "{} records ({} bytes) in {:.2}s: {} rows written, {} errors", s.records_in, s.bytes_in, self.elapsed.as_secs_f64(), s.rows, s.error_total())?;
        for (code, n) in &s.errors {
            write!(f, ", {code}: {n}")?;
        }
        for (name, n) in &s.filtered {
            write!(f, ", filtered by {name}: {n}")?;
        }
        write!(f, "; {} inputs, {} workers", self.inputs.len(), self.workers)?;
        if let Some(b) = self.peak_rss {
            write!(f, "; peak memory {} MiB", b >> 20)?;
        }
        let all = self.inputs.len() <= LISTED;
        for i in self.inputs.iter().filter(|i| all || i.tally.errors > 0 || i.not_ndjson.is_some()) {
            let t = &i.tally;
            write!(f, "\n  {}: {} records, {} rows, {} errors", i.name, t.records, t.records - t.errors, t.errors)?;
            if i.error_lines {
                write!(f, " (error lines: their records converted again)")?;
            }
            if let Some(why) = &i.not_ndjson {
                write!(f, "\n  {}: {why}", i.name)?;
            }
        }
        for (input, what) in &self.problems {
            write!(f, "\n  problem: {input}: {what}")?;
        }
        Ok(())
    }
}

/// Workers that fit the memory limit: each line reader may hold a line of
/// [`line_limit`] of `max_record_bytes`, and the readers get an eighth of
/// the limit.
pub fn workers_within(jobs: usize, limits: &Limits, max_record_bytes: usize) -> usize {
    jobs.min(limits.memory_limit / 8 / line_limit(max_record_bytes)).max(1)
}

impl Backfill {
    /// Converts `args` (files, directories, globs, `-`, `s3://…`).
    pub async fn run(self, args: &[String]) -> Result<Summary, BackfillError> {
        let started = Instant::now();
        let inputs = inputs::expand(args, &self.store).await?;
        let total = inputs.iter().map(|i| i.size).sum::<Option<u64>>();
        let names: BTreeMap<ShardId, String> = inputs.iter().map(|i| (i.id.clone(), i.name.clone())).collect();
        let order: Vec<ShardId> = inputs.iter().map(|i| i.id.clone()).collect();
        let kinds: Vec<Arc<Input>>;
        let jobs = inputs::jobs(inputs, self.chunk, self.from_errors)?;
        kinds = jobs.iter().map(|j| j.input().clone()).collect();
        let workers = workers_within(self.jobs, &self.limits, self.max_record_bytes);
        if workers < self.jobs {
            tracing::warn!(jobs = self.jobs, workers, "--jobs {} lowered to {workers}: each worker may hold a record of --max-record-size, and they must fit in an eighth of --memory-limit", self.jobs);
        }
        if let Some(db) = &self.glue_database {
            // the table is created once, before the workers register partitions
            open_glue(db, &self.schema, &self.lake, &self.store).await?;
        }
        let work = Work::new(jobs, self.limits.memory_limit / 4, self.from_errors);
        let metrics: Vec<Arc<Metrics>> = (0..workers).map(|_| Arc::new(Metrics::default())).collect();
        let progress = Progress::start(self.progress, total, work.clone(), metrics.clone());
        let me = Arc::new(self);
        let handle = tokio::runtime::Handle::current();
        let threads: Vec<std::thread::JoinHandle<Result<(Stats, Report), BackfillError>>> = (0..workers)
            .map(|i| {
                let (me, work, m, handle) = (me.clone(), work.clone(), metrics[i].clone(), handle.clone());
                std::thread::Builder::new()
                    .name(format!("lakehose-worker-{i}"))
                    .spawn(move || {
                        let r = me.worker(workers, work.clone(), m, handle);
                        if r.is_err() {
                            work.stop();
                        }
                        r
                    })
                    .expect("spawn a worker thread")
            })
            .collect();
        let results = tokio::task::spawn_blocking(move || threads.into_iter().map(|t| t.join()).collect::<Vec<_>>()).await.expect("joining the workers");
        drop(progress);
        let mut stats = Stats::default();
        let mut tallies: BTreeMap<ShardId, Tally> = BTreeMap::new();
        let mut looks: BTreeMap<ShardId, String> = BTreeMap::new();
        for r in results {
            let (s, report) = r.map_err(|_| BackfillError::Worker("a worker panicked".into()))??;
            stats.add(&s);
            for e in report.ended {
                tallies.entry(e.shard.clone()).or_default().add(&e.tally);
                if let Some(l) = e.looks {
                    looks.insert(e.shard, l);
                }
            }
        }
        let error_lines = |id: &ShardId| kinds.iter().any(|i| &i.id == id && i.kind.get() == Some(&crate::source::unwrap::LineKind::ErrorLines));
        let inputs = order
            .iter()
            .map(|id| {
                let tally = tallies.get(id).copied().unwrap_or_default();
                let not_ndjson = crate::ingest::not_ndjson(&tally, looks.get(id).map(String::as_str));
                if let Some(why) = &not_ndjson {
                    tracing::error!(input = %names[id], "{}: {why}", names[id]);
                }
                InputLine { name: names[id].clone(), tally, error_lines: error_lines(id), not_ndjson }
            })
            .collect();
        Ok(Summary { stats, elapsed: started.elapsed(), workers, inputs, problems: work.problems(), peak_rss: crate::run::peak_rss() })
    }

    /// One worker: its own runtime, pipeline and committer, until the work is done.
    fn worker(&self, workers: usize, work: Arc<Work>, metrics: Arc<Metrics>, main: tokio::runtime::Handle) -> Result<(Stats, Report), BackfillError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| BackfillError::Worker(e.to_string()))?;
        rt.block_on(async {
            let mut table_ref = TableRef { database: None, table: self.schema.table.clone() };
            let (sinks, catalog): (Sinks, Box<dyn Catalog>) = match (&self.iceberg, &self.glue_database) {
                (Some(ic), _) => {
                    table_ref.database = Some(ic.namespace.clone());
                    let (table, files, _) = crate::iceberg::IcebergTable::open(ic, &self.schema, &self.store).await.map_err(CatalogError::from)?;
                    (Sinks::with_table(Box::new(files), self.raw.as_deref(), &self.errors, &self.store)?, Box::new(table))
                }
                (None, Some(db)) => {
                    table_ref.database = Some(db.clone());
                    (Sinks::open(&self.lake, self.raw.as_deref(), &self.errors, &self.store)?, Box::new(open_glue(db, &self.schema, &self.lake, &self.store).await?))
                }
                (None, None) => (Sinks::open(&self.lake, self.raw.as_deref(), &self.errors, &self.store)?, Box::new(NoCatalog)),
            };
            let limits = Limits { memory_limit: (self.limits.memory_limit / 2 / workers).max(1 << 20), ..self.limits.clone() };
            let mut c = Committer::new(sinks, catalog, metrics);
            let mut p = Pipeline::new(self.schema.clone(), limits, self.max_record_bytes)
                .with_raw_backup(self.raw.is_some())
                .with_table_ref(table_ref)
                .with_line_cap(self.limits.line_cap());
            let mut src = UnitSource::new(work, main, self.chunk, self.max_record_bytes);
            let report = drive(&mut src, &mut p, &mut c, &mut [], None, Duration::ZERO, &CancellationToken::new()).await?;
            Ok((p.stats().clone(), report))
        })
    }
}

async fn open_glue(db: &str, schema: &TableSchema, lake: &str, store: &StoreOptions) -> Result<GlueCatalog, CatalogError> {
    let sdk = crate::aws::sdk_config(store.endpoint.as_deref(), store.region.as_deref()).await;
    GlueCatalog::open(&sdk, db, schema, lake, false).await
}

/// The default `--jobs`: the cores available.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The default unit size.
pub const DEFAULT_CHUNK: u64 = CHUNK;
