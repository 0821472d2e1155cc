//! `kbs restore --workers GROUP`: one of several processes sharing a restore through a Kafka
//! group (docs/DESIGN.md, "Scale-out workers"). Every worker plans the same restore (same
//! restore id); the group's leader assigns the source partitions not done, by bytes left,
//! sticky; each worker takes its partitions over and restores them as a rerun of a single
//! restore would (see `restore/worker.rs`). The worker that finds every partition done commits
//! the consumer groups and marks the restore complete; every worker then leaves and exits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kbs_storage::ObjectStorage;
use tokio::sync::watch;

use super::group::{Beat, Ended, GroupJob, Heartbeats, Item, Next, WorkerOptions, run_in_group};
use super::records::Owner;
use crate::backup::ProgressSink;
use crate::error::CliError;
use crate::metrics::RestoreMetrics;
use crate::restore::{RestoreOptions, RestoreReport, SharedRestore, WorkerFence};

/// The group protocol type of restore workers.
pub const RESTORE_PROTOCOL_TYPE: &str = "kbs-restore";

/// Runs one worker of a restore shared through the group `workers.group`, until the restore
/// is complete or `shutdown` turns true. A dry run only plans, as without workers.
pub async fn run(
    storage: Arc<dyn ObjectStorage>,
    options: RestoreOptions,
    workers: WorkerOptions,
    metrics: Arc<RestoreMetrics>,
    progress: Arc<dyn ProgressSink>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<RestoreReport, CliError> {
    if options.dry_run {
        return crate::restore::run_with_metrics(storage, options, metrics, progress).await;
    }
    let capabilities = storage.capabilities();
    if !(capabilities.conditional_create && capabilities.conditional_update) {
        return Err(CliError::InvalidArgument {
            flag: "workers",
            message: format!(
                "workers fence each other with conditional writes, which {} does not honour: use a store that does",
                storage.describe()
            ),
        });
    }
    let server = crate::metrics::serve_if_asked(options.metrics_addr.as_deref(), metrics.clone()).await?;
    let presence = super::Presence::start(storage.clone(), &options.backup_id).await?;
    let result = async {
        let shared = crate::restore::prepare_worker(storage, options, metrics.clone(), progress).await?;
        let mut job = RestoreWorker {
            shared,
            session_timeout: workers.session_timeout,
            group: workers.group.clone(),
        };
        if job.shared.check_complete(false).await? {
            return job.shared.report().await;
        }
        let client = job.shared.client().clone();
        let protocol = format!("sticky-bytes/{}/{}", job.shared.backup_id(), job.shared.restore_id());
        match run_in_group(
            &mut job,
            &client,
            &workers,
            RESTORE_PROTOCOL_TYPE,
            protocol,
            &mut shutdown,
        )
        .await?
        {
            Ended::Complete => job.shared.report().await,
            Ended::Shutdown => Err(CliError::WorkerStopped {
                job: format!(
                    "restore {} of backup {}",
                    job.shared.restore_id(),
                    job.shared.backup_id()
                ),
            }),
        }
    }
    .await;
    presence.end().await;
    if result.is_err() {
        metrics.errors.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(server) = server {
        server.abort();
    }
    result
}

struct RestoreWorker {
    shared: SharedRestore,
    session_timeout: Duration,
    group: String,
}

impl GroupJob for RestoreWorker {
    async fn items(&mut self) -> Result<BTreeMap<Item, u64>, CliError> {
        self.shared.items().await
    }

    async fn check_complete(&mut self, full: bool) -> Result<bool, CliError> {
        self.shared.check_complete(full).await
    }

    async fn work(
        &mut self,
        owner: &Owner,
        assigned: &[Item],
        _leader: bool,
        beats: &mut Heartbeats,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Next, CliError> {
        let lost = Arc::new(AtomicBool::new(false));
        let stopping = Arc::new(AtomicBool::new(false));
        let fence = WorkerFence {
            lost: lost.clone(),
            answered_at_ms: beats.answered_at_ms.clone(),
            session_timeout: self.session_timeout,
            stopping: stopping.clone(),
        };
        let group = self.group.clone();
        let mut next: Option<Next> = None;
        let mut listening = true;
        let mut run = Box::pin(self.shared.run_share(assigned, owner.clone(), fence));
        let result = loop {
            tokio::select! {
                result = &mut run => break result,
                beat = beats.next() => match beat {
                    Beat::Rebalance => {
                        if next.is_none() {
                            tracing::info!("group {group} is rebalancing: stopping at the next batch");
                            next = Some(Next::Rejoin);
                            stopping.store(true, Ordering::SeqCst);
                        }
                    }
                    Beat::Fenced(why) => {
                        if !matches!(next, Some(Next::Fenced) | Some(Next::Shutdown)) {
                            tracing::warn!(
                                "dropped from group {group} ({why}): its partitions are another worker's now; stopping"
                            );
                            lost.store(true, Ordering::SeqCst);
                            stopping.store(true, Ordering::SeqCst);
                            next = Some(Next::Fenced);
                        }
                    }
                },
                changed = shutdown.changed(), if listening => {
                    listening = changed.is_ok();
                    if changed.is_ok() && *shutdown.borrow() && next.is_none() {
                        tracing::info!("shutdown requested: stopping at the next batch and leaving the group");
                        next = Some(Next::Shutdown);
                        stopping.store(true, Ordering::SeqCst);
                    }
                }
            }
        };
        drop(run);
        match result {
            Ok(()) => {}
            // Refused, or stopped at the fence: another worker owns (or may own) these partitions
            // now.
            Err(CliError::Fenced(message)) => {
                tracing::warn!("{message}");
                return Ok(match next {
                    Some(Next::Shutdown) => Next::Shutdown,
                    _ => Next::Fenced,
                });
            }
            // Stopped at the fence, as asked (a rebalance, a shutdown).
            Err(CliError::Locked(message)) if next.is_some() => {
                tracing::info!("{message}");
                return Ok(next.unwrap_or(Next::Fenced));
            }
            Err(e) => return Err(e),
        }
        Ok(match next {
            Some(next) => next,
            None if self.shared.check_complete(true).await? => Next::Complete,
            None => Next::Idle,
        })
    }
}
