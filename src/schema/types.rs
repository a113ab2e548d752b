//! Hive/Glue column types, as Athena DDL spells them.
//!
//! Input: a type string such as `decimal(10,2)` or
//! `array<struct<os:string,tags:map<string,int>>>`. Output: a [`ColType`]
//! tree that maps to an Arrow type (and so to the Parquet type Athena
//! expects) and prints back as the canonical Glue type string.
//! Failure: [`TypeError`] saying where in the string parsing stopped and
//! which type names are allowed.

use arrow_schema::{DataType, Field, Fields, TimeUnit};
use std::sync::Arc;

/// Every type name the parser accepts, for error messages.
pub const ALLOWED: &str = "boolean, tinyint, smallint, int, bigint, float, double, decimal(p,s), \
string, varchar(n), date, timestamp, binary, array<T>, map<K,V>, struct<name:T,...>";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColType {
    Boolean,
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Float,
    Double,
    Decimal { precision: u8, scale: u8 },
    String,
    Varchar(u32),
    Date,
    Timestamp,
    Binary,
    Array(Box<ColType>),
    Map(Box<ColType>, Box<ColType>),
    Struct(Vec<StructField>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructField {
    pub name: String,
    pub ty: ColType,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{message} in type {input:?} at character {at} (allowed: {ALLOWED})")]
pub struct TypeError {
    pub input: String,
    pub at: usize,
    pub message: String,
}

/// Timezone stored on every timestamp column: Parquet `isAdjustedToUTC=true`.
pub const UTC: &str = "UTC";

impl ColType {
    pub fn parse(input: &str) -> Result<ColType, TypeError> {
        let lower = input.to_ascii_lowercase();
        let mut p = TypeParser { s: lower.as_bytes(), i: 0, input };
        let t = p.parse_type()?;
        p.skip_ws();
        if p.i != p.s.len() {
            return Err(p.err("unexpected trailing text"));
        }
        Ok(t)
    }

    /// The Arrow type the decoder builds and the Parquet writer maps.
    pub fn arrow(&self) -> DataType {
        match self {
            ColType::Boolean => DataType::Boolean,
            ColType::TinyInt => DataType::Int8,
            ColType::SmallInt => DataType::Int16,
            ColType::Int => DataType::Int32,
            ColType::BigInt => DataType::Int64,
            ColType::Float => DataType::Float32,
            ColType::Double => DataType::Float64,
            ColType::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale as i8),
            ColType::String | ColType::Varchar(_) => DataType::Utf8,
            ColType::Date => DataType::Date32,
            ColType::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, Some(Arc::from(UTC))),
            ColType::Binary => DataType::Binary,
            ColType::Array(e) => DataType::List(Arc::new(Field::new("element", e.arrow(), true))),
            ColType::Map(k, v) => DataType::Map(
                Arc::new(Field::new(
                    "entries",
                    DataType::Struct(Fields::from(vec![
                        Field::new("key", k.arrow(), false),
                        Field::new("value", v.arrow(), true),
                    ])),
                    false,
                )),
                false,
            ),
            ColType::Struct(fields) => DataType::Struct(struct_fields(fields)),
        }
    }

    /// The canonical Glue/Athena spelling.
    pub fn glue(&self) -> String {
        match self {
            ColType::Boolean => "boolean".into(),
            ColType::TinyInt => "tinyint".into(),
            ColType::SmallInt => "smallint".into(),
            ColType::Int => "int".into(),
            ColType::BigInt => "bigint".into(),
            ColType::Float => "float".into(),
            ColType::Double => "double".into(),
            ColType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            ColType::String => "string".into(),
            ColType::Varchar(n) => format!("varchar({n})"),
            ColType::Date => "date".into(),
            ColType::Timestamp => "timestamp".into(),
            ColType::Binary => "binary".into(),
            ColType::Array(e) => format!("array<{}>", e.glue()),
            ColType::Map(k, v) => format!("map<{},{}>", k.glue(), v.glue()),
            ColType::Struct(fs) => {
                let inner: Vec<String> = fs.iter().map(|f| format!("{}:{}", f.name, f.ty.glue())).collect();
                format!("struct<{}>", inner.join(","))
            }
        }
    }

    pub fn is_primitive(&self) -> bool {
        !matches!(self, ColType::Array(_) | ColType::Map(..) | ColType::Struct(_))
    }
}

pub fn struct_fields(fields: &[StructField]) -> Fields {
    Fields::from(fields.iter().map(|f| Field::new(&f.name, f.ty.arrow(), true)).collect::<Vec<_>>())
}

struct TypeParser<'a> {
    s: &'a [u8],
    i: usize,
    input: &'a str,
}

