//! The object-store backends (`s3://`, `gs://`, `az://`) over `object_store`'s AmazonS3,
//! GoogleCloudStorage and MicrosoftAzure clients.
//!
//! object_store's own HTTP retries are switched off (`max_retries = 0`): the
//! [`Retrying`](crate::Retrying) layer above retries every operation, so a failure is never
//! retried by both. Errors are mapped here into [`Error`], classified as retriable (5xx except
//! 501/505, 408, 429, S3's 200-with-error-body, connect/request/timeout/interrupted transport
//! errors) or permanent, and scrubbed of the configured secrets.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UpdateVersion,
};
use rand::RngExt;

use crate::error::{Context, Error, Operation, Result};
use crate::key::{is_internal_name, validate_key, validate_prefix};
use crate::multipart::MultipartUpload;
use crate::options::{ConditionalWrites, RetryConfig, S3Encryption, Scheme, StorageOptions};
use crate::retry::run;
use crate::storage::{
    Capabilities, CapabilitySource, GetOutcome, Listing, ObjectMeta, ObjectStorage, ObjectStream, ObjectVersion,
    PutOutcome, check_range,
};

/// S3's (and GCS's and Azure's) minimum multipart part size.
const MIN_PART_SIZE: usize = 5 << 20;

/// The longest backend message kept in an error.
const MAX_MESSAGE: usize = 2000;

/// Removes secrets from messages.
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    secrets: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    pub(crate) fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        // Very short values would redact innocent text; real credentials are long.
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| s.len() >= 4).collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "<redacted>");
            }
        }
        if text.len() > MAX_MESSAGE {
            let mut end = MAX_MESSAGE;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push('…');
        }
        text
    }
}

/// Whether an object_store error is worth retrying.
fn is_retriable(error: &object_store::Error) -> bool {
    use object_store::client::{HttpError, HttpErrorKind};
    let mut text = String::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(http) = current.downcast_ref::<HttpError>() {
            return matches!(
                http.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
                    | HttpErrorKind::Decode
            );
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                TimedOut
                    | ConnectionReset
                    | ConnectionAborted
                    | ConnectionRefused
                    | BrokenPipe
                    | UnexpectedEof
                    | Interrupted
            ) {
                return true;
            }
        }
        text.push_str(&current.to_string());
        text.push('\n');
        source = current.source();
    }
    match http_status(&text) {
        Some(status) => matches!(status, 408 | 429) || (500..600).contains(&status) && status != 501 && status != 505,
        // S3 can answer 200 with an InternalError or SlowDown body.
        None => text.contains("Server returned error response"),
    }
}

/// The HTTP status in an object_store error message ("… status code: 503 Service Unavailable …").
fn http_status(text: &str) -> Option<u16> {
    let at = text.find("status code: ")? + "status code: ".len();
    text.get(at..at + 3)?.parse().ok()
}

/// State shared by the store and its uploads.
struct Shared {
    store: Arc<dyn ObjectStore>,
    multipart: Arc<dyn MultipartStore>,
    scheme: Scheme,
    /// The key prefix of the store's root, without slashes at either end.
    prefix: String,
    description: String,
    capabilities: Capabilities,
    /// Attributes of data objects (the S3 storage class).
    data_attributes: Attributes,
    redactor: Redactor,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("description", &self.description)
            .field("capabilities", &self.capabilities)
            .finish_non_exhaustive()
    }
}

/// A bucket (or container) on S3, GCS or Azure.
#[derive(Debug)]
pub(crate) struct CloudStore {
    shared: Arc<Shared>,
}

