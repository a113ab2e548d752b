//! The runner: source → pipeline → writers → stores → checkpoint.
//!
//! Input: a validated config (daemon) or a list of files (`convert`).
//! Output: objects in the lake, raw-backup and error stores; checkpoints
//! stored only after the objects they cover are written. Shutdown: when the
//! cancellation token fires (SIGTERM/SIGINT), reading stops, every buffer is
//! flushed, checkpoints are stored, and the run returns its summary.
//! Failure: [`RunError`]; a failed upload stops the run without storing a
//! checkpoint past it, so a restart replays those records.

use crate::catalog::glue::GlueCatalog;
use crate::config::{CatalogConfig, Config, SourceConfig};
use crate::ids::ShardId;
use crate::catalog::{Catalog, CatalogError};
use crate::metrics::Metrics;
use crate::pipeline::{DestKind, FlushIntent, Pipeline, Sealed, ShardCheckpoint, Stats, TableRef};
use crate::schema::TableSchema;
use crate::source::kinesis::KinesisSource;
use crate::source::spool::SpoolSource;
use crate::source::{now_ms, split_lines, Source, SourceError, SourceEvent};
use crate::store::{Store, StoreError, StoreOptions};
use crate::write::{encode, ParquetOptions, WriteError};
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicBool;
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
    #[error("metrics endpoint {addr}: {source}; set [metrics] listen to a free address")]
    Metrics { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("{path}: {source}")]
    Input { path: String, source: std::io::Error },
}

/// The three destinations.
pub struct Sinks {
    pub lake: Store,
    pub raw: Option<Store>,
    pub errors: Store,
}

