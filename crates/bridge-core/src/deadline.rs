//! The invocation's deadline, so that retries stop while there is still time to answer Lambda.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Time kept back from Lambda's deadline to write dead letters and return the batch response.
pub const DEADLINE_RESERVE: Duration = Duration::from_millis(1_500);

/// Lambda's `Lambda-Runtime-Deadline-Ms` is an epoch time; a value before 2001-01-01 cannot be one. (`cargo
/// lambda watch` sends its timeout there, 600000, instead of a time.)
const EARLIEST_EPOCH_DEADLINE_MS: u64 = 978_307_200_000;

/// When work must stop. `None` inside means no deadline is known (a local in-process call).
#[derive(Debug, Clone, Copy)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    /// No deadline: for local runs and tests that build `Context::default()` (whose deadline is 0).
    pub fn none() -> Self {
        Self(None)
    }

    /// A deadline `after` from now.
    pub fn after(after: Duration) -> Self {
        Self(Some(Instant::now() + after))
    }

    /// Lambda's deadline (epoch milliseconds) less [`DEADLINE_RESERVE`]. 0 means unknown, and so does a value
    /// too small to be an epoch time (a local runtime emulator's timeout in that header): work is then bounded
    /// by attempts and timeouts only.
    pub fn from_lambda_deadline_ms(deadline_ms: u64) -> Self {
        if deadline_ms < EARLIEST_EPOCH_DEADLINE_MS {
            if deadline_ms != 0 {
                tracing::warn!(
                    deadline_ms,
                    "the invocation deadline is not an epoch time; treated as unknown"
                );
            }
            return Self::none();
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let left = Duration::from_millis(
            u64::try_from(u128::from(deadline_ms).saturating_sub(now_ms)).unwrap_or(0),
        );
        Self(Some(Instant::now() + left.saturating_sub(DEADLINE_RESERVE)))
    }

    /// Time left, `None` when unbounded.
    pub fn remaining(&self) -> Option<Duration> {
        self.0
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Whether waiting `wait` would still end before the deadline.
    pub fn allows(&self, wait: Duration) -> bool {
        self.remaining().is_none_or(|left| left > wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_means_unbounded_and_past_means_nothing_left() {
        assert!(Deadline::from_lambda_deadline_ms(0).allows(Duration::from_secs(3600)));
        let past = Deadline::from_lambda_deadline_ms(EARLIEST_EPOCH_DEADLINE_MS);
        assert_eq!(past.remaining(), Some(Duration::ZERO));
        assert!(!past.allows(Duration::from_millis(1)));
    }

    #[test]
    fn a_timeout_in_place_of_an_epoch_deadline_means_unknown() {
        // What `cargo lambda watch` sends: its 600 s timeout, not a time.
        assert_eq!(Deadline::from_lambda_deadline_ms(600_000).remaining(), None);
    }

    #[test]
    fn reserve_is_kept_back() {
        let now_ms = u64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap();
        let d = Deadline::from_lambda_deadline_ms(now_ms + 10_000);
        let left = d.remaining().unwrap();
        assert!(
            left <= Duration::from_millis(8_500) && left > Duration::from_millis(8_000),
            "{left:?}"
        );
    }
}
