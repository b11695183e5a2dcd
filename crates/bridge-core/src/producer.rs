//! Producing to Kinesis: PutRecords batched within the service limits, only failed entries resent (same
//! partition keys, exponential backoff with full jitter, until a retry limit or the deadline), outputs over
//! the record limit stored in S3 behind a pointer record, and an outcome per input so that failures map back
//! to source records.
//!
//! Records go out in input order, one request after another, so that per-partition-key order holds while
//! nothing fails. A resent entry lands after entries that succeeded before it; envelopes carry their own
//! ordering fields (sync counts, timestamps) for consumers that must reorder.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kinesis::operation::put_records::PutRecordsOutput;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use bytes::Bytes;

use crate::Deadline;
use crate::blob::BlobStore;
use crate::envelope::{Header, PayloadRef, PointerRecord, sha256_hex};
use crate::telemetry::Metrics;

/// PutRecords takes at most 500 records per request.
/// Source: docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecords.html
pub const MAX_RECORDS_PER_REQUEST: usize = 500;
/// PutRecords takes at most 5 MiB per request, partition keys included. Same source.
pub const MAX_BYTES_PER_REQUEST: usize = 5 * 1024 * 1024;
/// One record, data plus partition key, is at most 1 MiB on a stream with default settings. Same source.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// A partition key has 1 to 256 Unicode characters. Same source.
pub const MAX_PARTITION_KEY_CHARS: usize = 256;
/// The key prefix of oversized output records in the large-payload bucket.
pub const LARGE_PAYLOAD_PREFIX: &str = "large-payload/";

/// Metric: PutRecords requests sent.
pub const METRIC_PUT_RECORDS_CALLS: &str = "PutRecordsCalls";
/// Metric: entries resent after a failure.
pub const METRIC_RECORDS_RETRIED: &str = "RecordsRetried";
/// Metric: oversized outputs stored in S3 and replaced by a pointer record.
pub const METRIC_POINTER_RECORDS: &str = "PointerRecords";

/// One entry of a PutRecords request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutEntry {
    /// The partition key.
    pub partition_key: String,
    /// The record data.
    pub data: Bytes,
}

impl PutEntry {
    /// What the entry counts toward the request and record limits.
    pub fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

/// What Kinesis said of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryOutcome {
    /// Stored, at this shard and sequence number.
    Stored,
    /// Not stored; the entry's error code and message.
    Failed {
        /// For example `ProvisionedThroughputExceededException` or `InternalFailure`.
        code: String,
        /// The service's message.
        message: String,
    },
}

/// A whole request failed (network, throttling of the request, missing stream). Always worth a retry.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("kinesis PutRecords failed: {0}")]
pub struct SinkError(pub String);

/// The Kinesis port.
#[async_trait]
pub trait RecordSink: Send + Sync + std::fmt::Debug {
    /// Sends one PutRecords request; one outcome per entry, in order.
    async fn put_records(&self, entries: &[PutEntry]) -> Result<Vec<EntryOutcome>, SinkError>;
}

/// [`RecordSink`] on a Kinesis stream, named by name or ARN.
#[derive(Debug, Clone)]
pub struct KinesisSink {
    client: aws_sdk_kinesis::Client,
    stream: String,
}

impl KinesisSink {
    /// Puts to `stream`: a stream name, or an ARN (`arn:…`).
    pub fn new(client: aws_sdk_kinesis::Client, stream: impl Into<String>) -> Self {
        Self {
            client,
            stream: stream.into(),
        }
    }
}

#[async_trait]
impl RecordSink for KinesisSink {
    async fn put_records(&self, entries: &[PutEntry]) -> Result<Vec<EntryOutcome>, SinkError> {
        let mut request = self.client.put_records();
        request = if self.stream.starts_with("arn:") {
            request.stream_arn(&self.stream)
        } else {
            request.stream_name(&self.stream)
        };
        for entry in entries {
            let built = PutRecordsRequestEntry::builder()
                .partition_key(&entry.partition_key)
                .data(Blob::new(entry.data.to_vec()))
                .build()
                .map_err(|e| SinkError(e.to_string()))?;
            request = request.records(built);
        }
        let output = request
            .send()
            .await
            .map_err(|e| SinkError(aws_sdk_kinesis::error::DisplayErrorContext(&e).to_string()))?;
        entry_outcomes(&output, entries.len())
    }
}

