//! The conversion core: records in, sealed buffers out, checkpoints after.
//!
//! Input: records of one or more shards (position, arrival time, bytes), in
//! position order per shard. Each record goes to exactly one of: a row in
//! the buffer of its table partition, or a line in the error buffer of its
//! arrival hour; and, when a raw backup is configured, to a line in the raw
//! buffer of its arrival hour. Output: [`Sealed`] buffers (records, bytes,
//! age or the memory budget triggered them) for the writer stage, and per
//! shard a [`ShardCheckpoint`] once sealed buffers are durable.
//!
//! Exactly-once: a buffer's object key is its shard plus the position of its
//! first record, so a replay after a crash writes the same key. The
//! checkpoint holds where to resume (the first record of the oldest open
//! buffer) and, for every destination flushed past that point, the last
//! position already durable there; replayed records at or before that
//! position are skipped for that destination only.

use crate::decode::peek::{Guess, Peek};
use crate::decode::{Columns, Decoder, RecordError, Row};
use crate::ids::{Position, ShardId};
use crate::partition::{hour_prefix, render_cached, TimeCache};
use crate::schema::{PartitionSpec, TableSchema, TimeSource};
use crate::write::{ParquetOptions, RowBuffer};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use crate::hash::FastMap;
use std::collections::BTreeMap;
use std::sync::Arc;
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
        Limits {
            max_records: 1_000_000,
            max_bytes: 128 << 20,
            max_age: Duration::from_secs(60),
            memory_limit: 256 << 20,
        }
    }
}

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

