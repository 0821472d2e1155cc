//! `kbs status`: the backups and restores under a storage root that are running (or whose
//! holder died without releasing its lease), from their leases, checkpoints, manifests and
//! restore progress documents; with a cluster, each backed-up partition's lag to its log end.
//!
//! Nothing is written: status only reads objects, so it can run beside the jobs it watches.

use std::collections::BTreeMap;
use std::sync::Arc;

use kbs_kafka::{KafkaClient, OffsetSpec};
use kbs_manifest::{BackupId, Checkpoint, Manifest, layout};
use kbs_storage::{ObjectStorage, ObjectStorageExt as _};
use serde::Serialize;

use crate::error::CliError;
use crate::restore::RestoreProgress;
use crate::workers::{PartitionProgress, SnapshotCut};

/// Who holds a lease, and whether it may still be alive.
#[derive(Debug, Clone, Serialize)]
pub struct Holder {
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// The run's random id.
    pub run_id: String,
    /// When it last renewed the lease (Unix ms).
    pub renewed_at_ms: i64,
    /// When the lease expires unless renewed (Unix ms).
    pub expires_at_ms: i64,
    /// Why the lease may be taken over (its holder is gone or late), or `None` while it may
    /// still be running.
    pub stale: Option<String>,
}

/// A backup's state.
#[derive(Debug, Clone, Serialize)]
pub struct BackupState {
    /// The backup id.
    pub backup_id: String,
    /// The manifest's status (`in_progress`, `complete`, …; `none` before the first commit).
    pub status: String,
    /// The lease's holder, if a run holds (or left) it.
    pub holder: Option<Holder>,
    /// When the backup started (RFC 3339).
    pub created_at: Option<String>,
    /// Records stored (as of the last commit).
    pub records: u64,
    /// Bytes of segments stored.
    pub bytes: u64,
    /// When the checkpoint was last written (RFC 3339): the last commit.
    pub last_commit: Option<String>,
    /// Per partition: where the backup stands and, with a cluster, its lag.
    pub partitions: Vec<PartitionState>,
    /// A backup shared by workers (`kbs backup --workers`): each worker that owns partitions,
    /// from the partitions' progress objects. Empty for a backup run by one process.
    pub workers: Vec<WorkerState>,
}

/// A worker of a shared backup, as the progress objects of its partitions show it.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerState {
    /// Its member id in the group.
    pub member_id: String,
    /// The latest group generation it took partitions over in.
    pub generation: i32,
    /// Its host.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// Partitions whose progress object names it as owner.
    pub partitions: usize,
    /// Of those, partitions done.
    pub partitions_done: usize,
    /// When it last wrote one of them (RFC 3339; empty where not recorded).
    pub last_commit: String,
}

/// One backed-up partition.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionState {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The next offset the backup will store.
    pub next_offset: i64,
    /// The partition's log end (high watermark), when a cluster was given.
    pub log_end: Option<i64>,
    /// Offsets between the two (`log_end - next_offset`, at least 0).
    pub lag: Option<i64>,
    /// A shared backup's snapshot end of the partition (its cut).
    pub snapshot_end: Option<i64>,
    /// A shared backup's worker owning the partition (member id).
    pub owner: Option<String>,
    /// A shared backup's partition reached its snapshot end.
    pub done: Option<bool>,
}

/// A restore's state.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreState {
    /// The backup restored.
    pub backup_id: String,
    /// The restore id.
    pub restore_id: String,
    /// The lease's holder, if a run holds (or left) it.
    pub holder: Option<Holder>,
    /// When its progress was last saved (Unix ms).
    pub updated_at_ms: i64,
    /// Records restored so far (all runs).
    pub records: u64,
    /// Key and value bytes restored so far.
    pub bytes: u64,
    /// Target partitions done, of all.
    pub partitions_done: usize,
    /// Target partitions of the restore.
    pub partitions_total: usize,
    /// Per target partition.
    pub partitions: Vec<RestorePartitionState>,
    /// A restore shared by workers (`kbs restore --workers`): each worker that owns
    /// partitions. Empty for a restore run by one process.
    pub workers: Vec<WorkerState>,
}

