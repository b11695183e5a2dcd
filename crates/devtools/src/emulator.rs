//! The local AWS emulator (moto server), reached through the real SDK clients at `AWS_ENDPOINT_URL`.

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TimeToLiveSpecification,
};
use aws_sdk_kinesis::types::{Record, ShardIteratorType, StreamStatus};
use bridge_core::dedup::{ATTR_EXPIRES_AT, ATTR_KEY};

/// What can go wrong talking to the emulator.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// `AWS_ENDPOINT_URL` is missing or not a loopback address.
    #[error("{0}")]
    Endpoint(String),
    /// An AWS call failed.
    #[error("{op} failed: {message}")]
    Aws {
        /// The call.
        op: &'static str,
        /// What the SDK said.
        message: String,
    },
}

fn aws<E: std::error::Error>(op: &'static str) -> impl FnOnce(E) -> DevError {
    move |e| DevError::Aws {
        op,
        message: aws_sdk_kinesis::error::DisplayErrorContext(&e).to_string(),
    }
}

/// Clients for the local emulator.
#[derive(Debug, Clone)]
pub struct LocalAws {
    /// The endpoint, `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// The SDK config (region, dummy credentials, endpoint).
    pub sdk: aws_config::SdkConfig,
    /// Kinesis.
    pub kinesis: aws_sdk_kinesis::Client,
    /// S3, path-style.
    pub s3: aws_sdk_s3::Client,
    /// DynamoDB.
    pub dynamodb: aws_sdk_dynamodb::Client,
}

