//! The object store port (S3): dead letters and the bodies of oversized output records go here.

use async_trait::async_trait;
use bytes::Bytes;

/// An object could not be stored. Callers treat it as retryable: nothing is dropped because S3 said no.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("s3 put of s3://{bucket}/{key} failed: {message}")]
pub struct BlobError {
    /// The bucket.
    pub bucket: String,
    /// The object key.
    pub key: String,
    /// What the SDK said.
    pub message: String,
}

/// Stores whole objects.
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// Puts `body` at `bucket`/`key`, replacing any object there.
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<(), BlobError>;
}

/// [`BlobStore`] on S3, objects encrypted at rest with the bucket's default encryption.
#[derive(Debug, Clone)]
pub struct S3BlobStore {
    client: aws_sdk_s3::Client,
}

impl S3BlobStore {
    /// Wraps an S3 client.
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<(), BlobError> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(body.into())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| BlobError {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                message: aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
            })
    }
}
