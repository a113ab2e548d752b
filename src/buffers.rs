//! The buffer set: one open buffer per (shard, destination, partition),
//! within a memory budget.
//!
//! Input: rows (appended by the router into a table buffer's columns) and
//! lines (raw backups, error lines), each with its shard position. Output:
//! [`Sealed`] buffers for the commit stage, in the order they came due: a
//! buffer is due at `max_records` or `max_bytes` of input, at `max_age`, at
//! the record where an interrupted flush ended its object (the
//! [`ShardLedger`] says), or when the buffers together hold more than
//! `memory_limit` (the largest are shed until three quarters of it
//! remain). A due buffer takes no more records: the next record for its
//! destination seals it as it stands ([`Buffers::close_if_due`]), so its
//! object holds exactly the records up to the one that made it due — which
//! is where a replay seals too. Never fails.

use crate::checkpoint::{DestKind, DestMap, FlushIntent, Ledger, Shard, ShardLedger, ShardSlot};
use crate::decode::Columns;
use crate::ids::{Position, ShardId};
use crate::schema::TableSchema;
use crate::write::{GzLines, ParquetOptions, RowBuffer};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_records: usize,
    pub max_bytes: usize,
    pub max_age: Duration,
    pub memory_limit: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_records: 1_000_000, max_bytes: 128 << 20, max_age: Duration::from_secs(60), memory_limit: 256 << 20 }
    }
}

impl Limits {
    /// The size trigger a buffer not yet due has reached, if any.
    fn trigger(&self, b: &Buffer) -> Option<Trigger> {
        if b.due {
            None
        } else if b.records >= self.max_records {
            Some(Trigger::Records)
        } else if b.in_bytes >= self.max_bytes {
            Some(Trigger::Bytes)
        } else {
            None
        }
    }

    /// A record size limit must leave room in the memory budget: a line
    /// reader holds one record of it, and an error or raw-backup object
    /// must take several.
    pub fn check_record_size(&self, max_record_bytes: usize) -> Result<(), String> {
        if max_record_bytes > self.memory_limit / 8 {
            return Err(format!(
                "{max_record_bytes} bytes is over an eighth of the memory limit ({} bytes); lower it or raise buffer.memory_limit",
                self.memory_limit
            ));
        }
        Ok(())
    }

    /// Bytes of lines a raw-backup or error buffer holds before it is
    /// written: an eighth of the memory limit (at least 1 MiB), so that the
    /// lines and their gzip output together stay well inside the budget.
    pub fn line_cap(&self) -> usize {
        (self.memory_limit / 8).max(1 << 20)
    }
}

/// Why a buffer was sealed (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Records,
    Bytes,
    Age,
    Memory,
    Shutdown,
    /// A replayed flush intent: the same boundaries as the interrupted flush.
    Replay,
    /// The shard ended or its checkpoint grew too large: all its buffers.
    Shard,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Records => "records",
            Trigger::Bytes => "bytes",
            Trigger::Age => "age",
            Trigger::Memory => "memory",
            Trigger::Shutdown => "shutdown",
            Trigger::Replay => "replay",
            Trigger::Shard => "shard",
        }
    }
}

/// A sealed buffer's content. Rows not yet encoded stay in their column
/// builders until the writer encodes them, so sealing many buffers at once
/// allocates nothing.
pub enum SealedBody {
    Rows(RowBuffer),
    Lines(GzLines),
}

impl Default for SealedBody {
    fn default() -> Self {
        SealedBody::Lines(GzLines::default())
    }
}

/// A buffer taken out for writing.
pub struct Sealed {
    pub shard: ShardId,
    pub kind: DestKind,
    /// Partition prefix (`dt=…/hr=…/…/`).
    pub prefix: String,
    pub first: Position,
    pub last: Position,
    pub records: usize,
    pub trigger: Trigger,
    pub body: SealedBody,
}

impl Sealed {
    /// Its entry in the flush intent.
    pub fn intent(&self) -> FlushIntent {
        FlushIntent { kind: self.kind, prefix: self.prefix.clone(), first: self.first.clone(), last: self.last.clone() }
    }
}

enum Body {
    Rows(RowBuffer),
    Lines(GzLines),
}

