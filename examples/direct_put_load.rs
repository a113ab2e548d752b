//! Load for the front door's benchmark (benches/direct_put.sh): N clients
//! send Firehose PutRecordBatch calls (500 records of ~1 KB each, SigV4
//! signed) as fast as they are answered, for a while; prints records/s and
//! request latency percentiles as JSON. With `--sink PORT` it is instead a
//! minimal non-durable endpoint that reads each body and answers at once:
//! the ceiling the same clients reach.
//!
//! usage: direct_put_load --endpoint URL [--clients 16] [--seconds 10] [--batch 500] [--size 1000]
//!        direct_put_load --sink PORT

use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use base64::Engine;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() {
    if let Some(port) = arg("--sink") {
        let app = axum::Router::new()
            .route("/", axum::routing::post(|body: axum::body::Bytes| async move {
                let n = body.len();
                ([("content-type", "application/x-amz-json-1.1")], format!("{{\"FailedPutCount\":0,\"Encrypted\":false,\"RequestResponses\":[],\"bytes\":{n}}}"))
            }))
            .layer(axum::extract::DefaultBodyLimit::disable());
        let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await.expect("sink port");
        axum::serve(listener, app).await.expect("sink");
        return;
    }
    let endpoint = arg("--endpoint").expect("--endpoint URL");
    let clients: usize = arg("--clients").map_or(16, |v| v.parse().unwrap());
    let seconds: u64 = arg("--seconds").map_or(10, |v| v.parse().unwrap());
    let batch: usize = arg("--batch").map_or(500, |v| v.parse().unwrap());
    let size: usize = arg("--size").map_or(1000, |v| v.parse().unwrap());
    let key = arg("--key").unwrap_or_else(|| "AKIDLOCALONLY".into());
    let secret = arg("--secret").unwrap_or_else(|| "local-only-secret-do-not-use-elsewhere".into());
    // a few signed bodies per client, made before the clock starts
    let identity: aws_smithy_runtime_api::client::identity::Identity = aws_credential_types::Credentials::new(&key, &secret, None, None, "load").into();
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/').to_string();
    let mut bodies = Vec::new();
    for c in 0..clients {
        let mut mine = Vec::new();
        for b in 0..4 {
            let records: Vec<String> = (0..batch)
                .map(|i| {
                    let head = format!("{{\"event_id\":\"lg-{c}-{b}-{i}\",\"timestamp\":\"2026-12-06T10:00:00Z\",\"event_type\":\"view\",\"user_id\":{i},\"session_id\":\"");
                    let rec = format!("{head}{}\"}}", "s".repeat(size.saturating_sub(head.len() + 2)));
                    format!("{{\"Data\":\"{}\"}}", base64::engine::general_purpose::STANDARD.encode(rec))
                })
                .collect();
            let body = format!("{{\"DeliveryStreamName\":\"events\",\"Records\":[{}]}}", records.join(","));
            let headers = [("host", host.as_str()), ("content-type", "application/x-amz-json-1.1"), ("x-amz-target", "Firehose_20150804.PutRecordBatch")];
            let params = aws_sigv4::sign::v4::SigningParams::builder().identity(&identity).region("us-east-1").name("firehose").time(SystemTime::now()).settings(SigningSettings::default()).build().unwrap().into();
            let signable = SignableRequest::new("POST", &endpoint, headers.iter().copied(), SignableBody::Bytes(body.as_bytes())).unwrap();
            let (instructions, _) = sign(signable, &params).unwrap().into_parts();
            let signed: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).chain(instructions.headers().map(|(k, v)| (k.to_string(), v.to_string()))).collect();
            mine.push((bytes::Bytes::from(body), signed));
        }
        bodies.push(mine);
    }
    let http = reqwest::Client::builder().pool_max_idle_per_host(clients).build().unwrap();
    let records = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for mine in bodies {
        let (http, endpoint, records, failed) = (http.clone(), endpoint.clone(), records.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0;
            while Instant::now() < until {
                let (body, headers) = &mine[i % mine.len()];
                i += 1;
                let mut req = http.post(&endpoint).body(body.clone());
                for (k, v) in headers {
                    req = req.header(k, v);
                }
                let t = Instant::now();
                match req.send().await {
                    Ok(r) if r.status().is_success() => {
                        let text = r.text().await.unwrap_or_default();
                        let failed_here = text.split("\"FailedPutCount\":").nth(1).and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next()?.parse::<u64>().ok()).unwrap_or(0);
                        latencies.push(t.elapsed());
                        records.fetch_add(batch as u64 - failed_here, Ordering::Relaxed);
                        failed.fetch_add(failed_here, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(batch as u64, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let secs = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1))).map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    println!(
        "{}",
        serde_json::json!({
            "records_per_s": records.load(Ordering::Relaxed) as f64 / secs,
            "failed": failed.load(Ordering::Relaxed),
            "requests": latencies.len(),
            "p50_ms": pct(0.5),
            "p99_ms": pct(0.99),
            "seconds": secs,
        })
    );
}
