//! The pipeline of one invocation: decode -> resolve S3Url payloads -> dead-letter the hopeless -> dedup ->
//! envelope -> produce -> move marks -> batch response. Each stage is a method; none reaches back.
//!
//! Failure paths:
//! - permanent (malformed record, refused or expired URL, payload over the cap, output that cannot be
//!   stored): the source record goes to the dead-letter bucket with its reason, and the batch goes on;
//! - transient (throttling, 5xx, timeouts, the dedup store or the dead-letter bucket failing): the record is
//!   reported to Lambda as a batch item failure, and its identity's later records are held back in this
//!   invocation, so that per-identity order holds.
//!
//! A mark moves only after its change is on the output stream, and only along an identity's unbroken prefix
//! of successes: a crash or a failure can cause a re-send (same `event_id`), never a loss.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lambda_events::event::streams::KinesisEventResponse;
use bridge_core::Deadline;
use bridge_core::batch::BatchReport;
use bridge_core::blob::S3BlobStore;
use bridge_core::dead_letter::{BatchRecord, DeadLetterWriter};
use bridge_core::dedup::{Advance, DedupStore, DynamoDedupStore, Mark};
use bridge_core::envelope::SourceRef;
use bridge_core::kinesis_event::{RawKinesisEvent, decode_record};
use bridge_core::producer::{
    self, Delivery, KinesisSink, LargePayloads, OutboundRecord, ProduceFailure, Producer,
    RetryPolicy,
};
use bridge_core::telemetry::Metrics;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use lambda_runtime::LambdaEvent;
use tracing::{info, warn};

use crate::change::{Change, changes_of};
use crate::config::Config;
use crate::dedup::{Verdict, classify_change, classify_removal};
use crate::payload::{self, FetchError, PayloadFetcher};
use crate::record::{Payload, PayloadType, StreamRecord};

/// The function's name in metrics and dead-letter keys.
pub const FUNCTION_NAME: &str = "sync-processor";

/// Metric: source records in the batch.
pub const METRIC_RECORDS_IN: &str = "RecordsIn";
/// Metric: changes put on the output stream.
pub const METRIC_CHANGES_FORWARDED: &str = "ChangesForwarded";
/// Metric: changes dropped as exact repeats.
pub const METRIC_DUPLICATES_DROPPED: &str = "DuplicatesDropped";
/// Metric: changes dropped as older than what was forwarded.
pub const METRIC_STALE_DROPPED: &str = "StaleDropped";
/// Metric: source records written to the dead-letter bucket.
pub const METRIC_DEAD_LETTERED: &str = bridge_core::dead_letter::METRIC_DEAD_LETTERED;
/// Metric: source records reported back to Lambda for retry.
pub const METRIC_BATCH_ITEM_FAILURES: &str = "BatchItemFailures";
/// Metric: mark writes that lost a race and were re-evaluated.
pub const METRIC_MARK_CONFLICTS: &str = "MarkConflicts";
/// Metric: mark writes that failed (the output is on the stream; a replay may re-send it).
pub const METRIC_MARK_WRITE_ERRORS: &str = "MarkWriteErrors";

/// Every metric this function emits.
pub const METRICS: &[&str] = &[
    METRIC_RECORDS_IN,
    METRIC_CHANGES_FORWARDED,
    METRIC_DUPLICATES_DROPPED,
    METRIC_STALE_DROPPED,
    METRIC_DEAD_LETTERED,
    METRIC_BATCH_ITEM_FAILURES,
    payload::METRIC_S3_FETCHES,
    payload::METRIC_S3_FETCH_RETRIES,
    producer::METRIC_PUT_RECORDS_CALLS,
    producer::METRIC_RECORDS_RETRIED,
    producer::METRIC_POINTER_RECORDS,
    METRIC_MARK_CONFLICTS,
    METRIC_MARK_WRITE_ERRORS,
];

/// S3Url payloads fetched at once.
const FETCH_CONCURRENCY: usize = 8;
/// Mark writes at once.
const MARK_WRITE_CONCURRENCY: usize = 32;
/// Compare-and-swap rounds per mark before leaving it to the next invocation.
const MARK_CAS_ROUNDS: u32 = 3;

