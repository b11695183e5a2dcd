//! The `cognito-auth-event/v1` envelope (DESIGN.md §3.3) and the event types, Pinpoint's names where they
//! exist and the same style for the rest.

use std::collections::BTreeMap;

use bridge_core::envelope::{Header, SourceRef};
use serde::{Deserialize, Serialize};

/// The schema family of every record this crate produces.
pub const SCHEMA: &str = "cognito-auth-event/v1";

/// Pinpoint's sign-up event: a sign-up is complete (PostConfirmation_ConfirmSignUp).
pub const SIGN_UP: &str = "_userauth.sign_up";
/// Pinpoint's sign-in event: a sign-in succeeded.
pub const SIGN_IN: &str = "_userauth.sign_in";
/// Pinpoint's failed-authentication event: a SignIn that failed (user-activity logs only).
pub const AUTH_FAIL: &str = "_userauth.auth_fail";
/// A sign-up is being attempted (PreSignUp_SignUp; SignUp in the logs).
pub const SIGN_UP_ATTEMPT: &str = "_userauth.sign_up_attempt";
/// A SignUp that failed (logs).
pub const SIGN_UP_FAIL: &str = "_userauth.sign_up_fail";
/// An administrator is creating a user (PreSignUp_AdminCreateUser).
pub const ADMIN_CREATE_USER: &str = "_userauth.admin_create_user";
/// A user is being created from a federated identity provider (PreSignUp_ExternalProvider).
pub const FEDERATED_SIGN_UP: &str = "_userauth.federated_sign_up";
/// A forgotten password was reset (PostConfirmation_ConfirmForgotPassword).
pub const PASSWORD_RESET: &str = "_userauth.password_reset";
/// A sign-in is being attempted; its outcome is not known yet (PreAuthentication_Authentication).
pub const SIGN_IN_ATTEMPT: &str = "_userauth.sign_in_attempt";
/// A sign-in waits on a challenge, such as MFA (SignIn InProgress in the logs).
pub const SIGN_IN_CHALLENGE: &str = "_userauth.sign_in_challenge";
/// Tokens are issued after a sign-in (TokenGeneration_Authentication, _HostedAuth, _NewPasswordChallenge,
/// _AuthenticateDevice).
pub const TOKENS_ISSUED: &str = "_userauth.tokens_issued";
/// Tokens are refreshed (TokenGeneration_RefreshTokens).
pub const TOKEN_REFRESH: &str = "_userauth.token_refresh";
/// Machine-to-machine tokens are issued (TokenGeneration_ClientCredentials, trigger event version 3).
pub const CLIENT_CREDENTIALS: &str = "_userauth.client_credentials";
/// A forgot-password flow started (ForgotPassword in the logs).
pub const FORGOT_PASSWORD: &str = "_userauth.forgot_password";
/// A forgot-password request failed (logs).
pub const FORGOT_PASSWORD_FAIL: &str = "_userauth.forgot_password_fail";
/// A password was changed (PasswordChange in the logs).
pub const PASSWORD_CHANGE: &str = "_userauth.password_change";
/// A password change failed (logs).
pub const PASSWORD_CHANGE_FAIL: &str = "_userauth.password_change_fail";
/// A confirmation code was sent again (ResendCode in the logs).
pub const RESEND_CODE: &str = "_userauth.resend_code";
/// Resending a code failed (logs).
pub const RESEND_CODE_FAIL: &str = "_userauth.resend_code_fail";
/// One user's profile, as of an export (user-snapshot-export).
pub const PROFILE_SNAPSHOT: &str = "_userauth.profile_snapshot";

/// Where an auth event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A user pool Lambda trigger.
    Trigger,
    /// The user pool's user-activity log, through a CloudWatch Logs subscription.
    ActivityLog,
    /// A ListUsers export.
    Snapshot,
    /// Pinpoint's event-stream archive, read back by `pinpoint-backfill` (Pinpoint's own user pool analytics
    /// events).
    Pinpoint,
}

/// What the source says about the circumstances: every field is optional, absent when the source lacks it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    /// The app's platform (from clientMetadata / validationData `platform`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// The app's locale (`locale`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// The app's version (`app_version`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    /// The app's device id (`device_id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// PostAuthentication's `newDeviceUsed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_device_used: Option<bool>,
    /// The caller's IP address (logs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Threat protection's risk level (logs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk_level: Option<String>,
    /// Threat protection's risk decision (logs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk_decision: Option<String>,
    /// Whether compromised credentials were detected (logs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compromised_credential_detected: Option<bool>,
    /// City of the IP address (logs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// Country of the IP address (logs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Cognito's device name, such as "Chrome 126, Windows 10" (logs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    /// The identity provider of a federated user (logs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idp_name: Option<String>,
}

