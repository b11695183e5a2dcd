//! One real client end to end: the published `aws-amplify` JS package (6.22.1: @aws-amplify/analytics 7.2.0,
//! @aws-amplify/core 6.19.2, @aws-sdk/client-kinesis 3.1143.0), run in Node 20 with a jsdom window as an app
//! would (`clients/amplify-js/app.mjs`), signed in to a user pool and an identity pool on moto, writing to
//! Kinesis on moto. The test asserts byte for byte what it wrote and keeps it in
//! `events/app/clients/amplify-js/` (`AMPLIFY_JS_WRITE=1` rewrites those samples from a run).
//!
//! What it observed (and pins below):
//! - HTTP: the Kinesis client Amplify builds uses the SDK's NodeHttp2Handler: HTTP/2 for every call; with an
//!   `http://` endpoint, cleartext with prior knowledge (h2c), so a loopback h2c-to-HTTP/1.1 front
//!   (`clients/amplify-js/h2-front.mjs`) stands before moto. No TLS is needed. The client takes its endpoint from
//!   `AWS_ENDPOINT_URL_KINESIS` (Amplify passes none); the Cognito calls take `userPoolEndpoint` and
//!   `identityPoolEndpoint`, and sign-in uses `USER_PASSWORD_AUTH`. Amplify calls only PutRecords, each call
//!   (and each retry) on a connection of its own: the client's default `disableConcurrentStreams: true` opens a
//!   fresh HTTP/2 session per request.
//! - Record body: exactly `JSON.stringify(data)` in UTF-8 (an `ArrayBuffer` view would go as is), serialized at
//!   `record()` time; Amplify adds nothing: no time, id, identity, session or device.
//! - Partition key: the one the app passes, unchanged (this app passes the identity id); auto-tracking uses the
//!   `partitionKey` of the tracker's options, the same for every record of that tracker.
//! - Auto-tracking (`configureAutoTrack` of `aws-amplify/analytics/kinesis`): records `{"name", "attributes"}`
//!   and nothing else: `_session.start` (on configure while the document is visible) and `_session.stop` (on
//!   `visibilitychange` to hidden) with `attributes: {}` unless the app sets some; `pageView` on an SPA
//!   navigation (`history.pushState`, not on configure) with `attributes.url` (origin + path); the event tracker
//!   names the record after `data-amplify-analytics-name` with `type`, `target` ("button with id add-to-cart")
//!   and the element's `data-amplify-analytics-attrs`. No time: only the arrival time dates these records.
//! - Retries: a PutRecords answered HTTP 500 gets the SDK's 3 attempts (one `amz-sdk-invocation-id`,
//!   `amz-sdk-request: attempt=N; max=3`); then Amplify puts the records back in its buffer and sends them again
//!   as a new call (a new invocation id) at a later flush tick, up to `resendLimit` (5) times.
//! - An entry that fails inside an HTTP 200 answer (`FailedRecordCount` > 0) is dropped: never resent, and
//!   nothing is logged.
//! - Amplify's Pinpoint provider: PutEvents body `{"BatchItem": {<endpointId>: {"Endpoint": {}, "Events":
//!   {<eventId>: {"EventType", "Timestamp", "Attributes", "Metrics", "Session": {"Id", "StartTimestamp"}}}}}}`
//!   in that key order; the first event starts the session (its start is the event's time). Before it,
//!   UpdateEndpoint sends the demographics and `User.UserId` = the identity id (not the user's sub).
//! - A call whose records were stored but whose answer failed (the front forwards the PutRecords to moto, then
//!   answers HTTP 500 or resets the HTTP/2 stream): after the 500 the SDK retries the same call (attempt 2, the
//!   same invocation id); after the reset it does not, and Amplify sends the records again as a new call at its
//!   next flush tick. Either way the stream holds the records twice, byte for byte: Amplify serialized the data
//!   at `record()` time, so a resend carries the same `sent_at` (ours) and the same ids and times.
//!
//! Beyond REFERENCE.md: auto-tracking also has an `event` (DOM click) tracker; the resend after a failed call
//! comes at the next flush tick (`flushInterval`, 5 s by default; 100 ms here), not at a fixed 200-550 ms;
//! Amplify's Kinesis buffer keeps a timer it never clears, so a Node app does not exit by itself.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

