//! `make bench`, end to end: the release binaries run as Lambda runs them (behind the local Runtime API), against
//! moto, on generated events; the process's CPU time and peak RSS read from the OS (`/proc`), the AWS requests
//! counted by operation (through `devtools::proxy`, once with the function's connections kept alive as AWS keeps
//! them, once closed after every request as moto closes them). Writes `BENCHMARKS.md` and
//! `target/bench/e2e.json`. Run under scripts/with-moto after `cargo build --release --workspace --bins`.
//!
//! Cases: the sync processor on 3,000 Cognito Sync records (1-3 changed keys each, 10% exact repeats, 5% stale
//! older versions) and on a maximum batch (10,000 records, ~6 MB event, 1% S3Url payloads); the auth log forwarder
//! on 3,000 user-activity log records; the trigger forwarder's answer time over 1,000 invocations. And a floor for
//! the record path: base64 plus serde_json parse and serialize of the same records, in this process.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use base64::Engine as _;
use devtools::LocalAws;
use devtools::emulator::unique_name;
use devtools::esm::{InvokeOutcome, Invoker as _};
use devtools::events::{example_stream_arn, sync_event};
use devtools::proxy::{ClientConnections, CountingProxy};
use devtools::runtime_api::LocalFunction;
use serde_json::{Value, json};

const T: i64 = 1_700_000_000_000;
const POOL: &str = "us-east-1:00000000-0000-4000-8000-000000000000";

