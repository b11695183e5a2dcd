//! The sync processor: Cognito Sync stream records on Kinesis in, one `cognito-sync-change/v1` record per
//! change out. Resolves S3Url payloads, drops duplicates and stale replays, never blocks a shard on a bad
//! record. The Lambda binary (`main.rs`) only wires this library to the runtime.

pub mod change;
pub mod config;
pub mod dedup;
pub mod handler;
pub mod payload;
pub mod record;

pub use config::Config;
pub use handler::Processor;
