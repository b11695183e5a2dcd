//! The active-users rollup's configuration, read once at cold start.

use bridge_core::config::{ConfigError, Env, ranged, required};

/// The rollup table.
pub const ENV_ROLLUP_TABLE: &str = "ROLLUP_TABLE_NAME";
/// S3 bucket for dead letters.
pub const ENV_DEAD_LETTER_BUCKET: &str = "DEAD_LETTER_BUCKET";
/// The context fields that break actives down (comma-separated); empty: none.
pub const ENV_DIMENSIONS: &str = "ACTIVE_USER_DIMENSIONS";
/// Days after an event within which a repeat of it is recognized (event markers live that long, histories keep
/// the ids of the events that made a day active that long). At least [`Config::minimum_replay_days`].
pub const ENV_REPLAY_WINDOW_DAYS: &str = "REPLAY_WINDOW_DAYS";
/// The longest replay window the function accepts: the longest the template allows (a year of app event age,
/// a year of retention on each stream, a day: 1,096) with room; a history keeping a window's counted ids stays
/// under DynamoDB's item limit (`plan::history_size_bound`).
pub const MAX_REPLAY_DAYS: i64 = 1_100;
/// Hours the rollup's source streams keep records (the template's `StreamRetentionHours`): a record may be
/// redelivered, and a repeat of it put back, for that long.
pub const ENV_STREAM_RETENTION_HOURS: &str = "STREAM_RETENTION_HOURS";
/// Days before its arrival an app event may lie (the app event forwarder's `APP_EVENT_MAX_PAST_DAYS`): a client
/// may resend an event that old.
pub const ENV_APP_EVENT_MAX_PAST_DAYS: &str = "APP_EVENT_MAX_PAST_DAYS";

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
    /// The replay window, in days.
    pub replay_days: i64,
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
        let retention_hours: i64 = ranged(env, ENV_STREAM_RETENTION_HOURS, 24, 24..=8_760)?;
        let app_past_days: i64 = ranged(env, ENV_APP_EVENT_MAX_PAST_DAYS, 30, 1..=3_650)?;
        let minimum = Self::minimum_replay_days(retention_hours, app_past_days);
        let replay_days: i64 = ranged(env, ENV_REPLAY_WINDOW_DAYS, minimum, 1..=MAX_REPLAY_DAYS)?;
        if replay_days < minimum {
            return Err(ConfigError::Invalid {
                var: ENV_REPLAY_WINDOW_DAYS,
                reason: format!(
                    "{replay_days} days is shorter than the streams keep records ({retention_hours} h) or app events \
                     may be old ({app_past_days} days): a replay or resend after it would count again; at least \
                     {minimum}"
                ),
            });
        }
        Ok(Self {
            rollup_table: required(env, ENV_ROLLUP_TABLE)?,
            dead_letter_bucket: required(env, ENV_DEAD_LETTER_BUCKET)?,
            dimensions,
            replay_days,
            pipeline: bridge_core::pipeline::Settings::from_env(
                env,
                bridge_core::pipeline::Aggregates::ACCEPT,
            )?,
        })
    }
}

impl Config {
    /// The shortest replay window that covers the longest way a repeat can take: an app resends an event as old
    /// as the forwarder accepts (`app_past_days`), the forwarder reads it as late as the app event stream keeps it,
    /// and the rollup reads the forwarded record as late as the auth/app output stream keeps it (the same
    /// retention), plus a day (the window counts from the event's day). The delays add up: the longer of them
    /// alone is not enough.
    pub fn minimum_replay_days(retention_hours: i64, app_past_days: i64) -> i64 {
        let retention_days = (retention_hours + 23) / 24;
        app_past_days + 2 * retention_days + 1
    }

    /// The replay window.
    pub fn replay_window(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::try_from(self.replay_days).unwrap_or(1) * 86_400)
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
        assert_eq!(
            c.replay_days, 33,
            "30 days an app event may be old, a day on each of two streams, and a day"
        );
        let mut long = base.to_vec();
        long.push((ENV_STREAM_RETENTION_HOURS, "8760"));
        assert_eq!(Config::from_env(&env(&long)).unwrap().replay_days, 761);
        long.push((ENV_REPLAY_WINDOW_DAYS, "200"));
        let err = Config::from_env(&env(&long)).unwrap_err().to_string();
        assert!(
            err.contains(ENV_REPLAY_WINDOW_DAYS) && err.contains("at least 761"),
            "{err}"
        );
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
