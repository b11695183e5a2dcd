//! Cohort membership changes for Amplitude-cohort consumers: a scheduled function reads every actor's history from
//! the active-users rollup table ([`store`]), decides who is in each configured cohort as of the run's day
//! ([`definition`]), and puts only the changes since the last run (users who joined, users who left) on a cohort
//! stream, in the payload of Amplitude's Amazon Kinesis (Cohort) destination ([`payload`]), recording each change
//! once its record is on the stream ([`run`]). See docs/cohorts.md.

pub mod config;
pub mod definition;
pub mod error;
pub mod payload;
pub mod run;
pub mod store;

pub use config::Config;
pub use error::CohortError;
pub use run::Cohorts;
