//! `ckb pinpoint-backfill`: a Pinpoint event-stream archive in S3 onto the event streams (see `pinpoint_backfill`;
//! the same arguments as its one-off Lambda's `{"args": [...]}`).
//!
//! Progress goes to stderr (a bar and a line, rewritten, on a terminal; a line every 10 s otherwise); the summary
//! to stdout.

use std::process::ExitCode;
use std::time::Instant;

use bridge_core::telemetry::Metrics;
use pinpoint_backfill::cli::{Args, parse_args};
use pinpoint_backfill::report::{progress_line, summary};
use pinpoint_backfill::run::Progress;

use crate::progress::{ProgressLine, bar};

/// `ckb pinpoint-backfill --help`: the backfill's own text.
pub use pinpoint_backfill::cli::USAGE;

fn line(p: &Progress, started: Instant) -> String {
    format!(
        "{} {}",
        bar(p.bytes_done, p.bytes_total),
        progress_line(p, started.elapsed())
    )
}

/// Reads the arguments (after `pinpoint-backfill`).
pub fn parse(args: Vec<String>) -> Result<Args, String> {
    parse_args(args.into_iter().map(Into::into))
}

/// Runs the backfill.
pub async fn run(args: Args, sdk: &aws_config::SdkConfig) -> ExitCode {
    let started = Instant::now();
    let mut progress = ProgressLine::stderr();
    let result = pinpoint_backfill::command_with(sdk, &args, None, &Metrics::new(), |p| {
        if p.objects_done == p.objects_total {
            progress.finish(&line(p, started));
        } else {
            progress.update(&line(p, started));
        }
    })
    .await;
    progress.close();
    match result {
        Ok(outcome) => {
            print!("{}", summary(&outcome));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ckb pinpoint-backfill: {e}");
            ExitCode::FAILURE
        }
    }
}
