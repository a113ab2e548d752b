//! In-memory twin of a replayable source, for tests of the ingestion loop
//! and the commit protocol.
//!
//! Input: records per shard. Output: batches of up to `batch` records, a
//! log of every checkpoint committed, and [`SourceEvent::Finished`] once
//! every record was read and nothing was handed back. Restarting from the last committed
//! checkpoint replays exactly as the spool and Kinesis sources do. Like a
//! lease row, it keeps the flush intent until the next commit; with
//! [`MemorySource::with_fence_lapses`] the fence fails for chosen upload
//! checks while the lease stays held, and an abandoned shard is handed back
//! at once as a newly taken lease would be (checkpoint and intent).

use crate::source::{Batch, Source, SourceError, SourceEvent, SourceRecord};
use crate::ids::{Position, ShardId};
use crate::checkpoint::{FlushIntent, Resume, ShardCheckpoint};
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

type Records = Vec<(Position, i64, Vec<u8>)>;

pub struct MemorySource {
    shards: BTreeMap<ShardId, Records>,
    next: BTreeMap<ShardId, usize>,
    pub committed: BTreeMap<ShardId, ShardCheckpoint>,
    pub commits: usize,
    batch: usize,
    intents: BTreeMap<ShardId, Vec<FlushIntent>>,
    events: VecDeque<SourceEvent>,
    /// Indexes of the `may_write` calls that answer false.
    lapses: BTreeSet<usize>,
    checks: Cell<usize>,
    pub abandoned: usize,
    /// Abandoned shards not yet handed back: flushes for them are refused,
    /// as a lost lease's are.
    given_up: BTreeSet<ShardId>,
}

/// Index of the first record after `resume`.
fn start_of(recs: &Records, resume: Option<&Resume>) -> usize {
    match resume {
        None | Some(Resume::Start) => 0,
        Some(Resume::At(p)) => recs.iter().position(|r| &r.0 == p).unwrap_or(recs.len()),
        Some(Resume::After(p)) => recs.iter().position(|r| &r.0 == p).map_or(recs.len(), |i| i + 1),
    }
}

impl MemorySource {
    pub fn new(shards: BTreeMap<ShardId, Records>, committed: BTreeMap<ShardId, ShardCheckpoint>, batch: usize) -> Self {
        let next = shards.iter().map(|(s, recs)| (s.clone(), start_of(recs, committed.get(s).map(|c| &c.resume)))).collect();
        MemorySource {
            shards,
            next,
            committed,
            commits: 0,
            batch,
            intents: BTreeMap::new(),
            events: VecDeque::new(),
            lapses: BTreeSet::new(),
            checks: Cell::new(0),
            abandoned: 0,
            given_up: BTreeSet::new(),
        }
    }

    /// The `may_write` calls (counted from 0) at which the fence has passed.
    pub fn with_fence_lapses(mut self, at: impl IntoIterator<Item = usize>) -> Self {
        self.lapses = at.into_iter().collect();
        self
    }
}

impl Source for MemorySource {
    fn checkpoints(&self) -> Vec<(ShardId, ShardCheckpoint)> {
        self.committed.iter().map(|(s, c)| (s.clone(), c.clone())).collect()
    }

    async fn next_event(&mut self) -> Result<Option<SourceEvent>, SourceError> {
        if let Some(e) = self.events.pop_front() {
            if let SourceEvent::Assigned { shard, .. } = &e {
                self.given_up.remove(shard);
            }
            return Ok(Some(e));
        }
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
            return Ok(Some(SourceEvent::Batch(Batch { shard: shard.clone(), buf, records, oversized: Vec::new() })));
        }
        // everything read, nothing handed back: as a file source at its end
        Ok(Some(SourceEvent::Finished))
    }

    async fn commit(&mut self, shard: &ShardId, cp: ShardCheckpoint) -> Result<bool, SourceError> {
        if self.given_up.contains(shard) {
            return Ok(false);
        }
        self.commits += 1;
        self.committed.insert(shard.clone(), cp);
        self.intents.remove(shard);
        Ok(true)
    }

    async fn begin_flush(&mut self, shard: &ShardId, intent: &[FlushIntent]) -> Result<bool, SourceError> {
        if self.given_up.contains(shard) {
            return Ok(false);
        }
        self.intents.insert(shard.clone(), intent.to_vec());
        Ok(true)
    }

    fn may_write(&self, _shard: &ShardId) -> bool {
        let n = self.checks.get();
        self.checks.set(n + 1);
        !self.lapses.contains(&n)
    }

    async fn abandon(&mut self, shard: &ShardId) -> Result<(), SourceError> {
        self.abandoned += 1;
        self.given_up.insert(shard.clone());
        let checkpoint = self.committed.get(shard).cloned().unwrap_or_default();
        let start = start_of(&self.shards[shard], Some(&checkpoint.resume));
        self.next.insert(shard.clone(), start);
        let intent = self.intents.get(shard).cloned().unwrap_or_default();
        self.events.push_back(SourceEvent::Assigned { shard: shard.clone(), checkpoint, intent });
        Ok(())
    }
}
