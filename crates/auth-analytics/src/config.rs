//! The configuration of each binary, read once at cold start. Env var names are constants; each binary has
//! its own `*_REQUIRED_ENV` slice (the deployment template is checked against them).

use std::time::Duration;

use bridge_core::config::{self, ConfigError, Env, ranged, required};

use crate::sharing::{AttributeSharing, parse_list};

/// Output stream of auth events: name or ARN.
pub const ENV_OUTPUT_STREAM: &str = "AUTH_OUTPUT_STREAM_NAME";
/// Hard time budget of the trigger's Kinesis put, ms.
pub const ENV_PUT_BUDGET_MS: &str = "PUT_BUDGET_MS";
/// Width of the event-id time window of triggers without an `event_nonce`, ms.
pub const ENV_EVENT_ID_WINDOW_MS: &str = "EVENT_ID_WINDOW_MS";
/// Comma-separated user attribute names to share; empty or unset means sharing is off.
pub const ENV_SHARE_ATTRIBUTES: &str = "SHARE_ATTRIBUTES";
/// Comma-separated shared attribute names to send as HMAC-SHA256 hashes.
pub const ENV_HASH_ATTRIBUTES: &str = "HASH_ATTRIBUTES";
/// The HMAC key (at least 16 bytes), for local runs. Never logged.
pub const ENV_ATTRIBUTE_HASH_KEY: &str = "ATTRIBUTE_HASH_KEY";
/// ARN or name of a Secrets Manager secret whose `SecretString` is the HMAC key: how a deployment gives it
/// (read once at cold start by each config's `load`, so the key is never in the function's configuration).
pub const ENV_ATTRIBUTE_HASH_KEY_SECRET: &str = "ATTRIBUTE_HASH_KEY_SECRET_ARN";
/// S3 bucket for dead letters (log forwarder).
pub const ENV_DEAD_LETTER_BUCKET: &str = "DEAD_LETTER_BUCKET";
/// Attempts per output record on PutRecords (log forwarder).
pub const ENV_PUT_MAX_ATTEMPTS: &str = "PUT_MAX_ATTEMPTS";
/// How long a user lookup is cached, seconds.
pub const ENV_LOOKUP_CACHE_TTL_SECONDS: &str = "LOOKUP_CACHE_TTL_SECONDS";
/// How many users the lookup cache holds.
pub const ENV_LOOKUP_CACHE_CAPACITY: &str = "LOOKUP_CACHE_CAPACITY";
/// Lookups in flight at once.
pub const ENV_LOOKUP_CONCURRENCY: &str = "LOOKUP_CONCURRENCY";
/// The user pool to export (user-snapshot-export).
pub const ENV_USER_POOL_ID: &str = "USER_POOL_ID";
/// ListUsers requests per second at most (user-snapshot-export).
pub const ENV_LIST_USERS_RATE: &str = "LIST_USERS_RATE";

/// What `auth-trigger-forwarder` must be given.
pub const TRIGGER_REQUIRED_ENV: &[&str] = &[ENV_OUTPUT_STREAM];
/// What `auth-log-forwarder` must be given.
pub const LOG_REQUIRED_ENV: &[&str] = &[ENV_OUTPUT_STREAM, ENV_DEAD_LETTER_BUCKET];
/// What `user-snapshot-export` must be given.
pub const EXPORT_REQUIRED_ENV: &[&str] = &[ENV_OUTPUT_STREAM, ENV_USER_POOL_ID];

/// Default put budget: well inside Cognito's 5-second trigger timeout.
pub const DEFAULT_PUT_BUDGET_MS: u64 = 500;
/// Default event-id window (see README).
pub const DEFAULT_EVENT_ID_WINDOW_MS: u64 = 10_000;
/// Shortest accepted hash key, bytes.
pub const MIN_HASH_KEY_BYTES: usize = 16;
/// Default lookup cache lifetime.
pub const DEFAULT_LOOKUP_CACHE_TTL_SECONDS: u64 = 300;
/// Default lookup cache size.
pub const DEFAULT_LOOKUP_CACHE_CAPACITY: usize = 10_000;
/// Default lookups in flight. AdminGetUser shares the account's UserRead quota (120/s) with every other
/// caller, so one function takes a small share.
pub const DEFAULT_LOOKUP_CONCURRENCY: usize = 4;
/// Default ListUsers rate: a sixth of the account's 30/s UserList quota.
pub const DEFAULT_LIST_USERS_RATE: f64 = 5.0;

