//! Record decoding: one JSON record → one row of a set of column buffers.
//!
//! Input: the raw bytes of one record (NDJSON line, Kinesis record). Output:
//! a [`Row`] from which the partition is computed and whose values are
//! appended to a [`Columns`] buffer, or a [`RecordError`] carrying
//! Firehose's error code and a message naming the column and the value.
//! A record is isolated: if any column fails, nothing of it stays in the
//! buffer. Checks, in order: size limit, UTF-8, JSON syntax (strict), top
//! level is an object, unknown keys (when rejected), required fields, types.
//! JSON keys match column sources case-insensitively unless the schema says
//! otherwise; when a key appears twice, the last one wins.
//!
//! Two paths give the same rows: [`fast`] decodes common records in one
//! pass straight into the buffers ([`Decoder::decode_fused`]) and declines
//! the rest, which [`Decoder::parse`] (a strict tape, [`json`]) and
//! [`Row::append_to`] ([`convert`]) take, producing every error.

pub(crate) mod check;
pub(crate) mod columns;
pub(crate) mod convert;
pub(crate) mod fast;
pub(crate) mod json;
mod keys;
pub(crate) mod peek;

use crate::schema::{TableSchema, UnknownKeys};
use arrow_array::{ArrayRef, RecordBatch};
use columns::ColBuf;
use convert::{append_value, ConvError, Plan};
use json::{Doc, Kind, Tape};
use keys::KeyIndex;
pub(crate) use convert::decimal_from_text;
use std::sync::Arc;

/// Firehose's default (and maximum) record size: 1,000 KiB.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1000 * 1024;

/// Firehose's error-code vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Not JSON, or not UTF-8.
    ParseError,
    /// Valid JSON that does not fit the schema: types, ranges, required fields.
    MalformedData,
    /// Over the record size limit.
    RecordTooLarge,
    /// Decoded, but a value fails a rule of the schema file.
    ValidationFailed,
    /// No routed table takes the record's route value.
    NoRoute,
    /// Not an error: the decoded route value sends the record to other
    /// tables than it was decoded for (the pipeline routes it again).
    Misrouted,
    /// Not an error: the record matches a filter of the schema file and
    /// is dropped (counted per filter; the message is the filter's name).
    Filtered,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ParseError => "DataFormatConversion.ParseError",
            ErrorCode::MalformedData => "DataFormatConversion.MalformedData",
            ErrorCode::RecordTooLarge => "DataFormatConversion.RecordTooLarge",
            ErrorCode::ValidationFailed => "lakehose.ValidationFailed",
            ErrorCode::NoRoute => "lakehose.NoRoute",
            ErrorCode::Misrouted => "lakehose.Misrouted",
            ErrorCode::Filtered => "lakehose.Filtered",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecordError {
    pub code: ErrorCode,
    pub message: String,
}

impl RecordError {
    fn malformed(message: String) -> Self {
        RecordError { code: ErrorCode::MalformedData, message }
    }
}

/// The column buffers of one output file in progress.
pub struct Columns {
    pub(crate) bufs: Vec<ColBuf>,
    pub(crate) rows: usize,
    /// Per column: a text column, whose bytes are UTF-8 at every offset
    /// (string and varchar; binary columns are not).
    text: Vec<bool>,
}

