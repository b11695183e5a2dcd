//! The local event source mapping (`devtools::esm`) against moto: real Kinesis shards and a real SQS on-failure
//! queue. The function is a scripted fake here, since what is under test is the mapping's behaviour around it.

#![allow(clippy::unwrap_used, reason = "test helpers fail loudly")]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_kinesis::primitives::Blob;
use base64::Engine as _;
use devtools::LocalAws;
use devtools::emulator::unique_name;
use devtools::esm::{InvokeOutcome, Invoker, LocalMapping, MappingSettings};
use serde_json::{Value, json};

type Script = dyn Fn(usize, &[(String, String)]) -> InvokeOutcome + Send + Sync;

/// A function that answers by a script of (call number, [(sequence number, data)]) and records what it saw.
struct Scripted {
    script: Box<Script>,
    calls: Mutex<Vec<Vec<(String, String)>>>,
}

impl Scripted {
    fn new(
        script: impl Fn(usize, &[(String, String)]) -> InvokeOutcome + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            script: Box::new(script),
            calls: Mutex::new(Vec::new()),
        })
    }
}

#[async_trait]
impl Invoker for Scripted {
    async fn invoke(&self, event: Value) -> InvokeOutcome {
        let records: Vec<(String, String)> = event["Records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let data = base64::engine::general_purpose::STANDARD
                    .decode(r["kinesis"]["data"].as_str().unwrap())
                    .unwrap();
                (
                    r["kinesis"]["sequenceNumber"].as_str().unwrap().to_owned(),
                    String::from_utf8(data).unwrap(),
                )
            })
            .collect();
        let n = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(records.clone());
            calls.len() - 1
        };
        (self.script)(n, &records)
    }
}

fn failures(ids: &[&str]) -> InvokeOutcome {
    let list: Vec<Value> = ids.iter().map(|i| json!({"itemIdentifier": i})).collect();
    InvokeOutcome::Response(serde_json::to_vec(&json!({"batchItemFailures": list})).unwrap())
}

