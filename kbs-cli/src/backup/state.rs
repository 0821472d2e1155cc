//! The backup's persistent state: manifest and checkpoint, replaced only by compare-and-swap
//! against the versions this writer read or wrote (see `docs/DESIGN.md`).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kbs_manifest::{
    BackupId, Checkpoint, Compression, Gap, Manifest, ManifestBuilder, PartitionCheckpoint, SegmentFile, SourceCluster,
    TopicName, UtcTimestamp, layout,
};
use kbs_storage::{ObjectStorage, ObjectVersion};

use crate::error::CliError;
use crate::workers::{SnapshotCut, WorkerLedger};

/// Manifest and checkpoint of one backup, as this writer holds them.
#[derive(Debug)]
pub(crate) struct BackupState {
    storage: Arc<dyn ObjectStorage>,
    backup_id: BackupId,
    pub(crate) builder: ManifestBuilder,
    pub(crate) checkpoint: Checkpoint,
    manifest_version: Option<ObjectVersion>,
    checkpoint_version: Option<ObjectVersion>,
    /// Whether the backup existed before this run.
    pub(crate) resumed: bool,
    /// A worker (`--workers`) keeps its progress in per-partition objects instead of
    /// `checkpoint.json` and `manifest.json`, which the workers merge (see `workers::merge`).
    worker: Option<WorkerLedger>,
}

pub(crate) fn now_utc() -> UtcTimestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    UtcTimestamp::from_unix_millis(ms).expect("the clock is within years 0..=9999")
}

impl BackupState {
    /// Loads the backup's manifest and checkpoint (an unparsable one is an error, never
    /// replaced), or starts new ones, then rewrites both: this fences any earlier writer.
    pub(crate) async fn open(
        storage: Arc<dyn ObjectStorage>,
        backup_id: &BackupId,
        source_cluster: SourceCluster,
        compression: Compression,
        encrypt_to: Option<&kbs_format::Recipients>,
    ) -> Result<BackupState, CliError> {
        let manifest_key = layout::manifest_key(backup_id);
        let checkpoint_key = layout::checkpoint_key(backup_id);
        let (builder, manifest_version, resumed) = match storage.get(&manifest_key).await {
            Ok(got) => {
                let manifest = Manifest::from_json(&got.bytes).map_err(|e| CliError::Unparsable {
                    key: manifest_key.clone(),
                    message: e.to_string(),
                })?;
                if manifest.backup_id != *backup_id {
                    return Err(CliError::Unparsable {
                        key: manifest_key,
                        message: format!("it belongs to backup {:?}", manifest.backup_id.as_str()),
                    });
                }
                let (then, now) = (&manifest.source_cluster.cluster_id, &source_cluster.cluster_id);
                if !then.is_empty() && !now.is_empty() && then != now {
                    return Err(CliError::SourceChanged(format!(
                        "backup {backup_id} holds cluster {then}, but {} is cluster {now}: continuing it would \
                         splice another cluster's logs onto it. Back this cluster up under a new --backup-id",
                        source_cluster.bootstrap_servers.join(",")
                    )));
                }
                if manifest.compression.algorithm != compression.algorithm {
                    tracing::warn!(
                        "backup {backup_id} was started with {:?} compression; continuing with {:?} for new segments",
                        manifest.compression.algorithm,
                        compression.algorithm
                    );
                }
                crate::encryption::check_continuation(backup_id.as_str(), manifest.encryption.as_ref(), encrypt_to)?;
                let builder = ManifestBuilder::from_manifest(&manifest).map_err(|e| CliError::Unparsable {
                    key: manifest_key.clone(),
                    message: e.to_string(),
                })?;
                (builder, Some(got.meta.version), true)
            }
            Err(e) if e.is_not_found() => {
                let mut builder = ManifestBuilder::new(backup_id.clone(), now_utc(), source_cluster, compression);
                builder.set_encryption(encrypt_to.map(|r| kbs_manifest::Encryption::to_recipients(r.to_strings())));
                (builder, None, false)
            }
            Err(e) => return Err(e.into()),
        };
        let (checkpoint, checkpoint_version) = match storage.get(&checkpoint_key).await {
            Ok(got) => {
                let checkpoint = Checkpoint::from_json(&got.bytes).map_err(|e| CliError::Unparsable {
                    key: checkpoint_key.clone(),
                    message: e.to_string(),
                })?;
                (checkpoint, Some(got.meta.version))
            }
            Err(e) if e.is_not_found() => (Checkpoint::new(backup_id.clone(), now_utc()), None),
            Err(e) => return Err(e.into()),
        };
        let mut state = BackupState {
            storage,
            backup_id: backup_id.clone(),
            builder,
            checkpoint,
            manifest_version,
            checkpoint_version,
            resumed,
            worker: None,
        };
        state.write_manifest_in_progress().await?;
        state.write_checkpoint().await?;
        Ok(state)
    }