/// Where the HMAC key of hashed attributes comes from.
#[derive(Clone)]
pub enum HashKey {
    /// `ATTRIBUTE_HASH_KEY`, if set (a secret named in the environment is then refused: use `load`).
    FromEnv,
    /// Read from the secret `ATTRIBUTE_HASH_KEY_SECRET_ARN` names (`None`: no secret is named).
    Read(Option<Vec<u8>>),
    /// The named secret could not be read: hashed attributes are not shared at all (trigger fail-open).
    Unavailable,
}

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::FromEnv => "FromEnv",
            Self::Read(Some(_)) => "Read(<redacted>)",
            Self::Read(None) => "Read(None)",
            Self::Unavailable => "Unavailable",
        })
    }
}

/// Reads the sharing settings (shared by every binary).
pub fn sharing_from_env(env: &impl Env, key: HashKey) -> Result<AttributeSharing, ConfigError> {
    let share = parse_list(&config::optional(env, ENV_SHARE_ATTRIBUTES).unwrap_or_default());
    let hash = parse_list(&config::optional(env, ENV_HASH_ATTRIBUTES).unwrap_or_default());
    let env_key = config::optional(env, ENV_ATTRIBUTE_HASH_KEY).map(String::into_bytes);
    let secret = config::optional(env, ENV_ATTRIBUTE_HASH_KEY_SECRET);
    let key = match key {
        // Without the key the hashed attributes are withheld, whatever else is set (the trigger's fail-open).
        HashKey::Unavailable => return Ok(AttributeSharing::withholding_hashed(share, hash)),
        HashKey::FromEnv => None,
        HashKey::Read(key) => Some(key),
    };
    if env_key.is_some() && secret.is_some() {
        return Err(ConfigError::Invalid {
            var: ENV_ATTRIBUTE_HASH_KEY_SECRET,
            reason: format!("set either {ENV_ATTRIBUTE_HASH_KEY} or this, not both"),
        });
    }
    let (key, var) = match (key, secret.is_some()) {
        (None, true) => {
            return Err(ConfigError::Invalid {
                var: ENV_ATTRIBUTE_HASH_KEY_SECRET,
                reason: "the secret is read at cold start by the config's load, not by from_env"
                    .into(),
            });
        }
        (Some(read), true) => (read, ENV_ATTRIBUTE_HASH_KEY_SECRET),
        (_, false) => (env_key, ENV_ATTRIBUTE_HASH_KEY),
    };
    if let Some(k) = &key
        && k.len() < MIN_HASH_KEY_BYTES
    {
        return Err(ConfigError::Invalid {
            var,
            reason: format!("the key must have at least {MIN_HASH_KEY_BYTES} bytes"),
        });
    }
    AttributeSharing::new(share, hash, key).map_err(|e| ConfigError::Invalid {
        var: ENV_HASH_ATTRIBUTES,
        reason: e.to_string(),
    })
}

pub use crate::sharing::{SECRET_READ_TIMEOUT, read_hash_key};

/// `auth-trigger-forwarder`'s settings.
#[derive(Debug, Clone)]
pub struct TriggerConfig {
    /// Output stream name or ARN.
    pub output_stream: String,
    /// Hard budget of the put.
    pub put_budget: Duration,
    /// Event-id window.
    pub event_id_window_ms: u64,
    /// Attribute sharing.
    pub sharing: AttributeSharing,
}