/// A failure that sends a record to the dead-letter bucket. `class` is safe to log; `detail` may quote data.
#[derive(Debug, Clone)]
struct Hopeless {
    class: &'static str,
    detail: String,
}

fn hopeless(class: &'static str, detail: impl ToString) -> Fate {
    Fate::DeadLetter(Hopeless {
        class,
        detail: detail.to_string(),
    })
}

/// A change and what became of it.
#[derive(Debug)]
struct Planned {
    change: Change,
    send: bool,
    outcome: Option<Result<Delivery, ProduceFailure>>,
}

#[derive(Debug)]
enum Fate {
    Fetch {
        record: Box<StreamRecord>,
        url: String,
    },
    Ready(Vec<Planned>),
    DeadLetter(Hopeless),
    DeadLettered,
    Retry(String),
    /// An earlier record of the same identity must be retried first.
    Held,
}

#[derive(Debug)]
struct Item {
    source: SourceRef,
    arrival: Option<DateTime<Utc>>,
    data: Option<Vec<u8>>,
    raw: Option<serde_json::Value>,
    identity: Option<String>,
    fate: Fate,
}

impl BatchRecord for Item {
    fn source(&self) -> &SourceRef {
        &self.source
    }
    fn arrival(&self) -> Option<DateTime<Utc>> {
        self.arrival
    }
    fn data(&self) -> Option<&[u8]> {
        self.data.as_deref()
    }
    fn raw(&self) -> Option<&serde_json::Value> {
        self.raw.as_ref()
    }
    fn dead_letter_reason(&self) -> Option<(&'static str, String)> {
        match &self.fate {
            Fate::DeadLetter(h) => Some((h.class, h.detail.clone())),
            _ => None,
        }
    }
    fn set_dead_lettered(&mut self) {
        self.fate = Fate::DeadLettered;
    }
    fn set_retry(&mut self, reason: String) {
        self.fate = Fate::Retry(reason);
    }
}

/// A mark to write, and which rule judges it if another writer got there first.
#[derive(Debug, Clone, Copy)]
struct NewMark {
    mark: Mark,
    is_dataset: bool,
}

/// The sync processor, with its ports.
#[derive(Debug, Clone)]
pub struct Processor {
    producer: Producer,
    dedup: Arc<dyn DedupStore>,
    dead_letters: DeadLetterWriter,
    fetcher: PayloadFetcher,
}

impl Processor {
    /// A processor over the given ports.
    pub fn new(
        producer: Producer,
        dedup: Arc<dyn DedupStore>,
        dead_letters: DeadLetterWriter,
        fetcher: PayloadFetcher,
    ) -> Self {
        Self {
            producer,
            dedup,
            dead_letters,
            fetcher,
        }
    }

    /// Builds the real ports from config and the SDK config (once per cold start).
    pub fn connect(
        config: &Config,
        sdk: &aws_config::SdkConfig,
        s3: aws_sdk_s3::Client,
    ) -> Result<Self, reqwest::Error> {
        let blobs = Arc::new(S3BlobStore::new(s3));
        let sink = Arc::new(KinesisSink::new(
            aws_sdk_kinesis::Client::new(sdk),
            &config.output_stream,
        ));
        let large = LargePayloads {
            store: blobs.clone(),
            bucket: config.large_payload_bucket.clone(),
        };
        let policy = RetryPolicy {
            max_attempts: config.put_max_attempts,
            ..RetryPolicy::default()
        };
        let dedup = DynamoDedupStore::new(
            aws_sdk_dynamodb::Client::new(sdk),
            &config.dedup_table,
            config.dedup_ttl,
        );
        let fetcher = PayloadFetcher::new(
            config.url_policy.clone(),
            config.s3_payload_max_bytes,
            config.s3_fetch_timeout,
            config.s3_fetch_attempts,
        )?;
        Ok(Self::new(
            Producer::new(sink, Some(large), policy),
            Arc::new(dedup),
            DeadLetterWriter::new(blobs, &config.dead_letter_bucket),
            fetcher,
        ))
    }

