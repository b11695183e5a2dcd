//! A generated month of auth and app events, as the forwarders write them (schema-valid
//! `cognito-auth-event/v1` and `app-event/v1` records), with the exact answers a rollup must give: for the
//! active-users tests and demo. Deterministic (fixed seeds).

use std::collections::{BTreeMap, BTreeSet};

use active_users::store::RollupStore;

use chrono::NaiveDate;
use serde_json::{Value, json};

/// The user pool of the generated events.
pub const POOL: &str = "us-east-1_EXAMPLE";
/// The app client of the generated events.
pub const CLIENT: &str = "exampleclient1";
/// Users with app sessions and no sign-in at all: session users, never authenticating users.
pub const APP_ONLY_USERS: u32 = 10;
/// The days of November 2026 the month spans.
pub const DAYS: u32 = 30;

/// Day `d` of November 2026.
pub fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, d).unwrap_or_default()
}

/// User `u`'s sub.
pub fn sub(u: u32) -> String {
    format!("{u:08x}-0000-4000-8000-000000000000")
}

/// The generated events and the exact answers.
#[derive(Debug, Clone)]
pub struct Month {
    /// (day, event) in the order they happened.
    pub events: Vec<(u32, Value)>,
    /// Authenticating users per day.
    pub auth_active: BTreeMap<u32, BTreeSet<u32>>,
    /// Session users and devices per day.
    pub session_users: BTreeMap<u32, BTreeSet<u32>>,
    pub session_devices: BTreeMap<u32, BTreeSet<String>>,
    /// Distinct sign-ins per day (each seen once by the trigger and once by the user-activity log), and
    /// failures (the log only).
    pub sign_ins: BTreeMap<u32, u64>,
    pub failures: BTreeMap<u32, u64>,
    /// What the app's sessions did, per day: stops, their durations (ms), engaged sessions (over 10 s or 2 views).
    pub sessions_ended: BTreeMap<u32, u64>,
    pub durations: BTreeMap<u32, Vec<u64>>,
    pub engaged: BTreeMap<u32, u64>,
    /// Purchases per day: revenue in millionths per currency, units per currency, and paying users.
    pub revenue: BTreeMap<(u32, String), i64>,
    pub units: BTreeMap<(u32, String), i64>,
    pub paying: BTreeMap<u32, BTreeSet<u32>>,
}

/// An auth event as the forwarders write it: from a trigger, or (failures) from the user-activity log.
pub fn auth_event(id: &str, kind: &str, origin: &str, u: u32, d: u32, second: u32) -> Value {
    auth_event_on(id, kind, origin, u, day(d), second)
}

/// [`auth_event`] on any date.
pub fn auth_event_on(
    id: &str,
    kind: &str,
    origin: &str,
    u: u32,
    date: NaiveDate,
    second: u32,
) -> Value {
    let ts = format!(
        "{}T{:02}:{:02}:{:02}Z",
        date.format("%Y-%m-%d"),
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
        let response = if kind == "_userauth.auth_fail" {
            "Fail"
        } else {
            "Pass"
        };
        e["activity"] = json!({"event_type": "SignIn", "event_response": response, "cognito_event_id": null,
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
           "clock": {"time_source": "client", "original_timestamp": ts, "offset_ms": null},
           "session": {"id": id, "start": ts, "stop": null, "duration_ms": null},
           "context": {"platform": "web", "app_version": "1.4.0", "app_build": null, "app_id": null, "app_package": null,
                       "sdk": null, "identity_pool_id": null, "locale": "en-US", "device_id": device, "os": null,
                       "os_version": null, "model": null, "make": null, "session_id": id, "session_start": ts,
                       "input_shape": "ours", "anonymous_id_source": "event"},
           "properties": {}, "traits": {},
           "source": {"stream_arn": "arn:aws:kinesis:us-east-1:123456789012:stream/app-events-source",
                      "shard_id": "shardId-000000000000", "sequence_number": "1", "sub_sequence": 0}})
}

/// Another event of the session `start` opened, `seconds` after it.
fn in_session(start: &Value, id: &str, event: &str, seconds: i64) -> Value {
    let mut e = start.clone();
    let at = chrono::DateTime::parse_from_rfc3339(start["timestamp"].as_str().unwrap_or_default())
        .map(|t| t + chrono::Duration::seconds(seconds))
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string()
        })
        .unwrap_or_default();
    e["event_id"] = id.into();
    e["event"] = event.into();
    e["timestamp"] = at.clone().into();
    e["received_at"] = at.clone().into();
    e["clock"]["original_timestamp"] = at.into();
    e
}

