//! The HTTP front door: Firehose's Direct PUT API and a simple events API,
//! each answering only once what it accepted is durable.
//!
//! Input: requests on `[http] listen` (TLS when a certificate is set):
//! `POST /` with the AWS JSON 1.1 protocol (`X-Amz-Target:
//! Firehose_20150804.PutRecord`, `.PutRecordBatch`,
//! `.DescribeDeliveryStream`, `.ListDeliveryStreams`), signed with SigV4 by
//! a configured key ([`firehose`]); `POST /v1/events` with NDJSON, a JSON
//! array or one object, gzip or not, authorized by HTTP basic auth, a
//! bearer token or SigV4, and checked against the table's schema at the
//! door ([`events`]). Output: the records appended to the durable medium
//! ([`Medium`]): the local write-ahead log ([`log`]), which
//! [`log_source::LogSource`] reads like the spool, or a Kinesis stream
//! (forward mode, [`forward`]) the Kinesis source reads; then the answer.
//! Bounds: request bodies (Firehose's 4 MiB, `max_request_size`), requests
//! held at once (`max_inflight_requests`), the log's size: past them the
//! door answers 413 or 503 with `Retry-After`, never accepting what it
//! cannot keep. Failure: [`DoorError`] at start (the address, the TLS
//! files); afterwards errors are answers. Secrets are never logged, nor
//! record contents.

pub mod auth;
pub mod events;
pub mod firehose;
pub mod forward;
pub mod log;
pub mod log_source;
pub mod sigv4;

use crate::schema::TableSchema;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum DoorError {
    #[error("[http] listen {addr}: {source}; set it to a free address")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("[http] tls: {0}")]
    Tls(String),
    #[error(transparent)]
    Log(#[from] log::LogError),
}

/// What `/v1/events` does with a record the schema refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidRecords {
    /// Not stored; the answer lists it (400 when none was stored, else 207).
    Reject,
    /// Stored: it goes to the error prefix, as Firehose does; the answer
    /// lists it all the same.
    Accept,
}

/// The validated `[http]` section.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Delivery stream names `DeliveryStreamName` may take.
    pub streams: Vec<String>,
    /// The region SigV4 scopes must name.
    pub region: String,
    pub auth: auth::AuthConfig,
    pub invalid: InvalidRecords,
    /// Largest `/v1/events` body, before and after gzip.
    pub max_request_bytes: usize,
    /// Requests whose bodies are held at once; more wait their turn.
    pub max_inflight: usize,
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// Where accepted records go before the answer.
#[derive(Clone)]
pub enum Medium {
    /// The local write-ahead log.
    Log(log::LogWriter),
    /// A Kinesis stream (forward mode).
    Kinesis(Arc<forward::Forwarder>),
}

/// A record's id in an answer.
pub type RecordId = String;

/// Why records were not accepted.
#[derive(Debug)]
pub enum Refusal {
    /// No room now: come back later (503 / ServiceUnavailableException).
    Full,
    /// The medium failed (503 too: the SDK retries).
    Failed(String),
}

impl Medium {
    /// Appends records (arrival ms, bytes), all or a leading part of them
    /// (what there is room for); the ids of those accepted, durable.
    pub async fn append(&self, records: &[(i64, &[u8])]) -> Result<Vec<RecordId>, Refusal> {
        match self {
            Medium::Log(w) => {
                let mut room = 0;
                let mut reserved = 0;
                for (_, d) in records {
                    let n = log::frame_bytes(d.len());
                    if !w.reserve(n) {
                        break;
                    }
                    room += 1;
                    reserved += n;
                }
                if room == 0 {
                    return Err(Refusal::Full);
                }
                match w.append(&records[..room]).await {
                    Ok(places) => Ok(places.iter().map(|p| format!("{:016x}{:016x}", p.segment, p.offset)).collect()),
                    Err(e) => {
                        w.unreserve(reserved);
                        Err(Refusal::Failed(e.to_string()))
                    }
                }
            }
            Medium::Kinesis(f) => f.put(records).await,
        }
    }

    /// Whether a request of `n` bytes would find room now (readiness).
    pub fn has_room(&self, n: u64) -> bool {
        match self {
            Medium::Log(w) => w.has_room(n),
            Medium::Kinesis(_) => true,
        }
    }
}