struct Buffer {
    first: Position,
    last: Position,
    opened: Instant,
    records: usize,
    in_bytes: usize,
    mem: usize,
    /// Already queued for sealing.
    due: bool,
    body: Body,
}

impl Buffer {
    fn new(first: &Position, body: Body) -> Buffer {
        Buffer { first: first.clone(), last: first.clone(), opened: Instant::now(), records: 0, in_bytes: 0, mem: 0, due: false, body }
    }
}

/// Memory a buffer costs besides its content: its struct, map entry and key.
fn fixed_cost(prefix: &str) -> usize {
    std::mem::size_of::<Buffer>() + std::mem::size_of::<String>() + prefix.len() + 64
}

/// The memory of every buffer, and the buffers queued for sealing.
struct Budget {
    limits: Limits,
    /// Bytes of lines per raw-backup or error object.
    line_cap: usize,
    /// Bytes held by open buffers (due ones included until sealed).
    total: usize,
    /// Of which due buffers.
    due_mem: usize,
    due: Vec<(ShardSlot, DestKind, String, Trigger)>,
}

impl Budget {
    /// Marks `b` due (once) and queues it; its memory stays counted until sealed.
    fn queue(&mut self, b: &mut Buffer, slot: ShardSlot, kind: DestKind, prefix: &str, t: Trigger) {
        if b.due {
            return;
        }
        b.due = true;
        self.due_mem += b.mem;
        self.due.push((slot, kind, prefix.to_string(), t));
    }

    /// Memory of the buffers not yet queued for sealing.
    fn undue(&self) -> usize {
        self.total.saturating_sub(self.due_mem)
    }

    fn forget(&mut self, b: &Buffer) {
        self.total -= b.mem.min(self.total);
        if b.due {
            self.due_mem -= b.mem.min(self.due_mem);
        }
    }
}

/// An open, undue table buffer and the budget it counts against, for the
/// router to decode rows into.
pub struct TableSlot<'a> {
    buf: &'a mut Buffer,
    budget: &'a mut Budget,
}

impl TableSlot<'_> {
    /// The columns rows are appended to.
    #[inline]
    pub fn cols(&mut self) -> &mut Columns {
        match &mut self.buf.body {
            Body::Rows(rows) => &mut rows.cols,
            Body::Lines(_) => unreachable!("a table buffer holds rows"),
        }
    }

    /// Whether a record run must stop: a buffer came due, or the buffers
    /// not yet due hold more than the memory limit.
    #[inline]
    pub fn must_stop(&self) -> bool {
        !self.budget.due.is_empty() || self.budget.undue() > self.budget.limits.memory_limit
    }

    /// Counts a row of `in_len` input bytes at `pos` just appended to the
    /// columns (its memory is measured on every 32nd row and estimated from
    /// the input in between) and queues the buffer when a limit or a
    /// replayed boundary makes it due. A buffer not due encodes its rows
    /// every `chunk_in_bytes` of input ([`RowBuffer::row_added`]); the time
    /// that took is returned.
    #[inline]
    pub fn row_added(&mut self, led: &ShardLedger, slot: ShardSlot, prefix: &str, pos: &Position, in_len: usize, schema: &TableSchema) -> Option<Duration> {
        let buf = &mut *self.buf;
        let budget = &mut *self.budget;
        let mem_now = match &buf.body {
            Body::Rows(rows) if buf.records % 32 == 0 => Some(rows.mem_bytes()),
            _ => None,
        };
        buf.records += 1;
        buf.in_bytes += in_len;
        buf.last = pos.clone();
        let before = buf.mem;
        buf.mem = match mem_now {
            Some(m) => m + fixed_cost(prefix),
            None => buf.mem + in_len,
        };
        budget.total = budget.total + buf.mem - before;
        let replay = || led.replay_ends(DestKind::Table, prefix, pos).then_some(Trigger::Replay);
        if let Some(t) = budget.limits.trigger(buf).or_else(replay) {
            budget.queue(buf, slot, DestKind::Table, prefix, t);
        }
        if buf.due {
            return None; // it takes no more rows: the writer encodes the rest
        }
        let Body::Rows(rows) = &mut buf.body else { unreachable!("a table buffer") };
        let took = rows.row_added(in_len, schema)?;
        let before = buf.mem;
        buf.mem = rows.mem_bytes() + fixed_cost(prefix);
        budget.total = budget.total + buf.mem - before;
        Some(took)
    }
}

