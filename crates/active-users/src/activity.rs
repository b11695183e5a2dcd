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
}

impl Definition {
    /// Every definition.
    pub const ALL: [Self; 3] = [
        Self::Authenticating,
        Self::SessionUsers,
        Self::SessionDevices,
    ];

    /// Its name in keys, metrics and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authenticating => "authenticating_users",
            Self::SessionUsers => "session_users",
            Self::SessionDevices => "session_devices",
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
}

impl Counter {
    /// Every counter.
    pub const ALL: [Self; 6] = [
        Self::SignUps,
        Self::SignIns,
        Self::SignInAttempts,
        Self::AuthFailures,
        Self::TokenRefreshes,
        Self::Sessions,
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
    /// `trigger`, `activity_log` or `snapshot` for auth events, `app` for app events: counters are kept per
    /// origin, since a deployment with both forwarders sees a successful sign-in twice.
    pub origin: String,
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
}

#[derive(Deserialize)]
struct AppSession {
    id: Option<String>,
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
                origin: r.origin,
            })
        }
        APP_SCHEMA => {
            let r: AppRecord = serde_json::from_slice(data).map_err(|e| bad(&e))?;
            let mut actives = Vec::new();
            let mut counters = Vec::new();
            if r.event == SESSION_START {
                counters.push(Counter::Sessions);
            }
            let in_session = r.event == SESSION_START
                || r.session.as_ref().is_some_and(|s| s.id.is_some())
                || r.context.get("session_id").is_some_and(|v| v.is_string());
            if in_session {
                if let Some(user) = r.anonymous_id.as_ref().or(r.user_id.as_ref()) {
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
            Ok(Activity {
                event_id: r.event_id,
                day: day_of(&r.timestamp)?,
                scopes: vec!["app".to_owned()],
                actives,
                dimensions: dims(&r.context),
                counters,
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

    #[test]
    fn a_session_start_makes_a_session_user_and_device_and_nothing_else_does() {
        let app = |event: &str, user: Option<&str>| {
            serde_json::to_vec(&json!({"schema": APP_SCHEMA, "event_id": "a1", "type": "track", "event": event,
                "anonymous_id": "anon-1", "user_id": user, "timestamp": "2026-11-04T08:00:00Z",
                "context": {"platform": "android", "app_version": "2.1.0", "locale": null, "device_id": "dev-1"}}))
            .unwrap()
        };
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
        let other = read(&app("_session.stop", Some("u-1")), &dims()).unwrap();
        assert!(other.actives.is_empty() && other.counters.is_empty());
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
}
