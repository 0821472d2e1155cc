//! `kbs export` in every format, read back by independent readers (DuckDB for Parquet, with
//! Hive partition columns; fastavro for Avro; Python's csv, gzip and json), each compared
//! field by field with a confluent-kafka consumer's records; exports that resume byte for
//! byte; and `kbs import` of the exports into new topics, through SIGKILLs, exactly once.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::harness::*;
use crate::restore::kill_while_producing_then_finish;

/// The export under `dir` as rows, read by `read_export.py`.
fn read_back(format: &str, dir: &Path, hive: bool) -> Vec<Row> {
    let out = dir.with_extension("rows.jsonl");
    let mut args = vec![format, dir.to_str().unwrap(), out.to_str().unwrap()];
    if hive {
        args.push("--hive");
    }
    kbs_testkit::run_script("read_export.py", &args);
    read_consumed(&out)
}

/// Every file under `dir`: path relative to it → bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(next).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().unwrap().to_str().unwrap().starts_with(".kbs-") {
                continue; // the filesystem store's own bookkeeping
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().to_str().unwrap().to_owned();
                found.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    found
}

#[test]
fn every_format_reads_back_in_independent_readers_and_imports_exactly_once() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    kbs_testkit::run_script("seed.py", &[&bootstrap, "keyed", "ef", "3000", "3", "--keys", "50"]);
    let dir = tempfile::tempdir().unwrap();
    let source = consume(&bootstrap, dir.path(), &["ef"]);
    let root = dir.path().join("backups");
    let root = root.to_str().unwrap();
    run_ok(&[
        "backup",
        "--bootstrap-servers",
        &bootstrap,
        "--storage",
        root,
        "--backup-id",
        "f",
        "--topics",
        "ef",
        "-q",
    ]);
    let export = |name: &str, extra: &[&str]| {
        let to = dir.path().join("exports").join(name);
        let mut args = vec![
            "export",
            "--storage",
            root,
            "--backup-id",
            "f",
            "--to",
            to.to_str().unwrap(),
            "--flush-records",
            "400",
        ];
        args.extend_from_slice(extra);
        let said = run_ok(&args);
        (to, said)
    };

    // Each format, read by its independent reader, equals the consumer's records.
    let cases: &[(&str, &str, &[&str])] = &[
        ("parquet-bytes", "parquet", &["--format", "parquet"]),
        (
            "parquet-text",
            "parquet",
            &[
                "--format",
                "parquet",
                "--compression",
                "zstd",
                "--key-as",
                "string",
                "--value-as",
                "json",
            ],
        ),
        ("avro", "avro", &["--format", "avro", "--key-as", "string"]),
        (
            "avro-deflate",
            "avro",
            &["--format", "avro", "--compression", "deflate"],
        ),
        (
            "csv",
            "csv",
            &["--format", "csv", "--compression", "gzip", "--key-as", "string"],
        ),
        ("jsonl", "jsonl", &["--format", "jsonl", "--value-as", "string"]),
    ];
    for (name, format, extra) in cases {
        let (to, _) = export(name, extra);
        let rows = read_back(format, &to, false);
        assert_same_records(&rows, &source);
    }

    // A memory budget below one partition's needs is refused before anything is written.
    let tight = dir.path().join("exports").join("tight");
    let out = run(&[
        "export",
        "--storage",
        root,
        "--backup-id",
        "f",
        "--to",
        tight.to_str().unwrap(),
        "--memory-budget",
        "1M",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lower --flush-bytes"));

    // Hive folders: DuckDB reads partition and date as columns, equal to each record's own.
    let (hive, _) = export(
        "hive",
        &["--format", "parquet", "--partition-by", "_partition,date", "--hive"],
    );
    let names = files(&hive);
    assert!(
        names
            .keys()
            .all(|k| k == "_kbs_export.json" || k.starts_with("partition=")),
        "{:?}",
        names.keys().take(3).collect::<Vec<_>>()
    );
    assert!(
        names.keys().any(|k| k.contains("/date=20") && k.contains("/ef+")),
        "{:?}",
        names.keys().take(3).collect::<Vec<_>>()
    );
    assert_same_records(&read_back("parquet", &hive, true), &source);

    // An interrupted export (objects missing) resumes to the same bytes, Parquet and Avro.
    for (name, extra) in [
        ("parquet-bytes", &["--format", "parquet"][..]),
        ("avro", &["--format", "avro", "--key-as", "string"][..]),
    ] {
        let to = dir.path().join("exports").join(name);
        let before = files(&to);
        for key in before.keys().filter(|k| !k.starts_with('_')).step_by(3).take(3) {
            std::fs::remove_file(to.join(key)).unwrap();
        }
        let (_, said) = export(name, extra);
        assert!(said.contains("(3 written now,"), "{name}: {said}");
        assert_eq!(files(&to), before, "{name}: a resumed export differs from the first");
    }

    // Import each kind back into new topics: the records equal the source's, offsets included.
    let staging = dir.path().join("staging");
    let staging = staging.to_str().unwrap();
    let import = |from: &Path, format: &str, target: &str, extra: &[&str]| {
        let topic_map = format!("ef={target}");
        let mut args = vec![
            "import",
            "--from",
            from.to_str().unwrap(),
            "--format",
            format,
            "--storage",
            staging,
        ];
        args.extend_from_slice(&["--bootstrap-servers", &bootstrap, "--topic-map", &topic_map]);
        args.extend_from_slice(extra);
        run(&args)
    };
    for (name, format, target) in [
        ("parquet-text", "parquet", "ef-parquet"),
        ("avro-deflate", "avro", "ef-avro"),
        ("jsonl", "jsonl", "ef-jsonl"),
    ] {
        let out = import(
            &dir.path().join("exports").join(name),
            format,
            target,
            &["--create-topics"],
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("staged 3000 records"), "{said}");
        assert_same_records(&consume(&bootstrap, dir.path(), &[target]), &renamed(&source, target));
    }

    // The Hive layout's objects interleave per partition: merged in offset order. SIGKILLed 3 times
    // while producing, then rerun: every record exactly once.
    kbs_testkit::run_script("kafka_admin.py", &["create-topic", &bootstrap, "ef-killed", "3", "1"]);
    let killed_import = format!(
        "import --from {} --format parquet --storage {staging} --bootstrap-servers {bootstrap} \
         --topic-map ef=ef-killed --max-bytes-per-sec 8K -q",
        hive.display()
    );
    kill_while_producing_then_finish(&bootstrap, &killed_import, "ef-killed", 3, Duration::from_millis(1000));
    assert_same_records(
        &consume(&bootstrap, dir.path(), &["ef-killed"]),
        &renamed(&source, "ef-killed"),
    );

    // The S3 sink connectors' JSON envelope (<topic>/<partition>/<offset>.json, bytes as
    // base64 with a byte-array converter, headers as an object), each partition in two
    // objects that overlap by 50 records (an at-least-once rewrite): each record once.
    let connector = dir.path().join("connector");
    let text = |b64: &str| String::from_utf8(B64.decode(b64).unwrap()).unwrap();
    let mut expected = Vec::new();
    for partition in 0..3 {
        let rows: Vec<&Row> = source.iter().filter(|r| r.1 == partition).collect();
        let half = rows.len() / 2;
        for (from, to) in [(0, half + 50), (half, rows.len())] {
            let folder = connector.join("ef").join(partition.to_string());
            std::fs::create_dir_all(&folder).unwrap();
            let mut lines = String::new();
            for r in &rows[from..to] {
                let headers: serde_json::Map<String, serde_json::Value> =
                    r.6.iter()
                        .map(|(k, v)| {
                            (
                                text(k),
                                v.as_deref().map_or(serde_json::Value::Null, |v| text(v).into()),
                            )
                        })
                        .collect();
                let line = serde_json::json!({"key": r.4, "value": r.5, "headers": headers,
                    "metadata": {"offset": r.2, "partition": r.1, "timestamp": r.3, "topic": "ef"}});
                lines.push_str(&format!("{line}\n"));
            }
            std::fs::write(folder.join(format!("{}.json", rows[from].2)), lines).unwrap();
        }
        for r in rows {
            // An object has no order and one value per name: by name, the last value.
            let mut headers: BTreeMap<String, Option<String>> = BTreeMap::new();
            for (k, v) in &r.6 {
                headers.insert(k.clone(), v.clone());
            }
            let mut headers: Vec<(String, Option<String>)> = headers.into_iter().collect();
            headers.sort_by_key(|(k, _)| text(k));
            let mut r = r.clone();
            r.0 = "ef-connector".into();
            r.6 = headers;
            expected.push(r);
        }
    }
    expected.sort();
    let out = import(
        &connector,
        "jsonl",
        "ef-connector",
        &["--key-as", "bytes", "--value-as", "bytes", "--create-topics"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("staged 3000 records of 6 envelope objects") && said.contains("(150 duplicates"),
        "{said}"
    );
    assert_same_records(&consume(&bootstrap, dir.path(), &["ef-connector"]), &expected);

    // Staging inside --from is refused (the staged backup would be read as envelope objects).
    let out = run(&[
        "import",
        "--from",
        connector.to_str().unwrap(),
        "--format",
        "jsonl",
        "--storage",
        connector.join("staged").to_str().unwrap(),
        "--bootstrap-servers",
        &bootstrap,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));

    // On S3 (moto): a Parquet export in Hive folders, and its import through the store's listing.
    let s3 = crate::lifecycle::Store::s3().expect("moto is part of the test kit");
    s3.ok(&[
        "backup",
        "--bootstrap-servers",
        &bootstrap,
        "--backup-id",
        "f",
        "--topics",
        "ef",
        "-q",
    ]);
    let export_to = "s3://lifecycle/exports/pq";
    s3.ok(&[
        "export",
        "--backup-id",
        "f",
        "--to",
        export_to,
        "--format",
        "parquet",
        "--partition-by",
        "_partition",
        "--hive",
    ]);
    s3.ok(&[
        "import",
        "--from",
        export_to,
        "--format",
        "parquet",
        "--bootstrap-servers",
        &bootstrap,
        "--topic-map",
        "ef=ef-s3",
        "--create-topics",
    ]);
    assert_same_records(&consume(&bootstrap, dir.path(), &["ef-s3"]), &renamed(&source, "ef-s3"));

    // Exports SIGKILLed once their first objects exist (on S3 every object is a request, so
    // the kills land mid-export), then run to the end: the same objects, byte for byte, as
    // one uninterrupted export.
    let objects_under = |prefix: &str| -> BTreeMap<String, Vec<u8>> {
        crate::harness::rt().block_on(async {
            use kbs_storage::ObjectStorageExt as _;
            let mut found = BTreeMap::new();
            for meta in s3.storage.list_all(prefix).await.unwrap() {
                let bytes = s3.storage.get(&meta.key).await.unwrap().bytes.to_vec();
                found.insert(meta.key[prefix.len()..].to_owned(), bytes);
            }
            found
        })
    };
    let count_under = |prefix: &str| {
        use kbs_storage::ObjectStorageExt as _;
        crate::harness::rt()
            .block_on(s3.storage.list_all(prefix))
            .unwrap()
            .len()
    };
    let small = ["--format", "parquet", "--flush-bytes", "4K"];
    let mut reference = vec!["export", "--backup-id", "f", "--to", "s3://lifecycle/kafka/x-reference"];
    reference.extend_from_slice(&small);
    s3.ok(&reference);
    let mut killed = vec!["export", "--backup-id", "f", "--to", "s3://lifecycle/kafka/x-killed"];
    killed.extend_from_slice(&small);
    let mut kills = 0;
    for _ in 0..3 {
        let before = count_under("x-killed/");
        let mut child = s3
            .command(&killed)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while child.try_wait().unwrap().is_none()
            && count_under("x-killed/") <= before + 1
            && start.elapsed() < Duration::from_secs(30)
        {}
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(kills >= 2, "only {kills} exports were still running when killed");
    s3.ok(&killed);
    let (done, expected) = (objects_under("x-killed/"), objects_under("x-reference/"));
    assert_eq!(done.len(), expected.len());
    assert!(
        done == expected,
        "a killed and resumed export differs from an uninterrupted one"
    );

    // A changed source is refused rather than mixed with what was staged.
    let hive_files = files(&hive);
    let victim = hive_files.keys().find(|k| k.ends_with(".parquet")).unwrap();
    std::fs::remove_file(hive.join(victim)).unwrap();
    let out = import(&hive, "parquet", "ef-killed", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("changed since they were staged"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
