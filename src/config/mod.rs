//! The daemon's config file (`lakehose.toml`), with environment overrides.
//!
//! Input: TOML text (DESIGN.md §1) plus `LAKEHOSE_<SECTION>_<KEY>` variables,
//! which replace the file's value of that key. Output: a validated
//! [`Config`]: sizes in bytes, durations, paths resolved against the config
//! file's directory. Failure: [`ConfigError`] naming the file, line (when
//! the key is in the file), key and the fix; the CLI exits with code 2.

mod sources;
mod tables;

use crate::buffers::Limits;
use serde::Deserialize;
pub use tables::{RoutingConfig, TableConfig};
use std::path::{Path, PathBuf};
use std::time::Duration;

const SECTIONS: &[&str] = &["source", "lease", "table", "sink", "buffer", "catalog", "metrics", "http", "routing"];

#[derive(Debug, thiserror::Error)]
#[error("{file}{}: key `{key}`: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    #[serde(default)]
    source: RawSource,
    lease: Option<RawLease>,
    table: Option<RawTable>,
    sink: Option<RawSink>,
    #[serde(default)]
    buffer: RawBuffer,
    #[serde(default)]
    catalog: RawCatalog,
    metrics: Option<RawMetrics>,
    http: Option<RawHttp>,
    kafka: Option<sources::RawKafka>,
    routing: Option<tables::RawRouting>,
    #[serde(default)]
    tables: Vec<tables::RawTableEntry>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<String>,
    delivery_stream: Option<String>,
    delivery_streams: Option<Vec<String>>,
    region: Option<String>,
    auth: Option<String>,
    invalid_records: Option<String>,
    max_request_size: Option<toml::Value>,
    max_inflight_requests: Option<i64>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    #[serde(default)]
    keys: Vec<RawKey>,
    #[serde(default)]
    users: Vec<RawUser>,
    #[serde(default)]
    tokens: Vec<RawToken>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    access_key_id: String,
    secret_access_key: Option<String>,
    secret_env: Option<String>,
    secret_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    password_sha256: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    sha256: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<String>,
    emf: Option<bool>,
    emf_interval: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSource {
    kind: Option<String>,
    stream: Option<String>,
    start: Option<String>,
    endpoint: Option<String>,
    dir: Option<String>,
    state_dir: Option<String>,
    max_record_size: Option<toml::Value>,
    poll_interval: Option<String>,
    region: Option<String>,
    shard_sync_interval: Option<String>,
    max_log_size: Option<toml::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLease {
    kind: Option<String>,
    path: Option<String>,
    table: Option<String>,
    endpoint: Option<String>,
    region: Option<String>,
    failover: Option<String>,
    worker_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    schema: String,
    /// "hive" (default) or "iceberg".
    format: Option<String>,
    /// The Iceberg table's name (default: the schema file's `table`).
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    url: Option<String>,
    raw_backup: Option<String>,
    errors: Option<String>,
    kms_key_id: Option<String>,
    endpoint: Option<String>,
    region: Option<String>,
    row_group_size: Option<toml::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBuffer {
    max_bytes: Option<toml::Value>,
    max_records: Option<i64>,
    max_age: Option<String>,
    memory_limit: Option<toml::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    kind: Option<String>,
    database: Option<String>,
    /// Iceberg SQL catalog: the SQLite file.
    uri: Option<String>,
    /// Iceberg: where new tables are created.
    warehouse: Option<String>,
    /// Iceberg SQL catalog: the catalog's name in the file.
    name: Option<String>,
    partition_projection: Option<bool>,
    endpoint: Option<String>,
    region: Option<String>,
    schema_poll: Option<String>,
}

#[derive(Debug, Clone)]
pub enum CatalogConfig {
    None,
    Glue { database: String, projection: bool, endpoint: Option<String>, region: Option<String> },
    /// `[table] format = "iceberg"`: an Iceberg table in a SQL or Glue catalog.
    Iceberg(crate::iceberg::IcebergConfig),
}

#[derive(Debug, Clone, Default)]
pub struct MetricsConfig {
    /// `/metrics`, `/healthz`, `/readyz` on this address.
    pub listen: Option<std::net::SocketAddr>,
    /// CloudWatch Embedded Metric Format lines on stdout.
    pub emf: bool,
    pub emf_interval: Duration,
}

#[derive(Debug, Clone)]
pub enum SourceConfig {
    Spool { dir: PathBuf, state_dir: Option<PathBuf>, poll: Duration },
    Stdin,
    Kinesis(crate::source::kinesis::KinesisConfig),
    Kafka(Box<crate::source::kafka::KafkaConfig>),
    /// The front door's write-ahead log in `dir`, at most `max_log_bytes` unread.
    Http { dir: PathBuf, max_log_bytes: u64 },
}

#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub url: String,
    pub raw_backup: Option<String>,
    pub errors: String,
    pub store: crate::store::StoreOptions,
    pub row_group_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub file: String,
    pub source: SourceConfig,
    pub schema_path: PathBuf,
    pub sink: SinkConfig,
    pub limits: Limits,
    pub max_record_bytes: usize,
    pub catalog: CatalogConfig,
    pub metrics: MetricsConfig,
    /// How often the schema file is checked for edits (SIGHUP also reloads).
    pub schema_poll: Duration,
    /// The HTTP front door, when `[http]` is set.
    pub http: Option<crate::source::http::HttpConfig>,
    /// Several tables (`[routing]` and `[[tables]]`); then `schema_path`
    /// and `sink.url` are the first table's and `sink.errors` the shared
    /// error prefix.
    pub routing: Option<RoutingConfig>,
}

/// Parses `128MiB`, `1GiB`, `500KB`, `1000KiB` or a plain byte count.
pub fn parse_size(v: &toml::Value) -> Result<usize, String> {
    match v {
        toml::Value::Integer(i) if *i > 0 => Ok(*i as usize),
        toml::Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit() && c != '_').unwrap_or(s.len());
            let n: usize = s[..split].replace('_', "").parse().map_err(|_| format!("{s:?} is not a size"))?;
            let mult = match s[split..].trim().to_ascii_lowercase().as_str() {
                "" | "b" => 1,
                "kib" => 1 << 10,
                "mib" => 1 << 20,
                "gib" => 1 << 30,
                "kb" => 1000,
                "mb" => 1_000_000,
                "gb" => 1_000_000_000,
                u => return Err(format!("unknown unit {u:?} in {s:?}")),
            };
            if n == 0 {
                return Err("size must be positive".into());
            }
            Ok(n * mult)
        }
        other => Err(format!("{other} is not a size")),
    }
}

