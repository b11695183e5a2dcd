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
//!
//! Then through the forwarder's real binary (`target/debug/app-event-forwarder`, local Runtime API, local event
//! source mapping with the template's `AppEventForwarderFunction`/`AppEvents` settings), see
//! [`the_forwarder_binary_maps_every_record_and_collapses_repeats`]: one valid `app-event/v1` per event, mapped
//! as the golden files `events/app/clients/amplify-js/*.expected.json` say but for the run's values; no dead
//! letter; a redelivery gives the same records; a resend of ours or of Pinpoint's shapes keeps its `event_id`,
//! an auto-tracked resend does not (no time, no id: its id is the record's lineage; a known limit).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

use std::collections::{BTreeMap, BTreeSet};

use app_events::handler::{
    METRIC_DUPLICATES_DROPPED as DUPLICATES, METRIC_EVENTS_FORWARDED as FORWARDED,
};
use bridge_core::pipeline::{
    METRIC_DEAD_LETTERED as DEAD_LETTERED, METRIC_RECORDS_IN as RECORDS_IN,
};
use devtools::emulator::unique_name;
use e2e::amplify_js::{self, AmplifyRun, DOC_IDENTITY_ID, Forwarder, SCENARIOS};
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

/// One run of the app: what it wrote (the samples), what its resend scenario put on its stream, and what the
/// forwarder's real binary makes of both streams.
#[tokio::test(flavor = "multi_thread")]
async fn amplify_js_writes_exactly_what_the_samples_show_and_the_forwarder_binary_maps_it() {
    let aws = e2e::auth::local().await;
    let stream = unique_name("amplify-app");
    let run = amplify_js::run(&aws, &stream).await;
    amplify_js_writes_exactly_what_the_samples_show(&aws, &stream, &run).await;
    a_call_failed_after_its_records_were_stored_is_sent_again(&aws, &run).await;
    the_forwarder_binary_maps_every_record_and_collapses_repeats(&aws, &run).await;
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

/// Whose id an output's `anonymous_id` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Anonymous {
    /// The identity id (the app's partition key).
    Identity,
    /// The Pinpoint endpoint id (the `BatchItem` key).
    Endpoint,
}

/// What the forwarder makes of one record of the app stream.
#[derive(Debug, Clone, Copy)]
struct Mapped {
    event: &'static str,
    input_shape: &'static str,
    /// `user_id` is the user's sub (else null).
    user: bool,
    anonymous: Anonymous,
    anonymous_id_source: &'static str,
    time_source: &'static str,
    session: bool,
    /// A resend of it has the same `event_id` (a client id or the event's own time); auto-tracking has
    /// neither: its id is the record's lineage.
    collapsible: bool,
}

/// The app stream's records in order: our event; the Pinpoint event alone (no endpoint: the partition key is
/// its anonymous id) and the PutEvents body (the endpoint id); auto-tracking's four records (no identity: the
/// partition key; no time: the arrival).
const MAPPING: &[Mapped] = &[
    Mapped {
        event: "level_complete",
        input_shape: "ours",
        user: true,
        anonymous: Anonymous::Identity,
        anonymous_id_source: "event",
        time_source: "client_corrected",
        session: true,
        collapsible: true,
    },
    Mapped {
        event: "level_complete",
        input_shape: "pinpoint-event",
        user: false,
        anonymous: Anonymous::Identity,
        anonymous_id_source: "partition_key",
        time_source: "client",
        session: true,
        collapsible: true,
    },
    Mapped {
        event: "level_complete",
        input_shape: "pinpoint-batch",
        user: false,
        anonymous: Anonymous::Endpoint,
        anonymous_id_source: "event",
        time_source: "client",
        session: true,
        collapsible: true,
    },
    AUTO_TRACKED[0],
    AUTO_TRACKED[1],
    AUTO_TRACKED[2],
    AUTO_TRACKED[3],
];

const fn auto_tracked(event: &'static str) -> Mapped {
    Mapped {
        event,
        input_shape: "amplify-autotrack",
        user: false,
        anonymous: Anonymous::Identity,
        anonymous_id_source: "partition_key",
        time_source: "arrival",
        session: false,
        collapsible: false,
    }
}

