//! End-to-end tests of the app event forwarder: the real forwarder, through the real AWS SDK, against moto
//! server (Kinesis, S3), on the sample events in `events/app-*.json`.

#![allow(clippy::unwrap_used, reason = "test helpers fail loudly")]

use std::collections::{HashMap, HashSet};

use app_events::config::{ENV_DEAD_LETTER_BUCKET, ENV_OUTPUT_STREAM};
use app_events::handler::{METRIC_DUPLICATES_DROPPED, METRIC_EVENTS_FORWARDED};
use app_events::{AppEventForwarder, Config};
use bridge_core::Deadline;
use bridge_core::kinesis_event::RawKinesisEvent;
use bridge_core::pipeline::{
    ENV_KPL_AGGREGATES, ENV_KPL_MAX_USER_RECORDS, Flow as _, METRIC_DEAD_LETTERED,
};
use bridge_core::telemetry::Metrics;
use devtools::LocalAws;
use devtools::emulator::unique_name;
use e2e::{assert_valid, sample, validator};
use serde_json::{Value, json};

struct AppHarness {
    aws: LocalAws,
    stream: String,
    bucket: String,
    forwarder: AppEventForwarder,
}

impl AppHarness {
    async fn new() -> Self {
        Self::with_env(&[]).await
    }

    /// A forwarder configured as deployed, plus the `extra` variables.
    async fn with_env(extra: &[(&str, &str)]) -> Self {
        let aws = LocalAws::from_env().await.unwrap();
        let (stream, bucket) = (unique_name("app-out"), unique_name("app-dl"));
        aws.create_stream(&stream, 1).await.unwrap();
        aws.create_bucket(&bucket).await.unwrap();
        let mut env: HashMap<String, String> = HashMap::from([
            (ENV_OUTPUT_STREAM.to_owned(), stream.clone()),
            (ENV_DEAD_LETTER_BUCKET.to_owned(), bucket.clone()),
        ]);
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let config = Config::from_env(&env).unwrap();
        let forwarder = AppEventForwarder::connect(&config, &aws.sdk, aws.s3.clone());
        Self {
            aws,
            stream,
            bucket,
            forwarder,
        }
    }

    async fn run(&self, event: &Value) -> (Vec<String>, Metrics) {
        let event: RawKinesisEvent = serde_json::from_value(event.clone()).unwrap();
        let metrics = Metrics::new();
        let response = self
            .forwarder
            .process(event, Deadline::none(), &metrics)
            .await;
        let failed = response
            .batch_item_failures
            .iter()
            .filter_map(|f| f.item_identifier.clone())
            .collect();
        (failed, metrics)
    }

