//! Routing one stream to several tables: which tables a record goes to.
//!
//! Input: a record's bytes and the routing rules of the config (one route
//! column, every table's values, first-match or fan-out, an optional
//! default table). Output: the tables (lanes) the record goes to, from the
//! route column's value as the tables' decoders read it (same key
//! matching, last duplicate wins, canonical text of strings, integers and
//! booleans); none when no table takes it (an error line `lakehose.NoRoute`). Failure: a
//! record whose route column cannot be read (not JSON, wrong type) gives
//! that decode error, which goes to the shared error prefix.
//!
//! Lanes keep apart in the shared buffers and ledger by a marker at the
//! front of every prefix they render ([`marker`]): lane `k` of a routed
//! config writes its partitions and error hours under `\u{1}k\u{1}…`, which
//! the commit stage strips ([`split_marker`]) to pick the lane's sink and
//! object key. Unmarked prefixes are those of a single-table config, and,
//! with routing, of the shared error prefix.

use crate::decode::{Columns, Decoder, RecordError};
use crate::schema::{ColType, TableSchema};
use std::sync::Arc;

/// Lane `index`'s marker (empty for 0: unrouted and shared destinations).
pub fn marker(index: usize) -> String {
    if index == 0 {
        String::new()
    } else {
        format!("\u{1}{index}\u{1}")
    }
}

/// The lane index of a buffer's prefix and the prefix without its marker.
pub fn split_marker(prefix: &str) -> (usize, &str) {
    let Some(rest) = prefix.strip_prefix('\u{1}') else { return (0, prefix) };
    match rest.split_once('\u{1}') {
        Some((n, p)) => (n.parse().unwrap_or(0), p),
        None => (0, prefix),
    }
}

/// The schema a lane decodes with: its partition layout starts with the
/// lane's marker, so every prefix it renders carries it.
pub fn marked(mut schema: TableSchema, index: usize) -> TableSchema {
    if index > 0 {
        schema.partition.layout.insert(0, crate::schema::LayoutPart::Lit(marker(index)));
    }
    schema
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The first table whose values list the record's value.
    First,
    /// Every table whose values list it.
    All,
}

/// The tables' routes: lane `i` (1-based in markers) takes `values[i]`,
/// or is the default (`None`) that takes what no other table takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Routes {
    pub column: String,
    pub mode: Mode,
    pub values: Vec<Option<Vec<String>>>,
}

impl Routes {
    /// The lanes (0-based positions in `values`) a value goes to.
    pub fn targets(&self, value: Option<&str>) -> Vec<usize> {
        let listed = |i: usize| value.is_some_and(|v| self.values[i].as_ref().is_some_and(|l| l.iter().any(|x| x == v)));
        let mut out: Vec<usize> = (0..self.values.len()).filter(|&i| listed(i)).collect();
        if self.mode == Mode::First {
            out.truncate(1);
        }
        if out.is_empty() {
            out.extend(self.values.iter().position(Option::is_none));
        }
        out
    }

    /// Whether [`Routes::targets`] of `value` is `want`, without allocating.
    #[inline]
    pub fn targets_are(&self, value: Option<&str>, want: &[usize]) -> bool {
        let listed = |i: usize| value.is_some_and(|v| self.values[i].as_ref().is_some_and(|l| l.iter().any(|x| x == v)));
        let mut n = 0;
        for i in 0..self.values.len() {
            if listed(i) {
                if self.mode == Mode::First {
                    return want == [i];
                }
                if want.get(n) != Some(&i) {
                    return false;
                }
                n += 1;
            }
        }
        if n > 0 {
            return n == want.len();
        }
        match self.values.iter().position(Option::is_none) {
            Some(d) => want == [d],
            None => want.is_empty(),
        }
    }

    /// Why the first table's schema cannot route (the route value is read
    /// as it declares the column): the column missing, or of a type whose
    /// text is not canonical.
    pub fn check_schema(&self, s: &TableSchema) -> Result<(), String> {
        let c = s.columns.iter().find(|c| c.name == self.column).ok_or_else(|| {
            format!("table {} ({}) has no column {:?}, the route column: add it (the first table declares how the route value is read)", s.table, s.path, self.column)
        })?;
        if !matches!(c.ty, ColType::String | ColType::Varchar(_) | ColType::TinyInt | ColType::SmallInt | ColType::Int | ColType::BigInt | ColType::Boolean) {
            return Err(format!("route column {:?} of table {} is {}; route by a string, integer or boolean column", self.column, s.table, c.ty.glue()));
        }
        Ok(())
    }
}

/// Reads a record's route value as the tables' decoders would.
pub struct RouteReader {
    decoder: Decoder,
    scratch: Columns,
}

