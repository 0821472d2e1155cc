//! `kbs restore --repartition`: records placed where librdkafka's murmur2 partitioner puts
//! their keys, in the documented merge order, exactly once through SIGKILLs, and consumer groups
//! that lose nothing.

use std::collections::BTreeMap;

use crate::harness::*;
use crate::restore::{describe_missing, kill_while_producing_then_finish, run_args};

/// A record's content as the target must hold it: timestamp, key, value, headers.
pub(crate) type Content = (i64, Option<String>, Option<String>, Vec<(String, Option<String>)>);

pub(crate) fn content(r: &Row) -> Content {
    (r.3, r.4.clone(), r.5.clone(), r.6.clone())
}

/// Where librdkafka's murmur2_random partitioner puts each key of `rows` in a topic of
/// `partitions` partitions (keys base64), found by producing each key once to a scratch topic.
fn librdkafka_placement(
    bootstrap: &str,
    dir: &std::path::Path,
    rows: &[Row],
    partitions: i32,
) -> BTreeMap<String, i32> {
    let keys: std::collections::BTreeSet<&str> = rows.iter().filter_map(|r| r.4.as_deref()).collect();
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = dir.join(format!("keys-{call}.txt"));
    let mut text = String::new();
    for key in &keys {
        text.push_str(key);
        text.push('\n');
    }
    std::fs::write(&file, text).unwrap();
    let scratch = format!("placement-{call}");
    let out = kbs_testkit::run_script(
        "kafka_admin.py",
        &[
            "placement",
            bootstrap,
            &scratch,
            &partitions.to_string(),
            file.to_str().unwrap(),
        ],
    );
    let placed: BTreeMap<String, i32> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(placed.len(), keys.len(), "librdkafka placed every key");
    placed
}

/// What each target partition must hold, in order, computed here from the source alone: the
/// source partitions merged by (timestamp, partition, offset) of their next records, each
/// keyed record in the partition librdkafka chose for its key (`placement`), each keyless one
/// round robin by `(source partition + offset) % partitions`. `None` placement: round robin
/// for every record.
pub(crate) fn expected_targets(
    source: &[Row],
    partitions: i32,
    placement: Option<&BTreeMap<String, i32>>,
) -> BTreeMap<i32, Vec<Content>> {
    let mut by_partition: BTreeMap<i32, std::collections::VecDeque<&Row>> = BTreeMap::new();
    for r in source {
        by_partition.entry(r.1).or_default().push_back(r);
    }
    for rows in by_partition.values_mut() {
        rows.make_contiguous().sort_by_key(|r| r.2);
    }
    let mut targets: BTreeMap<i32, Vec<Content>> = (0..partitions).map(|p| (p, Vec::new())).collect();
    loop {
        let next = by_partition
            .values()
            .filter_map(|rows| rows.front())
            .min_by_key(|r| (r.3, r.1, r.2))
            .map(|r| r.1);
        let Some(source_partition) = next else { break };
        let r = by_partition.get_mut(&source_partition).unwrap().pop_front().unwrap();
        let target = match (placement, &r.4) {
            (Some(placed), Some(key)) => placed[key],
            _ => ((i64::from(r.1) + r.2) % i64::from(partitions)) as i32,
        };
        targets.get_mut(&target).unwrap().push(content(r));
    }
    targets
}

/// The target topic's records per partition, in offset order.
pub(crate) fn target_contents(rows: &[Row]) -> BTreeMap<i32, Vec<Content>> {
    let mut map: BTreeMap<i32, Vec<Content>> = BTreeMap::new();
    for r in rows {
        map.entry(r.1).or_default().push(content(r));
    }
    map
}

/// Asserts the target holds exactly `want`, naming the first difference.
pub(crate) fn assert_targets(got: &BTreeMap<i32, Vec<Content>>, want: &BTreeMap<i32, Vec<Content>>, what: &str) {
    let counts = |m: &BTreeMap<i32, Vec<Content>>| {
        m.iter()
            .map(|(p, v)| (*p, v.len()))
            .filter(|c| c.1 > 0)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        counts(got),
        counts(want),
        "{what}: records per target partition (restored vs expected)"
    );
    for (p, records) in want {
        for (i, (g, w)) in got.get(p).into_iter().flatten().zip(records).enumerate() {
            assert_eq!(
                g, w,
                "{what}: target partition {p}, record {i} differs (restored vs expected)"
            );
        }
    }
}

