//! One run: the members of every cohort as of a day, from the histories as stored; the changes against the
//! members recorded by the last run; the records that carry them; and, once a record is on the stream, its users'
//! membership items. A run that stops anywhere is safe to repeat: what was recorded is not sent again, and what was
//! sent but not recorded is sent again in the same records, with the same message ids, if the same users changed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bridge_core::Deadline;
use bridge_core::envelope::Header;
use bridge_core::producer::{KinesisSink, OutboundRecord, Producer};
use bridge_core::retry::Backoff;
use bridge_core::telemetry::Metrics;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::config::Config;
use crate::definition::Cohort;
use crate::error::CohortError;
use crate::payload::{self, Message, User};
use crate::store::CohortStore;

/// The function's name in metrics.
pub const FUNCTION_NAME: &str = "cohorts";
/// Metric: histories read.
pub const METRIC_HISTORIES: &str = "HistoriesScanned";
/// Metric: users who joined a cohort (sent and recorded).
pub const METRIC_JOINED: &str = "MembersJoined";
/// Metric: users who left a cohort (sent and recorded).
pub const METRIC_LEFT: &str = "MembersLeft";
/// Metric: records put on the cohort stream.
pub const METRIC_RECORDS_PUT: &str = "CohortRecordsPut";
/// Metric: records that were not put (their changes go out again next run).
pub const METRIC_RECORDS_FAILED: &str = "CohortRecordsFailed";
/// Every metric the function emits.
pub const METRICS: &[&str] = &[
    METRIC_HISTORIES,
    METRIC_JOINED,
    METRIC_LEFT,
    METRIC_RECORDS_PUT,
    METRIC_RECORDS_FAILED,
    bridge_core::producer::METRIC_PUT_RECORDS_CALLS,
    bridge_core::producer::METRIC_RECORDS_RETRIED,
];

/// What a run did, per cohort.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CohortOutcome {
    /// The cohort's name.
    pub cohort_name: String,
    /// Its id.
    pub cohort_id: String,
    /// Members as of the day.
    pub members: usize,
    /// Users who joined (sent and recorded).
    pub joined: usize,
    /// Users who left (sent and recorded).
    pub left: usize,
    /// Records put.
    pub records: usize,
    /// Records not put.
    pub failed_records: usize,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The as-of day.
    pub as_of: String,
    /// `computed_time` of its records.
    pub computed_time: String,
    /// Items the scan read.
    pub scanned: u64,
    /// Histories among them.
    pub histories: u64,
    /// Per cohort.
    pub cohorts: Vec<CohortOutcome>,
}

/// The cohort function, with its ports.
#[derive(Debug, Clone)]
pub struct Cohorts {
    store: CohortStore,
    producer: Producer,
    cohorts: Vec<Cohort>,
    allowed: BTreeSet<String>,
    segments: i32,
}

/// Per cohort, its members and their properties.
type Members = Vec<BTreeMap<String, BTreeMap<String, String>>>;

impl Cohorts {
    /// A function over the given ports.
    pub fn new(store: CohortStore, producer: Producer, config: &Config) -> Self {
        Self {
            store,
            producer,
            cohorts: config.cohorts.clone(),
            allowed: config.user_properties.clone(),
            segments: config.scan_segments,
        }
    }

    /// The real ports from config (once per cold start). The Kinesis client does not retry underneath the
    /// producer.
    pub fn connect(config: &Config, sdk: &aws_config::SdkConfig) -> Self {
        let sink = Arc::new(KinesisSink::new(
            aws_sdk_kinesis::Client::new(&bridge_core::aws::own_retries(sdk)),
            &config.cohort_stream,
        ));
        let policy = Backoff {
            max_attempts: config.put_max_attempts,
            ..Backoff::default()
        };
        Self::new(
            CohortStore::new(aws_sdk_dynamodb::Client::new(sdk), &config.rollup_table),
            Producer::new(sink, None, policy),
            config,
        )
    }

