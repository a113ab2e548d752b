//! Rules and filters on a decoded row.
//!
//! Input: a row just appended to [`Columns`] (by either decode path, so
//! both give the same verdict) and the schema's [`Rule`]s and [`Filter`]s.
//! Output: the first rule the row fails, as a [`RecordError`] with code
//! [`ErrorCode::ValidationFailed`] naming the column, the rule and the
//! value; or the first filter that drops it. Rules other than `not_null`
//! pass a null or missing value; a filter never matches one. Never fails
//! otherwise; changes nothing.

use super::columns::ColBuf;
use super::{Columns, ErrorCode, RecordError};
use crate::schema::{Check, ColType, Filter, Rule, Step};
use crate::timefmt::{civil, civil_from_days};

/// The first rule row `row` of `cols` fails, as an error record's reason.
#[inline]
pub fn rules(rules: &[Rule], cols: &Columns, row: usize) -> Result<(), RecordError> {
    for r in rules {
        if r.path.steps.is_empty() {
            // a top-level column: one value
            let buf = &cols.bufs[r.path.column];
            let i = buf.is_valid(row).then_some(row);
            if !passes(&r.check, buf, i) {
                return Err(failure(r, &value_text(buf, i, &r.path.leaf)));
            }
            continue;
        }
        let mut failed = None;
        visit(&cols.bufs[r.path.column], Some(row), &r.path.steps, &mut |buf, i| {
            if passes(&r.check, buf, i) {
                return true;
            }
            failed = Some(value_text(buf, i, &r.path.leaf));
            false
        });
        if let Some(v) = failed {
            return Err(failure(r, &v));
        }
    }
    Ok(())
}

#[cold]
fn failure(r: &Rule, value: &str) -> RecordError {
    RecordError { code: ErrorCode::ValidationFailed, message: format!("column '{}': rule `{}` fails for {value}", r.path.name, r.text) }
}

/// The index of the first filter that drops row `row` of `cols`.
#[inline]
pub fn filtered(filters: &[Filter], cols: &Columns, row: usize) -> Option<usize> {
    filters.iter().position(|f| {
        let mut hit = false;
        visit(&cols.bufs[f.path.column], Some(row), &f.path.steps, &mut |buf, i| {
            hit = i.is_some() && passes(&f.check, buf, i);
            false
        });
        hit
    })
}

/// Calls `f` with each value at `steps` below value `i` of `buf` (None:
/// null or missing, itself or an enclosing struct) until it returns false.
fn visit(buf: &ColBuf, i: Option<usize>, steps: &[Step], f: &mut dyn FnMut(&ColBuf, Option<usize>) -> bool) -> bool {
    let i = i.filter(|&i| buf.is_valid(i));
    match (steps.first(), buf) {
        (None, _) => f(buf, i),
        (Some(Step::Field(k)), ColBuf::Struct { children, .. }) => visit(&children[*k], i, &steps[1..], f),
        (Some(Step::Elem), ColBuf::List { offsets, child, .. }) => {
            let Some(i) = i else { return true };
            (offsets[i] as usize..offsets[i + 1] as usize).all(|j| visit(child, Some(j), &steps[1..], f))
        }
        _ => unreachable!("rule paths follow the column's type"),
    }
}

