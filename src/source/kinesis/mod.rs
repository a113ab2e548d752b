//! Kinesis source: leased shards of one stream, read with GetRecords.
//!
//! Input: a stream (name or ARN), the lease table shared by every lakehose
//! process on that stream, a start position for shards with no checkpoint.
//! Output: [`SourceEvent`]s — `Assigned` when a lease is taken (with the
//! checkpoint and pending flush intent from its row), `Batch`es from the
//! shard readers, `Ended` when a closed shard is read out, `Revoked` when a
//! lease is lost. Commits go to the lease row, fenced by the lease counter;
//! uploads run only while [`Source::may_write`] says the fence holds.
//! Failure: [`KinesisError`] at startup (no stream, no lease table);
//! afterwards AWS errors are retried, and a lost lease is an event, not an
//! error.

pub mod coordinator;
pub mod kpl;
pub mod lease;
pub mod reader;

use crate::aws::sdk_config;
use crate::ids::ShardId;
use crate::checkpoint::{FlushIntent, ShardCheckpoint};
use crate::source::{Source, SourceError, SourceEvent};
use aws_sdk_kinesis::error::DisplayErrorContext;
use coordinator::{Control, Coordinator, LeaseCounts};
use lease::{DynamoLeases, LeaseError, Update};
use reader::{Read, ShardReader, StartPosition};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum KinesisError {
    #[error("kinesis stream {stream}: {message}")]
    Stream { stream: String, message: String },
    #[error(transparent)]
    Lease(#[from] LeaseError),
}

/// A stream named by name or ARN.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamRef {
    Name(String),
    Arn(String),
}

impl StreamRef {
    pub fn parse(s: &str) -> StreamRef {
        if s.starts_with("arn:") {
            StreamRef::Arn(s.to_string())
        } else {
            StreamRef::Name(s.to_string())
        }
    }
    fn arn(&self) -> Option<String> {
        match self {
            StreamRef::Arn(a) => Some(a.clone()),
            StreamRef::Name(_) => None,
        }
    }
}

impl std::fmt::Display for StreamRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamRef::Name(n) | StreamRef::Arn(n) => f.write_str(n),
        }
    }
}

/// Per-shard lag: MillisBehindLatest from the last GetRecords.
#[derive(Default)]
pub struct Lag {
    millis: Mutex<BTreeMap<ShardId, i64>>,
}

impl Lag {
    pub fn set(&self, shard: &ShardId, ms: i64) {
        self.millis.lock().unwrap().insert(shard.clone(), ms);
    }
    pub fn remove(&self, shard: &ShardId) {
        self.millis.lock().unwrap().remove(shard);
    }
    pub fn snapshot(&self) -> BTreeMap<ShardId, i64> {
        self.millis.lock().unwrap().clone()
    }
}

/// Figures the metrics endpoint reads.
#[derive(Default)]
pub struct KinesisStats {
    pub lag: Arc<Lag>,
    pub leases: Mutex<LeaseCounts>,
    /// When the last lease round succeeded (readiness).
    pub last_round: Mutex<Option<Instant>>,
    /// Rounds older than this make the process not ready.
    pub round_deadline: Duration,
    /// GetRecords/GetShardIterator calls retried.
    pub retries: Arc<std::sync::atomic::AtomicU64>,
}

#[derive(Debug, Clone)]
pub struct KinesisConfig {
    pub stream: StreamRef,
    pub start: StartPosition,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// DynamoDB endpoint override (defaults to `endpoint`).
    pub lease_endpoint: Option<String>,
    pub lease_table: String,
    pub failover: Duration,
    pub worker_id: String,
    pub idle_poll: Duration,
    /// How often the shard list is re-read (new shards after resharding).
    pub shard_sync: Duration,
}

/// The shards of a stream with their parents (ListShards, paginated).
pub async fn list_shards(client: &aws_sdk_kinesis::Client, stream: &StreamRef) -> Result<Vec<(ShardId, Vec<ShardId>)>, KinesisError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = client.list_shards();
        req = match (&token, stream) {
            (Some(t), _) => req.next_token(t),
            (None, StreamRef::Name(n)) => req.stream_name(n),
            (None, StreamRef::Arn(a)) => req.stream_arn(a),
        };
        let r = req.send().await.map_err(|e| KinesisError::Stream { stream: stream.to_string(), message: DisplayErrorContext(e).to_string() })?;
        for s in r.shards() {
            let parents = [s.parent_shard_id(), s.adjacent_parent_shard_id()].into_iter().flatten().map(ShardId::new).collect();
            out.push((ShardId::new(s.shard_id()), parents));
        }
        match r.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    Ok(out)
}

