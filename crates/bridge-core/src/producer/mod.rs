//! Producing to Kinesis: PutRecords batched within the service limits ([`limits`]), only failed entries resent
//! with the same partition keys ([`crate::retry::Backoff`], until the attempt limit or the deadline), outputs
//! over the record limit stored in S3 behind a pointer record ([`large`]), and one outcome per input, so that
//! failures map back to source records by index.
//!
//! Order: records go out in input order, one request after another. Once an entry of a partition key fails,
//! the key's later entries are not sent in that attempt: they wait for the next one, behind the failed entry,
//! and are reported with it if it gives up. PutRecords itself does not stop at a failed entry, so two entries of
//! one key in one request could land out of order; [`Producer::send_in_order`] therefore never puts a key's
//! entries of different groups (the outputs of different source records) in one request: a later group goes in
//! a later request, behind any failure of the earlier one, while other keys fill the request (the chaos run in
//! `tests/chaos.rs` measured the reordering before this). Entries of one group (one source record's changes) may
//! share a request: their mutual order is not promised. Envelopes also carry their own ordering fields.

pub mod large;
pub mod limits;
pub mod sink;

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;

use crate::Deadline;
use crate::envelope::{Header, PayloadRef};
use crate::retry::{Backoff, GiveUp};
use crate::telemetry::Metrics;

pub use large::{LARGE_PAYLOAD_PREFIX, LargePayloads};
pub use limits::{
    MAX_BYTES_PER_REQUEST, MAX_PARTITION_KEY_CHARS, MAX_RECORD_BYTES, MAX_RECORDS_PER_REQUEST,
    plan_ordered_requests,
};
pub use sink::{
    EntryOutcome, KinesisSink, NoOutputs, PutEntry, RecordSink, SinkError, entry_outcomes,
};

/// Metric: PutRecords requests sent.
pub const METRIC_PUT_RECORDS_CALLS: &str = "PutRecordsCalls";
/// Metric: entries resent after a failure.
pub const METRIC_RECORDS_RETRIED: &str = "RecordsRetried";
/// Metric: oversized outputs stored in S3 and replaced by a pointer record.
pub const METRIC_POINTER_RECORDS: &str = "PointerRecords";

/// An output record to produce.
#[derive(Debug, Clone)]
pub struct OutboundRecord {
    /// The partition key (also the order key: see the module doc).
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
    /// It may on a later attempt (throttling, an outage, the deadline, an earlier entry of its key failed).
    #[error("{0}")]
    Transient(String),
}

impl ProduceFailure {
    /// Whether a later attempt may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

/// One record on its way: its entry, how it will be delivered, and what became of it.
#[derive(Debug)]
struct Job {
    entry: PutEntry,
    group: usize,
    delivery: Delivery,
    outcome: Option<Result<Delivery, ProduceFailure>>,
    last_error: Option<String>,
}

/// The producer every function uses.
#[derive(Debug, Clone)]
pub struct Producer {
    sink: Arc<dyn RecordSink>,
    large: Option<LargePayloads>,
    policy: Backoff,
}

impl Producer {
    /// A producer to `sink`, storing oversized records in `large` when given.
    pub fn new(sink: Arc<dyn RecordSink>, large: Option<LargePayloads>, policy: Backoff) -> Self {
        Self {
            sink,
            large,
            policy,
        }
    }

    /// Sends every record; one outcome per record, in input order. No request starts after the deadline,
    /// and none outlasts it: what is not stored by then is a transient failure. Records of one partition key may
    /// share a request (use [`Producer::send_in_order`] to keep their order under partial failures).
    pub async fn send(
        &self,
        records: Vec<OutboundRecord>,
        deadline: Deadline,
        metrics: &Metrics,
    ) -> Vec<Result<Delivery, ProduceFailure>> {
        let records = records.into_iter().map(|r| (r, 0)).collect();
        self.send_in_order(records, deadline, metrics).await
    }

