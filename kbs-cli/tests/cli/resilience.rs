//! Crash safety (SIGKILL at random moments), writer fencing, corruption detection and
//! continuous mode, all through the `kbs` binary.

use std::time::Duration;

use crate::harness::*;

/// A small deterministic generator for kill moments.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Runs `kbs ARGS` and SIGKILLs it 20 ms plus a random part of `spread_ms` later; returns
/// whether it was still running then (killed). A run that ended by itself must have succeeded.
pub(crate) fn run_and_kill_at_random(args: &[&str], rng: &mut Rng, spread_ms: u64, iteration: usize) -> bool {
    let mut child = spawn(args);
    std::thread::sleep(Duration::from_millis(20 + rng.below(spread_ms)));
    let killed = child.try_wait().unwrap().is_none();
    if killed {
        child.kill().unwrap(); // SIGKILL
    }
    let out = child.wait_with_output().unwrap();
    if out.status.code().is_some() {
        assert!(
            out.status.success(),
            "run {iteration} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    killed
}

#[test]
fn sigkill_at_random_moments_then_rerun_stores_every_record_exactly_once() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root = root.to_str().unwrap();
    seed_simple(&bootstrap, "crash", 20_000, 3, true);
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut kills = 0;
    let mut iteration = 0;
    while kills < 24 {
        iteration += 1;
        assert!(iteration <= 60, "only {kills} runs were still going when killed");
        // New data every time, so each run has work to interrupt.
        seed_simple(&bootstrap, "crash", 6_000, 3, false);
        let continuous = iteration % 2 == 0;
        let mut args = vec![
            "backup",
            "--bootstrap-servers",
            &bootstrap,
            "--storage",
            root,
            "--backup-id",
            "crashy",
            "--topics",
            "crash",
            "--compression",
            "lz4",
            "--segment-max-records",
            "700",
            "-q",
        ];
        if continuous {
            args.extend_from_slice(&["--continuous", "--segment-max-interval", "1s"]);
        }
        if run_and_kill_at_random(&args, &mut rng, 400, iteration) {
            kills += 1;
        }
    }
    // A last, uninterrupted run completes the backup.
    let manifest = complete_and_compare(&bootstrap, dir.path(), root, "crashy", "crash");
    assert!(manifest.statistics.segments > 20, "{:?}", manifest.statistics);
}

#[test]
fn a_second_writer_fails_fast_and_a_fenced_writer_cannot_commit() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root = root.to_str().unwrap();
    seed_simple(&bootstrap, "fence", 5_000, 3, true);
    let continuous = [
        "backup",
        "--bootstrap-servers",
        &bootstrap,
        "--storage",
        root,
        "--backup-id",
        "f",
        "--topics",
        "fence",
        "--continuous",
        "--segment-max-interval",
        "1s",
        "-q",
    ];
    let first = spawn(&continuous);
    let lease = dir.path().join("store/f/lease.json");
    eventually("the first writer's lease", Duration::from_secs(30), || lease.exists());

    // A second `kbs backup` on the same id fails fast, naming the holder.
    let started = std::time::Instant::now();
    let second = run(&[
        "backup",
        "--bootstrap-servers",
        &bootstrap,
        "--storage",
        root,
        "--backup-id",
        "f",
        "--topics",
        "fence",
    ]);
    assert!(!second.status.success());
    let message = String::from_utf8_lossy(&second.stderr);
    assert!(message.contains("being written by another kbs process"), "{message}");
    assert!(message.contains(&format!("pid {}", first.id())), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );

    // Take the lease away by hand and start another writer: the first one is fenced and
    // stops at its next commit without writing.
    run_ok(&["unlock", "--path", root, "--backup-id", "f"]);
    let third = spawn(&continuous);
    eventually("the new writer's lease", Duration::from_secs(30), || {
        std::fs::read_to_string(&lease).is_ok_and(|l| l.contains(&format!("\"pid\": {}", third.id())))
    });
    seed_simple(&bootstrap, "fence", 2_000, 3, false);
    let out = wait_with_deadline(first, Duration::from_secs(60));
    assert!(!out.status.success(), "the fenced writer exited successfully");
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(
        message.contains("another writer") || message.contains("lost the lease"),
        "{message}"
    );

    // The new writer finishes cleanly on SIGTERM and the backup is intact and complete.
    let segments = std::path::Path::new(root).join("f");
    let before = segment_files(&segments);
    seed_simple(&bootstrap, "fence", 1_000, 3, false);
    eventually("a segment from the new writer", Duration::from_secs(30), || {
        segment_files(&segments) > before
    });
    terminate(&third);
    let out = wait_with_deadline(third, Duration::from_secs(60));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    complete_and_compare(&bootstrap, dir.path(), root, "f", "fence");
}

