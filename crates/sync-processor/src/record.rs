//! The Cognito Streams record: one synchronization of one dataset of one identity (DESIGN.md §3.1).
//!
//! Decoding is strict about what we need and lenient about what varies in the wild: the dataset field is
//! accepted as `datasetName` (AWS's sample consumer, real records) or `dataSetName` (the docs); times are
//! accepted as epoch milliseconds, as a string of them, or as an RFC 3339 string (AWS's sample reads them as
//! Jackson `Date`s, which take either); unknown fields are ignored.

use serde::{Deserialize, Deserializer};

/// Dataset-level or record-level operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Write or overwrite.
    Replace,
    /// Delete.
    Remove,
}

impl Op {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Replace => "replace",
            Op::Remove => "remove",
        }
    }
}

/// Where the sync records are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum PayloadType {
    /// In `kinesisSyncRecords`.
    Inline,
    /// Behind the presigned URL `kinesisSyncRecordsURL`.
    S3Url,
}

impl PayloadType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadType::Inline => "Inline",
            PayloadType::S3Url => "S3Url",
        }
    }
}

/// One changed key of a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncRecord {
    /// The key.
    pub key: String,
    /// The value; absent on remove.
    #[serde(default)]
    pub value: Option<String>,
    /// The dataset's sync count of the update that wrote this record.
    pub sync_count: i64,
    /// Server time of the change, epoch ms.
    #[serde(deserialize_with = "epoch_ms")]
    pub last_modified_date: i64,
    /// The device's clock at the change, epoch ms; untrusted.
    #[serde(default, deserialize_with = "opt_epoch_ms")]
    pub device_last_modified_date: Option<i64>,
    /// What happened to the key.
    pub op: Op,
}

/// One Kinesis record written by Cognito Streams.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamRecord {
    /// The identity pool, for example `us-east-1:…`.
    pub identity_pool_id: String,
    /// The identity.
    pub identity_id: String,
    /// The dataset.
    #[serde(alias = "dataSetName")]
    pub dataset_name: String,
    /// Dataset-level operation.
    pub operation: Op,
    /// The changes, when inline.
    #[serde(default)]
    pub kinesis_sync_records: Option<Vec<SyncRecord>>,
    /// Server time of the synchronization, epoch ms.
    #[serde(default, deserialize_with = "opt_epoch_ms")]
    pub last_modified_date: Option<i64>,
    /// Presigned URL of the changes, when too large to inline.
    #[serde(default, rename = "kinesisSyncRecordsURL")]
    pub kinesis_sync_records_url: Option<String>,
    /// Where the changes are; absent on records that carry none.
    #[serde(default)]
    pub payload_type: Option<PayloadType>,
    /// The dataset's sync count after this synchronization.
    #[serde(default)]
    pub sync_count: Option<i64>,
}

/// What a stream record asks of us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Changes carried in the record.
    Inline(Vec<SyncRecord>),
    /// Changes to fetch from this URL.
    S3Url(String),
    /// A dataset-level operation with no changes (a dataset removal).
    DatasetOperation,
}

/// A stream record that cannot be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    /// Not JSON, or not the shape of a Cognito Streams record.
    #[error("record is not a cognito streams record: {0}")]
    Shape(String),
    /// The fields contradict each other.
    #[error("record is inconsistent: {0}")]
    Inconsistent(&'static str),
}

impl StreamRecord {
    /// Parses the Kinesis data of one record.
    pub fn parse(data: &[u8]) -> Result<Self, RecordError> {
        serde_json::from_slice(data).map_err(|e| RecordError::Shape(e.to_string()))
    }

    /// Where the changes are, checked against `payloadType`.
    pub fn payload(&self) -> Result<Payload, RecordError> {
        let url = self
            .kinesis_sync_records_url
            .as_deref()
            .filter(|u| !u.is_empty());
        match (self.payload_type, url, &self.kinesis_sync_records) {
            (Some(PayloadType::S3Url), None, _) => Err(RecordError::Inconsistent(
                "payloadType is S3Url but kinesisSyncRecordsURL is missing",
            )),
            (Some(PayloadType::S3Url) | None, Some(url), None) => {
                Ok(Payload::S3Url(url.to_owned()))
            }
            (_, Some(_), Some(_)) => Err(RecordError::Inconsistent(
                "record has both kinesisSyncRecords and kinesisSyncRecordsURL",
            )),
            (Some(PayloadType::Inline), Some(_), None) => Err(RecordError::Inconsistent(
                "payloadType is Inline but only kinesisSyncRecordsURL is set",
            )),
            (_, None, Some(records)) if !records.is_empty() => Ok(Payload::Inline(records.clone())),
            (_, None, _) if self.operation == Op::Remove => Ok(Payload::DatasetOperation),
            // A replace with no changes carries nothing to forward (for example an empty synchronization).
            (_, None, _) => Ok(Payload::Inline(Vec::new())),
        }
    }
}

