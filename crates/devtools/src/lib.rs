//! Local tooling shared by the tests, the demo and the benchmark: clients for the local AWS emulator (with a
//! guard that refuses anything but a loopback endpoint), provisioning, reading streams back, and building the
//! Kinesis events Lambda would hand a function.

pub mod emulator;
pub mod esm;
pub mod events;
pub mod replay;
pub mod report;
pub mod runtime_api;
pub mod sizes;
pub mod synthetic;

pub use emulator::LocalAws;
