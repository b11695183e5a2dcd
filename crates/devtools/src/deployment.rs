//! The stack of `infra/template.yaml` on the local emulator: its streams, tables, bucket and on-failure queues,
//! every function's real binary behind a local Runtime API, and a local event source mapping per Kinesis event of
//! the template, with that event's settings. `make local` leaves it running; `make demo` drives it to the end.
//!
//! Local resource names are the template's logical ids in kebab case (`SourceStream` -> `source-stream`). The
//! functions' environment below names the same resources the template gives them (`tests/infra_contract.rs` checks
//! the template against each function's required variables; the unit test here checks this list against them).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::LocalAws;
use crate::esm::{DrainReport, LocalMapping, MappingSettings};
use crate::runtime_api::LocalFunction;

/// One function of the template: its logical id and binary, its environment (variable -> resource logical id),
/// its Kinesis events (event name -> stream logical id) and its on-failure queue.
#[derive(Debug)]
pub struct FunctionSpec {
    /// Logical id in the template.
    pub logical: &'static str,
    /// The binary (and local function name).
    pub binary: &'static str,
    /// Variable -> logical id of the resource whose local name it gets.
    pub env: &'static [(&'static str, &'static str)],
    /// Kinesis event name -> stream logical id.
    pub sources: &'static [(&'static str, &'static str)],
    /// The on-failure queue's logical id (none for the trigger).
    pub queue: Option<&'static str>,
    /// The template's timeout.
    pub timeout: Duration,
}

/// Each function binary and the variables its `Config::from_env` requires.
pub const REQUIRED_ENV: &[(&str, &[&str])] = &[
    ("sync-processor", sync_processor::config::REQUIRED_ENV),
    (
        "auth-trigger-forwarder",
        auth_analytics::config::TRIGGER_REQUIRED_ENV,
    ),
    (
        "auth-log-forwarder",
        auth_analytics::config::LOG_REQUIRED_ENV,
    ),
    ("app-event-forwarder", app_events::config::REQUIRED_ENV),
    ("active-users", active_users::config::REQUIRED_ENV),
];

/// Every stream the template creates.
pub const STREAMS: &[&str] = &[
    "SourceStream",
    "SyncChangesStream",
    "AuthLogSourceStream",
    "AuthEventsStream",
    "AppEventSourceStream",
    "AppEventsStream",
];

/// The functions, in pipeline order: a mapping drained later in a round sees what an earlier one forwarded.
pub const FUNCTIONS: &[FunctionSpec] = &[
    FunctionSpec {
        logical: "SyncProcessorFunction",
        binary: "sync-processor",
        env: &[
            ("OUTPUT_STREAM_NAME", "SyncChangesStream"),
            ("DEDUP_TABLE_NAME", "DedupTable"),
            ("DEAD_LETTER_BUCKET", "BridgeBucket"),
        ],
        sources: &[("CognitoStream", "SourceStream")],
        queue: Some("SyncOnFailureQueue"),
        timeout: Duration::from_secs(120),
    },
    FunctionSpec {
        logical: "AuthTriggerForwarderFunction",
        binary: "auth-trigger-forwarder",
        env: &[("AUTH_OUTPUT_STREAM_NAME", "AuthEventsStream")],
        sources: &[],
        queue: None,
        timeout: Duration::from_secs(5),
    },
    FunctionSpec {
        logical: "AuthLogForwarderFunction",
        binary: "auth-log-forwarder",
        env: &[
            ("AUTH_OUTPUT_STREAM_NAME", "AuthEventsStream"),
            ("DEAD_LETTER_BUCKET", "BridgeBucket"),
        ],
        sources: &[("UserActivityLogs", "AuthLogSourceStream")],
        queue: Some("AuthLogOnFailureQueue"),
        timeout: Duration::from_secs(60),
    },
    FunctionSpec {
        logical: "AppEventForwarderFunction",
        binary: "app-event-forwarder",
        env: &[
            ("OUTPUT_STREAM_NAME", "AppEventsStream"),
            ("DEAD_LETTER_BUCKET", "BridgeBucket"),
        ],
        sources: &[("AppEvents", "AppEventSourceStream")],
        queue: Some("AppEventOnFailureQueue"),
        timeout: Duration::from_secs(60),
    },
    FunctionSpec {
        logical: "ActiveUsersFunction",
        binary: "active-users",
        env: &[
            ("ROLLUP_TABLE_NAME", "RollupTable"),
            ("DEAD_LETTER_BUCKET", "BridgeBucket"),
        ],
        sources: &[
            ("AuthEvents", "AuthEventsStream"),
            ("AppEvents", "AppEventsStream"),
        ],
        queue: Some("ActiveUsersOnFailureQueue"),
        timeout: Duration::from_secs(120),
    },
];