    /// The Lambda handler: processes the batch, prints its metrics, answers with the partial batch response.
    pub async fn handle(
        &self,
        event: LambdaEvent<RawKinesisEvent>,
    ) -> Result<KinesisEventResponse, lambda_runtime::Error> {
        let metrics = Metrics::new();
        let deadline = Deadline::from_lambda_deadline_ms(event.context.deadline);
        let response = self.process(event.payload, deadline, &metrics).await;
        metrics.flush(FUNCTION_NAME, METRICS);
        Ok(response)
    }

    /// Processes one batch.
    pub async fn process(
        &self,
        event: RawKinesisEvent,
        deadline: Deadline,
        metrics: &Metrics,
    ) -> KinesisEventResponse {
        metrics.add(METRIC_RECORDS_IN, event.records.len() as u64);
        let mut items: Vec<Item> = event.records.into_iter().map(decode).collect();
        self.resolve_payloads(&mut items, deadline, metrics).await;
        self.dead_letters
            .settle(FUNCTION_NAME, &mut items, metrics)
            .await;
        let loaded = self.load_marks(&mut items).await;
        let outbound = plan(&mut items, &loaded, metrics);
        let outcomes = self.producer.send(outbound, deadline, metrics).await;
        attach_outcomes(&mut items, outcomes);
        let (report, new_marks) = settle(&mut items, metrics);
        self.dead_letters
            .settle(FUNCTION_NAME, &mut items, metrics)
            .await;
        let report = retry_failed_dead_letters(&items, report);
        self.advance_marks(new_marks, &loaded, metrics).await;
        metrics.add(METRIC_BATCH_ITEM_FAILURES, report.retry_count() as u64);
        report.into_response()
    }

    async fn resolve_payloads(&self, items: &mut [Item], deadline: Deadline, metrics: &Metrics) {
        let jobs: Vec<(usize, String)> = items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match &item.fate {
                Fate::Fetch { url, .. } => Some((i, url.clone())),
                _ => None,
            })
            .collect();
        let results: Vec<(usize, Result<_, FetchError>)> = futures_util::stream::iter(jobs)
            .map(|(i, url)| async move { (i, self.fetcher.fetch(&url, deadline, metrics).await) })
            .buffered(FETCH_CONCURRENCY)
            .collect()
            .await;
        for (i, result) in results {
            let item = &mut items[i];
            let Fate::Fetch { record, .. } = std::mem::replace(&mut item.fate, Fate::Held) else {
                continue;
            };
            item.fate = match result {
                Ok(records) => ready(
                    &record,
                    Some(&records),
                    Some(PayloadType::S3Url),
                    &item.source,
                    item.arrival,
                ),
                Err(e @ FetchError::Refused(_)) => hopeless("s3_url_refused", e),
                Err(e @ FetchError::Permanent(_)) => hopeless("s3_payload_failed", e),
                Err(e @ FetchError::Transient(_)) => Fate::Retry(e.to_string()),
            };
        }
    }

    /// Loads the marks of every key and dataset in the batch; if the store fails, every pending record is
    /// retried.
    async fn load_marks(&self, items: &mut [Item]) -> HashMap<String, Mark> {
        let keys: Vec<String> = items
            .iter()
            .filter_map(|item| match &item.fate {
                Fate::Ready(planned) => Some(
                    planned
                        .iter()
                        .flat_map(|p| [p.change.dedup_key.clone(), p.change.dataset_key.clone()]),
                ),
                _ => None,
            })
            .flatten()
            .collect();
        if keys.is_empty() {
            return HashMap::new();
        }
        match self.dedup.load(&keys).await {
            Ok(marks) => marks,
            Err(e) => {
                warn!(error = %e, "dedup store unavailable; retrying the batch's pending records");
                for item in items
                    .iter_mut()
                    .filter(|i| matches!(i.fate, Fate::Ready(_)))
                {
                    item.fate = Fate::Retry(e.to_string());
                }
                HashMap::new()
            }
        }
    }

    /// Moves each mark by compare-and-swap against what was loaded; a lost race is re-judged with the rule.
    async fn advance_marks(
        &self,
        new_marks: HashMap<String, NewMark>,
        loaded: &HashMap<String, Mark>,
        metrics: &Metrics,
    ) {
        futures_util::stream::iter(new_marks)
            .for_each_concurrent(MARK_WRITE_CONCURRENCY, |(key, mark)| async move {
                let NewMark { mark, is_dataset } = mark;
                let mut expected = loaded.get(&key).copied();
                for _ in 0..MARK_CAS_ROUNDS {
                    match self.dedup.advance(&key, expected, mark).await {
                        Ok(Advance::Advanced) => return,
                        Ok(Advance::Conflict(current)) => {
                            metrics.incr(METRIC_MARK_CONFLICTS);
                            let newer = if is_dataset {
                                classify_removal(current, mark) == Verdict::Forward
                            } else {
                                classify_change(current, None, mark) == Verdict::Forward
                            };
                            if !newer {
                                return;
                            }
                            expected = current;
                        }
                        Err(e) => {
                            metrics.incr(METRIC_MARK_WRITE_ERRORS);
                            warn!(error = %e, "mark write failed; a replay of this change would be forwarded again");
                            return;
                        }
                    }
                }
                metrics.incr(METRIC_MARK_WRITE_ERRORS);
            })
            .await;
    }
}

