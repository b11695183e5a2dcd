//! End-to-end tests of the active-users rollup: the real rollup through the real AWS SDK against moto server
//! (DynamoDB, S3), and over the in-memory table with DynamoDB's rules where moto cannot show what matters
//! (concurrent writers, scale). A generated month of auth and app events, with duplicates, redeliveries and late
//! arrivals, over several lanes, must give exact figures for every scope and day (actives, new, month actives,
//! retention, rolling 7 and 30 days, dimension values, event counts), and the dashboard's data points must equal
//! the table, day by day.

#![allow(clippy::unwrap_used, reason = "test helpers fail loudly")]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use active_users::ActiveUsers;
use active_users::activity::Definition;
use active_users::handler::{METRIC_ALREADY_COMMITTED, METRIC_COMMITS, METRIC_HISTORIES_WRITTEN};
use active_users::store::RollupStore;
use active_users::table::Table as _;
use bridge_core::Deadline;
use bridge_core::pipeline::Flow as _;
use bridge_core::telemetry::Metrics;
use devtools::emulator::{LocalAws, unique_name};
use devtools::synthetic::{
    CLIENT, DAYS, Feed, Month, POOL, auth_event, day, generate, partition_key,
};
use e2e::{assert_valid, validator};
use serde_json::{Value, json};

/// Users in the generated month on moto (the in-memory test below takes 3,000).
const USERS: u32 = 60;

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

/// A rollup with a fresh table and dead-letter bucket on moto: (emulator, store, rollup, bucket, published lines).
async fn rollup_on_moto(
    dimensions: Vec<String>,
) -> (
    LocalAws,
    RollupStore,
    ActiveUsers,
    String,
    Arc<std::sync::Mutex<Vec<Value>>>,
) {
    let aws = LocalAws::from_env().await.unwrap();
    let (table, bucket) = (unique_name("rollup"), unique_name("dl"));
    aws.create_rollup_table(&table).await.unwrap();
    aws.create_bucket(&bucket).await.unwrap();
    let (store, rollup, published) =
        devtools::synthetic::local_rollup(&aws, &table, &bucket, dimensions);
    (aws, store, rollup, bucket, published)
}

/// The shard a stream puts a document in: two per stream, by partition key.
fn shard_of(doc: &Value) -> usize {
    usize::from(
        partition_key(doc)
            .bytes()
            .fold(0u8, |a, b| a.wrapping_add(b))
            % 2,
    )
}

/// Delivers the month as the streams would (two shards per stream: four lanes), every seventh batch twice (a
/// function error), and returns the events delivered.
async fn deliver(rollup: &ActiveUsers, month: &Month, metrics: &Metrics) -> u64 {
    let mut feeds: BTreeMap<(&str, usize), Feed> = BTreeMap::new();
    let mut delivered = 0;
    for (i, docs) in devtools::synthetic::deliveries(month).iter().enumerate() {
        let mut by_lane: BTreeMap<(&str, usize), Vec<Value>> = BTreeMap::new();
        for d in docs {
            let stream = if d["schema"] == "app-event/v1" {
                "app-events"
            } else {
                "auth-events"
            };
            by_lane
                .entry((stream, shard_of(d)))
                .or_default()
                .push(d.clone());
        }
        for ((stream, shard), docs) in by_lane {
            let feed = feeds
                .entry((stream, shard))
                .or_insert_with(|| Feed::new(stream, shard));
            let response = rollup
                .process(feed.event(&docs), Deadline::none(), metrics)
                .await;
            assert!(response.batch_item_failures.is_empty(), "batch {i}");
            delivered += docs.len() as u64;
            if i % 7 == 3 {
                let again = rollup
                    .process(feed.again(&docs), Deadline::none(), metrics)
                    .await;
                assert!(again.batch_item_failures.is_empty(), "batch {i} again");
                delivered += docs.len() as u64;
            }
        }
    }
    delivered
}

/// Distinct actors in the window of `n` days ending `d` (the truth of the rolling figures).
fn rolling(active: &BTreeMap<u32, BTreeSet<u32>>, d: u32, n: u32) -> usize {
    (d.saturating_sub(n - 1).max(1)..=d)
        .flat_map(|x| active.get(&x).into_iter().flatten())
        .collect::<BTreeSet<_>>()
        .len()
}

