//! Iceberg tables (a table format: a [`Sink`](crate::write::Sink) and a
//! [`Catalog`](crate::catalog::Catalog)), through iceberg-rust's catalogs:
//! SQL (a SQLite file, the embedded default) and Glue.
//!
//! Input: the data files [`files::IcebergFiles`] wrote since the last
//! commit, and the checkpoints of the shards they came from. Output: one
//! fast-append snapshot per commit whose summary carries every shard's
//! checkpoint (`lakehose.checkpoint.<shard>`, carried forward from the
//! parent): the commit is the checkpoint. A commit is conditional twice
//! over: the catalog's compare-and-swap on the table version it was built
//! from, and, for every shard in it, the checkpoint the table holds must
//! still be the one this process last saw for that shard (restored or
//! committed). A shard that moved (another owner committed it: this
//! process is a zombie) is refused, its files left out; the others retry
//! on a reloaded table with jitter. On restore the table's checkpoint
//! wins over the lease's. Failure: [`IcebergError`] (catalog unreachable,
//! a schema the table cannot take); the run stops without checkpointing
//! and the replay commits again.

pub mod files;
mod pinned;
pub mod schema;

use crate::catalog::{CatalogError, TableFile};
use crate::checkpoint::ShardCheckpoint;
use crate::ids::ShardId;
use crate::schema::TableSchema;
use files::{IcebergFiles, Pending};
use futures::future::BoxFuture;
use iceberg::spec::{DataFile, Snapshot, TableMetadata};
use iceberg::table::Table;
use iceberg::transaction::{AddColumn, ApplyTransactionAction, Transaction};
use iceberg::{CatalogBuilder, ErrorKind, NamespaceIdent, TableCreation, TableIdent};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum IcebergError {
    #[error("{path}: {what}")]
    Unsupported { path: String, what: String },
    #[error("Iceberg: {0}")]
    Table(String),
}

impl From<iceberg::Error> for IcebergError {
    fn from(e: iceberg::Error) -> Self {
        IcebergError::Table(e.to_string())
    }
}

impl From<IcebergError> for CatalogError {
    fn from(e: IcebergError) -> Self {
        CatalogError::Iceberg(e.to_string())
    }
}

/// Where the table's catalog is.
#[derive(Debug, Clone)]
pub enum IcebergCatalog {
    /// iceberg-rust's SQL catalog on a SQLite file; `warehouse` is a
    /// directory or an `s3://` URL.
    Sql { file: std::path::PathBuf, warehouse: String, name: String },
    /// AWS Glue; `warehouse` an `s3://` URL.
    Glue { warehouse: String, endpoint: Option<String>, region: Option<String> },
}

impl IcebergCatalog {
    /// Where new tables are created.
    pub fn warehouse(&self) -> &str {
        match self {
            IcebergCatalog::Sql { warehouse, .. } | IcebergCatalog::Glue { warehouse, .. } => warehouse,
        }
    }
}

/// A warehouse as the catalog takes it: an `s3://` or `file:///` URL as
/// it is, a directory as an absolute `file://` URL (table metadata names
/// files by absolute URL); no trailing `/`. `resolve` places a relative
/// directory (next to the config file, or the working directory).
pub fn warehouse_url(w: &str, resolve: impl Fn(&str) -> std::path::PathBuf) -> Result<String, String> {
    let url = if w.starts_with("s3://") || w.starts_with("file:///") {
        w.to_string()
    } else if w.contains("://") {
        return Err(format!("{w:?} is not supported; use s3://bucket/prefix or a directory"));
    } else {
        let abs = std::path::absolute(resolve(w)).map_err(|e| format!("{w:?}: {e}"))?;
        format!("file://{}", abs.display())
    };
    Ok(url.trim_end_matches('/').to_string())
}

#[derive(Debug, Clone)]
pub struct IcebergConfig {
    pub catalog: IcebergCatalog,
    pub namespace: String,
    /// The table's name (default: the schema file's table).
    pub table: String,
    /// Whether commits carry shard checkpoints (the daemon) or only files
    /// (`convert`, whose inputs are not resumed from the table).
    pub checkpoints: bool,
}

impl IcebergConfig {
    /// The config with the table named after the schema file's table when no name was given.
    pub fn for_schema(&self, s: &TableSchema) -> IcebergConfig {
        let mut c = self.clone();
        if c.table.is_empty() {
            c.table = s.table.clone();
        }
        c
    }
}

