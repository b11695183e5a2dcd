//! The input contract: what real clients put on an app event stream, read into [`ClientEvent`]s. A record is one
//! JSON object in one of these shapes, picked by its own markers (never by trying parsers in turn), so that a
//! reason always names the shape and the field:
//!
//! | marker | shape ([`Shape`]) | written by |
//! |---|---|---|
//! | `event_version` "3.0", or "3.1" with `session.session_id` | `pinpoint-stream` | Pinpoint's event stream (archives, backfills) |
//! | `event_version` "3.1" | `enrichment` | Amplify's Event Enrichment clients (Android, Swift, Flutter) through an app's sink |
//! | `EventsRequest`, `BatchItem`, or `Events` | `pinpoint-batch` | the body Amplify's Pinpoint provider builds for `PutEvents` (one event per entry) |
//! | `name` (and `attributes`) | `amplify-autotrack` | Amplify JS auto-tracking through the Kinesis provider |
//! | `event_type` | `ours` | an app following our contract (README) |
//! | `eventType` / `EventType` | `pinpoint-event` | one Pinpoint event object, as teams built it for `PutEvents` |
//!
//! Pinpoint's messaging events (`_email.*`, `_SMS.*`, `_campaign.*`, `_journey.*`, `_push.*`: event version 3.1
//! with `awsAccountId`, `client_context` or `facets`) are refused by name: they are not app analytics.
//!
//! Everything here is untrusted client input: the types are strict (a property value that is not a string, a
//! metric that is not a number: the record is refused, naming the field), our own shape refuses unknown fields
//! (a typo is an error), the other shapes ignore fields we do not map (their SDKs add fields; the README's
//! mapping table lists what is dropped). Sizes, counts, names and times are checked in [`crate::event`].

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Which shape a record came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Our contract (`event_type`, ...).
    Ours,
    /// One Pinpoint event object (`eventType`/`EventType`, ...).
    PinpointEvent,
    /// Amplify's Pinpoint provider `PutEvents` body: `EventsRequest`, `BatchItem`, or one item `{Endpoint, Events}`.
    PinpointBatch,
    /// Pinpoint's event stream app event (`event_version` 3.0).
    PinpointStream,
    /// Amplify's Event Enrichment envelope (`event_version` 3.1).
    Enrichment,
    /// Amplify JS auto-tracking through the Kinesis provider: `{name, attributes}`.
    AutoTrack,
}

impl Shape {
    /// The name in `context.input_shape` and in every reason.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ours => "ours",
            Self::PinpointEvent => "pinpoint-event",
            Self::PinpointBatch => "pinpoint-batch",
            Self::PinpointStream => "pinpoint-stream",
            Self::Enrichment => "enrichment",
            Self::AutoTrack => "amplify-autotrack",
        }
    }

    /// Whether the shape carries a send time that a client sets when it sends (only ours: `sent_at`).
    pub fn has_send_time(self) -> bool {
        self == Self::Ours
    }
}

/// A time as a client sends it: epoch milliseconds (a number, possibly fractional, or a string of one), or
/// RFC 3339 / ISO-8601 text. Read into a time in [`crate::event`], where a bad one is refused naming its field.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientTime {
    /// A JSON number: epoch milliseconds.
    Number(serde_json::Number),
    /// A JSON string: RFC 3339, or epoch milliseconds in a string.
    Text(String),
}

impl<'de> Deserialize<'de> for ClientTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Number(n) => Ok(Self::Number(n)),
            Value::String(s) => Ok(Self::Text(s)),
            other => Err(serde::de::Error::custom(format!(
                "expected epoch milliseconds or an RFC 3339 time, found {}",
                kind(&other)
            ))),
        }
    }
}

/// A string that some clients send as a number (`version_code`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Self(s)),
            Value::Number(n) => Ok(Self(n.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "expected a string, found {}",
                kind(&other)
            ))),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A session as a client sends it, in whichever shape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Session {
    /// The session id.
    pub id: Option<String>,
    /// When it started.
    pub start: Option<ClientTime>,
    /// When it stopped.
    pub stop: Option<ClientTime>,
    /// How long it lasted, in ms.
    pub duration_ms: Option<serde_json::Number>,
}

/// Device and app context, normalized across shapes.
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
    /// The app's id (Pinpoint project or enrichment `app_id`).
    #[serde(skip)]
    pub app_id: Option<String>,
    /// The app's build (`version_code`).
    #[serde(skip)]
    pub app_build: Option<String>,
    /// The app's package name.
    #[serde(skip)]
    pub app_package: Option<String>,
    /// The client SDK, `name/version`.
    #[serde(skip)]
    pub sdk: Option<String>,
    /// The Cognito identity pool (Pinpoint stream).
    #[serde(skip)]
    pub identity_pool_id: Option<String>,
}

/// One client event, whichever shape it came in, before the checks of [`crate::event`].
#[derive(Debug, Clone, Default)]
pub struct ClientEvent {
    /// The shape it came in.
    pub shape: Option<Shape>,
    /// Its position among the events of its record (a `PutEvents` body holds many).
    pub index: u32,
    /// The event name.
    pub event_type: String,
    /// The client's id of the event, where the shape has one.
    pub event_id: Option<String>,
    /// When it happened, by the client's clock; `None` when the shape carries no time (the record's arrival is
    /// the event's time).
    pub timestamp: Option<ClientTime>,
    /// When the client sent it, by the same clock (ours only).
    pub sent_at: Option<ClientTime>,
    /// The session.
    pub session: Option<Session>,
    /// The user the client claims.
    pub user_id: Option<String>,
    /// The anonymous id (identity id, install id, endpoint id).
    pub anonymous_id: Option<String>,
    /// Whether the anonymous id is the Kinesis partition key the app chose (the shape carries no identity).
    pub anonymous_id_from_partition_key: bool,
    /// Device and app.
    pub context: Context,
    /// String properties (attributes).
    pub properties: BTreeMap<String, String>,
    /// Numeric metrics.
    pub metrics: BTreeMap<String, f64>,
    /// User traits (Pinpoint endpoint user attributes, values joined with commas).
    pub traits: BTreeMap<String, String>,
    /// What the event's id is derived from when it has no client id and its shape carries its own time: the
    /// event's JSON as sent (a resend is the same bytes); `None` for shapes without a time (the record's lineage
    /// decides).
    pub content: Option<Value>,
}

