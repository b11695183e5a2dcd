//! Replaying dead letters: each one's record data goes back onto a stream, under its own partition key, for the
//! function to take again once whatever failed is mended. Every function drops what it already forwarded
//! (marks, deterministic `event_id`s), so a replay re-sends nothing twice downstream that a consumer cannot
//! collapse.
//!
//! A Cognito Sync record whose changes were behind an S3Url is replayed inline: its presigned URL has most
//! likely expired, but the dead letter kept the payload, so the record goes back with `kinesisSyncRecords`
//! and `payloadType: "Inline"`, as long as that fits the Kinesis record limit.

use aws_sdk_kinesis::primitives::Blob;
use base64::Engine as _;
use bridge_core::producer::MAX_RECORD_BYTES;
use serde_json::Value;

/// An AWS call of a replay failed: the replay stops there (what it put back stays put back; running it again puts
/// those back again, which the functions drop as repeats).
#[derive(Debug, thiserror::Error)]
#[error("{op} failed: {message}")]
pub struct ReplayError {
    /// The call.
    pub op: &'static str,
    /// What the SDK said.
    pub message: String,
}

/// What a replay did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Dead letters put back on the stream.
    pub replayed: usize,
    /// Of those, S3Url records put back inline, with their kept payload.
    pub inlined: usize,
    /// Dead letters left where they are: (object key, why).
    pub skipped: Vec<(String, String)>,
}

/// The record to put back for one dead letter: (partition key, data, whether it was inlined), or why there
/// is none.
pub fn replayable(letter: &Value) -> Result<(String, Vec<u8>, bool), String> {
    let b64 = |field: &str| -> Result<Option<Vec<u8>>, String> {
        letter[field]
            .as_str()
            .map(|s| base64::engine::general_purpose::STANDARD.decode(s))
            .transpose()
            .map_err(|e| format!("{field} is not base64: {e}"))
    };
    let Some(data) = b64("data_base64")? else {
        return Err(
            "the record itself could not be read; its raw JSON is in the dead letter".into(),
        );
    };
    let key = letter["partition_key"]
        .as_str()
        .filter(|k| !k.is_empty())
        .ok_or("the dead letter names no partition key (written before partition keys were kept)")?
        .to_owned();
    let Some(payload) = b64("payload_base64")? else {
        return Ok((key, data, false));
    };
    if letter["payload_truncated"] == Value::Bool(true) {
        return Err(format!(
            "the kept payload is only its first {} bytes (it was over the fetch cap): raise the cap and fetch \
             it again while its url lives, or read it from the dead letter by hand",
            payload.len()
        ));
    }
    let mut record: Value = serde_json::from_slice(&data)
        .map_err(|e| format!("the record with a kept payload is not JSON: {e}"))?;
    let changes: Value = serde_json::from_slice(&payload)
        .map_err(|e| format!("the kept payload is not JSON: {e}"))?;
    let Some(fields) = record.as_object_mut() else {
        return Err("the record with a kept payload is not a JSON object".into());
    };
    fields.remove("kinesisSyncRecordsURL");
    fields.insert("payloadType".into(), "Inline".into());
    fields.insert("kinesisSyncRecords".into(), changes);
    let inline = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
    if inline.len() + key.len() > MAX_RECORD_BYTES {
        return Err(format!(
            "inline, the record is {} bytes, over the {MAX_RECORD_BYTES}-byte Kinesis record limit",
            inline.len()
        ));
    }
    Ok((key, inline, true))
}

/// Puts back every dead letter under `prefix` in `bucket` onto `stream`, one PutRecord each, in key order
/// (keys hold the arrival date, stream, shard and sequence number, so that is arrival order per shard).
pub async fn replay_dead_letters(
    s3: &aws_sdk_s3::Client,
    kinesis: &aws_sdk_kinesis::Client,
    bucket: &str,
    prefix: &str,
    stream: &str,
) -> Result<ReplaySummary, ReplayError> {
    replay_dead_letters_with_progress(s3, kinesis, bucket, prefix, stream, |_, _, _| {}).await
}

/// [`replay_dead_letters`], calling `progress(done, total, summary so far)` after every dead letter (`total` is
/// the count listed under the prefix).
pub async fn replay_dead_letters_with_progress(
    s3: &aws_sdk_s3::Client,
    kinesis: &aws_sdk_kinesis::Client,
    bucket: &str,
    prefix: &str,
    stream: &str,
    mut progress: impl FnMut(usize, usize, &ReplaySummary),
) -> Result<ReplaySummary, ReplayError> {
    let aws = |op: &'static str| move |e: String| ReplayError { op, message: e };
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| {
                aws("ListObjectsV2")(aws_sdk_s3::error::DisplayErrorContext(&e).to_string())
            })?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        token = page.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    keys.sort();
    let mut summary = ReplaySummary::default();
    let total = keys.len();
    for (done, key) in keys.into_iter().enumerate() {
        let done = done + 1;
        let object = s3
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| {
                aws("GetObject")(aws_sdk_s3::error::DisplayErrorContext(&e).to_string())
            })?;
        let body = object
            .body
            .collect()
            .await
            .map_err(|e| aws("GetObject")(e.to_string()))?
            .into_bytes();
        let letter: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                summary
                    .skipped
                    .push((key, format!("not a dead letter: {e}")));
                progress(done, total, &summary);
                continue;
            }
        };
        match replayable(&letter) {
            Err(why) => summary.skipped.push((key, why)),
            Ok((partition_key, data, inlined)) => {
                let mut put = kinesis
                    .put_record()
                    .partition_key(partition_key)
                    .data(Blob::new(data));
                put = if stream.starts_with("arn:") {
                    put.stream_arn(stream)
                } else {
                    put.stream_name(stream)
                };
                put.send().await.map_err(|e| {
                    aws("PutRecord")(aws_sdk_kinesis::error::DisplayErrorContext(&e).to_string())
                })?;
                summary.replayed += 1;
                summary.inlined += usize::from(inlined);
            }
        }
        progress(done, total, &summary);
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn an_s3url_record_with_its_payload_goes_back_inline() {
        let record = json!({"identityId": "i", "payloadType": "S3Url", "kinesisSyncRecordsURL": "https://expired"});
        let payload = json!([{"key": "a", "value": "1"}]);
        let letter = json!({
            "data_base64": b64(&serde_json::to_vec(&record).unwrap()),
            "payload_base64": b64(&serde_json::to_vec(&payload).unwrap()),
            "partition_key": "i"
        });
        let (key, data, inlined) = replayable(&letter).unwrap();
        assert!(inlined);
        assert_eq!(key, "i");
        let back: Value = serde_json::from_slice(&data).unwrap();
        assert_eq!(back["payloadType"], "Inline");
        assert_eq!(back["kinesisSyncRecords"], payload);
        assert!(back.get("kinesisSyncRecordsURL").is_none());
    }

    #[test]
    fn what_cannot_be_replayed_says_why() {
        assert!(
            replayable(&json!({"record": {"kinesis": {}}}))
                .unwrap_err()
                .contains("raw JSON")
        );
        assert!(
            replayable(&json!({"data_base64": "e30="}))
                .unwrap_err()
                .contains("no partition key")
        );
        let (key, data, inlined) =
            replayable(&json!({"data_base64": "e30=", "partition_key": "k"})).unwrap();
        assert_eq!(
            (key.as_str(), data.as_slice(), inlined),
            ("k", b"{}".as_slice(), false)
        );
    }
}
