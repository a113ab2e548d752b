//! The HTTP front door with real clients: boto3's firehose client (SigV4,
//! Firehose's errors), urllib on /v1/events (basic auth, bearer tokens,
//! gzip, validation at the door), a full log (503 and per-record
//! failures), kill -9 under concurrent load (every acknowledged record
//! lands once), and forward mode into Kinesis on moto.

use super::*;

const KEY: &str = "AKIDDOORTEST";
const SECRET: &str = "door-test-secret";
const USER: &str = "ingest";
const PASSWORD: &str = "s3cret pass";
const TOKEN: &str = "tok-123456";

fn sha256_hex(s: &str) -> String {
    let out = run_ok(Command::new(py()).arg("-c").arg(format!("import hashlib; print(hashlib.sha256({s:?}.encode()).hexdigest())")));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A front-door config in `dir` (log in `dir/wal`, lake in `dir/lake`);
/// returns (config path, endpoint).
fn door_config(dir: &Path, source: &str, extra_http: &str, extra: &str) -> (PathBuf, String) {
    let port = free_port();
    let cfg = dir.join("door.toml");
    std::fs::write(&cfg, format!(r#"
{source}

[http]
listen = "127.0.0.1:{port}"
delivery_stream = "events"
{extra_http}

[[http.keys]]
access_key_id = "{KEY}"
secret_access_key = "{SECRET}"

[[http.users]]
name = "{USER}"
password_sha256 = "{}"

[[http.tokens]]
sha256 = "{}"

[table]
schema = "{}"

[sink]
url = "lake"
errors = "errors"

[buffer]
max_age = "1s"
{extra}
"#, sha256_hex(PASSWORD), sha256_hex(TOKEN), root().join("schemas/events.toml").display())).unwrap();
    (cfg, format!("http://127.0.0.1:{port}"))
}

fn local_log(extra: &str) -> String {
    format!("[source]\nkind = \"http\"\ndir = \"wal\"\n{extra}")
}

fn client(endpoint: &str, args: &[&str]) -> Value {
    let out = run_ok(Command::new(py()).arg(root().join("tests/py/firehose_client.py")).arg(endpoint).args(args));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn wait_port(endpoint: &str) {
    let addr = endpoint.trim_start_matches("http://");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "the door did not open on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ids_in(lake: &Path) -> Vec<String> {
    let mut ids = strs(&check(&["--lake", lake.to_str().unwrap()])["ids"]);
    ids.sort();
    ids
}

/// boto3's firehose client, unchanged but for endpoint_url: PutRecord and
/// PutRecordBatch land every record; a wrong secret, an unknown stream, 501
/// records, a call over 4 MiB and a record over 1,000 KiB get Firehose's
/// errors; DescribeDeliveryStream answers; /v1/events takes basic auth and
/// bearer tokens only, gzip too, and says which records it refused.
#[test]
fn direct_put_and_events_speak_firehose_and_land() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, endpoint) = door_config(dir.path(), &local_log(""), "", "");
    let d = Daemon::start(&cfg);
    wait_port(&endpoint);
    let r = client(&endpoint, &[KEY, SECRET, "errors"]);
    assert_eq!(r["batch_failed"], 0);
    assert_eq!(r["batch_ids"], 99, "a distinct RecordId per record");
    assert_eq!(r["wrong_secret"], "InvalidSignatureException");
    assert_eq!(r["unknown_stream"], "ResourceNotFoundException");
    assert_eq!(r["records_501"], "InvalidArgumentException");
    assert_eq!(r["call_over_4mib"], "InvalidArgumentException");
    assert_eq!(r["record_1001kib"], "InvalidArgumentException");
    assert_eq!(r["describe"], serde_json::json!(["events", "ACTIVE", "DirectPut"]));
    assert_eq!(r["describe_unknown"], "ResourceNotFoundException");
    let e = client(&endpoint, &["-", "-", "events", USER, PASSWORD, TOKEN]);
    for k in ["none", "wrong_password", "unknown_user", "wrong_token"] {
        assert_eq!(e[k][0], 401, "{k}: {}", e[k]);
    }
    assert_eq!(e["ndjson"], serde_json::json!([200, {"accepted": 10}]));
    assert_eq!(e["array_bearer"], serde_json::json!([200, {"accepted": 5}]));
    assert_eq!(e["one_object"], serde_json::json!([200, {"accepted": 1}]));
    assert_eq!(e["gzip"], serde_json::json!([200, {"accepted": 7}]));
    assert_eq!(e["mixed"][0], 207, "{}", e["mixed"]);
    assert_eq!(e["mixed"][1]["accepted"], 2);
    let rejected: Vec<u64> = e["mixed"][1]["rejected"].as_array().unwrap().iter().map(|r| r["index"].as_u64().unwrap()).collect();
    assert_eq!(rejected, [1, 2], "{}", e["mixed"]);
    assert!(e["mixed"][1]["rejected"][0]["reason"].as_str().unwrap().contains("column 'event_type': required field is missing"), "{}", e["mixed"]);
    assert_eq!(e["all_bad"][0], 400);
    assert_eq!(e["not_json_array"][0], 400);
    let mut want: Vec<String> = (0..100).map(|i| format!("err-ok-{i}")).collect();
    want.extend((0..10).map(|i| format!("ev-nd-{i}")));
    want.extend((0..5).map(|i| format!("ev-arr-{i}")));
    want.extend((0..7).map(|i| format!("ev-gz-{i}")));
    want.extend(["ev-one-0".to_string(), "ev-mix-0".to_string(), "ev-mix-3".to_string()]);
    want.sort();
    let lake = dir.path().join("lake");
    let deadline = Instant::now() + Duration::from_secs(30);
    while ids_in(&lake) != want {
        assert!(Instant::now() < deadline, "lake: {:?}", ids_in(&lake));
        std::thread::sleep(Duration::from_millis(300));
    }
    let (ok, _, log) = d.term();
    assert!(ok, "{log}");
    assert!(!log.contains(SECRET) && !log.contains(PASSWORD) && !log.contains("err-ok-"), "no secrets or record contents in the log");
}

/// A log that cannot take more answers 503 / ServiceUnavailableException
/// (for a whole call, or per record past the room in a batch) and loses
/// nothing it acknowledged; as the lake catches up and segments are
/// deleted, it takes records again.
#[test]
fn a_full_log_answers_503_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    // a 512 KiB log and buffers that hold records for 3 s: the log fills
    let metrics = free_port();
    let (cfg, endpoint) = door_config(dir.path(), &local_log("max_log_size = \"512KiB\""), "", &format!("[metrics]\nlisten = \"127.0.0.1:{metrics}\""));
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap().replace("max_age = \"1s\"", "max_age = \"3s\"")).unwrap();
    let d = Daemon::start(&cfg);
    wait_port(&endpoint);
    let r = client(&endpoint, &[KEY, SECRET, "load", "4", "20", "full"]);
    let acked = strs(&r["acked"]);
    let refused = strs(&r["refused"]);
    assert!(!refused.is_empty(), "the log filled up: {} acked", acked.len());
    let (status, why) = super::glue::http_get(metrics, "/readyz");
    assert_eq!(status, 503, "not ready while the log is full: {why}");
    assert!(why.contains("log is full"), "{why}");
    assert!(acked.len() >= 1000, "{} acked before it was full", acked.len());
    assert!(strs(&r["unsure"]).is_empty());
    // the lake catches up, segments go, room comes back
    std::thread::sleep(Duration::from_secs(5));
    let again = client(&endpoint, &[KEY, SECRET, "load", "1", "2", "later"]);
    assert_eq!(strs(&again["acked"]).len(), 100, "room again once segments were committed");
    let (ok, _, log) = d.term();
    assert!(ok, "{log}");
    let ids = ids_in(&dir.path().join("lake"));
    let mut want: Vec<String> = acked.into_iter().chain(strs(&again["acked"])).collect();
    want.sort();
    assert_eq!(ids, want, "every acknowledged record once, no refused one");
}

