//! Line objects: the raw backup and the error prefix, gzip NDJSON.
//!
//! Input: a sealed line buffer (raw input lines, or error lines made by
//! [`error_line`]). Output: one gzip member of its lines, any tool reads it.
//! An error line is one JSON object with Firehose's field names, so
//! existing reprocessing tools work: `attemptsMade, arrivalTimestamp,
//! errorCode, errorMessage, attemptEndingTimestamp, rawData (base64),
//! sequenceNumber, subSequenceNumber, shardId, dataCatalogTable`. A record
//! over the size limit keeps only its first `max_record_size` bytes in
//! `rawData`, and the line says so: `rawDataTruncated: true` and
//! `originalSize`; its raw backup line is [`wrapped_raw_line`], as is
//! that of a record a line cannot hold as it is (a newline in it, a
//! trailing `\r`, blank).
//! Failure: only an I/O error of the encoder, which writes to memory.

use crate::decode::RecordError;
use crate::ids::{Position, ShardId};

/// Identity written into every error line's `dataCatalogTable`.
#[derive(Debug, Clone, Default)]
pub struct TableRef {
    pub database: Option<String>,
    pub table: String,
}

/// One Firehose-style error record (a JSON line, keys in order);
/// `truncated_from`: `data` is the start of a record of that many bytes.
pub fn error_line(e: &RecordError, shard: &ShardId, pos: &Position, arrival_ms: i64, data: &[u8], truncated_from: Option<u64>, t: &TableRef) -> Vec<u8> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let mut out = Vec::with_capacity(data.len() * 4 / 3 + 400);
    let text = |out: &mut Vec<u8>, s: &str| serde_json::to_writer(&mut *out, s).expect("to memory");
    out.extend_from_slice(format!("{{\"arrivalTimestamp\":{arrival_ms},\"attemptEndingTimestamp\":{now},\"attemptsMade\":1,\"dataCatalogTable\":{{\"databaseName\":").as_bytes());
    match &t.database {
        Some(d) => text(&mut out, d),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"tableName\":");
    text(&mut out, &t.table);
    out.extend_from_slice(b"},\"errorCode\":");
    text(&mut out, e.code.as_str());
    out.extend_from_slice(b",\"errorMessage\":");
    text(&mut out, &e.message);
    if let Some(len) = truncated_from {
        out.extend_from_slice(format!(",\"originalSize\":{len}").as_bytes());
    }
    out.extend_from_slice(b",\"rawData\":");
    base64_text(&mut out, data);
    if truncated_from.is_some() {
        out.extend_from_slice(b",\"rawDataTruncated\":true");
    }
    out.extend_from_slice(b",\"sequenceNumber\":");
    text(&mut out, &pos.seq.to_string());
    out.extend_from_slice(b",\"shardId\":");
    text(&mut out, shard.as_str());
    out.extend_from_slice(format!(",\"subSequenceNumber\":{}}}", pos.sub).as_bytes());
    out
}

/// `data` as a JSON string of its base64 (which needs no escaping).
fn base64_text(out: &mut Vec<u8>, data: &[u8]) {
    use base64::Engine;
    out.push(b'"');
    let at = out.len();
    out.resize(at + base64::encoded_len(data.len(), true).expect("fits"), 0);
    let n = base64::engine::general_purpose::STANDARD.encode_slice(data, &mut out[at..]).expect("sized");
    out.truncate(at + n);
    out.push(b'"');
}

/// The raw backup line of a record that cannot stand as one line as it
/// is: longer than the size limit (`data` is its start, `len` its full
/// length), holding a newline, ending in `\r` or blank:
/// `{"lakehoseRaw":"<base64 of data>","originalSize":N,"truncated":bool}`.
pub fn wrapped_raw_line(data: &[u8], len: u64) -> Vec<u8> {
    let mut out = b"{\"lakehoseRaw\":".to_vec();
    base64_text(&mut out, data);
    out.extend_from_slice(format!(",\"originalSize\":{len},\"truncated\":{}}}", len > data.len() as u64).as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::ErrorCode;

    /// The line is the JSON object serde_json makes of the same fields.
    #[test]
    fn error_lines_are_the_json_of_their_fields() {
        use base64::Engine;
        let e = RecordError { code: ErrorCode::MalformedData, message: "column 'a': expected \"x\" \\ é\n".into() };
        let shard = ShardId::new("shardId-1");
        let pos = Position::new(crate::ids::SequenceNumber::parse("49590338271490256608559692538361571095921575989136588898").unwrap(), 3);
        for (t, data, trunc) in [
            (TableRef { database: Some("db".into()), table: "t".into() }, &b"{\"a\":\xff}"[..], None),
            (TableRef { database: None, table: "t\"q".into() }, &b""[..], Some(12345u64)),
        ] {
            let line = error_line(&e, &shard, &pos, 42, data, trunc, &t);
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
            let mut want = serde_json::json!({
                "attemptsMade": 1, "arrivalTimestamp": 42, "errorCode": e.code.as_str(), "errorMessage": e.message,
                "attemptEndingTimestamp": v["attemptEndingTimestamp"], "rawData": base64::engine::general_purpose::STANDARD.encode(data),
                "sequenceNumber": pos.seq.to_string(), "subSequenceNumber": 3, "shardId": "shardId-1",
                "dataCatalogTable": { "databaseName": t.database, "tableName": t.table },
            });
            if let Some(n) = trunc {
                want["rawDataTruncated"] = true.into();
                want["originalSize"] = n.into();
            }
            assert_eq!(v, want);
            assert_eq!(line, serde_json::to_vec(&want).unwrap(), "keys in serde_json's order, no spaces");
        }
        let raw: serde_json::Value = serde_json::from_slice(&wrapped_raw_line(b"abc", 9)).unwrap();
        assert_eq!(raw, serde_json::json!({"lakehoseRaw": "YWJj", "originalSize": 9, "truncated": true}));
        let raw: serde_json::Value = serde_json::from_slice(&wrapped_raw_line(b"a\nb", 3)).unwrap();
        assert_eq!(raw, serde_json::json!({"lakehoseRaw": "YQpi", "originalSize": 3, "truncated": false}));
    }
}
