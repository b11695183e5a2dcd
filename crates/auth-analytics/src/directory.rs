//! Looking users up for attribute sharing on log entries (trigger events already carry attributes):
//! AdminGetUser by user name (the UserRead quota, 120/s per account) or ListUsers filtered by sub (the
//! UserList quota, 30/s), through a bounded cache with a time to live, with bounded concurrency and a backoff
//! on TooManyRequestsException. Only ever called when sharing is on.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_cognitoidentityprovider::error::ProvideErrorMetadata as _;
use bridge_core::Deadline;
use bridge_core::retry::Backoff;
use bridge_core::telemetry::Metrics;
use tokio::sync::Semaphore;
// Tokio's clock: the system's monotonic clock, except in a test that pauses it to step past the time to live
// exactly.
use tokio::time::Instant;

use crate::config::LookupConfig;
use crate::error::AuthError;

/// Metric: lookups answered from the cache.
pub const METRIC_LOOKUP_CACHE_HITS: &str = "LookupCacheHits";
/// Metric: cognito-idp calls made.
pub const METRIC_LOOKUP_CALLS: &str = "LookupCalls";
/// Metric: calls throttled (TooManyRequestsException) and retried after a backoff.
pub const METRIC_LOOKUP_THROTTLED: &str = "LookupThrottled";
/// Metric: lookups given up on (the event goes out without attributes).
pub const METRIC_LOOKUP_FAILURES: &str = "LookupFailures";

/// The error code cognito-idp throttles with.
pub const THROTTLED_CODE: &str = "TooManyRequestsException";
/// Attempts per lookup when throttled.
pub const LOOKUP_MAX_ATTEMPTS: u32 = 4;
/// First backoff ceiling; doubles per retry (full jitter).
pub const LOOKUP_BASE_BACKOFF: Duration = Duration::from_millis(100);
/// The lookup's retry stance when throttled.
const LOOKUP_BACKOFF: Backoff = Backoff::new(
    LOOKUP_MAX_ATTEMPTS,
    LOOKUP_BASE_BACKOFF,
    Duration::from_millis(800),
);

/// A user's attributes (name, value), or `None` when the user does not exist (any more).
pub type Attributes = Option<Vec<(String, String)>>;

/// The user directory port.
#[async_trait]
pub trait UserDirectory: Send + Sync + std::fmt::Debug {
    /// The attributes of the user named `user_name`, or else with this `sub`.
    async fn attributes(
        &self,
        pool: &str,
        user_name: Option<&str>,
        sub: Option<&str>,
    ) -> Result<Attributes, AuthError>;
}

/// [`UserDirectory`] on cognito-idp.
#[derive(Debug, Clone)]
pub struct CognitoDirectory {
    client: aws_sdk_cognitoidentityprovider::Client,
}

impl CognitoDirectory {
    /// A directory over `client`.
    pub fn new(client: aws_sdk_cognitoidentityprovider::Client) -> Self {
        Self { client }
    }
}

fn directory_error<E, R>(
    op: &'static str,
    e: &aws_sdk_cognitoidentityprovider::error::SdkError<E, R>,
) -> AuthError
where
    E: aws_sdk_cognitoidentityprovider::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    AuthError::Directory {
        op,
        message: e.code().unwrap_or("unknown error").to_owned(),
        throttled: e.code() == Some(THROTTLED_CODE),
    }
}

