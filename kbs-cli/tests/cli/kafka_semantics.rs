//! What only a real Apache Kafka broker shows: transactions (committed, aborted, one still
//! open when a snapshot starts), records deleted by DeleteRecords (retention gaps), and the
//! snapshot end (the last stable offset at start). Each is checked through the `kbs` binary
//! against confluent-kafka's read_committed view, offset for offset.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Duration;

use crate::harness::*;

/// Starts `transactions.py` with an open transaction at the end; returns the child once the
/// open transaction's records are in the log.
fn open_transaction(
    bootstrap: &str,
    topic: &str,
    tag: &str,
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut child = kbs_testkit::python_command(&kbs_testkit::script("transactions.py"))
        .args([bootstrap, topic, "3", "4", "--tag", tag, "--open"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.contains("\"open\": true"), "transactions.py said {line:?}");
    (child, stdout)
}

/// Ends the open transaction of [`open_transaction`] with `decision` ("commit" or "abort").
fn end_transaction(mut child: std::process::Child, mut stdout: BufReader<std::process::ChildStdout>, decision: &str) {
    writeln!(child.stdin.take().unwrap(), "{decision}").unwrap();
    let mut summary = String::new();
    stdout.read_line(&mut summary).unwrap();
    assert!(child.wait().unwrap().success(), "transactions.py failed: {summary}");
}

/// The last offset stored per partition, from a backup's rows.
fn last_offsets(rows: &[Row]) -> BTreeMap<(String, i32), i64> {
    let mut last = BTreeMap::new();
    for r in rows {
        last.insert((r.0.clone(), r.1), r.2);
    }
    last
}

fn values(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .map(|r| {
            let value =
                r.5.as_deref()
                    .map(|v| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, v).unwrap());
            String::from_utf8(value.unwrap_or_default()).unwrap()
        })
        .collect()
}

#[test]
fn transactions_committed_kept_aborted_and_open_left_out_then_restored() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root = root.to_str().unwrap();

    // A snapshot taken while a transaction is open ends at the last stable offset: it neither
    // waits for the transaction nor stores any of its records.
    let (txn, txn_out) = open_transaction(&bootstrap, "tx", "one");
    let backup = spawn(&[
        "backup",
        "--bootstrap-servers",
        &bootstrap,
        "--storage",
        root,
        "--backup-id",
        "tx",
        "--topics",
        "tx",
        "-q",
    ]);
    let out = wait_with_deadline(backup, Duration::from_secs(60));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    end_transaction(txn, txn_out, "abort");
    let source = consume(&bootstrap, dir.path(), &["tx"]);
    let (manifest, stored) = read_stored(root, "tx");
    assert_same_records(&stored, &source);
    let stored_values = values(&stored);
    assert!(
        stored_values.iter().any(|v| v.starts_with("one-c3-")),
        "committed records are there"
    );
    assert!(
        stored_values.iter().any(|v| v.starts_with("one-q3")),
        "plain records are there"
    );
    assert!(!stored_values.iter().any(|v| v.contains("-a")), "no aborted record");
    assert!(
        !stored_values.iter().any(|v| v.contains("-open-")),
        "no record of the open transaction"
    );
    // Offsets are Kafka's (markers and aborted records leave holes); no control record stored.
    assert_eq!(stored.len(), 3 * 4 * (5 + 1 + 1));
    assert!(manifest.is_complete());
    run_ok(&["validate", "--path", root, "--backup-id", "tx", "--deep"]);

    // The same, with the open transaction committed later: the next run takes it.
    let (txn, txn_out) = open_transaction(&bootstrap, "tx", "two");
    run_ok(&[
        "backup",
        "--bootstrap-servers",
        &bootstrap,
        "--storage",
        root,
        "--backup-id",
        "tx",
        "--topics",
        "tx",
        "-q",
    ]);
    end_transaction(txn, txn_out, "commit");
    complete_and_compare(&bootstrap, dir.path(), root, "tx", "tx");

    // A continuous backup that runs while transactions commit and abort never stores an
    // aborted record.
    let child = spawn(&[
        "backup",
        "--bootstrap-servers",
        &bootstrap,
        "--storage",
        root,
        "--backup-id",
        "live",
        "--topics",
        "tx*",
        "--continuous",
        "--segment-max-interval",
        "1s",
        "--topic-refresh-interval",
        "1s",
        "-q",
    ]);
    kbs_testkit::run_script("transactions.py", &[&bootstrap, "tx", "3", "6", "--tag", "three"]);
    kbs_testkit::run_script("transactions.py", &[&bootstrap, "tx-new", "2", "3", "--tag", "four"]);
    let source = consume(&bootstrap, dir.path(), &["tx", "tx-new"]);
    let wanted = last_offsets(&source);
    let checkpoint = dir.path().join("store/live/checkpoints/checkpoint.json");
    eventually("every committed record checkpointed", Duration::from_secs(60), || {
        let Ok(c) =
            kbs_manifest::Checkpoint::from_json(std::fs::read_to_string(&checkpoint).unwrap_or_default().as_bytes())
        else {
            return false;
        };
        wanted.iter().all(|((t, p), offset)| {
            c.topics
                .get(t.as_str())
                .and_then(|ps| ps.get(p))
                .is_some_and(|cp| cp.offset >= *offset)
        })
    });
    terminate(&child);
    let out = wait_with_deadline(child, Duration::from_secs(60));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, stored) = read_stored(root, "live");
    assert_same_records(&stored, &source);
    run_ok(&["validate", "--path", root, "--backup-id", "live", "--deep"]);

    // Restore: the committed records, headers and timestamps, in order, in a new topic.
    run_ok(&[
        "restore",
        "--bootstrap-servers",
        &bootstrap,
        "--storage",
        root,
        "--backup-id",
        "tx",
        "--topics",
        "tx",
        "--topic-map",
        "tx=tx-restored",
        "--create-topics",
        "-q",
    ]);
    let (_, original) = read_stored(root, "tx");
    let restored = consume(&bootstrap, dir.path(), &["tx-restored"]);
    let content = |rows: &[Row]| -> Vec<_> {
        rows.iter()
            .map(|r| (r.1, r.3, r.4.clone(), r.5.clone(), r.6.clone()))
            .collect()
    };
    let (restored, original) = (content(&restored), content(&original));
    assert_eq!(restored.len(), original.len(), "records restored");
    for (i, (r, o)) in restored.iter().zip(&original).enumerate() {
        assert_eq!(r, o, "record {i} (partition, timestamp, key, value, headers) differs");
    }
}

