//! The router: one record → a row in the table buffer of its partition.
//!
//! Input: a record's bytes, position and arrival time, with its shard's
//! [`ShardLedger`] and the [`Buffers`]. Output: the record decoded (per the
//! schema, [`crate::decode`]) into the buffer of its partition (from its
//! event-time column or arrival time, and its key columns,
//! [`crate::partition`]), or a [`RecordError`] saying why it is not a row;
//! a record the destination already holds (a replay) is checked, counted
//! and skipped. Never fails otherwise; writes nothing else.
//!
//! Where a row goes, fastest first: the fused single-pass decoder writes
//! the record straight into a buffer — the previous row's partition's when
//! the two rows before went to one partition, else the one guessed from
//! the record's bytes ([`Peek`]) — and the row's partition values are then
//! checked against that buffer's: a wrong guess moves the row to a stage.
//! With no guess (or no open buffer for it) the record is decoded into the
//! stage and its row moved to its partition's buffer. Every record the
//! fused decoder declines (and every refusal) takes the general path: a
//! strict parse, then conversion into the buffer, which gives the error.
//! All paths give the same rows.

use crate::buffers::Buffers;
use crate::checkpoint::{DestKind, Shard, ShardLedger};
use crate::decode::peek::{Guess, Peek};
use crate::decode::{Columns, Decoder, RecordError, Row};
use crate::ids::Position;
use crate::metrics::Stats;
use crate::partition::{render_cached, TimeCache};
use crate::schema::{PartitionSpec, TableSchema, TimeSource};
use crate::timefmt::PLAUSIBLE;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

/// Rows in a row of one partition before [`Router::run`] takes records in
/// runs: with partitions interleaved, runs would mostly stop at their
/// first record, which `route` then decodes again.
const RUN_AFTER: u32 = 16;

/// Rows the stage keeps before it is cleared: clearing walks every column
/// buffer, so it is done once per this many staged rows, not per row.
pub(crate) const STAGE_ROWS: usize = 256;

pub struct Router {
    decoder: Decoder,
    schema: Arc<TableSchema>,
    /// Guesses a record's partition from its bytes, when the schema's
    /// partition columns allow it.
    peek: Option<Peek>,
    /// Partition prefix of the last row appended (or being appended).
    prefix: String,
    /// Partition prefix of a decoded row, to compare with a buffer's.
    guess: String,
    /// The guessed partition prefix of the record being routed.
    target: String,
    /// The last two rows went to one partition: try the next in place.
    fuse_next: bool,
    /// Rows in a row that went to one partition (see [`Router::run`]).
    same_partition: u32,
    /// The one row the fused decoder wrote, until it moves to its buffer.
    stage: Option<Columns>,
    /// Rows of a replay that are already durable are converted here, and
    /// thrown away, only to learn whether they were rows or error lines.
    scratch: Option<Columns>,
    time_cache: TimeCache,
    times: TimeWatch,
    /// With routing, the routes its decoder's gate checks rows against.
    routes: Option<Arc<crate::lanes::Routes>>,
    /// The decoder has a route gate.
    gated: bool,
}

/// Event times of the rows that land, outside [`PLAUSIBLE`], per top-level
/// timestamp column that accepts epoch numbers: an `epoch_millis` column
/// given epoch seconds lands in January 1970 without an error. Counted,
/// with the last such value, for a metric and a warning; the values are
/// kept (they are valid input). Counts carry across schema reloads.
#[derive(Default)]
struct TimeWatch {
    /// (column index, index into `counts`).
    cols: Vec<(usize, usize)>,
    /// (column name, values outside, the last of them).
    counts: Vec<(String, u64, i64)>,
}

impl TimeWatch {
    fn new(schema: &TableSchema, mut counts: Vec<(String, u64, i64)>) -> TimeWatch {
        let mut cols = Vec::new();
        for (i, c) in schema.columns.iter().enumerate() {
            if c.ty != crate::schema::ColType::Timestamp || !c.formats.iter().any(|f| f.is_epoch()) {
                continue;
            }
            let at = counts.iter().position(|(n, ..)| *n == c.name).unwrap_or_else(|| {
                counts.push((c.name.clone(), 0, 0));
                counts.len() - 1
            });
            cols.push((i, at));
        }
        TimeWatch { cols, counts }
    }

    /// Checks the event times of row `row` of `cols`, which just landed.
    #[inline]
    fn row(&mut self, cols: &Columns, row: usize) {
        for &(i, at) in &self.cols {
            if let Some(v) = cols.timestamp_at(i, row).filter(|v| !PLAUSIBLE.contains(v)) {
                let c = &mut self.counts[at];
                (c.1, c.2) = (c.1 + 1, v);
            }
        }
    }
}

/// What [`Router::fused_in_place`] did with a record.
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

impl Router {
    pub fn new(schema: Arc<TableSchema>, max_record_bytes: usize) -> Router {
        Router {
            decoder: Decoder::new(schema.clone(), max_record_bytes),
            peek: Peek::new(&schema),
            times: TimeWatch::new(&schema, Vec::new()),
            schema,
            prefix: String::new(),
            guess: String::new(),
            target: String::new(),
            fuse_next: true,
            same_partition: 0,
            stage: None,
            scratch: None,
            time_cache: TimeCache::default(),
            routes: None,
            gated: false,
        }
    }

