//! The rollup's port to its table: a handful of DynamoDB operations over a small value model, with two
//! implementations: DynamoDB itself ([`Dynamo`]) and an in-memory table ([`Memory`]) that keeps DynamoDB's rules
//! that matter here (conditions, transactions of at most 100 items, a conflict cancels a transaction, item size)
//! and meters what each request would cost by DynamoDB's own rules ([`Meter`]). The store's code is the same over
//! both: the benchmark's cost figures come from it, and so does the test of concurrent lanes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

/// A stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A string.
    S(String),
    /// A number (integers are all the rollup stores).
    N(i64),
    /// Bytes.
    B(Vec<u8>),
    /// A list.
    L(Vec<Value>),
    /// A map.
    M(BTreeMap<String, Value>),
}

/// An item: attribute name to value (`pk` and `sk` included).
pub type Item = BTreeMap<String, Value>;

/// An item's key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// Partition key.
    pub pk: String,
    /// Sort key.
    pub sk: String,
}

impl Key {
    /// A key.
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self {
            pk: pk.into(),
            sk: sk.into(),
        }
    }
}

/// The size DynamoDB bills a value by (docs: "Item sizes and formats"): strings and bytes by length, numbers by
/// about one byte per two digits plus one, lists and maps 3 bytes plus their elements (and keys) plus one byte each.
pub fn value_size(v: &Value) -> usize {
    match v {
        Value::S(s) => s.len(),
        Value::N(n) => n.unsigned_abs().to_string().len().div_ceil(2) + 1,
        Value::B(b) => b.len(),
        Value::L(items) => 3 + items.iter().map(|i| value_size(i) + 1).sum::<usize>(),
        Value::M(map) => {
            3 + map
                .iter()
                .map(|(k, v)| k.len() + value_size(v) + 1)
                .sum::<usize>()
        }
    }
}

/// The size of an item: its attribute names and values.
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

/// What a write expects of the item it replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Nothing.
    Any,
    /// That it does not exist.
    Absent,
    /// That its attribute `v` is this version (0: that it does not exist).
    Version(u64),
    /// That its attribute `pos` is this string (`None`: that it does not exist).
    Pos(Option<String>),
}

/// One item of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxWrite {
    /// Adds numbers to attributes (creating the item and the attributes as needed).
    Add {
        /// The item.
        key: Key,
        /// Attribute to amount.
        add: BTreeMap<String, i64>,
    },
    /// Writes a whole item.
    Put {
        /// The item (with `pk` and `sk`).
        item: Item,
        /// Its condition.
        expect: Expect,
    },
}

impl TxWrite {
    fn key(&self) -> Key {
        match self {
            Self::Add { key, .. } => key.clone(),
            Self::Put { item, .. } => key_of(item).unwrap_or_else(|| Key::new("", "")),
        }
    }
}

/// The key of an item.
pub fn key_of(item: &Item) -> Option<Key> {
    match (item.get("pk"), item.get("sk")) {
        (Some(Value::S(pk)), Some(Value::S(sk))) => Some(Key::new(pk.clone(), sk.clone())),
        _ => None,
    }
}

/// Why a table operation did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// The write's condition did not hold; the item as it is, when there is one.
    #[error("condition failed")]
    ConditionFailed(Option<Box<Item>>),
    /// A transaction was cancelled: another write on one of its items was in flight (`TransactionConflict`).
    #[error("transaction conflict: {0}")]
    Conflict(String),
    /// It may succeed if retried: throttling, 5xx, timeouts, connection errors.
    #[error("{0}")]
    Transient(String),
    /// It never will: validation, an item over 400 KB, a missing table.
    #[error("{0}")]
    Permanent(String),
}

impl TableError {
    /// Whether a retry may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_) | Self::Conflict(_))
    }
}

/// What the requests cost, by DynamoDB's rules: read and write request units (strongly consistent reads 1 per
/// 4 KB, eventually consistent ones half; writes 1 per KB of the larger of the item before and after; a
/// transaction twice both), and requests by operation.
#[derive(Debug, Default)]
pub struct Meter {
    /// Read request units, in halves.
    read_halves: AtomicU64,
    /// Write request units.
    writes: AtomicU64,
    requests: Mutex<BTreeMap<&'static str, u64>>,
}

/// A snapshot of a [`Meter`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Costs {
    /// Read request units.
    pub read_units: f64,
    /// Write request units.
    pub write_units: u64,
    /// Requests by operation.
    pub requests: BTreeMap<&'static str, u64>,
}

