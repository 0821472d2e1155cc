//! `kbs restore`: round trips into renamed topics and another broker, time and offset windows,
//! SIGKILL and resume, consumer-group translation, topic configs.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::harness::*;

/// A record without its offset, for comparing source and target per partition.
pub(crate) type Content = (i64, Option<String>, Option<String>, Vec<(String, Option<String>)>);

/// Records per (topic, partition), in offset order, offsets dropped; topics renamed by `rename`.
pub(crate) fn by_partition(rows: &[Row], rename: impl Fn(&str) -> String) -> BTreeMap<(String, i32), Vec<Content>> {
    let mut map: BTreeMap<(String, i32), Vec<Content>> = BTreeMap::new();
    for r in rows {
        map.entry((rename(&r.0), r.1))
            .or_default()
            .push((r.3, r.4.clone(), r.5.clone(), r.6.clone()));
    }
    map
}

/// Asserts two [`by_partition`] maps are equal, naming the first partition and position that
/// differ (the whole maps are too large to print).
pub(crate) fn assert_same_partitions(
    got: &BTreeMap<(String, i32), Vec<Content>>,
    want: &BTreeMap<(String, i32), Vec<Content>>,
) {
    let counts =
        |m: &BTreeMap<(String, i32), Vec<Content>>| m.iter().map(|(k, v)| (k.clone(), v.len())).collect::<Vec<_>>();
    assert_eq!(counts(got), counts(want), "records per partition (restored vs source)");
    for (key, records) in want {
        for (i, (g, w)) in got[key].iter().zip(records).enumerate() {
            assert_eq!(g, w, "{key:?}: record {i} differs (restored vs source)");
        }
    }
}

