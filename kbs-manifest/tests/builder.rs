//! `ManifestBuilder`: derivation and refusals.

use std::collections::BTreeMap;

use kbs_manifest::{
    BackupId, BackupStatus, Compression, CompressionAlgorithm, Crc64, Gap, Manifest, ManifestBuilder, ManifestError,
    ProblemKind, SegmentFile, SegmentName, SourceCluster, TimeRange, TopicName, UtcTimestamp,
};

fn topic(name: &str) -> TopicName {
    TopicName::new(name).unwrap()
}

fn builder() -> ManifestBuilder {
    let mut builder = ManifestBuilder::new(
        BackupId::new("b1").unwrap(),
        UtcTimestamp::from_unix_millis(1_000_000).unwrap(),
        SourceCluster {
            cluster_id: "c".into(),
            bootstrap_servers: vec!["k:9092".into()],
        },
        Compression {
            algorithm: CompressionAlgorithm::Lz4,
            level: 1,
        },
    );
    builder.add_topic(topic("t"), 2, BTreeMap::new()).unwrap();
    builder
}

fn segment(sequence: u64, first_offset: i64, last_offset: i64) -> SegmentFile {
    SegmentFile {
        name: SegmentName::new(sequence),
        first_offset,
        last_offset,
        records: u64::try_from(last_offset - first_offset + 1).unwrap(),
        min_timestamp: first_offset * 10,
        max_timestamp: last_offset * 10,
        size_bytes: 100,
        uncompressed_bytes: 400,
        crc64: Crc64(sequence),
    }
}

