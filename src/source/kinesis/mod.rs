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

pub mod kpl;
pub mod reader;

use crate::aws::sdk_config;
use crate::ids::ShardId;
use crate::checkpoint::{FlushIntent, ShardCheckpoint};
use crate::source::lease::{LeaseError, LeaseTable};
use crate::source::leased::{Leased, LeasedStats, Start};
use crate::source::{Source, SourceError, SourceEvent};
use aws_sdk_kinesis::error::DisplayErrorContext;
use reader::{ShardReader, StartPosition};
use std::sync::Arc;
use std::time::Duration;

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

#[derive(Debug, Clone)]
pub struct KinesisConfig {
    pub stream: StreamRef,
    pub start: StartPosition,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub leases: LeaseTable,
    pub failover: Duration,
    pub worker_id: String,
    pub idle_poll: Duration,
    /// How often the shard list is re-read (new shards after resharding).
    pub shard_sync: Duration,
    /// Bytes all shard readers may hold fetched and not yet converted.
    pub read_ahead_bytes: usize,
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

pub struct KinesisSource {
    cfg: KinesisConfig,
    client: aws_sdk_kinesis::Client,
    leased: Leased,
    pub stats: Arc<LeasedStats>,
}

impl KinesisSource {
    pub async fn open(cfg: KinesisConfig) -> Result<KinesisSource, KinesisError> {
        let sdk = sdk_config(cfg.endpoint.as_deref(), cfg.region.as_deref()).await;
        let client = aws_sdk_kinesis::Client::new(&sdk);
        let shards = list_shards(&client, &cfg.stream).await?;
        let leases = cfg.leases.open().await?;
        tracing::info!(stream = %cfg.stream, shards = shards.len(), worker = %cfg.worker_id, leases = %cfg.leases, "kinesis source open");
        let (c, stream) = (client.clone(), cfg.stream.clone());
        let list: crate::source::leased::ListShards = Box::new(move || {
            let (c, stream) = (c.clone(), stream.clone());
            Box::pin(async move { list_shards(&c, &stream).await.map_err(|e| e.to_string()) })
        });
        let leased = Leased::open(leases, cfg.worker_id.clone(), cfg.failover, cfg.shard_sync, cfg.read_ahead_bytes, shards, list).await?;
        let stats = leased.stats.clone();
        Ok(KinesisSource { cfg, client, leased, stats })
    }

}

fn start_reader(client: &aws_sdk_kinesis::Client, cfg: &KinesisConfig, stats: &LeasedStats, s: Start<'_>) {
    let r = ShardReader {
        client: client.clone(),
        stream: cfg.stream.clone(),
        shard: s.shard.clone(),
        generation: s.generation,
        start: cfg.start.clone(),
        idle_poll: cfg.idle_poll,
        limit: 10_000,
        read_ahead: s.read_ahead,
        lag: stats.lag.clone(),
        retries: stats.retries.clone(),
    };
    tokio::spawn(r.run(s.checkpoint.resume.clone(), s.tx, s.cancel));
}

impl Source for KinesisSource {
    fn checkpoints(&self) -> Vec<(ShardId, ShardCheckpoint)> {
        Vec::new() // shards arrive as Assigned events
    }

    async fn next_event(&mut self) -> Result<Option<SourceEvent>, SourceError> {
        let (client, cfg, stats) = (&self.client, &self.cfg, &self.stats);
        Ok(self.leased.next_event(|s| start_reader(client, cfg, stats, s)).await)
    }

    async fn commit(&mut self, shard: &ShardId, cp: ShardCheckpoint) -> Result<bool, SourceError> {
        Ok(self.leased.commit(shard, cp).await.map_err(KinesisError::from)?)
    }

    async fn begin_flush(&mut self, shard: &ShardId, intent: &[FlushIntent]) -> Result<bool, SourceError> {
        Ok(self.leased.begin_flush(shard, intent).await.map_err(KinesisError::from)?)
    }

    fn may_write(&self, shard: &ShardId) -> bool {
        self.leased.may_write(shard)
    }

    async fn abandon(&mut self, shard: &ShardId) -> Result<(), SourceError> {
        self.leased.abandon(shard).await;
        Ok(())
    }

    async fn end_shard(&mut self, shard: &ShardId) -> Result<(), SourceError> {
        Ok(self.leased.end_shard(shard).await.map_err(KinesisError::from)?)
    }

    async fn close(&mut self) -> Result<(), SourceError> {
        self.leased.close().await;
        Ok(())
    }
}
