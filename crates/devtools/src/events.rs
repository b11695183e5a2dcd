//! Building the Kinesis events Lambda hands a function: from records read off a stream (as the event source
//! mapping would), or from payloads (for sample events).

use aws_sdk_kinesis::types::Record;
use base64::Engine as _;
use serde_json::{Value, json};

/// The documentation account id used in every example ARN.
pub const EXAMPLE_ACCOUNT: &str = "123456789012";

/// An example stream ARN for `name`.
pub fn example_stream_arn(name: &str) -> String {
    format!("arn:aws:kinesis:us-east-1:{EXAMPLE_ACCOUNT}:stream/{name}")
}

/// One Lambda Kinesis event record.
pub fn event_record(
    stream_arn: &str,
    shard_id: &str,
    sequence_number: &str,
    partition_key: &str,
    data: &[u8],
    arrival_secs: f64,
) -> Value {
    json!({
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": partition_key,
            "sequenceNumber": sequence_number,
            "data": base64::engine::general_purpose::STANDARD.encode(data),
            "approximateArrivalTimestamp": arrival_secs
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": format!("{shard_id}:{sequence_number}"),
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": format!("arn:aws:iam::{EXAMPLE_ACCOUNT}:role/lambda-role"),
        "awsRegion": "us-east-1",
        "eventSourceARN": stream_arn
    })
}

/// The event Lambda would deliver for records read from one shard of a stream.
pub fn event_from_stream_records(stream_arn: &str, shard_id: &str, records: &[Record]) -> Value {
    let items: Vec<Value> = records
        .iter()
        .map(|r| {
            #[allow(clippy::cast_precision_loss)]
            let arrival = r
                .approximate_arrival_timestamp
                .map_or(0.0, |t| t.as_secs_f64());
            event_record(
                stream_arn,
                shard_id,
                &r.sequence_number,
                r.partition_key.as_deref().unwrap_or_default(),
                r.data.as_ref(),
                arrival,
            )
        })
        .collect();
    json!({ "Records": items })
}

/// A synthetic sequence number: 56 digits like Kinesis's, growing with `n`.
pub fn sequence_number(n: u64) -> String {
    format!("4959033827149025660855969253836157109592157598913{n:07}")
}

/// Cognito Sync documents as a Kinesis event of one shard of `stream` (an example ARN of that name), each keyed
/// by its identity as Cognito Streams writes them.
pub fn sync_event(stream: &str, docs: &[Value]) -> Value {
    let payloads: Vec<(String, Value)> = docs
        .iter()
        .map(|d| {
            (
                d["identityId"].as_str().unwrap_or("pk").to_owned(),
                d.clone(),
            )
        })
        .collect();
    event_from_payloads(&example_stream_arn(stream), &payloads, 1_700_000_100.0)
}

/// An event of `payloads` (partition key, JSON document) on one shard, with synthetic sequence numbers.
pub fn event_from_payloads(
    stream_arn: &str,
    payloads: &[(String, Value)],
    first_arrival_secs: f64,
) -> Value {
    let items: Vec<Value> = payloads
        .iter()
        .enumerate()
        .map(|(i, (pk, doc))| {
            let data = serde_json::to_vec(doc).unwrap_or_default();
            #[allow(clippy::cast_precision_loss)]
            let arrival = first_arrival_secs + i as f64;
            event_record(
                stream_arn,
                "shardId-000000000000",
                &sequence_number(i as u64 + 1),
                pk,
                &data,
                arrival,
            )
        })
        .collect();
    json!({ "Records": items })
}

/// Arrival time of the first record of every sample event (2023-11-14T22:15:00Z).
pub const SAMPLE_ARRIVAL_SECS: f64 = 1_700_000_100.0;

/// Why a sample source cannot be turned into an event.
#[derive(Debug, thiserror::Error)]
#[error("sample source: {0}")]
pub struct SampleError(pub String);