/// Summary key of a shard's checkpoint.
const CP_PREFIX: &str = "lakehose.checkpoint.";
/// Commit attempts before a flush gives up (the run stops; a restart replays).
const MAX_ATTEMPTS: u32 = 30;

pub struct IcebergTable {
    catalog: Arc<dyn iceberg::Catalog>,
    ident: TableIdent,
    pending: Arc<Pending>,
    /// Per shard: the checkpoint text the table held when this process
    /// last saw it (restore) or committed it.
    known: HashMap<ShardId, Option<String>>,
    checkpoints: bool,
    zoned: bool,
    calls: (u64, u64),
    /// Commits made and conflicts retried, for metrics ([`Catalog::commits`](crate::catalog::Catalog::commits)).
    commits: (u64, u64),
}

impl std::fmt::Debug for IcebergTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IcebergTable({})", self.ident)
    }
}

async fn connect(c: &IcebergCatalog) -> Result<Arc<dyn iceberg::Catalog>, IcebergError> {
    let factory = Arc::new(iceberg_storage_opendal::OpenDalResolvingStorageFactory::new());
    let mut props = HashMap::new();
    let s3 = |props: &mut HashMap<String, String>, endpoint: Option<String>, region: Option<String>| {
        let env = |k: &str| std::env::var(k).ok();
        if let Some(ep) = endpoint.or_else(|| env("AWS_ENDPOINT_URL_S3")).or_else(|| env("AWS_ENDPOINT_URL")) {
            props.insert("s3.endpoint".into(), ep);
            props.insert("s3.path-style-access".into(), "true".into());
        }
        if let Some(r) = region.or_else(|| env("AWS_REGION")).or_else(|| env("AWS_DEFAULT_REGION")) {
            props.insert("s3.region".into(), r);
        }
        for (k, e) in [("s3.access-key-id", "AWS_ACCESS_KEY_ID"), ("s3.secret-access-key", "AWS_SECRET_ACCESS_KEY"), ("s3.session-token", "AWS_SESSION_TOKEN")] {
            if let Some(v) = env(e) {
                props.insert(k.into(), v);
            }
        }
    };
    Ok(match c {
        IcebergCatalog::Sql { file, warehouse, name } => {
            if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| IcebergError::Table(format!("{}: {e}", dir.display())))?;
            }
            props.insert("uri".into(), format!("sqlite:{}?mode=rwc", file.display()));
            props.insert("warehouse".into(), warehouse.clone());
            props.insert("sql_bind_style".into(), "QMark".into());
            if warehouse.starts_with("s3://") {
                s3(&mut props, None, None);
            }
            let c = iceberg_catalog_sql::SqlCatalogBuilder::default().with_storage_factory(factory).load(name, props).await?;
            Arc::new(c)
        }
        IcebergCatalog::Glue { warehouse, endpoint, region } => {
            props.insert("warehouse".into(), warehouse.clone());
            if let Some(ep) = endpoint.clone().or_else(|| std::env::var("AWS_ENDPOINT_URL").ok()) {
                props.insert("uri".into(), ep);
            }
            if let Some(r) = region.clone().or_else(|| std::env::var("AWS_REGION").ok()) {
                props.insert("region_name".into(), r);
            }
            for (k, e) in [("aws_access_key_id", "AWS_ACCESS_KEY_ID"), ("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY"), ("aws_session_token", "AWS_SESSION_TOKEN")] {
                if let Ok(v) = std::env::var(e) {
                    props.insert(k.into(), v);
                }
            }
            s3(&mut props, endpoint.clone(), region.clone());
            let c = iceberg_catalog_glue::GlueCatalogBuilder::default().with_storage_factory(factory).load("glue", props).await?;
            Arc::new(c)
        }
    })
}

