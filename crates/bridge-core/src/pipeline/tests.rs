//! The pipeline's own rules, over in-memory ports: the order rule, a dead letter that cannot be written,
//! outcomes matched by index, the deadline, and records left unfinished after commit.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;

use super::*;
use crate::envelope::Header;
use crate::retry::Backoff;
use crate::testing::{MemoryBlobs, MemorySink, failed_sequence_numbers, kinesis_event};

/// Records are `key:value`. `value` "slow" resolves transiently failing; "x" outputs an invalid (empty)
/// partition key; "two" gives two outputs. Data without a colon is unusable.
#[derive(Debug, Default)]
struct Toy {
    /// Per record settled: how many results it was handed.
    settled: Mutex<Vec<(usize, usize)>>,
    /// after_commit: records not finished when the deadline passes, each taking this long.
    commit_delay: Duration,
}

#[derive(Debug)]
struct ToyItem {
    key: String,
    value: String,
}

#[async_trait]
impl Flow for Toy {
    type Item = ToyItem;
    type Plan = Vec<usize>;

    const FUNCTION: &'static str = "toy";
    const METRICS: &'static [&'static str] = &COMMON_METRICS;

    fn pipeline(&self) -> &Pipeline {
        unreachable!("the tests run the pipeline directly")
    }

    fn decode(&self, record: &SourceRecord, _: &Metrics) -> Decoded<ToyItem> {
        let text = String::from_utf8_lossy(&record.data).into_owned();
        match text.split_once(':') {
            Some((key, value)) => Decoded::item(
                vec![key.to_owned()],
                ToyItem {
                    key: key.to_owned(),
                    value: value.to_owned(),
                },
            ),
            None => Decoded::failed(
                Vec::new(),
                Failure::new(FailureClass::UnusableChange, "no colon"),
            ),
        }
    }

    async fn resolve(&self, slots: &mut [Slot<ToyItem>], _: Deadline, _: &Metrics) -> Vec<usize> {
        for slot in slots.iter_mut() {
            if slot.item().is_some_and(|i| i.value == "slow") {
                slot.fail(Failure::new(
                    FailureClass::Unavailable,
                    "payload url timed out",
                ));
            }
        }
        Vec::new()
    }

    fn outputs(
        &self,
        _: &mut Vec<usize>,
        item: &mut ToyItem,
        _: &Metrics,
    ) -> Vec<Result<OutboundRecord, ProduceFailure>> {
        let out = |pk: &str, body: String| {
            Ok(OutboundRecord {
                partition_key: pk.to_owned(),
                data: Bytes::from(body.clone()),
                header: Header {
                    schema: "toy/v1".into(),
                    event_id: body,
                    kind: "t".into(),
                    timestamp: "2023-11-14T22:13:20.123Z".into(),
                    received_at: None,
                    source: SourceRef::default(),
                },
            })
        };
        match item.value.as_str() {
            "x" => vec![out("", "x".into())],
            "two" => vec![
                out(&item.key, format!("{}:two-1", item.key)),
                out(&item.key, format!("{}:two-2", item.key)),
            ],
            v => vec![out(&item.key, format!("{}:{v}", item.key))],
        }
    }

    fn settle(
        &self,
        plan: &mut Vec<usize>,
        index: usize,
        _: &ToyItem,
        results: &[Result<Delivery, ProduceFailure>],
        _: &Metrics,
    ) -> Result<(), Failure> {
        self.settled.lock().unwrap().push((index, results.len()));
        plan.push(index);
        match results.iter().find_map(|r| r.as_ref().err()) {
            Some(e) => Err(Failure::new(FailureClass::OutputRejected, e)),
            None => Ok(()),
        }
    }

    async fn after_commit(
        &self,
        plan: Vec<usize>,
        deadline: Deadline,
        _: &Metrics,
    ) -> Vec<(usize, Failure)> {
        let mut unfinished = Vec::new();
        if self.commit_delay.is_zero() {
            return unfinished;
        }
        for i in plan {
            if !deadline.allows(self.commit_delay) {
                unfinished.push((i, Failure::new(FailureClass::Deadline, "mark not moved")));
                continue;
            }
            tokio::time::sleep(self.commit_delay).await;
        }
        unfinished
    }
}

