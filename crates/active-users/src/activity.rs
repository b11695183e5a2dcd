//! What one analytics record says about activity: who was active, by which definition, on which day, in which
//! scopes and dimensions, and which event counters it moves. Pure: no I/O.
//!
//! **Two definitions of active, never mixed.** Each has its own markers, counters and sketches:
//! - [`Definition::Authenticating`] (trusted, from `cognito-auth-event/v1`): a user (`user_sub`) with a successful
//!   sign-in (`_userauth.sign_in`), tokens issued (`_userauth.tokens_issued`: sign-in, hosted UI, new-password
//!   challenge, device authentication) or a token refresh (`_userauth.token_refresh`) that day.
//! - [`Definition::SessionUsers`] and [`Definition::SessionDevices`] (Pinpoint's own, from `app-event/v1`, client
//!   input): installs (the anonymous id, else `user_id`) and devices (`context.device_id`) in an app session that
//!   day: a `_session.start`, or any event that carries its session (Amplify's Android and Swift enrichment
//!   clients send no session events, only a session id on every event).
//!
//! **One person, one count (session definition).** The session actor is the anonymous id whenever the event has
//! one: every client shape carries an install-stable one (the enrichment envelope's `client_id`, a Pinpoint
//! endpoint id, the Kinesis partition key of auto-tracked records, our `anonymous_id`), and a signed-in event
//! carries it beside `user_id`. So a person signed out and then signed in on one install, on one day or across
//! days, is one actor; `user_id` is the actor only of an event without an anonymous id. Pinpoint counted
//! endpoints the same way. The app event stream is partitioned the same way (anonymous id first), so an actor's
//! events are in one shard: one rollup lane.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

/// The auth event schema this function reads.
pub const AUTH_SCHEMA: &str = "cognito-auth-event/v1";
/// The app event schema this function reads.
pub const APP_SCHEMA: &str = "app-event/v1";
/// The app event that makes a user or device active (Pinpoint's definition).
pub const SESSION_START: &str = "_session.start";
/// The app event that ends a session (its `session.duration_ms`: the client's, else stop - start).
pub const SESSION_STOP: &str = "_session.stop";
/// Pinpoint's purchase event: attributes `_currency`, `_product_id`; metrics `_item_price`, `_quantity`.
pub const PURCHASE: &str = "_monetization.purchase";

/// Auth event types that make a user an authenticating user that day.
pub const AUTHENTICATING_TYPES: &[&str] = &[
    "_userauth.sign_in",
    "_userauth.tokens_issued",
    "_userauth.token_refresh",
];

/// Event counters moved by auth events: (event type, counter).
pub const AUTH_COUNTERS: &[(&str, Counter)] = &[
    ("_userauth.sign_up", Counter::SignUps),
    ("_userauth.sign_in", Counter::SignIns),
    ("_userauth.sign_in_attempt", Counter::SignInAttempts),
    ("_userauth.auth_fail", Counter::AuthFailures),
    ("_userauth.token_refresh", Counter::TokenRefreshes),
];

/// A definition of "active".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Definition {
    /// Users with a successful sign-in, tokens issued or a token refresh (auth events).
    Authenticating,
    /// Installs (anonymous id, else user id) in an app session (app events).
    SessionUsers,
    /// Devices (`context.device_id`) in an app session (app events).
    SessionDevices,
    /// Installs (as [`Definition::SessionUsers`]) with a purchase of a valid price that day (app events).
    PayingUsers,
}

impl Definition {
    /// Every definition.
    pub const ALL: [Self; 4] = [
        Self::Authenticating,
        Self::SessionUsers,
        Self::SessionDevices,
        Self::PayingUsers,
    ];

    /// Its name in keys, metrics and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authenticating => "authenticating_users",
            Self::SessionUsers => "session_users",
            Self::SessionDevices => "session_devices",
            Self::PayingUsers => "paying_users",
        }
    }
}

