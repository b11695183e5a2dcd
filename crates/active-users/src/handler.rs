//! The rollup's own steps on the shared pipeline ([`bridge_core::pipeline`]): read each record as an activity,
//! then per lane (a shard of its stream): skip what the lane already committed, read the actors' histories, plan
//! ([`crate::plan`]), write the histories that change and the markers of events counted by marker, and commit the
//! lane's counters with its new position in one transaction. Then publish the lane's figures of every day it
//! changed, one JSON line per scope and day, from the table (what the dashboard reads). It puts no records on a
//! stream. A record that is neither an auth nor an app event is dead-lettered with its reason; one the table
//! refuses for good (validation, an item too large, a missing table) too; a record whose writes failed otherwise
//! is retried, with every record after it in its lane (the lane's position only moves over a prefix).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use bridge_core::Deadline;
use bridge_core::blob::S3BlobStore;
use bridge_core::dead_letter::DeadLetterWriter;
use bridge_core::failure::{Failure, FailureClass};
use bridge_core::kinesis_event::SourceRecord;
use bridge_core::pipeline::{self, Decoded, Flow, Pipeline, Slot};
use bridge_core::producer::{Delivery, NoOutputs, OutboundRecord, ProduceFailure, Producer};
use bridge_core::retry::Backoff;
use bridge_core::telemetry::Metrics;
use chrono::NaiveDate;
use futures_util::StreamExt as _;

use crate::activity::{self, Activity, read};
use crate::config::Config;
use crate::lane::{Position, lane_of};
use crate::plan::{self, ActorKey, Rules};
use crate::store::{Marker, RollupStore, StoreError};

/// The function's name in metrics and dead-letter keys.
pub const FUNCTION_NAME: &str = "active-users";

/// Metric: histories written (an actor's first activity of a day in some scope, or new dimension values).
pub const METRIC_HISTORIES_WRITTEN: &str = "HistoriesWritten";
/// Metric: event markers written (events of an actor already active that day, and events without an actor).
pub const METRIC_MARKERS_WRITTEN: &str = "MarkersWritten";
/// Metric: events whose marker existed (repeats: not counted again).
pub const METRIC_REPEATS: &str = "RepeatsNotCounted";
/// Metric: lane commits.
pub const METRIC_COMMITS: &str = "Commits";
/// Metric: records at or below their lane's committed position (a redelivery: nothing to do).
pub const METRIC_ALREADY_COMMITTED: &str = "RecordsAlreadyCommitted";
/// Metric: history writes that met another writer's change (read again and planned again).
pub const METRIC_VERSION_CONFLICTS: &str = "VersionConflicts";
/// Metric: plans that waited for another lane's uncommitted change to an actor (a device of several installs).
pub const METRIC_WAITS: &str = "WaitsForOtherLanes";

/// Every metric this function emits in its own EMF line.
pub const METRICS: &[&str] = &[
    pipeline::METRIC_RECORDS_IN,
    METRIC_HISTORIES_WRITTEN,
    METRIC_MARKERS_WRITTEN,
    METRIC_REPEATS,
    METRIC_COMMITS,
    METRIC_ALREADY_COMMITTED,
    METRIC_VERSION_CONFLICTS,
    METRIC_WAITS,
    pipeline::METRIC_DEAD_LETTERED,
    pipeline::METRIC_BATCH_ITEM_FAILURES,
];

/// The field that marks a published line (one lane's figures of one scope and day).
pub const PUBLISHED: &str = "rollup_day";
/// Markers written at once.
const MARKER_CONCURRENCY: usize = 16;
/// Times a batch is planned again after a history changed under it (or waited for another lane).
const PLAN_ATTEMPTS: u32 = 4;
/// How long one invocation waits, in all, for other lanes' uncommitted changes before its records come again
/// (two lanes that both crashed on each other's actors wait until one change is abandoned: the writer's deadline
/// and a minute; the waiting keeps Lambda's retries of the batch from running out meanwhile).
const WAIT_BUDGET: std::time::Duration = std::time::Duration::from_secs(60);
/// Lambda's longest invocation, in seconds: the `until` of a write made without a deadline.
const MAX_INVOCATION_SECONDS: i64 = 900;

