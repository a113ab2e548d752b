//! The per-source ledger: what of each shard is durable, and what a
//! restart must replay.
//!
//! Input: a shard's stored [`ShardCheckpoint`] and pending flush intent
//! (restore), the position of every record read, each buffer sealed and
//! each object made durable. Output: the shard's next [`ShardCheckpoint`],
//! and, per record, whether a destination already holds it (a replay after
//! a restart skips it there) or an interrupted flush ended there (the
//! buffer is sealed at exactly that record, so the replayed object is the
//! same object). Never fails.
//!
//! The checkpoint and [`FlushIntent`] types here are the sources'
//! persistence format (the spool state file, the lease row); they depend
//! on nothing but ids.
//!
//! Exactly-once: an object's key is its shard plus the position of its
//! first record, so a replay writes the same key. The checkpoint holds
//! where to resume (the first record of the oldest open buffer) and, for
//! every destination flushed past that point, the last position already
//! durable there; replayed records at or before that position are skipped
//! for that destination only.

use crate::hash::FastMap;
use crate::ids::{Position, ShardId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where a buffer's content lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DestKind {
    /// Parquet under the lake URL.
    Table,
    /// Error lines under the errors URL.
    Errors,
    /// Raw input lines under the raw-backup URL.
    Raw,
}

impl DestKind {
    /// Its name in checkpoints and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            DestKind::Table => "table",
            DestKind::Errors => "errors",
            DestKind::Raw => "raw",
        }
    }
}

const KINDS: [DestKind; 3] = [DestKind::Table, DestKind::Errors, DestKind::Raw];

/// One object of a flush in flight, as written to the lease row before its
/// upload: a new owner that finds it seals that destination's buffer at
/// exactly `last`, so the replayed object is the same object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlushIntent {
    pub kind: DestKind,
    pub prefix: String,
    pub first: Position,
    pub last: Position,
}

/// Where a shard resumes after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resume {
    /// Nothing read yet.
    Start,
    /// Re-read from this record (inclusive).
    At(Position),
    /// Continue after this record.
    After(Position),
}

impl Resume {
    /// Whether `p` comes after the resume point: a record read again.
    pub fn ahead(&self, p: &Position) -> bool {
        match self {
            Resume::At(r) => p >= r,
            Resume::After(r) => p > r,
            Resume::Start => true,
        }
    }
}

/// The durable progress of one shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardCheckpoint {
    pub resume: Resume,
    /// `kind:prefix` → last position durable in that destination beyond `resume`.
    #[serde(default)]
    pub done: BTreeMap<String, Position>,
    /// `kind:prefix` → replay boundaries of an interrupted flush not yet
    /// reproduced: a replay can be flushed in several parts, and a
    /// checkpoint between two parts must not forget the rest.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub replay: BTreeMap<String, Vec<Position>>,
}

impl Default for ShardCheckpoint {
    fn default() -> Self {
        ShardCheckpoint { resume: Resume::Start, done: BTreeMap::new(), replay: BTreeMap::new() }
    }
}

/// The `kind:prefix` key of a destination in a checkpoint.
pub fn done_key(kind: DestKind, prefix: &str) -> String {
    format!("{}:{prefix}", kind.as_str())
}

fn parse_done_key(k: &str) -> Option<(DestKind, String)> {
    let (name, prefix) = k.split_once(':')?;
    KINDS.iter().find(|k| k.as_str() == name).map(|&kind| (kind, prefix.to_string()))
}

/// A map keyed by destination kind and prefix, looked up by `&str` so the
/// per-record path allocates nothing.
pub struct DestMap<V>([FastMap<String, V>; 3]);

impl<V> Default for DestMap<V> {
    fn default() -> Self {
        DestMap([FastMap::default(), FastMap::default(), FastMap::default()])
    }
}

