//! Sample CloudWatch Logs subscription records, for `events/`: a readable source (`events/src/auth-*.json`,
//! with each log event's `entry` written as JSON) becomes the sample-source format of `devtools::events`,
//! whose records carry `dataBase64`: base64 of gzip of the subscription document, as the subscription
//! filter writes it to Kinesis. gzip here is deterministic (no file name, mtime 0), so the committed sample
//! can be checked against its source.

use std::io::Write as _;

use base64::Engine as _;
use serde_json::{Value, json};

/// Gzip of `bytes`, deterministic for a given flate2 version.
pub fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes)?;
    enc.finish()
}

/// The subscription document of one source record: each log event's `entry` (a JSON document) becomes its
/// `message` string; a `message` given as text stays as it is.
pub fn subscription_document(subscription: &Value) -> Value {
    let mut doc = subscription.clone();
    if let Some(events) = doc.get_mut("logEvents").and_then(Value::as_array_mut) {
        for e in events {
            if let Some(entry) = e.as_object_mut().and_then(|o| o.remove("entry")) {
                e["message"] = Value::String(entry.to_string());
            }
        }
    }
    doc
}

/// Turns a readable source `{"stream", "records": [{"partitionKey", "subscription": {...}}]}` into the
/// `devtools::events::sample_event` source format (records with `dataBase64`).
pub fn to_sample_source(source: &Value) -> Result<Value, String> {
    let records = source["records"]
        .as_array()
        .ok_or_else(|| "missing \"records\"".to_owned())?;
    let mut out = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let sub = r
            .get("subscription")
            .ok_or_else(|| format!("record {i} has no subscription"))?;
        let bytes = serde_json::to_vec(&subscription_document(sub)).map_err(|e| e.to_string())?;
        let gz = gzip(&bytes).map_err(|e| e.to_string())?;
        out.push(json!({
            "partitionKey": r["partitionKey"],
            "dataBase64": base64::engine::general_purpose::STANDARD.encode(gz),
        }));
    }
    Ok(json!({ "stream": source["stream"], "records": out }))
}