#[test]
fn validate_names_every_kind_of_damage() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root_str = root.to_str().unwrap();
    // Several small producer batches and small fetches, so each partition gets several segments.
    seed_simple(&bootstrap, "dmg", 1_000, 2, true);
    for _ in 0..7 {
        seed_simple(&bootstrap, "dmg", 1_000, 2, false);
    }
    let backup = format!(
        "backup --bootstrap-servers {bootstrap} --storage {root_str} --backup-id d --segment-max-records 1000 \
         --fetch-max-partition-bytes 64k -q"
    );
    run_ok(&backup.split_whitespace().collect::<Vec<_>>());
    let segments = std::fs::read_dir(root.join("d/topics/dmg/0")).unwrap().count();
    assert!(segments >= 3, "only {segments} segments in partition 0");
    let quick = run_ok(&["validate", "--path", root_str, "--backup-id", "d"]);
    assert!(quick.contains("VALID d"), "{quick}");
    run_ok(&["validate", "--path", root_str, "--backup-id", "d", "--deep"]);

    let part0 = root.join("d/topics/dmg/0");
    let part1 = root.join("d/topics/dmg/1");
    // Flip a byte inside a segment's body.
    let flipped = part0.join("segment-00000001.kbs");
    let mut bytes = std::fs::read(&flipped).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&flipped, bytes).unwrap();
    // Delete one, truncate another.
    std::fs::remove_file(part0.join("segment-00000002.kbs")).unwrap();
    let truncated = part1.join("segment-00000000.kbs");
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    // Edit the manifest: claim one more record.
    let manifest_path = root.join("d/manifest.json");
    let manifest = std::fs::read_to_string(&manifest_path).unwrap();
    let edited = manifest.replacen("\"records\": 8000", "\"records\": 8001", 1);
    assert_ne!(edited, manifest);
    std::fs::write(&manifest_path, edited).unwrap();

    let out = run(&["validate", "--path", root_str, "--backup-id", "d", "--deep"]);
    assert!(!out.status.success());
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("INVALID d"), "{report}");
    assert!(
        report.contains("d/topics/dmg/0/segment-00000001.kbs (byte "),
        "flip not named: {report}"
    );
    assert!(
        report.contains("d/topics/dmg/0/segment-00000002.kbs: segment missing"),
        "deletion not named: {report}"
    );
    assert!(
        report.contains("d/topics/dmg/1/segment-00000000.kbs") && report.contains("size is"),
        "truncation not named: {report}"
    );
    assert!(
        report.contains("d/manifest.json") && report.contains("statistics.records"),
        "manifest edit not named: {report}"
    );
    // The quick check sees all but the flipped byte.
    let out = run(&["validate", "--path", root_str, "--backup-id", "d"]);
    assert!(!out.status.success());
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("segment missing") && report.contains("size is") && report.contains("statistics.records"),
        "{report}"
    );
    // JSON output lists the same problems.
    let out = run(&[
        "validate",
        "--path",
        root_str,
        "--backup-id",
        "d",
        "--deep",
        "--output",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json["problems"].as_array().unwrap().len() >= 4, "{json}");
}

