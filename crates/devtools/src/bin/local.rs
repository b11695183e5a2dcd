//! `make local`: the whole pipeline on this machine, left running. Provisions on the emulator what the template
//! declares for the Kinesis-triggered functions (streams, tables, the bucket, on-failure queues), starts each
//! function's real binary behind a local Runtime API, and drives it from its streams with the event source
//! mapping settings of `infra/template.yaml`, showing each batch as it flows. Ctrl-C stops everything.
//!
//! Run under scripts/with-moto after `cargo build --workspace --bins` (the Makefile does both).

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use devtools::LocalAws;
use devtools::esm::{LocalMapping, MappingSettings};
use devtools::runtime_api::LocalFunction;

/// One function: its logical id and binary, its environment (variable -> resource logical id, or a literal with
/// `=`), and its event sources (event name -> stream logical id).
struct Spec {
    logical: &'static str,
    binary: &'static str,
    env: &'static [(&'static str, &'static str)],
    sources: &'static [(&'static str, &'static str)],
    queue: &'static str,
    timeout_s: u64,
}

const STREAMS: &[&str] = &[
    "SourceStream",
    "SyncChangesStream",
    "AuthLogSourceStream",
    "AuthEventsStream",
    "AppEventSourceStream",
    "AppEventsStream",
];

const SPECS: &[Spec] = &[
    Spec {
        logical: "SyncProcessorFunction",
        binary: "sync-processor",
        env: &[
            ("OUTPUT_STREAM_NAME", "SyncChangesStream"),
            ("DEDUP_TABLE_NAME", "DedupTable"),
            ("DEAD_LETTER_BUCKET", "BridgeBucket"),
        ],
        sources: &[("CognitoStream", "SourceStream")],
        queue: "SyncOnFailureQueue",
        timeout_s: 120,
    },
    Spec {
        logical: "AuthLogForwarderFunction",
        binary: "auth-log-forwarder",
        env: &[
            ("AUTH_OUTPUT_STREAM_NAME", "AuthEventsStream"),
            ("DEAD_LETTER_BUCKET", "BridgeBucket"),
        ],
        sources: &[("UserActivityLogs", "AuthLogSourceStream")],
        queue: "AuthLogOnFailureQueue",
        timeout_s: 60,
    },
    Spec {
        logical: "AppEventForwarderFunction",
        binary: "app-event-forwarder",
        env: &[
            ("OUTPUT_STREAM_NAME", "AppEventsStream"),
            ("DEAD_LETTER_BUCKET", "BridgeBucket"),
        ],
        sources: &[("AppEvents", "AppEventSourceStream")],
        queue: "AppEventOnFailureQueue",
        timeout_s: 60,
    },
    Spec {
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
        queue: "ActiveUsersOnFailureQueue",
        timeout_s: 120,
    },
];

/// The function of a mapping's name (`function <- stream`).
fn function_name(mapping: &str) -> &str {
    mapping.split(" <- ").next().unwrap_or(mapping)
}

