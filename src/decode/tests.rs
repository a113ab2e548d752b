use super::*;
use crate::schema::TableSchema;
use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::Array;

const SCHEMA: &str = r#"
table = "t"
[[columns]]
name = "id"
type = "string"
required = true
[[columns]]
name = "ts"
type = "timestamp"
formats = ["rfc3339", "epoch_millis"]
[[columns]]
name = "n"
type = "int"
[[columns]]
name = "big"
type = "bigint"
[[columns]]
name = "tiny"
type = "tinyint"
[[columns]]
name = "f"
type = "float"
[[columns]]
name = "d"
type = "double"
[[columns]]
name = "price"
type = "decimal(6,2)"
[[columns]]
name = "ok"
type = "boolean"
[[columns]]
name = "code"
type = "varchar(3)"
[[columns]]
name = "day"
type = "date"
[[columns]]
name = "blob"
type = "binary"
[[columns]]
name = "os"
type = "string"
source = "device.os"
[[columns]]
name = "device"
type = "struct<os:string,v:int,tags:array<string>>"
[[columns]]
name = "props"
type = "map<string,bigint>"
[[columns]]
name = "nested"
type = "array<struct<a:int,m:map<string,array<int>>>>"
"#;

fn schema(extra: &str) -> Arc<TableSchema> {
    Arc::new(TableSchema::parse("t.toml", &format!("{extra}\n{SCHEMA}")).unwrap())
}

fn decode_all(schema: &Arc<TableSchema>, lines: &[&[u8]]) -> (RecordBatch, Vec<RecordError>) {
    let mut dec = Decoder::new(schema.clone(), 2000);
    let mut cols = Columns::new(schema);
    let mut errs = Vec::new();
    for l in lines {
        let r = dec.parse(l).and_then(|row| row.append_to(&mut cols));
        if let Err(e) = r {
            errs.push(e);
        }
    }
    (cols.finish(schema), errs)
}

fn one_err(line: &str) -> RecordError {
    let s = schema("");
    let (b, e) = decode_all(&s, &[line.as_bytes()]);
    assert_eq!(b.num_rows(), 0, "{line} was accepted");
    e.into_iter().next().unwrap()
}

const GOOD: &str = r#"{"id":"a","ts":"2026-11-21T13:05:00.5+02:00","n":-7,"big":9007199254740993,"tiny":"12","f":1.5,"d":"2.25e2","price":12.3,"ok":true,"code":"abc","day":"2026-02-28","blob":"aGk=","device":{"os":"ios","v":17,"tags":["x",null]},"props":{"a":1,"b":null},"nested":[{"a":1,"m":{"k":[1,2]}},null]}"#;

#[test]
fn decodes_every_type() {
    let s = schema("");
    let (b, e) = decode_all(&s, &[GOOD.as_bytes()]);
    assert!(e.is_empty(), "{e:?}");
    assert_eq!(b.num_rows(), 1);
    assert_eq!(b.column(0).as_string::<i32>().value(0), "a");
    assert_eq!(b.column(1).as_primitive::<TimestampMillisecondType>().value(0), 1_795_259_100_500);
    assert_eq!(b.column(2).as_primitive::<Int32Type>().value(0), -7);
    assert_eq!(b.column(3).as_primitive::<Int64Type>().value(0), 9_007_199_254_740_993);
    assert_eq!(b.column(4).as_primitive::<Int8Type>().value(0), 12);
    assert_eq!(b.column(5).as_primitive::<Float32Type>().value(0), 1.5);
    assert_eq!(b.column(6).as_primitive::<Float64Type>().value(0), 225.0);
    assert_eq!(b.column(7).as_primitive::<Decimal128Type>().value(0), 1230);
    assert!(b.column(8).as_boolean().value(0));
    assert_eq!(b.column(9).as_string::<i32>().value(0), "abc");
    assert_eq!(b.column(10).as_primitive::<Date32Type>().value(0), crate::timefmt::parse_date("2026-02-28").unwrap());
    assert_eq!(b.column(11).as_binary::<i32>().value(0), b"hi");
    assert_eq!(b.column(12).as_string::<i32>().value(0), "ios");
    let dev = b.column(13).as_struct();
    assert_eq!(dev.column(1).as_primitive::<Int32Type>().value(0), 17);
    let tags = dev.column(2).as_list::<i32>().value(0);
    assert_eq!(tags.len(), 2);
    assert!(tags.is_null(1));
    let props = b.column(14).as_map();
    assert_eq!(props.value(0).len(), 2);
    let nested = b.column(15).as_list::<i32>().value(0);
    assert_eq!(nested.len(), 2);
    assert!(nested.is_null(1));
}