#[test]
fn continuous_mode_picks_up_new_topics_and_stops_cleanly_on_sigterm() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root_str = root.to_str().unwrap();
    seed_simple(&bootstrap, "live-a", 3_000, 3, true);
    let metrics_addr = format!("127.0.0.1:{}", kbs_testkit::free_port());
    let child = spawn(&[
        "backup",
        "--bootstrap-servers",
        &bootstrap,
        "--storage",
        root_str,
        "--backup-id",
        "live",
        "--topics",
        "live-*",
        "--continuous",
        "--topic-refresh-interval",
        "1s",
        "--segment-max-interval",
        "1s",
        "--metrics-addr",
        &metrics_addr,
        "-q",
    ]);
    let checkpoint = root.join("live/checkpoints/checkpoint.json");
    eventually("live-a in the checkpoint", Duration::from_secs(30), || {
        std::fs::read_to_string(&checkpoint).is_ok_and(|c| c.contains("\"live-a\""))
    });
    // A topic created after the backup started.
    seed_simple(&bootstrap, "live-b", 2_000, 2, true);
    eventually("live-b in the checkpoint", Duration::from_secs(60), || {
        std::fs::read_to_string(&checkpoint).is_ok_and(|c| c.contains("\"live-b\""))
    });
    seed_simple(&bootstrap, "live-a", 1_000, 3, false);
    // Wait until everything produced is durable, then stop.
    let source = consume(&bootstrap, dir.path(), &["live-a", "live-b"]);
    let storage = rt().block_on(open_storage(root_str, None));
    eventually("all records checkpointed", Duration::from_secs(60), || {
        checkpointed_offsets(&checkpoint) >= source.len()
    });
    // Prometheus metrics while it runs.
    let (status, body) = kbs_testkit::http_request(metrics_addr.parse().unwrap(), "GET", "/metrics").unwrap();
    assert_eq!(status, 200, "{body}");
    let records: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("kbs_backup_records_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no records counter in {body}"));
    assert_eq!(records as usize, source.len(), "{body}");
    assert!(
        body.contains("kbs_backup_partition_lag{topic=\"live-b\",partition=\"1\"} 0"),
        "{body}"
    );
    assert!(body.contains("kbs_storage_write_seconds_count"), "{body}");
    terminate(&child);
    let out = wait_with_deadline(child, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "exit {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let (manifest, stored) = rt().block_on(read_backup(&storage, "live"));
    assert!(manifest.is_complete());
    assert_same_records(&stored, &source);
    run_ok(&["validate", "--path", root_str, "--backup-id", "live", "--deep"]);
}

#[test]
fn a_store_that_ignores_conditional_writes_is_refused_unless_declared_single_writer() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let Some(garage) = kbs_testkit::Garage::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    seed_simple(&bootstrap, "g", 2_000, 2, true);
    let endpoint = garage.endpoint();
    let storage = format!("s3://{}/kbs", garage.bucket);
    let base = [
        "--storage",
        &storage,
        "--s3-endpoint",
        &endpoint,
        "--s3-allow-http",
        "--s3-path-style",
        "--s3-region",
        kbs_testkit::Garage::REGION,
    ];
    let run_with = |extra: &[&str]| {
        let mut args = vec!["backup", "--bootstrap-servers", &bootstrap, "--backup-id", "gar", "-q"];
        args.extend_from_slice(&base);
        args.extend_from_slice(extra);
        kbs()
            .args(&args)
            .env("AWS_ACCESS_KEY_ID", &garage.key_id)
            .env("AWS_SECRET_ACCESS_KEY", &garage.secret)
            .output()
            .unwrap()
    };
    let refused = run_with(&[]);
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("does not honour conditional writes") && message.contains("--unsafe-single-writer"),
        "{message}"
    );
    let forced = run_with(&["--unsafe-single-writer"]);
    assert!(forced.status.success(), "{}", String::from_utf8_lossy(&forced.stderr));
    let mut validate = vec!["validate", "--backup-id", "gar", "--deep"];
    validate.extend_from_slice(&base);
    let out = kbs()
        .args(&validate)
        .env("AWS_ACCESS_KEY_ID", &garage.key_id)
        .env("AWS_SECRET_ACCESS_KEY", &garage.secret)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2000 records"));
}