    /// Like [`Producer::send`], each record with its group (the source record it came from): a partition key's
    /// records of different groups never share a request, so a failed entry is resent before any later group of
    /// its key is sent.
    pub async fn send_in_order(
        &self,
        records: Vec<(OutboundRecord, usize)>,
        deadline: Deadline,
        metrics: &Metrics,
    ) -> Vec<Result<Delivery, ProduceFailure>> {
        let mut jobs = Vec::with_capacity(records.len());
        // A key whose output failed for this invocation holds its later outputs back.
        let mut failed_keys: HashSet<String> = HashSet::new();
        for (record, group) in records {
            let key = record.partition_key.clone();
            let mut job = match self.prepare(record, metrics).await {
                Ok((entry, delivery)) => Job {
                    entry,
                    group,
                    delivery,
                    outcome: None,
                    last_error: None,
                },
                Err(failure) => Job {
                    entry: PutEntry {
                        partition_key: key.clone(),
                        data: Bytes::new(),
                    },
                    group,
                    delivery: Delivery::Direct,
                    outcome: Some(Err(failure)),
                    last_error: None,
                },
            };
            match &job.outcome {
                Some(Err(f)) if f.is_transient() => {
                    failed_keys.insert(key);
                }
                None if failed_keys.contains(&key) => {
                    job.outcome = Some(Err(ProduceFailure::Transient(
                        "not sent: an earlier output with the same partition key failed".into(),
                    )));
                }
                _ => {}
            }
            jobs.push(job);
        }
        let mut pending: Vec<usize> = (0..jobs.len())
            .filter(|&i| jobs[i].outcome.is_none())
            .collect();
        let mut attempt = 0;
        while !pending.is_empty() {
            attempt += 1;
            let (next, out_of_time) = self.attempt(&mut jobs, &pending, deadline, metrics).await;
            pending = next;
            if pending.is_empty() {
                break;
            }
            let stop = if out_of_time {
                Err(GiveUp::Deadline(attempt))
            } else {
                self.policy.next_wait(attempt, &deadline)
            };
            match stop {
                Ok(wait) => {
                    metrics.add(METRIC_RECORDS_RETRIED, pending.len() as u64);
                    tokio::time::sleep(wait).await;
                }
                Err(give_up) => {
                    for &i in &pending {
                        let job = &mut jobs[i];
                        let last = job.last_error.as_deref().unwrap_or("none");
                        job.outcome = Some(Err(ProduceFailure::Transient(format!(
                            "kinesis put {give_up}; last error: {last}"
                        ))));
                    }
                    break;
                }
            }
        }
        jobs.into_iter()
            .map(|job| {
                job.outcome.unwrap_or_else(|| {
                    Err(ProduceFailure::Transient(
                        "kinesis put was not attempted".into(),
                    ))
                })
            })
            .collect()
    }

