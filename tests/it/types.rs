//! Athena type fidelity, table-driven: every Glue type through decode →
//! Parquet → pyarrow (Arrow type, Parquet physical and logical type, value),
//! and the same schema through `lakehose run` into a Glue table on moto
//! (column types as Athena DDL spells them).

use super::*;

/// (Glue type, JSON value, Arrow type as pyarrow prints it, Parquet physical
/// type of the first leaf, logical type as pyarrow prints it, value read back as JSON).
const TYPES: &[(&str, &str, &str, &str, &str, &str)] = &[
    ("boolean", "true", "bool", "BOOLEAN", "None", "true"),
    ("tinyint", "-8", "int8", "INT32", "Int(bitWidth=8, isSigned=true)", "-8"),
    ("smallint", "300", "int16", "INT32", "Int(bitWidth=16, isSigned=true)", "300"),
    ("int", "-70000", "int32", "INT32", "None", "-70000"),
    ("bigint", "9007199254740993", "int64", "INT64", "None", "9007199254740993"),
    ("float", "1.5", "float", "FLOAT", "None", "1.5"),
    ("double", "-2.25e10", "double", "DOUBLE", "None", "-22500000000.0"),
    ("decimal(9,2)", "1234567.89", "decimal128(9, 2)", "INT32", "Decimal(precision=9, scale=2)", "\"1234567.89\""),
    ("decimal(18,4)", "\"-12345678901234.5678\"", "decimal128(18, 4)", "INT64", "Decimal(precision=18, scale=4)", "\"-12345678901234.5678\""),
    ("decimal(38,10)", "12345678901234567890.0123456789", "decimal128(38, 10)", "FIXED_LEN_BYTE_ARRAY", "Decimal(precision=38, scale=10)", "\"12345678901234567890.0123456789\""),
    ("string", "\"héllo\"", "string", "BYTE_ARRAY", "String", "\"héllo\""),
    ("varchar(5)", "\"abcde\"", "string", "BYTE_ARRAY", "String", "\"abcde\""),
    ("date", "\"2026-11-21\"", "date32[day]", "INT32", "Date", "\"2026-11-21\""),
    ("timestamp", "\"2026-11-21T13:05:00.123+02:00\"", "timestamp[ms, tz=UTC]", "INT64", "Timestamp(isAdjustedToUTC=true, timeUnit=milliseconds, is_from_converted_type=false, force_set_converted_type=false)", "\"2026-11-21 11:05:00.123000+00:00\""),
    ("binary", "\"aGk=\"", "binary", "BYTE_ARRAY", "None", "\"6869\""),
    ("array<int>", "[1,2,null]", "list<element: int32>", "INT32", "None", "[1, 2, null]"),
    ("map<string,bigint>", "{\"a\":1}", "map<string, int64>", "BYTE_ARRAY", "String", "[[\"a\", 1]]"),
    ("struct<a:int,b:string>", "{\"a\":7,\"b\":\"x\"}", "struct<a: int32, b: string>", "INT32", "None", "{\"a\": 7, \"b\": \"x\"}"),
];

fn col_name(i: usize) -> String {
    format!("c{i:02}")
}

fn schema_text() -> String {
    let mut s = String::from("table = \"types\"\n");
    for (i, (ty, ..)) in TYPES.iter().enumerate() {
        s.push_str(&format!("[[columns]]\nname = \"{}\"\ntype = \"{ty}\"\n", col_name(i)));
    }
    s.push_str("[partition]\ntime = { column = \"arrival\", granularity = \"day\" }\n");
    s
}

fn record() -> String {
    let fields: Vec<String> = TYPES.iter().enumerate().map(|(i, (_, v, ..))| format!("\"{}\":{v}", col_name(i))).collect();
    format!("{{{}}}\n", fields.join(","))
}