impl FlushIntent {
    pub fn of(s: &Sealed) -> FlushIntent {
        FlushIntent { kind: s.kind, prefix: s.prefix.clone(), first: s.first.clone(), last: s.last.clone() }
    }
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

fn done_key(kind: DestKind, prefix: &str) -> String {
    format!("{}:{prefix}", kind.as_str())
}

enum Body {
    Rows(RowBuffer),
    Lines(Vec<u8>),
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

/// A map keyed by destination kind and prefix, looked up by `&str` so the
/// per-record path allocates nothing.
struct DestMap<V>([FastMap<String, V>; 3]);

impl<V> Default for DestMap<V> {
    fn default() -> Self {
        DestMap([FastMap::default(), FastMap::default(), FastMap::default()])
    }
}

const KINDS: [DestKind; 3] = [DestKind::Table, DestKind::Errors, DestKind::Raw];

impl<V> DestMap<V> {
    fn get(&self, k: DestKind, p: &str) -> Option<&V> {
        self.0[k as usize].get(p)
    }
    fn get_mut(&mut self, k: DestKind, p: &str) -> Option<&mut V> {
        self.0[k as usize].get_mut(p)
    }
    fn get_or_insert_with(&mut self, k: DestKind, p: &str, f: impl FnOnce() -> V) -> &mut V {
        let m = &mut self.0[k as usize];
        if !m.contains_key(p) {
            m.insert(p.to_string(), f());
        }
        m.get_mut(p).expect("just inserted")
    }
    fn insert(&mut self, k: DestKind, p: String, v: V) {
        self.0[k as usize].insert(p, v);
    }
    fn remove(&mut self, k: DestKind, p: &str) -> Option<V> {
        self.0[k as usize].remove(p)
    }
    fn is_empty(&self) -> bool {
        self.0.iter().all(|m| m.is_empty())
    }
    fn iter(&self) -> impl Iterator<Item = (DestKind, &String, &V)> {
        KINDS.iter().zip(&self.0).flat_map(|(k, m)| m.iter().map(move |(p, v)| (*k, p, v)))
    }
    fn retain(&mut self, mut f: impl FnMut(&V) -> bool) {
        self.0.iter_mut().for_each(|m| m.retain(|_, v| f(v)));
    }
}

/// Buffers queued for sealing, and the memory they hold until they are taken.
#[derive(Default)]
struct DueQueue {
    items: Vec<(ShardId, DestKind, String, Trigger)>,
    mem: usize,
}

impl DueQueue {
    /// Marks `b` due (once) and queues it; its memory stays counted until sealed.
    fn push(&mut self, b: &mut Buffer, shard: &ShardId, kind: DestKind, prefix: &str, t: Trigger) {
        if b.due {
            return;
        }
        b.due = true;
        self.mem += b.mem;
        self.items.push((shard.clone(), kind, prefix.to_string(), t));
    }
}

#[derive(Default)]
struct ShardState {
    read_to: Option<Position>,
    /// The resume point restored from the last checkpoint: what the
    /// checkpoint stays at until a record is read.
    restored: Option<Resume>,
    /// Destinations durable past the resume point: last position per (kind, prefix).
    done: DestMap<Position>,
    bufs: DestMap<Buffer>,
    /// Replayed intent: seal the destination's buffer when it reaches this position.
    /// (A destination can have several objects in one flush: a due buffer
    /// closed early, then its successor; ascending.)
    replay: DestMap<Vec<Position>>,
}

/// A sealed buffer's content. Rows not yet encoded stay in their column
/// builders until the writer encodes them, so sealing many buffers at once
/// allocates nothing.
pub enum SealedBody {
    Rows(RowBuffer),
    Lines(Vec<u8>),
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
    /// Object key relative to the destination URL. Comes only from the data.
    pub fn key(&self) -> String {
        let ext = match self.kind {
            DestKind::Table => "snappy.parquet",
            _ => "json.gz",
        };
        let dir = if self.kind == DestKind::Errors { "format-conversion-failed/" } else { "" };
        format!("{dir}{}{}-{}.{ext}", self.prefix, self.shard, self.first.key_part())
    }
}

/// Counters for the summary line and metrics.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub records_in: u64,
    pub bytes_in: u64,
    pub rows: u64,
    pub errors: BTreeMap<&'static str, u64>,
    pub skipped_replay: u64,
    /// Records the fused decoder wrote into their buffer in place (the
    /// rest were staged or took the general path).
    pub fused_in_place: u64,
    /// Time spent turning sealed buffers into object bytes (Parquet, gzip).
    pub encode_time: std::time::Duration,
}

impl Stats {
    pub fn error_total(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Identity written into every error line's `dataCatalogTable`.
#[derive(Debug, Clone, Default)]
pub struct TableRef {
    pub database: Option<String>,
    pub table: String,
}

pub struct Pipeline {
    decoder: Decoder,
    schema: Arc<TableSchema>,
    limits: Limits,
    parquet: ParquetOptions,
    raw_backup: bool,
    table_ref: TableRef,
    shards: FastMap<ShardId, ShardState>,
    /// The shard of the last record, known to have its state in `shards`
    /// (saves a lookup per record; cleared when a shard is dropped).
    known_shard: Option<ShardId>,
    mem_total: usize,
    due: DueQueue,
    /// Due buffers sealed early because another record for their
    /// destination came before they were taken (see `close_if_due`).
    closed: Vec<Sealed>,
    /// Rows of a replay that are already durable are converted here, and
    /// thrown away, only to learn whether they were rows or error lines.
    scratch: Option<Columns>,
    /// The one row the fused decoder wrote, until it moves to its buffer.
    stage: Option<Columns>,
    /// Partition prefix of the last row appended (or being appended).
    prefix: String,
    /// Partition prefix of a row fused into `prefix`'s buffer, to compare.
    guess: String,
    /// The last two rows went to one partition: try the next in place.
    fuse_next: bool,
    /// Guesses a record's partition from its bytes, when the schema's
    /// partition columns allow it (see [`Pipeline::push_row`]).
    peek: Option<Peek>,
    /// The guessed partition prefix of the record being pushed.
    target: String,
    /// Rows in a row that went to one partition (see [`Pipeline::push_run`]).
    same_partition: u32,
    hour_cache: (i64, String),
    stats: Stats,
    max_record_bytes: usize,
    time_cache: TimeCache,
}

impl Pipeline {
    pub fn new(schema: Arc<TableSchema>, limits: Limits, max_record_bytes: usize) -> Pipeline {
        let table_ref = TableRef { database: None, table: schema.table.clone() };
        let peek = Peek::new(&schema);
        Pipeline {
            decoder: Decoder::new(schema.clone(), max_record_bytes),
            schema,
            limits,
            parquet: ParquetOptions::default(),
            raw_backup: false,
            table_ref,
            shards: FastMap::default(),
            known_shard: None,
            mem_total: 0,
            due: DueQueue::default(),
            closed: Vec::new(),
            scratch: None,
            stage: None,
            prefix: String::new(),
            guess: String::new(),
            fuse_next: true,
            peek,
            target: String::new(),
            same_partition: 0,
            hour_cache: (i64::MIN, String::new()),
            stats: Stats::default(),
            max_record_bytes,
            time_cache: TimeCache::default(),
        }
    }

    pub fn with_raw_backup(mut self, on: bool) -> Self {
        self.raw_backup = on;
        self
    }

    /// How table buffers encode their Parquet files: row group size, and
    /// how much input is encoded at a time.
    pub fn with_parquet(mut self, opts: ParquetOptions) -> Self {
        self.parquet = opts;
        self
    }

    pub fn with_table_ref(mut self, t: TableRef) -> Self {
        self.table_ref = t;
        self
    }

    pub fn schema(&self) -> &Arc<TableSchema> {
        &self.schema
    }

    /// Switches to a new schema. Call only with no open buffer (after
    /// [`Pipeline::take_all`] and writing): buffers hold columns of the old one.
    pub fn set_schema(&mut self, schema: Arc<TableSchema>) {
        debug_assert!(self.shards.values().all(|st| st.bufs.is_empty()), "open buffers under the old schema");
        self.decoder = Decoder::new(schema.clone(), self.max_record_bytes);
        self.scratch = None;
        self.stage = None;
        self.table_ref.table = schema.table.clone();
        self.time_cache = TimeCache::default();
        self.peek = Peek::new(&schema);
        self.schema = schema;
    }

    /// How long the oldest open buffer has been open.
    pub fn oldest_open(&self, now: Instant) -> Option<Duration> {
        self.shards.values().flat_map(|st| st.bufs.iter().map(|(_, _, b)| now.duration_since(b.opened))).max()
    }

    pub fn add_encode_time(&mut self, d: std::time::Duration) {
        self.stats.encode_time += d;
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Bytes held by open buffers.
    pub fn buffered_bytes(&self) -> usize {
        self.mem_total
    }

    /// Loads a shard's durable progress before its records are replayed.
    pub fn restore(&mut self, shard: &ShardId, cp: &ShardCheckpoint) {
        self.restore_with_intent(shard, cp, &[]);
    }

    /// As [`Pipeline::restore`], and replays an interrupted flush: each
    /// destination in `intent` is sealed at the same last record as before.
    pub fn restore_with_intent(&mut self, shard: &ShardId, cp: &ShardCheckpoint, intent: &[FlushIntent]) {
        self.drop_shard(shard);
        let st = self.shards.entry(shard.clone()).or_default();
        let parse = |k: &str| -> Option<(DestKind, String)> {
            let (name, prefix) = k.split_once(':')?;
            KINDS.iter().find(|k| k.as_str() == name).map(|&kind| (kind, prefix.to_string()))
        };
        for (k, pos) in &cp.done {
            let Some((kind, prefix)) = parse(k) else { continue };
            st.done.insert(kind, prefix, pos.clone());
        }
        let saved = cp.replay.iter().filter_map(|(k, ends)| parse(k).map(|(kind, prefix)| (kind, prefix, ends.clone())));
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

    /// Pushes records of one shard, in order, for as long as each lands in
    /// place (see [`Pipeline::push_fused_in_place`]): what [`Pipeline::push`]
    /// does with each, with the shard's state and the buffer looked up once
    /// for the run instead of per record. Returns how many it took; the
    /// caller pushes the next with `push`, which decides where it goes.
    /// Takes none unless the last [`RUN_AFTER`] rows went to one partition,
    /// nor when raw backups are on (each record also has a raw line), the
    /// shard replays flush intents, or a buffer is due. A run stops after a
    /// record that makes a buffer due or the memory exceed its limit, and
    /// before a record already written to the partition (a replay after a
    /// restart), one of another partition (which `push` decodes again: at
    /// most once per run) or one the fused decoder declines.
    pub fn push_run<'d, R>(&mut self, shard: &ShardId, arrival_ms: i64, records: &'d [R], record: impl Fn(&'d R) -> (Position, &'d [u8])) -> usize {
        if self.same_partition < RUN_AFTER || self.raw_backup || !self.fuse_next || self.has_due() || self.known_shard.as_ref() != Some(shard) {
            return 0;
        }
        let Pipeline { shards, decoder, schema, guess, prefix, time_cache, mem_total, stats, due, limits, same_partition, .. } = self;
        let Some(st) = shards.get_mut(shard) else { return 0 };
        if !st.replay.is_empty() {
            return 0;
        }
        // rows up to here are in a written file: `push` skips their replay
        let written_to = st.done.get(DestKind::Table, prefix).cloned();
        let Some(buf) = st.bufs.get_mut(DestKind::Table, prefix) else { return 0 };
        // a partition of the arrival time alone is the same for every record
        // of the run once the first is placed
        let by_arrival = matches!(schema.partition.time, TimeSource::Arrival) && schema.partition.keys.is_empty();
        let mut taken = 0;
        for r in records {
            let (pos, data) = record(r);
            if written_to.as_ref().is_some_and(|d| &pos <= d) {
                break;
            }
            let Body::Rows(RowBuffer { cols, .. }) = &mut buf.body else { break };
            let row = cols.rows;
            if buf.due || !decoder.decode_fused(data, cols) {
                break;
            }
            if taken == 0 || !by_arrival {
                render_partition(&Decoded::Staged(cols, row), &schema.partition, arrival_ms, guess, time_cache).expect("a fused row has its partition values");
                if guess != prefix {
                    cols.truncate_rows(row);
                    break;
                }
            }
            stats.records_in += 1;
            stats.bytes_in += data.len() as u64;
            let counts = Counts { mem_total: &mut *mem_total, stats: &mut *stats, due: &mut *due, limits, schema };
            counts.row_added(buf, &st.replay, shard, prefix, &pos, data.len());
            st.read_to = Some(pos);
            stats.fused_in_place += 1;
            taken += 1;
            if !due.items.is_empty() || mem_total.saturating_sub(due.mem) > limits.memory_limit {
                break;
            }
        }
        *same_partition = same_partition.saturating_add(taken as u32);
        // as `push` after each record
        if self.undue_mem() > self.limits.memory_limit {
            self.shed_memory();
        }
        taken
    }

    /// Routes one record. Never fails: a bad record becomes an error line.
    pub fn push(&mut self, shard: &ShardId, pos: Position, arrival_ms: i64, data: &[u8]) {
        self.stats.records_in += 1;
        self.stats.bytes_in += data.len() as u64;
        if self.known_shard.as_ref() != Some(shard) {
            if !self.shards.contains_key(shard) {
                self.shards.insert(shard.clone(), ShardState::default());
            }
            self.known_shard = Some(shard.clone());
        }
        if self.hour_cache.0 != arrival_ms.div_euclid(3_600_000) {
            self.hour_cache = (arrival_ms.div_euclid(3_600_000), hour_prefix(arrival_ms));
        }
        if self.raw_backup {
            let hour = self.hour_cache.1.clone();
            self.push_line(shard, DestKind::Raw, &hour, &pos, data.len(), |buf| {
                buf.extend_from_slice(data);
                buf.push(b'\n');
            });
        }
        let result = self.push_row(shard, &pos, arrival_ms, data);
        let landed = matches!(result, Ok(RowIn::Landed)); // `read_to` is set
        self.same_partition = self.same_partition.saturating_add(u32::from(landed));
        if let Err(e) = result {
            *self.stats.errors.entry(e.code.as_str()).or_default() += 1;
            let hour = self.hour_cache.1.clone();
            let line = error_line(&e, shard, &pos, arrival_ms, data, &self.table_ref);
            self.push_line(shard, DestKind::Errors, &hour, &pos, data.len(), |buf| {
                buf.extend_from_slice(&line);
                buf.push(b'\n');
            });
        }
        if !landed {
            self.shards.get_mut(shard).unwrap().read_to = Some(pos);
        }
        if self.undue_mem() > self.limits.memory_limit {
            self.shed_memory();
        }
    }

    fn push_row(&mut self, shard: &ShardId, pos: &Position, arrival_ms: i64, data: &[u8]) -> Result<RowIn, RecordError> {
        // The fused single-pass decoder writes a record straight into a
        // buffer: the previous row's partition's, when the row before it
        // went to the same partition as its predecessor, else the one of
        // the partition guessed from the record's bytes (rows of many
        // partitions interleaved). A wrong guess moves the row to the stage;
        // with no guess (or no open buffer for it) the record is decoded
        // into the stage and its row moved to its partition's buffer.
        // Everything else (and every refusal) takes the general path.
        let staged = self.decoder.has_fused()
            && match self.fuse_next {
                true => match self.push_fused_in_place(shard, pos, arrival_ms, data, None) {
                    InPlace::Landed => return Ok(RowIn::Landed),
                    InPlace::Staged => true,
                    InPlace::Declined | InPlace::NoBuffer => false,
                },
                false => match self.guess_partition(arrival_ms, data) {
                    Some(g) => match self.push_fused_in_place(shard, pos, arrival_ms, data, Some(&g)) {
                        InPlace::Landed => {
                            // as below: this row's partition against the previous row's
                            self.fuse_next = self.target == self.prefix;
                            if !self.fuse_next {
                                self.same_partition = 0;
                            }
                            std::mem::swap(&mut self.target, &mut self.prefix);
                            return Ok(RowIn::Landed);
                        }
                        InPlace::Staged => true,
                        InPlace::Declined => false,
                        InPlace::NoBuffer => self.decoder.decode_fused(data, stage_for_row(&mut self.stage, &self.schema)),
                    },
                    None => self.decoder.decode_fused(data, stage_for_row(&mut self.stage, &self.schema)),
                },
            };
        let row = match staged {
            true => {
                let stage = self.stage.as_ref().expect("staged above");
                Decoded::Staged(stage, stage.rows - 1)
            }
            false => Decoded::Parsed(self.decoder.parse(data)?),
        };
        render_partition(&row, &self.schema.partition, arrival_ms, &mut self.guess, &mut self.time_cache)?;
        self.fuse_next = self.guess == self.prefix;
        self.same_partition = if self.fuse_next { self.same_partition.saturating_add(1) } else { 0 };
        std::mem::swap(&mut self.guess, &mut self.prefix);
        if !self.due.items.is_empty() {
            close_if_due(&mut self.shards, &mut self.mem_total, &mut self.due, &mut self.closed, shard, DestKind::Table, &self.prefix);
        }
        let st = self.shards.get_mut(shard).unwrap();
        if !st.done.is_empty() {
            if let Some(d) = st.done.get(DestKind::Table, &self.prefix) {
                if pos <= d {
                    // its file is written: it was a row there, unless it
                    // fails conversion, and then its error line may not be
                    // (the error destination has its own done position)
                    self.stats.skipped_replay += 1;
                    let scratch = self.scratch.get_or_insert_with(|| Columns::new(&self.schema));
                    let converted = row.append_to(scratch);
                    scratch.clear();
                    return converted.map(|()| RowIn::Appended);
                }
            }
        }
        let (schema, parquet) = (&self.schema, &self.parquet);
        let buf = st.bufs.get_or_insert_with(DestKind::Table, &self.prefix, || Buffer::new(pos, Body::Rows(RowBuffer::new(schema, parquet.clone()))));
        let Body::Rows(rows) = &mut buf.body else { unreachable!() };
        match row.append_to(&mut rows.cols) {
            Ok(()) => {
                let counts = Counts { mem_total: &mut self.mem_total, stats: &mut self.stats, due: &mut self.due, limits: &self.limits, schema };
                counts.row_added(buf, &st.replay, shard, &self.prefix, pos, data.len());
                Ok(RowIn::Appended)
            }
            Err(e) => {
                if buf.records == 0 {
                    self.mem_total -= buf.mem;
                    st.bufs.remove(DestKind::Table, &self.prefix);
                }
                Err(e)
            }
        }
    }

    /// Fused-decodes the record straight into the open table buffer of a
    /// partition, the previous row's (`self.prefix`) or the one guessed from
    /// the record's bytes (`self.target`, when `guessed`), and keeps it there
    /// when its partition is that one. A row of another partition moves to
    /// the stage ([`InPlace::Staged`]). Changes nothing when there is no
    /// such buffer or it is due ([`InPlace::NoBuffer`]), the record is a
    /// replay of a row already written there, or the fused decoder declines
    /// the record ([`InPlace::Declined`]).
    fn push_fused_in_place(&mut self, shard: &ShardId, pos: &Position, arrival_ms: i64, data: &[u8], guessed: Option<&Guess>) -> InPlace {
        let target = if guessed.is_some() { &self.target } else { &self.prefix };
        let Some(st) = self.shards.get_mut(shard) else { return InPlace::NoBuffer };
        if !st.done.is_empty() && st.done.get(DestKind::Table, target).is_some_and(|d| pos <= d) {
            // a replay of rows already written, which the general path
            // skips (records come in position order, so an open buffer
            // never precedes one; this is a guard)
            return InPlace::Declined;
        }
        let Some(buf) = st.bufs.get_mut(DestKind::Table, target).filter(|b| !b.due) else { return InPlace::NoBuffer };
        let Body::Rows(RowBuffer { cols, .. }) = &mut buf.body else { return InPlace::NoBuffer };
        let row = cols.rows;
        if !self.decoder.decode_fused(data, cols) {
            return InPlace::Declined;
        }
        // the row's partition values are the guessed ones, or its prefix is the target's
        if !guessed.is_some_and(|g| g.holds(&self.schema.partition, cols, row, arrival_ms)) {
            let fused = Decoded::Staged(cols, row);
            render_partition(&fused, &self.schema.partition, arrival_ms, &mut self.guess, &mut self.time_cache).expect("a fused row has its partition values");
            if self.guess != *target {
                let stage = stage_for_row(&mut self.stage, &self.schema);
                stage.push_row_from(cols, row);
                cols.truncate_rows(row);
                return InPlace::Staged;
            }
        }
        let counts = Counts { mem_total: &mut self.mem_total, stats: &mut self.stats, due: &mut self.due, limits: &self.limits, schema: &self.schema };
        counts.row_added(buf, &st.replay, shard, target, pos, data.len());
        st.read_to = Some(pos.clone());
        self.stats.fused_in_place += 1;
        InPlace::Landed
    }

    /// The partition values [`Peek`] guesses for `data`, with their prefix
    /// rendered into `target`.
    fn guess_partition<'a>(&mut self, arrival_ms: i64, data: &'a [u8]) -> Option<Guess<'a>> {
        let g = self.peek.as_mut()?.guess(data)?;
        let spec = &self.schema.partition;
        render_cached(spec, g.time.unwrap_or(arrival_ms), &g.keys[..spec.keys.len()], &mut self.target, &mut self.time_cache);
        Some(g)
    }

    fn push_line(&mut self, shard: &ShardId, kind: DestKind, prefix: &str, pos: &Position, in_len: usize, write: impl FnOnce(&mut Vec<u8>)) {
        if !self.due.items.is_empty() {
            close_if_due(&mut self.shards, &mut self.mem_total, &mut self.due, &mut self.closed, shard, kind, prefix);
        }
        let st = self.shards.get_mut(shard).unwrap();
        if let Some(d) = st.done.get(kind, prefix) {
            if pos <= d {
                return;
            }
        }
        let buf = st.bufs.get_or_insert_with(kind, prefix, || Buffer::new(pos, Body::Lines(Vec::new())));
        let Body::Lines(lines) = &mut buf.body else { unreachable!() };
        write(lines);
        let mem = lines.capacity() + fixed_cost(prefix);
        self.mem_total = self.mem_total + mem - buf.mem;
        buf.mem = mem;
        buf.records += 1;
        buf.in_bytes += in_len;
        buf.last = pos.clone();
        if let Some(t) = self.limits.trigger(buf).or_else(|| replay_due(&st.replay, kind, prefix, pos)) {
            self.due.push(buf, shard, kind, prefix, t);
        }
    }

    /// Marks the largest buffers due until what stays buffered fits in three
    /// quarters of the budget. They stay counted until the caller takes them,
    /// which it does as soon as [`Pipeline::has_due`] says so.
    fn shed_memory(&mut self) {
        let mut all: Vec<(usize, ShardId, DestKind, String)> = self
            .shards
            .iter()
            .flat_map(|(s, st)| st.bufs.iter().filter(|(_, _, b)| !b.due).map(move |(k, p, b)| (b.mem, s.clone(), k, p.clone())))
            .collect();
        all.sort_by_key(|a| std::cmp::Reverse(a.0));
        let target = self.limits.memory_limit / 4 * 3;
        let mut keep = self.undue_mem();
        for (mem, s, k, p) in all {
            if keep <= target {
                break;
            }
            keep -= mem.min(keep);
            if let Some(b) = self.shards.get_mut(&s).and_then(|st| st.bufs.get_mut(k, &p)) {
                self.due.push(b, &s, k, &p, Trigger::Memory);
            }
        }
    }

    /// Memory of the buffers not yet queued for sealing.
    fn undue_mem(&self) -> usize {
        self.mem_total.saturating_sub(self.due.mem)
    }

    fn seal(&mut self, shard: &ShardId, kind: DestKind, prefix: String, trigger: Trigger) -> Option<Sealed> {
        seal_parts(&mut self.shards, &mut self.mem_total, &mut self.due, shard, kind, prefix, trigger)
    }

    /// Buffers due now: full ones, memory-shed ones, and those older than max_age.
    pub fn take_due(&mut self, now: Instant) -> Vec<Sealed> {
        let max_age = self.limits.max_age;
        let aged: Vec<(ShardId, DestKind, String)> = self
            .shards
            .iter()
            .flat_map(|(s, st)| {
                st.bufs
                    .iter()
                    .filter(move |(_, _, b)| now.duration_since(b.opened) >= max_age)
                    .map(move |(k, p, _)| (s.clone(), k, p.clone()))
            })
            .collect();
        let mut out = self.seal_ready();
        for (s, k, p) in aged {
            out.extend(self.seal(&s, k, p, Trigger::Age));
        }
        out
    }

    fn seal_ready(&mut self) -> Vec<Sealed> {
        let mut out = std::mem::take(&mut self.closed);
        let ready = std::mem::take(&mut self.due.items);
        out.extend(ready.into_iter().filter_map(|(s, k, p, t)| self.seal(&s, k, p, t)));
        out
    }

    /// Every open buffer (shutdown, end of input).
    pub fn take_all(&mut self) -> Vec<Sealed> {
        let mut out = self.seal_ready();
        let all: Vec<(ShardId, DestKind, String)> = self
            .shards
            .iter()
            .flat_map(|(s, st)| st.bufs.iter().map(move |(k, p, _)| (s.clone(), k, p.clone())))
            .collect();
        for (s, k, p) in all {
            out.extend(self.seal(&s, k, p, Trigger::Shutdown));
        }
        out
    }

    /// True when sealed buffers wait to be taken (the caller should write soon).
    pub fn has_due(&self) -> bool {
        !self.due.items.is_empty() || !self.closed.is_empty()
    }

    /// Records that a sealed buffer is durable at its destination.
    pub fn mark_durable(&mut self, s: &Sealed) {
        let st = self.shards.entry(s.shard.clone()).or_default();
        let e = st.done.get_or_insert_with(s.kind, &s.prefix, || s.last.clone());
        if *e < s.last {
            *e = s.last.clone();
        }
    }

    /// Replay boundaries of an interrupted flush not yet reproduced, as
    /// intent entries (`first` = `last`: only the boundary matters). A
    /// flush's intent must carry them too: if it is interrupted in turn,
    /// the restart still needs them.
    pub fn pending_replay(&self, shard: &ShardId) -> Vec<FlushIntent> {
        let Some(st) = self.shards.get(shard) else { return Vec::new() };
        st.replay
            .iter()
            .flat_map(|(kind, prefix, ends)| ends.iter().map(move |e| FlushIntent { kind, prefix: prefix.clone(), first: e.clone(), last: e.clone() }))
            .collect()
    }

    /// The shard's checkpoint given what is durable now; prunes what it no longer needs.
    pub fn checkpoint(&mut self, shard: &ShardId) -> ShardCheckpoint {
        let Some(st) = self.shards.get_mut(shard) else { return ShardCheckpoint::default() };
        let oldest = st.bufs.iter().map(|(_, _, b)| &b.first).min().cloned();
        let resume = match (oldest, &st.read_to) {
            (Some(p), _) => Resume::At(p),
            (None, Some(p)) => Resume::After(p.clone()),
            // nothing read since the restore: stay where the last checkpoint was
            (None, None) => st.restored.clone().unwrap_or(Resume::Start),
        };
        st.done.retain(|d| match &resume {
            Resume::At(p) => *d >= *p,
            Resume::After(p) => *d > *p,
            Resume::Start => true,
        });
        let ahead = |e: &Position| match &resume {
            Resume::At(p) => e >= p,
            Resume::After(p) => e > p,
            Resume::Start => true,
        };
        let replay = st
            .replay
            .iter()
            .map(|(k, p, ends)| (done_key(k, p), ends.iter().filter(|e| ahead(e)).cloned().collect::<Vec<_>>()))
            .filter(|(_, ends)| !ends.is_empty())
            .collect();
        ShardCheckpoint {
            resume,
            done: st.done.iter().map(|(k, p, pos)| (done_key(k, p), pos.clone())).collect(),
            replay,
        }
    }

    pub fn shards(&self) -> impl Iterator<Item = &ShardId> {
        self.shards.keys()
    }

    /// Whether the shard has state here (false once dropped).
    pub fn has_shard(&self, shard: &ShardId) -> bool {
        self.shards.contains_key(shard)
    }

    /// Entries in the shard's per-destination progress map.
    pub fn done_len(&self, shard: &ShardId) -> usize {
        self.shards.get(shard).map_or(0, |st| st.done.0.iter().map(|m| m.len()).sum())
    }

    /// Forgets a shard whose lease is gone: its open buffers are discarded
    /// unwritten (the new owner replays them from the last checkpoint).
    pub fn drop_shard(&mut self, shard: &ShardId) {
        if self.known_shard.as_ref() == Some(shard) {
            self.known_shard = None;
        }
        let Some(st) = self.shards.remove(shard) else { return };
        for (_, _, b) in st.bufs.iter() {
            self.mem_total -= b.mem.min(self.mem_total);
            if b.due {
                self.due.mem -= b.mem.min(self.due.mem);
            }
        }
        self.due.items.retain(|(s, ..)| s != shard);
        self.closed.retain(|s| &s.shard != shard);
    }

    /// Every open buffer of one shard (its end, or a checkpoint grown too large).
    pub fn take_shard(&mut self, shard: &ShardId) -> Vec<Sealed> {
        let Some(st) = self.shards.get(shard) else { return Vec::new() };
        let all: Vec<(DestKind, String)> = st.bufs.iter().map(|(k, p, _)| (k, p.clone())).collect();
        self.due.items.retain(|(s, ..)| s != shard);
        let (mut out, rest): (Vec<Sealed>, Vec<Sealed>) = std::mem::take(&mut self.closed).into_iter().partition(|s| &s.shard == shard);
        self.closed = rest;
        out.extend(all.into_iter().filter_map(|(k, p)| self.seal(shard, k, p, Trigger::Shard)));
        out
    }
}

/// What [`Pipeline::push_fused_in_place`] did with a record.
enum InPlace {
    /// Appended to the target buffer and counted.
    Landed,
    /// Decoded into the stage; its partition is another.
    Staged,
    /// The fused decoder declined the record (or it is a replay of rows
    /// written): nothing changed; take the general path.
    Declined,
    /// There is no open, undue buffer to write into: nothing changed.
    NoBuffer,
}

/// The pipeline-wide counters a new table row changes.
struct Counts<'a> {
    mem_total: &'a mut usize,
    stats: &'a mut Stats,
    due: &'a mut DueQueue,
    limits: &'a Limits,
    schema: &'a TableSchema,
}

impl Counts<'_> {
    /// Counts a row just appended to the table buffer `buf` (its memory is
    /// measured on every 32nd row and estimated from the input in between)
    /// and queues the buffer when a limit or a replayed boundary makes it
    /// due. A buffer not due encodes its rows every `chunk_in_bytes` of
    /// input ([`RowBuffer::row_added`]).
    fn row_added(self, buf: &mut Buffer, replay: &DestMap<Vec<Position>>, shard: &ShardId, prefix: &str, pos: &Position, in_len: usize) {
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
        *self.mem_total = *self.mem_total + buf.mem - before;
        self.stats.rows += 1;
        if let Some(t) = self.limits.trigger(buf).or_else(|| replay_due(replay, DestKind::Table, prefix, pos)) {
            self.due.push(buf, shard, DestKind::Table, prefix, t);
        }
        if buf.due {
            return; // it takes no more rows: the writer encodes the rest
        }
        let Body::Rows(rows) = &mut buf.body else { unreachable!("a table buffer") };
        if let Some(took) = rows.row_added(in_len, self.schema) {
            self.stats.encode_time += took;
            let before = buf.mem;
            buf.mem = rows.mem_bytes() + fixed_cost(prefix);
            *self.mem_total = *self.mem_total + buf.mem - before;
        }
    }
}