/// Sleeps `base_ms` plus a random part under `spread_ms` before a retry:
/// writers that conflicted do not meet again in step.
async fn jitter(base_ms: u64, spread_ms: u64) {
    let ms = base_ms + (uuid::Uuid::new_v4().as_u128() % u128::from(spread_ms.max(1))) as u64;
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Whether a failed commit met another writer's: the catalog's
/// compare-and-swap (or [`pinned`]'s) failed, or SQLite was busy with
/// another process's write; the commit is rebuilt on a reloaded table.
fn conflict(e: &iceberg::Error) -> bool {
    e.kind() == ErrorKind::CatalogCommitConflicts || e.to_string().contains("database is locked")
}

/// The checkpoints of the newest snapshot (the current one or its nearest
/// ancestor) that carries any: snapshots other writers make (compaction)
/// carry none and are passed over.
fn checkpoints_of(m: &TableMetadata) -> HashMap<String, String> {
    let mut at: Option<&Arc<Snapshot>> = m.current_snapshot();
    while let Some(s) = at {
        let cps: HashMap<String, String> =
            s.summary().additional_properties.iter().filter(|(k, _)| k.starts_with(CP_PREFIX)).map(|(k, v)| (k.clone(), v.clone())).collect();
        if !cps.is_empty() {
            return cps;
        }
        at = s.parent_snapshot_id().and_then(|id| m.snapshot_by_id(id));
    }
    HashMap::new()
}

impl IcebergTable {
    /// Connects, creates the namespace and the table if missing (schema,
    /// partition spec), adds the schema file's new fields to an existing
    /// table, and returns the table, its sink (writing under `data/` of the
    /// table's location) and the schema adapted for writing its files.
    pub async fn open(cfg: &IcebergConfig, s: &TableSchema, store: &crate::store::StoreOptions) -> Result<(IcebergTable, IcebergFiles, TableSchema), IcebergError> {
        let catalog = connect(&cfg.catalog).await?;
        // iceberg-catalog-glue cannot give Glue a timestamptz column (Athena's own
        // Iceberg DDL makes `timestamp` ones too): UTC values in `timestamp` there
        let zoned = !matches!(cfg.catalog, IcebergCatalog::Glue { .. });
        let ns = NamespaceIdent::new(cfg.namespace.clone());
        if !catalog.namespace_exists(&ns).await? {
            if let Err(e) = catalog.create_namespace(&ns, HashMap::new()).await {
                if !catalog.namespace_exists(&ns).await? {
                    return Err(e.into());
                }
            }
        }
        let ident = TableIdent::new(ns.clone(), cfg.table.clone());
        if !catalog.table_exists(&ident).await? {
            let creation = TableCreation::builder()
                .name(cfg.table.clone())
                .schema(schema::iceberg_schema(s, None, zoned)?)
                .partition_spec(schema::partition_spec(s)?)
                .properties([
                    ("commit.retry.num-retries".to_string(), "0".to_string()),
                    ("write.format.default".to_string(), "parquet".to_string()),
                    ("write.parquet.compression-codec".to_string(), "snappy".to_string()),
                ])
                .build();
            // another process may create it first
            if let Err(e) = catalog.create_table(&ns, creation).await {
                if !catalog.table_exists(&ident).await? {
                    return Err(e.into());
                }
            }
        }
        let mut table = IcebergTable {
            catalog,
            ident,
            pending: Arc::new(Pending { files: Mutex::new(Vec::new()), schema: Mutex::new((Arc::new(iceberg::spec::Schema::builder().build()?), 0)) }),
            known: HashMap::new(),
            checkpoints: cfg.checkpoints,
            zoned,
            calls: (0, 0),
            commits: (0, 0),
        };
        let t = table.evolve(s).await?;
        let spec = schema::partition_spec(s)?;
        let current = t.metadata().default_partition_spec();
        let same = current.fields().len() == spec.fields().len()
            && current.fields().iter().zip(spec.fields()).all(|(a, b)| a.name == b.name && a.transform == b.transform);
        if !same {
            return Err(IcebergError::Unsupported {
                path: s.path.clone(),
                what: format!("partition: table {} is partitioned as {:?}, the schema file asks for {:?}; change the table's spec by hand or the schema file back", table.ident,
                    current.fields().iter().map(|f| format!("{}({})", f.transform, f.name)).collect::<Vec<_>>(),
                    spec.fields().iter().map(|f| format!("{}({})", f.transform, f.name)).collect::<Vec<_>>()),
            });
        }
        let data_url = format!("{}/data", t.metadata().location().trim_end_matches('/'));
        let sink = IcebergFiles {
            store: crate::store::Store::open(&data_url, store).map_err(|e| IcebergError::Table(e.to_string()))?,
            data_url,
            pending: table.pending.clone(),
        };
        let adapted = schema::adapt(s.clone(), t.metadata().current_schema())?;
        Ok((table, sink, adapted))
    }

    /// Adds the schema file's fields the table lacks (optional, fresh ids)
    /// and returns the table as it is then. A field whose type differs is
    /// refused: iceberg-rust's schema update adds and deletes columns only.
    async fn evolve(&mut self, s: &TableSchema) -> Result<Table, IcebergError> {
        let t = self.catalog.load_table(&self.ident).await?;
        let have = t.metadata().current_schema().clone();
        let want = schema::iceberg_schema(s, Some(&have), self.zoned)?;
        let (adds, changed) = schema::additions(&want, &have);
        if !changed.is_empty() {
            return Err(IcebergError::Unsupported {
                path: s.path.clone(),
                what: format!("the Iceberg table {} has other types for {}; iceberg-rust 0.10 cannot change a column's type (widening included): keep the type, or add a new column", self.ident, changed.join(", ")),
            });
        }
        let t = if adds.is_empty() {
            t
        } else {
            let tx = Transaction::new(&t);
            let mut action = tx.update_schema();
            for (parent, field) in adds {
                action = action.add_column(match parent {
                    None => AddColumn::optional(&field.name, (*field.field_type).clone()),
                    Some(p) => AddColumn::builder().parent(p).name(field.name.clone()).field_type((*field.field_type).clone()).build(),
                });
            }
            action.apply(tx)?.commit(&*self.catalog).await?
        };
        *self.pending.schema.lock().unwrap() = (t.metadata().current_schema().clone(), t.metadata().default_partition_spec_id());
        Ok(t)
    }

    /// The schema file as this table's files are written.
    pub async fn update_schema(&mut self, s: &mut TableSchema) -> Result<(), IcebergError> {
        let t = self.evolve(s).await?;
        *s = schema::adapt(s.clone(), t.metadata().current_schema())?;
        Ok(())
    }

    /// The checkpoint the table holds for `shard`; remembered as what a
    /// commit of the shard expects to find.
    pub async fn stored(&mut self, shard: &ShardId) -> Result<Option<ShardCheckpoint>, IcebergError> {
        if !self.checkpoints {
            return Ok(None);
        }
        let t = self.catalog.load_table(&self.ident).await?;
        let text = checkpoints_of(t.metadata()).remove(&format!("{CP_PREFIX}{shard}"));
        let cp = text.as_deref().map(serde_json::from_str::<ShardCheckpoint>).transpose().map_err(|e| IcebergError::Table(format!("checkpoint of {shard} in table {}: {e}", self.ident)))?;
        self.known.insert(shard.clone(), text);
        Ok(cp)
    }

    /// Commits the files written since the last commit with the shards'
    /// checkpoints; returns the shards refused (moved: their files are left
    /// out, never committed).
    pub async fn commit(&mut self, cps: &[(ShardId, ShardCheckpoint)]) -> Result<Vec<ShardId>, IcebergError> {
        let mut files: Vec<(ShardId, DataFile)> = std::mem::take(&mut *self.pending.files.lock().unwrap());
        let mut cps: Vec<(ShardId, String)> = if self.checkpoints {
            cps.iter().map(|(s, cp)| (s.clone(), serde_json::to_string(cp).expect("a checkpoint serialises"))).collect()
        } else {
            Vec::new()
        };
        if self.checkpoints {
            // files of a shard whose checkpoint does not ride in this commit
            // (given up mid-flush: fenced, or its lease lost) are orphans; its
            // next owner replays those records from the table's checkpoint
            files.retain(|(f, _)| cps.iter().any(|(s, _)| s == f));
        }
        // a shard whose checkpoint the table already holds needs no commit
        // (unless its files ride in this one)
        cps.retain(|(s, cp)| self.known.get(s).and_then(Option::as_deref) != Some(cp.as_str()) || files.iter().any(|(f, _)| f == s));
        let mut refused = Vec::new();
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                jitter(20, 50 * u64::from(attempt.min(10))).await;
            }
            self.calls.0 += 1;
            let t = match self.catalog.load_table(&self.ident).await {
                Ok(t) => t,
                Err(e) => {
                    self.calls.1 += 1;
                    return Err(e.into());
                }
            };
            let held = checkpoints_of(t.metadata());
            let moved: Vec<ShardId> = cps
                .iter()
                .filter(|(s, _)| held.get(&format!("{CP_PREFIX}{s}")) != self.known.get(s).and_then(Option::as_ref))
                .map(|(s, _)| s.clone())
                .collect();
            for s in &moved {
                tracing::warn!(shard = %s, table = %self.ident, "the table holds another checkpoint for this shard: another owner committed it; this process's records of it are not committed");
                cps.retain(|(c, _)| c != s);
                files.retain(|(c, _)| c != s);
            }
            refused.extend(moved);
            if cps.is_empty() && files.is_empty() {
                return Ok(refused);
            }
            let mut props = held;
            props.extend(cps.iter().map(|(s, cp)| (format!("{CP_PREFIX}{s}"), cp.clone())));
            let tx = Transaction::new(&t);
            let action = tx.fast_append().add_data_files(files.iter().map(|(_, f)| f.clone())).set_snapshot_properties(props);
            let pinned = pinned::Pinned { inner: &*self.catalog, at: t.metadata_location().unwrap_or_default().to_string() };
            match action.apply(tx)?.commit(&pinned).await {
                Ok(_) => {
                    for (s, cp) in cps {
                        self.known.insert(s, Some(cp));
                    }
                    self.commits.0 += 1;
                    return Ok(refused);
                }
                Err(e) if conflict(&e) => {
                    self.calls.1 += 1;
                    self.commits.1 += 1;
                    tracing::debug!(table = %self.ident, error = %e, "commit conflict: reloading");
                }
                Err(e) => {
                    self.calls.1 += 1;
                    return Err(e.into());
                }
            }
        }
        Err(IcebergError::Table(format!("table {}: {MAX_ATTEMPTS} commit attempts conflicted; the run stops and a restart replays", self.ident)))
    }
}

