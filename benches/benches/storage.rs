//! kbs-storage throughput beside `dd`/`cat`/`cp` of the same bytes on the same disk.
//!
//! Run with `cargo bench -p kbs-benches --bench storage`. One run:
//!
//! * writes 1 GiB as 64 objects of 16 MiB with `put` to the filesystem backend (a temporary
//!   directory under `target/`, i.e. on the same disk as the build), one at a time and 4 at a
//!   time, then reads them back with `get`;
//! * does the same against moto (an S3 server in Python, started on loopback by the bench);
//! * measures `dd if=/dev/zero of=FILE bs=16M count=64 conv=fsync` (the write baseline: one
//!   fsync at the end, where kbs fsyncs every object and its directory), `cat FILE > /dev/null`
//!   and `cp FILE COPY` in the same directory.
//!
//! Reads are page-cache reads for everyone (the data was just written; dropping caches needs
//! root). Prints a markdown table of MB/s (10⁶ bytes per second) and the ratio to `dd` (writes)
//! or `cat` (reads). `KBS_SKIP_MOTO=1` skips the moto rows; a missing `moto_server` is an error
//! pointing at `scripts/setup.sh`.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kbs_storage::{ObjectStorage, StorageOptions};

const OBJECT_SIZE: usize = 16 << 20;
const OBJECTS: usize = 64;
const TOTAL: usize = OBJECT_SIZE * OBJECTS;

fn mb_per_s(bytes: usize, seconds: f64) -> f64 {
    bytes as f64 / 1e6 / seconds
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed().as_secs_f64())
}

async fn timed_async<T>(f: impl std::future::Future<Output = T>) -> (T, f64) {
    let start = Instant::now();
    let out = f.await;
    (out, start.elapsed().as_secs_f64())
}

fn sh(command: &str) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "`{command}` failed: {status}");
}

