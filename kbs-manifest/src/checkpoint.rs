//! `checkpoints/checkpoint.json`: where each partition's backup stands, for resuming.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Document, ManifestError};
use crate::names::{BackupId, SegmentName, TopicName};
use crate::serde_util;
use crate::time::UtcTimestamp;

/// The backup checkpoint, `<backup-id>/checkpoints/checkpoint.json`.
///
/// JSON layout (partition numbers are object keys, canonical decimal strings):
///
/// ```json
/// {
///   "backup_id": "nightly-2026-11-21",
///   "timestamp": "2026-11-21T06:22:10.007Z",
///   "topics": {
///     "orders": {
///       "0": { "offset": 1499, "timestamp": 1795241990000,
///              "segment": "segment-00000001.kbs", "segment_offset": 52288 }
///     }
///   }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The backup this checkpoint belongs to.
    pub backup_id: BackupId,
    /// When the checkpoint was written.
    pub timestamp: UtcTimestamp,
    /// Topic → partition → position. Partition numbers must be non-negative.
    #[serde(deserialize_with = "serde_util::topic_partition_map")]
    pub topics: BTreeMap<TopicName, BTreeMap<i32, PartitionCheckpoint>>,
}

/// How far one partition is durably backed up.
///
/// JSON: `{"offset": 1499, "timestamp": 1795241990000, "segment": "segment-00000001.kbs",
/// "segment_offset": 52288}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawPartitionCheckpoint")]
pub struct PartitionCheckpoint {
    /// The last offset durably stored (non-negative); resume from `offset + 1`.
    pub offset: i64,
    /// That record's timestamp, Unix milliseconds.
    pub timestamp: i64,
    /// The last segment written.
    pub segment: SegmentName,
    /// That segment's length in bytes.
    pub segment_offset: u64,
}

/// Parsing form of [`PartitionCheckpoint`], before the offset is checked.
#[derive(Deserialize)]
struct RawPartitionCheckpoint {
    offset: i64,
    timestamp: i64,
    segment: SegmentName,
    segment_offset: u64,
}

impl TryFrom<RawPartitionCheckpoint> for PartitionCheckpoint {
    type Error = String;

    fn try_from(raw: RawPartitionCheckpoint) -> Result<Self, Self::Error> {
        if raw.offset < 0 {
            return Err(format!("checkpoint offset {} is negative", raw.offset));
        }
        Ok(PartitionCheckpoint {
            offset: raw.offset,
            timestamp: raw.timestamp,
            segment: raw.segment,
            segment_offset: raw.segment_offset,
        })
    }
}

impl Checkpoint {
    /// An empty checkpoint.
    pub fn new(backup_id: BackupId, timestamp: UtcTimestamp) -> Self {
        Checkpoint {
            backup_id,
            timestamp,
            topics: BTreeMap::new(),
        }
    }

    /// Parses `checkpoint.json`. Unknown fields are ignored; names, timestamps,
    /// partition keys and offsets are validated.
    pub fn from_json(json: &[u8]) -> Result<Checkpoint, ManifestError> {
        serde_json::from_slice(json).map_err(|source| ManifestError::Json {
            document: Document::Checkpoint,
            source,
        })
    }

    /// Serialises as pretty-printed JSON (two-space indent, trailing newline).
    pub fn to_json_pretty(&self) -> Vec<u8> {
        crate::manifest::to_json_pretty(self)
    }

    /// The position recorded for a partition.
    pub fn position(&self, topic: &str, partition: i32) -> Option<&PartitionCheckpoint> {
        self.topics.get(topic)?.get(&partition)
    }

    /// Records a partition's new position (not the checkpoint's `timestamp`, which the
    /// caller sets when writing).
    ///
    /// Refuses a negative partition ([`ManifestError::InvalidPartition`]) or offset
    /// ([`ManifestError::NegativeCheckpointOffset`]), and a position whose `offset` or
    /// `segment` is behind the one recorded ([`ManifestError::CheckpointRegression`]).
    pub fn record(
        &mut self,
        topic: &TopicName,
        partition: i32,
        position: PartitionCheckpoint,
    ) -> Result<(), ManifestError> {
        if partition < 0 {
            return Err(ManifestError::InvalidPartition {
                value: partition.to_string(),
            });
        }
        if position.offset < 0 {
            return Err(ManifestError::NegativeCheckpointOffset {
                topic: topic.clone(),
                partition,
                offset: position.offset,
            });
        }
        if let Some(&current) = self.position(topic.as_str(), partition) {
            if position.offset < current.offset || position.segment < current.segment {
                return Err(ManifestError::CheckpointRegression {
                    topic: topic.clone(),
                    partition,
                    current,
                    proposed: position,
                });
            }
        }
        self.topics
            .entry(topic.clone())
            .or_default()
            .insert(partition, position);
        Ok(())
    }
}
