//! The workers' merge: `manifest.json` rebuilt from the cut and every partition's progress
//! object, written by compare-and-swap. Any worker may run it at any time:
//!
//! * It reads the manifest (and its version) first, then the progress objects. Progress
//!   objects only grow, so what it writes holds at least what the manifest it replaces held.
//! * It writes only over the version it read; when another worker wrote in between, it reads
//!   again.
//! * It writes `complete` only when every partition of the cut is done, and never writes over
//!   a complete manifest: so the backup becomes complete exactly once, whichever worker gets
//!   there last.
//! * A continuous backup's merge ([`SnapshotCut::continuous`]) writes `in_progress` while
//!   workers run, also over a `complete` manifest (workers started again reopen the backup,
//!   as a single continuous backup does); the last worker to leave the group seals it
//!   `complete` ([`seal`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kbs_manifest::{BackupId, BackupStatus, Manifest, ManifestBuilder, TopicName, layout};
use kbs_storage::{ObjectStorage, ObjectVersion};

use super::records::{Covered, PartitionProgress, SnapshotCut};
use crate::error::CliError;

/// Rounds lost to other workers' writes before the merge gives up (each lost round means
/// another worker merged, so a later merge catches up).
const ROUNDS: u32 = 20;

/// What a merge found.
#[derive(Debug, Clone)]
pub(crate) struct Merged {
    /// The manifest is complete (written by this merge or an earlier one).
    pub(crate) complete: bool,
    /// Partitions of the cut that are done.
    pub(crate) done: usize,
    /// Partitions in the cut.
    pub(crate) total: usize,
    /// Records in the backup.
    pub(crate) records: u64,
}