use devtools::emulator::unique_name;
use e2e::amplify_js::{self, AmplifyRun, DOC_IDENTITY_ID, SCENARIOS};
use serde_json::Value;

const PUT_RECORDS: &str = "Kinesis_20131202.PutRecords";

fn description(scenario: &str) -> &'static str {
    match scenario {
        "our-shape" => {
            "What aws-amplify's Kinesis provider put on the stream for record({streamName, partitionKey, data}) with data in this project's input shape (crates/app-events/src/input.rs): JSON.stringify(data), nothing added. Partition key: the app's (here the identity id). Times and ids are documentation values; see SOURCE."
        }
        "pinpoint-shape" => {
            "What aws-amplify's Kinesis provider put on the stream when the app handed it what Amplify's own Pinpoint provider built for PutEvents: first the event object (EventsRequest.BatchItem[endpointId].Events[eventId]), then the whole PutEvents body (EventsRequest). Times and ids are documentation values; see SOURCE."
        }
        "auto-track" => {
            "What aws-amplify's Kinesis auto-tracking (configureAutoTrack: session, pageView, event) put on the stream: _session.start on configure, pageView on history.pushState to /products/42, add_to_cart on a click of a tagged button, _session.stop when the page was hidden. {name, attributes} only: no time, id or identity. Partition key: the tracker's partitionKey option (here the identity id); see SOURCE."
        }
        _ => unreachable!("{scenario}"),
    }
}

/// What auto-tracking wrote, byte for byte (the page is https://app.example.com/).
const AUTO_TRACK: &[&str] = &[
    r#"{"name":"_session.start","attributes":{}}"#,
    r#"{"name":"pageView","attributes":{"url":"https://app.example.com/products/42"}}"#,
    r#"{"name":"add_to_cart","attributes":{"type":"click","target":"button with id add-to-cart","sku":"B-42","list":"featured"}}"#,
    r#"{"name":"_session.stop","attributes":{}}"#,
];

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().expect("a string"))
        .collect()
}

/// The requests of the run that carry an entry with this partition key.
fn requests_with<'a>(run: &'a AmplifyRun, key: &str) -> Vec<&'a Value> {
    run.kinesis_requests()
        .iter()
        .filter(|r| strings(&r["partition_keys"]).contains(&key))
        .collect()
}

/// One run of the app: what it wrote (the samples), and what its resend scenario put on its stream.
#[tokio::test(flavor = "multi_thread")]
async fn amplify_js_writes_exactly_what_the_samples_show_and_resends_what_was_stored() {
    let aws = e2e::auth::local().await;
    let stream = unique_name("amplify-app");
    let run = amplify_js::run(&aws, &stream).await;
    amplify_js_writes_exactly_what_the_samples_show(&aws, &stream, &run).await;
    a_call_failed_after_its_records_were_stored_is_sent_again(&aws, &run).await;
}