#[test]
fn an_unparsable_manifest_or_checkpoint_is_never_overwritten() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    seed_simple(&bootstrap, "u", 500, 1, true);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root_str = root.to_str().unwrap();
    let backup = [
        "backup",
        "--bootstrap-servers",
        &bootstrap,
        "--storage",
        root_str,
        "--backup-id",
        "u",
        "-q",
    ];
    run_ok(&backup);
    for file in ["u/manifest.json", "u/checkpoints/checkpoint.json"] {
        let path = root.join(file);
        let original = std::fs::read(&path).unwrap();
        std::fs::write(&path, b"{ this is not json").unwrap();
        let out = run(&backup);
        assert!(!out.status.success());
        let message = String::from_utf8_lossy(&out.stderr);
        assert!(
            message.contains(file) && message.contains("will not overwrite"),
            "{message}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"{ this is not json");
        std::fs::write(&path, original).unwrap();
    }
    run_ok(&backup);
    run_ok(&["validate", "--path", root_str, "--backup-id", "u", "--deep"]);
}

#[test]
fn compacted_topic_after_the_cleaner_ran_survives_sigkills_exactly_once() {
    let options = kbs_testkit::KafkaOptions::default()
        .with_config("log.cleaner.backoff.ms", "100")
        .with_config("log.segment.delete.delay.ms", "100");
    let Some(kafka) = kbs_testkit::KafkaCluster::start_with(options) else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root = root.to_str().unwrap();
    let seed = |round: usize, create: bool| {
        let round = round.to_string();
        let mut args = vec![
            bootstrap.as_str(),
            "compacted",
            "compact",
            "6000",
            "3",
            "--round",
            &round,
        ];
        if !create {
            args.push("--no-create");
        }
        kbs_testkit::run_script("seed.py", &args);
    };
    seed(0, true);
    seed(1, false);
    // The cleaner really ran: the log has offset holes (fewer records than offsets).
    let holes = |rows: &[Row]| {
        let mut last: std::collections::BTreeMap<i32, i64> = std::collections::BTreeMap::new();
        for r in rows {
            last.insert(r.1, r.2);
        }
        last.values().map(|o| o + 1).sum::<i64>() - rows.len() as i64
    };
    eventually("the log cleaner compacted the topic", Duration::from_secs(60), || {
        seed(2, false); // a new record rolls the active segment (segment.ms) so it can be cleaned
        holes(&consume(&bootstrap, dir.path(), &["compact"])) > 6_000
    });
    let mut rng = Rng(0xc0ff_ee00_5eed_0002);
    let mut kills = 0;
    let mut iteration = 0;
    while kills < 12 {
        iteration += 1;
        assert!(iteration <= 60, "only {kills} runs were still going when killed");
        // More rounds while the backup runs, so the cleaner keeps compacting behind it.
        seed(3 + iteration, false);
        let args = [
            "backup",
            "--bootstrap-servers",
            &bootstrap,
            "--storage",
            root,
            "--backup-id",
            "compacted",
            "--topics",
            "compact",
            "--segment-max-records",
            "500",
            // Small fetches keep each run going long enough for the kills to land inside it.
            "--fetch-max-partition-bytes",
            "2048",
            "-q",
        ];
        if run_and_kill_at_random(&args, &mut rng, 300, iteration) {
            kills += 1;
        }
    }
    // The last run completes; every record the consumer sees is there once, holes and all.
    // (Records the cleaner removed after an earlier run stored them stay in the backup: it
    // keeps what was read. So the backup holds the consumer's view plus, possibly, records
    // compacted away since; both are compared offset for offset where they overlap.)
    run_ok(&[
        "backup",
        "--bootstrap-servers",
        &bootstrap,
        "--storage",
        root,
        "--backup-id",
        "compacted",
        "--topics",
        "compact",
        "-q",
    ]);
    run_ok(&["validate", "--path", root, "--backup-id", "compacted", "--deep"]);
    let source = consume(&bootstrap, dir.path(), &["compact"]);
    let (_, stored) = read_stored(root, "compacted");
    let mut offsets = std::collections::BTreeSet::new();
    for r in &stored {
        assert!(offsets.insert((r.1, r.2)), "offset {}/{} stored twice", r.1, r.2);
    }
    let stored_by_offset: std::collections::BTreeMap<(i32, i64), &Row> =
        stored.iter().map(|r| ((r.1, r.2), r)).collect();
    let mut present = 0;
    for r in &source {
        // Everything the consumer reads at or past the previous runs' reach is in the backup;
        // below it, a record may have been read before it was superseded, never the other way.
        if let Some(s) = stored_by_offset.get(&(r.1, r.2)) {
            assert_eq!(*s, r, "offset {}/{} differs", r.1, r.2);
            present += 1;
        }
    }
    assert_eq!(
        present,
        source.len(),
        "every record the consumer reads is in the backup"
    );
    assert!(holes(&stored) > 0, "the backup keeps the offset holes of compaction");
}

#[test]
fn a_snapshot_stopped_by_sigterm_stays_incomplete_and_resumable() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root_str = root.to_str().unwrap();
    seed_simple(&bootstrap, "stop", 300_000, 4, true);
    let child = kbs()
        .args([
            "backup",
            "--bootstrap-servers",
            &bootstrap,
            "--storage",
            root_str,
            "--backup-id",
            "stopped",
        ])
        .args(["--topics", "stop", "--segment-max-records", "5000"])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Stopped once its first segment (5,000 records) is stored, with most of the 300,000
    // records (60 MB) still to read.
    eventually("a first segment stored", Duration::from_secs(60), || {
        segment_files(&root) > 0
    });
    terminate(&child);
    let out = wait_with_deadline(child, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(4),
        "an interrupted snapshot exits with 4: {stderr}"
    );
    assert!(
        stderr.contains("backup stopped is INCOMPLETE") && stderr.contains("run the same command again"),
        "{stderr}"
    );
    let manifest = std::fs::read_to_string(root.join("stopped/manifest.json")).unwrap();
    assert!(
        manifest.contains("\"status\": \"in_progress\"") || manifest.contains("\"status\":\"in_progress\""),
        "{manifest}"
    );
    // list and describe say so; validate finds it incomplete; restore refuses it.
    let listed = run_ok(&["list", "--storage", root_str]);
    assert!(listed.contains("INCOMPLETE"), "{listed}");
    // Logs to a pipe carry no colour codes.
    assert!(
        stderr.contains("shutdown requested") && !stderr.contains('\u{1b}'),
        "{stderr}"
    );
    let described = run_ok(&["describe", "--storage", root_str, "--backup-id", "stopped"]);
    // SIGTERM released the lease: nothing runs it.
    assert!(
        described.contains("status      in_progress: INCOMPLETE (interrupted: no kbs backup runs it; rerun"),
        "{described}"
    );
    // Times in ISO 8601 UTC beside the epoch milliseconds.
    let range = described
        .lines()
        .find(|l| l.starts_with("time range"))
        .unwrap_or_default();
    assert!(range.contains("Z .. ") && range.contains(" ms)"), "{described}");
    let validated = run(&["validate", "--path", root_str, "--backup-id", "stopped"]);
    assert_eq!(validated.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&validated.stdout).contains("not complete"));
    let restore = [
        "restore",
        "--bootstrap-servers",
        &bootstrap,
        "--storage",
        root_str,
        "--backup-id",
        "stopped",
        "--topic-map",
        "stop=stop-partial",
        "--create-topics",
    ];
    let refused = run(&restore);
    assert_eq!(refused.status.code(), Some(1));
    let refusal = String::from_utf8_lossy(&refused.stderr);
    assert!(
        refusal.contains("not complete") && refusal.contains("--allow-incomplete"),
        "{refusal}"
    );
    // Explicitly allowed: what the interrupted run stored, exactly.
    let mut allowed = restore.to_vec();
    allowed.extend(["--allow-incomplete", "--output", "json"]);
    let partial: serde_json::Value = serde_json::from_str(&run_ok(&allowed)).unwrap();
    let (_, stored) = read_stored(root_str, "stopped");
    assert!(
        stored.len() < 300_000,
        "the stop came before the end ({} stored)",
        stored.len()
    );
    assert_eq!(partial["records"].as_u64(), Some(stored.len() as u64), "{partial}");
    // Rerunning the same command resumes and completes the backup, every record once.
    let manifest = complete_and_compare(&bootstrap, dir.path(), root_str, "stopped", "stop");
    assert!(manifest.is_complete());
}

