//! Schema owners' rules and filters end to end: what lands in the lake,
//! the error prefix and the raw backup (read by pyarrow), the summary and
//! the metrics; live edits of rules while the daemon runs.

use super::*;

const RULES: &str = r#"
[[rules]]
column = "duration_ms"
max = 60000

[[rules]]
column = "device.os"
allowed = ["ios", "android", "macos"]

[[filters]]
name = "bots"
column = "is_bot"
equals = true

[[filters]]
name = "search"
column = "event_type"
in = ["search"]
"#;

/// What the rules and filters make of each generated record: (rows,
/// id → error message, filtered by bots, filtered by search).
fn judge(input: &Path) -> (Vec<String>, BTreeMap<String, String>, usize, usize) {
    let (mut rows, mut errors, mut bots, mut search) = (Vec::new(), BTreeMap::new(), 0, 0);
    for line in std::fs::read_to_string(input).unwrap().lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        let id = r["event_id"].as_str().unwrap().to_string();
        let (d, os) = (r["duration_ms"].as_i64().unwrap(), r["device"]["os"].as_str().unwrap());
        if d > 60000 {
            errors.insert(id, format!("column 'duration_ms': rule `max = 60000` fails for {d}"));
        } else if !["ios", "android", "macos"].contains(&os) {
            errors.insert(id, format!("column 'device.os': rule `allowed = [\"ios\", \"android\", \"macos\"]` fails for \"{os}\""));
        } else if r["is_bot"] == true {
            bots += 1;
        } else if r["event_type"] == "search" {
            search += 1;
        } else {
            rows.push(id);
        }
    }
    rows.sort();
    (rows, errors, bots, search)
}

fn schema_with(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("events.toml");
    let text = std::fs::read_to_string(root().join("schemas/events.toml")).unwrap();
    let (cols, partition) = text.split_once("[partition]").unwrap();
    std::fs::write(&path, format!("{cols}{extra}\n[partition]{partition}")).unwrap();
    path
}

/// Checks the error prefix against `want` (id → message): each failed
/// record once, with the rule's own code and a message naming column,
/// rule and value.
fn assert_errors(facts: &Value, want: &BTreeMap<String, String>) {
    let mut got = BTreeMap::new();
    for e in facts["errors"].as_array().unwrap() {
        assert_eq!(e["errorCode"], "lakehose.ValidationFailed", "{e}");
        let id = e["id"].as_str().unwrap().to_string();
        assert!(got.insert(id.clone(), e["errorMessage"].as_str().unwrap().to_string()).is_none(), "{id} twice in the error prefix");
    }
    assert_eq!(got.len(), want.len(), "error records");
    for (id, msg) in want {
        assert_eq!(got.get(id), Some(msg), "{id}");
    }
}

/// `convert` with two rules and two filters: the lake holds exactly the
/// records that pass and no filter drops, the error prefix exactly the
/// records that fail a rule (by the first rule they fail), filtered
/// records are nowhere but the raw backup, and the summary counts them
/// per filter.
#[test]
fn rules_send_failures_to_errors_and_filters_drop_records() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clicks.ndjson");
    let (ids, bad) = gen(&input, &["--records", "3000"]);
    assert!(bad.is_empty());
    let (rows, errors, bots, search) = judge(&input);
    assert!(errors.len() > 1000 && bots > 10 && search > 100 && rows.len() > 500, "every outcome in quantity");
    let schema = schema_with(dir.path(), RULES);
    let (lake, raw) = (dir.path().join("lake"), dir.path().join("raw"));
    let out = run_ok(bin().args(["convert", "--schema"]).arg(&schema).arg("--out").arg(&lake).arg("--raw-backup").arg(&raw).arg(&input));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("filtered by bots: {bots}")) && err.contains(&format!("filtered by search: {search}")), "{err}");
    assert!(err.contains(&format!("lakehose.ValidationFailed: {}", errors.len())), "{err}");
    let facts = check(&["--lake", lake.to_str().unwrap(), "--errors", lake.join("_errors").to_str().unwrap(), "--raw", raw.to_str().unwrap()]);
    assert_eq!(strs(&facts["ids"]), rows, "the lake holds exactly the records that pass and are not filtered");
    assert_eq!(facts["duckdb_rows"].as_u64().unwrap() as usize, rows.len());
    assert_errors(&facts, &errors);
    let mut all = ids.clone();
    all.sort();
    assert_eq!(strs(&facts["raw_ids"]), all, "the raw backup keeps every record, filtered ones too");
}

