//! [`ManifestBuilder`]: accumulates durable segments and derives every summary field.

use std::collections::BTreeMap;

use crate::error::ManifestError;
use crate::manifest::{
    BackupStatus, Compression, ConsumerGroups, Encryption, Gap, Manifest, ManifestVersion, PartitionEntry, SegmentFile,
    SourceCluster, Statistics, TimeRange, TopicEntry,
};
use crate::names::{BackupId, TopicName};
use crate::time::UtcTimestamp;
use crate::validate::{ProblemKind, ValidationProblem, gap_problems, segment_problems};

/// Accumulates a backup's topics, segments and gaps as they become durable, and builds
/// [`Manifest`]s whose statistics, time range and per-partition summaries are derived,
/// never set by hand.
///
/// Every change is checked: a segment that overlaps or goes behind what its partition
/// already holds is refused, so a built manifest always passes
/// [`Manifest::validate`]. Topics and partitions come out sorted. A partition appears in
/// `partitions` once it has a segment or a gap; `partition_count` still counts the
/// others.
///
/// ```
/// use std::collections::BTreeMap;
/// use kbs_manifest::*;
///
/// let mut builder = ManifestBuilder::new(
///     BackupId::new("nightly-2026-11-21")?,
///     UtcTimestamp::from_unix_millis(1_795_241_984_123)?,
///     SourceCluster { cluster_id: "lkc-9x2m1".into(), bootstrap_servers: vec!["kafka-1:9092".into()] },
///     Compression { algorithm: CompressionAlgorithm::Zstd, level: 3 },
/// );
/// let orders = TopicName::new("orders")?;
/// builder.add_topic(orders.clone(), 3, BTreeMap::new())?;
/// builder.add_segment(&orders, 0, SegmentFile {
///     name: SegmentName::FIRST,
///     first_offset: 0,
///     last_offset: 99,
///     records: 100,
///     min_timestamp: 1_795_241_000_000,
///     max_timestamp: 1_795_241_099_000,
///     size_bytes: 4_096,
///     uncompressed_bytes: 12_800,
///     crc64: Crc64(0x995d_c9bb_df19_39fa),
/// })?;
/// let manifest = builder.build_complete(UtcTimestamp::from_unix_millis(1_795_242_302_481)?)?;
/// assert_eq!(manifest.statistics.records, 100);
/// assert!(manifest.validate().is_empty());
/// # Ok::<(), ManifestError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ManifestBuilder {
    backup_id: BackupId,
    created_at: UtcTimestamp,
    source_cluster: SourceCluster,
    compression: Compression,
    encryption: Option<Encryption>,
    topics: BTreeMap<TopicName, TopicState>,
    consumer_groups: Option<ConsumerGroups>,
}

#[derive(Debug, Clone)]
struct TopicState {
    partition_count: Option<u32>,
    topic_id: Option<String>,
    configs: Option<BTreeMap<String, String>>,
    partitions: BTreeMap<i32, PartitionState>,
}

#[derive(Debug, Clone, Default)]
struct PartitionState {
    segment_files: Vec<SegmentFile>,
    gaps: Vec<Gap>,
    /// Highest offset covered by a segment or gap.
    covered_until: Option<i64>,
}

impl ManifestBuilder {
    /// Starts a new backup with no topics.
    pub fn new(
        backup_id: BackupId,
        created_at: UtcTimestamp,
        source_cluster: SourceCluster,
        compression: Compression,
    ) -> Self {
        ManifestBuilder {
            backup_id,
            created_at,
            source_cluster,
            compression,
            encryption: None,
            topics: BTreeMap::new(),
            consumer_groups: None,
        }
    }

    /// Records how the backup's segments are encrypted (`None`: they are not).
    pub fn set_encryption(&mut self, encryption: Option<Encryption>) {
        self.encryption = encryption;
    }

    /// How the backup's segments are encrypted, if they are.
    pub fn encryption(&self) -> Option<&Encryption> {
        self.encryption.as_ref()
    }