/// Reads the manifest of `backup_id`, if any, with its version.
pub(crate) async fn load_manifest(
    storage: &Arc<dyn ObjectStorage>,
    backup_id: &BackupId,
) -> Result<Option<(Manifest, ObjectVersion)>, CliError> {
    let key = layout::manifest_key(backup_id);
    match storage.get(&key).await {
        Ok(got) => {
            let manifest = Manifest::from_json(&got.bytes).map_err(|e| CliError::Unparsable {
                key: key.clone(),
                message: e.to_string(),
            })?;
            Ok(Some((manifest, got.meta.version)))
        }
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Merges the progress objects into the manifest (see the module docs).
pub(crate) async fn merge(storage: &Arc<dyn ObjectStorage>, cut: &SnapshotCut) -> Result<Merged, CliError> {
    merge_as(storage, cut, false).await
}

/// A continuous backup's last merge, once no worker is left in the group: the manifest
/// becomes `complete`, holding everything committed.
pub(crate) async fn seal(storage: &Arc<dyn ObjectStorage>, cut: &SnapshotCut) -> Result<Merged, CliError> {
    merge_as(storage, cut, true).await
}

/// What a merge would find now, writing nothing: for a continuous worker that left while
/// others remain (a write of its could land after the last one's seal and reopen the backup).
pub(crate) async fn preview(storage: &Arc<dyn ObjectStorage>, cut: &SnapshotCut) -> Result<Merged, CliError> {
    let old = load_manifest(storage, &cut.backup_id).await?;
    let progress = PartitionProgress::load_all(storage, &cut.backup_id).await?;
    let (_, merged) = build(cut, old.as_ref().map(|(m, _)| m), &progress, false)?;
    Ok(merged)
}

async fn merge_as(storage: &Arc<dyn ObjectStorage>, cut: &SnapshotCut, seal: bool) -> Result<Merged, CliError> {
    let key = layout::manifest_key(&cut.backup_id);
    for _ in 0..ROUNDS {
        let old = load_manifest(storage, &cut.backup_id).await?;
        if let Some((manifest, _)) = &old
            && manifest.status == Some(BackupStatus::Complete)
            && !cut.continuous
        {
            let total = cut.partitions().count();
            return Ok(Merged {
                complete: true,
                done: total,
                total,
                records: manifest.statistics.records,
            });
        }
        let progress = PartitionProgress::load_all(storage, &cut.backup_id).await?;
        let (manifest, merged) = build(cut, old.as_ref().map(|(m, _)| m), &progress, seal)?;
        if old.as_ref().is_some_and(|(m, _)| same_but_time(m, &manifest)) {
            return Ok(merged);
        }
        let body = Bytes::from(manifest.to_json_pretty());
        let put = match &old {
            Some((_, version)) => storage.put_if_match(&key, body, version).await,
            None => storage.put_if_absent(&key, body).await,
        };
        match put {
            Ok(_) => return Ok(merged),
            Err(kbs_storage::Error::Precondition { .. }) | Err(kbs_storage::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(CliError::Locked(format!(
        "{key}: other workers kept writing it; {ROUNDS} merges in a row lost the compare-and-swap"
    )))
}

/// Whether `old` holds what `new` holds: equal, or both complete and equal but for when they
/// were completed (a seal finding the backup sealed already).
fn same_but_time(old: &Manifest, new: &Manifest) -> bool {
    if old == new {
        return true;
    }
    let mut new = new.clone();
    new.completed_at = old.completed_at.clone();
    old.is_complete() && new.is_complete() && *old == new
}

/// The manifest the cut and the progress objects make, on top of `old` (a manifest this backup
/// continues: its partitions without a progress object are kept as they are). A snapshot's is
/// complete when every partition is done; a continuous backup's when `seal` says so.
pub(crate) fn build(
    cut: &SnapshotCut,
    old: Option<&Manifest>,
    progress: &BTreeMap<(TopicName, i32), PartitionProgress>,
    seal: bool,
) -> Result<(Manifest, Merged), CliError> {
    let created_at = old.map_or_else(|| cut.created_at.clone(), |m| m.created_at.clone());
    let mut builder = ManifestBuilder::new(
        cut.backup_id.clone(),
        created_at,
        cut.source_cluster.clone(),
        cut.compression,
    );
    builder.set_encryption(cut.encryption.clone());
    if let Some(old) = old {
        for topic in &old.topics {
            let count = topic
                .partition_count
                .unwrap_or_else(|| topic.partitions.iter().map(|p| p.partition + 1).max().unwrap_or(0) as u32);
            builder.add_topic(topic.name.clone(), count, topic.configs.clone().unwrap_or_default())?;
            if let Some(id) = &topic.topic_id {
                builder.set_topic_id(&topic.name, id.clone());
            }
            for entry in &topic.partitions {
                if progress.contains_key(&(topic.name.clone(), entry.partition)) {
                    continue;
                }
                let seeded = PartitionProgress::seeded(&topic.name, entry.partition, Some(old));
                add_covered(&mut builder, &seeded)?;
            }
        }
        if let Some(groups) = &old.consumer_groups {
            builder.set_consumer_groups(groups.clone());
        }
    }
    for topic in &cut.topics {
        builder.add_topic(topic.name.clone(), topic.ends.len() as u32, topic.configs.clone())?;
        if let Some(id) = &topic.topic_id {
            builder.set_topic_id(&topic.name, id.clone());
        }
    }
    if let Some(groups) = &cut.consumer_groups {
        builder.set_consumer_groups(groups.clone());
    }
    for ((topic, partition), p) in progress {
        if cut.end(topic.as_str(), *partition).is_none() {
            tracing::warn!("{topic}/{partition} has a progress object but is not in the cut: left out of the manifest");
            continue;
        }
        add_covered(&mut builder, p)?;
    }
    let total = cut.partitions().count();
    let done = cut
        .partitions()
        .filter(|(t, p, _, _)| progress.get(&((*t).clone(), *p)).is_some_and(|pr| pr.done))
        .count();
    let complete = if cut.continuous { seal } else { done == total };
    let manifest = if complete {
        builder.build_complete(crate::backup::now_utc())?
    } else {
        builder.build_in_progress()
    };
    let merged = Merged {
        complete,
        done,
        total,
        records: manifest.statistics.records,
    };
    Ok((manifest, merged))
}

fn add_covered(builder: &mut ManifestBuilder, progress: &PartitionProgress) -> Result<(), CliError> {
    for item in progress.items_in_order() {
        match item {
            Covered::Segment(s) => builder.add_segment(&progress.topic, progress.partition, s.clone())?,
            Covered::Gap(g) => builder.add_gap(&progress.topic, progress.partition, g.clone())?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use kbs_manifest::{
        BackupId, Compression, CompressionAlgorithm, Crc64, SegmentFile, SegmentName, SourceCluster, UtcTimestamp,
    };

    use super::*;
    use crate::workers::records::CutTopic;

    fn topic(name: &str) -> TopicName {
        TopicName::new(name).unwrap()
    }

    /// Topic `t` of two partitions: 0 ends at 20, 1 is empty.
    fn cut() -> SnapshotCut {
        SnapshotCut {
            backup_id: BackupId::new("b").unwrap(),
            created_at: UtcTimestamp::from_unix_millis(1_795_000_000_000).unwrap(),
            source_cluster: SourceCluster {
                cluster_id: "c".into(),
                bootstrap_servers: vec!["k:9092".into()],
            },
            compression: Compression {
                algorithm: CompressionAlgorithm::Lz4,
                level: 0,
            },
            encryption: None,
            consumer_groups: None,
            topics: vec![CutTopic {
                name: topic("t"),
                topic_id: Some("id-t".into()),
                configs: BTreeMap::new(),
                starts: vec![0, 0],
                ends: vec![20, 0],
            }],
            continuous: false,
        }
    }

    fn segment(sequence: u64, first: i64, last: i64) -> SegmentFile {
        SegmentFile {
            name: SegmentName::new(sequence),
            first_offset: first,
            last_offset: last,
            records: (last - first + 1) as u64,
            min_timestamp: 1_000,
            max_timestamp: 2_000,
            size_bytes: 100,
            uncompressed_bytes: 200,
            crc64: Crc64(7),
        }
    }

    fn progress(
        topic_name: &str,
        partition: i32,
        segments: Vec<SegmentFile>,
        done: bool,
    ) -> ((TopicName, i32), PartitionProgress) {
        let mut p = PartitionProgress::seeded(&topic(topic_name), partition, None);
        p.next_offset = segments.last().map(|s| s.last_offset + 1);
        p.segment_files = segments;
        p.done = done;
        ((topic(topic_name), partition), p)
    }

    #[test]
    fn the_manifest_is_complete_only_when_every_partition_of_the_cut_is_done() {
        let cut = cut();
        let mut all: BTreeMap<_, _> = [
            progress("t", 0, vec![segment(0, 0, 9), segment(1, 10, 19)], true),
            progress("t", 1, vec![], false),
        ]
        .into_iter()
        .collect();
        let (manifest, merged) = build(&cut, None, &all, false).unwrap();
        assert!(!merged.complete && !manifest.is_complete());
        assert_eq!((merged.done, merged.total, merged.records), (1, 2, 20));
        assert!(manifest.validate().is_empty(), "{:?}", manifest.validate());

        all.get_mut(&(topic("t"), 1)).unwrap().done = true;
        let (manifest, merged) = build(&cut, None, &all, false).unwrap();
        assert!(merged.complete && manifest.is_complete());
        assert_eq!(manifest.topic("t").unwrap().partition_count, Some(2));
        assert_eq!(manifest.topic("t").unwrap().topic_id.as_deref(), Some("id-t"));
        assert!(manifest.validate().is_empty());
    }

    #[test]
    fn an_older_manifest_keeps_its_partitions_that_have_no_progress_object() {
        let cut = cut();
        // A single process backed up t/0 up to offset 9, and another topic the cut leaves out.
        let mut builder = ManifestBuilder::new(
            cut.backup_id.clone(),
            UtcTimestamp::from_unix_millis(1_794_000_000_000).unwrap(),
            cut.source_cluster.clone(),
            cut.compression,
        );
        builder.add_topic(topic("t"), 2, BTreeMap::new()).unwrap();
        builder.add_segment(&topic("t"), 0, segment(0, 0, 9)).unwrap();
        builder.add_topic(topic("gone"), 1, BTreeMap::new()).unwrap();
        builder.add_segment(&topic("gone"), 0, segment(0, 0, 4)).unwrap();
        let old = builder.build_in_progress();
        let (manifest, merged) = build(&cut, Some(&old), &BTreeMap::new(), false).unwrap();
        assert_eq!(merged.records, 15);
        assert_eq!(manifest.created_at, old.created_at);
        assert!(manifest.topic("gone").is_some());
        // Once a worker took t/0 over (its object seeded from the old manifest, then grown),
        // the object is what counts.
        let all: BTreeMap<_, _> = [progress("t", 0, vec![segment(0, 0, 9), segment(1, 10, 19)], true)]
            .into_iter()
            .collect();
        let (manifest, merged) = build(&cut, Some(&old), &all, false).unwrap();
        assert_eq!(merged.records, 25);
        assert_eq!(
            manifest.topic("t").unwrap().partition(0).unwrap().segment_files.len(),
            2
        );
    }

    #[test]
    fn a_progress_object_outside_the_cut_is_left_out() {
        let all: BTreeMap<_, _> = [
            progress("t", 0, vec![segment(0, 0, 19)], true),
            progress("other", 0, vec![segment(0, 0, 3)], true),
        ]
        .into_iter()
        .collect();
        let (manifest, merged) = build(&cut(), None, &all, false).unwrap();
        assert!(manifest.topic("other").is_none());
        assert_eq!(merged.records, 20);
    }

    #[test]
    fn a_continuous_backup_is_complete_only_when_sealed_and_reopens_when_merged_again() {
        let mut cut = cut();
        cut.continuous = true;
        let all: BTreeMap<_, _> = [progress("t", 0, vec![segment(0, 0, 19)], false)].into_iter().collect();
        // No partition is ever done while workers run: in progress.
        let (running, merged) = build(&cut, None, &all, false).unwrap();
        assert!(!merged.complete && !running.is_complete());
        assert_eq!(merged.records, 20);
        // The last worker to leave seals it, with everything committed.
        let (sealed, merged) = build(&cut, Some(&running), &all, true).unwrap();
        assert!(merged.complete && sealed.is_complete());
        assert_eq!(sealed.statistics.records, 20);
        assert!(sealed.validate().is_empty(), "{:?}", sealed.validate());
        // Workers started again reopen it, keeping what it holds.
        let (reopened, merged) = build(&cut, Some(&sealed), &all, false).unwrap();
        assert!(!merged.complete && !reopened.is_complete());
        assert_eq!(reopened.created_at, sealed.created_at);
        assert_eq!(reopened.statistics.records, 20);
        // A second seal finds nothing new: the same manifest but for when it was sealed.
        let (again, _) = build(&cut, Some(&sealed), &all, true).unwrap();
        assert!(same_but_time(&sealed, &again));
        assert!(!same_but_time(&reopened, &again));
    }
}
