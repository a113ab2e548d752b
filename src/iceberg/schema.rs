//! A schema file as an Iceberg table's schema, partition spec and file layout.
//!
//! Input: a [`TableSchema`] and, once the table exists, its current Iceberg
//! schema. Output: the Iceberg schema to create the table with, the
//! partition spec (`hour(ts)` / `day(ts)` and identity keys), the columns a
//! schema edit adds, and the schema file adapted for writing Iceberg data
//! files: its partition layout is Iceberg's own path form
//! (`ts_hour=2026-12-07-05/kind=click/`, parsed back into the partition
//! tuple by [`partition_of`]) and its file Arrow schema carries each
//! field's Iceberg id (`PARQUET:field_id`) and microsecond timestamps.
//! Failure: [`IcebergError::Unsupported`] naming the schema file and what
//! to change (arrival-time partitioning, a key type Iceberg identity
//! partitions here do not take).
//!
//! Field ids come from the table: a field is matched by its full name
//! (`device.os`, `tags.element`, `properties.value`), so ids survive edits.

use super::IcebergError;
use crate::partition::DEFAULT_PARTITION;
use crate::schema::types::ColType;
use crate::schema::{Granularity, LayoutPart, TableSchema, TimeSource, EXTRA_COLUMN};
use arrow_schema::{DataType, Field, Fields, Schema as ArrowSchema, TimeUnit};
use iceberg::spec::{
    ListType, Literal, MapType, NestedField, NestedFieldRef, PrimitiveType, Schema, Struct, StructType, Transform,
    Type, UnboundPartitionSpec,
};
use parquet::arrow::PARQUET_FIELD_ID_META_KEY;
use std::collections::HashMap;
use std::sync::Arc;

/// Where field ids come from: the table's schema by full name, else fresh ones.
struct Ids<'a> {
    table: Option<&'a Schema>,
    next: i32,
    /// Timestamps as `timestamptz` (else `timestamp`, values in UTC).
    zoned: bool,
}

impl Ids<'_> {
    fn id(&mut self, name: &str) -> i32 {
        if let Some(id) = self.table.and_then(|t| t.field_id_by_name(name)) {
            return id;
        }
        self.next += 1;
        self.next
    }
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() { name.to_string() } else { format!("{parent}.{name}") }
}

/// The Iceberg type of a column type; nested fields get ids under `path`.
fn iceberg_type(ty: &ColType, path: &str, ids: &mut Ids) -> Type {
    let p = |t: PrimitiveType| Type::Primitive(t);
    match ty {
        ColType::Boolean => p(PrimitiveType::Boolean),
        ColType::TinyInt | ColType::SmallInt | ColType::Int => p(PrimitiveType::Int),
        ColType::BigInt => p(PrimitiveType::Long),
        ColType::Float => p(PrimitiveType::Float),
        ColType::Double => p(PrimitiveType::Double),
        ColType::Decimal { precision, scale } => p(PrimitiveType::Decimal { precision: *precision as u32, scale: *scale as u32 }),
        ColType::String | ColType::Varchar(_) => p(PrimitiveType::String),
        ColType::Date => p(PrimitiveType::Date),
        ColType::Timestamp => p(if ids.zoned { PrimitiveType::Timestamptz } else { PrimitiveType::Timestamp }),
        ColType::Binary => p(PrimitiveType::Binary),
        ColType::Array(e) => {
            let name = join(path, "element");
            let id = ids.id(&name);
            Type::List(ListType::new(NestedField::list_element(id, iceberg_type(e, &name, ids), false).into()))
        }
        ColType::Map(k, v) => {
            let (kn, vn) = (join(path, "key"), join(path, "value"));
            let kid = ids.id(&kn);
            let vid = ids.id(&vn);
            let key: NestedFieldRef = NestedField::map_key_element(kid, iceberg_type(k, &kn, ids)).into();
            let value: NestedFieldRef = NestedField::map_value_element(vid, iceberg_type(v, &vn, ids), false).into();
            Type::Map(MapType::new(key, value))
        }
        ColType::Struct(fs) => Type::Struct(StructType::new(
            fs.iter()
                .map(|f| {
                    let name = join(path, &f.name);
                    let id = ids.id(&name);
                    NestedField::optional(id, &f.name, iceberg_type(&f.ty, &name, ids)).into()
                })
                .collect(),
        )),
    }
}

