//! [`Table`] on DynamoDB, through the AWS SDK. Errors are sorted at this edge: a condition that failed (with the
//! item as it is), a transaction cancelled by a conflict, a transient failure (throttling, 5xx, timeouts), or a
//! permanent one (validation, an item over 400 KB, a missing table or key schema), which the handler dead-letters
//! instead of retrying forever. Request units are metered from the items' sizes, as [`crate::table::Memory`] does.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update,
};

use crate::table::{Expect, Item, Key, Meter, Table, TableError, TxWrite, Value, item_size};

/// The rollup table on DynamoDB.
#[derive(Debug, Clone)]
pub struct Dynamo {
    client: Client,
    table: String,
    meter: std::sync::Arc<Meter>,
}

impl Dynamo {
    /// The table `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            meter: std::sync::Arc::new(Meter::default()),
        }
    }
}

fn to_av(v: &Value) -> AttributeValue {
    match v {
        Value::S(s) => AttributeValue::S(s.clone()),
        Value::N(n) => AttributeValue::N(n.to_string()),
        Value::B(b) => AttributeValue::B(Blob::new(b.clone())),
        Value::L(items) => AttributeValue::L(items.iter().map(to_av).collect()),
        Value::M(map) => {
            AttributeValue::M(map.iter().map(|(k, v)| (k.clone(), to_av(v))).collect())
        }
    }
}

fn from_av(v: &AttributeValue) -> Option<Value> {
    Some(match v {
        AttributeValue::S(s) => Value::S(s.clone()),
        // A number past i64 (a day's revenue summed by DynamoDB past its bound) reads as the bound, not as nothing.
        AttributeValue::N(n) => Value::N(n.parse().ok().or_else(|| {
            let x: f64 = n.parse().ok()?;
            Some(if x < 0.0 { i64::MIN } else { i64::MAX })
        })?),
        AttributeValue::B(b) => Value::B(b.as_ref().to_vec()),
        AttributeValue::L(items) => Value::L(items.iter().filter_map(from_av).collect()),
        AttributeValue::M(map) => Value::M(
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), from_av(v)?)))
                .collect(),
        ),
        _ => return None,
    })
}

fn to_item(map: &HashMap<String, AttributeValue>) -> Item {
    map.iter()
        .filter_map(|(k, v)| Some((k.clone(), from_av(v)?)))
        .collect()
}

fn key_map(key: &Key) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(key.pk.clone())),
        ("sk".to_owned(), AttributeValue::S(key.sk.clone())),
    ])
}

/// The error codes that no retry mends.
const PERMANENT: &[&str] = &[
    "ValidationException",
    "ResourceNotFoundException",
    "ItemCollectionSizeLimitExceededException",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "SerializationException",
];

/// Sorts an SDK error by its code: permanent, or transient (everything else, throttling and 5xx included).
fn sorted<E, R>(e: SdkError<E, R>) -> TableError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = e.code().map(str::to_owned);
    let text = aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string();
    match code.as_deref() {
        Some(c) if PERMANENT.contains(&c) => TableError::Permanent(text),
        _ => TableError::Transient(text),
    }
}

fn condition(expect: &Expect) -> Option<(String, Vec<(String, AttributeValue)>)> {
    match expect {
        Expect::Any => None,
        Expect::Absent | Expect::Version(0) | Expect::Pos(None) => {
            Some(("attribute_not_exists(pk)".into(), Vec::new()))
        }
        Expect::Version(v) => Some((
            "v = :expected".into(),
            vec![(":expected".into(), AttributeValue::N(v.to_string()))],
        )),
        Expect::Pos(Some(p)) => Some((
            "pos = :expected".into(),
            vec![(":expected".into(), AttributeValue::S(p.clone()))],
        )),
    }
}