/// DynamoDB on-demand prices in US East (N. Virginia), per million request units (aws.amazon.com/dynamodb/pricing,
/// since the November 2024 reduction): writes $0.625, reads $0.125.
pub const PRICE_PER_MILLION_WRITES: f64 = 0.625;
/// See [`PRICE_PER_MILLION_WRITES`].
pub const PRICE_PER_MILLION_READS: f64 = 0.125;

impl Costs {
    /// Dollars, at on-demand prices.
    pub fn dollars(&self) -> f64 {
        (self.read_units * PRICE_PER_MILLION_READS
            + self.write_units as f64 * PRICE_PER_MILLION_WRITES)
            / 1e6
    }

    /// All requests.
    pub fn request_count(&self) -> u64 {
        self.requests.values().sum()
    }
}

fn units(bytes: usize, per: usize) -> u64 {
    (bytes.max(1).div_ceil(per)) as u64
}

impl Meter {
    /// A read of items of these sizes (a missing item still costs the minimum).
    pub fn read(&self, op: &'static str, sizes: &[usize], consistent: bool) {
        let halves: u64 = sizes
            .iter()
            .map(|s| units(*s, 4096) * if consistent { 2 } else { 1 })
            .sum();
        self.read_halves.fetch_add(halves, Ordering::Relaxed);
        self.request(op);
    }

    /// A query returning items of these total bytes.
    pub fn query(&self, bytes: usize, consistent: bool) {
        self.read_halves.fetch_add(
            units(bytes, 4096) * if consistent { 2 } else { 1 },
            Ordering::Relaxed,
        );
        self.request("Query");
    }

    /// A write of an item of `before` and `after` bytes (a failed condition costs the same).
    pub fn write(&self, op: &'static str, before: usize, after: usize, transactional: bool) {
        let u = units(before.max(after), 1024) * if transactional { 2 } else { 1 };
        self.writes.fetch_add(u, Ordering::Relaxed);
        if !transactional {
            self.request(op);
        }
    }

    /// One request of `op`.
    pub fn request(&self, op: &'static str) {
        if let Ok(mut r) = self.requests.lock() {
            *r.entry(op).or_default() += 1;
        }
    }

    /// What was metered so far.
    pub fn costs(&self) -> Costs {
        Costs {
            read_units: self.read_halves.load(Ordering::Relaxed) as f64 / 2.0,
            write_units: self.writes.load(Ordering::Relaxed),
            requests: self.requests.lock().map(|r| r.clone()).unwrap_or_default(),
        }
    }
}

/// The operations the rollup needs.
#[async_trait]
pub trait Table: Send + Sync + std::fmt::Debug {
    /// One item.
    async fn get(&self, key: &Key, consistent: bool) -> Result<Option<Item>, TableError>;
    /// Many items (any number; the implementation pages), those that exist.
    async fn batch_get(&self, keys: &[Key], consistent: bool) -> Result<Vec<Item>, TableError>;
    /// Writes an item under a condition; a failed condition returns the item as it is.
    async fn put(&self, item: Item, expect: Expect) -> Result<(), TableError>;
    /// Writes up to 100 items, all or none.
    async fn transact(&self, writes: Vec<TxWrite>) -> Result<(), TableError>;
    /// Every item of a partition key.
    async fn query(&self, pk: &str) -> Result<Vec<Item>, TableError>;
    /// The partition keys that start with `prefix` (a scan: reports and tests only).
    async fn partitions(&self, prefix: &str) -> Result<BTreeSet<String>, TableError>;
    /// What the requests so far cost.
    fn meter(&self) -> &Meter;
}

fn expect_holds(expect: &Expect, current: Option<&Item>) -> bool {
    match expect {
        Expect::Any => true,
        Expect::Absent => current.is_none(),
        Expect::Version(v) => {
            let stored = current.and_then(|i| match i.get("v") {
                Some(Value::N(n)) => u64::try_from(*n).ok(),
                _ => None,
            });
            match stored {
                None => *v == 0 && current.is_none(),
                Some(s) => s == *v,
            }
        }
        Expect::Pos(p) => {
            let stored = current.and_then(|i| match i.get("pos") {
                Some(Value::S(s)) => Some(s.clone()),
                _ => None,
            });
            stored == *p
        }
    }
}

/// DynamoDB's item size limit.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// Items in one transaction, at most.
pub const MAX_TRANSACTION_ITEMS: usize = 100;

/// An in-memory table with DynamoDB's rules. With `hold`, every transaction and conditional write stays in
/// flight for that long (after checking, before applying): overlapping ones on one item then cancel as DynamoDB
/// cancels them, which is what the concurrency test looks for.
#[derive(Debug, Default)]
pub struct Memory {
    items: Mutex<BTreeMap<Key, Item>>,
    in_flight: Mutex<BTreeMap<Key, usize>>,
    hold: Option<std::time::Duration>,
    meter: Meter,
    /// Writes cancelled by a conflict (transactions, and standard writes meeting one).
    pub conflicts: AtomicU64,
}

