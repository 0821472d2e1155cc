//! Storage for kbs backups: one small async trait, [`ObjectStorage`], with filesystem, S3,
//! in-memory, GCS and Azure backends chosen by URL. Every object is either fully there or
//! absent, a committed object is never overwritten by a conditional write, and flaky networks
//! are retried.
//!
//! ```
//! use bytes::Bytes;
//! use kbs_storage::{ObjectStorageExt, StorageOptions};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let store = kbs_storage::open("memory://", &StorageOptions::default()).await?;
//! // Create-only: exactly one of several concurrent writers wins.
//! let created = store.put_if_absent("b1/manifest.json", Bytes::from("{}")).await?;
//! assert!(store.put_if_absent("b1/manifest.json", Bytes::from("{}")).await.is_err());
//! // Compare-and-swap on the version the write returned.
//! store.put_if_match("b1/manifest.json", Bytes::from(r#"{"done":true}"#), &created.version).await?;
//! // Large objects: a buffered multipart upload; nothing is visible until `complete`.
//! let mut writer = store.put_multipart("b1/topics/orders/0/segment-00000000.kbs").await?;
//! writer.write(Bytes::from(vec![7u8; 1 << 20])).await?;
//! writer.complete().await?;
//! let listing = store.list_with_delimiter("").await?;
//! assert_eq!(listing.common_prefixes, ["b1"]);
//! # Ok::<(), kbs_storage::Error>(())
//! # }).unwrap();
//! ```
//!
//! # Locations
//!
//! | location | backend |
//! |---|---|
//! | `/data/backups`, `./backups`, `backups` (relative to the working directory) | filesystem |
//! | `file:///data/backups` | filesystem |
//! | `s3://bucket/prefix` | S3 and S3-compatible servers (object_store's AmazonS3) |
//! | `gs://bucket/prefix` | Google Cloud Storage |
//! | `az://container/prefix` | Azure Blob Storage |
//! | `memory://` | a new, empty in-memory store |
//!
//! Keys are `/`-separated paths relative to the location (`b1/manifest.json`): not empty, at
//! most 1024 bytes, no leading/trailing `/`, no empty, `.` or `..` segment, no control character
//! or `\`, and no segment starting with `.kbs-` or containing `.kbs-tmp-` (reserved). Bad keys
//! fail with [`Error::InvalidKey`].
//!
//! # Options
//!
//! [`StorageOptions`] fields and the URL query parameters that set them (URL parameters win;
//! unknown parameters are an error naming them; credentials are never accepted in URLs):
//!
//! | field | query (`s3://`) | meaning |
//! |---|---|---|
//! | `s3_endpoint` | `endpoint` | endpoint of an S3-compatible server |
//! | `s3_region` | `region` | region (default from `AWS_REGION`, else `us-east-1`) |
//! | `s3_path_style` | `path_style` (or `virtual_host`) | addressing; default path style with an endpoint, virtual host on AWS |
//! | `s3_allow_http` | `allow_http` | allow `http://` endpoints |
//! | `s3_access_key_id`, `s3_secret_access_key`, `s3_session_token` | — | static credentials; default: the AWS chain (environment, shared credentials profile, web identity, container, instance metadata) |
//! | `s3_storage_class` | `storage_class` | `STANDARD`, `STANDARD_IA`, `GLACIER_IR`, `GLACIER`, for data objects |
//! | `s3_sse` | `sse`, `sse_kms_key_id` | `AES256`, `aws:kms`, `aws:kms:dsse` (SSE-C only through the struct) |
//! | `gcs_service_account_path` | `service_account_path` (`gs://`) | GCS credentials file |
//! | `azure_account`, `azure_endpoint` | `account`, `endpoint` (`az://`) | Azure account and endpoint |
//! | `azure_access_key` | — | Azure account key |
//! | `request_timeout`, `connect_timeout` | same names (`30s`, `500ms`, `2m`) | HTTP stall limit (no byte for that long, also mid-body) and connect limit |
//! | `retry.max_attempts`, `retry.max_elapsed` | `max_attempts`, `retry_timeout` | retry bounds |
//! | `conditional_writes` | same name: `auto`, `enabled`, `disabled` | see Capabilities |
//!
//! "Data objects" are those written with `put` and multipart uploads; the conditional writes
//! (`put_if_absent`, `put_if_match`), which kbs uses for manifests and checkpoints that it must
//! read back cheaply, always use the bucket's default class. Secrets are [`Secret`]s: `Debug`
//! shows `<redacted>`, and messages from services are scrubbed of them.
//!
//! # Capabilities
//!
//! [`ObjectStorage::capabilities`] says whether `put_if_absent` and `put_if_match` are atomic.
//! The filesystem and memory backends implement both natively. On object stores
//! `conditional_writes=auto` (the default) probes at open time: under the prefix it writes
//! `.kbs-probe-<random>` create-only (must succeed), again create-only (must fail with
//! AlreadyExists), compare-and-swaps it with a wrong ETag (must fail with Precondition) and with
//! the right one (must succeed), then deletes it. Some S3-compatible servers (Garage) accept
//! both headers and overwrite anyway; the probe reports that. `enabled`/`disabled` skip the
//! probe. Without the capability the conditional operations fail with [`Error::Unsupported`];
//! callers decide whether to refuse or fall back with a warning. Read-only credentials cannot
//! probe: the store then reports no conditional writes.
//!
//! # Retries
//!
//! [`open`] wraps every backend in [`Retrying`]: retriable errors (HTTP 5xx except 501/505,
//! 408, 429, S3's 200-with-error-body, connection failures and resets, timeouts, short reads)
//! are retried with exponential backoff and equal jitter, bounded by
//! [`RetryConfig::max_attempts`] and [`RetryConfig::max_elapsed`]; permanent ones (not found,
//! already exists, precondition, access denied, bad input) are not. object_store's own HTTP
//! retries are switched off, so nothing is retried twice. A create-only write that finds the key
//! taken after a retry compares the stored object with its bytes and succeeds if they are its
//! own. Broken streams continue with ranged reads (the object's version checked before and
//! after), broken listings continue after the last key, multipart parts are re-sent. [`Error::is_retriable`], [`Error::store`], [`Error::key`] and [`Error::operation`] tell
//! callers the rest.
//!
//! # Filesystem atomicity
//!
//! Each write goes to a temporary file `.<name>.kbs-tmp-<pid>-<n>` in the key's directory,
//! which is written and `fsync`ed, then published under a per-key `flock` (striped over 256
//! files in `<root>/.kbs-locks/`, released by the kernel if the writer dies): `rename(2)` for
//! `put`, `put_if_match` (after checking the version under the lock) and multipart completion,
//! `link(2)` for `put_if_absent` (atomic failure if the key exists); then the directory is
//! `fsync`ed. The final key therefore only ever names a complete file; a killed writer leaves at
//! most a temporary file, which listings ignore. Versions are `<inode>-<size>-<mtime ns>`, and
//! every replacement gets a modification time strictly after its predecessor's, so a version
//! never repeats. A key cannot be both an object and a directory of objects (`a` and `a/b`).
//!
//! # GCS and Azure
//!
//! The `gs://` and `az://` backends are built on object_store's clients and unit-tested for
//! their option parsing and construction, but have not been tested against a live service.

