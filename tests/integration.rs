//! End-to-end tests: the real `lakehose` binary on real files, its output
//! read back by pyarrow and DuckDB (tests/py/check_lake.py), S3 through
//! moto_server. Run through scripts/test.sh, which makes the Python venv.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

#[path = "it/kinesis.rs"]
mod kinesis;
#[path = "it/glue.rs"]
mod glue;
#[path = "it/types.rs"]
mod types;
#[path = "it/edges.rs"]
mod edges;
#[path = "it/door.rs"]
mod door;
#[path = "it/backfill.rs"]
mod backfill;
#[path = "it/rules.rs"]
mod rules;
#[path = "it/routing.rs"]
mod routing;
#[path = "it/iceberg.rs"]
mod iceberg;
#[path = "it/kafka.rs"]
mod kafka;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn py() -> PathBuf {
    let p = std::env::var_os("LAKEHOSE_PY").map(PathBuf::from).unwrap_or_else(|| root().join(".venv/bin/python"));
    assert!(p.exists(), "{} missing: run the tests through scripts/test.sh, which creates the venv", p.display());
    p
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lakehose"));
    c.env("LAKEHOSE_LOG", "warn");
    c
}

fn run_ok(c: &mut Command) -> Output {
    let out = c.output().expect("spawn");
    assert!(out.status.success(), "{c:?} failed: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    out
}

/// Generates seeded clickstream NDJSON; returns (all ids in order, bad id → kind).
fn gen(path: &Path, args: &[&str]) -> (Vec<String>, BTreeMap<String, String>) {
    run_ok(Command::new(py()).arg(root().join("scripts/gen_clickstream.py")).arg(path).args(args));
    let data = std::fs::read(path).unwrap();
    let mut bad = BTreeMap::new();
    if let Ok(tsv) = std::fs::read_to_string(format!("{}.bad.tsv", path.display())) {
        for l in tsv.lines() {
            let (id, kind) = l.split_once('\t').unwrap();
            bad.insert(id.to_string(), kind.to_string());
        }
    }
    let ids = data.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|l| extract_id(l).expect("every line has an id")).collect();
    (ids, bad)
}

/// The event id of a generated line (also of bad ones: not-an-object lines are `["id"]`).
fn extract_id(line: &[u8]) -> Option<String> {
    let s = String::from_utf8_lossy(line);
    let start = s.find("\"event_id\":\"").map(|i| i + 12).or_else(|| s.find("[\"").map(|i| i + 2))?;
    let rest = &s[start..];
    Some(rest[..rest.find('"')?].to_string())
}

fn check(args: &[&str]) -> Value {
    let out = run_ok(Command::new(py()).arg(root().join("tests/py/check_lake.py")).args(args));
    serde_json::from_slice(&out.stdout).expect("checker prints JSON")
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect()
}

/// (errorCode, text the errorMessage must contain) for each bad kind of the generator.
fn expected_error(kind: &str) -> (&'static str, &'static str) {
    match kind {
        "missing_comma" | "trailing_comma" => ("DataFormatConversion.ParseError", "malformed JSON"),
        "not_object" => ("DataFormatConversion.ParseError", "not a JSON object"),
        "not_utf8" => ("DataFormatConversion.ParseError", "not valid UTF-8"),
        "float_in_int" => ("DataFormatConversion.MalformedData", "column 'duration_ms': expected an integer (int), got 12.5"),
        "string_in_number" => ("DataFormatConversion.MalformedData", "column 'user_id': expected an integer (bigint), got \"12abc\""),
        "int_out_of_range" => ("DataFormatConversion.MalformedData", "column 'duration_ms': value 3000000000 is out of range"),
        "missing_required" => ("DataFormatConversion.MalformedData", "column 'event_type': required field is missing"),
        "null_required" => ("DataFormatConversion.MalformedData", "column 'event_type': required field is null"),
        "bad_timestamp" => ("DataFormatConversion.MalformedData", "column 'ts': expected a timestamp (rfc3339, epoch_millis), got \"yesterday at noon\""),
        "bad_decimal_places" => ("DataFormatConversion.MalformedData", "column 'revenue': value 1.234 has more than 2 decimal places"),
        "oversized" => ("DataFormatConversion.RecordTooLarge", "over the 1024000-byte limit"),
        k => panic!("unknown bad kind {k}"),
    }
}

/// Asserts the lake holds exactly the good ids, the errors exactly the bad ones
/// (with the right code and message), and the raw backup every id once.
fn assert_exactly_once(facts: &Value, ids: &[String], bad: &BTreeMap<String, String>, raw: bool) {
    let mut want_rows: Vec<String> = ids.iter().filter(|i| !bad.contains_key(*i)).cloned().collect();
    want_rows.sort();
    let rows = strs(&facts["ids"]);
    assert_eq!(rows.len(), want_rows.len(), "row count (pyarrow)");
    assert_eq!(rows, want_rows, "the lake holds every good id exactly once");
    if let Some(d) = facts.get("duckdb_rows") {
        assert_eq!(d.as_u64().unwrap() as usize, want_rows.len(), "row count (DuckDB)");
        assert_eq!(facts["duckdb_distinct_ids"].as_u64().unwrap() as usize, want_rows.len());
    }
    let errors = facts["errors"].as_array().unwrap();
    let mut seen = BTreeSet::new();
    for e in errors {
        let id = e["id"].as_str().expect("error line's rawData holds the record");
        assert!(seen.insert(id.to_string()), "{id} is in the error prefix twice");
        let kind = bad.get(id).unwrap_or_else(|| panic!("{id} in errors but it is good: {e}"));
        let (code, msg) = expected_error(kind);
        assert_eq!(e["errorCode"], code, "{kind}: {e}");
        assert!(e["errorMessage"].as_str().unwrap().contains(msg), "{kind}: {e}");
        for f in ["attemptsMade", "arrivalTimestamp", "attemptEndingTimestamp", "sequenceNumber", "subSequenceNumber", "shardId", "dataCatalogTable"] {
            assert!(e.get(f).is_some(), "error line lacks {f}: {e}");
        }
    }
    assert_eq!(seen.len(), bad.len(), "every bad record is in the error prefix");
    if raw {
        let mut all: Vec<String> = ids.to_vec();
        all.sort();
        assert_eq!(strs(&facts["raw_ids"]), all, "raw backup holds every input record once");
    }
}

