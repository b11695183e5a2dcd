//! User pool trigger events -> auth events: which `triggerSource` means what, and the envelope of one
//! trigger invocation. Pure functions over the event as JSON, so that any input, even one this code does
//! not understand, can be handed back to Cognito unchanged.

use aws_lambda_events::event::cognito::CognitoEventUserPoolsHeader;
use bridge_core::envelope::{event_id, rfc3339};
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::event::{self, AuthEvent, Context, Origin, SCHEMA};
use crate::sharing::AttributeSharing;

/// Every trigger source this forwarder maps, with its event type. Anything else passes through, counted.
pub const TRIGGER_TYPES: &[(&str, &str)] = &[
    ("PreSignUp_SignUp", event::SIGN_UP_ATTEMPT),
    ("PreSignUp_AdminCreateUser", event::ADMIN_CREATE_USER),
    ("PreSignUp_ExternalProvider", event::FEDERATED_SIGN_UP),
    ("PostConfirmation_ConfirmSignUp", event::SIGN_UP),
    (
        "PostConfirmation_ConfirmForgotPassword",
        event::PASSWORD_RESET,
    ),
    ("PreAuthentication_Authentication", event::SIGN_IN_ATTEMPT),
    ("PostAuthentication_Authentication", event::SIGN_IN),
    ("TokenGeneration_Authentication", event::TOKENS_ISSUED),
    ("TokenGeneration_HostedAuth", event::TOKENS_ISSUED),
    ("TokenGeneration_NewPasswordChallenge", event::TOKENS_ISSUED),
    ("TokenGeneration_AuthenticateDevice", event::TOKENS_ISSUED),
    ("TokenGeneration_RefreshTokens", event::TOKEN_REFRESH),
    (
        "TokenGeneration_ClientCredentials",
        event::CLIENT_CREDENTIALS,
    ),
];

/// The key an app may send in clientMetadata / validationData to make a retried trigger's event id exact.
pub const NONCE_KEY: &str = "event_nonce";

/// The event type of a trigger source, `None` when not mapped.
pub fn event_type(trigger_source: &str) -> Option<&'static str> {
    TRIGGER_TYPES
        .iter()
        .find(|(source, _)| *source == trigger_source)
        .map(|(_, kind)| *kind)
}

/// What a trigger event turned into.
#[derive(Debug, Clone, PartialEq)]
pub enum Classified {
    /// An auth event to put, with its partition key.
    Event {
        /// The envelope.
        event: Box<AuthEvent>,
        /// The Kinesis partition key.
        partition_key: String,
    },
    /// A trigger source this forwarder does not map.
    Unknown(String),
    /// Not a user pool trigger event at all.
    Unparsable(String),
}

/// Builds the auth event of one trigger invocation at `now`. `window_ms` is the event-id time window used when
/// the app sent no [`NONCE_KEY`] (see README: what event_id hashes).
pub fn classify(
    input: &Value,
    now: DateTime<Utc>,
    window_ms: u64,
    sharing: &AttributeSharing,
) -> Classified {
    if !input.is_object() {
        return Classified::Unparsable("trigger event is not a json object".into());
    }
    let header = match CognitoEventUserPoolsHeader::<String>::deserialize_header(input) {
        Ok(h) => h,
        Err(e) => return Classified::Unparsable(format!("trigger event header: {e}")),
    };
    let Some(source) = header.trigger_source.clone().filter(|s| !s.is_empty()) else {
        return Classified::Unparsable("trigger event has no triggerSource".into());
    };
    let Some(kind) = event_type(&source) else {
        return Classified::Unknown(source);
    };
    let pool = header.user_pool_id.clone().unwrap_or_default();
    let user_name = header.user_name.clone().filter(|s| !s.is_empty());
    let client_id = header
        .caller_context
        .client_id
        .clone()
        .filter(|s| !s.is_empty());
    let request = input.get("request").cloned().unwrap_or(Value::Null);
    let attrs = request
        .get("userAttributes")
        .cloned()
        .unwrap_or(Value::Null);
    let sub = attrs
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let empty = Value::Null;
    let client_metadata = request.get("clientMetadata").unwrap_or(&empty);
    let validation_data = request.get("validationData").unwrap_or(&empty);

    let mut context = Context::default();
    context.fill_from_app(&[client_metadata, validation_data]);
    context.new_device_used = request.get("newDeviceUsed").and_then(Value::as_bool);

    let nonce = [client_metadata, validation_data]
        .iter()
        .find_map(|m| m.get(NONCE_KEY).and_then(Value::as_str))
        .filter(|s| !s.trim().is_empty());
    let discriminator = match nonce {
        Some(n) => format!("nonce:{n}"),
        None => {
            let ms = u64::try_from(now.timestamp_millis()).unwrap_or(0);
            format!("window:{}", ms / window_ms.max(1))
        }
    };
    let id = event_id(&[
        "trigger",
        &pool,
        &source,
        user_name.as_deref().unwrap_or_default(),
        sub.as_deref().unwrap_or_default(),
        client_id.as_deref().unwrap_or_default(),
        &discriminator,
    ]);
    let attributes = sharing.apply(
        attrs
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?))),
    );
    let event = AuthEvent {
        schema: SCHEMA.into(),
        event_id: id,
        kind: kind.into(),
        timestamp: rfc3339(&now),
        received_at: None,
        source: None,
        origin: Origin::Trigger,
        user_pool_id: pool,
        client_id,
        user_sub: sub,
        trigger_source: Some(source),
        trigger_version: header.version.clone(),
        activity: None,
        context,
        attributes,
        profile: None,
    };
    let partition_key = event.partition_key(user_name.as_deref());
    Classified::Event {
        event: Box::new(event),
        partition_key,
    }
}

