//! The rollup table on DynamoDB: reads the markers a batch may need, writes the new ones with their counters in
//! transactions, and merges the day's sketches under optimistic concurrency. See [`crate::plan`] for the layout.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem, Update};
use bridge_core::Deadline;

use crate::plan::{Key, MarkerWrite, Op};
use crate::sketch::Sketch;

/// Items in one TransactWriteItems request, at most (DynamoDB's limit).
pub const MAX_TRANSACTION_ITEMS: usize = 100;
/// Keys in one BatchGetItem request, at most (DynamoDB's limit).
pub const MAX_BATCH_GET_KEYS: usize = 100;
/// BatchGetItem requests in flight at once.
const PARALLEL_READS: usize = 4;
/// Attempts of a sketch's read-merge-write when another invocation wrote it in between.
const SKETCH_ATTEMPTS: u32 = 5;

/// A rollup write or read that did not happen; worth a retry of the records that needed it.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("rollup table: {0}")]
pub struct StoreError(pub String);

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// An SDK error with its whole chain of causes.
fn sdk_err(e: impl std::error::Error) -> StoreError {
    err(aws_sdk_dynamodb::error::DisplayErrorContext(e))
}

/// The rollup table.
#[derive(Debug, Clone)]
pub struct RollupStore {
    client: Client,
    table: String,
    event_marker_ttl: Duration,
}

/// What one invocation wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Written {
    /// Markers written (each with its counters).
    pub markers: u64,
    /// Markers found written by another invocation meanwhile (their counters moved with them).
    pub raced: u64,
    /// TransactWriteItems requests.
    pub transactions: u64,
    /// Sketch items written.
    pub sketches: u64,
}

fn key_map(key: &Key) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(key.pk.clone())),
        ("sk".to_owned(), AttributeValue::S(key.sk.clone())),
    ])
}

fn key_of(item: &HashMap<String, AttributeValue>) -> Option<Key> {
    Some(Key {
        pk: item.get("pk")?.as_s().ok()?.clone(),
        sk: item.get("sk")?.as_s().ok()?.clone(),
    })
}

impl RollupStore {
    /// The store on `table`; event markers expire `event_marker_ttl` after they are written.
    pub fn new(client: Client, table: impl Into<String>, event_marker_ttl: Duration) -> Self {
        Self {
            client,
            table: table.into(),
            event_marker_ttl,
        }
    }

