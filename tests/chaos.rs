//! The chaos runs of the Kinesis-triggered forwarders (the sync processor, the auth log forwarder and the app event
//! forwarder): each real
//! binary, behind the local Runtime API, driven by the local event source mapping with the template's settings
//! (bisection, retries), talking to moto through the fault proxy (`devtools::proxy`): 20% of PutRecords entries
//! throttled, 3% throttles and 5% 500s on every service, 2% responses lost after the request was applied, one
//! process killed mid-batch and one invocation frozen until it runs out of time.
//!
//! The same input runs once without faults; what it forwards is the expectation. Under faults: every expected
//! output is present (nothing lost), nothing else is (no stale version, nothing invented), every repeat carries an
//! `event_id` already seen, no batch is given up, the dead letters are the same, and each identity's outputs come
//! in the order of their source records. `make test` runs them at `CHAOS_RECORDS` (default 600) records each;
//! `make chaos` at 10,000.

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
        .map(|(k, sc)| {
            json!({"key": format!("k{k}"), "value": format!("v{sc}"), "syncCount": sc,
            "lastModifiedDate": at, "deviceLastModifiedDate": at - 10, "op": "replace"})
        })
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

/// A Kinesis-triggered function under chaos: its binary, its template mapping, its variables (output stream,
/// dedup table and bucket names filled in), the source stream's shards, and the field of an output that names the
/// identity whose order is kept.
struct Case {
    binary: &'static str,
    logical: &'static str,
    event: &'static str,
    env: fn(&str, &str, &str) -> Vec<(String, String)>,
    shards: i32,
    identity: &'static str,
}

const SYNC: Case = Case {
    binary: "sync-processor",
    logical: "SyncProcessorFunction",
    event: "CognitoStream",
    env: |out, table, bucket| {
        vec![
            ("OUTPUT_STREAM_NAME".into(), out.into()),
            ("DEDUP_TABLE_NAME".into(), table.into()),
            ("DEAD_LETTER_BUCKET".into(), bucket.into()),
        ]
    },
    shards: 2,
    identity: "identity_id",
};

const AUTH_LOG: Case = Case {
    binary: "auth-log-forwarder",
    logical: "AuthLogForwarderFunction",
    event: "UserActivityLogs",
    env: |out, _, bucket| {
        vec![
            ("AUTH_OUTPUT_STREAM_NAME".into(), out.into()),
            ("DEAD_LETTER_BUCKET".into(), bucket.into()),
        ]
    },
    // CloudWatch Logs picks its own partition keys: one shard keeps a user's entries in order at the source.
    shards: 1,
    identity: "user_sub",
};

const APP: Case = Case {
    binary: "app-event-forwarder",
    logical: "AppEventForwarderFunction",
    event: "AppEvents",
    env: |out, _, bucket| {
        vec![
            ("OUTPUT_STREAM_NAME".into(), out.into()),
            ("DEAD_LETTER_BUCKET".into(), bucket.into()),
        ]
    },
    shards: 2,
    identity: "anonymous_id",
};