#[test]
fn a_rate_limited_backup_reads_no_faster_than_its_limit_and_stores_everything() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root_str = root.to_str().unwrap();
    // 10,000 records of 200-byte values (2 MB of values alone) at 500 KiB/s: at least 3.9 s,
    // since the limit's bucket starts empty and every fetch asks for at most a second's bytes.
    seed_simple(&bootstrap, "slow", 10_000, 4, true);
    let report: serde_json::Value = serde_json::from_str(&run_ok(&[
        "backup",
        "--bootstrap-servers",
        &bootstrap,
        "--storage",
        root_str,
        "--backup-id",
        "limited",
        "--topics",
        "slow",
        "--max-bytes-per-sec",
        "500k",
        "--output",
        "json",
    ]))
    .unwrap();
    let seconds = report["duration_secs"].as_f64().unwrap();
    let floor = (10_000 * 200) as f64 / (500 << 10) as f64;
    assert!(
        seconds >= floor,
        "{seconds} s, faster than the limit allows ({floor} s): {report}"
    );
    assert_eq!(report["records"].as_u64(), Some(10_000), "{report}");
    complete_and_compare(&bootstrap, dir.path(), root_str, "limited", "slow");
    // A limit that is no size is refused before anything runs.
    let refused = run(&[
        "backup",
        "--bootstrap-servers",
        &bootstrap,
        "--storage",
        root_str,
        "--backup-id",
        "limited2",
        "--max-bytes-per-sec",
        "fast",
    ]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("max-bytes-per-sec"));
}

