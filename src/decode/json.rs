//! A strict RFC 8259 JSON parser producing a flat tape of [`Node`]s.
//!
//! Input: the bytes of one record, in any encoding. Output: a
//! tape (nodes in document order; containers record where their subtree
//! ends) whose strings and numbers borrow from the input, except strings
//! with escapes, which are unescaped into a scratch buffer. Failure:
//! [`ParseError`] with the byte offset and what was expected. Anything
//! RFC 8259 forbids is refused: missing commas, trailing commas, leading
//! zeros, NaN, unescaped control characters, lone surrogates, trailing data,
//! and invalid UTF-8 (checked inside strings while they are scanned; any
//! other byte above 0x7f is a syntax error, so an accepted document is valid
//! UTF-8 as a whole). A caller that must tell invalid UTF-8 apart from other
//! syntax errors checks the input again on the failure path only.
//! The tape and scratch are reused between records, so parsing allocates
//! only while they grow.

/// Deepest nesting accepted; deeper documents are refused, not recursed into.
pub const MAX_DEPTH: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Null,
    True,
    False,
    /// Integer literal (no fraction, no exponent).
    Int,
    /// Number with a fraction or exponent.
    Float,
    /// String without escapes: `start..stop` in the input.
    Str,
    /// String with escapes: `start..stop` in the scratch buffer.
    StrEsc,
    Array,
    Object,
}

/// One tape entry: 16 bytes. `start..stop` is the content of a string
/// (in the input, or in the scratch buffer for [`Kind::StrEsc`]), the text of
/// a number or literal, and the whole source text of a container.
#[derive(Debug, Clone, Copy)]
pub struct Node {
    pub(crate) start: u32,
    pub(crate) stop: u32,
    /// Index just past this node's subtree.
    pub(crate) end: u32,
    pub kind: Kind,
}

/// Bytes in front of an unescaped string's content in the scratch buffer:
/// the string's source range in the input (two little-endian u32s).
const ESC_HEADER: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub at: usize,
    pub what: &'static str,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

#[derive(Default)]
pub struct Tape {
    nodes: Vec<Node>,
    scratch: Vec<u8>,
}

/// A parsed document: the tape plus the input it borrows from. Made only
/// by [`Tape`] from the input it parsed, which the unchecked UTF-8 views
/// ([`Doc::str`], [`Doc::raw_str`]) rely on.
#[derive(Clone, Copy)]
pub struct Doc<'a> {
    input: &'a [u8],
    nodes: &'a [Node],
    scratch: &'a [u8],
}

impl<'a> Doc<'a> {
    #[inline(always)]
    pub fn node(&self, i: u32) -> &'a Node {
        &self.nodes[i as usize]
    }
    /// Content bytes of a string node (unescaped).
    #[inline(always)]
    pub fn str_bytes(&self, i: u32) -> &'a [u8] {
        let n = self.node(i);
        match n.kind {
            Kind::StrEsc => &self.scratch[n.start as usize..n.stop as usize],
            _ => &self.input[n.start as usize..n.stop as usize],
        }
    }
    #[inline]
    pub fn str(&self, i: u32) -> &'a str {
        // SAFETY: the parser validated the content of every string as UTF-8
        // (string spans start and stop at ASCII quotes), and unescaping
        // writes only valid UTF-8 (surrogates are paired or refused).
        unsafe { std::str::from_utf8_unchecked(self.str_bytes(i)) }
    }
    /// Source text of any node.
    pub fn raw(&self, i: u32) -> &'a [u8] {
        let n = self.node(i);
        let (a, b) = match n.kind {
            Kind::Str => (n.start - 1, n.stop + 1),
            Kind::StrEsc => {
                let h = &self.scratch[n.start as usize - ESC_HEADER..n.start as usize];
                (u32::from_le_bytes(h[..4].try_into().unwrap()), u32::from_le_bytes(h[4..].try_into().unwrap()))
            }
            _ => (n.start, n.stop),
        };
        &self.input[a as usize..b as usize]
    }
    /// Members of an object, elements of an array.
    pub fn count(&self, i: u32) -> usize {
        match self.node(i).kind {
            Kind::Object => self.members(i).count(),
            Kind::Array => self.elements(i).count(),
            _ => 0,
        }
    }
    #[inline]
    pub fn raw_str(&self, i: u32) -> &'a str {
        // SAFETY: an accepted document is valid UTF-8 (see the module doc),
        // and raw spans start and stop on ASCII token boundaries.
        unsafe { std::str::from_utf8_unchecked(self.raw(i)) }
    }
    /// (key, value) node indexes of an object's members, in document order.
    #[inline]
    pub fn members(&self, obj: u32) -> Members<'a> {
        Members { nodes: self.nodes, i: obj + 1, end: self.node(obj).end }
    }
    /// Members of object `obj` that come after the member whose key is `key`.
    pub fn members_after(&self, obj: u32, key: u32) -> Members<'a> {
        Members { nodes: self.nodes, i: self.node(key + 1).end, end: self.node(obj).end }
    }
    /// Element node indexes of an array.
    #[inline]
    pub fn elements(&self, arr: u32) -> Elements<'a> {
        Elements { nodes: self.nodes, i: arr + 1, end: self.node(arr).end }
    }
}

