//! Fused single-pass decoding: one record's JSON bytes straight into the
//! column buffers, with no tape in between.
//!
//! Input: the bytes of one record and the [`Columns`] to append a row to.
//! Output: `true` when the record was appended as one row, which is the
//! row the general path ([`super::Decoder::parse`], then
//! [`super::Row::append_to`]) appends for it. `false` means nothing was
//! appended (the buffers are as they were) and the caller must run the
//! general path, which then accepts the record or gives the error. That
//! happens for every record the general path refuses, and also for shapes
//! this path leaves alone because they are rare: escaped or non-ASCII keys,
//! duplicate keys, numeric strings in number columns, escaped timestamps,
//! binary columns, maps with more than 16 entries, nesting deeper than 64
//! levels, and unknown keys when the schema keeps or rejects them. A schema
//! with dotted source paths, or with partition values this path cannot
//! read back from the row, gets no fused decoder at all
//! ([`Fused::new`] gives `None`).
//!
//! The JSON grammar is checked as strictly as [`super::json`] checks it
//! (the same number scanner and string unescaper; UTF-8 inside strings);
//! `tests::fused_and_general_paths_agree_on_mutated_records` runs both
//! paths on tens of thousands of mutated records.

use super::columns::ColBuf;
use super::convert::{bytes_eq, clinger, date_from_str, decimal_from_text, key_matches, parse_f64, parse_i64, timestamp_from_number, timestamp_from_str};
use super::json::{append_run, scan_number, skip_plain, unescape_into};
use super::Columns;
use super::keys::KeyIndex;
use crate::schema::types::ColType;
use crate::schema::{TableSchema, TimeSource, UnknownKeys};
use crate::timefmt::TsFormat;

/// Deepest nesting this path walks; deeper values take the general path.
const MAX_DEPTH: usize = 64;
/// Most entries a map may have on this path (duplicates are checked pairwise).
const MAX_MAP_ENTRIES: usize = 16;

/// What one column (or nested field) accepts on this path.
enum Shape {
    Str,
    Varchar(usize),
    Int { lo: i64, hi: i64 },
    F64,
    F32,
    Bool,
    Ts(Vec<TsFormat>),
    Date(Vec<TsFormat>),
    Dec { precision: u8, scale: u8 },
    /// Only null is taken here (binary values, maps with non-string keys,
    /// structs of more than 64 fields).
    NullOnly,
    List(Box<Shape>),
    /// String keys; the value shape.
    Map(Box<Shape>),
    /// Field names (lowercase), their [`quoted_key`]s and shapes.
    Struct(Vec<(Box<str>, Box<[u8]>, Shape)>),
}

/// The decimal digits of `b` from `i`, accumulated onto `m` (wrapping):
/// the index after them and the value.
#[inline(always)]
fn digits(b: &[u8], mut i: usize, mut m: u64) -> (usize, u64) {
    while let Some(d) = b.get(i).map(|c| c.wrapping_sub(b'0')).filter(|d| *d <= 9) {
        m = m.wrapping_mul(10).wrapping_add(u64::from(d));
        i += 1;
    }
    (i, m)
}

