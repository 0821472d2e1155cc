//! Storage options (typed struct and URL query parameters) and URL parsing.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, Result};

/// A secret string (secret key, session token, account key). Its `Debug` output is
/// `Secret(<redacted>)` and it has no `Display`, so it cannot leak through formatting.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for handing to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

/// Whether the store honours conditional writes (`If-None-Match: *` / `If-Match`): the option
/// that lets users declare what a probe might get wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConditionalWrites {
    /// Probe the store at open time (object stores); the filesystem and memory backends always
    /// support them.
    #[default]
    Auto,
    /// Trust the store to honour both headers; no probe.
    Enabled,
    /// Treat the store as not honouring them: `put_if_absent` and `put_if_match` fail with
    /// [`Error::Unsupported`]; no probe.
    Disabled,
}

impl FromStr for ConditionalWrites {
    type Err = Error;
    fn from_str(value: &str) -> Result<Self> {
        match value.to_ascii_lowercase().as_str() {
            "auto" => Ok(ConditionalWrites::Auto),
            "enabled" | "true" | "on" => Ok(ConditionalWrites::Enabled),
            "disabled" | "false" | "off" => Ok(ConditionalWrites::Disabled),
            _ => Err(invalid(
                "conditional_writes",
                format!("{value:?} is not auto, enabled or disabled"),
            )),
        }
    }
}

/// The S3 storage class of data objects (see the crate docs for which writes use it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum S3StorageClass {
    /// `STANDARD`.
    Standard,
    /// `STANDARD_IA`.
    StandardIa,
    /// `GLACIER_IR` (Glacier Instant Retrieval).
    GlacierIr,
    /// `GLACIER` (Glacier Flexible Retrieval: objects must be restored before reading).
    Glacier,
}

impl S3StorageClass {
    /// The value of the `x-amz-storage-class` header.
    pub fn as_str(self) -> &'static str {
        match self {
            S3StorageClass::Standard => "STANDARD",
            S3StorageClass::StandardIa => "STANDARD_IA",
            S3StorageClass::GlacierIr => "GLACIER_IR",
            S3StorageClass::Glacier => "GLACIER",
        }
    }
}

impl FromStr for S3StorageClass {
    type Err = Error;
    fn from_str(value: &str) -> Result<Self> {
        match value.to_ascii_uppercase().as_str() {
            "STANDARD" => Ok(S3StorageClass::Standard),
            "STANDARD_IA" => Ok(S3StorageClass::StandardIa),
            "GLACIER_IR" => Ok(S3StorageClass::GlacierIr),
            "GLACIER" => Ok(S3StorageClass::Glacier),
            _ => Err(invalid(
                "s3_storage_class",
                format!("{value:?} is not STANDARD, STANDARD_IA, GLACIER_IR or GLACIER"),
            )),
        }
    }
}

/// S3 server-side encryption.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum S3Encryption {
    /// SSE-S3 (`AES256`).
    S3Managed,
    /// SSE-KMS (`aws:kms`), with the bucket's default key unless one is given.
    Kms {
        /// The KMS key id or ARN.
        key_id: Option<String>,
    },
    /// DSSE-KMS (`aws:kms:dsse`).
    DualLayerKms {
        /// The KMS key id or ARN.
        key_id: Option<String>,
    },
    /// SSE-C with a customer-provided key (base64 of 32 bytes); needed for reads as well.
    CustomerKey(Secret),
}

impl S3Encryption {
    /// Parses the `sse` query parameter (`AES256`, `aws:kms`, `aws:kms:dsse`); SSE-C keys are
    /// secrets and only accepted through [`StorageOptions::s3_sse`].
    fn from_query(value: &str, key_id: Option<String>) -> Result<Self> {
        match value {
            "AES256" | "aes256" => {
                if key_id.is_some() {
                    return Err(invalid("sse_kms_key_id", "only applies to sse=aws:kms or aws:kms:dsse"));
                }
                Ok(S3Encryption::S3Managed)
            }
            "aws:kms" => Ok(S3Encryption::Kms { key_id }),
            "aws:kms:dsse" => Ok(S3Encryption::DualLayerKms { key_id }),
            _ => Err(invalid(
                "sse",
                format!("{value:?} is not AES256, aws:kms or aws:kms:dsse"),
            )),
        }
    }
}

