//! End-to-end tests of the active-users rollup: the real rollup, through the real AWS SDK, against moto server
//! (DynamoDB, S3). A generated month of auth and app events for a few thousand users, with duplicates,
//! redeliveries and late arrivals, must give exact daily, monthly and new-user counts, exact event counters, and
//! rolling estimates within the sketch's stated error; the two definitions of active never mix.

#![allow(clippy::unwrap_used, reason = "test helpers fail loudly")]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use active_users::ActiveUsers;
use active_users::activity::Definition;
use active_users::handler::{METRIC_MARKERS_WRITTEN, METRIC_SKETCHES_WRITTEN, METRIC_TRANSACTIONS};
use active_users::plan::{self, active_attr, new_attr};
use active_users::sketch::{RELATIVE_STANDARD_ERROR, Sketch};
use active_users::store::RollupStore;
use bridge_core::Deadline;
use bridge_core::blob::S3BlobStore;
use bridge_core::dead_letter::DeadLetterWriter;
use bridge_core::kinesis_event::RawKinesisEvent;
use bridge_core::pipeline::Flow as _;
use bridge_core::telemetry::Metrics;
use chrono::NaiveDate;
use devtools::emulator::{LocalAws, unique_name};
use e2e::{assert_valid, validator};
use serde_json::{Value, json};

// Scale: moto's TransactWriteItems deep-copies the whole table once per item of the transaction, so its cost
// grows with items x table size (150 users took 118 s here, 60 users about 20 s). DynamoDB has no such cost; the
// logic under test is the same at any size. A full-size run needs an emulator without that copy.
const POOL: &str = "us-east-1_EXAMPLE";
const CLIENT: &str = "exampleclient1";
const USERS: u32 = 60;
/// Users with app sessions and no sign-in at all: session users, never authenticating users.
const APP_ONLY_USERS: u32 = 10;
const DAYS: u32 = 30;

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
}

fn sub(u: u32) -> String {
    format!("{u:08x}-0000-4000-8000-000000000000")
}

struct Month {
    /// (day, event) in the order they happened.
    events: Vec<(u32, Value)>,
    /// Authenticating users per day.
    auth_active: BTreeMap<u32, BTreeSet<u32>>,
    /// Session users and devices per day.
    session_users: BTreeMap<u32, BTreeSet<u32>>,
    session_devices: BTreeMap<u32, BTreeSet<String>>,
    /// Distinct sign-in events and failures per day.
    sign_ins: BTreeMap<u32, u64>,
    failures: BTreeMap<u32, u64>,
}

/// An auth event as the forwarders write it: from a trigger, or (failures) from the user-activity log.
fn auth_event(id: &str, kind: &str, origin: &str, u: u32, d: u32, second: u32) -> Value {
    let ts = format!(
        "2026-11-{d:02}T{:02}:{:02}:{:02}Z",
        second / 3600,
        second / 60 % 60,
        second % 60
    );
    let mut e = json!({"schema": "cognito-auth-event/v1", "event_id": id, "type": kind, "timestamp": ts,
           "received_at": null, "source": null, "origin": origin, "user_pool_id": POOL, "client_id": CLIENT,
           "user_sub": sub(u), "context": {"platform": if u.is_multiple_of(3) { "ios" } else { "android" }, "locale": "en-US"}});
    if origin == "trigger" {
        let source = match kind {
            "_userauth.sign_up" => "PostConfirmation_ConfirmSignUp",
            "_userauth.sign_in_attempt" => "PreAuthentication_Authentication",
            "_userauth.sign_in" => "PostAuthentication_Authentication",
            _ => "TokenGeneration_RefreshTokens",
        };
        e["trigger_source"] = source.into();
        e["trigger_version"] = "1".into();
    } else {
        e["received_at"] = ts.into();
        e["source"] = json!({"stream_arn": "arn:aws:kinesis:us-east-1:123456789012:stream/user-activity",
                             "shard_id": "shardId-000000000000", "sequence_number": "1", "sub_sequence": 0});
        e["activity"] = json!({"event_type": "SignIn", "event_response": "Fail", "cognito_event_id": null,
                               "log_event_id": id});
    }
    e
}

fn app_event(id: &str, u: u32, device: &str, d: u32, second: u32) -> Value {
    let ts = format!(
        "2026-11-{d:02}T{:02}:{:02}:{:02}.000Z",
        second / 3600,
        second / 60 % 60,
        second % 60
    );
    json!({"schema": "app-event/v1", "event_id": id, "type": "track", "event": "_session.start",
           "anonymous_id": null, "user_id": format!("user-{u}"), "timestamp": ts, "received_at": ts, "sent_at": null,
           "clock": {"original_timestamp": ts, "offset_ms": null},
           "context": {"platform": "web", "app_version": "1.4.0", "locale": "en-US", "device_id": device, "os": null,
                       "os_version": null, "model": null, "make": null, "session_id": id, "session_start": ts,
                       "input_shape": "ours"},
           "properties": {}, "traits": {},
           "source": {"stream_arn": "arn:aws:kinesis:us-east-1:123456789012:stream/app-events-source",
                      "shard_id": "shardId-000000000000", "sequence_number": "1", "sub_sequence": 0}})
}

