//! Fetching the changes behind a `kinesisSyncRecordsURL`: only `https` URLs on AWS S3 hosts, plus origins
//! named in an explicit allowlist, are ever requested; anything else is refused before any connection.
//! Redirects are not followed (a redirect could leave the allowlist). Each attempt has a timeout, transient
//! failures (timeouts, 5xx, 429, connection errors) are retried a bounded number of times, and the body is
//! streamed into the JSON parser through a byte cap, so an oversized payload costs at most the cap.

use std::time::Duration;

use bridge_core::Deadline;
use bridge_core::retry::Backoff;
use bridge_core::telemetry::Metrics;
use bytes::Bytes;
use reqwest::{StatusCode, Url};

use crate::record::{SyncRecord, parse_s3_payload};

/// Metric: S3 payload requests made (every attempt).
pub const METRIC_S3_FETCHES: &str = "S3Fetches";
/// Metric: S3 payload requests that were retries.
pub const METRIC_S3_FETCH_RETRIES: &str = "S3FetchRetries";

/// An origin (scheme, host, port) the allowlist accepts on top of AWS S3 hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    fn of(url: &Url) -> Option<Self> {
        Some(Self {
            scheme: url.scheme().to_owned(),
            host: url.host_str()?.to_ascii_lowercase(),
            port: url.port_or_known_default()?,
        })
    }
}

/// Which payload URLs may be fetched.
#[derive(Debug, Clone, Default)]
pub struct UrlPolicy {
    extra_origins: Vec<Origin>,
}

/// Why a payload could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The URL is not one we fetch. Never requested.
    #[error("s3 payload url refused: {0}")]
    Refused(String),
    /// It will never succeed: expired or forbidden URL, missing object, over the cap, not a payload.
    #[error("s3 payload fetch failed permanently: {0}")]
    Permanent(String),
    /// It may succeed later: throttling, 5xx, timeouts, connection errors.
    #[error("s3 payload fetch failed: {0}")]
    Transient(String),
}

impl UrlPolicy {
    /// Parses a comma-separated list of origins such as `http://127.0.0.1:5000`. Paths are not allowed.
    pub fn with_origins(list: &str) -> Result<Self, String> {
        let mut extra_origins = Vec::new();
        for raw in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let url = Url::parse(raw).map_err(|e| format!("'{raw}' is not an origin: {e}"))?;
            if !matches!(url.scheme(), "http" | "https")
                || url.path() != "/"
                || url.query().is_some()
                || !url.username().is_empty()
            {
                return Err(format!(
                    "'{raw}' is not an origin: use scheme://host[:port] with http or https"
                ));
            }
            extra_origins.push(Origin::of(&url).ok_or_else(|| format!("'{raw}' has no host"))?);
        }
        Ok(Self { extra_origins })
    }

    /// The URL to request, or why it is refused.
    pub fn check(&self, raw: &str) -> Result<Url, FetchError> {
        let url =
            Url::parse(raw).map_err(|e| FetchError::Refused(format!("url does not parse: {e}")))?;
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        if !url.username().is_empty() || url.password().is_some() {
            return Err(FetchError::Refused(format!(
                "url for host '{host}' carries credentials"
            )));
        }
        if Origin::of(&url).is_some_and(|o| self.extra_origins.contains(&o)) {
            return Ok(url);
        }
        if url.scheme() != "https" {
            return Err(FetchError::Refused(format!(
                "scheme '{}' is not https and origin is not allowlisted",
                url.scheme()
            )));
        }
        if url.port().is_some_and(|p| p != 443) {
            return Err(FetchError::Refused(format!(
                "port {} on host '{host}' is not allowed",
                url.port().unwrap_or_default()
            )));
        }
        if !matches!(url.host(), Some(url::Host::Domain(_))) || !is_aws_s3_host(&host) {
            return Err(FetchError::Refused(format!(
                "host '{host}' is not an allowed S3 host"
            )));
        }
        Ok(url)
    }
}