/// Reading the header of any trigger event with the aws_lambda_events type.
trait DeserializeHeader: Sized {
    fn deserialize_header(input: &Value) -> Result<Self, serde_json::Error>;
}

impl DeserializeHeader for CognitoEventUserPoolsHeader<String> {
    fn deserialize_header(input: &Value) -> Result<Self, serde_json::Error> {
        serde::Deserialize::deserialize(input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_700_000_000_123).unwrap()
    }

    fn post_auth() -> Value {
        json!({
            "version": "1", "triggerSource": "PostAuthentication_Authentication", "region": "us-east-1",
            "userPoolId": "us-east-1_EXAMPLE", "userName": "jane",
            "callerContext": {"awsSdkVersion": "aws-sdk-unknown-unknown", "clientId": "client1"},
            "request": {"newDeviceUsed": true, "userAttributes": {"sub": "s-1", "email": "jane@example.com"},
                        "clientMetadata": {"platform": "iOS", "locale": "en_US", "app_version": "1.2.3"}},
            "response": {}
        })
    }

    #[test]
    fn every_mapped_source_has_a_userauth_type() {
        for (source, kind) in TRIGGER_TYPES {
            assert!(kind.starts_with("_userauth."), "{source}");
        }
        assert_eq!(
            event_type("PostAuthentication_Authentication"),
            Some(event::SIGN_IN)
        );
        assert_eq!(
            event_type("PostConfirmation_ConfirmForgotPassword"),
            Some(event::PASSWORD_RESET)
        );
        assert_eq!(event_type("CustomMessage_SignUp"), None);
    }

    #[test]
    fn post_authentication_maps_to_sign_in_with_context() {
        let Classified::Event {
            event,
            partition_key,
        } = classify(&post_auth(), now(), 10_000, &AttributeSharing::off())
        else {
            panic!("not an event");
        };
        assert_eq!(event.kind, event::SIGN_IN);
        assert_eq!(partition_key, "s-1");
        assert_eq!(event.context.platform.as_deref(), Some("iOS"));
        assert_eq!(event.context.new_device_used, Some(true));
        assert_eq!(event.timestamp, "2023-11-14T22:13:20.123Z");
        assert_eq!(event.attributes, None);
    }

    #[test]
    fn event_id_is_stable_within_the_window_and_exact_with_a_nonce() {
        let id = |e: &Value, ms: i64| match classify(
            e,
            Utc.timestamp_millis_opt(ms).unwrap(),
            10_000,
            &AttributeSharing::off(),
        ) {
            Classified::Event { event, .. } => event.event_id,
            other => panic!("{other:?}"),
        };
        let e = post_auth();
        assert_eq!(id(&e, 1_700_000_001_000), id(&e, 1_700_000_009_999));
        assert_ne!(id(&e, 1_700_000_009_999), id(&e, 1_700_000_010_000));
        let mut n = post_auth();
        n["request"]["clientMetadata"][NONCE_KEY] = json!("req-1");
        assert_eq!(id(&n, 1_700_000_001_000), id(&n, 1_700_000_090_000));
    }

    #[test]
    fn unknown_and_unparsable_are_told_apart() {
        let mut e = post_auth();
        e["triggerSource"] = json!("CustomMessage_SignUp");
        assert_eq!(
            classify(&e, now(), 1, &AttributeSharing::off()),
            Classified::Unknown("CustomMessage_SignUp".into())
        );
        assert!(matches!(
            classify(&json!("x"), now(), 1, &AttributeSharing::off()),
            Classified::Unparsable(_)
        ));
        assert!(matches!(
            classify(&json!({"version": 3}), now(), 1, &AttributeSharing::off()),
            Classified::Unparsable(_)
        ));
        assert!(matches!(
            classify(
                &json!({"callerContext": {}}),
                now(),
                1,
                &AttributeSharing::off()
            ),
            Classified::Unparsable(_)
        ));
    }

    #[test]
    fn pre_sign_up_without_sub_is_partitioned_by_a_user_name_hash() {
        let mut e = post_auth();
        e["triggerSource"] = json!("PreSignUp_SignUp");
        e["request"]["userAttributes"] = json!({"email": "jane@example.com"});
        let Classified::Event {
            event,
            partition_key,
        } = classify(&e, now(), 1, &AttributeSharing::off())
        else {
            panic!()
        };
        assert_eq!(event.user_sub, None);
        assert!(partition_key.starts_with("user-") && !partition_key.contains("jane"));
    }
}
