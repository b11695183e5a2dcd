//! Writes `events/<name>.json` (the Lambda events `cargo lambda invoke --data-file` takes) from the readable
//! sources in `events/src/`, and `events/app-<name>.json` (app analytics records) from `events/app/src/`.
//! `--check` only compares, and fails if a committed event is out of date.

fn render(source: &serde_json::Value) -> Result<String, String> {
    let event = devtools::events::sample_event(source).map_err(|e| e.to_string())?;
    Ok(serde_json::to_string_pretty(&event).map_err(|e| e.to_string())? + "\n")
}

fn main() -> std::process::ExitCode {
    let sync = devtools::events::run_generator("gen-events", "src", "", render);
    let app = devtools::events::run_generator("gen-events", "app/src", "app-", render);
    if sync == std::process::ExitCode::SUCCESS {
        app
    } else {
        sync
    }
}