/// Whether `host` is an AWS S3 endpoint: `[bucket.]s3[-x][.dualstack][.region].amazonaws.com[.cn]`.
pub fn is_aws_s3_host(host: &str) -> bool {
    let Some(rest) = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))
    else {
        return false;
    };
    let labels: Vec<&str> = rest.split('.').collect();
    // The service label is the last `s3` or `s3-…` label; what follows it must be a region (optionally after
    // `dualstack`), what precedes it is the bucket.
    let Some(pos) = labels
        .iter()
        .rposition(|l| *l == "s3" || (l.starts_with("s3-") && l.len() > 3))
    else {
        return false;
    };
    let tail = &labels[pos + 1..];
    let is_region = |l: &str| {
        let parts: Vec<&str> = l.split('-').collect();
        parts.len() >= 3
            && parts.iter().all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            })
            && parts
                .last()
                .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()))
    };
    let tail_ok = match tail {
        [] => true,
        [region] => is_region(region),
        ["dualstack", region] => is_region(region),
        _ => false,
    };
    tail_ok && labels[..pos].iter().all(|l| !l.is_empty())
}

/// The backoff ceiling before the first payload fetch retry; it doubles per retry.
const FETCH_BASE_BACKOFF: Duration = Duration::from_millis(200);
/// The largest backoff ceiling between payload fetch attempts.
const FETCH_MAX_BACKOFF: Duration = Duration::from_millis(6_400);

/// Fetches S3Url payloads.
#[derive(Debug, Clone)]
pub struct PayloadFetcher {
    client: reqwest::Client,
    policy: UrlPolicy,
    max_bytes: u64,
    backoff: Backoff,
}

impl PayloadFetcher {
    /// A fetcher with a per-attempt `timeout`, `attempts` tries at most, and a `max_bytes` body cap.
    pub fn new(
        policy: UrlPolicy,
        max_bytes: u64,
        timeout: Duration,
        attempts: u32,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()?;
        Ok(Self {
            client,
            policy,
            max_bytes,
            backoff: Backoff::new(attempts, FETCH_BASE_BACKOFF, FETCH_MAX_BACKOFF),
        })
    }

    /// The largest payload it reads.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The body behind `raw_url` and the sync records in it; `Err` when no body was had (refused, an error answer,
    /// a transient failure). No attempt starts after the deadline, and none outlasts it.
    pub async fn fetch(
        &self,
        raw_url: &str,
        deadline: Deadline,
        metrics: &Metrics,
    ) -> Result<Fetched, FetchError> {
        let url = self.policy.check(raw_url)?;
        let mut attempt = 0;
        loop {
            let left = deadline.remaining();
            if left == Some(Duration::ZERO) {
                return Err(FetchError::Transient(format!(
                    "not fetched: invocation deadline (after {attempt} attempts)"
                )));
            }
            attempt += 1;
            metrics.incr(METRIC_S3_FETCHES);
            let call = self.attempt(url.clone());
            let result = match left {
                Some(left) => tokio::time::timeout(left, call).await.unwrap_or_else(|_| {
                    Err(FetchError::Transient(
                        "no answer before the invocation deadline".into(),
                    ))
                }),
                None => call.await,
            };
            let error = match result {
                Err(FetchError::Transient(e)) => e,
                done => return done,
            };
            match self.backoff.next_wait(attempt, &deadline) {
                Ok(wait) => {
                    metrics.incr(METRIC_S3_FETCH_RETRIES);
                    tokio::time::sleep(wait).await;
                }
                Err(_) => {
                    return Err(FetchError::Transient(format!(
                        "{error} (after {attempt} attempts)"
                    )));
                }
            }
        }
    }