    /// The state of a worker that took over the partitions in `ledger`: the manifest builder
    /// holds the cut's topics and what the ledger's partitions hold so far; writes go to the
    /// ledger's progress objects only.
    pub(crate) fn for_worker(
        storage: Arc<dyn ObjectStorage>,
        cut: &SnapshotCut,
        ledger: WorkerLedger,
    ) -> Result<BackupState, CliError> {
        let mut builder = ManifestBuilder::new(
            cut.backup_id.clone(),
            cut.created_at.clone(),
            cut.source_cluster.clone(),
            cut.compression,
        );
        builder.set_encryption(cut.encryption.clone());
        for topic in &cut.topics {
            builder.add_topic(topic.name.clone(), topic.ends.len() as u32, topic.configs.clone())?;
            if let Some(id) = &topic.topic_id {
                builder.set_topic_id(&topic.name, id.clone());
            }
        }
        let mut resumed = false;
        for progress in ledger.progress() {
            for item in progress.items_in_order() {
                resumed = true;
                match item {
                    crate::workers::Covered::Segment(s) => {
                        builder.add_segment(&progress.topic, progress.partition, s.clone())?
                    }
                    crate::workers::Covered::Gap(g) => {
                        builder.add_gap(&progress.topic, progress.partition, g.clone())?
                    }
                }
            }
        }
        Ok(BackupState {
            storage,
            backup_id: cut.backup_id.clone(),
            builder,
            checkpoint: Checkpoint::new(cut.backup_id.clone(), now_utc()),
            manifest_version: None,
            checkpoint_version: None,
            resumed,
            worker: Some(ledger),
        })
    }

    /// Whether this is a worker's state.
    pub(crate) fn is_worker(&self) -> bool {
        self.worker.is_some()
    }

    /// A worker ending a run: every partition it owns is committed once more (see
    /// [`WorkerLedger::touch_all`]).
    pub(crate) fn touch_all(&mut self) {
        if let Some(ledger) = &mut self.worker {
            ledger.touch_all();
        }
    }

    /// A worker's partition reached its end at `position` (recorded with the next write).
    pub(crate) fn mark_done(&mut self, topic: &TopicName, partition: i32, position: i64) -> Result<(), CliError> {
        match &mut self.worker {
            Some(ledger) => ledger.mark_done(topic, partition, position),
            None => Ok(()),
        }
    }

    /// Where a partition's data continues according to the manifest: the offset after its last
    /// segment or gap, and the next segment sequence number. Segments made durable after the
    /// manifest was last written are found by probing the following sequence numbers (see
    /// `adopt_orphans`); the checkpoint is then checked against the result.
    ///
    /// `manifest` is this state's manifest (`builder.build_in_progress()`), built once by the
    /// caller for all the partitions it resumes.
    pub(crate) fn resume_point(manifest: &Manifest, topic: &TopicName, partition: i32) -> (Option<i64>, u64) {
        let mut covered: Option<i64> = None;
        let mut next_sequence = 0;
        let entry = manifest.topic(topic.as_str()).and_then(|t| t.partition(partition));
        if let Some(last) = entry.and_then(|p| p.segment_files.last()) {
            covered = Some(last.last_offset);
            next_sequence = last.name.sequence() + 1;
        }
        if let Some(gap) = entry.and_then(|p| p.gaps.last()) {
            covered = Some(covered.map_or(gap.to_offset, |c| c.max(gap.to_offset)));
        }
        (covered.map(|c| c + 1), next_sequence)
    }

    /// Checks that everything the checkpoint says is stored is covered by the manifest's
    /// segments and gaps (after adoption); otherwise a segment the checkpoint relies on is gone.
    pub(crate) fn check_checkpoint(
        &self,
        topic: &TopicName,
        partition: i32,
        next_offset: Option<i64>,
    ) -> Result<(), CliError> {
        let Some(position) = self.checkpoint.position(topic.as_str(), partition) else {
            return Ok(());
        };
        if next_offset.is_none_or(|next| next <= position.offset) {
            return Err(CliError::Unparsable {
                key: layout::checkpoint_key(&self.backup_id),
                message: format!(
                    "it says {topic}/{partition} is stored up to offset {} in {}, but the segments found end {}; a \
                     segment is missing from storage",
                    position.offset,
                    position.segment,
                    next_offset.map_or_else(|| "before any offset".to_string(), |n| format!("at offset {}", n - 1))
                ),
            });
        }
        Ok(())
    }

    /// Records a durable segment in the manifest and the checkpoint (in memory).
    pub(crate) fn add_segment(
        &mut self,
        topic: &TopicName,
        partition: i32,
        file: SegmentFile,
        last_timestamp: i64,
    ) -> Result<(), CliError> {
        let position = PartitionCheckpoint {
            offset: file.last_offset,
            timestamp: last_timestamp,
            segment: file.name,
            segment_offset: file.size_bytes,
        };
        if let Some(ledger) = &mut self.worker {
            ledger.add_segment(topic, partition, &file)?;
        }
        self.builder.add_segment(topic, partition, file)?;
        // An adopted segment may be one the checkpoint already covers (the checkpoint is
        // written more often than the manifest): it never moves the checkpoint back.
        let behind = self
            .checkpoint
            .position(topic.as_str(), partition)
            .is_some_and(|current| current.offset >= position.offset);
        if !behind {
            self.checkpoint.record(topic, partition, position)?;
        }
        Ok(())
    }

