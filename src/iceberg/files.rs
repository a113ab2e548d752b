//! Iceberg data files: sealed table buffers → Parquet files under the
//! table's `data/` → [`DataFile`] entries waiting for the next commit.
//!
//! Input: a sealed table buffer whose prefix is the Iceberg partition path
//! ([`super::schema::adapt`]). Output: one snappy Parquet file written by
//! our own writer (field ids and microsecond timestamps from the schema's
//! `file_arrow`), named `<partition path><shard>-<first position>-<uuid>.parquet`
//! — unique per attempt, so a replay or a zombie never replaces a file a
//! snapshot already lists — and its [`DataFile`] (partition tuple, record
//! count, size, per-field sizes, value and null counts, lower/upper bounds
//! from the footer's statistics) queued in [`Pending`] for the table commit.
//! A file no commit lists is an orphan, never rows. Failure: [`WriteError`].

use super::schema::partition_of;
use crate::buffers::{Sealed, SealedBody};
use crate::ids::ShardId;
use crate::schema::TableSchema;
use crate::store::Store;
use crate::write::{file_meta, Sink, WriteError, Written};
use futures::future::BoxFuture;
use iceberg::spec::{DataContentType, DataFile, DataFileBuilder, DataFileFormat, Datum, PrimitiveType, Schema, Type};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What the sink and the table's commit share.
pub struct Pending {
    /// Data files written since the last commit, by shard.
    pub files: Mutex<Vec<(ShardId, DataFile)>>,
    /// The table's current schema (types of the field ids) and partition spec id.
    pub schema: Mutex<(Arc<Schema>, i32)>,
}

/// The Iceberg table format's [`Sink`]: `store` is the table's `data/`
/// location, `data_url` its URL as the table metadata names files.
pub struct IcebergFiles {
    pub store: Store,
    pub data_url: String,
    pub pending: Arc<Pending>,
}

impl Sink for IcebergFiles {
    fn write<'a>(&'a self, s: &'a mut Sealed, schema: &'a TableSchema) -> BoxFuture<'a, Result<Written, WriteError>> {
        Box::pin(async move {
            let started = Instant::now();
            let key = format!("{}{}-{}-{}.parquet", s.prefix, s.shard, s.first.key_part(), uuid::Uuid::new_v4().simple());
            let SealedBody::Rows(rows) = std::mem::take(&mut s.body) else {
                unreachable!("a table buffer holds rows")
            };
            let (payload, footer) = rows.finish(schema, file_meta(s, schema))?;
            let size = payload.content_length() as u64;
            let partition = partition_of(schema, &s.prefix).map_err(|e| WriteError::Assembly(e.to_string()))?;
            let (table, spec_id) = self.pending.schema.lock().unwrap().clone();
            let file = data_file(format!("{}/{key}", self.data_url.trim_end_matches('/')), size, &footer, &table, spec_id, partition)
                .map_err(WriteError::Assembly)?;
            let encode_time = started.elapsed();
            self.store.put(&key, payload).await?;
            self.pending.files.lock().unwrap().push((s.shard.clone(), file));
            Ok(Written { key, bytes: size, encode_time })
        })
    }
}

