//! Timestamp parsing and formatting without a calendar library.
//!
//! Input: JSON string or number text and a list of [`TsFormat`]s from the
//! schema file. Output: milliseconds since the Unix epoch, UTC (the unit of
//! every timestamp column). Failure: `None`; the caller names the column and
//! value. Fractions finer than a millisecond are floored to the
//! millisecond (the column unit). Formatting turns epoch millis back into
//! `yyyy-MM-dd`/`HH` text for partition paths.

/// One accepted timestamp spelling.
#[derive(Debug, Clone, PartialEq)]
pub enum TsFormat {
    /// `2026-11-21T13:05:00Z`, with `T` or a space, optional fraction, and an
    /// optional `Z`/`±HH:MM`/`±HHMM`/`±HH` offset (none means UTC).
    Rfc3339,
    /// Integer milliseconds since the epoch (JSON number or numeric string).
    EpochMillis,
    /// Seconds since the epoch, integer or with a fraction.
    EpochSeconds,
    /// A Joda/Java-style pattern such as `yyyy-MM-dd HH:mm:ss[.SSS]`.
    Pattern(Vec<PatTok>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum PatTok {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Fraction,
    Offset,
    Lit(u8),
    Optional(Vec<PatTok>),
}

impl TsFormat {
    /// Parses a format name from a schema file.
    pub fn parse(s: &str) -> Result<TsFormat, String> {
        match s.to_ascii_lowercase().as_str() {
            "rfc3339" | "iso8601" => Ok(TsFormat::Rfc3339),
            "epoch_millis" | "millis" => Ok(TsFormat::EpochMillis),
            "epoch_seconds" | "seconds" => Ok(TsFormat::EpochSeconds),
            _ => compile_pattern(s, true).map(TsFormat::Pattern),
        }
    }

    /// Whether values are numbers since the epoch (which a wrong unit
    /// silently misplaces; see [`PLAUSIBLE`]).
    pub fn is_epoch(&self) -> bool {
        matches!(self, TsFormat::EpochMillis | TsFormat::EpochSeconds)
    }

    /// Parses a string value; numbers in strings are accepted by the epoch formats.
    pub fn parse_str(&self, s: &str) -> Option<i64> {
        match self {
            TsFormat::Rfc3339 => parse_rfc3339(s.as_bytes()),
            TsFormat::EpochMillis => parse_int(s).and_then(|v| (v.unsigned_abs() < 1 << 53).then_some(v)),
            TsFormat::EpochSeconds => parse_seconds(s),
            TsFormat::Pattern(toks) => {
                let mut st = PatState::default();
                let b = s.as_bytes();
                let end = match_tokens(toks, b, 0, &mut st)?;
                (end == b.len()).then_some(())?;
                st.to_millis()
            }
        }
    }
}

/// Epoch millis of event times that are plausible: 2000-01-01 up to
/// 2100-01-01. Epoch seconds read as millis land in January 1970, millis
/// read as seconds tens of thousands of years ahead.
pub const PLAUSIBLE: std::ops::Range<i64> = 946_684_800_000..4_102_444_800_000;

/// The default list when a timestamp column names no `formats`.
pub fn default_formats() -> Vec<TsFormat> {
    vec![TsFormat::Rfc3339, TsFormat::EpochMillis]
}

fn parse_int(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let digits = if b.first() == Some(&b'-') { &b[1..] } else { b };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.parse().ok()
}

fn parse_seconds(s: &str) -> Option<i64> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if int.len() > 12 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let neg = int.starts_with('-');
    let secs = parse_int(int)?;
    let mut ms = 0i64;
    for (i, d) in frac.bytes().take(3).enumerate() {
        ms += (d - b'0') as i64 * [100, 10, 1][i];
    }
    let total = secs * 1000 + if neg { -ms } else { ms };
    // floor sub-millisecond remainders of negative values
    let extra = frac.len() > 3 && frac.bytes().skip(3).any(|d| d != b'0');
    Some(if neg && extra { total - 1 } else { total })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// (year, month, day) of a day number since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Broken-down UTC time of epoch millis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

pub fn civil(ms: i64) -> Civil {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000) / 1000;
    let (year, month, day) = civil_from_days(days);
    Civil { year, month, day, hour: (rem / 3600) as u32, minute: (rem / 60 % 60) as u32, second: (rem % 60) as u32 }
}

/// Parses `yyyy-MM-dd` into days since the epoch.
pub fn parse_date(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = digits(b, 0, 4)? as i64;
    let m = digits(b, 5, 2)?;
    let d = digits(b, 8, 2)?;
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    i32::try_from(days_from_civil(y, m, d)).ok()
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = b.get(at..at + n)?;
    let mut v = 0u32;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

fn parse_rfc3339(b: &[u8]) -> Option<i64> {
    if let Ok(b) = <&[u8; 24]>::try_from(b) {
        if let Some(ms) = rfc3339_millis_z(b) {
            return Some(ms);
        }
    }
    parse_rfc3339_any(b)
}

/// Every RFC 3339 shape lakehose accepts (see [`TsFormat::Rfc3339`]).
fn parse_rfc3339_any(b: &[u8]) -> Option<i64> {
    if b.len() < 16 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' {
        return None;
    }
    let mut st = PatState {
        year: digits(b, 0, 4)? as i64,
        month: digits(b, 5, 2)?,
        day: digits(b, 8, 2)?,
        hour: digits(b, 11, 2)?,
        minute: digits(b, 14, 2)?,
        ..PatState::default()
    };
    let mut i = 16;
    if b.get(i) == Some(&b':') {
        st.second = digits(b, i + 1, 2)?;
        i += 3;
        if matches!(b.get(i), Some(b'.') | Some(b',')) {
            i += 1;
            let n = fraction(b, i, &mut st.millis)?;
            i += n;
        }
    }
    if i < b.len() {
        let n = offset(b, i, &mut st.offset_min)?;
        i += n;
    }
    (i == b.len()).then_some(())?;
    st.to_millis()
}

/// `yyyy-MM-ddTHH:mm:ss.SSSZ`, the shape most producers write, read with
/// one check over all its digits instead of one loop per field. `None`
/// for anything else (the general parser then decides).
#[inline(always)]
fn rfc3339_millis_z(b: &[u8; 24]) -> Option<i64> {
    const DIGITS: [usize; 17] = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22];
    let seps = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.'), (23, b'Z')];
    if seps.iter().any(|&(i, c)| b[i] != c) || DIGITS.iter().any(|&i| !b[i].is_ascii_digit()) {
        return None;
    }
    let d = |i: usize| (b[i] - b'0') as u32;
    let two = |i: usize| d(i) * 10 + d(i + 1);
    let st = PatState {
        year: (two(0) * 100 + two(2)) as i64,
        month: two(5),
        day: two(8),
        hour: two(11),
        minute: two(14),
        second: two(17),
        millis: d(20) * 100 + two(21),
        ..PatState::default()
    };
    st.to_millis()
}

