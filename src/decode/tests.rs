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

/// Rules on the events schema, which mutated records fail in every way.
const EVENT_RULES: &str = r#"
[[rules]]
column = "event_type"
allowed = ["page_view", "click", "add_to_cart", "purchase", "search", "view"]
[[rules]]
column = "event_id"
pattern = "[a-z]+-[0-9]{2,8}(-[0-9a-f]{8})?"
[[rules]]
column = "duration_ms"
min = 0
max = 3600000
[[rules]]
column = "session_id"
min_length = 20
max_length = 30
[[rules]]
column = "user_id"
not_null = true
[[rules]]
column = "device.os"
allowed = ["ios", "android", "windows", "macos", "x"]
[[rules]]
column = "tags[]"
max_length = 9
[[rules]]
column = "revenue"
min = "0.01"
[[rules]]
column = "ts"
min = "2026-01-01T00:00:00Z"
[[filters]]
name = "bots"
column = "is_bot"
equals = true
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

/// The fused single-pass path and the general path give the same rows, the
/// fused path never accepts what the general path refuses, and when it
/// declines it leaves the buffers untouched. Run on mutations of realistic
/// records against several schemas (every type, nested values, unknown keys
/// dropped and kept, case-insensitive keys on and off). It fails when the
/// fused path skips a check (tried: no range check on ints, a dropped
/// duplicate-key check, struct keys matched case-insensitively when the
/// schema says not).
#[test]
fn fused_and_general_paths_agree_on_mutated_records() {
    let all_types = SCHEMA.replace("source = \"device.os\"", "source = \"os\"");
    let orders = include_str!("../../schemas/orders.toml").replace("customer.address.country", "country");
    let schemas: Vec<Arc<TableSchema>> = [
        include_str!("../../schemas/events.toml").to_string(),
        all_types.clone(),
        format!("case_insensitive = false\n{all_types}"),
        format!("unknown_keys = \"reject\"\n{all_types}"),
        orders,
        format!("{}\n{EVENT_RULES}", include_str!("../../schemas/events.toml").split("[partition]").next().unwrap()),
    ]
    .iter()
    .map(|t| Arc::new(TableSchema::parse("t.toml", t).unwrap()))
    .collect();
    let seeds: [&[u8]; 6] = [
        br#"{"event_id":"e-00000000-56670b14","timestamp":"2026-11-21T19:10:48.178Z","event_type":"add_to_cart","user_id":1237437,"session_id":"agngvom6i7qldyn6s5xahwew","page":{"url":"https://shop.example.com/p/81329?ref=home","referrer":"https://www.google.com/","title":"Cart"},"device":{"os":"windows","os_version":"11","model":null},"geo":{"country":"DE","city":"Berlin","lat":52.52,"lon":13.405},"properties":{"campaign":"newsletter","ab_test":"B"},"tags":["promo","mobile"],"duration_ms":2585,"revenue":19.99,"is_bot":false}"#,
        br#"{"id":"a","ts":"2026-11-21T19:10:48.178Z","n":12,"big":-9007199254740993,"tiny":-128,"f":1.5,"d":2.5e3,"price":12.34,"ok":true,"code":"abc","day":"2026-11-21","blob":null,"os":"linux","device":{"os":"ios","v":17,"tags":["a","b"]},"props":{"x":1,"y":-2},"nested":[{"a":1,"m":{"k":[1,2]}},null,{"m":{}}]}"#,
        "{\"ID\":\"b\\\"q\",\"Ts\":1763730300123,\"n\":\"12\",\"big\":\"7\",\"ok\":\"true\",\"props\":{\"x\":1,\"x\":2},\"device\":{\"OS\":\"x\",\"v\":-0},\"extra\":{\"deep\":[1,[2,{\"z\":null}]]},\"code\":\"é€x\",\"event_type\":{\"a\":[true,false]}}".as_bytes(),
        b" { \"id\" : \"\\u00e9t\\u00e9\" , \"event_id\":\"x\",\"event_type\":\"view\",\"timestamp\":\"2026-11-21 19:10:48\" ,\"tags\":[ \"a\" , null ],\"properties\":{ },\"page\":{\"url\":\"caf\xc3\xa9\"},\"d\":-1E-2,\"price\":\"1.5\",\"day\":\"2026-11-21T10:00:00Z\"}\n",
        br#"{"order_id":"o-1","createdAt":"2026-11-21 19:10:48.5","orderDate":"2026-11-21","status":"paid","country":"DE","total":120.5,"quantity":3,"lines":[{"sku":"a-1","qty":2,"unit_price":10.25},{"sku":"b","qty":1,"unit_price":100}],"coupon":null}"#,
        br#"{"order_id":"o-2","createdAt":1763730300,"status":"refunded","total":"7","lines":[],"gift":{"to":"x"},"Status":"dup"}"#,
    ];
    let alphabet = b"{}[]:,\"\\ \t\n0123456789-+.eEtrufalsnu/\x01\x7f\xc3\xa9\xe6\xffABZ";
    let mut m = super::json::tests::Mutator(0x2545_f491_4f6c_dd1d);
    let mut declined_good = 0;
    for schema in &schemas {
        let mut fused = Decoder::new(schema.clone(), 2000);
        let mut general = Decoder::new(schema.clone(), 2000);
        assert!(fused.has_fused(), "{}", schema.table);
        let (mut taken, mut declined_ok, mut refused) = (0, 0, 0);
        for round in 0..10_000 {
            let mut rec = seeds[round % seeds.len()].to_vec();
            // a quarter stay intact, so the fused path is exercised on good records too
            let times = if m.next(4) == 0 { 0 } else { 1 + m.next(3) };
            m.mutate(&mut rec, alphabet, times);
            let show = || String::from_utf8_lossy(&rec).into_owned();
            let (mut a, mut b) = (Columns::new(schema), Columns::new(schema));
            // a row already in the buffers: a declined record must not disturb it
            for cols in [&mut a, &mut b] {
                general.parse(seeds[1]).ok().map(|r| r.append_to(cols));
            }
            let before = a.rows;
            let theirs = general.parse(&rec).and_then(|row| {
                let part = (schema.partition.time_column().map(|i| row.timestamp(i)), schema.partition.keys.iter().map(|&k| row.key_text(k).map(|t| t.map(|t| t.into_owned()))).collect::<Vec<_>>());
                row.append_to(&mut b).map(|()| part)
            });
            if fused.decode_fused(&rec, &mut a) {
                let Ok((ts, keys)) = theirs else { panic!("fused accepted what the general path refuses ({theirs:?}): {}", show()) };
                taken += 1;
                if let Some(i) = schema.partition.time_column() {
                    assert_eq!(Ok(a.timestamp_at(i, before)), ts.unwrap(), "{}", show());
                }
                for (&k, t) in schema.partition.keys.iter().zip(keys) {
                    assert_eq!(Ok(a.key_text_at(k, before).map(|t| t.into_owned())), t, "{}", show());
                }
            } else {
                assert_eq!(a.rows, before, "a declined record leaves no row: {}", show());
                match general.parse(&rec).and_then(|row| row.append_to(&mut a)) {
                    Ok(()) => declined_ok += 1,
                    Err(_) => refused += 1,
                }
            }
            assert_eq!(a.finish(schema), b.finish(schema), "{}", show());
        }
        // every outcome is exercised in quantity
        eprintln!("{}: fused {taken}, declined but good {declined_ok}, refused {refused}", schema.table);
        assert!(taken > 500 && refused > 3_000, "{}: fused {taken}, refused {refused}", schema.table);
        declined_good += declined_ok;
    }
    assert!(declined_good > 1_000, "records the fused path declines and the general path takes: {declined_good}");
}
/// The fused path takes what producers commonly send, not only the
/// general path: non-ASCII text (also right after a key), escapes in values,
/// whitespace, nulls and missing optional fields, keys in another case or
/// order, unknown keys with nested values.
#[test]
fn fused_path_takes_the_common_records() {
    let s = Arc::new(TableSchema::parse("t.toml", include_str!("../../schemas/events.toml")).unwrap());
    let mut dec = Decoder::new(s.clone(), 1 << 20);
    let mut cols = Columns::new(&s);
    let records = [
        "{\"event_id\":\"e-1\",\"timestamp\":\"2026-11-21T08:53:19.897Z\",\"event_type\":\"purchase\",\"user_id\":7740936,\"page\":{\"url\":\"https://x/p?a=1&b=2\",\"referrer\":null,\"title\":\"Search results\"},\"device\":{\"os\":\"macos\",\"os_version\":\"14.1\",\"model\":null},\"geo\":{\"country\":\"BR\",\"city\":\"São Paulo\",\"lat\":-23.55,\"lon\":-46.63},\"properties\":{\"campaign\":\"organic\",\"locale\":\"de-DE\"},\"tags\":[\"new\",\"vip\"],\"duration_ms\":49906,\"revenue\":152.91,\"is_bot\":false}",
        "{\"event_id\":\"e-2\",\"session_id\":\"日本\",\"event_type\":\"view\",\"page\":{\"title\":\"say \\\"hi\\\"\\n\\u00e9\"}}",
        " { \"event_id\" : \"e-3\" ,\n \"event_type\":\"view\", \"tags\" : [ ] , \"properties\" : { } }\n",
        "{\"Event_Type\":\"view\",\"EVENT_ID\":\"e-4\",\"timestamp\":1763730300123,\"extra\":{\"deep\":[1,{\"z\":[null,true]}]},\"geo\":{\"City\":\"Berlin\",\"unknown\":[1]}}",
    ];
    for r in records {
        assert!(dec.decode_fused(r.as_bytes(), &mut cols), "declined: {r}");
    }
    assert_eq!(cols.rows, records.len());
}

