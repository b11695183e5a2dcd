//! End-to-end tests of the auth trigger forwarder: the real forwarder, through the real AWS SDK, against moto
//! server (Kinesis, Secrets Manager). Loopback servers stand in for a Kinesis endpoint that refuses
//! connections or never answers, which moto cannot be made to do.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use auth_analytics::config::{self as cfg, LogConfig, TriggerConfig};
use auth_analytics::sharing::AttributeSharing;
use auth_analytics::trigger::TRIGGER_TYPES;
use auth_analytics::trigger_handler::{
    METRIC_EVENTS_FORWARDED, METRIC_UNKNOWN_TRIGGER_SOURCES, METRIC_UNPARSABLE_EVENTS, Outcome,
    TriggerForwarder,
};
use aws_lambda_events::event::cognito::{
    CognitoEventUserPoolsPostAuthentication, CognitoEventUserPoolsPostConfirmation,
    CognitoEventUserPoolsPreAuthentication, CognitoEventUserPoolsPreSignup,
    CognitoEventUserPoolsPreTokenGen, CognitoEventUserPoolsPreTokenGenV2,
};
use bridge_core::producer::KinesisSink;
use bridge_core::telemetry::Metrics;
use chrono::{TimeZone, Utc};
use e2e::auth::*;
use e2e::{Answer, LoopbackServer, assert_valid, validator};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_trigger_sample_maps_to_its_event_and_validates() {
    assert_eq!(
        EXPECTED.len(),
        TRIGGER_TYPES.len(),
        "a sample per mapped trigger source"
    );
    let aws = local().await;
    let stream = output_stream(&aws).await;
    let forwarder = trigger_forwarder(&aws.sdk, &stream, &[]);
    let metrics = Metrics::new();
    let mut ids = Vec::new();
    for (source, ..) in EXPECTED {
        let input = trigger_sample(source);
        let (response, outcome) = forwarder.forward(input.clone(), Utc::now(), &metrics).await;
        assert_eq!(
            response, input,
            "{source}: the response must be the event unchanged"
        );
        let Outcome::Forwarded { event_id } = outcome else {
            panic!("{source}: {outcome:?}");
        };
        ids.push(event_id);
    }
    assert_eq!(metrics.get(METRIC_EVENTS_FORWARDED), EXPECTED.len() as u64);
    let out = outputs(&aws, &stream).await;
    assert_eq!(out.len(), EXPECTED.len());
    for ((pk, doc), (source, kind, sub, platform)) in out.iter().zip(EXPECTED) {
        assert_eq!(doc["trigger_source"], *source);
        assert_eq!(doc["type"], *kind, "{source}");
        assert_eq!(doc["origin"], "trigger");
        assert_eq!(doc["user_pool_id"], "us-east-1_EXAMPLE");
        assert_eq!(doc["client_id"], "1example23456789");
        assert_eq!(doc["user_sub"].as_str(), *sub, "{source}");
        assert_eq!(doc["context"]["platform"].as_str(), *platform, "{source}");
        assert!(doc.get("attributes").is_none(), "sharing is off by default");
        match sub {
            Some(s) => assert_eq!(pk, s),
            None => assert!(pk.starts_with("user-") || pk.starts_with("client-"), "{pk}"),
        }
        assert!(
            !pk.contains("jane") && !pk.contains("google"),
            "no user name in a partition key"
        );
    }
    let sign_in = &out[6].1;
    assert_eq!(sign_in["context"]["new_device_used"], true);
    assert_eq!(sign_in["context"]["locale"], "en_US");
    assert_eq!(sign_in["context"]["app_version"], "2.4.1");
    assert_eq!(sign_in["context"]["device_id"], "device-0001");
    assert_eq!(sign_in["trigger_version"], "1");
    let ids_out: Vec<&str> = out
        .iter()
        .map(|(_, d)| d["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids_out, ids.iter().map(String::as_str).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_answer_is_the_input_byte_for_byte() {
    // A 30-digit number in clientMetadata and keys out of alphabetical order: a parsed-and-reserialized
    // answer would turn the number into a float and could sort the keys.
    let aws = local().await;
    let stream = output_stream(&aws).await;
    let forwarder = trigger_forwarder(&aws.sdk, &stream, &[]);
    let sample =
        serde_json::to_string(&trigger_sample("PostAuthentication_Authentication")).unwrap();
    let text = sample.replacen(
        "\"clientMetadata\":{",
        "\"clientMetadata\":{\"zeta\":\"1\",\"n\":123456789012345678901234567890,\"alpha\":\"2\",",
        1,
    );
    assert_ne!(text, sample, "the sample has client metadata");
    let reparsed = serde_json::to_string(&serde_json::from_str::<Value>(&text).unwrap()).unwrap();
    assert_ne!(reparsed, text, "a re-serialization changes these bytes");
    let input = serde_json::value::RawValue::from_string(text.clone()).unwrap();
    let out = forwarder
        .handle(lambda_runtime::LambdaEvent::new(
            input,
            lambda_runtime::Context::default(),
        ))
        .await
        .unwrap();
    assert_eq!(out.get(), text);
    assert_eq!(
        outputs(&aws, &stream).await.len(),
        1,
        "and the auth event went out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_responses_are_exactly_what_cognito_expects() {
    // Cognito's "continue" answer is the event with its response object untouched: each sample comes back
    // byte-for-byte, and it still reads as the aws_lambda_events type of its trigger where one exists.
    let aws = local().await;
    let stream = output_stream(&aws).await;
    let forwarder = trigger_forwarder(&aws.sdk, &stream, &[]);
    for (source, ..) in EXPECTED {
        let input = trigger_sample(source);
        let (response, _) = forwarder
            .forward(input.clone(), Utc::now(), &Metrics::new())
            .await;
        assert_eq!(
            serde_json::to_string(&response).unwrap(),
            serde_json::to_string(&input).unwrap(),
            "{source}"
        );
        let version = input["version"].as_str().unwrap();
        let typed = match (*source, version) {
            (s, _) if s.starts_with("PreSignUp_") => {
                let e: CognitoEventUserPoolsPreSignup =
                    serde_json::from_value(response.clone()).unwrap();
                assert!(!e.response.auto_confirm_user && !e.response.auto_verify_email);
                true
            }
            (s, _) if s.starts_with("PostConfirmation_") => {
                serde_json::from_value::<CognitoEventUserPoolsPostConfirmation>(response.clone())
                    .is_ok()
            }
            ("PreAuthentication_Authentication", _) => {
                serde_json::from_value::<CognitoEventUserPoolsPreAuthentication>(response.clone())
                    .is_ok()
            }
            ("PostAuthentication_Authentication", _) => {
                serde_json::from_value::<CognitoEventUserPoolsPostAuthentication>(response.clone())
                    .is_ok()
            }
            ("TokenGeneration_ClientCredentials", _) => true, // no aws_lambda_events type for V3 M2M
            (_, "1") => {
                let e: CognitoEventUserPoolsPreTokenGen =
                    serde_json::from_value(response.clone()).unwrap();
                e.response.claims_override_details.is_none()
            }
            (_, _) => {
                let e: CognitoEventUserPoolsPreTokenGenV2 =
                    serde_json::from_value(response.clone()).unwrap();
                e.response.claims_and_scope_override_details.is_none()
            }
        };
        assert!(
            typed,
            "{source} v{version} does not read as its trigger type"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_malformed_inputs_pass_through_unchanged_and_are_counted() {
    let aws = local().await;
    let stream = output_stream(&aws).await;
    let forwarder = trigger_forwarder(&aws.sdk, &stream, &[]);
    let metrics = Metrics::new();
    let mut custom = trigger_sample("PostAuthentication_Authentication");
    custom["triggerSource"] = json!("CustomMessage_SignUp");
    custom["response"] = json!({"smsMessage": null, "emailMessage": null, "emailSubject": null});
    let (response, outcome) = forwarder
        .forward(custom.clone(), Utc::now(), &metrics)
        .await;
    assert_eq!(response, custom);
    assert_eq!(outcome, Outcome::Unknown("CustomMessage_SignUp".into()));
    for bad in [
        json!(null),
        json!("text"),
        json!([1, 2]),
        json!({"triggerSource": 7}),
        json!({"version": "1"}),
    ] {
        let (response, outcome) = forwarder.forward(bad.clone(), Utc::now(), &metrics).await;
        assert_eq!(response, bad);
        assert!(matches!(outcome, Outcome::Unparsable(_)), "{outcome:?}");
    }
    assert_eq!(metrics.get(METRIC_UNKNOWN_TRIGGER_SOURCES), 1);
    assert_eq!(metrics.get(METRIC_UNPARSABLE_EVENTS), 5);
    assert!(outputs(&aws, &stream).await.is_empty());
    // Through the Lambda handler too.
    let handled = forwarder
        .handle(lambda_runtime::LambdaEvent::new(
            raw(&custom),
            lambda_runtime::Context::default(),
        ))
        .await
        .unwrap();
    assert_eq!(handled.get(), raw(&custom).get());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_trigger_gets_the_same_event_id() {
    let aws = local().await;
    let stream = output_stream(&aws).await;
    let forwarder = trigger_forwarder(&aws.sdk, &stream, &[]);
    let input = trigger_sample("PostAuthentication_Authentication");
    let at = |ms: i64| Utc.timestamp_millis_opt(ms).unwrap();
    // Cognito retries after its 5-second timeout; inside one 10-second window the id is the same.
    let (_, first) = forwarder
        .forward(input.clone(), at(1_700_000_000_500), &Metrics::new())
        .await;
    let (_, retry) = forwarder
        .forward(input.clone(), at(1_700_000_005_600), &Metrics::new())
        .await;
    assert_eq!(first, retry);
    // With an app nonce the id is exact, whatever the time.
    let mut nonce = input.clone();
    nonce["request"]["clientMetadata"]["event_nonce"] =
        json!("9b2f6a9e-0000-4000-8000-000000000042");
    let (_, a) = forwarder
        .forward(nonce.clone(), at(1_700_000_009_900), &Metrics::new())
        .await;
    let (_, b) = forwarder
        .forward(nonce, at(1_700_000_014_900), &Metrics::new())
        .await;
    assert_eq!(a, b);
    assert_ne!(a, first);
    let out = outputs(&aws, &stream).await;
    assert_eq!(out.len(), 4);
    assert_eq!(out[0].1["event_id"], out[1].1["event_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_trigger_attributes_follow_the_allowlist_and_hash_pii() {
    let aws = local().await;
    let stream = output_stream(&aws).await;
    let forwarder = trigger_forwarder(
        &aws.sdk,
        &stream,
        &[
            (cfg::ENV_SHARE_ATTRIBUTES, "email,given_name,phone_number"),
            (cfg::ENV_HASH_ATTRIBUTES, "email,phone_number"),
            (cfg::ENV_ATTRIBUTE_HASH_KEY, HASH_KEY),
        ],
    );
    let (_, outcome) = forwarder
        .forward(
            trigger_sample("PostAuthentication_Authentication"),
            Utc::now(),
            &Metrics::new(),
        )
        .await;
    assert!(matches!(outcome, Outcome::Forwarded { .. }));
    let out = outputs(&aws, &stream).await;
    let attrs = out[0].1["attributes"].as_object().unwrap();
    assert_eq!(attrs.len(), 3);
    assert_eq!(attrs["given_name"], "Jane");
    let sharing = auth_analytics::config::sharing_from_env(
        &env(&[
            (cfg::ENV_SHARE_ATTRIBUTES, "email"),
            (cfg::ENV_HASH_ATTRIBUTES, "email"),
            (cfg::ENV_ATTRIBUTE_HASH_KEY, HASH_KEY),
        ]),
        cfg::HashKey::FromEnv,
    )
    .unwrap();
    assert_eq!(attrs["email"], sharing.hmac("email", "jane@example.com"));
    let text = out[0].1.to_string();
    assert!(
        !text.contains("jane@example.com")
            && !text.contains("+12065550100")
            && !text.contains(HASH_KEY)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hash_key_is_read_from_secrets_manager_at_cold_start() {
    let aws = local().await;
    let stream = output_stream(&aws).await;
    let secret_key = "secret-manager-only-key-0123456789";
    let arn = hash_key_secret(&aws, secret_key).await;
    let e = env(&[
        (cfg::ENV_OUTPUT_STREAM, &stream),
        (cfg::ENV_DEAD_LETTER_BUCKET, "unused"),
        (cfg::ENV_SHARE_ATTRIBUTES, "email,given_name"),
        (cfg::ENV_HASH_ATTRIBUTES, "email"),
        (cfg::ENV_ATTRIBUTE_HASH_KEY_SECRET, &arn),
    ]);
    let config = TriggerConfig::load(&e, &aws.sdk).await.unwrap();
    let keyed = |key: &str| {
        AttributeSharing::new(
            ["email".to_owned()],
            ["email".to_owned()],
            Some(key.as_bytes().to_vec()),
        )
        .unwrap()
        .hmac("email", "jane@example.com")
    };
    // The events carry the hash under the secret's key, which is in no environment variable.
    assert_eq!(forward_post_authentication(&config, &aws).await, 0);
    let out = outputs(&aws, &stream).await;
    assert_eq!(out[0].1["attributes"]["email"], keyed(secret_key));
    assert_ne!(out[0].1["attributes"]["email"], keyed(HASH_KEY));
    assert_eq!(out[0].1["attributes"]["given_name"], "Jane");
    let log = LogConfig::load(&e, &aws.sdk).await.unwrap();
    assert_eq!(
        log.sharing.hmac("email", "jane@example.com"),
        keyed(secret_key)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_key_secret_fails_the_trigger_open_and_the_log_forwarder_closed() {
    let aws = local().await;
    let stream = output_stream(&aws).await;
    let missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:no-such-key-AbCdEf";
    let short = hash_key_secret(&aws, "too-short").await;
    let good = hash_key_secret(&aws, "secret-manager-only-key-0123456789").await;
    // A missing secret, a key too short, and a key given twice (secret and variable): none is usable.
    let cases = [
        (missing, None),
        (short.as_str(), None),
        (good.as_str(), Some(HASH_KEY)),
    ];
    for (secret, also_in_env) in cases {
        let mut e = env(&[
            (cfg::ENV_OUTPUT_STREAM, &stream),
            (cfg::ENV_DEAD_LETTER_BUCKET, "unused"),
            (cfg::ENV_SHARE_ATTRIBUTES, "email,given_name"),
            (cfg::ENV_HASH_ATTRIBUTES, "email"),
            (cfg::ENV_ATTRIBUTE_HASH_KEY_SECRET, secret),
        ]);
        if let Some(key) = also_in_env {
            e.insert(cfg::ENV_ATTRIBUTE_HASH_KEY.to_owned(), key.to_owned());
        }
        // The trigger still starts, and sends the plain attribute but not the one it cannot hash.
        let config = TriggerConfig::load(&e, &aws.sdk).await.unwrap();
        // Counted on every event, for the alarm.
        assert_eq!(forward_post_authentication(&config, &aws).await, 1);
        // The log forwarder does not start: its batch waits on the stream. The error names the variable.
        let err = LogConfig::load(&e, &aws.sdk).await.unwrap_err().to_string();
        assert!(err.contains(cfg::ENV_ATTRIBUTE_HASH_KEY_SECRET), "{err}");
        assert!(
            !err.contains("too-short") && !err.contains(HASH_KEY),
            "{err}"
        );
    }
    let out = outputs(&aws, &stream).await;
    assert_eq!(out.len(), 3);
    for (_, doc) in &out {
        let attrs = doc["attributes"].as_object().unwrap();
        assert_eq!(attrs.keys().collect::<Vec<_>>(), ["given_name"]);
        assert!(!doc.to_string().contains("jane@example.com"));
    }
}

// Paused clock: the budget is checked exactly, in virtual time (see assert_fails_open).
#[tokio::test(start_paused = true)]
async fn sign_in_never_blocks_when_kinesis_refuses_connections() {
    let aws = local().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let forwarder = forwarder_at(&aws, &format!("http://{closed}"), 500);
    assert_fails_open(&forwarder, Duration::from_millis(500)).await;
}

// Paused clock: the budget is checked exactly, in virtual time (see assert_fails_open).
#[tokio::test(start_paused = true)]
async fn sign_in_never_blocks_when_kinesis_never_answers() {
    let aws = local().await;
    let silent = LoopbackServer::start(Answer::Silence).await;
    let forwarder = forwarder_at(&aws, &silent.origin, 300);
    assert_fails_open(&forwarder, Duration::from_millis(300)).await;
    assert!(
        silent.connections() >= 1,
        "the put reached the silent server"
    );
    // And through the Lambda handler, which prints the spilled line and still answers.
    let input = trigger_sample("PostAuthentication_Authentication");
    let started = tokio::time::Instant::now();
    let out = forwarder
        .handle(lambda_runtime::LambdaEvent::new(
            raw(&input),
            lambda_runtime::Context::default(),
        ))
        .await
        .unwrap();
    assert!(started.elapsed() <= Duration::from_millis(300));
    assert_eq!(
        silent.hung_up_by_client().await,
        silent.connections(),
        "the forwarder hung up on every silent put by itself"
    );
    assert_eq!(out.get(), raw(&input).get());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spilled_line_keeps_only_hashed_attributes() {
    let aws = local().await;
    let silent = LoopbackServer::start(Answer::Silence).await;
    let budget = Duration::from_millis(200);
    let conf = TriggerForwarder::kinesis_config(&aws.sdk, budget)
        .endpoint_url(&silent.origin)
        .build();
    let sink = KinesisSink::new(aws_sdk_kinesis::Client::from_conf(conf), "auth-events");
    let sharing = cfg::sharing_from_env(
        &env(&[
            (cfg::ENV_SHARE_ATTRIBUTES, "email,given_name"),
            (cfg::ENV_HASH_ATTRIBUTES, "email"),
            (cfg::ENV_ATTRIBUTE_HASH_KEY, HASH_KEY),
        ]),
        cfg::HashKey::FromEnv,
    )
    .unwrap();
    let forwarder = TriggerForwarder::new(Arc::new(sink), budget, 10_000, sharing.clone());
    let (_, outcome) = forwarder
        .forward(
            trigger_sample("PostAuthentication_Authentication"),
            Utc::now(),
            &Metrics::new(),
        )
        .await;
    let Outcome::Spilled { line } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(
        line["record"]["attributes"],
        json!({"email": sharing.hmac("email", "jane@example.com")})
    );
    assert_eq!(line["dropped_attributes"], json!(["given_name"]));
    assert!(!line.to_string().contains("Jane") && !line.to_string().contains("jane@example.com"));
    assert_valid(&validator("cognito-auth-event.v1.json"), &line["record"]);
}

// Paused clock: the budget is checked exactly, in virtual time (see assert_fails_open).
#[tokio::test(start_paused = true)]
async fn sign_in_never_blocks_when_kinesis_answers_with_errors() {
    let aws = local().await;
    let failing = LoopbackServer::start(Answer::Status(500)).await;
    let forwarder = forwarder_at(&aws, &failing.origin, 400);
    assert_fails_open(&forwarder, Duration::from_millis(400)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_trigger_put_is_resent_inside_the_budget() {
    let aws = local().await;
    let stream = output_stream(&aws).await;
    let sink = ThrottleFirst {
        inner: KinesisSink::new(aws.kinesis.clone(), &stream),
        calls: std::sync::atomic::AtomicUsize::new(0),
    };
    let budget = Duration::from_millis(1_000);
    let forwarder = TriggerForwarder::new(Arc::new(sink), budget, 10_000, AttributeSharing::off());
    let input = trigger_sample("PostAuthentication_Authentication");
    let metrics = Metrics::new();
    let started = Instant::now();
    let (response, outcome) = forwarder.forward(input.clone(), Utc::now(), &metrics).await;
    assert!(started.elapsed() < budget);
    assert_eq!(response, input);
    assert!(matches!(outcome, Outcome::Forwarded { .. }), "{outcome:?}");
    assert_eq!(
        metrics.get(bridge_core::producer::METRIC_RECORDS_RETRIED),
        1
    );
    assert_eq!(outputs(&aws, &stream).await.len(), 1);
}
