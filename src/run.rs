//! The runner: a config wired into the record path (the daemon; `convert`
//! is [`crate::backfill`]).
//!
//! Input: a validated config. Output:
//! the source, pipeline, writers, catalog and metrics built from them and
//! driven by the ingestion loop ([`crate::ingest::drive`]) until the source
//! finishes (stdin) or the cancellation token fires (SIGTERM/
//! SIGINT: reading stops, every buffer is flushed, checkpoints are stored);
//! then the run's [`Summary`]. Failure: [`RunError`]: a destination, the
//! catalog, the source or the metrics address that cannot be opened, or a
//! failure of the loop (nothing is checkpointed past it).

use crate::catalog::glue::GlueCatalog;
use crate::catalog::{Catalog, CatalogError, NoCatalog};
use crate::commit::{Committer, Sinks};
use crate::config::{CatalogConfig, Config, SourceConfig};
use crate::ingest::{drive, IngestError, Report, RouteWatch, SchemaWatch};
use crate::metrics::{Metrics, Stats};
use crate::pipeline::Pipeline;
use crate::schema::TableSchema;
use crate::source::http::forward::Forwarder;
use crate::source::http::log::LogWriter;
use crate::source::http::log_source::LogSource;
use crate::source::http::{Door, DoorError, DoorStats, Medium};
use crate::source::kafka::KafkaSource;
use crate::source::kinesis::KinesisSource;
use crate::source::spool::SpoolSource;
use crate::source::stdin::StdinSource;
use crate::source::SourceError;
use crate::store::{Store, StoreError};
use crate::write::{ParquetOptions, TableRef};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Door(#[from] DoorError),
    #[error(transparent)]
    Iceberg(#[from] crate::iceberg::IcebergError),
    #[error(transparent)]
    Log(#[from] crate::source::http::log::LogError),
    #[error("schema of table {table}: column {column}: source {message}")]
    KafkaField { table: String, column: String, message: String },
    #[error("metrics endpoint {addr}: {source}; set [metrics] listen to a free address")]
    Metrics { addr: std::net::SocketAddr, source: std::io::Error },
}

/// The Kafka fields (`$key`, `$header.x`, ...) the tables' columns name as
/// sources; a `$` name that is not one stops startup.
fn kafka_fields(schemas: &[Arc<TableSchema>]) -> Result<crate::source::kafka::records::Meta, RunError> {
    let mut all = crate::source::kafka::records::Meta::default();
    for s in schemas {
        for c in &s.columns {
            let m = crate::source::kafka::records::Meta::from_sources(c.source.first().map(String::as_str).into_iter())
                .map_err(|message| RunError::KafkaField { table: s.table.clone(), column: c.name.clone(), message })?;
            all = all.union(&m);
        }
    }
    Ok(all)
}

/// Bytes a write-ahead log segment takes before the next one begins (at
/// most an eighth of the log's size).
const SEGMENT_BYTES: u64 = 64 << 20;

/// Summary of a finished run.
#[derive(Debug, Clone)]
pub struct Summary {
    pub stats: Stats,
    pub elapsed: Duration,
    /// Inputs of which no record parsed, and what they look like.
    pub not_ndjson: Vec<String>,
    /// The process's peak resident memory so far (Linux), in bytes.
    pub peak_rss: Option<u64>,
}

impl Summary {
    fn new(stats: Stats, elapsed: Duration, report: Report) -> Summary {
        let mut not_ndjson = Vec::new();
        for e in report.ended {
            if let Some(why) = crate::ingest::not_ndjson(&e.tally, e.looks.as_deref()) {
                tracing::error!(shard = %e.shard, "{}: {why}", e.shard);
                not_ndjson.push(format!("{}: {why}", e.shard));
            }
        }
        Summary { stats, elapsed, not_ndjson, peak_rss: peak_rss() }
    }
}

/// VmHWM of /proc/self/status: the peak resident set size.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.stats;
        write!(f, "{} records ({} bytes) in {:.2}s: {} rows written, {} errors", s.records_in, s.bytes_in,
            self.elapsed.as_secs_f64(), s.rows, s.error_total())?;
        for (code, n) in &s.errors {
            write!(f, ", {code}: {n}")?;
        }
        for (name, n) in &s.filtered {
            write!(f, ", filtered by {name}: {n}")?;
        }
        write!(f, "; encoding files took {:.2}s", s.encode_time.as_secs_f64())?;
        if let Some(b) = self.peak_rss {
            write!(f, "; peak memory {} MiB", b >> 20)?;
        }
        for problem in &self.not_ndjson {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

/// The daemon: runs until the source ends (stdin) or `cancel` fires. `hup`
/// is set by SIGHUP: reload the schema file.
/// `schemas`: the table's schema, or with routing every table's in the
/// config's order (each checked to have the route column).
pub async fn run(cfg: &Config, schemas: Vec<Arc<TableSchema>>, cancel: CancellationToken, hup: Arc<AtomicBool>) -> Result<Summary, RunError> {
    let started = Instant::now();
    let mut schemas = schemas;
    // an Iceberg table: its schema as its files are written, its sink and catalog
    let (mut iceberg, iceberg_files) = match &cfg.catalog {
        CatalogConfig::Iceberg(ic) => {
            let (table, files, adapted) = crate::iceberg::IcebergTable::open(&ic.for_schema(&schemas[0]), &schemas[0], &cfg.sink.store).await?;
            schemas[0] = Arc::new(adapted);
            (Some(table), Some(files))
        }
        _ => (None, None),
    };
    let schema = schemas[0].clone();
    let sinks = match &cfg.routing {
        None => match iceberg_files {
            Some(files) => Sinks::with_table(Box::new(files), cfg.sink.raw_backup.as_deref(), &cfg.sink.errors, &cfg.sink.store)?,
            None => Sinks::open(&cfg.sink.url, cfg.sink.raw_backup.as_deref(), &cfg.sink.errors, &cfg.sink.store)?,
        },
        Some(r) => {
            let open = |u: &str| Store::open(u, &cfg.sink.store);
            let raw = cfg.sink.raw_backup.as_deref().map(open).transpose()?;
            let mut s = Sinks::hive(open(&r.tables[0].url)?, raw, open(&cfg.sink.errors)?);
            s.table = None;
            for t in &r.tables {
                s = s.with_lane(open(&t.url)?, open(&t.errors)?);
            }
            s
        }
    };
    let has_raw = sinks.raw.is_some();
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
    // one catalog per table (and none for the shared error prefix of a routed config)
    let database = match &cfg.catalog {
        CatalogConfig::Glue { database, .. } => Some(database.clone()),
        CatalogConfig::Iceberg(ic) => Some(ic.namespace.clone()),
        CatalogConfig::None => None,
    };
    let urls: Vec<String> = match &cfg.routing {
        None => vec![cfg.sink.url.clone()],
        Some(r) => r.tables.iter().map(|t| t.url.clone()).collect(),
    };
    let mut catalogs: Vec<Box<dyn Catalog>> = Vec::new();
    for (s, url) in schemas.iter().zip(&urls) {
        catalogs.push(match &cfg.catalog {
            CatalogConfig::None => Box::new(NoCatalog),
            CatalogConfig::Iceberg(_) => Box::new(iceberg.take().expect("opened above")),
            CatalogConfig::Glue { database, projection, endpoint, region } => {
                let sdk = crate::aws::sdk_config(endpoint.as_deref(), region.as_deref()).await;
                Box::new(GlueCatalog::open(&sdk, database, s, url, *projection).await?)
            }
        });
    }
    let table_ref = |s: &TableSchema| TableRef { database: database.clone(), table: s.table.clone() };
    let shared_schema = Arc::new(std::sync::Mutex::new(schema.clone()));
    let mut watches = match &cfg.routing {
        None => vec![SchemaWatch::new(&cfg.schema_path, cfg.schema_poll, hup.clone()).sharing(shared_schema.clone())],
        Some(r) => {
            let watch = |(i, t): (usize, &crate::config::TableConfig)| {
                let w = SchemaWatch::new(&t.schema_path, cfg.schema_poll, hup.clone()).for_lane(i + 1);
                if i == 0 { w.sharing(shared_schema.clone()) } else { w }
            };
            r.tables.iter().enumerate().map(watch).collect()
        }
    };
    let door = |medium: Medium| -> Option<Arc<Door>> {
        let h = cfg.http.clone()?;
        let stats = Arc::new(DoorStats::default());
        metrics.set_door(stats.clone());
        Some(Arc::new(Door::new(h, medium, shared_schema.clone(), cfg.max_record_bytes, stats)))
    };
    // routes apply live from the config file (not from LAKEHOSE_CONFIG_TOML, which has no file)
    let mut route_watch = match &cfg.routing {
        Some(r) if std::env::var_os("LAKEHOSE_CONFIG_TOML").is_none() => Some(RouteWatch::new(std::path::Path::new(&cfg.file), cfg.schema_poll, hup.clone(), r.tables.clone())),
        _ => None,
    };
    let mut door_task = None;
    let mut p = Pipeline::new(schema.clone(), cfg.limits.clone(), cfg.max_record_bytes)
        .with_raw_backup(has_raw)
        .with_parquet(ParquetOptions { row_group_bytes: cfg.sink.row_group_bytes, ..Default::default() })
        .with_table_ref(table_ref(&schema));
    let mut c = match &cfg.routing {
        None => Committer::new(sinks, catalogs.remove(0), metrics.clone()),
        Some(r) => {
            p = p.with_routes(r.routes.clone(), schemas.iter().map(|s| (s.clone(), table_ref(s))).collect());
            catalogs.into_iter().fold(Committer::new(sinks, Box::new(NoCatalog), metrics.clone()), |c, cat| c.with_lane_catalog(cat))
        }
    };
    c.whole_flushes = matches!(cfg.catalog, CatalogConfig::Iceberg(_));
    let report = match &cfg.source {
        SourceConfig::Stdin => {
            let mut src = StdinSource::new(cancel.clone(), cfg.max_record_bytes);
            drive(&mut src, &mut p, &mut c, &mut watches, route_watch.as_mut(), Duration::ZERO, &cancel).await?
        }
        SourceConfig::Spool { dir, state_dir, poll } => {
            let mut src = SpoolSource::open(dir, state_dir.as_deref(), cfg.max_record_bytes).map_err(SourceError::from)?;
            tracing::info!(dir = %dir.display(), "reading spool");
            drive(&mut src, &mut p, &mut c, &mut watches, route_watch.as_mut(), *poll, &cancel).await?
        }
        SourceConfig::Kinesis(k) => {
            if cfg.http.is_some() {
                // forward mode: the door puts records to the stream this source reads
                let sdk = crate::aws::sdk_config(k.endpoint.as_deref(), k.region.as_deref()).await;
                let forwarder = Forwarder::new(aws_sdk_kinesis::Client::new(&sdk), k.stream.clone());
                let d = door(Medium::Kinesis(Arc::new(forwarder))).expect("[http] set");
                door_task = Some(crate::source::http::serve(d, cancel.clone()).await?);
            }
            let mut src = KinesisSource::open(k.clone()).await.map_err(SourceError::from)?;
            c.metrics.set_kinesis(src.stats.clone());
            drive(&mut src, &mut p, &mut c, &mut watches, route_watch.as_mut(), Duration::ZERO, &cancel).await?
        }
        SourceConfig::Kafka(k) => {
            let mut k = (**k).clone();
            k.meta = kafka_fields(&schemas)?;
            match KafkaSource::open(k, &cancel).await.map_err(SourceError::from)? {
                Some(mut src) => {
                    c.metrics.set_kafka(src.stats.clone());
                    drive(&mut src, &mut p, &mut c, &mut watches, route_watch.as_mut(), Duration::ZERO, &cancel).await?
                }
                None => Report::default(), // stopped before a broker answered
            }
        }
        SourceConfig::Http { dir, max_log_bytes } => {
            let cfg_http = cfg.http.as_ref().expect("validated: source http has [http]");
            let max_frame = cfg.max_record_bytes.max(crate::source::http::firehose::MAX_RECORD_BYTES).max(cfg_http.max_request_bytes);
            // segments small enough that a full log frees room as they are committed
            let segment_bytes = SEGMENT_BYTES.min(*max_log_bytes / 8).max(1 << 16);
            let (writer, shared) = LogWriter::open(dir, *max_log_bytes, segment_bytes, max_frame)?;
            let d = door(Medium::Log(writer)).expect("[http] set");
            door_task = Some(crate::source::http::serve(d, cancel.clone()).await?);
            let mut src = LogSource::open(dir, shared, max_frame)?;
            tracing::info!(dir = %dir.display(), "reading the front door's log");
            drive(&mut src, &mut p, &mut c, &mut watches, route_watch.as_mut(), Duration::ZERO, &cancel).await?
        }
    };
    if let Some(t) = door_task {
        // the door answers the requests in flight before the process ends
        let _ = t.await;
    }
    Ok(Summary::new(p.stats().clone(), started.elapsed(), report))
}
