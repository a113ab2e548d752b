//! The Kafka cluster as lakehose uses it: which partitions the configured
//! topics have and who leads them, offsets by time, fetching one
//! partition, and committing offsets to a consumer group for lag tools.
//!
//! Input: bootstrap servers and connection [`Settings`]. Output: partition
//! lists, offsets, [`Fetched`] record bytes with the partition's watermarks
//! and aborted transactions. Failure: [`KafkaError`]; a broker error code
//! is returned as [`KafkaError::Broker`] with its name so the caller can
//! tell "refresh metadata and retry" from "give up".

use super::wire::{Call, Conn, Settings, WireError};
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("kafka {what}: {code_name} (error code {code})")]
    Broker { what: String, code: i16, code_name: String },
    #[error("kafka: {0}")]
    Other(String),
}

impl KafkaError {
    fn broker(what: impl Into<String>, code: i16) -> KafkaError {
        let code_name = ResponseError::try_from_code(code).map(|e| format!("{e:?}")).unwrap_or_else(|| "unknown error".into());
        KafkaError::Broker { what: what.into(), code, code_name }
    }
    /// The broker's error code, if this is one.
    pub fn code(&self) -> Option<i16> {
        match self {
            KafkaError::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Which topics a source reads.
#[derive(Debug, Clone)]
pub enum Topics {
    Names(Vec<String>),
    Regex(regex::Regex),
}

impl Topics {
    fn wants(&self, name: &str) -> bool {
        match self {
            Topics::Names(n) => n.iter().any(|t| t == name),
            Topics::Regex(r) => !name.starts_with("__") && r.is_match(name),
        }
    }
}

/// A partition and the broker that leads it.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionInfo {
    pub topic: String,
    pub partition: i32,
    pub leader: i32,
}

/// What one fetch of one partition returned.
#[derive(Debug, Default)]
pub struct Fetched {
    pub high_watermark: i64,
    pub last_stable: i64,
    pub log_start: i64,
    /// Record batches as the broker sent them (the last may be cut short).
    pub records: Bytes,
    /// (producer id, first offset) of aborted transactions in this range.
    pub aborted: Vec<(i64, i64)>,
}

/// Where a partition with no checkpoint starts (ListOffsets timestamps:
/// -2 earliest, -1 latest).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StartAt {
    Earliest,
    Latest,
    Timestamp(i64),
}

pub struct Cluster {
    bootstrap: Vec<String>,
    pub settings: Settings,
    brokers: Mutex<HashMap<i32, String>>,
    meta: tokio::sync::Mutex<Option<Conn>>,
}

impl Cluster {
    pub fn new(bootstrap: Vec<String>, settings: Settings) -> Cluster {
        Cluster { bootstrap, settings, brokers: Mutex::new(HashMap::new()), meta: tokio::sync::Mutex::new(None) }
    }