/// Whether value `i` of `buf` passes `check` (None: a null value).
#[inline]
fn passes(check: &Check, buf: &ColBuf, i: Option<usize>) -> bool {
    let Some(i) = i else { return !matches!(check, Check::NotNull) };
    match check {
        Check::NotNull => true,
        Check::AllowedText(list) => text(buf, i).is_some_and(|t| list.iter().any(|a| a.as_bytes() == t)),
        Check::AllowedInt(list) => exact(buf, i).is_some_and(|v| list.contains(&v)),
        Check::AllowedBool(list) => matches!(buf, ColBuf::Bool(p) if list.contains(&p.vals[i])),
        Check::Range { min, max } => exact(buf, i).is_some_and(|v| min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m)),
        Check::FloatRange { min, max } => {
            let v = match buf {
                ColBuf::F32(p) => p.vals[i] as f64,
                ColBuf::F64(p) => p.vals[i],
                _ => return false,
            };
            min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m)
        }
        // SAFETY: a text column holds whole strings of valid UTF-8 (Columns::key_text_at)
        Check::Pattern(re) => text(buf, i).is_some_and(|t| re.is_match(unsafe { std::str::from_utf8_unchecked(t) })),
        Check::Length { min, max } => {
            let n = match buf {
                ColBuf::List { offsets, .. } => (offsets[i + 1] - offsets[i]) as u64,
                _ => match text(buf, i) {
                    // a string has between len/4 and len characters: count
                    // them only when the bounds do not decide
                    Some(t) if max.is_none_or(|m| t.len() as u64 <= m) && min.is_none_or(|m| (t.len() as u64).div_ceil(4) >= m) => return true,
                    // characters: bytes that do not continue a UTF-8 sequence
                    Some(t) => t.iter().filter(|&&b| (b as i8) >= -0x40).count() as u64,
                    None => return false,
                },
            };
            min.is_none_or(|m| n >= m) && max.is_none_or(|m| n <= m)
        }
    }
}

fn text(buf: &ColBuf, i: usize) -> Option<&[u8]> {
    match buf {
        ColBuf::Bytes { offsets, data, .. } => Some(&data[offsets[i] as usize..offsets[i + 1] as usize]),
        _ => None,
    }
}

/// An integer, decimal (unscaled), date (days) or timestamp (millis) value.
fn exact(buf: &ColBuf, i: usize) -> Option<i128> {
    Some(match buf {
        ColBuf::I8(p) => p.vals[i].into(),
        ColBuf::I16(p) => p.vals[i].into(),
        ColBuf::I32(p) | ColBuf::Date(p) => p.vals[i].into(),
        ColBuf::I64(p) | ColBuf::Ts(p) => p.vals[i].into(),
        ColBuf::Dec(p) => p.vals[i],
        _ => return None,
    })
}

/// The value as a message shows it: JSON-like, strings quoted and cut to
/// 80 characters.
fn value_text(buf: &ColBuf, i: Option<usize>, leaf: &ColType) -> String {
    let Some(i) = i else { return "null".into() };
    match (buf, leaf) {
        (ColBuf::Bytes { .. }, _) => {
            let t = String::from_utf8_lossy(text(buf, i).unwrap_or_default());
            let cut: String = t.chars().take(80).collect();
            let more = if cut.len() < t.len() { "…" } else { "" };
            format!("{}{more}", serde_json::to_string(&cut).unwrap_or_default())
        }
        (ColBuf::Bool(p), _) => p.vals[i].to_string(),
        (ColBuf::F32(p), _) => p.vals[i].to_string(),
        (ColBuf::F64(p), _) => p.vals[i].to_string(),
        (ColBuf::List { offsets, .. }, _) => format!("an array of {} elements", offsets[i + 1] - offsets[i]),
        (ColBuf::Date(p), _) => {
            let (y, m, d) = civil_from_days(p.vals[i] as i64);
            format!("{y:04}-{m:02}-{d:02}")
        }
        (ColBuf::Ts(p), _) => {
            let ms = p.vals[i];
            let c = civil(ms);
            format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", c.year, c.month, c.day, c.hour, c.minute, c.second, ms.rem_euclid(1000))
        }
        (ColBuf::Dec(p), ColType::Decimal { scale, .. }) => decimal_text(p.vals[i], *scale),
        _ => exact(buf, i).map(|v| v.to_string()).unwrap_or_else(|| "a value".into()),
    }
}

fn decimal_text(v: i128, scale: u8) -> String {
    if scale == 0 {
        return v.to_string();
    }
    let p = 10i128.pow(scale as u32);
    let sign = if v < 0 { "-" } else { "" };
    format!("{sign}{}.{:0w$}", (v / p).abs(), (v % p).abs(), w = scale as usize)
}