/// One partition of a restore.
#[derive(Debug, Clone, Serialize)]
pub struct RestorePartitionState {
    /// Where its records come from (`topic/partition`, or `topic/*` for a repartitioned topic).
    pub source: String,
    /// Where they go (`topic/partition`).
    pub target: String,
    /// Records restored.
    pub records: u64,
    /// The target offset after the last acknowledged record.
    pub next_target_offset: i64,
    /// Every record of it is restored.
    pub done: bool,
    /// A shared restore's worker owning the partition (member id).
    pub owner: Option<String>,
}

/// What `kbs status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// When it was read (Unix ms).
    pub at_ms: i64,
    /// Backups: running ones, or the one asked for.
    pub backups: Vec<BackupState>,
    /// Restores: running ones, or those of the backup asked for.
    pub restores: Vec<RestoreState>,
}

/// Reads the state of the jobs under `storage`: every backup and restore that has a lease
/// object, or, with `backup_id`, that backup and all its restores. With `client`, each
/// backed-up partition's lag.
pub async fn status(
    storage: Arc<dyn ObjectStorage>,
    backup_id: Option<&BackupId>,
    client: Option<&KafkaClient>,
) -> Result<StatusReport, CliError> {
    let at_ms = crate::lease::unix_now_ms();
    let host = crate::lease::host_name();
    let ids: Vec<BackupId> = match backup_id {
        Some(id) => vec![id.clone()],
        None => storage
            .list_with_delimiter("")
            .await?
            .common_prefixes
            .iter()
            .filter_map(|p| BackupId::new(p.trim_end_matches('/')).ok())
            .collect(),
    };
    let mut report = StatusReport {
        at_ms,
        backups: Vec::new(),
        restores: Vec::new(),
    };
    for id in &ids {
        let holder = lease_holder(&storage, &layout::lease_key(id), at_ms, &host).await?;
        if backup_id.is_some() || holder.is_some() || shared_and_running(&storage, id).await? {
            report.backups.push(backup_state(&storage, id, holder, client).await?);
        }
        let prefix = format!("{id}/restores/");
        for dir in storage.list_with_delimiter(&prefix).await?.common_prefixes {
            let restore_id = dir
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            let lease_key = crate::lease::restore_lease_key(id, &restore_id);
            let holder = lease_holder(&storage, &lease_key, at_ms, &host).await?;
            if backup_id.is_none() && holder.is_none() && !shared_restore_running(&storage, id, &restore_id).await? {
                continue;
            }
            if let Some(state) = restore_state(&storage, id, &restore_id, holder).await? {
                report.restores.push(state);
            }
        }
    }
    Ok(report)
}

async fn lease_holder(
    storage: &Arc<dyn ObjectStorage>,
    key: &str,
    now_ms: i64,
    host: &str,
) -> Result<Option<Holder>, CliError> {
    let Some(record) = crate::lease::read_lease(storage, key).await? else {
        return Ok(None);
    };
    Ok(Some(Holder {
        stale: record.staleness(now_ms, host),
        host: record.host,
        pid: record.pid,
        run_id: record.run_id,
        renewed_at_ms: record.renewed_at_ms,
        expires_at_ms: record.expires_at_ms,
    }))
}

/// Counts a partition `owner` owns (`done` or not, its object written `at`) into `workers`.
fn count_owned(workers: &mut BTreeMap<String, WorkerState>, owner: &crate::workers::Owner, done: bool, at: &str) {
    let worker = workers.entry(owner.member_id.clone()).or_insert_with(|| WorkerState {
        member_id: owner.member_id.clone(),
        generation: owner.generation,
        host: owner.host.clone(),
        pid: owner.pid,
        partitions: 0,
        partitions_done: 0,
        last_commit: String::new(),
    });
    worker.generation = worker.generation.max(owner.generation);
    worker.partitions += 1;
    worker.partitions_done += usize::from(done);
    if worker.last_commit.as_str() < at {
        worker.last_commit = at.to_string();
    }
}

