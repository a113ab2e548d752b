//! Glue catalog: the table from the schema file, partitions as files land.
//!
//! Input: the validated schema, the lake URL, a database name. Output: the
//! Glue database and an EXTERNAL_TABLE (Parquet SerDe and formats,
//! `classification=parquet`, string partition keys, column comments from
//! the schema file, optional Athena partition projection); each new
//! partition prefix registered with BatchCreatePartition (≤ 100 per call,
//! AlreadyExists counts as success) with the table's storage descriptor at
//! the partition's location. Known partitions are cached, so steady state
//! makes no Glue calls. Failure: an existing table whose columns cannot
//! become the schema's is refused ([`CatalogError::Incompatible`], naming
//! each column); Glue errors are retried with backoff and jitter, then
//! returned.

use super::{Catalog, CatalogError, Known, TableFile};
use futures::future::BoxFuture;
use crate::partition::prefix_values;
use crate::retry::backoff;
use crate::schema::evolve::{type_change, Change};
use crate::schema::{ColType, Granularity, TableSchema, EXTRA_COLUMN};
use aws_sdk_glue::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_glue::types::{Column, DatabaseInput, PartitionInput, SerDeInfo, StorageDescriptor, TableInput};
use std::time::Instant;

pub const INPUT_FORMAT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat";
pub const OUTPUT_FORMAT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat";
pub const SERDE: &str = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe";
const ATTEMPTS: u32 = 6;

pub struct GlueCatalog {
    client: aws_sdk_glue::Client,
    database: String,
    table: String,
    location: String,
    projection: bool,
    sd: StorageDescriptor,
    known: Known,
    /// Glue calls and failed calls, for metrics.
    calls: u64,
    errors: u64,
}

fn gerr(what: &str, e: impl std::error::Error) -> CatalogError {
    CatalogError::Other(format!("{what}: {}", DisplayErrorContext(e)))
}

/// The partition key names: the Hive names of the layout, or `partition_0…`
/// (the Glue crawler's names) for a custom layout of plain segments.
pub fn partition_keys(s: &TableSchema) -> Vec<String> {
    match &s.partition.hive_columns {
        Some(c) => c.clone(),
        None => {
            let segs = prefix_values(&sample_prefix(s)).len().max(1);
            (0..segs).map(|i| format!("partition_{i}")).collect()
        }
    }
}

fn sample_prefix(s: &TableSchema) -> String {
    let mut out = String::new();
    let keys: Vec<Option<std::borrow::Cow<str>>> = s.partition.keys.iter().map(|_| Some("x".into())).collect();
    crate::partition::render(&s.partition, 0, &keys, &mut out);
    out
}

/// The table's columns as Glue sees them: (name, type, required, comment),
/// with `_extra` when unknown keys are kept.
fn table_columns(s: &TableSchema) -> Vec<(String, ColType, bool, Option<String>)> {
    let mut out: Vec<_> = s.columns.iter().map(|c| (c.name.clone(), c.ty.clone(), c.required, c.comment.clone())).collect();
    if s.unknown_keys == crate::schema::UnknownKeys::Keep {
        out.push((EXTRA_COLUMN.to_string(), ColType::String, false, Some("unknown JSON keys of the record, as a JSON object".into())));
    }
    out
}

