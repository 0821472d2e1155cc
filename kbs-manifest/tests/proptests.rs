//! Property tests: arbitrary manifests and checkpoints survive serialise → parse
//! unchanged; builder output is always consistent; no input makes parsing panic.

use std::collections::BTreeMap;

use kbs_manifest::{
    BackupId, BackupStatus, Checkpoint, CommittedOffset, Compression, CompressionAlgorithm, Crc64, Encryption, Gap,
    Manifest, ManifestBuilder, ManifestVersion, PartitionCheckpoint, PartitionEntry, SegmentFile, SegmentName,
    SourceCluster, Statistics, TimeRange, TopicEntry, TopicName, UtcTimestamp, layout,
};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;

const FULL: &[u8] = include_bytes!("data/manifest-full.json");
const CHECKPOINT: &[u8] = include_bytes!("data/checkpoint.json");
const MIN_MILLIS: i64 = -62_167_219_200_000;
const MAX_MILLIS: i64 = 253_402_300_799_999;

fn kafka_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._-]{1,12}".prop_filter("not . or ..", |s| s != "." && s != "..")
}

fn topic_name() -> impl Strategy<Value = TopicName> {
    kafka_name().prop_map(|s| TopicName::new(s).unwrap())
}

fn backup_id() -> impl Strategy<Value = BackupId> {
    kafka_name().prop_map(|s| BackupId::new(s).unwrap())
}

/// Any accepted timestamp text: 0 to 9 fraction digits.
fn utc_timestamp() -> impl Strategy<Value = UtcTimestamp> {
    (MIN_MILLIS..=MAX_MILLIS, "[0-9]{0,9}").prop_map(|(millis, fraction)| {
        let text = UtcTimestamp::from_unix_millis(millis).unwrap().to_string();
        let seconds = &text[..19];
        let text = if fraction.is_empty() {
            format!("{seconds}Z")
        } else {
            format!("{seconds}.{fraction}Z")
        };
        text.parse().unwrap()
    })
}

fn segment_file() -> impl Strategy<Value = SegmentFile> {
    (
        any::<u64>(),
        any::<i64>(),
        any::<i64>(),
        any::<u64>(),
        any::<i64>(),
        any::<i64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(sequence, first, last, records, min_ts, max_ts, size, uncompressed, crc)| SegmentFile {
                name: SegmentName::new(sequence),
                first_offset: first,
                last_offset: last,
                records,
                min_timestamp: min_ts,
                max_timestamp: max_ts,
                size_bytes: size,
                uncompressed_bytes: uncompressed,
                crc64: Crc64(crc),
            },
        )
}

fn gap() -> impl Strategy<Value = Gap> {
    (any::<i64>(), any::<i64>(), any::<String>()).prop_map(|(from_offset, to_offset, reason)| Gap {
        from_offset,
        to_offset,
        reason,
    })
}

fn partition_entry() -> impl Strategy<Value = PartitionEntry> {
    (
        any::<i32>(),
        any::<i64>(),
        any::<i64>(),
        any::<u64>(),
        any::<u64>(),
        vec(segment_file(), 0..3),
        vec(gap(), 0..2),
    )
        .prop_map(
            |(partition, first_offset, last_offset, records, segments, segment_files, gaps)| PartitionEntry {
                partition,
                first_offset,
                last_offset,
                records,
                segments,
                segment_files,
                gaps,
            },
        )
}

fn topic_entry() -> impl Strategy<Value = TopicEntry> {
    (
        topic_name(),
        option::of(any::<u32>()),
        option::of(btree_map(any::<String>(), any::<String>(), 0..3)),
        vec(partition_entry(), 0..3),
    )
        .prop_map(|(name, partition_count, configs, partitions)| TopicEntry {
            name,
            partition_count,
            topic_id: partition_count.map(|c| format!("id-{c}")),
            configs,
            partitions,
        })
}

fn consumer_groups() -> impl Strategy<Value = kbs_manifest::ConsumerGroups> {
    let committed = (any::<i64>(), any::<String>()).prop_map(|(offset, metadata)| CommittedOffset { offset, metadata });
    btree_map(
        any::<String>(),
        btree_map(topic_name(), btree_map(0..=i32::MAX, committed, 0..3), 0..2),
        0..2,
    )
}

fn status() -> impl Strategy<Value = BackupStatus> {
    prop_oneof![
        Just(BackupStatus::InProgress),
        Just(BackupStatus::Complete),
        Just(BackupStatus::Failed)
    ]
}

fn compression() -> impl Strategy<Value = Compression> {
    let algorithm = prop_oneof![
        Just(CompressionAlgorithm::Zstd),
        Just(CompressionAlgorithm::Lz4),
        Just(CompressionAlgorithm::None)
    ];
    (algorithm, any::<i32>()).prop_map(|(algorithm, level)| Compression { algorithm, level })
}

fn source_cluster() -> impl Strategy<Value = SourceCluster> {
    (any::<String>(), vec(any::<String>(), 0..3)).prop_map(|(cluster_id, bootstrap_servers)| SourceCluster {
        cluster_id,
        bootstrap_servers,
    })
}

