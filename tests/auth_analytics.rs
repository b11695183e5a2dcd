//! End-to-end tests of auth analytics: the real forwarders, through the real AWS SDK, against moto server
//! (Kinesis, S3, cognito-idp with pools and users created here). Loopback servers stand in for a Kinesis
//! endpoint that refuses connections or never answers, which moto cannot be made to do.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auth_analytics::config::{self as cfg, LogConfig, TriggerConfig};
use auth_analytics::directory;
use auth_analytics::export::SnapshotExporter;
use auth_analytics::log_handler::{self, LogForwarder};
use auth_analytics::sharing::AttributeSharing;
use auth_analytics::trigger::TRIGGER_TYPES;
use auth_analytics::trigger_handler::{
    METRIC_EVENTS_FORWARDED, METRIC_EVENTS_SPILLED, METRIC_UNKNOWN_TRIGGER_SOURCES,
    METRIC_UNPARSABLE_EVENTS, Outcome, TriggerForwarder,
};
use aws_lambda_events::event::cognito::{
    CognitoEventUserPoolsPostAuthentication, CognitoEventUserPoolsPostConfirmation,
    CognitoEventUserPoolsPreAuthentication, CognitoEventUserPoolsPreSignup,
    CognitoEventUserPoolsPreTokenGen, CognitoEventUserPoolsPreTokenGenV2,
};
use aws_sdk_cognitoidentityprovider::types::{AttributeType, MessageActionType};
use bridge_core::Deadline;
use bridge_core::blob::S3BlobStore;
use bridge_core::dead_letter::DeadLetterWriter;
use bridge_core::kinesis_event::RawKinesisEvent;
use bridge_core::pipeline::Flow as _;
use bridge_core::producer::{
    EntryOutcome, KinesisSink, Producer, PutEntry, RecordSink, RetryPolicy, SinkError,
};
use bridge_core::telemetry::Metrics;
use chrono::{TimeZone, Utc};
use devtools::LocalAws;
use devtools::emulator::unique_name;
use e2e::{Answer, LoopbackServer, assert_valid, json_file, validator};
use serde_json::{Value, json};

const SUB: &str = "4f3e2d1c-0000-4000-8000-000000000001";
const HASH_KEY: &str = "documentation-only-hash-key-0123";

async fn local() -> LocalAws {
    LocalAws::from_env().await.unwrap_or_else(|e| panic!("{e}"))
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A fresh one-shard output stream.
async fn output_stream(aws: &LocalAws) -> String {
    let name = unique_name("auth-out");
    aws.create_stream(&name, 1).await.unwrap();
    name
}

/// Every record on the stream as (partition key, document), each checked against the schema.
async fn outputs(aws: &LocalAws, stream: &str) -> Vec<(String, Value)> {
    let schema = validator("cognito-auth-event.v1.json");
    aws.read_stream(stream)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let doc: Value = serde_json::from_slice(r.data.as_ref()).unwrap();
            assert_valid(&schema, &doc);
            (r.partition_key.clone().unwrap_or_default(), doc)
        })
        .collect()
}

fn trigger_forwarder(
    sdk: &aws_config::SdkConfig,
    stream: &str,
    extra: &[(&str, &str)],
) -> TriggerForwarder {
    let mut e = env(&[
        (cfg::ENV_OUTPUT_STREAM, stream),
        (cfg::ENV_PUT_BUDGET_MS, "2000"),
    ]);
    e.extend(env(extra));
    TriggerForwarder::connect(&TriggerConfig::from_env(&e).unwrap(), sdk)
}

fn trigger_sample(source: &str) -> Value {
    json_file(&format!("events/auth/{source}.json"))
}

