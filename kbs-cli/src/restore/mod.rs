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

mod progress;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kbs_format::{ReadLimits, SegmentReader};
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
}

/// One source partition's plan.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionPlan {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Target topic.
    pub target_topic: String,
    /// Target partition.
    pub target_partition: i32,
    /// Segments that can hold selected records.
    pub segments: Vec<String>,
    /// Records in those segments (an upper bound of what is restored).
    pub estimated_records: u64,
    /// Bytes of those segments.
    pub estimated_bytes: u64,
    /// First source offset to restore.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_offset: Option<i64>,
    /// Last source offset to restore.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_offset: Option<i64>,
    #[serde(skip)]
    files: Vec<SegmentFile>,
    /// Source offsets where a produced batch must start: the committed offsets of the consumer
    /// groups being moved, so each group resumes at a batch boundary (some brokers, tansu among
    /// them, serve nothing when asked to fetch from the middle of a batch).
    #[serde(skip)]
    split_points: std::collections::BTreeSet<i64>,
}

/// A target topic of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct TargetTopic {
    /// Name.
    pub name: String,
    /// Partitions the restore needs.
    pub partitions_needed: i32,
    /// Partitions the backup says the source had.
    pub source_partition_count: Option<u32>,
    /// Whether it exists in the target cluster.
    pub exists: bool,
    /// Its partition count there, when it exists.
    pub existing_partitions: Option<i32>,
}

/// A consumer-group offset translation.
#[derive(Debug, Clone, Serialize)]
pub struct GroupMove {
    /// Group.
    pub group: String,
    /// Source topic and partition.
    pub source: String,
    /// The committed source offset (next record the group would read).
    pub source_offset: i64,
    /// Target topic and partition.
    pub target: String,
    /// The offset committed in the target (absent in a dry run).
    pub target_offset: Option<i64>,
    /// `committed`, `planned`, or why it was not committed.
    pub status: String,
}

/// What a restore did (or, with `--dry-run`, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreReport {
    /// The restore id.
    pub restore_id: String,
    /// The backup.
    pub backup_id: String,
    /// Only planned.
    pub dry_run: bool,
    /// The plan per source partition.
    pub partitions: Vec<PartitionPlan>,
    /// Target topics.
    pub targets: Vec<TargetTopic>,
    /// Records produced per source partition (`topic/partition` → records, bytes).
    pub restored: BTreeMap<String, (u64, u64)>,
    /// Segments skipped as corrupt (`--skip-corrupt`), with the reason.
    pub skipped_segments: Vec<String>,
    /// Consumer-group translations.
    pub groups: Vec<GroupMove>,
    /// Records produced by this run.
    pub records: u64,
    /// Key and value bytes produced by this run.
    pub bytes: u64,
    /// Wall time in seconds.
    pub duration_secs: f64,
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
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
            }
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    text.hash(&mut h);
    format!("r-{:016x}", h.finish())
}

/// The ids of other restores of this backup whose progress names `target_topic` (best effort:
/// unreadable progress documents are left out).
async fn restores_into(storage: &Arc<dyn ObjectStorage>, options: &RestoreOptions, target_topic: &str) -> Vec<String> {
    let prefix = format!("{}/restores/", options.backup_id);
    let Ok(listing) = storage.list_with_delimiter(&prefix).await else {
        return Vec::new();
    };
    let mut ids = Vec::new();
    for dir in listing.common_prefixes {
        let id = dir
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        if id.is_empty() || id == options.restore_id {
            continue;
        }
        let key = format!("{prefix}{id}/progress.json");
        let Ok(got) = storage.get(&key).await else { continue };
        let Ok(progress) = serde_json::from_slice::<RestoreProgress>(&got.bytes) else {
            continue;
        };
        if progress.partitions.values().any(|p| p.target_topic == target_topic) {
            ids.push(id);
        }
    }
    ids
}

fn load_manifest_sync(bytes: &[u8], key: &str) -> Result<Manifest, CliError> {
    Manifest::from_json(bytes).map_err(|e| CliError::Unparsable {
        key: key.to_string(),
        message: e.to_string(),
    })
}

/// Chooses, from the manifest alone, the segments that can hold selected records.
pub fn plan(manifest: &Manifest, options: &RestoreOptions) -> Vec<PartitionPlan> {
    let mut plans = Vec::new();
    for topic in &manifest.topics {
        if !options.topics.selects(topic.name.as_str(), false) {
            continue;
        }
        let target_topic = options
            .topic_map
            .get(topic.name.as_str())
            .cloned()
            .unwrap_or_else(|| topic.name.to_string());
        for partition in &topic.partitions {
            let key = (topic.name.to_string(), partition.partition);
            let start = options.start_offsets.get(&key).copied();
            let end = options.end_offsets.get(&key).copied();
            let files: Vec<SegmentFile> = partition
                .segment_files
                .iter()
                .filter(|f| start.is_none_or(|s| f.last_offset >= s))
                .filter(|f| end.is_none_or(|e| f.first_offset <= e))
                .filter(|f| options.start_time.is_none_or(|t| f.max_timestamp >= t))
                .filter(|f| options.end_time.is_none_or(|t| f.min_timestamp <= t))
                .cloned()
                .collect();
            if files.is_empty() {
                continue;
            }
            plans.push(PartitionPlan {
                topic: topic.name.to_string(),
                partition: partition.partition,
                target_partition: options.partition_map.get(&key).copied().unwrap_or(partition.partition),
                target_topic: target_topic.clone(),
                segments: files.iter().map(|f| f.name.to_string()).collect(),
                estimated_records: files.iter().map(|f| f.records).sum(),
                estimated_bytes: files.iter().map(|f| f.size_bytes).sum(),
                start_offset: start,
                end_offset: end,
                files,
                split_points: group_offsets(manifest, options, topic.name.as_str(), partition.partition),
            });
        }
    }
    plans
}