#[test]
fn every_glue_type_reaches_parquet_and_glue_as_athena_expects() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("types.toml");
    std::fs::write(&schema, schema_text()).unwrap();
    let input = dir.path().join("in.ndjson");
    std::fs::write(&input, record()).unwrap();
    let lake = dir.path().join("lake");
    let out = run_ok(bin().args(["convert", "--schema"]).arg(&schema).arg("--out").arg(&lake).arg(&input));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 rows written, 0 errors"), "{}", String::from_utf8_lossy(&out.stderr));
    let script = format!(r#"
import glob, json, re, pyarrow.parquet as pq
f = glob.glob('{}/**/*.parquet', recursive=True)[0]
pf = pq.ParquetFile(f)
t = pf.read()
leaf = {{}}
for i in range(pf.metadata.num_columns):
    c = pf.schema.column(i)
    top = c.path.split('.')[0]
    leaf.setdefault(top, (c.physical_type, str(c.logical_type)))
def js(v):
    if isinstance(v, bytes): return v.hex()
    if isinstance(v, list): return [js(x) for x in v]
    if isinstance(v, tuple): return [js(x) for x in v]
    if isinstance(v, dict): return {{k: js(x) for k, x in v.items()}}
    if isinstance(v, (bool, int, float)) or v is None: return v
    return str(v)
# pyarrow names a map's value field after the column when reading it back; Athena matches by position
ty = lambda n: re.sub(r" \('[^']*'\)", "", str(t.schema.field(n).type))
print(json.dumps({{n: [ty(n), leaf[n][0], leaf[n][1], json.dumps(js(t.column(n)[0].as_py()), ensure_ascii=False)] for n in t.column_names}}))
"#, lake.display());
    let got: Value = serde_json::from_slice(&run_ok(Command::new(py()).arg("-c").arg(script)).stdout).unwrap();
    let mut wrong = Vec::new();
    for (i, (ty, _, arrow, physical, logical, value)) in TYPES.iter().enumerate() {
        let g = &got[col_name(i)];
        let want = serde_json::json!([arrow, physical, logical, value]);
        if g != &want {
            wrong.push(format!("{ty}: got {g}, want {want}"));
        }
    }
    assert!(wrong.is_empty(), "type mapping differs:\n{}", wrong.join("\n"));

    // the same schema as a Glue table, created by the daemon (stdin source, runs to end of input)
    let moto = Moto::start();
    let cfg = dir.path().join("l.toml");
    std::fs::write(&cfg, format!(
        "[source]\nkind = \"stdin\"\n[table]\nschema = \"types.toml\"\n[sink]\nurl = \"lake2\"\nerrors = \"errors2\"\n[catalog]\nkind = \"glue\"\ndatabase = \"typedb\"\nendpoint = \"{}\"\n",
        moto.endpoint)).unwrap();
    let mut child = bin().envs([("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_REGION", "us-east-1")])
        .args(["run", "--config"]).arg(&cfg).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(record().as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cols: Value = serde_json::from_str(&moto.boto(
        "t = c('glue').get_table(DatabaseName='typedb', Name='types')['Table']\nps = c('glue').get_partitions(DatabaseName='typedb', TableName='types')['Partitions']\nprint(json.dumps([[x['Name'], x['Type']] for x in t['StorageDescriptor']['Columns']] + [len(ps)]))")).unwrap();
    let mut want: Vec<Value> = TYPES.iter().enumerate().map(|(i, (ty, ..))| serde_json::json!([col_name(i), ty])).collect();
    want.push(serde_json::json!(1));
    assert_eq!(cols, Value::Array(want), "Glue column types as Athena DDL spells them, and the one partition registered");
}

/// Every type of the table through `convert --format iceberg` (SQL
/// catalog), read back by pyiceberg: the Iceberg type each becomes and the
/// value (the same values as the Hive-style file's; small ints widen to
/// Iceberg's `int`, timestamps become microsecond `timestamptz`).
#[test]
fn every_type_reaches_an_iceberg_table_as_pyiceberg_reads_it() {
    const ICEBERG: &[&str] = &[
        "boolean", "int", "int", "int", "long", "float", "double", "decimal(9, 2)", "decimal(18, 4)", "decimal(38, 10)", "string", "string", "date",
        "timestamptz", "binary", "list<int>", "map<string, long>", "struct<22: a: optional int, 23: b: optional string>",
    ];
    assert_eq!(ICEBERG.len(), TYPES.len());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ts = TYPES.iter().position(|t| t.0 == "timestamp").unwrap();
    let schema = d.join("types.toml");
    std::fs::write(&schema, schema_text().replace("column = \"arrival\"", &format!("column = \"{}\"", col_name(ts)))).unwrap();
    std::fs::write(d.join("in.ndjson"), record()).unwrap();
    let out = run_ok(bin().args(["convert", "--format", "iceberg", "--catalog", "sql", "--database", "lake", "--schema"]).arg(&schema)
        .arg("--catalog-uri").arg(d.join("c.db")).arg("--warehouse").arg(d.join("wh")).arg(d.join("in.ndjson")));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 rows written, 0 errors"), "{}", String::from_utf8_lossy(&out.stderr));
    let script = format!(r#"
import json
from pyiceberg.catalog.sql import SqlCatalog
t = SqlCatalog("default", uri="sqlite:///{}", warehouse="file://{}").load_table("lake.types")
row = t.scan().to_arrow().to_pylist()[0]
def js(v):
    if isinstance(v, bytes): return v.hex()
    if isinstance(v, (list, tuple)): return [js(x) for x in v]
    if isinstance(v, dict): return {{k: js(x) for k, x in v.items()}}
    if isinstance(v, (bool, int, float)) or v is None: return v
    return str(v)
print(json.dumps({{f.name: [str(f.field_type), json.dumps(js(row[f.name]), ensure_ascii=False)] for f in t.schema().fields}}))
"#, d.join("c.db").display(), d.join("wh").display());
    let got: Value = serde_json::from_slice(&run_ok(Command::new(py()).arg("-c").arg(script)).stdout).unwrap();
    let mut wrong = Vec::new();
    for (i, ((ty, _, _, _, _, value), iceberg)) in TYPES.iter().zip(ICEBERG).enumerate() {
        let want = serde_json::json!([iceberg, value]);
        if got[col_name(i)] != want {
            wrong.push(format!("{ty}: got {}, want {want}", got[col_name(i)]));
        }
    }
    assert!(wrong.is_empty(), "Iceberg type mapping differs:\n{}", wrong.join("\n"));
}