impl Shared {
    fn path(&self, key: &str) -> Result<Path> {
        let full = if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        };
        Path::parse(&full).map_err(|e| Error::InvalidKey {
            key: key.to_owned(),
            reason: leak_reason(&e),
        })
    }

    fn prefix_path(&self, prefix: &str) -> Result<Option<Path>> {
        let full = match (self.prefix.is_empty(), prefix.is_empty()) {
            (true, true) => return Ok(None),
            (false, true) => self.prefix.clone(),
            (true, false) => prefix.to_owned(),
            (false, false) => format!("{}/{prefix}", self.prefix),
        };
        Path::parse(&full).map(Some).map_err(|e| Error::InvalidKey {
            key: prefix.to_owned(),
            reason: leak_reason(&e),
        })
    }

    /// The key of a listed path relative to the root, or `None` if it is outside the root or an
    /// internal name.
    fn key_of(&self, path: &Path) -> Option<String> {
        let full = path.as_ref();
        let key = if self.prefix.is_empty() {
            full
        } else {
            full.strip_prefix(&self.prefix)?.strip_prefix('/')?
        };
        if key.is_empty() || key.split('/').any(is_internal_name) {
            return None;
        }
        Some(key.to_owned())
    }

    fn token(&self, e_tag: Option<String>, version: Option<String>) -> Option<ObjectVersion> {
        // GCS compares generations (object_store's `version`); S3 and Azure compare ETags.
        let token = match self.scheme {
            Scheme::Gcs => version,
            _ => e_tag,
        };
        token.map(ObjectVersion::new)
    }

    fn update_version(&self, expected: &ObjectVersion) -> UpdateVersion {
        let token = Some(expected.as_str().to_owned());
        match self.scheme {
            Scheme::Gcs => UpdateVersion {
                e_tag: None,
                version: token,
            },
            _ => UpdateVersion {
                e_tag: token,
                version: None,
            },
        }
    }

    fn meta(&self, key: String, meta: object_store::ObjectMeta) -> ObjectMeta {
        let version = self
            .token(meta.e_tag, meta.version)
            .unwrap_or_else(|| ObjectVersion::new(""));
        ObjectMeta {
            key,
            size: meta.size,
            version,
            last_modified: SystemTime::from(meta.last_modified),
        }
    }

    fn map_err(&self, cx: &Context<'_>, error: object_store::Error) -> Error {
        use object_store::Error as E;
        let message = || self.redactor.scrub(&error.to_string());
        match &error {
            E::NotFound { .. } => cx.not_found(),
            E::AlreadyExists { .. } => cx.already_exists(),
            E::Precondition { .. } | E::NotModified { .. } => cx.precondition(),
            E::PermissionDenied { .. } | E::Unauthenticated { .. } => cx.access_denied(message()),
            E::NotSupported { .. } | E::NotImplemented { .. } => cx.unsupported(message()),
            E::InvalidPath { .. } => Error::InvalidKey {
                key: cx.key.to_owned(),
                reason: "not a valid object path",
            },
            _ => cx.backend(message(), is_retriable(&error)),
        }
    }

    fn cx<'a>(&'a self, operation: Operation, key: &'a str) -> Context<'a> {
        Context::new(&self.description, operation, key)
    }

    /// Starts reading a whole object: its metadata and the response whose body is still to
    /// be read.
    async fn get_whole(&self, operation: Operation, key: &str) -> Result<(ObjectMeta, object_store::GetResult)> {
        validate_key(key)?;
        let cx = self.cx(operation, key);
        let path = self.path(key)?;
        let result = self
            .store
            .get_opts(&path, GetOptions::default())
            .await
            .map_err(|e| self.map_err(&cx, e))?;
        Ok((self.meta(key.to_owned(), result.meta.clone()), result))
    }

    async fn raw_put(
        &self,
        cx: &Context<'_>,
        path: &Path,
        data: Bytes,
        mode: PutMode,
        data_object: bool,
    ) -> Result<PutOutcome> {
        let attributes = if data_object {
            self.data_attributes.clone()
        } else {
            Attributes::new()
        };
        let options = PutOptions {
            mode,
            attributes,
            ..PutOptions::default()
        };
        let result: PutResult = self
            .store
            .put_opts(path, PutPayload::from(data), options)
            .await
            .map_err(|e| self.map_err(cx, e))?;
        let version = match self.token(result.e_tag, result.version) {
            Some(version) => version,
            None => {
                let meta = self.store.head(path).await.map_err(|e| self.map_err(cx, e))?;
                self.meta(cx.key.to_owned(), meta).version
            }
        };
        Ok(PutOutcome { version })
    }

    /// Tests what the service honours with a probe object under the root (see the crate docs).
    async fn probe(&self, retry: &RetryConfig) -> Result<(bool, bool)> {
        let name = format!(".kbs-probe-{:016x}", rand::rng().random::<u64>());
        let cx = &self.cx(Operation::Open, &name);
        let path = &self.path(&name)?;
        let body = |n: u8| Bytes::from(format!("kbs capability probe {n}"));

        // 1. A create-only write of a fresh key must succeed.
        let created = run(retry, cx, |attempt| async move {
            match self.raw_put(cx, path, body(1), PutMode::Create, false).await {
                // An earlier attempt landed: nobody else writes this random name.
                Err(Error::AlreadyExists { .. }) if attempt > 1 => Ok(()),
                other => other.map(drop),
            }
        })
        .await;
        let create_on_absent = match created {
            Ok(()) => true,
            Err(error @ Error::AccessDenied { .. }) => {
                tracing::warn!(store = %self.description, %error,
                    "cannot write the capability probe (read-only credentials?): reporting no conditional writes");
                return Ok((false, false));
            }
            Err(error) if error.is_retriable() || matches!(error, Error::RetriesExhausted { .. }) => return Err(error),
            Err(error) => {
                tracing::info!(store = %self.description, %error, "the store rejects create-only writes");
                run(retry, cx, |_| {
                    self.raw_put(cx, path, body(1), PutMode::Overwrite, false)
                })
                .await?;
                false
            }
        };
        let result = self.probe_existing(retry, cx, path).await;
        if let Err(error) = run(retry, cx, |_| async {
            self.store.delete(path).await.map_err(|e| self.map_err(cx, e))
        })
        .await
        {
            tracing::warn!(store = %self.description, %error, probe = %path, "could not delete the capability probe object");
        }
        let (create_on_existing_rejected, update) = result?;
        Ok((create_on_absent && create_on_existing_rejected, update))
    }

    /// Steps 2–5 of the probe, on the existing probe object.
    async fn probe_existing(&self, retry: &RetryConfig, cx: &Context<'_>, path: &Path) -> Result<(bool, bool)> {
        let body = |n: u8| Bytes::from(format!("kbs capability probe {n}"));
        // 2. A create-only write of the existing key must fail with AlreadyExists.
        let create_rejected = match run(retry, cx, |_| self.raw_put(cx, path, body(2), PutMode::Create, false)).await {
            Err(Error::AlreadyExists { .. }) => true,
            Ok(_) => false,
            Err(error) if matches!(error, Error::RetriesExhausted { .. }) || error.is_retriable() => return Err(error),
            Err(_) => false,
        };
        // 3. A compare-and-swap with a wrong ETag must fail with Precondition.
        let wrong = ObjectVersion::new(match self.scheme {
            Scheme::Gcs => "1",
            _ => "\"00000000000000000000000000000000\"",
        });
        let wrong_rejected = match run(retry, cx, |_| {
            self.raw_put(cx, path, body(3), PutMode::Update(self.update_version(&wrong)), false)
        })
        .await
        {
            Err(Error::Precondition { .. }) => true,
            Ok(_) => false,
            Err(error) if matches!(error, Error::RetriesExhausted { .. }) || error.is_retriable() => return Err(error),
            Err(_) => false,
        };
        // 4. A compare-and-swap with the current ETag must succeed.
        let current = run(retry, cx, |_| async {
            self.store.head(path).await.map_err(|e| self.map_err(cx, e))
        })
        .await?;
        let current = self.meta(cx.key.to_owned(), current).version;
        let right_accepted = run(retry, cx, |_| {
            self.raw_put(cx, path, body(4), PutMode::Update(self.update_version(&current)), false)
        })
        .await
        .is_ok();
        Ok((create_rejected, wrong_rejected && right_accepted))
    }
}