struct ReaderHandle {
    generation: u64,
    cancel: CancellationToken,
}

pub struct KinesisSource {
    cfg: KinesisConfig,
    client: aws_sdk_kinesis::Client,
    coord: Arc<Coordinator<DynamoLeases>>,
    control: mpsc::UnboundedReceiver<Control>,
    reads_tx: mpsc::Sender<Read>,
    reads: mpsc::Receiver<Read>,
    readers: HashMap<ShardId, ReaderHandle>,
    generation: u64,
    committed: HashMap<ShardId, ShardCheckpoint>,
    cancel: CancellationToken,
    coord_task: Option<tokio::task::JoinHandle<()>>,
    pub stats: Arc<KinesisStats>,
}

impl KinesisSource {
    pub async fn open(cfg: KinesisConfig) -> Result<KinesisSource, KinesisError> {
        let sdk = sdk_config(cfg.endpoint.as_deref(), cfg.region.as_deref()).await;
        let client = aws_sdk_kinesis::Client::new(&sdk);
        let shards = list_shards(&client, &cfg.stream).await?;
        let ddb = if cfg.lease_endpoint == cfg.endpoint { sdk } else { sdk_config(cfg.lease_endpoint.as_deref(), cfg.region.as_deref()).await };
        let leases = DynamoLeases::new(aws_sdk_dynamodb::Client::new(&ddb), &cfg.lease_table);
        lease::LeaseStore::ensure_table(&leases).await?;
        let (ctl_tx, control) = mpsc::unbounded_channel();
        let coord = Arc::new(Coordinator::new(Arc::new(leases), cfg.worker_id.clone(), cfg.failover, ctl_tx));
        let (reads_tx, reads) = mpsc::channel(16);
        let cancel = CancellationToken::new();
        let stats = Arc::new(KinesisStats { round_deadline: cfg.failover * 2, ..KinesisStats::default() });
        tracing::info!(stream = %cfg.stream, shards = shards.len(), worker = %cfg.worker_id, table = %cfg.lease_table, "kinesis source open");
        let task = tokio::spawn(coordinate(coord.clone(), client.clone(), cfg.clone(), shards, stats.clone(), cancel.clone()));
        Ok(KinesisSource {
            cfg,
            client,
            coord,
            control,
            reads_tx,
            reads,
            readers: HashMap::new(),
            generation: 0,
            committed: HashMap::new(),
            cancel,
            coord_task: Some(task),
            stats,
        })
    }

    fn start_reader(&mut self, shard: &ShardId, cp: &ShardCheckpoint) {
        self.generation += 1;
        let cancel = self.cancel.child_token();
        let r = ShardReader {
            client: self.client.clone(),
            stream: self.cfg.stream.clone(),
            shard: shard.clone(),
            generation: self.generation,
            start: self.cfg.start.clone(),
            idle_poll: self.cfg.idle_poll,
            limit: 10_000,
            lag: self.stats.lag.clone(),
            retries: self.stats.retries.clone(),
        };
        tokio::spawn(r.run(cp.resume.clone(), self.reads_tx.clone(), cancel.clone()));
        if let Some(old) = self.readers.insert(shard.clone(), ReaderHandle { generation: self.generation, cancel }) {
            old.cancel.cancel();
        }
    }

    fn stop_reader(&mut self, shard: &ShardId) {
        if let Some(h) = self.readers.remove(shard) {
            h.cancel.cancel();
        }
        self.stats.lag.remove(shard);
    }

    fn current(&self, shard: &ShardId, generation: u64) -> bool {
        self.readers.get(shard).is_some_and(|h| h.generation == generation)
    }
}

