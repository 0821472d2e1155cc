//! A worker's presence: a lease of its own under `<backup-id>/workers/`, renewed while it runs
//! and deleted when it ends, so that `kbs delete` and `kbs prune` refuse the backup while any
//! worker of it (backup or restore) runs. Workers hold no writer lease: they fence each other
//! with the group generation and compare-and-swap instead (docs/DESIGN.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64};

use kbs_manifest::BackupId;
use kbs_storage::ObjectStorage;

use crate::error::CliError;
use crate::lease::Lease;

/// A held presence lease and its renewal task.
pub(crate) struct Presence {
    lease: Arc<tokio::sync::Mutex<Option<Lease>>>,
    renewer: tokio::task::JoinHandle<()>,
}

impl Presence {
    /// Announces a worker of `backup_id` (its backup, or a restore of it).
    pub(crate) async fn start(storage: Arc<dyn ObjectStorage>, backup_id: &BackupId) -> Result<Presence, CliError> {
        let lease = Lease::acquire_worker(storage, backup_id, crate::lease::DEFAULT_TTL).await?;
        let lease = Arc::new(tokio::sync::Mutex::new(Some(lease)));
        let renewer = crate::lease::spawn_renewal(
            lease.clone(),
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicI64::new(0)),
        );
        Ok(Presence { lease, renewer })
    }

    /// The worker ends: its presence is deleted (a worker killed leaves it to expire).
    pub(crate) async fn end(self) {
        self.renewer.abort();
        if let Some(held) = self.lease.lock().await.take()
            && let Err(e) = held.release().await
        {
            tracing::warn!("could not delete this worker's presence lease: {e}");
        }
    }
}
