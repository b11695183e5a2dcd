//! User-activity logs -> auth events: decoding a CloudWatch Logs subscription record (base64 of gzip JSON;
//! `CONTROL_MESSAGE` records only probe the destination) and mapping each Cognito user-activity entry to an
//! auth event. Numbers and booleans arrive as strings and empty strings mean unknown.

use std::io::Read as _;

use aws_lambda_events::event::cloudwatch_logs::{LogData, LogEntry};
use bridge_core::envelope::{SourceRef, event_id, rfc3339, rfc3339_from_millis};
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::error::AuthError;
use crate::event::{self, Activity, AuthEvent, Context, Origin, SCHEMA};

/// The `messageType` of a destination health check.
pub const CONTROL_MESSAGE: &str = "CONTROL_MESSAGE";
/// The `messageType` of log events.
pub const DATA_MESSAGE: &str = "DATA_MESSAGE";
/// Cap on a decompressed subscription record. CloudWatch Logs sends at most about 1 MB of log events per
/// subscription record (a PutLogEvents batch is at most 1,048,576 bytes); with the JSON envelope and escaping
/// that stays well under this. A record that inflates past it (a gzip bomb) is refused before it is parsed.
pub const MAX_DECOMPRESSED_BYTES: u64 = 8 * 1024 * 1024;

/// A decoded subscription record.
#[derive(Debug, Clone)]
pub enum Subscription {
    /// A destination health check: nothing to forward.
    Control,
    /// Log events.
    Data(LogData),
}

/// A subscription document, parsed straight into its fields (no generic JSON tree in between). Fields are
/// optional here so that a control message, which may leave some out, still parses; a data message must have
/// them all.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionDoc {
    message_type: Option<String>,
    owner: Option<String>,
    log_group: Option<String>,
    log_stream: Option<String>,
    #[serde(default)]
    subscription_filters: Vec<String>,
    log_events: Option<Vec<LogEntry>>,
}

/// Gunzips (within [`MAX_DECOMPRESSED_BYTES`]) and parses one subscription record's data.
pub fn decode_subscription(gz: &[u8]) -> Result<Subscription, AuthError> {
    let mut json = Vec::new();
    flate2::read::MultiGzDecoder::new(gz)
        .take(MAX_DECOMPRESSED_BYTES + 1)
        .read_to_end(&mut json)
        .map_err(|e| AuthError::NotGzip(e.to_string()))?;
    if json.len() as u64 > MAX_DECOMPRESSED_BYTES {
        return Err(AuthError::NotGzip(format!(
            "inflates past {MAX_DECOMPRESSED_BYTES} bytes"
        )));
    }
    let doc: SubscriptionDoc =
        serde_json::from_slice(&json).map_err(|e| AuthError::NotLogData(e.to_string()))?;
    match doc.message_type.as_deref() {
        Some(CONTROL_MESSAGE) => Ok(Subscription::Control),
        Some(DATA_MESSAGE) => {
            let missing = |field: &str| AuthError::NotLogData(format!("missing field `{field}`"));
            let mut data = LogData::default();
            data.owner = doc.owner.ok_or_else(|| missing("owner"))?;
            data.log_group = doc.log_group.ok_or_else(|| missing("logGroup"))?;
            data.log_stream = doc.log_stream.ok_or_else(|| missing("logStream"))?;
            data.subscription_filters = doc.subscription_filters;
            data.message_type = DATA_MESSAGE.to_owned();
            data.log_events = doc.log_events.ok_or_else(|| missing("logEvents"))?;
            Ok(Subscription::Data(data))
        }
        Some(other) => Err(AuthError::NotLogData(format!(
            "unknown messageType '{other}'"
        ))),
        None => Err(AuthError::NotLogData("no messageType".into())),
    }
}

/// The user-activity event types this forwarder maps.
pub const ACTIVITY_TYPES: &[&str] = &[
    "SignIn",
    "SignUp",
    "ForgotPassword",
    "PasswordChange",
    "ResendCode",
];

/// The auth event type of an entry's `eventType` and `eventResponse`; `None` when either is unknown.
pub fn event_type(event_type: &str, response: &str) -> Option<&'static str> {
    use event::*;
    Some(match (event_type, response) {
        ("SignIn", "Pass") => SIGN_IN,
        ("SignIn", "Fail") => AUTH_FAIL,
        ("SignIn", "InProgress") => SIGN_IN_CHALLENGE,
        ("SignUp", "Pass" | "InProgress") => SIGN_UP_ATTEMPT,
        ("SignUp", "Fail") => SIGN_UP_FAIL,
        ("ForgotPassword", "Pass" | "InProgress") => FORGOT_PASSWORD,
        ("ForgotPassword", "Fail") => FORGOT_PASSWORD_FAIL,
        ("PasswordChange", "Pass" | "InProgress") => PASSWORD_CHANGE,
        ("PasswordChange", "Fail") => PASSWORD_CHANGE_FAIL,
        ("ResendCode", "Pass" | "InProgress") => RESEND_CODE,
        ("ResendCode", "Fail") => RESEND_CODE_FAIL,
        _ => return None,
    })
}