impl Sinks {
    pub fn open(lake: &str, raw: Option<&str>, errors: &str, opts: &StoreOptions) -> Result<Sinks, StoreError> {
        Ok(Sinks {
            lake: Store::open(lake, opts)?,
            raw: raw.map(|r| Store::open(r, opts)).transpose()?,
            errors: Store::open(errors, opts)?,
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
    /// (destination, trigger, bytes) of each object written.
    pub objects: Vec<(&'static str, &'static str, u64)>,
}

/// Encodes and uploads sealed buffers, then marks them durable in the
/// pipeline. An upload starts only while `may_write(shard)` holds; the
/// buffers of a shard that fails it are not written. Each upload group's
/// partitions are registered in the catalog as soon as the group has
/// landed (a shard's Parquet files come before its error and raw-backup
/// files in `sealed`): a partition becomes queryable right after its file,
/// not after every object of the flush.
pub async fn write_sealed(
    p: &mut Pipeline,
    sealed: Vec<Sealed>,
    sinks: &Sinks,
    catalog: &mut Catalog,
    may_write: &dyn Fn(&ShardId) -> bool,
) -> Result<Written, RunError> {
    let schema = p.schema().clone();
    let mut out = Written::default();
    let mut sealed = sealed.into_iter().peekable();
    while sealed.peek().is_some() {
        let mut jobs = Vec::with_capacity(UPLOAD_GROUP);
        let mut metas = Vec::with_capacity(UPLOAD_GROUP);
        for mut s in sealed.by_ref().take(UPLOAD_GROUP) {
            if out.fenced.contains(&s.shard) {
                continue;
            }
            if !may_write(&s.shard) {
                tracing::warn!(shard = %s.shard, "lease fence passed: not uploading; the shard is given up and its next owner replays these records");
                out.fenced.insert(s.shard.clone());
                continue;
            }
            let started = Instant::now();
            let (key, bytes) = encode(&mut s, &schema)?;
            p.add_encode_time(started.elapsed());
            let store = match s.kind {
                DestKind::Table => &sinks.lake,
                DestKind::Errors => &sinks.errors,
                DestKind::Raw => sinks.raw.as_ref().expect("raw buffers exist only with a raw store"),
            };
            tracing::debug!(shard = %s.shard, file = %key, records = s.records, trigger = s.trigger.as_str(), "flush");
            out.objects.push((s.kind.as_str(), s.trigger.as_str(), bytes.content_length() as u64));
            jobs.push(async move { store.put(&key, bytes).await });
            metas.push(s);
        }
        let results: Vec<Result<(), StoreError>> = futures::stream::iter(jobs).buffer_unordered(UPLOAD_GROUP).collect().await;
        for r in results {
            r?;
        }
        let mut table_prefixes = Vec::new();
        for s in &metas {
            p.mark_durable(s);
            out.shards.insert(s.shard.clone());
            if s.kind == DestKind::Table {
                table_prefixes.push(s.prefix.clone());
            }
        }
        catalog.register(&table_prefixes).await?;
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
        write!(f, "; encoding files took {:.2}s", s.encode_time.as_secs_f64())
    }
}

/// One-shot conversion of NDJSON files (`-` for stdin).
pub async fn convert(p: &mut Pipeline, inputs: &[String], ctx: &mut Ctx) -> Result<Summary, RunError> {
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
        if input == "-" {
            read_stream(p, &mut tokio::io::stdin(), &shard, arrival_ms, input, ctx, None).await?;
            continue;
        }
        let file = std::fs::File::open(input).map_err(|source| RunError::Input { path: input.clone(), source })?;
        if file.metadata().is_ok_and(|m| m.is_file() && m.len() > 0) {
            read_file(p, file, &shard, arrival_ms, input, ctx).await?;
        } else {
            // a pipe, a device or an empty file: read it as a stream
            read_stream(p, &mut tokio::fs::File::from_std(file), &shard, arrival_ms, input, ctx, None).await?;
        }
    }
    let rest = p.take_all();
    flush(p, &mut Unreplayable, ctx, rest).await?;
    Ok(Summary { stats: p.stats().clone(), elapsed: started.elapsed() })
}

const READ_CHUNK: usize = 8 << 20;

/// Bytes of input split into lines at a time (see [`Lines::push`]): well
/// inside a core's L2 cache.
const SPLIT_SLICE: usize = 256 << 10;

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
    ctx: &mut Ctx,
    cancel: Option<&CancellationToken>,
) -> Result<(), RunError> {
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut base: u64 = 0;
    let mut lines = Lines::new();
    let mut eof = false;
    while !eof {
        // read into spare capacity: no zero-filling of the chunk
        let want = READ_CHUNK.max(buf.len() + 1);
        buf.reserve(want - buf.len());
        while buf.len() < want {
            let read = match cancel {
                // a live stream: wake up to honour max_age while no data comes
                Some(c) => tokio::select! {
                    _ = c.cancelled() => Some(Ok(0)),
                    r = reader.read_buf(&mut buf) => Some(r),
                    _ = tokio::time::sleep(AGE_CHECK) => None,
                },
                None => Some(reader.read_buf(&mut buf).await),
            };
            let Some(read) = read else { break };
            let n = read.map_err(|source| RunError::Input { path: name.to_string(), source })?;
            if n == 0 {
                eof = true;
                break;
            }
            if cancel.is_some() {
                break; // a live stream: process what has come
            }
        }
        let batch_arrival = if cancel.is_some() { now_ms() } else { arrival_ms };
        let used = lines.push(p, &buf, base, eof, shard, batch_arrival, ctx).await?;
        buf.drain(..used);
        base += used as u64;
    }
    Ok(())
}

/// Bytes read from a regular file at a time by [`read_file`]: one
/// [`SPLIT_SLICE`], so the records are still in the core's cache when they
/// are split and decoded.
const FILE_READ: usize = SPLIT_SLICE;

/// `read_stream` for a regular file: synchronous reads of [`FILE_READ`]
/// into one reused buffer (the file is in the page cache or on a local
/// disk; `convert` has nothing else to run meanwhile). Against mapping the
/// file (populating windows with `MADV_POPULATE_READ`, dropping decoded
/// ones with `MADV_DONTNEED`, which kept the resident set low but cost a
/// page-table update per 4 KiB twice), −2.5% CPU time over 7–9
/// interleaved runs on 112 and 559 MB: the kernel's copy lands in the
/// cache the decoder then reads from. The resident set holds one buffer,
/// plus a line longer than it while that line is read.
async fn read_file(p: &mut Pipeline, mut file: std::fs::File, shard: &ShardId, arrival_ms: i64, name: &str, ctx: &mut Ctx) -> Result<(), RunError> {
    use std::io::Read;
    let mut buf = vec![0u8; FILE_READ];
    let (mut filled, mut base) = (0, 0u64);
    let mut lines = Lines::new();
    loop {
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0); // one line longer than the buffer
        }
        let n = match file.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(RunError::Input { path: name.to_string(), source }),
        };
        filled += n;
        let eof = n == 0;
        let used = lines.push(p, &buf[..filled], base, eof, shard, arrival_ms, ctx).await?;
        if eof {
            return Ok(());
        }
        buf.copy_within(used..filled, 0);
        filled -= used;
        base += used as u64;
        if buf.len() > FILE_READ && filled < FILE_READ {
            // the long line is read: back to a buffer the cache holds
            buf.truncate(FILE_READ);
            buf.shrink_to_fit();
        }
    }
}

