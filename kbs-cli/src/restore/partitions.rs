//! A restore shared by workers (`kbs restore --workers`) keeps one progress object per source
//! partition (each restored into one target partition) instead of `progress.json`:
//!
//! `<backup-id>/restores/<restore-id>/partitions/<topic>/<partition>.json`
//!
//! ```json
//! {"source": "orders/3",
//!  "owner": {"member_id": "kbs-5f0c…", "generation": 4, "host": "node-2", "pid": 4242},
//!  "progress": { …the partition's entry of progress.json (see progress.rs)… }}
//! ```
//!
//! `progress` is absent until the owner recorded where the partition starts in its target.
//!
//! A topic restored into another partitioning (`--repartition`) is one sequence, so it is one
//! unit of work: its object is `<backup-id>/restores/<restore-id>/partitions/<topic>.json`,
//! with `"source": "<topic>"` and `reshaped` (the topic's entry under `reshaped` in
//! progress.json) in place of `progress`.
//!
//! A worker takes a partition (or a reshaped topic) over by rewriting its object with itself as `owner`
//! (compare-and-swap), and from then on writes it only over the version it wrote: a write
//! refused means another worker took the partition over, and this one stops producing.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use kbs_manifest::BackupId;
use kbs_storage::{ObjectStorage, ObjectVersion};
use serde::{Deserialize, Serialize};

use super::progress::{PartitionProgress, ReshapedProgress, RestoreProgress};
use crate::error::CliError;
use crate::workers::{Owner, commit_refused, describe_owner, read_json_objects};

/// How often a takeover reads and tries again when the object changed between its read and its
/// write (the previous owner saving its last progress as it stops).
const TAKEOVER_ATTEMPTS: u32 = 10;

/// Objects written at once.
const PARALLEL_WRITES: usize = 16;

/// One source partition's progress object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PartitionObject {
    /// `topic/partition` of the source; the topic alone for a reshaped topic.
    pub(crate) source: String,
    /// The worker that took it over last.
    #[serde(default)]
    pub(crate) owner: Option<Owner>,
    /// Its progress, once its start in the target is recorded.
    #[serde(default)]
    pub(crate) progress: Option<PartitionProgress>,
    /// A reshaped topic's progress, once its targets' starts are recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reshaped: Option<ReshapedProgress>,
}

/// The folder of a shared restore's progress objects.
pub(crate) fn partitions_prefix(backup_id: &BackupId, restore_id: &str) -> String {
    format!("{backup_id}/restores/{restore_id}/partitions/")
}

fn object_key(backup_id: &BackupId, restore_id: &str, source: &str) -> String {
    format!("{}{source}.json", partitions_prefix(backup_id, restore_id))
}

/// Every progress object of a shared restore, by source (`topic/partition`).
pub(crate) async fn load_all(
    storage: &Arc<dyn ObjectStorage>,
    backup_id: &BackupId,
    restore_id: &str,
) -> Result<BTreeMap<String, PartitionObject>, CliError> {
    let mut all = BTreeMap::new();
    for (key, bytes) in read_json_objects(storage, &partitions_prefix(backup_id, restore_id)).await? {
        let parsed: PartitionObject = parse(&key, &bytes)?;
        if key != object_key(backup_id, restore_id, &parsed.source) {
            return Err(CliError::Unparsable {
                key,
                message: format!("it describes {}, which belongs under another key", parsed.source),
            });
        }
        all.insert(parsed.source.clone(), parsed);
    }
    Ok(all)
}

/// Every recorded partition progress of a shared restore, as one progress document (for
/// consumer-group translation and `kbs status`).
pub(crate) fn as_document(
    backup_id: &BackupId,
    restore_id: &str,
    objects: &BTreeMap<String, PartitionObject>,
) -> RestoreProgress {
    RestoreProgress {
        restore_id: restore_id.to_string(),
        backup_id: backup_id.to_string(),
        partitions: objects
            .iter()
            .filter_map(|(source, o)| o.progress.clone().map(|p| (source.clone(), p)))
            .collect(),
        reshaped: objects
            .iter()
            .filter_map(|(source, o)| o.reshaped.clone().map(|r| (source.clone(), r)))
            .collect(),
        ..Default::default()
    }
}

