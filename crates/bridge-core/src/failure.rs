//! Why a source record did not simply succeed: a closed set of failure classes, each either permanent (the
//! record goes to the dead-letter bucket) or transient (it is reported to Lambda for retry).

/// The class of a record's failure. The class is safe to log; the detail that goes with it may quote data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// The Kinesis record itself could not be read (shape, sequence number, base64).
    UndecodableKinesisRecord,
    /// The data is not a Cognito Sync stream record.
    NotASyncRecord,
    /// A sync record whose fields contradict each other (for example S3Url without a URL).
    InconsistentRecord,
    /// The S3Url is not one this function may fetch.
    S3UrlRefused,
    /// The S3Url payload can never be read (expired, forbidden, over the cap, not a JSON array).
    S3PayloadFailed,
    /// A sync record's change cannot be turned into an output.
    UnusableChange,
    /// Kinesis or S3 refused an output for good.
    OutputRejected,
    /// The data is not a CloudWatch Logs subscription record.
    NotASubscriptionRecord,
    /// Some log entries of the record cannot be used (the good ones were forwarded).
    UnusableEntries,
    /// An app event that fails the input contract (shape, sizes, names, times).
    InvalidAppEvent,
    /// A record on an analytics stream that is neither a `cognito-auth-event/v1` nor an `app-event/v1` record.
    NotAnAnalyticsEvent,
    /// The rollup table refused the record's writes for good (validation, an item over 400 KB, a missing table).
    RollupRefused,
    /// A transient failure that outlasted the retry age limit: the record is dead-lettered with its data
    /// rather than left to the event source, which would drop the data once its own retries run out.
    RetriedTooLong,
    /// A dependency failed or throttled (Kinesis, S3, DynamoDB, cognito-idp, a payload URL).
    Unavailable,
    /// The invocation's deadline came before the record was finished.
    Deadline,
    /// An earlier record of the same ordering key must be retried first.
    HeldBack,
    /// The record was to be dead-lettered, but the dead letter could not be written.
    DeadLetterUnwritten,
}

impl FailureClass {
    /// Whether a later attempt may succeed: transient failures are retried, permanent ones dead-lettered.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::Unavailable | Self::Deadline | Self::HeldBack | Self::DeadLetterUnwritten
        )
    }

    /// The class as logged (snake case).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UndecodableKinesisRecord => "undecodable_kinesis_record",
            Self::NotASyncRecord => "not_a_sync_record",
            Self::InconsistentRecord => "inconsistent_record",
            Self::S3UrlRefused => "s3_url_refused",
            Self::S3PayloadFailed => "s3_payload_failed",
            Self::UnusableChange => "unusable_change",
            Self::OutputRejected => "output_rejected",
            Self::NotASubscriptionRecord => "not_a_subscription_record",
            Self::UnusableEntries => "unusable_entries",
            Self::InvalidAppEvent => "invalid_app_event",
            Self::NotAnAnalyticsEvent => "not_an_analytics_event",
            Self::RollupRefused => "rollup_refused",
            Self::RetriedTooLong => "retried_too_long",
            Self::Unavailable => "unavailable",
            Self::Deadline => "deadline",
            Self::HeldBack => "held_back",
            Self::DeadLetterUnwritten => "dead_letter_unwritten",
        }
    }
}

impl std::fmt::Display for FailureClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record's failure: its class and a specific reason (which may quote data: never logged as is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The class.
    pub class: FailureClass,
    /// The reason, as written into a dead letter.
    pub detail: String,
}

impl Failure {
    /// A failure of `class` for `detail`.
    pub fn new(class: FailureClass, detail: impl ToString) -> Self {
        Self {
            class,
            detail: detail.to_string(),
        }
    }

    /// Whether a later attempt may succeed.
    pub fn is_transient(&self) -> bool {
        self.class.is_transient()
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dependency_time_and_order_failures_are_transient() {
        assert!(FailureClass::Unavailable.is_transient());
        assert!(FailureClass::DeadLetterUnwritten.is_transient());
        assert!(!FailureClass::S3PayloadFailed.is_transient());
        assert!(!Failure::new(FailureClass::NotASyncRecord, "x").is_transient());
        assert_eq!(FailureClass::HeldBack.to_string(), "held_back");
    }
}
