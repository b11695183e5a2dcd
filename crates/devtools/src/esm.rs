//! A local Kinesis event source mapping: reads a stream's shards on the emulator and drives a function with
//! Kinesis events the way Lambda's event source mapping does, with the settings of our own template.
//!
//! What it does, per shard (Lambda developer guide, "Kinesis batch item failures", "on-failure destination",
//! "parameters"; corners in ../shared/REFERENCE.md):
//! - batches of at most `BatchSize` records and at most 6 MB of invocation payload (Lambda's synchronous invoke
//!   limit), in sequence order, from `StartingPosition`;
//! - `MaximumBatchingWindowInSeconds`: full batches go at once; records that do not fill one are left on the
//!   shard until the oldest of them has waited that long (per shard, before the split into lanes);
//! - `ParallelizationFactor` > 1: the shard's records are split by partition key over that many lanes, each lane
//!   in order, so order holds per partition key;
//! - `ReportBatchItemFailures`: an empty or null list (or an empty response) is success; otherwise the mapping
//!   checkpoints before the lowest reported sequence number and redelivers from there. An item identifier that
//!   is empty, null, not in the batch, or a response that is not JSON fails the whole batch (AWS documents the
//!   last two for SQS only; LocalStack and Floci do the same for Kinesis; we do too);
//! - a function error, a timeout or a crash fails the whole batch; with `BisectBatchOnFunctionError` the batch is
//!   split in halves, each retried on its own, and splitting does not use up retries; a partial failure with
//!   bisection splits at the reported record (no retry used unless nothing before it succeeded);
//! - after `MaximumRetryAttempts` retries, or once the oldest record is older than `MaximumRecordAgeInSeconds`,
//!   the batch is given up and described to the `OnFailure` SQS queue in Lambda's message shape
//!   (`RetryAttemptsExhausted` / `RecordAgeExceeded`, the latter our choice: AWS does not document it).
//!
//! Simplification: a redelivery after a partial failure holds the rest of the failed batch only; Lambda would
//! refill it up to `BatchSize` from the checkpoint. Order and lineage are the same.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kinesis::types::Record;
use serde_json::{Value, json};

use crate::LocalAws;
use crate::emulator::{DevError, ShardStart};

/// Where a mapping starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartingPosition {
    /// The oldest record kept.
    TrimHorizon,
    /// Only records put after the mapping starts.
    Latest,
    /// Records from this time (seconds since the epoch).
    AtTimestamp(i64),
}

/// A mapping's settings: the names and meanings of `AWS::Lambda::EventSourceMapping` / SAM's `Kinesis` event.
#[derive(Debug, Clone, PartialEq)]
pub struct MappingSettings {
    /// `BatchSize`.
    pub batch_size: usize,
    /// `StartingPosition`.
    pub starting_position: StartingPosition,
    /// `FunctionResponseTypes: [ReportBatchItemFailures]`.
    pub report_batch_item_failures: bool,
    /// `BisectBatchOnFunctionError`.
    pub bisect_on_function_error: bool,
    /// `MaximumRetryAttempts`; `None` for -1 (until the record expires).
    pub maximum_retry_attempts: Option<u32>,
    /// `MaximumRecordAgeInSeconds`; `None` for -1.
    pub maximum_record_age: Option<Duration>,
    /// `ParallelizationFactor`.
    pub parallelization_factor: usize,
    /// `MaximumBatchingWindowInSeconds`.
    pub batching_window: Duration,
}

/// Lambda's synchronous invocation payload limit: a batch is cut before its event would exceed it.
pub const MAX_EVENT_BYTES: usize = 6 * 1024 * 1024;

impl Default for MappingSettings {
    /// Lambda's defaults for a Kinesis mapping.
    fn default() -> Self {
        Self {
            batch_size: 100,
            starting_position: StartingPosition::TrimHorizon,
            report_batch_item_failures: false,
            bisect_on_function_error: false,
            maximum_retry_attempts: None,
            maximum_record_age: None,
            parallelization_factor: 1,
            batching_window: Duration::ZERO,
        }
    }
}

/// Why a template's mapping settings could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("template: {0}")]
pub struct TemplateError(String);