fn main() -> ExitCode {
    devtools::run_main("bench-e2e", run())
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where the function binaries are: `BENCH_BIN_DIR` (`make profile` points it at target/profiling, binaries
/// with their symbols), else target/release.
fn bin_dir() -> PathBuf {
    std::env::var_os("BENCH_BIN_DIR").map_or_else(|| root().join("target/release"), PathBuf::from)
}

/// `BENCH_ONLY=sync-3000` (`make profile`): only the sync processor's 3,000-record case with kept-alive
/// connections, three rounds, and BENCHMARKS.md is left alone.
fn only_sync() -> bool {
    std::env::var("BENCH_ONLY").as_deref() == Ok("sync-3000")
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A value of about `len` bytes.
fn value(i: usize, len: usize) -> String {
    let mut v = format!("{{\"score\":{i},\"note\":\"");
    while v.len() < len {
        v.push_str("benchmark ");
    }
    v.push_str("\"}");
    v
}

fn sync_doc(identity: usize, dataset: &str, keys: &[(usize, i64)], value_len: usize) -> Value {
    let sync_count = keys.iter().map(|k| k.1).max().unwrap_or(1);
    let changes: Vec<Value> = keys
        .iter()
        .map(|(k, sc)| json!({"key": format!("key-{k}"), "value": value(*k, value_len), "syncCount": sc,
            "lastModifiedDate": T + sc * 1000, "deviceLastModifiedDate": T + sc * 1000 - 10, "op": "replace"}))
        .collect();
    json!({"identityPoolId": POOL, "identityId": format!("us-east-1:00000000-0000-4000-8000-{identity:012}"),
           "datasetName": dataset, "operation": "replace", "payloadType": "Inline", "syncCount": sync_count,
           "lastModifiedDate": T + sync_count * 1000, "kinesisSyncRecords": changes})
}

/// 3,000 records: 1-3 changed keys each, 10% exact repeats of an earlier record, 5% stale older versions.
fn sync_docs(records: usize, value_len: usize) -> Vec<Value> {
    let mut docs: Vec<Value> = Vec::with_capacity(records);
    let mut rng = fastrand::Rng::with_seed(9);
    // Each identity's dataset moves forward: its sync count per key.
    let mut counts: BTreeMap<usize, i64> = BTreeMap::new();
    while docs.len() < records {
        let roll = rng.u32(0..100);
        if roll < 10 && !docs.is_empty() {
            let again = docs[rng.usize(0..docs.len())].clone();
            docs.push(again);
            continue;
        }
        let identity = rng.usize(0..1_000);
        let n = rng.usize(1..=3);
        let current = counts.entry(identity).or_insert(1);
        if roll < 15 && *current > 2 {
            // An older version of keys this identity has already moved past.
            let keys: Vec<(usize, i64)> = (0..n).map(|k| (k, *current - 2)).collect();
            docs.push(sync_doc(identity, "game", &keys, value_len));
            continue;
        }
        *current += 1;
        let keys: Vec<(usize, i64)> = (0..n).map(|k| (k, *current)).collect();
        docs.push(sync_doc(identity, "game", &keys, value_len));
    }
    docs
}

fn event_of(docs: &[Value]) -> Value {
    sync_event("bench-source", docs)
}

/// A CloudWatch Logs subscription record (gzip) holding one user-activity entry.
fn log_record(i: usize) -> Result<Vec<u8>, String> {
    let message = json!({"eventSource": "USER_ACTIVITY", "eventTimestamp": (T + i as i64).to_string(), "logLevel": "INFO",
        "logSourceId": {"userPoolId": "us-east-1_EXAMPLE"},
        "message": {"challenges": [], "city": "Seattle", "clientId": "1example23456789", "compromisedCredentialDetected": "false",
            "country": "United States", "creationDate": "Wed Nov 15 09:00:00 UTC 2023", "deviceName": "Chrome 126, Windows 10",
            "eventId": format!("a0000000-0000-4000-8000-{i:012}"), "eventResponse": if i.is_multiple_of(7) { "Fail" } else { "Pass" },
            "eventType": "SignIn", "hasContextData": "true", "idpName": "", "ipAddress": "192.0.2.10",
            "requestId": format!("req-{i}"), "riskDecision": "PASS", "riskLevel": "Low", "userName": format!("user{}", i % 800),
            "userPoolId": "us-east-1_EXAMPLE", "userSub": format!("4f3e2d1c-0000-4000-8000-{:012}", i % 800), "version": "1"}});
    let doc = json!({"messageType": "DATA_MESSAGE", "owner": "123456789012",
        "logGroup": "/aws/cognito/userpool/us-east-1_EXAMPLE/user-activity", "logStream": "user-activity-stream-0001",
        "subscriptionFilters": ["to-kinesis"],
        "logEvents": [{"id": format!("{:056}", i), "timestamp": T + i as i64, "message": message.to_string()}]});
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(doc.to_string().as_bytes()).map_err(text)?;
    gz.finish().map_err(text)
}

fn log_event(records: usize) -> Result<Value, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let arn = example_stream_arn("bench-user-activity");
    let mut out = Vec::with_capacity(records);
    for i in 0..records {
        let data = log_record(i)?;
        let seq = devtools::events::sequence_number(i as u64);
        out.push(json!({"kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": format!("pk-{i}"), "sequenceNumber": seq,
            "data": b64.encode(&data), "approximateArrivalTimestamp": 1_700_000_100.0}, "eventSource": "aws:kinesis",
            "eventVersion": "1.0", "eventID": format!("shardId-000000000000:{seq}"), "eventName": "aws:kinesis:record",
            "invokeIdentityArn": "arn:aws:iam::123456789012:role/bench", "awsRegion": "us-east-1", "eventSourceARN": arn}));
    }
    Ok(json!({"Records": out}))
}

/// Clock ticks per second of `/proc/<pid>/stat`.
fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// User + system CPU time of a process.
fn cpu(pid: u32, ticks: u64) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (u64, u64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / ticks as f64,
    ))
}

/// What one invocation of a case cost.
#[derive(Debug, Clone, serde::Serialize)]
struct Run {
    connections: &'static str,
    records: usize,
    event_bytes: usize,
    cpu_ms: f64,
    cpu_us_per_record: f64,
    init_cpu_ms: f64,
    cold_start_ms: Option<f64>,
    wall_ms: f64,
    peak_rss_mib: f64,
    requests: BTreeMap<String, u64>,
    metrics: BTreeMap<String, u64>,
    client_connections: u64,
    rounds_us_per_record: String,
    batch_item_failures: usize,
    /// The most source records with outputs under one partition key ([`longest_chain`]): outputs of different
    /// records of a key never share a PutRecords request (order under partial failures), so no fewer requests.
    longest_chain: usize,
}

