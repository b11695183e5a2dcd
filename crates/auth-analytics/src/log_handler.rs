//! The log forwarder's own steps on the shared pipeline ([`bridge_core::pipeline`]), over a Kinesis batch of
//! CloudWatch Logs subscription records: decode and parse entries -> (look users up, when sharing is on) ->
//! one auth event per entry.
//!
//! Failure paths:
//! - permanent (undecodable record, data that is not gzip or not a subscription document, an unusable entry,
//!   an output Kinesis refuses for good): the source record goes to the dead-letter bucket with its reason;
//!   the record's good entries are still forwarded (a replay of the dead letter gives the same event ids);
//! - transient (throttling, outage, the deadline, a failed dead-letter write): the record is reported to
//!   Lambda as a batch item failure. Its ordering keys are the user subs (partition keys) of its entries: by
//!   the pipeline's order rule, a later record with one of those subs is held back before it is produced and
//!   reported too, so that per-user order holds on redelivery. Lambda redelivers from the lowest reported
//!   sequence number, so every later record of the batch is re-sent (same event ids), not only the blocked
//!   user's.
//!
//! Control messages are skipped. Entries of a type this forwarder does not map are counted and skipped.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bridge_core::Deadline;
use bridge_core::blob::S3BlobStore;
use bridge_core::dead_letter::DeadLetterWriter;
use bridge_core::failure::{Failure, FailureClass};
use bridge_core::kinesis_event::SourceRecord;
use bridge_core::pipeline::{self, Decoded, Flow, Pipeline, Slot};
use bridge_core::producer::{
    self, Delivery, KinesisSink, OutboundRecord, ProduceFailure, Producer,
};
use bridge_core::retry::Backoff;
use bridge_core::telemetry::Metrics;
use bytes::Bytes;
use futures_util::StreamExt as _;
use tracing::info;

use crate::activity_log::{Parsed, RecordOrigin, Subscription, decode_subscription, parse_entry};
use crate::config::LogConfig;
use crate::directory::{self, CognitoDirectory, Enricher};
use crate::event::AuthEvent;
use crate::sharing::AttributeSharing;

/// The function's name in metrics and dead-letter keys.
pub const FUNCTION_NAME: &str = "auth-log-forwarder";

/// Metric: source records in the batch.
pub const METRIC_RECORDS_IN: &str = pipeline::METRIC_RECORDS_IN;
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
pub const METRIC_DEAD_LETTERED: &str = pipeline::METRIC_DEAD_LETTERED;
/// Metric: source records reported back to Lambda for retry.
pub const METRIC_BATCH_ITEM_FAILURES: &str = pipeline::METRIC_BATCH_ITEM_FAILURES;

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

/// One auth event of a record.
#[derive(Debug)]
pub struct Planned {
    event: AuthEvent,
    user_name: Option<String>,
    partition_key: String,
}

/// A subscription record on its way through the pipeline: its events (none for a control message or only
/// unmapped entries) and the reasons of its unusable entries (dead-lettered after the good ones are sent).
#[derive(Debug, Default)]
pub struct LogItem {
    events: Vec<Planned>,
    unusable: Vec<String>,
}

