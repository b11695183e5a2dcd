//! The cohort function's configuration, read once at cold start: a bad definition stops the function there, with
//! the variable and the entry named, instead of a run that computes something else.

use std::collections::BTreeSet;

use bridge_core::config::{ConfigError, Env, optional, ranged, required};

use crate::definition::{self, Cohort};

/// The rollup table (the histories, and the cohorts' membership items).
pub const ENV_ROLLUP_TABLE: &str = "ROLLUP_TABLE_NAME";
/// The stream the membership changes go to.
pub const ENV_COHORT_STREAM: &str = "COHORT_STREAM_NAME";
/// The cohorts: `name=rule:definition:days[:scope]`, comma-separated ([`definition::parse`]).
pub const ENV_DEFINITIONS: &str = "COHORT_DEFINITIONS";
/// The dimension names a record may carry as `user_properties` (comma-separated); empty: none.
pub const ENV_USER_PROPERTIES: &str = "COHORT_USER_PROPERTIES";
/// Parallel segments of the table scan.
pub const ENV_SCAN_SEGMENTS: &str = "COHORT_SCAN_SEGMENTS";
/// Attempts of a record's put (the first included).
pub const ENV_PUT_MAX_ATTEMPTS: &str = "PUT_MAX_ATTEMPTS";

/// The variables a deployment must set (the others have defaults).
pub const REQUIRED_ENV: &[&str] = &[ENV_ROLLUP_TABLE, ENV_COHORT_STREAM];

/// Segments of the scan when none are configured.
pub const DEFAULT_SCAN_SEGMENTS: i32 = 4;

/// Everything the function needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// The rollup table.
    pub rollup_table: String,
    /// The cohort stream.
    pub cohort_stream: String,
    /// The cohorts.
    pub cohorts: Vec<Cohort>,
    /// The dimension names allowed as user properties.
    pub user_properties: BTreeSet<String>,
    /// Scan segments.
    pub scan_segments: i32,
    /// Put attempts.
    pub put_max_attempts: u32,
}

impl Config {
    /// Reads the environment; an error names the variable.
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let rollup_table = required(env, ENV_ROLLUP_TABLE)?;
        let cohort_stream = required(env, ENV_COHORT_STREAM)?;
        let text = optional(env, ENV_DEFINITIONS)
            .unwrap_or_else(|| definition::DEFAULT_DEFINITIONS.to_owned());
        let cohorts = definition::parse(&text).map_err(|reason| ConfigError::Invalid {
            var: ENV_DEFINITIONS,
            reason,
        })?;
        let user_properties: BTreeSet<String> = optional(env, ENV_USER_PROPERTIES)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(bad) = user_properties
            .iter()
            .find(|p| p.len() > 64 || !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return Err(ConfigError::Invalid {
                var: ENV_USER_PROPERTIES,
                reason: format!("{bad:?} is not a dimension name"),
            });
        }
        Ok(Self {
            rollup_table,
            cohort_stream,
            cohorts,
            user_properties,
            scan_segments: ranged(env, ENV_SCAN_SEGMENTS, DEFAULT_SCAN_SEGMENTS, 1..=64)?,
            put_max_attempts: ranged(env, ENV_PUT_MAX_ATTEMPTS, 6, 1..=20)?,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;
    use bridge_core::config::env_map;

    const BASE: [(&str, &str); 2] = [(ENV_ROLLUP_TABLE, "t"), (ENV_COHORT_STREAM, "s")];

    fn with(extra: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut pairs = BASE.to_vec();
        pairs.extend_from_slice(extra);
        Config::from_env(&env_map(&pairs))
    }

    #[test]
    fn bad_definitions_are_refused_naming_the_variable_and_the_entry() {
        let err = with(&[(
            ENV_DEFINITIONS,
            "a=active:authenticating_users:7,b=often:x:1",
        )])
        .unwrap_err()
        .to_string();
        assert!(err.contains(ENV_DEFINITIONS), "{err}");
        assert!(err.contains("b=often:x:1"), "{err}");
        assert!(err.contains("unknown rule"), "{err}");
    }

    #[test]
    fn properties_are_names_and_the_rest_has_defaults() {
        let c = with(&[
            (ENV_DEFINITIONS, "a=active:authenticating_users:7"),
            (ENV_USER_PROPERTIES, " platform, locale ,"),
        ])
        .unwrap();
        assert_eq!(
            c.user_properties,
            ["locale", "platform"].map(String::from).into()
        );
        assert_eq!(c.scan_segments, DEFAULT_SCAN_SEGMENTS);
        assert_eq!(c.cohorts.len(), 1);
        let none = with(&[(ENV_DEFINITIONS, "a=active:authenticating_users:7")]).unwrap();
        assert!(none.user_properties.is_empty());
        let err = with(&[
            (ENV_DEFINITIONS, "a=active:authenticating_users:7"),
            (ENV_USER_PROPERTIES, "plat form"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains(ENV_USER_PROPERTIES), "{err}");
        let err = Config::from_env(&env_map(&[(ENV_ROLLUP_TABLE, "t")])).unwrap_err();
        assert_eq!(err, ConfigError::Missing(ENV_COHORT_STREAM));
    }
}
