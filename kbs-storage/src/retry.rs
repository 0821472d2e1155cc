//! The retry layer: [`Retrying`] wraps any store and retries retriable failures of every
//! operation with exponential backoff and jitter.

use std::future::Future;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use rand::RngExt;

use crate::error::{Context, Error, Operation, Result};
use crate::multipart::MultipartUpload;
use crate::options::RetryConfig;
use crate::storage::{
    Capabilities, GetOutcome, Listing, ObjectMeta, ObjectStorage, ObjectStream, ObjectVersion, PutOutcome,
};

/// A store that retries the retriable failures of another store.
///
/// Every operation is attempted up to [`RetryConfig::max_attempts`] times while
/// [`Error::is_retriable`] holds and less than [`RetryConfig::max_elapsed`] has passed, waiting
/// `initial_backoff · 2ⁿ` (capped at `max_backoff`) with "equal jitter" (half fixed, half
/// random) between attempts. Permanent errors return at once. When the retries run out the
/// result is [`Error::RetriesExhausted`] with the last error inside.
///
/// Beyond plain repetition:
/// * `put_if_absent`: when an attempt after a failed one finds the key taken, the object is
///   read back and compared with the bytes being written; if they are the same, the earlier
///   attempt landed and the write succeeds instead of reporting a conflict.
/// * `put_if_match`: a retry after an ambiguous failure may report
///   [`Error::Precondition`] although the earlier attempt landed (its write changed the
///   version); this cannot be told apart from a competing writer safely, so the caller re-reads.
/// * `get` and `get_range` check the length of what they read; `get_stream` and `list` resume
///   after a mid-stream failure: the stream continues with ranged reads from the first byte not
///   delivered, checking with `head` before and after them that the object's version did not
///   change; the listing restarts after the last key delivered.
/// * multipart parts are retried (re-sending a part number replaces the part); a completion
///   that fails after an ambiguous attempt checks whether the object was published.
///
/// [`open`](crate::open) wraps every backend in this layer; object_store's own HTTP retries are
/// switched off, so failures are never retried twice.
#[derive(Debug)]
pub struct Retrying<S> {
    inner: Arc<S>,
    config: RetryConfig,
}

impl<S: ObjectStorage + 'static> Retrying<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, config: RetryConfig) -> Self {
        Retrying {
            inner: Arc::new(inner),
            config,
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The retry configuration.
    pub fn config(&self) -> &RetryConfig {
        &self.config
    }

    fn cx<'a>(&'a self, operation: Operation, key: &'a str) -> Context<'a> {
        Context::new(self.inner.describe(), operation, key)
    }
}

/// Retry bookkeeping for one operation.
#[derive(Debug)]
pub(crate) struct Attempts<'a> {
    config: &'a RetryConfig,
    start: Instant,
    attempt: u32,
}

impl<'a> Attempts<'a> {
    pub(crate) fn new(config: &'a RetryConfig) -> Self {
        Attempts {
            config,
            start: Instant::now(),
            attempt: 1,
        }
    }

    /// After a failed attempt: `Ok(())` after waiting if another attempt may start, else the
    /// error to return.
    pub(crate) async fn backoff(&mut self, error: Error) -> Result<(), Error> {
        if !error.is_retriable() {
            return Err(error);
        }
        let delay = backoff_delay(self.config, self.attempt);
        let elapsed = self.start.elapsed();
        if self.attempt >= self.config.max_attempts || elapsed + delay > self.config.max_elapsed {
            if self.attempt == 1 {
                return Err(error);
            }
            return Err(Error::RetriesExhausted {
                attempts: self.attempt,
                elapsed,
                last: Box::new(error),
            });
        }
        tracing::debug!(attempt = self.attempt, ?delay, %error, "retrying a storage operation");
        if let Some(observer) = &self.config.observer {
            observer.0.retrying(&error, self.attempt, delay);
        }
        tokio::time::sleep(delay).await;
        self.attempt += 1;
        Ok(())
    }

    pub(crate) fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Starts counting afresh after progress (a stream delivered data).
    fn reset(&mut self) {
        self.start = Instant::now();
        self.attempt = 1;
    }
}

/// The wait before retry number `attempt` (1 = the first retry): `initial · 2^(attempt-1)`,
/// capped at `max`, of which the upper half is random.
pub(crate) fn backoff_delay(config: &RetryConfig, attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(31);
    let cap = config
        .initial_backoff
        .saturating_mul(1 << exponent)
        .min(config.max_backoff);
    let half = cap / 2;
    let jitter_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    let jitter = if jitter_nanos == 0 {
        0
    } else {
        rand::rng().random_range(0..=jitter_nanos)
    };
    half + Duration::from_nanos(jitter)
}

