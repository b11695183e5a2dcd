//! The failure path for records that can never succeed: one JSON object per source record in S3, with the
//! raw data, the reason and the record's lineage. The object key is deterministic (stream, shard, sequence
//! number), so that a redelivered batch overwrites its dead letters instead of doubling them.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::blob::{BlobError, BlobStore};
use crate::envelope::{SourceRef, rfc3339, sha256_hex};

/// The key prefix of dead letters in the bucket.
pub const DEAD_LETTER_PREFIX: &str = "dead-letter/";
/// Dead letters written at once by [`DeadLetterWriter::write_all`].
pub const DEAD_LETTER_CONCURRENCY: usize = 16;
/// Metric: records dead-lettered (counted by the pipeline's dead-letter passes).
pub const METRIC_DEAD_LETTERED: &str = "DeadLettered";

/// One dead letter, as stored.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// The function that gave up on the record.
    pub function: String,
    /// Why, specifically.
    pub reason: String,
    /// Where the record came from.
    pub source: SourceRef,
    /// The producer's partition key, when the record could be read (a replay puts the data back under it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition_key: Option<String>,
    /// When Kinesis received it, RFC 3339.
    pub received_at: Option<String>,
    /// When it was given up on, RFC 3339.
    pub failed_at: String,
    /// The record's data, base64, exactly as received (absent when the data itself could not be read).
    pub data_base64: Option<String>,
    /// The record's JSON as Lambda delivered it, when the record could not be decoded at all.
    pub record: Option<serde_json::Value>,
    /// What the record pointed to, base64, as it was fetched (an S3Url payload): the presigned URL in the data
    /// expires, this copy does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
    /// The payload was over the fetch cap: `payload_base64` holds only its first bytes, up to the cap.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub payload_truncated: bool,
    /// Arrival time, for the object key's date partition.
    #[serde(skip)]
    pub arrival: Option<DateTime<Utc>>,
}

impl DeadLetter {
    /// A dead letter for a record whose data was read.
    pub fn for_data(
        function: &str,
        source: &SourceRef,
        arrival: Option<DateTime<Utc>>,
        data: &[u8],
        reason: String,
    ) -> Self {
        let data_base64 = Some(base64::engine::general_purpose::STANDARD.encode(data));
        Self::new(function, source, arrival, reason, data_base64, None)
    }

    /// A dead letter for a source record: its data when it was read, else its raw JSON as Lambda sent it.
    pub fn for_record(
        function: &str,
        source: &SourceRef,
        arrival: Option<DateTime<Utc>>,
        data: Option<&[u8]>,
        raw: Option<&serde_json::Value>,
        reason: String,
    ) -> Self {
        match data {
            Some(data) => Self::for_data(function, source, arrival, data, reason),
            None => Self::for_raw(
                function,
                source,
                arrival,
                raw.cloned().unwrap_or_default(),
                reason,
            ),
        }
    }

    /// A dead letter for a record that could not be decoded: its raw JSON is kept.
    pub fn for_raw(
        function: &str,
        source: &SourceRef,
        arrival: Option<DateTime<Utc>>,
        raw: serde_json::Value,
        reason: String,
    ) -> Self {
        Self::new(function, source, arrival, reason, None, Some(raw))
    }

    fn new(
        function: &str,
        source: &SourceRef,
        arrival: Option<DateTime<Utc>>,
        reason: String,
        data_base64: Option<String>,
        record: Option<serde_json::Value>,
    ) -> Self {
        Self {
            function: function.to_owned(),
            reason,
            source: source.clone(),
            received_at: arrival.as_ref().map(rfc3339),
            failed_at: rfc3339(&Utc::now()),
            data_base64,
            record,
            payload_base64: None,
            payload_truncated: false,
            partition_key: None,
            arrival,
        }
    }

    /// The same dead letter, naming the record's partition key.
    pub fn with_partition_key(mut self, key: Option<&str>) -> Self {
        self.partition_key = key.filter(|k| !k.is_empty()).map(str::to_owned);
        self
    }

    /// The same dead letter, carrying the payload the record pointed to (`truncated`: only its first bytes).
    pub fn with_payload(mut self, payload: Option<&[u8]>, truncated: bool) -> Self {
        self.payload_base64 = payload.map(|p| base64::engine::general_purpose::STANDARD.encode(p));
        self.payload_truncated = truncated && payload.is_some();
        self
    }