/// Partition values that Hive escapes in paths (`/`, `=`, `%`, `:`) are
/// written once escaped, as Hive and Athena write them (`é` and spaces
/// stay), so a local lake and an S3 lake have the same keys, and pyarrow
/// and DuckDB read the values back as they were.
#[test]
fn escaped_partition_values_read_back_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let values = ["a/b", "é x=y", "100%", "k:v", "plain"];
    let input: String = values.iter().enumerate().map(|(i, v)| format!("{{\"event_id\":\"e{i}\",\"timestamp\":\"2026-12-06T10:00:00Z\",\"event_type\":{v:?}}}\n")).collect();
    std::fs::write(dir.path().join("in.ndjson"), input).unwrap();
    let lake = dir.path().join("lake");
    run_ok(bin().args(["convert", "--schema"]).arg(root().join("schemas/events.toml")).arg("--out").arg(&lake).arg(dir.path().join("in.ndjson")));
    let mut dirs: Vec<String> = walk(&lake).iter().filter(|p| p.extension().is_some_and(|e| e == "parquet")).map(|p| p.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned()).collect();
    dirs.sort();
    assert_eq!(dirs, ["event_type=100%25", "event_type=a%2Fb", "event_type=k%3Av", "event_type=plain", "event_type=é x%3Dy"]);
    let out = run_ok(Command::new(py()).arg("-c").arg(format!(r#"
import duckdb, json, pyarrow.dataset as ds
d = duckdb.sql("select event_id, event_type from read_parquet('{l}/**/*.parquet', hive_partitioning=true) order by 1").fetchall()
t = ds.dataset('{l}', format='parquet', partitioning='hive').to_table()
p = sorted(zip(t.column('event_id').to_pylist(), t.column('event_type').to_pylist()))
print(json.dumps([[list(r) for r in d], [list(r) for r in p]]))"#, l = lake.display())));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    let want: Vec<Value> = values.iter().enumerate().map(|(i, v)| serde_json::json!([format!("e{i}"), v])).collect();
    assert_eq!(got[0], serde_json::json!(want), "DuckDB");
    assert_eq!(got[1], serde_json::json!(want), "pyarrow");
}

/// Epoch seconds in a timestamp column that reads epoch millis land in
/// January 1970 silently unless someone says so: `convert` keeps the rows
/// (valid input) and warns once, naming the column, the count and a value.
#[test]
fn epoch_seconds_in_a_millis_column_are_kept_and_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let input: String = (0..50i64).map(|i| format!("{{\"event_id\":\"e{i}\",\"timestamp\":{},\"event_type\":\"view\"}}\n", if i < 20 { 1_767_225_600 + i } else { 1_767_225_600_000 + i })).collect();
    std::fs::write(dir.path().join("in.ndjson"), input).unwrap();
    let out = run_ok(bin().args(["convert", "--schema"]).arg(root().join("schemas/events.toml")).arg("--out").arg(dir.path().join("lake")).arg(dir.path().join("in.ndjson")));
    let err = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("before 2000 or after 2100")).collect();
    assert_eq!(warnings.len(), 1, "one warning: {err}");
    assert!(warnings[0].contains("column 'ts': 20 stored event times") && warnings[0].contains("1767225619 read as 1970-01-21"), "{}", warnings[0]);
    assert!(err.contains("50 rows written, 0 errors"), "{err}");
    let files: Vec<String> = walk(&dir.path().join("lake")).iter().filter(|p| p.extension().is_some_and(|e| e == "parquet")).map(|p| p.display().to_string()).collect();
    assert!(files.iter().any(|f| f.contains("/dt=1970-01-21/")) && files.iter().any(|f| f.contains("/dt=2026-01-01/")), "{files:?}");
}

#[test]
fn convert_lands_every_record_once_with_exact_types() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clicks.ndjson");
    let (ids, bad) = gen(&input, &["--records", "12000", "--bad-every", "40", "--seed", "7"]);
    assert_eq!(bad.len(), 300);
    let lake = dir.path().join("lake");
    let raw = dir.path().join("raw");
    let out = run_ok(bin().args(["convert", "--schema"]).arg(root().join("schemas/events.toml"))
        .arg("--out").arg(&lake).arg("--raw-backup").arg(&raw).arg("--max-records").arg("1000").arg(&input));
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(summary.contains("12000 records") && summary.contains("11700 rows written, 300 errors"), "{summary}");

    let facts = check(&["--lake", lake.to_str().unwrap(), "--errors", lake.join("_errors").to_str().unwrap(),
        "--raw", raw.to_str().unwrap(), "--time-column", "ts", "--compare-clickstream", input.to_str().unwrap()]);
    assert_exactly_once(&facts, &ids, &bad, true);
    assert_eq!(facts["value_mismatches"], serde_json::json!([]), "every value round-trips");
    assert_eq!(facts["partition_mismatches"], serde_json::json!([]), "every row sits in its partition");

    let schema = &facts["schema"];
    for (col, ty) in [("event_id", "string"), ("ts", "timestamp[ms, tz=UTC]"), ("user_id", "int64"), ("duration_ms", "int32"),
        ("revenue", "decimal128(10, 2)"), ("is_bot", "bool"), ("tags", "list<element: string>"),
        ("device", "struct<os: string, os_version: string, model: string>")] {
        assert_eq!(schema[col], ty, "{col}");
    }
    assert!(schema["properties"].as_str().unwrap().starts_with("map<string, string"), "{}", schema["properties"]);
    assert_eq!(facts["nullable"]["event_id"], false, "required columns are REQUIRED in Parquet");
    assert_eq!(facts["duckdb_types"]["ts"], "TIMESTAMP WITH TIME ZONE");
    assert_eq!(facts["duckdb_types"]["revenue"], "DECIMAL(10,2)");
    let cols = facts["columns"].as_object().unwrap();
    assert_eq!(cols["ts"]["physical"], "INT64");
    let logical = cols["ts"]["logical"].as_str().unwrap();
    assert!(logical.contains("isAdjustedToUTC=true") && logical.contains("milliseconds"), "{logical}");
    for (name, c) in cols {
        assert_eq!(c["compression"], "SNAPPY", "{name}");
        assert_eq!(c["has_statistics"], true, "{name}");
    }
    assert!(strs(&cols["event_type"]["encodings"]).contains(&"RLE_DICTIONARY".to_string()));
    assert_eq!(facts["kv"]["lakehose.table"], "events");
    assert!(facts["kv"]["lakehose.schema_version"].as_str().unwrap().len() == 16);

    // keys come only from the data: a second run writes the very same keys
    let files: BTreeSet<String> = strs(&facts["parquet_files"]).into_iter().collect();
    for f in &files {
        let ok = f.starts_with("dt=2026-11-21/hr=") && f.contains("/event_type=") && f.contains("/clicks.ndjson-") && f.ends_with("-0.snappy.parquet");
        assert!(ok, "unexpected key {f}");
    }
    let lake2 = dir.path().join("lake2");
    run_ok(bin().args(["convert", "--schema"]).arg(root().join("schemas/events.toml")).arg("--out").arg(&lake2)
        .arg("--max-records").arg("1000").arg(&input));
    let facts2 = check(&["--lake", lake2.to_str().unwrap()]);
    let files2: BTreeSet<String> = strs(&facts2["parquet_files"]).into_iter().collect();
    assert_eq!(files, files2, "deterministic object keys");
}