/// The [`DataFile`] of a Parquet file from its footer: per field id the
/// compressed size, value count and null count; lower/upper bounds of the
/// leaves outside lists and maps whose every row group has statistics.
pub fn data_file(
    path: String,
    size: u64,
    footer: &ParquetMetaData,
    table: &Schema,
    spec_id: i32,
    partition: iceberg::spec::Struct,
) -> Result<DataFile, String> {
    let mut sizes: HashMap<i32, u64> = HashMap::new();
    let mut values: HashMap<i32, u64> = HashMap::new();
    let mut nulls: HashMap<i32, u64> = HashMap::new();
    let mut lower: HashMap<i32, Datum> = HashMap::new();
    let mut upper: HashMap<i32, Datum> = HashMap::new();
    let mut unbounded: Vec<i32> = Vec::new();
    let mut offsets = Vec::new();
    for rg in footer.row_groups() {
        offsets.extend(rg.columns().first().map(|c| c.data_page_offset().min(c.dictionary_page_offset().unwrap_or(i64::MAX))));
        for cc in rg.columns() {
            let info = cc.column_descr().self_type().get_basic_info();
            if !info.has_id() {
                return Err(format!("column {} has no field id; this is a bug, please report it", cc.column_path()));
            }
            let id = info.id();
            *sizes.entry(id).or_default() += cc.compressed_size() as u64;
            *values.entry(id).or_default() += cc.num_values() as u64;
            let stats = cc.statistics();
            if let Some(n) = stats.and_then(Statistics::null_count_opt) {
                *nulls.entry(id).or_default() += n;
            }
            let ty = table.field_by_id(id).map(|f| (*f.field_type).clone());
            let bounds = match (stats, &ty) {
                (Some(st), Some(Type::Primitive(p))) if cc.column_descr().max_rep_level() == 0 => bounds(st, p),
                _ => None,
            };
            match bounds {
                Some((lo, hi)) if !unbounded.contains(&id) => {
                    let l = lower.entry(id).or_insert_with(|| lo.clone());
                    if lo < *l {
                        *l = lo;
                    }
                    let u = upper.entry(id).or_insert_with(|| hi.clone());
                    if hi > *u {
                        *u = hi;
                    }
                }
                Some(_) => {}
                None => {
                    // a row group without bounds: none for the file
                    unbounded.push(id);
                    lower.remove(&id);
                    upper.remove(&id);
                }
            }
        }
    }
    DataFileBuilder::default()
        .content(DataContentType::Data)
        .file_path(path)
        .file_format(DataFileFormat::Parquet)
        .partition(partition)
        .partition_spec_id(spec_id)
        .record_count(footer.file_metadata().num_rows() as u64)
        .file_size_in_bytes(size)
        .column_sizes(sizes)
        .value_counts(values)
        .null_value_counts(nulls)
        .lower_bounds(lower)
        .upper_bounds(upper)
        .split_offsets(Some(offsets))
        .build()
        .map_err(|e| e.to_string())
}

/// A chunk's (min, max) as Iceberg values of type `p`; None when it has
/// none, or for types whose bounds are not kept (decimals).
fn bounds(st: &Statistics, p: &PrimitiveType) -> Option<(Datum, Datum)> {
    fn pair<T, F: Fn(&T) -> Option<Datum>>(min: Option<&T>, max: Option<&T>, f: F) -> Option<(Datum, Datum)> {
        Some((f(min?)?, f(max?)?))
    }
    match (st, p) {
        (Statistics::Boolean(v), PrimitiveType::Boolean) => pair(v.min_opt(), v.max_opt(), |x| Some(Datum::bool(*x))),
        (Statistics::Int32(v), PrimitiveType::Int) => pair(v.min_opt(), v.max_opt(), |x| Some(Datum::int(*x))),
        (Statistics::Int32(v), PrimitiveType::Date) => pair(v.min_opt(), v.max_opt(), |x| Some(Datum::date(*x))),
        (Statistics::Int64(v), PrimitiveType::Long) => pair(v.min_opt(), v.max_opt(), |x| Some(Datum::long(*x))),
        (Statistics::Int64(v), PrimitiveType::Timestamptz) => pair(v.min_opt(), v.max_opt(), |x| Some(Datum::timestamptz_micros(*x))),
        (Statistics::Float(v), PrimitiveType::Float) if v.min_opt().is_some_and(|x| !x.is_nan()) => {
            pair(v.min_opt(), v.max_opt(), |x| Some(Datum::float(*x)))
        }
        (Statistics::Double(v), PrimitiveType::Double) if v.min_opt().is_some_and(|x| !x.is_nan()) => {
            pair(v.min_opt(), v.max_opt(), |x| Some(Datum::double(*x)))
        }
        (Statistics::ByteArray(v), PrimitiveType::String) => {
            pair(v.min_opt(), v.max_opt(), |x| std::str::from_utf8(x.data()).ok().map(Datum::string))
        }
        (Statistics::ByteArray(v), PrimitiveType::Binary) => pair(v.min_opt(), v.max_opt(), |x| Some(Datum::binary(x.data().iter().copied()))),
        _ => None,
    }
}