pub(crate) fn args(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

pub(crate) fn run_args(text: &str) -> String {
    let a = args(text);
    run_ok(&a.iter().map(String::as_str).collect::<Vec<_>>())
}

fn describe(bootstrap: &str, topic: &str) -> serde_json::Value {
    let out = kbs_testkit::run_script("groups.py", &["describe", bootstrap, topic]);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn varied_dataset_restores_identically_into_renamed_topics_and_a_second_broker() {
    let Some(source) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let Some(second) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let (a, b) = (source.bootstrap(), second.bootstrap());
    let seeded = kbs_testkit::run_script("seed.py", &[&a, "varied"]);
    let seeded: serde_json::Value = serde_json::from_slice(&seeded.stdout).unwrap();
    let topics: Vec<String> = seeded["topics"].as_object().unwrap().keys().cloned().collect();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root = root.to_str().unwrap();
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    let original = consume(&a, dir.path(), &topic_refs);
    run_args(&format!(
        "backup --bootstrap-servers {a} --storage {root} --backup-id v --topics v-* --compression lz4 -q"
    ));

    // Dry run: a plan, and nothing created.
    let map: Vec<String> = topics.iter().map(|t| format!("{t}=r{t}")).collect();
    let map = map.join(",");
    let plan = run_args(&format!(
        "restore --bootstrap-servers {a} --storage {root} --backup-id v --topic-map {map} --create-topics --dry-run"
    ));
    assert!(
        plan.contains("restore plan") && plan.contains("target topic rv-mixed: needs 4 partitions, does not exist"),
        "{plan}"
    );
    let after_dry_run = describe_missing(&a, "rv-mixed");
    assert!(after_dry_run, "--dry-run created a topic");

    // Into renamed topics on the same broker.
    run_args(&format!(
        "restore --bootstrap-servers {a} --storage {root} --backup-id v --topic-map {map} --create-topics"
    ));
    let renamed: Vec<String> = topics.iter().map(|t| format!("r{t}")).collect();
    let renamed_refs: Vec<&str> = renamed.iter().map(String::as_str).collect();
    let restored = consume(&a, dir.path(), &renamed_refs);
    assert_same_partitions(
        &by_partition(&restored, |t| t.trim_start_matches('r').to_string()),
        &by_partition(&original, str::to_string),
    );

    // Into a second broker, same names, zstd batches.
    run_args(&format!(
        "restore --bootstrap-servers {b} --storage {root} --backup-id v --create-topics --compression zstd"
    ));
    let elsewhere = consume(&b, dir.path(), &topic_refs);
    assert_same_partitions(
        &by_partition(&elsewhere, str::to_string),
        &by_partition(&original, str::to_string),
    );
    // Offsets too: nothing was compacted away, so they are the same.
    assert_same_records(&elsewhere, &original);

    // Created topics carry the backed-up partition counts and configs.
    for (topic, config) in [
        ("v-compacted", "cleanup.policy"),
        ("v-headers", "retention.ms"),
        ("v-mixed", "cleanup.policy"),
    ] {
        let source_topic = describe(&a, topic);
        for target in [describe(&b, topic), describe(&a, &format!("r{topic}"))] {
            assert_eq!(target["partitions"], source_topic["partitions"], "{topic}");
            assert_eq!(
                target["configs"][config], source_topic["configs"][config],
                "{topic} {config}"
            );
        }
    }
    assert_eq!(describe(&b, "v-compacted")["configs"]["cleanup.policy"], "compact");
    assert_eq!(describe(&b, "v-empty")["partitions"], 3);
}

/// True when `topic` does not exist on the broker.
pub(crate) fn describe_missing(bootstrap: &str, topic: &str) -> bool {
    let out = std::process::Command::new(kbs_testkit::python().unwrap())
        .arg(kbs_testkit::script("groups.py"))
        .args(["describe", bootstrap, topic])
        .output()
        .unwrap();
    !out.status.success()
}

#[test]
fn time_and_offset_windows_restore_exactly_the_records_inside() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    let t0: i64 = 1_763_700_000_000;
    kbs_testkit::run_script(
        "seed.py",
        &[
            &bootstrap,
            "simple",
            "pitr",
            "3000",
            "3",
            "--start-ts",
            &t0.to_string(),
            "--ts-step",
            "1000",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root = root.to_str().unwrap();
    run_args(&format!(
        "backup --bootstrap-servers {bootstrap} --storage {root} --backup-id p -q"
    ));
    let source = consume(&bootstrap, dir.path(), &["pitr"]);

    // Time window, inclusive, given as RFC 3339 and as Unix ms.
    let (start, end) = (t0 + 1000 * 1000, t0 + 2000 * 1000);
    run_args(&format!(
        "restore --bootstrap-servers {bootstrap} --storage {root} --backup-id p --topic-map pitr=pitr-window --create-topics \
         --start-time 2025-11-21T04:56:40Z --end-time {end}"
    ));
    assert_eq!(
        start,
        kbs_cli::options::parse_time("t", "2025-11-21T04:56:40Z").unwrap()
    );
    let window = consume(&bootstrap, dir.path(), &["pitr-window"]);
    let expected: Vec<Row> = source.iter().filter(|r| r.3 >= start && r.3 <= end).cloned().collect();
    assert_eq!(expected.len(), 1001);
    assert_same_partitions(
        &by_partition(&window, |_| "pitr".into()),
        &by_partition(&expected, str::to_string),
    );

    // Offset range on one partition; the other partitions whole. A tiny memory budget makes
    // every segment go through the spooled, streaming path.
    run_args(&format!(
        "restore --bootstrap-servers {bootstrap} --storage {root} --backup-id p --topic-map pitr=pitr-offsets --create-topics \
         --start-offset pitr:0=100 --end-offset pitr:0=199 --memory-budget 1k --parallelism 1"
    ));
    let ranged = consume(&bootstrap, dir.path(), &["pitr-offsets"]);
    let expected: Vec<Row> = source
        .iter()
        .filter(|r| r.1 != 0 || (100..=199).contains(&r.2))
        .cloned()
        .collect();
    assert_same_partitions(
        &by_partition(&ranged, |_| "pitr".into()),
        &by_partition(&expected, str::to_string),
    );

    // Partitions swapped; two sources into one target partition is refused.
    run_args(&format!(
        "restore --bootstrap-servers {bootstrap} --storage {root} --backup-id p --topic-map pitr=pitr-swapped --create-topics \
         --partition-map pitr:0=1,pitr:1=0"
    ));
    let swapped = consume(&bootstrap, dir.path(), &["pitr-swapped"]);
    let swap = |p: i32| match p {
        0 => 1,
        1 => 0,
        other => other,
    };
    let expected: Vec<Row> = source
        .iter()
        .map(|r| (r.0.clone(), swap(r.1), r.2, r.3, r.4.clone(), r.5.clone(), r.6.clone()))
        .collect();
    assert_same_partitions(
        &by_partition(&swapped, |_| "pitr".into()),
        &by_partition(&expected, str::to_string),
    );
    let a = args(&format!(
        "restore --bootstrap-servers {bootstrap} --storage {root} --backup-id p --topic-map pitr=pitr-merged --create-topics \
         --partition-map pitr:0=1"
    ));
    let out = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("would both be restored into pitr-merged/1"));
}

/// The sum of the high watermarks of `topic`.
pub(crate) fn target_end(bootstrap: &str, topic: &str) -> i64 {
    watermarks(bootstrap, topic).values().map(|w| w.1).sum()
}

/// Runs `restore` (a command with `--max-bytes-per-sec` last but `-q`, into `target`) and SIGKILLs it at a
/// random moment (up to `within` later) after it produced its first records (so that a kill often lands before the
/// next progress save and leaves records the next run must recognise), until `kills_wanted`
/// runs were killed while producing; then runs it to the end without the rate limit. Every
/// run that ends by itself must succeed.
pub(crate) fn kill_while_producing_then_finish(
    bootstrap: &str,
    restore: &str,
    target: &str,
    kills_wanted: usize,
    within: Duration,
) {
    let mut rng = 0x9e37_79b9_u64;
    let mut kills = 0;
    for _ in 0..40 {
        if kills >= kills_wanted {
            break;
        }
        let before = target_end(bootstrap, target);
        let a = args(restore);
        let mut child = spawn(&a.iter().map(String::as_str).collect::<Vec<_>>());
        let start = std::time::Instant::now();
        while child.try_wait().unwrap().is_none()
            && target_end(bootstrap, target) <= before
            && start.elapsed() < Duration::from_secs(30)
        {}
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(rng % within.as_millis().max(1) as u64));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        let out = child.wait_with_output().unwrap();
        if out.status.code().is_some() {
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
    }
    assert!(
        kills >= kills_wanted,
        "only {kills} restores were still producing when killed"
    );
    let unlimited = restore
        .split_once(" --max-bytes-per-sec ")
        .map(|(before, after)| format!("{before} {}", after.split_once(' ').map_or("", |(_, rest)| rest)))
        .unwrap_or_else(|| restore.to_owned());
    run_args(&unlimited);
}

#[test]
fn sigkilled_restores_into_a_log_append_time_topic_resume_without_duplicates() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    seed_simple(&bootstrap, "lat", 40_000, 2, true);
    // The target stamps records with its own clock: resume cannot match on timestamps.
    kbs_testkit::run_script(
        "kafka_admin.py",
        &[
            "create-topic",
            &bootstrap,
            "lat-copy",
            "2",
            "1",
            "message.timestamp.type=LogAppendTime",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root = root.to_str().unwrap();
    run_args(&format!(
        "backup --bootstrap-servers {bootstrap} --storage {root} --backup-id l --segment-max-records 2000 -q"
    ));
    let source = consume(&bootstrap, dir.path(), &["lat"]);
    kill_while_producing_then_finish(
        &bootstrap,
        &format!(
            "restore --bootstrap-servers {bootstrap} --storage {root} --backup-id l --topic-map lat=lat-copy \
             --restore-id lat --max-bytes-per-sec 1M -q"
        ),
        "lat-copy",
        6,
        Duration::from_millis(700),
    );
    let copy = consume(&bootstrap, dir.path(), &["lat-copy"]);
    let without_time = |rows: &[Row]| -> Vec<_> {
        rows.iter()
            .map(|r| (r.1, r.2, r.4.clone(), r.5.clone(), r.6.clone()))
            .collect()
    };
    assert_eq!(copy.len(), source.len(), "records duplicated or lost");
    assert!(
        without_time(&copy) == without_time(&source),
        "the copy differs from the source"
    );
    assert!(
        copy.iter().zip(&source).any(|(c, s)| c.3 != s.3),
        "the target stamped its own times"
    );
}

#[test]
fn sigkilled_restores_resume_without_duplicates() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    seed_simple(&bootstrap, "rk", 60_000, 3, true);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root = root.to_str().unwrap();
    run_args(&format!(
        "backup --bootstrap-servers {bootstrap} --storage {root} --backup-id k --segment-max-records 3000 -q"
    ));
    let source = consume(&bootstrap, dir.path(), &["rk"]);
    // Slowed down so the kills land while records are being produced.
    let restore = format!(
        "restore --bootstrap-servers {bootstrap} --storage {root} --backup-id k --topic-map rk=rk-copy --create-topics \
         --restore-id kill-me --max-bytes-per-sec 512K -q"
    );
    kbs_testkit::run_script("kafka_admin.py", &["create-topic", &bootstrap, "rk-copy", "3", "1"]);
    kill_while_producing_then_finish(&bootstrap, &restore, "rk-copy", 10, Duration::from_millis(700));
    let copy = consume(&bootstrap, dir.path(), &["rk-copy"]);
    assert_eq!(copy.len(), source.len(), "records duplicated or lost");
    assert_same_partitions(
        &by_partition(&copy, |_| "rk".into()),
        &by_partition(&source, str::to_string),
    );
}

#[test]
fn consumer_groups_resume_exactly_where_they_stopped() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    seed_simple(&bootstrap, "grp", 3_000, 3, true);
    // g1 consumed some of each partition, g2 everything of partition 0, g3 is not restored.
    kbs_testkit::run_script(
        "groups.py",
        &["commit", &bootstrap, "g1", "grp:0=100", "grp:1=999", "grp:2=0"],
    );
    kbs_testkit::run_script("groups.py", &["commit", &bootstrap, "g2", "grp:0=1000"]);
    kbs_testkit::run_script("groups.py", &["commit", &bootstrap, "g3", "grp:0=5"]);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root = root.to_str().unwrap();
    run_args(&format!(
        "backup --bootstrap-servers {bootstrap} --storage {root} --backup-id cg --consumer-groups -q"
    ));
    let source = consume(&bootstrap, dir.path(), &["grp"]);
    let plan = run_args(&format!(
        "restore --bootstrap-servers {bootstrap} --storage {root} --backup-id cg --topic-map grp=grp-r --create-topics \
         --consumer-groups g1,g2 --dry-run"
    ));
    assert!(plan.contains("group g1: grp/0@100 -> grp-r/0@? planned"), "{plan}");
    let out = run_args(&format!(
        "restore --bootstrap-servers {bootstrap} --storage {root} --backup-id cg --topic-map grp=grp-r --create-topics \
         --consumer-groups g1,g2"
    ));
    assert!(out.contains("group g1: grp/0@100 -> grp-r/0@100 committed"), "{out}");
    // `kbs describe` shows the restore and the translated group offsets.
    let described = run_args(&format!("describe --storage {root} --backup-id cg"));
    assert!(described.contains("group g1: committed grp-r/1@999"), "{described}");
    // What each group reads from the restored topic is exactly what it had not consumed.
    for (group, committed) in [("g1", [100, 999, 0]), ("g2", [1000, -1, -1])] {
        let path = dir.path().join(format!("{group}.jsonl"));
        kbs_testkit::run_script(
            "groups.py",
            &["read", &bootstrap, group, path.to_str().unwrap(), "grp-r"],
        );
        let read = read_consumed(&path);
        let expected: Vec<Row> = source
            .iter()
            .filter(|r| match committed[r.1 as usize] {
                -1 => true, // no committed offset: the group starts from the beginning
                c => r.2 >= c,
            })
            .cloned()
            .collect();
        assert_eq!(
            by_partition(&read, |_| "grp".into()),
            by_partition(&expected, str::to_string),
            "group {group}"
        );
    }
    // g3 was not asked for: it has no offsets on the restored topic.
    let path = dir.path().join("g3.jsonl");
    kbs_testkit::run_script(
        "groups.py",
        &["read", &bootstrap, "g3", path.to_str().unwrap(), "grp-r"],
    );
    assert_eq!(read_consumed(&path).len(), source.len());
}

#[test]
fn corrupt_segments_stop_the_restore_or_are_skipped_and_offset_headers_name_the_source() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root_str = root.to_str().unwrap();
    // Two backup runs: two segments per partition.
    seed_simple(&bootstrap, "cs", 400, 1, true);
    run_args(&format!(
        "backup --bootstrap-servers {bootstrap} --storage {root_str} --backup-id c -q"
    ));
    seed_simple(&bootstrap, "cs", 400, 1, false);
    run_args(&format!(
        "backup --bootstrap-servers {bootstrap} --storage {root_str} --backup-id c -q"
    ));
    let source = consume(&bootstrap, dir.path(), &["cs"]);
    let damaged = root.join("c/topics/cs/0/segment-00000001.kbs");
    let mut bytes = std::fs::read(&damaged).unwrap();
    let at = bytes.len() - 40;
    bytes[at] ^= 1;
    std::fs::write(&damaged, bytes).unwrap();

    // Without --skip-corrupt: stops, naming the segment and the byte.
    let a = args(&format!(
        "restore --bootstrap-servers {bootstrap} --storage {root_str} --backup-id c --topic-map cs=cs-a --create-topics"
    ));
    let out = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!out.status.success());
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(
        message.contains("c/topics/cs/0/segment-00000001.kbs") && message.contains("byte"),
        "{message}"
    );
    // Nothing of the damaged segment was produced: only the first segment's 400 records.
    assert_eq!(consume(&bootstrap, dir.path(), &["cs-a"]).len(), 400);

    // With --skip-corrupt: the rest is restored, the skip reported, exit code 3 (problems).
    let a = args(&format!(
        "restore --bootstrap-servers {bootstrap} --storage {root_str} --backup-id c --topic-map cs=cs-b --create-topics \
         --skip-corrupt --include-offset-headers --memory-budget 1k"
    ));
    let out = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("SKIPPED corrupt segment c/topics/cs/0/segment-00000001.kbs")
    );
    let restored = consume(&bootstrap, dir.path(), &["cs-b"]);
    assert_eq!(restored.len(), 400);
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for (r, s) in restored.iter().zip(&source) {
        let extra: Vec<(String, Option<String>)> = vec![
            (b64("x-kafka-backup-offset"), Some(b64(&s.2.to_string()))),
            (b64("x-kafka-backup-timestamp"), Some(b64(&s.3.to_string()))),
            (b64("x-kafka-backup-partition"), Some(b64("0"))),
        ];
        let mut expected = s.6.clone();
        expected.extend(extra);
        assert_eq!(r.6, expected, "headers of source offset {}", s.2);
        assert_eq!((r.3, &r.4, &r.5), (s.3, &s.4, &s.5));
    }
}

