//! Running the `kbs` binary and reading what it stored.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use kbs_manifest::{BackupId, Manifest, layout};
use kbs_storage::{ObjectStorage, StorageOptions};

/// One record as the tests compare it: topic, partition, offset, timestamp, key, value,
/// headers (bytes base64, null as None).
pub(crate) type Row = (
    String,
    i32,
    i64,
    i64,
    Option<String>,
    Option<String>,
    Vec<(String, Option<String>)>,
);

/// A multi-threaded runtime for the async storage helpers below.
pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A `kbs` command.
pub(crate) fn kbs() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kbs"));
    command
        .env("RUST_LOG", "warn")
        .env_remove("KBS_CONFIG")
        .stdin(Stdio::null());
    command
}

/// Runs `kbs ARGS` to completion.
pub(crate) fn run(args: &[&str]) -> Output {
    kbs().args(args).output().expect("run kbs")
}

/// Runs `kbs ARGS`, panicking with its output unless it succeeds.
pub(crate) fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "kbs {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts `kbs ARGS` in the background.
pub(crate) fn spawn(args: &[&str]) -> Child {
    kbs()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kbs")
}

/// Opens a storage root with moto-friendly S3 settings when it is `s3://`.
pub(crate) async fn open_storage(url: &str, s3_endpoint: Option<&str>) -> Arc<dyn ObjectStorage> {
    let mut options = StorageOptions::default();
    if let Some(endpoint) = s3_endpoint {
        options = options
            .with_s3_endpoint(endpoint.to_string())
            .with_s3_credentials("test", "test");
        options.s3_allow_http = true;
        options.s3_path_style = Some(true);
        options.s3_region = Some("us-east-1".into());
    }
    kbs_storage::open(url, &options).await.expect("open storage")
}

/// Every record stored in backup `id`, read through the manifest and the segments.
pub(crate) async fn read_backup(storage: &Arc<dyn ObjectStorage>, id: &str) -> (Manifest, Vec<Row>) {
    read_backup_with(storage, id, None).await
}

/// [`read_backup`] of a backup that may be encrypted, opened with `identities`.
pub(crate) async fn read_backup_with(
    storage: &Arc<dyn ObjectStorage>,
    id: &str,
    identities: Option<&kbs_format::Identities>,
) -> (Manifest, Vec<Row>) {
    let backup_id = BackupId::new(id).unwrap();
    let manifest = Manifest::from_json(&storage.get(&layout::manifest_key(&backup_id)).await.unwrap().bytes).unwrap();
    let mut rows = Vec::new();
    for topic in &manifest.topics {
        for partition in &topic.partitions {
            for file in &partition.segment_files {
                let key = layout::segment_key(&backup_id, &topic.name, partition.partition, file.name).unwrap();
                let bytes = storage.get(&key).await.unwrap().bytes;
                let reader = match identities {
                    Some(identities) => {
                        kbs_format::SegmentReader::with_identities(bytes, Default::default(), identities).unwrap()
                    }
                    None => kbs_format::SegmentReader::new(bytes).unwrap(),
                };
                for record in reader.records() {
                    let r = record.unwrap();
                    rows.push((
                        topic.name.to_string(),
                        partition.partition,
                        r.offset,
                        r.timestamp,
                        r.key.map(|k| B64.encode(k)),
                        r.value.map(|v| B64.encode(v)),
                        r.headers
                            .iter()
                            .map(|h| (B64.encode(&h.key), h.value.as_ref().map(|v| B64.encode(v))))
                            .collect(),
                    ));
                }
            }
        }
    }
    rows.sort();
    (manifest, rows)
}

/// Every record stored in backup `id` under the storage root `root` (filesystem).
pub(crate) fn read_stored(root: &str, id: &str) -> (Manifest, Vec<Row>) {
    rt().block_on(async { read_backup(&open_storage(root, None).await, id).await })
}

/// `{partition: (log start, high watermark)}` of `topic`, as confluent-kafka reads them.
pub(crate) fn watermarks(bootstrap: &str, topic: &str) -> BTreeMap<i32, (i64, i64)> {
    let out = kbs_testkit::run_script("kafka_admin.py", &["offsets", bootstrap, topic]);
    let map: BTreeMap<String, (i64, i64)> = serde_json::from_slice(&out.stdout).unwrap();
    map.into_iter().map(|(p, w)| (p.parse().unwrap(), w)).collect()
}