/// How [`Retrying`](crate::Retrying) retries: exponential backoff with jitter, bounded by a
/// number of attempts and a total time.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryConfig {
    /// Attempts in total, the first included (1 = no retries). Default 10.
    pub max_attempts: u32,
    /// The backoff before the first retry (before jitter). Default 100 ms.
    pub initial_backoff: Duration,
    /// The cap of the exponential backoff. Default 10 s.
    pub max_backoff: Duration,
    /// No retry starts after this much time since the first attempt. Default 120 s.
    pub max_elapsed: Duration,
    /// A time limit for each attempt, after which it counts as a (retriable) timeout. Default
    /// none: HTTP backends already bound each request with
    /// [`StorageOptions::request_timeout`].
    pub attempt_timeout: Option<Duration>,
    /// Who hears of each retry (none by default), e.g. to count them as metrics.
    pub observer: Option<RetryObserverHook>,
}

/// Hears of the retries of [`Retrying`](crate::Retrying). Implementations must be quick and
/// must not block: they run on the retrying task.
pub trait RetryObserver: Send + Sync {
    /// `error` (retriable) ended attempt `attempt`; the next starts after `delay`.
    fn retrying(&self, error: &crate::Error, attempt: u32, delay: Duration);
}

/// A [`RetryObserver`] in a [`RetryConfig`]: configurations with the same observer compare
/// equal.
#[derive(Clone)]
pub struct RetryObserverHook(pub std::sync::Arc<dyn RetryObserver>);

impl std::fmt::Debug for RetryObserverHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetryObserverHook")
    }
}

impl PartialEq for RetryObserverHook {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for RetryObserverHook {}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            max_elapsed: Duration::from_secs(120),
            attempt_timeout: None,
            observer: None,
        }
    }
}

impl RetryConfig {
    /// A configuration that never retries.
    pub fn no_retries() -> Self {
        RetryConfig {
            max_attempts: 1,
            ..RetryConfig::default()
        }
    }

    /// The same configuration with other attempt and time bounds.
    pub fn with_limits(mut self, max_attempts: u32, max_elapsed: Duration) -> Self {
        self.max_attempts = max_attempts;
        self.max_elapsed = max_elapsed;
        self
    }

    /// The same configuration with another backoff range.
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max;
        self
    }

    /// The same configuration, telling `observer` of every retry.
    pub fn with_observer(mut self, observer: std::sync::Arc<dyn RetryObserver>) -> Self {
        self.observer = Some(RetryObserverHook(observer));
        self
    }

    /// The same configuration with a per-attempt time limit.
    pub fn with_attempt_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    fn validate(&self) -> Result<()> {
        if self.max_attempts == 0 {
            return Err(invalid("max_attempts", "must be at least 1"));
        }
        if self.initial_backoff > self.max_backoff {
            return Err(invalid("retry", "initial_backoff is larger than max_backoff"));
        }
        Ok(())
    }
}

