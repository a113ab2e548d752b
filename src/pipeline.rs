//! The record path, stage by stage: one record in, its destinations out.
//!
//! Input: records of one or more shards (position, arrival time, bytes), in
//! position order per shard, from the ingestion loop ([`crate::ingest`]).
//! Each record goes to exactly one of: a row in the table buffer of its
//! partition ([`Router`]), or a line in the error buffer of its arrival
//! hour; and, when a raw backup is configured, to a line in the raw buffer
//! of its arrival hour ([`Buffers`]). Its shard's [`Ledger`] notes it read.
//! Output: [`Sealed`] buffers for the commit stage ([`crate::commit`]),
//! and per shard a [`ShardCheckpoint`] once sealed buffers are durable.
//! Never fails: a bad record becomes an error line.

use crate::buffers::{Buffers, Limits, Sealed};
use crate::checkpoint::{DestKind, FlushIntent, Ledger, Shard, Resume, ShardCheckpoint, ShardLedger, ShardSlot};
use crate::ids::{Position, ShardId};
use crate::metrics::Stats;
use crate::partition::hour_prefix;
use crate::decode::peek::RoutePeek;
use crate::lanes::{RouteReader, Routes};
use crate::route::Router;
use crate::schema::TableSchema;
use crate::decode::{ErrorCode, RecordError};
use crate::write::{error_line, wrapped_raw_line, ParquetOptions, TableRef};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How records find their tables: a guess from the bytes ([`RoutePeek`]),
/// confirmed by the first target table's decoded row, else the route read
/// exactly ([`RouteReader`]).
struct Routing {
    routes: Arc<Routes>,
    reader: RouteReader,
    peek: RoutePeek,
}

/// A table the pipeline writes: its router (schema and decoder), how its
/// error lines name it, and the marker its prefixes carry.
struct Lane {
    router: Router,
    table_ref: TableRef,
    /// Its index in [`crate::lanes`] terms (0: unrouted).
    index: usize,
    marker: String,
}

pub struct Pipeline {
    /// One lane, or with routing one per routed table.
    lanes: Vec<Lane>,
    /// With routing: the routes, the exact reader of the route column and
    /// the guess from the bytes.
    routing: Option<Routing>,
    /// With routing, the lane the last record went to alone (runs go on there).
    last_lane: Option<usize>,
    /// With routing, how error lines of the shared error prefix name the table.
    shared_ref: TableRef,
    buffers: Buffers,
    ledger: Ledger,
    stats: Stats,
    raw_backup: bool,
    max_record_bytes: usize,
    /// The shard of the last record pushed (cleared when a shard is
    /// dropped): records of it may be pushed in runs.
    known_shard: Option<ShardSlot>,
    /// The arrival hour of the last record and its raw/error prefix.
    hour_cache: (i64, String),
    /// Shards restored from a table's checkpoint ahead of their source's:
    /// records the source hands again up to this point are skipped.
    skips: Vec<(ShardId, Resume)>,
}

impl Pipeline {
    pub fn new(schema: Arc<TableSchema>, limits: Limits, max_record_bytes: usize) -> Pipeline {
        let table_ref = TableRef { database: None, table: schema.table.clone() };
        Pipeline {
            lanes: vec![Lane { router: Router::new(schema, max_record_bytes), table_ref: table_ref.clone(), index: 0, marker: String::new() }],
            routing: None,
            last_lane: None,
            shared_ref: table_ref,
            buffers: Buffers::new(limits, ParquetOptions::default()),
            ledger: Ledger::default(),
            stats: Stats::default(),
            raw_backup: false,
            max_record_bytes,
            known_shard: None,
            hour_cache: (i64::MIN, String::new()),
            skips: Vec::new(),
        }
    }

    pub fn with_raw_backup(mut self, on: bool) -> Self {
        self.raw_backup = on;
        self
    }

    /// How table buffers encode their Parquet files: row group size, and
    /// how much input is encoded at a time.
    pub fn with_parquet(mut self, opts: ParquetOptions) -> Self {
        self.buffers.set_parquet(opts);
        self
    }

    /// See [`crate::buffers::Buffers::set_line_cap`].
    pub fn with_line_cap(mut self, bytes: usize) -> Self {
        self.buffers.set_line_cap(bytes);
        self
    }

    pub fn with_table_ref(mut self, t: TableRef) -> Self {
        self.shared_ref = TableRef { database: t.database.clone(), table: String::new() };
        self.lanes[0].table_ref = t;
        self
    }

    /// Routes records to several tables: `tables` (schema and name for
    /// error lines) in the order of `routes.values`, as lanes 1, 2, …
    /// Error lines of records no table takes go to lane 0's errors.
    /// `routes` are checked against every schema ([`Routes::check_schema`]).
    pub fn with_routes(mut self, routes: Routes, tables: Vec<(Arc<TableSchema>, TableRef)>) -> Self {
        assert_eq!(routes.values.len(), tables.len(), "one route per table");
        let reader = RouteReader::new(&routes, &tables[0].0, self.max_record_bytes);
        let source = tables[0].0.columns.iter().find(|c| c.name == routes.column).map_or(routes.column.clone(), |c| c.source.join("."));
        let routes = Arc::new(routes);
        self.lanes = tables
            .into_iter()
            .enumerate()
            .map(|(i, (schema, table_ref))| {
                let index = i + 1;
                let schema = Arc::new(crate::lanes::marked((*schema).clone(), index));
                let mut router = Router::new(schema, self.max_record_bytes);
                router.set_routes(routes.clone());
                Lane { router, table_ref, index, marker: crate::lanes::marker(index) }
            })
            .collect();
        self.routing = Some(Routing { routes, reader, peek: RoutePeek::new(&source) });
        self
    }

