//! The app event forwarder's own steps on the shared pipeline ([`bridge_core::pipeline`]): read one record
//! an app wrote through Amplify's Kinesis provider (either input shape, see [`crate::input`]), check and
//! normalize it ([`crate::event`]), and put one `app-event/v1` record on the output stream, partitioned by the
//! anonymous id (the install), else the user. A record that cannot be used is dead-lettered with its reason and the batch
//! goes on; repeats inside a batch (the same `event_id`) are sent once. The ordering key is the partition key.

use std::collections::{HashMap, HashSet};
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

use crate::config::{Config, ENV_MAX_OUTPUT_BYTES, ENV_MAX_OUTPUT_EVENTS};
use crate::event::{AppEvent, Limits, normalize};
use crate::input::parse;

/// The function's name in metrics and dead-letter keys.
pub const FUNCTION_NAME: &str = "app-event-forwarder";

/// Metric: app events put on the output stream.
pub const METRIC_EVENTS_FORWARDED: &str = "AppEventsForwarded";
/// Metric: repeats of an event already sent in the same batch.
pub const METRIC_DUPLICATES_DROPPED: &str = "DuplicatesDropped";
/// Metric: events whose time was corrected by a client clock offset of more than a minute.
pub const METRIC_CLOCK_CORRECTED: &str = "ClockCorrected";

/// Every metric this function emits.
pub const METRICS: &[&str] = &[
    pipeline::METRIC_RECORDS_IN,
    METRIC_EVENTS_FORWARDED,
    METRIC_DUPLICATES_DROPPED,
    METRIC_CLOCK_CORRECTED,
    pipeline::METRIC_DEAD_LETTERED,
    pipeline::METRIC_BATCH_ITEM_FAILURES,
    producer::METRIC_PUT_RECORDS_CALLS,
    producer::METRIC_RECORDS_RETRIED,
];

/// One record's data (one user record of an aggregate, when aggregates are accepted) to its `app-event/v1`s (one;
/// a `PutEvents` body gives one per event), or why it cannot be used: the whole path of a record short of the
/// stream (size cap, shape, parse, checks, clock correction, ids). A record is used whole or not at all: one bad
/// event of a `PutEvents` body dead-letters the body, whose dead letter keeps it for a replay once mended. Pure:
/// the property tests and the fuzz target drive it with any bytes and any arrival.
pub fn read(record: &SourceRecord, limits: &Limits) -> Result<Vec<AppEvent>, String> {
    read_counted(record, limits).map(|read| read.events)
}

/// One record's events and the bytes of their output JSON.
#[derive(Debug)]
pub struct Read {
    /// The events, as they go on the stream.
    pub events: Vec<AppEvent>,
    /// The bytes of their `app-event/v1` JSON, all together.
    pub output_bytes: usize,
}

/// Counts what is written to it.
struct Count(usize);