#[test]
fn repartitioned_restores_place_records_as_kafkas_partitioner_does_in_the_documented_order() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    kbs_testkit::run_script("seed.py", &[&bootstrap, "keyed", "rp12", "24000", "12"]);
    kbs_testkit::run_script("seed.py", &[&bootstrap, "keyed", "rp3", "6000", "3", "--keys", "300"]);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root = root.to_str().unwrap();
    run_args(&format!(
        "backup --bootstrap-servers {bootstrap} --storage {root} --backup-id rp --segment-max-records 1500 -q"
    ));
    let source12 = consume(&bootstrap, dir.path(), &["rp12"]);
    let source3 = consume(&bootstrap, dir.path(), &["rp3"]);
    assert_eq!((source12.len(), source3.len()), (24_000, 6_000));
    let restore = |topic: &str, target: &str, mode: &str, partitions: i32| {
        run_args(&format!(
            "restore --bootstrap-servers {bootstrap} --storage {root} --backup-id rp --topics {topic} \
             --topic-map {topic}={target} --repartition {mode} --partitions {partitions} --create-topics"
        ))
    };

    // The dry run shows the shape and what each target partition will receive.
    let plan = run_args(&format!(
        "restore --bootstrap-servers {bootstrap} --storage {root} --backup-id rp --topics rp12 --topic-map rp12=rp24 \
         --repartition key --partitions 24 --create-topics --dry-run"
    ));
    assert!(
        plan.contains("repartitioned rp12 (12 source partitions) -> rp24 (24 partitions) by key, planned:"),
        "{plan}"
    );
    let placement24 = librdkafka_placement(&bootstrap, dir.path(), &source12, 24);
    let want24 = expected_targets(&source12, 24, Some(&placement24));
    for (p, records) in &want24 {
        assert!(
            plan.contains(&format!("  -> rp24/{p}: {} records,", records.len())),
            "partition {p}: {plan}"
        );
    }
    assert!(describe_missing(&bootstrap, "rp24"), "a dry run creates nothing");

    for (topic, source, target, partitions) in [
        ("rp12", &source12, "rp24", 24),
        ("rp12", &source12, "rp5", 5),
        ("rp3", &source3, "rp1", 1),
    ] {
        let out = restore(topic, target, "key", partitions);
        assert!(out.contains("by key, restored:"), "{out}");
        let placement = librdkafka_placement(&bootstrap, dir.path(), source, partitions);
        let got = target_contents(&consume(&bootstrap, dir.path(), &[target]));
        assert_targets(&got, &expected_targets(source, partitions, Some(&placement)), target);
    }
    // `kbs describe` shows the reshaped restores per target partition.
    let described = run_args(&format!("describe --storage {root} --backup-id rp"));
    assert!(described.contains("    rp12/* -> rp24/23: "), "{described}");
    assert!(described.contains("    rp3/* -> rp1/0: 6000 records"), "{described}");
    // Round robin: every record by its source position, spread evenly.
    restore("rp12", "rp5rr", "round-robin", 5);
    let got = target_contents(&consume(&bootstrap, dir.path(), &["rp5rr"]));
    assert_targets(&got, &expected_targets(&source12, 5, None), "rp5rr");
    for records in got.values() {
        assert!(
            records.len().abs_diff(24_000 / 5) < 24_000 / 50,
            "uneven round robin: {}",
            records.len()
        );
    }

    // Shapes that cannot work are refused before anything is written, with what to do.
    let refused = |line: String, says: &str| {
        let a: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        let out = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success() && stderr.contains(says), "{line}: {stderr}");
    };
    let base = format!("restore --bootstrap-servers {bootstrap} --storage {root} --backup-id rp --topics rp12");
    refused(
        format!("{base} --topic-map rp12=rp24 --repartition key --partitions 7"),
        "target topic rp24 exists with 24 partitions, not 7",
    );
    refused(
        format!("{base} --topic-map rp12=rp-new --repartition key"),
        "pass --partitions N with --create-topics",
    );
    refused(
        format!("{base} --topic-map rp12=rp-new --partitions 7"),
        "it needs --repartition key or round-robin",
    );
    refused(
        format!("{base} --repartition key --partition-map rp12:0=1"),
        "--repartition key places records by itself",
    );
    refused(
        format!(
            "restore --bootstrap-servers {bootstrap} --storage {root} --backup-id rp --topic-map rp12=rpx,rp3=rpx \
             --repartition key --partitions 3 --create-topics"
        ),
        "would both be repartitioned into rpx",
    );
    assert!(describe_missing(&bootstrap, "rp-new") && describe_missing(&bootstrap, "rpx"));
}

