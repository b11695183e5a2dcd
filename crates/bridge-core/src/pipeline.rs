//! The Kinesis batch pipeline every Kinesis-triggered function runs on:
//! decode -> resolve -> dead letters -> outputs (in order) -> produce -> settle -> dead letters -> after commit
//! -> batch response. A function supplies only its own steps, as the hooks of a [`Flow`]; the order rule, the
//! dead letters, the deadline and the batch response exist here once.
//!
//! **The order rule.** Each record has ordering keys (an identity, a user sub). Walking the batch in order, once
//! a record of a key has a transient failure, every later record carrying that key is held back *before*
//! anything of it is produced, and reported for retry with it; a held record blocks all of its own keys too.
//! A record whose outputs were sent but that follows a failure of its key (the failure showed only when the
//! producer answered) is reported as well: its outputs come again, with the same `event_id`s. Lambda
//! checkpoints at the lowest reported sequence number, so nothing after it is lost either way.
//!
//! **The deadline.** [`Deadline`] already keeps [`crate::deadline::DEADLINE_RESERVE`] back from Lambda's
//! deadline for writing dead letters and answering. Work that has not started by then does not start: records
//! still working are reported for retry, the producer sends nothing more and cuts a request in flight, and
//! [`Flow::after_commit`] is handed the same deadline (a mark not moved in time is a record retried). A
//! redelivery completes the rest; nothing is lost, at worst re-sent with the same `event_id`.
//!
//! **Dead letters.** A permanent failure sends the record, with its reason and lineage, to the dead-letter
//! bucket: once after resolving (bad input), once after settling (an output refused for good, unusable parts of
//! a record whose good parts were forwarded). A dead letter that cannot be written makes the record a retry.

use async_trait::async_trait;
use aws_lambda_events::event::streams::KinesisEventResponse;
use chrono::{DateTime, Utc};
use lambda_runtime::LambdaEvent;

use crate::Deadline;
use crate::batch::BatchReport;
use crate::dead_letter::{DeadLetter, DeadLetterWriter};
use crate::envelope::SourceRef;
use crate::failure::{Failure, FailureClass};
use crate::kinesis_event::{RawKinesisEvent, SourceRecord, decode_record};
use crate::producer::{Delivery, OutboundRecord, ProduceFailure, Producer};
use crate::telemetry::Metrics;

/// Seconds after a record's arrival past which a transient failure dead-letters it (with its data) instead of
/// retrying it; unset or 0: never. Set below the event source's `MaximumRecordAgeInSeconds`.
pub const ENV_DEAD_LETTER_AFTER_AGE_SECONDS: &str = "DEAD_LETTER_AFTER_AGE_SECONDS";

/// The give-up age of [`ENV_DEAD_LETTER_AFTER_AGE_SECONDS`]: `None` when unset or 0. At most 7 days (the
/// event source's own limit on record age, 604,800 s).
pub fn give_up_age_from_env(
    env: &impl crate::config::Env,
) -> Result<Option<std::time::Duration>, crate::config::ConfigError> {
    let secs = crate::config::in_range(
        ENV_DEAD_LETTER_AFTER_AGE_SECONDS,
        crate::config::parsed_or(env, ENV_DEAD_LETTER_AFTER_AGE_SECONDS, 0u64)?,
        0..=604_800,
    )?;
    Ok((secs > 0).then(|| std::time::Duration::from_secs(secs)))
}

/// Whether the function reads KPL-aggregated records: `accept` or `refuse`. Unset: the function's default
/// ([`Aggregates`]).
pub const ENV_KPL_AGGREGATES: &str = "KPL_AGGREGATES";
/// The most user records one accepted aggregate may hold; an aggregate with more is a dead letter.
pub const ENV_KPL_MAX_USER_RECORDS: &str = "KPL_MAX_USER_RECORDS";
/// The default of [`ENV_KPL_MAX_USER_RECORDS`]. The KPL's own default aggregate is at most 51,200 bytes
/// (`AggregationMaxSize`), about a thousand small records; a record holding more is not what a KPL sends by
/// default, and each user record costs the function a slot and its outputs.
pub const DEFAULT_MAX_USER_RECORDS: usize = 1_000;

