//! The log forwarder: one invocation over a Kinesis batch of CloudWatch Logs subscription records.
//! decode -> parse entries -> (look users up, when sharing is on) -> produce -> batch response.
//!
//! Failure paths, as in the sync processor:
//! - permanent (undecodable record, data that is not gzip or not a subscription document, an unusable entry,
//!   an output Kinesis refuses for good): the source record goes to the dead-letter bucket with its reason;
//!   the record's good entries are still forwarded (a replay of the dead letter gives the same event ids);
//! - transient (throttling, outage, the deadline, a failed dead-letter write): the record is reported to
//!   Lambda as a batch item failure and the user subs of its entries are blocked for the rest of the batch:
//!   a later record with one of those subs is reported too, so that per-user order holds on redelivery.
//!
//! Control messages are skipped. Entries of a type this forwarder does not map are counted and skipped.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lambda_events::event::streams::KinesisEventResponse;
use bridge_core::Deadline;
use bridge_core::batch::BatchReport;
use bridge_core::blob::S3BlobStore;
use bridge_core::dead_letter::{BatchRecord, DeadLetterWriter};
use bridge_core::envelope::SourceRef;
use bridge_core::kinesis_event::{RawKinesisEvent, decode_record};
use bridge_core::producer::{
    self, KinesisSink, OutboundRecord, ProduceFailure, Producer, RetryPolicy,
};
use bridge_core::telemetry::Metrics;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use lambda_runtime::LambdaEvent;
use tracing::info;

use crate::activity_log::{Parsed, RecordOrigin, Subscription, decode_subscription, parse_entry};
use crate::config::LogConfig;
use crate::directory::{self, CognitoDirectory, Enricher};
use crate::event::AuthEvent;
use crate::sharing::AttributeSharing;

/// The function's name in metrics and dead-letter keys.
pub const FUNCTION_NAME: &str = "auth-log-forwarder";

/// Metric: source records in the batch.
pub const METRIC_RECORDS_IN: &str = "RecordsIn";
/// Metric: control messages skipped.
pub const METRIC_CONTROL_MESSAGES: &str = "ControlMessages";
/// Metric: log events read.
pub const METRIC_LOG_EVENTS_IN: &str = "LogEventsIn";
/// Metric: auth events put on the stream.
pub const METRIC_EVENTS_FORWARDED: &str = "AuthEventsForwarded";
/// Metric: entries of a type or response not mapped (skipped).
pub const METRIC_UNMAPPED_ENTRIES: &str = "UnmappedEntries";
/// Metric: entries that are not user-activity entries (their record is dead-lettered).
pub const METRIC_UNUSABLE_ENTRIES: &str = "UnusableEntries";
/// Metric: source records written to the dead-letter bucket.
pub const METRIC_DEAD_LETTERED: &str = bridge_core::dead_letter::METRIC_DEAD_LETTERED;
/// Metric: source records reported back to Lambda for retry.
pub const METRIC_BATCH_ITEM_FAILURES: &str = "BatchItemFailures";

/// Every metric this function emits.
pub const METRICS: &[&str] = &[
    METRIC_RECORDS_IN,
    METRIC_CONTROL_MESSAGES,
    METRIC_LOG_EVENTS_IN,
    METRIC_EVENTS_FORWARDED,
    METRIC_UNMAPPED_ENTRIES,
    METRIC_UNUSABLE_ENTRIES,
    METRIC_DEAD_LETTERED,
    METRIC_BATCH_ITEM_FAILURES,
    producer::METRIC_PUT_RECORDS_CALLS,
    producer::METRIC_RECORDS_RETRIED,
    directory::METRIC_LOOKUP_CACHE_HITS,
    directory::METRIC_LOOKUP_CALLS,
    directory::METRIC_LOOKUP_THROTTLED,
    directory::METRIC_LOOKUP_FAILURES,
];

/// One auth event of a record and what became of it.
#[derive(Debug)]
struct Planned {
    event: AuthEvent,
    user_name: Option<String>,
    partition_key: String,
    outcome: Option<Result<(), ProduceFailure>>,
}

#[derive(Debug)]
enum Fate {
    /// Events to send (possibly none: a control message, only unmapped entries).
    Ready,
    /// Must go to the dead-letter bucket: (log-safe class, reason).
    DeadLetter(&'static str, String),
    DeadLettered,
    Retry(String),
}

#[derive(Debug)]
struct Item {
    source: SourceRef,
    arrival: Option<DateTime<Utc>>,
    data: Option<Vec<u8>>,
    raw: Option<serde_json::Value>,
    events: Vec<Planned>,
    /// Reasons of unusable entries: the record is dead-lettered after its good entries are sent.
    unusable: Vec<String>,
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
            Fate::DeadLetter(class, reason) => Some((class, reason.clone())),
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

impl Item {
    fn subs(&self) -> impl Iterator<Item = &str> {
        self.events.iter().map(|p| p.partition_key.as_str())
    }
}

/// The log forwarder, with its ports.
#[derive(Debug, Clone)]
pub struct LogForwarder {
    producer: Producer,
    dead_letters: DeadLetterWriter,
    sharing: AttributeSharing,
    enricher: Option<Enricher>,
}

impl LogForwarder {
    /// A forwarder over the given ports; `enricher` is used only when `sharing` is on.
    pub fn new(
        producer: Producer,
        dead_letters: DeadLetterWriter,
        sharing: AttributeSharing,
        enricher: Option<Enricher>,
    ) -> Self {
        Self {
            producer,
            dead_letters,
            sharing,
            enricher,
        }
    }

