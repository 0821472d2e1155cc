//! One worker's share of a restore shared through a Kafka group (`kbs restore --workers`, see
//! docs/DESIGN.md "Scale-out workers"). The worker loop lives in `workers::restore`; this is
//! what it asks of the restore:
//!
//! * [`prepare_worker`]: the plan and the restore id, as a single run makes them; the target
//!   topics created by whichever worker comes first.
//! * [`SharedRestore::run_share`]: the assigned source partitions taken over (their progress
//!   objects, compare-and-swap) and produced exactly as a single run resumes them: from the
//!   recorded progress, with the target's tail matched and the interrupted writer's producer
//!   continued. Producing stops as soon as the worker's heartbeats have gone unanswered for
//!   half the session timeout, before the group can hand its partitions to another worker.
//!   With `--repartition`, the unit of work is a source topic (one sequence, see
//!   `reshape/mod.rs`): its item is `(topic, RESHAPED_TOPIC)`, and it is taken over and
//!   resumed whole in the same way.
//! * [`SharedRestore::check_complete`]: when every partition is done, the consumer groups are
//!   committed and `complete.json` is written, once.

use std::sync::atomic::{AtomicBool, AtomicI64};

use kbs_storage::ObjectStorageExt as _;

use super::partitions::{RestoreLedger, as_document, load_all, partitions_prefix};
use super::*;
use crate::workers::Owner;

/// What tells a worker's restore to stop producing.
pub(crate) struct WorkerFence {
    /// Set when the worker was dropped from its group (or a progress write was refused).
    pub(crate) lost: Arc<AtomicBool>,
    /// When the coordinator last answered a heartbeat (Unix ms).
    pub(crate) answered_at_ms: Arc<AtomicI64>,
    /// The group's session timeout: producing stops once heartbeats went unanswered for half
    /// of it.
    pub(crate) session_timeout: Duration,
    /// Set to stop at the next batch (a rebalance, a shutdown).
    pub(crate) stopping: Arc<AtomicBool>,
}

/// A restore as every worker of it holds it.
pub(crate) struct SharedRestore {
    storage: Arc<dyn ObjectStorage>,
    prepared: Prepared,
    configs: BTreeMap<String, BTreeMap<String, String>>,
    metrics: Arc<RestoreMetrics>,
    /// Records and bytes this worker produced.
    pub(crate) produced: (u64, u64),
    /// The group offsets this worker committed (the one that completed the restore).
    groups: Vec<GroupMove>,
}

/// The key of the marker the worker completing a shared restore writes.
fn complete_key(backup_id: &BackupId, restore_id: &str) -> String {
    format!("{backup_id}/restores/{restore_id}/complete.json")
}

/// Prepares a worker of a shared restore (see the module docs).
pub(crate) async fn prepare_worker(
    storage: Arc<dyn ObjectStorage>,
    options: RestoreOptions,
    metrics: Arc<RestoreMetrics>,
    progress: Arc<dyn crate::backup::ProgressSink>,
) -> Result<SharedRestore, CliError> {
    let mut prepared = prepare(&storage, options, &metrics, &progress).await?;
    let (backup_id, restore_id) = (&prepared.options.backup_id, prepared.options.restore_id.clone());
    let single = format!(
        "{}restores/{restore_id}/progress.json",
        layout::backup_prefix(backup_id)
    );
    if storage.exists(&single).await? {
        return Err(CliError::Locked(format!(
            "restore {restore_id} was started by a single kbs restore (it has a progress.json): resume it without \
             --workers"
        )));
    }
    // Workers start at about the same time: all but one find the topics they would create
    // created meanwhile (TOPIC_ALREADY_EXISTS), or not yet known to the broker they ask; they
    // wait for the topics to show and check them as they are.
    let mut attempts = 0;
    let configs = loop {
        let p = &prepared;
        match prepare_targets(&p.client, &p.options, &p.plans, &p.needed, &p.existing).await {
            Ok(configs) => break configs,
            Err(CliError::Kafka(e)) if attempts < 50 && created_meanwhile(&e) => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                let metadata = prepared.client.metadata(None).await?;
                for t in metadata.topics {
                    if prepared.needed.contains_key(&t.name) && !t.partitions.is_empty() {
                        prepared.existing.insert(t.name.clone(), t.partitions.len() as i32);
                    }
                }
            }
            Err(e) => return Err(e),
        }
    };
    Ok(SharedRestore {
        storage,
        prepared,
        configs,
        metrics,
        produced: (0, 0),
        groups: Vec::new(),
    })
}

/// The partition number of a work item that is a whole reshaped source topic.
pub(crate) const RESHAPED_TOPIC: i32 = -1;

