//! Child processes of this test binary: the tests spawn the binary itself with
//! [`ROLE_VAR`] set, filtered to [`child_process_entry`], which then plays the role (racing
//! compare-and-swap writer, crash-test writer) instead of testing anything.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use kbs_storage::{Error, ObjectStorage, ObjectStorageExt, StorageOptions};

use crate::framed::frame;

/// The environment variable that selects a child role.
pub(crate) const ROLE_VAR: &str = "KBS_STORAGE_TEST_CHILD";

/// The line a crash-test writer prints once it is writing.
pub(crate) const READY: &str = "KBS-CHILD-READY";

/// Starts this test binary as a child playing `role`, with its stdout piped.
pub(crate) fn spawn(role: &str, envs: &[(&str, String)]) -> Child {
    let exe = std::env::current_exe().expect("the test binary's path");
    Command::new(exe)
        .args([
            "--exact",
            "child::child_process_entry",
            "--nocapture",
            "--test-threads=1",
            "--quiet",
        ])
        .env(ROLE_VAR, role)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn a child test process")
}

/// The entry point of child processes. When the test harness runs it normally (no
/// [`ROLE_VAR`]), it has nothing to do: it is not a test of its own.
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var(ROLE_VAR) else { return };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    match role.as_str() {
        "cas-increment" => runtime.block_on(cas_increment_role()),
        "crash-writer" => runtime.block_on(crash_writer_role()),
        other => panic!("unknown child role {other:?}"),
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("the child needs {name}"))
}

/// Increments the counter at `KBS_CHILD_KEY` in the store at `KBS_CHILD_DIR` `KBS_CHILD_COUNT`
/// times with read / compare-and-swap loops, then prints how many conflicts it saw.
async fn cas_increment_role() {
    let store = kbs_storage::open(&env("KBS_CHILD_DIR"), &StorageOptions::default())
        .await
        .unwrap();
    let key = env("KBS_CHILD_KEY");
    let count: u64 = env("KBS_CHILD_COUNT").parse().unwrap();
    let conflicts = increment(store.as_ref(), &key, count).await;
    let mut out = std::io::stdout();
    writeln!(out, "conflicts={conflicts}").unwrap();
    out.flush().unwrap();
}

/// Adds `count` to the decimal counter at `key`, one compare-and-swap at a time; returns the
/// number of lost races (retried).
pub(crate) async fn increment(store: &dyn ObjectStorage, key: &str, count: u64) -> u64 {
    let mut conflicts = 0;
    for _ in 0..count {
        loop {
            let current = store.get(key).await.unwrap();
            let value: u64 = std::str::from_utf8(&current.bytes).unwrap().parse().unwrap();
            // Widen the window between the read and the write so that racers really interleave.
            tokio::task::yield_now().await;
            match store
                .put_if_match(key, Bytes::from((value + 1).to_string()), &current.meta.version)
                .await
            {
                Ok(_) => break,
                Err(Error::Precondition { .. }) => conflicts += 1,
                Err(other) => panic!("increment of {key}: {other}"),
            }
        }
    }
    conflicts
}

/// Writes self-checking objects to the filesystem store at `KBS_CHILD_DIR` forever (until
/// killed) with every kind of write; prints [`READY`] after the first one.
async fn crash_writer_role() {
    let dir = env("KBS_CHILD_DIR");
    let seed: u64 = env("KBS_CHILD_SEED").parse().unwrap();
    let store = kbs_storage::open(&dir, &StorageOptions::default()).await.unwrap();
    let mut announced = false;
    for step in 0u64.. {
        let n = seed.wrapping_mul(7919).wrapping_add(step);
        let body = frame(n, 1 + (n % 7) as usize * 9_000 + (n % 13) as usize * 300);
        match step % 4 {
            0 => {
                store.put(&format!("put/obj-{}", n % 8), body).await.unwrap();
            }
            1 => match store.put_if_absent(&format!("create/obj-{}", n % 64), body).await {
                Ok(_) | Err(Error::AlreadyExists { .. }) => {}
                Err(other) => panic!("put_if_absent: {other}"),
            },
            2 => {
                let key = "cas/counter";
                match store.get(key).await {
                    Ok(current) => match store.put_if_match(key, body, &current.meta.version).await {
                        Ok(_) | Err(Error::Precondition { .. }) => {}
                        Err(other) => panic!("put_if_match: {other}"),
                    },
                    Err(e) if e.is_not_found() => {
                        let _ = store.put_if_absent(key, body).await;
                    }
                    Err(other) => panic!("get: {other}"),
                }
            }
            _ => {
                let mut writer = store
                    .put_multipart_with_part_size(&format!("multipart/obj-{}", n % 4), 16 << 10)
                    .await
                    .unwrap();
                // The frame is written in pieces, so a kill can land between parts.
                let mut rest = body;
                while !rest.is_empty() {
                    let piece = rest.split_to(rest.len().min(10_000));
                    writer.write(piece).await.unwrap();
                }
                writer.complete().await.unwrap();
            }
        }
        if !announced {
            announced = true;
            let mut out = std::io::stdout();
            writeln!(out, "{READY}").unwrap();
            out.flush().unwrap();
        }
    }
}

/// Waits for a child with a deadline, killing it if it overstays.
pub(crate) fn wait_with_deadline(child: &mut Child, deadline: Duration) -> std::process::ExitStatus {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            panic!("a child process did not finish within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `dir` (recursively) holds any temporary file of the filesystem backend.
pub(crate) fn temp_files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(temp_files(&path));
        } else if entry.file_name().to_string_lossy().contains(".kbs-tmp-") {
            found.push(path.display().to_string());
        }
    }
    found
}