/// Options of [`open`](crate::open). Field names are the names the CLI exposes; the URL query
/// parameters in the crate docs set the same fields (and win over the struct).
///
/// `Debug` never shows secrets (they are [`Secret`]s).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StorageOptions {
    /// S3 endpoint URL for S3-compatible servers, e.g. `http://127.0.0.1:9000`. Query: `endpoint`.
    pub s3_endpoint: Option<String>,
    /// S3 region. Query: `region`. Default: `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`.
    pub s3_region: Option<String>,
    /// Path-style (`true`) or virtual-host (`false`) addressing. Query: `path_style`. Default:
    /// path style with a custom endpoint, virtual host on AWS.
    pub s3_path_style: Option<bool>,
    /// Allow plain `http://` endpoints (local servers). Query: `allow_http`.
    pub s3_allow_http: bool,
    /// Static access key id; with the secret below. Default: the standard AWS chain
    /// (environment, shared credentials profile, web identity, container, instance metadata).
    pub s3_access_key_id: Option<Secret>,
    /// Static secret access key.
    pub s3_secret_access_key: Option<Secret>,
    /// Session token for temporary credentials.
    pub s3_session_token: Option<Secret>,
    /// Storage class of data objects. Query: `storage_class`.
    pub s3_storage_class: Option<S3StorageClass>,
    /// Server-side encryption. Query: `sse` and `sse_kms_key_id`.
    pub s3_sse: Option<S3Encryption>,
    /// GCS service account JSON file. Query: `service_account_path`. Default: the environment
    /// (`GOOGLE_*`) and application default credentials.
    pub gcs_service_account_path: Option<PathBuf>,
    /// Azure storage account. Query: `account`. Default: `AZURE_STORAGE_ACCOUNT_NAME`.
    pub azure_account: Option<String>,
    /// Azure storage account key. Default: the environment (`AZURE_*`).
    pub azure_access_key: Option<Secret>,
    /// Azure endpoint URL (e.g. an emulator). Query: `endpoint`.
    pub azure_endpoint: Option<String>,
    /// Stall limit of HTTP requests: a request fails (retriably) when no response byte arrives
    /// for this long, also in the middle of a streamed body. Query: `request_timeout` (e.g.
    /// `30s`). Default 30 s.
    pub request_timeout: Duration,
    /// Time limit for connecting. Query: `connect_timeout`. Default 5 s.
    pub connect_timeout: Duration,
    /// Retries. Query: `max_attempts`, `retry_timeout` (sets `max_elapsed`).
    pub retry: RetryConfig,
    /// Conditional-write support. Query: `conditional_writes` (`auto`, `enabled`, `disabled`).
    pub conditional_writes: ConditionalWrites,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            s3_endpoint: None,
            s3_region: None,
            s3_path_style: None,
            s3_allow_http: false,
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_session_token: None,
            s3_storage_class: None,
            s3_sse: None,
            gcs_service_account_path: None,
            azure_account: None,
            azure_access_key: None,
            azure_endpoint: None,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            retry: RetryConfig::default(),
            conditional_writes: ConditionalWrites::Auto,
        }
    }
}

impl StorageOptions {
    /// Options with static S3 credentials.
    pub fn with_s3_credentials(
        mut self,
        access_key_id: impl Into<Secret>,
        secret_access_key: impl Into<Secret>,
    ) -> Self {
        self.s3_access_key_id = Some(access_key_id.into());
        self.s3_secret_access_key = Some(secret_access_key.into());
        self
    }

