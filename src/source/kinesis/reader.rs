//! Shard reader: GetRecords polling for one leased shard.
//!
//! Input: a shard, where to resume, the start position for a shard with no
//! checkpoint. Output: [`Batch`]es of user records (KPL aggregates split,
//! positions = sequence + sub-sequence number, arrival time =
//! ApproximateArrivalTimestamp) and, when the shard is closed and read to
//! its end, an `Ended` event. At most 5 GetRecords calls per second per
//! shard (Kinesis' limit); an idle shard is polled every `idle_poll`.
//! Failure: throttling and 5xx are retried with exponential backoff and full
//! jitter; an expired iterator is re-created after the last delivered
//! record; nothing is fatal — the lease coordinator decides when to stop.

use super::kpl::deaggregate;
use crate::retry::backoff;
use super::StreamRef;
use crate::source::leased::{Lag, Read};
use crate::source::read_ahead::ReadAhead;
use crate::ids::{Position, SequenceNumber, ShardId};
use crate::checkpoint::Resume;
use crate::source::{Batch, SourceRecord};
use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_kinesis::types::ShardIteratorType;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;

/// Where a shard with no checkpoint starts.
#[derive(Debug, Clone, PartialEq)]
pub enum StartPosition {
    TrimHorizon,
    Latest,
    AtTimestamp(i64),
}

pub struct ShardReader {
    pub client: aws_sdk_kinesis::Client,
    pub stream: StreamRef,
    pub shard: ShardId,
    pub generation: u64,
    pub start: StartPosition,
    pub idle_poll: Duration,
    pub limit: i32,
    /// What all shard readers may hold fetched and not yet converted.
    pub read_ahead: Arc<ReadAhead>,
    pub lag: Arc<Lag>,
    pub retries: Arc<std::sync::atomic::AtomicU64>,
}

const MIN_CALL_GAP: Duration = Duration::from_millis(200);

impl ShardReader {
    /// Reads until the shard ends or `cancel` fires.
    pub async fn run(self, resume: Resume, tx: Sender<Read>, cancel: CancellationToken) {
        let span = tracing::info_span!("shard", stream = %self.stream, shard = %self.shard);
        let _ = tracing::Instrument::instrument(self.read(resume, tx, cancel), span).await;
    }