pub struct Members<'a> {
    nodes: &'a [Node],
    i: u32,
    end: u32,
}
impl Iterator for Members<'_> {
    type Item = (u32, u32);
    #[inline]
    fn next(&mut self) -> Option<(u32, u32)> {
        if self.i >= self.end {
            return None;
        }
        let k = self.i;
        self.i = self.nodes[(k + 1) as usize].end;
        Some((k, k + 1))
    }
}

pub struct Elements<'a> {
    nodes: &'a [Node],
    i: u32,
    end: u32,
}
impl Iterator for Elements<'_> {
    type Item = u32;
    #[inline]
    fn next(&mut self) -> Option<u32> {
        if self.i >= self.end {
            return None;
        }
        let e = self.i;
        self.i = self.nodes[e as usize].end;
        Some(e)
    }
}

impl Tape {
    /// Parses one JSON document (any value) and returns its view.
    pub fn parse<'a>(&'a mut self, input: &'a [u8]) -> Result<Doc<'a>, ParseError> {
        self.parse_only(input)?;
        // SAFETY: `input` was just parsed, and is borrowed unchanged
        Ok(unsafe { self.doc(input) })
    }

    /// The view of the last document parsed.
    ///
    /// # Safety
    /// `input` must hold the bytes the last successful
    /// [`Tape::parse_only`] parsed, unchanged: the view reads its strings
    /// as UTF-8 without checking them again.
    pub(crate) unsafe fn doc<'a>(&'a self, input: &'a [u8]) -> Doc<'a> {
        Doc { input, nodes: &self.nodes, scratch: &self.scratch }
    }

    /// Parses into the tape without returning a view.
    pub fn parse_only(&mut self, input: &[u8]) -> Result<(), ParseError> {
        self.nodes.clear();
        self.scratch.clear();
        if input.len() >= u32::MAX as usize {
            return Err(ParseError { at: 0, what: "document too large" });
        }
        let mut p = P { b: input, i: 0, nodes: &mut self.nodes, scratch: &mut self.scratch };
        p.ws();
        p.value(0)?;
        p.ws();
        if p.i != input.len() {
            return Err(ParseError { at: p.i, what: "unexpected data after the JSON value" });
        }
        Ok(())
    }
}

struct P<'a, 'b> {
    b: &'a [u8],
    i: usize,
    nodes: &'b mut Vec<Node>,
    scratch: &'b mut Vec<u8>,
}

