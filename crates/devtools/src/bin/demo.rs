//! `make demo`: the whole pipeline on the local emulator, driven as AWS drives it (run under scripts/with-moto,
//! after `cargo build --workspace --bins`).
//!
//! 1. Provisions the template's stack ([`devtools::deployment`]): streams, tables, bucket, on-failure queues; starts
//!    every function's real binary behind a local Runtime API and a local event source mapping per Kinesis event,
//!    with the template's settings.
//! 2. Puts the sample Cognito Sync records on the source stream one `PutRecord` at a time, as Cognito does (live
//!    updates, an S3Url update whose payload it stores and presigns, a bulk-publish replay with repeats and stale
//!    versions, a dataset removal, and a poison sample's records).
//! 3. Puts the user-activity log subscription records on their stream, as CloudWatch Logs would.
//! 4. Invokes the trigger forwarder with every trigger sample, as Cognito would, and times each answer.
//! 5. Puts the sample app events (one of every client shape) on their stream (their times moved to now, keeping their spacing, so that the
//!    forwarder's clock checks judge them as written).
//! 6. Lets the mappings drive every function until nothing moves, the chained active-users rollup included, then
//!    prints a summary per function and a few records that landed, and checks every expectation.
//! 7. History: puts a generated Pinpoint event-stream archive of October 2026 in S3 as Firehose writes it, runs
//!    `ckb pinpoint-backfill` (the operator command's real binary) over it onto the event streams, and puts the live path's sign-ins of
//!    October 30 and 31 (the cutover).
//! 8. Puts a generated month of auth and app events (November) on the event streams and lets the active-users
//!    mapping roll it all up; checks every day's active users and sign-ins, and that October and November make one
//!    line across the cutover. `make demo` then runs `ckb report` on the rollup table from October 1.
//!
//! Exits non-zero if anything expected is missing. With `--event FILE` it invokes the sync processor once with
//! that Lambda event instead (`make invoke EVENT=events/sync-poison.json`) and prints what landed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use active_users::activity::{AUTHENTICATING_TYPES, Definition};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use base64::Engine as _;
use devtools::deployment::{Deployment, local_name};
use devtools::esm::{InvokeOutcome, Invoker as _};
use devtools::events::sample_documents;
use devtools::synthetic::{DAYS, POOL, day, generate};
use devtools::{LocalAws, sizes};
use serde_json::Value;

/// The samples put on the sync source stream, in order. The poison sample's non-base64 record cannot exist on a
/// real stream (Kinesis stores bytes), so only its other records are put.
const SYNC_SAMPLES: &[&str] = &[
    "sync-inline-replace",
    "sync-inline-remove",
    "sync-s3url",
    "sync-bulk-publish-replay",
    "sync-poison",
    "sync-dataset-remove",
];

/// (identity suffix, dataset, type, key) of every change that must land.
const EXPECTED_CHANGES: &[(&str, &str, &str, &str)] = &[
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
/// Changes forwarded in all (level is forwarded three times: versions 1, 2 and 3; repeats and stale replays never).
const EXPECTED_CHANGES_FORWARDED: usize = 13;
/// Sync dead letters (the poison sample's records that can exist on a stream).
const EXPECTED_SYNC_DEAD_LETTERS: usize = 3;
/// Auth events: 13 trigger samples and 7 user-activity entries.
const EXPECTED_AUTH_EVENTS: usize = 20;
/// App events: 5 of app-events.json (a resend collapses), 6 of app-clients.json (every other client shape) and 2
/// of app-hostile.json; 7 hostile records and a Pinpoint messaging event refused.
const EXPECTED_APP_EVENTS: usize = 13;
const EXPECTED_APP_DEAD_LETTERS: usize = 8;
/// Users of the generated month (moto's transactions copy the table per item: a few dozen users keep it quick).
const MONTH_USERS: u32 = 40;
/// How long the mappings may take to settle.
const SETTLE_LIMIT: Duration = Duration::from_secs(300);

fn main() -> ExitCode {
    devtools::run_main("demo", run())
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read_json(relative: &str) -> Result<Value, String> {
    let bytes = std::fs::read(root().join(relative)).map_err(|e| format!("{relative}: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{relative}: {e}"))
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

async fn put(aws: &LocalAws, stream: &str, key: &str, data: Vec<u8>) -> Result<(), String> {
    aws.kinesis
        .put_record()
        .stream_name(stream)
        .partition_key(key)
        .data(Blob::new(data))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| {
            format!(
                "PutRecord on {stream}: {}",
                aws_sdk_kinesis::error::DisplayErrorContext(&e)
            )
        })
}

/// Puts output documents on `stream` as their forwarder would (partitioned by user sub, else install), 500 to a
/// PutRecords; any entry not stored is an error.
async fn put_documents(aws: &LocalAws, stream: &str, docs: &[&Value]) -> Result<(), String> {
    for chunk in docs.chunks(500) {
        let mut entries = Vec::new();
        for e in chunk {
            entries.push(
                PutRecordsRequestEntry::builder()
                    .partition_key(devtools::synthetic::partition_key(e))
                    .data(Blob::new(serde_json::to_vec(e).map_err(text)?))
                    .build()
                    .map_err(text)?,
            );
        }
        let out = aws
            .kinesis
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries))
            .send()
            .await
            .map_err(|e| text(aws_sdk_kinesis::error::DisplayErrorContext(e)))?;
        if out.failed_record_count().unwrap_or(0) > 0 {
            return Err(format!("{stream}: some records were not stored"));
        }
    }
    Ok(())
}