    /// `dead-letter/<function>/dt=<arrival date>/<stream>/<shard>/<sequence>[-u<user record>].json`; a hash of
    /// the content stands in for a sequence number the record did not have.
    pub fn object_key(&self) -> String {
        let date = self.arrival.unwrap_or_else(Utc::now).format("%Y-%m-%d");
        let stream = self
            .source
            .stream_arn
            .rsplit('/')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown-stream");
        let shard = if self.source.shard_id.is_empty() {
            "unknown-shard"
        } else {
            &self.source.shard_id
        };
        let id = if self.source.sequence_number.is_empty() {
            let raw = serde_json::to_vec(&self.record).unwrap_or_default();
            format!("no-sequence-{}", &sha256_hex(&raw)[..32])
        } else {
            self.source.sequence_number.clone()
        };
        // User records of one KPL aggregate share its sequence number: each has a dead letter of its own.
        let id = match self.source.user_record {
            Some(j) => format!("{id}-u{j}"),
            None => id,
        };
        format!(
            "{DEAD_LETTER_PREFIX}{}/dt={date}/{stream}/{shard}/{id}.json",
            self.function
        )
    }
}

/// Writes dead letters to a bucket.
#[derive(Debug, Clone)]
pub struct DeadLetterWriter {
    store: Arc<dyn BlobStore>,
    bucket: String,
}

impl DeadLetterWriter {
    /// Dead letters go to `bucket`.
    pub fn new(store: Arc<dyn BlobStore>, bucket: impl Into<String>) -> Self {
        Self {
            store,
            bucket: bucket.into(),
        }
    }

    /// Stores one dead letter and returns its key. An error means the record must be retried instead.
    pub async fn write(&self, letter: &DeadLetter) -> Result<String, BlobError> {
        let key = letter.object_key();
        let body = serde_json::to_vec(letter).map_err(|e| BlobError {
            bucket: self.bucket.clone(),
            key: key.clone(),
            message: format!("cannot serialize dead letter: {e}"),
        })?;
        self.store
            .put(&self.bucket, &key, Bytes::from(body), "application/json")
            .await?;
        Ok(key)
    }

    /// Writes many dead letters, [`DEAD_LETTER_CONCURRENCY`] at a time; each result comes back with the tag it
    /// was given (for example the record's index in the batch), in no particular order.
    pub async fn write_all<T: Send>(
        &self,
        letters: Vec<(T, DeadLetter)>,
    ) -> Vec<(T, Result<String, BlobError>)> {
        use futures_util::StreamExt as _;
        futures_util::stream::iter(letters)
            .map(|(tag, letter)| async move { (tag, self.write(&letter).await) })
            .buffer_unordered(DEAD_LETTER_CONCURRENCY)
            .collect()
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn source(seq: &str) -> SourceRef {
        SourceRef {
            stream_arn: "arn:aws:kinesis:us-east-1:123456789012:stream/cognito-sync".into(),
            shard_id: "shardId-000000000001".into(),
            sequence_number: seq.into(),
            sub_sequence: 0,
            user_record: None,
        }
    }

    #[test]
    fn key_is_deterministic_and_partitioned_by_arrival_date() {
        let arrival = Utc.timestamp_millis_opt(1_700_000_000_000).single();
        let letter = DeadLetter::for_data(
            "sync-processor",
            &source("495"),
            arrival,
            b"{",
            "bad json".into(),
        );
        assert_eq!(
            letter.object_key(),
            "dead-letter/sync-processor/dt=2023-11-14/cognito-sync/shardId-000000000001/495.json"
        );
        assert_eq!(letter.data_base64.as_deref(), Some("ew=="));
    }

    #[test]
    fn user_records_of_one_aggregate_get_a_dead_letter_each() {
        let user = |j| SourceRef {
            user_record: Some(j),
            ..source("495")
        };
        let key = |j| DeadLetter::for_data("f", &user(j), None, b"{", "bad".into()).object_key();
        assert!(key(0).ends_with("/495-u0.json"), "{}", key(0));
        assert_ne!(key(0), key(1));
    }

    #[test]
    fn a_record_without_sequence_number_gets_a_content_hash() {
        let letter = DeadLetter::for_raw(
            "f",
            &source(""),
            None,
            serde_json::json!({"x": 1}),
            "no seq".into(),
        );
        let key = letter.object_key();
        assert!(key.contains("/no-sequence-"), "{key}");
        assert_eq!(key, letter.object_key());
    }
}
