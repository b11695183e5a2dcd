//! One record of a Pinpoint event-stream archive to what the live path would have written for it:
//!
//! - an app event (`_session.*`, `_monetization.purchase`, a custom event) becomes `app-event/v1` through the app
//!   event forwarder's own reader ([`app_events::handler::read_counted`], shape `pinpoint-stream`): the same
//!   checks, the same normalization and the same content-based `event_id` as a live record of that shape, so an
//!   event that also came live through the forwarder, a re-run, or a record Firehose delivered twice has one id;
//! - a Cognito user pool analytics event (`_userauth.sign_in`, `_userauth.sign_up`, `_userauth.auth_fail`)
//!   becomes `cognito-auth-event/v1` with `origin: pinpoint` (README, "Pinpoint's auth events"): counters are kept
//!   per origin, so a day that both the archive and our triggers or user-activity logs saw is never added up;
//! - a messaging event (`_email.*`, `_SMS.*`, `_campaign.*`, `_journey.*`, `_push.*`) is counted and skipped;
//! - anything else is a reason, for the dead-letter prefix.
//!
//! Pure: the tests drive it with records, and the run ([`crate::run`]) with the records of each object.

use std::collections::BTreeMap;

use app_events::event::{AppEvent, Limits};
use auth_analytics::event::{AUTH_FAIL, AuthEvent, Context, Origin, SCHEMA, SIGN_IN, SIGN_UP};
use bridge_core::envelope::{SourceRef, event_id, rfc3339};
use bridge_core::kinesis_event::SourceRecord;
use chrono::{DateTime, Datelike as _, TimeZone as _, Utc};
use serde_json::Value;

/// The event-type prefixes of Pinpoint's messaging events, with the family each is counted in.
pub const MESSAGING: [(&str, &str); 5] = [
    ("_email.", "_email.*"),
    ("_SMS.", "_SMS.*"),
    ("_campaign.", "_campaign.*"),
    ("_journey.", "_journey.*"),
    ("_push.", "_push.*"),
];

/// Pinpoint's Cognito user pool analytics events, and the type each becomes (their names are ours too).
pub const AUTH_TYPES: [&str; 3] = [SIGN_IN, SIGN_UP, AUTH_FAIL];

/// The summary's families, in the order the table lists them.
pub const FAMILIES: [&str; 10] = [
    "_session.*",
    "_monetization.*",
    "custom app events",
    "_userauth.*",
    "_email.*",
    "_SMS.*",
    "_campaign.*",
    "_journey.*",
    "_push.*",
    "unreadable",
];

/// What the command was told about the archive that its records do not say.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The user pool whose analytics fed the Pinpoint project (`--user-pool-id`): Pinpoint's auth events do not
    /// name it. Without it, auth events are skipped (and the summary says so).
    pub user_pool_id: Option<String>,
    /// The app client to count auth events under (`--client-id`); Pinpoint's events name the project, not the
    /// client.
    pub client_id: Option<String>,
    /// Only events at or after this time (`--from`).
    pub from: Option<DateTime<Utc>>,
    /// Only events before this time (`--until`).
    pub until: Option<DateTime<Utc>>,
    /// The app event forwarder's limits (the defaults, as live).
    pub limits: Limits,
}

/// Where a record was found: the lineage its outputs carry (`source`), and its dead letter's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The archive's bucket.
    pub bucket: String,
    /// The object's key.
    pub key: String,
    /// The record's first byte in the object's decompressed bytes.
    pub offset: usize,
}

impl Found {
    /// The `source` of an output: the object's S3 ARN as the stream, `archive` as the shard, the byte offset as
    /// the sequence number (the schemas' lineage fields, README "Lineage of backfilled events").
    pub fn source(&self) -> SourceRef {
        SourceRef {
            stream_arn: format!("arn:aws:s3:::{}/{}", self.bucket, self.key),
            shard_id: "archive".to_owned(),
            sequence_number: self.offset.to_string(),
            sub_sequence: 0,
            user_record: None,
        }
    }
}

