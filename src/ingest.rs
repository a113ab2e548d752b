//! The ingestion loop: every source driven through one path.
//!
//! Input: a [`Source`]'s events, until it is [`SourceEvent::Finished`] or
//! the cancellation token fires. Each record of a batch enters the
//! [`Pipeline`] once, in runs while rows land in one partition
//! ([`Pipeline::push_run`]), else one by one ([`Pipeline::push`]); due
//! buffers go to the [`Committer`] at once. Every [`AGE_CHECK`] aged
//! buffers are flushed, an edited schema file is applied ([`SchemaWatch`])
//! and metrics are published. Output: on the way out every open buffer is
//! written, every shard committed and the source closed (leases
//! released). Failure: [`IngestError`] from the source or the commit
//! protocol; nothing is checkpointed past a failure, so a restart replays.

use crate::checkpoint::{FlushIntent, ShardCheckpoint, Tally};
use crate::commit::{commit, CommitError, Committer};
use crate::ids::ShardId;
use crate::pipeline::Pipeline;
use crate::schema::TableSchema;
use crate::source::{Batch, Source, SourceError, SourceEvent};
use std::collections::BTreeSet;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Commit(#[from] CommitError),
}

/// How often open buffers are checked against `max_age` (a scan of all of
/// them), whatever the rate of incoming records.
const AGE_CHECK: Duration = Duration::from_millis(500);

/// What the loop saw that the user must hear about.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Shards that ended (inputs, or units of them), in order.
    pub ended: Vec<Ended>,
}

/// A shard that ended.
#[derive(Debug, Clone)]
pub struct Ended {
    pub shard: ShardId,
    /// What became of its records.
    pub tally: Tally,
    /// What its start looks like when that is not NDJSON ([`Source::diagnose`]).
    pub looks: Option<String>,
}

/// Whether an input that ended with `tally` is not NDJSON (none of its
/// records was a JSON object, or it looks like something else and most
/// were not): what to tell the user, naming the fix.
pub fn not_ndjson(tally: &Tally, looks: Option<&str>) -> Option<String> {
    let Tally { records, objects, .. } = *tally;
    if records == 0 || !(objects == 0 || (looks.is_some() && objects * 2 < records)) {
        return None;
    }
    let why = looks.unwrap_or("no line of it is a JSON object; lakehose reads one JSON object per line (each line's reason is in the error prefix)");
    Some(format!("{objects} of {records} records parsed: {why}"))
}

