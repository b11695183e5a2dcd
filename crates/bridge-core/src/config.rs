//! Reading configuration from environment variables, once, with errors that name the variable.

use std::str::FromStr;

/// A configuration variable that is missing or malformed. Values are never echoed: one may be a secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A required variable is not set, or set to an empty string.
    #[error("environment variable {0} is required but not set")]
    Missing(&'static str),
    /// A variable is set but cannot be used.
    #[error("environment variable {var} is invalid: {reason}")]
    Invalid {
        /// The variable's name.
        var: &'static str,
        /// Why the value was refused.
        reason: String,
    },
}

/// Where a config reads variables from: the process environment in production, a map in tests.
pub trait Env {
    /// The variable's value, if set.
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<S: std::hash::BuildHasher> Env for std::collections::HashMap<String, String, S> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::HashMap::get(self, name).cloned()
    }
}

/// An environment of the given variables (tests and local runs): a map that [`Env`] reads.
pub fn env_map(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A required, non-empty variable.
pub fn required(env: &impl Env, var: &'static str) -> Result<String, ConfigError> {
    optional(env, var).ok_or(ConfigError::Missing(var))
}

/// An optional variable; an empty value counts as unset.
pub fn optional(env: &impl Env, var: &'static str) -> Option<String> {
    env.get(var)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// An optional variable parsed into `T`, `default` when unset.
pub fn parsed_or<T>(env: &impl Env, var: &'static str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match optional(env, var) {
        None => Ok(default),
        Some(raw) => raw.parse().map_err(|e: T::Err| ConfigError::Invalid {
            var,
            reason: format!("cannot parse '{raw}': {e}"),
        }),
    }
}

/// A parsed value that must lie in `range`.
pub fn in_range<T>(
    var: &'static str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: PartialOrd + std::fmt::Display,
{
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::Invalid {
            var,
            reason: format!("{value} is outside {}..={}", range.start(), range.end()),
        })
    }
}

/// An optional variable parsed into `T`, `default` when unset, and within `range`: the one helper for every
/// bounded setting. The error names the variable.
pub fn ranged<T>(
    env: &impl Env,
    var: &'static str,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: FromStr + PartialOrd + std::fmt::Display,
    T::Err: std::fmt::Display,
{
    in_range(var, parsed_or(env, var, default)?, range)
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::env_map as env;

    #[test]
    fn required_names_the_missing_variable() {
        let err = required(&env(&[("OTHER", "x")]), "OUTPUT_STREAM_NAME").unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable OUTPUT_STREAM_NAME is required but not set"
        );
        assert_eq!(
            required(&env(&[("V", "  ")]), "V"),
            Err(ConfigError::Missing("V"))
        );
    }

    #[test]
    fn parsed_or_defaults_and_reports_bad_values() {
        assert_eq!(parsed_or(&env(&[]), "N", 7u32), Ok(7));
        assert_eq!(parsed_or(&env(&[("N", " 9 ")]), "N", 7u32), Ok(9));
        let err = parsed_or(&env(&[("N", "nine")]), "N", 7u32).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("environment variable N is invalid: cannot parse 'nine'"),
            "{err}"
        );
    }

    #[test]
    fn ranged_defaults_parses_and_bounds() {
        assert_eq!(ranged(&env(&[]), "N", 5u32, 1..=10), Ok(5));
        assert_eq!(ranged(&env(&[("N", "7")]), "N", 5u32, 1..=10), Ok(7));
        let err = ranged(&env(&[("N", "70")]), "N", 5u32, 1..=10).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable N is invalid: 70 is outside 1..=10"
        );
        assert!(ranged(&env(&[("N", "x")]), "N", 5u32, 1..=10).is_err());
    }

    #[test]
    fn in_range_refuses_out_of_range() {
        assert_eq!(in_range("D", 3u32, 1..=3650), Ok(3));
        assert!(
            in_range("D", 0u32, 1..=3650)
                .unwrap_err()
                .to_string()
                .contains("outside 1..=3650")
        );
    }
}
