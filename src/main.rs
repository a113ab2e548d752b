//! The `lakehose` command line. Exit codes: 0 ok, 2 bad usage, config or
//! schema (the message names file, line and key), 1 runtime failure.

use anyhow::Context;
use clap::{Parser, Subcommand};
use lakehose::config::Config;
use lakehose::buffers::Limits;
use lakehose::commit::Sinks;
use lakehose::backfill::{self, Backfill, BackfillError};
use lakehose::run;
use lakehose::schema::{evolve, infer, TableSchema};
use lakehose::store::StoreOptions;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "lakehose", version, about = "JSON records → partitioned snappy Parquet in S3 or local files, exactly once")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon with a config file (every key can be overridden by
    /// LAKEHOSE_<SECTION>_<KEY>, e.g. LAKEHOSE_BUFFER_MAX_AGE=30s).
    Run {
        #[arg(long, default_value = "lakehose.toml")]
        config: PathBuf,
    },
    /// Convert NDJSON (files, directories, glob patterns, - for stdin,
    /// s3://bucket/prefix/; plain, gzip or zstd) to partitioned Parquet
    /// once, on every core, through the same code path as the daemon.
    /// Re-running the same command replaces the same objects.
    Convert {
        /// Schema file describing the table.
        #[arg(long)]
        schema: PathBuf,
        /// Lake destination: a directory, file:///dir/ or s3://bucket/prefix/
        /// (with --format iceberg: none, the table's location is the catalog's).
        #[arg(long, required_unless_present = "format")]
        out: Option<String>,
        /// Table format: hive (Parquet in Hive-style prefixes) or iceberg
        /// (an Iceberg table in --catalog sql or glue, --warehouse, --database).
        #[arg(long, value_enum, default_value = "hive")]
        format: Format,
        /// Iceberg SQL catalog: its SQLite file (with --catalog sql).
        #[arg(long)]
        catalog_uri: Option<PathBuf>,
        /// Iceberg: where the table is created (a directory or s3://bucket/prefix).
        #[arg(long)]
        warehouse: Option<String>,
        /// Where bad records go (default: <out>/_errors/).
        #[arg(long)]
        errors: Option<String>,
        /// Also keep every input record, gzip NDJSON, under this URL.
        #[arg(long)]
        raw_backup: Option<String>,
        /// Largest accepted record in bytes (Firehose's limit by default).
        #[arg(long, default_value_t = lakehose::decode::DEFAULT_MAX_RECORD_BYTES)]
        max_record_size: usize,
        /// Flush a partition's file at this many records.
        #[arg(long, default_value_t = 1_000_000)]
        max_records: usize,
        /// Flush a partition's file at this many input bytes (e.g. 128MiB).
        #[arg(long, default_value = "128MiB")]
        max_bytes: String,
        /// Flush the largest buffers when all of them together hold this much.
        #[arg(long, default_value = "256MiB")]
        memory_limit: String,
        /// S3 endpoint override (else AWS_ENDPOINT_URL).
        #[arg(long)]
        endpoint: Option<String>,
        /// SSE-KMS key for every object written to S3.
        #[arg(long)]
        kms_key_id: Option<String>,
        /// AWS region of the S3 buckets and Glue (else the SDK's default chain).
        #[arg(long)]
        region: Option<String>,
        /// Workers converting at once (default: the cores available).
        #[arg(long)]
        jobs: Option<usize>,
        /// The inputs are error-prefix objects: convert the records their
        /// lines hold (rawData) again. Without it, an input whose first line
        /// is an error line is read as one.
        #[arg(long)]
        from_errors: bool,
        /// Register the partitions written in a catalog: none or glue (with
        /// --database); with --format iceberg the table's catalog: sql or glue.
        #[arg(long, value_enum, default_value = "none", requires_if("glue", "database"))]
        catalog: CatalogKind,
        /// Glue database (with --catalog glue), or the Iceberg namespace.
        #[arg(long)]
        database: Option<String>,
        /// Progress on stderr: a bar on a terminal, a JSON line every 5 s otherwise.
        #[arg(long, value_enum, default_value = "auto")]
        progress: lakehose::progress::Mode,
        /// Input bytes per unit of work (objects are cut at least this often).
        #[arg(long, default_value = "64MiB")]
        chunk_size: String,
        /// Inputs: files, directories, glob patterns, - (stdin), s3://bucket/prefix/.
        #[arg(default_value = "-")]
        inputs: Vec<String>,
    },
    /// Iceberg table maintenance (the table of a config with format = "iceberg").
    Table {
        #[command(subcommand)]
        cmd: TableCmd,
    },
    /// Schema file tools.
    Schema {
        #[command(subcommand)]
        cmd: SchemaCmd,
    },
}

