//! Replaying what a Kinesis event source mapping's on-failure destination describes. A batch the mapping gives up
//! on goes to the SQS queue as its position only (`KinesisBatchInfo`: stream ARN, shard, first and last sequence
//! numbers); while its records are within the stream's retention they are read back from the shard
//! (`GetShardIterator` at the first sequence number, `GetRecords` up to the last) and put back on a stream under
//! their own partition keys, one `PutRecord` each, in order. A message is deleted once its whole batch is back;
//! one whose records are gone (past the retention) or cannot be read stays on the queue, listed with why.

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::ShardIteratorType;
use serde_json::Value;

use crate::replay::ReplayError;

/// Messages asked for per ReceiveMessage (SQS's maximum).
/// Source: docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ReceiveMessage.html.
pub const RECEIVE_MAX: i32 = 10;
/// Long polling per ReceiveMessage: an empty answer then means the queue holds nothing visible.
pub const RECEIVE_WAIT_SECONDS: i32 = 2;
/// How long a received message stays hidden: a message left on the queue is not received twice in one run.
pub const VISIBILITY_SECONDS: i32 = 900;
/// Records per GetRecords (Kinesis allows up to 10,000).
pub const GET_RECORDS_LIMIT: i32 = 1_000;

/// One given-up batch's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchInfo {
    /// The source stream's ARN.
    pub stream_arn: String,
    /// The shard.
    pub shard_id: String,
    /// The batch's first sequence number.
    pub start: String,
    /// Its last.
    pub end: String,
}

/// The batch an on-failure message describes, or why it describes none.
pub fn batch_info(body: &str) -> Result<BatchInfo, String> {
    let v: Value =
        serde_json::from_str(body).map_err(|e| format!("the message is not JSON: {e}"))?;
    let info = &v["KinesisBatchInfo"];
    if !info.is_object() {
        return Err(
            "the message has no KinesisBatchInfo (not a Kinesis on-failure message)".into(),
        );
    }
    let field = |name: &str| {
        info[name]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| format!("KinesisBatchInfo has no {name}"))
    };
    Ok(BatchInfo {
        stream_arn: field("streamArn")?,
        shard_id: field("shardId")?,
        start: field("startSequenceNumber")?,
        end: field("endSequenceNumber")?,
    })
}

/// Kinesis sequence numbers are decimal strings of up to 128 bits and more: compared as numbers.
pub fn seq_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// What an on-failure replay did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OnFailureSummary {
    /// Batches put back (their messages deleted).
    pub batches: usize,
    /// Records put back.
    pub records: usize,
    /// Messages left on the queue: (message id, why).
    pub left: Vec<(String, String)>,
}

/// The batch's records, (partition key, data) in order, read back from its shard; `Err` says why they cannot all
/// be (gone past the retention, or the shard answered otherwise).
async fn read_batch(
    kinesis: &aws_sdk_kinesis::Client,
    b: &BatchInfo,
) -> Result<Vec<(String, Blob)>, String> {
    let iterator = kinesis
        .get_shard_iterator()
        .stream_arn(&b.stream_arn)
        .shard_id(&b.shard_id)
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .starting_sequence_number(&b.start)
        .send()
        .await
        .map_err(|e| {
            format!(
                "GetShardIterator at {}: {}",
                b.start,
                aws_sdk_kinesis::error::DisplayErrorContext(&e)
            )
        })?
        .shard_iterator
        .ok_or("GetShardIterator answered no iterator")?;
    let mut iterator = Some(iterator);
    let mut out = Vec::new();
    while let Some(it) = iterator.take() {
        let page = kinesis
            .get_records()
            .shard_iterator(it)
            .stream_arn(&b.stream_arn)
            .limit(GET_RECORDS_LIMIT)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "GetRecords: {}",
                    aws_sdk_kinesis::error::DisplayErrorContext(&e)
                )
            })?;
        for r in page.records() {
            let seq = r.sequence_number();
            if out.is_empty() && seq != b.start {
                return Err(format!(
                    "the batch's first record {} is gone (past the stream's retention); the shard starts at {seq}",
                    b.start
                ));
            }
            if seq_cmp(seq, &b.end).is_gt() {
                return Ok(out);
            }
            out.push((
                r.partition_key().unwrap_or_default().to_owned(),
                r.data().clone(),
            ));
            if seq == b.end {
                return Ok(out);
            }
        }
        // Caught up with the shard without reaching the batch's end: nothing more will come.
        if page.records().is_empty() && page.millis_behind_latest() == Some(0) {
            break;
        }
        iterator = page.next_shard_iterator().map(str::to_owned);
    }
    Err(if out.is_empty() {
        "none of the batch's records are in the stream any more (past its retention)".to_owned()
    } else {
        format!(
            "the shard ended after {} of the batch's records, before its last, {}",
            out.len(),
            b.end
        )
    })
}