#[test]
fn the_default_restore_id_names_the_target_cluster_not_the_bootstrap_string() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    let port = bootstrap.rsplit(':').next().unwrap();
    seed_simple(&bootstrap, "rid", 2_000, 2, true);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root = root.to_str().unwrap();
    run_args(&format!(
        "backup --bootstrap-servers {bootstrap} --storage {root} --backup-id b -q"
    ));
    let restore = |servers: &str, extra: &str| {
        let a = args(&format!(
            "restore --bootstrap-servers {servers} --storage {root} --backup-id b --topic-map rid=rid-copy \
             --create-topics --output json {extra}"
        ));
        run(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let first = restore(&bootstrap, "");
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let report: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    let id = report["restore_id"].as_str().unwrap().to_owned();
    // The id is told at start, with how to resume.
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(
        stderr.contains(&format!("restore {id} of backup b into cluster {}", kafka.cluster_id())),
        "{stderr}"
    );
    // The same cluster named otherwise is the same restore: it resumes (nothing left to do).
    let again = restore(&format!("localhost:{port}"), "");
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let report: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(report["restore_id"].as_str(), Some(id.as_str()));
    assert_eq!(
        consume(&bootstrap, dir.path(), &["rid-copy"]).len(),
        2_000,
        "nothing written twice"
    );
    // Another restore id into the same topic is refused, naming the restore that wrote it and
    // warning that --allow-non-empty would duplicate.
    let other = restore(&bootstrap, "--restore-id other");
    assert_eq!(other.status.code(), Some(2));
    let refusal = String::from_utf8_lossy(&other.stderr);
    assert!(
        refusal.contains(&format!("wrote to rid-copy: {id}")) && refusal.contains("written twice"),
        "{refusal}"
    );
}

#[test]
fn one_restore_id_runs_once_at_a_time_and_a_run_that_lost_its_progress_stops_producing() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    seed_simple(&bootstrap, "dup", 20_000, 2, true);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root_str = root.to_str().unwrap();
    run_args(&format!(
        "backup --bootstrap-servers {bootstrap} --storage {root_str} --backup-id b -q"
    ));
    let command = format!(
        "restore --bootstrap-servers {bootstrap} --storage {root_str} --backup-id b --topic-map dup=dup-copy \
         --create-topics --restore-id r1"
    );
    // A slow first run (about 20 s at 200 kB/s).
    let slow = args(&format!("{command} --max-bytes-per-sec 200k"));
    let first = spawn(&slow.iter().map(String::as_str).collect::<Vec<_>>());
    eventually("the first run produces", Duration::from_secs(30), || {
        target_end(&bootstrap, "dup-copy") > 0
    });
    // A second run of the same restore id is refused at once, naming the holder and the way out.
    let second = run(&args(&command).iter().map(String::as_str).collect::<Vec<_>>());
    let refusal = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(5), "{refusal}");
    assert!(
        refusal.contains("restore r1 of backup b is being run by another kbs process")
            && refusal.contains("kbs unlock --backup-id b --restore-id r1"),
        "{refusal}"
    );
    // Forced: the lease is removed by hand and a third run takes the progress over. The first
    // run, still alive, must stop producing instead of finishing its plan.
    run_args(&format!("unlock --storage {root_str} --backup-id b --restore-id r1"));
    let third = spawn(&args(&command).iter().map(String::as_str).collect::<Vec<_>>());
    let first = wait_with_deadline(first, Duration::from_secs(60));
    let stopped = String::from_utf8_lossy(&first.stderr);
    assert_eq!(first.status.code(), Some(5), "the first run must stop: {stopped}");
    assert!(
        stopped.contains("another run took over") || stopped.contains("changed by another run"),
        "{stopped}"
    );
    let third = wait_with_deadline(third, Duration::from_secs(120));
    assert!(third.status.success(), "{}", String::from_utf8_lossy(&third.stderr));
    // Every record exactly once, in order.
    let source = consume(&bootstrap, dir.path(), &["dup"]);
    let copy = consume(&bootstrap, dir.path(), &["dup-copy"]);
    assert_same_partitions(
        &by_partition(&copy, |_| "dup".into()),
        &by_partition(&source, str::to_string),
    );
}