    /// Which of `keys` exist, with the `day` of first-seen markers.
    pub async fn read_markers(
        &self,
        keys: &BTreeSet<Key>,
        deadline: Deadline,
    ) -> Result<HashMap<Key, Option<String>>, StoreError> {
        use futures_util::stream::{StreamExt as _, TryStreamExt as _};
        let all: Vec<&Key> = keys.iter().collect();
        let chunks: Vec<Vec<HashMap<String, AttributeValue>>> = all
            .chunks(MAX_BATCH_GET_KEYS)
            .map(|chunk| chunk.iter().map(|k| key_map(k)).collect())
            .collect();
        // A few requests at a time: a batch needs about one per five events.
        let found: Vec<Vec<(Key, Option<String>)>> = futures_util::stream::iter(chunks)
            .map(|chunk| self.read_chunk(chunk, deadline))
            .buffer_unordered(PARALLEL_READS)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    /// One BatchGetItem of at most [`MAX_BATCH_GET_KEYS`] keys, with its unprocessed keys asked again.
    async fn read_chunk(
        &self,
        mut pending: Vec<HashMap<String, AttributeValue>>,
        deadline: Deadline,
    ) -> Result<Vec<(Key, Option<String>)>, StoreError> {
        let mut found = Vec::new();
        let mut rounds = 0;
        while !pending.is_empty() {
            rounds += 1;
            if rounds > 6 || deadline.remaining() == Some(Duration::ZERO) {
                return Err(StoreError(format!(
                    "{} marker reads left unprocessed",
                    pending.len()
                )));
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                // Strongly consistent: a marker the previous batch wrote must be seen, or a retention
                // (which reads the days around) would be missed; the conditions guard the writes anyway.
                .consistent_read(true)
                .projection_expression("pk, sk, #d")
                .expression_attribute_names("#d", "day")
                .build()
                .map_err(err)?;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(sdk_err)?;
            for item in out
                .responses()
                .and_then(|r| r.get(&self.table))
                .into_iter()
                .flatten()
            {
                if let Some(key) = key_of(item) {
                    let day = item.get("day").and_then(|d| d.as_s().ok()).cloned();
                    found.push((key, day));
                }
            }
            if let Some(left) = out.unprocessed_keys().and_then(|u| u.get(&self.table)) {
                pending = left.keys().to_vec();
                tokio::time::sleep(Duration::from_millis(20 << rounds)).await;
            }
        }
        Ok(found)
    }

    fn marker_item(&self, op: &Op) -> Result<TransactWriteItem, StoreError> {
        match &op.write {
            MarkerWrite::Create { day } => {
                let mut item = key_map(&op.marker);
                if let Some(day) = day {
                    item.insert("day".into(), AttributeValue::S(day.clone()));
                }
                if op.marker.pk.starts_with("event#") {
                    let expires = chrono::Utc::now().timestamp()
                        + i64::try_from(self.event_marker_ttl.as_secs()).unwrap_or(i64::MAX / 2);
                    item.insert("expires_at".into(), AttributeValue::N(expires.to_string()));
                }
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(pk)")
                    .build()
                    .map_err(err)?;
                Ok(TransactWriteItem::builder().put(put).build())
            }
            MarkerWrite::MoveFirstDay { from, to } => {
                let update = Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(key_map(&op.marker)))
                    .update_expression("SET #d = :to")
                    .condition_expression("#d = :from")
                    .expression_attribute_names("#d", "day")
                    .expression_attribute_values(":to", AttributeValue::S(to.clone()))
                    .expression_attribute_values(":from", AttributeValue::S(from.clone()))
                    .build()
                    .map_err(err)?;
                Ok(TransactWriteItem::builder().update(update).build())
            }
        }
    }

    fn counter_item(
        &self,
        key: &Key,
        adds: &BTreeMap<String, i64>,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key_map(key)));
        let mut parts = Vec::new();
        for (i, (attr, n)) in adds.iter().enumerate() {
            parts.push(format!("#a{i} :v{i}"));
            update = update
                .expression_attribute_names(format!("#a{i}"), attr)
                .expression_attribute_values(format!(":v{i}"), AttributeValue::N(n.to_string()));
        }
        let update = update
            .update_expression(format!("ADD {}", parts.join(", ")))
            .build()
            .map_err(err)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Packs ops into transactions of at most [`MAX_TRANSACTION_ITEMS`] items (markers plus the distinct counter
    /// items they move): what [`RollupStore::apply`] sends, one TransactWriteItems request each.
    pub fn pack(ops: Vec<Op>) -> Vec<Vec<Op>> {
        let mut out: Vec<Vec<Op>> = Vec::new();
        let mut current: Vec<Op> = Vec::new();
        let mut counters: BTreeSet<Key> = BTreeSet::new();
        for op in ops {
            let new_counters: BTreeSet<&Key> = op
                .increments
                .iter()
                .map(|(k, _, _)| k)
                .filter(|k| !counters.contains(*k))
                .collect();
            if !current.is_empty()
                && current.len() + 1 + counters.len() + new_counters.len() > MAX_TRANSACTION_ITEMS
            {
                out.push(std::mem::take(&mut current));
                counters.clear();
            }
            counters.extend(op.increments.iter().map(|(k, _, _)| k.clone()));
            current.push(op);
        }
        if !current.is_empty() {
            out.push(current);
        }
        out
    }

    /// Writes every op, each marker with its counter moves, atomically per transaction. A marker another
    /// invocation wrote meanwhile is dropped with its moves and the rest resent. Returns what was written and the
    /// records (by index) whose writes failed.
    pub async fn apply(
        &self,
        ops: Vec<Op>,
        deadline: Deadline,
    ) -> (Written, Vec<(Vec<usize>, StoreError)>) {
        let mut written = Written::default();
        let mut failed = Vec::new();
        for mut group in Self::pack(ops) {
            let mut attempt = 0;
            loop {
                attempt += 1;
                if group.is_empty() {
                    break;
                }
                if deadline.remaining() == Some(Duration::ZERO) {
                    let records = group.iter().flat_map(|o| o.records.clone()).collect();
                    failed.push((
                        records,
                        StoreError("the invocation deadline came first".into()),
                    ));
                    break;
                }
                match self.transact(&group).await {
                    Ok(()) => {
                        written.transactions += 1;
                        written.markers += group.len() as u64;
                        break;
                    }
                    Err(Outcome::Raced(indexes)) if attempt < 4 => {
                        written.transactions += 1;
                        written.raced += indexes.len() as u64;
                        let mut i = 0;
                        group.retain(|_| {
                            let keep = !indexes.contains(&i);
                            i += 1;
                            keep
                        });
                    }
                    Err(Outcome::Raced(_)) => {
                        let records = group.iter().flat_map(|o| o.records.clone()).collect();
                        failed.push((records, StoreError("markers kept changing under us".into())));
                        break;
                    }
                    Err(Outcome::Failed(e)) => {
                        let records = group.iter().flat_map(|o| o.records.clone()).collect();
                        failed.push((records, e));
                        break;
                    }
                }
            }
        }
        (written, failed)
    }

    async fn transact(&self, group: &[Op]) -> Result<(), Outcome> {
        let mut items = Vec::with_capacity(MAX_TRANSACTION_ITEMS);
        let mut counters: BTreeMap<Key, BTreeMap<String, i64>> = BTreeMap::new();
        for op in group {
            items.push(self.marker_item(op).map_err(Outcome::Failed)?);
            for (key, attr, n) in &op.increments {
                *counters
                    .entry(key.clone())
                    .or_default()
                    .entry(attr.clone())
                    .or_default() += n;
            }
        }
        for (key, adds) in &counters {
            items.push(self.counter_item(key, adds).map_err(Outcome::Failed)?);
        }
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) => match e.err() {
                TransactWriteItemsError::TransactionCanceledException(c) => {
                    // Reasons come in item order: the markers first, in `group` order.
                    let raced: Vec<usize> = c
                        .cancellation_reasons()
                        .iter()
                        .take(group.len())
                        .enumerate()
                        .filter(|(_, r)| r.code() == Some("ConditionalCheckFailed"))
                        .map(|(i, _)| i)
                        .collect();
                    if raced.is_empty() {
                        Err(Outcome::Failed(err(format!(
                            "transaction cancelled: {:?}",
                            c.cancellation_reasons()
                                .iter()
                                .filter_map(|r| r.code())
                                .collect::<Vec<_>>()
                        ))))
                    } else {
                        Err(Outcome::Raced(raced))
                    }
                }
                other => Err(Outcome::Failed(sdk_err(other))),
            },
            Err(other) => Err(Outcome::Failed(sdk_err(other))),
        }
    }

    /// Adds each update's actors to its stored sketch: read, merge, write only if nobody wrote it meanwhile
    /// (`version`), again on a race. A redelivered batch changes no register and writes nothing. Returns what was
    /// written and the records whose sketches failed.
    pub async fn merge_sketches(
        &self,
        updates: BTreeMap<Key, (BTreeSet<String>, Vec<usize>)>,
        deadline: Deadline,
    ) -> (u64, Vec<(Vec<usize>, StoreError)>) {
        let mut written = 0;
        let mut failed = Vec::new();
        for (key, (actors, records)) in updates {
            if deadline.remaining() == Some(Duration::ZERO) {
                failed.push((
                    records,
                    StoreError("the invocation deadline came first".into()),
                ));
                continue;
            }
            match self.merge_one(&key, &actors).await {
                Ok(true) => written += 1,
                Ok(false) => {}
                Err(e) => failed.push((records, e)),
            }
        }
        (written, failed)
    }

    async fn merge_one(&self, key: &Key, actors: &BTreeSet<String>) -> Result<bool, StoreError> {
        for _ in 0..SKETCH_ATTEMPTS {
            let (stored, version) = self.read_sketch(key).await?;
            let mut sketch = stored.clone().unwrap_or_default();
            for actor in actors {
                sketch.insert(actor);
            }
            let bytes = sketch.to_bytes();
            if stored.as_ref().is_some_and(|s| s.to_bytes() == bytes) {
                return Ok(false);
            }
            let mut item = key_map(key);
            item.insert("hll".into(), AttributeValue::B(Blob::new(bytes)));
            item.insert(
                "version".into(),
                AttributeValue::N((version + 1).to_string()),
            );
            let mut put = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item));
            put = if version == 0 {
                // A dimension value's first sketch of the day: list the value first (an idempotent set add), so
                // that a failure here leaves nothing half done.
                self.index_dimension(key).await?;
                put.condition_expression("attribute_not_exists(pk)")
            } else {
                put.condition_expression("version = :v")
                    .expression_attribute_values(":v", AttributeValue::N(version.to_string()))
            };
            match put.send().await {
                Ok(_) => return Ok(true),
                Err(SdkError::ServiceError(e))
                    if e.err().is_conditional_check_failed_exception() => {}
                Err(e) => return Err(sdk_err(e)),
            }
        }
        Err(StoreError(format!(
            "sketch {} {} kept changing under us",
            key.pk, key.sk
        )))
    }

    async fn index_dimension(&self, key: &Key) -> Result<(), StoreError> {
        let Some((definition, scope, dim)) = crate::plan::sketch_parts(key) else {
            return Ok(());
        };
        if dim == "all" {
            return Ok(());
        }
        let index = Key {
            pk: format!("dims#{definition}#{scope}"),
            sk: "-".into(),
        };
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_map(&index)))
            .update_expression("ADD #v :d")
            .expression_attribute_names("#v", "values")
            .expression_attribute_values(":d", AttributeValue::Ss(vec![dim.to_owned()]))
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    /// The `name=value` dimensions that have sketches for a definition and scope.
    pub async fn dimension_values(
        &self,
        definition: crate::activity::Definition,
        scope: &str,
    ) -> Result<Vec<String>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_map(&crate::plan::dimension_index(
                definition, scope,
            ))))
            .send()
            .await
            .map_err(sdk_err)?;
        let mut values: Vec<String> = out
            .item()
            .and_then(|i| i.get("values"))
            .and_then(|v| v.as_ss().ok())
            .cloned()
            .unwrap_or_default();
        values.sort();
        Ok(values)
    }

    /// A stored sketch and its version (0: none stored).
    pub async fn read_sketch(&self, key: &Key) -> Result<(Option<Sketch>, u64), StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_map(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_err)?;
        let Some(item) = out.item() else {
            return Ok((None, 0));
        };
        let version = item
            .get("version")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let sketch = match item.get("hll").and_then(|b| b.as_b().ok()) {
            Some(bytes) => Some(Sketch::from_bytes(bytes.as_ref()).map_err(err)?),
            None => None,
        };
        Ok((sketch, version))
    }

    /// Every counter item of a scope: (period, counters), periods in order (months `YYYY-MM`, days
    /// `YYYY-MM-DD`).
    pub async fn counter_items(
        &self,
        scope: &str,
    ) -> Result<Vec<(String, BTreeMap<String, i64>)>, StoreError> {
        let pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(
                ":pk",
                AttributeValue::S(crate::plan::counter_item(scope, "").pk),
            )
            .into_paginator()
            .items()
            .send()
            .collect::<Vec<_>>()
            .await;
        let mut out = Vec::new();
        for item in pages {
            let item = item.map_err(sdk_err)?;
            let Some(key) = key_of(&item) else { continue };
            out.push((key.sk, counters_of(&item)));
        }
        Ok(out)
    }

    /// The scopes that have counters (a Scan: for local runs and small tables; name the scope otherwise).
    pub async fn scopes(&self) -> Result<Vec<String>, StoreError> {
        let items = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("begins_with(pk, :p)")
            .expression_attribute_values(":p", AttributeValue::S("count#".into()))
            .projection_expression("pk")
            .into_paginator()
            .items()
            .send()
            .collect::<Vec<_>>()
            .await;
        let mut scopes = BTreeSet::new();
        for item in items {
            let item = item.map_err(sdk_err)?;
            if let Some(pk) = item.get("pk").and_then(|v| v.as_s().ok()) {
                scopes.insert(pk.trim_start_matches("count#").to_owned());
            }
        }
        Ok(scopes.into_iter().collect())
    }

    /// The counters of a scope and period (`YYYY-MM-DD` or `YYYY-MM`).
    pub async fn counters(
        &self,
        scope: &str,
        period: &str,
    ) -> Result<BTreeMap<String, i64>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_map(&crate::plan::counter_item(scope, period))))
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(out.item().map(counters_of).unwrap_or_default())
    }
}

