//! The `app-event/v1` envelope, and what a client event must satisfy to become one: bounded sizes, counts
//! and names, a usable time, corrected by the client's clock offset, and an `event_id` that is the same for
//! every resend of the same event.

use std::collections::BTreeMap;

use bridge_core::envelope::{SourceRef, event_id, rfc3339};
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::Serialize;

use crate::input::{ClientEvent, ClientTime};

/// The schema id of the records this function produces.
pub const SCHEMA: &str = "app-event/v1";
/// The envelope `type` of every app event (the canonical envelope's tracked-event type).
pub const TYPE_TRACK: &str = "track";

/// Limits on untrusted input. Defaults follow Pinpoint's own event limits where it had them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one record's data.
    pub max_record_bytes: usize,
    /// Properties (string attributes) per event.
    pub max_properties: usize,
    /// Metrics per event.
    pub max_metrics: usize,
    /// Characters of an event name, property or metric name.
    pub max_name_chars: usize,
    /// Characters of a property value.
    pub max_value_chars: usize,
    /// Characters of an id (event, session, user, anonymous, device).
    pub max_id_chars: usize,
    /// How far after its arrival an event's corrected time may lie.
    pub max_future: Duration,
    /// How far before its arrival an event's corrected time may lie.
    pub max_past: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_record_bytes: 32 * 1024,
            max_properties: 40,
            max_metrics: 40,
            max_name_chars: 50,
            max_value_chars: 1_000,
            max_id_chars: 128,
            max_future: Duration::hours(24),
            max_past: Duration::days(30),
        }
    }
}

/// Device and app context, normalized.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Context {
    /// Platform.
    pub platform: Option<String>,
    /// App version.
    pub app_version: Option<String>,
    /// Locale.
    pub locale: Option<String>,
    /// Device or install id.
    pub device_id: Option<String>,
    /// Operating system.
    pub os: Option<String>,
    /// Its version.
    pub os_version: Option<String>,
    /// Device model.
    pub model: Option<String>,
    /// Device maker.
    pub make: Option<String>,
    /// The session id.
    pub session_id: Option<String>,
    /// When the session started (client clock, corrected).
    pub session_start: Option<String>,
    /// Which input shape the event came in: `ours` or `pinpoint`.
    pub input_shape: &'static str,
}

/// How the event's time was derived from the client's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Clock {
    /// The client's own `timestamp`, as it said.
    pub original_timestamp: String,
    /// `received_at - sent_at`, in ms, added to the client's times; `null` without `sent_at`.
    pub offset_ms: Option<i64>,
}

/// One normalized app event, as it goes on the output stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppEvent {
    /// `app-event/v1`.
    pub schema: &'static str,
    /// Deterministic: the same for every resend of the same client event.
    pub event_id: String,
    /// `track`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The event name (`_session.start`, ...).
    pub event: String,
    /// The anonymous id (identity id or install id).
    pub anonymous_id: Option<String>,
    /// The user the client claims (a user pool sub). Nothing on the stream proves it.
    pub user_id: Option<String>,
    /// When it happened, corrected by the client's clock offset, RFC 3339.
    pub timestamp: String,
    /// When Kinesis received it, RFC 3339.
    pub received_at: String,
    /// When the client sent it (client clock), RFC 3339.
    pub sent_at: Option<String>,
    /// The time correction.
    pub clock: Clock,
    /// Device, app and session.
    pub context: Context,
    /// Properties: string attributes and numeric metrics.
    pub properties: BTreeMap<String, serde_json::Value>,
    /// User traits.
    pub traits: BTreeMap<String, String>,
    /// Where the record came from.
    pub source: SourceRef,
}

impl AppEvent {
    /// The partition key: the user when known, else the anonymous id.
    pub fn partition_key(&self) -> Option<&str> {
        self.user_id.as_deref().or(self.anonymous_id.as_deref())
    }
}

/// Why a client event cannot become an `app-event/v1`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn client_time(t: &ClientTime, what: &str) -> Result<DateTime<Utc>, Invalid> {
    let parsed = match t {
        ClientTime::Millis(ms) => Utc.timestamp_millis_opt(*ms).single(),
        ClientTime::Text(s) => DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|d| d.with_timezone(&Utc))
            .or_else(|| {
                s.parse::<i64>()
                    .ok()
                    .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
            }),
    };
    parsed.ok_or_else(|| {
        Invalid(format!(
            "{what} is not an RFC 3339 time or epoch milliseconds"
        ))
    })
}

/// A client time moved by the client's clock offset, or why it cannot be.
fn shifted(
    t: DateTime<Utc>,
    offset: Option<Duration>,
    what: &str,
) -> Result<DateTime<Utc>, Invalid> {
    match offset {
        None => Ok(t),
        Some(offset) => t.checked_add_signed(offset).ok_or_else(|| {
            Invalid(format!(
                "{what} corrected by the clock offset of sent_at ({} ms) is out of range",
                offset.num_milliseconds()
            ))
        }),
    }
}

