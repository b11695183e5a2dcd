//! Reading the Kinesis batch that Lambda hands a function, one record at a time.
//!
//! `aws_lambda_events::KinesisEvent` decodes every record's base64 while deserializing the whole event, so one
//! record with bad base64 would fail the invocation and block the shard. This module takes the batch as loose
//! JSON and decodes each record on its own: a bad record becomes a per-record failure with its reason.

use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize;

use crate::envelope::SourceRef;

/// The Lambda event source gives at most this many records per invocation.
/// Source: docs.aws.amazon.com/lambda/latest/dg/with-kinesis.html (batch size).
pub const MAX_BATCH_RECORDS: usize = 10_000;

/// A Kinesis batch as Lambda delivers it, each record kept as raw JSON until it is decoded.
#[derive(Debug, Deserialize)]
pub struct RawKinesisEvent {
    /// The records, in shard order.
    #[serde(rename = "Records", default)]
    pub records: Vec<serde_json::Value>,
}

/// One source record, decoded.
#[derive(Debug, Clone)]
pub struct SourceRecord {
    /// Where it came from.
    pub source: SourceRef,
    /// The producer's partition key.
    pub partition_key: String,
    /// When Kinesis received it.
    pub arrival: Option<DateTime<Utc>>,
    /// The payload bytes, base64-decoded.
    pub data: Vec<u8>,
}

/// A record that could not be decoded: it still carries what can be said about it, for the dead letter.
#[derive(Debug, Clone)]
pub struct UndecodableRecord {
    /// The sequence number, when the record had one (otherwise it cannot be reported to Lambda).
    pub sequence_number: Option<String>,
    /// Lineage as far as known (empty strings where unknown).
    pub source: SourceRef,
    /// When Kinesis received it, if known.
    pub arrival: Option<DateTime<Utc>>,
    /// The record's JSON as Lambda sent it.
    pub raw: serde_json::Value,
    /// Why it could not be decoded.
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LooseRecord {
    #[serde(rename = "eventID")]
    event_id: Option<String>,
    #[serde(rename = "eventSourceARN")]
    event_source_arn: Option<String>,
    kinesis: LooseKinesis,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LooseKinesis {
    partition_key: Option<String>,
    sequence_number: Option<String>,
    data: Option<String>,
    approximate_arrival_timestamp: Option<f64>,
}

/// The shard id from a Kinesis `eventID` (`shardId-000000000000:<sequence number>`).
pub fn shard_from_event_id(event_id: &str) -> &str {
    event_id
        .split_once(':')
        .map_or(event_id, |(shard, _)| shard)
}

fn arrival_from_seconds(secs: f64) -> Option<DateTime<Utc>> {
    if !secs.is_finite() {
        return None;
    }
    #[allow(clippy::cast_possible_truncation)]
    let ms = (secs * 1000.0).round() as i64;
    Utc.timestamp_millis_opt(ms).single()
}

/// Decodes one record of the batch.
pub fn decode_record(raw: serde_json::Value) -> Result<SourceRecord, Box<UndecodableRecord>> {
    // Best-effort lineage first, so that even a malformed record's dead letter says where it came from.
    let seq = raw
        .pointer("/kinesis/sequenceNumber")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let event_id = raw
        .get("eventID")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let partial = SourceRef {
        stream_arn: raw
            .get("eventSourceARN")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned(),
        shard_id: shard_from_event_id(event_id).to_owned(),
        sequence_number: seq.clone().unwrap_or_default(),
        sub_sequence: 0,
        user_record: None,
    };
    let arrival = raw
        .pointer("/kinesis/approximateArrivalTimestamp")
        .and_then(|v| v.as_f64())
        .and_then(arrival_from_seconds);
    let fail = |reason: String, raw: serde_json::Value| {
        Box::new(UndecodableRecord {
            sequence_number: seq.clone(),
            source: partial.clone(),
            arrival,
            raw,
            reason,
        })
    };

    let loose = match LooseRecord::deserialize(&raw) {
        Ok(l) => l,
        Err(e) => {
            return Err(fail(
                format!("kinesis record has an unexpected shape: {e}"),
                raw,
            ));
        }
    };
    let Some(sequence_number) = loose.kinesis.sequence_number.filter(|s| !s.is_empty()) else {
        return Err(fail("kinesis record has no sequenceNumber".into(), raw));
    };
    let Some(data_b64) = loose.kinesis.data else {
        return Err(fail("kinesis record has no data".into(), raw));
    };
    let data = match base64::engine::general_purpose::STANDARD.decode(data_b64.as_bytes()) {
        Ok(d) => d,
        Err(e) => {
            return Err(fail(
                format!("kinesis record data is not valid base64: {e}"),
                raw,
            ));
        }
    };
    Ok(SourceRecord {
        source: SourceRef {
            stream_arn: loose.event_source_arn.unwrap_or_default(),
            shard_id: shard_from_event_id(loose.event_id.as_deref().unwrap_or_default()).to_owned(),
            sequence_number,
            sub_sequence: 0,
            user_record: None,
        },
        partition_key: loose.kinesis.partition_key.unwrap_or_default(),
        arrival: loose
            .kinesis
            .approximate_arrival_timestamp
            .and_then(arrival_from_seconds),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(data: &str) -> serde_json::Value {
        json!({
            "eventID": "shardId-000000000000:49590338271490256608559692538361571095921575989136588898",
            "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/cognito-sync",
            "kinesis": {
                "partitionKey": "pk",
                "sequenceNumber": "49590338271490256608559692538361571095921575989136588898",
                "data": data,
                "approximateArrivalTimestamp": 1_700_000_000.5
            }
        })
    }

    #[test]
    fn decodes_a_good_record() {
        let r = decode_record(record("aGVsbG8=")).unwrap();
        assert_eq!(r.data, b"hello");
        assert_eq!(r.source.shard_id, "shardId-000000000000");
        assert_eq!(r.partition_key, "pk");
        assert_eq!(r.arrival.unwrap().timestamp_millis(), 1_700_000_000_500);
    }

    #[test]
    fn bad_base64_is_a_specific_per_record_error_with_lineage() {
        let err = decode_record(record("not base64!!")).unwrap_err();
        assert!(
            err.reason
                .starts_with("kinesis record data is not valid base64"),
            "{}",
            err.reason
        );
        assert_eq!(err.source.shard_id, "shardId-000000000000");
        assert!(err.sequence_number.is_some());
    }

    #[test]
    fn missing_fields_are_named() {
        let mut r = record("aGVsbG8=");
        r["kinesis"].as_object_mut().unwrap().remove("data");
        assert_eq!(
            decode_record(r).unwrap_err().reason,
            "kinesis record has no data"
        );
        let err = decode_record(json!({"kinesis": 3})).unwrap_err();
        assert!(
            err.reason
                .starts_with("kinesis record has an unexpected shape"),
            "{}",
            err.reason
        );
        assert!(err.sequence_number.is_none());
    }
}