#[test]
fn each_bad_input_class_is_refused_with_column_and_value() {
    let cases: &[(&str, ErrorCode, &[&str])] = &[
        (r#"{"id":"a" "n":1}"#, ErrorCode::ParseError, &["malformed JSON", "expected ',' or '}'"]),
        (r#"{"id":"a","n":1,}"#, ErrorCode::ParseError, &["malformed JSON"]),
        (r#"["id"]"#, ErrorCode::ParseError, &["not a JSON object"]),
        (r#"{"id":"a","n":1.5}"#, ErrorCode::MalformedData, &["column 'n'", "1.5", "not rounded"]),
        (r#"{"id":"a","n":1.0}"#, ErrorCode::MalformedData, &["column 'n'", "1.0"]),
        (r#"{"id":"a","big":"12abc"}"#, ErrorCode::MalformedData, &["column 'big'", "\"12abc\""]),
        (r#"{"id":"a","d":"NaN"}"#, ErrorCode::MalformedData, &["column 'd'", "NaN"]),
        (r#"{"id":"a","n":3000000000}"#, ErrorCode::MalformedData, &["column 'n'", "3000000000", "out of range for int"]),
        (r#"{"id":"a","tiny":128}"#, ErrorCode::MalformedData, &["column 'tiny'", "128"]),
        (r#"{"id":"a","big":9223372036854775808}"#, ErrorCode::MalformedData, &["column 'big'", "out of range"]),
        (r#"{"id":"a","f":1e39}"#, ErrorCode::MalformedData, &["column 'f'", "out of range for float"]),
        (r#"{"n":1}"#, ErrorCode::MalformedData, &["column 'id'", "required field is missing"]),
        (r#"{"id":null}"#, ErrorCode::MalformedData, &["column 'id'", "required field is null"]),
        (r#"{"id":"a","ts":"noon"}"#, ErrorCode::MalformedData, &["column 'ts'", "\"noon\"", "rfc3339, epoch_millis"]),
        (r#"{"id":"a","price":1.234}"#, ErrorCode::MalformedData, &["column 'price'", "1.234", "decimal places"]),
        (r#"{"id":"a","price":10000}"#, ErrorCode::MalformedData, &["column 'price'", "does not fit decimal(6,2)"]),
        (r#"{"id":"a","ok":1}"#, ErrorCode::MalformedData, &["column 'ok'", "expected a boolean"]),
        (r#"{"id":"a","code":"abcd"}"#, ErrorCode::MalformedData, &["column 'code'", "varchar(3)"]),
        (r#"{"id":"a","day":"2026-02-30"}"#, ErrorCode::MalformedData, &["column 'day'", "2026-02-30"]),
        (r#"{"id":"a","blob":"!!"}"#, ErrorCode::MalformedData, &["column 'blob'", "base64"]),
        (r#"{"id":"a","device":{"v":"x"}}"#, ErrorCode::MalformedData, &["column 'device.v'", "\"x\""]),
        (r#"{"id":"a","nested":[{"a":[2]}]}"#, ErrorCode::MalformedData, &["column 'nested.[].a'", "[2]"]),
        (r#"{"id":"a","props":{"k":"v"}}"#, ErrorCode::MalformedData, &["column 'props.k'", "\"v\""]),
        (r#"{"id":"a","nested":[{"m":{"k":[1,2.5]}}]}"#, ErrorCode::MalformedData, &["column 'nested.[].m.k.[]'", "2.5"]),
        (r#"{"id":"a","device":[1]}"#, ErrorCode::MalformedData, &["column 'device'", "expected an object"]),
    ];
    for (line, code, needles) in cases {
        let e = one_err(line);
        assert_eq!(e.code, *code, "{line}: {e:?}");
        for n in *needles {
            assert!(e.message.contains(n), "{line}: {:?} lacks {n:?}", e.message);
        }
    }
    let (_, e) = decode_all(&schema(""), &[b"{\"id\":\"a\xff\"}"]);
    assert_eq!(e[0].code, ErrorCode::ParseError);
    assert!(e[0].message.contains("not valid UTF-8 (invalid byte at offset 8)"), "{}", e[0].message);
    let s = schema("");
    let mut dec = Decoder::new(s, 100);
    let big = format!("{{\"id\":\"{}\"}}", "x".repeat(200));
    let e = dec.parse(big.as_bytes()).err().unwrap();
    assert_eq!(e.code, ErrorCode::RecordTooLarge);
    assert!(e.message.contains("209 bytes") && e.message.contains("100-byte limit"), "{}", e.message);
}

#[test]
fn clean_conversions_are_accepted() {
    let s = schema("");
    let (b, e) = decode_all(
        &s,
        &[
            br#"{"id":7,"n":"42","ts":1763730300000,"ok":"TRUE","price":"5","d":3}"#,
            br#"{"id":true,"n":-0,"ts":"2026-11-21 13:05:00","price":-0.5}"#,
            br#"{"id":{"x":[1, 2]},"code":"\u00e9\u00e9\u00e9"}"#,
        ],
    );
    assert!(e.is_empty(), "{e:?}");
    let ids = b.column(0).as_string::<i32>();
    assert_eq!((ids.value(0), ids.value(1), ids.value(2)), ("7", "true", "{\"x\":[1, 2]}"));
    assert_eq!(b.column(2).as_primitive::<Int32Type>().value(0), 42);
    assert_eq!(b.column(7).as_primitive::<Decimal128Type>().value(0), 500);
    assert_eq!(b.column(7).as_primitive::<Decimal128Type>().value(1), -50);
    assert_eq!(b.column(9).as_string::<i32>().value(2), "ééé");
}

#[test]
fn bad_records_leave_no_trace_and_neighbours_land() {
    let s = schema("");
    let late_failure = r#"{"id":"bad","n":5,"device":{"os":"x","tags":["a","b"]},"props":{"a":1},"nested":[{"a":1,"m":{"k":[1]}},{"a":"oops"}]}"#;
    let (b, e) = decode_all(&s, &[GOOD.as_bytes(), late_failure.as_bytes(), GOOD.replace("\"a\",\"ts\"", "\"c\",\"ts\"").as_bytes()]);
    assert_eq!(e.len(), 1);
    assert!(e[0].message.contains("column 'nested.[].a'"), "{}", e[0].message);
    assert_eq!(b.num_rows(), 2);
    let ids = b.column(0).as_string::<i32>();
    assert_eq!((ids.value(0), ids.value(1)), ("a", "c"));
    let tags = b.column(13).as_struct().column(2).as_list::<i32>();
    assert_eq!(tags.value(1).len(), 2, "the good row's nested list is intact");
    assert_eq!(b.column(14).as_map().value(1).len(), 2);
    assert_eq!(b.column(15).as_list::<i32>().value(1).len(), 2);
    b.column(15).to_data().validate_full().unwrap();
    b.column(13).to_data().validate_full().unwrap();
}

#[test]
fn keys_case_insensitive_last_wins_and_dotted_paths() {
    let s = schema("");
    let (b, e) = decode_all(&s, &[br#"{"ID":"first","Id":"second","DEVICE":{"OS":"android","os":"ios"},"N":1,"n":2}"#]);
    assert!(e.is_empty(), "{e:?}");
    assert_eq!(b.column(0).as_string::<i32>().value(0), "second");
    assert_eq!(b.column(2).as_primitive::<Int32Type>().value(0), 2);
    assert_eq!(b.column(12).as_string::<i32>().value(0), "ios");
    assert_eq!(b.column(13).as_struct().column(0).as_string::<i32>().value(0), "ios");

    let strict = schema("case_insensitive = false");
    let (b, _) = decode_all(&strict, &[br#"{"id":"x","N":1}"#]);
    assert!(b.column(2).is_null(0));
}

#[test]
fn unknown_keys_keep_or_reject() {
    let keep = schema("unknown_keys = \"keep\"");
    let (b, e) = decode_all(&keep, &[br#"{"id":"a","zz":[1, {"q":null}],"y":"s"}"#, br#"{"id":"b"}"#]);
    assert!(e.is_empty());
    let extra = b.column(b.num_columns() - 1).as_string::<i32>();
    assert_eq!(extra.value(0), r#"{"zz":[1, {"q":null}],"y":"s"}"#);
    assert!(extra.is_null(1));
    let reject = schema("unknown_keys = \"reject\"");
    let (_, e) = decode_all(&reject, &[br#"{"id":"a","zz":1}"#]);
    assert!(e[0].message.contains("unknown key 'zz'"), "{:?}", e);
}
