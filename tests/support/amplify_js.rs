//! The published `aws-amplify` JS package run as an app against moto (`clients/amplify-js/app.mjs`, installed
//! by `make js-client`): what it needs provisioned, how it is run, what it wrote, and how its records become the
//! documented samples in `events/app/clients/amplify-js/`. [`amplify_records`] is the short way for another test
//! to get real Amplify records.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test fixtures fail loudly"
)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use aws_sdk_cognitoidentity::types::CognitoIdentityProvider;
use aws_sdk_cognitoidentityprovider::types::ExplicitAuthFlowsType;
use devtools::LocalAws;
use devtools::emulator::unique_name;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::root;

/// The app's user (a throwaway on moto).
pub const USERNAME: &str = "player-one";
/// Its password (a documentation value that passes the pool's default policy).
pub const PASSWORD: &str = "Documentation-0nly";

/// The scenarios whose records land on the app stream, in the order the app runs them, with how many records
/// each writes. Two more write to streams of their own: `faults`, and `resend` (the records of these three again,
/// each stored twice).
pub const SCENARIOS: &[(&str, usize)] =
    &[("our-shape", 1), ("pinpoint-shape", 2), ("auto-track", 4)];

/// What the documented samples show instead of the identity pool's identity id.
pub const DOC_IDENTITY_ID: &str = "us-east-1:aaaaaaaa-0000-4000-8000-000000000001";
/// What they show instead of the user's sub.
pub const DOC_USER_SUB: &str = "4f3e2d1c-0000-4000-8000-000000000001";

/// How long the app may run (it takes seconds).
const APP_TIMEOUT: Duration = Duration::from_secs(180);

/// What the app needs on moto.
#[derive(Debug, Clone)]
pub struct AmplifyApp {
    /// The stream that scenarios a-c write to.
    pub stream: String,
    /// The stream of the fault scenario.
    pub fault_stream: String,
    /// The stream of the resend scenario (each record stored, its call failed, the record sent again).
    pub resend_stream: String,
    /// The user pool.
    pub user_pool_id: String,
    /// Its app client (no secret; USER_PASSWORD_AUTH allowed).
    pub client_id: String,
    /// The identity pool (guest access allowed, the user pool as its provider).
    pub identity_pool_id: String,
    /// The sub of [`USERNAME`].
    pub user_sub: String,
}

/// One run of the app.
#[derive(Debug)]
pub struct AmplifyRun {
    /// What was provisioned for it.
    pub app: AmplifyApp,
    /// The JSON summary it printed.
    pub summary: Value,
}

impl AmplifyRun {
    /// The identity id Amplify got from the identity pool.
    pub fn identity_id(&self) -> &str {
        self.summary["amplify"]["identity_id"]
            .as_str()
            .expect("identity_id")
    }

    /// The summary of one scenario.
    pub fn scenario(&self, name: &str) -> &Value {
        self.summary["scenarios"]
            .as_array()
            .expect("scenarios")
            .iter()
            .find(|s| s["scenario"] == name)
            .unwrap_or_else(|| panic!("no scenario {name} in the summary"))
    }

    /// Every request the HTTP/2 front received from Amplify's Kinesis client, in order.
    pub fn kinesis_requests(&self) -> &[Value] {
        self.summary["kinesis_requests"]
            .as_array()
            .expect("kinesis_requests")
    }
}

/// `clients/amplify-js`.
pub fn client_dir() -> PathBuf {
    root().join("clients/amplify-js")
}

/// The exact `aws-amplify` version that `package.json` pins, after checking that `make js-client` installed it.
pub fn installed_version() -> String {
    let dir = client_dir();
    let read = |p: PathBuf| -> Value {
        let bytes = std::fs::read(&p).unwrap_or_else(|e| {
            panic!(
                "cannot read {}: {e} (run `make js-client` to install the JS client)",
                p.display()
            )
        });
        serde_json::from_slice(&bytes).unwrap()
    };
    let pinned = read(dir.join("package.json"))["dependencies"]["aws-amplify"]
        .as_str()
        .expect("aws-amplify pinned in package.json")
        .to_owned();
    let installed = read(dir.join("node_modules/aws-amplify/package.json"))["version"]
        .as_str()
        .expect("version")
        .to_owned();
    assert_eq!(
        installed, pinned,
        "node_modules holds aws-amplify {installed}, package.json pins {pinned}: run `make js-client`"
    );
    pinned
}

