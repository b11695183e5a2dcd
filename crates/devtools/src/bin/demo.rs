//! `make demo`: the sync processor end to end on the local emulator.
//!
//! Creates the source and output streams, the dedup table and the bucket; puts the sample Cognito Streams
//! records on the source stream one `PutRecord` at a time, as Cognito does (with an S3Url record whose
//! payload it stores and presigns); builds the Kinesis event Lambda would deliver from what is on the stream;
//! invokes the real `sync-processor` binary through `cargo lambda watch` and `cargo lambda invoke`; prints
//! what landed and a summary; exits non-zero if an expected change is missing. Runs under scripts/with-moto.
//!
//! With `--event FILE` it provisions the same resources and invokes the function with that Lambda event
//! instead (`make invoke EVENT=events/sync-poison.json`), printing the response and what landed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use devtools::events::{event_from_stream_records, sample_documents};
use devtools::{LocalAws, sizes};
use serde_json::Value;
use sync_processor::config as sp;

const SOURCE: &str = "cognito-sync-source";
const OUTPUT: &str = "cognito-sync-changes";
const TABLE: &str = "cognito-sync-marks";
const BUCKET: &str = "cognito-bridge-demo";
/// The samples put on the stream, in order. The poison sample's non-base64 record cannot exist on a real
/// stream (Kinesis stores bytes), so only its other records are put.
const SAMPLES: &[&str] = &[
    "sync-inline-replace",
    "sync-inline-remove",
    "sync-s3url",
    "sync-bulk-publish-replay",
    "sync-poison",
    "sync-dataset-remove",
];

/// (identity suffix, dataset, type, key) of every change that must land.
const EXPECTED: &[(&str, &str, &str, &str)] = &[
    ("000000000001", "settings", "record.replace", "theme"),
    ("000000000001", "settings", "record.replace", "locale"),
    ("000000000001", "settings", "record.replace", "audio"),
    ("000000000001", "settings", "record.remove", "theme"),
    ("000000000001", "settings", "dataset.remove", ""),
    ("000000000002", "profile", "record.replace", "bio"),
    ("000000000002", "profile", "record.replace", "avatar"),
    ("000000000002", "profile", "record.remove", "nickname"),
    ("000000000003", "game", "record.replace", "level"),
    ("000000000003", "game", "record.replace", "best"),
    ("000000000004", "settings", "record.replace", "theme"),
];
/// Changes forwarded in all (level is forwarded three times: versions 1, 2 and 3).
const EXPECTED_FORWARDED: usize = 13;
/// Dead letters expected (the poison sample's records that can exist on a stream).
const EXPECTED_DEAD_LETTERS: usize = 3;

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("demo: cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, String>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read_json(relative: &str) -> Result<Value> {
    let bytes = std::fs::read(root().join(relative)).map_err(|e| format!("{relative}: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{relative}: {e}"))
}

async fn provision(aws: &LocalAws) -> Result<String> {
    println!("== provisioning the local emulator at {}", aws.endpoint);
    let source_arn = aws
        .create_stream(SOURCE, 1)
        .await
        .map_err(|e| e.to_string())?;
    aws.create_stream(OUTPUT, 1)
        .await
        .map_err(|e| e.to_string())?;
    aws.create_dedup_table(TABLE)
        .await
        .map_err(|e| e.to_string())?;
    aws.create_bucket(BUCKET).await.map_err(|e| e.to_string())?;
    Ok(source_arn)
}

/// Invokes the function once with `event_file` through cargo lambda; returns its response and metrics.
fn invoke_through_cargo_lambda(
    aws: &LocalAws,
    event_file: &Path,
) -> Result<(Value, Option<Value>)> {
    println!("== invoking the sync-processor binary through cargo lambda watch / invoke");
    let demo_dir = root().join(".demo");
    std::fs::create_dir_all(&demo_dir).map_err(|e| e.to_string())?;
    let port = free_port()?;
    let log = demo_dir.join("watch.log");
    let mut watch = Watch::start(aws, port, &log)?;
    let response = invoke(port, event_file);
    let metrics = wait_for_metrics(&log, Duration::from_secs(20));
    watch.stop();
    let response = response?;
    println!("   function answered: {response}");
    Ok((response, metrics))
}

/// `--event FILE`: one invocation with a given event, no expectations.
async fn run_event(file: &Path) -> Result<bool> {
    let aws = LocalAws::from_env().await.map_err(|e| e.to_string())?;
    provision(&aws).await?;
    let (_, metrics) = invoke_through_cargo_lambda(&aws, file)?;
    let outputs = print_outputs(&aws).await?;
    let dead = print_dead_letters(&aws).await?;
    println!(
        "== {} changes forwarded, {} dead letters",
        outputs.len(),
        dead.len()
    );
    println!("   metrics: {}", metrics.unwrap_or_default());
    Ok(true)
}