/// The outcome of each entry of a PutRecords response. A partial failure is an HTTP 200 whose failed entries
/// carry an error code; a response that does not answer every entry is an error.
pub fn entry_outcomes(
    output: &PutRecordsOutput,
    sent: usize,
) -> Result<Vec<EntryOutcome>, SinkError> {
    if output.records.len() != sent {
        return Err(SinkError(format!(
            "response has {} results for {sent} entries",
            output.records.len()
        )));
    }
    Ok(output
        .records
        .iter()
        .map(|r| match r.error_code() {
            Some(code) if !code.is_empty() => EntryOutcome::Failed {
                code: code.to_owned(),
                message: r.error_message().unwrap_or_default().to_owned(),
            },
            _ => EntryOutcome::Stored,
        })
        .collect())
}

/// Splits entries of these sizes, in order, into requests within [`MAX_RECORDS_PER_REQUEST`] and
/// [`MAX_BYTES_PER_REQUEST`]. Each size must already be within [`MAX_RECORD_BYTES`].
pub fn plan_requests(sizes: &[usize]) -> Vec<Range<usize>> {
    let mut requests = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, &size) in sizes.iter().enumerate() {
        if i > start
            && (i - start == MAX_RECORDS_PER_REQUEST || bytes + size > MAX_BYTES_PER_REQUEST)
        {
            requests.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < sizes.len() {
        requests.push(start..sizes.len());
    }
    requests
}

/// Kept while callers move to [`crate::retry::Backoff`], which it now is.
pub type RetryPolicy = crate::retry::Backoff;

/// An output record to produce.
#[derive(Debug, Clone)]
pub struct OutboundRecord {
    /// The partition key.
    pub partition_key: String,
    /// The serialized envelope.
    pub data: Bytes,
    /// The envelope's header, for the pointer record should `data` be over the record limit.
    pub header: Header,
}

/// How a record reached the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// As it was.
    Direct,
    /// Its body went to S3 and a pointer record to the stream.
    Pointer(PayloadRef),
}

/// Why a record did not reach the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProduceFailure {
    /// It never can (its partition key is invalid, it is too large and cannot be stored).
    #[error("{0}")]
    Permanent(String),
    /// It may on a later attempt (throttling, an outage, the deadline).
    #[error("{0}")]
    Transient(String),
}

/// Where oversized records go.
#[derive(Debug, Clone)]
pub struct LargePayloads {
    /// The store.
    pub store: Arc<dyn BlobStore>,
    /// The bucket.
    pub bucket: String,
}

/// The producer every function uses.
#[derive(Debug, Clone)]
pub struct Producer {
    sink: Arc<dyn RecordSink>,
    large: Option<LargePayloads>,
    policy: RetryPolicy,
}

impl Producer {
    /// A producer to `sink`, storing oversized records in `large` when given.
    pub fn new(
        sink: Arc<dyn RecordSink>,
        large: Option<LargePayloads>,
        policy: RetryPolicy,
    ) -> Self {
        Self {
            sink,
            large,
            policy,
        }
    }