    /// The first table's schema (the only one without routing).
    pub fn schema(&self) -> &Arc<TableSchema> {
        self.lanes[0].router.schema()
    }

    /// The schema of lane `index` (its partition layout carries the lane's
    /// marker; see [`crate::lanes`]). With routing, lane 0 (the shared error
    /// prefix) answers with the first table's.
    pub fn lane_schema(&self, index: usize) -> &Arc<TableSchema> {
        self.lanes.iter().find(|l| l.index == index).unwrap_or(&self.lanes[0]).router.schema()
    }

    /// The routes in use (None without routing).
    pub fn routes(&self) -> Option<&Routes> {
        self.routing.as_ref().map(|r| &*r.routes)
    }

    /// Routes the next records by `routes` (the same tables). Call with no
    /// open buffer, as for a schema change: a replay never crosses it.
    pub fn set_routes(&mut self, routes: Routes) {
        debug_assert!(self.buffers.is_empty(), "open buffers under the old routes");
        let Some(r) = &mut self.routing else { return };
        let first = self.lanes[0].router.schema().clone();
        let source = first.columns.iter().find(|c| c.name == routes.column).map_or(routes.column.clone(), |c| c.source.join("."));
        r.reader = RouteReader::new(&routes, &first, self.max_record_bytes);
        r.peek = RoutePeek::new(&source);
        r.routes = Arc::new(routes);
        for lane in &mut self.lanes {
            lane.router.set_routes(r.routes.clone());
        }
        self.last_lane = None;
    }

    /// Why `schema` cannot be a routed table's (see [`Routes::check_schema`]).
    pub fn check_route(&self, schema: &TableSchema) -> Result<(), String> {
        match &self.routing {
            Some(r) => r.routes.check_schema(schema),
            None => Ok(()),
        }
    }

    /// The lane indexes that write tables (`[0]` without routing).
    pub fn table_lanes(&self) -> Vec<usize> {
        self.lanes.iter().map(|l| l.index).collect()
    }

    /// The record size limit: longer records are cut to it and refused.
    pub fn max_record_bytes(&self) -> usize {
        self.max_record_bytes
    }

    /// Switches to a new schema. Call only with no open buffer (after
    /// [`Pipeline::take_all`] and writing): buffers hold columns of the old one.
    pub fn set_schema(&mut self, schema: Arc<TableSchema>) {
        self.set_lane_schema(0, schema);
    }

    /// As [`Pipeline::set_schema`], for lane `index`; `schema` as the file
    /// says it (the lane's marker is added here).
    pub fn set_lane_schema(&mut self, index: usize, schema: Arc<TableSchema>) {
        debug_assert!(self.buffers.is_empty(), "open buffers under the old schema");
        let max = self.max_record_bytes;
        let Some(lane) = self.lanes.iter_mut().find(|l| l.index == index) else { return };
        let schema = if index == 0 { schema } else { Arc::new(crate::lanes::marked((*schema).clone(), index)) };
        lane.table_ref.table = schema.table.clone();
        lane.router.set_schema(schema.clone(), max);
        if let Some(r) = &mut self.routing {
            if index == 1 {
                r.reader = RouteReader::new(&r.routes, &schema, max);
            }
        }
    }

