//! The `cohorts` Lambda: reads config and builds clients once, then serves its schedule's events (EventBridge
//! Scheduler or a rule: the event's `time` is the run's time; `{"as_of": "YYYY-MM-DD"}` for a local run).

use bridge_core::config::ProcessEnv;
use bridge_core::telemetry::Metrics;
use cohorts::run::{FUNCTION_NAME, METRICS, run_time};
use cohorts::{Cohorts, Config};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    bridge_core::telemetry::init_logging();
    let config = Config::from_env(&ProcessEnv)?;
    let sdk = bridge_core::aws::sdk_config().await;
    let function = Cohorts::connect(&config, &sdk);
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let function = &function;
        async move {
            let (time, as_of) = run_time(&event.payload)?;
            let deadline = bridge_core::Deadline::from_lambda_deadline_ms(event.context.deadline);
            let metrics = Metrics::new();
            let outcome = function.run(time, as_of, deadline, &metrics).await;
            metrics.flush(FUNCTION_NAME, METRICS);
            Ok::<_, Error>(serde_json::to_value(outcome?)?)
        }
    }))
    .await
}