#[test]
fn a_rerun_refuses_a_target_that_was_deleted_and_created_again() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    seed_simple(&bootstrap, "gone", 1_000, 2, true);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root = root.to_str().unwrap();
    run_args(&format!(
        "backup --bootstrap-servers {bootstrap} --storage {root} --backup-id g -q"
    ));
    let restore = format!(
        "restore --bootstrap-servers {bootstrap} --storage {root} --backup-id g --topic-map gone=gone-copy \
         --create-topics -q"
    );
    run_args(&restore);
    assert_eq!(consume(&bootstrap, dir.path(), &["gone-copy"]).len(), 1_000);
    // The operator deletes the restored topic and reruns the same command: the topic is created
    // again, empty, and the rerun must not report the earlier counts as if nothing happened.
    kbs_testkit::run_script("kafka_admin.py", &["delete-topic", &bootstrap, "gone-copy"]);
    let rerun = run(&args(&restore).iter().map(String::as_str).collect::<Vec<_>>());
    let stderr = String::from_utf8_lossy(&rerun.stderr);
    assert_eq!(rerun.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("target topic gone-copy is not the one restore") && stderr.contains("--restore-id"),
        "{stderr}"
    );
    // With a new restore id it is restored again, whole.
    run_args(&format!("{restore} --restore-id again"));
    assert_eq!(consume(&bootstrap, dir.path(), &["gone-copy"]).len(), 1_000);
}