impl Columns {
    pub fn new(schema: &TableSchema) -> Columns {
        use crate::schema::ColType;
        let mut bufs: Vec<ColBuf> = schema.columns.iter().map(|c| ColBuf::new(&c.ty)).collect();
        let mut text: Vec<bool> = schema.columns.iter().map(|c| matches!(c.ty, ColType::String | ColType::Varchar(_))).collect();
        if schema.unknown_keys == UnknownKeys::Keep {
            bufs.push(ColBuf::new(&ColType::String));
            text.push(true);
        }
        Columns { bufs, rows: 0, text }
    }
    fn truncate(&mut self, rows: usize) {
        self.bufs.iter_mut().for_each(|b| b.truncate(rows));
    }
    /// Drops every row from index `rows` on.
    pub fn truncate_rows(&mut self, rows: usize) {
        self.truncate(rows);
        self.rows = self.rows.min(rows);
    }
    /// Appends a copy of row `i` of `src` (columns of the same schema).
    pub fn push_row_from(&mut self, src: &Columns, i: usize) {
        self.bufs.iter_mut().zip(&src.bufs).for_each(|(d, s)| d.push_from(s, i));
        self.rows += 1;
    }
    /// The epoch millis in timestamp column `col` at `row` (None when null).
    pub fn timestamp_at(&self, col: usize, row: usize) -> Option<i64> {
        match &self.bufs[col] {
            ColBuf::Ts(p) => p.valid.get(row).then(|| p.vals[row]),
            _ => None,
        }
    }
    /// Partition text of column `col` at `row`, as [`Row::key_text`] gives
    /// it for the record (None when null); for string, integer and boolean
    /// columns ([`fast::key_reads_back`]), None for any other.
    pub fn key_text_at(&self, col: usize, row: usize) -> Option<std::borrow::Cow<'_, str>> {
        fn int<T: Copy + ToString>(p: &columns::Prim<T>, row: usize) -> Option<std::borrow::Cow<'static, str>> {
            p.valid.get(row).then(|| p.vals[row].to_string().into())
        }
        match &self.bufs[col] {
            ColBuf::Bytes { offsets, data, valid } if self.text[col] => valid.get(row).then(|| {
                let s = &data[offsets[row] as usize..offsets[row + 1] as usize];
                // SAFETY: a text column's data is UTF-8 at every offset: only
                // the decoders append to it, and only whole strings of valid
                // UTF-8 (see ColBuf::finish)
                unsafe { std::str::from_utf8_unchecked(s) }.into()
            }),
            ColBuf::I8(p) => int(p, row),
            ColBuf::I16(p) => int(p, row),
            ColBuf::I32(p) => int(p, row),
            ColBuf::I64(p) => int(p, row),
            ColBuf::Bool(p) => p.valid.get(row).then(|| if p.vals[row] { "true" } else { "false" }.into()),
            _ => None,
        }
    }
    /// Drops every row, keeping the capacity.
    pub fn clear(&mut self) {
        self.truncate(0);
        self.rows = 0;
    }
    pub fn mem_bytes(&self) -> usize {
        self.bufs.iter().map(ColBuf::mem_bytes).sum()
    }
    /// Turns the buffered rows into a batch; the buffers are left empty.
    pub fn finish(&mut self, schema: &TableSchema) -> RecordBatch {
        self.finish_with(schema, ColBuf::finish)
    }
    /// As [`Columns::finish`], leaving room for as many rows again
    /// ([`ColBuf::finish_reserving`]).
    pub fn finish_reserving(&mut self, schema: &TableSchema) -> RecordBatch {
        self.finish_with(schema, ColBuf::finish_reserving)
    }
    fn finish_with(&mut self, schema: &TableSchema, finish: fn(&mut ColBuf, &crate::schema::ColType) -> ArrayRef) -> RecordBatch {
        let extra = crate::schema::ColType::String;
        let types = schema.columns.iter().map(|c| &c.ty).chain(std::iter::once(&extra));
        let arrays: Vec<ArrayRef> = self.bufs.iter_mut().zip(types).map(|(b, t)| finish(b, t)).collect();
        self.rows = 0;
        RecordBatch::try_new(schema.arrow.clone(), arrays).expect("columns match the schema")
    }
}

pub struct Decoder {
    schema: Arc<TableSchema>,
    plans: Vec<Plan>,
    tape: Tape,
    /// First source-path segment → slot.
    keys: KeyIndex,
    /// Per column: slot and remaining path segments.
    col_slot: Vec<(usize, Vec<String>)>,
    slots: Vec<Option<u32>>,
    unknown: Vec<u32>,
    max_record_bytes: usize,
    fused: Option<fast::Fused>,
    /// The schema has rules or filters to apply to each row.
    judged: bool,
    /// With routing: the route column and the routes, to confirm that a
    /// decoded row belongs to the tables it was sent to ([`Decoder::expect_targets`]).
    gate: Option<(usize, Arc<crate::lanes::Routes>)>,
    /// The tables (lane positions) the record being decoded was sent to,
    /// when that was a guess to confirm.
    expect: Option<Vec<usize>>,
}

impl Decoder {
    pub fn new(schema: Arc<TableSchema>, max_record_bytes: usize) -> Decoder {
        let ci = schema.case_insensitive;
        let plans = schema.columns.iter().map(|c| Plan::new(&c.ty, &c.formats, ci)).collect();
        let keys = KeyIndex::new(schema.columns.iter().map(|c| c.source[0].as_str()), ci);
        let col_slot = schema.columns.iter().map(|c| (keys.slot_of_source(&c.source[0]), c.source[1..].to_vec())).collect();
        let nslots = keys.slot_count();
        let fused = fast::Fused::new(&schema, max_record_bytes);
        let judged = !schema.rules.is_empty() || !schema.filters.is_empty();
        Decoder {
            schema,
            plans,
            tape: Tape::default(),
            keys,
            col_slot,
            slots: vec![None; nslots],
            unknown: Vec::new(),
            max_record_bytes,
            fused,
            judged,
            gate: None,
            expect: None,
        }
    }

