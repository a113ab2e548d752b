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
    let (credential, signed_headers, given) = (field("Credential")?, field("SignedHeaders")?, field("Signature")?);
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
    let want = signature(&secret, amz_date, region, service, &canonical);
    if want.as_bytes().ct_eq(given.as_bytes()).into() {
        Ok(key_id.to_string())
    } else {
        Err(SigError::Invalid("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.".into()))
    }
}

/// The SigV4 signature (hex) of a canonical request made at `amz_date`
/// (`yyyyMMddTHHmmssZ`), scoped to that day, `region` and `service`.
pub(crate) fn signature(secret: &str, amz_date: &str, region: &str, service: &str, canonical: &str) -> String {
    let date = &amz_date[..amz_date.len().min(8)];
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex::encode(Sha256::digest(canonical.as_bytes())));
    let key = [date, region, service, "aws4_request"].iter().fold(format!("AWS4{secret}").into_bytes(), |k, part| hmac(&k, part.as_bytes()));
    hex::encode(hmac(&key, to_sign.as_bytes()))
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

/// The path as AWS services other than S3 sign it: `.`, `..` and empty
/// segments resolved away (RFC 3986), then each segment encoded again
/// (the client encoded it once on the wire).
fn canonical_uri(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            s => kept.push(s),
        }
    }
    let mut out = String::with_capacity(path.len() + 8);
    for seg in &kept {
        out.push('/');
        encode(seg, false, &mut out);
    }
    let trailing = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    if out.is_empty() || (trailing && !out.ends_with('/')) {
        out.push('/');
    }
    out
}

/// Query parameters sorted by name, then value, each encoded.
pub(crate) fn canonical_query(query: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_smithy_runtime_api::client::identity::Identity;
    use std::time::{Duration, SystemTime};

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    /// A request signed by aws-sigv4 (AWS's own signer) at `secs`.
    fn signed(method: &str, path_query: &str, headers: &[(&str, &str)], body: &[u8], secs: u64, region: &str, service: &str) -> http::Request<Vec<u8>> {
        let identity: Identity = aws_credential_types::Credentials::new("AKIDTEST", SECRET, None, None, "test").into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(service)
            .time(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let url = format!("http://127.0.0.1:4573{path_query}");
        let signable = SignableRequest::new(method, &url, headers.iter().copied(), SignableBody::Bytes(body)).unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut req = http::Request::builder().method(method).uri(&url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut req = req.body(body.to_vec()).unwrap();
        instructions.apply_to_request_http1x(&mut req);
        req
    }

    fn check(req: &http::Request<Vec<u8>>, now: u64, region: &str, service: &str) -> Result<String, SigError> {
        let r = Request { method: req.method().as_str(), path: req.uri().path(), query: req.uri().query().unwrap_or(""), headers: req.headers(), body: req.body() };
        verify(&r, region, service, now as i64, |id| (id == "AKIDTEST").then(|| SECRET.to_string()))
    }

    /// Requests of every shape aws-sigv4 signs (paths with escapes, queries
    /// out of order, headers with runs of spaces and several values,
    /// bodies of any bytes) verify here; any change to what was signed, a
    /// wrong key, region, service or time does not.
    #[test]
    fn what_aws_sigv4_signs_verifies_and_nothing_else() {
        let mut next = crate::hash::xorshift(0x5167_4e4d);
        let paths = ["/", "/v1/events", "/a%20b/c%2Fd", "/x/./y", "/?b=2&a=1&a=0", "/?q=a%20b&e="];
        for case in 0..300u64 {
            let body: Vec<u8> = (0..next() % 200).map(|_| next() as u8).collect();
            let secs = 1_765_000_000 + next() % 100_000_000;
            let spaced = format!("a  b {case}   c");
            let target = ["Firehose_20150804.PutRecordBatch", "Firehose_20150804.PutRecord"][case as usize % 2];
            let headers = [("host", "127.0.0.1:4573"), ("content-type", "application/x-amz-json-1.1"), ("x-amz-target", target), ("x-custom", spaced.as_str())];
            let path = paths[case as usize % paths.len()];
            let req = signed("POST", path, &headers, &body, secs, "us-east-1", "firehose");
            assert_eq!(check(&req, secs + next() % 600, "us-east-1", "firehose"), Ok("AKIDTEST".into()), "case {case}: {path}");
            assert!(matches!(check(&req, secs, "eu-west-1", "firehose"), Err(SigError::Invalid(_))), "another region");
            assert!(matches!(check(&req, secs, "us-east-1", "kinesis"), Err(SigError::Invalid(_))), "another service");
            assert!(matches!(check(&req, secs + 16 * 60, "us-east-1", "firehose"), Err(SigError::Invalid(_))), "16 minutes late");
            let mut changed = req.clone();
            changed.body_mut().push(b'x');
            assert!(matches!(check(&changed, secs, "us-east-1", "firehose"), Err(SigError::Invalid(_))), "a changed body");
            let mut changed = req.clone();
            changed.headers_mut().insert("x-amz-target", "Firehose_20150804.DeleteDeliveryStream".parse().unwrap());
            assert!(matches!(check(&changed, secs, "us-east-1", "firehose"), Err(SigError::Invalid(_))), "a changed signed header");
            let r = Request { method: "POST", path: req.uri().path(), query: req.uri().query().unwrap_or(""), headers: req.headers(), body: req.body() };
            assert!(matches!(verify(&r, "us-east-1", "firehose", secs as i64, |id| (id == "AKIDTEST").then(|| "another".into())), Err(SigError::Invalid(_))), "a wrong secret");
            assert_eq!(verify(&r, "us-east-1", "firehose", secs as i64, |_| None), Err(SigError::UnknownKey), "an unknown key");
        }
        let mut bare = signed("POST", "/", &[("host", "h")], b"", 1_765_000_000, "us-east-1", "firehose");
        bare.headers_mut().remove(http::header::AUTHORIZATION);
        assert_eq!(check(&bare, 1_765_000_000, "us-east-1", "firehose"), Err(SigError::Missing));
    }
}