/// Whether KPL-aggregated records are read. An aggregate lets one Kinesis record carry many user records: on a
/// stream that untrusted clients write (the app event stream), one record could become thousands of outputs
/// past every per-record cap and the stream's per-shard write limits, so such a function refuses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregates {
    /// An aggregate is a dead letter that says why.
    Refuse,
    /// Each user record is a record of its own (every per-record cap applies to it), up to a number per aggregate.
    Accept {
        /// An aggregate with more user records is a dead letter.
        max_user_records: usize,
    },
}

impl Aggregates {
    /// Accepted, up to [`DEFAULT_MAX_USER_RECORDS`] user records each.
    pub const ACCEPT: Self = Self::Accept {
        max_user_records: DEFAULT_MAX_USER_RECORDS,
    };
}

/// How a function's pipeline treats its input, read from the environment once, at cold start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// See [`ENV_DEAD_LETTER_AFTER_AGE_SECONDS`].
    pub give_up_age: Option<std::time::Duration>,
    /// See [`ENV_KPL_AGGREGATES`].
    pub aggregates: Aggregates,
}

impl Settings {
    /// Reads [`ENV_DEAD_LETTER_AFTER_AGE_SECONDS`], [`ENV_KPL_AGGREGATES`] and [`ENV_KPL_MAX_USER_RECORDS`];
    /// `aggregates` is the function's default when [`ENV_KPL_AGGREGATES`] is unset.
    pub fn from_env(
        env: &impl crate::config::Env,
        aggregates: Aggregates,
    ) -> Result<Self, crate::config::ConfigError> {
        let max_user_records = crate::config::ranged(
            env,
            ENV_KPL_MAX_USER_RECORDS,
            DEFAULT_MAX_USER_RECORDS,
            1..=100_000,
        )?;
        let accept = match crate::config::optional(env, ENV_KPL_AGGREGATES).as_deref() {
            None => matches!(aggregates, Aggregates::Accept { .. }),
            Some("accept") => true,
            Some("refuse") => false,
            Some(other) => {
                return Err(crate::config::ConfigError::Invalid {
                    var: ENV_KPL_AGGREGATES,
                    reason: format!("'{other}' is neither 'accept' nor 'refuse'"),
                });
            }
        };
        Ok(Self {
            give_up_age: give_up_age_from_env(env)?,
            aggregates: if accept {
                Aggregates::Accept { max_user_records }
            } else {
                Aggregates::Refuse
            },
        })
    }
}

/// Metric: source records in the batch.
pub const METRIC_RECORDS_IN: &str = "RecordsIn";
/// Metric: source records written to the dead-letter bucket.
pub const METRIC_DEAD_LETTERED: &str = crate::dead_letter::METRIC_DEAD_LETTERED;
/// Metric: source records reported back to Lambda for retry.
pub const METRIC_BATCH_ITEM_FAILURES: &str = "BatchItemFailures";
/// The metrics every pipeline emits.
pub const COMMON_METRICS: [&str; 3] = [
    METRIC_RECORDS_IN,
    METRIC_DEAD_LETTERED,
    METRIC_BATCH_ITEM_FAILURES,
];

/// What a function's decode hook makes of one record's data.
#[derive(Debug)]
pub struct Decoded<T> {
    /// The record's ordering keys (known even when the record cannot be used, so that a retry blocks them).
    pub order_keys: Vec<String>,
    /// The record's working state, or why it cannot be used.
    pub result: Result<T, Failure>,
}

impl<T> Decoded<T> {
    /// A usable record.
    pub fn item(order_keys: Vec<String>, item: T) -> Self {
        Self {
            order_keys,
            result: Ok(item),
        }
    }

    /// A record that cannot be used.
    pub fn failed(order_keys: Vec<String>, failure: Failure) -> Self {
        Self {
            order_keys,
            result: Err(failure),
        }
    }
}

