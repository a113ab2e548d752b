//! Glue catalog end to end against moto_server (Glue + S3): the table from
//! the schema file, partitions registered right after each flush, schema
//! edits picked up while running (compatible applied, incompatible refused
//! without stopping), and the metrics endpoint moving as records flow.

use super::*;

const AWS_ENV: [(&str, &str); 3] = [("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_REGION", "us-east-1")];

/// GET on the metrics port: (status, body).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    try_get(port, path).expect("metrics port answers")
}

fn try_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out[9..12].parse().unwrap();
    Ok((status, out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

/// A sample's value from Prometheus text, e.g. `lakehose_flushes_total{trigger="age"}`.
pub fn metric(body: &str, name: &str) -> f64 {
    body.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')).map(|v| v.parse().unwrap())).unwrap_or_else(|| panic!("{name} not in:\n{body}"))
}

pub fn wait_metric(port: u16, name: &str, want: f64, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let body = try_get(port, "/metrics").map(|r| r.1).unwrap_or_default();
        if body.contains(name) && metric(&body, name) >= want {
            return body;
        }
        assert!(Instant::now() < deadline, "{name} did not reach {want}:\n{body}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until every buffer is flushed (records converted are delivered).
fn wait_drained(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&http_get(port, "/metrics").1, "lakehose_buffer_bytes") > 0.0 {
        assert!(Instant::now() < deadline, "buffers never drained");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn glue_partitions_follow_flushes_and_schema_edits_apply_live() {
    let moto = Moto::start();
    moto.boto("c('s3').create_bucket(Bucket='glue-lake')");
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let schema = dir.path().join("events.toml");
    let original = std::fs::read_to_string(root().join("schemas/events.toml")).unwrap();
    std::fs::write(&schema, &original).unwrap();
    let port = free_port();
    let cfg = dir.path().join("l.toml");
    std::fs::write(&cfg, format!(r#"
[source]
kind = "spool"
dir = "spool"
poll_interval = "50ms"
[table]
schema = "events.toml"
[sink]
url = "s3://glue-lake/events/"
errors = "s3://glue-lake/errors/"
endpoint = "{ep}"
[buffer]
max_records = 400
max_age = "1s"
[catalog]
kind = "glue"
database = "analytics"
endpoint = "{ep}"
schema_poll = "200ms"
[metrics]
listen = "127.0.0.1:{port}"
"#, ep = moto.endpoint)).unwrap();
    let (mut ids, mut bad) = gen(&dir.path().join("s1.tmp"), &["--records", "2000", "--bad-every", "100", "--seed", "5", "--id-prefix", "ga"]);
    // partition values Hive escapes: the S3 key, the Glue location and the value must agree
    let escaped = ["a/b", "é x=y", "100%"];
    let mut seg = std::fs::read(dir.path().join("s1.tmp")).unwrap();
    for (i, v) in escaped.iter().enumerate() {
        seg.extend_from_slice(format!("{{\"event_id\":\"esc-{i}\",\"timestamp\":\"2026-11-21T10:00:00Z\",\"event_type\":{v:?}}}\n").as_bytes());
        ids.push(format!("esc-{i}"));
    }
    std::fs::write(spool.join("s1.ndjson"), seg).unwrap();
    // Upload → partition latency, timed by a watcher that polls S3 and Glue
    // from outside (S3 LastModified has whole seconds only: too coarse).
    // Its error is one poll round (~0.1 s) either way.
    let stop = dir.path().join("watch.stop");
    let mut watcher = Daemon::new(moto.boto_command(r#"
import os, sys, time
s3, g = c('s3'), c('glue')
obj, part = {}, {}
while not os.path.exists(sys.argv[1]):
    for page in s3.get_paginator('list_objects_v2').paginate(Bucket='glue-lake', Prefix='events/'):
        for o in page.get('Contents', []):
            if o['Key'].endswith('.parquet'):
                obj.setdefault('s3://glue-lake/' + o['Key'].rsplit('/', 1)[0] + '/', time.monotonic())
    try:
        for page in g.get_paginator('get_partitions').paginate(DatabaseName='analytics', TableName='events'):
            for p in page['Partitions']:
                part.setdefault(p['StorageDescriptor']['Location'], time.monotonic())
    except g.exceptions.EntityNotFoundException:
        pass
    time.sleep(0.05)
print(json.dumps({k: round(part[k] - obj[k], 3) for k in obj if k in part}))"#).arg(&stop).stdout(Stdio::piped()).spawn().unwrap());
    let d = Daemon::new(bin().envs(AWS_ENV).args(["run", "--config"]).arg(&cfg).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap());
    let good = |ids: &Vec<String>, bad: &BTreeMap<String, String>| (ids.len() - bad.len()) as f64;
    let body = wait_metric(port, "lakehose_records_converted_total", good(&ids, &bad), 60);
    assert_eq!(metric(&body, "lakehose_incoming_records_total"), 2000.0 + escaped.len() as f64);
    let failed: f64 = ["ParseError", "MalformedData", "RecordTooLarge"].iter().map(|c| metric(&body, &format!("lakehose_records_failed_total{{code=\"DataFormatConversion.{c}\"}}"))).sum();
    assert_eq!(failed, bad.len() as f64, "failed records by code add up");
    assert_eq!(http_get(port, "/healthz").0, 200);
    assert_eq!(http_get(port, "/readyz"), (200, "ready\n".to_string()));

    // the table, and a partition for every prefix holding Parquet, registered within a second of its upload
    wait_drained(port);
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(&stop, "").unwrap();
    let mut out = String::new();
    watcher.child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(watcher.child.wait().unwrap().success(), "the S3/Glue watcher failed");
    let latency: BTreeMap<String, f64> = serde_json::from_str(&out).unwrap();
    let report: Value = serde_json::from_str(&moto.boto(r#"
g, s3 = c('glue'), c('s3')
t = g.get_table(DatabaseName='analytics', Name='events')['Table']
sd = t['StorageDescriptor']
parts = [p for page in g.get_paginator('get_partitions').paginate(DatabaseName='analytics', TableName='events') for p in page['Partitions']]
objs = [o for page in s3.get_paginator('list_objects_v2').paginate(Bucket='glue-lake', Prefix='events/') for o in page.get('Contents', [])]
prefixes = {'s3://glue-lake/' + o['Key'].rsplit('/', 1)[0] + '/' for o in objs if o['Key'].endswith('.parquet')}
print(json.dumps({
  'type': t['TableType'], 'params': t['Parameters'], 'location': sd['Location'],
  'input': sd['InputFormat'], 'output': sd['OutputFormat'], 'serde': sd['SerdeInfo']['SerializationLibrary'],
  'columns': [[c['Name'], c['Type'], c.get('Comment', '')] for c in sd['Columns']],
  'keys': [[k['Name'], k['Type']] for k in t['PartitionKeys']],
  'part_locations': sorted(p['StorageDescriptor']['Location'] for p in parts),
  'part_values': sorted(p['Values'] for p in parts),
  'part_serde': sorted({p['StorageDescriptor']['SerdeInfo']['SerializationLibrary'] for p in parts}),
  'prefixes': sorted(prefixes),
}))"#)).unwrap();
    assert_eq!(report["type"], "EXTERNAL_TABLE");
    assert_eq!(report["params"]["classification"], "parquet");
    assert_eq!(report["location"], "s3://glue-lake/events/");
    assert_eq!(report["input"], "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat");
    assert_eq!(report["output"], "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat");
    assert_eq!(report["serde"], "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe");
    assert_eq!(report["keys"], serde_json::json!([["dt", "string"], ["hr", "string"], ["event_type", "string"]]));
    let cols = report["columns"].as_array().unwrap();
    assert_eq!(cols[0], serde_json::json!(["event_id", "string", "Unique per event; producers retry with the same id"]));
    assert_eq!(cols[1], serde_json::json!(["ts", "timestamp", "Event time (UTC)"]));
    assert!(cols.iter().any(|c| c[0] == "revenue" && c[1].as_str().unwrap().starts_with("decimal(")), "{cols:?}");
    assert!(cols.iter().any(|c| c[0] == "device" && c[1].as_str().unwrap().starts_with("struct<")), "{cols:?}");
    assert_eq!(report["part_locations"], report["prefixes"], "every prefix with Parquet has a partition at that location, and no partition points elsewhere");
    for (v, key) in [("a/b", "event_type=a%2Fb/"), ("é x=y", "event_type=é x%3Dy/"), ("100%", "event_type=100%25/")] {
        let want = serde_json::json!(["2026-11-21", "10", v]);
        assert!(report["part_values"].as_array().unwrap().contains(&want), "a partition with value {v:?}: {}", report["part_values"]);
        let at = format!("s3://glue-lake/events/dt=2026-11-21/hr=10/{key}");
        assert!(report["prefixes"].as_array().unwrap().iter().any(|p| p == &at), "Parquet under {at} (escaped once, as Hive does): {}", report["prefixes"]);
    }
    assert!(report["part_values"].as_array().unwrap().iter().all(|v| v.as_array().unwrap().len() == 3));
    assert_eq!(report["part_serde"], serde_json::json!(["org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"]));
    let prefixes: Vec<&str> = report["prefixes"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(latency.keys().map(String::as_str).collect::<Vec<_>>(), prefixes, "the watcher timed every partition");
    let mut lat: Vec<f64> = latency.values().copied().collect();
    lat.sort_by(f64::total_cmp);
    let median = lat[lat.len() / 2];
    eprintln!("upload → Glue partition: median {median:.3}s, max {:.3}s over {} partitions: {lat:?}", lat[lat.len() - 1], lat.len());
    assert!(median < 1.0, "median upload→partition latency {median}s");

    // a compatible edit (new nullable column) while running
    let evolved = original.clone() + "\n[[columns]]\nname = \"campaign\"\ntype = \"string\"\ncomment = \"added while running\"\n";
    std::fs::write(&schema, &evolved).unwrap();
    wait_metric(port, "lakehose_schema_reloads_total{result=\"applied\"}", 1.0, 20);
    let tmp = dir.path().join("s2.tmp");
    let (ids2, bad2) = gen(&tmp, &["--records", "1000", "--bad-every", "100", "--seed", "6", "--id-prefix", "gb"]);
    let mut with_campaign = Vec::new();
    for l in std::fs::read(&tmp).unwrap().split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        if l.starts_with(b"{\"event_id\"") {
            with_campaign.extend_from_slice(b"{\"campaign\":\"fall-sale\",");
            with_campaign.extend_from_slice(&l[1..]);
        } else {
            with_campaign.extend_from_slice(l);
        }
        with_campaign.push(b'\n');
    }
    std::fs::write(spool.join("s2.ndjson"), with_campaign).unwrap();
    ids.extend(ids2);
    bad.extend(bad2);
    wait_metric(port, "lakehose_records_converted_total", good(&ids, &bad), 60);
    wait_drained(port); // converted counts at decode; the files come with the flush
    let cols: Value = serde_json::from_str(&moto.boto("print(json.dumps([c['Name'] for c in c('glue').get_table(DatabaseName='analytics', Name='events')['Table']['StorageDescriptor']['Columns']]))")).unwrap();
    assert_eq!(cols.as_array().unwrap().last().unwrap(), "campaign", "the Glue table gained the column");
    let campaign: Value = serde_json::from_str(&moto.boto(&format!(r#"
import pyarrow.parquet as pq, pyarrow.fs as pafs
fs = pafs.S3FileSystem(endpoint_override='{}', access_key='test', secret_key='test', region='us-east-1', scheme='http')
n_new = n_set = 0
for f in fs.get_file_info(pafs.FileSelector('glue-lake/events', recursive=True)):
    if f.path.endswith('.parquet'):
        t = pq.read_table(f.path, filesystem=fs)
        if 'campaign' in t.column_names:
            n_new += t.num_rows
            n_set += sum(1 for v in t.column('campaign').to_pylist() if v == 'fall-sale')
print(json.dumps([n_new, n_set]))"#, moto.endpoint))).unwrap();
    let good2 = 1000 - 10;
    assert_eq!(campaign, serde_json::json!([good2, good2]), "files written after the edit carry the new column with its values");

    // an incompatible edit is refused; ingestion goes on under the last good schema
    std::fs::write(&schema, evolved.replace("name = \"user_id\"\ntype = \"bigint\"", "name = \"user_id\"\ntype = \"int\"")).unwrap();
    wait_metric(port, "lakehose_schema_reloads_total{result=\"rejected\"}", 1.0, 20);
    let (ids3, bad3) = gen(&dir.path().join("s3.tmp"), &["--records", "500", "--bad-every", "100", "--seed", "7", "--id-prefix", "gc"]);
    std::fs::rename(dir.path().join("s3.tmp"), spool.join("s3.ndjson")).unwrap();
    ids.extend(ids3);
    bad.extend(bad3);
    let body = wait_metric(port, "lakehose_records_converted_total", good(&ids, &bad), 60);
    assert_eq!(metric(&body, "lakehose_schema_reloads_total{result=\"applied\"}"), 1.0);
    let user_id: String = moto.boto("print([c['Type'] for c in c('glue').get_table(DatabaseName='analytics', Name='events')['Table']['StorageDescriptor']['Columns'] if c['Name'] == 'user_id'][0])");
    assert_eq!(user_id, "bigint", "the refused edit did not reach Glue");
    let (ok, _, err) = d.term();
    assert!(ok, "{err}");
    assert!(err.contains("schema edit refused") && err.contains("user_id"), "the refusal is logged with the column: {err}");
    let facts = check(&["--lake", "s3://glue-lake/events/", "--errors", "s3://glue-lake/errors/", "--endpoint", &moto.endpoint]);
    assert_exactly_once(&facts, &ids, &bad, false);

    // schema check against the live Glue table
    let o = bin().envs(AWS_ENV).args(["schema", "check"]).arg(&schema).args(["--against-glue", "--database", "analytics", "--endpoint", &moto.endpoint]).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("BAD user_id: type bigint → int") && out.contains("incompatible with Glue table analytics.events"), "{out}");
    std::fs::write(&schema, evolved.clone() + "\n[[columns]]\nname = \"referrer\"\ntype = \"string\"\n").unwrap();
    let o = bin().envs(AWS_ENV).args(["schema", "check"]).arg(&schema).args(["--against-glue", "--database", "analytics", "--endpoint", &moto.endpoint]).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && out.contains("ok  referrer: added (string)"), "{out}");
}
