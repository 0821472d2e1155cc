//! `kbs export`, on the filesystem and on S3 (moto), of an encrypted backup: envelope JSON Lines
//! that equal what an independent consumer reads, field by field (null keys, empty keys,
//! tombstones, duplicate and null headers, binary values); names that sort by offset; a resumed
//! export that writes only what is missing, byte for byte the same; options that cannot change
//! mid-export; no export without the key; time windows.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use std::sync::Arc;

use kbs_storage::{ObjectStorage, ObjectStorageExt as _};

use crate::harness::*;
use crate::lifecycle::Store;

/// An envelope field back as base64 (the consumer's rows hold bytes as base64).
fn as_base64(value: &serde_json::Value, bytes_mode: bool) -> Option<String> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) if bytes_mode => Some(s.clone()),
        serde_json::Value::String(s) => Some(B64.encode(s.as_bytes())),
        serde_json::Value::Object(o) => Some(o["base64"].as_str().expect("base64 fallback").to_owned()),
        other => panic!("unexpected envelope field {other}"),
    }
}

/// Every exported object under `prefix` of `storage`: key (relative to the prefix) → bytes.
fn objects(storage: &Arc<dyn ObjectStorage>, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    rt().block_on(async {
        let mut found = BTreeMap::new();
        for meta in storage.list_all(prefix).await.unwrap() {
            let bytes = storage.get(&meta.key).await.unwrap().bytes.to_vec();
            found.insert(meta.key[prefix.len()..].to_owned(), bytes);
        }
        found
    })
}

/// The exported records as consumer rows, checking each object's name and size on the way.
fn exported_rows(storage: &Arc<dyn ObjectStorage>, prefix: &str, flush_records: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    for (key, bytes) in objects(storage, prefix) {
        if key == "_kbs_export.json" {
            continue;
        }
        let (dir, name) = key
            .rsplit_once("/")
            .unwrap_or_else(|| panic!("unexpected object {key}"));
        let (topic, partition) = dir.split_once('/').unwrap_or_else(|| panic!("unexpected object {key}"));
        let first: i64 = name.strip_suffix(".jsonl").unwrap().parse().unwrap();
        assert_eq!(name.len(), 20 + 6, "{key}: offsets are zero-padded to 20 digits");
        let lines: Vec<&str> = std::str::from_utf8(&bytes).unwrap().lines().collect();
        assert!(
            !lines.is_empty() && lines.len() <= flush_records,
            "{key}: {} lines",
            lines.len()
        );
        for (i, line) in lines.iter().enumerate() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let m = &v["metadata"];
            assert_eq!(
                (m["topic"].as_str().unwrap(), m["partition"].to_string()),
                (topic, partition.to_string())
            );
            assert_eq!(m["timestamp_type"], "CreateTime");
            if i == 0 {
                assert_eq!(
                    m["offset"].as_i64().unwrap(),
                    first,
                    "{key}: named after its first offset"
                );
            }
            rows.push((
                topic.to_owned(),
                m["partition"].as_i64().unwrap() as i32,
                m["offset"].as_i64().unwrap(),
                m["timestamp"].as_i64().unwrap(),
                as_base64(&v["key"], false),
                as_base64(&v["value"], true),
                v["headers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| (as_base64(&h["key"], false).unwrap(), as_base64(&h["value"], false)))
                    .collect(),
            ));
        }
    }
    rows.sort();
    rows
}

#[test]
fn exports_equal_the_consumer_field_by_field_and_resume_without_rewriting() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let bootstrap = kafka.bootstrap();
    kbs_testkit::run_script("seed.py", &[&bootstrap, "keyed", "ex", "3000", "3", "--keys", "50"]);
    let dir = tempfile::tempdir().unwrap();
    let source = consume(&bootstrap, dir.path(), &["ex"]);
    assert!(source.iter().any(|r| r.4.is_none()) && source.iter().any(|r| r.4.as_deref() == Some("")));
    assert!(source.iter().any(|r| r.5.is_none()), "tombstones in the dataset");
    let key_file = dir.path().join("ops.key");
    let public = run_ok(&["keygen", key_file.to_str().unwrap()]).trim().to_owned();

    let mut stores = vec![Store::filesystem(dir.path())];
    stores.extend(Store::s3());
    assert_eq!(stores.len(), 2, "moto is part of the test kit");
    for store in &stores {
        // The export goes beside the backups, under export/ (on S3: the same bucket).
        let base = store.args[1].clone();
        let to = format!("{base}/export");
        let prefix = "export/".to_owned();
        store.ok(&[
            "backup",
            "--bootstrap-servers",
            &bootstrap,
            "--backup-id",
            "x",
            "--topics",
            "ex",
            "--encrypt-to",
            &public,
            "-q",
        ]);
        let export = |to: &str, extra: &[&str]| {
            let mut args = vec![
                "export",
                "--backup-id",
                "x",
                "--to",
                to,
                "--key-as",
                "string",
                "--flush-records",
                "400",
                "--identity",
                key_file.to_str().unwrap(),
            ];
            args.extend_from_slice(extra);
            store.run(&args)
        };
        let out = export(&to, &[]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_same_records(&exported_rows(&store.storage, &prefix, 400), &source);
        let first = objects(&store.storage, &prefix);
        assert!(first.len() > 9, "{} objects", first.len());

        // Interrupted: two objects missing. The rerun writes exactly those, byte for byte.
        let missing: Vec<&String> = first
            .keys()
            .filter(|k| k.ends_with(".jsonl"))
            .step_by(4)
            .take(2)
            .collect();
        for key in &missing {
            rt().block_on(store.storage.delete(&format!("{prefix}{key}"))).unwrap();
        }
        let out = export(&to, &[]);
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("(2 written now,"), "{said}");
        assert_eq!(
            objects(&store.storage, &prefix),
            first,
            "a resumed export differs from the first"
        );

        // Other options into the same place are refused; nothing is touched.
        let out = export(&to, &["--value-as", "string"]);
        assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("other options"));
        assert_eq!(objects(&store.storage, &prefix), first);

        // An encrypted backup is not exported without its key.
        let out = store.run(&["export", "--backup-id", "x", "--to", &format!("{base}/nokey")]);
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("pass --identity"));

        // A time window: exactly the records inside it.
        let mut stamps: Vec<i64> = source.iter().map(|r| r.3).collect();
        stamps.sort();
        let (start, end) = (stamps[stamps.len() / 4], stamps[stamps.len() / 2]);
        let out = export(
            &format!("{base}/window"),
            &["--start-time", &start.to_string(), "--end-time", &end.to_string()],
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let inside: Vec<Row> = source.iter().filter(|r| r.3 >= start && r.3 <= end).cloned().collect();
        assert_same_records(&exported_rows(&store.storage, "window/", 400), &inside);
    }
}