/// An event counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Counter {
    /// Confirmed sign-ups (`_userauth.sign_up`).
    SignUps,
    /// Successful sign-ins (`_userauth.sign_in`).
    SignIns,
    /// Sign-in attempts (`_userauth.sign_in_attempt`, pre authentication).
    SignInAttempts,
    /// Failed sign-ins (`_userauth.auth_fail`, user-activity logs only).
    AuthFailures,
    /// Token refreshes (`_userauth.token_refresh`).
    TokenRefreshes,
    /// App sessions started (`_session.start`).
    Sessions,
    /// App sessions ended (`_session.stop`).
    SessionsEnded,
    /// Purchases (`_monetization.purchase`), whatever their price.
    Purchases,
}

impl Counter {
    /// Every counter.
    pub const ALL: [Self; 8] = [
        Self::SignUps,
        Self::SignIns,
        Self::SignInAttempts,
        Self::AuthFailures,
        Self::TokenRefreshes,
        Self::Sessions,
        Self::SessionsEnded,
        Self::Purchases,
    ];

    /// Its name in rollup items (prefixed by the origin) and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignUps => "sign_ups",
            Self::SignIns => "sign_ins",
            Self::SignInAttempts => "sign_in_attempts",
            Self::AuthFailures => "auth_failures",
            Self::TokenRefreshes => "token_refreshes",
            Self::Sessions => "sessions",
            Self::SessionsEnded => "sessions_ended",
            Self::Purchases => "purchases",
        }
    }
}

/// Why a record is not an activity.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ActivityError {
    /// Not JSON, or not one of the two schemas, or a required field is missing or of the wrong type.
    #[error("not a {AUTH_SCHEMA} or {APP_SCHEMA} record: {0}")]
    NotAnalytics(String),
}

/// One actor active by one definition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Active {
    /// The definition.
    pub definition: Definition,
    /// The user sub, user id, anonymous id or device id.
    pub actor: String,
}

/// What one record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    /// The event's id: a redelivered or re-sent event has the same one.
    pub event_id: String,
    /// The day it happened (UTC), from the event's own time: a late event lands in its own day.
    pub day: NaiveDate,
    /// Where it counts: `pool=<id>/client=<id>` and `pool=<id>` for auth events, `app` for app events.
    pub scopes: Vec<String>,
    /// Who was active, by which definition (none for most event types).
    pub actives: Vec<Active>,
    /// The configured dimensions the event carries: (name, value).
    pub dimensions: Vec<(String, String)>,
    /// The counters it moves.
    pub counters: Vec<Counter>,
    /// Amounts it adds with its counters, once per event id: (attribute without the origin, amount). A session
    /// stop's duration bucket ([`duration_bucket`]), a purchase's revenue and units per currency ([`purchase`]).
    pub amounts: Vec<(String, i64)>,
    /// What it tells of its session (an app event of a session with a view, a long duration or its stop).
    pub session: Option<SessionMark>,
    /// `trigger`, `activity_log` or `snapshot` for auth events, `app` for app events: counters are kept per
    /// origin, since a deployment with both forwarders sees a successful sign-in twice.
    pub origin: String,
}

/// Views: the screen and page view events of Pinpoint, Amplify and Amplify JS auto-tracking.
pub const VIEW_EVENTS: &[&str] = &["_screen_view", "pageView", "_page_view"];
/// A session is engaged past this duration (Clickstream Analytics on AWS: more than 10 seconds), or with 2 views.
pub const ENGAGED_MS: u64 = 10_000;

/// What an app event tells of its session's engagement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionMark {
    /// The install (the session definition's actor), whose history remembers the session.
    pub install: String,
    /// The session's id, as 16 hex digits of its hash.
    pub id: String,
    /// Its day: `session.start`'s, else the event's.
    pub day: NaiveDate,
    /// The event is a view: its id as 16 hex digits of its hash.
    pub view: Option<String>,
    /// The event gives the session a duration over [`ENGAGED_MS`].
    pub long: bool,
    /// The event is the session's stop: its counters (ended, the duration bucket) count once per session.
    pub stop: bool,
}

