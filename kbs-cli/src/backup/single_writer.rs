//! `--unsafe-single-writer`: conditional writes emulated on a store that ignores them.
//!
//! A create-only put becomes "look, then put", and a compare-and-swap "compare, then put". With
//! a single writer this keeps every check of the commit protocol (an existing segment is still
//! found and verified, a changed checkpoint still noticed); what it cannot do is close the
//! window between the look and the put against a second writer, which is why the flag says
//! unsafe.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use kbs_storage::{
    Capabilities, GetOutcome, Listing, MultipartUpload, ObjectMeta, ObjectStorage, ObjectStream, ObjectVersion,
    Operation, PutOutcome, Result,
};

/// A store whose conditional writes are emulated with a read before the write.
#[derive(Debug)]
pub(crate) struct SingleWriter(pub(crate) Arc<dyn ObjectStorage>);

#[async_trait]
impl ObjectStorage for SingleWriter {
    fn describe(&self) -> &str {
        self.0.describe()
    }

    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<PutOutcome> {
        self.0.put(key, data).await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<PutOutcome> {
        match self.0.head(key).await {
            Ok(_) => Err(kbs_storage::Error::AlreadyExists {
                store: self.0.describe().to_string(),
                operation: Operation::PutIfAbsent,
                key: key.to_string(),
            }),
            Err(e) if e.is_not_found() => self.0.put(key, data).await,
            Err(e) => Err(e),
        }
    }

    async fn put_if_match(&self, key: &str, data: Bytes, expected: &ObjectVersion) -> Result<PutOutcome> {
        let current = self.0.head(key).await;
        match current {
            Ok(meta) if meta.version == *expected => self.0.put(key, data).await,
            Ok(_) => Err(kbs_storage::Error::Precondition {
                store: self.0.describe().to_string(),
                operation: Operation::PutIfMatch,
                key: key.to_string(),
            }),
            Err(e) if e.is_not_found() => Err(kbs_storage::Error::Precondition {
                store: self.0.describe().to_string(),
                operation: Operation::PutIfMatch,
                key: key.to_string(),
            }),
            Err(e) => Err(e),
        }
    }

    async fn get(&self, key: &str) -> Result<GetOutcome> {
        self.0.get(key).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.0.get_range(key, range).await
    }

    async fn get_stream(&self, key: &str) -> Result<ObjectStream> {
        self.0.get_stream(key).await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        self.0.head(key).await
    }

    fn list(&self, prefix: &str, start_after: Option<&str>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.0.list(prefix, start_after)
    }

    async fn list_with_delimiter(&self, prefix: &str) -> Result<Listing> {
        self.0.list_with_delimiter(prefix).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.0.delete(key).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        self.0.delete_many(keys).await
    }

    async fn start_multipart(&self, key: &str) -> Result<Box<dyn MultipartUpload>> {
        self.0.start_multipart(key).await
    }
}
