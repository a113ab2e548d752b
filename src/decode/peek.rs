//! A guess at a record's partition values from its raw bytes, before it is
//! decoded, so that the fused decoder can write the record straight into
//! its partition's buffer instead of into a stage its row is then copied
//! out of.
//!
//! Input: the record's bytes. Output: the partition time column's value and
//! the key columns' texts, found as `"source":` followed by a plain value
//! (a string without escapes, or a number for the time), when every
//! partition column is a top-level string or timestamp column; `None` when
//! there is nothing to guess from. A guess can be wrong (the key inside a
//! nested object or repeated, in another letter case, a value the decoder
//! refuses): the caller checks it against the decoded row and moves the row
//! when it was. Never fails.

use super::convert::{timestamp_from_number, timestamp_from_str};
use super::Columns;
use crate::schema::{ColType, PartitionSpec, TableSchema, TimeSource};
use crate::timefmt::TsFormat;
use memchr::memmem::Finder;
use std::borrow::Cow;

/// Finds the partition columns' values in a record's bytes.
pub struct Peek {
    /// The time column's key and formats (`None`: the arrival time).
    time: Option<(Key, Vec<TsFormat>)>,
    /// The value key columns' keys, in partition order.
    keys: Vec<Key>,
}

/// A column's key as `"source":`, and where it ended in the last record:
/// records of one producer put it at the same offset.
struct Key {
    finder: Finder<'static>,
    last: usize,
}

impl Key {
    fn new(source: &str) -> Key {
        Key { finder: Finder::new(format!("\"{source}\":").as_bytes()).into_owned(), last: 0 }
    }

    /// The offset just past an occurrence of the key in `data`: at the last
    /// record's offset, else the first one.
    #[inline]
    fn find(&mut self, data: &[u8]) -> Option<usize> {
        let needle = self.finder.needle();
        if self.last >= needle.len() && data.get(self.last - needle.len()..self.last) == Some(needle) {
            return Some(self.last);
        }
        self.last = self.finder.find(data)? + needle.len();
        Some(self.last)
    }
}

/// What a guess found: the time column's value (`None` for the arrival
/// time) and each key column's text.
pub struct Guess<'a> {
    pub time: Option<i64>,
    pub keys: [Option<Cow<'a, str>>; crate::schema::MAX_PARTITION_KEYS],
}

impl Peek {
    /// A peek for `schema`'s partition columns; `None` when one of them is
    /// nested, of another type, or when there is no column to look for.
    pub fn new(schema: &TableSchema) -> Option<Peek> {
        let finder = |i: usize| {
            let [key] = schema.columns[i].source.as_slice() else { return None };
            Some(Key::new(key))
        };
        let spec = &schema.partition;
        let time = match spec.time {
            TimeSource::Column(i) if schema.columns[i].ty == ColType::Timestamp => Some((finder(i)?, schema.columns[i].formats.clone())),
            TimeSource::Column(_) => return None,
            TimeSource::Arrival => None,
        };
        let keys = spec
            .keys
            .iter()
            .map(|&i| match schema.columns[i].ty {
                ColType::String | ColType::Varchar(_) => finder(i),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        (time.is_some() || !keys.is_empty()).then_some(Peek { time, keys })
    }

    /// The partition values `data` seems to have, or `None` when a column's
    /// key or a plain value for it is not there.
    pub fn guess<'a>(&mut self, data: &'a [u8]) -> Option<Guess<'a>> {
        let mut g = Guess { time: None, keys: Default::default() };
        if let Some((key, formats)) = &mut self.time {
            g.time = Some(match value(data, key.find(data)?)? {
                Value::Str(s) => timestamp_from_str(s, formats)?,
                Value::Number(s) => timestamp_from_number(s, formats)?,
            });
        }
        for (slot, key) in g.keys.iter_mut().zip(&mut self.keys) {
            let Value::Str(s) = value(data, key.find(data)?)? else { return None };
            *slot = Some(Cow::Borrowed(s));
        }
        Some(g)
    }
}