/// Creates a one-shard stream unless it exists.
async fn ensure_stream(aws: &LocalAws, name: &str) {
    let exists = aws
        .kinesis
        .describe_stream_summary()
        .stream_name(name)
        .send()
        .await
        .is_ok();
    if !exists {
        aws.create_stream(name, 1).await.unwrap();
    }
}

/// Provisions what the app needs: `stream` (unless it exists), a fault stream, a user pool with an app client
/// and a confirmed user, and an identity pool that trusts the user pool.
pub async fn provision(aws: &LocalAws, stream: &str) -> AmplifyApp {
    ensure_stream(aws, stream).await;
    let fault_stream = unique_name("amplify-faults");
    aws.create_stream(&fault_stream, 1).await.unwrap();
    let resend_stream = unique_name("amplify-resend");
    aws.create_stream(&resend_stream, 1).await.unwrap();

    let (idp, user_pool_id) = crate::auth::user_pool(aws).await;
    let client_id = idp
        .create_user_pool_client()
        .user_pool_id(&user_pool_id)
        .client_name("web")
        .explicit_auth_flows(ExplicitAuthFlowsType::AllowUserPasswordAuth)
        .explicit_auth_flows(ExplicitAuthFlowsType::AllowRefreshTokenAuth)
        .send()
        .await
        .unwrap()
        .user_pool_client
        .and_then(|c| c.client_id)
        .expect("client id");
    let user_sub = crate::auth::create_user(&idp, &user_pool_id, USERNAME, &[]).await;
    idp.admin_set_user_password()
        .user_pool_id(&user_pool_id)
        .username(USERNAME)
        .password(PASSWORD)
        .permanent(true)
        .send()
        .await
        .unwrap();

    let region = aws
        .sdk
        .region()
        .map_or("us-east-1".to_owned(), ToString::to_string);
    let identity_pool_id = aws_sdk_cognitoidentity::Client::new(&aws.sdk)
        .create_identity_pool()
        .identity_pool_name(format!("amplify_js_{}", std::process::id()))
        .allow_unauthenticated_identities(true)
        .cognito_identity_providers(
            CognitoIdentityProvider::builder()
                .provider_name(format!("cognito-idp.{region}.amazonaws.com/{user_pool_id}"))
                .client_id(&client_id)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .identity_pool_id;

    AmplifyApp {
        stream: stream.to_owned(),
        fault_stream,
        resend_stream,
        user_pool_id,
        client_id,
        identity_pool_id,
        user_sub,
    }
}

/// Runs `node app.mjs` against the emulator and returns its summary; panics with its stderr when it fails.
pub async fn run_app(aws: &LocalAws, app: &AmplifyApp) -> Value {
    installed_version();
    let region = aws
        .sdk
        .region()
        .map_or("us-east-1".to_owned(), ToString::to_string);
    let child = tokio::process::Command::new("node")
        .arg("app.mjs")
        .current_dir(client_dir())
        .env("AWS_ENDPOINT_URL", &aws.endpoint)
        .env("AWS_REGION", region)
        .env("APP_STREAM", &app.stream)
        .env("APP_FAULT_STREAM", &app.fault_stream)
        .env("APP_RESEND_STREAM", &app.resend_stream)
        .env("USER_POOL_ID", &app.user_pool_id)
        .env("USER_POOL_CLIENT_ID", &app.client_id)
        .env("IDENTITY_POOL_ID", &app.identity_pool_id)
        .env("APP_USERNAME", USERNAME)
        .env("APP_PASSWORD", PASSWORD)
        .env_remove("AWS_ENDPOINT_URL_KINESIS")
        .env_remove("AWS_PROFILE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run `node` (Node.js 20.19 or later on PATH)");
    let out = tokio::time::timeout(APP_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("node app.mjs did not finish in {APP_TIMEOUT:?}"))
        .expect("node app.mjs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "node app.mjs failed ({}):\n{stderr}",
        out.status
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "node app.mjs printed no JSON summary: {e}\nstdout: {}\nstderr: {stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Provisions, runs the app writing to `stream`, and returns the run.
pub async fn run(aws: &LocalAws, stream: &str) -> AmplifyRun {
    let app = provision(aws, stream).await;
    let summary = run_app(aws, &app).await;
    AmplifyRun { app, summary }
}

/// Every record on `stream`, in sequence order: (partition key, data).
pub async fn stream_records(aws: &LocalAws, stream: &str) -> Vec<(String, Vec<u8>)> {
    aws.read_stream(stream)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.partition_key.expect("a partition key"),
                r.data.into_inner(),
            )
        })
        .collect()
}