/// object_store's path errors, as a static reason.
fn leak_reason(_: &object_store::path::Error) -> &'static str {
    "not a valid object path"
}

/// Opens a bucket store: builds the client, then probes or takes the declared capabilities.
pub(crate) async fn open(scheme: Scheme, bucket: &str, prefix: &str, options: &StorageOptions) -> Result<CloudStore> {
    let open_cx_description = format!("{}://{bucket}/{prefix}", scheme.as_str());
    let cx = Context::new(&open_cx_description, Operation::Open, "");
    let mut redactor_secrets = options.secrets();
    // `request_timeout` is a stall limit (no byte read for that long), not a limit on the whole
    // request: a total limit would cut the streaming of large objects on slow links.
    let client = ClientOptions::new()
        .with_timeout_disabled()
        .with_read_timeout(options.request_timeout)
        .with_connect_timeout(options.connect_timeout)
        .with_allow_http(options.s3_allow_http);
    // Our Retrying layer retries; object_store must not retry too.
    let no_retries = object_store::RetryConfig {
        max_retries: 0,
        retry_timeout: Duration::ZERO,
        ..Default::default()
    };
    let mut data_attributes = Attributes::new();
    let (store, multipart, description): (Arc<dyn ObjectStore>, Arc<dyn MultipartStore>, String) = match scheme {
        Scheme::S3 => {
            let builder = s3_builder(bucket, options, client, no_retries)?;
            for key in [
                AmazonS3ConfigKey::AccessKeyId,
                AmazonS3ConfigKey::SecretAccessKey,
                AmazonS3ConfigKey::Token,
            ] {
                redactor_secrets.extend(builder.get_config_value(&key));
            }
            let endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint);
            if let Some(class) = options.s3_storage_class {
                data_attributes.insert(Attribute::StorageClass, class.as_str().into());
            }
            let s3 = builder
                .build()
                .map_err(|e| cx.backend(Redactor::new(redactor_secrets.clone()).scrub(&e.to_string()), false))?;
            let s3 = Arc::new(s3);
            let mut description = format!("s3://{bucket}{}", slash_prefix(prefix));
            if let Some(endpoint) = endpoint {
                description.push_str(&format!(" at {endpoint}"));
            }
            (s3.clone(), s3, description)
        }
        Scheme::Gcs => {
            let mut builder = GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .with_retry(no_retries)
                .with_client_options(client);
            if let Some(path) = &options.gcs_service_account_path {
                builder = builder.with_service_account_path(path.to_string_lossy());
            }
            let gcs = builder
                .build()
                .map_err(|e| cx.backend(Redactor::new(redactor_secrets.clone()).scrub(&e.to_string()), false))?;
            let gcs = Arc::new(gcs);
            (gcs.clone(), gcs, format!("gs://{bucket}{}", slash_prefix(prefix)))
        }
        Scheme::Azure => {
            let mut builder = MicrosoftAzureBuilder::from_env()
                .with_container_name(bucket)
                .with_retry(no_retries)
                .with_client_options(client);
            if let Some(account) = &options.azure_account {
                builder = builder.with_account(account);
            }
            if let Some(key) = &options.azure_access_key {
                builder = builder.with_access_key(key.expose());
            }
            if let Some(endpoint) = &options.azure_endpoint {
                builder = builder
                    .with_endpoint(endpoint.clone())
                    .with_allow_http(endpoint.starts_with("http://"));
            }
            redactor_secrets.extend(builder.get_config_value(&AzureConfigKey::AccessKey));
            let azure = builder
                .build()
                .map_err(|e| cx.backend(Redactor::new(redactor_secrets.clone()).scrub(&e.to_string()), false))?;
            let azure = Arc::new(azure);
            (azure.clone(), azure, format!("az://{bucket}{}", slash_prefix(prefix)))
        }
        Scheme::File | Scheme::Memory => unreachable!("open() routes only bucket schemes here"),
    };
    let mut shared = Shared {
        store,
        multipart,
        scheme,
        prefix: prefix.to_owned(),
        description,
        capabilities: Capabilities {
            conditional_create: false,
            conditional_update: false,
            source: CapabilitySource::Declared,
            min_part_size: MIN_PART_SIZE,
        },
        data_attributes,
        redactor: Redactor::new(redactor_secrets),
    };
    match options.conditional_writes {
        ConditionalWrites::Enabled => {
            shared.capabilities.conditional_create = true;
            shared.capabilities.conditional_update = true;
        }
        ConditionalWrites::Disabled => {}
        ConditionalWrites::Auto => {
            let (create, update) = shared.probe(&options.retry).await?;
            tracing::info!(store = %shared.description, conditional_create = create, conditional_update = update,
                "probed conditional-write support");
            shared.capabilities.conditional_create = create;
            shared.capabilities.conditional_update = update;
            shared.capabilities.source = CapabilitySource::Probe;
        }
    }
    Ok(CloudStore {
        shared: Arc::new(shared),
    })
}