/// `"name":`, the bytes a compact record has where it names `name`, when
/// those bytes can only mean that key (no quote, backslash, control or
/// non-ASCII byte in it); empty otherwise (never matched: see [`Cur::eat_key`]).
fn quoted_key(name: &str) -> Box<[u8]> {
    if name.is_empty() || !name.bytes().all(|c| (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\') {
        return Box::new([]);
    }
    format!("\"{name}\":").into_bytes().into_boxed_slice()
}

impl Shape {
    /// Mirrors [`super::convert::Plan::new`]: nested timestamps take the
    /// default formats, other nested values none.
    fn new(ty: &ColType, formats: &[TsFormat]) -> Shape {
        let nested = |t: &ColType| {
            let f = if *t == ColType::Timestamp { crate::timefmt::default_formats() } else { Vec::new() };
            Shape::new(t, &f)
        };
        match ty {
            ColType::String => Shape::Str,
            ColType::Varchar(n) => Shape::Varchar(*n as usize),
            ColType::TinyInt => Shape::Int { lo: i8::MIN as i64, hi: i8::MAX as i64 },
            ColType::SmallInt => Shape::Int { lo: i16::MIN as i64, hi: i16::MAX as i64 },
            ColType::Int => Shape::Int { lo: i32::MIN as i64, hi: i32::MAX as i64 },
            ColType::BigInt => Shape::Int { lo: i64::MIN, hi: i64::MAX },
            ColType::Double => Shape::F64,
            ColType::Float => Shape::F32,
            ColType::Boolean => Shape::Bool,
            ColType::Timestamp => Shape::Ts(formats.to_vec()),
            ColType::Date => Shape::Date(formats.to_vec()),
            ColType::Decimal { precision, scale } => Shape::Dec { precision: *precision, scale: *scale },
            ColType::Binary => Shape::NullOnly,
            ColType::Array(e) => Shape::List(Box::new(nested(e))),
            ColType::Map(k, v) if **k == ColType::String => Shape::Map(Box::new(nested(v))),
            ColType::Map(..) => Shape::NullOnly,
            ColType::Struct(fs) if fs.len() <= 64 => {
                Shape::Struct(fs.iter().map(|f| (f.name.as_str().into(), quoted_key(&f.name), nested(&f.ty))).collect())
            }
            ColType::Struct(_) => Shape::NullOnly,
        }
    }
}

/// The fused decoder of one table schema.
pub struct Fused {
    /// Top-level key → column (one slot per column here).
    keys: KeyIndex,
    /// [`quoted_key`] of each slot's source key.
    quoted: Vec<Box<[u8]>>,
    shapes: Vec<Shape>,
    required: Vec<bool>,
    /// `seen[c] == stamp` when column c got its value in the current record.
    seen: Vec<u32>,
    stamp: u32,
    unknown: UnknownKeys,
    case_insensitive: bool,
    max_record_bytes: usize,
    scratch: Vec<u8>,
}

impl Fused {
    /// `None` when the schema needs the general path for every record: a
    /// dotted source path or two columns from one key, or a partition value
    /// that cannot be read back from the appended row (a time column that
    /// is not a timestamp; a key column that is not a string, integer or
    /// boolean, whose partition text is the JSON source text).
    pub fn new(schema: &TableSchema, max_record_bytes: usize) -> Option<Fused> {
        let keys = KeyIndex::new(schema.columns.iter().map(|c| c.source[0].as_str()), schema.case_insensitive);
        if keys.slot_count() != schema.columns.len() || schema.columns.iter().any(|c| c.source.len() != 1) {
            return None;
        }
        if let TimeSource::Column(i) = schema.partition.time {
            if schema.columns[i].ty != ColType::Timestamp {
                return None;
            }
        }
        if !schema.partition.keys.iter().all(|&k| key_reads_back(&schema.columns[k].ty)) {
            return None;
        }
        let n = schema.columns.len();
        let mut quoted = vec![Box::<[u8]>::default(); n];
        for c in &schema.columns {
            quoted[keys.slot_of_source(&c.source[0])] = quoted_key(&c.source[0]);
        }
        Some(Fused {
            keys,
            quoted,
            shapes: schema.columns.iter().map(|c| Shape::new(&c.ty, &c.formats)).collect(),
            required: schema.columns.iter().map(|c| c.required).collect(),
            seen: vec![0; n],
            stamp: 0,
            unknown: schema.unknown_keys,
            case_insensitive: schema.case_insensitive,
            max_record_bytes,
            scratch: Vec::new(),
        })
    }

    /// Appends `data` as one row of `cols`, or leaves `cols` as it was and
    /// returns false (see the module doc).
    pub fn decode(&mut self, data: &[u8], cols: &mut Columns) -> bool {
        if data.len() > self.max_record_bytes || data.len() >= u32::MAX as usize {
            return false;
        }
        let start = cols.rows;
        if self.record(data, cols).is_some() {
            cols.rows += 1;
            true
        } else {
            cols.truncate(start);
            false
        }
    }

    fn record(&mut self, data: &[u8], cols: &mut Columns) -> Option<()> {
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.seen.iter_mut().for_each(|s| *s = 0);
            self.stamp = 1;
        }
        let stamp = self.stamp;
        let mut p = Cur { b: data, i: 0, ci: self.case_insensitive, scratch: &mut self.scratch };
        p.ws();
        if p.peek() != Some(b'{') {
            return None;
        }
        let (keys, quoted, seen, shapes, required, unknown) = (&mut self.keys, &self.quoted, &mut self.seen, &self.shapes, &self.required, self.unknown);
        let mut filled = 0;
        p.container(b'}', |p, j| {
            // the key the previous record had at this position, as it wrote it
            let slot = match keys.predicted(j) {
                Some(s) if p.eat_key(&quoted[s]) => Some(s),
                _ => {
                    let key = p.plain_key()?;
                    p.colon()?;
                    keys.slot(key, j)
                }
            };
            match slot {
                Some(c) => {
                    if seen[c] == stamp || (required[c] && p.peek() == Some(b'n')) {
                        return None;
                    }
                    seen[c] = stamp;
                    filled += 1;
                    p.value(&shapes[c], &mut cols.bufs[c], 1)
                }
                None if unknown == UnknownKeys::Drop => p.skip(1),
                None => None,
            }
        })?;
        p.ws();
        if p.i != data.len() {
            return None;
        }
        // columns the record did not name are null (when it named them all,
        // as most records do, there is nothing to look for)
        if filled < self.shapes.len() {
            for (c, buf) in cols.bufs.iter_mut().enumerate().take(self.shapes.len()) {
                if self.seen[c] != stamp {
                    if self.required[c] {
                        return None;
                    }
                    buf.push_null();
                }
            }
        }
        if self.unknown == UnknownKeys::Keep {
            cols.bufs.last_mut().expect("the extra column").push_null();
        }
        Some(())
    }
}

