//! The auth-analytics demo on the local emulator (run under scripts/with-moto):
//! `scripts/with-moto cargo run -q -p devtools --bin demo-auth`.
//!
//! Sends every trigger sample (`events/auth/*.json`) through the trigger forwarder; puts the user-activity
//! subscription records of `events/auth-activity-log.json` on a source stream, as a CloudWatch Logs
//! subscription filter would, and hands the log forwarder the Kinesis event Lambda would build from them;
//! then prints every auth event that landed and exits non-zero if any is missing.

use std::path::Path;
use std::process::ExitCode;

use auth_analytics::config::{self as cfg, LogConfig, TriggerConfig};
use auth_analytics::trigger_handler::Outcome;
use auth_analytics::{LogForwarder, TriggerForwarder};
use aws_sdk_kinesis::primitives::Blob;
use base64::Engine as _;
use bridge_core::Deadline;
use bridge_core::kinesis_event::RawKinesisEvent;
use bridge_core::pipeline::Flow as _;
use bridge_core::telemetry::Metrics;
use devtools::emulator::unique_name;
use devtools::events::event_from_stream_records;
use devtools::{LocalAws, sizes};
use serde_json::Value;

/// Auth events the samples must produce: 13 trigger sources and 7 user-activity entries.
const EXPECTED_EVENTS: usize = 20;

fn main() -> ExitCode {
    devtools::run_main("demo-auth", run())
}

fn read_json(path: &Path) -> Result<Value, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{} is not JSON: {e}", path.display()))
}

async fn run() -> Result<(), String> {
    let events_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events");
    let aws = LocalAws::from_env().await.map_err(|e| e.to_string())?;
    let (output, source, bucket) = (
        unique_name("cognito-auth-events"),
        unique_name("cognito-user-activity"),
        unique_name("cognito-auth-demo"),
    );
    aws.create_stream(&output, 1)
        .await
        .map_err(|e| e.to_string())?;
    let source_arn = aws
        .create_stream(&source, 1)
        .await
        .map_err(|e| e.to_string())?;
    aws.create_bucket(&bucket)
        .await
        .map_err(|e| e.to_string())?;
    let env: std::collections::HashMap<String, String> = [
        (cfg::ENV_OUTPUT_STREAM, output.as_str()),
        (cfg::ENV_DEAD_LETTER_BUCKET, bucket.as_str()),
        (cfg::ENV_PUT_BUDGET_MS, "2000"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();

    println!("== auth-trigger-forwarder: every trigger sample");
    let triggers = TriggerForwarder::connect(
        &TriggerConfig::from_env(&env).map_err(|e| e.to_string())?,
        &aws.sdk,
    );
    let mut samples: Vec<_> = std::fs::read_dir(events_dir.join("auth"))
        .map_err(|e| format!("cannot read events/auth: {e}"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    samples.sort();
    for path in &samples {
        let input = read_json(path)?;
        let (response, outcome) = triggers
            .forward(input.clone(), chrono::Utc::now(), &Metrics::new())
            .await;
        let same = if response == input {
            "unchanged"
        } else {
            "CHANGED"
        };
        let what = match outcome {
            Outcome::Forwarded { event_id } => format!("forwarded {event_id}"),
            other => format!("{other:?}"),
        };
        println!(
            "  {:<42} response {same}, {what}",
            input["triggerSource"].as_str().unwrap_or("?")
        );
    }

    println!("== auth-log-forwarder: events/auth-activity-log.json through a source stream");
    let sample = read_json(&events_dir.join("auth-activity-log.json"))?;
    for record in sample["Records"].as_array().into_iter().flatten() {
        let data = base64::engine::general_purpose::STANDARD
            .decode(record["kinesis"]["data"].as_str().unwrap_or_default())
            .map_err(|e| format!("sample data: {e}"))?;
        aws.kinesis
            .put_record()
            .stream_name(&source)
            .partition_key(record["kinesis"]["partitionKey"].as_str().unwrap_or("pk"))
            .data(Blob::new(data))
            .send()
            .await
            .map_err(|e| format!("PutRecord: {e}"))?;
    }
    let records = aws.read_stream(&source).await.map_err(|e| e.to_string())?;
    let event = event_from_stream_records(&source_arn, "shardId-000000000000", &records);
    let raw: RawKinesisEvent = serde_json::from_value(event).map_err(|e| e.to_string())?;
    let logs = LogForwarder::connect(
        &LogConfig::from_env(&env).map_err(|e| e.to_string())?,
        &aws.sdk,
        aws.s3.clone(),
    );
    let metrics = Metrics::new();
    let response = logs.process(raw, Deadline::none(), &metrics).await;
    let log_sizes: Vec<usize> = records.iter().map(|r| r.data.as_ref().len()).collect();
    println!(
        "  {} (gzip subscription records), {} control messages skipped, {} batch item failures",
        sizes::summary(&log_sizes),
        metrics.get(auth_analytics::log_handler::METRIC_CONTROL_MESSAGES),
        response.batch_item_failures.len()
    );

    let landed = aws.read_stream(&output).await.map_err(|e| e.to_string())?;
    let sizes: Vec<usize> = landed.iter().map(|r| r.data.as_ref().len()).collect();
    println!("== auth events on {output}: {}", sizes::summary(&sizes));
    for r in &landed {
        let doc: Value = serde_json::from_slice(r.data.as_ref()).map_err(|e| e.to_string())?;
        let ctx = &doc["context"];
        println!(
            "  {:<30} {:<12} sub={:<38} platform={} ip={} country={}",
            doc["type"].as_str().unwrap_or("?"),
            doc["origin"].as_str().unwrap_or("?"),
            doc["user_sub"].as_str().unwrap_or("-"),
            ctx["platform"].as_str().unwrap_or("-"),
            ctx["ip"].as_str().unwrap_or("-"),
            ctx["country"].as_str().unwrap_or("-"),
        );
    }
    println!(
        "{} auth events landed (expected {EXPECTED_EVENTS})",
        landed.len()
    );
    if landed.len() == EXPECTED_EVENTS && response.batch_item_failures.is_empty() {
        Ok(())
    } else {
        Err("the auth demo did not land every expected event".into())
    }
}
