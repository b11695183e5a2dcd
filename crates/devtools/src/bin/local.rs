//! `make local`: the whole pipeline on this machine, left running. Provisions on the emulator what the template
//! declares (streams, tables, the bucket, on-failure queues; `devtools::deployment`), starts each function's real
//! binary behind a local Runtime API, drives the Kinesis-triggered ones from their streams with the event source
//! mapping settings of `infra/template.yaml`, showing each batch as it flows, and serves Lambda's Invoke API for
//! all of them (the trigger forwarder is invoked as Cognito would: `aws lambda invoke`). Ctrl-C stops everything.
//!
//! Run under scripts/with-moto after `cargo build --workspace --bins` (the Makefile does both).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use devtools::LocalAws;
use devtools::deployment::{Deployment, STREAMS, local_name};

fn main() -> ExitCode {
    devtools::run_main("local", run())
}

async fn run() -> Result<(), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let aws = LocalAws::from_env().await.map_err(|e| e.to_string())?;
    let mut stack = Deployment::start(aws, &root).await?;
    let endpoint = stack.aws.endpoint.clone();
    println!("local: the emulator is at {endpoint}");
    for stream in STREAMS {
        println!("  stream {}", local_name(stream));
    }
    println!(
        "  tables {} and {}, bucket {}",
        local_name("DedupTable"),
        local_name("RollupTable"),
        local_name("BridgeBucket")
    );
    for m in &stack.mappings {
        println!("  mapping {}", m.name);
    }
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    println!(
        "put an app event (AWS CLI v2; it flows through app-event-forwarder into active-users):\n  aws \
         --endpoint-url {endpoint} --region us-east-1 kinesis put-record --stream-name {} --partition-key install-1 \
         --cli-binary-format raw-in-base64-out --data '{{\"event_type\":\"_session.start\",\
         \"event_id\":\"e-1\",\"timestamp\":\"{now}\",\"anonymous_id\":\"install-1\",\
         \"context\":{{\"platform\":\"Web\",\"device_id\":\"install-1\"}}}}'",
        local_name("AppEventSourceStream")
    );
    let functions = stack
        .functions()
        .map(|(name, f)| (name.to_owned(), f.clone()))
        .collect();
    let invoke = devtools::runtime_api::serve_invoke_api(functions)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "invoke the trigger forwarder as Cognito would (any function, by name, at {invoke}):\n  aws \
         --endpoint-url {invoke} --region us-east-1 lambda invoke --function-name auth-trigger-forwarder \
         --cli-binary-format raw-in-base64-out --payload file://events/auth/PostAuthentication_Authentication.json \
         /dev/stdout"
    );
    println!("Ctrl-C stops everything.");

    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let mut active: Vec<&str> = Vec::new();
        stack
            .poll(|m, report| {
                for batch in &report.invocations {
                    println!("{}: batch of {}", m.name, batch.len());
                }
                if !report.invocations.is_empty() {
                    println!(
                        "{}: {} records done, {} given up to the on-failure queue",
                        m.name,
                        report.succeeded.len(),
                        report.on_failure.len()
                    );
                    active.push(m.function);
                }
            })
            .await;
        active.dedup();
        for binary in active {
            if let Some(f) = stack.function(binary) {
                let totals: Vec<String> = f
                    .metrics()
                    .into_iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect();
                println!("  {binary} so far: {}", totals.join(", "));
            }
        }
    }
    stack.stop().await;
    println!("local: stopped");
    Ok(())
}
