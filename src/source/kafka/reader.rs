//! Partition reader: fetches one leased partition from its leader.
//!
//! Input: the partition, where to resume (a checkpoint's offset, or the
//! configured start for a partition with none). Output: [`Read::Batch`]es
//! in offset order (see `records.rs` for what is skipped); the partition's
//! high watermark in the lag map. Failure: a broker that is unreachable,
//! not the leader any more or busy is retried with backoff (metadata
//! re-read, connection re-opened) and reported through `unreachable`;
//! nothing is fatal — the lease coordinator decides when to stop. An offset
//! the broker no longer has (retention deleted it) resumes at the log start
//! with an error logged: those records are lost to every consumer. Each
//! fetch first takes its size from the source's read-ahead budget; the
//! batch keeps what it holds until the pipeline is done with it.

use super::client::{fetch, list_offset, Cluster, KafkaError, StartAt};
use super::records::{decode, Meta};
use super::KafkaStats;
use crate::checkpoint::Resume;
use crate::ids::ShardId;
use crate::source::leased::Read;
use crate::source::read_ahead::ReadAhead;
use crate::source::Batch;
use kafka_protocol::ResponseError;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;

/// What a fetch asks for after one that found nothing.
const IDLE_ASK: i32 = 64 << 10;

fn offset_of(p: &crate::ids::Position) -> i64 {
    match &p.seq {
        crate::ids::SequenceNumber::Small(v) => *v as i64,
        crate::ids::SequenceNumber::Big(s) => s.parse().unwrap_or(i64::MAX),
    }
}

pub struct PartitionReader {
    pub cluster: Arc<Cluster>,
    pub topic: String,
    pub partition: i32,
    pub shard: ShardId,
    pub generation: u64,
    pub start: StartAt,
    pub meta: Meta,
    pub fetch_bytes: i32,
    /// What all partitions' readers may hold fetched and not yet converted.
    pub read_ahead: Arc<ReadAhead>,
    /// The most a fetch may ask for (a response must fit the connection's limit).
    pub max_fetch: i32,
    pub max_record: usize,
    pub idle_poll: Duration,
    pub stats: Arc<KafkaStats>,
}

impl PartitionReader {
    pub async fn run(self, resume: Resume, tx: Sender<Read>, cancel: CancellationToken) {
        let span = tracing::info_span!("partition", topic = %self.topic, partition = self.partition);
        tracing::Instrument::instrument(self.read(resume, tx, cancel), span).await
    }

