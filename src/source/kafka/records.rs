//! Kafka record batches → a [`Batch`] of JSON records for the pipeline.
//!
//! Input: the record bytes of one fetch (whole batches and maybe a cut one
//! at the end), the offset asked for, the aborted transactions of the
//! range. Output: the records in offset order, with position = offset and
//! arrival = the record's timestamp; and where the next fetch starts.
//! Skipped, and counted: control batches (transaction markers), records of
//! aborted transactions (read_committed, as Kafka's consumer decides it:
//! a transactional batch is aborted while its producer has an aborted
//! transaction begun at or before it and not yet closed by its ABORT
//! marker), tombstones (null values). With [`Meta`] fields asked for, each
//! record that is a JSON object gets them as leading members (`"$key"`,
//! `"$header"`, ...), so schema columns can name them as sources; other
//! records are passed as they are (the decoder reports them).
//! Failure: a corrupt batch (bad CRC, unknown format) is an error naming
//! its offset; nothing after it is handed on.

use crate::ids::{Position, ShardId};
use crate::source::{Batch, SourceRecord};
use base64::Engine;
use bytes::{Buf, Bytes};
use kafka_protocol::records::{Record, RecordBatchDecoder};
use std::collections::HashSet;

/// Which Kafka fields are spliced into each record (what the schemas name).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Meta {
    pub key: bool,
    pub timestamp: bool,
    pub topic: bool,
    pub partition: bool,
    pub offset: bool,
    pub headers: bool,
}

impl Meta {
    /// The fields named by column sources (`$key`, `$header.name`, ...);
    /// an unknown `$` name is an error naming the ones there are.
    pub fn from_sources<'a>(sources: impl Iterator<Item = &'a str>) -> Result<Meta, String> {
        let mut m = Meta::default();
        for s in sources {
            match s {
                "$key" => m.key = true,
                "$timestamp" => m.timestamp = true,
                "$topic" => m.topic = true,
                "$partition" => m.partition = true,
                "$offset" => m.offset = true,
                "$header" | "$headers" => m.headers = true,
                s if s.starts_with('$') => return Err(format!("{s:?} is not a Kafka field; use $key, $timestamp, $topic, $partition, $offset or $header.<name>")),
                _ => {}
            }
        }
        Ok(m)
    }
    pub fn union(&self, o: &Meta) -> Meta {
        Meta {
            key: self.key || o.key,
            timestamp: self.timestamp || o.timestamp,
            topic: self.topic || o.topic,
            partition: self.partition || o.partition,
            offset: self.offset || o.offset,
            headers: self.headers || o.headers,
        }
    }
    fn any(&self) -> bool {
        self.key || self.timestamp || self.topic || self.partition || self.offset || self.headers
    }
}

/// What one decode saw besides the records it handed on.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Decoded {
    /// Where the next fetch starts.
    pub next: i64,
    pub tombstones: u64,
    pub aborted: u64,
    pub bytes: u64,
}

/// Batch header: baseOffset(8) batchLength(4) leaderEpoch(4) magic(1) crc(4) attributes(2) lastOffsetDelta(4).
const HEADER: usize = 27;

/// Decodes the whole batches of `records` into `out` (records before
/// `from` are skipped: a fetch returns the batch holding `from` whole).
pub fn decode(records: &Bytes, from: i64, aborted: &[(i64, i64)], topic: &str, partition: i32, meta: &Meta, max_record: usize, out: &mut Batch) -> Result<Decoded, String> {
    let mut d = Decoded { next: from, ..Decoded::default() };
    let mut aborted: Vec<(i64, i64)> = aborted.to_vec();
    aborted.sort_by_key(|a| a.1);
    let mut pending = aborted.into_iter().peekable();
    let mut aborting: HashSet<i64> = HashSet::new();
    let mut rest = records.clone();
    while rest.len() >= HEADER {
        let base = (&rest[0..8]).get_i64();
        let len = (&rest[8..12]).get_i32();
        if len < (HEADER - 12) as i32 {
            return Err(format!("corrupt record batch at offset {base}: length {len}"));
        }
        let total = 12 + len as usize;
        if rest.len() < total {
            break; // cut short by the fetch size: fetched again next time
        }
        let last = base + (&rest[23..27]).get_i32() as i64;
        let mut one = rest.split_to(total);
        d.bytes += total as u64;
        while let Some(&(pid, _)) = pending.peek().filter(|a| a.1 <= last) {
            aborting.insert(pid);
            pending.next();
        }
        let set = RecordBatchDecoder::decode(&mut one).map_err(|e| format!("record batch at offset {base}: {e}"))?;
        d.next = d.next.max(last + 1);
        let Some(first) = set.records.first() else { continue };
        if first.control {
            // a transaction marker: control record key = version (2) + type (2); 0 = ABORT
            if first.key.as_ref().is_some_and(|k| k.len() >= 4 && k[2..4] == [0, 0]) {
                aborting.remove(&first.producer_id);
            }
            continue;
        }
        if first.transactional && aborting.contains(&first.producer_id) {
            d.aborted += set.records.iter().filter(|r| r.offset >= from).count() as u64;
            continue;
        }
        for r in set.records.iter().filter(|r| r.offset >= from) {
            let Some(value) = r.value.as_ref() else {
                d.tombstones += 1;
                continue;
            };
            push(out, r, value, topic, partition, meta, max_record);
        }
    }
    Ok(d)
}