/// What one log event turned into.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// An auth event, with the user name (never logged or forwarded; used for the partition key fallback and
    /// the attribute lookup).
    Event {
        /// The envelope (attributes not yet filled).
        event: Box<AuthEvent>,
        /// The entry's `userName`.
        user_name: Option<String>,
    },
    /// An entry of a type or response this forwarder does not map (the log schema may grow).
    Unmapped(String),
}

fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn flag(v: &Value, key: &str) -> Option<bool> {
    match text(v, key)?.to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// Lineage and arrival of the Kinesis record an entry came in.
#[derive(Debug, Clone)]
pub struct RecordOrigin<'a> {
    /// The source record.
    pub source: &'a SourceRef,
    /// When Kinesis received it.
    pub arrival: Option<DateTime<Utc>>,
}

/// Maps the log event at position `index` of its record to an auth event.
pub fn parse_entry(
    entry: &LogEntry,
    index: u32,
    origin: &RecordOrigin<'_>,
) -> Result<Parsed, AuthError> {
    let bad = |reason: String| AuthError::NotActivityEntry {
        id: entry.id.clone(),
        reason,
    };
    let doc: Value = serde_json::from_str(&entry.message)
        .map_err(|e| bad(format!("message is not json: {e}")))?;
    let message = doc
        .get("message")
        .filter(|m| m.is_object())
        .ok_or_else(|| bad("no message object".into()))?;
    let kind_name = text(message, "eventType").ok_or_else(|| bad("no eventType".into()))?;
    let response = text(message, "eventResponse").ok_or_else(|| bad("no eventResponse".into()))?;
    let Some(kind) = event_type(&kind_name, &response) else {
        return Ok(Parsed::Unmapped(format!("{kind_name}/{response}")));
    };
    let pool = text(message, "userPoolId")
        .or_else(|| doc.get("logSourceId").and_then(|l| text(l, "userPoolId")))
        .ok_or_else(|| bad("no userPoolId".into()))?;
    let cognito_event_id = text(message, "eventId");
    let timestamp = text(&doc, "eventTimestamp")
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(rfc3339_from_millis)
        .or_else(|| rfc3339_from_millis(entry.timestamp))
        .ok_or_else(|| bad("no usable eventTimestamp".into()))?;
    let natural = match &cognito_event_id {
        Some(id) => format!("cognito:{id}"),
        None => format!("log:{}", entry.id),
    };
    let context = Context {
        ip: text(message, "ipAddress"),
        risk_level: text(message, "riskLevel"),
        risk_decision: text(message, "riskDecision"),
        compromised_credential_detected: flag(message, "compromisedCredentialDetected"),
        city: text(message, "city"),
        country: text(message, "country"),
        device_name: text(message, "deviceName"),
        idp_name: text(message, "idpName"),
        ..Context::default()
    };
    let event = AuthEvent {
        schema: SCHEMA.into(),
        event_id: event_id(&["activity_log", &pool, &natural]),
        kind: kind.into(),
        timestamp,
        received_at: origin.arrival.as_ref().map(rfc3339),
        source: Some(SourceRef {
            sub_sequence: index,
            ..origin.source.clone()
        }),
        origin: Origin::ActivityLog,
        user_pool_id: pool,
        client_id: text(message, "clientId"),
        user_sub: text(message, "userSub"),
        trigger_source: None,
        trigger_version: None,
        activity: Some(Activity {
            event_type: kind_name,
            event_response: response,
            cognito_event_id,
            log_event_id: entry.id.clone(),
        }),
        context,
        attributes: None,
        profile: None,
    };
    Ok(Parsed::Event {
        event: Box::new(event),
        user_name: text(message, "userName"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::Write as _;

    fn gzip(v: &Value) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(v.to_string().as_bytes()).unwrap();
        enc.finish().unwrap()
    }

    fn entry(message: Value) -> LogEntry {
        let mut e = LogEntry::default();
        e.id = "37".repeat(28);
        e.timestamp = 1_700_000_000_000;
        e.message = message.to_string();
        e
    }

    fn origin_source() -> SourceRef {
        SourceRef {
            stream_arn: "arn:aws:kinesis:us-east-1:123456789012:stream/cognito-activity".into(),
            shard_id: "shardId-000000000000".into(),
            sequence_number: "1".into(),
            sub_sequence: 0,
            user_record: None,
        }
    }

    fn sign_in(response: &str) -> Value {
        json!({"eventTimestamp": "1700000000123", "eventSource": "USER_ACTIVITY", "logLevel": "INFO",
               "message": {"version": "1", "eventId": "e-1", "eventType": "SignIn", "userSub": "s-1", "userName": "jane",
                           "userPoolId": "us-east-1_EXAMPLE", "clientId": "c", "eventResponse": response, "riskLevel": "",
                           "riskDecision": "PASS", "ipAddress": "192.0.2.1", "compromisedCredentialDetected": "false",
                           "city": "Seattle", "country": "United States", "deviceName": "Chrome 126, Windows 10"},
               "logSourceId": {"userPoolId": "us-east-1_EXAMPLE"}})
    }

    #[test]
    fn control_and_data_messages_are_told_apart() {
        let control = json!({"messageType": "CONTROL_MESSAGE", "owner": "CloudwatchLogs", "logGroup": "", "logStream": "",
                             "subscriptionFilters": [], "logEvents": [{"id": "", "timestamp": 1, "message": "CWL CONTROL MESSAGE: Checking health of destination Kinesis stream."}]});
        assert!(matches!(
            decode_subscription(&gzip(&control)).unwrap(),
            Subscription::Control
        ));
        let data = json!({"messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": "g", "logStream": "s",
                          "subscriptionFilters": ["f"], "logEvents": [{"id": "1", "timestamp": 1, "message": "{}"}]});
        let Subscription::Data(d) = decode_subscription(&gzip(&data)).unwrap() else {
            panic!()
        };
        assert_eq!(d.log_events.len(), 1);
        assert!(matches!(
            decode_subscription(b"{\"plain\": 1}"),
            Err(AuthError::NotGzip(_))
        ));
        assert!(matches!(
            decode_subscription(&gzip(&json!({"a": 1}))),
            Err(AuthError::NotLogData(_))
        ));
        let no_events = json!({"messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": "g", "logStream": "s"});
        assert!(matches!(
            decode_subscription(&gzip(&no_events)),
            Err(AuthError::NotLogData(m)) if m == "missing field `logEvents`"
        ));
    }

    #[test]
    fn a_gzip_bomb_is_refused_before_it_is_parsed() {
        use std::io::Write as _;
        // 16 MiB of spaces compress to a few KiB: inflating it must stop at the cap.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![b' '; 16 << 20]).unwrap();
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
        assert!(matches!(
            decode_subscription(&bomb),
            Err(AuthError::NotGzip(m)) if m.contains("inflates past")
        ));
    }

    #[test]
    fn a_failed_sign_in_is_auth_fail_with_its_context() {
        let source = origin_source();
        let origin = RecordOrigin {
            source: &source,
            arrival: None,
        };
        let Parsed::Event { event, user_name } =
            parse_entry(&entry(sign_in("Fail")), 2, &origin).unwrap()
        else {
            panic!()
        };
        assert_eq!(event.kind, event::AUTH_FAIL);
        assert_eq!(user_name.as_deref(), Some("jane"));
        assert_eq!(event.timestamp, "2023-11-14T22:13:20.123Z");
        assert_eq!(event.context.ip.as_deref(), Some("192.0.2.1"));
        assert_eq!(event.context.risk_level, None);
        assert_eq!(event.context.compromised_credential_detected, Some(false));
        assert_eq!(event.source.as_ref().map(|s| s.sub_sequence), Some(2));
        let Parsed::Event { event: pass, .. } =
            parse_entry(&entry(sign_in("Pass")), 2, &origin).unwrap()
        else {
            panic!()
        };
        assert_eq!(pass.kind, event::SIGN_IN);
        // Cognito's eventId names the event: the same id whatever the response text says.
        assert_eq!(pass.event_id, event.event_id);
    }

    #[test]
    fn unknown_types_are_unmapped_and_garbage_is_an_error() {
        let source = origin_source();
        let origin = RecordOrigin {
            source: &source,
            arrival: None,
        };
        let mut m = sign_in("Pass");
        m["message"]["eventType"] = json!("TokenRevoked");
        assert_eq!(
            parse_entry(&entry(m), 0, &origin).unwrap(),
            Parsed::Unmapped("TokenRevoked/Pass".into())
        );
        let mut e = LogEntry::default();
        e.message = "not json".into();
        assert!(parse_entry(&e, 0, &origin).is_err());
        assert!(
            parse_entry(
                &entry(json!({"message": {"eventType": "SignIn"}})),
                0,
                &origin
            )
            .is_err()
        );
    }
}