#[derive(Deserialize)]
struct Head {
    schema: String,
}

#[derive(Deserialize)]
struct AuthRecord {
    event_id: String,
    #[serde(rename = "type")]
    kind: String,
    timestamp: String,
    origin: String,
    user_pool_id: String,
    client_id: Option<String>,
    user_sub: Option<String>,
    #[serde(default)]
    context: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct AppRecord {
    event_id: String,
    event: String,
    timestamp: String,
    anonymous_id: Option<String>,
    user_id: Option<String>,
    context: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    session: Option<AppSession>,
    #[serde(default)]
    properties: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct AppSession {
    id: Option<String>,
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    duration_ms: Option<u64>,
}

/// The UTC day of an RFC 3339 time.
fn day_of(timestamp: &str) -> Result<NaiveDate, ActivityError> {
    DateTime::parse_from_rfc3339(timestamp)
        .map(|t| t.with_timezone(&Utc).date_naive())
        .map_err(|e| ActivityError::NotAnalytics(format!("timestamp {timestamp:?}: {e}")))
}

/// Bytes of a dimension value the rollup keeps (cut at a character boundary): values come from apps and
/// `clientMetadata`, and each one is an attribute name in a counter item and a string in a history.
pub const DIMENSION_VALUE_BYTES: usize = 128;

/// `v` cut to at most `bytes` bytes, at a character boundary.
fn cut(v: &str, bytes: usize) -> &str {
    let mut end = v.len().min(bytes);
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    &v[..end]
}

/// The prefix of a session duration bucket's counter: `session_s.<lower bound in seconds>` ([`duration_bucket`]).
pub const SESSION_S: &str = "session_s.";
/// Session stops without a duration (neither the client's nor a start to count from).
pub const SESSIONS_NO_DURATION: &str = "sessions_no_duration";
/// The prefix of a currency's revenue, in millionths of its unit: `revenue_micros.<ISO 4217 code>`, `.none`
/// (no `_currency`) or `.other` (not an ISO 4217 code).
pub const REVENUE_MICROS: &str = "revenue_micros.";
/// The prefix of a currency's units sold (the sum of `_quantity`): `units.<code>`.
pub const UNITS: &str = "units.";
/// The prefix of purchases that add no revenue, by reason: `purchases_invalid.price` (no price, or not a number,
/// or past a billion), `.quantity` (not a whole number from 1 to a million), `.amount` (price x quantity past a
/// billion).
pub const PURCHASES_INVALID: &str = "purchases_invalid.";

/// The lower bounds, in seconds, of the session duration buckets: every second to 10 s (the engaged-session
/// threshold), then steps of at most a quarter of the bound, to 7 days (the longest session the app path
/// accepts). The median and p90 of a day are read from them: exact to the bucket.
pub const DURATION_BOUNDS: &[u64] = &[
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 18, 20, 22, 25, 30, 35, 40, 45, 50, 55, 60,
    70, 80, 90, 100, 110, 120, 135, 150, 165, 180, 210, 240, 270, 300, 360, 420, 480, 540, 600,
    720, 840, 960, 1080, 1200, 1500, 1800, 2100, 2400, 2700, 3000, 3300, 3600, 4200, 4800, 5400,
    6000, 6600, 7200, 9000, 10800, 12600, 14400, 16200, 18000, 21600, 25200, 28800, 32400, 36000,
    43200, 50400, 57600, 64800, 72000, 79200, 86400, 100800, 115200, 129600, 144000, 158400,
    172800, 216000, 259200, 302400, 345600, 388800, 432000, 518400, 604800,
];

/// The bucket of a duration: the lower bound, in seconds, of the last bucket at or below it.
pub fn duration_bucket(ms: u64) -> u64 {
    let s = ms / 1000;
    let i = DURATION_BOUNDS.partition_point(|b| *b <= s);
    DURATION_BOUNDS[i.saturating_sub(1)]
}

/// A duration bucket's counter name read back: `<origin>.session_s.<bucket>` (an origin of lowercase letters and
/// `_`, never a dimension counter) as (origin, bucket).
pub fn duration_bucket_key(name: &str) -> Option<(&str, u64)> {
    let (origin, bucket) = name.split_once(&format!(".{SESSION_S}"))?;
    let plain = !origin.is_empty() && origin.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    let digits = !bucket.is_empty() && bucket.bytes().all(|b| b.is_ascii_digit());
    let bucket = bucket.parse().ok()?;
    (plain && digits).then_some((origin, bucket))
}

/// The duration (lower bound of its bucket, seconds) at or below which `share` (0 to 1) of the sessions of a
/// histogram (`bucket` -> count) fall; `None` without sessions.
pub fn duration_quantile(
    histogram: &std::collections::BTreeMap<u64, i64>,
    share: f64,
) -> Option<u64> {
    let total: i64 = histogram.values().filter(|n| **n > 0).sum();
    if total <= 0 {
        return None;
    }
    // The rank of the quantile: the smallest r with r >= share * total (nearest-rank method), at least 1.
    let rank = ((share * total as f64).ceil() as i64).max(1);
    let mut seen = 0;
    for (bucket, n) in histogram {
        seen += (*n).max(0);
        if seen >= rank {
            return Some(*bucket);
        }
    }
    histogram.keys().next_back().copied()
}

/// ISO 4217 currency codes (active, 2026): a purchase's `_currency` outside them counts as `other`, so that a
/// client cannot add an attribute per invented code to a day's item.
pub const CURRENCIES: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BHD",
    "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF",
    "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN",
    "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD",
    "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES",
    "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL",
    "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN",
    "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP",
    "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK",
    "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT",
    "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VED", "VES",
    "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
];

/// A purchase as counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchase {
    /// Its ISO 4217 code, `none` or `other`.
    pub currency: String,
    /// Price times quantity, in millionths of the currency's unit (rounded to the nearest).
    pub micros: i64,
    /// The quantity.
    pub units: i64,
}

