//! `pinpoint-backfill`: history across the cutover. Reads a Pinpoint event-stream archive (the JSON records
//! Firehose delivered to S3) and writes what it holds onto our streams as the live path writes it, so that the
//! active-users rollup places years of Pinpoint's events on their own days: app events through the app event
//! forwarder's own reader, Pinpoint's Cognito auth events as `cognito-auth-event/v1` (`origin: pinpoint`),
//! messaging events counted and skipped. A one-off Lambda (`main.rs`), and a command of the operator's `ckb`
//! (`ckb pinpoint-backfill`, the same arguments).
//!
//! - [`archive`]: Firehose's object formats (GZIP or not, records back to back or one per line, damaged records,
//!   the key layouts and error prefixes);
//! - [`map`]: one record to its output;
//! - [`run`]: listing, checkpoints, dead letters, writing;
//! - [`rate`]: the write rate within the streams' capacity;
//! - [`report`]: the progress line and the summary;
//! - [`cli`]: the arguments.

pub mod archive;
pub mod cli;
pub mod map;
pub mod rate;
pub mod report;
pub mod run;

use std::sync::Arc;

use bridge_core::config::{Env, ProcessEnv};
use bridge_core::producer::{KinesisSink, Producer};
use bridge_core::retry::Backoff;
use bridge_core::telemetry::Metrics;
use tokio::time::Instant;

use crate::cli::Args;
use crate::rate::{Limiter, Rate};
use crate::run::{Backfill, Options, Outcome, Progress, Sinks, Source, StateStore};

/// The app event stream's variable, when `--app-stream` is not given.
pub const ENV_APP_STREAM: &str = "APP_OUTPUT_STREAM_NAME";
/// The auth event stream's variable, when `--auth-stream` is not given.
pub const ENV_AUTH_STREAM: &str = "AUTH_OUTPUT_STREAM_NAME";
/// The state bucket's variable, when `--state` is not given.
pub const ENV_STATE_BUCKET: &str = "DEAD_LETTER_BUCKET";
/// The state prefix when `--state` is not given.
pub const DEFAULT_STATE_PREFIX: &str = "pinpoint-backfill/";

fn named(given: Option<&String>, env: &impl Env, var: &str, flag: &str) -> Result<String, String> {
    given
        .cloned()
        .or_else(|| env.get(var).filter(|v| !v.is_empty()))
        .ok_or_else(|| format!("{flag} is required (or set {var})"))
}

/// The write rate of `stream`: `args.write_share` of its open shards' capacity, or the fixed rate given.
pub async fn stream_rate(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    args: &Args,
) -> Result<Rate, String> {
    let shards = kinesis
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await
        .map_err(|e| {
            format!(
                "cannot describe stream {stream} (its shards set the write rate; or give --max-records-per-second \
                 and --max-bytes-per-second): {}",
                aws_sdk_kinesis::error::DisplayErrorContext(&e)
            )
        })?
        .stream_description_summary()
        .map_or(1, |s| u32::try_from(s.open_shard_count().max(1)).unwrap_or(1));
    let mut rate = Rate::of_shards(shards, args.write_share);
    if let Some(r) = args.max_records_per_second {
        rate.records = r;
    }
    if let Some(b) = args.max_bytes_per_second {
        rate.bytes = b;
    }
    Ok(rate)
}

/// Runs the command with `args` against the standard AWS config (and `AWS_ENDPOINT_URL`), stopping before
/// `deadline` when one is given (a Lambda's), calling `progress` after every object.
pub async fn command(
    args: &Args,
    deadline: Option<Instant>,
    metrics: &Metrics,
    progress: impl FnMut(&Progress),
) -> Result<Outcome, String> {
    let sdk = bridge_core::aws::sdk_config().await;
    // Boxed: inline, the run's future nests too deep for the compiler to lay out the Lambda's `main`.
    Box::pin(command_with(&sdk, args, deadline, metrics, progress)).await
}

/// [`command`] with the SDK config given (the operator command's, with its `--profile`, `--region` and
/// `--endpoint-url`).
pub async fn command_with(
    sdk: &aws_config::SdkConfig,
    args: &Args,
    deadline: Option<Instant>,
    metrics: &Metrics,
    progress: impl FnMut(&Progress),
) -> Result<Outcome, String> {
    let env = ProcessEnv;
    let s3 = bridge_core::aws::s3_client(sdk, &env).map_err(|e| e.to_string())?;
    let app_stream = named(
        args.app_stream.as_ref(),
        &env,
        ENV_APP_STREAM,
        "--app-stream",
    )?;
    let auth_stream = named(
        args.auth_stream.as_ref(),
        &env,
        ENV_AUTH_STREAM,
        "--auth-stream",
    )?;
    let state = match &args.state {
        Some((bucket, prefix)) => StateStore {
            bucket: bucket.clone(),
            prefix: prefix.clone(),
        },
        None => StateStore {
            bucket: named(None, &env, ENV_STATE_BUCKET, "--state")?,
            prefix: DEFAULT_STATE_PREFIX.to_owned(),
        },
    };
    let budget = args
        .max_seconds
        .map(|s| Instant::now() + std::time::Duration::from_secs(s));
    let stop_at = match (budget, deadline) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let options = Options {
        source: Source {
            bucket: args.bucket.clone(),
            prefix: args.prefix.clone(),
            error_prefixes: args.error_prefixes.clone(),
        },
        state,
        settings: map::Settings {
            user_pool_id: args.user_pool_id.clone(),
            client_id: args.client_id.clone(),
            from: args.from,
            until: args.until,
            limits: app_events::event::Limits::default(),
        },
        dry_run: args.dry_run,
        max_objects: args.max_objects,
        stop_at,
        max_object_bytes: args.max_object_bytes,
        streams: (app_stream.clone(), auth_stream.clone()),
    };
    let backfill = Backfill::new(s3, options);
    let result = if args.dry_run {
        backfill.run(None, metrics, progress).await
    } else {
        let kinesis = aws_sdk_kinesis::Client::new(&bridge_core::aws::own_retries(sdk));
        let producer = |stream: &str| {
            Producer::new(
                Arc::new(KinesisSink::new(kinesis.clone(), stream)),
                None,
                Backoff::default(),
            )
        };
        let mut sinks = Sinks {
            app: (
                producer(&app_stream),
                Limiter::new(stream_rate(&kinesis, &app_stream, args).await?),
            ),
            auth: (
                producer(&auth_stream),
                Limiter::new(stream_rate(&kinesis, &auth_stream, args).await?),
            ),
        };
        backfill.run(Some(&mut sinks), metrics, progress).await
    };
    result.map_err(|e| e.to_string())
}