const AUTO_TRACKED: [Mapped; 4] = [
    auto_tracked("_session.start"),
    auto_tracked("pageView"),
    auto_tracked("add_to_cart"),
    auto_tracked("_session.stop"),
];

/// One record of a stream the forwarder reads, and which record of the app stream it is (the same bytes).
#[derive(Debug)]
struct Source {
    seq: String,
    data: Vec<u8>,
    /// Its arrival, as the mapping hands it to the function (`approximateArrivalTimestamp`, to the ms).
    received_at: String,
    /// Its position on the app stream.
    app_index: usize,
}

/// The records of `stream`, each matched with the app stream's record of the same bytes.
async fn sources(aws: &devtools::LocalAws, stream: &str, app: &[(String, Vec<u8>)]) -> Vec<Source> {
    aws.read_stream(stream)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            let data = r.data.into_inner();
            let app_index = app
                .iter()
                .position(|(_, d)| *d == data)
                .expect("a record of the app stream");
            let secs = r
                .approximate_arrival_timestamp
                .expect("an arrival time")
                .as_secs_f64();
            // As the function reads the mapping's `approximateArrivalTimestamp` (seconds) into milliseconds.
            #[allow(clippy::cast_possible_truncation, reason = "a time of today")]
            let ms = (secs * 1000.0).round() as i64;
            Source {
                seq: r.sequence_number,
                data,
                received_at: bridge_core::envelope::rfc3339_from_millis(ms).expect("a time"),
                app_index,
            }
        })
        .collect()
}

/// The scenario of the app stream's record at `index`, and its position in that scenario.
fn scenario_of(index: usize) -> (&'static str, usize) {
    let mut offset = 0;
    for (scenario, count) in SCENARIOS {
        if index < offset + count {
            return (scenario, index - offset);
        }
        offset += count;
    }
    panic!("no record {index} on the app stream")
}

fn millis(t: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(t.as_str().unwrap_or_else(|| panic!("a time: {t}")))
        .unwrap_or_else(|e| panic!("{t}: {e}"))
        .with_timezone(&chrono::Utc)
}

/// Checks the forwarder's outputs against the mapping and the golden expectations.
struct Expectations {
    schema: jsonschema::Validator,
    /// Per scenario: its `.expected.json` (one list of outputs per record).
    golden: BTreeMap<&'static str, Value>,
    /// Per scenario: its actual values to documentation values.
    replace: BTreeMap<&'static str, BTreeMap<String, &'static str>>,
    identity: String,
    user_sub: String,
    endpoint: String,
}

impl Expectations {
    fn new(run: &AmplifyRun, app: &[(String, Vec<u8>)]) -> Self {
        let mut golden = BTreeMap::new();
        let mut replace = BTreeMap::new();
        let mut offset = 0;
        for (scenario, count) in SCENARIOS {
            golden.insert(
                *scenario,
                e2e::json_file(&format!(
                    "events/app/clients/amplify-js/{scenario}.expected.json"
                )),
            );
            replace.insert(
                *scenario,
                amplify_js::replacements(run, scenario, &app[offset..offset + count]),
            );
            offset += count;
        }
        let body: Value = serde_json::from_slice(&app[2].1).unwrap();
        let endpoint = body["BatchItem"]
            .as_object()
            .and_then(|items| items.keys().next())
            .expect("the PutEvents body's endpoint id")
            .clone();
        Self {
            schema: e2e::validator("app-event.v1.json"),
            golden,
            replace,
            identity: run.identity_id().to_owned(),
            user_sub: run.app.user_sub.clone(),
            endpoint,
        }
    }