/// Real Amplify records: runs the app against the emulator writing to `stream` (created unless it exists) and
/// returns what is on the stream afterwards, in order: the scenarios of [`SCENARIOS`] (our input shape, the
/// Pinpoint provider's PutEvents event and body, auto-tracking's session start, page view, click and session
/// stop), each as (partition key, data). The partition key of every record is the identity pool's identity id.
pub async fn amplify_records(aws: &LocalAws, stream: &str) -> Vec<(String, Vec<u8>)> {
    run(aws, stream).await;
    stream_records(aws, stream).await
}

/// What a value at a JSON pointer must look like before it is replaced by a documentation value.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Uuid4,
    IsoMillis,
}

fn check_kind(kind: Kind, value: &str, what: &str) {
    let ok = match kind {
        Kind::Uuid4 => {
            value.len() == 36
                && value.char_indices().all(|(i, c)| match i {
                    8 | 13 | 18 | 23 => c == '-',
                    14 => c == '4',
                    _ => c.is_ascii_hexdigit() && !c.is_ascii_uppercase(),
                })
        }
        Kind::IsoMillis => {
            value.len() == 24
                && chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.3fZ").is_ok()
        }
    };
    assert!(ok, "{what} = {value:?} is not a {kind:?}");
}

/// The values of one scenario that vary per run: (JSON pointer in a record, what it must look like, the
/// documentation value). A pointer segment `*` stands for the only key of an object.
fn varying(scenario: &str) -> Vec<(usize, &'static str, Kind, &'static str)> {
    match scenario {
        "our-shape" => vec![
            (
                0,
                "/event_id",
                Kind::Uuid4,
                "0f8e2c1a-0000-4000-8000-000000000001",
            ),
            (0, "/timestamp", Kind::IsoMillis, "2026-11-14T22:05:28.500Z"),
            (0, "/sent_at", Kind::IsoMillis, "2026-11-14T22:05:30.000Z"),
            (
                0,
                "/session/id",
                Kind::Uuid4,
                "5e551010-0000-4000-8000-000000000001",
            ),
            (
                0,
                "/session/start",
                Kind::IsoMillis,
                "2026-11-14T22:04:00.000Z",
            ),
        ],
        // The Pinpoint provider starts its session with the first event: its start is the event's time.
        "pinpoint-shape" => vec![
            (0, "/Timestamp", Kind::IsoMillis, "2026-11-14T22:06:00.000Z"),
            (
                0,
                "/Session/StartTimestamp",
                Kind::IsoMillis,
                "2026-11-14T22:06:00.000Z",
            ),
            (
                0,
                "/Session/Id",
                Kind::Uuid4,
                "5e551010-0000-4000-8000-000000000002",
            ),
            (
                1,
                "/BatchItem/*",
                Kind::Uuid4,
                "e0d1e2f3-0000-4000-8000-000000000001",
            ),
            (
                1,
                "/BatchItem/*/Events/*",
                Kind::Uuid4,
                "0f8e2c1a-0000-4000-8000-000000000002",
            ),
        ],
        _ => vec![],
    }
}