    /// With routing: rows decoded on a guessed route are confirmed by the
    /// route column of this table ([`Decoder::set_gate`]), when it has one
    /// whose text is canonical.
    pub fn set_routes(&mut self, routes: Arc<crate::lanes::Routes>) {
        self.routes = Some(routes);
        self.apply_gate();
    }

    fn apply_gate(&mut self) {
        let Some(routes) = &self.routes else { return };
        use crate::schema::ColType;
        let col = self.schema.columns.iter().position(|c| {
            c.name == routes.column
                && c.source.len() == 1
                && matches!(c.ty, ColType::String | ColType::Varchar(_) | ColType::TinyInt | ColType::SmallInt | ColType::Int | ColType::BigInt | ColType::Boolean)
        });
        self.gated = col.is_some();
        if let Some(col) = col {
            self.decoder.set_gate(col, routes.clone());
        }
    }

    /// Whether rows can be confirmed against a guessed route.
    pub fn has_gate(&self) -> bool {
        self.gated
    }

    /// The tables the next records were sent to on a guess, for the gate
    /// to confirm (None: the route is known).
    #[inline]
    pub fn expect_targets(&mut self, targets: Option<&[usize]>) {
        self.decoder.expect_targets(targets);
    }

    pub fn schema(&self) -> &Arc<TableSchema> {
        &self.schema
    }

    /// Routes by a new schema from the next record on.
    pub fn set_schema(&mut self, schema: Arc<TableSchema>, max_record_bytes: usize) {
        self.decoder = Decoder::new(schema.clone(), max_record_bytes);
        self.peek = Peek::new(&schema);
        self.stage = None;
        self.scratch = None;
        self.time_cache = TimeCache::default();
        self.times = TimeWatch::new(&schema, std::mem::take(&mut self.times.counts));
        self.schema = schema;
        self.apply_gate();
    }

    /// Per top-level timestamp column taking epoch numbers: (name, stored
    /// values before 2000 or after 2100, the last of them).
    pub fn implausible_times(&self) -> &[(String, u64, i64)] {
        &self.times.counts
    }

    /// Turns the fused decoder off or on, and the guess, to compare paths.
    #[cfg(test)]
    pub(crate) fn set_paths(&mut self, fused: bool, guess: bool) {
        self.decoder.set_fused(fused);
        assert!(self.peek.is_some() || !guess, "the partition can be guessed");
        if !guess {
            self.peek = None;
        }
    }

    /// Routes one record into a table buffer, or says why it is no row.
    #[inline]
    pub fn route(&mut self, led: &mut ShardLedger, bufs: &mut Buffers, stats: &mut Stats, shard: Shard, pos: &Position, arrival_ms: i64, data: &[u8]) -> Result<(), RecordError> {
        let landed = self.route_row(led, bufs, stats, shard, pos, arrival_ms, data)?;
        self.same_partition = self.same_partition.saturating_add(u32::from(landed));
        Ok(())
    }

