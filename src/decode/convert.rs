//! JSON values → typed column values, by the rules of the schema file.
//!
//! Input: a node of a parsed record and the [`Plan`] of its column. Output:
//! one value appended to the column's [`ColBuf`]. Failure: [`ConvError`]
//! naming the (nested) column and quoting the value. Values are converted
//! only when no information changes: a float into an integer column, an
//! out-of-range integer, a non-numeric string into a number column, a
//! decimal with more places than its scale, a string longer than its
//! varchar, a timestamp in none of the column's formats are all refused.
//! Numbers and booleans into string columns keep their JSON text; so do
//! arrays and objects (their exact source text).

use super::columns::ColBuf;
use super::json::{Doc, Kind};
use crate::schema::types::ColType;
use crate::timefmt::{parse_date, TsFormat};
use base64::Engine;

pub struct Plan {
    pub ty: ColType,
    pub formats: Vec<TsFormat>,
    pub kind: PlanKind,
    pub case_insensitive: bool,
}

pub enum PlanKind {
    Leaf,
    List(Box<Plan>),
    Map(Box<Plan>, Box<Plan>),
    /// Field names (lowercased when matching is case-insensitive) and plans.
    Struct(Vec<(String, Plan)>),
}

impl Plan {
    pub fn new(ty: &ColType, formats: &[TsFormat], case_insensitive: bool) -> Plan {
        let nested = |t: &ColType| {
            let f = if *t == ColType::Timestamp { crate::timefmt::default_formats() } else { Vec::new() };
            Plan::new(t, &f, case_insensitive)
        };
        let kind = match ty {
            ColType::Array(e) => PlanKind::List(Box::new(nested(e))),
            ColType::Map(k, v) => PlanKind::Map(Box::new(nested(k)), Box::new(nested(v))),
            ColType::Struct(fs) => PlanKind::Struct(fs.iter().map(|f| (f.name.clone(), nested(&f.ty))).collect()),
            _ => PlanKind::Leaf,
        };
        Plan { ty: ty.clone(), formats: formats.to_vec(), kind, case_insensitive }
    }
}

/// Why a value was refused. Boxed: it is rare, and a one-word `Result`
/// keeps the hot conversion calls returning in a register.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvError(Box<ConvErrorInner>);

#[derive(Debug, Clone, PartialEq)]
struct ConvErrorInner {
    /// Field names from the innermost outwards.
    path: Vec<String>,
    message: String,
}

impl ConvError {
    #[cold]
    fn new(message: String) -> Self {
        ConvError(Box::new(ConvErrorInner { path: Vec::new(), message }))
    }
    #[cold]
    fn within(mut self, name: &str) -> Self {
        self.0.path.push(name.to_string());
        self
    }
    /// `column 'device.os': expected …`
    pub fn describe(&self, column: &str) -> String {
        let mut p = column.to_string();
        for seg in self.0.path.iter().rev() {
            p.push('.');
            p.push_str(seg);
        }
        format!("column '{p}': {}", self.0.message)
    }
}

/// The value's source text, cut to 80 characters, for messages.
pub fn snippet(doc: &Doc, n: u32) -> String {
    let raw = doc.raw_str(n);
    match raw.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &raw[..i]),
        None => raw.to_string(),
    }
}

fn expected(what: &str, doc: &Doc, n: u32) -> ConvError {
    ConvError::new(format!("expected {what}, got {}", snippet(doc, n)))
}

/// Checks the JSON number grammar; returns whether it is an integer.
fn json_number_shape(b: &[u8]) -> Option<bool> {
    match super::json::scan_number(b, 0) {
        Ok((end, int)) if end == b.len() => Some(int),
        _ => None,
    }
}

/// Text of a number node, or of a string holding a clean JSON number; `what`
/// names the expected type in the error (built only when there is one).
fn numeric_text<'a>(doc: &Doc<'a>, n: u32, what: impl FnOnce() -> String) -> Result<(&'a str, bool), ConvError> {
    let node = doc.node(n);
    match node.kind {
        Kind::Int => Ok((doc.raw_str(n), true)),
        Kind::Float => Ok((doc.raw_str(n), false)),
        Kind::Str | Kind::StrEsc => {
            let s = doc.str(n);
            match json_number_shape(s.as_bytes()) {
                Some(int) => Ok((s, int)),
                None => Err(expected(&what(), doc, n)),
            }
        }
        _ => Err(expected(&what(), doc, n)),
    }
}