#[derive(Subcommand)]
enum TableCmd {
    /// Expire an Iceberg table's snapshots older than --older-than (e.g.
    /// 7d), keeping the --retain-last newest. Metadata only: files the kept
    /// snapshots list stay; files nothing references any more are left for
    /// an orphan-file cleanup (docs/operations.md).
    ExpireSnapshots {
        #[arg(long, default_value = "lakehose.toml")]
        config: PathBuf,
        #[arg(long)]
        older_than: String,
        #[arg(long, default_value_t = 1)]
        retain_last: u32,
    },
}

#[derive(Subcommand)]
enum SchemaCmd {
    /// Validate a schema file; with --against or --against-glue, check that the change is compatible.
    Check {
        schema: PathBuf,
        /// The schema file currently in use; prints a column-by-column diff and a verdict.
        #[arg(long, conflicts_with = "against_glue")]
        against: Option<PathBuf>,
        /// Compare with the Glue table of the same name in --database instead.
        #[arg(long, requires = "database")]
        against_glue: bool,
        /// Glue database (with --against-glue).
        #[arg(long)]
        database: Option<String>,
        /// AWS endpoint override for Glue (tests, VPC endpoints); else AWS_ENDPOINT_URL / the default.
        #[arg(long)]
        endpoint: Option<String>,
    },
    /// Draft a schema file from sample NDJSON (a file or - for stdin), printed to stdout.
    Infer {
        sample: PathBuf,
        /// Table name (default: the sample file's name).
        #[arg(long)]
        table: Option<String>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum CatalogKind {
    None,
    Glue,
    Sql,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Hive,
    Iceberg,
}

/// `convert --format iceberg`: the table's config, created (or its new
/// columns added) before anything is read, and the schema adapted to it.
async fn iceberg_target(
    schema: &TableSchema,
    catalog: CatalogKind,
    uri: Option<PathBuf>,
    warehouse: Option<String>,
    database: Option<String>,
    store: &StoreOptions,
) -> anyhow::Result<(lakehose::iceberg::IcebergConfig, TableSchema)> {
    use lakehose::iceberg::{IcebergCatalog, IcebergConfig, IcebergTable};
    let warehouse = warehouse.ok_or_else(|| usage("--warehouse: missing; the directory or s3://bucket/prefix the Iceberg catalog creates tables under"))?;
    let warehouse = lakehose::iceberg::warehouse_url(&warehouse, |w: &str| PathBuf::from(w)).map_err(|m| usage(format!("--warehouse: {m}")))?;
    let catalog = match catalog {
        CatalogKind::Sql => IcebergCatalog::Sql {
            file: uri.ok_or_else(|| usage("--catalog-uri: missing; the SQL catalog's SQLite file"))?,
            warehouse,
            name: "default".into(),
        },
        CatalogKind::Glue => IcebergCatalog::Glue { warehouse, endpoint: store.endpoint.clone(), region: store.region.clone() },
        CatalogKind::None => return Err(usage("--format iceberg: name the table's catalog with --catalog sql (and --catalog-uri) or --catalog glue")),
    };
    let namespace = database.ok_or_else(|| usage("--database: missing; the Iceberg namespace (Glue database) of the table"))?;
    let cfg = IcebergConfig { catalog, namespace, table: String::new(), checkpoints: false }.for_schema(schema);
    let (_, _, adapted) = IcebergTable::open(&cfg, schema, store).await.map_err(|e| match e {
        e @ lakehose::iceberg::IcebergError::Unsupported { .. } => usage(e),
        e => anyhow::Error::new(e).context("opening the Iceberg table"),
    })?;
    Ok((cfg, adapted))
}

/// An error that maps to exit code 2.
#[derive(Debug)]
struct Usage(String);
impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Usage {}

fn usage(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(Usage(e.to_string()))
}

fn size(s: &str, flag: &str) -> anyhow::Result<usize> {
    lakehose::config::parse_size(&toml::Value::String(s.into())).map_err(|m| usage(format!("{flag}: {m}")))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // JSON lines unless stderr is a terminal (LAKEHOSE_LOG_FORMAT=json|text overrides)
    let filter = || tracing_subscriber::EnvFilter::try_from_env("LAKEHOSE_LOG").unwrap_or_else(|_| "info".into());
    let json = match std::env::var("LAKEHOSE_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => !std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    if json {
        tracing_subscriber::fmt().json().with_current_span(true).with_span_list(false).with_writer(std::io::stderr).with_env_filter(filter()).init();
    } else {
        tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter()).init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match rt.block_on(dispatch(cli.cmd)) {
        Ok(code) => code,
        Err(e) => {
            let code = if e.downcast_ref::<Usage>().is_some() { 2 } else { 1 };
            eprintln!("lakehose: {e:#}");
            ExitCode::from(code)
        }
    }
}

fn load_schema(path: &std::path::Path) -> anyhow::Result<Arc<TableSchema>> {
    TableSchema::load(path).map(Arc::new).map_err(usage)
}

async fn dispatch(cmd: Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Table { cmd: TableCmd::ExpireSnapshots { config, older_than, retain_last } } => {
            let cfg = Config::load(&config).map_err(usage)?;
            let age = lakehose::config::parse_duration(&older_than).map_err(|m| usage(format!("--older-than: {m}; write e.g. \"7d\"")))?;
            let lakehose::config::CatalogConfig::Iceberg(ic) = &cfg.catalog else {
                return Err(usage(format!("{}: not an Iceberg table; set [table] format = \"iceberg\"", cfg.file)));
            };
            let schema = load_schema(&cfg.schema_path)?;
            let (table, _, _) = lakehose::iceberg::IcebergTable::open(&ic.for_schema(&schema), &schema, &cfg.sink.store).await?;
            let cutoff = std::time::SystemTime::now().checked_sub(age).and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_millis() as i64);
            let (before, after) = table.expire_snapshots(cutoff, retain_last).await?;
            eprintln!("lakehose table expire-snapshots: {} of {before} snapshots expired, {after} kept", before - after);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run { config } => {
            let cfg = Config::load(&config).map_err(usage)?;
            let schemas = match &cfg.routing {
                None => vec![load_schema(&cfg.schema_path)?],
                Some(r) => {
                    let mut all = Vec::new();
                    for t in &r.tables {
                        all.push(load_schema(&t.schema_path)?);
                    }
                    // the route value is read as the first table declares its column
                    r.routes.check_schema(&all[0]).map_err(|m| usage(format!("{}: key `routing.column`: {m}", cfg.file)))?;
                    all
                }
            };
            let cancel = CancellationToken::new();
            let hup = Arc::new(std::sync::atomic::AtomicBool::new(false));
            spawn_signal_handler(cancel.clone(), hup.clone());
            let summary = run::run(&cfg, schemas, cancel, hup).await.map_err(|e| match e {
                // a Glue table that cannot take the schema is a schema problem: exit 2
                run::RunError::Catalog(c @ lakehose::catalog::CatalogError::Incompatible { .. }) => usage(c),
                e => anyhow::Error::new(e).context("run failed"),
            })?;
            tracing::info!(%summary, "stopped");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Convert { schema, out, format, catalog_uri, warehouse, errors, raw_backup, max_record_size, max_records, max_bytes, memory_limit, endpoint, kms_key_id, region, jobs, from_errors, catalog, database, progress, chunk_size, inputs } => {
            let mut schema = load_schema(&schema)?;
            let limits = Limits {
                max_records,
                max_bytes: size(&max_bytes, "--max-bytes")?,
                memory_limit: size(&memory_limit, "--memory-limit")?,
                max_age: std::time::Duration::from_secs(u64::MAX / 4),
            };
            limits.check_record_size(max_record_size).map_err(|m| usage(format!("--max-record-size: {m} (--memory-limit)")))?;
            let chunk = size(&chunk_size, "--chunk-size")? as u64;
            if chunk < 1 << 20 {
                return Err(usage("--chunk-size: at least 1MiB"));
            }
            if jobs == Some(0) {
                return Err(usage("--jobs: at least 1"));
            }
            let store = StoreOptions { endpoint, region, kms_key_id };
            let iceberg = match format {
                Format::Hive if catalog == CatalogKind::Sql => return Err(usage("--catalog sql holds Iceberg tables: add --format iceberg")),
                Format::Hive => None,
                Format::Iceberg => {
                    let (ic, adapted) = iceberg_target(&schema, catalog, catalog_uri, warehouse, database.clone(), &store).await?;
                    schema = Arc::new(adapted);
                    Some(ic)
                }
            };
            let out = match (out, &iceberg) {
                (Some(_), Some(_)) => return Err(usage("--out: an Iceberg table's files go under its location in --warehouse; remove --out")),
                (Some(o), None) => if o.ends_with('/') { o } else { format!("{o}/") },
                (None, Some(ic)) => format!("{}/", ic.catalog.warehouse()),
                (None, None) => unreachable!("clap requires --out without --format"),
            };
            let errors = errors.unwrap_or_else(|| format!("{out}_errors/"));
            // the destinations are checked before anything is read
            if iceberg.is_none() {
                Sinks::open(&out, raw_backup.as_deref(), &errors, &store).map_err(usage)?;
            }
            let job = Backfill {
                schema,
                limits,
                max_record_bytes: max_record_size,
                jobs: jobs.unwrap_or_else(backfill::default_jobs),
                from_errors,
                progress,
                lake: out,
                raw: raw_backup,
                errors,
                store,
                glue_database: database.filter(|_| catalog == CatalogKind::Glue && iceberg.is_none()),
                iceberg,
                chunk,
            };
            let summary = job.run(&inputs).await.map_err(|e| match e {
                // what the command line names does not exist or cannot be listed
                e @ BackfillError::Input(_) => usage(e),
                BackfillError::Catalog(c @ lakehose::catalog::CatalogError::Incompatible { .. }) => usage(c),
                e => anyhow::Error::new(e).context("convert failed"),
            })?;
            eprintln!("lakehose convert: {summary}");
            // an input of which no record parsed is the wrong kind of file;
            // one that could not be read whole is a failure
            Ok(if summary.not_ndjson() {
                ExitCode::from(2)
            } else if !summary.problems.is_empty() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Cmd::Schema { cmd: SchemaCmd::Check { schema, against, against_glue, database, endpoint } } => {
            let new = load_schema(&schema)?;
            println!("{}: valid schema for table {} ({} columns)", schema.display(), new.table, new.columns.len());
            let against_path = against.clone();
            let (changes, what) = if let Some(old_path) = against {
                let old = load_schema(&old_path)?;
                (evolve::diff(&old, &new), old_path.display().to_string())
            } else if against_glue {
                let db = database.expect("clap requires it");
                let sdk = lakehose::aws::sdk_config(endpoint.as_deref(), None).await;
                let client = aws_sdk_glue::Client::new(&sdk);
                let t = client.get_table().database_name(&db).name(&new.table).send().await;
                let what = format!("Glue table {db}.{}", new.table);
                match t {
                    Ok(t) => {
                        let cols = t.table().and_then(|t| t.storage_descriptor()).map(|sd| sd.columns().to_vec()).unwrap_or_default();
                        let glue = lakehose::catalog::glue::glue_columns(&cols)?;
                        (lakehose::catalog::glue::diff_glue(&glue, &new), what)
                    }
                    Err(e) if e.as_service_error().is_some_and(|s| s.is_entity_not_found_exception()) => {
                        println!("{what} does not exist yet: `lakehose run` will create it from this schema");
                        return Ok(ExitCode::SUCCESS);
                    }
                    Err(e) => return Err(anyhow::anyhow!("GetTable {what}: {}", aws_sdk_glue::error::DisplayErrorContext(e))),
                }
            } else {
                return Ok(ExitCode::SUCCESS);
            };
            for c in &changes {
                let mark = if c.compatible { "ok " } else { "BAD" };
                let why = if c.reason.is_empty() { String::new() } else { format!(" — {}", c.reason) };
                println!("  {mark} {}: {}{why}", c.column, c.what);
            }
            if let Some(old_path) = &against_path {
                let old = load_schema(old_path)?;
                for s in lakehose::schema::rules::stricter(&old, &new) {
                    println!("  stricter {s}");
                }
            }
            if changes.iter().all(|c| c.compatible) {
                println!("compatible: {} change(s) against {what}", changes.len());
                Ok(ExitCode::SUCCESS)
            } else {
                println!("incompatible with {what}: files already written would not read as the new schema says");
                Ok(ExitCode::from(2))
            }
        }
        Cmd::Schema { cmd: SchemaCmd::Infer { sample, table } } => {
            let data = if sample.as_os_str() == "-" {
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut v)?;
                v
            } else {
                std::fs::read(&sample).with_context(|| format!("{}", sample.display())).map_err(usage)?
            };
            let name = table.unwrap_or_else(|| {
                sample.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "table".into())
            });
            let (text, records, skipped) = infer::infer(&name, &data);
            if records == 0 {
                return Err(usage(format!("{}: no JSON object records to infer from", sample.display())));
            }
            print!("{text}");
            eprintln!("drafted from {records} records ({skipped} lines skipped)");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn spawn_signal_handler(cancel: CancellationToken, hup: Arc<std::sync::atomic::AtomicBool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut hangup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: flushing and stopping"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: flushing and stopping"),
                _ = hangup.recv() => {
                    tracing::info!("SIGHUP: reloading the schema file");
                    hup.store(true, std::sync::atomic::Ordering::Relaxed);
                    continue;
                }
            }
            cancel.cancel();
            return;
        }
    });
}
