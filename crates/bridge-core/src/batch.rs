//! What a batch reports back to Lambda, and the order rule: once an ordering key (an identity, a user) has a
//! transient failure, its later records are held back for this invocation, so that order holds per key.

use std::collections::HashSet;

use aws_lambda_events::event::streams::KinesisEventResponse;

/// The outcome of each source record, gathered while a batch is processed.
#[derive(Debug, Default)]
pub struct BatchReport {
    retry: Vec<String>,
    retry_seen: HashSet<String>,
    blocked_keys: HashSet<String>,
    whole_batch: bool,
}

impl BatchReport {
    /// An empty report: every record succeeded unless said otherwise.
    pub fn new() -> Self {
        Self::default()
    }

    /// The record must be retried by Lambda, and the ordering key is blocked for the rest of the batch.
    pub fn retry(&mut self, sequence_number: &str, order_key: &str) {
        self.block(order_key);
        self.retry_record(sequence_number);
    }

    /// The record must be retried by Lambda (no ordering key, or the key is already blocked).
    pub fn retry_record(&mut self, sequence_number: &str) {
        // An empty identifier would fail the whole batch (Lambda's rule), so it is never reported.
        if !sequence_number.is_empty() && self.retry_seen.insert(sequence_number.to_owned()) {
            self.retry.push(sequence_number.to_owned());
        }
    }

    /// The whole batch must be retried: a record that must be retried has no sequence number to report it by
    /// (so that it does not vanish). Lambda fails the whole batch on an empty item identifier.
    pub fn retry_whole_batch(&mut self) {
        self.whole_batch = true;
    }

    /// Blocks an ordering key: its later records are held back.
    pub fn block(&mut self, order_key: &str) {
        self.blocked_keys.insert(order_key.to_owned());
    }

    /// Whether the key's records are held back.
    pub fn is_blocked(&self, order_key: &str) -> bool {
        self.blocked_keys.contains(order_key)
    }

    /// How many records Lambda must retry (the whole batch counts as one more).
    pub fn retry_count(&self) -> usize {
        self.retry.len() + usize::from(self.whole_batch)
    }

    /// The sequence numbers to retry, in the order they were reported.
    pub fn retried(&self) -> &[String] {
        &self.retry
    }

    /// The partial batch response. Lambda checkpoints at the lowest listed sequence number.
    pub fn into_response(self) -> KinesisEventResponse {
        let mut response = KinesisEventResponse::default();
        let mut retry = self.retry;
        if self.whole_batch {
            retry.push(String::new());
        }
        response.set_failures(retry);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_blocks_the_key_and_dedups_identifiers() {
        let mut r = BatchReport::new();
        r.retry("2", "alice");
        r.retry_record("2");
        r.retry_record("");
        assert!(r.is_blocked("alice"));
        assert!(!r.is_blocked("bob"));
        let resp = r.into_response();
        assert_eq!(resp.batch_item_failures.len(), 1);
        assert_eq!(
            resp.batch_item_failures[0].item_identifier.as_deref(),
            Some("2")
        );
        let json = serde_json::to_value(&resp).unwrap();
        assert_eq!(json["batchItemFailures"][0]["itemIdentifier"], "2");
    }
}
