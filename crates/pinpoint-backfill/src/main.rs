//! `pinpoint-backfill`: the backfill as a one-off Lambda. Each invocation's event is `{"args": ["--bucket", ...]}`
//! (the arguments of `ckb pinpoint-backfill`), it starts no object within [`LAMBDA_MARGIN`] of the deadline, and
//! answers with the run's outcome (`stopped` set: invoke it again with the same event to go on). From a terminal,
//! run `ckb pinpoint-backfill` (the operator command, crates/operator).

use std::process::ExitCode;
use std::time::Duration;

use bridge_core::telemetry::Metrics;
use lambda_runtime::{LambdaEvent, service_fn};
use pinpoint_backfill::cli::parse_args;
use pinpoint_backfill::report::summary;
use tokio::time::Instant;

/// In a Lambda, no object starts this close to the deadline (an object cut off is written again next time).
const LAMBDA_MARGIN: Duration = Duration::from_secs(120);

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
        eprintln!(
            "pinpoint-backfill: this binary is the backfill's one-off Lambda (no AWS_LAMBDA_RUNTIME_API here); \
             from a terminal, run `ckb pinpoint-backfill --help`"
        );
        return ExitCode::from(2);
    }
    bridge_core::telemetry::init_logging();
    match lambda_runtime::run(service_fn(invocation)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pinpoint-backfill: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One Lambda invocation: `{"args": [...]}` in, the outcome out.
async fn invocation(
    event: LambdaEvent<serde_json::Value>,
) -> Result<serde_json::Value, lambda_runtime::Error> {
    let args: Vec<String> = serde_json::from_value(event.payload["args"].clone())
        .map_err(|e| format!("the event must be {{\"args\": [\"--bucket\", ...]}}: {e}"))?;
    let args = parse_args(args.into_iter().map(Into::into))?;
    let deadline = bridge_core::Deadline::from_lambda_deadline_ms(event.context.deadline)
        .remaining()
        .map(|left| Instant::now() + left.saturating_sub(LAMBDA_MARGIN));
    let outcome = pinpoint_backfill::command(&args, deadline, &Metrics::new(), |p| {
        tracing::info!(
            objects_done = p.objects_done,
            objects_total = p.objects_total,
            records = p.records,
            "progress"
        );
    })
    .await?;
    tracing::info!("{}", summary(&outcome));
    Ok(serde_json::to_value(&outcome)?)
}
