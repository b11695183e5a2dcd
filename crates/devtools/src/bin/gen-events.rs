//! Writes `events/<name>.json` (the Lambda events `cargo lambda invoke --data-file` takes) from the readable
//! sources in `events/src/`. `--check` only compares, and fails if a committed event is out of date.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let check = std::env::args().any(|a| a == "--check");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events");
    match run(&root, check) {
        Ok(stale) if stale.is_empty() => ExitCode::SUCCESS,
        Ok(stale) => {
            eprintln!("out of date (run `make events`): {}", stale.join(", "));
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("gen-events: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(root: &Path, check: bool) -> Result<Vec<String>, String> {
    let mut stale = Vec::new();
    let mut sources: Vec<_> = std::fs::read_dir(root.join("src"))
        .map_err(|e| format!("cannot read events/src: {e}"))?
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
        let event = devtools::events::sample_event(&source).map_err(|e| format!("{name}: {e}"))?;
        let text = serde_json::to_string_pretty(&event).map_err(|e| e.to_string())? + "\n";
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