fn ready(
    record: &StreamRecord,
    records: Option<&[crate::record::SyncRecord]>,
    payload_type: Option<PayloadType>,
    source: &SourceRef,
    arrival: Option<DateTime<Utc>>,
) -> Fate {
    match changes_of(record, records, payload_type, source, arrival) {
        Ok(changes) => Fate::Ready(
            changes
                .into_iter()
                .map(|change| Planned {
                    change,
                    send: false,
                    outcome: None,
                })
                .collect(),
        ),
        Err(reason) => hopeless("unusable_change", reason),
    }
}

fn decode(raw: serde_json::Value) -> Item {
    let record = match decode_record(raw) {
        Ok(r) => r,
        Err(u) => {
            let u = *u;
            return Item {
                source: u.source,
                arrival: u.arrival,
                data: None,
                raw: Some(u.raw),
                identity: None,
                fate: hopeless("undecodable_kinesis_record", u.reason),
            };
        }
    };
    let mut item = Item {
        source: record.source,
        arrival: record.arrival,
        data: None,
        raw: None,
        identity: None,
        fate: Fate::Held,
    };
    item.fate = match StreamRecord::parse(&record.data) {
        Err(e) => hopeless("not_a_sync_record", e),
        Ok(parsed) => {
            item.identity = Some(parsed.identity_id.clone());
            match parsed.payload() {
                Err(e) => hopeless("inconsistent_record", e),
                Ok(Payload::S3Url(url)) => Fate::Fetch {
                    record: Box::new(parsed),
                    url,
                },
                Ok(Payload::Inline(records)) => ready(
                    &parsed,
                    Some(&records),
                    parsed.payload_type.or(Some(PayloadType::Inline)),
                    &item.source,
                    item.arrival,
                ),
                Ok(Payload::DatasetOperation) => ready(
                    &parsed,
                    None,
                    parsed.payload_type,
                    &item.source,
                    item.arrival,
                ),
            }
        }
    };
    item.data = Some(record.data);
    item
}