/// The active-users rollup, with its ports.
#[derive(Debug, Clone)]
pub struct ActiveUsers {
    pipeline: Pipeline,
    store: RollupStore,
    dimensions: Vec<String>,
    replay_days: i64,
    publish: bool,
    published: Option<Arc<std::sync::Mutex<Vec<serde_json::Value>>>>,
}

impl ActiveUsers {
    /// A rollup over the given ports; repeats are recognized for `replay_days` after their event.
    pub fn new(
        store: RollupStore,
        dead_letters: DeadLetterWriter,
        dimensions: Vec<String>,
        replay_days: i64,
    ) -> Self {
        let producer = Producer::new(Arc::new(NoOutputs), None, Backoff::default());
        Self {
            pipeline: Pipeline::new(producer, dead_letters),
            store,
            dimensions,
            replay_days,
            publish: true,
            published: None,
        }
    }

    /// Also keeps every published line in `sink` (tests read the dashboard's data points from it).
    pub fn keeping_published(
        mut self,
        sink: Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    ) -> Self {
        self.published = Some(sink);
        self
    }

    /// Without printing the published lines (local runs that print a report instead).
    pub fn without_publishing(mut self) -> Self {
        self.publish = false;
        self
    }

    /// Builds the real ports from config (once per cold start).
    pub fn connect(config: &Config, sdk: &aws_config::SdkConfig, s3: aws_sdk_s3::Client) -> Self {
        let store = RollupStore::on_dynamodb(
            aws_sdk_dynamodb::Client::new(sdk),
            &config.rollup_table,
            config.replay_window(),
        );
        let mut rollup = Self::new(
            store,
            DeadLetterWriter::new(Arc::new(S3BlobStore::new(s3)), &config.dead_letter_bucket),
            config.dimensions.clone(),
            config.replay_days,
        );
        rollup.pipeline = rollup.pipeline.with_settings(config.pipeline);
        rollup
    }

    /// The rollup table.
    pub fn store(&self) -> &RollupStore {
        &self.store
    }

    /// Prints the figures of every scope and day in `pending` (`<scope>|<YYYY-MM-DD>`), summed over the lanes
    /// and read from the table, one JSON line each with its generation: the dashboard shows each day's line of
    /// the highest generation, whichever lane logged it and whenever.
    async fn publish(&self, pending: &[String]) -> Result<(), StoreError> {
        for p in pending {
            let Some((scope, day)) = p.rsplit_once('|') else {
                continue;
            };
            let Ok(day) = NaiveDate::parse_from_str(day, "%Y-%m-%d") else {
                continue;
            };
            let (counters, generation) = self.store.day_totals(scope, day).await?;
            let line = published_line(scope, day, &counters, generation);
            if self.publish {
                println!("{line}");
            }
            if let Some(sink) = &self.published
                && let Ok(mut kept) = sink.lock()
            {
                kept.push(line);
            }
        }
        Ok(())
    }

    /// Runs one lane's records (indexes into `slots`, in order), in parts of one commit each (a commit holds at
    /// most 100 items), all within this invocation while its deadline allows.
    async fn run_lane(
        &self,
        lane: &str,
        slots: &mut [Slot<Activity>],
        mut records: Vec<usize>,
        deadline: Deadline,
        metrics: &Metrics,
    ) {
        while let Some(rest) = self.run_part(lane, slots, records, deadline, metrics).await {
            records = rest;
        }
    }