#[derive(Debug)]
enum State<T> {
    Working(T),
    DeadLetter(Failure),
    DeadLettered,
    Retry(Failure),
    Done,
}

/// One source record in the pipeline: its lineage, its bytes for a dead letter, its keys and its state.
#[derive(Debug)]
pub struct Slot<T> {
    source: SourceRef,
    arrival: Option<DateTime<Utc>>,
    data: Option<Vec<u8>>,
    raw: Option<serde_json::Value>,
    partition_key: Option<String>,
    payload: Option<(bytes::Bytes, bool)>,
    order_keys: Vec<String>,
    state: State<T>,
    results: Vec<Option<Result<Delivery, ProduceFailure>>>,
}

impl<T> Slot<T> {
    /// Where the record came from.
    pub fn source(&self) -> &SourceRef {
        &self.source
    }

    /// When Kinesis received it.
    pub fn arrival(&self) -> Option<DateTime<Utc>> {
        self.arrival
    }

    /// Its ordering keys.
    pub fn order_keys(&self) -> &[String] {
        &self.order_keys
    }

    /// Its working state, while it is still working.
    pub fn item(&self) -> Option<&T> {
        match &self.state {
            State::Working(item) => Some(item),
            _ => None,
        }
    }

    /// Its working state, mutably, while it is still working.
    pub fn item_mut(&mut self) -> Option<&mut T> {
        match &mut self.state {
            State::Working(item) => Some(item),
            _ => None,
        }
    }

    /// Whether it is still working.
    pub fn is_working(&self) -> bool {
        matches!(self.state, State::Working(_))
    }

    /// Fails a working record: a permanent failure dead-letters it, a transient one retries it.
    pub fn fail(&mut self, failure: Failure) {
        if self.is_working() {
            self.state = if failure.is_transient() {
                State::Retry(failure)
            } else {
                State::DeadLetter(failure)
            };
        }
    }

    /// Keeps what the record points to (a fetched S3Url payload, `truncated` when it was cut at a cap): should
    /// the record be dead-lettered, its dead letter carries it, so that nothing depends on a URL that expires.
    pub fn attach_payload(&mut self, payload: bytes::Bytes, truncated: bool) {
        self.payload = Some((payload, truncated));
    }

    fn is_blocked(&self, report: &BatchReport) -> bool {
        self.order_keys.iter().any(|k| report.is_blocked(k))
    }

    fn block_keys(&self, report: &mut BatchReport) {
        for key in &self.order_keys {
            report.block(key);
        }
    }
}

/// A function's own steps. Every hook sees the whole batch or one record in batch order; none reaches back.
#[async_trait]
pub trait Flow: Send + Sync {
    /// A record's working state, from decode to settle.
    type Item: Send + Sync;
    /// The batch's own state, from resolve to after-commit (for example the marks loaded and moved).
    type Plan: Send;