/// What one record becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// An app event of `family`.
    App {
        /// Its family in the summary.
        family: &'static str,
        /// The `app-event/v1` record.
        event: Box<AppEvent>,
    },
    /// A Cognito auth event.
    Auth(Box<AuthEvent>),
    /// Read and deliberately not written, with why (a messaging event, outside the time range, an auth event
    /// without a user pool or of a type we do not map).
    Skipped {
        /// Its family in the summary.
        family: &'static str,
        /// Why, for the summary's notes.
        why: String,
    },
    /// Not usable: written to the dead-letter prefix with this reason.
    Unreadable {
        /// Its family in the summary (`unreadable` when it could not be told).
        family: &'static str,
        /// Why, specifically.
        reason: String,
    },
}

/// The family of an event type.
pub fn family(event_type: &str) -> &'static str {
    if let Some((_, family)) = MESSAGING.iter().find(|(p, _)| event_type.starts_with(p)) {
        family
    } else if event_type.starts_with("_userauth.") {
        "_userauth.*"
    } else if event_type.starts_with("_session.") {
        "_session.*"
    } else if event_type.starts_with("_monetization.") {
        "_monetization.*"
    } else {
        "custom app events"
    }
}

/// A Pinpoint stream time (epoch milliseconds, a number or a string of one), as a time.
fn millis(value: Option<&Value>) -> Option<DateTime<Utc>> {
    let ms = match value? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    Utc.timestamp_millis_opt(ms).single()
}

fn text<'v>(value: &'v Value, path: &[&str]) -> Option<&'v str> {
    path.iter()
        .try_fold(value, |v, k| v.get(k))
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

/// Reads one record's bytes (one JSON object, as [`crate::archive::split`] found it).
pub fn map(bytes: &[u8], found: &Found, settings: &Settings) -> Mapped {
    let unreadable = |family: &'static str, reason: String| Mapped::Unreadable { family, reason };
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return unreadable("unreadable", "not a JSON object".into()),
        Err(e) => return unreadable("unreadable", format!("not JSON: {e}")),
    };
    let Some(event_type) = value.get("event_type").and_then(Value::as_str) else {
        return unreadable(
            "unreadable",
            "no event_type: not a Pinpoint event-stream record".into(),
        );
    };
    let family = family(event_type);
    if MESSAGING.iter().any(|(_, f)| *f == family) {
        return Mapped::Skipped {
            family,
            why: "messaging events are not analytics".into(),
        };
    }
    let Some(at) = millis(value.get("event_timestamp")) else {
        return unreadable(
            family,
            "event_timestamp is missing or not epoch milliseconds".into(),
        );
    };
    if settings.from.is_some_and(|from| at < from) || settings.until.is_some_and(|u| at >= u) {
        return Mapped::Skipped {
            family,
            why: "outside --from/--until".into(),
        };
    }
    if family == "_userauth.*" {
        return auth(&value, event_type, at, found, settings);
    }
    app(bytes, &value, family, found, settings)
}

/// An app event, through the forwarder's reader: the record as it would have come on a stream, arriving when
/// Pinpoint received it (`arrival_timestamp`; its event time when absent), so that the forwarder's time window
/// judges it as it judged it live.
fn app(
    bytes: &[u8],
    value: &Value,
    family: &'static str,
    found: &Found,
    settings: &Settings,
) -> Mapped {
    if value.get("event_version").and_then(Value::as_str) != Some("3.0") {
        return Mapped::Unreadable {
            family,
            reason: format!(
                "event_version {}: Pinpoint's event stream writes app events as \"3.0\"",
                value
                    .get("event_version")
                    .map_or("missing".to_owned(), Value::to_string)
            ),
        };
    }
    let arrival =
        millis(value.get("arrival_timestamp")).or_else(|| millis(value.get("event_timestamp")));
    let record = SourceRecord {
        source: found.source(),
        partition_key: String::new(),
        arrival,
        data: bytes.to_vec(),
    };
    match app_events::handler::read_counted(&record, &settings.limits) {
        Ok(read) => match <[AppEvent; 1]>::try_from(read.events) {
            Ok([event]) if event.context.input_shape == "pinpoint-stream" => Mapped::App {
                family,
                event: Box::new(event),
            },
            Ok([event]) => Mapped::Unreadable {
                family,
                reason: format!(
                    "read as {}, not as a Pinpoint event-stream record",
                    event.context.input_shape
                ),
            },
            Err(events) => Mapped::Unreadable {
                family,
                reason: format!("one record became {} events", events.len()),
            },
        },
        Err(reason) => Mapped::Unreadable { family, reason },
    }
}