    /// Options with an S3 endpoint (path style and plain HTTP allowed if it is `http://`).
    pub fn with_s3_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        let endpoint = endpoint.into();
        if endpoint.starts_with("http://") {
            self.s3_allow_http = true;
        }
        self.s3_endpoint = Some(endpoint);
        self
    }

    /// Options with another [`RetryConfig`].
    pub fn with_retry(mut self, retry: RetryConfig) -> Self {
        self.retry = retry;
        self
    }

    /// Options with another [`ConditionalWrites`] setting.
    pub fn with_conditional_writes(mut self, conditional_writes: ConditionalWrites) -> Self {
        self.conditional_writes = conditional_writes;
        self
    }

    /// Checks values that can be wrong whatever the backend.
    pub(crate) fn validate(&self) -> Result<()> {
        self.retry.validate()?;
        if self.request_timeout.is_zero() {
            return Err(invalid("request_timeout", "must be positive"));
        }
        if self.connect_timeout.is_zero() {
            return Err(invalid("connect_timeout", "must be positive"));
        }
        if let Some(endpoint) = &self.s3_endpoint
            && endpoint.starts_with("http://")
            && !self.s3_allow_http
        {
            return Err(invalid(
                "s3_endpoint",
                "is a plain http:// URL; set s3_allow_http (allow_http=true) to allow it",
            ));
        }
        for (name, endpoint) in [
            ("s3_endpoint", &self.s3_endpoint),
            ("azure_endpoint", &self.azure_endpoint),
        ] {
            if let Some(endpoint) = endpoint {
                let parsed = url::Url::parse(endpoint).map_err(|e| invalid(name, format!("not a URL: {e}")))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(invalid(name, "must be an http:// or https:// URL"));
                }
                if !parsed.username().is_empty() || parsed.password().is_some() {
                    return Err(invalid(name, "must not contain credentials"));
                }
            }
        }
        Ok(())
    }

    /// Applies URL query parameters for `scheme`.
    pub(crate) fn apply_query(&mut self, scheme: Scheme, pairs: &[(String, String)]) -> Result<()> {
        let mut unknown = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        let mut sse: Option<String> = None;
        let mut sse_kms_key_id: Option<String> = None;
        for (name, value) in pairs {
            if seen.contains(&name.as_str()) {
                return Err(invalid(name, "is given more than once"));
            }
            seen.push(name);
            if looks_like_credential(name) {
                return Err(invalid(
                    name,
                    "credentials are not accepted in URLs (they end up in shell history and logs); \
                     use the options or the environment",
                ));
            }
            let value = value.as_str();
            match (scheme, name.as_str()) {
                (Scheme::S3 | Scheme::Gcs | Scheme::Azure, "request_timeout") => {
                    self.request_timeout = parse_duration(name, value)?;
                }
                (Scheme::S3 | Scheme::Gcs | Scheme::Azure, "connect_timeout") => {
                    self.connect_timeout = parse_duration(name, value)?;
                }
                (Scheme::S3 | Scheme::Gcs | Scheme::Azure, "max_attempts") => {
                    self.retry.max_attempts = value
                        .parse()
                        .map_err(|_| invalid(name, format!("{value:?} is not a whole number")))?;
                }
                (Scheme::S3 | Scheme::Gcs | Scheme::Azure, "retry_timeout") => {
                    self.retry.max_elapsed = parse_duration(name, value)?;
                }
                (Scheme::S3 | Scheme::Gcs | Scheme::Azure, "conditional_writes") => {
                    self.conditional_writes = value.parse()?;
                }
                (Scheme::S3, "endpoint") => self.s3_endpoint = Some(value.to_owned()),
                (Scheme::S3, "region") => self.s3_region = Some(value.to_owned()),
                (Scheme::S3, "path_style") => self.s3_path_style = Some(parse_bool(name, value)?),
                (Scheme::S3, "virtual_host") => self.s3_path_style = Some(!parse_bool(name, value)?),
                (Scheme::S3, "allow_http") => self.s3_allow_http = parse_bool(name, value)?,
                (Scheme::S3, "storage_class") => self.s3_storage_class = Some(value.parse()?),
                (Scheme::S3, "sse") => sse = Some(value.to_owned()),
                (Scheme::S3, "sse_kms_key_id") => sse_kms_key_id = Some(value.to_owned()),
                (Scheme::Gcs, "service_account_path") => self.gcs_service_account_path = Some(PathBuf::from(value)),
                (Scheme::Azure, "account") => self.azure_account = Some(value.to_owned()),
                (Scheme::Azure, "endpoint") => self.azure_endpoint = Some(value.to_owned()),
                _ => unknown.push(name.clone()),
            }
        }
        if !unknown.is_empty() {
            return Err(Error::UnknownParameters {
                scheme: scheme.as_str().to_owned(),
                names: unknown,
            });
        }
        match (sse, sse_kms_key_id) {
            (Some(sse), key_id) => self.s3_sse = Some(S3Encryption::from_query(&sse, key_id)?),
            (None, Some(_)) => return Err(invalid("sse_kms_key_id", "needs sse=aws:kms or sse=aws:kms:dsse")),
            (None, None) => {}
        }
        Ok(())
    }

    /// The secrets, for scrubbing them from messages.
    pub(crate) fn secrets(&self) -> Vec<String> {
        let mut secrets: Vec<String> = [
            &self.s3_access_key_id,
            &self.s3_secret_access_key,
            &self.s3_session_token,
            &self.azure_access_key,
        ]
        .into_iter()
        .flatten()
        .map(|s| s.expose().to_owned())
        .collect();
        if let Some(S3Encryption::CustomerKey(key)) = &self.s3_sse {
            secrets.push(key.expose().to_owned());
        }
        secrets
    }
}

fn invalid(name: &str, reason: impl Into<String>) -> Error {
    Error::InvalidOption {
        name: name.to_owned(),
        reason: reason.into(),
    }
}

fn looks_like_credential(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name != "sse_kms_key_id"
        && [
            "secret",
            "token",
            "password",
            "access_key",
            "credential",
            "signature",
            "sas",
            "customer_key",
        ]
        .iter()
        .any(|needle| name.contains(needle))
}

fn parse_bool(name: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(invalid(name, format!("{value:?} is not true or false"))),
    }
}

