//! The Kinesis port of the producer: one PutRecords request, and reading its response entry by entry.

use async_trait::async_trait;
use aws_sdk_kinesis::operation::put_records::PutRecordsOutput;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use bytes::Bytes;

/// One entry of a PutRecords request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutEntry {
    /// The partition key.
    pub partition_key: String,
    /// The record data.
    pub data: Bytes,
}

impl PutEntry {
    /// What the entry counts toward the request and record limits.
    pub fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

/// What Kinesis said of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryOutcome {
    /// Stored, at this shard and sequence number.
    Stored,
    /// Not stored; the entry's error code and message.
    Failed {
        /// For example `ProvisionedThroughputExceededException` or `InternalFailure`.
        code: String,
        /// The service's message.
        message: String,
    },
}

/// A whole request failed (network, throttling of the request, missing stream). Always worth a retry.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("kinesis PutRecords failed: {0}")]
pub struct SinkError(pub String);

/// The Kinesis port.
#[async_trait]
pub trait RecordSink: Send + Sync + std::fmt::Debug {
    /// Sends one PutRecords request; one outcome per entry, in order.
    async fn put_records(&self, entries: &[PutEntry]) -> Result<Vec<EntryOutcome>, SinkError>;
}

/// [`RecordSink`] on a Kinesis stream, named by name or ARN.
#[derive(Debug, Clone)]
pub struct KinesisSink {
    client: aws_sdk_kinesis::Client,
    stream: String,
}

impl KinesisSink {
    /// Puts to `stream`: a stream name, or an ARN (`arn:…`).
    pub fn new(client: aws_sdk_kinesis::Client, stream: impl Into<String>) -> Self {
        Self {
            client,
            stream: stream.into(),
        }
    }
}

#[async_trait]
impl RecordSink for KinesisSink {
    async fn put_records(&self, entries: &[PutEntry]) -> Result<Vec<EntryOutcome>, SinkError> {
        let mut request = self.client.put_records();
        request = if self.stream.starts_with("arn:") {
            request.stream_arn(&self.stream)
        } else {
            request.stream_name(&self.stream)
        };
        for entry in entries {
            let built = PutRecordsRequestEntry::builder()
                .partition_key(&entry.partition_key)
                .data(Blob::new(entry.data.to_vec()))
                .build()
                .map_err(|e| SinkError(e.to_string()))?;
            request = request.records(built);
        }
        let output = request
            .send()
            .await
            .map_err(|e| SinkError(aws_sdk_kinesis::error::DisplayErrorContext(&e).to_string()))?;
        entry_outcomes(&output, entries.len())
    }
}

/// The outcome of each entry of a PutRecords response. A partial failure is an HTTP 200 whose failed entries
/// carry an error code; a response that does not answer every entry is an error.
pub fn entry_outcomes(
    output: &PutRecordsOutput,
    sent: usize,
) -> Result<Vec<EntryOutcome>, SinkError> {
    if output.records.len() != sent {
        return Err(SinkError(format!(
            "response has {} results for {sent} entries",
            output.records.len()
        )));
    }
    Ok(output
        .records
        .iter()
        .map(|r| match r.error_code() {
            Some(code) if !code.is_empty() => EntryOutcome::Failed {
                code: code.to_owned(),
                message: r.error_message().unwrap_or_default().to_owned(),
            },
            _ => EntryOutcome::Stored,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kinesis::types::PutRecordsResultEntry;

    #[test]
    fn entry_outcomes_reads_partial_failures() {
        let output = PutRecordsOutput::builder()
            .failed_record_count(1)
            .records(
                PutRecordsResultEntry::builder()
                    .shard_id("s")
                    .sequence_number("1")
                    .build(),
            )
            .records(
                PutRecordsResultEntry::builder()
                    .error_code("ProvisionedThroughputExceededException")
                    .error_message("Rate exceeded")
                    .build(),
            )
            .build()
            .unwrap();
        let outcomes = entry_outcomes(&output, 2).unwrap();
        assert_eq!(outcomes[0], EntryOutcome::Stored);
        assert_eq!(
            outcomes[1],
            EntryOutcome::Failed {
                code: "ProvisionedThroughputExceededException".into(),
                message: "Rate exceeded".into()
            }
        );
        assert!(entry_outcomes(&output, 3).is_err());
    }
}

/// [`RecordSink`] of a function that produces no records (its outputs are writes of its own, such as rollups):
/// the pipeline never calls it with an entry, and says so if it ever did.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoOutputs;

#[async_trait]
impl RecordSink for NoOutputs {
    async fn put_records(&self, entries: &[PutEntry]) -> Result<Vec<EntryOutcome>, SinkError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        Err(SinkError(format!(
            "this function produces no records, yet {} were given to it",
            entries.len()
        )))
    }
}
