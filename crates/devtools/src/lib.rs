//! Local tooling shared by the tests, the demo and the benchmark: clients for the local AWS emulator (with a
//! guard that refuses anything but a loopback endpoint), provisioning, reading streams back, and building the
//! Kinesis events Lambda would hand a function.

pub mod deployment;
pub mod emulator;
pub mod esm;
pub mod events;
mod http;
pub mod legacy_rollup;
pub mod pinpoint_archive;
pub mod proxy;
pub mod runtime_api;
pub mod sizes;
pub mod synthetic;
pub mod warehouse;
pub mod workload;

pub use emulator::LocalAws;
/// The active-users report and the dead-letter replay moved to the operator command (`ckb`, crates/operator); the
/// demo and the tests reach them here as before.
pub use operator::{replay, report};

/// The `main` of a devtools command: runs `run` on a tokio runtime; an error is printed after `name` and makes the
/// exit status a failure.
pub fn run_main<F>(name: &str, run: F) -> std::process::ExitCode
where
    F: std::future::Future<Output = Result<(), String>>,
{
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start a runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The peak resident set size (`VmHWM`, what Lambda reports as "Max Memory Used") of a process, in KiB: `process`
/// is a pid, or `self`. Linux only (`/proc`).
pub fn peak_rss_kib(process: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{process}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
