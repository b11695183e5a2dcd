//! `ckb`, the operator command: what a team runs against its own account, one subcommand each (the active-users
//! report, the dead-letter replay, the user snapshot export, the Pinpoint backfill), with one `--help`, the
//! standard AWS configuration (plus `--profile`, `--region`, `--endpoint-url`) and progress on long runs.
//!
//! - [`report`], [`replay`], [`on_failure`]: the report's figures and chart, the replay of dead letters and of
//!   the batches an on-failure queue describes (libraries the demo and the tests use too);
//! - [`cmd`]: each subcommand's arguments and run;
//! - [`global`]: the global options and the SDK configuration they give;
//! - [`progress`]: the progress line.

pub mod cmd;
pub mod global;
pub mod on_failure;
pub mod progress;
pub mod replay;
pub mod report;

use std::ffi::OsString;
use std::process::ExitCode;

/// The subcommands, with a line each for `ckb --help`.
pub const COMMANDS: &[(&str, &str)] = &[
    (
        "report",
        "the active-users rollups: a table per day and an SVG chart per scope",
    ),
    (
        "replay",
        "put dead letters, or the batches an on-failure queue describes, back onto a stream",
    ),
    (
        "user-snapshot-export",
        "publish one profile snapshot record per user of a pool",
    ),
    (
        "pinpoint-backfill",
        "write a Pinpoint event-stream archive in S3 onto the event streams",
    ),
];

/// The exit status of a command-line mistake (a failed run is 1).
pub const USAGE_ERROR: u8 = 2;

/// `ckb --help`.
pub fn help() -> String {
    let mut out = format!(
        "ckb {}: the cognito-kinesis-bridge operator command\n\n\
         usage: ckb [--profile NAME] [--region REGION] [--endpoint-url URL] <command> [options]\n\
         \x20      ckb <command> --help\n\ncommands:\n",
        env!("CARGO_PKG_VERSION")
    );
    for (name, what) in COMMANDS {
        out.push_str(&format!("  {name:<22} {what}\n"));
    }
    out.push_str(global::HELP);
    out
}

/// Runs `ckb` with `args` (without the program name) and returns its exit status.
pub async fn main(args: Vec<OsString>) -> ExitCode {
    let (global, command, rest) = match global::split(args) {
        Ok(parts) => parts,
        Err(e) => {
            eprintln!("ckb: {e}\n(ckb --help lists the commands and options)");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    if global.version {
        println!("ckb {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let Some(command) = command else {
        if global.help {
            print!("{}", help());
            return ExitCode::SUCCESS;
        }
        eprintln!("ckb: no command given\n\n{}", help());
        return ExitCode::from(USAGE_ERROR);
    };
    let Some(sub) = cmd::Command::named(&command) else {
        let names: Vec<&str> = COMMANDS.iter().map(|(n, _)| *n).collect();
        eprintln!(
            "ckb: unknown command '{command}': the commands are {} (ckb --help)",
            names.join(", ")
        );
        return ExitCode::from(USAGE_ERROR);
    };
    if global.help || rest.iter().any(|a| a == "--help" || a == "-h") {
        print!("{}", sub.help());
        return ExitCode::SUCCESS;
    }
    sub.run(&global, rest).await
}