struct Stack {
    aws: LocalAws,
    env: Vec<(String, String)>,
}

async fn sync_stack(aws: &LocalAws) -> Result<Stack, String> {
    let (out, table, bucket) = (
        unique_name("bench-out"),
        unique_name("bench-marks"),
        unique_name("bench"),
    );
    aws.create_stream(&out, 4).await.map_err(text)?;
    aws.create_dedup_table(&table).await.map_err(text)?;
    aws.create_bucket(&bucket).await.map_err(text)?;
    Ok(Stack {
        aws: aws.clone(),
        env: vec![
            ("OUTPUT_STREAM_NAME".into(), out),
            ("DEDUP_TABLE_NAME".into(), table),
            ("DEAD_LETTER_BUCKET".into(), bucket),
        ],
    })
}

async fn log_stack(aws: &LocalAws) -> Result<Stack, String> {
    let (out, bucket) = (unique_name("bench-auth"), unique_name("bench"));
    aws.create_stream(&out, 4).await.map_err(text)?;
    aws.create_bucket(&bucket).await.map_err(text)?;
    Ok(Stack {
        aws: aws.clone(),
        env: vec![
            ("AUTH_OUTPUT_STREAM_NAME".into(), out),
            ("DEAD_LETTER_BUCKET".into(), bucket),
        ],
    })
}

/// The most source records whose outputs went out under one partition key, read back from the output stream: a
/// key's outputs of different source records never share a PutRecords request, so no plan takes fewer requests
/// than that. (Counting the event's records per key instead overstates it: repeats and stale versions have no
/// outputs.)
async fn longest_chain(aws: &LocalAws, stream: &str) -> Result<usize, String> {
    let mut by: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in aws.read_stream(stream).await.map_err(text)? {
        let doc: Value = serde_json::from_slice(r.data.as_ref()).map_err(text)?;
        let source = &doc["source"];
        by.entry(r.partition_key.clone().unwrap_or_default())
            .or_default()
            .insert(format!(
                "{}/{}",
                source["sequence_number"], source["user_record"]
            ));
    }
    Ok(by.values().map(BTreeSet::len).max().unwrap_or(0))
}

/// Rounds per case: the median CPU is reported (moto shares this machine's cores with the function).
const ROUNDS: usize = 3;

/// [`measure_once`] `ROUNDS` times with a fresh stack each; the round of median CPU.
async fn measure<F, Fut>(
    binary: &str,
    stack: F,
    mode: ClientConnections,
    event: &Value,
    records: usize,
    ticks: u64,
    payloads: Option<&CountingProxy>,
) -> Result<Run, String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Stack, String>>,
{
    let mut rounds = Vec::new();
    for _ in 0..ROUNDS {
        rounds.push(
            measure_once(
                binary,
                stack().await?,
                mode,
                event,
                records,
                ticks,
                payloads,
            )
            .await?,
        );
    }
    rounds.sort_by(|a, b| a.cpu_ms.total_cmp(&b.cpu_ms));
    let cpus: Vec<String> = rounds
        .iter()
        .map(|r| format!("{:.0}", r.cpu_us_per_record))
        .collect();
    let mut median = rounds.swap_remove(ROUNDS / 2);
    median.rounds_us_per_record = cpus.join(" / ");
    Ok(median)
}