/// What consume.py wrote.
pub(crate) fn read_consumed(path: &Path) -> Vec<Row> {
    let mut rows: Vec<Row> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let s = |v: &serde_json::Value| v.as_str().map(str::to_string);
            (
                v[0].as_str().unwrap().to_string(),
                v[1].as_i64().unwrap() as i32,
                v[2].as_i64().unwrap(),
                v[3].as_i64().unwrap(),
                s(&v[4]),
                s(&v[5]),
                v[6].as_array()
                    .unwrap()
                    .iter()
                    .map(|h| (h[0].as_str().unwrap().to_string(), s(&h[1])))
                    .collect(),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// Reads `topics` with the independent consumer.
pub(crate) fn consume(bootstrap: &str, dir: &Path, topics: &[&str]) -> Vec<Row> {
    let out = dir.join(format!("consumed-{}.jsonl", topics.join("_")));
    let mut args = vec![bootstrap, out.to_str().unwrap()];
    args.extend_from_slice(topics);
    kbs_testkit::run_script("consume.py", &args);
    read_consumed(&out)
}

/// Rows per topic, for readable assertion messages.
pub(crate) fn count_by_topic(rows: &[Row]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in rows {
        *counts.entry(r.0.clone()).or_default() += 1;
    }
    counts
}

/// Asserts two record lists are equal, reporting the first difference.
pub(crate) fn assert_same_records(backup: &[Row], source: &[Row]) {
    assert_eq!(
        count_by_topic(backup),
        count_by_topic(source),
        "record counts per topic differ"
    );
    for (i, (b, s)) in backup.iter().zip(source).enumerate() {
        assert_eq!(b, s, "record {i} differs (backup vs source)");
    }
    assert_eq!(backup.len(), source.len());
}

/// Sends SIGTERM to a child (std's `Child::kill` sends SIGKILL).
pub(crate) fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM failed");
}

/// Waits for a child with a deadline, returning its output; kills it and panics on timeout.
pub(crate) fn wait_with_deadline(mut child: Child, deadline: std::time::Duration) -> Output {
    let start = std::time::Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "kbs did not finish within {deadline:?}:\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Polls `check` every 50 ms until it returns true or `deadline` passes.
pub(crate) fn eventually(what: &str, deadline: std::time::Duration, mut check: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !check() {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Seeds `topic` with `count` simple records over `partitions` partitions.
pub(crate) fn seed_simple(bootstrap: &str, topic: &str, count: usize, partitions: usize, create: bool) {
    let count = count.to_string();
    let partitions = partitions.to_string();
    let mut args = vec![bootstrap, "simple", topic, &count, &partitions, "--value-size", "200"];
    if !create {
        args.push("--no-create");
    }
    kbs_testkit::run_script("seed.py", &args);
}

/// Runs a last, uninterrupted snapshot backup of `topic` into backup `id` under the
/// filesystem `root`, checks it with `validate --deep`, and asserts it holds exactly the
/// records an independent consumer reads from the topic. Returns the manifest.
pub(crate) fn complete_and_compare(bootstrap: &str, dir: &Path, root: &str, id: &str, topic: &str) -> Manifest {
    run_ok(&[
        "backup",
        "--bootstrap-servers",
        bootstrap,
        "--storage",
        root,
        "--backup-id",
        id,
        "--topics",
        topic,
        "-q",
    ]);
    run_ok(&["validate", "--path", root, "--backup-id", id, "--deep"]);
    let source = consume(bootstrap, dir, &[topic]);
    let (manifest, stored) = read_stored(root, id);
    assert_same_records(&stored, &source);
    manifest
}

/// Number of segment files anywhere under `dir` (0 if it does not exist).
pub(crate) fn segment_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                segment_files(&path)
            } else {
                usize::from(path.extension().is_some_and(|x| x == "kbs"))
            }
        })
        .sum()
}

/// The offsets a backup's checkpoint file covers, summed over its partitions (each partition's
/// next offset); 0 while there is no readable checkpoint.
pub(crate) fn checkpointed_offsets(checkpoint: &Path) -> usize {
    let text = std::fs::read_to_string(checkpoint).unwrap_or_default();
    kbs_manifest::Checkpoint::from_json(text.as_bytes()).map_or(0, |c| {
        c.topics
            .values()
            .flat_map(|p| p.values())
            .map(|p| (p.offset + 1) as usize)
            .sum()
    })
}

/// The sum of the values of every sample of the metrics endpoint at `addr` whose line starts
/// with `prefix` (a metric name and `{` for all its labels, or the name and a space); 0 when
/// the endpoint does not answer yet.
pub(crate) fn metric_sum(addr: &str, prefix: &str) -> f64 {
    kbs_testkit::http_request(addr.parse().expect("a socket address"), "GET", "/metrics")
        .ok()
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| {
            body.lines()
                .filter(|l| l.starts_with(prefix))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        })
        .unwrap_or(0.0)
}

/// The rows of `topic` renamed to `as_topic`, for comparing a restored topic with its source.
pub(crate) fn renamed(rows: &[Row], as_topic: &str) -> Vec<Row> {
    let mut rows: Vec<Row> = rows
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.0 = as_topic.to_string();
            r
        })
        .collect();
    rows.sort();
    rows
}
