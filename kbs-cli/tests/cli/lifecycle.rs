//! `kbs prune` and `kbs delete` on the filesystem and on S3 (moto): the retention rules, what
//! is never deleted, batched deletes, and deletions killed at random moments and finished by a
//! rerun without touching another backup.

use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kbs_storage::{ObjectStorage, ObjectStorageExt as _};

use crate::harness::*;

/// A storage root as the `kbs` binary and the test see it.
pub(crate) struct Store {
    pub(crate) args: Vec<String>,
    pub(crate) storage: Arc<dyn ObjectStorage>,
    /// The S3 proxy in front of moto (request lines), for the S3 store.
    proxy: Option<kbs_testkit::S3FaultProxy>,
    _keep: Option<kbs_testkit::Moto>,
}

impl Store {
    pub(crate) fn filesystem(dir: &std::path::Path) -> Store {
        let root = dir.join("store");
        std::fs::create_dir_all(&root).unwrap();
        let root = root.to_str().unwrap().to_owned();
        Store {
            storage: rt().block_on(open_storage(&root, None)),
            args: vec!["--storage".into(), root],
            proxy: None,
            _keep: None,
        }
    }

    pub(crate) fn s3() -> Option<Store> {
        let moto = kbs_testkit::Moto::start()?;
        moto.create_bucket("lifecycle");
        let proxy = kbs_testkit::S3FaultProxy::start(moto.addr());
        let endpoint = proxy.endpoint();
        Some(Store {
            storage: rt().block_on(open_storage("s3://lifecycle/kafka", Some(&endpoint))),
            args: [
                "--storage",
                "s3://lifecycle/kafka",
                "--s3-endpoint",
                &endpoint,
                "--s3-allow-http",
                "--s3-path-style",
                "--s3-region",
                "us-east-1",
            ]
            .map(str::to_owned)
            .to_vec(),
            proxy: Some(proxy),
            _keep: Some(moto),
        })
    }

    pub(crate) fn command(&self, args: &[&str]) -> std::process::Command {
        let mut command = kbs();
        command
            .args(args)
            .args(&self.args)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test");
        command
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kbs {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `kbs ARGS`, which must fail with `code` and say `says`.
    pub(crate) fn fails(&self, args: &[&str], code: i32, says: &str) {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "kbs {args:?}: {stderr}");
        assert!(stderr.contains(says), "kbs {args:?} does not say {says:?}: {stderr}");
    }

    /// Whether `key` exists (on the filesystem without a runtime: this is polled).
    pub(crate) fn exists(&self, key: &str) -> bool {
        match &self.proxy {
            None => std::path::Path::new(&self.args[1]).join(key).exists(),
            Some(_) => rt().block_on(self.storage.exists(key)).unwrap(),
        }
    }

    pub(crate) fn keys(&self, prefix: &str) -> Vec<String> {
        rt().block_on(self.storage.list_all(prefix))
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect()
    }

    /// Sets backup `id`'s start (and end) time, as if it had run `days_ago` days before
    /// 2026-11-30T12:00Z; `in_progress` makes it an interrupted snapshot.
    fn age(&self, id: &str, days_ago: i64, in_progress: bool) {
        let key = format!("{id}/manifest.json");
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&rt().block_on(self.storage.get(&key)).unwrap().bytes).unwrap();
        let at = |ms: i64| humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms as u64));
        let start = 1_796_040_000_000 - days_ago * 86_400_000;
        manifest["created_at"] = at(start).to_string().into();
        if in_progress {
            manifest["status"] = "in_progress".into();
            manifest.as_object_mut().unwrap().remove("completed_at");
        } else {
            manifest["completed_at"] = at(start + 60_000).to_string().into();
        }
        let body = Bytes::from(serde_json::to_vec_pretty(&manifest).unwrap());
        rt().block_on(self.storage.put(&key, body)).unwrap();
    }

    /// Writes a lease of this test process (alive while the test runs) at `key`.
    fn live_lease(&self, key: &str, backup_id: &str) {
        let now = kbs_cli::lease::unix_now_ms();
        let record = kbs_cli::lease::LeaseRecord {
            backup_id: backup_id.into(),
            host: kbs_cli::lease::host_name(),
            pid: std::process::id(),
            process_start: String::new(),
            run_id: "test".into(),
            acquired_at_ms: now,
            renewed_at_ms: now,
            expires_at_ms: now + 3_600_000,
        };
        let body = Bytes::from(serde_json::to_vec(&record).unwrap());
        rt().block_on(self.storage.put(key, body)).unwrap();
    }
}