/// Runs `binary` once on `event` through a proxy in `mode`; `stack` is made fresh for the run.
async fn measure_once(
    binary: &str,
    stack: Stack,
    mode: ClientConnections,
    event: &Value,
    records: usize,
    ticks: u64,
    payloads: Option<&CountingProxy>,
) -> Result<Run, String> {
    let proxy = CountingProxy::start(&stack.aws.endpoint, mode)
        .await
        .map_err(text)?;
    let mut env = stack.env.clone();
    env.push(("AWS_ENDPOINT_URL".into(), proxy.endpoint.clone()));
    let origins = match payloads {
        Some(p) => format!("{},{}", proxy.endpoint, p.endpoint),
        None => proxy.endpoint.clone(),
    };
    env.push(("S3_URL_ALLOWED_ORIGINS".into(), origins));
    // As deployed: JSON logs at Lambda's default application level.
    env.push(("AWS_LAMBDA_LOG_FORMAT".into(), "JSON".into()));
    env.push(("AWS_LAMBDA_LOG_LEVEL".into(), "INFO".into()));
    let path = bin_dir().join(binary);
    if !path.exists() {
        return Err(format!(
            "{} is missing: run `cargo build --release --workspace --bins`",
            path.display()
        ));
    }
    let f = LocalFunction::start(binary, path, env, Duration::from_secs(900))
        .await
        .map_err(text)?;
    f.warm().await.map_err(text)?;
    let waited = Instant::now();
    while f.cold_start().is_none() && waited.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pid = f.pid().await.ok_or("the function did not start")?;
    let init = cpu(pid, ticks).unwrap_or_default();
    proxy.counts.reset();
    if let Some(p) = payloads {
        p.counts.reset();
    }
    let connections_before = proxy.connections.load(std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    let outcome = f.invoke(event.clone()).await;
    let wall = started.elapsed();
    let after = cpu(pid, ticks).unwrap_or_default();
    let rss = devtools::peak_rss_kib(&pid.to_string()).unwrap_or(0);
    // The EMF line is read from the function's stdout as it prints it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let metrics = f.metrics();
    f.stop().await;
    let failures = match &outcome {
        InvokeOutcome::Response(body) => serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v["batchItemFailures"].as_array().map(Vec::len))
            .unwrap_or(0),
        other => return Err(format!("{binary}: {other:?}")),
    };
    let used = after.saturating_sub(init);
    let chain = longest_chain(&stack.aws, &stack.env[0].1).await?;
    let mut requests = proxy.counts.snapshot();
    if let Some(p) = payloads {
        for (op, n) in p.counts.snapshot() {
            *requests.entry(format!("{op} (S3Url payload)")).or_default() += n;
        }
    }
    Ok(Run {
        connections: match mode {
            ClientConnections::KeepAlive => "kept alive",
            ClientConnections::CloseEach => "closed after each request (as moto)",
        },
        records,
        event_bytes: serde_json::to_vec(event).map_or(0, |b| b.len()),
        cpu_ms: used.as_secs_f64() * 1e3,
        cpu_us_per_record: used.as_secs_f64() * 1e6 / records.max(1) as f64,
        init_cpu_ms: init.as_secs_f64() * 1e3,
        cold_start_ms: f.cold_start().map(|d| d.as_secs_f64() * 1e3),
        wall_ms: wall.as_secs_f64() * 1e3,
        peak_rss_mib: rss as f64 / 1024.0,
        requests,
        metrics,
        client_connections: proxy.connections.load(std::sync::atomic::Ordering::Relaxed)
            - connections_before,
        rounds_us_per_record: String::new(),
        longest_chain: chain,
        batch_item_failures: failures,
    })
}