/// Where a good record went.
enum RowIn {
    /// Into the open buffer by the fused decoder, which also set the
    /// shard's `read_to`.
    Landed,
    /// Into a buffer (or skipped as a durable replay) by the general path.
    Appended,
}

/// Rows in a row of one partition before [`Pipeline::push_run`] takes
/// records in runs: with partitions interleaved, runs would mostly stop at
/// their first record, which `push` then decodes again.
const RUN_AFTER: u32 = 16;

/// Rows the stage keeps before it is cleared: clearing walks every column
/// buffer, so it is done once per this many staged rows, not per row.
const STAGE_ROWS: usize = 256;

/// The stage, ready for one more row (its last row is the staged one).
fn stage_for_row<'a>(stage: &'a mut Option<Columns>, schema: &TableSchema) -> &'a mut Columns {
    let stage = stage.get_or_insert_with(|| Columns::new(schema));
    if stage.rows >= STAGE_ROWS {
        stage.clear();
    }
    stage
}

/// A record that decoded: a row the fused decoder wrote (into the stage, or
/// in place), or a record the general path parsed and converts when it is
/// appended.
enum Decoded<'a> {
    Staged(&'a Columns, usize),
    Parsed(Row<'a>),
}

/// Renders the partition prefix of a decoded record into `out`.
fn render_partition(row: &Decoded, spec: &PartitionSpec, arrival_ms: i64, out: &mut String, cache: &mut TimeCache) -> Result<(), RecordError> {
    let time = match spec.time {
        TimeSource::Column(i) => row.timestamp(i)?.unwrap_or(arrival_ms),
        TimeSource::Arrival => arrival_ms,
    };
    let mut keys: [Option<Cow<str>>; crate::schema::MAX_PARTITION_KEYS] = Default::default();
    for (slot, &i) in keys.iter_mut().zip(&spec.keys) {
        *slot = row.key_text(i)?;
    }
    render_cached(spec, time, &keys[..spec.keys.len()], out, cache);
    Ok(())
}

impl<'a> Decoded<'a> {
    fn timestamp(&self, i: usize) -> Result<Option<i64>, RecordError> {
        match self {
            Decoded::Staged(c, r) => Ok(c.timestamp_at(i, *r)),
            Decoded::Parsed(r) => r.timestamp(i),
        }
    }
    fn key_text(&self, i: usize) -> Result<Option<Cow<'a, str>>, RecordError> {
        match self {
            Decoded::Staged(c, r) => Ok(c.key_text_at(i, *r)),
            Decoded::Parsed(r) => r.key_text(i),
        }
    }
    fn append_to(&self, cols: &mut Columns) -> Result<(), RecordError> {
        match self {
            Decoded::Staged(c, r) => {
                cols.push_row_from(c, *r);
                Ok(())
            }
            Decoded::Parsed(r) => r.append_to(cols),
        }
    }
}

