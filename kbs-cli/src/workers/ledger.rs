//! A worker's ledger: the progress objects of the partitions it was assigned, each taken over
//! by compare-and-swap and from then on written only over the version this worker wrote. A
//! write refused because the version changed means another worker took the partition over:
//! [`CliError::Fenced`], and this worker stops.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use kbs_manifest::{BackupId, Gap, Manifest, SegmentFile, TopicName};
use kbs_storage::{ObjectStorage, ObjectVersion};

use super::records::{Owner, PartitionProgress};
use crate::error::CliError;

/// How often a takeover reads and tries again when another writer changed the object between
/// its read and its write (the previous owner committing its last segment as it stops).
const TAKEOVER_ATTEMPTS: u32 = 10;

/// Progress objects written at once.
const PARALLEL_WRITES: usize = 16;

/// One partition this worker owns.
#[derive(Debug)]
struct Owned {
    progress: PartitionProgress,
    version: ObjectVersion,
    dirty: bool,
}

/// The progress objects this worker owns.
#[derive(Debug)]
pub(crate) struct WorkerLedger {
    storage: Arc<dyn ObjectStorage>,
    backup_id: BackupId,
    owner: Owner,
    owned: BTreeMap<(TopicName, i32), Owned>,
}

impl WorkerLedger {
    /// Takes over `partitions` for `owner`: each progress object (or, for a partition nobody
    /// took over yet, what `base` holds of it) is rewritten with `owner` by compare-and-swap,
    /// so that the previous owner's next write is refused.
    pub(crate) async fn take_over(
        storage: Arc<dyn ObjectStorage>,
        backup_id: &BackupId,
        owner: Owner,
        partitions: &[(TopicName, i32)],
        base: Option<&Manifest>,
    ) -> Result<WorkerLedger, CliError> {
        let taken: Vec<((TopicName, i32), Owned)> = futures::stream::iter(partitions.iter().cloned())
            .map(|(topic, partition)| {
                let storage = storage.clone();
                let owner = owner.clone();
                async move {
                    let owned = take_over_one(&storage, backup_id, &owner, &topic, partition, base).await?;
                    Ok::<_, CliError>(((topic, partition), owned))
                }
            })
            .buffer_unordered(PARALLEL_WRITES)
            .try_collect()
            .await?;
        Ok(WorkerLedger {
            storage,
            backup_id: backup_id.clone(),
            owner,
            owned: taken.into_iter().collect(),
        })
    }

    /// The progress of the partitions owned, as taken over.
    pub(crate) fn progress(&self) -> impl Iterator<Item = &PartitionProgress> {
        self.owned.values().map(|o| &o.progress)
    }

    fn entry(&mut self, topic: &TopicName, partition: i32) -> Result<&mut Owned, CliError> {
        self.owned.get_mut(&(topic.clone(), partition)).ok_or_else(|| {
            CliError::Fenced(format!(
                "{topic}/{partition} is not assigned to this worker (member {})",
                self.owner.member_id
            ))
        })
    }

    /// Records a durable segment (in memory).
    pub(crate) fn add_segment(
        &mut self,
        topic: &TopicName,
        partition: i32,
        file: &SegmentFile,
    ) -> Result<(), CliError> {
        let owned = self.entry(topic, partition)?;
        owned.progress.next_offset = Some(file.last_offset + 1);
        owned.progress.segment_files.push(file.clone());
        owned.dirty = true;
        Ok(())
    }

    /// Records a gap (in memory).
    pub(crate) fn add_gap(&mut self, topic: &TopicName, partition: i32, gap: &Gap) -> Result<(), CliError> {
        let owned = self.entry(topic, partition)?;
        let next = gap.to_offset + 1;
        owned.progress.next_offset = Some(owned.progress.next_offset.map_or(next, |n| n.max(next)));
        owned.progress.gaps.push(gap.clone());
        owned.dirty = true;
        Ok(())
    }

    /// Marks a partition done: it reached its end, `position` being where reading stopped.
    pub(crate) fn mark_done(&mut self, topic: &TopicName, partition: i32, position: i64) -> Result<(), CliError> {
        let owned = self.entry(topic, partition)?;
        if !owned.progress.done {
            owned.progress.done = true;
            owned.progress.next_offset = Some(owned.progress.next_offset.map_or(position, |n| n.max(position)));
            owned.dirty = true;
        }
        Ok(())
    }