#[async_trait]
impl Table for Dynamo {
    async fn get(&self, key: &Key, consistent: bool) -> Result<Option<Item>, TableError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_map(key)))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(sorted)?;
        let item = out.item().map(to_item);
        self.meter
            .read("GetItem", &[item.as_ref().map_or(0, item_size)], consistent);
        Ok(item)
    }

    async fn batch_get(&self, keys: &[Key], consistent: bool) -> Result<Vec<Item>, TableError> {
        let mut found = Vec::new();
        for chunk in keys.chunks(100) {
            let mut pending: Vec<HashMap<String, AttributeValue>> =
                chunk.iter().map(key_map).collect();
            let mut rounds = 0u32;
            let mut sizes = Vec::new();
            while !pending.is_empty() {
                rounds += 1;
                if rounds > 6 {
                    return Err(TableError::Transient(format!(
                        "{} reads left unprocessed",
                        pending.len()
                    )));
                }
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    .consistent_read(consistent)
                    .build()
                    .map_err(|e| TableError::Permanent(e.to_string()))?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(sorted)?;
                for item in out
                    .responses()
                    .and_then(|r| r.get(&self.table))
                    .into_iter()
                    .flatten()
                {
                    let item = to_item(item);
                    sizes.push(item_size(&item));
                    found.push(item);
                }
                if let Some(left) = out.unprocessed_keys().and_then(|u| u.get(&self.table)) {
                    pending = left.keys().to_vec();
                    tokio::time::sleep(std::time::Duration::from_millis(20 << rounds)).await;
                }
            }
            // Keys not found still cost the minimum read.
            sizes.resize(chunk.len().max(sizes.len()), 0);
            self.meter.read("BatchGetItem", &sizes, consistent);
        }
        Ok(found)
    }

    async fn put(&self, item: Item, expect: Expect) -> Result<(), TableError> {
        let size = item_size(&item);
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(
                item.iter().map(|(k, v)| (k.clone(), to_av(v))).collect(),
            ))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if let Some((expr, values)) = condition(&expect) {
            put = put.condition_expression(expr);
            for (name, value) in values {
                put = put.expression_attribute_values(name, value);
            }
        }
        self.meter.write("PutItem", 0, size, false);
        match put.send().await {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                let old = match e.err() {
                    aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => {
                        c.item().map(to_item)
                    }
                    _ => None,
                };
                Err(TableError::ConditionFailed(old.map(Box::new)))
            }
            Err(SdkError::ServiceError(e))
                if e.err().meta().code() == Some("TransactionConflictException") =>
            {
                Err(TableError::Conflict(e.err().to_string()))
            }
            Err(e) => Err(sorted(e)),
        }
    }

    async fn transact(&self, writes: Vec<TxWrite>) -> Result<(), TableError> {
        let mut items = Vec::with_capacity(writes.len());
        for w in &writes {
            let item = match w {
                TxWrite::Add { key, add } => {
                    let mut u = Update::builder()
                        .table_name(&self.table)
                        .set_key(Some(key_map(key)));
                    let mut parts = Vec::new();
                    for (i, (attr, n)) in add.iter().enumerate() {
                        parts.push(format!("#a{i} :v{i}"));
                        u = u
                            .expression_attribute_names(format!("#a{i}"), attr)
                            .expression_attribute_values(
                                format!(":v{i}"),
                                AttributeValue::N(n.to_string()),
                            );
                    }
                    let u = u
                        .update_expression(format!("ADD {}", parts.join(", ")))
                        .build()
                        .map_err(|e| TableError::Permanent(e.to_string()))?;
                    // The item's size after is not known here: a counter item is well under 1 KB.
                    self.meter.write("TransactWriteItems", 0, 1, true);
                    TransactWriteItem::builder().update(u).build()
                }
                TxWrite::Put { item, expect } => {
                    let mut p = Put::builder().table_name(&self.table).set_item(Some(
                        item.iter().map(|(k, v)| (k.clone(), to_av(v))).collect(),
                    ));
                    if let Some((expr, values)) = condition(expect) {
                        p = p.condition_expression(expr);
                        for (name, value) in values {
                            p = p.expression_attribute_values(name, value);
                        }
                    }
                    self.meter
                        .write("TransactWriteItems", 0, item_size(item), true);
                    let p = p
                        .build()
                        .map_err(|e| TableError::Permanent(e.to_string()))?;
                    TransactWriteItem::builder().put(p).build()
                }
            };
            items.push(item);
        }
        self.meter.request("TransactWriteItems");
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) => match e.err() {
                aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => {
                    let codes: Vec<&str> = c
                        .cancellation_reasons()
                        .iter()
                        .filter_map(|r| r.code())
                        .filter(|c| *c != "None")
                        .collect();
                    if codes.contains(&"ConditionalCheckFailed") {
                        Err(TableError::ConditionFailed(None))
                    } else if codes.contains(&"TransactionConflict") {
                        Err(TableError::Conflict(format!("{codes:?}")))
                    } else if codes.iter().any(|c| *c == "ValidationError" || *c == "ItemCollectionSizeLimitExceeded") {
                        Err(TableError::Permanent(format!("transaction cancelled: {codes:?}")))
                    } else {
                        Err(TableError::Transient(format!("transaction cancelled: {codes:?}")))
                    }
                }
                _ => Err(sorted(SdkError::ServiceError(e))),
            },
            Err(e) => Err(sorted(e)),
        }
    }

    async fn query(&self, pk: &str) -> Result<Vec<Item>, TableError> {
        let pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .collect::<Vec<_>>()
            .await;
        let mut out = Vec::new();
        for item in pages {
            out.push(to_item(&item.map_err(sorted)?));
        }
        self.meter.query(out.iter().map(item_size).sum(), true);
        Ok(out)
    }

    async fn partitions(&self, prefix: &str) -> Result<BTreeSet<String>, TableError> {
        let items = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("begins_with(pk, :p)")
            .expression_attribute_values(":p", AttributeValue::S(prefix.to_owned()))
            .projection_expression("pk")
            .into_paginator()
            .items()
            .send()
            .collect::<Vec<_>>()
            .await;
        self.meter.request("Scan");
        let mut out = BTreeSet::new();
        for item in items {
            if let Some(AttributeValue::S(pk)) = item.map_err(sorted)?.get("pk") {
                out.insert(pk.clone());
            }
        }
        Ok(out)
    }

    fn meter(&self) -> &Meter {
        &self.meter
    }
}
