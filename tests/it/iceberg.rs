//! Iceberg tables through the SQL catalog (a SQLite file), read back by
//! pyiceberg: rows, field ids, partition spec and pruning, schema
//! evolution, kill -9, and a table checkpoint ahead of the source's.

use super::*;

/// A spool config writing the Iceberg table `lake.events` of `schema`
/// through the SQL catalog in `dir/iceberg/`.
fn iceberg_config(dir: &Path, schema: &Path) -> PathBuf {
    let cfg = dir.join("lakehose.toml");
    std::fs::write(&cfg, format!(r#"
[source]
kind = "spool"
dir = "spool"
state_dir = "state"
poll_interval = "50ms"

[table]
schema = "{}"
format = "iceberg"

[catalog]
kind = "sql"
uri = "iceberg/catalog.db"
warehouse = "iceberg/warehouse"
database = "lake"
schema_poll = "200ms"

[sink]
raw_backup = "raw"
errors = "errors"

[buffer]
max_records = 400
max_age = "1s"
"#, schema.display())).unwrap();
    cfg
}

/// pyiceberg's facts about `lake.events` in `dir/iceberg/` (see tests/py/check_iceberg.py).
fn iceberg_facts(dir: &Path, extra: &[&str]) -> Value {
    let out = run_ok(Command::new(py()).arg(root().join("tests/py/check_iceberg.py"))
        .arg("--catalog").arg(dir.join("iceberg/catalog.db"))
        .arg("--warehouse").arg(format!("file://{}", dir.join("iceberg/warehouse").display()))
        .args(["--table", "lake.events"]).args(extra));
    serde_json::from_slice(&out.stdout).expect("checker prints JSON")
}

/// Waits until pyiceberg sees `n` rows (or panics after `secs`).
fn wait_rows(dir: &Path, n: usize, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if dir.join("iceberg/catalog.db").exists() {
            let f = iceberg_facts(dir, &[]);
            if f["ids"].as_array().unwrap().len() >= n {
                return f;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {n} rows: have {}", f["ids"].as_array().unwrap().len());
        }
        assert!(Instant::now() < deadline, "timed out waiting for the table");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Generated records put into the spool as `name` (the generator's list
/// of bad records stays out of the spool).
fn gen_into(dir: &Path, name: &str, args: &[&str]) -> (Vec<String>, BTreeMap<String, String>) {
    let tmp = dir.join(format!("{name}.tmp"));
    let out = gen(&tmp, args);
    std::fs::rename(&tmp, dir.join("spool").join(name)).unwrap();
    out
}

fn good_sorted(ids: &[String], bad: &BTreeMap<String, String>) -> Vec<String> {
    let mut want: Vec<String> = ids.iter().filter(|i| !bad.contains_key(*i)).cloned().collect();
    want.sort();
    want
}

/// Error lines (and with `raw` the raw backup) of an Iceberg run hold
/// every bad (every) record once; rows are checked through pyiceberg.
fn assert_errors_and_raw_once(dir: &Path, ids: &[String], bad: &BTreeMap<String, String>, raw: bool) {
    let empty = dir.join("no-lake");
    std::fs::create_dir_all(&empty).unwrap();
    let (errors, raw_dir) = (dir.join("errors"), dir.join("raw"));
    let mut args = vec!["--lake", empty.to_str().unwrap(), "--errors", errors.to_str().unwrap()];
    if raw {
        args.extend(["--raw", raw_dir.to_str().unwrap()]);
    }
    let mut facts = check(&args);
    // the rows are the table's: let the shared assertion see them
    facts["ids"] = Value::from(good_sorted(ids, bad));
    facts.as_object_mut().unwrap().remove("duckdb_rows");
    assert_exactly_once(&facts, ids, bad, raw);
}

/// The table pyiceberg reads holds every good record once with the values
/// the Hive-style lake holds (every column type of the schema, nested
/// ones included), carries Iceberg field ids, microsecond timestamps and
/// the `hour(ts)`/`identity(event_type)` spec, and a `ts` predicate plans
/// fewer files. An added column gets the next field id; rows written
/// before it read it as null.
#[test]
fn iceberg_table_reads_back_in_pyiceberg_as_the_hive_lake_and_evolves() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("spool")).unwrap();
    let schema = d.join("events.toml");
    std::fs::copy(root().join("schemas/events.toml"), &schema).unwrap();
    let (mut ids, bad) = gen_into(d, "seg-1.ndjson", &["--records", "3000", "--bad-every", "40", "--seed", "7"]);
    // records with no event time: Iceberg's null time partition, found by `ts IS NULL`
    let mut text = std::fs::read(d.join("spool/seg-1.ndjson")).unwrap();
    let mut no_ts = String::new();
    let good_lines = text.split(|&b| b == b'\n').filter(|l| !l.is_empty() && !bad.contains_key(&extract_id(l).unwrap()));
    for (n, line) in good_lines.take(25).enumerate() {
        let mut v: Value = serde_json::from_slice(line).unwrap();
        v.as_object_mut().unwrap().remove("timestamp"); // the source of column ts
        let id = format!("nots-{n:08}-00000000");
        v["event_id"] = Value::from(id.clone());
        no_ts.push_str(&format!("{v}\n"));
        ids.push(id);
    }
    text.extend_from_slice(no_ts.as_bytes());
    std::fs::write(d.join("spool/seg-1.ndjson"), text).unwrap();
    // the reference: the same input as Hive-style Parquet
    run_ok(bin().args(["convert", "--schema"]).arg(&schema).arg("--out").arg(d.join("hive")).arg("--errors").arg(d.join("hive-errors")).arg(d.join("spool/seg-1.ndjson")));
    let cfg = iceberg_config(d, &schema);
    let daemon = Daemon::start(&cfg);
    wait_rows(d, ids.len() - bad.len(), 120);
    let (ok, _, log) = daemon.term();
    assert!(ok, "{log}");
    let f = iceberg_facts(d, &["--hive", d.join("hive").to_str().unwrap(), "--after", "median"]);
    assert_eq!(strs(&f["ids"]), good_sorted(&ids, &bad), "every good id exactly once");
    assert_eq!(f["mismatches"], Value::Array(vec![]), "rows equal the Hive lake's");
    assert_eq!(f["hive_rows"].as_u64().unwrap() as usize, ids.len() - bad.len());
    assert_errors_and_raw_once(d, &ids, &bad, true);
    assert_eq!(f["spec"], serde_json::json!(["hour(ts)->ts_hour", "identity(event_type)->event_type"]));
    assert_eq!(f["ts_type"], "timestamp[us, tz=UTC]");
    assert_eq!(f["required"], serde_json::json!(["event_id", "event_type"]));
    let field_ids: BTreeMap<String, u64> = serde_json::from_value(f["schema"].clone()).unwrap();
    for n in ["event_id", "ts", "page.url", "properties.key", "properties.value", "tags.element", "geo.lat", "revenue"] {
        assert!(field_ids.contains_key(n), "{n} has a field id: {field_ids:?}");
    }
    let distinct: BTreeSet<u64> = field_ids.values().copied().collect();
    assert_eq!(distinct.len(), field_ids.len(), "field ids are distinct");
    let (all, after) = (f["files"].as_u64().unwrap(), f["files_after"].as_u64().unwrap());
    assert!(after < all, "a ts predicate plans fewer files: {after} of {all}");
    assert_eq!(f["rows_after"], f["want_after"], "the pruned scan still finds every matching row");
    assert_eq!(f["null_ts_rows"].as_array().unwrap().len(), 25);
    assert_eq!(f["null_ts_scan"], f["null_ts_rows"], "`ts IS NULL` finds every row with no event time");
    let snaps = f["snapshots"].as_array().unwrap();
    assert!(snaps.iter().all(|s| s["lakehose.checkpoint.seg-1.ndjson"].is_string()), "every commit carries the shard's checkpoint: {snaps:?}");

    // a column added to the schema file: a new field id, null in old rows
    let highest = *field_ids.values().max().unwrap();
    let text = std::fs::read_to_string(&schema).unwrap();
    std::fs::write(&schema, format!("{text}\n[[columns]]\nname = \"page_title\"\ntype = \"string\"\nsource = \"page.title\"\n")).unwrap();
    let (ids2, bad2) = gen_into(d, "seg-2.ndjson", &["--records", "500", "--bad-every", "40", "--seed", "8", "--id-prefix", "kb"]);
    let daemon = Daemon::start(&cfg);
    let good = ids.len() - bad.len() + ids2.len() - bad2.len();
    let f = wait_rows(d, good, 120);
    let (ok, _, log) = daemon.term();
    assert!(ok, "{log}");
    assert_eq!(f["schema"]["page_title"].as_u64(), Some(highest + 1), "the added column gets the next id");
    assert_eq!(f["schema"]["event_id"], Value::from(field_ids["event_id"]), "old ids stay");
    let with_title: BTreeSet<String> = strs(&f["columns"]["page_title"]).into_iter().collect();
    assert!(!with_title.is_empty() && with_title.iter().all(|i| i.starts_with("kb")), "only rows written after the edit have the column");
    let mut all_ids = ids.clone();
    all_ids.extend(ids2);
    let mut all_bad = bad.clone();
    all_bad.extend(bad2);
    assert_eq!(strs(&f["ids"]), good_sorted(&all_ids, &all_bad));

    // maintenance: every snapshot but the newest expired, the rows stay
    let snapshots = f["snapshots"].as_array().unwrap().len();
    assert!(snapshots > 2);
    let out = run_ok(bin().args(["table", "expire-snapshots", "--older-than", "0s", "--config"]).arg(&cfg));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("{} of {snapshots} snapshots expired", snapshots - 1)), "{}", String::from_utf8_lossy(&out.stderr));
    let g = iceberg_facts(d, &[]);
    assert_eq!(g["snapshots"].as_array().unwrap().len(), 1);
    assert_eq!(g["ids"], f["ids"], "expiring snapshots keeps the rows");
    let e = bin().args(["table", "expire-snapshots", "--older-than", "soon", "--config"]).arg(&cfg).output().unwrap();
    assert_eq!(e.status.code(), Some(2));
}

/// kill -9 at random moments while segments arrive: the table holds every
/// good id once, errors and raw backup every record once.
#[test]
fn iceberg_spool_survives_kill_9_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("spool")).unwrap();
    let cfg = iceberg_config(d, &root().join("schemas/events.toml"));
    let (mut all_ids, mut all_bad) = (Vec::new(), BTreeMap::new());
    let mut rng: u64 = 0x1ce;
    let mut next = || {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        rng >> 33
    };
    for seg in 0..6 {
        let tmp = d.join(format!("seg-{seg}.tmp"));
        let prefix = format!("k{}", (b'a' + seg as u8) as char);
        let (ids, bad) = gen(&tmp, &["--records", "1200", "--bad-every", "50", "--seed", &seg.to_string(), "--id-prefix", &prefix]);
        let data = std::fs::read(&tmp).unwrap();
        all_ids.extend(ids);
        all_bad.extend(bad);
        let target = d.join(format!("spool/seg-{seg}.ndjson"));
        let cut = data.iter().enumerate().filter(|(_, &b)| b == b'\n').nth(500).unwrap().0 + 1;
        std::fs::write(&target, &data[..cut]).unwrap();
        let daemon = Daemon::start(&cfg);
        std::thread::sleep(Duration::from_millis(300 + next() % 1200));
        std::fs::OpenOptions::new().append(true).open(&target).unwrap().write_all(&data[cut..]).unwrap();
        std::thread::sleep(Duration::from_millis(next() % 1500));
        daemon.kill9();
    }
    let daemon = Daemon::start(&cfg);
    wait_rows(d, all_ids.len() - all_bad.len(), 180);
    let (ok, _, log) = daemon.term();
    assert!(ok, "{log}");
    let f = iceberg_facts(d, &[]);
    assert_eq!(strs(&f["ids"]), good_sorted(&all_ids, &all_bad), "every good id exactly once");
    assert_errors_and_raw_once(d, &all_ids, &all_bad, true);
}