    /// Runs the lane's records up to the largest prefix one commit holds. Returns the records left after it when
    /// that part committed (and published); `None` when it is all done, or stopped: then every record not counted
    /// (the part's and those after it) is failed, and the lane's order holds.
    async fn run_part(
        &self,
        lane: &str,
        slots: &mut [Slot<Activity>],
        records: Vec<usize>,
        deadline: Deadline,
        metrics: &Metrics,
    ) -> Option<Vec<usize>> {
        let retry = |slots: &mut [Slot<Activity>], records: &[usize], e: &dyn std::fmt::Display| {
            for i in records {
                slots[*i].fail(Failure::new(FailureClass::Unavailable, e));
            }
        };
        let state = match within(deadline, self.store.read_lane(lane)).await {
            Ok(s) => s,
            Err(e) => {
                fail(slots, &records, &e);
                return None;
            }
        };
        // What the lane committed but may not have published (its last invocation stopped in between) is published
        // with this batch's days, once: each (lane, day) gets one line per invocation, read after the commit.
        let earlier = state.pending.clone();
        let mut todo: Vec<(usize, Position, Activity)> = Vec::new();
        for i in &records {
            let position = Position::of(slots[*i].source());
            if state.has_committed(&position) {
                metrics.incr(METRIC_ALREADY_COMMITTED);
                continue;
            }
            if let Some(a) = slots[*i].item() {
                todo.push((*i, position, a.clone()));
            }
        }
        let now = chrono::Utc::now();
        let left = deadline.remaining().map_or(MAX_INVOCATION_SECONDS, |d| {
            i64::try_from(d.as_secs()).unwrap_or(0) + 1
        });
        let rules = Rules {
            today: now.date_naive(),
            replay_days: self.replay_days,
            dimension_values_cap: plan::DIMENSION_VALUES_CAP,
            until: now.timestamp().saturating_add(left),
        };
        let committed = state.committed();
        if todo.is_empty() {
            if !earlier.is_empty() {
                if within(deadline, self.publish(&earlier)).await.is_err() {
                    // Committed, not published: the last record comes again and publishes (a quiet shard would
                    // otherwise never show these figures).
                    retry(
                        slots,
                        &records[records.len().saturating_sub(1)..],
                        &NOT_PUBLISHED,
                    );
                } else if let Some(p) = &state.position {
                    let _ = within(deadline, self.store.clear_pending(lane, p)).await;
                }
            }
            return None;
        }
        // Records left for the next part (after `todo`, in order).
        let mut deferred: Vec<usize> = Vec::new();
        let everything = |todo: &[(usize, Position, Activity)], deferred: &[usize]| -> Vec<usize> {
            todo.iter()
                .map(|t| t.0)
                .chain(deferred.iter().copied())
                .collect()
        };
        let mut attempt = 0;
        let (mut waits, mut waited) = (0u32, std::time::Duration::ZERO);
        while !todo.is_empty() {
            attempt += 1;
            if deadline.remaining() == Some(std::time::Duration::ZERO) {
                retry(
                    slots,
                    &everything(&todo, &deferred),
                    &"not counted before the invocation deadline",
                );
                return None;
            }
            let keys: BTreeSet<ActorKey> = todo
                .iter()
                .flat_map(|(_, _, a)| {
                    a.actives
                        .iter()
                        .map(|x| (plan::group(x.definition), x.actor.clone()))
                })
                .collect();
            let stored = match within(deadline, self.store.read_histories(&keys)).await {
                Ok(h) => h,
                Err(e) => {
                    fail(slots, &everything(&todo, &deferred), &e);
                    return None;
                }
            };
            // Histories other lanes wrote too (a device of installs in several shards): their writers' positions
            // say whether their last changes are committed.
            let others: BTreeSet<String> = stored
                .values()
                .flat_map(|h| h.undo.keys())
                .filter(|l| l.as_str() != lane)
                .cloned()
                .collect();
            let mut positions = BTreeMap::from([(lane.to_owned(), committed.clone())]);
            if !others.is_empty() {
                match within(deadline, self.store.read_positions(&others)).await {
                    Ok(p) => positions.extend(p),
                    Err(e) => {
                        fail(slots, &everything(&todo, &deferred), &e);
                        return None;
                    }
                }
            }
            let mut base: BTreeMap<ActorKey, _> = BTreeMap::new();
            let mut waiting: BTreeSet<ActorKey> = BTreeSet::new();
            let now = chrono::Utc::now().timestamp();
            for (k, h) in &stored {
                match h.settled(lane, &positions, now) {
                    Ok(h) => {
                        base.insert(k.clone(), h);
                    }
                    Err(_) => {
                        waiting.insert(k.clone());
                    }
                }
            }
            if !waiting.is_empty() {
                // Another lane may still commit a change to these actors: wait for it (its redelivery takes its
                // change back or commits it), then read again; past the wait budget (or near the deadline), the
                // first record touching them and those after it come again.
                metrics.incr(METRIC_WAITS);
                // First take back this lane's own uncommitted changes (written by an earlier attempt that met a
                // conflict): a lane never holds a change while it waits, so two lanes cannot wait on each other.
                for (k, h) in &stored {
                    if h.undo.get(lane).is_some_and(|u| u.position > committed) {
                        let released = h.without_uncommitted(lane, &committed);
                        let _ = within(deadline, self.store.write_history(k, &released)).await;
                    }
                }
                let pause = std::time::Duration::from_millis((250u64 << waits.min(4)).min(4_000));
                waits += 1;
                if waited + pause <= WAIT_BUDGET
                    && deadline
                        .remaining()
                        .is_none_or(|left| left > pause + std::time::Duration::from_secs(10))
                {
                    tokio::time::sleep(pause).await;
                    waited += pause;
                    // A wait is not a planning attempt.
                    attempt -= 1;
                    continue;
                }
                let first = todo
                    .iter()
                    .position(|(_, _, a)| {
                        a.actives.iter().any(|x| {
                            waiting.contains(&(plan::group(x.definition), x.actor.clone()))
                        })
                    })
                    .unwrap_or(0);
                let rest = todo.split_off(first);
                let mut later: Vec<usize> = rest.iter().map(|t| t.0).collect();
                later.append(&mut deferred);
                retry(
                    slots,
                    &later,
                    &"waits for another lane's uncommitted change to the same actor",
                );
                if todo.is_empty() {
                    return None;
                }
                continue;
            }
            let mut plan = plan::plan(&todo, &base, &state, &rules);
            // One commit holds at most 100 items, counting those the events counted by marker may add: a batch
            // that would need more commits its first part, then the rest.
            while commit_items_at_most(&plan) > crate::table::MAX_TRANSACTION_ITEMS
                && todo.len() > 1
            {
                let rest = todo.split_off(todo.len() / 2);
                deferred.splice(0..0, rest.iter().map(|t| t.0));
                plan = plan::plan(&todo, &base, &state, &rules);
            }
            // The histories, each over the version read.
            let mut conflict = false;
            for (key, h) in &plan.histories {
                match within(deadline, self.store.write_history(key, h)).await {
                    Ok(()) => metrics.incr(METRIC_HISTORIES_WRITTEN),
                    Err(StoreError(crate::table::TableError::ConditionFailed(_)))
                    | Err(StoreError(crate::table::TableError::Conflict(_))) => {
                        metrics.incr(METRIC_VERSION_CONFLICTS);
                        conflict = true;
                    }
                    Err(e) if !e.is_transient() => {
                        // This actor's records can never be written: dead letters; the others go on.
                        let bad: BTreeSet<usize> = plan
                            .records
                            .get(key)
                            .map(|r| r.iter().copied().collect())
                            .unwrap_or_default();
                        for i in &bad {
                            slots[*i].fail(Failure::new(FailureClass::RollupRefused, &e));
                        }
                        todo.retain(|t| !bad.contains(&t.0));
                        conflict = true;
                    }
                    Err(e) => {
                        retry(slots, &everything(&todo, &deferred), &e);
                        return None;
                    }
                }
            }
            if conflict {
                if attempt < PLAN_ATTEMPTS {
                    continue;
                }
                retry(
                    slots,
                    &everything(&todo, &deferred),
                    &"histories kept changing under the batch",
                );
                return None;
            }
            // The events counted by marker: each counts if this lane created its marker (or wrote it for this very
            // record in an attempt that did not commit).
            let waits = plan.markers.clone();
            let outcomes: Vec<(plan::MarkerWait, Result<Marker, StoreError>)> =
                futures_util::stream::iter(waits)
                    .map(|w| async move {
                        let r = within(
                            deadline,
                            self.store.put_marker(&w.event_id, lane, &w.position),
                        )
                        .await;
                        (w, r)
                    })
                    .buffered(MARKER_CONCURRENCY)
                    .collect()
                    .await;
            let mut deltas = plan.deltas.clone();
            for (w, outcome) in outcomes {
                match outcome {
                    Ok(Marker::Created) => {
                        metrics.incr(METRIC_MARKERS_WRITTEN);
                        plan::merge(&mut deltas, &w.deltas);
                    }
                    Ok(Marker::Exists(l, p)) if l == lane && p == w.position && p > committed => {
                        plan::merge(&mut deltas, &w.deltas);
                    }
                    Ok(Marker::Exists(..)) => metrics.incr(METRIC_REPEATS),
                    Err(e) => {
                        fail(slots, &everything(&todo, &deferred), &e);
                        return None;
                    }
                }
            }
            let Some(last) = todo.last().map(|t| t.1.clone()) else {
                // Every record of the part was dead-lettered: the rest is the next part.
                return (!deferred.is_empty()).then_some(deferred);
            };
            let pending: Vec<String> = deltas
                .keys()
                .filter(|item| item.kind == 'c')
                .map(|item| format!("{}|{}", item.scope, plan::day_label(item.day)))
                .chain(earlier.iter().cloned())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            match within(
                deadline,
                self.store.commit(
                    &state,
                    &last,
                    &deltas,
                    &pending,
                    plan.dimension_values.as_ref(),
                ),
            )
            .await
            {
                Ok(()) => {}
                Err(StoreError(crate::table::TableError::ConditionFailed(_))) => {
                    // The lane is not where it was read: either this very commit landed and its answer was lost
                    // (the SDK's resend then fails its condition), or another invocation moved the lane.
                    let landed = within(deadline, self.store.read_lane(lane))
                        .await
                        .is_ok_and(|now| now.position.as_ref() == Some(&last));
                    if !landed {
                        retry(
                            slots,
                            &everything(&todo, &deferred),
                            &"the lane moved under the batch",
                        );
                        return None;
                    }
                }
                Err(e) => {
                    fail(slots, &everything(&todo, &deferred), &e);
                    return None;
                }
            }
            metrics.incr(METRIC_COMMITS);
            if within(deadline, self.publish(&pending)).await.is_err() {
                // Committed, not published: the part's last record comes again (with everything after it) and
                // its redelivery publishes the lane's pending days.
                let mut again = vec![todo.last().map_or(0, |t| t.0)];
                again.extend(deferred.iter().copied());
                retry(slots, &again, &NOT_PUBLISHED);
                return None;
            }
            let _ = within(deadline, self.store.clear_pending(lane, &last)).await;
            return (!deferred.is_empty()).then_some(deferred);
        }
        // Every record of the part was dead-lettered before its commit.
        (!deferred.is_empty()).then_some(deferred)
    }
}

