//! Identifier newtypes shared by every stage.
//!
//! Input: strings from a source (Kinesis shard ids and sequence numbers, spool
//! segment names and byte offsets). Output: comparable, printable ids.
//! Sequence numbers compare *numerically* (Kinesis ones have up to 129
//! digits, so they do not fit any machine integer); construction rejects
//! anything that is not a decimal number, so comparison cannot fail later.

use std::cmp::Ordering;
use std::fmt;

/// A source partition: a Kinesis shard id, a spool segment file name, or
/// an input file stem for `convert`. Safe to use inside an object key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(String);

impl ShardId {
    /// Builds a shard id that can stand in an object key. `[A-Za-z0-9._-]`
    /// are kept; every other byte of the UTF-8 name is written `!xx` (two
    /// lowercase hex digits). The mapping is one-to-one, so two segment
    /// files whose names differ only in such characters ("a b", "a_b") can
    /// never write to the same key. `!` is on S3's list of safe characters.
    pub fn new(raw: &str) -> Self {
        use std::fmt::Write;
        let mut s = String::with_capacity(raw.len());
        for b in raw.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
                s.push(b as char);
            } else {
                write!(s, "!{b:02x}").expect("writing to a String");
            }
        }
        ShardId(if s.is_empty() { "!".to_string() } else { s })
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A decimal sequence number of any length, compared numerically.
/// Small values (every spool offset) are kept inline without allocating.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SequenceNumber {
    Small(u128),
    /// Canonical digits (no leading zeros) of a value above `u128::MAX`.
    Big(Box<str>),
}

#[derive(Debug, thiserror::Error)]
#[error("sequence number {0:?} is not a decimal number")]
pub struct BadSequenceNumber(pub String);

impl SequenceNumber {
    pub fn parse(s: &str) -> Result<Self, BadSequenceNumber> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BadSequenceNumber(s.to_string()));
        }
        let t = s.trim_start_matches('0');
        if t.len() <= 38 {
            return Ok(SequenceNumber::Small(t.parse::<u128>().unwrap_or(0)));
        }
        match t.parse::<u128>() {
            Ok(v) => Ok(SequenceNumber::Small(v)),
            Err(_) => Ok(SequenceNumber::Big(t.into())),
        }
    }
}

impl From<u64> for SequenceNumber {
    fn from(v: u64) -> Self {
        SequenceNumber::Small(v as u128)
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        use SequenceNumber::*;
        match (self, other) {
            (Small(a), Small(b)) => a.cmp(b),
            (Small(_), Big(_)) => Ordering::Less,
            (Big(_), Small(_)) => Ordering::Greater,
            (Big(a), Big(b)) => a.len().cmp(&b.len()).then_with(|| a.cmp(b)),
        }
    }
}
impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SequenceNumber::Small(v) => write!(f, "{v}"),
            SequenceNumber::Big(s) => f.write_str(s),
        }
    }
}

impl serde::Serialize for SequenceNumber {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
impl<'de> serde::Deserialize<'de> for SequenceNumber {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SequenceNumber::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A record's place in its shard: sequence number plus the KPL
/// sub-sequence number (0 for records that were not aggregated).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Position {
    pub seq: SequenceNumber,
    pub sub: u64,
}

impl Position {
    pub fn new(seq: SequenceNumber, sub: u64) -> Self {
        Position { seq, sub }
    }
    pub fn offset(off: u64) -> Self {
        Position { seq: SequenceNumber::from(off), sub: 0 }
    }
    /// The `<firstSeq>-<firstSub>` part of an object key. Small numbers are
    /// zero-padded to 20 digits so keys of one shard sort in stream order.
    pub fn key_part(&self) -> String {
        match &self.seq {
            SequenceNumber::Small(v) => format!("{v:020}-{}", self.sub),
            SequenceNumber::Big(s) => format!("{s}-{}", self.sub),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_compare_numerically_beyond_u128() {
        let a = SequenceNumber::parse("49590338271490256608559692538361571095921575989136588898").unwrap();
        let b = SequenceNumber::parse("49590338271490256608559692540925702759324208523137515618").unwrap();
        let c = SequenceNumber::parse("9").unwrap();
        let big129 = "9".repeat(129);
        let d = SequenceNumber::parse(&big129).unwrap();
        assert!(a < b);
        assert!(c < a);
        assert!(b < d);
        assert_eq!(SequenceNumber::parse("0042").unwrap(), SequenceNumber::from(42u64));
        assert_eq!(d.to_string(), big129);
        assert!(SequenceNumber::parse("12a").is_err());
        assert!(SequenceNumber::parse("").is_err());
    }

    #[test]
    fn positions_order_by_sequence_then_subsequence() {
        let p1 = Position::new(SequenceNumber::from(5u64), 2);
        let p2 = Position::new(SequenceNumber::from(5u64), 10);
        let p3 = Position::new(SequenceNumber::from(6u64), 0);
        assert!(p1 < p2 && p2 < p3);
        assert_eq!(p1.key_part(), "00000000000000000005-2");
    }

    #[test]
    fn shard_ids_are_key_safe() {
        assert_eq!(ShardId::new("seg 01/a.ndjson").as_str(), "seg!2001!2fa.ndjson");
        assert_eq!(ShardId::new("é!").as_str(), "!c3!a9!21");
        assert_eq!(ShardId::new("").as_str(), "!");
        // one-to-one: names that differ only in escaped characters stay apart
        let names = ["a b", "a_b", "a!20b", "a!b", "a~b", "a%20b", "a\tb", "a\u{a0}b", "a.b", "a-b"];
        let ids: std::collections::HashSet<String> = names.iter().map(|n| ShardId::new(n).as_str().to_string()).collect();
        assert_eq!(ids.len(), names.len(), "{ids:?}");
        for id in &ids {
            assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-!".contains(&b)), "{id}");
        }
        assert_eq!(ShardId::new("shardId-000000000001").as_str(), "shardId-000000000001");
    }
}