impl<V> DestMap<V> {
    pub fn get(&self, k: DestKind, p: &str) -> Option<&V> {
        self.0[k as usize].get(p)
    }
    pub fn get_mut(&mut self, k: DestKind, p: &str) -> Option<&mut V> {
        self.0[k as usize].get_mut(p)
    }
    pub fn get_or_insert_with(&mut self, k: DestKind, p: &str, f: impl FnOnce() -> V) -> &mut V {
        let m = &mut self.0[k as usize];
        if !m.contains_key(p) {
            m.insert(p.to_string(), f());
        }
        m.get_mut(p).expect("just inserted")
    }
    pub fn insert(&mut self, k: DestKind, p: String, v: V) {
        self.0[k as usize].insert(p, v);
    }
    pub fn remove(&mut self, k: DestKind, p: &str) -> Option<V> {
        self.0[k as usize].remove(p)
    }
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|m| m.is_empty())
    }
    pub fn len(&self) -> usize {
        self.0.iter().map(|m| m.len()).sum()
    }
    pub fn iter(&self) -> impl Iterator<Item = (DestKind, &String, &V)> {
        KINDS.iter().zip(&self.0).flat_map(|(k, m)| m.iter().map(move |(p, v)| (*k, p, v)))
    }
    pub fn retain(&mut self, mut f: impl FnMut(&V) -> bool) {
        self.0.iter_mut().for_each(|m| m.retain(|_, v| f(v)));
    }
}

/// One shard's entry in the [`Ledger`].
#[derive(Default)]
pub struct ShardLedger {
    /// The last record read (a row, an error line, or skipped as durable).
    read_to: Option<Position>,
    /// The resume point restored from the last checkpoint: what the
    /// checkpoint stays at until a record is read.
    restored: Option<Resume>,
    /// Destinations durable past the resume point: last position per (kind, prefix).
    done: DestMap<Position>,
    /// Replayed intent: seal the destination's buffer when it reaches this
    /// position. (A destination can have several objects in one flush: a
    /// due buffer closed early, then its successor; ascending.)
    replay: DestMap<Vec<Position>>,
    /// What became of the records read since the shard was opened here.
    tally: Tally,
}

/// Records of a shard read since it was opened here.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub records: u64,
    /// Of them, JSON objects (a row, or refused by the schema): an input
    /// with none is not NDJSON.
    pub objects: u64,
    /// Of them, refused (error lines).
    pub errors: u64,
}

impl Tally {
    pub fn add(&mut self, o: &Tally) {
        self.records += o.records;
        self.objects += o.objects;
        self.errors += o.errors;
    }
}

impl ShardLedger {
    /// The record was read (whatever became of it); `object`: it was a
    /// JSON object; `refused`: it became an error line.
    #[inline]
    pub fn read(&mut self, pos: Position, object: bool, refused: bool) {
        self.read_to = Some(pos);
        self.tally.records += 1;
        self.tally.objects += u64::from(object);
        self.tally.errors += u64::from(refused);
    }

    pub fn tally(&self) -> Tally {
        self.tally
    }

    /// Whether the destination already holds the record at `pos` (a replay
    /// after a restart): it is skipped there.
    #[inline]
    pub fn durable(&self, kind: DestKind, prefix: &str, pos: &Position) -> bool {
        !self.done.is_empty() && self.done.get(kind, prefix).is_some_and(|d| pos <= d)
    }

    /// The position up to which the destination is durable, if any.
    pub fn durable_to(&self, kind: DestKind, prefix: &str) -> Option<&Position> {
        self.done.get(kind, prefix)
    }

    /// Whether an interrupted flush is being replayed.
    pub fn replaying(&self) -> bool {
        !self.replay.is_empty()
    }

    /// Whether the destination's buffer must be sealed at `pos`: an
    /// interrupted flush ended its object there.
    #[inline]
    pub fn replay_ends(&self, kind: DestKind, prefix: &str, pos: &Position) -> bool {
        !self.replay.is_empty() && self.replay.get(kind, prefix).and_then(|ends| ends.first()).is_some_and(|last| pos >= last)
    }