/// Parses the body behind a `kinesisSyncRecordsURL`: a JSON array of sync records.
pub fn parse_s3_payload<R: std::io::Read>(reader: R) -> Result<Vec<SyncRecord>, serde_json::Error> {
    serde_json::from_reader(reader)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TimeRepr {
    Millis(i64),
    Float(f64),
    Text(String),
}

fn to_ms(t: TimeRepr) -> Result<i64, String> {
    match t {
        TimeRepr::Millis(ms) => Ok(ms),
        #[allow(clippy::cast_possible_truncation)]
        TimeRepr::Float(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
        TimeRepr::Float(f) => Err(format!("time {f} is not whole epoch milliseconds")),
        TimeRepr::Text(s) => s.trim().parse::<i64>().or_else(|_| {
            chrono::DateTime::parse_from_rfc3339(s.trim())
                .map(|t| t.timestamp_millis())
                .map_err(|_| format!("time '{s}' is neither epoch milliseconds nor RFC 3339"))
        }),
    }
}

fn epoch_ms<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    to_ms(TimeRepr::deserialize(d)?).map_err(serde::de::Error::custom)
}

fn opt_epoch_ms<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Option::<TimeRepr>::deserialize(d)?
        .map(to_ms)
        .transpose()
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> serde_json::Value {
        json!({
            "identityPoolId": "us-east-1:11111111-2222-3333-4444-555555555555",
            "identityId": "us-east-1:aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
            "datasetName": "settings",
            "operation": "replace",
            "payloadType": "Inline",
            "syncCount": 3,
            "lastModifiedDate": 1_700_000_000_000_i64,
            "kinesisSyncRecords": [{
                "key": "theme", "value": "dark", "syncCount": 3,
                "lastModifiedDate": 1_700_000_000_000_i64, "deviceLastModifiedDate": "2023-11-14T22:13:19Z", "op": "replace"
            }]
        })
    }

    fn parse(v: &serde_json::Value) -> Result<StreamRecord, RecordError> {
        StreamRecord::parse(&serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn parses_inline_with_either_dataset_spelling() {
        let r = parse(&base()).unwrap();
        assert_eq!(r.dataset_name, "settings");
        let Payload::Inline(records) = r.payload().unwrap() else {
            panic!()
        };
        assert_eq!(records[0].value.as_deref(), Some("dark"));
        assert_eq!(
            records[0].device_last_modified_date,
            Some(1_699_999_999_000)
        );

        let mut doc = base();
        let name = doc.as_object_mut().unwrap().remove("datasetName").unwrap();
        doc["dataSetName"] = name;
        assert_eq!(parse(&doc).unwrap().dataset_name, "settings");
    }

    #[test]
    fn remove_without_value_and_string_times_are_accepted() {
        let mut doc = base();
        doc["kinesisSyncRecords"] = json!([{"key": "theme", "syncCount": 4, "lastModifiedDate": "1700000000001", "op": "remove"}]);
        let Payload::Inline(records) = parse(&doc).unwrap().payload().unwrap() else {
            panic!()
        };
        assert_eq!(
            (
                records[0].op,
                records[0].value.as_deref(),
                records[0].last_modified_date
            ),
            (Op::Remove, None, 1_700_000_000_001)
        );
    }

    #[test]
    fn dataset_remove_carries_no_records() {
        let mut doc = base();
        let o = doc.as_object_mut().unwrap();
        o.remove("kinesisSyncRecords");
        o.remove("payloadType");
        o.insert("operation".into(), json!("remove"));
        assert_eq!(
            parse(&doc).unwrap().payload().unwrap(),
            Payload::DatasetOperation
        );
    }

    #[test]
    fn s3url_needs_its_url_and_not_both() {
        let mut doc = base();
        doc["payloadType"] = json!("S3Url");
        doc.as_object_mut().unwrap().remove("kinesisSyncRecords");
        assert!(
            matches!(parse(&doc).unwrap().payload(), Err(RecordError::Inconsistent(m)) if m.contains("kinesisSyncRecordsURL is missing"))
        );
        doc["kinesisSyncRecordsURL"] = json!("https://bucket.s3.amazonaws.com/k");
        assert_eq!(
            parse(&doc).unwrap().payload().unwrap(),
            Payload::S3Url("https://bucket.s3.amazonaws.com/k".into())
        );
        doc["kinesisSyncRecords"] = base()["kinesisSyncRecords"].clone();
        assert!(parse(&doc).unwrap().payload().is_err());
    }

    #[test]
    fn wrong_shapes_are_specific() {
        let err = StreamRecord::parse(b"{not json").unwrap_err().to_string();
        assert!(
            err.starts_with("record is not a cognito streams record: key must be a string"),
            "{err}"
        );
        let mut doc = base();
        doc["kinesisSyncRecords"][0]["op"] = json!("upsert");
        assert!(
            parse(&doc)
                .unwrap_err()
                .to_string()
                .contains("unknown variant `upsert`")
        );
        doc = base();
        doc.as_object_mut().unwrap().remove("identityId");
        assert!(
            parse(&doc)
                .unwrap_err()
                .to_string()
                .contains("missing field `identityId`")
        );
        doc = base();
        doc["kinesisSyncRecords"][0]["lastModifiedDate"] = json!("yesterday");
        assert!(
            parse(&doc)
                .unwrap_err()
                .to_string()
                .contains("neither epoch milliseconds nor RFC 3339")
        );
    }

    #[test]
    fn s3_payload_is_an_array_of_sync_records() {
        let body = serde_json::to_vec(&base()["kinesisSyncRecords"]).unwrap();
        assert_eq!(parse_s3_payload(body.as_slice()).unwrap().len(), 1);
        assert!(parse_s3_payload(&b"{}"[..]).is_err());
    }
}
