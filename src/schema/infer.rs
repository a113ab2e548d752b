//! `lakehose schema infer`: draft a schema file from sample NDJSON.
//!
//! Input: NDJSON bytes. Output: the TOML text of a schema file: one column
//! per top-level key in order of first appearance, types merged over all
//! records (integers → bigint, mixed integers and floats → double, RFC 3339
//! strings → timestamp, `yyyy-MM-dd` strings → date, objects → struct,
//! arrays → array; conflicting types → string, which keeps the JSON text),
//! `required` when a key is present and non-null in every record, and the
//! first timestamp column as the hourly partition time. Lines that are not
//! JSON objects are counted and skipped. The draft is for review, not final.

use crate::decode::json::{Doc, Kind, Tape};
use crate::timefmt::{parse_date, TsFormat};

#[derive(Debug, Clone, PartialEq)]
enum Ty {
    Null,
    Bool,
    Int,
    Float,
    Str { ts: bool, date: bool },
    Array(Box<Ty>),
    Object(Vec<Field>),
    Text,
}

#[derive(Debug, Clone, PartialEq)]
struct Field {
    key: String,
    ty: Ty,
    nonnull: usize,
}

fn of(doc: &Doc, n: u32) -> Ty {
    match doc.node(n).kind {
        Kind::Null => Ty::Null,
        Kind::True | Kind::False => Ty::Bool,
        Kind::Int => Ty::Int,
        Kind::Float => Ty::Float,
        Kind::Str | Kind::StrEsc => {
            let s = doc.str(n);
            Ty::Str { ts: TsFormat::Rfc3339.parse_str(s).is_some(), date: parse_date(s).is_some() }
        }
        Kind::Array => doc.elements(n).fold(Ty::Array(Box::new(Ty::Null)), |acc, e| match acc {
            Ty::Array(t) => Ty::Array(Box::new(merge(*t, of(doc, e)))),
            _ => unreachable!(),
        }),
        Kind::Object => {
            let mut fields: Vec<Field> = Vec::new();
            for (k, v) in doc.members(n) {
                add_field(&mut fields, doc.str(k), of(doc, v));
            }
            Ty::Object(fields)
        }
    }
}

fn add_field(fields: &mut Vec<Field>, key: &str, t: Ty) {
    let nonnull = usize::from(t != Ty::Null);
    match fields.iter_mut().find(|f| f.key.eq_ignore_ascii_case(key)) {
        Some(f) => {
            f.ty = merge(std::mem::replace(&mut f.ty, Ty::Null), t);
            f.nonnull += nonnull;
        }
        None => fields.push(Field { key: key.to_string(), ty: t, nonnull }),
    }
}

fn merge(a: Ty, b: Ty) -> Ty {
    match (a, b) {
        (Ty::Null, x) | (x, Ty::Null) => x,
        (Ty::Int, Ty::Float) | (Ty::Float, Ty::Int) => Ty::Float,
        (Ty::Str { ts: a, date: c }, Ty::Str { ts: b, date: d }) => Ty::Str { ts: a && b, date: c && d },
        (Ty::Array(a), Ty::Array(b)) => Ty::Array(Box::new(merge(*a, *b))),
        (Ty::Object(mut a), Ty::Object(b)) => {
            // nested fields are always nullable, so their counts do not matter
            for f in b {
                add_field(&mut a, &f.key, f.ty);
            }
            Ty::Object(a)
        }
        (a, b) if a == b => a,
        _ => Ty::Text,
    }
}