/// The local name of a resource: its logical id in kebab case.
pub fn local_name(logical: &str) -> String {
    let mut out = String::new();
    for (i, c) in logical.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Where the workspace builds its debug binaries (`CARGO_TARGET_DIR`, or `target/` at the root).
pub fn binary_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("debug")
}

/// One mapping of the deployment and what it has done so far.
#[derive(Debug)]
pub struct DeployedMapping {
    /// `function <- stream`.
    pub name: String,
    /// The function's binary name.
    pub function: &'static str,
    /// The stream's local name.
    pub stream: String,
    mapping: LocalMapping,
    checkpoints: HashMap<String, String>,
    /// Sequence numbers delivered at least once.
    pub delivered: BTreeSet<String>,
    /// Invocations so far.
    pub invocations: usize,
    /// Record deliveries so far (a redelivered record counts again).
    pub deliveries: usize,
    /// On-failure messages sent.
    pub given_up: usize,
}

/// The template's stack, running locally.
#[derive(Debug)]
pub struct Deployment {
    /// The emulator's clients.
    pub aws: LocalAws,
    /// The stream ARNs, by logical id.
    pub stream_arns: BTreeMap<&'static str, String>,
    /// The on-failure queue URLs, by logical id.
    pub queues: BTreeMap<&'static str, String>,
    /// The mappings, in pipeline order.
    pub mappings: Vec<DeployedMapping>,
    functions: BTreeMap<&'static str, Arc<LocalFunction>>,
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Deployment {
    /// Provisions the template's resources on the emulator, starts every function binary built in
    /// [`binary_dir`] and sets up a mapping per Kinesis event, with the template's settings.
    pub async fn start(aws: LocalAws, root: &Path) -> Result<Self, String> {
        let template = std::fs::read_to_string(root.join("infra/template.yaml"))
            .map_err(|e| format!("infra/template.yaml: {e}"))?;
        let sqs = aws_sdk_sqs::Client::new(&aws.sdk);
        let mut stream_arns = BTreeMap::new();
        for stream in STREAMS {
            let arn = aws
                .create_stream(&local_name(stream), 1)
                .await
                .map_err(text)?;
            stream_arns.insert(*stream, arn);
        }
        aws.create_dedup_table(&local_name("DedupTable"))
            .await
            .map_err(text)?;
        aws.create_rollup_table(&local_name("RollupTable"))
            .await
            .map_err(text)?;
        aws.create_bucket(&local_name("BridgeBucket"))
            .await
            .map_err(text)?;

        let bin = binary_dir(root);
        let (mut queues, mut mappings, mut functions) =
            (BTreeMap::new(), Vec::new(), BTreeMap::new());
        for spec in FUNCTIONS {
            let binary = bin.join(spec.binary);
            if !binary.exists() {
                return Err(format!(
                    "{} is missing: run `cargo build --workspace --bins`",
                    binary.display()
                ));
            }
            let mut env: Vec<(String, String)> = spec
                .env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), local_name(v)))
                .collect();
            // Payload URLs presigned by the emulator may be fetched.
            env.push(("S3_URL_ALLOWED_ORIGINS".into(), aws.endpoint.clone()));
            let function = LocalFunction::start(spec.binary, binary, env, spec.timeout)
                .await
                .map_err(text)?;
            functions.insert(spec.binary, function.clone());
            let Some(queue) = spec.queue else { continue };
            let url = sqs
                .create_queue()
                .queue_name(local_name(queue))
                .send()
                .await
                .map_err(|e| text(aws_sdk_sqs::error::DisplayErrorContext(e)))?
                .queue_url
                .unwrap_or_default();
            queues.insert(queue, url.clone());
            for (event, stream) in spec.sources {
                let settings =
                    MappingSettings::from_template(&template, spec.logical, event).map_err(text)?;
                let arn = stream_arns
                    .get(stream)
                    .ok_or_else(|| format!("{stream} is not among the streams"))?;
                let mapping = LocalMapping::new(
                    aws.clone(),
                    &local_name(stream),
                    arn,
                    &format!(
                        "arn:aws:lambda:us-east-1:123456789012:function:{}",
                        spec.binary
                    ),
                    settings,
                    function.clone(),
                )
                .with_on_failure_queue(sqs.clone(), &url);
                mappings.push(DeployedMapping {
                    name: format!("{} <- {}", spec.binary, local_name(stream)),
                    function: spec.binary,
                    stream: local_name(stream),
                    mapping,
                    checkpoints: HashMap::new(),
                    delivered: BTreeSet::new(),
                    invocations: 0,
                    deliveries: 0,
                    given_up: 0,
                });
            }
        }
        Ok(Self {
            aws,
            stream_arns,
            queues,
            mappings,
            functions,
        })
    }

    /// The running function `binary`.
    pub fn function(&self, binary: &str) -> Option<&Arc<LocalFunction>> {
        self.functions.get(binary)
    }

    /// Every function, by binary name.
    pub fn functions(&self) -> impl Iterator<Item = (&'static str, &Arc<LocalFunction>)> {
        self.functions.iter().map(|(k, v)| (*k, v))
    }

    /// One round: each mapping, in pipeline order, takes what is new on its stream. `show` sees each mapping's
    /// report (also an empty one). Returns the records still waiting for a batching window.
    pub async fn poll(&mut self, mut show: impl FnMut(&DeployedMapping, &DrainReport)) -> usize {
        let mut waiting = 0;
        for m in &mut self.mappings {
            let report = match m.mapping.drain_from(&mut m.checkpoints).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("{}: {e}", m.name);
                    waiting += 1;
                    continue;
                }
            };
            m.invocations += report.invocations.len();
            for batch in &report.invocations {
                m.deliveries += batch.len();
                m.delivered.extend(batch.iter().cloned());
            }
            m.given_up += report.on_failure.len();
            waiting += report.waiting;
            show(m, &report);
        }
        waiting
    }

    /// Rounds until one finds nothing new and nothing waits (chained functions included), or `limit` passes.
    pub async fn settle(
        &mut self,
        limit: Duration,
        mut show: impl FnMut(&DeployedMapping, &DrainReport),
    ) -> Result<(), String> {
        let until = tokio::time::Instant::now() + limit;
        loop {
            let mut busy = false;
            let waiting = self
                .poll(|m, r| {
                    busy |= !r.invocations.is_empty();
                    show(m, r);
                })
                .await;
            if !busy && waiting == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() > until {
                return Err(format!(
                    "the pipeline did not settle within {} s",
                    limit.as_secs()
                ));
            }
            if !busy {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// Stops every function process.
    pub async fn stop(&self) {
        for f in self.functions.values() {
            f.stop().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_names_are_kebab_case() {
        assert_eq!(
            local_name("AppEventSourceStream"),
            "app-event-source-stream"
        );
    }

    #[test]
    fn every_function_gets_its_required_variables_and_reads_known_streams() {
        for (binary, vars) in REQUIRED_ENV {
            let spec = FUNCTIONS.iter().find(|f| f.binary == *binary);
            let Some(spec) = spec else {
                panic!("{binary} is not deployed locally");
            };
            for var in *vars {
                assert!(
                    spec.env.iter().any(|(k, _)| k == var),
                    "{binary}: {var} is not set"
                );
            }
            for (_, stream) in spec.sources {
                assert!(STREAMS.contains(stream), "{binary}: {stream}");
            }
        }
        assert_eq!(FUNCTIONS.len(), REQUIRED_ENV.len());
    }
}
