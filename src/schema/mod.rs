//! Schema files (`schemas/*.toml`): the table a stream lands in.
//!
//! Input: the TOML text of a schema file (format in DESIGN.md §1). Output: a
//! validated [`TableSchema`]: lowercase columns with parsed types, JSON source
//! paths, timestamp formats, the partition spec and the Arrow schema the
//! decoder fills. Failure: [`SchemaError`], whose message names the file,
//! the line, the key and what is allowed; the CLI turns it into exit code 2.

pub mod evolve;
pub mod infer;
pub mod rules;
pub mod types;

use crate::timefmt::{compile_output_pattern, default_formats, PatTok, TsFormat};
use arrow_schema::{Field, Schema, SchemaRef};
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;
use toml::Spanned;
pub use rules::{Check, Filter, Rule, RulePath, Step};
pub use types::{ColType, StructField};

/// Most value partition keys a table may have (Glue allows more, but every
/// key multiplies the number of open buffers and small files).
pub const MAX_PARTITION_KEYS: usize = 8;

/// Name of the column that keeps unknown JSON keys when `unknown_keys = "keep"`.
pub const EXTRA_COLUMN: &str = "_extra";

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("{path}: cannot read schema file: {source}")]
    Io { path: String, source: std::io::Error },
    /// TOML syntax or shape errors; toml's message carries line and column.
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    #[error("{path}:{line}: key `{key}`: {message}")]
    Invalid { path: String, line: usize, key: String, message: String },
}

