//! In-memory implementations of the ports, for the benchmark: they cost nothing, so what is measured is
//! our own code. Tests use the real ports against the emulator instead.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bridge_core::blob::{BlobError, BlobStore};
use bridge_core::dedup::{Advance, DedupError, DedupStore, Mark};
use bridge_core::producer::{EntryOutcome, PutEntry, RecordSink, SinkError};
use bytes::Bytes;

/// A stream that stores every entry.
#[derive(Debug, Default)]
pub struct MemorySink {
    /// Entries received, in order.
    pub entries: Mutex<Vec<PutEntry>>,
}

#[async_trait]
impl RecordSink for MemorySink {
    async fn put_records(&self, entries: &[PutEntry]) -> Result<Vec<EntryOutcome>, SinkError> {
        let mut stored = self.entries.lock().map_err(|e| SinkError(e.to_string()))?;
        stored.extend_from_slice(entries);
        Ok(vec![EntryOutcome::Stored; entries.len()])
    }
}

/// A dedup store in a map, with the same compare-and-swap semantics as DynamoDB's conditional write.
#[derive(Debug, Default)]
pub struct MemoryDedup {
    marks: Mutex<HashMap<String, Mark>>,
}

fn poisoned(operation: &'static str) -> DedupError {
    DedupError {
        operation,
        message: "lock poisoned".into(),
    }
}

#[async_trait]
impl DedupStore for MemoryDedup {
    async fn load(&self, keys: &[String]) -> Result<HashMap<String, Mark>, DedupError> {
        let marks = self.marks.lock().map_err(|_| poisoned("load"))?;
        Ok(keys
            .iter()
            .filter_map(|k| Some((k.clone(), *marks.get(k)?)))
            .collect())
    }

    async fn advance(
        &self,
        key: &str,
        expected: Option<Mark>,
        new: Mark,
    ) -> Result<Advance, DedupError> {
        let mut marks = self.marks.lock().map_err(|_| poisoned("advance"))?;
        let current = marks.get(key).copied();
        if current != expected {
            return Ok(Advance::Conflict(current));
        }
        marks.insert(key.to_owned(), new);
        Ok(Advance::Advanced)
    }
}

/// An object store in a map.
#[derive(Debug, Default)]
pub struct MemoryBlobs {
    /// Objects by (bucket, key).
    pub objects: Mutex<HashMap<(String, String), Bytes>>,
}

#[async_trait]
impl BlobStore for MemoryBlobs {
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        _content_type: &str,
    ) -> Result<(), BlobError> {
        let mut objects = self.objects.lock().map_err(|e| BlobError {
            bucket: bucket.into(),
            key: key.into(),
            message: e.to_string(),
        })?;
        objects.insert((bucket.to_owned(), key.to_owned()), body);
        Ok(())
    }
}