    /// Resumes from a manifest (typically an in-progress one read back from storage).
    ///
    /// The manifest must pass [`Manifest::validate`] ([`ManifestError::Inconsistent`]
    /// otherwise) and list the `segment_files` of every partition with segments
    /// ([`ManifestError::MissingSegmentFiles`]). Partition entries with neither segments
    /// nor gaps are not kept. What the builder then produces uses version 1.0.
    pub fn from_manifest(manifest: &Manifest) -> Result<Self, ManifestError> {
        let problems = manifest.validate();
        if !problems.is_empty() {
            return Err(ManifestError::Inconsistent { problems });
        }
        let mut topics = BTreeMap::new();
        for topic in &manifest.topics {
            let mut partitions = BTreeMap::new();
            for entry in &topic.partitions {
                if entry.segments > 0 && entry.segment_files.is_empty() {
                    return Err(ManifestError::MissingSegmentFiles {
                        topic: topic.name.clone(),
                        partition: entry.partition,
                        segments: entry.segments,
                    });
                }
                if entry.segment_files.is_empty() && entry.gaps.is_empty() {
                    continue;
                }
                let covered_until = entry
                    .segment_files
                    .iter()
                    .map(|s| s.last_offset)
                    .chain(entry.gaps.iter().map(|g| g.to_offset))
                    .max();
                partitions.insert(
                    entry.partition,
                    PartitionState {
                        segment_files: entry.segment_files.clone(),
                        gaps: entry.gaps.clone(),
                        covered_until,
                    },
                );
            }
            topics.insert(
                topic.name.clone(),
                TopicState {
                    partition_count: topic.partition_count,
                    topic_id: topic.topic_id.clone(),
                    configs: topic.configs.clone(),
                    partitions,
                },
            );
        }
        Ok(ManifestBuilder {
            backup_id: manifest.backup_id.clone(),
            created_at: manifest.created_at.clone(),
            source_cluster: manifest.source_cluster.clone(),
            compression: manifest.compression,
            encryption: manifest.encryption.clone(),
            topics,
            consumer_groups: manifest.consumer_groups.clone(),
        })
    }

    /// Adds a topic, or updates the partition count and configs of one already added
    /// (partitions can be added to a topic while it is backed up).
    ///
    /// Fails with [`ManifestError::PartitionOutOfRange`] if a partition that already
    /// holds segments or gaps would fall outside `0..partition_count`.
    pub fn add_topic(
        &mut self,
        name: TopicName,
        partition_count: u32,
        configs: BTreeMap<String, String>,
    ) -> Result<(), ManifestError> {
        if let Some(existing) = self.topics.get_mut(&name) {
            if let Some((&partition, _)) = existing.partitions.last_key_value() {
                if i64::from(partition) >= i64::from(partition_count) {
                    return Err(ManifestError::PartitionOutOfRange {
                        topic: name,
                        partition,
                        partition_count,
                    });
                }
            }
            existing.partition_count = Some(partition_count);
            existing.configs = Some(configs);
        } else {
            self.topics.insert(
                name,
                TopicState {
                    partition_count: Some(partition_count),
                    topic_id: None,
                    configs: Some(configs),
                    partitions: BTreeMap::new(),
                },
            );
        }
        Ok(())
    }

    /// Records Kafka's id of topic `name` (added before with [`ManifestBuilder::add_topic`]).
    pub fn set_topic_id(&mut self, name: &TopicName, topic_id: String) {
        if let Some(topic) = self.topics.get_mut(name) {
            topic.topic_id = Some(topic_id);
        }
    }

    /// The topic id recorded for `name`, if any.
    pub fn topic_id(&self, name: &TopicName) -> Option<&str> {
        self.topics.get(name).and_then(|t| t.topic_id.as_deref())
    }