/// Why a committed record comes again: its lane's figures are not published yet.
const NOT_PUBLISHED: &str = "counted; the lane's figures not published yet (read back failed)";

/// The items a commit of `plan` may need: its counters, those of every event counted by marker (whether or not
/// its marker says so), the lane item and its registry.
fn commit_items_at_most(plan: &plan::Plan) -> usize {
    let mut all = plan.deltas.clone();
    for w in &plan.markers {
        plan::merge(&mut all, &w.deltas);
    }
    RollupStore::commit_items(&all)
}

/// Runs a store call within the invocation's deadline: a call still in flight then is given up (a transient
/// failure: the SDK's own retries of a throttled or failing call must not run the invocation out of time).
async fn within<T>(
    deadline: Deadline,
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match deadline.remaining() {
        None => call.await,
        Some(left) => tokio::time::timeout(left, call).await.unwrap_or_else(|_| {
            Err(StoreError(crate::table::TableError::Transient(
                "no answer before the invocation deadline".into(),
            )))
        }),
    }
}

/// Fails records by a store error: permanent ones are dead letters, the rest retries.
fn fail(slots: &mut [Slot<Activity>], records: &[usize], e: &StoreError) {
    let class = if e.is_transient() {
        FailureClass::Unavailable
    } else {
        FailureClass::RollupRefused
    };
    for i in records {
        slots[*i].fail(Failure::new(class, e));
    }
}

