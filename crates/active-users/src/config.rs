//! The active-users rollup's configuration, read once at cold start.

use bridge_core::config::{ConfigError, Env, ranged, required};

/// The rollup table.
pub const ENV_ROLLUP_TABLE: &str = "ROLLUP_TABLE_NAME";
/// S3 bucket for dead letters.
pub const ENV_DEAD_LETTER_BUCKET: &str = "DEAD_LETTER_BUCKET";
/// The context fields that break actives down (comma-separated); empty: none.
pub const ENV_DIMENSIONS: &str = "ACTIVE_USER_DIMENSIONS";
/// Days an event marker (which makes a redelivered event count once) is kept.
pub const ENV_EVENT_MARKER_TTL_DAYS: &str = "EVENT_MARKER_TTL_DAYS";

/// The dimensions when none are configured: Pinpoint's own breakdowns.
pub const DEFAULT_DIMENSIONS: &str = "platform,app_version,locale";

/// The variables a deployment must set (the others have defaults).
pub const REQUIRED_ENV: &[&str] = &[ENV_ROLLUP_TABLE, ENV_DEAD_LETTER_BUCKET];

/// Everything the function needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// Rollup table.
    pub rollup_table: String,
    /// Dead-letter bucket.
    pub dead_letter_bucket: String,
    /// Context fields that break actives down.
    pub dimensions: Vec<String>,
    /// Life of an event marker.
    pub event_marker_ttl: std::time::Duration,
    /// The pipeline's give-up age and KPL aggregate policy (accepted by default: its streams are our own).
    pub pipeline: bridge_core::pipeline::Settings,
}

impl Config {
    /// Reads the environment; an error names the variable.
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let dims = env
            .get(ENV_DIMENSIONS)
            .unwrap_or_else(|| DEFAULT_DIMENSIONS.to_owned());
        let dimensions: Vec<String> = dims
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(bad) = dimensions
            .iter()
            .find(|d| !d.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || d.len() > 64)
        {
            return Err(ConfigError::Invalid {
                var: ENV_DIMENSIONS,
                reason: format!("{bad:?} is not a context field name"),
            });
        }
        let ttl_days: u64 = ranged(env, ENV_EVENT_MARKER_TTL_DAYS, 8u64, 1..=366)?;
        Ok(Self {
            rollup_table: required(env, ENV_ROLLUP_TABLE)?,
            dead_letter_bucket: required(env, ENV_DEAD_LETTER_BUCKET)?,
            dimensions,
            event_marker_ttl: std::time::Duration::from_secs(ttl_days * 86_400),
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

    use bridge_core::config::env_map as env;

    #[test]
    fn defaults_apply_and_bad_values_name_their_variable() {
        let base = [(ENV_ROLLUP_TABLE, "t"), (ENV_DEAD_LETTER_BUCKET, "b")];
        let c = Config::from_env(&env(&base)).unwrap();
        assert_eq!(c.dimensions, vec!["platform", "app_version", "locale"]);
        assert_eq!(c.event_marker_ttl.as_secs(), 8 * 86_400);
        let err = Config::from_env(&env(&[(ENV_ROLLUP_TABLE, "t")])).unwrap_err();
        assert!(err.to_string().contains(ENV_DEAD_LETTER_BUCKET), "{err}");
        let mut none = base.to_vec();
        none.push((ENV_DIMENSIONS, ""));
        assert!(Config::from_env(&env(&none)).unwrap().dimensions.is_empty());
        let mut bad = base.to_vec();
        bad.push((ENV_DIMENSIONS, "platform,a b"));
        let err = Config::from_env(&env(&bad)).unwrap_err();
        assert!(err.to_string().contains(ENV_DIMENSIONS), "{err}");
    }
}
