//! Metrics and health: Prometheus `/metrics`, `/healthz`, `/readyz`, and
//! optional CloudWatch Embedded Metric Format lines.
//!
//! Input: snapshots the runner publishes (every half second and after each
//! flush) and the Kinesis source's lease and lag figures. Output: text in
//! the Prometheus exposition format with low-cardinality labels (error code,
//! destination, flush trigger; shard only for lag, bounded by the shard
//! count). Readiness: the source is connected, the lease coordinator (when
//! there is one) finished a round recently, and no buffer is older than
//! twice `max_age` plus a minute (a stuck flush). Failure: binding the
//! listen address fails at startup with the address in the message.

use crate::source::kafka::KafkaStats;
use crate::source::leased::LeasedStats;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Counters of the record path, for the summary line and metrics.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub records_in: u64,
    pub bytes_in: u64,
    pub rows: u64,
    pub errors: BTreeMap<&'static str, u64>,
    /// Records dropped by a filter of the schema file, by filter name.
    pub filtered: BTreeMap<String, u64>,
    pub skipped_replay: u64,
    /// Records the fused decoder wrote into their buffer in place (the
    /// rest were staged or took the general path).
    pub fused_in_place: u64,
    /// Time spent turning sealed buffers into object bytes (Parquet, gzip).
    pub encode_time: Duration,
}

impl Stats {
    pub fn error_total(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Adds another worker's counters.
    pub fn add(&mut self, o: &Stats) {
        self.records_in += o.records_in;
        self.bytes_in += o.bytes_in;
        self.rows += o.rows;
        for (code, n) in &o.errors {
            *self.errors.entry(code).or_default() += n;
        }
        for (name, n) in &o.filtered {
            *self.filtered.entry(name.clone()).or_default() += n;
        }
        self.skipped_replay += o.skipped_replay;
        self.fused_in_place += o.fused_in_place;
        self.encode_time += o.encode_time;
    }
}

/// What the runner publishes.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub table: String,
    pub stats: Stats,
    /// destination → (objects, bytes) delivered.
    pub delivered: BTreeMap<&'static str, (u64, u64)>,
    /// trigger → buffers flushed.
    pub flushes: BTreeMap<&'static str, u64>,
    /// Age of the oldest record not yet flushed.
    pub oldest_unflushed: Option<Duration>,
    pub buffer_bytes: u64,
    pub glue_calls: u64,
    pub glue_errors: u64,
    /// Iceberg commits made, and commit conflicts retried.
    pub table_commits: u64,
    pub table_commit_conflicts: u64,
    /// "applied" | "rejected" → count.
    pub schema_reloads: BTreeMap<&'static str, u64>,
    /// Edits of the config's `[routing]`/`[[tables]]` seen while running, by result.
    pub route_reloads: BTreeMap<&'static str, u64>,
    /// Per timestamp column taking epoch numbers: stored values before 2000 or after 2100.
    pub implausible_times: Vec<(String, u64)>,
    pub schema_version: String,
    pub max_age: Duration,
}

#[derive(Default)]
pub struct Metrics {
    snap: Mutex<Snapshot>,
    /// A leased source's figures (Kinesis, or Kafka's leases).
    leased: Mutex<Option<Arc<LeasedStats>>>,
    kafka: Mutex<Option<Arc<KafkaStats>>>,
    door: Mutex<Option<Arc<crate::source::http::DoorStats>>>,
    connected: AtomicBool,
}