impl MappingSettings {
    /// The settings of the `Kinesis` event `event` of the SAM function `function` in a template, with every
    /// `!Ref` to a parameter resolved to its default: a local run uses the deployed configuration.
    pub fn from_template(
        template: &str,
        function: &str,
        event: &str,
    ) -> Result<Self, TemplateError> {
        use serde_yaml_ng::Value as Y;
        let bad = |why: String| TemplateError(why);
        let t: Y = serde_yaml_ng::from_str(template).map_err(|e| bad(e.to_string()))?;
        let p = &t["Resources"][function]["Properties"]["Events"][event]["Properties"];
        if p.is_null() {
            return Err(bad(format!("no event {event} on {function}")));
        }
        let resolve = |v: &Y| -> Y {
            match v {
                Y::Tagged(tag) if tag.tag == "!Ref" => tag
                    .value
                    .as_str()
                    .map(|name| t["Parameters"][name]["Default"].clone())
                    .unwrap_or(Y::Null),
                other => other.clone(),
            }
        };
        let number = |key: &str| -> Result<Option<i64>, TemplateError> {
            match resolve(&p[key]) {
                Y::Null => Ok(None),
                Y::Number(n) => n
                    .as_i64()
                    .map(Some)
                    .ok_or_else(|| bad(format!("{key}: {n}"))),
                Y::String(s) => s.parse().map(Some).map_err(|_| bad(format!("{key}: {s}"))),
                other => Err(bad(format!("{key}: {other:?}"))),
            }
        };
        let defaults = Self::default();
        let starting_position = match resolve(&p["StartingPosition"]).as_str() {
            Some("TRIM_HORIZON") => StartingPosition::TrimHorizon,
            Some("LATEST") => StartingPosition::Latest,
            Some("AT_TIMESTAMP") => StartingPosition::AtTimestamp(
                number("StartingPositionTimestamp")?
                    .ok_or_else(|| bad("AT_TIMESTAMP without a timestamp".into()))?,
            ),
            other => return Err(bad(format!("StartingPosition {other:?}"))),
        };
        let types = resolve(&p["FunctionResponseTypes"]);
        let positive = |n: Option<i64>| n.filter(|n| *n >= 0).and_then(|n| u64::try_from(n).ok());
        Ok(Self {
            batch_size: number("BatchSize")?
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(defaults.batch_size),
            starting_position,
            report_batch_item_failures: types.as_sequence().is_some_and(|l| {
                l.iter()
                    .any(|t| t.as_str() == Some("ReportBatchItemFailures"))
            }),
            bisect_on_function_error: resolve(&p["BisectBatchOnFunctionError"])
                .as_bool()
                .unwrap_or(false),
            maximum_retry_attempts: positive(number("MaximumRetryAttempts")?)
                .and_then(|n| u32::try_from(n).ok()),
            maximum_record_age: positive(number("MaximumRecordAgeInSeconds")?)
                .map(Duration::from_secs),
            parallelization_factor: number("ParallelizationFactor")?
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(1),
            batching_window: positive(number("MaximumBatchingWindowInSeconds")?)
                .map_or(Duration::ZERO, Duration::from_secs),
        })
    }
}

/// What an invocation gave back.
#[derive(Debug, Clone, PartialEq)]
pub enum InvokeOutcome {
    /// The function returned this response body.
    Response(Vec<u8>),
    /// The function raised an error (Lambda: `FunctionError: Unhandled`).
    FunctionError(String),
    /// The function ran out of time.
    Timeout,
    /// The function's process died.
    Crash,
}

/// A function the mapping invokes with a Kinesis event.
#[async_trait]
pub trait Invoker: Send + Sync {
    /// Runs the function on one event.
    async fn invoke(&self, event: Value) -> InvokeOutcome;
}

/// What one drain did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DrainReport {
    /// The sequence numbers of each invocation's records, in invocation order (lanes interleave).
    pub invocations: Vec<Vec<String>>,
    /// Records whose batch finished (successfully, or partly before a reported failure).
    pub succeeded: Vec<String>,
    /// The on-failure messages sent.
    pub on_failure: Vec<Value>,
    /// Records left on the stream for now: they do not fill a batch and the batching window is still open.
    pub waiting: usize,
}

/// The time as the mapping reads it, in seconds since the epoch (Kinesis's arrival timestamps are in the same).
pub type Clock = Arc<dyn Fn() -> f64 + Send + Sync>;