/// Parses `60s`, `5m`, `250ms`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..split].parse().map_err(|_| format!("{s:?} is not a duration"))?;
    Ok(match &s[split..] {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86400),
        u => return Err(format!("unknown unit {u:?} in {s:?}")),
    })
}

/// Line of `key` inside `[section]` of the file text, if it is there.
fn locate(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut cur = String::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            cur = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        } else if cur == section {
            if let Some((k, _)) = t.split_once('=') {
                if k.trim() == key {
                    return Some(i + 1);
                }
            }
        }
    }
    None
}

/// Applies `LAKEHOSE_<SECTION>_<KEY>` variables to the parsed table.
fn apply_env(doc: &mut toml::Table, vars: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut applied = Vec::new();
    for (k, v) in vars {
        let Some(rest) = k.strip_prefix("LAKEHOSE_") else { continue };
        let rest = rest.to_ascii_lowercase();
        let Some(section) = SECTIONS.iter().find(|s| rest.starts_with(&format!("{s}_"))) else { continue };
        let key = rest[section.len() + 1..].to_string();
        let value = toml::from_str::<toml::Table>(&format!("v = {v}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(v));
        let sec = doc.entry(section.to_string()).or_insert_with(|| toml::Value::Table(Default::default()));
        if let toml::Value::Table(t) = sec {
            t.insert(key.clone(), value);
        }
        applied.push((section.to_string(), key));
    }
    applied
}

impl Config {
    /// Reads the config file, or, when `LAKEHOSE_CONFIG_TOML` is set (an ECS
    /// secret from SSM, say), that text in its place; relative paths still
    /// resolve against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        if let Ok(text) = std::env::var("LAKEHOSE_CONFIG_TOML") {
            let file = format!("{} (LAKEHOSE_CONFIG_TOML)", path.display());
            let base = path.parent().unwrap_or(Path::new("")).join("lakehose.toml");
            let mut c = Config::parse(&base.display().to_string(), &text, std::env::vars().filter(|(k, _)| k != "LAKEHOSE_CONFIG_TOML"))
                .map_err(|e| ConfigError { file: file.clone(), ..e })?;
            c.file = file;
            return Ok(c);
        }
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: None,
            key: "-".into(),
            message: format!("cannot read config file: {e}"),
        })?;
        Config::parse(&file, &text, std::env::vars())
    }

    pub fn parse(file: &str, text: &str, env: impl Iterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let base = Path::new(file).parent().map(Path::to_path_buf).unwrap_or_default();
        let mut doc: toml::Table = toml::from_str(text).map_err(|e| ConfigError {
            file: file.to_string(),
            line: e.span().map(|s| crate::schema::line_of(text, s.start)),
            key: "-".into(),
            message: e.message().to_string(),
        })?;
        let env: Vec<(String, String)> = env.collect();
        let overridden = apply_env(&mut doc, env.iter().cloned());
        let var = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let err = |section: &str, key: &str, message: String| {
            let env_name = format!("LAKEHOSE_{}_{}", section.to_uppercase(), key.to_uppercase());
            let from_env = overridden.iter().any(|(s, k)| s == section && k == key);
            ConfigError {
                file: if from_env { format!("{file} (overridden by {env_name})") } else { file.to_string() },
                line: if from_env { None } else { locate(text, section, key) },
                key: format!("{section}.{key}"),
                message,
            }
        };
        let raw: Raw = toml::Value::Table(doc).try_into().map_err(|e: toml::de::Error| {
            let msg = e.message().to_string();
            let key = quoted_field(&msg).unwrap_or_else(|| "-".into());
            ConfigError {
                file: file.to_string(),
                line: text.lines().position(|l| l.split('=').next().map(str::trim) == Some(key.as_str())).map(|i| i + 1),
                key,
                message: format!("{msg}; see the config reference in README.md"),
            }
        })?;
        let resolve = |p: &str| if Path::new(p).is_absolute() { PathBuf::from(p) } else { base.join(p) };
        let resolve_url = |u: &str| {
            if u.contains("://") {
                u.to_string()
            } else {
                let p = resolve(u).display().to_string();
                if p.ends_with('/') { p } else { format!("{p}/") }
            }
        };

        let max_record_bytes = match &raw.source.max_record_size {
            None => crate::decode::DEFAULT_MAX_RECORD_BYTES,
            Some(v) => parse_size(v).map_err(|m| err("source", "max_record_size", format!("{m}; write e.g. \"1000KiB\"")))?,
        };
        let mut limits = Limits::default();
        if let Some(v) = &raw.buffer.max_bytes {
            limits.max_bytes = parse_size(v).map_err(|m| err("buffer", "max_bytes", format!("{m}; write e.g. \"128MiB\"")))?;
            if limits.max_bytes > 1 << 30 {
                return Err(err("buffer", "max_bytes", "must be at most 1GiB (one file's columns must stay under 2 GiB)".into()));
            }
        }
        if let Some(n) = raw.buffer.max_records {
            if n <= 0 {
                return Err(err("buffer", "max_records", "must be a positive number of records".into()));
            }
            limits.max_records = n as usize;
        }
        if let Some(s) = &raw.buffer.max_age {
            limits.max_age = parse_duration(s).map_err(|m| err("buffer", "max_age", format!("{m}; write e.g. \"60s\"")))?;
        }
        if let Some(v) = &raw.buffer.memory_limit {
            limits.memory_limit = parse_size(v).map_err(|m| err("buffer", "memory_limit", format!("{m}; write e.g. \"1GiB\"")))?;
        }
        if let Err(m) = limits.check_record_size(max_record_bytes) {
            return Err(err("source", "max_record_size", m));
        }
        let source = match raw.source.kind.as_deref() {
            Some("spool") => {
                let dir = raw.source.dir.as_deref().ok_or_else(|| err("source", "dir", "spool sources need `dir`, the directory of NDJSON segment files".into()))?;
                let poll = match &raw.source.poll_interval {
                    None => Duration::from_millis(200),
                    Some(s) => parse_duration(s).map_err(|m| err("source", "poll_interval", format!("{m}; write e.g. \"200ms\"")))?,
                };
                SourceConfig::Spool { dir: resolve(dir), state_dir: raw.source.state_dir.as_deref().map(resolve), poll }
            }
            Some("stdin") => SourceConfig::Stdin,
            Some("kinesis") => SourceConfig::Kinesis(sources::kinesis_config(&raw, &limits, &resolve, &err)?),
            Some("kafka") => SourceConfig::Kafka(Box::new(sources::kafka_config(&raw, &limits, max_record_bytes, &resolve, &var, &err)?)),
            Some("http") => {
                let dir = raw.source.dir.as_deref().ok_or_else(|| err("source", "dir", "http sources need `dir`, the directory of the front door's write-ahead log".into()))?;
                let max_log_bytes = match &raw.source.max_log_size {
                    None => 1 << 30,
                    Some(v) => parse_size(v).map_err(|m| err("source", "max_log_size", format!("{m}; write e.g. \"1GiB\"")))? as u64,
                };
                SourceConfig::Http { dir: resolve(dir), max_log_bytes }
            }
            Some(other) => return Err(err("source", "kind", format!("{other:?} is not a source; use \"spool\", \"stdin\", \"kinesis\", \"kafka\" or \"http\""))),
            None => return Err(err("source", "kind", "missing; set kind = \"spool\" (with dir), \"stdin\", \"kinesis\", \"kafka\" or \"http\"".into())),
        };
        let http = match &raw.http {
            None if matches!(source, SourceConfig::Http { .. }) => return Err(err("http", "listen", "source.kind = \"http\" needs an [http] section with listen and the credentials callers use".into())),
            None => None,
            Some(_) if !matches!(source, SourceConfig::Http { .. } | SourceConfig::Kinesis(_)) => {
                return Err(err("source", "kind", "[http] writes to the front door's log (kind = \"http\") or forwards to a Kinesis stream (kind = \"kinesis\")".into()))
            }
            Some(h) => Some(http_config(h, &resolve, &var, &err)?),
        };
        let iceberg = match raw.table.as_ref().and_then(|t| t.format.as_deref()) {
            None | Some("hive") => false,
            Some("iceberg") => true,
            Some(o) => return Err(err("table", "format", format!("{o:?} is not a table format; use \"hive\" (Parquet in Hive-style prefixes) or \"iceberg\""))),
        };
        let routing = tables::routing(file, text, raw.routing.as_ref(), &raw.tables, &resolve, &resolve_url)?;
        let sink = raw.sink.as_ref().ok_or_else(|| err("sink", "url", "missing [sink] section; set url and errors".into()))?;
        let (schema_path, url) = match &routing {
            Some(r) => {
                if raw.table.is_some() {
                    return Err(err("table", "schema", "with [[tables]], each table names its schema: remove [table]".into()));
                }
                if sink.url.is_some() {
                    return Err(err("sink", "url", "with [[tables]], each table names its url: remove [sink] url (errors is the shared error prefix)".into()));
                }
                (r.tables[0].schema_path.clone(), r.tables[0].url.clone())
            }
            None => {
                let schema = raw.table.as_ref().ok_or_else(|| err("table", "schema", "missing; set [table] schema = \"schemas/<table>.toml\"".into()))?;
                let url = match sink.url.as_deref() {
                    Some(_) if iceberg => return Err(err("sink", "url", "an Iceberg table's files go under its location in the catalog's warehouse: remove url (set [catalog] warehouse)".into())),
                    Some(u) => resolve_url(u),
                    None if iceberg => String::new(),
                    None => return Err(err("sink", "url", "missing; set the lake URL, e.g. \"s3://bucket/events/\" or \"file:///var/lib/lakehose/lake/\"".into())),
                };
                (resolve(&schema.schema), url)
            }
        };
        let url = url.as_str();
        let errors = sink.errors.as_deref().ok_or_else(|| err("sink", "errors", "missing; bad records need a place, e.g. \"s3://bucket/errors/events/\"".into()))?;
        for (key, u) in [("url", Some(url)), ("errors", Some(errors)), ("raw_backup", sink.raw_backup.as_deref())] {
            if let Some(u) = u {
                if u.contains("://") && !(u.starts_with("s3://") || u.starts_with("file:///")) {
                    return Err(err("sink", key, format!("{u:?} is not supported; use s3://bucket/prefix/ or file:///absolute/path/")));
                }
            }
        }
        let row_group_bytes = match &sink.row_group_size {
            None => 128 << 20,
            Some(v) => parse_size(v).map_err(|m| err("sink", "row_group_size", format!("{m}; write e.g. \"128MiB\"")))?,
        };

        let catalog = match raw.catalog.kind.as_deref() {
            _ if iceberg => tables::iceberg_catalog(&raw, &resolve, &err)?,
            Some("sql") => return Err(err("catalog", "kind", "the SQL catalog holds Iceberg tables: set [table] format = \"iceberg\"".into())),
            None | Some("none") => CatalogConfig::None,
            Some("glue") => CatalogConfig::Glue {
                database: raw.catalog.database.clone().filter(|d| !d.is_empty()).ok_or_else(|| err("catalog", "database", "missing; Glue needs the database to put the table in, e.g. database = \"analytics\"".into()))?,
                projection: raw.catalog.partition_projection.unwrap_or(false),
                endpoint: raw.catalog.endpoint.clone(),
                region: raw.catalog.region.clone(),
            },
            Some(o) => return Err(err("catalog", "kind", format!("{o:?} is not a catalog; use \"glue\" or \"none\" (\"sql\" with format = \"iceberg\")"))),
        };
        if iceberg && routing.is_some() {
            return Err(err("routing", "column", "routing to Iceberg tables is not supported yet: route to Hive-style tables, or run one lakehose per Iceberg table".into()));
        }
        if iceberg && raw.buffer.max_age.is_none() {
            // the commit interval: every open buffer is committed together when one is due
            limits.max_age = Duration::from_secs(15);
        }
        let schema_poll = match &raw.catalog.schema_poll {
            None => Duration::from_secs(2),
            Some(s) => parse_duration(s).map_err(|m| err("catalog", "schema_poll", format!("{m}; write e.g. \"2s\"")))?,
        };
        let mut metrics = MetricsConfig { listen: None, emf: false, emf_interval: Duration::from_secs(60) };
        if let Some(m) = &raw.metrics {
            if let Some(l) = &m.listen {
                metrics.listen = Some(l.parse().map_err(|_| err("metrics", "listen", format!("{l:?} is not an address; write e.g. \"0.0.0.0:9090\"")))?);
            }
            metrics.emf = m.emf.unwrap_or(false);
            if let Some(i) = &m.emf_interval {
                metrics.emf_interval = parse_duration(i).map_err(|e| err("metrics", "emf_interval", format!("{e}; write e.g. \"60s\"")))?;
            }
        }
        Ok(Config {
            file: file.to_string(),
            source,
            schema_path,
            sink: SinkConfig {
                url: url.to_string(),
                raw_backup: sink.raw_backup.as_deref().map(resolve_url),
                errors: resolve_url(errors),
                store: crate::store::StoreOptions {
                    endpoint: sink.endpoint.clone(),
                    region: sink.region.clone(),
                    kms_key_id: sink.kms_key_id.clone(),
                },
                row_group_bytes,
            },
            limits,
            max_record_bytes,
            catalog,
            metrics,
            schema_poll,
            http,
            routing,
        })
    }
}

