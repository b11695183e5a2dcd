//! The rollup's own steps on the shared pipeline ([`bridge_core::pipeline`]): read each record as an activity,
//! then, for the whole batch at once, read the markers it may need, write the new ones with their counters, and
//! merge the day's sketches. It puts no records on a stream: its outputs are the rollup items. A record that is
//! neither an auth nor an app event is dead-lettered with its reason; a record whose writes failed is retried
//! (markers make a retry count nothing twice). Records have no ordering keys: counting does not depend on order.

use std::collections::BTreeMap;
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

use crate::activity::{Activity, read};
use crate::config::Config;
use crate::plan;
use crate::store::RollupStore;

/// The function's name in metrics and dead-letter keys.
pub const FUNCTION_NAME: &str = "active-users";

/// Metric: markers written (each a first sight of an actor in a period, a first-seen user, or a counted event).
pub const METRIC_MARKERS_WRITTEN: &str = "MarkersWritten";
/// Metric: TransactWriteItems requests.
pub const METRIC_TRANSACTIONS: &str = "RollupTransactions";
/// Metric: sketch items written.
pub const METRIC_SKETCHES_WRITTEN: &str = "SketchesWritten";
/// Metric: markers another invocation wrote first (counted there, not here).
pub const METRIC_MARKERS_RACED: &str = "MarkersRaced";

/// Every metric this function emits in its own EMF line (the rollup's counters go in lines per scope).
pub const METRICS: &[&str] = &[
    pipeline::METRIC_RECORDS_IN,
    METRIC_MARKERS_WRITTEN,
    METRIC_TRANSACTIONS,
    METRIC_SKETCHES_WRITTEN,
    METRIC_MARKERS_RACED,
    pipeline::METRIC_DEAD_LETTERED,
    pipeline::METRIC_BATCH_ITEM_FAILURES,
];

/// The namespace of the rollup metrics (per scope, one EMF line each).
pub const ROLLUP_NAMESPACE: &str = "CognitoKinesisBridge/ActiveUsers";

/// The active-users rollup, with its ports.
#[derive(Debug, Clone)]
pub struct ActiveUsers {
    pipeline: Pipeline,
    store: RollupStore,
    dimensions: Vec<String>,
    emf: bool,
}

impl ActiveUsers {
    /// A rollup over the given ports.
    pub fn new(
        store: RollupStore,
        dead_letters: DeadLetterWriter,
        dimensions: Vec<String>,
    ) -> Self {
        let producer = Producer::new(Arc::new(NoOutputs), None, Backoff::default());
        Self {
            pipeline: Pipeline::new(producer, dead_letters),
            store,
            dimensions,
            emf: true,
        }
    }

    /// Without the rollup's EMF lines on stdout (local runs that print a report instead).
    pub fn without_emf(mut self) -> Self {
        self.emf = false;
        self
    }

    /// Builds the real ports from config (once per cold start).
    pub fn connect(config: &Config, sdk: &aws_config::SdkConfig, s3: aws_sdk_s3::Client) -> Self {
        let store = RollupStore::new(
            aws_sdk_dynamodb::Client::new(sdk),
            &config.rollup_table,
            config.event_marker_ttl,
        );
        let mut rollup = Self::new(
            store,
            DeadLetterWriter::new(Arc::new(S3BlobStore::new(s3)), &config.dead_letter_bucket),
            config.dimensions.clone(),
        );
        rollup.pipeline = rollup.pipeline.with_settings(config.pipeline);
        rollup
    }

    /// The rollup table.
    pub fn store(&self) -> &RollupStore {
        &self.store
    }
}