pub(super) fn parse_i64(s: &str) -> Option<i64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s),
    };
    if digits.len() <= 18 {
        // at most 18 digits cannot overflow an i64: no checks per digit
        let v = digits.bytes().fold(0i64, |v, c| v * 10 + (c - b'0') as i64);
        return Some(if neg { -v } else { v });
    }
    let mut v: i64 = 0;
    for &c in digits.as_bytes() {
        let d = (c - b'0') as i64;
        v = v.checked_mul(10)?;
        v = if neg { v.checked_sub(d)? } else { v.checked_add(d)? };
    }
    Some(v)
}

/// The double a JSON number's text stands for, exactly as
/// `str::parse::<f64>` gives it. Plain decimals of at most 15 digits (the
/// common case: coordinates, prices, ratios) take Clinger's fast path: the
/// digits as an integer below 2^53 and a power of ten up to 10^15 are both
/// exact doubles, so one correctly rounded division gives the correctly
/// rounded value. Everything else (exponents, longer digit strings) goes
/// to the standard parser.
#[inline]
pub(super) fn parse_f64(s: &str) -> Option<f64> {
    fast_f64(s.as_bytes()).or_else(|| s.parse().ok())
}

#[inline]
fn fast_f64(b: &[u8]) -> Option<f64> {
    let neg = b.first() == Some(&b'-');
    let mut i = usize::from(neg);
    let (mut m, mut digits, mut frac) = (0u64, 0usize, 0usize);
    while let Some(&c @ b'0'..=b'9') = b.get(i) {
        m = m.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
        digits += 1;
        i += 1;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while let Some(&c @ b'0'..=b'9') = b.get(i) {
            m = m.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
            digits += 1;
            frac += 1;
            i += 1;
        }
    }
    // at most 15 digits: m < 10^15 < 2^53, and frac <= 15
    if i != b.len() || digits == 0 || digits > 15 {
        return None;
    }
    Some(clinger(m, frac, neg))
}

/// `m / 10^frac`, negated when `neg`, correctly rounded: for `m < 2^53`
/// and `frac <= 15` both operands are exact doubles (Clinger's fast path).
#[inline(always)]
pub(super) fn clinger(m: u64, frac: usize, neg: bool) -> f64 {
    const POW10: [f64; 16] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15];
    let v = m as f64 / POW10[frac];
    if neg { -v } else { v }
}

/// Integer value of a node for an integer column of the given type name.
pub fn int_value(doc: &Doc, n: u32, ty: &ColType) -> Result<i64, ConvError> {
    let (name, lo, hi) = match ty {
        ColType::TinyInt => ("tinyint", i8::MIN as i64, i8::MAX as i64),
        ColType::SmallInt => ("smallint", i16::MIN as i64, i16::MAX as i64),
        ColType::Int => ("int", i32::MIN as i64, i32::MAX as i64),
        _ => ("bigint", i64::MIN, i64::MAX),
    };
    let (text, int) = numeric_text(doc, n, || format!("an integer ({name})"))?;
    if !int {
        return Err(ConvError::new(format!("expected an integer ({name}), got {}: fractions are not rounded", snippet(doc, n))));
    }
    match parse_i64(text) {
        Some(v) if (lo..=hi).contains(&v) => Ok(v),
        _ => Err(ConvError::new(format!("value {} is out of range for {name} ({lo}..={hi})", snippet(doc, n)))),
    }
}

pub fn bool_value(doc: &Doc, n: u32) -> Result<bool, ConvError> {
    match doc.node(n).kind {
        Kind::True => Ok(true),
        Kind::False => Ok(false),
        Kind::Str | Kind::StrEsc if doc.str(n).eq_ignore_ascii_case("true") => Ok(true),
        Kind::Str | Kind::StrEsc if doc.str(n).eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(expected("a boolean", doc, n)),
    }
}