/// Checks every figure of the month against the truth, through the store's readers and the report.
async fn check_month(store: &RollupStore, month: &Month) {
    let pool = format!("pool={POOL}");
    let client = format!("{pool}/client={CLIENT}");
    let first_day = month.first_days();
    let auth = Definition::Authenticating.as_str();
    for d in 1..=DAYS {
        for scope in [&pool, &client] {
            let c = store.day_counters(scope, day(d)).await.unwrap();
            let get = |k: &str| c.get(k).copied().unwrap_or(0);
            let label = format!("{scope} {}", day(d));
            assert_eq!(
                get(&format!("{auth}.active")),
                month.auth_active.get(&d).map_or(0, BTreeSet::len) as i64,
                "{label} authenticating users"
            );
            assert_eq!(
                get(&format!("{auth}.retained7")),
                month.retained(d) as i64,
                "{label} retained"
            );
            let new = first_day.values().filter(|f| **f == d).count() as i64;
            assert_eq!(get(&format!("{auth}.new")), new, "{label} new users");
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
            assert_eq!(get("session_users.active"), 0, "the definitions never mix");
            // Actives per dimension value: users with u % 3 == 0 sign in on iOS, the others on Android.
            let dims = store.day_dimensions(scope, day(d)).await.unwrap();
            let on = month.auth_active.get(&d).cloned().unwrap_or_default();
            let ios = on.iter().filter(|u| u.is_multiple_of(3)).count() as i64;
            let at = |k: &str| dims.get(k).copied().unwrap_or(0);
            assert_eq!(at(&format!("{auth}|platform=ios")), ios, "{label} ios");
            assert_eq!(
                at(&format!("{auth}|platform=android")),
                on.len() as i64 - ios,
                "{label} android"
            );
        }
        let app = store.day_counters("app", day(d)).await.unwrap();
        let get = |k: &str| app.get(k).copied().unwrap_or(0);
        assert_eq!(
            get("session_users.active"),
            month.session_users.get(&d).map_or(0, BTreeSet::len) as i64,
            "{d} session users"
        );
        assert_eq!(
            get("session_devices.active"),
            month.session_devices.get(&d).map_or(0, BTreeSet::len) as i64,
            "{d} session devices"
        );
        assert_eq!(get(&format!("{auth}.active")), 0);
        // Sessions: ended, engaged (over 10 s or 2 views), the duration quantiles to the bucket; revenue per
        // currency, units and paying users.
        assert_eq!(
            get("app.sessions_ended"),
            month.sessions_ended.get(&d).copied().unwrap_or(0) as i64,
            "{d} sessions ended"
        );
        assert_eq!(
            get(active_users::plan::ENGAGED_SESSIONS),
            month.engaged.get(&d).copied().unwrap_or(0) as i64,
            "{d} engaged sessions"
        );
        let figures = active_users::handler::figures(&app);
        let mut durations = month.durations.get(&d).cloned().unwrap_or_default();
        durations.sort_unstable();
        for (name, share) in [("p50", 0.5), ("p90", 0.9)] {
            // Nearest rank, then its bucket.
            let want = (!durations.is_empty()).then(|| {
                let rank = ((share * durations.len() as f64).ceil() as usize).max(1);
                active_users::activity::duration_bucket(durations[rank - 1]) as i64
            });
            assert_eq!(
                figures.get(&format!("app_session_{name}_s")).copied(),
                want,
                "{d} {name}"
            );
        }
        for currency in ["USD", "EUR"] {
            let key = (d, currency.to_owned());
            assert_eq!(
                get(&format!("app.revenue_micros.{currency}")),
                month.revenue.get(&key).copied().unwrap_or(0),
                "{d} revenue {currency}"
            );
            assert_eq!(
                get(&format!("app.units.{currency}")),
                month.units.get(&key).copied().unwrap_or(0),
                "{d} units {currency}"
            );
        }
        assert_eq!(
            get("paying_users.active"),
            month.paying.get(&d).map_or(0, BTreeSet::len) as i64,
            "{d} paying users"
        );
        // Lifecycle of authenticating users, from the month's days (nobody was active before day 1).
        let pool_counters = store.day_counters(&pool, day(d)).await.unwrap();
        let at = |k: &str| {
            pool_counters
                .get(&format!("{auth}.{k}"))
                .copied()
                .unwrap_or(0)
        };
        let (today, yesterday) = (
            month.auth_active.get(&d).cloned().unwrap_or_default(),
            month.auth_active.get(&(d - 1)).cloned().unwrap_or_default(),
        );
        let seen_before = |u: &u32| first_day.get(u).is_some_and(|f| *f < d);
        let returning = today.intersection(&yesterday).count() as i64;
        let resurrecting = today
            .iter()
            .filter(|u| !yesterday.contains(u) && seen_before(u))
            .count() as i64;
        let dormant = yesterday.difference(&today).count() as i64;
        assert_eq!(
            (at("returning"), at("resurrecting"), at("dormant")),
            (returning, resurrecting, dormant),
            "{d} lifecycle"
        );
        let new_on_d: Vec<u32> = first_day
            .iter()
            .filter(|(_, f)| **f == d)
            .map(|(u, _)| *u)
            .collect();
        for n in [1, 7] {
            let kept = new_on_d
                .iter()
                .filter(|u| {
                    month
                        .auth_active
                        .get(&(d + n))
                        .is_some_and(|s| s.contains(u))
                })
                .count() as i64;
            assert_eq!(
                at(&format!("new_retained{n}")),
                kept,
                "{d} new-user retention day {n}"
            );
        }
    }
    // The report: the same exact counts per day, rolling windows exact, the month's actives.
    let (rows, month_to_date) =
        devtools::report::rows(store, Definition::Authenticating, &pool, day(1), day(DAYS))
            .await
            .unwrap();
    assert_eq!(
        month_to_date,
        month.auth_users().len() as i64,
        "month actives"
    );
    for r in &rows {
        let d = r.day.format("%d").to_string().parse::<u32>().unwrap();
        assert_eq!(
            r.active,
            month.auth_active.get(&d).map_or(0, BTreeSet::len) as i64
        );
        assert_eq!(
            r.rolling7,
            rolling(&month.auth_active, d, 7) as i64,
            "7-day {d}"
        );
        assert_eq!(
            r.rolling30,
            rolling(&month.auth_active, d, 30) as i64,
            "30-day {d}"
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
    // The report's sessions, revenue and lifecycle: the generated month's, day by day.
    for r in devtools::report::app_rows(store, day(1), day(DAYS))
        .await
        .unwrap()
    {
        let d = r.day.format("%d").to_string().parse::<u32>().unwrap();
        assert_eq!(
            r.ended,
            month.sessions_ended.get(&d).copied().unwrap_or(0) as i64
        );
        assert_eq!(
            r.engaged,
            month.engaged.get(&d).copied().unwrap_or(0) as i64
        );
        assert_eq!(
            r.paying,
            month.paying.get(&d).map_or(0, BTreeSet::len) as i64
        );
        for currency in ["USD", "EUR"] {
            assert_eq!(
                r.revenue.get(currency).copied().unwrap_or(0),
                month
                    .revenue
                    .get(&(d, currency.to_owned()))
                    .copied()
                    .unwrap_or(0),
                "report revenue {d} {currency}"
            );
        }
    }
    let stages = devtools::report::lifecycle_rows(
        store,
        Definition::Authenticating,
        &pool,
        day(1),
        day(DAYS),
    )
    .await
    .unwrap();
    for s in &stages {
        let d = s.day.format("%d").to_string().parse::<u32>().unwrap();
        let today = month.auth_active.get(&d).cloned().unwrap_or_default();
        let yesterday = month.auth_active.get(&(d - 1)).cloned().unwrap_or_default();
        assert_eq!(s.active, s.new + s.returning + s.resurrecting, "{d}");
        assert_eq!(s.active, today.len() as i64, "{d}");
        assert_eq!(
            s.dormant,
            yesterday.difference(&today).count() as i64,
            "{d}"
        );
    }
    let lifecycle = devtools::report::lifecycle_svg("pool", &stages).unwrap();
    assert!(lifecycle.contains("resurrecting"));
    let svg = devtools::report::chart_svg("pool", &rows).unwrap();
    assert_chart_holds_every_series(&svg, rows.len());
    let (app_rows, app_month) =
        devtools::report::rows(store, Definition::SessionUsers, "app", day(1), day(DAYS))
            .await
            .unwrap();
    let session_month: BTreeSet<u32> = month.session_users.values().flatten().copied().collect();
    assert_eq!(app_month, session_month.len() as i64);
    for r in &app_rows {
        let d = r.day.format("%d").to_string().parse::<u32>().unwrap();
        assert_eq!(
            r.rolling30,
            rolling(&month.session_users, d, 30) as i64,
            "app 30-day {d}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_of_events_gives_exact_figures_and_a_dashboard_equal_to_the_table() {
    let (_, store, rollup, _, published) =
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
    let metrics = Metrics::new();
    let delivered = deliver(&rollup, &month, &metrics).await;
    let costs = store.table().meter().costs();
    println!(
        "{} events ({delivered} delivered, repeats, late events and redelivered batches included) over 4 lanes: \
         {} commits, {} histories written, {} records already committed; requests {:?}",
        month.events.len(),
        metrics.get(METRIC_COMMITS),
        metrics.get(METRIC_HISTORIES_WRITTEN),
        metrics.get(METRIC_ALREADY_COMMITTED),
        costs.requests
    );
    assert!(
        metrics.get(METRIC_ALREADY_COMMITTED) > 0,
        "redelivered batches were seen as such"
    );
    check_month(&store, &month).await;
    // The dashboard's data points (each lane's latest published line of a day, summed) equal the table.
    let lines = published.lock().unwrap().clone();
    e2e::assert_dashboard_shows_the_table(&store, &lines).await;
    // The breakdown lists every value counted that day.
    let by = devtools::report::breakdown(
        &store,
        Definition::Authenticating,
        &format!("pool={POOL}"),
        day(DAYS),
    )
    .await
    .unwrap();
    assert!(by.iter().any(|b| b.dimension == "locale=en-US"), "{by:?}");
}

/// The same month for 3,000 users over the in-memory table (DynamoDB's rules, metered): the scale moto is too
/// slow for, with the same checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_thousand_users_give_exact_figures() {
    let month = generate(3_000);
    let table = Arc::new(active_users::table::Memory::new());
    let (store, rollup, published) =
        devtools::synthetic::memory_rollup(table.clone(), vec!["platform".to_owned()]);
    let metrics = Metrics::new();
    let delivered = deliver(&rollup, &month, &metrics).await;
    check_month(&store, &month).await;
    let lines = published.lock().unwrap().clone();
    e2e::assert_dashboard_shows_the_table(&store, &lines).await;
    let costs = table.meter().costs();
    println!(
        "3,000 users, {delivered} events delivered: {:.3} read units, {:.3} write units, {:.3} requests per event",
        costs.read_units / delivered as f64,
        costs.write_units as f64 / delivered as f64,
        costs.request_count() as f64 / delivered as f64
    );
}

/// Eight lanes (shards) at once on one scope and one day, over a table that keeps every write in flight long
/// enough to overlap and cancels overlapping writes on one item as DynamoDB does: no write is ever cancelled
/// (no item is shared), and the figures are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_lanes_on_one_scope_and_day_never_conflict_and_count_exactly() {
    let table = Arc::new(active_users::table::Memory::holding(
        std::time::Duration::from_millis(2),
    ));
    let (store, rollup, published) =
        devtools::synthetic::memory_rollup(table.clone(), vec!["platform".to_owned()]);
    let rollup = Arc::new(rollup);
    const LANES: usize = 8;
    const USERS_PER_LANE: u32 = 40;
    let mut tasks = Vec::new();
    for lane in 0..LANES {
        let rollup = rollup.clone();
        tasks.push(tokio::spawn(async move {
            let mut feed = Feed::new("auth-events", lane);
            let metrics = Metrics::new();
            for batch in 0..4u32 {
                // Each lane's users sign in and refresh, all on day 3, in batches of 20; every batch twice.
                let docs: Vec<Value> = (0..USERS_PER_LANE / 4)
                    .flat_map(|k| {
                        let u = lane as u32 * USERS_PER_LANE + batch * (USERS_PER_LANE / 4) + k;
                        [
                            auth_event(
                                &format!("{:032x}", u * 2 + 1),
                                "_userauth.sign_in",
                                "trigger",
                                u,
                                3,
                                100,
                            ),
                            auth_event(
                                &format!("{:032x}", u * 2 + 2),
                                "_userauth.token_refresh",
                                "trigger",
                                u,
                                3,
                                200,
                            ),
                        ]
                    })
                    .collect();
                for event in [feed.event(&docs), feed.again(&docs)] {
                    let r = rollup.process(event, Deadline::none(), &metrics).await;
                    assert!(r.batch_item_failures.is_empty());
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let conflicts = table.conflicts.load(std::sync::atomic::Ordering::Relaxed);
    let c = store
        .day_counters(&format!("pool={POOL}"), day(3))
        .await
        .unwrap();
    println!("8 lanes: {conflicts} writes cancelled by a conflict; figures {c:?}");
    assert_eq!(conflicts, 0, "two lanes needed one item at once");
    let users = (LANES as u32 * USERS_PER_LANE) as i64;
    assert_eq!(c["authenticating_users.active"], users);
    assert_eq!(c["authenticating_users.new"], users);
    assert_eq!(c["trigger.sign_ins"], users);
    assert_eq!(c["trigger.token_refreshes"], users);
    let lines = published.lock().unwrap().clone();
    let points = active_users::handler::dashboard_points(&lines);
    assert_eq!(
        points[&(format!("pool={POOL}"), "2026-11-03".to_owned())]["authenticating_users_active"],
        users
    );
    // The same load on items every writer shares is what the table cancels: one counter item, 8 writers.
    let shared = Arc::new(active_users::table::Memory::holding(
        std::time::Duration::from_millis(2),
    ));
    let mut writers = Vec::new();
    for _ in 0..LANES {
        let shared = shared.clone();
        writers.push(tokio::spawn(async move {
            use active_users::table::{Key, Table as _, TxWrite};
            shared
                .transact(vec![TxWrite::Add {
                    key: Key::new("count#pool=p/2026-11-03", "-"),
                    add: BTreeMap::from([("active".to_owned(), 1)]),
                }])
                .await
                .is_err()
        }));
    }
    let mut cancelled = 0;
    for w in writers {
        cancelled += usize::from(w.await.unwrap());
    }
    assert!(
        cancelled > 0,
        "the model cancels overlapping transactions on one item"
    );
}

/// One person, one count: an install signed out, then signed in (the same anonymous id, now with a user id) on
/// one day is one session user; the reverse order across two days is one actor on each day and one new user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_signed_out_then_signed_in_is_one_session_user() {
    let table = Arc::new(active_users::table::Memory::new());
    let (store, rollup, _) = devtools::synthetic::memory_rollup(table, Vec::new());
    let event = |id: u32, user: Option<&str>, d: u32| {
        json!({"schema": "app-event/v1", "event_id": format!("{id:032x}"), "type": "track",
               "event": "_session.start", "anonymous_id": "install-1", "user_id": user,
               "timestamp": format!("2026-11-{d:02}T10:00:{id:02}Z"), "context": {"session_id": format!("s{id}")}})
    };
    let mut feed = Feed::new("app-events", 0);
    let metrics = Metrics::new();
    for docs in [
        vec![event(1, None, 3), event(2, Some("sub-1"), 3)],
        vec![event(3, Some("sub-1"), 4)],
        vec![event(4, None, 5)],
    ] {
        rollup
            .process(feed.event(&docs), Deadline::none(), &metrics)
            .await;
    }
    for (d, active, new) in [(3, 1, 1), (4, 1, 0), (5, 1, 0)] {
        let c = store.day_counters("app", day(d)).await.unwrap();
        assert_eq!(c["session_users.active"], active, "day {d}");
        assert_eq!(
            c.get("session_users.new").copied().unwrap_or(0),
            new,
            "day {d}"
        );
        assert_eq!(c["app.sessions"], if d == 3 { 2 } else { 1 });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_that_are_not_analytics_events_are_dead_lettered_and_the_rest_counted() {
    let (aws, store, rollup, bucket, _) = rollup_on_moto(Vec::new()).await;
    let docs = vec![
        auth_event(
            &format!("{:032x}", 1),
            "_userauth.sign_in",
            "trigger",
            1,
            3,
            10,
        ),
        json!({"schema": "cognito-sync-change/v1", "event_id": "x"}),
        auth_event(
            &format!("{:032x}", 2),
            "_userauth.sign_in",
            "trigger",
            2,
            3,
            20,
        ),
    ];
    let metrics = Metrics::new();
    let response = rollup
        .process(
            Feed::new("auth-events", 0).event(&docs),
            Deadline::none(),
            &metrics,
        )
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
        .day_counters(&format!("pool={POOL}"), day(3))
        .await
        .unwrap();
    assert_eq!(c["authenticating_users.active"], 2);
}

/// DynamoDB's permanent errors are dead letters with their reason, not retries until the records expire: here,
/// the rollup table does not exist (ResourceNotFoundException).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_table_error_is_a_dead_letter_not_a_retry() {
    let aws = LocalAws::from_env().await.unwrap();
    let bucket = unique_name("dl");
    aws.create_bucket(&bucket).await.unwrap();
    let (_, rollup, _) =
        devtools::synthetic::local_rollup(&aws, "no-such-rollup-table", &bucket, Vec::new());
    let docs = vec![auth_event(
        &format!("{:032x}", 1),
        "_userauth.sign_in",
        "trigger",
        1,
        3,
        10,
    )];
    let metrics = Metrics::new();
    let response = rollup
        .process(
            Feed::new("auth-events", 0).event(&docs),
            Deadline::none(),
            &metrics,
        )
        .await;
    assert!(response.batch_item_failures.is_empty(), "not retried");
    let letters = aws.read_objects(&bucket, "dead-letter/").await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter: Value = serde_json::from_slice(&letters[0].1).unwrap();
    let reason = letter["reason"].as_str().unwrap();
    assert!(reason.contains("ResourceNotFoundException"), "{reason}");
}

/// Answers lost after DynamoDB applied the request (the commit's transaction, the histories' and markers' puts):
/// the SDK's resend then fails its condition, and the rollup must tell its own applied write from someone
/// else's, neither counting again nor giving up. The first commit's answer and the first put's are certainly lost
/// (scheduled), a tenth of the others by draw; every batch is redelivered until it succeeds, as Lambda does. Every
/// figure ends as in a run without faults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answers_count_nothing_twice() {
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
            let (_, rollup, _) = devtools::synthetic::rollup_over(
                aws_sdk_dynamodb::Client::from_conf(through_proxy),
                &aws,
                &table,
                &bucket,
                vec!["platform".to_owned()],
            );
            let metrics = Metrics::new();
            let mut redeliveries = 0;
            let mut feed = Feed::new("auth-events", 0);
            for docs in &batches {
                let mut event = feed.event(docs);
                let mut attempts = 0;
                loop {
                    let failed = rollup
                        .process(event, Deadline::none(), &metrics)
                        .await
                        .batch_item_failures;
                    if failed.is_empty() {
                        break;
                    }
                    attempts += 1;
                    redeliveries += 1;
                    assert!(attempts < 20, "a batch never succeeded");
                    event = feed.again(docs);
                }
            }
            let counters = e2e::rollup_counters(&RollupStore::on_dynamodb(
                aws_sdk_dynamodb::Client::new(&aws.sdk),
                &table,
                std::time::Duration::from_secs(31 * 86_400),
            ))
            .await;
            (
                counters,
                redeliveries,
                proxy.injected.snapshot(),
                proxy.fault_log(),
            )
        }
    };
    let (calm, _, _, _) = run(None).await;
    let (chaos, redeliveries, injected, log) = run(Some(FaultPlan {
        seed: 20_261_203,
        lost_response: 0.1,
        only: vec!["TransactWriteItems".to_owned(), "PutItem".to_owned()],
        schedule: vec![
            Scheduled::on("TransactWriteItems", Fault::LoseResponse),
            Scheduled::on("PutItem", Fault::LoseResponse),
        ],
        ..FaultPlan::default()
    }))
    .await;
    println!(
        "{} counter items; under lost answers: {redeliveries} batches redelivered, faults injected {injected:?}; \
         seed 20261203, faults by request:\n{}",
        calm.len(),
        devtools::proxy::describe(&log)
    );
    assert!(!calm.is_empty());
    for kind in ["TransactWriteItems LoseResponse", "PutItem LoseResponse"] {
        assert!(injected.get(kind).copied().unwrap_or(0) > 0, "{kind}");
    }
    assert_eq!(chaos, calm);
}

/// The emulator gives DynamoDB's isolation: a transaction cancelled by its condition never takes back another
/// request's write. moto's own TransactWriteItems restores a copy of the whole table when a condition fails, which
/// wiped writes other requests made meanwhile (a chaos run lost a lane's committed counter that way, and its
/// dashboard showed more than the table); `scripts/moto-server` handles DynamoDB requests one at a time, so the
/// copy and the restore can no longer straddle another write. Here, over a table large enough that each copy takes
/// a while, 24 transactions that fail their condition run beside 24 puts: every put stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_transaction_never_takes_back_a_concurrent_write() {
    use aws_sdk_dynamodb::types::{
        AttributeValue as Av, ConditionCheck, PutRequest, TransactWriteItem, WriteRequest,
    };
    let aws = LocalAws::from_env().await.unwrap();
    let table = unique_name("isolation");
    aws.create_rollup_table(&table).await.unwrap();
    let key = |pk: String| {
        std::collections::HashMap::from([
            ("pk".to_owned(), Av::S(pk)),
            ("sk".to_owned(), Av::S("-".to_owned())),
        ])
    };
    // 2,000 items of ballast: each failing transaction deep-copies them.
    for chunk in (0..2_000).collect::<Vec<u32>>().chunks(25) {
        let writes = chunk
            .iter()
            .map(|i| {
                let mut item = key(format!("ballast-{i}"));
                item.insert("pad".into(), Av::S("x".repeat(200)));
                WriteRequest::builder()
                    .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
                    .build()
            })
            .collect();
        aws.dynamodb
            .batch_write_item()
            .request_items(&table, writes)
            .send()
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for i in 0..24 {
        let (client, table) = (aws.dynamodb.clone(), table.clone());
        let check = TransactWriteItem::builder()
            .condition_check(
                ConditionCheck::builder()
                    .table_name(&table)
                    .set_key(Some(key("ballast-0".into())))
                    .condition_expression("attribute_not_exists(pk)")
                    .build()
                    .unwrap(),
            )
            .build();
        tasks.push(tokio::spawn(async move {
            let failed = client
                .transact_write_items()
                .transact_items(check)
                .send()
                .await
                .is_err();
            assert!(failed, "the condition fails: ballast-0 exists");
        }));
        let (client, table) = (aws.dynamodb.clone(), table.clone());
        tasks.push(tokio::spawn(async move {
            client
                .put_item()
                .table_name(&table)
                .set_item(Some(key(format!("write-{i}"))))
                .send()
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for i in 0..24 {
        let got = aws
            .dynamodb
            .get_item()
            .table_name(&table)
            .set_key(Some(key(format!("write-{i}"))))
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        assert!(
            got.item().is_some(),
            "write-{i} was taken back by a cancelled transaction"
        );
    }
}

/// The report as a team runs it, the operator command's real binary (`ckb report`) over a rolled-up month on moto:
/// its tables are the library's, row for row, with the month's actives, and it writes a chart per definition that
/// holds every series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ckb_report_prints_the_tables_and_writes_the_charts() {
    let aws = LocalAws::from_env().await.unwrap();
    let (table, bucket) = (unique_name("rollup"), unique_name("dl"));
    aws.create_rollup_table(&table).await.unwrap();
    aws.create_bucket(&bucket).await.unwrap();
    let (store, rollup, _) = devtools::synthetic::local_rollup(&aws, &table, &bucket, vec![]);
    let month = generate(8);
    deliver(&rollup, &month, &Metrics::new()).await;
    let out = std::env::temp_dir().join(unique_name("report"));
    let pool = format!("pool={POOL}");
    let (from, to) = (day(1).to_string(), day(DAYS).to_string());
    let (code, stdout, stderr) = e2e::ckb(&[
        "report",
        "--table",
        &table,
        "--scope",
        &pool,
        "--from",
        &from,
        "--to",
        &to,
        "--out",
        out.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (rows, month_to_date) =
        devtools::report::rows(&store, Definition::Authenticating, &pool, day(1), day(DAYS))
            .await
            .unwrap();
    assert_eq!(month_to_date, month.auth_users().len() as i64);
    assert!(
        stdout.contains(&format!(
            "{pool}, {} ({from} to {to}; month to date {month_to_date})\n{}",
            Definition::Authenticating.as_str(),
            devtools::report::table(&rows)
        )),
        "{stdout}"
    );
    let chart = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("chart: "))
        .find(|path| path.ends_with("-authenticating_users.svg"))
        .unwrap_or_else(|| panic!("no chart of authenticating users: {stdout}"));
    assert!(std::path::Path::new(chart).starts_with(&out), "{chart}");
    assert_chart_holds_every_series(&std::fs::read_to_string(chart).unwrap(), rows.len());
    std::fs::remove_dir_all(&out).unwrap();
    // An unknown flag is a usage error that names it.
    let (code, _, stderr) = e2e::ckb(&["report", "--table", &table, "--scopes", "app"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("'--scopes'"), "{stderr}");
}