impl Memory {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty table that holds each write in flight for `hold`.
    pub fn holding(hold: std::time::Duration) -> Self {
        Self {
            hold: Some(hold),
            ..Self::default()
        }
    }

    /// Every item (tests).
    pub fn items(&self) -> BTreeMap<Key, Item> {
        self.items.lock().map(|i| i.clone()).unwrap_or_default()
    }

    fn current(&self, key: &Key) -> Option<Item> {
        self.items.lock().ok().and_then(|i| i.get(key).cloned())
    }

    /// Marks `keys` in flight, or says which one another write holds.
    fn enter(&self, keys: &[Key]) -> Result<(), TableError> {
        let mut flight = self
            .in_flight
            .lock()
            .map_err(|e| TableError::Transient(e.to_string()))?;
        if let Some(k) = keys.iter().find(|k| flight.contains_key(*k)) {
            return Err(TableError::Conflict(format!(
                "TransactionConflict on {} {}",
                k.pk, k.sk
            )));
        }
        for k in keys {
            *flight.entry(k.clone()).or_default() += 1;
        }
        Ok(())
    }

    fn leave(&self, keys: &[Key]) {
        if let Ok(mut flight) = self.in_flight.lock() {
            for k in keys {
                flight.remove(k);
            }
        }
    }

    async fn held(&self) {
        if let Some(h) = self.hold {
            tokio::time::sleep(h).await;
        }
    }
}

fn added(mut item: Item, add: &BTreeMap<String, i64>) -> Item {
    for (attr, n) in add {
        let entry = item.entry(attr.clone()).or_insert(Value::N(0));
        if let Value::N(v) = entry {
            *v += n;
        }
    }
    item
}

#[async_trait]
impl Table for Memory {
    async fn get(&self, key: &Key, consistent: bool) -> Result<Option<Item>, TableError> {
        let item = self.current(key);
        self.meter
            .read("GetItem", &[item.as_ref().map_or(0, item_size)], consistent);
        Ok(item)
    }

    async fn batch_get(&self, keys: &[Key], consistent: bool) -> Result<Vec<Item>, TableError> {
        let mut out = Vec::new();
        for chunk in keys.chunks(100) {
            let items: Vec<Option<Item>> = chunk.iter().map(|k| self.current(k)).collect();
            let sizes: Vec<usize> = items
                .iter()
                .map(|i| i.as_ref().map_or(0, item_size))
                .collect();
            self.meter.read("BatchGetItem", &sizes, consistent);
            out.extend(items.into_iter().flatten());
        }
        Ok(out)
    }