/// The log forwarder, with its ports.
#[derive(Debug, Clone)]
pub struct LogForwarder {
    pipeline: Pipeline,
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
            pipeline: Pipeline::new(producer, dead_letters),
            sharing,
            enricher,
        }
    }

    /// Builds the real ports from config (once per cold start). No cognito-idp client is made while sharing
    /// is off. The Kinesis and cognito-idp clients do not retry underneath the producer's and the enricher's
    /// own backoff (whose metrics then count real calls).
    pub fn connect(
        config: &LogConfig,
        sdk: &aws_config::SdkConfig,
        s3: aws_sdk_s3::Client,
    ) -> Self {
        let own_retries = bridge_core::aws::own_retries(sdk);
        let sink = Arc::new(KinesisSink::new(
            aws_sdk_kinesis::Client::new(&own_retries),
            &config.output_stream,
        ));
        let policy = Backoff {
            max_attempts: config.put_max_attempts,
            ..Backoff::default()
        };
        let enricher = config.sharing.is_on().then(|| {
            Enricher::new(
                Arc::new(CognitoDirectory::new(
                    aws_sdk_cognitoidentityprovider::Client::new(&own_retries),
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
        .with_settings(config.pipeline)
    }

    /// The same forwarder with the pipeline's settings (give-up age, KPL aggregates; see
    /// [`Pipeline::with_settings`]).
    pub fn with_settings(mut self, settings: bridge_core::pipeline::Settings) -> Self {
        self.pipeline = self.pipeline.with_settings(settings);
        self
    }

    /// The enricher, when sharing is on.
    pub fn enricher(&self) -> Option<&Enricher> {
        self.enricher.as_ref()
    }

    /// Fills the shared attributes of every event, one lookup per distinct user (cached across batches).
    async fn enrich(&self, slots: &mut [Slot<LogItem>], deadline: Deadline, metrics: &Metrics) {
        let Some(enricher) = self.enricher.as_ref().filter(|_| self.sharing.is_on()) else {
            return;
        };
        let mut users: Vec<(String, Option<String>, Option<String>)> = slots
            .iter()
            .filter_map(Slot::item)
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
        for p in slots
            .iter_mut()
            .filter_map(Slot::item_mut)
            .flat_map(|i| i.events.iter_mut())
        {
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

#[async_trait]
impl Flow for LogForwarder {
    type Item = LogItem;
    type Plan = ();

    const FUNCTION: &'static str = FUNCTION_NAME;
    const METRICS: &'static [&'static str] = METRICS;

    fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    fn decode(&self, record: &SourceRecord, metrics: &Metrics) -> Decoded<LogItem> {
        let data = match decode_subscription(&record.data) {
            Err(e) => {
                return Decoded::failed(
                    Vec::new(),
                    Failure::new(FailureClass::NotASubscriptionRecord, e),
                );
            }
            Ok(Subscription::Control) => {
                metrics.incr(METRIC_CONTROL_MESSAGES);
                return Decoded::item(Vec::new(), LogItem::default());
            }
            Ok(Subscription::Data(data)) => data,
        };
        metrics.add(METRIC_LOG_EVENTS_IN, data.log_events.len() as u64);
        let origin = RecordOrigin {
            source: &record.source,
            arrival: record.arrival,
        };
        let mut item = LogItem::default();
        for (i, entry) in data.log_events.iter().enumerate() {
            match parse_entry(entry, u32::try_from(i).unwrap_or(u32::MAX), &origin) {
                Ok(Parsed::Event { event, user_name }) => {
                    let partition_key = event.partition_key(user_name.as_deref());
                    item.events.push(Planned {
                        event: *event,
                        user_name,
                        partition_key,
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
        let keys = item
            .events
            .iter()
            .map(|p| p.partition_key.clone())
            .collect();
        Decoded::item(keys, item)
    }

    async fn resolve(&self, slots: &mut [Slot<LogItem>], deadline: Deadline, metrics: &Metrics) {
        self.enrich(slots, deadline, metrics).await;
    }

    fn outputs(
        &self,
        _: &mut (),
        item: &mut LogItem,
        _: &Metrics,
    ) -> Vec<Result<OutboundRecord, ProduceFailure>> {
        item.events
            .iter()
            .map(|p| {
                serde_json::to_vec(&p.event)
                    .map(|data| OutboundRecord {
                        partition_key: p.partition_key.clone(),
                        data: Bytes::from(data),
                        header: p.event.header(),
                    })
                    .map_err(|e| {
                        ProduceFailure::Permanent(format!("cannot serialize auth event: {e}"))
                    })
            })
            .collect()
    }

    /// Counts the forwarded events; unusable entries and events refused for good dead-letter the record.
    fn settle(
        &self,
        _: &mut (),
        _: usize,
        item: &LogItem,
        results: &[Result<Delivery, ProduceFailure>],
        metrics: &Metrics,
    ) -> Result<(), Failure> {
        let mut problems = item.unusable.clone();
        for (p, result) in item.events.iter().zip(results) {
            match result {
                Ok(_) => metrics.incr(METRIC_EVENTS_FORWARDED),
                Err(e) => problems.push(format!(
                    "log event {}: {e}",
                    p.event.source.as_ref().map_or(0, |s| s.sub_sequence)
                )),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Failure::new(
                FailureClass::UnusableEntries,
                problems.join("; "),
            ))
        }
    }
}