/// The value (or, for a trailing `*`, the only key) at `pointer` in `doc`.
fn at<'a>(doc: &'a Value, pointer: &str) -> &'a str {
    let mut node = doc;
    let mut last_key = None;
    for segment in pointer.split('/').skip(1) {
        if segment == "*" {
            let map = node.as_object().expect("an object");
            assert_eq!(map.len(), 1, "{pointer}: one key expected in {node}");
            let (k, v) = map.iter().next().expect("a key");
            last_key = Some(k.as_str());
            node = v;
        } else {
            last_key = None;
            node = &node[segment];
        }
    }
    if pointer.ends_with('*') {
        last_key.expect("a key")
    } else {
        node.as_str()
            .unwrap_or_else(|| panic!("{pointer} is not a string in {doc}"))
    }
}

/// What the documentation shows instead of each value of one scenario's records that varies per run: the
/// identity id, the user's sub, and the scenario's times and ids (each checked to look as it should), from the
/// actual value to its documentation value.
pub fn replacements(
    run: &AmplifyRun,
    scenario: &str,
    records: &[(String, Vec<u8>)],
) -> BTreeMap<String, &'static str> {
    let docs: Vec<Value> = records
        .iter()
        .map(|(_, data)| serde_json::from_slice(data).expect("record data is JSON"))
        .collect();
    let mut replace: BTreeMap<String, &'static str> = BTreeMap::from([
        (run.identity_id().to_owned(), DOC_IDENTITY_ID),
        (run.app.user_sub.clone(), DOC_USER_SUB),
    ]);
    for (index, pointer, kind, doc_value) in varying(scenario) {
        let actual = at(&docs[index], pointer);
        check_kind(
            kind,
            actual,
            &format!("{scenario} record {index} {pointer}"),
        );
        if let Some(previous) = replace.insert(actual.to_owned(), doc_value) {
            assert_eq!(
                previous, doc_value,
                "{scenario}: {actual} stands for two documentation values"
            );
        }
    }
    replace
}