/// Whether restore `restore_id` of `id` is shared by workers and not complete yet.
async fn shared_restore_running(
    storage: &Arc<dyn ObjectStorage>,
    id: &BackupId,
    restore_id: &str,
) -> Result<bool, CliError> {
    if storage
        .exists(&format!("{id}/restores/{restore_id}/complete.json"))
        .await?
    {
        return Ok(false);
    }
    let listing = storage
        .list_with_delimiter(&format!("{id}/restores/{restore_id}/partitions/"))
        .await?;
    Ok(!listing.common_prefixes.is_empty() || !listing.objects.is_empty())
}

/// Whether `id` is shared by workers and not complete yet.
async fn shared_and_running(storage: &Arc<dyn ObjectStorage>, id: &BackupId) -> Result<bool, CliError> {
    if SnapshotCut::load(storage, id).await?.is_none() {
        return Ok(false);
    }
    let complete = match storage.get(&layout::manifest_key(id)).await {
        Ok(got) => Manifest::from_json(&got.bytes).is_ok_and(|m| m.is_complete()),
        Err(e) if e.is_not_found() => false,
        Err(e) => return Err(e.into()),
    };
    Ok(!complete)
}

/// A shared backup's partitions and workers, from its cut and progress objects.
async fn shared_state(
    storage: &Arc<dyn ObjectStorage>,
    id: &BackupId,
) -> Result<Option<(Vec<PartitionState>, Vec<WorkerState>, Option<String>)>, CliError> {
    let Some(cut) = SnapshotCut::load(storage, id).await? else {
        return Ok(None);
    };
    let progress = PartitionProgress::load_all(storage, id).await?;
    let mut workers: BTreeMap<String, WorkerState> = BTreeMap::new();
    let mut last_commit: Option<String> = None;
    let mut partitions = Vec::new();
    for (topic, partition, start, end) in cut.partitions() {
        let p = progress.get(&(topic.clone(), partition));
        let done = p.is_some_and(|p| p.done);
        if let Some(p) = p {
            let at = p.updated_at.to_string();
            if last_commit.as_ref().is_none_or(|l| *l < at) {
                last_commit = Some(at.clone());
            }
            if let Some(owner) = &p.owner {
                count_owned(&mut workers, owner, done, &at);
            }
        }
        partitions.push(PartitionState {
            topic: topic.to_string(),
            partition,
            next_offset: p.and_then(|p| p.next_offset).unwrap_or(start),
            log_end: None,
            lag: None,
            // A continuous backup's catalogue has no end.
            snapshot_end: (!cut.continuous).then_some(end),
            owner: p.and_then(|p| p.owner.as_ref()).map(|o| o.member_id.clone()),
            done: (!cut.continuous).then_some(done),
        });
    }
    Ok(Some((partitions, workers.into_values().collect(), last_commit)))
}