/// A cursor over one record. Every method returns `None` to hand the record
/// to the general path, whatever it had appended so far (the caller truncates).
struct Cur<'a, 's> {
    b: &'a [u8],
    i: usize,
    ci: bool,
    scratch: &'s mut Vec<u8>,
}

impl<'a> Cur<'a, '_> {
    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    #[inline(always)]
    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        self.i += usize::from(hit);
        hit
    }
    #[inline(always)]
    fn expect(&mut self, c: u8) -> Option<()> {
        self.eat(c).then_some(())
    }
    #[inline(always)]
    fn ws(&mut self) {
        // most records have no whitespace between tokens: one compare
        if self.b.get(self.i).is_some_and(|&c| c <= b' ') {
            self.ws_run();
        }
    }
    #[inline(never)]
    fn ws_run(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.i += 1;
        }
    }
    #[inline(always)]
    fn lit(&mut self, word: &[u8]) -> Option<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }
    /// Walks the container whose opening bracket is at the cursor, calling
    /// `each` at every member (at its key, in an object) with its index;
    /// checks the separators and the closing bracket.
    #[inline(always)]
    fn container(&mut self, close: u8, mut each: impl FnMut(&mut Self, usize) -> Option<()>) -> Option<()> {
        self.i += 1;
        self.ws();
        if self.eat(close) {
            return Some(());
        }
        let mut j = 0;
        loop {
            each(self, j)?;
            j += 1;
            // compact JSON: the separator or the bracket comes right after the value
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(c) if c == close => {
                    self.i += 1;
                    return Some(());
                }
                _ => {
                    self.ws();
                    if !self.eat(b',') {
                        return self.expect(close);
                    }
                }
            }
            self.ws();
        }
    }
    /// The colon after an object key, with the whitespace around it.
    #[inline(always)]
    fn colon(&mut self) -> Option<()> {
        if !self.eat(b':') {
            self.ws();
            self.expect(b':')?;
        }
        self.ws();
        Some(())
    }
    /// Takes `quoted` (a [`quoted_key`]: `"name":`) when the record has
    /// exactly those bytes at the cursor, which then name that key and end
    /// with its colon; false, moving nothing, otherwise or when it is empty.
    #[inline(always)]
    fn eat_key(&mut self, quoted: &[u8]) -> bool {
        let hit = !quoted.is_empty() && self.b.get(self.i..self.i + quoted.len()).is_some_and(|s| bytes_eq(s, quoted));
        if hit {
            self.i += quoted.len();
        }
        hit
    }
    /// An object key without escapes or bytes above 0x7f.
    #[inline(always)]
    fn plain_key(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let (end, high) = skip_plain(self.b, self.i);
        if self.b.get(end) != Some(&b'"') {
            return None;
        }
        let key = &self.b[self.i..end];
        // the flag may come from a byte just past the key
        if high && !key.is_ascii() {
            return None;
        }
        self.i = end + 1;
        // SAFETY: every byte is ASCII (checked above when the scan saw a high byte)
        Some(unsafe { std::str::from_utf8_unchecked(key) })
    }
    /// A string's content when it has no escapes.
    #[inline(always)]
    fn plain_str(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let (end, high) = skip_plain(self.b, self.i);
        if self.b.get(end) != Some(&b'"') {
            return None;
        }
        let s = &self.b[self.i..end];
        self.i = end + 1;
        if high {
            std::str::from_utf8(s).ok()
        } else {
            // SAFETY: every byte is ASCII
            Some(unsafe { std::str::from_utf8_unchecked(s) })
        }
    }
    /// Appends a string's content (escapes resolved) to `out`.
    #[inline(always)]
    fn string_into(&mut self, out: &mut Vec<u8>) -> Option<()> {
        self.expect(b'"')?;
        let start = self.i;
        let (end, high) = skip_plain(self.b, start);
        if self.b.get(end) == Some(&b'"') {
            let s = &self.b[start..end];
            if high {
                std::str::from_utf8(s).ok()?;
            }
            append_run(out, self.b, start, end);
            self.i = end + 1;
        } else {
            self.i = unescape_into(self.b, start, end, out).ok()? + 1;
        }
        Some(())
    }
    /// A number of at most 15 digits without an exponent (`-?int(.frac)?`,
    /// JSON's grammar: no leading zero, digits after a point), scanned and
    /// valued in one pass ([`clinger`]); `None` leaves the cursor where it
    /// was, for [`number`](Self::number) and the full grammar.
    #[inline(always)]
    fn plain_f64(&mut self) -> Option<f64> {
        let (neg, int, mut m, mut i) = self.int_part()?;
        let mut frac = 0;
        if self.b.get(i) == Some(&b'.') {
            let end;
            (end, m) = digits(self.b, i + 1, m);
            frac = end - i - 1;
            if frac == 0 {
                return None; // a point without digits
            }
            i = end;
        }
        if int + frac > 15 || matches!(self.b.get(i), Some(b'e' | b'E')) {
            return None;
        }
        self.i = i;
        Some(clinger(m, frac, neg))
    }
    /// An integer of 1 to 18 digits (no leading zero, no fraction or
    /// exponent), scanned and valued in one pass; `None` leaves the cursor
    /// where it was, for [`number`](Self::number) and the full grammar.
    #[inline(always)]
    fn plain_int(&mut self) -> Option<i64> {
        let (neg, n, v, i) = self.int_part()?;
        if n > 18 || matches!(self.b.get(i), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        self.i = i;
        // at most 18 digits: the value fits an i64
        Some(if neg { -(v as i64) } else { v as i64 })
    }
    /// The sign and integer digits of a number at the cursor, valued
    /// (wrapping past 19 digits: callers bound the count): whether it is
    /// negative, the digit count, the value and the index after the
    /// digits. `None` without a digit or with a leading zero (JSON's
    /// grammar). The cursor does not move.
    #[inline(always)]
    fn int_part(&self) -> Option<(bool, usize, u64, usize)> {
        let neg = self.b.get(self.i) == Some(&b'-');
        let start = self.i + usize::from(neg);
        let (end, v) = digits(self.b, start, 0);
        let n = end - start;
        if n == 0 || (n > 1 && self.b[start] == b'0') {
            return None;
        }
        Some((neg, n, v, end))
    }
    /// A number's text (the strict grammar).
    #[inline(always)]
    fn number(&mut self) -> Option<(&'a str, bool)> {
        let (end, int) = scan_number(self.b, self.i).ok()?;
        // SAFETY: the number grammar is ASCII
        let s = unsafe { std::str::from_utf8_unchecked(&self.b[self.i..end]) };
        self.i = end;
        Some((s, int))
    }
    /// Skips one value, checking its syntax.
    fn skip(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => {
                let mut s = std::mem::take(self.scratch);
                s.clear();
                let r = self.string_into(&mut s);
                *self.scratch = s;
                r
            }
            b't' => self.lit(b"true"),
            b'f' => self.lit(b"false"),
            b'n' => self.lit(b"null"),
            b'-' | b'0'..=b'9' => self.number().map(|_| ()),
            b'{' if depth < MAX_DEPTH => self.container(b'}', |p, _| {
                if p.peek() != Some(b'"') {
                    return None;
                }
                p.skip(depth + 1)?;
                p.colon()?;
                p.skip(depth + 1)
            }),
            b'[' if depth < MAX_DEPTH => self.container(b']', |p, _| p.skip(depth + 1)),
            _ => None,
        }
    }
    /// Text for a string column: the content of a string, the JSON text of
    /// anything else (null is handled by the caller).
    #[inline(always)]
    fn text_into(&mut self, out: &mut Vec<u8>, depth: usize) -> Option<()> {
        let start = self.i;
        match self.peek()? {
            b'"' => return self.string_into(out),
            b'-' | b'0'..=b'9' => {
                self.number()?;
            }
            b't' => self.lit(b"true")?,
            b'f' => self.lit(b"false")?,
            b'{' | b'[' => self.skip(depth)?,
            _ => return None,
        }
        out.extend_from_slice(&self.b[start..self.i]);
        Some(())
    }

    /// One value into one column buffer. A string into a string column (the
    /// most common value) is taken here, inlined into the loops over
    /// members; everything else in [`Cur::any_value`], which is a call.
    #[inline(always)]
    fn value(&mut self, shape: &Shape, buf: &mut ColBuf, depth: usize) -> Option<()> {
        if let (Shape::Str, ColBuf::Bytes { offsets, data, valid }, Some(b'"')) = (shape, &mut *buf, self.peek()) {
            self.string_into(data)?;
            return end_text(offsets, data, valid);
        }
        self.any_value(shape, buf, depth)
    }

    /// One value into one column buffer.
    #[inline(never)]
    fn any_value(&mut self, shape: &Shape, buf: &mut ColBuf, depth: usize) -> Option<()> {
        let c = self.peek()?;
        if c == b'n' {
            self.lit(b"null")?;
            buf.push_null();
            return Some(());
        }
        match (shape, buf) {
            (Shape::Str, ColBuf::Bytes { offsets, data, valid }) => {
                self.text_into(data, depth)?;
                end_text(offsets, data, valid)?;
            }
            (Shape::Varchar(max), ColBuf::Bytes { offsets, data, valid }) => {
                let at = data.len();
                self.text_into(data, depth)?;
                let s = &data[at..];
                if (s.len() > *max && std::str::from_utf8(s).ok()?.chars().count() > *max) || data.len() > i32::MAX as usize {
                    return None;
                }
                offsets.push(data.len() as i32);
                valid.append(true);
            }
            (Shape::Int { lo, hi }, buf) => {
                let v = match self.plain_int() {
                    Some(v) => v,
                    None => {
                        let (text, int) = if c == b'-' || c.is_ascii_digit() { self.number()? } else { return None };
                        if !int {
                            return None;
                        }
                        parse_i64(text)?
                    }
                };
                let v = Some(v).filter(|v| (*lo..=*hi).contains(v))?;
                match buf {
                    ColBuf::I8(p) => p.push(v as i8),
                    ColBuf::I16(p) => p.push(v as i16),
                    ColBuf::I32(p) => p.push(v as i32),
                    ColBuf::I64(p) => p.push(v),
                    _ => return None,
                }
            }
            (Shape::F64, ColBuf::F64(p)) => {
                let v: f64 = match self.plain_f64() {
                    Some(v) => v,
                    None if c == b'-' || c.is_ascii_digit() => parse_f64(self.number()?.0)?,
                    None => return None,
                };
                if !v.is_finite() {
                    return None;
                }
                p.push(v);
            }
            (Shape::F32, ColBuf::F32(p)) => {
                let v: f64 = match self.plain_f64() {
                    Some(v) => v,
                    None if c == b'-' || c.is_ascii_digit() => parse_f64(self.number()?.0)?,
                    None => return None,
                };
                if !v.is_finite() || v.abs() > f32::MAX as f64 {
                    return None;
                }
                p.push(v as f32);
            }
            (Shape::Bool, ColBuf::Bool(p)) => match c {
                b't' => {
                    self.lit(b"true")?;
                    p.push(true);
                }
                b'f' => {
                    self.lit(b"false")?;
                    p.push(false);
                }
                _ => return None,
            },
            (Shape::Ts(formats), ColBuf::Ts(p)) => {
                let v = match c {
                    b'"' => timestamp_from_str(self.plain_str()?, formats)?,
                    b'-' | b'0'..=b'9' => timestamp_from_number(self.number()?.0, formats)?,
                    _ => return None,
                };
                p.push(v);
            }
            (Shape::Date(formats), ColBuf::Date(p)) if c == b'"' => p.push(date_from_str(self.plain_str()?, formats)?),
            (Shape::Dec { precision, scale }, ColBuf::Dec(p)) if c == b'-' || c.is_ascii_digit() => {
                p.push(decimal_from_text(self.number()?.0, *precision, *scale).ok()?);
            }
            (Shape::List(elem), ColBuf::List { offsets, valid, child }) if c == b'[' => {
                self.container(b']', |p, _| p.value(elem, child, depth + 1))?;
                offsets.push(child.len() as i32);
                valid.append(true);
            }
            (Shape::Map(vshape), ColBuf::Map { offsets, valid, keys, vals }) if c == b'{' => {
                let ColBuf::Bytes { offsets: ko, data: kd, valid: kv } = &mut **keys else { return None };
                let first = ko.len() - 1;
                self.container(b'}', |p, j| {
                    if p.peek() != Some(b'"') || j >= MAX_MAP_ENTRIES {
                        return None;
                    }
                    let at = kd.len();
                    p.string_into(kd)?;
                    // duplicate keys (the last one wins) take the general path
                    let key = &kd[at..];
                    if kd.len() > i32::MAX as usize || ko[first..].windows(2).any(|w| &kd[w[0] as usize..w[1] as usize] == key) {
                        return None;
                    }
                    ko.push(kd.len() as i32);
                    kv.append(true);
                    p.colon()?;
                    p.value(vshape, vals, depth + 1)
                })?;
                offsets.push((ko.len() - 1) as i32);
                valid.append(true);
            }
            (Shape::Struct(fields), ColBuf::Struct { valid, children }) if c == b'{' => {
                let mut seen = 0u64;
                self.container(b'}', |p, j| {
                    // the field at the key's position, written as its name
                    let field = match fields.get(j) {
                        Some((_, quoted, _)) if p.eat_key(quoted) => Some(j),
                        _ => {
                            let key = p.plain_key()?;
                            p.colon()?;
                            p.field(fields, key, j)
                        }
                    };
                    match field {
                        Some(f) if seen & (1 << f) != 0 => None,
                        Some(f) => {
                            seen |= 1 << f;
                            p.value(&fields[f].2, &mut children[f], depth + 1)
                        }
                        None => p.skip(depth + 1),
                    }
                })?;
                for (f, child) in children.iter_mut().enumerate() {
                    if seen & (1 << f) == 0 {
                        child.push_null();
                    }
                }
                valid.append(true);
            }
            _ => return None,
        }
        Some(())
    }

    /// The struct field a key names, as [`key_matches`] decides; the field
    /// at the key's position is tried first.
    #[inline(always)]
    fn field(&self, fields: &[(Box<str>, Box<[u8]>, Shape)], key: &str, j: usize) -> Option<usize> {
        if fields.get(j).is_some_and(|(name, _, _)| bytes_eq(key.as_bytes(), name.as_bytes())) {
            return Some(j);
        }
        fields.iter().position(|(name, _, _)| key_matches(key, name, self.ci))
    }
}

/// Ends the text value just appended to `data`: its end offset (refused
/// past what i32 offsets hold) and its validity.
#[inline(always)]
fn end_text(offsets: &mut Vec<i32>, data: &[u8], valid: &mut super::columns::Validity) -> Option<()> {
    if data.len() > i32::MAX as usize {
        return None;
    }
    offsets.push(data.len() as i32);
    valid.append(true);
    Some(())
}

/// Whether a partition-key column's text reads back from the appended row
/// ([`Columns::key_text_at`]) as the general path renders it from the record.
pub fn key_reads_back(ty: &ColType) -> bool {
    matches!(
        ty,
        ColType::String | ColType::Varchar(_) | ColType::TinyInt | ColType::SmallInt | ColType::Int | ColType::BigInt | ColType::Boolean
    )
}