    /// Every cohort's members as of `as_of`: the segments of the scan side by side.
    async fn compute(
        &self,
        as_of: NaiveDate,
        outcome: &mut Outcome,
    ) -> Result<Members, CohortError> {
        let scans = (0..self.segments).map(|segment| async move {
            let mut members: Members = vec![BTreeMap::new(); self.cohorts.len()];
            let count = self
                .store
                .scan_segment(segment, self.segments, |group, actor, history| {
                    for (i, cohort) in self.cohorts.iter().enumerate() {
                        if cohort.group() == group && cohort.admits(history, as_of) {
                            members[i].insert(
                                actor.to_owned(),
                                cohort
                                    .properties(history, &self.allowed)
                                    .into_iter()
                                    .collect(),
                            );
                        }
                    }
                })
                .await?;
            Ok::<_, CohortError>((members, count))
        });
        let mut all: Members = vec![BTreeMap::new(); self.cohorts.len()];
        for (members, count) in futures_util::future::try_join_all(scans).await? {
            outcome.scanned += count.scanned;
            outcome.histories += count.histories;
            for (into, from) in all.iter_mut().zip(members) {
                into.extend(from);
            }
        }
        Ok(all)
    }

    /// One run for the schedule's `time` (its `computed_time`) as of `as_of`.
    pub async fn run(
        &self,
        time: DateTime<Utc>,
        as_of: NaiveDate,
        deadline: Deadline,
        metrics: &Metrics,
    ) -> Result<Outcome, CohortError> {
        let mut outcome = Outcome {
            as_of: as_of.format("%Y-%m-%d").to_string(),
            computed_time: time.timestamp().to_string(),
            ..Outcome::default()
        };
        let computed = self.compute(as_of, &mut outcome).await?;
        metrics.add(METRIC_HISTORIES, outcome.histories);
        let (mut failed, mut total, mut first_failure) = (0, 0, None);
        for (cohort, members) in self.cohorts.iter().zip(computed) {
            let id = cohort.id();
            let recorded = self.store.members(&id).await?;
            let (joins, leaves) = changes(&members, &recorded);
            let mut messages = payload::batches(
                &cohort.name,
                &id,
                false,
                as_of,
                &outcome.computed_time,
                leaves,
            );
            messages.extend(payload::batches(
                &cohort.name,
                &id,
                true,
                as_of,
                &outcome.computed_time,
                joins,
            ));
            let mut done = CohortOutcome {
                cohort_name: cohort.name.clone(),
                cohort_id: id.clone(),
                members: members.len(),
                ..CohortOutcome::default()
            };
            let records: Vec<OutboundRecord> =
                messages.iter().map(outbound).collect::<Result<_, _>>()?;
            let results = self.producer.send(records, deadline, metrics).await;
            let (mut joined, mut left) = (Vec::new(), Vec::new());
            for (message, result) in messages.iter().zip(results) {
                total += 1;
                match result {
                    Ok(_) => {
                        done.records += 1;
                        let users = message.users.iter().map(|u| u.user_id.clone());
                        if message.in_cohort {
                            joined.extend(users);
                        } else {
                            left.extend(users);
                        }
                    }
                    Err(e) => {
                        failed += 1;
                        done.failed_records += 1;
                        first_failure.get_or_insert_with(|| e.to_string());
                        tracing::warn!(cohort_id = %id, message_id = %message.message_id, error = %e, "record not put");
                    }
                }
            }
            self.store
                .record(&id, &outcome.as_of, &joined, &left, deadline)
                .await?;
            done.joined = joined.len();
            done.left = left.len();
            metrics.add(METRIC_JOINED, joined.len() as u64);
            metrics.add(METRIC_LEFT, left.len() as u64);
            metrics.add(METRIC_RECORDS_PUT, done.records as u64);
            metrics.add(METRIC_RECORDS_FAILED, done.failed_records as u64);
            tracing::info!(cohort_id = %id, members = done.members, joined = done.joined, left = done.left, records = done.records, "cohort");
            outcome.cohorts.push(done);
        }
        if let Some(first) = first_failure {
            return Err(CohortError::NotPut {
                failed,
                total,
                first,
            });
        }
        Ok(outcome)
    }
}

/// Joins (members not recorded, with their properties) and leaves (recorded users who are no longer members).
pub fn changes(
    members: &BTreeMap<String, BTreeMap<String, String>>,
    recorded: &BTreeSet<String>,
) -> (Vec<User>, Vec<User>) {
    let joins = members
        .iter()
        .filter(|(user, _)| !recorded.contains(*user))
        .map(|(user, properties)| User {
            user_id: user.clone(),
            user_properties: properties.clone(),
        })
        .collect();
    // A user who left is not a member: the run has no properties of theirs to show.
    let leaves = recorded
        .iter()
        .filter(|user| !members.contains_key(*user))
        .map(|user| User {
            user_id: user.clone(),
            user_properties: BTreeMap::new(),
        })
        .collect();
    (joins, leaves)
}

