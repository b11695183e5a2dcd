//! The `active-users` Lambda: reads config and builds clients once, then serves Kinesis batches of auth and app
//! events.

use active_users::{ActiveUsers, Config};
use bridge_core::config::ProcessEnv;
use bridge_core::pipeline::Flow as _;
use lambda_runtime::{Error, LambdaEvent, service_fn};

// One thread: an instance serves one invocation at a time, and cross-thread wake-ups cost CPU (BENCHMARKS.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    bridge_core::telemetry::init_logging();
    let config = Config::from_env(&ProcessEnv)?;
    let sdk = bridge_core::aws::sdk_config().await;
    let s3 = bridge_core::aws::s3_client(&sdk, &ProcessEnv)?;
    let rollup = ActiveUsers::connect(&config, &sdk, s3);
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| rollup.handle(event))).await
}