/// The top-level fields of `s`: its columns, and `_extra` when unknown keys are kept.
fn fields(s: &TableSchema, ids: &mut Ids) -> Vec<NestedFieldRef> {
    let mut out: Vec<NestedFieldRef> = s
        .columns
        .iter()
        .map(|c| {
            let id = ids.id(&c.name);
            let mut f = NestedField::new(id, &c.name, iceberg_type(&c.ty, &c.name, ids), c.required);
            f.doc = c.comment.clone();
            f.into()
        })
        .collect();
    if s.arrow.field_with_name(EXTRA_COLUMN).is_ok() {
        let id = ids.id(EXTRA_COLUMN);
        out.push(NestedField::optional(id, EXTRA_COLUMN, Type::Primitive(PrimitiveType::String)).into());
    }
    out
}

/// The Iceberg schema of a schema file, ids taken from `table` where a
/// field exists there (fresh ones after its highest id otherwise);
/// timestamps as `timestamptz` when `zoned`, else `timestamp` (UTC values).
pub fn iceberg_schema(s: &TableSchema, table: Option<&Schema>, zoned: bool) -> Result<Schema, IcebergError> {
    let mut ids = Ids { table, next: table.map_or(0, Schema::highest_field_id), zoned };
    let fields = fields(s, &mut ids);
    Schema::builder().with_fields(fields).build().map_err(|e| IcebergError::Table(format!("{}: {e}", s.path)))
}

/// What `want` (ids from `have` where a field exists there) adds to
/// `have`: each new field with the full name of its parent (None at the
/// top; a list or map's name for fields of its element or value struct),
/// and the full names of fields whose type differs.
pub fn additions(want: &Schema, have: &Schema) -> (Vec<(Option<String>, NestedFieldRef)>, Vec<String>) {
    fn walk(fields: &[NestedFieldRef], parent: &str, have: &Schema, adds: &mut Vec<(Option<String>, NestedFieldRef)>, changed: &mut Vec<String>) {
        for f in fields {
            let name = join(parent, &f.name);
            let Some(old) = have.field_by_name(&name) else {
                adds.push(((!parent.is_empty()).then(|| parent.to_string()), f.clone()));
                continue;
            };
            match (&*f.field_type, &*old.field_type) {
                (Type::Primitive(a), Type::Primitive(b)) if a != b => changed.push(name),
                (Type::Struct(a), Type::Struct(_)) => walk(a.fields(), &name, have, adds, changed),
                (Type::List(a), Type::List(_)) => match &*a.element_field.field_type {
                    Type::Struct(e) => walk(e.fields(), &join(&name, "element"), have, adds, changed),
                    t => leaf(t, &join(&name, "element"), have, changed),
                },
                (Type::Map(a), Type::Map(_)) => {
                    leaf(&a.key_field.field_type, &join(&name, "key"), have, changed);
                    match &*a.value_field.field_type {
                        Type::Struct(v) => walk(v.fields(), &join(&name, "value"), have, adds, changed),
                        t => leaf(t, &join(&name, "value"), have, changed),
                    }
                }
                (Type::Primitive(_), Type::Primitive(_)) => {}
                _ => changed.push(name),
            }
        }
    }
    fn leaf(t: &Type, name: &str, have: &Schema, changed: &mut Vec<String>) {
        if have.field_by_name(name).is_some_and(|o| *o.field_type != *t) {
            changed.push(name.to_string());
        }
    }
    let (mut adds, mut changed) = (Vec::new(), Vec::new());
    walk(want.as_struct().fields(), "", have, &mut adds, &mut changed);
    (adds, changed)
}