/// Why a record's data is not a client event: the shape and the field, where known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// Not JSON, or JSON nested past the parser's limit.
    #[error("app event is not a json object: {0}")]
    NotJson(String),
    /// JSON, but no shape's marker.
    #[error("app event has no shape we read: {0}")]
    NoShape(String),
    /// A shape's marker, but the shape is broken.
    #[error("app event ({shape}): {reason}")]
    Shape {
        /// The shape the markers named.
        shape: &'static str,
        /// Which field, and what is wrong with it.
        reason: String,
    },
}

fn broken(shape: Shape, reason: impl Into<String>) -> InputError {
    InputError::Shape {
        shape: shape.name(),
        reason: reason.into(),
    }
}

/// Deserializes `value` as `T`, an error naming the path of the field that failed.
fn typed<T: DeserializeOwned>(shape: Shape, value: Value) -> Result<T, InputError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." {
            broken(shape, inner)
        } else {
            broken(shape, format!("{path}: {inner}"))
        }
    })
}

/// The event-type prefixes of Pinpoint's messaging events.
const MESSAGING_PREFIXES: [&str; 5] = ["_email.", "_SMS.", "_campaign.", "_journey.", "_push."];

/// Which shape an object is, by its markers.
pub fn detect(object: &Map<String, Value>) -> Result<Shape, InputError> {
    if let Some(version) = object.get("event_version") {
        let session_id = object
            .get("session")
            .and_then(|s| s.get("session_id"))
            .is_some();
        // Pinpoint's messaging events are 3.1 too: their markers make them Pinpoint's (and refused there).
        let messaging = ["awsAccountId", "client_context", "facets"]
            .iter()
            .any(|k| object.contains_key(*k))
            || object
                .get("event_type")
                .and_then(Value::as_str)
                .is_some_and(|t| MESSAGING_PREFIXES.iter().any(|p| t.starts_with(p)));
        return match version.as_str() {
            Some("3.0") => Ok(Shape::PinpointStream),
            Some("3.1") if session_id || messaging => Ok(Shape::PinpointStream),
            Some("3.1") => Ok(Shape::Enrichment),
            _ => Err(InputError::NoShape(format!(
                "event_version {version} is not one we read (\"3.0\": Pinpoint's event stream, \"3.1\": Amplify's event \
                 enrichment)"
            ))),
        };
    }
    if ["EventsRequest", "BatchItem", "Events"]
        .iter()
        .any(|k| object.contains_key(*k))
    {
        return Ok(Shape::PinpointBatch);
    }
    if object.contains_key("event_type") {
        return Ok(Shape::Ours);
    }
    if object.contains_key("eventType") || object.contains_key("EventType") {
        return Ok(Shape::PinpointEvent);
    }
    if object.contains_key("name") {
        return Ok(Shape::AutoTrack);
    }
    Err(InputError::NoShape(
        "no event_version (Pinpoint stream, event enrichment), BatchItem (Pinpoint's PutEvents), name (Amplify \
         auto-tracking), event_type (ours) or eventType (a Pinpoint event)"
            .into(),
    ))
}

/// Reads one record's data into its events; `partition_key` is the record's Kinesis partition key (the anonymous
/// id of shapes that carry no identity).
pub fn parse(data: &[u8], partition_key: &str) -> Result<Vec<ClientEvent>, InputError> {
    let value: Value = serde_json::from_slice(data).map_err(|e| {
        out_of_range(data, &e).unwrap_or_else(|| InputError::NotJson(e.to_string()))
    })?;
    let Value::Object(object) = &value else {
        return Err(InputError::NotJson("the top level is not an object".into()));
    };
    let shape = detect(object)?;
    let events = match shape {
        Shape::Ours => vec![ours(value)?],
        Shape::PinpointEvent => vec![pinpoint_event(value, partition_key)?],
        Shape::PinpointBatch => pinpoint_batch(value, body_order(data)?, partition_key)?,
        Shape::PinpointStream => vec![pinpoint_stream(value)?],
        Shape::Enrichment => vec![enrichment(value)?],
        Shape::AutoTrack => vec![auto_track(value, partition_key)?],
    };
    Ok(events
        .into_iter()
        .enumerate()
        .map(|(i, mut e)| {
            e.shape = Some(shape);
            e.index = u32::try_from(i).unwrap_or(u32::MAX);
            e
        })
        .collect())
}

/// A number past f64's range (`1e400`, or 400 digits) is valid JSON (RFC 8259 sets no range), but serde_json
/// refuses the whole document for it while parsing, before any shape is picked. When (and only when) serde_json's
/// error is that one, this reads the document again with such numbers as null, to name the shape and the field:
/// `app event (ours): metrics.score: number 1e400 is out of the range of a 64-bit float`. The re-read is one
/// linear scan of the bytes (no recursion: the open objects and arrays are a stack on the heap), stops past
/// serde_json's own nesting limit ([`MAX_DEPTH`]), and the result is parsed by serde_json again (its limit holds).
/// `None` when the document has no such number or the re-read fails: then the original parse error stands.
fn out_of_range(data: &[u8], error: &serde_json::Error) -> Option<InputError> {
    if !error.to_string().starts_with("number out of range") {
        return None;
    }
    let (patched, (path, number)) = nulled(data)?;
    let value: Value = serde_json::from_slice(&patched).ok()?;
    let reason = format!("{path}: number {number} is out of the range of a 64-bit float");
    match &value {
        Value::Object(object) => match detect(object) {
            Ok(shape) => Some(broken(shape, reason)),
            Err(_) => Some(InputError::NotJson(reason)),
        },
        _ => Some(InputError::NotJson(reason)),
    }
}