fn slash_prefix(prefix: &str) -> String {
    if prefix.is_empty() {
        String::new()
    } else {
        format!("/{prefix}")
    }
}

/// The AmazonS3 builder for `options`: the environment first (the standard AWS variables), then
/// a shared-credentials profile if neither the options nor the environment have keys, then the
/// explicit options.
fn s3_builder(
    bucket: &str,
    options: &StorageOptions,
    client: ClientOptions,
    retry: object_store::RetryConfig,
) -> Result<AmazonS3Builder> {
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_retry(retry)
        .with_client_options(client)
        .with_allow_http(options.s3_allow_http)
        .with_conditional_put(S3ConditionalPut::ETagMatch);
    match (&options.s3_access_key_id, &options.s3_secret_access_key) {
        (Some(id), Some(secret)) => {
            builder = builder
                .with_access_key_id(id.expose())
                .with_secret_access_key(secret.expose());
            if let Some(token) = &options.s3_session_token {
                builder = builder.with_token(token.expose());
            }
        }
        (None, None) => {
            if builder.get_config_value(&AmazonS3ConfigKey::AccessKeyId).is_none()
                && let Some(profile) = crate::aws_profile::load()
            {
                builder = builder
                    .with_access_key_id(profile.access_key_id.expose())
                    .with_secret_access_key(profile.secret_access_key.expose());
                if let Some(token) = &profile.session_token {
                    builder = builder.with_token(token.expose());
                }
                if let Some(region) = &profile.region
                    && builder.get_config_value(&AmazonS3ConfigKey::Region).is_none()
                {
                    builder = builder.with_region(region);
                }
            }
        }
        _ => {
            return Err(Error::InvalidOption {
                name: "s3_access_key_id".to_owned(),
                reason: "s3_access_key_id and s3_secret_access_key must be given together".to_owned(),
            });
        }
    }
    if let Some(region) = &options.s3_region {
        builder = builder.with_region(region);
    }
    let endpoint = options
        .s3_endpoint
        .clone()
        .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Endpoint));
    let virtual_host = match options.s3_path_style {
        Some(path_style) => !path_style,
        None => endpoint.is_none(),
    };
    builder = builder.with_virtual_hosted_style_request(virtual_host);
    if let Some(endpoint) = endpoint {
        let endpoint = if virtual_host {
            bucket_host(&endpoint, bucket)?
        } else {
            endpoint
        };
        builder = builder.with_endpoint(endpoint);
    }
    // object_store does not export the encryption config key type; its string names are stable.
    let sse_key = |name: &str| name.parse::<AmazonS3ConfigKey>();
    let encryption = match &options.s3_sse {
        None => None,
        Some(S3Encryption::S3Managed) => Some(("AES256", None)),
        Some(S3Encryption::Kms { key_id }) => Some(("aws:kms", key_id.as_deref())),
        Some(S3Encryption::DualLayerKms { key_id }) => Some(("aws:kms:dsse", key_id.as_deref())),
        Some(S3Encryption::CustomerKey(key)) => {
            builder = builder.with_ssec_encryption(key.expose());
            None
        }
    };
    if let Some((kind, key_id)) = encryption {
        let invalid = |e: object_store::Error| Error::InvalidOption {
            name: "s3_sse".to_owned(),
            reason: e.to_string(),
        };
        builder = builder.with_config(sse_key("aws_server_side_encryption").map_err(invalid)?, kind);
        if let Some(key_id) = key_id {
            builder = builder.with_config(sse_key("aws_sse_kms_key_id").map_err(invalid)?, key_id);
        }
    }
    Ok(builder)
}

