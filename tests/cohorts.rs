//! End-to-end tests of the cohort function: histories written by the real active-users rollup (its library, over
//! sign-ins on chosen days) into a rollup table on moto server, then the real `cohorts` binary behind a local Lambda
//! Runtime API, invoked with EventBridge scheduled events. The records on the cohort stream must be exactly the
//! membership changes as of each run's day, in Amplitude's Kinesis cohort payload; a re-run puts nothing; a run
//! that put its records but did not record them puts the same records (same message ids) again.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

use std::collections::BTreeMap;
use std::sync::Arc;

use active_users::activity::Definition;
use active_users::history::{Days, Dims, History};
use active_users::store::RollupStore;
use bridge_core::Deadline;
use bridge_core::pipeline::Flow as _;
use bridge_core::telemetry::Metrics;
use chrono::NaiveDate;
use cohorts::definition::{self, Cohort};
use cohorts::payload::{MAX_RECORD_BYTES, MAX_USERS_PER_RECORD, message_id};
use devtools::emulator::{LocalAws, unique_name};
use devtools::esm::{InvokeOutcome, Invoker as _};
use devtools::runtime_api::LocalFunction;
use devtools::synthetic::{Feed, auth_event_on, sub};
use serde_json::{Value, json};

/// The cohorts of the first test: the defaults (new, active and dormant signed-in users, paying installs).
const DEFINITIONS: &str = definition::DEFAULT_DEFINITIONS;

fn nov(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
}

/// A rollup table with the rollup over it, a cohort stream, and the feed of the auth event stream's shard.
struct Setup {
    aws: LocalAws,
    table: String,
    stream: String,
    store: RollupStore,
    rollup: active_users::ActiveUsers,
    feed: Feed,
    app_feed: Feed,
    /// Records of the cohort stream already looked at.
    seen: usize,
}

async fn setup() -> Setup {
    let aws = LocalAws::from_env().await.unwrap();
    let (table, bucket, stream) = (
        unique_name("rollup"),
        unique_name("dl"),
        unique_name("cohorts"),
    );
    aws.create_rollup_table(&table).await.unwrap();
    aws.create_bucket(&bucket).await.unwrap();
    aws.create_stream(&stream, 1).await.unwrap();
    let (store, rollup, _) = devtools::synthetic::local_rollup(
        &aws,
        &table,
        &bucket,
        vec!["platform".into(), "app_version".into(), "locale".into()],
    );
    Setup {
        aws,
        table,
        stream,
        store,
        rollup,
        feed: Feed::new("auth-events", 0),
        app_feed: Feed::new("app-events", 0),
        seen: 0,
    }
}

impl Setup {
    /// Sign-ins of user `u` on each day, through the rollup.
    async fn sign_ins(&mut self, days: &[(u32, NaiveDate)]) {
        let docs: Vec<Value> = days
            .iter()
            .map(|(u, d)| {
                auth_event_on(
                    &format!("si-{u}-{d}"),
                    "_userauth.sign_in",
                    "trigger",
                    *u,
                    *d,
                    3_600,
                )
            })
            .collect();
        let response = self
            .rollup
            .process(self.feed.event(&docs), Deadline::none(), &Metrics::new())
            .await;
        assert!(response.batch_item_failures.is_empty());
    }

    /// A purchase by install `install` on each day, through the rollup (the app event stream's lane).
    async fn purchases(&mut self, days: &[(&str, NaiveDate)]) {
        let docs: Vec<Value> = days.iter().map(|(i, d)| purchase(i, *d)).collect();
        let response = self
            .rollup
            .process(
                self.app_feed.event(&docs),
                Deadline::none(),
                &Metrics::new(),
            )
            .await;
        assert!(response.batch_item_failures.is_empty());
    }

    /// The cohort binary over this table and stream.
    async fn function(&self, definitions: Option<&str>, properties: &str) -> Arc<LocalFunction> {
        let mut env: Vec<(String, String)> = vec![
            ("ROLLUP_TABLE_NAME".into(), self.table.clone()),
            ("COHORT_STREAM_NAME".into(), self.stream.clone()),
            ("COHORT_USER_PROPERTIES".into(), properties.into()),
            ("COHORT_SCAN_SEGMENTS".into(), "3".into()),
        ];
        // Unset: the defaults.
        if let Some(d) = definitions {
            env.push(("COHORT_DEFINITIONS".into(), d.into()));
        }
        LocalFunction::start(
            "cohorts",
            devtools::deployment::binary_dir(&e2e::root()).join("cohorts"),
            env,
            std::time::Duration::from_secs(300),
        )
        .await
        .unwrap()
    }