fn generate() -> Month {
    let mut rng = fastrand::Rng::with_seed(20_261_101);
    let mut m = Month {
        events: Vec::new(),
        auth_active: BTreeMap::new(),
        session_users: BTreeMap::new(),
        session_devices: BTreeMap::new(),
        sign_ins: BTreeMap::new(),
        failures: BTreeMap::new(),
    };
    let mut n = 0u64;
    let mut next_id = |prefix: &str| {
        n += 1;
        // Event ids are 32 hex digits; the prefix keeps event kinds apart.
        format!("{prefix}{n:030x}")
    };
    for u in 0..USERS + APP_ONLY_USERS {
        let active_days: BTreeSet<u32> = (0..rng.u32(1..=6)).map(|_| rng.u32(1..=DAYS)).collect();
        for (k, &d) in active_days.iter().enumerate() {
            let second = rng.u32(0..86_000);
            if u < USERS {
                if k == 0 {
                    m.events.push((
                        d,
                        auth_event(&next_id("a1"), "_userauth.sign_up", "trigger", u, d, second),
                    ));
                }
                m.events.push((
                    d,
                    auth_event(
                        &next_id("a2"),
                        "_userauth.sign_in_attempt",
                        "trigger",
                        u,
                        d,
                        second,
                    ),
                ));
                if rng.u8(0..10) == 0 {
                    m.events.push((
                        d,
                        auth_event(
                            &next_id("a3"),
                            "_userauth.auth_fail",
                            "activity_log",
                            u,
                            d,
                            second,
                        ),
                    ));
                    *m.failures.entry(d).or_default() += 1;
                }
                // A sign-in, or on some days only a token refresh: both make an authenticating user.
                if rng.bool() || k == 0 {
                    m.events.push((
                        d,
                        auth_event(
                            &next_id("a4"),
                            "_userauth.sign_in",
                            "trigger",
                            u,
                            d,
                            second + 1,
                        ),
                    ));
                    *m.sign_ins.entry(d).or_default() += 1;
                } else {
                    m.events.push((
                        d,
                        auth_event(
                            &next_id("a5"),
                            "_userauth.token_refresh",
                            "trigger",
                            u,
                            d,
                            second + 1,
                        ),
                    ));
                }
                m.auth_active.entry(d).or_default().insert(u);
            }
            // Some users (and the app-only ones) use the app: one or two devices.
            if u.is_multiple_of(5) || u >= USERS {
                let device = format!("device-{u}-{}", rng.u8(0..2));
                m.events
                    .push((d, app_event(&next_id("b1"), u, &device, d, second + 2)));
                m.session_users.entry(d).or_default().insert(u);
                m.session_devices.entry(d).or_default().insert(device);
            }
        }
    }
    m.events
        .sort_by_key(|(d, e)| (*d, e["timestamp"].as_str().unwrap().to_owned()));
    m
}

