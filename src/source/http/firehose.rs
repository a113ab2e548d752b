//! Firehose's Direct PUT API on `POST /`, as AWS SDKs call it.
//!
//! Input: an AWS JSON 1.1 request (`X-Amz-Target: Firehose_20150804.<op>`),
//! SigV4-signed for service `firehose` in the door's region. Output:
//! `PutRecord` → `{"RecordId","Encrypted"}`, `PutRecordBatch` →
//! `{"FailedPutCount","Encrypted","RequestResponses":[{"RecordId"} |
//! {"ErrorCode","ErrorMessage"}]}` once the accepted records are durable,
//! `DescribeDeliveryStream` and `ListDeliveryStreams` enough for clients
//! that look before they write. Firehose's limits hold: 1 to 500 records a
//! call, 1,000 KiB a record, 4 MiB a call (`InvalidArgumentException`); an
//! unknown stream is `ResourceNotFoundException`; no room in the log is
//! `ServiceUnavailableException` (503, `Retry-After`) for the whole call,
//! or for the records past the room in a batch (`FailedPutCount`), so an
//! SDK's retries resend exactly what was not taken.

use super::{aws_error, now_ms, Door, Refusal};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

/// Firehose's limits.
pub const MAX_RECORDS: usize = 500;
pub const MAX_RECORD_BYTES: usize = 1000 * 1024;
pub const MAX_CALL_BYTES: usize = 4 << 20;
/// Largest request body: 4 MiB of records in base64 and their JSON.
const MAX_BODY: usize = MAX_CALL_BYTES / 3 * 4 + MAX_RECORDS * 64 + 4096;

#[derive(Deserialize)]
struct Rec<'a> {
    #[serde(rename = "Data", borrow)]
    data: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Put<'a> {
    #[serde(rename = "DeliveryStreamName", borrow)]
    stream: Cow<'a, str>,
    #[serde(rename = "Record", borrow)]
    record: Option<Rec<'a>>,
    #[serde(rename = "Records", borrow)]
    records: Option<Vec<Rec<'a>>>,
}

fn json(body: serde_json::Value) -> Response {
    let mut r = (StatusCode::OK, body.to_string()).into_response();
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/x-amz-json-1.1"));
    r
}

fn invalid(message: &str) -> Response {
    aws_error(StatusCode::BAD_REQUEST, "InvalidArgumentException", message)
}

pub async fn handle(State(door): State<Arc<Door>>, req: Request<Body>) -> Response {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let op = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).and_then(|t| t.strip_prefix("Firehose_20150804.")).unwrap_or("");
    let op: &'static str = match op {
        "PutRecord" => "PutRecord",
        "PutRecordBatch" => "PutRecordBatch",
        "DescribeDeliveryStream" => "DescribeDeliveryStream",
        "ListDeliveryStreams" => "ListDeliveryStreams",
        _ => "unknown",
    };
    let (body, _permit) = match door.body(body, MAX_BODY).await {
        Ok(b) => b,
        Err(r) => {
            door.done(op, r.status(), started, 0, 0);
            return r;
        }
    };
    let signed = super::sigv4::Request { method: parts.method.as_str(), path: parts.uri.path(), query: parts.uri.query().unwrap_or(""), headers: &parts.headers, body: &body };
    if let Err(d) = door.cfg.auth.sigv4(&signed, &door.cfg.region, "firehose") {
        let r = aws_error(StatusCode::from_u16(d.status).unwrap_or(StatusCode::BAD_REQUEST), d.code, &d.message);
        door.done(op, r.status(), started, 0, 0);
        return r;
    }
    let (r, records, bytes) = match op {
        "PutRecord" | "PutRecordBatch" => put(&door, op, &body).await,
        "DescribeDeliveryStream" => (describe(&door, &body), 0, 0),
        "ListDeliveryStreams" => (json(serde_json::json!({ "DeliveryStreamNames": door.cfg.streams, "HasMoreDeliveryStreams": false })), 0, 0),
        _ => (aws_error(StatusCode::BAD_REQUEST, "UnknownOperationException", "only PutRecord, PutRecordBatch, DescribeDeliveryStream and ListDeliveryStreams are served here"), 0, 0),
    };
    door.done(op, r.status(), started, records, bytes);
    r
}

