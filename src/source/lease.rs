//! Shard leases: the lease table (an I/O edge) and its DynamoDB implementation.
//!
//! Input: lease operations from the coordinator and the committer. Output:
//! lease rows, KCL-shaped (`leaseKey`, `leaseOwner`, `leaseCounter`,
//! `checkpoint`, `checkpointSubSequenceNumber`, `parentShardIds`,
//! `ownerSwitchesSinceCheckpoint`) plus lakehose's own `lakehoseCheckpoint`
//! (the exact resume point and per-destination progress) and
//! `pendingIntent` (the flush in flight). Every write but `create` is
//! conditional on `leaseCounter` (and the owner), and bumps the counter: the
//! counter is the fence. A failed condition is `Ok(None)`, never an error.
//! Failure: [`LeaseError`] for anything else (after the SDK's retries).

use crate::ids::ShardId;
use crate::checkpoint::{FlushIntent, ShardCheckpoint};
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::types::AttributeValue as Av;
use base64::Engine;
use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Write};

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease table {table}: {message}")]
    Table { table: String, message: String },
    #[error("lease table {table}: row {key}: {message}")]
    BadRow { table: String, key: String, message: String },
}

/// One lease row.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub shard: ShardId,
    pub owner: Option<String>,
    pub counter: u64,
    pub checkpoint: ShardCheckpoint,
    /// The shard was read to its end and everything is durable.
    pub ended: bool,
    pub intent: Option<Vec<FlushIntent>>,
    pub parents: Vec<ShardId>,
}

impl Lease {
    pub fn new(shard: ShardId, parents: Vec<ShardId>) -> Lease {
        Lease { shard, owner: None, counter: 0, checkpoint: ShardCheckpoint::default(), ended: false, intent: None, parents }
    }
}

/// What a conditional update writes besides the counter bump.
#[derive(Debug, Clone, Default)]
pub struct Update<'a> {
    pub checkpoint: Option<&'a ShardCheckpoint>,
    /// `Some(None)` clears the intent.
    pub intent: Option<Option<&'a [FlushIntent]>>,
    pub ended: bool,
}

/// The lease table (an I/O edge).
pub trait LeaseStore: Send + Sync + 'static {
    fn ensure_table(&self) -> impl Future<Output = Result<(), LeaseError>> + Send;
    fn list(&self) -> impl Future<Output = Result<Vec<Lease>, LeaseError>> + Send;
    /// Creates the row if absent; false when it existed.
    fn create(&self, lease: &Lease) -> impl Future<Output = Result<bool, LeaseError>> + Send;
    /// Takes the lease for `owner` if its counter is still `counter`; returns the new counter.
    fn take(&self, shard: &ShardId, owner: &str, counter: u64) -> impl Future<Output = Result<Option<u64>, LeaseError>> + Send;
    /// Renews (and with `u`, updates) a lease `owner` holds at `counter`.
    fn update(&self, shard: &ShardId, owner: &str, counter: u64, u: Update<'_>) -> impl Future<Output = Result<Option<u64>, LeaseError>> + Send;
    /// Gives the lease up (no owner) so another worker can take it at once.
    fn release(&self, shard: &ShardId, owner: &str, counter: u64) -> impl Future<Output = Result<bool, LeaseError>> + Send;
}

/// Compressed JSON (gzip + base64) for the checkpoint and intent: their
/// per-partition entries repeat prefixes, and an item must stay under 400 KB.
fn pack<T: serde::Serialize>(v: &T) -> String {
    let json = serde_json::to_vec(v).expect("serialisable");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&json).expect("in memory");
    base64::engine::general_purpose::STANDARD.encode(gz.finish().expect("in memory"))
}

fn unpack<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    let gz = base64::engine::general_purpose::STANDARD.decode(s).map_err(|e| e.to_string())?;
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut json).map_err(|e| e.to_string())?;
    serde_json::from_slice(&json).map_err(|e| e.to_string())
}

/// The KCL-style `checkpoint` attribute, for people and KCL tools reading the table.
fn kcl_checkpoint(cp: &ShardCheckpoint, ended: bool) -> (String, u64) {
    use crate::checkpoint::Resume;
    if ended {
        return ("SHARD_END".into(), 0);
    }
    match &cp.resume {
        Resume::Start => ("TRIM_HORIZON".into(), 0),
        Resume::At(p) | Resume::After(p) => (p.seq.to_string(), p.sub),
    }
}

/// DynamoDB lease table.
pub struct DynamoLeases {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoLeases {
    pub fn new(client: aws_sdk_dynamodb::Client, table: &str) -> DynamoLeases {
        DynamoLeases { client, table: table.to_string() }
    }

