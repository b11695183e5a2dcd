//! The user snapshot export (`ckb user-snapshot-export`): pages through ListUsers of one pool and publishes one
//! `_userauth.profile_snapshot` record per user, under a configurable request rate (the UserList quota is 30/s
//! per account, shared with every other caller), resumable from a pagination token, reporting progress after
//! every page.

use std::time::{Duration, Instant};

use aws_sdk_cognitoidentityprovider::error::ProvideErrorMetadata as _;
use aws_sdk_cognitoidentityprovider::types::UserType;
use bridge_core::Deadline;
use bridge_core::envelope::{event_id, rfc3339};
use bridge_core::producer::{KinesisSink, OutboundRecord, Producer};
use bridge_core::retry::Backoff;
use bridge_core::telemetry::Metrics;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::config::ExportConfig;
use crate::directory::THROTTLED_CODE;
use crate::event::{AuthEvent, Context, Origin, PROFILE_SNAPSHOT, Profile, SCHEMA};
use crate::sharing::AttributeSharing;

/// ListUsers returns at most 60 users per page.
/// Source: docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference/API_ListUsers.html (Limit).
pub const LIST_USERS_PAGE_LIMIT: i32 = 60;
/// Attempts per page when ListUsers is throttled.
pub const PAGE_MAX_ATTEMPTS: u32 = 6;
/// The page retry stance when throttled: full jitter, 400 ms doubling.
const PAGE_BACKOFF: Backoff = Backoff::new(
    PAGE_MAX_ATTEMPTS,
    Duration::from_millis(400),
    Duration::from_millis(12_800),
);

/// The command line of `ckb user-snapshot-export`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportArgs {
    /// Resume from this pagination token.
    pub start_token: Option<String>,
    /// Stop after this many pages.
    pub max_pages: Option<u64>,
}

/// Reads the command line (without the program name). An unknown flag, a flag without its value, a bad
/// number or a stray argument is an error that names it: nothing is silently ignored.
pub fn parse_args(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Result<ExportArgs, String> {
    use lexopt::prelude::*;
    let mut parsed = ExportArgs::default();
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("start-token") => {
                let token = parser.value().map_err(|e| e.to_string())?;
                let token = token
                    .into_string()
                    .map_err(|_| "--start-token is not valid text".to_owned())?;
                parsed.start_token = Some(token);
            }
            Long("max-pages") => {
                let n: u64 = parser
                    .value()
                    .map_err(|e| e.to_string())?
                    .parse()
                    .map_err(|e: lexopt::Error| format!("--max-pages: {e}"))?;
                parsed.max_pages = Some(n);
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    Ok(parsed)
}

/// Why an export stopped early. `resume_token` restarts it at the page that failed.
#[derive(Debug, thiserror::Error)]
#[error("export stopped after {pages} pages and {users} users: {reason}")]
pub struct ExportError {
    /// Pages fully published.
    pub pages: u64,
    /// Users published.
    pub users: u64,
    /// The token to resume from (`None`: from the start).
    pub resume_token: Option<String>,
    /// What went wrong.
    pub reason: String,
}

/// How far an export got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Pages fully published.
    pub pages: u64,
    /// Users published.
    pub users: u64,
    /// The token of the next page; `None` when the pool is done.
    pub next_token: Option<String>,
}

/// The exporter.
#[derive(Debug, Clone)]
pub struct SnapshotExporter {
    client: aws_sdk_cognitoidentityprovider::Client,
    producer: Producer,
    pool: String,
    min_interval: Duration,
    sharing: AttributeSharing,
}

impl SnapshotExporter {
    /// Exports `pool` through `producer` at no more than `rate` ListUsers requests per second.
    pub fn new(
        client: aws_sdk_cognitoidentityprovider::Client,
        producer: Producer,
        pool: impl Into<String>,
        rate: f64,
        sharing: AttributeSharing,
    ) -> Self {
        let min_interval = Duration::from_secs_f64(1.0 / rate.clamp(0.01, 30.0));
        Self {
            client,
            producer,
            pool: pool.into(),
            min_interval,
            sharing,
        }
    }

    /// Builds the real ports from config (once per run). The cognito-idp and Kinesis clients do not retry
    /// underneath this code's own backoff (pages) and the producer's (entries).
    pub fn connect(config: &ExportConfig, sdk: &aws_config::SdkConfig) -> Self {
        let own_retries = bridge_core::aws::own_retries(sdk);
        let sink = KinesisSink::new(
            aws_sdk_kinesis::Client::new(&own_retries),
            &config.output_stream,
        );
        Self::new(
            aws_sdk_cognitoidentityprovider::Client::new(&own_retries),
            Producer::new(std::sync::Arc::new(sink), None, Backoff::default()),
            &config.user_pool_id,
            config.list_users_rate,
            config.sharing.clone(),
        )
    }

    /// Exports from `start_token` (or the first page), at most `max_pages` pages, calling `progress` after
    /// every page. Returns the final progress; its `next_token` is `Some` when `max_pages` stopped it.
    pub async fn run(
        &self,
        start_token: Option<String>,
        max_pages: Option<u64>,
        metrics: &Metrics,
        mut progress: impl FnMut(&Progress),
    ) -> Result<Progress, ExportError> {
        let mut state = Progress {
            next_token: start_token,
            ..Progress::default()
        };
        let mut last_request: Option<Instant> = None;
        let exported_at = Utc::now();
        loop {
            if max_pages.is_some_and(|m| state.pages >= m) {
                return Ok(state);
            }
            let stop = |reason: String, s: &Progress| ExportError {
                pages: s.pages,
                users: s.users,
                resume_token: s.next_token.clone(),
                reason,
            };
            let page = self
                .list_page(state.next_token.as_deref(), &mut last_request)
                .await
                .map_err(|reason| stop(reason, &state))?;
            let records: Vec<OutboundRecord> = page
                .users()
                .iter()
                .filter_map(|u| snapshot(&self.pool, u, exported_at, &self.sharing))
                .filter_map(|e| {
                    Some(OutboundRecord {
                        partition_key: e.partition_key(None),
                        data: Bytes::from(serde_json::to_vec(&e).ok()?),
                        header: e.header(),
                    })
                })
                .collect();
            let count = records.len() as u64;
            let outcomes = self.producer.send(records, Deadline::none(), metrics).await;
            if let Some(e) = outcomes.into_iter().find_map(Result::err) {
                return Err(stop(format!("kinesis put failed: {e}"), &state));
            }
            state.pages += 1;
            state.users += count;
            state.next_token = page.pagination_token().map(str::to_owned);
            progress(&state);
            if state.next_token.is_none() {
                return Ok(state);
            }
        }
    }

    async fn list_page(
        &self,
        token: Option<&str>,
        last_request: &mut Option<Instant>,
    ) -> Result<aws_sdk_cognitoidentityprovider::operation::list_users::ListUsersOutput, String>
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Some(at) = *last_request {
                let wait = self.min_interval.saturating_sub(at.elapsed());
                tokio::time::sleep(wait).await;
            }
            *last_request = Some(Instant::now());
            let result = self
                .client
                .list_users()
                .user_pool_id(&self.pool)
                .limit(LIST_USERS_PAGE_LIMIT)
                .set_pagination_token(token.map(str::to_owned))
                .send()
                .await;
            match result {
                Ok(page) => return Ok(page),
                Err(e) if e.code() == Some(THROTTLED_CODE) => {
                    match PAGE_BACKOFF.next_wait(attempt, &Deadline::none()) {
                        Ok(wait) => tokio::time::sleep(wait).await,
                        Err(give_up) => {
                            return Err(format!("cognito-idp ListUsers throttled: {give_up}"));
                        }
                    }
                }
                Err(e) => {
                    return Err(format!(
                        "cognito-idp ListUsers failed: {}",
                        e.code().unwrap_or("unknown error")
                    ));
                }
            }
        }
    }
}

