//! The dedup store port: a high-water mark per change key, in DynamoDB.
//!
//! The store knows nothing of what a mark means; the function that uses it decides which mark is newer
//! (see sync-processor's `dedup` module). Writes are compare-and-swap against the mark that was read, so two
//! concurrent invocations can never move a mark backwards. Items expire through DynamoDB TTL.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};

use crate::retry::Backoff;

/// BatchGetItem takes at most 100 keys per request.
/// Source: docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html
pub const MAX_KEYS_PER_BATCH_GET: usize = 100;
/// How often unprocessed keys of a BatchGetItem are asked for again before giving up.
pub const MAX_UNPROCESSED_ROUNDS: u32 = 5;
/// The wait before asking for unprocessed keys again (the one retry stance: full jitter, doubling).
const UNPROCESSED_BACKOFF: Backoff = Backoff::new(
    MAX_UNPROCESSED_ROUNDS,
    Duration::from_millis(100),
    Duration::from_millis(1_600),
);

/// The table's partition key attribute (string).
pub const ATTR_KEY: &str = "pk";
/// The mark's version (for Cognito Sync: the syncCount).
pub const ATTR_VERSION: &str = "version";
/// The mark's server modification time, epoch ms.
pub const ATTR_MODIFIED_MS: &str = "modified_ms";
/// The TTL attribute, epoch seconds.
pub const ATTR_EXPIRES_AT: &str = "expires_at";

/// A high-water mark: the version and server time of the newest change forwarded for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mark {
    /// A version number that grows with each change (syncCount).
    pub version: i64,
    /// Server modification time of that change, epoch ms.
    pub modified_ms: i64,
}

/// What a compare-and-swap write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    /// The mark was written.
    Advanced,
    /// Another writer moved the mark first; this is what it holds now.
    Conflict(Option<Mark>),
}

/// The store failed (throttled, unreachable, misconfigured).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("dedup store {operation} failed: {message}")]
pub struct DedupError {
    /// The operation.
    pub operation: &'static str,
    /// What the SDK said.
    pub message: String,
}

/// Reads and moves high-water marks.
#[async_trait]
pub trait DedupStore: Send + Sync + std::fmt::Debug {
    /// The current marks of `keys` (absent keys have none).
    async fn load(&self, keys: &[String]) -> Result<HashMap<String, Mark>, DedupError>;
    /// Writes `new` for `key` if the mark is still `expected`.
    async fn advance(
        &self,
        key: &str,
        expected: Option<Mark>,
        new: Mark,
    ) -> Result<Advance, DedupError>;
}

/// [`DedupStore`] on a DynamoDB table with a string partition key `pk` and TTL on `expires_at`.
#[derive(Debug, Clone)]
pub struct DynamoDedupStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    ttl: Duration,
}

impl DynamoDedupStore {
    /// Marks live in `table` and expire `ttl` after their last move.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>, ttl: Duration) -> Self {
        Self {
            client,
            table: table.into(),
            ttl,
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Mark>, DedupError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(ATTR_KEY, AttributeValue::S(key.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| err("GetItem", &e))?;
        Ok(out.item.as_ref().and_then(mark_from_item))
    }
}

fn err<E: std::error::Error>(operation: &'static str, e: &E) -> DedupError {
    DedupError {
        operation,
        message: aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
    }
}

/// The mark stored in an item, `None` when the item lacks or garbles it.
pub fn mark_from_item(item: &HashMap<String, AttributeValue>) -> Option<Mark> {
    let num = |name: &str| item.get(name)?.as_n().ok()?.parse::<i64>().ok();
    Some(Mark {
        version: num(ATTR_VERSION)?,
        modified_ms: num(ATTR_MODIFIED_MS)?,
    })
}

#[async_trait]
impl DedupStore for DynamoDedupStore {
    async fn load(&self, keys: &[String]) -> Result<HashMap<String, Mark>, DedupError> {
        let mut unique: Vec<&String> = keys.iter().collect();
        unique.sort_unstable();
        unique.dedup();
        let mut marks = HashMap::with_capacity(unique.len());
        for chunk in unique.chunks(MAX_KEYS_PER_BATCH_GET) {
            let mut request = KeysAndAttributes::builder().consistent_read(true);
            for key in chunk {
                request = request.keys(HashMap::from([(
                    ATTR_KEY.to_owned(),
                    AttributeValue::S((*key).clone()),
                )]));
            }
            let mut pending = Some(request.build().map_err(|e| err("BatchGetItem", &e))?);
            let mut round = 0;
            while let Some(keys_and_attributes) = pending.take() {
                if round == MAX_UNPROCESSED_ROUNDS {
                    return Err(DedupError {
                        operation: "BatchGetItem",
                        message: format!(
                            "keys still unprocessed after {MAX_UNPROCESSED_ROUNDS} rounds"
                        ),
                    });
                }
                if round > 0 {
                    tokio::time::sleep(UNPROCESSED_BACKOFF.delay(round)).await;
                }
                round += 1;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, keys_and_attributes)
                    .send()
                    .await
                    .map_err(|e| err("BatchGetItem", &e))?;
                for item in out
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default()
                {
                    if let (Some(AttributeValue::S(key)), Some(mark)) =
                        (item.get(ATTR_KEY), mark_from_item(&item))
                    {
                        marks.insert(key.clone(), mark);
                    }
                }
                pending = out
                    .unprocessed_keys
                    .unwrap_or_default()
                    .remove(&self.table)
                    .filter(|k| !k.keys.is_empty());
            }
        }
        Ok(marks)
    }

    async fn advance(
        &self,
        key: &str,
        expected: Option<Mark>,
        new: Mark,
    ) -> Result<Advance, DedupError> {
        let expires_at = chrono::Utc::now().timestamp()
            + i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let n = |x: i64| AttributeValue::N(x.to_string());
        // Insert only if absent; otherwise swap only if the mark is still the one that was read.
        let (condition, names, values) = match expected {
            None => (
                "attribute_not_exists(#pk)",
                HashMap::from([("#pk".to_owned(), ATTR_KEY.to_owned())]),
                None,
            ),
            Some(old) => (
                "#v = :v AND #m = :m",
                HashMap::from([
                    ("#v".to_owned(), ATTR_VERSION.to_owned()),
                    ("#m".to_owned(), ATTR_MODIFIED_MS.to_owned()),
                ]),
                Some(HashMap::from([
                    (":v".to_owned(), n(old.version)),
                    (":m".to_owned(), n(old.modified_ms)),
                ])),
            ),
        };
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(ATTR_KEY, AttributeValue::S(key.to_owned()))
            .item(ATTR_VERSION, n(new.version))
            .item(ATTR_MODIFIED_MS, n(new.modified_ms))
            .item(ATTR_EXPIRES_AT, n(expires_at))
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(values);
        match put.send().await {
            Ok(_) => Ok(Advance::Advanced),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(Advance::Conflict(self.get(key).await?))
            }
            Err(e) => Err(err("PutItem", &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_from_item_reads_numbers_and_refuses_garbage() {
        let mut item = HashMap::from([
            (ATTR_VERSION.to_owned(), AttributeValue::N("7".into())),
            (
                ATTR_MODIFIED_MS.to_owned(),
                AttributeValue::N("1700000000000".into()),
            ),
        ]);
        assert_eq!(
            mark_from_item(&item),
            Some(Mark {
                version: 7,
                modified_ms: 1_700_000_000_000
            })
        );
        item.insert(ATTR_VERSION.to_owned(), AttributeValue::S("7".into()));
        assert_eq!(mark_from_item(&item), None);
    }
}