/// Parses `500ms`, `30s`, `2m` or a number of seconds.
pub(crate) fn parse_duration(name: &str, value: &str) -> Result<Duration> {
    let bad = || invalid(name, format!("{value:?} is not a duration like 500ms, 30s or 2m"));
    let (number, unit) = match value.find(|c: char| !c.is_ascii_digit()) {
        Some(split) => value.split_at(split),
        None => (value, "s"),
    };
    let number: u64 = number.parse().map_err(|_| bad())?;
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.checked_mul(60).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    Ok(duration)
}

/// The URL schemes `open` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    File,
    Memory,
    S3,
    Gcs,
    Azure,
}

impl Scheme {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scheme::File => "file",
            Scheme::Memory => "memory",
            Scheme::S3 => "s3",
            Scheme::Gcs => "gs",
            Scheme::Azure => "az",
        }
    }
}

/// Where a storage URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    Memory,
    File(PathBuf),
    /// A bucket (S3, GCS) or container (Azure) and a key prefix without slashes at either end.
    Bucket {
        scheme: Scheme,
        bucket: String,
        prefix: String,
    },
}

/// Parses a storage URL or path and applies its query parameters to `options`.
pub(crate) fn parse_location(input: &str, options: &mut StorageOptions) -> Result<Location> {
    if input.is_empty() {
        return Err(Error::InvalidUrl {
            url: String::new(),
            reason: "the storage location is empty".to_owned(),
        });
    }
    if !input.contains("://") {
        let path = std::path::absolute(input).map_err(|e| Error::InvalidUrl {
            url: input.to_owned(),
            reason: format!("cannot resolve the path: {e}"),
        })?;
        return Ok(Location::File(path));
    }
    let shown = redacted_url(input);
    let bad = |reason: &str| Error::InvalidUrl {
        url: shown.clone(),
        reason: reason.to_owned(),
    };
    let url = url::Url::parse(input).map_err(|e| Error::InvalidUrl {
        url: shown.clone(),
        reason: e.to_string(),
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "credentials are not accepted in URLs; use the options or the environment",
        ));
    }
    if url.fragment().is_some() {
        return Err(bad("the URL has a '#' fragment"));
    }
    let scheme = match url.scheme() {
        "file" => Scheme::File,
        "memory" => Scheme::Memory,
        "s3" | "s3a" => Scheme::S3,
        "gs" => Scheme::Gcs,
        "az" | "azure" | "abfs" => Scheme::Azure,
        other => {
            return Err(bad(&format!(
                "unknown scheme {other:?} (use a path, file://, s3://, gs://, az:// or memory://)"
            )));
        }
    };
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    match scheme {
        Scheme::Memory => {
            if url.host_str().is_some_and(|h| !h.is_empty()) || !matches!(url.path(), "" | "/") {
                return Err(bad("memory:// takes no bucket or path"));
            }
            reject_query(scheme, &pairs)?;
            Ok(Location::Memory)
        }
        Scheme::File => {
            reject_query(scheme, &pairs)?;
            if url.host_str().is_some_and(|h| !h.is_empty() && h != "localhost") {
                return Err(bad("file:// URLs must be local (file:///absolute/path)"));
            }
            let path = url.to_file_path().map_err(|()| bad("not an absolute file path"))?;
            Ok(Location::File(path))
        }
        Scheme::S3 | Scheme::Gcs | Scheme::Azure => {
            let bucket = url.host_str().unwrap_or("").to_owned();
            if bucket.is_empty() {
                return Err(bad("the URL names no bucket (s3://bucket/prefix)"));
            }
            if url.port().is_some() {
                return Err(bad("a bucket has no port; put the server in the endpoint option"));
            }
            // The URL parser resolves `.` and `..`; a prefix must not contain them at all.
            let raw_path = shown
                .split_once("://")
                .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
                .unwrap_or("");
            if raw_path.split('/').any(|segment| segment == "." || segment == "..") {
                return Err(bad("bad prefix: '.' and '..' segments are not allowed"));
            }
            let path = url.path();
            if path.contains('%') {
                return Err(bad("percent-encoded prefixes are not supported"));
            }
            let prefix = path.trim_matches('/').to_owned();
            if !prefix.is_empty() {
                crate::key::validate_prefix(&prefix).map_err(|e| Error::InvalidUrl {
                    url: shown.clone(),
                    reason: format!("bad prefix: {e}"),
                })?;
            }
            options.apply_query(scheme, &pairs)?;
            Ok(Location::Bucket { scheme, bucket, prefix })
        }
    }
}

