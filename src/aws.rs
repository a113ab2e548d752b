//! AWS SDK configuration shared by the Kinesis, DynamoDB and Glue clients.

/// An `SdkConfig` for any AWS client: region and endpoint from config,
/// else from the environment (AWS_REGION, AWS_ENDPOINT_URL, credentials chain).
pub async fn sdk_config(endpoint: Option<&str>, region: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(e) = endpoint {
        loader = loader.endpoint_url(e);
    }
    if let Some(r) = region {
        loader = loader.region(aws_config::Region::new(r.to_string()));
    }
    loader.load().await
}