    /// Routes one record: a row or an error line, and a raw line when
    /// backups are on. Never fails. A record over the record size limit is
    /// cut to it ([`Pipeline::push_oversized`]).
    pub fn push(&mut self, shard: &ShardId, pos: Position, arrival_ms: i64, data: &[u8]) {
        if data.len() > self.max_record_bytes {
            return self.push_oversized(shard, pos, arrival_ms, &data[..self.max_record_bytes], data.len() as u64);
        }
        let slot = self.arrive(shard, arrival_ms, data.len() as u64);
        let shard = Shard { id: shard, slot };
        let led = self.ledger.at(slot);
        let hour = &self.hour_cache.1;
        if self.raw_backup {
            push_raw(&mut self.buffers, led, shard, hour, &pos, data);
        }
        let rec = Rec { shard, pos: &pos, arrival_ms, data };
        let (object, refused) = match &mut self.routing {
            None => {
                let lane = &mut self.lanes[0];
                let routed = lane.router.route(led, &mut self.buffers, &mut self.stats, shard, &pos, arrival_ms, data);
                settle(routed, &mut self.buffers, &mut self.stats, led, &rec, ("", hour), &lane.table_ref)
            }
            Some(Routing { routes, reader, peek }) => {
                // a guess from the bytes when the first table can confirm it
                let mut plan = peek.guess(data).map(|v| routes.targets(v)).filter(|t| t.first().is_some_and(|&i| self.lanes[i].router.has_gate()));
                self.last_lane = None;
                'route: loop {
                    let guessed = plan.is_some();
                    // the exact route value, once read
                    let mut exact = None;
                    let targets = match plan.take() {
                        Some(t) => t,
                        None => match reader.value(data) {
                            // the route cannot be read: the shared error prefix
                            Err(e) => break settle(Err(e), &mut self.buffers, &mut self.stats, led, &rec, ("", hour), &self.shared_ref),
                            Ok(v) => routes.targets(exact.insert(v).as_deref()),
                        },
                    };
                    if targets.is_empty() {
                        // only an exact read finds no table: a guess is kept only when its first table has a gate
                        let shown = exact.flatten().map_or("null".to_string(), |v| format!("{v:?}"));
                        let e = RecordError { code: ErrorCode::NoRoute, message: format!("no table takes {} = {shown}", routes.column) };
                        break settle(Err(e), &mut self.buffers, &mut self.stats, led, &rec, ("", hour), &self.shared_ref);
                    }
                    let (mut object, mut refused, mut confirmed) = (true, false, !guessed);
                    for &i in &targets {
                        let lane = &mut self.lanes[i];
                        lane.router.expect_targets(if confirmed { None } else { Some(&targets) });
                        let routed = lane.router.route(led, &mut self.buffers, &mut self.stats, shard, &pos, arrival_ms, data);
                        if !confirmed {
                            confirmed = match &routed {
                                Err(e) if e.code == ErrorCode::Misrouted => false,
                                Ok(()) => true,
                                Err(e) if matches!(e.code, ErrorCode::Filtered | ErrorCode::ValidationFailed) => true,
                                // decoding stopped before the gate: read the route exactly
                                Err(_) => reader.value(data).is_ok_and(|v| routes.targets_are(v.as_deref(), &targets)),
                            };
                            if !confirmed {
                                // nothing of it was kept: route it again, exactly
                                continue 'route;
                            }
                        }
                        let (o, r) = settle(routed, &mut self.buffers, &mut self.stats, led, &rec, (&lane.marker, hour), &lane.table_ref);
                        (object, refused) = (object && o, refused || r);
                    }
                    if let [i] = targets[..] {
                        self.last_lane = Some(i);
                    }
                    break (object, refused);
                }
            }
        };
        led.read(pos, object, refused);
        self.buffers.shed_if_over();
    }

    /// Routes a record longer than the record size limit, of which `head`
    /// (its start; only its first `max_record_size` bytes are kept) was
    /// read and `len` is the full
    /// length: an error line whose `rawData` is `head`, marked truncated,
    /// and, with backups on, a raw line marked the same way
    /// ([`wrapped_raw_line`]). Never fails.
    pub fn push_oversized(&mut self, shard: &ShardId, pos: Position, arrival_ms: i64, head: &[u8], len: u64) {
        let head = &head[..head.len().min(self.max_record_bytes)];
        let slot = self.arrive(shard, arrival_ms, len);
        let shard = Shard { id: shard, slot };
        let led = self.ledger.at(slot);
        let hour = &self.hour_cache.1;
        let in_len = head.len();
        if self.raw_backup {
            let line = wrapped_raw_line(head, len);
            self.buffers.push_line(led, shard, DestKind::Raw, hour, &pos, in_len, |buf| {
                buf.extend_from_slice(&line);
                buf.push(b'\n');
            });
        }
        let e = RecordError {
            code: ErrorCode::RecordTooLarge,
            message: format!("record is {len} bytes, over the {}-byte limit; rawData holds its first {} bytes", self.max_record_bytes, head.len()),
        };
        *self.stats.errors.entry(e.code.as_str()).or_default() += 1;
        let table_ref = if self.routing.is_some() { &self.shared_ref } else { &self.lanes[0].table_ref };
        let line = error_line(&e, shard.id, &pos, arrival_ms, head, Some(len), table_ref);
        self.buffers.push_line(led, shard, DestKind::Errors, hour, &pos, in_len, |buf| {
            buf.extend_from_slice(&line);
            buf.push(b'\n');
        });
        led.read(pos, false, true);
        self.buffers.shed_if_over();
    }

    /// Counts a record of `len` bytes in and opens its shard; the arrival
    /// hour's raw/error prefix is ready in `hour_cache`.
    #[inline]
    fn arrive(&mut self, shard: &ShardId, arrival_ms: i64, len: u64) -> ShardSlot {
        self.stats.records_in += 1;
        self.stats.bytes_in += len;
        let slot = self.ledger.open(shard);
        self.known_shard = Some(slot);
        if self.hour_cache.0 != arrival_ms.div_euclid(3_600_000) {
            self.hour_cache = (arrival_ms.div_euclid(3_600_000), hour_prefix(arrival_ms));
        }
        slot
    }

    /// Pushes records of one shard, in order, for as long as each lands in
    /// place in the previous row's buffer ([`Router::run`]); returns how
    /// many it took. The caller pushes the next with [`Pipeline::push`],
    /// which decides where it goes; with raw backups on, the taken records'
    /// raw lines follow. Takes none when the last record pushed was of
    /// another shard.
    pub fn push_run<'d, R>(&mut self, shard: &ShardId, records: &'d [R], record: impl Fn(&'d R) -> (Position, i64, &'d [u8])) -> usize {
        // with routing, runs go on in the table the last record went to
        // alone, each row confirmed by its route column
        let lane = match self.routing {
            None => 0,
            Some(_) => match self.last_lane.filter(|&i| self.lanes[i].router.has_gate()) {
                Some(i) => {
                    self.lanes[i].router.expect_targets(Some(&[i]));
                    i
                }
                None => return 0,
            },
        };
        let Some(slot) = self.ledger.find(shard).filter(|s| self.known_shard == Some(*s)) else { return 0 };
        let sh = Shard { id: shard, slot };
        let taken = match &mut self.routing {
            None => self.lanes[lane].router.run(self.ledger.at(slot), &mut self.buffers, &mut self.stats, sh, records, &record, |_| true),
            // a record the bytes send elsewhere ends the run before it is decoded
            Some(Routing { routes, peek, .. }) => {
                let accept = |d: &[u8]| peek.guess(d).is_some_and(|v| routes.targets_are(v, &[lane]));
                self.lanes[lane].router.run(self.ledger.at(slot), &mut self.buffers, &mut self.stats, sh, records, &record, accept)
            }
        };
        if self.raw_backup {
            // each taken record's raw line, in order: the raw buffer's
            // content and seals are those of pushing them one by one
            for r in &records[..taken] {
                let (pos, arrival_ms, data) = record(r);
                if self.hour_cache.0 != arrival_ms.div_euclid(3_600_000) {
                    self.hour_cache = (arrival_ms.div_euclid(3_600_000), hour_prefix(arrival_ms));
                }
                push_raw(&mut self.buffers, self.ledger.at(slot), sh, &self.hour_cache.1, &pos, data);
            }
        }
        self.buffers.shed_if_over();
        taken
    }

    /// Loads a shard's durable progress before its records are replayed.
    pub fn restore(&mut self, shard: &ShardId, cp: &ShardCheckpoint) {
        self.restore_with_intent(shard, cp, &[]);
    }

    /// As [`Pipeline::restore`], and replays an interrupted flush: each
    /// destination in `intent` is sealed at the same last record as before.
    pub fn restore_with_intent(&mut self, shard: &ShardId, cp: &ShardCheckpoint, intent: &[FlushIntent]) {
        self.drop_shard(shard);
        self.ledger.restore(shard, cp, intent);
    }

    /// Skips the shard's records the source hands again up to `resume`
    /// (a restore from a table's checkpoint ahead of the source's).
    pub fn skip_until(&mut self, shard: &ShardId, resume: Resume) {
        self.skips.push((shard.clone(), resume));
    }

    /// How many of a batch's first records are to be skipped (see
    /// [`Pipeline::skip_until`]); past them, the shard reads as usual.
    pub fn skipped(&mut self, shard: &ShardId, positions: impl Iterator<Item = Position>) -> usize {
        let Some(i) = self.skips.iter().position(|(s, _)| s == shard) else { return 0 };
        let (mut n, mut passed) = (0, false);
        for pos in positions {
            if self.skips[i].1.ahead(&pos) {
                passed = true;
                break;
            }
            n += 1;
        }
        if passed {
            self.skips.swap_remove(i);
        }
        n
    }

    /// Buffers due now: full ones, memory-shed ones, and those older than max_age.
    pub fn take_due(&mut self, now: Instant) -> Vec<Sealed> {
        self.buffers.take_due(&mut self.ledger, now)
    }

    /// Every open buffer (shutdown, end of input).
    pub fn take_all(&mut self) -> Vec<Sealed> {
        self.buffers.take_all(&mut self.ledger)
    }

    /// Every open buffer of one shard (its end, or a checkpoint grown too large).
    pub fn take_shard(&mut self, shard: &ShardId) -> Vec<Sealed> {
        match self.ledger.find(shard) {
            Some(slot) => self.buffers.take_shard(&mut self.ledger, slot),
            None => Vec::new(),
        }
    }

    /// True when sealed buffers wait to be taken (the caller should write soon).
    #[inline]
    pub fn has_due(&self) -> bool {
        self.buffers.has_due()
    }

    /// Records that a sealed buffer is durable at its destination.
    pub fn mark_durable(&mut self, s: &Sealed) {
        self.ledger.mark_durable(&s.shard, s.kind, &s.prefix, &s.last);
    }

    /// Replay boundaries of an interrupted flush not yet reproduced, which
    /// a flush's intent must carry too ([`Ledger::pending_replay`]).
    pub fn pending_replay(&self, shard: &ShardId) -> Vec<FlushIntent> {
        self.ledger.pending_replay(shard)
    }

    /// The shard's checkpoint given what is durable now.
    pub fn checkpoint(&mut self, shard: &ShardId) -> ShardCheckpoint {
        let oldest = self.ledger.find(shard).and_then(|slot| self.buffers.oldest_first(slot));
        self.ledger.checkpoint(shard, oldest)
    }

    pub fn shards(&self) -> impl Iterator<Item = &ShardId> {
        self.ledger.shards()
    }

    /// Whether the shard is read here (false once dropped).
    pub fn has_shard(&self, shard: &ShardId) -> bool {
        self.ledger.has(shard)
    }

    /// What became of the shard's records since it was opened here; None
    /// when it is not read here.
    pub fn tally(&self, shard: &ShardId) -> Option<crate::checkpoint::Tally> {
        self.ledger.tally(shard)
    }

    /// Entries in the shard's per-destination progress map.
    pub fn done_len(&self, shard: &ShardId) -> usize {
        self.ledger.done_len(shard)
    }

    /// Forgets a shard whose lease is gone: its open buffers are discarded
    /// unwritten (the new owner replays them from the last checkpoint).
    pub fn drop_shard(&mut self, shard: &ShardId) {
        self.skips.retain(|(s, _)| s != shard);
        let Some(slot) = self.ledger.drop_shard(shard) else { return };
        if self.known_shard == Some(slot) {
            self.known_shard = None;
        }
        self.buffers.drop_shard(slot);
    }

    /// How long the oldest open buffer has been open.
    pub fn oldest_open(&self, now: Instant) -> Option<Duration> {
        self.buffers.oldest_open(now)
    }

    pub fn add_encode_time(&mut self, d: Duration) {
        self.stats.encode_time += d;
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Per timestamp column taking epoch numbers: (name, stored values
    /// before 2000 or after 2100, the last of them).
    pub fn implausible_times(&self) -> &[(String, u64, i64)] {
        self.lanes[0].router.implausible_times()
    }

    /// Bytes held by open buffers.
    pub fn buffered_bytes(&self) -> usize {
        self.buffers.mem_total()
    }
}

/// The record being pushed, for its error line.
struct Rec<'a> {
    shard: Shard<'a>,
    pos: &'a Position,
    arrival_ms: i64,
    data: &'a [u8],
}