#[test]
fn a_backup_id_belongs_to_one_cluster_and_one_incarnation_of_each_topic() {
    let Some(first) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let Some(second) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let (a, b) = (first.bootstrap(), second.bootstrap());
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root_str = root.to_str().unwrap();
    seed_simple(&a, "live-a", 500, 2, true);
    seed_simple(&a, "live-b", 500, 2, true);
    seed_simple(&b, "live-a", 500, 2, true);
    run_ok(&[
        "backup",
        "--bootstrap-servers",
        &a,
        "--storage",
        root_str,
        "--backup-id",
        "one",
        "--topics",
        "live-*",
        "-q",
    ]);
    let manifest = std::fs::read_to_string(root.join("one/manifest.json")).unwrap();
    assert!(manifest.contains("\"topic_id\""), "{manifest}");
    // The same backup id against another cluster is refused, naming both cluster ids.
    let out = run(&[
        "backup",
        "--bootstrap-servers",
        &b,
        "--storage",
        root_str,
        "--backup-id",
        "one",
        "--topics",
        "live-*",
        "-q",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(first.cluster_id())
            && stderr.contains(second.cluster_id())
            && stderr.contains("new --backup-id"),
        "{stderr}"
    );

    // Continuous: a deleted topic ends its part of the backup; the others go on. The same name
    // created again is another topic (its offsets start over): refused by name.
    let child = spawn(&[
        "backup",
        "--bootstrap-servers",
        &a,
        "--storage",
        root_str,
        "--backup-id",
        "live",
        "--topics",
        "live-*",
        "--continuous",
        "--topic-refresh-interval",
        "1s",
        "--segment-max-interval",
        "1s",
        "-q",
    ]);
    let checkpoint = root.join("live/checkpoints/checkpoint.json");
    let covered = |topic: &str, partition: i32, offset: i64| {
        let text = std::fs::read_to_string(&checkpoint).unwrap_or_default();
        kbs_manifest::Checkpoint::from_json(text.as_bytes())
            .ok()
            .and_then(|c| {
                c.topics
                    .get(topic)
                    .and_then(|p| p.get(&partition))
                    .map(|p| p.offset >= offset)
            })
            .unwrap_or(false)
    };
    eventually("both topics checkpointed", Duration::from_secs(60), || {
        covered("live-a", 1, 249) && covered("live-b", 1, 249)
    });
    kbs_testkit::run_script("kafka_admin.py", &["delete-topic", &a, "live-a"]);
    seed_simple(&a, "live-b", 500, 2, false);
    eventually(
        "live-b still followed after live-a was deleted",
        Duration::from_secs(60),
        || covered("live-b", 1, 499),
    );
    seed_simple(&a, "live-a", 100, 2, true);
    let out = wait_with_deadline(child, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("topic live-a was deleted and created again") && stderr.contains("--exclude live-a"),
        "{stderr}"
    );
    // The manifest says the run failed, and why.
    let manifest = kbs_manifest::Manifest::from_json(&std::fs::read(root.join("live/manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest.status, Some(kbs_manifest::BackupStatus::Failed));
    assert!(
        manifest
            .failure
            .as_deref()
            .unwrap_or_default()
            .contains("deleted and created again"),
        "{:?}",
        manifest.failure
    );
    let described = run_ok(&["describe", "--storage", root_str, "--backup-id", "live"]);
    assert!(
        described.contains("status      failed: topic live-a was deleted"),
        "{described}"
    );
}

#[test]
fn a_continuous_backup_keeps_consumer_group_offsets_current() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root_str = root.to_str().unwrap();
    seed_simple(&bootstrap, "cg-live", 1_000, 2, true);
    let child = spawn(&[
        "backup",
        "--bootstrap-servers",
        &bootstrap,
        "--storage",
        root_str,
        "--backup-id",
        "cg",
        "--topics",
        "cg-live",
        "--continuous",
        "--consumer-groups",
        "--consumer-groups-interval",
        "1s",
        "--segment-max-interval",
        "1s",
        "-q",
    ]);
    let manifest_path = root.join("cg/manifest.json");
    let group_offset = |group: &str, partition: i32| -> Option<i64> {
        let text = std::fs::read_to_string(&manifest_path).ok()?;
        let manifest = kbs_manifest::Manifest::from_json(text.as_bytes()).ok()?;
        let groups = manifest.consumer_groups?;
        let topic = kbs_manifest::TopicName::new("cg-live").ok()?;
        Some(groups.get(group)?.get(&topic)?.get(&partition)?.offset)
    };
    eventually("the backup runs", Duration::from_secs(30), || manifest_path.exists());
    // A group that commits after the backup started is captured while it runs...
    kbs_testkit::run_script("groups.py", &["commit", &bootstrap, "late", "cg-live:0=123"]);
    eventually("the late group in the manifest", Duration::from_secs(30), || {
        group_offset("late", 0) == Some(123)
    });
    // ...and its last position is what the backup holds when it stops.
    kbs_testkit::run_script("groups.py", &["commit", &bootstrap, "late", "cg-live:0=400"]);
    terminate(&child);
    let out = wait_with_deadline(child, Duration::from_secs(60));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(group_offset("late", 0), Some(400));
}