    /// Every output record, checked against the schema and its partition key.
    async fn outputs(&self) -> Vec<Value> {
        let schema = validator("app-event.v1.json");
        self.aws
            .read_stream(&self.stream)
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let doc: Value = serde_json::from_slice(r.data.as_ref()).unwrap();
                assert_valid(&schema, &doc);
                let key = doc["anonymous_id"].as_str().or(doc["user_id"].as_str());
                assert_eq!(
                    r.partition_key.as_deref(),
                    key,
                    "partition key: anonymous id (the install), else user"
                );
                doc
            })
            .collect()
    }

    async fn dead_letters(&self) -> Vec<Value> {
        self.aws
            .read_objects(&self.bucket, "dead-letter/app-event-forwarder/")
            .await
            .unwrap()
            .into_iter()
            .map(|(_, body)| serde_json::from_slice(&body).unwrap())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_shapes_map_as_documented_and_validate() {
    let h = AppHarness::new().await;
    let (failed, m) = h.run(&sample("app-events")).await;
    assert!(failed.is_empty());
    assert_eq!(m.get(METRIC_EVENTS_FORWARDED), 5);
    assert_eq!(m.get(METRIC_DUPLICATES_DROPPED), 1, "the provider's resend");
    assert!(h.dead_letters().await.is_empty());
    let stream = h.outputs().await;
    // On the stream each user's events keep their order; across users the order is the producer's (a user's
    // later record goes in a later request).
    let first_user: Vec<&str> = stream
        .iter()
        .filter(|d| d["user_id"] == "4f3e2d1c-0000-4000-8000-000000000001")
        .map(|d| d["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        first_user,
        ["_session.start", "level_complete", "_session.stop"]
    );
    // In source order (their lineage):
    let mut out = stream.clone();
    out.sort_by_key(|d| {
        let seq = d["source"]["sequence_number"].as_str().unwrap().to_owned();
        (seq.len(), seq)
    });
    let names: Vec<&str> = out.iter().map(|d| d["event"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "_session.start",
            "level_complete",
            "_session.start",
            "_session.stop",
            "_app.install"
        ]
    );
    // Ours, from a phone ten minutes slow: corrected by received_at - sent_at, and the correction recorded.
    let start = &out[0];
    assert_eq!(
        start["clock"]["original_timestamp"],
        "2023-11-14T22:04:00.000Z"
    );
    assert_eq!(start["clock"]["offset_ms"], 601_000);
    assert_eq!(start["timestamp"], "2023-11-14T22:14:01.000Z");
    assert_eq!(
        start["context"]["session_start"],
        "2023-11-14T22:14:01.000Z"
    );
    assert_eq!(start["user_id"], "4f3e2d1c-0000-4000-8000-000000000001");
    assert_eq!(
        out[1]["properties"],
        json!({"difficulty": "hard", "level": "forest-3", "score": 1250.0, "seconds": 93.5})
    );
    // Pinpoint's shape maps to the same output.
    let pinpoint = &out[2];
    assert_eq!(pinpoint["context"]["input_shape"], "pinpoint-event");
    assert_eq!(pinpoint["user_id"], "4f3e2d1c-0000-4000-8000-000000000002");
    assert_eq!(pinpoint["anonymous_id"], "install-android-0002");
    assert_eq!(pinpoint["context"]["platform"], "Android");
    assert_eq!(pinpoint["context"]["os_version"], "14");
    assert_eq!(pinpoint["context"]["make"], "ExampleCo");
    assert_eq!(pinpoint["context"]["session_id"], "session-0002");
    assert_eq!(pinpoint["traits"], json!({"plan": "pro"}));
    assert_eq!(
        pinpoint["properties"],
        json!({"campaign": "spring-launch", "launch_ms": 840.0})
    );
    assert_eq!(pinpoint["clock"]["offset_ms"], Value::Null);
    // Without any user, the anonymous id is the partition key (checked in outputs()).
    assert_eq!(out[4]["user_id"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resends_and_redeliveries_collapse_by_event_id() {
    let h = AppHarness::new().await;
    let event = sample("app-events");
    h.run(&event).await;
    // Lambda redelivers the same batch (a retry): every output comes again with the same id.
    h.run(&event).await;
    let out = h.outputs().await;
    let ids: HashSet<&str> = out
        .iter()
        .map(|d| d["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(out.len(), 10);
    assert_eq!(
        ids.len(),
        5,
        "a redelivery repeats ids, never invents new ones"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_records_are_dead_lettered_with_reasons_while_the_rest_flows() {
    let h = AppHarness::new().await;
    let (failed, m) = h.run(&sample("app-hostile")).await;
    assert!(failed.is_empty(), "a hostile record never blocks the shard");
    let out = h.outputs().await;
    let ids: Vec<&str> = out.iter().map(|d| d["event"].as_str().unwrap()).collect();
    assert_eq!(ids, ["_session.start", "_session.stop"]);
    assert_eq!(m.get(METRIC_DEAD_LETTERED), 7);
    let mut reasons: Vec<String> = h
        .dead_letters()
        .await
        .iter()
        .map(|l| l["reason"].as_str().unwrap().to_owned())
        .collect();
    reasons.sort();
    for want in [
        "app event is not a json object: expected value",
        "recursion limit exceeded",
        "over the 32768-byte limit",
        "app event (ours): metrics.n: invalid type: string",
        "more than 24 h after its arrival",
        "belongs to nobody",
        "characters outside letters",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(want)),
            "no dead letter says '{want}': {reasons:#?}"
        );
    }
}

/// A KPL aggregate of three app events (made by the real aggregation library) gives three events, each with its
/// `user_record`, where the deployment accepts aggregates; delivered again, as after a retry of the aggregate,
/// the siblings come out with the same `event_id`s, so a consumer collapses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kpl_aggregate_gives_one_event_per_user_record_and_redelivery_keeps_their_ids() {
    let h = AppHarness::with_env(&[(ENV_KPL_AGGREGATES, "accept")]).await;
    let sample = sample("app-events");
    let docs: Vec<Value> = [0, 1, 4]
        .iter()
        .map(|i| e2e::record_data(&sample, *i))
        .collect();
    let mut event = json!({"Records": [sample["Records"][0].clone()]});
    e2e::set_record_aggregate(&mut event, 0, &docs, "anonymous_id");
    for _ in 0..2 {
        let (failed, _) = h.run(&event).await;
        assert!(failed.is_empty(), "{failed:?}");
    }
    let out = h.outputs().await;
    assert_eq!(out.len(), 6);
    let ids: Vec<&str> = out
        .iter()
        .map(|d| d["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids[..3], ids[3..], "the same event_ids on the redelivery");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 3);
    let positions: Vec<u64> = out
        .iter()
        .map(|d| d["source"]["user_record"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, vec![0, 1, 2, 0, 1, 2]);
    assert!(h.dead_letters().await.is_empty());
}

/// Three events without client ids, from three users, in one aggregate (the real library's bytes): three
/// outputs with three ids (the lineage id counts the user record), and a redelivery gives the same three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregated_events_without_client_ids_keep_an_id_each_across_redeliveries() {
    let h = AppHarness::with_env(&[(ENV_KPL_AGGREGATES, "accept")]).await;
    let sample = sample("app-events");
    let at = e2e::record_data(&sample, 0)["timestamp"].clone();
    let docs: Vec<Value> = (1..=3)
        .map(|i| json!({"event_type": "level_complete", "timestamp": at, "user_id": format!("4f3e2d1c-0000-4000-8000-00000000010{i}")}))
        .collect();
    let mut event = json!({"Records": [sample["Records"][0].clone()]});
    e2e::set_record_aggregate(&mut event, 0, &docs, "user_id");
    let mut runs = Vec::new();
    for _ in 0..2 {
        let (failed, m) = h.run(&event).await;
        assert!(failed.is_empty(), "{failed:?}");
        assert_eq!(m.get(METRIC_DUPLICATES_DROPPED), 0);
        assert_eq!(m.get(METRIC_EVENTS_FORWARDED), 3);
        runs.push(m);
    }
    let out = h.outputs().await;
    let ids = |run: &[Value]| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = run
            .iter()
            .map(|d| {
                (
                    d["user_id"].as_str().unwrap().to_owned(),
                    d["event_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(out.len(), 6);
    let (first, again) = (ids(&out[..3]), ids(&out[3..]));
    assert_eq!(first, again, "a redelivery gives the same three ids");
    assert_eq!(
        first.iter().map(|(_, id)| id).collect::<HashSet<_>>().len(),
        3,
        "three users, three ids: {first:?}"
    );
}

/// The app event stream refuses aggregates unless the deployment accepts them: the aggregate is one dead letter
/// with its reason and its bytes, and the records after it flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregate_on_the_app_event_stream_is_refused_by_default() {
    let h = AppHarness::new().await;
    let mut event = sample("app-events");
    let docs: Vec<Value> = (0..3).map(|i| e2e::record_data(&event, i)).collect();
    let bytes = e2e::set_record_aggregate(&mut event, 0, &docs, "anonymous_id");
    let (failed, m) = h.run(&event).await;
    assert!(failed.is_empty());
    assert_eq!(m.get(METRIC_DEAD_LETTERED), 1);
    let letters = h.dead_letters().await;
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0]["reason"]
            .as_str()
            .unwrap()
            .contains("app-event-forwarder does not accept aggregates (KPL_AGGREGATES=refuse)"),
        "{}",
        letters[0]["reason"]
    );
    use base64::Engine as _;
    assert_eq!(
        letters[0]["data_base64"],
        base64::engine::general_purpose::STANDARD.encode(&bytes)
    );
    // The five other records of the sample (one a resend) are forwarded as ever.
    assert_eq!(m.get(METRIC_EVENTS_FORWARDED), 4);
}

/// Where aggregates are accepted, a record's caps apply to each user record, and the number of user records per
/// aggregate is capped: one oversized sibling is dead-lettered alone, an aggregate over the count is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_aggregates_keep_every_per_record_cap_and_a_count_cap() {
    let h = AppHarness::with_env(&[
        (ENV_KPL_AGGREGATES, "accept"),
        (ENV_KPL_MAX_USER_RECORDS, "3"),
        ("APP_EVENT_MAX_RECORD_BYTES", "512"),
    ])
    .await;
    let sample = sample("app-events");
    let at = e2e::record_data(&sample, 0)["timestamp"].clone();
    let doc = |i: usize, pad: usize| {
        json!({"event_type": "level_complete", "timestamp": at, "anonymous_id": format!("install-{i}"),
               "properties": {"pad": "x".repeat(pad)}})
    };
    let mut event =
        json!({"Records": [sample["Records"][0].clone(), sample["Records"][0].clone()]});
    event["Records"][1]["kinesis"]["sequenceNumber"] =
        json!("49590338271490256608559692540925702759324208523137515619");
    // Three user records, the second over the 512-byte cap on its own; then four, one more than an aggregate holds.
    e2e::set_record_aggregate(
        &mut event,
        0,
        &[doc(1, 10), doc(2, 600), doc(3, 10)],
        "anonymous_id",
    );
    e2e::set_record_aggregate(
        &mut event,
        1,
        &[doc(4, 10), doc(5, 10), doc(6, 10), doc(7, 10)],
        "anonymous_id",
    );
    let (failed, m) = h.run(&event).await;
    assert!(failed.is_empty());
    let out: Vec<String> = h
        .outputs()
        .await
        .iter()
        .map(|d| d["anonymous_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(out, ["install-1", "install-3"]);
    let mut reasons: Vec<String> = h
        .dead_letters()
        .await
        .iter()
        .map(|l| l["reason"].as_str().unwrap().to_owned())
        .collect();
    reasons.sort();
    assert_eq!(m.get(METRIC_DEAD_LETTERED), 2, "{reasons:?}");
    assert!(
        reasons[0].contains("4 user records, more than the 3"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("over the 512-byte limit of an app event"),
        "{reasons:?}"
    );
}

/// One record whose session time overflows once corrected (each time parses on its own, and the event's times are
/// within RFC 3339's years) between two good ones: the good ones are forwarded, the poison one is dead-lettered
/// with its data, and nothing panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_whose_clock_correction_overflows_is_a_dead_letter_not_a_crash() {
    let h = AppHarness::new().await;
    let mut event = sample("app-events");
    let records = event["Records"].as_array().unwrap()[..3].to_vec();
    event["Records"] = Value::Array(records);
    let poison = json!({"event_type": "x", "anonymous_id": "a", "timestamp": "0000-01-01T00:00:00Z",
                        "sent_at": "0000-01-01T00:00:01Z", "session": {"id": "s", "start": 8_200_000_000_000_000_i64}});
    e2e::set_record_data(&mut event, 1, &poison);
    let (failed, m) = h.run(&event).await;
    assert!(failed.is_empty());
    let names: Vec<String> = h
        .outputs()
        .await
        .iter()
        .map(|d| d["event"].as_str().unwrap().to_owned())
        .collect();
    // Records 0 and 2 of the sample (its third record repeats its second's event id; here it stands alone).
    assert_eq!(names, ["_session.start", "level_complete"]);
    assert_eq!(m.get(METRIC_DEAD_LETTERED), 1);
    let letters = h.dead_letters().await;
    assert!(
        letters[0]["reason"]
            .as_str()
            .unwrap()
            .contains("session start corrected by the clock offset of sent_at"),
        "{}",
        letters[0]["reason"]
    );
    use base64::Engine as _;
    assert_eq!(
        letters[0]["data_base64"],
        base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&poison).unwrap())
    );
}

/// The lineage of a golden fixture's record: a documentation stream and shard, the `n`th sequence number.
fn golden_source(n: usize) -> bridge_core::envelope::SourceRef {
    bridge_core::envelope::SourceRef {
        stream_arn: "arn:aws:kinesis:us-east-1:123456789012:stream/app-events".into(),
        shard_id: "shardId-000000000000".into(),
        sequence_number: format!(
            "4959033827149025660855969254092570275932420852313751{:04}",
            5618 + n
        ),
        sub_sequence: 0,
        user_record: None,
    }
}

/// What the forwarder makes of one record: its outputs, or the reason it is refused.
fn forwarded(data: &[u8], partition_key: &str, arrival: &str, n: usize) -> Value {
    let record = bridge_core::kinesis_event::SourceRecord {
        source: golden_source(n),
        partition_key: partition_key.to_owned(),
        arrival: Some(
            chrono::DateTime::parse_from_rfc3339(arrival)
                .unwrap()
                .with_timezone(&chrono::Utc),
        ),
        data: data.to_vec(),
    };
    match app_events::handler::read(&record, &app_events::event::Limits::default()) {
        Ok(events) => {
            let schema = validator("app-event.v1.json");
            let events = serde_json::to_value(events).unwrap();
            for e in events.as_array().unwrap() {
                assert_valid(&schema, e);
            }
            events
        }
        Err(reason) => json!({ "refused": reason }),
    }
}

/// Compares `got` with the committed `expected` file, or writes it when `GOLDEN_WRITE=1` (then review the diff).
fn golden(expected: &std::path::Path, got: &Value) -> Option<String> {
    let text = format!("{}\n", serde_json::to_string_pretty(got).unwrap());
    if std::env::var("GOLDEN_WRITE").is_ok_and(|v| v == "1") {
        std::fs::write(expected, &text).unwrap();
        return None;
    }
    let want = std::fs::read_to_string(expected).unwrap_or_default();
    (want != text).then(|| format!("{} differs:\n{text}", expected.display()))
}

/// Every golden fixture copied from the clients' own repositories and docs (`events/app/golden/*/`, each with its
/// `SOURCE`) and every record the real Amplify JS client wrote (`events/app/clients/amplify-js/`) maps to its
/// committed `app-event/v1` output, or is refused with its committed reason (Pinpoint's messaging events).
#[test]
fn golden_fixtures_of_every_client_map_to_their_expected_outputs() {
    let mut differ = Vec::new();
    let dir = e2e::root().join("events/app/golden");
    let mut fixtures: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 14, "{fixtures:?}");
    for fixture in &fixtures {
        assert!(
            fixture.join("SOURCE").exists(),
            "{}: no SOURCE",
            fixture.display()
        );
        let record: Value =
            serde_json::from_slice(&std::fs::read(fixture.join("record.json")).unwrap()).unwrap();
        let got = forwarded(
            &std::fs::read(fixture.join("input.json")).unwrap(),
            record["partition_key"].as_str().unwrap(),
            record["arrival"].as_str().unwrap(),
            0,
        );
        differ.extend(golden(&fixture.join("expected.json"), &got));
    }
    let clients = e2e::root().join("events/app/clients/amplify-js");
    for scenario in ["our-shape", "pinpoint-shape", "auto-track"] {
        let sample: Value =
            e2e::json_file(&format!("events/app/clients/amplify-js/{scenario}.json"));
        let got: Vec<Value> = sample["records"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(n, r)| {
                forwarded(
                    &serde_json::to_vec(&r["data"]).unwrap(),
                    r["partitionKey"].as_str().unwrap(),
                    "2026-11-14T22:10:00.000Z",
                    n,
                )
            })
            .collect();
        differ.extend(golden(
            &clients.join(format!("{scenario}.expected.json")),
            &Value::Array(got),
        ));
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

/// The sample of every other client shape (`events/app-clients.json`) through the forwarder against moto: one
/// output per event, each naming its shape, the messaging event refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_shape_sample_is_forwarded_and_the_messaging_event_refused() {
    let h = AppHarness::new().await;
    let (failed, m) = h.run(&sample("app-clients")).await;
    assert!(failed.is_empty());
    assert_eq!(m.get(METRIC_EVENTS_FORWARDED), 6);
    let mut shapes: Vec<(String, String)> = h
        .outputs()
        .await
        .iter()
        .map(|d| {
            (
                d["context"]["input_shape"].as_str().unwrap().to_owned(),
                d["event"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    shapes.sort();
    let want: Vec<(String, String)> = [
        ("amplify-autotrack", "_session.start"),
        ("amplify-autotrack", "pageView"),
        ("enrichment", "level_complete"),
        ("pinpoint-batch", "_monetization.purchase"),
        ("pinpoint-batch", "_session.start"),
        ("pinpoint-stream", "_session.stop"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    assert_eq!(shapes, want);
    let letters = h.dead_letters().await;
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0]["reason"]
            .as_str()
            .unwrap()
            .contains("_campaign.send is a Pinpoint messaging event")
    );
}

// ---- Adversarial review (branch attack-app) ----------------------------------------------------------------
// Each test below began as a failing test of the adversarial review: it states what the README or the schema
// promises for an untrusted record, what the forwarder did instead, and what now holds. Pure ones run without
// moto; the pipeline ones use the in-memory ports of `bridge_core::testing`.

/// When every record of the review arrives: 2026-11-20T10:00:00Z.
const REVIEW_ARRIVAL_S: i64 = 1_795_168_800;

fn review_arrival() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(REVIEW_ARRIVAL_S, 0).unwrap()
}

/// What the forwarder's whole record path (`read`) makes of `data` under `limits`: the events as JSON, as they
/// would go on the stream, or the dead letter's reason.
fn read_record_with(
    data: &[u8],
    partition_key: &str,
    limits: &app_events::event::Limits,
) -> Result<Vec<Value>, String> {
    let record = bridge_core::kinesis_event::SourceRecord {
        source: golden_source(0),
        partition_key: partition_key.to_owned(),
        arrival: Some(review_arrival()),
        data: data.to_vec(),
    };
    app_events::handler::read(&record, limits).map(|events| {
        events
            .iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect()
    })
}

/// The reason a record keyed `install-1` is refused; `what` names it in the panic should it be forwarded.
#[allow(
    clippy::panic,
    reason = "a test helper: a forwarded record fails the test that expected a refusal"
)]
fn refusal(data: &str, what: &str) -> String {
    read_record(data, "install-1").map_or_else(
        |reason| reason,
        |events| panic!("{what} was accepted: {:#}", events[0]),
    )
}

/// [`read_record_with`] under the default limits.
fn read_record(data: &str, partition_key: &str) -> Result<Vec<Value>, String> {
    read_record_with(
        data.as_bytes(),
        partition_key,
        &app_events::event::Limits::default(),
    )
}

/// Every violation of `events/schema/app-event.v1.json` (formats checked) in `doc`.
fn schema_errors(doc: &Value) -> Vec<String> {
    validator("app-event.v1.json")
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

/// Ours: `timestamp` and `sent_at` each far in the future (or past) by the same amount, a client clock tens of
/// thousands of years off, would pass the arrival window once corrected, and put `+255479-11-28T14:13:20.000Z` (not
/// RFC 3339: four-digit years) in `sent_at` and `clock.original_timestamp`. Found by the adversarial review: now
/// every time that goes out is held to the years 0000 to 9999, and the record is refused naming the field.
#[test]
fn a_client_time_outside_rfc_3339_years_is_refused_naming_the_field() {
    for t in ["8000000000000000", "-8000000000000000", "253402300800000"] {
        let data = format!(
            r#"{{"event_type": "level_complete", "anonymous_id": "install-1", "timestamp": {t}, "sent_at": {t}}}"#
        );
        let reason = refusal(&data, &format!("timestamp = sent_at = {t} ms"));
        assert!(
            reason.starts_with("app event (ours): timestamp ")
                && reason.contains("is outside the years 0000 to 9999"),
            "{t}: {reason}"
        );
    }
    // The send time alone out of range, the event's time in the window.
    let data = r#"{"event_type": "level_complete", "anonymous_id": "install-1", "timestamp": "2026-11-20T09:00:00Z",
        "sent_at": 253402300800000}"#;
    let reason = read_record(data, "install-1").unwrap_err();
    assert!(
        reason.starts_with(
            "app event (ours): sent_at +10000-01-01T00:00:00.000Z is outside the years"
        ),
        "{reason}"
    );
}

/// Session times were checked only for their length, so a `session.start` of year 10000 (`253402300800000` ms) or
/// year -1 went out in `session.start` and `context.session_start`, failing the schema's `date-time`, in every
/// shape that carries a session. Now refused, naming the session start, in every shape.
#[test]
fn a_session_start_outside_years_0_to_9999_is_refused_in_every_shape() {
    for start in ["253402300800000", "-62167219200001", "1.0e15"] {
        for data in [
            format!(
                r#"{{"event_type": "_session.start", "anonymous_id": "install-1", "timestamp": "2026-11-20T09:00:00Z",
                    "session": {{"id": "s1", "start": {start}}}}}"#
            ),
            format!(
                r#"{{"EventType": "_session.start", "Timestamp": "2026-11-20T09:00:00Z", "Endpoint": {{"Id": "install-1"}},
                    "Session": {{"Id": "s1", "StartTimestamp": {start}}}}}"#
            ),
            format!(
                r#"{{"event_type": "button_clicked", "event_timestamp": 1795165200000, "event_version": "3.1",
                    "application": {{"app_id": "my-app"}}, "client": {{"client_id": "install-1"}},
                    "session": {{"id": "s1", "start_timestamp": {start}}}}}"#
            ),
        ] {
            let reason = refusal(&data, &format!("session start {start}"));
            assert!(
                reason.contains("): session start ")
                    && reason.contains("is outside the years 0000 to 9999"),
                "{start}: {reason}"
            );
        }
    }
}

/// chrono reads a leap second (`:60`) at any minute of any day, and the forwarder wrote it back as it came
/// (`2026-11-20T09:59:60.000Z`), which fails the schema's `date-time` (RFC 3339 allows second 60 only at 23:59:60
/// UTC) and which JavaScript's `Date` and Python's `datetime` cannot hold. Now folded to the last millisecond of its
/// minute in every time field and shape, and every output satisfies the schema.
#[test]
fn a_leap_second_at_any_minute_is_folded_to_the_last_millisecond_of_its_minute() {
    for (data, field, want) in [
        (
            r#"{"event_type": "level_complete", "anonymous_id": "install-1", "timestamp": "2026-11-20T09:59:60Z"}"#,
            "/timestamp",
            "2026-11-20T09:59:59.999Z",
        ),
        (
            r#"{"event_type": "level_complete", "anonymous_id": "install-1", "timestamp": "2026-11-20T09:59:60.250+00:00",
                "sent_at": "2026-11-20T09:59:60.500Z"}"#,
            "/sent_at",
            "2026-11-20T09:59:59.999Z",
        ),
        (
            r#"{"EventType": "level_complete", "Timestamp": "2026-11-20T23:59:60Z", "Endpoint": {"Id": "install-1"}}"#,
            "/clock/original_timestamp",
            "2026-11-20T23:59:59.999Z",
        ),
        (
            r#"{"event_type": "_session.stop", "anonymous_id": "install-1", "timestamp": "2026-11-20T09:58:00Z",
                "session": {"id": "s1", "start": "2026-11-20T09:00:60Z", "stop": "2026-11-20T09:57:60Z"}}"#,
            "/session/start",
            "2026-11-20T09:00:59.999Z",
        ),
    ] {
        let events = read_record(data, "install-1").unwrap();
        assert_eq!(events[0].pointer(field), Some(&json!(want)), "{data}");
        let errors = schema_errors(&events[0]);
        assert!(errors.is_empty(), "{data}\n  -> {errors:?}");
    }
}

/// Names were checked with `char::is_alphanumeric`, whose tables are the toolchain's (Rust 1.95: Unicode 17.0),
/// and validated downstream with the schema's `\p{Alphabetic}`, whose tables are the regex engine's (regex-syntax
/// 0.8: Unicode 16.0): a letter new in Unicode 17 (Sidetic U+10940, Tolong Siki U+11DB0, Beria Erfe U+16EA0, Tai Yo
/// U+1E6C0, CJK extension J U+323B0) passed the forwarder in an event or property name, and the output failed the
/// schema. Now the forwarder checks names with the schema's own pattern and engine: such a name is refused, and
/// the schema refuses it too (the two agree).
#[test]
fn a_name_is_checked_with_the_schemas_own_pattern_so_both_refuse_a_unicode_17_letter() {
    let schema = validator("app-event.v1.json");
    for letter in [
        '\u{10940}',
        '\u{11DB0}',
        '\u{16EA0}',
        '\u{1E6C0}',
        '\u{323B0}',
    ] {
        assert!(letter.is_alphanumeric(), "U+{:X}", letter as u32);
        let name = format!("buy_{letter}");
        for data in [
            format!(
                r#"{{"event_type": "{name}", "anonymous_id": "install-1", "timestamp": "2026-11-20T09:00:00Z"}}"#
            ),
            format!(
                r#"{{"event_type": "buy", "anonymous_id": "install-1", "timestamp": "2026-11-20T09:00:00Z",
                    "properties": {{"{name}": "v"}}}}"#
            ),
        ] {
            let reason = refusal(&data, &format!("U+{:X}", letter as u32));
            assert!(
                reason.contains("name has characters outside letters"),
                "U+{:X}: {reason}",
                letter as u32
            );
        }
        let mut doc = read_record(
            r#"{"event_type": "buy", "anonymous_id": "install-1", "timestamp": "2026-11-20T09:00:00Z"}"#,
            "install-1",
        )
        .unwrap()
        .remove(0);
        doc["event"] = json!(name);
        assert!(!schema.is_valid(&doc), "U+{:X}", letter as u32);
    }
}