/// Text for a string column: string content, or the JSON text of any other value.
#[inline]
pub fn string_value<'a>(doc: &Doc<'a>, n: u32) -> &'a str {
    match doc.node(n).kind {
        Kind::Str | Kind::StrEsc => doc.str(n),
        _ => doc.raw_str(n),
    }
}

fn decimal_value(doc: &Doc, n: u32, precision: u8, scale: u8) -> Result<i128, ConvError> {
    let ty = || format!("decimal({precision},{scale})");
    let (text, _) = numeric_text(doc, n, || format!("a number ({})", ty()))?;
    decimal_from_text(text, precision, scale).map_err(|e| match e {
        DecimalRefusal::Syntax => expected(&ty(), doc, n),
        DecimalRefusal::Places => ConvError::new(format!(
            "value {} has more than {scale} decimal places for {}; it is not rounded", snippet(doc, n), ty())),
        DecimalRefusal::TooBig => ConvError::new(format!("value {} does not fit {}", snippet(doc, n), ty())),
    })
}

/// Why a number's text does not make a decimal(p,s).
pub(crate) enum DecimalRefusal {
    Syntax,
    Places,
    TooBig,
}

/// Unscaled value of a JSON number's text for decimal(precision, scale).
pub(crate) fn decimal_from_text(text: &str, precision: u8, scale: u8) -> Result<i128, DecimalRefusal> {
    // the common case without a digit vector: `[-]int[.frac]`, no exponent,
    // at most 18 digits (they fit a u64) and no more places than the scale
    let b = text.as_bytes();
    let (neg, body) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        _ => (false, b),
    };
    let dot = body.iter().position(|&c| c == b'.');
    let (int, frac) = match dot {
        Some(d) => (&body[..d], &body[d + 1..]),
        None => (body, &body[..0]),
    };
    if !int.is_empty() && int.len() + frac.len() <= 18 && frac.len() <= scale as usize && int.len() + scale as usize <= 38 && precision <= 38 {
        let mut v: u64 = 0;
        let mut clean = true;
        for &c in int.iter().chain(frac) {
            clean &= c.is_ascii_digit();
            v = v * 10 + u64::from(c.wrapping_sub(b'0'));
        }
        if clean && (dot.is_none() || !frac.is_empty()) {
            let v = v as i128 * 10i128.pow((scale as usize - frac.len()) as u32);
            if v >= 10i128.pow(precision as u32) {
                return Err(DecimalRefusal::TooBig);
            }
            return Ok(if neg { -v } else { v });
        }
    }
    decimal_general(text, precision, scale)
}

/// [`decimal_from_text`] for any number text: exponents, long mantissas,
/// places beyond the scale (accepted when they are zeros).
fn decimal_general(text: &str, precision: u8, scale: u8) -> Result<i128, DecimalRefusal> {
    let (neg, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (mant, exp) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().map_err(|_| DecimalRefusal::Syntax)?),
        None => (rest, 0),
    };
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    // value = digits * 10^(exp - frac.len()); we want value * 10^scale
    let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).map(|c| c.wrapping_sub(b'0')).collect();
    if digits.iter().any(|&d| d > 9) {
        return Err(DecimalRefusal::Syntax);
    }
    let mut shift = exp - frac.len() as i64 + scale as i64;
    while shift < 0 {
        match digits.pop() {
            Some(0) => shift += 1,
            None => break,
            Some(_) => return Err(DecimalRefusal::Places),
        }
    }
    let limit = 10i128.pow(precision as u32);
    let mut v: i128 = 0;
    for d in digits {
        v = v.checked_mul(10).and_then(|v| v.checked_add(d as i128)).ok_or(DecimalRefusal::TooBig)?;
        if v >= limit {
            return Err(DecimalRefusal::TooBig);
        }
    }
    for _ in 0..shift {
        v = v.checked_mul(10).ok_or(DecimalRefusal::TooBig)?;
        if v >= limit {
            return Err(DecimalRefusal::TooBig);
        }
    }
    Ok(if neg { -v } else { v })
}

