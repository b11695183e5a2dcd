//! The input contract: the JSON object an app passes as `data` to Amplify's Kinesis provider (which puts it on
//! the stream as UTF-8 JSON). Two shapes are accepted and read into one [`ClientEvent`]:
//!
//! - ours: `event_type`, `event_id`, `timestamp`, `sent_at`, `session {id, start}`, `user_id`,
//!   `anonymous_id`, `context {platform, app_version, locale, device_id, os, os_version, model}`,
//!   `properties` (strings), `metrics` (numbers);
//! - Pinpoint's event as teams send it to `PutEvents` (camelCase or PascalCase): `eventType`, `timestamp`,
//!   `session {id, startTimestamp}`, `attributes`, `metrics`, and the endpoint's `id`, `user.userId`,
//!   `user.userAttributes` and `demographic {platform, platformVersion, appVersion, locale, make, model}`.
//!
//! Everything here is untrusted client input: the types are strict (a property value that is not a string,
//! a metric that is not a number, nesting where none belongs: the record is refused), and the checks of
//! sizes, counts and names are in [`crate::event`].

use std::collections::BTreeMap;

use serde::Deserialize;

/// A time as a client sends it: RFC 3339 text, or epoch milliseconds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ClientTime {
    /// Epoch milliseconds.
    Millis(i64),
    /// RFC 3339 (or an epoch-ms number in a string).
    Text(String),
}

/// The client's session.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Session {
    /// The session id.
    #[serde(alias = "Id")]
    pub id: Option<String>,
    /// When it started.
    #[serde(alias = "startTimestamp", alias = "StartTimestamp")]
    pub start: Option<ClientTime>,
}

/// Device and app context.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Context {
    /// `iOS`, `Android`, `Web`, ...
    #[serde(alias = "Platform")]
    pub platform: Option<String>,
    /// The app's version.
    #[serde(alias = "appVersion", alias = "AppVersion")]
    pub app_version: Option<String>,
    /// `en_US`, ...
    #[serde(alias = "Locale")]
    pub locale: Option<String>,
    /// An install or device id.
    pub device_id: Option<String>,
    /// The operating system.
    pub os: Option<String>,
    /// Its version.
    #[serde(alias = "platformVersion", alias = "PlatformVersion")]
    pub os_version: Option<String>,
    /// The device model.
    #[serde(alias = "Model")]
    pub model: Option<String>,
    /// The device maker.
    #[serde(alias = "Make")]
    pub make: Option<String>,
}

/// Our shape.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OurEvent {
    /// `_session.start`, `_session.stop`, `_app.install`, or the app's own name.
    pub event_type: String,
    /// A client UUID, the same on every resend.
    pub event_id: Option<String>,
    /// When it happened, by the client's clock.
    pub timestamp: ClientTime,
    /// When the client sent it, by the same clock (for the offset correction).
    pub sent_at: Option<ClientTime>,
    /// The session.
    pub session: Option<Session>,
    /// The user pool `sub`, when signed in (what the client claims).
    pub user_id: Option<String>,
    /// The identity id or an install id.
    pub anonymous_id: Option<String>,
    /// Device and app.
    pub context: Option<Context>,
    /// String properties.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Numeric metrics.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

/// A Pinpoint endpoint's user.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PinpointUser {
    /// The user id.
    #[serde(alias = "UserId")]
    #[serde(rename = "userId")]
    pub user_id: Option<String>,
    /// User attributes (Pinpoint: lists of strings).
    #[serde(alias = "UserAttributes")]
    #[serde(rename = "userAttributes", default)]
    pub user_attributes: BTreeMap<String, Vec<String>>,
}

/// A Pinpoint endpoint, as much of it as an event needs.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PinpointEndpoint {
    /// The endpoint id (Amplify: a per-install UUID).
    #[serde(alias = "Id")]
    pub id: Option<String>,
    /// Demographic fields.
    #[serde(alias = "Demographic")]
    pub demographic: Option<Context>,
    /// The user.
    #[serde(alias = "User")]
    pub user: Option<PinpointUser>,
}

/// Pinpoint's event shape.
#[derive(Debug, Clone, Deserialize)]
pub struct PinpointEvent {
    /// The event type.
    #[serde(rename = "eventType", alias = "EventType")]
    pub event_type: String,
    /// The event id, when the app gave one.
    #[serde(rename = "eventId", alias = "EventId", default)]
    pub event_id: Option<String>,
    /// When it happened.
    #[serde(alias = "Timestamp")]
    pub timestamp: ClientTime,
    /// The session.
    #[serde(alias = "Session")]
    pub session: Option<Session>,
    /// String attributes.
    #[serde(alias = "Attributes", default)]
    pub attributes: BTreeMap<String, String>,
    /// Numeric metrics.
    #[serde(alias = "Metrics", default)]
    pub metrics: BTreeMap<String, f64>,
    /// The endpoint.
    #[serde(alias = "Endpoint")]
    pub endpoint: Option<PinpointEndpoint>,
}