/// A commit whose source checkpoint was never stored (a crash between the
/// two): the table's checkpoint wins on restart and the records the
/// source hands again are not committed twice.
#[test]
fn a_table_checkpoint_ahead_of_the_source_wins_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("spool")).unwrap();
    let cfg = iceberg_config(d, &root().join("schemas/events.toml"));
    let (mut ids, mut bad) = gen_into(d, "a.ndjson", &["--records", "800", "--bad-every", "50", "--seed", "1", "--id-prefix", "ka"]);
    let daemon = Daemon::start(&cfg);
    wait_rows(d, ids.len() - bad.len(), 60);
    assert!(daemon.term().0);
    // the source's state as it was here: the next commits' checkpoints are lost with it
    let saved = std::fs::read_dir(d.join("state")).unwrap().map(|e| e.unwrap().path()).map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect::<Vec<_>>();
    let seg = std::fs::read(d.join("spool/a.ndjson")).unwrap();
    let (ids2, bad2) = gen(&d.join("more.tmp"), &["--records", "800", "--bad-every", "50", "--seed", "2", "--id-prefix", "kb"]);
    std::fs::OpenOptions::new().append(true).open(d.join("spool/a.ndjson")).unwrap().write_all(&std::fs::read(d.join("more.tmp")).unwrap()).unwrap();
    let (ids3, bad3) = gen_into(d, "b.ndjson", &["--records", "300", "--bad-every", "50", "--seed", "3", "--id-prefix", "kc"]);
    ids.extend(ids2);
    ids.extend(ids3);
    bad.extend(bad2);
    bad.extend(bad3);
    let daemon = Daemon::start(&cfg);
    wait_rows(d, ids.len() - bad.len(), 60);
    assert!(daemon.term().0);
    for (p, bytes) in &saved {
        std::fs::write(p, bytes).unwrap();
    }
    assert!(seg.len() < std::fs::metadata(d.join("spool/a.ndjson")).unwrap().len() as usize);
    let mut daemon = Daemon::new(bin().env("LAKEHOSE_LOG", "info").args(["run", "--config"]).arg(&cfg).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap());
    std::thread::sleep(Duration::from_secs(4));
    let log = daemon.log();
    let (ok, _, _) = daemon.term();
    assert!(ok);
    let f = iceberg_facts(d, &[]);
    assert_eq!(strs(&f["ids"]), good_sorted(&ids, &bad), "no record committed twice");
    assert!(log.contains("resuming from the table's checkpoint"), "{log}");
}

