//! The sync processor's own steps on the shared pipeline ([`bridge_core::pipeline`]): decode a Cognito Sync
//! record, resolve its S3Url payload and the marks of its changes, judge each change against the marks
//! (duplicates and stale replays dropped), and once the outputs are durable, move the marks.
//!
//! Failure classes (see [`FailureClass`]): a record that is not a sync record, an inconsistent one, a refused
//! or unreadable S3Url payload, an unusable change or an output refused for good is dead-lettered; a payload
//! URL, the dedup store or the stream failing is transient, and the record is retried with its identity's
//! later records held back (the pipeline's order rule, the ordering key being the identity id).
//!
//! A mark moves only after its change is on the output stream, and only for records the pipeline settled
//! (an identity's unbroken prefix of successes): a crash or a failure can cause a re-send (same `event_id`),
//! never a loss. A mark that cannot be moved (store failure, the deadline) retries its record, so that a
//! later stale replay is never judged against an old mark.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bridge_core::Deadline;
use bridge_core::blob::S3BlobStore;
use bridge_core::dead_letter::DeadLetterWriter;
use bridge_core::dedup::{Advance, DedupStore, DynamoDedupStore, Mark};
use bridge_core::envelope::SourceRef;
use bridge_core::failure::{Failure, FailureClass};
use bridge_core::kinesis_event::SourceRecord;
use bridge_core::pipeline::{self, Decoded, Flow, Pipeline, Slot};
use bridge_core::producer::{
    self, Delivery, KinesisSink, LargePayloads, OutboundRecord, ProduceFailure, Producer,
};
use bridge_core::retry::Backoff;
use bridge_core::telemetry::Metrics;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use tracing::warn;

use crate::change::{Change, Changes, changes_of};
use crate::config::Config;
use crate::dedup::{Verdict, classify_change, classify_removal};
use crate::payload::{self, FetchError, Fetched, PayloadFetcher};
use crate::record::{Payload, PayloadType, StreamRecord, SyncRecord};

/// The function's name in metrics and dead-letter keys.
pub const FUNCTION_NAME: &str = "sync-processor";

/// Metric: source records in the batch.
pub const METRIC_RECORDS_IN: &str = pipeline::METRIC_RECORDS_IN;
/// Metric: changes put on the output stream.
pub const METRIC_CHANGES_FORWARDED: &str = "ChangesForwarded";
/// Metric: changes dropped as exact repeats.
pub const METRIC_DUPLICATES_DROPPED: &str = "DuplicatesDropped";
/// Metric: changes dropped as older than what was forwarded.
pub const METRIC_STALE_DROPPED: &str = "StaleDropped";
/// Metric: source records written to the dead-letter bucket.
pub const METRIC_DEAD_LETTERED: &str = pipeline::METRIC_DEAD_LETTERED;
/// Metric: source records reported back to Lambda for retry.
pub const METRIC_BATCH_ITEM_FAILURES: &str = pipeline::METRIC_BATCH_ITEM_FAILURES;
/// Metric: mark writes that lost a race and were re-evaluated.
pub const METRIC_MARK_CONFLICTS: &str = "MarkConflicts";
/// Metric: mark writes that failed or did not fit before the deadline (their records are retried).
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
/// Bytes of S3Url payloads one invocation holds at most, by default: payloads past it are fetched on the
/// retry (each fetch reserves the payload cap before it starts, so the bound holds with fetches in flight).
pub const DEFAULT_PAYLOAD_BUDGET_BYTES: u64 = 48 * 1024 * 1024;
/// Mark writes at once.
const MARK_WRITE_CONCURRENCY: usize = 32;
/// Compare-and-swap rounds per mark before leaving it to the next invocation.
const MARK_CAS_ROUNDS: u32 = 3;

/// A change and whether it became an output.
#[derive(Debug)]
pub struct Planned {
    change: Change,
    output: bool,
}

/// A sync record on its way through the pipeline.
#[derive(Debug)]
pub enum SyncItem {
    /// Its changes are behind an S3Url.
    Fetch {
        /// The record.
        record: Box<StreamRecord>,
        /// The presigned URL.
        url: String,
    },
    /// Its changes, ready to be judged, and why the unusable ones cannot be used (the record is dead-lettered
    /// once its good changes are forwarded).
    Ready {
        /// The usable changes.
        planned: Vec<Planned>,
        /// Reasons, one per unusable change.
        unusable: Vec<String>,
    },
}

