//! `kbs list`: the backups under a storage root, from their manifests alone.

use std::sync::Arc;

use futures::StreamExt;
use kbs_manifest::{BackupId, Manifest, layout};
use kbs_storage::ObjectStorage;
use serde::Serialize;

use crate::error::CliError;

/// One backup found under the root.
#[derive(Debug, Clone, Serialize)]
pub struct BackupSummary {
    /// The backup id (its folder name).
    pub backup_id: String,
    /// `in_progress`, `complete`, `failed`, `being deleted`, or why the manifest could not be
    /// read.
    pub status: String,
    /// When the backup started.
    pub created_at: Option<String>,
    /// When it completed.
    pub completed_at: Option<String>,
    /// Topics backed up.
    pub topics: u64,
    /// Partitions with data.
    pub partitions: u64,
    /// Records stored.
    pub records: u64,
    /// Bytes stored (segments).
    pub size_bytes: u64,
    /// Whether a `kbs backup` or workers of it hold a live lease of it now (only an
    /// `in_progress` backup is looked at; see [`crate::running::backup_activity`]).
    pub running: bool,
}

/// Lists the backups under `storage`: one delimiter listing of the root, then one read of
/// each backup's manifest (never a listing of every object), and for an unfinished backup one
/// read of its lease and one listing of its workers' presences.
pub async fn list(storage: Arc<dyn ObjectStorage>) -> Result<Vec<BackupSummary>, CliError> {
    let listing = storage.list_with_delimiter("").await?;
    let ids: Vec<String> = listing
        .common_prefixes
        .iter()
        .map(|p| p.trim_end_matches('/').to_string())
        .filter(|p| !p.is_empty())
        .collect();
    let summaries = futures::stream::iter(ids)
        .map(|id| {
            let storage = storage.clone();
            async move { summarize(storage, id).await }
        })
        .buffered(16)
        .collect::<Vec<_>>()
        .await;
    summaries.into_iter().filter_map(Result::transpose).collect()
}

async fn summarize(storage: Arc<dyn ObjectStorage>, id: String) -> Result<Option<BackupSummary>, CliError> {
    let Ok(backup_id) = BackupId::new(&id) else {
        // Not a name kbs would create: not a backup.
        return Ok(None);
    };
    let empty = |status: String| BackupSummary {
        backup_id: id.clone(),
        status,
        created_at: None,
        completed_at: None,
        topics: 0,
        partitions: 0,
        records: 0,
        size_bytes: 0,
        running: false,
    };
    if crate::prune::deletion_marker(&storage, &backup_id).await?.is_some() {
        return Ok(Some(empty(crate::error::BEING_DELETED.into())));
    }
    let got = match storage.get(&layout::manifest_key(&backup_id)).await {
        Ok(got) => got,
        Err(e) if e.is_not_found() => return Ok(Some(empty("no manifest".into()))),
        Err(e) => return Err(e.into()),
    };
    let manifest = match Manifest::from_json(&got.bytes) {
        Ok(m) => m,
        Err(e) => return Ok(Some(empty(format!("unreadable manifest: {e}")))),
    };
    let status = status_name(&manifest);
    let running = status == "in_progress"
        && crate::running::backup_activity(&storage, &backup_id)
            .await?
            .is_running();
    Ok(Some(BackupSummary {
        backup_id: id,
        status: status.to_string(),
        running,
        created_at: Some(manifest.created_at.as_str().to_string()),
        completed_at: manifest.completed_at.as_ref().map(|t| t.as_str().to_string()),
        topics: manifest.statistics.topics,
        partitions: manifest.statistics.partitions,
        records: manifest.statistics.records,
        size_bytes: manifest.statistics.compressed_bytes,
    }))
}

/// The manifest's status as written in JSON.
pub fn status_name(manifest: &Manifest) -> &'static str {
    match manifest.status {
        Some(kbs_manifest::BackupStatus::InProgress) => "in_progress",
        Some(kbs_manifest::BackupStatus::Complete) => "complete",
        Some(kbs_manifest::BackupStatus::Failed) => "failed",
        None if manifest.completed_at.is_some() => "complete",
        None => "unknown",
    }
}