fn columns(s: &TableSchema) -> Vec<Column> {
    table_columns(s)
        .into_iter()
        .map(|(name, ty, _, comment)| Column::builder().name(name).r#type(ty.glue()).set_comment(comment).build().expect("name and type set"))
        .collect()
}

fn storage(s: &TableSchema, location: &str) -> StorageDescriptor {
    StorageDescriptor::builder()
        .set_columns(Some(columns(s)))
        .location(location)
        .input_format(INPUT_FORMAT)
        .output_format(OUTPUT_FORMAT)
        .compressed(true)
        .serde_info(SerDeInfo::builder().serialization_library(SERDE).parameters("serialization.format", "1").build())
        .build()
}

/// Athena partition projection properties matching the layout.
fn projection_params(s: &TableSchema, location: &str) -> Vec<(String, String)> {
    let keys = partition_keys(s);
    let mut out = vec![("projection.enabled".to_string(), "true".to_string())];
    let mut template = location.to_string();
    let time_names: Vec<&str> = match s.partition.granularity {
        Granularity::Day => vec!["dt"],
        Granularity::Hour => vec!["dt", "hr"],
    };
    for k in &keys {
        match k.as_str() {
            "dt" if time_names.contains(&"dt") => {
                out.push(("projection.dt.type".into(), "date".into()));
                out.push(("projection.dt.format".into(), "yyyy-MM-dd".into()));
                out.push(("projection.dt.range".into(), "2020-01-01,NOW".into()));
                out.push(("projection.dt.interval".into(), "1".into()));
                out.push(("projection.dt.interval.unit".into(), "DAYS".into()));
            }
            "hr" if time_names.contains(&"hr") => {
                out.push(("projection.hr.type".into(), "integer".into()));
                out.push(("projection.hr.range".into(), "0,23".into()));
                out.push(("projection.hr.digits".into(), "2".into()));
            }
            other => out.push((format!("projection.{other}.type"), "injected".into())),
        }
        template.push_str(&format!("{k}=${{{k}}}/"));
    }
    out.push(("storage.location.template".into(), template));
    out
}

/// How the Glue table's columns differ from the schema's; incompatible
/// changes carry the reason. Glue has no `required`, so it is not compared.
pub fn diff_glue(glue: &[(String, ColType)], new: &TableSchema) -> Vec<Change> {
    let mut out = Vec::new();
    let cols = table_columns(new);
    for (name, ty) in glue {
        match cols.iter().find(|c| &c.0 == name) {
            None => out.push(Change {
                column: name.clone(),
                what: format!("removed ({})", ty.glue()),
                compatible: false,
                reason: "the Glue table has it and existing files may hold it; keep the column".into(),
            }),
            Some(c) if &c.1 != ty => {
                let r = type_change(ty, &c.1);
                out.push(Change {
                    column: name.clone(),
                    what: format!("type {} → {}", ty.glue(), c.1.glue()),
                    compatible: r.is_none(),
                    reason: r.unwrap_or_default(),
                });
            }
            Some(_) => {}
        }
    }
    for (name, ty, required, _) in &cols {
        if !glue.iter().any(|(n, _)| n == name) {
            let r = required.then(|| "a new column cannot be required: files already written have no value for it".to_string());
            out.push(Change { column: name.clone(), what: format!("added ({})", ty.glue()), compatible: r.is_none(), reason: r.unwrap_or_default() });
        }
    }
    out
}

/// Glue columns as schema types (unknown spellings are reported).
pub fn glue_columns(cols: &[Column]) -> Result<Vec<(String, ColType)>, CatalogError> {
    cols.iter()
        .map(|c| {
            let t = c.r#type().unwrap_or("string");
            ColType::parse(t).map(|ty| (c.name().to_string(), ty)).map_err(|e| CatalogError::Other(format!("Glue column {}: type {t:?}: {}", c.name(), e.message)))
        })
        .collect()
}

impl GlueCatalog {
    /// Connects, creates the database and table if absent, and applies
    /// compatible differences of an existing table.
    pub async fn open(sdk: &aws_config::SdkConfig, database: &str, schema: &TableSchema, location: &str, projection: bool) -> Result<GlueCatalog, CatalogError> {
        let client = aws_sdk_glue::Client::new(sdk);
        let mut c = GlueCatalog {
            client,
            database: database.to_string(),
            table: schema.table.clone(),
            location: location.to_string(),
            projection,
            sd: storage(schema, location),
            known: Known::default(),
            calls: 0,
            errors: 0,
        };
        c.ensure_database().await?;
        c.ensure_table(schema).await?;
        Ok(c)
    }

    async fn ensure_database(&mut self) -> Result<(), CatalogError> {
        self.calls += 1;
        let r = self.client.create_database().database_input(DatabaseInput::builder().name(&self.database).description("created by lakehose").build().expect("name set")).send().await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_already_exists_exception()) => Ok(()),
            Err(e) => Err(gerr(&format!("CreateDatabase {}", self.database), e)),
        }
    }

    fn table_input(&self, s: &TableSchema) -> TableInput {
        let mut t = TableInput::builder()
            .name(&s.table)
            .table_type("EXTERNAL_TABLE")
            .set_description(s.description.clone())
            .parameters("classification", "parquet")
            .parameters("EXTERNAL", "TRUE")
            .parameters("parquet.compression", "SNAPPY")
            .parameters("lakehose.schema_version", &s.version)
            .storage_descriptor(storage(s, &self.location))
            .set_partition_keys(Some(partition_keys(s).into_iter().map(|k| Column::builder().name(k).r#type("string").build().expect("set")).collect()));
        if self.projection {
            for (k, v) in projection_params(s, &self.location) {
                t = t.parameters(k, v);
            }
        }
        t.build().expect("name set")
    }

    /// The table's current columns, or None if it does not exist.
    pub async fn current_columns(&mut self) -> Result<Option<Vec<(String, ColType)>>, CatalogError> {
        self.calls += 1;
        match self.client.get_table().database_name(&self.database).name(&self.table).send().await {
            Ok(r) => {
                let cols = r.table().and_then(|t| t.storage_descriptor()).map(|sd| sd.columns().to_vec()).unwrap_or_default();
                Ok(Some(glue_columns(&cols)?))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_entity_not_found_exception()) => Ok(None),
            Err(e) => Err(gerr(&format!("GetTable {}.{}", self.database, self.table), e)),
        }
    }

    async fn ensure_table(&mut self, s: &TableSchema) -> Result<(), CatalogError> {
        match self.current_columns().await? {
            None => {
                self.calls += 1;
                let r = self.client.create_table().database_name(&self.database).table_input(self.table_input(s)).send().await;
                match r {
                    Ok(_) => tracing::info!(database = %self.database, table = %s.table, "Glue table created"),
                    Err(e) if e.as_service_error().is_some_and(|x| x.is_already_exists_exception()) => {}
                    Err(e) => return Err(gerr(&format!("CreateTable {}.{}", self.database, s.table), e)),
                }
                Ok(())
            }
            Some(cols) => self.apply(&cols, s).await,
        }
    }

    /// Brings the table to schema `s` if every difference is compatible.
    async fn apply(&mut self, cols: &[(String, ColType)], s: &TableSchema) -> Result<(), CatalogError> {
        let changes = diff_glue(cols, s);
        let bad: Vec<&Change> = changes.iter().filter(|c| !c.compatible).collect();
        if !bad.is_empty() {
            return Err(CatalogError::Incompatible {
                table: format!("{}.{}", self.database, s.table),
                changes: bad.iter().map(|c| format!("{}: {} ({})", c.column, c.what, c.reason)).collect(),
            });
        }
        self.calls += 1;
        self.client
            .update_table()
            .database_name(&self.database)
            .table_input(self.table_input(s))
            .send()
            .await
            .map_err(|e| gerr(&format!("UpdateTable {}.{}", self.database, s.table), e))?;
        if !changes.is_empty() {
            tracing::info!(table = %s.table, changes = changes.len(), version = %s.version, "Glue table updated");
        }
        self.sd = storage(s, &self.location);
        Ok(())
    }

    /// Updates the table to a new (already checked) schema.
    async fn update(&mut self, s: &TableSchema) -> Result<(), CatalogError> {
        let cols = self.current_columns().await?.unwrap_or_default();
        self.apply(&cols, s).await
    }

    /// Registers the partitions of `files` not known yet.
    async fn register_files(&mut self, files: &[TableFile]) -> Result<(), CatalogError> {
        let new = self.known.new_ones(files.iter().map(|f| f.prefix.as_str()));
        if new.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        for chunk in new.chunks(100) {
            let mut todo: Vec<&String> = chunk.iter().collect();
            let mut attempt = 0;
            while !todo.is_empty() {
                let inputs: Vec<PartitionInput> = todo
                    .iter()
                    .map(|p| {
                        let mut sd = self.sd.clone();
                        sd.location = Some(format!("{}{}", self.location, p));
                        PartitionInput::builder().set_values(Some(prefix_values(p))).storage_descriptor(sd).build()
                    })
                    .collect();
                self.calls += 1;
                let r = self.client.batch_create_partition().database_name(&self.database).table_name(&self.table).set_partition_input_list(Some(inputs)).send().await;
                let failed: Vec<Vec<String>> = match r {
                    Ok(out) => out
                        .errors()
                        .iter()
                        .filter(|e| e.error_detail().and_then(|d| d.error_code()) != Some("AlreadyExistsException"))
                        .map(|e| e.partition_values().to_vec())
                        .collect(),
                    Err(e) => {
                        self.errors += 1;
                        attempt += 1;
                        let code = e.as_service_error().and_then(|s| s.code()).unwrap_or("").to_string();
                        if attempt >= ATTEMPTS {
                            return Err(gerr(&format!("BatchCreatePartition {}.{}", self.database, self.table), e));
                        }
                        tracing::warn!(code, attempt, "BatchCreatePartition failed; retrying");
                        tokio::time::sleep(backoff(attempt)).await;
                        continue;
                    }
                };
                if failed.is_empty() {
                    break;
                }
                self.errors += 1;
                attempt += 1;
                if attempt >= ATTEMPTS {
                    return Err(CatalogError::Other(format!("BatchCreatePartition {}.{}: {} partition(s) kept failing", self.database, self.table, failed.len())));
                }
                todo.retain(|p| failed.contains(&prefix_values(p)));
                tokio::time::sleep(backoff(attempt)).await;
            }
            self.known.insert_all(chunk);
        }
        tracing::debug!(partitions = new.len(), ms = started.elapsed().as_millis() as u64, "partitions registered");
        Ok(())
    }
}

impl Catalog for GlueCatalog {
    fn register<'a>(&'a mut self, files: &'a [TableFile]) -> BoxFuture<'a, Result<(), CatalogError>> {
        Box::pin(self.register_files(files))
    }
    fn update_schema<'a>(&'a mut self, s: &'a mut TableSchema) -> BoxFuture<'a, Result<(), CatalogError>> {
        Box::pin(self.update(s))
    }
    fn calls(&self) -> (u64, u64) {
        (self.calls, self.errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(extra: &str) -> TableSchema {
        TableSchema::parse(
            "t.toml",
            &format!("table = \"t\"\n[[columns]]\nname = \"id\"\ntype = \"int\"\n[[columns]]\nname = \"ts\"\ntype = \"timestamp\"\n[[columns]]\nname = \"kind\"\ntype = \"string\"\n{extra}[partition]\ntime = {{ column = \"ts\", granularity = \"hour\" }}\nkeys = [\"kind\"]\n"),
        )
        .unwrap()
    }

    #[test]
    fn glue_diff_accepts_widening_and_new_nullable_columns_only() {
        let glue = vec![("id".to_string(), ColType::Int), ("ts".into(), ColType::Timestamp), ("kind".into(), ColType::String)];
        let wider = schema("").columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        assert_eq!(wider, ["id", "ts", "kind"]);
        let d = diff_glue(&glue, &schema("[[columns]]\nname = \"extra\"\ntype = \"string\"\n"));
        assert!(d.len() == 1 && d[0].compatible && d[0].what == "added (string)", "{d:?}");
        let d = diff_glue(&glue, &schema("[[columns]]\nname = \"need\"\ntype = \"string\"\nrequired = true\n"));
        assert!(!d[0].compatible && d[0].reason.contains("cannot be required"), "{d:?}");
        let glue_narrow = vec![("id".to_string(), ColType::BigInt), ("ts".into(), ColType::Timestamp), ("kind".into(), ColType::String), ("gone".into(), ColType::String)];
        let d = diff_glue(&glue_narrow, &schema(""));
        let bad: Vec<&str> = d.iter().filter(|c| !c.compatible).map(|c| c.column.as_str()).collect();
        assert_eq!(bad, ["id", "gone"], "{d:?}");
    }

    #[test]
    fn projection_matches_the_hive_layout() {
        let s = schema("");
        assert_eq!(partition_keys(&s), ["dt", "hr", "kind"]);
        let p: std::collections::BTreeMap<String, String> = projection_params(&s, "s3://b/t/").into_iter().collect();
        assert_eq!(p["projection.enabled"], "true");
        assert_eq!(p["projection.dt.type"], "date");
        assert_eq!(p["projection.dt.format"], "yyyy-MM-dd");
        assert_eq!(p["projection.hr.range"], "0,23");
        assert_eq!(p["projection.hr.digits"], "2");
        assert_eq!(p["projection.kind.type"], "injected");
        assert_eq!(p["storage.location.template"], "s3://b/t/dt=${dt}/hr=${hr}/kind=${kind}/");
        // a custom layout of plain segments gets the crawler's names
        let mut custom = schema("");
        custom.partition.hive_columns = None;
        assert_eq!(partition_keys(&custom), ["partition_0", "partition_1", "partition_2"]);
    }
}
