//! The documented examples (`tests/data`, reproduced in `docs/MANIFEST.md`) parse,
//! validate and re-serialise with the same fields and values.

use std::collections::BTreeMap;

use kbs_manifest::{
    BackupId, BackupStatus, Checkpoint, CommittedOffset, Compression, CompressionAlgorithm, Crc64, Gap, Manifest,
    ManifestBuilder, ManifestError, SegmentFile, SegmentName, SourceCluster, TopicName, UtcTimestamp,
};
use serde_json::Value;

const DOCUMENTED: &[u8] = include_bytes!("data/manifest-documented.json");
const FULL: &[u8] = include_bytes!("data/manifest-full.json");
const CHECKPOINT: &[u8] = include_bytes!("data/checkpoint.json");

fn value(json: &[u8]) -> Value {
    serde_json::from_slice(json).unwrap()
}

#[test]
fn documented_manifest_round_trips() {
    let manifest = Manifest::from_json(DOCUMENTED).unwrap();
    assert_eq!(value(&manifest.to_json_pretty()), value(DOCUMENTED));
    assert_eq!(manifest.to_json_pretty(), DOCUMENTED, "byte-identical");
    assert!(manifest.validate().is_empty(), "{:?}", manifest.validate());
    assert!(manifest.is_complete());
    assert_eq!(manifest.status, None);
    assert_eq!(manifest.consumer_groups, None);
    let orders = manifest.topic("orders").unwrap();
    assert_eq!(orders.partition_count, None);
    assert_eq!(orders.configs, None);
    assert!(orders.partition(1).unwrap().segment_files.is_empty());
}

#[test]
fn full_manifest_round_trips() {
    let manifest = Manifest::from_json(FULL).unwrap();
    assert_eq!(value(&manifest.to_json_pretty()), value(FULL));
    assert_eq!(manifest.to_json_pretty(), FULL, "byte-identical");
    assert!(manifest.validate().is_empty(), "{:?}", manifest.validate());
    assert_eq!(manifest.status, Some(BackupStatus::Complete));
    let segment = &manifest.topic("orders").unwrap().partition(0).unwrap().segment_files[0];
    assert_eq!(segment.crc64, Crc64(0x995d_c9bb_df19_39fa));
    assert_eq!(manifest.created_at.unix_millis(), 1_795_241_984_123);
}

#[test]
fn checkpoint_round_trips() {
    let checkpoint = Checkpoint::from_json(CHECKPOINT).unwrap();
    assert_eq!(value(&checkpoint.to_json_pretty()), value(CHECKPOINT));
    assert_eq!(checkpoint.to_json_pretty(), CHECKPOINT, "byte-identical");
    let position = checkpoint.position("orders", 0).unwrap();
    assert_eq!(position.offset, 1499);
    assert_eq!(position.segment, SegmentName::new(1));
    assert_eq!(position.segment_offset, 24_577);
}

/// The full example minus its additive fields is the documented example.
#[test]
fn full_example_extends_documented_example() {
    let mut full = value(FULL);
    let top = full.as_object_mut().unwrap();
    top.remove("status");
    top.remove("consumer_groups");
    for topic in top["topics"].as_array_mut().unwrap() {
        let topic = topic.as_object_mut().unwrap();
        topic.remove("partition_count");
        topic.remove("configs");
        for partition in topic["partitions"].as_array_mut().unwrap() {
            let partition = partition.as_object_mut().unwrap();
            partition.remove("segment_files");
            partition.remove("gaps");
        }
    }
    assert_eq!(full, value(DOCUMENTED));
}

fn ts(text: &str) -> UtcTimestamp {
    text.parse().unwrap()
}

#[allow(clippy::too_many_arguments)]
fn segment(
    sequence: u64,
    first_offset: i64,
    last_offset: i64,
    records: u64,
    min_timestamp: i64,
    max_timestamp: i64,
    size_bytes: u64,
    uncompressed_bytes: u64,
    crc64: u64,
) -> SegmentFile {
    SegmentFile {
        name: SegmentName::new(sequence),
        first_offset,
        last_offset,
        records,
        min_timestamp,
        max_timestamp,
        size_bytes,
        uncompressed_bytes,
        crc64: Crc64(crc64),
    }
}

