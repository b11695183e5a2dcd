//! The `app-event/v1` envelope, and what a client event must satisfy to become one: bounded sizes, counts
//! and names, a usable time (corrected by the client's clock offset where the shape carries a send time), a
//! session with a sane length, and an `event_id` that is the same for every resend and redelivery of the same
//! event and different for different events.

use std::collections::BTreeMap;

use bridge_core::envelope::{SourceRef, event_id, rfc3339};
use chrono::{DateTime, Datelike, Duration, TimeZone, Timelike, Utc};
use serde::Serialize;

use crate::input::{ClientEvent, ClientTime, Shape};

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
    /// Traits (Pinpoint endpoint user attributes) per event: capped like properties, since every event of a
    /// `PutEvents` body carries a copy of its endpoint's.
    pub max_traits: usize,
    /// Events one Kinesis record may become, all its user records together (an accepted KPL aggregate holds many,
    /// each maybe a `PutEvents` body of 100 events).
    pub max_output_events: usize,
    /// Bytes of output (the `app-event/v1` JSON of every event) one Kinesis record may become, all its user
    /// records together.
    pub max_output_bytes: usize,
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
    /// The longest session (its duration, or stop minus start).
    pub max_session: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_record_bytes: 32 * 1024,
            max_properties: 40,
            max_metrics: 40,
            max_traits: 40,
            // One output per user record of a full aggregate (`KPL_MAX_USER_RECORDS`' default): a plain record
            // becomes at most 100 (a `PutEvents` body).
            max_output_events: 1_000,
            // Kinesis's own record limit: one record never becomes more than a client could have written in
            // one. A plain record of 100 small events becomes about 100 KB; a 32 KiB `PutEvents` body whose
            // endpoint traits are copied into each of its 100 events would become 2.7 MB.
            max_output_bytes: 1024 * 1024,
            max_name_chars: 50,
            max_value_chars: 1_000,
            max_id_chars: 128,
            max_future: Duration::hours(24),
            max_past: Duration::days(30),
            max_session: Duration::days(7),
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
    /// The app's build (`version_code`).
    pub app_build: Option<String>,
    /// The app's id (enrichment `app_id`, Pinpoint project id).
    pub app_id: Option<String>,
    /// The app's package name.
    pub app_package: Option<String>,
    /// The client SDK, `name/version`.
    pub sdk: Option<String>,
    /// The Cognito identity pool the client says it belongs to (Pinpoint's stream).
    pub identity_pool_id: Option<String>,
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
    /// The session id (also in `session.id`).
    pub session_id: Option<String>,
    /// When the session started (also in `session.start`).
    pub session_start: Option<String>,
    /// Which input shape the event came in ([`Shape::name`]).
    pub input_shape: &'static str,
    /// Where the anonymous id came from: `event` (the payload), or `partition_key` (the Kinesis partition key the
    /// app chose, for shapes that carry no identity).
    pub anonymous_id_source: &'static str,
}

/// The session an event belongs to.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Session {
    /// Its id.
    pub id: Option<String>,
    /// When it started, RFC 3339.
    pub start: Option<String>,
    /// When it stopped, RFC 3339 (a stop event's).
    pub stop: Option<String>,
    /// How long it lasted: the client's duration, else stop minus start.
    pub duration_ms: Option<i64>,
}

/// How the event's time was derived.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Clock {
    /// `client`: the client's own time, as sent; `client_corrected`: moved by `offset_ms`; `client_clamped`: moved
    /// by `offset_ms` it would lie after the arrival (a send time before the event's time, by one clock), so the
    /// arrival stands in; `arrival`: the shape carries no time, and the record's Kinesis arrival stands in (never
    /// presented as a client time).
    pub time_source: &'static str,
    /// The client's own time, as it said; `null` when it sent none.
    pub original_timestamp: Option<String>,
    /// `received_at - sent_at`, in ms, added to the client's times; `null` without a send time.
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
    /// When it happened (see `clock`), RFC 3339.
    pub timestamp: String,
    /// When Kinesis received it, RFC 3339.
    pub received_at: String,
    /// When the client sent it (client clock), RFC 3339.
    pub sent_at: Option<String>,
    /// How `timestamp` was derived.
    pub clock: Clock,
    /// The session, from every shape that carries one.
    pub session: Option<Session>,
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
    /// The partition key: the anonymous id (the install, stable across sign-in and sign-out), else the user.
    /// A session's events, signed out and signed in, keep one order and land in one shard, so the rollup counts
    /// the install in one lane (`crates/active-users`, "one person, one count").
    pub fn partition_key(&self) -> Option<&str> {
        self.anonymous_id.as_deref().or(self.user_id.as_deref())
    }
}