/// The field of a published line that orders a day's lines: its counters' commits over every lane.
pub const GENERATION: &str = "generation";

/// One published line: a scope and day's counters summed over lanes, with their generation, names with `_` for
/// `.` (Logs Insights reads dots as nesting).
pub fn published_line(
    scope: &str,
    day: NaiveDate,
    counters: &BTreeMap<String, i64>,
    generation: i64,
) -> serde_json::Value {
    let mut line = serde_json::json!({PUBLISHED: plan::day_label(day), "scope": scope, GENERATION: generation});
    for (name, n) in figures(counters) {
        line[name] = n.into();
    }
    line
}

/// The figures the dashboard charts from a day's counters (names with `_` for `.`): every counter but dimension
/// values and duration buckets (they stay in the table and the report), and the session duration quantiles read
/// from the buckets (`<origin>_session_p50_s`, `_p90_s`).
pub fn figures(counters: &BTreeMap<String, i64>) -> BTreeMap<String, i64> {
    let mut out: BTreeMap<String, i64> = counters
        .iter()
        .filter(|(k, _)| !k.starts_with(plan::DIM) && activity::duration_bucket_key(k).is_none())
        .map(|(k, n)| (k.replace('.', "_"), *n))
        .collect();
    for (origin, quantiles) in session_quantiles(counters) {
        for (name, seconds) in quantiles {
            out.insert(
                format!("{origin}_session_{name}_s"),
                i64::try_from(seconds).unwrap_or(i64::MAX),
            );
        }
    }
    out
}