impl Metrics {
    pub fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        f(&mut self.snap.lock().unwrap());
    }
    pub fn snapshot(&self) -> Snapshot {
        self.snap.lock().unwrap().clone()
    }
    pub fn set_kinesis(&self, k: Arc<LeasedStats>) {
        *self.leased.lock().unwrap() = Some(k);
    }
    /// The Kafka source's figures (its leases count as the Kinesis source's do).
    pub fn set_kafka(&self, k: Arc<KafkaStats>) {
        *self.leased.lock().unwrap() = Some(k.leased.clone());
        *self.kafka.lock().unwrap() = Some(k);
    }
    pub fn set_door(&self, d: Arc<crate::source::http::DoorStats>) {
        *self.door.lock().unwrap() = Some(d);
    }
    pub fn set_connected(&self, on: bool) {
        self.connected.store(on, Ordering::Relaxed);
    }

    /// (ready, reason when not).
    pub fn ready(&self) -> (bool, String) {
        if !self.connected.load(Ordering::Relaxed) {
            return (false, "source not connected yet".into());
        }
        let s = self.snapshot();
        if let Some(k) = self.leased.lock().unwrap().as_ref() {
            match *k.last_round.lock().unwrap() {
                None => return (false, "no lease round finished yet".into()),
                Some(t) if t.elapsed() > k.round_deadline => return (false, format!("no lease round for {:.0}s (lease table unreachable?)", t.elapsed().as_secs_f64())),
                _ => {}
            }
            if let Some(e) = k.unreachable.lock().unwrap().as_ref() {
                return (false, format!("the source cannot read: {e}"));
            }
        }
        if self.door.lock().unwrap().as_ref().is_some_and(|d| d.full.load(Ordering::Relaxed)) {
            return (false, "the front door's log is full: callers get 503 until the lake catches up".into());
        }
        if let Some(age) = s.oldest_unflushed {
            let limit = s.max_age * 2 + Duration::from_secs(60);
            if age > limit {
                return (false, format!("oldest buffered record is {:.0}s old (max_age {:?}): flushes are stuck", age.as_secs_f64(), s.max_age));
            }
        }
        (true, "ready".into())
    }

    /// The Prometheus exposition text.
    pub fn render(&self) -> String {
        let s = self.snapshot();
        let mut o = String::with_capacity(4096);
        let line = |o: &mut String, name: &str, labels: &str, v: f64| {
            let _ = writeln!(o, "lakehose_{name}{labels} {v}");
        };
        let head = |o: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(o, "# HELP lakehose_{name} {help}\n# TYPE lakehose_{name} {kind}");
        };
        // a metric with one unlabelled sample
        let single = |o: &mut String, name: &str, kind: &str, help: &str, v: f64| {
            head(o, name, kind, help);
            line(o, name, "", v);
        };
        head(&mut o, "up", "gauge", "1 while the process runs; labels: table and schema version in use.");
        line(&mut o, "up", &format!("{{table=\"{}\",schema_version=\"{}\"}}", s.table, s.schema_version), 1.0);
        single(&mut o, "incoming_records_total", "counter", "Records read from the source.", s.stats.records_in as f64);
        single(&mut o, "incoming_bytes_total", "counter", "Bytes of records read from the source.", s.stats.bytes_in as f64);
        single(&mut o, "records_converted_total", "counter", "Records converted to rows (delivered when their buffer flushes).", s.stats.rows as f64);
        head(&mut o, "records_failed_total", "counter", "Records sent to the error prefix, by error code.");
        for code in ["DataFormatConversion.ParseError", "DataFormatConversion.MalformedData", "DataFormatConversion.RecordTooLarge", "lakehose.ValidationFailed"] {
            line(&mut o, "records_failed_total", &format!("{{code=\"{code}\"}}"), *s.stats.errors.get(code).unwrap_or(&0) as f64);
        }
        head(&mut o, "records_filtered_total", "counter", "Records dropped by a filter of the schema file (neither rows nor errors), by filter.");
        for (name, n) in &s.stats.filtered {
            line(&mut o, "records_filtered_total", &format!("{{filter=\"{name}\"}}"), *n as f64);
        }
        head(&mut o, "objects_delivered_total", "counter", "Objects written, by destination (table, errors, raw).");
        for d in ["table", "errors", "raw"] {
            line(&mut o, "objects_delivered_total", &format!("{{dest=\"{d}\"}}"), s.delivered.get(d).map_or(0, |v| v.0) as f64);
        }
        head(&mut o, "bytes_delivered_total", "counter", "Bytes of objects written, by destination.");
        for d in ["table", "errors", "raw"] {
            line(&mut o, "bytes_delivered_total", &format!("{{dest=\"{d}\"}}"), s.delivered.get(d).map_or(0, |v| v.1) as f64);
        }
        head(&mut o, "flushes_total", "counter", "Buffers flushed, by trigger.");
        for t in ["records", "bytes", "age", "memory", "shutdown", "replay", "shard"] {
            line(&mut o, "flushes_total", &format!("{{trigger=\"{t}\"}}"), *s.flushes.get(t).unwrap_or(&0) as f64);
        }
        single(&mut o, "data_freshness_seconds", "gauge", "Age of the oldest record not yet delivered (0 when none waits).", s.oldest_unflushed.map_or(0.0, |d| d.as_secs_f64()));
        single(&mut o, "buffer_bytes", "gauge", "Memory held by open buffers.", s.buffer_bytes as f64);
        single(&mut o, "glue_calls_total", "counter", "Glue API calls made.", s.glue_calls as f64);
        single(&mut o, "glue_errors_total", "counter", "Glue API calls that failed (retried).", s.glue_errors as f64);
        single(&mut o, "iceberg_commits_total", "counter", "Iceberg table commits (each carries the shards' checkpoints).", s.table_commits as f64);
        single(&mut o, "iceberg_commit_conflicts_total", "counter", "Iceberg commits that met another writer's and were retried.", s.table_commit_conflicts as f64);
        head(&mut o, "implausible_timestamps_total", "counter", "Stored event times before 2000 or after 2100 of timestamp columns that take epoch numbers (epoch seconds in an epoch_millis column?), by column.");
        for (col, n) in &s.implausible_times {
            line(&mut o, "implausible_timestamps_total", &format!("{{column=\"{col}\"}}"), *n as f64);
        }
        head(&mut o, "schema_reloads_total", "counter", "Schema file edits seen while running, by result.");
        for r in ["applied", "rejected"] {
            line(&mut o, "schema_reloads_total", &format!("{{result=\"{r}\"}}"), *s.schema_reloads.get(r).unwrap_or(&0) as f64);
        }
        head(&mut o, "route_reloads_total", "counter", "Edits of the config's routes seen while running, by result.");
        for r in ["applied", "rejected"] {
            line(&mut o, "route_reloads_total", &format!("{{result=\"{r}\"}}"), *s.route_reloads.get(r).unwrap_or(&0) as f64);
        }
        if let Some(k) = self.leased.lock().unwrap().as_ref() {
            let c = k.leases.lock().unwrap().clone();
            single(&mut o, "leases_held", "gauge", "Shard leases this process holds.", c.held as f64);
            single(&mut o, "leases_total", "gauge", "Shard leases readable now (open shards whose parents are done).", c.total as f64);
            single(&mut o, "workers", "gauge", "Live lakehose processes on the stream, as this one sees them.", c.workers as f64);
            match self.kafka.lock().unwrap().as_ref() {
                None => {
                    head(&mut o, "shard_millis_behind_latest", "gauge", "MillisBehindLatest of the last GetRecords, per held shard.");
                    for (shard, ms) in k.lag.snapshot() {
                        line(&mut o, "shard_millis_behind_latest", &format!("{{shard=\"{shard}\"}}"), ms as f64);
                    }
                    head(&mut o, "retries_total", "counter", "AWS calls retried after throttling or an error, by call.");
                    line(&mut o, "retries_total", "{call=\"get_records\"}", k.retries.load(Ordering::Relaxed) as f64);
                }
                Some(kf) => {
                    head(&mut o, "kafka_partition_lag_records", "gauge", "High watermark minus the committed offset, per held partition.");
                    let committed = k.committed.lock().unwrap().clone();
                    for (shard, hw) in k.lag.snapshot() {
                        let lag = committed.get(&shard).map_or(hw, |c| hw - c).max(0);
                        line(&mut o, "kafka_partition_lag_records", &format!("{{partition=\"{shard}\"}}"), lag as f64);
                    }
                    single(&mut o, "kafka_tombstones_total", "counter", "Records with a null value, skipped.", kf.tombstones.load(Ordering::Relaxed) as f64);
                    single(&mut o, "kafka_aborted_records_total", "counter", "Records of aborted transactions, skipped (read_committed).", kf.aborted.load(Ordering::Relaxed) as f64);
                    single(&mut o, "kafka_fetched_bytes_total", "counter", "Record batch bytes fetched from the brokers.", kf.bytes_in.load(Ordering::Relaxed) as f64);
                    head(&mut o, "retries_total", "counter", "Calls retried after an error, by call.");
                    line(&mut o, "retries_total", "{call=\"fetch\"}", k.retries.load(Ordering::Relaxed) as f64);
                }
            }
        }
        if let Some(d) = self.door.lock().unwrap().as_ref() {
            head(&mut o, "http_requests_total", "counter", "Front door requests, by operation and status.");
            for ((op, status), n) in d.requests.lock().unwrap().iter() {
                line(&mut o, "http_requests_total", &format!("{{operation=\"{op}\",status=\"{status}\"}}"), *n as f64);
            }
            let (buckets, sum_us, count) = d.latency.lock().unwrap().clone();
            head(&mut o, "http_request_seconds", "histogram", "Front door request latency, to the answer (after the records are durable).");
            let mut cumulative = 0;
            for (b, n) in crate::source::http::LATENCY_BUCKETS.iter().zip(buckets.iter().chain(std::iter::repeat(&0))) {
                cumulative += n;
                line(&mut o, "http_request_seconds_bucket", &format!("{{le=\"{b}\"}}"), cumulative as f64);
            }
            line(&mut o, "http_request_seconds_bucket", "{le=\"+Inf\"}", count as f64);
            line(&mut o, "http_request_seconds_sum", "", sum_us as f64 / 1e6);
            line(&mut o, "http_request_seconds_count", "", count as f64);
            single(&mut o, "http_records_total", "counter", "Records the front door accepted (durable).", d.records.load(Ordering::Relaxed) as f64);
            single(&mut o, "http_bytes_total", "counter", "Bytes of records the front door accepted.", d.bytes.load(Ordering::Relaxed) as f64);
        }
        o
    }

    /// One CloudWatch EMF line with the counters' increase since `prev`.
    pub fn emf_line(&self, prev: &Snapshot, now_ms: i64) -> (String, Snapshot) {
        let s = self.snapshot();
        let d = |a: u64, b: u64| a.saturating_sub(b);
        let delivered = |x: &Snapshot, k: &str| x.delivered.get(k).copied().unwrap_or((0, 0));
        let (lag, held) = match self.leased.lock().unwrap().as_ref() {
            Some(k) => (k.lag.snapshot().values().copied().max().unwrap_or(0), k.leases.lock().unwrap().held),
            None => (0, 0),
        };
        let kinds = ["table", "errors", "raw"];
        let objects: u64 = kinds.iter().map(|k| d(delivered(&s, k).0, delivered(prev, k).0)).sum();
        let bytes: u64 = kinds.iter().map(|k| d(delivered(&s, k).1, delivered(prev, k).1)).sum();
        let v = serde_json::json!({
            "_aws": {"Timestamp": now_ms, "CloudWatchMetrics": [{"Namespace": "lakehose", "Dimensions": [["Table"]], "Metrics": [
                {"Name": "IncomingRecords", "Unit": "Count"}, {"Name": "IncomingBytes", "Unit": "Bytes"},
                {"Name": "RecordsConverted", "Unit": "Count"}, {"Name": "RecordsFailed", "Unit": "Count"},
                {"Name": "DeliveredObjects", "Unit": "Count"}, {"Name": "DeliveredBytes", "Unit": "Bytes"},
                {"Name": "DataFreshness", "Unit": "Seconds"}, {"Name": "MaxMillisBehindLatest", "Unit": "Milliseconds"},
                {"Name": "LeasesHeld", "Unit": "Count"}]}]},
            "Table": s.table,
            "IncomingRecords": d(s.stats.records_in, prev.stats.records_in),
            "IncomingBytes": d(s.stats.bytes_in, prev.stats.bytes_in),
            "RecordsConverted": d(s.stats.rows, prev.stats.rows),
            "RecordsFailed": d(s.stats.error_total(), prev.stats.error_total()),
            "DeliveredObjects": objects,
            "DeliveredBytes": bytes,
            "DataFreshness": s.oldest_unflushed.map_or(0.0, |x| x.as_secs_f64()),
            "MaxMillisBehindLatest": lag,
            "LeasesHeld": held,
        });
        (v.to_string(), s)
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` until `cancel` fires.
pub async fn serve(addr: std::net::SocketAddr, m: Arc<Metrics>, cancel: CancellationToken) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use axum::http::StatusCode;
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics endpoint listening");
    let app = axum::Router::new()
        .route("/metrics", get(|axum::extract::State(m): axum::extract::State<Arc<Metrics>>| async move {
            ([("content-type", "text/plain; version=0.0.4")], m.render())
        }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|axum::extract::State(m): axum::extract::State<Arc<Metrics>>| async move {
            let (ok, why) = m.ready();
            (if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, format!("{why}\n"))
        }))
        .with_state(m);
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app).with_graceful_shutdown(async move { cancel.cancelled().await }).await;
    }))
}

/// Prints EMF lines to stdout every `every` until `cancel` fires.
pub fn emf_loop(m: Arc<Metrics>, every: Duration, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut prev = m.snapshot();
        let mut last = Instant::now();
        loop {
            let stop = tokio::select! {
                _ = cancel.cancelled() => true,
                _ = tokio::time::sleep(every.saturating_sub(last.elapsed())) => false,
            };
            last = Instant::now();
            let (line, snap) = m.emf_line(&prev, crate::source::now_ms());
            println!("{line}");
            prev = snap;
            if stop {
                return;
            }
        }
    })
}
