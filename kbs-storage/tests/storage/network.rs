//! Network faults between the S3 backend and a real server: a loopback HTTP proxy in front of
//! moto fails scripted requests (reset, HTTP 503, a hang, a 403) and forwards the others. These
//! check that object_store's real errors are classified (retriable or permanent) and that the
//! retry layer recovers, with object_store's own retries switched off.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use kbs_storage::{ConditionalWrites, Error, ObjectStorage, ObjectStorageExt, RetryConfig, StorageOptions};

use kbs_testkit::{S3Fault as ConnectionFault, S3FaultProxy as FaultProxy};

use crate::servers::{Moto, S3Server};

/// Options for the store behind the proxy: conditional writes declared (no probe, so the
/// scripted faults hit the operations under test), short timeouts, fast retries.
fn proxied_options(moto: &Moto, proxy: &FaultProxy, retry: RetryConfig) -> StorageOptions {
    let mut options = moto
        .options()
        .with_s3_endpoint(format!("http://{}", proxy.addr))
        .with_retry(retry);
    options.conditional_writes = ConditionalWrites::Enabled;
    options.request_timeout = Duration::from_millis(700);
    options
}

fn fast_retries() -> RetryConfig {
    RetryConfig::default()
        .with_backoff(Duration::from_millis(5), Duration::from_millis(50))
        .with_limits(8, Duration::from_secs(30))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_operations_recover_from_resets_throttling_and_timeouts() {
    let Some(moto) = Moto::start() else { return };
    let proxy = FaultProxy::start(moto.addr());
    let store = kbs_storage::open(
        &format!("s3://{}/net", moto.bucket),
        &proxied_options(&moto, &proxy, fast_retries()),
    )
    .await
    .unwrap();

    use ConnectionFault::*;
    proxy.fail_next(&[Reset, Unavailable, Hang, Unavailable]);
    let data = Bytes::from_static(b"through a flaky network");
    store.put("k", data.clone()).await.unwrap();
    assert_eq!(proxy.pending_faults(), 0, "every fault was hit");
    assert!(proxy.connections.load(Ordering::SeqCst) >= 5);

    proxy.fail_next(&[Unavailable, Reset]);
    assert_eq!(store.get("k").await.unwrap().bytes, data);
    proxy.fail_next(&[Reset]);
    let head = store.head("k").await.unwrap();
    proxy.fail_next(&[Unavailable]);
    store
        .put_if_match("k", Bytes::from_static(b"v2"), &head.version)
        .await
        .unwrap();
    proxy.fail_next(&[Reset, Unavailable]);
    assert_eq!(store.list_all("").await.unwrap().len(), 1);
    proxy.fail_next(&[Unavailable]);
    store.delete("k").await.unwrap();
    assert_eq!(proxy.pending_faults(), 0);
    assert!(!store.exists("k").await.unwrap());

    // Multipart parts (5 MiB) through resets.
    let mut writer = store.put_multipart_with_part_size("mp", 5 << 20).await.unwrap();
    proxy.fail_next(&[Reset, Unavailable]);
    let big = crate::conformance::content(11, (5 << 20) + 100);
    writer.write(big.clone()).await.unwrap();
    writer.complete().await.unwrap();
    assert!(store.get("mp").await.unwrap().bytes == big);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_errors_are_classified() {
    let Some(moto) = Moto::start() else { return };
    let proxy = FaultProxy::start(moto.addr());
    let store = kbs_storage::open_without_retries(
        &format!("s3://{}/net", moto.bucket),
        &proxied_options(&moto, &proxy, RetryConfig::no_retries()),
    )
    .await
    .unwrap();
    store.put("k", Bytes::from_static(b"x")).await.unwrap();

    use ConnectionFault::*;
    for (fault, what) in [(Reset, "reset"), (Unavailable, "503"), (Hang, "timeout")] {
        proxy.fail_next(&[fault]);
        let error = store.get("k").await.unwrap_err();
        assert!(error.is_retriable(), "{what} must be retriable: {error:?}");
        assert!(matches!(error, Error::Backend { .. }), "{what}: {error:?}");
        assert_eq!(error.key(), Some("k"));
    }
    proxy.fail_next(&[Forbidden]);
    let error = store.get("k").await.unwrap_err();
    assert!(matches!(error, Error::AccessDenied { .. }), "403: {error:?}");
    assert!(!error.is_retriable());
    let error = store.get("missing").await.unwrap_err();
    assert!(matches!(error, Error::NotFound { .. }), "{error:?}");

    // With the retry layer, a 403 is tried exactly once.
    let retrying = kbs_storage::open(
        &format!("s3://{}/net", moto.bucket),
        &proxied_options(&moto, &proxy, fast_retries()),
    )
    .await
    .unwrap();
    let before = proxy.connections.load(Ordering::SeqCst);
    proxy.fail_next(&[Forbidden]);
    let error = retrying.head("k").await.unwrap_err();
    assert!(matches!(error, Error::AccessDenied { .. }), "{error:?}");
    // One connection for the failed attempt; no retry opened another.
    assert_eq!(proxy.connections.load(Ordering::SeqCst) - before, 1);
}