/// One EMF line per (scope, period) of the counters this invocation moved, in [`ROLLUP_NAMESPACE`] with the
/// dimension `Scope`: summed over a day, `<definition>.active` is that day's actives (for events of that day).
fn rollup_emf(ops: &[plan::Op], now_ms: i64) -> Vec<serde_json::Value> {
    let mut moved: BTreeMap<(String, String), BTreeMap<String, i64>> = BTreeMap::new();
    for op in ops {
        for (key, attr, n) in &op.increments {
            // Day counters only: a month's counter is the sum of its first sights, reported from the table.
            if key.sk.len() != 10 {
                continue;
            }
            let scope = key.pk.trim_start_matches("count#").to_owned();
            *moved
                .entry((scope, key.sk.clone()))
                .or_default()
                .entry(attr.clone())
                .or_default() += n;
        }
    }
    moved
        .into_iter()
        .map(|((scope, day), counters)| {
            let metrics: Vec<serde_json::Value> = counters
                .keys()
                .map(|name| serde_json::json!({"Name": name, "Unit": "Count"}))
                .collect();
            let mut doc = serde_json::json!({
                "_aws": {"Timestamp": now_ms, "CloudWatchMetrics": [{
                    "Namespace": ROLLUP_NAMESPACE, "Dimensions": [["Scope"]], "Metrics": metrics}]},
                "Scope": scope,
                "Day": day,
            });
            for (name, n) in counters {
                doc[name] = n.into();
            }
            doc
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
        let activities: Vec<(usize, Activity)> = slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.item().map(|a| (i, a.clone())))
            .collect();
        if activities.is_empty() {
            return;
        }
        let fail = |slots: &mut [Slot<Activity>], records: &[usize], e: &dyn std::fmt::Display| {
            for i in records {
                slots[*i].fail(Failure::new(FailureClass::Unavailable, e));
            }
        };
        let known = match self
            .store
            .read_markers(&plan::markers_to_read(&activities), deadline)
            .await
        {
            Ok(known) => known,
            Err(e) => {
                let all: Vec<usize> = activities.iter().map(|(i, _)| *i).collect();
                fail(slots, &all, &e);
                return;
            }
        };
        let ops = plan::ops(&activities, &known);
        let emf_ops = ops.clone();
        let (written, failed) = self.store.apply(ops, deadline).await;
        metrics.add(METRIC_MARKERS_WRITTEN, written.markers);
        metrics.add(METRIC_MARKERS_RACED, written.raced);
        metrics.add(METRIC_TRANSACTIONS, written.transactions);
        let failed_markers: std::collections::HashSet<&plan::Key> = failed
            .iter()
            .flat_map(|(records, _)| records)
            .flat_map(|i| emf_ops.iter().filter(move |o| o.records.contains(i)))
            .map(|o| &o.marker)
            .collect();
        let applied: Vec<plan::Op> = emf_ops
            .iter()
            .filter(|o| !failed_markers.contains(&o.marker))
            .cloned()
            .collect();
        for (records, e) in &failed {
            fail(slots, records, e);
        }
        let (sketches, failed) = self
            .store
            .merge_sketches(plan::sketch_updates(&activities), deadline)
            .await;
        metrics.add(METRIC_SKETCHES_WRITTEN, sketches);
        for (records, e) in &failed {
            fail(slots, records, e);
        }
        if self.emf {
            let now = chrono::Utc::now().timestamp_millis();
            for line in rollup_emf(&applied, now) {
                println!("{line}");
            }
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
    use crate::plan::{Key, MarkerWrite, Op};

    #[test]
    fn emf_lines_carry_the_day_counters_moved_per_scope() {
        let op = Op {
            marker: Key {
                pk: "active#x".into(),
                sk: "u".into(),
            },
            write: MarkerWrite::Create { day: None },
            increments: vec![
                (
                    plan::counter_item("pool=p", "2026-11-03"),
                    "authenticating_users.active".into(),
                    1,
                ),
                (
                    plan::counter_item("pool=p", "2026-11"),
                    "authenticating_users.active".into(),
                    1,
                ),
            ],
            records: vec![0],
        };
        let lines = rollup_emf(&[op.clone(), op], 7);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["Scope"], "pool=p");
        assert_eq!(lines[0]["authenticating_users.active"], 2);
        assert_eq!(
            lines[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            ROLLUP_NAMESPACE
        );
    }
}