    async fn read(self, resume: Resume, tx: Sender<Read>, cancel: CancellationToken) {
        let mut offset: Option<i64> = match resume {
            Resume::Start => None,
            Resume::At(p) => Some(offset_of(&p)),
            Resume::After(p) => Some(offset_of(&p) + 1),
        };
        let mut want = self.fetch_bytes;
        let mut conn = None;
        let mut attempt = 0u32;
        let mut spare: Option<Batch> = None;
        let mut stuck: Option<i64> = None;
        // the last fetch found nothing: the next asks for little (an idle long poll holds little budget)
        let mut quiet = false;
        while !cancel.is_cancelled() {
            let ask = if quiet { want.min(IDLE_ASK) } else { want };
            let mut held = tokio::select! {
                _ = cancel.cancelled() => return,
                h = self.read_ahead.take(ask as usize) => h,
            };
            let step = async {
                if conn.is_none() {
                    conn = Some(self.cluster.leader(&self.topic, self.partition).await?);
                }
                let c = conn.as_mut().expect("just opened");
                let from = match offset {
                    Some(o) => o,
                    None => {
                        let o = list_offset(c, &self.topic, self.partition, self.start).await?;
                        tracing::info!(offset = o, start = ?self.start, "no checkpoint: starting at the configured start");
                        offset = Some(o);
                        o
                    }
                };
                let f = fetch(c, &self.topic, self.partition, from, ask, self.idle_poll.as_millis() as i32).await?;
                Ok::<_, KafkaError>((from, f))
            };
            let (from, f) = tokio::select! {
                _ = cancel.cancelled() => return,
                r = step => match r {
                    Ok(v) => v,
                    Err(e) => {
                        if e.code() == Some(ResponseError::OffsetOutOfRange.code()) {
                            if let Some(c) = conn.as_mut() {
                                if let Ok(start) = list_offset(c, &self.topic, self.partition, StartAt::Earliest).await {
                                    if offset.is_some_and(|o| o < start) {
                                        tracing::error!(offset = ?offset, log_start = start, "the broker no longer has these offsets (retention deleted them before they were read); resuming at the log start");
                                        offset = Some(start);
                                        continue;
                                    }
                                }
                            }
                        }
                        conn = None;
                        attempt += 1;
                        self.stats.leased.retries.fetch_add(1, Ordering::Relaxed);
                        *self.stats.leased.unreachable.lock().unwrap() = Some(e.to_string());
                        let wait = crate::retry::backoff(attempt).min(Duration::from_secs(10));
                        tracing::warn!(error = %e, attempt, wait_ms = wait.as_millis() as u64, "fetch failed; retrying");
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = tokio::time::sleep(wait) => continue,
                        }
                    }
                },
            };
            if attempt > 0 {
                attempt = 0;
                *self.stats.leased.unreachable.lock().unwrap() = None;
            }
            self.stats.leased.lag.set(&self.shard, f.high_watermark);
            let mut batch = spare.take().unwrap_or_else(|| Batch { shard: self.shard.clone(), buf: Vec::new(), records: Vec::new(), oversized: Vec::new() });
            batch.buf.clear();
            batch.records.clear();
            batch.oversized.clear();
            let d = match decode(&f.records, from, &f.aborted, &self.topic, self.partition, &self.meta, self.max_record, &mut batch) {
                Ok(d) => d,
                Err(e) => {
                    // a corrupt batch: the records before it are handed on; reading stops here until restarted
                    tracing::error!(error = %e, "a record batch cannot be decoded; this partition stops here (records before it are kept)");
                    *self.stats.leased.unreachable.lock().unwrap() = Some(format!("{}: a record batch cannot be decoded: {e}", self.shard));
                    if !batch.records.is_empty() {
                        let _ = tx.send(Read::Batch(self.generation, batch, held)).await;
                    }
                    cancel.cancelled().await;
                    return;
                }
            };
            self.stats.tombstones.fetch_add(d.tombstones, Ordering::Relaxed);
            self.stats.aborted.fetch_add(d.aborted, Ordering::Relaxed);
            self.stats.bytes_in.fetch_add(d.bytes, Ordering::Relaxed);
            offset = Some(d.next.max(from));
            let was_quiet = std::mem::replace(&mut quiet, f.records.is_empty());
            if d.bytes == 0 && !f.records.is_empty() {
                if was_quiet {
                    // the small ask after an idle poll cut a batch: ask the full size
                    spare = Some(batch);
                    continue;
                }
                // not one whole batch fits the fetch size: ask for more, up to the largest response accepted
                if want < self.max_fetch {
                    want = want.saturating_mul(2).min(self.max_fetch);
                    tracing::info!(fetch_bytes = want, "a record batch is larger than the fetch size; fetching more");
                    spare = Some(batch);
                    continue;
                }
                let msg = format!("{}: the record batch at offset {from} is larger than {} bytes, the most one fetch takes; the partition waits here", self.shard, self.max_fetch);
                if stuck != Some(from) {
                    tracing::error!("{msg}");
                    stuck = Some(from);
                }
                *self.stats.leased.unreachable.lock().unwrap() = Some(msg);
            }
            if batch.records.is_empty() {
                spare = Some(batch);
                drop(held);
                if d.next == from {
                    // nothing new (a broker that does not wait out max_wait): poll later
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(self.idle_poll) => {}
                    }
                }
                continue;
            }
            held.resize(batch.footprint());
            if tx.send(Read::Batch(self.generation, batch, held)).await.is_err() {
                return;
            }
        }
    }
}
