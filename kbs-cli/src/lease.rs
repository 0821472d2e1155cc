//! Writer leases: of a backup (`<backup-id>/lease.json`), of a restore
//! (`<backup-id>/restores/<restore-id>/lease.json`), and the presence of each worker sharing a
//! backup or a restore (`<backup-id>/workers/<random id>.json`); see `docs/DESIGN.md`.
//!
//! ```json
//! {"backup_id": "b1", "host": "node-1", "pid": 4242, "process_start": "123456",
//!  "run_id": "5f0c…", "acquired_at_ms": 1763700000000, "renewed_at_ms": 1763700020000,
//!  "expires_at_ms": 1763700080000}
//! ```

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kbs_manifest::{BackupId, layout};
use kbs_storage::{ObjectStorage, ObjectVersion};
use serde::{Deserialize, Serialize};

use crate::error::CliError;

/// What a lease object says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The backup the lease guards.
    pub backup_id: String,
    /// Host name of the holder.
    pub host: String,
    /// Process id of the holder.
    pub pid: u32,
    /// The holder process's start time as the kernel reports it (Linux: `/proc/<pid>/stat`
    /// field 22), so a reused pid is not mistaken for the holder; empty where unknown.
    pub process_start: String,
    /// Random id of the holder's run.
    pub run_id: String,
    /// When the lease was acquired (Unix ms).
    pub acquired_at_ms: i64,
    /// When it was last renewed (Unix ms).
    pub renewed_at_ms: i64,
    /// When it expires unless renewed (Unix ms).
    pub expires_at_ms: i64,
}

impl LeaseRecord {
    /// Why this lease may be taken over, or `None` if its holder may still be alive.
    pub fn staleness(&self, now_ms: i64, this_host: &str) -> Option<String> {
        if now_ms > self.expires_at_ms {
            return Some(format!("it expired {} ms ago", now_ms - self.expires_at_ms));
        }
        if self.host == this_host {
            match process_start(self.pid) {
                None => return Some(format!("process {} on this host is gone", self.pid)),
                Some(start) if !self.process_start.is_empty() && start != self.process_start => {
                    return Some(format!("pid {} on this host now belongs to another process", self.pid));
                }
                Some(_) => {}
            }
        }
        None
    }

    /// A one-line description of the holder.
    pub fn holder(&self) -> String {
        format!(
            "host {} pid {} (run {}), expires at {} ms",
            self.host, self.pid, self.run_id, self.expires_at_ms
        )
    }
}

/// A held lease.
#[derive(Debug)]
pub struct Lease {
    storage: Arc<dyn ObjectStorage>,
    key: String,
    version: ObjectVersion,
    record: LeaseRecord,
    ttl: Duration,
}

/// Default lease time-to-live.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// This machine's host name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".to_string())
}

/// The start time of process `pid`, or `None` if there is no such process. Off Linux (no
/// `/proc`), every process is assumed alive, so only expiry frees a lease.
fn process_start(pid: u32) -> Option<String> {
    if !std::path::Path::new("/proc/self/stat").exists() {
        return Some(String::new());
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 2 is "(comm)" and may contain spaces; fields after the last ')' are plain:
    // field 3 is the state, field 22 the start time.
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = rest.next()?;
    if state == "Z" || state == "X" {
        // A killed process not yet reaped by its parent holds nothing.
        return None;
    }
    rest.nth(18).map(str::to_string)
}

fn random_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(now_ms() as u128 ^ (u128::from(std::process::id()) << 64));
    format!("{:016x}", h.finish())
}

/// The key of the lease of restore `restore_id` of backup `backup_id`.
pub fn restore_lease_key(backup_id: &BackupId, restore_id: &str) -> String {
    format!("{backup_id}/restores/{restore_id}/lease.json")
}

/// The folder of the presence leases of the workers (`--workers`) of `backup_id`'s backup and
/// restores.
pub fn worker_lease_prefix(backup_id: &BackupId) -> String {
    format!("{backup_id}/workers/")
}