/// `http://host:port` → `http://bucket.host:port` for virtual-host addressing.
fn bucket_host(endpoint: &str, bucket: &str) -> Result<String> {
    let invalid = |reason: &str| Error::InvalidOption {
        name: "s3_endpoint".to_owned(),
        reason: reason.to_owned(),
    };
    let mut url = url::Url::parse(endpoint).map_err(|_| invalid("not a URL"))?;
    let host = url.host_str().ok_or_else(|| invalid("has no host"))?.to_owned();
    url.set_host(Some(&format!("{bucket}.{host}")))
        .map_err(|_| invalid("cannot prefix the bucket to the host"))?;
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

impl CloudStore {
    fn gate(&self, cx: &Context<'_>, supported: bool, what: &str) -> Result<()> {
        if supported {
            return Ok(());
        }
        Err(cx.unsupported(format!(
            "the store does not honour {what} ({:?}); set conditional_writes=enabled only if you know it does",
            self.shared.capabilities.source
        )))
    }
}

#[async_trait]
impl ObjectStorage for CloudStore {
    fn describe(&self) -> &str {
        &self.shared.description
    }

    fn capabilities(&self) -> Capabilities {
        self.shared.capabilities
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<PutOutcome> {
        validate_key(key)?;
        let cx = self.shared.cx(Operation::Put, key);
        let path = self.shared.path(key)?;
        self.shared.raw_put(&cx, &path, data, PutMode::Overwrite, true).await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<PutOutcome> {
        validate_key(key)?;
        let cx = self.shared.cx(Operation::PutIfAbsent, key);
        self.gate(
            &cx,
            self.shared.capabilities.conditional_create,
            "create-only writes (If-None-Match)",
        )?;
        let path = self.shared.path(key)?;
        self.shared.raw_put(&cx, &path, data, PutMode::Create, false).await
    }

    async fn put_if_match(&self, key: &str, data: Bytes, expected: &ObjectVersion) -> Result<PutOutcome> {
        validate_key(key)?;
        let cx = self.shared.cx(Operation::PutIfMatch, key);
        self.gate(
            &cx,
            self.shared.capabilities.conditional_update,
            "compare-and-swap writes (If-Match)",
        )?;
        let path = self.shared.path(key)?;
        let mode = PutMode::Update(self.shared.update_version(expected));
        match self.shared.raw_put(&cx, &path, data, mode, false).await {
            // S3 answers 409 Conflict to concurrent conditional writes; object_store reports it as
            // AlreadyExists. It is transient: the retry will see 412 or succeed.
            Err(Error::AlreadyExists { .. }) => Err(cx.backend("conflicting concurrent write (409)", true)),
            other => other,
        }
    }

    async fn get(&self, key: &str) -> Result<GetOutcome> {
        let (meta, result) = self.shared.get_whole(Operation::Get, key).await?;
        let cx = self.shared.cx(Operation::Get, key);
        let bytes = result.bytes().await.map_err(|e| self.shared.map_err(&cx, e))?;
        Ok(GetOutcome { meta, bytes })
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        validate_key(key)?;
        let cx = self.shared.cx(Operation::GetRange, key);
        let path = self.shared.path(key)?;
        if range.start >= range.end {
            // Nothing to read; the range must still lie within the object.
            let meta = self
                .shared
                .store
                .head(&path)
                .await
                .map_err(|e| self.shared.map_err(&cx, e))?;
            check_range(&cx, &range, meta.size)?;
            return Ok(Bytes::new());
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(range.clone())),
            ..GetOptions::default()
        };
        match self.shared.store.get_opts(&path, options).await {
            Ok(result) => {
                check_range(&cx, &range, result.meta.size)?;
                result.bytes().await.map_err(|e| self.shared.map_err(&cx, e))
            }
            Err(error) => {
                let mapped = self.shared.map_err(&cx, error);
                if mapped.is_retriable() || mapped.is_not_found() {
                    return Err(mapped);
                }
                // A range past the end is refused (416); say so with the object's size.
                match self.shared.store.head(&path).await {
                    Ok(meta) => check_range(&cx, &range, meta.size).and(Err(mapped)),
                    Err(_) => Err(mapped),
                }
            }
        }
    }

    async fn get_stream(&self, key: &str) -> Result<ObjectStream> {
        let (meta, result) = self.shared.get_whole(Operation::GetStream, key).await?;
        let shared = Arc::clone(&self.shared);
        let key = key.to_owned();
        let chunks = result
            .into_stream()
            .map_err(move |e| {
                let cx = shared.cx(Operation::GetStream, &key);
                shared.map_err(&cx, e)
            })
            .boxed();
        Ok(ObjectStream { meta, chunks })
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        validate_key(key)?;
        let cx = self.shared.cx(Operation::Head, key);
        let path = self.shared.path(key)?;
        let meta = self
            .shared
            .store
            .head(&path)
            .await
            .map_err(|e| self.shared.map_err(&cx, e))?;
        Ok(self.shared.meta(key.to_owned(), meta))
    }

    fn list(&self, prefix: &str, start_after: Option<&str>) -> BoxStream<'static, Result<ObjectMeta>> {
        let prepared = validate_prefix(prefix).and_then(|prefix| {
            let list_path = self.shared.prefix_path(prefix)?;
            let offset = start_after.map(|after| self.shared.path(after)).transpose()?;
            Ok((prefix.to_owned(), list_path, offset))
        });
        let (prefix, list_path, offset) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => return stream::once(async move { Err(e) }).boxed(),
        };
        let inner = match &offset {
            Some(offset) => self.shared.store.list_with_offset(list_path.as_ref(), offset),
            None => self.shared.store.list(list_path.as_ref()),
        };
        let shared = Arc::clone(&self.shared);
        inner
            .filter_map(move |item| {
                let out = match item {
                    Ok(meta) => shared.key_of(&meta.location).map(|key| Ok(shared.meta(key, meta))),
                    Err(e) => Some(Err(shared.map_err(&shared.cx(Operation::List, &prefix), e))),
                };
                futures::future::ready(out)
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: &str) -> Result<Listing> {
        let prefix = validate_prefix(prefix)?;
        let cx = self.shared.cx(Operation::List, prefix);
        let list_path = self.shared.prefix_path(prefix)?;
        let result = self
            .shared
            .store
            .list_with_delimiter(list_path.as_ref())
            .await
            .map_err(|e| self.shared.map_err(&cx, e))?;
        let mut common_prefixes: Vec<String> = result
            .common_prefixes
            .iter()
            .filter_map(|path| self.shared.key_of(path))
            .collect();
        let mut objects: Vec<ObjectMeta> = result
            .objects
            .into_iter()
            .filter_map(|meta| {
                self.shared
                    .key_of(&meta.location)
                    .map(|key| self.shared.meta(key, meta))
            })
            .collect();
        common_prefixes.sort();
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Listing {
            common_prefixes,
            objects,
        })
    }

    async fn delete(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        let cx = self.shared.cx(Operation::Delete, key);
        let path = self.shared.path(key)?;
        match self.shared.store.delete(&path).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.shared.map_err(&cx, e)),
        }
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        use futures::StreamExt as _;
        let mut paths = Vec::with_capacity(keys.len());
        for key in keys {
            validate_key(key)?;
            paths.push(Ok(self.shared.path(key)?));
        }
        // object_store batches these into DeleteObjects requests on S3 (and deletes one by one
        // where a backend has no bulk delete).
        let mut results = self.shared.store.delete_stream(futures::stream::iter(paths).boxed());
        while let Some(result) = results.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    let first = keys.first().map_or("", String::as_str);
                    return Err(self.shared.map_err(&self.shared.cx(Operation::DeleteMany, first), e));
                }
            }
        }
        Ok(())
    }

    async fn start_multipart(&self, key: &str) -> Result<Box<dyn MultipartUpload>> {
        validate_key(key)?;
        let cx = self.shared.cx(Operation::MultipartStart, key);
        let path = self.shared.path(key)?;
        let options = PutMultipartOptions {
            attributes: self.shared.data_attributes.clone(),
            ..Default::default()
        };
        let id = self
            .shared
            .multipart
            .create_multipart_opts(&path, options)
            .await
            .map_err(|e| self.shared.map_err(&cx, e))?;
        Ok(Box::new(CloudUpload {
            shared: Arc::clone(&self.shared),
            key: key.to_owned(),
            path,
            id,
            parts: Mutex::new(BTreeMap::new()),
            finished: AtomicBool::new(false),
        }))
    }
}

