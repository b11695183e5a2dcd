//! The sync processor's configuration, read once at cold start.

use std::time::Duration;

use bridge_core::config::{self, ConfigError, Env, ranged, required};

use crate::payload::UrlPolicy;

/// Output stream: name or ARN.
pub const ENV_OUTPUT_STREAM: &str = "OUTPUT_STREAM_NAME";
/// DynamoDB table of high-water marks.
pub const ENV_DEDUP_TABLE: &str = "DEDUP_TABLE_NAME";
/// S3 bucket for dead letters.
pub const ENV_DEAD_LETTER_BUCKET: &str = "DEAD_LETTER_BUCKET";
/// S3 bucket for outputs over the Kinesis record limit; defaults to the dead-letter bucket.
pub const ENV_LARGE_PAYLOAD_BUCKET: &str = "LARGE_PAYLOAD_BUCKET";
/// Comma-separated origins (`scheme://host[:port]`) fetched besides `https` AWS S3 hosts.
pub const ENV_S3_URL_ALLOWED_ORIGINS: &str = "S3_URL_ALLOWED_ORIGINS";
/// Cap on an S3Url payload body, bytes.
pub const ENV_S3_PAYLOAD_MAX_BYTES: &str = "S3_PAYLOAD_MAX_BYTES";
/// Timeout of one S3Url fetch attempt, ms.
pub const ENV_S3_FETCH_TIMEOUT_MS: &str = "S3_FETCH_TIMEOUT_MS";
/// Attempts per S3Url fetch.
pub const ENV_S3_FETCH_ATTEMPTS: &str = "S3_FETCH_ATTEMPTS";
/// Days a high-water mark lives after its last move.
pub const ENV_DEDUP_TTL_DAYS: &str = "DEDUP_TTL_DAYS";
/// Attempts per output record on PutRecords.
pub const ENV_PUT_MAX_ATTEMPTS: &str = "PUT_MAX_ATTEMPTS";
/// Bytes of S3Url payloads one invocation holds at most.
pub const ENV_S3_PAYLOAD_BUDGET_BYTES: &str = "S3_PAYLOAD_BUDGET_BYTES";

/// The variables a deployment must set (the others have defaults).
pub const REQUIRED_ENV: &[&str] = &[ENV_OUTPUT_STREAM, ENV_DEDUP_TABLE, ENV_DEAD_LETTER_BUCKET];

/// Default cap on an S3Url payload: 4 MiB. A dataset holds at most 1 MB and 1,024 records; the payload's JSON
/// adds the record fields and escaping around each value, so a full dataset stays well under this.
pub const DEFAULT_S3_PAYLOAD_MAX_BYTES: u64 = 4 * 1024 * 1024;
/// Default dedup mark lifetime. Longer than any replay we expect to collapse; see README.
pub const DEFAULT_DEDUP_TTL_DAYS: u32 = 30;

/// Everything the function needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// Output stream name or ARN.
    pub output_stream: String,
    /// Dedup table.
    pub dedup_table: String,
    /// Dead-letter bucket.
    pub dead_letter_bucket: String,
    /// Large-payload bucket.
    pub large_payload_bucket: String,
    /// Which payload URLs may be fetched.
    pub url_policy: UrlPolicy,
    /// Payload body cap.
    pub s3_payload_max_bytes: u64,
    /// Per-attempt fetch timeout.
    pub s3_fetch_timeout: Duration,
    /// Fetch attempts.
    pub s3_fetch_attempts: u32,
    /// Mark lifetime.
    pub dedup_ttl: Duration,
    /// PutRecords attempts per record.
    pub put_max_attempts: u32,
    /// Bytes of S3Url payloads held per invocation at most.
    pub s3_payload_budget: u64,
    /// The pipeline's give-up age and KPL aggregate policy (aggregates accepted by default: Cognito never
    /// aggregates, a team's own KPL producer may).
    pub pipeline: bridge_core::pipeline::Settings,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let dead_letter_bucket = required(env, ENV_DEAD_LETTER_BUCKET)?;
        let origins = config::optional(env, ENV_S3_URL_ALLOWED_ORIGINS).unwrap_or_default();
        let url_policy =
            UrlPolicy::with_origins(&origins).map_err(|reason| ConfigError::Invalid {
                var: ENV_S3_URL_ALLOWED_ORIGINS,
                reason,
            })?;
        let ttl_days = ranged(env, ENV_DEDUP_TTL_DAYS, DEFAULT_DEDUP_TTL_DAYS, 1..=3650)?;
        Ok(Self {
            output_stream: required(env, ENV_OUTPUT_STREAM)?,
            dedup_table: required(env, ENV_DEDUP_TABLE)?,
            large_payload_bucket: config::optional(env, ENV_LARGE_PAYLOAD_BUCKET)
                .unwrap_or_else(|| dead_letter_bucket.clone()),
            dead_letter_bucket,
            url_policy,
            s3_payload_max_bytes: ranged(
                env,
                ENV_S3_PAYLOAD_MAX_BYTES,
                DEFAULT_S3_PAYLOAD_MAX_BYTES,
                1..=1024 * 1024 * 1024,
            )?,
            s3_fetch_timeout: Duration::from_millis(ranged(
                env,
                ENV_S3_FETCH_TIMEOUT_MS,
                5_000u64,
                100..=300_000,
            )?),
            s3_fetch_attempts: ranged(env, ENV_S3_FETCH_ATTEMPTS, 3u32, 1..=10)?,
            dedup_ttl: Duration::from_secs(u64::from(ttl_days) * 86_400),
            put_max_attempts: ranged(env, ENV_PUT_MAX_ATTEMPTS, 6u32, 1..=20)?,
            s3_payload_budget: ranged(
                env,
                ENV_S3_PAYLOAD_BUDGET_BYTES,
                crate::handler::DEFAULT_PAYLOAD_BUDGET_BYTES,
                1..=1024 * 1024 * 1024,
            )?,
            pipeline: bridge_core::pipeline::Settings::from_env(
                env,
                bridge_core::pipeline::Aggregates::ACCEPT,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        let mut e: HashMap<String, String> = REQUIRED_ENV
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
    fn defaults_apply() {
        let c = Config::from_env(&env(&[])).unwrap();
        assert_eq!(c.s3_payload_max_bytes, DEFAULT_S3_PAYLOAD_MAX_BYTES);
        assert_eq!(c.dedup_ttl, Duration::from_secs(30 * 86_400));
        assert_eq!(c.large_payload_bucket, c.dead_letter_bucket);
    }

    #[test]
    fn each_required_variable_is_named_when_missing() {
        for var in REQUIRED_ENV {
            let mut e = env(&[]);
            e.remove(*var);
            assert_eq!(Config::from_env(&e).unwrap_err(), ConfigError::Missing(var));
        }
    }

    #[test]
    fn malformed_values_name_their_variable() {
        let err = Config::from_env(&env(&[(ENV_DEDUP_TTL_DAYS, "0")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("DEDUP_TTL_DAYS") && err.contains("outside"),
            "{err}"
        );
        let err = Config::from_env(&env(&[(ENV_S3_URL_ALLOWED_ORIGINS, "http://h/x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("S3_URL_ALLOWED_ORIGINS"), "{err}");
        let err = Config::from_env(&env(&[(ENV_S3_PAYLOAD_MAX_BYTES, "lots")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("S3_PAYLOAD_MAX_BYTES") && err.contains("cannot parse 'lots'"),
            "{err}"
        );
    }
}