/// The per-chunk half of reading NDJSON: splits complete lines, pushes
/// them, flushes due buffers, and every [`AGE_CHECK`] flushes aged buffers
/// and reloads an edited schema.
struct Lines {
    records: Vec<(u64, std::ops::Range<usize>)>,
    last_age_check: Instant,
}

impl Lines {
    fn new() -> Self {
        Lines { records: Vec::new(), last_age_check: Instant::now() }
    }

    /// Pushes the complete lines of `data` (all of it at `eof`), whose first
    /// byte is at offset `base` of the input; returns the bytes consumed.
    #[allow(clippy::too_many_arguments)]
    async fn push(&mut self, p: &mut Pipeline, data: &[u8], base: u64, eof: bool, shard: &ShardId, arrival_ms: i64, ctx: &mut Ctx) -> Result<usize, RunError> {
        // lines are split and pushed a slice at a time, so that a record is
        // still in the CPU's cache when it is decoded after its newline was
        // found (splitting the whole 8 MiB chunk first read it from memory twice)
        let mut used = 0;
        while used < data.len() {
            let mut end = (used + SPLIT_SLICE).min(data.len());
            let slice = loop {
                self.records.clear();
                let last = end == data.len();
                let n = split_lines(&data[used..end], base + used as u64, eof && last, &mut self.records);
                if n > 0 || last {
                    break &data[used..used + n];
                }
                end = (end + SPLIT_SLICE.max(end - used)).min(data.len()); // a line longer than the slice
            };
            if slice.is_empty() {
                break; // only part of a line is left: it comes with the next read
            }
            let mut i = 0;
            while i < self.records.len() {
                // runs of records landing in place first, then one by one
                i += p.push_run(shard, arrival_ms, &self.records[i..], |(off, r)| (crate::ids::Position::offset(*off), &slice[r.clone()]));
                if let Some((off, r)) = self.records.get(i).filter(|_| !p.has_due()) {
                    p.push(shard, crate::ids::Position::offset(*off), arrival_ms, &slice[r.clone()]);
                    i += 1;
                }
                if p.has_due() {
                    let due = p.take_due(Instant::now());
                    flush(p, &mut Unreplayable, ctx, due).await?;
                }
            }
            used += slice.len();
        }
        if self.last_age_check.elapsed() >= AGE_CHECK {
            self.last_age_check = Instant::now();
            let due = p.take_due(Instant::now());
            flush(p, &mut Unreplayable, ctx, due).await?;
            // the stdin daemon watches its schema file too (convert has no watch)
            reload_schema_if_edited(p, &mut Unreplayable, ctx).await?;
            ctx.publish(p);
        }
        Ok(used)
    }
}