pub(crate) fn backup(store: &Store, bootstrap: &str, id: &str, extra: &[&str]) {
    let mut args = vec![
        "backup",
        "--bootstrap-servers",
        bootstrap,
        "--backup-id",
        id,
        "--topics",
        "lc",
        "-q",
    ];
    args.extend_from_slice(extra);
    store.ok(&args);
}

#[test]
fn prune_keeps_what_the_rules_keep_and_never_what_runs_or_is_unfinished() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    seed_simple(&bootstrap, "lc", 2_000, 2, true);
    let dir = tempfile::tempdir().unwrap();
    let mut stores = vec![Store::filesystem(dir.path())];
    stores.extend(Store::s3());
    assert_eq!(stores.len(), 2, "moto is part of the test kit");
    for store in &stores {
        // Daily backups b-0 (newest) .. b-5, two on day 1; b-half is an interrupted snapshot;
        // b-held is being written (its lease is live).
        for (id, days) in [
            ("b-0", 0),
            ("b-1a", 1),
            ("b-1b", 1),
            ("b-2", 2),
            ("b-3", 3),
            ("b-4", 4),
            ("b-5", 5),
        ] {
            backup(store, &bootstrap, id, &["--segment-max-records", "100"]);
            store.age(id, days, false);
        }
        // On day 1, b-1b started an hour after b-1a.
        {
            let key = "b-1b/manifest.json";
            let mut m: serde_json::Value =
                serde_json::from_slice(&rt().block_on(store.storage.get(key)).unwrap().bytes).unwrap();
            for field in ["created_at", "completed_at"] {
                let moved = m[field].as_str().unwrap().replace("T12:", "T13:");
                m[field] = moved.into();
            }
            rt().block_on(store.storage.put(key, Bytes::from(serde_json::to_vec(&m).unwrap())))
                .unwrap();
        }
        backup(store, &bootstrap, "b-half", &[]);
        store.age("b-half", 6, true);
        backup(store, &bootstrap, "b-held", &[]);
        store.age("b-held", 7, false);
        store.live_lease("b-held/lease.json", "b-held");
        let before = store.keys("");

        store.fails(&["prune"], 2, "a prune needs at least one rule");
        store.fails(&["prune", "--keep-within", "soon"], 2, "--keep-within");
        let plan = store.ok(&["prune", "--keep-last", "1", "--keep-daily", "3", "--dry-run"]);
        // The plan's line of a backup, spaces collapsed.
        let line_of = |id: &str| -> String {
            plan.lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .find(|l| l.split(' ').take(3).any(|t| t == id))
                .unwrap_or_default()
        };
        assert!(line_of("b-0").starts_with("keep b-0 complete"), "{plan}");
        assert!(line_of("b-0").ends_with("last 1, daily 2026-11-30"), "{plan}");
        assert!(line_of("b-1b").ends_with("daily 2026-11-29"), "{plan}");
        assert!(plan.contains("would delete b-1a"), "{plan}");
        assert!(line_of("b-2").ends_with("daily 2026-11-28"), "{plan}");
        for id in ["b-3", "b-4", "b-5"] {
            assert!(plan.contains(&format!("would delete {id} ")), "{id}: {plan}");
        }
        assert!(line_of("b-half").contains("in_progress: never pruned"), "{plan}");
        assert!(line_of("b-held").contains("its lease is held by host"), "{plan}");
        assert!(plan.contains("5 kept, 4 would be deleted (dry run)"), "{plan}");
        assert_eq!(store.keys(""), before, "a dry run deletes nothing");

        let lines_before = store.proxy.as_ref().map_or(0, |p| p.request_lines().len());
        let out = store.ok(&["prune", "--keep-last", "1", "--keep-daily", "3"]);
        let lines_after = store.proxy.as_ref().map_or(0, |p| p.request_lines().len());
        assert!(out.contains("5 kept, 4 deleted"), "{out}");
        for id in ["b-1a", "b-3", "b-4", "b-5"] {
            assert!(store.keys(&format!("{id}/")).is_empty(), "{id} left objects");
        }
        for id in ["b-0", "b-1b", "b-2", "b-held"] {
            store.ok(&["validate", "--backup-id", id, "--deep"]);
        }
        assert!(!store.keys("b-half/").is_empty());
        if let Some(proxy) = &store.proxy {
            // Deletes are DeleteObjects requests: each backup's 22 objects (20 segments,
            // checkpoint, manifest) take one, and its lease and its marker one each (plus one for
            // the object of the store's capability probe).
            let lines = &proxy.request_lines()[lines_before..lines_after];
            let batched = lines
                .iter()
                .filter(|l| l.starts_with("POST ") && l.contains("?delete"))
                .count();
            let single = lines.iter().filter(|l| l.starts_with("DELETE ")).count();
            assert_eq!((batched, single), (3 * 4 + 1, 0), "{lines:#?}");
        }
        // The newest complete backup stays unless told.
        let out = store.ok(&["prune", "--keep-last", "0", "--backup-ids", "b-?"]);
        assert!(
            out.contains("the newest complete backup (kept unless --delete-newest)"),
            "{out}"
        );
        assert!(out.contains("delete       b-2 "), "{out}");
        assert!(!store.keys("b-0/").is_empty() && store.keys("b-2/").is_empty());
        store.ok(&["prune", "--keep-last", "0", "--backup-ids", "b-0", "--delete-newest"]);
        assert!(store.keys("b-0/").is_empty());

        // kbs delete: an unfinished backup only with --force; a held lease never.
        store.fails(
            &["delete", "--backup-id", "b-half"],
            2,
            "Pass --force to delete it anyway",
        );
        store.fails(
            &["delete", "--backup-id", "b-held"],
            5,
            "is being written by another kbs process",
        );
        store.fails(&["delete", "--backup-id", "nope"], 1, "no backup \"nope\"");
        let out = store.ok(&["delete", "--backup-id", "b-half", "--force"]);
        assert!(out.contains("deleted backup b-half"), "{out}");
        assert!(store.keys("b-half/").is_empty());
        // A running restore keeps its backup.
        store.live_lease("b-1b/restores/r-1/lease.json", "b-1b");
        store.fails(
            &["delete", "--backup-id", "b-1b"],
            5,
            "restore r-1 of backup b-1b is running",
        );
        assert!(!store.keys("b-1b/").is_empty());
    }
}

