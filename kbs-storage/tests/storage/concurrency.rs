//! Races: N tasks (or processes) creating one key create-only, and N tasks incrementing one
//! counter by compare-and-swap. Exactly one creator wins; no increment is lost.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kbs_storage::{Error, ObjectStorage, StorageOptions};

use crate::child;
use crate::servers::{Moto, S3Server};

const TASKS: usize = 16;

/// `TASKS` tasks race `put_if_absent` on one key with different contents.
pub(crate) async fn create_race(store: Arc<dyn ObjectStorage>, key: &str) {
    let handles: Vec<_> = (0..TASKS)
        .map(|i| {
            let store = Arc::clone(&store);
            let key = key.to_owned();
            tokio::spawn(async move { store.put_if_absent(&key, Bytes::from(format!("writer {i}"))).await })
        })
        .collect();
    let mut winners = Vec::new();
    for (i, handle) in handles.into_iter().enumerate() {
        match handle.await.unwrap() {
            Ok(outcome) => winners.push((i, outcome.version)),
            Err(Error::AlreadyExists { .. }) => {}
            Err(other) => panic!("{}: writer {i}: {other}", store.describe()),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "{}: exactly one create-only writer wins, got {winners:?}",
        store.describe()
    );
    let (winner, version) = &winners[0];
    let stored = store.get(key).await.unwrap();
    assert_eq!(
        stored.bytes,
        Bytes::from(format!("writer {winner}")),
        "the winner's bytes are stored"
    );
    assert_eq!(&stored.meta.version, version);
}

/// `TASKS` tasks each increment one counter `per_task` times by compare-and-swap.
pub(crate) async fn cas_race(store: Arc<dyn ObjectStorage>, key: &str, per_task: u64) {
    store.put(key, Bytes::from_static(b"0")).await.unwrap();
    let handles: Vec<_> = (0..TASKS)
        .map(|_| {
            let store = Arc::clone(&store);
            let key = key.to_owned();
            tokio::spawn(async move { child::increment(store.as_ref(), &key, per_task).await })
        })
        .collect();
    let mut conflicts = 0;
    for handle in handles {
        conflicts += handle.await.unwrap();
    }
    let value: u64 = std::str::from_utf8(&store.get(key).await.unwrap().bytes)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        value,
        TASKS as u64 * per_task,
        "{}: no lost update ({conflicts} conflicts retried)",
        store.describe()
    );
    assert!(conflicts > 0, "{}: the tasks really raced", store.describe());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_races() {
    let store = kbs_storage::open("memory://", &StorageOptions::default())
        .await
        .unwrap();
    create_race(Arc::clone(&store), "race/create").await;
    cas_race(store, "race/counter", 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn filesystem_races() {
    let dir = tempfile::tempdir().unwrap();
    let store = kbs_storage::open(dir.path().to_str().unwrap(), &StorageOptions::default())
        .await
        .unwrap();
    for round in 0..5 {
        create_race(Arc::clone(&store), &format!("race/create-{round}")).await;
    }
    cas_race(store, "race/counter", 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_compare_and_swap_across_processes() {
    const PROCESSES: usize = 4;
    const PER_PROCESS: u64 = 40;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap().to_owned();
    let store = kbs_storage::open(&root, &StorageOptions::default()).await.unwrap();
    let key = "race/shared-counter";
    store.put(key, Bytes::from_static(b"0")).await.unwrap();
    let mut children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            child::spawn(
                "cas-increment",
                &[
                    ("KBS_CHILD_DIR", root.clone()),
                    ("KBS_CHILD_KEY", key.to_owned()),
                    ("KBS_CHILD_COUNT", PER_PROCESS.to_string()),
                ],
            )
        })
        .collect();
    let mut conflicts = 0u64;
    for child in &mut children {
        let status = tokio::task::block_in_place(|| child::wait_with_deadline(child, Duration::from_secs(120)));
        assert!(status.success(), "a child failed: {status}");
        let mut output = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut output).unwrap();
        let line = output
            .lines()
            .find_map(|l| l.strip_prefix("conflicts="))
            .expect("the child reports its conflicts");
        conflicts += line.trim().parse::<u64>().unwrap();
    }
    let value: u64 = std::str::from_utf8(&store.get(key).await.unwrap().bytes)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        value,
        PROCESSES as u64 * PER_PROCESS,
        "no lost update across processes ({conflicts} conflicts)"
    );
    kbs_testkit::note(&format!(
        "cross-process CAS: {PROCESSES} processes, {conflicts} conflicts retried"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moto_races() {
    let Some(moto) = Moto::start() else { return };
    let store = moto.open("races", &moto.options()).await;
    assert!(store.capabilities().conditional_create && store.capabilities().conditional_update);
    create_race(Arc::clone(&store), "race/create").await;
    cas_race(store, "race/counter", 5).await;
}