/// A shard's open buffers.
struct ShardBufs {
    id: ShardId,
    bufs: DestMap<Buffer>,
}

/// Every open buffer, by shard slot.
pub struct Buffers {
    shards: Vec<Option<ShardBufs>>,
    budget: Budget,
    /// Due buffers sealed early because another record for their
    /// destination came before they were taken (see `close_if_due`).
    closed: Vec<Sealed>,
    parquet: ParquetOptions,
}

impl Buffers {
    pub fn new(limits: Limits, parquet: ParquetOptions) -> Buffers {
        Buffers { shards: Vec::new(), budget: Budget { line_cap: limits.line_cap(), limits, total: 0, due_mem: 0, due: Vec::new() }, closed: Vec::new(), parquet }
    }

    /// Cuts raw-backup and error objects at `bytes` of lines instead of
    /// the memory limit's share (workers sharing a limit write the objects
    /// one process would).
    pub fn set_line_cap(&mut self, bytes: usize) {
        self.budget.line_cap = bytes;
    }

    pub fn limits(&self) -> &Limits {
        &self.budget.limits
    }

    pub fn set_parquet(&mut self, parquet: ParquetOptions) {
        self.parquet = parquet;
    }

    /// The open table buffer of `prefix`, unless it is due.
    #[inline]
    pub fn table(&mut self, slot: ShardSlot, prefix: &str) -> Option<TableSlot<'_>> {
        let buf = bufs_of(&mut self.shards, slot)?.get_mut(DestKind::Table, prefix).filter(|b| !b.due)?;
        Some(TableSlot { buf, budget: &mut self.budget })
    }

    /// The table buffer of `prefix`, opened at `pos` if there is none.
    pub fn open_table(&mut self, shard: Shard, prefix: &str, pos: &Position, schema: &TableSchema) -> TableSlot<'_> {
        let parquet = &self.parquet;
        let bufs = bufs_entry(&mut self.shards, shard);
        let buf = bufs.get_or_insert_with(DestKind::Table, prefix, || Buffer::new(pos, Body::Rows(RowBuffer::new(schema, parquet.clone()))));
        TableSlot { buf, budget: &mut self.budget }
    }

    /// Closes a table buffer that no row went into (its first row failed).
    pub fn discard_empty_table(&mut self, slot: ShardSlot, prefix: &str) {
        let Some(bufs) = bufs_of(&mut self.shards, slot) else { return };
        if bufs.get(DestKind::Table, prefix).is_some_and(|b| b.records == 0) {
            let b = bufs.remove(DestKind::Table, prefix).expect("present");
            self.budget.forget(&b);
        }
    }

    /// Appends a line (written by `write`) for the record at `pos` to the
    /// line buffer of `kind` and `prefix`, unless the destination already
    /// holds it (a replay).
    #[allow(clippy::too_many_arguments)]
    pub fn push_line(&mut self, led: &mut ShardLedger, shard: Shard, kind: DestKind, prefix: &str, pos: &Position, in_len: usize, write: impl FnOnce(&mut Vec<u8>)) {
        self.close_if_due(led, shard.slot, kind, prefix);
        if led.durable(kind, prefix, pos) {
            return;
        }
        let buf = bufs_entry(&mut self.shards, shard).get_or_insert_with(kind, prefix, || Buffer::new(pos, Body::Lines(GzLines::default())));
        let Body::Lines(lines) = &mut buf.body else { unreachable!("a line buffer") };
        lines.write(write);
        let full = lines.len() >= self.budget.line_cap;
        let mem = lines.mem() + fixed_cost(prefix);
        self.budget.total = self.budget.total + mem - buf.mem;
        buf.mem = mem;
        buf.records += 1;
        buf.in_bytes += in_len;
        buf.last = pos.clone();
        let replay = || led.replay_ends(kind, prefix, pos).then_some(Trigger::Replay);
        let full = || full.then_some(Trigger::Bytes);
        if let Some(t) = self.budget.limits.trigger(buf).or_else(replay).or_else(full) {
            self.budget.queue(buf, shard.slot, kind, prefix, t);
        }
    }

    /// A due buffer takes no more records: when another record comes for
    /// its destination before the buffer was taken, the buffer is sealed as
    /// it stands. Its object then holds exactly the records up to the one
    /// that made it due, which is where a replay of an interrupted flush
    /// seals too: the same key with the same content. (Appending on made
    /// the first attempt and the replay write different content under one
    /// key; a late upload of the shorter one then lost records.)
    #[inline]
    pub fn close_if_due(&mut self, led: &mut ShardLedger, slot: ShardSlot, kind: DestKind, prefix: &str) {
        if self.budget.due.is_empty() || !bufs_of(&mut self.shards, slot).and_then(|b| b.get(kind, prefix)).is_some_and(|b| b.due) {
            return;
        }
        let Some(i) = self.budget.due.iter().position(|(s, k, p, _)| *s == slot && *k == kind && p == prefix) else { return };
        let (s, k, p, t) = self.budget.due.remove(i);
        let sealed = self.seal(led, s, k, p, t);
        self.closed.extend(sealed);
    }

    /// Marks the largest buffers due until what stays buffered fits in
    /// three quarters of the budget, when the buffers not yet due hold more
    /// than the limit. They stay counted until the caller takes them, which
    /// it does as soon as [`Buffers::has_due`] says so.
    #[inline]
    pub fn shed_if_over(&mut self) {
        if self.budget.undue() > self.budget.limits.memory_limit {
            self.shed();
        }
    }

    fn shed(&mut self) {
        let mut all: Vec<(usize, ShardSlot, DestKind, String)> = self
            .open()
            .flat_map(|(slot, bufs)| bufs.iter().filter(|(_, _, b)| !b.due).map(move |(k, p, b)| (b.mem, slot, k, p.clone())))
            .collect();
        all.sort_by_key(|a| std::cmp::Reverse(a.0));
        let target = self.budget.limits.memory_limit / 4 * 3;
        let mut keep = self.budget.undue();
        for (mem, slot, k, p) in all {
            if keep <= target {
                break;
            }
            keep -= mem.min(keep);
            if let Some(b) = bufs_of(&mut self.shards, slot).and_then(|bufs| bufs.get_mut(k, &p)) {
                self.budget.queue(b, slot, k, &p, Trigger::Memory);
            }
        }
    }

    /// Every shard's buffers, with its slot.
    fn open(&self) -> impl Iterator<Item = (ShardSlot, &DestMap<Buffer>)> {
        self.shards.iter().enumerate().filter_map(|(i, s)| s.as_ref().map(|s| (ShardSlot::at(i), &s.bufs)))
    }

    /// Takes a buffer out as a [`Sealed`].
    fn seal(&mut self, led: &mut ShardLedger, slot: ShardSlot, kind: DestKind, prefix: String, trigger: Trigger) -> Option<Sealed> {
        let sb = self.shards.get_mut(slot.index())?.as_mut()?;
        let buf = sb.bufs.remove(kind, &prefix)?;
        let shard = sb.id.clone();
        led.sealed(kind, &prefix, &buf.last);
        self.budget.forget(&buf);
        let body = match buf.body {
            Body::Rows(cols) => SealedBody::Rows(cols),
            Body::Lines(l) => SealedBody::Lines(l),
        };
        Some(Sealed { shard, kind, prefix, first: buf.first, last: buf.last, records: buf.records, trigger, body })
    }

    fn seal_each(&mut self, ledger: &mut Ledger, items: Vec<(ShardSlot, DestKind, String, Trigger)>, out: &mut Vec<Sealed>) {
        for (slot, k, p, t) in items {
            out.extend(self.seal(ledger.at(slot), slot, k, p, t));
        }
    }

    fn seal_ready(&mut self, ledger: &mut Ledger) -> Vec<Sealed> {
        let mut out = std::mem::take(&mut self.closed);
        let ready = std::mem::take(&mut self.budget.due);
        self.seal_each(ledger, ready, &mut out);
        out
    }

    /// Buffers due now: full ones, memory-shed ones, and those older than max_age.
    pub fn take_due(&mut self, ledger: &mut Ledger, now: Instant) -> Vec<Sealed> {
        let max_age = self.budget.limits.max_age;
        let aged: Vec<(ShardSlot, DestKind, String, Trigger)> = self
            .open()
            .flat_map(|(slot, bufs)| {
                bufs.iter().filter(move |(_, _, b)| now.duration_since(b.opened) >= max_age).map(move |(k, p, _)| (slot, k, p.clone(), Trigger::Age))
            })
            .collect();
        let mut out = self.seal_ready(ledger);
        self.seal_each(ledger, aged, &mut out);
        out
    }

    /// Every open buffer (shutdown, end of input).
    pub fn take_all(&mut self, ledger: &mut Ledger) -> Vec<Sealed> {
        let mut out = self.seal_ready(ledger);
        let all: Vec<(ShardSlot, DestKind, String, Trigger)> =
            self.open().flat_map(|(slot, bufs)| bufs.iter().map(move |(k, p, _)| (slot, k, p.clone(), Trigger::Shutdown))).collect();
        self.seal_each(ledger, all, &mut out);
        out
    }

    /// Every open buffer of one shard (its end, or a checkpoint grown too large).
    pub fn take_shard(&mut self, ledger: &mut Ledger, slot: ShardSlot) -> Vec<Sealed> {
        let Some(sb) = self.shards.get(slot.index()).and_then(Option::as_ref) else { return Vec::new() };
        let all: Vec<(ShardSlot, DestKind, String, Trigger)> = sb.bufs.iter().map(|(k, p, _)| (slot, k, p.clone(), Trigger::Shard)).collect();
        let id = sb.id.clone();
        self.budget.due.retain(|(s, ..)| *s != slot);
        let (mut out, rest): (Vec<Sealed>, Vec<Sealed>) = std::mem::take(&mut self.closed).into_iter().partition(|s| s.shard == id);
        self.closed = rest;
        self.seal_each(ledger, all, &mut out);
        out
    }

    /// True when sealed buffers wait to be taken (the caller should write soon).
    #[inline]
    pub fn has_due(&self) -> bool {
        !self.budget.due.is_empty() || !self.closed.is_empty()
    }

    /// Discards a shard's open buffers unwritten (its lease is gone: the
    /// new owner replays them from the last checkpoint).
    pub fn drop_shard(&mut self, slot: ShardSlot) {
        let Some(sb) = self.shards.get_mut(slot.index()).and_then(Option::take) else { return };
        for (_, _, b) in sb.bufs.iter() {
            self.budget.forget(b);
        }
        self.budget.due.retain(|(s, ..)| *s != slot);
        self.closed.retain(|s| s.shard != sb.id);
    }

    /// The first record of the shard's oldest open buffer: where a restart resumes.
    pub fn oldest_first(&self, slot: ShardSlot) -> Option<Position> {
        self.shards.get(slot.index())?.as_ref()?.bufs.iter().map(|(_, _, b)| &b.first).min().cloned()
    }

    /// How long the oldest open buffer has been open.
    pub fn oldest_open(&self, now: Instant) -> Option<Duration> {
        self.open().flat_map(|(_, bufs)| bufs.iter().map(|(_, _, b)| now.duration_since(b.opened))).max()
    }

    /// Bytes held by open buffers.
    pub fn mem_total(&self) -> usize {
        self.budget.total
    }

    /// Whether any buffer is open (a schema switch needs none).
    pub fn is_empty(&self) -> bool {
        self.open().all(|(_, bufs)| bufs.is_empty())
    }
}

/// The shard's buffers, if it has any.
#[inline]
fn bufs_of(shards: &mut [Option<ShardBufs>], slot: ShardSlot) -> Option<&mut DestMap<Buffer>> {
    shards.get_mut(slot.index())?.as_mut().map(|s| &mut s.bufs)
}

/// The shard's buffers, made empty when it has none.
#[inline]
fn bufs_entry<'a>(shards: &'a mut Vec<Option<ShardBufs>>, shard: Shard) -> &'a mut DestMap<Buffer> {
    let i = shard.slot.index();
    if shards.len() <= i {
        shards.resize_with(i + 1, || None);
    }
    &mut shards[i].get_or_insert_with(|| ShardBufs { id: shard.id.clone(), bufs: DestMap::default() }).bufs
}