#[test]
fn a_valid_segment_that_is_not_the_recorded_one_is_never_produced() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root_str = root.to_str().unwrap();
    // Two runs: two segments in the partition, each valid on its own.
    seed_simple(&bootstrap, "sw", 300, 1, true);
    run_args(&format!(
        "backup --bootstrap-servers {bootstrap} --storage {root_str} --backup-id s -q"
    ));
    seed_simple(&bootstrap, "sw", 300, 1, false);
    run_args(&format!(
        "backup --bootstrap-servers {bootstrap} --storage {root_str} --backup-id s -q"
    ));
    let segments = root.join("s/topics/sw/0");
    std::fs::copy(
        segments.join("segment-00000000.kbs"),
        segments.join("segment-00000001.kbs"),
    )
    .unwrap();
    let a = args(&format!(
        "restore --bootstrap-servers {bootstrap} --storage {root_str} --backup-id s --topic-map sw=sw-copy --create-topics"
    ));
    let out = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "segment-00000001.kbs is not the segment the manifest records: first offset 0 (the manifest says 300)"
        ),
        "{stderr}"
    );
    // Only the first segment's records were produced, never the swapped copy's.
    assert_eq!(consume(&bootstrap, dir.path(), &["sw-copy"]).len(), 300);
}

#[test]
fn a_broker_wide_message_size_limit_is_respected() {
    // The broker accepts 3 MB records by default; no topic overrides it.
    let options = kbs_testkit::KafkaOptions::default().with_config("message.max.bytes", "3000000");
    let Some(kafka) = kbs_testkit::KafkaCluster::start_with(options) else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root = root.to_str().unwrap();
    kbs_testkit::run_script(
        "seed.py",
        &[&bootstrap, "simple", "big", "3", "1", "--value-size", "2000000"],
    );
    run_args(&format!(
        "backup --bootstrap-servers {bootstrap} --storage {root} --backup-id big -q"
    ));
    run_args(&format!(
        "restore --bootstrap-servers {bootstrap} --storage {root} --backup-id big --topic-map big=big-copy --create-topics -q"
    ));
    let copy = consume(&bootstrap, dir.path(), &["big-copy"]);
    let source = consume(&bootstrap, dir.path(), &["big"]);
    assert_same_partitions(
        &by_partition(&copy, |_| "big".into()),
        &by_partition(&source, str::to_string),
    );
}

