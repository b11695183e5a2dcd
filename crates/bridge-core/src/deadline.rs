//! The invocation's deadline, so that retries stop while there is still time to answer Lambda.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

// Tokio's clock, which is the system's monotonic clock except in a test that pauses it: there the deadline moves
// with the sleeps and timeouts it bounds, so a deadline test runs on exact virtual time instead of racing the
// machine's load.
use tokio::time::Instant;

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
        let asked = std::time::Instant::now();
        let now_ms = u64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap();
        let d = Deadline::from_lambda_deadline_ms(now_ms + 10_000);
        let left = d.remaining().unwrap();
        // Exactly 10 s less the reserve, less whatever time passed while this test asked (however busy the
        // machine), less a millisecond of rounding to whole milliseconds.
        let spent = asked.elapsed() + Duration::from_millis(1);
        assert!(
            left <= Duration::from_millis(8_500) && left + spent >= Duration::from_millis(8_500),
            "{left:?} left, {spent:?} spent"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_runs_on_tokios_clock() {
        let d = Deadline::after(Duration::from_millis(700));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(d.remaining(), Some(Duration::from_millis(400)));
        assert!(d.allows(Duration::from_millis(399)) && !d.allows(Duration::from_millis(400)));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(d.remaining(), Some(Duration::ZERO));
    }
}
