//! Fault injection beneath the retry layer: [`FaultyStore`] wraps a real store and, per a
//! script, fails calls (server errors, resets, hangs, short reads, broken streams, permanent
//! errors) before or after passing them on. `Retrying<FaultyStore>` must recover from the
//! retriable faults, surface the permanent ones after exactly one attempt, and never leave a
//! partial multipart upload visible.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use kbs_storage::{
    Capabilities, Error, GetOutcome, Listing, MultipartUpload, ObjectMeta, ObjectStorage, ObjectStorageExt,
    ObjectStream, ObjectVersion, Operation, PutOutcome, RetryConfig, Retrying, StorageOptions,
};

use crate::conformance::content;

/// One scripted behaviour for one call.
#[derive(Debug, Clone)]
pub(crate) enum Fault {
    /// Pass the call through.
    Pass,
    /// A retriable server error (like HTTP 503), before the call reaches the store.
    Unavailable,
    /// A retriable connection reset, before the call reaches the store.
    Reset,
    /// Never answer (the retry layer's attempt timeout must cut it).
    Hang,
    /// Perform the call, then report a retriable timeout (the response was lost).
    ApplyThenTimeout,
    /// `get`/`get_range`: return only this many bytes. `get_stream`/`list`: end the stream early
    /// without an error after this many bytes/items.
    Short(usize),
    /// `get_stream`/`list`: fail the stream with a reset after this many bytes/items.
    BreakAfter(usize),
    /// A permanent "not found".
    NotFound,
    /// A permanent "access denied".
    Denied,
}

/// Scripted faults and call counts per operation.
#[derive(Debug, Default)]
pub(crate) struct Script {
    faults: Mutex<HashMap<Operation, VecDeque<Fault>>>,
    calls: Mutex<HashMap<Operation, u32>>,
}

impl Script {
    /// Queues faults for the next calls of `operation`.
    pub(crate) fn push(&self, operation: Operation, faults: impl IntoIterator<Item = Fault>) {
        self.faults.lock().unwrap().entry(operation).or_default().extend(faults);
    }

    /// How many times `operation` reached the faulty layer.
    pub(crate) fn calls(&self, operation: Operation) -> u32 {
        self.calls.lock().unwrap().get(&operation).copied().unwrap_or(0)
    }

    fn next(&self, operation: Operation) -> Fault {
        *self.calls.lock().unwrap().entry(operation).or_default() += 1;
        self.faults
            .lock()
            .unwrap()
            .get_mut(&operation)
            .and_then(VecDeque::pop_front)
            .unwrap_or(Fault::Pass)
    }
}

/// A store that injects the faults of a [`Script`] into the calls to another store.
#[derive(Debug)]
pub(crate) struct FaultyStore {
    inner: Arc<dyn ObjectStorage>,
    script: Arc<Script>,
}

impl FaultyStore {
    pub(crate) fn new(inner: Arc<dyn ObjectStorage>) -> (Self, Arc<Script>) {
        let script = Arc::new(Script::default());
        (
            FaultyStore {
                inner,
                script: Arc::clone(&script),
            },
            script,
        )
    }
}

fn injected(store: &str, operation: Operation, key: &str, message: &str, retriable: bool) -> Error {
    Error::Backend {
        store: store.to_owned(),
        operation,
        key: key.to_owned(),
        message: format!("injected: {message}"),
        retriable,
    }
}

/// The error a fault stands for, if it fails the call before it reaches the store.
fn before(store: &str, fault: &Fault, operation: Operation, key: &str) -> Option<Error> {
    match fault {
        Fault::Unavailable => Some(injected(store, operation, key, "503 Service Unavailable", true)),
        Fault::Reset => Some(injected(store, operation, key, "connection reset by peer", true)),
        Fault::NotFound => Some(Error::NotFound {
            store: store.to_owned(),
            operation,
            key: key.to_owned(),
        }),
        Fault::Denied => Some(Error::AccessDenied {
            store: store.to_owned(),
            operation,
            key: key.to_owned(),
            message: "injected: 403 Forbidden".to_owned(),
        }),
        _ => None,
    }
}

impl FaultyStore {
    /// Runs `call` under `fault` (for the faults that are not about payloads).
    async fn around<T>(
        &self,
        operation: Operation,
        key: &str,
        call: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let fault = self.script.next(operation);
        if let Some(error) = before(self.describe(), &fault, operation, key) {
            return Err(error);
        }
        match fault {
            Fault::Hang => futures::future::pending().await,
            Fault::ApplyThenTimeout => {
                let _ = call.await;
                Err(injected(
                    self.describe(),
                    operation,
                    key,
                    "timed out waiting for the response",
                    true,
                ))
            }
            _ => call.await,
        }
    }
}