    /// One output of `source` (of the stream `arn`): valid, mapped as [`MAPPING`] says, its run-dependent fields
    /// derived from the record as they must be, and, with the run's ids and times documented, the golden output
    /// but for those fields.
    fn check(&self, out: &Value, source: &Source, arn: &str) {
        e2e::assert_valid(&self.schema, out);
        let i = source.app_index;
        let want = MAPPING[i];
        let (scenario, n) = scenario_of(i);
        let golden = &self.golden[scenario][n];
        assert_eq!(golden.as_array().map(Vec::len), Some(1), "{scenario} {n}");
        let golden = &golden[0];
        let what = format!("{scenario} record {n} (app stream {i}) -> {out:#}");

        assert_eq!(out["schema"], "app-event/v1", "{what}");
        assert_eq!(out["event"], want.event, "{what}");
        assert_eq!(out["context"]["input_shape"], want.input_shape, "{what}");
        let user = want.user.then_some(self.user_sub.as_str());
        assert_eq!(out["user_id"].as_str(), user, "{what}");
        let anonymous = match want.anonymous {
            Anonymous::Identity => &self.identity,
            Anonymous::Endpoint => &self.endpoint,
        };
        assert_eq!(out["anonymous_id"], anonymous.as_str(), "{what}");
        assert_eq!(
            out["context"]["anonymous_id_source"], want.anonymous_id_source,
            "{what}"
        );
        assert_eq!(out["clock"]["time_source"], want.time_source, "{what}");
        assert_eq!(out["session"].is_object(), want.session, "{what}");

        // What depends on the run: the lineage, the arrival, and the times derived from it.
        assert_eq!(
            out["source"],
            serde_json::json!({"stream_arn": arn, "shard_id": "shardId-000000000000",
                "sequence_number": source.seq, "sub_sequence": 0}),
            "{what}"
        );
        assert_eq!(out["received_at"], source.received_at.as_str(), "{what}");
        let id = out["event_id"].as_str().unwrap_or_default();
        assert!(
            id.len() == 32 && id.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')),
            "{what}"
        );
        let mut run_dependent = vec!["/source", "/received_at", "/event_id"];
        match want.time_source {
            // No time of its own: the arrival is its time.
            "arrival" => {
                assert_eq!(out["timestamp"], out["received_at"], "{what}");
                run_dependent.push("/timestamp");
            }
            // Our shape's send time corrects the client's clock: every time moves by received_at - sent_at.
            "client_corrected" => {
                let record: Value = serde_json::from_slice(&source.data).unwrap();
                let offset = millis(&out["received_at"]) - millis(&record["sent_at"]);
                assert_eq!(
                    out["clock"]["offset_ms"].as_i64(),
                    Some(offset.num_milliseconds()),
                    "{what}"
                );
                let moved = |t: &Value| bridge_core::envelope::rfc3339(&(millis(t) + offset));
                assert_eq!(out["timestamp"], moved(&record["timestamp"]), "{what}");
                assert_eq!(
                    out["session"]["start"],
                    moved(&record["session"]["start"]),
                    "{what}"
                );
                assert_eq!(
                    out["context"]["session_start"], out["session"]["start"],
                    "{what}"
                );
                run_dependent.extend([
                    "/timestamp",
                    "/clock/offset_ms",
                    "/session/start",
                    "/context/session_start",
                ]);
            }
            _ => {}
        }
        let mut documented = amplify_js::document(out, &self.replace[scenario]);
        for pointer in run_dependent {
            *documented.pointer_mut(pointer).expect(pointer) =
                golden.pointer(pointer).expect(pointer).clone();
        }
        let mut differ = Vec::new();
        differences(&documented, golden, "", &mut differ);
        assert!(
            differ.is_empty(),
            "{scenario} record {n}: the forwarder's output differs from {scenario}.expected.json beyond the \
             run's values (output, documented / expected):\n{}\n{what}",
            differ.join("\n")
        );
    }
}

/// Where `a` and `b` differ: `pointer: a / b` (a missing field shows as `-`).
fn differences(a: &Value, b: &Value, at: &str, out: &mut Vec<String>) {
    if let (Value::Object(x), Value::Object(y)) = (a, b) {
        let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
        for k in keys {
            match (x.get(k), y.get(k)) {
                (Some(p), Some(q)) => differences(p, q, &format!("{at}/{k}"), out),
                (p, q) => out.push(format!(
                    "{at}/{k}: {} / {}",
                    p.map_or("-".to_owned(), Value::to_string),
                    q.map_or("-".to_owned(), Value::to_string)
                )),
            }
        }
    } else if a != b {
        out.push(format!("{at}: {a} / {b}"));
    }
}

