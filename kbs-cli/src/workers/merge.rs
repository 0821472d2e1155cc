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
    let key = layout::manifest_key(&cut.backup_id);
    for _ in 0..ROUNDS {
        let old = load_manifest(storage, &cut.backup_id).await?;
        if let Some((manifest, _)) = &old
            && manifest.status == Some(BackupStatus::Complete)
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
        let (manifest, merged) = build(cut, old.as_ref().map(|(m, _)| m), &progress)?;
        if old.as_ref().is_some_and(|(m, _)| *m == manifest) {
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

/// The manifest the cut and the progress objects make, on top of `old` (a manifest this backup
/// continues: its partitions without a progress object are kept as they are).
pub(crate) fn build(
    cut: &SnapshotCut,
    old: Option<&Manifest>,
    progress: &BTreeMap<(TopicName, i32), PartitionProgress>,
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
    let complete = done == total;
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
