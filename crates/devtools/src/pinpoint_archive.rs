//! A generated Pinpoint event-stream archive, as Firehose wrote it to S3, with the exact answers a backfill and
//! rollup must give: for the backfill's tests and the demo. Deterministic (a seed).
//!
//! The records follow the Pinpoint developer guide's app event example ("App event data stream from Amazon
//! Pinpoint": `event_version` 3.0, `application`, `client{client_id, cognito_id}`, `device`, `session` in epoch
//! milliseconds, `attributes`, `metrics`), and its Cognito user pool events take the same layout with
//! `event_type` `_userauth.sign_in` / `_userauth.sign_up` / `_userauth.auth_fail` and the user in
//! `client.user_id` (no published example exists: README, "Pinpoint's auth events"). Messaging events
//! (`_email.*`, `_SMS.*`: event version 3.1 with `awsAccountId`) are mixed in, as a project's stream held them.
//!
//! The objects are laid out as Firehose lays them out: keys `<prefix>YYYY/MM/DD/HH/<stream>-1-<time>-<id>[.gz]`
//! by **arrival** hour (so a late event sits in a later hour's object than its own), records back to back without
//! a delimiter (Firehose's default) or one per line, GZIP or not, an hour's records split over several objects at
//! record boundaries, and now and then a record delivered twice (Firehose is at least once).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;

use chrono::{Duration, NaiveDate, NaiveDateTime, Timelike as _};
use serde_json::{Value, json};

use crate::synthetic::sub;

/// The Pinpoint project id of the generated records (the developer guide's example shape).
pub const APP_ID: &str = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6";
/// The Firehose stream named in the keys.
pub const FIREHOSE: &str = "pinpoint-event-stream";

/// A user's Pinpoint endpoint (an install).
pub fn endpoint(u: u32) -> String {
    format!("e{u:07x}-0000-4000-8000-00000000000e")
}

/// A user's Cognito identity (the session users' actor: the app event mapping's anonymous id).
pub fn identity(u: u32) -> String {
    format!("us-east-1:{u:08x}-0000-4000-8000-0000000000c0")
}

/// The generated archive and its answers.
#[derive(Debug, Clone, Default)]
pub struct Archive {
    /// (arrival time, record) in arrival order.
    pub records: Vec<(NaiveDateTime, Value)>,
    /// Authenticating users (sign-ins) per day.
    pub auth_active: BTreeMap<NaiveDate, BTreeSet<u32>>,
    /// Session users per day (by their Cognito identity).
    pub session_users: BTreeMap<NaiveDate, BTreeSet<u32>>,
    /// Sign-ins, sign-ups and failed authentications per day.
    pub sign_ins: BTreeMap<NaiveDate, u64>,
    /// Sign-ups per day.
    pub sign_ups: BTreeMap<NaiveDate, u64>,
    /// Failed authentications per day.
    pub failures: BTreeMap<NaiveDate, u64>,
    /// Sessions started per day.
    pub sessions: BTreeMap<NaiveDate, u64>,
    /// Records per family (as the backfill's summary names them).
    pub families: BTreeMap<&'static str, u64>,
}

impl Archive {
    /// Each authenticating user's first day.
    pub fn first_days(&self) -> BTreeMap<u32, NaiveDate> {
        let mut first = BTreeMap::new();
        for (d, users) in &self.auth_active {
            for u in users {
                first.entry(*u).or_insert(*d);
            }
        }
        first
    }

    /// Authenticating users of `d` active again within the 7 days after.
    pub fn retained(&self, d: NaiveDate) -> usize {
        self.auth_active.get(&d).map_or(0, |users| {
            users
                .iter()
                .filter(|u| {
                    (1..=7).any(|k| {
                        self.auth_active
                            .get(&(d + Duration::days(k)))
                            .is_some_and(|s| s.contains(u))
                    })
                })
                .count()
        })
    }
}

fn millis(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp_millis()
}

fn base(event_type: &str, at: NaiveDateTime, arrival: NaiveDateTime, u: u32) -> Value {
    json!({
        "event_type": event_type,
        "event_timestamp": millis(at),
        "arrival_timestamp": millis(arrival),
        "event_version": "3.0",
        "application": {
            "app_id": APP_ID,
            "cognito_identity_pool_id": "us-east-1:00000000-0000-4000-8000-000000000000",
            "package_name": "main.page",
            "sdk": {"name": "aws-sdk-mobile-analytics-js", "version": "0.9.1:2.4.8"},
            "title": "title",
            "version_name": "1.0",
            "version_code": "1"
        },
        "client": {"client_id": endpoint(u), "cognito_id": identity(u)},
        "device": {
            "locale": {"code": "en_US", "country": "US", "language": "en"},
            "make": "generic web browser",
            "model": "Unknown",
            "platform": {"name": if u.is_multiple_of(3) { "ios" } else { "android" }, "version": "10.10"}
        },
        "attributes": {},
        "metrics": {}
    })
}