#[test]
fn deletions_killed_at_random_moments_are_finished_by_a_rerun_and_touch_nothing_else() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    seed_simple(&bootstrap, "lc", 10_000, 2, true);
    let dir = tempfile::tempdir().unwrap();
    let mut stores = vec![Store::filesystem(dir.path())];
    stores.extend(Store::s3());
    assert_eq!(stores.len(), 2, "moto is part of the test kit");
    let mut rng = 0x2545_f491_u64;
    for (n, store) in stores.iter().enumerate() {
        // "big": 1,000 segments (5,000 on the filesystem, which deletes faster) and a restore's
        // progress; "big-2": a neighbour whose name starts the same.
        let segment_records = if store.proxy.is_some() { "10" } else { "2" };
        backup(store, &bootstrap, "big", &["--segment-max-records", segment_records]);
        backup(store, &bootstrap, "big-2", &["--segment-max-records", "1000"]);
        store.ok(&[
            "restore",
            "--bootstrap-servers",
            &bootstrap,
            "--backup-id",
            "big",
            "--topic-map",
            &format!("lc=lc-copy-{n}"),
            "--create-topics",
            "-q",
        ]);
        assert!(store.keys("big/").iter().any(|k| k.starts_with("big/restores/")));
        let neighbour = store.keys("big-2/");
        let mut marked = 0;
        let mut kills = 0;
        // Kill deletions (and prunes) until one was killed after its marker was written.
        let window = if store.proxy.is_some() { 400 } else { 150 };
        let mut finished = 0;
        for attempt in 0..40 {
            if kills >= 6 && marked >= 2 {
                break;
            }
            if store.keys("big/").is_empty() {
                // A deletion ran to its end: back up again and go on killing.
                finished += 1;
                backup(store, &bootstrap, "big", &["--segment-max-records", segment_records]);
            }
            let args: Vec<&str> = if attempt % 2 == 0 {
                vec!["delete", "--backup-id", "big"]
            } else {
                vec!["prune", "--keep-last", "0", "--delete-newest", "--backup-ids", "big"]
            };
            let mut child = store.command(&args).spawn().unwrap();
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            // Every third run is killed at a random moment from its start (often before its
            // marker); the others after their marker appeared: on S3 at a random moment, on the
            // filesystem once a random share of the segments is gone.
            if attempt % 3 != 0 {
                let started = std::time::Instant::now();
                let running = |child: &mut std::process::Child| {
                    child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(30)
                };
                while running(&mut child) && !store.exists("big/deleting.json") {}
                match &store.proxy {
                    Some(_) => std::thread::sleep(Duration::from_millis(rng % window)),
                    None => {
                        let partition = std::path::Path::new(&store.args[1]).join("big/topics/lc/0");
                        let segments = || std::fs::read_dir(&partition).map_or(0, |d| d.count() as u64);
                        let threshold = rng % segments().max(1);
                        while running(&mut child) && segments() > threshold {}
                    }
                }
            } else {
                std::thread::sleep(Duration::from_millis(rng % window));
            }
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                kills += 1;
            }
            child.wait().unwrap();
            let keys = store.keys("big/");
            if keys.iter().any(|k| k == "big/deleting.json") {
                marked += 1;
                // Gone for every reader, and says so.
                let listed = store.ok(&["list"]);
                assert!(
                    listed
                        .lines()
                        .any(|l| l.starts_with("big ") && l.contains("being deleted")),
                    "{listed}"
                );
                for args in [
                    vec!["validate", "--backup-id", "big"],
                    vec!["describe", "--backup-id", "big"],
                    vec![
                        "restore",
                        "--bootstrap-servers",
                        &bootstrap,
                        "--backup-id",
                        "big",
                        "--dry-run",
                    ],
                    vec![
                        "backup",
                        "--bootstrap-servers",
                        &bootstrap,
                        "--backup-id",
                        "big",
                        "--topics",
                        "lc",
                    ],
                ] {
                    store.fails(&args, 1, "backup big is being deleted");
                }
            } else if !keys.is_empty() {
                // Killed before its marker: nothing was removed.
                store.ok(&["validate", "--backup-id", "big", "--deep"]);
            }
            assert_eq!(store.keys("big-2/"), neighbour, "the neighbour was touched");
        }
        assert!(
            kills >= 6 && marked >= 2,
            "{kills} deletions killed, {marked} after their marker ({finished} ran to their end)"
        );
        if !store.keys("big/").is_empty() {
            let out = store.ok(&["delete", "--backup-id", "big"]);
            assert!(out.contains("deleted backup big"), "{out}");
        }
        assert!(store.keys("big/").is_empty(), "{:?}", store.keys("big/"));
        assert_eq!(store.keys("big-2/"), neighbour);
        store.ok(&["validate", "--backup-id", "big-2", "--deep"]);
    }
}