/// serde_json's nesting limit: 128 levels of objects and arrays.
const MAX_DEPTH: usize = 128;

/// One open object or array while [`nulled`] scans.
enum Open {
    /// An object: its current key, and whether the next string is a key.
    Object(Option<String>, bool),
    /// An array: the current item's index.
    Array(usize),
}

/// `data` with every number out of f64's range written as `null`, and the first one's path (as the field paths
/// of other reasons: `a.b[0].c`, `.` for the top level) and text. One pass over the bytes; `None` past
/// [`MAX_DEPTH`] levels, on an unterminated string or key that is not a string, or when no number is out of range.
fn nulled(data: &[u8]) -> Option<(Vec<u8>, (String, String))> {
    let mut out = Vec::with_capacity(data.len());
    let mut open: Vec<Open> = Vec::new();
    let mut first = None;
    let mut i = 0;
    while let Some(&b) = data.get(i) {
        match b {
            b'"' => {
                let mut end = i + 1;
                loop {
                    match data.get(end)? {
                        b'\\' => end += 2,
                        b'"' => break,
                        _ => end += 1,
                    }
                }
                let token = data.get(i..=end)?;
                if let Some(Open::Object(key, expecting_key @ true)) = open.last_mut() {
                    *key = Some(serde_json::from_slice(token).ok()?);
                    *expecting_key = false;
                }
                out.extend_from_slice(token);
                i = end + 1;
                continue;
            }
            b'-' | b'0'..=b'9' => {
                let end = data[i..]
                    .iter()
                    .position(|c| !matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .map_or(data.len(), |n| i + n);
                let token = &data[i..end];
                if serde_json::from_slice::<Value>(token).is_ok() {
                    out.extend_from_slice(token);
                } else {
                    if first.is_none() {
                        first = Some((
                            path(&open),
                            String::from_utf8_lossy(token).chars().take(40).collect(),
                        ));
                    }
                    out.extend_from_slice(b"null");
                }
                i = end;
                continue;
            }
            b'{' | b'[' => {
                if open.len() >= MAX_DEPTH {
                    return None;
                }
                open.push(if b == b'{' {
                    Open::Object(None, true)
                } else {
                    Open::Array(0)
                });
            }
            b'}' | b']' => {
                open.pop();
            }
            b',' => match open.last_mut() {
                Some(Open::Object(_, expecting_key)) => *expecting_key = true,
                Some(Open::Array(index)) => *index += 1,
                None => {}
            },
            _ => {}
        }
        out.push(b);
        i += 1;
    }
    Some((out, first?))
}

/// The path of the value being scanned, from the open objects and arrays.
fn path(open: &[Open]) -> String {
    let mut path = String::new();
    for o in open {
        match o {
            Open::Object(Some(key), _) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Open::Object(None, _) => {}
            Open::Array(index) => path.push_str(&format!("[{index}]")),
        }
    }
    if path.is_empty() {
        ".".to_owned()
    } else {
        path
    }
}

// ---- ours ----------------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OurSession {
    id: Option<String>,
    start: Option<ClientTime>,
    stop: Option<ClientTime>,
    duration_ms: Option<serde_json::Number>,
}

/// Our shape's `context`: only our own names, unknown fields refused (a typo such as `platfrom` is an error
/// naming the field, not a platform silently dropped). Pinpoint's spellings (`Platform`, `appVersion`), which the
/// shared [`Context`] takes for the Pinpoint shapes, are unknown here, and so are the context fields our shape
/// has no input for (`app_id`, `sdk`, ...: the README's field table).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OurContext {
    platform: Option<String>,
    app_version: Option<String>,
    locale: Option<String>,
    device_id: Option<String>,
    os: Option<String>,
    os_version: Option<String>,
    model: Option<String>,
    make: Option<String>,
}

