//! Deleting one backup, crash-safe.
//!
//! 1. The backup's lease is taken (a running backup, or another deletion, holds it: refused),
//!    and no restore of the backup may be running (its lease is live: refused).
//! 2. The deletion marker `<backup-id>/deleting.json` is written. From then on the backup is
//!    gone for every reader (`list` says so, `restore`, `validate`, `describe` and `backup`
//!    refuse it with [`CliError::BeingDeleted`]), before anything of it is removed.
//! 3. Every other object under `<backup-id>/` is deleted, in batches (one S3 DeleteObjects
//!    request per 1,000 keys): segments, checkpoint, manifest, restore progress and leases.
//! 4. The lease is released, and the marker deleted last.
//!
//! A deletion killed at any point leaves either nothing changed (before the marker) or the
//! marker, and running it again (a `kbs delete` or a prune) finishes it. Only keys under the
//! backup's own prefix are listed, so no object of another backup is ever touched.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use bytes::Bytes;
use futures::TryStreamExt as _;
use kbs_manifest::{BackupId, Manifest, layout};
use kbs_storage::ObjectStorage;
use serde::{Deserialize, Serialize};

use crate::error::CliError;
use crate::lease::{Lease, LeaseRecord};

/// What the deletion marker holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeletionMarker {
    /// The backup being deleted.
    pub backup_id: String,
    /// When the deletion started (RFC 3339).
    pub started_at: String,
    /// Why (`kbs delete`, or the prune rule that dropped it).
    pub reason: String,
}

/// What deleting one backup did.
#[derive(Debug, Clone, Serialize)]
pub struct Deleted {
    /// The backup.
    pub backup_id: String,
    /// Objects deleted (marker and lease included).
    pub objects: u64,
    /// Whether an interrupted deletion was finished.
    pub resumed: bool,
}

/// Keys deleted per request.
const BATCH: usize = 1000;