mod aws_profile;
mod cloud;
mod error;
#[cfg(unix)]
mod fs;
mod key;
mod memory;
mod multipart;
mod options;
mod retry;
mod storage;

use std::sync::Arc;

pub use error::{Error, Operation, Result};
pub use key::MAX_KEY_LEN;
pub use multipart::{MultipartUpload, MultipartWriter};
pub use options::{
    ConditionalWrites, RetryConfig, RetryObserver, RetryObserverHook, S3Encryption, S3StorageClass, Secret,
    StorageOptions,
};
pub use retry::Retrying;
pub use storage::{
    Capabilities, CapabilitySource, DEFAULT_PART_SIZE, GetOutcome, Listing, MAX_PART_SIZE, ObjectMeta, ObjectStorage,
    ObjectStorageExt, ObjectStream, ObjectVersion, PutOutcome,
};

use options::{Location, parse_location};

/// Opens the store at `location` (a path or URL, see the crate docs), wrapped in the
/// [`Retrying`] layer configured by `options.retry`.
///
/// For `s3://`, `gs://` and `az://` with `conditional_writes=auto` this runs the capability
/// probe, so it talks to the service.
pub async fn open(location: &str, options: &StorageOptions) -> Result<Arc<dyn ObjectStorage>> {
    let mut options = options.clone();
    let backend = open_backend(location, &mut options).await?;
    Ok(Arc::new(Retrying::new(backend, options.retry.clone())))
}

/// Like [`open`] but without the [`Retrying`] layer: for tests that inject faults beneath their
/// own `Retrying`, and for callers that retry themselves.
pub async fn open_without_retries(location: &str, options: &StorageOptions) -> Result<Arc<dyn ObjectStorage>> {
    let mut options = options.clone();
    open_backend(location, &mut options).await
}

async fn open_backend(location: &str, options: &mut StorageOptions) -> Result<Arc<dyn ObjectStorage>> {
    let parsed = parse_location(location, options)?;
    options.validate()?;
    match parsed {
        Location::Memory => Ok(Arc::new(memory::MemoryStore::new())),
        Location::File(root) => open_filesystem(root),
        Location::Bucket { scheme, bucket, prefix } => {
            Ok(Arc::new(cloud::open(scheme, &bucket, &prefix, options).await?))
        }
    }
}

#[cfg(unix)]
fn open_filesystem(root: std::path::PathBuf) -> Result<Arc<dyn ObjectStorage>> {
    fs::check_root(&root).map_err(|reason| Error::InvalidUrl {
        url: root.display().to_string(),
        reason,
    })?;
    Ok(Arc::new(fs::FileSystemStore::new(root)))
}

#[cfg(not(unix))]
fn open_filesystem(root: std::path::PathBuf) -> Result<Arc<dyn ObjectStorage>> {
    Err(Error::InvalidUrl {
        url: root.display().to_string(),
        reason: "the filesystem backend needs a Unix system (link, rename and flock semantics)".to_owned(),
    })
}

/// The README's examples, compiled and run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
