//! The header every output record carries (schema, deterministic event id, times, lineage), and the pointer
//! record that stands in for an output too large for one Kinesis record.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where an output record came from: enough to find the source record again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRef {
    /// The source stream's ARN (`eventSourceARN`).
    pub stream_arn: String,
    /// The shard, from the record's `eventID`.
    pub shard_id: String,
    /// The source record's sequence number.
    pub sequence_number: String,
    /// The position of this output among those made from one source record (0 for the first).
    pub sub_sequence: u32,
    /// For a KPL-aggregated source record, the position of the user record this output came from (the KCL's
    /// "sub-sequence number"); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_record: Option<u32>,
}

/// The fields every output record starts with (DESIGN.md §3.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// `"<family>/v1"`.
    pub schema: String,
    /// A hash of the natural key: the same source event always gets the same id.
    pub event_id: String,
    /// What happened, in the family's vocabulary.
    #[serde(rename = "type")]
    pub kind: String,
    /// Server time of the event, RFC 3339.
    pub timestamp: String,
    /// When Kinesis received the source record, RFC 3339.
    pub received_at: Option<String>,
    /// Lineage.
    pub source: SourceRef,
}

/// Where the full body of an oversized output record was stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadRef {
    /// The S3 bucket.
    pub bucket: String,
    /// The object key.
    pub key: String,
    /// The size of the full record, in bytes.
    pub bytes: u64,
    /// Hex SHA-256 of the stored object, to check it on read.
    pub sha256: String,
}

/// The record put on the stream instead of one over the Kinesis record limit: the same header, and where
/// the full record is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointerRecord {
    /// The full record's header, unchanged.
    #[serde(flatten)]
    pub header: Header,
    /// Where the full record is.
    pub payload_ref: PayloadRef,
}

/// A deterministic event id: hex of the first 128 bits of SHA-256 over the length-prefixed parts, so that no
/// two different part lists can collide by concatenation.
pub fn event_id(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(&hasher.finalize()[..16])
}

/// Hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Epoch milliseconds as RFC 3339 UTC with milliseconds; `None` when out of chrono's range.
pub fn rfc3339_from_millis(ms: i64) -> Option<String> {
    Utc.timestamp_millis_opt(ms).single().map(|t| rfc3339(&t))
}

/// A UTC time as RFC 3339 with milliseconds and a `Z`.
pub fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_id_is_stable_and_unambiguous() {
        let a = event_id(&["pool", "identity", "ds", "k", "3"]);
        assert_eq!(a, event_id(&["pool", "identity", "ds", "k", "3"]));
        assert_eq!(a.len(), 32);
        assert_ne!(event_id(&["ab", "c"]), event_id(&["a", "bc"]));
        assert_ne!(a, event_id(&["pool", "identity", "ds", "k", "4"]));
    }

    #[test]
    fn times_format_as_rfc3339_millis_utc() {
        assert_eq!(
            rfc3339_from_millis(1_700_000_000_123).as_deref(),
            Some("2023-11-14T22:13:20.123Z")
        );
        assert_eq!(rfc3339_from_millis(i64::MAX), None);
    }

    #[test]
    fn pointer_flattens_the_header() {
        let p = PointerRecord {
            header: Header {
                schema: "x/v1".into(),
                event_id: "e".into(),
                kind: "t".into(),
                timestamp: "2023-11-14T22:13:20.123Z".into(),
                received_at: None,
                source: SourceRef {
                    stream_arn: "arn".into(),
                    shard_id: "s".into(),
                    sequence_number: "1".into(),
                    sub_sequence: 0,
                    user_record: None,
                },
            },
            payload_ref: PayloadRef {
                bucket: "b".into(),
                key: "k".into(),
                bytes: 2,
                sha256: "h".into(),
            },
        };
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["type"], "t");
        assert_eq!(v["payload_ref"]["bucket"], "b");
        assert!(v.get("header").is_none());
    }
}