#[test]
fn second_example_schema_formats_nested_and_extra_keys() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("orders.ndjson");
    std::fs::write(&input, concat!(
        r#"{"order_id":"o1","createdAt":"2026-11-21 13:05:00.250","orderDate":"2026-11-21","status":"paid","customer":{"Address":{"COUNTRY":"DE"}},"total":"19.90","quantity":2,"lines":[{"sku":"A","qty":1,"unit_price":9.95},{"sku":"B","qty":1,"unit_price":"9.95"}],"coupon":"AAEC","channel":"web"}"#, "\n",
        r#"{"order_id":"o2","createdAt":1795266300,"orderDate":"2026-11-21","status":"shipped","total":5,"lines":[]}"#, "\n",
        r#"{"order_id":"o3","createdAt":"2026-11-22T01:00:00+02:00","status":"paid","total":1}"#, "\n",
        r#"{"order_id":"o4","status":"refunded_and_closed_x","total":1}"#, "\n",
        r#"{"order_id":"o5","status":"paid","total":1,"quantity":70000}"#, "\n",
    )).unwrap();
    let lake = dir.path().join("lake");
    run_ok(bin().args(["convert", "--schema"]).arg(root().join("schemas/orders.toml")).arg("--out").arg(&lake).arg(&input));
    let facts = check(&["--lake", lake.to_str().unwrap(), "--errors", lake.join("_errors").to_str().unwrap(), "--id-column", "order_id"]);
    assert_eq!(strs(&facts["ids"]), vec!["o1", "o2", "o3"]);
    let errs = facts["errors"].as_array().unwrap();
    let msgs: Vec<&str> = errs.iter().map(|e| e["errorMessage"].as_str().unwrap()).collect();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("column 'status'") && m.contains("varchar(16)")), "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("column 'quantity'") && m.contains("70000")), "{msgs:?}");
    let files = strs(&facts["parquet_files"]);
    assert!(files.iter().any(|f| f.starts_with("dt=2026-11-21/status=paid/")), "{files:?}");
    assert!(files.iter().any(|f| f.starts_with("dt=2026-11-21/status=shipped/")), "{files:?}");
    let schema = &facts["schema"];
    assert_eq!(schema["status"], "string");
    assert_eq!(schema["order_date"], "date32[day]");
    assert_eq!(schema["coupon"], "binary");
    assert_eq!(schema["quantity"], "int16");
    assert_eq!(schema["lines"], "list<element: struct<sku: string, qty: int32, unit_price: decimal128(10, 2)>>");
    assert_eq!(facts["columns"]["order_date"]["logical"], "Date");
    assert_eq!(facts["columns"]["total"]["physical"], "INT64", "decimal(12,2) is INT64-backed");
    let by_id: BTreeMap<String, Value> = facts["sample"].as_array().unwrap().iter().map(|r| (r["order_id"].as_str().unwrap().to_string(), r.clone())).collect();
    let o1 = &by_id["o1"];
    assert_eq!(o1["created_at"], "2026-11-21 13:05:00.250000+00:00");
    assert_eq!(o1["customer_country"], "DE");
    assert_eq!(o1["total"], "19.90");
    assert_eq!(o1["lines"][1]["unit_price"], "9.95");
    assert_eq!(o1["_extra"], r#"{"channel":"web"}"#);
    assert_eq!(by_id["o2"]["created_at"], "2026-11-21 13:05:00+00:00", "epoch_seconds");
    assert_eq!(by_id["o3"]["created_at"], "2026-11-21 23:00:00+00:00", "offset applied");
}

/// String columns of every shape lakehose encodes itself (dictionary or
/// PLAIN, nested in structs, in lists and maps, a dictionary that
/// overflows into PLAIN pages, a required mostly-distinct column, a
/// column of one value) read back by pyarrow and DuckDB as the input had them.
#[test]
fn string_columns_of_every_shape_read_back_in_pyarrow_and_duckdb() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("shapes.toml");
    std::fs::write(
        &schema,
        r#"table = "shapes"
[[columns]]
name = "id"
type = "string"
required = true
[[columns]]
name = "one"
type = "string"
[[columns]]
name = "kind"
type = "string"
[[columns]]
name = "outer"
type = "struct<inner:struct<s:string>,t:string>"
[[columns]]
name = "tags"
type = "array<string>"
[[columns]]
name = "props"
type = "map<string,string>"
[[columns]]
name = "big"
type = "array<string>"
[partition]
time = { column = "arrival", granularity = "day" }
"#,
    )
    .unwrap();
    let input = dir.path().join("shapes.ndjson");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    let word = |i: usize| ["view", "click", "", "é-ü", "https://shop.example.com/p/1234?ref=home"][i % 5];
    for i in 0..30_000usize {
        let mut r = serde_json::Map::new();
        r.insert("id".into(), format!("id-{i:06}").into());
        r.insert("one".into(), "only".into());
        if i % 7 != 0 {
            r.insert("kind".into(), word(i).into());
        }
        match i % 6 {
            0 => {}
            1 => {
                r.insert("outer".into(), Value::Null);
            }
            2 => {
                r.insert("outer".into(), serde_json::json!({"t": word(i + 1)}));
            }
            _ => {
                r.insert("outer".into(), serde_json::json!({"inner": {"s": if i % 4 == 0 { Value::Null } else { word(i + 2).into() }}, "t": word(i)}));
            }
        }
        if i % 9 != 4 {
            let tags: Vec<Value> = (0..i % 4).map(|j| if j == 2 { Value::Null } else { word(i + j).into() }).collect();
            r.insert("tags".into(), tags.into());
        }
        if i % 8 != 3 {
            let props: serde_json::Map<String, Value> =
                (0..i % 3).map(|j| (["campaign", "ab", "locale"][j].to_string(), if (i + j) % 5 == 0 { Value::Null } else { word(i * 7 + j).into() })).collect();
            r.insert("props".into(), props.into());
        }
        // 60k distinct 24-byte values: 1.7 MB of dictionary, past its 1 MiB limit
        r.insert("big".into(), serde_json::json!([format!("big-value-{:014}", 2 * i), format!("big-value-{:014}", 2 * i + 1)]));
        writeln!(f, "{}", Value::Object(r)).unwrap();
    }
    drop(f);
    let lake = dir.path().join("lake");
    run_ok(bin().args(["convert", "--schema"]).arg(&schema).arg("--out").arg(&lake).arg(&input));
    let out = run_ok(Command::new(py()).arg(root().join("tests/py/same_rows.py")).arg(&input).arg(&lake).arg("id"));
    let facts: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(facts["rows"], 30_000);
    assert_eq!(facts["pyarrow_mismatches"], serde_json::json!([]), "pyarrow");
    assert_eq!(facts["duckdb_mismatches"], serde_json::json!([]), "DuckDB");
    let enc = &facts["encodings"];
    assert_eq!(enc["id"], serde_json::json!(["PLAIN", "RLE"]), "mostly distinct: no dictionary");
    assert_eq!(enc["one"], serde_json::json!(["PLAIN", "RLE", "RLE_DICTIONARY"]));
    // `big`: dictionary pages first, PLAIN pages once the dictionary is full
    let file = walk(&lake).into_iter().find(|p| p.extension().is_some_and(|e| e == "parquet")).unwrap();
    let reader = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(file).unwrap()).unwrap();
    use parquet::file::reader::FileReader;
    let group = reader.get_row_group(0).unwrap();
    let big = (0..group.num_columns()).find(|&c| group.metadata().column(c).column_path().string() == "big.list.element").unwrap();
    let pages: Vec<_> = group.get_column_page_reader(big).unwrap().map(|p| p.unwrap()).filter(|p| p.page_type() == parquet::basic::PageType::DATA_PAGE).map(|p| p.encoding()).collect();
    assert_eq!(pages.first(), Some(&parquet::basic::Encoding::RLE_DICTIONARY), "{pages:?}");
    assert_eq!(pages.last(), Some(&parquet::basic::Encoding::PLAIN), "{pages:?}");
}