fn event(data: &[&str]) -> RawKinesisEvent {
    kinesis_event(data, 1)
}

fn fast() -> Backoff {
    Backoff::new(3, Duration::from_millis(1), Duration::from_millis(2))
}

fn pipeline(sink: Arc<MemorySink>, blobs: Arc<MemoryBlobs>) -> Pipeline {
    Pipeline::new(
        Producer::new(sink, None, fast()),
        DeadLetterWriter::new(blobs, "bucket"),
    )
}

fn bodies(sink: &MemorySink) -> Vec<String> {
    sink.stored()
        .iter()
        .map(|e| String::from_utf8_lossy(&e.data).into_owned())
        .collect()
}

#[tokio::test]
async fn a_transient_failure_holds_its_keys_later_records_back_before_anything_is_produced() {
    let sink = Arc::new(MemorySink::default());
    let p = pipeline(sink.clone(), Arc::new(MemoryBlobs::default()));
    let metrics = Metrics::new();
    let response = p
        .run(
            &Toy::default(),
            event(&["a:1", "a:slow", "b:1", "a:2", "b:2"]),
            Deadline::none(),
            &metrics,
        )
        .await;
    assert_eq!(failed_sequence_numbers(&response), vec![2, 4]);
    // a:2 never reached the stream: it was held before producing, not produced and reported afterwards.
    assert_eq!(bodies(&sink), vec!["a:1", "b:1", "b:2"]);
    assert_eq!(metrics.get(METRIC_BATCH_ITEM_FAILURES), 2);
    assert_eq!(metrics.get(METRIC_RECORDS_IN), 5);
}

#[tokio::test]
async fn a_producer_failure_reports_the_keys_later_records_too() {
    // The first request fails whole once, then every entry goes through on the resend; with one attempt
    // only, a's first output fails and the record after it that shares its key is reported with it.
    let sink = Arc::new(MemorySink {
        fail: vec![vec![0]],
        ..Default::default()
    });
    let p = Pipeline::new(
        Producer::new(
            sink.clone(),
            None,
            Backoff::new(1, Duration::ZERO, Duration::ZERO),
        ),
        DeadLetterWriter::new(Arc::new(MemoryBlobs::default()), "bucket"),
    );
    let response = p
        .run(
            &Toy::default(),
            event(&["a:1", "b:1", "a:2"]),
            Deadline::none(),
            &Metrics::new(),
        )
        .await;
    assert_eq!(failed_sequence_numbers(&response), vec![1, 3]);
    // a:2 is a later record of a's key: it never shares a request with a:1, so when a:1 fails it is held, not
    // sent ahead of it, and both come again on the redelivery.
    assert_eq!(bodies(&sink), vec!["b:1"]);
}

#[tokio::test]
async fn a_dead_letter_that_cannot_be_written_is_a_retry_not_a_loss() {
    let sink = Arc::new(MemorySink::default());
    let p = pipeline(sink.clone(), Arc::new(MemoryBlobs::failing()));
    let metrics = Metrics::new();
    let response = p
        .run(
            &Toy::default(),
            event(&["a:1", "no colon here", "b:1"]),
            Deadline::none(),
            &metrics,
        )
        .await;
    assert_eq!(failed_sequence_numbers(&response), vec![2]);
    assert_eq!(metrics.get(METRIC_DEAD_LETTERED), 0);
    assert_eq!(bodies(&sink), vec!["a:1", "b:1"]);

    // With a working bucket the same record is dead-lettered with its reason and data.
    let blobs = Arc::new(MemoryBlobs::default());
    let metrics = Metrics::new();
    let response = pipeline(Arc::new(MemorySink::default()), blobs.clone())
        .run(
            &Toy::default(),
            event(&["no colon here"]),
            Deadline::none(),
            &metrics,
        )
        .await;
    assert!(response.batch_item_failures.is_empty());
    let letters = blobs.under("dead-letter/toy/");
    assert_eq!(letters.len(), 1);
    let letter: serde_json::Value = serde_json::from_slice(&letters[0].1).unwrap();
    assert_eq!(letter["reason"], "no colon");
    assert_eq!(letter["source"]["sequence_number"], "000000000001");
    assert_eq!(metrics.get(METRIC_DEAD_LETTERED), 1);
}

