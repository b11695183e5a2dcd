//! The `cognito-sync-change/v1` envelope: one output record per changed key or removed dataset.

use bridge_core::dedup::Mark;
use bridge_core::envelope::{self, Header, SourceRef};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::dedup;
use crate::record::{Op, PayloadType, StreamRecord, SyncRecord};

/// The schema id of the records this function produces.
pub const SCHEMA: &str = "cognito-sync-change/v1";

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ChangeType {
    /// A key was written.
    #[serde(rename = "record.replace")]
    RecordReplace,
    /// A key was deleted.
    #[serde(rename = "record.remove")]
    RecordRemove,
    /// The whole dataset was deleted.
    #[serde(rename = "dataset.remove")]
    DatasetRemove,
}

impl ChangeType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::RecordReplace => "record.replace",
            ChangeType::RecordRemove => "record.remove",
            ChangeType::DatasetRemove => "dataset.remove",
        }
    }
}

/// One normalized change, as it goes on the output stream.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeEvent {
    /// Schema, id, type, times, lineage.
    #[serde(flatten)]
    pub header: Header,
    /// The identity pool.
    pub identity_pool_id: String,
    /// The identity; also the partition key.
    pub identity_id: String,
    /// The dataset.
    pub dataset: String,
    /// The key; `null` for a dataset removal.
    pub key: Option<String>,
    /// The value exactly as Cognito sent it; `null` on removals.
    pub value: Option<String>,
    /// `replace` or `remove`.
    pub op: &'static str,
    /// The sync count of the update that changed the key; `null` for a dataset removal.
    pub record_sync_count: Option<i64>,
    /// The dataset's sync count after the synchronization, when the record carried it.
    pub dataset_sync_count: Option<i64>,
    /// The device's clock at the change (untrusted), RFC 3339.
    pub device_last_modified: Option<String>,
    /// How the change reached us: `Inline` or `S3Url`; `null` for a dataset operation with no payload.
    pub payload_type: Option<&'static str>,
}

/// A change with what dedup needs to know of it.
#[derive(Debug, Clone)]
pub struct Change {
    /// The output record.
    pub event: ChangeEvent,
    /// Its dedup key.
    pub dedup_key: String,
    /// The dataset's dedup key (for the removal mark).
    pub dataset_key: String,
    /// Its version and server time.
    pub mark: Mark,
}

impl Change {
    /// Whether this change removes the whole dataset.
    pub fn is_dataset_removal(&self) -> bool {
        self.event.header.kind == ChangeType::DatasetRemove.as_str()
    }
}

/// The changes of one stream record: the usable ones, and the reasons of those that cannot be used (each
/// named by its position), so that one bad change does not hold back its good siblings.
#[derive(Debug, Default)]
pub struct Changes {
    /// The usable changes, in record order.
    pub changes: Vec<Change>,
    /// Why the others cannot be used.
    pub unusable: Vec<String>,
}

/// Builds the changes of one stream record. `records` is `None` for a dataset operation without changes, which
/// fails whole when it cannot be used.
pub fn changes_of(
    record: &StreamRecord,
    records: Option<&[SyncRecord]>,
    payload_type: Option<PayloadType>,
    source: &SourceRef,
    arrival: Option<DateTime<Utc>>,
) -> Result<Changes, String> {
    let dataset_key = dedup::dataset_key(
        &record.identity_pool_id,
        &record.identity_id,
        &record.dataset_name,
    );
    let received_at = arrival.as_ref().map(envelope::rfc3339);
    let base =
        |kind: ChangeType, at_ms: i64, id_parts: &[&str], sub: usize| -> Result<Header, String> {
            Ok(Header {
                schema: SCHEMA.to_owned(),
                event_id: envelope::event_id(id_parts),
                kind: kind.as_str().to_owned(),
                timestamp: envelope::rfc3339_from_millis(at_ms)
                    .ok_or_else(|| format!("lastModifiedDate {at_ms} is out of range"))?,
                received_at: received_at.clone(),
                source: SourceRef {
                    sub_sequence: u32::try_from(sub).unwrap_or(u32::MAX),
                    ..source.clone()
                },
            })
        };
    let event = |header: Header,
                 key: Option<String>,
                 value: Option<String>,
                 op: Op,
                 sc: Option<i64>,
                 device: Option<i64>| ChangeEvent {
        header,
        identity_pool_id: record.identity_pool_id.clone(),
        identity_id: record.identity_id.clone(),
        dataset: record.dataset_name.clone(),
        key,
        value,
        op: op.as_str(),
        record_sync_count: sc,
        dataset_sync_count: record.sync_count,
        device_last_modified: device.and_then(envelope::rfc3339_from_millis),
        payload_type: payload_type.map(PayloadType::as_str),
    };

    let Some(records) = records else {
        let at = record.last_modified_date.ok_or(
            "dataset remove has no lastModifiedDate, so it cannot be ordered against changes",
        )?;
        let sc = record.sync_count.unwrap_or(0);
        let (sc_s, at_s) = (sc.to_string(), at.to_string());
        let ids = [
            SCHEMA,
            "dataset.remove",
            &record.identity_pool_id,
            &record.identity_id,
            &record.dataset_name,
            &sc_s,
            &at_s,
        ];
        let header = base(ChangeType::DatasetRemove, at, &ids, 0)?;
        return Ok(Changes {
            changes: vec![Change {
                event: event(header, None, None, Op::Remove, None, None),
                dedup_key: dataset_key.clone(),
                dataset_key,
                mark: Mark {
                    version: sc,
                    modified_ms: at,
                },
            }],
            unusable: Vec::new(),
        });
    };

    let built = records.iter().enumerate().map(|(i, r)| {
        let kind = match r.op {
            Op::Replace => ChangeType::RecordReplace,
            Op::Remove => ChangeType::RecordRemove,
        };
        let (sc_s, at_s) = (r.sync_count.to_string(), r.last_modified_date.to_string());
        let ids = [
            SCHEMA,
            kind.as_str(),
            &record.identity_pool_id,
            &record.identity_id,
            &record.dataset_name,
            &r.key,
            &sc_s,
            &at_s,
        ];
        let header =
            base(kind, r.last_modified_date, &ids, i).map_err(|e| format!("change {i}: {e}"))?;
        let value = if r.op == Op::Remove {
            None
        } else {
            r.value.clone()
        };
        Ok(Change {
            event: event(
                header,
                Some(r.key.clone()),
                value,
                r.op,
                Some(r.sync_count),
                r.device_last_modified_date,
            ),
            dedup_key: dedup::record_key(
                &record.identity_pool_id,
                &record.identity_id,
                &record.dataset_name,
                &r.key,
            ),
            dataset_key: dataset_key.clone(),
            mark: Mark {
                version: r.sync_count,
                modified_ms: r.last_modified_date,
            },
        })
    });
    let mut out = Changes::default();
    for change in built {
        match change {
            Ok(c) => out.changes.push(c),
            Err(reason) => out.unusable.push(reason),
        }
    }
    Ok(out)
}
