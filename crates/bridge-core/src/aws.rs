//! Building SDK clients once per cold start, from the standard AWS environment.

use crate::config::{self, ConfigError, Env};

/// `true` makes the S3 client address buckets by path (`host/bucket/key`), which S3-compatible local
/// endpoints on an IP address need. Real S3 works either way.
pub const ENV_S3_FORCE_PATH_STYLE: &str = "S3_FORCE_PATH_STYLE";

/// The shared SDK config: region, credentials and endpoint (`AWS_ENDPOINT_URL`) from the environment.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// The SDK config for clients whose calls this code retries itself ([`crate::retry::Backoff`]): the SDK's own
/// retries off, so that one attempt of ours is one request, and attempts do not multiply (6 x 3 before).
pub fn own_retries(sdk: &aws_config::SdkConfig) -> aws_config::SdkConfig {
    sdk.to_builder()
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build()
}

/// An S3 client, path-style when [`ENV_S3_FORCE_PATH_STYLE`] says so.
pub fn s3_client(
    sdk: &aws_config::SdkConfig,
    env: &impl Env,
) -> Result<aws_sdk_s3::Client, ConfigError> {
    let path_style = config::parsed_or(env, ENV_S3_FORCE_PATH_STYLE, false)?;
    let conf = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(path_style)
        .build();
    Ok(aws_sdk_s3::Client::from_conf(conf))
}