/// The partition spec: the time column's hour or day, then identity keys.
pub fn partition_spec(s: &TableSchema) -> Result<UnboundPartitionSpec, IcebergError> {
    let unsupported = |what: String| IcebergError::Unsupported { path: s.path.clone(), what };
    let TimeSource::Column(t) = s.partition.time else {
        return Err(unsupported(
            "partition.time: an Iceberg table is partitioned by a column's hour or day; set partition.time.column to a timestamp column (arrival time is not a column)".into(),
        ));
    };
    let (transform, suffix) = match s.partition.granularity {
        Granularity::Hour => (Transform::Hour, "hour"),
        Granularity::Day => (Transform::Day, "day"),
    };
    let ids = iceberg_schema(s, None, true)?;
    let id_of = |name: &str| ids.field_id_by_name(name).expect("a column of the schema");
    let time = &s.columns[t].name;
    let mut b = UnboundPartitionSpec::builder()
        .add_partition_field(id_of(time), format!("{time}_{suffix}"), transform)
        .map_err(|e| unsupported(e.to_string()))?;
    for &k in &s.partition.keys {
        let c = &s.columns[k];
        if key_literal(&c.ty, "0").is_none() && key_literal(&c.ty, "true").is_none() {
            return Err(unsupported(format!(
                "partition.keys: column {:?} is {}; Iceberg identity partitions here take string, varchar, tinyint, smallint, int, bigint or boolean keys",
                c.name, c.ty.glue()
            )));
        }
        b = b.add_partition_field(id_of(&c.name), c.name.clone(), Transform::Identity).map_err(|e| unsupported(e.to_string()))?;
    }
    Ok(b.build())
}

/// The schema file as Iceberg data files are written: Iceberg's partition
/// path form as its layout, and `file_arrow` with the field ids of
/// `table` (every field must exist there).
pub fn adapt(mut s: TableSchema, table: &Schema) -> Result<TableSchema, IcebergError> {
    partition_spec(&s)?;
    let TimeSource::Column(t) = s.partition.time else { unreachable!("checked by partition_spec") };
    let time = s.columns[t].name.clone();
    let (suffix, pattern) = match s.partition.granularity {
        Granularity::Hour => ("hour", "yyyy-MM-dd-HH"),
        Granularity::Day => ("day", "yyyy-MM-dd"),
    };
    let mut layout = vec![
        LayoutPart::Lit(format!("{time}_{suffix}=")),
        LayoutPart::Time(crate::timefmt::compile_output_pattern(pattern).expect("a valid pattern")),
    ];
    let mut hive = vec![format!("{time}_{suffix}")];
    for (i, &k) in s.partition.keys.iter().enumerate() {
        layout.push(LayoutPart::Lit(format!("/{}=", s.columns[k].name)));
        layout.push(LayoutPart::Key(i));
        hive.push(s.columns[k].name.clone());
    }
    layout.push(LayoutPart::Lit("/".into()));
    s.partition.hourly = crate::partition::layout_is_hourly(&layout);
    s.partition.null_time = true;
    s.partition.layout = layout;
    s.partition.hive_columns = Some(hive);
    s.file_arrow = Some(file_arrow(&s, table)?);
    Ok(s)
}

/// The Arrow schema data files are written with: each field's Iceberg id
/// in its metadata, timestamps in microseconds (UTC-adjusted for the
/// table's `timestamptz`, not for its `timestamp`), small ints as int.
fn file_arrow(s: &TableSchema, table: &Schema) -> Result<Arc<ArrowSchema>, IcebergError> {
    let missing = |name: &str| IcebergError::Table(format!("{}: field {name:?} is not in the Iceberg table's schema", s.path));
    fn field(name: &str, path: &str, dt: &DataType, nullable: bool, table: &Schema) -> Result<Field, String> {
        let id = table.field_id_by_name(path).ok_or_else(|| path.to_string())?;
        let dt = match dt {
            DataType::Int8 | DataType::Int16 => DataType::Int32,
            DataType::Timestamp(_, tz) => {
                let zoned = table.field_by_name(path).is_some_and(|f| *f.field_type == Type::Primitive(PrimitiveType::Timestamptz));
                DataType::Timestamp(TimeUnit::Microsecond, tz.clone().filter(|_| zoned))
            }
            DataType::List(e) => DataType::List(Arc::new(field(e.name(), &join(path, "element"), e.data_type(), true, table)?)),
            DataType::Map(entries, sorted) => {
                let DataType::Struct(kv) = entries.data_type() else { unreachable!("map entries are a struct") };
                let k = unkeyed(&kv[0], &join(path, "key"), false, table)?;
                let v = unkeyed(&kv[1], &join(path, "value"), true, table)?;
                DataType::Map(Arc::new(Field::new(entries.name(), DataType::Struct(Fields::from(vec![k, v])), false)), *sorted)
            }
            DataType::Struct(fs) => DataType::Struct(
                fs.iter().map(|f| field(f.name(), &join(path, f.name()), f.data_type(), true, table)).collect::<Result<Vec<_>, _>>()?.into(),
            ),
            other => other.clone(),
        };
        let meta = HashMap::from([(PARQUET_FIELD_ID_META_KEY.to_string(), id.to_string())]);
        Ok(Field::new(name, dt, nullable).with_metadata(meta))
    }
    fn unkeyed(f: &Field, path: &str, nullable: bool, table: &Schema) -> Result<Field, String> {
        field(f.name(), path, f.data_type(), nullable, table)
    }
    let fields = s
        .arrow
        .fields()
        .iter()
        .map(|f| field(f.name(), f.name(), f.data_type(), f.is_nullable(), table))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|p| missing(&p))?;
    Ok(Arc::new(ArrowSchema::new(fields)))
}