    /// One pass over `pending` (indices into `jobs`, in input order), request after request. Returns the
    /// indices to try again, in input order, and whether the deadline cut the pass short.
    async fn attempt(
        &self,
        jobs: &mut [Job],
        pending: &[usize],
        deadline: Deadline,
        metrics: &Metrics,
    ) -> (Vec<usize>, bool) {
        let planned: Vec<(&str, usize, usize)> = pending
            .iter()
            .map(|&i| {
                let job = &jobs[i];
                (
                    job.entry.partition_key.as_str(),
                    job.group,
                    job.entry.size(),
                )
            })
            .collect();
        let requests: Vec<Vec<usize>> = plan_ordered_requests(&planned)
            .into_iter()
            .map(|request| request.into_iter().map(|k| pending[k]).collect())
            .collect();
        let mut again = Vec::new();
        let mut failed_keys: HashSet<String> = HashSet::new();
        for (n, request) in requests.iter().enumerate() {
            let left = deadline.remaining();
            if left == Some(std::time::Duration::ZERO) {
                again.extend(requests[n..].iter().flatten().copied());
                again.sort_unstable();
                return (again, true);
            }
            let (held, send): (Vec<usize>, Vec<usize>) = request
                .iter()
                .partition(|&&i| failed_keys.contains(&jobs[i].entry.partition_key));
            for &i in &held {
                jobs[i].last_error.get_or_insert_with(|| {
                    "held behind an earlier failed entry with the same partition key".into()
                });
            }
            again.extend(held);
            if send.is_empty() {
                continue;
            }
            let batch: Vec<PutEntry> = send.iter().map(|&i| jobs[i].entry.clone()).collect();
            metrics.incr(METRIC_PUT_RECORDS_CALLS);
            let call = self.sink.put_records(&batch);
            let result = match left {
                Some(left) => tokio::time::timeout(left, call).await.unwrap_or_else(|_| {
                    Err(SinkError(
                        "no answer before the invocation deadline (the request may have been applied)"
                            .into(),
                    ))
                }),
                None => call.await,
            };
            match result {
                Ok(results) => {
                    for (&i, result) in send.iter().zip(results) {
                        let job = &mut jobs[i];
                        match result {
                            EntryOutcome::Stored => job.outcome = Some(Ok(job.delivery.clone())),
                            EntryOutcome::Failed { code, message } => {
                                job.last_error = Some(format!("{code}: {message}"));
                                failed_keys.insert(job.entry.partition_key.clone());
                                again.push(i);
                            }
                        }
                    }
                }
                Err(e) => {
                    for &i in &send {
                        jobs[i].last_error = Some(e.to_string());
                        failed_keys.insert(jobs[i].entry.partition_key.clone());
                    }
                    again.extend(send);
                }
            }
        }
        again.sort_unstable();
        (again, false)
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
        let swapped = large.swap(entry, record.header).await?;
        metrics.incr(METRIC_POINTER_RECORDS);
        Ok(swapped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{SourceRef, sha256_hex};
    use crate::testing::{MemoryBlobs, MemorySink};
    use std::time::Duration;

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
                    user_record: None,
                },
            },
        }
    }

    fn fast() -> Backoff {
        Backoff {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    #[tokio::test]
    async fn resends_only_failed_entries_with_their_partition_keys() {
        let sink = Arc::new(MemorySink {
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
        let sink = Arc::new(MemorySink {
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
    async fn retries_whole_failed_calls_and_sends_nothing_after_the_deadline() {
        // Without a deadline, a failed call is resent whole.
        let sink = Arc::new(MemorySink {
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
        // With a deadline that has passed, no request is made at all: the time left is for dead letters and
        // the answer to Lambda.
        let sink = Arc::new(MemorySink::default());
        let outcomes = Producer::new(sink.clone(), None, fast())
            .send(
                vec![record("a", "x")],
                Deadline::after(Duration::ZERO),
                &Metrics::new(),
            )
            .await;
        match &outcomes[0] {
            Err(ProduceFailure::Transient(msg)) => {
                assert!(msg.contains("invocation deadline"), "{msg}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(sink.call_count(), 0);
    }

    // On tokio's paused clock the 30 s answer and the 200 ms deadline are virtual time: the cut comes at exactly
    // the deadline, whatever the machine's load.
    #[tokio::test(start_paused = true)]
    async fn a_request_is_cut_at_the_deadline() {
        let sink = Arc::new(MemorySink::slow(Duration::from_secs(30)));
        let started = tokio::time::Instant::now();
        let outcomes = Producer::new(sink.clone(), None, fast())
            .send(
                vec![record("a", "x")],
                Deadline::after(Duration::from_millis(200)),
                &Metrics::new(),
            )
            .await;
        assert_eq!(started.elapsed(), Duration::from_millis(200));
        assert!(
            matches!(&outcomes[0], Err(ProduceFailure::Transient(m)) if m.contains("no answer before the invocation deadline")),
            "{outcomes:?}"
        );
    }

    #[tokio::test]
    async fn after_a_key_fails_its_later_entries_wait_behind_the_resend() {
        // Two requests: entry 0 (key a) fails in the first; a's entry in the second request is held back to the
        // next attempt, where it goes after a's resend. Key b is not held.
        let mut records: Vec<OutboundRecord> = (0..MAX_RECORDS_PER_REQUEST)
            .map(|i| record(if i == 0 { "a" } else { "b" }, &format!("first-{i}")))
            .collect();
        records.push(record("a", "second-a"));
        records.push(record("b", "second-b"));
        let sink = Arc::new(MemorySink {
            fail: vec![vec![0]],
            ..Default::default()
        });
        let outcomes = Producer::new(sink.clone(), None, fast())
            .send(records, Deadline::none(), &Metrics::new())
            .await;
        assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");
        let calls = sink.calls.lock().unwrap();
        assert_eq!(calls.len(), 3);
        let bodies = |call: &Vec<PutEntry>| -> Vec<String> {
            call.iter()
                .map(|e| String::from_utf8_lossy(&e.data).into_owned())
                .collect()
        };
        assert_eq!(bodies(&calls[1]), vec!["second-b"]);
        assert_eq!(bodies(&calls[2]), vec!["first-0", "second-a"]);
        // a's stored order is its input order.
        let a: Vec<String> = sink
            .stored()
            .iter()
            .filter(|e| e.partition_key == "a")
            .map(|e| String::from_utf8_lossy(&e.data).into_owned())
            .collect();
        assert_eq!(a, vec!["first-0", "second-a"]);
    }

    #[tokio::test]
    async fn in_order_a_keys_later_record_never_shares_a_request_with_its_failed_earlier_one() {
        // a's first record (two outputs) and b's record fill one request; a's second record goes in the next.
        // a's first output fails: its second record is held, and lands only after the resend. With plain `send`
        // (one group) the same failure lets a's second record land first: that is what PutRecords does.
        let records = || {
            vec![
                (record("a", "a1-x"), 0),
                (record("a", "a1-y"), 0),
                (record("b", "b1"), 1),
                (record("a", "a2"), 2),
            ]
        };
        let sink = Arc::new(MemorySink {
            fail: vec![vec![0]],
            ..Default::default()
        });
        let outcomes = Producer::new(sink.clone(), None, fast())
            .send_in_order(records(), Deadline::none(), &Metrics::new())
            .await;
        assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");
        let a = |sink: &MemorySink| -> Vec<String> {
            sink.stored()
                .iter()
                .filter(|e| e.partition_key == "a")
                .map(|e| String::from_utf8_lossy(&e.data).into_owned())
                .collect()
        };
        assert_eq!(a(&sink), vec!["a1-y", "a1-x", "a2"], "a2 after a1's resend");
        let plain = Arc::new(MemorySink {
            fail: vec![vec![0]],
            ..Default::default()
        });
        Producer::new(plain.clone(), None, fast())
            .send(
                records().into_iter().map(|(r, _)| r).collect(),
                Deadline::none(),
                &Metrics::new(),
            )
            .await;
        assert_eq!(
            a(&plain),
            vec!["a1-y", "a2", "a1-x"],
            "PutRecords goes on past a failed entry"
        );
    }

    #[tokio::test]
    async fn a_failed_oversize_store_holds_its_key_back() {
        let sink = Arc::new(MemorySink::default());
        let producer = Producer::new(
            sink.clone(),
            Some(LargePayloads {
                store: Arc::new(MemoryBlobs::failing()),
                bucket: "bucket".into(),
            }),
            fast(),
        );
        let big = "x".repeat(MAX_RECORD_BYTES);
        let outcomes = producer
            .send(
                vec![
                    record("k", &big),
                    record("k", "later"),
                    record("other", "ok"),
                ],
                Deadline::none(),
                &Metrics::new(),
            )
            .await;
        assert!(
            matches!(&outcomes[0], Err(ProduceFailure::Transient(m)) if m.contains("cannot store oversized"))
        );
        assert!(
            matches!(&outcomes[1], Err(ProduceFailure::Transient(m)) if m.contains("same partition key"))
        );
        assert_eq!(outcomes[2], Ok(Delivery::Direct));
        assert_eq!(sink.stored().len(), 1);
    }

    #[tokio::test]
    async fn bad_partition_keys_and_unstorable_oversize_are_permanent() {
        let sink = Arc::new(MemorySink::default());
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
        let sink = Arc::new(MemorySink::default());
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
        let stored = blobs.under(LARGE_PAYLOAD_PREFIX);
        assert_eq!(stored[0].1.len(), MAX_RECORD_BYTES);
        assert_eq!(payload_ref.key, stored[0].0);
        assert_eq!(payload_ref.sha256, sha256_hex(&stored[0].1));
        let sent: serde_json::Value =
            serde_json::from_slice(&sink.calls.lock().unwrap()[0][0].data).unwrap();
        assert_eq!(sent["payload_ref"]["bytes"], MAX_RECORD_BYTES);
        assert_eq!(sent["event_id"], format!("id-k-{MAX_RECORD_BYTES}"));
        assert_eq!(metrics.get(METRIC_POINTER_RECORDS), 1);
    }
}