/// A month for `users` users who sign in (and, every fifth, use the app) plus [`APP_ONLY_USERS`] who only use
/// the app: each active on one to six days.
pub fn generate(users: u32) -> Month {
    let mut rng = fastrand::Rng::with_seed(20_261_101);
    let mut m = Month {
        events: Vec::new(),
        auth_active: BTreeMap::new(),
        session_users: BTreeMap::new(),
        session_devices: BTreeMap::new(),
        sign_ins: BTreeMap::new(),
        failures: BTreeMap::new(),
        sessions_ended: BTreeMap::new(),
        durations: BTreeMap::new(),
        engaged: BTreeMap::new(),
        revenue: BTreeMap::new(),
        units: BTreeMap::new(),
        paying: BTreeMap::new(),
    };
    // The sessions' other events draw from their own generator: the month's users and days stay as they were.
    let mut extra = fastrand::Rng::with_seed(20_261_203);
    let mut n = 0u64;
    let mut next_id = |prefix: &str| {
        n += 1;
        // Event ids are 32 hex digits; the prefix keeps event kinds apart.
        format!("{prefix}{n:030x}")
    };
    for u in 0..users + APP_ONLY_USERS {
        let active_days: BTreeSet<u32> = (0..rng.u32(1..=6)).map(|_| rng.u32(1..=DAYS)).collect();
        for (k, &d) in active_days.iter().enumerate() {
            let second = rng.u32(0..86_000);
            if u < users {
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
                    // The user-activity log sees the same sign-in: another event, another origin.
                    m.events.push((
                        d,
                        auth_event(
                            &next_id("a6"),
                            "_userauth.sign_in",
                            "activity_log",
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
            if u.is_multiple_of(5) || u >= users {
                let device = format!("device-{u}-{}", rng.u8(0..2));
                let start = app_event(&next_id("b1"), u, &device, d, second + 2);
                // In the session: 0 to 3 screen views, a stop with its duration (most sessions), a purchase (one in
                // six, in USD or EUR, its price a number or a string of one).
                let views = extra.u32(0..4);
                let mut more = Vec::new();
                for k in 0..views {
                    more.push(in_session(
                        &start,
                        &next_id("b2"),
                        "_screen_view",
                        i64::from(1 + k),
                    ));
                }
                let mut engaged = views >= 2;
                if extra.u8(0..10) < 7 {
                    let ms = extra.u64(500..40_000);
                    let mut stop = in_session(&start, &next_id("b3"), "_session.stop", 5);
                    stop["session"]["duration_ms"] = ms.into();
                    more.push(stop);
                    *m.sessions_ended.entry(d).or_default() += 1;
                    m.durations.entry(d).or_default().push(ms);
                    engaged |= ms > 10_000;
                }
                if engaged {
                    *m.engaged.entry(d).or_default() += 1;
                }
                if extra.u8(0..6) == 0 {
                    let currency = if extra.bool() { "USD" } else { "EUR" };
                    let (cents, quantity) = (if extra.bool() { 99 } else { 499 }, extra.i64(1..=2));
                    let price: Value = if extra.bool() {
                        (cents as f64 / 100.0).into()
                    } else {
                        format!("{}.{:02}", cents / 100, cents % 100).into()
                    };
                    let mut buy = in_session(&start, &next_id("b4"), "_monetization.purchase", 4);
                    buy["properties"] = json!({"_currency": currency, "_product_id": "gems-100",
                                               "_item_price": price, "_quantity": quantity});
                    more.push(buy);
                    *m.revenue.entry((d, currency.to_owned())).or_default() +=
                        cents * quantity * 10_000;
                    *m.units.entry((d, currency.to_owned())).or_default() += quantity;
                    m.paying.entry(d).or_default().insert(u);
                }
                m.events.push((d, start));
                m.events.extend(more.into_iter().map(|e| (d, e)));
                m.session_users.entry(d).or_default().insert(u);
                m.session_devices.entry(d).or_default().insert(device);
            }
        }
    }
    m.events
        .sort_by_key(|(d, e)| (*d, e["timestamp"].as_str().unwrap_or_default().to_owned()));
    m
}

/// Batches as the stream would deliver them: by arrival day, 500 at most, 3% of the events three days late and
/// 5% twice.
pub fn deliveries(month: &Month) -> Vec<Vec<Value>> {
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

/// Kinesis events of one shard, with sequence numbers that keep growing from one event to the next (as a shard's
/// do), so that the rollup's lane sees each batch after the last.
#[derive(Debug)]
pub struct Feed {
    stream_arn: String,
    shard_id: String,
    next: u64,
}

impl Feed {
    /// A feed of `shard` on the stream named `stream`.
    pub fn new(stream: &str, shard: usize) -> Self {
        Self {
            stream_arn: crate::events::example_stream_arn(stream),
            shard_id: format!("shardId-{shard:012}"),
            next: 1,
        }
    }

    /// The next batch, one record per document, partitioned by its user (or install).
    pub fn event(&mut self, docs: &[Value]) -> bridge_core::kinesis_event::RawKinesisEvent {
        let records: Vec<Value> = docs
            .iter()
            .map(|d| {
                let seq = crate::events::sequence_number(self.next);
                self.next += 1;
                crate::events::event_record(
                    &self.stream_arn,
                    &self.shard_id,
                    &seq,
                    partition_key(d),
                    &serde_json::to_vec(d).unwrap_or_default(),
                    1_800_000_000.0,
                )
            })
            .collect();
        bridge_core::kinesis_event::RawKinesisEvent { records }
    }

    /// The same records again (a redelivery of the last `n` records' batch).
    pub fn again(&mut self, docs: &[Value]) -> bridge_core::kinesis_event::RawKinesisEvent {
        self.next -= docs.len() as u64;
        self.event(docs)
    }
}

/// The partition key a forwarder gives a record: the user sub (auth events), else the install (app events).
pub fn partition_key(doc: &Value) -> &str {
    doc["user_sub"]
        .as_str()
        .or(doc["anonymous_id"].as_str())
        .or(doc["user_id"].as_str())
        .unwrap_or("app")
}

/// A rollup over a table in memory (metered by DynamoDB's rules), keeping its published lines.
pub fn memory_rollup(
    table: std::sync::Arc<active_users::table::Memory>,
    dimensions: Vec<String>,
) -> (
    RollupStore,
    active_users::ActiveUsers,
    std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
) {
    // The replay window of the template's defaults (168 h of stream retention, app events up to 30 days old).
    let replay_days = active_users::Config::minimum_replay_days(168, 30);
    let store = RollupStore::new(
        table,
        std::time::Duration::from_secs(u64::try_from(replay_days).unwrap_or(1) * 86_400),
    );
    let published = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let rollup = active_users::ActiveUsers::new(
        store.clone(),
        bridge_core::dead_letter::DeadLetterWriter::new(
            std::sync::Arc::new(bridge_core::testing::MemoryBlobs::default()),
            "dead-letters",
        ),
        dimensions,
        replay_days,
    )
    .without_publishing()
    .keeping_published(published.clone());
    (store, rollup, published)
}

/// Rolls `month` up as delivered by [`deliveries`] (every seventh batch twice, as after a function error) through
/// the real rollup over a metered in-memory table, in one lane: the store, the published lines and the events
/// delivered.
pub async fn simulate_rollup(
    month: &Month,
    dimensions: &[String],
) -> (RollupStore, Vec<Value>, u64) {
    use bridge_core::pipeline::Flow as _;
    let table = std::sync::Arc::new(active_users::table::Memory::new());
    let (store, rollup, published) = memory_rollup(table, dimensions.to_vec());
    let mut feed = Feed::new("auth-events", 0);
    let mut delivered = 0u64;
    for (i, docs) in deliveries(month).iter().enumerate() {
        let metrics = bridge_core::telemetry::Metrics::new();
        let event = feed.event(docs);
        rollup
            .process(event, bridge_core::Deadline::none(), &metrics)
            .await;
        delivered += docs.len() as u64;
        if i % 7 == 3 {
            rollup
                .process(feed.again(docs), bridge_core::Deadline::none(), &metrics)
                .await;
            delivered += docs.len() as u64;
        }
    }
    let lines = published.lock().map(|l| l.clone()).unwrap_or_default();
    (store, lines, delivered)
}

impl Month {
    /// Each authenticating user's first active day.
    pub fn first_days(&self) -> BTreeMap<u32, u32> {
        let mut first = BTreeMap::new();
        for (d, users) in &self.auth_active {
            for u in users {
                first.entry(*u).or_insert(*d);
            }
        }
        first
    }

    /// Authenticating users of day `d` active again within `d+1..=d+7` (Pinpoint's 7-day retention).
    pub fn retained(&self, d: u32) -> usize {
        self.auth_active.get(&d).map_or(0, |users| {
            users
                .iter()
                .filter(|u| {
                    (d + 1..=d + 7).any(|r| self.auth_active.get(&r).is_some_and(|s| s.contains(u)))
                })
                .count()
        })
    }

    /// Every authenticating user of the month.
    pub fn auth_users(&self) -> BTreeSet<u32> {
        self.auth_active.values().flatten().copied().collect()
    }
}

/// The active-users rollup on the emulator, over `table` and dead-lettering to `bucket`, without printing its
/// published lines (local runs print reports instead; it keeps them): the store it writes, the rollup and the
/// lines.
pub fn local_rollup(
    aws: &crate::LocalAws,
    table: &str,
    bucket: &str,
    dimensions: Vec<String>,
) -> (
    RollupStore,
    active_users::ActiveUsers,
    std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
) {
    rollup_over(
        aws_sdk_dynamodb::Client::new(&aws.sdk),
        aws,
        table,
        bucket,
        dimensions,
    )
}

/// [`local_rollup`] with its table reached through `dynamodb` (a client pointed at a fault proxy, say).
pub fn rollup_over(
    dynamodb: aws_sdk_dynamodb::Client,
    aws: &crate::LocalAws,
    table: &str,
    bucket: &str,
    dimensions: Vec<String>,
) -> (
    RollupStore,
    active_users::ActiveUsers,
    std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
) {
    let store =
        RollupStore::on_dynamodb(dynamodb, table, std::time::Duration::from_secs(31 * 86_400));
    let published = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let rollup = active_users::ActiveUsers::new(
        store.clone(),
        bridge_core::dead_letter::DeadLetterWriter::new(
            std::sync::Arc::new(bridge_core::blob::S3BlobStore::new(aws.s3.clone())),
            bucket,
        ),
        dimensions,
        31,
    )
    .without_publishing()
    .keeping_published(published.clone());
    (store, rollup, published)
}