/// The quantiles of session durations (`p50`, `p90`, in seconds: the lower bound of the bucket they fall in) per
/// origin, from a day's `<origin>.session_s.<bucket>` counters.
pub fn session_quantiles(
    counters: &BTreeMap<String, i64>,
) -> BTreeMap<String, Vec<(&'static str, u64)>> {
    let mut histograms: BTreeMap<String, BTreeMap<u64, i64>> = BTreeMap::new();
    for (name, n) in counters {
        if let Some((origin, bucket)) = activity::duration_bucket_key(name) {
            *histograms
                .entry(origin.to_owned())
                .or_default()
                .entry(bucket)
                .or_default() += n;
        }
    }
    histograms
        .into_iter()
        .filter_map(|(origin, h)| {
            let q = [("p50", 0.5), ("p90", 0.9)]
                .into_iter()
                .filter_map(|(name, share)| Some((name, activity::duration_quantile(&h, share)?)))
                .collect::<Vec<_>>();
            (!q.is_empty()).then_some((origin, q))
        })
        .collect()
}

/// What the dashboard shows, from the published lines in the order they were logged (any subset: a time range):
/// per (scope, day), the figures of its line of the highest generation (of two with one generation, the later;
/// they hold the same figures). The template's Logs Insights widgets compute the same:
/// `sort generation desc | dedup rollup_day`.
pub fn dashboard_points(
    lines: &[serde_json::Value],
) -> BTreeMap<(String, String), BTreeMap<String, i64>> {
    let mut best: BTreeMap<(String, String), (i64, &serde_json::Value)> = BTreeMap::new();
    for line in lines {
        let (Some(day), Some(scope), Some(generation)) = (
            line[PUBLISHED].as_str(),
            line["scope"].as_str(),
            line[GENERATION].as_i64(),
        ) else {
            continue;
        };
        let key = (scope.to_owned(), day.to_owned());
        if best.get(&key).is_none_or(|(g, _)| generation >= *g) {
            best.insert(key, (generation, line));
        }
    }
    best.into_iter()
        .map(|(key, (_, line))| {
            let figures = line
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| k.as_str() != GENERATION)
                .filter_map(|(k, v)| Some((k.clone(), v.as_i64()?)))
                .filter(|(_, n)| *n != 0)
                .collect();
            (key, figures)
        })
        .collect()
}

#[async_trait]
impl Flow for ActiveUsers {
    type Item = Activity;
    type Plan = ();