    /// A buffer of the destination was sealed at `last`: the replay
    /// boundaries up to it are reached; later ones stay.
    pub fn sealed(&mut self, kind: DestKind, prefix: &str, last: &Position) {
        if let Some(ends) = self.replay.get_mut(kind, prefix) {
            ends.retain(|e| e > last);
            if ends.is_empty() {
                self.replay.remove(kind, prefix);
            }
        }
    }
}

/// A shard's place in this process's per-shard tables (the ledger's and
/// the buffers'): dense, so a record's shard state is found by index; a
/// dropped shard's slot is given to the next new shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardSlot(u32);

impl ShardSlot {
    pub fn index(self) -> usize {
        self.0 as usize
    }
    pub fn at(index: usize) -> ShardSlot {
        ShardSlot(index as u32)
    }
}

/// A shard as the per-shard tables know it: its id and its slot.
#[derive(Debug, Clone, Copy)]
pub struct Shard<'a> {
    pub id: &'a ShardId,
    pub slot: ShardSlot,
}

/// The ledgers of every shard this process reads, each in its slot.
#[derive(Default)]
pub struct Ledger {
    index: FastMap<ShardId, ShardSlot>,
    entries: Vec<Option<(ShardId, ShardLedger)>>,
    free: Vec<ShardSlot>,
    /// The shard looked up last: records come in batches of one shard.
    last: Option<(ShardId, ShardSlot)>,
}

impl Ledger {
    /// The shard's slot, if it is read here.
    #[inline]
    pub fn find(&mut self, shard: &ShardId) -> Option<ShardSlot> {
        if let Some((id, slot)) = &self.last {
            if id == shard {
                return Some(*slot);
            }
        }
        let slot = *self.index.get(shard)?;
        self.last = Some((shard.clone(), slot));
        Some(slot)
    }

    /// The shard's slot, with an empty ledger when it is new.
    #[inline]
    pub fn open(&mut self, shard: &ShardId) -> ShardSlot {
        match self.find(shard) {
            Some(slot) => slot,
            None => self.insert(shard),
        }
    }