#[tokio::test]
async fn outcomes_reach_their_own_records_by_index() {
    let sink = Arc::new(MemorySink {
        // Fail the second entry of the first request once: it is resent, out of its first position.
        fail: vec![vec![1]],
        ..Default::default()
    });
    let blobs = Arc::new(MemoryBlobs::default());
    let toy = Toy::default();
    let response = pipeline(sink.clone(), blobs.clone())
        .run(
            &toy,
            event(&["a:two", "b:x", "c:1"]),
            Deadline::none(),
            &Metrics::new(),
        )
        .await;
    assert!(response.batch_item_failures.is_empty());
    // Each record was settled with exactly its own outputs' results; b's invalid key dead-lettered only b.
    let mut settled = toy.settled.lock().unwrap().clone();
    settled.sort_unstable();
    assert_eq!(settled, vec![(0, 2), (1, 1), (2, 1)]);
    let letters = blobs.under("dead-letter/toy/");
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0].0.ends_with("/000000000002.json"),
        "{}",
        letters[0].0
    );
    let mut stored = bodies(&sink);
    stored.sort();
    assert_eq!(stored, vec!["a:two-1", "a:two-2", "c:1"]);
}

// On tokio's paused clock: the sink's 300 ms, the deadline and the timeouts are virtual time, exact whatever the
// machine's load, so the test says exactly when the answer comes.
#[tokio::test(start_paused = true)]
async fn the_deadline_bounds_the_batch_and_a_redelivery_completes_it() {
    // 2,000 records make four requests of 500; each takes 300 ms. With 700 ms left, the answer comes in
    // time (the third request is cut at the deadline), with the records not stored reported from the lowest one on.
    let data: Vec<String> = (0..2_000).map(|i| format!("k{}:{i}", i % 50)).collect();
    let refs: Vec<&str> = data.iter().map(String::as_str).collect();
    let sink = Arc::new(MemorySink::slow(Duration::from_millis(300)));
    let p = pipeline(sink.clone(), Arc::new(MemoryBlobs::default()));
    let started = Instant::now();
    let response = p
        .run(
            &Toy::default(),
            event(&refs),
            Deadline::after(Duration::from_millis(700)),
            &Metrics::new(),
        )
        .await;
    let took = started.elapsed();
    assert!(
        took <= Duration::from_millis(700),
        "answered after {took:?}"
    );
    let retried = failed_sequence_numbers(&response);
    assert!(
        !retried.is_empty() && retried.len() < 2_000,
        "{} retried; stored {}, calls {}",
        retried.len(),
        sink.stored().len(),
        sink.call_count()
    );
    let lowest = retried[0];
    // Lambda redelivers from the lowest reported sequence number; this time there is time enough.
    let response = p
        .run(
            &Toy::default(),
            kinesis_event(&refs[usize::try_from(lowest).unwrap() - 1..], lowest),
            Deadline::none(),
            &Metrics::new(),
        )
        .await;
    assert!(response.batch_item_failures.is_empty());
    let mut stored = bodies(&sink);
    stored.sort();
    stored.dedup();
    let mut expected = data.clone();
    expected.sort();
    assert_eq!(
        stored, expected,
        "every record is on the stream after the redelivery"
    );
}