fn format_names(f: &[TsFormat]) -> String {
    f.iter()
        .map(|f| match f {
            TsFormat::Rfc3339 => "rfc3339",
            TsFormat::EpochMillis => "epoch_millis",
            TsFormat::EpochSeconds => "epoch_seconds",
            TsFormat::Pattern(_) => "pattern",
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Epoch millis of a timestamp value, trying the formats in order.
pub fn timestamp_value(doc: &Doc, n: u32, formats: &[TsFormat]) -> Result<i64, ConvError> {
    let node = doc.node(n);
    let found = match node.kind {
        Kind::Str | Kind::StrEsc => timestamp_from_str(doc.str(n), formats),
        Kind::Int | Kind::Float => timestamp_from_number(doc.raw_str(n), formats),
        _ => None,
    };
    found.ok_or_else(|| {
        ConvError::new(format!("expected a timestamp ({}), got {}", format_names(formats), snippet(doc, n)))
    })
}

/// Epoch millis of a JSON string's content, in the first format that takes it.
#[inline]
pub(crate) fn timestamp_from_str(s: &str, formats: &[TsFormat]) -> Option<i64> {
    formats.iter().find_map(|f| f.parse_str(s))
}

/// Epoch millis of a JSON number's text, in the first epoch format.
pub(crate) fn timestamp_from_number(s: &str, formats: &[TsFormat]) -> Option<i64> {
    formats.iter().find_map(|f| match f {
        TsFormat::EpochMillis | TsFormat::EpochSeconds => f.parse_str(s),
        _ => None,
    })
}

/// Days since the epoch of a JSON string's content: yyyy-MM-dd, else the
/// day of a timestamp in one of the formats.
pub(super) fn date_from_str(s: &str, formats: &[TsFormat]) -> Option<i32> {
    if let Some(d) = parse_date(s) {
        return Some(d);
    }
    formats.iter().find_map(|f| f.parse_str(s)).and_then(|ms| i32::try_from(ms.div_euclid(86_400_000)).ok())
}

fn date_value(doc: &Doc, n: u32, formats: &[TsFormat]) -> Result<i32, ConvError> {
    let err = || ConvError::new(format!("expected a date (yyyy-MM-dd{}), got {}",
        if formats.is_empty() { String::new() } else { format!(" or {}", format_names(formats)) }, snippet(doc, n)));
    if !matches!(doc.node(n).kind, Kind::Str | Kind::StrEsc) {
        return Err(err());
    }
    date_from_str(doc.str(n), formats).ok_or_else(err)
}

static B64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new().with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// Byte equality without a call into `memcmp` for keys up to 16 bytes (most
/// JSON keys): two overlapping word compares.
#[inline(always)]
pub fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let w8 = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap());
    let w4 = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().unwrap());
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => w4(a, 0) == w4(b, 0) && w4(a, n - 4) == w4(b, n - 4),
        8..=16 => w8(a, 0) == w8(b, 0) && w8(a, n - 8) == w8(b, n - 8),
        _ => a == b,
    }
}

/// True when an object key matches a (lowercased when case-insensitive) name.
#[inline(always)]
pub fn key_matches(key: &str, name: &str, case_insensitive: bool) -> bool {
    // an exact match is the common case, whatever the setting
    bytes_eq(key.as_bytes(), name.as_bytes()) || (case_insensitive && key_matches_folded(key, name))
}

#[inline(never)]
fn key_matches_folded(key: &str, name: &str) -> bool {
    if key.is_ascii() {
        key.len() == name.len() && key.as_bytes().iter().zip(name.as_bytes()).all(|(a, b)| a.to_ascii_lowercase() == *b)
    } else {
        key.to_lowercase() == name
    }
}

