//! A month of events shaped like a real app, for `make bench`'s DynamoDB cost figures: the app of 1M
//! monthly users, 300k daily and 10 events per user and day, scaled down by `scale` (the cost per event does not
//! depend on the scale: every request is per actor and day, or per batch). Per active user and day: a sign-in (or,
//! every other day, a token refresh: the user stayed signed in), a token refresh, an app session start, and 7
//! other app events in that session: 5 screen views, a custom event (one user-day in 20: a purchase) and the
//! session's stop with its duration (3 of the 10 are sign-ins, refreshes or session starts). A fifth of the users
//! are active daily, the rest about one day in eight, so that daily over monthly users is 0.3. Delivery: 3% of
//! the events a day late, 5% twice (a producer's resend), in batches of the rollup's batch size per shard of two
//! shards per stream,
//! and every seventh batch delivered again (a function error). Deterministic (fixed seed).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::synthetic::{auth_event, partition_key};

/// The month's batches: (stream, shard, documents), in delivery order, and the number of events generated.
#[derive(Debug)]
pub struct Workload {
    /// Monthly users.
    pub users: u32,
    /// Events generated (before repeats and redeliveries).
    pub events: u64,
    /// Batches in delivery order: (stream, shard, documents, delivered twice).
    pub batches: Vec<(&'static str, usize, Vec<Value>, bool)>,
}

fn app(
    id: &str,
    event: &str,
    install: &str,
    user: &str,
    d: u32,
    second: u32,
    session: &str,
) -> Value {
    let ts = format!(
        "2026-11-{d:02}T{:02}:{:02}:{:02}.000Z",
        second / 3600,
        second / 60 % 60,
        second % 60
    );
    json!({"schema": "app-event/v1", "event_id": id, "type": "track", "event": event,
           "anonymous_id": install, "user_id": user, "timestamp": ts, "received_at": ts, "sent_at": null,
           "clock": {"time_source": "client", "original_timestamp": ts, "offset_ms": null},
           "session": {"id": session, "start": ts, "stop": null, "duration_ms": null},
           "context": {"platform": "android", "app_version": "2.4.1", "locale": "en-US", "device_id": install,
                       "session_id": session, "session_start": ts, "input_shape": "enrichment"},
           "properties": {}, "traits": {}, "source": null})
}

/// Generates the month for `users` monthly users (1M / `users` is the scale), in batches of `batch_size` records
/// per shard (the template's `RollupBatchSize`).
pub fn generate(users: u32, batch_size: usize) -> Workload {
    let mut rng = fastrand::Rng::with_seed(20_261_203);
    let mut n = 0u64;
    let mut id = || {
        n += 1;
        bridge_core::envelope::event_id(&["workload", &n.to_string()])
    };
    // (arrival day, stream, doc)
    let mut arrivals: Vec<(u32, u32, &'static str, Value)> = Vec::new();
    let mut events = 0u64;
    for u in 0..users {
        let daily = u % 5 == 0;
        let install = format!("install-{u:07}");
        let user = format!("{u:08x}-0000-4000-8000-000000000000");
        for d in 1..=30u32 {
            if !daily && rng.u8(0..8) != 0 {
                continue;
            }
            let second = rng.u32(0..80_000);
            let session = format!("s-{u}-{d}");
            let sign_in = if rng.bool() {
                "_userauth.sign_in"
            } else {
                "_userauth.token_refresh"
            };
            let mut docs = vec![
                ("auth", auth_event(&id(), sign_in, "trigger", u, d, second)),
                (
                    "auth",
                    auth_event(
                        &id(),
                        "_userauth.token_refresh",
                        "trigger",
                        u,
                        d,
                        second + 60,
                    ),
                ),
                (
                    "app",
                    app(
                        &id(),
                        "_session.start",
                        &install,
                        &user,
                        d,
                        second + 1,
                        &session,
                    ),
                ),
            ];
            // 5 screen views, a custom event or (one user-day in 20) a purchase, and the session's stop with its
            // duration.
            for k in 0..5 {
                docs.push((
                    "app",
                    app(
                        &id(),
                        "_screen_view",
                        &install,
                        &user,
                        d,
                        second + 2 + k,
                        &session,
                    ),
                ));
            }
            let mut sixth = app(
                &id(),
                "level_complete",
                &install,
                &user,
                d,
                second + 8,
                &session,
            );
            if rng.u8(0..20) == 0 {
                sixth["event"] = "_monetization.purchase".into();
                sixth["properties"] = json!({"_currency": "USD", "_product_id": "gems-100",
                                             "_item_price": 1.99, "_quantity": 1});
            }
            docs.push(("app", sixth));
            let duration = rng.u64(1_000..1_800_000);
            let mut stop = app(
                &id(),
                "_session.stop",
                &install,
                &user,
                d,
                second + 9,
                &session,
            );
            stop["session"]["duration_ms"] = duration.into();
            docs.push(("app", stop));
            for (stream, doc) in docs {
                events += 1;
                let late = rng.u8(0..100) < 3;
                let at = second + rng.u32(0..600);
                arrivals.push((if late { d + 1 } else { d }, at, stream, doc.clone()));
                if rng.u8(0..100) < 5 {
                    arrivals.push((
                        if late { d + 1 } else { d },
                        at + rng.u32(1..120),
                        stream,
                        doc,
                    ));
                }
            }
        }
    }
    arrivals.sort_by_key(|a| (a.0, a.1));
    // Per stream and shard (by partition key), batches of `batch_size` in arrival order.
    let mut open: BTreeMap<(&'static str, usize), Vec<Value>> = BTreeMap::new();
    let mut batches = Vec::new();
    let mut count = 0usize;
    for (_, _, stream, doc) in arrivals {
        let shard = usize::from(
            partition_key(&doc)
                .bytes()
                .fold(0u8, |a, b| a.wrapping_add(b))
                % 2,
        );
        let list = open.entry((stream, shard)).or_default();
        list.push(doc);
        if list.len() == batch_size.max(1) {
            count += 1;
            batches.push((stream, shard, std::mem::take(list), count % 7 == 3));
        }
    }
    for ((stream, shard), docs) in open {
        if !docs.is_empty() {
            count += 1;
            batches.push((stream, shard, docs, count % 7 == 3));
        }
    }
    Workload {
        users,
        events,
        batches,
    }
}