impl P<'_, '_> {
    #[inline(always)]
    fn ws(&mut self) {
        // most records have no whitespace between tokens
        if self.b.get(self.i).is_none_or(|&c| c > b' ') {
            return;
        }
        self.ws_run();
    }
    fn ws_run(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if c == b' ' || c == b'\n' || c == b'\t' || c == b'\r' {
                self.i += 1;
            } else {
                break;
            }
        }
    }
    fn err<T>(&self, what: &'static str) -> Result<T, ParseError> {
        Err(ParseError { at: self.i, what })
    }
    #[inline(always)]
    fn push(&mut self, kind: Kind, start: usize, stop: usize) -> usize {
        let idx = self.nodes.len();
        self.nodes.push(Node { kind, start: start as u32, stop: stop as u32, end: idx as u32 + 1 });
        idx
    }
    fn value(&mut self, depth: usize) -> Result<(), ParseError> {
        let start = self.i;
        match self.b.get(self.i) {
            None => self.err("unexpected end of input, expected a value"),
            Some(b'{') => self.container(depth, true),
            Some(b'[') => self.container(depth, false),
            Some(b'"') => self.string(),
            Some(b't') => self.lit(b"true", Kind::True, start),
            Some(b'f') => self.lit(b"false", Kind::False, start),
            Some(b'n') => self.lit(b"null", Kind::Null, start),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => self.err("expected a value"),
        }
    }
    fn lit(&mut self, word: &[u8], kind: Kind, start: usize) -> Result<(), ParseError> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            self.push(kind, start, self.i);
            Ok(())
        } else {
            self.err("invalid literal")
        }
    }
    fn number(&mut self) -> Result<(), ParseError> {
        let start = self.i;
        match scan_number(self.b, start) {
            Ok((end, int)) => {
                self.i = end;
                self.push(if int { Kind::Int } else { Kind::Float }, start, end);
                Ok(())
            }
            Err(e) => {
                self.i = e.at;
                Err(e)
            }
        }
    }
    #[inline(always)]
    fn string(&mut self) -> Result<(), ParseError> {
        let start = self.i + 1;
        let (i, high) = skip_plain(self.b, start);
        if self.b.get(i) == Some(&b'"') {
            if high {
                self.check_utf8(start, i)?;
            }
            self.i = i + 1;
            self.push(Kind::Str, start, i);
            return Ok(());
        }
        self.string_special(start, i)
    }
    /// Checks that `b[start..stop]` (string content between ASCII
    /// delimiters) is valid UTF-8.
    #[cold]
    #[inline(never)]
    fn check_utf8(&mut self, start: usize, stop: usize) -> Result<(), ParseError> {
        std::str::from_utf8(&self.b[start..stop])
            .map(|_| ())
            .map_err(|e| ParseError { at: start + e.valid_up_to(), what: "invalid UTF-8 in string" })
    }
    /// The rest of a string whose first special byte (escape, control
    /// character or end of input) is at `i`: unescaped into scratch behind
    /// a header holding its source range.
    #[cold]
    #[inline(never)]
    fn string_special(&mut self, start: usize, i: usize) -> Result<(), ParseError> {
        let raw_start = start - 1;
        self.scratch.extend_from_slice(&(raw_start as u32).to_le_bytes());
        let header = self.scratch.len();
        self.scratch.extend_from_slice(&[0; 4]); // raw stop, known at the closing quote
        let s_start = self.scratch.len();
        let close = unescape_into(self.b, start, i, self.scratch)?;
        self.i = close + 1;
        let stop = self.scratch.len();
        self.scratch[header..header + 4].copy_from_slice(&(self.i as u32).to_le_bytes());
        self.push(Kind::StrEsc, s_start, stop);
        Ok(())
    }
    fn container(&mut self, depth: usize, object: bool) -> Result<(), ParseError> {
        if depth >= MAX_DEPTH {
            return self.err("nesting deeper than 128 levels");
        }
        let raw_start = self.i;
        let close = if object { b'}' } else { b']' };
        self.i += 1;
        let idx = self.push(if object { Kind::Object } else { Kind::Array }, raw_start, 0);
        self.ws();
        if self.b.get(self.i) == Some(&close) {
            self.i += 1;
        } else {
            loop {
                if object {
                    if self.b.get(self.i) != Some(&b'"') {
                        return self.err("expected a string key");
                    }
                    self.string()?;
                    self.ws();
                    if self.b.get(self.i) != Some(&b':') {
                        return self.err("expected ':' after key");
                    }
                    self.i += 1;
                    self.ws();
                }
                if self.b.get(self.i) == Some(&b'"') {
                    self.string()?;
                } else {
                    self.value(depth + 1)?;
                }
                self.ws();
                match self.b.get(self.i) {
                    Some(b',') => {
                        self.i += 1;
                        self.ws();
                    }
                    Some(&c) if c == close => {
                        self.i += 1;
                        break;
                    }
                    None => return self.err("unexpected end of input in container"),
                    Some(_) => {
                        return self.err(if object { "expected ',' or '}'" } else { "expected ',' or ']'" })
                    }
                }
            }
        }
        let end = self.nodes.len() as u32;
        let n = &mut self.nodes[idx];
        n.end = end;
        n.stop = self.i as u32;
        Ok(())
    }
}