#[test]
fn restoring_records_older_than_the_target_keeps_is_warned_about() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    let three_days_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 3 * 86_400_000;
    kbs_testkit::run_script(
        "seed.py",
        &[
            &bootstrap,
            "simple",
            "old",
            "100",
            "1",
            "--start-ts",
            &three_days_ago.to_string(),
        ],
    );
    kbs_testkit::run_script(
        "kafka_admin.py",
        &[
            "create-topic",
            &bootstrap,
            "old-copy",
            "1",
            "1",
            "retention.ms=86400000",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root = root.to_str().unwrap();
    run_args(&format!(
        "backup --bootstrap-servers {bootstrap} --storage {root} --backup-id o -q"
    ));
    let a = args(&format!(
        "restore --bootstrap-servers {bootstrap} --storage {root} --backup-id o --topic-map old=old-copy"
    ));
    let out = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("target topic old-copy keeps records for retention.ms=86400000")
            && stderr.contains("72 hours ago"),
        "{stderr}"
    );
}

/// The producers the leader of `topic`/0 knows: (producer id, last sequence appended).
fn producers_of(bootstrap: &str, topic: &str) -> Vec<(i64, i32)> {
    rt().block_on(async {
        let client = kbs_kafka::KafkaClient::connect(kbs_kafka::ClientConfig::new(bootstrap.split(',')))
            .await
            .unwrap();
        client
            .describe_producers(topic, 0)
            .await
            .unwrap()
            .iter()
            .map(|p| (p.producer_id, p.last_sequence))
            .collect()
    })
}

