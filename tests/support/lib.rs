//! Fixtures for the end-to-end tests. Shared here: repository paths, JSON and schema helpers, the sample
//! events, record helpers, and a loopback HTTP server for faults the emulator cannot produce (5xx, 403, a
//! server that never answers). Per function: [`sync`] (the sync processor's harness) and [`auth`] (what the
//! auth analytics test files share). [`amplify_js`]: the published aws-amplify JS client run as an app.

#![allow(
    clippy::panic,
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test fixtures fail loudly"
)]

pub mod amplify_js;
pub mod auth;
pub mod sync;

pub use sync::Harness;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The operator command, `target/debug/ckb` (built by `cargo build --workspace --bins`), with
/// `S3_FORCE_PATH_STYLE=true` (moto on an IP address) and the rest of this process's environment.
pub fn ckb_command() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(root().join("target/debug/ckb"));
    command.env("S3_FORCE_PATH_STYLE", "true");
    command
}

/// Runs `command` to its end: (exit code, stdout, stderr), printed for a failing test's output.
pub async fn run_command(mut command: tokio::process::Command) -> (i32, String, String) {
    let out = command
        .output()
        .await
        .expect("the ckb binary (cargo build --workspace --bins)");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    println!("{command:?}\n{stdout}{stderr}");
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// `ckb ARGS...`: (exit code, stdout, stderr).
pub async fn ckb(args: &[&str]) -> (i32, String, String) {
    let mut command = ckb_command();
    command.args(args);
    run_command(command).await
}

/// Every counter item of a rollup table: `"<scope> <period>"` to its counters (a Scan: test-sized tables).
pub async fn rollup_counters(
    store: &active_users::store::RollupStore,
) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, i64>> {
    let mut all = std::collections::BTreeMap::new();
    for (scope, days) in store.scopes().await.unwrap() {
        for day in days {
            let counters = store.day_counters(&scope, day).await.unwrap();
            if !counters.is_empty() {
                all.insert(format!("{scope} {day}"), counters);
            }
        }
    }
    all
}

/// Asserts that the dashboard's data points (`active_users::handler::dashboard_points`, keyed `"<scope> <day>"`)
/// equal the table's figures of every scope and day (`rollup_counters`), counter by counter: the dashboard shows
/// what the table holds, dimension values aside (they stay in the table and the report).
pub fn assert_dashboard_equals_table(
    table: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, i64>>,
    dashboard: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, i64>>,
) {
    let mut differ = Vec::new();
    for key in table
        .keys()
        .chain(dashboard.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let want: std::collections::BTreeMap<String, i64> =
            active_users::handler::figures(&table.get(key).cloned().unwrap_or_default())
                .into_iter()
                .filter(|(_, n)| *n != 0)
                .collect();
        let got = dashboard.get(key).cloned().unwrap_or_default();
        if want != got {
            differ.push(format!("{key}: table {want:?}, dashboard {got:?}"));
        }
    }
    assert!(!table.is_empty());
    assert!(
        differ.is_empty(),
        "the dashboard differs from the table:\n{}",
        differ.join("\n")
    );
}

/// The dashboard's data points of published `lines` (`active_users::handler::dashboard_points`), keyed
/// `"<scope> <day>"` as [`rollup_counters`] keys the table.
pub fn dashboard_by_key(
    lines: &[Value],
) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, i64>> {
    active_users::handler::dashboard_points(lines)
        .into_iter()
        .map(|((scope, day), figures)| (format!("{scope} {day}"), figures))
        .collect()
}

/// Asserts that the dashboard of `lines` shows what the rollup table of `store` holds (see
/// [`assert_dashboard_equals_table`]).
pub async fn assert_dashboard_shows_the_table(
    store: &active_users::store::RollupStore,
    lines: &[Value],
) {
    assert_dashboard_equals_table(&rollup_counters(store).await, &dashboard_by_key(lines));
}

/// A JSON file of the repository.
pub fn json_file(relative: &str) -> Value {
    let path = root().join(relative);
    let bytes =
        std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The validator of one of our schemas, formats checked.
pub fn validator(schema_file: &str) -> jsonschema::Validator {
    let schema = json_file(&format!("events/schema/{schema_file}"));
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{schema_file}: {e}"))
}

/// Panics with every violation when `doc` does not satisfy `validator`.
pub fn assert_valid(validator: &jsonschema::Validator, doc: &Value) {
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "schema violations: {errors:#?}\nin {doc:#}"
    );
}

/// The sample event `events/<name>.json`.
pub fn sample(name: &str) -> Value {
    json_file(&format!("events/{name}.json"))
}

/// Replaces the data of record `index` of `event` with `doc`.
pub fn set_record_data(event: &mut Value, index: usize, doc: &Value) {
    use base64::Engine as _;
    event["Records"][index]["kinesis"]["data"] = Value::String(
        base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(doc).expect("json")),
    );
}