/// Every file under `dir`.
/// Replaces text in a config file; each `from` must be there.
fn edit(cfg: &Path, replace: &[(&str, &str)]) {
    let mut text = std::fs::read_to_string(cfg).unwrap();
    for (from, to) in replace {
        assert!(text.contains(from), "{from} not in {}", cfg.display());
        text = text.replace(from, to);
    }
    std::fs::write(cfg, text).unwrap();
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A process under test. Its stderr, when piped, is drained by a thread
/// as it comes: a chatty process must never block on a full pipe (64 KiB)
/// that nobody reads — it would stop flushing and look like a lost record.
struct Daemon {
    child: Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    drain: Option<std::thread::JoinHandle<()>>,
}

/// A test that fails midway leaves no process behind, and shows the end of
/// the process's log (when it was captured) to say what it was doing.
impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            eprintln!("--- last lines of pid {}'s stderr ---", self.child.id());
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            tail.iter().rev().for_each(|l| eprintln!("{l}"));
        }
    }
}

impl Daemon {
    fn new(mut child: Child) -> Daemon {
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let drain = child.stderr.take().map(|mut e| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n @ 1..) = e.read(&mut buf) {
                    log.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            })
        });
        Daemon { child, log, drain }
    }
    fn start(config: &Path) -> Daemon {
        Daemon::new(bin().args(["run", "--config"]).arg(config).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap())
    }
    /// Its stderr: all of it once the process has exited.
    fn log(&mut self) -> String {
        if self.child.try_wait().is_ok_and(|s| s.is_some()) {
            if let Some(d) = self.drain.take() {
                let _ = d.join();
            }
        }
        self.log.lock().unwrap().clone()
    }
    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
    /// SIGTERM; returns (exit success, seconds to exit, stderr).
    fn term(mut self) -> (bool, f64, String) {
        let t = Instant::now();
        run_ok(Command::new("kill").arg("-TERM").arg(self.child.id().to_string()));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return (st.success(), t.elapsed().as_secs_f64(), self.log());
            }
            assert!(Instant::now() < deadline, "daemon did not stop within 30s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Waits until the lake holds `n` rows and the errors `e` lines (or panics after `secs`).
fn wait_for(lake: &Path, errors: &Path, n: usize, e: usize, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let f = check(&["--lake", lake.to_str().unwrap(), "--errors", errors.to_str().unwrap()]);
        if f["pyarrow_rows"].as_u64().unwrap() as usize >= n && f["errors"].as_array().unwrap().len() >= e {
            return f;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {n} rows / {e} errors: have {} / {}", f["pyarrow_rows"], f["errors"].as_array().unwrap().len());
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn spool_config(dir: &Path, extra: &str) -> PathBuf {
    let cfg = dir.join("lakehose.toml");
    std::fs::write(&cfg, format!(r#"
[source]
kind = "spool"
dir = "spool"
poll_interval = "50ms"

[table]
schema = "{}"

[sink]
url = "lake"
raw_backup = "raw"
errors = "errors"

[buffer]
max_records = 200
max_age = "1s"
{extra}
"#, root().join("schemas/events.toml").display())).unwrap();
    cfg
}

#[test]
fn spool_survives_kill_9_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let cfg = spool_config(dir.path(), "");
    let mut all_ids = Vec::new();
    let mut all_bad = BTreeMap::new();
    let mut rng: u64 = 0x5eed;
    let mut next = || {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        rng >> 33
    };
    // 8 segments arrive over time; the daemon is killed -9 at random moments
    for seg in 0..8 {
        let tmp = dir.path().join(format!("seg-{seg:02}.tmp"));
        let prefix = format!("k{}", (b'a' + seg as u8) as char); // ids unique across segments
        let (ids, bad) = gen(&tmp, &["--records", "1500", "--bad-every", "50", "--seed", &seg.to_string(), "--id-prefix", &prefix]);
        let fixed = std::fs::read(&tmp).unwrap();
        all_bad.extend(bad);
        all_ids.extend(ids);
        // append the segment in two halves so the daemon also sees a growing file
        // names in pairs that differ only in '_' versus ' ' ("seg_00", "seg 00"):
        // both must keep their own object keys
        let target = spool.join(format!("seg{}{:02}.ndjson", if seg % 2 == 0 { '_' } else { ' ' }, seg / 2 * 2));
        let cut = fixed.iter().enumerate().filter(|(_, &b)| b == b'\n').nth(700).unwrap().0 + 1;
        std::fs::write(&target, &fixed[..cut]).unwrap();
        let d = Daemon::start(&cfg);
        std::thread::sleep(Duration::from_millis(150 + next() % 900));
        std::fs::OpenOptions::new().append(true).open(&target).unwrap().write_all(&fixed[cut..]).unwrap();
        std::thread::sleep(Duration::from_millis(next() % 700));
        d.kill9();
    }
    let d = Daemon::start(&cfg);
    let good = all_ids.len() - all_bad.len();
    wait_for(&dir.path().join("lake"), &dir.path().join("errors"), good, all_bad.len(), 120);
    let (ok, secs, stderr) = d.term();
    assert!(ok, "SIGTERM exit code: {stderr}");
    assert!(secs < 10.0, "SIGTERM took {secs}s");
    let facts = check(&["--lake", dir.path().join("lake").to_str().unwrap(), "--errors", dir.path().join("errors").to_str().unwrap(),
        "--raw", dir.path().join("raw").to_str().unwrap()]);
    assert_exactly_once(&facts, &all_ids, &all_bad, true);
    // a restart after a clean stop reads nothing again
    let d = Daemon::start(&cfg);
    std::thread::sleep(Duration::from_millis(800));
    let (ok, _, _) = d.term();
    assert!(ok);
    let again = check(&["--lake", dir.path().join("lake").to_str().unwrap()]);
    assert_eq!(again["pyarrow_rows"], facts["pyarrow_rows"]);
}

#[test]
fn sigterm_flushes_open_buffers_and_saves_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let cfg = spool_config(dir.path(), "").to_path_buf();
    // buffers would not flush for an hour on their own
    let text = std::fs::read_to_string(&cfg).unwrap().replace("max_records = 200", "max_records = 1000000").replace("max_age = \"1s\"", "max_age = \"1h\"");
    std::fs::write(&cfg, text).unwrap();
    let (ids, bad) = gen(&spool.join("a.ndjson"), &["--records", "3000", "--bad-every", "100"]);
    std::fs::remove_file(spool.join("a.ndjson.bad.tsv")).unwrap();
    let d = Daemon::start(&cfg);
    let state = spool.join(".lakehose-spool-state.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&state).map(|s| s.contains("a.ndjson")).unwrap_or(false) {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let before = check(&["--lake", dir.path().join("lake").to_str().unwrap()]);
    assert_eq!(before["pyarrow_rows"], 0, "nothing is due before SIGTERM");
    let (ok, secs, err) = d.term();
    assert!(ok && secs < 10.0, "{ok} {secs} {err}");
    let facts = check(&["--lake", dir.path().join("lake").to_str().unwrap(), "--errors", dir.path().join("errors").to_str().unwrap(),
        "--raw", dir.path().join("raw").to_str().unwrap()]);
    assert_exactly_once(&facts, &ids, &bad, true);
    let st: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let cp = &st["segments"]["a.ndjson"]["checkpoint"];
    assert!(cp["resume"]["after"].is_object(), "offset saved after the last record: {cp}");
    assert_eq!(cp["done"], serde_json::json!({}));
}

#[test]
fn stdin_source_runs_to_end_of_input_and_follows_schema_edits() {
    use glue::wait_metric;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let (ids, bad) = gen(&input, &["--records", "2000", "--bad-every", "25"]);
    let schema = dir.path().join("events.toml");
    let original = std::fs::read_to_string(root().join("schemas/events.toml")).unwrap();
    std::fs::write(&schema, &original).unwrap();
    let port = free_port();
    let cfg = dir.path().join("l.toml");
    std::fs::write(&cfg, format!("[source]\nkind = \"stdin\"\n[table]\nschema = \"{}\"\n[sink]\nurl = \"lake\"\nerrors = \"errors\"\n[buffer]\nmax_age = \"1s\"\n[catalog]\nschema_poll = \"200ms\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
        schema.display())).unwrap();
    let mut child = bin().args(["run", "--config"]).arg(&cfg).current_dir(dir.path()).stdin(Stdio::piped()).spawn().unwrap();
    let data = std::fs::read(&input).unwrap();
    let half = data.iter().enumerate().filter(|(_, &b)| b == b'\n').nth(999).unwrap().0 + 1;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&data[..half]).unwrap();
    stdin.flush().unwrap();
    // stdin stays open and idle: buffers older than max_age are written anyway
    let first_half_good = ids[..1000].iter().filter(|i| !bad.contains_key(*i)).count();
    wait_for(&dir.path().join("lake"), &dir.path().join("errors"), first_half_good, 0, 30);
    // a compatible edit while stdin is open: the second half is written with the new column
    std::fs::write(&schema, original + "\n[[columns]]\nname = \"page_title\"\ntype = \"string\"\nsource = \"page.title\"\n").unwrap();
    wait_metric(port, "lakehose_schema_reloads_total{result=\"applied\"}", 1.0, 20);
    stdin.write_all(&data[half..]).unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
    let facts = check(&["--lake", dir.path().join("lake").to_str().unwrap(), "--errors", dir.path().join("errors").to_str().unwrap()]);
    assert_exactly_once(&facts, &ids, &bad, false);
    let titled: Value = serde_json::from_slice(&run_ok(Command::new(py()).arg("-c").arg(format!(r#"
import json, pathlib, pyarrow.parquet as pq
ids, same = [], 0
for f in pathlib.Path('{}').rglob('*.parquet'):
    t = pq.read_table(f, partitioning=None)
    if 'page_title' in t.column_names:
        for r in t.select(['event_id', 'page', 'page_title']).to_pylist():
            ids.append(r['event_id'])
            same += r['page_title'] == (r['page'] or {{}}).get('title')
print(json.dumps({{'ids': sorted(ids), 'same': same}}))"#, dir.path().join("lake").display()))).stdout).unwrap();
    let second_half: Vec<&String> = ids[1000..].iter().filter(|i| !bad.contains_key(*i)).collect();
    let mut want: Vec<&String> = second_half.clone();
    want.sort();
    assert_eq!(strs(&titled["ids"]).iter().collect::<Vec<_>>(), want, "exactly the records after the edit are in files with the new column");
    assert_eq!(titled["same"], second_half.len(), "page_title holds page.title");
}

/// A running process's peak resident memory so far (Linux's VmHWM), in KiB.
fn peak_rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).expect("VmHWM")
}

fn peak_rss_kib(stderr: &str) -> u64 {
    stderr.lines().rev().find_map(|l| l.strip_prefix("peak_rss_kib=")).expect("peak_rss line").trim().parse().unwrap()
}

#[test]
fn ten_thousand_partitions_stay_within_the_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("many.ndjson");
    let (ids, _) = gen(&input, &["--records", "20000", "--event-types", "10000", "--hours", "1"]);
    let lake = dir.path().join("lake");
    let schema = root().join("schemas/events.toml");
    let run = |limit: &str, out: &Path| {
        let o = run_ok(Command::new(py()).arg(root().join("tests/py/peak_rss.py")).arg(env!("CARGO_BIN_EXE_lakehose"))
            .args(["convert", "--memory-limit", limit, "--schema"]).arg(&schema).arg("--out").arg(out).arg(&input));
        peak_rss_kib(&String::from_utf8_lossy(&o.stderr))
    };
    let small = run("16MiB", &lake);
    let big = run("1GiB", &dir.path().join("lake-unbounded"));
    let facts = check(&["--lake", lake.to_str().unwrap()]);
    assert_eq!(facts["pyarrow_rows"].as_u64().unwrap() as usize, ids.len());
    let parts: BTreeSet<String> = strs(&facts["parquet_files"]).iter().map(|f| f.rsplit_once('/').unwrap().0.to_string()).collect();
    assert_eq!(parts.len(), 10_000);
    eprintln!("peak RSS with 16MiB limit: {small} KiB, with 1GiB limit: {big} KiB");
    // the budget covers buffered records; the process's own footprint (about
    // 26 MiB: binary, runtime, allocator arenas, a group of files being
    // encoded) comes on top of it
    assert!(small < 16 * 1024 + 56 * 1024, "peak RSS {small} KiB over 16 MiB limit + 56 MiB process baseline");
    assert!(small < big, "the limit changes the footprint ({small} vs {big} KiB)");
}

/// A line far longer than the record size limit is never held whole: a
/// 2 GiB line, a 2 GiB input without a newline (a sparse file of zero
/// bytes) and 1000 lines of 5 MiB go through `convert` with a 64 MiB
/// memory limit, and its peak resident memory stays under the limit plus
/// 64 MiB. The good records around them land; each long line is one error
/// record whose rawData is its first 1000 KiB, marked truncated with its
/// full size.
#[test]
fn huge_lines_stay_within_the_memory_limit() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let schema = root().join("schemas/events.toml");
    let limit_kib = 64 * 1024;
    for kind in ["single", "many", "no-newline"] {
        let input = dir.path().join(format!("{kind}.ndjson"));
        let lake = dir.path().join(format!("lake-{kind}"));
        let writer = if kind == "no-newline" {
            std::fs::File::create(&input).unwrap().set_len(2 << 30).unwrap(); // sparse: takes no disk
            None
        } else {
            run_ok(Command::new("mkfifo").arg(&input));
            Some(Command::new(py()).arg(root().join("tests/py/huge_lines.py")).arg(&input).arg(kind).stdout(Stdio::piped()).spawn().unwrap())
        };
        let out = Command::new(py()).arg(root().join("tests/py/peak_rss.py")).arg(env!("CARGO_BIN_EXE_lakehose"))
            .args(["convert", "--memory-limit", "64MiB", "--schema"]).arg(&schema).arg("--out").arg(&lake).arg(&input)
            .env("LAKEHOSE_LOG", "warn").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let rss = peak_rss_kib(&stderr);
        eprintln!("{kind}: peak RSS {rss} KiB");
        assert!(rss < limit_kib + 64 * 1024, "{kind}: peak RSS {rss} KiB over the 64 MiB limit + 64 MiB");
        let (good, huge): (Vec<String>, BTreeMap<String, u64>) = match writer {
            Some(w) => {
                let o = w.wait_with_output().unwrap();
                let f: Value = serde_json::from_slice(&o.stdout).unwrap();
                (strs(&f["good"]), f["huge"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap())).collect())
            }
            None => (Vec::new(), BTreeMap::new()),
        };
        let facts = check(&["--lake", lake.to_str().unwrap()]);
        let mut rows = strs(&facts["ids"]);
        rows.sort();
        let mut want = good.clone();
        want.sort();
        assert_eq!(rows, want, "{kind}: the good records land");
        let mut errors = Vec::new();
        for f in walk(&lake.join("_errors")) {
            let mut text = String::new();
            flate2::read::MultiGzDecoder::new(std::fs::File::open(&f).unwrap()).read_to_string(&mut text).unwrap();
            errors.extend(text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()));
        }
        let expect = if kind == "no-newline" { 1 } else { huge.len() };
        assert_eq!(errors.len(), expect, "{kind}: one error record per long line");
        for e in &errors {
            let raw = base64::engine::general_purpose::STANDARD.decode(e["rawData"].as_str().unwrap()).unwrap();
            assert_eq!(raw.len(), 1000 * 1024, "{kind}: rawData is the first 1000 KiB");
            assert_eq!(e["errorCode"], "DataFormatConversion.RecordTooLarge");
            assert_eq!(e["rawDataTruncated"], true);
            let size = e["originalSize"].as_u64().unwrap();
            assert!(e["errorMessage"].as_str().unwrap().contains(&format!("record is {size} bytes")), "{e}");
            if kind == "no-newline" {
                assert_eq!(size, 2 << 30);
            } else {
                let id = String::from_utf8_lossy(&raw[13..]).split('"').next().unwrap().to_string();
                assert_eq!(huge.get(&id), Some(&size), "{kind}: {id} with its full size");
            }
        }
        assert_eq!(out.status.code(), Some(if kind == "no-newline" { 2 } else { 0 }), "{kind}: {stderr}");
    }
}

/// Input that is not NDJSON is named, with the fix: a JSON array, a
/// pretty-printed document and binary data each get one message (on
/// stderr and in the summary) and `convert` exits 2; its lines are still
/// in the error prefix, and a good input beside them still lands.
#[test]
fn json_arrays_pretty_json_and_binary_input_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let rec = |i: u32| format!("{{\"event_id\":\"e{i}\",\"timestamp\":\"2026-12-06T10:00:00Z\",\"event_type\":\"view\"}}");
    std::fs::write(dir.path().join("good.ndjson"), format!("{}\n{}\n", rec(1), rec(2))).unwrap();
    std::fs::write(dir.path().join("array.json"), format!("[\n  {},\n  {},\n  {}\n]\n", rec(3), rec(4), rec(5))).unwrap();
    std::fs::write(dir.path().join("pretty.json"), "{\n  \"event_id\": \"e6\",\n  \"event_type\": \"view\"\n}\n").unwrap();
    let binary: Vec<u8> = (0..20_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(dir.path().join("blob.bin"), binary).unwrap();
    let args = |names: &[&str]| -> Vec<PathBuf> { names.iter().map(|n| dir.path().join(n)).collect() };
    let lake = dir.path().join("lake");
    let out = bin().args(["convert", "--schema"]).arg(root().join("schemas/events.toml")).arg("--out").arg(&lake)
        .args(args(&["good.ndjson", "array.json", "pretty.json", "blob.bin"])).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let array = dir.path().join("array.json");
    for (name, what) in [("array.json", format!("1 of 5 records parsed: this looks like a JSON array; lakehose reads one JSON object per line; `jq -c '.[]' {}` converts it", array.display())),
                         ("pretty.json", "0 of 4 records parsed: this looks like pretty-printed JSON".to_string()), ("blob.bin", "records parsed: this looks like binary data, not UTF-8 text".to_string())] {
        // the summary names the input as the command line did
        let path = dir.path().join(name).display().to_string();
        assert!(err.lines().any(|l| l.trim_start().starts_with(&format!("{path}: ")) && l.contains(&what)), "{name} in the summary with {what}: {err}");
        assert!(err.lines().any(|l| l.contains("\"level\":\"ERROR\"") && l.contains(&what)), "{name}: an error log line");
    }
    assert!(!err.lines().any(|l| l.contains("good.ndjson: ") && l.contains("records parsed")), "{err}");
    assert!(err.lines().any(|l| l.trim_start() == format!("{}: 2 records, 2 rows, 0 errors", dir.path().join("good.ndjson").display())), "a line per input: {err}");
    let facts = check(&["--lake", lake.to_str().unwrap()]);
    let mut ids = strs(&facts["ids"]);
    ids.sort();
    assert!(ids.starts_with(&["e1".to_string(), "e2".to_string()]), "the good input lands: {ids:?}");
    // a good input alone: exit 0
    let ok = bin().args(["convert", "--schema"]).arg(root().join("schemas/events.toml")).arg("--out").arg(dir.path().join("lake2"))
        .arg(dir.path().join("good.ndjson")).output().unwrap();
    assert_eq!(ok.status.code(), Some(0));
}

#[test]
fn cli_reports_bad_input_with_file_line_key_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad_schema = dir.path().join("bad.toml");
    std::fs::write(&bad_schema, "table = \"t\"\n\n[[columns]]\nname = \"a\"\ntype = \"strng\"\n").unwrap();
    let o = bin().args(["schema", "check"]).arg(&bad_schema).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("bad.toml:5: key `columns[0].type`") && e.contains("allowed:"), "{e}");

    let o = bin().args(["convert", "--schema"]).arg(&bad_schema).args(["--out"]).arg(dir.path().join("x")).output().unwrap();
    assert_eq!(o.status.code(), Some(2));

    let cfg = dir.path().join("l.toml");
    std::fs::write(&cfg, "[source]\nkind = \"spool\"\ndir = \"s\"\n[table]\nschema = \"x.toml\"\n[sink]\nurl = \"l\"\nerrors = \"e\"\n[buffer]\nmax_age = \"soon\"\n").unwrap();
    let o = bin().args(["run", "--config"]).arg(&cfg).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("l.toml:10: key `buffer.max_age`") && e.contains("write e.g."), "{e}");
    let o = bin().args(["run", "--config"]).arg(&cfg).env("LAKEHOSE_BUFFER_MAX_AGE", "5s").output().unwrap();
    assert_eq!(o.status.code(), Some(2), "env fixes max_age; now the schema file is missing");
    assert!(String::from_utf8_lossy(&o.stderr).contains("x.toml"), "{}", String::from_utf8_lossy(&o.stderr));

    // schema evolution verdicts
    let events = root().join("schemas/events.toml");
    let text = std::fs::read_to_string(&events).unwrap();
    let widened = dir.path().join("widened.toml");
    std::fs::write(&widened, text.replace("name = \"duration_ms\"\ntype = \"int\"", "name = \"duration_ms\"\ntype = \"bigint\"")
        + "\n[[columns]]\nname = \"referrer_domain\"\ntype = \"string\"\n").unwrap();
    let o = bin().args(["schema", "check"]).arg(&widened).arg("--against").arg(&events).output().unwrap();
    let s = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{s}");
    assert!(s.contains("duration_ms: type int → bigint") && s.contains("referrer_domain: added") && s.contains("compatible"), "{s}");
    let narrowed = dir.path().join("narrowed.toml");
    std::fs::write(&narrowed, text.replace("name = \"user_id\"\ntype = \"bigint\"", "name = \"user_id\"\ntype = \"int\"")).unwrap();
    let o = bin().args(["schema", "check"]).arg(&narrowed).arg("--against").arg(&events).output().unwrap();
    let s = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(2), "{s}");
    assert!(s.contains("BAD user_id") && s.contains("narrowing bigint to int") && s.contains("incompatible"), "{s}");

    // infer drafts a schema that checks and converts the sample it came from
    let sample = dir.path().join("sample.ndjson");
    gen(&sample, &["--records", "300"]);
    let o = run_ok(bin().args(["schema", "infer"]).arg(&sample));
    let draft = dir.path().join("draft.toml");
    std::fs::write(&draft, &o.stdout).unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("name = \"timestamp\"\ntype = \"timestamp\"") && text.contains("type = \"struct<os:string,os_version:string,model:string>\""), "{text}");
    run_ok(bin().args(["schema", "check"]).arg(&draft));
    let out = run_ok(bin().args(["convert", "--schema"]).arg(&draft).arg("--out").arg(dir.path().join("d")).arg(&sample));
    assert!(String::from_utf8_lossy(&out.stderr).contains("300 rows written, 0 errors"));

    for sub in [&["--help"][..], &["run", "--help"], &["convert", "--help"], &["schema", "check", "--help"], &["schema", "infer", "--help"]] {
        let o = run_ok(bin().args(sub));
        assert!(String::from_utf8_lossy(&o.stdout).contains("Usage: lakehose"), "{sub:?}");
    }
}