#[derive(Debug, Clone)]
pub struct Column {
    /// Lowercase column name, as Athena shows it.
    pub name: String,
    pub ty: ColType,
    pub required: bool,
    /// JSON key path (one element per dotted segment), lowercased when
    /// matching is case-insensitive.
    pub source: Vec<String>,
    pub formats: Vec<TsFormat>,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownKeys {
    Drop,
    Keep,
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Day,
    Hour,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSource {
    /// Index into [`TableSchema::columns`] of a timestamp column.
    Column(usize),
    /// The record's arrival time (Kinesis ApproximateArrivalTimestamp).
    Arrival,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LayoutPart {
    Lit(String),
    Time(Vec<PatTok>),
    /// Index into [`PartitionSpec::keys`].
    Key(usize),
}

/// The partition time of a record with no event time when the spec keeps
/// such records apart ([`PartitionSpec::null_time`]).
pub const NULL_TIME: i64 = i64::MIN;

#[derive(Debug, Clone)]
pub struct PartitionSpec {
    pub time: TimeSource,
    pub granularity: Granularity,
    /// Column indexes of the value partition keys.
    pub keys: Vec<usize>,
    pub layout: Vec<LayoutPart>,
    /// Hive partition column names of the layout (`dt`, `hr`, keys…), or
    /// `None` when a custom layout is not `name=value/` segments.
    pub hive_columns: Option<Vec<String>>,
    /// True when the layout's time patterns name nothing finer than the
    /// hour, so the formatted time parts can be cached per hour.
    pub hourly: bool,
    /// A record whose time column is null or missing lands in the null
    /// time partition (Iceberg: `hour(null)` is null), not its arrival's.
    pub null_time: bool,
}

impl PartitionSpec {
    /// The partition time of a record whose time column holds `time`:
    /// with none, its arrival time, or [`NULL_TIME`] with `null_time`.
    #[inline]
    pub fn time_or(&self, time: Option<i64>, arrival_ms: i64) -> i64 {
        match time {
            Some(t) => t,
            None if self.null_time => NULL_TIME,
            None => arrival_ms,
        }
    }

    /// The column the partition time comes from, if not the arrival time.
    pub fn time_column(&self) -> Option<usize> {
        match self.time {
            TimeSource::Column(i) => Some(i),
            TimeSource::Arrival => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TableSchema {
    pub path: String,
    pub table: String,
    pub description: Option<String>,
    pub columns: Vec<Column>,
    pub partition: PartitionSpec,
    pub unknown_keys: UnknownKeys,
    pub case_insensitive: bool,
    /// Short content hash, written to every Parquet file's metadata.
    pub version: String,
    pub arrow: SchemaRef,
    /// The Arrow schema data files are written with when it is not
    /// `arrow` (an Iceberg table's: field ids, microsecond timestamps):
    /// each batch is cast to it before it is encoded.
    pub file_arrow: Option<SchemaRef>,
    /// Value rules, in file order: a record failing one is an error record.
    pub rules: Vec<Rule>,
    /// Record filters, in file order: a record matching one is dropped.
    pub filters: Vec<Filter>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchema {
    table: Spanned<String>,
    description: Option<String>,
    unknown_keys: Option<Spanned<String>>,
    case_insensitive: Option<bool>,
    columns: Spanned<Vec<RawColumn>>,
    partition: Option<RawPartition>,
    #[serde(default)]
    rules: Vec<rules::RawRule>,
    #[serde(default)]
    filters: Vec<rules::RawFilter>,
}

rules::with_rule_keys! {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawColumn {
        name: Spanned<String>,
        #[serde(rename = "type")]
        ty: Spanned<String>,
        #[serde(default)]
        required: bool,
        source: Option<Spanned<String>>,
        formats: Option<Spanned<Vec<String>>>,
        #[serde(alias = "description")]
        comment: Option<String>,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPartition {
    time: Option<Spanned<RawTime>>,
    keys: Option<Spanned<Vec<String>>>,
    layout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTime {
    column: Spanned<String>,
    granularity: Option<Spanned<String>>,
}

/// 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// FNV-1a 64-bit, hex: a stable short content hash.
pub fn fnv_hex(data: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(f) if f.is_ascii_lowercase() || f == '_')
        && c.all(|x| x.is_ascii_lowercase() || x.is_ascii_digit() || x == '_')
}

impl TableSchema {
    pub fn load(path: &Path) -> Result<TableSchema, SchemaError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| SchemaError::Io { path: path.display().to_string(), source })?;
        TableSchema::parse(&path.display().to_string(), &text)
    }

    pub fn parse(path: &str, text: &str) -> Result<TableSchema, SchemaError> {
        let raw: RawSchema = toml::from_str(text)
            .map_err(|e| SchemaError::Syntax { path: path.to_string(), message: e.to_string().trim_end().to_string() })?;
        let bad = |span: std::ops::Range<usize>, key: &str, message: String| SchemaError::Invalid {
            path: path.to_string(),
            line: line_of(text, span.start),
            key: key.to_string(),
            message,
        };
        let table = raw.table.get_ref().to_ascii_lowercase();
        if !valid_name(&table) {
            return Err(bad(raw.table.span(), "table", format!(
                "table name {:?} must be letters, digits and underscores, starting with a letter", raw.table.get_ref())));
        }
        let case_insensitive = raw.case_insensitive.unwrap_or(true);
        let unknown_keys = match raw.unknown_keys.as_ref().map(|s| s.get_ref().as_str()) {
            None | Some("drop") => UnknownKeys::Drop,
            Some("keep") => UnknownKeys::Keep,
            Some("reject") => UnknownKeys::Reject,
            Some(other) => {
                let s = raw.unknown_keys.as_ref().unwrap();
                return Err(bad(s.span(), "unknown_keys", format!("{other:?} is not allowed; use \"drop\", \"keep\" or \"reject\"")));
            }
        };
        if raw.columns.get_ref().is_empty() {
            return Err(bad(raw.columns.span(), "columns", "a schema needs at least one [[columns]] entry".into()));
        }
        let mut columns: Vec<Column> = Vec::new();
        for (i, rc) in raw.columns.get_ref().iter().enumerate() {
            let key = |k: &str| format!("columns[{i}].{k}");
            let name = rc.name.get_ref().to_ascii_lowercase();
            if !valid_name(&name) || name == EXTRA_COLUMN {
                return Err(bad(rc.name.span(), &key("name"), format!(
                    "column name {:?} must be letters, digits and underscores, starting with a letter or '_' (and not {EXTRA_COLUMN})",
                    rc.name.get_ref())));
            }
            if columns.iter().any(|c| c.name == name) {
                return Err(bad(rc.name.span(), &key("name"), format!("duplicate column {name:?} (names are case-insensitive)")));
            }
            let ty = ColType::parse(rc.ty.get_ref()).map_err(|e| bad(rc.ty.span(), &key("type"), e.to_string()))?;
            let source_text = rc.source.as_ref().map(|s| s.get_ref().clone()).unwrap_or_else(|| rc.name.get_ref().clone());
            let source: Vec<String> = source_text
                .split('.')
                .map(|s| if case_insensitive { s.to_lowercase() } else { s.to_string() })
                .collect();
            if source.iter().any(|s| s.is_empty()) {
                let span = rc.source.as_ref().map(|s| s.span()).unwrap_or(rc.name.span());
                return Err(bad(span, &key("source"), format!("source {source_text:?} has an empty path segment")));
            }
            let formats = match &rc.formats {
                None if ty == ColType::Timestamp => default_formats(),
                None => Vec::new(),
                Some(f) => {
                    if !matches!(ty, ColType::Timestamp | ColType::Date) {
                        return Err(bad(f.span(), &key("formats"), "formats apply only to timestamp and date columns".into()));
                    }
                    if f.get_ref().is_empty() {
                        return Err(bad(f.span(), &key("formats"), "formats must list at least one format".into()));
                    }
                    f.get_ref()
                        .iter()
                        .map(|s| TsFormat::parse(s))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| bad(f.span(), &key("formats"), format!(
                            "{e}; allowed: rfc3339, epoch_millis, epoch_seconds or a pattern like \"yyyy-MM-dd HH:mm:ss[.SSS]\"")))?
                }
            };
            columns.push(Column { name, ty, required: rc.required, source, formats, comment: rc.comment.clone() });
        }

        let partition = parse_partition(raw.partition.as_ref(), &columns, &bad)?;

        let mut rule_list = Vec::new();
        for (i, rc) in raw.columns.get_ref().iter().enumerate() {
            let path = RulePath { column: i, steps: Vec::new(), name: columns[i].name.clone(), leaf: columns[i].ty.clone() };
            rule_list.extend(rules::compile_rules(&path, &rc.rule_keys(), &format!("columns[{i}]"), &bad)?);
        }
        for (i, rr) in raw.rules.iter().enumerate() {
            let key = format!("rules[{i}]");
            let path = rules::resolve(&columns, rr.column.get_ref()).map_err(|m| bad(rr.column.span(), &format!("{key}.column"), m))?;
            let compiled = rules::compile_rules(&path, &rr.rule_keys(), &key, &bad)?;
            if compiled.is_empty() {
                return Err(bad(rr.column.span(), &key, "a rule needs at least one of allowed, min, max, pattern, min_length, max_length, not_null".into()));
            }
            rule_list.extend(compiled);
        }
        let mut filters = Vec::new();
        for (i, rf) in raw.filters.iter().enumerate() {
            let f = rules::compile_filter(&columns, rf, &format!("filters[{i}]"), &bad)?;
            if filters.iter().any(|o: &Filter| o.name == f.name) {
                return Err(bad(rf.name.span(), &format!("filters[{i}].name"), format!("filter name {:?} is used twice", f.name)));
            }
            filters.push(f);
        }

        let mut fields: Vec<Field> = columns.iter().map(|c| Field::new(&c.name, c.ty.arrow(), !c.required)).collect();
        if unknown_keys == UnknownKeys::Keep {
            fields.push(Field::new(EXTRA_COLUMN, arrow_schema::DataType::Utf8, true));
        }
        Ok(TableSchema {
            path: path.to_string(),
            table,
            description: raw.description.clone(),
            columns,
            partition,
            unknown_keys,
            case_insensitive,
            version: fnv_hex(text.as_bytes()),
            arrow: Arc::new(Schema::new(fields)),
            file_arrow: None,
            rules: rule_list,
            filters,
        })
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

type BadFn<'a> = dyn Fn(std::ops::Range<usize>, &str, String) -> SchemaError + 'a;

fn parse_partition(raw: Option<&RawPartition>, columns: &[Column], bad: &BadFn) -> Result<PartitionSpec, SchemaError> {
    let (mut time, mut granularity) = (TimeSource::Arrival, Granularity::Hour);
    let mut keys = Vec::new();
    let mut layout_raw = None;
    if let Some(p) = raw {
        if let Some(t) = &p.time {
            let col = t.get_ref().column.get_ref();
            if col != "arrival" {
                let idx = columns.iter().position(|c| c.name == col.to_ascii_lowercase()).ok_or_else(|| {
                    bad(t.get_ref().column.span(), "partition.time.column", format!(
                        "{col:?} is not a column of this schema; name a timestamp column or \"arrival\""))
                })?;
                if columns[idx].ty != ColType::Timestamp {
                    return Err(bad(t.get_ref().column.span(), "partition.time.column", format!(
                        "column {col:?} is {}, but the partition time must be a timestamp column or \"arrival\"",
                        columns[idx].ty.glue())));
                }
                time = TimeSource::Column(idx);
            }
            if let Some(g) = &t.get_ref().granularity {
                granularity = match g.get_ref().as_str() {
                    "hour" => Granularity::Hour,
                    "day" => Granularity::Day,
                    other => return Err(bad(g.span(), "partition.time.granularity", format!(
                        "{other:?} is not allowed; use \"hour\" or \"day\""))),
                };
            }
        }
        if let Some(k) = &p.keys {
            for name in k.get_ref() {
                let idx = columns.iter().position(|c| c.name == name.to_ascii_lowercase()).ok_or_else(|| {
                    bad(k.span(), "partition.keys", format!("{name:?} is not a column of this schema"))
                })?;
                if !columns[idx].ty.is_primitive() || matches!(columns[idx].ty, ColType::Binary | ColType::Float | ColType::Double) {
                    return Err(bad(k.span(), "partition.keys", format!(
                        "column {name:?} is {}; partition keys must be string, integer, boolean, date, timestamp or decimal columns",
                        columns[idx].ty.glue())));
                }
                if keys.len() == MAX_PARTITION_KEYS {
                    return Err(bad(k.span(), "partition.keys", format!("at most {MAX_PARTITION_KEYS} partition keys are allowed")));
                }
                if keys.contains(&idx) {
                    return Err(bad(k.span(), "partition.keys", format!("{name:?} is listed twice")));
                }
                keys.push(idx);
            }
        }
        layout_raw = p.layout.as_ref();
    }
    let key_names: Vec<String> = keys.iter().map(|&i| columns[i].name.clone()).collect();
    let (layout, hive_columns) = match layout_raw {
        None => {
            let mut l = vec![LayoutPart::Lit("dt=".into()), LayoutPart::Time(compile_output_pattern("yyyy-MM-dd").unwrap())];
            let mut hive = vec!["dt".to_string()];
            if granularity == Granularity::Hour {
                l.push(LayoutPart::Lit("/hr=".into()));
                l.push(LayoutPart::Time(compile_output_pattern("HH").unwrap()));
                hive.push("hr".into());
            }
            l.push(LayoutPart::Lit("/".into()));
            for (i, k) in key_names.iter().enumerate() {
                l.push(LayoutPart::Lit(format!("{k}=")));
                l.push(LayoutPart::Key(i));
                l.push(LayoutPart::Lit("/".into()));
                hive.push(k.clone());
            }
            (l, Some(hive))
        }
        Some(s) => {
            let parts = parse_layout(s.get_ref(), &key_names)
                .map_err(|m| bad(s.span(), "partition.layout", m))?;
            let hive = hive_names(s.get_ref());
            (parts, hive)
        }
    };
    let hourly = crate::partition::layout_is_hourly(&layout);
    Ok(PartitionSpec { time, granularity, keys, layout, hive_columns, hourly, null_time: false })
}

/// Parses a Firehose-syntax prefix: literal text with `!{timestamp:PATTERN}`
/// and `!{partitionKeyFromQuery:key}` expressions.
fn parse_layout(s: &str, keys: &[String]) -> Result<Vec<LayoutPart>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(at) = rest.find("!{") {
        if at > 0 {
            out.push(LayoutPart::Lit(rest[..at].to_string()));
        }
        let end = rest[at..].find('}').ok_or("unclosed '!{' expression")? + at;
        let expr = &rest[at + 2..end];
        let (ns, arg) = expr.split_once(':').ok_or_else(|| format!("expression !{{{expr}}} needs namespace:argument"))?;
        match ns {
            "timestamp" => out.push(LayoutPart::Time(compile_output_pattern(arg)?)),
            "partitionKeyFromQuery" | "partitionKeyFromLambda" => {
                let idx = keys.iter().position(|k| k == &arg.to_ascii_lowercase()).ok_or_else(|| {
                    format!("!{{{expr}}} names {arg:?}, which is not in partition.keys ({})", keys.join(", "))
                })?;
                out.push(LayoutPart::Key(idx));
            }
            _ => return Err(format!("unknown namespace {ns:?} in !{{{expr}}}; use timestamp or partitionKeyFromQuery")),
        }
        rest = &rest[end + 1..];
    }
    if !rest.is_empty() {
        out.push(LayoutPart::Lit(rest.to_string()));
    }
    match out.last() {
        Some(LayoutPart::Lit(l)) if l.ends_with('/') => Ok(out),
        _ => Err("layout must end with '/'".into()),
    }
}

fn hive_names(s: &str) -> Option<Vec<String>> {
    s.trim_end_matches('/')
        .split('/')
        .map(|seg| seg.split_once('=').map(|(n, _)| n.to_string()).filter(|n| valid_name(n)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
table = "events"
description = "Clickstream"

[[columns]]
name = "event_id"
type = "string"
required = true

[[columns]]
name = "TS"
type = "timestamp"
source = "timestamp"
formats = ["rfc3339", "epoch_millis"]

[[columns]]
name = "event_type"
type = "string"

[[columns]]
name = "os"
type = "string"
source = "device.os"

[partition]
time = { column = "ts", granularity = "hour" }
keys = ["event_type"]
"#;

    #[test]
    fn parses_a_good_schema() {
        let s = TableSchema::parse("x.toml", GOOD).unwrap();
        assert_eq!(s.table, "events");
        assert_eq!(s.columns[1].name, "ts");
        assert_eq!(s.columns[3].source, vec!["device", "os"]);
        assert_eq!(s.partition.time, TimeSource::Column(1));
        assert_eq!(s.partition.hive_columns, Some(vec!["dt".into(), "hr".into(), "event_type".into()]));
        assert!(!s.arrow.field(0).is_nullable());
    }

    fn err(text: &str) -> String {
        TableSchema::parse("schemas/x.toml", text).unwrap_err().to_string()
    }

    #[test]
    fn bad_schemas_name_file_line_key_and_fix() {
        let e = err(&GOOD.replace("type = \"string\"\nrequired", "type = \"strng\"\nrequired"));
        assert!(e.starts_with("schemas/x.toml:7: key `columns[0].type`"), "{e}");
        assert!(e.contains("unknown type 'strng'") && e.contains("allowed:"), "{e}");

        let e = err(&GOOD.replace("granularity = \"hour\"", "granularity = \"week\""));
        assert!(e.contains("partition.time.granularity") && e.contains("\"hour\" or \"day\""), "{e}");

        let e = err(&GOOD.replace("column = \"ts\"", "column = \"event_type\""));
        assert!(e.contains("must be a timestamp column"), "{e}");

        let e = err(&GOOD.replace("keys = [\"event_type\"]", "keys = [\"nope\"]"));
        assert!(e.contains("partition.keys") && e.contains("\"nope\" is not a column"), "{e}");

        let e = err(&GOOD.replace("formats = [\"rfc3339\", \"epoch_millis\"]", "formats = [\"yyyy-QQ\"]"));
        assert!(e.contains("columns[1].formats") && e.contains("allowed: rfc3339"), "{e}");

        let e = err(&GOOD.replace("required = true", "required = true\nnullable = false"));
        assert!(e.contains("schemas/x.toml") && e.contains("line") && e.contains("nullable"), "{e}");

        let e = err(&format!("{GOOD}\n[[columns]]\nname = \"Event_ID\"\ntype = \"int\"\n"));
        assert!(e.contains("duplicate column \"event_id\""), "{e}");
    }

    #[test]
    fn firehose_layouts() {
        let text = GOOD.replace(
            "keys = [\"event_type\"]",
            "keys = [\"event_type\"]\nlayout = \"year=!{timestamp:yyyy}/type=!{partitionKeyFromQuery:event_type}/\"",
        );
        let s = TableSchema::parse("x.toml", &text).unwrap();
        assert_eq!(s.partition.hive_columns, Some(vec!["year".into(), "type".into()]));
        let text = GOOD.replace("keys = [\"event_type\"]", "keys = [\"event_type\"]\nlayout = \"!{timestamp:yyyy/MM}/\"");
        assert_eq!(TableSchema::parse("x.toml", &text).unwrap().partition.hive_columns, None);
        let e = err(&GOOD.replace("keys = [\"event_type\"]", "layout = \"!{partitionKeyFromQuery:zzz}/\""));
        assert!(e.contains("not in partition.keys"), "{e}");
    }
}
