//! `kbs backup` round trips, resume, fencing, crash safety and validation.

use crate::harness::*;

#[test]
fn varied_dataset_round_trips_to_filesystem_and_s3_byte_for_byte() {
    let Some(kafka) = kbs_testkit::KafkaCluster::start() else {
        return;
    };
    let Some(moto) = kbs_testkit::Moto::start() else { return };
    moto.create_bucket("backups");
    let bootstrap = kafka.bootstrap();
    let seeded = kbs_testkit::run_script("seed.py", &[&bootstrap, "varied"]);
    let seeded: serde_json::Value = serde_json::from_slice(&seeded.stdout).unwrap();
    let topics: Vec<String> = seeded["topics"].as_object().unwrap().keys().cloned().collect();
    assert!(topics.len() >= 10, "{topics:?}");
    assert!(seeded["records"].as_u64().unwrap() >= 200_000);
    let dir = tempfile::tempdir().unwrap();
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    let source = consume(&bootstrap, dir.path(), &topic_refs);
    assert!(source.len() >= 200_000, "the consumer read {} records", source.len());

    // Filesystem (a plain path), lz4, small segments so partitions span several.
    let fs_root = dir.path().join("store");
    let fs_url = fs_root.to_str().unwrap();
    let out = run_ok(&[
        "backup",
        "--bootstrap-servers",
        &bootstrap,
        "--storage",
        fs_url,
        "--backup-id",
        "full",
        "--topics",
        "v-*",
        "--compression",
        "lz4",
        "--segment-max-bytes",
        "4M",
        "--output",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["records"].as_u64().unwrap(), source.len() as u64, "{out}");
    let rt = rt();
    let fs = rt.block_on(open_storage(fs_url, None));
    let (manifest, stored) = rt.block_on(read_backup(&fs, "full"));
    assert_same_records(&stored, &source);
    // Topic configs and partition counts, including the empty topic.
    let compacted = manifest.topic("v-compacted").unwrap();
    assert_eq!(
        compacted
            .configs
            .as_ref()
            .unwrap()
            .get("cleanup.policy")
            .map(String::as_str),
        Some("compact")
    );
    let empty = manifest.topic("v-empty").unwrap();
    assert_eq!(empty.partition_count, Some(3));
    assert!(empty.partitions.is_empty());
    assert_eq!(manifest.topic("v-mixed").unwrap().partition_count, Some(4));
    assert!(manifest.validate().is_empty(), "{:?}", manifest.validate());
    run_ok(&["validate", "--path", fs_url, "--backup-id", "full", "--deep"]);

    // S3 (moto), zstd with per-record CRCs.
    let endpoint = moto.endpoint();
    let s3 = [
        "--storage",
        "s3://backups/kafka",
        "--s3-endpoint",
        &endpoint,
        "--s3-allow-http",
        "--s3-path-style",
        "--s3-region",
        "us-east-1",
    ];
    let mut args = vec![
        "backup",
        "--bootstrap-servers",
        &bootstrap,
        "--backup-id",
        "s3full",
        "--topics",
        "v-*",
        "--per-record-crc",
    ];
    args.extend_from_slice(&s3);
    let out = kbs()
        .args(&args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s3_storage = rt.block_on(open_storage("s3://backups/kafka", Some(&endpoint)));
    let (_, stored) = rt.block_on(read_backup(&s3_storage, "s3full"));
    assert_same_records(&stored, &source);
    let mut validate = vec!["validate", "--backup-id", "s3full", "--deep"];
    validate.extend_from_slice(&s3);
    let out = kbs()
        .args(&validate)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}
