//! End-to-end tests of the active-users rollup: the real rollup, through the real AWS SDK, against moto server
//! (DynamoDB, S3). A generated month of auth and app events for a few thousand users, with duplicates,
//! redeliveries and late arrivals, must give exact daily, monthly and new-user counts, exact event counters, and
//! rolling estimates within the sketch's stated error; the two definitions of active never mix.

#![allow(clippy::unwrap_used, reason = "test helpers fail loudly")]

use std::collections::BTreeSet;

use active_users::ActiveUsers;
use active_users::activity::Definition;
use active_users::handler::{METRIC_MARKERS_WRITTEN, METRIC_SKETCHES_WRITTEN, METRIC_TRANSACTIONS};
use active_users::plan::{self, active_attr, new_attr};
use active_users::sketch::{RELATIVE_STANDARD_ERROR, Sketch};
use active_users::store::RollupStore;
use bridge_core::Deadline;
use bridge_core::kinesis_event::RawKinesisEvent;
use bridge_core::pipeline::Flow as _;
use bridge_core::telemetry::Metrics;
use devtools::emulator::{LocalAws, unique_name};
use e2e::{assert_valid, validator};
use serde_json::{Value, json};

// Scale: moto's TransactWriteItems deep-copies the whole table once per item of the transaction, so its cost
// grows with items x table size (150 users took 118 s here, 60 users about 20 s). DynamoDB has no such cost; the
// logic under test is the same at any size. A full-size run needs an emulator without that copy.
use devtools::synthetic::{CLIENT, DAYS, POOL, auth_event, day, generate};

/// Users in the generated month (see the scale note above).
const USERS: u32 = 60;

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
    let (store, rollup) = devtools::synthetic::local_rollup(&aws, &table, &bucket, dimensions);
    (aws, store, rollup, bucket)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_of_events_gives_exact_counts_despite_repeats_redeliveries_and_late_arrivals() {
    let (_, store, rollup, _) =
        rollup_on_moto(vec!["platform".to_owned(), "locale".to_owned()]).await;

    let month = generate(USERS);
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
    let batches = devtools::synthetic::deliveries(&month);
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
    let first_day = month.first_days();
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
            let retained = month.retained(d) as i64;
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
    let month_users = month.auth_users();
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
        let (ok, failed) = (
            month.sign_ins.get(&d).copied().unwrap_or(0),
            month.failures.get(&d).copied().unwrap_or(0),
        );
        assert_eq!(
            r.event("sign_ins"),
            ok as i64,
            "one origin's count, never both"
        );
        let rate = (ok + failed > 0).then(|| ok as f64 / (ok + failed) as f64);
        assert_eq!(r.success_rate(), rate);
    }
    let last = rows.last().unwrap();
    assert!((last.rolling30 - exact).abs() / exact < 3.0 * RELATIVE_STANDARD_ERROR);
    let svg = devtools::report::chart_svg("pool", &rows).unwrap();
    assert_chart_holds_every_series(&svg, rows.len());

    // The report's breakdown lists every platform and estimates each one's 30-day actives.
    let by = devtools::report::breakdown(&store, Definition::Authenticating, &pool, day(DAYS))
        .await
        .unwrap();
    let dims: Vec<&str> = by.iter().map(|b| b.dimension.as_str()).collect();
    assert_eq!(
        dims,
        vec!["locale=en-US", "platform=android", "platform=ios"]
    );
    assert!(
        (by[2].rolling30 - ios.len() as f64).abs() / (ios.len() as f64)
            < 3.0 * RELATIVE_STANDARD_ERROR
    );
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

/// The planning logic at the scale moto's transactions cannot reach (see the scale note): 3,000 users, the same
/// deliveries (repeats, late arrivals, redeliveries), with the table simulated in memory exactly as the store
/// uses it (a marker is written only if absent, with its counter moves). The moto test above covers the
/// DynamoDB path itself.
#[test]
fn three_thousand_users_plan_to_exact_counts() {
    let month = generate(3_000);
    let sim = devtools::synthetic::simulate_rollup(&month, &["platform".to_owned()]);
    assert_eq!(sim.rewrites, 0, "a marker that exists was written again");
    let counters = &sim.counters;
    let pool = format!("pool={POOL}");
    let get = |period: &str, attr: String| {
        counters
            .get(&(plan::counter_item(&pool, period), attr))
            .copied()
            .unwrap_or(0)
    };
    let first_day = month.first_days();
    let auth = Definition::Authenticating;
    for d in 1..=DAYS {
        let label = plan::day_label(day(d));
        let active = month.auth_active.get(&d).map_or(0, BTreeSet::len) as i64;
        assert_eq!(get(&label, active_attr(auth)), active, "{label} active");
        let new = first_day.values().filter(|f| **f == d).count() as i64;
        assert_eq!(get(&label, new_attr(auth)), new, "{label} new");
        let retained = month.retained(d) as i64;
        assert_eq!(
            get(&label, plan::retained_attr(auth)),
            retained,
            "{label} retained"
        );
        let sign_ins = month.sign_ins.get(&d).copied().unwrap_or(0) as i64;
        assert_eq!(
            get(&label, "trigger.sign_ins".into()),
            sign_ins,
            "{label} sign-ins"
        );
    }
    let users = month.auth_users();
    assert_eq!(get("2026-11", active_attr(auth)), users.len() as i64);
    println!("3,000 users: {sim}");
}