/// The daemon: runs until the source ends (stdin) or `cancel` fires. `hup`
/// is set by SIGHUP: reload the schema file.
pub async fn run(cfg: &Config, schema: Arc<TableSchema>, cancel: CancellationToken, hup: Arc<AtomicBool>) -> Result<Summary, RunError> {
    let started = Instant::now();
    let sinks = Sinks::open(&cfg.sink.url, cfg.sink.raw_backup.as_deref(), &cfg.sink.errors, &cfg.sink.store)?;
    let metrics = Arc::new(Metrics::default());
    metrics.update(|m| m.max_age = cfg.limits.max_age);
    let background = CancellationToken::new();
    let _stop_background = background.clone().drop_guard();
    if let Some(addr) = cfg.metrics.listen {
        crate::metrics::serve(addr, metrics.clone(), background.clone()).await.map_err(|source| RunError::Metrics { addr, source })?;
    }
    if cfg.metrics.emf {
        crate::metrics::emf_loop(metrics.clone(), cfg.metrics.emf_interval, background.clone());
    }
    let mut table_ref = TableRef { database: None, table: schema.table.clone() };
    let catalog = match &cfg.catalog {
        CatalogConfig::None => Catalog::None,
        CatalogConfig::Glue { database, projection, endpoint, region } => {
            let sdk = crate::aws::sdk_config(endpoint.as_deref(), region.as_deref()).await;
            table_ref.database = Some(database.clone());
            Catalog::Glue(Box::new(GlueCatalog::open(&sdk, database, &schema, &cfg.sink.url, *projection).await?))
        }
    };
    let watch = SchemaWatch::new(&cfg.schema_path, cfg.schema_poll, hup);
    let mut ctx = Ctx { sinks, catalog, watch: Some(watch), metrics };
    let mut p = Pipeline::new(schema, cfg.limits.clone(), cfg.max_record_bytes).with_raw_backup(ctx.sinks.raw.is_some())
        .with_parquet(ParquetOptions { row_group_bytes: cfg.sink.row_group_bytes, ..Default::default() })
        .with_table_ref(table_ref);
    match &cfg.source {
        SourceConfig::Stdin => {
            ctx.metrics.set_connected(true);
            let mut stdin = tokio::io::stdin();
            read_stream(&mut p, &mut stdin, &ShardId::new("stdin"), now_ms(), "stdin", &mut ctx, Some(&cancel)).await?;
            let rest = p.take_all();
            flush(&mut p, &mut Unreplayable, &mut ctx, rest).await?;
        }
        SourceConfig::Spool { dir, state_dir, poll } => {
            let mut src = SpoolSource::open(dir, state_dir.as_deref()).map_err(SourceError::from)?;
            tracing::info!(dir = %dir.display(), "reading spool");
            run_source(&mut src, &mut p, &mut ctx, *poll, &cancel, false).await?;
        }
        SourceConfig::Kinesis(k) => {
            let mut src = KinesisSource::open(k.clone()).await.map_err(SourceError::from)?;
            ctx.metrics.set_kinesis(src.stats.clone());
            run_source(&mut src, &mut p, &mut ctx, Duration::ZERO, &cancel, false).await?;
        }
    }
    Ok(Summary { stats: p.stats().clone(), elapsed: started.elapsed() })
}

/// The source of `convert` and stdin: nothing to replay, nothing to commit.
struct Unreplayable;

impl Source for Unreplayable {
    fn checkpoints(&self) -> Vec<(ShardId, ShardCheckpoint)> {
        Vec::new()
    }
    async fn next_event(&mut self) -> Result<Option<SourceEvent>, SourceError> {
        Ok(None)
    }
    async fn commit(&mut self, _: &ShardId, _: ShardCheckpoint) -> Result<bool, SourceError> {
        Ok(true)
    }
}

/// Everything the daemon loop writes to besides the pipeline.
pub struct Ctx {
    pub sinks: Sinks,
    pub catalog: Catalog,
    pub watch: Option<SchemaWatch>,
    pub metrics: Arc<Metrics>,
}

impl Ctx {
    pub fn new(sinks: Sinks) -> Ctx {
        Ctx { sinks, catalog: Catalog::None, watch: None, metrics: Arc::new(Metrics::default()) }
    }

    fn publish(&self, p: &Pipeline) {
        let (calls, errors) = self.catalog.calls();
        let schema = p.schema();
        self.metrics.update(|m| {
            m.table = schema.table.clone();
            m.schema_version = schema.version.clone();
            m.stats = p.stats().clone();
            m.buffer_bytes = p.buffered_bytes() as u64;
            m.oldest_unflushed = p.oldest_open(Instant::now());
            m.glue_calls = calls;
            m.glue_errors = errors;
        });
    }
}