/// A `PutEvents` body of 100 events (one endpoint) whose `Endpoint.User.UserAttributes` fill the rest of the
/// 32 KiB record cap: every event's output carries the endpoint's traits, so the record became 100 outputs of
/// about 27 KB each, ~2.7 MB on one partition key (80 times the input), from a single record anyone signed in can
/// write (~100 MB with `APP_EVENT_MAX_RECORD_BYTES` at its allowed 1 MiB). Now one record's outputs are held to
/// `max_output_bytes` (1 MiB, Kinesis's own record limit) and `max_output_events`: this one is refused, naming
/// the cap, while a body of the same 100 events with a few traits flows.
#[test]
fn a_putevents_body_whose_copied_traits_would_be_megabytes_is_refused_naming_the_output_cap() {
    let events: Vec<String> = (0..app_events::input::MAX_EVENTS_PER_RECORD)
        .map(|i| format!(r#""e{i}": {{"EventType": "x", "Timestamp": "2026-11-20T09:00:00Z"}}"#))
        .collect();
    let body = |traits: &[String]| {
        format!(
            r#"{{"BatchItem": {{"install-1": {{"Endpoint": {{"User": {{"UserAttributes": {{{}}}}}}}, "Events": {{{}}}}}}}}}"#,
            traits.join(","),
            events.join(",")
        )
    };
    let trait_of = |i: usize| format!(r#""t{i}": ["{}"]"#, "v".repeat(1_000));
    for record_bytes in [32 * 1024, 1_048_576] {
        let limits = app_events::event::Limits {
            max_record_bytes: record_bytes,
            ..app_events::event::Limits::default()
        };
        let mut traits: Vec<String> = Vec::new();
        while traits.len() < limits.max_traits
            && body(&traits).len() + 1_100 <= limits.max_record_bytes
        {
            traits.push(trait_of(traits.len()));
        }
        let input = body(&traits);
        let reason = read_record_with(input.as_bytes(), "install-1", &limits).map_or_else(
            |reason| reason,
            |out| {
                let bytes: usize = out
                    .iter()
                    .map(|e| serde_json::to_vec(e).unwrap().len())
                    .sum();
                panic!(
                    "one record of {} bytes became {} outputs, {bytes} bytes",
                    input.len(),
                    out.len()
                )
            },
        );
        assert!(
            reason.starts_with("app event (pinpoint-batch): the record becomes 100 events of ")
                && reason.contains(
                    "one Kinesis record may become at most 1000 events and 1048576 bytes"
                ),
            "{reason}"
        );
    }
    // The same 100 events with a few small traits: about 100 KB of output, forwarded.
    let limits = app_events::event::Limits::default();
    let small: Vec<String> = (0..3).map(|i| format!(r#""t{i}": ["a", "b"]"#)).collect();
    let out = read_record_with(body(&small).as_bytes(), "install-1", &limits).unwrap();
    let bytes: usize = out
        .iter()
        .map(|e| serde_json::to_vec(e).unwrap().len())
        .sum();
    assert_eq!(out.len(), 100);
    assert!(bytes <= limits.max_output_bytes / 4, "{bytes}");
}

/// Properties and metrics are capped at 40 each ("the enrichment SDKs set no cap: an event with more is refused,
/// not cut"), but traits (`Endpoint.User.UserAttributes`) had no count cap: one Pinpoint event within 32 KiB went
/// out with 2,000 traits. Now traits are capped like properties (40, names by the name rule, values at most 1,000
/// characters): refused with the count, and the schema's `traits` says `maxProperties: 40`.
#[test]
fn traits_are_capped_like_properties() {
    let limits = app_events::event::Limits::default();
    let traits = |n: usize| -> String {
        let t: Vec<String> = (0..n).map(|i| format!(r#""t{i}": ["v"]"#)).collect();
        format!(
            r#"{{"EventType": "x", "Timestamp": "2026-11-20T09:00:00Z",
                "Endpoint": {{"Id": "install-1", "User": {{"UserAttributes": {{{}}}}}}}}}"#,
            t.join(",")
        )
    };
    let data = traits(2_000);
    assert!(data.len() <= limits.max_record_bytes, "{}", data.len());
    let reason = read_record(&data, "install-1").unwrap_err();
    assert!(
        reason.contains("2000 traits (endpoint user attributes); at most 40 are allowed"),
        "{reason}"
    );
    assert!(
        read_record(&traits(41), "install-1")
            .unwrap_err()
            .contains("41 traits")
    );
    let events = read_record(&traits(40), "install-1").unwrap();
    assert_eq!(events[0]["traits"].as_object().unwrap().len(), 40);
    assert!(schema_errors(&events[0]).is_empty());
    let mut doc = events[0].clone();
    doc["traits"]["t40"] = json!("v");
    assert!(
        !schema_errors(&doc).is_empty(),
        "the schema caps traits too"
    );
}

/// A forwarder on the in-memory ports: its output stream and its dead-letter bucket, to look into.
fn memory_forwarder(
    limits: app_events::event::Limits,
    aggregates: bridge_core::pipeline::Aggregates,
) -> (
    AppEventForwarder,
    std::sync::Arc<bridge_core::testing::MemorySink>,
    std::sync::Arc<bridge_core::testing::MemoryBlobs>,
) {
    let sink = std::sync::Arc::new(bridge_core::testing::MemorySink::default());
    let blobs = std::sync::Arc::new(bridge_core::testing::MemoryBlobs::default());
    let forwarder = AppEventForwarder::new(
        bridge_core::producer::Producer::new(
            sink.clone(),
            None,
            bridge_core::retry::Backoff::default(),
        ),
        bridge_core::dead_letter::DeadLetterWriter::new(blobs.clone(), "dead-letters"),
        limits,
    )
    .with_settings(bridge_core::pipeline::Settings {
        give_up_age: None,
        aggregates,
    });
    (forwarder, sink, blobs)
}

/// A batch of one shard: record `i` is `(partition key, data)` with sequence number `1000 + i`, arriving at
/// [`REVIEW_ARRIVAL_S`].
fn one_shard_batch(records: &[(&str, Vec<u8>)]) -> RawKinesisEvent {
    use base64::Engine as _;
    let records = records
        .iter()
        .enumerate()
        .map(|(i, (pk, data))| {
            json!({
                "eventID": format!("shardId-000000000000:{}", 1000 + i),
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/app-events",
                "kinesis": {"partitionKey": pk, "sequenceNumber": format!("{}", 1000 + i),
                            "data": base64::engine::general_purpose::STANDARD.encode(data),
                            "approximateArrivalTimestamp": REVIEW_ARRIVAL_S}
            })
        })
        .collect();
    RawKinesisEvent { records }
}

/// Forwards `body` (a record keyed `key`) through the forwarder in memory and asserts that its two events went out
/// with two ids (none dropped as a repeat) and that a redelivery of the same bytes keeps both ids.
async fn two_events_two_ids_kept_on_redelivery(body: &str, key: &str) {
    let events = read_record(body, key).unwrap();
    let (forwarder, sink, _) = memory_forwarder(
        app_events::event::Limits::default(),
        bridge_core::pipeline::Aggregates::Refuse,
    );
    let metrics = Metrics::new();
    let response = forwarder
        .process(
            one_shard_batch(&[(key, body.as_bytes().to_vec())]),
            Deadline::none(),
            &metrics,
        )
        .await;
    assert!(response.batch_item_failures.is_empty());
    assert_ne!(
        events[0]["event_id"],
        events[1]["event_id"],
        "two different events ({} on {}, {} on {}) share one event_id; forwarded {} of 2, {} dropped as a repeat",
        events[0]["event"],
        events[0]["anonymous_id"],
        events[1]["event"],
        events[1]["anonymous_id"],
        sink.stored().len(),
        metrics.get(METRIC_DUPLICATES_DROPPED)
    );
    assert_eq!(sink.stored().len(), 2);
    assert_eq!(metrics.get(METRIC_DUPLICATES_DROPPED), 0);
    let again = read_record(body, key).unwrap();
    let ids =
        |events: &[Value]| -> Vec<Value> { events.iter().map(|e| e["event_id"].clone()).collect() };
    assert_eq!(ids(&again), ids(&events), "a redelivery keeps every id");
}

/// A client id was hashed with the user when there was one, else the anonymous id: never with the install. Two
/// installs of one signed-in user (here two endpoints of one `PutEvents` body, or any two records) that used the
/// same client event id for two different events (an app-local counter, a fixed id) got one `event_id`: the
/// forwarder sent the first, counted the second as a repeat (`DuplicatesDropped`) and reported the record as a
/// success. Now the install (the endpoint, the anonymous id) is hashed too: two events, both forwarded; and a
/// redelivery of the body gives each the same id again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_installs_of_one_user_reusing_a_client_id_give_two_events_and_a_redelivery_the_same_ids()
 {
    let body = r#"{"BatchItem": {
        "phone":  {"Endpoint": {"User": {"UserId": "sub-1"}},
                   "Events": {"1": {"EventType": "_monetization.purchase", "Timestamp": "2026-11-20T09:00:00Z"}}},
        "tablet": {"Endpoint": {"User": {"UserId": "sub-1"}},
                   "Events": {"1": {"EventType": "_session.start", "Timestamp": "2026-11-20T09:30:00Z"}}}}}"#;
    two_events_two_ids_kept_on_redelivery(body, "sub-1").await;
}

/// serde_json's map (no `preserve_order`) sorted a `PutEvents` body's `Events` by key, and Amplify's keys are
/// random UUIDs: a body's events went out, and got their `source.sub_sequence`, in the order of their ids, not the
/// order the app recorded them (a session's `_session.stop` before its `_session.start`). Now they go out in the
/// body's order, endpoints and events alike, in every form of the body.
#[test]
fn a_putevents_body_goes_out_in_body_order_not_event_id_order() {
    let body = r#"{"BatchItem": {"install-1": {"Events": {
        "f3c1a0de-0000-4000-8000-000000000001": {"EventType": "_session.start", "Timestamp": "2026-11-20T09:00:00Z",
            "Session": {"Id": "s1", "StartTimestamp": "2026-11-20T09:00:00Z"}},
        "0a9b8c7d-0000-4000-8000-000000000002": {"EventType": "_session.stop", "Timestamp": "2026-11-20T09:05:00Z",
            "Session": {"Id": "s1", "StartTimestamp": "2026-11-20T09:00:00Z", "StopTimestamp": "2026-11-20T09:05:00Z"}}}}}}"#;
    let out: Vec<(String, u64)> = read_record(body, "install-1")
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_owned(),
                e["source"]["sub_sequence"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        out,
        [
            ("_session.start".to_owned(), 0),
            ("_session.stop".to_owned(), 1)
        ],
        "the body's order"
    );
    // Two endpoints, each key sorting after the next, in the SDK's input form.
    let body = r#"{"EventsRequest": {"BatchItem": {
        "z-endpoint": {"Events": {"z1": {"EventType": "first", "Timestamp": "2026-11-20T09:00:00Z"},
                                  "a1": {"EventType": "second", "Timestamp": "2026-11-20T09:00:01Z"}}},
        "a-endpoint": {"Events": {"z2": {"EventType": "third", "Timestamp": "2026-11-20T09:00:02Z"},
                                  "a2": {"EventType": "fourth", "Timestamp": "2026-11-20T09:00:03Z"}}}}}}"#;
    let out: Vec<(String, String)> = read_record(body, "install-1")
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_owned(),
                e["anonymous_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("first", "z-endpoint"),
        ("second", "z-endpoint"),
        ("third", "a-endpoint"),
        ("fourth", "a-endpoint"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    assert_eq!(out, want);
}

/// "Our shape refuses unknown fields (a typo is an error)": at the top level and in `session`, yes, but
/// `context` was read with the lenient `Context` shared with the Pinpoint shapes: a typo (`platfrom`,
/// `app_verison`) was dropped without a word (the event went out with `context.platform: null`), and so were the
/// context fields our shape has no input for (`app_id`), while Pinpoint's spellings (`Platform`) were taken. Now
/// our `context` refuses every field it does not name, naming it.
#[test]
fn our_shape_refuses_unknown_context_fields_naming_them() {
    for (context, field) in [
        (
            r#"{"platfrom": "iOS"}"#,
            "context.platfrom: unknown field `platfrom`",
        ),
        (
            r#"{"platform": "iOS", "app_verison": "2.4.1"}"#,
            "context.app_verison: unknown field `app_verison`",
        ),
        (
            r#"{"app_id": "my-app"}"#,
            "context.app_id: unknown field `app_id`",
        ),
        (
            r#"{"Platform": "iOS"}"#,
            "context.Platform: unknown field `Platform`",
        ),
    ] {
        let data = format!(
            r#"{{"event_type": "level_complete", "anonymous_id": "install-1", "timestamp": "2026-11-20T09:00:00Z",
                "context": {context}}}"#
        );
        match read_record(&data, "install-1") {
            Err(reason) => assert!(
                reason.starts_with(&format!("app event (ours): {field}")),
                "{context}: {reason}"
            ),
            Ok(events) => panic!(
                "context {context} accepted, the unknown field dropped: {}",
                events[0]["context"]
            ),
        }
    }
    // Every field our context names is taken.
    let data = r#"{"event_type": "level_complete", "anonymous_id": "install-1", "timestamp": "2026-11-20T09:00:00Z",
        "context": {"platform": "iOS", "app_version": "2.4.1", "locale": "en_US", "device_id": "d", "os": "iOS",
                    "os_version": "17.0", "model": "iPhone15,2", "make": "Apple"}}"#;
    let events = read_record(data, "install-1").unwrap();
    assert_eq!(events[0]["context"]["platform"], "iOS");
    assert_eq!(events[0]["context"]["make"], "Apple");
}

