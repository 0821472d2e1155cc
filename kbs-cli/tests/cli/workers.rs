//! `kbs backup --workers`: several processes share one snapshot backup through a Kafka group.
//! Each test compares the backup, offset for offset, with an independent consumer's read and
//! checks it with `validate --deep`: three workers on 12 topics × 8 partitions; one worker
//! SIGKILLed at random moments; a late joiner; a worker stopped with SIGTERM; a worker paused
//! past its session timeout whose commits are refused once it resumes. Continuous workers
//! follow a topic created while they run, join late, are SIGKILLed and SIGTERMed, and the last
//! to stop seals the backup. Restore workers get the same tests, and share a restore into
//! another partitioning by source topic through a SIGKILL, groups translated.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use kbs_storage::ObjectStorageExt as _;

use crate::harness::*;
use crate::lifecycle::Store;

/// Twelve topics of eight partitions, unevenly filled, read once by the independent consumer.
struct Source {
    kafka: kbs_testkit::KafkaCluster,
    bootstrap: String,
    dir: tempfile::TempDir,
    topics: Vec<String>,
    records: Vec<Row>,
}

impl Source {
    fn seed(records: usize) -> Option<Source> {
        Source::seed_on(records, kbs_testkit::KafkaOptions::default())
    }

    /// [`Source::seed`] on a broker whose groups wait 3 s for more members before their first
    /// generation (Kafka's default; the test kit's is 0): workers started together then all
    /// land in it, so each gets a share.
    fn seed_grouped(records: usize) -> Option<Source> {
        let options = kbs_testkit::KafkaOptions::default().with_config("group.initial.rebalance.delay.ms", "3000");
        Source::seed_on(records, options)
    }