impl std::io::Write for Count {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The bytes of an event's output JSON (what [`outbound`] puts on the stream), counted without being kept.
fn output_bytes(event: &AppEvent) -> usize {
    let mut count = Count(0);
    // An app event always serializes (strings, finite numbers); a failure would count what was written.
    let _ = serde_json::to_writer(&mut count, event);
    count.0
}

/// Why a record, or a KPL aggregate's user records together, may not become `events` events of `bytes` bytes.
fn over_output_caps(events: usize, bytes: usize, limits: &Limits) -> Option<String> {
    (events > limits.max_output_events || bytes > limits.max_output_bytes).then(|| {
        format!(
            "{events} events of {bytes} bytes of output; one Kinesis record may become at most {} events and {} \
             bytes ({ENV_MAX_OUTPUT_EVENTS}, {ENV_MAX_OUTPUT_BYTES})",
            limits.max_output_events, limits.max_output_bytes
        )
    })
}

/// [`read`], with the bytes of the output counted and held to [`Limits::max_output_bytes`] and
/// [`Limits::max_output_events`]: the outputs of one record are bounded whatever it holds (every event of a
/// `PutEvents` body carries a copy of its endpoint's traits and context, so a body within the record size cap
/// could otherwise become megabytes).
pub fn read_counted(record: &SourceRecord, limits: &Limits) -> Result<Read, String> {
    let events = read_events(record, limits)?;
    let bytes = events.iter().map(output_bytes).sum();
    if let Some(reason) = over_output_caps(events.len(), bytes, limits) {
        let shape = events.first().map_or("?", |e| e.context.input_shape);
        return Err(format!("app event ({shape}): the record becomes {reason}"));
    }
    Ok(Read {
        events,
        output_bytes: bytes,
    })
}

fn read_events(record: &SourceRecord, limits: &Limits) -> Result<Vec<AppEvent>, String> {
    // The size is checked before parsing: a huge record is refused without being read.
    if record.data.len() > limits.max_record_bytes {
        return Err(format!(
            "record of {} bytes is over the {}-byte limit of an app event",
            record.data.len(),
            limits.max_record_bytes
        ));
    }
    let events = parse(&record.data, &record.partition_key).map_err(|e| e.to_string())?;
    let received = record.arrival.unwrap_or_else(chrono::Utc::now);
    let many = events.len() > 1;
    events
        .into_iter()
        .map(|client| {
            let (shape, index) = (client.shape, client.index);
            normalize(client, received, &record.source, limits).map_err(|e| {
                let shape = shape.map_or("?", crate::input::Shape::name);
                if many {
                    format!("app event ({shape}) {index}: {e}")
                } else {
                    format!("app event ({shape}): {e}")
                }
            })
        })
        .collect()
}

/// One event's output record, partitioned by the anonymous id (the install), else the user.
pub fn outbound(event: &AppEvent) -> Result<OutboundRecord, ProduceFailure> {
    let Some(key) = event.partition_key() else {
        return Err(ProduceFailure::Permanent(
            "app event has no partition key".into(),
        ));
    };
    let header = bridge_core::envelope::Header {
        schema: event.schema.to_owned(),
        event_id: event.event_id.clone(),
        kind: event.kind.to_owned(),
        timestamp: event.timestamp.clone(),
        received_at: Some(event.received_at.clone()),
        source: event.source.clone(),
    };
    serde_json::to_vec(event)
        .map(|data| OutboundRecord {
            partition_key: key.to_owned(),
            data: Bytes::from(data),
            header,
        })
        .map_err(|e| ProduceFailure::Permanent(format!("cannot serialize app event: {e}")))
}

/// The app event forwarder, with its ports.
#[derive(Debug, Clone)]
pub struct AppEventForwarder {
    pipeline: Pipeline,
    limits: Limits,
}

impl AppEventForwarder {
    /// A forwarder over the given ports.
    pub fn new(producer: Producer, dead_letters: DeadLetterWriter, limits: Limits) -> Self {
        Self {
            pipeline: Pipeline::new(producer, dead_letters)
                .with_aggregates(bridge_core::pipeline::Aggregates::Refuse),
            limits,
        }
    }

    /// Builds the real ports from config (once per cold start). The Kinesis client does not retry underneath
    /// the producer.
    pub fn connect(config: &Config, sdk: &aws_config::SdkConfig, s3: aws_sdk_s3::Client) -> Self {
        let sink = Arc::new(KinesisSink::new(
            aws_sdk_kinesis::Client::new(&bridge_core::aws::own_retries(sdk)),
            &config.output_stream,
        ));
        let policy = Backoff {
            max_attempts: config.put_max_attempts,
            ..Backoff::default()
        };
        Self::new(
            Producer::new(sink, None, policy),
            DeadLetterWriter::new(Arc::new(S3BlobStore::new(s3)), &config.dead_letter_bucket),
            config.limits,
        )
        .with_settings(config.pipeline)
    }