#[test]
fn deleted_records_are_gaps_and_fully_deleted_or_empty_partitions_end_cleanly() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root = root.to_str().unwrap();
    seed_simple(&bootstrap, "gaps", 3_000, 3, true);
    kbs_testkit::run_script("kafka_admin.py", &["create-topic", &bootstrap, "gaps-empty", "2", "1"]);
    // Before any backup: partition 0 loses its first 200 records, partition 2 all of them.
    kbs_testkit::run_script(
        "kafka_admin.py",
        &["delete-records", &bootstrap, "gaps", "0=200", "2=-1"],
    );
    let first = run_ok(&[
        "backup",
        "--bootstrap-servers",
        &bootstrap,
        "--storage",
        root,
        "--backup-id",
        "g",
        "--topics",
        "gaps*",
        "--output",
        "json",
    ]);
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["records"], 2_000 - 200, "{first}");
    let source = consume(&bootstrap, dir.path(), &["gaps"]);
    let (_, first_stored) = read_stored(root, "g");
    assert_same_records(&first_stored, &source);

    // Between two runs: more records, then DeleteRecords past what the first run read. The
    // second run records the deleted range as a gap, with its offsets.
    seed_simple(&bootstrap, "gaps", 3_000, 3, false);
    kbs_testkit::run_script("kafka_admin.py", &["delete-records", &bootstrap, "gaps", "1=1500"]);
    let second = run_ok(&[
        "backup",
        "--bootstrap-servers",
        &bootstrap,
        "--storage",
        root,
        "--backup-id",
        "g",
        "--topics",
        "gaps*",
        "--output",
        "json",
    ]);
    let second: serde_json::Value = serde_json::from_str(&second).unwrap();
    let gaps = second["gaps"].as_array().unwrap_or_else(|| panic!("{second}"));
    assert_eq!(gaps.len(), 1, "{second}");
    assert_eq!(
        (
            gaps[0]["topic"].as_str(),
            gaps[0]["partition"].as_i64(),
            gaps[0]["from_offset"].as_i64(),
            gaps[0]["to_offset"].as_i64()
        ),
        (Some("gaps"), Some(1), Some(1000), Some(1499)),
        "{second}"
    );
    // The backup holds what the first run read (records 0..=999 of partition 1, deleted
    // since) and everything the consumer reads now.
    let source = consume(&bootstrap, dir.path(), &["gaps"]);
    let (manifest, stored) = read_stored(root, "g");
    let mut expected: Vec<Row> = first_stored.iter().filter(|r| r.1 == 1).cloned().collect();
    expected.extend(source.iter().cloned());
    expected.sort();
    expected.dedup();
    assert_same_records(&stored, &expected);
    let partition = manifest
        .topic("gaps")
        .unwrap()
        .partitions
        .iter()
        .find(|p| p.partition == 1)
        .unwrap();
    assert_eq!(
        partition
            .gaps
            .iter()
            .map(|g| (g.from_offset, g.to_offset))
            .collect::<Vec<_>>(),
        [(1000, 1499)]
    );
    let described = run_ok(&["describe", "--path", root, "--backup-id", "g"]);
    assert!(
        described.contains("1000") && described.contains("1499") && described.to_lowercase().contains("gap"),
        "{described}"
    );
    run_ok(&["validate", "--path", root, "--backup-id", "g", "--deep"]);

    // Restore skips the gap and says so.
    let restored = run_ok(&[
        "restore",
        "--bootstrap-servers",
        &bootstrap,
        "--storage",
        root,
        "--backup-id",
        "g",
        "--topics",
        "gaps",
        "--topic-map",
        "gaps=gaps-restored",
        "--create-topics",
        "--output",
        "json",
    ]);
    let restored: serde_json::Value = serde_json::from_str(&restored).unwrap();
    assert_eq!(restored["records"].as_u64(), Some(stored.len() as u64), "{restored}");
    let copy = consume(&bootstrap, dir.path(), &["gaps-restored"]);
    assert_eq!(copy.len(), stored.len());
}

