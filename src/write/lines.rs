//! Line objects: the raw backup and the error prefix, gzip NDJSON.
//!
//! Input: a sealed line buffer (raw input lines, or error lines made by
//! [`error_line`]). Output: one gzip member of its lines, any tool reads it.
//! An error line is one JSON object with Firehose's field names, so
//! existing reprocessing tools work: `attemptsMade, arrivalTimestamp,
//! errorCode, errorMessage, attemptEndingTimestamp, rawData (base64),
//! sequenceNumber, subSequenceNumber, shardId, dataCatalogTable`.
//! Failure: only an I/O error of the encoder, which writes to memory.

use crate::decode::RecordError;
use crate::ids::{Position, ShardId};
use flate2::write::GzEncoder;
use std::io::Write;

/// Identity written into every error line's `dataCatalogTable`.
#[derive(Debug, Clone, Default)]
pub struct TableRef {
    pub database: Option<String>,
    pub table: String,
}

/// One Firehose-style error record (a JSON line).
pub fn error_line(e: &RecordError, shard: &ShardId, pos: &Position, arrival_ms: i64, data: &[u8], t: &TableRef) -> Vec<u8> {
    use base64::Engine;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let v = serde_json::json!({
        "attemptsMade": 1,
        "arrivalTimestamp": arrival_ms,
        "errorCode": e.code.as_str(),
        "errorMessage": e.message,
        "attemptEndingTimestamp": now,
        "rawData": base64::engine::general_purpose::STANDARD.encode(data),
        "sequenceNumber": pos.seq.to_string(),
        "subSequenceNumber": pos.sub,
        "shardId": shard.as_str(),
        "dataCatalogTable": { "databaseName": t.database, "tableName": t.table },
    });
    serde_json::to_vec(&v).expect("json")
}

/// Gzip at a fast level: the output is ordinary gzip any tool reads.
pub fn gzip(data: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    let mut enc = GzEncoder::new(Vec::with_capacity(data.len() / 4), flate2::Compression::new(1));
    enc.write_all(data)?;
    enc.finish()
}