impl TypeParser<'_> {
    fn err(&self, message: &str) -> TypeError {
        TypeError { input: self.input.to_string(), at: self.i, message: message.to_string() }
    }
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn ident(&mut self) -> String {
        self.skip_ws();
        let start = self.i;
        while self.i < self.s.len() && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_') {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }
    fn expect(&mut self, c: u8) -> Result<(), TypeError> {
        self.skip_ws();
        if self.i < self.s.len() && self.s[self.i] == c {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(&format!("expected '{}'", c as char)))
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }
    fn number(&mut self) -> Result<u32, TypeError> {
        self.skip_ws();
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i])
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| self.err("expected a number"))
    }
    fn parse_type(&mut self) -> Result<ColType, TypeError> {
        let at = self.i;
        let name = self.ident();
        Ok(match name.as_str() {
            "boolean" => ColType::Boolean,
            "tinyint" => ColType::TinyInt,
            "smallint" => ColType::SmallInt,
            "int" | "integer" => ColType::Int,
            "bigint" => ColType::BigInt,
            "float" => ColType::Float,
            "double" => ColType::Double,
            "string" => ColType::String,
            "date" => ColType::Date,
            "timestamp" => ColType::Timestamp,
            "binary" => ColType::Binary,
            "decimal" => {
                let (mut precision, mut scale) = (10, 0);
                if self.peek() == Some(b'(') {
                    self.expect(b'(')?;
                    precision = self.number()?;
                    if self.peek() == Some(b',') {
                        self.expect(b',')?;
                        scale = self.number()?;
                    }
                    self.expect(b')')?;
                }
                if !(1..=38).contains(&precision) || scale > precision {
                    return Err(self.err("decimal precision must be 1..=38 and scale 0..=precision"));
                }
                ColType::Decimal { precision: precision as u8, scale: scale as u8 }
            }
            "varchar" | "char" => {
                self.expect(b'(')?;
                let n = self.number()?;
                self.expect(b')')?;
                if !(1..=65535).contains(&n) {
                    return Err(self.err("varchar length must be 1..=65535"));
                }
                ColType::Varchar(n)
            }
            "array" => {
                self.expect(b'<')?;
                let e = self.parse_type()?;
                self.expect(b'>')?;
                ColType::Array(Box::new(e))
            }
            "map" => {
                self.expect(b'<')?;
                let k = self.parse_type()?;
                if !k.is_primitive() {
                    return Err(self.err("map keys must be a primitive type"));
                }
                self.expect(b',')?;
                let v = self.parse_type()?;
                self.expect(b'>')?;
                ColType::Map(Box::new(k), Box::new(v))
            }
            "struct" => {
                self.expect(b'<')?;
                let mut fields: Vec<StructField> = Vec::new();
                loop {
                    let fname = self.ident();
                    if fname.is_empty() {
                        return Err(self.err("expected a struct field name"));
                    }
                    if fields.iter().any(|f| f.name == fname) {
                        return Err(self.err(&format!("duplicate struct field '{fname}'")));
                    }
                    self.expect(b':')?;
                    let ty = self.parse_type()?;
                    fields.push(StructField { name: fname, ty });
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'>') => {
                            self.i += 1;
                            break;
                        }
                        _ => return Err(self.err("expected ',' or '>' in struct")),
                    }
                }
                ColType::Struct(fields)
            }
            "" => {
                self.i = at;
                return Err(self.err("expected a type name"));
            }
            other => {
                self.i = at;
                return Err(self.err(&format!("unknown type '{other}'")));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_type() {
        for t in [
            "boolean", "tinyint", "smallint", "int", "bigint", "float", "double", "decimal(10,2)",
            "decimal(38,0)", "string", "varchar(20)", "date", "timestamp", "binary",
            "array<string>", "map<string,bigint>", "struct<os:string,version:int>",
            "array<struct<a:map<string,array<decimal(5,1)>>,b:struct<c:timestamp>>>",
        ] {
            assert_eq!(ColType::parse(t).unwrap().glue(), t);
        }
        assert_eq!(ColType::parse(" Struct< A : INT >").unwrap().glue(), "struct<a:int>");
    }

    #[test]
    fn rejects_bad_types_with_position() {
        let e = ColType::parse("strin").unwrap_err();
        assert!(e.to_string().contains("unknown type 'strin'"), "{e}");
        assert!(e.to_string().contains("allowed:"));
        assert!(ColType::parse("decimal(40,2)").is_err());
        assert!(ColType::parse("decimal(5,6)").is_err());
        assert!(ColType::parse("array<int").is_err());
        assert!(ColType::parse("map<array<int>,int>").is_err());
        assert!(ColType::parse("struct<a:int,a:int>").is_err());
        assert!(ColType::parse("int extra").is_err());
    }

    #[test]
    fn timestamps_are_utc_millis() {
        assert_eq!(
            ColType::Timestamp.arrow(),
            DataType::Timestamp(TimeUnit::Millisecond, Some(Arc::from("UTC")))
        );
    }
}