    const FUNCTION: &'static str = FUNCTION_NAME;
    const METRICS: &'static [&'static str] = METRICS;

    fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    fn decode(&self, record: &SourceRecord, _: &Metrics) -> Decoded<Activity> {
        match read(&record.data, &self.dimensions) {
            Ok(activity) => Decoded::item(Vec::new(), activity),
            Err(e) => Decoded::failed(
                Vec::new(),
                Failure::new(FailureClass::NotAnAnalyticsEvent, e),
            ),
        }
    }

    async fn resolve(&self, slots: &mut [Slot<Activity>], deadline: Deadline, metrics: &Metrics) {
        let mut lanes: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, slot) in slots.iter().enumerate() {
            if slot.is_working() {
                lanes.entry(lane_of(slot.source())).or_default().push(i);
            }
        }
        for (lane, records) in lanes {
            self.run_lane(&lane, slots, records, deadline, metrics)
                .await;
        }
    }

    fn outputs(
        &self,
        _: &mut (),
        _: &mut Activity,
        _: &Metrics,
    ) -> Vec<Result<OutboundRecord, ProduceFailure>> {
        Vec::new()
    }

    fn settle(
        &self,
        _: &mut (),
        _: usize,
        _: &Activity,
        _: &[Result<Delivery, ProduceFailure>],
        _: &Metrics,
    ) -> Result<(), Failure> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_line_holds_its_day_and_generation_and_the_highest_generation_wins() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 3).unwrap();
        let line = published_line(
            "pool=p",
            day,
            &BTreeMap::from([("authenticating_users.active".to_owned(), 4)]),
            7,
        );
        assert_eq!(line[PUBLISHED], "2026-11-03");
        assert_eq!(line[GENERATION], 7);
        assert_eq!(line["authenticating_users_active"], 4);
        // The dashboard keeps a day's line of the highest generation, whatever the order they were logged in.
        let older = published_line(
            "pool=p",
            day,
            &BTreeMap::from([("authenticating_users.active".to_owned(), 3)]),
            6,
        );
        let points = dashboard_points(&[line, older]);
        assert_eq!(
            points[&("pool=p".to_owned(), "2026-11-03".to_owned())]["authenticating_users_active"],
            4
        );
    }

    /// Claim broken (docs/analytics.md, "What a day holds": "The published lines (and the dashboard) carry every
    /// counter but the duration buckets and dimension values"; `figures`: "every counter but dimension values and
    /// duration buckets").
    /// Input: one `_session.start` of install `anon-1` whose `context.platform` (a configured dimension, client
    /// input) is `web.session_s.0`. Its dimension counter `dim|session_users|platform=web.session_s.0` is read by
    /// `session_quantiles` as a duration bucket of an origin `dim|session_users|platform=web`, and the published line
    /// gains `dim|session_users|platform=web_session_p50_s` and `..._p90_s`: a client names fields of the dashboard's
    /// lines (one pair per such value).
    #[test]
    fn attack_a_dimension_value_with_session_s_becomes_a_published_quantile_figure() {
        let record = serde_json::json!({"schema": activity::APP_SCHEMA, "event_id": "e1", "type": "track",
            "event": activity::SESSION_START, "anonymous_id": "anon-1", "user_id": null,
            "timestamp": "2026-11-04T08:00:00Z", "context": {"platform": "web.session_s.0"}});
        let a = activity::read(
            &serde_json::to_vec(&record).unwrap(),
            &["platform".to_owned()],
        )
        .unwrap();
        let batch = vec![(0, crate::lane::Position::new("1", 0), a)];
        let state = crate::lane::LaneState {
            lane: "lane-a".into(),
            ..Default::default()
        };
        let rules = plan::Rules {
            today: NaiveDate::from_ymd_opt(2026, 11, 4).unwrap(),
            replay_days: 30,
            dimension_values_cap: plan::DIMENSION_VALUES_CAP,
            until: 0,
        };
        let p = plan::plan(&batch, &BTreeMap::new(), &state, &rules);
        let day = NaiveDate::from_ymd_opt(2026, 11, 4).unwrap();
        let counters: BTreeMap<String, i64> = p
            .deltas
            .iter()
            .filter(|(item, _)| item.scope == "app" && item.day == day)
            .flat_map(|(_, attrs)| attrs.clone())
            .collect();
        let leaked: Vec<String> = figures(&counters)
            .into_keys()
            .filter(|k| k.contains("platform"))
            .collect();
        assert!(
            leaked.is_empty(),
            "published figures named after a dimension value: {leaked:?}"
        );
    }
}