/// A key's partition value as its Iceberg literal; None when the text does
/// not parse as the column's type (or the type is not a key type here).
fn key_literal(ty: &ColType, text: &str) -> Option<Literal> {
    Some(match ty {
        ColType::String | ColType::Varchar(_) => Literal::string(text),
        ColType::TinyInt | ColType::SmallInt | ColType::Int => Literal::int(text.parse::<i32>().ok()?),
        ColType::BigInt => Literal::long(text.parse::<i64>().ok()?),
        ColType::Boolean => Literal::bool(text.parse::<bool>().ok()?),
        _ => return None,
    })
}

/// The partition tuple of a data file from its prefix, which
/// [`adapt`]'s layout rendered: `<time>_<hour|day>=<time>/<key>=<value>/…`.
pub fn partition_of(s: &TableSchema, prefix: &str) -> Result<Struct, IcebergError> {
    let bad = || IcebergError::Table(format!("partition prefix {prefix:?} is not in the Iceberg layout; this is a bug, please report it"));
    let values = crate::partition::prefix_values(prefix);
    if values.len() != 1 + s.partition.keys.len() {
        return Err(bad());
    }
    let mut tuple = vec![if values[0] == DEFAULT_PARTITION {
        None // rows with no event time
    } else {
        let (date, hour) = match s.partition.granularity {
            Granularity::Hour => values[0].rsplit_once('-').and_then(|(d, h)| Some((d, h.parse::<i64>().ok()?))).ok_or_else(bad)?,
            Granularity::Day => (values[0].as_str(), 0),
        };
        let days = crate::timefmt::parse_date(date).ok_or_else(bad)? as i64;
        Some(match s.partition.granularity {
            Granularity::Hour => Literal::int((days * 24 + hour) as i32),
            Granularity::Day => Literal::date(days as i32),
        })
    }];
    for (&k, v) in s.partition.keys.iter().zip(&values[1..]) {
        tuple.push(if v == DEFAULT_PARTITION { None } else { Some(key_literal(&s.columns[k].ty, v).ok_or_else(bad)?) });
    }
    Ok(Struct::from_iter(tuple))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(text: &str) -> TableSchema {
        TableSchema::parse("t.toml", text).unwrap()
    }

    const EVENTS: &str = r#"
table = "ev"
[[columns]]
name = "ts"
type = "timestamp"
[[columns]]
name = "kind"
type = "string"
[[columns]]
name = "n"
type = "smallint"
[[columns]]
name = "device"
type = "struct<os:string,tags:array<string>>"
[[columns]]
name = "props"
type = "map<string,bigint>"
[partition]
time = { column = "ts", granularity = "hour" }
keys = ["kind"]
"#;

    #[test]
    fn ids_are_kept_by_name_and_new_fields_get_fresh_ones() {
        let s = schema(EVENTS);
        let first = iceberg_schema(&s, None, true).unwrap();
        let names = ["ts", "kind", "n", "device", "device.os", "device.tags", "device.tags.element", "props", "props.key", "props.value"];
        let ids: Vec<i32> = names.iter().map(|n| first.field_id_by_name(n).unwrap()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "every field has its own id");
        let wider = schema(&EVENTS.replace("[partition]", "[[columns]]\nname = \"added\"\ntype = \"struct<a:int>\"\n[partition]"));
        let second = iceberg_schema(&wider, Some(&first), true).unwrap();
        for (n, id) in names.iter().zip(&ids) {
            assert_eq!(second.field_id_by_name(n), Some(*id), "{n} keeps its id");
        }
        assert_eq!(second.field_id_by_name("added"), Some(first.highest_field_id() + 1));
        assert_eq!(second.field_id_by_name("added.a"), Some(first.highest_field_id() + 2));
    }

    #[test]
    fn files_carry_ids_and_microsecond_timestamps() {
        let s = schema(EVENTS);
        let table = iceberg_schema(&s, None, true).unwrap();
        let a = adapt(s, &table).unwrap();
        let fa = a.file_arrow.as_ref().unwrap();
        let id = |f: &Field| f.metadata()[PARQUET_FIELD_ID_META_KEY].parse::<i32>().unwrap();
        assert_eq!(fa.field(0).data_type(), &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())));
        assert_eq!(fa.field(2).data_type(), &DataType::Int32);
        let DataType::Struct(dev) = fa.field(3).data_type() else { panic!() };
        assert_eq!(id(&dev[0]), table.field_id_by_name("device.os").unwrap());
        let DataType::List(e) = dev[1].data_type() else { panic!() };
        assert_eq!(id(e), table.field_id_by_name("device.tags.element").unwrap());
        let DataType::Map(entries, _) = fa.field(4).data_type() else { panic!() };
        let DataType::Struct(kv) = entries.data_type() else { panic!() };
        assert_eq!(id(&kv[1]), table.field_id_by_name("props.value").unwrap());
    }

    #[test]
    fn partition_prefixes_parse_back_into_the_tuple() {
        let s = schema(EVENTS);
        let table = iceberg_schema(&s, None, true).unwrap();
        let a = adapt(s, &table).unwrap();
        let mut out = String::new();
        let ms = 1_765_000_000_000i64; // 2025-12-06T05:46:40Z
        crate::partition::render(&a.partition, ms, &[Some("a/b c".into())], &mut out);
        assert_eq!(out, "ts_hour=2025-12-06-05/kind=a%2Fb c/");
        let hours = (ms / 3_600_000) as i32;
        assert_eq!(partition_of(&a, &out).unwrap(), Struct::from_iter([Some(Literal::int(hours)), Some(Literal::string("a/b c"))]));
        crate::partition::render(&a.partition, ms, &[None], &mut out);
        assert_eq!(partition_of(&a, &out).unwrap(), Struct::from_iter([Some(Literal::int(hours)), None]));
        // no event time: the null partition, not the arrival hour
        assert_eq!(a.partition.time_or(None, ms), crate::schema::NULL_TIME);
        crate::partition::render(&a.partition, crate::schema::NULL_TIME, &[Some("x".into())], &mut out);
        assert_eq!(out, "ts_hour=__HIVE_DEFAULT_PARTITION__/kind=x/");
        assert_eq!(partition_of(&a, &out).unwrap(), Struct::from_iter([None, Some(Literal::string("x"))]));
        let day = schema(&EVENTS.replace("\"hour\"", "\"day\""));
        let d = adapt(day, &table).unwrap();
        crate::partition::render(&d.partition, ms, &[Some("x".into())], &mut out);
        assert_eq!(out, "ts_day=2025-12-06/kind=x/");
        assert_eq!(partition_of(&d, &out).unwrap(), Struct::from_iter([Some(Literal::date((ms / 86_400_000) as i32)), Some(Literal::string("x"))]));
    }

    #[test]
    fn arrival_time_partitions_are_refused_with_the_fix() {
        let s = schema(&EVENTS.replace("time = { column = \"ts\", granularity = \"hour\" }\n", ""));
        let e = partition_spec(&s).unwrap_err().to_string();
        assert!(e.contains("t.toml") && e.contains("partition.time.column"), "{e}");
    }
}
