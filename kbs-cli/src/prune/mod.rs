//! `kbs prune` and `kbs delete`: backups removed by a retention policy (restic's `forget`
//! rules, [`policy`]) or one by one, crash-safe ([`delete`]).
//!
//! A prune never deletes a backup that is not complete (an interrupted snapshot that a rerun
//! would resume, a continuous backup still running), one whose lease is held, or the newest
//! complete backup unless told; it finishes every deletion an earlier run (or `kbs delete`)
//! left unfinished among the backups it selects.

pub mod delete;
pub mod policy;

use std::sync::Arc;

use kbs_manifest::BackupId;
use kbs_storage::ObjectStorage;
use serde::Serialize;

pub use delete::{Deleted, DeletionMarker, delete_backup, deletion_marker, refuse_if_deleted};
pub use policy::{Candidate, RetentionPolicy, Verdict};

use crate::error::{BEING_DELETED, CliError};
use crate::lease::LeaseRecord;

/// What `kbs prune` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// The retention policy.
    pub policy: RetentionPolicy,
    /// Only backups whose ids match this glob (`*`, `?`); all when `None`.
    pub backup_ids: Option<String>,
    /// Only report what would be kept and deleted.
    pub dry_run: bool,
}

/// One backup as the prune judged it.
#[derive(Debug, Clone, Serialize)]
pub struct PruneVerdict {
    /// The backup id.
    pub backup_id: String,
    /// Its status (as `kbs list` shows it).
    pub status: String,
    /// When it started.
    pub created_at: Option<String>,
    /// Kept (`true`) or deleted.
    pub keep: bool,
    /// Why.
    pub reasons: Vec<String>,
}

/// What `kbs prune` decided and did.
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    /// Only reported.
    pub dry_run: bool,
    /// Every selected backup, newest first.
    pub verdicts: Vec<PruneVerdict>,
    /// The backups deleted (none in a dry run).
    pub deleted: Vec<Deleted>,
}

/// Applies `options.policy` to the backups under `storage` and deletes what it does not keep.
pub async fn prune(storage: Arc<dyn ObjectStorage>, options: &PruneOptions) -> Result<PruneReport, CliError> {
    if !options.policy.has_rules() {
        return Err(CliError::InvalidArgument {
            flag: "keep-last",
            message: "a prune needs at least one rule (--keep-last, --keep-within, --keep-daily, --keep-weekly, \
                      --keep-monthly); to delete one backup use kbs delete"
                .into(),
        });
    }
    let backups: Vec<_> = crate::list::list(storage.clone())
        .await?
        .into_iter()
        .filter(|b| {
            options
                .backup_ids
                .as_deref()
                .is_none_or(|glob| crate::backup::glob_match(glob, &b.backup_id))
        })
        .collect();
    let host = crate::lease::host_name();
    let mut verdicts = Vec::new();
    let mut candidates = Vec::new();
    for b in &backups {
        let id = BackupId::new(&b.backup_id)?;
        let verdict = |keep: bool, reason: String| PruneVerdict {
            backup_id: b.backup_id.clone(),
            status: b.status.clone(),
            created_at: b.created_at.clone(),
            keep,
            reasons: vec![reason],
        };
        if b.status == BEING_DELETED {
            verdicts.push(verdict(false, "its deletion started earlier: finishing it".into()));
        } else if b.status != "complete" {
            verdicts.push(verdict(
                true,
                format!("{}: never pruned (kbs delete --force deletes it)", b.status),
            ));
        } else if let Some(holder) = live_lease(&storage, &id, &host).await? {
            verdicts.push(verdict(
                true,
                format!("its lease is held by {}: a backup run is writing it", holder.holder()),
            ));
        } else if let Some(worker) = crate::lease::live_worker_leases(&storage, &id).await?.first() {
            verdicts.push(verdict(
                true,
                format!("workers (--workers) of it are running, one {}", worker.holder()),
            ));
        } else {
            let created_at_ms = b
                .created_at
                .as_deref()
                .and_then(|t| t.parse::<kbs_manifest::UtcTimestamp>().ok())
                .map_or(0, |t| t.unix_millis());
            candidates.push(Candidate {
                backup_id: b.backup_id.clone(),
                created_at_ms,
            });
        }
    }
    for v in policy::apply(&options.policy, &candidates) {
        let b = backups
            .iter()
            .find(|b| b.backup_id == v.backup_id)
            .expect("a candidate");
        verdicts.push(PruneVerdict {
            backup_id: v.backup_id,
            status: b.status.clone(),
            created_at: b.created_at.clone(),
            keep: v.keep,
            reasons: v.reasons,
        });
    }
    // Newest first, as the rules see them; unknown times last.
    verdicts.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| a.backup_id.cmp(&b.backup_id))
    });
    let mut deleted = Vec::new();
    if !options.dry_run {
        // Oldest first: an interrupted prune has removed the backups least likely to be needed.
        for v in verdicts.iter().rev().filter(|v| !v.keep) {
            let id = BackupId::new(&v.backup_id)?;
            let reason = format!("kbs prune: {}", v.reasons.join(", "));
            deleted.push(delete_backup(storage.clone(), &id, &reason, false).await?);
        }
    }
    Ok(PruneReport {
        dry_run: options.dry_run,
        verdicts,
        deleted,
    })
}

/// The holder of `backup_id`'s lease, when it may still be alive.
async fn live_lease(
    storage: &Arc<dyn ObjectStorage>,
    backup_id: &BackupId,
    host: &str,
) -> Result<Option<LeaseRecord>, CliError> {
    let record = crate::lease::read_lease(storage, &kbs_manifest::layout::lease_key(backup_id)).await?;
    Ok(record.filter(|record| record.staleness(crate::lease::unix_now_ms(), host).is_none()))
}

/// The report as text: one line per backup, then what was deleted.
pub fn report_text(report: &PruneReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for v in &report.verdicts {
        let action = match (v.keep, report.dry_run) {
            (true, _) => "keep",
            (false, true) => "would delete",
            (false, false) => "delete",
        };
        let _ = writeln!(
            out,
            "{action:<12} {:<32} {:<12} {:<25} {}",
            v.backup_id,
            v.status,
            v.created_at.as_deref().unwrap_or("-"),
            v.reasons.join(", ")
        );
    }
    for d in &report.deleted {
        let _ = writeln!(
            out,
            "deleted {} ({} objects{})",
            d.backup_id,
            d.objects,
            if d.resumed {
                ", finishing an earlier deletion"
            } else {
                ""
            }
        );
    }
    let kept = report.verdicts.iter().filter(|v| v.keep).count();
    let _ = writeln!(
        out,
        "{kept} kept, {} {}",
        report.verdicts.len() - kept,
        if report.dry_run {
            "would be deleted (dry run)"
        } else {
            "deleted"
        }
    );
    out
}
