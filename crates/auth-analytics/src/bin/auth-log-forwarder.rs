//! The `auth-log-forwarder` Lambda, fed by a Kinesis stream that a CloudWatch Logs subscription filter on the
//! user pool's user-activity log group writes to: reads config and builds clients once, then serves batches.

use auth_analytics::LogForwarder;
use auth_analytics::config::LogConfig;
use bridge_core::config::ProcessEnv;
use bridge_core::pipeline::Flow as _;
use lambda_runtime::{Error, LambdaEvent, service_fn};

// One thread: an instance serves one invocation at a time, and cross-thread wake-ups cost CPU (BENCHMARKS.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    bridge_core::telemetry::init_logging();
    let sdk = bridge_core::aws::sdk_config().await;
    let config = LogConfig::load(&ProcessEnv, &sdk).await?;
    let s3 = bridge_core::aws::s3_client(&sdk, &ProcessEnv)?;
    let forwarder = LogForwarder::connect(&config, &sdk, s3);
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| forwarder.handle(event))).await
}
