//! In-memory fakes of every port, in one place, for unit tests, the middle test tier and the benchmark
//! (behind the `test-util` feature). They cost nothing, so what a benchmark measures is our own code, and they
//! produce the faults an emulator cannot: per-entry PutRecords failures, a slow stream, a failing bucket.
//! End-to-end tests use the real ports against the emulator instead.

#![allow(clippy::missing_panics_doc)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::streams::KinesisEventResponse;
use bytes::Bytes;

use crate::blob::{BlobError, BlobStore};
use crate::dedup::{Advance, DedupError, DedupStore, Mark};
use crate::kinesis_event::RawKinesisEvent;
use crate::producer::{EntryOutcome, PutEntry, RecordSink, SinkError};

/// A stream in memory. By default every entry is stored; faults are set per call (0-based).
#[derive(Debug, Default)]
pub struct MemorySink {
    /// Every request received, whole, in order.
    pub calls: Mutex<Vec<Vec<PutEntry>>>,
    /// Entries stored, in order.
    pub entries: Mutex<Vec<PutEntry>>,
    /// For call n, the entry positions to fail with `InternalFailure`.
    pub fail: Vec<Vec<usize>>,
    /// A call that fails whole (a connection reset).
    pub fail_whole_call: Option<usize>,
    /// How long each call takes.
    pub delay: Duration,
}

impl MemorySink {
    /// A sink whose every call takes `delay`.
    pub fn slow(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }

    /// Entries stored so far.
    pub fn stored(&self) -> Vec<PutEntry> {
        self.entries.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Requests received so far.
    pub fn call_count(&self) -> usize {
        self.calls.lock().map(|c| c.len()).unwrap_or_default()
    }
}

#[async_trait]
impl RecordSink for MemorySink {
    async fn put_records(&self, entries: &[PutEntry]) -> Result<Vec<EntryOutcome>, SinkError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let n = {
            let mut calls = self.calls.lock().map_err(|e| SinkError(e.to_string()))?;
            calls.push(entries.to_vec());
            calls.len() - 1
        };
        if self.fail_whole_call == Some(n) {
            return Err(SinkError("connection reset".into()));
        }
        let fail = self.fail.get(n).cloned().unwrap_or_default();
        let mut stored = self.entries.lock().map_err(|e| SinkError(e.to_string()))?;
        Ok(entries
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                if fail.contains(&i) {
                    EntryOutcome::Failed {
                        code: "InternalFailure".into(),
                        message: "boom".into(),
                    }
                } else {
                    stored.push(entry.clone());
                    EntryOutcome::Stored
                }
            })
            .collect())
    }
}

/// A dedup store in a map, with the compare-and-swap semantics of DynamoDB's conditional write.
#[derive(Debug, Default)]
pub struct MemoryDedup {
    /// The marks.
    pub marks: Mutex<HashMap<String, Mark>>,
    /// When set, every call fails as an unavailable store would.
    pub failing: AtomicBool,
    /// How long each write takes.
    pub write_delay: Duration,
}

impl MemoryDedup {
    fn check(&self, operation: &'static str) -> Result<(), DedupError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(DedupError {
                operation,
                message: "service unavailable".into(),
            });
        }
        Ok(())
    }
}

fn poisoned(operation: &'static str) -> DedupError {
    DedupError {
        operation,
        message: "lock poisoned".into(),
    }
}

#[async_trait]
impl DedupStore for MemoryDedup {
    async fn load(&self, keys: &[String]) -> Result<HashMap<String, Mark>, DedupError> {
        self.check("BatchGetItem")?;
        let marks = self.marks.lock().map_err(|_| poisoned("load"))?;
        Ok(keys
            .iter()
            .filter_map(|k| Some((k.clone(), *marks.get(k)?)))
            .collect())
    }

    async fn advance(
        &self,
        key: &str,
        expected: Option<Mark>,
        new: Mark,
    ) -> Result<Advance, DedupError> {
        self.check("PutItem")?;
        if !self.write_delay.is_zero() {
            tokio::time::sleep(self.write_delay).await;
        }
        let mut marks = self.marks.lock().map_err(|_| poisoned("advance"))?;
        let current = marks.get(key).copied();
        if current != expected {
            return Ok(Advance::Conflict(current));
        }
        marks.insert(key.to_owned(), new);
        Ok(Advance::Advanced)
    }
}

