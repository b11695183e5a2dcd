//! The chaos run of the sync processor: its real binary, behind the local Runtime API, driven by the local event
//! source mapping with the template's settings (bisection, retries), talking to moto through the fault proxy
//! (`devtools::proxy`): per-entry PutRecords throttles, throttles and 5xx on every service, responses lost after
//! the request was applied, one process killed mid-batch and one invocation that runs out of time.
//!
//! The same input runs once without faults; what it forwards is the expectation. Under faults: every expected
//! change is present (nothing lost), nothing else is (no stale version, nothing invented), every repeat carries an
//! `event_id` already seen, no batch is given up, the dead letters are the same, and each identity's changes come
//! in the order of their source records. `make test` runs it at `CHAOS_RECORDS` (default 600) records; `make
//! chaos` at 10,000.

#![allow(clippy::unwrap_used, reason = "test helpers fail loudly")]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use devtools::LocalAws;
use devtools::emulator::unique_name;
use devtools::esm::{InvokeOutcome, Invoker, LocalMapping, MappingSettings};
use devtools::proxy::{ClientConnections, CountingProxy, FaultPlan};
use devtools::runtime_api::LocalFunction;
use serde_json::{Value, json};

const POOL: &str = "us-east-1:00000000-0000-4000-8000-000000000000";
const T: i64 = 1_700_000_000_000;

fn records() -> usize {
    std::env::var("CHAOS_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600)
}

fn identity(i: usize) -> String {
    format!("us-east-1:00000000-0000-4000-8000-{i:012}")
}

fn change_doc(id: usize, dataset: &str, keys: &[(usize, i64)], at: i64) -> Value {
    let sync_count = keys.iter().map(|k| k.1).max().unwrap_or(1);
    let changes: Vec<Value> = keys
        .iter()
        .map(|(k, sc)| json!({"key": format!("k{k}"), "value": format!("v{sc}"), "syncCount": sc,
            "lastModifiedDate": at, "deviceLastModifiedDate": at - 10, "op": "replace"}))
        .collect();
    json!({"identityPoolId": POOL, "identityId": identity(id), "datasetName": dataset, "operation": "replace",
           "payloadType": "Inline", "syncCount": sync_count, "lastModifiedDate": at, "kinesisSyncRecords": changes})
}

/// Live updates per identity, bulk-publish repeats (exact copies), stale replays (older versions after newer
/// ones), and one dataset removed and re-created (its sync counts start over).
fn input(n: usize) -> Vec<Value> {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut docs: Vec<Value> = Vec::with_capacity(n);
    let mut counts: BTreeMap<usize, i64> = BTreeMap::new();
    let mut clock = T;
    while docs.len() < n {
        clock += 1_000;
        let roll = rng.u32(0..100);
        if docs.len() == n / 2 {
            // Identity 0's "game" dataset is removed, then re-created from sync count 1.
            docs.push(json!({"identityPoolId": POOL, "identityId": identity(0), "datasetName": "game",
                             "operation": "remove", "syncCount": counts.get(&0).copied().unwrap_or(1) + 1,
                             "lastModifiedDate": clock}));
            counts.insert(0, 0);
            continue;
        }
        if roll < 10 && !docs.is_empty() {
            let again = docs[rng.usize(0..docs.len())].clone();
            docs.push(again);
            continue;
        }
        let id = rng.usize(0..40);
        let current = counts.entry(id).or_insert(0);
        let keys = rng.usize(1..=3);
        if roll < 15 && *current > 2 {
            let old: Vec<(usize, i64)> = (0..keys).map(|k| (k, *current - 2)).collect();
            docs.push(change_doc(id, "game", &old, clock - 500_000));
            continue;
        }
        *current += 1;
        let new: Vec<(usize, i64)> = (0..keys).map(|k| (k, *current)).collect();
        docs.push(change_doc(id, "game", &new, clock));
    }
    docs
}

/// One run: a source stream holding `docs`, the function behind `plan`'s proxy, drained by the mapping.
struct RunResult {
    outputs: Vec<Value>,
    dead_letters: usize,
    given_up: usize,
    invocations: usize,
    injected: BTreeMap<String, u64>,
    failed_invocations: Vec<String>,
}

/// Kills the process mid-invocation on call `crash_at`, freezes it (SIGSTOP) on call `freeze_at` so that the
/// invocation runs out of time; otherwise passes the call through.
struct Saboteur {
    function: Arc<LocalFunction>,
    calls: AtomicUsize,
    crash_at: Option<usize>,
    freeze_at: Option<usize>,
    /// Outcomes other than a response, as seen by the mapping.
    failures: std::sync::Mutex<Vec<String>>,
}

#[async_trait]
impl Invoker for Saboteur {
    async fn invoke(&self, event: Value) -> InvokeOutcome {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let signal = if Some(n) == self.crash_at {
            Some("-KILL")
        } else if Some(n) == self.freeze_at {
            Some("-STOP")
        } else {
            None
        };
        if let Some(signal) = signal {
            // Make sure the process exists, then hit it while it works on the batch.
            let _ = self.function.warm().await;
            if let Some(pid) = self.function.pid().await {
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    let _ = tokio::process::Command::new("kill")
                        .arg(signal)
                        .arg(pid.to_string())
                        .status()
                        .await;
                });
            }
        }
        let outcome = self.function.invoke(event).await;
        if !matches!(outcome, InvokeOutcome::Response(_))
            && let Ok(mut f) = self.failures.lock()
        {
            f.push(format!("{outcome:?}").chars().take(40).collect());
        }
        outcome
    }
}

