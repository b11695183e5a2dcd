//! End-to-end tests of the user snapshot export (`ckb user-snapshot-export`) against moto server (cognito-idp with
//! a pool of users created here, Kinesis).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use std::time::{Duration, Instant};

use bridge_core::telemetry::Metrics;
use e2e::auth::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_export_of_250_users_pages_under_the_rate_and_resumes_from_a_token() {
    let aws = local().await;
    let (idp, pool) = user_pool(&aws).await;
    let mut subs = std::collections::HashSet::new();
    for i in 0..253 {
        subs.insert(
            create_user(
                &idp,
                &pool,
                &format!("user{i:03}"),
                &[("email", &format!("user{i:03}@example.com"))],
            )
            .await,
        );
    }
    // A full export at 10 requests/s: 5 pages (60 users per page), at least 0.4 s between the first and last. A
    // lower bound only: the exporter sleeps out each interval, so a busier machine can make the run longer but
    // never shorter; no load makes this pass or fail.
    let stream = output_stream(&aws).await;
    let mut seen = Vec::new();
    let started = Instant::now();
    let done = exporter(&aws, &pool, &stream, 10.0)
        .run(None, None, &Metrics::new(), |p| seen.push(p.clone()))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        (done.pages, done.users, done.next_token.clone()),
        (5, 253, None)
    );
    assert_eq!(
        seen.iter().map(|p| p.users).collect::<Vec<_>>(),
        [60, 120, 180, 240, 253]
    );
    let out = outputs(&aws, &stream).await;
    assert_eq!(out.len(), 253);
    let exported: std::collections::HashSet<String> =
        out.iter().map(|(pk, _)| pk.clone()).collect();
    assert_eq!(exported, subs);
    let first = &out[0].1;
    assert_eq!(first["type"], "_userauth.profile_snapshot");
    assert_eq!(first["origin"], "snapshot");
    assert!(first.get("attributes").is_none(), "sharing is off");
    assert!(first["profile"]["status"].is_string());

    // Stop after 2 pages, then resume from the token: together, every user exactly once.
    let resumed = output_stream(&aws).await;
    let part = exporter(&aws, &pool, &resumed, 30.0)
        .run(None, Some(2), &Metrics::new(), |_| {})
        .await
        .unwrap();
    assert_eq!((part.pages, part.users), (2, 120));
    let token = part.next_token.expect("a token to resume from");
    let rest = exporter(&aws, &pool, &resumed, 30.0)
        .run(Some(token), None, &Metrics::new(), |_| {})
        .await
        .unwrap();
    assert_eq!((rest.pages, rest.users, rest.next_token), (3, 133, None));
    let out = outputs(&aws, &resumed).await;
    let ids: std::collections::HashSet<String> = out.iter().map(|(pk, _)| pk.clone()).collect();
    assert_eq!(out.len(), 253);
    assert_eq!(ids, subs);
}