    /// The records put since the last call: (partition key, bytes with the key, document).
    async fn new_records(&mut self) -> Vec<(String, usize, Value)> {
        let all = self.aws.read_stream(&self.stream).await.unwrap();
        let out = all[self.seen..]
            .iter()
            .map(|r| {
                let data = r.data().as_ref();
                let key = r.partition_key().unwrap_or_default();
                (
                    key.to_owned(),
                    data.len() + key.len(),
                    serde_json::from_slice(data).unwrap(),
                )
            })
            .collect();
        self.seen = all.len();
        out
    }

    /// Deletes every membership item: what a run that put its records and then died before recording them
    /// leaves behind (here: every run so far).
    async fn forget_memberships(&self) {
        let items = self
            .aws
            .dynamodb
            .scan()
            .table_name(&self.table)
            .filter_expression("begins_with(pk, :c)")
            .expression_attribute_values(
                ":c",
                aws_sdk_dynamodb::types::AttributeValue::S("co#".into()),
            )
            .send()
            .await
            .unwrap()
            .items
            .unwrap_or_default();
        assert!(!items.is_empty());
        for item in items {
            self.aws
                .dynamodb
                .delete_item()
                .table_name(&self.table)
                .key("pk", item["pk"].clone())
                .key("sk", item["sk"].clone())
                .send()
                .await
                .unwrap();
        }
    }
}

/// A `_monetization.purchase` of install `install` (no user id) on `day`, as the app event forwarder writes it.
fn purchase(install: &str, day: NaiveDate) -> Value {
    let ts = format!("{}T12:00:00.000Z", day.format("%Y-%m-%d"));
    let id = format!("purchase-{install}-{day}");
    json!({"schema": "app-event/v1", "event_id": id, "type": "track", "event": "_monetization.purchase",
           "anonymous_id": install, "user_id": null, "timestamp": ts, "received_at": ts, "sent_at": null,
           "clock": {"time_source": "client", "original_timestamp": ts, "offset_ms": null},
           "session": null,
           "context": {"platform": "web", "app_version": "1.4.0", "app_build": null, "app_id": null, "app_package": null,
                       "sdk": null, "identity_pool_id": null, "locale": "en-US", "device_id": null, "os": null,
                       "os_version": null, "model": null, "make": null, "session_id": null, "session_start": null,
                       "input_shape": "ours", "anonymous_id_source": "event"},
           "properties": {"_currency": "USD", "_product_id": "gems-100", "_item_price": 1.99, "_quantity": 1},
           "traits": {},
           "source": {"stream_arn": "arn:aws:kinesis:us-east-1:123456789012:stream/app-events-source",
                      "shard_id": "shardId-000000000000", "sequence_number": "1", "sub_sequence": 0}})
}

/// A scheduled event of EventBridge at `time`.
fn scheduled(time: &str) -> Value {
    json!({"version": "0", "id": "89d1a02d-5ec7-412e-82f5-13505f849b41", "detail-type": "Scheduled Event",
           "source": "aws.events", "account": "123456789012", "time": time, "region": "us-east-1",
           "resources": ["arn:aws:events:us-east-1:123456789012:rule/cohorts"], "detail": {}})
}

async fn invoke(function: &LocalFunction, event: Value) -> Value {
    match function.invoke(event).await {
        InvokeOutcome::Response(body) => serde_json::from_slice(&body).unwrap(),
        other => panic!("{other:?}"),
    }
}

fn cohort(definitions: &str, name: &str) -> Cohort {
    definition::parse(definitions)
        .unwrap()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap()
}

/// The platform the generated auth events of user `u` carry.
fn platform(u: u32) -> &'static str {
    if u.is_multiple_of(3) {
        "ios"
    } else {
        "android"
    }
}

/// The record a change must be: cohort `name` of [`DEFINITIONS`], `users` (id, properties) joining or leaving as
/// of `as_of`, computed at `computed_time`, in user id order; leaves carry no properties.
fn record(
    name: &str,
    in_cohort: bool,
    mut users: Vec<(String, Value)>,
    as_of: NaiveDate,
    computed_time: &str,
) -> (String, Value) {
    let c = cohort(DEFINITIONS, name);
    users.sort_by(|a, b| a.0.cmp(&b.0));
    let ids: Vec<cohorts::payload::User> = users
        .iter()
        .map(|(id, _)| cohorts::payload::User {
            user_id: id.clone(),
            user_properties: BTreeMap::new(),
        })
        .collect();
    let users: Vec<Value> = users
        .into_iter()
        .map(|(id, p)| json!({"user_id": id, "user_properties": if in_cohort { p } else { json!({}) }}))
        .collect();
    (
        c.id(),
        json!({"cohort_name": name, "cohort_id": c.id(), "in_cohort": in_cohort, "computed_time": computed_time,
               "message_id": message_id(&c.id(), as_of, computed_time, in_cohort, &ids), "users": users}),
    )
}