/// The id of an event without a client id: its record's lineage. The user records of a KPL aggregate share the
/// aggregate's sequence number, so the user record's index is part of it (a plain record's id is unchanged).
fn lineage_id(source: &SourceRef) -> String {
    let index = source.user_record.map(|j| j.to_string());
    let mut parts = vec![
        SCHEMA,
        "lineage",
        &source.stream_arn,
        &source.shard_id,
        &source.sequence_number,
    ];
    parts.extend(index.as_deref());
    event_id(&parts)
}

fn is_name(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | ':' | ' '))
}

fn check_name(kind: &str, name: &str, limits: &Limits) -> Result<(), Invalid> {
    let chars = name.chars().count();
    if chars == 0 || chars > limits.max_name_chars {
        return Err(Invalid(format!(
            "{kind} name has {chars} characters; 1 to {} are allowed",
            limits.max_name_chars
        )));
    }
    if !is_name(name) {
        return Err(Invalid(format!(
            "{kind} name has characters outside letters, digits, space and _ . - :"
        )));
    }
    Ok(())
}

fn check_text(what: &str, value: Option<&String>, max: usize) -> Result<Option<String>, Invalid> {
    let Some(v) = value else { return Ok(None) };
    let chars = v.chars().count();
    if chars > max {
        return Err(Invalid(format!(
            "{what} has {chars} characters; at most {max} are allowed"
        )));
    }
    if v.chars().any(char::is_control) {
        return Err(Invalid(format!("{what} has control characters")));
    }
    Ok(Some(v.trim().to_owned()).filter(|v| !v.is_empty()))
}