/// A guess at a record's route value from its bytes (see [`crate::lanes`]):
/// the plain value after the route column's key. The decoded row confirms
/// it (the lane's gate) or the route is read exactly.
pub struct RoutePeek(Key);

impl RoutePeek {
    pub fn new(source: &str) -> RoutePeek {
        RoutePeek(Key::new(source))
    }

    /// `Some(Some(text))`: a plain string or number; `Some(None)`: the key
    /// is not in the record as written; `None`: no guess.
    #[inline]
    pub fn guess<'a>(&mut self, data: &'a [u8]) -> Option<Option<&'a str>> {
        let Some(at) = self.0.find(data) else { return Some(None) };
        match value(data, at)? {
            Value::Str(s) | Value::Number(s) => Some(Some(s)),
        }
    }
}

impl Guess<'_> {
    /// True when row `row` of `cols` has these partition values (`spec`'s
    /// time within the same hour when its layout names nothing finer), so
    /// that its prefix is the guess's without rendering it. False says
    /// nothing: the prefixes may still be equal (an empty and a null key
    /// both render as the default partition).
    pub fn holds(&self, spec: &PartitionSpec, cols: &Columns, row: usize, arrival_ms: i64) -> bool {
        let time = match spec.time {
            TimeSource::Column(i) => spec.time_or(cols.timestamp_at(i, row), arrival_ms),
            TimeSource::Arrival => arrival_ms,
        };
        let guessed = spec.time_or(self.time, arrival_ms);
        let same_time = match spec.hourly {
            true => time.div_euclid(3_600_000) == guessed.div_euclid(3_600_000),
            false => time == guessed,
        };
        same_time && spec.keys.iter().zip(&self.keys).all(|(&k, g)| cols.key_text_at(k, row) == *g)
    }
}