/// The local name of a resource: its logical id in kebab case.
fn local_name(logical: &str) -> String {
    let mut out = String::new();
    for (i, c) in logical.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn main() -> ExitCode {
    devtools::run_main("local", run())
}

async fn run() -> Result<(), String> {
    let s = |e: &dyn std::fmt::Display| e.to_string();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let template = std::fs::read_to_string(root.join("infra/template.yaml")).map_err(|e| s(&e))?;
    let aws = LocalAws::from_env().await.map_err(|e| s(&e))?;
    let sqs = aws_sdk_sqs::Client::new(&aws.sdk);

    let mut arns = HashMap::new();
    for stream in STREAMS {
        let name = local_name(stream);
        arns.insert(
            *stream,
            aws.create_stream(&name, 1).await.map_err(|e| s(&e))?,
        );
    }
    aws.create_dedup_table(&local_name("DedupTable"))
        .await
        .map_err(|e| s(&e))?;
    aws.create_rollup_table(&local_name("RollupTable"))
        .await
        .map_err(|e| s(&e))?;
    aws.create_bucket(&local_name("BridgeBucket"))
        .await
        .map_err(|e| s(&e))?;

    let mut mappings: Vec<(String, LocalMapping, Arc<LocalFunction>)> = Vec::new();
    let mut functions = Vec::new();
    for spec in SPECS {
        let binary = root.join("target/debug").join(spec.binary);
        if !binary.exists() {
            return Err(format!(
                "{} is missing: run `cargo build --workspace --bins`",
                binary.display()
            ));
        }
        let queue = sqs
            .create_queue()
            .queue_name(local_name(spec.queue))
            .send()
            .await
            .map_err(|e| s(&aws_sdk_sqs::error::DisplayErrorContext(e)))?
            .queue_url
            .unwrap_or_default();
        let mut env: Vec<(String, String)> = spec
            .env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), local_name(v)))
            .collect();
        // Payload URLs presigned by the emulator may be fetched.
        env.push(("S3_URL_ALLOWED_ORIGINS".into(), aws.endpoint.clone()));
        let function = LocalFunction::start(
            spec.binary,
            binary,
            env,
            Duration::from_secs(spec.timeout_s),
        )
        .await
        .map_err(|e| s(&e))?;
        for (event, stream) in spec.sources {
            let settings = MappingSettings::from_template(&template, spec.logical, event)
                .map_err(|e| s(&e))?;
            let mapping = LocalMapping::new(
                aws.clone(),
                &local_name(stream),
                &arns[stream],
                &format!(
                    "arn:aws:lambda:us-east-1:123456789012:function:{}",
                    spec.binary
                ),
                settings,
                function.clone(),
            )
            .with_on_failure_queue(sqs.clone(), &queue);
            mappings.push((
                format!("{} <- {}", spec.binary, local_name(stream)),
                mapping,
                function.clone(),
            ));
        }
        functions.push(function);
    }

    println!("local: the emulator is at {}", aws.endpoint);
    for stream in STREAMS {
        println!("  stream {}", local_name(stream));
    }
    println!(
        "  tables {} and {}, bucket {}",
        local_name("DedupTable"),
        local_name("RollupTable"),
        local_name("BridgeBucket")
    );
    for (name, _, _) in &mappings {
        println!("  mapping {name}");
    }
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    println!(
        "put an app event (AWS CLI v2; it flows through app-event-forwarder into active-users):\n  aws \
         --endpoint-url {} --region us-east-1 kinesis put-record --stream-name {} --partition-key install-1 \
         --cli-binary-format raw-in-base64-out --data '{{\"event_type\":\"_session.start\",\
         \"event_id\":\"e-1\",\"timestamp\":\"{now}\",\"anonymous_id\":\"install-1\",\
         \"context\":{{\"platform\":\"Web\",\"device_id\":\"install-1\"}}}}'",
        aws.endpoint,
        local_name("AppEventSourceStream")
    );
    println!("Ctrl-C stops everything.");

    let mut checkpoints: Vec<HashMap<String, String>> = vec![HashMap::new(); mappings.len()];
    let result = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break Ok(()),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        for ((name, mapping, function), checkpoint) in mappings.iter().zip(checkpoints.iter_mut()) {
            let report = match mapping.drain_from(checkpoint).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("{name}: {e}");
                    continue;
                }
            };
            for batch in &report.invocations {
                println!("{name}: batch of {}", batch.len());
            }
            if !report.invocations.is_empty() {
                println!(
                    "{name}: {} records done, {} given up to the on-failure queue",
                    report.succeeded.len(),
                    report.on_failure.len()
                );
                let totals: Vec<String> = function
                    .metrics()
                    .into_iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect();
                println!("  {} so far: {}", function_name(name), totals.join(", "));
            }
        }
    };
    for f in &functions {
        f.stop().await;
    }
    println!("local: stopped");
    result
}

#[cfg(test)]
mod tests {
    #[test]
    fn local_names_are_kebab_case() {
        assert_eq!(
            super::local_name("AppEventSourceStream"),
            "app-event-source-stream"
        );
    }
}
