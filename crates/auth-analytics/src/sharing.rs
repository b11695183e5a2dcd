//! Attribute sharing, like Pinpoint's "share user attribute data": off unless an allowlist names attributes;
//! chosen ones go out as keyed HMAC-SHA256 hashes, so that joins work without the raw value. The key is never
//! logged, printed or serialized.

use std::collections::{BTreeMap, BTreeSet};

use std::time::Duration;

use bridge_core::config::{ConfigError, Env};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::ENV_ATTRIBUTE_HASH_KEY_SECRET;

/// The prefix of a hashed attribute value.
pub const HASH_PREFIX: &str = "hmac-sha256:";

/// Which attributes leave the function, and which of those as hashes.
#[derive(Clone, Default)]
pub struct AttributeSharing {
    share: BTreeSet<String>,
    hash: BTreeSet<String>,
    key: Vec<u8>,
    withheld: bool,
}

impl std::fmt::Debug for AttributeSharing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttributeSharing")
            .field("share", &self.share)
            .field("hash", &self.hash)
            .field("key", &"<redacted>")
            .field("withheld", &self.withheld)
            .finish()
    }
}

/// A sharing setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SharingError {
    /// An attribute is to be hashed but no key is configured.
    #[error("attributes {0} are to be hashed but no hash key is set")]
    MissingKey(String),
    /// An attribute is to be hashed but not shared at all.
    #[error("attribute {0} is to be hashed but is not in the shared list")]
    HashNotShared(String),
}

impl AttributeSharing {
    /// Sharing switched off.
    pub fn off() -> Self {
        Self::default()
    }

    /// Shares `share`; of those, hashes `hash` with `key`.
    pub fn new(
        share: impl IntoIterator<Item = String>,
        hash: impl IntoIterator<Item = String>,
        key: Option<Vec<u8>>,
    ) -> Result<Self, SharingError> {
        let share: BTreeSet<String> = share.into_iter().filter(|s| !s.is_empty()).collect();
        let hash: BTreeSet<String> = hash.into_iter().filter(|s| !s.is_empty()).collect();
        if let Some(name) = hash.iter().find(|h| !share.contains(*h)) {
            return Err(SharingError::HashNotShared(name.clone()));
        }
        let key = key.unwrap_or_default();
        if !hash.is_empty() && key.is_empty() {
            return Err(SharingError::MissingKey(
                hash.iter().cloned().collect::<Vec<_>>().join(","),
            ));
        }
        Ok(Self {
            share,
            hash,
            key,
            withheld: false,
        })
    }

    /// Shares `share` except the attributes of `hash`, which are withheld (never sent in plain): the settings
    /// to run with when the hash key cannot be had.
    pub fn withholding_hashed(
        share: impl IntoIterator<Item = String>,
        hash: impl IntoIterator<Item = String>,
    ) -> Self {
        let hash: BTreeSet<String> = hash.into_iter().filter(|s| !s.is_empty()).collect();
        Self {
            share: share
                .into_iter()
                .filter(|s| !s.is_empty() && !hash.contains(s))
                .collect(),
            hash: BTreeSet::new(),
            key: Vec::new(),
            withheld: !hash.is_empty(),
        }
    }

    /// Whether attributes configured to be hashed are being withheld for want of the key.
    pub fn withholds_hashed(&self) -> bool {
        self.withheld
    }

    /// Whether any attribute is shared (and so whether log entries need a user lookup).
    pub fn is_on(&self) -> bool {
        !self.share.is_empty()
    }

    /// Whether `name` is shared as a hash.
    pub fn is_hashed(&self, name: &str) -> bool {
        self.hash.contains(name)
    }

    /// The attribute names to share.
    pub fn shared_names(&self) -> impl Iterator<Item = &str> {
        self.share.iter().map(String::as_str)
    }

    /// The shared attributes of `attributes` (hashed where configured); `None` when sharing is off.
    pub fn apply<'a>(
        &self,
        attributes: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Option<BTreeMap<String, String>> {
        if !self.is_on() {
            return None;
        }
        Some(
            attributes
                .into_iter()
                .filter(|(name, _)| self.share.contains(*name))
                .map(|(name, value)| {
                    let out = if self.hash.contains(name) {
                        self.hmac(name, value)
                    } else {
                        value.to_owned()
                    };
                    (name.to_owned(), out)
                })
                .collect(),
        )
    }