/// A live edit adding rules and a filter applies to the records read
/// after it and to none before; an edit whose rule does not compile is
/// refused (metric, log) while ingestion goes on under the last good one.
#[test]
fn live_rule_edits_apply_from_the_next_record_and_bad_edits_are_refused() {
    use glue::wait_metric;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let (ids, _) = gen(&input, &["--records", "2000"]);
    let schema = schema_with(dir.path(), "");
    let port = free_port();
    let cfg = dir.path().join("l.toml");
    std::fs::write(&cfg, format!("[source]\nkind = \"stdin\"\n[table]\nschema = \"{}\"\n[sink]\nurl = \"lake\"\nerrors = \"errors\"\n[buffer]\nmax_age = \"1s\"\n[catalog]\nschema_poll = \"200ms\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
        schema.display())).unwrap();
    let mut child = bin().args(["run", "--config"]).arg(&cfg).current_dir(dir.path()).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let data = std::fs::read(&input).unwrap();
    let half = data.iter().enumerate().filter(|(_, &b)| b == b'\n').nth(999).unwrap().0 + 1;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&data[..half]).unwrap();
    stdin.flush().unwrap();
    wait_for(&dir.path().join("lake"), &dir.path().join("errors"), 1000, 0, 30);
    // rules and filters added
    schema_with(dir.path(), RULES);
    wait_metric(port, "lakehose_schema_reloads_total{result=\"applied\"}", 1.0, 20);
    // then an edit that does not compile: refused, the last good one stays
    schema_with(dir.path(), &format!("{RULES}\n[[rules]]\ncolumn = \"session_id\"\npattern = \"(\"\n"));
    wait_metric(port, "lakehose_schema_reloads_total{result=\"rejected\"}", 1.0, 20);
    let second = dir.path().join("second.ndjson");
    std::fs::write(&second, &data[half..]).unwrap();
    let (second_rows, second_errors, bots, search) = judge(&second);
    stdin.write_all(&data[half..]).unwrap();
    stdin.flush().unwrap();
    for (name, n) in [("lakehose_records_filtered_total{filter=\"bots\"}", bots), ("lakehose_records_filtered_total{filter=\"search\"}", search), ("lakehose_records_failed_total{code=\"lakehose.ValidationFailed\"}", second_errors.len())] {
        let body = wait_metric(port, name, n as f64, 20);
        assert_eq!(glue::metric(&body, name), n as f64, "{name}");
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("rules[2].pattern") && log.contains("the regex does not compile"), "the refusal names key and reason: {log}");

    let mut want: Vec<String> = ids[..1000].to_vec();
    want.extend(second_rows);
    want.sort();
    let facts = check(&["--lake", dir.path().join("lake").to_str().unwrap(), "--errors", dir.path().join("errors").to_str().unwrap()]);
    assert_eq!(strs(&facts["ids"]), want, "records before the edit all land; after it, only those that pass");
    assert_errors(&facts, &second_errors);
}

/// Rules and filters through the spool with kill -9 at random moments:
/// each record that passes lands once, each that fails a rule is one
/// error line, filtered records are nowhere but the raw backup, whatever
/// the replays.
#[test]
fn rules_and_filters_hold_exactly_once_through_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let schema = schema_with(dir.path(), RULES);
    let cfg = dir.path().join("lakehose.toml");
    std::fs::write(&cfg, format!("[source]\nkind = \"spool\"\ndir = \"spool\"\npoll_interval = \"50ms\"\n[table]\nschema = \"{}\"\n[sink]\nurl = \"lake\"\nraw_backup = \"raw\"\nerrors = \"errors\"\n[buffer]\nmax_records = 150\nmax_age = \"1s\"\n",
        schema.display())).unwrap();
    let (mut all_ids, mut rows, mut errors) = (Vec::new(), Vec::new(), BTreeMap::new());
    let mut rng: u64 = 0x7a1e5;
    let mut next = || {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        rng >> 33
    };
    for seg in 0..5 {
        let file = spool.join(format!("seg-{seg:02}.ndjson"));
        let tmp = dir.path().join(format!("seg-{seg:02}.tmp"));
        let prefix = format!("r{}", (b'a' + seg as u8) as char);
        let (ids, _) = gen(&tmp, &["--records", "1200", "--seed", &seg.to_string(), "--id-prefix", &prefix]);
        let (r, e, ..) = judge(&tmp);
        all_ids.extend(ids);
        rows.extend(r);
        errors.extend(e);
        std::fs::rename(&tmp, &file).unwrap();
        let d = Daemon::start(&cfg);
        std::thread::sleep(Duration::from_millis(200 + next() % 900));
        d.kill9();
    }
    rows.sort();
    let d = Daemon::start(&cfg);
    wait_for(&dir.path().join("lake"), &dir.path().join("errors"), rows.len(), errors.len(), 120);
    let (ok, _, stderr) = d.term();
    assert!(ok, "{stderr}");
    let facts = check(&["--lake", dir.path().join("lake").to_str().unwrap(), "--errors", dir.path().join("errors").to_str().unwrap(), "--raw", dir.path().join("raw").to_str().unwrap()]);
    assert_eq!(strs(&facts["ids"]), rows, "each record that passes, once");
    assert_errors(&facts, &errors);
    all_ids.sort();
    assert_eq!(strs(&facts["raw_ids"]), all_ids, "the raw backup holds every record once");
}