/// The outputs of a drain by their source record's sequence number (each record here is one event).
fn by_source(outputs: &[Value]) -> BTreeMap<String, Vec<&Value>> {
    let mut map: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for out in outputs {
        assert_eq!(out["source"]["sub_sequence"], 0, "{out}");
        map.entry(
            out["source"]["sequence_number"]
                .as_str()
                .unwrap()
                .to_owned(),
        )
        .or_default()
        .push(out);
    }
    map
}

/// The forwarder's metrics once it has counted `records_in` records in (its EMF lines are read as they come;
/// bounded wait).
async fn metrics_after(forwarder: &Forwarder, records_in: u64) -> BTreeMap<String, u64> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let metrics = forwarder.metrics();
        let counted = metrics.get(RECORDS_IN).copied().unwrap_or(0);
        if counted >= records_in || std::time::Instant::now() > deadline {
            assert_eq!(counted, records_in, "{metrics:?}");
            return metrics;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn metric(metrics: &BTreeMap<String, u64>, name: &str) -> u64 {
    metrics.get(name).copied().unwrap_or(0)
}

async fn stream_arn(aws: &devtools::LocalAws, stream: &str) -> String {
    aws.kinesis
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await
        .unwrap()
        .stream_description_summary
        .expect("a stream summary")
        .stream_arn
}

/// Issue 21 item 5, the forwarder half: what Amplify really wrote, read by the forwarder's real binary through
/// the local event source mapping with the template's settings.
///
/// - The app stream: one `app-event/v1` per event, valid, mapped as [`MAPPING`] and the golden files say; no
///   dead letter. A redelivery (the stream drained again, by a fresh process) gives the very same records.
/// - The resend stream (every record twice: stored, its call failed, sent again): a repeat of an event with a
///   client id or a time of its own (ours, Pinpoint's shapes) carries the same `event_id` as the first copy,
///   and as the same event on the app stream; with the template's batch size both copies come in one batch and
///   the forwarder sends that id once. Auto-tracking's records carry neither: their id is the record's lineage,
///   so a resent copy is another event (distinct ids): a known limit, not collapsible downstream either.
async fn the_forwarder_binary_maps_every_record_and_collapses_repeats(
    aws: &devtools::LocalAws,
    run: &AmplifyRun,
) {
    let app = amplify_js::stream_records(aws, &run.app.stream).await;
    assert_eq!(app.len(), MAPPING.len());
    let expect = Expectations::new(run, &app);

    // The app stream, and a redelivery of it.
    let arn = stream_arn(aws, &run.app.stream).await;
    let app_sources = sources(aws, &run.app.stream, &app).await;
    let mut forwarder = Forwarder::start(aws, &run.app.stream, None).await;
    let first = forwarder.drain().await;
    assert_eq!(first.given_up, Vec::<Value>::new());
    let outputs = by_source(&first.outputs);
    assert_eq!(
        first.outputs.len(),
        app_sources.len(),
        "one output per event"
    );
    let mut app_ids = Vec::new();
    for source in &app_sources {
        let outs = &outputs[&source.seq];
        assert_eq!(outs.len(), 1, "{source:?}");
        expect.check(outs[0], source, &arn);
        app_ids.push(outs[0]["event_id"].as_str().unwrap().to_owned());
    }
    let distinct: BTreeSet<&String> = app_ids.iter().collect();
    assert_eq!(distinct.len(), app_ids.len(), "every event its own id");
    metrics_after(&forwarder, app.len() as u64).await;
    forwarder.stop().await;
    let again = forwarder.drain().await;
    assert_eq!(again.given_up, Vec::<Value>::new());
    assert_eq!(
        by_source(&again.outputs),
        outputs,
        "a redelivery gives the same records, the same event_ids"
    );
    let metrics = metrics_after(&forwarder, 2 * app.len() as u64).await;
    assert_eq!(
        metric(&metrics, FORWARDED),
        2 * app.len() as u64,
        "{metrics:?}"
    );
    assert_eq!(metric(&metrics, DEAD_LETTERED), 0, "{metrics:?}");
    assert_eq!(forwarder.dead_letters().await, Vec::new());

    // The resend stream, each record in a batch of its own (as when the resend comes after the first copy's
    // batch went): one output per copy.
    let arn = stream_arn(aws, &run.app.resend_stream).await;
    let resend_sources = sources(aws, &run.app.resend_stream, &app).await;
    assert_eq!(resend_sources.len(), 2 * app.len());
    let mut apart = Forwarder::start(aws, &run.app.resend_stream, Some(1)).await;
    let drained = apart.drain().await;
    assert_eq!(drained.given_up, Vec::<Value>::new());
    assert_eq!(drained.invocations.len(), resend_sources.len());
    let outputs = by_source(&drained.outputs);
    let mut copies_of: BTreeMap<usize, Vec<&Value>> = BTreeMap::new();
    let mut id_of: BTreeMap<&str, &str> = BTreeMap::new();
    for source in &resend_sources {
        let outs = &outputs[&source.seq];
        assert_eq!(outs.len(), 1, "{source:?}");
        expect.check(outs[0], source, &arn);
        id_of.insert(&source.seq, outs[0]["event_id"].as_str().unwrap());
        copies_of.entry(source.app_index).or_default().push(outs[0]);
    }
    for (i, copies) in &copies_of {
        let [first, resent] = copies[..] else {
            panic!("record {i}: stored twice, {} outputs", copies.len());
        };
        let id = |out: &Value| out["event_id"].as_str().unwrap().to_owned();
        if MAPPING[*i].collapsible {
            assert_eq!(
                id(first),
                id(resent),
                "record {i}: a resend carries the first copy's event_id"
            );
            assert_eq!(
                id(first),
                app_ids[*i],
                "record {i}: the event's own id, whichever record carries it"
            );
        } else {
            // Known limit: no time and no id of its own, so the record's lineage is the id.
            assert_ne!(
                id(first),
                id(resent),
                "record {i}: an auto-tracked resend cannot be told from a new event"
            );
            assert_ne!(id(first), app_ids[*i], "record {i}");
        }
        if MAPPING[*i].time_source == "client_corrected" {
            // Amplify serialized the data when the app recorded it: the resend carries the same sent_at, so the
            // later copy's clock offset, and its time, grow by how much later it arrived.
            assert_eq!(first["sent_at"], resent["sent_at"], "record {i}");
            assert_eq!(
                millis(&resent["timestamp"]) - millis(&first["timestamp"]),
                millis(&resent["received_at"]) - millis(&first["received_at"]),
                "record {i}"
            );
        }
    }
    let metrics = metrics_after(&apart, resend_sources.len() as u64).await;
    assert_eq!(metric(&metrics, DUPLICATES), 0, "{metrics:?}");
    assert_eq!(metric(&metrics, DEAD_LETTERED), 0, "{metrics:?}");
    assert_eq!(apart.dead_letters().await, Vec::new());

    // With the template's batch size: a batch holding both copies sends a repeated event_id once.
    let mut together = Forwarder::start(aws, &run.app.resend_stream, None).await;
    let drained = together.drain().await;
    assert_eq!(drained.given_up, Vec::<Value>::new());
    let mut expected_sources = BTreeSet::new();
    for batch in &drained.invocations {
        let mut sent = BTreeSet::new();
        for seq in batch {
            if sent.insert(id_of[seq.as_str()]) {
                expected_sources.insert(seq.clone());
            }
        }
    }
    let outputs = by_source(&drained.outputs);
    assert_eq!(
        outputs.keys().cloned().collect::<BTreeSet<_>>(),
        expected_sources,
        "one output per event_id and batch"
    );
    for source in &resend_sources {
        if let Some(outs) = outputs.get(&source.seq) {
            assert_eq!(outs.len(), 1, "{source:?}");
            expect.check(outs[0], source, &arn);
            assert_eq!(outs[0]["event_id"], id_of[source.seq.as_str()]);
        }
    }
    let metrics = metrics_after(&together, resend_sources.len() as u64).await;
    assert_eq!(
        metric(&metrics, DUPLICATES),
        (resend_sources.len() - drained.outputs.len()) as u64,
        "{metrics:?}"
    );
    assert!(
        metric(&metrics, DUPLICATES) > 0,
        "the template's batch holds a record and its resend: {:?}",
        drained.invocations
    );
    assert_eq!(metric(&metrics, DEAD_LETTERED), 0, "{metrics:?}");
    assert_eq!(together.dead_letters().await, Vec::new());
}