/// [`record`] of signed-in users `users` (their subs, their platform).
fn expected(
    name: &str,
    in_cohort: bool,
    users: &[u32],
    as_of: NaiveDate,
    computed_time: &str,
) -> (String, Value) {
    let users = users
        .iter()
        .map(|u| (sub(*u), json!({"platform": platform(*u)})))
        .collect();
    record(name, in_cohort, users, as_of, computed_time)
}

/// [`record`] of paying installs (platform `web`).
fn paying(
    in_cohort: bool,
    installs: &[&str],
    as_of: NaiveDate,
    computed_time: &str,
) -> (String, Value) {
    let users = installs
        .iter()
        .map(|i| ((*i).to_owned(), json!({"platform": "web"})))
        .collect();
    record("paying_30d", in_cohort, users, as_of, computed_time)
}

fn without_sizes(records: &[(String, usize, Value)]) -> Vec<(String, Value)> {
    records
        .iter()
        .map(|(k, _, v)| (k.clone(), v.clone()))
        .collect()
}

/// Members as of Nov 20, a re-run that puts nothing, and a week later users who leave and users who join; then a
/// lost membership write: the same records again, with the same message ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_then_only_changes_and_a_rerun_puts_nothing() {
    let mut s = setup().await;
    let oct20 = NaiveDate::from_ymd_opt(2026, 10, 20).unwrap();
    // 1: Nov 1 only; 2: Nov 10 and 19; 3: Nov 19 (first); 4: Oct 20 only.
    s.sign_ins(&[
        (1, nov(1)),
        (2, nov(10)),
        (2, nov(19)),
        (3, nov(19)),
        (4, oct20),
    ])
    .await;
    // Installs a (Oct 25) and b (Nov 15) made a purchase; c only on Nov 21, after the first as-of day.
    let oct25 = NaiveDate::from_ymd_opt(2026, 10, 25).unwrap();
    s.purchases(&[
        ("install-a", oct25),
        ("install-b", nov(15)),
        ("install-c", nov(21)),
    ])
    .await;
    let function = s.function(None, "platform").await;

    let first = invoke(&function, scheduled("2026-11-20T06:00:00Z")).await;
    assert_eq!(first["as_of"], "2026-11-20", "{first}");
    assert_eq!(first["histories"], 7, "{first}");
    let t = "1795154400";
    // Window of new and active: Nov 14..=20; of dormant: Nov 7..=20.
    assert_eq!(
        without_sizes(&s.new_records().await),
        vec![
            expected("new_7d", true, &[3], nov(20), t),
            expected("active_7d", true, &[2, 3], nov(20), t),
            expected("dormant_14d", true, &[1, 4], nov(20), t),
            // Window of paying: Oct 22..=Nov 20 (install c's purchase lies after the as-of day).
            paying(true, &["install-a", "install-b"], nov(20), t),
        ]
    );

    // The same event again, and a later run of the same day: nothing changed, nothing is put.
    let again = invoke(&function, scheduled("2026-11-20T06:00:00Z")).await;
    assert_eq!(again["cohorts"][1]["members"], 2, "{again}");
    invoke(&function, scheduled("2026-11-20T07:00:00Z")).await;
    assert!(s.new_records().await.is_empty());

    // A week on: 1 signs in again on Nov 24, 5 for the first time on Nov 26.
    s.sign_ins(&[(1, nov(24)), (5, nov(26))]).await;
    let later = invoke(&function, scheduled("2026-11-27T06:00:00Z")).await;
    let t = "1795759200";
    let week_later = vec![
        expected("new_7d", false, &[3], nov(27), t),
        expected("new_7d", true, &[5], nov(27), t),
        expected("active_7d", false, &[2, 3], nov(27), t),
        expected("active_7d", true, &[1, 5], nov(27), t),
        expected("dormant_14d", false, &[1], nov(27), t),
        // Window Oct 29..=Nov 27: a's purchase is out of it, c's in.
        paying(false, &["install-a"], nov(27), t),
        paying(true, &["install-c"], nov(27), t),
    ];
    assert_eq!(without_sizes(&s.new_records().await), week_later);
    let joined: Vec<u64> = later["cohorts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["joined"].as_u64().unwrap() * 10 + c["left"].as_u64().unwrap())
        .collect();
    assert_eq!(joined, vec![11, 22, 1, 11], "{later}");
    assert_eq!(
        function.metrics().get(cohorts::run::METRIC_RECORDS_PUT),
        Some(&11)
    );

    // The run put its records but its membership writes were lost (a crash between the two): the next run of the
    // same event puts every member as a join again, with the ids a consumer has seen if the batch is the same.
    s.forget_memberships().await;
    invoke(&function, scheduled("2026-11-27T06:00:00Z")).await;
    let replay = without_sizes(&s.new_records().await);
    assert_eq!(
        replay,
        vec![
            expected("new_7d", true, &[5], nov(27), t),
            expected("active_7d", true, &[1, 5], nov(27), t),
            expected("dormant_14d", true, &[4], nov(27), t),
            paying(true, &["install-b", "install-c"], nov(27), t),
        ]
    );
    assert_eq!(replay[0].1["message_id"], week_later[1].1["message_id"]);
    assert_eq!(replay[1].1["message_id"], week_later[3].1["message_id"]);
    function.stop().await;
}

