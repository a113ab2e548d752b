//! Backfill and replay through `convert`: its own raw backup and error
//! prefix converted again, S3 prefixes on moto (paginated, nested, mixed
//! packings, a corrupt object), kill -9 and re-run, `--jobs`, progress.

use super::*;

fn events() -> PathBuf {
    root().join("schemas/events.toml")
}

/// Relative paths of every file below `dir` (sorted), staging files of
/// interrupted writes included.
fn tree(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = walk(dir).iter().map(|p| p.strip_prefix(dir).unwrap().display().to_string()).collect();
    out.sort();
    out
}

/// The raw backup `convert` writes, converted again, gives the same rows
/// (every value, read by pyarrow; counted by DuckDB) and the same error
/// records; the error prefix, converted again under a schema widened where
/// records failed (detected as error lines, no flag), lands exactly those
/// records, and the rest fail again for the same reasons, once each.
#[test]
fn raw_backup_and_error_prefix_convert_again() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clicks.ndjson");
    let (ids, bad) = gen(&input, &["--records", "3000", "--bad-every", "7"]);
    let (lake1, raw1) = (dir.path().join("lake1"), dir.path().join("raw1"));
    run_ok(bin().args(["convert", "--chunk-size", "1MiB", "--schema"]).arg(events()).arg("--out").arg(&lake1).arg("--raw-backup").arg(&raw1).arg(&input));
    let f1 = check(&["--lake", lake1.to_str().unwrap(), "--errors", lake1.join("_errors").to_str().unwrap(), "--raw", raw1.to_str().unwrap()]);
    assert_exactly_once(&f1, &ids, &bad, true);
    assert!(f1["raw_wrapped"].as_u64().unwrap() > 0, "cut records are wrapped in the raw backup");

    // the raw backup (a directory of .json.gz objects), converted again
    let lake2 = dir.path().join("lake2");
    run_ok(bin().args(["convert", "--schema"]).arg(events()).arg("--out").arg(&lake2).arg(&raw1));
    let f2 = check(&["--lake", lake2.to_str().unwrap(), "--errors", lake2.join("_errors").to_str().unwrap(), "--compare-clickstream", input.to_str().unwrap()]);
    assert_exactly_once(&f2, &ids, &bad, false);
    assert_eq!(f2["value_mismatches"], serde_json::json!([]), "every value as the first lake has it");

    // the error prefix under a widened schema
    let widened = dir.path().join("events.toml");
    let text = std::fs::read_to_string(events()).unwrap()
        .replace("name = \"event_type\"\ntype = \"string\"\nrequired = true", "name = \"event_type\"\ntype = \"string\"")
        .replace("name = \"user_id\"\ntype = \"bigint\"", "name = \"user_id\"\ntype = \"string\"")
        .replace("name = \"duration_ms\"\ntype = \"int\"", "name = \"duration_ms\"\ntype = \"double\"")
        .replace("decimal(10,2)", "decimal(12,4)");
    assert_eq!(text.matches("required = true").count(), 1, "only event_id stays required");
    std::fs::write(&widened, text).unwrap();
    let lake3 = dir.path().join("lake3");
    let out = bin().env("LAKEHOSE_LOG", "warn").args(["convert", "--schema"]).arg(&widened).arg("--out").arg(&lake3).arg(lake1.join("_errors")).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("(error lines: their records converted again)"), "{err}");
    let f3 = check(&["--lake", lake3.to_str().unwrap(), "--errors", lake3.join("_errors").to_str().unwrap()]);
    let fixed = ["float_in_int", "string_in_number", "int_out_of_range", "missing_required", "null_required", "bad_decimal_places"];
    let mut want: Vec<String> = bad.iter().filter(|(_, k)| fixed.contains(&k.as_str())).map(|(id, _)| id.clone()).collect();
    want.sort();
    assert!(want.len() >= fixed.len(), "every widened kind is in the input");
    assert_eq!(strs(&f3["ids"]), want, "the records that failed for the schema land");
    let still: BTreeMap<String, String> = bad.iter().filter(|(_, k)| !fixed.contains(&k.as_str())).map(|(a, b)| (a.clone(), b.clone())).collect();
    let errors = f3["errors"].as_array().unwrap();
    assert_eq!(errors.len(), still.len(), "the rest fail again, once each");
    for e in errors {
        let id = e["id"].as_str().unwrap();
        let (code, msg) = expected_error(&still[id]);
        assert_eq!(e["errorCode"], code, "{e}");
        assert!(e["errorMessage"].as_str().unwrap().contains(msg), "{e}");
    }
}

