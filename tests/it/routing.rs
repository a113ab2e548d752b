//! One stream routed to two tables (`[routing]`, `[[tables]]`): through the
//! spool with kill -9, and through Kinesis on moto with kill -9 and Glue.
//! Each table's lake (pyarrow, DuckDB) holds exactly its routed good
//! records once, its error prefix exactly its refused ones, the shared
//! error prefix the records whose route cannot be read, filtered records
//! appear only in the raw backup.

use super::*;

/// The clickstream plus hand-made bad records: malformed (the route cannot
/// be read), a purchase failing a rule of the purchases table, a click
/// failing the events table's types.
fn input(path: &Path, records: &str, seed: &str) -> Vec<String> {
    let (mut ids, _) = gen(path, &["--records", records, "--seed", seed]);
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    for i in 0..30 {
        let line = match i % 3 {
            0 => format!("{{\"event_id\":\"bad-m-{i:08}-0000beef\" \"event_type\":\"click\"}}"),
            1 => format!("{{\"event_id\":\"bad-p-{i:08}-0000beef\",\"event_type\":\"purchase\",\"user_id\":null,\"timestamp\":\"2026-11-21T01:00:00Z\"}}"),
            _ => format!("{{\"event_id\":\"bad-c-{i:08}-0000beef\",\"event_type\":\"click\",\"user_id\":\"abc\"}}"),
        };
        writeln!(f, "{line}").unwrap();
        ids.push(extract_id(line.as_bytes()).unwrap());
    }
    ids
}

/// Where each record of `path` belongs: (purchases rows, events rows,
/// purchases errors, events errors, shared errors, bots filtered).
struct Expect {
    purchases: Vec<String>,
    events: Vec<String>,
    purchase_errors: Vec<String>,
    event_errors: Vec<String>,
    unrouted: Vec<String>,
    bots: usize,
}

fn expect(path: &Path) -> Expect {
    let mut e = Expect { purchases: vec![], events: vec![], purchase_errors: vec![], event_errors: vec![], unrouted: vec![], bots: 0 };
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let Ok(r) = serde_json::from_str::<Value>(line) else {
            e.unrouted.push(extract_id(line.as_bytes()).unwrap());
            continue;
        };
        let id = r["event_id"].as_str().unwrap().to_string();
        match (r["event_type"].as_str().unwrap(), id.starts_with("bad-")) {
            ("purchase", true) => e.purchase_errors.push(id),
            ("purchase", false) if r["is_bot"] == true => e.bots += 1,
            ("purchase", false) => e.purchases.push(id),
            (_, true) => e.event_errors.push(id),
            (_, false) => e.events.push(id),
        }
    }
    for v in [&mut e.purchases, &mut e.events, &mut e.purchase_errors, &mut e.event_errors, &mut e.unrouted] {
        v.sort();
    }
    e
}

