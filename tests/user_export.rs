//! End-to-end tests of user-snapshot-export against moto server (cognito-idp with a pool of users created
//! here, Kinesis).

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
    // A full export at 10 requests/s: 5 pages (60 users per page), at least 0.4 s between the first and last.
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