fn rejected_kind(result: Result<(), ManifestError>) -> ProblemKind {
    match result {
        Err(ManifestError::Rejected { problem }) => problem.kind,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn empty_backup() {
    let manifest = builder().build_in_progress();
    assert_eq!(manifest.statistics.topics, 1);
    assert_eq!(manifest.statistics.partitions, 0);
    assert_eq!(manifest.time_range, None);
    assert_eq!(manifest.topics[0].partitions, vec![]);
    assert_eq!(manifest.topics[0].partition_count, Some(2));
    assert_eq!(manifest.topics[0].configs, Some(BTreeMap::new()));
    assert_eq!(manifest.validate(), vec![]);
    let json = String::from_utf8(manifest.to_json_pretty()).unwrap();
    assert!(!json.contains("time_range") && !json.contains("completed_at"), "{json}");
    assert_eq!(Manifest::from_json(json.as_bytes()).unwrap(), manifest);
}

#[test]
fn derives_statistics_and_time_range() {
    let mut builder = builder();
    let t = topic("t");
    builder.add_segment(&t, 1, segment(0, 10, 19)).unwrap();
    builder.add_segment(&t, 1, segment(1, 20, 24)).unwrap();
    let mut late = segment(0, 0, 4);
    late.min_timestamp = -1; // Kafka's "no timestamp"
    builder.add_segment(&t, 0, late).unwrap();
    let manifest = builder.build_in_progress();
    assert_eq!(manifest.statistics.partitions, 2);
    assert_eq!(manifest.statistics.segments, 3);
    assert_eq!(manifest.statistics.records, 20);
    assert_eq!(manifest.statistics.compressed_bytes, 300);
    assert_eq!(manifest.statistics.uncompressed_bytes, 1200);
    assert_eq!(
        manifest.time_range,
        Some(TimeRange {
            earliest_timestamp: -1,
            latest_timestamp: 240
        })
    );
    let partition = manifest.topics[0].partition(1).unwrap();
    assert_eq!(
        (
            partition.first_offset,
            partition.last_offset,
            partition.records,
            partition.segments
        ),
        (10, 24, 15, 2)
    );
    assert_eq!(manifest.topics[0].partitions[0].partition, 0);
    assert_eq!(manifest.validate(), vec![]);
}

#[test]
fn statuses() {
    let builder = builder();
    assert_eq!(builder.build_in_progress().status, Some(BackupStatus::InProgress));
    let failed = builder.build_failed();
    assert_eq!(
        (failed.status, failed.completed_at.clone()),
        (Some(BackupStatus::Failed), None)
    );
    assert_eq!(failed.validate(), vec![]);
    let done = builder
        .build_complete(UtcTimestamp::from_unix_millis(1_000_000).unwrap())
        .unwrap();
    assert!(done.is_complete());
    assert_eq!(done.validate(), vec![]);
    let early = builder
        .build_complete(UtcTimestamp::from_unix_millis(999_999).unwrap())
        .unwrap_err();
    assert!(
        matches!(early, ManifestError::Rejected { problem } if matches!(problem.kind, ProblemKind::CompletedBeforeCreated { .. }))
    );
}

#[test]
fn refuses_unknown_topic_and_partition_out_of_range() {
    let mut builder = builder();
    assert!(matches!(
        builder.add_segment(&topic("other"), 0, segment(0, 0, 0)),
        Err(ManifestError::UnknownTopic { topic }) if topic.as_str() == "other"
    ));
    for partition in [-1, 2, i32::MAX] {
        assert!(matches!(
            builder.add_segment(&topic("t"), partition, segment(0, 0, 0)),
            Err(ManifestError::PartitionOutOfRange { partition: p, partition_count: 2, .. }) if p == partition
        ));
        assert!(
            builder
                .add_gap(
                    &topic("t"),
                    partition,
                    Gap {
                        from_offset: 0,
                        to_offset: 0,
                        reason: "x".into()
                    }
                )
                .is_err()
        );
    }
    assert_eq!(builder.build_in_progress().statistics.partitions, 0);
}

#[test]
fn refuses_overlapping_or_backward_segments() {
    let mut builder = builder();
    let t = topic("t");
    builder.add_segment(&t, 0, segment(0, 0, 9)).unwrap();
    assert!(matches!(
        rejected_kind(builder.add_segment(&t, 0, segment(1, 9, 19))),
        ProblemKind::SegmentOverlap {
            first_offset: 9,
            previous_last_offset: 9
        }
    ));
    assert!(matches!(
        rejected_kind(builder.add_segment(&t, 0, segment(1, 0, 5))),
        ProblemKind::SegmentOverlap { .. }
    ));
    assert!(matches!(
        rejected_kind(builder.add_segment(&t, 0, segment(0, 10, 19))),
        ProblemKind::SegmentNameOutOfOrder { .. }
    ));
    // Refusals leave the builder unchanged; the right segment is still accepted.
    builder.add_segment(&t, 0, segment(1, 10, 19)).unwrap();
    // Sequence numbers may skip; offsets may skip (compaction).
    builder.add_segment(&t, 0, segment(5, 30, 39)).unwrap();
    assert_eq!(builder.last_segment("t", 0).unwrap().name, SegmentName::new(5));
    assert_eq!(builder.build_in_progress().validate(), vec![]);
}

#[test]
fn refuses_inconsistent_segments() {
    let mut builder = builder();
    let t = topic("t");
    let mut bad = segment(0, 5, 4);
    assert!(matches!(
        rejected_kind(builder.add_segment(&t, 0, bad.clone())),
        ProblemKind::OffsetRangeInverted { .. }
    ));
    bad = segment(0, -2, 4);
    assert!(matches!(
        rejected_kind(builder.add_segment(&t, 0, bad)),
        ProblemKind::NegativeOffset { .. }
    ));
    bad = segment(0, 0, 4);
    bad.records = 6;
    assert!(matches!(
        rejected_kind(builder.add_segment(&t, 0, bad.clone())),
        ProblemKind::RecordCountImpossible { .. }
    ));
    bad.records = 0;
    assert!(matches!(
        rejected_kind(builder.add_segment(&t, 0, bad)),
        ProblemKind::RecordCountImpossible { .. }
    ));
    bad = segment(0, 0, 4);
    bad.min_timestamp = bad.max_timestamp + 1;
    let err = builder.add_segment(&t, 0, bad).unwrap_err();
    assert_eq!(
        err.to_string(),
        "manifest builder refused the change: topic t partition 0 segment-00000000.kbs: \
         smallest timestamp 41 is greater than largest timestamp 40"
    );
}

#[test]
fn gaps() {
    let mut builder = builder();
    let t = topic("t");
    let gap = |from_offset, to_offset| Gap {
        from_offset,
        to_offset,
        reason: Gap::RETENTION.into(),
    };
    builder.add_gap(&t, 1, gap(0, 99)).unwrap();
    // Gap only: listed, empty range starting at the gap.
    let manifest = builder.build_in_progress();
    let partition = manifest.topics[0].partition(1).unwrap();
    assert_eq!(
        (
            partition.first_offset,
            partition.last_offset,
            partition.records,
            partition.segments
        ),
        (0, -1, 0, 0)
    );
    assert_eq!(manifest.statistics.partitions, 1);
    assert_eq!(manifest.validate(), vec![]);
    assert!(matches!(
        rejected_kind(builder.add_gap(&t, 1, gap(99, 120))),
        ProblemKind::GapOverlap { .. }
    ));
    assert!(matches!(
        rejected_kind(builder.add_segment(&t, 1, segment(0, 50, 150))),
        ProblemKind::SegmentOverlap { .. }
    ));
    assert!(matches!(
        rejected_kind(builder.add_gap(&t, 0, gap(5, 4))),
        ProblemKind::GapInverted { .. }
    ));
    assert!(matches!(
        rejected_kind(builder.add_gap(&t, 0, gap(-5, 4))),
        ProblemKind::NegativeOffset { .. }
    ));
    builder.add_segment(&t, 1, segment(0, 100, 149)).unwrap();
    builder.add_gap(&t, 1, gap(150, 199)).unwrap();
    builder.add_segment(&t, 1, segment(1, 200, 209)).unwrap();
    let manifest = builder.build_in_progress();
    let partition = manifest.topics[0].partition(1).unwrap();
    assert_eq!(
        (partition.first_offset, partition.last_offset, partition.records),
        (100, 209, 60)
    );
    assert_eq!(partition.gaps.len(), 2);
    assert_eq!(manifest.validate(), vec![]);
    let resumed = ManifestBuilder::from_manifest(&manifest).unwrap();
    assert_eq!(resumed.build_in_progress(), manifest);
}

#[test]
fn add_topic_updates_but_cannot_orphan_partitions() {
    let mut builder = builder();
    let t = topic("t");
    builder.add_segment(&t, 1, segment(0, 0, 0)).unwrap();
    builder
        .add_topic(t.clone(), 4, BTreeMap::from([("retention.ms".into(), "1000".into())]))
        .unwrap();
    let manifest = builder.build_in_progress();
    assert_eq!(manifest.topics[0].partition_count, Some(4));
    assert_eq!(manifest.statistics.segments, 1, "segments kept");
    assert!(matches!(
        builder.add_topic(t, 1, BTreeMap::new()),
        Err(ManifestError::PartitionOutOfRange {
            partition: 1,
            partition_count: 1,
            ..
        })
    ));
}

#[test]
fn from_manifest_refuses_inconsistent_manifest() {
    let mut manifest = builder().build_in_progress();
    manifest.statistics.records = 5;
    let err = ManifestBuilder::from_manifest(&manifest).unwrap_err();
    assert!(
        matches!(&err, ManifestError::Inconsistent { problems } if problems.len() == 1),
        "{err}"
    );
    assert!(err.to_string().contains("statistics.records is 5"), "{err}");
}

#[test]
fn topics_come_out_sorted() {
    let mut builder = builder();
    for name in ["z", "a", "m", "A", "_"] {
        builder.add_topic(topic(name), 1, BTreeMap::new()).unwrap();
    }
    let names: Vec<String> = builder
        .build_in_progress()
        .topics
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(names, ["A", "_", "a", "m", "t", "z"]);
}