/// 1,200 users whose histories carry eight long dimension values: with all eight allowed the byte cap cuts the
/// records, without properties the user cap (1,000) does; either way every user is in exactly one record, whole,
/// in user id order, and only the allowed properties are there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_stay_under_the_record_limit_and_the_user_cap() {
    const USERS: usize = 1_200;
    let mut s = setup().await;
    let scope = "pool=us-east-1_EXAMPLE".to_owned();
    let key = (Definition::Authenticating, scope);
    for i in 0..USERS {
        let mut days = Days::default();
        days.set(nov(19));
        let mut h = History::default();
        h.days.insert(key.clone(), days);
        h.first.insert(key.clone(), nov(19));
        h.dims.insert(
            key.clone(),
            Dims {
                day: Some(nov(19)),
                values: (0..8)
                    .map(|p| format!("dim{p}={}", char::from(b'a' + p).to_string().repeat(120)))
                    .chain(std::iter::once("secret=not-allowed".to_owned()))
                    .collect(),
            },
        );
        s.store
            .write_history(&("auth", format!("user-{i:05}")), &h)
            .await
            .unwrap();
    }
    let allowed: Vec<String> = (0..8).map(|p| format!("dim{p}")).collect();
    let with_properties = s
        .function(
            Some("wide=active:authenticating_users:7"),
            &allowed.join(","),
        )
        .await;
    invoke(&with_properties, json!({"as_of": "2026-11-20"})).await;
    let wide = s.new_records().await;
    let bare = s
        .function(Some("bare=active:authenticating_users:7"), "")
        .await;
    invoke(&bare, json!({"as_of": "2026-11-20"})).await;
    let narrow = s.new_records().await;
    assert_eq!(
        narrow
            .iter()
            .map(|(_, _, r)| r["users"].as_array().unwrap().len())
            .collect::<Vec<_>>(),
        vec![MAX_USERS_PER_RECORD, USERS - MAX_USERS_PER_RECORD]
    );
    assert!(wide.len() >= 2, "{} records", wide.len());
    for (records, properties) in [(&wide, allowed.len()), (&narrow, 0)] {
        let mut all = Vec::new();
        for (key, bytes, r) in records.iter() {
            assert_eq!(key, r["cohort_id"].as_str().unwrap());
            assert!(*bytes <= MAX_RECORD_BYTES, "{bytes} bytes");
            let users = r["users"].as_array().unwrap();
            assert!(users.len() <= MAX_USERS_PER_RECORD);
            for u in users {
                let p = u["user_properties"].as_object().unwrap();
                assert_eq!(p.len(), properties, "{u}");
                assert!(p.get("secret").is_none());
                if properties > 0 {
                    assert_eq!(p["dim0"].as_str().unwrap(), "a".repeat(120));
                }
                all.push(u["user_id"].as_str().unwrap().to_owned());
            }
        }
        let expected: Vec<String> = (0..USERS).map(|i| format!("user-{i:05}")).collect();
        assert_eq!(all, expected, "every user once, in order");
    }
    // The byte cap binds: a wide record is fuller than the cap less one more user.
    let (_, bytes, r) = &wide[0];
    let one = serde_json::to_vec(&r["users"][0]).unwrap().len();
    assert!(bytes + one + 1 > MAX_RECORD_BYTES, "{bytes}");
    assert!(r["users"].as_array().unwrap().len() < MAX_USERS_PER_RECORD);
    with_properties.stop().await;
    bare.stop().await;
}

/// A definition the function cannot compute stops it at cold start, naming the variable and the entry.
#[test]
fn a_bad_definition_stops_the_function_at_cold_start() {
    let out =
        std::process::Command::new(devtools::deployment::binary_dir(&e2e::root()).join("cohorts"))
            .env("ROLLUP_TABLE_NAME", "t")
            .env("COHORT_STREAM_NAME", "s")
            .env(
                "COHORT_DEFINITIONS",
                "ok=active:authenticating_users:7,bad=often:authenticating_users:7",
            )
            .env_remove("AWS_LAMBDA_RUNTIME_API")
            .output()
            .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("COHORT_DEFINITIONS"), "{err}");
    assert!(err.contains("bad=often"), "{err}");
}
