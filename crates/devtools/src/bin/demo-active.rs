//! The active-users demo on the local emulator (run under scripts/with-moto):
//! `scripts/with-moto cargo run -q -p devtools --bin demo-active`.
//!
//! Puts a generated month of auth and app events (`devtools::synthetic`: schema-valid records as the forwarders
//! write them) on local auth and app event streams, reads them back and hands them to the active-users rollup in
//! batches of 500 as the event source mapping would, and exits non-zero unless every day's active users and
//! sign-ins are exact. `make demo` then runs `report --table demo-active-users` on the same emulator.

use std::process::ExitCode;

use active_users::activity::Definition;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use bridge_core::Deadline;
use bridge_core::kinesis_event::RawKinesisEvent;
use bridge_core::pipeline::Flow as _;
use bridge_core::telemetry::Metrics;
use devtools::LocalAws;
use devtools::emulator::unique_name;
use devtools::synthetic::{DAYS, POOL, day, generate};

/// Users of the demo month (moto's transactions copy the table per item: a few dozen users keep it quick).
const USERS: u32 = 40;
/// The rollup table of the demo (each demo step gets a fresh emulator, so a fixed name is safe): `make demo` runs
/// `report --table demo-active-users` against it afterwards, which prints the tables and writes the charts.
const TABLE: &str = "demo-active-users";

fn main() -> ExitCode {
    devtools::run_main("demo-active", run())
}

async fn run() -> Result<(), String> {
    let s = |e: &dyn std::fmt::Display| e.to_string();
    let aws = LocalAws::from_env().await.map_err(|e| s(&e))?;
    let (auth_stream, app_stream, table, bucket) = (
        unique_name("auth-events"),
        unique_name("app-events"),
        TABLE.to_owned(),
        unique_name("bridge"),
    );
    let auth_arn = aws
        .create_stream(&auth_stream, 1)
        .await
        .map_err(|e| s(&e))?;
    let app_arn = aws.create_stream(&app_stream, 1).await.map_err(|e| s(&e))?;
    aws.create_rollup_table(&table).await.map_err(|e| s(&e))?;
    aws.create_bucket(&bucket).await.map_err(|e| s(&e))?;

    let month = generate(USERS);
    println!(
        "active users: {} generated events of {USERS} users over November 2026 onto {auth_stream} and {app_stream}",
        month.events.len()
    );
    for chunk in month.events.chunks(500) {
        for (stream, schema) in [
            (&auth_stream, "cognito-auth-event/v1"),
            (&app_stream, "app-event/v1"),
        ] {
            let mut entries = Vec::new();
            for (_, e) in chunk.iter().filter(|(_, e)| e["schema"] == schema) {
                let key = e["user_sub"]
                    .as_str()
                    .or(e["user_id"].as_str())
                    .unwrap_or("anonymous");
                let data = serde_json::to_vec(e).map_err(|e| s(&e))?;
                entries.push(
                    PutRecordsRequestEntry::builder()
                        .partition_key(key)
                        .data(Blob::new(data))
                        .build()
                        .map_err(|e| s(&e))?,
                );
            }
            if entries.is_empty() {
                continue;
            }
            let out = aws
                .kinesis
                .put_records()
                .stream_name(stream.as_str())
                .set_records(Some(entries))
                .send()
                .await
                .map_err(|e| s(&aws_sdk_kinesis::error::DisplayErrorContext(e)))?;
            if out.failed_record_count().unwrap_or(0) > 0 {
                return Err(format!("{stream}: some records were not stored"));
            }
        }
    }

    let (store, rollup) = devtools::synthetic::local_rollup(
        &aws,
        &table,
        &bucket,
        vec!["platform".into(), "app_version".into(), "locale".into()],
    );
    let metrics = Metrics::new();
    let mut batches = 0;
    for (stream, arn) in [(&auth_stream, &auth_arn), (&app_stream, &app_arn)] {
        let records = aws.read_stream(stream).await.map_err(|e| s(&e))?;
        for chunk in records.chunks(500) {
            let event =
                devtools::events::event_from_stream_records(arn, "shardId-000000000000", chunk);
            let event: RawKinesisEvent = serde_json::from_value(event).map_err(|e| s(&e))?;
            let response = rollup.process(event, Deadline::none(), &metrics).await;
            if !response.batch_item_failures.is_empty() {
                return Err(format!(
                    "{} records of a batch failed",
                    response.batch_item_failures.len()
                ));
            }
            batches += 1;
        }
    }
    println!(
        "rolled up in {batches} batches: {} markers in {} transactions, {} sketch writes",
        metrics.get(active_users::handler::METRIC_MARKERS_WRITTEN),
        metrics.get(active_users::handler::METRIC_TRANSACTIONS),
        metrics.get(active_users::handler::METRIC_SKETCHES_WRITTEN),
    );

    let pool = format!("pool={POOL}");
    let (rows, month_to_date) =
        devtools::report::rows(&store, Definition::Authenticating, &pool, day(1), day(DAYS))
            .await
            .map_err(|e| s(&e))?;
    println!("{pool}: {month_to_date} authenticating users this month");
    let mut wrong = Vec::new();
    for (d, r) in (1..=DAYS).zip(&rows) {
        let active = month.auth_active.get(&d).map_or(0, |u| u.len()) as i64;
        let sign_ins = month.sign_ins.get(&d).copied().unwrap_or(0) as i64;
        if r.active != active || r.event("sign_ins") != sign_ins {
            wrong.push(format!(
                "day {d}: active {} (expected {active}), sign-ins {} (expected {sign_ins})",
                r.active,
                r.event("sign_ins")
            ));
        }
    }
    if wrong.is_empty() {
        println!(
            "every day's active users and sign-ins are exact; the report of table {TABLE} follows"
        );
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}