/// `convert s3://bucket/prefix/` on moto: over a thousand objects in
/// nested prefixes (listed page by page), gzip, multi-member gzip, zstd of
/// two frames and plain objects side by side, every record lands once;
/// a corrupt gzip object is named with its key, the rest still land and
/// the exit code is 1; with `--catalog glue` every partition written is
/// registered.
#[test]
fn s3_prefixes_mixed_packings_and_a_corrupt_object_on_moto() {
    use std::io::Write as _;
    let moto = Moto::start();
    moto.boto("c('s3').create_bucket(Bucket='src')\nc('s3').create_bucket(Bucket='lake')");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("all.ndjson");
    let (ids, _) = gen(&input, &["--records", "3100"]);
    let text = std::fs::read(&input).unwrap();
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let up = dir.path().join("up");
    let put = |key: &str, bytes: &[u8]| {
        let p = up.join(key);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    };
    let joined = |ls: &[&[u8]]| ls.iter().flat_map(|l| [*l, b"\n"]).flatten().copied().collect::<Vec<u8>>();
    let gz = |b: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    };
    for (i, l) in lines[..1100].iter().enumerate() {
        put(&format!("in/many/p{}/part-{i:04}.ndjson", i / 100), &joined(&[l]));
    }
    put("in/packed/a.json.gz", &gz(&joined(&lines[1100..1600])));
    put("in/packed/b.json.gz", &[gz(&joined(&lines[1600..1800])), gz(&joined(&lines[1800..2000])), gz(&joined(&lines[2000..2100]))].concat());
    let zst = [zstd::encode_all(&joined(&lines[2100..2500])[..], 3).unwrap(), zstd::encode_all(&joined(&lines[2500..2700])[..], 3).unwrap()].concat();
    put("in/packed/deeper/c.zst", &zst);
    put("in/packed/d.ndjson", &joined(&lines[2700..]));
    let mut corrupt = gz(b"{\"event_id\":\"never\"}\n");
    corrupt.truncate(10);
    corrupt.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0x00, 0x11, 0x22, 0x33]);
    put("in/packed/corrupt.json.gz", &corrupt);
    moto.boto(&format!(r#"
import os
s3, root = c('s3'), {up:?}
for d, _, fs in os.walk(root):
    for f in fs:
        s3.upload_file(os.path.join(d, f), 'src', os.path.relpath(os.path.join(d, f), root))
n = sum(len(p.get('Contents', [])) for p in s3.get_paginator('list_objects_v2').paginate(Bucket='src'))
assert n == 1105, n"#, up = up.display().to_string()));
    let envs = [("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_REGION", "us-east-1")];
    let out = bin().envs(envs).args(["convert", "--schema"]).arg(events())
        .args(["--out", "s3://lake/events/", "--errors", "s3://lake/errors/", "--endpoint", &moto.endpoint, "--catalog", "glue", "--database", "backfill", "s3://src/in/"])
        .output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "a corrupt object fails the run: {err}");
    let problem = err.lines().find(|l| l.contains("problem: s3://src/in/packed/corrupt.json.gz")).unwrap_or_else(|| panic!("the corrupt object is named: {err}"));
    assert!(problem.contains("gzip"), "{problem}");
    assert!(err.contains("1105 inputs"), "{err}");
    let facts = check(&["--lake", "s3://lake/events/", "--endpoint", &moto.endpoint, "--time-column", "ts"]);
    let mut want = ids.clone();
    want.sort();
    assert_eq!(strs(&facts["ids"]), want, "every record of every readable object, once");
    assert_eq!(facts["partition_mismatches"], serde_json::json!([]));
    // every partition written is registered, at its prefix
    let report = moto.boto(r#"
s3, g = c('s3'), c('glue')
prefixes = sorted({'s3://lake/' + o['Key'].rsplit('/', 1)[0] + '/' for p in s3.get_paginator('list_objects_v2').paginate(Bucket='lake', Prefix='events/') for o in p.get('Contents', []) if o['Key'].endswith('.parquet')})
parts = sorted(p['StorageDescriptor']['Location'] for pg in g.get_paginator('get_partitions').paginate(DatabaseName='backfill', TableName='events') for p in pg['Partitions'])
print(json.dumps({'prefixes': prefixes, 'partitions': parts}))"#);
    let r: Value = serde_json::from_str(&report).unwrap();
    assert!(r["prefixes"].as_array().unwrap().len() > 10, "{r}");
    assert_eq!(r["partitions"], r["prefixes"], "every partition registered");
}

/// kill -9 in the middle of a backfill (three times, at different
/// moments), then the same command to its end: the lake, the error prefix
/// and the raw backup hold every record exactly once (the re-run replaces
/// the objects the killed runs wrote, key for key).
#[test]
fn kill_9_mid_backfill_then_rerun_lands_each_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clicks.ndjson");
    let (ids, bad) = gen(&input, &["--records", "40000", "--bad-every", "50"]);
    let (lake, raw) = (dir.path().join("lake"), dir.path().join("raw"));
    let cmd = || {
        let mut c = bin();
        c.args(["convert", "--jobs", "2", "--chunk-size", "1MiB", "--progress", "off", "--schema"]).arg(events()).arg("--out").arg(&lake).arg("--raw-backup").arg(&raw).arg(&input);
        c
    };
    let mut killed_with = Vec::new();
    for round in 1..=3 {
        let mut child = cmd().stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let started = Instant::now();
        // wait for some objects (more each round), then kill
        let written = || if lake.exists() { walk(&lake).iter().filter(|p| p.to_string_lossy().ends_with(".parquet")).count() } else { 0 };
        while written() < round * 4 && started.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        killed_with.push(status.code());
    }
    assert!(killed_with.iter().all(Option::is_none), "each run was killed before its end: {killed_with:?}");
    run_ok(&mut cmd());
    let facts = check(&["--lake", lake.to_str().unwrap(), "--errors", lake.join("_errors").to_str().unwrap(), "--raw", raw.to_str().unwrap()]);
    assert_exactly_once(&facts, &ids, &bad, true);
}

