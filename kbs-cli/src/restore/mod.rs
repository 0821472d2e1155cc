//! `kbs restore`: puts backed-up records back into a cluster, exactly once, resumable, with
//! point-in-time and offset windows and consumer-group offsets translated.
//!
//! * **Plan** from the manifest alone: segments whose offset range and min/max timestamps can
//!   hold selected records.
//! * **Preflight**: target topics exist (or are created with the backed-up partition count and
//!   configs), have enough partitions, and are empty unless this restore id already wrote them.
//! * **Produce** with the idempotent producer, partitions in parallel, batches pipelined; each
//!   segment is verified completely before any record of it is produced.
//! * **Resume**: progress is checkpointed under `<backup-id>/restores/<restore-id>/`. On a rerun
//!   the target partition is read from the checkpointed target offset: records the interrupted
//!   run wrote after its last checkpoint are matched against the source, recorded, and skipped,
//!   so nothing is written twice.
//! * **Consumer groups**: each committed offset is translated to the target offset of the first
//!   restored record at or after it (the partition's end when there is none) and committed.
//! * **Repartitioning** (`--repartition key|round-robin`): a topic's source partitions are merged
//!   into one deterministic sequence and routed by key or round robin into any number of target
//!   partitions, still exactly once across interruptions (see `reshape/mod.rs`).

mod groups;
mod partitions;
mod plan;
mod preflight;
mod prepare;
mod produce;
mod progress;
mod report;
mod reshape;
mod segments;
mod target;
mod worker;
mod writer;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kbs_kafka::{
    FetchPosition, FetchRequest, IdempotentProducer, KafkaClient, NewTopic, OffsetSpec, ProduceRecord,
    ProducerCompression, ProducerConfig, RecordHeader,
};
use kbs_manifest::{BackupId, Manifest, SegmentFile, TopicName, layout};
use kbs_storage::{ObjectStorage, ObjectVersion};
use serde::Serialize;
use tokio::sync::{Mutex, Semaphore};

pub use progress::{PartitionProgress, RestoreProgress, partition_key};

use crate::backup::TopicFilter;
use crate::error::CliError;
use crate::lease::Lease;
use crate::metrics::RestoreMetrics;

pub use plan::{PartitionPlan, plan};
pub use report::{GroupMove, RestoreReport, TargetTopic, report_text};
pub use reshape::{Repartition, ReshapedTopic, TargetShare};

use groups::*;
pub(crate) use partitions::{as_document as shared_progress_document, load_all as shared_progress};
use preflight::*;
pub(crate) use prepare::Prepared;
use prepare::prepare;
use produce::*;
use segments::*;
use target::*;
pub(crate) use worker::{SharedRestore, WorkerFence, prepare_worker};
use writer::*;