    async fn attempt(&self, url: Url) -> Result<Fetched, FetchError> {
        let host = url.host_str().unwrap_or_default().to_owned();
        let mut response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| classify(&e, &host))?;
        let status = response.status();
        if status == StatusCode::FORBIDDEN {
            return Err(FetchError::Permanent(
                "url answered 403: the presigned url has expired or is not authorized".into(),
            ));
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(FetchError::Transient(format!("url answered {status}")));
        }
        if !status.is_success() {
            return Err(FetchError::Permanent(format!("url answered {status}")));
        }
        // The body is kept whatever comes of it (it goes into the record's dead letter should the payload or any
        // change of it be unusable: the presigned url expires, this copy does not), so it is read whole, within
        // the cap, and parsed from memory. A body over the cap is kept up to the cap, marked as cut there.
        let announced = response
            .content_length()
            .filter(|len| *len > self.max_bytes);
        let cap = usize::try_from(self.max_bytes).unwrap_or(usize::MAX);
        let mut body = Vec::new();
        let mut truncated = false;
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            FetchError::Transient(format!(
                "reading the payload failed: {}",
                describe(&e, &host)
            ))
        })? {
            if body.len() + chunk.len() > cap {
                body.extend_from_slice(&chunk[..cap - body.len()]);
                truncated = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        let body = Bytes::from(body);
        if truncated || announced.is_some() {
            let size = announced.map_or_else(String::new, |len| format!(" of {len} bytes"));
            return Ok(Fetched {
                body,
                truncated: true,
                records: Err(FetchError::Permanent(format!(
                    "payload{size} is over the {}-byte cap",
                    self.max_bytes
                ))),
            });
        }
        let parsed = body.clone();
        let records = tokio::task::spawn_blocking(move || parse_s3_payload(&parsed[..]))
            .await
            .map_err(|e| FetchError::Transient(format!("payload parser task failed: {e}")))?
            .map_err(|e| {
                FetchError::Permanent(format!("payload is not a json array of sync records: {e}"))
            });
        Ok(Fetched {
            body,
            truncated: false,
            records,
        })
    }
}

/// A fetched S3Url payload: its bytes as served (up to the cap), and the sync records in it or why there are
/// none (a body that is not a payload, or one over the cap: both permanent).
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The body, within the cap.
    pub body: Bytes,
    /// Whether the body was cut at the cap (the rest was not read).
    pub truncated: bool,
    /// The sync records it holds.
    pub records: Result<Vec<SyncRecord>, FetchError>,
}

/// Sorts a failed request: what a retry cannot mend (a request that cannot be built, a TLS or certificate
/// failure, a host name that does not exist) is permanent; timeouts, refused connections and the rest transient.
fn classify(e: &reqwest::Error, host: &str) -> FetchError {
    let mut chain = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = source {
        chain.push_str(&err.to_string().to_ascii_lowercase());
        chain.push('\n');
        source = err.source();
    }
    let permanent = if e.is_builder() {
        Some("the request could not be built")
    } else if e.is_timeout() {
        None
    } else if ["certificate", "tls", "handshake", "corrupt message"]
        .iter()
        .any(|m| chain.contains(m))
    {
        Some("the tls handshake failed")
    } else if [
        "name or service not known",
        "no such host",
        "nodename nor servname",
    ]
    .iter()
    .any(|m| chain.contains(m))
    {
        Some("the host name does not resolve")
    } else {
        None
    };
    match permanent {
        Some(what) => FetchError::Permanent(format!("{what} for host '{host}'")),
        None => FetchError::Transient(describe(e, host)),
    }
}