    async fn read(self, resume: Resume, tx: Sender<Read>, cancel: CancellationToken) -> Option<()> {
        // records at or before `skip_through` were delivered already; `skip_below` re-reads from a position
        let (mut from, mut skip): (Option<Position>, Skip) = match resume {
            Resume::Start => (None, Skip::None),
            Resume::At(p) => (Some(p.clone()), Skip::Below(p)),
            Resume::After(p) => (Some(p.clone()), Skip::Through(p)),
        };
        let mut attempt = 0u32;
        let mut iterator: Option<String> = None;
        let mut quiet = false;
        loop {
            if cancel.is_cancelled() {
                return None;
            }
            let it = match iterator.take() {
                Some(it) => it,
                None => match self.iterator(from.as_ref()).await {
                    Ok(it) => it,
                    Err(e) => {
                        tracing::warn!(error = %e, "GetShardIterator failed; retrying");
                        self.retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        attempt += 1;
                        sleep(&cancel, backoff(attempt)).await?;
                        continue;
                    }
                },
            };
            // a GetRecords answer holds up to 10 MiB; after an idle call, expect little
            let ask = if quiet { 1 << 20 } else { 10 << 20 };
            let mut held = tokio::select! {
                _ = cancel.cancelled() => return None,
                h = self.read_ahead.take(ask) => h,
            };
            let started = tokio::time::Instant::now();
            let r = self.client.get_records().shard_iterator(&it).limit(self.limit).set_stream_arn(self.stream.arn()).send().await;
            let out = match r {
                Ok(out) => out,
                Err(e) => {
                    let code = e.as_service_error().and_then(|s| s.code()).unwrap_or("").to_string();
                    if code == "ExpiredIteratorException" {
                        tracing::info!("iterator expired; re-creating it after the last delivered record");
                    } else {
                        self.retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        attempt += 1;
                        if code == "ProvisionedThroughputExceededException" || code == "KMSThrottlingException" {
                            tracing::debug!(code, "GetRecords throttled; backing off");
                        } else {
                            tracing::warn!(error = %DisplayErrorContext(&e), "GetRecords failed; retrying");
                        }
                        sleep(&cancel, backoff(attempt)).await?;
                    }
                    continue; // iterator stays None: re-created from `from`
                }
            };
            attempt = 0;
            let mut batch = Batch { shard: self.shard.clone(), buf: Vec::new(), records: Vec::new(), oversized: Vec::new() };
            let mut last: Option<Position> = None;
            for rec in out.records() {
                let Ok(seq) = SequenceNumber::parse(rec.sequence_number()) else {
                    tracing::warn!(seq = rec.sequence_number(), "record with a non-numeric sequence number skipped");
                    continue;
                };
                let arrival_ms = rec.approximate_arrival_timestamp().and_then(|t| t.to_millis().ok()).unwrap_or(0);
                let data = rec.data().as_ref();
                for (sub, range) in deaggregate(data).into_iter().enumerate() {
                    let pos = Position::new(seq.clone(), sub as u64);
                    if !skip.keeps(&pos) {
                        continue;
                    }
                    let start = batch.buf.len();
                    batch.buf.extend_from_slice(&data[range]);
                    batch.records.push(SourceRecord { pos: pos.clone(), arrival_ms, range: start..batch.buf.len() });
                    last = Some(pos);
                }
            }
            if let Some(behind) = out.millis_behind_latest() {
                self.lag.set(&self.shard, behind);
            }
            if let Some(p) = last {
                skip = Skip::Through(p.clone());
                from = Some(p);
            }
            let n = batch.records.len();
            quiet = n == 0;
            if n > 0 {
                held.resize(batch.footprint());
                tokio::select! {
                    _ = cancel.cancelled() => return None,
                    r = tx.send(Read::Batch(self.generation, batch, held)) => r.ok()?,
                }
            } else {
                drop(held);
            }
            match out.next_shard_iterator() {
                Some(next) => iterator = Some(next.to_string()),
                None => {
                    tracing::info!("shard closed and read to its end");
                    let _ = tx.send(Read::Ended(self.generation, self.shard.clone())).await;
                    return Some(());
                }
            }
            let gap = if n == 0 && out.millis_behind_latest().unwrap_or(0) == 0 { self.idle_poll } else { MIN_CALL_GAP };
            let wait = gap.saturating_sub(started.elapsed());
            sleep(&cancel, wait).await?;
        }
    }

    async fn iterator(&self, from: Option<&Position>) -> Result<String, String> {
        let mut req = self.client.get_shard_iterator().shard_id(self.shard.as_str());
        req = match &self.stream {
            StreamRef::Name(n) => req.stream_name(n),
            StreamRef::Arn(a) => req.stream_arn(a),
        };
        req = match (from, &self.start) {
            (Some(p), _) => req.shard_iterator_type(ShardIteratorType::AtSequenceNumber).starting_sequence_number(p.seq.to_string()),
            (None, StartPosition::TrimHorizon) => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
            (None, StartPosition::Latest) => req.shard_iterator_type(ShardIteratorType::Latest),
            (None, StartPosition::AtTimestamp(ms)) => req
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(aws_sdk_kinesis::primitives::DateTime::from_millis(*ms)),
        };
        let out = req.send().await.map_err(|e| DisplayErrorContext(e).to_string())?;
        out.shard_iterator().map(str::to_string).ok_or_else(|| "no iterator returned".to_string())
    }
}

/// Which re-read records to drop: an AT_SEQUENCE_NUMBER iterator returns
/// the whole (possibly aggregated) record at the resume point.
enum Skip {
    None,
    Below(Position),
    Through(Position),
}

impl Skip {
    fn keeps(&self, p: &Position) -> bool {
        match self {
            Skip::None => true,
            Skip::Below(b) => p >= b,
            Skip::Through(t) => p > t,
        }
    }
}

async fn sleep(cancel: &CancellationToken, d: Duration) -> Option<()> {
    tokio::select! {
        _ = cancel.cancelled() => None,
        _ = tokio::time::sleep(d) => Some(()),
    }
}