/// The Lambda event for a sample source (`events/src/*.json`): `{"stream", "records": [...]}`, where each
/// record has a `partitionKey` and one of `data` (a JSON document), `dataText` (raw text) or `dataBase64`
/// (the base64 field verbatim, valid or not).
pub fn sample_event(source: &Value) -> Result<Value, SampleError> {
    let stream = source["stream"]
        .as_str()
        .ok_or_else(|| SampleError("missing \"stream\"".into()))?;
    let arn = example_stream_arn(stream);
    let records = source["records"]
        .as_array()
        .ok_or_else(|| SampleError("missing \"records\"".into()))?;
    let mut items = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let pk = r["partitionKey"]
            .as_str()
            .ok_or_else(|| SampleError(format!("record {i} has no partitionKey")))?;
        let data = if let Some(doc) = r.get("data") {
            serde_json::to_vec(doc).map_err(|e| SampleError(e.to_string()))?
        } else if let Some(text) = r["dataText"].as_str() {
            text.as_bytes().to_vec()
        } else {
            Vec::new()
        };
        #[allow(clippy::cast_precision_loss)]
        let arrival = SAMPLE_ARRIVAL_SECS + i as f64;
        let mut item = event_record(
            &arn,
            "shardId-000000000000",
            &sequence_number(i as u64 + 1),
            pk,
            &data,
            arrival,
        );
        if let Some(b64) = r["dataBase64"].as_str() {
            item["kinesis"]["data"] = Value::String(b64.to_owned());
        }
        items.push(item);
    }
    Ok(json!({ "Records": items }))
}

/// The Cognito Streams documents of a sample source, with their partition keys (records given as `data`
/// only), for putting on a real stream.
pub fn sample_documents(source: &Value) -> Vec<(String, Value)> {
    source["records"]
        .as_array()
        .map(|records| {
            records
                .iter()
                .filter_map(|r| {
                    Some((
                        r["partitionKey"].as_str()?.to_owned(),
                        r.get("data")?.clone(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Regenerates `events/<prefix><name>` from each readable source `events/<src>/<name>` (`*.json`) with
/// `render`. With `--check` on the command line it only compares, and fails naming the stale files. The body
/// of the `gen-events` and `gen-auth-events` bins.
pub fn run_generator(
    tool: &str,
    src: &str,
    prefix: &str,
    render: impl Fn(&Value) -> Result<String, String>,
) -> std::process::ExitCode {
    let check = std::env::args().any(|a| a == "--check");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events");
    match regenerate(&root, src, prefix, check, render) {
        Ok(stale) if stale.is_empty() => std::process::ExitCode::SUCCESS,
        Ok(stale) => {
            eprintln!("out of date (run `make events`): {}", stale.join(", "));
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{tool}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The files under `root` that differ from what `render` makes of their sources in `root/src`; rewritten
/// unless `check`. Returns the stale names when checking, nothing otherwise.
fn regenerate(
    root: &std::path::Path,
    src: &str,
    prefix: &str,
    check: bool,
    render: impl Fn(&Value) -> Result<String, String>,
) -> Result<Vec<String>, String> {
    let mut sources: Vec<_> = std::fs::read_dir(root.join(src))
        .map_err(|e| format!("cannot read events/{src}: {e}"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    sources.sort();
    let mut stale = Vec::new();
    for path in sources {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let source: Value = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            .map_err(|e| format!("{name}: {e}"))?;
        let text = render(&source).map_err(|e| format!("{name}: {e}"))?;
        let out_name = format!("{prefix}{name}");
        let out = root.join(&out_name);
        if std::fs::read_to_string(&out).ok().as_deref() != Some(text.as_str()) {
            if !check {
                std::fs::write(&out, &text).map_err(|e| format!("cannot write {out_name}: {e}"))?;
            }
            stale.push(out_name);
        }
    }
    Ok(if check { stale } else { Vec::new() })
}