/// Two processes' commits on one table through the real SQL catalog: a
/// zombie (its view of a shard older than the table's) is refused for that
/// shard, and commits that race on other shards both land, each keeping
/// the other's checkpoint (carried forward from the version it lands on).
#[test]
fn a_zombie_is_refused_and_racing_commits_keep_each_others_checkpoints() {
    use lakehose::checkpoint::ShardCheckpoint;
    use lakehose::iceberg::{IcebergCatalog, IcebergConfig, IcebergTable};
    use lakehose::ids::ShardId;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = IcebergConfig {
        catalog: IcebergCatalog::Sql { file: d.join("catalog.db"), warehouse: format!("file://{}", d.join("wh").display()), name: "default".into() },
        namespace: "lake".into(),
        table: "events".into(),
        checkpoints: true,
    };
    let schema = lakehose::schema::TableSchema::load(&root().join("schemas/events.toml")).unwrap();
    let cp = |n: u64| -> ShardCheckpoint { serde_json::from_str(&format!(r#"{{"resume":{{"after":{{"seq":"{n}","sub":0}}}},"done":{{}}}}"#)).unwrap() };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let opts = lakehose::store::StoreOptions::default();
        let (mut a, _, _) = IcebergTable::open(&cfg, &schema, &opts).await.unwrap();
        let (mut b, _, _) = IcebergTable::open(&cfg, &schema, &opts).await.unwrap();
        let (s1, s2, s3) = (ShardId::new("s1"), ShardId::new("s2"), ShardId::new("s3"));
        for t in [&mut a, &mut b] {
            for s in [&s1, &s2, &s3] {
                assert_eq!(t.stored(s).await.unwrap(), None);
            }
        }
        // a owns s1 and s2; its lease on s2 moves to b, which commits it
        assert!(a.commit(&[(s1.clone(), cp(10)), (s2.clone(), cp(20))]).await.unwrap().is_empty());
        assert_eq!(b.stored(&s2).await.unwrap(), Some(cp(20)));
        assert!(b.commit(&[(s2.clone(), cp(25)), (s3.clone(), cp(30))]).await.unwrap().is_empty());
        // a wakes with s2 where it left it: refused for s2, s1 goes on
        assert_eq!(a.commit(&[(s1.clone(), cp(11)), (s2.clone(), cp(21))]).await.unwrap(), vec![s2.clone()]);
        // commits racing on other shards: each lands on the version it was
        // built from or retries, never dropping the other's latest checkpoint
        let (ra, rb) = tokio::join!(
            async {
                for n in 12..=160 {
                    assert!(a.commit(&[(s1.clone(), cp(n))]).await.unwrap().is_empty());
                }
            },
            async {
                for n in 32..=180 {
                    assert!(b.commit(&[(s3.clone(), cp(n))]).await.unwrap().is_empty());
                }
            }
        );
        let _ = (ra, rb);
        let conflicts = lakehose::catalog::Catalog::commits(&a).1 + lakehose::catalog::Catalog::commits(&b).1;
        assert!(conflicts > 0, "the two writers raced");
        let mut fresh = IcebergTable::open(&cfg, &schema, &opts).await.unwrap().0;
        assert_eq!(fresh.stored(&s1).await.unwrap(), Some(cp(160)), "a's last commit of s1 kept");
        assert_eq!(fresh.stored(&s2).await.unwrap(), Some(cp(25)), "the zombie's s2 refused");
        assert_eq!(fresh.stored(&s3).await.unwrap(), Some(cp(180)), "b's last commit of s3 kept");
    });
}

/// `convert --format iceberg` on two workers: one table holding every good
/// record once, with the values the Hive-style convert writes; errors
/// once. Each worker commits its own files (racing commits retry).
#[test]
fn convert_writes_an_iceberg_table_on_every_core() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (mut ids, mut bad) = gen(&d.join("a.ndjson"), &["--records", "2500", "--bad-every", "40", "--seed", "11", "--id-prefix", "ka"]);
    let (ids2, bad2) = gen(&d.join("b.ndjson"), &["--records", "2500", "--bad-every", "40", "--seed", "12", "--id-prefix", "kb"]);
    ids.extend(ids2);
    bad.extend(bad2);
    let schema = root().join("schemas/events.toml");
    let inputs = [d.join("a.ndjson"), d.join("b.ndjson")];
    run_ok(bin().args(["convert", "--progress", "off", "--schema"]).arg(&schema).arg("--out").arg(d.join("hive")).args(&inputs));
    run_ok(bin().args(["convert", "--progress", "off", "--jobs", "2", "--chunk-size", "1MiB", "--format", "iceberg", "--catalog", "sql", "--database", "lake", "--schema"]).arg(&schema)
        .arg("--catalog-uri").arg(d.join("iceberg/catalog.db")).arg("--warehouse").arg(d.join("iceberg/warehouse"))
        .arg("--errors").arg(d.join("errors")).arg("--raw-backup").arg(d.join("raw")).args(&inputs));
    let f = iceberg_facts(d, &["--hive", d.join("hive").to_str().unwrap()]);
    assert_eq!(strs(&f["ids"]), good_sorted(&ids, &bad), "every good id exactly once");
    assert_eq!(f["mismatches"], Value::Array(vec![]), "rows equal the Hive lake's");
    assert_errors_and_raw_once(d, &ids, &bad, true);
    // the convert of a file is not resumed from the table: no checkpoints ride along
    assert!(f["snapshots"].as_array().unwrap().iter().all(|s| s.as_object().unwrap().keys().all(|k| !k.starts_with("lakehose."))));
    let out = bin().args(["convert", "--format", "iceberg", "--catalog", "sql", "--database", "lake", "--warehouse", "w", "--schema"]).arg(&schema).arg("a.ndjson").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a missing --catalog-uri is a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--catalog-uri"));
}