async fn backup_state(
    storage: &Arc<dyn ObjectStorage>,
    id: &BackupId,
    holder: Option<Holder>,
    client: Option<&KafkaClient>,
) -> Result<BackupState, CliError> {
    let manifest = match storage.get(&layout::manifest_key(id)).await {
        Ok(got) => Manifest::from_json(&got.bytes).ok(),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    let checkpoint = match storage.get(&layout::checkpoint_key(id)).await {
        Ok(got) => Checkpoint::from_json(&got.bytes).ok(),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    let shared = shared_state(storage, id).await?;
    let mut partitions: Vec<PartitionState> = checkpoint
        .iter()
        .flat_map(|c| {
            c.topics.iter().flat_map(|(topic, parts)| {
                parts.iter().map(|(p, at)| PartitionState {
                    topic: topic.to_string(),
                    partition: *p,
                    next_offset: at.offset + 1,
                    log_end: None,
                    lag: None,
                    snapshot_end: None,
                    owner: None,
                    done: None,
                })
            })
        })
        .collect();
    let mut workers = Vec::new();
    let mut last_commit = checkpoint.map(|c| c.timestamp.to_string());
    if let Some((shared_partitions, shared_workers, shared_commit)) = shared {
        partitions = shared_partitions;
        workers = shared_workers;
        last_commit = shared_commit;
    }
    if let Some(client) = client
        && !partitions.is_empty()
    {
        let asked: Vec<(&str, i32, OffsetSpec)> = partitions
            .iter()
            .map(|p| (p.topic.as_str(), p.partition, OffsetSpec::Latest))
            .collect();
        let ends: BTreeMap<(String, i32), i64> = client
            .list_offsets(&asked)
            .await?
            .into_iter()
            .filter_map(|o| Some(((o.topic.clone(), o.partition), o.offset?)))
            .collect();
        for p in &mut partitions {
            p.log_end = ends.get(&(p.topic.clone(), p.partition)).copied();
            p.lag = p.log_end.map(|end| (end - p.next_offset).max(0));
        }
    }
    Ok(BackupState {
        backup_id: id.to_string(),
        status: manifest.as_ref().map_or("none", crate::list::status_name).to_owned(),
        holder,
        created_at: manifest.as_ref().map(|m| m.created_at.to_string()),
        records: manifest.as_ref().map_or(0, |m| m.statistics.records),
        bytes: manifest.as_ref().map_or(0, |m| m.statistics.compressed_bytes),
        last_commit,
        partitions,
        workers,
    })
}

async fn restore_state(
    storage: &Arc<dyn ObjectStorage>,
    id: &BackupId,
    restore_id: &str,
    holder: Option<Holder>,
) -> Result<Option<RestoreState>, CliError> {
    let key = format!("{}restores/{restore_id}/progress.json", layout::backup_prefix(id));
    let mut owners: BTreeMap<String, crate::workers::Owner> = BTreeMap::new();
    let progress: RestoreProgress = match storage.get(&key).await {
        Ok(got) => match serde_json::from_slice(&got.bytes) {
            Ok(p) => p,
            Err(_) => return Ok(None),
        },
        Err(e) if e.is_not_found() => {
            // A restore shared by workers keeps one object per partition.
            let objects = crate::restore::shared_progress(storage, id, restore_id).await?;
            for (source, object) in &objects {
                if let Some(owner) = &object.owner {
                    // A reshaped topic's targets are listed as `topic/*`.
                    let label = if object.reshaped.is_some() {
                        format!("{source}/*")
                    } else {
                        source.clone()
                    };
                    owners.insert(label, owner.clone());
                }
            }
            crate::restore::shared_progress_document(id, restore_id, &objects)
        }
        Err(e) => return Err(e.into()),
    };
    let targets = progress.target_partitions();
    let partitions: Vec<RestorePartitionState> = targets
        .iter()
        .map(|(source, p)| RestorePartitionState {
            source: source.clone(),
            target: format!("{}/{}", p.target_topic, p.target_partition),
            records: p.records,
            next_target_offset: p.next_target_offset,
            done: p.done,
            owner: owners.get(source).map(|o| o.member_id.clone()),
        })
        .collect();
    let mut workers: BTreeMap<String, WorkerState> = BTreeMap::new();
    for (source, p) in &targets {
        if let Some(owner) = owners.get(source) {
            count_owned(&mut workers, owner, p.done, "");
        }
    }
    Ok(Some(RestoreState {
        backup_id: id.to_string(),
        restore_id: restore_id.to_owned(),
        holder,
        updated_at_ms: progress.updated_at_ms,
        records: targets.iter().map(|(_, p)| p.records).sum(),
        bytes: targets.iter().map(|(_, p)| p.bytes).sum(),
        partitions_done: partitions.iter().filter(|p| p.done).count(),
        partitions_total: partitions.len(),
        partitions,
        workers: workers.into_values().collect(),
    }))
}

/// Records per second of each job between two reports of the same jobs (`--watch`).
pub fn rates(previous: &StatusReport, now: &StatusReport) -> BTreeMap<String, f64> {
    let seconds = ((now.at_ms - previous.at_ms) as f64 / 1000.0).max(1e-3);
    let mut rates = BTreeMap::new();
    for b in &now.backups {
        if let Some(p) = previous.backups.iter().find(|p| p.backup_id == b.backup_id) {
            let delta = b.records.saturating_sub(p.records);
            rates.insert(format!("backup {}", b.backup_id), delta as f64 / seconds);
        }
    }
    for r in &now.restores {
        if let Some(p) = previous
            .restores
            .iter()
            .find(|p| p.backup_id == r.backup_id && p.restore_id == r.restore_id)
        {
            let delta = r.records.saturating_sub(p.records);
            rates.insert(
                format!("restore {}/{}", r.backup_id, r.restore_id),
                delta as f64 / seconds,
            );
        }
    }
    rates
}

/// The report as text; `rates` from [`rates`] in watch mode.
pub fn report_text(report: &StatusReport, rates: &BTreeMap<String, f64>) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let ago = |ms: i64| format!("{:.1} s ago", (report.at_ms - ms).max(0) as f64 / 1000.0);
    let holder_text = |h: &Option<Holder>| match h {
        None => "not running".to_owned(),
        Some(h) => match &h.stale {
            None => format!(
                "running (host {} pid {}, run {}, lease renewed {})",
                h.host,
                h.pid,
                h.run_id,
                ago(h.renewed_at_ms)
            ),
            Some(why) => format!(
                "NOT RUNNING: its lease was left by host {} pid {} ({why})",
                h.host, h.pid
            ),
        },
    };
    let rate = |key: String| rates.get(&key).map_or(String::new(), |r| format!(", {r:.0} records/s"));
    if report.backups.is_empty() && report.restores.is_empty() {
        let _ = writeln!(out, "no backup or restore is running");
    }
    for b in &report.backups {
        let _ = writeln!(
            out,
            "backup {}: {}; status {}, {} records, {} bytes{}, last commit {}",
            b.backup_id,
            holder_text(&b.holder),
            b.status,
            b.records,
            b.bytes,
            rate(format!("backup {}", b.backup_id)),
            b.last_commit.as_deref().unwrap_or("none yet")
        );
        for w in &b.workers {
            let _ = writeln!(
                out,
                "  worker {} (host {} pid {}, generation {}): {} partitions, {} done, last commit {}",
                w.member_id, w.host, w.pid, w.generation, w.partitions, w.partitions_done, w.last_commit
            );
        }
        for p in &b.partitions {
            let _ = write!(out, "  {}/{}: next offset {}", p.topic, p.partition, p.next_offset);
            if let Some(end) = p.snapshot_end {
                let _ = write!(out, " of {end}");
            }
            if let Some(owner) = &p.owner {
                let _ = write!(out, ", worker {owner}");
            }
            if p.done == Some(true) {
                let _ = write!(out, ", done");
            }
            if let (Some(end), Some(lag)) = (p.log_end, p.lag) {
                let _ = write!(out, ", log end {end}, lag {lag}");
            }
            let _ = writeln!(out);
        }
    }
    for r in &report.restores {
        let _ = writeln!(
            out,
            "restore {} of backup {}: {}; {} records, {} bytes{}, {}/{} partitions done, progress saved {}",
            r.restore_id,
            r.backup_id,
            holder_text(&r.holder),
            r.records,
            r.bytes,
            rate(format!("restore {}/{}", r.backup_id, r.restore_id)),
            r.partitions_done,
            r.partitions_total,
            ago(r.updated_at_ms)
        );
        for w in &r.workers {
            let _ = writeln!(
                out,
                "  worker {} (host {} pid {}, generation {}): {} partitions, {} done",
                w.member_id, w.host, w.pid, w.generation, w.partitions, w.partitions_done
            );
        }
        for p in &r.partitions {
            let _ = writeln!(
                out,
                "  {} -> {}: {} records, next target offset {}{}{}",
                p.source,
                p.target,
                p.records,
                p.next_target_offset,
                p.owner.as_ref().map_or(String::new(), |o| format!(", worker {o}")),
                if p.done { ", done" } else { "" }
            );
        }
    }
    out
}