/// The committed offsets of the groups being moved, for one source partition.
fn group_offsets(
    manifest: &Manifest,
    options: &RestoreOptions,
    topic: &str,
    partition: i32,
) -> std::collections::BTreeSet<i64> {
    let (Some(wanted), Some(groups)) = (&options.consumer_groups, &manifest.consumer_groups) else {
        return Default::default();
    };
    groups
        .iter()
        .filter(|(group, _)| wanted.is_empty() || wanted.contains(group))
        .filter_map(|(_, topics)| topics.get(topic)?.get(&partition).map(|c| c.offset))
        .collect()
}

/// Shared state of a running restore.
struct Shared {
    storage: Arc<dyn ObjectStorage>,
    options: RestoreOptions,
    progress: Mutex<(RestoreProgress, Option<ObjectVersion>)>,
    memory: Arc<Semaphore>,
    memory_permits: u64,
    rate: Option<Mutex<(f64, Instant)>>,
    skipped: Mutex<Vec<String>>,
    produced: Mutex<(u64, u64)>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Shared {
    fn progress_key(&self) -> String {
        format!(
            "{}restores/{}/progress.json",
            layout::backup_prefix(&self.options.backup_id),
            self.options.restore_id
        )
    }

    /// Writes the progress document (compare-and-swap, so two runs of one restore id cannot
    /// both write it).
    async fn save_progress(&self) -> Result<(), CliError> {
        let mut guard = self.progress.lock().await;
        guard.0.updated_at_ms = now_ms();
        let body = Bytes::from(serde_json::to_vec_pretty(&guard.0).expect("progress serialises"));
        let key = self.progress_key();
        let put = match &guard.1 {
            Some(version) => self.storage.put_if_match(&key, body, version).await,
            None => self.storage.put_if_absent(&key, body).await,
        };
        match put {
            Ok(put) => {
                guard.1 = Some(put.version);
                Ok(())
            }
            Err(kbs_storage::Error::Precondition { .. } | kbs_storage::Error::AlreadyExists { .. }) => {
                Err(CliError::Locked(format!(
                    "{key} was changed by another run of restore {}; stopping",
                    self.options.restore_id
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until `bytes` may be produced under the byte-rate limit.
    async fn throttle(&self, bytes: u64) {
        let Some(rate) = &self.rate else { return };
        let per_sec = self.options.max_bytes_per_sec.unwrap_or(u64::MAX) as f64;
        loop {
            let wait = {
                let mut guard = rate.lock().await;
                let (tokens, last) = &mut *guard;
                let now = Instant::now();
                *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * per_sec).min(per_sec);
                *last = now;
                if *tokens >= bytes as f64 || *tokens >= per_sec {
                    *tokens -= bytes as f64;
                    return;
                }
                Duration::from_secs_f64((bytes as f64 - *tokens) / per_sec)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// Runs a restore (or, with `dry_run`, only plans it).
///
/// An empty `options.restore_id` is derived with [`default_restore_id`] from the target
/// cluster's id once connected; `progress` hears which id runs.
pub async fn run(
    storage: Arc<dyn ObjectStorage>,
    mut options: RestoreOptions,
    progress: Arc<dyn crate::backup::ProgressSink>,
) -> Result<RestoreReport, CliError> {
    let started = Instant::now();
    let manifest_key = layout::manifest_key(&options.backup_id);
    let manifest = match storage.get(&manifest_key).await {
        Ok(got) => load_manifest_sync(&got.bytes, &manifest_key)?,
        Err(e) if e.is_not_found() => {
            return Err(CliError::BackupNotFound {
                backup_id: options.backup_id.to_string(),
                storage: storage.describe().to_string(),
                key: manifest_key,
            });
        }
        Err(e) => return Err(e.into()),
    };
    if !manifest.is_complete() {
        if !options.allow_incomplete {
            return Err(CliError::Incomplete {
                backup_id: options.backup_id.to_string(),
                status: crate::list::status_name(&manifest).to_owned(),
            });
        }
        tracing::warn!(
            "backup {} is not complete (--allow-incomplete); restoring what it holds so far",
            options.backup_id
        );
    }
    let plans = plan(&manifest, &options);
    let mut report = RestoreReport {
        restore_id: options.restore_id.clone(),
        backup_id: options.backup_id.to_string(),
        dry_run: options.dry_run,
        partitions: plans.clone(),
        ..Default::default()
    };
    // One source partition per target partition: resuming without duplicates relies on each
    // target partition being written by one ordered stream.
    let mut targets_seen = BTreeMap::new();
    for p in &plans {
        if let Some(other) = targets_seen.insert(
            (p.target_topic.clone(), p.target_partition),
            (p.topic.clone(), p.partition),
        ) {
            return Err(CliError::InvalidArgument {
                flag: "partition-map",
                message: format!(
                    "{}/{} and {}/{} would both be restored into {}/{}; map them to different partitions",
                    other.0, other.1, p.topic, p.partition, p.target_topic, p.target_partition
                ),
            });
        }
    }
    for (topic, partition) in options.start_offsets.keys().chain(options.end_offsets.keys()) {
        if manifest.topic(topic).and_then(|t| t.partition(*partition)).is_none() {
            return Err(CliError::InvalidArgument {
                flag: "start-offset",
                message: format!("the backup holds no partition {topic}:{partition}"),
            });
        }
    }

    let client = KafkaClient::connect(options.kafka.clone()).await?;
    let cluster_id = client.metadata(Some(&[])).await?.cluster_id.unwrap_or_default();
    if options.restore_id.is_empty() {
        options.restore_id = default_restore_id(&options, &cluster_id);
        report.restore_id = options.restore_id.clone();
    }
    progress.note(&format!(
        "restore {} of backup {} into cluster {}{}",
        options.restore_id,
        options.backup_id,
        if cluster_id.is_empty() { "(no id)" } else { &cluster_id },
        if options.dry_run {
            String::new()
        } else {
            format!(
                "; rerunning this command (or one with --restore-id {}) resumes it",
                options.restore_id
            )
        }
    ));
    // Target topics: which exist, how many partitions they need.
    /// What a target topic needs: partitions, and the source's partition count and configs.
    type Needs = (i32, Option<u32>, BTreeMap<String, String>);
    let mut needed: BTreeMap<String, Needs> = BTreeMap::new();
    // Every selected topic, even one without records (an empty topic is restored empty).
    for topic in manifest
        .topics
        .iter()
        .filter(|t| options.topics.selects(t.name.as_str(), false))
    {
        let target = options
            .topic_map
            .get(topic.name.as_str())
            .cloned()
            .unwrap_or_else(|| topic.name.to_string());
        needed.entry(target).or_insert_with(|| {
            (
                topic.partition_count.map_or(0, |c| c as i32),
                topic.partition_count,
                topic.configs.clone().unwrap_or_default(),
            )
        });
    }
    for p in &plans {
        let source = manifest.topic(&p.topic);
        let entry = needed.entry(p.target_topic.clone()).or_insert_with(|| {
            (
                0,
                source.and_then(|t| t.partition_count),
                source.and_then(|t| t.configs.clone()).unwrap_or_default(),
            )
        });
        entry.0 = entry.0.max(p.target_partition + 1);
    }
    let names: Vec<&str> = needed.keys().map(String::as_str).collect();
    let mut existing: BTreeMap<String, i32> = BTreeMap::new();
    if !names.is_empty() {
        let metadata = client.metadata(None).await?;
        for t in metadata.topics {
            if needed.contains_key(&t.name) {
                existing.insert(t.name.clone(), t.partitions.len() as i32);
            }
        }
    }
    for (name, (partitions_needed, source_count, _)) in &needed {
        report.targets.push(TargetTopic {
            name: name.clone(),
            partitions_needed: *partitions_needed,
            source_partition_count: *source_count,
            exists: existing.contains_key(name),
            existing_partitions: existing.get(name).copied(),
        });
    }
    let group_moves = planned_group_moves(&manifest, &options, &plans);
    if options.dry_run {
        report.groups = group_moves;
        report.duration_secs = started.elapsed().as_secs_f64();
        return Ok(report);
    }

    // Preflight: create or check target topics.
    let mut to_create = Vec::new();
    for (name, (partitions_needed, source_count, configs)) in &needed {
        match existing.get(name) {
            Some(&have) if have < *partitions_needed => {
                return Err(CliError::InvalidArgument {
                    flag: "partition-map",
                    message: format!(
                        "target topic {name} has {have} partitions; the restore needs {partitions_needed}"
                    ),
                });
            }
            Some(_) => {}
            None if options.create_topics => {
                let count = (*partitions_needed).max(source_count.map_or(0, |c| c as i32));
                let mut topic = NewTopic::new(name.clone(), count);
                topic.replication_factor = options.replication_factor;
                topic.configs = configs.clone();
                to_create.push(topic);
            }
            None => {
                return Err(CliError::InvalidArgument {
                    flag: "create-topics",
                    message: format!("target topic {name} does not exist; create it or pass --create-topics"),
                });
            }
        }
    }
    if !to_create.is_empty() {
        client.create_topics(&to_create).await?;
    }
    let configs = if names.is_empty() {
        BTreeMap::new()
    } else {
        client.describe_topic_configs(&names).await?
    };

    // Progress of an earlier run of this restore id.
    let progress_key = format!(
        "{}restores/{}/progress.json",
        layout::backup_prefix(&options.backup_id),
        options.restore_id
    );
    let (progress, version) = match storage.get(&progress_key).await {
        Ok(got) => {
            let progress: RestoreProgress = serde_json::from_slice(&got.bytes).map_err(|e| CliError::Unparsable {
                key: progress_key.clone(),
                message: e.to_string(),
            })?;
            (progress, Some(got.meta.version))
        }
        Err(e) if e.is_not_found() => (
            RestoreProgress {
                restore_id: options.restore_id.clone(),
                backup_id: options.backup_id.to_string(),
                ..Default::default()
            },
            None,
        ),
        Err(e) => return Err(e.into()),
    };
    let producer_config = ProducerConfig::default().with_compression(options.compression);
    let producer = IdempotentProducer::new(client.clone(), producer_config).await?;
    let memory_permits = (options.memory_budget >> 10).clamp(1, u64::from(u32::MAX >> 4));
    let shared = Arc::new(Shared {
        storage: storage.clone(),
        memory: Arc::new(Semaphore::new(memory_permits as usize)),
        memory_permits,
        rate: options.max_bytes_per_sec.map(|_| Mutex::new((0.0, Instant::now()))),
        options: options.clone(),
        progress: Mutex::new((progress, version)),
        skipped: Mutex::new(Vec::new()),
        produced: Mutex::new((0, 0)),
    });
    // Where each partition starts in its target, recorded before anything is produced, so an
    // interrupted run is always resumed from the progress document.
    for p in &plans {
        let key = partition_key(&p.topic, p.partition);
        if shared.progress.lock().await.0.partitions.contains_key(&key) {
            continue;
        }
        let (target_end, target_start) = target_bounds(&client, &p.target_topic, p.target_partition).await?;
        if target_end > target_start && !options.allow_non_empty {
            let others = restores_into(&storage, &options, &p.target_topic).await;
            let resume = if others.is_empty() {
                String::new()
            } else {
                format!(
                    " Earlier restores of this backup wrote to {}: {} — to resume one, rerun it with --restore-id ID.",
                    p.target_topic,
                    others.join(", ")
                )
            };
            return Err(CliError::InvalidArgument {
                flag: "allow-non-empty",
                message: format!(
                    "target partition {}/{} already holds records (offsets {target_start}..{}) that restore {} did \
                     not write.{resume} Otherwise restore into an empty topic. (--allow-non-empty appends the \
                     backup's records after what is there: any of them already in the topic are then written twice.)",
                    p.target_topic,
                    p.target_partition,
                    target_end - 1,
                    options.restore_id
                ),
            });
        }
        shared.progress.lock().await.0.partitions.insert(
            key,
            PartitionProgress {
                target_topic: p.target_topic.clone(),
                target_partition: p.target_partition,
                next_target_offset: target_end,
                ..Default::default()
            },
        );
    }
    // Claim the progress document (and fence an earlier run) before producing anything.
    shared.save_progress().await?;

    let saver = {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Err(e) = shared.save_progress().await {
                    tracing::error!("saving restore progress: {e}");
                    return;
                }
            }
        })
    };
    let limit = Arc::new(Semaphore::new(options.parallelism.max(1)));
    let mut tasks = Vec::new();
    for p in plans.clone() {
        let max_message_bytes = configs
            .get(&p.target_topic)
            .and_then(|c| c.get("max.message.bytes"))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(1_048_588);
        let (shared, client, producer, limit) = (shared.clone(), client.clone(), producer.clone(), limit.clone());
        tasks.push(tokio::spawn(async move {
            let _slot = limit
                .acquire_owned()
                .await
                .map_err(|_| CliError::Locked("restore pool closed".into()))?;
            restore_partition(&shared, &client, &producer, &p, max_message_bytes).await
        }));
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
    if let Some(e) = first_error {
        return Err(e);
    }

    // Consumer groups, translated through the offset map.
    if options.consumer_groups.is_some() {
        report.groups = commit_groups(&shared, &client, group_moves).await?;
        shared.save_progress().await?;
    }
    let progress = shared.progress.lock().await.0.clone();
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

/// The group offsets of the manifest that this restore moves, before translation.
fn planned_group_moves(manifest: &Manifest, options: &RestoreOptions, plans: &[PartitionPlan]) -> Vec<GroupMove> {
    let Some(wanted) = &options.consumer_groups else {
        return Vec::new();
    };
    let Some(groups) = &manifest.consumer_groups else {
        return Vec::new();
    };
    let mut moves = Vec::new();
    for (group, topics) in groups {
        if !wanted.is_empty() && !wanted.contains(group) {
            continue;
        }
        for (topic, partitions) in topics {
            for (partition, committed) in partitions {
                let Some(p) = plans
                    .iter()
                    .find(|p| p.topic == topic.as_str() && p.partition == *partition)
                else {
                    continue;
                };
                moves.push(GroupMove {
                    group: group.clone(),
                    source: partition_key(topic.as_str(), *partition),
                    source_offset: committed.offset,
                    target: partition_key(&p.target_topic, p.target_partition),
                    target_offset: None,
                    status: "planned".into(),
                });
            }
        }
    }
    moves
}

async fn commit_groups(
    shared: &Shared,
    client: &KafkaClient,
    moves: Vec<GroupMove>,
) -> Result<Vec<GroupMove>, CliError> {
    let mut by_group: BTreeMap<String, Vec<GroupMove>> = BTreeMap::new();
    {
        let guard = shared.progress.lock().await;
        for mut m in moves {
            let Some(p) = guard.0.partitions.get(&m.source) else {
                continue;
            };
            // The first restored record at or after the committed offset; past the last restored
            // record, the partition's end.
            m.target_offset = Some(
                p.first_target_at_or_after(m.source_offset)
                    .unwrap_or(p.next_target_offset),
            );
            by_group.entry(m.group.clone()).or_default().push(m);
        }
    }
    let mut done = Vec::new();
    for (group, mut moves) in by_group {
        let offsets: Vec<kbs_kafka::CommittedOffset> = moves
            .iter()
            .map(|m| {
                let (topic, partition) = m.target.rsplit_once('/').expect("topic/partition");
                kbs_kafka::CommittedOffset::new(topic, partition.parse().unwrap_or(0), m.target_offset.unwrap_or(0))
            })
            .collect();
        let status = match client.commit_offsets(&group, &offsets).await {
            Ok(()) => {
                let mut guard = shared.progress.lock().await;
                let entry = guard.0.groups.entry(group.clone()).or_default();
                for m in &moves {
                    entry.insert(m.target.clone(), m.target_offset.unwrap_or(0));
                }
                "committed".to_string()
            }
            Err(kbs_kafka::Error::GroupActive { state, members, .. }) => {
                format!("not touched: the group is {state} with {members} active member(s)")
            }
            Err(e) => return Err(e.into()),
        };
        for m in &mut moves {
            m.status = status.clone();
        }
        done.extend(moves);
    }
    Ok(done)
}

/// The record as it is produced: same timestamp, key, value and headers, plus the offset
/// headers when asked.
fn produce_record(r: &kbs_format::Record, source_partition: i32, offset_headers: bool) -> ProduceRecord {
    let mut headers: Vec<RecordHeader> = r
        .headers
        .iter()
        .map(|h| RecordHeader {
            key: h.key.clone(),
            value: h.value.clone(),
        })
        .collect();
    if offset_headers {
        for (k, v) in [
            ("x-kafka-backup-offset", r.offset.to_string()),
            ("x-kafka-backup-timestamp", r.timestamp.to_string()),
            ("x-kafka-backup-partition", source_partition.to_string()),
        ] {
            headers.push(RecordHeader {
                key: Bytes::from_static(k.as_bytes()),
                value: Some(Bytes::from(v)),
            });
        }
    }
    ProduceRecord {
        timestamp: r.timestamp,
        key: r.key.clone(),
        value: r.value.clone(),
        headers,
    }
}

fn record_bytes(r: &ProduceRecord) -> u64 {
    (r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len())) as u64
}

/// Rough size of a record inside a Kafka batch, for batch sizing and max.message.bytes.
fn wire_size(r: &ProduceRecord) -> usize {
    24 + r.key.as_ref().map_or(0, |k| k.len())
        + r.value.as_ref().map_or(0, |v| v.len())
        + r.headers
            .iter()
            .map(|h| 10 + h.key.len() + h.value.as_ref().map_or(0, |v| v.len()))
            .sum::<usize>()
}

/// With `--skip-corrupt`, records a segment that failed verification; otherwise the error.
async fn skip_or_fail(shared: &Shared, key: &str, source: kbs_format::FormatError) -> Result<(), CliError> {
    if !shared.options.skip_corrupt {
        return Err(CliError::Segment {
            key: key.to_string(),
            source,
        });
    }
    let position = crate::validate::error_position(&source).map_or(String::new(), |p| format!(" (byte {p})"));
    shared.skipped.lock().await.push(format!("{key}{position}: {source}"));
    tracing::error!("skipping corrupt segment {key}: {source}");
    Ok(())
}

/// Records of a verified in-memory segment, decoded on the blocking pool.
fn records_from_memory(
    bytes: Bytes,
) -> tokio::sync::mpsc::Receiver<Result<kbs_format::Record, kbs_format::FormatError>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    tokio::task::spawn_blocking(move || {
        let reader = match SegmentReader::new(bytes) {
            Ok(reader) => reader,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        for record in reader.records() {
            if tx.blocking_send(record).is_err() {
                return;
            }
        }
    });
    rx
}

/// Downloads a segment into an anonymous temporary file, chunk by chunk.
async fn spool(storage: &Arc<dyn ObjectStorage>, key: &str) -> Result<std::fs::File, CliError> {
    use futures::StreamExt as _;
    use tokio::io::AsyncWriteExt as _;
    let spool_error = |e: std::io::Error| CliError::Spool {
        key: key.to_string(),
        source: e,
    };
    let mut stream = storage.get_stream(key).await?;
    let mut file = tokio::fs::File::from_std(tempfile::tempfile().map_err(spool_error)?);
    while let Some(chunk) = stream.chunks.next().await {
        file.write_all(&chunk?).await.map_err(spool_error)?;
    }
    file.flush().await.map_err(spool_error)?;
    Ok(file.into_std().await)
}

/// Reads a spooled segment from the start with the streaming reader.
fn stream_reader(file: &std::fs::File) -> std::io::Result<std::io::BufReader<std::fs::File>> {
    use std::io::Seek as _;
    let mut file = file.try_clone()?;
    file.rewind()?;
    Ok(std::io::BufReader::with_capacity(1 << 20, file))
}

/// Verifies a spooled segment in one streaming pass (every batch, then footer and CRC-64).
async fn verify_spooled(file: &std::fs::File) -> Result<Result<(), kbs_format::FormatError>, CliError> {
    let reader = stream_reader(file).map_err(|e| CliError::Spool {
        key: "spooled segment".into(),
        source: e,
    })?;
    tokio::task::spawn_blocking(move || {
        let mut segment = kbs_format::SegmentStreamReader::new(reader)?;
        while segment.next_batch()?.is_some() {}
        Ok(())
    })
    .await
    .map_err(|e| CliError::Locked(format!("verification task failed: {e}")))
}

/// Records of a verified spooled segment, read one batch at a time.
fn records_from_file(
    file: std::fs::File,
) -> tokio::sync::mpsc::Receiver<Result<kbs_format::Record, kbs_format::FormatError>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    tokio::task::spawn_blocking(move || {
        let mut segment = match stream_reader(&file)
            .map_err(kbs_format::FormatError::Io)
            .and_then(kbs_format::SegmentStreamReader::new)
        {
            Ok(segment) => segment,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        loop {
            match segment.next_batch() {
                Ok(Some(batch)) => {
                    for record in batch.into_records() {
                        if tx.blocking_send(Ok(record)).is_err() {
                            return;
                        }
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    rx
}

/// A batch on the wire: its source offsets, bytes, and the broker's answer to come.
struct InFlight {
    sources: Vec<i64>,
    bytes: u64,
    ack: std::pin::Pin<Box<dyn std::future::Future<Output = kbs_kafka::Result<kbs_kafka::ProduceAck>> + Send>>,
}

async fn restore_partition(
    shared: &Shared,
    client: &KafkaClient,
    producer: &IdempotentProducer,
    plan: &PartitionPlan,
    max_message_bytes: usize,
) -> Result<(), CliError> {
    let options = &shared.options;
    let key = partition_key(&plan.topic, plan.partition);
    let topic = TopicName::new(&plan.topic)?;
    // Where this partition stands (recorded before any task started), and what the target
    // holds beyond it.
    let (next_source, next_target) = {
        let guard = shared.progress.lock().await;
        let p = guard.0.partitions.get(&key).expect("prepared before the tasks");
        if p.done {
            return Ok(());
        }
        (p.last_source_offset.map_or(i64::MIN, |o| o + 1), p.next_target_offset)
    };
    let (target_end, _) = target_bounds(client, &plan.target_topic, plan.target_partition).await?;
    // Records an interrupted run wrote after its last checkpoint: matched against the source
    // below, then skipped.
    let mut unacknowledged: VecDeque<kbs_kafka::Record> = VecDeque::new();
    if target_end > next_target {
        unacknowledged = read_target(
            client,
            &plan.target_topic,
            plan.target_partition,
            next_target,
            target_end,
        )
        .await?;
    }

    let start = plan.start_offset.unwrap_or(i64::MIN).max(next_source);
    let end = plan.end_offset.unwrap_or(i64::MAX);
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let batch_limit = max_message_bytes.clamp(1024, 1 << 20);
    for file in &plan.files {
        if file.last_offset < start {
            continue;
        }
        let segment_key = layout::segment_key(&options.backup_id, &topic, plan.partition, file.name)?;
        // Every checksum and invariant is verified before any record of the segment is
        // produced. A segment that fits this partition's share of the memory budget is held in
        // memory; a larger one is spooled to a temporary file, verified in one streaming pass
        // and produced in a second, one batch at a time.
        let share = options.memory_budget / options.parallelism.max(1) as u64;
        let (records, _memory) = if file.size_bytes <= share {
            let permits = (file.size_bytes >> 10).clamp(1, shared.memory_permits) as u32;
            let memory = shared
                .memory
                .clone()
                .acquire_many_owned(permits)
                .await
                .map_err(|_| CliError::Locked("memory pool closed".into()))?;
            let bytes = shared.storage.get(&segment_key).await?.bytes;
            let checked = bytes.clone();
            let verified =
                tokio::task::spawn_blocking(move || kbs_format::verify_segment(&checked, ReadLimits::default()))
                    .await
                    .map_err(|e| CliError::Locked(format!("verification task failed: {e}")))?;
            match verified {
                Ok(_) => (records_from_memory(bytes), Some(memory)),
                Err(source) => {
                    skip_or_fail(shared, &segment_key, source).await?;
                    continue;
                }
            }
        } else {
            let spooled = spool(&shared.storage, &segment_key).await?;
            match verify_spooled(&spooled).await? {
                Ok(()) => (records_from_file(spooled), None),
                Err(source) => {
                    skip_or_fail(shared, &segment_key, source).await?;
                    continue;
                }
            }
        };
        let mut records = records;
        let mut batch: Vec<ProduceRecord> = Vec::new();
        let mut batch_sources: Vec<i64> = Vec::new();
        let mut batch_size = 0usize;
        while let Some(record) = records.recv().await {
            let record = record.map_err(|source| CliError::Segment {
                key: segment_key.clone(),
                source,
            })?;
            if record.offset < start || record.offset > end {
                continue;
            }
            if options.start_time.is_some_and(|t| record.timestamp < t)
                || options.end_time.is_some_and(|t| record.timestamp > t)
            {
                continue;
            }
            let produced = produce_record(&record, plan.partition, options.include_offset_headers);
            if let Some(written) = unacknowledged.pop_front() {
                // Written by the interrupted run: it must be exactly this record.
                let same = written.key == produced.key
                    && written.value == produced.value
                    && written.timestamp == produced.timestamp
                    && written.headers == produced.headers;
                if !same {
                    return Err(CliError::Locked(format!(
                        "target {}/{} offset {} does not hold source record {key}@{} that restore {} wrote there; \
                         something else writes to the target partition",
                        plan.target_topic, plan.target_partition, written.offset, record.offset, options.restore_id
                    )));
                }
                let mut guard = shared.progress.lock().await;
                let p = guard.0.partitions.get_mut(&key).expect("inserted");
                p.map(record.offset, written.offset);
                p.last_source_offset = Some(record.offset);
                p.next_target_offset = written.offset + 1;
                p.records += 1;
                p.bytes += record_bytes(&produced);
                continue;
            }
            let size = wire_size(&produced);
            if size + 70 > max_message_bytes {
                return Err(CliError::InvalidArgument {
                    flag: "topic-map",
                    message: format!(
                        "record {key}@{} is {size} bytes, over {}/{}'s max.message.bytes of {max_message_bytes}; raise it \
                         on the target topic",
                        record.offset, plan.target_topic, plan.target_partition
                    ),
                });
            }
            let split = batch_sources
                .last()
                .is_some_and(|&previous| plan.split_points.range(previous + 1..=record.offset).next().is_some());
            if !batch.is_empty() && (batch_size + size > batch_limit || split) {
                send(
                    shared,
                    producer,
                    plan,
                    &mut in_flight,
                    std::mem::take(&mut batch),
                    std::mem::take(&mut batch_sources),
                    &key,
                )
                .await?;
                batch_size = 0;
            }
            batch_size += size;
            batch_sources.push(record.offset);
            batch.push(produced);
        }
        if !batch.is_empty() {
            send(shared, producer, plan, &mut in_flight, batch, batch_sources, &key).await?;
        }
    }
    while let Some(flight) = in_flight.pop_front() {
        acknowledge(shared, flight, &key).await?;
    }
    if !unacknowledged.is_empty() {
        return Err(CliError::Locked(format!(
            "target {}/{} holds {} records after what restore {} wrote that match no remaining source record",
            plan.target_topic,
            plan.target_partition,
            unacknowledged.len(),
            options.restore_id
        )));
    }
    shared
        .progress
        .lock()
        .await
        .0
        .partitions
        .get_mut(&key)
        .expect("inserted")
        .done = true;
    Ok(())
}

async fn send(
    shared: &Shared,
    producer: &IdempotentProducer,
    plan: &PartitionPlan,
    in_flight: &mut VecDeque<InFlight>,
    batch: Vec<ProduceRecord>,
    sources: Vec<i64>,
    key: &str,
) -> Result<(), CliError> {
    let bytes: u64 = batch.iter().map(record_bytes).sum();
    shared.throttle(bytes).await;
    while in_flight.len() >= 5 {
        let oldest = in_flight.pop_front().expect("non-empty");
        acknowledge(shared, oldest, key).await?;
    }
    let ack = producer.produce(&plan.target_topic, plan.target_partition, &batch);
    in_flight.push_back(InFlight {
        sources,
        bytes,
        ack: Box::pin(ack),
    });
    Ok(())
}

async fn acknowledge(shared: &Shared, flight: InFlight, key: &str) -> Result<(), CliError> {
    let ack = flight.ack.await?;
    let mut guard = shared.progress.lock().await;
    let p = guard.0.partitions.get_mut(key).expect("inserted");
    // Offsets of one partition written by one idempotent producer are contiguous; a resend
    // answered DUPLICATE_SEQUENCE_NUMBER without its offset continues from the last one.
    let base = ack.base_offset.unwrap_or(p.next_target_offset);
    for (i, source) in flight.sources.iter().enumerate() {
        p.map(*source, base + i as i64);
    }
    p.last_source_offset = flight.sources.last().copied().or(p.last_source_offset);
    p.next_target_offset = base + flight.sources.len() as i64;
    p.records += flight.sources.len() as u64;
    p.bytes += flight.bytes;
    drop(guard);
    let mut produced = shared.produced.lock().await;
    produced.0 += flight.sources.len() as u64;
    produced.1 += flight.bytes;
    Ok(())
}

/// The end (high watermark) and start of a target partition, from a Fetch response (some
/// brokers answer ListOffsets(latest) wrongly).
///
/// Asked with ListOffsets (earliest and latest), whose partition errors fail the call with their
/// name after the client's retries (authorization, a leader missing): a target that cannot be
/// read is never taken for an empty one.
async fn target_bounds(client: &KafkaClient, topic: &str, partition: i32) -> Result<(i64, i64), CliError> {
    let offsets = client
        .list_offsets(&[
            (topic, partition, OffsetSpec::Earliest),
            (topic, partition, OffsetSpec::Latest),
        ])
        .await?;
    let missing = || CliError::MissingAnswer {
        api: "ListOffsets",
        topic: topic.to_owned(),
        partition,
    };
    let start = offsets.first().and_then(|o| o.offset).ok_or_else(missing)?;
    let end = offsets.get(1).and_then(|o| o.offset).ok_or_else(missing)?;
    Ok((end.max(start), start))
}

/// Reads target records `from..to`.
async fn read_target(
    client: &KafkaClient,
    topic: &str,
    partition: i32,
    from: i64,
    to: i64,
) -> Result<VecDeque<kbs_kafka::Record>, CliError> {
    let mut out = VecDeque::new();
    let mut position = from;
    while position < to {
        let request = FetchRequest::new(vec![FetchPosition::new(topic, partition, position)])
            .with_max_wait(Duration::from_millis(10));
        let pf = client
            .fetch(&request)
            .await?
            .into_iter()
            .next()
            .expect("one partition asked");
        if let Some(error) = pf.error {
            return Err(CliError::Fetch {
                topic: topic.to_string(),
                partition,
                error,
            });
        }
        let before = position;
        for r in pf.records {
            if r.offset >= position && r.offset < to {
                position = r.offset + 1;
                out.push_back(r);
            }
        }
        if position == before && pf.next_offset <= position {
            // Nothing more can be read below `to` (e.g. only transaction markers remain).
            break;
        }
        position = position.max(pf.next_offset);
    }
    Ok(out)
}

/// Renders a plan or report as text.
pub fn report_text(r: &RestoreReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {} of backup {}",
        if r.dry_run { "restore plan" } else { "restore" },
        r.restore_id,
        r.backup_id
    );
    for t in &r.targets {
        let _ = writeln!(
            out,
            "target topic {}: needs {} partitions, {}",
            t.name,
            t.partitions_needed,
            match t.existing_partitions {
                Some(n) => format!("exists with {n} partitions"),
                None => "does not exist".to_string(),
            }
        );
    }
    for p in &r.partitions {
        let _ = writeln!(
            out,
            "  {}/{} -> {}/{}: {} segments, up to {} records, {} bytes{}",
            p.topic,
            p.partition,
            p.target_topic,
            p.target_partition,
            p.segments.len(),
            p.estimated_records,
            p.estimated_bytes,
            match (p.start_offset, p.end_offset) {
                (None, None) => String::new(),
                (s, e) => format!(
                    " (offsets {}..{})",
                    s.map_or("start".into(), |v| v.to_string()),
                    e.map_or("end".into(), |v| v.to_string())
                ),
            }
        );
        if let Some((records, bytes)) = r.restored.get(&partition_key(&p.topic, p.partition)) {
            let _ = writeln!(out, "      restored {records} records, {bytes} bytes");
        }
    }
    for s in &r.skipped_segments {
        let _ = writeln!(out, "SKIPPED corrupt segment {s}");
    }
    for g in &r.groups {
        let _ = writeln!(
            out,
            "group {}: {}@{} -> {}@{} {}",
            g.group,
            g.source,
            g.source_offset,
            g.target,
            g.target_offset.map_or("?".to_string(), |o| o.to_string()),
            g.status
        );
    }
    if !r.dry_run {
        let secs = r.duration_secs.max(1e-9);
        let _ = writeln!(
            out,
            "restored {} records, {} bytes in {secs:.1} s ({:.0} records/s, {:.1} MiB/s)",
            r.records,
            r.bytes,
            r.records as f64 / secs,
            r.bytes as f64 / secs / (1 << 20) as f64
        );
    }
    out
}