/// The mapping: a stream on the emulator, a function, the settings and an optional on-failure queue.
#[derive(Clone)]
pub struct LocalMapping {
    aws: LocalAws,
    stream_name: String,
    stream_arn: String,
    function_arn: String,
    settings: MappingSettings,
    invoker: Arc<dyn Invoker>,
    on_failure: Option<(aws_sdk_sqs::Client, String)>,
    clock: Option<Clock>,
}

impl std::fmt::Debug for LocalMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalMapping")
            .field("stream_arn", &self.stream_arn)
            .field("function_arn", &self.function_arn)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
struct Rec {
    seq: String,
    key: String,
    data: Vec<u8>,
    arrival: f64,
}

/// A lane: its records in order and where it stands.
#[derive(Debug)]
struct Piece {
    records: Vec<Rec>,
    retries: u32,
}

fn lane_of(key: &str, lanes: usize) -> usize {
    // FNV-1a: stable across runs, so a key always takes the same lane.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    usize::try_from(h % lanes.max(1) as u64).unwrap_or(0)
}

/// Why a response fails the whole batch, or the lowest failed position in the batch (`None`: all succeeded).
fn read_response(body: &[u8], batch: &[Rec]) -> Result<Option<usize>, String> {
    if body.is_empty() {
        return Ok(None);
    }
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("response is not JSON: {e}"))?;
    let failures = match v.get("batchItemFailures") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(list)) => list,
        Some(other) => return Err(format!("batchItemFailures is not a list: {other}")),
    };
    let mut lowest: Option<usize> = None;
    for f in failures {
        let id = f
            .get("itemIdentifier")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("an itemIdentifier is empty, null or missing: {f}"))?;
        let at = batch
            .iter()
            .position(|r| r.seq == id)
            .ok_or_else(|| format!("itemIdentifier {id} is not in the batch"))?;
        lowest = Some(lowest.map_or(at, |l| l.min(at)));
    }
    Ok(lowest)
}

/// The bytes a record adds to a Kinesis event: its base64 data and the fields around it (ARNs, ids, names).
fn event_bytes(r: &Rec) -> usize {
    r.data.len().div_ceil(3) * 4 + r.key.len() + r.seq.len() + 512
}

/// Consecutive batches of at most `batch_size` records whose event stays within `max_bytes` (a record too large
/// on its own still goes, alone: Lambda would fail that invocation, and the function's error path shows it).
fn batches(records: &[Rec], batch_size: usize, max_bytes: usize) -> Vec<&[Rec]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 16);
    for (i, r) in records.iter().enumerate() {
        let add = event_bytes(r);
        if i > start && (i - start == batch_size || bytes + add > max_bytes) {
            out.push(&records[start..i]);
            (start, bytes) = (i, 16);
        }
        bytes += add;
    }
    if start < records.len() {
        out.push(&records[start..]);
    }
    out
}

impl LocalMapping {
    /// A mapping of `stream_name` (ARN `stream_arn`) to the function `function_arn`, run by `invoker`.
    pub fn new(
        aws: LocalAws,
        stream_name: &str,
        stream_arn: &str,
        function_arn: &str,
        settings: MappingSettings,
        invoker: Arc<dyn Invoker>,
    ) -> Self {
        Self {
            aws,
            stream_name: stream_name.to_owned(),
            stream_arn: stream_arn.to_owned(),
            function_arn: function_arn.to_owned(),
            settings,
            invoker,
            on_failure: None,
            clock: None,
        }
    }