    /// The function's name, in metrics and dead-letter keys.
    const FUNCTION: &'static str;
    /// Every metric the function emits: its EMF line lists them all, with explicit zeros.
    const METRICS: &'static [&'static str];

    /// The shared pipeline the function runs on (its producer and dead-letter writer).
    fn pipeline(&self) -> &Pipeline;

    /// The Lambda handler: runs the batch, prints its metrics, answers with the partial batch response.
    async fn handle(
        &self,
        event: LambdaEvent<RawKinesisEvent>,
    ) -> Result<KinesisEventResponse, lambda_runtime::Error>
    where
        Self: Sized,
    {
        self.pipeline().handle(self, event).await
    }

    /// Runs one batch (tests and local runs, with a deadline and metrics of their own).
    async fn process(
        &self,
        event: RawKinesisEvent,
        deadline: Deadline,
        metrics: &Metrics,
    ) -> KinesisEventResponse
    where
        Self: Sized,
    {
        self.pipeline().run(self, event, deadline, metrics).await
    }

    /// Reads one record's data (already base64-decoded).
    fn decode(&self, record: &SourceRecord, metrics: &Metrics) -> Decoded<Self::Item>;

    /// Batch-level work over the records still working, before anything is produced: fetching payloads,
    /// loading marks, enrichment. Fails the records it cannot resolve ([`Slot::fail`]).
    async fn resolve(
        &self,
        slots: &mut [Slot<Self::Item>],
        deadline: Deadline,
        metrics: &Metrics,
    ) -> Self::Plan;

    /// One record's outputs, called in batch order for every record not held back. An `Err` is an output
    /// that can never be produced (it reaches [`Flow::settle`] as it is).
    fn outputs(
        &self,
        plan: &mut Self::Plan,
        item: &mut Self::Item,
        metrics: &Metrics,
    ) -> Vec<Result<OutboundRecord, ProduceFailure>>;

    /// A record none of whose outputs failed transiently: one result per output, in the order
    /// [`Flow::outputs`] gave them. `Err` dead-letters the record (its good outputs are on the stream).
    fn settle(
        &self,
        plan: &mut Self::Plan,
        index: usize,
        item: &Self::Item,
        results: &[Result<Delivery, ProduceFailure>],
        metrics: &Metrics,
    ) -> Result<(), Failure>;

    /// What to do once the outputs of settled records are durable (for example move marks). Returns the
    /// records (by index) that are not finished after all: they are reported for retry.
    async fn after_commit(
        &self,
        _plan: Self::Plan,
        _deadline: Deadline,
        _metrics: &Metrics,
    ) -> Vec<(usize, Failure)> {
        Vec::new()
    }
}

/// The shared pipeline: a producer and a dead-letter writer.
#[derive(Debug, Clone)]
pub struct Pipeline {
    producer: Producer,
    dead_letters: DeadLetterWriter,
    give_up_age: Option<std::time::Duration>,
    aggregates: Aggregates,
}

impl Pipeline {
    /// A pipeline producing through `producer`, dead-lettering through `dead_letters`.
    pub fn new(producer: Producer, dead_letters: DeadLetterWriter) -> Self {
        Self {
            producer,
            dead_letters,
            give_up_age: None,
            aggregates: Aggregates::ACCEPT,
        }
    }

    /// The pipeline with the settings read from the environment.
    pub fn with_settings(self, settings: Settings) -> Self {
        self.with_give_up_age(settings.give_up_age)
            .with_aggregates(settings.aggregates)
    }

    /// Whether KPL aggregates are read (by default: accepted, up to [`DEFAULT_MAX_USER_RECORDS`] each).
    pub fn with_aggregates(mut self, aggregates: Aggregates) -> Self {
        self.aggregates = aggregates;
        self
    }

    /// Records older than `age` (since Kinesis received them) that would be retried are dead-lettered instead,
    /// with their data: set it below the event source's `MaximumRecordAgeInSeconds`, past which Lambda drops a
    /// failing record and sends only its metadata to the on-failure destination.
    pub fn with_give_up_age(mut self, age: Option<std::time::Duration>) -> Self {
        self.give_up_age = age;
        self
    }

    /// The Lambda handler of `flow`: runs the batch, prints its metrics as one EMF line, answers with the
    /// partial batch response.
    pub async fn handle<F: Flow>(
        &self,
        flow: &F,
        event: LambdaEvent<RawKinesisEvent>,
    ) -> Result<KinesisEventResponse, lambda_runtime::Error> {
        let metrics = Metrics::new();
        let deadline = Deadline::from_lambda_deadline_ms(event.context.deadline);
        let response = self.run(flow, event.payload, deadline, &metrics).await;
        metrics.flush(F::FUNCTION, F::METRICS);
        Ok(response)
    }

