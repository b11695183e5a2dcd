//! App analytics from Amplify's Kinesis provider (what apps write instead of Pinpoint): untrusted client
//! records in, one checked and normalized `app-event/v1` record per event out, so that Pinpoint's
//! session-based active users, retention and charts can be rebuilt. The Lambda binary (`main.rs`) only wires
//! this library to the runtime.

pub mod config;
pub mod event;
pub mod handler;
pub mod input;

pub use config::Config;
pub use handler::AppEventForwarder;