/// Puts back every batch the on-failure messages of `queue_url` describe, onto `stream` (a name or an ARN), or
/// each onto its own source stream when `stream` is `None`; calls `progress(messages seen, summary so far)` after
/// each message. Stops at the first failed PutRecord (what was put stays put: the functions drop repeats).
pub async fn replay_on_failure(
    sqs: &aws_sdk_sqs::Client,
    kinesis: &aws_sdk_kinesis::Client,
    queue_url: &str,
    stream: Option<&str>,
    mut progress: impl FnMut(usize, &OnFailureSummary),
) -> Result<OnFailureSummary, ReplayError> {
    let mut summary = OnFailureSummary::default();
    let mut seen = 0;
    loop {
        let received = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(RECEIVE_MAX)
            .wait_time_seconds(RECEIVE_WAIT_SECONDS)
            .visibility_timeout(VISIBILITY_SECONDS)
            .send()
            .await
            .map_err(|e| ReplayError {
                op: "ReceiveMessage",
                message: aws_sdk_sqs::error::DisplayErrorContext(&e).to_string(),
            })?;
        if received.messages().is_empty() {
            return Ok(summary);
        }
        for message in received.messages() {
            seen += 1;
            let id = message.message_id().unwrap_or("?").to_owned();
            let batch = batch_info(message.body().unwrap_or_default());
            let records = match batch {
                Ok(b) => read_batch(kinesis, &b).await.map(|r| (b, r)),
                Err(why) => Err(why),
            };
            let (batch, records) = match records {
                Ok(ok) => ok,
                Err(why) => {
                    summary.left.push((id, why));
                    progress(seen, &summary);
                    continue;
                }
            };
            let target = stream.unwrap_or(&batch.stream_arn);
            for (key, data) in &records {
                let put = kinesis.put_record().partition_key(key).data(data.clone());
                let put = if target.starts_with("arn:") {
                    put.stream_arn(target)
                } else {
                    put.stream_name(target)
                };
                put.send().await.map_err(|e| ReplayError {
                    op: "PutRecord",
                    message: aws_sdk_kinesis::error::DisplayErrorContext(&e).to_string(),
                })?;
            }
            if let Some(receipt) = message.receipt_handle() {
                sqs.delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(receipt)
                    .send()
                    .await
                    .map_err(|e| ReplayError {
                        op: "DeleteMessage",
                        message: aws_sdk_sqs::error::DisplayErrorContext(&e).to_string(),
                    })?;
            }
            summary.batches += 1;
            summary.records += records.len();
            progress(seen, &summary);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        let a = "49590338271490256608559692538361571095921575989136588898";
        let b = "49590338271490256608559692540925702759324208523137515618";
        assert_eq!(seq_cmp(a, b), Ordering::Less);
        assert_eq!(seq_cmp("9", "10"), Ordering::Less, "not as text");
        assert_eq!(seq_cmp("010", "10"), Ordering::Equal);
    }

    #[test]
    fn the_batch_is_read_from_lambdas_message_and_a_stranger_says_why_not() {
        let body = r#"{"requestContext": {"condition": "RetryAttemptsExhausted"}, "version": "1.0",
            "KinesisBatchInfo": {"shardId": "shardId-000000000001", "startSequenceNumber": "1",
            "endSequenceNumber": "5", "batchSize": 3,
            "streamArn": "arn:aws:kinesis:us-east-1:123456789012:stream/source"}}"#;
        assert_eq!(
            batch_info(body),
            Ok(BatchInfo {
                stream_arn: "arn:aws:kinesis:us-east-1:123456789012:stream/source".into(),
                shard_id: "shardId-000000000001".into(),
                start: "1".into(),
                end: "5".into(),
            })
        );
        assert!(batch_info("{}").unwrap_err().contains("KinesisBatchInfo"));
        assert!(batch_info("nope").unwrap_err().contains("not JSON"));
        assert!(
            batch_info(r#"{"KinesisBatchInfo": {"shardId": "s"}}"#)
                .unwrap_err()
                .contains("streamArn")
        );
    }
}