/// What `kbs restore` is asked to do.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The backup to restore.
    pub backup_id: BackupId,
    /// How to reach the target cluster.
    pub kafka: kbs_kafka::ClientConfig,
    /// Which backed-up topics.
    pub topics: TopicFilter,
    /// Source topic → target topic.
    pub topic_map: BTreeMap<String, String>,
    /// (source topic, source partition) → target partition.
    pub partition_map: BTreeMap<(String, i32), i32>,
    /// How records are placed in the target partitions: one to one (the default), or spread by
    /// key or round robin over the target topic's partitions.
    pub repartition: Repartition,
    /// With `repartition` key or round robin: the partition count of a target topic
    /// `create_topics` creates (an existing target keeps its own, which must then equal it).
    pub target_partitions: Option<i32>,
    /// Only records with timestamps at or after this (Unix ms).
    pub start_time: Option<i64>,
    /// Only records with timestamps at or before this (Unix ms).
    pub end_time: Option<i64>,
    /// Per source partition, the first offset to restore.
    pub start_offsets: BTreeMap<(String, i32), i64>,
    /// Per source partition, the last offset to restore.
    pub end_offsets: BTreeMap<(String, i32), i64>,
    /// Create missing target topics.
    pub create_topics: bool,
    /// Replication factor of created topics (`None`: the broker's default).
    pub replication_factor: Option<i16>,
    /// Restore consumer-group offsets: `Some(empty)` all groups, `Some(list)` those.
    pub consumer_groups: Option<Vec<String>>,
    /// Add `x-kafka-backup-offset`, `-timestamp`, `-partition` headers.
    pub include_offset_headers: bool,
    /// Producer batch compression.
    pub compression: ProducerCompression,
    /// Global byte-rate limit of produced key and value bytes.
    pub max_bytes_per_sec: Option<u64>,
    /// The restore id (progress lives under it).
    pub restore_id: String,
    /// Only print the plan.
    pub dry_run: bool,
    /// Skip corrupt segments (recorded in the report) instead of stopping.
    pub skip_corrupt: bool,
    /// Allow restoring into a target partition that already holds records.
    pub allow_non_empty: bool,
    /// Restore a backup that is not complete (an interrupted snapshot, a running continuous
    /// backup): what it holds so far.
    pub allow_incomplete: bool,
    /// Bytes of segments held in memory at once.
    pub memory_budget: u64,
    /// Partitions restored at once.
    pub parallelism: usize,
    /// Serve Prometheus metrics at this address while the restore runs.
    pub metrics_addr: Option<String>,
    /// The age identities that open an encrypted backup's segments.
    pub identities: Option<kbs_format::Identities>,
}

impl RestoreOptions {
    /// Options with the defaults of `kbs restore`: every topic of the backup into topics of
    /// the same names and partitions, existing targets only, lz4 producer batches, no
    /// consumer groups, a 256 MiB memory budget, 8 partitions at a time, and a restore id
    /// derived from the target cluster once connected.
    pub fn new(backup_id: BackupId, kafka: kbs_kafka::ClientConfig) -> Self {
        RestoreOptions {
            backup_id,
            kafka,
            topics: TopicFilter::default(),
            topic_map: BTreeMap::new(),
            partition_map: BTreeMap::new(),
            repartition: Repartition::Keep,
            target_partitions: None,
            start_time: None,
            end_time: None,
            start_offsets: BTreeMap::new(),
            end_offsets: BTreeMap::new(),
            create_topics: false,
            replication_factor: None,
            consumer_groups: None,
            include_offset_headers: false,
            compression: ProducerCompression::Lz4,
            max_bytes_per_sec: None,
            restore_id: String::new(),
            dry_run: false,
            skip_corrupt: false,
            allow_non_empty: false,
            allow_incomplete: false,
            memory_budget: 256 << 20,
            parallelism: 8,
            metrics_addr: None,
            identities: None,
        }
    }
}

/// The default restore id: the same command against the same target resumes the same restore.
pub fn default_restore_id(options: &RestoreOptions, target_cluster_id: &str) -> String {
    use std::hash::{Hash, Hasher};
    // FNV-1a over a stable rendering of what determines the restore: the target cluster by its
    // id (not by the bootstrap string, which may list brokers in any order or by other names),
    // the selection, maps and windows.
    let text = format!(
        "{}|{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{}",
        options.backup_id,
        target_cluster_id,
        options.topics,
        options.topic_map,
        options.partition_map,
        options.start_time,
        options.end_time,
        options.start_offsets,
        options.end_offsets,
        options.include_offset_headers
    );
    let mut h = crate::stable_hash::Fnv1a::with_seed(crate::stable_hash::FNV_OFFSET_BASIS);
    text.hash(&mut h);
    if options.repartition.reshapes() {
        // Another shape is another restore (one-to-one restores keep the ids they always had).
        (options.repartition, options.target_partitions).hash(&mut h);
    }
    format!("r-{:016x}", h.finish())
}

fn load_manifest_sync(bytes: &[u8], key: &str) -> Result<Manifest, CliError> {
    Manifest::from_json(bytes).map_err(|e| CliError::Unparsable {
        key: key.to_string(),
        message: e.to_string(),
    })
}

