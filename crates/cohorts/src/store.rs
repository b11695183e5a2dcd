//! The rollup table as the cohort function uses it: a parallel Scan of the actors' histories (`h#<group>#<actor>`,
//! decoded by the rollup's own reader, [`active_users::store::history_of`]), and the cohorts' membership items.
//!
//! **Membership items**: `co#<cohort id>#<n>` / `<user id>`, `n` in `0..`[`MEMBERSHIP_PARTITIONS`] by a hash of the
//! user id (a first run of a large cohort writes its whole membership: spread over partitions, it is not held to
//! one partition's 1,000 writes a second), attribute `since` (the as-of day it was written). A join is a Put, a
//! leave a Delete, both written only after the record that carries the change is on the stream.

use std::collections::{BTreeSet, HashMap};

use active_users::history::History;
use active_users::table::{Item, Value};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, PutRequest, WriteRequest};
use bridge_core::Deadline;
use bridge_core::retry::Backoff;

use crate::error::CohortError;

/// Partitions one cohort's membership items are spread over.
pub const MEMBERSHIP_PARTITIONS: u32 = 16;
/// Items in one BatchWriteItem request (docs: BatchWriteItem, "up to 25 put or delete requests").
pub const MAX_BATCH_WRITE_ITEMS: usize = 25;
/// The prefix of history items.
pub const HISTORY_PREFIX: &str = "h#";
/// The prefix of membership items.
pub const MEMBERSHIP_PREFIX: &str = "co#";

/// Retries of a batch write's unprocessed items.
const UNPROCESSED_BACKOFF: Backoff = Backoff::new(
    8,
    std::time::Duration::from_millis(50),
    std::time::Duration::from_secs(2),
);

/// A stored value of the rollup's value model (`None`: a type the rollup never writes).
fn value_of(v: &AttributeValue) -> Option<Value> {
    Some(match v {
        AttributeValue::S(s) => Value::S(s.clone()),
        AttributeValue::N(n) => Value::N(n.parse().ok()?),
        AttributeValue::B(b) => Value::B(b.as_ref().to_vec()),
        AttributeValue::L(items) => Value::L(items.iter().filter_map(value_of).collect()),
        AttributeValue::M(map) => Value::M(
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), value_of(v)?)))
                .collect(),
        ),
        _ => return None,
    })
}

/// An item in the rollup's value model.
pub fn item_of(map: &HashMap<String, AttributeValue>) -> Item {
    map.iter()
        .filter_map(|(k, v)| Some((k.clone(), value_of(v)?)))
        .collect()
}

/// `(group, actor)` of a history's partition key `h#<group>#<actor>`.
pub fn actor_of(pk: &str) -> Option<(&str, &str)> {
    pk.strip_prefix(HISTORY_PREFIX)?.split_once('#')
}

/// The partition of a user's membership item.
pub fn membership_pk(cohort_id: &str, user_id: &str) -> String {
    let hash = bridge_core::envelope::event_id(&[user_id]);
    let n = u32::from_str_radix(&hash[..8], 16).unwrap_or(0) % MEMBERSHIP_PARTITIONS;
    format!("{MEMBERSHIP_PREFIX}{cohort_id}#{n}")
}

/// The rollup table.
#[derive(Debug, Clone)]
pub struct CohortStore {
    client: Client,
    table: String,
}

/// What one scan segment saw.
#[derive(Debug, Default)]
pub struct ScanCount {
    /// Items read (before the filter).
    pub scanned: u64,
    /// Histories decoded.
    pub histories: u64,
}