    /// Sends every record; one outcome per record, in input order.
    pub async fn send(
        &self,
        records: Vec<OutboundRecord>,
        deadline: Deadline,
        metrics: &Metrics,
    ) -> Vec<Result<Delivery, ProduceFailure>> {
        let mut outcomes: Vec<Option<Result<Delivery, ProduceFailure>>> = vec![None; records.len()];
        let mut entries: Vec<PutEntry> = Vec::with_capacity(records.len());
        let mut pending: Vec<usize> = Vec::with_capacity(records.len());
        let mut deliveries: Vec<Delivery> = Vec::with_capacity(records.len());

        for (i, record) in records.into_iter().enumerate() {
            let (entry, delivery) = match self.prepare(record, metrics).await {
                Ok(ok) => ok,
                Err(failure) => {
                    outcomes[i] = Some(Err(failure));
                    (
                        PutEntry {
                            partition_key: String::new(),
                            data: Bytes::new(),
                        },
                        Delivery::Direct,
                    )
                }
            };
            if outcomes[i].is_none() {
                pending.push(i);
            }
            entries.push(entry);
            deliveries.push(delivery);
        }

        let mut attempt = 0;
        let mut last_error: Vec<String> = vec![String::new(); entries.len()];
        while !pending.is_empty() {
            attempt += 1;
            let sizes: Vec<usize> = pending.iter().map(|&i| entries[i].size()).collect();
            let mut failed = Vec::new();
            for range in plan_requests(&sizes) {
                let batch: Vec<PutEntry> = pending[range.clone()]
                    .iter()
                    .map(|&i| entries[i].clone())
                    .collect();
                metrics.incr(METRIC_PUT_RECORDS_CALLS);
                match self.sink.put_records(&batch).await {
                    Ok(results) => {
                        for (&i, result) in pending[range].iter().zip(results) {
                            match result {
                                EntryOutcome::Stored => {
                                    outcomes[i] = Some(Ok(deliveries[i].clone()))
                                }
                                EntryOutcome::Failed { code, message } => {
                                    last_error[i] = format!("{code}: {message}");
                                    failed.push(i);
                                }
                            }
                        }
                    }
                    Err(e) => {
                        for &i in &pending[range] {
                            last_error[i] = e.to_string();
                            failed.push(i);
                        }
                    }
                }
            }
            pending = failed;
            if pending.is_empty() {
                break;
            }
            let wait = self.policy.delay(attempt);
            let reason = if attempt >= self.policy.max_attempts {
                Some(format!("gave up after {attempt} attempts"))
            } else if !deadline.allows(wait) {
                Some(format!(
                    "stopped after {attempt} attempts: invocation deadline"
                ))
            } else {
                None
            };
            if let Some(reason) = reason {
                for &i in &pending {
                    outcomes[i] = Some(Err(ProduceFailure::Transient(format!(
                        "kinesis put {reason}; last error: {}",
                        last_error[i]
                    ))));
                }
                break;
            }
            metrics.add(METRIC_RECORDS_RETRIED, pending.len() as u64);
            tokio::time::sleep(wait).await;
        }

        outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    Err(ProduceFailure::Transient(
                        "kinesis put was not attempted".into(),
                    ))
                })
            })
            .collect()
    }

    /// Checks the partition key, and swaps an oversized record for a pointer to its body in S3.
    async fn prepare(
        &self,
        record: OutboundRecord,
        metrics: &Metrics,
    ) -> Result<(PutEntry, Delivery), ProduceFailure> {
        let chars = record.partition_key.chars().count();
        if !(1..=MAX_PARTITION_KEY_CHARS).contains(&chars) {
            return Err(ProduceFailure::Permanent(format!(
                "partition key has {chars} characters; kinesis takes 1 to {MAX_PARTITION_KEY_CHARS}"
            )));
        }
        let entry = PutEntry {
            partition_key: record.partition_key,
            data: record.data,
        };
        if entry.size() <= MAX_RECORD_BYTES {
            return Ok((entry, Delivery::Direct));
        }
        let Some(large) = &self.large else {
            return Err(ProduceFailure::Permanent(format!(
                "output record of {} bytes is over the {MAX_RECORD_BYTES}-byte kinesis record limit and no \
                 large-payload bucket is configured",
                entry.size()
            )));
        };
        let key = format!(
            "{LARGE_PAYLOAD_PREFIX}{}/{}.json",
            record.header.schema.replace('/', "-"),
            record.header.event_id
        );
        let payload_ref = PayloadRef {
            bucket: large.bucket.clone(),
            key: key.clone(),
            bytes: entry.data.len() as u64,
            sha256: sha256_hex(&entry.data),
        };
        large
            .store
            .put(&large.bucket, &key, entry.data, "application/json")
            .await
            .map_err(|e| {
                ProduceFailure::Transient(format!("cannot store oversized output record: {e}"))
            })?;
        let pointer = PointerRecord {
            header: record.header,
            payload_ref: payload_ref.clone(),
        };
        let data = serde_json::to_vec(&pointer).map_err(|e| {
            ProduceFailure::Permanent(format!("cannot serialize pointer record: {e}"))
        })?;
        let entry = PutEntry {
            partition_key: entry.partition_key,
            data: Bytes::from(data),
        };
        if entry.size() > MAX_RECORD_BYTES {
            return Err(ProduceFailure::Permanent(
                "pointer record is itself over the kinesis record limit".into(),
            ));
        }
        metrics.incr(METRIC_POINTER_RECORDS);
        Ok((entry, Delivery::Pointer(payload_ref)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::BlobError;
    use crate::envelope::SourceRef;
    use aws_sdk_kinesis::types::PutRecordsResultEntry;
    use std::sync::Mutex;

    #[test]
    fn plan_respects_count_and_byte_limits() {
        assert!(plan_requests(&[]).is_empty());
        assert_eq!(
            plan_requests(&[10; 1001]),
            vec![0..500, 500..1000, 1000..1001]
        );
        // Five records of 1 MiB fill a request exactly; the sixth starts the next.
        assert_eq!(plan_requests(&[MAX_RECORD_BYTES; 6]), vec![0..5, 5..6]);
        assert_eq!(
            plan_requests(&[MAX_RECORD_BYTES, 1, MAX_RECORD_BYTES * 4]),
            vec![0..2, 2..3]
        );
    }

    #[test]
    fn entry_outcomes_reads_partial_failures() {
        let output = PutRecordsOutput::builder()
            .failed_record_count(1)
            .records(
                PutRecordsResultEntry::builder()
                    .shard_id("s")
                    .sequence_number("1")
                    .build(),
            )
            .records(
                PutRecordsResultEntry::builder()
                    .error_code("ProvisionedThroughputExceededException")
                    .error_message("Rate exceeded")
                    .build(),
            )
            .build()
            .unwrap();
        let outcomes = entry_outcomes(&output, 2).unwrap();
        assert_eq!(outcomes[0], EntryOutcome::Stored);
        assert_eq!(
            outcomes[1],
            EntryOutcome::Failed {
                code: "ProvisionedThroughputExceededException".into(),
                message: "Rate exceeded".into()
            }
        );
        assert!(entry_outcomes(&output, 3).is_err());
    }

    /// Fails the listed calls' entries by index; Kinesis-side faults moto cannot produce.
    #[derive(Debug, Default)]
    struct FlakySink {
        calls: Mutex<Vec<Vec<PutEntry>>>,
        /// For call n (0-based), the entry positions to fail.
        fail: Vec<Vec<usize>>,
        fail_whole_call: Option<usize>,
    }

    #[async_trait]
    impl RecordSink for FlakySink {
        async fn put_records(&self, entries: &[PutEntry]) -> Result<Vec<EntryOutcome>, SinkError> {
            let mut calls = self.calls.lock().unwrap();
            let n = calls.len();
            calls.push(entries.to_vec());
            if self.fail_whole_call == Some(n) {
                return Err(SinkError("connection reset".into()));
            }
            let fail = self.fail.get(n).cloned().unwrap_or_default();
            Ok((0..entries.len())
                .map(|i| {
                    if fail.contains(&i) {
                        EntryOutcome::Failed {
                            code: "InternalFailure".into(),
                            message: "boom".into(),
                        }
                    } else {
                        EntryOutcome::Stored
                    }
                })
                .collect())
        }
    }

    #[derive(Debug, Default)]
    struct MemoryBlobs(Mutex<Vec<(String, String, Bytes)>>);

    #[async_trait]
    impl BlobStore for MemoryBlobs {
        async fn put(
            &self,
            bucket: &str,
            key: &str,
            body: Bytes,
            _: &str,
        ) -> Result<(), BlobError> {
            self.0
                .lock()
                .unwrap()
                .push((bucket.into(), key.into(), body));
            Ok(())
        }
    }

    fn record(pk: &str, body: &str) -> OutboundRecord {
        OutboundRecord {
            partition_key: pk.into(),
            data: Bytes::from(body.to_owned()),
            header: Header {
                schema: "test/v1".into(),
                event_id: format!("id-{pk}-{}", body.len()),
                kind: "t".into(),
                timestamp: "2023-11-14T22:13:20.123Z".into(),
                received_at: None,
                source: SourceRef {
                    stream_arn: "a".into(),
                    shard_id: "s".into(),
                    sequence_number: "1".into(),
                    sub_sequence: 0,
                },
            },
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    #[tokio::test]
    async fn resends_only_failed_entries_with_their_partition_keys() {
        let sink = Arc::new(FlakySink {
            fail: vec![vec![1, 3]],
            ..Default::default()
        });
        let producer = Producer::new(sink.clone(), None, fast());
        let metrics = Metrics::new();
        let records = (0..5)
            .map(|i| record(&format!("pk{i}"), &format!("r{i}")))
            .collect();
        let outcomes = producer.send(records, Deadline::none(), &metrics).await;
        assert!(
            outcomes.iter().all(|o| *o == Ok(Delivery::Direct)),
            "{outcomes:?}"
        );
        let calls = sink.calls.lock().unwrap();
        assert_eq!(calls.len(), 2);
        let resent: Vec<_> = calls[1]
            .iter()
            .map(|e| (e.partition_key.as_str(), e.data.as_ref()))
            .collect();
        assert_eq!(
            resent,
            vec![("pk1", b"r1".as_ref()), ("pk3", b"r3".as_ref())]
        );
        assert_eq!(metrics.get(METRIC_RECORDS_RETRIED), 2);
        assert_eq!(metrics.get(METRIC_PUT_RECORDS_CALLS), 2);
    }

    #[tokio::test]
    async fn gives_up_at_the_retry_limit_as_transient() {
        let sink = Arc::new(FlakySink {
            fail: vec![vec![0], vec![0], vec![0], vec![0]],
            ..Default::default()
        });
        let producer = Producer::new(sink.clone(), None, fast());
        let outcomes = producer
            .send(
                vec![record("a", "x"), record("b", "y")],
                Deadline::none(),
                &Metrics::new(),
            )
            .await;
        assert_eq!(outcomes[1], Ok(Delivery::Direct));
        match &outcomes[0] {
            Err(ProduceFailure::Transient(msg)) => {
                assert!(
                    msg.contains("gave up after 3 attempts")
                        && msg.contains("InternalFailure: boom"),
                    "{msg}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(sink.calls.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn stops_at_the_deadline_and_retries_whole_failed_calls() {
        let sink = Arc::new(FlakySink {
            fail_whole_call: Some(0),
            ..Default::default()
        });
        let slow = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_secs(60),
            max_delay: Duration::from_secs(60),
        };
        // With a deadline that has passed, the first failure is final.
        let outcomes = Producer::new(sink.clone(), None, slow)
            .send(
                vec![record("a", "x")],
                Deadline::from_lambda_deadline_ms(1),
                &Metrics::new(),
            )
            .await;
        match &outcomes[0] {
            // A zero backoff can still fit; then the second call succeeds.
            Ok(Delivery::Direct) => assert_eq!(sink.calls.lock().unwrap().len(), 2),
            Err(ProduceFailure::Transient(msg)) => assert!(
                msg.contains("invocation deadline") && msg.contains("connection reset"),
                "{msg}"
            ),
            other => panic!("{other:?}"),
        }
        // Without a deadline, a failed call is resent whole.
        let sink = Arc::new(FlakySink {
            fail_whole_call: Some(0),
            ..Default::default()
        });
        let outcomes = Producer::new(sink.clone(), None, fast())
            .send(
                vec![record("a", "x"), record("b", "y")],
                Deadline::none(),
                &Metrics::new(),
            )
            .await;
        assert!(outcomes.iter().all(|o| o.is_ok()));
        assert_eq!(sink.calls.lock().unwrap()[1].len(), 2);
    }

    #[tokio::test]
    async fn bad_partition_keys_and_unstorable_oversize_are_permanent() {
        let sink = Arc::new(FlakySink::default());
        let producer = Producer::new(sink.clone(), None, fast());
        let big = "x".repeat(MAX_RECORD_BYTES);
        let long_key = "k".repeat(MAX_PARTITION_KEY_CHARS + 1);
        let outcomes = producer
            .send(
                vec![
                    record("", "a"),
                    record(&long_key, "b"),
                    record("k", &big),
                    record("k", "ok"),
                ],
                Deadline::none(),
                &Metrics::new(),
            )
            .await;
        assert!(
            matches!(&outcomes[0], Err(ProduceFailure::Permanent(m)) if m.contains("0 characters"))
        );
        assert!(
            matches!(&outcomes[1], Err(ProduceFailure::Permanent(m)) if m.contains("257 characters"))
        );
        assert!(
            matches!(&outcomes[2], Err(ProduceFailure::Permanent(m)) if m.contains("no large-payload bucket"))
        );
        assert_eq!(outcomes[3], Ok(Delivery::Direct));
        assert_eq!(sink.calls.lock().unwrap()[0].len(), 1);
    }

    #[tokio::test]
    async fn oversize_goes_to_s3_behind_a_pointer() {
        let sink = Arc::new(FlakySink::default());
        let blobs = Arc::new(MemoryBlobs::default());
        let producer = Producer::new(
            sink.clone(),
            Some(LargePayloads {
                store: blobs.clone(),
                bucket: "bucket".into(),
            }),
            fast(),
        );
        let big = "x".repeat(MAX_RECORD_BYTES);
        let metrics = Metrics::new();
        let outcomes = producer
            .send(vec![record("k", &big)], Deadline::none(), &metrics)
            .await;
        let Ok(Delivery::Pointer(payload_ref)) = &outcomes[0] else {
            panic!("{outcomes:?}")
        };
        let stored = blobs.0.lock().unwrap();
        assert_eq!(stored[0].2.len(), MAX_RECORD_BYTES);
        assert_eq!(payload_ref.key, stored[0].1);
        assert_eq!(payload_ref.sha256, sha256_hex(&stored[0].2));
        let sent: serde_json::Value =
            serde_json::from_slice(&sink.calls.lock().unwrap()[0][0].data).unwrap();
        assert_eq!(sent["payload_ref"]["bytes"], MAX_RECORD_BYTES);
        assert_eq!(sent["event_id"], format!("id-k-{MAX_RECORD_BYTES}"));
        assert_eq!(metrics.get(METRIC_POINTER_RECORDS), 1);
    }
}