#[test]
fn classic_and_kip848_groups_resume_exactly_after_a_restore() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    seed_simple(&bootstrap, "grp", 3_000, 3, true);
    let committed: [(&str, &str, [i64; 3]); 2] = [
        ("old-style", "classic", [100, 999, 0]),
        ("new-style", "consumer", [7, 0, 1000]),
    ];
    for (group, protocol, offsets) in &committed {
        let specs: Vec<String> = offsets
            .iter()
            .enumerate()
            .map(|(p, o)| format!("grp:{p}={o}"))
            .collect();
        let mut args = vec!["member-commit", &bootstrap, group, protocol, "grp"];
        args.extend(specs.iter().map(String::as_str));
        kbs_testkit::run_script("groups.py", &args);
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root = root.to_str().unwrap();
    run_ok(&[
        "backup",
        "--bootstrap-servers",
        &bootstrap,
        "--storage",
        root,
        "--backup-id",
        "cg",
        "--consumer-groups",
        "-q",
    ]);
    let source = consume(&bootstrap, dir.path(), &["grp"]);
    let out = run_ok(&[
        "restore",
        "--bootstrap-servers",
        &bootstrap,
        "--storage",
        root,
        "--backup-id",
        "cg",
        "--topic-map",
        "grp=grp-r",
        "--create-topics",
        "--consumer-groups",
        "old-style,new-style",
    ]);
    assert!(
        out.contains("group new-style: grp/2@1000 -> grp-r/2@1000 committed"),
        "{out}"
    );
    // Each group, as a subscribed member with its own protocol, reads from the restored topic
    // exactly what it had not consumed.
    for (group, protocol, offsets) in &committed {
        let path = dir.path().join(format!("{group}.jsonl"));
        kbs_testkit::run_script(
            "groups.py",
            &[
                "member-read",
                &bootstrap,
                group,
                protocol,
                path.to_str().unwrap(),
                "grp-r",
            ],
        );
        let read: Vec<(i32, Option<String>)> = read_consumed(&path).into_iter().map(|r| (r.1, r.5)).collect();
        let expected: Vec<(i32, Option<String>)> = source
            .iter()
            .filter(|r| r.2 >= offsets[r.1 as usize])
            .map(|r| (r.1, r.5.clone()))
            .collect();
        assert_eq!(read.len(), expected.len(), "group {group} ({protocol})");
        assert!(read == expected, "group {group} ({protocol}) read other records");
    }
}

#[test]
fn a_snapshot_ends_where_the_log_ended_at_start_while_a_producer_keeps_writing() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    seed_simple(&bootstrap, "busy", 3_000, 3, true);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let root = root.to_str().unwrap();
    // A producer that keeps writing during the whole backup.
    let mut producer = kbs_testkit::python_command(&kbs_testkit::script("seed.py"))
        .args([
            bootstrap.as_str(),
            "simple",
            "busy",
            "600000",
            "3",
            "--value-size",
            "50",
            "--no-create",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    eventually("the producer is writing", Duration::from_secs(30), || {
        watermarks(&bootstrap, "busy").values().map(|w| w.1).sum::<i64>() > 3_000
    });
    let before = watermarks(&bootstrap, "busy");
    run_ok(&[
        "backup",
        "--bootstrap-servers",
        &bootstrap,
        "--storage",
        root,
        "--backup-id",
        "busy",
        "--topics",
        "busy",
        "-q",
    ]);
    let after = watermarks(&bootstrap, "busy");
    assert!(
        producer.try_wait().unwrap().is_none(),
        "the producer still writes when the snapshot is complete"
    );
    producer.kill().unwrap();
    producer.wait().unwrap();
    let (manifest, stored) = read_stored(root, "busy");
    assert!(manifest.is_complete());
    let source = consume(&bootstrap, dir.path(), &["busy"]);
    let ends = last_offsets(&stored);
    for (partition, (_, high_before)) in &before {
        let end = ends[&("busy".to_owned(), *partition)] + 1;
        assert!(
            (*high_before..=after[partition].1).contains(&end),
            "partition {partition}: the snapshot ends at {end}, the log ended at {high_before} before it and {} after",
            after[partition].1
        );
    }
    // What is stored is exactly the consumer's view up to each snapshot end.
    let prefix: Vec<Row> = source
        .into_iter()
        .filter(|r| r.2 <= ends[&(r.0.clone(), r.1)])
        .collect();
    assert_same_records(&stored, &prefix);
    run_ok(&["validate", "--path", root, "--backup-id", "busy", "--deep"]);
}