/// Reads 1..=9 fraction digits into millis; returns digits consumed.
fn fraction(b: &[u8], at: usize, millis: &mut u32) -> Option<usize> {
    let mut n = 0;
    let mut v = 0u32;
    while let Some(c) = b.get(at + n).filter(|c| c.is_ascii_digit()) {
        if n < 3 {
            v = v * 10 + (c - b'0') as u32;
        }
        n += 1;
    }
    if n == 0 || n > 9 {
        return None;
    }
    for _ in n..3 {
        v *= 10;
    }
    *millis = v;
    Some(n)
}

/// Reads `Z`, `±HH:MM`, `±HHMM` or `±HH`; returns bytes consumed.
fn offset(b: &[u8], at: usize, out: &mut i32) -> Option<usize> {
    match b.get(at)? {
        b'Z' | b'z' => {
            *out = 0;
            Some(1)
        }
        s @ (b'+' | b'-') => {
            let sign = if *s == b'-' { -1 } else { 1 };
            let h = digits(b, at + 1, 2)?;
            let (m, n) = if b.get(at + 3) == Some(&b':') {
                (digits(b, at + 4, 2)?, 6)
            } else if let Some(m) = digits(b, at + 3, 2) {
                (m, 5)
            } else {
                (0, 3)
            };
            if h > 23 || m > 59 {
                return None;
            }
            *out = sign * (h * 60 + m) as i32;
            Some(n)
        }
        _ => None,
    }
}

#[derive(Debug, Default, Clone)]
struct PatState {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    millis: u32,
    offset_min: i32,
}

impl PatState {
    fn to_millis(&self) -> Option<i64> {
        if !(1..=12).contains(&self.month)
            || self.day == 0
            || self.day > days_in_month(self.year, self.month)
            || self.hour > 23
            || self.minute > 59
            || self.second > 59
        {
            return None;
        }
        let days = days_from_civil(self.year, self.month, self.day);
        let secs = days * 86400 + (self.hour * 3600 + self.minute * 60 + self.second) as i64;
        Some(secs * 1000 + self.millis as i64 - self.offset_min as i64 * 60_000)
    }
}