#[cfg(test)]
mod tests {
    use super::super::{Columns, Decoder, ErrorCode, RecordError};
    use crate::schema::TableSchema;
    use std::sync::Arc;

    const RULES: &str = r#"
table = "t"
[[columns]]
name = "kind"
type = "string"
allowed = ["a", "b"]
[[columns]]
name = "code"
type = "varchar(10)"
pattern = "[A-Z]{2}-\\d+"
[[columns]]
name = "name"
type = "string"
min_length = 2
max_length = 3
[[columns]]
name = "n"
type = "int"
min = -5
max = 10
[[columns]]
name = "level"
type = "tinyint"
allowed = [0, 1, 2]
[[columns]]
name = "ratio"
type = "double"
min = 0.0
max = 1.0
[[columns]]
name = "price"
type = "decimal(6,2)"
min = "0.01"
max = 100
[[columns]]
name = "day"
type = "date"
min = "2026-01-01"
max = 2026-12-31
[[columns]]
name = "ts"
type = "timestamp"
min = "2026-01-01T00:00:00Z"
[[columns]]
name = "flag"
type = "boolean"
allowed = [true]
[[columns]]
name = "user"
type = "bigint"
not_null = true
[[columns]]
name = "device"
type = "struct<os:string,v:int>"
[[columns]]
name = "tags"
type = "array<string>"
max_length = 2
[[columns]]
name = "is_bot"
type = "boolean"
[[columns]]
name = "path"
type = "string"
[[rules]]
column = "device.os"
allowed = ["ios", "android"]
[[rules]]
column = "tags[]"
max_length = 3
not_null = true
[[rules]]
column = "device.v"
min = 1
[[filters]]
name = "bots"
column = "is_bot"
equals = true
[[filters]]
name = "health"
column = "path"
in = ["/health", "/ping"]
"#;

    /// The verdict of both decode paths on one record, which must agree.
    fn verdict(dec: &mut Decoder, schema: &Arc<TableSchema>, rec: &str) -> Result<(), RecordError> {
        let (mut a, mut b) = (Columns::new(schema), Columns::new(schema));
        let fused = dec.decode_fused(rec.as_bytes(), &mut a);
        let general = dec.parse(rec.as_bytes()).and_then(|r| r.append_to(&mut b));
        assert!(!fused || general.is_ok(), "fused took what the general path refuses: {rec} ({general:?})");
        assert_eq!(a.rows, usize::from(fused), "{rec}");
        assert_eq!(b.rows, usize::from(general.is_ok()), "a refused row leaves nothing: {rec}");
        general
    }