/// What each trigger sample must become: (trigger source, type, user sub, platform).
const EXPECTED: &[(&str, &str, Option<&str>, Option<&str>)] = &[
    (
        "PreSignUp_SignUp",
        "_userauth.sign_up_attempt",
        None,
        Some("iOS"),
    ),
    (
        "PreSignUp_AdminCreateUser",
        "_userauth.admin_create_user",
        None,
        None,
    ),
    (
        "PreSignUp_ExternalProvider",
        "_userauth.federated_sign_up",
        None,
        None,
    ),
    (
        "PostConfirmation_ConfirmSignUp",
        "_userauth.sign_up",
        Some(SUB),
        Some("iOS"),
    ),
    (
        "PostConfirmation_ConfirmForgotPassword",
        "_userauth.password_reset",
        Some(SUB),
        Some("Android"),
    ),
    (
        "PreAuthentication_Authentication",
        "_userauth.sign_in_attempt",
        Some(SUB),
        Some("iOS"),
    ),
    (
        "PostAuthentication_Authentication",
        "_userauth.sign_in",
        Some(SUB),
        Some("iOS"),
    ),
    (
        "TokenGeneration_Authentication",
        "_userauth.tokens_issued",
        Some(SUB),
        Some("iOS"),
    ),
    (
        "TokenGeneration_HostedAuth",
        "_userauth.tokens_issued",
        Some(SUB),
        None,
    ),
    (
        "TokenGeneration_NewPasswordChallenge",
        "_userauth.tokens_issued",
        Some(SUB),
        Some("iOS"),
    ),
    (
        "TokenGeneration_AuthenticateDevice",
        "_userauth.tokens_issued",
        Some(SUB),
        Some("iOS"),
    ),
    (
        "TokenGeneration_RefreshTokens",
        "_userauth.token_refresh",
        Some(SUB),
        None,
    ),
    (
        "TokenGeneration_ClientCredentials",
        "_userauth.client_credentials",
        None,
        None,
    ),
];

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

