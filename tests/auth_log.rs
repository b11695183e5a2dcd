//! End-to-end tests of the auth log forwarder: CloudWatch Logs subscription records of user-activity logs,
//! through the real forwarder and SDK, against moto server (Kinesis, S3, cognito-idp with pools and users
//! created here for attribute sharing).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use std::sync::Arc;
use std::time::Duration;

use auth_analytics::config::{self as cfg};
use auth_analytics::directory;
use auth_analytics::log_handler::{self, LogForwarder};
use auth_analytics::sharing::AttributeSharing;
use bridge_core::blob::S3BlobStore;
use bridge_core::dead_letter::DeadLetterWriter;
use bridge_core::producer::{KinesisSink, Producer};
use bridge_core::retry::Backoff;
use bridge_core::testing::FailEntries;
use e2e::auth::*;
use e2e::json_file;
use serde_json::{Value, json};

#[test]
fn committed_activity_log_sample_matches_its_source() {
    let source = json_file("events/auth/src/activity-log.json");
    let expected = serde_json::to_string_pretty(&log_event_of(&source)).unwrap() + "\n";
    let committed =
        std::fs::read_to_string(e2e::root().join("events/auth-activity-log.json")).unwrap();
    assert!(
        committed == expected,
        "events/auth-activity-log.json is stale: cargo run -p devtools --bin gen-auth-events"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_log_sample_maps_every_entry_and_skips_the_control_message() {
    let h = LogHarness::new().await;
    let forwarder = h.forwarder(&[]);
    assert!(
        forwarder.enricher().is_none(),
        "sharing off: no cognito-idp client, no lookup"
    );
    let event = e2e::sample("auth-activity-log");
    let (failed, metrics) = h.run(&forwarder, &event).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(metrics.get(log_handler::METRIC_CONTROL_MESSAGES), 1);
    assert_eq!(metrics.get(log_handler::METRIC_EVENTS_FORWARDED), 7);
    assert_eq!(metrics.get(directory::METRIC_LOOKUP_CALLS), 0);
    assert!(h.dead_letters().await.is_empty());
    let out = outputs(&h.aws, &h.stream).await;
    let kinds: Vec<&str> = out
        .iter()
        .map(|(_, d)| d["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "_userauth.sign_in",
            "_userauth.auth_fail",
            "_userauth.sign_up_attempt",
            "_userauth.forgot_password",
            "_userauth.password_change",
            "_userauth.resend_code",
            "_userauth.sign_in_challenge"
        ]
    );
    let subs: Vec<&str> = out.iter().map(|(pk, _)| pk.as_str()).collect();
    assert_eq!(subs, [SUB, SUB, BOB, BOB, SUB, BOB, SUB]);
    let fail = &out[1].1;
    assert_eq!(fail["origin"], "activity_log");
    assert_eq!(fail["user_sub"], SUB);
    assert_eq!(fail["timestamp"], "2023-11-14T22:14:02.000Z");
    assert_eq!(fail["received_at"], "2023-11-14T22:15:00.000Z");
    assert_eq!(fail["activity"]["event_type"], "SignIn");
    assert_eq!(fail["activity"]["event_response"], "Fail");
    assert_eq!(fail["source"]["sequence_number"], seq(&event, 0));
    assert_eq!(fail["source"]["sub_sequence"], 1);
    assert_eq!(
        fail["context"],
        json!({"ip": "198.51.100.7", "risk_level": "High", "risk_decision": "BLOCK", "compromised_credential_detected": false,
               "city": "Berlin", "country": "Germany", "device_name": "Firefox 128, Linux"})
    );
    assert!(out.iter().all(|(_, d)| d.get("attributes").is_none()));
    assert!(
        !out.iter().any(|(_, d)| d.to_string().contains("\"jane\"")),
        "no user names in outputs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_log_record_gets_the_same_event_ids() {
    let h = LogHarness::new().await;
    let forwarder = h.forwarder(&[]);
    let event = e2e::sample("auth-activity-log");
    h.run(&forwarder, &event).await;
    h.run(&forwarder, &event).await;
    let out = outputs(&h.aws, &h.stream).await;
    assert_eq!(out.len(), 14);
    let ids: Vec<&Value> = out.iter().map(|(_, d)| &d["event_id"]).collect();
    assert_eq!(ids[..7], ids[7..]);
    let distinct: std::collections::HashSet<_> = ids.iter().map(ToString::to_string).collect();
    assert_eq!(distinct.len(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_are_dead_lettered_and_good_entries_still_flow() {
    use base64::Engine as _;
    let h = LogHarness::new().await;
    let forwarder = h.forwarder(&[]);
    let pool = "us-east-1_EXAMPLE";
    let good = activity(pool, "p-1", "SignIn", "Pass", SUB, "jane");
    // Record 0: one good entry and one that is not JSON; record 1: all good.
    let mut event = log_event_of(&log_source(&[
        vec![good.clone(), json!("placeholder")],
        vec![activity(pool, "p-2", "SignUp", "Pass", BOB, "li")],
    ]));
    let mut broken = auth_analytics::samples::subscription_document(&json!({
        "messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": "g", "logStream": "s", "subscriptionFilters": [],
        "logEvents": [{"id": "1", "timestamp": 1, "entry": good}, {"id": "2", "timestamp": 1, "message": "{not json"}]}));
    broken["logEvents"][1]["message"] = json!("{not json");
    let gz = auth_analytics::samples::gzip(broken.to_string().as_bytes()).unwrap();
    event["Records"][0]["kinesis"]["data"] =
        json!(base64::engine::general_purpose::STANDARD.encode(gz));
    // Records 2-4: bad base64, data that is not gzip, gzip that is not a subscription document.
    let mut records = event["Records"].as_array().unwrap().clone();
    let template = records[1].clone();
    for (n, data) in [
        "%%% not base64 %%%".to_owned(),
        base64::engine::general_purpose::STANDARD.encode(b"{\"messageType\":\"DATA_MESSAGE\"}"),
        base64::engine::general_purpose::STANDARD
            .encode(auth_analytics::samples::gzip(b"[1, 2]").unwrap()),
    ]
    .into_iter()
    .enumerate()
    {
        let mut r = template.clone();
        let s = devtools::events::sequence_number(10 + n as u64);
        r["kinesis"]["sequenceNumber"] = json!(s);
        r["eventID"] = json!(format!("shardId-000000000000:{s}"));
        r["kinesis"]["data"] = json!(data);
        records.push(r);
    }
    event["Records"] = Value::Array(records);
    let (failed, metrics) = h.run(&forwarder, &event).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(metrics.get(log_handler::METRIC_DEAD_LETTERED), 4);
    assert_eq!(metrics.get(log_handler::METRIC_UNUSABLE_ENTRIES), 1);
    let out = outputs(&h.aws, &h.stream).await;
    let kinds: Vec<&str> = out
        .iter()
        .map(|(_, d)| d["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["_userauth.sign_in", "_userauth.sign_up_attempt"]);
    let letters = h.dead_letters().await;
    assert_eq!(letters.len(), 4);
    let reasons: Vec<String> = letters
        .iter()
        .map(|l| l["reason"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("log event 2 is not a cognito user-activity entry")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("not valid base64")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("not gzip")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("not a cloudwatch logs document")),
        "{reasons:?}"
    );
    assert!(
        letters
            .iter()
            .all(|l| l["function"] == "auth-log-forwarder")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_holds_back_the_users_later_records() {
    let h = LogHarness::new().await;
    let (a, b, c, d) = (
        SUB,
        BOB,
        "4f3e2d1c-0000-4000-8000-000000000003",
        "4f3e2d1c-0000-4000-8000-000000000004",
    );
    let pool = "us-east-1_EXAMPLE";
    let e = |id: &str, sub: &str| activity(pool, id, "SignIn", "Pass", sub, "user");
    // R0 {a}, R1 {b}, R2 {a, c}, R3 {c}, R4 {d}; every put for user a fails.
    let event = log_event_of(&log_source(&[
        vec![e("o-0", a)],
        vec![e("o-1", b)],
        vec![e("o-2", a), e("o-3", c)],
        vec![e("o-4", c)],
        vec![e("o-5", d)],
    ]));
    // Kinesis through the real SDK, except that user a's entries fail with a throttling error (a per-entry
    // failure, which moto never returns).
    let sink = FailEntries {
        inner: KinesisSink::new(h.aws.kinesis.clone(), &h.stream),
        fail: Box::new(move |e| e.partition_key == a),
    };
    let policy = Backoff::new(2, Duration::from_millis(1), Duration::from_millis(2));
    let forwarder = LogForwarder::new(
        Producer::new(Arc::new(sink), None, policy),
        DeadLetterWriter::new(Arc::new(S3BlobStore::new(h.aws.s3.clone())), &h.bucket),
        AttributeSharing::off(),
        None,
    );
    let (failed, metrics) = h.run(&forwarder, &event).await;
    assert_eq!(failed, [seq(&event, 0), seq(&event, 2), seq(&event, 3)]);
    assert_eq!(metrics.get(log_handler::METRIC_BATCH_ITEM_FAILURES), 3);
    assert!(
        h.dead_letters().await.is_empty(),
        "transient failures are never dead-lettered"
    );
    let out = outputs(&h.aws, &h.stream).await;
    assert!(out.iter().all(|(pk, _)| pk != a));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_log_attributes_come_from_cognito_idp_through_the_cache() {
    let h = LogHarness::new().await;
    let (idp, pool) = user_pool(&h.aws).await;
    let jane = create_user(
        &idp,
        &pool,
        "jane",
        &[
            ("email", "jane@example.com"),
            ("given_name", "Jane"),
            ("phone_number", "+12065550100"),
        ],
    )
    .await;
    let li = create_user(
        &idp,
        &pool,
        "li",
        &[("email", "li@example.com"), ("given_name", "Li")],
    )
    .await;
    let forwarder = h.forwarder(&[
        (cfg::ENV_SHARE_ATTRIBUTES, "email,given_name"),
        (cfg::ENV_HASH_ATTRIBUTES, "email"),
        (cfg::ENV_ATTRIBUTE_HASH_KEY, HASH_KEY),
        (cfg::ENV_LOOKUP_CONCURRENCY, "2"),
    ]);
    let mut li_by_sub = activity(&pool, "c-4", "SignUp", "Pass", &li, "");
    li_by_sub["message"]
        .as_object_mut()
        .unwrap()
        .remove("userName");
    let event = log_event_of(&log_source(&[
        vec![
            activity(&pool, "c-1", "SignIn", "Pass", &jane, "jane"),
            activity(&pool, "c-2", "SignIn", "Fail", &jane, "jane"),
        ],
        vec![
            activity(&pool, "c-3", "PasswordChange", "Pass", &jane, "jane"),
            li_by_sub,
        ],
        vec![activity(
            &pool,
            "c-5",
            "SignIn",
            "Fail",
            "4f3e2d1c-0000-4000-8000-00000000dead",
            "ghost",
        )],
    ]));
    let (failed, first) = h.run(&forwarder, &event).await;
    assert!(failed.is_empty());
    // One lookup per distinct user: jane by name (AdminGetUser), li by sub (ListUsers), ghost (not found).
    assert_eq!(first.get(directory::METRIC_LOOKUP_CALLS), 3);
    assert_eq!(first.get(directory::METRIC_LOOKUP_FAILURES), 0);
    let (_, second) = h.run(&forwarder, &event).await;
    assert_eq!(
        second.get(directory::METRIC_LOOKUP_CALLS),
        0,
        "repeats are answered by the cache"
    );
    assert_eq!(second.get(directory::METRIC_LOOKUP_CACHE_HITS), 3);
    let sharing = cfg::sharing_from_env(
        &env(&[
            (cfg::ENV_SHARE_ATTRIBUTES, "email"),
            (cfg::ENV_HASH_ATTRIBUTES, "email"),
            (cfg::ENV_ATTRIBUTE_HASH_KEY, HASH_KEY),
        ]),
        cfg::HashKey::FromEnv,
    )
    .unwrap();
    let out = outputs(&h.aws, &h.stream).await;
    assert_eq!(out.len(), 10);
    for (pk, doc) in &out[..5] {
        let attrs = doc.get("attributes");
        if pk == &jane {
            assert_eq!(
                attrs,
                Some(
                    &json!({"email": sharing.hmac("email", "jane@example.com"), "given_name": "Jane"})
                )
            );
        } else if pk == &li {
            assert_eq!(
                attrs,
                Some(
                    &json!({"email": sharing.hmac("email", "li@example.com"), "given_name": "Li"})
                )
            );
        } else {
            assert!(attrs.is_none(), "an unknown user gets no attributes");
        }
        let text = doc.to_string();
        assert!(
            !text.contains("@example.com") && !text.contains("+1206"),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sharing_off_no_lookup_is_made_even_for_existing_users() {
    let h = LogHarness::new().await;
    let (idp, pool) = user_pool(&h.aws).await;
    let jane = create_user(&idp, &pool, "jane", &[("email", "jane@example.com")]).await;
    let forwarder = h.forwarder(&[(cfg::ENV_ATTRIBUTE_HASH_KEY, HASH_KEY)]);
    assert!(forwarder.enricher().is_none());
    let event = log_event_of(&log_source(&[vec![activity(
        &pool, "d-1", "SignIn", "Pass", &jane, "jane",
    )]]));
    let (failed, metrics) = h.run(&forwarder, &event).await;
    assert!(failed.is_empty());
    assert_eq!(metrics.get(directory::METRIC_LOOKUP_CALLS), 0);
    assert_eq!(metrics.get(directory::METRIC_LOOKUP_CACHE_HITS), 0);
    let out = outputs(&h.aws, &h.stream).await;
    assert!(out[0].1.get("attributes").is_none());
}