    /// Runs one batch through `flow`.
    pub async fn run<F: Flow>(
        &self,
        flow: &F,
        event: RawKinesisEvent,
        deadline: Deadline,
        metrics: &Metrics,
    ) -> KinesisEventResponse {
        metrics.add(METRIC_RECORDS_IN, event.records.len() as u64);
        let mut slots: Vec<Slot<F::Item>> = Vec::with_capacity(event.records.len());
        for raw in event.records {
            decode(flow, raw, self.aggregates, metrics, &mut slots);
        }
        let mut plan = flow.resolve(&mut slots, deadline, metrics).await;
        self.write_dead_letters(F::FUNCTION, &mut slots, metrics)
            .await;
        if deadline.remaining() == Some(std::time::Duration::ZERO) {
            for slot in &mut slots {
                slot.fail(Failure::new(
                    FailureClass::Deadline,
                    "not produced before the invocation deadline",
                ));
            }
        }
        let outbound = outputs(flow, &mut plan, &mut slots, metrics);
        // Each output with its group (its record's index), and its owner: (record index, output index).
        let mut records: Vec<(OutboundRecord, usize)> = Vec::with_capacity(outbound.len());
        let mut owners: Vec<(usize, usize)> = Vec::with_capacity(outbound.len());
        for (record, (i, k)) in outbound {
            records.push((record, i));
            owners.push((i, k));
        }
        // Each output's group is its record: a key's outputs of later records wait behind an earlier failure.
        let results = self
            .producer
            .send_in_order(records, deadline, metrics)
            .await;
        // Outcomes go back to their records by index, whatever order they were sent or answered in.
        for ((i, k), result) in owners.into_iter().zip(results) {
            slots[i].results[k] = Some(result);
        }
        let mut report = settle(flow, &mut plan, &mut slots, metrics);
        for (i, failure) in flow.after_commit(plan, deadline, metrics).await {
            if let Some(slot) = slots.get_mut(i) {
                slot.state = State::Retry(failure);
            }
        }
        if let Some(age) = self.give_up_age {
            give_up_on_old_retries(&mut slots, age, Utc::now());
        }
        self.write_dead_letters(F::FUNCTION, &mut slots, metrics)
            .await;
        for slot in &slots {
            if let State::Retry(failure) = &slot.state {
                if slot.source.sequence_number.is_empty() {
                    report.retry_whole_batch();
                }
                report.retry_record(&slot.source.sequence_number);
                tracing::info!(shard = %slot.source.shard_id, sequence_number = %slot.source.sequence_number, class = %failure.class, reason = %failure.detail, "record will be retried");
            }
        }
        metrics.add(METRIC_BATCH_ITEM_FAILURES, report.retry_count() as u64);
        report.into_response()
    }

    /// Writes the dead letters of every record whose state calls for one, and moves each on: dead-lettered
    /// (counted) or, when the write failed, to be retried. Logs carry position and class, never data.
    async fn write_dead_letters<T>(
        &self,
        function: &str,
        slots: &mut [Slot<T>],
        metrics: &Metrics,
    ) {
        let letters: Vec<((usize, FailureClass), DeadLetter)> = slots
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| {
                let State::DeadLetter(failure) = &slot.state else {
                    return None;
                };
                let letter = DeadLetter::for_record(
                    function,
                    &slot.source,
                    slot.arrival,
                    slot.data.as_deref(),
                    slot.raw.as_ref(),
                    failure.detail.clone(),
                )
                .with_payload(
                    slot.payload.as_ref().map(|(p, _)| &p[..]),
                    slot.payload.as_ref().is_some_and(|(_, cut)| *cut),
                )
                .with_partition_key(slot.partition_key.as_deref());
                Some(((i, failure.class), letter))
            })
            .collect();
        if letters.is_empty() {
            return;
        }
        for ((i, class), result) in self.dead_letters.write_all(letters).await {
            let slot = &mut slots[i];
            let s = &slot.source;
            match result {
                Ok(key) => {
                    metrics.incr(METRIC_DEAD_LETTERED);
                    tracing::warn!(shard = %s.shard_id, sequence_number = %s.sequence_number, class = %class, object = %key, "record dead-lettered");
                    slot.state = State::DeadLettered;
                }
                Err(e) => {
                    tracing::warn!(shard = %s.shard_id, sequence_number = %s.sequence_number, class = %class, error = %e, "dead letter write failed; record will be retried");
                    slot.state = State::Retry(Failure::new(
                        FailureClass::DeadLetterUnwritten,
                        format!("dead letter write failed: {e}"),
                    ));
                }
            }
        }
    }
}