/// `value` as the raw JSON Lambda would hand the trigger.
fn raw(value: &Value) -> Box<serde_json::value::RawValue> {
    serde_json::value::RawValue::from_string(serde_json::to_string(value).unwrap()).unwrap()
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

/// A secret in Secrets Manager (moto) holding `key`; its ARN.
async fn hash_key_secret(aws: &LocalAws, key: &str) -> String {
    aws_sdk_secretsmanager::Client::new(&aws.sdk)
        .create_secret()
        .name(unique_name("hash-key"))
        .secret_string(key)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap()
}

/// Forwards the PostAuthentication sample with `config`; checks that it was forwarded and answered unchanged, and
/// returns how many events were sent without their hashed attributes.
async fn forward_post_authentication(config: &TriggerConfig, aws: &LocalAws) -> u64 {
    let metrics = Metrics::new();
    let sample = trigger_sample("PostAuthentication_Authentication");
    let (response, outcome) = TriggerForwarder::connect(config, &aws.sdk)
        .forward(sample.clone(), Utc::now(), &metrics)
        .await;
    assert!(matches!(outcome, Outcome::Forwarded { .. }));
    assert_eq!(response, sample);
    metrics.get(auth_analytics::trigger_handler::METRIC_HASHED_ATTRIBUTES_WITHHELD)
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

/// A forwarder whose Kinesis endpoint is `endpoint`, with the production client settings and `budget_ms`.
fn forwarder_at(aws: &LocalAws, endpoint: &str, budget_ms: u64) -> TriggerForwarder {
    let budget = Duration::from_millis(budget_ms);
    let conf = TriggerForwarder::kinesis_config(&aws.sdk, budget)
        .endpoint_url(endpoint)
        .build();
    let sink = KinesisSink::new(aws_sdk_kinesis::Client::from_conf(conf), "auth-events");
    TriggerForwarder::new(Arc::new(sink), budget, 10_000, AttributeSharing::off())
}

/// Runs every trigger sample through `forwarder`, checking each is answered unchanged, within the budget plus
/// a margin, and spilled as a replayable line.
async fn assert_fails_open(forwarder: &TriggerForwarder, budget: Duration) {
    let schema = validator("cognito-auth-event.v1.json");
    let margin = Duration::from_millis(250);
    for (source, kind, ..) in EXPECTED {
        let input = trigger_sample(source);
        let metrics = Metrics::new();
        let started = Instant::now();
        let (response, outcome) = forwarder.forward(input.clone(), Utc::now(), &metrics).await;
        let took = started.elapsed();
        assert!(
            took <= budget + margin,
            "{source}: took {took:?}, budget {budget:?}"
        );
        assert_eq!(response, input, "{source}");
        let Outcome::Spilled { line } = outcome else {
            panic!("{source}: {outcome:?}");
        };
        assert_eq!(metrics.get(METRIC_EVENTS_SPILLED), 1);
        assert_eq!(metrics.get(METRIC_EVENTS_FORWARDED), 0);
        assert_eq!(line["spilled"], "cognito-auth-event/v1");
        assert!(!line["reason"].as_str().unwrap().is_empty());
        assert!(
            line["partition_key"]
                .as_str()
                .is_some_and(|p| !p.is_empty())
        );
        assert_eq!(line["record"]["type"], *kind);
        assert_valid(&schema, &line["record"]);
        assert!(
            !line.to_string().contains("jane@example.com"),
            "no attributes while sharing is off"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_never_blocks_when_kinesis_refuses_connections() {
    let aws = local().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let forwarder = forwarder_at(&aws, &format!("http://{closed}"), 500);
    assert_fails_open(&forwarder, Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    let started = Instant::now();
    let out = forwarder
        .handle(lambda_runtime::LambdaEvent::new(
            raw(&input),
            lambda_runtime::Context::default(),
        ))
        .await
        .unwrap();
    assert!(started.elapsed() <= Duration::from_millis(550));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_never_blocks_when_kinesis_answers_with_errors() {
    let aws = local().await;
    let failing = LoopbackServer::start(Answer::Status(500)).await;
    let forwarder = forwarder_at(&aws, &failing.origin, 400);
    assert_fails_open(&forwarder, Duration::from_millis(400)).await;
}

// ---- user-activity logs -------------------------------------------------------------------------------

const BOB: &str = "4f3e2d1c-0000-4000-8000-000000000002";

/// The Kinesis event of a readable subscription source (the format of `events/auth/src/*.json`).
fn log_event_of(source: &Value) -> Value {
    let sample = auth_analytics::samples::to_sample_source(source).unwrap();
    devtools::events::sample_event(&sample).unwrap()
}

/// A readable source of one DATA_MESSAGE record per entry list.
fn log_source(records: &[Vec<Value>]) -> Value {
    let recs: Vec<Value> = records
        .iter()
        .enumerate()
        .map(|(r, entries)| {
            let events: Vec<Value> = entries
                .iter()
                .enumerate()
                .map(|(i, e)| json!({"id": format!("{}", 38_000_000 + r * 100 + i), "timestamp": 1_700_000_050_000_i64, "entry": e}))
                .collect();
            json!({"partitionKey": format!("pk-{r}"), "subscription": {
                "messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": "/aws/cognito/userpool/user-activity",
                "logStream": "s", "subscriptionFilters": ["to-kinesis"], "logEvents": events}})
        })
        .collect();
    json!({"stream": "cognito-user-activity", "records": recs})
}

/// One user-activity entry.
fn activity(
    pool: &str,
    event_id: &str,
    kind: &str,
    response: &str,
    sub: &str,
    user: &str,
) -> Value {
    json!({"eventTimestamp": "1700000050000", "eventSource": "USER_ACTIVITY", "logLevel": "INFO",
           "message": {"version": "1", "eventId": event_id, "eventType": kind, "userSub": sub, "userName": user,
                       "userPoolId": pool, "clientId": "1example23456789", "eventResponse": response, "riskLevel": "",
                       "riskDecision": "PASS", "ipAddress": "192.0.2.44", "city": "", "country": "", "hasContextData": "true"},
           "logSourceId": {"userPoolId": pool}})
}

struct LogHarness {
    aws: LocalAws,
    stream: String,
    bucket: String,
}

impl LogHarness {
    async fn new() -> Self {
        let aws = local().await;
        let stream = output_stream(&aws).await;
        let bucket = unique_name("auth-dl");
        aws.create_bucket(&bucket).await.unwrap();
        Self {
            aws,
            stream,
            bucket,
        }
    }

    fn config(&self, extra: &[(&str, &str)]) -> LogConfig {
        let mut e = env(&[
            (cfg::ENV_OUTPUT_STREAM, self.stream.as_str()),
            (cfg::ENV_DEAD_LETTER_BUCKET, self.bucket.as_str()),
        ]);
        e.extend(env(extra));
        LogConfig::from_env(&e).unwrap()
    }

    fn forwarder(&self, extra: &[(&str, &str)]) -> LogForwarder {
        LogForwarder::connect(&self.config(extra), &self.aws.sdk, self.aws.s3.clone())
    }

    async fn run(&self, forwarder: &LogForwarder, event: &Value) -> (Vec<String>, Metrics) {
        let metrics = Metrics::new();
        let raw: RawKinesisEvent = serde_json::from_value(event.clone()).unwrap();
        let response = forwarder.process(raw, Deadline::none(), &metrics).await;
        let failed = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone().unwrap())
            .collect();
        (failed, metrics)
    }

    async fn dead_letters(&self) -> Vec<Value> {
        self.aws
            .read_objects(&self.bucket, "dead-letter/")
            .await
            .unwrap()
            .into_iter()
            .map(|(_, body)| serde_json::from_slice(&body).unwrap())
            .collect()
    }
}

fn seq(event: &Value, i: usize) -> String {
    event["Records"][i]["kinesis"]["sequenceNumber"]
        .as_str()
        .unwrap()
        .to_owned()
}

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

/// Kinesis through the real SDK, except that entries of one partition key fail with a throttling error,
/// which moto never returns (DESIGN.md §4).
#[derive(Debug)]
struct FailKey {
    inner: KinesisSink,
    key: String,
}

#[async_trait::async_trait]
impl RecordSink for FailKey {
    async fn put_records(&self, entries: &[PutEntry]) -> Result<Vec<EntryOutcome>, SinkError> {
        let keep: Vec<PutEntry> = entries
            .iter()
            .filter(|e| e.partition_key != self.key)
            .cloned()
            .collect();
        let mut stored = self.inner.put_records(&keep).await?.into_iter();
        Ok(entries
            .iter()
            .map(|e| {
                if e.partition_key == self.key {
                    EntryOutcome::Failed {
                        code: "ProvisionedThroughputExceededException".into(),
                        message: "rate exceeded".into(),
                    }
                } else {
                    stored.next().unwrap_or(EntryOutcome::Stored)
                }
            })
            .collect())
    }
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
    let sink = FailKey {
        inner: KinesisSink::new(h.aws.kinesis.clone(), &h.stream),
        key: a.to_owned(),
    };
    let policy = RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
    };
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

// ---- attribute sharing with user lookups ---------------------------------------------------------------

/// A fresh user pool in moto and its id.
async fn user_pool(aws: &LocalAws) -> (aws_sdk_cognitoidentityprovider::Client, String) {
    let idp = aws_sdk_cognitoidentityprovider::Client::new(&aws.sdk);
    let pool = idp
        .create_user_pool()
        .pool_name(unique_name("pool"))
        .send()
        .await
        .unwrap()
        .user_pool
        .unwrap()
        .id
        .unwrap();
    (idp, pool)
}

/// Creates a user with these attributes and returns its sub.
async fn create_user(
    idp: &aws_sdk_cognitoidentityprovider::Client,
    pool: &str,
    name: &str,
    attrs: &[(&str, &str)],
) -> String {
    let mut req = idp
        .admin_create_user()
        .user_pool_id(pool)
        .username(name)
        .message_action(MessageActionType::Suppress);
    for (k, v) in attrs {
        req = req.user_attributes(AttributeType::builder().name(*k).value(*v).build().unwrap());
    }
    let user = req.send().await.unwrap().user.unwrap();
    user.attributes()
        .iter()
        .find(|a| a.name() == "sub")
        .and_then(|a| a.value())
        .unwrap()
        .to_owned()
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

// ---- user-snapshot-export ------------------------------------------------------------------------------

fn exporter(aws: &LocalAws, pool: &str, stream: &str, rate: f64) -> SnapshotExporter {
    SnapshotExporter::new(
        aws_sdk_cognitoidentityprovider::Client::new(&aws.sdk),
        Producer::new(
            Arc::new(KinesisSink::new(aws.kinesis.clone(), stream)),
            None,
            RetryPolicy::default(),
        ),
        pool,
        rate,
        AttributeSharing::off(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_export_of_250_users_pages_under_the_rate_and_resumes_from_a_token() {
    let aws = local().await;
    let (idp, pool) = user_pool(&aws).await;
    let mut subs = std::collections::HashSet::new();
    for i in 0..253 {
        subs.insert(
            create_user(
                &idp,
                &pool,
                &format!("user{i:03}"),
                &[("email", &format!("user{i:03}@example.com"))],
            )
            .await,
        );
    }
    // A full export at 10 requests/s: 5 pages (60 users per page), at least 0.4 s between the first and last.
    let stream = output_stream(&aws).await;
    let mut seen = Vec::new();
    let started = Instant::now();
    let done = exporter(&aws, &pool, &stream, 10.0)
        .run(None, None, &Metrics::new(), |p| seen.push(p.clone()))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        (done.pages, done.users, done.next_token.clone()),
        (5, 253, None)
    );
    assert_eq!(
        seen.iter().map(|p| p.users).collect::<Vec<_>>(),
        [60, 120, 180, 240, 253]
    );
    let out = outputs(&aws, &stream).await;
    assert_eq!(out.len(), 253);
    let exported: std::collections::HashSet<String> =
        out.iter().map(|(pk, _)| pk.clone()).collect();
    assert_eq!(exported, subs);
    let first = &out[0].1;
    assert_eq!(first["type"], "_userauth.profile_snapshot");
    assert_eq!(first["origin"], "snapshot");
    assert!(first.get("attributes").is_none(), "sharing is off");
    assert!(first["profile"]["status"].is_string());

    // Stop after 2 pages, then resume from the token: together, every user exactly once.
    let resumed = output_stream(&aws).await;
    let part = exporter(&aws, &pool, &resumed, 30.0)
        .run(None, Some(2), &Metrics::new(), |_| {})
        .await
        .unwrap();
    assert_eq!((part.pages, part.users), (2, 120));
    let token = part.next_token.expect("a token to resume from");
    let rest = exporter(&aws, &pool, &resumed, 30.0)
        .run(Some(token), None, &Metrics::new(), |_| {})
        .await
        .unwrap();
    assert_eq!((rest.pages, rest.users, rest.next_token), (3, 133, None));
    let out = outputs(&aws, &resumed).await;
    let ids: std::collections::HashSet<String> = out.iter().map(|(pk, _)| pk.clone()).collect();
    assert_eq!(out.len(), 253);
    assert_eq!(ids, subs);
}

/// Kinesis through the real SDK, except that the first attempt of every entry is throttled, which moto never
/// does (DESIGN.md §4).
#[derive(Debug)]
struct ThrottleFirst {
    inner: KinesisSink,
    calls: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl RecordSink for ThrottleFirst {
    async fn put_records(&self, entries: &[PutEntry]) -> Result<Vec<EntryOutcome>, SinkError> {
        if self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            return Ok(entries
                .iter()
                .map(|_| EntryOutcome::Failed {
                    code: "ProvisionedThroughputExceededException".into(),
                    message: "rate exceeded".into(),
                })
                .collect());
        }
        self.inner.put_records(entries).await
    }
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