/// The decoded data of record `index` of `event`.
pub fn record_data(event: &Value, index: usize) -> Value {
    use base64::Engine as _;
    let b64 = event["Records"][index]["kinesis"]["data"]
        .as_str()
        .expect("data");
    serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64"),
    )
    .expect("json")
}

/// How a [`LoopbackServer`] answers.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// With this status and a short body.
    Status(u16),
    /// Never: it reads the request and keeps the connection open until the client hangs up (or
    /// [`SILENCE_LIMIT`] passes).
    Silence,
}

/// The longest a silent [`LoopbackServer`] keeps a connection open: far past any timeout under test, so that a
/// client that gives up by itself is told apart from one the server let go.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(600);

/// An HTTP server on 127.0.0.1 that answers every request the same way and counts connections.
#[derive(Debug)]
pub struct LoopbackServer {
    /// `http://127.0.0.1:<port>`.
    pub origin: String,
    connections: Arc<AtomicUsize>,
    /// Silent connections the client closed (its own timeout) and those the server let go at the limit.
    hung_up: Arc<AtomicUsize>,
    let_go: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl LoopbackServer {
    /// Starts a server that answers with `answer`.
    pub async fn start(answer: Answer) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let origin = format!("http://{}", listener.local_addr().expect("addr"));
        let connections = Arc::new(AtomicUsize::new(0));
        let hung_up = Arc::new(AtomicUsize::new(0));
        let let_go = Arc::new(AtomicUsize::new(0));
        let (counter, hung, gone) = (connections.clone(), hung_up.clone(), let_go.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let (hung, gone) = (hung.clone(), gone.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    let _ = socket.read(&mut buf).await;
                    match answer {
                        Answer::Status(code) => {
                            let body = format!("status {code}");
                            let head = format!(
                                "HTTP/1.1 {code} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            );
                            let _ = socket.write_all(head.as_bytes()).await;
                        }
                        Answer::Silence => {
                            let closed = async {
                                while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
                            };
                            tokio::select! {
                                () = closed => hung.fetch_add(1, Ordering::SeqCst),
                                () = tokio::time::sleep(SILENCE_LIMIT) => gone.fetch_add(1, Ordering::SeqCst),
                            };
                        }
                    }
                });
            }
        });
        Self {
            origin,
            connections,
            hung_up,
            let_go,
            task,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// For a silent server, once every connection accepted so far has ended: how many the client closed by
    /// itself. A client without a timeout would instead be let go at [`SILENCE_LIMIT`] (and not counted).
    pub async fn hung_up_by_client(&self) -> usize {
        while self.hung_up.load(Ordering::SeqCst) + self.let_go.load(Ordering::SeqCst)
            < self.connections()
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.hung_up.load(Ordering::SeqCst)
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Aggregates `(partition key, data)` user records into one Kinesis record with the real KPL aggregation library
/// (`aws-kinesis-agg`, pinned in `.venv`, through `scripts/kpl-aggregate`): (its partition key, its bytes).
pub fn kpl_aggregate(users: &[(String, Vec<u8>)]) -> (String, Vec<u8>) {
    use base64::Engine as _;
    use std::io::Write as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let input: Vec<Value> = users
        .iter()
        .map(|(pk, data)| serde_json::json!({"partition_key": pk, "data_base64": b64.encode(data), "explicit_hash_key": null}))
        .collect();
    let mut child = std::process::Command::new(root().join(".venv/bin/python"))
        .arg(root().join("scripts/kpl-aggregate"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run scripts/kpl-aggregate with .venv/bin/python (make tools)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&serde_json::to_vec(&input).expect("json"))
        .expect("write user records");
    let out = child.wait_with_output().expect("kpl-aggregate");
    assert!(out.status.success(), "kpl-aggregate failed");
    let records: Vec<Value> = serde_json::from_slice(&out.stdout).expect("kpl-aggregate output");
    assert_eq!(records.len(), 1, "one aggregate");
    (
        records[0]["partition_key"].as_str().expect("pk").to_owned(),
        b64.decode(records[0]["data_base64"].as_str().expect("data"))
            .expect("base64"),
    )
}

/// Replaces record `index` of `event` with a KPL aggregate of `docs` made by the real library, keyed by `key` of
/// each document.
pub fn set_record_aggregate(event: &mut Value, index: usize, docs: &[Value], key: &str) -> Vec<u8> {
    use base64::Engine as _;
    let users: Vec<(String, Vec<u8>)> = docs
        .iter()
        .map(|d| {
            (
                d[key].as_str().unwrap_or("pk").to_owned(),
                serde_json::to_vec(d).expect("json"),
            )
        })
        .collect();
    let (pk, bytes) = kpl_aggregate(&users);
    event["Records"][index]["kinesis"]["partitionKey"] = Value::String(pk);
    event["Records"][index]["kinesis"]["data"] =
        Value::String(base64::engine::general_purpose::STANDARD.encode(&bytes));
    bytes
}

/// The field names the rollup publishes (a day's counters with `_` for `.`, `handler::figures`), as the
/// dashboard's widgets may read them: `X` stands for the DashboardCurrency parameter (an ISO 4217 code).
pub fn published_names() -> Vec<String> {
    use active_users::activity::{Counter, Definition};
    let mut published: Vec<String> = Vec::new();
    for d in Definition::ALL {
        for c in ["active", "new", "month_active", "retained7"] {
            published.push(format!("{}_{c}", d.as_str()));
        }
    }
    for d in Definition::ALL {
        for c in ["returning", "resurrecting", "dormant"] {
            published.push(format!("{}_{c}", d.as_str()));
        }
        for n in active_users::plan::NEW_USER_RETENTION {
            published.push(format!("{}_new_retained{n}", d.as_str()));
        }
    }
    for origin in ["trigger", "activity_log", "snapshot", "pinpoint", "app"] {
        published.extend(
            Counter::ALL
                .iter()
                .map(|c| format!("{origin}_{}", c.as_str())),
        );
    }
    published.push(active_users::plan::ENGAGED_SESSIONS.replace('.', "_"));
    // The session duration quantiles (handler::figures) and a currency's revenue and units, `X` standing for the
    // DashboardCurrency parameter (an ISO 4217 code: the rollup's attribute names).
    for q in ["p50", "p90"] {
        published.push(format!("app_session_{q}_s"));
    }
    for prefix in [
        active_users::activity::REVENUE_MICROS,
        active_users::activity::UNITS,
    ] {
        published.push(format!("app_{}X", prefix.replace('.', "_")));
    }
    published
}

/// Checks a dashboard body (the `!Sub` text, `${...}` variables in it) as the rollup's dashboard must be: every
/// widget a Logs Insights query over the published lines, each day's line of the highest generation
/// (`dashboard_points`), reading only published fields ([`published_names`]); `label` names it in failures.
/// Returns how many field reads it checked.
pub fn assert_dashboard_reads_only_published(body: &str, label: &str) -> usize {
    let mut plain = String::new();
    let mut rest = body;
    while let Some(i) = rest.find("${") {
        plain.push_str(&rest[..i]);
        plain.push('X');
        rest = &rest[i + rest[i..].find('}').unwrap() + 1..];
    }
    plain.push_str(rest);
    let doc: Value = serde_json::from_str(&plain).unwrap();
    let published = published_names();
    let mut read = 0;
    for widget in doc["widgets"].as_array().unwrap() {
        assert_eq!(widget["type"], "log", "{label}: {widget}");
        let query = widget["properties"]["query"].as_str().unwrap();
        assert!(
            query.contains(&format!(
                "filter ispresent({})",
                active_users::handler::PUBLISHED
            )),
            "{label}: {query}"
        );
        assert!(
            query.contains(&format!(
                "| sort {g} desc | dedup rollup_day",
                g = active_users::handler::GENERATION
            )),
            "{label}: {query}"
        );
        let fields = query
            .split("| fields ")
            .nth(1)
            .and_then(|f| f.split(" | ").next())
            .unwrap();
        for field in fields.split(", ") {
            let name = field.split(" as ").next().unwrap();
            if name == "rollup_day" || name == active_users::handler::GENERATION {
                continue;
            }
            // A computed field reads published ones.
            for word in name.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
                    assert!(
                        published.iter().any(|p| p == word),
                        "{label}: {word} is not published"
                    );
                    read += 1;
                }
            }
        }
    }
    read
}

/// Each function's name in metrics and the metrics it emits, from the code (the SAM and CDK templates' alarms and
/// dashboards may read only these).
pub const EMITTED_METRICS: &[(&str, &[&str])] = &[
    (
        sync_processor::handler::FUNCTION_NAME,
        sync_processor::handler::METRICS,
    ),
    (
        auth_analytics::trigger_handler::FUNCTION_NAME,
        auth_analytics::trigger_handler::METRICS,
    ),
    (
        auth_analytics::log_handler::FUNCTION_NAME,
        auth_analytics::log_handler::METRICS,
    ),
    (
        app_events::handler::FUNCTION_NAME,
        app_events::handler::METRICS,
    ),
    (cohorts::run::FUNCTION_NAME, cohorts::run::METRICS),
];
