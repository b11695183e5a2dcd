//! The `auth-trigger-forwarder` Lambda, attached to user pool triggers: reads config and builds the client
//! once, then answers every trigger with its event unchanged.

use auth_analytics::{TriggerConfig, TriggerForwarder};
use bridge_core::config::ProcessEnv;
use lambda_runtime::{Error, LambdaEvent, service_fn};

// One thread: an instance serves one invocation at a time, and cross-thread wake-ups cost CPU (BENCHMARKS.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    bridge_core::telemetry::init_logging();
    let sdk = bridge_core::aws::sdk_config().await;
    let config = TriggerConfig::load(&ProcessEnv, &sdk).await?;
    let forwarder = TriggerForwarder::connect(&config, &sdk);
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<Box<serde_json::value::RawValue>>| forwarder.handle(event),
    ))
    .await
}