impl IcebergTable {
    /// Expires snapshots older than `older_than_ms` (epoch ms), keeping at
    /// least the `retain_last` newest; returns the snapshot counts before
    /// and after. Metadata only: data files the kept snapshots list stay,
    /// manifests and files no snapshot references any more are left for an
    /// orphan-file cleanup. A commit racing a writer retries.
    pub async fn expire_snapshots(&self, older_than_ms: i64, retain_last: u32) -> Result<(usize, usize), IcebergError> {
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                jitter(50, 200).await;
            }
            let t = self.catalog.load_table(&self.ident).await?;
            let before = t.metadata().snapshots().count();
            let tx = Transaction::new(&t);
            let action = tx.expire_snapshots().expire_older_than_ms(older_than_ms).retain_last(retain_last.max(1) as usize);
            match action.apply(tx)?.commit(&*self.catalog).await {
                Ok(t) => return Ok((before, t.metadata().snapshots().count())),
                Err(e) if e.kind() == ErrorKind::CatalogCommitConflicts => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(IcebergError::Table(format!("table {}: {MAX_ATTEMPTS} attempts to expire snapshots conflicted with writers", self.ident)))
    }
}

impl crate::catalog::Catalog for IcebergTable {
    /// Files wait for the commit: nothing to register per upload group.
    fn register<'a>(&'a mut self, _: &'a [TableFile]) -> BoxFuture<'a, Result<(), CatalogError>> {
        Box::pin(async { Ok(()) })
    }
    fn update_schema<'a>(&'a mut self, s: &'a mut TableSchema) -> BoxFuture<'a, Result<(), CatalogError>> {
        Box::pin(async move { Ok(IcebergTable::update_schema(self, s).await?) })
    }
    fn adapt(&self, s: TableSchema) -> Result<TableSchema, CatalogError> {
        let current = self.pending.schema.lock().unwrap().0.clone();
        // fields the table lacks yet get their ids from the update that adds them
        let ids = schema::iceberg_schema(&s, Some(&current), self.zoned)?;
        Ok(schema::adapt(s, &ids)?)
    }
    fn commit<'a>(&'a mut self, cps: &'a [(ShardId, ShardCheckpoint)]) -> BoxFuture<'a, Result<Vec<ShardId>, CatalogError>> {
        Box::pin(async move { Ok(IcebergTable::commit(self, cps).await?) })
    }
    fn stored<'a>(&'a mut self, shard: &'a ShardId) -> BoxFuture<'a, Result<Option<ShardCheckpoint>, CatalogError>> {
        Box::pin(async move { Ok(IcebergTable::stored(self, shard).await?) })
    }
    fn calls(&self) -> (u64, u64) {
        self.calls
    }
    fn commits(&self) -> (u64, u64) {
        self.commits
    }
}