impl TriggerConfig {
    /// Reads the environment (a hash key only from `ATTRIBUTE_HASH_KEY`).
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        Self::build(env, HashKey::FromEnv)
    }

    /// Reads the environment and the hash key secret. Fails open: a secret that cannot be read is logged and
    /// leaves the hashed attributes out of every event (never sent in plain), because a trigger that fails its
    /// cold start fails the user's sign-in. The next cold start tries again.
    pub async fn load(env: &impl Env, sdk: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        match read_hash_key(env, sdk).await {
            Ok(key) => match Self::build(env, HashKey::Read(key)) {
                Ok(config) => Ok(config),
                Err(e) if is_hash_key_error(&e) => Self::degraded(env, &e),
                Err(e) => Err(e),
            },
            Err(e) => Self::degraded(env, &e),
        }
    }

    fn degraded(env: &impl Env, cause: &ConfigError) -> Result<Self, ConfigError> {
        tracing::error!(
            error = %cause,
            "attribute hash key unavailable: hashed attributes are left out of auth events until a cold start reads it"
        );
        Self::build(env, HashKey::Unavailable)
    }

    fn build(env: &impl Env, key: HashKey) -> Result<Self, ConfigError> {
        Ok(Self {
            output_stream: required(env, ENV_OUTPUT_STREAM)?,
            put_budget: Duration::from_millis(ranged(
                env,
                ENV_PUT_BUDGET_MS,
                DEFAULT_PUT_BUDGET_MS,
                10..=4_000,
            )?),
            event_id_window_ms: ranged(
                env,
                ENV_EVENT_ID_WINDOW_MS,
                DEFAULT_EVENT_ID_WINDOW_MS,
                1..=3_600_000,
            )?,
            sharing: sharing_from_env(env, key)?,
        })
    }
}

/// A hashing setting the trigger cannot use (no key, a short key, a key given twice, a hashed attribute not
/// shared): the trigger then runs with the hashed attributes withheld rather than fail its cold start.
fn is_hash_key_error(e: &ConfigError) -> bool {
    matches!(e, ConfigError::Invalid { var, .. }
        if [ENV_ATTRIBUTE_HASH_KEY_SECRET, ENV_ATTRIBUTE_HASH_KEY, ENV_HASH_ATTRIBUTES].contains(var))
}

/// User lookup settings.
#[derive(Debug, Clone, Copy)]
pub struct LookupConfig {
    /// Cache lifetime.
    pub ttl: Duration,
    /// Cache size.
    pub capacity: usize,
    /// Lookups in flight.
    pub concurrency: usize,
}

/// `auth-log-forwarder`'s settings.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Output stream name or ARN.
    pub output_stream: String,
    /// Dead-letter bucket.
    pub dead_letter_bucket: String,
    /// PutRecords attempts per record.
    pub put_max_attempts: u32,
    /// Attribute sharing.
    pub sharing: AttributeSharing,
    /// User lookups (used only when sharing is on).
    pub lookup: LookupConfig,
    /// The pipeline's give-up age and KPL aggregate policy (accepted by default: CloudWatch Logs writes the
    /// stream).
    pub pipeline: bridge_core::pipeline::Settings,
}

impl LogConfig {
    /// Reads the environment (a hash key only from `ATTRIBUTE_HASH_KEY`).
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        Self::build(env, HashKey::FromEnv)
    }

    /// Reads the environment and the hash key secret; an unreadable secret fails the cold start (the batch
    /// waits on the stream and is retried).
    pub async fn load(env: &impl Env, sdk: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        Self::build(env, HashKey::Read(read_hash_key(env, sdk).await?))
    }

    fn build(env: &impl Env, key: HashKey) -> Result<Self, ConfigError> {
        Ok(Self {
            output_stream: required(env, ENV_OUTPUT_STREAM)?,
            dead_letter_bucket: required(env, ENV_DEAD_LETTER_BUCKET)?,
            put_max_attempts: ranged(env, ENV_PUT_MAX_ATTEMPTS, 6u32, 1..=20)?,
            sharing: sharing_from_env(env, key)?,
            lookup: LookupConfig {
                ttl: Duration::from_secs(ranged(
                    env,
                    ENV_LOOKUP_CACHE_TTL_SECONDS,
                    DEFAULT_LOOKUP_CACHE_TTL_SECONDS,
                    1..=86_400,
                )?),
                capacity: ranged(
                    env,
                    ENV_LOOKUP_CACHE_CAPACITY,
                    DEFAULT_LOOKUP_CACHE_CAPACITY,
                    1..=1_000_000,
                )?,
                concurrency: ranged(
                    env,
                    ENV_LOOKUP_CONCURRENCY,
                    DEFAULT_LOOKUP_CONCURRENCY,
                    1..=64,
                )?,
            },
            pipeline: bridge_core::pipeline::Settings::from_env(
                env,
                bridge_core::pipeline::Aggregates::ACCEPT,
            )?,
        })
    }
}