/// The coordinator's loop: lease rounds, and the shard list re-read now and then.
async fn coordinate(
    coord: Arc<Coordinator<DynamoLeases>>,
    client: aws_sdk_kinesis::Client,
    cfg: KinesisConfig,
    mut shards: Vec<(ShardId, Vec<ShardId>)>,
    stats: Arc<KinesisStats>,
    cancel: CancellationToken,
) {
    let mut last_sync = Instant::now();
    let mut last_log = Instant::now();
    loop {
        if last_sync.elapsed() >= cfg.shard_sync {
            match list_shards(&client, &cfg.stream).await {
                Ok(s) => shards = s,
                Err(e) => tracing::warn!(error = %e, "ListShards failed; keeping the last shard list"),
            }
            last_sync = Instant::now();
        }
        match coord.round(Some(&shards)).await {
            Ok(()) => *stats.last_round.lock().unwrap() = Some(Instant::now()),
            Err(e) => tracing::warn!(error = %e, "lease round failed; retrying"),
        }
        let counts = coord.counts.lock().unwrap().clone();
        *stats.leases.lock().unwrap() = counts.clone();
        if last_log.elapsed() >= Duration::from_secs(30) {
            last_log = Instant::now();
            let lag = stats.lag.snapshot();
            let max_lag = lag.values().copied().max().unwrap_or(0);
            tracing::info!(held = counts.held, leases = counts.total, workers = counts.workers, max_millis_behind = max_lag, "leases");
            for (s, ms) in lag {
                tracing::debug!(shard = %s, millis_behind_latest = ms, "lag");
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(coord.interval()) => {}
        }
    }
}

impl Source for KinesisSource {
    fn checkpoints(&self) -> Vec<(ShardId, ShardCheckpoint)> {
        Vec::new() // shards arrive as Assigned events
    }

    async fn next_event(&mut self) -> Result<Option<SourceEvent>, SourceError> {
        tokio::select! {
            biased;
            Some(c) = self.control.recv() => Ok(Some(match c {
                Control::Assigned { shard, checkpoint, intent } => {
                    tracing::info!(shard = %shard, resume = ?checkpoint.resume, replay = intent.len(), "reading shard");
                    self.start_reader(&shard, &checkpoint);
                    self.committed.insert(shard.clone(), checkpoint.clone());
                    SourceEvent::Assigned { shard, checkpoint, intent }
                }
                Control::Revoked(shard) => {
                    self.stop_reader(&shard);
                    SourceEvent::Revoked(shard)
                }
            })),
            Some(r) = self.reads.recv() => Ok(match r {
                Read::Batch(g, b) if self.current(&b.shard, g) => Some(SourceEvent::Batch(b)),
                Read::Ended(g, s) if self.current(&s, g) => Some(SourceEvent::Ended(s)),
                _ => None, // from a reader stopped since
            }),
            _ = tokio::time::sleep(Duration::from_millis(100)) => Ok(None),
        }
    }

    async fn commit(&mut self, shard: &ShardId, cp: ShardCheckpoint) -> Result<bool, SourceError> {
        if !self.readers.contains_key(shard) {
            return Ok(false);
        }
        let ok = self.coord.write(shard, Update { checkpoint: Some(&cp), intent: Some(None), ended: false }).await.map_err(KinesisError::from)?;
        if ok {
            self.committed.insert(shard.clone(), cp);
        } else {
            self.stop_reader(shard);
        }
        Ok(ok)
    }

    async fn begin_flush(&mut self, shard: &ShardId, intent: &[FlushIntent]) -> Result<bool, SourceError> {
        if !self.readers.contains_key(shard) {
            return Ok(false);
        }
        let ok = self.coord.write(shard, Update { checkpoint: None, intent: Some(Some(intent)), ended: false }).await.map_err(KinesisError::from)?;
        if !ok {
            self.stop_reader(shard);
        }
        Ok(ok)
    }

    fn may_write(&self, shard: &ShardId) -> bool {
        self.coord.may_write(shard)
    }

    async fn abandon(&mut self, shard: &ShardId) -> Result<(), SourceError> {
        self.stop_reader(shard);
        self.committed.remove(shard);
        // a conditional release: if another worker took the lease meanwhile, it changes nothing
        if let Err(e) = self.coord.release(shard).await {
            tracing::warn!(shard = %shard, error = %e, "could not give the lease up; it expires after the failover time");
        }
        Ok(())
    }

    async fn end_shard(&mut self, shard: &ShardId) -> Result<(), SourceError> {
        let cp = self.committed.get(shard).cloned().unwrap_or_default();
        let ok = self.coord.write(shard, Update { checkpoint: Some(&cp), intent: Some(None), ended: true }).await.map_err(KinesisError::from)?;
        if ok {
            tracing::info!(shard = %shard, "shard finished (SHARD_END); its children may start");
            if let Err(e) = self.coord.release(shard).await {
                tracing::warn!(shard = %shard, error = %e, "could not release the finished shard's lease; it expires after the failover time");
            }
        }
        self.stop_reader(shard);
        Ok(())
    }

    async fn close(&mut self) -> Result<(), SourceError> {
        self.cancel.cancel();
        if let Some(t) = self.coord_task.take() {
            let _ = t.await;
        }
        self.coord.release_all().await;
        tracing::info!(worker = %self.cfg.worker_id, "leases released");
        Ok(())
    }
}