/// Appends one value (or null, for a missing or JSON-null node). The common
/// cases — a plain string, an integer, a number into a double, a boolean, a
/// timestamp in the column's first format, a null — take a short inline
/// path; everything else, and every refusal, goes through [`append`], so
/// both paths give the same values and the same errors (a unit test runs
/// both on every column type against a set of values).
#[inline(always)]
pub fn append_value(plan: &Plan, buf: &mut ColBuf, doc: &Doc, node: Option<u32>) -> Result<(), ConvError> {
    if append_fast(plan, buf, doc, node) {
        Ok(())
    } else {
        append(plan, buf, doc, node)
    }
}

/// The inline path of [`append_value`]: true when it appended the value,
/// false (having changed nothing) when [`append`] must decide.
#[inline(always)]
fn append_fast(plan: &Plan, buf: &mut ColBuf, doc: &Doc, node: Option<u32>) -> bool {
    let kind = match node {
        Some(n) => doc.node(n).kind,
        None => Kind::Null,
    };
    if kind == Kind::Null {
        buf.push_null();
        return true;
    }
    let n = node.expect("not missing");
    match (buf, kind) {
        (ColBuf::Bytes { offsets, data, valid }, Kind::Str | Kind::StrEsc) if matches!(plan.ty, ColType::String) => {
            let s = doc.str_bytes(n);
            if data.len() + s.len() > i32::MAX as usize {
                return false;
            }
            data.extend_from_slice(s);
            offsets.push(data.len() as i32);
            valid.append(true);
        }
        (ColBuf::I64(p), Kind::Int) => match parse_i64(doc.raw_str(n)) {
            Some(v) => p.push(v),
            None => return false,
        },
        (ColBuf::I32(p), Kind::Int) => match parse_i64(doc.raw_str(n)).and_then(|v| i32::try_from(v).ok()) {
            Some(v) => p.push(v),
            None => return false,
        },
        (ColBuf::F64(p), Kind::Int | Kind::Float) => match parse_f64(doc.raw_str(n)) {
            Some(v) if v.is_finite() => p.push(v),
            _ => return false,
        },
        (ColBuf::Bool(p), Kind::True) => p.push(true),
        (ColBuf::Bool(p), Kind::False) => p.push(false),
        (ColBuf::Ts(p), Kind::Str | Kind::StrEsc) => match plan.formats.first().and_then(|f| f.parse_str(doc.str(n))) {
            Some(v) => p.push(v),
            None => return false,
        },
        _ => return false,
    }
    true
}