fn routed_config(dir: &Path, source: &str, extra: &str) -> PathBuf {
    let cfg = dir.join("routed.toml");
    std::fs::write(&cfg, format!(r#"
{source}

[sink]
raw_backup = "raw"
errors = "errors/unrouted"

[routing]
column = "event_type"

[[tables]]
schema = "{purchases}"
url = "lake/purchases"
errors = "errors/purchases"
values = ["purchase", "refund"]

[[tables]]
schema = "{events}"
url = "lake/events"
errors = "errors/events"
default = true

[buffer]
max_records = 150
max_age = "1s"
{extra}
"#, purchases = root().join("schemas/purchases.toml").display(), events = root().join("schemas/events.toml").display())).unwrap();
    cfg
}

/// Error ids of one error prefix, each once, with the code wanted.
fn error_ids(facts: &Value, code: &str) -> Vec<String> {
    let mut ids: Vec<String> = facts["errors"].as_array().unwrap().iter().map(|e| {
        assert_eq!(e["errorCode"], code, "{e}");
        e["id"].as_str().unwrap().to_string()
    }).collect();
    ids.sort();
    ids
}

/// Checks every prefix of `dir` against `want` and the raw backup against `all`.
fn assert_routed(dir: &Path, want: &Expect, all: &[String]) {
    let p = |s: &str| dir.join(s).display().to_string();
    let purchases = check(&["--lake", &p("lake/purchases"), "--errors", &p("errors/purchases"), "--raw", &p("raw")]);
    assert_eq!(strs(&purchases["ids"]), want.purchases, "the purchases table holds exactly the routed good purchases once");
    assert_eq!(purchases["duckdb_rows"].as_u64().unwrap() as usize, want.purchases.len());
    assert_eq!(error_ids(&purchases, "lakehose.ValidationFailed"), want.purchase_errors);
    let events = check(&["--lake", &p("lake/events"), "--errors", &p("errors/events")]);
    assert_eq!(strs(&events["ids"]), want.events, "the events table holds every other good record once");
    assert_eq!(error_ids(&events, "DataFormatConversion.MalformedData"), want.event_errors);
    let unrouted = check(&["--lake", &p("nothing"), "--errors", &p("errors/unrouted")]);
    assert_eq!(error_ids(&unrouted, "DataFormatConversion.ParseError"), want.unrouted);
    let mut all = all.to_vec();
    all.sort();
    assert_eq!(strs(&purchases["raw_ids"]), all, "the raw backup holds every record once, filtered ones too");
}

#[test]
fn routed_tables_hold_their_records_once_through_spool_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let cfg = routed_config(dir.path(), "[source]\nkind = \"spool\"\ndir = \"spool\"\npoll_interval = \"50ms\"", "");
    let (mut all, mut lines) = (Vec::new(), String::new());
    let mut rng: u64 = 0x407e5;
    let mut next = || {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        rng >> 33
    };
    for seg in 0..4 {
        let tmp = dir.path().join(format!("seg-{seg}.tmp"));
        all.extend(input(&tmp, "1000", &seg.to_string()));
        lines.push_str(&std::fs::read_to_string(&tmp).unwrap());
        std::fs::rename(&tmp, spool.join(format!("seg-{seg}.ndjson"))).unwrap();
        let d = Daemon::start(&cfg);
        std::thread::sleep(Duration::from_millis(200 + next() % 900));
        d.kill9();
    }
    let whole = dir.path().join("all.ndjson");
    std::fs::write(&whole, lines).unwrap();
    let want = expect(&whole);
    assert!(want.bots > 0 && want.purchases.len() > 200 && want.unrouted.len() == 40);
    let d = Daemon::start(&cfg);
    wait_for(&dir.path().join("lake/events"), &dir.path().join("errors/events"), want.events.len(), want.event_errors.len(), 120);
    wait_for(&dir.path().join("lake/purchases"), &dir.path().join("errors/purchases"), want.purchases.len(), want.purchase_errors.len(), 60);
    let (ok, _, stderr) = d.term();
    assert!(ok, "{stderr}");
    assert_routed(dir.path(), &want, &all);
}

const AWS_ENV: [(&str, &str); 3] = [("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_REGION", "us-east-1")];

/// Partition values of a table in Glue on moto, sorted.
fn glue_partitions(moto: &Moto, table: &str) -> Vec<Vec<String>> {
    serde_json::from_str(&moto.boto(&format!(r#"
ps = [p['Values'] for page in c('glue').get_paginator('get_partitions').paginate(DatabaseName='analytics', TableName='{table}') for p in page['Partitions']]
print(json.dumps(sorted(ps)))"#))).unwrap()
}

/// Partition values of a local lake's Parquet files (from `k=v/` directories), sorted, once each.
fn lake_partitions(lake: &Path) -> Vec<Vec<String>> {
    let mut parts: Vec<Vec<String>> = walk(lake)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .map(|p| p.strip_prefix(lake).unwrap().parent().unwrap().components().map(|c| c.as_os_str().to_string_lossy().split_once('=').unwrap().1.to_string()).collect())
        .collect();
    parts.sort();
    parts.dedup();
    parts
}

/// Kinesis on moto, a producer writing while the daemon is killed -9 and
/// restarted, Glue on moto: both tables hold exactly their records once,
/// and Glue has both tables, each with the partitions its lake has.
#[test]
fn routed_tables_through_kinesis_kill_9_with_glue_on_moto() {
    let moto = Moto::start();
    moto.boto("c('kinesis').create_stream(StreamName='routed', ShardCount=2)");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.ndjson");
    let all = input(&file, "2500", "21");
    let want = expect(&file);
    let source = format!("[source]\nkind = \"kinesis\"\nstream = \"routed\"\nendpoint = \"{ep}\"\npoll_interval = \"200ms\"\nshard_sync_interval = \"1s\"\n[lease]\ntable = \"leases-routed\"\nendpoint = \"{ep}\"\nfailover = \"2s\"", ep = moto.endpoint);
    let cfg = routed_config(dir.path(), &source, &format!("[catalog]\nkind = \"glue\"\ndatabase = \"analytics\"\nendpoint = \"{}\"\n", moto.endpoint));
    let start = || Daemon::new(bin().envs(AWS_ENV).args(["run", "--config"]).arg(&cfg).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap());
    let mut producer = Command::new(py()).arg(root().join("tests/py/kinesis_put.py")).arg(&file)
        .args(["--stream", "routed", "--endpoint", &moto.endpoint, "--batch", "50", "--pause", "0.1"]).stdout(Stdio::null()).spawn().unwrap();
    let mut d = start();
    for wait in [900, 1400, 700] {
        std::thread::sleep(Duration::from_millis(wait));
        d.kill9();
        d = start();
    }
    assert!(producer.wait().unwrap().success(), "producer failed");
    wait_for(&dir.path().join("lake/events"), &dir.path().join("errors/events"), want.events.len(), want.event_errors.len(), 120);
    wait_for(&dir.path().join("lake/purchases"), &dir.path().join("errors/purchases"), want.purchases.len(), want.purchase_errors.len(), 60);
    let (ok, secs, err) = d.term();
    assert!(ok && secs < 15.0, "SIGTERM: {ok} after {secs}s: {err}");
    assert_routed(dir.path(), &want, &all);
    for table in ["purchases", "events"] {
        let lake = lake_partitions(&dir.path().join("lake").join(table));
        assert!(!lake.is_empty());
        assert_eq!(glue_partitions(&moto, table), lake, "Glue table {table} has the partitions its lake has");
    }
}

/// Routes edited in the config while the daemon runs apply from the next
/// record (buffers written first); an edit that does not load, or that
/// changes the tables, is refused (metric, log) and routing goes on as before.
#[test]
fn live_route_edits_apply_from_the_next_record() {
    use glue::wait_metric;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let (ids, _) = gen(&input, &["--records", "2000"]);
    let special = dir.path().join("special.toml");
    std::fs::write(&special, std::fs::read_to_string(root().join("schemas/events.toml")).unwrap().replace("table = \"events\"", "table = \"special\"")).unwrap();
    let port = free_port();
    let cfg = dir.path().join("l.toml");
    let config = |values: &str, events_url: &str| format!("[source]\nkind = \"stdin\"\n[sink]\nerrors = \"unrouted\"\n[routing]\ncolumn = \"event_type\"\n[[tables]]\nschema = \"{}\"\nurl = \"special\"\nerrors = \"special-errors\"\nvalues = {values}\n[[tables]]\nschema = \"{}\"\nurl = \"{events_url}\"\nerrors = \"events-errors\"\ndefault = true\n[buffer]\nmax_age = \"1s\"\n[catalog]\nschema_poll = \"200ms\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
        special.display(), root().join("schemas/events.toml").display());
    std::fs::write(&cfg, config("[\"purchase\"]", "events")).unwrap();
    let mut child = bin().args(["run", "--config"]).arg(&cfg).current_dir(dir.path()).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let data = std::fs::read(&input).unwrap();
    let half = data.iter().enumerate().filter(|(_, &b)| b == b'\n').nth(999).unwrap().0 + 1;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&data[..half]).unwrap();
    stdin.flush().unwrap();
    wait_for(&dir.path().join("events"), &dir.path().join("events-errors"), 1, 0, 30);
    // searches join the special table
    std::fs::write(&cfg, config("[\"purchase\", \"search\"]", "events")).unwrap();
    wait_metric(port, "lakehose_route_reloads_total{result=\"applied\"}", 1.0, 20);
    // refused: an empty list, then a table moved elsewhere
    std::fs::write(&cfg, config("[]", "events")).unwrap();
    wait_metric(port, "lakehose_route_reloads_total{result=\"rejected\"}", 1.0, 20);
    std::fs::write(&cfg, config("[\"purchase\"]", "elsewhere")).unwrap();
    wait_metric(port, "lakehose_route_reloads_total{result=\"rejected\"}", 2.0, 20);
    stdin.write_all(&data[half..]).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("tables need a restart"), "{log}");
    let lines: Vec<Value> = std::str::from_utf8(&data).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let (mut want_special, mut want_events) = (Vec::new(), Vec::new());
    for (i, r) in lines.iter().enumerate() {
        let t = r["event_type"].as_str().unwrap();
        let special = t == "purchase" || (i >= 1000 && t == "search");
        if special { &mut want_special } else { &mut want_events }.push(ids[i].clone());
    }
    want_special.sort();
    want_events.sort();
    let p = |s: &str| dir.path().join(s).display().to_string();
    assert_eq!(strs(&check(&["--lake", &p("special")])["ids"]), want_special, "purchases throughout, searches after the edit");
    assert_eq!(strs(&check(&["--lake", &p("events")])["ids"]), want_events, "the rest, and searches before the edit");
    assert!(!dir.path().join("elsewhere").exists(), "the refused edit moved nothing");
}
