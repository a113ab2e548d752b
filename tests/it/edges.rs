//! The conformance suites of the I/O edges, run against the real wire
//! protocols on moto_server through the real AWS SDK clients: the lease
//! table on DynamoDB, the catalog on Glue, the table writer on S3. The
//! same suites run against the in-memory twins in the unit tests.

use super::*;
use lakehose::catalog::glue::GlueCatalog;
use lakehose::source::lease::DynamoLeases;
use lakehose::store::{Store, StoreOptions};
use lakehose::testing::suites;
use lakehose::write::HiveParquet;

async fn sdk(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new("test", "test", None, None, "test"))
        .load()
        .await
}

/// Every partition of a Glue table, as its values.
async fn glue_partitions(client: &aws_sdk_glue::Client, db: &str, table: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let r = client.get_partitions().database_name(db).table_name(table).set_next_token(token).send().await.expect("GetPartitions");
        out.extend(r.partitions().iter().map(|p| p.values().to_vec()));
        token = r.next_token().map(str::to_string);
        if token.is_none() {
            return out;
        }
    }
}

#[test]
fn dynamodb_glue_and_s3_edges_conform_on_moto() {
    let moto = Moto::start();
    moto.boto("c('s3').create_bucket(Bucket='edge-lake')");
    // object_store's S3 client takes its credentials from the environment
    for (k, v) in [("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test")] {
        std::env::set_var(k, v);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let sdk = sdk(&moto.endpoint).await;
        let leases = DynamoLeases::new(aws_sdk_dynamodb::Client::new(&sdk), "suite-leases");
        suites::lease_store_suite(&leases, "shardId-moto").await;

        let schema = suites::catalog_suite_schema("suite_events");
        let mut glue = GlueCatalog::open(&sdk, "suite_db", &schema, "s3://edge-lake/events/", false).await.expect("Glue table");
        let client = aws_sdk_glue::Client::new(&sdk);
        suites::catalog_suite(&mut glue, &schema, async || glue_partitions(&client, "suite_db", "suite_events").await).await;
        let t = client.get_table().database_name("suite_db").name("suite_events").send().await.unwrap();
        let cols: Vec<String> = t.table().unwrap().storage_descriptor().unwrap().columns().iter().map(|c| c.name().to_string()).collect();
        assert_eq!(cols, ["id", "ts", "kind", "added"], "the schema update reached the Glue table");

        let opts = StoreOptions { endpoint: Some(moto.endpoint.clone()), region: Some("us-east-1".into()), kms_key_id: None };
        let store = Store::open("s3://edge-lake/sink/", &opts).expect("S3 store");
        suites::sink_suite(&HiveParquet { store: store.clone() }, &store).await;
    });
}