/// A free loopback port (the listener is closed again at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A test server process (moto, kinesalite) on a free loopback port, killed
/// when dropped.
pub struct Server {
    child: Child,
    pub endpoint: String,
}

impl Server {
    /// Spawns `command(port)` and waits up to 30 s for `ready(port)`.
    pub fn start(name: &str, command: impl FnOnce(&str) -> Command, ready: impl Fn(u16) -> bool) -> Server {
        let port = free_port();
        let child = command(&port.to_string()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let server = Server { child, endpoint: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready(port) {
            assert!(Instant::now() < deadline, "{name} did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Moto {
    _server: Server,
    endpoint: String,
}

impl Moto {
    fn start() -> Moto {
        let server = Server::start(
            "moto_server",
            |port| {
                let mut c = Command::new(py().parent().unwrap().join("moto_server"));
                c.args(["-H", "127.0.0.1", "-p", port]);
                c
            },
            |port| {
                let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
                let _ = s.write_all(b"GET /moto-api/ HTTP/1.0\r\n\r\n");
                let mut buf = [0u8; 12];
                s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.")
            },
        );
        Moto { endpoint: server.endpoint.clone(), _server: server }
    }
    /// Runs a boto3 script (`c(service)` makes a client) and returns its stdout.
    fn boto(&self, code: &str) -> String {
        String::from_utf8(run_ok(&mut self.boto_command(code)).stdout).unwrap().trim().to_string()
    }
    /// The same script as a command to spawn in the background.
    fn boto_command(&self, code: &str) -> Command {
        let script = format!("import boto3, json\nc = lambda s: boto3.client(s, endpoint_url='{}', region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test')\n{code}", self.endpoint);
        let mut cmd = Command::new(py());
        cmd.arg("-c").arg(script);
        cmd
    }
}

#[test]
fn s3_sink_with_sse_kms_and_multipart_through_moto() {
    let moto = Moto::start();
    let key_id = moto.boto("k = c('kms').create_key()['KeyMetadata']['KeyId']\nc('s3').create_bucket(Bucket='lake-bkt')\nprint(k)");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clicks.ndjson");
    let (ids, bad) = gen(&input, &["--records", "4000", "--bad-every", "30"]);
    // one large incompressible record set to force a multipart upload (> 16 MiB)
    let big = dir.path().join("big.ndjson");
    {
        let mut f = std::fs::File::create(&big).unwrap();
        let mut x: u64 = 1;
        for i in 0..22_000 {
            let mut blob = String::with_capacity(1000);
            for _ in 0..125 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                blob.push_str(&format!("{:08x}", x as u32));
            }
            writeln!(f, r#"{{"event_id":"big-{i:08}-00000000","timestamp":"2026-11-21T05:00:00Z","event_type":"blob","session_id":"{blob}"}}"#).unwrap();
        }
    }
    let envs = [("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_REGION", "us-east-1")];
    run_ok(bin().envs(envs).args(["convert", "--schema"]).arg(root().join("schemas/events.toml"))
        .args(["--out", "s3://lake-bkt/events/", "--errors", "s3://lake-bkt/errors/events/", "--raw-backup", "s3://lake-bkt/raw/events/",
            "--endpoint", &moto.endpoint, "--kms-key-id", &key_id]).arg(&input).arg(&big));
    let facts = check(&["--lake", "s3://lake-bkt/events/", "--errors", "s3://lake-bkt/errors/events/", "--raw", "s3://lake-bkt/raw/events/",
        "--endpoint", &moto.endpoint, "--time-column", "ts"]);
    let mut all = ids.clone();
    all.extend((0..22_000).map(|i| format!("big-{i:08}-00000000")));
    let mut facts = facts;
    let rows: Vec<String> = strs(&facts["ids"]).into_iter().filter(|i| !i.starts_with("big-")).collect();
    assert_eq!(strs(&facts["ids"]).len() - rows.len(), 22_000, "every big record landed");
    facts["ids"] = serde_json::json!(rows);
    facts["raw_ids"] = serde_json::json!(strs(&facts["raw_ids"]).into_iter().filter(|i| !i.starts_with("big-")).collect::<Vec<_>>());
    assert_exactly_once(&facts, &ids, &bad, true);
    assert_eq!(facts["partition_mismatches"], serde_json::json!([]));
    let report = moto.boto(r#"
s3 = c('s3')
keys = [o['Key'] for p in s3.get_paginator('list_objects_v2').paginate(Bucket='lake-bkt') for o in p.get('Contents', [])]
heads = {k: s3.head_object(Bucket='lake-bkt', Key=k) for k in keys}
print(json.dumps({
  'n': len(keys),
  'sse': sorted({h.get('ServerSideEncryption', 'none') for h in heads.values()}),
  'kms': sorted({h.get('SSEKMSKeyId', '').split('/')[-1] for h in heads.values()}),
  'multipart': [k for k, h in heads.items() if '-' in h['ETag'].strip('"')],
  'big_size': max(h['ContentLength'] for h in heads.values()),
}))"#);
    let r: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(r["sse"], serde_json::json!(["aws:kms"]), "every object is SSE-KMS: {r}");
    assert_eq!(r["kms"], serde_json::json!([key_id]), "{r}");
    let multipart = strs(&r["multipart"]);
    assert!(r["big_size"].as_u64().unwrap() > 16 << 20, "{r}");
    assert!(multipart.iter().any(|k| k.contains("event_type=blob/")), "large Parquet went multipart: {r}");
}

#[test]
fn failed_uploads_exit_1_and_never_advance_the_checkpoint() {
    let moto = Moto::start();
    moto.boto("c('s3').create_bucket(Bucket='errs-bkt')");
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let (ids, _) = gen(&spool.join("a.ndjson"), &["--records", "500"]);
    let cfg = dir.path().join("l.toml");
    std::fs::write(&cfg, format!(
        "[source]\nkind = \"spool\"\ndir = \"spool\"\n[table]\nschema = \"{}\"\n[sink]\nurl = \"s3://no-such-bucket/events/\"\nerrors = \"s3://errs-bkt/e/\"\nendpoint = \"{}\"\n[buffer]\nmax_records = 100\nmax_age = \"500ms\"\n",
        root().join("schemas/events.toml").display(), moto.endpoint)).unwrap();
    let envs = [("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_REGION", "us-east-1")];
    let o = bin().envs(envs).args(["run", "--config"]).arg(&cfg).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("s3://no-such-bucket/events/"), "the error names the destination: {err}");
    let st: Value = serde_json::from_str(&std::fs::read_to_string(spool.join(".lakehose-spool-state.json")).unwrap()).unwrap();
    assert_eq!(st["segments"]["a.ndjson"]["checkpoint"]["resume"], "start", "nothing was committed: {st}");
    // once the bucket exists, a restart delivers every record exactly once
    moto.boto("c('s3').create_bucket(Bucket='no-such-bucket')");
    let d = Daemon::new(bin().envs(envs).args(["run", "--config"]).arg(&cfg).stderr(Stdio::piped()).spawn().unwrap());
    std::thread::sleep(Duration::from_millis(1500));
    let (ok, _, e) = d.term();
    assert!(ok, "{e}");
    let facts = check(&["--lake", "s3://no-such-bucket/events/", "--endpoint", &moto.endpoint]);
    let mut want = ids.clone();
    want.sort();
    assert_eq!(strs(&facts["ids"]), want);
}