/// A Cognito user pool analytics event (README, "Pinpoint's auth events"): the user is the endpoint's user id
/// (`client.user_id`), the device the endpoint (`client.client_id`); the pool and app client are the command's
/// (`--user-pool-id`, `--client-id`), since the record names only the Pinpoint project.
fn auth(
    value: &Value,
    event_type: &str,
    at: DateTime<Utc>,
    found: &Found,
    settings: &Settings,
) -> Mapped {
    let family = "_userauth.*";
    let Some(kind) = AUTH_TYPES.iter().find(|t| **t == event_type) else {
        return Mapped::Skipped {
            family,
            why: format!("{event_type} is not one of Pinpoint's auth events we map"),
        };
    };
    let Some(pool) = settings.user_pool_id.clone() else {
        return Mapped::Skipped {
            family,
            why: "no --user-pool-id: Pinpoint's auth events do not name their user pool".into(),
        };
    };
    let cut = |s: &str| -> String {
        s.chars()
            .take(auth_analytics::event::MAX_CONTEXT_VALUE_CHARS)
            .collect()
    };
    let context = Context {
        platform: text(value, &["device", "platform", "name"]).map(cut),
        locale: text(value, &["device", "locale", "code"]).map(cut),
        app_version: text(value, &["application", "version_name"]).map(cut),
        device_id: text(value, &["client", "client_id"]).map(cut),
        ..Context::default()
    };
    let arrival = millis(value.get("arrival_timestamp"));
    // The time, held as the app path holds app events: to RFC 3339's years, and within the forwarder's window
    // around Pinpoint's arrival (a clock at the epoch would move the user's first day, and so "new users", to
    // 1970).
    if !(0..=9999).contains(&at.year()) {
        return Mapped::Unreadable {
            family,
            reason: format!("event_timestamp {at} is outside the years 0000 to 9999"),
        };
    }
    if let Some(arrived) = arrival {
        let earliest = arrived.checked_sub_signed(settings.limits.max_past);
        let latest = arrived.checked_add_signed(settings.limits.max_future);
        if earliest.is_some_and(|e| at < e) || latest.is_some_and(|l| at > l) {
            return Mapped::Unreadable {
                family,
                reason: format!(
                    "event_timestamp {} is more than {} days before or {} hours after its arrival_timestamp {}",
                    rfc3339(&at),
                    settings.limits.max_past.num_days(),
                    settings.limits.max_future.num_hours(),
                    rfc3339(&arrived)
                ),
            };
        }
    }
    // The user: the sub is the record's partition key and a rollup actor; held to the app path's id length.
    let user_sub = text(value, &["client", "user_id"]).map(str::to_owned);
    if let Some(sub) = &user_sub
        && sub.chars().count() > settings.limits.max_id_chars
    {
        return Mapped::Unreadable {
            family,
            reason: format!(
                "client.user_id of {} characters: a user id has at most {}",
                sub.chars().count(),
                settings.limits.max_id_chars
            ),
        };
    }
    // The id: the record's content (keys sorted: serde_json's map is ordered), so a re-run, an overlap of two
    // runs or a record Firehose delivered twice has one id, and two events never share one.
    let id = event_id(&[SCHEMA, "pinpoint", &pool, &value.to_string()]);
    Mapped::Auth(Box::new(AuthEvent {
        schema: SCHEMA.to_owned(),
        event_id: id,
        kind: (*kind).to_owned(),
        timestamp: rfc3339(&at),
        received_at: arrival.as_ref().map(rfc3339),
        source: Some(found.source()),
        origin: Origin::Pinpoint,
        user_pool_id: pool,
        client_id: settings.client_id.clone(),
        user_sub,
        trigger_source: None,
        trigger_version: None,
        activity: None,
        context,
        attributes: None,
        profile: None,
    }))
}

/// Counts per family, in the summary's terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tally {
    /// Records read.
    pub read: u64,
    /// Records written to a stream (or, in a dry run, that would be).
    pub written: u64,
    /// Records deliberately not written.
    pub skipped: u64,
    /// Records written to the dead-letter prefix.
    pub dead_lettered: u64,
}

