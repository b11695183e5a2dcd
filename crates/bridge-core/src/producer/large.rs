//! Outputs over the Kinesis record limit: the body goes to S3 and a pointer record, with the envelope's header
//! and the body's location and hash, goes to the stream in its place.

use std::sync::Arc;

use bytes::Bytes;

use super::limits::MAX_RECORD_BYTES;
use super::{Delivery, ProduceFailure, PutEntry};
use crate::blob::BlobStore;
use crate::envelope::{Header, PayloadRef, PointerRecord, sha256_hex};

/// The key prefix of oversized output records in the large-payload bucket.
pub const LARGE_PAYLOAD_PREFIX: &str = "large-payload/";

/// Where oversized records go.
#[derive(Debug, Clone)]
pub struct LargePayloads {
    /// The store.
    pub store: Arc<dyn BlobStore>,
    /// The bucket.
    pub bucket: String,
}

impl LargePayloads {
    /// Stores `entry`'s body under a key derived from the envelope (so a re-send overwrites it) and returns the
    /// pointer entry that replaces it. A failed store is transient; a pointer over the limit is permanent.
    pub async fn swap(
        &self,
        entry: PutEntry,
        header: Header,
    ) -> Result<(PutEntry, Delivery), ProduceFailure> {
        let key = format!(
            "{LARGE_PAYLOAD_PREFIX}{}/{}.json",
            header.schema.replace('/', "-"),
            header.event_id
        );
        let payload_ref = PayloadRef {
            bucket: self.bucket.clone(),
            key: key.clone(),
            bytes: entry.data.len() as u64,
            sha256: sha256_hex(&entry.data),
        };
        self.store
            .put(&self.bucket, &key, entry.data, "application/json")
            .await
            .map_err(|e| {
                ProduceFailure::Transient(format!("cannot store oversized output record: {e}"))
            })?;
        let pointer = PointerRecord {
            header,
            payload_ref: payload_ref.clone(),
        };
        let data = serde_json::to_vec(&pointer).map_err(|e| {
            ProduceFailure::Permanent(format!("cannot serialize pointer record: {e}"))
        })?;
        let entry = PutEntry {
            partition_key: entry.partition_key,
            data: Bytes::from(data),
        };
        if entry.size() > MAX_RECORD_BYTES {
            return Err(ProduceFailure::Permanent(
                "pointer record is itself over the kinesis record limit".into(),
            ));
        }
        Ok((entry, Delivery::Pointer(payload_ref)))
    }
}
