//! End-to-end tests of the sync processor: the real processor, through the real AWS SDK, against moto
//! server (Kinesis, DynamoDB, S3). Fakes appear only for faults moto cannot produce, and say so.

#![allow(clippy::unwrap_used, reason = "test helpers fail loudly")]

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use bridge_core::blob::S3BlobStore;
use bridge_core::dead_letter::DeadLetterWriter;
use bridge_core::dedup::DynamoDedupStore;
use bridge_core::producer::{KinesisSink, LargePayloads, METRIC_PUT_RECORDS_CALLS, Producer};
use bridge_core::retry::Backoff;
use bridge_core::testing::FailEntries;
use e2e::{
    Answer, Harness, LoopbackServer, assert_valid, json_file, record_data, sample, set_record_data,
    validator,
};
use serde_json::{Value, json};
use sync_processor::Processor;
use sync_processor::config::{
    ENV_DEAD_LETTER_BUCKET, ENV_S3_FETCH_ATTEMPTS, ENV_S3_FETCH_TIMEOUT_MS,
    ENV_S3_PAYLOAD_MAX_BYTES,
};
use sync_processor::handler::{
    METRIC_CHANGES_FORWARDED, METRIC_DEAD_LETTERED, METRIC_DUPLICATES_DROPPED, METRIC_RECORDS_IN,
    METRIC_STALE_DROPPED,
};
use sync_processor::payload::{METRIC_S3_FETCHES, PayloadFetcher};

const POOL: &str = "us-east-1:00000000-0000-4000-8000-000000000000";
const ALICE: &str = "us-east-1:aaaaaaaa-0000-4000-8000-000000000001";
const BOB: &str = "us-east-1:bbbbbbbb-0000-4000-8000-000000000002";
const T: i64 = 1_700_000_000_000;

fn failed_ids(response: &aws_lambda_events::event::streams::KinesisEventResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap_or_default())
        .collect()
}