/// The maximum batch: 10,000 records in about 6 MB of event, 1% of them S3Url records whose payloads sit in S3.
async fn max_batch(aws: &LocalAws, stack: &Stack) -> Result<Value, String> {
    let bucket = &stack.env[2].1;
    // Small records (one key, a short value): Lambda's 6 MB payload limit holds fewer than 10,000 Cognito Sync
    // records of any size (each takes ~900 bytes of event with its base64 and fields), so the batch is as many as
    // fit.
    let mut docs: Vec<Value> = sync_docs(10_000, 8)
        .into_iter()
        .map(|mut d| {
            if let Some(changes) = d["kinesisSyncRecords"].as_array_mut() {
                changes.truncate(1);
            }
            d
        })
        .collect();
    loop {
        // One serialization per round: the event's size decides both whether and how much to cut.
        let bytes = serde_json::to_vec(&event_of(&docs)).map_or(0, |b| b.len());
        if docs.len() <= 1 || bytes <= devtools::esm::MAX_EVENT_BYTES {
            break;
        }
        let over = bytes - devtools::esm::MAX_EVENT_BYTES;
        let per = (bytes / docs.len()).max(1);
        docs.truncate(docs.len() - (over / per + 1).min(docs.len() - 1));
    }
    for (n, i) in (0..docs.len()).step_by(100).enumerate() {
        let payload: Vec<Value> = (0..20)
            .map(|k| json!({"key": format!("big-{k}"), "value": value(k, 2_000), "syncCount": 2, "lastModifiedDate": T + 2_000,
                            "deviceLastModifiedDate": T + 1_990, "op": "replace"}))
            .collect();
        let key = format!("payloads/{n}.json");
        aws.s3
            .put_object()
            .bucket(bucket)
            .key(&key)
            .body(serde_json::to_vec(&payload).map_err(text)?.into())
            .send()
            .await
            .map_err(text)?;
        let d = &mut docs[i];
        d["payloadType"] = json!("S3Url");
        d["syncCount"] = json!(2);
        d["kinesisSyncRecordsURL"] = json!(format!("S3URL:{bucket}/{key}"));
        if let Some(m) = d.as_object_mut() {
            m.remove("kinesisSyncRecords");
        }
    }
    Ok(event_of(&docs))
}

/// Presigns each `S3URL:bucket/key` placeholder against `endpoint` (the proxy), so fetches are counted.
async fn presign_for(event: &Value, endpoint: &str) -> Result<Value, String> {
    let sdk = aws_config::from_env().endpoint_url(endpoint).load().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut event = event.clone();
    for r in event["Records"].as_array_mut().into_iter().flatten() {
        let data = b64
            .decode(r["kinesis"]["data"].as_str().unwrap_or_default())
            .map_err(text)?;
        let mut doc: Value = serde_json::from_slice(&data).map_err(text)?;
        let Some(place) = doc["kinesisSyncRecordsURL"]
            .as_str()
            .and_then(|u| u.strip_prefix("S3URL:"))
        else {
            continue;
        };
        let (bucket, key) = place.split_once('/').ok_or("bad placeholder")?;
        let url = s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .presigned(
                aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(3600))
                    .map_err(text)?,
            )
            .await
            .map_err(text)?;
        doc["kinesisSyncRecordsURL"] = json!(url.uri());
        r["kinesis"]["data"] = json!(b64.encode(serde_json::to_vec(&doc).map_err(text)?));
    }
    Ok(event)
}

/// base64 decode + serde_json parse + serialize of every record's data: the least any record path costs.
fn floor_us_per_record(event: &Value) -> f64 {
    let b64 = base64::engine::general_purpose::STANDARD;
    let records = event["Records"].as_array().cloned().unwrap_or_default();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        let mut bytes = 0usize;
        for r in &records {
            if let Ok(data) = b64.decode(r["kinesis"]["data"].as_str().unwrap_or_default())
                && let Ok(v) = serde_json::from_slice::<Value>(&data)
            {
                bytes += serde_json::to_vec(&v).map_or(0, |b| b.len());
            }
        }
        std::hint::black_box(bytes);
        best = best.min(started.elapsed().as_secs_f64() * 1e6 / records.len().max(1) as f64);
    }
    best
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