/// The snapshot record of one user; `None` for a user without a sub.
pub fn snapshot(
    pool: &str,
    user: &UserType,
    exported_at: DateTime<Utc>,
    sharing: &AttributeSharing,
) -> Option<AuthEvent> {
    let attrs: Vec<(&str, &str)> = user
        .attributes()
        .iter()
        .map(|a| (a.name(), a.value().unwrap_or_default()))
        .collect();
    let sub = attrs
        .iter()
        .find(|(k, _)| *k == "sub")
        .map(|(_, v)| (*v).to_owned())?;
    let secs = |t: Option<&aws_sdk_cognitoidentityprovider::primitives::DateTime>| {
        t.and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos()))
    };
    let modified = secs(user.user_last_modified_date());
    let profile = Profile {
        status: user.user_status().map(|s| s.as_str().to_owned()),
        enabled: Some(user.enabled()),
        created_at: secs(user.user_create_date()).as_ref().map(rfc3339),
        last_modified_at: modified.as_ref().map(rfc3339),
    };
    // The same user, unchanged since the last export, gets the same id: repeats collapse downstream.
    let version = modified.map_or_else(String::new, |m| m.timestamp_millis().to_string());
    Some(AuthEvent {
        schema: SCHEMA.into(),
        event_id: event_id(&["snapshot", pool, &sub, &version]),
        kind: PROFILE_SNAPSHOT.into(),
        timestamp: rfc3339(&exported_at),
        received_at: None,
        source: None,
        origin: Origin::Snapshot,
        user_pool_id: pool.to_owned(),
        client_id: None,
        user_sub: Some(sub),
        trigger_source: None,
        trigger_version: None,
        activity: None,
        context: Context::default(),
        attributes: sharing.apply(attrs),
        profile: Some(profile),
    })
}

#[cfg(test)]
mod args_tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ExportArgs, String> {
        parse_args(args.iter().map(std::ffi::OsString::from))
    }

    #[test]
    fn flags_are_read_and_nothing_is_silently_ignored() {
        assert_eq!(parse(&[]), Ok(ExportArgs::default()));
        assert_eq!(
            parse(&["--start-token", "tok", "--max-pages", "2"]),
            Ok(ExportArgs {
                start_token: Some("tok".into()),
                max_pages: Some(2)
            })
        );
        assert_eq!(parse(&["--max-pages=3"]).map(|a| a.max_pages), Ok(Some(3)));
        let unknown = parse(&["--max-page", "2"]).unwrap_err();
        assert!(unknown.contains("--max-page"), "{unknown}");
        let missing = parse(&["--start-token"]).unwrap_err();
        assert!(missing.contains("--start-token"), "{missing}");
        let bad = parse(&["--max-pages", "two"]).unwrap_err();
        assert!(bad.contains("--max-pages") && bad.contains("two"), "{bad}");
        let stray = parse(&["extra"]).unwrap_err();
        assert!(stray.contains("extra"), "{stray}");
    }
}