/// Moves every RFC 3339 time and every epoch-milliseconds number under a time-like key by `delta_ms`.
fn shift_times(v: &mut Value, delta_ms: i64) {
    match v {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                let timelike = key.contains("imestamp") || key.ends_with("_at");
                match value {
                    Value::Number(n) if timelike => {
                        if let Some(ms) = n.as_i64().filter(|ms| *ms > 1_000_000_000_000) {
                            *value = Value::from(ms + delta_ms);
                        }
                    }
                    other => shift_times(other, delta_ms),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| shift_times(i, delta_ms)),
        Value::String(s) => {
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
                let moved =
                    t.with_timezone(&chrono::Utc) + chrono::Duration::milliseconds(delta_ms);
                *s = moved.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            }
        }
        _ => {}
    }
}

async fn put_sync_samples(stack: &Deployment) -> Result<usize, String> {
    let aws = &stack.aws;
    let (stream, bucket) = (local_name("SourceStream"), local_name("BridgeBucket"));
    let payload = std::fs::read(root().join("events/payloads/sync-s3url-payload.json"))
        .map_err(|e| format!("events/payloads/sync-s3url-payload.json: {e}"))?;
    let key = "cognito-sync/profile/7.json";
    aws.s3
        .put_object()
        .bucket(&bucket)
        .key(key)
        .body(payload.into())
        .send()
        .await
        .map_err(text)?;
    let presign = aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(900))
        .map_err(text)?;
    let url = aws
        .s3
        .get_object()
        .bucket(&bucket)
        .key(key)
        .presigned(presign)
        .await
        .map_err(text)?;
    let mut n = 0;
    for name in SYNC_SAMPLES {
        let source = read_json(&format!("events/src/{name}.json"))?;
        let mut records: Vec<(String, Vec<u8>)> = Vec::new();
        for (pk, mut doc) in sample_documents(&source) {
            if doc.get("kinesisSyncRecordsURL").is_some() {
                doc["kinesisSyncRecordsURL"] = Value::String(url.uri().to_owned());
            }
            records.push((pk, serde_json::to_vec(&doc).map_err(text)?));
        }
        // Raw-text poison goes on the stream as the bytes it is.
        for r in source["records"].as_array().into_iter().flatten() {
            if let (Some(pk), Some(raw)) = (r["partitionKey"].as_str(), r["dataText"].as_str()) {
                records.push((pk.to_owned(), raw.as_bytes().to_vec()));
            }
        }
        for (pk, data) in records {
            put(aws, &stream, &pk, data).await?;
            n += 1;
        }
    }
    Ok(n)
}

/// The Kinesis records of a sample Lambda event: (partition key, data, arrival in seconds).
fn sample_records(relative: &str) -> Result<Vec<(String, Vec<u8>, f64)>, String> {
    let sample = read_json(relative)?;
    let mut out = Vec::new();
    for r in sample["Records"].as_array().into_iter().flatten() {
        let k = &r["kinesis"];
        let data = base64::engine::general_purpose::STANDARD
            .decode(k["data"].as_str().unwrap_or_default())
            .map_err(|e| format!("{relative}: {e}"))?;
        out.push((
            k["partitionKey"].as_str().unwrap_or("pk").to_owned(),
            data,
            k["approximateArrivalTimestamp"].as_f64().unwrap_or(0.0),
        ));
    }
    Ok(out)
}