/// Kinesis on moto, two processes sharing 4 shards through leases into one
/// Iceberg table (SQL catalog), a producer writing while they are killed
/// -9 and restarted and one is SIGSTOPped past its leases (its shards move
/// and are committed by the other) and woken: every good id exactly once,
/// errors once.
#[test]
fn two_processes_on_kinesis_kill_9_and_a_zombie_land_exactly_once() {
    let moto = Moto::start();
    moto.boto("c('kinesis').create_stream(StreamName='ice', ShardCount=4)");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = d.join("in.ndjson");
    let (ids, bad) = gen(&file, &["--records", "4000", "--bad-every", "50", "--seed", "31"]);
    let cfg = iceberg_config(d, &root().join("schemas/events.toml"));
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "kind = \"spool\"\ndir = \"spool\"\nstate_dir = \"state\"\npoll_interval = \"50ms\"",
        &format!("kind = \"kinesis\"\nstream = \"ice\"\nendpoint = \"{ep}\"\npoll_interval = \"200ms\"\nshard_sync_interval = \"1s\"\n[lease]\ntable = \"leases-ice\"\nendpoint = \"{ep}\"\nfailover = \"2s\"", ep = moto.endpoint),
    );
    std::fs::write(&cfg, text).unwrap();
    let env = [("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_REGION", "us-east-1")];
    let start = |worker: &str| Daemon::new(bin().envs(env).env("LAKEHOSE_LEASE_WORKER_ID", worker).args(["run", "--config"]).arg(&cfg).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap());
    let mut producer = Command::new(py()).arg(root().join("tests/py/kinesis_put.py")).arg(&file)
        .args(["--stream", "ice", "--endpoint", &moto.endpoint, "--batch", "50", "--pause", "0.15"]).stdout(Stdio::null()).spawn().unwrap();
    let (mut a, mut b) = (start("a"), start("b"));
    for (i, wait) in [1200, 900, 1500, 800].into_iter().enumerate() {
        std::thread::sleep(Duration::from_millis(wait));
        if i % 2 == 0 {
            a.kill9();
            a = start("a");
        } else {
            b.kill9();
            b = start("b");
        }
    }
    // a zombie: stopped past its leases' failover while b takes its shards, then woken
    let stop = |sig: &str, pid: u32| run_ok(Command::new("kill").arg(sig).arg(pid.to_string()));
    stop("-STOP", a.child.id());
    std::thread::sleep(Duration::from_secs(6));
    stop("-CONT", a.child.id());
    assert!(producer.wait().unwrap().success(), "producer failed");
    wait_rows(d, ids.len() - bad.len(), 180);
    let (ok_b, _, log_b) = b.term();
    let (ok_a, _, log_a) = a.term();
    assert!(ok_a && ok_b, "{log_a}\n{log_b}");
    let f = iceberg_facts(d, &[]);
    assert_eq!(strs(&f["ids"]), good_sorted(&ids, &bad), "every good id exactly once");
    assert_errors_and_raw_once(d, &ids, &bad, false);
    let shards: BTreeSet<String> = f["snapshots"].as_array().unwrap().iter()
        .flat_map(|s| s.as_object().unwrap().keys().filter_map(|k| k.strip_prefix("lakehose.checkpoint.").map(str::to_string)).collect::<Vec<_>>())
        .collect();
    assert_eq!(shards.len(), 4, "every shard's checkpoint rides in the table: {shards:?}");
}