/// The deletion marker of `backup_id`, if it is being deleted.
pub async fn deletion_marker(
    storage: &Arc<dyn ObjectStorage>,
    backup_id: &BackupId,
) -> Result<Option<DeletionMarker>, CliError> {
    let key = layout::deletion_marker_key(backup_id);
    match storage.get(&key).await {
        Ok(got) => Ok(Some(serde_json::from_slice(&got.bytes).unwrap_or_else(|_| {
            DeletionMarker {
                backup_id: backup_id.to_string(),
                started_at: "(unreadable marker)".into(),
                reason: String::new(),
            }
        }))),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Fails with [`CliError::BeingDeleted`] when `backup_id` is being deleted.
pub async fn refuse_if_deleted(storage: &Arc<dyn ObjectStorage>, backup_id: &BackupId) -> Result<(), CliError> {
    match deletion_marker(storage, backup_id).await? {
        Some(marker) => Err(CliError::BeingDeleted {
            backup_id: backup_id.to_string(),
            started: marker.started_at,
        }),
        None => Ok(()),
    }
}

/// Deletes backup `backup_id` (see the module docs), or finishes its interrupted deletion.
/// `allow_incomplete`: delete a backup whose manifest is not complete (an interrupted snapshot
/// a rerun would resume). `reason` is recorded in the marker.
pub async fn delete_backup(
    storage: Arc<dyn ObjectStorage>,
    backup_id: &BackupId,
    reason: &str,
    allow_incomplete: bool,
) -> Result<Deleted, CliError> {
    let marker_key = layout::deletion_marker_key(backup_id);
    let lease_key = layout::lease_key(backup_id);
    let resumed = deletion_marker(&storage, backup_id).await?.is_some();
    if !resumed {
        check_deletable(&storage, backup_id, allow_incomplete).await?;
    }
    let lease = Lease::acquire(storage.clone(), backup_id, crate::lease::DEFAULT_TTL).await?;
    let lease = Arc::new(tokio::sync::Mutex::new(Some(lease)));
    let lost = Arc::new(AtomicBool::new(false));
    let renewer = crate::lease::spawn_renewal(lease.clone(), lost.clone(), Arc::new(AtomicI64::new(0)));
    let result = async {
        if !resumed {
            // Checked again under the lease: a restore that started meanwhile.
            refuse_running_restores(&storage, backup_id).await?;
            refuse_running_workers(&storage, backup_id).await?;
            let marker = DeletionMarker {
                backup_id: backup_id.to_string(),
                started_at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
                reason: reason.to_owned(),
            };
            let body = Bytes::from(serde_json::to_vec_pretty(&marker).expect("marker serialises"));
            match storage.put_if_absent(&marker_key, body).await {
                Ok(_) | Err(kbs_storage::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut keys: Vec<String> = storage
            .list(&layout::backup_prefix(backup_id), None)
            .map_ok(|meta| meta.key)
            .try_collect()
            .await?;
        keys.retain(|k| *k != marker_key && *k != lease_key);
        // Segments first, the manifest last: what is left of an interrupted deletion still
        // describes itself.
        keys.sort_by_key(|k| (k.ends_with("/manifest.json"), k.clone()));
        for batch in keys.chunks(BATCH) {
            if lost.load(Ordering::SeqCst) {
                return Err(CliError::Locked(format!(
                    "backup {backup_id}: another process took the lease during the deletion; stopped (rerun to \
                     finish)"
                )));
            }
            storage.delete_many(batch).await?;
        }
        Ok(keys.len() as u64)
    }
    .await;
    renewer.abort();
    let held = lease.lock().await.take();
    let deleted = match result {
        Ok(deleted) => deleted,
        Err(e) => {
            if let Some(held) = held
                && let Err(release) = held.release().await
            {
                tracing::warn!("could not release the lease of backup {backup_id}: {release}");
            }
            return Err(e);
        }
    };
    if let Some(held) = held {
        held.release().await?;
    }
    storage.delete(&marker_key).await?;
    Ok(Deleted {
        backup_id: backup_id.to_string(),
        objects: deleted + 2,
        resumed,
    })
}

/// Refuses a backup that does not exist, or (without `allow_incomplete`) is not complete.
async fn check_deletable(
    storage: &Arc<dyn ObjectStorage>,
    backup_id: &BackupId,
    allow_incomplete: bool,
) -> Result<(), CliError> {
    let manifest_key = layout::manifest_key(backup_id);
    match storage.get(&manifest_key).await {
        Ok(got) => {
            // An unreadable manifest does not keep a backup from being deleted.
            if let Ok(manifest) = Manifest::from_json(&got.bytes)
                && !manifest.is_complete()
                && !allow_incomplete
            {
                return Err(CliError::InvalidArgument {
                    flag: "force",
                    message: format!(
                        "backup {backup_id} is not complete (status {}): rerunning its backup command would resume \
                         it. Pass --force to delete it anyway",
                        crate::list::status_name(&manifest)
                    ),
                });
            }
            Ok(())
        }
        Err(e) if e.is_not_found() => {
            let mut any = storage.list(&layout::backup_prefix(backup_id), None);
            if any.try_next().await?.is_none() {
                return Err(CliError::BackupNotFound {
                    backup_id: backup_id.to_string(),
                    storage: storage.describe().to_string(),
                    key: manifest_key,
                });
            }
            // Objects without a manifest (a backup that never committed): deletable.
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Refuses while a worker (`--workers`) of the backup or of a restore of it runs (its
/// presence lease is live).
async fn refuse_running_workers(storage: &Arc<dyn ObjectStorage>, backup_id: &BackupId) -> Result<(), CliError> {
    let live = crate::lease::live_worker_leases(storage, backup_id).await?;
    if let Some(first) = live.first() {
        return Err(CliError::Locked(format!(
            "backup {backup_id} is shared by {} running workers (--workers; one is {}): stop them first, or wait \
             for them to end",
            live.len(),
            first.holder()
        )));
    }
    Ok(())
}

/// Refuses while a restore of the backup is running (its lease is live).
async fn refuse_running_restores(storage: &Arc<dyn ObjectStorage>, backup_id: &BackupId) -> Result<(), CliError> {
    let prefix = format!("{backup_id}/restores/");
    let listing = storage.list_with_delimiter(&prefix).await?;
    let host = crate::lease::host_name();
    for dir in listing.common_prefixes {
        let restore_id = dir
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let key = crate::lease::restore_lease_key(backup_id, &restore_id);
        let held = match storage.get(&key).await {
            Ok(got) => got,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        let Ok(record) = serde_json::from_slice::<LeaseRecord>(&held.bytes) else {
            continue;
        };
        if record.staleness(crate::lease::unix_now_ms(), &host).is_none() {
            return Err(CliError::Locked(format!(
                "restore {restore_id} of backup {backup_id} is running ({}); wait for it to end, or run `kbs unlock \
                 --backup-id {backup_id} --restore-id {restore_id}` if it is gone",
                record.holder()
            )));
        }
    }
    Ok(())
}
