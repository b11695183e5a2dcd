//! The crate's errors: what can go wrong reading a source event, looking a user up, or exporting a pool.

/// Why a source could not be turned into auth events, or a user could not be looked up.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// The Kinesis record's data is not gzip.
    #[error("subscription record data is not gzip: {0}")]
    NotGzip(String),
    /// The decompressed data is not a CloudWatch Logs subscription document.
    #[error("subscription record is not a cloudwatch logs document: {0}")]
    NotLogData(String),
    /// A log event is not a Cognito user-activity entry.
    #[error("log event {id} is not a cognito user-activity entry: {reason}")]
    NotActivityEntry {
        /// The log event's id.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// cognito-idp refused or failed a call; `throttled` when it said TooManyRequestsException.
    #[error("cognito-idp {op} failed: {message}")]
    Directory {
        /// The operation.
        op: &'static str,
        /// What the SDK said.
        message: String,
        /// Whether the call was throttled (worth a backoff and retry).
        throttled: bool,
    },
}