/// The `[http]` section; `var` reads the environment (secrets named by `secret_env`).
fn http_config(h: &RawHttp, resolve: &dyn Fn(&str) -> PathBuf, var: &dyn Fn(&str) -> Option<String>, err: &dyn Fn(&str, &str, String) -> ConfigError) -> Result<crate::source::http::HttpConfig, ConfigError> {
    use crate::source::http::auth::{parse_hash, AuthConfig, Secret};
    use crate::source::http::{HttpConfig, InvalidRecords};
    let listen = h.listen.as_deref().ok_or_else(|| err("http", "listen", "missing; set the address to listen on, e.g. \"0.0.0.0:4573\"".into()))?;
    let listen = listen.parse().map_err(|_| err("http", "listen", format!("{listen:?} is not an address; write e.g. \"0.0.0.0:4573\"")))?;
    let mut streams: Vec<String> = h.delivery_streams.clone().unwrap_or_default();
    streams.extend(h.delivery_stream.clone());
    if streams.is_empty() {
        return Err(err("http", "delivery_stream", "missing; name the delivery stream producers send to, e.g. delivery_stream = \"events\"".into()));
    }
    let mut auth = AuthConfig::default();
    match h.auth.as_deref() {
        None | Some("keys") => {}
        Some("none") => auth.none = true,
        Some(o) => return Err(err("http", "auth", format!("{o:?} is not an auth mode; leave it out (credentials from [[http.keys]], [[http.users]], [[http.tokens]]) or set \"none\""))),
    }
    for k in &h.keys {
        let secret = match (&k.secret_access_key, &k.secret_env, &k.secret_file) {
            (Some(s), None, None) => s.clone(),
            (None, Some(name), None) => var(name).ok_or_else(|| err("http.keys", "secret_env", format!("environment variable {name} (the secret of access key {}) is not set", k.access_key_id)))?,
            (None, None, Some(f)) => std::fs::read_to_string(resolve(f)).map(|s| s.trim().to_string()).map_err(|e| err("http.keys", "secret_file", format!("{f}: {e}")))?,
            _ => return Err(err("http.keys", "secret_access_key", format!("access key {} needs exactly one of secret_access_key, secret_env, secret_file", k.access_key_id))),
        };
        auth.keys.push((k.access_key_id.clone(), Secret::new(secret)));
    }
    for u in &h.users {
        let hash = parse_hash(&u.password_sha256).ok_or_else(|| err("http.users", "password_sha256", format!("user {}: not 64 hex digits; write the SHA-256 of the password, e.g. `printf %s PASSWORD | sha256sum`", u.name)))?;
        auth.users.push((u.name.clone(), hash));
    }
    for t in &h.tokens {
        auth.tokens.push(parse_hash(&t.sha256).ok_or_else(|| err("http.tokens", "sha256", "not 64 hex digits; write the SHA-256 of the token, e.g. `printf %s TOKEN | sha256sum`".into()))?);
    }
    if !auth.none && auth.keys.is_empty() && auth.users.is_empty() && auth.tokens.is_empty() {
        return Err(err("http", "auth", "no credentials: add [[http.keys]] (SigV4, for AWS SDKs), [[http.users]] or [[http.tokens]], or set auth = \"none\" to let anyone in".into()));
    }
    let invalid = match h.invalid_records.as_deref() {
        None | Some("reject") => InvalidRecords::Reject,
        Some("accept") => InvalidRecords::Accept,
        Some(o) => return Err(err("http", "invalid_records", format!("{o:?} is not a mode; use \"reject\" or \"accept\""))),
    };
    let max_request_bytes = match &h.max_request_size {
        None => 4 << 20,
        Some(v) => parse_size(v).map_err(|m| err("http", "max_request_size", format!("{m}; write e.g. \"4MiB\"")))?,
    };
    let max_inflight = match h.max_inflight_requests {
        None => 32,
        Some(n) if n > 0 => n as usize,
        Some(_) => return Err(err("http", "max_inflight_requests", "must be a positive number of requests".into())),
    };
    let tls = match (&h.tls_cert, &h.tls_key) {
        (None, None) => None,
        (Some(c), Some(k)) => Some((resolve(c), resolve(k))),
        _ => return Err(err("http", "tls_cert", "TLS needs both tls_cert and tls_key (PEM files)".into())),
    };
    Ok(HttpConfig { listen, streams, region: h.region.clone().unwrap_or_else(|| "us-east-1".into()), auth, invalid, max_request_bytes, max_inflight, tls })
}