/// Any manifest the types can hold, consistent or not.
fn raw_manifest() -> impl Strategy<Value = Manifest> {
    let statistics = any::<[u64; 6]>().prop_map(|s| Statistics {
        topics: s[0],
        partitions: s[1],
        segments: s[2],
        records: s[3],
        uncompressed_bytes: s[4],
        compressed_bytes: s[5],
    });
    let time_range = option::of(
        (any::<i64>(), any::<i64>()).prop_map(|(earliest_timestamp, latest_timestamp)| TimeRange {
            earliest_timestamp,
            latest_timestamp,
        }),
    );
    (
        any::<u32>(),
        backup_id(),
        utc_timestamp(),
        option::of(utc_timestamp()),
        option::of(status()),
        source_cluster(),
        compression(),
        statistics,
        time_range,
        vec(topic_entry(), 0..3),
        option::of(consumer_groups()),
    )
        .prop_map(
            |(
                minor,
                backup_id,
                created_at,
                completed_at,
                status,
                source_cluster,
                compression,
                statistics,
                time_range,
                topics,
                consumer_groups,
            )| {
                Manifest {
                    version: ManifestVersion { major: 1, minor },
                    backup_id,
                    created_at,
                    completed_at,
                    status,
                    failure: (status == Some(BackupStatus::Failed)).then(|| "fetching t/0: broker error".to_owned()),
                    source_cluster,
                    compression,
                    encryption: (minor % 2 == 1).then(|| {
                        Encryption::to_recipients(vec![
                            "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p".to_owned(),
                        ])
                    }),
                    statistics,
                    time_range,
                    topics,
                    consumer_groups,
                }
            },
        )
}

/// One step of a partition's backup: a segment or a gap, after `skip` unused offsets.
#[derive(Debug, Clone)]
struct Step {
    gap: bool,
    skip: i64,
    len: i64,
    dropped: i64,
    min_timestamp: i64,
    timestamp_span: i64,
    size_bytes: u64,
    uncompressed_bytes: u64,
    crc: u64,
    sequence_skip: u64,
}

fn step() -> impl Strategy<Value = Step> {
    (
        prop::bool::weighted(0.2),
        0..5i64,
        1..200i64,
        0..200i64,
        -1..2_000_000_000_000i64,
        0..10_000_000i64,
        0..1_000_000u64,
        0..4_000_000u64,
        any::<u64>(),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(
                gap,
                skip,
                len,
                dropped,
                min_timestamp,
                timestamp_span,
                size_bytes,
                uncompressed_bytes,
                crc,
                sequence_skip,
            )| Step {
                gap,
                skip,
                len,
                dropped: dropped % len,
                min_timestamp,
                timestamp_span,
                size_bytes,
                uncompressed_bytes,
                crc,
                sequence_skip: u64::from(sequence_skip),
            },
        )
}

/// A backup plan: topics with partition counts, configs and per-partition steps.
type Plan = BTreeMap<TopicName, (BTreeMap<String, String>, Vec<Vec<Step>>)>;

fn plan() -> impl Strategy<Value = Plan> {
    let configs = btree_map("[a-z.]{1,12}", "[a-z0-9]{0,8}", 0..3);
    btree_map(topic_name(), (configs, vec(vec(step(), 0..4), 0..4)), 0..4)
}

/// Runs a plan through the builder; the final status is chosen by `finish`.
fn build(plan: &Plan, created: i64, finish: u8, groups: Option<kbs_manifest::ConsumerGroups>) -> Manifest {
    let mut builder = ManifestBuilder::new(
        BackupId::new("backup").unwrap(),
        UtcTimestamp::from_unix_millis(created).unwrap(),
        SourceCluster {
            cluster_id: "cluster".into(),
            bootstrap_servers: vec!["kafka:9092".into()],
        },
        Compression {
            algorithm: CompressionAlgorithm::Zstd,
            level: 3,
        },
    );
    for (topic, (configs, partitions)) in plan {
        builder
            .add_topic(topic.clone(), partitions.len() as u32, configs.clone())
            .unwrap();
        for (partition, steps) in partitions.iter().enumerate() {
            let partition = partition as i32;
            let (mut next_offset, mut sequence) = (0i64, 0u64);
            for step in steps {
                let first = next_offset + step.skip;
                let last = first + step.len - 1;
                if step.gap {
                    builder
                        .add_gap(
                            topic,
                            partition,
                            Gap {
                                from_offset: first,
                                to_offset: last,
                                reason: Gap::RETENTION.into(),
                            },
                        )
                        .unwrap();
                } else {
                    sequence += step.sequence_skip;
                    let segment = SegmentFile {
                        name: SegmentName::new(sequence),
                        first_offset: first,
                        last_offset: last,
                        records: (step.len - step.dropped) as u64,
                        min_timestamp: step.min_timestamp,
                        max_timestamp: step.min_timestamp + step.timestamp_span,
                        size_bytes: step.size_bytes,
                        uncompressed_bytes: step.uncompressed_bytes,
                        crc64: Crc64(step.crc),
                    };
                    builder.add_segment(topic, partition, segment).unwrap();
                    sequence += 1;
                }
                next_offset = last + 1;
            }
        }
    }
    if let Some(groups) = groups {
        builder.set_consumer_groups(groups);
    }
    match finish % 3 {
        0 => builder.build_in_progress(),
        1 => builder.build_failed(),
        _ => builder
            .build_complete(UtcTimestamp::from_unix_millis(created + 1000).unwrap())
            .unwrap(),
    }
}

