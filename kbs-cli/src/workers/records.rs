//! The objects workers share in storage, beside the manifest (docs/MANIFEST.md, "Worker
//! objects"): the snapshot cut, written once, and one progress object per partition, replaced
//! only by compare-and-swap.
//!
//! `<backup-id>/cut.json`, create-only, written by the first worker before any worker copies:
//!
//! ```json
//! {"backup_id": "b1", "created_at": "2026-12-02T10:00:00.000Z",
//!  "source_cluster": {"cluster_id": "q1Sh…", "bootstrap_servers": ["k1:9092"]},
//!  "compression": {"algorithm": "lz4", "level": 0}, "encryption": null,
//!  "consumer_groups": null,
//!  "topics": [{"name": "orders", "topic_id": "mR3…", "configs": {"cleanup.policy": "delete"},
//!              "starts": [0, 12], "ends": [1200, 1180]}]}
//! ```
//!
//! `starts` and `ends` hold, index by partition, the log start and the last stable offset (the
//! snapshot's exclusive end) when the cut was taken.
//!
//! A continuous backup's workers (`--continuous --workers`) share the same object with
//! `"continuous": true` (absent: a snapshot). It is then the catalogue of the partitions the
//! backup follows: it has no end, `ends` only say where each partition's log ended when it
//! joined the catalogue, and the group's leader adds topics and partitions created later by
//! compare-and-swap (and the consumer groups' offsets, every `--consumer-groups-interval`).
//!
//! `<backup-id>/checkpoints/partitions/<topic>/<partition>.json`, one per partition:
//!
//! ```json
//! {"topic": "orders", "partition": 3,
//!  "owner": {"member_id": "kbs-1-5f0c…", "generation": 4, "host": "node-2", "pid": 4242},
//!  "next_offset": 1200, "done": true, "updated_at": "2026-12-02T10:01:02.345Z",
//!  "segment_files": [ …as in the manifest… ], "gaps": [ …as in the manifest… ]}
//! ```
//!
//! `owner` is the worker that took the partition over last, in which generation of the
//! group; `next_offset` the first offset not yet covered by a segment or gap (absent before
//! the first); `done` is set once the partition reached its end in the cut, with every segment
//! durable and listed.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use kbs_manifest::{
    BackupId, Compression, ConsumerGroups, Encryption, Gap, Manifest, SegmentFile, SourceCluster, TopicName,
    UtcTimestamp,
};
use kbs_storage::{ObjectStorage, ObjectStorageExt, ObjectVersion};
use serde::{Deserialize, Serialize};

use crate::error::CliError;

/// The key of the snapshot cut of `backup_id`.
pub(crate) fn cut_key(backup_id: &BackupId) -> String {
    format!("{backup_id}/cut.json")
}

/// The folder holding the per-partition progress objects of `backup_id`.
pub(crate) fn progress_prefix(backup_id: &BackupId) -> String {
    format!("{backup_id}/checkpoints/partitions/")
}

/// The key of the progress object of `topic`/`partition`.
pub(crate) fn progress_key(backup_id: &BackupId, topic: &TopicName, partition: i32) -> String {
    format!("{}{topic}/{partition}.json", progress_prefix(backup_id))
}

/// The snapshot cut: which partitions the backup holds and where each ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapshotCut {
    /// The backup.
    pub(crate) backup_id: BackupId,
    /// When the cut was taken (the backup's `created_at` unless it continues an older one).
    pub(crate) created_at: UtcTimestamp,
    /// The cluster copied.
    pub(crate) source_cluster: SourceCluster,
    /// The segments' codec.
    pub(crate) compression: Compression,
    /// How the segments are encrypted, if they are.
    #[serde(default)]
    pub(crate) encryption: Option<Encryption>,
    /// Committed consumer-group offsets at the cut (`--consumer-groups`).
    #[serde(default)]
    pub(crate) consumer_groups: Option<ConsumerGroups>,
    /// The selected topics.
    pub(crate) topics: Vec<CutTopic>,
    /// A continuous backup's catalogue rather than a snapshot cut: no end, and topics are
    /// added while the backup runs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) continuous: bool,
}

/// One topic of the cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CutTopic {
    /// The topic.
    pub(crate) name: TopicName,
    /// Kafka's id of the topic.
    #[serde(default)]
    pub(crate) topic_id: Option<String>,
    /// The topic's configs.
    #[serde(default)]
    pub(crate) configs: BTreeMap<String, String>,
    /// Log start offset of each partition at the cut.
    pub(crate) starts: Vec<i64>,
    /// Snapshot end (exclusive) of each partition: its last stable offset at the cut.
    pub(crate) ends: Vec<i64>,
}

impl SnapshotCut {
    /// Every partition of the cut with its start and end.
    pub(crate) fn partitions(&self) -> impl Iterator<Item = (&TopicName, i32, i64, i64)> {
        self.topics.iter().flat_map(|t| {
            t.starts
                .iter()
                .zip(&t.ends)
                .enumerate()
                .map(move |(p, (start, end))| (&t.name, p as i32, *start, *end))
        })
    }