async fn amplify_js_writes_exactly_what_the_samples_show(
    aws: &devtools::LocalAws,
    stream: &str,
    run: &AmplifyRun,
) {
    let identity = run.identity_id().to_owned();

    // The app signed in as the user moto knows, and its identity is one of the identity pool's.
    assert_eq!(
        run.summary["amplify"]["user_sub"],
        run.app.user_sub.as_str()
    );
    let identities = aws_sdk_cognitoidentity::Client::new(&aws.sdk)
        .list_identities()
        .identity_pool_id(&run.app.identity_pool_id)
        .max_results(60)
        .send()
        .await
        .unwrap();
    assert!(
        identities
            .identities()
            .iter()
            .any(|i| i.identity_id() == Some(identity.as_str())),
        "{identity} is not an identity of the pool"
    );

    // Every record of scenarios a-c, once each, in order, keyed by the identity id.
    let records = amplify_js::stream_records(aws, stream).await;
    let expected: usize = SCENARIOS.iter().map(|(_, n)| n).sum();
    assert_eq!(records.len(), expected, "records on the app stream");
    assert!(records.iter().all(|(key, _)| *key == identity));

    let source = e2e::root().join("events/app/clients/amplify-js/SOURCE");
    let source = std::fs::read_to_string(source).unwrap();
    let version = amplify_js::installed_version();
    assert!(
        source.contains(&format!("aws-amplify {version}")),
        "SOURCE does not name aws-amplify {version}"
    );
    let write = std::env::var("AMPLIFY_JS_WRITE").is_ok_and(|v| v == "1");
    let mut offset = 0;
    for (scenario, count) in SCENARIOS {
        let ours = &records[offset..offset + count];
        offset += count;
        let summary = &run.scenario(scenario)["records"];
        assert_eq!(summary.as_array().map(Vec::len), Some(*count), "{scenario}");
        for (i, (key, data)) in ours.iter().enumerate() {
            let text = std::str::from_utf8(data).expect("UTF-8");
            // The data on the stream is exactly JSON.stringify of what the app recorded.
            assert_eq!(text, summary[i]["json"].as_str().unwrap(), "{scenario} {i}");
            assert_eq!(key, summary[i]["partition_key"].as_str().unwrap());
            if *scenario == "auto-track" {
                assert_eq!(text, AUTO_TRACK[i], "auto-track record {i}");
            }
        }
        let documented = amplify_js::documented(run, scenario, ours);
        assert!(documented.iter().all(|(key, _)| key == DOC_IDENTITY_ID));
        if write {
            amplify_js::write_events_file(scenario, description(scenario), &documented);
        } else {
            assert_eq!(
                documented,
                amplify_js::read_events_file(scenario),
                "{scenario}: Amplify wrote something other than {} (AMPLIFY_JS_WRITE=1 rewrites it)",
                amplify_js::events_file(scenario).display()
            );
        }
    }

    // The Pinpoint provider: UpdateEndpoint, then PutEvents with the body the app put on the stream.
    let pinpoint = run.summary["pinpoint_requests"].as_array().unwrap();
    assert_eq!(pinpoint.len(), 2, "{pinpoint:#?}");
    let endpoint_path = pinpoint[0]["path"].as_str().unwrap();
    let endpoint_id = endpoint_path
        .strip_prefix("/v1/apps/documentation-app-id-0123456789ab/endpoints/")
        .unwrap_or_else(|| panic!("UpdateEndpoint path {endpoint_path}"));
    assert_eq!(pinpoint[0]["method"], "PUT");
    assert_eq!(pinpoint[0]["body"]["User"]["UserId"], identity.as_str());
    assert_eq!(pinpoint[1]["method"], "POST");
    assert_eq!(
        pinpoint[1]["path"],
        "/v1/apps/documentation-app-id-0123456789ab/events"
    );
    let body: Value = serde_json::from_slice(&records[2].1).unwrap();
    assert_eq!(pinpoint[1]["body"], body);
    assert_eq!(
        body["BatchItem"][endpoint_id]["Endpoint"],
        serde_json::json!({})
    );

    // HTTP/2 cleartext, PutRecords only, one connection per request.
    let mut connections = std::collections::HashSet::new();
    for r in run.kinesis_requests() {
        assert_eq!(r["http_version"], "2.0", "{r}");
        assert_eq!(r["scheme"], "http", "{r}");
        assert_eq!(r["target"], PUT_RECORDS, "{r}");
        assert!(connections.insert(r["connection"].as_u64()), "{r}");
    }
    let app_requests: Vec<&Value> = run
        .kinesis_requests()
        .iter()
        .filter(|r| r["stream"] == stream)
        .collect();
    assert!(app_requests.iter().all(|r| r["status"] == 200));
    let sent: usize = app_requests
        .iter()
        .map(|r| strings(&r["partition_keys"]).len())
        .sum();
    assert_eq!(sent, expected, "no entry of the app stream was sent twice");

    // An entry failed inside an HTTP 200 answer: dropped, never sent again.
    let rejected = requests_with(run, "fault-entry-rejected");
    assert_eq!(rejected.len(), 1, "{rejected:#?}");
    assert_eq!(rejected[0]["status"], 200);
    assert_eq!(
        strings(&rejected[0]["failed_partition_keys"]),
        ["fault-entry-rejected"]
    );

    // A call answered HTTP 500: the SDK's three attempts, then Amplify's resend as a new call.
    let call = requests_with(run, "fault-call-rejected");
    let statuses: Vec<&Value> = call.iter().map(|r| &r["status"]).collect();
    assert_eq!(statuses, [500, 500, 500, 200], "{call:#?}");
    let attempts: Vec<&str> = call
        .iter()
        .map(|r| r["sdk_request"].as_str().unwrap())
        .collect();
    assert_eq!(
        attempts,
        [
            "attempt=1; max=3",
            "attempt=2; max=3",
            "attempt=3; max=3",
            "attempt=1; max=3"
        ]
    );
    let invocation = |i: usize| call[i]["invocation_id"].as_str().unwrap();
    assert!(invocation(0) == invocation(1) && invocation(1) == invocation(2));
    assert_ne!(invocation(2), invocation(3), "the resend is a new call");
    let faults = amplify_js::stream_records(aws, &run.app.fault_stream).await;
    let resent = &run.scenario("faults")["records"][1];
    assert_eq!(
        faults.len(),
        1,
        "only the resent record is on the fault stream"
    );
    assert_eq!(faults[0].0, "fault-call-rejected");
    assert_eq!(faults[0].1, resent["json"].as_str().unwrap().as_bytes());

    assert_eq!(run.summary["problems"], serde_json::json!([]));
}

