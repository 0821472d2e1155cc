//! The restore's progress document, `<backup-id>/restores/<restore-id>/progress.json`.
//!
//! ```json
//! {
//!   "restore_id": "r-3f2a…", "backup_id": "nightly", "updated_at_ms": 1763700000000,
//!   "partitions": {
//!     "orders/0": {
//!       "target_topic": "orders-restored", "target_partition": 0,
//!       "last_source_offset": 41999, "next_target_offset": 42000,
//!       "records": 42000, "bytes": 43008000, "done": true,
//!       "group_targets": {"40000": 40000},
//!       "writer": {"producer_id": 4001, "producer_epoch": 0, "first_offset": 30000}
//!     }
//!   },
//!   "groups": {"billing": {"orders-restored/0": 40000}}
//! }
//! ```
//!
//! `group_targets` holds, for each committed group offset the restore moves (known before it
//! starts), the target offset of the first restored record at or after it: one entry per group
//! offset, whatever the holes in the source offsets (compaction, transactions), so the document
//! stays small and is rewritten cheaply every second. Progress written by earlier versions held
//! `offset_runs` (`[source, target, length]` runs, one per hole); they are still read.
//!
//! `writer` names the idempotent producer of the latest run that produced to the partition and
//! the target offset of its first record there. It is saved before that run's first batch, so a
//! rerun can continue that producer's sequence numbers and a batch the interrupted run left
//! unacknowledged is written once (see `writer.rs`).
//!
//! A topic restored with `--repartition key|round-robin` is written as one deterministic
//! sequence (see `reshape/mod.rs`), and its progress lives under `reshaped`, keyed by the source
//! topic: the longest prefix of that sequence whose every record the targets acknowledged, as
//! the last source offset it took from each source partition, and each target partition's
//! progress at that prefix:
//!
//! ```json
//! "reshaped": {
//!   "orders": {
//!     "target_topic": "orders-24", "repartition": "key", "target_partitions": 24,
//!     "sequenced": 84000, "sources": {"0": 6999, "1": 7001},
//!     "targets": {"0": {"target_topic": "orders-24", "target_partition": 0, "last_source_offset": null,
//!                       "next_target_offset": 3500, "records": 3500, "bytes": 3584000, "done": false}},
//!     "groups": {"billing": {"0": 1200}},
//!     "done": false
//!   }
//! }
//! ```
//!
//! `groups` holds, per moved consumer group and target partition, the target offset of the
//! first record in the prefix that the group had not consumed in the source.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Progress of one source partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionProgress {
    /// Target topic.
    pub target_topic: String,
    /// Target partition.
    pub target_partition: i32,
    /// The target topic's id when this restore started writing it (`None` from brokers that
    /// report no ids, and in progress written by kbs before it recorded them): a rerun checks
    /// it, so a target deleted and created again is noticed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_topic_id: Option<String>,
    /// The last source offset whose record the target acknowledged (`None`: none yet).
    pub last_source_offset: Option<i64>,
    /// The target offset after the last acknowledged record.
    pub next_target_offset: i64,
    /// Records restored.
    pub records: u64,
    /// Key and value bytes restored.
    pub bytes: u64,
    /// Every planned record is restored.
    pub done: bool,
    /// Committed group offset (source) → target offset of the first restored record at or
    /// after it, for the group offsets this restore moves.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", with = "offset_keys")]
    pub group_targets: BTreeMap<i64, i64>,
    /// Source → target offset runs `[source, target, length]` of progress written by earlier
    /// versions (read, never written).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offset_runs: Vec<[i64; 3]>,
    /// The producer of the latest run that wrote this partition (absent in progress written by
    /// kbs before it recorded writers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<TargetWriter>,
}

/// The idempotent producer one run produced a target partition with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetWriter {
    /// Its producer id.
    pub producer_id: i64,
    /// Its producer epoch.
    pub producer_epoch: i16,
    /// The target partition's end when the run started producing: the offset of the
    /// producer's first record there (sequence 0).
    pub first_offset: i64,
}

/// JSON object keys are strings: `group_targets` is written `{"40000": 40000}`.
mod offset_keys {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(map: &BTreeMap<i64, i64>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(map.iter().map(|(k, v)| (k.to_string(), v)))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<i64, i64>, D::Error> {
        let text: BTreeMap<String, i64> = BTreeMap::deserialize(deserializer)?;
        text.into_iter()
            .map(|(k, v)| k.parse().map(|k| (k, v)).map_err(serde::de::Error::custom))
            .collect()
    }
}

impl PartitionProgress {
    /// Records that source offset `source` became target offset `target` (records are
    /// mapped in increasing source order): every wanted group offset up to `source` not mapped
    /// yet maps to `target`.
    pub fn map(&mut self, source: i64, target: i64, wanted: &std::collections::BTreeSet<i64>) {
        let from = self
            .group_targets
            .keys()
            .next_back()
            .map_or(i64::MIN, |k| k.saturating_add(1));
        if from > source {
            return;
        }
        for &c in wanted.range(from..=source) {
            self.group_targets.entry(c).or_insert(target);
        }
    }