/// The field serde names in messages such as "unknown field `x`, expected …".
fn quoted_field(msg: &str) -> Option<String> {
    let start = msg.find('`')? + 1;
    Some(msg[start..].split('`').next()?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = r#"
[source]
kind = "spool"
dir = "spool"

[table]
schema = "schemas/events.toml"

[sink]
url = "lake"
errors = "errors"

[buffer]
max_bytes = "64MiB"
max_age = "30s"
"#;

    fn env(v: &[(&str, &str)]) -> std::vec::IntoIter<(String, String)> {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>().into_iter()
    }

    /// The front door's section: credentials from the file, the
    /// environment or a file of their own; a door without any is refused
    /// unless `auth = "none"` says so; the section goes only with a source
    /// it can write to; every refusal names the key.
    #[test]
    fn http_section_is_checked_with_its_credentials() {
        let http = |source: &str, extra: &str| {
            CFG.replace("kind = \"spool\"\ndir = \"spool\"", source) + &format!("\n[http]\nlisten = \"127.0.0.1:4573\"\ndelivery_stream = \"events\"\n{extra}")
        };
        let log = "kind = \"http\"\ndir = \"wal\"\nmax_log_size = \"2GiB\"";
        let keys = "[[http.keys]]\naccess_key_id = \"AK1\"\nsecret_access_key = \"s1\"\n[[http.keys]]\naccess_key_id = \"AK2\"\nsecret_env = \"DOOR_SECRET\"\n[[http.users]]\nname = \"u\"\npassword_sha256 = \"5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8\"\n";
        let c = Config::parse("/etc/lh/l.toml", &http(log, keys), env(&[("DOOR_SECRET", "s2")])).unwrap();
        let h = c.http.unwrap();
        assert_eq!(h.streams, ["events"]);
        assert_eq!(h.auth.keys.iter().map(|(k, s)| (k.as_str(), s.expose())).collect::<Vec<_>>(), [("AK1", "s1"), ("AK2", "s2")]);
        assert_eq!(h.auth.users[0].1, crate::source::http::auth::hash(b"password"));
        assert!(!format!("{:?}", h.auth).contains("s1"), "secrets never show in debug output");
        assert!(matches!(c.source, SourceConfig::Http { max_log_bytes, .. } if max_log_bytes == 2 << 30));
        let e = Config::parse("/etc/lh/l.toml", &http(log, keys), env(&[])).unwrap_err();
        assert_eq!(e.key, "http.keys.secret_env");
        assert!(e.message.contains("DOOR_SECRET"), "{e}");
        let e = Config::parse("/etc/lh/l.toml", &http(log, ""), env(&[])).unwrap_err();
        assert_eq!(e.key, "http.auth");
        assert!(e.message.contains("no credentials") && e.message.contains("auth = \"none\""), "{e}");
        assert!(Config::parse("/etc/lh/l.toml", &http(log, "auth = \"none\""), env(&[])).unwrap().http.unwrap().auth.none);
        let e = Config::parse("/etc/lh/l.toml", &http("kind = \"spool\"\ndir = \"s\"", keys), env(&[("DOOR_SECRET", "s")])).unwrap_err();
        assert_eq!(e.key, "source.kind");
        let e = Config::parse("/etc/lh/l.toml", &CFG.replace("kind = \"spool\"\ndir = \"spool\"", log), env(&[])).unwrap_err();
        assert_eq!(e.key, "http.listen");
        let e = Config::parse("/etc/lh/l.toml", &http(log, "[[http.users]]\nname = \"u\"\npassword_sha256 = \"plain\""), env(&[])).unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("http.users.password_sha256", Some(23)), "{e}");
    }

    /// An Iceberg table: its catalog resolved (the warehouse made an
    /// absolute URL), and every missing or conflicting key named.
    #[test]
    fn iceberg_tables_name_their_catalog() {
        let ice = |catalog: &str, sink: &str| {
            CFG.replace("schema = \"schemas/events.toml\"", "schema = \"schemas/events.toml\"\nformat = \"iceberg\"")
                .replace("url = \"lake\"\n", sink)
                .replace("[buffer]\nmax_bytes = \"64MiB\"\nmax_age = \"30s\"", &format!("[catalog]\n{catalog}\n[buffer]"))
        };
        let sql = "kind = \"sql\"\nuri = \"ice/catalog.db\"\nwarehouse = \"ice/wh\"\ndatabase = \"lake\"";
        let c = Config::parse("/etc/lh/l.toml", &ice(sql, ""), env(&[])).unwrap();
        let CatalogConfig::Iceberg(i) = &c.catalog else { panic!("{:?}", c.catalog) };
        assert!(matches!(&i.catalog, crate::iceberg::IcebergCatalog::Sql { file, warehouse, name }
            if file == Path::new("/etc/lh/ice/catalog.db") && warehouse == "file:///etc/lh/ice/wh" && name == "default"), "{i:?}");
        assert_eq!((i.namespace.as_str(), i.checkpoints), ("lake", true));
        assert_eq!(c.limits.max_age, Duration::from_secs(15), "the default commit interval");
        for (catalog, sink, key) in [
            ("kind = \"sql\"\nwarehouse = \"w\"\ndatabase = \"lake\"", "", "catalog.uri"),
            ("kind = \"sql\"\nuri = \"c.db\"\ndatabase = \"lake\"", "", "catalog.warehouse"),
            ("kind = \"sql\"\nuri = \"c.db\"\nwarehouse = \"w\"", "", "catalog.database"),
            ("kind = \"none\"", "", "catalog.kind"),
            (sql, "url = \"lake\"\n", "sink.url"),
        ] {
            let e = Config::parse("/etc/lh/l.toml", &ice(catalog, sink), env(&[])).unwrap_err();
            assert_eq!(e.key, key, "{e}");
        }
        let e = Config::parse("/etc/lh/l.toml", &CFG.replace("[buffer]", "[catalog]\nkind = \"sql\"\n[buffer]"), env(&[])).unwrap_err();
        assert!(e.key == "catalog.kind" && e.message.contains("format = \"iceberg\""), "{e}");
        let e = Config::parse("/etc/lh/l.toml", &CFG.replace("schema = \"schemas/events.toml\"", "schema = \"s.toml\"\nformat = \"delta\""), env(&[])).unwrap_err();
        assert_eq!(e.key, "table.format");
    }

    #[test]
    fn parses_and_resolves_relative_paths() {
        let c = Config::parse("/etc/lh/lakehose.toml", CFG, env(&[])).unwrap();
        assert_eq!(c.limits.max_bytes, 64 << 20);
        assert_eq!(c.limits.max_age, Duration::from_secs(30));
        assert_eq!(c.sink.url, "/etc/lh/lake/");
        assert_eq!(c.schema_path, PathBuf::from("/etc/lh/schemas/events.toml"));
        assert!(matches!(c.source, SourceConfig::Spool { ref dir, .. } if dir == Path::new("/etc/lh/spool")));
    }

    #[test]
    fn env_overrides_win() {
        let c = Config::parse(
            "/x/l.toml",
            CFG,
            env(&[("LAKEHOSE_BUFFER_MAX_RECORDS", "500"), ("LAKEHOSE_SINK_URL", "s3://bkt/events/"), ("OTHER", "1")]),
        )
        .unwrap();
        assert_eq!(c.limits.max_records, 500);
        assert_eq!(c.sink.url, "s3://bkt/events/");
        let e = Config::parse("/x/l.toml", CFG, env(&[("LAKEHOSE_BUFFER_MAX_AGE", "soon")])).unwrap_err();
        assert!(e.to_string().contains("LAKEHOSE_BUFFER_MAX_AGE") && e.to_string().contains("buffer.max_age"), "{e}");
    }

    #[test]
    fn errors_name_file_line_key_and_fix() {
        let e = Config::parse("l.toml", &CFG.replace("\"64MiB\"", "\"64 parsecs\""), env(&[])).unwrap_err().to_string();
        assert!(e.starts_with("l.toml:14: key `buffer.max_bytes`"), "{e}");
        assert!(e.contains("write e.g."), "{e}");
        let e = Config::parse("l.toml", &CFG.replace("kind = \"spool\"", "kind = \"pulsar\""), env(&[])).unwrap_err().to_string();
        assert!(e.starts_with("l.toml:3: key `source.kind`"), "{e}");
        let e = Config::parse("l.toml", &CFG.replace("errors = \"errors\"", ""), env(&[])).unwrap_err().to_string();
        assert!(e.contains("sink.errors") && e.contains("missing"), "{e}");
        let e = Config::parse("l.toml", &CFG.replace("max_age", "max_agee"), env(&[])).unwrap_err().to_string();
        assert!(e.contains("max_agee"), "{e}");
        let e = Config::parse("l.toml", "[source\nkind=1", env(&[])).unwrap_err().to_string();
        assert!(e.starts_with("l.toml:1"), "{e}");
    }

    #[test]
    fn kafka_sources_and_their_mistakes() {
        use crate::source::kafka::client::{StartAt, Topics};
        use crate::source::lease::LeaseTable;
        let base = CFG.replace("kind = \"spool\"", "kind = \"kafka\"");
        let kafka = |extra: &str| format!("{base}\n[kafka]\nbootstrap_servers = \"b1:9092, b2:9092\"\n{extra}");
        let c = Config::parse("/x/l.toml", &kafka("topics = [\"ev\"]\nstart = \"latest\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"u\"\nsasl_password_env = \"PW\"\n[lease]\nkind = \"sqlite\"\npath = \"state/leases.db\"\n"), env(&[("PW", "secret")])).unwrap();
        let SourceConfig::Kafka(k) = &c.source else { panic!("a kafka source") };
        assert_eq!(k.bootstrap, ["b1:9092", "b2:9092"]);
        assert!(matches!(&k.topics, Topics::Names(n) if n == &["ev"]));
        assert_eq!(k.start, StartAt::Latest);
        assert_eq!(k.leases, LeaseTable::Sqlite { path: "/x/state/leases.db".into() });
        assert_eq!(k.group_id.as_deref(), Some("lakehose"));
        assert!(!format!("{:?}", k.settings).contains("secret"), "the password is never printed");
        let err = |text: &str, vars: &[(&str, &str)]| Config::parse("l.toml", text, env(vars)).unwrap_err().to_string();
        assert!(err(&base, &[]).contains("key `kafka.bootstrap_servers`"));
        assert!(err(&kafka("topics = [\"a\"]\ntopic_regex = \"a.*\"\n"), &[]).contains("exactly one of topics"));
        assert!(err(&kafka("topic_regex = \"a(\"\n"), &[]).contains("key `kafka.topic_regex`"));
        assert!(err(&kafka("topics = [\"a\"]\nsasl_mechanism = \"PLAIN\"\nsasl_username = \"u\"\nsasl_password_env = \"NOPE\"\n"), &[]).contains("NOPE"));
        assert!(err(&kafka("topics = [\"a\"]\nsasl_mechanism = \"GSSAPI\"\nsasl_username = \"u\"\nsasl_password_env = \"PW\"\n"), &[("PW", "x")]).contains("not supported"));
        // MSK IAM: TLS, the region, no password
        assert!(err(&kafka("topics = [\"a\"]\nsasl_mechanism = \"AWS_MSK_IAM\"\n"), &[("AWS_REGION", "eu-west-1")]).contains("key `kafka.tls`"));
        assert!(err(&kafka("topics = [\"a\"]\ntls = true\nsasl_mechanism = \"AWS_MSK_IAM\"\n"), &[]).contains("key `kafka.region`"));
        assert!(err(&kafka("topics = [\"a\"]\ntls = true\nsasl_mechanism = \"AWS_MSK_IAM\"\nsasl_username = \"u\"\n"), &[("AWS_REGION", "eu-west-1")]).contains("credential chain"));
        let c = Config::parse("/x/l.toml", &kafka("topics = [\"a\"]\ntls = true\nsasl_mechanism = \"AWS_MSK_IAM\"\n"), env(&[("AWS_REGION", "eu-west-1")])).unwrap();
        let SourceConfig::Kafka(k) = &c.source else { panic!("a kafka source") };
        assert!(matches!(&k.settings.sasl, Some(crate::source::kafka::sasl::Sasl::MskIam(i)) if i.region() == "eu-west-1"));
        assert!(err(&kafka("topics = [\"a\"]\nstart = \"yesterday\"\n"), &[]).contains("key `kafka.start`"));
        assert!(err(&kafka("topics = [\"a\"]\n[lease]\nkind = \"sqlite\"\n"), &[]).contains("key `lease.path`"));
        assert!(err(&kafka("topics = [\"a\"]\n[lease]\nkind = \"etcd\"\n"), &[]).contains("key `lease.kind`"));
        let c = Config::parse("/x/l.toml", &kafka("topic_regex = \"ev-.*\"\ngroup_id = \"\"\n"), env(&[])).unwrap();
        let SourceConfig::Kafka(k) = &c.source else { panic!("a kafka source") };
        assert!(matches!(&k.topics, Topics::Regex(r) if r.is_match("ev-1") && !r.is_match("xev-1")));
        assert!(k.group_id.is_none() && matches!(k.leases, LeaseTable::Dynamo { .. }));
    }

    /// The configs deploy/ ships — the ECS and VM files and both variants
    /// of the CloudFormation template's SSM parameter (Kinesis, MSK with
    /// IAM), with the stack's names filled in — are valid configs.
    #[test]
    fn deploy_configs_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
        let env = || env(&[("AWS_REGION", "eu-west-1")]);
        for f in ["ecs.toml", "vm.toml"] {
            let text = std::fs::read_to_string(dir.join(f)).unwrap();
            Config::parse(f, &text, env()).unwrap_or_else(|e| panic!("deploy/{f}: {e}"));
        }
        let template = std::fs::read_to_string(dir.join("cloudformation.yaml")).unwrap();
        let lines: Vec<&str> = template.lines().collect();
        let mut variants = Vec::new();
        let start = lines.iter().position(|l| l.trim() == "ConfigParameter:").expect("ConfigParameter");
        for (i, l) in lines.iter().enumerate().skip(start) {
            if l.trim() == "LogGroup:" {
                break;
            }
            if l.trim_end().ends_with("!Sub |") {
                let body: Vec<&str> = lines[i + 1..].iter().take_while(|b| b.starts_with("            ")).map(|b| b.trim_start()).collect();
                variants.push(body.join("\n"));
            }
        }
        assert_eq!(variants.len(), 2, "the Kafka and Kinesis variants");
        let names = [("${MskBootstrapServers}", "b-1.msk.example:9098,b-2.msk.example:9098"), ("${MskTopic}", "events"), ("${Stream}", "lakehose-stream"),
            ("${LeaseTable}", "lakehose-leases"), ("${TableName}", "events"), ("${LakeBucket}", "lake-bkt"), ("${RawBucket}", "raw-bkt"),
            ("${DataKey.Arn}", "arn:aws:kms:eu-west-1:123456789012:key/k"), ("${GlueDatabaseName}", "analytics")];
        let mut kinds = Vec::new();
        for v in &variants {
            let text = names.iter().fold(v.clone(), |t, (k, val)| t.replace(k, val));
            assert!(!text.contains("${"), "a name left unfilled: {text}");
            let c = Config::parse("ssm", &text, env()).unwrap_or_else(|e| panic!("{e}\n{text}"));
            kinds.push(match c.source {
                SourceConfig::Kafka(k) => {
                    assert!(matches!(k.settings.sasl, Some(crate::source::kafka::sasl::Sasl::MskIam(_))));
                    "kafka"
                }
                SourceConfig::Kinesis(_) => "kinesis",
                _ => "other",
            });
        }
        assert_eq!(kinds, ["kafka", "kinesis"]);
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size(&toml::Value::String("1000KiB".into())).unwrap(), 1_024_000);
        assert_eq!(parse_size(&toml::Value::Integer(5)).unwrap(), 5);
        assert!(parse_size(&toml::Value::String("0MiB".into())).is_err());
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("2 weeks").is_err());
    }
}