fn pairs(
    attributes: &[aws_sdk_cognitoidentityprovider::types::AttributeType],
) -> Vec<(String, String)> {
    attributes
        .iter()
        .map(|a| {
            (
                a.name().to_owned(),
                a.value().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[async_trait]
impl UserDirectory for CognitoDirectory {
    async fn attributes(
        &self,
        pool: &str,
        user_name: Option<&str>,
        sub: Option<&str>,
    ) -> Result<Attributes, AuthError> {
        if let Some(name) = user_name {
            return match self
                .client
                .admin_get_user()
                .user_pool_id(pool)
                .username(name)
                .send()
                .await
            {
                Ok(out) => Ok(Some(pairs(out.user_attributes()))),
                Err(e) if e.code() == Some("UserNotFoundException") => Ok(None),
                Err(e) => Err(directory_error("AdminGetUser", &e)),
            };
        }
        let Some(sub) = sub else { return Ok(None) };
        // A sub is a UUID; anything else cannot be one and must not reach the filter expression.
        if !sub.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Ok(None);
        }
        let out = self
            .client
            .list_users()
            .user_pool_id(pool)
            .filter(format!("sub = \"{sub}\""))
            .limit(1)
            .send()
            .await
            .map_err(|e| directory_error("ListUsers", &e))?;
        Ok(out.users().first().map(|u| pairs(u.attributes())))
    }
}

/// The cache's entries (key -> stored at, value) and their insertion order.
type Entries = (HashMap<String, (Instant, Attributes)>, VecDeque<String>);

/// A bounded cache with a time to live. When full, the oldest entry goes first.
#[derive(Debug)]
pub struct TtlCache {
    ttl: Duration,
    capacity: usize,
    inner: Mutex<Entries>,
}

impl TtlCache {
    /// An empty cache.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity: capacity.max(1),
            inner: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    /// The fresh value of `key`, if any.
    pub fn get(&self, key: &str) -> Option<Attributes> {
        let guard = self.inner.lock().ok()?;
        let (at, value) = guard.0.get(key)?;
        (at.elapsed() < self.ttl).then(|| value.clone())
    }

    /// Stores `value` under `key`.
    pub fn insert(&self, key: String, value: Attributes) {
        let Ok(mut guard) = self.inner.lock() else {
            return;
        };
        let (map, order) = &mut *guard;
        if map.insert(key.clone(), (Instant::now(), value)).is_none() {
            order.push_back(key);
        }
        while map.len() > self.capacity {
            let Some(oldest) = order.pop_front() else {
                break;
            };
            map.remove(&oldest);
        }
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |g| g.0.len())
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Looks users up through the cache, with bounded concurrency and backoff.
#[derive(Debug, Clone)]
pub struct Enricher {
    directory: Arc<dyn UserDirectory>,
    cache: Arc<TtlCache>,
    permits: Arc<Semaphore>,
}

impl Enricher {
    /// An enricher over `directory`.
    pub fn new(directory: Arc<dyn UserDirectory>, config: LookupConfig) -> Self {
        Self {
            directory,
            cache: Arc::new(TtlCache::new(config.ttl, config.capacity)),
            permits: Arc::new(Semaphore::new(config.concurrency.max(1))),
        }
    }

    /// The cache (for tests and metrics).
    pub fn cache(&self) -> &TtlCache {
        &self.cache
    }

    /// The user's attributes; `None` when unknown, not found, or the lookup failed (counted).
    pub async fn lookup(
        &self,
        pool: &str,
        user_name: Option<&str>,
        sub: Option<&str>,
        deadline: Deadline,
        metrics: &Metrics,
    ) -> Attributes {
        let key = format!(
            "{pool}|{}|{}",
            sub.unwrap_or_default(),
            user_name.unwrap_or_default()
        );
        if let Some(hit) = self.cache.get(&key) {
            metrics.incr(METRIC_LOOKUP_CACHE_HITS);
            return hit;
        }
        let Ok(_permit) = self.permits.acquire().await else {
            metrics.incr(METRIC_LOOKUP_FAILURES);
            return None;
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            metrics.incr(METRIC_LOOKUP_CALLS);
            match self.directory.attributes(pool, user_name, sub).await {
                Ok(found) => {
                    self.cache.insert(key, found.clone());
                    return found;
                }
                Err(AuthError::Directory {
                    throttled: true, ..
                }) => match LOOKUP_BACKOFF.next_wait(attempt, &deadline) {
                    Ok(wait) => {
                        metrics.incr(METRIC_LOOKUP_THROTTLED);
                        tokio::time::sleep(wait).await;
                    }
                    Err(give_up) => {
                        metrics.incr(METRIC_LOOKUP_FAILURES);
                        tracing::warn!(reason = %give_up, "user lookup throttled; event forwarded without attributes");
                        return None;
                    }
                },
                Err(e) => {
                    metrics.incr(METRIC_LOOKUP_FAILURES);
                    tracing::warn!(error = %e, "user lookup failed; event forwarded without attributes");
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug, Default)]
    struct Throttling {
        calls: AtomicU32,
        throttle_first: u32,
    }

    #[async_trait]
    impl UserDirectory for Throttling {
        async fn attributes(
            &self,
            _: &str,
            _: Option<&str>,
            _: Option<&str>,
        ) -> Result<Attributes, AuthError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if n < self.throttle_first {
                return Err(AuthError::Directory {
                    op: "AdminGetUser",
                    message: THROTTLED_CODE.into(),
                    throttled: true,
                });
            }
            Ok(Some(vec![("email".into(), "jane@example.com".into())]))
        }
    }

    fn config() -> LookupConfig {
        LookupConfig {
            ttl: Duration::from_secs(60),
            capacity: 2,
            concurrency: 2,
        }
    }

    // On tokio's paused clock: "c" is read before its 30 ms are up however busy the machine, and after.
    #[tokio::test(start_paused = true)]
    async fn cache_expires_and_is_bounded() {
        let c = TtlCache::new(Duration::from_millis(30), 2);
        c.insert("a".into(), None);
        c.insert("b".into(), None);
        c.insert("c".into(), None);
        assert_eq!(c.len(), 2);
        assert!(c.get("a").is_none() && c.get("c").is_some());
        tokio::time::advance(Duration::from_millis(29)).await;
        assert!(c.get("c").is_some());
        tokio::time::advance(Duration::from_millis(11)).await;
        assert!(c.get("c").is_none());
    }

    #[tokio::test]
    async fn throttling_backs_off_then_succeeds_and_repeats_hit_the_cache() {
        let dir = Arc::new(Throttling {
            throttle_first: 2,
            ..Default::default()
        });
        let e = Enricher::new(dir.clone(), config());
        let m = Metrics::new();
        let got = e
            .lookup("p", Some("u"), Some("s"), Deadline::none(), &m)
            .await;
        assert!(got.is_some());
        assert_eq!(m.get(METRIC_LOOKUP_THROTTLED), 2);
        assert_eq!(m.get(METRIC_LOOKUP_CALLS), 3);
        e.lookup("p", Some("u"), Some("s"), Deadline::none(), &m)
            .await;
        assert_eq!(m.get(METRIC_LOOKUP_CACHE_HITS), 1);
        assert_eq!(dir.calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn endless_throttling_gives_up_without_attributes() {
        let dir = Arc::new(Throttling {
            throttle_first: 100,
            ..Default::default()
        });
        let e = Enricher::new(dir, config());
        let m = Metrics::new();
        assert!(
            e.lookup("p", Some("u"), None, Deadline::none(), &m)
                .await
                .is_none()
        );
        assert_eq!(m.get(METRIC_LOOKUP_CALLS), u64::from(LOOKUP_MAX_ATTEMPTS));
        assert_eq!(m.get(METRIC_LOOKUP_FAILURES), 1);
        assert!(e.cache().is_empty(), "failures are not cached");
    }
}
