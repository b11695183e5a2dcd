//! The app event forwarder's configuration, read once at cold start.

use bridge_core::config::{ConfigError, Env, ranged, required};

use crate::event::Limits;

/// Output stream: name or ARN.
pub const ENV_OUTPUT_STREAM: &str = "OUTPUT_STREAM_NAME";
/// S3 bucket for dead letters.
pub const ENV_DEAD_LETTER_BUCKET: &str = "DEAD_LETTER_BUCKET";
/// Attempts per output record on PutRecords.
pub const ENV_PUT_MAX_ATTEMPTS: &str = "PUT_MAX_ATTEMPTS";
/// Bytes of one app event record at most.
pub const ENV_MAX_RECORD_BYTES: &str = "APP_EVENT_MAX_RECORD_BYTES";
/// Hours after its arrival an event's corrected time may lie.
pub const ENV_MAX_FUTURE_HOURS: &str = "APP_EVENT_MAX_FUTURE_HOURS";
/// Days before its arrival an event's corrected time may lie.
pub const ENV_MAX_PAST_DAYS: &str = "APP_EVENT_MAX_PAST_DAYS";

/// Events one Kinesis record (all its user records together) may become.
pub const ENV_MAX_OUTPUT_EVENTS: &str = "APP_EVENT_MAX_OUTPUT_EVENTS";
/// Bytes of output one Kinesis record (all its user records together) may become.
pub const ENV_MAX_OUTPUT_BYTES: &str = "APP_EVENT_MAX_OUTPUT_BYTES";

/// The variables a deployment must set (the others have defaults).
pub const REQUIRED_ENV: &[&str] = &[ENV_OUTPUT_STREAM, ENV_DEAD_LETTER_BUCKET];

/// Everything the function needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// Output stream name or ARN.
    pub output_stream: String,
    /// Dead-letter bucket.
    pub dead_letter_bucket: String,
    /// PutRecords attempts per record.
    pub put_max_attempts: u32,
    /// Limits on untrusted input.
    pub limits: Limits,
    /// The pipeline's give-up age and KPL aggregate policy: refused by default, since apps (untrusted) write
    /// the stream and Amplify never aggregates.
    pub pipeline: bridge_core::pipeline::Settings,
}

impl Config {
    /// Reads the environment; an error names the variable.
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let defaults = Limits::default();
        let limits = Limits {
            max_record_bytes: ranged(
                env,
                ENV_MAX_RECORD_BYTES,
                defaults.max_record_bytes,
                256..=1_048_576,
            )?,
            max_future: chrono::Duration::hours(ranged(
                env,
                ENV_MAX_FUTURE_HOURS,
                defaults.max_future.num_hours(),
                0..=24 * 365,
            )?),
            max_past: chrono::Duration::days(ranged(
                env,
                ENV_MAX_PAST_DAYS,
                defaults.max_past.num_days(),
                1..=365,
            )?),
            max_output_events: ranged(
                env,
                ENV_MAX_OUTPUT_EVENTS,
                defaults.max_output_events,
                100..=100_000,
            )?,
            max_output_bytes: ranged(
                env,
                ENV_MAX_OUTPUT_BYTES,
                defaults.max_output_bytes,
                65_536..=64 * 1_048_576,
            )?,
            ..defaults
        };
        Ok(Self {
            output_stream: required(env, ENV_OUTPUT_STREAM)?,
            dead_letter_bucket: required(env, ENV_DEAD_LETTER_BUCKET)?,
            put_max_attempts: ranged(env, ENV_PUT_MAX_ATTEMPTS, 6u32, 1..=20)?,
            limits,
            pipeline: bridge_core::pipeline::Settings::from_env(
                env,
                bridge_core::pipeline::Aggregates::Refuse,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use bridge_core::config::env_map as env;

    #[test]
    fn defaults_apply_and_bad_values_name_their_variable() {
        let base = [(ENV_OUTPUT_STREAM, "out"), (ENV_DEAD_LETTER_BUCKET, "b")];
        let c = Config::from_env(&env(&base)).unwrap();
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.pipeline.give_up_age, None);
        assert_eq!(
            c.pipeline.aggregates,
            bridge_core::pipeline::Aggregates::Refuse,
            "the app event stream refuses aggregates unless told otherwise"
        );
        let err = Config::from_env(&env(&[(ENV_OUTPUT_STREAM, "out")])).unwrap_err();
        assert!(err.to_string().contains(ENV_DEAD_LETTER_BUCKET), "{err}");
        let mut bad = base.to_vec();
        bad.push((ENV_MAX_PAST_DAYS, "0"));
        let err = Config::from_env(&env(&bad)).unwrap_err();
        assert!(err.to_string().contains(ENV_MAX_PAST_DAYS), "{err}");
        let mut bad = base.to_vec();
        bad.push((ENV_MAX_OUTPUT_EVENTS, "99"));
        let err = Config::from_env(&env(&bad)).unwrap_err();
        assert!(err.to_string().contains(ENV_MAX_OUTPUT_EVENTS), "{err}");
        let mut raised = base.to_vec();
        raised.push((ENV_MAX_OUTPUT_BYTES, "4194304"));
        assert_eq!(
            Config::from_env(&env(&raised))
                .unwrap()
                .limits
                .max_output_bytes,
            4_194_304
        );
        let mut aged = base.to_vec();
        aged.push(("DEAD_LETTER_AFTER_AGE_SECONDS", "3600"));
        assert_eq!(
            Config::from_env(&env(&aged)).unwrap().pipeline.give_up_age,
            Some(std::time::Duration::from_secs(3_600))
        );
    }
}
