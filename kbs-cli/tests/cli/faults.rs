//! Cluster faults on three brokers (RF=3, min.insync.replicas=2), through the `kbs` binary:
//! the broker leading most partitions killed with SIGKILL in the middle of a snapshot backup,
//! a continuous backup and a restore, and kbs itself killed during the failover. Every check
//! compares offset for offset with an independent consumer.

use std::collections::BTreeMap;
use std::time::Duration;

use kbs_testkit::{KafkaCluster, KafkaOptions};

use crate::harness::*;

fn three_nodes() -> Option<KafkaCluster> {
    KafkaCluster::start_with(KafkaOptions::nodes(3))
}

/// Three nodes whose controller notices a dead one within 3 s (Kafka's default is 9 s).
fn three_nodes_quick_to_notice_a_dead_one() -> Option<KafkaCluster> {
    KafkaCluster::start_with(
        KafkaOptions::nodes(3)
            .with_config("broker.session.timeout.ms", "3000")
            .with_config("broker.heartbeat.interval.ms", "500"),
    )
}

/// A topic on all three nodes that stays writable with one of them down.
fn create_replicated(bootstrap: &str, topic: &str, partitions: usize) {
    kbs_testkit::run_script(
        "kafka_admin.py",
        &[
            "create-topic",
            bootstrap,
            topic,
            &partitions.to_string(),
            "3",
            "min.insync.replicas=2",
        ],
    );
}

/// The node leading most partitions of `topic`, and how many it leads.
fn busiest_leader(bootstrap: &str, topic: &str) -> (i32, usize) {
    let out = kbs_testkit::run_script("kafka_admin.py", &["describe", bootstrap]);
    let described: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut led: BTreeMap<i32, usize> = BTreeMap::new();
    for leader in described["topics"][topic].as_array().unwrap() {
        *led.entry(leader.as_i64().unwrap() as i32).or_default() += 1;
    }
    led.into_iter().max_by_key(|(_, n)| *n).unwrap()
}

#[test]
fn a_snapshot_backup_rides_through_its_busiest_leader_killed() {
    snapshot_backup_through_a_leader_going_away(KafkaCluster::kill_node);
}

/// A controlled shutdown (SIGTERM) moves leadership away before the broker stops.
#[test]
fn a_snapshot_backup_rides_through_its_busiest_leader_shut_down() {
    snapshot_backup_through_a_leader_going_away(KafkaCluster::stop_node);
}

fn snapshot_backup_through_a_leader_going_away(go_away: fn(&mut KafkaCluster, i32)) {
    let Some(mut kafka) = three_nodes() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    create_replicated(&bootstrap, "fo", 6);
    seed_simple(&bootstrap, "fo", 60_000, 6, false);
    let (leader, led) = busiest_leader(&bootstrap, "fo");
    assert!(led >= 2, "node {leader} leads {led} partitions");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root_str = root.to_str().unwrap();
    // Small fetches, so the backup is still reading when the leader dies.
    let child = spawn(&[
        "backup",
        "--bootstrap-servers",
        &bootstrap,
        "--storage",
        root_str,
        "--backup-id",
        "fo",
        "--topics",
        "fo",
        "--fetch-max-partition-bytes",
        "4096",
        "--segment-max-records",
        "1000",
        "-q",
    ]);
    eventually("the first segment", Duration::from_secs(60), || {
        segment_files(&root) >= 1
    });
    let mut child = child;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the backup ended before its leader went away"
    );
    let killed_at = std::time::Instant::now();
    go_away(&mut kafka, leader);
    let out = wait_with_deadline(child, Duration::from_secs(180));
    assert!(
        out.status.success(),
        "exit {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let recovered = killed_at.elapsed();
    assert!(segment_files(&root) > 6, "the backup had finished before the kill");
    kafka.restart_node(leader);
    run_ok(&["validate", "--path", root_str, "--backup-id", "fo", "--deep"]);
    let source = consume(&bootstrap, dir.path(), &["fo"]);
    let (manifest, stored) = read_stored(root_str, "fo");
    assert!(manifest.is_complete());
    assert_same_records(&stored, &source);
    assert!(recovered < Duration::from_secs(120), "{recovered:?}");
}

