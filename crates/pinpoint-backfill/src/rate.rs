//! The write rate: within the target streams' capacity, so that a backfill never throttles the live path.
//!
//! A Kinesis shard takes 1,000 records and 1 MiB a second of writes, in provisioned and on-demand mode alike
//! (Kinesis developer guide, "Create and manage Kinesis data streams"; an on-demand stream starts at 4 shards,
//! 4 MB/s, and grows with its traffic). The capacity is read from the stream (`DescribeStreamSummary`:
//! `OpenShardCount`) and the backfill takes a share of it (`--write-share`, half by default): the live producers
//! keep the rest. Throttles that still happen are retried by the producer.

use std::time::Duration;

use tokio::time::Instant;

/// Records a shard takes per second.
pub const SHARD_RECORDS_PER_SECOND: f64 = 1_000.0;
/// Bytes a shard takes per second.
pub const SHARD_BYTES_PER_SECOND: f64 = 1_048_576.0;
/// The share of a stream's capacity a backfill takes by default.
pub const DEFAULT_WRITE_SHARE: f64 = 0.5;

/// A rate of writes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Records per second.
    pub records: f64,
    /// Bytes per second.
    pub bytes: f64,
}

impl Rate {
    /// `share` of what `shards` open shards take.
    pub fn of_shards(shards: u32, share: f64) -> Self {
        let shards = f64::from(shards.max(1));
        Self {
            records: shards * SHARD_RECORDS_PER_SECOND * share,
            bytes: shards * SHARD_BYTES_PER_SECOND * share,
        }
    }
}

/// A token bucket over records and bytes, holding at most a second's worth: a send waits until the bucket holds
/// what it sends (at most a second's worth: [`Limiter::request_cap`] keeps requests within it), then takes it. So
/// in any second at most the bucket plus a second's refill go out: twice the rate, which at the default share is
/// one shard's capacity; over any longer stretch, the rate.
#[derive(Debug)]
pub struct Limiter {
    rate: Rate,
    records: f64,
    bytes: f64,
    at: Instant,
}

impl Limiter {
    /// A limiter at `rate`, with a full second's worth to start.
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            records: rate.records,
            bytes: rate.bytes,
            at: Instant::now(),
        }
    }

    /// The most records and bytes one request may carry: a second's worth, within PutRecords' own 500 records
    /// and 5 MiB.
    pub fn request_cap(&self) -> (usize, usize) {
        (
            (self.rate.records as usize).clamp(1, 500),
            (self.rate.bytes as usize).clamp(1, 5 * 1024 * 1024),
        )
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let secs = now.duration_since(self.at).as_secs_f64();
        self.at = now;
        self.records = (self.records + secs * self.rate.records).min(self.rate.records);
        self.bytes = (self.bytes + secs * self.rate.bytes).min(self.rate.bytes);
    }

    /// How long until the bucket holds `records` and `bytes` (each at most a second's worth).
    pub fn wait(&mut self, records: usize, bytes: usize) -> Duration {
        self.refill();
        let need = |have: f64, want: usize, per_second: f64| {
            let want = (want as f64).min(per_second);
            if have >= want || per_second <= 0.0 {
                0.0
            } else {
                (want - have) / per_second
            }
        };
        Duration::from_secs_f64(need(self.records, records, self.rate.records).max(need(
            self.bytes,
            bytes,
            self.rate.bytes,
        )))
    }

    /// Waits until a send of `records` records and `bytes` bytes may start, and takes them (a send larger than
    /// a second's worth, which [`Limiter::request_cap`] prevents, leaves a debt that the next one waits out).
    pub async fn acquire(&mut self, records: usize, bytes: usize) {
        loop {
            let wait = self.wait(records, bytes);
            if wait.is_zero() {
                break;
            }
            tokio::time::sleep(wait).await;
        }
        self.records -= records as f64;
        self.bytes -= bytes as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_takes_its_shards_share() {
        let r = Rate::of_shards(4, 0.5);
        assert_eq!(r.records, 2_000.0);
        assert_eq!(r.bytes, 2.0 * 1_048_576.0);
        // No shard reported: one.
        assert_eq!(Rate::of_shards(0, 1.0).records, 1_000.0);
    }

    /// On tokio's paused clock (no real time): 10 sends of 500 records at 1,000 records a second: the first two
    /// from the full bucket, then one every half second: the last starts at 4 s.
    #[tokio::test(start_paused = true)]
    async fn sends_wait_out_their_debt() {
        let mut l = Limiter::new(Rate {
            records: 1_000.0,
            bytes: 1e12,
        });
        let start = Instant::now();
        for _ in 0..10 {
            l.acquire(500, 10).await;
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(4_000), "{took:?}");
        assert!(took < Duration::from_millis(4_100), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_limit_too() {
        let mut l = Limiter::new(Rate {
            records: 1e9,
            bytes: 1_000.0,
        });
        let start = Instant::now();
        l.acquire(1, 3_000).await; // over a second's worth: the full bucket, leaving a debt of 2,000 bytes
        l.acquire(1, 1).await; // waits the debt out and a byte: 2 s
        assert!(start.elapsed() >= Duration::from_secs(2));
    }
}