    /// `hmac-sha256:<hex>` of the value. Emails are case-insensitive, so `email` is lowercased and trimmed
    /// first; other values are hashed as they are.
    pub fn hmac(&self, name: &str, value: &str) -> String {
        let normalized = if name == "email" {
            value.trim().to_lowercase()
        } else {
            value.to_owned()
        };
        // HMAC takes keys of any length, so this cannot fail; an empty result would be a bug, not a leak.
        let digest = Hmac::<Sha256>::new_from_slice(&self.key)
            .map(|mut mac| {
                mac.update(normalized.as_bytes());
                hex::encode(mac.finalize().into_bytes())
            })
            .unwrap_or_default();
        format!("{HASH_PREFIX}{digest}")
    }
}

/// Parses a comma-separated list of attribute names.
pub fn parse_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

// ---- the key, read from Secrets Manager at cold start, beside the hashing that uses it ----

/// How long a cold start may wait for the hash key secret: with the trigger's put budget (at most 3 s in the
/// template) and its start-up, the first sign-in of an instance still gets its answer inside Cognito's 5 s.
pub const SECRET_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// The key in the secret `ATTRIBUTE_HASH_KEY_SECRET_ARN` names (`None` when it names none). The error names
/// the variable and the cause, never the key.
pub async fn read_hash_key(
    env: &impl Env,
    sdk: &aws_config::SdkConfig,
) -> Result<Option<Vec<u8>>, ConfigError> {
    let Some(secret) = bridge_core::config::optional(env, ENV_ATTRIBUTE_HASH_KEY_SECRET) else {
        return Ok(None);
    };
    let unreadable = |reason: String| ConfigError::Invalid {
        var: ENV_ATTRIBUTE_HASH_KEY_SECRET,
        reason,
    };
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let read = tokio::time::timeout(
        SECRET_READ_TIMEOUT,
        client.get_secret_value().secret_id(&secret).send(),
    )
    .await
    .map_err(|_| unreadable(format!("GetSecretValue took over {SECRET_READ_TIMEOUT:?}")))?
    .map_err(|e| {
        unreadable(format!(
            "GetSecretValue failed: {}",
            aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
        ))
    })?;
    match read.secret_string {
        Some(key) => Ok(Some(key.into_bytes())),
        None => Err(unreadable(
            "the secret has no SecretString (a binary secret is not used as a key)".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sharing() -> AttributeSharing {
        AttributeSharing::new(
            parse_list("email, given_name ,phone_number"),
            parse_list("email,phone_number"),
            Some(b"documentation-key".to_vec()),
        )
        .unwrap()
    }

    #[test]
    fn off_shares_nothing() {
        assert_eq!(
            AttributeSharing::off().apply([("email", "a@example.com")]),
            None
        );
    }

    #[test]
    fn allowlist_filters_and_hashes_are_keyed_and_stable() {
        let s = sharing();
        let out = s
            .apply([
                ("email", "Jane@Example.com "),
                ("given_name", "Jane"),
                ("custom:tier", "gold"),
            ])
            .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out["given_name"], "Jane");
        assert_eq!(out["email"], s.hmac("email", "jane@example.com"));
        assert!(out["email"].starts_with(HASH_PREFIX) && out["email"].len() == 12 + 64);
        let other_key = AttributeSharing::new(
            parse_list("email"),
            parse_list("email"),
            Some(b"another".to_vec()),
        )
        .unwrap();
        assert_ne!(other_key.hmac("email", "jane@example.com"), out["email"]);
        // RFC 4231 test case 2: HMAC-SHA256(key "Jefe", "what do ya want for nothing?").
        let rfc = AttributeSharing::new(parse_list("x"), parse_list("x"), Some(b"Jefe".to_vec()))
            .unwrap();
        assert_eq!(
            rfc.hmac("x", "what do ya want for nothing?"),
            "hmac-sha256:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn bad_settings_are_refused_and_key_is_not_debug_printed() {
        assert_eq!(
            AttributeSharing::new(parse_list("email"), parse_list("email"), None).unwrap_err(),
            SharingError::MissingKey("email".into())
        );
        assert_eq!(
            AttributeSharing::new(
                parse_list("email"),
                parse_list("phone_number"),
                Some(vec![1])
            )
            .unwrap_err(),
            SharingError::HashNotShared("phone_number".into())
        );
        assert!(!format!("{:?}", sharing()).contains("documentation-key"));
    }
}
