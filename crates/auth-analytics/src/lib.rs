//! Auth analytics, the Pinpoint replacement for Cognito user pools: user pool trigger events and
//! user-activity log entries in, one `cognito-auth-event/v1` record per auth event out, partitioned by user
//! sub. The binaries (`auth-trigger-forwarder`, `auth-log-forwarder`) only wire this library to the runtime; the
//! user snapshot export ([`export`]) runs as `ckb user-snapshot-export` (the operator command, crates/operator).

pub mod activity_log;
pub mod config;
pub mod directory;
pub mod error;
pub mod event;
pub mod export;
pub mod log_handler;
pub mod samples;
pub mod sharing;
pub mod trigger;
pub mod trigger_handler;

pub use config::{LogConfig, TriggerConfig};
pub use log_handler::LogForwarder;
pub use trigger_handler::TriggerForwarder;