impl From<OurContext> for Context {
    fn from(c: OurContext) -> Self {
        Self {
            platform: c.platform,
            app_version: c.app_version,
            locale: c.locale,
            device_id: c.device_id,
            os: c.os,
            os_version: c.os_version,
            model: c.model,
            make: c.make,
            ..Self::default()
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OurEvent {
    event_type: String,
    event_id: Option<String>,
    timestamp: ClientTime,
    sent_at: Option<ClientTime>,
    session: Option<OurSession>,
    user_id: Option<String>,
    anonymous_id: Option<String>,
    context: Option<OurContext>,
    #[serde(default)]
    properties: BTreeMap<String, String>,
    #[serde(default)]
    metrics: BTreeMap<String, f64>,
}

fn ours(value: Value) -> Result<ClientEvent, InputError> {
    // A resend is the same event sent again, with a new `sent_at`: the send time is not the event's content.
    let mut content = value.clone();
    if let Value::Object(fields) = &mut content {
        fields.remove("sent_at");
    }
    let e: OurEvent = typed(Shape::Ours, value)?;
    Ok(ClientEvent {
        event_type: e.event_type,
        event_id: e.event_id,
        timestamp: Some(e.timestamp),
        sent_at: e.sent_at,
        session: e.session.map(|s| Session {
            id: s.id,
            start: s.start,
            stop: s.stop,
            duration_ms: s.duration_ms,
        }),
        user_id: e.user_id,
        anonymous_id: e.anonymous_id,
        context: e.context.map(Context::from).unwrap_or_default(),
        properties: e.properties,
        metrics: e.metrics,
        content: Some(content),
        ..ClientEvent::default()
    })
}

// ---- Pinpoint's event object and PutEvents body ---------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
struct PinpointSession {
    #[serde(alias = "Id")]
    id: Option<String>,
    #[serde(rename = "startTimestamp", alias = "StartTimestamp")]
    start: Option<ClientTime>,
    #[serde(rename = "stopTimestamp", alias = "StopTimestamp")]
    stop: Option<ClientTime>,
    #[serde(alias = "Duration")]
    duration: Option<serde_json::Number>,
}

#[derive(Debug, Default, Deserialize)]
struct PinpointUser {
    #[serde(rename = "userId", alias = "UserId")]
    user_id: Option<String>,
    #[serde(rename = "userAttributes", alias = "UserAttributes", default)]
    user_attributes: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
struct PinpointEndpoint {
    #[serde(alias = "Id")]
    id: Option<String>,
    #[serde(alias = "Demographic")]
    demographic: Option<Context>,
    #[serde(alias = "User")]
    user: Option<PinpointUser>,
}

#[derive(Debug, Deserialize)]
struct PinpointEvent {
    #[serde(rename = "eventType", alias = "EventType")]
    event_type: String,
    #[serde(rename = "eventId", alias = "EventId", default)]
    event_id: Option<String>,
    #[serde(alias = "Timestamp")]
    timestamp: ClientTime,
    #[serde(alias = "Session")]
    session: Option<PinpointSession>,
    #[serde(alias = "Attributes", default)]
    attributes: BTreeMap<String, String>,
    #[serde(alias = "Metrics", default)]
    metrics: BTreeMap<String, f64>,
    #[serde(rename = "appPackageName", alias = "AppPackageName")]
    app_package_name: Option<String>,
    #[serde(rename = "appVersionCode", alias = "AppVersionCode")]
    app_version_code: Option<Text>,
    #[serde(rename = "sdkName", alias = "SdkName")]
    sdk_name: Option<String>,
    #[serde(rename = "clientSdkVersion", alias = "ClientSdkVersion")]
    client_sdk_version: Option<String>,
    #[serde(alias = "Endpoint")]
    endpoint: Option<PinpointEndpoint>,
}

/// One Pinpoint event of `endpoint` (its id from the map key or the endpoint, else the partition key).
fn from_pinpoint(
    e: PinpointEvent,
    endpoint: PinpointEndpoint,
    endpoint_id: Option<String>,
    event_id: Option<String>,
    content: Value,
    partition_key: &str,
) -> ClientEvent {
    let user = endpoint.user.unwrap_or_default();
    let endpoint_id = endpoint_id.or(endpoint.id);
    let from_key = endpoint_id.is_none();
    let anonymous_id = endpoint_id
        .clone()
        .or_else(|| Some(partition_key.to_owned()));
    let session = e.session.map(|s| Session {
        id: s.id,
        start: s.start,
        stop: s.stop,
        duration_ms: s.duration,
    });
    let sdk = match (e.sdk_name, e.client_sdk_version) {
        (Some(n), Some(v)) => Some(format!("{n}/{v}")),
        (n, v) => n.or(v),
    };
    ClientEvent {
        event_type: e.event_type,
        event_id: event_id.or(e.event_id),
        timestamp: Some(e.timestamp),
        session,
        user_id: user.user_id,
        anonymous_id,
        anonymous_id_from_partition_key: from_key,
        context: Context {
            device_id: endpoint_id,
            app_package: e.app_package_name,
            app_build: e.app_version_code.map(|t| t.0),
            sdk,
            ..endpoint.demographic.unwrap_or_default()
        },
        properties: e.attributes,
        metrics: e.metrics,
        traits: user
            .user_attributes
            .into_iter()
            .map(|(k, v)| (k, v.join(",")))
            .collect(),
        content: Some(content),
        ..ClientEvent::default()
    }
}

fn pinpoint_event(value: Value, partition_key: &str) -> Result<ClientEvent, InputError> {
    let content = value.clone();
    let mut e: PinpointEvent = typed(Shape::PinpointEvent, value)?;
    let endpoint = e.endpoint.take().unwrap_or_default();
    Ok(from_pinpoint(
        e,
        endpoint,
        None,
        None,
        content,
        partition_key,
    ))
}

/// The most events one `PutEvents` body may carry here.
pub const MAX_EVENTS_PER_RECORD: usize = 100;

/// An object's keys in document order, each with what `V` makes of its value. serde_json's map (without its
/// `preserve_order` feature, which the workspace leaves off: it would change the order, and so the content ids,
/// of every map serialized anywhere) sorts keys, and a `PutEvents` body's events must go out in the order the app
/// recorded them.
struct Keyed<V>(Vec<(String, V)>, Option<String>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Keyed<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Entries<V> {
            type Value = Keyed<V>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Keyed<V>, A::Error> {
                let mut entries = Vec::new();
                let mut seen = std::collections::HashSet::new();
                let mut repeated = None;
                while let Some((key, value)) = map.next_entry::<String, V>()? {
                    if !seen.insert(key.clone()) && repeated.is_none() {
                        repeated = Some(key.clone());
                    }
                    entries.push((key, value));
                }
                Ok(Keyed(entries, repeated))
            }
        }
        d.deserialize_map(Entries(std::marker::PhantomData))
    }
}

impl<V> Keyed<V> {
    /// The first key that appears more than once, refused as `{path}: key "a" appears twice`.
    fn once(&self, shape: Shape, path: &str) -> Result<(), InputError> {
        match &self.1 {
            Some(key) => Err(broken(
                shape,
                format!(
                    "{path}: key {key:?} appears twice (a JSON reader keeps one of the two; an event would be dropped)"
                ),
            )),
            None => Ok(()),
        }
    }

    /// The keys, each once, in the order they first appear (a repeated key's value is its last, as in a `Value`).
    fn keys(self) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        self.0
            .into_iter()
            .filter_map(|(k, _)| seen.insert(k.clone()).then_some(k))
            .collect()
    }
}

/// The order of a `PutEvents` body: its items' endpoint ids, and each item's event ids.
#[derive(Deserialize)]
struct BodyOrder {
    #[serde(rename = "EventsRequest")]
    request: Option<RequestOrder>,
    #[serde(rename = "BatchItem")]
    batch: Option<Keyed<ItemOrder>>,
    #[serde(rename = "Events")]
    events: Option<Keyed<serde::de::IgnoredAny>>,
}

#[derive(Deserialize)]
struct RequestOrder {
    #[serde(rename = "BatchItem")]
    batch: Option<Keyed<ItemOrder>>,
}

#[derive(Deserialize)]
struct ItemOrder {
    #[serde(rename = "Events")]
    events: Option<Keyed<serde::de::IgnoredAny>>,
}

/// Each endpoint id of a `PutEvents` body with its event ids.
type BodyOrderIds = Vec<(String, Vec<String>)>;

/// Each endpoint id of a `PutEvents` body with its event ids, in document order (the one-item shape's endpoint is
/// `""`); `Ok(None)` when the body is not shaped for it (then [`pinpoint_batch`] reports what is wrong). A key
/// repeated in the endpoint map or in an `Events` map is refused, naming the key: a JSON reader keeps one value,
/// and the other event would be dropped without a word.
fn body_order(data: &[u8]) -> Result<Option<BodyOrderIds>, InputError> {
    let shape = Shape::PinpointBatch;
    let Ok(body) = serde_json::from_slice::<BodyOrder>(data) else {
        return Ok(None);
    };
    let (items, path) = match (body.request, body.batch) {
        (Some(request), _) => match request.batch {
            Some(batch) => (batch, "EventsRequest.BatchItem"),
            None => return Ok(None),
        },
        (None, Some(batch)) => (batch, "BatchItem"),
        (None, None) => {
            let Some(events) = body.events else {
                return Ok(None);
            };
            events.once(shape, "Events")?;
            return Ok(Some(vec![(String::new(), events.keys())]));
        }
    };
    items.once(shape, path)?;
    let mut out = Vec::with_capacity(items.0.len());
    for (id, item) in items.0 {
        let events = match item.events {
            Some(events) => {
                events.once(shape, &format!("{path}.{id}.Events"))?;
                events.keys()
            }
            None => Vec::new(),
        };
        out.push((id, events));
    }
    Ok(Some(out))
}

/// A `PutEvents` body's events, in the body's order (`order`, from [`body_order`]; the keys' order when absent).
fn pinpoint_batch(
    value: Value,
    order: Option<BodyOrderIds>,
    partition_key: &str,
) -> Result<Vec<ClientEvent>, InputError> {
    let shape = Shape::PinpointBatch;
    let Value::Object(mut object) = value else {
        return Err(broken(shape, "not an object"));
    };
    // `{EventsRequest: {BatchItem}}` (the SDK's PutEvents input), `{BatchItem}` (the HTTP body), or one item
    // `{Endpoint, Events}` whose endpoint id is the record's partition key. Exactly one of them: a body with two
    // would have one read and the other's events dropped without a word.
    let forms: Vec<&str> = [
        ("EventsRequest", "EventsRequest.BatchItem"),
        ("BatchItem", "BatchItem"),
        ("Events", "Events"),
    ]
    .into_iter()
    .filter(|(key, _)| object.contains_key(*key))
    .map(|(_, form)| form)
    .collect();
    if forms.len() > 1 {
        return Err(broken(
            shape,
            format!(
                "the body has {} batch forms, {}; a PutEvents body has one (the other's events would be dropped)",
                forms.len(),
                forms.join(" and ")
            ),
        ));
    }
    let (items, path) = if let Some(request) = object.remove("EventsRequest") {
        match request {
            Value::Object(mut r) => (
                r.remove("BatchItem")
                    .ok_or_else(|| broken(shape, "EventsRequest: missing field `BatchItem`"))?,
                "EventsRequest.BatchItem",
            ),
            other => {
                return Err(broken(
                    shape,
                    format!("EventsRequest: expected an object, found {}", kind(&other)),
                ));
            }
        }
    } else if let Some(batch) = object.remove("BatchItem") {
        (batch, "BatchItem")
    } else {
        let mut one = Map::new();
        one.insert(String::new(), Value::Object(object));
        (Value::Object(one), "")
    };
    let Value::Object(mut items) = items else {
        return Err(broken(
            shape,
            format!("{path}: expected an object of endpoint ids to items"),
        ));
    };
    // The body's order: endpoints as they come, each one's events as they come.
    let order = order.unwrap_or_else(|| {
        items
            .iter()
            .map(|(id, item)| {
                let events = item
                    .get("Events")
                    .and_then(Value::as_object)
                    .map(|e| e.keys().cloned().collect())
                    .unwrap_or_default();
                (id.clone(), events)
            })
            .collect()
    });
    // Then any the order missed (none: the order is read from the same bytes), so that nothing is dropped.
    let rest: Vec<(String, Vec<String>)> =
        items.keys().map(|id| (id.clone(), Vec::new())).collect();
    let mut out = Vec::new();
    for (endpoint_id, event_order) in order.into_iter().chain(rest) {
        let Some(item) = items.remove(&endpoint_id) else {
            continue;
        };
        let at = if path.is_empty() {
            String::new()
        } else {
            format!("{path}.{endpoint_id}.")
        };
        let Value::Object(mut item) = item else {
            return Err(broken(shape, format!("{at}: expected an object")));
        };
        let endpoint: PinpointEndpoint = match item.remove("Endpoint") {
            None | Some(Value::Null) => PinpointEndpoint::default(),
            Some(v) => typed(shape, v).map_err(|e| prefix(e, &format!("{at}Endpoint")))?,
        };
        let Some(Value::Object(mut events)) = item.remove("Events") else {
            return Err(broken(
                shape,
                format!("{at}Events: missing, or not an object of event ids to events"),
            ));
        };
        let rest: Vec<String> = events.keys().cloned().collect();
        for event_id in event_order.into_iter().chain(rest) {
            let Some(event) = events.remove(&event_id) else {
                continue;
            };
            if out.len() == MAX_EVENTS_PER_RECORD {
                return Err(broken(
                    shape,
                    format!("more than {MAX_EVENTS_PER_RECORD} events in one record"),
                ));
            }
            let mut content = Map::new();
            content.insert("endpoint".into(), Value::String(endpoint_id.clone()));
            content.insert("event".into(), event.clone());
            let e: PinpointEvent =
                typed(shape, event).map_err(|e| prefix(e, &format!("{at}Events.{event_id}")))?;
            let endpoint = PinpointEndpoint {
                id: None,
                demographic: endpoint.demographic.clone(),
                user: endpoint.user.as_ref().map(|u| PinpointUser {
                    user_id: u.user_id.clone(),
                    user_attributes: u.user_attributes.clone(),
                }),
            };
            out.push(from_pinpoint(
                e,
                endpoint,
                Some(endpoint_id.clone()).filter(|id| !id.is_empty()),
                Some(event_id),
                Value::Object(content),
                partition_key,
            ));
        }
    }
    if out.is_empty() {
        return Err(broken(shape, "no events"));
    }
    Ok(out)
}

/// Puts `path` before the field an error names.
fn prefix(e: InputError, path: &str) -> InputError {
    match e {
        InputError::Shape { shape, reason } => InputError::Shape {
            shape,
            reason: format!("{path}.{reason}"),
        },
        other => other,
    }
}

// ---- Pinpoint's event stream and Amplify's event enrichment ---------------------------------------------------

#[derive(Debug, Default, Deserialize)]
struct Sdk {
    name: Option<String>,
    version: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Application {
    app_id: String,
    cognito_identity_pool_id: Option<String>,
    package_name: Option<String>,
    version_name: Option<String>,
    version_code: Option<Text>,
    sdk: Option<Sdk>,
}

#[derive(Debug, Default, Deserialize)]
struct Platform {
    name: Option<String>,
    version: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Locale {
    code: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Device {
    platform: Option<Platform>,
    make: Option<String>,
    model: Option<String>,
    locale: Option<Locale>,
}

#[derive(Debug, Deserialize)]
struct StreamClient {
    client_id: String,
    cognito_id: Option<String>,
    user_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct StreamSession {
    /// Pinpoint's stream: `session_id`; enrichment: `id`.
    #[serde(alias = "id")]
    session_id: Option<String>,
    start_timestamp: Option<ClientTime>,
    stop_timestamp: Option<ClientTime>,
    duration: Option<serde_json::Number>,
}

#[derive(Debug, Deserialize)]
struct StreamEvent {
    event_type: String,
    event_timestamp: ClientTime,
    application: Application,
    client: StreamClient,
    #[serde(default)]
    device: Device,
    session: Option<StreamSession>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default)]
    metrics: BTreeMap<String, f64>,
}

fn stream_context(application: Application, device: Device) -> Context {
    let platform = device.platform.unwrap_or_default();
    let sdk = application.sdk.unwrap_or_default();
    Context {
        platform: platform.name,
        os_version: platform.version,
        app_version: application.version_name,
        app_build: application.version_code.map(|t| t.0),
        app_package: application.package_name,
        app_id: Some(application.app_id),
        identity_pool_id: application.cognito_identity_pool_id,
        sdk: match (sdk.name, sdk.version) {
            (Some(n), Some(v)) => Some(format!("{n}/{v}")),
            (n, v) => n.or(v),
        },
        locale: device.locale.and_then(|l| l.code),
        make: device.make,
        model: device.model,
        ..Context::default()
    }
}

fn stream_event(shape: Shape, value: Value) -> Result<(StreamEvent, Value), InputError> {
    let content = value.clone();
    let messaging = value
        .get("event_type")
        .and_then(Value::as_str)
        .filter(|t| MESSAGING_PREFIXES.iter().any(|p| t.starts_with(p)));
    let marker = ["awsAccountId", "client_context", "facets"]
        .into_iter()
        .find(|k| value.get(k).is_some());
    if messaging.is_some() || marker.is_some() {
        return Err(broken(
            shape,
            format!(
                "{} is a Pinpoint messaging event ({}), not app analytics",
                messaging.unwrap_or("the event"),
                marker.map_or_else(|| "its event_type".to_owned(), |m| format!("it has {m}"))
            ),
        ));
    }
    Ok((typed(shape, value)?, content))
}

fn pinpoint_stream(value: Value) -> Result<ClientEvent, InputError> {
    let (e, content) = stream_event(Shape::PinpointStream, value)?;
    let session = e.session.unwrap_or_default();
    Ok(ClientEvent {
        event_type: e.event_type,
        timestamp: Some(e.event_timestamp),
        session: Some(Session {
            id: session.session_id,
            start: session.start_timestamp,
            stop: session.stop_timestamp,
            duration_ms: session.duration,
        })
        .filter(|s| s != &Session::default()),
        user_id: e.client.user_id,
        // Pinpoint's client id is the endpoint (an install); the Cognito identity is the person's anonymous id.
        anonymous_id: e.client.cognito_id.or(Some(e.client.client_id.clone())),
        context: Context {
            device_id: Some(e.client.client_id),
            ..stream_context(e.application, e.device)
        },
        properties: e.attributes,
        metrics: e.metrics,
        content: Some(content),
        ..ClientEvent::default()
    })
}

fn enrichment(value: Value) -> Result<ClientEvent, InputError> {
    let (e, content) = stream_event(Shape::Enrichment, value)?;
    let Some(session) = e.session else {
        return Err(broken(Shape::Enrichment, "missing field `session`"));
    };
    if session.session_id.is_none() {
        return Err(broken(Shape::Enrichment, "session: missing field `id`"));
    }
    Ok(ClientEvent {
        event_type: e.event_type,
        timestamp: Some(e.event_timestamp),
        session: Some(Session {
            id: session.session_id,
            start: session.start_timestamp,
            stop: session.stop_timestamp,
            duration_ms: session.duration,
        }),
        user_id: e.client.user_id,
        anonymous_id: Some(e.client.client_id.clone()),
        context: Context {
            device_id: Some(e.client.client_id),
            ..stream_context(e.application, e.device)
        },
        properties: e.attributes,
        metrics: e.metrics,
        content: Some(content),
        ..ClientEvent::default()
    })
}

// ---- Amplify JS auto-tracking ---------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AutoTracked {
    name: String,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

fn auto_track(value: Value, partition_key: &str) -> Result<ClientEvent, InputError> {
    let e: AutoTracked = typed(Shape::AutoTrack, value)?;
    Ok(ClientEvent {
        event_type: e.name,
        anonymous_id: Some(partition_key.to_owned()),
        anonymous_id_from_partition_key: true,
        properties: e.attributes,
        // No time and no id: the record's arrival is the event's time and its lineage its id.
        ..ClientEvent::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(data: &str, key: &str) -> ClientEvent {
        let mut events = parse(data.as_bytes(), key).unwrap();
        assert_eq!(events.len(), 1);
        events.remove(0)
    }

    fn err(data: &str) -> String {
        parse(data.as_bytes(), "pk").unwrap_err().to_string()
    }

    #[test]
    fn every_shape_is_picked_by_its_markers() {
        for (data, shape) in [
            (r#"{"event_type": "x", "timestamp": 1}"#, Shape::Ours),
            (
                r#"{"eventType": "x", "timestamp": 1}"#,
                Shape::PinpointEvent,
            ),
            (
                r#"{"EventType": "x", "Timestamp": 1}"#,
                Shape::PinpointEvent,
            ),
            (
                r#"{"BatchItem": {"e1": {"Endpoint": {}, "Events": {"v1": {"EventType": "x", "Timestamp": 1}}}}}"#,
                Shape::PinpointBatch,
            ),
            (
                r#"{"EventsRequest": {"BatchItem": {"e1": {"Events": {"v1": {"EventType": "x", "Timestamp": 1}}}}}}"#,
                Shape::PinpointBatch,
            ),
            (
                r#"{"Endpoint": {}, "Events": {"v1": {"EventType": "x", "Timestamp": 1}}}"#,
                Shape::PinpointBatch,
            ),
            (
                r#"{"name": "pageView", "attributes": {"url": "u"}}"#,
                Shape::AutoTrack,
            ),
        ] {
            let events = parse(data.as_bytes(), "pk").unwrap();
            assert!(events.iter().all(|e| e.shape == Some(shape)), "{data}");
        }
    }

    #[test]
    fn the_putevents_body_gives_one_event_per_entry_with_the_map_keys_as_ids() {
        let body = r#"{"BatchItem": {
            "endpoint-1": {"Endpoint": {}, "Events": {
                "event-a": {"EventType": "_session.start", "Timestamp": "2026-11-20T10:00:00.000Z",
                            "Session": {"Id": "s1", "StartTimestamp": "2026-11-20T10:00:00.000Z"}},
                "event-b": {"EventType": "buy", "Timestamp": "2026-11-20T10:00:01.000Z", "Attributes": {"sku": "a"},
                            "Metrics": {"price": 9.5}, "Session": {"Id": "s1", "StartTimestamp": "2026-11-20T10:00:00.000Z"}}}},
            "endpoint-2": {"Endpoint": {"User": {"UserId": "sub-2"}}, "Events": {
                "event-c": {"EventType": "_session.stop", "Timestamp": "2026-11-20T10:05:00.000Z",
                            "Session": {"Id": "s2", "StartTimestamp": "2026-11-20T10:00:00.000Z",
                                        "StopTimestamp": "2026-11-20T10:05:00.000Z", "Duration": 300000}}}}}}"#;
        let events = parse(body.as_bytes(), "pk").unwrap();
        type Row<'a> = (
            u32,
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
        );
        let got: Vec<Row> = events
            .iter()
            .map(|e| {
                (
                    e.index,
                    e.event_type.as_str(),
                    e.event_id.as_deref(),
                    e.anonymous_id.as_deref(),
                    e.user_id.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    0,
                    "_session.start",
                    Some("event-a"),
                    Some("endpoint-1"),
                    None
                ),
                (1, "buy", Some("event-b"), Some("endpoint-1"), None),
                (
                    2,
                    "_session.stop",
                    Some("event-c"),
                    Some("endpoint-2"),
                    Some("sub-2")
                ),
            ]
        );
        let stop = events[2].session.clone().unwrap();
        assert_eq!(stop.duration_ms, Some(300_000.into()));
        assert_eq!(events[1].metrics.get("price"), Some(&9.5));
        assert!(!events[0].anonymous_id_from_partition_key);
    }

    #[test]
    fn shapes_without_identity_take_the_partition_key_and_say_so() {
        let e = one(
            r#"{"name": "_session.start", "attributes": {}}"#,
            "identity-1",
        );
        assert_eq!(e.anonymous_id.as_deref(), Some("identity-1"));
        assert!(e.anonymous_id_from_partition_key);
        assert_eq!(e.timestamp, None, "auto-tracking sends no time");
        assert_eq!(e.content, None, "nor anything an id could be derived from");
        let e = one(
            r#"{"EventType": "x", "Timestamp": "2026-11-20T10:00:00Z"}"#,
            "identity-2",
        );
        assert_eq!(e.anonymous_id.as_deref(), Some("identity-2"));
        assert!(e.anonymous_id_from_partition_key);
    }

    #[test]
    fn the_stream_shapes_map_client_device_and_application() {
        let pinpoint = r#"{"event_type": "_session.stop", "event_timestamp": 1487973802507,
            "arrival_timestamp": 1487973803515, "event_version": "3.0",
            "application": {"app_id": "a1", "cognito_identity_pool_id": "us-east-1:pool", "package_name": "p",
                "sdk": {"name": "aws-sdk-mobile-analytics-js", "version": "0.9.1:2.4.8"}, "title": "T",
                "version_name": "1.0", "version_code": "1"},
            "client": {"client_id": "c1", "cognito_id": "us-east-1:id"},
            "device": {"locale": {"code": "en_US", "country": "US", "language": "en"}, "make": "generic web browser",
                "model": "Unknown", "platform": {"name": "android", "version": "10.10"}},
            "session": {"session_id": "s1", "start_timestamp": 1487973202531, "stop_timestamp": 1487973802507},
            "attributes": {}, "metrics": {}}"#;
        let e = one(pinpoint, "pk");
        assert_eq!(e.shape, Some(Shape::PinpointStream));
        assert_eq!(e.anonymous_id.as_deref(), Some("us-east-1:id"));
        assert_eq!(e.context.device_id.as_deref(), Some("c1"));
        assert_eq!(
            e.context.identity_pool_id.as_deref(),
            Some("us-east-1:pool")
        );
        assert_eq!(
            e.context.sdk.as_deref(),
            Some("aws-sdk-mobile-analytics-js/0.9.1:2.4.8")
        );
        assert_eq!(e.context.platform.as_deref(), Some("android"));
        assert_eq!(e.context.app_build.as_deref(), Some("1"));
        assert_eq!(e.session.as_ref().unwrap().id.as_deref(), Some("s1"));
        let enriched = r#"{"event_type": "button_clicked", "event_timestamp": 1700000000000,
            "arrival_timestamp": 1700000000000, "event_version": "3.1",
            "application": {"app_id": "my-app", "version_code": 42, "sdk": {"name": "amplify-android", "version": "2.0.0"}},
            "client": {"client_id": "device-uuid", "user_id": "user-1"}, "device": {},
            "session": {"id": "my-app12-abcdef12-20260706-195159839", "start_timestamp": "2026-07-06T19:51:59.839Z"}}"#;
        let e = one(enriched, "pk");
        assert_eq!(e.shape, Some(Shape::Enrichment));
        assert_eq!(
            (e.user_id.as_deref(), e.anonymous_id.as_deref()),
            (Some("user-1"), Some("device-uuid"))
        );
        assert_eq!(e.context.app_build.as_deref(), Some("42"));
        assert_eq!(e.event_id, None, "the envelope carries no event id");
        assert!(e.content.is_some());
    }

    #[test]
    fn reasons_name_the_shape_and_the_field() {
        for (data, want) in [
            (
                r#"{"event_type": "x", "timestamp": 1, "properties": {"a": {"b": 1}}}"#,
                "app event (ours): properties.a: invalid type",
            ),
            (
                r#"{"event_type": "x", "timestamp": 1, "metrics": {"a": "1"}}"#,
                "app event (ours): metrics.a: invalid type",
            ),
            (
                r#"{"event_type": "x", "timestamp": 1, "extra": true}"#,
                "app event (ours): extra: unknown field `extra`",
            ),
            (
                r#"{"event_type": "x", "timestamp": true}"#,
                "app event (ours): timestamp: expected epoch milliseconds or an RFC 3339 time, found a boolean",
            ),
            (
                r#"{"event_version": "3.1", "event_type": "x", "event_timestamp": 1, "application": {"app_id": "a"},
                   "client": {"client_id": "c"}, "session": {"id": "s", "start_timestamp": []}}"#,
                "app event (enrichment): session.start_timestamp: expected epoch milliseconds",
            ),
            (
                r#"{"event_version": "3.1", "event_type": "x", "event_timestamp": 1, "application": {"app_id": "a"},
                   "client": {"client_id": "c"}}"#,
                "app event (enrichment): missing field `session`",
            ),
            (
                r#"{"event_version": "3.0", "event_type": "x", "event_timestamp": 1, "client": {"client_id": "c"}}"#,
                "app event (pinpoint-stream): missing field `application`",
            ),
            (
                r#"{"event_version": "3.1", "event_type": "_email.send", "event_timestamp": 1, "awsAccountId": "123456789012"}"#,
                "_email.send is a Pinpoint messaging event (it has awsAccountId)",
            ),
            (
                r#"{"event_version": "2.0"}"#,
                "event_version \"2.0\" is not one we read",
            ),
            (
                r#"{"BatchItem": {"e1": {"Events": {"v1": {"EventType": "x", "Timestamp": 1, "Attributes": {"a": 1}}}}}}"#,
                "app event (pinpoint-batch): BatchItem.e1.Events.v1.Attributes.a: invalid type",
            ),
            (
                r#"{"BatchItem": {"e1": {"Endpoint": {}}}}"#,
                "BatchItem.e1.Events: missing",
            ),
            (
                r#"{"name": "pageView", "attributes": {"url": "u"}, "extra": 1}"#,
                "app event (amplify-autotrack): extra: unknown field `extra`",
            ),
            (
                r#"{"hello": "world"}"#,
                "no shape we read: no event_version",
            ),
            (r#"[1, 2]"#, "not an object"),
            ("not json", "not a json object"),
        ] {
            let e = err(data);
            assert!(e.contains(want), "{want}\n  got: {e}");
        }
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert!(err(&deep).contains("recursion limit"));
    }

    #[test]
    fn a_putevents_body_of_too_many_events_is_refused() {
        let events: Vec<String> = (0..=MAX_EVENTS_PER_RECORD)
            .map(|i| format!(r#""e{i}": {{"EventType": "x", "Timestamp": 1}}"#))
            .collect();
        let body = format!(
            r#"{{"BatchItem": {{"ep": {{"Events": {{{}}}}}}}}}"#,
            events.join(",")
        );
        assert!(err(&body).contains("more than 100 events in one record"));
    }
}
