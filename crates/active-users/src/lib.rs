//! Active users and auth metrics, rebuilt from our event streams: the view Pinpoint's analytics gave Cognito
//! teams until 2026-10-30. Reads `cognito-auth-event/v1` and `app-event/v1` records ([`activity`]) and keeps,
//! exactly, per scope and UTC day: actives, new, month actives, 7-day retention, rolling 7- and 30-day actives,
//! actives per dimension value, and event counts. Each actor's [`history`] decides what an activity changes
//! ([`plan`]); each lane (a shard) commits its own counters with its position ([`lane`], [`store`]), so that no
//! item is shared between writers and a redelivery counts nothing twice; figures are sums over lanes, published
//! per day from the table ([`handler`]). The table is a port ([`table`]): DynamoDB ([`dynamo`]) or memory.

pub mod activity;
pub mod config;
pub mod dynamo;
pub mod handler;
pub mod history;
pub mod lane;
pub mod plan;
pub mod store;
pub mod table;

pub use config::Config;
pub use handler::ActiveUsers;