/// Whether `e` says a target topic was being created by another worker: it exists already, or
/// it is not known yet to the broker asked.
fn created_meanwhile(e: &kbs_kafka::Error) -> bool {
    match e {
        kbs_kafka::Error::Topic { code, .. } => code.0 == 36,
        kbs_kafka::Error::UnknownTopic { .. } => true,
        _ => false,
    }
}

impl SharedRestore {
    /// The restore id.
    pub(crate) fn restore_id(&self) -> &str {
        &self.prepared.options.restore_id
    }

    /// The backup restored.
    pub(crate) fn backup_id(&self) -> &BackupId {
        &self.prepared.options.backup_id
    }

    /// The target cluster.
    pub(crate) fn client(&self) -> &KafkaClient {
        &self.prepared.client
    }

    /// The source partitions not done (with `--repartition`, the source topics), each
    /// weighted by the bytes of the segments it has left to restore (at least 1).
    pub(crate) async fn items(&self) -> Result<BTreeMap<(String, i32), u64>, CliError> {
        let objects = load_all(&self.storage, self.backup_id(), self.restore_id()).await?;
        if self.prepared.options.repartition.reshapes() {
            return Ok(self
                .prepared
                .reshapes
                .iter()
                .filter_map(|r| {
                    let progress = objects.get(&r.topic).and_then(|o| o.reshaped.as_ref());
                    if progress.is_some_and(|p| p.done) {
                        return None;
                    }
                    let left: u64 = r
                        .sources
                        .iter()
                        .flat_map(|plan| {
                            let after = progress
                                .and_then(|p| p.sources.get(&plan.partition))
                                .copied()
                                .unwrap_or(i64::MIN);
                            plan.files.iter().filter(move |f| f.last_offset > after)
                        })
                        .map(|f| f.uncompressed_bytes)
                        .sum();
                    Some(((r.topic.clone(), RESHAPED_TOPIC), left.max(1)))
                })
                .collect());
        }
        Ok(self
            .prepared
            .plans
            .iter()
            .filter_map(|plan| {
                let progress = objects
                    .get(&partition_key(&plan.topic, plan.partition))
                    .and_then(|o| o.progress.as_ref());
                if progress.is_some_and(|p| p.done) {
                    return None;
                }
                let after = progress.and_then(|p| p.last_source_offset).unwrap_or(i64::MIN);
                let left: u64 = plan
                    .files
                    .iter()
                    .filter(|f| f.last_offset > after)
                    .map(|f| f.uncompressed_bytes)
                    .sum();
                Some(((plan.topic.clone(), plan.partition), left.max(1)))
            })
            .collect())
    }

    /// Restores the source partitions `assigned` as `owner` until each is done or `fence`
    /// stops it.
    pub(crate) async fn run_share(
        &mut self,
        assigned: &[(String, i32)],
        owner: Owner,
        fence: WorkerFence,
    ) -> Result<(), CliError> {
        let options = &self.prepared.options;
        let wanted: std::collections::BTreeSet<&(String, i32)> = assigned.iter().collect();
        // A reshaped topic is taken whole: its source partitions' plans go with it.
        let reshapes: Vec<reshape::ReshapePlan> = self
            .prepared
            .reshapes
            .iter()
            .filter(|r| wanted.contains(&(r.topic.clone(), RESHAPED_TOPIC)))
            .cloned()
            .collect();
        let plans: Vec<PartitionPlan> = self
            .prepared
            .plans
            .iter()
            .filter(|p| wanted.contains(&(p.topic.clone(), p.partition)) || reshapes.iter().any(|r| r.topic == p.topic))
            .cloned()
            .collect();
        let sources: Vec<String> = if options.repartition.reshapes() {
            reshapes.iter().map(|r| r.topic.clone()).collect()
        } else {
            plans.iter().map(|p| partition_key(&p.topic, p.partition)).collect()
        };
        let ledger = RestoreLedger::take_over(
            self.storage.clone(),
            &options.backup_id,
            &options.restore_id,
            owner,
            &sources,
        )
        .await?;
        let mut progress = RestoreProgress {
            restore_id: options.restore_id.clone(),
            backup_id: options.backup_id.to_string(),
            ..Default::default()
        };
        for (source, p) in ledger.progress() {
            progress.partitions.insert(source.clone(), p.clone());
        }
        for (topic, r) in ledger.reshaped() {
            progress.reshaped.insert(topic.clone(), r.clone());
        }
        let fence = Fence {
            lost: fence.lost,
            renewed_at_ms: fence.answered_at_ms,
            ttl: fence.session_timeout,
            fatal: std::sync::Mutex::new(None),
            stopping: fence.stopping,
            worker: true,
        };
        let shared = Arc::new(
            Shared::new(
                self.storage.clone(),
                options.clone(),
                progress,
                None,
                fence,
                self.metrics.clone(),
            )
            .with_ledger(ledger),
        );
        let client = &self.prepared.client;
        let producer_config = ProducerConfig::default().with_compression(options.compression);
        let producer = IdempotentProducer::new(client.clone(), producer_config).await?;
        // A worker paused since its take-over must not judge targets another worker has
        // written since: it checks its fence first, and its ownership when a target surprises.
        shared.fence.check(&options.restore_id)?;
        if let Err(e) = record_start_positions(&shared, client, &self.storage, options, &plans, &reshapes).await {
            if let Some(ledger) = &shared.ledger {
                ledger.lock().await.verify().await?;
            }
            return Err(e);
        }
        shared.save_progress().await?;
        let group_commits = &self.prepared.group_commits;
        let result = produce_partitions(
            &shared,
            client,
            &producer,
            &self.configs,
            &plans,
            &reshapes,
            group_commits,
        )
        .await;
        let produced = *shared.produced.lock().await;
        self.produced.0 += produced.0;
        self.produced.1 += produced.1;
        result
    }

