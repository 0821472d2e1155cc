//! The storage trait, its extension trait and the values they exchange.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use crate::error::{Context, Result};
use crate::multipart::{MultipartUpload, MultipartWriter};

/// An opaque token naming one version of an object: the S3/GCS/Azure ETag, or the filesystem
/// and memory backends' own version stamp. Every replacement of an object gets a new one (on
/// S3-like stores, rewriting identical bytes may give the same ETag, which is harmless for
/// compare-and-swap because the content is identical).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectVersion(String);

impl ObjectVersion {
    /// Wraps a version token (as returned earlier by this crate, e.g. persisted by a caller).
    pub fn new(token: impl Into<String>) -> Self {
        ObjectVersion(token.into())
    }

    /// The token.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Metadata of a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The key, relative to the store's root.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// The current version (for [`ObjectStorage::put_if_match`]).
    pub version: ObjectVersion,
    /// When the object was last written.
    pub last_modified: SystemTime,
}

/// The result of a successful write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    /// The version the write created.
    pub version: ObjectVersion,
}

/// A whole object read by [`ObjectStorage::get`].
#[derive(Debug, Clone)]
pub struct GetOutcome {
    /// The object's metadata, of the same version as `bytes`.
    pub meta: ObjectMeta,
    /// The object's content.
    pub bytes: Bytes,
}

/// An object being read as a stream of chunks ([`ObjectStorage::get_stream`]).
pub struct ObjectStream {
    /// The metadata of the version being streamed.
    pub meta: ObjectMeta,
    /// The content, in order; the chunks add up to `meta.size` bytes or the stream ends with an
    /// error.
    pub chunks: BoxStream<'static, Result<Bytes>>,
}

impl fmt::Debug for ObjectStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStream")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl ObjectStream {
    /// Reads the rest of the stream into memory.
    pub async fn collect_bytes(self) -> Result<Bytes> {
        let capacity = usize::try_from(self.meta.size).unwrap_or(0).min(64 << 20);
        let mut out = Vec::with_capacity(capacity);
        let mut chunks = self.chunks;
        while let Some(chunk) = chunks.try_next().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(out))
    }
}

/// One level of a hierarchical listing ([`ObjectStorage::list_with_delimiter`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// The "directories" directly under the prefix that contain at least one object, as full
    /// keys without trailing `/` (e.g. `b1` for prefix `""`, `b1/topics` for prefix `b1`),
    /// sorted.
    pub common_prefixes: Vec<String>,
    /// The objects directly under the prefix, sorted by key.
    pub objects: Vec<ObjectMeta>,
}

/// How a store's [`Capabilities`] were determined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CapabilitySource {
    /// The backend implements the operations itself (filesystem, memory).
    Native,
    /// A probe at open time tested what the service honours.
    Probe,
    /// The user declared it with [`ConditionalWrites`](crate::ConditionalWrites)
    /// `Enabled`/`Disabled`.
    Declared,
}

/// What a store guarantees. Callers decide whether to refuse or warn when a capability they
/// need is missing; the conditional operations of a store without the capability fail with
/// [`Error::Unsupported`](crate::Error::Unsupported) rather than silently overwriting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// [`ObjectStorage::put_if_absent`] is atomic: of concurrent creators exactly one wins.
    pub conditional_create: bool,
    /// [`ObjectStorage::put_if_match`] is an atomic compare-and-swap.
    pub conditional_update: bool,
    /// How the two flags above were determined.
    pub source: CapabilitySource,
    /// The smallest allowed multipart part (all parts but the last): 5 MiB on S3-like stores,
    /// 1 byte on the filesystem and in memory.
    pub min_part_size: usize,
}

/// A store of objects under string keys, with atomic whole-object writes.
///
/// Keys are `/`-separated paths relative to the store's root (see the crate docs for the
/// rules); every method validates them and fails with
/// [`Error::InvalidKey`](crate::Error::InvalidKey). Callers hold stores as
/// `Arc<dyn ObjectStorage>` (see [`open`](crate::open)); [`ObjectStorageExt`] adds
/// conveniences such as the buffering [`MultipartWriter`].
#[async_trait]
pub trait ObjectStorage: Send + Sync + fmt::Debug {
    /// The store's kind and location for messages, e.g. `s3://bucket/prefix` or `file:///data`;
    /// never contains credentials.
    fn describe(&self) -> &str;

    /// What the store guarantees.
    fn capabilities(&self) -> Capabilities;

    /// Writes the whole object atomically, replacing any existing one. Readers see the old or the
    /// new object, never a mix or a partial one.
    async fn put(&self, key: &str, data: Bytes) -> Result<PutOutcome>;

    /// Writes the object only if there is none at the key; otherwise fails with
    /// [`Error::AlreadyExists`](crate::Error::AlreadyExists) and changes nothing.
    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<PutOutcome>;

    /// Replaces the object only if its current version is `expected` (compare-and-swap);
    /// otherwise, also when there is no object, fails with
    /// [`Error::Precondition`](crate::Error::Precondition) and changes nothing.
    async fn put_if_match(&self, key: &str, data: Bytes, expected: &ObjectVersion) -> Result<PutOutcome>;

    /// Reads a whole object.
    async fn get(&self, key: &str) -> Result<GetOutcome>;

    /// Reads the bytes `range` of an object; the range must lie within the object
    /// (else [`Error::InvalidRange`](crate::Error::InvalidRange)).
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes>;

    /// Reads an object as a stream of chunks, for objects too big to hold in memory.
    async fn get_stream(&self, key: &str) -> Result<ObjectStream>;

