//! What the auth analytics test files share: emulator resources, the sample events and their expected
//! mappings, trigger and log forwarders wired to the emulator, user pools and users in moto, and the fakes
//! for faults moto cannot produce (a throttled or failing PutRecords entry).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "test fixtures fail loudly"
)]

use std::sync::Arc;
use std::time::Duration;

use crate::{assert_valid, json_file, validator};
use auth_analytics::config::{self as cfg, LogConfig, TriggerConfig};
use auth_analytics::export::SnapshotExporter;
use auth_analytics::log_handler::LogForwarder;
use auth_analytics::sharing::AttributeSharing;
use auth_analytics::trigger_handler::{
    METRIC_EVENTS_FORWARDED, METRIC_EVENTS_SPILLED, Outcome, TriggerForwarder,
};
use aws_sdk_cognitoidentityprovider::types::{AttributeType, MessageActionType};
use bridge_core::Deadline;
use bridge_core::kinesis_event::RawKinesisEvent;
use bridge_core::pipeline::Flow as _;
use bridge_core::producer::{EntryOutcome, KinesisSink, Producer, PutEntry, RecordSink, SinkError};
use bridge_core::telemetry::Metrics;
use chrono::Utc;
use devtools::LocalAws;
use devtools::emulator::unique_name;
use serde_json::{Value, json};

pub const SUB: &str = "4f3e2d1c-0000-4000-8000-000000000001";
pub const HASH_KEY: &str = "documentation-only-hash-key-0123";

pub async fn local() -> LocalAws {
    LocalAws::from_env().await.unwrap_or_else(|e| panic!("{e}"))
}

pub use bridge_core::config::env_map as env;

/// A fresh one-shard output stream.
pub async fn output_stream(aws: &LocalAws) -> String {
    let name = unique_name("auth-out");
    aws.create_stream(&name, 1).await.unwrap();
    name
}