/// What a record's routing into one table came to: a row (nothing more
/// to do), a filter's drop (counted), or an error line under the lane's
/// `(marker, arrival hour)` prefix. Returns (a JSON object, refused).
fn settle(routed: Result<(), RecordError>, buffers: &mut Buffers, stats: &mut Stats, led: &mut ShardLedger, r: &Rec, (marker, hour): (&str, &str), table_ref: &TableRef) -> (bool, bool) {
    let object = routed.as_ref().err().is_none_or(|e| matches!(e.code, ErrorCode::MalformedData | ErrorCode::ValidationFailed | ErrorCode::Filtered | ErrorCode::NoRoute));
    match routed {
        Ok(()) => (object, false),
        // neither a row nor an error: dropped, counted per filter
        Err(e) if e.code == ErrorCode::Filtered => {
            *stats.filtered.entry(e.message).or_default() += 1;
            (object, false)
        }
        Err(e) => {
            *stats.errors.entry(e.code.as_str()).or_default() += 1;
            let line = error_line(&e, r.shard.id, r.pos, r.arrival_ms, r.data, None, table_ref);
            // a routed lane's prefix is built only for its error lines
            let marked;
            let prefix = if marker.is_empty() {
                hour
            } else {
                marked = format!("{marker}{hour}");
                &marked
            };
            buffers.push_line(led, r.shard, DestKind::Errors, prefix, r.pos, r.data.len(), |buf| {
                buf.extend_from_slice(&line);
                buf.push(b'\n');
            });
            (object, true)
        }
    }
}