/// Watches the schema file: an edit (mtime or size change, polled) or SIGHUP
/// asks for a reload.
pub struct SchemaWatch {
    path: std::path::PathBuf,
    seen: Option<(std::time::SystemTime, u64)>,
    every: Duration,
    last: Instant,
    hup: Arc<std::sync::atomic::AtomicBool>,
}

impl SchemaWatch {
    pub fn new(path: &std::path::Path, every: Duration, hup: Arc<std::sync::atomic::AtomicBool>) -> SchemaWatch {
        let mut w = SchemaWatch { path: path.to_path_buf(), seen: None, every, last: Instant::now(), hup };
        w.seen = w.stamp();
        w
    }
    fn stamp(&self) -> Option<(std::time::SystemTime, u64)> {
        std::fs::metadata(&self.path).ok().and_then(|m| Some((m.modified().ok()?, m.len())))
    }
    /// True once per edit (or SIGHUP).
    fn changed(&mut self) -> bool {
        if self.hup.swap(false, std::sync::atomic::Ordering::Relaxed) {
            self.seen = self.stamp();
            return true;
        }
        if self.last.elapsed() < self.every {
            return false;
        }
        self.last = Instant::now();
        let now = self.stamp();
        if now.is_some() && now != self.seen {
            self.seen = now;
            return true;
        }
        false
    }
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
    ctx: &mut Ctx,
    poll: Duration,
    cancel: &CancellationToken,
    stop_when_idle: bool,
) -> Result<(), RunError> {
    for (shard, cp) in src.checkpoints() {
        p.restore(&shard, &cp);
    }
    ctx.metrics.set_connected(true);
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
                        flush(p, src, ctx, due).await?;
                        if !p.has_shard(&b.shard) {
                            break; // lease lost or given up: the rest is read again by its next owner
                        }
                    }
                }
            }
            Some(SourceEvent::Assigned { shard, checkpoint, intent }) => p.restore_with_intent(&shard, &checkpoint, &intent),
            Some(SourceEvent::Revoked(shard)) => p.drop_shard(&shard),
            Some(SourceEvent::Ended(shard)) => {
                let rest = p.take_shard(&shard);
                flush(p, src, ctx, rest).await?;
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
            flush(p, src, ctx, due).await?;
            reload_schema_if_edited(p, src, ctx).await?;
            ctx.publish(p);
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
    flush(p, src, ctx, rest).await?;
    // shards with nothing to flush still record how far they were read
    let live: BTreeSet<ShardId> = p.shards().cloned().collect();
    commit(p, src, live).await?;
    ctx.publish(p);
    src.close().await?;
    Ok(())
}

/// Checks the schema watch, if any. An edit while running: a compatible one flushes every buffer
/// under the old schema, updates the catalog, then switches; anything else
/// is logged and counted, and the old schema stays.
async fn reload_schema_if_edited<S: Source>(p: &mut Pipeline, src: &mut S, ctx: &mut Ctx) -> Result<(), RunError> {
    // no watch (convert), or no edit since the last look
    if !ctx.watch.as_mut().is_some_and(|w| w.changed()) {
        return Ok(());
    }
    let path = ctx.watch.as_ref().map(|w| w.path.clone()).expect("watching");
    let count = |ctx: &Ctx, r: &'static str| ctx.metrics.update(|m| *m.schema_reloads.entry(r).or_default() += 1);
    let new = match TableSchema::load(&path) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "schema edit refused: the file does not parse; still running on the last good schema");
            count(ctx, "rejected");
            return Ok(());
        }
    };
    if new.version == p.schema().version {
        return Ok(());
    }
    let changes = crate::schema::evolve::diff(p.schema(), &new);
    let bad: Vec<String> = changes.iter().filter(|c| !c.compatible).map(|c| format!("{}: {} ({})", c.column, c.what, c.reason)).collect();
    if !bad.is_empty() {
        tracing::error!(file = %path.display(), refused = %bad.join("; "), "schema edit refused: incompatible with files already written; still running on the last good schema");
        count(ctx, "rejected");
        return Ok(());
    }
    let rest = p.take_all();
    flush(p, src, ctx, rest).await?;
    if let Err(e) = ctx.catalog.update_schema(&new).await {
        tracing::error!(error = %e, "schema edit refused by the catalog; still running on the last good schema");
        count(ctx, "rejected");
        return Ok(());
    }
    tracing::info!(file = %path.display(), from = %p.schema().version, to = %new.version, changes = changes.len(), "schema updated while running");
    p.set_schema(Arc::new(new));
    count(ctx, "applied");
    Ok(())
}