/// Appends the content of the string starting at `start` (just past its
/// opening quote) to `out` with escapes resolved; `i` (≥ `start`) is where
/// the first escape, control character or end of input may be. Returns the
/// index of the closing quote. The content is checked to be UTF-8.
#[cold]
#[inline(never)]
pub(super) fn unescape_into(b: &[u8], start: usize, mut i: usize, out: &mut Vec<u8>) -> Result<usize, ParseError> {
    let utf8 = |stop: usize| {
        std::str::from_utf8(&b[start..stop])
            .map(|_| ())
            .map_err(|e| ParseError { at: start + e.valid_up_to(), what: "invalid UTF-8 in string" })
    };
    out.extend_from_slice(&b[start..i]);
    loop {
        match b.get(i) {
            None => return Err(ParseError { at: i, what: "unterminated string" }),
            Some(b'"') => {
                utf8(i)?;
                return Ok(i);
            }
            Some(b'\\') => {
                let esc = b.get(i + 1).copied();
                i += 2;
                let c = match esc {
                    Some(b'"') => b'"',
                    Some(b'\\') => b'\\',
                    Some(b'/') => b'/',
                    Some(b'b') => 8,
                    Some(b'f') => 12,
                    Some(b'n') => b'\n',
                    Some(b'r') => b'\r',
                    Some(b't') => b'\t',
                    Some(b'u') => {
                        let hi = hex4(b, i).ok_or(ParseError { at: i, what: "invalid \\u escape" })?;
                        i += 4;
                        let cp = if (0xD800..0xDC00).contains(&hi) {
                            if b.get(i) != Some(&b'\\') || b.get(i + 1) != Some(&b'u') {
                                return Err(ParseError { at: i, what: "unpaired surrogate in \\u escape" });
                            }
                            let lo = hex4(b, i + 2).ok_or(ParseError { at: i, what: "invalid \\u escape" })?;
                            if !(0xDC00..0xE000).contains(&lo) {
                                return Err(ParseError { at: i, what: "unpaired surrogate in \\u escape" });
                            }
                            i += 6;
                            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                        } else if (0xDC00..0xE000).contains(&hi) {
                            return Err(ParseError { at: i, what: "unpaired surrogate in \\u escape" });
                        } else {
                            hi
                        };
                        let ch = char::from_u32(cp).ok_or(ParseError { at: i, what: "invalid \\u escape" })?;
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        continue;
                    }
                    _ => return Err(ParseError { at: i - 1, what: "invalid escape in string" }),
                };
                out.push(c);
            }
            Some(&c) if c < 0x20 => return Err(ParseError { at: i, what: "unescaped control character in string" }),
            Some(&c) => {
                out.push(c);
                i += 1;
            }
        }
    }
}