/// Decodes one Kinesis record into its slots: one, or one per user record of a KPL aggregate (each with its
/// own partition key and `user_record` lineage, all reported by the aggregate's sequence number: a retry of one
/// redelivers the aggregate, and the siblings come again with their same `event_id`s). An aggregate the
/// function refuses, or one with more user records than it accepts, is one dead letter that says why.
fn decode<F: Flow>(
    flow: &F,
    raw: serde_json::Value,
    aggregates: Aggregates,
    metrics: &Metrics,
    slots: &mut Vec<Slot<F::Item>>,
) {
    let record = match decode_record(raw) {
        Ok(record) => record,
        Err(u) => {
            let u = *u;
            slots.push(Slot {
                source: u.source,
                arrival: u.arrival,
                data: None,
                raw: Some(u.raw),
                partition_key: None,
                payload: None,
                order_keys: Vec::new(),
                state: State::DeadLetter(Failure::new(
                    FailureClass::UndecodableKinesisRecord,
                    u.reason,
                )),
                results: Vec::new(),
            });
            return;
        }
    };
    let refused = |record: SourceRecord, reason: String| {
        slot_of(
            record,
            Vec::new(),
            State::DeadLetter(Failure::new(FailureClass::UndecodableKinesisRecord, reason)),
        )
    };
    let max_user_records = match aggregates {
        Aggregates::Accept { max_user_records } => max_user_records,
        Aggregates::Refuse => {
            if crate::kpl::is_aggregated(&record.data) {
                let reason = format!(
                    "KPL-aggregated record refused: {} does not accept aggregates ({ENV_KPL_AGGREGATES}=refuse)",
                    F::FUNCTION
                );
                slots.push(refused(record, reason));
            } else {
                slots.push(decode_one(flow, record, metrics));
            }
            return;
        }
    };
    match crate::kpl::deaggregate(&record.data) {
        None => slots.push(decode_one(flow, record, metrics)),
        Some(Err(e)) => slots.push(refused(record, e.to_string())),
        Some(Ok(users)) if users.len() > max_user_records => {
            let reason = format!(
                "KPL-aggregated record refused: {} user records, more than the {max_user_records} one aggregate may \
                 hold ({ENV_KPL_MAX_USER_RECORDS})",
                users.len()
            );
            slots.push(refused(record, reason));
        }
        Some(Ok(users)) => {
            for (j, user) in users.into_iter().enumerate() {
                let one = SourceRecord {
                    source: crate::envelope::SourceRef {
                        user_record: Some(u32::try_from(j).unwrap_or(u32::MAX)),
                        ..record.source.clone()
                    },
                    partition_key: user.partition_key,
                    arrival: record.arrival,
                    data: user.data,
                };
                slots.push(decode_one(flow, one, metrics));
            }
        }
    }
}

fn decode_one<F: Flow>(flow: &F, record: SourceRecord, metrics: &Metrics) -> Slot<F::Item> {
    let decoded = flow.decode(&record, metrics);
    let state = match decoded.result {
        Ok(item) => State::Working(item),
        Err(f) if f.is_transient() => State::Retry(f),
        Err(f) => State::DeadLetter(f),
    };
    slot_of(record, decoded.order_keys, state)
}

/// The slot of a decoded record (its data kept for a dead letter).
fn slot_of<T>(record: SourceRecord, order_keys: Vec<String>, state: State<T>) -> Slot<T> {
    Slot {
        state,
        order_keys,
        source: record.source,
        arrival: record.arrival,
        data: Some(record.data),
        raw: None,
        partition_key: Some(record.partition_key),
        payload: None,
        results: Vec::new(),
    }
}