/// Takes a buffer out as a [`Sealed`] (the fields of [`Pipeline`] it needs,
/// so a caller holding a decoded row can seal too).
fn seal_parts(
    shards: &mut FastMap<ShardId, ShardState>,
    mem_total: &mut usize,
    due: &mut DueQueue,
    shard: &ShardId,
    kind: DestKind,
    prefix: String,
    trigger: Trigger,
) -> Option<Sealed> {
    let st = shards.get_mut(shard)?;
    let buf = st.bufs.remove(kind, &prefix)?;
    // this object's replay boundary is reached; later ones stay
    if let Some(ends) = st.replay.get_mut(kind, &prefix) {
        ends.retain(|e| *e > buf.last);
        if ends.is_empty() {
            st.replay.remove(kind, &prefix);
        }
    }
    *mem_total -= buf.mem.min(*mem_total);
    if buf.due {
        due.mem -= buf.mem.min(due.mem);
    }
    let body = match buf.body {
        Body::Rows(cols) => SealedBody::Rows(cols),
        Body::Lines(l) => SealedBody::Lines(l),
    };
    Some(Sealed { shard: shard.clone(), kind, prefix, first: buf.first, last: buf.last, records: buf.records, trigger, body })
}

/// A due buffer takes no more records: when another record comes for its
/// destination before the buffer was taken, the buffer is sealed as it
/// stands (into `closed`). Its object then holds exactly the records up to
/// the one that made it due, which is where a replay of an interrupted
/// flush seals too: the same key with the same content. (Appending on made
/// the first attempt and the replay write different content under one key;
/// a late upload of the shorter one then lost records.)
fn close_if_due(
    shards: &mut FastMap<ShardId, ShardState>,
    mem_total: &mut usize,
    due: &mut DueQueue,
    closed: &mut Vec<Sealed>,
    shard: &ShardId,
    kind: DestKind,
    prefix: &str,
) {
    if !shards.get(shard).and_then(|st| st.bufs.get(kind, prefix)).is_some_and(|b| b.due) {
        return;
    }
    let Some(i) = due.items.iter().position(|(s, k, p, _)| s == shard && *k == kind && p == prefix) else { return };
    let (s, k, p, t) = due.items.remove(i);
    closed.extend(seal_parts(shards, mem_total, due, &s, k, p, t));
}

