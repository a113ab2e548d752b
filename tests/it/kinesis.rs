//! Kinesis source end to end: the real binary against moto_server (Kinesis +
//! DynamoDB leases) and kinesalite (resharding that behaves as on AWS), with
//! producers writing while instances are killed, frozen and restarted. The
//! lake is read back by pyarrow and DuckDB (check_lake.py).

use super::*;

const AWS_ENV: [(&str, &str); 3] = [("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_REGION", "us-east-1")];

fn kinesis_config(dir: &Path, name: &str, stream: &str, kinesis: &str, dynamo: &str, extra: &str) -> PathBuf {
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(&cfg, format!(r#"
[source]
kind = "kinesis"
stream = "{stream}"
endpoint = "{kinesis}"
poll_interval = "200ms"
shard_sync_interval = "1s"

[lease]
table = "leases-{stream}"
endpoint = "{dynamo}"
failover = "2s"

[table]
schema = "{schema}"

[sink]
url = "lake"
raw_backup = "raw"
errors = "errors"

[buffer]
max_records = 150
max_age = "1s"
{extra}
"#, schema = root().join("schemas/events.toml").display())).unwrap();
    cfg
}

fn start(cfg: &Path) -> Daemon {
    Daemon::new(bin().envs(AWS_ENV).args(["run", "--config"]).arg(cfg).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap())
}

/// Starts the producer (one thread) in the background.
fn produce(endpoint: &str, stream: &str, file: &Path, extra: &[&str]) -> Child {
    Command::new(py()).arg(root().join("tests/py/kinesis_put.py")).arg(file)
        .args(["--stream", stream, "--endpoint", endpoint]).args(extra).stdout(Stdio::null()).spawn().unwrap()
}

fn finish(mut c: Child) {
    assert!(c.wait().unwrap().success(), "producer failed");
}

/// The lease table as {shard: [owner or "", checkpoint, parents]}.
pub(super) fn leases(moto: &Moto, table: &str) -> Value {
    serde_json::from_str(&moto.boto(&format!(r#"
items = c('dynamodb').scan(TableName='{table}', ConsistentRead=True)['Items']
print(json.dumps({{i['leaseKey']['S']: [i.get('leaseOwner', {{}}).get('S', ''), i['checkpoint']['S'], sorted(i.get('parentShardIds', {{}}).get('SS', []))] for i in items}}))"#)))
    .unwrap()
}

fn owners(l: &Value) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for v in l.as_object().unwrap().values() {
        *m.entry(v[0].as_str().unwrap().to_string()).or_default() += 1;
    }
    m
}

fn lake_args(dir: &Path) -> [String; 6] {
    ["--lake".into(), dir.join("lake").display().to_string(), "--errors".into(), dir.join("errors").display().to_string(),
        "--raw".into(), dir.join("raw").display().to_string()]
}

pub(super) fn check_dir(dir: &Path) -> Value {
    let a = lake_args(dir);
    check(&a.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn kinesis_two_instances_balance_and_survive_kill_9_exactly_once() {
    let moto = Moto::start();
    moto.boto("c('kinesis').create_stream(StreamName='clicks', ShardCount=4)");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let (ids, bad) = gen(&input, &["--records", "4000", "--bad-every", "40", "--seed", "11"]);
    let cfg = kinesis_config(dir.path(), "l", "clicks", &moto.endpoint, &moto.endpoint, "");
    let producer = produce(&moto.endpoint, "clicks", &input, &["--batch", "50", "--pause", "0.1"]);
    two_processes_kill_9_exactly_once(&moto, "leases-clicks", dir.path(), &ids, &bad, producer, 4, 0x9e37, || start(&cfg));
}

/// Two processes split four shards two and two; each is killed -9 in turn
/// `rounds` times (and restarted) while `producer` writes; then every good
/// id is in the lake once, every bad one in the error prefix, and SIGTERM
/// releases every lease.
pub(super) fn two_processes_kill_9_exactly_once(moto: &Moto, table: &str, dir: &Path, ids: &[String], bad: &BTreeMap<String, String>, mut producer: Child, rounds: u32, seed: u64, start: impl Fn() -> Daemon) {
    let mut a = start();
    let mut b = start();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = owners(&leases(moto, table));
        if o.len() == 2 && o.values().all(|n| *n == 2) && !o.contains_key("") {
            break;
        }
        assert!(Instant::now() < deadline, "leases not balanced 2/2: {o:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut rng = seed;
    for round in 0..rounds {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(300 + (rng >> 33) % 1200));
        if round % 2 == 0 {
            a.kill9();
            a = start();
        } else {
            b.kill9();
            b = start();
        }
    }
    assert!(producer.wait().unwrap().success(), "producer failed");
    let good = ids.len() - bad.len();
    wait_for(&dir.join("lake"), &dir.join("errors"), good, bad.len(), 120);
    for d in [a, b] {
        let (ok, secs, err) = d.term();
        assert!(ok && secs < 15.0, "SIGTERM: {ok} after {secs}s: {err}");
    }
    assert_exactly_once(&check_dir(dir), ids, bad, true);
    let l = leases(moto, table);
    assert_eq!(owners(&l), BTreeMap::from([(String::new(), 4)]), "SIGTERM released every lease: {l}");
}

#[test]
fn kinesis_frozen_zombie_uploads_nothing_after_its_lease_moves() {
    let moto = Moto::start();
    moto.boto("c('kinesis').create_stream(StreamName='zomb', ShardCount=2)");
    let dir = tempfile::tempdir().unwrap();
    let p1 = dir.path().join("p1.ndjson");
    let p2 = dir.path().join("p2.ndjson");
    let (mut ids, mut bad) = gen(&p1, &["--records", "600", "--bad-every", "60", "--seed", "1", "--id-prefix", "za"]);
    let (ids2, bad2) = gen(&p2, &["--records", "600", "--bad-every", "60", "--seed", "2", "--id-prefix", "zb"]);
    ids.extend(ids2);
    bad.extend(bad2);
    // the zombie buffers long (its files would span different records than the new owner's)
    let slow = kinesis_config(dir.path(), "slow", "zomb", &moto.endpoint, &moto.endpoint, "").to_str().unwrap().to_string();
    edit(Path::new(&slow), &[("max_records = 150\nmax_age = \"1s\"", "max_records = 100000\nmax_age = \"6s\"")]);
    let zombie = start(Path::new(&slow));
    std::thread::sleep(Duration::from_millis(1500));
    finish(produce(&moto.endpoint, "zomb", &p1, &["--batch", "100"]));
    std::thread::sleep(Duration::from_millis(1500)); // read, buffered, not yet flushed
    run_ok(Command::new("kill").args(["-STOP", &zombie.child.id().to_string()]));
    let fast = kinesis_config(dir.path(), "fast", "zomb", &moto.endpoint, &moto.endpoint, "");
    let heir = start(&fast);
    finish(produce(&moto.endpoint, "zomb", &p2, &["--batch", "100"]));
    let good = ids.len() - bad.len();
    wait_for(&dir.path().join("lake"), &dir.path().join("errors"), good, bad.len(), 60);
    zombie_wakes_and_changes_nothing(dir.path(), zombie, heir, &ids, &bad);
}

/// A SIGSTOPped `zombie` whose leases `heir` took (and has written) wakes
/// past its fence with full buffers due: it notices and writes nothing;
/// then the lake holds every id once.
pub(super) fn zombie_wakes_and_changes_nothing(dir: &Path, zombie: Daemon, heir: Daemon, ids: &[String], bad: &BTreeMap<String, String>) {
    let before = check_dir(dir);
    run_ok(Command::new("kill").args(["-CONT", &zombie.child.id().to_string()]));
    std::thread::sleep(Duration::from_secs(4));
    let (_, _, zerr) = zombie.term();
    assert!(zerr.contains("lease lost") || zerr.contains("lease fence passed"), "the zombie noticed: {zerr}");
    let after = check_dir(dir);
    assert_eq!(after["ids"], before["ids"], "the zombie changed the lake");
    let (ok, _, err) = heir.term();
    assert!(ok, "{err}");
    assert_exactly_once(&check_dir(dir), ids, bad, true);
}

fn kinesalite() -> super::Server {
    let bin = std::env::var_os("LAKEHOSE_KINESALITE").map(PathBuf::from).unwrap_or_else(|| root().join(".node/node_modules/.bin/kinesalite"));
    assert!(bin.exists(), "{} missing: run the tests through scripts/test.sh, which installs kinesalite", bin.display());
    super::Server::start(
        "kinesalite",
        |port| {
            let mut c = Command::new(bin);
            c.args(["--port", port, "--createStreamMs", "0", "--deleteStreamMs", "0", "--updateStreamMs", "0"]);
            c
        },
        |port| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
    )
}

#[test]
fn kinesis_split_shard_while_running_with_kpl_records() {
    let moto = Moto::start(); // DynamoDB for the leases
    let kl = kinesalite();
    let k = |code: &str| moto.boto(&format!("k = boto3.client('kinesis', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='t', aws_secret_access_key='t')\n{code}", kl.endpoint));
    k("k.create_stream(StreamName='split', ShardCount=1)");
    let dir = tempfile::tempdir().unwrap();
    let p1 = dir.path().join("p1.ndjson");
    let p2 = dir.path().join("p2.ndjson");
    let (mut ids, mut bad) = gen(&p1, &["--records", "800", "--bad-every", "50", "--seed", "3", "--id-prefix", "sa"]);
    let (ids2, bad2) = gen(&p2, &["--records", "800", "--bad-every", "50", "--seed", "4", "--id-prefix", "sb"]);
    ids.extend(ids2);
    bad.extend(bad2);
    let cfg = kinesis_config(dir.path(), "l", "split", &kl.endpoint, &moto.endpoint, "");
    let d = start(&cfg);
    // KPL-aggregated records (10 user records each) before and after the split
    finish(produce(&kl.endpoint, "split", &p1, &["--batch", "20", "--aggregate", "10"]));
    k("s = k.list_shards(StreamName='split')['Shards'][0]\nk.split_shard(StreamName='split', ShardToSplit=s['ShardId'], NewStartingHashKey=str(2**127))");
    finish(produce(&kl.endpoint, "split", &p2, &["--batch", "20", "--aggregate", "10"]));
    let good = ids.len() - bad.len();
    wait_for(&dir.path().join("lake"), &dir.path().join("errors"), good, bad.len(), 90);
    let (ok, _, err) = d.term();
    assert!(ok, "{err}");
    let facts = check_dir(dir.path());
    assert_exactly_once(&facts, &ids, &bad, true);
    let l = leases(&moto, "leases-split");
    let parent = "shardId-000000000000";
    assert_eq!(l[parent][1], "SHARD_END", "the parent was read to its end and checkpointed: {l}");
    for child in ["shardId-000000000001", "shardId-000000000002"] {
        assert_eq!(l[child][2], serde_json::json!([parent]), "{l}");
    }
    // children's files exist; the error lines name the KPL sub-sequence numbers
    let files: Vec<String> = walk(&dir.path().join("lake"));
    assert!(files.iter().any(|f| f.contains("/shardId-000000000001-") || f.contains("/shardId-000000000002-")), "{files:?}");
    assert!(facts["errors"].as_array().unwrap().iter().any(|e| e["subSequenceNumber"].as_u64().unwrap_or(0) > 0), "sub-sequence numbers kept");
}

fn walk(p: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path().display().to_string());
            }
        }
    }
    out
}

#[test]
fn kinesis_metrics_move_and_readiness_follows_the_lease_table() {
    use super::glue::{http_get, metric, wait_metric};
    let kin = Moto::start();
    let ddb = Moto::start(); // the lease table on its own server, so it can go away
    kin.boto("c('kinesis').create_stream(StreamName='ready', ShardCount=2)");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = kinesis_config(dir.path(), "l", "ready", &kin.endpoint, &ddb.endpoint, &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    let input = dir.path().join("in.ndjson");
    let (ids, bad) = gen(&input, &["--records", "600", "--bad-every", "50", "--seed", "9"]);
    let mut d = start(&cfg);
    let body = wait_metric(port, "lakehose_leases_held", 2.0, 30);
    assert_eq!(metric(&body, "lakehose_leases_total"), 2.0);
    assert_eq!(metric(&body, "lakehose_workers"), 1.0);
    assert_eq!(http_get(port, "/readyz").0, 200, "ready once leases are held");
    finish(produce(&kin.endpoint, "ready", &input, &["--batch", "100"]));
    let body = wait_metric(port, "lakehose_records_converted_total", (ids.len() - bad.len()) as f64, 60);
    assert_eq!(metric(&body, "lakehose_incoming_records_total"), ids.len() as f64);
    // converted rows are delivered when their buffer flushes (max_age 1s)
    let body = wait_metric(port, "lakehose_objects_delivered_total{dest=\"table\"}", 1.0, 10);
    assert!(metric(&body, "lakehose_bytes_delivered_total{dest=\"raw\"}") > 0.0);
    for shard in ["shardId-000000000000", "shardId-000000000001"] {
        assert!(body.contains(&format!("lakehose_shard_millis_behind_latest{{shard=\"{shard}\"}}")), "lag per shard: {body}");
    }
    // the lease table goes away while records keep coming (flushes need it
    // for their intents and checkpoints): the process stays up but is no longer ready
    let more = dir.path().join("more.ndjson");
    gen(&more, &["--records", "600", "--seed", "10", "--id-prefix", "mo"]);
    let producer = produce(&kin.endpoint, "ready", &more, &["--batch", "50", "--pause", "0.1"]);
    std::thread::sleep(Duration::from_millis(700));
    drop(ddb);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, why) = http_get(port, "/readyz");
        if code == 503 {
            assert!(why.contains("lease round"), "{why}");
            break;
        }
        assert!(Instant::now() < deadline, "still ready 20 s after the lease table went away");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(http_get(port, "/healthz").0, 200, "alive all the same");
    finish(producer);
    assert!(d.child.try_wait().unwrap().is_none(), "the daemon keeps running and retrying");
    d.child.kill().unwrap();
    d.child.wait().unwrap();
}

/// tests/py/fault_proxy.py in front of moto, injecting errors by rule.
fn fault_proxy(upstream: &str, rules: &[&str]) -> super::Server {
    super::Server::start(
        "fault_proxy",
        |port| {
            let mut c = Command::new(py());
            c.arg(root().join("tests/py/fault_proxy.py")).args(["--upstream", upstream, "--port", port]);
            for r in rules {
                c.args(["--rule", r]);
            }
            c
        },
        |port| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
    )
}

/// What AWS does under load, injected between lakehose and moto: GetRecords
/// throttled and iterators expiring, lease writes failing with 500s, raw
/// backup uploads answered with 503 SlowDown, Glue partition registration
/// failing with 500s. The daemon backs off, re-creates iterators after the
/// last delivered record and retries; nothing is lost or written twice, and
/// every partition of the lake is registered.
#[test]
fn kinesis_throttling_expired_iterators_and_5xx_lose_nothing() {
    let moto = Moto::start();
    moto.boto("c('kinesis').create_stream(StreamName='faulty', ShardCount=2)\nc('s3').create_bucket(Bucket='raw-bkt')");
    let rules = [
        "kinesis:GetRecords:3:ProvisionedThroughputExceededException",
        "kinesis:GetRecords:4:ExpiredIteratorException",
        "dynamodb:UpdateItem:4:InternalServerError",
        "s3:PUT:3:SlowDown",
        // more failures in a row than the SDK's own three attempts absorb
        "glue:BatchCreatePartition:1:InternalServiceException:4",
    ];
    let proxy = fault_proxy(&moto.endpoint, &rules);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let (ids, bad) = gen(&input, &["--records", "1500", "--bad-every", "50", "--seed", "21", "--id-prefix", "ft"]);
    let glue = format!("[catalog]\nkind = \"glue\"\ndatabase = \"faulty\"\nendpoint = \"{}\"\n", proxy.endpoint);
    let cfg = kinesis_config(dir.path(), "f", "faulty", &proxy.endpoint, &proxy.endpoint, &glue);
    let text = std::fs::read_to_string(&cfg).unwrap().replace("raw_backup = \"raw\"", &format!("raw_backup = \"s3://raw-bkt/raw/\"\nendpoint = \"{}\"", proxy.endpoint));
    std::fs::write(&cfg, text).unwrap();
    let d = start(&cfg);
    finish(produce(&moto.endpoint, "faulty", &input, &["--batch", "100", "--pause", "0.2"]));
    wait_for(&dir.path().join("lake"), &dir.path().join("errors"), ids.len() - bad.len(), bad.len(), 90);
    let (ok, secs, err) = d.term();
    assert!(ok && secs < 15.0, "SIGTERM: {ok} after {secs}s: {err}");
    let lake = dir.path().join("lake").display().to_string();
    let errors = dir.path().join("errors").display().to_string();
    let facts = check(&["--lake", &lake, "--errors", &errors, "--raw", "s3://raw-bkt/raw/", "--endpoint", &moto.endpoint]);
    assert_exactly_once(&facts, &ids, &bad, true);
    // every partition directory of the lake is a Glue partition
    let mut dirs = BTreeSet::new();
    for f in walk(&dir.path().join("lake")) {
        let rel = Path::new(&f).parent().unwrap().strip_prefix(dir.path().join("lake")).unwrap().to_str().unwrap().to_string();
        dirs.insert(rel.split('/').map(|kv| kv.split_once('=').unwrap().1.to_string()).collect::<Vec<_>>());
    }
    let parts: Vec<Vec<String>> = serde_json::from_str(&moto.boto("g = c('glue')\nprint(json.dumps(sorted(p['Values'] for page in g.get_paginator('get_partitions').paginate(DatabaseName='faulty', TableName='events') for p in page['Partitions'])))")).unwrap();
    assert!(!dirs.is_empty());
    assert_eq!(parts, dirs.into_iter().collect::<Vec<_>>(), "Glue partitions = the lake's partition directories");
    let port = proxy.endpoint.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let faults: Value = serde_json::from_str(&super::glue::http_get(port, "/__faults").1).unwrap();
    for r in rules {
        assert!(faults[r].as_u64().unwrap() > 0, "{r} was never injected: {faults}");
    }
}

/// The Kinesis source through the source conformance suite that the
/// spool, convert's units, the memory twin and Kafka pass: a three-shard
/// stream on moto, each rig shard one Kinesis shard (records put with an
/// explicit hash key in its range), leases on moto's DynamoDB.
struct KinesisRig<'a> {
    moto: &'a Moto,
    dir: tempfile::TempDir,
}

const RIG_SHARDS: [&str; 3] = ["seg-a", "seg-b", "seg-c"];

impl lakehose::testing::suites::SourceRig for KinesisRig<'_> {
    type S = lakehose::source::kinesis::KinesisSource;

    fn append(&mut self, name: &str, records: &[Vec<u8>]) {
        let i = RIG_SHARDS.iter().position(|s| *s == name).expect("a rig shard");
        let f = self.dir.path().join(format!("{name}.ndjson"));
        std::fs::write(&f, records.iter().flat_map(|r| r.iter().copied().chain([b'\n'])).collect::<Vec<u8>>()).unwrap();
        self.moto.boto(&format!(
            "k = c('kinesis')\nkey = sorted(k.list_shards(StreamName='suite')['Shards'], key=lambda s: s['ShardId'])[{i}]['HashKeyRange']['StartingHashKey']\n\
             lines = [l for l in open('{}', 'rb').read().split(b'\\n') if l]\n\
             for j in range(0, len(lines), 100):\n    r = k.put_records(StreamName='suite', Records=[{{'Data': l, 'PartitionKey': 'p', 'ExplicitHashKey': key}} for l in lines[j:j + 100]])\n    assert r['FailedRecordCount'] == 0, r",
            f.display()
        ));
    }

    fn open(&mut self) -> Self::S {
        let cfg = kinesis_config(self.dir.path(), "suite", "suite", &self.moto.endpoint, &self.moto.endpoint, "");
        let text = std::fs::read_to_string(&cfg).unwrap().replace("poll_interval = \"200ms\"", "poll_interval = \"100ms\"\nregion = \"us-east-1\"");
        let cfg = lakehose::config::Config::parse(&cfg.display().to_string(), &text, std::iter::empty()).expect("config");
        let lakehose::config::SourceConfig::Kinesis(k) = cfg.source else { panic!("a Kinesis source") };
        tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(lakehose::source::kinesis::KinesisSource::open(k))).expect("open")
    }

    fn replayable(&self) -> bool {
        true
    }

    fn shard(&self, name: &str) -> lakehose::ids::ShardId {
        let i = RIG_SHARDS.iter().position(|s| *s == name).expect("a rig shard");
        lakehose::ids::ShardId::new(&format!("shardId-{i:012}"))
    }
}