/// A number past f64's range (`1e400`) is valid JSON (RFC 8259 sets no range), but serde_json refuses the whole
/// document while parsing it, before any shape is picked: the dead letter said "app event is not a json object:
/// number out of range at line 1 column 125", naming neither the shape nor the field. Now the reason names both
/// (`app event (ours): metrics.score: number 1e400 is out of the range of a 64-bit float`), in a metric, a
/// timestamp or a session duration, in every shape.
#[test]
fn a_number_past_f64_range_is_refused_naming_the_shape_and_the_field() {
    for (data, field) in [
        (
            r#"{"event_type": "level_complete", "anonymous_id": "install-1", "timestamp": "2026-11-20T09:00:00Z", "metrics": {"score": 1e400}}"#,
            "app event (ours): metrics.score: number 1e400 is out of the range of a 64-bit float",
        ),
        (
            r#"{"event_type": "level_complete", "anonymous_id": "install-1", "timestamp": 1e400}"#,
            "app event (ours): timestamp: number 1e400 is out",
        ),
        (
            r#"{"EventType": "x", "Timestamp": "2026-11-20T09:00:00Z", "Session": {"Id": "s", "Duration": -1e400}}"#,
            "app event (pinpoint-event): Session.Duration: number -1e400 is out",
        ),
        (
            r#"{"BatchItem": {"e1": {"Events": {"v1": {"EventType": "x", "Timestamp": 1, "Metrics": {"m": [1, 1e999]}}}}}}"#,
            "app event (pinpoint-batch): BatchItem.e1.Events.v1.Metrics.m[1]: number 1e999 is out",
        ),
        (
            r#"[1e400]"#,
            "app event is not a json object: [0]: number 1e400 is out",
        ),
    ] {
        let reason = read_record(data, "install-1").unwrap_err();
        assert!(reason.starts_with(field), "{data}\n  reason: {reason}");
    }
    // Other JSON errors keep serde_json's own reason.
    let reason = read_record(r#"{"event_type": 1e400"#, "install-1").unwrap_err();
    assert!(
        reason.starts_with("app event is not a json object: number out of range"),
        "{reason}"
    );
}

/// "Letters (any script: größe)": but the check was `char::is_alphanumeric`, and the combining marks most words of
/// some scripts need are neither Alphabetic nor numeric: Thai tone marks (ซื้อ, "buy", has U+0E49), the Devanagari
/// virama (क्लिक, "click", has U+094D), a decomposed accent (`café` as e + U+0301, as macOS input methods and
/// NFD-normalizing code write it). Now combining marks are letters' company: accepted after a first character, in
/// the forwarder and in the schema alike.
#[test]
fn names_in_thai_hindi_or_decomposed_latin_are_forwarded_and_satisfy_the_schema() {
    for name in ["ซื้อ", "क्लिक", "cafe\u{301}_visit"] {
        let data = format!(
            r#"{{"event_type": "{name}", "anonymous_id": "install-1", "timestamp": "2026-11-20T09:00:00Z",
                "properties": {{"{name}": "v"}}}}"#
        );
        let events = read_record(&data, "install-1").unwrap();
        assert_eq!(events[0]["event"], json!(name));
        assert_eq!(events[0]["properties"][name], json!("v"));
        let errors = schema_errors(&events[0]);
        assert!(errors.is_empty(), "{name}: {errors:?}");
    }
}