#[test]
fn sigkilled_repartitioning_restores_end_exactly_once() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    kbs_testkit::run_script(
        "seed.py",
        &[
            &bootstrap,
            "keyed",
            "rk12",
            "30000",
            "12",
            "--keys",
            "500",
            "--value-size",
            "1200",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root = root.to_str().unwrap();
    run_args(&format!(
        "backup --bootstrap-servers {bootstrap} --storage {root} --backup-id rk --segment-max-records 1000 -q"
    ));
    let source = consume(&bootstrap, dir.path(), &["rk12"]);
    kbs_testkit::run_script("kafka_admin.py", &["create-topic", &bootstrap, "rk5", "5", "1"]);
    // Slowed down so the kills land while records are being produced.
    let restore = format!(
        "restore --bootstrap-servers {bootstrap} --storage {root} --backup-id rk --topic-map rk12=rk5 \
         --repartition key --restore-id kill-reshape --max-bytes-per-sec 512K -q"
    );
    // Kills up to 3 s after the first records: some land before the acknowledged prefix was
    // first saved (the rerun matches everything it finds), most after (it resumes mid-sequence).
    kill_while_producing_then_finish(&bootstrap, &restore, "rk5", 10, std::time::Duration::from_secs(3));
    let placement = librdkafka_placement(&bootstrap, dir.path(), &source, 5);
    let got = target_contents(&consume(&bootstrap, dir.path(), &["rk5"]));
    assert_targets(
        &got,
        &expected_targets(&source, 5, Some(&placement)),
        "rk5 after 10 SIGKILLs",
    );
}

#[test]
fn consumer_groups_of_a_repartitioned_topic_lose_nothing() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    kbs_testkit::run_script("seed.py", &[&bootstrap, "keyed", "gk", "6000", "4", "--keys", "200"]);
    // The log ends once every seeded record is visible (the commits below are halves of them).
    let mut ends = watermarks(&bootstrap, "gk");
    eventually(
        "the seeded records to be visible",
        std::time::Duration::from_secs(30),
        || {
            ends = watermarks(&bootstrap, "gk");
            ends.values().map(|w| w.1).sum::<i64>() == 6_000
        },
    );
    // half consumed half of each partition, all everything, one nothing of partition 3.
    let mut half = vec!["commit".to_string(), bootstrap.clone(), "half".into()];
    let mut all = vec!["commit".to_string(), bootstrap.clone(), "all".into()];
    for (p, (_, end)) in &ends {
        half.push(format!("gk:{p}={}", if *p == 3 { 0 } else { end / 2 }));
        all.push(format!("gk:{p}={end}"));
    }
    for commit in [&half, &all] {
        kbs_testkit::run_script("groups.py", &commit.iter().map(String::as_str).collect::<Vec<_>>());
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root = root.to_str().unwrap();
    run_args(&format!(
        "backup --bootstrap-servers {bootstrap} --storage {root} --backup-id g --consumer-groups -q"
    ));
    let source = consume(&bootstrap, dir.path(), &["gk"]);
    let out = run_args(&format!(
        "restore --bootstrap-servers {bootstrap} --storage {root} --backup-id g --topic-map gk=gk7 --repartition key \
         --partitions 7 --create-topics --consumer-groups half,all"
    ));
    assert!(out.contains("group all: gk/* -> gk7/0@"), "{out}");
    let half_moves: Vec<&str> = out.lines().filter(|l| l.starts_with("group half: ")).collect();
    assert!(
        half_moves.len() == 7 && half_moves.iter().all(|l| l.ends_with(" committed")),
        "{out}"
    );
    // A record's identity: its "n" header (unique per record of the dataset; names in base64).
    let id = |r: &Row| r.6.iter().find(|h| h.0 == "bg==").and_then(|h| h.1.clone()).unwrap();
    let read = |group: &str| -> Vec<String> {
        let path = dir.path().join(format!("{group}.jsonl"));
        kbs_testkit::run_script("groups.py", &["read", &bootstrap, group, path.to_str().unwrap(), "gk7"]);
        read_consumed(&path).iter().map(id).collect()
    };
    // A group that had read everything reads nothing of the restored topic.
    assert_eq!(read("all"), Vec::<String>::new());
    // A group reads every record it had not consumed (and of those it had, only ones placed
    // after an unconsumed record of the same target partition).
    let got: std::collections::BTreeSet<String> = read("half").into_iter().collect();
    let unconsumed: Vec<String> = source
        .iter()
        .filter(|r| r.1 == 3 || r.2 >= ends[&r.1].1 / 2)
        .map(id)
        .collect();
    let lost: Vec<&String> = unconsumed.iter().filter(|n| !got.contains(*n)).collect();
    assert!(
        lost.is_empty(),
        "{} unconsumed records not read again, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    // Each target partition's committed offset is its first record the group had not
    // consumed, computed here from the target's contents and the source offsets.
    let source_of: std::collections::BTreeMap<String, (i32, i64)> =
        source.iter().map(|r| (id(r), (r.1, r.2))).collect();
    let target = consume(&bootstrap, dir.path(), &["gk7"]);
    for partition in 0..7 {
        let records: Vec<&Row> = target.iter().filter(|r| r.1 == partition).collect();
        let first_unconsumed = records
            .iter()
            .find(|r| {
                let (p, offset) = source_of[&id(r)];
                p == 3 || offset >= ends[&p].1 / 2
            })
            .map_or(records.len() as i64, |r| r.2);
        let want = format!("group half: gk/* -> gk7/{partition}@{first_unconsumed} committed");
        assert!(half_moves.contains(&want.as_str()), "{want:?} not in {half_moves:#?}");
    }
    assert!(
        got.len() < source.len(),
        "the group's consumed records were all read again; its moves: {half_moves:#?}"
    );
}

#[test]
fn the_varied_dataset_repartitions_by_key_record_for_record() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    let seeded = kbs_testkit::run_script("seed.py", &[&bootstrap, "varied"]);
    let seeded: serde_json::Value = serde_json::from_slice(&seeded.stdout).unwrap();
    let topics: Vec<String> = seeded["topics"].as_object().unwrap().keys().cloned().collect();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root = root.to_str().unwrap();
    run_args(&format!(
        "backup --bootstrap-servers {bootstrap} --storage {root} --backup-id v --topics v-* -q"
    ));
    // Every codec, null and empty keys and values, 1 MB values, binary keys, many headers, a
    // compacted topic, an empty one: each 3 or 4 partitions into 5.
    let map: Vec<String> = topics.iter().map(|t| format!("{t}=k5{t}")).collect();
    run_args(&format!(
        "restore --bootstrap-servers {bootstrap} --storage {root} --backup-id v --topic-map {} --repartition key \
         --partitions 5 --create-topics -q",
        map.join(",")
    ));
    // The reference is what the backup holds (a compacted source may have changed since).
    let (_, stored) = read_stored(root, "v");
    let placement = librdkafka_placement(&bootstrap, dir.path(), &stored, 5);
    for topic in &topics {
        let source: Vec<Row> = stored.iter().filter(|r| r.0 == *topic).cloned().collect();
        let target = format!("k5{topic}");
        let got = target_contents(&consume(&bootstrap, dir.path(), &[&target]));
        assert_targets(&got, &expected_targets(&source, 5, Some(&placement)), &target);
        assert_eq!(
            watermarks(&bootstrap, &target).len(),
            5,
            "{target} created with 5 partitions"
        );
    }
}