/// The builder, fed the same segments, produces the full example exactly.
#[test]
fn builder_reproduces_full_example() -> Result<(), ManifestError> {
    let mut builder = ManifestBuilder::new(
        BackupId::new("nightly-2026-11-21")?,
        ts("2026-11-21T06:19:44.123Z"),
        SourceCluster {
            cluster_id: "MkU3OEVBNTcwNTJENDM2Qk".into(),
            bootstrap_servers: vec!["kafka-1.example.com:9092".into(), "kafka-2.example.com:9092".into()],
        },
        Compression {
            algorithm: CompressionAlgorithm::Zstd,
            level: 3,
        },
    );
    let orders = TopicName::new("orders")?;
    let payments = TopicName::new("payments")?;
    // Added out of order on purpose: the builder sorts.
    builder.add_topic(
        payments.clone(),
        1,
        BTreeMap::from([("cleanup.policy".into(), "compact".into())]),
    )?;
    builder.add_topic(
        orders.clone(),
        3,
        BTreeMap::from([
            ("cleanup.policy".into(), "delete".into()),
            ("retention.ms".into(), "604800000".into()),
        ]),
    )?;
    builder.add_gap(
        &orders,
        1,
        Gap {
            from_offset: 0,
            to_offset: 249,
            reason: Gap::RETENTION.into(),
        },
    )?;
    builder.add_segment(
        &orders,
        1,
        segment(
            0,
            250,
            1049,
            800,
            1_795_237_512_000,
            1_795_239_050_000,
            38_911,
            128_000,
            0x5e1f_00c2_7a9d_4b38,
        ),
    )?;
    builder.add_segment(
        &payments,
        0,
        segment(
            0,
            0,
            119,
            100,
            1_795_236_800_000,
            1_795_239_900_000,
            6_021,
            16_000,
            0xc4d2_e6f8_0a1b_3c5d,
        ),
    )?;
    builder.add_segment(
        &orders,
        0,
        segment(
            0,
            0,
            999,
            1000,
            1_795_237_000_000,
            1_795_238_200_000,
            48_213,
            160_000,
            0x995d_c9bb_df19_39fa,
        ),
    )?;
    let in_progress = builder.build_in_progress();
    assert_eq!(in_progress.status, Some(BackupStatus::InProgress));
    assert!(in_progress.validate().is_empty());

    // Resume from the in-progress manifest, as after a restart.
    let mut builder = ManifestBuilder::from_manifest(&Manifest::from_json(&in_progress.to_json_pretty())?)?;
    assert_eq!(builder.last_segment("orders", 0).map(|s| s.last_offset), Some(999));
    builder.add_segment(
        &orders,
        0,
        segment(
            1,
            1000,
            1499,
            500,
            1_795_238_199_000,
            1_795_239_100_500,
            24_577,
            80_000,
            0x0b7a_1c2d_3e4f_5061,
        ),
    )?;
    builder.set_consumer_groups(BTreeMap::from([(
        "billing-service".into(),
        BTreeMap::from([(
            orders.clone(),
            BTreeMap::from([
                (
                    0,
                    CommittedOffset {
                        offset: 1500,
                        metadata: String::new(),
                    },
                ),
                (
                    1,
                    CommittedOffset {
                        offset: 1000,
                        metadata: "instance-7".into(),
                    },
                ),
            ]),
        )]),
    )]));
    let complete = builder.build_complete(ts("2026-11-21T06:25:02.481Z"))?;
    assert_eq!(complete, Manifest::from_json(FULL)?);
    assert_eq!(complete.to_json_pretty(), FULL);
    Ok(())
}

#[test]
fn plain_manifest_cannot_be_resumed() {
    let err = ManifestBuilder::from_manifest(&Manifest::from_json(DOCUMENTED).unwrap()).unwrap_err();
    assert!(
        matches!(&err, ManifestError::MissingSegmentFiles { topic, partition: 0, segments: 2 } if topic.as_str() == "orders"),
        "{err}"
    );
}

#[test]
fn full_manifest_resumes_unchanged() {
    let manifest = Manifest::from_json(FULL).unwrap();
    let rebuilt = ManifestBuilder::from_manifest(&manifest)
        .unwrap()
        .build_complete(manifest.completed_at.clone().unwrap())
        .unwrap();
    assert_eq!(rebuilt, manifest);
}

/// `docs/MANIFEST.md` reproduces the three examples verbatim (when the crate is built
/// inside the workspace, where the document lives).
#[test]
fn docs_contain_examples_verbatim() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/MANIFEST.md");
    let Ok(docs) = std::fs::read_to_string(&path) else {
        assert!(!path.parent().unwrap().exists(), "cannot read {}", path.display());
        return;
    };
    for (name, example) in [
        ("manifest-documented.json", DOCUMENTED),
        ("manifest-full.json", FULL),
        ("checkpoint.json", CHECKPOINT),
    ] {
        let example = std::str::from_utf8(example).unwrap();
        assert!(
            docs.contains(example),
            "docs/MANIFEST.md does not contain tests/data/{name} verbatim"
        );
    }
}
