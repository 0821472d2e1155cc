//! Crash safety of the filesystem backend: a child process writing objects with every kind of
//! write is SIGKILLed at random moments, many times; after each kill every object at its final
//! key must be complete and valid, and the key locks must not be stale.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kbs_storage::{ObjectStorageExt, StorageOptions};
use rand::RngExt;

use crate::child::{self, READY};
use crate::framed::{check, frame};

/// Kill iterations (override with `KBS_CRASH_ITERATIONS`).
fn iterations() -> usize {
    std::env::var("KBS_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_writers_never_leave_partial_objects() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root_str = root.to_str().unwrap().to_owned();
    let store = kbs_storage::open(&root_str, &StorageOptions::default()).await.unwrap();
    let started = Instant::now();
    let mut rng = rand::rng();
    let mut objects_checked = 0usize;
    let iterations = iterations();
    for iteration in 0..iterations {
        let mut writer = child::spawn(
            "crash-writer",
            &[
                ("KBS_CHILD_DIR", root_str.clone()),
                ("KBS_CHILD_SEED", iteration.to_string()),
            ],
        );
        // Wait until it is writing (its first write is complete), then kill it 0–20 ms later.
        let stdout = writer.stdout.take().unwrap();
        let ready = tokio::task::spawn_blocking(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .any(|line| line == READY)
        });
        let ready = tokio::time::timeout(Duration::from_secs(30), ready).await;
        assert!(
            matches!(ready, Ok(Ok(true))),
            "iteration {iteration}: the writer never got ready"
        );
        let delay = Duration::from_micros(rng.random_range(0..20_000));
        tokio::time::sleep(delay).await;
        writer.kill().unwrap();
        let status = writer.wait().unwrap();
        assert!(!status.success(), "the writer was killed, not finished");

        // Every visible object is complete.
        let listed = store.list_all("").await.unwrap();
        assert!(!listed.is_empty());
        for meta in &listed {
            assert!(
                !meta.key.contains(".kbs-tmp-"),
                "a temporary file was listed: {}",
                meta.key
            );
            let object = store.get(&meta.key).await.unwrap();
            if let Err(problem) = check(&object.bytes) {
                panic!(
                    "iteration {iteration} (killed {delay:?} after ready): {} is corrupt: {problem}",
                    meta.key
                );
            }
            objects_checked += 1;
        }
        // The lock of a key the writer may have held is free again (the kernel released it).
        let cas = "cas/counter";
        if let Ok(current) = store.get(cas).await {
            let swap = store.put_if_match(cas, frame(u64::MAX - iteration as u64, 100), &current.meta.version);
            tokio::time::timeout(Duration::from_secs(10), swap)
                .await
                .expect("a killed writer left a stale lock")
                .unwrap();
        }
    }
    // Stale temporary files are ignored by listings (checked above); count them for the record.
    let leftovers = child::temp_files(&root);
    kbs_testkit::note(&format!(
        "crash test: {iterations} kills, {objects_checked} object reads verified, {} temporary files left, {:?}",
        leftovers.len(),
        started.elapsed()
    ));
    // Writes still work on top of the leftovers.
    store.put("after/crashes", Bytes::from_static(b"ok")).await.unwrap();
    assert_eq!(
        store.get("after/crashes").await.unwrap().bytes,
        Bytes::from_static(b"ok")
    );
}
