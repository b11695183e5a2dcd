//! `ckb user-snapshot-export`: publishes one profile snapshot record per user of a pool (see
//! `auth_analytics::export`).
//!
//! ```text
//! USER_POOL_ID=us-east-1_EXAMPLE AUTH_OUTPUT_STREAM_NAME=auth-events ckb user-snapshot-export \
//!     [--start-token TOKEN] [--max-pages N]
//! ```
//! Progress, with the token to resume from, goes to stderr; on a stop (an error, `--max-pages`, Ctrl-C) the last
//! token is printed.

use std::cell::RefCell;
use std::process::ExitCode;
use std::time::Instant;

use auth_analytics::config::ExportConfig;
use auth_analytics::export::{ExportArgs, Progress, SnapshotExporter, parse_args};
use bridge_core::config::ProcessEnv;
use bridge_core::telemetry::Metrics;

use crate::USAGE_ERROR;
use crate::progress::ProgressLine;

/// `ckb user-snapshot-export --help`.
pub const USAGE: &str = "\
usage: USER_POOL_ID=... AUTH_OUTPUT_STREAM_NAME=... ckb user-snapshot-export [--start-token TOKEN] [--max-pages N]

Pages through ListUsers of the pool and publishes one _userauth.profile_snapshot record (cognito-auth-event/v1)
per user on the auth event stream, under LIST_USERS_RATE requests per second (default 5; the account's
UserList quota is shared with every other caller). A user unchanged since the last export gets the same
event_id, so a resumed or repeated export collapses downstream.

  --start-token TOKEN   resume from this pagination token (printed on every progress line and on a stop)
  --max-pages N         stop after N pages (60 users each)

environment: USER_POOL_ID, AUTH_OUTPUT_STREAM_NAME (required); LIST_USERS_RATE; the attribute-sharing settings
of the auth forwarders (README, user-snapshot-export).
";

fn line(p: &Progress, started: Instant) -> String {
    let secs = started.elapsed().as_secs_f64();
    let rate = if secs > 0.0 {
        format!(" | {:.0} users/s", p.users as f64 / secs)
    } else {
        String::new()
    };
    format!(
        "page {}: {} users exported{rate}{}",
        p.pages,
        p.users,
        p.next_token
            .as_deref()
            .map(|t| format!(" | resume with --start-token {t}"))
            .unwrap_or_default()
    )
}

/// Reads the arguments (after `user-snapshot-export`).
pub fn parse(args: Vec<String>) -> Result<ExportArgs, String> {
    parse_args(args.into_iter().map(Into::into))
}

/// Runs the export.
pub async fn run(args: ExportArgs, sdk: &aws_config::SdkConfig) -> ExitCode {
    let config = match ExportConfig::load(&ProcessEnv, sdk).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ckb user-snapshot-export: {e}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let exporter = SnapshotExporter::connect(&config, sdk);
    let metrics = Metrics::new();
    let started = Instant::now();
    let progress = RefCell::new(ProgressLine::stderr());
    // The token of the next page after the last page published: where a stopped run resumes.
    let last = RefCell::new(args.start_token.clone());
    let export = exporter.run(args.start_token, args.max_pages, &metrics, |p| {
        *last.borrow_mut() = p.next_token.clone();
        progress.borrow_mut().update(&line(p, started));
    });
    let result = tokio::select! {
        r = export => r,
        _ = tokio::signal::ctrl_c() => {
            progress.borrow_mut().close();
            eprintln!("ckb user-snapshot-export: interrupted");
            if let Some(t) = last.borrow().as_deref() {
                eprintln!("resume with --start-token {t}");
            }
            return ExitCode::from(130);
        }
    };
    let mut progress = progress.into_inner();
    match result {
        Ok(p) => {
            progress.finish(&line(&p, started));
            eprintln!("done: {} users in {} pages", p.users, p.pages);
            if let Some(t) = &p.next_token {
                eprintln!("resume with --start-token {t}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            progress.close();
            eprintln!("ckb user-snapshot-export: {e}");
            if let Some(t) = &e.resume_token {
                eprintln!("resume with --start-token {t}");
            }
            ExitCode::FAILURE
        }
    }
}
