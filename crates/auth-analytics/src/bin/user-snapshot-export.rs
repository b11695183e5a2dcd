//! `user-snapshot-export`: a command that publishes one profile snapshot record per user of a pool.
//!
//! ```text
//! USER_POOL_ID=us-east-1_EXAMPLE AUTH_OUTPUT_STREAM_NAME=auth-events user-snapshot-export \
//!     [--start-token TOKEN] [--max-pages N]
//! ```
//! Progress and the token to resume from go to stderr after every page.

use std::process::ExitCode;

use auth_analytics::config::ExportConfig;
use auth_analytics::export::{SnapshotExporter, USAGE, parse_args};
use bridge_core::config::ProcessEnv;
use bridge_core::telemetry::Metrics;

#[tokio::main]
async fn main() -> ExitCode {
    bridge_core::telemetry::init_logging();
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("user-snapshot-export: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let sdk = bridge_core::aws::sdk_config().await;
    let config = match ExportConfig::load(&ProcessEnv, &sdk).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("user-snapshot-export: {e}");
            return ExitCode::from(2);
        }
    };
    let exporter = SnapshotExporter::connect(&config, &sdk);
    let metrics = Metrics::new();
    let result = exporter
        .run(args.start_token, args.max_pages, &metrics, |p| {
            eprintln!(
                "page {}: {} users exported{}",
                p.pages,
                p.users,
                p.next_token
                    .as_deref()
                    .map(|t| format!("; resume with --start-token {t}"))
                    .unwrap_or_default()
            );
        })
        .await;
    match result {
        Ok(p) => {
            eprintln!("done: {} users in {} pages", p.users, p.pages);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("user-snapshot-export: {e}");
            if let Some(t) = &e.resume_token {
                eprintln!("resume with --start-token {t}");
            }
            ExitCode::FAILURE
        }
    }
}