/// Space was allowed anywhere in a name, and names are not trimmed (values and ids are): an event named `" "` (or a
/// property named `"  "`) passed as a 1-character name, and `"_session.start "` with a trailing space (a template
/// string, a copy-paste) went out as a different event that the rollup never counts as a session. Now a blank
/// name, or one with a space first or last, is refused with its own reason (never trimmed into another name).
#[test]
fn blank_and_space_padded_names_are_refused_with_their_own_reason() {
    for (event, property, want) in [
        (" ", "p", "event name is blank"),
        ("x", "  ", "property name is blank"),
        (
            "_session.start ",
            "p",
            "event name \"_session.start \" begins or ends with a space",
        ),
        (
            " _session.start",
            "p",
            "event name \" _session.start\" begins or ends with a space",
        ),
        (
            "x",
            "p ",
            "property name \"p \" begins or ends with a space",
        ),
    ] {
        let data = format!(
            r#"{{"event_type": "{event}", "anonymous_id": "install-1", "timestamp": "2026-11-20T09:00:00Z",
                "properties": {{"{property}": "v"}}}}"#
        );
        let reason = refusal(&data, &format!("{event:?} {property:?}"));
        assert!(reason.contains(want), "{event:?} {property:?}: {reason}");
    }
}

/// "`duration_ms` is the client's duration, else stop minus start, and must lie between 0 and 7 days": when a
/// duration was given, start and stop were never compared, so a session whose stop is 50 days after its start (or
/// before it) went out with `duration_ms: 0` and both times, contradicting itself. Now both are held to the
/// bounds whenever both are given, and the reason says which.
#[test]
fn a_session_over_7_days_or_reversed_is_refused_even_with_a_duration_in_bounds() {
    for (start, stop, duration, want) in [
        (
            "2026-10-01T00:00:00Z",
            "2026-11-20T09:00:00Z",
            0,
            "session stop minus start is 4352400000 ms; 0 to 7 days are allowed",
        ),
        (
            "2026-11-20T09:00:00Z",
            "2026-10-01T00:00:00Z",
            60_000,
            "session stop minus start is -4352400000 ms",
        ),
        (
            "2026-11-20T08:00:00Z",
            "2026-11-20T09:00:00Z",
            -1,
            "session lasts -1 ms",
        ),
    ] {
        let data = format!(
            r#"{{"event_type": "_session.stop", "anonymous_id": "install-1", "timestamp": "2026-11-20T09:00:00Z",
                "session": {{"id": "s1", "start": "{start}", "stop": "{stop}", "duration_ms": {duration}}}}}"#
        );
        let reason = refusal(&data, &format!("session {start} {stop} {duration}"));
        assert!(reason.contains(want), "{start} {stop} {duration}: {reason}");
    }
    // A duration and times that differ by rounding, both in bounds: forwarded with the client's duration.
    let data = r#"{"event_type": "_session.stop", "anonymous_id": "install-1", "timestamp": "2026-11-20T09:00:00Z",
        "session": {"id": "s1", "start": "2026-11-20T08:00:00Z", "stop": "2026-11-20T09:00:00Z", "duration_ms": 3599999}}"#;
    let events = read_record(data, "install-1").unwrap();
    assert_eq!(events[0]["session"]["duration_ms"], 3_599_999);
}

