//! The one retry stance of every function: exponential backoff with full jitter, bounded by a number of
//! attempts and by the invocation's deadline. Every loop that retries a call (producer entries, S3Url
//! fetches, user lookups, the export's pages, unprocessed dedup keys) asks [`Backoff::next_wait`]; clients
//! whose calls are retried here have the SDK's own retries switched off ([`crate::aws::own_retries`]), so that
//! one attempt here is one request on the wire.

use std::time::Duration;

use crate::Deadline;

/// Attempts, first included, and the backoff ceilings between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Total attempts, the first included (at least 1).
    pub max_attempts: u32,
    /// The backoff ceiling before the first retry; it doubles with each retry.
    pub base_delay: Duration,
    /// The largest ceiling.
    pub max_delay: Duration,
}

impl Default for Backoff {
    /// Six attempts, 100 ms doubling to 3 s: what the producer has always used.
    fn default() -> Self {
        Self::new(6, Duration::from_millis(100), Duration::from_secs(3))
    }
}

/// Why a retry loop stops with the call still failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GiveUp {
    /// Every attempt was used.
    #[error("gave up after {0} attempts")]
    Attempts(u32),
    /// The next wait would end after the invocation's deadline.
    #[error("stopped after {0} attempts: invocation deadline")]
    Deadline(u32),
}

impl Backoff {
    /// `max_attempts` tries (at least one), waits doubling from `base_delay` up to `max_delay`.
    pub const fn new(max_attempts: u32, base_delay: Duration, max_delay: Duration) -> Self {
        Self {
            max_attempts: if max_attempts == 0 { 1 } else { max_attempts },
            base_delay,
            max_delay,
        }
    }

    /// The ceiling of the wait before retry number `retry` (1-based): `base_delay * 2^(retry-1)`, capped.
    pub fn ceiling(&self, retry: u32) -> Duration {
        self.base_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16))
            .min(self.max_delay)
    }

    /// Full jitter: a random wait between zero and [`Backoff::ceiling`] of retry number `retry`.
    pub fn delay(&self, retry: u32) -> Duration {
        let ceiling_ms = u64::try_from(self.ceiling(retry).as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(fastrand::u64(0..=ceiling_ms))
    }

    /// After `attempts_done` failed attempts: the wait before the next one, or why there is none.
    pub fn next_wait(&self, attempts_done: u32, deadline: &Deadline) -> Result<Duration, GiveUp> {
        if attempts_done >= self.max_attempts {
            return Err(GiveUp::Attempts(attempts_done));
        }
        let wait = self.delay(attempts_done);
        if deadline.allows(wait) {
            Ok(wait)
        } else {
            Err(GiveUp::Deadline(attempts_done))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_stay_under_the_doubling_ceiling() {
        let b = Backoff::new(5, Duration::from_millis(100), Duration::from_millis(250));
        for _ in 0..200 {
            assert!(b.delay(1) <= Duration::from_millis(100));
            assert!(b.delay(2) <= Duration::from_millis(200));
            assert!(b.delay(9) <= Duration::from_millis(250));
        }
        assert_eq!(b.ceiling(40), Duration::from_millis(250));
    }

    #[test]
    fn stops_at_the_attempt_limit_and_at_the_deadline() {
        let b = Backoff::new(3, Duration::from_millis(1), Duration::from_millis(1));
        assert!(b.next_wait(1, &Deadline::none()).is_ok());
        assert!(b.next_wait(2, &Deadline::none()).is_ok());
        assert_eq!(b.next_wait(3, &Deadline::none()), Err(GiveUp::Attempts(3)));
        let slow = Backoff::new(9, Duration::from_secs(60), Duration::from_secs(60));
        // A passed deadline allows no wait at all, not even a zero one drawn by the jitter.
        let past = Deadline::after(Duration::ZERO);
        assert_eq!(slow.next_wait(1, &past), Err(GiveUp::Deadline(1)));
        assert_eq!(
            GiveUp::Deadline(2).to_string(),
            "stopped after 2 attempts: invocation deadline"
        );
        assert_eq!(
            Backoff::new(0, Duration::ZERO, Duration::ZERO).max_attempts,
            1
        );
    }
}