    /// The end of `topic`/`partition`, if the cut holds it.
    pub(crate) fn end(&self, topic: &str, partition: i32) -> Option<i64> {
        let t = self.topics.iter().find(|t| t.name.as_str() == topic)?;
        usize::try_from(partition).ok().and_then(|p| t.ends.get(p)).copied()
    }

    /// Whether the cut holds `topic`/`partition`.
    pub(crate) fn contains(&self, topic: &str, partition: i32) -> bool {
        self.end(topic, partition).is_some()
    }

    /// Reads the cut; `None` if there is none. A damaged one is an error, never replaced.
    pub(crate) async fn load(
        storage: &Arc<dyn ObjectStorage>,
        backup_id: &BackupId,
    ) -> Result<Option<SnapshotCut>, CliError> {
        Ok(SnapshotCut::load_versioned(storage, backup_id)
            .await?
            .map(|(cut, _)| cut))
    }

    /// [`SnapshotCut::load`], with the version read (to replace it, see
    /// [`SnapshotCut::replace`]).
    pub(crate) async fn load_versioned(
        storage: &Arc<dyn ObjectStorage>,
        backup_id: &BackupId,
    ) -> Result<Option<(SnapshotCut, ObjectVersion)>, CliError> {
        let key = cut_key(backup_id);
        match storage.get(&key).await {
            Ok(got) => {
                let cut: SnapshotCut = serde_json::from_slice(&got.bytes).map_err(|e| CliError::Unparsable {
                    key: key.clone(),
                    message: e.to_string(),
                })?;
                if cut.backup_id != *backup_id {
                    return Err(CliError::Unparsable {
                        key,
                        message: format!("it belongs to backup {:?}", cut.backup_id.as_str()),
                    });
                }
                if let Some(t) = cut.topics.iter().find(|t| t.starts.len() != t.ends.len()) {
                    return Err(CliError::Unparsable {
                        key,
                        message: format!(
                            "topic {} has {} starts but {} ends",
                            t.name,
                            t.starts.len(),
                            t.ends.len()
                        ),
                    });
                }
                Ok(Some((cut, got.meta.version)))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores this cut create-only; if another worker stored one first, returns that one, so
    /// every worker honours the same cut.
    pub(crate) async fn store_once(self, storage: &Arc<dyn ObjectStorage>) -> Result<SnapshotCut, CliError> {
        let key = cut_key(&self.backup_id);
        let body = Bytes::from(serde_json::to_vec_pretty(&self).expect("the cut serialises"));
        match storage.put_if_absent(&key, body).await {
            Ok(_) => Ok(self),
            Err(kbs_storage::Error::AlreadyExists { .. }) => SnapshotCut::load(storage, &self.backup_id)
                .await?
                .ok_or_else(|| CliError::Locked(format!("{key} was there and is gone again"))),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces the stored cut (a continuous catalogue that grew) over `version`, the one
    /// this was read from: `Ok(false)` when another worker replaced it first (read it again).
    pub(crate) async fn replace(
        &self,
        storage: &Arc<dyn ObjectStorage>,
        version: &ObjectVersion,
    ) -> Result<bool, CliError> {
        let body = Bytes::from(serde_json::to_vec_pretty(self).expect("the cut serialises"));
        match storage.put_if_match(&cut_key(&self.backup_id), body, version).await {
            Ok(_) => Ok(true),
            Err(kbs_storage::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// The worker that took a partition over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Owner {
    /// Its member id in the group.
    pub(crate) member_id: String,
    /// The generation it was assigned the partition in: the fencing token.
    pub(crate) generation: i32,
    /// Its host name.
    pub(crate) host: String,
    /// Its process id.
    pub(crate) pid: u32,
}

/// One partition's progress, as its owner last committed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PartitionProgress {
    /// The topic.
    pub(crate) topic: TopicName,
    /// The partition.
    pub(crate) partition: i32,
    /// Who took it over last.
    #[serde(default)]
    pub(crate) owner: Option<Owner>,
    /// The first offset not covered yet.
    #[serde(default)]
    pub(crate) next_offset: Option<i64>,
    /// The partition reached its end in the cut and everything up to it is listed.
    #[serde(default)]
    pub(crate) done: bool,
    /// When this object was written.
    pub(crate) updated_at: UtcTimestamp,
    /// The durable segments, in order.
    #[serde(default)]
    pub(crate) segment_files: Vec<SegmentFile>,
    /// The gaps, in order.
    #[serde(default)]
    pub(crate) gaps: Vec<Gap>,
}

impl PartitionProgress {
    /// A partition nobody took over yet, continuing what `manifest` (a backup this one
    /// continues) holds of it.
    pub(crate) fn seeded(topic: &TopicName, partition: i32, manifest: Option<&Manifest>) -> PartitionProgress {
        let entry = manifest
            .and_then(|m| m.topic(topic.as_str()))
            .and_then(|t| t.partition(partition));
        let segment_files = entry.map(|e| e.segment_files.clone()).unwrap_or_default();
        let gaps = entry.map(|e| e.gaps.clone()).unwrap_or_default();
        let mut progress = PartitionProgress {
            topic: topic.clone(),
            partition,
            owner: None,
            next_offset: None,
            done: false,
            updated_at: crate::backup::now_utc(),
            segment_files,
            gaps,
        };
        progress.next_offset = progress.covered_until().map(|c| c + 1);
        progress
    }

    /// The highest offset covered by a segment or gap.
    pub(crate) fn covered_until(&self) -> Option<i64> {
        let segments = self.segment_files.last().map(|s| s.last_offset);
        let gaps = self.gaps.iter().map(|g| g.to_offset).max();
        segments.max(gaps)
    }

    /// Segments and gaps in offset order, as a manifest builder takes them.
    pub(crate) fn items_in_order(&self) -> Vec<Covered<'_>> {
        let mut items: Vec<Covered<'_>> = self
            .segment_files
            .iter()
            .map(Covered::Segment)
            .chain(self.gaps.iter().map(Covered::Gap))
            .collect();
        items.sort_by_key(|i| match i {
            Covered::Segment(s) => s.first_offset,
            Covered::Gap(g) => g.from_offset,
        });
        items
    }

    /// Reads the progress object of `topic`/`partition` with its version; `None` if there is
    /// none yet.
    pub(crate) async fn load(
        storage: &Arc<dyn ObjectStorage>,
        backup_id: &BackupId,
        topic: &TopicName,
        partition: i32,
    ) -> Result<Option<(PartitionProgress, ObjectVersion)>, CliError> {
        let key = progress_key(backup_id, topic, partition);
        match storage.get(&key).await {
            Ok(got) => Ok(Some((parse_progress(&key, &got.bytes)?, got.meta.version))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Every progress object of `backup_id`, by partition.
    pub(crate) async fn load_all(
        storage: &Arc<dyn ObjectStorage>,
        backup_id: &BackupId,
    ) -> Result<BTreeMap<(TopicName, i32), PartitionProgress>, CliError> {
        let mut all = BTreeMap::new();
        for (key, bytes) in read_json_objects(storage, &progress_prefix(backup_id)).await? {
            let progress = parse_progress(&key, &bytes)?;
            if key != progress_key(backup_id, &progress.topic, progress.partition) {
                return Err(CliError::Unparsable {
                    key,
                    message: format!(
                        "it describes {}/{}, which belongs under another key",
                        progress.topic, progress.partition
                    ),
                });
            }
            all.insert((progress.topic.clone(), progress.partition), progress);
        }
        Ok(all)
    }

    /// Writes this object: create-only when `version` is `None`, else only over `version`.
    /// `Ok(None)`: refused, someone else wrote it since `version` was read.
    pub(crate) async fn store(
        &self,
        storage: &Arc<dyn ObjectStorage>,
        backup_id: &BackupId,
        version: Option<&ObjectVersion>,
    ) -> Result<Option<ObjectVersion>, CliError> {
        let key = progress_key(backup_id, &self.topic, self.partition);
        let body = Bytes::from(serde_json::to_vec_pretty(self).expect("progress serialises"));
        let put = match version {
            Some(v) => storage.put_if_match(&key, body, v).await,
            None => storage.put_if_absent(&key, body).await,
        };
        match put {
            Ok(put) => Ok(Some(put.version)),
            Err(kbs_storage::Error::Precondition { .. }) | Err(kbs_storage::Error::AlreadyExists { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// Objects read at once by [`read_json_objects`].
const PARALLEL_READS: usize = 16;

/// The `.json` objects under `prefix`, key and content, read 16 at a time (the progress
/// objects of a shared job: one per partition, read at every merge and every rejoin). An
/// object listed and gone before it is read is left out.
pub(crate) async fn read_json_objects(
    storage: &Arc<dyn ObjectStorage>,
    prefix: &str,
) -> Result<Vec<(String, Bytes)>, CliError> {
    let listed = storage.list_all(prefix).await?;
    let read: Vec<Option<(String, Bytes)>> =
        futures::stream::iter(listed.into_iter().filter(|o| o.key.ends_with(".json")))
            .map(|object| {
                let storage = storage.clone();
                async move {
                    match storage.get(&object.key).await {
                        Ok(got) => Ok(Some((object.key, got.bytes))),
                        // Listed, then gone: only a deletion of the job removes them.
                        Err(e) if e.is_not_found() => Ok(None),
                        Err(e) => Err(CliError::from(e)),
                    }
                }
            })
            .buffered(PARALLEL_READS)
            .try_collect()
            .await?;
    Ok(read.into_iter().flatten().collect())
}

/// A segment or a gap of one partition.
pub(crate) enum Covered<'a> {
    /// A segment.
    Segment(&'a SegmentFile),
    /// A gap.
    Gap(&'a Gap),
}

fn parse_progress(key: &str, bytes: &[u8]) -> Result<PartitionProgress, CliError> {
    serde_json::from_slice(bytes).map_err(|e| CliError::Unparsable {
        key: key.to_string(),
        message: e.to_string(),
    })
}