/// Checks and normalizes one client event that arrived at `received_at`, from `source`.
pub fn normalize(
    client: ClientEvent,
    data_len: usize,
    received_at: DateTime<Utc>,
    source: &SourceRef,
    limits: &Limits,
) -> Result<AppEvent, Invalid> {
    let ClientEvent {
        shape,
        event: e,
        traits: client_traits,
    } = client;
    let e_context = e.context.unwrap_or_default();
    if data_len > limits.max_record_bytes {
        return Err(Invalid(format!(
            "record of {data_len} bytes is over the {}-byte limit of an app event",
            limits.max_record_bytes
        )));
    }
    check_name("event", &e.event_type, limits)?;
    if e.properties.len() > limits.max_properties || e.metrics.len() > limits.max_metrics {
        return Err(Invalid(format!(
            "{} properties and {} metrics; at most {} and {} are allowed",
            e.properties.len(),
            e.metrics.len(),
            limits.max_properties,
            limits.max_metrics
        )));
    }
    let mut properties = BTreeMap::new();
    for (name, value) in &e.properties {
        check_name("property", name, limits)?;
        let value = check_text(
            &format!("property '{name}'"),
            Some(value),
            limits.max_value_chars,
        )?
        .unwrap_or_default();
        properties.insert(name.clone(), serde_json::Value::String(value));
    }
    for (name, value) in &e.metrics {
        check_name("metric", name, limits)?;
        if properties.contains_key(name) {
            return Err(Invalid(format!("'{name}' is both a property and a metric")));
        }
        let number = serde_json::Number::from_f64(*value)
            .ok_or_else(|| Invalid(format!("metric '{name}' is not a finite number")))?;
        properties.insert(name.clone(), serde_json::Value::Number(number));
    }
    let mut traits = BTreeMap::new();
    for (name, value) in &client_traits {
        check_name("trait", name, limits)?;
        let value = check_text(
            &format!("trait '{name}'"),
            Some(value),
            limits.max_value_chars,
        )?;
        traits.insert(name.clone(), value.unwrap_or_default());
    }
    let id = |what: &str, v: Option<&String>| check_text(what, v, limits.max_id_chars);
    let user_id = id("user_id", e.user_id.as_ref())?;
    let anonymous_id = id("anonymous_id", e.anonymous_id.as_ref())?;
    let client_event_id = id("event_id", e.event_id.as_ref())?;
    if user_id.is_none() && anonymous_id.is_none() {
        return Err(Invalid(
            "neither user_id nor anonymous_id: the event belongs to nobody".into(),
        ));
    }

    let happened = client_time(&e.timestamp, "timestamp")?;
    let sent = e
        .sent_at
        .as_ref()
        .map(|t| client_time(t, "sent_at"))
        .transpose()?;
    // Every time here is the client's: each sum is checked, and one out of chrono's range is a dead letter that
    // names the field (an unchecked `+` panics, and one record would fail its whole batch).
    let offset = sent.map(|s| received_at.signed_duration_since(s));
    let corrected = shifted(happened, offset, "timestamp")?;
    if received_at
        .checked_add_signed(limits.max_future)
        .is_some_and(|latest| corrected > latest)
    {
        return Err(Invalid(format!(
            "event time {} is more than {} h after its arrival, even after the clock correction",
            rfc3339(&corrected),
            limits.max_future.num_hours()
        )));
    }
    if received_at
        .checked_sub_signed(limits.max_past)
        .is_some_and(|earliest| corrected < earliest)
    {
        return Err(Invalid(format!(
            "event time {} is more than {} days before its arrival",
            rfc3339(&corrected),
            limits.max_past.num_days()
        )));
    }

    let session = e.session.unwrap_or_default();
    let session_id = id("session id", session.id.as_ref())?;
    let session_start = session
        .start
        .as_ref()
        .map(|t| client_time(t, "session start"))
        .transpose()?
        .map(|s| shifted(s, offset, "session start"))
        .transpose()?
        .map(|s| rfc3339(&s));
    let ctx = |what: &str, v: Option<&String>| check_text(what, v, limits.max_id_chars);
    let context = Context {
        platform: ctx("platform", e_context.platform.as_ref())?,
        app_version: ctx("app_version", e_context.app_version.as_ref())?,
        locale: ctx("locale", e_context.locale.as_ref())?,
        device_id: ctx("device_id", e_context.device_id.as_ref())?,
        os: ctx("os", e_context.os.as_ref())?,
        os_version: ctx("os_version", e_context.os_version.as_ref())?,
        model: ctx("model", e_context.model.as_ref())?,
        make: ctx("make", e_context.make.as_ref())?,
        session_id,
        session_start,
        input_shape: shape,
    };

    // The same client event gives the same id whenever it comes (a provider resend, a redelivery); without a
    // client id, the record's lineage stands in (a redelivery of the same record, not a resend).
    let event_id = match &client_event_id {
        Some(client) => event_id(&[
            SCHEMA,
            "client",
            user_id
                .as_deref()
                .or(anonymous_id.as_deref())
                .unwrap_or_default(),
            client,
        ]),
        None => lineage_id(source),
    };
    Ok(AppEvent {
        schema: SCHEMA,
        event_id,
        kind: TYPE_TRACK,
        event: e.event_type,
        anonymous_id,
        user_id,
        timestamp: rfc3339(&corrected),
        received_at: rfc3339(&received_at),
        sent_at: sent.as_ref().map(rfc3339),
        clock: Clock {
            original_timestamp: rfc3339(&happened),
            offset_ms: offset.map(|o| o.num_milliseconds()),
        },
        context,
        properties,
        traits,
        source: source.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::parse;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn source(seq: &str) -> SourceRef {
        SourceRef {
            stream_arn: "arn:aws:kinesis:us-east-1:123456789012:stream/app-events".into(),
            shard_id: "shardId-000000000000".into(),
            sequence_number: seq.into(),
            sub_sequence: 0,
            user_record: None,
        }
    }

    fn normalize_json(json: &str, received: &str, seq: &str) -> Result<AppEvent, Invalid> {
        let e = parse(json.as_bytes()).map_err(|e| Invalid(e.to_string()))?;
        normalize(
            e,
            json.len(),
            at(received),
            &source(seq),
            &Limits::default(),
        )
    }

    #[test]
    fn the_client_clock_is_corrected_by_its_offset_and_recorded() {
        // The phone's clock is 10 minutes slow: it sent at 09:50 (its time), Kinesis received at 10:00.
        let e = normalize_json(
            r#"{"event_type": "_session.start", "event_id": "e1", "anonymous_id": "a1",
                "timestamp": "2026-11-20T09:49:00Z", "sent_at": "2026-11-20T09:50:00Z"}"#,
            "2026-11-20T10:00:00Z",
            "1",
        )
        .unwrap();
        assert_eq!(e.timestamp, "2026-11-20T09:59:00.000Z");
        assert_eq!(e.clock.offset_ms, Some(600_000));
        assert_eq!(e.clock.original_timestamp, "2026-11-20T09:49:00.000Z");
        assert_eq!(e.partition_key(), Some("a1"));
    }

    #[test]
    fn a_resend_keeps_its_id_and_without_a_client_id_the_lineage_decides() {
        let json = r#"{"event_type": "buy", "event_id": "e1", "user_id": "u1", "timestamp": "2026-11-20T10:00:00Z"}"#;
        let a = normalize_json(json, "2026-11-20T10:00:01Z", "1").unwrap();
        let b = normalize_json(json, "2026-11-20T10:05:00Z", "9").unwrap();
        assert_eq!(
            a.event_id, b.event_id,
            "a provider resend lands on another record"
        );
        let json = r#"{"event_type": "buy", "user_id": "u1", "timestamp": "2026-11-20T10:00:00Z"}"#;
        let a = normalize_json(json, "2026-11-20T10:00:01Z", "1").unwrap();
        let again = normalize_json(json, "2026-11-20T10:00:01Z", "1").unwrap();
        let other = normalize_json(json, "2026-11-20T10:00:01Z", "2").unwrap();
        assert_eq!(a.event_id, again.event_id);
        assert_ne!(a.event_id, other.event_id);
    }

    #[test]
    fn times_whose_correction_leaves_chrono_range_are_refused_naming_the_field() {
        // Each time parses on its own (chrono reaches about ±8.2e15 ms); the sums with the offset do not.
        for (json, want) in [
            (
                r#"{"event_type": "x", "anonymous_id": "a", "timestamp": 8000000000000000, "sent_at": -8000000000000000}"#,
                "timestamp corrected by the clock offset of sent_at",
            ),
            (
                r#"{"event_type": "x", "anonymous_id": "a", "timestamp": -8000000000000000, "sent_at": 8000000000000000}"#,
                "timestamp corrected by the clock offset of sent_at",
            ),
            (
                r#"{"event_type": "x", "anonymous_id": "a", "timestamp": "2026-11-20T09:59:00Z", "sent_at": -8000000000000000,
                    "session": {"id": "s", "start": 8000000000000000}}"#,
                "after its arrival",
            ),
            (
                r#"{"event_type": "x", "anonymous_id": "a", "timestamp": -8000000000000000, "sent_at": -8000000000000000,
                    "session": {"id": "s", "start": 8000000000000000}}"#,
                "session start corrected by the clock offset of sent_at",
            ),
        ] {
            let err = normalize_json(json, "2026-11-20T10:00:00Z", "1")
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
        // Arrival times at chrono's own ends: the window checks do not overflow either.
        for received in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
            let json = r#"{"event_type": "x", "anonymous_id": "a", "timestamp": 1}"#;
            let e = parse(json.as_bytes()).unwrap();
            let _ = normalize(e, json.len(), received, &source("1"), &Limits::default());
        }
    }

    #[test]
    fn user_records_of_one_aggregate_without_client_ids_get_ids_of_their_own() {
        let json = r#"{"event_type": "buy", "user_id": "u1", "timestamp": "2026-11-20T10:00:00Z"}"#;
        let of = |user_record| {
            let e = parse(json.as_bytes()).unwrap();
            let source = SourceRef {
                user_record,
                ..source("7")
            };
            normalize(
                e,
                json.len(),
                at("2026-11-20T10:00:01Z"),
                &source,
                &Limits::default(),
            )
            .unwrap()
            .event_id
        };
        assert_ne!(of(Some(0)), of(Some(1)));
        assert_ne!(of(Some(0)), of(None));
        assert_eq!(of(Some(2)), of(Some(2)), "a redelivery keeps each id");
        // A plain record's id is what it was before aggregates were told apart.
        assert_eq!(
            of(None),
            event_id(&[
                SCHEMA,
                "lineage",
                &source("7").stream_arn,
                &source("7").shard_id,
                "7"
            ])
        );
    }

    #[test]
    fn hostile_events_are_refused_with_specific_reasons() {
        let long = "x".repeat(2_000);
        let many: Vec<String> = (0..41).map(|i| format!("\"p{i}\": \"v\"")).collect();
        for (json, want) in [
            (
                r#"{"event_type": "x", "anonymous_id": "a", "timestamp": "2099-01-01T00:00:00Z"}"#
                    .to_owned(),
                "after its arrival",
            ),
            (
                r#"{"event_type": "x", "anonymous_id": "a", "timestamp": "2020-01-01T00:00:00Z"}"#
                    .to_owned(),
                "days before its arrival",
            ),
            (
                r#"{"event_type": "x", "timestamp": "2026-11-20T10:00:00Z"}"#.to_owned(),
                "belongs to nobody",
            ),
            (
                format!(
                    r#"{{"event_type": "x", "anonymous_id": "a", "timestamp": 1, "properties": {{"p": "{long}"}}}}"#
                ),
                "property 'p' has 2000 characters",
            ),
            (
                format!(
                    r#"{{"event_type": "x", "anonymous_id": "a", "timestamp": 1, "properties": {{{}}}}}"#,
                    many.join(",")
                ),
                "41 properties",
            ),
            (
                r#"{"event_type": "<script>", "anonymous_id": "a", "timestamp": 1}"#.to_owned(),
                "characters outside",
            ),
            (
                r#"{"event_type": "x", "anonymous_id": "a", "timestamp": "yesterday"}"#.to_owned(),
                "not an RFC 3339 time",
            ),
        ] {
            let err = normalize_json(&json, "2026-11-20T10:00:00Z", "1")
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
    }
}
