//! The subcommands: each one's help text, arguments and run.

pub mod pinpoint_backfill;
pub mod replay;
pub mod report;
pub mod user_snapshot_export;

use std::ffi::OsString;
use std::process::ExitCode;

use crate::USAGE_ERROR;
use crate::global::{Global, sdk_config};

/// One subcommand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `ckb report`.
    Report,
    /// `ckb replay`.
    Replay,
    /// `ckb user-snapshot-export`.
    UserSnapshotExport,
    /// `ckb pinpoint-backfill`.
    PinpointBackfill,
}

impl Command {
    /// The subcommand of this name.
    pub fn named(name: &str) -> Option<Self> {
        match name {
            "report" => Some(Self::Report),
            "replay" => Some(Self::Replay),
            "user-snapshot-export" => Some(Self::UserSnapshotExport),
            "pinpoint-backfill" => Some(Self::PinpointBackfill),
            _ => None,
        }
    }

    /// Its `--help`.
    pub fn help(self) -> &'static str {
        match self {
            Self::Report => report::USAGE,
            Self::Replay => replay::USAGE,
            Self::UserSnapshotExport => user_snapshot_export::USAGE,
            Self::PinpointBackfill => pinpoint_backfill::USAGE,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Report => "report",
            Self::Replay => "replay",
            Self::UserSnapshotExport => "user-snapshot-export",
            Self::PinpointBackfill => "pinpoint-backfill",
        }
    }

    /// Runs it with its own arguments: 0 when it did its work, 1 when it failed, 2 for a command-line mistake.
    pub async fn run(self, global: &Global, args: Vec<OsString>) -> ExitCode {
        let name = self.name();
        let args: Vec<String> = match args.into_iter().map(OsString::into_string).collect() {
            Ok(args) => args,
            Err(bad) => {
                eprintln!("ckb {name}: {bad:?} is not valid text");
                return ExitCode::from(USAGE_ERROR);
            }
        };
        // A mistake on the command line is reported before any AWS configuration is loaded.
        let usage = |e: String| {
            eprintln!("ckb {name}: {e}\n\n{}", self.help());
            ExitCode::from(USAGE_ERROR)
        };
        let failed = |e: String| {
            eprintln!("ckb {name}: {e}");
            ExitCode::FAILURE
        };
        match self {
            Self::Report => match report::parse(args.into_iter()) {
                Ok(a) => report::run(a, &sdk_config(global).await)
                    .await
                    .map_or_else(failed, |()| ExitCode::SUCCESS),
                Err(e) => usage(e),
            },
            Self::Replay => match replay::parse(args.into_iter()) {
                Ok(a) => replay::run(a, &sdk_config(global).await)
                    .await
                    .map_or_else(failed, |()| ExitCode::SUCCESS),
                Err(e) => usage(e),
            },
            Self::UserSnapshotExport => match user_snapshot_export::parse(args) {
                Ok(a) => {
                    bridge_core::telemetry::init_logging();
                    user_snapshot_export::run(a, &sdk_config(global).await).await
                }
                Err(e) => usage(e),
            },
            Self::PinpointBackfill => match pinpoint_backfill::parse(args) {
                Ok(a) => {
                    bridge_core::telemetry::init_logging();
                    pinpoint_backfill::run(a, &sdk_config(global).await).await
                }
                Err(e) => usage(e),
            },
        }
    }
}