/// The export as a team runs it, the operator command's real binary: the pool and stream from the environment, the
/// endpoint only from the global `--endpoint-url` (`AWS_ENDPOINT_URL` removed), stopped by `--max-pages` with the
/// token to resume from on stderr, then resumed from that token: every user once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ckb_user_snapshot_export_stops_with_a_token_and_resumes_from_it() {
    let aws = local().await;
    let (idp, pool) = user_pool(&aws).await;
    let mut subs = std::collections::HashSet::new();
    for i in 0..70 {
        subs.insert(create_user(&idp, &pool, &format!("user{i:03}"), &[]).await);
    }
    let stream = output_stream(&aws).await;
    let run = |extra: &[&str]| {
        let mut command = e2e::ckb_command();
        command
            .env_remove("AWS_ENDPOINT_URL")
            .env("USER_POOL_ID", &pool)
            .env("AUTH_OUTPUT_STREAM_NAME", &stream)
            .env("LIST_USERS_RATE", "30")
            .args(["--endpoint-url", &aws.endpoint, "user-snapshot-export"])
            .args(extra);
        e2e::run_command(command)
    };
    let (code, _, err) = run(&["--max-pages", "1"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("done: 60 users in 1 pages"), "{err}");
    let token = err
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("resume with --start-token "))
        .expect("the token to resume from")
        .to_owned();
    // Not a terminal: a plain progress line (the first one is always shown), with the rate and the same token.
    let line = err
        .lines()
        .find(|l| l.starts_with("page 1: 60 users exported | "))
        .unwrap_or_else(|| panic!("no progress line: {err}"));
    assert!(
        line.contains(" users/s | ")
            && line.ends_with(&format!("resume with --start-token {token}")),
        "{line}"
    );
    let (code, _, err) = run(&["--start-token", &token]).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("done: 10 users in 1 pages"), "{err}");
    assert!(!err.contains("resume with"), "the pool is done: {err}");
    let out = outputs(&aws, &stream).await;
    assert_eq!(out.len(), 70);
    let exported: std::collections::HashSet<String> =
        out.iter().map(|(pk, _)| pk.clone()).collect();
    assert_eq!(exported, subs);
    // A mistake on the command line is a usage error that names it, before any request.
    let (code, _, err) = run(&["--max-pages", "two"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--max-pages") && err.contains("two"), "{err}");
}

/// The export through the fault proxy: cognito-idp throttles in its own shape (`TooManyRequestsException`), 500s
/// and lost answers on ListUsers and PutRecords, and 20% of PutRecords entries failed. Throttles are waited out by
/// the export's own backoff; a 500 or a lost answer stops it with a token, and the run resumes from that token as
/// an operator would. Every user ends on the stream, each under one `event_id` (a page resent after a stop
/// repeats the same ids).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_under_faults_resumes_and_exports_every_user_under_one_id() {
    use devtools::proxy::{ClientConnections, CountingProxy, Fault, FaultPlan, Scheduled};
    let aws = local().await;
    let (idp, pool) = user_pool(&aws).await;
    let mut subs = std::collections::HashSet::new();
    for i in 0..150 {
        subs.insert(create_user(&idp, &pool, &format!("user{i:03}"), &[]).await);
    }
    let stream = output_stream(&aws).await;
    let proxy = CountingProxy::with_faults(
        &aws.endpoint,
        ClientConnections::KeepAlive,
        Some(FaultPlan {
            seed: 20_261_204,
            entry_failure: 0.2,
            throttle: 0.2,
            server_error: 0.05,
            lost_response: 0.05,
            only: vec!["ListUsers".to_owned(), "PutRecords".to_owned()],
            // What the test requires happens on the first requests, whatever the draws: a throttle waited out, a
            // 500 that stops the export (resumed from its token), failed entries resent, and a put applied whose
            // answer is lost (its users come again, under their ids).
            schedule: vec![
                Scheduled::on("ListUsers", Fault::Throttle),
                Scheduled::on("ListUsers", Fault::ServerError),
                Scheduled::on("PutRecords", Fault::EntryFailed),
                Scheduled::on("PutRecords", Fault::LoseResponse),
            ],
            ..FaultPlan::default()
        }),
    )
    .await
    .unwrap();
    // As the export's Lambda builds its clients: the SDK's retries off, its own backoff on.
    let sdk = bridge_core::aws::own_retries(&aws.sdk);
    let idp_conf = aws_sdk_cognitoidentityprovider::config::Builder::from(&sdk)
        .endpoint_url(&proxy.endpoint)
        .build();
    let kinesis_conf = aws_sdk_kinesis::config::Builder::from(&sdk)
        .endpoint_url(&proxy.endpoint)
        .build();
    let exporter = auth_analytics::export::SnapshotExporter::new(
        aws_sdk_cognitoidentityprovider::Client::from_conf(idp_conf),
        bridge_core::producer::Producer::new(
            std::sync::Arc::new(bridge_core::producer::KinesisSink::new(
                aws_sdk_kinesis::Client::from_conf(kinesis_conf),
                &stream,
            )),
            None,
            bridge_core::retry::Backoff::default(),
        ),
        &pool,
        30.0,
        auth_analytics::sharing::AttributeSharing::off(),
    );
    let mut token = None;
    let mut stops = Vec::new();
    loop {
        match exporter
            .run(token.clone(), None, &Metrics::new(), |_| {})
            .await
        {
            Ok(done) => {
                assert_eq!(done.next_token, None);
                break;
            }
            Err(e) => {
                stops.push(e.reason.chars().take(60).collect::<String>());
                assert!(stops.len() < 40, "the export never finished: {stops:?}");
                token = e.resume_token;
            }
        }
    }
    let out = outputs(&aws, &stream).await;
    let mut ids: std::collections::HashMap<String, std::collections::HashSet<String>> =
        std::collections::HashMap::new();
    for (pk, doc) in &out {
        ids.entry(pk.clone())
            .or_default()
            .insert(doc["event_id"].as_str().unwrap().to_owned());
    }
    let injected = proxy.injected.snapshot();
    println!(
        "export under faults: {} users, {} records out, {} stops resumed from their token ({stops:?}); faults \
         injected: {injected:?}; seed 20261204, faults by request:\n{}",
        subs.len(),
        out.len(),
        stops.len(),
        devtools::proxy::describe(&proxy.fault_log())
    );
    assert_eq!(
        ids.keys()
            .cloned()
            .collect::<std::collections::HashSet<_>>(),
        subs
    );
    assert!(ids.values().all(|e| e.len() == 1), "one event_id per user");
    assert!(
        out.len() > subs.len(),
        "the put whose answer was lost was sent again: repeats to keep under one id"
    );
    assert!(
        !stops.is_empty(),
        "the 500 stopped the export once at least"
    );
    assert!(injected.get("ListUsers Throttle").copied().unwrap_or(0) > 0);
    assert!(
        injected
            .get("PutRecords entry failed")
            .copied()
            .unwrap_or(0)
            > 0
    );
}