/// Whether an endpoint URL points at this machine's loopback.
pub fn is_loopback_endpoint(endpoint: &str) -> bool {
    let Some(rest) = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
    else {
        return false;
    };
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    host == "localhost"
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Where reading a shard starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardStart {
    /// The oldest record kept.
    TrimHorizon,
    /// After the newest record (nothing yet).
    Latest,
    /// Records from this time (seconds since the epoch).
    AtTimestamp(i64),
    /// After this sequence number.
    After(String),
}

impl LocalAws {
    /// Clients for the emulator at `AWS_ENDPOINT_URL`. Refuses any endpoint off loopback, so that a test can
    /// never reach a real AWS account.
    pub async fn from_env() -> Result<Self, DevError> {
        let endpoint = std::env::var("AWS_ENDPOINT_URL").map_err(|_| {
            DevError::Endpoint(
                "AWS_ENDPOINT_URL is not set: run through `make test` / scripts/with-moto".into(),
            )
        })?;
        if !is_loopback_endpoint(&endpoint) {
            return Err(DevError::Endpoint(format!(
                "AWS_ENDPOINT_URL {endpoint} is not a loopback address; refusing"
            )));
        }
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .build(),
        );
        Ok(Self {
            endpoint,
            kinesis: aws_sdk_kinesis::Client::new(&sdk),
            dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
            s3,
            sdk,
        })
    }

    /// Creates a provisioned stream with `shards` shards, waits until it is active, returns its ARN.
    pub async fn create_stream(&self, name: &str, shards: i32) -> Result<String, DevError> {
        self.kinesis
            .create_stream()
            .stream_name(name)
            .shard_count(shards)
            .send()
            .await
            .map_err(aws("CreateStream"))?;
        for _ in 0..100 {
            let summary = self
                .kinesis
                .describe_stream_summary()
                .stream_name(name)
                .send()
                .await
                .map_err(aws("DescribeStreamSummary"))?;
            if let Some(s) = summary.stream_description_summary
                && s.stream_status == StreamStatus::Active
            {
                return Ok(s.stream_arn);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(DevError::Aws {
            op: "CreateStream",
            message: format!("stream {name} never became active"),
        })
    }

    /// Creates the active-users rollup table (`pk`, `sk` strings), on demand, as the template declares it.
    pub async fn create_rollup_table(&self, name: &str) -> Result<(), DevError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| DevError::Aws {
            op: "CreateTable",
            message: e.to_string(),
        };
        let mut create = self
            .dynamodb
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest);
        for (attr, kind) in [("pk", KeyType::Hash), ("sk", KeyType::Range)] {
            create = create
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(attr)
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .map_err(build)?,
                )
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name(attr)
                        .key_type(kind)
                        .build()
                        .map_err(build)?,
                );
        }
        create.send().await.map_err(aws("CreateTable"))?;
        Ok(())
    }

    /// Creates the dedup table: string key `pk`, on-demand, TTL on `expires_at`.
    pub async fn create_dedup_table(&self, name: &str) -> Result<(), DevError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| DevError::Aws {
            op: "CreateTable",
            message: e.to_string(),
        };
        self.dynamodb
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(ATTR_KEY)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(build)?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(ATTR_KEY)
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(build)?,
            )
            .send()
            .await
            .map_err(aws("CreateTable"))?;
        self.dynamodb
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(ATTR_EXPIRES_AT)
                    .enabled(true)
                    .build()
                    .map_err(build)?,
            )
            .send()
            .await
            .map_err(aws("UpdateTimeToLive"))?;
        Ok(())
    }

    /// Creates a bucket.
    pub async fn create_bucket(&self, name: &str) -> Result<(), DevError> {
        self.s3
            .create_bucket()
            .bucket(name)
            .send()
            .await
            .map_err(aws("CreateBucket"))?;
        Ok(())
    }

    /// Every record on every shard of a stream, shard by shard, in sequence order.
    pub async fn read_stream(&self, name: &str) -> Result<Vec<Record>, DevError> {
        let shards = self
            .kinesis
            .list_shards()
            .stream_name(name)
            .send()
            .await
            .map_err(aws("ListShards"))?;
        let mut records = Vec::new();
        for shard in shards.shards.unwrap_or_default() {
            records.extend(
                self.read_shard(name, &shard.shard_id, ShardStart::TrimHorizon)
                    .await?,
            );
        }
        Ok(records)
    }

    /// The records of one shard from `start` to its current end, in sequence order.
    pub async fn read_shard(
        &self,
        name: &str,
        shard_id: &str,
        start: ShardStart,
    ) -> Result<Vec<Record>, DevError> {
        let request = self
            .kinesis
            .get_shard_iterator()
            .stream_name(name)
            .shard_id(shard_id);
        let request = match start {
            ShardStart::TrimHorizon => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
            ShardStart::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
            ShardStart::AtTimestamp(secs) => request
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(aws_sdk_kinesis::primitives::DateTime::from_secs(secs)),
            ShardStart::After(seq) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq),
        };
        let mut iterator = request
            .send()
            .await
            .map_err(aws("GetShardIterator"))?
            .shard_iterator;
        let mut records = Vec::new();
        while let Some(it) = iterator {
            let out = self
                .kinesis
                .get_records()
                .shard_iterator(it)
                .limit(10_000)
                .send()
                .await
                .map_err(aws("GetRecords"))?;
            let done = out.records.is_empty() || out.millis_behind_latest == Some(0);
            records.extend(out.records);
            iterator = if done { None } else { out.next_shard_iterator };
        }
        Ok(records)
    }

    /// Every object under `prefix` in `bucket`, with its body.
    pub async fn read_objects(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, DevError> {
        let mut objects = Vec::new();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            for object in page
                .map_err(aws("ListObjectsV2"))?
                .contents
                .unwrap_or_default()
            {
                let key = object.key.unwrap_or_default();
                let body = self
                    .s3
                    .get_object()
                    .bucket(bucket)
                    .key(&key)
                    .send()
                    .await
                    .map_err(aws("GetObject"))?;
                let bytes = body.body.collect().await.map_err(|e| DevError::Aws {
                    op: "GetObject",
                    message: e.to_string(),
                })?;
                objects.push((key, bytes.into_bytes().to_vec()));
            }
        }
        Ok(objects)
    }
}

/// A name unique to this process and call, valid for streams, tables and buckets (lowercase, 3-63 chars).
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_endpoints_pass() {
        assert!(is_loopback_endpoint("http://127.0.0.1:5000"));
        assert!(is_loopback_endpoint("http://localhost:5000/"));
        assert!(is_loopback_endpoint("http://[::1]:5000"));
        assert!(!is_loopback_endpoint(
            "https://kinesis.us-east-1.amazonaws.com"
        ));
        assert!(!is_loopback_endpoint("http://127.0.0.1.example.com:5000"));
        assert!(!is_loopback_endpoint("http://10.0.0.1:5000"));
        assert!(!is_loopback_endpoint("127.0.0.1:5000"));
    }
}
