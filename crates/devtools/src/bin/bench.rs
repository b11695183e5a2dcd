//! `make bench`: what the sync processor costs on this machine, measured, not remembered.
//!
//! The ports are in memory (they cost nothing), so the numbers are our own code: decoding, dedup decisions,
//! envelopes, batching. Cases: a 10,000-record batch of new changes (Lambda's largest), the same batch
//! replayed (everything a duplicate), a batch of 1,000 records of 10 changes each, and parsing a 1 MiB S3Url
//! payload. Memory is the process's peak resident set size after all cases.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bridge_core::Deadline;
use bridge_core::dead_letter::DeadLetterWriter;
use bridge_core::kinesis_event::RawKinesisEvent;
use bridge_core::pipeline::Flow as _;
use bridge_core::producer::{LargePayloads, Producer};
use bridge_core::retry::Backoff;
use bridge_core::telemetry::Metrics;
use bridge_core::testing::{MemoryBlobs, MemoryDedup, MemorySink};
use devtools::events::{event_from_payloads, example_stream_arn};
use serde_json::{Value, json};
use sync_processor::Processor;
use sync_processor::payload::{PayloadFetcher, UrlPolicy};

const ROUNDS: usize = 5;

fn change(i: usize, key: usize, sync_count: i64) -> Value {
    json!({"key": format!("key-{key}"), "value": format!("{{\"score\":{i},\"badge\":\"gold\",\"note\":\"benchmark value\"}}"),
           "syncCount": sync_count, "lastModifiedDate": 1_700_000_000_000_i64 + sync_count, "deviceLastModifiedDate": 1_700_000_000_000_i64, "op": "replace"})
}

fn batch(records: usize, changes_per_record: usize) -> RawKinesisEvent {
    let docs: Vec<(String, Value)> = (0..records)
        .map(|i| {
            let identity = format!("us-east-1:00000000-0000-4000-8000-{:012}", i % 500);
            let changes: Vec<Value> = (0..changes_per_record).map(|c| change(i, i * changes_per_record + c, 1)).collect();
            let doc = json!({"identityPoolId": "us-east-1:00000000-0000-4000-8000-000000000000", "identityId": identity,
                             "datasetName": "game", "operation": "replace", "payloadType": "Inline", "syncCount": 1,
                             "lastModifiedDate": 1_700_000_000_001_i64, "kinesisSyncRecords": changes});
            (identity, doc)
        })
        .collect();
    let event = event_from_payloads(&example_stream_arn("bench"), &docs, 1_700_000_100.0);
    serde_json::from_value(event).unwrap_or(RawKinesisEvent {
        records: Vec::new(),
    })
}

fn processor(dedup: Arc<MemoryDedup>) -> Option<Processor> {
    let blobs = Arc::new(MemoryBlobs::default());
    let producer = Producer::new(
        Arc::new(MemorySink::default()),
        Some(LargePayloads {
            store: blobs.clone(),
            bucket: "bench".into(),
        }),
        Backoff::default(),
    );
    let fetcher =
        PayloadFetcher::new(UrlPolicy::default(), 16 << 20, Duration::from_secs(5), 3).ok()?;
    Some(Processor::new(
        producer,
        dedup,
        DeadLetterWriter::new(blobs, "bench"),
        fetcher,
    ))
}

fn report(name: &str, records: usize, changes: usize, times: &mut [Duration]) {
    times.sort();
    let median = times[times.len() / 2];
    #[allow(clippy::cast_precision_loss)]
    let per_record_us = median.as_secs_f64() * 1e6 / records as f64;
    #[allow(clippy::cast_precision_loss)]
    let rate = records as f64 / median.as_secs_f64();
    println!(
        "{name:<44} {records:>6} records {changes:>6} changes  median {:>8.2} ms  min {:>8.2} ms  {per_record_us:>6.2} µs/record  {rate:>9.0} records/s",
        median.as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3
    );
}