    /// Every rule kind takes its boundary values and refuses the value just
    /// past them, on top-level columns, struct fields and array elements,
    /// with nulls and unicode lengths; the reason names column, rule and value.
    #[test]
    fn each_rule_takes_its_bounds_and_refuses_the_value_past_them() {
        let schema = Arc::new(TableSchema::parse("t.toml", RULES).unwrap());
        let mut dec = Decoder::new(schema.clone(), 4096);
        // (fields added to {"user":1}, None = lands, Some(what the reason holds))
        let cases: &[(&str, Option<&str>)] = &[
            (r#""kind":"a""#, None),
            (r#""kind":"b""#, None),
            (r#""kind":"c""#, Some(r#"column 'kind': rule `allowed = ["a", "b"]` fails for "c""#)),
            (r#""kind":null"#, None),
            (r#""code":"AB-12""#, None),
            (r#""code":"AB-12x""#, Some(r#"column 'code': rule `pattern = "[A-Z]{2}-\\d+"` fails for "AB-12x""#)),
            (r#""code":"xAB-1""#, Some("fails for \"xAB-1\"")),
            (r#""name":"ab""#, None),
            (r#""name":"abc""#, None),
            (r#""name":"a""#, Some("column 'name': rule `min_length = 2, max_length = 3` fails for \"a\"")),
            (r#""name":"abcd""#, Some("fails for \"abcd\"")),
            (r#""name":"éé""#, None),
            (r#""name":"日本語""#, None),
            (r#""name":"éééé""#, Some("fails for \"éééé\"")),
            (r#""n":-5"#, None),
            (r#""n":10"#, None),
            (r#""n":-6"#, Some("column 'n': rule `min = -5, max = 10` fails for -6")),
            (r#""n":"11""#, Some("fails for 11")),
            (r#""level":2"#, None),
            (r#""level":3"#, Some("column 'level': rule `allowed = [0, 1, 2]` fails for 3")),
            (r#""ratio":0"#, None),
            (r#""ratio":1.0"#, None),
            (r#""ratio":1.0000001"#, Some("column 'ratio': rule `min = 0.0, max = 1.0` fails for 1.0000001")),
            (r#""ratio":-0.1"#, Some("fails for -0.1")),
            (r#""price":0.01"#, None),
            (r#""price":"100""#, None),
            (r#""price":0"#, Some("column 'price': rule `min = \"0.01\", max = 100` fails for 0.00")),
            (r#""price":100.01"#, Some("fails for 100.01")),
            (r#""day":"2026-01-01""#, None),
            (r#""day":"2026-12-31""#, None),
            (r#""day":"2025-12-31""#, Some("column 'day': rule `min = \"2026-01-01\", max = 2026-12-31` fails for 2025-12-31")),
            (r#""day":"2027-01-01""#, Some("fails for 2027-01-01")),
            (r#""ts":"2026-01-01T00:00:00Z""#, None),
            (r#""ts":"2026-01-01T01:00:00+01:00""#, None),
            (r#""ts":"2025-12-31T23:59:59.999Z""#, Some("column 'ts': rule `min = \"2026-01-01T00:00:00Z\"` fails for 2025-12-31T23:59:59.999Z")),
            (r#""flag":true"#, None),
            (r#""flag":false"#, Some("column 'flag': rule `allowed = [true]` fails for false")),
            (r#""flag":null"#, None),
            (r#""user":null"#, Some("column 'user': rule `not_null = true` fails for null")),
            (r#""device":{"os":"ios","v":1}"#, None),
            (r#""device":null"#, None),
            (r#""device":{"os":"win"}"#, Some(r#"column 'device.os': rule `allowed = ["ios", "android"]` fails for "win""#)),
            (r#""device":{"os":"ios","v":0}"#, Some("column 'device.v': rule `min = 1` fails for 0")),
            (r#""tags":["a","bcd"]"#, None),
            (r#""tags":[]"#, None),
            (r#""tags":null"#, None),
            (r#""tags":["a","b","c"]"#, Some("column 'tags': rule `max_length = 2` fails for an array of 3 elements")),
            (r#""tags":["abcd"]"#, Some("column 'tags[]': rule `max_length = 3` fails for \"abcd\"")),
            (r#""tags":["a",null]"#, Some("column 'tags[]': rule `not_null = true` fails for null")),
        ];
        for (fields, want) in cases {
            let rec = format!("{{\"user\":1,{fields}}}").replace("\"user\":1,\"user\"", "\"user\"");
            match (verdict(&mut dec, &schema, &rec), want) {
                (Ok(()), None) => {}
                (Err(e), Some(w)) => {
                    assert_eq!(e.code, ErrorCode::ValidationFailed, "{rec}");
                    assert!(e.message.contains(w), "{rec}: {:?} does not say {w:?}", e.message);
                }
                (got, want) => panic!("{rec}: got {got:?}, want {want:?}"),
            }
        }
        let missing = verdict(&mut dec, &schema, r#"{"kind":"a"}"#).unwrap_err();
        assert_eq!(missing.message, "column 'user': rule `not_null = true` fails for null");
        assert_eq!(missing.code.as_str(), "lakehose.ValidationFailed");
    }

    /// Filters drop a record whose value matches; a null or other value,
    /// or a rule failing first, does not count as the filter's.
    #[test]
    fn filters_drop_matching_records_by_name() {
        let schema = Arc::new(TableSchema::parse("t.toml", RULES).unwrap());
        let mut dec = Decoder::new(schema.clone(), 4096);
        let name = |r: &str, dec: &mut Decoder| verdict(dec, &schema, r).err().map(|e| (e.code, e.message));
        assert_eq!(name(r#"{"user":1,"is_bot":true}"#, &mut dec), Some((ErrorCode::Filtered, "bots".into())));
        assert_eq!(name(r#"{"user":1,"is_bot":"TRUE"}"#, &mut dec), Some((ErrorCode::Filtered, "bots".into())));
        assert_eq!(name(r#"{"user":1,"is_bot":false}"#, &mut dec), None);
        assert_eq!(name(r#"{"user":1,"is_bot":null}"#, &mut dec), None);
        assert_eq!(name(r#"{"user":1,"path":"/ping"}"#, &mut dec), Some((ErrorCode::Filtered, "health".into())));
        assert_eq!(name(r#"{"user":1,"path":"/pong"}"#, &mut dec), None);
        assert_eq!(name(r#"{"user":1,"path":"/ping","is_bot":true}"#, &mut dec), Some((ErrorCode::Filtered, "bots".into())));
        // rules first: a bad record is an error even when a filter matches it
        assert_eq!(name(r#"{"user":null,"is_bot":true}"#, &mut dec).map(|e| e.0), Some(ErrorCode::ValidationFailed));
    }

    /// Bad rules stop the schema from loading, naming line, key and fix.
    #[test]
    fn bad_rules_are_refused_naming_line_and_key() {
        let base = "table = \"t\"\n[[columns]]\nname = \"s\"\ntype = \"string\"\n[[columns]]\nname = \"n\"\ntype = \"int\"\n[[columns]]\nname = \"d\"\ntype = \"struct<os:string>\"\n";
        let cases = [
            ("[[rules]]\ncolumn = \"s\"\npattern = \"a(\"\n", "t.toml:13: key `rules[0].pattern`: the regex does not compile"),
            ("[[rules]]\ncolumn = \"n\"\nmin = 5\nmax = 1\n", "t.toml:13: key `rules[0].min`: min 5 is over max 1"),
            ("[[rules]]\ncolumn = \"n\"\npattern = \"1\"\n", "key `rules[0].pattern`: pattern applies to string and varchar values, not int"),
            ("[[rules]]\ncolumn = \"s\"\nmin = 1\n", "min/max apply to numbers, decimals, dates and timestamps, not string"),
            ("[[rules]]\ncolumn = \"n\"\nallowed = [\"x\"]\n", "key `rules[0].allowed`: \"x\" is not an integer (a int column)"),
            ("[[rules]]\ncolumn = \"d.model\"\nnot_null = true\n", "key `rules[0].column`: struct \"d\" has no field \"model\" (fields: os)"),
            ("[[rules]]\ncolumn = \"s[]\"\nnot_null = true\n", "\"s\" is string, not an array"),
            ("[[rules]]\ncolumn = \"x\"\nnot_null = true\n", "key `rules[0].column`: \"x\" is not a column of this schema"),
            ("[[rules]]\ncolumn = \"s\"\n", "key `rules[0]`: a rule needs at least one of"),
            ("[[rules]]\ncolumn = \"s\"\nmax_len = 3\n", "unknown field `max_len`"),
            ("[[filters]]\nname = \"f\"\ncolumn = \"s\"\n", "key `filters[0]`: a filter needs exactly one predicate"),
            ("[[filters]]\nname = \"a b\"\ncolumn = \"s\"\nequals = \"x\"\n", "key `filters[0].name`"),
        ];
        for (extra, want) in cases {
            let err = TableSchema::parse("t.toml", &format!("{base}{extra}")).unwrap_err().to_string();
            assert!(err.contains(want), "{extra}: {err:?} does not say {want:?}");
        }
        let inline = base.replace("type = \"int\"\n", "type = \"int\"\nmin_length = 1\n");
        let err = TableSchema::parse("t.toml", &inline).unwrap_err().to_string();
        assert!(err.contains("t.toml:8: key `columns[1].min_length`: min_length/max_length apply to string"), "{err}");
    }
}