fn ident(key: &str) -> String {
    let mut s: String = key.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

fn glue(t: &Ty) -> String {
    match t {
        Ty::Null | Ty::Text => "string".into(),
        Ty::Bool => "boolean".into(),
        Ty::Int => "bigint".into(),
        Ty::Float => "double".into(),
        Ty::Str { ts: true, .. } => "timestamp".into(),
        Ty::Str { date: true, .. } => "date".into(),
        Ty::Str { .. } => "string".into(),
        Ty::Array(e) => format!("array<{}>", glue(e)),
        Ty::Object(fs) if fs.is_empty() => "map<string,string>".into(),
        Ty::Object(fs) if fs.len() > 50 || fs.iter().any(|f| ident(&f.key) != f.key.to_lowercase()) => {
            let v = fs.iter().fold(Ty::Null, |acc, f| merge(acc, f.ty.clone()));
            format!("map<string,{}>", glue(&v))
        }
        Ty::Object(fs) => {
            let inner: Vec<String> = fs.iter().map(|f| format!("{}:{}", ident(&f.key), glue(&f.ty))).collect();
            format!("struct<{}>", inner.join(","))
        }
    }
}

/// Drafts a schema file from NDJSON text. Returns the TOML and (records, skipped lines).
pub fn infer(table: &str, data: &[u8]) -> (String, usize, usize) {
    let mut tape = Tape::default();
    let mut top: Vec<Field> = Vec::new();
    let (mut records, mut skipped) = (0, 0);
    for line in data.split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Ok(_) = std::str::from_utf8(line) else {
            skipped += 1;
            continue;
        };
        match tape.parse(line) {
            Ok(doc) if doc.node(0).kind == Kind::Object => {
                records += 1;
                for (k, v) in doc.members(0) {
                    add_field(&mut top, doc.str(k), of(&doc, v));
                }
            }
            _ => skipped += 1,
        }
    }
    let mut out = format!(
        "# Drafted by `lakehose schema infer` from {records} records. Review the types,\n# `required` flags and the partition before use.\ntable = \"{}\"\n",
        ident(table)
    );
    let mut time_col = None;
    for f in &top {
        let name = ident(&f.key);
        let ty = glue(&f.ty);
        out.push_str(&format!("\n[[columns]]\nname = \"{name}\"\ntype = \"{ty}\"\n"));
        if f.nonnull == records && records > 0 {
            out.push_str("required = true\n");
        }
        if name != f.key.to_lowercase() {
            out.push_str(&format!("source = {}\n", toml::Value::String(f.key.clone())));
        }
        if ty == "timestamp" {
            out.push_str("formats = [\"rfc3339\"]\n");
            time_col.get_or_insert(name);
        }
    }
    let time = time_col.unwrap_or_else(|| "arrival".into());
    out.push_str(&format!("\n[partition]\ntime = {{ column = \"{time}\", granularity = \"hour\" }}\n"));
    (out, records, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::TableSchema;

    #[test]
    fn drafts_a_loadable_schema() {
        let data = br#"{"id":"a","ts":"2026-11-21T10:00:00Z","n":1,"x":1.5,"device":{"os":"ios"},"tags":["a"],"day":"2026-11-21","user-id":7}
{"id":"b","ts":"2026-11-21T11:00:00Z","n":2,"x":2,"device":{"os":"android","model":"p"},"tags":[],"day":"2026-11-22","opt":null}
not json
"#;
        let (toml, records, skipped) = infer("Events", data);
        assert_eq!((records, skipped), (2, 1));
        let s = TableSchema::parse("draft.toml", &toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
        let ty = |n: &str| s.columns[s.column_index(n).unwrap()].ty.glue();
        assert_eq!(ty("id"), "string");
        assert_eq!(ty("ts"), "timestamp");
        assert_eq!(ty("n"), "bigint");
        assert_eq!(ty("x"), "double");
        assert_eq!(ty("device"), "struct<os:string,model:string>");
        assert_eq!(ty("tags"), "array<string>");
        assert_eq!(ty("day"), "date");
        assert_eq!(ty("opt"), "string");
        assert_eq!(s.columns[s.column_index("user_id").unwrap()].source, vec!["user-id"]);
        assert!(s.columns[s.column_index("id").unwrap()].required);
        assert!(!s.columns[s.column_index("user_id").unwrap()].required);
        assert_eq!(s.partition.time, crate::schema::TimeSource::Column(s.column_index("ts").unwrap()));
    }
}