/// `--jobs 2` writes the very objects `--jobs 1` writes (same keys, same
/// rows); a gzip copy of the input converted on two workers gives the same
/// rows. Off a terminal, progress is a JSON line naming bytes done of the
/// total, records and errors; on a terminal, a bar.
#[test]
fn jobs_2_writes_what_jobs_1_writes_with_progress() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clicks.ndjson");
    let (ids, bad) = gen(&input, &["--records", "20000", "--bad-every", "40"]);
    let size = std::fs::metadata(&input).unwrap().len();
    let run = |jobs: &str, out: &str, what: &Path| {
        bin().env("LAKEHOSE_LOG", "info").env("LAKEHOSE_PROGRESS_EVERY_MS", "100")
            .args(["convert", "--jobs", jobs, "--chunk-size", "1MiB", "--progress", "log", "--schema"]).arg(events())
            .arg("--out").arg(dir.path().join(out)).arg("--raw-backup").arg(dir.path().join(format!("{out}-raw"))).arg(what).output().unwrap()
    };
    let one = run("1", "one", &input);
    let two = run("2", "two", &input);
    assert!(one.status.success() && two.status.success(), "{}", String::from_utf8_lossy(&two.stderr));
    let (a, b) = (tree(&dir.path().join("one")), tree(&dir.path().join("two")));
    assert!(a.iter().filter(|k| k.ends_with(".parquet")).count() > 5, "several units: {a:?}");
    assert_eq!(a, b, "the same objects");
    assert_eq!(tree(&dir.path().join("one-raw")), tree(&dir.path().join("two-raw")));
    for out in ["one", "two"] {
        let lake = dir.path().join(out);
        let facts = check(&["--lake", lake.to_str().unwrap(), "--errors", lake.join("_errors").to_str().unwrap(), "--raw", dir.path().join(format!("{out}-raw")).to_str().unwrap()]);
        assert_exactly_once(&facts, &ids, &bad, true);
    }
    let stderr = String::from_utf8_lossy(&one.stderr);
    let progress: Vec<Value> = stderr.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v["fields"]["message"] == "progress").collect();
    assert!(!progress.is_empty(), "progress lines: {stderr}");
    let last = &progress[progress.len() - 1]["fields"];
    assert_eq!(last["bytes_total"].as_u64(), Some(size), "{last}");
    assert!(last["bytes_done"].as_u64().unwrap() > 0 && last["records"].as_u64().is_some() && last["errors"].as_u64().is_some(), "{last}");
    // gzip input: the same rows on two workers
    let gz = dir.path().join("clicks.ndjson.gz");
    run_ok(Command::new("sh").arg("-c").arg(format!("gzip -c {} > {}", input.display(), gz.display())));
    let g = run("2", "gz", &gz);
    assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));
    let lake = dir.path().join("gz");
    assert_exactly_once(&check(&["--lake", lake.to_str().unwrap(), "--errors", lake.join("_errors").to_str().unwrap()]), &ids, &bad, false);
    // on a terminal: a bar with bytes, rate, records and errors
    let tty = run_ok(Command::new(py()).arg(root().join("tests/py/tty_run.py")).arg(env!("CARGO_BIN_EXE_lakehose"))
        .args(["convert", "--jobs", "1", "--schema"]).arg(events()).arg("--out").arg(dir.path().join("tty")).arg(&input));
    let t: Value = serde_json::from_slice(&tty.stdout).unwrap();
    let screen = t["tty"].as_str().unwrap();
    assert_eq!(t["code"], 0, "{screen}");
    assert!(screen.contains("records, ") && screen.contains(" errors") && screen.contains("/s") && screen.contains("ETA"), "a progress bar: {screen}");
}