/// Every record on the stream as (partition key, document), each checked against the schema.
pub async fn outputs(aws: &LocalAws, stream: &str) -> Vec<(String, Value)> {
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

pub fn trigger_forwarder(
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

pub fn trigger_sample(source: &str) -> Value {
    json_file(&format!("events/auth/{source}.json"))
}

/// What each trigger sample must become: (trigger source, type, user sub, platform).
pub const EXPECTED: &[(&str, &str, Option<&str>, Option<&str>)] = &[
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

/// `value` as the raw JSON Lambda would hand the trigger.
pub fn raw(value: &Value) -> Box<serde_json::value::RawValue> {
    serde_json::value::RawValue::from_string(serde_json::to_string(value).unwrap()).unwrap()
}

/// A secret in Secrets Manager (moto) holding `key`; its ARN.
pub async fn hash_key_secret(aws: &LocalAws, key: &str) -> String {
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
pub async fn forward_post_authentication(config: &TriggerConfig, aws: &LocalAws) -> u64 {
    let metrics = Metrics::new();
    let sample = trigger_sample("PostAuthentication_Authentication");
    let (response, outcome) = TriggerForwarder::connect(config, &aws.sdk)
        .forward(sample.clone(), Utc::now(), &metrics)
        .await;
    assert!(matches!(outcome, Outcome::Forwarded { .. }));
    assert_eq!(response, sample);
    metrics.get(auth_analytics::trigger_handler::METRIC_HASHED_ATTRIBUTES_WITHHELD)
}

/// A forwarder whose Kinesis endpoint is `endpoint`, with the production client settings and `budget_ms`.
pub fn forwarder_at(aws: &LocalAws, endpoint: &str, budget_ms: u64) -> TriggerForwarder {
    let budget = Duration::from_millis(budget_ms);
    let conf = TriggerForwarder::kinesis_config(&aws.sdk, budget)
        .endpoint_url(endpoint)
        .build();
    let sink = KinesisSink::new(aws_sdk_kinesis::Client::from_conf(conf), "auth-events");
    TriggerForwarder::new(Arc::new(sink), budget, 10_000, AttributeSharing::off())
}

/// Runs every trigger sample through `forwarder`, checking each is answered unchanged, within the budget, and
/// spilled as a replayable line. Call it on tokio's paused clock (`#[tokio::test(start_paused = true)]`): the
/// forwarder's timers are then virtual time and "within the budget" is exact, with no margin for the machine's
/// load. The endpoints it is used with are loopback servers in the test's own runtime or a closed port, whose
/// answers are ready before the clock moves on.
pub async fn assert_fails_open(forwarder: &TriggerForwarder, budget: Duration) {
    let schema = validator("cognito-auth-event.v1.json");
    for (source, kind, ..) in EXPECTED {
        let input = trigger_sample(source);
        let metrics = Metrics::new();
        let started = tokio::time::Instant::now();
        let (response, outcome) = forwarder.forward(input.clone(), Utc::now(), &metrics).await;
        let took = started.elapsed();
        assert!(took <= budget, "{source}: took {took:?}, budget {budget:?}");
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

pub const BOB: &str = "4f3e2d1c-0000-4000-8000-000000000002";

/// The Kinesis event of a readable subscription source (the format of `events/auth/src/*.json`).
pub fn log_event_of(source: &Value) -> Value {
    let sample = auth_analytics::samples::to_sample_source(source).unwrap();
    devtools::events::sample_event(&sample).unwrap()
}

/// A readable source of one DATA_MESSAGE record per entry list.
pub fn log_source(records: &[Vec<Value>]) -> Value {
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
pub fn activity(
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

#[derive(Debug)]
pub struct LogHarness {
    pub aws: LocalAws,
    pub stream: String,
    pub bucket: String,
}

impl LogHarness {
    pub async fn new() -> Self {
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

    pub fn config(&self, extra: &[(&str, &str)]) -> LogConfig {
        let mut e = env(&[
            (cfg::ENV_OUTPUT_STREAM, self.stream.as_str()),
            (cfg::ENV_DEAD_LETTER_BUCKET, self.bucket.as_str()),
        ]);
        e.extend(env(extra));
        LogConfig::from_env(&e).unwrap()
    }

    pub fn forwarder(&self, extra: &[(&str, &str)]) -> LogForwarder {
        LogForwarder::connect(&self.config(extra), &self.aws.sdk, self.aws.s3.clone())
    }

    pub async fn run(&self, forwarder: &LogForwarder, event: &Value) -> (Vec<String>, Metrics) {
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

    pub async fn dead_letters(&self) -> Vec<Value> {
        self.aws
            .read_objects(&self.bucket, "dead-letter/")
            .await
            .unwrap()
            .into_iter()
            .map(|(_, body)| serde_json::from_slice(&body).unwrap())
            .collect()
    }
}

pub fn seq(event: &Value, i: usize) -> String {
    event["Records"][i]["kinesis"]["sequenceNumber"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A fresh user pool in moto and its id.
pub async fn user_pool(aws: &LocalAws) -> (aws_sdk_cognitoidentityprovider::Client, String) {
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
pub async fn create_user(
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

pub fn exporter(aws: &LocalAws, pool: &str, stream: &str, rate: f64) -> SnapshotExporter {
    SnapshotExporter::new(
        aws_sdk_cognitoidentityprovider::Client::new(&aws.sdk),
        Producer::new(
            Arc::new(KinesisSink::new(aws.kinesis.clone(), stream)),
            None,
            bridge_core::retry::Backoff::default(),
        ),
        pool,
        rate,
        AttributeSharing::off(),
    )
}

/// Kinesis through the real SDK, except that the first attempt of every entry is throttled, which moto never
/// does (DESIGN.md §4).
#[derive(Debug)]
pub struct ThrottleFirst {
    pub inner: KinesisSink,
    pub calls: std::sync::atomic::AtomicUsize,
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