    fn err(&self, e: impl std::error::Error) -> LeaseError {
        LeaseError::Table { table: self.table.clone(), message: DisplayErrorContext(e).to_string() }
    }

    fn row(&self, item: &HashMap<String, Av>) -> Result<Lease, LeaseError> {
        let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        let key = s("leaseKey").unwrap_or_default();
        let bad = |message: String| LeaseError::BadRow { table: self.table.clone(), key: key.clone(), message };
        let counter = item.get("leaseCounter").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()).unwrap_or(0);
        let checkpoint = match s("lakehoseCheckpoint") {
            Some(c) => unpack(&c).map_err(|e| bad(format!("lakehoseCheckpoint: {e}")))?,
            None => ShardCheckpoint::default(),
        };
        let intent = match s("pendingIntent") {
            Some(c) => Some(unpack(&c).map_err(|e| bad(format!("pendingIntent: {e}")))?),
            None => None,
        };
        let parents = item.get("parentShardIds").and_then(|v| v.as_ss().ok()).map(|v| v.iter().map(|p| ShardId::new(p)).collect()).unwrap_or_default();
        Ok(Lease {
            shard: ShardId::new(&key),
            owner: s("leaseOwner"),
            counter,
            checkpoint,
            ended: s("checkpoint").as_deref() == Some("SHARD_END"),
            intent,
            parents,
        })
    }
}

fn conditional_failed<E: ProvideErrorMetadata>(e: &aws_sdk_dynamodb::error::SdkError<E>) -> bool {
    e.as_service_error().and_then(|s| s.code()) == Some("ConditionalCheckFailedException")
}

impl LeaseStore for DynamoLeases {
    async fn ensure_table(&self) -> Result<(), LeaseError> {
        use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
        match self.client.describe_table().table_name(&self.table).send().await {
            Ok(_) => return Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => {}
            Err(e) => return Err(self.err(e)),
        }
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(AttributeDefinition::builder().attribute_name("leaseKey").attribute_type(ScalarAttributeType::S).build().expect("complete"))
            .key_schema(KeySchemaElement::builder().attribute_name("leaseKey").key_type(KeyType::Hash).build().expect("complete"))
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => {}
            Err(e) => return Err(self.err(e)),
        }
        // wait until ACTIVE (another instance may have created it a moment ago)
        for _ in 0..120 {
            let d = self.client.describe_table().table_name(&self.table).send().await.map_err(|e| self.err(e))?;
            if d.table().and_then(|t| t.table_status()).map(|s| s.as_str() == "ACTIVE").unwrap_or(false) {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        Err(LeaseError::Table { table: self.table.clone(), message: "table did not become ACTIVE within 60 s".into() })
    }

    async fn list(&self) -> Result<Vec<Lease>, LeaseError> {
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, Av>> = None;
        loop {
            let r = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.err(e))?;
            for item in r.items() {
                out.push(self.row(item)?);
            }
            match r.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(out)
    }

    async fn create(&self, lease: &Lease) -> Result<bool, LeaseError> {
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("leaseKey", Av::S(lease.shard.to_string()))
            .item("leaseCounter", Av::N("0".into()))
            .item("checkpoint", Av::S("TRIM_HORIZON".into()))
            .item("checkpointSubSequenceNumber", Av::N("0".into()))
            .item("ownerSwitchesSinceCheckpoint", Av::N("0".into()))
            .condition_expression("attribute_not_exists(leaseKey)");
        if !lease.parents.is_empty() {
            req = req.item("parentShardIds", Av::Ss(lease.parents.iter().map(|p| p.to_string()).collect()));
        }
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) if conditional_failed(&e) => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }

    async fn take(&self, shard: &ShardId, owner: &str, counter: u64) -> Result<Option<u64>, LeaseError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("leaseKey", Av::S(shard.to_string()))
            .update_expression("SET leaseOwner = :o, leaseCounter = :n ADD ownerSwitchesSinceCheckpoint :one")
            .condition_expression("leaseCounter = :c")
            .expression_attribute_values(":o", Av::S(owner.into()))
            .expression_attribute_values(":n", Av::N((counter + 1).to_string()))
            .expression_attribute_values(":c", Av::N(counter.to_string()))
            .expression_attribute_values(":one", Av::N("1".into()))
            .send()
            .await;
        match r {
            Ok(_) => Ok(Some(counter + 1)),
            Err(e) if conditional_failed(&e) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    async fn update(&self, shard: &ShardId, owner: &str, counter: u64, u: Update<'_>) -> Result<Option<u64>, LeaseError> {
        let mut set = vec!["leaseCounter = :n"];
        let mut remove = vec![];
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("leaseKey", Av::S(shard.to_string()))
            .condition_expression("leaseCounter = :c AND leaseOwner = :o")
            .expression_attribute_values(":o", Av::S(owner.into()))
            .expression_attribute_values(":n", Av::N((counter + 1).to_string()))
            .expression_attribute_values(":c", Av::N(counter.to_string()));
        if let Some(cp) = u.checkpoint {
            let (seq, sub) = kcl_checkpoint(cp, u.ended);
            set.extend(["lakehoseCheckpoint = :lc", "checkpoint = :cp", "checkpointSubSequenceNumber = :sub", "ownerSwitchesSinceCheckpoint = :zero"]);
            req = req
                .expression_attribute_values(":lc", Av::S(pack(cp)))
                .expression_attribute_values(":cp", Av::S(seq))
                .expression_attribute_values(":sub", Av::N(sub.to_string()))
                .expression_attribute_values(":zero", Av::N("0".into()));
        }
        match u.intent {
            Some(Some(i)) => {
                set.push("pendingIntent = :pi");
                req = req.expression_attribute_values(":pi", Av::S(pack(&i)));
            }
            Some(None) => remove.push("pendingIntent"),
            None => {}
        }
        let mut expr = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expr.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        match req.update_expression(expr).send().await {
            Ok(_) => Ok(Some(counter + 1)),
            Err(e) if conditional_failed(&e) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    async fn release(&self, shard: &ShardId, owner: &str, counter: u64) -> Result<bool, LeaseError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("leaseKey", Av::S(shard.to_string()))
            .update_expression("SET leaseCounter = :n REMOVE leaseOwner")
            .condition_expression("leaseCounter = :c AND leaseOwner = :o")
            .expression_attribute_values(":o", Av::S(owner.into()))
            .expression_attribute_values(":n", Av::N((counter + 1).to_string()))
            .expression_attribute_values(":c", Av::N(counter.to_string()))
            .send()
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) if conditional_failed(&e) => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }
}

/// The lease table a config names: DynamoDB (several hosts) or a SQLite
/// file (one host).
pub enum Leases {
    Dynamo(DynamoLeases),
    Sqlite(super::sqlite_leases::SqliteLeases),
}

impl LeaseStore for Leases {
    async fn ensure_table(&self) -> Result<(), LeaseError> {
        match self {
            Leases::Dynamo(l) => l.ensure_table().await,
            Leases::Sqlite(l) => l.ensure_table().await,
        }
    }
    async fn list(&self) -> Result<Vec<Lease>, LeaseError> {
        match self {
            Leases::Dynamo(l) => l.list().await,
            Leases::Sqlite(l) => l.list().await,
        }
    }
    async fn create(&self, lease: &Lease) -> Result<bool, LeaseError> {
        match self {
            Leases::Dynamo(l) => l.create(lease).await,
            Leases::Sqlite(l) => l.create(lease).await,
        }
    }
    async fn take(&self, shard: &ShardId, owner: &str, counter: u64) -> Result<Option<u64>, LeaseError> {
        match self {
            Leases::Dynamo(l) => l.take(shard, owner, counter).await,
            Leases::Sqlite(l) => l.take(shard, owner, counter).await,
        }
    }
    async fn update(&self, shard: &ShardId, owner: &str, counter: u64, u: Update<'_>) -> Result<Option<u64>, LeaseError> {
        match self {
            Leases::Dynamo(l) => l.update(shard, owner, counter, u).await,
            Leases::Sqlite(l) => l.update(shard, owner, counter, u).await,
        }
    }
    async fn release(&self, shard: &ShardId, owner: &str, counter: u64) -> Result<bool, LeaseError> {
        match self {
            Leases::Dynamo(l) => l.release(shard, owner, counter).await,
            Leases::Sqlite(l) => l.release(shard, owner, counter).await,
        }
    }
}

/// Where the lease table is.
#[derive(Debug, Clone, PartialEq)]
pub enum LeaseTable {
    Dynamo { table: String, endpoint: Option<String>, region: Option<String> },
    Sqlite { path: std::path::PathBuf },
}

impl LeaseTable {
    pub async fn open(&self) -> Result<Leases, LeaseError> {
        Ok(match self {
            LeaseTable::Dynamo { table, endpoint, region } => {
                let sdk = crate::aws::sdk_config(endpoint.as_deref(), region.as_deref()).await;
                Leases::Dynamo(DynamoLeases::new(aws_sdk_dynamodb::Client::new(&sdk), table))
            }
            LeaseTable::Sqlite { path } => Leases::Sqlite(super::sqlite_leases::SqliteLeases::open(path).await?),
        })
    }
}

impl std::fmt::Display for LeaseTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeaseTable::Dynamo { table, .. } => write!(f, "dynamodb:{table}"),
            LeaseTable::Sqlite { path } => write!(f, "sqlite:{}", path.display()),
        }
    }
}
