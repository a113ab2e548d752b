//! Kafka source: leased partitions of one or more topics, read with Fetch
//! (read_committed).
//!
//! Input: bootstrap servers, the topics (names or a regex), the start for
//! partitions with no checkpoint, the lease table shared by every lakehose
//! process reading these topics. Output: [`SourceEvent`]s as the Kinesis
//! source's (a partition is a shard `topic-N`; positions are offsets):
//! `Assigned` when a lease is taken, `Batch`es from the partition readers,
//! `Revoked` when a lease is lost; partitions added to a topic (or topics
//! matching the regex) are picked up at the next partition sync.
//! Checkpoints and flush intents are fenced writes to the lease row (the
//! exactly-once path); after each checkpoint the offset is also committed
//! to the consumer group `group_id` so Kafka's lag tools see it (best
//! effort: a refused commit is logged, never fatal). Failure:
//! [`KafkaSourceError`] at startup (no broker answers, a named topic is
//! missing, the lease table is unreachable); afterwards broker errors are
//! retried and readiness reports the broker unreachable.

pub mod client;
pub mod msk_iam;
pub mod reader;
pub mod records;
pub mod sasl;
pub mod wire;

use crate::checkpoint::{FlushIntent, Resume, ShardCheckpoint};
use crate::ids::ShardId;
use crate::source::lease::{LeaseError, LeaseTable};
use crate::source::leased::{ListShards, Leased, LeasedStats, Start};
use crate::source::{Source, SourceError, SourceEvent};
use client::{Cluster, KafkaError, PartitionInfo, StartAt, Topics};
use records::{shard_of, Meta};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
pub enum KafkaSourceError {
    #[error("kafka source: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
}

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub bootstrap: Vec<String>,
    pub topics: Topics,
    pub start: StartAt,
    pub settings: wire::Settings,
    /// Consumer group the offsets are committed to (None: not committed).
    pub group_id: Option<String>,
    pub meta: Meta,
    pub fetch_bytes: i32,
    /// Bytes all partition readers may hold fetched and not yet converted.
    pub read_ahead_bytes: usize,
    pub max_record_bytes: usize,
    pub idle_poll: Duration,
    pub partition_sync: Duration,
    pub leases: LeaseTable,
    pub failover: Duration,
    pub worker_id: String,
}

/// Figures the metrics endpoint reads: the leases' and Kafka's own.
#[derive(Default)]
pub struct KafkaStats {
    pub leased: Arc<LeasedStats>,
    pub tombstones: AtomicU64,
    pub aborted: AtomicU64,
    pub bytes_in: AtomicU64,
}

pub struct KafkaSource {
    cfg: KafkaConfig,
    cluster: Arc<Cluster>,
    leased: Leased,
    /// shard → (topic, partition) of every partition seen.
    partitions: Arc<std::sync::Mutex<HashMap<ShardId, (String, i32)>>>,
    offsets: Option<mpsc::UnboundedSender<(String, i32, i64)>>,
    committer: Option<tokio::task::JoinHandle<()>>,
    pub stats: Arc<KafkaStats>,
}

fn shards_of(parts: &[PartitionInfo], map: &std::sync::Mutex<HashMap<ShardId, (String, i32)>>) -> Vec<(ShardId, Vec<ShardId>)> {
    let mut m = map.lock().unwrap();
    parts
        .iter()
        .map(|p| {
            let s = shard_of(&p.topic, p.partition);
            m.insert(s.clone(), (p.topic.clone(), p.partition));
            (s, Vec::new())
        })
        .collect()
}

