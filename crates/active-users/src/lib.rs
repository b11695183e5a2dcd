//! Active users and auth metrics, rebuilt from our event streams: the view Pinpoint's analytics gave Cognito
//! teams until 2026-10-30. Reads `cognito-auth-event/v1` and `app-event/v1` records ([`activity`]), keeps exact
//! daily and calendar-month actives, new users and event counters with conditional markers ([`plan`],
//! [`store`]), and HyperLogLog sketches per day for rolling windows and dimension breakdowns ([`sketch`]).

pub mod activity;
pub mod config;
pub mod handler;
pub mod plan;
pub mod sketch;
pub mod store;

pub use config::Config;
pub use handler::ActiveUsers;