fn partition_checkpoint() -> impl Strategy<Value = PartitionCheckpoint> {
    (0..=i64::MAX, any::<i64>(), any::<u64>(), any::<u64>()).prop_map(|(offset, timestamp, segment, segment_offset)| {
        PartitionCheckpoint {
            offset,
            timestamp,
            segment: SegmentName::new(segment),
            segment_offset,
        }
    })
}

fn checkpoint() -> impl Strategy<Value = Checkpoint> {
    (
        backup_id(),
        utc_timestamp(),
        btree_map(
            topic_name(),
            btree_map(0..=i32::MAX, partition_checkpoint(), 0..4),
            0..4,
        ),
    )
        .prop_map(|(backup_id, timestamp, topics)| Checkpoint {
            backup_id,
            timestamp,
            topics,
        })
}

proptest! {
    #[test]
    fn raw_manifests_round_trip(manifest in raw_manifest()) {
        let pretty = manifest.to_json_pretty();
        prop_assert_eq!(&Manifest::from_json(&pretty).unwrap(), &manifest);
        let compact = serde_json::to_vec(&manifest).unwrap();
        prop_assert_eq!(&Manifest::from_json(&compact).unwrap(), &manifest);
        // Validation never panics, whatever the numbers.
        for problem in manifest.validate() {
            prop_assert!(!problem.to_string().is_empty());
        }
    }

    #[test]
    fn built_manifests_are_consistent_and_resumable(
        plan in plan(),
        created in 0..4_000_000_000_000i64,
        finish in any::<u8>(),
        groups in option::of(consumer_groups()),
    ) {
        let manifest = build(&plan, created, finish, groups);
        prop_assert_eq!(manifest.validate(), vec![]);
        let parsed = Manifest::from_json(&manifest.to_json_pretty()).unwrap();
        prop_assert_eq!(&parsed, &manifest);
        let resumed = ManifestBuilder::from_manifest(&parsed).unwrap();
        let rebuilt = match manifest.status.unwrap() {
            BackupStatus::InProgress => resumed.build_in_progress(),
            BackupStatus::Failed => resumed.build_failed(),
            BackupStatus::Complete => resumed.build_complete(manifest.completed_at.clone().unwrap()).unwrap(),
        };
        prop_assert_eq!(&rebuilt, &manifest);
        // Every listed partition is within partition_count; every segment key parses back.
        for topic in &manifest.topics {
            for partition in &topic.partitions {
                prop_assert!((partition.partition as u32) < topic.partition_count.unwrap());
                for segment in &partition.segment_files {
                    let key = layout::segment_key(&manifest.backup_id, &topic.name, partition.partition, segment.name).unwrap();
                    let parsed = layout::parse_segment_key(&key).unwrap();
                    prop_assert_eq!(parsed.segment, segment.name);
                    prop_assert_eq!(&parsed.topic, &topic.name);
                    prop_assert_eq!(parsed.partition, partition.partition);
                }
            }
        }
    }

    #[test]
    fn checkpoints_round_trip(checkpoint in checkpoint()) {
        prop_assert_eq!(&Checkpoint::from_json(&checkpoint.to_json_pretty()).unwrap(), &checkpoint);
    }

    #[test]
    fn timestamps_round_trip(millis in MIN_MILLIS..=MAX_MILLIS) {
        let timestamp = UtcTimestamp::from_unix_millis(millis).unwrap();
        let parsed: UtcTimestamp = timestamp.as_str().parse().unwrap();
        prop_assert_eq!(parsed.unix_millis(), millis);
        prop_assert_eq!(parsed, timestamp);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        let _ = Manifest::from_json(&bytes);
        let _ = Checkpoint::from_json(&bytes);
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = layout::parse_segment_key(text);
            let _ = text.parse::<UtcTimestamp>();
            let _ = text.parse::<SegmentName>();
            let _ = text.parse::<Crc64>();
        }
    }

    #[test]
    fn mutated_documents_never_panic(
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        checkpoint in any::<bool>(),
    ) {
        let mut bytes = if checkpoint { CHECKPOINT.to_vec() } else { FULL.to_vec() };
        for (index, byte) in edits {
            let at = index.index(bytes.len());
            bytes[at] = byte;
        }
        if let Ok(manifest) = Manifest::from_json(&bytes) {
            let _ = manifest.validate();
            prop_assert_eq!(Manifest::from_json(&manifest.to_json_pretty()).unwrap(), manifest);
        }
        if let Ok(checkpoint) = Checkpoint::from_json(&bytes) {
            prop_assert_eq!(Checkpoint::from_json(&checkpoint.to_json_pretty()).unwrap(), checkpoint);
        }
    }
}
