//! The sources' sections: `[source]` for Kinesis, `[kafka]` for Kafka, and
//! the `[lease]` table both share.
//!
//! Input: the raw sections. Output: a typed [`KinesisConfig`] or
//! [`KafkaConfig`]. Failure: [`ConfigError`] naming the section, the key
//! and the fix (secrets are named by the variable or file holding them,
//! never printed).

use super::{parse_duration, parse_size, ConfigError, Raw};
use crate::buffers::Limits;
use crate::source::kafka::KafkaConfig;
use crate::source::kinesis::KinesisConfig;
use crate::source::lease::LeaseTable;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

pub(super) fn kinesis_config(raw: &Raw, limits: &Limits, resolve: &dyn Fn(&str) -> PathBuf, err: &dyn Fn(&str, &str, String) -> ConfigError) -> Result<KinesisConfig, ConfigError> {
    use crate::source::kinesis::reader::StartPosition;
    use crate::source::kinesis::StreamRef;
    let src = &raw.source;
    let stream = src.stream.as_deref().filter(|s| !s.is_empty()).ok_or_else(|| err("source", "stream", "missing; kinesis sources need the stream name or ARN".into()))?;
    let start = match src.start.as_deref().unwrap_or("trim_horizon") {
        "trim_horizon" => StartPosition::TrimHorizon,
        "latest" => StartPosition::Latest,
        s => match s.strip_prefix("at_timestamp:").and_then(|t| crate::timefmt::TsFormat::parse("rfc3339").ok()?.parse_str(t)) {
            Some(ms) => StartPosition::AtTimestamp(ms),
            None => return Err(err("source", "start", format!("{s:?} is not a start position; use \"trim_horizon\", \"latest\" or \"at_timestamp:2026-11-21T00:00:00Z\""))),
        },
    };
    let (failover, worker_id) = lease_settings(raw, err)?;
    let leases = lease_table(raw, "lakehose-leases", src.endpoint.clone(), resolve, err)?;
    Ok(KinesisConfig {
        stream: StreamRef::parse(stream),
        start,
        endpoint: src.endpoint.clone(),
        region: src.region.clone(),
        leases,
        failover,
        worker_id,
        idle_poll: duration(err, "source", "poll_interval", src.poll_interval.as_ref(), Duration::from_secs(1), "10s")?,
        shard_sync: duration(err, "source", "shard_sync_interval", src.shard_sync_interval.as_ref(), Duration::from_secs(60), "10s")?,
        // a GetRecords answer holds up to 10 MiB
        read_ahead_bytes: read_ahead(limits, 10 << 20),
    })
}

/// What a source's readers may hold fetched and not yet converted: a
/// quarter of the buffers' memory budget, at least two fetches of `fetch` bytes.
fn read_ahead(limits: &Limits, fetch: usize) -> usize {
    (limits.memory_limit / 4).max(fetch * 2)
}

/// `section.key` as a duration, or `default` when absent; a bad value's
/// message shows `example`.
fn duration(err: &dyn Fn(&str, &str, String) -> ConfigError, section: &str, key: &str, v: Option<&String>, default: Duration, example: &str) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) => parse_duration(s).map_err(|m| err(section, key, format!("{m}; write e.g. \"{example}\""))),
    }
}

/// `host-pid-random`: unique per process, so a restarted process never
/// mistakes the leases of its previous life for live ones of its own.
fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "lakehose".into());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{host}-{}-{nanos:08x}", std::process::id())
}


#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKafka {
    bootstrap_servers: Option<toml::Value>,
    topics: Option<Vec<String>>,
    topic_regex: Option<String>,
    start: Option<String>,
    client_id: Option<String>,
    group_id: Option<String>,
    tls: Option<bool>,
    tls_ca_file: Option<String>,
    sasl_mechanism: Option<String>,
    sasl_username: Option<String>,
    sasl_password_env: Option<String>,
    sasl_password_file: Option<String>,
    region: Option<String>,
    fetch_max_bytes: Option<toml::Value>,
    poll_interval: Option<String>,
    partition_sync_interval: Option<String>,
    request_timeout: Option<String>,
}

/// `[lease]` failover (at least 1 s) and worker id (unique per process by default).
fn lease_settings(raw: &Raw, err: &dyn Fn(&str, &str, String) -> ConfigError) -> Result<(Duration, String), ConfigError> {
    let lease = raw.lease.as_ref();
    let failover = duration(err, "lease", "failover", lease.and_then(|l| l.failover.as_ref()), Duration::from_secs(10), "10s")?;
    if failover < Duration::from_secs(1) {
        return Err(err("lease", "failover", "must be at least 1s (leases are renewed every failover/4)".into()));
    }
    let worker_id = match lease.and_then(|l| l.worker_id.clone()) {
        Some(w) if !w.is_empty() => w,
        _ => default_worker_id(),
    };
    Ok((failover, worker_id))
}