/// An object store in a map.
#[derive(Debug, Default)]
pub struct MemoryBlobs {
    /// Objects by (bucket, key).
    pub objects: Mutex<HashMap<(String, String), Bytes>>,
    /// When set, every put fails.
    pub failing: AtomicBool,
}

impl MemoryBlobs {
    /// A store whose every put fails.
    pub fn failing() -> Self {
        Self {
            failing: AtomicBool::new(true),
            ..Self::default()
        }
    }

    /// The objects whose key starts with `prefix`, by key.
    pub fn under(&self, prefix: &str) -> Vec<(String, Bytes)> {
        let mut found: Vec<(String, Bytes)> = self
            .objects
            .lock()
            .map(|o| {
                o.iter()
                    .filter(|((_, k), _)| k.starts_with(prefix))
                    .map(|((_, k), v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    }
}

#[async_trait]
impl BlobStore for MemoryBlobs {
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        _content_type: &str,
    ) -> Result<(), BlobError> {
        let fail = |message: String| BlobError {
            bucket: bucket.into(),
            key: key.into(),
            message,
        };
        if self.failing.load(Ordering::SeqCst) {
            return Err(fail("service unavailable".into()));
        }
        let mut objects = self.objects.lock().map_err(|e| fail(e.to_string()))?;
        objects.insert((bucket.to_owned(), key.to_owned()), body);
        Ok(())
    }
}

/// A Kinesis batch as Lambda hands it, from one shard of an example stream: record `i` carries
/// `payloads[i]` and sequence number `first_seq + i`, zero-padded to 12 digits (string order is number order).
pub fn kinesis_event<P: AsRef<[u8]>>(payloads: &[P], first_seq: u64) -> RawKinesisEvent {
    use base64::Engine as _;
    let records = payloads
        .iter()
        .zip(first_seq..)
        .map(|(data, seq)| {
            let seq = format!("{seq:012}");
            serde_json::json!({
                "eventID": format!("shardId-000000000000:{seq}"),
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/example",
                "kinesis": {
                    "partitionKey": "pk",
                    "sequenceNumber": seq,
                    "data": base64::engine::general_purpose::STANDARD.encode(data),
                    "approximateArrivalTimestamp": 1_700_000_000.0
                }
            })
        })
        .collect();
    RawKinesisEvent { records }
}

/// The sequence numbers of a batch response's failures, as numbers, lowest first.
pub fn failed_sequence_numbers(response: &KinesisEventResponse) -> Vec<u64> {
    let mut ids: Vec<u64> = response
        .batch_item_failures
        .iter()
        .filter_map(|f| f.item_identifier.as_deref()?.parse().ok())
        .collect();
    ids.sort_unstable();
    ids
}

/// A real sink behind a fault: entries the predicate picks fail with `ProvisionedThroughputExceededException`
/// inside a successful answer (a per-entry failure, which no emulator produces); the rest go to `inner`.
pub struct FailEntries<S> {
    /// The sink the other entries go to (for example a [`crate::producer::KinesisSink`] on the emulator).
    pub inner: S,
    /// Which entries fail.
    pub fail: Box<dyn Fn(&PutEntry) -> bool + Send + Sync>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for FailEntries<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailEntries")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<S: RecordSink> RecordSink for FailEntries<S> {
    async fn put_records(&self, entries: &[PutEntry]) -> Result<Vec<EntryOutcome>, SinkError> {
        let passing: Vec<PutEntry> = entries
            .iter()
            .filter(|e| !(self.fail)(e))
            .cloned()
            .collect();
        let mut results = if passing.is_empty() {
            Vec::new()
        } else {
            self.inner.put_records(&passing).await?
        }
        .into_iter();
        Ok(entries
            .iter()
            .map(|e| {
                if (self.fail)(e) {
                    EntryOutcome::Failed {
                        code: "ProvisionedThroughputExceededException".into(),
                        message: "Rate exceeded for shard".into(),
                    }
                } else {
                    results.next().unwrap_or(EntryOutcome::Stored)
                }
            })
            .collect())
    }
}