/// Runs `f` (given the attempt number) until it succeeds, fails permanently or the retries run
/// out, applying the per-attempt timeout.
pub(crate) async fn run<T, F, Fut>(config: &RetryConfig, cx: &Context<'_>, mut f: F) -> Result<T>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut attempts = Attempts::new(config);
    loop {
        let result = with_timeout(config, cx, f(attempts.attempt())).await;
        match result {
            Ok(value) => return Ok(value),
            Err(error) => attempts.backoff(error).await?,
        }
    }
}

async fn with_timeout<T>(config: &RetryConfig, cx: &Context<'_>, fut: impl Future<Output = Result<T>>) -> Result<T> {
    match config.attempt_timeout {
        Some(limit) => match tokio::time::timeout(limit, fut).await {
            Ok(result) => result,
            Err(_) => Err(cx.backend(format!("timed out after {limit:?}"), true)),
        },
        None => fut.await,
    }
}

#[async_trait]
impl<S: ObjectStorage + 'static> ObjectStorage for Retrying<S> {
    fn describe(&self) -> &str {
        self.inner.describe()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<PutOutcome> {
        run(&self.config, &self.cx(Operation::Put, key), |_| {
            self.inner.put(key, data.clone())
        })
        .await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<PutOutcome> {
        let cx = self.cx(Operation::PutIfAbsent, key);
        run(&self.config, &cx, |attempt| {
            let data = data.clone();
            async move {
                match self.inner.put_if_absent(key, data.clone()).await {
                    Err(Error::AlreadyExists { .. }) if attempt > 1 => self.check_own_create(key, &data).await,
                    other => other,
                }
            }
        })
        .await
    }

    async fn put_if_match(&self, key: &str, data: Bytes, expected: &ObjectVersion) -> Result<PutOutcome> {
        run(&self.config, &self.cx(Operation::PutIfMatch, key), |_| {
            self.inner.put_if_match(key, data.clone(), expected)
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<GetOutcome> {
        let cx = self.cx(Operation::Get, key);
        run(&self.config, &cx, |_| async {
            let outcome = self.inner.get(key).await?;
            if outcome.bytes.len() as u64 != outcome.meta.size {
                return Err(cx.inconsistent(
                    format!("short read: {} of {} bytes", outcome.bytes.len(), outcome.meta.size),
                    true,
                ));
            }
            Ok(outcome)
        })
        .await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let cx = self.cx(Operation::GetRange, key);
        let want = range.end.saturating_sub(range.start);
        run(&self.config, &cx, |_| async {
            let bytes = self.inner.get_range(key, range.clone()).await?;
            if bytes.len() as u64 != want {
                return Err(cx.inconsistent(format!("short read: {} of {want} bytes", bytes.len()), true));
            }
            Ok(bytes)
        })
        .await
    }

    async fn get_stream(&self, key: &str) -> Result<ObjectStream> {
        let cx = self.cx(Operation::GetStream, key);
        let first = run(&self.config, &cx, |_| self.inner.get_stream(key)).await?;
        let meta = first.meta.clone();
        let state = ResumingStream {
            inner: Arc::clone(&self.inner),
            config: self.config.clone(),
            key: key.to_owned(),
            meta: meta.clone(),
            delivered: 0,
            source: Source::Stream(first.chunks),
            done: false,
        };
        let chunks = stream::unfold(state, |mut state| async move {
            let item = state.next_chunk().await?;
            Some((item, state))
        })
        .boxed();
        Ok(ObjectStream { meta, chunks })
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        run(&self.config, &self.cx(Operation::Head, key), |_| self.inner.head(key)).await
    }

    fn list(&self, prefix: &str, start_after: Option<&str>) -> BoxStream<'static, Result<ObjectMeta>> {
        let state = ResumingList {
            inner: Arc::clone(&self.inner),
            config: self.config.clone(),
            prefix: prefix.to_owned(),
            last_key: start_after.map(str::to_owned),
            current: Some(self.inner.list(prefix, start_after)),
            failures: 0,
            failing_since: None,
            done: false,
        };
        stream::unfold(state, |mut state| async move {
            let item = state.next_item().await?;
            Some((item, state))
        })
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: &str) -> Result<Listing> {
        run(&self.config, &self.cx(Operation::List, prefix), |_| {
            self.inner.list_with_delimiter(prefix)
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        run(&self.config, &self.cx(Operation::Delete, key), |_| {
            self.inner.delete(key)
        })
        .await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        let first = keys.first().map_or("", String::as_str);
        run(&self.config, &self.cx(Operation::DeleteMany, first), |_| {
            self.inner.delete_many(keys)
        })
        .await
    }

    async fn start_multipart(&self, key: &str) -> Result<Box<dyn MultipartUpload>> {
        let upload = run(&self.config, &self.cx(Operation::MultipartStart, key), |_| {
            self.inner.start_multipart(key)
        })
        .await?;
        Ok(Box::new(RetryingUpload {
            inner: upload,
            store: Arc::clone(&self.inner) as Arc<dyn ObjectStorage>,
            config: self.config.clone(),
            key: key.to_owned(),
            parts: Mutex::new(Vec::new()),
            started: SystemTime::now(),
        }))
    }
}

impl<S: ObjectStorage + 'static> Retrying<S> {
    /// After a retried create-only write found the key taken: is the object there the one this
    /// write sent (an earlier attempt that failed on the way back but landed)?
    async fn check_own_create(&self, key: &str, data: &Bytes) -> Result<PutOutcome> {
        let cx = self.cx(Operation::PutIfAbsent, key);
        let stored = match run(&self.config, &self.cx(Operation::Get, key), |_| self.inner.get(key)).await {
            Ok(stored) => stored,
            // Deleted in between: it was not ours to keep; report the conflict seen.
            Err(e) if e.is_not_found() => return Err(cx.already_exists()),
            Err(e) => return Err(e),
        };
        if stored.bytes == *data {
            tracing::debug!(
                key,
                crc32 = crc32fast::hash(data),
                "a retried create-only write had landed"
            );
            Ok(PutOutcome {
                version: stored.meta.version,
            })
        } else {
            Err(cx.already_exists())
        }
    }
}

/// Ranged reads that resume a broken stream are this big.
const RESUME_CHUNK: u64 = 8 << 20;

/// Where the rest of a [`Retrying::get_stream`] stream comes from.
enum Source {
    /// The backend's stream, until it fails.
    Stream(BoxStream<'static, Result<Bytes>>),
    /// Ranged reads from the first byte not delivered; `checked` once the object's version was
    /// found unchanged.
    Ranges { checked: bool },
}

/// The state of a [`Retrying::get_stream`] stream: the backend's stream, and after a failure
/// ranged reads of the rest, with the object's version checked before and after them.
struct ResumingStream<S> {
    inner: Arc<S>,
    config: RetryConfig,
    key: String,
    meta: ObjectMeta,
    delivered: u64,
    source: Source,
    done: bool,
}

impl<S: ObjectStorage> ResumingStream<S> {
    async fn next_chunk(&mut self) -> Option<Result<Bytes>> {
        if self.done {
            return None;
        }
        let config = self.config.clone();
        let mut attempts = Attempts::new(&config);
        loop {
            let result = match &mut self.source {
                Source::Stream(chunks) => match chunks.next().await {
                    Some(Ok(chunk)) => Ok(Some(chunk)),
                    Some(Err(error)) => Err(error),
                    None if self.delivered == self.meta.size => Ok(None),
                    None => Err(
                        Context::new(self.inner.describe(), Operation::GetStream, &self.key).inconsistent(
                            format!("the stream ended after {} of {} bytes", self.delivered, self.meta.size),
                            true,
                        ),
                    ),
                },
                Source::Ranges { checked } => {
                    let checked = *checked;
                    self.next_range(checked).await
                }
            };
            match result {
                Ok(Some(chunk)) => {
                    self.delivered += chunk.len() as u64;
                    if self.delivered > self.meta.size {
                        self.done = true;
                        return Some(Err(Context::new(
                            self.inner.describe(),
                            Operation::GetStream,
                            &self.key,
                        )
                        .inconsistent("the stream is longer than the object", false)));
                    }
                    return Some(Ok(chunk));
                }
                Ok(None) => {
                    self.done = true;
                    return None;
                }
                Err(error) => {
                    if let Err(error) = attempts.backoff(error).await {
                        self.done = true;
                        return Some(Err(error));
                    }
                    if let Source::Stream(_) = self.source {
                        tracing::debug!(key = %self.key, delivered = self.delivered, "resuming a broken stream with ranged reads");
                        self.source = Source::Ranges { checked: false };
                    }
                }
            }
        }
    }

    /// The next ranged read; `Ok(None)` at the end (after checking the version again).
    async fn next_range(&mut self, checked: bool) -> Result<Option<Bytes>> {
        let cx = Context::new(self.inner.describe(), Operation::GetStream, &self.key);
        if !checked || self.delivered == self.meta.size {
            let current = with_timeout(&self.config, &cx, self.inner.head(&self.key)).await?;
            if current.version != self.meta.version || current.size != self.meta.size {
                return Err(cx.inconsistent("the object changed while it was being read", false));
            }
            self.source = Source::Ranges { checked: true };
            if self.delivered == self.meta.size {
                return Ok(None);
            }
        }
        let end = (self.delivered + RESUME_CHUNK).min(self.meta.size);
        let bytes = with_timeout(&self.config, &cx, self.inner.get_range(&self.key, self.delivered..end)).await?;
        if bytes.len() as u64 != end - self.delivered {
            return Err(cx.inconsistent(
                format!("short read: {} of {} bytes", bytes.len(), end - self.delivered),
                true,
            ));
        }
        Ok(Some(bytes))
    }
}

/// The state of a [`Retrying::list`] stream.
struct ResumingList<S> {
    inner: Arc<S>,
    config: RetryConfig,
    prefix: String,
    last_key: Option<String>,
    current: Option<BoxStream<'static, Result<ObjectMeta>>>,
    failures: u32,
    failing_since: Option<Instant>,
    done: bool,
}

impl<S: ObjectStorage> ResumingList<S> {
    async fn next_item(&mut self) -> Option<Result<ObjectMeta>> {
        if self.done {
            return None;
        }
        let mut attempts = Attempts::new(&self.config);
        if self.failures > 0 {
            // Continue counting the failures since the last delivered item.
            attempts.attempt = self.failures + 1;
            if let Some(since) = self.failing_since {
                attempts.start = since;
            }
        }
        loop {
            let chunks = self
                .current
                .get_or_insert_with(|| self.inner.list(&self.prefix, self.last_key.as_deref()));
            match chunks.next().await {
                Some(Ok(meta)) => {
                    self.last_key = Some(meta.key.clone());
                    self.failures = 0;
                    self.failing_since = None;
                    attempts.reset();
                    return Some(Ok(meta));
                }
                None => {
                    self.done = true;
                    return None;
                }
                Some(Err(error)) => {
                    self.current = None;
                    self.failing_since.get_or_insert_with(Instant::now);
                    if let Err(error) = attempts.backoff(error).await {
                        self.done = true;
                        return Some(Err(error));
                    }
                    self.failures = attempts.attempt - 1;
                }
            }
        }
    }
}

/// A multipart upload whose part uploads, completion and abort are retried.
#[derive(Debug)]
struct RetryingUpload {
    inner: Box<dyn MultipartUpload>,
    store: Arc<dyn ObjectStorage>,
    config: RetryConfig,
    key: String,
    /// Sizes of the parts sent, by part number.
    parts: Mutex<Vec<u64>>,
    started: SystemTime,
}

impl RetryingUpload {
    fn cx(&self, operation: Operation) -> Context<'_> {
        Context::new(self.store.describe(), operation, &self.key)
    }

    fn total_size(&self) -> u64 {
        self.parts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .sum()
    }
}

#[async_trait]
impl MultipartUpload for RetryingUpload {
    async fn put_part(&self, index: usize, data: Bytes) -> Result<()> {
        let len = data.len() as u64;
        run(&self.config, &self.cx(Operation::MultipartPart), |_| {
            self.inner.put_part(index, data.clone())
        })
        .await?;
        let mut parts = self.parts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if parts.len() <= index {
            parts.resize(index + 1, 0);
        }
        parts[index] = len;
        Ok(())
    }

    async fn complete(&self) -> Result<PutOutcome> {
        let cx = self.cx(Operation::MultipartComplete);
        let mut attempts = Attempts::new(&self.config);
        loop {
            let error = match with_timeout(&self.config, &cx, self.inner.complete()).await {
                Ok(outcome) => return Ok(outcome),
                Err(error) => error,
            };
            if attempts.attempt() > 1 && !error.is_retriable() {
                // An earlier attempt may have published the object and consumed the upload.
                if let Ok(meta) = self.store.head(&self.key).await
                    && meta.size == self.total_size()
                    && meta.last_modified + Duration::from_secs(1) >= self.started
                {
                    tracing::debug!(key = %self.key, "a retried multipart completion had landed");
                    return Ok(PutOutcome { version: meta.version });
                }
            }
            attempts.backoff(error).await?;
        }
    }

    async fn abort(&self) -> Result<()> {
        let cx = self.cx(Operation::MultipartAbort);
        run(&self.config, &cx, |attempt| async move {
            match self.inner.abort().await {
                // A retried abort may find the upload already gone.
                Err(e) if attempt > 1 && e.is_not_found() => Ok(()),
                other => other,
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_within_jitter_and_cap() {
        let config = RetryConfig::default().with_backoff(Duration::from_millis(100), Duration::from_secs(1));
        for _ in 0..100 {
            let first = backoff_delay(&config, 1);
            assert!(
                first >= Duration::from_millis(50) && first <= Duration::from_millis(100),
                "{first:?}"
            );
            let third = backoff_delay(&config, 3);
            assert!(
                third >= Duration::from_millis(200) && third <= Duration::from_millis(400),
                "{third:?}"
            );
            let capped = backoff_delay(&config, 30);
            assert!(
                capped >= Duration::from_millis(500) && capped <= Duration::from_secs(1),
                "{capped:?}"
            );
        }
        let zero = RetryConfig::default().with_backoff(Duration::ZERO, Duration::ZERO);
        assert_eq!(backoff_delay(&zero, 5), Duration::ZERO);
    }
}
