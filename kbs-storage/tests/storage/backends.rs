//! The conformance suite against every backend: memory, filesystem, moto (AWS conditional-write
//! semantics) and Garage (ignores conditional headers), plus backend-specific checks.

use std::sync::Arc;

use bytes::Bytes;
use kbs_storage::{CapabilitySource, ConditionalWrites, Error, ObjectStorage, ObjectStorageExt, StorageOptions};

use crate::conformance::{self, Profile};
use crate::servers::{Garage, Moto, S3Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_conformance() {
    let store = kbs_storage::open("memory://", &StorageOptions::default())
        .await
        .unwrap();
    assert_eq!(store.describe(), "memory://");
    let caps = store.capabilities();
    assert!(caps.conditional_create && caps.conditional_update);
    assert_eq!(caps.source, CapabilitySource::Native);
    conformance::run(store, &Profile::local()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn filesystem_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("backups");
    let store = kbs_storage::open(root.to_str().unwrap(), &StorageOptions::default())
        .await
        .unwrap();
    assert_eq!(store.describe(), format!("file://{}", root.display()));
    assert_eq!(store.capabilities().source, CapabilitySource::Native);
    // Reading a store that was never written is empty, not an error, and creates nothing.
    assert!(store.list_all("").await.unwrap().is_empty());
    assert!(!root.exists());
    conformance::run(Arc::clone(&store), &Profile::local()).await;

    // The same directory through a file:// URL sees the same objects.
    let by_url = kbs_storage::open(&format!("file://{}", root.display()), &StorageOptions::default())
        .await
        .unwrap();
    assert_eq!(
        by_url.get("conf/replace/object").await.unwrap().bytes,
        store.get("conf/replace/object").await.unwrap().bytes
    );

    // Stale temporary files (from a killed writer) and foreign files are never listed.
    std::fs::write(root.join("conf/.segment.kbs.kbs-tmp-999999-1"), b"partial").unwrap();
    std::fs::write(root.join("conf/bad\\name"), b"x").unwrap();
    let listed = store.list_all("conf").await.unwrap();
    assert!(
        listed
            .iter()
            .all(|m| !m.key.contains("kbs-tmp") && !m.key.contains('\\')),
        "{listed:?}"
    );
    assert!(root.join(".kbs-locks").is_dir(), "the lock files live in the root");
    assert!(
        !store
            .list_with_delimiter("")
            .await
            .unwrap()
            .common_prefixes
            .iter()
            .any(|p| p.contains(".kbs"))
    );

    // A file where the root should be is a clear error.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let error = kbs_storage::open(file.to_str().unwrap(), &StorageOptions::default())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("not a directory"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moto_conformance() {
    let Some(moto) = Moto::start() else { return };
    let store = moto.open("conformance/run-1", &moto.options()).await;
    assert_eq!(
        store.describe(),
        format!("s3://{}/conformance/run-1 at {}", moto.bucket, moto.endpoint())
    );
    let caps = store.capabilities();
    assert!(caps.conditional_create, "moto honours If-None-Match: {caps:?}");
    assert!(caps.conditional_update, "moto honours If-Match: {caps:?}");
    assert_eq!(caps.source, CapabilitySource::Probe);
    assert_eq!(caps.min_part_size, 5 << 20);
    conformance::run(Arc::clone(&store), &Profile::s3()).await;

    // The probe cleaned up after itself (checked with a raw listing: the store hides internal
    // names); the prefix keeps other prefixes out of sight.
    let (status, raw) = kbs_testkit::http_request(
        moto.addr(),
        "GET",
        &format!("/{}?list-type=2&prefix=conformance/", moto.bucket),
    )
    .unwrap();
    assert_eq!(status, 200, "{raw}");
    assert!(raw.contains("<Key>conformance/run-1/"), "the raw listing works: {raw}");
    assert!(!raw.contains(".kbs-probe"), "no probe object left: {raw}");
    let root = kbs_storage::open(&format!("s3://{}", moto.bucket), &moto.options())
        .await
        .unwrap();
    let all = root.list_all("").await.unwrap();
    assert!(
        all.iter().all(|m| m.key.starts_with("conformance/run-1/")),
        "only the run's objects"
    );
    let other = moto.open("conformance/run-2", &moto.options()).await;
    assert!(other.list_all("").await.unwrap().is_empty());

    // Query parameters configure the same things as the struct.
    let url = format!(
        "s3://{}/conformance/run-3?endpoint={}&region=us-east-1&path_style=true&allow_http=true&storage_class=STANDARD_IA&conditional_writes=disabled",
        moto.bucket,
        moto.endpoint()
    );
    let by_url = kbs_storage::open(&url, &StorageOptions::default().with_s3_credentials("k", "s"))
        .await
        .unwrap();
    assert!(!by_url.capabilities().conditional_create);
    assert_eq!(by_url.capabilities().source, CapabilitySource::Declared);
    by_url.put("x", Bytes::from_static(b"x")).await.unwrap();
    let error = by_url.put_if_absent("y", Bytes::from_static(b"y")).await.unwrap_err();
    assert!(matches!(error, Error::Unsupported { .. }), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garage_conformance() {
    let Some(garage) = Garage::start() else { return };
    let store = garage.open("conformance", &garage.options()).await;
    let caps = store.capabilities();
    // Garage accepts If-None-Match / If-Match on existing keys and overwrites anyway.
    assert!(
        !caps.conditional_create,
        "the probe must see that Garage ignores If-None-Match: {caps:?}"
    );
    assert!(
        !caps.conditional_update,
        "the probe must see that Garage ignores If-Match: {caps:?}"
    );
    assert_eq!(caps.source, CapabilitySource::Probe);
    conformance::run(Arc::clone(&store), &Profile::s3()).await;

    // What the probe protects against: declared "enabled", Garage silently overwrites.
    let mut options = garage.options();
    options.conditional_writes = ConditionalWrites::Enabled;
    let trusting = garage.open("conformance/declared", &options).await;
    assert_eq!(trusting.capabilities().source, CapabilitySource::Declared);
    trusting.put_if_absent("m", Bytes::from_static(b"first")).await.unwrap();
    let second = trusting.put_if_absent("m", Bytes::from_static(b"second")).await;
    assert!(second.is_ok(), "Garage ignored If-None-Match: {second:?}");
    assert_eq!(trusting.get("m").await.unwrap().bytes, Bytes::from_static(b"second"));

    // Wrong credentials are a permanent access error that names neither secret.
    let mut bad = garage.options();
    bad.s3_secret_access_key = Some(kbs_storage::Secret::new("wrong-secret-0123456789abcdef"));
    bad.conditional_writes = ConditionalWrites::Disabled;
    let denied = garage.open("conformance", &bad).await;
    let error = denied
        .get("conf/basic/b1/topics/orders/0/segment-00000000.kbs")
        .await
        .unwrap_err();
    assert!(matches!(error, Error::AccessDenied { .. }), "{error:?}");
    let message = format!("{error} {error:?}");
    assert!(
        !message.contains("wrong-secret-0123456789abcdef") && !message.contains(&garage.secret),
        "{message}"
    );
}