    /// The same forwarder with the pipeline's settings (give-up age, KPL aggregates; see
    /// [`Pipeline::with_settings`]). [`AppEventForwarder::new`] refuses aggregates, as the default config does.
    pub fn with_settings(mut self, settings: bridge_core::pipeline::Settings) -> Self {
        self.pipeline = self.pipeline.with_settings(settings);
        self
    }
}

#[async_trait]
impl Flow for AppEventForwarder {
    type Item = Read;
    /// The event ids already sent in this batch.
    type Plan = HashSet<String>;

    const FUNCTION: &'static str = FUNCTION_NAME;
    const METRICS: &'static [&'static str] = METRICS;

    fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    fn decode(&self, record: &SourceRecord, metrics: &Metrics) -> Decoded<Read> {
        match read_counted(record, &self.limits) {
            Ok(read) => {
                let mut keys: Vec<String> = Vec::with_capacity(read.events.len());
                for event in &read.events {
                    if event.clock.offset_ms.is_some_and(|o| o.abs() > 60_000) {
                        metrics.incr(METRIC_CLOCK_CORRECTED);
                    }
                    if let Some(key) = event.partition_key()
                        && !keys.iter().any(|k| k == key)
                    {
                        keys.push(key.to_owned());
                    }
                }
                Decoded::item(keys, read)
            }
            Err(reason) => Decoded::failed(
                Vec::new(),
                Failure::new(FailureClass::InvalidAppEvent, reason),
            ),
        }
    }

    /// The output caps over a KPL aggregate's user records together (decode sees one user record at a time):
    /// where aggregates are accepted, one Kinesis record of up to 1 MiB holds up to `KPL_MAX_USER_RECORDS` user
    /// records, each maybe a `PutEvents` body of 100 events. An aggregate whose user records together would become
    /// more than [`Limits::max_output_events`] events or [`Limits::max_output_bytes`] bytes is refused whole:
    /// each of its user records is dead-lettered with the reason (each a record of its own, for a replay).
    async fn resolve(&self, slots: &mut [Slot<Read>], _: Deadline, _: &Metrics) -> HashSet<String> {
        let aggregate = |slot: &Slot<Read>| {
            let s = slot.source();
            s.user_record
                .map(|_| (s.shard_id.clone(), s.sequence_number.clone()))
        };
        // Per aggregate: its user records, and the events and bytes of those still working.
        let mut totals: HashMap<(String, String), (usize, usize, usize)> = HashMap::new();
        for slot in slots.iter() {
            if let Some(key) = aggregate(slot) {
                let total = totals.entry(key).or_default();
                total.0 += 1;
                if let Some(read) = slot.item() {
                    total.1 += read.events.len();
                    total.2 += read.output_bytes;
                }
            }
        }
        for slot in slots.iter_mut() {
            let Some(key) = aggregate(slot) else { continue };
            let Some(&(users, events, bytes)) = totals.get(&key) else {
                continue;
            };
            if let Some(reason) = over_output_caps(events, bytes, &self.limits) {
                slot.fail(Failure::new(
                    FailureClass::InvalidAppEvent,
                    format!("KPL-aggregated record refused: its {users} user records together become {reason}"),
                ));
            }
        }
        HashSet::new()
    }

    fn outputs(
        &self,
        sent: &mut HashSet<String>,
        read: &mut Read,
        metrics: &Metrics,
    ) -> Vec<Result<OutboundRecord, ProduceFailure>> {
        let mut out = Vec::with_capacity(read.events.len());
        for event in &read.events {
            if !sent.insert(event.event_id.clone()) {
                metrics.incr(METRIC_DUPLICATES_DROPPED);
                continue;
            }
            out.push(outbound(event));
        }
        out
    }

    fn settle(
        &self,
        _: &mut HashSet<String>,
        _: usize,
        _: &Read,
        results: &[Result<Delivery, ProduceFailure>],
        metrics: &Metrics,
    ) -> Result<(), Failure> {
        for result in results {
            match result {
                Ok(_) => metrics.incr(METRIC_EVENTS_FORWARDED),
                Err(e) => return Err(Failure::new(FailureClass::OutputRejected, e)),
            }
        }
        Ok(())
    }
}