fn parse(key: &str, bytes: &[u8]) -> Result<PartitionObject, CliError> {
    serde_json::from_slice(bytes).map_err(|e| CliError::Unparsable {
        key: key.to_string(),
        message: e.to_string(),
    })
}

/// One partition this worker owns: what it last wrote, at which version.
#[derive(Debug)]
struct Owned {
    written: PartitionObject,
    version: ObjectVersion,
}

/// The progress objects of the partitions a worker owns.
#[derive(Debug)]
pub(crate) struct RestoreLedger {
    storage: Arc<dyn ObjectStorage>,
    backup_id: BackupId,
    restore_id: String,
    owner: Owner,
    owned: BTreeMap<String, Owned>,
}

impl RestoreLedger {
    /// Takes over `sources` (`topic/partition`, or a reshaped topic) for `owner`, each by
    /// compare-and-swap.
    pub(crate) async fn take_over(
        storage: Arc<dyn ObjectStorage>,
        backup_id: &BackupId,
        restore_id: &str,
        owner: Owner,
        sources: &[String],
    ) -> Result<RestoreLedger, CliError> {
        let taken: Vec<(String, Owned)> = futures::stream::iter(sources.iter())
            .map(|source| {
                let storage = storage.clone();
                let owner = owner.clone();
                let source = source.clone();
                async move {
                    let owned = take_over_one(&storage, backup_id, restore_id, &owner, &source).await?;
                    Ok::<_, CliError>((source, owned))
                }
            })
            .buffer_unordered(PARALLEL_WRITES)
            .try_collect()
            .await?;
        Ok(RestoreLedger {
            storage,
            backup_id: backup_id.clone(),
            restore_id: restore_id.to_string(),
            owner,
            owned: taken.into_iter().collect(),
        })
    }

    /// The recorded progress of the partitions owned, by source.
    pub(crate) fn progress(&self) -> impl Iterator<Item = (&String, &PartitionProgress)> {
        self.owned
            .iter()
            .filter_map(|(source, o)| o.written.progress.as_ref().map(|p| (source, p)))
    }

    /// The recorded progress of the reshaped topics owned, by source topic.
    pub(crate) fn reshaped(&self) -> impl Iterator<Item = (&String, &ReshapedProgress)> {
        self.owned
            .iter()
            .filter_map(|(source, o)| o.written.reshaped.as_ref().map(|r| (source, r)))
    }

    /// Checks that every owned object is still as this worker wrote it; [`CliError::Fenced`]
    /// naming those another worker took over since.
    pub(crate) async fn verify(&self) -> Result<(), CliError> {
        let mut taken_by = Vec::new();
        for (source, owned) in &self.owned {
            let key = object_key(&self.backup_id, &self.restore_id, source);
            let got = self.storage.get(&key).await?;
            if got.meta.version != owned.version {
                let now = parse(&key, &got.bytes)?;
                let by = now
                    .owner
                    .map_or_else(|| "another writer".to_string(), |o| describe_owner(&o));
                taken_by.push(format!("{source} (now {by})"));
            }
        }
        if taken_by.is_empty() {
            return Ok(());
        }
        Err(CliError::Fenced(format!(
            "take-over refused for {}: taken over since this worker ({}) took them",
            taken_by.join(", "),
            describe_owner(&self.owner)
        )))
    }