impl KafkaSource {
    /// Opens the source once a broker answers: an unreachable cluster is
    /// retried with backoff (the process stays up, not ready); refused
    /// credentials, a version we cannot speak or a missing topic stop it.
    pub async fn open(cfg: KafkaConfig, cancel: &tokio_util::sync::CancellationToken) -> Result<Option<KafkaSource>, KafkaSourceError> {
        let cluster = Arc::new(Cluster::new(cfg.bootstrap.clone(), cfg.settings.clone()));
        let mut attempt = 0;
        let parts = loop {
            match cluster.partitions(&cfg.topics).await {
                Ok(p) => break p,
                Err(e @ KafkaError::Wire(wire::WireError::Io { .. } | wire::WireError::Timeout { .. })) => {
                    attempt += 1;
                    let wait = crate::retry::backoff(attempt).min(Duration::from_secs(10));
                    tracing::warn!(error = %e, attempt, wait_ms = wait.as_millis() as u64, "no Kafka broker answers; retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => return Ok(None),
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
                Err(e) => return Err(e.into()),
            }
        };
        let partitions = Arc::new(std::sync::Mutex::new(HashMap::new()));
        let first = shards_of(&parts, &partitions);
        let leases = cfg.leases.open().await?;
        tracing::info!(topics = ?cfg.topics, partitions = parts.len(), worker = %cfg.worker_id, leases = %cfg.leases, "kafka source open");
        let (c, topics, map) = (cluster.clone(), cfg.topics.clone(), partitions.clone());
        let list: ListShards = Box::new(move || {
            let (c, topics, map) = (c.clone(), topics.clone(), map.clone());
            Box::pin(async move { c.partitions(&topics).await.map(|p| shards_of(&p, &map)).map_err(|e| e.to_string()) })
        });
        let leased = Leased::open(leases, cfg.worker_id.clone(), cfg.failover, cfg.partition_sync, cfg.read_ahead_bytes, first, list).await?;
        let stats = Arc::new(KafkaStats { leased: leased.stats.clone(), ..KafkaStats::default() });
        let (offsets, committer) = match cfg.group_id.clone() {
            None => (None, None),
            Some(g) => {
                let (tx, rx) = mpsc::unbounded_channel();
                (Some(tx), Some(tokio::spawn(commit_offsets(cluster.clone(), g, rx))))
            }
        };
        Ok(Some(KafkaSource { cfg, cluster, leased, partitions, offsets, committer, stats }))
    }
}

fn start_reader(cfg: &KafkaConfig, cluster: &Arc<Cluster>, stats: &Arc<KafkaStats>, partitions: &std::sync::Mutex<HashMap<ShardId, (String, i32)>>, s: Start<'_>) {
    let Some((topic, partition)) = partitions.lock().unwrap().get(s.shard).cloned() else {
        tracing::error!(shard = %s.shard, "a lease for a partition this process does not know (another topic in the same lease table?); not read");
        return;
    };
    if let Some(o) = next_offset(&s.checkpoint.resume) {
        stats.leased.committed.lock().unwrap().insert(s.shard.clone(), o);
    }
    let r = reader::PartitionReader {
        cluster: cluster.clone(),
        topic,
        partition,
        shard: s.shard.clone(),
        generation: s.generation,
        start: cfg.start,
        meta: cfg.meta.clone(),
        fetch_bytes: cfg.fetch_bytes,
        read_ahead: s.read_ahead,
        max_fetch: (cfg.settings.max_response_bytes - (1 << 20)).min(i32::MAX as usize) as i32,
        max_record: cfg.max_record_bytes,
        idle_poll: cfg.idle_poll,
        stats: stats.clone(),
    };
    tokio::spawn(r.run(s.checkpoint.resume.clone(), s.tx, s.cancel));
}

/// The next offset to read after a checkpoint (None: nothing read yet).
fn next_offset(r: &Resume) -> Option<i64> {
    let off = |p: &crate::ids::Position| p.seq.to_string().parse::<i64>().ok();
    match r {
        Resume::Start => None,
        Resume::At(p) => off(p),
        Resume::After(p) => off(p).map(|o| o + 1),
    }
}

/// Commits the latest checkpointed offset of each partition to the group,
/// at most once a second; failures are logged once per kind.
async fn commit_offsets(cluster: Arc<Cluster>, group: String, mut rx: mpsc::UnboundedReceiver<(String, i32, i64)>) {
    let mut latest: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut warned = false;
    let mut coordinator = None;
    loop {
        let Some((t, p, o)) = rx.recv().await else { return };
        latest.insert((t, p), o);
        // gather for a second, or until the source closes (its last checkpoints are sent then)
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        let mut closed = false;
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((t, p, o))) => {
                    latest.insert((t, p), o);
                }
                Ok(None) => {
                    closed = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let batch: Vec<(String, i32, i64)> = std::mem::take(&mut latest).into_iter().map(|((t, p), o)| (t, p, o)).collect();
        match cluster.commit_offsets(&group, &batch, &mut coordinator).await {
            Ok(()) => warned = false,
            Err(e) if !warned => {
                warned = true;
                tracing::warn!(group = %group, error = %e, "could not commit offsets to the consumer group (lag tools will not see them; lakehose's own checkpoints are unaffected)");
            }
            Err(e) => tracing::debug!(group = %group, error = %e, "offset commit failed again"),
        }
        if closed {
            return;
        }
    }
}

impl Source for KafkaSource {
    fn checkpoints(&self) -> Vec<(ShardId, ShardCheckpoint)> {
        Vec::new() // partitions arrive as Assigned events
    }

    async fn next_event(&mut self) -> Result<Option<SourceEvent>, SourceError> {
        let (cfg, cluster, stats, partitions) = (&self.cfg, &self.cluster, &self.stats, &self.partitions);
        Ok(self.leased.next_event(|s| start_reader(cfg, cluster, stats, partitions, s)).await)
    }

    async fn commit(&mut self, shard: &ShardId, cp: ShardCheckpoint) -> Result<bool, SourceError> {
        let next = next_offset(&cp.resume);
        let ok = self.leased.commit(shard, cp).await.map_err(KafkaSourceError::from)?;
        if let (true, Some(o)) = (ok, next) {
            self.stats.leased.committed.lock().unwrap().insert(shard.clone(), o);
            if let (Some(tx), Some((t, p))) = (&self.offsets, self.partitions.lock().unwrap().get(shard)) {
                let _ = tx.send((t.clone(), *p, o));
            }
        }
        Ok(ok)
    }

    async fn begin_flush(&mut self, shard: &ShardId, intent: &[FlushIntent]) -> Result<bool, SourceError> {
        Ok(self.leased.begin_flush(shard, intent).await.map_err(KafkaSourceError::from)?)
    }

    fn may_write(&self, shard: &ShardId) -> bool {
        self.leased.may_write(shard)
    }

    async fn abandon(&mut self, shard: &ShardId) -> Result<(), SourceError> {
        self.leased.abandon(shard).await;
        Ok(())
    }

    async fn close(&mut self) -> Result<(), SourceError> {
        self.leased.close().await;
        // the last checkpoints' offsets go to the group before the process ends
        self.offsets = None;
        if let Some(task) = self.committer.take() {
            let _ = tokio::time::timeout(self.cfg.settings.request_timeout * 2, task).await;
        }
        Ok(())
    }
}