/// Glue and S3 on moto: the table pyiceberg's Glue catalog loads
/// (`table_type=ICEBERG`, its metadata location) holds every good record
/// with the Hive lake's values, and an `hour(ts)` predicate plans fewer files.
#[test]
fn an_iceberg_table_in_glue_on_moto_reads_back_in_pyiceberg() {
    let moto = Moto::start();
    moto.boto("c('s3').create_bucket(Bucket='ice')");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("spool")).unwrap();
    let (ids, bad) = gen_into(d, "seg.ndjson", &["--records", "2000", "--bad-every", "40", "--seed", "41"]);
    let schema = root().join("schemas/events.toml");
    run_ok(bin().args(["convert", "--progress", "off", "--schema"]).arg(&schema).arg("--out").arg(d.join("hive")).arg(d.join("spool/seg.ndjson")));
    let cfg = iceberg_config(d, &schema);
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "kind = \"sql\"\nuri = \"iceberg/catalog.db\"\nwarehouse = \"iceberg/warehouse\"\ndatabase = \"lake\"",
        &format!("kind = \"glue\"\nwarehouse = \"s3://ice/warehouse\"\ndatabase = \"analytics\"\nendpoint = \"{}\"", moto.endpoint),
    );
    std::fs::write(&cfg, text).unwrap();
    let env = [("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_REGION", "us-east-1"), ("AWS_ENDPOINT_URL", moto.endpoint.as_str())];
    let facts = |extra: &[&str]| -> Value {
        let out = run_ok(Command::new(py()).arg(root().join("tests/py/check_iceberg.py")).args(["--glue", &moto.endpoint, "--table", "analytics.events"]).args(extra));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let daemon = Daemon::new(bin().envs(env).args(["run", "--config"]).arg(&cfg).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(90);
    while !(d.join("state").exists() && moto.boto("print(len(c('glue').get_tables(DatabaseName='analytics')['TableList']))").trim() == "1"
        && facts(&[])["ids"].as_array().unwrap().len() >= ids.len() - bad.len())
    {
        assert!(Instant::now() < deadline, "timed out waiting for the table in Glue");
        std::thread::sleep(Duration::from_millis(500));
    }
    let (ok, _, log) = daemon.term();
    assert!(ok, "{log}");
    let f = facts(&["--hive", d.join("hive").to_str().unwrap(), "--after", "median"]);
    assert_eq!(strs(&f["ids"]), good_sorted(&ids, &bad), "every good id exactly once");
    assert_eq!(f["mismatches"], Value::Array(vec![]), "rows equal the Hive lake's");
    assert!(f["files_after"].as_u64() < f["files"].as_u64(), "a ts predicate plans fewer files: {f}");
    assert_eq!(f["rows_after"], f["want_after"]);
    let params: Value = serde_json::from_str(&moto.boto("print(json.dumps(c('glue').get_table(DatabaseName='analytics', Name='events')['Table']['Parameters']))")).unwrap();
    assert_eq!(params["table_type"].as_str().map(str::to_uppercase).as_deref(), Some("ICEBERG"), "{params}");
    assert!(params["metadata_location"].as_str().unwrap().starts_with("s3://ice/warehouse/"), "{params}");
}

/// A column added to the schema file while the daemon runs: the table
/// gets it (a new field id) before any row that has it is committed, and
/// the rows read after the edit carry its values.
#[test]
fn a_live_schema_edit_adds_the_column_to_the_iceberg_table() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("spool")).unwrap();
    let schema = d.join("events.toml");
    std::fs::copy(root().join("schemas/events.toml"), &schema).unwrap();
    let cfg = iceberg_config(d, &schema);
    let (mut ids, mut bad) = gen_into(d, "a.ndjson", &["--records", "600", "--bad-every", "50", "--seed", "5", "--id-prefix", "ka"]);
    let daemon = Daemon::start(&cfg);
    let before = wait_rows(d, ids.len() - bad.len(), 60);
    let highest = before["schema"].as_object().unwrap().values().filter_map(Value::as_u64).max().unwrap();
    let text = std::fs::read_to_string(&schema).unwrap();
    std::fs::write(&schema, format!("{text}\n[[columns]]\nname = \"page_title\"\ntype = \"string\"\nsource = \"page.title\"\n")).unwrap();
    std::thread::sleep(Duration::from_secs(2)); // schema_poll is 200ms
    let (ids2, bad2) = gen_into(d, "b.ndjson", &["--records", "600", "--bad-every", "50", "--seed", "6", "--id-prefix", "kb"]);
    ids.extend(ids2);
    bad.extend(bad2);
    let f = wait_rows(d, ids.len() - bad.len(), 60);
    let (ok, _, log) = daemon.term();
    assert!(ok, "{log}");
    assert_eq!(f["schema"]["page_title"].as_u64(), Some(highest + 1), "the added column gets the next id: {}", f["schema"]);
    let with_title: BTreeSet<String> = strs(&f["columns"]["page_title"]).into_iter().collect();
    assert!(with_title.len() > 400 && with_title.iter().all(|i| i.starts_with("kb")), "rows read after the edit carry it, earlier ones are null");
    assert_eq!(strs(&iceberg_facts(d, &[])["ids"]), good_sorted(&ids, &bad));
}
