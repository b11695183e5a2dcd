//! The trigger forwarder: hands every user pool trigger event back to Cognito unchanged, after putting its
//! auth event on Kinesis within a hard time budget. It never blocks or fails a sign-in: on any error or
//! timeout the event is printed as one replayable "spilled" JSON line and counted instead.

use std::sync::Arc;
use std::time::Duration;

use bridge_core::Deadline;
use bridge_core::producer::{OutboundRecord, Producer, RecordSink};
use bridge_core::retry::Backoff;
use bridge_core::telemetry::Metrics;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use lambda_runtime::LambdaEvent;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tracing::{debug, warn};

use crate::config::TriggerConfig;
use crate::event::{AuthEvent, SCHEMA};
use crate::sharing::AttributeSharing;
use crate::trigger::{Classified, classify};

/// The function's name in metrics.
pub const FUNCTION_NAME: &str = "auth-trigger-forwarder";

/// Metric: trigger invocations.
pub const METRIC_TRIGGER_EVENTS: &str = "TriggerEvents";
/// Metric: auth events put on the stream.
pub const METRIC_EVENTS_FORWARDED: &str = "AuthEventsForwarded";
/// Metric: auth events that missed the stream and were printed as spilled lines.
pub const METRIC_EVENTS_SPILLED: &str = "AuthEventsSpilled";
/// Metric: trigger sources this forwarder does not map (passed through).
pub const METRIC_UNKNOWN_TRIGGER_SOURCES: &str = "UnknownTriggerSources";
/// Metric: inputs that are not trigger events (passed through).
pub const METRIC_UNPARSABLE_EVENTS: &str = "UnparsableTriggerEvents";

/// Metric: events sent without the attributes configured to be hashed, because the hash key could not be read
/// at cold start (the trigger fails open; see `TriggerConfig::load`).
pub const METRIC_HASHED_ATTRIBUTES_WITHHELD: &str = "HashedAttributesWithheld";

/// Every metric this function emits.
pub const METRICS: &[&str] = &[
    METRIC_TRIGGER_EVENTS,
    METRIC_EVENTS_FORWARDED,
    METRIC_EVENTS_SPILLED,
    METRIC_UNKNOWN_TRIGGER_SOURCES,
    METRIC_UNPARSABLE_EVENTS,
    METRIC_HASHED_ATTRIBUTES_WITHHELD,
];

/// Connect timeout of the trigger's Kinesis client: a dead endpoint must fail fast, well inside the budget.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);

/// The longest reason a spilled line carries.
pub const MAX_SPILL_REASON_CHARS: usize = 300;

/// What became of one invocation's auth event.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// On the stream.
    Forwarded {
        /// Its event id.
        event_id: String,
    },
    /// Not on the stream; `line` was (or is to be) printed.
    Spilled {
        /// The replayable spilled line.
        line: Value,
    },
    /// A trigger source this forwarder does not map.
    Unknown(String),
    /// Not a trigger event.
    Unparsable(String),
}

/// The trigger forwarder, with its Kinesis port.
#[derive(Debug, Clone)]
pub struct TriggerForwarder {
    producer: Producer,
    budget: Duration,
    window_ms: u64,
    sharing: AttributeSharing,
}

impl TriggerForwarder {
    /// A forwarder putting through `sink` within `budget`.
    pub fn new(
        sink: Arc<dyn RecordSink>,
        budget: Duration,
        window_ms: u64,
        sharing: AttributeSharing,
    ) -> Self {
        // A couple of quick resends of a throttled entry fit in the budget; the deadline stops them.
        let policy = Backoff {
            max_attempts: 3,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
        };
        Self {
            producer: Producer::new(sink, None, policy),
            budget,
            window_ms,
            sharing,
        }
    }