    /// Ok(true) when the fused decoder wrote the row in place.
    #[allow(clippy::too_many_arguments)]
    fn route_row(&mut self, led: &mut ShardLedger, bufs: &mut Buffers, stats: &mut Stats, shard: Shard, pos: &Position, arrival_ms: i64, data: &[u8]) -> Result<bool, RecordError> {
        let staged = self.decoder.has_fused()
            && match self.fuse_next {
                true => match self.fused_in_place(led, bufs, stats, shard, pos, arrival_ms, data, None) {
                    InPlace::Landed => return Ok(true),
                    InPlace::Staged => true,
                    InPlace::Declined | InPlace::NoBuffer => false,
                },
                false => match self.guess_partition(arrival_ms, data) {
                    Some(g) => match self.fused_in_place(led, bufs, stats, shard, pos, arrival_ms, data, Some(&g)) {
                        InPlace::Landed => {
                            // as below: this row's partition against the previous row's
                            self.fuse_next = self.target == self.prefix;
                            if !self.fuse_next {
                                self.same_partition = 0;
                            }
                            std::mem::swap(&mut self.target, &mut self.prefix);
                            return Ok(true);
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
        let prefix = &self.prefix;
        bufs.close_if_due(led, shard.slot, DestKind::Table, prefix);
        if led.durable(DestKind::Table, prefix, pos) {
            // its file is written: it was a row there, unless it fails
            // conversion, and then its error line may not be (the error
            // destination has its own durable position)
            stats.skipped_replay += 1;
            let scratch = self.scratch.get_or_insert_with(|| Columns::new(&self.schema));
            let converted = row.append_to(scratch);
            scratch.clear();
            return converted.map(|()| false);
        }
        let mut buf = bufs.open_table(shard, prefix, pos, &self.schema);
        match row.append_to(buf.cols()) {
            Ok(()) => {
                let cols = buf.cols();
                self.times.row(cols, cols.rows - 1);
                let took = buf.row_added(led, shard.slot, prefix, pos, data.len(), &self.schema);
                count_row(stats, took);
                Ok(false)
            }
            Err(e) => {
                bufs.discard_empty_table(shard.slot, prefix);
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
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn fused_in_place(&mut self, led: &ShardLedger, bufs: &mut Buffers, stats: &mut Stats, shard: Shard, pos: &Position, arrival_ms: i64, data: &[u8], guessed: Option<&Guess>) -> InPlace {
        let target = if guessed.is_some() { &self.target } else { &self.prefix };
        if led.durable(DestKind::Table, target, pos) {
            // a replay of rows already written, which the general path
            // skips (records come in position order, so an open buffer
            // never precedes one; this is a guard)
            return InPlace::Declined;
        }
        let Some(mut buf) = bufs.table(shard.slot, target) else { return InPlace::NoBuffer };
        let cols = buf.cols();
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
        self.times.row(cols, row);
        let took = buf.row_added(led, shard.slot, target, pos, data.len(), &self.schema);
        count_row(stats, took);
        stats.fused_in_place += 1;
        InPlace::Landed
    }

    /// The partition values [`Peek`] guesses for `data`, with their prefix
    /// rendered into `target`.
    fn guess_partition<'a>(&mut self, arrival_ms: i64, data: &'a [u8]) -> Option<Guess<'a>> {
        let g = self.peek.as_mut()?.guess(data)?;
        let spec = &self.schema.partition;
        render_cached(spec, spec.time_or(g.time, arrival_ms), &g.keys[..spec.keys.len()], &mut self.target, &mut self.time_cache);
        Some(g)
    }

    /// Routes records of one shard, in order, for as long as each lands in
    /// place in the previous row's buffer: what [`Router::route`] does with
    /// each, with the buffer looked up once for the run instead of per
    /// record, and each record's read position noted in `led`. Returns how
    /// many it took. Takes none unless the last [`RUN_AFTER`] rows went to
    /// one partition, nor while the shard replays flush intents or a buffer
    /// is due. A run stops after a record that makes a buffer due or the
    /// memory exceed its limit, and before a record already written to the
    /// partition (a replay after a restart), one of another partition
    /// (which `route` decodes again: at most once per run) or one the fused
    /// decoder declines, or that `accept` refuses (with routing: a record
    /// whose route guess sends it to another table).
    #[allow(clippy::too_many_arguments)]
    pub fn run<'d, R>(
        &mut self,
        led: &mut ShardLedger,
        bufs: &mut Buffers,
        stats: &mut Stats,
        shard: Shard,
        records: &'d [R],
        record: impl Fn(&'d R) -> (Position, i64, &'d [u8]),
        mut accept: impl FnMut(&[u8]) -> bool,
    ) -> usize {
        if self.same_partition < RUN_AFTER || !self.fuse_next || bufs.has_due() || led.replaying() {
            return 0;
        }
        let Router { decoder, schema, guess, prefix, time_cache, same_partition, times, .. } = self;
        // rows up to here are in a written file: `route` skips their replay
        let written_to = led.durable_to(DestKind::Table, prefix).cloned();
        let Some(mut buf) = bufs.table(shard.slot, prefix) else { return 0 };
        // a partition of the arrival time alone is the same for every record
        // of the run that arrived when the first did
        let by_arrival = matches!(schema.partition.time, TimeSource::Arrival) && schema.partition.keys.is_empty();
        let mut rendered_arrival = None;
        let mut taken = 0;
        for r in records {
            let (pos, arrival_ms, data) = record(r);
            if written_to.as_ref().is_some_and(|d| &pos <= d) || !accept(data) {
                break;
            }
            let cols = buf.cols();
            let row = cols.rows;
            if !decoder.decode_fused(data, cols) {
                break;
            }
            if !by_arrival || rendered_arrival != Some(arrival_ms) {
                render_partition(&Decoded::Staged(cols, row), &schema.partition, arrival_ms, guess, time_cache).expect("a fused row has its partition values");
                if guess != prefix {
                    cols.truncate_rows(row);
                    break;
                }
                rendered_arrival = Some(arrival_ms);
            }
            times.row(cols, row);
            stats.records_in += 1;
            stats.bytes_in += data.len() as u64;
            let took = buf.row_added(led, shard.slot, prefix, &pos, data.len(), schema);
            count_row(stats, took);
            led.read(pos, true, false);
            stats.fused_in_place += 1;
            taken += 1;
            if buf.must_stop() {
                break;
            }
        }
        *same_partition = same_partition.saturating_add(taken as u32);
        taken
    }
}

/// Counts a row added to a table buffer, and the time its encoding took.
#[inline]
fn count_row(stats: &mut Stats, encode_time: Option<Duration>) {
    stats.rows += 1;
    if let Some(t) = encode_time {
        stats.encode_time += t;
    }
}

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
        TimeSource::Column(i) => spec.time_or(row.timestamp(i)?, arrival_ms),
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
