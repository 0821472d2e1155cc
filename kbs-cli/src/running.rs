//! Whether an unfinished backup runs now, read from its leases: what `kbs describe` and
//! `kbs list` say of an `in_progress` backup, so that an operator can tell a continuous backup
//! at work from one that was stopped or killed.

use std::sync::Arc;

use kbs_manifest::{BackupId, layout};
use kbs_storage::ObjectStorage;

use crate::error::CliError;
use crate::lease::LeaseRecord;

/// What runs an unfinished backup now, from its leases.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackupActivity {
    /// A single `kbs backup` holds the backup's lease (`<id>/lease.json`) and may be alive: it
    /// renewed the lease in time and, on this host, its process still runs.
    Running(LeaseRecord),
    /// Workers (`--workers`) of it hold presence leases that may be alive.
    Workers(Vec<LeaseRecord>),
    /// Nothing runs it. `left` is the lease its last run left behind (killed before it could
    /// release it), with why that lease is stale.
    Stopped {
        /// The stale lease and why it is stale, if one was left.
        left: Option<(LeaseRecord, String)>,
    },
}

impl BackupActivity {
    /// Whether a `kbs backup` or workers of it may be running now.
    pub fn is_running(&self) -> bool {
        !matches!(self, BackupActivity::Stopped { .. })
    }

    /// One line for `kbs describe`'s status of an `in_progress` backup.
    pub fn describe(&self, now_ms: i64) -> String {
        let ago = |record: &LeaseRecord| (now_ms - record.renewed_at_ms).max(0) / 1000;
        match self {
            BackupActivity::Running(record) => format!(
                "RUNNING (kbs backup on host {} pid {} holds its lease, renewed {} s ago)",
                record.host,
                record.pid,
                ago(record)
            ),
            BackupActivity::Workers(records) => {
                let holders: Vec<String> = records
                    .iter()
                    .map(|r| format!("host {} pid {}", r.host, r.pid))
                    .collect();
                format!("RUNNING ({} kbs workers: {})", records.len(), holders.join(", "))
            }
            BackupActivity::Stopped {
                left: Some((record, why)),
            } => format!(
                "INCOMPLETE (interrupted: its last run (host {} pid {}) left its lease: {why}; rerun its backup \
                 command to finish it)",
                record.host, record.pid
            ),
            BackupActivity::Stopped { left: None } => {
                "INCOMPLETE (interrupted: no kbs backup runs it; rerun its backup command to finish it)".to_owned()
            }
        }
    }
}

/// What runs `backup_id`'s backup now: its lease, then its workers' presence leases. Reads one
/// object and lists one folder; an unreadable lease counts as none.
pub async fn backup_activity(
    storage: &Arc<dyn ObjectStorage>,
    backup_id: &BackupId,
) -> Result<BackupActivity, CliError> {
    let (now, host) = (crate::lease::unix_now_ms(), crate::lease::host_name());
    let left = match crate::lease::read_lease(storage, &layout::lease_key(backup_id)).await? {
        Some(record) => match record.staleness(now, &host) {
            None => return Ok(BackupActivity::Running(record)),
            Some(why) => Some((record, why)),
        },
        None => None,
    };
    let workers = crate::lease::live_worker_leases(storage, backup_id).await?;
    if !workers.is_empty() {
        return Ok(BackupActivity::Workers(workers));
    }
    Ok(BackupActivity::Stopped { left })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(pid: u32) -> LeaseRecord {
        LeaseRecord {
            backup_id: "b".into(),
            host: "h1".into(),
            pid,
            process_start: String::new(),
            run_id: "r".into(),
            acquired_at_ms: 1_000,
            renewed_at_ms: 5_000,
            expires_at_ms: 65_000,
        }
    }

    #[test]
    fn each_activity_reads_as_one_line() {
        assert_eq!(
            BackupActivity::Running(record(7)).describe(8_500),
            "RUNNING (kbs backup on host h1 pid 7 holds its lease, renewed 3 s ago)"
        );
        assert_eq!(
            BackupActivity::Workers(vec![record(7), record(8)]).describe(8_500),
            "RUNNING (2 kbs workers: host h1 pid 7, host h1 pid 8)"
        );
        let stopped = BackupActivity::Stopped {
            left: Some((record(7), "process 7 on this host is gone".into())),
        };
        assert_eq!(
            stopped.describe(8_500),
            "INCOMPLETE (interrupted: its last run (host h1 pid 7) left its lease: process 7 on this host is gone; \
             rerun its backup command to finish it)"
        );
        assert!(!stopped.is_running());
        assert!(
            BackupActivity::Stopped { left: None }
                .describe(0)
                .contains("no kbs backup runs it")
        );
    }
}