    /// Reads the time (for the batching window and the record age) from `clock` instead of the system's: a test
    /// can then place a poll inside or past a window exactly, whatever the machine's speed.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    fn now(&self) -> f64 {
        match &self.clock {
            Some(clock) => clock(),
            None => chrono::Utc::now().timestamp_millis() as f64 / 1000.0,
        }
    }

    /// Sends what is given up to this SQS queue (`OnFailure` destination).
    pub fn with_on_failure_queue(mut self, sqs: aws_sdk_sqs::Client, queue_url: &str) -> Self {
        self.on_failure = Some((sqs, queue_url.to_owned()));
        self
    }

    /// Reads every shard from the starting position to its current end and drives the function until each is
    /// done (every record succeeded or given up), as if each batching window had already passed.
    pub async fn drain(&self) -> Result<DrainReport, DevError> {
        self.poll(&mut HashMap::new(), true).await
    }

    /// Like [`LocalMapping::drain`], from each shard's checkpoint (the last sequence number done; none: the
    /// starting position), and moves the checkpoints past what it did: called again, it takes only new records.
    /// A shard whose new records do not fill a batch waits for its batching window (see `DrainReport::waiting`).
    pub async fn drain_from(
        &self,
        checkpoints: &mut HashMap<String, String>,
    ) -> Result<DrainReport, DevError> {
        self.poll(checkpoints, false).await
    }

    async fn poll(
        &self,
        checkpoints: &mut HashMap<String, String>,
        flush: bool,
    ) -> Result<DrainReport, DevError> {
        let shards = self
            .aws
            .kinesis
            .list_shards()
            .stream_name(&self.stream_name)
            .send()
            .await
            .map_err(|e| DevError::Aws {
                op: "ListShards",
                message: aws_sdk_kinesis::error::DisplayErrorContext(e).to_string(),
            })?;
        let mut report = DrainReport::default();
        for shard in shards.shards.unwrap_or_default() {
            let mut records = self
                .read_shard(&shard.shard_id, checkpoints.get(&shard.shard_id))
                .await?;
            if !flush {
                let held = self.held_back(&records);
                report.waiting += held;
                records.truncate(records.len() - held);
            }
            if let Some(last) = records.last() {
                checkpoints.insert(shard.shard_id.clone(), last.seq.clone());
            }
            let lanes = self.settings.parallelization_factor.max(1);
            let mut by_lane: Vec<Vec<Rec>> = vec![Vec::new(); lanes];
            for r in records {
                by_lane[lane_of(&r.key, lanes)].push(r);
            }
            let runs = by_lane
                .into_iter()
                .map(|records| self.run_lane(&shard.shard_id, records));
            for lane in futures_util::future::join_all(runs).await {
                let lane = lane?;
                report.invocations.extend(lane.invocations);
                report.succeeded.extend(lane.succeeded);
                report.on_failure.extend(lane.on_failure);
            }
        }
        Ok(report)
    }

    async fn read_shard(
        &self,
        shard_id: &str,
        after: Option<&String>,
    ) -> Result<Vec<Rec>, DevError> {
        let start = match (after, self.settings.starting_position) {
            (Some(seq), _) => ShardStart::After(seq.clone()),
            (None, StartingPosition::TrimHorizon) => ShardStart::TrimHorizon,
            (None, StartingPosition::Latest) => ShardStart::Latest,
            (None, StartingPosition::AtTimestamp(t)) => ShardStart::AtTimestamp(t),
        };
        let records = self
            .aws
            .read_shard(&self.stream_name, shard_id, start)
            .await?;
        Ok(records
            .into_iter()
            .map(|r: Record| Rec {
                seq: r.sequence_number,
                key: r.partition_key.unwrap_or_default(),
                data: r.data.into_inner(),
                arrival: r
                    .approximate_arrival_timestamp
                    .map_or(0.0, |t| t.as_secs_f64()),
            })
            .collect())
    }

    /// How many records at the end do not fill a batch and are still inside the batching window (full batches
    /// go at once).
    fn held_back(&self, records: &[Rec]) -> usize {
        let window = self.settings.batching_window.as_secs_f64();
        if window <= 0.0 {
            return 0;
        }
        let batch_size = self.settings.batch_size.max(1);
        match batches(records, batch_size, MAX_EVENT_BYTES).last() {
            Some(tail) if tail.len() < batch_size && self.now() - tail[0].arrival < window => {
                tail.len()
            }
            _ => 0,
        }
    }

    fn event(&self, shard_id: &str, records: &[Rec]) -> Value {
        let items: Vec<Value> = records
            .iter()
            .map(|r| {
                crate::events::event_record(
                    &self.stream_arn,
                    shard_id,
                    &r.seq,
                    &r.key,
                    &r.data,
                    r.arrival,
                )
            })
            .collect();
        json!({ "Records": items })
    }

    async fn run_lane(&self, shard_id: &str, records: Vec<Rec>) -> Result<DrainReport, DevError> {
        let mut report = DrainReport::default();
        let batch_size = self.settings.batch_size.max(1);
        for chunk in batches(&records, batch_size, MAX_EVENT_BYTES) {
            // The front piece is always the oldest unfinished records: order holds.
            let mut pieces: VecDeque<Piece> = VecDeque::from([Piece {
                records: chunk.to_vec(),
                retries: 0,
            }]);
            while let Some(piece) = pieces.pop_front() {
                if piece.records.is_empty() {
                    continue;
                }
                if let Some(max_age) = self.settings.maximum_record_age
                    && self.now() - piece.records[0].arrival > max_age.as_secs_f64()
                {
                    report.on_failure.push(
                        self.give_up(
                            shard_id,
                            &piece.records,
                            "RecordAgeExceeded",
                            piece.retries,
                            None,
                        )
                        .await?,
                    );
                    continue;
                }
                report
                    .invocations
                    .push(piece.records.iter().map(|r| r.seq.clone()).collect());
                let outcome = self
                    .invoker
                    .invoke(self.event(shard_id, &piece.records))
                    .await;
                let (failed_at, error) = match outcome {
                    InvokeOutcome::Response(body) if self.settings.report_batch_item_failures => {
                        match read_response(&body, &piece.records) {
                            Ok(None) => (None, None),
                            Ok(Some(at)) => (Some(at), None),
                            Err(why) => (Some(0), Some(why)),
                        }
                    }
                    InvokeOutcome::Response(_) => (None, None),
                    InvokeOutcome::FunctionError(e) => (Some(0), Some(e)),
                    InvokeOutcome::Timeout => (Some(0), Some("Task timed out".to_owned())),
                    InvokeOutcome::Crash => (Some(0), Some("Runtime exited".to_owned())),
                };
                let Some(at) = failed_at else {
                    report
                        .succeeded
                        .extend(piece.records.iter().map(|r| r.seq.clone()));
                    continue;
                };
                // Checkpoint before the failure: what came before it is done.
                report
                    .succeeded
                    .extend(piece.records[..at].iter().map(|r| r.seq.clone()));
                let rest = piece.records[at..].to_vec();
                let whole_batch_error = error.is_some();
                if at > 0 && self.settings.bisect_on_function_error {
                    // Split at the reported record: no retry used.
                    pieces.push_front(Piece {
                        records: rest,
                        retries: piece.retries,
                    });
                    continue;
                }
                if whole_batch_error && self.settings.bisect_on_function_error && rest.len() > 1 {
                    let half = rest.len() / 2;
                    pieces.push_front(Piece {
                        records: rest[half..].to_vec(),
                        retries: piece.retries,
                    });
                    pieces.push_front(Piece {
                        records: rest[..half].to_vec(),
                        retries: piece.retries,
                    });
                    continue;
                }
                let retries = piece.retries + u32::from(at == 0);
                if self
                    .settings
                    .maximum_retry_attempts
                    .is_some_and(|max| retries > max)
                {
                    report.on_failure.push(
                        self.give_up(
                            shard_id,
                            &rest,
                            "RetryAttemptsExhausted",
                            retries,
                            error.as_deref(),
                        )
                        .await?,
                    );
                    continue;
                }
                pieces.push_front(Piece {
                    records: rest,
                    retries,
                });
            }
        }
        Ok(report)
    }

    /// Describes a given-up batch to the on-failure queue, as Lambda does for Kinesis (no record data).
    async fn give_up(
        &self,
        shard_id: &str,
        records: &[Rec],
        condition: &str,
        invocations: u32,
        function_error: Option<&str>,
    ) -> Result<Value, DevError> {
        let iso = |secs: f64| {
            #[allow(clippy::cast_possible_truncation)]
            let ms = (secs * 1000.0) as i64;
            chrono::DateTime::from_timestamp_millis(ms)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        let first = &records[0];
        let last = &records[records.len() - 1];
        let message = json!({
            "requestContext": {
                "requestId": format!("local-{}-{}", shard_id, first.seq),
                "functionArn": self.function_arn,
                "condition": condition,
                "approximateInvokeCount": invocations,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": function_error.map(|_| "Unhandled"),
            },
            "version": "1.0",
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "KinesisBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": first.seq,
                "endSequenceNumber": last.seq,
                "approximateArrivalOfFirstRecord": iso(first.arrival),
                "approximateArrivalOfLastRecord": iso(last.arrival),
                "batchSize": records.len(),
                "streamArn": self.stream_arn,
            },
        });
        if let Some((sqs, url)) = &self.on_failure {
            sqs.send_message()
                .queue_url(url)
                .message_body(message.to_string())
                .send()
                .await
                .map_err(|e| DevError::Aws {
                    op: "SendMessage",
                    message: aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
                })?;
        }
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recs(n: usize) -> Vec<Rec> {
        (0..n)
            .map(|i| Rec {
                seq: format!("{i}"),
                key: "k".into(),
                data: Vec::new(),
                arrival: 0.0,
            })
            .collect()
    }

    #[test]
    fn responses_are_read_as_lambda_reads_them() {
        let b = recs(3);
        assert_eq!(read_response(b"", &b), Ok(None));
        assert_eq!(read_response(br#"{"batchItemFailures":[]}"#, &b), Ok(None));
        assert_eq!(
            read_response(br#"{"batchItemFailures":null}"#, &b),
            Ok(None)
        );
        assert_eq!(
            read_response(
                br#"{"batchItemFailures":[{"itemIdentifier":"2"},{"itemIdentifier":"1"}]}"#,
                &b
            ),
            Ok(Some(1))
        );
        for whole in [
            &br#"{"batchItemFailures":[{"itemIdentifier":""}]}"#[..],
            br#"{"batchItemFailures":[{"itemIdentifier":null}]}"#,
            br#"{"batchItemFailures":[{"itemId":"1"}]}"#,
            br#"{"batchItemFailures":[{"itemIdentifier":"9"}]}"#,
            b"not json",
        ] {
            assert!(
                read_response(whole, &b).is_err(),
                "{}",
                String::from_utf8_lossy(whole)
            );
        }
    }

    #[test]
    fn the_sync_processors_mapping_is_read_from_our_template() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/template.yaml");
        let template = std::fs::read_to_string(path).unwrap_or_default();
        let s = MappingSettings::from_template(&template, "SyncProcessorFunction", "CognitoStream");
        assert_eq!(
            s,
            Ok(MappingSettings {
                batch_size: 500,
                starting_position: StartingPosition::TrimHorizon,
                report_batch_item_failures: true,
                bisect_on_function_error: true,
                maximum_retry_attempts: Some(20),
                maximum_record_age: Some(Duration::from_secs(86_400)),
                parallelization_factor: 1,
                batching_window: Duration::from_secs(1),
            })
        );
        assert!(
            MappingSettings::from_template(&template, "SyncProcessorFunction", "Nope").is_err()
        );
    }

    #[test]
    fn batches_stop_at_the_batch_size_and_at_six_megabytes() {
        let sizes = |b: &[&[Rec]]| b.iter().map(|x| x.len()).collect::<Vec<_>>();
        let small = recs(7);
        assert_eq!(sizes(&batches(&small, 3, MAX_EVENT_BYTES)), [3, 3, 1]);
        assert_eq!(sizes(&batches(&small, 100, MAX_EVENT_BYTES)), [7]);
        assert!(batches(&[], 3, MAX_EVENT_BYTES).is_empty());
        // 1 MiB records (Kinesis's largest): base64 makes each ~1.33 MiB, so four fit under 6 MiB, not five.
        let big: Vec<Rec> = (0..10)
            .map(|i| Rec {
                data: vec![b'x'; 1024 * 1024],
                ..recs(10)[i].clone()
            })
            .collect();
        let cut = batches(&big, 500, MAX_EVENT_BYTES);
        assert_eq!(sizes(&cut), [4, 4, 2]);
        for b in &cut {
            let total: usize = b.iter().map(event_bytes).sum();
            assert!(total <= MAX_EVENT_BYTES, "{total}");
        }
        // A record over the limit on its own still goes, alone.
        let huge = vec![Rec {
            data: vec![b'x'; 5 * 1024 * 1024],
            ..recs(1)[0].clone()
        }];
        assert_eq!(
            sizes(&batches(
                &[huge.clone(), huge].concat(),
                500,
                MAX_EVENT_BYTES
            )),
            [1, 1]
        );
    }

    #[test]
    fn a_key_always_takes_the_same_lane() {
        assert_eq!(lane_of("alice", 4), lane_of("alice", 4));
        let lanes: std::collections::BTreeSet<usize> =
            (0..100).map(|i| lane_of(&format!("user-{i}"), 4)).collect();
        assert_eq!(lanes.len(), 4);
    }
}