/// Scans a JSON number (RFC 8259 grammar) starting at `start`; returns where
/// it ends and whether it is an integer (no fraction, no exponent).
#[inline]
pub fn scan_number(b: &[u8], start: usize) -> Result<(usize, bool), ParseError> {
    let digits = |mut i: usize| {
        while matches!(b.get(i), Some(b'0'..=b'9')) {
            i += 1;
        }
        i
    };
    let mut i = start + usize::from(b.get(start) == Some(&b'-'));
    match b.get(i) {
        Some(b'0') if matches!(b.get(i + 1), Some(b'0'..=b'9')) => {
            return Err(ParseError { at: i + 1, what: "leading zeros are not allowed in numbers" })
        }
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(i),
        _ => return Err(ParseError { at: i, what: "invalid number" }),
    }
    let mut int = true;
    if b.get(i) == Some(&b'.') {
        let d = digits(i + 1);
        if d == i + 1 {
            return Err(ParseError { at: d, what: "expected digits after the decimal point" });
        }
        (i, int) = (d, false);
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1 + usize::from(matches!(b.get(i + 1), Some(b'+' | b'-')));
        let d = digits(i);
        if d == i {
            return Err(ParseError { at: d, what: "expected digits in the exponent" });
        }
        (i, int) = (d, false);
    }
    Ok((i, int))
}

/// Index of the first byte at or after `i` that is a quote, a backslash or a
/// control character (or `b.len()`): sixteen bytes at a time with SSE2 (part
/// of every x86_64 CPU), then eight at a time, then one. The flag is true
/// when a byte above 0x7f was seen on the way (it may also be set by such a
/// byte shortly after the stop: a false alarm only costs a UTF-8 check).
#[inline(always)]
pub(super) fn skip_plain(b: &[u8], mut i: usize) -> (usize, bool) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is in the x86_64 baseline; every load reads 16 bytes
        // that lie inside `b` (checked by the loop condition).
        unsafe {
            let quote = _mm_set1_epi8(b'"' as i8);
            let slash = _mm_set1_epi8(b'\\' as i8);
            let ctl = _mm_set1_epi8(0x1f);
            let mut high = 0;
            while i + 16 <= b.len() {
                let v = _mm_loadu_si128(b.as_ptr().add(i) as *const __m128i);
                high |= _mm_movemask_epi8(v);
                // control: max(v, 0x1f) == 0x1f  <=>  v <= 0x1f (unsigned)
                let hit = _mm_or_si128(
                    _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, slash)),
                    _mm_cmpeq_epi8(_mm_max_epu8(v, ctl), ctl),
                );
                let mask = _mm_movemask_epi8(hit) as u32;
                if mask != 0 {
                    return (i + mask.trailing_zeros() as usize, high != 0);
                }
                i += 16;
            }
            if high != 0 {
                let (stop, _) = skip_plain_tail(b, i);
                return (stop, true);
            }
        }
    }
    skip_plain_tail(b, i)
}

/// `skip_plain` without SSE2: eight bytes at a time, then one.
#[inline(always)]
fn skip_plain_tail(b: &[u8], mut i: usize) -> (usize, bool) {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut high = 0u64;
    while i + 8 <= b.len() {
        let w = u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        let quote = w ^ (LO * b'"' as u64);
        let slash = w ^ (LO * b'\\' as u64);
        // a byte is "special" when it is zero after the xor, or below 0x20
        let hit = (quote.wrapping_sub(LO) & !quote) | (slash.wrapping_sub(LO) & !slash) | (w.wrapping_sub(LO * 0x20) & !w);
        let hit = hit & HI;
        high |= w & HI;
        if hit != 0 {
            return (i + (hit.trailing_zeros() / 8) as usize, high != 0);
        }
        i += 8;
    }
    while i < b.len() && b[i] != b'"' && b[i] != b'\\' && b[i] >= 0x20 {
        high |= u64::from(b[i] & 0x80);
        i += 1;
    }
    (i, high != 0)
}