async fn run(aws: &LocalAws, docs: &[Value], plan: Option<FaultPlan>) -> RunResult {
    let (source, out, table, bucket) = (
        unique_name("chaos-src"),
        unique_name("chaos-out"),
        unique_name("chaos-marks"),
        unique_name("chaos"),
    );
    let source_arn = aws.create_stream(&source, 2).await.unwrap();
    aws.create_stream(&out, 2).await.unwrap();
    aws.create_dedup_table(&table).await.unwrap();
    aws.create_bucket(&bucket).await.unwrap();
    for chunk in docs.chunks(500) {
        let entries: Vec<PutRecordsRequestEntry> = chunk
            .iter()
            .map(|d| {
                PutRecordsRequestEntry::builder()
                    .partition_key(d["identityId"].as_str().unwrap())
                    .data(Blob::new(serde_json::to_vec(d).unwrap()))
                    .build()
                    .unwrap()
            })
            .collect();
        let put = aws
            .kinesis
            .put_records()
            .stream_name(&source)
            .set_records(Some(entries))
            .send()
            .await
            .unwrap();
        assert_eq!(put.failed_record_count(), Some(0));
    }
    let faulty = plan.is_some();
    let proxy = CountingProxy::with_faults(&aws.endpoint, ClientConnections::KeepAlive, plan)
        .await
        .unwrap();
    let env = vec![
        ("OUTPUT_STREAM_NAME".to_owned(), out.clone()),
        ("DEDUP_TABLE_NAME".to_owned(), table),
        ("DEAD_LETTER_BUCKET".to_owned(), bucket.clone()),
        ("AWS_ENDPOINT_URL".to_owned(), proxy.endpoint.clone()),
    ];
    let binary = e2e::root().join("target/debug/sync-processor");
    assert!(binary.exists(), "build the binaries first (make test does)");
    let function = LocalFunction::start("sync-processor", binary, env, Duration::from_secs(8))
        .await
        .unwrap();
    let template = std::fs::read_to_string(e2e::root().join("infra/template.yaml")).unwrap();
    let settings =
        MappingSettings::from_template(&template, "SyncProcessorFunction", "CognitoStream")
            .unwrap();
    let settings = MappingSettings {
        // Smaller batches than the template's 500 give the faults more invocations to land in.
        batch_size: 100,
        ..settings
    };
    let saboteur = Arc::new(Saboteur {
        function: function.clone(),
        calls: AtomicUsize::new(0),
        crash_at: faulty.then_some(1),
        freeze_at: faulty.then_some(3),
        failures: std::sync::Mutex::new(Vec::new()),
    });
    let sqs = aws_sdk_sqs::Client::new(&aws.sdk);
    let queue = sqs
        .create_queue()
        .queue_name(unique_name("chaos-on-failure"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let mapping = LocalMapping::new(
        aws.clone(),
        &source,
        &source_arn,
        "arn:aws:lambda:us-east-1:123456789012:function:sync-processor",
        settings,
        saboteur.clone(),
    )
    .with_on_failure_queue(sqs, &queue);
    let report = mapping.drain().await.unwrap();
    function.stop().await;
    let mut outputs = Vec::new();
    // Per shard, in order (one identity always maps to one shard).
    let shards = aws.kinesis.list_shards().stream_name(&out).send().await.unwrap();
    for shard in shards.shards() {
        for r in aws
            .read_shard(&out, shard.shard_id(), devtools::emulator::ShardStart::TrimHorizon)
            .await
            .unwrap()
        {
            outputs.push(serde_json::from_slice(r.data.as_ref()).unwrap());
        }
    }
    let dead_letters = aws.read_objects(&bucket, "dead-letter/").await.unwrap().len();
    RunResult {
        outputs,
        dead_letters,
        given_up: report.on_failure.len(),
        invocations: report.invocations.len(),
        injected: proxy.injected.snapshot(),
        failed_invocations: saboteur.failures.lock().map(|f| f.clone()).unwrap_or_default(),
    }
}

/// The identities whose changes, in order of first appearance on the output stream, do not follow the order of
/// their source records (the source sequence number each change carries). Changes of one source record (the keys of
/// one sync) have no order among themselves.
fn out_of_order(outputs: &[Value]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut last: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut wrong = BTreeSet::new();
    for d in outputs {
        if !seen.insert(d["event_id"].as_str().unwrap().to_owned()) {
            continue;
        }
        let seq = d["source"]["sequence_number"].as_str().unwrap().to_owned();
        let position = (seq.len(), seq);
        let identity = d["identity_id"].as_str().unwrap().to_owned();
        if last.get(&identity).is_some_and(|p| *p > position) {
            wrong.insert(identity.clone());
        }
        last.insert(identity, position);
    }
    wrong.into_iter().collect()
}

fn input_identities(docs: &[Value]) -> usize {
    docs.iter()
        .filter_map(|d| d["identityId"].as_str())
        .collect::<BTreeSet<_>>()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_faults_nothing_is_lost_invented_or_reordered() {
    let aws = LocalAws::from_env().await.unwrap();
    let docs = input(records());
    let calm = run(&aws, &docs, None).await;
    assert_eq!(calm.given_up, 0);
    let plan = FaultPlan {
        seed: 20_261_201,
        entry_failure: 0.20,
        throttle: 0.03,
        server_error: 0.05,
        lost_response: 0.02,
        ..FaultPlan::default()
    };
    let chaos = run(&aws, &docs, Some(plan)).await;

    let expected: BTreeSet<&str> = calm
        .outputs
        .iter()
        .map(|d| d["event_id"].as_str().unwrap())
        .collect();
    let got: BTreeSet<&str> = chaos
        .outputs
        .iter()
        .map(|d| d["event_id"].as_str().unwrap())
        .collect();
    let lost: Vec<&&str> = expected.difference(&got).collect();
    let invented: Vec<&&str> = got.difference(&expected).collect();
    let repeats = chaos.outputs.len() - got.len();
    println!(
        "chaos: {} source records; without faults {} changes forwarded in {} invocations; under faults {} \
         records out ({} distinct, {repeats} repeats of an event_id already out) in {} invocations, {} lost, {} \
         not expected, {} dead letters (calm: {}), {} batches given up; faults injected: {:?}",
        docs.len(),
        expected.len(),
        calm.invocations,
        chaos.outputs.len(),
        got.len(),
        chaos.invocations,
        lost.len(),
        invented.len(),
        chaos.dead_letters,
        calm.dead_letters,
        chaos.given_up,
        chaos.injected
    );
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(invented.is_empty(), "not expected (stale or invented): {invented:?}");
    assert_eq!(chaos.given_up, 0, "no batch may be given up");
    assert_eq!(chaos.dead_letters, calm.dead_letters);
    // Order: each identity's changes come in the order of their source records, faults or not.
    assert!(out_of_order(&calm.outputs).is_empty());
    let reordered = out_of_order(&chaos.outputs);
    println!(
        "chaos: {} of {} identities out of order",
        reordered.len(),
        input_identities(&docs)
    );
    assert!(reordered.is_empty(), "identities whose changes came out of order: {reordered:?}");
    // The faults did happen.
    let total = |prefix: &str| -> u64 {
        chaos
            .injected
            .iter()
            .filter(|(k, _)| k.contains(prefix))
            .map(|(_, v)| v)
            .sum()
    };
    assert!(total("entry failed") > 0 && total("Throttle") > 0 && total("ServerError") > 0);
    assert!(total("LoseResponse") > 0, "{:?}", chaos.injected);
    assert!(chaos.invocations > calm.invocations, "faults cost retries");
    println!("chaos: invocations that failed whole: {:?}", chaos.failed_invocations);
    assert!(chaos.failed_invocations.iter().any(|f| f.starts_with("Crash")), "a process was killed mid-batch");
    assert!(chaos.failed_invocations.iter().any(|f| f.starts_with("Timeout")), "an invocation ran out of time");
    assert!(calm.failed_invocations.is_empty());
}
