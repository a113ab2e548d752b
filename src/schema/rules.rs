//! Schema owners' rules: value checks on columns, struct fields and array
//! elements, and filters that drop records.
//!
//! Input: the rule keys of a `[[columns]]` entry (`allowed`, `min`, `max`,
//! `pattern`, `min_length`, `max_length`, `not_null`), `[[rules]]` entries
//! (the same keys and `column = "device.os"` or `"tags[]"`), and
//! `[[filters]]` entries (`name`, `column`, one predicate of `equals`,
//! `in`, `min`/`max`, `pattern`). Output: [`Rule`]s and [`Filter`]s with
//! resolved paths and bounds typed for their column, which
//! `decode::check` evaluates on each decoded row. Failure:
//! [`SchemaError::Invalid`] naming file, line and key and what is
//! accepted: an unknown column or field, a rule on a type it does not
//! apply to, a value of the wrong type, `min > max`, a regex that does not
//! compile.

use super::{ColType, Column, SchemaError};
use crate::timefmt::{parse_date, TsFormat};
use serde::Deserialize;
use toml::Spanned;

/// One step from a column to the value a rule checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Into a struct's field (its index).
    Field(usize),
    /// Into each element of an array.
    Elem,
}

/// Where a rule's values are: a top-level column, then steps.
#[derive(Debug, Clone, PartialEq)]
pub struct RulePath {
    pub column: usize,
    pub steps: Vec<Step>,
    /// As written in messages: `device.os`, `tags[]`.
    pub name: String,
    /// The type of the checked values.
    pub leaf: ColType,
}

/// What a value must be. Bounds are typed for the leaf: integers, decimals
/// (scaled), dates (days) and timestamps (epoch millis) as `i128`.
#[derive(Debug, Clone)]
pub enum Check {
    NotNull,
    AllowedText(Vec<String>),
    AllowedInt(Vec<i128>),
    AllowedBool(Vec<bool>),
    Range { min: Option<i128>, max: Option<i128> },
    FloatRange { min: Option<f64>, max: Option<f64> },
    /// Matched against the whole string (compiled as `^(?:…)$`).
    Pattern(regex::Regex),
    /// Characters of a string, elements of an array.
    Length { min: Option<u64>, max: Option<u64> },
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub path: RulePath,
    pub check: Check,
    /// The rule as the schema file says it, for messages: `min = 0`.
    pub text: String,
}

/// Drops a record whose value at `path` is present and passes `check`.
#[derive(Debug, Clone)]
pub struct Filter {
    pub name: String,
    pub path: RulePath,
    pub check: Check,
    pub text: String,
}

/// The rule keys of a `[[columns]]` or `[[rules]]` entry.
#[derive(Default, Clone)]
pub(super) struct RawRuleKeys {
    pub allowed: Option<Spanned<Vec<toml::Value>>>,
    pub min: Option<Spanned<toml::Value>>,
    pub max: Option<Spanned<toml::Value>>,
    pub pattern: Option<Spanned<String>>,
    pub min_length: Option<Spanned<u64>>,
    pub max_length: Option<Spanned<u64>>,
    pub not_null: Option<Spanned<bool>>,
}