/// Starts `kbs backup --continuous` of `topics` into backup `id` under `root`, rolling
/// segments every second, with `extra` flags.
fn spawn_continuous_backup(bootstrap: &str, root: &str, id: &str, topics: &str, extra: &[&str]) -> std::process::Child {
    let mut args = vec![
        "backup",
        "--bootstrap-servers",
        bootstrap,
        "--storage",
        root,
        "--backup-id",
        id,
        "--topics",
        topics,
        "--continuous",
        "--segment-max-interval",
        "1s",
        "-q",
    ];
    args.extend_from_slice(extra);
    spawn(&args)
}

/// Stops a continuous backup with SIGTERM, checks that it exits cleanly and that backup `id`
/// passes `validate --deep` and holds exactly `source`.
fn stop_validate_and_compare(child: std::process::Child, root: &str, id: &str, source: &[Row]) {
    terminate(&child);
    let out = wait_with_deadline(child, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "exit {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    run_ok(&["validate", "--path", root, "--backup-id", id, "--deep"]);
    let (_, stored) = read_stored(root, id);
    assert_same_records(&stored, source);
}

#[test]
fn a_continuous_backup_rides_through_its_busiest_leader_killed_and_restarted() {
    let Some(mut kafka) = three_nodes() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    create_replicated(&bootstrap, "live", 4);
    seed_simple(&bootstrap, "live", 4_000, 4, false);
    let (leader, _) = busiest_leader(&bootstrap, "live");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root_str = root.to_str().unwrap();
    let metrics_addr = format!("127.0.0.1:{}", kbs_testkit::free_port());
    let child = spawn_continuous_backup(&bootstrap, root_str, "live", "live", &["--metrics-addr", &metrics_addr]);
    let checkpoint = root.join("live/checkpoints/checkpoint.json");
    let checkpointed = || checkpointed_offsets(&checkpoint);
    eventually("the first records checkpointed", Duration::from_secs(60), || {
        checkpointed() >= 4_000
    });
    kafka.kill_node(leader);
    // Written while the leader is down (the two others form the ISR), then after it is back.
    seed_simple(&bootstrap, "live", 3_000, 4, false);
    kafka.restart_node(leader);
    seed_simple(&bootstrap, "live", 3_000, 4, false);
    let source = consume(&bootstrap, dir.path(), &["live"]);
    assert_eq!(source.len(), 10_000);
    eventually("every record checkpointed", Duration::from_secs(120), || {
        checkpointed() >= source.len()
    });
    // The retries the failover caused are counted by operation and error.
    let (status, body) = kbs_testkit::http_request(metrics_addr.parse().unwrap(), "GET", "/metrics").unwrap();
    assert_eq!(status, 200, "{body}");
    let retries: u64 = body
        .lines()
        .filter(|l| l.starts_with("kbs_kafka_retries_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(retries > 0, "no retries counted:\n{body}");
    assert!(body.contains("kbs_kafka_throttle_seconds_count 0"), "{body}");
    stop_validate_and_compare(child, root_str, "live", &source);
}

#[test]
fn a_restore_rides_through_its_leader_killed_and_a_kill_of_kbs_during_the_failover() {
    let Some(mut kafka) = three_nodes() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    create_replicated(&bootstrap, "src", 4);
    seed_simple(&bootstrap, "src", 40_000, 4, false);
    // A group that consumed part of each partition: its offsets move with the restore.
    kbs_testkit::run_script(
        "groups.py",
        &[
            "commit",
            &bootstrap,
            "fo-group",
            "src:0=1000",
            "src:1=2500",
            "src:2=0",
            "src:3=9999",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root_str = root.to_str().unwrap();
    run_ok(&[
        "backup",
        "--bootstrap-servers",
        &bootstrap,
        "--storage",
        root_str,
        "--backup-id",
        "r",
        "--topics",
        "src",
        "--segment-max-records",
        "2000",
        "--consumer-groups",
        "-q",
    ]);
    let source = consume(&bootstrap, dir.path(), &["src"]);
    create_replicated(&bootstrap, "copy", 4);
    let (leader, _) = busiest_leader(&bootstrap, "copy");
    let restore = |rate: bool| {
        let mut args = vec![
            "restore",
            "--bootstrap-servers",
            &bootstrap,
            "--storage",
            root_str,
            "--backup-id",
            "r",
            "--topic-map",
            "src=copy",
            "--restore-id",
            "failover",
            "--consumer-groups",
            "fo-group",
            "-q",
        ];
        if rate {
            args.extend(["--max-bytes-per-sec", "2M"]);
        }
        spawn(&args)
    };
    // Read with kbs-kafka's client, which waits out the leader changes.
    let produced = || -> i64 {
        rt().block_on(async {
            let client = kbs_kafka::KafkaClient::connect(kbs_kafka::ClientConfig::new(bootstrap.split(',')))
                .await
                .unwrap();
            let queries: Vec<_> = (0..4).map(|p| ("copy", p, kbs_kafka::OffsetSpec::Latest)).collect();
            let offsets = client.list_offsets(&queries).await.unwrap();
            offsets.iter().map(|o| o.offset.unwrap_or(0)).sum()
        })
    };

    // Killed leader in the middle of a restore: the restore goes on with the new leaders.
    let first = restore(true);
    eventually("the restore producing", Duration::from_secs(60), || produced() > 2_000);
    kafka.kill_node(leader);
    // ... and kbs itself killed while the partitions it wrote move to other leaders.
    std::thread::sleep(Duration::from_millis(300));
    let mut first = first;
    first.kill().unwrap();
    first.wait().unwrap();
    // The rerun resumes on the new leaders while the old one is down, then it comes back.
    let before = produced();
    let second = restore(true);
    eventually("the rerun producing", Duration::from_secs(60), || produced() > before);
    kafka.restart_node(leader);
    let out = wait_with_deadline(second, Duration::from_secs(180));
    assert!(
        out.status.success(),
        "exit {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let copy = consume(&bootstrap, dir.path(), &["copy"]);
    assert_eq!(copy.len(), source.len(), "records duplicated or lost");
    type Content = (i64, Option<String>, Option<String>, Vec<(String, Option<String>)>);
    let content = |rows: &[Row]| -> BTreeMap<i32, Vec<Content>> {
        let mut by: BTreeMap<i32, Vec<_>> = BTreeMap::new();
        for r in rows {
            by.entry(r.1)
                .or_default()
                .push((r.3, r.4.clone(), r.5.clone(), r.6.clone()));
        }
        by
    };
    assert!(content(&copy) == content(&source), "the copy differs from the source");
    // The group reads from the copy exactly what it had not consumed.
    let path = dir.path().join("fo-group.jsonl");
    kbs_testkit::run_script(
        "groups.py",
        &["read", &bootstrap, "fo-group", path.to_str().unwrap(), "copy"],
    );
    let committed = [1000, 2500, 0, 9999];
    let unread: Vec<Row> = source
        .iter()
        .filter(|r| r.2 >= committed[r.1 as usize])
        .cloned()
        .collect();
    assert!(
        content(&read_consumed(&path)) == content(&unread),
        "the group's position after the restore"
    );
}

/// Leaders of `topic`'s partitions as the cluster reports them (-1: none).
fn leaders_of(bootstrap: &str, topic: &str) -> Vec<i64> {
    let out = kbs_testkit::run_script("kafka_admin.py", &["describe", bootstrap]);
    let described: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    described["topics"][topic]
        .as_array()
        .map(|l| l.iter().map(|v| v.as_i64().unwrap()).collect())
        .unwrap_or_default()
}

#[test]
fn a_partition_without_a_leader_is_waited_for_then_left_out_and_completed_by_a_rerun() {
    // Quick failure detection, so the partition loses its leader soon after its node dies.
    let Some(mut kafka) = three_nodes_quick_to_notice_a_dead_one() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    // One replica per partition: when its node is down, the partition has no leader.
    kbs_testkit::run_script("kafka_admin.py", &["create-topic", &bootstrap, "nl", "3", "1"]);
    seed_simple(&bootstrap, "nl", 6_000, 3, false);
    let dir = tempfile::tempdir().unwrap();
    let source = consume(&bootstrap, dir.path(), &["nl"]);
    let node = leaders_of(&bootstrap, "nl")[0] as i32;
    let down: Vec<i32> = (0..3)
        .filter(|&p| leaders_of(&bootstrap, "nl")[p as usize] == i64::from(node))
        .collect();
    kafka.kill_node(node);
    eventually(
        "the partitions of the dead node without a leader",
        Duration::from_secs(60),
        || {
            let leaders = leaders_of(&bootstrap, "nl");
            down.iter().all(|&p| leaders.get(p as usize) == Some(&-1))
        },
    );
    let root = dir.path().join("store");
    let root_str = root.to_str().unwrap();
    let backup = |leader_wait: &str| {
        vec![
            "backup",
            "--bootstrap-servers",
            &bootstrap,
            "--storage",
            root_str,
            "--backup-id",
            "nl",
            "--topics",
            "nl",
            "--leader-wait",
            leader_wait,
            "--output",
            "json",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<String>>()
    };

    // A short wait: the others are backed up, the backup stays incomplete (exit 4) and says
    // which partitions are missing and why.
    let args = backup("2s");
    let out = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    let error: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(error["error"]["kind"], "partitions_without_leader", "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    for p in &down {
        assert!(message.contains(&format!("nl/{p}")), "{message}");
    }
    assert!(stderr.contains("no leader for nl/"), "{stderr}");
    let (manifest, stored) = read_stored(root_str, "nl");
    assert!(!manifest.is_complete());
    let up: Vec<Row> = source.iter().filter(|r| !down.contains(&r.1)).cloned().collect();
    assert!(!up.is_empty());
    assert_same_records(&stored, &up);

    // The rerun waits; the node comes back meanwhile; the backup completes.
    let log = dir.path().join("rerun.log");
    let mut args = backup("120s");
    let metrics_addr = format!("127.0.0.1:{}", kbs_testkit::free_port());
    args.extend(["--metrics-addr".to_owned(), metrics_addr.clone()]);
    let rerun = kbs()
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    eventually("the rerun waiting for a leader", Duration::from_secs(60), || {
        std::fs::read_to_string(&log).unwrap().contains("waiting up to 120 s")
    });
    // The wait shows in the metrics while it lasts.
    eventually("the wait in the metrics", Duration::from_secs(60), || {
        metric_sum(&metrics_addr, "kbs_backup_leader_wait_seconds_total ") >= 1.0
    });
    kafka.restart_node(node);
    let out = wait_with_deadline(rerun, Duration::from_secs(180));
    assert!(out.status.success(), "{}", std::fs::read_to_string(&log).unwrap());
    run_ok(&["validate", "--path", root_str, "--backup-id", "nl", "--deep"]);
    let (manifest, stored) = read_stored(root_str, "nl");
    assert!(manifest.is_complete());
    assert_same_records(&stored, &source);
}

/// `kbs SUBCOMMAND` reaching `bootstrap` and the S3 store `storage` (moto's bucket, through
/// `endpoint`), with moto's test credentials; the caller adds the rest.
fn kbs_on_s3(subcommand: &str, bootstrap: &str, storage: &str, endpoint: &str) -> std::process::Command {
    let mut command = kbs();
    command
        .args([
            subcommand,
            "--bootstrap-servers",
            bootstrap,
            "--storage",
            storage,
            "--s3-endpoint",
            endpoint,
            "--s3-allow-http",
            "--s3-path-style",
            "--s3-region",
            "us-east-1",
            "-q",
        ])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test");
    command
}

/// A Kafka node and moto with `bucket`, behind a fault-injecting proxy.
fn kafka_and_s3_behind_a_proxy(bucket: &str) -> Option<(KafkaCluster, kbs_testkit::Moto, kbs_testkit::S3FaultProxy)> {
    let kafka = KafkaCluster::start()?;
    let moto = kbs_testkit::Moto::start()?;
    moto.create_bucket(bucket);
    let proxy = kbs_testkit::S3FaultProxy::start(moto.addr());
    Some((kafka, moto, proxy))
}

/// S3 (moto) behind a proxy that answers `503 SlowDown` or drops the connection for scripted
/// requests: a backup and a restore retry through them and store and write every record once;
/// a store that stays down fails the backup with the store's error, and the rerun, once the
/// store is back, completes it.
#[test]
fn backups_and_restores_ride_through_s3_throttling_and_resets_and_resume_after_an_outage() {
    use kbs_testkit::S3Fault::{Reset, Unavailable};
    let Some((kafka, moto, proxy)) = kafka_and_s3_behind_a_proxy("flaky") else {
        return;
    };
    let endpoint = proxy.endpoint();
    let bootstrap = kafka.bootstrap();
    seed_simple(&bootstrap, "s3f", 12_000, 3, true);
    let dir = tempfile::tempdir().unwrap();
    let run_s3 = |args: &[&str]| {
        let (subcommand, rest) = args.split_first().unwrap();
        kbs_on_s3(subcommand, &bootstrap, "s3://flaky/kafka", &endpoint)
            .args(rest)
            .output()
            .unwrap()
    };
    let stored = || {
        let storage = rt().block_on(open_storage("s3://flaky/kafka", Some(&moto.endpoint())));
        rt().block_on(read_backup(&storage, "flaky"))
    };
    let backup = [
        "backup",
        "--backup-id",
        "flaky",
        "--topics",
        "s3f",
        "--segment-max-records",
        "1000",
    ];

    // Throttling and resets spread over the first requests of the backup.
    proxy.fail_next(&[
        Unavailable,
        Reset,
        Unavailable,
        Unavailable,
        Reset,
        Unavailable,
        Reset,
        Unavailable,
    ]);
    let out = run_s3(&backup);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(proxy.pending_faults(), 0, "every fault was met");
    let source = consume(&bootstrap, dir.path(), &["s3f"]);
    let (manifest, records) = stored();
    assert!(manifest.is_complete());
    assert_same_records(&records, &source);

    // The restore reads segments and saves its progress through the same faults, and counts
    // its retries and records for its metrics endpoint (read while it runs: rate-limited).
    proxy.fail_next(&[Reset, Unavailable, Unavailable, Reset, Unavailable, Unavailable]);
    let restore_metrics = format!("127.0.0.1:{}", kbs_testkit::free_port());
    let child = kbs_on_s3("restore", &bootstrap, "s3://flaky/kafka", &endpoint)
        .args([
            "--backup-id",
            "flaky",
            "--topic-map",
            "s3f=s3f-copy",
            "--create-topics",
            "--restore-id",
            "flaky",
            "--max-bytes-per-sec",
            "1M",
            "--metrics-addr",
            &restore_metrics,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    eventually(
        "the restore's storage retries and records counted",
        Duration::from_secs(60),
        || {
            metric_sum(&restore_metrics, "kbs_storage_retries_total{") >= 6.0
                && metric_sum(&restore_metrics, "kbs_restore_records_total ") > 0.0
        },
    );
    let out = wait_with_deadline(child, Duration::from_secs(120));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(proxy.pending_faults(), 0, "every fault was met");
    let copy = consume(&bootstrap, dir.path(), &["s3f-copy"]);
    assert_eq!(copy.len(), source.len(), "records duplicated or lost");

    // An outage longer than the retries: the backup fails naming the store's answer; what was
    // committed stays, and the rerun after the outage completes the backup.
    seed_simple(&bootstrap, "s3f", 6_000, 3, false);
    proxy.fail_next(&[Unavailable; 300]);
    let out = run_s3(&backup);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a backup succeeded through an outage");
    assert!(stderr.contains("503") || stderr.contains("SlowDown"), "{stderr}");
    proxy.heal();
    let out = run_s3(&backup);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let source = consume(&bootstrap, dir.path(), &["s3f"]);
    let (manifest, records) = stored();
    assert!(manifest.is_complete());
    assert_same_records(&records, &source);

    // A continuous backup counts the store's retries for its metrics endpoint.
    let metrics_addr = format!("127.0.0.1:{}", kbs_testkit::free_port());
    let child = kbs_on_s3("backup", &bootstrap, "s3://flaky/kafka", &endpoint)
        .args([
            "--backup-id",
            "flaky-live",
            "--topics",
            "s3f",
            "--continuous",
            "--segment-max-interval",
            "1s",
            "--metrics-addr",
            &metrics_addr,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    proxy.fail_next(&[Unavailable, Reset, Unavailable]);
    eventually("the store's retries counted", Duration::from_secs(60), || {
        metric_sum(&metrics_addr, "kbs_storage_retries_total{") >= 3.0
    });
    terminate(&child);
    let out = wait_with_deadline(child, Duration::from_secs(60));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A broker that comes back at another address (a pod rescheduled, a host replaced): the
/// continuous backup's cached address for it stops answering, and kbs follows Metadata to the
/// new one. Each partition has its only replica on one node, so the moved node's partition can
/// be read nowhere else.
#[test]
fn a_continuous_backup_follows_a_broker_to_its_new_address() {
    let Some(mut kafka) = three_nodes_quick_to_notice_a_dead_one() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    kbs_testkit::run_script("kafka_admin.py", &["create-topic", &bootstrap, "moved", "3", "1"]);
    seed_simple(&bootstrap, "moved", 3_000, 3, false);
    let node = leaders_of(&bootstrap, "moved")[0] as i32;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root_str = root.to_str().unwrap();
    let child = spawn_continuous_backup(&bootstrap, root_str, "moved", "moved", &[]);
    let checkpoint = root.join("moved/checkpoints/checkpoint.json");
    eventually("the first records checkpointed", Duration::from_secs(60), || {
        checkpointed_offsets(&checkpoint) >= 3_000
    });
    kafka.kill_node(node);
    let new_port = kafka.restart_node_on_a_new_port(node);
    let moved_bootstrap = kafka.bootstrap();
    assert!(
        !bootstrap.split(',').any(|b| b.ends_with(&format!(":{new_port}"))),
        "{bootstrap} already had port {new_port}"
    );
    seed_simple(&moved_bootstrap, "moved", 3_000, 3, false);
    let source = consume(&moved_bootstrap, dir.path(), &["moved"]);
    assert_eq!(source.len(), 6_000);
    eventually(
        "every record checkpointed, the moved node's partition too",
        Duration::from_secs(120),
        || checkpointed_offsets(&checkpoint) >= source.len(),
    );
    stop_validate_and_compare(child, root_str, "moved", &source);
}

/// Runs `command` to completion, sampling its peak resident set (the kernel's `VmHWM`, in
/// KiB) until it exits.
fn run_measuring_peak_rss(command: &mut std::process::Command) -> (std::process::Output, u64) {
    let child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start kbs");
    let status_file = format!("/proc/{}/status", child.id());
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let high_water = std::fs::read_to_string(&status_file).ok().and_then(|status| {
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix("VmHWM:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                });
                if let Some(kib) = high_water {
                    peak.fetch_max(kib, std::sync::atomic::Ordering::SeqCst);
                }
                // A sampling period: VmHWM only grows, so the last sample before exit is the peak.
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let out = child.wait_with_output().expect("wait for kbs");
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    sampler.join().unwrap();
    (out, peak.load(std::sync::atomic::Ordering::SeqCst))
}

/// A store that writes slowly: fetching waits for uploads (the memory budget's backpressure),
/// so a backup of many times its budget stays within it, and the backup is whole. A store that
/// reads slowly: the restore's memory stays within its budget too, and nothing is lost.
#[test]
fn a_slow_store_slows_fetching_and_restoring_and_memory_stays_within_the_budget() {
    let Some((kafka, moto, proxy)) = kafka_and_s3_behind_a_proxy("slow") else {
        return;
    };
    let endpoint = proxy.endpoint();
    let bootstrap = kafka.bootstrap();
    let records = 48_000usize;
    kbs_testkit::run_script(
        "seed.py",
        &[
            &bootstrap,
            "simple",
            "big",
            &records.to_string(),
            "4",
            "--value-size",
            "1024",
        ],
    );
    let data_bytes = records * 1024;
    let backup = |id: &str, budget: &str| {
        let mut command = kbs_on_s3("backup", &bootstrap, "s3://slow/kafka", &endpoint);
        command.args([
            "--backup-id",
            id,
            "--topics",
            "big",
            "--compression",
            "none",
            "--memory-budget",
            budget,
        ]);
        let started = std::time::Instant::now();
        let (out, peak_kib) = run_measuring_peak_rss(&mut command);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (started.elapsed(), peak_kib)
    };
    let (fast_time, fast_peak) = backup("fast", "16M");
    let rate = 8 << 20;
    proxy.slow_uploads(rate);
    let (slow_time, slow_peak) = backup("slow", "16M");
    kbs_testkit::note(&format!(
        "{data_bytes} bytes, budget 16 MiB: unlimited store {fast_time:?}, peak RSS {fast_peak} KiB; \
         store at {rate} B/s {slow_time:?}, peak RSS {slow_peak} KiB"
    ));
    let least = Duration::from_secs_f64(data_bytes as f64 / rate as f64);
    assert!(
        slow_time >= least,
        "the store was not slow: {slow_time:?} for {data_bytes} bytes"
    );
    // The same budget with a store that keeps up is the measure: waiting for a slow store must
    // not hold more (without the budget's backpressure the slow run peaks near 104 MiB).
    assert!(
        slow_peak <= fast_peak + (16 << 10) && slow_peak < 80 << 10,
        "peak RSS {slow_peak} KiB with a slow store, {fast_peak} KiB with a fast one (budget 16 MiB)"
    );
    let dir = tempfile::tempdir().unwrap();
    let source = consume(&bootstrap, dir.path(), &["big"]);
    let storage = rt().block_on(open_storage("s3://slow/kafka", Some(&moto.endpoint())));
    for id in ["fast", "slow"] {
        let (manifest, stored) = rt().block_on(read_backup(&storage, id));
        assert!(manifest.is_complete());
        assert_same_records(&stored, &source);
    }

    // Restores: uploads fast again, downloads slow.
    proxy.slow_uploads(0);
    let restore = |id: &str| {
        let mut command = kbs_on_s3("restore", &bootstrap, "s3://slow/kafka", &endpoint);
        command.args([
            "--backup-id",
            "slow",
            "--restore-id",
            id,
            "--topic-map",
            &format!("big=big-{id}"),
            "--create-topics",
            "--memory-budget",
            "16M",
        ]);
        let started = std::time::Instant::now();
        let (out, peak_kib) = run_measuring_peak_rss(&mut command);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let copy = consume(&bootstrap, dir.path(), &[&format!("big-{id}")]);
        assert_eq!(copy.len(), source.len(), "records duplicated or lost");
        (started.elapsed(), peak_kib)
    };
    let (fast_time, fast_peak) = restore("fast");
    proxy.slow_downloads(rate);
    let (slow_time, slow_peak) = restore("slow");
    kbs_testkit::note(&format!(
        "restore, budget 16 MiB: unlimited store {fast_time:?}, peak RSS {fast_peak} KiB; \
         store at {rate} B/s {slow_time:?}, peak RSS {slow_peak} KiB"
    ));
    assert!(slow_time >= least, "the store was not slow: {slow_time:?}");
    assert!(
        slow_peak <= fast_peak + (16 << 10),
        "restore peak RSS {slow_peak} KiB with a slow store, {fast_peak} KiB with a fast one (budget 16 MiB)"
    );
}

/// A broker that joins after kbs started (scaled out, or back from maintenance): a continuous
/// backup of `fresh-*` finds a new topic whose partitions all live on that broker, learns its
/// address from Metadata and backs the topic up.
#[test]
fn a_continuous_backup_reads_from_a_broker_that_joined_after_it_started() {
    let Some(mut kafka) = three_nodes() else {
        return;
    };
    kafka.stop_node(3);
    let bootstrap = kafka.bootstrap();
    let running: String = bootstrap.split(',').take(2).collect::<Vec<_>>().join(",");
    kbs_testkit::run_script("kafka_admin.py", &["create-topic", &running, "fresh-a", "2", "2"]);
    seed_simple(&running, "fresh-a", 2_000, 2, false);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root_str = root.to_str().unwrap();
    let child = spawn_continuous_backup(
        &running,
        root_str,
        "joined",
        "fresh-*",
        &["--topic-refresh-interval", "1s"],
    );
    let checkpoint = root.join("joined/checkpoints/checkpoint.json");
    eventually("fresh-a checkpointed", Duration::from_secs(60), || {
        checkpointed_offsets(&checkpoint) >= 2_000
    });
    kafka.restart_node(3);
    kbs_testkit::run_script("kafka_admin.py", &["create-topic-on", &running, "fresh-b", "2", "3"]);
    assert_eq!(leaders_of(&running, "fresh-b"), vec![3, 3]);
    seed_simple(&running, "fresh-b", 2_000, 2, false);
    let source = consume(&running, dir.path(), &["fresh-a", "fresh-b"]);
    assert_eq!(source.len(), 4_000);
    eventually(
        "fresh-b, led by the broker that joined, checkpointed",
        Duration::from_secs(120),
        || checkpointed_offsets(&checkpoint) >= 4_000,
    );
    stop_validate_and_compare(child, root_str, "joined", &source);
}