fn push(out: &mut Batch, r: &Record, value: &[u8], topic: &str, partition: i32, meta: &Meta, max_record: usize) {
    let start = out.buf.len();
    let trimmed = value.iter().position(|b| !b.is_ascii_whitespace()).map(|i| &value[i..]).unwrap_or_default();
    if meta.any() && trimmed.first() == Some(&b'{') {
        splice(&mut out.buf, &trimmed[1..], r, topic, partition, meta);
    } else {
        out.buf.extend_from_slice(value);
    }
    let full = out.buf.len() - start;
    if full > max_record {
        out.buf.truncate(start + max_record);
        out.oversized.push((out.records.len(), full as u64));
    }
    let arrival_ms = if r.timestamp >= 0 { r.timestamp } else { crate::source::now_ms() };
    out.records.push(SourceRecord { pos: Position::offset(r.offset as u64), arrival_ms, range: start..out.buf.len() });
}

/// `{` + the Kafka members + the object's own members (`after_brace` is
/// the record after its opening brace).
fn splice(buf: &mut Vec<u8>, after_brace: &[u8], r: &Record, topic: &str, partition: i32, meta: &Meta) {
    buf.push(b'{');
    let mut first = true;
    let mut member = |buf: &mut Vec<u8>, name: &str| {
        if !first {
            buf.push(b',');
        }
        first = false;
        buf.extend_from_slice(b"\"");
        buf.extend_from_slice(name.as_bytes());
        buf.extend_from_slice(b"\":");
    };
    if meta.key {
        member(buf, "$key");
        bytes_value(buf, r.key.as_deref());
    }
    if meta.timestamp {
        member(buf, "$timestamp");
        buf.extend_from_slice(r.timestamp.to_string().as_bytes());
    }
    if meta.topic {
        member(buf, "$topic");
        serde_json::to_writer(&mut *buf, topic).expect("to a Vec");
    }
    if meta.partition {
        member(buf, "$partition");
        buf.extend_from_slice(partition.to_string().as_bytes());
    }
    if meta.offset {
        member(buf, "$offset");
        buf.extend_from_slice(r.offset.to_string().as_bytes());
    }
    if meta.headers {
        member(buf, "$header");
        buf.push(b'{');
        for (i, (k, v)) in r.headers.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            serde_json::to_writer(&mut *buf, k.as_str()).expect("to a Vec");
            buf.push(b':');
            bytes_value(buf, v.as_deref());
        }
        buf.push(b'}');
    }
    let own = after_brace.iter().position(|b| !b.is_ascii_whitespace()).map(|i| &after_brace[i..]).unwrap_or_default();
    if !own.starts_with(b"}") && !own.is_empty() {
        buf.push(b',');
    }
    buf.extend_from_slice(after_brace);
}

/// A key or header value: a JSON string of its text when it is UTF-8,
/// else of its base64; null when absent.
fn bytes_value(buf: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        None => buf.extend_from_slice(b"null"),
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => serde_json::to_writer(&mut *buf, s).expect("to a Vec"),
            Err(_) => serde_json::to_writer(&mut *buf, &base64::engine::general_purpose::STANDARD.encode(b)).expect("to a Vec"),
        },
    }
}