impl RouteReader {
    /// For the route column as `like` (a lane's schema) declares it.
    pub fn new(routes: &Routes, like: &TableSchema, max_record_bytes: usize) -> RouteReader {
        let mut col = like.columns.iter().find(|c| c.name == routes.column).expect("checked: every lane has the route column").clone();
        col.required = false;
        let mut schema = like.clone();
        schema.columns = vec![col];
        schema.partition = crate::schema::PartitionSpec { time: crate::schema::TimeSource::Arrival, keys: Vec::new(), ..schema.partition };
        schema.unknown_keys = crate::schema::UnknownKeys::Drop;
        schema.rules.clear();
        schema.filters.clear();
        schema.arrow = Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(&schema.columns[0].name, schema.columns[0].ty.arrow(), true)]));
        let schema = Arc::new(schema);
        RouteReader { scratch: Columns::new(&schema), decoder: Decoder::new(schema, max_record_bytes) }
    }

    /// The record's route value (None: missing or null).
    pub fn value(&mut self, data: &[u8]) -> Result<Option<String>, RecordError> {
        self.scratch.clear();
        if !self.decoder.decode_fused(data, &mut self.scratch) {
            self.decoder.parse(data)?.append_to(&mut self.scratch)?;
        }
        Ok(self.scratch.key_text_at(0, 0).map(|t| t.into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(mode: Mode) -> Routes {
        Routes {
            column: "kind".into(),
            mode,
            values: vec![Some(vec!["a".into(), "b".into()]), None, Some(vec!["b".into(), "c".into()])],
        }
    }

    #[test]
    fn first_match_fan_out_and_default() {
        let first = routes(Mode::First);
        assert_eq!(first.targets(Some("a")), vec![0]);
        assert_eq!(first.targets(Some("b")), vec![0]);
        assert_eq!(first.targets(Some("c")), vec![2]);
        assert_eq!(first.targets(Some("z")), vec![1]);
        assert_eq!(first.targets(None), vec![1]);
        let all = routes(Mode::All);
        assert_eq!(all.targets(Some("b")), vec![0, 2]);
        assert_eq!(all.targets(Some("z")), vec![1]);
        let mut no_default = routes(Mode::First);
        no_default.values[1] = Some(vec!["d".into()]);
        assert_eq!(no_default.targets(Some("z")), Vec::<usize>::new());
        assert_eq!(no_default.targets(None), Vec::<usize>::new());
        for r in [first, all, no_default] {
            for v in [Some("a"), Some("b"), Some("c"), Some("d"), Some("z"), None] {
                let t = r.targets(v);
                assert!(r.targets_are(v, &t), "{v:?}");
                for other in [vec![], vec![0], vec![1], vec![2], vec![0, 2], vec![1, 2]] {
                    assert_eq!(r.targets_are(v, &other), other == t, "{v:?} {other:?}");
                }
            }
        }
    }

    #[test]
    fn markers_round_trip() {
        assert_eq!(split_marker("dt=2026-01-01/"), (0, "dt=2026-01-01/"));
        assert_eq!(split_marker(&format!("{}dt=x/", marker(3))), (3, "dt=x/"));
        assert_eq!(split_marker(&format!("{}dt=x/", marker(0))), (0, "dt=x/"));
    }

    /// The route value is read as the decoders read keys: any letter case
    /// (the last duplicate wins), numbers and booleans in canonical text.
    #[test]
    fn route_values_read_as_the_decoder_reads_them() {
        let s = TableSchema::parse("t.toml", "table = \"t\"\n[[columns]]\nname = \"kind\"\ntype = \"string\"\n[[columns]]\nname = \"n\"\ntype = \"int\"\n").unwrap();
        let r = Routes { column: "kind".into(), mode: Mode::First, values: vec![None] };
        let mut rr = RouteReader::new(&r, &s, 1 << 20);
        assert_eq!(rr.value(br#"{"kind":"a","n":1}"#).unwrap().as_deref(), Some("a"));
        assert_eq!(rr.value(br#"{"n":"x","KIND":"a","Kind":"b"}"#).unwrap().as_deref(), Some("b"));
        assert_eq!(rr.value(br#"{"kind":null}"#).unwrap(), None);
        assert_eq!(rr.value(br#"{"other":{"kind":"a"}}"#).unwrap(), None);
        assert_eq!(rr.value(br#"{"kind":12}"#).unwrap().as_deref(), Some("12"));
        assert!(rr.value(b"{not json").is_err());
        let ints = Routes { column: "n".into(), mode: Mode::First, values: vec![None] };
        let mut ri = RouteReader::new(&ints, &s, 1 << 20);
        assert_eq!(ri.value(br#"{"n":"7"}"#).unwrap().as_deref(), Some("7"));
        assert!(ri.value(br#"{"n":"x"}"#).is_err());
    }
}