/// Ours with `sent_at` before `timestamp` (sent before it happened: a clock stepped back, a client bug, or a forged
/// record): the correction moved the event after its own arrival, by up to the 24 h the window allows for
/// uncorrected clocks (recorded at 10:00, "sent" at 00:00 by the same clock, received at 10:00: dated 20:00). Now an
/// event is never dated after its arrival: within the window it is clamped to the arrival, and
/// `clock.time_source: client_clamped` says so, with the client's time and offset kept; beyond it, refused as
/// before.
#[test]
fn a_send_time_before_the_event_clamps_it_to_its_arrival_never_after() {
    let data = r#"{"event_type": "_session.start", "anonymous_id": "install-1",
        "timestamp": "2026-11-20T10:00:00Z", "sent_at": "2026-11-20T00:00:00Z"}"#;
    let events = read_record(data, "install-1").unwrap();
    let e = &events[0];
    assert_eq!(e["timestamp"], e["received_at"], "{}", e["clock"]);
    assert_eq!(
        e["clock"],
        json!({"time_source": "client_clamped", "original_timestamp": "2026-11-20T10:00:00.000Z",
               "offset_ms": 36_000_000})
    );
    assert!(schema_errors(e).is_empty());
    // Past the window even before the clamp (sent 30 h before it happened): refused, as before.
    let data = r#"{"event_type": "_session.start", "anonymous_id": "install-1",
        "timestamp": "2026-11-21T16:00:00Z", "sent_at": "2026-11-20T10:00:00Z"}"#;
    let reason = read_record(data, "install-1").unwrap_err();
    assert!(
        reason.contains("more than 24 h after its arrival"),
        "{reason}"
    );
    // Sent after it happened: corrected, not clamped.
    let data = r#"{"event_type": "_session.start", "anonymous_id": "install-1",
        "timestamp": "2026-11-20T09:00:00Z", "sent_at": "2026-11-20T09:30:00Z"}"#;
    let e = read_record(data, "install-1").unwrap().remove(0);
    assert_eq!(e["timestamp"], "2026-11-20T09:30:00.000Z");
    assert_eq!(e["clock"]["time_source"], "client_corrected");
}