/// A mark to write, which rule judges it if another writer got there first, and the record it came from.
#[derive(Debug, Clone, Copy)]
struct NewMark {
    mark: Mark,
    is_dataset: bool,
    record: usize,
}

/// The batch's marks: as loaded, as moved in memory while planning (so that repeats inside the batch never
/// reach the store), and those to write once outputs are durable.
#[derive(Debug, Default)]
pub struct Marks {
    loaded: HashMap<String, Mark>,
    current: HashMap<String, Mark>,
    new: HashMap<String, NewMark>,
}

/// The sync processor, with its ports.
#[derive(Debug, Clone)]
pub struct Processor {
    pipeline: Pipeline,
    dedup: Arc<dyn DedupStore>,
    fetcher: PayloadFetcher,
    payload_budget: u64,
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
            pipeline: Pipeline::new(producer, dead_letters),
            dedup,
            fetcher,
            payload_budget: DEFAULT_PAYLOAD_BUDGET_BYTES,
        }
    }

    /// The same processor with the pipeline's settings: records still failing their give-up age are
    /// dead-lettered with their data instead of left to the event source, and KPL aggregates are read or refused
    /// (see [`Pipeline::with_settings`]).
    pub fn with_settings(mut self, settings: bridge_core::pipeline::Settings) -> Self {
        self.pipeline = self.pipeline.with_settings(settings);
        self
    }

    /// The same processor, holding at most `bytes` of S3Url payloads per invocation.
    pub fn with_payload_budget(mut self, bytes: u64) -> Self {
        self.payload_budget = bytes;
        self
    }

    /// Builds the real ports from config and the SDK config (once per cold start). The Kinesis client does
    /// not retry underneath the producer, which resends failed entries itself.
    pub fn connect(
        config: &Config,
        sdk: &aws_config::SdkConfig,
        s3: aws_sdk_s3::Client,
    ) -> Result<Self, reqwest::Error> {
        let blobs = Arc::new(S3BlobStore::new(s3));
        let sink = Arc::new(KinesisSink::new(
            aws_sdk_kinesis::Client::new(&bridge_core::aws::own_retries(sdk)),
            &config.output_stream,
        ));
        let large = LargePayloads {
            store: blobs.clone(),
            bucket: config.large_payload_bucket.clone(),
        };
        let policy = Backoff {
            max_attempts: config.put_max_attempts,
            ..Backoff::default()
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
        )
        .with_payload_budget(config.s3_payload_budget)
        .with_settings(config.pipeline))
    }

    /// Fetches every S3Url payload of the batch, [`FETCH_CONCURRENCY`] at a time, within the invocation's
    /// payload budget: a fetch starts only if the bytes held plus the payload cap still fit; the others are
    /// retried (with their identity's later records, by the order rule).
    async fn resolve_payloads(
        &self,
        slots: &mut [Slot<SyncItem>],
        deadline: Deadline,
        metrics: &Metrics,
    ) {
        let jobs: Vec<(usize, String)> = slots
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| match slot.item() {
                Some(SyncItem::Fetch { url, .. }) => Some((i, url.clone())),
                _ => None,
            })
            .collect();
        if jobs.is_empty() {
            return;
        }
        let held = std::sync::atomic::AtomicU64::new(0);
        let (held, cap, budget) = (&held, self.fetcher.max_bytes(), self.payload_budget);
        let results: Vec<(usize, Result<Fetched, FetchError>)> = futures_util::stream::iter(jobs)
            .map(|(i, url)| async move {
                use std::sync::atomic::Ordering::SeqCst;
                let reserved = held.fetch_add(cap, SeqCst);
                if reserved.saturating_add(cap) > budget {
                    held.fetch_sub(cap, SeqCst);
                    let reason = format!(
                        "not fetched: the invocation's payload budget of {budget} bytes is taken"
                    );
                    return (i, Err(FetchError::Transient(reason)));
                }
                let result = self.fetcher.fetch(&url, deadline, metrics).await;
                // A body is held until the batch ends, parsed or not (a dead letter may need it).
                let kept = result.as_ref().map_or(0, |f| f.body.len() as u64);
                held.fetch_sub(cap - kept.min(cap), SeqCst);
                (i, result)
            })
            .buffered(FETCH_CONCURRENCY)
            .collect()
            .await;
        for (i, result) in results {
            let slot = &mut slots[i];
            let (source, arrival) = (slot.source().clone(), slot.arrival());
            let Some(SyncItem::Fetch { record, .. }) = slot.item_mut() else {
                continue;
            };
            let outcome = match result {
                Ok(Fetched {
                    body,
                    truncated,
                    records,
                }) => {
                    let ready = match records {
                        Ok(records) => ready(
                            record,
                            Some(&records),
                            Some(PayloadType::S3Url),
                            &source,
                            arrival,
                        ),
                        Err(e) => Err(Failure::new(FailureClass::S3PayloadFailed, e)),
                    };
                    // Whatever came of it, what Cognito sent goes into the record's dead letter, should it have one.
                    slot.attach_payload(body, truncated);
                    ready
                }
                Err(e @ FetchError::Refused(_)) => Err(Failure::new(FailureClass::S3UrlRefused, e)),
                Err(e @ FetchError::Permanent(_)) => {
                    Err(Failure::new(FailureClass::S3PayloadFailed, e))
                }
                Err(e @ FetchError::Transient(_)) => {
                    Err(Failure::new(FailureClass::Unavailable, e))
                }
            };
            match outcome {
                Ok(ready) => {
                    if let Some(item) = slot.item_mut() {
                        *item = ready;
                    }
                }
                Err(failure) => slot.fail(failure),
            }
        }
    }

    /// Loads the marks of every key and dataset in the batch; if the store fails, every record still working
    /// is retried.
    async fn load_marks(&self, slots: &mut [Slot<SyncItem>]) -> HashMap<String, Mark> {
        let keys: Vec<String> = slots
            .iter()
            .filter_map(|slot| match slot.item() {
                Some(SyncItem::Ready { planned, .. }) => Some(
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
                for slot in slots.iter_mut() {
                    slot.fail(Failure::new(FailureClass::Unavailable, &e));
                }
                HashMap::new()
            }
        }
    }

    /// Moves one mark by compare-and-swap against what was loaded; a lost race is re-judged with the rule.
    /// `Err` when the mark could not be moved.
    async fn advance_mark(
        &self,
        key: &str,
        new: NewMark,
        mut expected: Option<Mark>,
        metrics: &Metrics,
    ) -> Result<(), String> {
        let NewMark {
            mark, is_dataset, ..
        } = new;
        for _ in 0..MARK_CAS_ROUNDS {
            match self.dedup.advance(key, expected, mark).await {
                Ok(Advance::Advanced) => return Ok(()),
                Ok(Advance::Conflict(current)) => {
                    metrics.incr(METRIC_MARK_CONFLICTS);
                    let newer = if is_dataset {
                        classify_removal(current, mark) == Verdict::Forward
                    } else {
                        classify_change(current, None, mark) == Verdict::Forward
                    };
                    if !newer {
                        return Ok(());
                    }
                    expected = current;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        Err(format!(
            "mark still contended after {MARK_CAS_ROUNDS} compare-and-swap rounds"
        ))
    }
}

#[async_trait]
impl Flow for Processor {
    type Item = SyncItem;
    type Plan = Marks;

    const FUNCTION: &'static str = FUNCTION_NAME;
    const METRICS: &'static [&'static str] = METRICS;

    fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    fn decode(&self, record: &SourceRecord, _: &Metrics) -> Decoded<SyncItem> {
        let parsed = match StreamRecord::parse(&record.data) {
            Ok(parsed) => parsed,
            Err(e) => {
                return Decoded::failed(Vec::new(), Failure::new(FailureClass::NotASyncRecord, e));
            }
        };
        let keys = vec![parsed.identity_id.clone()];
        let result = match parsed.payload() {
            Err(e) => Err(Failure::new(FailureClass::InconsistentRecord, e)),
            Ok(Payload::S3Url(url)) => Ok(SyncItem::Fetch {
                record: Box::new(parsed),
                url,
            }),
            Ok(Payload::Inline(records)) => ready(
                &parsed,
                Some(&records),
                parsed.payload_type.or(Some(PayloadType::Inline)),
                &record.source,
                record.arrival,
            ),
            Ok(Payload::DatasetOperation) => ready(
                &parsed,
                None,
                parsed.payload_type,
                &record.source,
                record.arrival,
            ),
        };
        Decoded {
            order_keys: keys,
            result,
        }
    }

    async fn resolve(
        &self,
        slots: &mut [Slot<SyncItem>],
        deadline: Deadline,
        metrics: &Metrics,
    ) -> Marks {
        self.resolve_payloads(slots, deadline, metrics).await;
        let loaded = self.load_marks(slots).await;
        Marks {
            current: loaded.clone(),
            loaded,
            new: HashMap::new(),
        }
    }

    /// Judges each change against the marks as moved so far in this batch; forwards the newer ones.
    fn outputs(
        &self,
        marks: &mut Marks,
        item: &mut SyncItem,
        metrics: &Metrics,
    ) -> Vec<Result<OutboundRecord, ProduceFailure>> {
        let SyncItem::Ready { planned, .. } = item else {
            return vec![Err(ProduceFailure::Transient(
                "the record's payload was not fetched".into(),
            ))];
        };
        let mut outputs = Vec::new();
        for p in planned.iter_mut() {
            let c = &p.change;
            let verdict = if c.is_dataset_removal() {
                classify_removal(marks.current.get(&c.dataset_key).copied(), c.mark)
            } else {
                classify_change(
                    marks.current.get(&c.dedup_key).copied(),
                    marks.current.get(&c.dataset_key).copied(),
                    c.mark,
                )
            };
            match verdict {
                Verdict::Forward => {
                    marks.current.insert(c.dedup_key.clone(), c.mark);
                    p.output = true;
                    outputs.push(
                        serde_json::to_vec(&c.event)
                            .map(|data| OutboundRecord {
                                partition_key: c.event.identity_id.clone(),
                                data: Bytes::from(data),
                                header: c.event.header.clone(),
                            })
                            .map_err(|e| {
                                ProduceFailure::Permanent(format!("cannot serialize change: {e}"))
                            }),
                    );
                }
                Verdict::Duplicate => metrics.incr(METRIC_DUPLICATES_DROPPED),
                Verdict::Stale => metrics.incr(METRIC_STALE_DROPPED),
            }
        }
        outputs
    }

    /// Counts the forwarded changes and plans their marks; an unusable change, or one refused for good,
    /// dead-letters the record (its good changes are on the stream).
    fn settle(
        &self,
        marks: &mut Marks,
        index: usize,
        item: &SyncItem,
        results: &[Result<Delivery, ProduceFailure>],
        metrics: &Metrics,
    ) -> Result<(), Failure> {
        let SyncItem::Ready { planned, unusable } = item else {
            return Ok(());
        };
        let mut refused = Vec::new();
        for (p, result) in planned.iter().filter(|p| p.output).zip(results) {
            match result {
                Ok(_) => {
                    metrics.incr(METRIC_CHANGES_FORWARDED);
                    marks.new.insert(
                        p.change.dedup_key.clone(),
                        NewMark {
                            mark: p.change.mark,
                            is_dataset: p.change.is_dataset_removal(),
                            record: index,
                        },
                    );
                }
                Err(e) => refused.push(format!(
                    "change {}: {e}",
                    p.change.event.header.source.sub_sequence
                )),
            }
        }
        if !unusable.is_empty() {
            let reasons: Vec<&String> = unusable.iter().chain(&refused).collect();
            let reasons: Vec<&str> = reasons.into_iter().map(String::as_str).collect();
            Err(Failure::new(
                FailureClass::UnusableChange,
                reasons.join("; "),
            ))
        } else if !refused.is_empty() {
            Err(Failure::new(
                FailureClass::OutputRejected,
                refused.join("; "),
            ))
        } else {
            Ok(())
        }
    }

    /// Moves the marks of the forwarded changes, [`MARK_WRITE_CONCURRENCY`] at a time, none started after the
    /// deadline. A mark not moved retries the record that planned it.
    async fn after_commit(
        &self,
        marks: Marks,
        deadline: Deadline,
        metrics: &Metrics,
    ) -> Vec<(usize, Failure)> {
        let Marks { loaded, new, .. } = marks;
        let loaded = &loaded;
        futures_util::stream::iter(new)
            .map(|(key, new)| async move {
                if deadline.remaining() == Some(std::time::Duration::ZERO) {
                    return Some((
                        new.record,
                        Failure::new(
                            FailureClass::Deadline,
                            "mark not moved before the invocation deadline",
                        ),
                    ));
                }
                let expected = loaded.get(&key).copied();
                let result = self.advance_mark(&key, new, expected, metrics).await;
                result.err().map(|e| {
                    warn!(error = %e, "mark write failed; the record will be retried");
                    (
                        new.record,
                        Failure::new(FailureClass::Unavailable, format!("mark write failed: {e}")),
                    )
                })
            })
            .buffer_unordered(MARK_WRITE_CONCURRENCY)
            .filter_map(|unfinished| async move {
                if unfinished.is_some() {
                    metrics.incr(METRIC_MARK_WRITE_ERRORS);
                }
                unfinished
            })
            .collect()
            .await
    }
}

fn ready(
    record: &StreamRecord,
    records: Option<&[SyncRecord]>,
    payload_type: Option<PayloadType>,
    source: &SourceRef,
    arrival: Option<DateTime<Utc>>,
) -> Result<SyncItem, Failure> {
    let Changes { changes, unusable } = changes_of(record, records, payload_type, source, arrival)
        .map_err(|reason| Failure::new(FailureClass::UnusableChange, reason))?;
    let planned = changes
        .into_iter()
        .map(|change| Planned {
            change,
            output: false,
        })
        .collect();
    Ok(SyncItem::Ready { planned, unusable })
}

#[cfg(test)]
mod tests {
    //! The processor over in-memory ports: the deadline, where moto cannot be made slow on purpose.

    use std::time::Duration;

    use bridge_core::pipeline::Flow as _;
    use bridge_core::testing::{
        MemoryBlobs, MemoryDedup, MemorySink, failed_sequence_numbers, kinesis_event,
    };
    use serde_json::json;
    use tokio::time::Instant;

    use super::*;

    fn records(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let doc = json!({
                    "identityPoolId": "us-east-1:00000000-0000-4000-8000-000000000000",
                    "identityId": format!("us-east-1:00000000-0000-4000-8000-{:012}", i % 100),
                    "datasetName": "game", "operation": "replace", "payloadType": "Inline", "syncCount": 1,
                    "lastModifiedDate": 1_700_000_000_001_i64,
                    "kinesisSyncRecords": [{"key": format!("key-{i}"), "value": "v", "syncCount": 1,
                        "lastModifiedDate": 1_700_000_000_001_i64, "deviceLastModifiedDate": 1_700_000_000_000_i64,
                        "op": "replace"}]
                });
                serde_json::to_vec(&doc).unwrap_or_default()
            })
            .collect()
    }

    // On tokio's paused clock: the writes' 100 ms and the deadline are virtual time, so what fits before the
    // deadline, and when the answer comes, do not depend on the machine's load.
    #[tokio::test(start_paused = true)]
    async fn mark_writes_past_the_deadline_retry_their_records_and_a_redelivery_completes_them() {
        // 1,000 new changes; each mark write takes 100 ms, 32 at a time: over three seconds of writes, with
        // 1.5 s left. The answer comes in time; the records whose marks did not move are retried.
        let sink = Arc::new(MemorySink::default());
        let dedup = Arc::new(MemoryDedup {
            write_delay: Duration::from_millis(100),
            ..MemoryDedup::default()
        });
        let blobs = Arc::new(MemoryBlobs::default());
        let processor = Processor::new(
            Producer::new(sink.clone(), None, Backoff::default()),
            dedup.clone(),
            DeadLetterWriter::new(blobs, "bucket"),
            PayloadFetcher::new(Default::default(), 1 << 20, Duration::from_secs(1), 1)
                .expect("fetcher"),
        );
        let data = records(1_000);
        let metrics = Metrics::new();
        let started = Instant::now();
        let response = processor
            .process(
                kinesis_event(&data, 1),
                Deadline::after(Duration::from_millis(1_500)),
                &metrics,
            )
            .await;
        let took = started.elapsed();
        assert!(
            took <= Duration::from_millis(1_500),
            "answered after {took:?}"
        );
        let retried = failed_sequence_numbers(&response);
        assert!(
            !retried.is_empty() && retried.len() < 1_000,
            "{} retried; {}",
            retried.len(),
            metrics.emf(FUNCTION_NAME, METRICS, 0)
        );
        assert_eq!(metrics.get(METRIC_MARK_WRITE_ERRORS), retried.len() as u64);
        assert_eq!(metrics.get(METRIC_CHANGES_FORWARDED), 1_000);

        // Lambda redelivers from the lowest reported record: the changes whose marks did not move are
        // forwarded again with the same event ids, and every mark moves.
        let lowest = usize::try_from(retried[0]).expect("small");
        let response = processor
            .process(
                kinesis_event(&data[lowest - 1..], retried[0]),
                Deadline::none(),
                &Metrics::new(),
            )
            .await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(dedup.marks.lock().expect("marks").len(), 1_000);
        let ids: std::collections::HashSet<String> = sink
            .stored()
            .iter()
            .filter_map(|e| {
                let doc: serde_json::Value = serde_json::from_slice(&e.data).ok()?;
                Some(doc["event_id"].as_str()?.to_owned())
            })
            .collect();
        assert_eq!(
            ids.len(),
            1_000,
            "every change is on the stream, repeats share their ids"
        );
    }
}