/// The directory cargo builds into, where the bench's temporary files go.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// Pseudo-random bytes (incompressible, like compressed segments).
fn payload() -> Bytes {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut out = Vec::with_capacity(OBJECT_SIZE);
    while out.len() < OBJECT_SIZE {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    Bytes::from(out)
}

/// Writes the objects (`parallel` at a time, as tasks), then reads them all the same way;
/// returns the two durations.
async fn put_then_get(store: &Arc<dyn ObjectStorage>, prefix: &str, data: &Bytes, parallel: usize) -> (f64, f64) {
    let keys: Vec<String> = (0..OBJECTS).map(|i| format!("{prefix}/segment-{i:08}.kbs")).collect();
    let ((), write) = timed_async(async {
        for batch in keys.chunks(parallel) {
            let tasks: Vec<_> = batch
                .iter()
                .map(|key| {
                    let (store, key, data) = (Arc::clone(store), key.clone(), data.clone());
                    tokio::spawn(async move { store.put(&key, data).await })
                })
                .collect();
            for task in tasks {
                task.await.unwrap().unwrap();
            }
        }
    })
    .await;
    let ((), read) = timed_async(async {
        for batch in keys.chunks(parallel) {
            let tasks: Vec<_> = batch
                .iter()
                .map(|key| {
                    let (store, key) = (Arc::clone(store), key.clone());
                    tokio::spawn(async move { store.get(&key).await })
                })
                .collect();
            for task in tasks {
                assert_eq!(task.await.unwrap().unwrap().bytes.len(), OBJECT_SIZE);
            }
        }
    })
    .await;
    (write, read)
}

/// A moto server on a free loopback port, killed on drop.
struct Moto {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_ok(addr: SocketAddr, method: &str, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = std::io::Read::read_to_string(&mut stream, &mut response);
    response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200")
}

fn start_moto() -> Option<Moto> {
    if std::env::var("KBS_SKIP_MOTO").is_ok_and(|v| v == "1") {
        return None;
    }
    let cache = std::env::var_os("KBS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/kbs"));
    let binary = cache.join("venv/bin/moto_server");
    assert!(
        binary.is_file(),
        "{} not found — run scripts/setup.sh (or set KBS_SKIP_MOTO=1 to skip the moto rows)",
        binary.display()
    );
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(&binary)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let moto = Moto {
        child,
        addr: ([127, 0, 0, 1], port).into(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !http_ok(moto.addr, "GET", "/") {
        assert!(Instant::now() < deadline, "moto_server did not answer within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        http_ok(moto.addr, "PUT", "/kbs-bench"),
        "moto did not create the bucket"
    );
    Some(moto)
}

/// What a measurement is compared with.
#[derive(Clone, Copy)]
enum Baseline {
    Dd,
    Cat,
}

/// The samples of one (target, operation) row.
struct Series {
    target: String,
    operation: &'static str,
    baseline: Option<Baseline>,
    seconds: Vec<f64>,
}

/// Deletes the objects `put_then_get` wrote under `prefix`.
fn delete_objects(runtime: &tokio::runtime::Runtime, store: &Arc<dyn ObjectStorage>, prefix: &str) {
    for i in 0..OBJECTS {
        runtime
            .block_on(store.delete(&format!("{prefix}/segment-{i:08}.kbs")))
            .unwrap();
    }
}

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn main() {
    let rounds: usize = std::env::var("KBS_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let base = target_dir();
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::Builder::new()
        .prefix("kbs-storage-bench-")
        .tempdir_in(&base)
        .unwrap();
    let data = payload();
    let fs_store = runtime
        .block_on(kbs_storage::open(
            dir.path().join("store").to_str().unwrap(),
            &StorageOptions::default(),
        ))
        .unwrap();
    let moto = start_moto();
    let moto_store = moto.as_ref().map(|moto| {
        let options = StorageOptions::default()
            .with_s3_endpoint(format!("http://{}", moto.addr))
            .with_s3_credentials("bench-key", "bench-secret");
        runtime
            .block_on(kbs_storage::open("s3://kbs-bench/bench", &options))
            .unwrap()
    });

    // Samples per (target, operation), in table order.
    let mut samples: Vec<Series> = Vec::new();
    let mut record = |target: &str, operation: &'static str, baseline: Option<Baseline>, seconds: f64| match samples
        .iter_mut()
        .find(|s| s.target == target && s.operation == operation)
    {
        Some(series) => series.seconds.push(seconds),
        None => samples.push(Series {
            target: target.to_owned(),
            operation,
            baseline,
            seconds: vec![seconds],
        }),
    };
    for _ in 0..rounds {
        // Baselines on the same disk.
        let file = dir.path().join("dd.bin");
        let copy = dir.path().join("cp.bin");
        let ((), dd) = timed(|| {
            sh(&format!(
                "dd if=/dev/zero of={} bs=16M count=64 conv=fsync",
                file.display()
            ))
        });
        let ((), cat) = timed(|| sh(&format!("cat {} > /dev/null", file.display())));
        let ((), cp) = timed(|| sh(&format!("cp {} {}", file.display(), copy.display())));
        std::fs::remove_file(&copy).unwrap();
        std::fs::remove_file(&file).unwrap();
        record("dd bs=16M count=64 conv=fsync", "write", Some(Baseline::Dd), dd);
        record("cat FILE > /dev/null", "read", Some(Baseline::Cat), cat);
        record("cp FILE COPY (no fsync)", "read+write", None, cp);

        let mut stores = vec![("kbs filesystem", &fs_store)];
        if let Some(store) = &moto_store {
            stores.push(("kbs s3 → moto", store));
        }
        for (name, store) in stores {
            for parallel in [1, 4] {
                let prefix = format!("p{parallel}");
                let (write, read) = runtime.block_on(put_then_get(store, &prefix, &data, parallel));
                let target = format!("{name}, {parallel} at a time");
                record(&target, "write", Some(Baseline::Dd), write);
                record(&target, "read", Some(Baseline::Cat), read);
                delete_objects(&runtime, store, &prefix);
            }
        }
    }

    let median_of = |target: &str, operation: &str| {
        samples
            .iter()
            .find(|s| s.target == target && s.operation == operation)
            .map(|s| median(&s.seconds))
    };
    let dd = median_of("dd bs=16M count=64 conv=fsync", "write").unwrap();
    let cat = median_of("cat FILE > /dev/null", "read").unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "\n1 GiB as {OBJECTS} objects of 16 MiB; median of {rounds} rounds; reads are page-cache reads; MB = 10^6 bytes\n"
    )
    .unwrap();
    writeln!(out, "| target | operation | MB/s | ratio to dd (write) / cat (read) |").unwrap();
    writeln!(out, "|---|---|---:|---:|").unwrap();
    for operation in ["write", "read+write", "read"] {
        for series in samples.iter().filter(|s| s.operation == operation) {
            let seconds = median(&series.seconds);
            let ratio = match series.baseline {
                Some(Baseline::Dd) => format!("{:.2}", dd / seconds),
                Some(Baseline::Cat) => format!("{:.2}", cat / seconds),
                None => "—".to_owned(),
            };
            writeln!(
                out,
                "| {} | {} | {:.0} | {ratio} |",
                series.target,
                series.operation,
                mb_per_s(TOTAL, seconds)
            )
            .unwrap();
        }
    }
    if moto.is_none() {
        writeln!(out, "\n(KBS_SKIP_MOTO=1: moto rows skipped)").unwrap();
    }
}