fn ok() -> InvokeOutcome {
    InvokeOutcome::Response(br#"{"batchItemFailures":[]}"#.to_vec())
}

struct Setup {
    aws: LocalAws,
    stream: String,
    arn: String,
    sqs: aws_sdk_sqs::Client,
    queue: String,
    /// Sequence numbers of the records put, by data.
    seqs: BTreeMap<String, String>,
}

/// A one-shard stream holding `records` (partition key, data), and an SQS queue.
async fn setup(records: &[(&str, &str)], shards: i32) -> Setup {
    let aws = LocalAws::from_env().await.unwrap();
    let stream = unique_name("esm");
    let arn = aws.create_stream(&stream, shards).await.unwrap();
    let mut seqs = BTreeMap::new();
    for (key, data) in records {
        let out = aws
            .kinesis
            .put_record()
            .stream_name(&stream)
            .partition_key(*key)
            .data(Blob::new(data.as_bytes()))
            .send()
            .await
            .unwrap();
        seqs.insert((*data).to_owned(), out.sequence_number);
    }
    let sqs = aws_sdk_sqs::Client::new(&aws.sdk);
    let queue = sqs
        .create_queue()
        .queue_name(unique_name("on-failure"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    Setup {
        aws,
        stream,
        arn,
        sqs,
        queue,
        seqs,
    }
}

fn mapping(s: &Setup, settings: MappingSettings, f: Arc<dyn Invoker>) -> LocalMapping {
    LocalMapping::new(
        s.aws.clone(),
        &s.stream,
        &s.arn,
        "arn:aws:lambda:us-east-1:123456789012:function:under-test",
        settings,
        f,
    )
    .with_on_failure_queue(s.sqs.clone(), &s.queue)
}

async fn queued(s: &Setup) -> Vec<Value> {
    let out = s
        .sqs
        .receive_message()
        .queue_url(&s.queue)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    out.messages()
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect()
}

fn ten() -> Vec<(&'static str, &'static str)> {
    vec![
        ("a", "r0"),
        ("b", "r1"),
        ("c", "r2"),
        ("a", "r3"),
        ("b", "r4"),
        ("c", "r5"),
        ("a", "r6"),
        ("b", "r7"),
        ("c", "r8"),
        ("a", "r9"),
    ]
}

fn with_reports() -> MappingSettings {
    MappingSettings {
        batch_size: 10,
        report_batch_item_failures: true,
        maximum_retry_attempts: Some(2),
        ..MappingSettings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_failure_redelivers_exactly_from_the_lowest_failed_record() {
    let s = setup(&ten(), 1).await;
    let (r4, r7) = (s.seqs["r4"].clone(), s.seqs["r7"].clone());
    let f = Scripted::new(move |n, _| if n == 0 { failures(&[&r7, &r4]) } else { ok() });
    let report = mapping(&s, with_reports(), f.clone())
        .drain()
        .await
        .unwrap();
    let calls = f.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    let second: Vec<&str> = calls[1].iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(second, vec!["r4", "r5", "r6", "r7", "r8", "r9"]);
    assert_eq!(report.succeeded.len(), 10);
    assert!(report.on_failure.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bisection_isolates_a_failing_record_and_exhausted_retries_describe_it_to_the_queue() {
    let s = setup(&ten(), 1).await;
    let settings = MappingSettings {
        bisect_on_function_error: true,
        ..with_reports()
    };
    // The function crashes on any batch holding r5.
    let f = Scripted::new(|_, records| {
        if records.iter().any(|(_, d)| d == "r5") {
            InvokeOutcome::FunctionError("boom".into())
        } else {
            ok()
        }
    });
    let report = mapping(&s, settings, f.clone()).drain().await.unwrap();
    assert_eq!(report.succeeded.len(), 9, "every other record goes through");
    assert!(!report.succeeded.contains(&s.seqs["r5"]));
    let messages = queued(&s).await;
    assert_eq!(messages.len(), 1);
    let info = &messages[0]["KinesisBatchInfo"];
    assert_eq!(info["startSequenceNumber"], s.seqs["r5"].as_str());
    assert_eq!(info["endSequenceNumber"], s.seqs["r5"].as_str());
    assert_eq!(info["batchSize"], 1);
    assert_eq!(info["streamArn"], s.arn.as_str());
    assert_eq!(info["shardId"], "shardId-000000000000");
    assert_eq!(
        messages[0]["requestContext"]["condition"],
        "RetryAttemptsExhausted"
    );
    assert_eq!(messages[0]["responseContext"]["functionError"], "Unhandled");
    assert_eq!(messages[0]["version"], "1.0");
    // r5 alone was tried once and retried twice (bisecting used no retry).
    let alone = f
        .calls
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.len() == 1 && c[0].1 == "r5")
        .count();
    assert_eq!(alone, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_item_identifier_retries_the_whole_batch() {
    let s = setup(&ten(), 1).await;
    let f = Scripted::new(|n, _| {
        if n == 0 {
            failures(&["not-in-the-batch"])
        } else {
            ok()
        }
    });
    let report = mapping(&s, with_reports(), f.clone())
        .drain()
        .await
        .unwrap();
    let calls = f.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].len(), 10, "the whole batch again");
    assert_eq!(report.succeeded.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_holds_per_partition_key_with_a_parallelization_factor() {
    let records: Vec<(String, String)> = (0..60)
        .map(|i| (format!("user-{}", i % 6), format!("{:02}", i)))
        .collect();
    let refs: Vec<(&str, &str)> = records
        .iter()
        .map(|(k, d)| (k.as_str(), d.as_str()))
        .collect();
    let s = setup(&refs, 1).await;
    let settings = MappingSettings {
        batch_size: 4,
        parallelization_factor: 3,
        ..with_reports()
    };
    let f = Scripted::new(|_, _| ok());
    let report = mapping(&s, settings, f.clone()).drain().await.unwrap();
    assert_eq!(report.succeeded.len(), 60);
    let mut seen: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for call in f.calls.lock().unwrap().iter() {
        for (_, d) in call {
            let i: usize = d.parse().unwrap();
            seen.entry(i % 6).or_default().push(i);
        }
    }
    for (key, order) in seen {
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(order, sorted, "user-{key} out of order");
    }
    // More than one lane was used.
    let lanes: std::collections::BTreeSet<Vec<usize>> = f
        .calls
        .lock()
        .unwrap()
        .iter()
        .map(|c| {
            let mut keys: Vec<usize> = c
                .iter()
                .map(|(_, d)| d.parse::<usize>().unwrap() % 6)
                .collect();
            keys.sort_unstable();
            keys.dedup();
            keys
        })
        .collect();
    assert!(lanes.len() > 1);
}

/// The real `sync-processor` binary (built by `make test` before the tests run) behind the local Runtime API,
/// driven by the local mapping with the template's settings: Cognito Sync records put on a source stream come
/// out on the output stream, one change per key, and a poison record is dead-lettered without blocking the shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_sync_processor_binary_runs_behind_the_mapping() {
    use devtools::runtime_api::LocalFunction;
    let binary = e2e::root().join("target/debug/sync-processor");
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build --workspace --bins` (`make test` does)",
        binary.display()
    );
    let mut records: Vec<(String, String)> = Vec::new();
    let (mut expected_changes, mut poison_put) = (0, 0);
    for sample in ["sync-inline-replace", "sync-poison"] {
        let event = e2e::sample(sample);
        for r in event["Records"].as_array().unwrap() {
            // A poison sample whose base64 is broken cannot be on a real stream: only the others are put.
            let Ok(data) = base64::engine::general_purpose::STANDARD
                .decode(r["kinesis"]["data"].as_str().unwrap_or_default())
            else {
                continue;
            };
            let text = String::from_utf8_lossy(&data).into_owned();
            if sample == "sync-inline-replace" {
                let doc: Value = serde_json::from_str(&text).unwrap();
                expected_changes += doc["kinesisSyncRecords"].as_array().unwrap().len();
            } else {
                poison_put += 1;
            }
            records.push((
                r["kinesis"]["partitionKey"].as_str().unwrap().to_owned(),
                text,
            ));
        }
    }
    let refs: Vec<(&str, &str)> = records
        .iter()
        .map(|(k, d)| (k.as_str(), d.as_str()))
        .collect();
    let s = setup(&refs, 1).await;
    let (output, table, bucket) = (
        unique_name("out"),
        unique_name("marks"),
        unique_name("bridge"),
    );
    s.aws.create_stream(&output, 1).await.unwrap();
    s.aws.create_dedup_table(&table).await.unwrap();
    s.aws.create_bucket(&bucket).await.unwrap();
    let env = vec![
        ("OUTPUT_STREAM_NAME".to_owned(), output.clone()),
        ("DEDUP_TABLE_NAME".to_owned(), table),
        ("DEAD_LETTER_BUCKET".to_owned(), bucket.clone()),
    ];
    let function = LocalFunction::start(
        "sync-processor",
        binary,
        env,
        std::time::Duration::from_secs(120),
    )
    .await
    .unwrap();
    let template = std::fs::read_to_string(e2e::root().join("infra/template.yaml")).unwrap();
    let settings =
        MappingSettings::from_template(&template, "SyncProcessorFunction", "CognitoStream")
            .unwrap();
    let report = mapping(&s, settings, function.clone())
        .drain()
        .await
        .unwrap();
    function.stop().await;
    assert_eq!(report.succeeded.len(), records.len(), "{report:?}");
    assert!(report.on_failure.is_empty());
    let out = s.aws.read_stream(&output).await.unwrap();
    // One change per key of the good sample, and the poison sample's one good change (see the sync tests).
    assert_eq!(out.len(), expected_changes + 1);
    let letters = s.aws.read_objects(&bucket, "dead-letter/").await.unwrap();
    assert_eq!(
        letters.len(),
        poison_put - 1,
        "every other poison record is dead-lettered"
    );
}

/// A process that exits at once is a crash, one that never answers a timeout; both are retried as Lambda
/// retries a function error, then described to the on-failure queue. Real processes, no runtime client in them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_and_a_timeout_are_retried_then_given_up() {
    use devtools::runtime_api::LocalFunction;
    let dir = std::env::temp_dir().join(unique_name("fn"));
    std::fs::create_dir_all(&dir).unwrap();
    let silent = dir.join("silent");
    std::fs::write(&silent, "#!/bin/sh\nexec sleep 30\n").unwrap();
    std::fs::set_permissions(&silent, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for (binary, condition) in [("/bin/false".into(), "crash"), (silent, "timeout")] {
        let s = setup(&[("a", "r0"), ("b", "r1")], 1).await;
        let function = LocalFunction::start(
            condition,
            binary,
            Vec::new(),
            std::time::Duration::from_millis(500),
        )
        .await
        .unwrap();
        let settings = MappingSettings {
            batch_size: 10,
            report_batch_item_failures: true,
            maximum_retry_attempts: Some(1),
            ..MappingSettings::default()
        };
        let report = mapping(&s, settings, function.clone())
            .drain()
            .await
            .unwrap();
        function.stop().await;
        assert_eq!(
            report.invocations.len(),
            2,
            "{condition}: one try and one retry"
        );
        assert!(report.succeeded.is_empty(), "{condition}");
        let messages = queued(&s).await;
        assert_eq!(messages.len(), 1, "{condition}");
        assert_eq!(messages[0]["KinesisBatchInfo"]["batchSize"], 2);
        assert_eq!(messages[0]["requestContext"]["approximateInvokeCount"], 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_is_not_full_waits_for_its_batching_window() {
    let s = setup(&[("a", "w0"), ("b", "w1"), ("c", "w2")], 1).await;
    let settings = MappingSettings {
        batch_size: 10,
        batching_window: std::time::Duration::from_secs(2),
        ..with_reports()
    };
    let f = Scripted::new(|_, _| ok());
    // The window counts from the first record's arrival (moto's stamp). The mapping reads the test's clock: the
    // first poll comes 1 s after that arrival and the second 2.5 s after, exactly, however long the calls take.
    let (now, clock) = test_clock(first_arrival(&s).await + 1.0);
    let m = mapping(&s, settings.clone(), f.clone()).with_clock(clock);
    let mut checkpoints = std::collections::HashMap::new();
    let first = m.drain_from(&mut checkpoints).await.unwrap();
    assert!(first.invocations.is_empty(), "{first:?}");
    assert_eq!(first.waiting, 3);
    now(first_arrival(&s).await + 2.5);
    let second = m.drain_from(&mut checkpoints).await.unwrap();
    assert_eq!(second.invocations.len(), 1);
    assert_eq!(second.succeeded.len(), 3);
    assert_eq!(second.waiting, 0);
    // A full batch does not wait: batch size 2 sends two at once and holds the third back (polled 1 s after the
    // last arrival, inside every record's window).
    let s = setup(&[("a", "x0"), ("b", "x1"), ("c", "x2")], 1).await;
    let g = Scripted::new(|_, _| ok());
    let full = MappingSettings {
        batch_size: 2,
        ..settings
    };
    let last = s.aws.read_stream(&s.stream).await.unwrap()[2]
        .approximate_arrival_timestamp
        .map_or(0.0, |t| t.as_secs_f64());
    let (_, clock) = test_clock(last + 1.0);
    let report = mapping(&s, full, g.clone())
        .with_clock(clock)
        .drain_from(&mut std::collections::HashMap::new())
        .await
        .unwrap();
    assert_eq!(g.calls.lock().unwrap().len(), 1, "{report:?}");
    assert_eq!(report.succeeded.len(), 2);
    assert_eq!(report.waiting, 1);
}

/// The first record's arrival stamp, in seconds since the epoch.
async fn first_arrival(s: &Setup) -> f64 {
    s.aws.read_stream(&s.stream).await.unwrap()[0]
        .approximate_arrival_timestamp
        .map_or(0.0, |t| t.as_secs_f64())
}

/// A clock for the mapping that reads `start` (seconds since the epoch) until the returned setter moves it.
fn test_clock(start: f64) -> (impl Fn(f64), devtools::esm::Clock) {
    let now = Arc::new(std::sync::atomic::AtomicU64::new(start.to_bits()));
    let read = now.clone();
    let set = move |t: f64| now.store(t.to_bits(), std::sync::atomic::Ordering::SeqCst);
    let clock: devtools::esm::Clock =
        Arc::new(move || f64::from_bits(read.load(std::sync::atomic::Ordering::SeqCst)));
    (set, clock)
}

/// `make local`'s stack: every function of the template deployed on the emulator, the trigger forwarder reached
/// through the local Lambda Invoke API, and its auth event carried by the active-users mapping into the rollup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_stack_invokes_the_trigger_and_its_event_reaches_the_rollup() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let aws = LocalAws::from_env().await.unwrap();
    let mut stack = devtools::deployment::Deployment::start(aws.clone(), &e2e::root())
        .await
        .unwrap();
    let functions = stack
        .functions()
        .map(|(name, f)| (name.to_owned(), f.clone()))
        .collect();
    let endpoint = devtools::runtime_api::serve_invoke_api(functions)
        .await
        .unwrap();
    let address = endpoint.trim_start_matches("http://").to_owned();
    let sample =
        std::fs::read(e2e::root().join("events/auth/PostAuthentication_Authentication.json"))
            .unwrap();
    let post = |path: String, body: Vec<u8>| {
        let address = address.clone();
        async move {
            let mut conn = tokio::net::TcpStream::connect(&address).await.unwrap();
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: lambda\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            conn.write_all(head.as_bytes()).await.unwrap();
            conn.write_all(&body).await.unwrap();
            let mut answer = Vec::new();
            conn.read_to_end(&mut answer).await.unwrap();
            let text = String::from_utf8(answer).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            (head.to_owned(), body.to_owned())
        }
    };
    let (head, body) = post(
        "/2015-03-31/functions/auth-trigger-forwarder/invocations".into(),
        sample.clone(),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!head.contains("X-Amz-Function-Error"), "{head}");
    // The trigger answers Cognito with the event it was given.
    let sent: Value = serde_json::from_slice(&sample).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), sent);
    let (head, _) = post(
        "/2015-03-31/functions/no-such-function/invocations".into(),
        b"{}".to_vec(),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    stack
        .settle(std::time::Duration::from_secs(60), |_, _| {})
        .await
        .unwrap();
    let rollup = stack
        .mappings
        .iter()
        .find(|m| m.name == "active-users <- auth-events-stream")
        .unwrap();
    assert_eq!(
        rollup.delivered.len(),
        1,
        "the one auth event reached the rollup"
    );
    assert_eq!(rollup.given_up, 0);
    let metrics = stack.function("active-users").unwrap().metrics();
    assert_eq!(
        metrics.get(active_users::handler::METRIC_COMMITS).copied(),
        Some(1),
        "{metrics:?}"
    );
    assert!(
        metrics
            .get(active_users::handler::METRIC_HISTORIES_WRITTEN)
            .copied()
            .unwrap_or(0)
            > 0,
        "the signed-in user's history was written: {metrics:?}"
    );
    assert_eq!(metrics.get("DeadLettered").copied().unwrap_or(0), 0);
    stack.stop().await;
}