/// A number from a property: a JSON number, or a string of one (`-?digits[.digits]`, as the warehouse's SQL reads
/// it).
fn number(v: Option<&serde_json::Value>) -> Option<f64> {
    match v? {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(t) => {
            let body = t.strip_prefix('-').unwrap_or(t);
            let (int, frac) = body.split_once('.').unwrap_or((body, "0"));
            let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
            (digits(int) && digits(frac))
                .then(|| t.parse().ok())
                .flatten()
        }
        _ => None,
    }
    .filter(|x: &f64| x.is_finite())
}

/// Reads a purchase's properties (Pinpoint's names): `_item_price` (a number, or a string of one; at most a
/// billion either way), `_quantity` (a whole number from 1 to a million; 1 when absent), `_currency`; the amount
/// (price x quantity) at most a billion. `Err`: why it adds no revenue (`price`, `quantity` or `amount`).
pub fn purchase(
    properties: &serde_json::Map<String, serde_json::Value>,
) -> Result<Purchase, &'static str> {
    let price = number(properties.get("_item_price"))
        .filter(|p| p.abs() <= 1e9)
        .ok_or("price")?;
    let units = match properties.get("_quantity") {
        None => 1.0,
        q => number(q)
            .filter(|q| q.fract() == 0.0 && (1.0..=1e6).contains(q))
            .ok_or("quantity")?,
    };
    // A purchase's amount is at most a billion units: a day's sum stays far inside i64 micros for any real app.
    if (price * units).abs() > 1e9 {
        return Err("amount");
    }
    let currency = match properties.get("_currency").and_then(|c| c.as_str()) {
        None | Some("") => "none".to_owned(),
        Some(c) if CURRENCIES.binary_search(&c).is_ok() => c.to_owned(),
        Some(_) => "other".to_owned(),
    };
    Ok(Purchase {
        currency,
        // Up to 1e9 x 1e6 units, i.e. 1e21 micros: past i64 (9.2e18), it saturates.
        micros: (price * units * 1e6)
            .round()
            .clamp(i64::MIN as f64, i64::MAX as f64) as i64,
        units: units as i64,
    })
}

