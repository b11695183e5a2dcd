//! Why a cohort run did not finish.

/// A run's failure. Every one fails the invocation: the scheduled event is retried (EventBridge retries an
/// asynchronous invocation), and a retry of the same event computes the same as-of day.
#[derive(Debug, thiserror::Error)]
pub enum CohortError {
    /// A DynamoDB request failed (after the SDK's own retries).
    #[error("dynamodb {op}: {message}")]
    DynamoDb {
        /// The operation.
        op: &'static str,
        /// The SDK's error, with its context.
        message: String,
    },
    /// A request could not be built.
    #[error("request: {0}")]
    Build(String),
    /// Membership writes stayed unprocessed after their retries.
    #[error("{0}")]
    Unprocessed(String),
    /// Records did not reach the cohort stream; their users' changes were not recorded and go out again next run.
    #[error("{failed} of {total} cohort records were not put ({first})")]
    NotPut {
        /// Records not put.
        failed: usize,
        /// Records of the run.
        total: usize,
        /// The first failure.
        first: String,
    },
    /// The invocation's event says no time.
    #[error("the event has no usable time: {0}")]
    Event(String),
}

impl CohortError {
    /// A DynamoDB SDK error, with its context.
    pub fn dynamodb<E, R>(op: &'static str, e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> Self
    where
        E: std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        Self::DynamoDb {
            op,
            message: aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
        }
    }
}