/// A multipart upload on S3/GCS/Azure.
#[derive(Debug)]
struct CloudUpload {
    shared: Arc<Shared>,
    key: String,
    path: Path,
    id: String,
    parts: Mutex<BTreeMap<usize, PartId>>,
    /// Completed or aborted: nothing to clean up on drop.
    finished: AtomicBool,
}

impl CloudUpload {
    fn parts(&self) -> MutexGuard<'_, BTreeMap<usize, PartId>> {
        self.parts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl MultipartUpload for CloudUpload {
    async fn put_part(&self, index: usize, data: Bytes) -> Result<()> {
        let cx = self.shared.cx(Operation::MultipartPart, &self.key);
        let part = self
            .shared
            .multipart
            .put_part(&self.path, &self.id, index, PutPayload::from(data))
            .await
            .map_err(|e| self.shared.map_err(&cx, e))?;
        self.parts().insert(index, part);
        Ok(())
    }

    async fn complete(&self) -> Result<PutOutcome> {
        let cx = self.shared.cx(Operation::MultipartComplete, &self.key);
        let parts: Vec<PartId> = {
            let parts = self.parts();
            if parts.keys().enumerate().any(|(expected, index)| expected != *index) {
                return Err(cx.backend("the uploaded parts are not numbered 0..n", false));
            }
            parts.values().cloned().collect()
        };
        if parts.is_empty() {
            // Some servers (Garage) refuse empty parts: an empty object is a plain write.
            if let Err(error) = self.shared.multipart.abort_multipart(&self.path, &self.id).await {
                tracing::debug!(%error, "aborting an empty multipart upload failed");
            }
            self.finished.store(true, Ordering::SeqCst);
            return self
                .shared
                .raw_put(&cx, &self.path, Bytes::new(), PutMode::Overwrite, true)
                .await;
        }
        let result = self
            .shared
            .multipart
            .complete_multipart(&self.path, &self.id, parts)
            .await
            .map_err(|e| self.shared.map_err(&cx, e))?;
        self.finished.store(true, Ordering::SeqCst);
        let version = match self.shared.token(result.e_tag, result.version) {
            Some(version) => version,
            None => {
                let meta = self
                    .shared
                    .store
                    .head(&self.path)
                    .await
                    .map_err(|e| self.shared.map_err(&cx, e))?;
                self.shared.meta(self.key.clone(), meta).version
            }
        };
        Ok(PutOutcome { version })
    }

    async fn abort(&self) -> Result<()> {
        let cx = self.shared.cx(Operation::MultipartAbort, &self.key);
        self.shared
            .multipart
            .abort_multipart(&self.path, &self.id)
            .await
            .map_err(|e| self.shared.map_err(&cx, e))?;
        self.finished.store(true, Ordering::SeqCst);
        Ok(())
    }
}

impl Drop for CloudUpload {
    fn drop(&mut self) {
        if self.finished.load(Ordering::SeqCst) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(key = %self.key, "a multipart upload was dropped outside a runtime; it stays invisible until the bucket's lifecycle rule removes it");
            return;
        };
        let multipart = Arc::clone(&self.shared.multipart);
        let path = self.path.clone();
        let id = self.id.clone();
        runtime.spawn(async move {
            if let Err(error) = multipart.abort_multipart(&path, &id).await {
                tracing::warn!(%error, "aborting a dropped multipart upload failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_found_in_messages() {
        assert_eq!(
            http_status("Error performing PUT x - Server returned non-2xx status code: 503 Service Unavailable: "),
            Some(503)
        );
        assert_eq!(http_status("no status here"), None);
    }

    #[test]
    fn redactor_scrubs_every_secret() {
        let redactor = Redactor::new(["AKIAEXAMPLE".to_owned(), "s3cr3t-value".to_owned(), "ab".to_owned()]);
        let text = redactor.scrub("<AWSAccessKeyId>AKIAEXAMPLE</AWSAccessKeyId> s3cr3t-value ab");
        assert_eq!(text, "<AWSAccessKeyId><redacted></AWSAccessKeyId> <redacted> ab");
        assert!(redactor.scrub(&"x".repeat(5000)).chars().count() <= MAX_MESSAGE + 1);
    }

    #[test]
    fn virtual_host_endpoints_get_the_bucket() {
        // An IP address cannot take a bucket label.
        assert!(
            bucket_host("http://127.0.0.1:9000", "b")
                .unwrap_err()
                .to_string()
                .contains("s3_endpoint")
        );
        assert_eq!(
            bucket_host("http://localhost:9000/", "b").unwrap(),
            "http://b.localhost:9000"
        );
        assert_eq!(
            bucket_host("https://s3.example.com", "bkt").unwrap(),
            "https://bkt.s3.example.com"
        );
    }

    fn build_only(url: &str, options: StorageOptions) -> Result<CloudStore> {
        let mut options = options.with_conditional_writes(ConditionalWrites::Disabled);
        let crate::options::Location::Bucket { scheme, bucket, prefix } =
            crate::options::parse_location(url, &mut options)?
        else {
            panic!("not a bucket URL");
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(open(scheme, &bucket, &prefix, &options))
    }

    #[test]
    fn s3_gcs_and_azure_clients_build_from_options() {
        let s3 = build_only(
            "s3://bkt/pre/fix?region=eu-west-1&storage_class=GLACIER_IR&sse=aws:kms&sse_kms_key_id=alias/k",
            StorageOptions::default().with_s3_credentials("AKIDEXAMPLE", "secret-example"),
        )
        .unwrap();
        assert_eq!(s3.describe(), "s3://bkt/pre/fix");
        assert_eq!(s3.capabilities().min_part_size, MIN_PART_SIZE);
        assert!(!s3.capabilities().conditional_create);
        assert_eq!(
            s3.shared
                .data_attributes
                .get(&Attribute::StorageClass)
                .map(|v| v.as_ref()),
            Some("GLACIER_IR")
        );
        let s3 = build_only(
            "s3://bkt?endpoint=http://127.0.0.1:9000&allow_http=true",
            StorageOptions::default().with_s3_credentials("AKIDEXAMPLE", "secret-example"),
        )
        .unwrap();
        assert_eq!(s3.describe(), "s3://bkt at http://127.0.0.1:9000");

        // Without a service account the client builds (credentials resolve lazily from the
        // environment or the metadata server).
        let gcs = build_only(
            "gs://bkt/pre?max_attempts=3&request_timeout=10s",
            StorageOptions::default(),
        )
        .unwrap();
        assert_eq!(gcs.describe(), "gs://bkt/pre");
        assert_eq!(gcs.capabilities().min_part_size, MIN_PART_SIZE);
        // A service account file with a broken key is refused at open, without echoing the key.
        let sa = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            sa.path(),
            r#"{"type":"service_account","private_key":"-----BEGIN PRIVATE KEY-----\nMIIBkeymaterial\n-----END PRIVATE KEY-----\n","client_email":"kbs@example.iam.gserviceaccount.com","private_key_id":"1"}"#,
        )
        .unwrap();
        let error = build_only(
            &format!("gs://bkt/pre?service_account_path={}", sa.path().display()),
            StorageOptions::default(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("RSA"), "{error}");
        assert!(!error.to_string().contains("MIIBkeymaterial"), "{error}");

        let options = StorageOptions {
            azure_access_key: Some(crate::Secret::new("YWNjb3VudC1rZXk=")),
            ..StorageOptions::default()
        };
        let azure = build_only(
            "az://container/pre?account=acct&endpoint=http://127.0.0.1:10000/acct",
            options,
        )
        .unwrap();
        assert_eq!(azure.describe(), "az://container/pre");
        assert_eq!(azure.capabilities().source, CapabilitySource::Declared);
    }

    #[test]
    fn half_given_credentials_are_refused() {
        let options = StorageOptions {
            s3_access_key_id: Some(crate::Secret::new("AKIDEXAMPLE")),
            ..StorageOptions::default()
        };
        let err = build_only("s3://bkt", options).unwrap_err();
        assert!(err.to_string().contains("together"), "{err}");
        assert!(!err.to_string().contains("AKIDEXAMPLE"));
    }
}