    /// Builds the real ports from config (once per cold start). No cognito-idp client is made while sharing
    /// is off.
    pub fn connect(
        config: &LogConfig,
        sdk: &aws_config::SdkConfig,
        s3: aws_sdk_s3::Client,
    ) -> Self {
        let sink = Arc::new(KinesisSink::new(
            aws_sdk_kinesis::Client::new(sdk),
            &config.output_stream,
        ));
        let policy = RetryPolicy {
            max_attempts: config.put_max_attempts,
            ..RetryPolicy::default()
        };
        // The enricher's own backoff governs retries (and its metrics count real calls): no SDK retries.
        let enricher = config.sharing.is_on().then(|| {
            let conf = aws_sdk_cognitoidentityprovider::config::Builder::from(sdk)
                .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
                .build();
            Enricher::new(
                Arc::new(CognitoDirectory::new(
                    aws_sdk_cognitoidentityprovider::Client::from_conf(conf),
                )),
                config.lookup,
            )
        });
        Self::new(
            Producer::new(sink, None, policy),
            DeadLetterWriter::new(Arc::new(S3BlobStore::new(s3)), &config.dead_letter_bucket),
            config.sharing.clone(),
            enricher,
        )
    }

    /// The enricher, when sharing is on.
    pub fn enricher(&self) -> Option<&Enricher> {
        self.enricher.as_ref()
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
        let mut items: Vec<Item> = event
            .records
            .into_iter()
            .map(|raw| decode(raw, metrics))
            .collect();
        self.dead_letters
            .settle(FUNCTION_NAME, &mut items, metrics)
            .await;
        self.enrich(&mut items, deadline, metrics).await;
        let outbound = plan(&mut items);
        let outcomes = self.producer.send(outbound, deadline, metrics).await;
        attach_outcomes(&mut items, outcomes);
        let report = settle(&mut items, metrics);
        self.dead_letters
            .settle(FUNCTION_NAME, &mut items, metrics)
            .await;
        let report = retry_failed_dead_letters(&items, report);
        metrics.add(METRIC_BATCH_ITEM_FAILURES, report.retry_count() as u64);
        report.into_response()
    }