/// Declares a raw entry struct with the rule keys (serde cannot flatten
/// into a struct that denies unknown keys) and a method returning them.
macro_rules! with_rule_keys {
    ($(#[$m:meta])* $vis:vis struct $name:ident { $($(#[$fm:meta])* $fv:vis $f:ident : $t:ty,)* }) => {
        $(#[$m])*
        $vis struct $name {
            $($(#[$fm])* $fv $f: $t,)*
            allowed: Option<Spanned<Vec<toml::Value>>>,
            min: Option<Spanned<toml::Value>>,
            max: Option<Spanned<toml::Value>>,
            pattern: Option<Spanned<String>>,
            min_length: Option<Spanned<u64>>,
            max_length: Option<Spanned<u64>>,
            not_null: Option<Spanned<bool>>,
        }
        impl $name {
            pub(super) fn rule_keys(&self) -> $crate::schema::rules::RawRuleKeys {
                $crate::schema::rules::RawRuleKeys {
                    allowed: self.allowed.clone(),
                    min: self.min.clone(),
                    max: self.max.clone(),
                    pattern: self.pattern.clone(),
                    min_length: self.min_length.clone(),
                    max_length: self.max_length.clone(),
                    not_null: self.not_null.clone(),
                }
            }
        }
    };
}
pub(super) use with_rule_keys;

with_rule_keys! {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct RawRule {
        pub column: Spanned<String>,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFilter {
    pub name: Spanned<String>,
    pub column: Spanned<String>,
    pub equals: Option<Spanned<toml::Value>>,
    #[serde(rename = "in")]
    pub in_: Option<Spanned<Vec<toml::Value>>>,
    pub min: Option<Spanned<toml::Value>>,
    pub max: Option<Spanned<toml::Value>>,
    pub pattern: Option<Spanned<String>>,
}

type Span = std::ops::Range<usize>;
type Bad<'a> = dyn Fn(Span, &str, String) -> SchemaError + 'a;

/// Resolves `device.os`, `tags[]`, `items[].sku` against the columns.
pub(super) fn resolve(columns: &[Column], text: &str) -> Result<RulePath, String> {
    let mut segs = text.split('.');
    let first = segs.next().unwrap_or_default();
    let (name, mut elems) = strip_elems(first);
    let column = columns
        .iter()
        .position(|c| c.name == name.to_ascii_lowercase())
        .ok_or_else(|| format!("{name:?} is not a column of this schema"))?;
    let mut ty = columns[column].ty.clone();
    let mut steps = Vec::new();
    let mut seg = Some(name);
    loop {
        for _ in 0..elems {
            match ty {
                ColType::Array(e) => {
                    steps.push(Step::Elem);
                    ty = *e;
                }
                other => return Err(format!("{:?} is {}, not an array: `[]` applies to arrays", seg.unwrap_or(text), other.glue())),
            }
        }
        let Some(next) = segs.next() else { break };
        let (field, e) = strip_elems(next);
        let ColType::Struct(fields) = &ty else {
            return Err(format!("{:?} is {}, not a struct: `.{field}` applies to structs", seg.unwrap_or(text), ty.glue()));
        };
        let i = fields
            .iter()
            .position(|f| f.name == field.to_ascii_lowercase())
            .ok_or_else(|| format!("struct {:?} has no field {field:?} (fields: {})", seg.unwrap_or(text), fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")))?;
        steps.push(Step::Field(i));
        ty = fields[i].ty.clone();
        (seg, elems) = (Some(field), e);
    }
    Ok(RulePath { column, steps, name: text.to_ascii_lowercase(), leaf: ty })
}

fn strip_elems(seg: &str) -> (&str, usize) {
    let mut s = seg;
    let mut n = 0;
    while let Some(rest) = s.strip_suffix("[]") {
        (s, n) = (rest, n + 1);
    }
    (s, n)
}

/// Compiles the rule keys of one entry for the values at `path`. `key`
/// names the entry in messages (`columns[2]`, `rules[0]`).
pub(super) fn compile_rules(path: &RulePath, k: &RawRuleKeys, key: &str, bad: &Bad) -> Result<Vec<Rule>, SchemaError> {
    let mut out = Vec::new();
    let leaf = &path.leaf;
    let at = |k: &str| format!("{key}.{k}");
    if let Some(n) = &k.not_null {
        if *n.get_ref() {
            out.push(Rule { path: path.clone(), check: Check::NotNull, text: "not_null = true".into() });
        }
    }
    if let Some(a) = &k.allowed {
        let check = allowed(leaf, a.get_ref()).map_err(|m| bad(a.span(), &at("allowed"), m))?;
        out.push(Rule { path: path.clone(), check, text: format!("allowed = {}", list_text(a.get_ref())) });
    }
    if k.min.is_some() || k.max.is_some() {
        let span = k.min.as_ref().or(k.max.as_ref()).unwrap().span();
        let check = range(leaf, k.min.as_ref().map(Spanned::get_ref), k.max.as_ref().map(Spanned::get_ref))
            .map_err(|m| bad(span, &at(if k.min.is_some() { "min" } else { "max" }), m))?;
        let text = bounds_text([("min", k.min.as_ref().map(Spanned::get_ref)), ("max", k.max.as_ref().map(Spanned::get_ref))]);
        out.push(Rule { path: path.clone(), check, text });
    }
    if let Some(p) = &k.pattern {
        let check = pattern(leaf, p.get_ref()).map_err(|m| bad(p.span(), &at("pattern"), m))?;
        out.push(Rule { path: path.clone(), check, text: format!("pattern = {:?}", p.get_ref()) });
    }
    if k.min_length.is_some() || k.max_length.is_some() {
        let span = k.min_length.as_ref().or(k.max_length.as_ref()).unwrap().span();
        let (min, max) = (k.min_length.as_ref().map(|v| *v.get_ref()), k.max_length.as_ref().map(|v| *v.get_ref()));
        let key = at(if k.min_length.is_some() { "min_length" } else { "max_length" });
        if !matches!(leaf, ColType::String | ColType::Varchar(_) | ColType::Array(_)) {
            return Err(bad(span, &key, format!("min_length/max_length apply to string, varchar and array values; {:?} is {}", path.name, leaf.glue())));
        }
        if let (Some(a), Some(b)) = (min, max) {
            if a > b {
                return Err(bad(span, &key, format!("min_length {a} is over max_length {b}")));
            }
        }
        let text = bounds_text([("min_length", min), ("max_length", max)]);
        out.push(Rule { path: path.clone(), check: Check::Length { min, max }, text });
    }
    Ok(out)
}

/// Compiles one `[[filters]]` entry.
pub(super) fn compile_filter(columns: &[Column], f: &RawFilter, key: &str, bad: &Bad) -> Result<Filter, SchemaError> {
    let at = |k: &str| format!("{key}.{k}");
    let path = resolve(columns, f.column.get_ref()).map_err(|m| bad(f.column.span(), &at("column"), m))?;
    if path.steps.contains(&Step::Elem) {
        return Err(bad(f.column.span(), &at("column"), "a filter tests one value: array elements (`[]`) are not allowed".into()));
    }
    let name = f.name.get_ref();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(bad(f.name.span(), &at("name"), format!("filter name {name:?} must be letters, digits, '_' or '-' (it is a metric label)")));
    }
    let given = [f.equals.is_some(), f.in_.is_some(), f.min.is_some() || f.max.is_some(), f.pattern.is_some()];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(bad(f.name.span(), key, "a filter needs exactly one predicate: equals, in, min/max or pattern".into()));
    }
    let leaf = &path.leaf;
    let (check, text) = if let Some(v) = &f.equals {
        let one = std::slice::from_ref(v.get_ref());
        (allowed(leaf, one).map_err(|m| bad(v.span(), &at("equals"), m))?, format!("{} = {}", path.name, v.get_ref()))
    } else if let Some(l) = &f.in_ {
        (allowed(leaf, l.get_ref()).map_err(|m| bad(l.span(), &at("in"), m))?, format!("{} in {}", path.name, list_text(l.get_ref())))
    } else if let Some(p) = &f.pattern {
        (pattern(leaf, p.get_ref()).map_err(|m| bad(p.span(), &at("pattern"), m))?, format!("{} matches {:?}", path.name, p.get_ref()))
    } else {
        let span = f.min.as_ref().or(f.max.as_ref()).unwrap().span();
        let check = range(leaf, f.min.as_ref().map(Spanned::get_ref), f.max.as_ref().map(Spanned::get_ref)).map_err(|m| bad(span, &at("min"), m))?;
        let text = bounds_text([("min", f.min.as_ref().map(Spanned::get_ref)), ("max", f.max.as_ref().map(Spanned::get_ref))]);
        (check, format!("{} in range ({text})", path.name))
    };
    Ok(Filter { name: name.clone(), path, check, text })
}

/// `min = 0, max = 10` of the bounds given, as the schema file says them.
fn bounds_text<T: std::fmt::Display>(bounds: [(&str, Option<T>); 2]) -> String {
    bounds.iter().filter_map(|(n, v)| v.as_ref().map(|v| format!("{n} = {v}"))).collect::<Vec<_>>().join(", ")
}

fn list_text(l: &[toml::Value]) -> String {
    format!("[{}]", l.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", "))
}

fn allowed(leaf: &ColType, list: &[toml::Value]) -> Result<Check, String> {
    if list.is_empty() {
        return Err("the list is empty: no value could pass".into());
    }
    let each = |what: &str| format!("every value must be {what} for a {} column", leaf.glue());
    Ok(match leaf {
        ColType::String | ColType::Varchar(_) => Check::AllowedText(list.iter().map(|v| v.as_str().map(str::to_string)).collect::<Option<_>>().ok_or_else(|| each("a string"))?),
        ColType::Boolean => Check::AllowedBool(list.iter().map(toml::Value::as_bool).collect::<Option<_>>().ok_or_else(|| each("true or false"))?),
        ColType::TinyInt | ColType::SmallInt | ColType::Int | ColType::BigInt | ColType::Decimal { .. } => {
            Check::AllowedInt(list.iter().map(|v| exact(leaf, v)).collect::<Result<_, _>>()?)
        }
        other => return Err(format!("allowed applies to string, integer, decimal and boolean values, not {}", other.glue())),
    })
}

fn range(leaf: &ColType, min: Option<&toml::Value>, max: Option<&toml::Value>) -> Result<Check, String> {
    match leaf {
        ColType::Float | ColType::Double => {
            let f = |v: &toml::Value| v.as_float().or(v.as_integer().map(|i| i as f64)).ok_or_else(|| format!("{v} is not a number"));
            let (min, max) = (min.map(f).transpose()?, max.map(f).transpose()?);
            if let (Some(a), Some(b)) = (min, max) {
                if a > b {
                    return Err(format!("min {a} is over max {b}"));
                }
            }
            Ok(Check::FloatRange { min, max })
        }
        ColType::TinyInt | ColType::SmallInt | ColType::Int | ColType::BigInt | ColType::Decimal { .. } | ColType::Date | ColType::Timestamp => {
            let (lo, hi) = (min.map(|v| exact(leaf, v)).transpose()?, max.map(|v| exact(leaf, v)).transpose()?);
            if let (Some(a), Some(b)) = (lo, hi) {
                if a > b {
                    return Err(format!("min {} is over max {}", min.unwrap(), max.unwrap()));
                }
            }
            Ok(Check::Range { min: lo, max: hi })
        }
        other => Err(format!("min/max apply to numbers, decimals, dates and timestamps, not {}", other.glue())),
    }
}

fn pattern(leaf: &ColType, p: &str) -> Result<Check, String> {
    if !matches!(leaf, ColType::String | ColType::Varchar(_)) {
        return Err(format!("pattern applies to string and varchar values, not {}", leaf.glue()));
    }
    regex::Regex::new(&format!("^(?:{p})$")).map(Check::Pattern).map_err(|e| format!("the regex does not compile: {e}"))
}

/// A bound or listed value as the leaf stores it: integers as they are,
/// decimals scaled, dates in days, timestamps in epoch millis.
fn exact(leaf: &ColType, v: &toml::Value) -> Result<i128, String> {
    let text = match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let wrong = |what: &str| format!("{v} is not {what} (a {} column)", leaf.glue());
    match leaf {
        ColType::TinyInt | ColType::SmallInt | ColType::Int | ColType::BigInt => v.as_integer().map(i128::from).ok_or_else(|| wrong("an integer")),
        ColType::Decimal { scale, .. } => {
            if !matches!(v, toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::String(_)) {
                return Err(wrong("a number"));
            }
            crate::decode::decimal_from_text(&text, 38, *scale).map_err(|_| wrong(&format!("a decimal with at most {scale} places")))
        }
        ColType::Date => parse_date(&text).map(i128::from).ok_or_else(|| wrong("a date (\"yyyy-MM-dd\")")),
        ColType::Timestamp => TsFormat::parse("rfc3339")
            .expect("rfc3339 is a format")
            .parse_str(&text)
            .map(i128::from)
            .ok_or_else(|| wrong("an RFC 3339 timestamp (\"2026-01-01T00:00:00Z\")")),
        _ => Err(wrong("comparable")),
    }
}

/// Rule and filter changes from `old` to `new` that can turn records
/// which passed into error records or drop them: a rule added or
/// narrowed, a filter added or changed. Widened or removed rules are not
/// listed. One line each, naming the column and the rule.
pub fn stricter(old: &super::TableSchema, new: &super::TableSchema) -> Vec<String> {
    let mut out = Vec::new();
    for r in &new.rules {
        let same_kind = old.rules.iter().filter(|o| o.path.name == r.path.name && std::mem::discriminant(&o.check) == std::mem::discriminant(&r.check));
        let mut narrower = true;
        for o in same_kind {
            narrower &= narrows(&o.check, &r.check);
        }
        if narrower {
            out.push(format!("column '{}': rule `{}` may reject records that passed", r.path.name, r.text));
        }
    }
    for f in &new.filters {
        if !old.filters.iter().any(|o| o.name == f.name && o.text == f.text) {
            out.push(format!("filter '{}' ({}) drops records that landed before", f.name, f.text));
        }
    }
    out
}

/// Whether `new` rejects a value `old` accepts (checks of one kind).
fn narrows(old: &Check, new: &Check) -> bool {
    fn below<T: PartialOrd>(o: Option<T>, n: Option<T>) -> bool {
        // a lower bound raised (or added)
        match (o, n) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(o), Some(n)) => n > o,
        }
    }
    fn above<T: PartialOrd>(o: Option<T>, n: Option<T>) -> bool {
        match (o, n) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(o), Some(n)) => n < o,
        }
    }
    match (old, new) {
        (Check::NotNull, Check::NotNull) => false,
        (Check::AllowedText(o), Check::AllowedText(n)) => o.iter().any(|v| !n.contains(v)),
        (Check::AllowedInt(o), Check::AllowedInt(n)) => o.iter().any(|v| !n.contains(v)),
        (Check::AllowedBool(o), Check::AllowedBool(n)) => o.iter().any(|v| !n.contains(v)),
        (Check::Range { min: a, max: b }, Check::Range { min: c, max: d }) => below(*a, *c) || above(*b, *d),
        (Check::FloatRange { min: a, max: b }, Check::FloatRange { min: c, max: d }) => below(*a, *c) || above(*b, *d),
        (Check::Pattern(o), Check::Pattern(n)) => o.as_str() != n.as_str(),
        (Check::Length { min: a, max: b }, Check::Length { min: c, max: d }) => below(*a, *c) || above(*b, *d),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use crate::schema::TableSchema;

    fn schema(extra: &str) -> TableSchema {
        let base = "table = \"t\"\n[[columns]]\nname = \"s\"\ntype = \"string\"\n[[columns]]\nname = \"n\"\ntype = \"int\"\n";
        TableSchema::parse("t.toml", &format!("{base}{extra}")).unwrap()
    }

    /// `schema check --against` lists the rule edits that can reject
    /// records which passed, and none of those that only widen.
    #[test]
    fn stricter_lists_added_and_narrowed_rules_only() {
        let old = schema("[[rules]]\ncolumn = \"n\"\nmin = 0\nmax = 10\n[[rules]]\ncolumn = \"s\"\nallowed = [\"a\", \"b\"]\n[[filters]]\nname = \"f\"\ncolumn = \"s\"\nequals = \"x\"\n");
        let cases = [
            ("[[rules]]\ncolumn = \"n\"\nmin = -1\nmax = 20\n[[rules]]\ncolumn = \"s\"\nallowed = [\"a\", \"b\", \"c\"]\n[[filters]]\nname = \"f\"\ncolumn = \"s\"\nequals = \"x\"\n", vec![]),
            ("[[rules]]\ncolumn = \"n\"\nmin = 1\nmax = 10\n[[rules]]\ncolumn = \"s\"\nallowed = [\"a\", \"b\"]\n[[filters]]\nname = \"f\"\ncolumn = \"s\"\nequals = \"x\"\n", vec!["column 'n': rule `min = 1, max = 10`"]),
            ("[[rules]]\ncolumn = \"n\"\nmin = 0\nmax = 10\n[[rules]]\ncolumn = \"s\"\nallowed = [\"a\"]\n[[rules]]\ncolumn = \"s\"\nmax_length = 3\n", vec!["column 's': rule `allowed = [\"a\"]`", "column 's': rule `max_length = 3`"]),
            ("[[rules]]\ncolumn = \"n\"\nmin = 0\nmax = 10\n[[rules]]\ncolumn = \"s\"\nallowed = [\"a\", \"b\"]\n[[filters]]\nname = \"f\"\ncolumn = \"s\"\nequals = \"y\"\n", vec!["filter 'f' (s = \"y\")"]),
        ];
        for (extra, want) in cases {
            let got = super::stricter(&old, &schema(extra));
            assert_eq!(got.len(), want.len(), "{extra}: {got:?}");
            for (g, w) in got.iter().zip(&want) {
                assert!(g.starts_with(w), "{g:?} does not start with {w:?}");
            }
        }
    }
}
