//! What every cognito-kinesis-bridge function shares: reading config, consuming a Kinesis batch leniently,
//! producing to Kinesis within its limits, the dedup store, output envelopes, dead letters and telemetry.
//!
//! The outside world is reached through small ports ([`producer::RecordSink`], [`blob::BlobStore`],
//! [`dedup::DedupStore`]) whose real implementations use the AWS SDK; tests drive the real ones against the
//! local emulator and use fakes only for faults the emulator cannot produce.

pub mod aws;
pub mod batch;
pub mod blob;
pub mod config;
pub mod dead_letter;
pub mod deadline;
pub mod dedup;
pub mod envelope;
pub mod failure;
pub mod kinesis_event;
pub mod kpl;
pub mod pipeline;
pub mod producer;
pub mod retry;
pub mod telemetry;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;

pub use deadline::Deadline;