/// A record's line in the raw backup: the record itself when it is one
/// line as it stands, else wrapped ([`wrapped_raw_line`]).
#[inline]
fn push_raw(buffers: &mut Buffers, led: &mut ShardLedger, shard: Shard, hour: &str, pos: &Position, data: &[u8]) {
    buffers.push_line(led, shard, DestKind::Raw, hour, pos, data.len(), |buf| {
        let as_line = memchr::memchr(b'\n', data).is_none() && data.last() != Some(&b'\r') && !data.iter().all(u8::is_ascii_whitespace);
        match as_line {
            true => buf.extend_from_slice(data),
            false => buf.extend_from_slice(&wrapped_raw_line(data, data.len() as u64)),
        }
        buf.push(b'\n');
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffers::{SealedBody, Trigger};
    use crate::checkpoint::{done_key, Resume};
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

    /// A name for the object of a sealed buffer, unique as its key is.
    fn object_name(s: &Sealed) -> String {
        format!("{}{}-{}", s.prefix, s.shard, s.first.key_part())
    }

    fn store(lake: &mut Lake, s: &mut Sealed) {
        let ids = match std::mem::take(&mut s.body) {
            SealedBody::Rows(r) => {
                let file = bytes::Bytes::from(r.finish(&TableSchema::parse("t.toml", SCHEMA).unwrap(), Vec::new()).unwrap().0);
                lake.insert(format!("Hash/{}", object_name(s)), vec![format!("{:x}", std::hash::BuildHasher::hash_one(&std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default(), &file[..]))]);
                let batches = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 1024).unwrap();
                batches.flat_map(|b| b.unwrap().column(0).as_string::<i32>().iter().map(|v| v.unwrap().to_string()).collect::<Vec<_>>()).collect()
            }
            SealedBody::Lines(l) => String::from_utf8(l.into_plain()).unwrap().lines().map(|x| x.to_string()).collect(),
        };
        lake.insert(format!("{:?}/{}", s.kind, object_name(s)), ids);
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

    /// Every line (row id, raw line) of the objects whose names start with `kind`, sorted.
    fn lines_of(lake: &Lake, kind: &str) -> Vec<String> {
        let mut all: Vec<String> = lake.iter().filter(|(k, _)| k.starts_with(kind)).flat_map(|(_, v)| v.iter().cloned()).collect();
        all.sort();
        all
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
        run_until_crash_with(&crash_pipeline, recs, saved, lake, crash_after, save_last)
    }

    fn crash_limits() -> Limits {
        Limits { max_records: 3, max_bytes: 1 << 20, max_age: Duration::from_secs(3600), memory_limit: 1 << 30 }
    }

    fn crash_pipeline() -> Pipeline {
        let schema = Arc::new(TableSchema::parse("t.toml", SCHEMA).unwrap());
        Pipeline::new(schema, crash_limits(), 1000).with_raw_backup(true).with_parquet(small_chunks())
    }

    fn run_until_crash_with(make: &dyn Fn() -> Pipeline, recs: &[(Position, Vec<u8>)], saved: &mut ShardCheckpoint, lake: &mut Lake, crash_after: usize, save_last: bool) -> bool {
        let shard = ShardId::new("s");
        let mut p = make();
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

    /// Routed to two tables (first match with a default, and fan-out with
    /// no default), crashing anywhere: each table holds exactly the good
    /// records routed to it once, its error prefix exactly its refused
    /// ones, and the shared error prefix the records no table takes and
    /// those whose route cannot be read; the raw backup every record once.
    #[test]
    fn routed_tables_hold_their_records_once_through_crashes() {
        use crate::lanes::{Mode, Routes};
        let recs = records(200);
        let kind = |i: usize| format!("p{}", (i / 4 * 13) % 5);
        let malformed = |i: usize| i % 7 == 3;
        for mode in [Mode::First, Mode::All] {
            let values = match mode {
                Mode::First => vec![Some(vec!["p0".to_string(), "p1".into()]), None],
                Mode::All => vec![Some(vec!["p0".to_string(), "p1".into()]), Some(vec!["p1".to_string(), "p2".into()])],
            };
            let routes = Routes { column: "k".into(), mode, values: values.clone() };
            let make = || {
                let tables = ["a", "b"].iter().map(|t| {
                    let schema = Arc::new(TableSchema::parse("t.toml", &SCHEMA.replace("table = \"t\"", &format!("table = \"{t}\""))).unwrap());
                    (schema, TableRef { database: None, table: t.to_string() })
                });
                crash_pipeline().with_routes(routes.clone(), tables.collect())
            };
            for seed in 0..30u64 {
                let (mut lake, mut saved, mut rng, mut finished, mut crashes) = (Lake::new(), ShardCheckpoint::default(), seed, false, 0);
                while !finished {
                    rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let crash_after = if crashes < 8 { 1 + (rng >> 33) as usize % 12 } else { usize::MAX };
                    finished = run_until_crash_with(&make, &recs, &mut saved, &mut lake, crash_after, (rng >> 20) & 1 == 0);
                    crashes += 1;
                }
                for lane in [1usize, 2] {
                    let takes = |i: usize| routes.targets(Some(&kind(i))).contains(&(lane - 1));
                    let marker = format!("Table/{}", crate::lanes::marker(lane));
                    let mut rows: Vec<String> = lake.iter().filter(|(k, _)| k.starts_with(&marker)).flat_map(|(_, v)| v.clone()).collect();
                    rows.sort();
                    let mut want: Vec<String> = (0..200).filter(|&i| !is_bad(i) && takes(i)).map(|i| format!("r{i}")).collect();
                    want.sort();
                    assert!(!want.is_empty());
                    assert_eq!(rows, want, "{mode:?} seed {seed}: table {lane}");
                    let errs: Lake = lake.iter().filter(|(k, _)| k.starts_with(&format!("Errors/{}", crate::lanes::marker(lane)))).map(|(k, v)| (k.clone(), v.clone())).collect();
                    let mut want: Vec<String> = (0..200).filter(|&i| is_bad(i) && !malformed(i) && takes(i)).map(|i| format!("r{i}")).collect();
                    want.sort();
                    assert_eq!(error_ids(&errs), want, "{mode:?} seed {seed}: errors of table {lane}");
                }
                let shared: Lake = lake.iter().filter(|(k, _)| k.starts_with("Errors/") && !k.starts_with("Errors/\u{1}")).map(|(k, v)| (k.clone(), v.clone())).collect();
                let mut want: Vec<String> = (0..200).filter(|&i| malformed(i) || (!is_bad(i) || i % 11 == 5) && routes.targets(Some(&kind(i))).is_empty()).map(|i| format!("r{i}")).collect();
                want.sort();
                assert_eq!(error_ids(&shared), want, "{mode:?} seed {seed}: shared errors");
                let raw: usize = lake.iter().filter(|(k, _)| k.starts_with("Raw/")).map(|(_, v)| v.len()).sum();
                assert_eq!(raw, 200, "{mode:?} seed {seed}: raw lines");
                assert_eq!(saved.resume, Resume::After(Position::offset(199 * 100)));
            }
        }
    }

    /// The route guessed from the bytes is confirmed by the decoded row:
    /// a record whose route key comes nested first, in another letter
    /// case, or twice (the last wins) lands where its decoded value sends
    /// it; records pushed in runs land where records pushed one by one do.
    #[test]
    fn guessed_routes_are_confirmed_by_the_decoded_row() {
        use crate::lanes::{Mode, Routes};
        let routes = Routes { column: "k".into(), mode: Mode::First, values: vec![Some(vec!["p0".to_string()]), None] };
        let schema = |t: &str| Arc::new(TableSchema::parse("t.toml", &SCHEMA.replace("table = \"t\"", &format!("table = \"{t}\""))).unwrap());
        let tricky = [
            (r#"{"id":"n1","q":{"k":"p0"},"k":"p3"}"#, 2),
            (r#"{"id":"n2","K":"p0"}"#, 1),
            (r#"{"id":"n3","k":"p0","k":"p3"}"#, 2),
            (r#"{"id":"n4","k":"p3","K":"p0"}"#, 1),
            (r#"{"id":"n5","k":"p\u0030"}"#, 1),
        ];
        // runs of one table, then the tricky ones between
        let mut recs: Vec<(u64, Vec<u8>)> = (0..400u64).map(|i| (i, format!("{{\"id\":\"r{i}\",\"k\":\"p{}\"}}", i / 50 % 2 * 3).into_bytes())).collect();
        for (j, (t, _)) in tricky.iter().enumerate() {
            recs.insert(60 + j * 70, (0, t.as_bytes().to_vec()));
        }
        for (n, r) in recs.iter_mut().enumerate() {
            r.0 = n as u64 * 100;
        }
        let shard = ShardId::new("s");
        let lake_of = |runs: bool| {
            let mut p = Pipeline::new(schema("a"), Limits::default(), 1000).with_routes(routes.clone(), vec![(schema("a"), TableRef { database: None, table: "a".into() }), (schema("b"), TableRef { database: None, table: "b".into() })]);
            let mut i = 0;
            while i < recs.len() {
                if runs {
                    i += p.push_run(&shard, &recs[i..], |(off, d)| (Position::offset(*off), 0, &d[..]));
                }
                if let Some((off, d)) = recs.get(i) {
                    p.push(&shard, Position::offset(*off), 0, d);
                    i += 1;
                }
            }
            let mut lake = Lake::new();
            for mut s in p.take_all() {
                store(&mut lake, &mut s);
            }
            (lake, p.stats().fused_in_place)
        };
        let (lake, _) = lake_of(false);
        for lane in [1usize, 2] {
            let mut rows = lines_of(&lake, &format!("Table/{}", crate::lanes::marker(lane)));
            let mut want: Vec<String> = (0..400).filter(|i| (i / 50 % 2 == 0) == (lane == 1)).map(|i| format!("r{i}")).collect();
            want.extend(tricky.iter().enumerate().filter(|(_, (_, l))| *l == lane).map(|(j, _)| format!("n{}", j + 1)));
            want.sort();
            rows.sort();
            assert_eq!(rows, want, "table {lane}");
        }
        assert!(lines_of(&lake, "Errors/").is_empty());
        let (in_runs, fused) = lake_of(true);
        assert!(fused > 300, "records go in runs: {fused}");
        assert_same_lake(&in_runs, &lake, "runs");
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
                    *intent = due.iter().map(Sealed::intent).collect();
                    intent.extend(p.pending_replay(&shard));
                    for s in due.iter_mut() {
                        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        if crashes < 10 && (rng >> 33) % 9 == 0 {
                            crashes += 1;
                            return false;
                        }
                        let key = format!("{:?}/{}", s.kind, object_name(s));
                        let before = lake.get(&key).cloned();
                        let hash_key = format!("Hash/{}", object_name(s));
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
            p.lanes[0].router.set_paths(fused, peek);
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
        assert!(rows - in_place_by_order > 3 * crate::route::STAGE_ROWS as u64, "staged {} of {rows}", rows - in_place_by_order);
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
    /// of another partition, at a bad record and at the memory limit; with
    /// a raw backup, the raw objects are the same too (under memory
    /// pressure, the same rows and raw lines).
    #[test]
    fn records_pushed_in_runs_seal_what_records_pushed_one_by_one_seal() {
        let keyed = Arc::new(TableSchema::parse("t.toml", SCHEMA).unwrap());
        let hourly = SCHEMA.replace("keys = [\"k\"]", "").replace("column = \"arrival\" }", "column = \"arrival\", granularity = \"hour\" }");
        let hourly = Arc::new(TableSchema::parse("t.toml", &hourly).unwrap());
        assert!(hourly.partition.keys.is_empty());
        // partitions change every 60 records (the key) or 250 (the arrival
        // hour); every 37th record is malformed
        let recs: Vec<(u64, Vec<u8>)> = (0..3000)
            .map(|i| {
                let line = if i % 37 == 36 { format!("{{\"id\":\"r{i}\" \"k\":1}}") } else { format!("{{\"id\":\"r{i}\",\"k\":\"p{}\"}}", i / 60 % 3) };
                (i as u64 * 100, line.into_bytes())
            })
            .collect();
        let shard = ShardId::new("s");
        let arrival = |i: usize| (i / 250) as i64 * 3_600_000;
        let run = |schema: &Arc<TableSchema>, runs: bool, memory_limit: usize, raw: bool| {
            let limits = Limits { max_records: 45, max_bytes: 1 << 20, max_age: Duration::from_secs(3600), memory_limit };
            let mut p = Pipeline::new(schema.clone(), limits, 1000).with_parquet(small_chunks()).with_raw_backup(raw);
            let mut lake = Lake::new();
            let (mut i, mut by_runs) = (0, 0);
            while i < recs.len() {
                if runs {
                    // a run may cross arrival hours (a Kinesis batch's records each have their own)
                    let n = p.push_run(&shard, &recs[i..], |(off, d)| (Position::offset(*off), arrival(*off as usize / 100), &d[..]));
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
            let read_to = p.ledger.read_to(&shard).cloned();
            for mut s in p.take_all() {
                store(&mut lake, &mut s);
                p.mark_durable(&s);
            }
            lake.retain(|k, _| !k.starts_with("Errors/"));
            let errors: u64 = p.stats().error_total();
            (lake, p.stats().rows, errors, by_runs, read_to)
        };
        let cases = [(&keyed, 1 << 30), (&keyed, 6 << 10), (&hourly, 1 << 30), (&hourly, 6 << 10)];
        for ((schema, memory_limit), raw) in cases.into_iter().flat_map(|c| [(c, false), (c, true)]) {
            let (one_by_one, rows, errors, _, read_to) = run(schema, false, memory_limit, raw);
            let (in_runs, run_rows, run_errors, by_runs, run_read_to) = run(schema, true, memory_limit, raw);
            assert!(one_by_one.keys().any(|k| k.contains("hr=11/")), "{:?}", one_by_one.keys());
            let raw_lines: usize = in_runs.iter().filter(|(k, _)| k.starts_with("Raw/")).map(|(_, v)| v.len()).sum();
            assert_eq!(raw_lines, if raw { 3000 } else { 0 }, "memory limit {memory_limit}: raw lines");
            assert_eq!((rows + errors, run_rows, run_errors), (3000, rows, errors), "memory limit {memory_limit}");
            assert!(by_runs > rows / 4, "memory limit {memory_limit}: {by_runs} of {rows} rows pushed in runs");
            assert_eq!(run_read_to, read_to);
            if raw && memory_limit < 1 << 20 {
                // a run counts its raw lines' memory after it: objects cut
                // for memory may end elsewhere, each record lands once
                for kind in ["Table/", "Raw/"] {
                    assert_eq!(lines_of(&in_runs, kind), lines_of(&one_by_one, kind), "memory limit {memory_limit}: {kind}");
                }
            } else {
                assert_same_lake(&in_runs, &one_by_one, &format!("memory limit {memory_limit}, raw {raw}"));
            }
        }
    }

    /// Epoch seconds in an `epoch_millis` column land in January 1970: they
    /// are kept, and counted per column (rows that land, on every path:
    /// in runs, in place, staged, general) with the last such value.
    #[test]
    fn implausible_epoch_times_are_kept_and_counted() {
        let schema = Arc::new(TableSchema::parse("t.toml", "table = \"t\"\n[[columns]]\nname = \"id\"\ntype = \"string\"\n[[columns]]\nname = \"ts\"\ntype = \"timestamp\"\nformats = [\"epoch_millis\"]\n[[columns]]\nname = \"k\"\ntype = \"string\"\n[partition]\ntime = { column = \"arrival\" }\nkeys = [\"k\"]\n").unwrap());
        let shard = ShardId::new("s");
        let mut p = Pipeline::new(schema, Limits::default(), 1000);
        let mut implausible = 0;
        let recs: Vec<(u64, Vec<u8>)> = (0..600u64)
            .map(|i| {
                // runs of 40 in one partition, then interleaved; every third a seconds value
                let k = if i < 300 { i / 40 % 3 } else { i % 3 };
                let ts = if i % 3 == 0 { 1_767_225_600 + i } else { 1_767_225_600_000 + i };
                implausible += u64::from(i % 3 == 0);
                let esc = if i % 50 == 7 { "\\u0041" } else { "" }; // the fused decoder declines escapes
                (i, format!("{{\"id\":\"r{i}{esc}\",\"ts\":{ts},\"k\":\"p{k}\"}}").into_bytes())
            })
            .collect();
        let mut i = 0;
        while i < recs.len() {
            i += p.push_run(&shard, &recs[i..], |(off, d)| (Position::offset(*off), 0, &d[..]));
            if let Some((off, d)) = recs.get(i) {
                p.push(&shard, Position::offset(*off), 0, d);
                i += 1;
            }
        }
        assert_eq!(p.stats().rows, 600);
        assert!(p.stats().fused_in_place > 300, "the fast paths ran");
        assert_eq!(p.implausible_times(), [("ts".to_string(), implausible, 1_767_225_600 + 597)]);
        let sealed = p.take_all();
        assert_eq!(sealed.iter().filter(|s| s.kind == DestKind::Table).map(|s| s.records).sum::<usize>(), 600);
    }

    /// Whatever a record's bytes (random bytes, valid records mutated: cut,
    /// with bytes flipped, inserted or dropped, nested deep, over the size
    /// limit), pushing it never panics and it becomes exactly one row or
    /// one error line, and one raw line; the fused paths and the general
    /// one agree on which. (The cargo-fuzz target in fuzz/ runs the same
    /// check on inputs libFuzzer finds.)
    #[test]
    fn every_record_is_one_row_or_one_error_whatever_its_bytes() {
        use crate::decode::json::tests::Mutator;
        let schema = Arc::new(TableSchema::parse("e.toml", include_str!("../schemas/events.toml")).unwrap());
        let seed = br#"{"event_id":"e-1","timestamp":"2026-11-21T19:10:48.178Z","event_type":"add_to_cart","user_id":1237437,"session_id":"s","page":{"url":"https://x/p?a=1","referrer":null,"title":"Cart"},"device":{"os":"ios","os_version":"17","model":null},"geo":{"country":"DE","city":"Berlin","lat":52.52,"lon":13.405},"properties":{"campaign":"n","ab_test":"B"},"tags":["promo","\u00e9"],"duration_ms":2585,"revenue":19.99,"is_bot":false}"#;
        let alphabet = b"{}[]:,\"\\ \t\n0123456789-+.eEtrufalsnu/\x00\x01\x7f\xc3\xa9\xed\xa0\x80\xffABZ";
        let mut m = Mutator(0x9e37_79b9_7f4a_7c15);
        let mut recs: Vec<Vec<u8>> = Vec::new();
        for i in 0..6000 {
            recs.push(match i % 6 {
                0 => (0..m.next(300)).map(|_| m.next(256) as u8).collect(),
                1 => seed[..m.next(seed.len() + 1)].to_vec(),
                2 => {
                    let depth = 1 + m.next(300);
                    let mut r = b"{\"event_id\":\"d\",\"event_type\":\"v\",\"tags\":".to_vec();
                    r.extend(std::iter::repeat_n(b'[', depth));
                    r.extend(std::iter::repeat_n(b']', depth));
                    r.push(b'}');
                    r
                }
                3 if i % 60 == 3 => [&seed[..100], &b"x".repeat(3000)[..], &seed[100..]].concat(), // over the limit
                _ => {
                    let mut r = seed.to_vec();
                    let times = m.next(4);
                    m.mutate(&mut r, alphabet, times);
                    r
                }
            });
        }
        let shard = ShardId::new("s");
        let run = |fused: bool, guess: bool| {
            let limits = Limits { max_records: 97, ..Limits::default() };
            let mut p = Pipeline::new(schema.clone(), limits, 2000).with_raw_backup(true);
            p.lanes[0].router.set_paths(fused, guess);
            let (mut rows, mut lines, mut raw) = (0usize, 0usize, 0usize);
            let mut count = |sealed: Vec<Sealed>| {
                for s in sealed {
                    match (s.kind, s.body) {
                        (DestKind::Table, _) => rows += s.records,
                        (DestKind::Errors, SealedBody::Lines(l)) => lines += l.into_plain().split(|&b| b == b'\n').filter(|l| !l.is_empty()).count(),
                        (DestKind::Raw, SealedBody::Lines(l)) => raw += l.into_plain().split(|&b| b == b'\n').filter(|l| !l.is_empty()).count(),
                        _ => unreachable!(),
                    }
                }
            };
            for (i, r) in recs.iter().enumerate() {
                p.push(&shard, Position::offset(i as u64), 0, r);
                count(p.take_due(Instant::now()));
            }
            count(p.take_all());
            let s = p.stats();
            assert_eq!(s.records_in as usize, recs.len());
            assert_eq!((rows as u64, lines as u64), (s.rows, s.error_total()), "fused {fused}, guess {guess}");
            assert_eq!(rows + lines, recs.len(), "fused {fused}, guess {guess}: one row or one error line each");
            assert_eq!(raw, recs.len(), "one raw line each");
            (s.rows, s.errors.clone())
        };
        let general = run(false, false);
        assert!(general.0 > 500 && general.1.len() == 3, "rows and every kind of error: {general:?}");
        assert_eq!(run(true, false), general);
        assert_eq!(run(true, true), general);
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