/// Batches as the stream would deliver them: mostly in order, 3% of the events three days late, 5% twice.
fn deliveries(month: &Month) -> Vec<Vec<Value>> {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut by_day: BTreeMap<u32, Vec<Value>> = BTreeMap::new();
    for (d, e) in &month.events {
        let arrives = if rng.u8(0..100) < 3 { d + 3 } else { *d };
        let list = by_day.entry(arrives).or_default();
        list.push(e.clone());
        if rng.u8(0..100) < 5 {
            list.push(e.clone());
        }
    }
    by_day
        .into_values()
        .flat_map(|events| {
            events
                .chunks(500)
                .map(<[Value]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn kinesis_event(docs: &[Value]) -> RawKinesisEvent {
    let payloads: Vec<(String, Value)> = docs
        .iter()
        .map(|d| {
            (
                d["user_sub"].as_str().unwrap_or("app").to_owned(),
                d.clone(),
            )
        })
        .collect();
    let event = devtools::events::event_from_payloads(
        &devtools::events::example_stream_arn("auth-events"),
        &payloads,
        1_700_000_100.0,
    );
    serde_json::from_value(event).unwrap()
}

/// Each series of the chart is one line with a point per day, plus its legend swatch, and is named in the legend.
fn assert_chart_holds_every_series(svg: &str, days: usize) {
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
    for (name, color) in devtools::report::SERIES {
        let stroke = format!("stroke=\"#{:02X}{:02X}{:02X}\"", color.0, color.1, color.2);
        let lines: Vec<&str> = svg
            .split('<')
            .filter(|e| e.starts_with("polyline") && e.contains(&stroke))
            .collect();
        assert_eq!(lines.len(), 2, "{name}: the line and its legend swatch");
        let points = lines
            .iter()
            .map(|l| {
                l.split("points=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
                    .split_whitespace()
                    .count()
            })
            .max()
            .unwrap();
        assert_eq!(points, days, "{name}: one point per day");
        assert!(svg.contains(name), "{name} is not in the legend");
    }
}

/// A rollup with a fresh table and dead-letter bucket on moto: (emulator, store, rollup, bucket).
async fn rollup_on_moto(dimensions: Vec<String>) -> (LocalAws, RollupStore, ActiveUsers, String) {
    let aws = LocalAws::from_env().await.unwrap();
    let (table, bucket) = (unique_name("rollup"), unique_name("dl"));
    aws.create_rollup_table(&table).await.unwrap();
    aws.create_bucket(&bucket).await.unwrap();
    let store = RollupStore::new(
        aws_sdk_dynamodb::Client::new(&aws.sdk),
        &table,
        Duration::from_secs(8 * 86_400),
    );
    let rollup = ActiveUsers::new(
        store.clone(),
        DeadLetterWriter::new(Arc::new(S3BlobStore::new(aws.s3.clone())), &bucket),
        dimensions,
    );
    (aws, store, rollup, bucket)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_of_events_gives_exact_counts_despite_repeats_redeliveries_and_late_arrivals() {
    let (_, store, rollup, _) =
        rollup_on_moto(vec!["platform".to_owned(), "locale".to_owned()]).await;

    let month = generate();
    let (auth_schema, app_schema) = (
        validator("cognito-auth-event.v1.json"),
        validator("app-event.v1.json"),
    );
    for (_, e) in &month.events {
        if e["schema"] == "app-event/v1" {
            assert_valid(&app_schema, e);
        } else {
            assert_valid(&auth_schema, e);
        }
    }
    let batches = deliveries(&month);
    let metrics = Metrics::new();
    let mut delivered = 0u64;
    for (i, docs) in batches.iter().enumerate() {
        // Every seventh batch is delivered twice, as after a function error.
        for _ in 0..if i % 7 == 3 { 2 } else { 1 } {
            let response = rollup
                .process(kinesis_event(docs), Deadline::none(), &metrics)
                .await;
            assert!(response.batch_item_failures.is_empty(), "batch {i}");
            delivered += docs.len() as u64;
        }
    }
    let (markers, transactions, sketches) = (
        metrics.get(METRIC_MARKERS_WRITTEN),
        metrics.get(METRIC_TRANSACTIONS),
        metrics.get(METRIC_SKETCHES_WRITTEN),
    );
    println!(
        "{} events ({delivered} delivered, repeats and redeliveries included) in {} batches: {markers} markers in \
         {transactions} transactions, {sketches} sketch writes: {:.3} DynamoDB writes per delivered event",
        month.events.len(),
        batches.len(),
        (transactions + sketches) as f64 / delivered as f64
    );

    let pool = format!("pool={POOL}");
    let client = format!("{pool}/client={CLIENT}");
    let mut first_day: BTreeMap<u32, u32> = BTreeMap::new();
    for (d, users) in &month.auth_active {
        for u in users {
            first_day.entry(*u).or_insert(*d);
        }
    }
    for d in 1..=DAYS {
        let label = plan::day_label(day(d));
        for scope in [&pool, &client] {
            let c = store.counters(scope, &label).await.unwrap();
            let get = |k: &str| c.get(k).copied().unwrap_or(0);
            let auth = Definition::Authenticating;
            assert_eq!(
                get(&active_attr(auth)),
                month.auth_active.get(&d).map_or(0, |s| s.len()) as i64,
                "{scope} {label} authenticating users"
            );
            // 7-day retention, Pinpoint's definition: active on d and again within d+1..d+7.
            let retained = month.auth_active.get(&d).map_or(0, |users| {
                users
                    .iter()
                    .filter(|u| {
                        (d + 1..=d + 7)
                            .any(|r| month.auth_active.get(&r).is_some_and(|s| s.contains(u)))
                    })
                    .count()
            }) as i64;
            assert_eq!(
                get(&plan::retained_attr(auth)),
                retained,
                "{scope} {label} retained"
            );
            let new = first_day.values().filter(|f| **f == d).count() as i64;
            assert_eq!(get(&new_attr(auth)), new, "{scope} {label} new users");
            assert_eq!(
                get("trigger.sign_ins"),
                month.sign_ins.get(&d).copied().unwrap_or(0) as i64,
                "{label} sign-ins"
            );
            assert_eq!(
                get("activity_log.auth_failures"),
                month.failures.get(&d).copied().unwrap_or(0) as i64,
                "{label} failures"
            );
            // App sessions never count as authenticating users, and the other way round.
            assert_eq!(get(&active_attr(Definition::SessionUsers)), 0);
        }
        let app = store.counters("app", &label).await.unwrap();
        let get = |k: &str| app.get(k).copied().unwrap_or(0);
        assert_eq!(
            get(&active_attr(Definition::SessionUsers)),
            month.session_users.get(&d).map_or(0, |s| s.len()) as i64,
            "{label} session users"
        );
        assert_eq!(
            get(&active_attr(Definition::SessionDevices)),
            month.session_devices.get(&d).map_or(0, |s| s.len()) as i64,
            "{label} session devices"
        );
        assert_eq!(get(&active_attr(Definition::Authenticating)), 0);
    }
    let month_users: BTreeSet<u32> = month.auth_active.values().flatten().copied().collect();
    let c = store.counters(&pool, "2026-11").await.unwrap();
    assert_eq!(
        c[&active_attr(Definition::Authenticating)],
        month_users.len() as i64,
        "month-to-date authenticating users"
    );

    // Rolling 30 days from the daily sketches: within three standard errors of the exact count.
    let mut days = Vec::new();
    for d in 1..=DAYS {
        let key = plan::sketch_item(Definition::Authenticating, &pool, "all", day(d));
        if let (Some(s), _) = store.read_sketch(&key).await.unwrap() {
            days.push(s);
        }
    }
    let estimate = Sketch::union(&days).estimate();
    let exact = month_users.len() as f64;
    println!("30-day authenticating users: exact {exact}, estimate {estimate:.0}");
    assert!((estimate - exact).abs() / exact < 3.0 * RELATIVE_STANDARD_ERROR);
    // A dimension's sketch holds only its users.
    let ios: BTreeSet<u32> = month_users
        .iter()
        .copied()
        .filter(|u| u.is_multiple_of(3))
        .collect();
    let mut ios_days = Vec::new();
    for d in 1..=DAYS {
        let key = plan::sketch_item(Definition::Authenticating, &pool, "platform=ios", day(d));
        if let (Some(s), _) = store.read_sketch(&key).await.unwrap() {
            ios_days.push(s);
        }
    }
    // The report: the same exact counts per day, and a chart that holds each series with a point per day.
    let (rows, month_to_date) =
        devtools::report::rows(&store, Definition::Authenticating, &pool, day(1), day(DAYS))
            .await
            .unwrap();
    assert_eq!(month_to_date, month_users.len() as i64);
    for r in &rows {
        let d = r.day.format("%d").to_string().parse::<u32>().unwrap();
        assert_eq!(
            r.active,
            month.auth_active.get(&d).map_or(0, |s| s.len()) as i64
        );
        assert_eq!(
            r.event("sign_ins"),
            month.sign_ins.get(&d).copied().unwrap_or(0) as i64
        );
    }
    let last = rows.last().unwrap();
    assert!((last.rolling30 - exact).abs() / exact < 3.0 * RELATIVE_STANDARD_ERROR);
    let svg = devtools::report::chart_svg("pool", &rows).unwrap();
    assert_chart_holds_every_series(&svg, rows.len());

    let ios_estimate = Sketch::union(&ios_days).estimate();
    assert!(
        (ios_estimate - ios.len() as f64).abs() / (ios.len() as f64)
            < 3.0 * RELATIVE_STANDARD_ERROR
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_that_are_not_analytics_events_are_dead_lettered_and_the_rest_counted() {
    let (aws, store, rollup, bucket) = rollup_on_moto(Vec::new()).await;
    let docs = vec![
        auth_event("e1", "_userauth.sign_in", "trigger", 1, 3, 10),
        json!({"schema": "cognito-sync-change/v1", "event_id": "x"}),
        auth_event("e2", "_userauth.sign_in", "trigger", 2, 3, 20),
    ];
    let metrics = Metrics::new();
    let response = rollup
        .process(kinesis_event(&docs), Deadline::none(), &metrics)
        .await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(metrics.get(bridge_core::pipeline::METRIC_DEAD_LETTERED), 1);
    let letters = aws.read_objects(&bucket, "dead-letter/").await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter: Value = serde_json::from_slice(&letters[0].1).unwrap();
    assert!(
        letter["reason"]
            .as_str()
            .unwrap()
            .contains("schema \"cognito-sync-change/v1\""),
        "{letter}"
    );
    let c = store
        .counters(&format!("pool={POOL}"), "2026-11-03")
        .await
        .unwrap();
    assert_eq!(c[&active_attr(Definition::Authenticating)], 2);
}
