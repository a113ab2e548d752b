//! Leased shards: what a source whose shards are shared by several
//! processes through the lease table does the same way whatever the
//! shards are (Kinesis shards, Kafka partitions).
//!
//! Input: the source's shard lister (called every `shard_sync`) and its
//! way of starting a reader for a shard. Output: [`SourceEvent`]s —
//! `Assigned` when the coordinator takes a lease (the source then starts
//! a reader at the lease's checkpoint), the readers' `Batch`es and
//! `Ended`s (only from the reader currently started for that shard),
//! `Revoked` when a lease is lost. Checkpoints and flush intents are
//! fenced writes to the lease row. Failure: lease-table errors after
//! retries; a lost lease is an event, not an error.

use super::coordinator::{Control, Coordinator, LeaseCounts};
use super::lease::{LeaseError, Leases, Update};
use super::read_ahead::{Held, ReadAhead};
use super::{Batch, SourceEvent};
use crate::checkpoint::{FlushIntent, ShardCheckpoint};
use crate::ids::ShardId;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What a shard reader sends: batches and the end of a closed shard,
/// tagged with the reader's generation (a reader stopped since is ignored).
pub enum Read {
    /// A reader's batch, with the read-ahead bytes it holds.
    Batch(u64, Batch, Held),
    Ended(u64, ShardId),
}

/// A per-shard figure the readers keep current (Kinesis: MillisBehindLatest;
/// Kafka: the partition's high watermark).
#[derive(Default)]
pub struct Lag {
    values: Mutex<BTreeMap<ShardId, i64>>,
}

impl Lag {
    pub fn set(&self, shard: &ShardId, v: i64) {
        self.values.lock().unwrap().insert(shard.clone(), v);
    }
    pub fn remove(&self, shard: &ShardId) {
        self.values.lock().unwrap().remove(shard);
    }
    pub fn snapshot(&self) -> BTreeMap<ShardId, i64> {
        self.values.lock().unwrap().clone()
    }
}

/// Figures the metrics endpoint reads.
#[derive(Default)]
pub struct LeasedStats {
    pub lag: Arc<Lag>,
    /// Kafka: the committed offset (next to read) per held partition.
    pub committed: Mutex<BTreeMap<ShardId, i64>>,
    pub leases: Mutex<LeaseCounts>,
    /// When the last lease round succeeded (readiness).
    pub last_round: Mutex<Option<Instant>>,
    /// Rounds older than this make the process not ready.
    pub round_deadline: Duration,
    /// Reads retried after an error (GetRecords, Kafka fetches).
    pub retries: Arc<std::sync::atomic::AtomicU64>,
    /// The source cannot reach its service now (Kafka: no broker answers).
    pub unreachable: Mutex<Option<String>>,
}

/// The shard list with parents, as the source reads it now.
pub type Shards = Vec<(ShardId, Vec<ShardId>)>;
pub type ListShards = Box<dyn FnMut() -> Pin<Box<dyn Future<Output = Result<Shards, String>> + Send>> + Send>;

struct ReaderHandle {
    generation: u64,
    cancel: CancellationToken,
}

pub struct Leased {
    pub worker_id: String,
    coord: Arc<Coordinator<Leases>>,
    control: mpsc::UnboundedReceiver<Control>,
    reads_tx: mpsc::Sender<Read>,
    reads: mpsc::Receiver<Read>,
    readers: HashMap<ShardId, ReaderHandle>,
    generation: u64,
    committed: HashMap<ShardId, ShardCheckpoint>,
    cancel: CancellationToken,
    coord_task: Option<tokio::task::JoinHandle<()>>,
    /// The read-ahead of the batch handed last: given back when the
    /// pipeline asks for the next event (it is done with that batch then).
    handed: Option<Held>,
    read_ahead: Arc<ReadAhead>,
    pub stats: Arc<LeasedStats>,
}

/// A reader to start: the shard, where to resume, its generation, its
/// cancellation token, where it sends and the read-ahead budget it takes
/// each fetch's size from.
pub struct Start<'a> {
    pub shard: &'a ShardId,
    pub checkpoint: &'a ShardCheckpoint,
    pub generation: u64,
    pub cancel: CancellationToken,
    pub tx: mpsc::Sender<Read>,
    pub read_ahead: Arc<ReadAhead>,
}

impl Leased {
    /// Opens the lease table and starts the coordinator's rounds over the
    /// shards `list` returns (`first` is the list read at start); the
    /// readers share `read_ahead_bytes` of fetched, unconverted data.
    pub async fn open(leases: Leases, worker_id: String, failover: Duration, shard_sync: Duration, read_ahead_bytes: usize, first: Shards, list: ListShards) -> Result<Leased, LeaseError> {
        super::lease::LeaseStore::ensure_table(&leases).await?;
        let (ctl_tx, control) = mpsc::unbounded_channel();
        let coord = Arc::new(Coordinator::new(Arc::new(leases), worker_id.clone(), failover, ctl_tx));
        let (reads_tx, reads) = mpsc::channel(16);
        let cancel = CancellationToken::new();
        let stats = Arc::new(LeasedStats { round_deadline: failover * 2, ..LeasedStats::default() });
        let task = tokio::spawn(coordinate(coord.clone(), first, list, shard_sync, stats.clone(), cancel.clone()));
        Ok(Leased {
            worker_id,
            coord,
            control,
            reads_tx,
            reads,
            readers: HashMap::new(),
            generation: 0,
            committed: HashMap::new(),
            cancel,
            coord_task: Some(task),
            handed: None,
            read_ahead: ReadAhead::new(read_ahead_bytes),
            stats,
        })
    }