#[test]
fn status_shows_running_jobs_their_progress_and_lag_and_a_dead_holder() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    seed_simple(&bootstrap, "lc", 3_000, 2, true);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::filesystem(dir.path());
    backup(&store, &bootstrap, "snap", &[]);
    let status = |extra: &[&str]| {
        let mut args = vec!["status"];
        args.extend_from_slice(extra);
        store.ok(&args)
    };
    assert!(status(&[]).contains("no backup or restore is running"));
    // A continuous backup and a slow restore run.
    let mut live = store
        .command(&[
            "backup",
            "--bootstrap-servers",
            &bootstrap,
            "--backup-id",
            "live",
            "--topics",
            "lc",
            "--continuous",
            "--segment-max-interval",
            "1s",
            "-q",
        ])
        .spawn()
        .unwrap();
    eventually("the continuous backup's first commit", Duration::from_secs(60), || {
        store.exists("live/checkpoints/checkpoint.json")
    });
    let mut restore = store
        .command(&[
            "restore",
            "--bootstrap-servers",
            &bootstrap,
            "--backup-id",
            "snap",
            "--topic-map",
            "lc=lc-copy",
            "--create-topics",
            "--restore-id",
            "r-st",
            "--max-bytes-per-sec",
            "20K",
            "-q",
        ])
        .stderr(std::fs::File::create(dir.path().join("restore.log")).unwrap())
        .spawn()
        .unwrap();
    eventually("the restore's first progress", Duration::from_secs(60), || {
        store.exists("snap/restores/r-st/progress.json")
    });
    let text = status(&["--bootstrap-servers", &bootstrap]);
    let restore_log = || std::fs::read_to_string(dir.path().join("restore.log")).unwrap_or_default();
    assert!(text.contains("backup live: running (host"), "{text}");
    // describe and list tell the running backup from an interrupted one, by its lease.
    let described = store.ok(&["describe", "--backup-id", "live"]);
    assert!(
        described.contains(&format!(
            "status      in_progress: RUNNING (kbs backup on host {} pid {}",
            kbs_cli::lease::host_name(),
            live.id()
        )),
        "{described}"
    );
    let listed = store.ok(&["list"]);
    let line = |listed: &str, id: &str| {
        listed
            .lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(line(&listed, "live").contains(" RUNNING "), "{listed}");
    assert!(line(&listed, "snap").contains(" complete "), "{listed}");
    let listed: serde_json::Value = serde_json::from_str(&store.ok(&["list", "--output", "json"])).unwrap();
    let running = |listed: &serde_json::Value, id: &str| {
        listed["backups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["backup_id"] == id)
            .unwrap()["running"]
            .clone()
    };
    assert_eq!(running(&listed, "live"), true, "{listed}");
    assert_eq!(running(&listed, "snap"), false, "{listed}");
    if let Some(code) = restore.try_wait().unwrap() {
        panic!("the restore ended ({code}): {}", restore_log());
    }
    assert!(text.contains("restore r-st of backup snap: running (host"), "{text}");
    assert!(text.contains("  lc/0 -> lc-copy/0: "), "{text}");
    assert!(
        !text.lines().any(|l| l.starts_with("backup snap:")),
        "a finished backup is not running: {text}"
    );
    // With the cluster, each partition's log end and lag; all records are backed up soon.
    eventually("the backup to catch up", Duration::from_secs(60), || {
        let out = store.ok(&["status", "--bootstrap-servers", &bootstrap, "--output", "json"]);
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        let partitions = report["backups"][0]["partitions"].as_array().unwrap().clone();
        partitions.len() == 2 && partitions.iter().all(|p| p["lag"] == 0 && p["log_end"] == 1500)
    });
    // --watch: one report per refresh, with rates.
    let mut watch = store
        .command(&["status", "--watch", "--interval", "200ms", "--output", "json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(watch.stdout.take().unwrap()));
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let second: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    watch.kill().unwrap();
    watch.wait().unwrap();
    assert!(first["records_per_sec"].as_object().unwrap().is_empty());
    assert!(second["records_per_sec"]["restore snap/r-st"].is_number(), "{second}");
    assert!(second["status"]["at_ms"].as_i64() > first["status"]["at_ms"].as_i64());
    // A holder killed without releasing its lease is shown as not running.
    live.kill().unwrap();
    live.wait().unwrap();
    let text = status(&[]);
    assert!(
        text.contains("backup live: NOT RUNNING: its lease was left by host") && text.contains("is gone"),
        "{text}"
    );
    let described = store.ok(&["describe", "--backup-id", "live"]);
    assert!(
        described.contains("status      in_progress: INCOMPLETE (interrupted: its last run (host ")
            && described.contains(&format!(" pid {}) left its lease: ", live.id()))
            && described.contains("is gone; rerun its backup command to finish it)"),
        "{described}"
    );
    let listed = store.ok(&["list"]);
    assert!(line(&listed, "live").contains(" INCOMPLETE "), "{listed}");
    let listed: serde_json::Value = serde_json::from_str(&store.ok(&["list", "--output", "json"])).unwrap();
    assert_eq!(running(&listed, "live"), false, "{listed}");
    restore.kill().unwrap();
    restore.wait().unwrap();
    // One backup asked for: shown running or not, with its restores.
    let text = status(&["--backup-id", "snap"]);
    assert!(
        text.contains("backup snap: not running; status complete, 3000 records"),
        "{text}"
    );
    assert!(text.contains("restore r-st of backup snap: NOT RUNNING"), "{text}");
}