fn describe(e: &reqwest::Error, host: &str) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    // The URL carries a presigned signature: name the host only.
    format!("{what} to host '{host}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_s3_hosts_are_recognized() {
        for host in [
            "s3.amazonaws.com",
            "bucket.s3.amazonaws.com",
            "my.dotted.bucket.s3.us-west-2.amazonaws.com",
            "s3.eu-central-1.amazonaws.com",
            "bucket.s3-us-west-2.amazonaws.com",
            "s3-external-1.amazonaws.com",
            "bucket.s3.dualstack.ap-southeast-1.amazonaws.com",
            "bucket.s3.cn-north-1.amazonaws.com.cn",
            "bucket.s3.us-gov-west-1.amazonaws.com",
        ] {
            assert!(is_aws_s3_host(host), "{host}");
        }
        for host in [
            "amazonaws.com",
            "s3.amazonaws.com.evil.example",
            "evil.example",
            "bucket.s3.us-east-1.amazonaws.com.example.com",
            "sqs.us-east-1.amazonaws.com",
            "bucket.s3.not-a-region.amazonaws.com",
            "bucket.s3.us-east-1.extra.amazonaws.com",
            ".s3.amazonaws.com",
            "169.254.169.254",
        ] {
            assert!(!is_aws_s3_host(host), "{host}");
        }
    }

    #[test]
    fn policy_refuses_what_is_not_s3_over_https() {
        let p = UrlPolicy::default();
        assert!(
            p.check("https://bucket.s3.us-east-1.amazonaws.com/key?X-Amz-Signature=abc")
                .is_ok()
        );
        let refused = |u: &str| match p.check(u) {
            Err(FetchError::Refused(m)) => m,
            other => panic!("{u}: {other:?}"),
        };
        assert_eq!(
            refused("http://169.254.169.254/latest/meta-data/"),
            "scheme 'http' is not https and origin is not allowlisted"
        );
        assert_eq!(
            refused("https://169.254.169.254/"),
            "host '169.254.169.254' is not an allowed S3 host"
        );
        assert_eq!(
            refused("https://x.example.com/"),
            "host 'x.example.com' is not an allowed S3 host"
        );
        assert_eq!(
            refused("https://bucket.s3.amazonaws.com:8443/k"),
            "port 8443 on host 'bucket.s3.amazonaws.com' is not allowed"
        );
        assert!(
            refused("https://user:pw@bucket.s3.amazonaws.com/k").contains("carries credentials")
        );
        assert!(refused("not a url").starts_with("url does not parse"));
        assert!(refused("file:///etc/passwd").contains("scheme 'file'"));
    }

    #[test]
    fn allowlisted_origins_match_scheme_host_and_port_exactly() {
        let p = UrlPolicy::with_origins("http://127.0.0.1:5000, https://Minio.Local").unwrap();
        assert!(p.check("http://127.0.0.1:5000/bucket/key?sig=1").is_ok());
        assert!(p.check("https://minio.local/b/k").is_ok());
        assert!(p.check("http://127.0.0.1:5001/bucket/key").is_err());
        assert!(p.check("https://127.0.0.1:5000/bucket/key").is_err());
        assert!(p.check("http://minio.local/b/k").is_err());
        assert!(
            UrlPolicy::with_origins("http://127.0.0.1:5000/path")
                .unwrap_err()
                .contains("is not an origin")
        );
        assert!(UrlPolicy::with_origins("ftp://h").is_err());
        assert!(UrlPolicy::with_origins("").is_ok());
    }

    #[tokio::test]
    async fn a_tls_failure_is_permanent_not_retried() {
        // A plain TCP listener that answers garbage to a TLS client hello.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            while let Ok((mut socket, _)) = listener.accept().await {
                let _ = socket.write_all(b"HTTP/1.1 200 OK\r\n\r\nnot tls").await;
            }
        });
        let origin = format!("https://127.0.0.1:{port}");
        let fetcher = PayloadFetcher::new(
            UrlPolicy::with_origins(&origin).unwrap(),
            1 << 20,
            Duration::from_secs(2),
            3,
        )
        .unwrap();
        let metrics = Metrics::new();
        let result = fetcher
            .fetch(&format!("{origin}/b/k"), Deadline::none(), &metrics)
            .await;
        server.abort();
        match result {
            Err(FetchError::Permanent(m)) => assert!(m.contains("tls handshake failed"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            metrics.get(METRIC_S3_FETCHES),
            1,
            "a tls failure is not retried"
        );
    }
}