/// `user-snapshot-export`'s settings.
#[derive(Debug, Clone)]
pub struct ExportConfig {
    /// Output stream name or ARN.
    pub output_stream: String,
    /// The pool to export.
    pub user_pool_id: String,
    /// ListUsers requests per second at most.
    pub list_users_rate: f64,
    /// Attribute sharing (a snapshot carries attributes only when sharing is on).
    pub sharing: AttributeSharing,
}

impl ExportConfig {
    /// Reads the environment (a hash key only from `ATTRIBUTE_HASH_KEY`).
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        Self::build(env, HashKey::FromEnv)
    }

    /// Reads the environment and the hash key secret.
    pub async fn load(env: &impl Env, sdk: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        Self::build(env, HashKey::Read(read_hash_key(env, sdk).await?))
    }

    fn build(env: &impl Env, key: HashKey) -> Result<Self, ConfigError> {
        Ok(Self {
            output_stream: required(env, ENV_OUTPUT_STREAM)?,
            user_pool_id: required(env, ENV_USER_POOL_ID)?,
            list_users_rate: ranged(
                env,
                ENV_LIST_USERS_RATE,
                DEFAULT_LIST_USERS_RATE,
                0.01..=30.0,
            )?,
            sharing: sharing_from_env(env, key)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(required: &[&str], pairs: &[(&str, &str)]) -> HashMap<String, String> {
        let mut e: HashMap<String, String> = required
            .iter()
            .map(|v| ((*v).to_owned(), format!("{v}-value")))
            .collect();
        e.extend(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        e
    }

    #[test]
    fn defaults_apply_and_sharing_is_off() {
        let t = TriggerConfig::from_env(&env(TRIGGER_REQUIRED_ENV, &[])).unwrap();
        assert_eq!(t.put_budget, Duration::from_millis(500));
        assert!(!t.sharing.is_on());
        let l = LogConfig::from_env(&env(LOG_REQUIRED_ENV, &[])).unwrap();
        assert_eq!(l.lookup.concurrency, DEFAULT_LOOKUP_CONCURRENCY);
        assert!(!l.sharing.is_on());
        let x = ExportConfig::from_env(&env(EXPORT_REQUIRED_ENV, &[])).unwrap();
        assert!((x.list_users_rate - DEFAULT_LIST_USERS_RATE).abs() < f64::EPSILON);
    }

    #[test]
    fn each_required_variable_is_named_when_missing() {
        for var in TRIGGER_REQUIRED_ENV {
            let mut e = env(TRIGGER_REQUIRED_ENV, &[]);
            e.remove(*var);
            assert_eq!(
                TriggerConfig::from_env(&e).unwrap_err(),
                ConfigError::Missing(var)
            );
        }
        for var in LOG_REQUIRED_ENV {
            let mut e = env(LOG_REQUIRED_ENV, &[]);
            e.remove(*var);
            assert_eq!(
                LogConfig::from_env(&e).unwrap_err(),
                ConfigError::Missing(var)
            );
        }
        for var in EXPORT_REQUIRED_ENV {
            let mut e = env(EXPORT_REQUIRED_ENV, &[]);
            e.remove(*var);
            assert_eq!(
                ExportConfig::from_env(&e).unwrap_err(),
                ConfigError::Missing(var)
            );
        }
    }

    #[test]
    fn bad_values_name_their_variable_and_never_echo_the_key() {
        let err = TriggerConfig::from_env(&env(TRIGGER_REQUIRED_ENV, &[(ENV_PUT_BUDGET_MS, "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("PUT_BUDGET_MS"), "{err}");
        let err = TriggerConfig::from_env(&env(
            TRIGGER_REQUIRED_ENV,
            &[
                (ENV_SHARE_ATTRIBUTES, "email"),
                (ENV_HASH_ATTRIBUTES, "email"),
                (ENV_ATTRIBUTE_HASH_KEY, "short-secret"),
            ],
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("ATTRIBUTE_HASH_KEY") && !err.contains("short-secret"),
            "{err}"
        );
        let err = TriggerConfig::from_env(&env(
            TRIGGER_REQUIRED_ENV,
            &[
                (ENV_SHARE_ATTRIBUTES, "email"),
                (ENV_HASH_ATTRIBUTES, "email"),
            ],
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("HASH_ATTRIBUTES") && err.contains("no hash key"),
            "{err}"
        );
        let on = TriggerConfig::from_env(&env(
            TRIGGER_REQUIRED_ENV,
            &[
                (ENV_SHARE_ATTRIBUTES, "email,locale"),
                (ENV_HASH_ATTRIBUTES, "email"),
                (ENV_ATTRIBUTE_HASH_KEY, "0123456789abcdef-doc-key"),
            ],
        ))
        .unwrap();
        assert!(on.sharing.is_on());
    }

    #[test]
    fn the_hash_key_comes_from_one_place_and_an_unavailable_key_shares_no_hashed_attribute() {
        let sharing = [
            (ENV_SHARE_ATTRIBUTES, "email,locale"),
            (ENV_HASH_ATTRIBUTES, "email"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut pairs = sharing.to_vec();
            pairs.extend_from_slice(extra);
            env(TRIGGER_REQUIRED_ENV, &pairs)
        };
        let secret = (
            ENV_ATTRIBUTE_HASH_KEY_SECRET,
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:k",
        );
        let both = with(&[secret, (ENV_ATTRIBUTE_HASH_KEY, "0123456789abcdef-doc-key")]);
        let err = TriggerConfig::build(&both, HashKey::Read(Some(b"0123456789abcdef".to_vec())))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not both"), "{err}");
        // from_env cannot read a secret: it says so rather than running without the key.
        let err = TriggerConfig::from_env(&with(&[secret]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ATTRIBUTE_HASH_KEY_SECRET_ARN") && err.contains("load"),
            "{err}"
        );
        // A short key read from the secret is refused, naming the variable, not the key.
        let err = TriggerConfig::build(
            &with(&[secret]),
            HashKey::Read(Some(b"short-secret".to_vec())),
        )
        .unwrap_err();
        assert!(is_hash_key_error(&err));
        assert!(!err.to_string().contains("short-secret"), "{err}");
        let read = TriggerConfig::build(
            &with(&[secret]),
            HashKey::Read(Some(b"0123456789abcdef-doc-key".to_vec())),
        )
        .unwrap();
        assert!(read.sharing.is_hashed("email"));
        // Unavailable: the hashed attribute is not shared at all, the plain one still is.
        let degraded = TriggerConfig::build(&with(&[secret]), HashKey::Unavailable).unwrap();
        let shared: Vec<&str> = degraded.sharing.shared_names().collect();
        assert_eq!(shared, ["locale"]);
        assert!(!degraded.sharing.is_hashed("email"));
        assert_eq!(
            format!("{:?}", HashKey::Read(Some(b"0123456789abcdef".to_vec()))),
            "Read(<redacted>)"
        );
    }

    #[tokio::test]
    async fn the_trigger_starts_with_hashed_attributes_withheld_when_it_has_no_usable_key() {
        // No key anywhere (no secret named, so no AWS call is made): the trigger still starts.
        let no_key = env(
            TRIGGER_REQUIRED_ENV,
            &[
                (ENV_SHARE_ATTRIBUTES, "email,locale"),
                (ENV_HASH_ATTRIBUTES, "email"),
            ],
        );
        let sdk = aws_config::SdkConfig::builder().build();
        let t = TriggerConfig::load(&no_key, &sdk).await.unwrap();
        assert!(t.sharing.withholds_hashed());
        assert_eq!(t.sharing.shared_names().collect::<Vec<_>>(), ["locale"]);
        // The other binaries refuse the same settings.
        let mut log_env = no_key.clone();
        log_env.insert(ENV_DEAD_LETTER_BUCKET.to_owned(), "bucket".to_owned());
        assert!(LogConfig::load(&log_env, &sdk).await.is_err());
        // Settings unrelated to hashing still fail the trigger's cold start (the template's limits prevent them).
        let mut bad = no_key;
        bad.insert(ENV_PUT_BUDGET_MS.to_owned(), "0".to_owned());
        assert!(TriggerConfig::load(&bad, &sdk).await.is_err());
    }
}