fn auth(event_type: &str, at: NaiveDateTime, arrival: NaiveDateTime, u: u32) -> Value {
    let mut v = base(event_type, at, arrival, u);
    v["client"]["user_id"] = sub(u).into();
    v
}

fn messaging(event_type: &str, at: NaiveDateTime) -> Value {
    json!({
        "event_type": event_type,
        "event_timestamp": millis(at),
        "arrival_timestamp": millis(at),
        "event_version": "3.1",
        "application": {"app_id": APP_ID, "sdk": {}},
        "client": {"client_id": "messaging"},
        "device": {"platform": {}},
        "awsAccountId": "123456789012",
        "attributes": {"campaign_id": "c1"},
        "metrics": {}
    })
}

/// `users` users over `days` days from `first`, each active on one to six days (and no day without one): a
/// sign-in every active day (a
/// sign-up the first, a failed attempt before it for every seventh user), and for every other user a session
/// (start, a custom event, stop) and for every fifth a purchase; a tenth of the sessions arrive the next day
/// (late); two messaging events a day.
pub fn generate(first: NaiveDate, days: u32, users: u32, seed: u64) -> Archive {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut a = Archive::default();
    let day = |k: u32| first + Duration::days(i64::from(k));
    let push = |a: &mut Archive, family: &'static str, arrival: NaiveDateTime, v: Value| {
        *a.families.entry(family).or_default() += 1;
        a.records.push((arrival, v));
    };
    for k in 0..days {
        let d = day(k);
        let noon = d.and_hms_opt(12, 0, 0).unwrap_or_default();
        push(&mut a, "_email.*", noon, messaging("_email.send", noon));
        push(&mut a, "_SMS.*", noon, messaging("_SMS.success", noon));
    }
    // Each user's active days; a day nobody drew goes to one user, so that no day of the span is empty.
    let mut actives: Vec<BTreeSet<u32>> = (0..users)
        .map(|_| (0..rng.u32(1..=6)).map(|_| rng.u32(0..days)).collect())
        .collect();
    for k in 0..days {
        if users > 0 && !actives.iter().any(|a| a.contains(&k)) {
            actives[(k % users) as usize].insert(k);
        }
    }
    for (u, active) in (0..users).zip(actives) {
        for (i, &k) in active.iter().enumerate() {
            let d = day(k);
            let at = d.and_hms_opt(0, 0, 0).unwrap_or_default()
                + Duration::seconds(i64::from(rng.u32(0..85_000)));
            let arrive = |t: NaiveDateTime, rng: &mut fastrand::Rng| {
                t + Duration::milliseconds(i64::from(rng.u32(200..5_000)))
            };
            if i == 0 {
                let t = at - Duration::seconds(30);
                push(
                    &mut a,
                    "_userauth.*",
                    arrive(t, &mut rng),
                    auth("_userauth.sign_up", t, t, u),
                );
                *a.sign_ups.entry(t.date()).or_default() += 1;
            }
            if u.is_multiple_of(7) {
                let t = at - Duration::seconds(5);
                push(
                    &mut a,
                    "_userauth.*",
                    arrive(t, &mut rng),
                    auth("_userauth.auth_fail", t, t, u),
                );
                *a.failures.entry(t.date()).or_default() += 1;
            }
            let arrival = arrive(at, &mut rng);
            push(
                &mut a,
                "_userauth.*",
                arrival,
                auth("_userauth.sign_in", at, arrival, u),
            );
            a.auth_active.entry(at.date()).or_default().insert(u);
            *a.sign_ins.entry(at.date()).or_default() += 1;
            if u.is_multiple_of(2) {
                let start = at + Duration::seconds(10);
                let late = rng.u32(0..10) == 0;
                let session =
                    json!({"session_id": format!("s-{u}-{k}"), "start_timestamp": millis(start)});
                let events = [
                    ("_session.start", start, 0),
                    ("level.complete", start + Duration::seconds(60), 0),
                    ("_monetization.purchase", start + Duration::seconds(90), 1),
                    ("_session.stop", start + Duration::seconds(300), 0),
                ];
                for (name, t, purchase) in events {
                    if purchase == 1 && !u.is_multiple_of(5) {
                        continue;
                    }
                    let arrival = if late {
                        t + Duration::days(1)
                    } else {
                        arrive(t, &mut rng)
                    };
                    let mut v = base(name, t, arrival, u);
                    v["session"] = session.clone();
                    match name {
                        "_session.stop" => {
                            v["session"]["stop_timestamp"] = millis(t).into();
                        }
                        "level.complete" => {
                            v["attributes"] = json!({"level": "3"});
                            v["metrics"] = json!({"score": 1250});
                        }
                        "_monetization.purchase" => {
                            v["attributes"] =
                                json!({"_currency": "USD", "_product_id": "gems_100"});
                            v["metrics"] = json!({"_item_price": 0.99, "_quantity": 1});
                        }
                        _ => {}
                    }
                    let family = match name {
                        "_session.start" | "_session.stop" => "_session.*",
                        "_monetization.purchase" => "_monetization.*",
                        _ => "custom app events",
                    };
                    push(&mut a, family, arrival, v);
                }
                a.session_users.entry(start.date()).or_default().insert(u);
                *a.sessions.entry(start.date()).or_default() += 1;
            }
        }
    }
    a.records.sort_by(|x, y| {
        x.0.cmp(&y.0)
            .then_with(|| x.1.to_string().cmp(&y.1.to_string()))
    });
    a
}