/// What a user-activity log entry said, kept for lineage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// `SignIn`, `SignUp`, `ForgotPassword`, `PasswordChange` or `ResendCode`.
    pub event_type: String,
    /// `Pass`, `Fail` or `InProgress`.
    pub event_response: String,
    /// Cognito's own event id (unique per event).
    pub cognito_event_id: Option<String>,
    /// The CloudWatch Logs event id.
    pub log_event_id: String,
}

/// One `cognito-auth-event/v1` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthEvent {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Deterministic: the same source event gives the same id (see README).
    pub event_id: String,
    /// One of the `_userauth.*` names of this module.
    #[serde(rename = "type")]
    pub kind: String,
    /// When it happened, RFC 3339 (triggers: the invocation time; logs: Cognito's eventTimestamp).
    pub timestamp: String,
    /// When Kinesis received the source record (logs only).
    pub received_at: Option<String>,
    /// The source Kinesis record (logs only).
    pub source: Option<SourceRef>,
    /// Where the event came from.
    pub origin: Origin,
    /// The user pool.
    pub user_pool_id: String,
    /// The app client, when the source names one.
    pub client_id: Option<String>,
    /// The user's `sub`, when known (PreSignUp runs before the user exists).
    pub user_sub: Option<String>,
    /// The trigger's `triggerSource` (triggers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger_source: Option<String>,
    /// The trigger event's `version` (triggers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger_version: Option<String>,
    /// The log entry's type and response (logs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activity: Option<Activity>,
    /// Context dimensions.
    pub context: Context,
    /// Shared user attributes: present only when sharing is switched on; hashed ones are `hmac-sha256:<hex>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<BTreeMap<String, String>>,
    /// The account state of a user (snapshots only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
}

/// A user's account state, as ListUsers reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// `UserStatus`, such as `CONFIRMED` or `FORCE_CHANGE_PASSWORD`.
    pub status: Option<String>,
    /// Whether the user is enabled.
    pub enabled: Option<bool>,
    /// When the user was created, RFC 3339.
    pub created_at: Option<String>,
    /// When the user was last modified, RFC 3339.
    pub last_modified_at: Option<String>,
}

impl AuthEvent {
    /// The Kinesis partition key: the user sub; without one, a hash of the pool and user name (never the
    /// user name itself, which may be an email address); without either, the pool and client.
    pub fn partition_key(&self, user_name: Option<&str>) -> String {
        if let Some(sub) = self.user_sub.as_deref().filter(|s| !s.is_empty()) {
            return sub.to_owned();
        }
        if let Some(name) = user_name.filter(|s| !s.is_empty()) {
            return format!(
                "user-{}",
                bridge_core::envelope::event_id(&[&self.user_pool_id, name])
            );
        }
        format!(
            "client-{}",
            bridge_core::envelope::event_id(&[
                &self.user_pool_id,
                self.client_id.as_deref().unwrap_or_default()
            ])
        )
    }

    /// The bridge-core header (used only if a record had to become a pointer record).
    pub fn header(&self) -> Header {
        Header {
            schema: self.schema.clone(),
            event_id: self.event_id.clone(),
            kind: self.kind.clone(),
            timestamp: self.timestamp.clone(),
            received_at: self.received_at.clone(),
            source: self.source.clone().unwrap_or_default(),
        }
    }
}

/// The context keys an app sends in clientMetadata / validationData, with the field each fills.
pub const CONTEXT_KEYS: &[&str] = &["platform", "locale", "app_version", "device_id"];

/// Values from the app are untrusted: longer ones are cut to this many characters.
pub const MAX_CONTEXT_VALUE_CHARS: usize = 128;

fn clean(value: &str) -> Option<String> {
    let v = value.trim();
    (!v.is_empty()).then(|| v.chars().take(MAX_CONTEXT_VALUE_CHARS).collect())
}

impl Context {
    /// Fills platform, locale, app version and device id from the first map that has each key.
    pub fn fill_from_app(&mut self, maps: &[&serde_json::Value]) {
        let pick = |key: &str| {
            maps.iter()
                .find_map(|m| m.get(key).and_then(|v| v.as_str()).and_then(clean))
        };
        self.platform = self.platform.take().or_else(|| pick("platform"));
        self.locale = self.locale.take().or_else(|| pick("locale"));
        self.app_version = self.app_version.take().or_else(|| pick("app_version"));
        self.device_id = self.device_id.take().or_else(|| pick("device_id"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn app_context_is_trimmed_cut_and_first_map_wins() {
        let mut c = Context::default();
        let long = "x".repeat(300);
        c.fill_from_app(&[
            &json!({"platform": " iOS ", "locale": ""}),
            &json!({"platform": "Android", "locale": "en_US", "app_version": long, "device_id": 3}),
        ]);
        assert_eq!(c.platform.as_deref(), Some("iOS"));
        assert_eq!(c.locale.as_deref(), Some("en_US"));
        assert_eq!(
            c.app_version.map(|v| v.len()),
            Some(MAX_CONTEXT_VALUE_CHARS)
        );
        assert_eq!(c.device_id, None);
    }
}
