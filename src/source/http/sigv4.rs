//! AWS Signature Version 4 verification, so that an unmodified AWS SDK
//! (boto3, the Go SDK, the Kinesis Agent, Fluent Bit) can call the door.
//!
//! Input: a request's method, path, query, headers and body, and the keys
//! the config names. Output: the access key id that signed it, or why not
//! ([`SigError`], whose codes are AWS's: `MissingAuthenticationToken`,
//! `IncompleteSignatureException`, `UnrecognizedClientException`,
//! `InvalidSignatureException`). The canonical request is built as the
//! client built it (its `SignedHeaders`, its `X-Amz-Date`), its scope must
//! name this door's region and service, its time must be within 15 minutes
//! of ours, and the signature is compared in constant time. Signing
//! requests is aws-sigv4's job; the tests sign with it and verify here.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use subtle::ConstantTimeEq;

/// Largest difference between a request's time and ours.
pub const MAX_SKEW_SECS: i64 = 15 * 60;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SigError {
    #[error("Missing Authentication Token")]
    Missing,
    #[error("{0}")]
    Incomplete(String),
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
    #[error("{0}")]
    Invalid(String),
}

impl SigError {
    /// The error type an AWS client expects.
    pub fn code(&self) -> &'static str {
        match self {
            SigError::Missing => "MissingAuthenticationTokenException",
            SigError::Incomplete(_) => "IncompleteSignatureException",
            SigError::UnknownKey => "UnrecognizedClientException",
            SigError::Invalid(_) => "InvalidSignatureException",
        }
    }
}

/// What a request shows of itself.
pub struct Request<'a> {
    pub method: &'a str,
    /// The path as it came (percent-encoded).
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a http::HeaderMap,
    pub body: &'a [u8],
}

/// Checks `req`'s signature against `secret_of(access_key_id)`, for
/// `region` and `service` at `now` (epoch seconds); the access key id.
pub fn verify(req: &Request, region: &str, service: &str, now: i64, secret_of: impl Fn(&str) -> Option<String>) -> Result<String, SigError> {
    let auth = req.headers.get(http::header::AUTHORIZATION).ok_or(SigError::Missing)?;
    let auth = auth.to_str().map_err(|_| SigError::Incomplete("Authorization header is not ASCII".into()))?;
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256 ").ok_or_else(|| SigError::Incomplete("Unsupported signature algorithm; use AWS4-HMAC-SHA256".into()))?;
    let mut parts: BTreeMap<&str, &str> = BTreeMap::new();
    for kv in rest.split(',') {
        let (k, v) = kv.trim().split_once('=').ok_or_else(|| SigError::Incomplete(format!("Authorization header part {kv:?} is not key=value")))?;
        parts.insert(k, v);
    }
    let field = |k: &str| parts.get(k).copied().ok_or_else(|| SigError::Incomplete(format!("Authorization header requires '{k}'")));
    let (credential, signed_headers, signature) = (field("Credential")?, field("SignedHeaders")?, field("Signature")?);
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, date, scope_region, scope_service, terminal] = scope[..] else {
        return Err(SigError::Incomplete(format!("Credential should be <key id>/<date>/<region>/<service>/aws4_request, got {credential:?}")));
    };
    if terminal != "aws4_request" {
        return Err(SigError::Incomplete("Credential should end in aws4_request".into()));
    }
    let amz_date = req.headers.get("x-amz-date").and_then(|v| v.to_str().ok()).ok_or_else(|| SigError::Incomplete("X-Amz-Date header is required".into()))?;
    let when = parse_amz_date(amz_date).ok_or_else(|| SigError::Incomplete(format!("X-Amz-Date {amz_date:?} is not yyyyMMddTHHmmssZ")))?;
    if !amz_date.starts_with(date) || date.len() != 8 {
        return Err(SigError::Invalid(format!("Credential date {date} is not the date of X-Amz-Date {amz_date}")));
    }
    if scope_region != region {
        return Err(SigError::Invalid(format!("Credential should be scoped to a valid region, not '{scope_region}'; this endpoint's region is '{region}'")));
    }
    if scope_service != service {
        return Err(SigError::Invalid(format!("Credential should be scoped to correct service: '{service}'")));
    }
    if (now - when).abs() > MAX_SKEW_SECS {
        return Err(SigError::Invalid(format!("Signature expired: {amz_date} is more than 15 minutes from the server's time")));
    }
    let names: Vec<&str> = signed_headers.split(';').collect();
    if !names.contains(&"host") {
        return Err(SigError::Incomplete("SignedHeaders must include host".into()));
    }
    let secret = secret_of(key_id).ok_or(SigError::UnknownKey)?;
    let canonical = canonical_request(req, &names).map_err(SigError::Incomplete)?;
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex::encode(Sha256::digest(canonical.as_bytes())));
    let key = [date, region, service, "aws4_request"].iter().fold(format!("AWS4{secret}").into_bytes(), |k, part| hmac(&k, part.as_bytes()));
    let want = hex::encode(hmac(&key, to_sign.as_bytes()));
    if want.as_bytes().ct_eq(signature.as_bytes()).into() {
        Ok(key_id.to_string())
    } else {
        Err(SigError::Invalid("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.".into()))
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// The canonical request the client signed, from the headers it names.
fn canonical_request(req: &Request, names: &[&str]) -> Result<String, String> {
    let mut out = String::with_capacity(256);
    out.push_str(req.method);
    out.push('\n');
    out.push_str(&canonical_uri(req.path));
    out.push('\n');
    out.push_str(&canonical_query(req.query));
    out.push('\n');
    for name in names {
        let values: Vec<String> = req
            .headers
            .get_all(*name)
            .iter()
            .map(|v| v.to_str().map(|s| s.split_whitespace().collect::<Vec<_>>().join(" ")).map_err(|_| format!("header {name} is not ASCII")))
            .collect::<Result<_, _>>()?;
        if values.is_empty() {
            return Err(format!("signed header {name} is missing from the request"));
        }
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&names.join(";"));
    out.push('\n');
    match req.headers.get("x-amz-content-sha256").and_then(|v| v.to_str().ok()) {
        Some(h) => out.push_str(h),
        None => out.push_str(&hex::encode(Sha256::digest(req.body))),
    }
    Ok(out)
}

/// Characters left as they are in canonical URIs and queries.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

fn encode(s: &str, keep_slash: bool, out: &mut String) {
    for &b in s.as_bytes() {
        if unreserved(b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The path with each segment encoded as AWS services other than S3 sign
/// it (the client encoded the segment once on the wire, and again here).
fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    let mut out = String::with_capacity(path.len());
    encode(path, true, &mut out);
    out
}

/// Query parameters sorted by name, then value, each encoded.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let (mut ek, mut ev) = (String::new(), String::new());
            encode(&decode(k), false, &mut ek);
            encode(&decode(v), false, &mut ev);
            (ek, ev)
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// Epoch seconds of `yyyyMMddTHHmmssZ`.
fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' || !b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s[r].parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (n(0..4)?, n(4..6)?, n(6..8)?, n(9..11)?, n(11..13)?, n(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(crate::timefmt::days_from_civil(y, mo as u32, d as u32) * 86_400 + h * 3600 + mi * 60 + se)
}
