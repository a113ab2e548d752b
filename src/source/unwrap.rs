//! Replay: the records inside the lines the lake keeps.
//!
//! Input: a [`Batch`] of one input's lines and what its lines are
//! ([`LineKind`]): records (any NDJSON, the raw backup) or error lines
//! (lakehose's or Firehose's error prefix: JSON objects with a base64
//! `rawData`). Output: the same batch with every line that holds a record
//! in another form replaced by the record: a raw-backup wrapper
//! `{"lakehoseRaw":…,"originalSize":N,"truncated":bool}` by its decoded
//! bytes, an error line by its decoded `rawData`, arriving at its
//! `arrivalTimestamp`; a record that was cut (`truncated`,
//! `rawDataTruncated`) is marked oversized with its original size, so it
//! is refused again as too large, not converted from its start. Failure:
//! none: a line that does not parse as the form it should have stays as it
//! is (it then fails conversion and lands in the error prefix, with its
//! reason).

use super::Batch;
use base64::Engine;

/// What an input's lines are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// Records (raw-backup wrappers among them are unwrapped).
    Records,
    /// Error lines: each holds its record in `rawData`.
    ErrorLines,
}

const WRAPPED: &[u8] = b"{\"lakehoseRaw\":";

/// The longest line to hold whole when records are limited to
/// `max_record` bytes: an error line or raw-backup wrapper holding a
/// record cut to the limit is its base64 (a third longer) and a few fields.
pub fn line_limit(max_record: usize) -> usize {
    max_record + max_record / 3 + (64 << 10)
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wrapped {
    lakehose_raw: String,
    original_size: u64,
    truncated: bool,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorLine {
    raw_data: String,
    arrival_timestamp: Option<i64>,
    raw_data_truncated: Option<bool>,
    original_size: Option<u64>,
}

/// Whether `line` is an error line: a JSON object with a `rawData` string
/// and an error code (`errorCode`, or Firehose's `lastErrorCode`).
pub fn is_error_line(line: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        raw_data: Option<String>,
        error_code: Option<String>,
        last_error_code: Option<String>,
    }
    serde_json::from_slice::<Probe>(line).is_ok_and(|p| p.raw_data.is_some() && (p.error_code.is_some() || p.last_error_code.is_some()))
}

/// What the first line of `start` (an input's first bytes) says its lines
/// are; `from_errors` forces error lines.
pub fn kind_of(start: &[u8], from_errors: bool) -> LineKind {
    let first = start.split(|&b| b == b'\n').find(|l| !l.trim_ascii().is_empty()).unwrap_or_default();
    if from_errors || is_error_line(first) {
        LineKind::ErrorLines
    } else {
        LineKind::Records
    }
}

/// Replaces the lines of `b` that hold records by the records (see the
/// module's contract). Returns how many were replaced.
pub fn unwrap(b: &mut Batch, kind: LineKind) -> usize {
    if kind == LineKind::Records && !b.records.iter().any(|r| b.buf[r.range.clone()].starts_with(WRAPPED)) {
        return 0;
    }
    // decoded records go after the last line
    let end = b.records.iter().map(|r| r.range.end).max().unwrap_or(0);
    b.buf.truncate(end);
    let cut: Vec<usize> = b.oversized.iter().map(|o| o.0).collect();
    let mut oversized: Vec<(usize, u64)> = std::mem::take(&mut b.oversized);
    let mut done = 0;
    let engine = &base64::engine::general_purpose::STANDARD;
    for (i, r) in b.records.iter_mut().enumerate() {
        if cut.binary_search(&i).is_ok() {
            continue; // a line over the size limit is refused as it is
        }
        let line = &b.buf[r.range.clone()];
        let (text, arrival, original) = match kind {
            LineKind::Records if line.starts_with(WRAPPED) => match serde_json::from_slice::<Wrapped>(line) {
                Ok(w) => (w.lakehose_raw, None, w.truncated.then_some(w.original_size)),
                Err(_) => continue,
            },
            LineKind::Records => continue,
            LineKind::ErrorLines => match serde_json::from_slice::<ErrorLine>(line) {
                Ok(e) => {
                    let original = e.raw_data_truncated.unwrap_or(false).then_some(e.original_size.unwrap_or(0));
                    (e.raw_data, e.arrival_timestamp, original)
                }
                Err(_) => continue,
            },
        };
        let at = b.buf.len();
        if engine.decode_vec(text.as_bytes(), &mut b.buf).is_err() {
            b.buf.truncate(at);
            continue;
        }
        r.range = at..b.buf.len();
        if let Some(ms) = arrival {
            r.arrival_ms = ms;
        }
        if let Some(len) = original {
            oversized.push((i, len.max(r.range.len() as u64 + 1)));
        }
        done += 1;
    }
    oversized.sort_unstable();
    b.oversized = oversized;
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Position, ShardId};
    use crate::source::SourceRecord;
    use crate::write::{error_line, wrapped_raw_line, TableRef};

    fn batch(lines: &[Vec<u8>]) -> Batch {
        let mut buf = Vec::new();
        let mut records = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            let at = buf.len();
            buf.extend_from_slice(l);
            records.push(SourceRecord { pos: Position::offset(at as u64), arrival_ms: 5, range: at..at + l.len() });
            buf.push(b'\n');
            let _ = i;
        }
        Batch { shard: ShardId::new("s"), buf, records, oversized: Vec::new() }
    }

    fn records(b: &Batch) -> Vec<(Vec<u8>, i64)> {
        b.records.iter().map(|r| (b.buf[r.range.clone()].to_vec(), r.arrival_ms)).collect()
    }

    /// Raw-backup wrappers (the ones `run` writes) come back as the records
    /// they hold; cut ones are marked with their original size; other lines
    /// stay as they are.
    #[test]
    fn raw_backup_wrappers_are_unwrapped() {
        let with_newline = b"{\"a\":\"x\ny\"}".to_vec();
        let cut_start = vec![b'{'; 100];
        let lines = vec![b"{\"a\":1}".to_vec(), wrapped_raw_line(&with_newline, with_newline.len() as u64), wrapped_raw_line(&cut_start, 5000), b"{\"lakehoseRaw\":oops".to_vec()];
        let mut b = batch(&lines);
        assert_eq!(unwrap(&mut b, LineKind::Records), 2);
        let got = records(&b);
        assert_eq!(got[0].0, b"{\"a\":1}");
        assert_eq!(got[1].0, with_newline);
        assert_eq!(got[2].0, cut_start);
        assert_eq!(got[3].0, b"{\"lakehoseRaw\":oops", "not a wrapper: as it is");
        assert_eq!(b.oversized, vec![(2, 5000)]);
        let mut plain = batch(&[b"{\"a\":1}".to_vec()]);
        assert_eq!(unwrap(&mut plain, LineKind::Records), 0);
    }

    /// Error lines (lakehose's and Firehose's) give back their records at
    /// their arrival times; a cut one is marked oversized.
    #[test]
    fn error_lines_give_back_their_records() {
        let t = TableRef { database: None, table: "t".into() };
        let e = crate::decode::RecordError { code: crate::decode::ErrorCode::MalformedData, message: "m".into() };
        let shard = ShardId::new("s");
        let ours = error_line(&e, &shard, &Position::offset(3), 1_700_000_000_123, b"{\"x\":\"\xc3\xa9\"}", None, &t);
        let cut = error_line(&e, &shard, &Position::offset(9), 1_700_000_000_456, b"{\"x\":", Some(9999), &t);
        let firehose = br#"{"attemptsMade":1,"arrivalTimestamp":1600000000000,"lastErrorCode":"DataFormatConversion.InvalidSchema","lastErrorMessage":"m","attemptEndingTimestamp":1600000000100,"rawData":"eyJ5IjoyfQ==","sequenceNumber":"1","subSequenceNumber":null,"dataCatalogTable":{"catalogId":null,"databaseName":"d","tableName":"t","region":null,"versionId":"LATEST","roleArn":"r"}}"#.to_vec();
        assert!(is_error_line(&ours) && is_error_line(&firehose) && !is_error_line(b"{\"rawData\":\"e30=\"}"));
        assert_eq!(kind_of(&[b"\n".to_vec(), ours.clone()].concat(), false), LineKind::ErrorLines);
        assert_eq!(kind_of(b"{\"a\":1}\n", false), LineKind::Records);
        assert_eq!(kind_of(b"{\"a\":1}\n", true), LineKind::ErrorLines);
        let mut b = batch(&[ours, cut, firehose, b"not json".to_vec()]);
        assert_eq!(unwrap(&mut b, LineKind::ErrorLines), 3);
        let got = records(&b);
        assert_eq!(got[0], ("{\"x\":\"é\"}".as_bytes().to_vec(), 1_700_000_000_123));
        assert_eq!(got[1], (b"{\"x\":".to_vec(), 1_700_000_000_456));
        assert_eq!(got[2], (b"{\"y\":2}".to_vec(), 1_600_000_000_000));
        assert_eq!(got[3], (b"not json".to_vec(), 5));
        assert_eq!(b.oversized, vec![(1, 9999)]);
    }
}