async fn run() -> Result<(), String> {
    let aws = LocalAws::from_env().await.map_err(text)?;
    let ticks = clock_ticks();
    let mut runs: BTreeMap<String, Vec<Run>> = BTreeMap::new();
    let modes = [ClientConnections::KeepAlive, ClientConnections::CloseEach];

    println!(
        "bench-e2e: release binaries behind the local Runtime API, against moto at {}",
        aws.endpoint
    );
    let sync_event = event_of(&sync_docs(3_000, 450));
    let sync_modes: &[ClientConnections] = if only_sync() { &modes[..1] } else { &modes };
    for &mode in sync_modes {
        let run = measure(
            "sync-processor",
            || sync_stack(&aws),
            mode,
            &sync_event,
            3_000,
            ticks,
            None,
        )
        .await?;
        println!(
            "  sync-processor, 3,000 records, connections {}: {run:?}",
            run.connections
        );
        runs.entry("sync-processor, 3,000 records".into())
            .or_default()
            .push(run);
    }
    if only_sync() {
        return Ok(());
    }
    for mode in modes {
        let stack = sync_stack(&aws).await?;
        let template = max_batch(&aws, &stack).await?;
        // Payload URLs are presigned against a proxy of their own (of the same mode), so fetches are counted.
        let payloads = CountingProxy::start(&aws.endpoint, mode)
            .await
            .map_err(text)?;
        let event = presign_for(&template, &payloads.endpoint).await?;
        let records = event["Records"].as_array().map_or(0, Vec::len);
        let bucket = stack.env[2].1.clone();
        // Every round needs the payloads in its bucket: the same bucket, fresh stream and table.
        let fresh = || async {
            let mut s = sync_stack(&aws).await?;
            s.env[2].1 = bucket.clone();
            Ok::<Stack, String>(s)
        };
        let run = measure(
            "sync-processor",
            fresh,
            mode,
            &event,
            records,
            ticks,
            Some(&payloads),
        )
        .await?;
        println!(
            "  sync-processor, max batch, connections {}: {run:?}",
            run.connections
        );
        runs.entry("sync-processor, maximum batch (6 MB, 1% S3Url)".into())
            .or_default()
            .push(run);
    }
    let log = log_event(3_000)?;
    for mode in modes {
        let run = measure(
            "auth-log-forwarder",
            || log_stack(&aws),
            mode,
            &log,
            3_000,
            ticks,
            None,
        )
        .await?;
        println!(
            "  auth-log-forwarder, 3,000 records, connections {}: {run:?}",
            run.connections
        );
        runs.entry("auth-log-forwarder, 3,000 records".into())
            .or_default()
            .push(run);
    }

    // The trigger: answer time over 1,000 invocations (PutRecord to the auth stream each), connections kept alive.
    let trigger_stack = log_stack(&aws).await?;
    let proxy = CountingProxy::start(&aws.endpoint, ClientConnections::KeepAlive)
        .await
        .map_err(text)?;
    let mut env = vec![(
        "AUTH_OUTPUT_STREAM_NAME".to_owned(),
        trigger_stack.env[0].1.clone(),
    )];
    env.push(("AWS_ENDPOINT_URL".into(), proxy.endpoint.clone()));
    let trigger = LocalFunction::start(
        "auth-trigger-forwarder",
        bin_dir().join("auth-trigger-forwarder"),
        env,
        Duration::from_secs(5),
    )
    .await
    .map_err(text)?;
    let sample: Value = serde_json::from_slice(
        &std::fs::read(root().join("events/auth/PostAuthentication_Authentication.json"))
            .map_err(text)?,
    )
    .map_err(text)?;
    let mut latencies = Vec::with_capacity(1_000);
    for _ in 0..1_000 {
        let started = Instant::now();
        let outcome = trigger.invoke(sample.clone()).await;
        latencies.push(started.elapsed());
        if !matches!(outcome, InvokeOutcome::Response(_)) {
            return Err(format!("trigger: {outcome:?}"));
        }
    }
    let trigger_cold = trigger.cold_start();
    trigger.stop().await;
    latencies.sort();
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    let puts = proxy.counts.snapshot();
    println!(
        "  auth-trigger-forwarder, 1,000 invocations: p50 {p50:.2} ms, p99 {p99:.2} ms, requests {puts:?}"
    );

    let floor = floor_us_per_record(&sync_event);
    let sizes: BTreeMap<String, u64> = [
        "sync-processor",
        "auth-log-forwarder",
        "auth-trigger-forwarder",
        "app-event-forwarder",
        "active-users",
    ]
    .iter()
    .filter_map(|b| {
        std::fs::metadata(bin_dir().join(b))
            .ok()
            .map(|m| ((*b).to_owned(), m.len()))
    })
    .collect();

    let report = json!({"machine": machine(), "runs": runs, "trigger": {"invocations": 1_000, "p50_ms": p50, "p99_ms": p99,
        "cold_start_ms": trigger_cold.map(|d| d.as_secs_f64() * 1e3), "requests": puts},
        "floor_us_per_record": floor, "binary_bytes": sizes});
    std::fs::create_dir_all(root().join("target/bench")).map_err(text)?;
    std::fs::write(
        root().join("target/bench/e2e.json"),
        serde_json::to_vec_pretty(&report).map_err(text)?,
    )
    .map_err(text)?;
    let md = markdown(&runs, p50, p99, trigger_cold, floor, &sizes);
    let path = root().join("BENCHMARKS.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(&path, splice(&old, &md)).map_err(text)?;
    println!("\n{md}\nwritten: BENCHMARKS.md, target/bench/e2e.json");
    Ok(())
}

const BEGIN: &str = "<!-- measured by make bench: everything up to the end marker is rewritten -->";
const END: &str = "<!-- end of measured -->";

/// `old` with its measured part replaced by `measured` (the written findings after it are kept).
fn splice(old: &str, measured: &str) -> String {
    let block = format!("{BEGIN}\n{measured}{END}\n");
    match (old.find(BEGIN), old.find(END)) {
        (Some(a), Some(b)) if a < b => format!(
            "{}{block}{}",
            &old[..a],
            old[b + END.len()..].trim_start_matches('\n')
        ),
        _ => format!("{block}{old}"),
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}

fn markdown(
    runs: &BTreeMap<String, Vec<Run>>,
    p50: f64,
    p99: f64,
    trigger_cold: Option<Duration>,
    floor: f64,
    sizes: &BTreeMap<String, u64>,
) -> String {
    let mut md = String::new();
    md.push_str("# Benchmarks\n\nWritten by `make bench` (crates/devtools/src/bin/bench-e2e.rs) on this machine: ");
    md.push_str(&machine());
    md.push_str(". Release binaries behind the local Runtime API, against moto on loopback; CPU (median of 3 rounds) and peak RSS of the \
function's process from /proc; AWS requests counted by a loopback proxy. moto closes the connection after every \
request, so a function talking to it pays a TCP connect and connection setup per request, which AWS's keep-alive \
endpoints do not cost: every case runs twice, with the function's connections kept alive by the proxy (the figure \
that stands for AWS) and closed after each request (as moto). moto's own time is not in the CPU figures (another \
process) but is in the wall times.\n\n");
    md.push_str("| figure | target | measured | met |\n|---|---|---|---|\n");
    let get = |case: &str, keep: bool| {
        runs.get(case)
            .and_then(|v| v.iter().find(|r| r.connections.starts_with("kept") == keep))
            .cloned()
    };
    let mut row = |figure: String, target: &str, measured: String, met: Option<bool>| {
        md.push_str(&format!(
            "| {figure} | {target} | {measured} | {} |\n",
            match met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "-",
            }
        ));
    };
    for (case, binary_target) in [
        ("sync-processor, 3,000 records", Some(350.0)),
        ("auth-log-forwarder, 3,000 records", Some(350.0)),
        ("sync-processor, maximum batch (6 MB, 1% S3Url)", None),
    ] {
        for keep in [true, false] {
            if let Some(r) = get(case, keep) {
                row(
                    format!("{case}: process CPU per source record ({})", r.connections),
                    if keep && binary_target.is_some() {
                        "≤ 350 µs"
                    } else {
                        "-"
                    },
                    format!(
                        "{:.0} µs ({:.2} s CPU, {:.2} s wall; {} records; rounds {} µs)",
                        r.cpu_us_per_record,
                        r.cpu_ms / 1e3,
                        r.wall_ms / 1e3,
                        r.records,
                        r.rounds_us_per_record
                    ),
                    binary_target
                        .filter(|_| keep)
                        .map(|t| r.cpu_us_per_record <= t),
                );
            }
        }
        if let Some(r) = get(case, true) {
            let reqs: Vec<String> = r.requests.iter().map(|(k, v)| format!("{k} {v}")).collect();
            row(format!("{case}: AWS requests"), "-", reqs.join(", "), None);
            let m = |k: &str| r.metrics.get(k).copied().unwrap_or(0);
            let outputs = m("ChangesForwarded") + m("AuthEventsForwarded");
            let puts = r.requests.get("PutRecords").copied().unwrap_or(0);
            let resent = m("RecordsRetried");
            row(
                format!("{case}: PutRecords calls for {outputs} outputs ({resent} entries resent)"),
                "⌈outputs/500⌉ + resends",
                puts.to_string(),
                Some(puts <= outputs.div_ceil(500) + resent),
            );
            let floor = outputs.div_ceil(500).max(r.longest_chain as u64);
            row(
                format!(
                    "{case}: PutRecords calls against the order floor (a key's outputs of different source records \
                     never share a request; the most source records with outputs of one key here: {})",
                    r.longest_chain
                ),
                "max(⌈outputs/500⌉, that chain) + resends",
                format!("{puts} (floor {floor})"),
                Some(puts <= floor + resent),
            );
            if r.metrics.contains_key("ChangesForwarded") {
                let writes = r.requests.get("PutItem").copied().unwrap_or(0);
                let changes = m("ChangesForwarded");
                row(
                    format!(
                        "{case}: DynamoDB writes for {changes} new changes ({} repeats, {} stale dropped)",
                        m("DuplicatesDropped"),
                        m("StaleDropped")
                    ),
                    "≤ 1 per new change",
                    format!(
                        "{writes} PutItem ({:.2} per change)",
                        writes as f64 / changes.max(1) as f64
                    ),
                    Some(writes <= changes),
                );
            }
            row(
                format!("{case}: peak RSS"),
                if case.contains("maximum") {
                    "≤ 64 MB"
                } else {
                    "-"
                },
                format!(
                    "{:.1} MiB (event {:.1} MB)",
                    r.peak_rss_mib,
                    r.event_bytes as f64 / 1e6
                ),
                case.contains("maximum")
                    .then_some(r.peak_rss_mib * 1.048_576 <= 64.0),
            );
            if let Some(c) = r.cold_start_ms {
                row(
                    format!("{case}: cold start (process start to its first `next`)"),
                    "≤ 50 ms",
                    format!("{c:.1} ms"),
                    Some(c <= 50.0),
                );
            }
        }
    }
    row(
        "auth-trigger-forwarder: answer time over 1,000 invocations, p50".into(),
        "≤ 5 ms",
        format!("{p50:.2} ms"),
        Some(p50 <= 5.0),
    );
    row(
        "auth-trigger-forwarder: answer time, p99".into(),
        "≤ 50 ms",
        format!("{p99:.2} ms"),
        Some(p99 <= 50.0),
    );
    if let Some(c) = trigger_cold {
        let c = c.as_secs_f64() * 1e3;
        row(
            "auth-trigger-forwarder: cold start".into(),
            "≤ 50 ms",
            format!("{c:.1} ms"),
            Some(c <= 50.0),
        );
    }
    for (b, bytes) in sizes {
        let mb = *bytes as f64 / 1e6;
        row(
            format!("{b}: release binary (x86-64)"),
            "≤ 10 MB",
            format!("{mb:.1} MB"),
            Some(mb <= 10.0),
        );
    }
    row(
        "floor: base64 + serde_json parse and serialize of the 3,000-record event's data, per record".into(),
        "-",
        format!("{floor:.1} µs"),
        None,
    );
    md
}