/// Reads `src` until it finishes or `cancel` fires, sleeping `poll` when it
/// has nothing new, and writes and commits as buffers come due.
pub async fn drive<S: Source>(
    src: &mut S,
    p: &mut Pipeline,
    c: &mut Committer,
    watches: &mut [SchemaWatch],
    mut routes: Option<&mut RouteWatch>,
    poll: Duration,
    cancel: &CancellationToken,
) -> Result<Report, IngestError> {
    let mut report = Report::default();
    for (shard, cp) in src.checkpoints() {
        restore(p, c, &shard, &cp, &[]).await?;
    }
    c.metrics.set_connected(true);
    let mut last_age_check = Instant::now();
    let mut times = TimesWarning::default();
    while !cancel.is_cancelled() {
        let event = src.next_event().await?;
        let idle = event.is_none();
        match event {
            Some(SourceEvent::Batch(b)) => {
                push_batch(src, p, c, &b).await?;
                src.recycle(b);
            }
            Some(SourceEvent::Assigned { shard, checkpoint, intent }) => restore(p, c, &shard, &checkpoint, &intent).await?,
            Some(SourceEvent::Revoked(shard)) => p.drop_shard(&shard),
            Some(SourceEvent::Ended(shard)) => {
                let tally = p.tally(&shard).unwrap_or_default();
                report.ended.push(Ended { shard: shard.clone(), tally, looks: src.diagnose(&shard) });
                let rest = p.take_shard(&shard);
                c.flush(p, src, rest).await?;
                if commit(p, src, &mut c.catalogs, BTreeSet::from([shard.clone()])).await? == 1 {
                    src.end_shard(&shard).await?;
                }
                p.drop_shard(&shard);
            }
            Some(SourceEvent::Finished) => break,
            None => {}
        }
        if last_age_check.elapsed() >= AGE_CHECK {
            last_age_check = Instant::now();
            let due = c.due(p, Instant::now());
            c.flush(p, src, due).await?;
            for w in watches.iter_mut() {
                w.reload_if_edited(p, src, c).await?;
            }
            if let Some(r) = routes.as_deref_mut() {
                r.reload_if_edited(p, src, c).await?;
            }
            // a SIGHUP reloads every table's schema file (and the routes)
            watches.iter().for_each(SchemaWatch::clear_hup);
            publish(c, p);
            times.warn(p, false);
        }
        if idle {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }
    if cancel.is_cancelled() {
        tracing::info!("flushing every buffer");
    }
    let rest = p.take_all();
    c.flush(p, src, rest).await?;
    // shards with nothing to flush still record how far they were read
    let live: BTreeSet<ShardId> = p.shards().cloned().collect();
    commit(p, src, &mut c.catalogs, live).await?;
    publish(c, p);
    times.warn(p, true);
    src.close().await?;
    Ok(report)
}

/// Restores a shard's progress before its records come: the source's
/// checkpoint, or the table's when the table keeps checkpoints (Iceberg)
/// and holds another one (a commit whose source checkpoint was not stored
/// before a crash). Records the source hands again from before the
/// table's resume point are skipped ([`Pipeline::skip_until`]).
async fn restore(p: &mut Pipeline, c: &mut Committer, shard: &ShardId, cp: &ShardCheckpoint, intent: &[FlushIntent]) -> Result<(), IngestError> {
    let mut table = None;
    for cat in c.catalogs.iter_mut() {
        if let Some(t) = cat.stored(shard).await.map_err(CommitError::from)? {
            table = Some(t);
        }
    }
    match table {
        Some(t) if t != *cp => {
            tracing::info!(shard = %shard, "resuming from the table's checkpoint, ahead of the source's");
            // the intent was the flush the table already holds
            p.restore_with_intent(shard, &t, &[]);
            p.skip_until(shard, t.resume);
        }
        _ => p.restore_with_intent(shard, cp, intent),
    }
    Ok(())
}

/// Warns about implausible event times (see [`Pipeline::implausible_times`])
/// at most once a minute, naming the column, and once more at the end.
#[derive(Default)]
struct TimesWarning {
    last: Option<Instant>,
    /// Counts already warned about, per column.
    told: Vec<u64>,
}

impl TimesWarning {
    fn warn(&mut self, p: &Pipeline, at_end: bool) {
        if !at_end && self.last.is_some_and(|t| t.elapsed() < Duration::from_secs(60)) {
            return;
        }
        let times = p.implausible_times();
        self.told.resize(times.len(), 0);
        for ((column, n, last), told) in times.iter().zip(&mut self.told) {
            if *n > *told {
                let c = crate::timefmt::civil(*last);
                tracing::warn!(
                    column = %column, values = n, last = last,
                    "column '{column}': {} stored event times fall before 2000 or after 2100 (the last: {last} read as {:04}-{:02}-{:02}); epoch seconds in an epoch_millis column, or the reverse? The values are kept; fix the column's formats in the schema file if the unit is wrong",
                    n - *told, c.year, c.month, c.day
                );
                *told = *n;
                self.last = Some(Instant::now());
            }
        }
    }
}

/// Pushes a batch's records, flushing whenever buffers come due. Stops
/// early when the shard is dropped by a flush (lease lost or given up):
/// the rest is read again by its next owner.
async fn push_batch<S: Source>(src: &mut S, p: &mut Pipeline, c: &mut Committer, b: &Batch) -> Result<(), IngestError> {
    let record = |r: &crate::source::SourceRecord| (r.pos.clone(), r.arrival_ms, &b.buf[r.range.clone()]);
    let mut oversized = b.oversized.iter().peekable();
    let mut i = p.skipped(&b.shard, b.records.iter().map(|r| r.pos.clone()));
    while oversized.peek().is_some_and(|o| o.0 < i) {
        oversized.next();
    }
    while i < b.records.len() {
        // a record cut to the size limit is pushed as such, never in a run
        let run_end = oversized.peek().map_or(b.records.len(), |o| o.0);
        if i == run_end && !p.has_due() {
            let (_, len) = oversized.next().expect("peeked");
            let (pos, arrival_ms, head) = record(&b.records[i]);
            p.push_oversized(&b.shard, pos, arrival_ms, head, *len);
            i += 1;
        } else if i < run_end {
            // runs of records landing in place first, then one by one
            i += p.push_run(&b.shard, &b.records[i..run_end], record);
            if let Some(r) = b.records[..run_end].get(i).filter(|_| !p.has_due()) {
                let (pos, arrival_ms, data) = record(r);
                p.push(&b.shard, pos, arrival_ms, data);
                i += 1;
            }
        }
        if p.has_due() {
            let due = c.due(p, Instant::now());
            c.flush(p, src, due).await?;
            if !p.has_shard(&b.shard) {
                break;
            }
        }
    }
    Ok(())
}

/// Publishes the pipeline's and the catalog's figures to the metrics.
fn publish(c: &Committer, p: &Pipeline) {
    let (calls, errors) = c.catalog_calls();
    let (commits, conflicts) = c.table_commits();
    let schema = p.schema();
    c.metrics.update(|m| {
        m.table = schema.table.clone();
        m.schema_version = schema.version.clone();
        m.stats = p.stats().clone();
        m.buffer_bytes = p.buffered_bytes() as u64;
        m.oldest_unflushed = p.oldest_open(Instant::now());
        m.glue_calls = calls;
        m.glue_errors = errors;
        m.table_commits = commits;
        m.table_commit_conflicts = conflicts;
        m.implausible_times = p.implausible_times().iter().map(|(c, n, _)| (c.clone(), *n)).collect();
    });
}

/// Watches the schema file: an edit (mtime or size change, polled) or SIGHUP
/// asks for a reload.
pub struct SchemaWatch {
    path: std::path::PathBuf,
    seen: Option<(std::time::SystemTime, u64)>,
    every: Duration,
    last: Instant,
    hup: Arc<AtomicBool>,
    /// Who else reads the schema (the front door's check of `/v1/events`).
    shared: Option<Arc<std::sync::Mutex<Arc<TableSchema>>>>,
    /// The lane whose schema file this is ([`crate::lanes`]).
    lane: usize,
}

impl SchemaWatch {
    pub fn new(path: &std::path::Path, every: Duration, hup: Arc<AtomicBool>) -> SchemaWatch {
        let mut w = SchemaWatch { path: path.to_path_buf(), seen: None, every, last: Instant::now(), hup, shared: None, lane: 0 };
        w.seen = w.stamp();
        w
    }

    /// Watches the schema file of routed lane `lane`.
    pub fn for_lane(mut self, lane: usize) -> SchemaWatch {
        self.lane = lane;
        self
    }

    /// Also puts each schema applied into `shared`.
    pub fn sharing(mut self, shared: Arc<std::sync::Mutex<Arc<TableSchema>>>) -> SchemaWatch {
        self.shared = Some(shared);
        self
    }

    fn stamp(&self) -> Option<(std::time::SystemTime, u64)> {
        std::fs::metadata(&self.path).ok().and_then(|m| Some((m.modified().ok()?, m.len())))
    }

    /// Forgets a SIGHUP once every watch has seen it.
    fn clear_hup(&self) {
        self.hup.store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// True once per edit (or SIGHUP, until [`SchemaWatch::clear_hup`]).
    fn changed(&mut self) -> bool {
        if self.hup.load(std::sync::atomic::Ordering::Relaxed) {
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

    /// An edit while running: a compatible one flushes every buffer under
    /// the old schema, updates the catalog, then switches; anything else is
    /// logged and counted, and the old schema stays.
    async fn reload_if_edited<S: Source>(&mut self, p: &mut Pipeline, src: &mut S, c: &mut Committer) -> Result<(), IngestError> {
        if !self.changed() {
            return Ok(());
        }
        let path = &self.path;
        let count = |c: &Committer, r: &'static str| c.metrics.update(|m| *m.schema_reloads.entry(r).or_default() += 1);
        let new = match TableSchema::load(path).map_err(|e| e.to_string()).and_then(|s| c.catalogs[self.lane].adapt(s).map_err(|e| e.to_string())) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "schema edit refused: the file does not parse; still running on the last good schema");
                count(c, "rejected");
                return Ok(());
            }
        };
        let lane = self.lane;
        let current = p.lane_schema(lane).clone();
        if new.version == current.version {
            return Ok(());
        }
        if let Err(why) = if lane == 1 { p.check_route(&new) } else { Ok(()) } {
            tracing::error!(file = %path.display(), refused = %why, "schema edit refused; still running on the last good schema");
            count(c, "rejected");
            return Ok(());
        }
        // the lane's prefixes carry its marker: compare like with like
        let changes = crate::schema::evolve::diff(&current, &crate::lanes::marked(new.clone(), lane));
        let bad: Vec<String> = changes.iter().filter(|c| !c.compatible).map(|c| format!("{}: {} ({})", c.column, c.what, c.reason)).collect();
        if !bad.is_empty() {
            tracing::error!(file = %path.display(), refused = %bad.join("; "), "schema edit refused: incompatible with files already written; still running on the last good schema");
            count(c, "rejected");
            return Ok(());
        }
        let rest = p.take_all();
        c.flush(p, src, rest).await?;
        let mut new = new;
        if let Err(e) = c.catalogs[lane].update_schema(&mut new).await {
            tracing::error!(error = %e, "schema edit refused by the catalog; still running on the last good schema");
            count(c, "rejected");
            return Ok(());
        }
        tracing::info!(file = %path.display(), from = %current.version, to = %new.version, changes = changes.len(), "schema updated while running");
        let new = Arc::new(new);
        if let Some(shared) = &self.shared {
            *shared.lock().unwrap() = new.clone();
        }
        p.set_lane_schema(lane, new);
        count(c, "applied");
        Ok(())
    }
}
/// Watches the config file for edits of `[routing]` and the tables'
/// values: applied like a schema edit (every buffer written first), from
/// the next record on. An edit that does not load, or that adds, removes
/// or moves tables, is refused with a log line and a metric (tables need a
/// restart); the routes in use stay.
pub struct RouteWatch {
    file: SchemaWatch,
    tables: Vec<crate::config::TableConfig>,
}

impl RouteWatch {
    pub fn new(config: &std::path::Path, every: Duration, hup: Arc<AtomicBool>, tables: Vec<crate::config::TableConfig>) -> RouteWatch {
        RouteWatch { file: SchemaWatch::new(config, every, hup), tables }
    }

    async fn reload_if_edited<S: Source>(&mut self, p: &mut Pipeline, src: &mut S, c: &mut Committer) -> Result<(), IngestError> {
        if !self.file.changed() {
            return Ok(());
        }
        let count = |c: &Committer, r: &'static str| c.metrics.update(|m| *m.route_reloads.entry(r).or_default() += 1);
        let refuse = |c: &Committer, why: String| {
            tracing::error!(refused = %why, "route edit refused; still routing as before");
            count(c, "rejected");
        };
        let cfg = match crate::config::Config::load(&self.file.path) {
            Ok(cfg) => cfg,
            Err(e) => {
                refuse(c, e.to_string());
                return Ok(());
            }
        };
        let Some(r) = cfg.routing else {
            refuse(c, "[routing] was removed: going back to one table needs a restart".into());
            return Ok(());
        };
        if r.tables != self.tables {
            refuse(c, "[[tables]] changed (schema, url or errors, or their order): tables need a restart; only routes apply live".into());
            return Ok(());
        }
        if p.routes() == Some(&r.routes) {
            return Ok(());
        }
        if let Err(why) = r.routes.check_schema(p.lane_schema(1)) {
            refuse(c, why);
            return Ok(());
        }
        let rest = p.take_all();
        c.flush(p, src, rest).await?;
        tracing::info!(column = %r.routes.column, "routes updated while running");
        p.set_routes(r.routes);
        count(c, "applied");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffers::Limits;
    use crate::catalog::NoCatalog;
    use crate::checkpoint::Resume;
    use crate::commit::{Sinks, UPLOAD_GROUP};
    use crate::ids::Position;
    use crate::metrics::Metrics;
    use crate::store::Store;
    use crate::testing::catalog::MemoryCatalog;
    use crate::testing::source::MemorySource;
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

    /// The stores a test's writers write to.
    struct Stores {
        lake: Store,
        raw: Store,
        errors: Store,
    }

    impl Stores {
        fn new() -> Stores {
            Stores { lake: Store::memory(), raw: Store::memory(), errors: Store::memory() }
        }
        fn sinks(&self) -> Sinks {
            Sinks::hive(self.lake.clone(), Some(self.raw.clone()), self.errors.clone())
        }
        fn committer(&self) -> Committer {
            Committer::new(self.sinks(), Box::new(NoCatalog), Arc::new(Metrics::default()))
        }
    }

    async fn run_to_end<S: Source>(src: &mut S, p: &mut Pipeline, c: &mut Committer) {
        drive(src, p, c, &mut [], None, Duration::from_millis(1), &CancellationToken::new()).await.unwrap();
    }

    #[tokio::test]
    async fn commits_follow_writes_and_a_restart_reads_nothing_twice() {
        let schema = Arc::new(TableSchema::parse("t.toml", SCHEMA).unwrap());
        let shards: BTreeMap<ShardId, _> = (1..=2).map(|s| (ShardId::new(&format!("shardId-{s}")), records(s))).collect();
        let limits = Limits { max_records: 7, ..Limits::default() };
        let stores = Stores::new();
        let mut c = stores.committer();
        let mut src = MemorySource::new(shards.clone(), BTreeMap::new(), 13);
        let mut p = Pipeline::new(schema.clone(), limits.clone(), 1000).with_raw_backup(true);
        run_to_end(&mut src, &mut p, &mut c).await;
        assert_eq!(p.stats().rows, 180);
        assert_eq!(p.stats().error_total(), 20);
        assert!(src.commits > 10, "checkpoints advance during the run, not only at the end");
        let lake = stores.lake.keys().await;
        assert!(lake.iter().all(|k| k.starts_with("dt=1970-01-0") && k.contains("/shardId-") && k.ends_with(".snappy.parquet")), "{lake:?}");
        assert!(lake.iter().any(|k| k.starts_with("dt=1970-01-02/")), "arrival day partitions: {lake:?}");
        for (s, recs) in &shards {
            assert_eq!(src.committed[s].resume, Resume::After(recs.last().unwrap().0.clone()));
        }
        // restart from what was committed: nothing is read or written again
        let committed = src.committed.clone();
        let mut src2 = MemorySource::new(shards, committed, 13);
        let mut p2 = Pipeline::new(schema, limits, 1000).with_raw_backup(true);
        run_to_end(&mut src2, &mut p2, &mut c).await;
        assert_eq!(p2.stats().records_in, 0);
        assert_eq!(stores.lake.keys().await, lake);
    }

    /// What the stores hold: (row ids, the records of the error lines,
    /// record lines of the raw backup), each sorted.
    async fn read_back(stores: &Stores) -> (Vec<String>, Vec<String>, Vec<String>) {
        use arrow_array::cast::AsArray;
        use base64::Engine;
        use std::io::Read;
        let gunzip_lines = |b: bytes::Bytes| -> Vec<String> {
            let mut text = String::new();
            flate2::read::MultiGzDecoder::new(&b[..]).read_to_string(&mut text).unwrap();
            text.lines().map(str::to_string).collect()
        };
        let mut rows = Vec::new();
        for k in stores.lake.keys().await {
            let file = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(stores.lake.get(&k).await).unwrap().build().unwrap();
            for batch in file {
                rows.extend(batch.unwrap().column(0).as_string::<i32>().iter().map(|v| v.unwrap().to_string()));
            }
        }
        let mut errors = Vec::new();
        for k in stores.errors.keys().await {
            for l in gunzip_lines(stores.errors.get(&k).await) {
                let v: serde_json::Value = serde_json::from_str(&l).unwrap();
                let raw = base64::engine::general_purpose::STANDARD.decode(v["rawData"].as_str().unwrap()).unwrap();
                errors.push(String::from_utf8(raw).unwrap());
            }
        }
        let raw_store = &stores.raw;
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
    /// times longer than the buffer (which grows until the line fits),
    /// lines across buffer ends, and a last line without a newline all
    /// arrive whole, each exactly once; a line over the record size limit
    /// is one error line holding its first bytes, and its raw backup line
    /// says it was cut and how long it was.
    #[tokio::test]
    async fn a_file_with_lines_longer_than_the_read_buffer_loses_nothing() {
        use base64::Engine;
        let schema = Arc::new(TableSchema::parse("t.toml", SCHEMA).unwrap());
        let read = crate::source::lines::READ_SIZE;
        let limit = 4 << 20;
        let small = |i: usize| format!("{{\"id\":\"r{i}\",\"pad\":\"{}\"}}", "p".repeat(i % 197));
        let big = format!("{{\"id\":\"big\",\"pad\":\"{}\"}}", "x".repeat(5 * read + 12_345));
        let huge = format!("{{\"id\":\"huge\",\"pad\":\"{}\"}}", "y".repeat(limit * 2 + 99));
        let mut lines: Vec<String> = (0..40_000).map(small).collect();
        lines.insert(20_000, big.clone());
        lines.insert(30_000, huge.clone());
        lines.extend((40_000..80_000).map(small));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg.ndjson");
        std::fs::write(&path, lines.join("\n")).unwrap(); // no newline after the last line
        assert!(std::fs::metadata(&path).unwrap().len() as usize > 20 * read);
        let stores = Stores::new();
        let mut p = Pipeline::new(schema, Limits::default(), limit).with_raw_backup(true);
        use crate::source::{inputs, units::UnitSource, work::Work};
        let work = Work::new(inputs::jobs(vec![inputs::local_input(&path).unwrap()], inputs::CHUNK, false).unwrap(), 64 << 20, false);
        let mut src = UnitSource::new(work, tokio::runtime::Handle::current(), inputs::CHUNK, limit);
        run_to_end(&mut src, &mut p, &mut stores.committer()).await;
        assert_eq!(p.stats().records_in, 80_002);
        let (rows, errors, raw) = read_back(&stores).await; // each sorted
        let mut want: Vec<String> = (0..80_000).map(|i| format!("r{i}")).chain(["big".to_string()]).collect();
        want.sort();
        assert_eq!(rows, want);
        let lens: Vec<usize> = errors.iter().map(String::len).collect();
        assert!(errors == [huge[..limit].to_string()], "one error line holding the huge line's first {limit} bytes; got lengths {lens:?}");
        let marker = raw.iter().find(|l| l.starts_with("{\"lakehoseRaw\"")).expect("a marked raw line");
        let m: serde_json::Value = serde_json::from_str(marker).unwrap();
        assert_eq!((&m["originalSize"], &m["truncated"]), (&serde_json::json!(huge.len()), &serde_json::json!(true)));
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(m["lakehoseRaw"].as_str().unwrap()).unwrap(), huge.as_bytes()[..limit]);
        let mut all: Vec<String> = lines.into_iter().filter(|l| *l != huge).chain([marker.clone()]).collect();
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
            let stores = Stores::new();
            let mut c = stores.committer();
            let mut src = MemorySource::new(shards.clone(), BTreeMap::new(), 9).with_fence_lapses(lapses.clone());
            let limits = Limits { max_records: 4, ..Limits::default() };
            let mut p = Pipeline::new(schema.clone(), limits, 1000).with_raw_backup(true);
            run_to_end(&mut src, &mut p, &mut c).await;
            assert_eq!(src.abandoned, lapses.len(), "lapses {lapses:?}: each lapse gives the shard up once");
            let (rows, errors, raw) = read_back(&stores).await;
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
        let stores = Stores::new();
        let catalog = MemoryCatalog::new();
        let log = catalog.log();
        let mut c = Committer::new(stores.sinks(), Box::new(catalog), Arc::new(Metrics::default()));
        run_to_end(&mut src, &mut p, &mut c).await;
        assert_eq!(stores.raw.keys().await.len(), 20, "raw backups of the 20 partitions");
        assert_eq!(stores.errors.keys().await.len(), 1);
        let calls = log.lock().unwrap().calls.clone();
        let sizes: Vec<usize> = calls.iter().map(Vec::len).collect();
        assert_eq!(sizes, [UPLOAD_GROUP, 20 - UPLOAD_GROUP], "one registration per upload group, Parquet files in the first groups: {calls:?}");
        let mut all: Vec<&String> = calls.iter().flatten().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 20);
        assert!(all.iter().all(|p| p.starts_with("dt=1970-01-")), "{all:?}");
    }
}