    fn seed_on(records: usize, options: kbs_testkit::KafkaOptions) -> Option<Source> {
        let kafka = kbs_testkit::KafkaCluster::start_with(options)?;
        let bootstrap = kafka.bootstrap();
        let out = kbs_testkit::run_script("seed.py", &[&bootstrap, "wide", "--records", &records.to_string()]);
        let seeded: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let topics: Vec<String> = seeded["topics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        assert_eq!(topics.len(), 12);
        let dir = tempfile::tempdir().unwrap();
        let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        let records = consume(&bootstrap, dir.path(), &refs);
        assert_eq!(records.len() as u64, seeded["records"].as_u64().unwrap());
        Some(Source {
            kafka,
            bootstrap,
            dir,
            topics,
            records,
        })
    }

    /// A filesystem store in the test's folder.
    fn filesystem(&self) -> Store {
        Store::filesystem(self.dir.path())
    }

    /// Starts a worker of backup `id` in group `group` writing to `store`; its stderr goes to
    /// a file named after `name` (a pipe could fill up and stall it).
    fn worker(&self, store: &Store, id: &str, group: &str, name: &str) -> Worker {
        self.worker_with(store, id, group, name, &[])
    }

    /// A worker of a continuous backup, looking for new topics every second and committing
    /// what it read at least every second.
    fn continuous_worker(&self, store: &Store, id: &str, group: &str, name: &str) -> Worker {
        let extra = [
            "--continuous",
            "--topic-refresh-interval",
            "1s",
            "--segment-max-interval",
            "1s",
            "--consumer-groups",
            "--consumer-groups-interval",
            "1s",
        ];
        self.worker_with(store, id, group, name, &extra)
    }

    /// [`Source::worker`] with `extra` arguments.
    fn worker_with(&self, store: &Store, id: &str, group: &str, name: &str, extra: &[&str]) -> Worker {
        let mut args = vec![
            "backup",
            "--bootstrap-servers",
            &self.bootstrap,
            "--backup-id",
            id,
            "--topics",
            "w-*",
            "--workers",
            group,
            "--worker-session-timeout",
            "6s",
            "--compression",
            "lz4",
            "--segment-max-records",
            "300",
            "--output",
            "json",
        ];
        args.extend_from_slice(extra);
        self.spawn(store, &args, name)
    }

    /// Runs `kbs args` against `store` as a worker; its stderr goes to a file named after
    /// `name` (a pipe could fill up and stall it).
    fn spawn(&self, store: &Store, args: &[&str], name: &str) -> Worker {
        let log = self.dir.path().join(format!("{name}.log"));
        let child = store
            .command(args)
            .env(
                "RUST_LOG",
                std::env::var("KBS_WORKER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn kbs");
        Worker { child, log }
    }

    /// The backup equals the consumer's read, and `validate --deep` passes.
    fn check(&self, store: &Store, id: &str) {
        store.ok(&["validate", "--backup-id", id, "--deep"]);
        let (manifest, stored) = rt().block_on(read_backup(&store.storage, id));
        assert!(manifest.is_complete(), "{id} is not complete");
        assert_same_records(&stored, &self.records);
        let topic = manifest.topic("w-11").unwrap();
        assert_eq!(topic.partition_count, Some(8));
    }

    /// Backs the twelve topics up as backup `id` (one process).
    fn backup(&self, store: &Store, id: &str) {
        store.ok(&[
            "backup",
            "--bootstrap-servers",
            &self.bootstrap,
            "--backup-id",
            id,
            "--topics",
            "w-*",
            "--compression",
            "lz4",
            "--segment-max-records",
            "300",
            "--consumer-groups",
            "-q",
        ]);
    }

    /// Starts a restore worker of backup `id`'s `topics` into topics renamed `w-NN` ->
    /// `{prefix}-NN`, restore id `restore_id`, group `group`.
    fn restorer(&self, store: &Store, id: &str, topics: &[String], prefix: &str, group: &str, name: &str) -> Worker {
        self.restorer_with(store, id, topics, prefix, group, name, &[])
    }

    /// [`Source::restorer`] with `extra` arguments.
    #[allow(clippy::too_many_arguments)]
    fn restorer_with(
        &self,
        store: &Store,
        id: &str,
        topics: &[String],
        prefix: &str,
        group: &str,
        name: &str,
        extra: &[&str],
    ) -> Worker {
        let map: Vec<String> = topics.iter().map(|t| format!("{t}={}", target(t, prefix))).collect();
        let (topics, map) = (topics.join(","), map.join(","));
        let mut args = vec![
            "restore",
            "--bootstrap-servers",
            &self.bootstrap,
            "--backup-id",
            id,
            "--topics",
            &topics,
            "--topic-map",
            &map,
            "--create-topics",
            "--consumer-groups",
            "--restore-id",
            prefix,
            "--workers",
            group,
            "--worker-session-timeout",
            "6s",
            "--parallelism",
            "4",
            "--output",
            "json",
        ];
        args.extend_from_slice(extra);
        self.spawn(store, &args, name)
    }

    /// The restored topics hold exactly the source's records of `topics`, offsets included.
    fn check_restored(&self, topics: &[String], prefix: &str) {
        let targets: Vec<String> = topics.iter().map(|t| target(t, prefix)).collect();
        let refs: Vec<&str> = targets.iter().map(String::as_str).collect();
        let restored = consume(&self.bootstrap, self.dir.path(), &refs);
        let mut expected: Vec<Row> = self
            .records
            .iter()
            .filter(|r| topics.contains(&r.0))
            .map(|r| {
                let mut r = r.clone();
                r.0 = target(&r.0, prefix);
                r
            })
            .collect();
        expected.sort();
        assert_same_records(&restored, &expected);
    }

    /// Commits, for the consumer group `half`, that it read the first ten records of each
    /// partition of w-00.
    fn commit_half_of_w00(&self) {
        let mut commit = vec!["commit".to_string(), self.bootstrap.clone(), "half".into()];
        commit.extend((0..8).map(|p| format!("w-00:{p}=10")));
        kbs_testkit::run_script("groups.py", &commit.iter().map(String::as_str).collect::<Vec<_>>());
    }

    /// The seeded records' key and value bytes.
    fn key_value_bytes(&self) -> u64 {
        let len = |field: &Option<String>| field.as_ref().map_or(0, |b64| b64.len() as u64 * 3 / 4);
        self.records.iter().map(|r| len(&r.4) + len(&r.5)).sum()
    }

    /// `--max-bytes-per-sec` for each of `workers` workers sharing the seeded records evenly so
    /// that each takes about `seconds` over its share: long enough to be stopped while it
    /// works, whatever the load on the machine.
    fn rate_for(&self, workers: u64, seconds: u64) -> String {
        (self.key_value_bytes() / workers / seconds).max(1024).to_string()
    }

    /// Polls `check` until it holds; on timeout, fails with every worker's log.
    fn until(&self, what: &str, workers: &mut [Worker], mut check: impl FnMut(&mut [Worker]) -> bool) {
        let start = std::time::Instant::now();
        while !check(workers) {
            if start.elapsed() > Duration::from_secs(120) {
                let logs: Vec<String> = workers
                    .iter()
                    .map(|w| {
                        format!(
                            "--- {} ---\n{}",
                            w.log.display(),
                            std::fs::read_to_string(&w.log).unwrap_or_default()
                        )
                    })
                    .collect();
                panic!("timed out waiting for {what}\n{}", logs.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// What `kbs status` says of restore `restore_id` of backup `id`.
fn restore_status(store: &Store, id: &str, restore_id: &str) -> serde_json::Value {
    let status: serde_json::Value =
        serde_json::from_str(&store.ok(&["status", "--backup-id", id, "--output", "json"])).unwrap();
    status["restores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["restore_id"] == restore_id)
        .cloned()
        .unwrap()
}

/// The target topic of source topic `w-NN` in restore `prefix`.
fn target(topic: &str, prefix: &str) -> String {
    topic.replacen("w-", &format!("{prefix}-"), 1)
}

/// The progress objects of restore `restore_id` of backup `id`.
fn restore_progress(store: &Store, id: &str, restore_id: &str) -> Vec<serde_json::Value> {
    json_objects(store, &format!("{id}/restores/{restore_id}/partitions/"))
}

/// Records restore `restore_id` has recorded as restored so far.
fn restored_records(store: &Store, id: &str, restore_id: &str) -> u64 {
    restore_progress(store, id, restore_id)
        .iter()
        .map(|o| o["progress"]["records"].as_u64().unwrap_or(0))
        .sum()
}

/// Records the reshaped topics of restore `restore_id` of backup `id` have acknowledged so far.
fn reshaped_records(store: &Store, id: &str, restore_id: &str) -> u64 {
    restore_progress(store, id, restore_id)
        .iter()
        .filter_map(|o| o["reshaped"]["targets"].as_object().cloned())
        .flat_map(|targets| targets.into_iter().map(|(_, t)| t["records"].as_u64().unwrap_or(0)))
        .sum()
}

/// Segments stored in backup `id` so far.
fn segments(store: &Store, id: &str) -> usize {
    store
        .keys(&format!("{id}/"))
        .iter()
        .filter(|k| k.ends_with(".kbs"))
        .count()
}

/// Every progress object of backup `id`.
fn progress(store: &Store, id: &str) -> Vec<serde_json::Value> {
    json_objects(store, &format!("{id}/checkpoints/partitions/"))
}

/// Records committed to the progress objects of backup `id` so far, of topics `topic` selects.
fn committed_records(store: &Store, id: &str, topic: impl Fn(&str) -> bool) -> u64 {
    progress(store, id)
        .iter()
        .filter(|o| topic(o["topic"].as_str().unwrap_or_default()))
        .flat_map(|o| o["segment_files"].as_array().cloned().unwrap_or_default())
        .map(|s| s["records"].as_u64().unwrap_or(0))
        .sum()
}

/// The status of backup `id`'s manifest (`None` before the first).
fn manifest_status(store: &Store, id: &str) -> Option<String> {
    let got = rt().block_on(store.storage.get(&format!("{id}/manifest.json"))).ok()?;
    let manifest: serde_json::Value = serde_json::from_slice(&got.bytes).unwrap();
    manifest["status"].as_str().map(str::to_string)
}

/// The JSON objects under `prefix` (those still there when read).
fn json_objects(store: &Store, prefix: &str) -> Vec<serde_json::Value> {
    let rt = rt();
    let keys = rt.block_on(store.storage.list_all(prefix)).unwrap();
    keys.iter()
        .filter_map(|k| rt.block_on(store.storage.get(&k.key)).ok())
        .map(|got| serde_json::from_slice(&got.bytes).unwrap())
        .collect()
}

struct Worker {
    child: Child,
    log: PathBuf,
}

impl Worker {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_some()
    }

    /// Waits for the worker, returning its output and its stderr.
    fn finish(self) -> (Output, String) {
        let log = self.log.clone();
        let out = wait_with_deadline(self.child, Duration::from_secs(240));
        (out, std::fs::read_to_string(log).unwrap_or_default())
    }

    /// Waits for a worker that must succeed; returns its JSON report.
    fn succeed(self) -> serde_json::Value {
        let (out, log) = self.finish();
        assert!(
            out.status.success(),
            "worker failed ({}):\nstdout: {}\nstderr: {log}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("report: {e}: {}", String::from_utf8_lossy(&out.stdout));
        })
    }
}

fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid} failed");
}

#[test]
fn three_workers_share_twelve_topics_of_eight_partitions_exactly_once() {
    let Some(source) = Source::seed_grouped(60_000) else {
        return;
    };
    let store = source.filesystem();
    let workers: Vec<Worker> = (0..3)
        .map(|i| source.worker(&store, "shared", "kbs-shared", &format!("w{i}")))
        .collect();
    let reports: Vec<serde_json::Value> = workers.into_iter().map(Worker::succeed).collect();
    source.check(&store, "shared");
    // Every record was stored by exactly one worker, and every worker had a share.
    let stored: u64 = reports.iter().map(|r| r["records"].as_u64().unwrap()).sum();
    assert_eq!(stored, source.records.len() as u64, "{reports:?}");
    for r in &reports {
        assert!(
            r["partitions"].as_u64().unwrap() > 0,
            "a worker had no partition: {reports:?}"
        );
        assert_eq!(r["total_records"].as_u64().unwrap(), source.records.len() as u64);
    }
    let progress = progress(&store, "shared");
    assert_eq!(progress.len(), 96);
    assert!(progress.iter().all(|p| p["done"] == true), "{progress:?}");
    let owners: BTreeSet<u64> = progress.iter().map(|p| p["owner"]["pid"].as_u64().unwrap()).collect();
    assert_eq!(owners.len(), 3, "partitions owned by {owners:?}");
    // `kbs status` shows the workers and each partition's progress and owner.
    let status: serde_json::Value =
        serde_json::from_str(&store.ok(&["status", "--backup-id", "shared", "--output", "json"])).unwrap();
    let backup = &status["backups"][0];
    let shown: BTreeSet<u64> = backup["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(shown, owners, "{backup}");
    let partitions = backup["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 96);
    for p in partitions {
        assert_eq!(p["done"], true, "{p}");
        assert!(
            p["next_offset"].as_i64().unwrap() >= p["snapshot_end"].as_i64().unwrap(),
            "{p}"
        );
        assert!(p["owner"].is_string(), "{p}");
    }
    let text = store.ok(&["status", "--backup-id", "shared"]);
    assert_eq!(text.matches("  worker kbs-").count(), 3, "{text}");
    // A rerun of a complete backup finds nothing to do.
    let again = source.worker(&store, "shared", "kbs-shared", "again").succeed();
    assert_eq!(again["records"].as_u64().unwrap(), 0);
    // A single (non-worker) backup of a workers' backup is refused: the cut is theirs.
    store.fails(
        &[
            "backup",
            "--bootstrap-servers",
            &source.bootstrap,
            "--backup-id",
            "shared",
            "--topics",
            "w-*",
        ],
        5,
        "--workers",
    );
    drop(source.kafka);
}

#[test]
fn a_worker_killed_at_any_moment_hands_its_partitions_over_exactly_once() {
    let Some(source) = Source::seed(30_000) else { return };
    let store = source.filesystem();
    // Kill points spread over the run, from before the cut to near the end (about 200
    // segments in all); a different worker each time.
    for (run, after_segments) in [0usize, 3, 10, 25, 40, 60, 80, 110, 140, 170, 1]
        .into_iter()
        .enumerate()
    {
        let id = format!("kill-{run}");
        let mut workers: Vec<Worker> = (0..3)
            .map(|i| source.worker(&store, &id, &format!("g-{id}"), &format!("{id}-w{i}")))
            .collect();
        source.until("segments before the kill", &mut workers, |w| {
            segments(&store, &id) >= after_segments || w.iter_mut().any(Worker::exited)
        });
        let mut victim = workers.remove(run % 3);
        let _ = victim.child.kill();
        let _ = victim.child.wait();
        for w in workers {
            w.succeed();
        }
        source.check(&store, &id);
    }
}

#[test]
fn a_late_worker_joins_and_a_worker_stopped_with_sigterm_hands_over() {
    let Some(source) = Source::seed(30_000) else { return };
    let store = source.filesystem();
    // Late joiner: two workers start, the third joins once they are under way.
    let mut early: Vec<Worker> = (0..2)
        .map(|i| source.worker(&store, "late", "g-late", &format!("late-w{i}")))
        .collect();
    source.until("the first segments", &mut early, |w| {
        segments(&store, "late") >= 20 || w.iter_mut().any(Worker::exited)
    });
    let late = source.worker(&store, "late", "g-late", "late-w2");
    let mut stored = 0;
    for w in early.into_iter().chain([late]) {
        stored += w.succeed()["records"].as_u64().unwrap();
    }
    assert_eq!(stored, source.records.len() as u64);
    source.check(&store, "late");

    // SIGTERM: the stopped worker commits what it read, leaves the group at once (exit 4, the
    // backup is not complete yet) and the other two finish it.
    let mut workers: Vec<Worker> = (0..3)
        .map(|i| source.worker(&store, "term", "g-term", &format!("term-w{i}")))
        .collect();
    source.until("the first segments", &mut workers, |w| {
        segments(&store, "term") >= 40 || w.iter_mut().any(Worker::exited)
    });
    let stopped = workers.remove(0);
    terminate(&stopped.child);
    let (out, log) = stopped.finish();
    assert!(matches!(out.status.code(), Some(0) | Some(4)), "{}: {log}", out.status);
    for w in workers {
        w.succeed();
    }
    source.check(&store, "term");
}

#[test]
fn a_paused_worker_cannot_commit_for_partitions_it_lost() {
    let Some(source) = Source::seed_grouped(60_000) else {
        return;
    };
    // On S3 (moto), where workers on several hosts share a backup.
    let Some(store) = Store::s3() else { return };
    let owned_by = |pid: u32, progress: &[serde_json::Value]| -> Vec<String> {
        progress
            .iter()
            .filter(|p| p["owner"]["pid"].as_u64() == Some(u64::from(pid)) && p["done"] == false)
            .map(|p| format!("{}/{}", p["topic"].as_str().unwrap(), p["partition"]))
            .collect()
    };
    // The worker must be stopped while it still owns unfinished partitions; if it finished
    // them all just before the signal, the run proves nothing and is done again.
    for attempt in 0..5 {
        let id = format!("pause-{attempt}");
        // Each worker limits its reading, so its share takes about 8 s.
        let rate = source.rate_for(3, 8);
        let mut workers: Vec<Worker> = (0..3)
            .map(|i| {
                source.worker_with(
                    &store,
                    &id,
                    &format!("g-{id}"),
                    &format!("{id}-w{i}"),
                    &["--max-bytes-per-sec", &rate],
                )
            })
            .collect();
        let pids: Vec<u32> = workers.iter().map(Worker::pid).collect();
        let paused_pid = pids[0];
        // Stopped once the group has settled, with all three working (each owns unfinished
        // partitions): stopped between two generations instead, it may have committed all it
        // had and then never try anything for what it lost. (Or a worker finished first: the
        // run proves nothing and is done again.)
        source.until("every worker to own unfinished partitions", &mut workers, |w| {
            let progress = progress(&store, &id);
            pids.iter().all(|&pid| !owned_by(pid, &progress).is_empty()) || w.iter_mut().any(Worker::exited)
        });
        if owned_by(paused_pid, &progress(&store, &id)).is_empty() {
            kbs_testkit::note(&format!(
                "attempt {attempt}: the others finished before the worker got a share; again"
            ));
            workers.into_iter().for_each(|w| drop(w.succeed()));
            continue;
        }
        signal(paused_pid, "-STOP");
        let lost = owned_by(paused_pid, &progress(&store, &id));
        if lost.is_empty() {
            kbs_testkit::note(&format!(
                "attempt {attempt}: the worker finished its share before it was stopped; again"
            ));
            signal(paused_pid, "-CONT");
            workers.into_iter().for_each(|w| drop(w.succeed()));
            continue;
        }
        // Past the 6 s session timeout the group drops it and the others take its partitions.
        source.until("the others to take its partitions over", &mut workers, |_| {
            owned_by(paused_pid, &progress(&store, &id)).is_empty()
        });
        signal(paused_pid, "-CONT");
        let paused = workers.remove(0);
        let others: Vec<serde_json::Value> = workers.into_iter().map(Worker::succeed).collect();
        let (out, log) = paused.finish();
        assert!(out.status.success(), "{}: {log}", out.status);
        // Its commits (or, stopped while taking partitions over, its take-over) for the
        // partitions it lost were refused, and it says which and to whom they went. If, once
        // resumed, it heard it was dropped before it tried anything, it never tried: the run
        // proves nothing of the refusal and is done again (its backup is still checked).
        if !log.contains("refused for") {
            kbs_testkit::note(&format!(
                "attempt {attempt}: resumed, the worker heard it was dropped before it tried to commit; again"
            ));
            assert!(log.contains("dropped from group"), "{}\n{log}", out.status);
            source.check(&store, &id);
            continue;
        }
        assert!(log.contains(" (now member kbs-"), "{}\n{log}", out.status);
        assert!(
            others
                .iter()
                .all(|r| r["total_records"].as_u64() == Some(source.records.len() as u64))
        );
        source.check(&store, &id);
        return;
    }
    panic!(
        "in 5 attempts no write of the stopped worker for partitions it had lost was refused (it finished first, heard it was dropped and wrote nothing, or its writes went through)"
    );
}

#[test]
fn three_restore_workers_share_a_restore_exactly_once() {
    let Some(source) = Source::seed_grouped(60_000) else {
        return;
    };
    let store = source.filesystem();
    source.commit_half_of_w00();
    source.backup(&store, "src");
    let workers: Vec<Worker> = (0..3)
        .map(|i| source.restorer(&store, "src", &source.topics, "r", "g-restore", &format!("r-w{i}")))
        .collect();
    let reports: Vec<serde_json::Value> = workers.into_iter().map(Worker::succeed).collect();
    source.check_restored(&source.topics, "r");
    // Each worker had a share, and the partitions' progress counts every record once (a
    // worker's report counts what it produced and saw acknowledged; after a rebalance, the
    // next owner counts what it found already written).
    assert!(
        reports.iter().all(|r| r["records"].as_u64().unwrap() > 0),
        "{reports:?}"
    );
    let objects = restore_progress(&store, "src", "r");
    let recorded: u64 = objects.iter().map(|o| o["progress"]["records"].as_u64().unwrap()).sum();
    assert_eq!(recorded, source.records.len() as u64);
    // Every partition with records (the last topic's last partition has none).
    let with_records: BTreeSet<(&String, i32)> = source.records.iter().map(|r| (&r.0, r.1)).collect();
    assert_eq!(objects.len(), with_records.len());
    assert!(objects.iter().all(|o| o["progress"]["done"] == true));
    // The group's offsets moved with the records (committed once, by the worker that found the
    // restore complete): it reads exactly what it had not read of w-00.
    let read = source.dir.path().join("half.jsonl");
    kbs_testkit::run_script(
        "groups.py",
        &["read", &source.bootstrap, "half", read.to_str().unwrap(), "r-00"],
    );
    let unread: Vec<(i32, i64)> = source
        .records
        .iter()
        .filter(|r| r.0 == "w-00" && r.2 >= 10)
        .map(|r| (r.1, r.2))
        .collect();
    let mut got: Vec<(i32, i64)> = read_consumed(&read).iter().map(|r| (r.1, r.2)).collect();
    got.sort();
    assert_eq!(got, unread);
    // `kbs status` shows the restore's workers and each partition's owner.
    let restore = restore_status(&store, "src", "r");
    assert_eq!(restore["workers"].as_array().unwrap().len(), 3, "{restore}");
    assert_eq!(restore["partitions_done"], restore["partitions_total"], "{restore}");
    assert!(
        restore["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["owner"].is_string())
    );
    // A single run of the shared restore is refused; a rerun of the workers finds it complete.
    store.fails(
        &[
            "restore",
            "--bootstrap-servers",
            &source.bootstrap,
            "--backup-id",
            "src",
            "--restore-id",
            "r",
        ],
        5,
        "--workers",
    );
    // Another restore into the same targets is refused, naming the shared one to resume.
    store.fails(
        &[
            "restore",
            "--bootstrap-servers",
            &source.bootstrap,
            "--backup-id",
            "src",
            "--topics",
            "w-00",
            "--topic-map",
            "w-00=r-00",
            "--restore-id",
            "another",
        ],
        2,
        "Earlier restores of this backup wrote to r-00: r ",
    );
    let again = source
        .restorer(&store, "src", &source.topics, "r", "g-restore", "r-again")
        .succeed();
    assert_eq!(again["records"].as_u64().unwrap(), 0);
    source.check_restored(&source.topics, "r");
}

#[test]
fn a_restore_worker_killed_at_any_moment_hands_its_partitions_over_exactly_once() {
    let Some(source) = Source::seed(30_000) else { return };
    let store = source.filesystem();
    source.backup(&store, "src");
    let topics: Vec<String> = source.topics[6..].to_vec();
    let planned: u64 = source.records.iter().filter(|r| topics.contains(&r.0)).count() as u64;
    for (run, after) in [0u64, 1, 500, 1_000, 2_000, 4_000, 6_000, 9_000, 12_000, 15_000, 18_000]
        .into_iter()
        .enumerate()
    {
        let prefix = format!("k{run}");
        let mut workers: Vec<Worker> = (0..3)
            .map(|i| {
                source.restorer(
                    &store,
                    "src",
                    &topics,
                    &prefix,
                    &format!("g-{prefix}"),
                    &format!("{prefix}-w{i}"),
                )
            })
            .collect();
        source.until("records restored before the kill", &mut workers, |w| {
            restored_records(&store, "src", &prefix) >= after.min(planned) || w.iter_mut().any(Worker::exited)
        });
        let mut victim = workers.remove(run % 3);
        let _ = victim.child.kill();
        let _ = victim.child.wait();
        for w in workers {
            w.succeed();
        }
        source.check_restored(&topics, &prefix);
    }
}

#[test]
fn a_late_restore_worker_joins_and_one_stopped_with_sigterm_hands_over() {
    let Some(source) = Source::seed(30_000) else { return };
    let store = source.filesystem();
    source.backup(&store, "src");
    let mut early: Vec<Worker> = (0..2)
        .map(|i| source.restorer(&store, "src", &source.topics, "late", "g-late", &format!("late-w{i}")))
        .collect();
    source.until("the first records restored", &mut early, |w| {
        restored_records(&store, "src", "late") >= 3_000 || w.iter_mut().any(Worker::exited)
    });
    let late = source.restorer(&store, "src", &source.topics, "late", "g-late", "late-w2");
    for w in early.into_iter().chain([late]) {
        w.succeed();
    }
    source.check_restored(&source.topics, "late");

    let mut workers: Vec<Worker> = (0..3)
        .map(|i| source.restorer(&store, "src", &source.topics, "term", "g-term", &format!("term-w{i}")))
        .collect();
    source.until("the first records restored", &mut workers, |w| {
        restored_records(&store, "src", "term") >= 5_000 || w.iter_mut().any(Worker::exited)
    });
    let stopped = workers.remove(0);
    terminate(&stopped.child);
    let (out, log) = stopped.finish();
    assert!(matches!(out.status.code(), Some(0) | Some(4)), "{}: {log}", out.status);
    for w in workers {
        w.succeed();
    }
    source.check_restored(&source.topics, "term");
}

#[test]
fn a_paused_restore_worker_cannot_produce_or_commit_for_partitions_it_lost() {
    let Some(source) = Source::seed_grouped(60_000) else {
        return;
    };
    let Some(store) = Store::s3() else { return };
    source.backup(&store, "src");
    let owned_by = |pid: u32, objects: &[serde_json::Value]| -> Vec<String> {
        objects
            .iter()
            .filter(|o| o["owner"]["pid"].as_u64() == Some(u64::from(pid)) && o["progress"]["done"] != true)
            .map(|o| o["source"].as_str().unwrap().to_string())
            .collect()
    };
    for attempt in 0..5 {
        let prefix = format!("pause{attempt}");
        // Each worker limits its producing, so its share takes about 8 s.
        let rate = source.rate_for(3, 8);
        let mut workers: Vec<Worker> = (0..3)
            .map(|i| {
                source.restorer_with(
                    &store,
                    "src",
                    &source.topics,
                    &prefix,
                    &format!("g-{prefix}"),
                    &format!("{prefix}-w{i}"),
                    &["--max-bytes-per-sec", &rate],
                )
            })
            .collect();
        let pids: Vec<u32> = workers.iter().map(Worker::pid).collect();
        let paused_pid = pids[0];
        // Stopped once the group has settled, with all three producing (as in the backup's
        // test). (Or a worker finished first: done again.)
        source.until("every worker to own unfinished partitions", &mut workers, |w| {
            let progress = restore_progress(&store, "src", &prefix);
            pids.iter().all(|&pid| !owned_by(pid, &progress).is_empty()) || w.iter_mut().any(Worker::exited)
        });
        if owned_by(paused_pid, &restore_progress(&store, "src", &prefix)).is_empty() {
            kbs_testkit::note(&format!(
                "attempt {attempt}: the others finished before the worker got a share; again"
            ));
            workers.into_iter().for_each(|w| drop(w.succeed()));
            continue;
        }
        signal(paused_pid, "-STOP");
        let lost = owned_by(paused_pid, &restore_progress(&store, "src", &prefix));
        if lost.is_empty() {
            kbs_testkit::note(&format!(
                "attempt {attempt}: the worker finished its share before it was stopped; again"
            ));
            signal(paused_pid, "-CONT");
            workers.into_iter().for_each(|w| drop(w.succeed()));
            continue;
        }
        source.until("the others to take its partitions over", &mut workers, |_| {
            owned_by(paused_pid, &restore_progress(&store, "src", &prefix)).is_empty()
        });
        signal(paused_pid, "-CONT");
        let paused = workers.remove(0);
        for w in workers {
            w.succeed();
        }
        let (out, log) = paused.finish();
        assert!(out.status.success(), "{}: {log}", out.status);
        source.check_restored(&source.topics, &prefix);
        // It stopped producing (its heartbeats went unanswered) and its commits were refused.
        // If, once resumed, it heard it was dropped before it tried anything, it never tried:
        // the run proves nothing of the refusal and is done again.
        if !(log.contains("stopped producing") || log.contains("refused for")) {
            kbs_testkit::note(&format!(
                "attempt {attempt}: resumed, the worker heard it was dropped before it tried to produce; again"
            ));
            assert!(log.contains("dropped from group"), "{}\n{log}", out.status);
            continue;
        }
        return;
    }
    panic!(
        "in 5 attempts no write of the stopped worker for partitions it had lost was refused (it finished first, heard it was dropped and wrote nothing, or its writes went through)"
    );
}

#[test]
fn workers_refuse_what_they_do_not_share_yet_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let common = [
        "--bootstrap-servers",
        "127.0.0.1:1",
        "--storage",
        root,
        "--backup-id",
        "x",
    ];
    for (args, says) in [
        (vec!["backup", "--workers", ""], "the group name is empty"),
        (
            vec!["backup", "--workers", "g", "--worker-session-timeout", "10ms"],
            "at least 1s",
        ),
    ] {
        let mut all = args.clone();
        all.extend(common);
        let out = run(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{all:?}: {stderr}");
        assert!(stderr.contains(says), "{all:?}: {stderr}");
    }
}

#[test]
fn continuous_workers_follow_new_topics_and_the_last_to_stop_seals_the_backup() {
    let Some(mut source) = Source::seed_grouped(6_000) else {
        return;
    };
    let store = source.filesystem();
    let id = "cont";
    let mut workers: Vec<Worker> = (0..2)
        .map(|i| source.continuous_worker(&store, id, "g-cont", &format!("cont-w{i}")))
        .collect();
    let seeded = source.records.len() as u64;
    source.until("the seeded records committed", &mut workers, |w| {
        committed_records(&store, id, |_| true) >= seeded || w.iter_mut().any(Worker::exited)
    });
    assert_eq!(manifest_status(&store, id).as_deref(), Some("in_progress"));
    // Running workers keep a deletion out (each holds a presence lease of its own).
    store.fails(&["delete", "--backup-id", id, "--force"], 5, "running workers");
    // describe and list say it runs, from the same presences.
    let described = store.ok(&["describe", "--backup-id", id]);
    assert!(
        described.contains("status      in_progress: RUNNING (2 kbs workers: host "),
        "{described}"
    );
    let listed = store.ok(&["list"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("cont ") && l.contains(" RUNNING ")),
        "{listed}"
    );
    let snapshot = source.worker(&store, id, "g-snapshot", "snapshot-w");
    let (out, log) = snapshot.finish();
    assert_eq!(out.status.code(), Some(2), "{log}");
    assert!(log.contains("start this worker with --continuous too"), "{log}");

    // A topic created while they run joins the backup; a third worker joins late; a group
    // commits offsets, which the catalogue captures.
    seed_simple(&source.bootstrap, "w-new", 900, 3, true);
    seed_simple(&source.bootstrap, "w-00", 500, 8, false);
    workers.push(source.continuous_worker(&store, id, "g-cont", "cont-w2"));
    kbs_testkit::run_script(
        "groups.py",
        &["commit", &source.bootstrap, "cont-readers", "w-new:0=100"],
    );
    source.until("the new topic committed", &mut workers, |w| {
        committed_records(&store, id, |t| t == "w-new") >= 900
            && committed_records(&store, id, |_| true) >= seeded + 1_400
            || w.iter_mut().any(Worker::exited)
    });
    let owners: BTreeSet<String> = progress(&store, id)
        .iter()
        .filter(|o| o["topic"] == "w-new")
        .map(|o| o["owner"]["member_id"].as_str().unwrap().to_string())
        .collect();
    assert!(!owners.is_empty());

    // A worker SIGKILLed: once the group dropped it, its partitions go on with the others,
    // each record once.
    let killed = workers.remove(1);
    let killed_pid = u64::from(killed.pid());
    signal(killed.pid(), "-KILL");
    let _ = killed.finish();
    seed_simple(&source.bootstrap, "w-01", 400, 8, false);
    let before = committed_records(&store, id, |_| true);
    source.until("the killed worker's partitions taken over", &mut workers, |w| {
        let orphaned = progress(&store, id)
            .iter()
            .any(|o| o["owner"]["pid"].as_u64() == Some(killed_pid));
        !orphaned && committed_records(&store, id, |_| true) >= before + 400 || w.iter_mut().any(Worker::exited)
    });

    // The first worker stopped leaves the other running: the backup stays in progress.
    let first = workers.remove(0);
    terminate(&first.child);
    let report = first.succeed();
    assert_eq!(manifest_status(&store, id).as_deref(), Some("in_progress"), "{report}");
    // The last one stopped seals it, with everything.
    let last = workers.remove(0);
    terminate(&last.child);
    last.succeed();
    assert_eq!(manifest_status(&store, id).as_deref(), Some("complete"));
    source.topics.push("w-new".into());
    let refs: Vec<&str> = source.topics.iter().map(String::as_str).collect();
    source.records = consume(&source.bootstrap, source.dir.path(), &refs);
    store.ok(&["validate", "--backup-id", id, "--deep"]);
    let (manifest, stored) = rt().block_on(read_backup(&store.storage, id));
    assert_same_records(&stored, &source.records);
    assert_eq!(manifest.topic("w-new").unwrap().partition_count, Some(3));
    let groups = manifest.consumer_groups.as_ref().expect("consumer groups captured");
    assert!(groups.contains_key("cont-readers"), "{groups:?}");

    // Started again, workers reopen the backup and go on where it ended; stopped together
    // (as a deployment is), one of them seals it.
    let mut again: Vec<Worker> = (0..2)
        .map(|i| source.continuous_worker(&store, id, "g-cont", &format!("cont-again-w{i}")))
        .collect();
    seed_simple(&source.bootstrap, "w-new", 300, 3, false);
    let before = manifest.statistics.records;
    source.until("the reopened backup goes on", &mut again, |w| {
        committed_records(&store, id, |_| true) >= before + 300 || w.iter_mut().any(Worker::exited)
    });
    assert_eq!(manifest_status(&store, id).as_deref(), Some("in_progress"));
    for w in &again {
        terminate(&w.child);
    }
    for w in again {
        w.succeed();
    }
    let refs: Vec<&str> = source.topics.iter().map(String::as_str).collect();
    let all = consume(&source.bootstrap, source.dir.path(), &refs);
    let (manifest, stored) = rt().block_on(read_backup(&store.storage, id));
    assert!(manifest.is_complete());
    assert_same_records(&stored, &all);
    store.ok(&["validate", "--backup-id", id, "--deep"]);
    // Once every worker ended (the SIGKILLed one's presence is stale: its process is gone), the
    // backup can be deleted.
    store.ok(&["delete", "--backup-id", id]);
    assert!(store.keys(&format!("{id}/")).is_empty());
}

#[test]
fn restore_workers_share_a_repartitioned_restore_exactly_once_through_a_sigkill() {
    let Some(source) = Source::seed_grouped(30_000) else {
        return;
    };
    let store = source.filesystem();
    source.commit_half_of_w00();
    source.backup(&store, "src");
    let topics = source.topics.clone();
    // Each source topic is one sequence, so the topics are shared out: 12 topics of 8
    // partitions into topics of 5, round robin, among three workers, slowed so that the kill
    // lands while they produce.
    let extra = [
        "--repartition",
        "round-robin",
        "--partitions",
        "5",
        "--max-bytes-per-sec",
        "2M",
    ];
    let start = |name: &str| source.restorer_with(&store, "src", &topics, "rr", "g-reshape", name, &extra);
    let mut workers: Vec<Worker> = (0..3).map(|i| start(&format!("rr-w{i}"))).collect();
    let planned = source.records.len() as u64;
    source.until("the first records restored", &mut workers, |w| {
        reshaped_records(&store, "src", "rr") >= planned / 10 || w.iter_mut().any(Worker::exited)
    });
    // Running restore workers keep a deletion of the backup out.
    store.fails(&["delete", "--backup-id", "src"], 5, "running workers");
    // One worker SIGKILLed mid-sequence: its topics go on with the others (from the recorded
    // prefix, its unacknowledged batches continued by its producer), and a new one joins.
    let killed = workers.remove(1);
    signal(killed.pid(), "-KILL");
    let _ = killed.finish();
    assert!(
        reshaped_records(&store, "src", "rr") < planned,
        "the kill landed after the restore ended"
    );
    workers.push(start("rr-w3"));
    for w in workers {
        w.succeed();
    }
    let objects = restore_progress(&store, "src", "rr");
    assert_eq!(objects.len(), topics.len(), "one progress object per source topic");
    assert!(objects.iter().all(|o| o["reshaped"]["done"] == true));
    for topic in &topics {
        let target = target(topic, "rr");
        let got = crate::repartition::target_contents(&consume(&source.bootstrap, source.dir.path(), &[&target]));
        let rows: Vec<Row> = source.records.iter().filter(|r| r.0 == *topic).cloned().collect();
        let want = crate::repartition::expected_targets(&rows, 5, None);
        crate::repartition::assert_targets(&got, &want, &target);
    }
    // The group's offsets moved with the records (committed once, by the worker that found the
    // restore complete): it reads every record it had not read of w-00 (and, in a target
    // partition that interleaves sources, maybe some it had read: at least once).
    let read = source.dir.path().join("half.jsonl");
    kbs_testkit::run_script(
        "groups.py",
        &["read", &source.bootstrap, "half", read.to_str().unwrap(), "rr-00"],
    );
    let read = read_consumed(&read);
    // Each target partition is read from its first record the group had not read.
    let w00: Vec<Row> = source.records.iter().filter(|r| r.0 == "w-00").cloned().collect();
    let unread: BTreeSet<crate::repartition::Content> = w00
        .iter()
        .filter(|r| r.2 >= 10)
        .map(crate::repartition::content)
        .collect();
    for (partition, records) in crate::repartition::expected_targets(&w00, 5, None) {
        let first_unread = records.iter().position(|c| unread.contains(c)).unwrap_or(records.len());
        let read_from = read.iter().filter(|r| r.1 == partition).map(|r| r.2).min();
        let expected = (first_unread < records.len()).then_some(first_unread as i64);
        assert_eq!(read_from, expected, "rr-00/{partition}: where the group reads from");
    }
    let mut got: Vec<crate::repartition::Content> = read.iter().map(crate::repartition::content).collect();
    got.sort();
    for unread in source.records.iter().filter(|r| r.0 == "w-00" && r.2 >= 10) {
        let wanted = crate::repartition::content(unread);
        let at = got.binary_search(&wanted);
        assert!(at.is_ok(), "the group does not read {unread:?}");
        got.remove(at.unwrap());
    }
    // `kbs status` shows each target partition's owner.
    let restore = restore_status(&store, "src", "rr");
    assert_eq!(restore["partitions_total"], 60, "{restore}");
    assert_eq!(restore["partitions_done"], restore["partitions_total"], "{restore}");
    assert!(
        restore["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["owner"].is_string()),
        "{restore}"
    );
    // A rerun of the workers finds the restore complete.
    let again = start("rr-again").succeed();

    assert_eq!(again["records"].as_u64().unwrap(), 0);
}