/// `value` with every string that is one of `replace`'s actual values replaced by its documentation value.
pub fn document(value: &Value, replace: &BTreeMap<String, &'static str>) -> Value {
    match value {
        Value::String(s) => Value::String(
            replace
                .get(s)
                .map_or_else(|| s.clone(), |doc| (*doc).to_owned()),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| document(v, replace)).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), document(v, replace)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The records of one scenario as documented: each (partition key, data text) with the identity id, the sub and
/// the scenario's times and ids replaced by documentation values ([`replacements`]). The text is Amplify's own
/// bytes otherwise (key order and all), so the samples show exactly what is on the stream.
pub fn documented(
    run: &AmplifyRun,
    scenario: &str,
    records: &[(String, Vec<u8>)],
) -> Vec<(String, String)> {
    let replace = replacements(run, scenario, records);
    records
        .iter()
        .map(|(key, data)| {
            let mut text = String::from_utf8(data.clone()).expect("UTF-8");
            let mut key = key.clone();
            for (actual, doc_value) in &replace {
                text = text.replace(&format!("\"{actual}\""), &format!("\"{doc_value}\""));
                if key == *actual {
                    key = (*doc_value).to_owned();
                }
            }
            (key, text)
        })
        .collect()
}

/// `events/app/clients/amplify-js/<scenario>.json`.
pub fn events_file(scenario: &str) -> PathBuf {
    root().join(format!("events/app/clients/amplify-js/{scenario}.json"))
}

/// The documented records of a scenario's sample file: (partition key, data text exactly as in the file).
pub fn read_events_file(scenario: &str) -> Vec<(String, String)> {
    let path = events_file(scenario);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let file: BTreeMap<String, Box<RawValue>> = serde_json::from_str(&text).unwrap();
    let records: Vec<BTreeMap<String, Box<RawValue>>> =
        serde_json::from_str(file["records"].get()).unwrap();
    records
        .iter()
        .map(|r| {
            (
                serde_json::from_str(r["partitionKey"].get()).unwrap(),
                r["data"].get().to_owned(),
            )
        })
        .collect()
}

/// Writes a scenario's sample file: a description and the documented records, each record's data on one line
/// exactly as Amplify wrote it (but for the documentation values).
pub fn write_events_file(scenario: &str, description: &str, records: &[(String, String)]) {
    let lines: Vec<String> = records
        .iter()
        .map(|(key, data)| {
            format!(
                "    {{\"partitionKey\": {}, \"data\": {data}}}",
                Value::String(key.clone())
            )
        })
        .collect();
    let text = format!(
        "{{\n  \"description\": {},\n  \"records\": [\n{}\n  ]\n}}\n",
        Value::String(description.to_owned()),
        lines.join(",\n")
    );
    let path = events_file(scenario);
    std::fs::create_dir_all(path.parent().expect("parent")).unwrap();
    std::fs::write(&path, text).unwrap();
}

// ---- The app event forwarder's real binary, fed from a stream -------------------------------------------------

/// The template's SAM function of the app event forwarder and its Kinesis event.
pub const FORWARDER_FUNCTION: &str = "AppEventForwarderFunction";
/// Its Kinesis event (the mapping of the app event stream).
pub const FORWARDER_EVENT: &str = "AppEvents";
/// The binary (`cargo build --workspace --bins`).
pub const FORWARDER_BINARY: &str = "app-event-forwarder";
/// How long one invocation may run here (the template gives the function 60 s; a test's batches take ms).
const INVOCATION_TIMEOUT_SECS: u64 = 10;
/// How long one drain may take here: long enough for the mapping's retries of a few slow invocations.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

/// The template's environment of `function`: a variable named in `resources` gets its value there (the names of
/// the resources a test stands up); every other one is a literal or a `!Ref` to a parameter, its default. Any
/// other variable is an error.
fn template_env(
    template: &str,
    function: &str,
    resources: &[(&str, &str)],
) -> Vec<(String, String)> {
    use serde_yaml_ng::Value as Y;
    let t: Y = serde_yaml_ng::from_str(template).expect("infra/template.yaml is YAML");
    let variables = t["Resources"][function]["Properties"]["Environment"]["Variables"]
        .as_mapping()
        .unwrap_or_else(|| panic!("{function} has no environment variables"));
    let scalar = |v: &Y| match v {
        Y::String(s) => Some(s.clone()),
        Y::Number(n) => Some(n.to_string()),
        Y::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    variables
        .iter()
        .map(|(name, value)| {
            let name = name.as_str().expect("a variable name").to_owned();
            let given = resources.iter().find(|(n, _)| *n == name);
            let resolved = given.map(|(_, v)| (*v).to_owned()).or_else(|| match value {
                Y::Tagged(tag) if tag.tag == "!Ref" => tag
                    .value
                    .as_str()
                    .and_then(|p| scalar(&t["Parameters"][p]["Default"])),
                other => scalar(other),
            });
            let value =
                resolved.unwrap_or_else(|| panic!("{function}: cannot resolve {name} = {value:?}"));
            (name, value)
        })
        .collect()
}

/// The app event forwarder's real binary (`target/debug/app-event-forwarder`) behind the local Runtime API, fed
/// by the local event source mapping with the template's `AppEventForwarderFunction` settings (its environment
/// and its `AppEvents` mapping: batch size, bisection, retries, batch item failures; its timeout, capped at
/// 10 s), writing to an output stream of one shard and dead letters to a bucket of its own.
#[derive(Debug)]
pub struct Forwarder {
    aws: LocalAws,
    /// The output stream.
    pub output: String,
    bucket: String,
    function: std::sync::Arc<devtools::runtime_api::LocalFunction>,
    mapping: devtools::esm::LocalMapping,
    /// How many output records the drains so far have read.
    read: usize,
}

/// What one drain of the source stream did.
#[derive(Debug)]
pub struct Drain {
    /// The output records it added, in order.
    pub outputs: Vec<Value>,
    /// The sequence numbers of each invocation's records.
    pub invocations: Vec<Vec<String>>,
    /// The batches given up (sent to the on-failure queue).
    pub given_up: Vec<Value>,
}

impl Forwarder {
    /// Starts the forwarder on `source` (created beforehand), with the template's mapping settings but for
    /// `batch_size`, when given.
    pub async fn start(aws: &LocalAws, source: &str, batch_size: Option<usize>) -> Self {
        let template = std::fs::read_to_string(root().join("infra/template.yaml")).unwrap();
        let output = unique_name("app-events-out");
        aws.create_stream(&output, 1).await.unwrap();
        let bucket = unique_name("app-events-dl");
        aws.create_bucket(&bucket).await.unwrap();
        let mut env = template_env(
            &template,
            FORWARDER_FUNCTION,
            &[
                ("OUTPUT_STREAM_NAME", output.as_str()),
                ("DEAD_LETTER_BUCKET", bucket.as_str()),
            ],
        );
        env.push(("AWS_ENDPOINT_URL".to_owned(), aws.endpoint.clone()));
        let t: serde_yaml_ng::Value = serde_yaml_ng::from_str(&template).unwrap();
        // The template's Timeout, but at most what a test should wait for one invocation.
        let timeout = t["Resources"][FORWARDER_FUNCTION]["Properties"]["Timeout"]
            .as_u64()
            .expect("the forwarder's Timeout")
            .min(INVOCATION_TIMEOUT_SECS);
        let binary = root().join("target/debug").join(FORWARDER_BINARY);
        assert!(
            binary.exists(),
            "{} is missing: run `cargo build --workspace --bins` (make test does)",
            binary.display()
        );
        let function = devtools::runtime_api::LocalFunction::start(
            FORWARDER_BINARY,
            binary,
            env,
            Duration::from_secs(timeout),
        )
        .await
        .unwrap();
        let settings = devtools::esm::MappingSettings::from_template(
            &template,
            FORWARDER_FUNCTION,
            FORWARDER_EVENT,
        )
        .unwrap();
        let settings = devtools::esm::MappingSettings {
            batch_size: batch_size.unwrap_or(settings.batch_size),
            ..settings
        };
        let source_arn = aws
            .kinesis
            .describe_stream_summary()
            .stream_name(source)
            .send()
            .await
            .unwrap()
            .stream_description_summary
            .expect("a stream summary")
            .stream_arn;
        let sqs = aws_sdk_sqs::Client::new(&aws.sdk);
        let queue = sqs
            .create_queue()
            .queue_name(unique_name("app-events-on-failure"))
            .send()
            .await
            .unwrap()
            .queue_url
            .expect("a queue url");
        let mapping = devtools::esm::LocalMapping::new(
            aws.clone(),
            source,
            &source_arn,
            &format!("arn:aws:lambda:us-east-1:123456789012:function:{FORWARDER_BINARY}"),
            settings,
            function.clone(),
        )
        .with_on_failure_queue(sqs, &queue);
        Self {
            aws: aws.clone(),
            output,
            bucket,
            function,
            mapping,
            read: 0,
        }
    }

    /// Delivers the whole source stream to the function, from its start (a second drain redelivers every
    /// record, as Lambda does after a failure or a lost checkpoint), and returns what the drain added to the
    /// output stream.
    pub async fn drain(&mut self) -> Drain {
        let report = tokio::time::timeout(DRAIN_TIMEOUT, self.mapping.drain())
            .await
            .unwrap_or_else(|_| panic!("the forwarder did not drain in {DRAIN_TIMEOUT:?}"))
            .unwrap();
        let all = self.aws.read_stream(&self.output).await.unwrap();
        let outputs: Vec<Value> = all[self.read..]
            .iter()
            .map(|r| serde_json::from_slice(r.data.as_ref()).expect("an output is JSON"))
            .collect();
        self.read = all.len();
        Drain {
            outputs,
            invocations: report.invocations,
            given_up: report.on_failure,
        }
    }

    /// Stops the function's process: the next drain starts a fresh one (a new execution environment).
    pub async fn stop(&self) {
        self.function.stop().await;
    }

    /// The dead letters written so far: (key, body).
    pub async fn dead_letters(&self) -> Vec<(String, Vec<u8>)> {
        self.aws
            .read_objects(&self.bucket, "dead-letter/")
            .await
            .unwrap()
    }

    /// The totals of the function's metrics so far.
    pub fn metrics(&self) -> BTreeMap<String, u64> {
        self.function.metrics()
    }
}