/// Why a client event cannot become an `app-event/v1`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// A client time: epoch ms (a whole or fractional number, truncated to the millisecond below; or such a number
/// in a string), or RFC 3339 text with any fraction of a second. Out of chrono's range, not finite, or neither:
/// refused, naming `what`. A leap second (`:60`, which chrono reads at any minute of any day) is folded to the
/// last millisecond of its minute ([`fold_leap_second`]).
fn client_time(t: &ClientTime, what: &str) -> Result<DateTime<Utc>, Invalid> {
    fn millis(x: f64) -> Option<DateTime<Utc>> {
        // chrono's range is about ±8.2e15 ms, well inside i64 and inside f64's exact integers.
        if !x.is_finite() || x.abs() > 9.0e15 {
            return None;
        }
        #[allow(clippy::cast_possible_truncation, reason = "bounded above")]
        Utc.timestamp_millis_opt(x.floor() as i64).single()
    }
    let parsed = match t {
        ClientTime::Number(n) => match n.as_i64() {
            Some(ms) => Utc.timestamp_millis_opt(ms).single(),
            None => n.as_f64().and_then(millis),
        },
        ClientTime::Text(s) => DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|d| fold_leap_second(d.with_timezone(&Utc)))
            .or_else(|| match s.parse::<i64>() {
                Ok(ms) => Utc.timestamp_millis_opt(ms).single(),
                Err(_) => s.parse::<f64>().ok().and_then(millis),
            }),
    };
    parsed.ok_or_else(|| {
        let shown: String = match t {
            ClientTime::Number(n) => n.to_string(),
            ClientTime::Text(s) => format!("'{}'", s.chars().take(40).collect::<String>()),
        };
        Invalid(format!(
            "{what} {shown} is not an RFC 3339 time or epoch milliseconds within range"
        ))
    })
}

/// A leap second folded to the last millisecond of its minute: `09:59:60.250Z` is `09:59:59.999Z`. chrono reads
/// second 60 at any minute (RFC 3339 allows it only as 23:59:60 UTC on a leap-second day), and written back it
/// fails our schema's `date-time` and cannot be held by JavaScript's `Date` or Python's `datetime`. Folding is
/// sound: the time moves by less than a second, stays in its minute (so in its UTC day, which is what the
/// counts use), and keeps its order with the times around it (the leap second's instants all come after second
/// 59's first 999 ms and before the next minute); the event's id is derived from what the client sent, not from
/// the folded time, so a resend still collapses.
fn fold_leap_second(t: DateTime<Utc>) -> DateTime<Utc> {
    if t.nanosecond() < 1_000_000_000 {
        return t;
    }
    t.with_nanosecond(999_000_000).unwrap_or(t)
}

/// The first and last years an RFC 3339 time can hold (`date-fullyear = 4DIGIT`): the schema's `date-time`
/// refuses any other, and so does every consumer that parses RFC 3339.
const RFC3339_YEARS: std::ops::RangeInclusive<i32> = 0..=9_999;

