//! The conformance suite: written once, run against every backend (see `backends.rs`).
//!
//! Every case works under its own key prefix (`conf/<case>/...`), so the cases can share one
//! bucket. What differs between backends is in [`Profile`] and in the store's
//! [`Capabilities`](kbs_storage::Capabilities): a store without conditional writes must refuse
//! them with `Unsupported` and leave the object untouched.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use kbs_storage::{Error, ObjectStorage, ObjectStorageExt, ObjectVersion, Operation};

/// Backend-dependent sizes.
#[derive(Debug, Clone)]
pub(crate) struct Profile {
    /// How many keys the listing case writes (> 1000 on S3 stores, to cross a page).
    pub(crate) list_keys: usize,
    /// Multipart part size (S3 needs 5 MiB).
    pub(crate) part_size: usize,
    /// Full parts in the multipart case (the last, partial part comes on top).
    pub(crate) multipart_parts: usize,
}

impl Profile {
    /// Memory and filesystem: more keys than one list page (1000), small parts.
    pub(crate) fn local() -> Self {
        Profile {
            list_keys: 1100,
            part_size: 64 << 10,
            multipart_parts: 4,
        }
    }

    /// S3 stores: more keys than one S3 list page, 5 MiB parts.
    pub(crate) fn s3() -> Self {
        Profile {
            list_keys: 1100,
            part_size: 5 << 20,
            multipart_parts: 2,
        }
    }
}