/// Batches a killed run sent but never saw acknowledged: one appended to the leader's log and
/// not copied by the frozen follower (above the high watermark), the next ones queued at the
/// broker behind it (Kafka reads a connection's next request only after answering the previous
/// one). All of them are written once the follower catches up, after the rerun read the
/// target's end. A rerun writing with a new producer wrote them twice; the rerun continues the
/// killed run's producer and sequence numbers, and the leader writes each batch once.
#[test]
fn batches_a_killed_run_left_unacknowledged_are_written_once() {
    // The frozen follower stays in the ISR (the leader waits for it) until it is let go.
    let options = kbs_testkit::KafkaOptions::nodes(3)
        .with_config("replica.lag.time.max.ms", "120000")
        .with_config("broker.session.timeout.ms", "120000");
    let Some(mut kafka) = kbs_testkit::KafkaCluster::start_with(options) else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    seed_simple(&bootstrap, "hw", 20_000, 1, true);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root = root.to_str().unwrap();
    run_args(&format!(
        "backup --bootstrap-servers {bootstrap} --storage {root} --backup-id hw --segment-max-records 2000 -q"
    ));
    let source = consume(&bootstrap, dir.path(), &["hw"]);
    kbs_testkit::run_script(
        "kafka_admin.py",
        &["create-topic", &bootstrap, "hw-copy", "1", "3", "min.insync.replicas=2"],
    );
    let leaders: serde_json::Value =
        serde_json::from_slice(&kbs_testkit::run_script("kafka_admin.py", &["describe", &bootstrap]).stdout).unwrap();
    let leader = leaders["topics"]["hw-copy"][0].as_i64().unwrap() as i32;
    let nodes: Vec<(i32, u16)> = kafka.nodes().iter().map(|n| (n.id, n.advertised_client_port)).collect();
    let follower = nodes.iter().find(|(id, _)| *id != leader).unwrap().0;
    // kbs and the checks below talk to the two running nodes only.
    let running = nodes
        .iter()
        .filter(|(id, _)| *id != follower)
        .map(|(_, port)| format!("127.0.0.1:{port}"))
        .collect::<Vec<_>>()
        .join(",");
    let restore = format!(
        "restore --bootstrap-servers {running} --storage {root} --backup-id hw --topic-map hw=hw-copy \
         --restore-id settle --consumer-groups false"
    );
    // A broker hands out producer ids from a block the active controller gives it; the frozen
    // node may be that controller, so both running brokers get their block first.
    for (_, port) in nodes.iter().filter(|(id, _)| *id != follower) {
        rt().block_on(async {
            let config = kbs_kafka::ClientConfig::new([format!("127.0.0.1:{port}")]);
            let client = kbs_kafka::KafkaClient::connect(config).await.unwrap();
            kbs_kafka::IdempotentProducer::new(client, kbs_kafka::ProducerConfig::default())
                .await
                .unwrap();
        });
    }
    kafka.pause_node(follower);

    // The first run appends a batch the frozen follower never copies, queues more behind it,
    // and is killed waiting for the acknowledgement.
    let first_log = dir.path().join("first.log");
    let mut first = kbs()
        .env("RUST_LOG", "debug")
        .args(args(&restore))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&first_log).unwrap())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !producers_of(&running, "hw-copy").iter().any(|(_, last)| *last >= 0) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the first run's first batch never reached the leader's log; its log:\n{}",
            std::fs::read_to_string(&first_log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(watermarks(&running, "hw-copy")[&0].1, 0, "nothing is replicated yet");

    // The rerun, while all of that is still pending; the follower comes back once the rerun
    // has sent batches of its own.
    let log = dir.path().join("rerun.log");
    let second = kbs()
        .env("RUST_LOG", "warn,kbs_cli=info,kbs_kafka::producer=debug")
        .args(args(&restore))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    eventually("the rerun's first batches", Duration::from_secs(60), || {
        std::fs::read_to_string(&log).unwrap().contains("batch sent")
    });
    kafka.resume_node(follower);
    let out = wait_with_deadline(second, Duration::from_secs(120));
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(out.status.success(), "{stderr}");
    let copy = consume(&bootstrap, dir.path(), &["hw-copy"]);
    assert_eq!(copy.len(), source.len(), "records duplicated or lost");
    assert_same_partitions(
        &by_partition(&copy, |_| "hw".into()),
        &by_partition(&source, str::to_string),
    );
    assert!(stderr.contains("continuing the interrupted run's producer"), "{stderr}");
}