    /// Reads an object's metadata.
    async fn head(&self, key: &str) -> Result<ObjectMeta>;

    /// Streams the metadata of every object under `prefix` (`""` for all; prefixes match whole
    /// segments: `b1` lists `b1/...`, not `b10/...`) in lexicographic key order, starting after
    /// the key `start_after` if given. Pages are fetched as the stream is consumed.
    fn list(&self, prefix: &str, start_after: Option<&str>) -> BoxStream<'static, Result<ObjectMeta>>;

    /// Lists one level under `prefix`: the objects directly in it and the common prefixes
    /// ("directories") below it.
    async fn list_with_delimiter(&self, prefix: &str) -> Result<Listing>;

    /// Deletes an object. Deleting a missing object succeeds (S3 cannot tell the difference).
    async fn delete(&self, key: &str) -> Result<()>;

    /// Deletes every object of `keys` (missing ones succeed), in as few requests as the backend
    /// allows: S3's DeleteObjects takes up to 1,000 keys per request. On an error some of the
    /// keys may be deleted; deleting them all again is safe. By default one
    /// [`delete`](ObjectStorage::delete) per key.
    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        for key in keys {
            self.delete(key).await?;
        }
        Ok(())
    }

    /// Starts a multipart upload of a large object. Most callers use
    /// [`ObjectStorageExt::put_multipart`], which buffers writes into parts. Nothing is visible
    /// at the key until [`MultipartUpload::complete`] succeeds; dropping the upload without
    /// completing it aborts it.
    async fn start_multipart(&self, key: &str) -> Result<Box<dyn MultipartUpload>>;
}

#[async_trait]
impl<T: ObjectStorage + ?Sized> ObjectStorage for Arc<T> {
    fn describe(&self) -> &str {
        (**self).describe()
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    async fn put(&self, key: &str, data: Bytes) -> Result<PutOutcome> {
        (**self).put(key, data).await
    }
    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<PutOutcome> {
        (**self).put_if_absent(key, data).await
    }
    async fn put_if_match(&self, key: &str, data: Bytes, expected: &ObjectVersion) -> Result<PutOutcome> {
        (**self).put_if_match(key, data, expected).await
    }
    async fn get(&self, key: &str) -> Result<GetOutcome> {
        (**self).get(key).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        (**self).get_range(key, range).await
    }
    async fn get_stream(&self, key: &str) -> Result<ObjectStream> {
        (**self).get_stream(key).await
    }
    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        (**self).head(key).await
    }
    fn list(&self, prefix: &str, start_after: Option<&str>) -> BoxStream<'static, Result<ObjectMeta>> {
        (**self).list(prefix, start_after)
    }
    async fn list_with_delimiter(&self, prefix: &str) -> Result<Listing> {
        (**self).list_with_delimiter(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        (**self).delete(key).await
    }
    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        (**self).delete_many(keys).await
    }
    async fn start_multipart(&self, key: &str) -> Result<Box<dyn MultipartUpload>> {
        (**self).start_multipart(key).await
    }
}

/// The default part size of [`ObjectStorageExt::put_multipart`]: 8 MiB.
pub const DEFAULT_PART_SIZE: usize = 8 << 20;

/// The largest part size accepted: 5 GiB (S3's limit).
pub const MAX_PART_SIZE: usize = 5 << 30;

/// Conveniences on top of [`ObjectStorage`], implemented for every store.
#[async_trait]
pub trait ObjectStorageExt: ObjectStorage {
    /// Starts a buffered multipart upload with parts of [`DEFAULT_PART_SIZE`].
    async fn put_multipart(&self, key: &str) -> Result<MultipartWriter> {
        self.put_multipart_with_part_size(key, DEFAULT_PART_SIZE).await
    }

    /// Starts a buffered multipart upload with parts of `part_size` bytes (at least the store's
    /// [`Capabilities::min_part_size`], at most [`MAX_PART_SIZE`]).
    async fn put_multipart_with_part_size(&self, key: &str, part_size: usize) -> Result<MultipartWriter> {
        let min = self.capabilities().min_part_size.max(1);
        if part_size < min || part_size > MAX_PART_SIZE {
            return Err(crate::Error::InvalidOption {
                name: "part_size".to_owned(),
                reason: format!("{part_size} is outside {min}..={MAX_PART_SIZE} for {}", self.describe()),
            });
        }
        let upload = self.start_multipart(key).await?;
        Ok(MultipartWriter::new(upload, part_size, key, self.describe()))
    }

    /// Whether an object exists at `key`.
    async fn exists(&self, key: &str) -> Result<bool> {
        match self.head(key).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Collects [`ObjectStorage::list`] of `prefix` into a vector.
    async fn list_all(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.list(prefix, None).try_collect().await
    }

    /// Deletes every object under `prefix` and returns how many there were.
    async fn delete_prefix(&self, prefix: &str) -> Result<usize> {
        let mut keys = self.list(prefix, None).map_ok(|meta| meta.key).boxed();
        let mut deleted = 0;
        while let Some(key) = keys.try_next().await? {
            self.delete(&key).await?;
            deleted += 1;
        }
        Ok(deleted)
    }
}

impl<T: ObjectStorage + ?Sized> ObjectStorageExt for T {}

/// Checks a requested range against an object's size.
pub(crate) fn check_range(cx: &Context<'_>, range: &Range<u64>, size: u64) -> Result<()> {
    if range.start > range.end || range.end > size {
        return Err(cx.invalid_range(range.clone(), size));
    }
    Ok(())
}