fn compile_pattern(s: &str, need_date: bool) -> Result<Vec<PatTok>, String> {
    fn go(b: &[u8], i: &mut usize, nested: bool) -> Result<Vec<PatTok>, String> {
        let mut out = Vec::new();
        let mut fields = 0;
        while *i < b.len() {
            let c = b[*i];
            let run = b[*i..].iter().take_while(|&&x| x == c).count();
            let tok = match (c, run) {
                (b'y', 4) => PatTok::Year,
                (b'M', 2) => PatTok::Month,
                (b'd', 2) => PatTok::Day,
                (b'H', 2) => PatTok::Hour,
                (b'm', 2) => PatTok::Minute,
                (b's', 2) => PatTok::Second,
                (b'S', 1..=9) => PatTok::Fraction,
                (b'X', 1..=3) | (b'Z', 1..=3) | (b'x', 1..=3) => PatTok::Offset,
                (b'[', _) => {
                    *i += 1;
                    let inner = go(b, i, true)?;
                    out.push(PatTok::Optional(inner));
                    continue;
                }
                (b']', _) if nested => {
                    *i += 1;
                    return Ok(out);
                }
                (b'\'', _) => {
                    let end = b[*i + 1..].iter().position(|&x| x == b'\'').ok_or("unclosed quote")?;
                    for &l in &b[*i + 1..*i + 1 + end] {
                        out.push(PatTok::Lit(l));
                    }
                    *i += end + 2;
                    continue;
                }
                (c, _) if c.is_ascii_alphabetic() => {
                    return Err(format!(
                        "unsupported pattern letters '{}' (use yyyy, MM, dd, HH, mm, ss, SSS, XXX)",
                        String::from_utf8_lossy(&b[*i..*i + run])
                    ))
                }
                (c, _) => {
                    *i += 1;
                    out.push(PatTok::Lit(c));
                    continue;
                }
            };
            fields += 1;
            *i += run;
            out.push(tok);
        }
        if nested {
            return Err("unclosed '['".into());
        }
        if fields == 0 {
            return Err("pattern has no date fields".into());
        }
        Ok(out)
    }
    let b = s.as_bytes();
    let toks = go(b, &mut 0, false)?;
    if need_date && !(toks.contains(&PatTok::Year) && toks.contains(&PatTok::Month) && toks.contains(&PatTok::Day)) {
        return Err(format!("pattern {s:?} needs yyyy, MM and dd"));
    }
    Ok(toks)
}

fn match_tokens(toks: &[PatTok], b: &[u8], mut i: usize, st: &mut PatState) -> Option<usize> {
    for t in toks {
        match t {
            PatTok::Year => {
                st.year = digits(b, i, 4)? as i64;
                i += 4;
            }
            PatTok::Month => {
                st.month = digits(b, i, 2)?;
                i += 2;
            }
            PatTok::Day => {
                st.day = digits(b, i, 2)?;
                i += 2;
            }
            PatTok::Hour => {
                st.hour = digits(b, i, 2)?;
                i += 2;
            }
            PatTok::Minute => {
                st.minute = digits(b, i, 2)?;
                i += 2;
            }
            PatTok::Second => {
                st.second = digits(b, i, 2)?;
                i += 2;
            }
            PatTok::Fraction => i += fraction(b, i, &mut st.millis)?,
            PatTok::Offset => i += offset(b, i, &mut st.offset_min)?,
            PatTok::Lit(c) => {
                (b.get(i)? == c).then_some(())?;
                i += 1;
            }
            PatTok::Optional(inner) => {
                let mut trial = st.clone();
                if let Some(j) = match_tokens(inner, b, i, &mut trial) {
                    *st = trial;
                    i = j;
                }
            }
        }
    }
    Some(i)
}

/// Formats epoch millis with a pattern of yyyy, MM, dd, HH, mm, ss and literals
/// (the `!{timestamp:…}` namespace of a Firehose-style layout).
pub fn format_pattern(ms: i64, toks: &[PatTok], out: &mut String) {
    fn digits(out: &mut String, v: i64, width: u32) {
        if v < 0 || v >= 10i64.pow(width) {
            out.push_str(&format!("{v:0w$}", w = width as usize));
            return;
        }
        for p in (0..width).rev() {
            out.push((b'0' + (v / 10i64.pow(p) % 10) as u8) as char);
        }
    }
    let c = civil(ms);
    for t in toks {
        match t {
            PatTok::Year => digits(out, c.year, 4),
            PatTok::Month => digits(out, c.month as i64, 2),
            PatTok::Day => digits(out, c.day as i64, 2),
            PatTok::Hour => digits(out, c.hour as i64, 2),
            PatTok::Minute => digits(out, c.minute as i64, 2),
            PatTok::Second => digits(out, c.second as i64, 2),
            PatTok::Fraction => digits(out, ms.rem_euclid(1000), 3),
            PatTok::Offset => out.push('Z'),
            PatTok::Lit(l) => out.push(*l as char),
            PatTok::Optional(inner) => format_pattern(ms, inner, out),
        }
    }
}