/// How the objects are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Every object one way: records back to back (Firehose's default), GZIP.
    Default,
    /// Each object drawn: GZIP or not, back to back or one per line; and a record now and then delivered twice
    /// (in the next object).
    Mixed,
}

/// The archive as Firehose objects under `prefix`: (key, bytes), in key order.
pub fn objects(
    archive: &Archive,
    prefix: &str,
    layout: Layout,
    seed: u64,
) -> Vec<(String, Vec<u8>)> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut by_hour: BTreeMap<NaiveDateTime, Vec<&Value>> = BTreeMap::new();
    for (arrival, v) in &archive.records {
        let hour = arrival
            .date()
            .and_hms_opt(arrival.hour(), 0, 0)
            .unwrap_or_default();
        by_hour.entry(hour).or_default().push(v);
    }
    let mut out = Vec::new();
    let mut again: Option<Value> = None;
    let mut n = 0u32;
    for (hour, records) in by_hour {
        let mut rest: &[&Value] = &records;
        while !rest.is_empty() {
            let take = rng.usize(1..=40).min(rest.len());
            let (chunk, tail) = rest.split_at(take);
            rest = tail;
            let (gzip, lines) = match layout {
                Layout::Default => (true, false),
                Layout::Mixed => (rng.bool(), rng.bool()),
            };
            let mut body = Vec::new();
            let mut write = |v: &Value| {
                body.extend_from_slice(v.to_string().as_bytes());
                if lines {
                    body.push(b'\n');
                }
            };
            if let Some(v) = again.take() {
                write(&v);
            }
            for v in chunk {
                write(v);
            }
            if layout == Layout::Mixed && rng.u32(0..20) == 0 {
                again = chunk.last().map(|v| (*v).clone());
            }
            n += 1;
            let written = hour + Duration::seconds(i64::from(rng.u32(0..3_600)));
            let key = format!(
                "{prefix}{}/{FIREHOSE}-1-{}-{n:08x}-0000-4000-8000-000000000000{}",
                hour.format("%Y/%m/%d/%H"),
                written.format("%Y-%m-%d-%H-%M-%S"),
                if gzip { ".gz" } else { "" }
            );
            let bytes = if gzip { gzip_bytes(&body) } else { body };
            out.push((key, bytes));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `bytes` gzipped.
pub fn gzip_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}

/// Uploads `objects` to `bucket`.
pub async fn upload(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    objects: &[(String, Vec<u8>)],
) -> Result<(), String> {
    for (key, bytes) in objects {
        s3.put_object()
            .bucket(bucket)
            .key(key)
            .body(aws_sdk_s3::primitives::ByteStream::from(bytes.clone()))
            .send()
            .await
            .map_err(|e| format!("put {key}: {}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 10, 1).unwrap_or_default()
    }

    #[test]
    fn the_archive_has_its_users_and_days_only() {
        let a = generate(first(), 29, 30, 20_261_001);
        let users: BTreeSet<u32> = a.auth_active.values().flatten().copied().collect();
        assert!(users.len() <= 30 && users.len() >= 25, "{}", users.len());
        assert!(
            a.auth_active
                .keys()
                .all(|d| *d >= first() && *d < first() + Duration::days(29))
        );
        assert_eq!(a.auth_active.len(), 29, "every day has a sign-in");
        println!("{} records, {} users", a.records.len(), users.len());
    }
}
