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
//!       "offset_runs": [[0, 0, 42000]]
//!     }
//!   },
//!   "groups": {"billing": {"orders-restored/0": 40000}}
//! }
//! ```
//!
//! `offset_runs` maps source offsets to target offsets compactly: each `[source, target,
//! length]` says source offsets `source..source+length` became target offsets
//! `target..target+length`. Compacted sources (gaps in source offsets) start new runs.

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
    /// Source → target offset runs `[source, target, length]`.
    pub offset_runs: Vec<[i64; 3]>,
}

impl PartitionProgress {
    /// Records that source offset `source` became target offset `target`.
    pub fn map(&mut self, source: i64, target: i64) {
        if let Some(last) = self.offset_runs.last_mut()
            && last[0] + last[2] == source
            && last[1] + last[2] == target
        {
            last[2] += 1;
            return;
        }
        self.offset_runs.push([source, target, 1]);
    }

    /// The target offset of the first restored record whose source offset is `>= source`,
    /// or `None` when every restored record is before it.
    pub fn first_target_at_or_after(&self, source: i64) -> Option<i64> {
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
}

/// The progress key of a source partition.
pub fn partition_key(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_merge_and_translate() {
        let mut p = PartitionProgress::default();
        for (s, t) in [(0, 100), (1, 101), (2, 102), (5, 103), (6, 104), (10, 105)] {
            p.map(s, t);
        }
        assert_eq!(p.offset_runs, vec![[0, 100, 3], [5, 103, 2], [10, 105, 1]]);
        assert_eq!(p.first_target_at_or_after(0), Some(100));
        assert_eq!(p.first_target_at_or_after(2), Some(102));
        assert_eq!(p.first_target_at_or_after(3), Some(103)); // compacted away: next record
        assert_eq!(p.first_target_at_or_after(6), Some(104));
        assert_eq!(p.first_target_at_or_after(7), Some(105));
        assert_eq!(p.first_target_at_or_after(11), None);
        assert_eq!(p.first_target_at_or_after(-5), Some(100));
    }
}
