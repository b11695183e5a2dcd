//! The chaos runs of every Kinesis-triggered function (the sync processor, the auth log forwarder, the app event
//! forwarder and the active-users rollup): each real binary, behind the local Runtime API, driven by the local
//! event source mapping with the template's settings (bisection, retries), talking to moto through the fault proxy
//! (`devtools::proxy`): 20% of PutRecords entries throttled, 3% throttles and 5% 500s on every service, 2% responses
//! lost after the request was applied (5% for the rollup, which has no per-entry failures), one process killed
//! mid-batch and one invocation frozen until it runs out of time.
//!
//! The same input runs once without faults; what it produces is the expectation. Under faults, for the forwarders:
//! every expected output is present (nothing lost), nothing else is (no stale version, nothing invented), every
//! repeat carries an `event_id` already seen, and each identity's outputs come in the order of their source
//! records; for the rollup: every counter of every scope and day is the same. For all: no batch is given up and the
//! dead letters are the same. `make test` runs them at `CHAOS_RECORDS` (default 600) records each; `make chaos` at
//! 10,000 (the rollup's, a generated month, at 20 and 60 users).
//!
//! The trigger forwarder, invoked synchronously by Cognito, gets the fail-open checks under the same faults plus
//! slow answers and connection resets: every sign-in answered in time, every auth event on the stream or spilled.
//!
//! Nothing a test requires is left to chance or to timing. The draws are seeded, but which request gets which
//! draw follows arrival order, which a busier machine changes: so every fault kind a test asserts is scheduled
//! (`FaultPlan::schedule`: the proxy gives it to the first matching request) and the random draws come on top.
//! The kill and the freeze land through the proxy's tripwire: it holds the first request of the sabotaged
//! invocation unanswered and only then is the process signalled, so it is certainly mid-batch. Each test prints
//! the seed and which request got which fault.

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
use devtools::proxy::{
    ClientConnections, CountingProxy, Fault, FaultPlan, InjectedFault, Scheduled, Tripwire,
};
use devtools::runtime_api::LocalFunction;
use serde_json::{Value, json};

const POOL: &str = "us-east-1:00000000-0000-4000-8000-000000000000";
/// How long Cognito waits for a Lambda trigger before it fails the sign-in (Cognito developer guide, "Customizing
/// user pool workflows with Lambda triggers"); the template's timeout for the trigger forwarder.
const COGNITO_TRIGGER_LIMIT: Duration = Duration::from_secs(5);
const T: i64 = 1_700_000_000_000;
/// The Kinesis-triggered functions' timeout here: short, so that the frozen invocation times out soon; each
/// test prints its slowest answered invocation against it.
const FUNCTION_TIMEOUT: Duration = Duration::from_secs(8);

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
    /// Which request got which fault (and which the tripwire held).
    fault_log: Vec<InjectedFault>,
    failed_invocations: Vec<String>,
    /// The longest an answered invocation took (against the function's timeout).
    slowest_answer: Duration,
    /// What the saboteur did: one line per kill or freeze, with the request the process was waiting on.
    sabotage: Vec<String>,
    /// The rollup's counters, `scope period` to counters (the active-users case).
    rollup: BTreeMap<String, BTreeMap<String, i64>>,
    /// What the rollup's dashboard shows from the lines it published, `scope day` to figures.
    dashboard: BTreeMap<String, BTreeMap<String, i64>>,
    /// The rollup's lanes at the end (position and days not published yet), and the lines published: what a
    /// dashboard that differs from the table needs explaining with.
    lanes: Vec<String>,
}