    pub fn schema(&self) -> &Arc<TableSchema> {
        &self.schema
    }

    /// Turns the fused decoder off (or back on, where the schema allows
    /// it), to compare both paths.
    #[cfg(test)]
    pub fn set_fused(&mut self, on: bool) {
        self.fused = on.then(|| fast::Fused::new(&self.schema, self.max_record_bytes)).flatten();
    }

    /// Whether [`Decoder::decode_fused`] can take records of this schema.
    pub fn has_fused(&self) -> bool {
        self.fused.is_some()
    }

    /// Appends the record as one row of `cols` in a single pass, as
    /// [`Decoder::parse`] then [`Row::append_to`] would; false (with `cols`
    /// unchanged) when the record must take that general path, which then
    /// accepts it or says why not (see [`fast`]).
    #[inline]
    pub fn decode_fused(&mut self, data: &[u8], cols: &mut Columns) -> bool {
        let row = cols.rows;
        if !self.fused.as_mut().is_some_and(|f| f.decode(data, cols)) {
            return false;
        }
        if self.judged && self.verdict(cols, row).is_err() {
            // the general path says why
            cols.truncate_rows(row);
            return false;
        }
        true
    }

    /// Confirms, on each decoded row, the route it was sent by: column
    /// `column` of this schema read as the route value ([`crate::lanes`]).
    pub fn set_gate(&mut self, column: usize, routes: Arc<crate::lanes::Routes>) {
        self.gate = Some((column, routes));
        self.judged = true;
    }

    /// The tables the next records were sent to on a guess (None: the
    /// route is known; no check).
    #[inline]
    pub fn expect_targets(&mut self, targets: Option<&[usize]>) {
        match (targets, &mut self.expect) {
            (Some(t), Some(e)) => {
                e.clear();
                e.extend_from_slice(t);
            }
            (Some(t), e) => *e = Some(t.to_vec()),
            (None, e) => *e = None,
        }
    }

    /// The route gate, the schema's rules and its filters on row `row` of
    /// `cols`: a row of other tables ([`ErrorCode::Misrouted`]), a failed
    /// rule's reason, or a matching filter as [`ErrorCode::Filtered`].
    #[inline]
    fn verdict(&self, cols: &Columns, row: usize) -> Result<(), RecordError> {
        if let (Some((column, routes)), Some(want)) = (&self.gate, &self.expect) {
            if !routes.targets_are(cols.key_text_at(*column, row).as_deref(), want) {
                return Err(RecordError { code: ErrorCode::Misrouted, message: String::new() });
            }
        }
        check::rules(&self.schema.rules, cols, row)?;
        match check::filtered(&self.schema.filters, cols, row) {
            Some(f) => Err(RecordError { code: ErrorCode::Filtered, message: self.schema.filters[f].name.clone() }),
            None => Ok(()),
        }
    }

    /// Parses one record and matches its keys to columns.
    pub fn parse<'a>(&'a mut self, data: &'a [u8]) -> Result<Row<'a>, RecordError> {
        if data.len() > self.max_record_bytes {
            return Err(RecordError {
                code: ErrorCode::RecordTooLarge,
                message: format!("record is {} bytes, over the {}-byte limit", data.len(), self.max_record_bytes),
            });
        }
        // the parser checks UTF-8 as it goes; the failure path tells the two apart
        self.tape.parse_only(data).map_err(|e| RecordError {
            code: ErrorCode::ParseError,
            message: match std::str::from_utf8(data) {
                Err(u) => format!("record is not valid UTF-8 (invalid byte at offset {})", u.valid_up_to()),
                Ok(_) => format!("malformed JSON: {e}"),
            },
        })?;
        // SAFETY: `data` was just parsed, and is borrowed unchanged for 'a
        let doc = unsafe { self.tape.doc(data) };
        if doc.node(0).kind != Kind::Object {
            return Err(RecordError { code: ErrorCode::ParseError, message: "record is not a JSON object".into() });
        }
        self.slots.iter_mut().for_each(|s| *s = None);
        self.unknown.clear();
        for (j, (k, v)) in doc.members(0).enumerate() {
            match self.keys.slot(doc.str(k), j) {
                Some(slot) => self.slots[slot] = Some(v),
                None => self.unknown.push(k),
            }
        }
        if self.schema.unknown_keys == UnknownKeys::Reject && !self.unknown.is_empty() {
            let names: Vec<String> = self.unknown.iter().map(|&k| format!("'{}'", doc.str(k))).collect();
            return Err(RecordError::malformed(format!(
                "unknown key {} (the schema rejects keys that are not columns)", names.join(", "))));
        }
        // from here on the decoder is only read
        let this: &'a Decoder = self;
        // SAFETY: as above
        Ok(Row { dec: this, doc: unsafe { this.tape.doc(data) } })
    }
}