/// Compiles an output pattern for layouts (same letters as input patterns,
/// but a date-only or hour-only pattern such as `HH` is allowed).
pub fn compile_output_pattern(s: &str) -> Result<Vec<PatTok>, String> {
    compile_pattern(s, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Day numbers ↔ proleptic Gregorian dates agree with chrono's over
    /// ±10⁶ days (years -768 to 4707).
    #[test]
    fn civil_dates_agree_with_chrono() {
        use chrono::Datelike;
        for z in -1_000_000i64..=1_000_000 {
            let d = chrono::NaiveDate::from_num_days_from_ce_opt((z + 719_163) as i32).unwrap();
            let want = (d.year() as i64, d.month(), d.day());
            assert_eq!(civil_from_days(z), want, "day {z}");
            assert_eq!(days_from_civil(want.0, want.1, want.2), z, "{want:?}");
        }
    }

    /// RFC 3339 texts of random instants (years 1000 to 9999, 0 to 9
    /// fraction digits, `Z` or an offset) parse to the epoch millis chrono
    /// gives (sub-millisecond digits floored), and `civil` of an instant is
    /// chrono's UTC date and time.
    #[test]
    fn rfc3339_and_civil_agree_with_chrono() {
        use chrono::{Datelike, Timelike};
        let mut next = crate::hash::xorshift(0x3339);
        let (lo, hi) = (-30_610_224_000_000i64, 253_402_300_799_999i64); // 1000-01-01 .. 9999-12-31
        for _ in 0..200_000 {
            let ms = lo + (next() % (hi - lo) as u64) as i64;
            let nanos_extra = (next() % 1_000_000) as u32;
            let off_min: i32 = match next() % 4 {
                0 => 0,
                _ => (next() % (24 * 60 * 2 - 1)) as i32 - (24 * 60 - 1),
            };
            let utc = chrono::DateTime::from_timestamp_millis(ms).unwrap() + chrono::Duration::nanoseconds(nanos_extra as i64);
            let c = civil(ms);
            let want = (utc.year() as i64, utc.month(), utc.day(), utc.hour(), utc.minute(), utc.second());
            assert_eq!((c.year, c.month, c.day, c.hour, c.minute, c.second), want, "civil({ms})");
            let local = utc.naive_utc() + chrono::Duration::minutes(off_min as i64);
            if !(1000..=9999).contains(&local.year()) {
                continue;
            }
            let digits = (next() % 10) as usize;
            let frac = format!("{:09}", local.nanosecond());
            let frac = if digits == 0 { String::new() } else { format!(".{}", &frac[..digits]) };
            let off = if off_min == 0 && next() % 2 == 0 {
                "Z".to_string()
            } else {
                format!("{}{:02}:{:02}", if off_min < 0 { '-' } else { '+' }, off_min.abs() / 60, off_min.abs() % 60)
            };
            let text = format!("{}{frac}{off}", local.format("%Y-%m-%dT%H:%M:%S"));
            let theirs = chrono::DateTime::parse_from_rfc3339(&text).unwrap().timestamp_millis();
            assert_eq!(TsFormat::Rfc3339.parse_str(&text), Some(theirs), "{text}");
        }
    }

    fn p(f: &str, s: &str) -> Option<i64> {
        TsFormat::parse(f).unwrap().parse_str(s)
    }

    #[test]
    fn rfc3339_variants() {
        let base = 1_763_730_300_000; // 2025-11-21T13:05:00Z
        assert_eq!(p("rfc3339", "2025-11-21T13:05:00Z"), Some(base));
        assert_eq!(p("rfc3339", "2025-11-21 13:05:00"), Some(base));
        assert_eq!(p("rfc3339", "2025-11-21T13:05:00.123Z"), Some(base + 123));
        assert_eq!(p("rfc3339", "2025-11-21T13:05:00.123456789Z"), Some(base + 123));
        assert_eq!(p("rfc3339", "2025-11-21T15:05:00+02:00"), Some(base));
        assert_eq!(p("rfc3339", "2025-11-21T15:05:00+0200"), Some(base));
        assert_eq!(p("rfc3339", "2025-11-21T08:05:00-05"), Some(base));
        assert_eq!(p("rfc3339", "2025-11-21T13:05Z"), Some(base));
        assert_eq!(p("rfc3339", "2025-02-30T13:05:00Z"), None);
        assert_eq!(p("rfc3339", "2025-11-21T24:00:00Z"), None);
        assert_eq!(p("rfc3339", "2025-11-21T13:05:00Zjunk"), None);
        assert_eq!(p("rfc3339", "yesterday"), None);
    }

    #[test]
    fn the_millis_z_shortcut_agrees_with_the_general_parser() {
        // valid instants across leap years and month ends, then every
        // single-byte mutation of each: the shortcut must give what the
        // general parser gives, and must take every valid value of its shape
        let seeds = ["2024-02-29T23:59:59.999Z", "2025-11-21T13:05:00.123Z", "1970-01-01T00:00:00.000Z", "0001-01-01T00:00:00.000Z", "2100-12-31T12:30:45.007Z", "1969-12-31T23:59:59.999Z"];
        let mut checked = 0;
        for seed in seeds {
            let full = seed.as_bytes().try_into().unwrap();
            assert_eq!(rfc3339_millis_z(full), parse_rfc3339_any(seed.as_bytes()), "{seed}");
            assert!(rfc3339_millis_z(full).is_some(), "{seed}");
            for at in 0..24 {
                for c in [b'0', b'1', b'2', b'3', b'5', b'9', b'-', b':', b'.', b'T', b't', b' ', b'Z', b'z', b'+', b'a', b'/'] {
                    let mut m: [u8; 24] = *full;
                    m[at] = c;
                    let general = parse_rfc3339_any(&m);
                    let fast = rfc3339_millis_z(&m);
                    assert!(fast.is_none() || fast == general, "{}", String::from_utf8_lossy(&m));
                    if m[10] == b'T' && m[19] == b'.' && m[23] == b'Z' {
                        assert_eq!(fast, general, "{}", String::from_utf8_lossy(&m));
                    }
                    checked += usize::from(fast.is_some());
                }
            }
        }
        assert!(checked > 500, "{checked}");
        assert_eq!(parse_rfc3339(b"2024-02-30T00:00:00.000Z"), None);
        assert_eq!(parse_rfc3339(b"2023-02-29T00:00:00.000Z"), None);
        assert_eq!(parse_rfc3339(b"2025-11-21T13:05:60.000Z"), None);
    }

    #[test]
    fn epochs_and_patterns() {
        assert_eq!(p("epoch_millis", "1763730300123"), Some(1_763_730_300_123));
        assert_eq!(p("epoch_millis", "17.5"), None);
        assert_eq!(p("epoch_seconds", "1763730300"), Some(1_763_730_300_000));
        assert_eq!(p("epoch_seconds", "1763730300.25"), Some(1_763_730_300_250));
        assert_eq!(p("epoch_seconds", "-1.5"), Some(-1500));
        assert_eq!(p("yyyy-MM-dd HH:mm:ss[.SSS]", "2025-11-21 13:05:00"), Some(1_763_730_300_000));
        assert_eq!(p("yyyy-MM-dd HH:mm:ss[.SSS]", "2025-11-21 13:05:00.5"), Some(1_763_730_300_500));
        assert_eq!(p("dd/MM/yyyy HH:mm", "21/11/2025 13:05"), Some(1_763_730_300_000));
        assert_eq!(p("yyyy-MM-dd'T'HH:mm:ssXXX", "2025-11-21T14:05:00+01:00"), Some(1_763_730_300_000));
        assert!(TsFormat::parse("yyyy-QQ").is_err());
        assert!(TsFormat::parse("HH:mm").is_err());
    }

    #[test]
    fn civil_roundtrip_and_dates() {
        for days in [-800_000i64, -1, 0, 59, 365, 11_016, 20_413, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(parse_date("2024-02-29"), Some(19_782));
        assert_eq!(parse_date("2023-02-29"), None);
        let c = civil(1_763_730_300_000);
        assert_eq!((c.year, c.month, c.day, c.hour, c.minute), (2025, 11, 21, 13, 5));
        let mut s = String::new();
        format_pattern(1_763_730_300_000, &compile_output_pattern("yyyy/MM/dd/HH").unwrap(), &mut s);
        assert_eq!(s, "2025/11/21/13");
    }
}