    /// The target offset of the first restored record whose source offset is `>= source`,
    /// or `None` when every restored record is before it. Known for the wanted group offsets
    /// (and for any offset in progress written by earlier versions).
    pub fn first_target_at_or_after(&self, source: i64) -> Option<i64> {
        if let Some(target) = self.group_targets.get(&source) {
            return Some(*target);
        }
        let index = self.offset_runs.partition_point(|run| run[0] + run[2] <= source);
        let run = self.offset_runs.get(index)?;
        Some(if source <= run[0] {
            run[1]
        } else {
            run[1] + (source - run[0])
        })
    }
}

/// The whole progress document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreProgress {
    /// The restore.
    pub restore_id: String,
    /// The backup restored.
    pub backup_id: String,
    /// When it was last written (Unix ms).
    pub updated_at_ms: i64,
    /// `"<source topic>/<partition>"` → progress.
    pub partitions: BTreeMap<String, PartitionProgress>,
    /// Consumer-group offsets committed: group → `"<target topic>/<partition>"` → offset.
    #[serde(default)]
    pub groups: BTreeMap<String, BTreeMap<String, i64>>,
    /// Source topic → progress of a topic restored into another partitioning.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reshaped: BTreeMap<String, ReshapedProgress>,
}

/// Progress of one source topic restored with `--repartition key` or `round-robin`: the
/// longest prefix of its record sequence that every target acknowledged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReshapedProgress {
    /// Target topic.
    pub target_topic: String,
    /// `key` or `round-robin`.
    pub repartition: String,
    /// The target topic's partition count.
    pub target_partitions: i32,
    /// Records of the sequence in the acknowledged prefix.
    pub sequenced: u64,
    /// Source partition → the last source offset the prefix holds from it.
    pub sources: BTreeMap<i32, i64>,
    /// Target partition → its progress at the prefix (`last_source_offset` unused).
    pub targets: BTreeMap<i32, PartitionProgress>,
    /// Moved consumer group → target partition → target offset of the first record of the
    /// prefix in that partition that the group had not consumed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<String, BTreeMap<i32, i64>>,
    /// The whole sequence is written and acknowledged.
    pub done: bool,
}

/// Where a target partition's progress lives in the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Restored one to one: under `partitions`, by the source partition's key.
    Source(String),
    /// A target partition of a reshaped source topic: under `reshaped`.
    Reshaped {
        /// The source topic.
        topic: String,
        /// The target partition.
        partition: i32,
    },
}

impl RestoreProgress {
    /// The target partition's progress at `slot`, if recorded.
    pub(crate) fn slot_mut(&mut self, slot: &Slot) -> Option<&mut PartitionProgress> {
        match slot {
            Slot::Source(key) => self.partitions.get_mut(key),
            Slot::Reshaped { topic, partition } => self.reshaped.get_mut(topic)?.targets.get_mut(partition),
        }
    }

    /// Every target partition's progress, with where its records come from:
    /// `topic/partition`, or `topic/*` for a repartitioned topic.
    pub fn target_partitions(&self) -> Vec<(String, &PartitionProgress)> {
        let one_to_one = self.partitions.iter().map(|(source, p)| (source.clone(), p));
        let reshaped = self
            .reshaped
            .iter()
            .flat_map(|(topic, r)| r.targets.values().map(move |p| (format!("{topic}/*"), p)));
        one_to_one.chain(reshaped).collect()
    }

    /// Whether any partition of `topic` is a target of this restore.
    pub fn writes_to(&self, topic: &str) -> bool {
        self.partitions.values().any(|p| p.target_topic == topic)
            || self.reshaped.values().any(|r| r.target_topic == topic)
    }
}

/// The progress key of a source partition.
pub fn partition_key(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_offsets_translate_to_the_first_record_at_or_after_them() {
        let mut p = PartitionProgress::default();
        let wanted = [-5, 0, 2, 3, 6, 7, 11].into_iter().collect();
        for (s, t) in [(0, 100), (1, 101), (2, 102), (5, 103), (6, 104), (10, 105)] {
            p.map(s, t, &wanted);
        }
        assert_eq!(p.first_target_at_or_after(0), Some(100));
        assert_eq!(p.first_target_at_or_after(2), Some(102));
        assert_eq!(p.first_target_at_or_after(3), Some(103)); // compacted away: next record
        assert_eq!(p.first_target_at_or_after(6), Some(104));
        assert_eq!(p.first_target_at_or_after(7), Some(105));
        assert_eq!(p.first_target_at_or_after(11), None);
        assert_eq!(p.first_target_at_or_after(-5), Some(100));
    }

    #[test]
    fn a_source_full_of_holes_keeps_the_document_small() {
        // One hole after every record (a compacted or transactional source): the progress
        // holds one entry per group offset, not one per hole.
        let mut p = PartitionProgress::default();
        let wanted = [10, 500_000, 1_999_998].into_iter().collect();
        for i in 0..1_000_000i64 {
            p.map(2 * i, i, &wanted);
        }
        assert_eq!(p.group_targets.len(), 3);
        assert_eq!(p.first_target_at_or_after(500_000), Some(250_000));
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.len() < 400, "{json}");
        let back: PartitionProgress = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn progress_of_earlier_versions_is_still_read() {
        let json = r#"{"target_topic": "t", "target_partition": 0, "last_source_offset": 10, "next_target_offset": 6,
            "records": 6, "bytes": 60, "done": true, "offset_runs": [[0, 100, 3], [5, 103, 2], [10, 105, 1]]}"#;
        let p: PartitionProgress = serde_json::from_str(json).unwrap();
        assert_eq!(p.first_target_at_or_after(0), Some(100));
        assert_eq!(p.first_target_at_or_after(2), Some(102));
        assert_eq!(p.first_target_at_or_after(3), Some(103)); // compacted away: next record
        assert_eq!(p.first_target_at_or_after(6), Some(104));
        assert_eq!(p.first_target_at_or_after(7), Some(105));
        assert_eq!(p.first_target_at_or_after(11), None);
        assert_eq!(p.first_target_at_or_after(-5), Some(100));
    }
}