/// Kills the process mid-invocation on call `crash_at`, freezes it (SIGSTOP) on call `freeze_at` so that the
/// invocation runs out of time; otherwise passes the call through.
///
/// "Mid-invocation" is certain, not a matter of timing: before the sabotaged invocation starts, the proxy's
/// tripwire is armed; the proxy holds the first request that invocation makes and never answers it, and only then
/// is the signal sent. The process is then waiting on that request: a kill is a crash mid-batch, a freeze runs the
/// invocation out of time. (The held request has no timeout of its own short of the invocation's deadline, seconds
/// away, while the signal follows within milliseconds.)
struct Saboteur {
    function: Arc<LocalFunction>,
    tripwire: Tripwire,
    calls: AtomicUsize,
    crash_at: Option<usize>,
    freeze_at: Option<usize>,
    /// Outcomes other than a response, as seen by the mapping.
    failures: std::sync::Mutex<Vec<String>>,
    /// One line per sabotage: the invocation, the signal, the request held, the outcome.
    sabotage: std::sync::Mutex<Vec<String>>,
    /// The longest an answered invocation took.
    slowest_answer: std::sync::Mutex<Duration>,
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
        let mut armed = None;
        if let Some(signal) = signal {
            // Make sure the process exists and read its pid now: `pid()` waits for the lock that `invoke` holds
            // for the whole invocation.
            let _ = self.function.warm().await;
            if let Some(pid) = self.function.pid().await {
                let held = self.tripwire.arm();
                armed = Some(tokio::spawn(async move {
                    let request = held.await.ok()?;
                    let status = tokio::process::Command::new("kill")
                        .arg(signal)
                        .arg(pid.to_string())
                        .status()
                        .await;
                    Some(format!(
                        "kill {signal} {pid} while it waited on request #{} {} ({})",
                        request.request,
                        request.operation,
                        status.map_or_else(|e| e.to_string(), |s| s.to_string())
                    ))
                }));
            }
        }
        let started = std::time::Instant::now();
        let outcome = self.function.invoke(event).await;
        if matches!(outcome, InvokeOutcome::Response(_))
            && let Ok(mut slowest) = self.slowest_answer.lock()
        {
            *slowest = (*slowest).max(started.elapsed());
        }
        if let Some(task) = armed {
            let what = if self.tripwire.disarm() {
                "the tripwire was never tripped: the invocation made no request".to_owned()
            } else {
                task.await
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| "the signal task failed".to_owned())
            };
            let line = format!(
                "invocation {n}: {what} -> {}",
                format!("{outcome:?}").chars().take(40).collect::<String>()
            );
            if let Ok(mut s) = self.sabotage.lock() {
                s.push(line);
            }
        }
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
    /// The function writes the rollup table (named like the dedup table) instead of an output stream.
    rollup: bool,
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
    rollup: false,
};