/// Walks the batch in order, judging each change against the marks (moved in memory as changes are planned,
/// so repeats inside the batch never reach the store), holding back identities with a transient failure,
/// and returns the records to send.
fn plan(
    items: &mut [Item],
    loaded: &HashMap<String, Mark>,
    metrics: &Metrics,
) -> Vec<OutboundRecord> {
    let mut current = loaded.clone();
    let mut blocked = std::collections::HashSet::new();
    let mut outbound = Vec::new();
    for item in items.iter_mut() {
        if item
            .identity
            .as_ref()
            .is_some_and(|id| blocked.contains(id))
        {
            if !matches!(item.fate, Fate::DeadLettered) {
                item.fate = Fate::Held;
            }
            continue;
        }
        match &mut item.fate {
            Fate::Retry(_) => {
                if let Some(id) = &item.identity {
                    blocked.insert(id.clone());
                }
            }
            Fate::Ready(planned) => {
                for p in planned.iter_mut() {
                    let c = &p.change;
                    let verdict = if c.is_dataset_removal() {
                        classify_removal(current.get(&c.dataset_key).copied(), c.mark)
                    } else {
                        classify_change(
                            current.get(&c.dedup_key).copied(),
                            current.get(&c.dataset_key).copied(),
                            c.mark,
                        )
                    };
                    match verdict {
                        Verdict::Forward => {
                            current.insert(c.dedup_key.clone(), c.mark);
                            match serde_json::to_vec(&c.event) {
                                Ok(data) => {
                                    p.send = true;
                                    outbound.push(OutboundRecord {
                                        partition_key: c.event.identity_id.clone(),
                                        data: Bytes::from(data),
                                        header: c.event.header.clone(),
                                    });
                                }
                                Err(e) => {
                                    p.outcome = Some(Err(ProduceFailure::Permanent(format!(
                                        "cannot serialize change: {e}"
                                    ))))
                                }
                            }
                        }
                        Verdict::Duplicate => metrics.incr(METRIC_DUPLICATES_DROPPED),
                        Verdict::Stale => metrics.incr(METRIC_STALE_DROPPED),
                    }
                }
            }
            _ => {}
        }
    }
    outbound
}

fn attach_outcomes(items: &mut [Item], outcomes: Vec<Result<Delivery, ProduceFailure>>) {
    let mut outcomes = outcomes.into_iter();
    for item in items {
        if let Fate::Ready(planned) = &mut item.fate {
            for p in planned.iter_mut().filter(|p| p.send) {
                p.outcome = Some(outcomes.next().unwrap_or_else(|| {
                    Err(ProduceFailure::Transient("no outcome for change".into()))
                }));
            }
        }
    }
}

/// Decides each record's fate after producing: the marks to move (an identity's unbroken prefix of
/// successes only) and the records Lambda must retry.
fn settle(items: &mut [Item], metrics: &Metrics) -> (BatchReport, HashMap<String, NewMark>) {
    let mut report = BatchReport::new();
    let mut marks = HashMap::new();
    for item in items.iter_mut() {
        let seq = item.source.sequence_number.clone();
        let identity = item.identity.clone().unwrap_or_default();
        if !identity.is_empty()
            && report.is_blocked(&identity)
            && !matches!(item.fate, Fate::DeadLettered)
        {
            report.retry_record(&seq);
            continue;
        }
        match &item.fate {
            Fate::Retry(reason) => {
                info!(shard = %item.source.shard_id, sequence_number = %seq, reason = %reason, "record will be retried");
                if identity.is_empty() {
                    report.retry_record(&seq);
                } else {
                    report.retry(&seq, &identity);
                }
            }
            Fate::Held | Fate::Fetch { .. } => report.retry_record(&seq),
            Fate::Ready(planned) => {
                if let Some(reason) = planned.iter().find_map(|p| match &p.outcome {
                    Some(Err(ProduceFailure::Transient(r))) => Some(r.clone()),
                    _ => None,
                }) {
                    info!(shard = %item.source.shard_id, sequence_number = %seq, reason = %reason, "record will be retried");
                    report.retry(&seq, &identity);
                    continue;
                }
                let mut permanent = Vec::new();
                for p in planned {
                    match &p.outcome {
                        Some(Ok(_)) => {
                            metrics.incr(METRIC_CHANGES_FORWARDED);
                            let is_dataset = p.change.is_dataset_removal();
                            marks.insert(
                                p.change.dedup_key.clone(),
                                NewMark {
                                    mark: p.change.mark,
                                    is_dataset,
                                },
                            );
                        }
                        Some(Err(e)) => permanent.push(format!(
                            "change {}: {e}",
                            p.change.event.header.source.sub_sequence
                        )),
                        None => {}
                    }
                }
                if !permanent.is_empty() {
                    item.fate = hopeless("output_rejected", permanent.join("; "));
                }
            }
            Fate::DeadLetter(_) | Fate::DeadLettered => {}
        }
    }
    (report, marks)
}

fn retry_failed_dead_letters(items: &[Item], mut report: BatchReport) -> BatchReport {
    for item in items.iter().filter(|i| matches!(i.fate, Fate::Retry(_))) {
        report.retry_record(&item.source.sequence_number);
    }
    report
}