/// A parsed record whose keys are matched to columns.
pub struct Row<'a> {
    dec: &'a Decoder,
    doc: Doc<'a>,
}

impl<'a> Row<'a> {
    /// The value node of column `i` (following a dotted source path), if present.
    #[inline]
    pub fn node(&self, i: usize) -> Option<u32> {
        let (slot, rest) = &self.dec.col_slot[i];
        let mut n = self.dec.slots[*slot]?;
        for seg in rest {
            if self.doc.node(n).kind != Kind::Object {
                return None;
            }
            n = self
                .doc
                .members(n)
                .filter(|&(k, _)| convert::key_matches(self.doc.str(k), seg, self.dec.schema.case_insensitive))
                .last()?
                .1;
        }
        Some(n)
    }

    pub fn doc(&self) -> &Doc<'a> {
        &self.doc
    }

    fn col_err(&self, i: usize, e: ConvError) -> RecordError {
        RecordError::malformed(e.describe(&self.dec.schema.columns[i].name))
    }

    /// Event time of a timestamp column, in epoch millis (None when null or missing).
    pub fn timestamp(&self, i: usize) -> Result<Option<i64>, RecordError> {
        match self.node(i) {
            Some(n) if self.doc.node(n).kind != Kind::Null => convert::timestamp_value(&self.doc, n, &self.dec.schema.columns[i].formats)
                .map(Some)
                .map_err(|e| self.col_err(i, e)),
            _ => Ok(None),
        }
    }

    /// Canonical text of a partition-key column's value (None when null or missing).
    pub fn key_text(&self, i: usize) -> Result<Option<std::borrow::Cow<'a, str>>, RecordError> {
        use crate::schema::ColType;
        let Some(n) = self.node(i).filter(|&n| self.doc.node(n).kind != Kind::Null) else { return Ok(None) };
        let ty = &self.dec.schema.columns[i].ty;
        let text = match ty {
            ColType::TinyInt | ColType::SmallInt | ColType::Int | ColType::BigInt => {
                convert::int_value(&self.doc, n, ty).map(|v| v.to_string().into())
            }
            ColType::Boolean => convert::bool_value(&self.doc, n).map(|b| if b { "true" } else { "false" }.into()),
            _ => Ok(convert::string_value(&self.doc, n).into()),
        };
        text.map(Some).map_err(|e| self.col_err(i, e))
    }

    /// Appends this record as one row; on failure nothing of it remains.
    pub fn append_to(&self, cols: &mut Columns) -> Result<(), RecordError> {
        let start = cols.rows;
        let schema = &self.dec.schema;
        let per_column = schema.columns.iter().zip(&self.dec.plans).zip(cols.bufs.iter_mut()).zip(&self.dec.col_slot);
        for (i, (((col, plan), buf), (slot, rest))) in per_column.enumerate() {
            let node = if rest.is_empty() { self.dec.slots[*slot] } else { self.node(i) };
            if col.required && node.is_none_or(|n| self.doc.node(n).kind == Kind::Null) {
                cols.truncate(start);
                let what = if node.is_none() { "is missing" } else { "is null" };
                return Err(RecordError::malformed(format!("column '{}': required field {what}", col.name)));
            }
            if let Err(e) = append_value(plan, buf, &self.doc, node) {
                cols.truncate(start);
                return Err(self.col_err(i, e));
            }
        }
        if schema.unknown_keys == UnknownKeys::Keep {
            let ColBuf::Bytes { offsets, data, valid } = cols.bufs.last_mut().unwrap() else { unreachable!() };
            if self.dec.unknown.is_empty() {
                offsets.push(*offsets.last().unwrap());
                valid.append(false);
            } else {
                data.push(b'{');
                for (j, &k) in self.dec.unknown.iter().enumerate() {
                    if j > 0 {
                        data.push(b',');
                    }
                    data.extend_from_slice(self.doc.raw(k));
                    data.push(b':');
                    data.extend_from_slice(self.doc.raw(k + 1));
                }
                data.push(b'}');
                offsets.push(data.len() as i32);
                valid.append(true);
            }
        }
        cols.rows += 1;
        if self.dec.judged {
            if let Err(e) = self.dec.verdict(cols, start) {
                cols.truncate_rows(start);
                return Err(e);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