/// Invokes the trigger forwarder with every trigger sample; returns (samples, answered unchanged, latencies).
async fn invoke_triggers(stack: &Deployment) -> Result<(usize, usize, Vec<Duration>), String> {
    let trigger = stack
        .function("auth-trigger-forwarder")
        .ok_or("the trigger forwarder is not deployed")?;
    let mut paths: Vec<PathBuf> = std::fs::read_dir(root().join("events/auth"))
        .map_err(|e| format!("events/auth: {e}"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    let (mut unchanged, mut latencies) = (0, Vec::new());
    for path in &paths {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let input: Value = serde_json::from_slice(&bytes).map_err(text)?;
        let started = Instant::now();
        let outcome = trigger.invoke(input.clone()).await;
        let took = started.elapsed();
        latencies.push(took);
        let verdict = match outcome {
            InvokeOutcome::Response(body) => {
                let same = serde_json::from_slice::<Value>(&body).is_ok_and(|r| r == input);
                unchanged += usize::from(same);
                if same {
                    "answered unchanged"
                } else {
                    "answered CHANGED"
                }
            }
            InvokeOutcome::FunctionError(_) => "FAILED",
            InvokeOutcome::Timeout => "TIMED OUT",
            InvokeOutcome::Crash => "CRASHED",
        };
        println!(
            "   {:<42} {verdict} in {:.1} ms",
            input["triggerSource"].as_str().unwrap_or("?"),
            took.as_secs_f64() * 1000.0
        );
    }
    Ok((paths.len(), unchanged, latencies))
}

async fn read_docs(aws: &LocalAws, logical: &str) -> Result<Vec<Value>, String> {
    let records = aws.read_stream(&local_name(logical)).await.map_err(text)?;
    Ok(records
        .iter()
        .filter_map(|r| serde_json::from_slice(r.data.as_ref()).ok())
        .collect())
}

async fn dead_letters(aws: &LocalAws, function: &str) -> Result<Vec<Value>, String> {
    let objects = aws
        .read_objects(
            &local_name("BridgeBucket"),
            &format!("dead-letter/{function}/"),
        )
        .await
        .map_err(text)?;
    Ok(objects
        .iter()
        .filter_map(|(_, body)| serde_json::from_slice(body).ok())
        .collect())
}

/// A failed expectation, printed at once and counted.
struct Checks(Vec<String>);

impl Checks {
    fn expect(&mut self, ok: bool, what: String) {
        println!("   [{}] {what}", if ok { " ok " } else { "FAIL" });
        if !ok {
            self.0.push(what);
        }
    }
}

fn summary(stack: &Deployment) {
    println!("== per function (from each function's EMF metrics and its mappings)");
    println!(
        "   {:<24} {:>6} {:>10} {:>10} {:>6} {:>6} {:>8} {:>8} {:>9}",
        "function",
        "in",
        "forwarded",
        "duplicate",
        "stale",
        "dead",
        "retried",
        "batches",
        "given up"
    );
    for (binary, f) in stack.functions() {
        let m = f.metrics();
        let get = |k: &str| m.get(k).copied().unwrap_or(0);
        let mappings: Vec<_> = stack
            .mappings
            .iter()
            .filter(|x| x.function == binary)
            .collect();
        let forwarded = get("ChangesForwarded")
            + get("AuthEventsForwarded")
            + get("AppEventsForwarded")
            + get("MarkersWritten");
        let (delivered, deliveries, batches, given_up) =
            mappings.iter().fold((0, 0, 0, 0), |a, x| {
                (
                    a.0 + x.delivered.len(),
                    a.1 + x.deliveries,
                    a.2 + x.invocations,
                    a.3 + x.given_up,
                )
            });
        let input = if mappings.is_empty() {
            get("TriggerEvents") as usize
        } else {
            delivered
        };
        println!(
            "   {:<24} {:>6} {:>10} {:>10} {:>6} {:>6} {:>8} {:>8} {:>9}",
            binary,
            input,
            forwarded,
            get("DuplicatesDropped"),
            get("StaleDropped"),
            get("DeadLettered"),
            deliveries - delivered,
            batches,
            given_up
        );
    }
    println!(
        "   (active-users' \"forwarded\" are the markers it wrote; \"retried\" counts record redeliveries)"
    );
}

async fn check_pipeline(stack: &Deployment, checks: &mut Checks) -> Result<(), String> {
    let aws = &stack.aws;
    println!("== landed");
    let changes = read_docs(aws, "SyncChangesStream").await?;
    for d in changes.iter().take(5) {
        let identity = d["identity_id"].as_str().unwrap_or_default();
        println!(
            "   sync  {:<15} …{} {:<9} {:<9} (sync {})",
            d["type"].as_str().unwrap_or_default(),
            &identity[identity.len().saturating_sub(4)..],
            d["dataset"].as_str().unwrap_or_default(),
            d["key"].as_str().unwrap_or("-"),
            d["record_sync_count"]
                .as_i64()
                .or(d["dataset_sync_count"].as_i64())
                .unwrap_or_default()
        );
    }
    let auth = read_docs(aws, "AuthEventsStream").await?;
    for d in auth.iter().step_by(5) {
        println!(
            "   auth  {:<26} {:<8} sub={}",
            d["type"].as_str().unwrap_or("?"),
            d["origin"].as_str().unwrap_or("?"),
            d["user_sub"].as_str().unwrap_or("-")
        );
    }
    let app = read_docs(aws, "AppEventsStream").await?;
    // One output line per input shape: what each kind of client's event became.
    let mut shown = std::collections::BTreeSet::new();
    for d in &app {
        let shape = d["context"]["input_shape"].as_str().unwrap_or("?");
        if !shown.insert(shape.to_owned()) {
            continue;
        }
        let session = &d["session"];
        println!(
            "   app   {shape:<17} {:<22} user={} anon={} time={} ({}) session={}{}",
            d["event"].as_str().unwrap_or("?"),
            d["user_id"].as_str().unwrap_or("-"),
            d["anonymous_id"].as_str().unwrap_or("-"),
            d["timestamp"].as_str().unwrap_or("-"),
            d["clock"]["time_source"].as_str().unwrap_or("?"),
            session["id"].as_str().unwrap_or("-"),
            session["duration_ms"]
                .as_i64()
                .map_or_else(String::new, |ms| format!(" ({ms} ms)"))
        );
    }
    for letter in dead_letters(aws, "app-event-forwarder")
        .await?
        .iter()
        .take(3)
    {
        let reason: String = letter["reason"]
            .as_str()
            .unwrap_or("?")
            .chars()
            .take(100)
            .collect();
        println!("   refused: {reason}");
    }

    println!("== record sizes (Kinesis bills each record by the KiB)");
    for logical in [
        "SourceStream",
        "SyncChangesStream",
        "AuthEventsStream",
        "AppEventsStream",
    ] {
        let records = aws.read_stream(&local_name(logical)).await.map_err(text)?;
        let sizes: Vec<usize> = records.iter().map(|r| r.data.as_ref().len()).collect();
        println!("   {:<20} {}", local_name(logical), sizes::summary(&sizes));
    }

    println!("== checks");
    let got: BTreeSet<(String, String, String, String)> = changes
        .iter()
        .map(|d| {
            let id = d["identity_id"].as_str().unwrap_or_default();
            let field = |k: &str| d[k].as_str().unwrap_or_default().to_owned();
            (
                id[id.len().saturating_sub(12)..].to_owned(),
                field("dataset"),
                field("type"),
                field("key"),
            )
        })
        .collect();
    let missing: Vec<String> = EXPECTED_CHANGES
        .iter()
        .filter(|(id, ds, kind, key)| {
            !got.contains(&((*id).into(), (*ds).into(), (*kind).into(), (*key).into()))
        })
        .map(|(id, ds, kind, key)| format!("{kind} {ds}/{key} of …{id}"))
        .collect();
    checks.expect(
        missing.is_empty(),
        format!(
            "sync: every expected change landed ({} of {}){}",
            EXPECTED_CHANGES.len() - missing.len(),
            EXPECTED_CHANGES.len(),
            if missing.is_empty() {
                String::new()
            } else {
                format!("; missing: {}", missing.join(", "))
            }
        ),
    );
    checks.expect(
        changes.len() == EXPECTED_CHANGES_FORWARDED,
        format!(
            "sync: {} changes forwarded, no repeat or stale version (expected {EXPECTED_CHANGES_FORWARDED})",
            changes.len()
        ),
    );
    let sync_dead = dead_letters(aws, "sync-processor").await?.len();
    checks.expect(
        sync_dead == EXPECTED_SYNC_DEAD_LETTERS,
        format!("sync: {sync_dead} poison records dead-lettered with their reasons (expected {EXPECTED_SYNC_DEAD_LETTERS})"),
    );
    checks.expect(
        auth.len() == EXPECTED_AUTH_EVENTS,
        format!(
            "auth: {} auth events landed (expected {EXPECTED_AUTH_EVENTS})",
            auth.len()
        ),
    );
    checks.expect(
        app.len() == EXPECTED_APP_EVENTS,
        format!(
            "app: {} app events landed (expected {EXPECTED_APP_EVENTS})",
            app.len()
        ),
    );
    let app_dead = dead_letters(aws, "app-event-forwarder").await?.len();
    checks.expect(
        app_dead == EXPECTED_APP_DEAD_LETTERS,
        format!("app: {app_dead} hostile records refused (expected {EXPECTED_APP_DEAD_LETTERS})"),
    );
    for m in &stack.mappings {
        let on_stream = aws.read_stream(&m.stream).await.map_err(text)?.len();
        checks.expect(
            m.delivered.len() == on_stream && m.given_up == 0,
            format!(
                "{}: all {on_stream} records delivered, {} given up",
                m.name, m.given_up
            ),
        );
    }
    check_sample_rollup(stack, &auth, checks).await
}

/// The rollup of the samples' auth events, day by day, against the events on the stream.
async fn check_sample_rollup(
    stack: &Deployment,
    auth: &[Value],
    checks: &mut Checks,
) -> Result<(), String> {
    let mut expected: BTreeMap<(String, chrono::NaiveDate), BTreeSet<String>> = BTreeMap::new();
    for e in auth {
        let (Some(pool), Some(sub), Some(ts)) = (
            e["user_pool_id"].as_str(),
            e["user_sub"].as_str(),
            e["timestamp"].as_str(),
        ) else {
            continue;
        };
        let Ok(t) = chrono::DateTime::parse_from_rfc3339(ts) else {
            continue;
        };
        if AUTHENTICATING_TYPES.contains(&e["type"].as_str().unwrap_or_default()) {
            expected
                .entry((
                    format!("pool={pool}"),
                    t.with_timezone(&chrono::Utc).date_naive(),
                ))
                .or_default()
                .insert(sub.to_owned());
        }
    }
    let store = active_users::store::RollupStore::on_dynamodb(
        stack.aws.dynamodb.clone(),
        &local_name("RollupTable"),
        Duration::from_secs(86_400),
    );
    for ((scope, d), users) in &expected {
        let (rows, _) = devtools::report::rows(&store, Definition::Authenticating, scope, *d, *d)
            .await
            .map_err(text)?;
        let got = rows.first().map_or(0, |r| r.active);
        checks.expect(
            got == users.len() as i64,
            format!(
                "active-users: {scope} {d}: {got} authenticating users rolled up (the stream says {})",
                users.len()
            ),
        );
    }
    Ok(())
}

/// The first day of the backfilled archive, and its days: October 1 to 29, 2026, the month before Pinpoint's
/// end of support (October 30); the live path takes over from October 30.
const ARCHIVE_DAYS: u32 = 29;
/// The archive's users: the first three quarters of the month's, so that the rest are new in November.
const ARCHIVE_USERS: u32 = MONTH_USERS * 3 / 4;

fn archive_first() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2026, 10, 1).unwrap_or_default()
}