    #[cold]
    fn insert(&mut self, shard: &ShardId) -> ShardSlot {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.entries.push(None);
            ShardSlot(self.entries.len() as u32 - 1)
        });
        self.entries[slot.index()] = Some((shard.clone(), ShardLedger::default()));
        self.index.insert(shard.clone(), slot);
        self.last = Some((shard.clone(), slot));
        slot
    }

    /// The ledger in `slot` (which [`Ledger::open`] gave).
    #[inline]
    pub fn at(&mut self, slot: ShardSlot) -> &mut ShardLedger {
        &mut self.entries[slot.index()].as_mut().expect("an open slot").1
    }

    fn get(&self, shard: &ShardId) -> Option<&ShardLedger> {
        let slot = self.index.get(shard)?;
        self.entries[slot.index()].as_ref().map(|e| &e.1)
    }

    fn get_mut(&mut self, shard: &ShardId) -> Option<&mut ShardLedger> {
        let slot = self.index.get(shard)?;
        self.entries[slot.index()].as_mut().map(|e| &mut e.1)
    }

    /// Whether the shard is read here (false once dropped).
    pub fn has(&self, shard: &ShardId) -> bool {
        self.index.contains_key(shard)
    }

    pub fn shards(&self) -> impl Iterator<Item = &ShardId> {
        self.index.keys()
    }

    /// Forgets the shard (its lease is gone); returns the slot it had.
    pub fn drop_shard(&mut self, shard: &ShardId) -> Option<ShardSlot> {
        let slot = self.index.remove(shard)?;
        self.entries[slot.index()] = None;
        self.free.push(slot);
        if self.last.as_ref().is_some_and(|(id, _)| id == shard) {
            self.last = None;
        }
        Some(slot)
    }

    /// Loads a shard's durable progress before its records are replayed;
    /// each destination in `intent` (an interrupted flush) is to be sealed
    /// at the same last record as before. The shard's earlier state, if
    /// any, must have been dropped.
    pub fn restore(&mut self, shard: &ShardId, cp: &ShardCheckpoint, intent: &[FlushIntent]) {
        let slot = self.open(shard);
        let st = self.at(slot);
        *st = ShardLedger::default();
        for (k, pos) in &cp.done {
            let Some((kind, prefix)) = parse_done_key(k) else { continue };
            st.done.insert(kind, prefix, pos.clone());
        }
        let saved = cp.replay.iter().filter_map(|(k, ends)| parse_done_key(k).map(|(kind, prefix)| (kind, prefix, ends.clone())));
        let pending = intent.iter().map(|i| (i.kind, i.prefix.clone(), vec![i.last.clone()]));
        for (kind, prefix, ends) in saved.chain(pending) {
            // a boundary already durable is no boundary: its records are skipped
            let durable = st.done.get(kind, &prefix).cloned();
            let all = st.replay.get_or_insert_with(kind, &prefix, Vec::new);
            all.extend(ends.into_iter().filter(|e| durable.as_ref().is_none_or(|d| e > d)));
            all.sort();
            all.dedup();
            if all.is_empty() {
                st.replay.remove(kind, &prefix);
            }
        }
        if let Resume::After(p) = &cp.resume {
            st.read_to = Some(p.clone());
        }
        st.restored = Some(cp.resume.clone());
    }

    /// Records that the destination holds the shard's records up to `last`.
    pub fn mark_durable(&mut self, shard: &ShardId, kind: DestKind, prefix: &str, last: &Position) {
        let slot = self.open(shard);
        let st = self.at(slot);
        let e = st.done.get_or_insert_with(kind, prefix, || last.clone());
        if *e < *last {
            *e = last.clone();
        }
    }

    /// Replay boundaries of an interrupted flush not yet reproduced, as
    /// intent entries (`first` = `last`: only the boundary matters). A
    /// flush's intent must carry them too: if it is interrupted in turn,
    /// the restart still needs them.
    pub fn pending_replay(&self, shard: &ShardId) -> Vec<FlushIntent> {
        let Some(st) = self.get(shard) else { return Vec::new() };
        st.replay
            .iter()
            .flat_map(|(kind, prefix, ends)| ends.iter().map(move |e| FlushIntent { kind, prefix: prefix.clone(), first: e.clone(), last: e.clone() }))
            .collect()
    }

    /// The shard's checkpoint given what is durable now, where `oldest_open`
    /// is the first record of its oldest open buffer; prunes what the
    /// checkpoint no longer needs.
    pub fn checkpoint(&mut self, shard: &ShardId, oldest_open: Option<Position>) -> ShardCheckpoint {
        let Some(st) = self.get_mut(shard) else { return ShardCheckpoint::default() };
        let resume = match (oldest_open, &st.read_to) {
            (Some(p), _) => Resume::At(p),
            (None, Some(p)) => Resume::After(p.clone()),
            // nothing read since the restore: stay where the last checkpoint was
            (None, None) => st.restored.clone().unwrap_or(Resume::Start),
        };
        st.done.retain(|d| resume.ahead(d));
        let replay = st
            .replay
            .iter()
            .map(|(k, p, ends)| (done_key(k, p), ends.iter().filter(|e| resume.ahead(e)).cloned().collect::<Vec<_>>()))
            .filter(|(_, ends)| !ends.is_empty())
            .collect();
        ShardCheckpoint { resume, done: st.done.iter().map(|(k, p, pos)| (done_key(k, p), pos.clone())).collect(), replay }
    }

    /// Entries in the shard's per-destination progress map.
    pub fn done_len(&self, shard: &ShardId) -> usize {
        self.get(shard).map_or(0, |st| st.done.len())
    }

    /// What became of the shard's records since it was opened here.
    pub fn tally(&self, shard: &ShardId) -> Option<Tally> {
        self.get(shard).map(ShardLedger::tally)
    }

    /// The last record read of the shard.
    pub fn read_to(&self, shard: &ShardId) -> Option<&Position> {
        self.get(shard)?.read_to.as_ref()
    }
}