const ACTIVE_USERS: Case = Case {
    binary: "active-users",
    logical: "ActiveUsersFunction",
    event: "AuthEvents",
    env: |_, table, bucket| {
        vec![
            ("ROLLUP_TABLE_NAME".into(), table.into()),
            ("DEAD_LETTER_BUCKET".into(), bucket.into()),
            ("ACTIVE_USER_DIMENSIONS".into(), "platform".into()),
        ]
    },
    shards: 2,
    identity: "user_sub",
    rollup: true,
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
    rollup: false,
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
    rollup: false,
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
    if case.rollup {
        aws.create_rollup_table(&table).await.unwrap();
    } else {
        aws.create_dedup_table(&table).await.unwrap();
    }
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
    let function = LocalFunction::start(case.binary, binary, env, FUNCTION_TIMEOUT)
        .await
        .unwrap();
    let template = std::fs::read_to_string(e2e::root().join("infra/template.yaml")).unwrap();
    let settings = MappingSettings::from_template(&template, case.logical, case.event).unwrap();
    let settings = MappingSettings {
        // Smaller batches than the template's 500 give the faults more invocations to land in (the rollup's input
        // is smaller still: each of its batches is a commit, and small ones give more commits to fault).
        batch_size: if case.rollup { 25 } else { 100 },
        ..settings
    };
    let saboteur = Arc::new(Saboteur {
        function: function.clone(),
        tripwire: proxy.tripwire(),
        calls: AtomicUsize::new(0),
        crash_at: faulty.then_some(1),
        freeze_at: faulty.then_some(3),
        failures: std::sync::Mutex::new(Vec::new()),
        sabotage: std::sync::Mutex::new(Vec::new()),
        slowest_answer: std::sync::Mutex::new(Duration::ZERO),
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
    let store = active_users::store::RollupStore::on_dynamodb(
        aws_sdk_dynamodb::Client::new(&aws.sdk),
        &table,
        Duration::from_secs(86_400),
    );
    let (rollup, mut lanes) = if case.rollup {
        let mut lanes = Vec::new();
        for pk in store.table().partitions("lane#").await.unwrap() {
            let lane = pk.trim_start_matches("lane#");
            let state = store.read_lane(lane).await.unwrap();
            lanes.push(format!(
                "lane {lane}: at {:?}, not published {:?}",
                state.position.map(|p| p.encode()),
                state.pending
            ));
        }
        (e2e::rollup_counters(&store).await, lanes)
    } else {
        (BTreeMap::new(), Vec::new())
    };
    if case.rollup {
        for line in function.printed() {
            if line.get(active_users::handler::PUBLISHED).is_some() {
                lanes.push(format!("published {line}"));
            }
        }
    }
    let dashboard = e2e::dashboard_by_key(&function.printed());
    RunResult {
        rollup,
        dashboard,
        lanes,
        outputs,
        dead_letters,
        given_up: report.on_failure.len(),
        invocations: report.invocations.len(),
        injected: proxy.injected.snapshot(),
        fault_log: proxy.fault_log(),
        failed_invocations: saboteur
            .failures
            .lock()
            .map(|f| f.clone())
            .unwrap_or_default(),
        sabotage: saboteur
            .sabotage
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default(),
        slowest_answer: saboteur
            .slowest_answer
            .lock()
            .map(|s| *s)
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
    // Every kind asserted below is scheduled on an early request; the draws add more of each, wherever they fall.
    let schedule = if case.rollup {
        // Its marker and counter writes: a transaction applied whose answer is lost.
        vec![
            Scheduled::on("TransactWriteItems", Fault::LoseResponse),
            Scheduled::any(Fault::Throttle),
            Scheduled::any(Fault::ServerError),
        ]
    } else {
        // A put applied whose answer is lost: its outputs come again under the same event ids.
        vec![
            Scheduled::on("PutRecords", Fault::EntryFailed),
            Scheduled::on("PutRecords", Fault::LoseResponse),
            Scheduled::any(Fault::Throttle),
            Scheduled::any(Fault::ServerError),
        ]
    };
    let plan = FaultPlan {
        seed: 20_261_201,
        entry_failure: 0.20,
        throttle: 0.03,
        server_error: 0.05,
        // The rollup has no per-entry failures; more of its few transactions lose their answer instead.
        lost_response: if case.rollup { 0.05 } else { 0.02 },
        schedule: schedule.clone(),
        ..FaultPlan::default()
    };
    let seed = plan.seed;
    let chaos = run(&aws, case, input, Some(plan)).await;
    println!(
        "chaos {}: seed {seed}; slowest answered invocation {:?} without faults, {:?} with (timeout {:?}); \
         sabotage: {:?}; faults by request:\n{}",
        case.binary,
        calm.slowest_answer,
        chaos.slowest_answer,
        FUNCTION_TIMEOUT,
        chaos.sabotage,
        devtools::proxy::describe(&chaos.fault_log)
    );
    if case.rollup {
        check_rollup(case, input, &calm, &chaos);
    } else {
        check_outputs(case, input, &calm, &chaos);
    }
    assert_eq!(chaos.given_up, 0, "no batch may be given up");
    assert_eq!(chaos.dead_letters, calm.dead_letters);
    // The faults did happen: each scheduled one on the request the log names, and each kind at least once.
    for wanted in &schedule {
        assert!(
            chaos.fault_log.iter().any(|f| f.scheduled
                && f.fault == wanted.fault
                && wanted.operation.as_ref().is_none_or(|o| *o == f.operation)),
            "scheduled {wanted:?} happened"
        );
    }
    let total = |part: &str| -> u64 {
        chaos
            .injected
            .iter()
            .filter(|(k, _)| k.contains(part))
            .map(|(_, v)| v)
            .sum()
    };
    let kinds: &[&str] = if case.rollup {
        &[
            "TransactWriteItems",
            "Throttle",
            "ServerError",
            "LoseResponse",
        ]
    } else {
        &["entry failed", "Throttle", "ServerError", "LoseResponse"]
    };
    for kind in kinds {
        assert!(total(kind) > 0, "{kind} happened: {:?}", chaos.injected);
    }
    // Certain, not likely: both runs cut the same batches, and the killed invocation's batch is invoked again.
    assert!(chaos.invocations > calm.invocations, "faults cost retries");
    // The tripwire held a request of each sabotaged invocation before its signal: the kill and the freeze landed
    // mid-batch.
    assert!(
        chaos.sabotage.iter().any(|l| l.contains("kill -KILL")
            && l.contains("while it waited on request")
            && l.ends_with("-> Crash")),
        "the kill landed on a process waiting on a request: {:?}",
        chaos.sabotage
    );
    assert!(
        chaos.sabotage.iter().any(|l| l.contains("kill -STOP")
            && l.contains("while it waited on request")
            && l.ends_with("-> Timeout")),
        "the freeze landed on a process waiting on a request: {:?}",
        chaos.sabotage
    );
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
    assert!(calm.fault_log.is_empty(), "no fault without a plan");
}

/// The forwarders: every expected output present, nothing else, repeats carry a known `event_id`, order per
/// identity kept.
fn check_outputs(case: &Case, input: &[(String, Vec<u8>)], calm: &RunResult, chaos: &RunResult) {
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
    // Not vacuous: the scheduled lost PutRecords answer (the request applied) certainly brings repeats.
    assert!(repeats > 0, "a put whose answer was lost was sent again");
    assert!(
        invented.is_empty(),
        "not expected (stale or invented): {invented:?}"
    );
    // Order: each identity's outputs come in the order of their source records, faults or not.
    assert!(out_of_order(&calm.outputs, case.identity).is_empty());
    assert!(
        reordered.is_empty(),
        "identities whose outputs came out of order: {reordered:?}"
    );
}

/// The rollup: every counter of every scope and period exactly as without faults (a marker written twice or a
/// counter added twice after a lost response would show here).
fn check_rollup(case: &Case, input: &[(String, Vec<u8>)], calm: &RunResult, chaos: &RunResult) {
    type Counters = BTreeMap<String, i64>;
    let differ: Vec<(&String, Option<&Counters>, Option<&Counters>)> = calm
        .rollup
        .keys()
        .chain(chaos.rollup.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|k| calm.rollup.get(*k) != chaos.rollup.get(*k))
        .map(|k| (k, calm.rollup.get(k), chaos.rollup.get(k)))
        .collect();
    println!(
        "chaos {}: {} source records; without faults {} counter items in {} invocations; under faults {} counter \
         items in {} invocations, {} differ; {} dead letters (calm: {}), {} batches given up; invocations failed \
         whole: {:?}; faults injected: {:?}",
        case.binary,
        input.len(),
        calm.rollup.len(),
        calm.invocations,
        chaos.rollup.len(),
        chaos.invocations,
        differ.len(),
        chaos.dead_letters,
        calm.dead_letters,
        chaos.given_up,
        chaos.failed_invocations,
        chaos.injected
    );
    assert!(!calm.rollup.is_empty());
    assert!(
        differ.is_empty(),
        "counters that differ (calm, chaos): {differ:?}"
    );
    // The dashboard's data points equal the table, day by day, with and without faults.
    for run in [calm, chaos] {
        let same = std::panic::catch_unwind(|| {
            e2e::assert_dashboard_equals_table(&run.rollup, &run.dashboard)
        });
        if let Err(e) = same {
            println!("the rollup's lanes and lines:\n{}", run.lanes.join("\n"));
            std::panic::resume_unwind(e);
        }
    }
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

/// The trigger forwarder under the same faults, plus slow answers (twice its put budget) and connection resets:
/// every sign-in is answered with its own event within Cognito's 5-second trigger limit, and every put slowed past
/// its budget is abandoned at the budget with its event spilled; every auth event is on the stream or in a spilled
/// line (none lost), each under one `event_id` (a repeat on the stream after a lost response carries the same one),
/// and the spilled lines are exactly what the metric counts. Every fault kind is scheduled on the first puts.
///
/// A process crash is left out here: a trigger that dies fails that sign-in in Cognito, and no code of ours can
/// answer for a killed process (the Lambda service retries nothing for a synchronous trigger).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_forwarder_under_faults_answers_every_sign_in_in_time_and_loses_no_event() {
    use auth_analytics::trigger_handler as th;
    let aws = LocalAws::from_env().await.unwrap();
    let out = unique_name("chaos-auth");
    aws.create_stream(&out, 1).await.unwrap();
    let budget = Duration::from_millis(300);
    let plan = FaultPlan {
        seed: 20_261_202,
        entry_failure: 0.20,
        throttle: 0.03,
        server_error: 0.05,
        lost_response: 0.02,
        reset: 0.02,
        slow: 0.03,
        latency: budget * 2,
        schedule: [
            Fault::EntryFailed,
            Fault::Throttle,
            Fault::ServerError,
            Fault::LoseResponse,
            Fault::Reset,
            Fault::Slow,
        ]
        .into_iter()
        .map(|fault| Scheduled::on("PutRecords", fault))
        .collect(),
        ..FaultPlan::default()
    };
    let seed = plan.seed;
    let proxy = CountingProxy::with_faults(&aws.endpoint, ClientConnections::KeepAlive, Some(plan))
        .await
        .unwrap();
    let env = vec![
        ("AUTH_OUTPUT_STREAM_NAME".to_owned(), out.clone()),
        ("PUT_BUDGET_MS".to_owned(), budget.as_millis().to_string()),
        ("AWS_ENDPOINT_URL".to_owned(), proxy.endpoint.clone()),
    ];
    let binary = e2e::root().join("target/debug/auth-trigger-forwarder");
    assert!(binary.exists(), "build the binaries first (make test does)");
    // The template's timeout for the trigger, which is Cognito's own limit: an invocation past it is not answered.
    let function = LocalFunction::start(th::FUNCTION_NAME, binary, env, COGNITO_TRIGGER_LIMIT)
        .await
        .unwrap();
    let sample = e2e::auth::trigger_sample("PostAuthentication_Authentication");
    let n = (records() / 2).max(100);
    let sub = |i: usize| format!("4f3e2d1c-0000-4000-8000-{i:012}");
    // The first invocation starts the process (cold start, outside the put budget); it is not timed.
    function.warm().await.unwrap();
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let mut event = sample.clone();
        event["userName"] = json!(format!("user{i}"));
        event["request"]["userAttributes"]["sub"] = json!(sub(i));
        let started = std::time::Instant::now();
        let outcome = function.invoke(event.clone()).await;
        let took = started.elapsed();
        let InvokeOutcome::Response(body) = outcome else {
            panic!("sign-in {i} was not answered: {outcome:?}");
        };
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap(),
            event,
            "sign-in {i}'s answer is its event"
        );
        if i > 0 {
            times.push(took);
        }
    }
    // Stopping waits until every line the function printed (its metrics, its spilled events) has been read.
    function.stop().await;
    let metrics = function.metrics();
    let spilled_lines: Vec<Value> = function
        .printed()
        .into_iter()
        .filter(|l| l.get("spilled").is_some())
        .collect();
    let spilled: Vec<Value> = spilled_lines.iter().map(|l| l["record"].clone()).collect();
    // A put cut by its budget: the forwarder's own timeout, or the producer's deadline (the same budget) first.
    let at_budget = spilled_lines
        .iter()
        .filter(|l| {
            l["reason"]
                .as_str()
                .is_some_and(|r| r.contains("budget") || r.contains("invocation deadline"))
        })
        .count();
    let streamed: Vec<Value> = aws
        .read_stream(&out)
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(r.data.as_ref()).unwrap())
        .collect();
    // Per user: the event_ids seen on the stream and in spilled lines.
    let mut ids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for doc in streamed.iter().chain(&spilled) {
        ids.entry(doc["user_sub"].as_str().unwrap().to_owned())
            .or_default()
            .insert(doc["event_id"].as_str().unwrap().to_owned());
    }
    let on_stream: BTreeSet<&str> = streamed
        .iter()
        .map(|d| d["user_sub"].as_str().unwrap())
        .collect();
    let spilled_and_streamed = spilled
        .iter()
        .filter(|d| on_stream.contains(d["user_sub"].as_str().unwrap()))
        .count();
    times.sort();
    let pct = |p: usize| times[(times.len() * p / 100).min(times.len() - 1)];
    let slowest = *times.last().unwrap();
    println!(
        "chaos auth-trigger-forwarder: {n} sign-ins, put budget {budget:?}; answered p50 {:?}, p99 {:?}, slowest \
         {slowest:?} (after the first); {} records on the stream ({} users), {} spilled ({} of them also on the \
         stream: applied, answer lost; {at_budget} cut at the budget), metrics {metrics:?}; faults injected: {:?}; \
         seed {seed}, faults by request:\n{}",
        pct(50),
        pct(99),
        streamed.len(),
        on_stream.len(),
        spilled.len(),
        spilled_and_streamed,
        proxy.injected.snapshot(),
        devtools::proxy::describe(&proxy.fault_log())
    );
    let lost: Vec<String> = (0..n).map(sub).filter(|s| !ids.contains_key(s)).collect();
    assert!(
        lost.is_empty(),
        "auth events neither on the stream nor spilled: {lost:?}"
    );
    assert_eq!(ids.len(), n, "no event of a user that did not sign in");
    let split: Vec<_> = ids.iter().filter(|(_, e)| e.len() != 1).collect();
    assert!(split.is_empty(), "one event_id per sign-in: {split:?}");
    assert_eq!(metrics.get(th::METRIC_TRIGGER_EVENTS), Some(&(n as u64)));
    assert_eq!(
        metrics.get(th::METRIC_EVENTS_SPILLED),
        Some(&(spilled.len() as u64)),
        "every spilled line is counted"
    );
    assert_eq!(
        metrics
            .get(th::METRIC_EVENTS_FORWARDED)
            .copied()
            .unwrap_or(0)
            + spilled.len() as u64,
        n as u64
    );
    assert!(!spilled.is_empty(), "the slow answers spill their events");
    // The budget, by behaviour: each slowed put (held twice the budget before it is forwarded) was abandoned at
    // the budget and its event spilled; a sign-in's put ends at its first slowed request, so each is another
    // sign-in. (The in-process tests in tests/auth_trigger.rs prove the bound itself on a paused clock.)
    let injected = proxy.injected.snapshot();
    let slowed = injected.get("PutRecords Slow").copied().unwrap_or(0);
    assert!(
        at_budget as u64 >= slowed && slowed > 0,
        "{slowed} puts slowed past the budget, {at_budget} spilled at it"
    );
    // The wall-clock bound is Cognito's: a trigger that answers later fails the sign-in. A tighter local figure
    // would measure this machine's load, not the forwarder (that belongs in `make bench`).
    assert!(
        slowest < COGNITO_TRIGGER_LIMIT,
        "slowest answer {slowest:?}: Cognito gives a trigger {COGNITO_TRIGGER_LIMIT:?}"
    );
    for kind in [
        "entry failed",
        "Throttle",
        "ServerError",
        "LoseResponse",
        "Reset",
        "Slow",
    ] {
        assert!(
            injected.iter().any(|(k, v)| k.contains(kind) && *v > 0),
            "{kind} happened: {injected:?}"
        );
    }
}

/// Auth and app events of a generated month (with the stream's repeats and late arrivals) for the active-users
/// rollup: every counter exactly as without faults, and the data points its dashboard would read from the lines it
/// printed equal to the table. `CHAOS_RECORDS` scales it from 10 to 60 users (the in-memory tests of
/// tests/active_users.rs take the scale).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_users_under_faults_counts_every_user_and_event_exactly_once() {
    let users = u32::try_from(records() / 30).unwrap_or(60).clamp(10, 60);
    let month = devtools::synthetic::generate(users);
    let input: Vec<(String, Vec<u8>)> = devtools::synthetic::deliveries(&month)
        .concat()
        .iter()
        .map(|d| {
            (
                d["user_sub"]
                    .as_str()
                    .or(d["user_id"].as_str())
                    .unwrap_or("app")
                    .to_owned(),
                serde_json::to_vec(d).unwrap(),
            )
        })
        .collect();
    chaos(&ACTIVE_USERS, &input).await;
}