/// The commit protocol for sealed buffers: per shard, the intent → uploads
/// (fenced) → catalog → checkpoint. A shard whose lease is gone at any step
/// is dropped: nothing more is written or committed for it.
pub async fn flush<S: Source>(p: &mut Pipeline, src: &mut S, ctx: &mut Ctx, mut sealed: Vec<Sealed>) -> Result<(), RunError> {
    while !sealed.is_empty() {
        let mut by_shard: BTreeMap<ShardId, Vec<FlushIntent>> = BTreeMap::new();
        for s in &sealed {
            by_shard.entry(s.shard.clone()).or_default().push(FlushIntent::of(s));
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
        let written = write_sealed(p, std::mem::take(&mut sealed), &ctx.sinks, &mut ctx.catalog, &|s| src.may_write(s)).await?;
        for s in &written.fenced {
            p.drop_shard(s);
            src.abandon(s).await?;
        }
        ctx.metrics.update(|m| {
            for (dest, trigger, bytes) in &written.objects {
                let e = m.delivered.entry(dest).or_default();
                e.0 += 1;
                e.1 += bytes;
                *m.flushes.entry(trigger).or_default() += 1;
            }
        });
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

    fn ctx() -> Ctx {
        Ctx::new(Sinks { lake: Store::memory(), raw: Some(Store::memory()), errors: Store::memory() })
    }

    #[tokio::test]
    async fn commits_follow_writes_and_a_restart_reads_nothing_twice() {
        let schema = Arc::new(TableSchema::parse("t.toml", SCHEMA).unwrap());
        let shards: BTreeMap<ShardId, _> = (1..=2).map(|s| (ShardId::new(&format!("shardId-{s}")), records(s))).collect();
        let limits = Limits { max_records: 7, ..Limits::default() };
        let mut ctx = ctx();
        let mut src = MemorySource::new(shards.clone(), BTreeMap::new(), 13);
        let mut p = Pipeline::new(schema.clone(), limits.clone(), 1000).with_raw_backup(true);
        run_source(&mut src, &mut p, &mut ctx, Duration::from_millis(1), &CancellationToken::new(), true).await.unwrap();
        assert_eq!(p.stats().rows, 180);
        assert_eq!(p.stats().error_total(), 20);
        assert!(src.commits > 10, "checkpoints advance during the run, not only at the end");
        let lake = ctx.sinks.lake.keys().await;
        assert!(lake.iter().all(|k| k.starts_with("dt=1970-01-0") && k.contains("/shardId-") && k.ends_with(".snappy.parquet")), "{lake:?}");
        assert!(lake.iter().any(|k| k.starts_with("dt=1970-01-02/")), "arrival day partitions: {lake:?}");
        for (s, recs) in &shards {
            assert_eq!(src.committed[s].resume, Resume::After(recs.last().unwrap().0.clone()));
        }
        // restart from what was committed: nothing is read or written again
        let committed = src.committed.clone();
        let mut src2 = MemorySource::new(shards, committed, 13);
        let mut p2 = Pipeline::new(schema, limits, 1000).with_raw_backup(true);
        run_source(&mut src2, &mut p2, &mut ctx, Duration::from_millis(1), &CancellationToken::new(), true).await.unwrap();
        assert_eq!(p2.stats().records_in, 0);
        assert_eq!(ctx.sinks.lake.keys().await, lake);
    }

    /// What the stores of `ctx` hold: (row ids, the records of the error lines,
    /// record lines of the raw backup), each sorted.
    async fn read_back(ctx: &Ctx) -> (Vec<String>, Vec<String>, Vec<String>) {
        use arrow_array::cast::AsArray;
        use base64::Engine;
        use std::io::Read;
        let gunzip_lines = |b: bytes::Bytes| -> Vec<String> {
            let mut text = String::new();
            flate2::read::MultiGzDecoder::new(&b[..]).read_to_string(&mut text).unwrap();
            text.lines().map(str::to_string).collect()
        };
        let mut rows = Vec::new();
        for k in ctx.sinks.lake.keys().await {
            let file = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(ctx.sinks.lake.get(&k).await).unwrap().build().unwrap();
            for batch in file {
                rows.extend(batch.unwrap().column(0).as_string::<i32>().iter().map(|v| v.unwrap().to_string()));
            }
        }
        let mut errors = Vec::new();
        for k in ctx.sinks.errors.keys().await {
            for l in gunzip_lines(ctx.sinks.errors.get(&k).await) {
                let v: serde_json::Value = serde_json::from_str(&l).unwrap();
                let raw = base64::engine::general_purpose::STANDARD.decode(v["rawData"].as_str().unwrap()).unwrap();
                errors.push(String::from_utf8(raw).unwrap());
            }
        }
        let raw_store = ctx.sinks.raw.as_ref().unwrap();
        let mut raw = Vec::new();
        for k in raw_store.keys().await {
            raw.extend(gunzip_lines(raw_store.get(&k).await));
        }
        for v in [&mut rows, &mut errors, &mut raw] {
            v.sort();
        }
        (rows, errors, raw)
    }

    /// `convert` reads a regular file a buffer at a time: a line several
    /// times longer than the buffer (which doubles until the line fits),
    /// lines across buffer ends, and a last line without a newline all
    /// arrive whole, each exactly once.
    #[tokio::test]
    async fn a_file_with_a_line_longer_than_the_read_buffer_loses_nothing() {
        let schema = Arc::new(TableSchema::parse("t.toml", SCHEMA).unwrap());
        let small = |i: usize| format!("{{\"id\":\"r{i}\",\"pad\":\"{}\"}}", "p".repeat(i % 197));
        let big = format!("{{\"id\":\"big\",\"pad\":\"{}\"}}", "x".repeat(5 * FILE_READ + 12_345));
        let mut lines: Vec<String> = (0..40_000).map(small).collect();
        lines.insert(20_000, big.clone());
        lines.extend((40_000..80_000).map(small));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg.ndjson");
        std::fs::write(&path, lines.join("\n")).unwrap(); // no newline after the last line
        assert!(std::fs::metadata(&path).unwrap().len() as usize > 20 * FILE_READ);
        let mut ctx = ctx();
        let mut p = Pipeline::new(schema, Limits::default(), 1000).with_raw_backup(true);
        let summary = convert(&mut p, &[path.to_string_lossy().into_owned()], &mut ctx).await.unwrap();
        assert_eq!(summary.stats.records_in, 80_001);
        let (rows, errors, raw) = read_back(&ctx).await; // each sorted
        let mut want: Vec<String> = (0..80_000).map(|i| format!("r{i}")).collect();
        want.sort();
        assert_eq!(rows, want);
        // (lengths in the messages: the long line is over 1 MiB)
        let lens: Vec<usize> = errors.iter().map(String::len).collect();
        assert!(errors == [big.clone()], "one error line, the long line refused for its size; got lengths {lens:?}, want [{}]", big.len());
        let mut all = lines;
        all.sort();
        assert!(raw == all, "raw backup: {} lines, {} expected", raw.len(), all.len());
    }

    /// The fence passes in the middle of flushes while the lease stays
    /// held (a slow renewal): the runner drops the shard's buffers and must
    /// give the shard up, so that it is read again from its checkpoint and
    /// intent. Reading on from where the dropped buffers ended lost them.
    #[tokio::test]
    async fn a_fence_lapse_mid_flush_loses_and_duplicates_nothing() {
        let schema = Arc::new(TableSchema::parse("t.toml", SCHEMA).unwrap());
        let shards: BTreeMap<ShardId, _> = (1..=2).map(|s| (ShardId::new(&format!("shardId-{s}")), records(s))).collect();
        for lapses in [vec![3], vec![0, 7, 8, 20], vec![5, 11, 17, 23, 29, 35]] {
            let mut ctx = ctx();
            let mut src = MemorySource::new(shards.clone(), BTreeMap::new(), 9).with_fence_lapses(lapses.clone());
            let limits = Limits { max_records: 4, ..Limits::default() };
            let mut p = Pipeline::new(schema.clone(), limits, 1000).with_raw_backup(true);
            run_source(&mut src, &mut p, &mut ctx, Duration::from_millis(1), &CancellationToken::new(), true).await.unwrap();
            assert_eq!(src.abandoned, lapses.len(), "lapses {lapses:?}: each lapse gives the shard up once");
            let (rows, errors, raw) = read_back(&ctx).await;
            let all: Vec<&(Position, i64, Vec<u8>)> = shards.values().flatten().collect();
            let mut want_rows: Vec<String> = all.iter().map(|r| String::from_utf8(r.2.clone()).unwrap()).filter(|l| l.ends_with("\"}")).map(|l| l[7..l.len() - 2].to_string()).collect();
            let mut want_errors: Vec<String> = all.iter().map(|r| String::from_utf8(r.2.clone()).unwrap()).filter(|l| !l.ends_with("\"}")).collect();
            let mut want_raw: Vec<String> = all.iter().map(|r| String::from_utf8(r.2.clone()).unwrap()).collect();
            for v in [&mut want_rows, &mut want_errors, &mut want_raw] {
                v.sort();
            }
            assert_eq!(rows, want_rows, "lapses {lapses:?}: every good record is one row");
            assert_eq!(errors, want_errors, "lapses {lapses:?}: every bad record is one error line");
            assert_eq!(raw, want_raw, "lapses {lapses:?}: every record is in the raw backup once");
        }
    }

    /// 20 partitions flushed at once (20 Parquet files, 20 raw backups, an
    /// error file): the first 16 partitions are registered after the first
    /// upload group, before any raw backup is written, and the other 4 after
    /// the next group — not all 20 after the 41st upload.
    #[tokio::test]
    async fn partitions_are_registered_group_by_group_parquet_first() {
        let schema = Arc::new(TableSchema::parse("t.toml", SCHEMA).unwrap());
        let mut p = Pipeline::new(schema, Limits::default(), 1000).with_raw_backup(true);
        let day = 86_400_000i64;
        let recs: Vec<(Position, i64, Vec<u8>)> = (0..41u64)
            .map(|i| {
                let data = if i == 40 { b"{\"id\":".to_vec() } else { format!("{{\"id\":\"r{i}\"}}").into_bytes() };
                (Position::new(crate::ids::SequenceNumber::parse(&format!("4959{i:030}")).unwrap(), 0), day * (i % 20) as i64, data)
            })
            .collect();
        let mut src = MemorySource::new(BTreeMap::from([(ShardId::new("shardId-1"), recs)]), BTreeMap::new(), 100);
        let mut ctx = ctx();
        ctx.catalog = Catalog::Memory { known: Default::default(), calls: Vec::new() };
        run_source(&mut src, &mut p, &mut ctx, Duration::from_millis(1), &CancellationToken::new(), true).await.unwrap();
        assert_eq!(ctx.sinks.raw.as_ref().unwrap().keys().await.len(), 20, "raw backups of the 20 partitions");
        assert_eq!(ctx.sinks.errors.keys().await.len(), 1);
        let Catalog::Memory { calls, .. } = &ctx.catalog else { unreachable!() };
        let sizes: Vec<usize> = calls.iter().map(Vec::len).collect();
        assert_eq!(sizes, [UPLOAD_GROUP, 20 - UPLOAD_GROUP], "one registration per upload group, Parquet files in the first groups: {calls:?}");
        let mut all: Vec<&String> = calls.iter().flatten().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 20);
        assert!(all.iter().all(|p| p.starts_with("dt=1970-01-")), "{all:?}");
    }
}