/// Appends `b[start..end]` to `out`. A run of at most 16 bytes with 16
/// readable bytes from `start` (most string values) is one 16-byte block
/// copy instead of a call to `memcpy`; the bytes past the run land in
/// `out`'s spare capacity, beyond its length, where they mean nothing.
#[inline(always)]
pub(super) fn append_run(out: &mut Vec<u8>, b: &[u8], start: usize, end: usize) {
    let n = end - start;
    if n <= 16 && start + 16 <= b.len() {
        out.reserve(16);
        // SAFETY: 16 bytes from `start` lie inside `b` (checked above), and
        // `reserve` made room for 16 bytes past `out`'s length; the new
        // length covers only the n <= 16 bytes of the run.
        unsafe {
            std::ptr::copy_nonoverlapping(b.as_ptr().add(start), out.as_mut_ptr().add(out.len()), 16);
            out.set_len(out.len() + n);
        }
    } else {
        out.extend_from_slice(&b[start..end]);
    }
}

fn hex4(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    let mut v = 0u32;
    for &c in s {
        v = v * 16 + (c as char).to_digit(16)?;
    }
    Some(v)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Seeded byte mutations of JSON text (xorshift), for differential tests.
    pub struct Mutator(pub u64);

    impl Mutator {
        pub fn next(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
        /// Deletes, replaces or inserts a byte of `alphabet` `times` times.
        pub fn mutate(&mut self, doc: &mut Vec<u8>, alphabet: &[u8], times: usize) {
            for _ in 0..times {
                let at = self.next(doc.len() + 1);
                let c = alphabet[self.next(alphabet.len())];
                match self.next(3) {
                    0 if at < doc.len() => {
                        doc.remove(at);
                    }
                    1 if at < doc.len() => doc[at] = c,
                    _ => doc.insert(at, c),
                }
            }
        }
    }

    fn ok(s: &str) -> Vec<Kind> {
        let mut t = Tape::default();
        let d = t.parse(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"));
        d.nodes.iter().map(|n| n.kind).collect()
    }
    fn bad(s: &str) -> ParseError {
        let mut t = Tape::default();
        match t.parse(s.as_bytes()) {
            Ok(_) => panic!("accepted {s:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn parses_nested_documents() {
        assert_eq!(
            ok(r#"{"a":1,"b":[true,null,2.5e3],"c":{"d":"x\"y"}}"#),
            vec![Kind::Object, Kind::Str, Kind::Int, Kind::Str, Kind::Array, Kind::True, Kind::Null,
                 Kind::Float, Kind::Str, Kind::Object, Kind::Str, Kind::StrEsc]
        );
        let mut t = Tape::default();
        let d = t.parse(br#"{"k": [1, 2], "s": "caf\u00e9 \ud83d\ude00", "e": {}}"#).unwrap();
        let m: Vec<_> = d.members(0).map(|(k, _)| d.str(k)).collect();
        assert_eq!(m, vec!["k", "s", "e"]);
        let (_, arr) = d.members(0).next().unwrap();
        assert_eq!(d.elements(arr).count(), 2);
        assert_eq!(d.raw_str(arr), "[1, 2]");
        let (_, s) = d.members(0).nth(1).unwrap();
        assert_eq!(d.str(s), "café 😀");
    }

    #[test]
    fn raw_text_of_every_node_kind() {
        let src = r#"{"a\"b": "x\ny", "n": -1.5e3, "s": "plain", "t": true, "o": {"k": [1, null]}}"#;
        let mut t = Tape::default();
        let d = t.parse(src.as_bytes()).unwrap();
        let raws: Vec<&str> = d.members(0).flat_map(|(k, v)| [d.raw_str(k), d.raw_str(v)]).collect();
        assert_eq!(raws, [r#""a\"b""#, r#""x\ny""#, r#""n""#, "-1.5e3", r#""s""#, r#""plain""#, r#""t""#, "true", r#""o""#, r#"{"k": [1, null]}"#]);
        let (k, v) = d.members(0).next().unwrap();
        assert_eq!((d.str(k), d.str(v)), ("a\"b", "x\ny"));
        assert_eq!(d.raw_str(0), src);
        assert_eq!((d.count(0), d.count(d.members(0).last().unwrap().1)), (5, 1));
    }

    /// Every run length on both sides of the block size, with and without
    /// 16 readable bytes after the start, lands exactly.
    #[test]
    fn runs_append_exactly() {
        let src: Vec<u8> = (0u8..40).collect();
        for start in 0..src.len() {
            for end in start..=src.len() {
                let mut out = b"xy".to_vec();
                append_run(&mut out, &src, start, end);
                append_run(&mut out, &src, start, end);
                let mut want = b"xy".to_vec();
                want.extend_from_slice(&src[start..end]);
                want.extend_from_slice(&src[start..end]);
                assert_eq!(out, want, "{start}..{end}");
            }
        }
    }

    /// The vector scan must stop exactly where the byte-at-a-time scan does,
    /// wherever the special byte falls relative to the 16- and 8-byte blocks.
    #[test]
    fn skip_plain_matches_the_plain_scan() {
        let naive = |b: &[u8], i: usize| (i..b.len()).find(|&j| b[j] == b'"' || b[j] == b'\\' || b[j] < 0x20).unwrap_or(b.len());
        for len in 0..40 {
            for at in 0..=len {
                for special in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                    let mut b: Vec<u8> = (0..len).map(|j| [b'a', 0x20, 0x7f, 0x80, 0xc3, 0xff, b'!', b'#'][j % 8]).collect();
                    if at < len {
                        b[at] = special;
                    }
                    for start in [0, 1, 3].into_iter().filter(|&s| s <= len) {
                        let (stop, high) = skip_plain(&b, start);
                        assert_eq!(stop, naive(&b, start), "len {len} special {special} at {at} from {start}");
                        // a byte above 0x7f before the stop is never missed
                        if b[start..stop].iter().any(|&c| c >= 0x80) {
                            assert!(high, "len {len} special {special} at {at} from {start}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn refuses_invalid_utf8_wherever_it_is() {
        let bad_utf8 = |b: &[u8]| {
            let mut t = Tape::default();
            match t.parse(b) {
                Ok(_) => panic!("accepted {b:?}"),
                Err(e) => e,
            }
        };
        // in a value, long enough for the vector scan, after valid multibyte text
        let e = bad_utf8(b"{\"a\":\"caf\xc3\xa9 and more text past sixteen bytes \xff\"}");
        assert_eq!((e.what, e.at), ("invalid UTF-8 in string", 45));
        assert_eq!(bad_utf8(b"{\"k\xc3\":1}").what, "invalid UTF-8 in string"); // truncated sequence in a key
        assert_eq!(bad_utf8(b"{\"a\":\"x\\n\xed\xa0\x80\"}").what, "invalid UTF-8 in string"); // surrogate, escaped string
        assert_eq!(bad_utf8(b"{\"a\":\"\xc0\xaf\"}").what, "invalid UTF-8 in string"); // overlong
        bad_utf8(b"{\"a\":1\xa0}"); // outside strings: a syntax error
        let mut t = Tape::default();
        let d = t.parse("{\"é\":\"日本語 ok \\u00e9 😀\"}".as_bytes()).unwrap();
        let (k, v) = d.members(0).next().unwrap();
        assert_eq!((d.str(k), d.str(v)), ("é", "日本語 ok é 😀"));
    }

    /// The tape as a serde_json value: duplicate keys last-wins, numbers by
    /// their source text.
    fn to_value(d: &Doc, i: u32) -> serde_json::Value {
        use serde_json::Value;
        match d.node(i).kind {
            Kind::Null => Value::Null,
            Kind::True => Value::Bool(true),
            Kind::False => Value::Bool(false),
            Kind::Int | Kind::Float => serde_json::from_slice(d.raw(i)).expect("a number the parser accepted"),
            Kind::Str | Kind::StrEsc => Value::String(d.str(i).to_string()),
            Kind::Array => Value::Array(d.elements(i).map(|e| to_value(d, e)).collect()),
            Kind::Object => Value::Object(d.members(i).map(|(k, v)| (d.str(k).to_string(), to_value(d, v))).collect()),
        }
    }

    /// Differential check against serde_json, an independent strict RFC 8259
    /// parser: on byte-level mutations of realistic records, both accept or
    /// both refuse, and what both accept has the same value.
    #[test]
    fn agrees_with_serde_json_on_mutated_records() {
        let seeds: [&[u8]; 5] = [
            br#"{"event_id":"e-1","timestamp":"2026-11-21T13:05:00.123Z","user_id":42,"page":{"url":"https://x.io/a?b=1","title":"Caf\u00e9 \"quoted\""},"tags":["a","b"],"revenue":-12.5e-3,"is_bot":false,"x":null}"#,
            "{\"city\": \"São Paulo\", \"n\": [1, 2.0, -0, 3E+2, true, null, {}], \"s\": \"tab\\tnew\\nline \\ud83d\\ude00\"}".as_bytes(),
            br#"[{"a":{"b":{"c":[[],[[]],""]}}},"\/\\\b\f",0.5,-1]"#,
            br#"{"k":"0123456789abcdef0123456789abcdef long enough for the vector scan","k":"dup"}"#,
            b"  {\"sp\" :\t1 ,\n\"x\": \"\xe6\x97\xa5\" }  ",
        ];
        let alphabet = b"{}[]:,\"\\ \t\n0123456789-+.eEtrufalsnu/\x01\x7f\xc3\xa9\xe6\xff";
        let mut m = Mutator(0x9e37_79b9_7f4a_7c15);
        let mut tape = Tape::default();
        let (mut accepted, mut refused) = (0, 0);
        for round in 0..40_000 {
            let mut doc = seeds[round % seeds.len()].to_vec();
            let times = 1 + m.next(3);
            m.mutate(&mut doc, alphabet, times);
            let theirs = serde_json::from_slice::<serde_json::Value>(&doc);
            if matches!(&theirs, Err(e) if e.to_string().contains("number out of range")) {
                continue; // serde_json refuses numbers beyond f64; text is all we keep
            }
            match (tape.parse(&doc), theirs) {
                (Ok(d), Ok(v)) => {
                    assert_eq!(to_value(&d, 0), v, "{}", String::from_utf8_lossy(&doc));
                    accepted += 1;
                }
                (Err(_), Err(_)) => refused += 1,
                (ours, theirs) => panic!(
                    "disagree on {:?}: ours {:?}, serde_json {:?}",
                    String::from_utf8_lossy(&doc),
                    ours.err(),
                    theirs.err().map(|e| e.to_string())
                ),
            }
        }
        // both outcomes are exercised in quantity
        assert!(accepted > 2_000 && refused > 20_000, "accepted {accepted}, refused {refused}");
    }

    #[test]
    fn refuses_what_rfc8259_forbids() {
        assert_eq!(bad(r#"{"a":1 "b":2}"#).what, "expected ',' or '}'");
        bad(r#"{"a":1,}"#);
        bad(r#"[1,2,]"#);
        bad(r#"{"a":01}"#);
        bad(r#"{"a":NaN}"#);
        bad(r#"{"a":1.}"#);
        bad(r#"{"a":.5}"#);
        bad(r#"{"a":1e}"#);
        bad("{\"a\":\"tab\there\"}");
        bad(r#"{"a":"\x"}"#);
        bad(r#"{"a":"\ud800"}"#);
        bad(r#"{"a":tru}"#);
        bad(r#"{a:1}"#);
        bad(r#"{"a":1}{"b":2}"#);
        bad(r#"{"a":1"#);
        bad(r#""#);
        bad(&("[".repeat(200) + &"]".repeat(200)));
    }
}