#[tokio::main]
async fn main() {
    // `BENCH_ONLY=rollup`: the rollup's cost alone (its counts of units and requests do not depend on the build).
    if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "rollup") {
        rollup_costs().await;
        return;
    }
    println!(
        "sync-processor benchmark: in-memory ports, median of {ROUNDS} rounds, release build, this machine"
    );
    for (name, records, per_record) in [
        ("new changes, 10,000 records x 1 change", 10_000, 1),
        ("new changes, 1,000 records x 10 changes", 1_000, 10),
    ] {
        let mut new_times = Vec::new();
        let mut replay_times = Vec::new();
        for _ in 0..ROUNDS {
            let dedup = Arc::new(MemoryDedup::default());
            let Some(p) = processor(dedup) else {
                eprintln!("bench: cannot build the processor");
                std::process::exit(1);
            };
            let (event, replay) = (batch(records, per_record), batch(records, per_record));
            let metrics = Metrics::new();
            let started = Instant::now();
            let response = p.process(event, Deadline::none(), &metrics).await;
            new_times.push(started.elapsed());
            assert!(
                response.batch_item_failures.is_empty()
                    && metrics.get("ChangesForwarded") == (records * per_record) as u64
            );
            let metrics = Metrics::new();
            let started = Instant::now();
            p.process(replay, Deadline::none(), &metrics).await;
            replay_times.push(started.elapsed());
            assert_eq!(
                metrics.get("DuplicatesDropped"),
                (records * per_record) as u64
            );
        }
        report(name, records, records * per_record, &mut new_times);
        report(
            &format!("{name}, replayed (all duplicates)"),
            records,
            0,
            &mut replay_times,
        );
    }

    // About 1 MiB: the size of the largest dataset, the body of a large S3Url payload.
    let payload: Vec<Value> = (0..6_000).map(|i| change(i, i, 1)).collect();
    let body = serde_json::to_vec(&payload).unwrap_or_default();
    let mut times = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let parsed =
            sync_processor::record::parse_s3_payload(std::io::BufReader::new(body.as_slice()))
                .map(|r| r.len());
        times.push(started.elapsed());
        assert!(parsed.is_ok());
    }
    times.sort();
    #[allow(clippy::cast_precision_loss)]
    let mib_s = body.len() as f64 / (1 << 20) as f64 / times[ROUNDS / 2].as_secs_f64();
    println!(
        "{:<44} {:>6} bytes  median {:>8.2} ms  {mib_s:>8.1} MiB/s",
        "S3Url payload parse",
        body.len(),
        times[ROUNDS / 2].as_secs_f64() * 1e3
    );
    match devtools::peak_rss_kib("self") {
        Some(kib) => println!(
            "peak resident memory of the benchmark process: {:.1} MiB",
            kib as f64 / 1024.0
        ),
        None => println!("peak resident memory: not available on this system"),
    }
    rollup_costs().await;
}

/// The active-users rollup's DynamoDB cost per million events, on a month shaped like a real app
/// (`devtools::workload`, 1% of a 1M-monthly-user app), metered by DynamoDB's rules from each design's own code:
/// the current one through the real rollup over an in-memory table, the previous one from its planner.
async fn rollup_costs() {
    use bridge_core::pipeline::Flow as _;
    let started = Instant::now();
    let users = std::env::var("BENCH_ROLLUP_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    // Batches as the template's rollup mapping makes them (its batch size).
    let batch_size = std::fs::read_to_string("infra/template.yaml")
        .ok()
        .and_then(|t| {
            devtools::esm::MappingSettings::from_template(&t, "ActiveUsersFunction", "AuthEvents")
                .ok()
        })
        .map_or(2_000, |m| m.batch_size);
    let workload = devtools::workload::generate(users, batch_size);
    let table = std::sync::Arc::new(active_users::table::Memory::new());
    let dims = vec![
        "platform".to_owned(),
        "app_version".to_owned(),
        "locale".to_owned(),
    ];
    let (_, rollup, _) = devtools::synthetic::memory_rollup(table.clone(), dims.clone());
    let mut feeds: std::collections::BTreeMap<(&str, usize), devtools::synthetic::Feed> =
        std::collections::BTreeMap::new();
    let mut legacy = devtools::legacy_rollup::LegacyModel::default();
    let mut delivered = 0u64;
    {
        for (stream, shard, docs, twice) in &workload.batches {
            let feed = feeds
                .entry((stream, *shard))
                .or_insert_with(|| devtools::synthetic::Feed::new(stream, *shard));
            let metrics = bridge_core::telemetry::Metrics::new();
            let rounds = if *twice { 2 } else { 1 };
            for round in 0..rounds {
                let event = if round == 0 {
                    feed.event(docs)
                } else {
                    feed.again(docs)
                };
                rollup
                    .process(event, bridge_core::Deadline::none(), &metrics)
                    .await;
                delivered += docs.len() as u64;
                let activities: Vec<(usize, active_users::activity::Activity)> = docs
                    .iter()
                    .enumerate()
                    .filter_map(|(j, d)| {
                        let bytes = serde_json::to_vec(d).ok()?;
                        Some((j, active_users::activity::read(&bytes, &dims).ok()?))
                    })
                    .collect();
                legacy.batch(&activities);
            }
        }
    }
    use active_users::table::Table as _;
    let current = table.meter().costs();
    let per_million = |x: f64| x / workload.events as f64 * 1e6;
    println!(
        "\nactive-users rollup, DynamoDB cost per million events: {} monthly users (of the issue's 1M-user app), {} \
         events generated, {delivered} delivered (resends, late events and redelivered batches included) in batches \
         of {batch_size} (the template's RollupBatchSize), metered by DynamoDB's rules; {:.1} s",
        workload.users,
        workload.events,
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<34} {:>12} {:>12} {:>12} {:>10}",
        "design", "read units", "write units", "requests", "dollars"
    );
    for (name, c) in [
        ("lanes and histories (current)", &current),
        ("markers and sketches (previous)", &legacy.costs),
    ] {
        println!(
            "{:<34} {:>12.0} {:>12.0} {:>12.0} {:>10.3}",
            name,
            per_million(c.read_units),
            per_million(c.write_units as f64),
            per_million(c.request_count() as f64),
            per_million(c.dollars())
        );
    }
    println!(
        "requests of the current design: {:?}; a 1M-monthly-user app (90M events a month): ${:.0} a month \
         (previous design: ${:.0})",
        current.requests,
        per_million(current.dollars()) * 90.0,
        per_million(legacy.costs.dollars()) * 90.0
    );
}