    /// Records a segment that is now durable in storage.
    ///
    /// Refused ([`ManifestError::Rejected`]) if the segment is inconsistent on its own
    /// (offsets, record count, timestamps), if it starts at or before an offset its
    /// partition already covers, or if its sequence number does not increase. Fails
    /// with [`ManifestError::UnknownTopic`] or [`ManifestError::PartitionOutOfRange`]
    /// for a topic not added or a partition outside it.
    pub fn add_segment(
        &mut self,
        topic: &TopicName,
        partition: i32,
        segment: SegmentFile,
    ) -> Result<(), ManifestError> {
        let state = self.partition_state(topic, partition)?;
        let reject = |kind| reject(topic, partition, Some(&segment), kind);
        if let Some(kind) = segment_problems(&segment).into_iter().next() {
            return Err(reject(kind));
        }
        if let Some(previous) = state.segment_files.last() {
            if segment.name <= previous.name {
                return Err(reject(ProblemKind::SegmentNameOutOfOrder {
                    previous: previous.name,
                }));
            }
        }
        if let Some(previous_last_offset) = state.covered_until {
            if segment.first_offset <= previous_last_offset {
                return Err(reject(ProblemKind::SegmentOverlap {
                    first_offset: segment.first_offset,
                    previous_last_offset,
                }));
            }
        }
        state.covered_until = Some(segment.last_offset);
        state.segment_files.push(segment);
        Ok(())
    }

    /// Records offsets that existed in Kafka but will not be in the backup (e.g.
    /// deleted by retention before they were read). The gap must start after every
    /// offset the partition already covers.
    pub fn add_gap(&mut self, topic: &TopicName, partition: i32, gap: Gap) -> Result<(), ManifestError> {
        let state = self.partition_state(topic, partition)?;
        if let Some(kind) = gap_problems(&gap).into_iter().next() {
            return Err(reject(topic, partition, None, kind));
        }
        if state.covered_until.is_some_and(|covered| gap.from_offset <= covered) {
            return Err(reject(topic, partition, None, ProblemKind::GapOverlap { gap }));
        }
        state.covered_until = Some(gap.to_offset);
        state.gaps.push(gap);
        Ok(())
    }

    /// Sets the consumer-group snapshot.
    pub fn set_consumer_groups(&mut self, consumer_groups: ConsumerGroups) {
        self.consumer_groups = Some(consumer_groups);
    }

    /// The last segment recorded for a partition: where a resumed backup continues
    /// (next sequence number, next offset).
    pub fn last_segment(&self, topic: &str, partition: i32) -> Option<&SegmentFile> {
        self.topics.get(topic)?.partitions.get(&partition)?.segment_files.last()
    }

    /// A manifest with status `"in_progress"` and no `completed_at`.
    pub fn build_in_progress(&self) -> Manifest {
        self.build(BackupStatus::InProgress, None)
    }

    /// A manifest with status `"failed"` and no `completed_at`.
    pub fn build_failed(&self) -> Manifest {
        self.build(BackupStatus::Failed, None)
    }

    /// A manifest with status `"failed"`, no `completed_at`, and why the run failed.
    pub fn build_failed_because(&self, failure: impl Into<String>) -> Manifest {
        let mut manifest = self.build(BackupStatus::Failed, None);
        manifest.failure = Some(failure.into());
        manifest
    }

    /// The final manifest, status `"complete"`. Refused if `completed_at` is before
    /// `created_at`.
    pub fn build_complete(&self, completed_at: UtcTimestamp) -> Result<Manifest, ManifestError> {
        if completed_at.unix_millis() < self.created_at.unix_millis() {
            let kind = ProblemKind::CompletedBeforeCreated {
                created_at: self.created_at.clone(),
                completed_at,
            };
            return Err(ManifestError::Rejected {
                problem: Box::new(ValidationProblem {
                    topic: None,
                    partition: None,
                    segment: None,
                    kind,
                }),
            });
        }
        Ok(self.build(BackupStatus::Complete, Some(completed_at)))
    }