/// Appends one value (or null, for a missing or JSON-null node): the
/// general path, which also produces every error.
#[inline(never)]
pub fn append(plan: &Plan, buf: &mut ColBuf, doc: &Doc, node: Option<u32>) -> Result<(), ConvError> {
    let n = match node {
        Some(n) if doc.node(n).kind != Kind::Null => n,
        _ => {
            buf.push_null();
            return Ok(());
        }
    };
    match (buf, &plan.kind) {
        (ColBuf::Bool(p), _) => p.push(bool_value(doc, n)?),
        (ColBuf::I8(p), _) => p.push(int_value(doc, n, &plan.ty)? as i8),
        (ColBuf::I16(p), _) => p.push(int_value(doc, n, &plan.ty)? as i16),
        (ColBuf::I32(p), _) => p.push(int_value(doc, n, &plan.ty)? as i32),
        (ColBuf::I64(p), _) => p.push(int_value(doc, n, &plan.ty)?),
        (ColBuf::F64(p), _) => {
            let (t, _) = numeric_text(doc, n, || "a number (double)".into())?;
            let v = parse_f64(t).ok_or_else(|| expected("a number (double)", doc, n))?;
            if !v.is_finite() {
                return Err(ConvError::new(format!("value {} is out of range for double", snippet(doc, n))));
            }
            p.push(v)
        }
        (ColBuf::F32(p), _) => {
            let (t, _) = numeric_text(doc, n, || "a number (float)".into())?;
            let v = parse_f64(t).ok_or_else(|| expected("a number (float)", doc, n))?;
            if !v.is_finite() || v.abs() > f32::MAX as f64 {
                return Err(ConvError::new(format!("value {} is out of range for float", snippet(doc, n))));
            }
            p.push(v as f32)
        }
        (ColBuf::Dec(p), _) => {
            let ColType::Decimal { precision, scale } = plan.ty else { unreachable!() };
            p.push(decimal_value(doc, n, precision, scale)?)
        }
        (ColBuf::Date(p), _) => p.push(date_value(doc, n, &plan.formats)?),
        (ColBuf::Ts(p), _) => p.push(timestamp_value(doc, n, &plan.formats)?),
        (ColBuf::Bytes { offsets, data, valid }, _) => {
            match plan.ty {
                ColType::Binary => {
                    if !matches!(doc.node(n).kind, Kind::Str | Kind::StrEsc) {
                        return Err(expected("a base64 string (binary)", doc, n));
                    }
                    B64.decode_vec(doc.str_bytes(n), data).map_err(|e| {
                        let len = *offsets.last().unwrap() as usize;
                        data.truncate(len);
                        ConvError::new(format!("expected base64 (binary), got {}: {e}", snippet(doc, n)))
                    })?;
                }
                ColType::Varchar(max) => {
                    let s = string_value(doc, n);
                    if s.len() > max as usize && s.chars().count() > max as usize {
                        return Err(ConvError::new(format!(
                            "value {} is {} characters, longer than varchar({max}); it is not truncated",
                            snippet(doc, n), s.chars().count())));
                    }
                    data.extend_from_slice(s.as_bytes());
                }
                _ => data.extend_from_slice(string_value(doc, n).as_bytes()),
            }
            if data.len() > i32::MAX as usize {
                return Err(ConvError::new("column buffer over 2 GiB; lower buffer.max_bytes".into()));
            }
            offsets.push(data.len() as i32);
            valid.append(true);
        }
        (ColBuf::List { offsets, valid, child }, PlanKind::List(ep)) => {
            if doc.node(n).kind != Kind::Array {
                return Err(expected("an array", doc, n));
            }
            for e in doc.elements(n) {
                append_value(ep, child, doc, Some(e)).map_err(|e| e.within("[]"))?;
            }
            offsets.push(child.len() as i32);
            valid.append(true);
        }
        (ColBuf::Map { offsets, valid, keys, vals }, PlanKind::Map(kp, vp)) => {
            if doc.node(n).kind != Kind::Object {
                return Err(expected("an object (map)", doc, n));
            }
            // duplicate keys: the last one wins
            let last: Option<std::collections::HashMap<&str, u32>> = (doc.count(n) > 16)
                .then(|| doc.members(n).map(|(k, _)| (doc.str(k), k)).collect());
            for (k, v) in doc.members(n) {
                let ks = doc.str(k);
                let dup = match &last {
                    Some(m) => m[ks] != k,
                    None => doc.members_after(n, k).any(|(k2, _)| doc.str(k2) == ks),
                };
                if dup {
                    continue;
                }
                append_value(kp, keys, doc, Some(k)).map_err(|e| e.within("key"))?;
                append_value(vp, vals, doc, Some(v)).map_err(|e| e.within(ks))?;
            }
            offsets.push(keys.len() as i32);
            valid.append(true);
        }
        (ColBuf::Struct { valid, children }, PlanKind::Struct(fields)) => {
            if doc.node(n).kind != Kind::Object {
                return Err(expected("an object (struct)", doc, n));
            }
            // one pass over the members; a later duplicate key overwrites (last wins)
            let mut found = [None::<u32>; 16];
            let mut extra: Vec<Option<u32>>;
            let slots: &mut [Option<u32>] = if fields.len() <= 16 {
                &mut found[..fields.len()]
            } else {
                extra = vec![None; fields.len()];
                &mut extra
            };
            for (j, (k, v)) in doc.members(n).enumerate() {
                let key = doc.str(k);
                let guess = fields.get(j).filter(|(name, _)| key_matches(key, name, plan.case_insensitive)).map(|_| j);
                let idx = guess.or_else(|| fields.iter().position(|(name, _)| key_matches(key, name, plan.case_insensitive)));
                if let Some(i) = idx {
                    slots[i] = Some(v);
                }
            }
            for (((name, fp), child), found) in fields.iter().zip(children.iter_mut()).zip(slots.iter()) {
                append_value(fp, child, doc, *found).map_err(|e| e.within(name))?;
            }
            valid.append(true);
        }
        _ => unreachable!("plan and buffer disagree"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::json::Tape;

    /// The decimal shortcut gives what the general parser gives (value or
    /// refusal) for plain, negative, zero-padded, long, exponent and
    /// over-scale texts, at several precisions and scales.
    #[test]
    fn the_decimal_shortcut_agrees_with_the_general_parser() {
        let mut texts: Vec<String> = [
            "0", "-0", "7", "007", "-12.5", "152.91", "0.01", "1.230", "1.234", "99999999.99", "100000000.00", "5.", ".5", "1e2",
            "1.5E-1", "-", "", "+5", "1.2.3", "12a", "999999999999999999", "9999999999999999999", "123456789012345678.5",
            "0.000000000000000001", "170141183460469231731687303715884105727",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let int = x % 10u64.pow((x >> 40) as u32 % 12);
            let places = (x >> 50) as usize % 5;
            let frac = format!("{:0places$}", (x >> 20) % 10u64.pow(places as u32));
            let sign = if x & 1 == 1 { "-" } else { "" };
            texts.push(if places == 0 { format!("{sign}{int}") } else { format!("{sign}{int}.{frac}") });
        }
        let outcome = |r: Result<i128, DecimalRefusal>| match r {
            Ok(v) => Ok(v),
            Err(DecimalRefusal::Syntax) => Err("syntax"),
            Err(DecimalRefusal::Places) => Err("places"),
            Err(DecimalRefusal::TooBig) => Err("too big"),
        };
        let mut shortcut = 0;
        for (p, sc) in [(10, 2), (6, 2), (38, 0), (18, 4), (38, 20), (5, 5), (38, 38)] {
            for t in &texts {
                let want = outcome(decimal_general(t, p, sc));
                assert_eq!(outcome(decimal_from_text(t, p, sc)), want, "{t:?} as decimal({p},{sc})");
                shortcut += usize::from(want.is_ok() && !t.contains(['e', 'E']));
            }
        }
        assert!(shortcut > 3000, "the cases the shortcut takes are covered ({shortcut})");
    }

    /// The inline path and the general one agree on every column type and
    /// value: the same result or error, the same array; and the inline
    /// path does take the common cases.
    #[test]
    fn inline_and_general_paths_append_the_same() {
        let types = [
            "string", "varchar(3)", "binary", "bigint", "int", "smallint", "tinyint", "double", "float", "boolean",
            "timestamp", "date", "decimal(10,2)", "struct<a:int,b:string,t:timestamp>", "array<bigint>", "map<string,int>",
        ];
        let values = [
            r#""abc""#, r#""a\"b""#, r#""é""#, r#""""#, r#""2026-11-21T19:10:48.178Z""#, r#""2026-11-21 19:10:48""#,
            r#""2026-11-21""#, r#""12""#, r#""1.5""#, r#""true""#, r#""AQID""#, "12", "-7", "0", "2147483647", "2147483648",
            "-2147483649", "999999999999999999", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
            "1.5", "1e400", "-0.0", "1e3", "3.4e39", "true", "false", "null", "[1,2]", "[]", r#"{"a":1,"b":"x","t":"2026-11-21T00:00:00Z"}"#,
            r#"{"a":"x"}"#, r#"{"A":7}"#, "1763730300123", r#""1763730300""#, r#"{"k":1,"k":2}"#,
        ];
        let epoch_first = [TsFormat::EpochMillis, TsFormat::Rfc3339];
        // both parse "1763730300", to different instants: the first must win
        let seconds_first = [TsFormat::EpochSeconds, TsFormat::EpochMillis];
        let mut tape = Tape::default();
        let mut fast_taken = 0;
        for t in types {
            let ty = ColType::parse(t).unwrap();
            for formats in [&crate::timefmt::default_formats()[..], &epoch_first[..], &seconds_first[..], &[]] {
                let plan = Plan::new(&ty, formats, true);
                for v in values {
                    let rec = format!("{{\"v\":{v}}}");
                    let doc = tape.parse(rec.as_bytes()).unwrap();
                    for node in [Some(2), None] {
                        let (mut a, mut b) = (ColBuf::new(&ty), ColBuf::new(&ty));
                        let ra = append_value(&plan, &mut a, &doc, node);
                        let rb = append(&plan, &mut b, &doc, node);
                        assert_eq!(ra, rb, "{t} {v} {node:?}");
                        if ra.is_err() {
                            // as the caller does: a refused record leaves nothing behind
                            a.truncate(0);
                            b.truncate(0);
                        }
                        assert_eq!(a.finish(&ty).to_data(), b.finish(&ty).to_data(), "{t} {v} {node:?}");
                        let mut c = ColBuf::new(&ty);
                        if append_fast(&plan, &mut c, &doc, node) {
                            fast_taken += 1;
                        } else {
                            assert!(c.len() == 0, "a declined inline path leaves nothing: {t} {v}");
                        }
                    }
                }
            }
        }
        let mut c = ColBuf::new(&ColType::String);
        let rec = br#"{"v":"abc"}"#;
        assert!(append_fast(&Plan::new(&ColType::String, &[], true), &mut c, &tape.parse(rec).unwrap(), Some(2)), "plain strings go inline");
        assert!(fast_taken > 200, "the inline path takes the common cases ({fast_taken})");
    }

    #[test]
    fn integers_parse_exactly_on_both_sides_of_the_unchecked_length() {
        for v in [0, -0, 7, -7, 999_999_999_999_999_999, -999_999_999_999_999_999, 1_000_000_000_000_000_000, i64::MAX, i64::MIN] {
            assert_eq!(parse_i64(&v.to_string()), Some(v));
        }
        assert_eq!(parse_i64("9223372036854775808"), None);
        assert_eq!(parse_i64("-9223372036854775809"), None);
        assert_eq!(parse_i64("99999999999999999999"), None);
        assert_eq!(parse_i64("000000000000000000000042"), Some(42), "leading zeros (from numeric strings) past 18 digits");
    }

    /// The fast path gives the standard parser's double, bit for bit, on
    /// the decimals it takes, and declines the rest.
    #[test]
    fn doubles_parse_as_the_standard_parser_does() {
        let mut next = crate::hash::xorshift(0x9e37_79b9_7f4a_7c15);
        let mut taken = 0;
        for _ in 0..200_000 {
            let r = next();
            let int_len = (r % 9) as usize;
            let frac_len = ((r >> 8) % 12) as usize;
            let digits: String = (0..int_len + frac_len).map(|k| char::from(b'0' + ((next() >> (k % 7)) % 10) as u8)).collect();
            let mut s = String::new();
            if r & (1 << 20) != 0 {
                s.push('-');
            }
            s.push_str(if int_len == 0 { "0" } else { &digits[..int_len] });
            if frac_len > 0 {
                s.push('.');
                s.push_str(&digits[int_len..]);
            }
            let want: f64 = s.parse().unwrap();
            let got = parse_f64(&s).unwrap();
            assert_eq!(got.to_bits(), want.to_bits(), "{s}");
            taken += usize::from(fast_f64(s.as_bytes()).is_some());
        }
        assert!(taken > 150_000, "the fast path takes short decimals ({taken})");
        for s in ["0", "-0", "-0.0", "52.52", "13.405", "0.1", "0.3", "999999999999999", "-123456789012.345", "9007199254740993",
                  "1e3", "1.5E-7", "0.1234567890123456789", "123456789012345678901234567890", "1e400", "-1e-400", "4.9e-324"] {
            let want: f64 = s.parse().unwrap();
            assert_eq!(parse_f64(s).map(f64::to_bits), Some(want.to_bits()), "{s}");
        }
        assert_eq!(fast_f64(b"1e3"), None, "exponents take the standard parser");
        assert_eq!(fast_f64(b"1234567890123456"), None, "16 digits may not be exact");
        assert_eq!(fast_f64(b"-"), None);
        assert_eq!(fast_f64(b"."), None);
    }
}