fn not_found(stream: &str) -> Response {
    aws_error(StatusCode::BAD_REQUEST, "ResourceNotFoundException", &format!("Firehose {stream} not found; this endpoint serves the delivery streams named in [http] delivery_streams"))
}

fn describe(door: &Door, body: &[u8]) -> Response {
    #[derive(Deserialize)]
    struct D {
        #[serde(rename = "DeliveryStreamName")]
        stream: String,
    }
    let Ok(d) = serde_json::from_slice::<D>(body) else { return invalid("DeliveryStreamName is required") };
    if !door.cfg.streams.contains(&d.stream) {
        return not_found(&d.stream);
    }
    json(serde_json::json!({ "DeliveryStreamDescription": {
        "DeliveryStreamName": d.stream,
        "DeliveryStreamARN": format!("arn:aws:firehose:{}:000000000000:deliverystream/{}", door.cfg.region, d.stream),
        "DeliveryStreamStatus": "ACTIVE",
        "DeliveryStreamType": "DirectPut",
        "VersionId": "1",
        "CreateTimestamp": 0,
        "Destinations": [],
        "HasMoreDestinations": false,
    }}))
}

/// PutRecord and PutRecordBatch: (answer, records accepted, their bytes).
async fn put(door: &Door, op: &str, body: &[u8]) -> (Response, u64, u64) {
    let req: Put = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return (aws_error(StatusCode::BAD_REQUEST, "SerializationException", &format!("request body: {e}")), 0, 0),
    };
    if !door.cfg.streams.iter().any(|s| s == req.stream.as_ref()) {
        return (not_found(&req.stream), 0, 0);
    }
    let recs: Vec<Rec> = match (op, req.record, req.records) {
        ("PutRecord", Some(r), _) => vec![r],
        ("PutRecordBatch", _, Some(rs)) => rs,
        _ => return (invalid(if op == "PutRecord" { "Record is required" } else { "Records is required" }), 0, 0),
    };
    if recs.is_empty() || recs.len() > MAX_RECORDS {
        return (invalid(&format!("{} records: a call takes 1 to {MAX_RECORDS}", recs.len())), 0, 0);
    }
    let arrival = now_ms();
    let mut data = Vec::with_capacity(recs.len());
    let mut total = 0;
    for (i, r) in recs.iter().enumerate() {
        let Ok(d) = base64::engine::general_purpose::STANDARD.decode(r.data.as_bytes()) else {
            return (invalid(&format!("record {i}: Data is not base64")), 0, 0);
        };
        if d.len() > MAX_RECORD_BYTES {
            return (invalid(&format!("record {i} is {} bytes; a record takes at most {MAX_RECORD_BYTES} (1,000 KiB)", d.len())), 0, 0);
        }
        total += d.len();
        data.push(d);
    }
    if total > MAX_CALL_BYTES {
        return (invalid(&format!("the call's records are {total} bytes; a call takes at most {MAX_CALL_BYTES} (4 MiB)")), 0, 0);
    }
    let records: Vec<(i64, &[u8])> = data.iter().map(|d| (arrival, d.as_slice())).collect();
    let ids = match door.medium.append(&records).await {
        Ok(ids) => ids,
        Err(Refusal::Full) => return (aws_error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailableException", "Slow down: the log is full; retry later"), 0, 0),
        Err(Refusal::Failed(e)) => return (aws_error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailableException", &format!("the log could not take the records ({e}); retry later")), 0, 0),
    };
    let bytes: u64 = data[..ids.len()].iter().map(|d| d.len() as u64).sum();
    let answer = if op == "PutRecord" {
        serde_json::json!({ "RecordId": ids[0], "Encrypted": false })
    } else {
        let failed = data.len() - ids.len();
        let mut responses: Vec<serde_json::Value> = ids.iter().map(|id| serde_json::json!({ "RecordId": id })).collect();
        responses.extend((0..failed).map(|_| serde_json::json!({ "ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down: the log is full; retry this record later" })));
        serde_json::json!({ "FailedPutCount": failed, "Encrypted": false, "RequestResponses": responses })
    };
    (json(answer), ids.len() as u64, bytes)
}