/// The shard id of a partition: `topic-N`, as Kafka names it
/// (topic names are `[A-Za-z0-9._-]`, safe in object keys).
pub fn shard_of(topic: &str, partition: i32) -> ShardId {
    ShardId::new(&format!("{topic}-{partition}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use indexmap::IndexMap;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{Compression, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

    fn rec(offset: i64, value: Option<&str>, pid: i64, txn: bool) -> Record {
        Record {
            transactional: txn,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: pid,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: offset as i32,
            timestamp: 1_700_000_000_000 + offset,
            key: Some(Bytes::from(format!("k{offset}"))),
            value: value.map(|v| Bytes::from(v.to_string())),
            headers: IndexMap::from([(StrBytes::from_static_str("h"), Some(Bytes::from_static(b"v\"1")))]),
        }
    }

    fn marker(offset: i64, pid: i64, commit: bool) -> Record {
        let mut r = rec(offset, Some(""), pid, true);
        r.control = true;
        r.key = Some(Bytes::from(vec![0, 0, 0, commit as u8]));
        r.value = Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0]));
        r.headers.clear();
        r
    }

    fn encode(buf: &mut BytesMut, records: &[Record], compression: Compression) {
        RecordBatchEncoder::encode(buf, records.iter(), &RecordEncodeOptions { version: 2, compression }).unwrap();
    }

    fn run(bytes: &Bytes, from: i64, aborted: &[(i64, i64)], meta: &Meta) -> (Decoded, Vec<(u64, String)>) {
        let mut out = Batch { shard: shard_of("t", 0), buf: Vec::new(), records: Vec::new(), oversized: Vec::new() };
        let d = decode(bytes, from, aborted, "t", 0, meta, 1 << 20, &mut out).unwrap();
        let got = out.iter().map(|(p, _, b)| (p.seq.to_string().parse().unwrap(), String::from_utf8(b.to_vec()).unwrap())).collect();
        (d, got)
    }

    #[test]
    fn aborted_transactions_markers_and_tombstones_are_skipped() {
        let mut b = BytesMut::new();
        encode(&mut b, &[rec(0, Some("{\"a\":0}"), -1, false), rec(1, None, -1, false)], Compression::None);
        encode(&mut b, &[rec(2, Some("{\"a\":2}"), 7, true), rec(3, Some("{\"a\":3}"), 7, true)], Compression::Gzip);
        encode(&mut b, &[rec(4, Some("{\"a\":4}"), 8, true)], Compression::Snappy);
        encode(&mut b, &[marker(5, 7, false)], Compression::None);
        encode(&mut b, &[marker(6, 8, true)], Compression::None);
        encode(&mut b, &[rec(7, Some("{\"a\":7}"), 7, true)], Compression::Zstd); // producer 7's next transaction: committed
        encode(&mut b, &[marker(8, 7, true)], Compression::None);
        encode(&mut b, &[rec(9, Some("{\"a\":9}"), -1, false)], Compression::Lz4);
        let bytes = b.freeze();
        let (d, got) = run(&bytes, 0, &[(7, 2)], &Meta::default());
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![0, 4, 7, 9]);
        assert_eq!((d.next, d.tombstones, d.aborted), (10, 1, 2));
        // without the aborted list (read_uncommitted) the aborted records pass: the filter is what removes them
        let (_, got) = run(&bytes, 0, &[], &Meta::default());
        assert_eq!(got.len(), 6);
        // from inside a batch: its earlier records are not handed again
        let (_, got) = run(&bytes, 3, &[], &Meta::default());
        assert_eq!(got[0].0, 3);
    }

    #[test]
    fn a_batch_cut_by_the_fetch_size_is_left_for_the_next_fetch() {
        let mut b = BytesMut::new();
        encode(&mut b, &[rec(0, Some("{}"), -1, false)], Compression::None);
        let whole = b.len();
        encode(&mut b, &[rec(1, Some("{}"), -1, false)], Compression::None);
        let cut = b.freeze().slice(..whole + 10);
        let (d, got) = run(&cut, 0, &[], &Meta::default());
        assert_eq!((got.len(), d.next), (1, 1));
    }

    #[test]
    fn kafka_fields_lead_the_object_and_keep_its_bytes() {
        let mut b = BytesMut::new();
        let mut r = rec(5, Some(" {\"a\": 1} "), -1, false);
        let mut empty = rec(6, Some("{ }"), -1, false);
        empty.key = Some(Bytes::from_static(&[0xff, 0x00]));
        let not_object = rec(7, Some("[1]"), -1, false);
        r.headers.insert(StrBytes::from_static_str("n"), None);
        encode(&mut b, &[r, empty, not_object], Compression::None);
        let meta = Meta { key: true, timestamp: true, topic: true, partition: true, offset: true, headers: true };
        let (_, got) = run(&b.freeze(), 0, &[], &meta);
        assert_eq!(got[0].1, r#"{"$key":"k5","$timestamp":1700000000005,"$topic":"t","$partition":0,"$offset":5,"$header":{"h":"v\"1","n":null},"a": 1} "#);
        assert_eq!(got[1].1, r#"{"$key":"/wA=","$timestamp":1700000000006,"$topic":"t","$partition":0,"$offset":6,"$header":{"h":"v\"1"} }"#);
        assert_eq!(got[2].1, "[1]");
        for (_, text) in &got[..2] {
            serde_json::from_str::<serde_json::Value>(text).unwrap();
        }
        assert_eq!(Meta::from_sources(["a", "$key", "$header"].into_iter()).unwrap(), Meta { key: true, headers: true, ..Meta::default() });
        assert!(Meta::from_sources(["$kee"].into_iter()).unwrap_err().contains("$key"));
    }

    #[test]
    fn a_corrupt_batch_is_an_error_naming_its_offset() {
        let mut b = BytesMut::new();
        encode(&mut b, &[rec(40, Some("{}"), -1, false)], Compression::None);
        let n = b.len();
        b[n - 3] ^= 0xff; // inside the record: the CRC no longer matches
        let mut out = Batch { shard: shard_of("t", 0), buf: Vec::new(), records: Vec::new(), oversized: Vec::new() };
        let e = decode(&b.freeze(), 0, &[], "t", 0, &Meta::default(), 1 << 20, &mut out).unwrap_err();
        assert!(e.contains("offset 40"), "{e}");
    }
}
