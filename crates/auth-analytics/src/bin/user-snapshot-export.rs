//! `user-snapshot-export`: a command that publishes one profile snapshot record per user of a pool.
//!
//! ```text
//! USER_POOL_ID=us-east-1_EXAMPLE AUTH_OUTPUT_STREAM_NAME=auth-events user-snapshot-export \
//!     [--start-token TOKEN] [--max-pages N]
//! ```
//! Progress and the token to resume from go to stderr after every page.

use std::process::ExitCode;
use std::sync::Arc;

use auth_analytics::config::ExportConfig;
use auth_analytics::export::SnapshotExporter;
use bridge_core::config::ProcessEnv;
use bridge_core::producer::{KinesisSink, Producer, RetryPolicy};
use bridge_core::telemetry::Metrics;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> ExitCode {
    bridge_core::telemetry::init_logging();
    let sdk = bridge_core::aws::sdk_config().await;
    let config = match ExportConfig::load(&ProcessEnv, &sdk).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("user-snapshot-export: {e}");
            return ExitCode::from(2);
        }
    };
    let max_pages = match arg("--max-pages").map(|m| m.parse::<u64>()) {
        None => None,
        Some(Ok(m)) => Some(m),
        Some(Err(e)) => {
            eprintln!("user-snapshot-export: --max-pages: {e}");
            return ExitCode::from(2);
        }
    };
    let sink = KinesisSink::new(aws_sdk_kinesis::Client::new(&sdk), &config.output_stream);
    let exporter = SnapshotExporter::new(
        aws_sdk_cognitoidentityprovider::Client::new(&sdk),
        Producer::new(Arc::new(sink), None, RetryPolicy::default()),
        &config.user_pool_id,
        config.list_users_rate,
        config.sharing.clone(),
    );
    let metrics = Metrics::new();
    let result = exporter
        .run(arg("--start-token"), max_pages, &metrics, |p| {
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