/// Reads one record: an auth event or an app event (by its `schema`), keeping the `dimensions` named.
pub fn read(data: &[u8], dimensions: &[String]) -> Result<Activity, ActivityError> {
    let bad = |e: &dyn std::fmt::Display| ActivityError::NotAnalytics(e.to_string());
    let head: Head = serde_json::from_slice(data).map_err(|e| bad(&e))?;
    let dims = |context: &serde_json::Map<String, serde_json::Value>| -> Vec<(String, String)> {
        dimensions
            .iter()
            .filter_map(|d| {
                context
                    .get(d)
                    .and_then(serde_json::Value::as_str)
                    .filter(|v| !v.is_empty())
                    .map(|v| (d.clone(), cut(v, DIMENSION_VALUE_BYTES).to_owned()))
            })
            .collect()
    };
    match head.schema.as_str() {
        AUTH_SCHEMA => {
            let r: AuthRecord = serde_json::from_slice(data).map_err(|e| bad(&e))?;
            let pool = format!("pool={}", r.user_pool_id);
            let client = format!("{pool}/client={}", r.client_id.as_deref().unwrap_or("-"));
            let actives = match &r.user_sub {
                Some(sub) if AUTHENTICATING_TYPES.contains(&r.kind.as_str()) => vec![Active {
                    definition: Definition::Authenticating,
                    actor: sub.clone(),
                }],
                _ => Vec::new(),
            };
            let counters = AUTH_COUNTERS
                .iter()
                .filter(|(kind, _)| *kind == r.kind)
                .map(|(_, c)| *c)
                .collect();
            Ok(Activity {
                event_id: r.event_id,
                day: day_of(&r.timestamp)?,
                scopes: vec![client, pool],
                actives,
                dimensions: dims(&r.context),
                counters,
                amounts: Vec::new(),
                session: None,
                origin: r.origin,
            })
        }
        APP_SCHEMA => {
            let r: AppRecord = serde_json::from_slice(data).map_err(|e| bad(&e))?;
            let mut actives = Vec::new();
            let mut counters = Vec::new();
            let mut amounts = Vec::new();
            let install = r.anonymous_id.as_ref().or(r.user_id.as_ref());
            match r.event.as_str() {
                SESSION_START => counters.push(Counter::Sessions),
                SESSION_STOP => {
                    counters.push(Counter::SessionsEnded);
                    match r.session.as_ref().and_then(|s| s.duration_ms) {
                        Some(ms) => {
                            amounts.push((format!("{SESSION_S}{}", duration_bucket(ms)), 1))
                        }
                        None => amounts.push((SESSIONS_NO_DURATION.to_owned(), 1)),
                    }
                }
                PURCHASE => {
                    counters.push(Counter::Purchases);
                    match purchase(&r.properties) {
                        Ok(p) => {
                            amounts.push((format!("{REVENUE_MICROS}{}", p.currency), p.micros));
                            amounts.push((format!("{UNITS}{}", p.currency), p.units));
                            if let Some(user) = install {
                                actives.push(Active {
                                    definition: Definition::PayingUsers,
                                    actor: user.clone(),
                                });
                            }
                        }
                        Err(why) => amounts.push((format!("{PURCHASES_INVALID}{why}"), 1)),
                    }
                }
                _ => {}
            }
            let in_session = r.event == SESSION_START
                || r.session.as_ref().is_some_and(|s| s.id.is_some())
                || r.context.get("session_id").is_some_and(|v| v.is_string());
            if in_session {
                if let Some(user) = install {
                    actives.push(Active {
                        definition: Definition::SessionUsers,
                        actor: user.clone(),
                    });
                }
                if let Some(device) = r.context.get("device_id").and_then(|d| d.as_str()) {
                    actives.push(Active {
                        definition: Definition::SessionDevices,
                        actor: device.to_owned(),
                    });
                }
            }
            let day = day_of(&r.timestamp)?;
            let session = match (&r.session, install) {
                (
                    Some(AppSession {
                        id: Some(id),
                        start,
                        duration_ms,
                    }),
                    Some(install),
                ) => {
                    let view = VIEW_EVENTS
                        .contains(&r.event.as_str())
                        .then(|| crate::plan::short_id(&r.event_id));
                    let long = duration_ms.is_some_and(|ms| ms > ENGAGED_MS);
                    let stop = r.event == SESSION_STOP;
                    (view.is_some() || long || stop).then(|| SessionMark {
                        install: install.clone(),
                        id: bridge_core::envelope::event_id(&["session", id])[..16].to_owned(),
                        day: start.as_deref().and_then(|t| day_of(t).ok()).unwrap_or(day),
                        view,
                        long,
                        stop,
                    })
                }
                _ => None,
            };
            Ok(Activity {
                event_id: r.event_id,
                day,
                scopes: vec!["app".to_owned()],
                actives,
                dimensions: dims(&r.context),
                counters,
                amounts,
                session,
                origin: "app".to_owned(),
            })
        }
        other => Err(bad(&format!("schema {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dims() -> Vec<String> {
        vec!["platform".into(), "app_version".into(), "locale".into()]
    }

    fn auth(kind: &str, sub: Option<&str>) -> Vec<u8> {
        serde_json::to_vec(&json!({"schema": AUTH_SCHEMA, "event_id": "e1", "type": kind,
            "timestamp": "2026-11-03T23:59:59Z", "received_at": null, "source": null, "origin": "trigger",
            "user_pool_id": "us-east-1_EXAMPLE", "client_id": "client1", "user_sub": sub,
            "context": {"platform": "ios", "locale": "en-US"}}))
        .unwrap()
    }

    #[test]
    fn dimension_values_are_cut_at_128_bytes_on_a_character_boundary() {
        let long = format!("a{}", "\u{1D11E}".repeat(100));
        let mut doc: serde_json::Value =
            serde_json::from_slice(&auth("_userauth.sign_in", Some("s"))).unwrap();
        doc["context"] = json!({"platform": long});
        let a = read(&serde_json::to_vec(&doc).unwrap(), &dims()).unwrap();
        let (_, v) = &a.dimensions[0];
        assert_eq!(
            v.len(),
            1 + 31 * 4,
            "1 + 31 four-byte characters: the 32nd would pass 128 bytes"
        );
        assert!(long.starts_with(v.as_str()));
    }

    #[test]
    fn a_sign_in_makes_an_authenticating_user_and_counts_a_sign_in_in_both_scopes() {
        let a = read(&auth("_userauth.sign_in", Some("sub-1")), &dims()).unwrap();
        assert_eq!(a.day, NaiveDate::from_ymd_opt(2026, 11, 3).unwrap());
        assert_eq!(
            a.scopes,
            vec![
                "pool=us-east-1_EXAMPLE/client=client1",
                "pool=us-east-1_EXAMPLE"
            ]
        );
        assert_eq!(
            a.actives,
            vec![Active {
                definition: Definition::Authenticating,
                actor: "sub-1".into()
            }]
        );
        assert_eq!(a.counters, vec![Counter::SignIns]);
        assert_eq!(
            a.dimensions,
            vec![
                ("platform".into(), "ios".into()),
                ("locale".into(), "en-US".into())
            ]
        );
    }

    #[test]
    fn attempts_failures_and_sign_ups_count_but_make_nobody_active() {
        for (kind, counter) in [
            ("_userauth.sign_in_attempt", Counter::SignInAttempts),
            ("_userauth.auth_fail", Counter::AuthFailures),
            ("_userauth.sign_up", Counter::SignUps),
        ] {
            let a = read(&auth(kind, Some("sub-1")), &dims()).unwrap();
            assert!(a.actives.is_empty(), "{kind}");
            assert_eq!(a.counters, vec![counter], "{kind}");
        }
        let refresh = read(&auth("_userauth.token_refresh", Some("s")), &dims()).unwrap();
        assert_eq!(refresh.actives.len(), 1);
        assert_eq!(refresh.counters, vec![Counter::TokenRefreshes]);
        let no_sub = read(&auth("_userauth.sign_in", None), &dims()).unwrap();
        assert!(no_sub.actives.is_empty());
    }

    fn app(event: &str, user: Option<&str>) -> Vec<u8> {
        serde_json::to_vec(&json!({"schema": APP_SCHEMA, "event_id": "a1", "type": "track", "event": event,
            "anonymous_id": "anon-1", "user_id": user, "timestamp": "2026-11-04T08:00:00Z",
            "context": {"platform": "android", "app_version": "2.1.0", "locale": null, "device_id": "dev-1"}}))
        .unwrap()
    }

    #[test]
    fn a_session_start_makes_a_session_user_and_device_and_nothing_else_does() {
        let a = read(&app(SESSION_START, Some("u-1")), &dims()).unwrap();
        assert_eq!(a.scopes, vec!["app"]);
        let defs: Vec<_> = a
            .actives
            .iter()
            .map(|x| (x.definition, x.actor.as_str()))
            .collect();
        assert_eq!(
            defs,
            vec![
                (Definition::SessionUsers, "anon-1"),
                (Definition::SessionDevices, "dev-1")
            ],
            "signed in or not, the install is the session actor"
        );
        assert_eq!(a.counters, vec![Counter::Sessions]);
        let signed_out = read(&app(SESSION_START, None), &dims()).unwrap();
        assert_eq!(signed_out.actives[0].actor, "anon-1");
        let other = read(&app("level_complete", Some("u-1")), &dims()).unwrap();
        assert!(other.actives.is_empty() && other.counters.is_empty() && other.amounts.is_empty());
        // A stop outside a session's other events ends one (without a duration here) and makes nobody active.
        let stop = read(&app(SESSION_STOP, Some("u-1")), &dims()).unwrap();
        assert!(stop.actives.is_empty());
        assert_eq!(stop.counters, vec![Counter::SessionsEnded]);
        assert_eq!(stop.amounts, vec![(SESSIONS_NO_DURATION.to_owned(), 1)]);
        // An event in a session (the enrichment clients send no session events) makes its install active.
        let mut in_session: serde_json::Value =
            serde_json::from_slice(&app("level_complete", None)).unwrap();
        in_session["session"] =
            json!({"id": "s-1", "start": null, "stop": null, "duration_ms": null});
        let a = read(&serde_json::to_vec(&in_session).unwrap(), &dims()).unwrap();
        assert_eq!(a.actives.len(), 2);
        assert!(
            a.counters.is_empty(),
            "only a _session.start counts a session"
        );
        // Without an anonymous id, the user is the actor.
        let mut user_only: serde_json::Value =
            serde_json::from_slice(&app(SESSION_START, Some("u-2"))).unwrap();
        user_only["anonymous_id"] = serde_json::Value::Null;
        let a = read(&serde_json::to_vec(&user_only).unwrap(), &dims()).unwrap();
        assert_eq!(a.actives[0].actor, "u-2");
    }

    #[test]
    fn other_records_are_refused_with_the_reason() {
        for bad in [
            &b"not json"[..],
            br#"{"schema":"cognito-sync-change/v1"}"#,
            br#"{"schema":"cognito-auth-event/v1","event_id":"x"}"#,
        ] {
            let err = read(bad, &dims()).unwrap_err();
            assert!(err.to_string().starts_with("not a "), "{err}");
        }
    }

    #[test]
    fn a_stop_counts_its_duration_in_its_bucket_and_quantiles_read_the_buckets() {
        let mut v: serde_json::Value = serde_json::from_slice(&app(SESSION_STOP, None)).unwrap();
        v["session"] = json!({"id": "s-1", "start": null, "stop": null, "duration_ms": 12_999});
        let a = read(&serde_json::to_vec(&v).unwrap(), &dims()).unwrap();
        assert_eq!(a.counters, vec![Counter::SessionsEnded]);
        assert_eq!(a.amounts, vec![(format!("{SESSION_S}12"), 1)]);
        assert!(
            a.actives
                .iter()
                .all(|x| x.definition == Definition::SessionUsers
                    || x.definition == Definition::SessionDevices)
        );
        for (ms, bucket) in [
            (0, 0),
            (999, 0),
            (10_000, 10),
            (10_999, 10),
            (13_000, 12),
            (59_999, 55),
            (3_600_000, 3600),
            (604_800_000, 604_800),
            (u64::MAX, 604_800),
        ] {
            assert_eq!(duration_bucket(ms), bucket, "{ms} ms");
        }
        assert!(DURATION_BOUNDS.windows(2).all(|w| w[0] < w[1]));
        // Ten sessions: 1 s x 4, 12 s x 4, 60 s x 2: the 5th is the median (12), the 9th the p90 (60).
        let h = std::collections::BTreeMap::from([(1, 4), (12, 4), (60, 2)]);
        assert_eq!(duration_quantile(&h, 0.5), Some(12));
        assert_eq!(duration_quantile(&h, 0.4), Some(1));
        assert_eq!(duration_quantile(&h, 0.9), Some(60));
        assert_eq!(
            duration_quantile(&std::collections::BTreeMap::new(), 0.5),
            None
        );
    }

    fn purchase_of(props: serde_json::Value) -> Activity {
        let mut v: serde_json::Value = serde_json::from_slice(&app(PURCHASE, Some("u-1"))).unwrap();
        v["properties"] = props;
        read(&serde_json::to_vec(&v).unwrap(), &dims()).unwrap()
    }

    #[test]
    fn a_purchase_adds_revenue_and_units_per_currency_and_makes_a_paying_user() {
        let a = purchase_of(
            json!({"_currency": "USD", "_product_id": "p", "_item_price": 1.99, "_quantity": 3}),
        );
        assert_eq!(a.counters, vec![Counter::Purchases]);
        assert_eq!(
            a.amounts,
            vec![
                (format!("{REVENUE_MICROS}USD"), 5_970_000),
                (format!("{UNITS}USD"), 3)
            ]
        );
        assert_eq!(
            a.actives,
            vec![Active {
                definition: Definition::PayingUsers,
                actor: "anon-1".into()
            }]
        );
        // Strings of numbers (as Pinpoint's attributes carry them), no quantity (1), no currency, a made-up one.
        let b = purchase_of(json!({"_item_price": "0.5"}));
        assert_eq!(
            b.amounts,
            vec![
                (format!("{REVENUE_MICROS}none"), 500_000),
                (format!("{UNITS}none"), 1)
            ]
        );
        let c = purchase_of(json!({"_item_price": 2, "_currency": "ZZZ"}));
        assert_eq!(c.amounts[0], (format!("{REVENUE_MICROS}other"), 2_000_000));
        // No price, a price that is not a number, a fractional or zero quantity: counted apart, nobody paying.
        for (props, why) in [
            (json!({"_currency": "USD"}), "price"),
            (json!({"_item_price": "1e3"}), "price"),
            (json!({"_item_price": "abc"}), "price"),
            (json!({"_item_price": 1e10}), "price"),
            (json!({"_item_price": 1, "_quantity": 1.5}), "quantity"),
            (json!({"_item_price": 1, "_quantity": 0}), "quantity"),
        ] {
            let x = purchase_of(props.clone());
            assert_eq!(x.counters, vec![Counter::Purchases], "{props}");
            assert_eq!(
                x.amounts,
                vec![(format!("{PURCHASES_INVALID}{why}"), 1)],
                "{props}"
            );
            assert!(x.actives.is_empty(), "{props}");
        }
        assert!(
            CURRENCIES.windows(2).all(|w| w[0] < w[1]),
            "sorted, for the binary search"
        );
    }
}