enum Value<'a> {
    Str(&'a str),
    Number(&'a str),
}

/// The plain value starting at `at` (after optional spaces): a string
/// without escapes, or a number's text.
fn value(data: &[u8], mut at: usize) -> Option<Value<'_>> {
    while data.get(at) == Some(&b' ') {
        at += 1;
    }
    match *data.get(at)? {
        b'"' => {
            // partition values are short: a byte loop, not a search
            let start = at + 1;
            let len = data[start..].iter().position(|&c| c == b'"' || c == b'\\' || c >= 0x80)?;
            match data[start + len] {
                b'"' => Some(Value::Str(
                    // SAFETY: ASCII up to the quote
                    unsafe { std::str::from_utf8_unchecked(&data[start..start + len]) },
                )),
                b'\\' => None,
                _ => {
                    let len = memchr::memchr2(b'"', b'\\', &data[start..])?;
                    (data[start + len] == b'"').then_some(())?;
                    std::str::from_utf8(&data[start..start + len]).ok().map(Value::Str)
                }
            }
        }
        b'-' | b'0'..=b'9' => {
            let len = data[at..].iter().position(|c| !matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')).unwrap_or(data.len() - at);
            // SAFETY: the bytes checked above are ASCII
            Some(Value::Number(unsafe { std::str::from_utf8_unchecked(&data[at..at + len]) }))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(partition: &str) -> TableSchema {
        let toml = format!(
            "table = \"t\"\n[[columns]]\nname = \"id\"\ntype = \"string\"\n[[columns]]\nname = \"ts\"\ntype = \"timestamp\"\nsource = \"timestamp\"\n\
             [[columns]]\nname = \"kind\"\ntype = \"string\"\n[[columns]]\nname = \"os\"\ntype = \"string\"\nsource = \"device.os\"\n\
             [[columns]]\nname = \"n\"\ntype = \"int\"\n{partition}"
        );
        TableSchema::parse("t.toml", &toml).unwrap()
    }

    #[test]
    fn finds_plain_values_of_top_level_partition_columns() {
        let s = schema("[partition]\ntime = { column = \"ts\", granularity = \"hour\" }\nkeys = [\"kind\"]\n");
        let mut p = Peek::new(&s).expect("top-level timestamp and string");
        let g = p.guess(br#"{"id":"a","timestamp":"2026-11-21T19:10:48.178Z","kind":"view"}"#).unwrap();
        assert_eq!(g.time, Some(1_795_288_248_178));
        assert_eq!(g.keys[0].as_deref(), Some("view"));
        let g = p.guess(br#"{"kind": "caf\u00e9x","timestamp":1795288248178}"#);
        assert!(g.is_none(), "an escaped key value is not guessed");
        let g = p.guess(r#"{"kind": "café","timestamp": 1795288248178}"#.as_bytes()).unwrap();
        assert_eq!((g.time, g.keys[0].as_deref()), (Some(1_795_288_248_178), Some("café")));
        for missing in [&br#"{"kind":"view"}"#[..], br#"{"timestamp":"2026-11-21T19:10:48Z"}"#, br#"{"kind":null,"timestamp":"2026-11-21T19:10:48Z"}"#, br#"{"kind":"x","timestamp":"yesterday"}"#] {
            assert!(p.guess(missing).is_none(), "{}", String::from_utf8_lossy(missing));
        }
    }

    /// A guess holds for the decoded row when its values are the row's: the
    /// same key and, with an hourly layout, the same hour; with a layout
    /// naming minutes, the same instant.
    #[test]
    fn a_guess_holds_when_the_decoded_row_has_its_values() {
        let hourly = schema("[partition]\ntime = { column = \"ts\", granularity = \"hour\" }\nkeys = [\"kind\"]\n");
        let minutes = schema("[partition]\ntime = { column = \"ts\", granularity = \"hour\" }\nkeys = [\"kind\"]\nlayout = \"!{timestamp:yyyy-MM-dd-HH-mm}/!{partitionKeyFromQuery:kind}/\"\n");
        assert!(hourly.partition.hourly && !minutes.partition.hourly);
        let row = br#"{"id":"a","timestamp":"2026-11-21T19:10:48.178Z","kind":"view"}"#;
        for (s, same_hour_holds) in [(&hourly, true), (&minutes, false)] {
            let s = std::sync::Arc::new(s.clone());
            let mut cols = Columns::new(&s);
            let mut dec = super::super::Decoder::new(s.clone(), 1 << 20);
            dec.parse(row).unwrap().append_to(&mut cols).unwrap();
            let mut p = Peek::new(&s).unwrap();
            let mut holds = |rec: &[u8]| p.guess(rec).unwrap().holds(&s.partition, &cols, 0, 0);
            assert!(holds(row));
            assert_eq!(holds(br#"{"timestamp":"2026-11-21T19:59:00Z","kind":"view"}"#), same_hour_holds);
            assert!(!holds(br#"{"timestamp":"2026-11-21T20:10:48.178Z","kind":"view"}"#), "another hour");
            assert!(!holds(br#"{"timestamp":"2026-11-21T19:10:48.178Z","kind":"click"}"#), "another key");
        }
    }

    #[test]
    fn takes_only_top_level_string_and_timestamp_partition_columns() {
        assert!(Peek::new(&schema("[partition]\ntime = { column = \"arrival\", granularity = \"day\" }\nkeys = [\"kind\"]\n")).is_some());
        assert!(Peek::new(&schema("[partition]\ntime = { column = \"arrival\", granularity = \"day\" }\n")).is_none(), "nothing to look for");
        assert!(Peek::new(&schema("[partition]\ntime = { column = \"arrival\", granularity = \"day\" }\nkeys = [\"os\"]\n")).is_none(), "nested");
        assert!(Peek::new(&schema("[partition]\ntime = { column = \"arrival\", granularity = \"day\" }\nkeys = [\"n\"]\n")).is_none(), "an int key");
    }
}
