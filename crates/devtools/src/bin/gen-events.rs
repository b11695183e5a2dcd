//! Writes `events/<name>.json` (the Lambda events `cargo lambda invoke --data-file` takes) from the readable
//! sources in `events/src/`. `--check` only compares, and fails if a committed event is out of date.

fn main() -> std::process::ExitCode {
    devtools::events::run_generator("gen-events", "src", "", |source| {
        let event = devtools::events::sample_event(source).map_err(|e| e.to_string())?;
        Ok(serde_json::to_string_pretty(&event).map_err(|e| e.to_string())? + "\n")
    })
}