async fn run() -> Result<bool> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--event") {
        let file = args.get(i + 1).ok_or("--event needs a file")?;
        return run_event(&std::fs::canonicalize(file).map_err(|e| format!("{file}: {e}"))?).await;
    }
    let aws = LocalAws::from_env().await.map_err(|e| e.to_string())?;
    let source_arn = provision(&aws).await?;

    println!("== putting the sample Cognito Streams records on {SOURCE}");
    let payload = std::fs::read(root().join("events/payloads/sync-s3url-payload.json"))
        .map_err(|e| e.to_string())?;
    aws.s3
        .put_object()
        .bucket(BUCKET)
        .key("cognito-sync/profile/7.json")
        .body(payload.into())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let presign = aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(900))
        .map_err(|e| e.to_string())?;
    let url = aws
        .s3
        .get_object()
        .bucket(BUCKET)
        .key("cognito-sync/profile/7.json")
        .presigned(presign)
        .await
        .map_err(|e| e.to_string())?;
    let mut put = 0;
    for name in SAMPLES {
        let source = read_json(&format!("events/src/{name}.json"))?;
        let mut records: Vec<(String, Vec<u8>)> = sample_documents(&source)
            .into_iter()
            .map(|(pk, mut doc)| {
                if doc.get("kinesisSyncRecordsURL").is_some() {
                    doc["kinesisSyncRecordsURL"] = Value::String(url.uri().to_owned());
                }
                (pk, serde_json::to_vec(&doc).unwrap_or_default())
            })
            .collect();
        // Raw-text poison goes on the stream as the bytes it is.
        for r in source["records"].as_array().into_iter().flatten() {
            if let (Some(pk), Some(text)) = (r["partitionKey"].as_str(), r["dataText"].as_str()) {
                records.push((pk.to_owned(), text.as_bytes().to_vec()));
            }
        }
        for (pk, data) in records {
            aws.kinesis
                .put_record()
                .stream_name(SOURCE)
                .partition_key(pk)
                .data(Blob::new(data))
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "PutRecord: {}",
                        aws_sdk_kinesis::error::DisplayErrorContext(&e)
                    )
                })?;
            put += 1;
        }
    }
    let on_stream = aws.read_stream(SOURCE).await.map_err(|e| e.to_string())?;
    println!("   {put} records put, {} read back", on_stream.len());
    let source_sizes: Vec<usize> = on_stream.iter().map(|r| r.data.as_ref().len()).collect();

    let demo_dir = root().join(".demo");
    std::fs::create_dir_all(&demo_dir).map_err(|e| e.to_string())?;
    let event = event_from_stream_records(&source_arn, "shardId-000000000000", &on_stream);
    let event_file = demo_dir.join("kinesis-event.json");
    std::fs::write(
        &event_file,
        serde_json::to_vec_pretty(&event).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let (response, metrics) = invoke_through_cargo_lambda(&aws, &event_file)?;
    let outputs = print_outputs(&aws).await?;
    let dead = print_dead_letters(&aws).await?;

    let count = |name: &str| {
        metrics
            .as_ref()
            .and_then(|m| m[name].as_u64())
            .map_or("?".to_owned(), |n| n.to_string())
    };
    println!("== summary");
    println!("   records in:         {}", sizes::summary(&source_sizes));
    println!("   changes forwarded:  {}", outputs.len());
    println!("   duplicates dropped: {}", count("DuplicatesDropped"));
    println!("   stale dropped:      {}", count("StaleDropped"));
    println!("   dead-lettered:      {}", dead.len());
    println!("   PutRecords calls:   {}", count("PutRecordsCalls"));

    let got: BTreeSet<(String, String, String, String)> = outputs
        .iter()
        .map(|d| {
            let id = d["identity_id"].as_str().unwrap_or_default();
            (
                id[id.len().saturating_sub(12)..].to_owned(),
                d["dataset"].as_str().unwrap_or_default().to_owned(),
                d["type"].as_str().unwrap_or_default().to_owned(),
                d["key"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let mut ok = true;
    for (id, dataset, kind, key) in EXPECTED {
        if !got.contains(&(
            (*id).into(),
            (*dataset).into(),
            (*kind).into(),
            (*key).into(),
        )) {
            eprintln!("MISSING: {kind} {dataset}/{key} of identity …{id}");
            ok = false;
        }
    }
    if outputs.len() != EXPECTED_FORWARDED {
        eprintln!(
            "expected {EXPECTED_FORWARDED} changes on the output stream, found {}",
            outputs.len()
        );
        ok = false;
    }
    if dead.len() != EXPECTED_DEAD_LETTERS {
        eprintln!(
            "expected {EXPECTED_DEAD_LETTERS} dead letters, found {}",
            dead.len()
        );
        ok = false;
    }
    if response["batchItemFailures"]
        .as_array()
        .is_none_or(|a| !a.is_empty())
    {
        eprintln!("expected no batch item failures, got {response}");
        ok = false;
    }
    println!(
        "{}",
        if ok {
            "demo: every expected change landed"
        } else {
            "demo: FAILED"
        }
    );
    Ok(ok)
}

async fn print_outputs(aws: &LocalAws) -> Result<Vec<Value>> {
    let records = aws.read_stream(OUTPUT).await.map_err(|e| e.to_string())?;
    let outputs: Vec<Value> = records
        .iter()
        .filter_map(|r| serde_json::from_slice(r.data.as_ref()).ok())
        .collect();
    let sizes: Vec<usize> = records.iter().map(|r| r.data.as_ref().len()).collect();
    println!("== on {OUTPUT}: {}", sizes::summary(&sizes));
    for d in &outputs {
        let identity = d["identity_id"].as_str().unwrap_or_default();
        let value = d["value"]
            .as_str()
            .map_or("-".to_owned(), |v| format!("{v:?}"));
        println!(
            "   {:<15} …{} {:<9} {:<9} {:<45} (sync {})",
            d["type"].as_str().unwrap_or_default(),
            &identity[identity.len().saturating_sub(4)..],
            d["dataset"].as_str().unwrap_or_default(),
            d["key"].as_str().unwrap_or("-"),
            value,
            d["record_sync_count"]
                .as_i64()
                .or(d["dataset_sync_count"].as_i64())
                .unwrap_or_default()
        );
    }
    Ok(outputs)
}

async fn print_dead_letters(aws: &LocalAws) -> Result<Vec<(String, Vec<u8>)>> {
    let dead = aws
        .read_objects(BUCKET, "dead-letter/")
        .await
        .map_err(|e| e.to_string())?;
    println!("== dead letters in s3://{BUCKET}/dead-letter/:");
    for (key, body) in &dead {
        let reason = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|d| d["reason"].as_str().map(str::to_owned))
            .unwrap_or_default();
        println!("   {key}\n     reason: {reason}");
    }
    Ok(dead)
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// `cargo lambda watch`. Interrupting it (SIGINT, as Ctrl-C would) stops the function instance it runs too.
struct Watch(Child);

impl Watch {
    fn start(aws: &LocalAws, port: u16, log: &Path) -> Result<Self> {
        let log_file = std::fs::File::create(log).map_err(|e| e.to_string())?;
        let env = [
            (sp::ENV_OUTPUT_STREAM, OUTPUT.to_owned()),
            (sp::ENV_DEDUP_TABLE, TABLE.to_owned()),
            (sp::ENV_DEAD_LETTER_BUCKET, BUCKET.to_owned()),
            (sp::ENV_S3_URL_ALLOWED_ORIGINS, aws.endpoint.clone()),
            (bridge_core::aws::ENV_S3_FORCE_PATH_STYLE, "true".to_owned()),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON".to_owned()),
        ];
        let mut cmd = Command::new("cargo-lambda");
        cmd.current_dir(root())
            .args([
                "lambda",
                "watch",
                "--quiet",
                "--ignore-changes",
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
                &port.to_string(),
            ])
            .args(["--package", "sync-processor"]);
        for (k, v) in env {
            cmd.arg("--env-var").arg(format!("{k}={v}"));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
            .stderr(log_file)
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start `cargo lambda watch` (is .venv/bin on PATH? run `make demo`): {e}"
                )
            })?;
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(120) {
                return Err(format!(
                    "cargo lambda watch did not listen on {port}; see {}",
                    log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(Self(child))
    }

    fn stop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-s", "INT", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

fn invoke(port: u16, event_file: &Path) -> Result<Value> {
    let out = Command::new("cargo-lambda")
        .current_dir(root())
        .args([
            "lambda",
            "invoke",
            "sync-processor",
            "--invoke-port",
            &port.to_string(),
            "--invoke-address",
            "127.0.0.1",
        ])
        .arg("--data-file")
        .arg(event_file)
        .output()
        .map_err(|e| format!("cannot run `cargo lambda invoke`: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "cargo lambda invoke failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_str(stdout.trim())
        .map_err(|e| format!("invoke answered something that is not JSON ({e}): {stdout}"))
}

/// The function's EMF line from the watch log.
fn wait_for_metrics(log: &Path, wait: Duration) -> Option<Value> {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|l| l.find('{').map(|i| &l[i..]))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| {
                v.get("_aws").is_some() && v["Function"] == sync_processor::handler::FUNCTION_NAME
            });
        if found.is_some() || started.elapsed() > wait {
            return found;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