    /// Sends `req` to any live broker: the one that answered last, else
    /// each bootstrap server and known broker in turn.
    async fn call_any<R: Call + Sync>(&self, req: &R) -> Result<R::Response, KafkaError> {
        let mut meta = self.meta.lock().await;
        if let Some(c) = meta.as_mut() {
            match c.call(req).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    tracing::debug!(error = %e, "metadata connection failed; reconnecting");
                    *meta = None;
                }
            }
        }
        let mut last = None;
        let known: Vec<String> = self.brokers.lock().unwrap().values().cloned().collect();
        for addr in self.bootstrap.iter().chain(known.iter()) {
            match Conn::open(addr, &self.settings).await {
                Ok(mut c) => {
                    let r = c.call(req).await?;
                    *meta = Some(c);
                    return Ok(r);
                }
                Err(e @ WireError::Auth { .. }) | Err(e @ WireError::Version { .. }) => return Err(e.into()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.map(KafkaError::from).unwrap_or_else(|| KafkaError::Other("no bootstrap servers".into())))
    }

    /// The partitions of the wanted topics with their leaders (brokers
    /// learned on the way). Topics named but absent are an error.
    pub async fn partitions(&self, topics: &Topics) -> Result<Vec<PartitionInfo>, KafkaError> {
        let req = match topics {
            Topics::Names(n) => MetadataRequest::default().with_topics(Some(n.iter().map(|t| MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(t.clone()))))).collect())),
            Topics::Regex(_) => MetadataRequest::default().with_topics(None),
        };
        let r = self.call_any(&req).await?;
        {
            let mut b = self.brokers.lock().unwrap();
            for br in &r.brokers {
                b.insert(br.node_id.0, format!("{}:{}", br.host, br.port));
            }
        }
        let mut out = Vec::new();
        for t in &r.topics {
            let Some(name) = t.name.as_ref().map(|n| n.0.to_string()) else { continue };
            if !topics.wants(&name) {
                continue;
            }
            if t.error_code != 0 {
                return Err(KafkaError::broker(format!("topic {name:?}"), t.error_code));
            }
            for p in &t.partitions {
                out.push(PartitionInfo { topic: name.clone(), partition: p.partition_index, leader: p.leader_id.0 });
            }
        }
        if let Topics::Names(n) = topics {
            if let Some(missing) = n.iter().find(|t| !out.iter().any(|p| &p.topic == *t)) {
                return Err(KafkaError::Other(format!("topic {missing:?} does not exist")));
            }
        }
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(out)
    }

    /// The address of a broker learned from metadata.
    pub fn broker(&self, node: i32) -> Option<String> {
        self.brokers.lock().unwrap().get(&node).cloned()
    }

    /// Opens a connection to the leader of a partition (metadata refreshed).
    pub async fn leader(&self, topic: &str, partition: i32) -> Result<Conn, KafkaError> {
        let parts = self.partitions(&Topics::Names(vec![topic.to_string()])).await?;
        let p = parts.iter().find(|p| p.partition == partition).ok_or_else(|| KafkaError::Other(format!("topic {topic:?} has no partition {partition}")))?;
        if p.leader < 0 {
            return Err(KafkaError::broker(format!("{topic}/{partition}"), ResponseError::LeaderNotAvailable.code()));
        }
        let addr = self.broker(p.leader).ok_or_else(|| KafkaError::Other(format!("leader {} of {topic}/{partition} is not among the brokers", p.leader)))?;
        Ok(Conn::open(&addr, &self.settings).await?)
    }

    /// Commits offsets (the next offset to read) for lag tools; the group
    /// is not joined (a standalone commit, generation -1). `coordinator`
    /// keeps the group coordinator's connection between commits; it is
    /// dropped on any failure and found again next time.
    pub async fn commit_offsets(&self, group: &str, offsets: &[(String, i32, i64)], coordinator: &mut Option<Conn>) -> Result<(), KafkaError> {
        let r = self.commit_on(group, offsets, coordinator).await;
        if r.is_err() {
            *coordinator = None;
        }
        r
    }

    async fn commit_on(&self, group: &str, offsets: &[(String, i32, i64)], coordinator: &mut Option<Conn>) -> Result<(), KafkaError> {
        if coordinator.is_none() {
            let find = FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_string()));
            let fc = self.call_any(&find).await?;
            if fc.error_code != 0 {
                return Err(KafkaError::broker(format!("find the coordinator of group {group:?}"), fc.error_code));
            }
            *coordinator = Some(Conn::open(&format!("{}:{}", fc.host, fc.port), &self.settings).await?);
        }
        let conn = coordinator.as_mut().expect("just opened");
        let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
        for (t, p, o) in offsets {
            let part = OffsetCommitRequestPartition::default().with_partition_index(*p).with_committed_offset(*o).with_committed_leader_epoch(-1);
            match topics.iter_mut().find(|x| x.name.0.as_str() == t) {
                Some(x) => x.partitions.push(part),
                None => topics.push(OffsetCommitRequestTopic::default().with_name(TopicName(StrBytes::from_string(t.clone()))).with_partitions(vec![part])),
            }
        }
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_generation_id_or_member_epoch(-1)
            .with_retention_time_ms(-1)
            .with_topics(topics);
        let r = conn.call(&req).await?;
        for t in &r.topics {
            for p in &t.partitions {
                if p.error_code != 0 {
                    return Err(KafkaError::broker(format!("commit offset of {}/{} for group {group:?}", t.name.0, p.partition_index), p.error_code));
                }
            }
        }
        Ok(())
    }
}

/// The offset at `at` in a partition (on its leader's connection).
pub async fn list_offset(conn: &mut Conn, topic: &str, partition: i32, at: StartAt) -> Result<i64, KafkaError> {
    let ts = match at {
        StartAt::Earliest => -2,
        StartAt::Latest => -1,
        StartAt::Timestamp(ms) => ms,
    };
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(1)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(partition).with_timestamp(ts).with_current_leader_epoch(-1)])]);
    let r = conn.call(&req).await?;
    let p = r.topics.iter().flat_map(|t| t.partitions.iter()).find(|p| p.partition_index == partition).ok_or_else(|| KafkaError::Other(format!("ListOffsets answered without {topic}/{partition}")))?;
    if p.error_code != 0 {
        return Err(KafkaError::broker(format!("offsets of {topic}/{partition}"), p.error_code));
    }
    if p.offset < 0 && matches!(at, StartAt::Timestamp(_)) {
        // no record at or after the timestamp: start at the end
        return Box::pin(list_offset(conn, topic, partition, StartAt::Latest)).await;
    }
    Ok(p.offset)
}

/// Fetches one partition from `offset` (read_committed: up to the last
/// stable offset, with the aborted transactions of the range).
pub async fn fetch(conn: &mut Conn, topic: &str, partition: i32, offset: i64, max_bytes: i32, max_wait_ms: i32) -> Result<Fetched, KafkaError> {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_isolation_level(1)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_current_leader_epoch(-1)
                .with_fetch_offset(offset)
                .with_last_fetched_epoch(-1)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(max_bytes)])]);
    let r = conn.call(&req).await?;
    if r.error_code != 0 {
        return Err(KafkaError::broker(format!("fetch {topic}/{partition}"), r.error_code));
    }
    let p = r
        .responses
        .into_iter()
        .flat_map(|t| t.partitions.into_iter())
        .find(|p| p.partition_index == partition)
        .ok_or_else(|| KafkaError::Other(format!("fetch answered without {topic}/{partition}")))?;
    if p.error_code != 0 {
        return Err(KafkaError::broker(format!("fetch {topic}/{partition} at offset {offset}"), p.error_code));
    }
    Ok(Fetched {
        high_watermark: p.high_watermark,
        last_stable: p.last_stable_offset,
        log_start: p.log_start_offset,
        records: p.records.unwrap_or_default(),
        aborted: p.aborted_transactions.unwrap_or_default().iter().map(|a| (a.producer_id.0, a.first_offset)).collect(),
    })
}