/// `[lease]` kind: `dynamodb` (table, endpoint, region) or `sqlite` (path).
fn lease_table(raw: &Raw, default_table: &str, default_endpoint: Option<String>, resolve: &dyn Fn(&str) -> PathBuf, err: &dyn Fn(&str, &str, String) -> ConfigError) -> Result<LeaseTable, ConfigError> {
    let lease = raw.lease.as_ref();
    let get = |f: fn(&super::RawLease) -> &Option<String>| lease.and_then(|l| f(l).clone());
    match get(|l| &l.kind).as_deref().unwrap_or("dynamodb") {
        "dynamodb" => {
            if get(|l| &l.path).is_some() {
                return Err(err("lease", "path", "path is for kind = \"sqlite\"; DynamoDB leases take table, endpoint and region".into()));
            }
            Ok(LeaseTable::Dynamo {
                table: get(|l| &l.table).unwrap_or_else(|| default_table.into()),
                endpoint: get(|l| &l.endpoint).or(default_endpoint),
                region: get(|l| &l.region).or_else(|| raw.source.region.clone()),
            })
        }
        "sqlite" => {
            let path = get(|l| &l.path).ok_or_else(|| err("lease", "path", "kind = \"sqlite\" needs path, the lease file (processes sharing leases must see the same file on one host)".into()))?;
            if get(|l| &l.table).is_some() || get(|l| &l.endpoint).is_some() {
                return Err(err("lease", "table", "table and endpoint are for kind = \"dynamodb\"; SQLite leases take path".into()));
            }
            Ok(LeaseTable::Sqlite { path: resolve(&path) })
        }
        o => Err(err("lease", "kind", format!("{o:?} is not a lease table; use \"dynamodb\" (several hosts) or \"sqlite\" (one host)"))),
    }
}