impl CohortStore {
    /// The table `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Reads segment `segment` of `segments` of the table, calling `each` with every history's group, actor and
    /// history. Eventually consistent (half the read units): a history written during the scan may be seen as
    /// before or after the write, which the next run settles.
    pub async fn scan_segment(
        &self,
        segment: i32,
        segments: i32,
        mut each: impl FnMut(&str, &str, &History),
    ) -> Result<ScanCount, CohortError> {
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .segment(segment)
            .total_segments(segments)
            .filter_expression("begins_with(pk, :h)")
            .expression_attribute_values(":h", AttributeValue::S(HISTORY_PREFIX.into()))
            // The days, first days and dimension values; the counted ids and undo records are not needed.
            .projection_expression("pk, k")
            .into_paginator()
            .send();
        let mut count = ScanCount::default();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| CohortError::dynamodb("Scan", &e))?;
            count.scanned += u64::try_from(page.scanned_count).unwrap_or(0);
            for raw in page.items.unwrap_or_default() {
                let Some(AttributeValue::S(pk)) = raw.get("pk") else {
                    continue;
                };
                let Some((group, actor)) = actor_of(pk) else {
                    continue;
                };
                let history = active_users::store::history_of(&item_of(&raw));
                count.histories += 1;
                each(group, actor, &history);
            }
        }
        Ok(count)
    }

    /// The users recorded as members of `cohort_id` (strongly consistent: the last run's writes are seen).
    pub async fn members(&self, cohort_id: &str) -> Result<BTreeSet<String>, CohortError> {
        let mut out = BTreeSet::new();
        for n in 0..MEMBERSHIP_PARTITIONS {
            let pk = format!("{MEMBERSHIP_PREFIX}{cohort_id}#{n}");
            let mut pages = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(pk))
                .projection_expression("sk")
                .consistent_read(true)
                .into_paginator()
                .items()
                .send();
            while let Some(item) = pages.next().await {
                let item = item.map_err(|e| CohortError::dynamodb("Query", &e))?;
                if let Some(AttributeValue::S(sk)) = item.get("sk") {
                    out.insert(sk.clone());
                }
            }
        }
        Ok(out)
    }

    /// Records `joined` as members of `cohort_id` since `since` and `left` as no longer members.
    pub async fn record(
        &self,
        cohort_id: &str,
        since: &str,
        joined: &[String],
        left: &[String],
        deadline: Deadline,
    ) -> Result<(), CohortError> {
        let key = |user: &str| {
            HashMap::from([
                (
                    "pk".to_owned(),
                    AttributeValue::S(membership_pk(cohort_id, user)),
                ),
                ("sk".to_owned(), AttributeValue::S(user.to_owned())),
            ])
        };
        let mut writes = Vec::with_capacity(joined.len() + left.len());
        for user in joined {
            let mut item = key(user);
            item.insert("since".into(), AttributeValue::S(since.to_owned()));
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(|e| CohortError::Build(e.to_string()))?;
            writes.push(WriteRequest::builder().put_request(put).build());
        }
        for user in left {
            let delete = DeleteRequest::builder()
                .set_key(Some(key(user)))
                .build()
                .map_err(|e| CohortError::Build(e.to_string()))?;
            writes.push(WriteRequest::builder().delete_request(delete).build());
        }
        for chunk in writes.chunks(MAX_BATCH_WRITE_ITEMS) {
            self.batch_write(chunk.to_vec(), deadline).await?;
        }
        Ok(())
    }

    /// One BatchWriteItem, its unprocessed items sent again with backoff.
    async fn batch_write(
        &self,
        mut pending: Vec<WriteRequest>,
        deadline: Deadline,
    ) -> Result<(), CohortError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, pending.clone())
                .send()
                .await
                .map_err(|e| CohortError::dynamodb("BatchWriteItem", &e))?;
            pending = out
                .unprocessed_items
                .and_then(|mut m| m.remove(&self.table))
                .unwrap_or_default();
            if pending.is_empty() {
                return Ok(());
            }
            match UNPROCESSED_BACKOFF.next_wait(attempt, &deadline) {
                Ok(wait) => tokio::time::sleep(wait).await,
                Err(give_up) => {
                    return Err(CohortError::Unprocessed(format!(
                        "{} membership writes unprocessed: {give_up}",
                        pending.len()
                    )));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    #[test]
    fn history_keys_give_group_and_actor_whole() {
        assert_eq!(actor_of("h#auth#sub-1"), Some(("auth", "sub-1")));
        assert_eq!(actor_of("h#app#a#b"), Some(("app", "a#b")));
        assert_eq!(actor_of("c#pool=p#2026-11-01"), None);
        assert_eq!(actor_of("h#auth"), None);
    }

    #[test]
    fn membership_items_spread_over_the_partitions_and_stay_put() {
        let parts: BTreeSet<String> = (0..400)
            .map(|i| membership_pk("a-1", &format!("user-{i}")))
            .collect();
        assert_eq!(parts.len(), MEMBERSHIP_PARTITIONS as usize);
        assert_eq!(membership_pk("a-1", "u"), membership_pk("a-1", "u"));
        assert!(membership_pk("a-1", "u").starts_with("co#a-1#"));
    }

    /// The size a typical signed-in user's history has (what a Scan bills by): a pool and a client scope, active on
    /// 8 days of a year, three dimension values, the counted ids of its 8 days in each scope and one lane's undo
    /// record. docs/cohorts.md prices a run with 1 KB a history.
    #[test]
    fn a_typical_history_is_under_a_kilobyte() {
        use active_users::activity::Definition;
        use active_users::history::{Days, Dims, Undo};
        use active_users::lane::Position;
        use chrono::NaiveDate;
        let pool = "pool=us-east-1_EXAMPLE0".to_owned();
        let scopes = [
            pool.clone(),
            format!("{pool}/client=26charsofanappclientidxyz0"),
        ];
        let mut h = History::default();
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
        for scope in &scopes {
            let key = (Definition::Authenticating, scope.clone());
            let mut days = Days::default();
            for d in 1..=8 {
                days.set(day(d * 3));
            }
            h.days.insert(key.clone(), days);
            h.first.insert(key.clone(), day(3));
            h.dims.insert(
                key,
                Dims {
                    day: Some(day(24)),
                    values: ["platform=android", "locale=en-US", "app_version=2.14.1"]
                        .map(String::from)
                        .into(),
                },
            );
        }
        for d in 1..=8 {
            for s in 0..2 {
                h.counted
                    .entry(day(d * 3))
                    .or_default()
                    .insert(format!("{:016x}", d * 10 + s));
            }
        }
        h.undo.insert(
            "shardId-000000000001".into(),
            Undo {
                position: Position::new(
                    "49650000000000000000000000000000000000000000000000000001",
                    0,
                ),
                until: 1_795_000_000,
                days: scopes
                    .iter()
                    .map(|s| ((Definition::Authenticating, s.clone()), day(24)))
                    .collect(),
                ..Undo::default()
            },
        );
        let key = ("auth", "0a1b2c3d-0000-4000-8000-000000000000".to_owned());
        let item = active_users::store::history_item(&key, &h);
        let bytes = active_users::table::item_size(&item);
        assert!((400..1_024).contains(&bytes), "{bytes} bytes");
        // What the scan reads back is the history as written (days, first days, dimensions).
        let back = active_users::store::history_of(&item);
        assert_eq!(
            (back.days, back.first, back.dims),
            (h.days, h.first, h.dims)
        );
    }

    #[test]
    fn stored_values_convert_to_the_rollups_model() {
        let raw = HashMap::from([
            ("pk".to_owned(), AttributeValue::S("h#auth#u".into())),
            ("v".to_owned(), AttributeValue::N("3".into())),
            (
                "k".to_owned(),
                AttributeValue::M(HashMap::from([(
                    "x".to_owned(),
                    AttributeValue::L(vec![
                        AttributeValue::Bool(true),
                        AttributeValue::S("a".into()),
                    ]),
                )])),
            ),
            ("odd".to_owned(), AttributeValue::Null(true)),
        ]);
        let item = item_of(&raw);
        assert_eq!(item["v"], Value::N(3));
        assert_eq!(
            item["k"],
            Value::M([("x".to_owned(), Value::L(vec![Value::S("a".into())]))].into())
        );
        assert!(!item.contains_key("odd"));
    }
}