/// The lease record stored at `key`, or `None` when there is none or it cannot be parsed (a
/// reader that only reports or skips treats an unreadable lease as no lease).
pub async fn read_lease(storage: &Arc<dyn ObjectStorage>, key: &str) -> Result<Option<LeaseRecord>, CliError> {
    match storage.get(key).await {
        Ok(got) => Ok(serde_json::from_slice::<LeaseRecord>(&got.bytes).ok()),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The presence leases of `backup_id`'s workers whose holders may still be alive.
pub async fn live_worker_leases(
    storage: &Arc<dyn ObjectStorage>,
    backup_id: &BackupId,
) -> Result<Vec<LeaseRecord>, CliError> {
    let (now, host) = (now_ms(), host_name());
    let objects = crate::workers::read_json_objects(storage, &worker_lease_prefix(backup_id)).await?;
    Ok(objects
        .into_iter()
        .filter_map(|(_, bytes)| serde_json::from_slice::<LeaseRecord>(&bytes).ok())
        .filter(|record| record.staleness(now, &host).is_none())
        .collect())
}

impl Lease {
    /// A worker's presence lease (`--workers`): one per worker process, under
    /// [`worker_lease_prefix`], renewed while it runs and deleted when it ends, so that
    /// `kbs delete` and `kbs prune` leave the backup alone while any of its workers runs.
    pub async fn acquire_worker(
        storage: Arc<dyn ObjectStorage>,
        backup_id: &BackupId,
        ttl: Duration,
    ) -> Result<Lease, CliError> {
        let key = format!("{}{}.json", worker_lease_prefix(backup_id), random_id());
        Lease::acquire_key(storage, key, backup_id, "a worker of it runs", "kbs unlock", ttl)
            .await
            .map(|(lease, _)| lease)
    }

    /// Acquires the lease of `backup_id`, taking over a stale one; fails fast with
    /// [`CliError::Locked`] while another live writer holds it.
    pub async fn acquire(
        storage: Arc<dyn ObjectStorage>,
        backup_id: &BackupId,
        ttl: Duration,
    ) -> Result<Lease, CliError> {
        let what = format!("backup {backup_id} is being written by another kbs process");
        let unlock = format!("kbs unlock --backup-id {backup_id}");
        Lease::acquire_key(storage, layout::lease_key(backup_id), backup_id, &what, &unlock, ttl)
            .await
            .map(|(lease, _)| lease)
    }

    /// Acquires the lease of restore `restore_id` of `backup_id`; also returns whether a lease
    /// was taken over from a holder that may still be alive (it had expired), in which case the
    /// caller must give that holder time to notice before relying on what it wrote.
    pub async fn acquire_restore(
        storage: Arc<dyn ObjectStorage>,
        backup_id: &BackupId,
        restore_id: &str,
        ttl: Duration,
    ) -> Result<(Lease, bool), CliError> {
        let what = format!("restore {restore_id} of backup {backup_id} is being run by another kbs process");
        let unlock = format!("kbs unlock --backup-id {backup_id} --restore-id {restore_id}");
        Lease::acquire_key(
            storage,
            restore_lease_key(backup_id, restore_id),
            backup_id,
            &what,
            &unlock,
            ttl,
        )
        .await
    }

    async fn acquire_key(
        storage: Arc<dyn ObjectStorage>,
        key: String,
        backup_id: &BackupId,
        what: &str,
        unlock: &str,
        ttl: Duration,
    ) -> Result<(Lease, bool), CliError> {
        let now = now_ms();
        let pid = std::process::id();
        let record = LeaseRecord {
            backup_id: backup_id.to_string(),
            host: host_name(),
            pid,
            process_start: process_start(pid).unwrap_or_default(),
            run_id: random_id(),
            acquired_at_ms: now,
            renewed_at_ms: now,
            expires_at_ms: now + ttl.as_millis() as i64,
        };
        let body = Bytes::from(serde_json::to_vec_pretty(&record).expect("lease serialises"));
        match storage.put_if_absent(&key, body.clone()).await {
            Ok(put) => {
                let lease = Lease {
                    storage,
                    key,
                    version: put.version,
                    record,
                    ttl,
                };
                return Ok((lease, false));
            }
            Err(kbs_storage::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let existing = storage.get(&key).await?;
        let held: LeaseRecord = serde_json::from_slice(&existing.bytes).map_err(|e| CliError::Unparsable {
            key: key.clone(),
            message: e.to_string(),
        })?;
        match held.staleness(now, &record.host) {
            None => Err(CliError::Locked(format!(
                "{what}: {}. If that process is gone, wait for the lease to expire or run `{unlock}`",
                held.holder()
            ))),
            Some(reason) => {
                // A holder on another host, or one whose lease merely expired, may still run.
                let maybe_alive = !(held.host == record.host && now <= held.expires_at_ms);
                tracing::warn!(key = %key, holder = %held.holder(), %reason, "taking over a stale lease");
                let put = storage
                    .put_if_match(&key, body, &existing.meta.version)
                    .await
                    .map_err(|e| {
                        if matches!(e, kbs_storage::Error::Precondition { .. }) {
                            CliError::Locked(format!("{key}: another process took the lease at the same time"))
                        } else {
                            e.into()
                        }
                    })?;
                let lease = Lease {
                    storage,
                    key,
                    version: put.version,
                    record,
                    ttl,
                };
                Ok((lease, maybe_alive))
            }
        }
    }

    /// Extends the lease by its TTL. Fails if another writer took it.
    pub async fn renew(&mut self) -> Result<(), CliError> {
        let now = now_ms();
        let mut record = self.record.clone();
        record.renewed_at_ms = now;
        record.expires_at_ms = now + self.ttl.as_millis() as i64;
        let body = Bytes::from(serde_json::to_vec_pretty(&record).expect("lease serialises"));
        let put = self
            .storage
            .put_if_match(&self.key, body, &self.version)
            .await
            .map_err(|e| {
                if matches!(e, kbs_storage::Error::Precondition { .. }) {
                    CliError::Locked(format!("lost the lease {}: another writer took over", self.key))
                } else {
                    e.into()
                }
            })?;
        self.version = put.version;
        self.record = record;
        Ok(())
    }

    /// How often to renew.
    pub fn renew_interval(&self) -> Duration {
        self.ttl / 3
    }

    /// Deletes the lease.
    pub async fn release(self) -> Result<(), CliError> {
        self.storage.delete(&self.key).await?;
        Ok(())
    }
}

/// Keeps renewing `lease` (every third of its TTL) until it is taken out of the mutex; stores
/// the time of each successful renewal (Unix ms) in `renewed_at_ms`, and sets `lost` when
/// another writer took the lease.
pub fn spawn_renewal(
    lease: Arc<tokio::sync::Mutex<Option<Lease>>>,
    lost: Arc<std::sync::atomic::AtomicBool>,
    renewed_at_ms: Arc<std::sync::atomic::AtomicI64>,
) -> tokio::task::JoinHandle<()> {
    use std::sync::atomic::Ordering;
    renewed_at_ms.store(now_ms(), Ordering::SeqCst);
    tokio::spawn(async move {
        loop {
            let interval = match lease.lock().await.as_ref() {
                Some(l) => l.renew_interval(),
                None => return,
            };
            tokio::time::sleep(interval).await;
            let mut guard = lease.lock().await;
            let Some(held) = guard.as_mut() else { return };
            match held.renew().await {
                Ok(()) => renewed_at_ms.store(now_ms(), Ordering::SeqCst),
                Err(e) => {
                    tracing::error!("lease renewal failed: {e}");
                    if matches!(e, CliError::Locked(_)) {
                        lost.store(true, Ordering::SeqCst);
                        return;
                    }
                }
            }
        }
    })
}

/// Milliseconds since the Unix epoch, for comparing with [`spawn_renewal`]'s times.
pub fn unix_now_ms() -> i64 {
    now_ms()
}

/// Removes a backup's lease by hand (or, with `restore_id`, a restore's); returns who held it,
/// or `None` if there was none.
pub async fn unlock(
    storage: Arc<dyn ObjectStorage>,
    backup_id: &BackupId,
    restore_id: Option<&str>,
) -> Result<Option<LeaseRecord>, CliError> {
    let key = match restore_id {
        Some(restore_id) => restore_lease_key(backup_id, restore_id),
        None => layout::lease_key(backup_id),
    };
    let existing = match storage.get(&key).await {
        Ok(got) => got,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let held = serde_json::from_slice(&existing.bytes).ok();
    storage.delete(&key).await?;
    Ok(held)
}