/// What the backfill step put in, for the checks after the rollup.
struct History {
    archive: devtools::pinpoint_archive::Archive,
    /// Users signed in by the live path on October 30 and 31.
    live: BTreeMap<chrono::NaiveDate, BTreeSet<u32>>,
}

/// A generated Pinpoint archive of October (the month's users, first seen there) in S3 as Firehose wrote it,
/// backfilled by `ckb pinpoint-backfill` (the operator command's real binary) onto the event streams; then the live path's sign-ins of
/// October 30 and 31 from the trigger. The month step's settle rolls it all up.
async fn backfill(stack: &mut Deployment) -> Result<History, String> {
    let aws = stack.aws.clone();
    let archive = devtools::pinpoint_archive::generate(
        archive_first(),
        ARCHIVE_DAYS,
        ARCHIVE_USERS,
        20_261_001,
    );
    let objects = devtools::pinpoint_archive::objects(
        &archive,
        "pinpoint/events/",
        devtools::pinpoint_archive::Layout::Default,
        20_261_002,
    );
    let bucket = "pinpoint-archive";
    println!(
        "== 7/8 history: a Pinpoint event-stream archive of October 2026 ({} records of {ARCHIVE_USERS} users in {} \
         GZIP objects, Firehose's layout) in s3://{bucket}/pinpoint/events/, backfilled by ckb pinpoint-backfill",
        archive.records.len(),
        objects.len()
    );
    aws.create_bucket(bucket).await.map_err(text)?;
    devtools::pinpoint_archive::upload(&aws.s3, bucket, &objects).await?;
    let out = std::process::Command::new(root().join("target/debug/ckb"))
        .args([
            "pinpoint-backfill",
            "--bucket",
            bucket,
            "--prefix",
            "pinpoint/events/",
            "--until",
            "2026-10-30",
            "--user-pool-id",
            POOL,
            "--client-id",
            devtools::synthetic::CLIENT,
            "--app-stream",
            &local_name("AppEventsStream"),
            "--auth-stream",
            &local_name("AuthEventsStream"),
            "--state",
            &format!("s3://{}/pinpoint-backfill/", local_name("BridgeBucket")),
        ])
        .env("S3_FORCE_PATH_STYLE", "true")
        .output()
        .map_err(|e| format!("ckb pinpoint-backfill: {e} (cargo build --workspace --bins)"))?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        println!("   {line}");
    }
    if !out.status.success() {
        return Err(format!(
            "ckb pinpoint-backfill failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // The live path from the cutover: sign-ins of October 30 and 31 from the trigger forwarder's stream.
    let mut live: BTreeMap<chrono::NaiveDate, BTreeSet<u32>> = BTreeMap::new();
    let mut docs = Vec::new();
    for (k, date) in [(0u32, 30u32), (1, 31)] {
        let date = chrono::NaiveDate::from_ymd_opt(2026, 10, date).unwrap_or_default();
        for u in (0..ARCHIVE_USERS).filter(|u| (u + k) % 3 != 0) {
            let e = devtools::synthetic::auth_event_on(
                &format!(
                    "{:032x}",
                    0x0c70_0000_u64 + u64::from(k) * 1_000 + u64::from(u)
                ),
                "_userauth.sign_in",
                "trigger",
                u,
                date,
                36_000 + u * 60,
            );
            live.entry(date).or_default().insert(u);
            docs.push(e);
        }
    }
    println!(
        "   and the live path's {} sign-ins of October 30 and 31 onto {}",
        docs.len(),
        local_name("AuthEventsStream")
    );
    put_documents(
        &aws,
        &local_name("AuthEventsStream"),
        &docs.iter().collect::<Vec<_>>(),
    )
    .await?;
    Ok(History { archive, live })
}

/// After the rollup: October's days from the archive and the live path, and November's, make one line: every day
/// from October 1 to November 30 has its exact authenticating users, none is empty, and the users first seen in
/// October are not new in November.
async fn check_history(
    stack: &Deployment,
    history: &History,
    checks: &mut Checks,
) -> Result<(), String> {
    let store = active_users::store::RollupStore::on_dynamodb(
        stack.aws.dynamodb.clone(),
        &local_name("RollupTable"),
        Duration::from_secs(86_400),
    );
    let pool = format!("pool={POOL}");
    let from = archive_first();
    let (rows, _) =
        devtools::report::rows(&store, Definition::Authenticating, &pool, from, day(DAYS))
            .await
            .map_err(text)?;
    let a = &history.archive;
    let month = generate(MONTH_USERS);
    let mut wrong = Vec::new();
    let mut empty = Vec::new();
    for r in &rows {
        let expected = if r.day < day(1) {
            a.auth_active
                .get(&r.day)
                .or_else(|| history.live.get(&r.day))
                .map_or(0, BTreeSet::len)
        } else {
            let d = r.day.format("%d").to_string().parse::<u32>().unwrap_or(0);
            month.auth_active.get(&d).map_or(0, BTreeSet::len)
        } as i64;
        if r.active != expected {
            wrong.push(format!("{}: {} (expected {expected})", r.day, r.active));
        }
        if r.active == 0 {
            empty.push(r.day.to_string());
        }
    }
    checks.expect(
        wrong.is_empty() && empty.is_empty() && rows.len() == 61,
        format!(
            "history: {} days from {from} to {}, one line across the cutover of 2026-10-30: every day's \
             authenticating users exact, none empty{}{}",
            rows.len(),
            day(DAYS),
            if wrong.is_empty() { String::new() } else { format!("; wrong: {}", wrong.join(", ")) },
            if empty.is_empty() { String::new() } else { format!("; empty: {}", empty.join(", ")) },
        ),
    );
    // New users in November: only those never seen in October (the archive's or the live path's).
    let seen: BTreeSet<u32> = a
        .auth_active
        .values()
        .chain(history.live.values())
        .flatten()
        .copied()
        .collect();
    let new_in_november = rows
        .iter()
        .filter(|r| r.day >= day(1))
        .map(|r| r.new)
        .sum::<i64>();
    let expected = month.auth_users().difference(&seen).count() as i64;
    checks.expect(
        new_in_november == expected,
        format!(
            "history: {new_in_november} new users in November (expected {expected}: the month's users not seen in \
             October)"
        ),
    );
    Ok(())
}

/// Where the demo lays out its warehouse for the saved queries (`make demo` runs two after the report).
const WAREHOUSE_DIR: &str = "target/demo-warehouse";

/// Every record the output streams carry, laid out as the template's Firehose delivery writes the warehouse
/// bucket (by event day, GZIP JSON lines) in a local folder: moto has no Firehose dynamic partitioning, so the
/// layout is written here (`devtools::warehouse`), for the embedded engine to run the saved queries on.
async fn warehouse(stack: &Deployment) -> Result<(), String> {
    let mut docs = Vec::new();
    for stream in ["AuthEventsStream", "AppEventsStream", "SyncChangesStream"] {
        for r in stack
            .aws
            .read_stream(&local_name(stream))
            .await
            .map_err(text)?
        {
            let doc: Value = serde_json::from_slice(r.data().as_ref()).map_err(text)?;
            docs.push(doc);
        }
    }
    let dir = root().join(WAREHOUSE_DIR);
    let _ = std::fs::remove_dir_all(&dir);
    let bytes = devtools::warehouse::write(&dir, &docs, 500)?;
    println!(
        "   warehouse: {} records of the output streams in {WAREHOUSE_DIR}/ as Firehose lays them out ({} bytes of \
         GZIP JSON lines: {})",
        docs.len(),
        bytes.values().sum::<u64>(),
        bytes
            .iter()
            .map(|(f, b)| format!("{f} {b}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// A generated month on the event streams, rolled up by the active-users function through its mappings.
async fn month(stack: &mut Deployment, checks: &mut Checks) -> Result<(), String> {
    let aws = stack.aws.clone();
    let month = generate(MONTH_USERS);
    let (auth_stream, app_stream) = (
        local_name("AuthEventsStream"),
        local_name("AppEventsStream"),
    );
    println!(
        "== 8/8 active users: {} generated events of {MONTH_USERS} users over November 2026 onto {auth_stream} and {app_stream}",
        month.events.len()
    );
    for chunk in month.events.chunks(500) {
        for (stream, schema) in [
            (&auth_stream, "cognito-auth-event/v1"),
            (&app_stream, "app-event/v1"),
        ] {
            let docs: Vec<&Value> = chunk
                .iter()
                .map(|(_, e)| e)
                .filter(|e| e["schema"] == schema)
                .collect();
            put_documents(&aws, stream, &docs).await?;
        }
    }
    let started = Instant::now();
    stack
        .settle(SETTLE_LIMIT, |m, r| {
            if !r.invocations.is_empty() {
                let sizes: Vec<String> =
                    r.invocations.iter().map(|b| b.len().to_string()).collect();
                println!("   {}: batches of {}", m.name, sizes.join(", "));
            }
        })
        .await?;
    let rollup = stack
        .function("active-users")
        .map(|f| f.metrics())
        .unwrap_or_default();
    let get = |k: &str| rollup.get(k).copied().unwrap_or(0);
    println!(
        "   rolled up in {:.1} s: {} lane commits, {} histories and {} event markers written (active-users' totals)",
        started.elapsed().as_secs_f64(),
        get(active_users::handler::METRIC_COMMITS),
        get(active_users::handler::METRIC_HISTORIES_WRITTEN),
        get(active_users::handler::METRIC_MARKERS_WRITTEN),
    );
    let store = active_users::store::RollupStore::on_dynamodb(
        aws.dynamodb.clone(),
        &local_name("RollupTable"),
        Duration::from_secs(86_400),
    );
    let pool = format!("pool={POOL}");
    let (rows, month_to_date) =
        devtools::report::rows(&store, Definition::Authenticating, &pool, day(1), day(DAYS))
            .await
            .map_err(text)?;
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
    checks.expect(
        wrong.is_empty(),
        format!(
            "active-users: every day's active users and sign-ins are exact ({month_to_date} authenticating users in the month){}",
            if wrong.is_empty() { String::new() } else { format!(": {}", wrong.join("; ")) }
        ),
    );
    Ok(())
}

async fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let event_file = match args.iter().position(|a| a == "--event") {
        Some(i) => Some(args.get(i + 1).ok_or("--event needs a file")?.clone()),
        None => None,
    };
    let started = Instant::now();
    let aws = LocalAws::from_env().await.map_err(text)?;
    println!(
        "== 1/8 the template's stack on the local emulator at {}",
        aws.endpoint
    );
    let mut stack = Deployment::start(aws, &root()).await?;
    for m in &stack.mappings {
        println!("   mapping {}", m.name);
    }
    let result = match event_file {
        Some(file) => invoke_event(&stack, &file).await,
        None => story(&mut stack).await,
    };
    stack.stop().await;
    println!("demo: {:.0} s", started.elapsed().as_secs_f64());
    result
}

/// `--event FILE`: the sync processor on one event.
async fn invoke_event(stack: &Deployment, file: &str) -> Result<(), String> {
    let bytes = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
    let event: Value = serde_json::from_slice(&bytes).map_err(|e| format!("{file}: {e}"))?;
    let f = stack
        .function("sync-processor")
        .ok_or("sync-processor is not deployed")?;
    let outcome = f.invoke(event).await;
    match &outcome {
        InvokeOutcome::Response(body) => println!(
            "== the function answered: {}",
            String::from_utf8_lossy(body)
        ),
        other => println!("== the invocation failed: {other:?}"),
    }
    for d in read_docs(&stack.aws, "SyncChangesStream").await? {
        println!("   forwarded: {d}");
    }
    for letter in dead_letters(&stack.aws, "sync-processor").await? {
        println!(
            "   dead letter: {}",
            letter["reason"].as_str().unwrap_or("?")
        );
    }
    println!("   metrics: {:?}", f.metrics());
    Ok(())
}

async fn story(stack: &mut Deployment) -> Result<(), String> {
    let aws = stack.aws.clone();
    println!(
        "== 2/8 the sample Cognito Sync records onto {}",
        local_name("SourceStream")
    );
    let n = put_sync_samples(stack).await?;
    println!(
        "   {n} records put (live updates, an S3Url update, a bulk-publish replay, a dataset removal, poison)"
    );

    println!(
        "== 3/8 the user-activity log records onto {}",
        local_name("AuthLogSourceStream")
    );
    let logs = sample_records("events/auth-activity-log.json")?;
    let log_sizes: Vec<usize> = logs.iter().map(|(_, d, _)| d.len()).collect();
    for (key, data, _) in logs {
        put(&aws, &local_name("AuthLogSourceStream"), &key, data).await?;
    }
    println!(
        "   {} (gzip subscription records)",
        sizes::summary(&log_sizes)
    );

    println!("== 4/8 the trigger forwarder, invoked with every trigger sample");
    let (samples, unchanged, mut latencies) = invoke_triggers(stack).await?;
    latencies.sort();

    println!(
        "== 5/8 the sample app events onto {} (times moved to now)",
        local_name("AppEventSourceStream")
    );
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut app_records = 0;
    for file in [
        "events/app-events.json",
        "events/app-clients.json",
        "events/app-hostile.json",
    ] {
        let records = sample_records(file)?;
        let first = records.first().map_or(0.0, |r| r.2);
        let delta = now_ms - (first * 1000.0) as i64;
        for (key, data, _) in records {
            let data = match serde_json::from_slice::<Value>(&data) {
                Ok(mut doc) => {
                    shift_times(&mut doc, delta);
                    serde_json::to_vec(&doc).map_err(text)?
                }
                Err(_) => data,
            };
            put(&aws, &local_name("AppEventSourceStream"), &key, data).await?;
            app_records += 1;
        }
    }
    println!(
        "   {app_records} records put (one event of every client shape, a resend, a slow clock, hostile input)"
    );

    println!(
        "== 6/8 the mappings drive every function (batching window, batch size and retries from the template)"
    );
    let settled = Instant::now();
    stack
        .settle(SETTLE_LIMIT, |m, r| {
            if !r.invocations.is_empty() {
                println!(
                    "   {}: {} invocation(s), {} records done, {} given up",
                    m.name,
                    r.invocations.len(),
                    r.succeeded.len(),
                    r.on_failure.len()
                );
            }
        })
        .await?;
    println!("   settled in {:.1} s", settled.elapsed().as_secs_f64());
    summary(stack);

    let mut checks = Checks(Vec::new());
    check_pipeline(stack, &mut checks).await?;
    let slowest = latencies.last().copied().unwrap_or_default();
    checks.expect(
        unchanged == samples && samples > 0,
        format!(
            "trigger: {unchanged} of {samples} sign-in flows answered unchanged; slowest {:.1} ms, median {:.1} ms (first includes the cold start)",
            slowest.as_secs_f64() * 1000.0,
            latencies.get(latencies.len() / 2).copied().unwrap_or_default().as_secs_f64() * 1000.0
        ),
    );
    let history = backfill(stack).await?;
    month(stack, &mut checks).await?;
    check_history(stack, &history, &mut checks).await?;
    warehouse(stack).await?;
    if checks.0.is_empty() {
        println!(
            "demo: every check passed; the report of table {} follows",
            local_name("RollupTable")
        );
        Ok(())
    } else {
        Err(format!(
            "{} check(s) failed: {}",
            checks.0.len(),
            checks.0.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_move_and_nothing_else_does() {
        let mut v = serde_json::json!({"timestamp": "2023-11-14T22:04:00.000Z", "sent_at": 1_700_000_000_000_i64,
            "metrics": {"score": 1250}, "session": {"startTimestamp": "2023-11-14T22:14:10Z"}, "id": "2023"});
        shift_times(&mut v, 1000);
        assert_eq!(v["timestamp"], "2023-11-14T22:04:01.000Z");
        assert_eq!(v["sent_at"], 1_700_000_001_000_i64);
        assert_eq!(v["metrics"]["score"], 1250);
        assert_eq!(v["session"]["startTimestamp"], "2023-11-14T22:14:11.000Z");
        assert_eq!(v["id"], "2023");
    }
}