/// One client event, whichever shape it came in: read into our shape, with what only Pinpoint's carries.
#[derive(Debug, Clone)]
pub struct ClientEvent {
    /// Which shape it came in: `ours` or `pinpoint`.
    pub shape: &'static str,
    /// The event, in our shape.
    pub event: OurEvent,
    /// User traits (Pinpoint user attributes, values joined with commas).
    pub traits: BTreeMap<String, String>,
}

/// Why a record's data is not a client event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// Not JSON, or JSON nested past the parser's limit.
    #[error("app event is not a json object: {0}")]
    NotJson(String),
    /// JSON, but neither shape.
    #[error("app event matches neither accepted shape: {0}")]
    Shape(String),
}

/// Reads one record's data.
pub fn parse(data: &[u8]) -> Result<ClientEvent, InputError> {
    let value: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| InputError::NotJson(e.to_string()))?;
    let object = value
        .as_object()
        .ok_or_else(|| InputError::NotJson("the top level is not an object".into()))?;
    if object.contains_key("event_type") {
        let event: OurEvent =
            serde_json::from_value(value).map_err(|e| InputError::Shape(e.to_string()))?;
        return Ok(ClientEvent {
            shape: "ours",
            event,
            traits: BTreeMap::new(),
        });
    }
    if object.contains_key("eventType") || object.contains_key("EventType") {
        let e: PinpointEvent =
            serde_json::from_value(value).map_err(|e| InputError::Shape(e.to_string()))?;
        let endpoint = e.endpoint.unwrap_or_default();
        let user = endpoint.user.unwrap_or_default();
        return Ok(ClientEvent {
            shape: "pinpoint",
            event: OurEvent {
                event_type: e.event_type,
                event_id: e.event_id,
                timestamp: e.timestamp,
                sent_at: None,
                session: e.session,
                user_id: user.user_id,
                anonymous_id: endpoint.id.clone(),
                context: Some(Context {
                    device_id: endpoint.id,
                    ..endpoint.demographic.unwrap_or_default()
                }),
                properties: e.attributes,
                metrics: e.metrics,
            },
            traits: user
                .user_attributes
                .into_iter()
                .map(|(k, v)| (k, v.join(",")))
                .collect(),
        });
    }
    Err(InputError::Shape(
        "no event_type (ours) and no eventType (Pinpoint's)".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes_read_into_one_event() {
        let ours = br#"{"event_type": "_session.start", "event_id": "e1", "timestamp": "2026-11-20T10:00:00Z",
            "sent_at": 1763632805000, "session": {"id": "s1", "start": "2026-11-20T10:00:00Z"}, "anonymous_id": "a1",
            "context": {"platform": "iOS", "app_version": "2.1.0", "locale": "en_US"}, "properties": {"screen": "home"},
            "metrics": {"battery": 0.5}}"#;
        let c = parse(ours).unwrap();
        let e = &c.event;
        assert_eq!((c.shape, e.event_type.as_str()), ("ours", "_session.start"));
        assert_eq!(e.sent_at, Some(ClientTime::Millis(1_763_632_805_000)));
        assert_eq!(
            e.context.as_ref().and_then(|c| c.platform.as_deref()),
            Some("iOS")
        );
        let pinpoint = br#"{"EventType": "_session.start", "Timestamp": "2026-11-20T10:00:00Z",
            "Session": {"Id": "s1", "StartTimestamp": "2026-11-20T10:00:00Z"}, "Attributes": {"screen": "home"},
            "Endpoint": {"Id": "install-1", "Demographic": {"Platform": "Android", "AppVersion": "2.1.0",
            "Locale": "de_DE", "Make": "ExampleCo", "Model": "X1", "PlatformVersion": "14"},
            "User": {"UserId": "sub-1", "UserAttributes": {"plan": ["pro"]}}}}"#;
        let c = parse(pinpoint).unwrap();
        let p = &c.event;
        assert_eq!((c.shape, p.user_id.as_deref()), ("pinpoint", Some("sub-1")));
        assert_eq!(p.anonymous_id.as_deref(), Some("install-1"));
        let ctx = p.context.clone().unwrap_or_default();
        assert_eq!(ctx.os_version.as_deref(), Some("14"));
        assert_eq!(ctx.device_id.as_deref(), Some("install-1"));
        assert_eq!(c.traits.get("plan").map(String::as_str), Some("pro"));
        assert_eq!(p.properties.get("screen").map(String::as_str), Some("home"));
    }

    #[test]
    fn wrong_types_nesting_and_unknown_shapes_are_refused() {
        for (data, want) in [
            (
                &br#"{"event_type": "x", "timestamp": 1, "properties": {"a": {"b": 1}}}"#[..],
                "neither",
            ),
            (
                br#"{"event_type": "x", "timestamp": 1, "metrics": {"a": "1"}}"#,
                "neither",
            ),
            (
                br#"{"event_type": "x", "timestamp": 1, "extra": true}"#,
                "unknown field",
            ),
            (br#"{"hello": "world"}"#, "no event_type"),
            (br#"[1, 2]"#, "not an object"),
            (b"not json", "not a json object"),
        ] {
            let err = parse(data).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert!(
            parse(deep.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("recursion limit")
        );
    }
}