fn reject_query(scheme: Scheme, pairs: &[(String, String)]) -> Result<()> {
    if pairs.is_empty() {
        return Ok(());
    }
    Err(Error::UnknownParameters {
        scheme: scheme.as_str().to_owned(),
        names: pairs.iter().map(|(k, _)| k.clone()).collect(),
    })
}

/// The URL without user info and query string, for messages.
fn redacted_url(input: &str) -> String {
    let without_query = input.split(['?', '#']).next().unwrap_or("");
    match without_query.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
            format!("{scheme}://{host}{path}")
        }
        None => without_query.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<(Location, StorageOptions)> {
        let mut options = StorageOptions::default();
        let location = parse_location(url, &mut options)?;
        Ok((location, options))
    }

    #[test]
    fn paths_and_file_urls() {
        let (location, _) = parse("/data/backups").unwrap();
        assert_eq!(location, Location::File(PathBuf::from("/data/backups")));
        let (location, _) = parse("file:///data/backups").unwrap();
        assert_eq!(location, Location::File(PathBuf::from("/data/backups")));
        let (location, _) = parse("./backups").unwrap();
        let Location::File(path) = location else {
            panic!("not a file location")
        };
        assert!(path.is_absolute());
        assert!(path.starts_with(std::env::current_dir().unwrap()));
        assert!(parse("file:///data?x=1").unwrap_err().to_string().contains("x"));
        assert!(parse("file://otherhost/data").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn memory_urls() {
        assert_eq!(parse("memory://").unwrap().0, Location::Memory);
        assert!(parse("memory://bucket").is_err());
        assert!(parse("memory://?a=b").is_err());
    }

    #[test]
    fn s3_url_with_every_query_parameter() {
        let (location, options) = parse(
            "s3://my-bucket/some/prefix/?endpoint=http://127.0.0.1:9000&region=garage&path_style=true\
             &allow_http=true&storage_class=standard_ia&sse=aws:kms&sse_kms_key_id=alias/kbs\
             &request_timeout=45s&connect_timeout=500ms&max_attempts=3&retry_timeout=2m&conditional_writes=disabled",
        )
        .unwrap();
        assert_eq!(
            location,
            Location::Bucket {
                scheme: Scheme::S3,
                bucket: "my-bucket".into(),
                prefix: "some/prefix".into()
            }
        );
        assert_eq!(options.s3_endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(options.s3_region.as_deref(), Some("garage"));
        assert_eq!(options.s3_path_style, Some(true));
        assert!(options.s3_allow_http);
        assert_eq!(options.s3_storage_class, Some(S3StorageClass::StandardIa));
        assert_eq!(
            options.s3_sse,
            Some(S3Encryption::Kms {
                key_id: Some("alias/kbs".into())
            })
        );
        assert_eq!(options.request_timeout, Duration::from_secs(45));
        assert_eq!(options.connect_timeout, Duration::from_millis(500));
        assert_eq!(options.retry.max_attempts, 3);
        assert_eq!(options.retry.max_elapsed, Duration::from_secs(120));
        assert_eq!(options.conditional_writes, ConditionalWrites::Disabled);
        options.validate().unwrap();
    }

    #[test]
    fn unknown_parameters_are_named_and_values_not_echoed() {
        let err = parse("s3://b/p?region=x&colour=blue&flavour=sweet").unwrap_err();
        assert!(matches!(&err, Error::UnknownParameters { names, .. } if names == &["colour", "flavour"]));
        let message = err.to_string();
        assert!(message.contains("colour") && message.contains("flavour"), "{message}");
        assert!(!message.contains("blue") && !message.contains("sweet"), "{message}");
        // An S3 parameter on a GCS URL is unknown there.
        assert!(matches!(
            parse("gs://b/p?region=x").unwrap_err(),
            Error::UnknownParameters { .. }
        ));
    }

    #[test]
    fn credentials_in_urls_are_refused_without_echoing_them() {
        for url in [
            "s3://b/p?secret_access_key=SUPERSECRET",
            "s3://b/p?aws_session_token=SUPERSECRET",
            "az://c/p?access_key=SUPERSECRET",
            "s3://AKIAID:SUPERSECRET@b/p",
        ] {
            let message = parse(url).unwrap_err().to_string();
            assert!(message.contains("credentials"), "{url}: {message}");
            assert!(!message.contains("SUPERSECRET"), "{url}: {message}");
        }
    }

    #[test]
    fn bad_values_are_explained() {
        for (url, needle) in [
            ("s3://b?path_style=maybe", "path_style"),
            ("s3://b?storage_class=DEEP_ARCHIVE", "s3_storage_class"),
            ("s3://b?sse=rot13", "sse"),
            ("s3://b?sse_kms_key_id=k", "sse_kms_key_id"),
            ("s3://b?request_timeout=soon", "request_timeout"),
            ("s3://b?max_attempts=-1", "max_attempts"),
            ("s3://b?conditional_writes=sometimes", "conditional_writes"),
            ("s3://b?region=a&region=b", "more than once"),
            ("s3:///prefix", "no bucket"),
            ("s3://b:9000/p", "port"),
            ("s3://b/a/../c", "prefix"),
            ("s3://b/a%2Fb", "percent"),
            ("ftp://host/x", "unknown scheme"),
        ] {
            let message = parse(url).unwrap_err().to_string();
            assert!(message.contains(needle), "{url}: {message}");
        }
    }

    #[test]
    fn gcs_and_azure_urls() {
        let (location, options) = parse("gs://bkt/pre?service_account_path=/etc/sa.json&max_attempts=2").unwrap();
        assert_eq!(
            location,
            Location::Bucket {
                scheme: Scheme::Gcs,
                bucket: "bkt".into(),
                prefix: "pre".into()
            }
        );
        assert_eq!(options.gcs_service_account_path, Some(PathBuf::from("/etc/sa.json")));
        assert_eq!(options.retry.max_attempts, 2);
        let (location, options) = parse("az://container?account=acct&endpoint=http://127.0.0.1:10000").unwrap();
        assert_eq!(
            location,
            Location::Bucket {
                scheme: Scheme::Azure,
                bucket: "container".into(),
                prefix: "".into()
            }
        );
        assert_eq!(options.azure_account.as_deref(), Some("acct"));
        assert_eq!(options.azure_endpoint.as_deref(), Some("http://127.0.0.1:10000"));
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let mut options =
            StorageOptions::default().with_s3_credentials("AKIAEXAMPLEKEYID", "wJalrXUtnFEMI-secret-value");
        options.s3_session_token = Some(Secret::new("session-token-value"));
        options.azure_access_key = Some(Secret::new("azure-account-key-value"));
        options.s3_sse = Some(S3Encryption::CustomerKey(Secret::new("customer-key-value")));
        let debug = format!("{options:?} {:#?}", options);
        for secret in [
            "AKIAEXAMPLEKEYID",
            "wJalrXUtnFEMI-secret-value",
            "session-token-value",
            "azure-account-key-value",
            "customer-key-value",
        ] {
            assert!(!debug.contains(secret), "{secret} leaked: {debug}");
        }
        assert!(debug.contains("<redacted>"));
        assert_eq!(options.secrets().len(), 5);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("x", "250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("x", "7").unwrap(), Duration::from_secs(7));
        assert_eq!(parse_duration("x", "3m").unwrap(), Duration::from_secs(180));
        assert!(parse_duration("x", "3h").is_err());
        assert!(parse_duration("x", "").is_err());
    }

    #[test]
    fn option_validation() {
        let mut options = StorageOptions::default();
        options.retry.max_attempts = 0;
        assert!(options.validate().unwrap_err().to_string().contains("max_attempts"));
        let options = StorageOptions::default().with_s3_endpoint("ftp://x");
        assert!(options.validate().unwrap_err().to_string().contains("s3_endpoint"));
        let options = StorageOptions::default().with_s3_endpoint("http://user:pw@host");
        assert!(options.validate().unwrap_err().to_string().contains("credentials"));
        let (_, options) = parse("s3://b?endpoint=http://127.0.0.1:9000").unwrap();
        assert!(options.validate().unwrap_err().to_string().contains("allow_http"));
        let (_, options) = parse("s3://b?endpoint=http://127.0.0.1:9000&allow_http=true").unwrap();
        options.validate().unwrap();
    }
}