/// Runs a restore (or, with `dry_run`, only plans it).
///
/// An empty `options.restore_id` is derived with [`default_restore_id`] from the target
/// cluster's id once connected; `progress` hears which id runs.
pub async fn run(
    storage: Arc<dyn ObjectStorage>,
    options: RestoreOptions,
    progress: Arc<dyn crate::backup::ProgressSink>,
) -> Result<RestoreReport, CliError> {
    run_with_metrics(storage, options, Arc::new(RestoreMetrics::default()), progress).await
}

/// [`run`], counting into `metrics` (served at `options.metrics_addr`); pass the same metrics
/// as the storage's retry observer to count its retries too.
pub async fn run_with_metrics(
    storage: Arc<dyn ObjectStorage>,
    options: RestoreOptions,
    metrics: Arc<RestoreMetrics>,
    progress: Arc<dyn crate::backup::ProgressSink>,
) -> Result<RestoreReport, CliError> {
    let (_never, shutdown) = tokio::sync::watch::channel(false);
    run_until(storage, options, metrics, progress, shutdown).await
}

/// [`run_with_metrics`] until `shutdown` turns true (SIGINT, SIGTERM): the restore then stops
/// at each partition's next batch, waits for what is in flight, saves its progress and fails
/// with [`CliError::RestoreStopped`]; the same command resumes it.
pub async fn run_until(
    storage: Arc<dyn ObjectStorage>,
    options: RestoreOptions,
    metrics: Arc<RestoreMetrics>,
    progress: Arc<dyn crate::backup::ProgressSink>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<RestoreReport, CliError> {
    let server = crate::metrics::serve_if_asked(options.metrics_addr.as_deref(), metrics.clone()).await?;
    let result = restore(storage, options, metrics.clone(), progress, shutdown).await;
    if result.is_err() {
        metrics.errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    if let Some(server) = server {
        server.abort();
    }
    result
}

async fn restore(
    storage: Arc<dyn ObjectStorage>,
    options: RestoreOptions,
    metrics: Arc<RestoreMetrics>,
    progress: Arc<dyn crate::backup::ProgressSink>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<RestoreReport, CliError> {
    let prepared = prepare(&storage, options, &metrics, &progress).await?;
    let Prepared {
        options,
        plans,
        reshapes,
        group_commits,
        needed,
        existing,
        client,
        group_moves,
        mut report,
        started,
    } = prepared;
    if options.dry_run {
        if !reshapes.is_empty() {
            let shared = Shared::new(
                storage.clone(),
                options.clone(),
                Default::default(),
                None,
                Fence::new(RESTORE_LEASE_TTL),
                metrics,
            );
            for r in &reshapes {
                report.reshaped.push(reshape::planned_shares(&shared, r).await?);
            }
        }
        report.groups = group_moves;
        report.duration_secs = started.elapsed().as_secs_f64();
        return Ok(report);
    }

    worker::refuse_if_shared(&storage, &options).await?;
    // One run per restore id at a time: a second run fails fast; a run whose holder died on
    // this host takes over at once; one whose lease expired (the holder may only be paused)
    // takes over after giving it time to notice (it stops producing once its lease is half
    // expired, and its last batches land within that margin).
    let (held, maybe_alive) = Lease::acquire_restore(
        storage.clone(),
        &options.backup_id,
        &options.restore_id,
        RESTORE_LEASE_TTL,
    )
    .await?;
    let lease = Arc::new(Mutex::new(Some(held)));
    let fence = Fence::new(RESTORE_LEASE_TTL);
    let renewer = crate::lease::spawn_renewal(lease.clone(), fence.lost.clone(), fence.renewed_at_ms.clone());
    if maybe_alive {
        progress.note(&format!(
            "restore {} took over an expired lease; waiting {} s for the earlier run to stop",
            options.restore_id,
            RESTORE_LEASE_TTL.as_secs() / 2
        ));
        tokio::time::sleep(RESTORE_LEASE_TTL / 2).await;
    }
    let lost = fence.lost.clone();
    // SIGINT/SIGTERM: every partition stops at its next batch (see `Fence::check`).
    let stopping = fence.stopping.clone();
    let stop_watch = tokio::spawn(async move {
        if shutdown.wait_for(|stop| *stop).await.is_ok() {
            stopping.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let stopped = fence.stopping.clone();
    let (backup_id, restore_id) = (options.backup_id.to_string(), options.restore_id.clone());
    let result = produce_all(
        storage.clone(),
        options,
        (plans, reshapes, group_commits),
        needed,
        existing,
        client,
        group_moves,
        report,
        fence,
        started,
        metrics,
    )
    .await;
    stop_watch.abort();
    let result = match result {
        Err(_) if stopped.load(std::sync::atomic::Ordering::SeqCst) => {
            Err(CliError::RestoreStopped { backup_id, restore_id })
        }
        other => other,
    };
    renewer.abort();
    if let Some(held) = lease.lock().await.take()
        && !lost.load(std::sync::atomic::Ordering::SeqCst)
        && let Err(e) = held.release().await
    {
        tracing::warn!("could not release the restore's lease: {e}");
    }
    result
}

/// Warns about target topics whose time-based retention would delete restored records soon
/// after they are written: their CreateTime is what the broker's retention measures, and a
/// backup's records can be older than the target keeps records.
fn warn_of_retention(plans: &[PartitionPlan], configs: &BTreeMap<String, BTreeMap<String, String>>, now: i64) {
    for (topic, settings) in configs {
        let deletes = settings.get("cleanup.policy").is_none_or(|p| p.contains("delete"));
        let Some(retention) = settings.get("retention.ms").and_then(|r| r.parse::<i64>().ok()) else {
            continue;
        };
        if !deletes || retention < 0 {
            continue;
        }
        let oldest = plans
            .iter()
            .filter(|p| p.target_topic == *topic)
            .flat_map(|p| p.files.iter().map(|f| f.min_timestamp))
            .min();
        if let Some(oldest) = oldest
            && oldest < now.saturating_sub(retention)
        {
            tracing::warn!(
                "target topic {topic} keeps records for retention.ms={retention}, but the oldest record to restore \
                 has CreateTime {oldest}, {} hours ago: the broker will delete such records soon after they are \
                 restored. Raise retention.ms on {topic} first if they must stay",
                (now - oldest) / 3_600_000
            );
        }
    }
}

/// What a target topic needs: partitions, and the source's partition count and configs.
type Needs = (i32, Option<u32>, BTreeMap<String, String>);

/// Per reshaped source topic: moved group → source partition → committed offset.
type GroupCommits = BTreeMap<String, BTreeMap<String, BTreeMap<i32, i64>>>;

/// How long a restore's lease lives without renewal (renewed every third of it).
const RESTORE_LEASE_TTL: Duration = Duration::from_secs(15);

/// Everything a restore does once it holds its lease: preflight, progress, producing every
/// partition, consumer groups.
#[allow(clippy::too_many_arguments)]
async fn produce_all(
    storage: Arc<dyn ObjectStorage>,
    options: RestoreOptions,
    (plans, reshapes, group_commits): (Vec<PartitionPlan>, Vec<reshape::ReshapePlan>, GroupCommits),
    needed: BTreeMap<String, Needs>,
    existing: BTreeMap<String, i32>,
    client: KafkaClient,
    group_moves: Vec<GroupMove>,
    mut report: RestoreReport,
    fence: Fence,
    started: Instant,
    metrics: Arc<RestoreMetrics>,
) -> Result<RestoreReport, CliError> {
    let configs = prepare_targets(&client, &options, &plans, &needed, &existing).await?;

    let (progress, version) = load_progress(&storage, &options).await?;
    // Another run that saved this progress lately may still be finishing its last batches.
    let earlier_run_lately = version.is_some() && now_ms() - progress.updated_at_ms < 10_000;
    let producer_config = ProducerConfig::default().with_compression(options.compression);
    let producer = IdempotentProducer::new(client.clone(), producer_config).await?;
    let shared = Arc::new(Shared::new(
        storage.clone(),
        options.clone(),
        progress,
        version,
        fence,
        metrics,
    ));
    record_start_positions(&shared, &client, &storage, &options, &plans, &reshapes).await?;
    // Claim the progress document (and fence an earlier run) before producing anything. An
    // earlier run that was still saving it stops producing at its next save (within 1 s);
    // the target is read only after that, so its last batches are seen and matched.
    shared.save_progress().await?;
    if earlier_run_lately {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    produce_partitions(&shared, &client, &producer, &configs, &plans, &reshapes, &group_commits).await?;

    // Consumer groups, translated through the offset map.
    if options.consumer_groups.is_some() {
        report.groups = commit_groups(&shared, &client, group_moves).await?;
        shared.save_progress().await?;
    }
    let progress = shared.progress.lock().await.0.clone();
    for r in &reshapes {
        report.reshaped.push(reshape::restored_shares(&progress, r, &options));
    }
    for p in &plans {
        if let Some(pp) = progress.partitions.get(&partition_key(&p.topic, p.partition)) {
            report
                .restored
                .insert(partition_key(&p.topic, p.partition), (pp.records, pp.bytes));
        }
    }
    report.skipped_segments = shared.skipped.lock().await.clone();
    let produced = *shared.produced.lock().await;
    report.records = produced.0;
    report.bytes = produced.1;
    report.duration_secs = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Produces `plans` (and `reshapes`) with `shared`'s progress, `options.parallelism` partitions
/// at a time, saving the progress every second and once more at the end; the first error of
/// any partition is returned once every partition stopped.
#[allow(clippy::too_many_arguments)]
async fn produce_partitions(
    shared: &Arc<Shared>,
    client: &KafkaClient,
    producer: &IdempotentProducer,
    configs: &BTreeMap<String, BTreeMap<String, String>>,
    plans: &[PartitionPlan],
    reshapes: &[reshape::ReshapePlan],
    group_commits: &GroupCommits,
) -> Result<(), CliError> {
    let options = &shared.options;
    let saver = spawn_progress_saver(shared.clone());
    let limit = Arc::new(Semaphore::new(options.parallelism.max(1)));
    let max_message_bytes = |topic: &str| {
        configs
            .get(topic)
            .and_then(|c| c.get("max.message.bytes"))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(1_048_588)
    };
    // Each task waits for one of `parallelism` slots; a reshaped topic takes one slot, its
    // sources sharing that slot's memory.
    let in_a_slot = |work: std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), CliError>> + Send>>| {
        let limit = limit.clone();
        tokio::spawn(async move {
            let _slot = limit
                .acquire_owned()
                .await
                .map_err(|_| CliError::Locked("restore pool closed".into()))?;
            work.await
        })
    };
    let mut tasks = Vec::new();
    for p in plans.iter().filter(|_| !options.repartition.reshapes()).cloned() {
        let max_message_bytes = max_message_bytes(&p.target_topic);
        let (shared, client, producer) = (shared.clone(), client.clone(), producer.clone());
        tasks.push(in_a_slot(Box::pin(async move {
            restore_partition(&shared, &client, &producer, &p, max_message_bytes).await
        })));
    }
    for r in reshapes.iter().cloned() {
        let max_message_bytes = max_message_bytes(&r.target_topic);
        let commits = group_commits.get(&r.topic).cloned().unwrap_or_default();
        let (shared, client, producer) = (shared.clone(), client.clone(), producer.clone());
        tasks.push(in_a_slot(Box::pin(reshape::restore_topic(
            shared,
            client,
            producer,
            r,
            max_message_bytes,
            commits,
        ))));
    }
    let mut first_error = None;
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(CliError::Locked(format!("restore task failed: {e}")));
            }
        }
    }
    saver.abort();
    shared.save_progress().await?;
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