// Paused clock: two 150 ms commits fit in the 400 ms, the third would not, whatever the machine's load.
#[tokio::test(start_paused = true)]
async fn records_left_unfinished_after_commit_are_retried() {
    let toy = Toy {
        commit_delay: Duration::from_millis(150),
        ..Toy::default()
    };
    let response = pipeline(
        Arc::new(MemorySink::default()),
        Arc::new(MemoryBlobs::default()),
    )
    .run(
        &toy,
        event(&["a:1", "b:1", "c:1", "d:1"]),
        Deadline::after(Duration::from_millis(400)),
        &Metrics::new(),
    )
    .await;
    let retried = failed_sequence_numbers(&response);
    assert!(!retried.is_empty() && retried.len() < 4, "{retried:?}");
}

#[tokio::test]
async fn a_record_without_sequence_number_whose_dead_letter_fails_retries_the_whole_batch() {
    let mut event = event(&["a:1"]);
    event
        .records
        .push(serde_json::json!({"kinesis": {"data": "not base64!"}}));
    let metrics = Metrics::new();
    let response = pipeline(
        Arc::new(MemorySink::default()),
        Arc::new(MemoryBlobs::failing()),
    )
    .run(&Toy::default(), event, Deadline::none(), &metrics)
    .await;
    // An empty item identifier: Lambda retries the whole batch, so the record cannot vanish.
    let ids: Vec<Option<&str>> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_deref())
        .collect();
    assert_eq!(ids, vec![Some("")]);
    assert_eq!(metrics.get(METRIC_BATCH_ITEM_FAILURES), 1);
}

#[tokio::test]
async fn retries_older_than_the_give_up_age_become_dead_letters_with_their_data() {
    // The batch arrived in 2023 (the test event's arrival time): far past a one-hour limit.
    let blobs = Arc::new(MemoryBlobs::default());
    let sink = Arc::new(MemorySink::default());
    let p =
        pipeline(sink.clone(), blobs.clone()).with_give_up_age(Some(Duration::from_secs(3_600)));
    let metrics = Metrics::new();
    let response = p
        .run(
            &Toy::default(),
            event(&["a:slow", "b:1", "a:2"]),
            Deadline::none(),
            &metrics,
        )
        .await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(bodies(&sink), vec!["b:1"]);
    // The failing record and the one held back behind it both keep their data.
    let letters = blobs.under("dead-letter/toy/");
    assert_eq!(letters.len(), 2);
    let first: serde_json::Value = serde_json::from_slice(&letters[0].1).unwrap();
    let reason = first["reason"].as_str().unwrap();
    assert!(
        reason.contains("limit 3600 s") && reason.contains("payload url timed out"),
        "{reason}"
    );
    assert_eq!(first["data_base64"], "YTpzbG93");
    assert_eq!(metrics.get(METRIC_DEAD_LETTERED), 2);

    // Without the limit the same batch is retried, as before.
    let response = pipeline(
        Arc::new(MemorySink::default()),
        Arc::new(MemoryBlobs::default()),
    )
    .run(
        &Toy::default(),
        event(&["a:slow", "b:1", "a:2"]),
        Deadline::none(),
        &Metrics::new(),
    )
    .await;
    assert_eq!(failed_sequence_numbers(&response), vec![1, 3]);
}

fn aggregate_of(data: &[&str]) -> Vec<u8> {
    let users: Vec<crate::kpl::UserRecord> = data
        .iter()
        .map(|d| crate::kpl::UserRecord {
            partition_key: d.split(':').next().unwrap_or("pk").to_owned(),
            explicit_hash_key: None,
            data: d.as_bytes().to_vec(),
        })
        .collect();
    crate::kpl::aggregate(&users)
}

