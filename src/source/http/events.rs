//! `POST /v1/events`: records in a body, checked against the table's
//! schema at the door.
//!
//! Input: a body of NDJSON, a JSON array of records, or one record
//! (`Content-Encoding: gzip` too), of at most `max_request_size` bytes
//! before and after gzip; an authorized caller ([`super::auth`]). Each
//! record is decoded by the same decoder the conversion uses. Output, once
//! the stored records are durable: `200 {"accepted":n}`; the records the
//! schema refuses are listed as `{"index","reason"}` under `rejected`
//! (`invalid = "reject"`: not stored; 207 when others were, 400 when none
//! was) or under `invalid` (`invalid = "accept"`: stored all the same, they
//! go to the error prefix as Firehose's would). A body that is not JSON
//! records is 400; no room in the log is 503 with `Retry-After` and
//! nothing stored.

use super::{aws_error, content_encoding, now_ms, Door, InvalidRecords, Refusal};
use crate::decode::{Columns, Decoder};
use crate::source::split_lines;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use std::io::Read;
use std::sync::Arc;
use std::time::Instant;

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert("content-type", axum::http::HeaderValue::from_static("application/json"));
    r
}

fn bad(message: &str) -> Response {
    answer(StatusCode::BAD_REQUEST, serde_json::json!({ "error": message }))
}

pub async fn handle(State(door): State<Arc<Door>>, req: Request<Body>) -> Response {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let limit = door.cfg.max_request_bytes;
    let (body, _permit) = match door.body(body, limit).await {
        Ok(b) => b,
        Err(r) => {
            door.done("events", r.status(), started, 0, 0);
            return r;
        }
    };
    let signed = super::sigv4::Request { method: parts.method.as_str(), path: parts.uri.path(), query: parts.uri.query().unwrap_or(""), headers: &parts.headers, body: &body };
    if let Err(d) = door.cfg.auth.events(&parts.headers, &signed, &door.cfg.region) {
        let mut r = answer(StatusCode::from_u16(d.status).unwrap_or(StatusCode::UNAUTHORIZED), serde_json::json!({ "error": d.message }));
        r.headers_mut().insert("www-authenticate", axum::http::HeaderValue::from_static("Basic realm=\"lakehose\", Bearer"));
        door.done("events", r.status(), started, 0, 0);
        return r;
    }
    let (r, records, bytes) = store(&door, &parts.headers, body).await;
    door.done("events", r.status(), started, records, bytes);
    r
}

/// Decodes, checks and stores the body's records: (answer, stored, bytes).
async fn store(door: &Door, headers: &axum::http::HeaderMap, body: bytes::Bytes) -> (Response, u64, u64) {
    let limit = door.cfg.max_request_bytes;
    let body = match content_encoding(headers).as_deref() {
        None | Some("identity") => body.to_vec(),
        Some("gzip") => {
            let mut out = Vec::new();
            let read = flate2::read::MultiGzDecoder::new(&body[..]).take(limit as u64 + 1).read_to_end(&mut out);
            match read {
                Ok(n) if n <= limit => out,
                Ok(_) => return (aws_error(StatusCode::PAYLOAD_TOO_LARGE, "InvalidArgumentException", &format!("body over {limit} bytes once unzipped")), 0, 0),
                Err(e) => return (bad(&format!("gzip body: {e}")), 0, 0),
            }
        }
        Some(other) => return (bad(&format!("Content-Encoding {other:?} is not taken; send gzip or nothing")), 0, 0),
    };
    let records = match split(&body) {
        Ok(r) => r,
        Err(e) => return (bad(&e), 0, 0),
    };
    if records.is_empty() {
        return (bad("no records in the body"), 0, 0);
    }
    let schema = door.schema.lock().unwrap().clone();
    let mut decoder = Decoder::new(schema.clone(), door.max_record_bytes);
    let mut scratch = Columns::new(&schema);
    let mut refused = Vec::new();
    let mut keep = Vec::with_capacity(records.len());
    let arrival = now_ms();
    for (i, r) in records.iter().enumerate() {
        let verdict = decoder.parse(r).and_then(|row| row.append_to(&mut scratch));
        scratch.clear();
        match verdict {
            Ok(()) => keep.push((arrival, *r)),
            Err(e) => {
                refused.push(serde_json::json!({ "index": i, "reason": e.message, "code": e.code.as_str() }));
                if door.cfg.invalid == InvalidRecords::Accept {
                    keep.push((arrival, *r));
                }
            }
        }
    }
    if keep.is_empty() {
        return (answer(StatusCode::BAD_REQUEST, serde_json::json!({ "accepted": 0, "rejected": refused })), 0, 0);
    }
    match door.medium.append(&keep).await {
        Ok(ids) if ids.len() == keep.len() => {}
        Ok(_) | Err(Refusal::Full) => {
            // a body is taken whole or not at all: what did fit stays (it is durable) but is
            // not acknowledged; the caller's retry may store it again
            return (aws_error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailableException", "the log is full; retry later"), 0, 0);
        }
        Err(Refusal::Failed(e)) => return (aws_error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailableException", &format!("the log could not take the records ({e}); retry later")), 0, 0),
    }
    let bytes = keep.iter().map(|r| r.1.len() as u64).sum();
    let stored = keep.len() as u64;
    let r = match (door.cfg.invalid, refused.is_empty()) {
        (_, true) => answer(StatusCode::OK, serde_json::json!({ "accepted": stored })),
        (InvalidRecords::Reject, false) => answer(StatusCode::MULTI_STATUS, serde_json::json!({ "accepted": stored, "rejected": refused })),
        (InvalidRecords::Accept, false) => answer(StatusCode::OK, serde_json::json!({ "accepted": stored, "invalid": refused })),
    };
    (r, stored, bytes)
}

/// The records of a body: the elements of a JSON array, or its lines.
fn split(body: &[u8]) -> Result<Vec<&[u8]>, String> {
    let first = body.iter().position(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|i| body[i] == b'[') {
        let mut tape = crate::decode::json::Tape::default();
        let doc = tape.parse(body).map_err(|e| format!("the body starts like a JSON array but is not one: {e}"))?;
        return Ok(doc.elements(0).map(|n| doc.raw(n)).collect::<Vec<_>>().into_iter().map(|s| subslice(body, s)).collect());
    }
    let mut out = Vec::new();
    split_lines(body, 0, true, |_, r| out.push(&body[r]));
    Ok(out)
}

/// `part` (a slice of `body`'s bytes) as a slice of `body` itself.
fn subslice<'a>(body: &'a [u8], part: &[u8]) -> &'a [u8] {
    let start = part.as_ptr() as usize - body.as_ptr() as usize;
    &body[start..start + part.len()]
}