/// Whether `t` can be written as the schema's `date-time`; else refused, naming the field. chrono reaches about
/// ±262,000 years, and writes a year past 9999 as `+10000-...`: the forwarder never forwards what its own
/// schema refuses.
fn representable(t: DateTime<Utc>, what: &str) -> Result<DateTime<Utc>, Invalid> {
    if RFC3339_YEARS.contains(&t.year()) {
        return Ok(t);
    }
    Err(Invalid(format!(
        "{what} {} is outside the years {:04} to {} that RFC 3339 (and the app-event/v1 schema) can hold",
        rfc3339(&t),
        RFC3339_YEARS.start(),
        RFC3339_YEARS.end()
    )))
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

/// The id of an event without a client id and without a time of its own: its record's lineage (stream, shard,
/// sequence number), the user record's index within a KPL aggregate and the event's index within its record
/// (each only when there is one, so that a plain record's id is what it always was).
fn lineage_id(source: &SourceRef, index: u32) -> String {
    let user_record = source.user_record.map(|j| j.to_string());
    let event = (index > 0).then(|| format!("event {index}"));
    let mut parts = vec![
        SCHEMA,
        "lineage",
        &source.stream_arn,
        &source.shard_id,
        &source.sequence_number,
    ];
    parts.extend(user_record.as_deref());
    parts.extend(event.as_deref());
    event_id(&parts)
}

/// The rule for event, property, metric and trait names, written exactly as the schema writes it
/// (`events/schema/app-event.v1.json`: `event`, and the `propertyNames` of `properties` and `traits`; a test holds
/// them equal). A first character that is a letter (Unicode `Alphabetic`, of any script), a digit (`N`) or one of
/// `_ . - :`; then up to 49 more of those, combining marks (`M`: Thai tone marks, the Devanagari virama, an accent
/// written as e + U+0301) and spaces; never a space last. So the forwarder and every consumer that validates with
/// the schema agree on every name, whatever Unicode version its own `char::is_alphanumeric` has.
pub const NAME_PATTERN: &str = r"^[\p{Alphabetic}\p{N}_.:\-](?:[\p{Alphabetic}\p{N}\p{M}_.:\- ]{0,48}[\p{Alphabetic}\p{N}\p{M}_.:\-])?$";

/// [`NAME_PATTERN`], compiled once, with the engine the schema's validator uses (the `regex` crate, whose
/// `regex-syntax` holds the Unicode tables: `jsonschema` compiles the schema's patterns with `fancy-regex`, which
/// hands a pattern like this one to the same `regex`). `None` only if the constant did not compile (a unit test
/// compiles it): then every name is refused, never every name let through.
static NAME: std::sync::LazyLock<Option<regex::Regex>> =
    std::sync::LazyLock::new(|| regex::Regex::new(NAME_PATTERN).ok());

fn is_name(s: &str) -> bool {
    NAME.as_ref().is_some_and(|name| name.is_match(s))
}

/// Characters a name may not hold although [`NAME_PATTERN`] lets them through (the forwarder is stricter than the
/// schema, never looser): Unicode's `Default_Ignorable_Code_Point`s, which render as nothing (U+034F COMBINING
/// GRAPHEME JOINER, variation selectors U+FE0F and U+180B, Hangul fillers U+3164 and U+115F, which Unicode calls
/// letters): `_session.start` + U+034F would show as `_session.start` yet be another event.
static INVISIBLE: std::sync::LazyLock<Option<regex::Regex>> =
    std::sync::LazyLock::new(|| regex::Regex::new(r"\p{Default_Ignorable_Code_Point}").ok());

/// A combining mark (`M`), which may follow a character but not start a name (U+093E, U+0345 are marks that
/// Unicode also calls `Alphabetic`, so the schema's first-character class lets them through).
static MARK: std::sync::LazyLock<Option<regex::Regex>> =
    std::sync::LazyLock::new(|| regex::Regex::new(r"^\p{M}").ok());

/// Refuses `name` when `pattern` finds a character in it (`found` words the reason with its code point), or when
/// the pattern is missing (`unchecked`): a name that cannot be checked is not forwarded.
fn refuse_match(
    pattern: Option<&regex::Regex>,
    name: &str,
    unchecked: impl Fn() -> String,
    found: impl Fn(u32) -> String,
) -> Result<(), Invalid> {
    match pattern.map(|r| r.find(name)) {
        None => Err(Invalid(unchecked())),
        Some(Some(m)) => Err(Invalid(found(
            m.as_str().chars().next().map_or(0, u32::from),
        ))),
        Some(None) => Ok(()),
    }
}

/// A name, checked by the schema's own pattern ([`NAME_PATTERN`]). Names are never trimmed: `_session.start `
/// would be another event than `_session.start` (one the rollup never counts as a session), so a blank name or a
/// name with a space first or last is refused with its own reason, not quietly made into something else.
fn check_name(kind: &str, name: &str, limits: &Limits) -> Result<(), Invalid> {
    let chars = name.chars().count();
    if chars == 0 || chars > limits.max_name_chars {
        return Err(Invalid(format!(
            "{kind} name has {chars} characters; 1 to {} are allowed",
            limits.max_name_chars
        )));
    }
    if name.trim().is_empty() {
        return Err(Invalid(format!("{kind} name is blank: only spaces")));
    }
    if name.trim() != name {
        return Err(Invalid(format!(
            "{kind} name {:?} begins or ends with a space; names are not trimmed",
            name
        )));
    }
    if !is_name(name) {
        return Err(Invalid(format!(
            "{kind} name has characters outside letters, digits, combining marks after the first character, \
             space and _ . - :"
        )));
    }
    // `None` (a pattern that did not compile; a unit test compiles them) refuses every name.
    refuse_match(
        INVISIBLE.as_ref(),
        name,
        || format!("{kind} name cannot be checked for invisible characters"),
        |c| {
            format!(
                "{kind} name has an invisible character, U+{c:04X} (a default-ignorable code point)"
            )
        },
    )?;
    refuse_match(
        MARK.as_ref(),
        name,
        || format!("{kind} name cannot be checked for a leading combining mark"),
        |c| {
            format!(
                "{kind} name begins with a combining mark, U+{c:04X}; a mark may only follow a character"
            )
        },
    )?;
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

/// Whether `t` lies in the window around `received_at` the limits allow (an end past chrono's range is no limit).
fn check_window(
    t: DateTime<Utc>,
    what: &str,
    received_at: DateTime<Utc>,
    limits: &Limits,
) -> Result<(), Invalid> {
    if received_at
        .checked_add_signed(limits.max_future)
        .is_some_and(|latest| t > latest)
    {
        return Err(Invalid(format!(
            "{what} {} is more than {} h after its arrival, even after the clock correction",
            rfc3339(&t),
            limits.max_future.num_hours()
        )));
    }
    if received_at
        .checked_sub_signed(limits.max_past)
        .is_some_and(|earliest| t < earliest)
    {
        return Err(Invalid(format!(
            "{what} {} is more than {} days before its arrival",
            rfc3339(&t),
            limits.max_past.num_days()
        )));
    }
    Ok(())
}

/// The session, its times corrected by `offset`, its length checked: a duration (or stop minus start) below
/// zero or over [`Limits::max_session`] is refused. `clamp_to`: the arrival, when the event's own corrected time
/// was clamped to it (`client_clamped`): the session's corrected times are clamped the same way, never after it
/// (else a `_session.start` dated at its arrival would say its session started after it).
fn session(
    client: Option<crate::input::Session>,
    offset: Option<Duration>,
    clamp_to: Option<DateTime<Utc>>,
    limits: &Limits,
) -> Result<Option<Session>, Invalid> {
    let Some(s) = client else { return Ok(None) };
    let time = |t: &Option<ClientTime>, what: &str| -> Result<Option<DateTime<Utc>>, Invalid> {
        t.as_ref()
            .map(|t| {
                let t = shifted(client_time(t, what)?, offset, what)?;
                Ok(clamp_to.map_or(t, |latest| t.min(latest)))
            })
            .transpose()
    };
    // Session times are held to RFC 3339's years, not to the arrival window: real clients send session starts
    // far from their events' times (amplify-android's own sample: an event of 2023 in a session of 2026).
    let start = time(&s.start, "session start")?
        .map(|t| representable(t, "session start"))
        .transpose()?;
    let stop = time(&s.stop, "session stop")?
        .map(|t| representable(t, "session stop"))
        .transpose()?;
    let given = match &s.duration_ms {
        None => None,
        Some(n) => Some(
            n.as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|x| x.is_finite() && x.abs() < 9.0e15)
                        .map(|x| {
                            #[allow(clippy::cast_possible_truncation, reason = "bounded above")]
                            let ms = x.floor() as i64;
                            ms
                        })
                })
                .ok_or_else(|| Invalid(format!("session duration {n} is not a number of ms")))?,
        ),
    };
    let derived = match (start, stop) {
        (Some(a), Some(b)) => Some((b - a).num_milliseconds()),
        _ => None,
    };
    // The same bounds whichever way the length is given, and both when both are: a duration within the bounds
    // does not vouch for a start and a stop 50 days apart (or reversed). They need not agree to the millisecond
    // (clients round them apart).
    let bounds = 0..=limits.max_session.num_milliseconds();
    for (d, how) in [(given, "lasts"), (derived, "stop minus start is")] {
        if let Some(d) = d
            && !bounds.contains(&d)
        {
            return Err(Invalid(format!(
                "session {how} {d} ms; 0 to {} days are allowed",
                limits.max_session.num_days()
            )));
        }
    }
    let duration_ms = given.or(derived);
    let id = check_text("session id", s.id.as_ref(), limits.max_id_chars)?;
    Ok(Some(Session {
        id,
        start: start.as_ref().map(rfc3339),
        stop: stop.as_ref().map(rfc3339),
        duration_ms,
    }))
}