/// kill -9 while 8 clients send: after a restart, every acknowledged
/// record is in the lake exactly once; a record whose answer never came is
/// there at most once.
#[test]
fn kill_9_under_load_keeps_every_acknowledged_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = free_port();
    let (cfg, endpoint) = door_config(dir.path(), &local_log(""), "", &format!("[metrics]\nlisten = \"127.0.0.1:{metrics}\""));
    let mut acked = Vec::new();
    let mut unsure = Vec::new();
    for round in 0..3 {
        let d = Daemon::start(&cfg);
        wait_port(&endpoint);
        let load = Command::new(py()).arg(root().join("tests/py/firehose_client.py")).arg(&endpoint).args([KEY, SECRET, "load", "8", "40", &format!("k{round}")]).stdout(Stdio::piped()).spawn().unwrap();
        // kill while the clients are sending: after some were acknowledged
        super::glue::wait_metric(metrics, "lakehose_http_records_total", 1000.0 + 1000.0 * round as f64, 60);
        d.kill9();
        let out = load.wait_with_output().unwrap();
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        acked.extend(strs(&r["acked"]));
        unsure.extend(strs(&r["unsure"]));
    }
    assert!(acked.len() > 1000 && !unsure.is_empty(), "{} acked, {} unsure: the kills fell under load", acked.len(), unsure.len());
    let d = Daemon::start(&cfg);
    wait_port(&endpoint);
    std::thread::sleep(Duration::from_secs(3));
    let (ok, _, log) = d.term();
    assert!(ok, "{log}");
    let ids = ids_in(&dir.path().join("lake"));
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for i in &ids {
        *seen.entry(i.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "duplicates: {twice:?}");
    let lost: Vec<_> = acked.iter().filter(|a| !seen.contains_key(a.as_str())).collect();
    assert!(lost.is_empty(), "{} acknowledged records lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
    let extra = ids.len() - acked.len();
    assert!(extra <= unsure.len(), "only unacknowledged records may be there besides");
}

/// Forward mode: with `source.kind = "kinesis"`, the door puts what it
/// accepts to the stream (acknowledging once Kinesis has it) and the
/// Kinesis source converts it: boto3's records reach the lake through moto.
#[test]
fn forward_mode_puts_to_kinesis_and_the_records_land() {
    let moto = Moto::start();
    moto.boto("c('kinesis').create_stream(StreamName='fwd', ShardCount=2)\nimport time; time.sleep(0.5)");
    let dir = tempfile::tempdir().unwrap();
    let source = format!("[source]\nkind = \"kinesis\"\nstream = \"fwd\"\nendpoint = \"{ep}\"\npoll_interval = \"200ms\"\n\n[lease]\ntable = \"leases-fwd\"\nfailover = \"2s\"", ep = moto.endpoint);
    let (cfg, endpoint) = door_config(dir.path(), &source, "", "");
    let d = Daemon::new(bin().envs([("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_REGION", "us-east-1")]).args(["run", "--config"]).arg(&cfg).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap());
    wait_port(&endpoint);
    let r = client(&endpoint, &[KEY, SECRET, "load", "2", "3", "fwd"]);
    let mut acked = strs(&r["acked"]);
    assert_eq!(acked.len(), 300, "{r}");
    let in_stream: Value = serde_json::from_str(&moto.boto(r#"
k = c('kinesis')
n = 0
for s in k.list_shards(StreamName='fwd')['Shards']:
    it = k.get_shard_iterator(StreamName='fwd', ShardId=s['ShardId'], ShardIteratorType='TRIM_HORIZON')['ShardIterator']
    n += len(k.get_records(ShardIterator=it, Limit=10000)['Records'])
print(n)"#)).unwrap();
    assert_eq!(in_stream, 300, "acknowledged records are in the stream");
    acked.sort();
    let lake = dir.path().join("lake");
    let deadline = Instant::now() + Duration::from_secs(60);
    while ids_in(&lake) != acked {
        assert!(Instant::now() < deadline, "lake: {} of 300", ids_in(&lake).len());
        std::thread::sleep(Duration::from_millis(500));
    }
    let (ok, _, log) = d.term();
    assert!(ok, "{log}");
}

/// With a certificate, the door speaks HTTPS only: boto3 lands records over
/// TLS (verifying the certificate), and plain HTTP gets no answer.
#[test]
fn tls_is_served_when_a_certificate_is_set() {
    let dir = tempfile::tempdir().unwrap();
    run_ok(Command::new("openssl").args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout").arg(dir.path().join("key.pem")).arg("-out").arg(dir.path().join("cert.pem")));
    let (cfg, endpoint) = door_config(dir.path(), &local_log(""), "tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"", "");
    let d = Daemon::start(&cfg);
    wait_port(&endpoint);
    let https = endpoint.replace("http://", "https://");
    let out = run_ok(Command::new(py()).arg("-c").arg(format!(r#"
import boto3, json
f = boto3.client('firehose', endpoint_url='{https}', region_name='us-east-1', aws_access_key_id='{KEY}', aws_secret_access_key='{SECRET}', verify='{}')
r = f.put_record_batch(DeliveryStreamName='events', Records=[{{'Data': json.dumps({{'event_id': f'tls-{{i}}', 'timestamp': '2026-12-06T10:00:00Z', 'event_type': 'view'}}).encode()}} for i in range(20)])
print(r['FailedPutCount'])"#, dir.path().join("cert.pem").display())));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    let plain = Command::new(py()).arg(root().join("tests/py/firehose_client.py")).arg(&endpoint).args([KEY, SECRET, "load", "1", "1", "plain"]).output().unwrap();
    let r: Value = serde_json::from_slice(&plain.stdout).unwrap();
    assert!(strs(&r["acked"]).is_empty(), "plain HTTP is not answered");
    let lake = dir.path().join("lake");
    let deadline = Instant::now() + Duration::from_secs(30);
    while ids_in(&lake).len() < 20 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(300));
    }
    let (ok, _, log) = d.term();
    assert!(ok, "{log}");
}

/// `invalid_records = "accept"` (Firehose's behaviour): records the schema
/// refuses are stored all the same and land in the error prefix; the
/// answer is 200 and still lists them by index.
#[test]
fn events_accept_mode_keeps_refused_records_for_the_error_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, endpoint) = door_config(dir.path(), &local_log(""), "invalid_records = \"accept\"", "");
    let d = Daemon::start(&cfg);
    wait_port(&endpoint);
    let e = client(&endpoint, &["-", "-", "events", USER, PASSWORD, TOKEN]);
    assert_eq!(e["mixed"][0], 200, "{}", e["mixed"]);
    assert_eq!(e["mixed"][1]["accepted"], 4);
    let invalid: Vec<u64> = e["mixed"][1]["invalid"].as_array().unwrap().iter().map(|r| r["index"].as_u64().unwrap()).collect();
    assert_eq!(invalid, [1, 2]);
    assert_eq!(e["all_bad"], serde_json::json!([200, {"accepted": 2, "invalid": e["all_bad"][1]["invalid"]}]));
    let lake = dir.path().join("lake");
    let errors = dir.path().join("errors");
    let f = wait_for(&lake, &errors, 25, 4, 30);
    let codes: Vec<&str> = f["errors"].as_array().unwrap().iter().map(|e| e["errorCode"].as_str().unwrap()).collect();
    assert_eq!(codes.iter().filter(|c| **c == "DataFormatConversion.MalformedData").count(), 2, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == "DataFormatConversion.ParseError").count(), 2, "{codes:?}");
    let (ok, _, log) = d.term();
    assert!(ok, "{log}");
}