/// Where aggregates are accepted (`KPL_AGGREGATES=accept`), the cap was on user records per aggregate
/// (`KPL_MAX_USER_RECORDS`, 1,000), and each user record may itself be a `PutEvents` body of 100 events: one
/// Kinesis record of at most 1 MiB became 200+ user records and 20,000+ outputs (~18 MB). Now the output caps hold
/// over an aggregate's user records together (`max_output_events`, 1,000; `max_output_bytes`, 1 MiB): this one is
/// refused, each user record dead-lettered with the reason, nothing produced; an aggregate within the caps flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_aggregate_is_held_to_the_output_caps_over_all_its_user_records() {
    let events: Vec<String> = (0..app_events::input::MAX_EVENTS_PER_RECORD)
        .map(|i| format!(r#""e{i}":{{"EventType":"x","Timestamp":1795165200000}}"#))
        .collect();
    let body = format!(r#"{{"Events":{{{}}}}}"#, events.join(",")).into_bytes();
    let mut users: Vec<bridge_core::kpl::UserRecord> = Vec::new();
    loop {
        users.push(bridge_core::kpl::UserRecord {
            partition_key: format!("install-{}", users.len()),
            explicit_hash_key: None,
            data: body.clone(),
        });
        if bridge_core::kpl::aggregate(&users).len() + "pk".len() > 1024 * 1024 {
            users.pop();
            break;
        }
    }
    let aggregate = bridge_core::kpl::aggregate(&users);
    let (forwarder, sink, blobs) = memory_forwarder(
        app_events::event::Limits::default(),
        bridge_core::pipeline::Aggregates::ACCEPT,
    );
    let metrics = Metrics::new();
    let response = forwarder
        .process(
            one_shard_batch(&[("pk", aggregate.clone())]),
            Deadline::none(),
            &metrics,
        )
        .await;
    assert!(response.batch_item_failures.is_empty());
    assert!(
        sink.stored().is_empty(),
        "one Kinesis record of {} bytes ({} user records) became {} outputs",
        aggregate.len(),
        users.len(),
        sink.stored().len()
    );
    assert_eq!(metrics.get(METRIC_DEAD_LETTERED), users.len() as u64);
    let letters = blobs.under("");
    assert_eq!(letters.len(), users.len());
    for (_, body) in &letters {
        let letter: Value = serde_json::from_slice(body).unwrap();
        let reason = letter["reason"].as_str().unwrap();
        assert!(
            reason.starts_with(&format!(
                "KPL-aggregated record refused: its {} user records together become {} events of ",
                users.len(),
                users.len() * 100
            )) && reason.contains("one Kinesis record may become at most 1000 events"),
            "{reason}"
        );
    }
    // Within the caps (10 user records of 100 events), an aggregate flows whole.
    let (forwarder, sink, _) = memory_forwarder(
        app_events::event::Limits::default(),
        bridge_core::pipeline::Aggregates::ACCEPT,
    );
    let metrics = Metrics::new();
    let small = bridge_core::kpl::aggregate(&users[..10]);
    let response = forwarder
        .process(
            one_shard_batch(&[("pk", small)]),
            Deadline::none(),
            &metrics,
        )
        .await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(sink.stored().len(), 1_000);
}

// ---- Adversarial review 2 (branch attack-app-2) ------------------------------------------------------------
// Each test below fails on the code it was written against: it states the rule, the input and what happens.

/// `levels` nested arrays around `1`: `[[[...1...]]]`, at most 32 KiB for 16,383 levels.
fn deeply_nested(levels: usize) -> String {
    let data = format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
    assert!(data.len() <= app_events::event::Limits::default().max_record_bytes);
    data
}

/// Rule (README, "What the forwarder checks"): nesting past the parser's limit (128) is refused with a reason,
/// and no bytes panic or abort the forwarder. Input: 16,383 nested arrays around `1` (32,767 bytes, under the 32
/// KiB record cap), read on an 8 MiB stack (Lambda's main thread). The re-read for numbers past f64's range
/// (`input::out_of_range`) used to run on every parse error and recurse once per level without a limit (stack
/// overflow, abort); it now runs only on serde_json's "number out of range", scans without recursion and stops
/// past 128 levels. With an out-of-range number before the deep part, serde_json's own reason stands.
#[test]
fn deep_nesting_is_refused_at_the_parsers_limit_without_overflowing_the_stack() {
    let data = deeply_nested(16_383);
    let reason = std::thread::Builder::new()
        .stack_size(8 * 1024 * 1024)
        .spawn(move || read_record(&data, "pk"))
        .unwrap()
        .join()
        .unwrap()
        .unwrap_err();
    assert!(reason.contains("recursion limit"), "{reason}");
    let data = format!("[1e400, {}]", deeply_nested(16_000));
    let reason = std::thread::Builder::new()
        .stack_size(8 * 1024 * 1024)
        .spawn(move || read_record(&data, "pk"))
        .unwrap()
        .join()
        .unwrap()
        .unwrap_err();
    assert!(
        reason.starts_with("app event is not a json object: number out of range"),
        "{reason}"
    );
}

/// Rule (README): a record is refused before costly work; the nesting limit (128) bounds the parse. Input: the
/// same 16,383 nested arrays, on a big stack. The re-read used to re-parse each level's whole text once per level
/// (quadratic: about 8 s for one 32 KiB record); it is now skipped (the error is not about a number) and, when it
/// runs, is one pass over the bytes.
#[test]
fn deep_nesting_is_refused_in_linear_time() {
    for data in [
        deeply_nested(16_383),
        format!("[1e400, {}]", deeply_nested(16_000)),
        format!("[1e400, {}]", "[1, ".repeat(5_000) + &"]".repeat(5_000)),
    ] {
        let started = std::time::Instant::now();
        let reason = std::thread::Builder::new()
            .stack_size(256 * 1024 * 1024)
            .spawn(move || read_record(&data, "pk"))
            .unwrap()
            .join()
            .unwrap()
            .unwrap_err();
        let took = started.elapsed();
        assert!(
            reason.contains("recursion limit") || reason.contains("number out of range"),
            "{reason}"
        );
        assert!(
            took < std::time::Duration::from_secs(1),
            "one record of deep nesting took {took:?} to refuse"
        );
    }
}

/// Rule (README, "What the forwarder checks", names): "no control or invisible characters"; a name is "never
/// counted as another event". `_session.start` followed by U+034F COMBINING GRAPHEME JOINER (a combining mark,
/// which `NAME_PATTERN` allows after the first character) rendered as `_session.start` yet was another event;
/// U+3164 HANGUL FILLER (a letter to Unicode) was a name that shows as blank; variation selectors passed the same
/// way. The forwarder now refuses every `Default_Ignorable_Code_Point` in a name, and a combining mark first
/// (U+093E, U+0345 are marks Unicode also calls letters), each with its own reason; the schema stays as lenient
/// as it was (the forwarder only forwards less).
#[test]
fn invisible_characters_and_a_leading_combining_mark_are_refused_as_names() {
    for (name, want) in [
        ("_session.start\u{034F}", "invisible character, U+034F"),
        ("_session.start\u{FE0F}", "invisible character, U+FE0F"),
        ("_session\u{180B}.start", "invisible character, U+180B"),
        ("\u{3164}", "invisible character, U+3164"),
        ("\u{115F}", "invisible character, U+115F"),
        ("\u{093E}x", "begins with a combining mark, U+093E"),
        ("\u{0345}", "begins with a combining mark, U+0345"),
    ] {
        let data = json!({"event_type": name, "timestamp": "2026-11-20T09:00:00Z", "anonymous_id": "install-1"})
            .to_string();
        let reason = read_record(&data, "install-1").unwrap_err();
        assert!(reason.contains(want), "{name:?}: {reason}");
        // The same rule for property names.
        let data = json!({"event_type": "x", "timestamp": "2026-11-20T09:00:00Z", "anonymous_id": "install-1",
            "properties": {name: "v"}})
        .to_string();
        let reason = read_record(&data, "install-1").unwrap_err();
        assert!(reason.contains(want), "property {name:?}: {reason}");
    }
    // Marks after a first character still pass: Thai, Devanagari (virama, vowel sign), a decomposed accent.
    for name in [
        "\u{0E0B}\u{0E37}\u{0E49}\u{0E2D}",
        "\u{0915}\u{094D}\u{0932}\u{093F}\u{0915}",
        "cafe\u{0301}",
    ] {
        let data = json!({"event_type": name, "timestamp": "2026-11-20T09:00:00Z", "anonymous_id": "install-1"})
            .to_string();
        assert!(read_record(&data, "install-1").is_ok(), "{name:?}");
    }
}

/// Rule (README, the shapes table and "What the forwarder checks"): a `PutEvents` body gives one output per
/// event and "is used whole or not at all". A body with both `EventsRequest` and a top-level `BatchItem`, or with
/// `BatchItem` and a top-level `Events`, had one form read and the other's events dropped without a word, the
/// record reporting success. Such a body is now refused, the reason naming both forms.
#[test]
fn a_putevents_body_with_two_batch_forms_is_refused_naming_both() {
    for (body, want) in [
        (
            r#"{"EventsRequest": {"BatchItem": {"phone": {"Events": {
                "1": {"EventType": "_session.start", "Timestamp": "2026-11-20T09:00:00Z"}}}}},
            "BatchItem": {"tablet": {"Events": {
                "2": {"EventType": "_monetization.purchase", "Timestamp": "2026-11-20T09:01:00Z"}}}}}"#,
            "app event (pinpoint-batch): the body has 2 batch forms, EventsRequest.BatchItem and BatchItem",
        ),
        (
            r#"{"BatchItem": {"phone": {"Events": {
                "1": {"EventType": "_session.start", "Timestamp": "2026-11-20T09:00:00Z"}}}},
            "Events": {"2": {"EventType": "_monetization.purchase", "Timestamp": "2026-11-20T09:01:00Z"}}}"#,
            "app event (pinpoint-batch): the body has 2 batch forms, BatchItem and Events",
        ),
    ] {
        let reason = read_record(body, "pk").unwrap_err();
        assert!(reason.starts_with(want), "{reason}");
    }
}