/// Checks and normalizes one client event that arrived at `received_at`, from `source`.
pub fn normalize(
    client: ClientEvent,
    received_at: DateTime<Utc>,
    source: &SourceRef,
    limits: &Limits,
) -> Result<AppEvent, Invalid> {
    let shape = client.shape.unwrap_or(Shape::Ours);
    let e = client;
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
    if e.traits.len() > limits.max_traits {
        return Err(Invalid(format!(
            "{} traits (endpoint user attributes); at most {} are allowed",
            e.traits.len(),
            limits.max_traits
        )));
    }
    let mut traits = BTreeMap::new();
    for (name, value) in &e.traits {
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
    let anonymous_id = id(
        if e.anonymous_id_from_partition_key {
            "anonymous_id (the record's partition key)"
        } else {
            "anonymous_id"
        },
        e.anonymous_id.as_ref(),
    )?;
    // The client's event id is hashed as sent, never trimmed: ` a` and `a` are two ids a client chose (two events
    // of one `PutEvents` body may be keyed so), and trimming gave them one `event_id` (the second dropped as a
    // repeat). A resend sends the same bytes, so it keeps its id. A blank id is no id (then the content decides).
    let client_event_id = id("event_id", e.event_id.as_ref())?.and(e.event_id.clone());
    if user_id.is_none() && anonymous_id.is_none() {
        return Err(Invalid(
            "neither user_id nor anonymous_id: the event belongs to nobody".into(),
        ));
    }

    // Times. A send time corrects the client's clock only where the shape has one that a client sets when it
    // sends (ours); every sum is checked (an unchecked `+` panics, and one record would fail its batch).
    // Every time that goes out is held to RFC 3339's years (the schema's `date-time`): the arrival, the client's
    // own time (`clock.original_timestamp`) and its send time, whose offset may bring the corrected time back
    // into the window from any year.
    let received_at = representable(received_at, "received_at (the record's arrival)")?;
    let happened = e
        .timestamp
        .as_ref()
        .map(|t| representable(client_time(t, "timestamp")?, "timestamp"))
        .transpose()?;
    let sent = match (&e.sent_at, shape.has_send_time()) {
        (Some(t), true) => Some(representable(client_time(t, "sent_at")?, "sent_at")?),
        _ => None,
    };
    let offset = sent.map(|s| received_at.signed_duration_since(s));
    // Clamped, not refused: a corrected time after the arrival means `sent_at` lies before `timestamp` by the same
    // clock (a clock stepped back between recording and sending, a client bug, a forged record), and the
    // correction would date the event up to `max_future` after Kinesis received it (on the next UTC day for a
    // late hour). The event surely happened by its arrival, the one bound we know, so it is dated there,
    // `time_source: client_clamped` says so, and `original_timestamp` and `offset_ms` keep what the client said.
    // Refusing would lose an event whose only fault may be a clock step. Beyond `max_future` after the arrival
    // the window below refuses it, as it refused it before the clamp.
    let (timestamp, time_source) = match (happened, offset) {
        (Some(t), None) => (t, "client"),
        (Some(t), Some(offset)) => {
            let corrected = shifted(t, Some(offset), "timestamp")?;
            let within_future = received_at
                .checked_add_signed(limits.max_future)
                .is_none_or(|latest| corrected <= latest);
            if corrected > received_at && within_future {
                (received_at, "client_clamped")
            } else {
                (corrected, "client_corrected")
            }
        }
        (None, _) => (received_at, "arrival"),
    };
    check_window(timestamp, "event time", received_at, limits)?;
    let timestamp = representable(timestamp, "event time")?;
    let clamp_to = (time_source == "client_clamped").then_some(received_at);
    let session = session(e.session, offset, clamp_to, limits)?;

    let ctx = |what: &str, v: Option<&String>| check_text(what, v, limits.max_id_chars);
    let c = &e.context;
    let context = Context {
        platform: ctx("platform", c.platform.as_ref())?,
        app_version: ctx("app_version", c.app_version.as_ref())?,
        app_build: ctx("app_build", c.app_build.as_ref())?,
        app_id: ctx("app_id", c.app_id.as_ref())?,
        app_package: ctx("app_package", c.app_package.as_ref())?,
        sdk: ctx("sdk", c.sdk.as_ref())?,
        identity_pool_id: ctx("identity_pool_id", c.identity_pool_id.as_ref())?,
        locale: ctx("locale", c.locale.as_ref())?,
        device_id: ctx("device_id", c.device_id.as_ref())?,
        os: ctx("os", c.os.as_ref())?,
        os_version: ctx("os_version", c.os_version.as_ref())?,
        model: ctx("model", c.model.as_ref())?,
        make: ctx("make", c.make.as_ref())?,
        session_id: session.as_ref().and_then(|s| s.id.clone()),
        session_start: session.as_ref().and_then(|s| s.start.clone()),
        input_shape: shape.name(),
        anonymous_id_source: if e.anonymous_id_from_partition_key {
            "partition_key"
        } else {
            "event"
        },
    };

    // The id (README, "Event ids"): the client's id, for the user and the install, when it sent one; else the
    // event's own content (a resend is the same bytes, a redelivery the same record; two events differ in at
    // least their time); else, for a shape without a time, the record's lineage.
    //
    // A client id is unique only within the install that made it (an app-local counter, a fixed id, a UUID per
    // install): it is hashed with the user and the install (the anonymous id: Pinpoint's endpoint id, our
    // `anonymous_id`), each where present, so two installs of one user reusing a client id give two events.
    // Where there is no user, or no anonymous id, the parts are those of the first version (user or anonymous
    // id, then the client id): only signed-in events with both ids got new ids.
    let event_id = match (&client_event_id, &e.content) {
        (Some(client), _) => {
            let mut parts = vec![SCHEMA, "client"];
            parts.extend(user_id.as_deref());
            parts.extend(anonymous_id.as_deref());
            parts.push(client);
            event_id(&parts)
        }
        (None, Some(content)) => event_id(&[
            SCHEMA,
            "content",
            shape.name(),
            user_id.as_deref().unwrap_or_default(),
            anonymous_id.as_deref().unwrap_or_default(),
            &content.to_string(),
        ]),
        (None, None) => lineage_id(source, e.index),
    };
    Ok(AppEvent {
        schema: SCHEMA,
        event_id,
        kind: TYPE_TRACK,
        event: e.event_type,
        anonymous_id,
        user_id,
        timestamp: rfc3339(&timestamp),
        received_at: rfc3339(&received_at),
        sent_at: sent.as_ref().map(rfc3339),
        clock: Clock {
            time_source,
            original_timestamp: happened.as_ref().map(rfc3339),
            offset_ms: offset.map(|o| o.num_milliseconds()),
        },
        session,
        context,
        properties,
        traits,
        source: SourceRef {
            sub_sequence: e.index,
            ..source.clone()
        },
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
        normalize_at(json, received, &source(seq))
    }

    fn normalize_at(json: &str, received: &str, source: &SourceRef) -> Result<AppEvent, Invalid> {
        let mut events = parse(json.as_bytes(), "pk").map_err(|e| Invalid(e.to_string()))?;
        assert_eq!(events.len(), 1);
        normalize(events.remove(0), at(received), source, &Limits::default())
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
        assert_eq!(
            e.clock.original_timestamp.as_deref(),
            Some("2026-11-20T09:49:00.000Z")
        );
        assert_eq!(e.clock.time_source, "client_corrected");
        assert_eq!(e.partition_key(), Some("a1"));
    }

    #[test]
    fn a_resend_keeps_its_id_and_without_a_client_id_the_content_or_the_lineage_decides() {
        let json = r#"{"event_type": "buy", "event_id": "e1", "user_id": "u1", "timestamp": "2026-11-20T10:00:00Z"}"#;
        let a = normalize_json(json, "2026-11-20T10:00:01Z", "1").unwrap();
        let b = normalize_json(json, "2026-11-20T10:05:00Z", "9").unwrap();
        assert_eq!(
            a.event_id, b.event_id,
            "a provider resend lands on another record"
        );
        // A client id is the install's: the same id from another install of the same user is another event.
        let phone = r#"{"event_type": "buy", "event_id": "1", "user_id": "u1", "anonymous_id": "phone", "timestamp": "2026-11-20T10:00:00Z"}"#;
        let tablet = r#"{"event_type": "buy", "event_id": "1", "user_id": "u1", "anonymous_id": "tablet", "timestamp": "2026-11-20T10:00:00Z"}"#;
        let phone_id = normalize_json(phone, "2026-11-20T10:00:01Z", "1")
            .unwrap()
            .event_id;
        assert_ne!(
            phone_id,
            normalize_json(tablet, "2026-11-20T10:00:01Z", "2")
                .unwrap()
                .event_id
        );
        assert_eq!(
            phone_id,
            event_id(&[SCHEMA, "client", "u1", "phone", "1"]),
            "the user, the install, the client id"
        );
        // Without a user (or without an install) the parts are the first version's: those ids did not change.
        let anonymous = r#"{"event_type": "buy", "event_id": "1", "anonymous_id": "phone", "timestamp": "2026-11-20T10:00:00Z"}"#;
        assert_eq!(
            normalize_json(anonymous, "2026-11-20T10:00:01Z", "1")
                .unwrap()
                .event_id,
            event_id(&[SCHEMA, "client", "phone", "1"])
        );
        // Without a client id, an event with its own time is its content: a resend (another record, a new
        // sent_at) and a redelivery collapse; an event at another millisecond does not.
        let json = r#"{"event_type": "buy", "user_id": "u1", "timestamp": "2026-11-20T10:00:00.000Z", "sent_at": "2026-11-20T10:00:00.500Z"}"#;
        let resent = r#"{"event_type": "buy", "user_id": "u1", "timestamp": "2026-11-20T10:00:00.000Z", "sent_at": "2026-11-20T10:00:03.000Z"}"#;
        let later = r#"{"event_type": "buy", "user_id": "u1", "timestamp": "2026-11-20T10:00:00.001Z", "sent_at": "2026-11-20T10:00:00.500Z"}"#;
        let a = normalize_json(json, "2026-11-20T10:00:01Z", "1").unwrap();
        assert_eq!(
            a.event_id,
            normalize_json(json, "2026-11-20T10:00:01Z", "1")
                .unwrap()
                .event_id
        );
        assert_eq!(
            a.event_id,
            normalize_json(resent, "2026-11-20T10:00:04Z", "2")
                .unwrap()
                .event_id
        );
        assert_ne!(
            a.event_id,
            normalize_json(later, "2026-11-20T10:00:01Z", "1")
                .unwrap()
                .event_id
        );
        // Without a time (auto-tracking), only a redelivery of the same record collapses.
        let tracked = r#"{"name": "pageView", "attributes": {"url": "https://example.com/"}}"#;
        let a = normalize_json(tracked, "2026-11-20T10:00:01Z", "1").unwrap();
        assert_eq!(
            a.event_id,
            normalize_json(tracked, "2026-11-20T10:00:01Z", "1")
                .unwrap()
                .event_id
        );
        assert_ne!(
            a.event_id,
            normalize_json(tracked, "2026-11-20T10:00:02Z", "2")
                .unwrap()
                .event_id
        );
        assert_eq!(a.clock.time_source, "arrival");
        assert_eq!(a.clock.original_timestamp, None);
        assert_eq!(a.timestamp, "2026-11-20T10:00:01.000Z");
    }

    #[test]
    fn times_come_as_whole_or_fractional_ms_numbers_strings_or_rfc_3339_with_any_fraction() {
        for (t, want) in [
            ("1795168800000", "2026-11-20T10:00:00.000Z"),
            ("1795168800000.9", "2026-11-20T10:00:00.000Z"),
            ("1.7951688e12", "2026-11-20T10:00:00.000Z"),
            ("\"1795168800000\"", "2026-11-20T10:00:00.000Z"),
            ("\"1795168800000.5\"", "2026-11-20T10:00:00.000Z"),
            (
                "\"2026-11-20T10:00:00.123456Z\"",
                "2026-11-20T10:00:00.123Z",
            ),
            ("\"2026-11-20T11:00:00+01:00\"", "2026-11-20T10:00:00.000Z"),
        ] {
            let json = format!(r#"{{"event_type": "x", "anonymous_id": "a", "timestamp": {t}}}"#);
            let e = normalize_json(&json, "2026-11-20T10:00:01Z", "1").unwrap();
            assert_eq!(e.timestamp, want, "{t}");
            assert_eq!(e.clock.time_source, "client");
        }
        for t in ["1e300", "\"NaN\"", "\"inf\"", "\"yesterday\"", "-1e17"] {
            let json = format!(r#"{{"event_type": "x", "anonymous_id": "a", "timestamp": {t}}}"#);
            let err = normalize_json(&json, "2026-11-20T10:00:01Z", "1")
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("timestamp ")
                    && err.contains("is not an RFC 3339 time or epoch milliseconds"),
                "{t}: {err}"
            );
        }
    }

    #[test]
    fn sessions_are_first_class_with_their_length_checked() {
        let json = r#"{"event_type": "_session.stop", "anonymous_id": "a", "timestamp": "2026-11-20T10:05:00Z",
            "session": {"id": "s1", "start": "2026-11-20T10:00:00Z", "stop": "2026-11-20T10:05:00Z"}}"#;
        let e = normalize_json(json, "2026-11-20T10:05:01Z", "1").unwrap();
        assert_eq!(
            e.session,
            Some(Session {
                id: Some("s1".into()),
                start: Some("2026-11-20T10:00:00.000Z".into()),
                stop: Some("2026-11-20T10:05:00.000Z".into()),
                duration_ms: Some(300_000),
            })
        );
        assert_eq!(e.context.session_id.as_deref(), Some("s1"));
        for (session, want) in [
            (
                r#"{"id": "s", "start": "2026-11-20T10:05:00Z", "stop": "2026-11-20T10:00:00Z"}"#,
                "session stop minus start is -300000 ms",
            ),
            (
                r#"{"id": "s", "duration_ms": 900000000}"#,
                "session lasts 900000000 ms",
            ),
            (r#"{"id": "s", "duration_ms": 1e400}"#, ""),
            (
                r#"{"id": "s", "start": "soon"}"#,
                "session start 'soon' is not",
            ),
        ] {
            let json = format!(
                r#"{{"event_type": "x", "anonymous_id": "a", "timestamp": "2026-11-20T10:05:00Z", "session": {session}}}"#
            );
            let err = normalize_json(&json, "2026-11-20T10:05:01Z", "1");
            assert!(err.is_err(), "{session}");
            assert!(err.unwrap_err().to_string().contains(want), "{session}");
        }
    }

    #[test]
    fn names_may_use_unicode_letters_but_no_controls_or_symbols() {
        let json = r#"{"event_type": "größe_gewählt", "anonymous_id": "a", "timestamp": "2026-11-20T10:00:00Z",
            "properties": {"größe": "XL", "説明": "テスト"}}"#;
        let e = normalize_json(json, "2026-11-20T10:00:01Z", "1").unwrap();
        assert_eq!(e.properties["größe"], "XL");
        for bad in ["a\\u0007b", "a\\u200bb", "<b>", "a/b"] {
            let json = format!(
                r#"{{"event_type": "{bad}", "anonymous_id": "a", "timestamp": 1795168800000}}"#
            );
            let err = normalize_json(&json, "2026-11-20T10:00:01Z", "1")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("event name has characters outside"),
                "{bad}: {err}"
            );
        }
        let long = "ä".repeat(51);
        let json = format!(
            r#"{{"event_type": "{long}", "anonymous_id": "a", "timestamp": 1795168800000}}"#
        );
        assert!(
            normalize_json(&json, "2026-11-20T10:00:01Z", "1")
                .unwrap_err()
                .to_string()
                .contains("51 characters")
        );
        // Combining marks after a first letter: Thai tone marks, the Devanagari virama, a decomposed accent; not
        // first.
        for good in ["ซื้อ", "क्लिक", "cafe\u{301}_visit", "_session.start", "a b"]
        {
            assert!(is_name(good), "{good}");
        }
        for bad in ["\u{301}e", " a", "a ", " ", "\u{10940}", "a\u{200d}b"] {
            assert!(!is_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn blank_and_space_padded_names_are_refused_with_their_own_reason() {
        for (name, want) in [
            (" ", "event name is blank: only spaces"),
            (
                "_session.start ",
                r#"event name "_session.start " begins or ends with a space"#,
            ),
            (
                " _session.start",
                r#"event name " _session.start" begins or ends with a space"#,
            ),
        ] {
            let json = format!(
                r#"{{"event_type": "{name}", "anonymous_id": "a", "timestamp": 1795168800000}}"#
            );
            let err = normalize_json(&json, "2026-11-20T10:00:01Z", "1").unwrap_err();
            assert!(err.0.starts_with(want), "{name:?}: {err}");
        }
    }

    #[test]
    fn the_name_rule_is_the_schemas_own_pattern() {
        assert!(NAME.is_some(), "NAME_PATTERN compiles");
        let schema: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../events/schema/app-event.v1.json"
            ))
            .unwrap(),
        )
        .unwrap();
        for pointer in [
            "/properties/event/pattern",
            "/properties/properties/propertyNames/pattern",
            "/properties/traits/propertyNames/pattern",
        ] {
            assert_eq!(
                schema.pointer(pointer).and_then(serde_json::Value::as_str),
                Some(NAME_PATTERN),
                "{pointer}"
            );
        }
    }

    #[test]
    fn only_a_shape_with_a_send_time_is_clock_corrected() {
        // The same sent_at field name in a Pinpoint event is not ours to read: no correction.
        let json =
            r#"{"EventType": "x", "Timestamp": "2026-11-20T09:49:00Z", "Endpoint": {"Id": "a"}}"#;
        let e = normalize_json(json, "2026-11-20T10:00:00Z", "1").unwrap();
        assert_eq!((e.clock.time_source, e.clock.offset_ms), ("client", None));
        assert_eq!(e.timestamp, "2026-11-20T09:49:00.000Z");
    }

    #[test]
    fn times_outside_rfc_3339_years_or_chrono_range_once_corrected_are_refused_naming_the_field() {
        // Each time parses on its own (chrono reaches about ±8.2e15 ms, years ±262,143), but RFC 3339 and the
        // schema hold years 0000 to 9999 only: a client time beyond them is refused, naming its field, whether
        // or not the clock offset would bring the corrected time back into the window.
        for (json, want) in [
            (
                r#"{"event_type": "x", "anonymous_id": "a", "timestamp": 8000000000000000, "sent_at": -8000000000000000}"#,
                "timestamp +255479-11-28T14:13:20.000Z is outside the years 0000 to 9999",
            ),
            (
                r#"{"event_type": "x", "anonymous_id": "a", "timestamp": "2026-11-20T09:59:00Z", "sent_at": 8000000000000000}"#,
                "sent_at +255479-11-28T14:13:20.000Z is outside the years",
            ),
            (
                r#"{"event_type": "x", "anonymous_id": "a", "timestamp": "2026-11-20T09:59:00Z", "sent_at": -62167219200001}"#,
                "sent_at -0001-12-31T23:59:59.999Z is outside the years",
            ),
            (
                r#"{"event_type": "x", "anonymous_id": "a", "timestamp": "2026-11-20T09:59:00Z",
                    "session": {"id": "s", "start": 253402300800000}}"#,
                "session start +10000-01-01T00:00:00.000Z is outside the years",
            ),
            (
                r#"{"event_type": "x", "anonymous_id": "a", "timestamp": "2026-11-20T09:59:00Z",
                    "session": {"id": "s", "start": "2026-11-20T09:00:00Z", "stop": 253402300800000}}"#,
                "session stop +10000-01-01T00:00:00.000Z is outside the years",
            ),
            // The sum that still can leave chrono's range: a session time near its end, moved by the offset.
            (
                r#"{"event_type": "x", "anonymous_id": "a", "timestamp": "0000-01-01T00:00:00Z", "sent_at": "0000-01-01T00:00:01Z",
                    "session": {"id": "s", "start": 8200000000000000}}"#,
                "session start corrected by the clock offset of sent_at",
            ),
        ] {
            let err = normalize_json(json, "2026-11-20T10:00:00Z", "1")
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
        // Years 0000 and 9999 themselves are RFC 3339.
        let json = r#"{"event_type": "x", "anonymous_id": "a", "timestamp": "2026-11-20T09:59:00Z",
            "session": {"id": "s", "start": "0000-01-01T00:00:00Z"}}"#;
        let e = normalize_json(json, "2026-11-20T10:00:00Z", "1").unwrap();
        assert_eq!(
            e.session.unwrap().start.as_deref(),
            Some("0000-01-01T00:00:00.000Z")
        );
        // Arrival times at chrono's own ends: refused naming the arrival, and the window checks do not overflow.
        for received in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
            let json = r#"{"event_type": "x", "anonymous_id": "a", "timestamp": 1}"#;
            let e = parse(json.as_bytes(), "pk").unwrap().remove(0);
            let err = normalize(e, received, &source("1"), &Limits::default()).unwrap_err();
            assert!(
                err.0.starts_with("received_at (the record's arrival)"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_leap_second_is_folded_to_the_last_millisecond_of_its_minute() {
        let json = r#"{"event_type": "x", "anonymous_id": "a", "timestamp": "2026-11-20T09:59:60.250+00:00",
            "sent_at": "2026-11-20T09:59:60.500Z",
            "session": {"id": "s", "start": "2026-11-20T09:00:60Z", "stop": "2026-11-20T15:29:60+05:30"}}"#;
        let e = normalize_json(json, "2026-11-20T10:00:00Z", "1").unwrap();
        assert_eq!(e.sent_at.as_deref(), Some("2026-11-20T09:59:59.999Z"));
        assert_eq!(
            e.clock.original_timestamp.as_deref(),
            Some("2026-11-20T09:59:59.999Z")
        );
        assert_eq!(e.clock.offset_ms, Some(1));
        assert_eq!(e.timestamp, "2026-11-20T10:00:00.000Z");
        let session = e.session.unwrap();
        assert_eq!(session.start.as_deref(), Some("2026-11-20T09:01:00.000Z"));
        assert_eq!(session.stop.as_deref(), Some("2026-11-20T10:00:00.000Z"));
    }

    #[test]
    fn user_records_of_one_aggregate_without_client_ids_get_ids_of_their_own() {
        // Auto-tracked events carry no time and no id: their record's lineage is their id.
        let json = r#"{"name": "pageView", "attributes": {"url": "https://example.com/"}}"#;
        let of = |user_record| {
            let source = SourceRef {
                user_record,
                ..source("7")
            };
            normalize_at(json, "2026-11-20T10:00:01Z", &source)
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