    async fn put(&self, item: Item, expect: Expect) -> Result<(), TableError> {
        let key =
            key_of(&item).ok_or_else(|| TableError::Permanent("item without pk and sk".into()))?;
        let size = item_size(&item);
        if size > MAX_ITEM_BYTES {
            return Err(TableError::Permanent(format!(
                "ValidationException: item of {size} bytes is over the 400 KB item size limit"
            )));
        }
        // A write to an item another write holds in flight: DynamoDB rejects a standard write to an item of a
        // transaction in progress (TransactionConflictException), and cancels a transaction that meets one.
        let held = self.hold.is_some();
        if held {
            if let Err(e) = self.enter(std::slice::from_ref(&key)) {
                self.conflicts.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
            self.held().await;
        }
        let current = self.current(&key);
        let before = current.as_ref().map_or(0, item_size);
        self.meter.write("PutItem", before, size, false);
        let result = if expect_holds(&expect, current.as_ref()) {
            if let Ok(mut items) = self.items.lock() {
                items.insert(key.clone(), item);
            }
            Ok(())
        } else {
            Err(TableError::ConditionFailed(current.map(Box::new)))
        };
        if held {
            self.leave(std::slice::from_ref(&key));
        }
        result
    }

    async fn transact(&self, writes: Vec<TxWrite>) -> Result<(), TableError> {
        if writes.len() > MAX_TRANSACTION_ITEMS {
            return Err(TableError::Permanent(format!(
                "ValidationException: {} items in one transaction, more than 100",
                writes.len()
            )));
        }
        let keys: Vec<Key> = writes.iter().map(TxWrite::key).collect();
        self.meter.request("TransactWriteItems");
        if let Err(e) = self.enter(&keys) {
            self.conflicts.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
        self.held().await;
        let result = (|| {
            let mut items = self
                .items
                .lock()
                .map_err(|e| TableError::Transient(e.to_string()))?;
            let mut next: Vec<(Key, Item, usize)> = Vec::new();
            for w in &writes {
                let key = w.key();
                let current = items.get(&key).cloned();
                let before = current.as_ref().map_or(0, item_size);
                let after = match w {
                    TxWrite::Add { key, add } => {
                        let base = current.unwrap_or_else(|| {
                            Item::from([
                                ("pk".to_owned(), Value::S(key.pk.clone())),
                                ("sk".to_owned(), Value::S(key.sk.clone())),
                            ])
                        });
                        added(base, add)
                    }
                    TxWrite::Put { item, expect } => {
                        if !expect_holds(expect, current.as_ref()) {
                            return Err(TableError::ConditionFailed(current.map(Box::new)));
                        }
                        item.clone()
                    }
                };
                if item_size(&after) > MAX_ITEM_BYTES {
                    return Err(TableError::Permanent(
                        "ValidationException: item over the 400 KB item size limit".into(),
                    ));
                }
                next.push((key, after, before));
            }
            for (key, after, before) in next {
                self.meter
                    .write("TransactWriteItems", before, item_size(&after), true);
                items.insert(key, after);
            }
            Ok(())
        })();
        self.leave(&keys);
        result
    }

    async fn query(&self, pk: &str) -> Result<Vec<Item>, TableError> {
        let items: Vec<Item> = self
            .items
            .lock()
            .map(|i| {
                i.iter()
                    .filter(|(k, _)| k.pk == pk)
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default();
        self.meter.query(items.iter().map(item_size).sum(), true);
        Ok(items)
    }

    async fn partitions(&self, prefix: &str) -> Result<BTreeSet<String>, TableError> {
        self.meter.request("Scan");
        Ok(self
            .items
            .lock()
            .map(|i| {
                i.keys()
                    .filter(|k| k.pk.starts_with(prefix))
                    .map(|k| k.pk.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    fn meter(&self) -> &Meter {
        &self.meter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(pk: &str, v: i64) -> Item {
        Item::from([
            ("pk".to_owned(), Value::S(pk.into())),
            ("sk".to_owned(), Value::S("-".into())),
            ("v".to_owned(), Value::N(v)),
        ])
    }

    #[tokio::test]
    async fn conditions_versions_and_transactions_behave_as_dynamodb_does() {
        let t = Memory::new();
        t.put(item("a", 1), Expect::Version(0)).await.unwrap();
        assert!(matches!(
            t.put(item("a", 2), Expect::Version(0)).await,
            Err(TableError::ConditionFailed(Some(_)))
        ));
        t.put(item("a", 2), Expect::Version(1)).await.unwrap();
        t.transact(vec![
            TxWrite::Add {
                key: Key::new("c", "l"),
                add: BTreeMap::from([("x".to_owned(), 2)]),
            },
            TxWrite::Put {
                item: item("lane", 1),
                expect: Expect::Pos(None),
            },
        ])
        .await
        .unwrap();
        let c = t.get(&Key::new("c", "l"), true).await.unwrap().unwrap();
        assert_eq!(c["x"], Value::N(2));
        // A failed condition writes nothing of the transaction.
        assert!(
            t.transact(vec![
                TxWrite::Add {
                    key: Key::new("c", "l"),
                    add: BTreeMap::from([("x".to_owned(), 2)]),
                },
                TxWrite::Put {
                    item: item("lane", 1),
                    expect: Expect::Pos(Some("9/0".into())),
                },
            ])
            .await
            .is_err()
        );
        let c = t.get(&Key::new("c", "l"), true).await.unwrap().unwrap();
        assert_eq!(c["x"], Value::N(2));
        let costs = t.meter().costs();
        assert!(
            costs.write_units >= 6 && costs.request_count() >= 6,
            "{costs:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn two_overlapping_transactions_on_one_item_cancel_one() {
        let t = std::sync::Arc::new(Memory::holding(std::time::Duration::from_millis(10)));
        let write = |t: std::sync::Arc<Memory>| async move {
            t.transact(vec![TxWrite::Add {
                key: Key::new("shared", "-"),
                add: BTreeMap::from([("n".to_owned(), 1)]),
            }])
            .await
        };
        let (a, b) = tokio::join!(write(t.clone()), write(t.clone()));
        assert!(a.is_ok() != b.is_ok(), "{a:?} {b:?}");
        assert_eq!(t.conflicts.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn sizes_follow_dynamodbs_rules() {
        assert_eq!(value_size(&Value::S("abc".into())), 3);
        assert_eq!(value_size(&Value::N(12345)), 4);
        assert_eq!(
            value_size(&Value::L(vec![Value::S("ab".into())])),
            3 + 2 + 1
        );
        assert_eq!(item_size(&item("a", 1)), 2 + 1 + 2 + 1 + 1 + 2);
    }
}