/// Keys are first compared with the previous record's key at the same
/// position, as written (`"name":`). A record whose keys at those positions
/// differ — another key of the same length, a longer key with the same
/// start, another case, a space before the colon, a duplicate — lands in
/// the columns its keys name, exactly as the general path puts it. A
/// source key with a quote in it (escaped in records, so always declined
/// here) is read by the general path, and its unescaped bytes are refused.
#[test]
fn keys_taken_by_position_land_where_the_general_path_puts_them() {
    let toml = r#"table = "t"
[[columns]]
name = "aa"
type = "string"
[[columns]]
name = "bb"
type = "string"
[[columns]]
name = "aab"
type = "string"
[[columns]]
name = "q"
type = "string"
source = 'x"y'
[[columns]]
name = "s"
type = "struct<aa:string,bb:string>"
"#;
    let s = Arc::new(TableSchema::parse("t.toml", toml).unwrap());
    let records = [
        r#"{"aa":"1","bb":"2","s":{"aa":"3","bb":"4"}}"#,
        r#"{"bb":"1","aa":"2","s":{"bb":"3","aa":"4"}}"#,
        r#"{"aab":"1","aa":"2","s":{"aa":"3","bb":"4"}}"#,
        r#"{"AA":"1","bb":"2","s":{"AA":"3","bb":"4"}}"#,
        r#"{"aa" :"1","bb":"2","s":{"aa" :"3","bb":"4"}}"#,
        r#"{"aa":"1","aa":"2","s":{"aa":"3","aa":"4"}}"#,
        r#"{"x\"y":"1","aa":"2"}"#,
        r#"{"x\"y":"1","aa":"2"}"#,
        r#"{"aa":"1","bb":"2","s":{"aa":"3","bb":"4"}}"#,
    ];
    let (mut fused, mut general) = (Decoder::new(s.clone(), 1 << 20), Decoder::new(s.clone(), 1 << 20));
    let (mut a, mut b) = (Columns::new(&s), Columns::new(&s));
    let mut taken = 0;
    for r in records {
        general.parse(r.as_bytes()).and_then(|row| row.append_to(&mut b)).unwrap();
        if fused.decode_fused(r.as_bytes(), &mut a) {
            taken += 1;
        } else {
            fused.parse(r.as_bytes()).and_then(|row| row.append_to(&mut a)).unwrap();
        }
    }
    assert!(taken >= 6, "{taken}");
    let (a, b) = (a.finish(&s), b.finish(&s));
    assert_eq!(a, b);
    let col = |name: &str| a.column_by_name(name).unwrap().as_string::<i32>().iter().map(|v| v.unwrap_or("-").to_string()).collect::<Vec<_>>().join(",");
    assert_eq!(col("aa"), "1,2,2,1,1,2,2,2,1");
    assert_eq!(col("bb"), "2,1,-,2,2,-,-,-,2");
    assert_eq!(col("aab"), "-,-,1,-,-,-,-,-,-");
    assert_eq!(col("q"), "-,-,-,-,-,-,1,1,-");
    // the bytes `"x"y":` are not the key `x"y` but broken JSON
    let (mut c, bad) = (Columns::new(&s), br#"{"x"y":"1","aa":"2"}"#);
    fused.parse(br#"{"x\"y":"1","aa":"2"}"#).and_then(|row| row.append_to(&mut c)).unwrap();
    assert!(!fused.decode_fused(bad, &mut c) && fused.parse(bad).is_err());
}
