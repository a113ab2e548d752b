//! Partition values → object-key prefixes.
//!
//! Input: a record's partition time (epoch millis, from its event-time
//! column or its arrival time) and the canonical text of its key columns.
//! Output: a Hive-style prefix such as `dt=2026-11-21/hr=13/event_type=click/`
//! (or the schema's Firehose-syntax layout). Values are escaped as Hive
//! escapes path names, and a null value becomes `__HIVE_DEFAULT_PARTITION__`,
//! so every prefix is a valid partition location for Glue and Athena.

use crate::schema::{LayoutPart, PartitionSpec};
use crate::timefmt::{civil, format_pattern, PatTok};
use std::fmt::Write;

pub const DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// Appends `v` escaped as Hive's `FileUtils.escapePathName` does.
pub fn escape_value(v: &str, out: &mut String) {
    if v.is_empty() {
        out.push_str(DEFAULT_PARTITION);
        return;
    }
    for c in v.chars() {
        let esc = (c as u32) < 0x20
            || matches!(c, '"' | '#' | '%' | '\'' | '*' | '/' | ':' | '=' | '?' | '\\' | '\x7f' | '{' | '[' | ']' | '^');
        if esc {
            let _ = write!(out, "%{:02X}", c as u32);
        } else {
            out.push(c);
        }
    }
}

/// The partition values of a prefix, in order: the value of each
/// `name=value/` segment (or the whole segment of a custom layout),
/// unescaped. Inverse of [`render`] for the catalog.
pub fn prefix_values(prefix: &str) -> Vec<String> {
    prefix
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|seg| {
            let v = seg.split_once('=').map_or(seg, |(_, v)| v);
            let b = v.as_bytes();
            let mut out = Vec::with_capacity(b.len());
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'%' && i + 2 < b.len() && v.is_char_boundary(i + 3) {
                    if let Ok(x) = u8::from_str_radix(&v[i + 1..i + 3], 16) {
                        out.push(x);
                        i += 3;
                        continue;
                    }
                }
                out.push(b[i]);
                i += 1;
            }
            String::from_utf8_lossy(&out).into_owned()
        })
        .collect()
}

/// Renders the partition prefix of a record into `out` (cleared first).
pub fn render(spec: &PartitionSpec, time_ms: i64, keys: &[Option<std::borrow::Cow<str>>], out: &mut String) {
    render_cached(spec, time_ms, keys, out, &mut TimeCache::default());
}

/// The formatted time parts per hour, when the layout's time patterns name
/// nothing finer than the hour (the default layout). Bounded: cleared when
/// it holds more than [`TimeCache::MAX`] hours.
#[derive(Default)]
pub struct TimeCache {
    hours: crate::hash::FastMap<i64, Vec<String>>,
    /// Parts of the last record when the layout cannot be cached.
    fresh: Vec<String>,
    /// The hour and whole prefix of the last record, when the layout has
    /// no value keys: consecutive records of one hour copy it.
    last: Option<(i64, String)>,
}

impl TimeCache {
    pub const MAX: usize = 4096;
}

/// True when no time pattern of the layout names anything finer than the hour.
pub fn layout_is_hourly(layout: &[LayoutPart]) -> bool {
    layout.iter().all(|p| !matches!(p, LayoutPart::Time(t) if !hourly(t)))
}

fn hourly(toks: &[PatTok]) -> bool {
    toks.iter().all(|t| match t {
        PatTok::Year | PatTok::Month | PatTok::Day | PatTok::Hour | PatTok::Lit(_) => true,
        PatTok::Optional(inner) => hourly(inner),
        _ => false,
    })
}

fn time_parts(spec: &PartitionSpec, time_ms: i64, parts: &mut Vec<String>) {
    parts.clear();
    for part in &spec.layout {
        if let LayoutPart::Time(p) = part {
            let mut s = String::new();
            format_pattern(time_ms, p, &mut s);
            parts.push(s);
        }
    }
}

/// As [`render`], reusing the formatted time parts of hours seen before.
pub fn render_cached(spec: &PartitionSpec, time_ms: i64, keys: &[Option<std::borrow::Cow<str>>], out: &mut String, cache: &mut TimeCache) {
    if time_ms == crate::schema::NULL_TIME {
        return render_null_time(spec, keys, out);
    }
    let hour = time_ms.div_euclid(3_600_000);
    let whole = spec.hourly && spec.keys.is_empty();
    if whole {
        if let Some((h, prefix)) = &cache.last {
            if *h == hour {
                out.clear();
                out.push_str(prefix);
                return;
            }
        }
    }
    let parts: &Vec<String> = if spec.hourly {
        if cache.hours.len() >= TimeCache::MAX && !cache.hours.contains_key(&hour) {
            cache.hours.clear();
        }
        cache.hours.entry(hour).or_insert_with(|| {
            let mut v = Vec::new();
            time_parts(spec, time_ms, &mut v);
            v
        })
    } else {
        time_parts(spec, time_ms, &mut cache.fresh);
        &cache.fresh
    };
    out.clear();
    let mut times = parts.iter();
    for part in &spec.layout {
        match part {
            LayoutPart::Lit(l) => out.push_str(l),
            LayoutPart::Time(_) => out.push_str(times.next().expect("one cached part per time part")),
            LayoutPart::Key(i) => match &keys[*i] {
                Some(v) => escape_value(v, out),
                None => out.push_str(DEFAULT_PARTITION),
            },
        }
    }
    if whole {
        // the hour's prefix, in the buffer of the last one (hours of event
        // times in no order change with most records)
        let (h, last) = cache.last.get_or_insert_with(|| (hour, String::new()));
        *h = hour;
        last.clear();
        last.push_str(out);
    }
}