    /// Records a gap (in memory); the caller writes the manifest before going on.
    pub(crate) fn add_gap(&mut self, topic: &TopicName, partition: i32, gap: Gap) -> Result<(), CliError> {
        if let Some(ledger) = &mut self.worker {
            ledger.add_gap(topic, partition, &gap)?;
        }
        self.builder.add_gap(topic, partition, gap)?;
        Ok(())
    }

    /// Adds or updates a topic's partition count and configs.
    /// Adds (or updates) a topic: its partition count, configs and Kafka's topic id. A topic
    /// whose id differs from the one recorded is another incarnation of the name (deleted and
    /// created again): refused, since the backup holds the first one's offsets.
    pub(crate) fn add_topic(
        &mut self,
        topic: TopicName,
        partition_count: u32,
        configs: BTreeMap<String, String>,
        topic_id: Option<&str>,
    ) -> Result<(), CliError> {
        if let (Some(recorded), Some(now)) = (self.builder.topic_id(&topic), topic_id)
            && recorded != now
        {
            return Err(topic_recreated(&self.backup_id, &topic, recorded, now));
        }
        self.builder.add_topic(topic.clone(), partition_count, configs)?;
        if let Some(id) = topic_id {
            self.builder.set_topic_id(&topic, id.to_owned());
        }
        Ok(())
    }

    /// The topic id recorded for `topic`.
    pub(crate) fn topic_id(&self, topic: &TopicName) -> Option<&str> {
        self.builder.topic_id(topic)
    }

    async fn put_versioned(
        &self,
        key: &str,
        body: Bytes,
        version: &Option<ObjectVersion>,
    ) -> Result<ObjectVersion, CliError> {
        let put = match version {
            Some(v) => self.storage.put_if_match(key, body, v).await,
            None => self.storage.put_if_absent(key, body).await,
        };
        match put {
            Ok(put) => Ok(put.version),
            Err(kbs_storage::Error::Precondition { .. }) | Err(kbs_storage::Error::AlreadyExists { .. }) => {
                Err(CliError::Locked(format!(
                    "{key} was changed by another writer since this run read it: this run lost its lease and stops \
                     without writing (backup {})",
                    self.backup_id
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Writes the checkpoint (compare-and-swap).
    pub(crate) async fn write_checkpoint(&mut self) -> Result<(), CliError> {
        if let Some(ledger) = &mut self.worker {
            return ledger.flush().await;
        }
        self.checkpoint.timestamp = now_utc();
        let key = layout::checkpoint_key(&self.backup_id);
        let body = Bytes::from(self.checkpoint.to_json_pretty());
        self.checkpoint_version = Some(self.put_versioned(&key, body, &self.checkpoint_version).await?);
        Ok(())
    }

    /// Writes the manifest with status `in_progress` (compare-and-swap).
    pub(crate) async fn write_manifest_in_progress(&mut self) -> Result<(), CliError> {
        if let Some(ledger) = &mut self.worker {
            return ledger.flush().await;
        }
        let manifest = self.builder.build_in_progress();
        self.write_manifest(&manifest).await
    }

    /// Writes the manifest with status `failed` and why.
    pub(crate) async fn write_manifest_failed(&mut self, failure: &str) -> Result<(), CliError> {
        if self.worker.is_some() {
            // One worker's failure is its own: the others go on, and the partitions it held are
            // assigned again when it leaves the group.
            return Ok(());
        }
        let manifest = self.builder.build_failed_because(failure);
        self.write_manifest(&manifest).await
    }

    /// Writes the final manifest, status `complete`: the commit point.
    pub(crate) async fn write_manifest_complete(&mut self) -> Result<Manifest, CliError> {
        if self.worker.is_some() {
            return Err(CliError::Locked(
                "a worker never writes the manifest complete itself; the workers' merge does".into(),
            ));
        }
        let manifest = self.builder.build_complete(now_utc())?;
        self.write_manifest(&manifest).await?;
        Ok(manifest)
    }

    async fn write_manifest(&mut self, manifest: &Manifest) -> Result<(), CliError> {
        let key = layout::manifest_key(&self.backup_id);
        let body = Bytes::from(manifest.to_json_pretty());
        self.manifest_version = Some(self.put_versioned(&key, body, &self.manifest_version).await?);
        Ok(())
    }
}

/// The refusal for a topic that was deleted and created again under the same name.
pub(crate) fn topic_recreated(backup_id: &BackupId, topic: &TopicName, recorded: &str, now: &str) -> CliError {
    CliError::SourceChanged(format!(
        "topic {topic} was deleted and created again (topic id {recorded} in backup {backup_id}, {now} now): its \
         offsets start over, so they cannot continue this backup's. What was backed up of the old topic is kept. \
         Back the new topic up under a new --backup-id, or leave it out here with --exclude {topic}"
    ))
}