    /// The next event; `start` starts a reader for a shard just assigned.
    pub async fn next_event(&mut self, start: impl FnOnce(Start<'_>)) -> Option<SourceEvent> {
        self.handed = None;
        tokio::select! {
            biased;
            Some(c) = self.control.recv() => Some(match c {
                Control::Assigned { shard, checkpoint, intent } => {
                    tracing::info!(shard = %shard, resume = ?checkpoint.resume, replay = intent.len(), "reading shard");
                    self.generation += 1;
                    let cancel = self.cancel.child_token();
                    start(Start { shard: &shard, checkpoint: &checkpoint, generation: self.generation, cancel: cancel.clone(), tx: self.reads_tx.clone(), read_ahead: self.read_ahead.clone() });
                    if let Some(old) = self.readers.insert(shard.clone(), ReaderHandle { generation: self.generation, cancel }) {
                        old.cancel.cancel();
                    }
                    self.committed.insert(shard.clone(), checkpoint.clone());
                    SourceEvent::Assigned { shard, checkpoint, intent }
                }
                Control::Revoked(shard) => {
                    self.stop_reader(&shard);
                    SourceEvent::Revoked(shard)
                }
            }),
            Some(r) = self.reads.recv() => match r {
                Read::Batch(g, b, held) if self.current(&b.shard, g) => {
                    self.handed = Some(held);
                    Some(SourceEvent::Batch(b))
                }
                Read::Ended(g, s) if self.current(&s, g) => Some(SourceEvent::Ended(s)),
                _ => None, // from a reader stopped since
            },
            _ = tokio::time::sleep(Duration::from_millis(100)) => None,
        }
    }

    fn stop_reader(&mut self, shard: &ShardId) {
        if let Some(h) = self.readers.remove(shard) {
            h.cancel.cancel();
        }
        self.stats.lag.remove(shard);
        self.stats.committed.lock().unwrap().remove(shard);
    }

    fn current(&self, shard: &ShardId, generation: u64) -> bool {
        self.readers.get(shard).is_some_and(|h| h.generation == generation)
    }

    pub async fn commit(&mut self, shard: &ShardId, cp: ShardCheckpoint) -> Result<bool, LeaseError> {
        if !self.readers.contains_key(shard) {
            return Ok(false);
        }
        let ok = self.coord.write(shard, Update { checkpoint: Some(&cp), intent: Some(None), ended: false }).await?;
        if ok {
            self.committed.insert(shard.clone(), cp);
        } else {
            self.stop_reader(shard);
        }
        Ok(ok)
    }

    pub async fn begin_flush(&mut self, shard: &ShardId, intent: &[FlushIntent]) -> Result<bool, LeaseError> {
        if !self.readers.contains_key(shard) {
            return Ok(false);
        }
        let ok = self.coord.write(shard, Update { checkpoint: None, intent: Some(Some(intent)), ended: false }).await?;
        if !ok {
            self.stop_reader(shard);
        }
        Ok(ok)
    }

    pub fn may_write(&self, shard: &ShardId) -> bool {
        self.coord.may_write(shard)
    }

    pub async fn abandon(&mut self, shard: &ShardId) {
        self.stop_reader(shard);
        self.committed.remove(shard);
        // a conditional release: if another worker took the lease meanwhile, it changes nothing
        if let Err(e) = self.coord.release(shard).await {
            tracing::warn!(shard = %shard, error = %e, "could not give the lease up; it expires after the failover time");
        }
    }

    pub async fn end_shard(&mut self, shard: &ShardId) -> Result<(), LeaseError> {
        let cp = self.committed.get(shard).cloned().unwrap_or_default();
        let ok = self.coord.write(shard, Update { checkpoint: Some(&cp), intent: Some(None), ended: true }).await?;
        if ok {
            tracing::info!(shard = %shard, "shard finished (SHARD_END); its children may start");
            if let Err(e) = self.coord.release(shard).await {
                tracing::warn!(shard = %shard, error = %e, "could not release the finished shard's lease; it expires after the failover time");
            }
        }
        self.stop_reader(shard);
        Ok(())
    }

    pub async fn close(&mut self) {
        self.cancel.cancel();
        if let Some(t) = self.coord_task.take() {
            let _ = t.await;
        }
        self.coord.release_all().await;
        tracing::info!(worker = %self.worker_id, "leases released");
    }
}

/// The coordinator's loop: lease rounds, and the shard list re-read now and then.
async fn coordinate(coord: Arc<Coordinator<Leases>>, mut shards: Shards, mut list: ListShards, shard_sync: Duration, stats: Arc<LeasedStats>, cancel: CancellationToken) {
    let mut last_sync = Instant::now();
    let mut last_log = Instant::now();
    loop {
        if last_sync.elapsed() >= shard_sync {
            match list().await {
                Ok(s) => shards = s,
                Err(e) => tracing::warn!(error = %e, "listing shards failed; keeping the last list"),
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
            tracing::info!(held = counts.held, leases = counts.total, workers = counts.workers, "leases");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(coord.interval()) => {}
        }
    }
}