fn seq(event: &Value, i: usize) -> String {
    event["Records"][i]["kinesis"]["sequenceNumber"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// (type, key, value) of each output, sorted.
fn summary(outputs: &[Value]) -> Vec<(String, Value, Value)> {
    let mut s: Vec<_> = outputs
        .iter()
        .map(|d| {
            (
                d["type"].as_str().unwrap().to_owned(),
                d["key"].clone(),
                d["value"].clone(),
            )
        })
        .collect();
    s.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    s
}

/// A Cognito Streams record of one inline change.
fn inline(
    identity: &str,
    dataset: &str,
    key: &str,
    value: Option<&str>,
    sync_count: i64,
    at: i64,
) -> Value {
    let mut r = json!({"key": key, "syncCount": sync_count, "lastModifiedDate": at, "deviceLastModifiedDate": at - 10, "op": if value.is_some() {"replace"} else {"remove"}});
    if let Some(v) = value {
        r["value"] = json!(v);
    }
    json!({"identityPoolId": POOL, "identityId": identity, "datasetName": dataset, "operation": "replace", "payloadType": "Inline",
           "syncCount": sync_count, "lastModifiedDate": at, "kinesisSyncRecords": [r]})
}

fn event_of(docs: &[Value]) -> Value {
    devtools::events::sync_event("cognito-sync-source", docs)
}

fn s3url(identity: &str, url: &str) -> Value {
    json!({"identityPoolId": POOL, "identityId": identity, "datasetName": "profile", "operation": "replace", "payloadType": "S3Url",
           "syncCount": 7, "lastModifiedDate": T + 7_000, "kinesisSyncRecordsURL": url})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_replace_sample_forwards_one_full_envelope_per_key() {
    let h = Harness::new().await;
    let event = sample("sync-inline-replace");
    let (response, metrics) = h.run(&event).await;
    assert!(response.batch_item_failures.is_empty());
    let out = h.outputs().await;
    assert_eq!(
        summary(&out),
        vec![
            (
                "record.replace".into(),
                json!("audio"),
                json!("{\"volume\":7,\"muted\":false}")
            ),
            ("record.replace".into(), json!("locale"), json!("en-US")),
            ("record.replace".into(), json!("theme"), json!("dark")),
        ]
    );
    let theme = out.iter().find(|d| d["key"] == "theme").unwrap();
    assert_eq!(theme["schema"], "cognito-sync-change/v1");
    // Event ids must never change across releases: downstream dedup relies on them (README shows this one).
    assert_eq!(theme["event_id"], "350837cb6bfb40d1351b133097ab2f8d");
    assert_eq!(theme["identity_pool_id"], POOL);
    assert_eq!(theme["identity_id"], ALICE);
    assert_eq!(theme["dataset"], "settings");
    assert_eq!(theme["op"], "replace");
    assert_eq!(theme["record_sync_count"], 3);
    assert_eq!(theme["dataset_sync_count"], 3);
    assert_eq!(theme["timestamp"], "2023-11-14T22:13:23.000Z");
    assert_eq!(theme["device_last_modified"], "2023-11-14T22:13:22.900Z");
    assert_eq!(theme["received_at"], "2023-11-14T22:15:00.000Z");
    assert_eq!(theme["payload_type"], "Inline");
    assert_eq!(
        theme["source"]["stream_arn"],
        "arn:aws:kinesis:us-east-1:123456789012:stream/cognito-sync-source"
    );
    assert_eq!(theme["source"]["shard_id"], "shardId-000000000000");
    assert_eq!(theme["source"]["sequence_number"], seq(&event, 0));
    let subs: HashSet<_> = out
        .iter()
        .map(|d| d["source"]["sub_sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(subs, HashSet::from([0, 1, 2]));
    assert_eq!(
        (
            metrics.get(METRIC_RECORDS_IN),
            metrics.get(METRIC_CHANGES_FORWARDED),
            metrics.get(METRIC_PUT_RECORDS_CALLS)
        ),
        (1, 3, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_remove_and_dataset_remove_samples_forward_removals() {
    let h = Harness::new().await;
    for name in [
        "sync-inline-replace",
        "sync-inline-remove",
        "sync-dataset-remove",
    ] {
        let (response, _) = h.run(&sample(name)).await;
        assert!(response.batch_item_failures.is_empty(), "{name}");
    }
    let out = h.outputs().await;
    assert_eq!(out.len(), 5);
    let remove = out.iter().find(|d| d["type"] == "record.remove").unwrap();
    assert_eq!(
        (
            remove["key"].as_str(),
            &remove["value"],
            remove["op"].as_str()
        ),
        (Some("theme"), &Value::Null, Some("remove"))
    );
    assert_eq!(
        remove["dataset"], "settings",
        "dataSetName spelling is accepted"
    );
    assert_eq!(remove["record_sync_count"], 4);
    let dataset = out.iter().find(|d| d["type"] == "dataset.remove").unwrap();
    assert_eq!(
        (
            &dataset["key"],
            &dataset["value"],
            &dataset["record_sync_count"]
        ),
        (&Value::Null, &Value::Null, &Value::Null)
    );
    assert_eq!(dataset["dataset_sync_count"], 5);
    assert_eq!(dataset["timestamp"], "2023-11-14T22:13:30.000Z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_publish_replay_sample_drops_repeats_and_stale_versions() {
    let h = Harness::new().await;
    let event = sample("sync-bulk-publish-replay");
    let (response, m) = h.run(&event).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        (
            m.get(METRIC_CHANGES_FORWARDED),
            m.get(METRIC_DUPLICATES_DROPPED),
            m.get(METRIC_STALE_DROPPED)
        ),
        (4, 3, 1)
    );
    let levels: Vec<_> = h
        .outputs()
        .await
        .iter()
        .filter(|d| d["key"] == "level")
        .map(|d| d["value"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(levels, vec!["1", "2", "3"], "in order, each once");

    // The same batch again (Lambda redelivers it): nothing new on the stream.
    let (response, m) = h.run(&event).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        (
            m.get(METRIC_CHANGES_FORWARDED),
            m.get(METRIC_DUPLICATES_DROPPED),
            m.get(METRIC_STALE_DROPPED)
        ),
        (0, 4, 4)
    );
    let out = h.outputs().await;
    assert_eq!(out.len(), 4);
    let ids: HashSet<_> = out
        .iter()
        .map(|d| d["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 4, "no duplicate event ids");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_publish_after_live_updates_forwards_nothing_old() {
    let h = Harness::new().await;
    let live = event_of(&[
        inline(ALICE, "game", "level", Some("1"), 1, T + 1_000),
        inline(ALICE, "game", "level", Some("2"), 2, T + 2_000),
        inline(ALICE, "game", "level", Some("3"), 3, T + 3_000),
    ]);
    h.run(&live).await;
    // A later bulk publish replays the pool: the current version again, and, out of order, older ones.
    let replay = event_of(&[
        inline(ALICE, "game", "level", Some("3"), 3, T + 3_000),
        inline(ALICE, "game", "level", Some("1"), 1, T + 1_000),
        inline(ALICE, "game", "level", Some("2"), 2, T + 2_000),
    ]);
    let (response, m) = h.run(&replay).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        (
            m.get(METRIC_CHANGES_FORWARDED),
            m.get(METRIC_DUPLICATES_DROPPED),
            m.get(METRIC_STALE_DROPPED)
        ),
        (0, 1, 2)
    );
    assert_eq!(h.outputs().await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_dataset_is_a_new_generation_not_a_stale_replay() {
    let h = Harness::new().await;
    h.run(&sample("sync-inline-replace")).await; // generation 1: theme at syncCount 3
    h.run(&sample("sync-dataset-remove")).await; // removed at T+10s
    // Generation 2 starts its sync counts over.
    let (_, m) = h
        .run(&event_of(&[inline(
            ALICE,
            "settings",
            "theme",
            Some("solarized"),
            1,
            T + 20_000,
        )]))
        .await;
    assert_eq!(
        m.get(METRIC_CHANGES_FORWARDED),
        1,
        "a lower sync count after a removal is new, not stale"
    );
    // A replay of generation 1, with its higher sync counts, is stale.
    let (_, m) = h.run(&sample("sync-inline-replace")).await;
    assert_eq!(
        (m.get(METRIC_CHANGES_FORWARDED), m.get(METRIC_STALE_DROPPED)),
        (0, 3)
    );
    assert_eq!(h.outputs().await.len(), 5);

    // The removal may never have been seen (stream off, removal dead-lettered): server time tells.
    let h = Harness::new().await;
    h.run(&sample("sync-inline-replace")).await;
    let (_, m) = h
        .run(&event_of(&[inline(
            ALICE,
            "settings",
            "theme",
            Some("solarized"),
            1,
            T + 3_600_000,
        )]))
        .await;
    assert_eq!(m.get(METRIC_CHANGES_FORWARDED), 1);
    // Generation 1's theme is now stale; its other keys were never superseded, so they are plain repeats.
    let (_, m) = h.run(&sample("sync-inline-replace")).await;
    assert_eq!(
        (
            m.get(METRIC_STALE_DROPPED),
            m.get(METRIC_DUPLICATES_DROPPED),
            m.get(METRIC_CHANGES_FORWARDED)
        ),
        (1, 2, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3url_sample_is_resolved_from_a_real_presigned_url() {
    let h = Harness::new().await;
    let body = std::fs::read(e2e::root().join("events/payloads/sync-s3url-payload.json")).unwrap();
    let url = h.presigned("cognito-sync/profile/7.json", body).await;
    assert!(
        url.starts_with(&h.aws.endpoint) && url.contains("X-Amz-Signature="),
        "{url}"
    );
    let mut event = sample("sync-s3url");
    let mut doc = record_data(&event, 0);
    doc["kinesisSyncRecordsURL"] = json!(url);
    set_record_data(&mut event, 0, &doc);

    let (response, m) = h.run(&event).await;
    assert!(response.batch_item_failures.is_empty());
    let out = h.outputs().await;
    assert_eq!(
        summary(&out),
        vec![
            ("record.remove".into(), json!("nickname"), Value::Null),
            (
                "record.replace".into(),
                json!("avatar"),
                json!("{\"shape\":\"circle\",\"color\":\"#336699\"}")
            ),
            (
                "record.replace".into(),
                json!("bio"),
                json!("Writes documentation examples for a living.")
            ),
        ]
    );
    assert!(
        out.iter()
            .all(|d| d["payload_type"] == "S3Url" && d["identity_id"] == BOB)
    );
    assert_eq!(m.get(METRIC_S3_FETCHES), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_change_in_an_s3url_payload_forwards_its_siblings_and_keeps_the_payload() {
    use base64::Engine as _;
    let h = Harness::new().await;
    // Three changes; the second's server time is out of any date range, so it cannot become an output.
    let body = serde_json::to_vec(&json!([
        {"key": "a", "value": "1", "syncCount": 7, "lastModifiedDate": T + 7_000, "deviceLastModifiedDate": T, "op": "replace"},
        {"key": "b", "value": "2", "syncCount": 7, "lastModifiedDate": i64::MAX, "deviceLastModifiedDate": T, "op": "replace"},
        {"key": "c", "value": "3", "syncCount": 7, "lastModifiedDate": T + 7_000, "deviceLastModifiedDate": T, "op": "replace"}
    ]))
    .unwrap();
    let url = h
        .presigned("cognito-sync/profile/mixed.json", body.clone())
        .await;
    let (response, m) = h.run(&event_of(&[s3url(BOB, &url)])).await;
    assert!(response.batch_item_failures.is_empty());
    let keys: Vec<Value> = h.outputs().await.iter().map(|d| d["key"].clone()).collect();
    assert_eq!(
        keys,
        vec![json!("a"), json!("c")],
        "the good siblings go out"
    );
    assert_eq!(m.get(METRIC_DEAD_LETTERED), 1);
    let letters = h.dead_letters().await;
    assert_eq!(letters.len(), 1);
    let reason = letters[0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("change 1: lastModifiedDate"), "{reason}");
    // The dead letter keeps the payload itself: the presigned URL in the record will expire.
    let kept = base64::engine::general_purpose::STANDARD
        .decode(letters[0]["payload_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(kept, body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_past_the_invocation_budget_are_fetched_on_the_retry() {
    let h = Harness::new().await;
    let body = std::fs::read(e2e::root().join("events/payloads/sync-s3url-payload.json")).unwrap();
    let carol = "us-east-1:cccccccc-0000-4000-8000-000000000003";
    let mut docs = Vec::new();
    for (i, identity) in [ALICE, BOB, carol].into_iter().enumerate() {
        let url = h.presigned(&format!("budget/{i}.json"), body.clone()).await;
        docs.push(s3url(identity, &url));
    }
    let event = event_of(&docs);
    // Room for two payloads at the cap: the third fetch does not start, and is retried.
    let tight = h
        .processor
        .clone()
        .with_payload_budget(2 * h.config.s3_payload_max_bytes);
    let (response, m) = h.run_with(&tight, &event).await;
    assert_eq!(failed_ids(&response), vec![seq(&event, 2)]);
    assert_eq!(m.get(METRIC_S3_FETCHES), 2);
    assert_eq!(h.outputs().await.len(), 6);
    // The redelivery from the reported record fetches the rest.
    let mut redelivered = event.clone();
    redelivered["Records"] = json!([event["Records"][2].clone()]);
    let (response, _) = h.run_with(&tight, &redelivered).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(h.outputs().await.len(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_urls_are_never_connected_to_and_are_dead_lettered() {
    let listener = LoopbackServer::start(Answer::Status(200)).await;
    let h = Harness::new().await; // allowlists only the emulator's origin
    let event = event_of(&[
        s3url(
            ALICE,
            &format!("{}/bucket/key?X-Amz-Signature=abc", listener.origin),
        ),
        s3url(
            BOB,
            "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        ),
        s3url(
            BOB,
            &format!("https://evil.example{}", "/bucket.s3.amazonaws.com/k"),
        ),
    ]);
    let (response, m) = h.run(&event).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        listener.connections(),
        0,
        "a refused url must never be requested"
    );
    assert_eq!(m.get(METRIC_S3_FETCHES), 0);
    let mut reasons: Vec<String> = h
        .dead_letters()
        .await
        .iter()
        .map(|d| d["reason"].as_str().unwrap().to_owned())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            "s3 payload url refused: host 'evil.example' is not an allowed S3 host".to_owned(),
            "s3 payload url refused: scheme 'http' is not https and origin is not allowlisted"
                .to_owned(),
            "s3 payload url refused: scheme 'http' is not https and origin is not allowlisted"
                .to_owned(),
        ]
    );
    assert!(h.outputs().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_sample_is_dead_lettered_with_reasons_and_the_rest_forwarded() {
    let h = Harness::new().await;
    let event = sample("sync-poison");
    let (response, m) = h.run(&event).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "poison must not block the shard"
    );
    assert_eq!(m.get(METRIC_DEAD_LETTERED), 4);
    let out = h.outputs().await;
    assert_eq!(
        summary(&out),
        vec![("record.replace".into(), json!("theme"), json!("light"))]
    );

    let letters: BTreeMap<String, Value> = h
        .dead_letters()
        .await
        .into_iter()
        .map(|d| {
            (
                d["source"]["sequence_number"].as_str().unwrap().to_owned(),
                d,
            )
        })
        .collect();
    assert_eq!(letters.len(), 4);
    let reason = |i: usize| {
        letters[&seq(&event, i)]["reason"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(
        reason(0).starts_with("kinesis record data is not valid base64"),
        "{}",
        reason(0)
    );
    assert_eq!(
        reason(1),
        "record is not a cognito streams record: key must be a string at line 1 column 70"
    );
    assert_eq!(
        reason(2),
        "record is not a cognito streams record: missing field `identityPoolId` at line 1 column 17"
    );
    assert_eq!(
        reason(3),
        "record is inconsistent: payloadType is S3Url but kinesisSyncRecordsURL is missing"
    );
    // The raw data is kept: the undecodable record as Lambda sent it, the others as base64 of their bytes.
    assert_eq!(
        letters[&seq(&event, 0)]["record"]["kinesis"]["data"],
        "%%% this is not base64 %%%"
    );
    assert_eq!(
        letters[&seq(&event, 1)]["data_base64"],
        event["Records"][1]["kinesis"]["data"]
    );
    for letter in letters.values() {
        assert_eq!(letter["function"], "sync-processor");
        assert_eq!(letter["source"]["shard_id"], "shardId-000000000000");
        assert!(
            letter["source"]["stream_arn"]
                .as_str()
                .unwrap()
                .ends_with(":stream/cognito-sync-source")
        );
    }
    // Redelivery overwrites the same dead letters instead of adding more.
    h.run(&event).await;
    assert_eq!(h.dead_letters().await.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_fetch_failure_is_retried_and_holds_only_its_identity_back() {
    let failing = LoopbackServer::start(Answer::Status(503)).await;
    let h = Harness::allowing(&failing.origin, &[(ENV_S3_FETCH_ATTEMPTS, "2")]).await;
    let event = event_of(&[
        s3url(ALICE, &format!("{}/payloads/a.json", failing.origin)),
        inline(BOB, "settings", "theme", Some("dark"), 1, T + 1_000),
        inline(ALICE, "settings", "theme", Some("dark"), 8, T + 8_000),
        inline(BOB, "settings", "theme", Some("light"), 2, T + 2_000),
    ]);
    let (response, _) = h.run(&event).await;
    assert_eq!(
        failed_ids(&response),
        vec![seq(&event, 0), seq(&event, 2)],
        "alice's record and the one behind it"
    );
    assert_eq!(failing.connections(), 2, "bounded retries");
    let out = h.outputs().await;
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|d| d["identity_id"] == BOB));
    assert!(
        h.dead_letters().await.is_empty(),
        "transient failures are not dead-lettered"
    );
    // Alice's held record did not move her mark: it is forwarded when it comes back.
    let (_, m) = h
        .run(&event_of(&[inline(
            ALICE,
            "settings",
            "theme",
            Some("dark"),
            8,
            T + 8_000,
        )]))
        .await;
    assert_eq!(m.get(METRIC_CHANGES_FORWARDED), 1);
}

/// The fetch timeout bounds the wait, shown by behaviour rather than by a wall-clock margin: the processor hangs
/// up on a server that would hold the connection for `SILENCE_LIMIT` (ten minutes), and the next test shows that
/// the fetcher built from these settings gives up at exactly its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_that_never_answers_times_out_as_transient() {
    let silent = LoopbackServer::start(Answer::Silence).await;
    let h = Harness::allowing(
        &silent.origin,
        &[
            (ENV_S3_FETCH_ATTEMPTS, "1"),
            (ENV_S3_FETCH_TIMEOUT_MS, "300"),
        ],
    )
    .await;
    let event = event_of(&[s3url(ALICE, &format!("{}/payloads/a.json", silent.origin))]);
    let (response, _) = h.run(&event).await;
    assert_eq!(failed_ids(&response), vec![seq(&event, 0)]);
    assert_eq!(silent.connections(), 1);
    assert_eq!(
        silent.hung_up_by_client().await,
        1,
        "the fetch timeout bounds the wait: the processor hung up, the server did not let it go"
    );
}

/// The fetcher the processor builds (`Processor::connect`: from `s3_fetch_timeout` and `s3_fetch_attempts`) on a
/// URL that never answers, on tokio's paused clock: it gives up at exactly its 300 ms, as a transient timeout.
#[tokio::test(start_paused = true)]
async fn a_silent_url_is_given_up_at_exactly_the_fetch_timeout() {
    use bridge_core::telemetry::Metrics;
    use sync_processor::config::{ENV_DEDUP_TABLE, ENV_OUTPUT_STREAM, ENV_S3_URL_ALLOWED_ORIGINS};
    let silent = LoopbackServer::start(Answer::Silence).await;
    let config = sync_processor::Config::from_env(&bridge_core::config::env_map(&[
        (ENV_OUTPUT_STREAM, "out"),
        (ENV_DEDUP_TABLE, "marks"),
        (ENV_DEAD_LETTER_BUCKET, "bucket"),
        (ENV_S3_URL_ALLOWED_ORIGINS, &silent.origin),
        (ENV_S3_FETCH_ATTEMPTS, "1"),
        (ENV_S3_FETCH_TIMEOUT_MS, "300"),
    ]))
    .unwrap();
    let fetcher = PayloadFetcher::new(
        config.url_policy.clone(),
        config.s3_payload_max_bytes,
        config.s3_fetch_timeout,
        config.s3_fetch_attempts,
    )
    .unwrap();
    let started = tokio::time::Instant::now();
    let fetched = fetcher
        .fetch(
            &format!("{}/payloads/a.json", silent.origin),
            bridge_core::Deadline::none(),
            &Metrics::new(),
        )
        .await;
    assert_eq!(started.elapsed(), std::time::Duration::from_millis(300));
    assert!(
        matches!(&fetched, Err(sync_processor::payload::FetchError::Transient(m)) if m.contains("timed out")),
        "{:?}",
        fetched.err()
    );
    assert_eq!(silent.hung_up_by_client().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_url_and_a_payload_over_the_cap_are_permanent() {
    let forbidden = LoopbackServer::start(Answer::Status(403)).await;
    let h = Harness::allowing(&forbidden.origin, &[(ENV_S3_PAYLOAD_MAX_BYTES, "200")]).await;
    let body = std::fs::read(e2e::root().join("events/payloads/sync-s3url-payload.json")).unwrap();
    assert!(body.len() > 200);
    let big = h.presigned("payloads/big.json", body).await;
    let event = event_of(&[
        s3url(
            ALICE,
            &format!("{}/payloads/expired.json", forbidden.origin),
        ),
        s3url(BOB, &big),
    ]);
    let (response, _) = h.run(&event).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(forbidden.connections(), 1, "a 403 is not retried");
    let mut reasons: Vec<String> = h
        .dead_letters()
        .await
        .iter()
        .map(|d| d["reason"].as_str().unwrap().to_owned())
        .collect();
    reasons.sort();
    assert_eq!(reasons.len(), 2);
    assert!(
        reasons[0].contains("is over the 200-byte cap"),
        "{reasons:?}"
    );
    assert!(reasons[1].contains("url answered 403"), "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_over_the_record_limit_goes_to_s3_behind_a_pointer() {
    let h = Harness::new().await;
    let huge = "v".repeat(1_100_000);
    let payload = json!([{"key": "blob", "value": huge, "syncCount": 7, "lastModifiedDate": T + 7_000, "op": "replace"}]);
    let url = h
        .presigned("payloads/huge.json", serde_json::to_vec(&payload).unwrap())
        .await;
    let (response, m) = h.run(&event_of(&[s3url(BOB, &url)])).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(m.get(bridge_core::producer::METRIC_POINTER_RECORDS), 1);
    let out = h.outputs().await; // validated: the pointer branch of the schema
    assert_eq!(out.len(), 1);
    let pointer = &out[0];
    assert_eq!(pointer["type"], "record.replace");
    assert!(pointer.get("value").is_none());
    let r = &pointer["payload_ref"];
    let stored = h
        .aws
        .read_objects(r["bucket"].as_str().unwrap(), r["key"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    let full: Value = serde_json::from_slice(&stored[0].1).unwrap();
    assert_valid(&validator("cognito-sync-change.v1.json"), &full);
    assert_eq!(
        full["value"].as_str().map(str::len),
        Some(1_100_000),
        "never truncated"
    );
    assert_eq!(full["event_id"], pointer["event_id"]);
    assert_eq!(r["sha256"], bridge_core::envelope::sha256_hex(&stored[0].1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_records_go_out_in_the_fewest_put_records_calls() {
    let h = Harness::new().await;
    let docs: Vec<Value> = (0..10_000)
        .map(|i| {
            inline(
                &format!("us-east-1:00000000-0000-4000-8000-{:012}", i % 100),
                "game",
                &format!("k{i}"),
                Some("v"),
                1,
                T + i,
            )
        })
        .collect();
    let event = event_of(&docs);
    let (response, m) = h.run(&event).await;
    assert!(response.batch_item_failures.is_empty());
    let forwarded = m.get(METRIC_CHANGES_FORWARDED);
    assert_eq!(forwarded, 10_000);
    // Each identity has 100 records here, and a key's outputs of different records never share a request (order
    // under partial failures): 100 requests of one record per identity, not ⌈10,000/500⌉ = 20.
    assert_eq!(
        m.get(METRIC_PUT_RECORDS_CALLS),
        forwarded.div_ceil(500).max(100),
        "the fewest calls that keep each identity's order"
    );
    let out = h.aws.read_stream(&h.output_stream).await.unwrap();
    assert_eq!(out.len(), 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_dedup_store_fails_every_record_is_retried_and_nothing_forwarded() {
    let h = Harness::new().await;
    let mut config = h.config.clone();
    config.dedup_table = "no-such-table".into();
    let broken = Processor::connect(&config, &h.aws.sdk, h.aws.s3.clone()).unwrap();
    let event = sample("sync-bulk-publish-replay");
    let (response, _) = h.run_with(&broken, &event).await;
    assert_eq!(failed_ids(&response).len(), 6);
    assert!(h.outputs().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_failing_past_the_age_limit_are_dead_lettered_with_their_data_and_replay_completes_them()
 {
    let h = Harness::new().await;
    let mut config = h.config.clone();
    config.dedup_table = "no-such-table".into();
    // The sample arrived in 2023: far past a one-hour limit. Instead of retrying until the event source
    // drops the data, every record goes to the dead-letter bucket with it.
    config.pipeline.give_up_age = Some(std::time::Duration::from_secs(3_600));
    let broken = Processor::connect(&config, &h.aws.sdk, h.aws.s3.clone()).unwrap();
    let event = sample("sync-inline-replace");
    let records = event["Records"].as_array().unwrap().len();
    let (response, m) = h.run_with(&broken, &event).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(m.get(METRIC_DEAD_LETTERED), records as u64);
    let letters = h.dead_letters().await;
    assert!(letters.iter().all(|l| {
        let reason = l["reason"].as_str().unwrap_or_default();
        reason.contains("limit 3600 s") && reason.contains("dedup store")
    }));
    assert!(h.outputs().await.is_empty());

    // Once the store is back, the dead letters are replayed onto the source stream, and the function takes
    // them again: every change goes out.
    let source = devtools::emulator::unique_name("src");
    h.aws.create_stream(&source, 1).await.unwrap();
    // Through the operator command, as a team runs it.
    let (code, stdout, stderr) = e2e::ckb(&[
        "replay",
        "--bucket",
        &h.bucket,
        "--prefix",
        "dead-letter/sync-processor/",
        "--stream",
        &source,
    ])
    .await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("replayed {records} dead letters onto {source}"))
            && stdout.trim_end().ends_with("skipped 0"),
        "{stdout}"
    );
    // Not a terminal: plain progress lines, the last one whatever the time.
    assert!(
        stderr.contains(&format!(
            "{records}/{records} dead letters | replayed {records} | skipped 0"
        )),
        "{stderr}"
    );
    let replayed = h.aws.read_stream(&source).await.unwrap();
    let again = devtools::events::event_from_stream_records(
        &devtools::events::example_stream_arn(&source),
        "shardId-000000000000",
        &replayed,
    );
    let (response, m) = h.run(&again).await;
    assert!(response.batch_item_failures.is_empty());
    let fresh = Harness::new().await;
    fresh.run(&event).await;
    assert_eq!(
        m.get(METRIC_CHANGES_FORWARDED),
        fresh.outputs().await.len() as u64
    );
    assert_eq!(
        summary_keys(&h.outputs().await),
        summary_keys(&fresh.outputs().await)
    );
}

fn summary_keys(outputs: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = outputs
        .iter()
        .map(|d| d["event_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_dead_letters_cannot_be_written_the_records_are_retried_not_lost() {
    let h = Harness::with_env(&[(ENV_DEAD_LETTER_BUCKET, "no-such-bucket")]).await;
    let event = sample("sync-poison");
    let (response, m) = h.run(&event).await;
    // The three undecodable ones, the S3Url one without URL, and the good record of the same identity behind it.
    assert_eq!(
        failed_ids(&response),
        (0..5).map(|i| seq(&event, i)).collect::<Vec<_>>()
    );
    assert_eq!(m.get(METRIC_DEAD_LETTERED), 0);
    assert!(h.outputs().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_failure_is_retried_without_moving_marks_so_nothing_is_lost() {
    let h = Harness::new().await;
    let event = event_of(&[
        inline(ALICE, "settings", "theme", Some("dark"), 1, T + 1_000),
        inline(BOB, "settings", "theme", Some("dark"), 1, T + 1_000),
        inline(ALICE, "settings", "theme", Some("light"), 2, T + 2_000),
    ]);
    // Find the event id of alice's first change by running the same event on a scratch harness.
    let scratch = Harness::new().await;
    scratch.run(&event).await;
    let first = scratch
        .outputs()
        .await
        .into_iter()
        .find(|d| d["identity_id"] == ALICE && d["value"] == "dark")
        .unwrap();
    let first_id = first["event_id"].as_str().unwrap().to_owned();

    // A per-entry failure inside an HTTP 200 is a fault moto never produces: alice's first change fails, the
    // rest goes to the real stream.
    let failing_id = first_id.clone();
    let sink = Arc::new(FailEntries {
        inner: KinesisSink::new(aws_sdk_kinesis::Client::new(&h.aws.sdk), &h.output_stream),
        fail: Box::new(move |e| {
            serde_json::from_slice::<Value>(&e.data)
                .is_ok_and(|d| d["event_id"].as_str() == Some(failing_id.as_str()))
        }),
    });
    let blobs = Arc::new(S3BlobStore::new(h.aws.s3.clone()));
    let policy = Backoff {
        max_attempts: 3,
        base_delay: std::time::Duration::from_millis(5),
        max_delay: std::time::Duration::from_millis(20),
    };
    let flaky = Processor::new(
        Producer::new(
            sink,
            Some(LargePayloads {
                store: blobs.clone(),
                bucket: h.bucket.clone(),
            }),
            policy,
        ),
        Arc::new(DynamoDedupStore::new(
            aws_sdk_dynamodb::Client::new(&h.aws.sdk),
            &h.table,
            std::time::Duration::from_secs(86_400),
        )),
        DeadLetterWriter::new(blobs, &h.bucket),
        PayloadFetcher::new(
            Default::default(),
            1 << 20,
            std::time::Duration::from_secs(2),
            1,
        )
        .unwrap(),
    );
    let (response, m) = h.run_with(&flaky, &event).await;
    assert_eq!(failed_ids(&response), vec![seq(&event, 0), seq(&event, 2)]);
    assert_eq!(
        m.get(bridge_core::producer::METRIC_RECORDS_RETRIED),
        4,
        "alice's failed entry was resent twice, her second change held behind it each time"
    );
    // Only bob's change reached the stream: alice's second record is a later one of her key, so it waited in a
    // request of its own behind her failed first and was never sent ahead of it.
    let out = h.outputs().await;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["identity_id"], BOB);

    // Lambda redelivers from alice's first record: now both of hers go through, in order.
    let (response, _) = h.run(&event).await;
    assert!(response.batch_item_failures.is_empty());
    let out = h.outputs().await;
    let alice: Vec<_> = out
        .iter()
        .filter(|d| d["identity_id"] == ALICE)
        .map(|d| d["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        alice.len(),
        2,
        "no duplicate: nothing of alice's went out before the failure cleared"
    );
    assert_eq!(alice[0], first_id, "her first change first");
    assert_eq!(
        out.iter().filter(|d| d["identity_id"] == BOB).count(),
        1,
        "bob's change is not re-sent"
    );
}

#[test]
fn sample_events_are_generated_from_their_sources() {
    for name in [
        "sync-inline-replace",
        "sync-inline-remove",
        "sync-dataset-remove",
        "sync-s3url",
        "sync-bulk-publish-replay",
        "sync-poison",
    ] {
        let source = json_file(&format!("events/src/{name}.json"));
        assert_eq!(
            devtools::events::sample_event(&source).unwrap(),
            sample(name),
            "{name}: run `make events`"
        );
    }
}

/// The real DynamoDB store, with another invocation's write slipped in before this one's first mark write:
/// a race between two invocations, staged on the emulator.
#[derive(Debug)]
struct RacingWriter {
    inner: DynamoDedupStore,
    rival: std::sync::Mutex<Option<(String, bridge_core::dedup::Mark)>>,
}

#[async_trait]
impl bridge_core::dedup::DedupStore for RacingWriter {
    async fn load(
        &self,
        keys: &[String],
    ) -> Result<
        std::collections::HashMap<String, bridge_core::dedup::Mark>,
        bridge_core::dedup::DedupError,
    > {
        self.inner.load(keys).await
    }

    async fn advance(
        &self,
        key: &str,
        expected: Option<bridge_core::dedup::Mark>,
        new: bridge_core::dedup::Mark,
    ) -> Result<bridge_core::dedup::Advance, bridge_core::dedup::DedupError> {
        let rival = self.rival.lock().unwrap().take();
        if let Some((rival_key, rival_mark)) = rival {
            assert_eq!(rival_key, key);
            assert_eq!(
                self.inner.advance(key, expected, rival_mark).await?,
                bridge_core::dedup::Advance::Advanced
            );
        }
        self.inner.advance(key, expected, new).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mark_race_keeps_the_newer_mark_whoever_wins() {
    use bridge_core::dedup::{DedupStore, Mark};
    let key = sync_processor::dedup::record_key(POOL, ALICE, "settings", "theme");
    for (rival, expected_final) in [
        // The rival forwarded a newer change first: ours must not overwrite it.
        (
            Mark {
                version: 9,
                modified_ms: T + 9_000,
            },
            Mark {
                version: 9,
                modified_ms: T + 9_000,
            },
        ),
        // The rival wrote an older mark: ours is newer and must win on the retried swap.
        (
            Mark {
                version: 1,
                modified_ms: T + 1_000,
            },
            Mark {
                version: 5,
                modified_ms: T + 5_000,
            },
        ),
    ] {
        let h = Harness::new().await;
        let client = aws_sdk_dynamodb::Client::new(&h.aws.sdk);
        let store = DynamoDedupStore::new(
            client.clone(),
            &h.table,
            std::time::Duration::from_secs(86_400),
        );
        let racing = RacingWriter {
            inner: store.clone(),
            rival: std::sync::Mutex::new(Some((key.clone(), rival))),
        };
        let blobs = Arc::new(S3BlobStore::new(h.aws.s3.clone()));
        let processor = Processor::new(
            Producer::new(
                Arc::new(KinesisSink::new(
                    aws_sdk_kinesis::Client::new(&h.aws.sdk),
                    &h.output_stream,
                )),
                None,
                Backoff::default(),
            ),
            Arc::new(racing),
            DeadLetterWriter::new(blobs, &h.bucket),
            PayloadFetcher::new(
                Default::default(),
                1 << 20,
                std::time::Duration::from_secs(2),
                1,
            )
            .unwrap(),
        );
        let (response, m) = h
            .run_with(
                &processor,
                &event_of(&[inline(ALICE, "settings", "theme", Some("x"), 5, T + 5_000)]),
            )
            .await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(m.get(sync_processor::handler::METRIC_MARK_CONFLICTS), 1);
        assert_eq!(
            store
                .load(std::slice::from_ref(&key))
                .await
                .unwrap()
                .get(&key),
            Some(&expected_final),
            "rival {rival:?}"
        );
    }
}

/// Collects what the subscriber writes.
#[derive(Clone, Default)]
struct Capture(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn logs_carry_no_sync_values_and_no_identity_ids() {
    let capture = Capture::default();
    let writer = capture.clone();
    // JSON logs at Lambda's default level, as AWS_LAMBDA_LOG_FORMAT=JSON gives them.
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            let failing = LoopbackServer::start(Answer::Status(503)).await;
            let h = Harness::allowing(&failing.origin, &[(ENV_S3_FETCH_ATTEMPTS, "1")]).await;
            h.run(&sample("sync-poison")).await;
            let event = event_of(&[
                s3url(ALICE, &format!("{}/payloads/a.json", failing.origin)),
                inline(
                    ALICE,
                    "settings",
                    "pin",
                    Some("secret-value-4711"),
                    2,
                    T + 2_000,
                ),
            ]);
            let (response, _) = h.run(&event).await;
            assert_eq!(response.batch_item_failures.len(), 2);
        })
    });
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("record dead-lettered") && logs.contains("record will be retried"),
        "{logs}"
    );
    for line in logs.lines() {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    }
    for private in [
        "secret-value-4711",
        "light",
        "aaaaaaaa-0000",
        "dddddddd-0000",
        POOL,
        "identityPoolId",
    ] {
        assert!(!logs.contains(private), "logs leak {private:?}:\n{logs}");
    }
}

/// KPL-aggregated input, made by the real aggregation library: each user record is its own change with its own
/// lineage (`user_record`), a transient failure of one user record retries its whole aggregate (and the siblings
/// that went out are dropped as duplicates when it comes again), and a corrupt or truncated aggregate is a dead
/// letter that says why, not "expected value at line 1 column 1".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpl_aggregated_records_are_deaggregated_with_their_own_lineage() {
    const CAROL: &str = "us-east-1:cccccccc-0000-4000-8000-000000000003";
    const DAVE: &str = "us-east-1:dddddddd-0000-4000-8000-000000000004";
    const ERIN: &str = "us-east-1:eeeeeeee-0000-4000-8000-000000000005";
    let failing = LoopbackServer::start(Answer::Status(503)).await;
    let h = Harness::allowing(&failing.origin, &[(ENV_S3_FETCH_ATTEMPTS, "2")]).await;
    let first = [
        inline(ALICE, "settings", "theme", Some("dark"), 1, T + 1_000),
        inline(BOB, "settings", "theme", Some("light"), 1, T + 1_000),
        inline(CAROL, "game", "level", Some("3"), 1, T + 1_000),
    ];
    let second = [
        s3url(DAVE, &format!("{}/payloads/d.json", failing.origin)),
        inline(ERIN, "settings", "locale", Some("fr"), 1, T + 1_000),
    ];
    let mut event = event_of(&[
        first[0].clone(),
        second[0].clone(),
        first[0].clone(),
        first[0].clone(),
    ]);
    let aggregate = e2e::set_record_aggregate(&mut event, 0, &first, "identityId");
    e2e::set_record_aggregate(&mut event, 1, &second, "identityId");
    // Ours reads the library's bytes back exactly.
    let users = bridge_core::kpl::deaggregate(&aggregate).unwrap().unwrap();
    assert_eq!(users.len(), 3);
    assert_eq!(users[1].partition_key, BOB);
    assert_eq!(
        serde_json::from_slice::<Value>(&users[2].data).unwrap(),
        first[2]
    );
    // A corrupt copy (one bit) and a truncated one.
    let mut corrupt = aggregate.clone();
    corrupt[12] ^= 0x01;
    let truncated = aggregate[..aggregate.len() / 2].to_vec();
    for (i, bytes) in [(2, &corrupt), (3, &truncated)] {
        use base64::Engine as _;
        event["Records"][i]["kinesis"]["data"] =
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    }

    let (response, metrics) = h.run(&event).await;
    assert_eq!(
        failed_ids(&response),
        vec![seq(&event, 1)],
        "only Dave's aggregate is retried"
    );
    assert_eq!(metrics.get(METRIC_RECORDS_IN), 4, "Kinesis records in");
    let out = h.outputs().await;
    let lineage: BTreeMap<String, (String, u64)> = out
        .iter()
        .map(|d| {
            (
                d["identity_id"].as_str().unwrap().to_owned(),
                (
                    d["source"]["sequence_number"].as_str().unwrap().to_owned(),
                    d["source"]["user_record"].as_u64().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(
        lineage,
        BTreeMap::from([
            (ALICE.to_owned(), (seq(&event, 0), 0)),
            (BOB.to_owned(), (seq(&event, 0), 1)),
            (CAROL.to_owned(), (seq(&event, 0), 2)),
            (ERIN.to_owned(), (seq(&event, 1), 1)),
        ])
    );
    let letters = h.dead_letters().await;
    assert_eq!(letters.len(), 2);
    for letter in &letters {
        let reason = letter["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("KPL-aggregated record: MD5 mismatch"),
            "{reason}"
        );
    }

    // The redelivery Lambda makes from the reported sequence number: Erin's change is not forwarded twice.
    let redelivered = json!({"Records": [event["Records"][1].clone()]});
    let (response, metrics) = h.run(&redelivered).await;
    assert_eq!(failed_ids(&response), vec![seq(&event, 1)]);
    assert_eq!(metrics.get(METRIC_DUPLICATES_DROPPED), 1);
    assert_eq!(h.outputs().await.len(), 4);
}

/// Every fetched S3Url body goes into its record's dead letter, parsed or not: the presigned url expires, and
/// what Cognito sent must not go with it. Unparsable and wrong-shaped bodies are kept whole; a body over the cap
/// is kept up to the cap and marked cut; a refused url was never requested (the record's data, with its url, is
/// kept); a transient failure is retried, not dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fetched_body_goes_into_its_dead_letter_parsed_or_not() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let failing = LoopbackServer::start(Answer::Status(503)).await;
    let h = Harness::allowing(
        &failing.origin,
        &[
            (ENV_S3_PAYLOAD_MAX_BYTES, "200"),
            (ENV_S3_FETCH_ATTEMPTS, "1"),
        ],
    )
    .await;
    let carol = "us-east-1:cccccccc-0000-4000-8000-000000000003";
    let dave = "us-east-1:dddddddd-0000-4000-8000-000000000004";
    let erin = "us-east-1:eeeeeeee-0000-4000-8000-000000000005";
    let unparsable = b"[{\"key\": \"a\", \"value\": ".to_vec();
    let wrong_shape = br#"{"key": "a", "value": "1", "syncCount": 7}"#.to_vec();
    let big = std::fs::read(e2e::root().join("events/payloads/sync-s3url-payload.json")).unwrap();
    assert!(big.len() > 200);
    let event = event_of(&[
        s3url(
            ALICE,
            &h.presigned("kept/unparsable.json", unparsable.clone())
                .await,
        ),
        s3url(
            BOB,
            &h.presigned("kept/object.json", wrong_shape.clone()).await,
        ),
        s3url(carol, &h.presigned("kept/big.json", big.clone()).await),
        s3url(dave, "https://evil.example/bucket.s3.amazonaws.com/k"),
        s3url(erin, &format!("{}/payloads/e.json", failing.origin)),
    ]);
    let (response, m) = h.run(&event).await;
    assert_eq!(
        failed_ids(&response),
        vec![seq(&event, 4)],
        "the transient one is retried"
    );
    assert_eq!(m.get(METRIC_DEAD_LETTERED), 4);
    let letters: BTreeMap<String, Value> = h
        .dead_letters()
        .await
        .into_iter()
        .map(|d| {
            (
                d["source"]["sequence_number"].as_str().unwrap().to_owned(),
                d,
            )
        })
        .collect();
    assert_eq!(letters.len(), 4, "no dead letter for the transient failure");
    let letter = |i: usize| &letters[&seq(&event, i)];
    let kept = |i: usize| {
        b64.decode(letter(i)["payload_base64"].as_str().unwrap())
            .unwrap()
    };
    for i in [0, 1] {
        assert!(
            letter(i)["reason"]
                .as_str()
                .unwrap()
                .contains("payload is not a json array of sync records"),
            "{}",
            letter(i)["reason"]
        );
        assert_eq!(letter(i)["payload_truncated"], Value::Null, "kept whole");
    }
    assert_eq!(kept(0), unparsable);
    assert_eq!(kept(1), wrong_shape);
    assert!(
        letter(2)["reason"]
            .as_str()
            .unwrap()
            .contains("over the 200-byte cap")
    );
    assert_eq!(kept(2), big[..200], "kept up to the cap");
    assert_eq!(letter(2)["payload_truncated"], true);
    assert!(
        letter(3)["reason"]
            .as_str()
            .unwrap()
            .contains("url refused")
    );
    assert_eq!(letter(3)["payload_base64"], Value::Null, "never requested");
    for i in 0..4 {
        assert_eq!(
            letter(i)["data_base64"],
            event["Records"][i]["kinesis"]["data"],
            "the record itself is kept too"
        );
    }
    // The replay tool leaves these where they are, saying why (a whole, valid payload it inlines: tested above).
    let unreadable = devtools::replay::replayable(letter(0)).unwrap_err();
    assert!(
        unreadable.contains("the kept payload is not JSON"),
        "{unreadable}"
    );
    let cut = devtools::replay::replayable(letter(2)).unwrap_err();
    assert!(cut.contains("only its first 200 bytes"), "{cut}");
}