    /// Fills the shared attributes of every event, one lookup per distinct user (cached across batches).
    async fn enrich(&self, items: &mut [Item], deadline: Deadline, metrics: &Metrics) {
        let Some(enricher) = self.enricher.as_ref().filter(|_| self.sharing.is_on()) else {
            return;
        };
        let mut users: Vec<(String, Option<String>, Option<String>)> = items
            .iter()
            .filter(|i| matches!(i.fate, Fate::Ready))
            .flat_map(|i| i.events.iter())
            .map(|p| {
                (
                    p.event.user_pool_id.clone(),
                    p.user_name.clone(),
                    p.event.user_sub.clone(),
                )
            })
            .filter(|(_, name, sub)| name.is_some() || sub.is_some())
            .collect();
        users.sort();
        users.dedup();
        let found: HashMap<_, _> = futures_util::stream::iter(users)
            .map(|user| async move {
                let attrs = enricher
                    .lookup(
                        &user.0,
                        user.1.as_deref(),
                        user.2.as_deref(),
                        deadline,
                        metrics,
                    )
                    .await;
                (user, attrs)
            })
            .buffer_unordered(16)
            .collect()
            .await;
        for p in items.iter_mut().flat_map(|i| i.events.iter_mut()) {
            let user = (
                p.event.user_pool_id.clone(),
                p.user_name.clone(),
                p.event.user_sub.clone(),
            );
            if let Some(Some(attrs)) = found.get(&user) {
                p.event.attributes = self
                    .sharing
                    .apply(attrs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            }
        }
    }
}

fn decode(raw: serde_json::Value, metrics: &Metrics) -> Item {
    let record = match decode_record(raw) {
        Ok(r) => r,
        Err(u) => {
            let u = *u;
            return Item {
                source: u.source,
                arrival: u.arrival,
                data: None,
                raw: Some(u.raw),
                events: Vec::new(),
                unusable: Vec::new(),
                fate: Fate::DeadLetter("undecodable_kinesis_record", u.reason),
            };
        }
    };
    let mut item = Item {
        source: record.source,
        arrival: record.arrival,
        data: None,
        raw: None,
        events: Vec::new(),
        unusable: Vec::new(),
        fate: Fate::Ready,
    };
    match decode_subscription(&record.data) {
        Err(e) => item.fate = Fate::DeadLetter("not_a_subscription_record", e.to_string()),
        Ok(Subscription::Control) => metrics.incr(METRIC_CONTROL_MESSAGES),
        Ok(Subscription::Data(data)) => {
            metrics.add(METRIC_LOG_EVENTS_IN, data.log_events.len() as u64);
            let origin = RecordOrigin {
                source: &item.source,
                arrival: item.arrival,
            };
            let mut events = Vec::new();
            for (i, entry) in data.log_events.iter().enumerate() {
                match parse_entry(entry, u32::try_from(i).unwrap_or(u32::MAX), &origin) {
                    Ok(Parsed::Event { event, user_name }) => {
                        let partition_key = event.partition_key(user_name.as_deref());
                        events.push(Planned {
                            event: *event,
                            user_name,
                            partition_key,
                            outcome: None,
                        });
                    }
                    Ok(Parsed::Unmapped(what)) => {
                        metrics.incr(METRIC_UNMAPPED_ENTRIES);
                        info!(entry = %what, "user-activity entry type not mapped; skipped");
                    }
                    Err(e) => {
                        metrics.incr(METRIC_UNUSABLE_ENTRIES);
                        item.unusable.push(e.to_string());
                    }
                }
            }
            item.events = events;
        }
    }
    item.data = Some(record.data);
    item
}

/// The records to send: every event of every record still ready, in order.
fn plan(items: &mut [Item]) -> Vec<OutboundRecord> {
    let mut outbound = Vec::new();
    for item in items.iter_mut().filter(|i| matches!(i.fate, Fate::Ready)) {
        for p in &mut item.events {
            match serde_json::to_vec(&p.event) {
                Ok(data) => outbound.push(OutboundRecord {
                    partition_key: p.partition_key.clone(),
                    data: Bytes::from(data),
                    header: p.event.header(),
                }),
                Err(e) => {
                    p.outcome = Some(Err(ProduceFailure::Permanent(format!(
                        "cannot serialize auth event: {e}"
                    ))));
                }
            }
        }
    }
    outbound
}

fn attach_outcomes(items: &mut [Item], outcomes: Vec<Result<producer::Delivery, ProduceFailure>>) {
    let mut outcomes = outcomes.into_iter();
    for item in items.iter_mut().filter(|i| matches!(i.fate, Fate::Ready)) {
        for p in item.events.iter_mut().filter(|p| p.outcome.is_none()) {
            p.outcome = Some(
                outcomes
                    .next()
                    .unwrap_or_else(|| {
                        Err(ProduceFailure::Transient("no outcome for event".into()))
                    })
                    .map(|_| ()),
            );
        }
    }
}

/// Decides each record's fate after producing: the records Lambda must retry (a transient failure, or a
/// user sub blocked by an earlier one) and the records to dead-letter.
fn settle(items: &mut [Item], metrics: &Metrics) -> BatchReport {
    let mut report = BatchReport::new();
    for item in items.iter_mut() {
        let seq = item.source.sequence_number.clone();
        if matches!(item.fate, Fate::DeadLettered | Fate::DeadLetter(..)) {
            continue;
        }
        let blocked = item.subs().any(|s| report.is_blocked(s));
        let transient = match &item.fate {
            Fate::Retry(reason) => Some(reason.clone()),
            _ => item.events.iter().find_map(|p| match &p.outcome {
                Some(Err(ProduceFailure::Transient(r))) => Some(r.clone()),
                _ => None,
            }),
        };
        if blocked || transient.is_some() {
            if let Some(reason) = &transient {
                info!(shard = %item.source.shard_id, sequence_number = %seq, reason = %reason, "record will be retried");
            }
            // Every sub of a retried record is blocked: its events come again, and must stay in order.
            let subs: Vec<String> = item.subs().map(str::to_owned).collect();
            for s in &subs {
                report.block(s);
            }
            report.retry_record(&seq);
            item.fate = Fate::Retry(
                transient.unwrap_or_else(|| "held: an earlier record of its user failed".into()),
            );
            continue;
        }
        let mut problems = std::mem::take(&mut item.unusable);
        for p in &item.events {
            match &p.outcome {
                Some(Ok(())) => metrics.incr(METRIC_EVENTS_FORWARDED),
                Some(Err(e)) => problems.push(format!(
                    "log event {}: {e}",
                    p.event.source.as_ref().map_or(0, |s| s.sub_sequence)
                )),
                None => {}
            }
        }
        if !problems.is_empty() {
            item.fate = Fate::DeadLetter("unusable_entries", problems.join("; "));
        }
    }
    report
}

fn retry_failed_dead_letters(items: &[Item], mut report: BatchReport) -> BatchReport {
    for item in items.iter().filter(|i| matches!(i.fate, Fate::Retry(_))) {
        report.retry_record(&item.source.sequence_number);
    }
    report
}