/// The prefix of a record with no event time: every time part is the
/// default (null) partition.
#[cold]
fn render_null_time(spec: &PartitionSpec, keys: &[Option<std::borrow::Cow<str>>], out: &mut String) {
    out.clear();
    for part in &spec.layout {
        match part {
            LayoutPart::Lit(l) => out.push_str(l),
            LayoutPart::Time(_) => out.push_str(DEFAULT_PARTITION),
            LayoutPart::Key(i) => match &keys[*i] {
                Some(v) => escape_value(v, out),
                None => out.push_str(DEFAULT_PARTITION),
            },
        }
    }
}

/// `dt=YYYY-MM-DD/hr=HH/` of an instant: the prefix of raw backups and errors.
pub fn hour_prefix(ms: i64) -> String {
    let c = civil(ms);
    format!("dt={:04}-{:02}-{:02}/hr={:02}/", c.year, c.month, c.day, c.hour)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::TableSchema;

    #[test]
    fn renders_hive_prefixes_with_escaping() {
        let s = TableSchema::parse(
            "x.toml",
            r#"table = "t"
[[columns]]
name = "ts"
type = "timestamp"
[[columns]]
name = "kind"
type = "string"
[partition]
time = { column = "ts", granularity = "hour" }
keys = ["kind"]
"#,
        )
        .unwrap();
        let mut out = String::new();
        render(&s.partition, 1_763_730_300_000, &[Some("a/b=c".into())], &mut out);
        assert_eq!(out, "dt=2025-11-21/hr=13/kind=a%2Fb%3Dc/");
        assert_eq!(prefix_values(&out), ["2025-11-21", "13", "a/b=c"], "the catalog gets the values back unescaped");
        render(&s.partition, 0, &[Some("ü%z 100%".into())], &mut out);
        assert_eq!(prefix_values(&out)[2], "ü%z 100%");
        render(&s.partition, 0, &[None], &mut out);
        assert_eq!(out, "dt=1970-01-01/hr=00/kind=__HIVE_DEFAULT_PARTITION__/");
        assert_eq!(hour_prefix(1_763_730_300_000), "dt=2025-11-21/hr=13/");
        // the cache reuses an hour's time parts, and re-renders a layout with minutes every time
        let mut cache = TimeCache::default();
        for (t, want) in [(1_763_730_300_000, "dt=2025-11-21/hr=13/kind=k/"), (1_763_730_300_001, "dt=2025-11-21/hr=13/kind=k/"), (1_763_733_600_000, "dt=2025-11-21/hr=14/kind=k/")] {
            render_cached(&s.partition, t, &[Some("k".into())], &mut out, &mut cache);
            assert_eq!(out, want);
        }
        let mut m = s.clone();
        m.partition.layout = vec![LayoutPart::Time(crate::timefmt::compile_output_pattern("HH:mm").unwrap())];
        m.partition.hourly = layout_is_hourly(&m.partition.layout);
        assert!(s.partition.hourly && !m.partition.hourly);
        let mut cache = TimeCache::default();
        render_cached(&m.partition, 1_763_730_300_000, &[], &mut out, &mut cache);
        assert_eq!(out, "13:05");
        render_cached(&m.partition, 1_763_730_360_000, &[], &mut out, &mut cache);
        assert_eq!(out, "13:06", "minutes are not cached by the hour");
        // a layout without keys copies the last record's whole prefix within its hour
        let k = TableSchema::parse("k.toml", "table = \"t\"\n[[columns]]\nname = \"ts\"\ntype = \"timestamp\"\n[partition]\ntime = { column = \"ts\", granularity = \"hour\" }\n").unwrap();
        let mut cache = TimeCache::default();
        for (t, want) in [(1_763_730_300_000, "dt=2025-11-21/hr=13/"), (1_763_733_599_999, "dt=2025-11-21/hr=13/"), (1_763_733_600_000, "dt=2025-11-21/hr=14/"), (1_763_730_300_000, "dt=2025-11-21/hr=13/"), (-1, "dt=1969-12-31/hr=23/")] {
            render_cached(&k.partition, t, &[], &mut out, &mut cache);
            assert_eq!(out, want);
        }
    }
}