    fn partition_state(&mut self, topic: &TopicName, partition: i32) -> Result<&mut PartitionState, ManifestError> {
        let state = self
            .topics
            .get_mut(topic)
            .ok_or_else(|| ManifestError::UnknownTopic { topic: topic.clone() })?;
        let in_range = match state.partition_count {
            Some(count) => partition >= 0 && i64::from(partition) < i64::from(count),
            None => partition >= 0,
        };
        if !in_range {
            return Err(ManifestError::PartitionOutOfRange {
                topic: topic.clone(),
                partition,
                partition_count: state.partition_count.unwrap_or(0),
            });
        }
        Ok(state.partitions.entry(partition).or_default())
    }

    fn build(&self, status: BackupStatus, completed_at: Option<UtcTimestamp>) -> Manifest {
        let mut statistics = Statistics {
            topics: self.topics.len() as u64,
            ..Statistics::default()
        };
        let mut time_range: Option<TimeRange> = None;
        let mut topics = Vec::with_capacity(self.topics.len());
        for (name, topic) in &self.topics {
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for (&partition, state) in &topic.partitions {
                let Some(entry) = partition_entry(partition, state) else {
                    continue;
                };
                for segment in &state.segment_files {
                    statistics.uncompressed_bytes =
                        statistics.uncompressed_bytes.saturating_add(segment.uncompressed_bytes);
                    statistics.compressed_bytes = statistics.compressed_bytes.saturating_add(segment.size_bytes);
                    let range = time_range.get_or_insert(TimeRange {
                        earliest_timestamp: segment.min_timestamp,
                        latest_timestamp: segment.max_timestamp,
                    });
                    range.earliest_timestamp = range.earliest_timestamp.min(segment.min_timestamp);
                    range.latest_timestamp = range.latest_timestamp.max(segment.max_timestamp);
                }
                statistics.partitions += 1;
                statistics.segments = statistics.segments.saturating_add(entry.segments);
                statistics.records = statistics.records.saturating_add(entry.records);
                partitions.push(entry);
            }
            topics.push(TopicEntry {
                name: name.clone(),
                partition_count: topic.partition_count,
                topic_id: topic.topic_id.clone(),
                configs: topic.configs.clone(),
                partitions,
            });
        }
        Manifest {
            version: ManifestVersion::CURRENT,
            backup_id: self.backup_id.clone(),
            created_at: self.created_at.clone(),
            completed_at,
            status: Some(status),
            failure: None,
            source_cluster: self.source_cluster.clone(),
            compression: self.compression,
            encryption: self.encryption.clone(),
            statistics,
            time_range,
            topics,
            consumer_groups: self.consumer_groups.clone(),
        }
    }
}

/// The partition's summary entry; `None` when it holds neither segments nor gaps.
fn partition_entry(partition: i32, state: &PartitionState) -> Option<PartitionEntry> {
    let (first_offset, last_offset) = match (state.segment_files.first(), state.segment_files.last()) {
        (Some(first), Some(last)) => (first.first_offset, last.last_offset),
        // Gaps only: an empty range starting at the first gap.
        _ => {
            let from = state.gaps.first()?.from_offset;
            (from, from - 1)
        }
    };
    Some(PartitionEntry {
        partition,
        first_offset,
        last_offset,
        records: state
            .segment_files
            .iter()
            .fold(0u64, |sum, s| sum.saturating_add(s.records)),
        segments: state.segment_files.len() as u64,
        segment_files: state.segment_files.clone(),
        gaps: state.gaps.clone(),
    })
}

fn reject(topic: &TopicName, partition: i32, segment: Option<&SegmentFile>, kind: ProblemKind) -> ManifestError {
    ManifestError::Rejected {
        problem: Box::new(ValidationProblem {
            topic: Some(topic.clone()),
            partition: Some(partition),
            segment: segment.map(|s| s.name),
            kind,
        }),
    }
}