impl Tally {
    /// Adds `other`.
    pub fn add(&mut self, other: &Self) {
        self.read += other.read;
        self.written += other.written;
        self.skipped += other.skipped;
        self.dead_lettered += other.dead_lettered;
    }
}

/// Counts of a run (or an object) per family, and the time span of what it wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    /// Per family.
    pub families: BTreeMap<String, Tally>,
    /// Why records were skipped, with how many.
    pub skipped_why: BTreeMap<String, u64>,
    /// What a team should know of records written, with how many (auth events without a user).
    #[serde(default)]
    pub notes: BTreeMap<String, u64>,
    /// The earliest event time written, RFC 3339.
    pub first: Option<String>,
    /// The latest event time written, RFC 3339.
    pub last: Option<String>,
}

impl Counts {
    /// The tally of `family`.
    pub fn family(&mut self, family: &str) -> &mut Tally {
        self.families.entry(family.to_owned()).or_default()
    }

    /// Notes an event time written.
    pub fn span(&mut self, at: &str) {
        if self.first.as_deref().is_none_or(|f| at < f) {
            self.first = Some(at.to_owned());
        }
        if self.last.as_deref().is_none_or(|l| at > l) {
            self.last = Some(at.to_owned());
        }
    }

    /// Adds `other`.
    pub fn add(&mut self, other: &Self) {
        for (f, t) in &other.families {
            self.family(f).add(t);
        }
        for (why, n) in &other.skipped_why {
            *self.skipped_why.entry(why.clone()).or_default() += n;
        }
        for (note, n) in &other.notes {
            *self.notes.entry(note.clone()).or_default() += n;
        }
        for at in other.first.iter().chain(other.last.iter()) {
            self.span(at);
        }
    }

    /// Every family's tally added up.
    pub fn total(&self) -> Tally {
        let mut t = Tally::default();
        for f in self.families.values() {
            t.add(f);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by review (promise 6, event times): a `_userauth.sign_in` whose `event_timestamp` is far from its arrival
    /// (`0`: a clock at the epoch; `-86400000`; `253402300800000`: year 10000), arriving 2026-10-05. Should hold:
    /// the event is placed on a day the rollup can mean (as the app path holds its events to 30 days before / 24 h
    /// after their arrival and to RFC 3339's years), or it is dead-lettered. Before its fix, it is written as it says:
    /// a sign-in on 1970-01-01 or 1969-12-31 (the user's first day, and so "new users", move there), and one
    /// dated `+10000-01-01T...`, which is not an RFC 3339 `date-time` (the schema's) at all.
    #[test]
    fn auth_events_far_from_their_arrival_are_dead_lettered() {
        let arrival_ms: i64 = 1_791_158_400_000; // 2026-10-05T00:00:00Z
        let arrival = Utc.timestamp_millis_opt(arrival_ms).single().unwrap();
        let settings = Settings {
            user_pool_id: Some("us-east-1_EXAMPLE".into()),
            ..Settings::default()
        };
        let found = Found {
            bucket: "archive".into(),
            key: "events/2026/10/05/00/x".into(),
            offset: 0,
        };
        let mut wrong = Vec::new();
        for ts in ["0", "-86400000", "253402300800000"] {
            let record = format!(
                r#"{{"event_type":"_userauth.sign_in","event_timestamp":{ts},"arrival_timestamp":{arrival_ms},
                   "event_version":"3.0","application":{{"app_id":"project"}},
                   "client":{{"client_id":"endpoint-1","user_id":"sub-1"}},"attributes":{{}},"metrics":{{}}}}"#
            );
            let mapped = map(record.as_bytes(), &found, &settings);
            assert!(
                matches!(&mapped, Mapped::Unreadable { reason, .. } if reason.contains("event_timestamp")),
                "{ts}: {mapped:?}"
            );
            if let Mapped::Auth(e) = mapped {
                let sane = DateTime::parse_from_rfc3339(&e.timestamp).is_ok_and(|t| {
                    let t = t.with_timezone(&Utc);
                    t >= arrival - chrono::Duration::days(30)
                        && t <= arrival + chrono::Duration::hours(24)
                });
                if !sane {
                    wrong.push(format!("event_timestamp {ts} written as {}", e.timestamp));
                }
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }
}
