//! Writes `events/auth-<name>.json` (Kinesis events of CloudWatch Logs subscription records, as the auth log
//! forwarder receives them) from the readable sources `events/auth/src/<name>.json`. `--check` only
//! compares, and fails if a committed event is out of date. (The sources are not in `events/src/`, which
//! `gen-events` reads as Cognito Streams sources.)

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let check = std::env::args().any(|a| a == "--check");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events");
    match run(&root, check) {
        Ok(stale) if stale.is_empty() => ExitCode::SUCCESS,
        Ok(stale) => {
            eprintln!(
                "out of date (run `cargo run -p devtools --bin gen-auth-events`): {}",
                stale.join(", ")
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("gen-auth-events: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The committed text of the sample built from `source` (`events/auth/src/*.json`).
pub fn render(source: &serde_json::Value) -> Result<String, String> {
    let sample = auth_analytics::samples::to_sample_source(source)?;
    let event = devtools::events::sample_event(&sample).map_err(|e| e.to_string())?;
    Ok(serde_json::to_string_pretty(&event).map_err(|e| e.to_string())? + "\n")
}

fn run(root: &Path, check: bool) -> Result<Vec<String>, String> {
    let mut stale = Vec::new();
    let mut sources: Vec<_> = std::fs::read_dir(root.join("auth/src"))
        .map_err(|e| format!("cannot read events/auth/src: {e}"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    sources.sort();
    for path in sources {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let source: serde_json::Value = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            .map_err(|e| format!("{name}: {e}"))?;
        let text = render(&source).map_err(|e| format!("{name}: {e}"))?;
        let name = format!("auth-{name}");
        let out = root.join(&name);
        if std::fs::read_to_string(&out).ok().as_deref() != Some(text.as_str()) {
            stale.push(name.clone());
            if !check {
                std::fs::write(&out, text).map_err(|e| format!("cannot write {name}: {e}"))?;
            }
        }
    }
    Ok(if check { stale } else { Vec::new() })
}
