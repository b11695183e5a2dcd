//! The sync processor's harness: fresh resources in the local emulator for each test, and the real processor
//! built over them.

#![allow(
    clippy::panic,
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test fixtures fail loudly"
)]

use std::collections::HashMap;
use std::time::Duration;

use aws_lambda_events::event::streams::KinesisEventResponse;
use bridge_core::Deadline;
use bridge_core::kinesis_event::RawKinesisEvent;
use bridge_core::pipeline::Flow as _;
use bridge_core::telemetry::Metrics;
use devtools::LocalAws;
use devtools::emulator::unique_name;
use serde_json::Value;
use sync_processor::Processor;
use sync_processor::config::{self as sp, Config};

use crate::{assert_valid, validator};

/// Fresh resources in the emulator and a processor wired to them.
#[derive(Debug)]
pub struct Harness {
    /// The emulator's clients.
    pub aws: LocalAws,
    /// The output stream's name.
    pub output_stream: String,
    /// The dedup table.
    pub table: String,
    /// The dead-letter and large-payload bucket.
    pub bucket: String,
    /// The config the processor was built from.
    pub config: Config,
    /// The processor.
    pub processor: Processor,
    schema: jsonschema::Validator,
}

impl Harness {
    /// A harness with default settings.
    pub async fn new() -> Self {
        Self::with_env(&[]).await
    }

    /// A harness whose config has `extra` variables on top of the resources it creates.
    pub async fn with_env(extra: &[(&str, &str)]) -> Self {
        Self::build(None, extra).await
    }

    /// A harness whose payload-URL allowlist has `origin` besides the emulator's own.
    pub async fn allowing(origin: &str, extra: &[(&str, &str)]) -> Self {
        Self::build(Some(origin), extra).await
    }

    async fn build(extra_origin: Option<&str>, extra: &[(&str, &str)]) -> Self {
        let aws = LocalAws::from_env().await.unwrap_or_else(|e| panic!("{e}"));
        let (output_stream, table, bucket) = (
            unique_name("out"),
            unique_name("marks"),
            unique_name("bridge"),
        );
        aws.create_stream(&output_stream, 2)
            .await
            .expect("create output stream");
        aws.create_dedup_table(&table).await.expect("create table");
        aws.create_bucket(&bucket).await.expect("create bucket");
        let origins = match extra_origin {
            Some(origin) => format!("{},{origin}", aws.endpoint),
            None => aws.endpoint.clone(),
        };
        let mut env: HashMap<String, String> = HashMap::from([
            (sp::ENV_OUTPUT_STREAM.into(), output_stream.clone()),
            (sp::ENV_DEDUP_TABLE.into(), table.clone()),
            (sp::ENV_DEAD_LETTER_BUCKET.into(), bucket.clone()),
            (sp::ENV_S3_URL_ALLOWED_ORIGINS.into(), origins),
            (sp::ENV_S3_FETCH_TIMEOUT_MS.into(), "2000".into()),
        ]);
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let config = Config::from_env(&env).expect("config");
        let processor = Processor::connect(&config, &aws.sdk, aws.s3.clone()).expect("processor");
        Self {
            aws,
            output_stream,
            table,
            bucket,
            config,
            processor,
            schema: validator("cognito-sync-change.v1.json"),
        }
    }

    /// Runs one batch through the processor, as Lambda would hand it.
    pub async fn run(&self, event: &Value) -> (KinesisEventResponse, Metrics) {
        self.run_with(&self.processor, event).await
    }

    /// Runs one batch through another processor (one with a fault-injecting port).
    pub async fn run_with(
        &self,
        processor: &Processor,
        event: &Value,
    ) -> (KinesisEventResponse, Metrics) {
        let event: RawKinesisEvent = serde_json::from_value(event.clone()).expect("event shape");
        let metrics = Metrics::new();
        let response = processor.process(event, Deadline::none(), &metrics).await;
        (response, metrics)
    }

    /// Every record on the output stream, parsed and checked against the schema.
    pub async fn outputs(&self) -> Vec<Value> {
        let records = self
            .aws
            .read_stream(&self.output_stream)
            .await
            .expect("read output stream");
        let docs: Vec<Value> = records
            .iter()
            .map(|r| {
                let doc: Value = serde_json::from_slice(r.data.as_ref()).expect("output is JSON");
                assert_valid(&self.schema, &doc);
                // Per-identity order needs the identity as partition key (pointer records carry no body).
                if let Some(identity) = doc["identity_id"].as_str() {
                    assert_eq!(r.partition_key.as_deref(), Some(identity));
                }
                doc
            })
            .collect();
        docs
    }

    /// Every dead letter in the bucket.
    pub async fn dead_letters(&self) -> Vec<Value> {
        self.aws
            .read_objects(&self.bucket, "dead-letter/")
            .await
            .expect("read dead letters")
            .into_iter()
            .map(|(_, body)| serde_json::from_slice(&body).expect("dead letter is JSON"))
            .collect()
    }

    /// Stores `body` in the bucket and returns a presigned GET URL for it, made by aws-sdk-s3.
    pub async fn presigned(&self, key: &str, body: Vec<u8>) -> String {
        self.aws
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .expect("put payload");
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(900))
            .expect("presign config");
        let request = self
            .aws
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(config)
            .await
            .expect("presign");
        request.uri().to_owned()
    }
}