/// The replay trigger for a buffer that has reached its intent's last record.
fn replay_due(replay: &DestMap<Vec<Position>>, kind: DestKind, prefix: &str, pos: &Position) -> Option<Trigger> {
    match replay.get(kind, prefix).and_then(|ends| ends.first()) {
        Some(last) if pos >= last => Some(Trigger::Replay),
        _ => None,
    }
}

/// Memory a buffer costs besides its content: its struct, map entry and key.
fn fixed_cost(prefix: &str) -> usize {
    std::mem::size_of::<Buffer>() + std::mem::size_of::<String>() + prefix.len() + 64
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
}

/// One Firehose-style error record (a JSON line).
pub fn error_line(e: &RecordError, shard: &ShardId, pos: &Position, arrival_ms: i64, data: &[u8], t: &TableRef) -> Vec<u8> {
    use base64::Engine;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let v = serde_json::json!({
        "attemptsMade": 1,
        "arrivalTimestamp": arrival_ms,
        "errorCode": e.code.as_str(),
        "errorMessage": e.message,
        "attemptEndingTimestamp": now,
        "rawData": base64::engine::general_purpose::STANDARD.encode(data),
        "sequenceNumber": pos.seq.to_string(),
        "subSequenceNumber": pos.sub,
        "shardId": shard.as_str(),
        "dataCatalogTable": { "databaseName": t.database, "tableName": t.table },
    });
    serde_json::to_vec(&v).expect("json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use std::collections::HashMap;

    const SCHEMA: &str = r#"
table = "t"
[[columns]]
name = "id"
type = "string"
required = true
[[columns]]
name = "k"
type = "string"
[partition]
time = { column = "arrival" }
keys = ["k"]
"#;

    /// Object store twin: key → ids (rows, or error/raw lines' record ids);
    /// and for each Parquet file, `Hash/` + key → its bytes' hash.
    type Lake = HashMap<String, Vec<String>>;

    /// Table buffers encode their rows every two records (of ~22 bytes), so the tests
    /// cover files written in many chunks.
    fn small_chunks() -> ParquetOptions {
        ParquetOptions { chunk_in_bytes: 40, ..Default::default() }
    }

    fn store(lake: &mut Lake, s: &mut Sealed) {
        let ids = match std::mem::replace(&mut s.body, SealedBody::Lines(Vec::new())) {
            SealedBody::Rows(r) => {
                let file = bytes::Bytes::from(r.finish(&TableSchema::parse("t.toml", SCHEMA).unwrap(), Vec::new()).unwrap());
                lake.insert(format!("Hash/{}", s.key()), vec![format!("{:x}", std::hash::BuildHasher::hash_one(&std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default(), &file[..]))]);
                let batches = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 1024).unwrap();
                batches.flat_map(|b| b.unwrap().column(0).as_string::<i32>().iter().map(|v| v.unwrap().to_string()).collect::<Vec<_>>()).collect()
            }
            SealedBody::Lines(l) => String::from_utf8(l).unwrap().lines().map(|x| x.to_string()).collect(),
        };
        lake.insert(format!("{:?}/{}", s.kind, s.key()), ids);
    }

    /// `got` holds exactly `want`'s objects, each with the same content
    /// (checked key by key, in order, so a failure names the first object).
    fn assert_same_lake(got: &Lake, want: &Lake, what: &str) {
        let mut keys: Vec<_> = want.keys().collect();
        keys.sort();
        for k in keys {
            assert_eq!(got.get(k), Some(&want[k]), "{what}: {k}");
        }
        assert_eq!(got.len(), want.len(), "{what}");
    }

    /// Whether record `i` of [`records`] is bad (malformed, or missing its required id).
    fn is_bad(i: usize) -> bool {
        i % 7 == 3 || i % 11 == 5
    }

    /// The record ids the error lines of `lake` hold, sorted, once per line.
    fn error_ids(lake: &Lake) -> Vec<String> {
        let mut ids: Vec<String> = lake
            .iter()
            .filter(|(k, _)| k.starts_with("Errors/"))
            .flat_map(|(_, v)| v.iter())
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                use base64::Engine;
                let raw = base64::engine::general_purpose::STANDARD.decode(v["rawData"].as_str().unwrap()).unwrap();
                let raw = String::from_utf8(raw).unwrap();
                let i = raw.find("\":\"r").unwrap() + 3;
                raw[i..].split('"').next().unwrap().to_string()
            })
            .collect();
        ids.sort();
        ids
    }

    fn expected_errors(n: usize) -> Vec<String> {
        let mut ids: Vec<String> = (0..n).filter(|&i| is_bad(i)).map(|i| format!("r{i}")).collect();
        ids.sort();
        ids
    }

    fn records(n: usize) -> Vec<(Position, Vec<u8>)> {
        (0..n)
            .map(|i| {
                let line = if i % 7 == 3 {
                    format!("{{\"id\":\"r{i}\" \"k\":1}}") // malformed
                } else if i % 11 == 5 {
                    // routed to a table partition, refused only when appended
                    format!("{{\"rid\":\"r{i}\",\"k\":\"p{}\"}}", (i / 4 * 13) % 5)
                } else {
                    // runs of four records per partition: the fused decoder
                    // writes some in place, stages others
                    format!("{{\"id\":\"r{i}\",\"k\":\"p{}\"}}", (i / 4 * 13) % 5)
                };
                (Position::offset(i as u64 * 100), line.into_bytes())
            })
            .collect()
    }

    /// Runs the pipeline over `recs` from the checkpoint, "crashing" (dropping
    /// everything in memory) after `crash_after` writes, where the write of
    /// objects happens but the checkpoint of the last flush may not be saved.
    fn run_until_crash(recs: &[(Position, Vec<u8>)], saved: &mut ShardCheckpoint, lake: &mut Lake, crash_after: usize, save_last: bool) -> bool {
        let shard = ShardId::new("s");
        let limits = Limits { max_records: 3, max_bytes: 1 << 20, max_age: Duration::from_secs(3600), memory_limit: 1 << 30 };
        let schema = Arc::new(TableSchema::parse("t.toml", SCHEMA).unwrap());
        let mut p = Pipeline::new(schema, limits, 1000).with_raw_backup(true).with_parquet(small_chunks());
        p.restore(&shard, saved);
        let start = match &saved.resume {
            Resume::Start => 0,
            Resume::At(pos) => recs.iter().position(|(p, _)| p == pos).unwrap(),
            Resume::After(pos) => recs.iter().position(|(p, _)| p == pos).unwrap() + 1,
        };
        let mut writes = 0;
        for (pos, data) in &recs[start..] {
            p.push(&shard, pos.clone(), 0, data);
            let mut due = p.take_due(Instant::now());
            if due.is_empty() {
                continue;
            }
            for s in due.iter_mut() {
                store(lake, s);
                p.mark_durable(s);
            }
            writes += 1;
            if writes == crash_after {
                if save_last {
                    *saved = p.checkpoint(&shard);
                }
                return false;
            }
            *saved = p.checkpoint(&shard);
        }
        for mut s in p.take_all() {
            store(lake, &mut s);
            p.mark_durable(&s);
        }
        *saved = p.checkpoint(&shard);
        true
    }

    /// A shard given up (lease lost) and taken again in the same process:
    /// its buffers were thrown away, and its records come again from the
    /// start; each good one lands once, in a fresh shard state.
    #[test]
    fn a_shard_dropped_and_taken_again_starts_afresh() {
        let recs = records(60);
        let shard = ShardId::new("s");
        let schema = Arc::new(TableSchema::parse("t.toml", SCHEMA).unwrap());
        let mut p = Pipeline::new(schema, Limits::default(), 1000).with_parquet(small_chunks());
        for (pos, data) in &recs[..30] {
            p.push(&shard, pos.clone(), 0, data);
        }
        p.drop_shard(&shard);
        assert!(!p.has_shard(&shard));
        for (pos, data) in &recs {
            p.push(&shard, pos.clone(), 0, data);
        }
        let mut lake = Lake::new();
        for mut s in p.take_all() {
            store(&mut lake, &mut s);
        }
        let mut rows: Vec<String> = lake.iter().filter(|(k, _)| k.starts_with("Table/")).flat_map(|(_, v)| v.clone()).collect();
        rows.sort();
        let mut expect: Vec<String> = (0..60).filter(|&i| !is_bad(i)).map(|i| format!("r{i}")).collect();
        expect.sort();
        assert_eq!(rows, expect);
        assert_eq!(p.checkpoint(&shard).resume, Resume::After(Position::offset(59 * 100)));
    }

    #[test]
    fn crashes_at_any_point_neither_lose_nor_duplicate() {
        let recs = records(200);
        for seed in 0..60u64 {
            let mut lake = Lake::new();
            let mut saved = ShardCheckpoint::default();
            let mut rng = seed;
            let mut finished = false;
            let mut crashes = 0;
            while !finished {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let crash_after = if crashes < 8 { 1 + (rng >> 33) as usize % 12 } else { usize::MAX };
                finished = run_until_crash(&recs, &mut saved, &mut lake, crash_after, (rng >> 20) & 1 == 0);
                crashes += 1;
            }
            let mut rows: Vec<String> = lake.iter().filter(|(k, _)| k.starts_with("Table/")).flat_map(|(_, v)| v.clone()).collect();
            let raw: usize = lake.iter().filter(|(k, _)| k.starts_with("Raw/")).map(|(_, v)| v.len()).sum();
            rows.sort();
            let mut expect: Vec<String> = (0..200).filter(|&i| !is_bad(i)).map(|i| format!("r{i}")).collect();
            expect.sort();
            assert_eq!(rows, expect, "seed {seed}: rows differ");
            assert_eq!(error_ids(&lake), expected_errors(200), "seed {seed}: error lines");
            assert_eq!(raw, 200, "seed {seed}: raw backup lines");
            assert_eq!(saved.resume, Resume::After(Position::offset(199 * 100)));
            assert!(saved.done.is_empty());
        }
    }

    /// One flush at a time as the Kinesis source does it: intent saved,
    /// objects written one by one (a crash can fall between any two), then
    /// the checkpoint; due buffers are taken at batch ends, which differ
    /// between runs. Each restart runs with a larger max_records, as when
    /// the first run's buffers were cut early by age or memory: the intent
    /// must still make every overwrite write the same content again.
    #[test]
    fn replayed_intents_rewrite_the_same_objects() {
        let recs = records(200);
        let shard = ShardId::new("s");
        let schema = Arc::new(TableSchema::parse("t.toml", SCHEMA).unwrap());
        for seed in 0..40u64 {
            let mut lake = Lake::new();
            let (mut saved, mut intent) = (ShardCheckpoint::default(), Vec::<FlushIntent>::new());
            let mut rng = seed;
            let mut crashes = 0;
            'run: loop {
                let limits = Limits { max_records: 3 + crashes, max_bytes: 1 << 20, max_age: Duration::from_secs(3600), memory_limit: 1 << 30 };
                let mut p = Pipeline::new(schema.clone(), limits, 1000).with_raw_backup(true).with_parquet(small_chunks());
                p.restore_with_intent(&shard, &saved, &intent);
                // a restart that reads nothing keeps the checkpoint where it
                // was, and carries the interrupted flush's boundaries on
                let cp = p.checkpoint(&shard);
                assert_eq!((&cp.resume, &cp.done), (&saved.resume, &saved.done), "seed {seed}");
                for i in &intent {
                    let key = done_key(i.kind, &i.prefix);
                    if saved.done.get(&key).is_none_or(|d| i.last > *d) {
                        assert!(cp.replay.get(&key).is_some_and(|e| e.contains(&i.last)), "seed {seed}: {key} {:?}", cp.replay);
                    }
                }
                let start = match &saved.resume {
                    Resume::Start => 0,
                    Resume::At(pos) => recs.iter().position(|(p, _)| p == pos).unwrap(),
                    Resume::After(pos) => recs.iter().position(|(p, _)| p == pos).unwrap() + 1,
                };
                let mut batch_rng = seed ^ ((crashes as u64) << 32) ^ 0x5bd1;
                let mut flush = |p: &mut Pipeline, mut due: Vec<Sealed>, lake: &mut Lake, saved: &mut ShardCheckpoint, intent: &mut Vec<FlushIntent>| -> bool {
                    *intent = due.iter().map(FlushIntent::of).collect();
                    intent.extend(p.pending_replay(&shard));
                    for s in due.iter_mut() {
                        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        if crashes < 10 && (rng >> 33) % 9 == 0 {
                            crashes += 1;
                            return false;
                        }
                        let key = format!("{:?}/{}", s.kind, s.key());
                        let before = lake.get(&key).cloned();
                        let hash_key = format!("Hash/{}", s.key());
                        let hash_before = lake.get(&hash_key).cloned();
                        store(lake, s);
                        if let Some(h) = hash_before {
                            assert_eq!(lake[&hash_key], h, "seed {seed}: replay wrote other Parquet bytes for {key}");
                        }
                        if let Some(b) = before {
                            // error lines carry the writer's clock (attemptEndingTimestamp); compare the rest
                            let norm = |v: &Vec<String>| -> Vec<String> {
                                v.iter().map(|l| match serde_json::from_str::<serde_json::Value>(l) {
                                    Ok(serde_json::Value::Object(mut m)) => {
                                        m.remove("attemptEndingTimestamp");
                                        serde_json::Value::Object(m).to_string()
                                    }
                                    _ => l.clone(),
                                }).collect()
                            };
                            assert_eq!(norm(&lake[&key]), norm(&b), "seed {seed}: replay changed {key}");
                        }
                        p.mark_durable(s);
                    }
                    *saved = p.checkpoint(&shard);
                    intent.clear();
                    true
                };
                // records come in batches (a GetRecords call): due buffers are
                // taken at batch ends, so more records for a due destination
                // can come first; batch ends differ between runs
                for (pos, data) in &recs[start..] {
                    p.push(&shard, pos.clone(), 0, data);
                    batch_rng = batch_rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    if (batch_rng >> 33) % 4 != 0 {
                        continue;
                    }
                    let due = p.take_due(Instant::now());
                    if !due.is_empty() && !flush(&mut p, due, &mut lake, &mut saved, &mut intent) {
                        continue 'run;
                    }
                }
                let rest = p.take_all();
                if flush(&mut p, rest, &mut lake, &mut saved, &mut intent) {
                    break;
                }
            }
            let mut rows: Vec<String> = lake.iter().filter(|(k, _)| k.starts_with("Table/")).flat_map(|(_, v)| v.clone()).collect();
            rows.sort();
            let mut expect: Vec<String> = (0..200).filter(|&i| !is_bad(i)).map(|i| format!("r{i}")).collect();
            expect.sort();
            assert_eq!(rows, expect, "seed {seed}: rows differ");
            let raw: usize = lake.iter().filter(|(k, _)| k.starts_with("Raw/")).map(|(_, v)| v.len()).sum();
            assert_eq!(raw, 200, "seed {seed}");
            assert_eq!(error_ids(&lake), expected_errors(200), "seed {seed}: error lines");
        }
    }

    /// The fused decoder (in place in the previous row's partition, in
    /// place in the partition guessed from the record's bytes, or staged
    /// after a wrong guess) and the general path seal the same objects with
    /// the same rows, error lines and raw lines, whatever the batch ends.
    /// Besides [`records`], records that mislead or defeat the guess: the
    /// key in a nested object before the top-level one, a repeated key (the
    /// last wins), the key in another case, an escaped or null value, the
    /// key's bytes inside a string value.
    #[test]
    fn fused_and_general_decoding_seal_the_same_objects() {
        // enough rows for the stage to be cleared several times
        let mut recs = records(1500);
        for (i, (_, data)) in recs.iter_mut().enumerate().filter(|(i, _)| i % 13 == 6) {
            // p: the record's partition; q: an open partition the guess is misled to
            let (p, q) = ((i / 4 * 13) % 5, (i / 4 * 13 + 1) % 5);
            *data = match i % 6 {
                0 => format!("{{\"id\":\"r{i}\",\"x\":{{\"k\":\"p{q}\"}},\"k\":\"p{p}\"}}"),
                1 => format!("{{\"id\":\"r{i}\",\"k\":\"p{q}\",\"k\":\"p{p}\"}}"),
                2 => format!("{{\"id\":\"r{i}\",\"K\":\"p{p}\"}}"),
                3 => format!("{{\"id\":\"r{i}\",\"k\":\"p\\u003{p}\"}}"),
                4 => format!("{{\"id\":\"r{i}\",\"k\":null}}"),
                _ => format!("{{\"id\":\"r{i}\",\"y\":\"\\\"k\\\":\\\"p8\",\"k\":\"p{p}\"}}"),
            }
            .into_bytes();
        }
        let shard = ShardId::new("s");
        let schema = Arc::new(TableSchema::parse("t.toml", SCHEMA).unwrap());
        let run = |fused: bool, peek: bool| {
            let limits = Limits { max_records: 5, max_bytes: 1 << 20, max_age: Duration::from_secs(3600), memory_limit: 1 << 30 };
            let mut p = Pipeline::new(schema.clone(), limits, 1000).with_raw_backup(true).with_parquet(small_chunks());
            p.decoder.set_fused(fused);
            assert!(p.peek.is_some(), "the key column can be guessed");
            if !peek {
                p.peek = None;
            }
            let mut lake = Lake::new();
            for (n, (pos, data)) in recs.iter().enumerate() {
                p.push(&shard, pos.clone(), 0, data);
                if n % 7 == 0 {
                    for mut s in p.take_due(Instant::now()) {
                        store(&mut lake, &mut s);
                        p.mark_durable(&s);
                    }
                    if n % 2 == 0 {
                        p.checkpoint(&shard);
                    }
                }
            }
            for mut s in p.take_all() {
                store(&mut lake, &mut s);
                p.mark_durable(&s);
            }
            // error lines carry the writer's clock; keep their record ids
            lake.retain(|k, _| !k.starts_with("Errors/"));
            (lake, p.stats().fused_in_place, p.stats().rows)
        };
        let (general, none, rows) = run(false, false);
        assert_eq!(none, 0);
        let (staging, in_place_by_order, staging_rows) = run(true, false);
        let (guessing, in_place, guessing_rows) = run(true, true);
        assert_eq!((staging_rows, guessing_rows), (rows, rows));
        assert!(in_place_by_order > rows / 4 && in_place_by_order < rows, "in place {in_place_by_order} of {rows}: both paths are exercised");
        assert!(rows - in_place_by_order > 3 * STAGE_ROWS as u64, "staged {} of {rows}", rows - in_place_by_order);
        // guessing takes most rows that changed partition in place; the
        // misleading records (and the first row of each buffer) are staged
        assert!(in_place > in_place_by_order + rows / 6 && in_place < rows - 50, "in place {in_place} (by order {in_place_by_order}) of {rows}");
        assert_same_lake(&staging, &general, "staging");
        assert_same_lake(&guessing, &general, "guessing");
    }

    /// Records pushed in runs ([`Pipeline::push_run`], as `convert` and
    /// the stdin source do) seal the same objects, with the same rows and
    /// error lines and the same read position, as records pushed one by
    /// one: runs stop at a buffer coming due (`max_records`), at a record
    /// of another partition, at a bad record and at the memory limit.
    #[test]
    fn records_pushed_in_runs_seal_what_records_pushed_one_by_one_seal() {
        let keyed = Arc::new(TableSchema::parse("t.toml", SCHEMA).unwrap());
        let hourly = SCHEMA.replace("keys = [\"k\"]", "").replace("column = \"arrival\" }", "column = \"arrival\", granularity = \"hour\" }");
        let hourly = Arc::new(TableSchema::parse("t.toml", &hourly).unwrap());
        assert!(hourly.partition.keys.is_empty());
        // partitions change every 60 records (the key) or 250 (the arrival
        // hour, which a run shares); every 37th record is malformed
        let recs: Vec<(u64, Vec<u8>)> = (0..3000)
            .map(|i| {
                let line = if i % 37 == 36 { format!("{{\"id\":\"r{i}\" \"k\":1}}") } else { format!("{{\"id\":\"r{i}\",\"k\":\"p{}\"}}", i / 60 % 3) };
                (i as u64 * 100, line.into_bytes())
            })
            .collect();
        let shard = ShardId::new("s");
        let arrival = |i: usize| (i / 250) as i64 * 3_600_000;
        let run = |schema: &Arc<TableSchema>, runs: bool, memory_limit: usize| {
            let limits = Limits { max_records: 45, max_bytes: 1 << 20, max_age: Duration::from_secs(3600), memory_limit };
            let mut p = Pipeline::new(schema.clone(), limits, 1000).with_parquet(small_chunks());
            let mut lake = Lake::new();
            let (mut i, mut by_runs) = (0, 0);
            while i < recs.len() {
                if runs {
                    let same_hour = &recs[i..(i / 250 + 1) * 250];
                    let n = p.push_run(&shard, arrival(i), same_hour, |(off, d)| (Position::offset(*off), &d[..]));
                    (i, by_runs) = (i + n, by_runs + n as u64);
                }
                if let Some((off, d)) = recs.get(i).filter(|_| !p.has_due()) {
                    p.push(&shard, Position::offset(*off), arrival(i), d);
                    i += 1;
                }
                for mut s in p.take_due(Instant::now()) {
                    store(&mut lake, &mut s);
                    p.mark_durable(&s);
                }
            }
            let read_to = p.shards[&shard].read_to.clone();
            for mut s in p.take_all() {
                store(&mut lake, &mut s);
                p.mark_durable(&s);
            }
            lake.retain(|k, _| !k.starts_with("Errors/"));
            let errors: u64 = p.stats().error_total();
            (lake, p.stats().rows, errors, by_runs, read_to)
        };
        for (schema, memory_limit) in [(&keyed, 1 << 30), (&keyed, 6 << 10), (&hourly, 1 << 30), (&hourly, 6 << 10)] {
            let (one_by_one, rows, errors, _, read_to) = run(schema, false, memory_limit);
            let (in_runs, run_rows, run_errors, by_runs, run_read_to) = run(schema, true, memory_limit);
            assert!(one_by_one.keys().any(|k| k.contains("hr=11/")), "{:?}", one_by_one.keys());
            assert_eq!((rows + errors, run_rows, run_errors), (3000, rows, errors), "memory limit {memory_limit}");
            assert!(by_runs > rows / 4, "memory limit {memory_limit}: {by_runs} of {rows} rows pushed in runs");
            assert_eq!(run_read_to, read_to);
            assert_same_lake(&in_runs, &one_by_one, &format!("memory limit {memory_limit}"));
        }
    }

    #[test]
    fn memory_limit_seals_the_largest_buffers() {
        let schema = Arc::new(TableSchema::parse("t.toml", SCHEMA).unwrap());
        let limits = Limits { max_records: 1 << 30, max_bytes: 1 << 30, max_age: Duration::from_secs(3600), memory_limit: 64 << 10 };
        let mut p = Pipeline::new(schema, limits, 1000);
        let shard = ShardId::new("s");
        let mut sealed = 0;
        for i in 0..20_000u64 {
            let line = format!("{{\"id\":\"r{i}\",\"k\":\"p{}\"}}", i % 1000);
            p.push(&shard, Position::offset(i), 0, line.as_bytes());
            sealed += p.take_due(Instant::now()).iter().filter(|s| s.trigger == Trigger::Memory).count();
            assert!(p.buffered_bytes() <= 64 << 10, "buffered {} at {i}", p.buffered_bytes());
        }
        assert!(sealed > 0);
    }
}