/// Request figures for the metrics endpoint, by operation and status.
#[derive(Default)]
pub struct DoorStats {
    /// (operation, status) → requests.
    pub requests: Mutex<std::collections::BTreeMap<(&'static str, u16), u64>>,
    /// Request latency histogram: counts per bucket of [`LATENCY_BUCKETS`], and the sum in µs.
    pub latency: Mutex<(Vec<u64>, u64, u64)>,
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    /// The medium had no room at the last look (readiness).
    pub full: std::sync::atomic::AtomicBool,
}

/// Upper bounds (seconds) of the request latency buckets.
pub const LATENCY_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

impl DoorStats {
    fn observe(&self, op: &'static str, status: u16, took: Duration, records: u64, bytes: u64) {
        *self.requests.lock().unwrap().entry((op, status)).or_default() += 1;
        let s = took.as_secs_f64();
        let mut l = self.latency.lock().unwrap();
        if l.0.is_empty() {
            l.0 = vec![0; LATENCY_BUCKETS.len()];
        }
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| s <= *b) {
            l.0[i] += 1;
        }
        l.1 += took.as_micros() as u64;
        l.2 += 1;
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// Everything a handler needs.
pub struct Door {
    pub cfg: HttpConfig,
    pub medium: Medium,
    /// The table's schema, for checking `/v1/events` records at the door
    /// (replaced when the schema file changes).
    pub schema: Arc<Mutex<Arc<TableSchema>>>,
    pub max_record_bytes: usize,
    inflight: tokio::sync::Semaphore,
    pub stats: Arc<DoorStats>,
}

/// An answer in the AWS JSON 1.1 error shape.
pub fn aws_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "__type": code, "message": message }).to_string();
    let mut r = (status, body).into_response();
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/x-amz-json-1.1"));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
    }
    r
}

/// Starts the door on `cfg.listen`; it stops accepting when `cancel`
/// fires and ends once the requests in flight are answered.
pub async fn serve(door: Arc<Door>, cancel: CancellationToken) -> Result<tokio::task::JoinHandle<()>, DoorError> {
    let addr = door.cfg.listen;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| DoorError::Listen { addr, source })?;
    let tls = match &door.cfg.tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key)?),
        None => None,
    };
    let app = router(door.clone());
    tracing::info!(listen = %addr, tls = tls.is_some(), "front door open");
    Ok(tokio::spawn(async move {
        let result = match tls {
            None => axum::serve(listener, app).with_graceful_shutdown(async move { cancel.cancelled().await }).await,
            Some(acceptor) => serve_tls(listener, acceptor, app, cancel).await,
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "front door stopped");
        }
    }))
}

fn router(door: Arc<Door>) -> axum::Router {
    use axum::routing::post;
    axum::Router::new()
        .route("/", post(firehose::handle))
        .route("/v1/events", post(events::handle))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(door)
}

impl Door {
    pub fn new(cfg: HttpConfig, medium: Medium, schema: Arc<Mutex<Arc<TableSchema>>>, max_record_bytes: usize, stats: Arc<DoorStats>) -> Door {
        let inflight = tokio::sync::Semaphore::new(cfg.max_inflight.max(1));
        Door { cfg, medium, schema, max_record_bytes, inflight, stats }
    }

    /// Reads a request body of at most `limit` bytes, holding one of the
    /// in-flight places while the request is handled (the permit).
    pub async fn body(&self, body: Body, limit: usize) -> Result<(bytes::Bytes, tokio::sync::SemaphorePermit<'_>), Response> {
        let permit = self.inflight.acquire().await.map_err(|_| aws_error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailableException", "shutting down"))?;
        match axum::body::to_bytes(body, limit).await {
            Ok(b) => Ok((b, permit)),
            Err(_) => Err(aws_error(StatusCode::PAYLOAD_TOO_LARGE, "InvalidArgumentException", &format!("request body over {limit} bytes"))),
        }
    }

    /// Counts a request and keeps readiness current.
    pub fn done(&self, op: &'static str, status: StatusCode, started: Instant, records: u64, bytes: u64) {
        self.stats.observe(op, status.as_u16(), started.elapsed(), records, bytes);
        self.stats.full.store(!self.medium.has_room(1 << 20), Ordering::Relaxed);
    }
}

/// The time now, epoch ms (records' arrival).
pub fn now_ms() -> i64 {
    crate::source::now_ms()
}

/// The headers' `Content-Encoding`, lowercased.
pub fn content_encoding(h: &HeaderMap) -> Option<String> {
    h.get("content-encoding").and_then(|v| v.to_str().ok()).map(|s| s.trim().to_ascii_lowercase())
}

fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<tokio_rustls::TlsAcceptor, DoorError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| DoorError::Tls(format!("{}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| DoorError::Tls(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| DoorError::Tls(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DoorError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| DoorError::Tls(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves HTTPS: each connection's TLS handshake, then hyper on it; stops
/// accepting at `cancel` and waits for the connections to end.
async fn serve_tls(listener: tokio::net::TcpListener, acceptor: tokio_rustls::TlsAcceptor, app: axum::Router, cancel: CancellationToken) -> Result<(), std::io::Error> {
    use hyper_util::rt::TokioIo;
    let mut conns = tokio::task::JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let (tcp, _) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => r?,
        };
        let (acceptor, app, cancel) = (acceptor.clone(), app.clone(), cancel.clone());
        conns.spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else { return };
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let mut app = app.clone();
                async move { tower::Service::call(&mut app, req.map(Body::new)).await }
            });
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    while conns.join_next().await.is_some() {}
    Ok(())
}