    /// Writes the progress of every owned partition that changed in `document`, each over the
    /// version this worker wrote last. Refused ([`CliError::Fenced`]) when another worker took
    /// one over; the others are written all the same.
    pub(crate) async fn save(&mut self, document: &RestoreProgress) -> Result<(), CliError> {
        let jobs: Vec<(String, PartitionObject, ObjectVersion)> = self
            .owned
            .iter()
            .filter_map(|(source, owned)| {
                let mut object = owned.written.clone();
                if let Some(now) = document.partitions.get(source) {
                    object.progress = Some(now.clone());
                }
                if let Some(now) = document.reshaped.get(source) {
                    object.reshaped = Some(now.clone());
                }
                (object != owned.written).then(|| (source.clone(), object, owned.version.clone()))
            })
            .collect();
        let storage = self.storage.clone();
        let prefix = partitions_prefix(&self.backup_id, &self.restore_id);
        let writes: Vec<Written> = futures::stream::iter(jobs)
            .map(|(source, object, version)| {
                put_over(
                    storage.clone(),
                    format!("{prefix}{source}.json"),
                    source,
                    object,
                    version,
                )
            })
            .buffer_unordered(PARALLEL_WRITES)
            .collect()
            .await;
        let mut refused = Vec::new();
        let mut failure = None;
        for (source, written) in writes {
            match written {
                Ok(Some((object, version))) => {
                    self.owned.insert(
                        source,
                        Owned {
                            written: object,
                            version,
                        },
                    );
                }
                Ok(None) => refused.push(source),
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
        for source in &refused {
            let key = object_key(&self.backup_id, &self.restore_id, source);
            let by = match self.storage.get(&key).await {
                Ok(got) => parse(&key, &got.bytes)?
                    .owner
                    .map_or_else(|| "another writer".to_string(), |o| describe_owner(&o)),
                Err(_) => "another writer".to_string(),
            };
            taken_by.push(format!("{source} (now {by})"));
            self.owned.remove(source);
        }
        Err(commit_refused(&taken_by, &self.owner))
    }
}

/// What one write of [`RestoreLedger::save`] gave: the object and its new version, `None` when
/// refused.
type Written = (String, Result<Option<(PartitionObject, ObjectVersion)>, CliError>);

/// Writes `object` at `key` over `version` (owned arguments: the future is `Send` for any
/// caller).
async fn put_over(
    storage: Arc<dyn ObjectStorage>,
    key: String,
    source: String,
    object: PartitionObject,
    version: ObjectVersion,
) -> Written {
    let body = Bytes::from(serde_json::to_vec_pretty(&object).expect("progress serialises"));
    let written = match storage.put_if_match(&key, body, &version).await {
        Ok(put) => Ok(Some((object, put.version))),
        Err(kbs_storage::Error::Precondition { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    };
    (source, written)
}

async fn take_over_one(
    storage: &Arc<dyn ObjectStorage>,
    backup_id: &BackupId,
    restore_id: &str,
    owner: &Owner,
    source: &str,
) -> Result<Owned, CliError> {
    let key = object_key(backup_id, restore_id, source);
    for _ in 0..TAKEOVER_ATTEMPTS {
        let (mut object, version) = match storage.get(&key).await {
            Ok(got) => (parse(&key, &got.bytes)?, Some(got.meta.version)),
            Err(e) if e.is_not_found() => (
                PartitionObject {
                    source: source.to_string(),
                    owner: None,
                    progress: None,
                    reshaped: None,
                },
                None,
            ),
            Err(e) => return Err(e.into()),
        };
        if let Some(current) = &object.owner
            && current.generation > owner.generation
        {
            return Err(CliError::Fenced(format!(
                "take-over refused for {source} (now {}): a later generation than this worker's ({})",
                describe_owner(current),
                describe_owner(owner)
            )));
        }
        object.owner = Some(owner.clone());
        let body = Bytes::from(serde_json::to_vec_pretty(&object).expect("progress serialises"));
        let put = match &version {
            Some(v) => storage.put_if_match(&key, body, v).await,
            None => storage.put_if_absent(&key, body).await,
        };
        match put {
            Ok(put) => {
                return Ok(Owned {
                    written: object,
                    version: put.version,
                });
            }
            Err(kbs_storage::Error::Precondition { .. }) | Err(kbs_storage::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(CliError::Fenced(format!(
        "{source}: could not take it over, another writer kept changing its progress object"
    )))
}