async fn run(
    aws: &LocalAws,
    case: &Case,
    input: &[(String, Vec<u8>)],
    plan: Option<FaultPlan>,
) -> RunResult {
    let (source, out, table, bucket) = (
        unique_name("chaos-src"),
        unique_name("chaos-out"),
        unique_name("chaos-marks"),
        unique_name("chaos"),
    );
    let source_arn = aws.create_stream(&source, case.shards).await.unwrap();
    aws.create_stream(&out, 2).await.unwrap();
    aws.create_dedup_table(&table).await.unwrap();
    aws.create_bucket(&bucket).await.unwrap();
    for chunk in input.chunks(500) {
        let entries: Vec<PutRecordsRequestEntry> = chunk
            .iter()
            .map(|(key, data)| {
                PutRecordsRequestEntry::builder()
                    .partition_key(key)
                    .data(Blob::new(data.clone()))
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
    let mut env = (case.env)(&out, &table, &bucket);
    env.push(("AWS_ENDPOINT_URL".to_owned(), proxy.endpoint.clone()));
    let binary = e2e::root().join("target/debug").join(case.binary);
    assert!(binary.exists(), "build the binaries first (make test does)");
    let function = LocalFunction::start(case.binary, binary, env, Duration::from_secs(8))
        .await
        .unwrap();
    let template = std::fs::read_to_string(e2e::root().join("infra/template.yaml")).unwrap();
    let settings = MappingSettings::from_template(&template, case.logical, case.event).unwrap();
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
        &format!(
            "arn:aws:lambda:us-east-1:123456789012:function:{}",
            case.binary
        ),
        settings,
        saboteur.clone(),
    )
    .with_on_failure_queue(sqs, &queue);
    let report = mapping.drain().await.unwrap();
    function.stop().await;
    let mut outputs = Vec::new();
    // Per shard, in order (one identity always maps to one shard).
    let shards = aws
        .kinesis
        .list_shards()
        .stream_name(&out)
        .send()
        .await
        .unwrap();
    for shard in shards.shards() {
        for r in aws
            .read_shard(
                &out,
                shard.shard_id(),
                devtools::emulator::ShardStart::TrimHorizon,
            )
            .await
            .unwrap()
        {
            outputs.push(serde_json::from_slice(r.data.as_ref()).unwrap());
        }
    }
    let dead_letters = aws
        .read_objects(&bucket, "dead-letter/")
        .await
        .unwrap()
        .len();
    RunResult {
        outputs,
        dead_letters,
        given_up: report.on_failure.len(),
        invocations: report.invocations.len(),
        injected: proxy.injected.snapshot(),
        failed_invocations: saboteur
            .failures
            .lock()
            .map(|f| f.clone())
            .unwrap_or_default(),
    }
}

/// The identities whose changes, in order of first appearance on the output stream, do not follow the order of
/// their source records (the source sequence number each change carries). Changes of one source record (the keys of
/// one sync) have no order among themselves.
fn out_of_order(outputs: &[Value], identity_field: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut last: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut wrong = BTreeSet::new();
    for d in outputs {
        if !seen.insert(d["event_id"].as_str().unwrap().to_owned()) {
            continue;
        }
        let seq = d["source"]["sequence_number"].as_str().unwrap().to_owned();
        let position = (seq.len(), seq);
        let Some(identity) = d[identity_field].as_str().map(str::to_owned) else {
            continue;
        };
        if last.get(&identity).is_some_and(|p| *p > position) {
            wrong.insert(identity.clone());
        }
        last.insert(identity, position);
    }
    wrong.into_iter().collect()
}

/// Runs `input` without and with faults and checks the chaos run against the calm one.
async fn chaos(case: &Case, input: &[(String, Vec<u8>)]) {
    let aws = LocalAws::from_env().await.unwrap();
    let calm = run(&aws, case, input, None).await;
    assert_eq!(calm.given_up, 0);
    let plan = FaultPlan {
        seed: 20_261_201,
        entry_failure: 0.20,
        throttle: 0.03,
        server_error: 0.05,
        lost_response: 0.02,
        ..FaultPlan::default()
    };
    let chaos = run(&aws, case, input, Some(plan)).await;

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
    let identities: BTreeSet<&str> = calm
        .outputs
        .iter()
        .filter_map(|d| d[case.identity].as_str())
        .collect();
    let reordered = out_of_order(&chaos.outputs, case.identity);
    println!(
        "chaos {}: {} source records; without faults {} outputs in {} invocations; under faults {} records out \
         ({} distinct, {repeats} repeats of an event_id already out) in {} invocations, {} lost, {} not expected, \
         {} of {} identities out of order, {} dead letters (calm: {}), {} batches given up; invocations failed \
         whole: {:?}; faults injected: {:?}",
        case.binary,
        input.len(),
        expected.len(),
        calm.invocations,
        chaos.outputs.len(),
        got.len(),
        chaos.invocations,
        lost.len(),
        invented.len(),
        reordered.len(),
        identities.len(),
        chaos.dead_letters,
        calm.dead_letters,
        chaos.given_up,
        chaos.failed_invocations,
        chaos.injected
    );
    assert!(!expected.is_empty());
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(
        invented.is_empty(),
        "not expected (stale or invented): {invented:?}"
    );
    assert_eq!(chaos.given_up, 0, "no batch may be given up");
    assert_eq!(chaos.dead_letters, calm.dead_letters);
    // Order: each identity's outputs come in the order of their source records, faults or not.
    assert!(out_of_order(&calm.outputs, case.identity).is_empty());
    assert!(
        reordered.is_empty(),
        "identities whose outputs came out of order: {reordered:?}"
    );
    // The faults did happen.
    let total = |part: &str| -> u64 {
        chaos
            .injected
            .iter()
            .filter(|(k, _)| k.contains(part))
            .map(|(_, v)| v)
            .sum()
    };
    assert!(total("entry failed") > 0 && total("Throttle") > 0 && total("ServerError") > 0);
    assert!(total("LoseResponse") > 0, "{:?}", chaos.injected);
    assert!(chaos.invocations > calm.invocations, "faults cost retries");
    assert!(
        chaos
            .failed_invocations
            .iter()
            .any(|f| f.starts_with("Crash")),
        "a process was killed mid-batch"
    );
    assert!(
        chaos
            .failed_invocations
            .iter()
            .any(|f| f.starts_with("Timeout")),
        "an invocation ran out of time"
    );
    assert!(calm.failed_invocations.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_processor_under_faults_loses_invents_and_reorders_nothing() {
    let input: Vec<(String, Vec<u8>)> = input(records())
        .iter()
        .map(|d| {
            (
                d["identityId"].as_str().unwrap().to_owned(),
                serde_json::to_vec(d).unwrap(),
            )
        })
        .collect();
    chaos(&SYNC, &input).await;
}

/// User-activity log records as a CloudWatch Logs subscription writes them (gzip), one entry each, for 40 users;
/// every seventh a failed sign-in.
fn activity_records(n: usize) -> Vec<(String, Vec<u8>)> {
    use std::io::Write as _;
    (0..n)
        .map(|i| {
            let message = json!({"eventSource": "USER_ACTIVITY", "eventTimestamp": (T + i as i64 * 1000).to_string(),
                "logLevel": "INFO", "logSourceId": {"userPoolId": "us-east-1_EXAMPLE"},
                "message": {"challenges": [], "clientId": "1example23456789", "eventId": format!("a0000000-0000-4000-8000-{i:012}"),
                    "eventResponse": if i.is_multiple_of(7) { "Fail" } else { "Pass" }, "eventType": "SignIn",
                    "hasContextData": "false", "ipAddress": "192.0.2.10", "requestId": format!("req-{i}"),
                    "userName": format!("user{}", i % 40), "userPoolId": "us-east-1_EXAMPLE",
                    "userSub": format!("4f3e2d1c-0000-4000-8000-{:012}", i % 40), "version": "1"}});
            let doc = json!({"messageType": "DATA_MESSAGE", "owner": "123456789012",
                "logGroup": "/aws/cognito/userpool/us-east-1_EXAMPLE/user-activity", "logStream": "user-activity-stream-0001",
                "subscriptionFilters": ["to-kinesis"],
                "logEvents": [{"id": format!("{i:056}"), "timestamp": T + i as i64 * 1000, "message": message.to_string()}]});
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(doc.to_string().as_bytes()).unwrap();
            (format!("pk-{}", i % 7), gz.finish().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_log_forwarder_under_faults_loses_invents_and_reorders_nothing() {
    chaos(&AUTH_LOG, &activity_records(records())).await;
}

/// App events as Amplify's Kinesis provider writes them, for 40 installs, timed around now (the forwarder judges
/// times against arrival), partitioned by install.
fn app_records(n: usize) -> Vec<(String, Vec<u8>)> {
    let now = chrono::Utc::now();
    (0..n)
        .map(|i| {
            let install = format!("install-{:04}", i % 40);
            let at = now - chrono::Duration::seconds((n - i) as i64);
            let doc = json!({"anonymous_id": install, "event_id": format!("e-{i:06}"),
                "event_type": if i % 5 == 0 { "_session.start" } else { "level_complete" },
                "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "context": {"platform": "Web", "app_version": "1.4.0", "device_id": install}});
            (install, serde_json::to_vec(&doc).unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_event_forwarder_under_faults_loses_invents_and_reorders_nothing() {
    chaos(&APP, &app_records(records())).await;
}