#[tokio::test]
async fn an_accepted_aggregate_gives_each_user_record_a_slot_and_a_dead_letter_of_its_own() {
    let sink = Arc::new(MemorySink::default());
    let blobs = Arc::new(MemoryBlobs::default());
    let metrics = Metrics::new();
    let response = pipeline(sink.clone(), blobs.clone())
        .with_aggregates(Aggregates::Accept {
            max_user_records: 4,
        })
        .run(
            &Toy::default(),
            kinesis_event(&[aggregate_of(&["a:1", "bad one", "b:1", "bad two"])], 1),
            Deadline::none(),
            &metrics,
        )
        .await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(bodies(&sink), vec!["a:1", "b:1"]);
    // The two bad siblings share the aggregate's sequence number; neither dead letter overwrites the other.
    let letters = blobs.under("dead-letter/toy/");
    let data: Vec<String> = letters
        .iter()
        .map(|(_, body)| {
            let letter: serde_json::Value = serde_json::from_slice(body).unwrap();
            letter["data_base64"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(data.len(), 2, "{letters:?}");
    assert!(data.contains(&"YmFkIG9uZQ==".to_owned()) && data.contains(&"YmFkIHR3bw==".to_owned()));
    assert_eq!(metrics.get(METRIC_DEAD_LETTERED), 2);
}

#[tokio::test]
async fn a_refused_or_oversized_aggregate_is_one_dead_letter_that_says_why() {
    for (aggregates, want) in [
        (
            Aggregates::Refuse,
            "does not accept aggregates (KPL_AGGREGATES=refuse)",
        ),
        (
            Aggregates::Accept {
                max_user_records: 2,
            },
            "3 user records, more than the 2",
        ),
    ] {
        let sink = Arc::new(MemorySink::default());
        let blobs = Arc::new(MemoryBlobs::default());
        let whole = aggregate_of(&["a:1", "b:1", "c:1"]);
        let response = pipeline(sink.clone(), blobs.clone())
            .with_aggregates(aggregates)
            .run(
                &Toy::default(),
                kinesis_event(&[whole.clone(), b"d:1".to_vec()], 1),
                Deadline::none(),
                &Metrics::new(),
            )
            .await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(
            bodies(&sink),
            vec!["d:1"],
            "the plain record after it goes on"
        );
        let letters = blobs.under("dead-letter/toy/");
        assert_eq!(letters.len(), 1);
        let letter: serde_json::Value = serde_json::from_slice(&letters[0].1).unwrap();
        let reason = letter["reason"].as_str().unwrap();
        assert!(reason.contains(want), "{reason}");
        use base64::Engine as _;
        assert_eq!(
            letter["data_base64"],
            base64::engine::general_purpose::STANDARD.encode(&whole),
            "the whole aggregate is kept"
        );
    }
}

#[test]
fn settings_read_the_aggregate_policy_with_the_functions_default() {
    use crate::config::env_map as env;
    let refuse = Settings::from_env(&env(&[]), Aggregates::Refuse).unwrap();
    assert_eq!(refuse.aggregates, Aggregates::Refuse);
    assert_eq!(
        Settings::from_env(&env(&[]), Aggregates::ACCEPT)
            .unwrap()
            .aggregates,
        Aggregates::ACCEPT
    );
    let on = Settings::from_env(
        &env(&[
            (ENV_KPL_AGGREGATES, "accept"),
            (ENV_KPL_MAX_USER_RECORDS, "7"),
        ]),
        Aggregates::Refuse,
    )
    .unwrap();
    assert_eq!(
        on.aggregates,
        Aggregates::Accept {
            max_user_records: 7
        }
    );
    let off = Settings::from_env(&env(&[(ENV_KPL_AGGREGATES, "refuse")]), Aggregates::ACCEPT);
    assert_eq!(off.unwrap().aggregates, Aggregates::Refuse);
    for bad in [(ENV_KPL_AGGREGATES, "yes"), (ENV_KPL_MAX_USER_RECORDS, "0")] {
        let err = Settings::from_env(&env(&[bad]), Aggregates::ACCEPT).unwrap_err();
        assert!(err.to_string().contains(bad.0), "{err}");
    }
}