#[test]
fn kinesis_source_passes_the_source_conformance_suite() {
    let moto = Moto::start();
    moto.boto("c('kinesis').create_stream(StreamName='suite', ShardCount=3)");
    for (k, v) in AWS_ENV {
        std::env::set_var(k, v);
    }
    let mut rig = KinesisRig { moto: &moto, dir: tempfile::tempdir().unwrap() };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(lakehose::testing::suites::source_suite(&mut rig));
}

/// Sixteen shards with a backlog and a pipeline slower than GetRecords:
/// what the shard readers fetch ahead is bounded by the read-ahead budget
/// (a quarter of `buffer.memory_limit`, at least two 10 MiB answers), not
/// by the shard count times GetRecords' answer size.
#[test]
fn kinesis_read_ahead_stays_within_the_memory_limit() {
    let moto = Moto::start();
    moto.boto("c('kinesis').create_stream(StreamName='wide', ShardCount=16)");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let (ids, bad) = gen(&input, &["--records", "120000", "--hours", "1", "--seed", "4"]);
    finish(produce(&moto.endpoint, "wide", &input, &["--batch", "500"]));
    let cfg = kinesis_config(dir.path(), "l", "wide", &moto.endpoint, &moto.endpoint, "");
    edit(&cfg, &[("max_records = 150\nmax_age = \"1s\"", "memory_limit = \"16MiB\"\nmax_age = \"2s\"")]);
    let d = start(&cfg);
    wait_for(&dir.path().join("lake"), &dir.path().join("errors"), ids.len() - bad.len(), bad.len(), 240);
    let peak = peak_rss_of(d.child.id());
    let (ok, _, err) = d.term();
    assert!(ok, "{err}");
    eprintln!("peak RSS reading 16 shards with a 16 MiB memory limit: {peak} KiB");
    // 16 MiB of buffers + 20 MiB read ahead + the process's own footprint
    // (60–75 MiB in a debug build); without the budget it peaks near 160 MiB
    assert!(peak < 130 * 1024, "peak RSS {peak} KiB");
}