    /// Marks every owned object to be written at the next flush: a worker ending a run commits
    /// each partition once more, so a worker that lost some learns it there (refused).
    pub(crate) fn touch_all(&mut self) {
        for owned in self.owned.values_mut() {
            owned.dirty = true;
        }
    }

    /// Writes every changed progress object, each over the version this worker wrote last.
    /// Refused ([`CliError::Fenced`]) when another worker took one over meanwhile; the others
    /// are written all the same (they are still this worker's).
    pub(crate) async fn flush(&mut self) -> Result<(), CliError> {
        let storage = &self.storage;
        let backup_id = &self.backup_id;
        type Written = ((TopicName, i32), Result<Option<ObjectVersion>, CliError>);
        let writes: Vec<Written> = futures::stream::iter(self.owned.iter_mut().filter(|(_, o)| o.dirty))
            .map(|(key, owned)| async move {
                owned.progress.updated_at = crate::backup::now_utc();
                let written = owned.progress.store(storage, backup_id, Some(&owned.version)).await;
                (key.clone(), written)
            })
            .buffer_unordered(PARALLEL_WRITES)
            .collect()
            .await;
        let mut refused = Vec::new();
        let mut failure = None;
        for (key, written) in writes {
            match written {
                Ok(Some(version)) => {
                    let owned = self.owned.get_mut(&key).expect("written from the map");
                    owned.version = version;
                    owned.dirty = false;
                }
                Ok(None) => refused.push(key),
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        if refused.is_empty() {
            return Ok(());
        }
        let mut taken_by = Vec::new();
        for (topic, partition) in &refused {
            let now = PartitionProgress::load(&self.storage, &self.backup_id, topic, *partition).await?;
            let by = now
                .and_then(|(p, _)| p.owner)
                .map_or_else(|| "another writer".to_string(), |o| describe_owner(&o));
            taken_by.push(format!("{topic}/{partition} (now {by})"));
            // It is no longer this worker's: nothing more is written for it.
            self.owned.remove(&(topic.clone(), *partition));
        }
        Err(commit_refused(&taken_by, &self.owner))
    }
}

/// The refusal of a worker's commit for the partitions in `taken_by` (`t/p (now OWNER)`).
pub(crate) fn commit_refused(taken_by: &[String], owner: &Owner) -> CliError {
    CliError::Fenced(format!(
        "commit refused for {}: taken over since this worker ({}) last wrote {}; nothing was written for {}",
        taken_by.join(", "),
        describe_owner(owner),
        if taken_by.len() == 1 { "it" } else { "them" },
        if taken_by.len() == 1 { "it" } else { "them" },
    ))
}

/// `member M generation G on host H pid P`.
pub(crate) fn describe_owner(owner: &Owner) -> String {
    format!(
        "member {} generation {} on {} pid {}",
        owner.member_id, owner.generation, owner.host, owner.pid
    )
}

async fn take_over_one(
    storage: &Arc<dyn ObjectStorage>,
    backup_id: &BackupId,
    owner: &Owner,
    topic: &TopicName,
    partition: i32,
    base: Option<&Manifest>,
) -> Result<Owned, CliError> {
    for _ in 0..TAKEOVER_ATTEMPTS {
        let (mut progress, version) = match PartitionProgress::load(storage, backup_id, topic, partition).await? {
            Some((progress, version)) => (progress, Some(version)),
            None => (PartitionProgress::seeded(topic, partition, base), None),
        };
        if let Some(current) = &progress.owner
            && current.generation > owner.generation
        {
            return Err(CliError::Fenced(format!(
                "take-over refused for {topic}/{partition} (now {}): a later generation than this worker's ({})",
                describe_owner(current),
                describe_owner(owner)
            )));
        }
        progress.owner = Some(owner.clone());
        progress.updated_at = crate::backup::now_utc();
        if let Some(version) = progress.store(storage, backup_id, version.as_ref()).await? {
            return Ok(Owned {
                progress,
                version,
                dirty: false,
            });
        }
    }
    Err(CliError::Fenced(format!(
        "{topic}/{partition}: could not take it over, another writer kept changing its progress object"
    )))
}
