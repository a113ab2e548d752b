//! In-memory twin of a replayable source, for unit tests of the runner.
//!
//! Input: records per shard. Output: batches of up to `batch` records, and a
//! log of every checkpoint committed. Restarting from the last committed
//! checkpoint replays exactly as the spool and Kinesis sources do.

use super::{Batch, Source, SourceError, SourceEvent, SourceRecord};
use crate::ids::{Position, ShardId};
use crate::pipeline::{Resume, ShardCheckpoint};
use std::collections::BTreeMap;

pub struct MemorySource {
    shards: BTreeMap<ShardId, Vec<(Position, i64, Vec<u8>)>>,
    next: BTreeMap<ShardId, usize>,
    pub committed: BTreeMap<ShardId, ShardCheckpoint>,
    pub commits: usize,
    batch: usize,
}

impl MemorySource {
    pub fn new(shards: BTreeMap<ShardId, Vec<(Position, i64, Vec<u8>)>>, committed: BTreeMap<ShardId, ShardCheckpoint>, batch: usize) -> Self {
        let next = shards
            .iter()
            .map(|(s, recs)| {
                let start = match committed.get(s).map(|c| &c.resume) {
                    None | Some(Resume::Start) => 0,
                    Some(Resume::At(p)) => recs.iter().position(|r| &r.0 == p).unwrap_or(recs.len()),
                    Some(Resume::After(p)) => recs.iter().position(|r| &r.0 == p).map_or(recs.len(), |i| i + 1),
                };
                (s.clone(), start)
            })
            .collect();
        MemorySource { shards, next, committed, commits: 0, batch }
    }
}

impl Source for MemorySource {
    fn checkpoints(&self) -> Vec<(ShardId, ShardCheckpoint)> {
        self.committed.iter().map(|(s, c)| (s.clone(), c.clone())).collect()
    }

    async fn next_event(&mut self) -> Result<Option<SourceEvent>, SourceError> {
        for (shard, recs) in &self.shards {
            let i = self.next[shard];
            if i >= recs.len() {
                continue;
            }
            let end = (i + self.batch).min(recs.len());
            let mut buf = Vec::new();
            let mut records = Vec::new();
            for (pos, arrival_ms, data) in &recs[i..end] {
                let start = buf.len();
                buf.extend_from_slice(data);
                records.push(SourceRecord { pos: pos.clone(), arrival_ms: *arrival_ms, range: start..buf.len() });
            }
            self.next.insert(shard.clone(), end);
            return Ok(Some(SourceEvent::Batch(Batch { shard: shard.clone(), buf, records })));
        }
        Ok(None)
    }

    async fn commit(&mut self, shard: &ShardId, cp: ShardCheckpoint) -> Result<bool, SourceError> {
        self.commits += 1;
        self.committed.insert(shard.clone(), cp);
        Ok(true)
    }
}