#[test]
fn a_restore_stopped_with_sigterm_saves_its_progress_and_the_same_command_finishes_it() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    seed_simple(&bootstrap, "rt", 30_000, 3, true);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root = root.to_str().unwrap();
    run_args(&format!(
        "backup --bootstrap-servers {bootstrap} --storage {root} --backup-id t --segment-max-records 3000 -q"
    ));
    let source = consume(&bootstrap, dir.path(), &["rt"]);
    let restore = format!(
        "restore --bootstrap-servers {bootstrap} --storage {root} --backup-id t --topic-map rt=rt-copy --create-topics \
         --restore-id stop-me"
    );
    // Slowed down, so SIGTERM lands while records are being produced.
    let a = args(&format!("{restore} --max-bytes-per-sec 256K -q"));
    let child = spawn(&a.iter().map(String::as_str).collect::<Vec<_>>());
    eventually("the first restored records", Duration::from_secs(60), || {
        watermarks(&bootstrap, "rt-copy").values().map(|w| w.1).sum::<i64>() > 0
    });
    terminate(&child);
    let out = wait_with_deadline(child, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("restore stop-me of backup t is INCOMPLETE"), "{stderr}");
    let written = target_end(&bootstrap, "rt-copy");
    assert!(written > 0 && (written as usize) < source.len(), "{written}");
    // What it saved is what the target holds: the rerun writes the rest, nothing twice.
    run_args(&restore);
    let copy = consume(&bootstrap, dir.path(), &["rt-copy"]);
    assert_eq!(copy.len(), source.len(), "records duplicated or lost");
    assert_same_partitions(
        &by_partition(&copy, |_| "rt".into()),
        &by_partition(&source, str::to_string),
    );
}
