//! Forward mode: the door's durable medium is a Kinesis stream (for tasks
//! with ephemeral disks behind a load balancer); the Kinesis source then
//! converts the records.
//!
//! Input: records accepted at the door. Output: `PutRecords` calls of at
//! most 500 records / 5 MiB; records Kinesis refuses (throttling, internal
//! errors) are sent again with backoff, for up to [`DEADLINE`]; the ids of
//! the records Kinesis took (shard and sequence number) once all are in,
//! so an acknowledgement means Kinesis has them. Partition keys spread
//! records over the shards. Failure: what is still refused at the deadline
//! makes the whole call [`Refusal::Failed`] (the client retries; records
//! already in may then come twice: Kinesis is at-least-once at its door,
//! as Firehose is).

use super::{RecordId, Refusal};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long refused records are retried before the call fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct Forwarder {
    client: aws_sdk_kinesis::Client,
    stream: crate::source::kinesis::StreamRef,
    next_key: AtomicU64,
}

impl Forwarder {
    pub fn new(client: aws_sdk_kinesis::Client, stream: crate::source::kinesis::StreamRef) -> Forwarder {
        Forwarder { client, stream, next_key: AtomicU64::new(0) }
    }

    pub async fn put(&self, records: &[(i64, &[u8])]) -> Result<Vec<RecordId>, Refusal> {
        use aws_sdk_kinesis::primitives::Blob;
        use aws_sdk_kinesis::types::PutRecordsRequestEntry;
        let mut ids: Vec<Option<RecordId>> = vec![None; records.len()];
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            let todo: Vec<usize> = (0..records.len()).filter(|&i| ids[i].is_none()).collect();
            if todo.is_empty() {
                return Ok(ids.into_iter().map(|i| i.expect("all in")).collect());
            }
            for chunk in todo.chunks(500) {
                let entries: Vec<PutRecordsRequestEntry> = chunk
                    .iter()
                    .map(|&i| {
                        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
                        PutRecordsRequestEntry::builder().data(Blob::new(records[i].1)).partition_key(format!("{key:x}")).build().expect("data and key set")
                    })
                    .collect();
                let mut req = self.client.put_records().set_records(Some(entries));
                req = match &self.stream {
                    crate::source::kinesis::StreamRef::Name(n) => req.stream_name(n),
                    crate::source::kinesis::StreamRef::Arn(a) => req.stream_arn(a),
                };
                match req.send().await {
                    Ok(out) => {
                        for (&i, r) in chunk.iter().zip(out.records()) {
                            if let (Some(shard), Some(seq)) = (r.shard_id(), r.sequence_number()) {
                                ids[i] = Some(format!("{shard}/{seq}"));
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %aws_sdk_kinesis::error::DisplayErrorContext(&e), "PutRecords failed; retrying"),
                }
            }
            attempt += 1;
            if started.elapsed() >= DEADLINE {
                return Err(Refusal::Failed(format!("Kinesis refused {} record(s) for {}s", ids.iter().filter(|i| i.is_none()).count(), DEADLINE.as_secs())));
            }
            tokio::time::sleep(crate::retry::backoff(attempt)).await;
        }
    }
}