    /// Whether the restore is complete. Cheaply, whether `complete.json` exists; with
    /// `full`, whether every partition is done, and if so, the consumer groups committed and
    /// `complete.json` written (by whichever worker gets there first; a second commit of the
    /// same offsets changes nothing).
    pub(crate) async fn check_complete(&mut self, full: bool) -> Result<bool, CliError> {
        let key = complete_key(self.backup_id(), self.restore_id());
        if self.storage.exists(&key).await? {
            return Ok(true);
        }
        if !full {
            return Ok(false);
        }
        let objects = load_all(&self.storage, self.backup_id(), self.restore_id()).await?;
        let all_done = if self.prepared.options.repartition.reshapes() {
            self.prepared.reshapes.iter().all(|r| {
                objects
                    .get(&r.topic)
                    .and_then(|o| o.reshaped.as_ref())
                    .is_some_and(|p| p.done)
            })
        } else {
            self.prepared.plans.iter().all(|plan| {
                objects
                    .get(&partition_key(&plan.topic, plan.partition))
                    .and_then(|o| o.progress.as_ref())
                    .is_some_and(|p| p.done)
            })
        };
        if !all_done {
            return Ok(false);
        }
        let options = &self.prepared.options;
        if options.consumer_groups.is_some() {
            let document = as_document(&options.backup_id, &options.restore_id, &objects);
            let shared = Shared::new(
                self.storage.clone(),
                options.clone(),
                document,
                None,
                Fence::new(Duration::from_secs(60)),
                self.metrics.clone(),
            );
            self.groups = commit_groups(&shared, &self.prepared.client, self.prepared.group_moves.clone()).await?;
        }
        let body = Bytes::from(
            serde_json::to_vec_pretty(&serde_json::json!({
                "restore_id": options.restore_id,
                "completed_at_ms": now_ms(),
                "groups": self.groups.len(),
            }))
            .expect("the marker serialises"),
        );
        match self.storage.put_if_absent(&key, body).await {
            Ok(_) | Err(kbs_storage::Error::AlreadyExists { .. }) => Ok(true),
            Err(e) => Err(e.into()),
        }
    }

    /// The report of this worker once the restore is complete.
    pub(crate) async fn report(&self) -> Result<RestoreReport, CliError> {
        let mut report = self.prepared.report.clone();
        let objects = load_all(&self.storage, self.backup_id(), self.restore_id()).await?;
        for (source, object) in &objects {
            if let Some(p) = &object.progress {
                report.restored.insert(source.clone(), (p.records, p.bytes));
            }
        }
        let options = &self.prepared.options;
        let document = as_document(&options.backup_id, &options.restore_id, &objects);
        for r in &self.prepared.reshapes {
            report.reshaped.push(reshape::restored_shares(&document, r, options));
        }
        report.groups = self.groups.clone();
        report.records = self.produced.0;
        report.bytes = self.produced.1;
        report.duration_secs = self.prepared.started.elapsed().as_secs_f64();
        Ok(report)
    }
}

/// Refuses a single run of a restore that workers share.
pub(super) async fn refuse_if_shared(
    storage: &Arc<dyn ObjectStorage>,
    options: &RestoreOptions,
) -> Result<(), CliError> {
    let prefix = partitions_prefix(&options.backup_id, &options.restore_id);
    if !storage.list_all(&prefix).await?.is_empty() {
        return Err(CliError::Locked(format!(
            "restore {} is shared by workers: run it with --workers and the group the others use",
            options.restore_id
        )));
    }
    Ok(())
}