/// The steps of the resend scenario, as positions of the app stream's records: each step's records go in one
/// call (our event; the Pinpoint event and body; then each auto-tracked event).
const RESEND_STEPS: &[&[usize]] = &[&[0], &[1, 2], &[3], &[4], &[5], &[6]];

/// The resend scenario: a call whose records moto stored is failed by the front (HTTP 500 and a dropped answer,
/// in turn), and the same records are sent again: each step's records are on the stream twice, byte for byte.
async fn a_call_failed_after_its_records_were_stored_is_sent_again(
    aws: &devtools::LocalAws,
    run: &AmplifyRun,
) {
    let app = amplify_js::stream_records(aws, &run.app.stream).await;
    let resend = amplify_js::stream_records(aws, &run.app.resend_stream).await;
    let expected: Vec<&(String, Vec<u8>)> = RESEND_STEPS
        .iter()
        .flat_map(|step| {
            let once: Vec<&(String, Vec<u8>)> = step.iter().map(|&i| &app[i]).collect();
            [once.clone(), once].concat()
        })
        .collect();
    assert_eq!(
        resend.iter().collect::<Vec<_>>(),
        expected,
        "each step's records twice on the resend stream"
    );
    let summary = run.scenario("resend")["records"].as_array().unwrap();
    assert_eq!(summary.len(), resend.len());
    let answered: Vec<bool> = RESEND_STEPS
        .iter()
        .flat_map(|step| [vec![false; step.len()], vec![true; step.len()]].concat())
        .collect();
    for (i, (r, (key, data))) in summary.iter().zip(&resend).enumerate() {
        assert_eq!(r["json"].as_str().unwrap().as_bytes(), data.as_slice());
        assert_eq!(r["partition_key"], key.as_str());
        assert_eq!(r["answered"], answered[i], "resend record {i}");
    }

    // After a 500 the SDK retries the same call (attempt 2, the same invocation id); after a dropped answer (an
    // HTTP/2 stream reset) it does not, and Amplify sends the records again as a new call at its next flush tick.
    let calls: Vec<&Value> = run
        .kinesis_requests()
        .iter()
        .filter(|r| r["stream"] == run.app.resend_stream.as_str())
        .collect();
    assert_eq!(calls.len(), 2 * RESEND_STEPS.len(), "{calls:#?}");
    for (n, (pair, step)) in calls.chunks(2).zip(RESEND_STEPS).enumerate() {
        let (failed, again) = (pair[0], pair[1]);
        assert_eq!(strings(&failed["partition_keys"]).len(), step.len());
        assert_eq!(failed["partition_keys"], again["partition_keys"]);
        assert_eq!(failed["sdk_request"], "attempt=1; max=3", "{failed}");
        assert_eq!(again["status"], 200, "{again}");
        if n % 2 == 0 {
            assert_eq!(failed["injected"], "stored, then http 500", "{failed}");
            assert_eq!(failed["status"], 500);
            assert_eq!(again["invocation_id"], failed["invocation_id"], "{again}");
            assert_eq!(again["sdk_request"], "attempt=2; max=3");
        } else {
            assert_eq!(
                failed["injected"], "stored, then answer dropped",
                "{failed}"
            );
            assert_ne!(again["invocation_id"], failed["invocation_id"], "{again}");
            assert_eq!(again["sdk_request"], "attempt=1; max=3");
        }
    }
}