/// Rule (README, "Event ids"): two distinct events never share an `event_id` (the second would be dropped as a
/// repeat, `DuplicatesDropped`, while the record reports success). Input: one `PutEvents` body whose endpoint has
/// two different events keyed `a` and ` a`. The client ids were trimmed before they were hashed (one id, the
/// second event dropped); they are now hashed as sent: two ids, both forwarded, and a redelivery of the same
/// bytes keeps both ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ids_differing_only_in_spaces_give_two_ids_and_a_redelivery_keeps_them() {
    let body = r#"{"BatchItem": {"install-1": {"Events": {
        "a":  {"EventType": "_session.start", "Timestamp": "2026-11-20T09:00:00Z"},
        " a": {"EventType": "_monetization.purchase", "Timestamp": "2026-11-20T09:05:00Z"}}}}}"#;
    two_events_two_ids_kept_on_redelivery(body, "install-1").await;
}

/// Rule (README, "What the forwarder checks": a `PutEvents` body "is used whole or not at all", one output per
/// event, in the body's order). A body whose `Events` held the key `a` twice (`{a: start, b: purchase, a: stop}`)
/// had the `_session.start` dropped without a word and the rest reordered. A repeated key in an `Events` map or
/// in the endpoint map is now refused, the reason naming the key and where it is.
#[test]
fn a_repeated_key_in_a_putevents_body_is_refused_naming_the_key() {
    for (body, want) in [
        (
            r#"{"BatchItem": {"install-1": {"Events": {
        "a": {"EventType": "_session.start", "Timestamp": "2026-11-20T09:00:00Z"},
        "b": {"EventType": "_monetization.purchase", "Timestamp": "2026-11-20T09:01:00Z"},
        "a": {"EventType": "_session.stop", "Timestamp": "2026-11-20T09:02:00Z"}}}}}"#,
            r#"app event (pinpoint-batch): BatchItem.install-1.Events: key "a" appears twice"#,
        ),
        (
            r#"{"EventsRequest": {"BatchItem": {
        "p": {"Events": {"a": {"EventType": "_session.start", "Timestamp": "2026-11-20T09:00:00Z"}}},
        "p": {"Events": {"b": {"EventType": "_session.stop", "Timestamp": "2026-11-20T09:02:00Z"}}}}}}"#,
            r#"app event (pinpoint-batch): EventsRequest.BatchItem: key "p" appears twice"#,
        ),
        (
            r#"{"Events": {"a": {"EventType": "x", "Timestamp": 1}, "a": {"EventType": "y", "Timestamp": 2}}}"#,
            r#"app event (pinpoint-batch): Events: key "a" appears twice"#,
        ),
    ] {
        let reason = read_record(body, "install-1").unwrap_err();
        assert!(reason.starts_with(want), "{reason}");
    }
}

/// Rule (README, Time): "An event is never dated after its arrival": a corrected time after `received_at` is
/// clamped to it (`client_clamped`). Input: our `_session.start` at 09:00 with `session.start` 09:00 and `sent_at`
/// 08:00 (a clock stepped back), arriving at 10:00. The session's times were shifted by the +2 h offset but not
/// clamped (`session.start` 11:00, after the arrival); they are now clamped to the arrival as the event's time is.
#[test]
fn a_clamped_event_has_its_session_times_clamped_to_its_arrival() {
    let data =
        json!({"event_type": "_session.start", "event_id": "e1", "anonymous_id": "install-1",
        "timestamp": "2026-11-20T09:00:00Z", "sent_at": "2026-11-20T08:00:00Z",
        "session": {"id": "s1", "start": "2026-11-20T09:00:00Z"}})
        .to_string();
    let event = read_record(&data, "install-1").unwrap().remove(0);
    assert_eq!(event["clock"]["time_source"], "client_clamped");
    let start = event["session"]["start"].as_str().unwrap();
    let (timestamp, received) = (
        event["timestamp"].as_str().unwrap(),
        event["received_at"].as_str().unwrap(),
    );
    assert!(
        start <= timestamp && start <= received,
        "a _session.start dated {timestamp} (clamped; arrival {received}) says its session started at {start}"
    );
    assert_eq!(event["context"]["session_start"], event["session"]["start"]);
}

/// Rule (README, "Event ids"): two distinct events never share an `event_id`. Input: our shape with `user_id`
/// `sub-1` and no `anonymous_id`, client id `1`; and a Pinpoint event object (no endpoint, so its anonymous id is
/// the record's partition key, `sub-1`: the README's own example of a key an app may choose) with `eventId` `1`.
/// The client-id hash takes the user and the anonymous id "each where present", so both hash
/// `[app-event/v1, client, sub-1, 1]`: one a user, the other an install, yet one id; in one batch the second is
/// dropped as a repeat and the record succeeds.
#[test]
#[ignore = "known limit: the client-id hash takes the user and the anonymous id each where present, so user-only `u` and install-only `u` collide (README, Known limits)"]
fn attack_a_user_only_and_an_install_only_event_share_an_id() {
    let ours = json!({"event_type": "purchase", "event_id": "1", "user_id": "sub-1",
        "timestamp": "2026-11-20T09:00:00Z"})
    .to_string();
    let pinpoint =
        json!({"eventType": "_session.start", "eventId": "1", "timestamp": "2026-11-20T09:30:00Z"})
            .to_string();
    let a = read_record(&ours, "whatever").unwrap().remove(0);
    let b = read_record(&pinpoint, "sub-1").unwrap().remove(0);
    assert_ne!(
        a["event_id"], b["event_id"],
        "{} (user {}, anonymous {}) and {} (user {}, anonymous {}) share one event_id",
        a["event"], a["user_id"], a["anonymous_id"], b["event"], b["user_id"], b["anonymous_id"]
    );
}

/// Rule (README, names: "never counted as another event"; letters of any script, "a decomposed accent e +
/// U+0301"): a name that is one name to every reader should be one name. Input: one event with the properties
/// `größe` (NFC, U+00F6) and `größe` (NFD, o + U+0308), and a second event `café` NFC / NFD. Both spellings pass
/// `NAME_PATTERN` and nothing normalizes them: one event goes out with two properties that display as one name
/// (and two values), and `café` typed on two keyboards is two events.
#[test]
#[ignore = "known limit: names are not Unicode-normalized; NFC and NFD spellings are two names (README, Known limits)"]
fn attack_nfc_and_nfd_spellings_of_one_name_make_two_properties() {
    let data = json!({"event_type": "caf\u{00E9}", "timestamp": "2026-11-20T09:00:00Z", "anonymous_id": "i",
        "properties": {"gr\u{00F6}\u{00DF}e": "L", "gro\u{0308}\u{00DF}e": "XL"}})
    .to_string();
    if let Ok(events) = read_record(&data, "i") {
        let names: Vec<&String> = events[0]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(
            names.len(),
            1,
            "one name in two normalization forms went out as two properties: {names:?}"
        );
    }
}