pub(super) fn kafka_config(
    raw: &Raw,
    limits: &Limits,
    max_record_bytes: usize,
    resolve: &dyn Fn(&str) -> PathBuf,
    var: &dyn Fn(&str) -> Option<String>,
    err: &dyn Fn(&str, &str, String) -> ConfigError,
) -> Result<KafkaConfig, ConfigError> {
    use crate::source::kafka::client::{StartAt, Topics};
    use crate::source::kafka::sasl::{Sasl, ScramHash};
    let k = raw.kafka.as_ref().ok_or_else(|| err("kafka", "bootstrap_servers", "source.kind = \"kafka\" needs a [kafka] section with bootstrap_servers and topics".into()))?;
    let bootstrap: Vec<String> = match &k.bootstrap_servers {
        Some(toml::Value::String(s)) => s.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect(),
        Some(toml::Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    };
    if bootstrap.is_empty() || bootstrap.iter().any(|b| !b.contains(':')) {
        return Err(err("kafka", "bootstrap_servers", "missing or not host:port; write e.g. [\"broker-1:9092\", \"broker-2:9092\"]".into()));
    }
    let topics = match (&k.topics, &k.topic_regex) {
        (Some(t), None) if !t.is_empty() => Topics::Names(t.clone()),
        (None, Some(r)) => Topics::Regex(regex::Regex::new(&format!("^(?:{r})$")).map_err(|e| err("kafka", "topic_regex", format!("not a regular expression: {e}")))?),
        _ => return Err(err("kafka", "topics", "set exactly one of topics = [\"name\", ...] and topic_regex = \"events-.*\"".into())),
    };
    let start = match k.start.as_deref().unwrap_or("earliest") {
        "earliest" => StartAt::Earliest,
        "latest" => StartAt::Latest,
        s => match s.strip_prefix("timestamp:").and_then(|t| crate::timefmt::TsFormat::parse("rfc3339").ok()?.parse_str(t)) {
            Some(ms) => StartAt::Timestamp(ms),
            None => return Err(err("kafka", "start", format!("{s:?} is not a start position; use \"earliest\", \"latest\" or \"timestamp:2026-11-21T00:00:00Z\""))),
        },
    };
    let tls = match (k.tls.unwrap_or(false) || k.tls_ca_file.is_some(), &k.tls_ca_file) {
        (false, _) => None,
        (true, ca) => Some(std::sync::Arc::new(tls_client(ca.as_deref().map(resolve)).map_err(|m| err("kafka", "tls_ca_file", m))?)),
    };
    let sasl = match k.sasl_mechanism.as_deref() {
        None => None,
        Some("AWS_MSK_IAM") => {
            if tls.is_none() {
                return Err(err("kafka", "tls", "sasl_mechanism = \"AWS_MSK_IAM\" needs tls = true (MSK's IAM listener, port 9098, is TLS)".into()));
            }
            if k.sasl_username.is_some() || k.sasl_password_env.is_some() || k.sasl_password_file.is_some() {
                return Err(err("kafka", "sasl_username", "AWS_MSK_IAM takes no user or password: credentials come from the AWS credential chain (task role, instance profile, AWS_* variables)".into()));
            }
            let region = k.region.clone().or_else(|| var("AWS_REGION")).or_else(|| var("AWS_DEFAULT_REGION")).ok_or_else(|| err("kafka", "region", "AWS_MSK_IAM signs for the cluster's region: set region = \"eu-west-1\" or AWS_REGION".into()))?;
            Some(Sasl::MskIam(crate::source::kafka::msk_iam::MskIam::new(region)))
        }
        Some(m) => {
            let user = k.sasl_username.clone().ok_or_else(|| err("kafka", "sasl_username", format!("sasl_mechanism = {m:?} needs sasl_username")))?;
            let password = match (&k.sasl_password_env, &k.sasl_password_file) {
                (Some(name), None) => var(name).ok_or_else(|| err("kafka", "sasl_password_env", format!("environment variable {name} (the SASL password) is not set")))?,
                (None, Some(f)) => std::fs::read_to_string(resolve(f)).map(|s| s.trim_end_matches(['\n', '\r']).to_string()).map_err(|e| err("kafka", "sasl_password_file", format!("{f}: {e}")))?,
                _ => return Err(err("kafka", "sasl_password_env", "SASL needs exactly one of sasl_password_env (a variable name) and sasl_password_file; the password itself never goes in the config".into())),
            };
            Some(match m {
                "PLAIN" => Sasl::Plain { user, password },
                "SCRAM-SHA-256" => Sasl::Scram { hash: ScramHash::Sha256, user, password },
                "SCRAM-SHA-512" => Sasl::Scram { hash: ScramHash::Sha512, user, password },
                o => return Err(err("kafka", "sasl_mechanism", format!("{o:?} is not supported; use \"PLAIN\", \"SCRAM-SHA-256\", \"SCRAM-SHA-512\" or \"AWS_MSK_IAM\""))),
            })
        }
    };
    let fetch_bytes = match &k.fetch_max_bytes {
        None => 4 << 20,
        Some(v) => parse_size(v).map_err(|m| err("kafka", "fetch_max_bytes", format!("{m}; write e.g. \"4MiB\"")))?.clamp(64 << 10, 256 << 20),
    };
    let (failover, worker_id) = lease_settings(raw, err)?;
    let leases = lease_table(raw, "lakehose-kafka-leases", None, resolve, err)?;
    let request_timeout = duration(err, "kafka", "request_timeout", k.request_timeout.as_ref(), Duration::from_secs(30), "500ms")?;
    let settings = crate::source::kafka::wire::Settings {
        client_id: k.client_id.clone().unwrap_or_else(|| "lakehose".into()),
        tls,
        sasl,
        request_timeout,
        max_response_bytes: (fetch_bytes * 2).max(max_record_bytes * 2 + (1 << 20)).max(64 << 20),
    };
    Ok(KafkaConfig {
        bootstrap,
        topics,
        start,
        settings,
        group_id: match k.group_id.as_deref() {
            None => Some("lakehose".into()),
            Some("") => None,
            Some(g) => Some(g.to_string()),
        },
        meta: Default::default(),
        fetch_bytes: fetch_bytes as i32,
        read_ahead_bytes: read_ahead(limits, fetch_bytes),
        max_record_bytes,
        idle_poll: duration(err, "kafka", "poll_interval", k.poll_interval.as_ref(), Duration::from_millis(500), "500ms")?,
        partition_sync: duration(err, "kafka", "partition_sync_interval", k.partition_sync_interval.as_ref(), Duration::from_secs(30), "500ms")?,
        leases,
        failover,
        worker_id,
    })
}

/// A TLS client config trusting `ca` (PEM) or the system's roots.
fn tls_client(ca: Option<PathBuf>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            for c in CertificateDer::pem_file_iter(&path).map_err(|e| format!("{}: {e}", path.display()))? {
                roots.add(c.map_err(|e| format!("{}: {e}", path.display()))?).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("{}: no PEM certificate in it", path.display()));
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().map_err(|e| e.to_string())?.with_root_certificates(roots).with_no_client_auth())
}