/// A record for the producer: the message as JSON, keyed by the cohort id.
fn outbound(message: &Message) -> Result<OutboundRecord, CohortError> {
    let data = serde_json::to_vec(message).map_err(|e| CohortError::Build(e.to_string()))?;
    Ok(OutboundRecord {
        partition_key: message.cohort_id.clone(),
        data: bytes::Bytes::from(data),
        // Only read for a pointer record, which a cohort record never needs (it is cut under the record limit).
        header: Header {
            schema: "amplitude-cohort".into(),
            event_id: message.message_id.clone(),
            kind: if message.in_cohort { "join" } else { "leave" }.into(),
            timestamp: String::new(),
            received_at: None,
            source: bridge_core::envelope::SourceRef::default(),
        },
    })
}

/// The run's time and as-of day from the invocation's event: an EventBridge scheduled event's `time` (its UTC
/// day is the as-of day), or, for a local run, `as_of` (`YYYY-MM-DD`), with or without `time`.
pub fn run_time(event: &serde_json::Value) -> Result<(DateTime<Utc>, NaiveDate), CohortError> {
    let time = match event.get("time").and_then(serde_json::Value::as_str) {
        Some(t) => Some(
            DateTime::parse_from_rfc3339(t)
                .map_err(|e| CohortError::Event(format!("time {t:?}: {e}")))?
                .with_timezone(&Utc),
        ),
        None => None,
    };
    let as_of = match event.get("as_of").and_then(serde_json::Value::as_str) {
        Some(d) => Some(
            NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map_err(|e| CohortError::Event(format!("as_of {d:?}: {e}")))?,
        ),
        None => None,
    };
    match (time, as_of) {
        (Some(t), Some(d)) => Ok((t, d)),
        (Some(t), None) => Ok((t, t.date_naive())),
        (None, Some(d)) => Ok((d.and_time(chrono::NaiveTime::MIN).and_utc(), d)),
        (None, None) => Err(CohortError::Event(
            "expected an EventBridge scheduled event (`time`) or {\"as_of\": \"YYYY-MM-DD\"}"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    #[test]
    fn changes_are_the_differences_both_ways() {
        let members: BTreeMap<String, BTreeMap<String, String>> = [
            (
                "a".to_owned(),
                BTreeMap::from([("platform".to_owned(), "ios".to_owned())]),
            ),
            ("b".to_owned(), BTreeMap::new()),
        ]
        .into();
        let recorded: BTreeSet<String> = ["b", "c"].map(String::from).into();
        let (joins, leaves) = changes(&members, &recorded);
        assert_eq!(joins.len(), 1);
        assert_eq!(joins[0].user_id, "a");
        assert_eq!(joins[0].user_properties["platform"], "ios");
        assert_eq!(
            leaves
                .iter()
                .map(|u| u.user_id.as_str())
                .collect::<Vec<_>>(),
            vec!["c"]
        );
        let (joins, leaves) = changes(&members, &members.keys().cloned().collect());
        assert!(joins.is_empty() && leaves.is_empty());
    }

    #[test]
    fn the_schedules_time_gives_the_as_of_day_and_a_local_run_may_name_it() {
        let scheduled = serde_json::json!({"version": "0", "detail-type": "Scheduled Event", "source": "aws.events",
            "time": "2026-11-20T06:00:00Z", "detail": {}});
        let (t, d) = run_time(&scheduled).unwrap();
        assert_eq!(t.timestamp(), 1_795_154_400);
        assert_eq!(d, NaiveDate::from_ymd_opt(2026, 11, 20).unwrap());
        let (t, d) = run_time(&serde_json::json!({"as_of": "2026-11-19"})).unwrap();
        assert_eq!(d, NaiveDate::from_ymd_opt(2026, 11, 19).unwrap());
        assert_eq!(t.timestamp(), 1_795_046_400);
        assert!(run_time(&serde_json::json!({})).is_err());
        assert!(run_time(&serde_json::json!({"time": "yesterday"})).is_err());
    }
}
