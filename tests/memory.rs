//! Memory per invocation: a batch of S3Url records whose payloads are all at the size cap stays well under the
//! sync processor's memory. Its own test binary, with this one test, so that the process's peak resident set
//! (`VmHWM`, what Lambda reports as "Max Memory Used") belongs to this batch alone.

#![allow(clippy::unwrap_used, reason = "test helpers fail loudly")]

use e2e::Harness;
use serde_json::{Value, json};
use sync_processor::handler::{METRIC_CHANGES_FORWARDED, METRIC_DEAD_LETTERED};
use sync_processor::payload::METRIC_S3_FETCHES;

const MIB: u64 = 1024 * 1024;
const POOL: &str = "us-east-1:00000000-0000-4000-8000-000000000000";
const T: i64 = 1_700_000_000_000;

/// Peak resident set of this process so far, from /proc/self/status.
fn peak_rss_bytes() -> u64 {
    devtools::peak_rss_kib("self").unwrap() * 1024
}

/// The sync processor's `MemorySize` in infra/template.yaml, in bytes.
fn function_memory_bytes() -> u64 {
    let path = e2e::root().join("infra/template.yaml");
    let t: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let f = t["Resources"]
        .as_mapping()
        .unwrap()
        .values()
        .find(|r| {
            r["Metadata"]["BuildProperties"]["Binary"].as_str()
                == Some(sync_processor::handler::FUNCTION_NAME)
        })
        .unwrap();
    f["Properties"]["MemorySize"].as_u64().unwrap() * MIB
}

/// A Cognito Sync S3Url payload just under `cap` bytes: 16 changes of about 255 KiB each (Cognito itself keeps a
/// dataset under 1 MB; the cap is what we accept).
fn maximal_payload(cap: u64) -> Vec<u8> {
    let per_value = usize::try_from(cap / 16).unwrap() - 2_048;
    let changes: Vec<Value> = (0..16)
        .map(|i| {
            json!({"key": format!("k{i}"), "value": "x".repeat(per_value), "syncCount": 7,
                   "lastModifiedDate": T + 7_000, "deviceLastModifiedDate": T + 6_990, "op": "replace"})
        })
        .collect();
    let body = serde_json::to_vec(&changes).unwrap();
    assert!(
        body.len() as u64 <= cap && body.len() as u64 > cap - 64 * 1024,
        "{}",
        body.len()
    );
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_maximal_payloads_stays_under_the_function_memory() {
    let h = Harness::new().await;
    let (cap, budget) = (h.config.s3_payload_max_bytes, h.config.s3_payload_budget);
    let url = h.presigned("max/payload.json", maximal_payload(cap)).await;
    // 30 identities, each with one update at the cap: 120 MiB of payloads if all were fetched at once.
    let payloads: Vec<(String, Value)> = (0..30)
        .map(|i| {
            let identity = format!("us-east-1:{i:08x}-0000-4000-8000-000000000000");
            let doc = json!({"identityPoolId": POOL, "identityId": identity, "datasetName": "profile",
                             "operation": "replace", "payloadType": "S3Url", "syncCount": 7,
                             "lastModifiedDate": T + 7_000, "kinesisSyncRecordsURL": url});
            (identity, doc)
        })
        .collect();
    let event = devtools::events::event_from_payloads(
        &devtools::events::example_stream_arn("cognito-sync-source"),
        &payloads,
        1_700_000_100.0,
    );
    let before = peak_rss_bytes();
    let (response, m) = h.run(&event).await;
    let peak = peak_rss_bytes();
    let memory = function_memory_bytes();
    println!(
        "peak RSS {} MiB (before the batch {} MiB); function memory {} MiB; payload cap {} MiB, budget {} MiB",
        peak / MIB,
        before / MIB,
        memory / MIB,
        cap / MIB,
        budget / MIB
    );
    // The budget admits this many fetches; the other records are reported for retry, none dead-lettered.
    let fetched = budget / cap;
    assert_eq!(m.get(METRIC_S3_FETCHES), fetched);
    assert_eq!(m.get(METRIC_CHANGES_FORWARDED), fetched * 16);
    assert_eq!(m.get(METRIC_DEAD_LETTERED), 0);
    assert_eq!(response.batch_item_failures.len() as u64, 30 - fetched);
    // The whole process (test harness and a debug build included) within the function's memory, with a quarter of
    // it left for what a test process does not have (the Lambda runtime's own share).
    assert!(
        peak < memory * 3 / 4,
        "peak RSS {} MiB against {} MiB of function memory",
        peak / MIB,
        memory / MIB
    );
}