/// A transaction applied whose answer is lost: the SDK sends it again, DynamoDB cancels it (its markers exist),
/// and the store must see that its own earlier write won (the markers "raced"), not count again nor give up. Half
/// of the TransactWriteItems answers are lost through the fault proxy; every batch is redelivered until it
/// succeeds, as Lambda does. Every counter ends as in a run without faults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_transaction_answers_count_nothing_twice() {
    use devtools::proxy::{ClientConnections, CountingProxy, Fault, FaultPlan, Scheduled};
    let aws = LocalAws::from_env().await.unwrap();
    let month = generate(12);
    let batches = devtools::synthetic::deliveries(&month);
    let run = |plan: Option<FaultPlan>| {
        let aws = aws.clone();
        let batches = batches.clone();
        async move {
            let (table, bucket) = (unique_name("rollup"), unique_name("dl"));
            aws.create_rollup_table(&table).await.unwrap();
            aws.create_bucket(&bucket).await.unwrap();
            let proxy =
                CountingProxy::with_faults(&aws.endpoint, ClientConnections::KeepAlive, plan)
                    .await
                    .unwrap();
            let through_proxy = aws_sdk_dynamodb::config::Builder::from(&aws.sdk)
                .endpoint_url(&proxy.endpoint)
                .build();
            let (_, rollup) = devtools::synthetic::rollup_over(
                aws_sdk_dynamodb::Client::from_conf(through_proxy),
                &aws,
                &table,
                &bucket,
                vec!["platform".to_owned()],
            );
            let metrics = Metrics::new();
            let mut redeliveries = 0;
            for docs in &batches {
                let mut attempts = 0;
                while !rollup
                    .process(kinesis_event(docs), Deadline::none(), &metrics)
                    .await
                    .batch_item_failures
                    .is_empty()
                {
                    attempts += 1;
                    redeliveries += 1;
                    assert!(attempts < 20, "a batch never succeeded");
                }
            }
            let counters = e2e::rollup_counters(&RollupStore::new(
                aws_sdk_dynamodb::Client::new(&aws.sdk),
                &table,
                std::time::Duration::from_secs(8 * 86_400),
            ))
            .await;
            (
                counters,
                metrics.get(active_users::handler::METRIC_MARKERS_RACED),
                redeliveries,
                proxy.injected.snapshot(),
                proxy.fault_log(),
            )
        }
    };
    let (calm, calm_raced, _, _, _) = run(None).await;
    // The first transaction's answer is certainly lost and the SDK's resend of it (the next transaction: the store
    // writes one at a time) certainly gets through, so a resent transaction certainly finds its own markers. The
    // draws lose half of the other answers.
    let (chaos, raced, redeliveries, injected, log) = run(Some(FaultPlan {
        seed: 20_261_203,
        lost_response: 0.5,
        only: vec!["TransactWriteItems".to_owned()],
        schedule: vec![
            Scheduled::on("TransactWriteItems", Fault::LoseResponse),
            Scheduled::on("TransactWriteItems", Fault::Pass),
        ],
        ..FaultPlan::default()
    }))
    .await;
    println!(
        "{} counter items; under lost transaction answers: {raced} markers raced, {redeliveries} batches \
         redelivered, faults injected {injected:?}; seed 20261203, faults by request:\n{}",
        calm.len(),
        devtools::proxy::describe(&log)
    );
    assert!(!calm.is_empty());
    assert_eq!(calm_raced, 0);
    assert!(
        injected
            .get("TransactWriteItems LoseResponse")
            .copied()
            .unwrap_or(0)
            > 0
    );
    assert!(raced > 0, "a resent transaction found its own markers");
    assert_eq!(chaos, calm);
}