/// Walks the batch in order applying the order rule, and gathers the outputs of every record not held back,
/// each with its owner: (record index, output index).
fn outputs<F: Flow>(
    flow: &F,
    plan: &mut F::Plan,
    slots: &mut [Slot<F::Item>],
    metrics: &Metrics,
) -> Vec<(OutboundRecord, (usize, usize))> {
    let mut keys = BatchReport::new();
    let mut outbound = Vec::new();
    for (i, slot) in slots.iter_mut().enumerate() {
        if matches!(slot.state, State::DeadLettered) {
            continue;
        }
        if slot.is_blocked(&keys) {
            if slot.is_working() {
                slot.state = State::Retry(held_back());
            }
            slot.block_keys(&mut keys);
            continue;
        }
        match &mut slot.state {
            State::Retry(_) => slot.block_keys(&mut keys),
            State::Working(item) => {
                let outs = flow.outputs(plan, item, metrics);
                slot.results = Vec::with_capacity(outs.len());
                for (k, out) in outs.into_iter().enumerate() {
                    match out {
                        Ok(record) => {
                            slot.results.push(None);
                            outbound.push((record, (i, k)));
                        }
                        Err(failure) => slot.results.push(Some(Err(failure))),
                    }
                }
            }
            State::DeadLetter(_) | State::DeadLettered | State::Done => {}
        }
    }
    outbound
}

/// Decides each record's fate once the producer has answered, applying the order rule again: a transient
/// output failure retries the record and blocks its keys for the records after it.
fn settle<F: Flow>(
    flow: &F,
    plan: &mut F::Plan,
    slots: &mut [Slot<F::Item>],
    metrics: &Metrics,
) -> BatchReport {
    let mut report = BatchReport::new();
    for (i, slot) in slots.iter_mut().enumerate() {
        if matches!(slot.state, State::DeadLettered | State::DeadLetter(_)) {
            continue;
        }
        if slot.is_blocked(&report) {
            if !matches!(slot.state, State::Retry(_)) {
                slot.state = State::Retry(held_back());
            }
            slot.block_keys(&mut report);
            continue;
        }
        let results: Vec<Result<Delivery, ProduceFailure>> = std::mem::take(&mut slot.results)
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(ProduceFailure::Transient("no outcome".into()))))
            .collect();
        let next = match &slot.state {
            State::Retry(_) => None,
            State::Working(item) => {
                match results.iter().find_map(|r| match r {
                    Err(ProduceFailure::Transient(reason)) => Some(reason),
                    _ => None,
                }) {
                    Some(reason) => Some(State::Retry(Failure::new(
                        FailureClass::Unavailable,
                        reason,
                    ))),
                    None => Some(match flow.settle(plan, i, item, &results, metrics) {
                        Ok(()) => State::Done,
                        Err(failure) => State::DeadLetter(failure),
                    }),
                }
            }
            State::DeadLetter(_) | State::DeadLettered | State::Done => continue,
        };
        if let Some(next) = next {
            slot.state = next;
        }
        if matches!(slot.state, State::Retry(_)) {
            slot.block_keys(&mut report);
        }
    }
    report
}

/// Turns every retry of a record older than `age` into a dead letter that keeps its data and says why.
fn give_up_on_old_retries<T>(slots: &mut [Slot<T>], age: std::time::Duration, now: DateTime<Utc>) {
    let Ok(age) = chrono::Duration::from_std(age) else {
        return;
    };
    for slot in slots.iter_mut() {
        let State::Retry(failure) = &slot.state else {
            continue;
        };
        if slot.arrival.is_some_and(|arrived| now - arrived > age) {
            let detail = format!(
                "still failing {} s after it arrived (limit {} s), last failure ({}): {}",
                (now - slot.arrival.unwrap_or(now)).num_seconds(),
                age.num_seconds(),
                failure.class,
                failure.detail
            );
            slot.state = State::DeadLetter(Failure::new(FailureClass::RetriedTooLong, detail));
        }
    }
}

fn held_back() -> Failure {
    Failure::new(
        FailureClass::HeldBack,
        "held: an earlier record with the same ordering key is retried first",
    )
}

#[cfg(test)]
mod tests;
