//! `pinpoint-backfill`: a command from a laptop (the standard AWS config), or a one-off Lambda when started by a
//! Lambda runtime (`AWS_LAMBDA_RUNTIME_API`): each invocation's event is `{"args": ["--bucket", ...]}`, it
//! starts no object within [`LAMBDA_MARGIN`] of the deadline, and answers with the run's outcome
//! (`stopped` set: invoke it again with the same event to go on).
//!
//! ```text
//! pinpoint-backfill --bucket my-pinpoint-archive --prefix events/ --until 2026-10-30 \
//!     --user-pool-id us-east-1_EXAMPLE --app-stream app-events --auth-stream auth-events [--dry-run]
//! ```
//! Progress goes to stderr (one line, rewritten, on a terminal; a line every 10 s otherwise); the summary to
//! stdout.

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::Duration;

use bridge_core::telemetry::Metrics;
use lambda_runtime::{LambdaEvent, service_fn};
use pinpoint_backfill::cli::{USAGE, parse_args};
use pinpoint_backfill::report::{progress_line, summary};
use tokio::time::Instant;

/// In a Lambda, no object starts this close to the deadline (an object cut off is written again next time).
const LAMBDA_MARGIN: Duration = Duration::from_secs(120);
/// Without a terminal, a progress line at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> ExitCode {
    bridge_core::telemetry::init_logging();
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        return match lambda_runtime::run(service_fn(invocation)).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pinpoint-backfill: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(a) if a.help => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(a) => a,
        Err(e) => {
            eprintln!("pinpoint-backfill: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let mut last: Option<Instant> = None;
    let show = |p: &pinpoint_backfill::run::Progress| {
        let line = progress_line(p, started.elapsed());
        let done = p.objects_done == p.objects_total;
        if terminal {
            eprint!("\r\x1b[2K{line}");
            if done {
                eprintln!();
            }
        } else if done || last.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
            eprintln!("{line}");
            last = Some(Instant::now());
        }
    };
    match pinpoint_backfill::command(&args, None, &Metrics::new(), show).await {
        Ok(outcome) => {
            if terminal {
                eprintln!();
            }
            print!("{}", summary(&outcome));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\npinpoint-backfill: {e}");
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