    /// The Kinesis client settings for a trigger: short connect and operation timeouts, no SDK retries, so
    /// that a dead or silent endpoint gives up inside the budget (which is enforced separately anyway).
    pub fn kinesis_config(
        sdk: &aws_config::SdkConfig,
        budget: Duration,
    ) -> aws_sdk_kinesis::config::Builder {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT.min(budget))
            .operation_attempt_timeout(budget)
            .operation_timeout(budget)
            .build();
        aws_sdk_kinesis::config::Builder::from(sdk)
            .timeout_config(timeouts)
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
    }

    /// Builds the real port from config (once per cold start).
    pub fn connect(config: &TriggerConfig, sdk: &aws_config::SdkConfig) -> Self {
        let sink = bridge_core::producer::KinesisSink::new(
            aws_sdk_kinesis::Client::from_conf(
                Self::kinesis_config(sdk, config.put_budget).build(),
            ),
            &config.output_stream,
        );
        Self::new(
            Arc::new(sink),
            config.put_budget,
            config.event_id_window_ms,
            config.sharing.clone(),
        )
    }

    /// The Lambda handler: always answers with the input event's own bytes. Cognito reads the answer as the
    /// event with its `response` object; a re-serialized copy would turn a 30-digit number in
    /// `clientMetadata` into a float and could reorder keys, so the parsed copy only feeds the auth event.
    pub async fn handle(
        &self,
        event: LambdaEvent<Box<RawValue>>,
    ) -> Result<Box<RawValue>, lambda_runtime::Error> {
        let metrics = Metrics::new();
        let input = event.payload;
        let parsed: Value = serde_json::from_str(input.get()).unwrap_or(Value::Null);
        let (_, outcome) = self.forward(parsed, Utc::now(), &metrics).await;
        if let Outcome::Spilled { line } = &outcome {
            println!("{line}");
        }
        metrics.flush(FUNCTION_NAME, METRICS);
        Ok(input)
    }

    /// Puts the auth event of `input` (invoked at `now`) and returns `input` unchanged with what happened.
    pub async fn forward(
        &self,
        input: Value,
        now: DateTime<Utc>,
        metrics: &Metrics,
    ) -> (Value, Outcome) {
        metrics.incr(METRIC_TRIGGER_EVENTS);
        let (event, partition_key) = match classify(&input, now, self.window_ms, &self.sharing) {
            Classified::Event {
                event,
                partition_key,
            } => (event, partition_key),
            Classified::Unknown(source) => {
                metrics.incr(METRIC_UNKNOWN_TRIGGER_SOURCES);
                debug!(trigger_source = %source, "trigger source not mapped; passed through");
                return (input, Outcome::Unknown(source));
            }
            Classified::Unparsable(reason) => {
                metrics.incr(METRIC_UNPARSABLE_EVENTS);
                warn!(reason = %reason, "input is not a user pool trigger event; passed through");
                return (input, Outcome::Unparsable(reason));
            }
        };
        if self.sharing.withholds_hashed() {
            metrics.incr(METRIC_HASHED_ATTRIBUTES_WITHHELD);
        }
        let data = match serde_json::to_vec(&event) {
            Ok(d) => Bytes::from(d),
            Err(e) => {
                let line = spilled_line(
                    &event,
                    &partition_key,
                    &format!("cannot serialize: {e}"),
                    &self.sharing,
                );
                metrics.incr(METRIC_EVENTS_SPILLED);
                return (input, Outcome::Spilled { line });
            }
        };
        let record = OutboundRecord {
            partition_key: partition_key.clone(),
            data,
            header: event.header(),
        };
        let send = self
            .producer
            .send(vec![record], Deadline::after(self.budget), metrics);
        let failure = match tokio::time::timeout(self.budget, send).await {
            Ok(outcomes) => match outcomes.into_iter().next() {
                Some(Ok(_)) => None,
                Some(Err(e)) => Some(e.to_string()),
                None => Some("no outcome for the record".to_owned()),
            },
            Err(_) => Some(format!(
                "kinesis put exceeded its {} ms budget",
                self.budget.as_millis()
            )),
        };
        match failure {
            None => {
                metrics.incr(METRIC_EVENTS_FORWARDED);
                debug!(event_id = %event.event_id, kind = %event.kind, "auth event forwarded");
                let event_id = event.event_id.clone();
                (input, Outcome::Forwarded { event_id })
            }
            Some(reason) => {
                metrics.incr(METRIC_EVENTS_SPILLED);
                warn!(event_id = %event.event_id, kind = %event.kind, reason = %reason, "auth event spilled to the log");
                let line = spilled_line(&event, &partition_key, &reason, &self.sharing);
                (input, Outcome::Spilled { line })
            }
        }
    }
}

/// The replayable spilled line: `{"spilled": "<schema>", "reason", "partition_key", "record": <envelope>,
/// "dropped_attributes": [names]}`. Logs must not carry PII, so the record keeps only the attributes shared
/// as hashes; shared plain-text attributes are dropped from it and named in `dropped_attributes`.
/// The reason is cut to [`MAX_SPILL_REASON_CHARS`]: SDK errors can quote whole responses.
pub fn spilled_line(
    event: &AuthEvent,
    partition_key: &str,
    reason: &str,
    sharing: &AttributeSharing,
) -> Value {
    let reason: String = reason.chars().take(MAX_SPILL_REASON_CHARS).collect();
    let mut record = event.clone();
    let mut dropped = Vec::new();
    if let Some(attrs) = record.attributes.as_mut() {
        attrs.retain(|name, _| {
            let keep = sharing.is_hashed(name);
            if !keep {
                dropped.push(name.clone());
            }
            keep
        });
    }
    json!({
        "spilled": SCHEMA,
        "reason": reason,
        "partition_key": partition_key,
        "record": record,
        "dropped_attributes": dropped,
    })
}