/// Deterministic pseudo-random bytes.
pub(crate) fn content(seed: u64, len: usize) -> Bytes {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

/// Runs every case against `store`.
pub(crate) async fn run(store: Arc<dyn ObjectStorage>, profile: &Profile) {
    put_get_head(&store).await;
    empty_objects(&store).await;
    missing_keys(&store).await;
    bad_keys(&store).await;
    ranged_reads(&store).await;
    streamed_reads(&store).await;
    conditional_create(&store).await;
    compare_and_swap(&store).await;
    listing(&store, profile).await;
    delimiter_listing(&store).await;
    deletes(&store).await;
    multipart(&store, profile).await;
    multipart_abort(&store, profile).await;
    multipart_replaces_atomically(&store, profile).await;
}

async fn put_get_head(store: &Arc<dyn ObjectStorage>) {
    let key = "conf/basic/b1/topics/orders/0/segment-00000000.kbs";
    let data = content(1, 100_000);
    let put = store.put(key, data.clone()).await.unwrap();
    let got = store.get(key).await.unwrap();
    assert_eq!(got.bytes, data, "{}: get returns what put wrote", store.describe());
    assert_eq!(got.meta.key, key);
    assert_eq!(got.meta.size, data.len() as u64);
    assert_eq!(got.meta.version, put.version);
    let head = store.head(key).await.unwrap();
    assert_eq!(head.size, data.len() as u64);
    assert_eq!(head.version, put.version);
    let age = std::time::SystemTime::now()
        .duration_since(head.last_modified)
        .unwrap_or_default();
    assert!(
        age < std::time::Duration::from_secs(600),
        "last_modified is recent: {age:?}"
    );

    // Overwriting gives a new version and the new bytes.
    let data2 = content(2, 50_000);
    let put2 = store.put(key, data2.clone()).await.unwrap();
    assert_ne!(
        put2.version,
        put.version,
        "{}: a replacement gets a new version",
        store.describe()
    );
    assert_eq!(store.get(key).await.unwrap().bytes, data2);
    assert_eq!(store.head(key).await.unwrap().version, put2.version);
    assert!(store.exists(key).await.unwrap());
}

async fn empty_objects(store: &Arc<dyn ObjectStorage>) {
    let key = "conf/empty/zero";
    store.put(key, Bytes::new()).await.unwrap();
    let got = store.get(key).await.unwrap();
    assert!(got.bytes.is_empty());
    assert_eq!(got.meta.size, 0);
    assert_eq!(store.get_range(key, 0..0).await.unwrap(), Bytes::new());
    let streamed = store.get_stream(key).await.unwrap().collect_bytes().await.unwrap();
    assert!(streamed.is_empty());
}

fn assert_not_found(
    store: &Arc<dyn ObjectStorage>,
    result: Result<impl std::fmt::Debug, Error>,
    key: &str,
    op: Operation,
) {
    let error = result.expect_err("a missing key must be an error");
    assert!(
        error.is_not_found(),
        "{}: {op} of a missing key: {error}",
        store.describe()
    );
    assert!(
        matches!(error, Error::NotFound { .. }),
        "not wrapped in RetriesExhausted: {error:?}"
    );
    assert!(!error.is_retriable());
    assert_eq!(error.store(), Some(store.describe()));
    assert_eq!(error.key(), Some(key));
    assert_eq!(error.operation(), Some(op));
    let message = error.to_string();
    assert!(message.contains(key) && message.contains(op.as_str()), "{message}");
}

async fn missing_keys(store: &Arc<dyn ObjectStorage>) {
    let key = "conf/missing/nothing-here";
    assert_not_found(store, store.get(key).await, key, Operation::Get);
    assert_not_found(store, store.head(key).await, key, Operation::Head);
    assert_not_found(store, store.get_range(key, 0..1).await, key, Operation::GetRange);
    assert_not_found(store, store.get_stream(key).await, key, Operation::GetStream);
    assert!(!store.exists(key).await.unwrap());
    // Deleting a missing object succeeds (S3 cannot tell the difference).
    store.delete(key).await.unwrap();
    // A missing prefix lists as empty.
    assert!(store.list_all("conf/missing").await.unwrap().is_empty());
    let listing = store.list_with_delimiter("conf/missing").await.unwrap();
    assert!(listing.objects.is_empty() && listing.common_prefixes.is_empty());
}

async fn bad_keys(store: &Arc<dyn ObjectStorage>) {
    for key in [
        "",
        "/abs",
        "a//b",
        "a/../b",
        "./a",
        "dir/",
        "a\0b",
        "a\\b",
        "x/.kbs-locks",
        "x/.y.kbs-tmp-1-2",
    ] {
        let check = |result: Result<(), Error>, what: &str| {
            let error = result.expect_err(what);
            assert!(
                matches!(error, Error::InvalidKey { .. }),
                "{}: {what} {key:?}: {error:?}",
                store.describe()
            );
            assert!(error.to_string().contains("invalid object key"), "{error}");
        };
        check(store.put(key, Bytes::from_static(b"x")).await.map(drop), "put");
        check(
            store.put_if_absent(key, Bytes::from_static(b"x")).await.map(drop),
            "put_if_absent",
        );
        check(
            store
                .put_if_match(key, Bytes::from_static(b"x"), &ObjectVersion::new("v"))
                .await
                .map(drop),
            "put_if_match",
        );
        check(store.get(key).await.map(drop), "get");
        check(store.get_range(key, 0..1).await.map(drop), "get_range");
        check(store.get_stream(key).await.map(drop), "get_stream");
        check(store.head(key).await.map(drop), "head");
        check(store.delete(key).await, "delete");
        check(store.start_multipart(key).await.map(drop), "start_multipart");
    }
    for prefix in ["/", "a//", "../x", "a/./b"] {
        let error = store.list_all(prefix).await.expect_err("bad prefix");
        assert!(matches!(error, Error::InvalidKey { .. }), "{prefix:?}: {error:?}");
        let error = store.list_with_delimiter(prefix).await.expect_err("bad prefix");
        assert!(matches!(error, Error::InvalidKey { .. }), "{prefix:?}: {error:?}");
    }
}

async fn ranged_reads(store: &Arc<dyn ObjectStorage>) {
    let key = "conf/range/object";
    let data = content(3, 10_000);
    store.put(key, data.clone()).await.unwrap();
    let slice = |r: Range<u64>| data.slice(r.start as usize..r.end as usize);
    for range in [0..10_000, 0..1, 1234..5678, 9_999..10_000, 10_000..10_000, 5000..5000] {
        let got = store.get_range(key, range.clone()).await.unwrap();
        assert_eq!(got, slice(range.clone()), "{}: range {range:?}", store.describe());
    }
    for range in [0..10_001, 9_000..20_000, 10_001..10_002, 20_000..20_000] {
        let error = store.get_range(key, range.clone()).await.expect_err("out of bounds");
        assert!(
            matches!(&error, Error::InvalidRange { size: 10_000, .. }),
            "{}: range {range:?}: {error:?}",
            store.describe()
        );
    }
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 5..4;
    let error = store.get_range(key, backwards).await.expect_err("backwards range");
    assert!(matches!(error, Error::InvalidRange { .. }), "{error:?}");
}

async fn streamed_reads(store: &Arc<dyn ObjectStorage>) {
    let key = "conf/stream/big";
    let data = content(4, 3 * (1 << 20) + 12_345);
    let put = store.put(key, data.clone()).await.unwrap();
    let stream = store.get_stream(key).await.unwrap();
    assert_eq!(stream.meta.size, data.len() as u64);
    assert_eq!(stream.meta.version, put.version);
    let chunks: Vec<Bytes> = stream.chunks.try_collect().await.unwrap();
    assert!(!chunks.is_empty());
    let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    assert_eq!(joined.len(), data.len());
    assert!(joined == data, "{}: streamed bytes differ", store.describe());
}

async fn conditional_create(store: &Arc<dyn ObjectStorage>) {
    let key = "conf/create/manifest.json";
    let caps = store.capabilities();
    if !caps.conditional_create {
        store.put(key, Bytes::from_static(b"original")).await.unwrap();
        let error = store
            .put_if_absent(key, Bytes::from_static(b"clobber"))
            .await
            .expect_err("unsupported");
        assert!(
            matches!(
                error,
                Error::Unsupported {
                    operation: Operation::PutIfAbsent,
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(
            store.get(key).await.unwrap().bytes,
            Bytes::from_static(b"original"),
            "nothing was written"
        );
        return;
    }
    let created = store.put_if_absent(key, Bytes::from_static(b"first")).await.unwrap();
    assert_eq!(store.head(key).await.unwrap().version, created.version);
    let error = store
        .put_if_absent(key, Bytes::from_static(b"second"))
        .await
        .expect_err("exists");
    assert!(
        matches!(
            error,
            Error::AlreadyExists {
                operation: Operation::PutIfAbsent,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.key(), Some(key));
    assert!(!error.is_retriable());
    assert_eq!(
        store.get(key).await.unwrap().bytes,
        Bytes::from_static(b"first"),
        "the loser changed nothing"
    );
    // After a delete the key can be created again.
    store.delete(key).await.unwrap();
    store.put_if_absent(key, Bytes::from_static(b"third")).await.unwrap();
    assert_eq!(store.get(key).await.unwrap().bytes, Bytes::from_static(b"third"));
}

async fn compare_and_swap(store: &Arc<dyn ObjectStorage>) {
    let key = "conf/cas/checkpoint.json";
    let caps = store.capabilities();
    let v1 = store.put(key, Bytes::from_static(b"v1")).await.unwrap().version;
    if !caps.conditional_update {
        let error = store
            .put_if_match(key, Bytes::from_static(b"v2"), &v1)
            .await
            .expect_err("unsupported");
        assert!(
            matches!(
                error,
                Error::Unsupported {
                    operation: Operation::PutIfMatch,
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(store.get(key).await.unwrap().bytes, Bytes::from_static(b"v1"));
        return;
    }
    let v2 = store
        .put_if_match(key, Bytes::from_static(b"v2"), &v1)
        .await
        .unwrap()
        .version;
    assert_ne!(v1, v2);
    assert_eq!(store.get(key).await.unwrap().bytes, Bytes::from_static(b"v2"));
    // A stale version is refused and changes nothing.
    let error = store
        .put_if_match(key, Bytes::from_static(b"stale"), &v1)
        .await
        .expect_err("stale");
    assert!(
        matches!(
            error,
            Error::Precondition {
                operation: Operation::PutIfMatch,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(!error.is_retriable());
    let error = store
        .put_if_match(key, Bytes::from_static(b"bogus"), &ObjectVersion::new("\"bogus\""))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Precondition { .. }), "{error:?}");
    assert_eq!(store.get(key).await.unwrap().bytes, Bytes::from_static(b"v2"));
    // A plain put in between invalidates the version read before it.
    let v3 = store.put(key, Bytes::from_static(b"v3")).await.unwrap().version;
    assert!(matches!(
        store.put_if_match(key, Bytes::from_static(b"x"), &v2).await,
        Err(Error::Precondition { .. })
    ));
    store.put_if_match(key, Bytes::from_static(b"v4"), &v3).await.unwrap();
    // On a missing key every version is wrong.
    let missing = "conf/cas/missing";
    let error = store
        .put_if_match(missing, Bytes::from_static(b"x"), &v3)
        .await
        .expect_err("missing");
    assert!(matches!(error, Error::Precondition { .. }), "{error:?}");
    assert!(!store.exists(missing).await.unwrap());
}

async fn listing(store: &Arc<dyn ObjectStorage>, profile: &Profile) {
    let base = "conf/list";
    let mut expected: Vec<String> = (0..profile.list_keys).map(|i| format!("{base}/k-{i:05}")).collect();
    expected.extend([
        "conf/list/sub/a".to_owned(),
        "conf/list/sub/deeper/b".to_owned(),
        "conf/list/k-".to_owned(),
    ]);
    futures::stream::iter(expected.clone())
        .map(|key| async move { store.put(&key, Bytes::from(key.clone())).await })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    // Neighbours that share a string prefix but not the segment.
    store.put("conf/list-extra", Bytes::from_static(b"x")).await.unwrap();
    store.put("conf/listx/y", Bytes::from_static(b"x")).await.unwrap();
    expected.sort();

    let listed = store.list_all(base).await.unwrap();
    let keys: Vec<&str> = listed.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(
        keys.len(),
        expected.len(),
        "{}: every key listed once",
        store.describe()
    );
    assert_eq!(keys, expected, "{}: lexicographic order", store.describe());
    for meta in &listed {
        assert_eq!(meta.size, meta.key.len() as u64);
    }
    // A trailing slash means the same prefix.
    assert_eq!(store.list_all("conf/list/").await.unwrap().len(), expected.len());
    // Resuming after a key.
    let after = &expected[500];
    let rest: Vec<String> = store
        .list(base, Some(after))
        .map_ok(|m| m.key)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(rest, expected[501..], "{}: list after {after}", store.describe());
    let rest: Vec<String> = store
        .list(base, Some("conf/list/sub/a"))
        .map_ok(|m| m.key)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(rest, ["conf/list/sub/deeper/b"]);
    let none: Vec<String> = store
        .list(base, Some("conf/list/zzz"))
        .map_ok(|m| m.key)
        .try_collect()
        .await
        .unwrap();
    assert!(none.is_empty());
    // Nested prefix.
    let sub: Vec<String> = store
        .list_all("conf/list/sub")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(sub, ["conf/list/sub/a", "conf/list/sub/deeper/b"]);
    // The whole store includes everything above.
    let all = store.list_all("").await.unwrap();
    assert!(all.len() >= expected.len() + 2);
    assert!(
        all.iter().all(|m| !m.key.contains(".kbs-")),
        "internal names never listed"
    );
    // Clean up for the delimiter case's benefit (and to exercise delete_prefix).
    assert_eq!(store.delete_prefix(base).await.unwrap(), expected.len());
    assert!(store.list_all(base).await.unwrap().is_empty());
}

async fn delimiter_listing(store: &Arc<dyn ObjectStorage>) {
    let base = "conf/delim";
    for key in [
        "b1/manifest.json",
        "b1/topics/orders/0/segment-00000000.kbs",
        "b2/manifest.json",
        "top.json",
        "b10/x",
    ] {
        store
            .put(&format!("{base}/{key}"), Bytes::from_static(b"x"))
            .await
            .unwrap();
    }
    let listing = store.list_with_delimiter(base).await.unwrap();
    assert_eq!(
        listing.common_prefixes,
        ["conf/delim/b1", "conf/delim/b10", "conf/delim/b2"],
        "{}",
        store.describe()
    );
    let objects: Vec<&str> = listing.objects.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(objects, ["conf/delim/top.json"]);
    assert_eq!(listing.objects[0].size, 1);

    let listing = store.list_with_delimiter("conf/delim/b1/").await.unwrap();
    assert_eq!(listing.common_prefixes, ["conf/delim/b1/topics"]);
    assert_eq!(listing.objects.len(), 1);
    assert_eq!(listing.objects[0].key, "conf/delim/b1/manifest.json");

    // A prefix with no objects left disappears.
    store.delete("conf/delim/b2/manifest.json").await.unwrap();
    let listing = store.list_with_delimiter(base).await.unwrap();
    assert_eq!(
        listing.common_prefixes,
        ["conf/delim/b1", "conf/delim/b10"],
        "{}",
        store.describe()
    );

    // The store root shows the case prefix.
    let root = store.list_with_delimiter("").await.unwrap();
    assert!(
        root.common_prefixes.iter().any(|p| p == "conf"),
        "{:?}",
        root.common_prefixes
    );
}

async fn deletes(store: &Arc<dyn ObjectStorage>) {
    let key = "conf/delete/dir/object";
    store.put(key, Bytes::from_static(b"x")).await.unwrap();
    store.delete(key).await.unwrap();
    assert!(!store.exists(key).await.unwrap());
    assert!(store.list_all("conf/delete").await.unwrap().is_empty());
    assert!(
        store
            .list_with_delimiter("conf/delete")
            .await
            .unwrap()
            .common_prefixes
            .is_empty()
    );
    store.delete(key).await.unwrap();

    // Many at once: 1,005 keys (more than one S3 DeleteObjects request), one of them missing,
    // and a neighbour that must stay.
    let keys: Vec<String> = (0..1005).map(|i| format!("conf/delete/many/{i:04}")).collect();
    futures::future::try_join_all(keys[..1004].iter().map(|k| store.put(k, Bytes::from_static(b"x"))))
        .await
        .unwrap();
    store.put("conf/delete/keep", Bytes::from_static(b"k")).await.unwrap();
    store.delete_many(&keys).await.unwrap();
    let left: Vec<String> = store
        .list_all("conf/delete")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(left, ["conf/delete/keep"], "{}", store.describe());
    store.delete_many(&keys).await.unwrap();
    let error = store
        .delete_many(&["ok".into(), "a//b".into()])
        .await
        .expect_err("bad key");
    assert!(matches!(error, Error::InvalidKey { .. }), "{error:?}");
    store.delete_many(&[]).await.unwrap();
    store.delete("conf/delete/keep").await.unwrap();
}

async fn multipart(store: &Arc<dyn ObjectStorage>, profile: &Profile) {
    let key = "conf/multipart/big.kbs";
    let total = profile.part_size * profile.multipart_parts + profile.part_size / 2;
    let data = content(5, total);
    let mut writer = store
        .put_multipart_with_part_size(key, profile.part_size)
        .await
        .unwrap();
    // Odd chunk sizes exercise the buffering.
    let chunk = profile.part_size / 3 + 7;
    let mut offset = 0;
    while offset < total {
        let end = (offset + chunk).min(total);
        writer.write(data.slice(offset..end)).await.unwrap();
        offset = end;
        // Nothing is visible before completion.
        if offset < total && offset > profile.part_size {
            assert!(
                !store.exists(key).await.unwrap(),
                "{}: visible before complete",
                store.describe()
            );
        }
    }
    assert_eq!(writer.bytes_written(), total as u64);
    assert!(store.list_all("conf/multipart").await.unwrap().is_empty());
    let outcome = writer.complete().await.unwrap();
    let got = store.get(key).await.unwrap();
    assert_eq!(got.meta.size, total as u64);
    assert!(got.bytes == data, "{}: multipart content differs", store.describe());
    assert_eq!(got.meta.version, outcome.version);

    // A multipart upload with fewer bytes than one part (a single, short part).
    let small = "conf/multipart/small";
    let mut writer = store
        .put_multipart_with_part_size(small, profile.part_size)
        .await
        .unwrap();
    writer.write(Bytes::from_static(b"tiny")).await.unwrap();
    writer.complete().await.unwrap();
    assert_eq!(store.get(small).await.unwrap().bytes, Bytes::from_static(b"tiny"));

    // A multipart upload of nothing makes an empty object.
    let empty = "conf/multipart/empty";
    let writer = store
        .put_multipart_with_part_size(empty, profile.part_size)
        .await
        .unwrap();
    writer.complete().await.unwrap();
    assert!(
        store.get(empty).await.unwrap().bytes.is_empty(),
        "{}: empty multipart",
        store.describe()
    );

    // Part sizes below the store's minimum are refused up front.
    let min = store.capabilities().min_part_size;
    if min > 1 {
        let error = store
            .put_multipart_with_part_size("conf/multipart/x", min - 1)
            .await
            .unwrap_err();
        assert!(matches!(error, Error::InvalidOption { .. }), "{error:?}");
    }
}

async fn multipart_abort(store: &Arc<dyn ObjectStorage>, profile: &Profile) {
    let key = "conf/abort/big.kbs";
    let mut writer = store
        .put_multipart_with_part_size(key, profile.part_size)
        .await
        .unwrap();
    writer.write(content(6, profile.part_size + 10)).await.unwrap();
    writer.abort().await.unwrap();
    assert!(
        !store.exists(key).await.unwrap(),
        "{}: an aborted upload is invisible",
        store.describe()
    );

    // Dropping a writer without completing aborts too.
    let dropped = "conf/abort/dropped.kbs";
    let mut writer = store
        .put_multipart_with_part_size(dropped, profile.part_size)
        .await
        .unwrap();
    writer.write(content(7, profile.part_size * 2)).await.unwrap();
    drop(writer);
    assert!(
        !store.exists(dropped).await.unwrap(),
        "{}: a dropped upload is invisible",
        store.describe()
    );
    assert!(store.list_all("conf/abort").await.unwrap().is_empty());
}

async fn multipart_replaces_atomically(store: &Arc<dyn ObjectStorage>, profile: &Profile) {
    let key = "conf/replace/object";
    let old = content(8, 1000);
    store.put(key, old.clone()).await.unwrap();
    let new = content(9, profile.part_size + 1000);
    let mut writer = store
        .put_multipart_with_part_size(key, profile.part_size)
        .await
        .unwrap();
    writer.write(new.clone()).await.unwrap();
    assert_eq!(
        store.get(key).await.unwrap().bytes,
        old,
        "{}: the old object stays until complete",
        store.describe()
    );
    writer.complete().await.unwrap();
    assert!(store.get(key).await.unwrap().bytes == new);
}
