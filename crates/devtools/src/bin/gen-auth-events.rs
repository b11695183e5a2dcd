//! Writes `events/auth-<name>.json` (Kinesis events of CloudWatch Logs subscription records, as the auth log
//! forwarder receives them) from the readable sources `events/auth/src/<name>.json`. `--check` only
//! compares, and fails if a committed event is out of date. (The sources are not in `events/src/`, which
//! `gen-events` reads as Cognito Streams sources.)

fn main() -> std::process::ExitCode {
    devtools::events::run_generator("gen-auth-events", "auth/src", "auth-", |source| {
        let sample = auth_analytics::samples::to_sample_source(source)?;
        let event = devtools::events::sample_event(&sample).map_err(|e| e.to_string())?;
        Ok(serde_json::to_string_pretty(&event).map_err(|e| e.to_string())? + "\n")
    })
}