/// Cuts a byte stream after `limit` bytes, then ends it or breaks it.
fn cut_bytes(
    chunks: BoxStream<'static, Result<Bytes, Error>>,
    limit: usize,
    then: Option<Error>,
) -> BoxStream<'static, Result<Bytes, Error>> {
    let mut left = limit;
    let head = chunks
        .map_ok(move |mut chunk| {
            let keep = left.min(chunk.len());
            left -= keep;
            chunk.truncate(keep);
            chunk
        })
        .try_filter(|chunk| futures::future::ready(!chunk.is_empty()));
    // Stop pulling from the inner stream once the limit is reached.
    let mut delivered = 0usize;
    let head = head.take_while(move |item| {
        let go = delivered < limit;
        if let Ok(chunk) = item {
            delivered += chunk.len();
        }
        futures::future::ready(go)
    });
    head.chain(stream::iter(then.map(Err))).boxed()
}

#[async_trait]
impl ObjectStorage for FaultyStore {
    fn describe(&self) -> &str {
        self.inner.describe()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<PutOutcome, Error> {
        self.around(Operation::Put, key, self.inner.put(key, data)).await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<PutOutcome, Error> {
        self.around(Operation::PutIfAbsent, key, self.inner.put_if_absent(key, data))
            .await
    }

    async fn put_if_match(&self, key: &str, data: Bytes, expected: &ObjectVersion) -> Result<PutOutcome, Error> {
        self.around(Operation::PutIfMatch, key, self.inner.put_if_match(key, data, expected))
            .await
    }

    async fn get(&self, key: &str) -> Result<GetOutcome, Error> {
        let fault = self.script.next(Operation::Get);
        if let Some(error) = before(self.describe(), &fault, Operation::Get, key) {
            return Err(error);
        }
        if let Fault::Hang = fault {
            futures::future::pending::<()>().await;
        }
        let mut outcome = self.inner.get(key).await?;
        if let Fault::Short(keep) = fault {
            outcome.bytes.truncate(keep);
        }
        Ok(outcome)
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, Error> {
        let fault = self.script.next(Operation::GetRange);
        if let Some(error) = before(self.describe(), &fault, Operation::GetRange, key) {
            return Err(error);
        }
        if let Fault::Hang = fault {
            futures::future::pending::<()>().await;
        }
        let mut bytes = self.inner.get_range(key, range).await?;
        if let Fault::Short(keep) = fault {
            bytes.truncate(keep);
        }
        Ok(bytes)
    }

    async fn get_stream(&self, key: &str) -> Result<ObjectStream, Error> {
        let fault = self.script.next(Operation::GetStream);
        if let Some(error) = before(self.describe(), &fault, Operation::GetStream, key) {
            return Err(error);
        }
        if let Fault::Hang = fault {
            futures::future::pending::<()>().await;
        }
        let mut stream = self.inner.get_stream(key).await?;
        stream.chunks = match fault {
            Fault::Short(limit) => cut_bytes(stream.chunks, limit, None),
            Fault::BreakAfter(limit) => {
                let error = injected(
                    self.describe(),
                    Operation::GetStream,
                    key,
                    "connection reset mid-body",
                    true,
                );
                cut_bytes(stream.chunks, limit, Some(error))
            }
            _ => stream.chunks,
        };
        Ok(stream)
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, Error> {
        self.around(Operation::Head, key, self.inner.head(key)).await
    }

    fn list(&self, prefix: &str, start_after: Option<&str>) -> BoxStream<'static, Result<ObjectMeta, Error>> {
        let fault = self.script.next(Operation::List);
        if let Some(error) = before(self.describe(), &fault, Operation::List, prefix) {
            return stream::once(async move { Err(error) }).boxed();
        }
        let inner = self.inner.list(prefix, start_after);
        match fault {
            Fault::BreakAfter(n) => {
                let error = injected(
                    self.describe(),
                    Operation::List,
                    prefix,
                    "connection reset mid-listing",
                    true,
                );
                inner.take(n).chain(stream::once(async move { Err(error) })).boxed()
            }
            Fault::Short(n) => inner.take(n).boxed(),
            _ => inner,
        }
    }

    async fn list_with_delimiter(&self, prefix: &str) -> Result<Listing, Error> {
        self.around(Operation::List, prefix, self.inner.list_with_delimiter(prefix))
            .await
    }

    async fn delete(&self, key: &str) -> Result<(), Error> {
        self.around(Operation::Delete, key, self.inner.delete(key)).await
    }

    async fn start_multipart(&self, key: &str) -> Result<Box<dyn MultipartUpload>, Error> {
        let upload = self
            .around(Operation::MultipartStart, key, self.inner.start_multipart(key))
            .await?;
        Ok(Box::new(FaultyUpload {
            inner: upload,
            script: Arc::clone(&self.script),
            store: self.describe().to_owned(),
            key: key.to_owned(),
        }))
    }
}

#[derive(Debug)]
struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    script: Arc<Script>,
    store: String,
    key: String,
}

impl FaultyUpload {
    async fn around<T>(
        &self,
        operation: Operation,
        call: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let fault = self.script.next(operation);
        if let Some(error) = before(&self.store, &fault, operation, &self.key) {
            return Err(error);
        }
        match fault {
            Fault::Hang => futures::future::pending().await,
            Fault::ApplyThenTimeout => {
                let _ = call.await;
                Err(injected(
                    &self.store,
                    operation,
                    &self.key,
                    "timed out waiting for the response",
                    true,
                ))
            }
            _ => call.await,
        }
    }
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    async fn put_part(&self, index: usize, data: Bytes) -> Result<(), Error> {
        self.around(Operation::MultipartPart, self.inner.put_part(index, data))
            .await
    }

    async fn complete(&self) -> Result<PutOutcome, Error> {
        self.around(Operation::MultipartComplete, self.inner.complete()).await
    }

    async fn abort(&self) -> Result<(), Error> {
        self.around(Operation::MultipartAbort, self.inner.abort()).await
    }
}

/// Fast retries for tests.
fn fast_retries() -> RetryConfig {
    RetryConfig::default()
        .with_backoff(Duration::from_millis(1), Duration::from_millis(20))
        .with_limits(6, Duration::from_secs(30))
        .with_attempt_timeout(Some(Duration::from_millis(300)))
}

/// A memory store under a faulty layer under the retry layer.
async fn faulty(location: &str) -> (Retrying<FaultyStore>, Arc<Script>) {
    let inner = kbs_storage::open_without_retries(location, &StorageOptions::default())
        .await
        .unwrap();
    let (store, script) = FaultyStore::new(inner);
    (Retrying::new(store, fast_retries()), script)
}

#[tokio::test]
async fn transient_errors_are_retried_until_they_pass() {
    let (store, script) = faulty("memory://").await;
    script.push(Operation::Put, [Fault::Unavailable, Fault::Reset]);
    store.put("k", Bytes::from_static(b"value")).await.unwrap();
    assert_eq!(script.calls(Operation::Put), 3);

    script.push(Operation::Get, [Fault::Reset]);
    assert_eq!(store.get("k").await.unwrap().bytes, Bytes::from_static(b"value"));
    assert_eq!(script.calls(Operation::Get), 2);

    script.push(
        Operation::Head,
        [Fault::Unavailable, Fault::Unavailable, Fault::Unavailable],
    );
    let head = store.head("k").await.unwrap();
    assert_eq!(script.calls(Operation::Head), 4);

    script.push(Operation::PutIfMatch, [Fault::Unavailable]);
    store
        .put_if_match("k", Bytes::from_static(b"v2"), &head.version)
        .await
        .unwrap();
    assert_eq!(script.calls(Operation::PutIfMatch), 2);

    script.push(Operation::List, [Fault::Reset]);
    assert_eq!(store.list_with_delimiter("").await.unwrap().objects.len(), 1);

    script.push(Operation::Delete, [Fault::Unavailable]);
    store.delete("k").await.unwrap();
    assert_eq!(script.calls(Operation::Delete), 2);
    assert!(!store.exists("k").await.unwrap());
}

/// Remembers the retries it hears of.
#[derive(Default)]
struct Heard(std::sync::Mutex<Vec<(Option<Operation>, u32)>>);

impl kbs_storage::RetryObserver for Heard {
    fn retrying(&self, error: &kbs_storage::Error, attempt: u32, _delay: Duration) {
        self.0.lock().unwrap().push((error.operation(), attempt));
    }
}

#[tokio::test]
async fn every_retry_is_told_to_the_observer_with_its_operation() {
    let inner = kbs_storage::open_without_retries("memory://", &StorageOptions::default())
        .await
        .unwrap();
    let (store, script) = FaultyStore::new(inner);
    let heard = Arc::new(Heard::default());
    let store = Retrying::new(store, fast_retries().with_observer(heard.clone()));
    script.push(Operation::Put, [Fault::Unavailable, Fault::Reset]);
    store.put("k", Bytes::from_static(b"value")).await.unwrap();
    script.push(Operation::Get, [Fault::Unavailable]);
    store.get("k").await.unwrap();
    assert_eq!(
        *heard.0.lock().unwrap(),
        vec![
            (Some(Operation::Put), 1),
            (Some(Operation::Put), 2),
            (Some(Operation::Get), 1)
        ]
    );
    // A permanent error is no retry.
    assert!(store.get("missing").await.is_err());
    assert_eq!(heard.0.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn hanging_attempts_time_out_and_are_retried() {
    let (store, script) = faulty("memory://").await;
    store.put("k", Bytes::from_static(b"value")).await.unwrap();
    script.push(Operation::Get, [Fault::Hang, Fault::Hang]);
    let started = Instant::now();
    assert_eq!(store.get("k").await.unwrap().bytes, Bytes::from_static(b"value"));
    assert_eq!(script.calls(Operation::Get), 3);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(600) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    let (store, script) = faulty("memory://").await;
    store.put("k", Bytes::from_static(b"value")).await.unwrap();

    let error = store.get("missing").await.unwrap_err();
    assert!(matches!(error, Error::NotFound { .. }), "{error:?}");
    assert_eq!(script.calls(Operation::Get), 1, "not found is not retried");
    script.push(Operation::Head, [Fault::NotFound]);
    assert!(store.head("k").await.unwrap_err().is_not_found());
    assert_eq!(script.calls(Operation::Head), 1, "an injected not found is not retried");

    let error = store
        .put_if_match("k", Bytes::new(), &ObjectVersion::new("stale"))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Precondition { .. }), "{error:?}");
    assert_eq!(
        script.calls(Operation::PutIfMatch),
        1,
        "a precondition failure is not retried"
    );

    let error = store.put_if_absent("k", Bytes::new()).await.unwrap_err();
    assert!(matches!(error, Error::AlreadyExists { .. }), "{error:?}");
    assert_eq!(
        script.calls(Operation::PutIfAbsent),
        1,
        "already-exists on the first attempt is final"
    );

    script.push(Operation::Put, [Fault::Denied]);
    let error = store.put("k", Bytes::new()).await.unwrap_err();
    assert!(matches!(error, Error::AccessDenied { .. }), "{error:?}");
    assert_eq!(
        script.calls(Operation::Put),
        2,
        "access denied is not retried (1 setup put + 1 attempt)"
    );
    assert_eq!(store.get("k").await.unwrap().bytes, Bytes::from_static(b"value"));
}

#[tokio::test]
async fn retries_are_bounded_by_count_and_time() {
    let (store, script) = faulty("memory://").await;
    script.push(Operation::Head, std::iter::repeat_n(Fault::Unavailable, 100));
    let error = store.head("k").await.unwrap_err();
    match &error {
        Error::RetriesExhausted { attempts, last, .. } => {
            assert_eq!(*attempts, 6);
            assert!(last.is_retriable());
        }
        other => panic!("expected RetriesExhausted, got {other:?}"),
    }
    assert!(!error.is_retriable(), "exhausted retries are final");
    assert_eq!(error.operation(), Some(Operation::Head));
    assert_eq!(error.key(), Some("k"));
    assert_eq!(error.store(), Some("memory://"));
    assert!(error.to_string().contains("gave up after 6 attempts"), "{error}");
    assert_eq!(script.calls(Operation::Head), 6);

    // The time bound: many attempts allowed, 300 ms in total, 50–100 ms between attempts.
    let inner = kbs_storage::open_without_retries("memory://", &StorageOptions::default())
        .await
        .unwrap();
    let (faulty, script) = FaultyStore::new(inner);
    let config = RetryConfig::default()
        .with_backoff(Duration::from_millis(100), Duration::from_millis(100))
        .with_limits(1000, Duration::from_millis(300));
    let store = Retrying::new(faulty, config);
    script.push(Operation::Head, std::iter::repeat_n(Fault::Unavailable, 1000));
    let started = Instant::now();
    let error = store.head("k").await.unwrap_err();
    assert!(matches!(error, Error::RetriesExhausted { .. }), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    let calls = script.calls(Operation::Head);
    assert!((2..=7).contains(&calls), "{calls} attempts within 300 ms");
}

#[tokio::test]
async fn short_reads_are_detected_and_retried() {
    let (store, script) = faulty("memory://").await;
    let data = content(1, 100_000);
    store.put("k", data.clone()).await.unwrap();
    script.push(Operation::Get, [Fault::Short(10), Fault::Short(99_999)]);
    assert_eq!(store.get("k").await.unwrap().bytes, data);
    assert_eq!(script.calls(Operation::Get), 3);
    script.push(Operation::GetRange, [Fault::Short(5)]);
    assert_eq!(store.get_range("k", 100..200).await.unwrap(), data.slice(100..200));
    assert_eq!(script.calls(Operation::GetRange), 2);
}

#[tokio::test]
async fn broken_streams_resume_where_they_stopped() {
    for location in ["memory://", "filesystem"] {
        let dir = tempfile::tempdir().unwrap();
        let location = if location == "filesystem" {
            dir.path().to_str().unwrap().to_owned()
        } else {
            location.to_owned()
        };
        let (store, script) = faulty(&location).await;
        let data = content(2, 20 * (1 << 20) + 777);
        store.put("big", data.clone()).await.unwrap();
        // A reset after 1 MiB + 5 bytes; the rest comes in 8 MiB ranged reads, of which the
        // first is reset, the next cut short, the others fine.
        script.push(Operation::GetStream, [Fault::BreakAfter((1 << 20) + 5)]);
        script.push(Operation::GetRange, [Fault::Reset, Fault::Short(100)]);
        let streamed = store.get_stream("big").await.unwrap().collect_bytes().await.unwrap();
        assert!(streamed == data, "{location}: the resumed stream has the right bytes");
        assert_eq!(
            script.calls(Operation::GetStream),
            1,
            "{location}: the stream is not restarted"
        );
        assert_eq!(
            script.calls(Operation::GetRange),
            5,
            "{location}: 3 ranges of the rest + 2 retries"
        );
        assert_eq!(
            script.calls(Operation::Head),
            2,
            "{location}: the version is checked before and after"
        );

        // A stream that just ends early is resumed the same way.
        script.push(Operation::GetStream, [Fault::Short(3 << 20)]);
        let streamed = store.get_stream("big").await.unwrap().collect_bytes().await.unwrap();
        assert!(streamed == data, "{location}: the stream cut short was completed");
    }
}

#[tokio::test]
async fn a_stream_resumed_on_a_changed_object_fails() {
    let (store, script) = faulty("memory://").await;
    store.put("k", content(3, 3 << 20)).await.unwrap();
    script.push(Operation::GetStream, [Fault::BreakAfter(1 << 20)]);
    let mut stream = store.get_stream("k").await.unwrap();
    let first = stream.chunks.next().await.unwrap().unwrap();
    assert_eq!(first.len(), 1 << 20);
    store.put("k", content(4, 3 << 20)).await.unwrap();
    let error = stream.chunks.try_collect::<Vec<_>>().await.unwrap_err();
    assert!(
        matches!(error, Error::Inconsistent { retriable: false, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("changed"), "{error}");
}

#[tokio::test]
async fn broken_listings_resume_after_the_last_key() {
    let (store, script) = faulty("memory://").await;
    let keys: Vec<String> = (0..2500).map(|i| format!("l/{i:05}")).collect();
    for key in &keys {
        store.put(key, Bytes::new()).await.unwrap();
    }
    script.push(
        Operation::List,
        [Fault::BreakAfter(1200), Fault::Unavailable, Fault::BreakAfter(700)],
    );
    let listed: Vec<String> = store.list("l", None).map_ok(|m| m.key).try_collect().await.unwrap();
    assert_eq!(listed, keys, "every key exactly once, in order");
    assert_eq!(script.calls(Operation::List), 4);
}

#[tokio::test]
async fn a_create_that_landed_before_its_response_was_lost_succeeds() {
    let (store, script) = faulty("memory://").await;
    script.push(Operation::PutIfAbsent, [Fault::ApplyThenTimeout]);
    let outcome = store
        .put_if_absent("manifest", Bytes::from_static(b"mine"))
        .await
        .unwrap();
    assert_eq!(script.calls(Operation::PutIfAbsent), 2, "the retry saw AlreadyExists");
    assert_eq!(store.head("manifest").await.unwrap().version, outcome.version);

    // Someone else's object at the key is still a conflict after a retry.
    store.put("theirs", Bytes::from_static(b"theirs")).await.unwrap();
    script.push(Operation::PutIfAbsent, [Fault::Unavailable]);
    let error = store
        .put_if_absent("theirs", Bytes::from_static(b"mine"))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::AlreadyExists { .. }), "{error:?}");
    assert_eq!(store.get("theirs").await.unwrap().bytes, Bytes::from_static(b"theirs"));
}

#[tokio::test]
async fn multipart_parts_are_retried() {
    for location in ["memory://", "filesystem"] {
        let dir = tempfile::tempdir().unwrap();
        let location = if location == "filesystem" {
            dir.path().to_str().unwrap().to_owned()
        } else {
            location.to_owned()
        };
        let (store, script) = faulty(&location).await;
        script.push(
            Operation::MultipartPart,
            [Fault::Pass, Fault::Unavailable, Fault::ApplyThenTimeout, Fault::Reset],
        );
        script.push(Operation::MultipartComplete, [Fault::Unavailable]);
        let data = content(5, 10_000);
        let mut writer = store.put_multipart_with_part_size("mp", 1000).await.unwrap();
        writer.write(data.clone()).await.unwrap();
        writer.complete().await.unwrap();
        assert_eq!(store.get("mp").await.unwrap().bytes, data, "{location}");
        assert_eq!(
            script.calls(Operation::MultipartPart),
            13,
            "{location}: 10 parts + 3 retries"
        );
        assert_eq!(script.calls(Operation::MultipartComplete), 2);
    }
}

#[tokio::test]
async fn an_interrupted_multipart_upload_leaves_nothing() {
    for location in ["memory://", "filesystem"] {
        let dir = tempfile::tempdir().unwrap();
        let is_fs = location == "filesystem";
        let location = if is_fs {
            dir.path().to_str().unwrap().to_owned()
        } else {
            location.to_owned()
        };
        let (store, script) = faulty(&location).await;

        // A permanent failure of the third part: the writer aborts.
        script.push(Operation::MultipartPart, [Fault::Pass, Fault::Pass, Fault::Denied]);
        let mut writer = store.put_multipart_with_part_size("a/mp", 1000).await.unwrap();
        let error = writer.write(content(6, 5000)).await.unwrap_err();
        assert!(matches!(error, Error::AccessDenied { .. }), "{error:?}");
        assert!(
            writer.write(Bytes::from_static(b"more")).await.is_err(),
            "a failed writer stays failed"
        );
        assert!(writer.complete().await.is_err());
        assert_eq!(
            script.calls(Operation::MultipartAbort),
            1,
            "{location}: the writer aborted"
        );
        assert!(!store.exists("a/mp").await.unwrap(), "{location}: nothing visible");

        // Retries that run out: the same.
        script.push(
            Operation::MultipartPart,
            [Fault::Pass].into_iter().chain(std::iter::repeat_n(Fault::Reset, 6)),
        );
        let mut writer = store.put_multipart_with_part_size("a/mp", 1000).await.unwrap();
        let error = writer.write(content(7, 5000)).await.unwrap_err();
        assert!(matches!(error, Error::RetriesExhausted { .. }), "{error:?}");
        assert!(!store.exists("a/mp").await.unwrap());

        // A completion that fails permanently: aborted, nothing visible.
        script.push(Operation::MultipartComplete, [Fault::Denied]);
        let mut writer = store.put_multipart_with_part_size("a/mp", 1000).await.unwrap();
        writer.write(content(8, 2500)).await.unwrap();
        assert!(writer.complete().await.is_err());
        assert!(!store.exists("a/mp").await.unwrap());

        // A writer dropped mid-way (the process gave up): nothing visible.
        let mut writer = store.put_multipart_with_part_size("a/mp", 1000).await.unwrap();
        writer.write(content(9, 2500)).await.unwrap();
        drop(writer);
        assert!(!store.exists("a/mp").await.unwrap());
        assert!(
            store.list_all("").await.unwrap().is_empty(),
            "{location}: nothing listed"
        );
        if is_fs {
            assert_eq!(
                crate::child::temp_files(dir.path()),
                Vec::<String>::new(),
                "no temporary files left"
            );
        }
    }
}