fn counters_of(item: &HashMap<String, AttributeValue>) -> BTreeMap<String, i64> {
    item.iter()
        .filter(|(k, _)| k.as_str() != "pk" && k.as_str() != "sk")
        .filter_map(|(k, v)| Some((k.clone(), v.as_n().ok()?.parse().ok()?)))
        .collect()
}

enum Outcome {
    /// The markers at these positions of the group exist already.
    Raced(Vec<usize>),
    Failed(StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(i: usize, counter: &str) -> Op {
        Op {
            marker: Key {
                pk: format!("m{i}"),
                sk: "-".into(),
            },
            write: MarkerWrite::Create { day: None },
            increments: vec![(
                Key {
                    pk: counter.into(),
                    sk: "-".into(),
                },
                "a".into(),
                1,
            )],
            records: vec![i],
        }
    }

    #[test]
    fn transactions_hold_at_most_a_hundred_items_counting_their_counters() {
        let ops: Vec<Op> = (0..250)
            .map(|i| op(i, if i % 2 == 0 { "c1" } else { "c2" }))
            .collect();
        let groups = RollupStore::pack(ops);
        assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), 250);
        for g in &groups {
            let counters: BTreeSet<&Key> = g
                .iter()
                .flat_map(|o| o.increments.iter().map(|(k, _, _)| k))
                .collect();
            assert!(
                g.len() + counters.len() <= MAX_TRANSACTION_ITEMS,
                "{}",
                g.len()
            );
        }
        assert_eq!(groups[0].len(), 98);
    }
}
