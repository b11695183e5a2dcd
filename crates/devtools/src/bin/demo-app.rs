//! The app analytics demo on the local emulator (run under scripts/with-moto):
//! `scripts/with-moto cargo run -q -p devtools --bin demo-app`.
//!
//! Hands the app event forwarder the sample Kinesis events `events/app-events.json` (both input shapes, a
//! resend, a slow client clock) and `events/app-hostile.json` (hostile client records) as Lambda would (their
//! arrival times are the samples' own, so the clock checks judge them as written), prints what landed on the
//! output stream and what was refused, and exits non-zero unless every good event landed once and every
//! hostile record was dead-lettered.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use app_events::{AppEventForwarder, Config};
use bridge_core::Deadline;
use bridge_core::kinesis_event::RawKinesisEvent;
use bridge_core::pipeline::{Flow as _, METRIC_DEAD_LETTERED};
use bridge_core::telemetry::Metrics;
use devtools::emulator::unique_name;
use devtools::{LocalAws, sizes};
use serde_json::Value;

/// Distinct app events the samples must produce: 5 of app-events.json (a resend collapses), 2 of app-hostile.json.
const EXPECTED_EVENTS: usize = 7;
/// Hostile records that must be refused.
const EXPECTED_DEAD_LETTERS: u64 = 7;

fn main() -> ExitCode {
    devtools::run_main("demo-app", run())
}

async fn run() -> Result<(), String> {
    let events_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events");
    let aws = LocalAws::from_env().await.map_err(|e| e.to_string())?;
    let (output, bucket) = (unique_name("app-event-out"), unique_name("app-demo"));
    aws.create_stream(&output, 1)
        .await
        .map_err(|e| e.to_string())?;
    aws.create_bucket(&bucket)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "== app-event-forwarder: the sample events events/app-events.json and events/app-hostile.json"
    );
    let env: HashMap<String, String> = HashMap::from([
        (
            app_events::config::ENV_OUTPUT_STREAM.to_owned(),
            output.clone(),
        ),
        (
            app_events::config::ENV_DEAD_LETTER_BUCKET.to_owned(),
            bucket.clone(),
        ),
    ]);
    let config = Config::from_env(&env).map_err(|e| e.to_string())?;
    let forwarder = AppEventForwarder::connect(&config, &aws.sdk, aws.s3.clone());
    let metrics = Metrics::new();
    let mut failures = 0;
    for name in ["app-events.json", "app-hostile.json"] {
        let path = events_dir.join(name);
        let sample: RawKinesisEvent = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let response = forwarder.process(sample, Deadline::none(), &metrics).await;
        failures += response.batch_item_failures.len();
    }

    let landed = aws.read_stream(&output).await.map_err(|e| e.to_string())?;
    let landed_sizes: Vec<usize> = landed.iter().map(|r| r.data.as_ref().len()).collect();
    println!(
        "== app events on {output}: {}",
        sizes::summary(&landed_sizes)
    );
    for r in &landed {
        let doc: Value = serde_json::from_slice(r.data.as_ref()).map_err(|e| e.to_string())?;
        println!(
            "  {:<16} {:<9} user={:<38} anon={:<40} at={} offset_ms={}",
            doc["event"].as_str().unwrap_or("?"),
            doc["context"]["input_shape"].as_str().unwrap_or("?"),
            doc["user_id"].as_str().unwrap_or("-"),
            doc["anonymous_id"].as_str().unwrap_or("-"),
            doc["timestamp"].as_str().unwrap_or("-"),
            doc["clock"]["offset_ms"]
        );
    }
    let letters = aws
        .read_objects(&bucket, "dead-letter/app-event-forwarder/")
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "== refused (dead-lettered with their reasons): {}",
        letters.len()
    );
    for (_, body) in &letters {
        let letter: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let reason: String = letter["reason"]
            .as_str()
            .unwrap_or("?")
            .chars()
            .take(110)
            .collect();
        println!("  {reason}");
    }
    println!(
        "{} app events landed (expected {EXPECTED_EVENTS}), {} duplicates dropped, {} dead-lettered (expected {EXPECTED_DEAD_LETTERS}), {} batch item failures",
        landed.len(),
        metrics.get(app_events::handler::METRIC_DUPLICATES_DROPPED),
        metrics.get(METRIC_DEAD_LETTERED),
        failures
    );
    if landed.len() == EXPECTED_EVENTS
        && metrics.get(METRIC_DEAD_LETTERED) == EXPECTED_DEAD_LETTERS
        && failures == 0
    {
        Ok(())
    } else {
        Err(
            "the app demo did not land every expected event, or let a hostile record through"
                .into(),
        )
    }
}
