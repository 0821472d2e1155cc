//! `kbs backup`: copies Kafka topics into a backup, crash-safe and resumable.
//!
//! The commit protocol (create-only segments, checkpoint after durability, manifest last,
//! lease fencing, adoption of orphaned segments) is described in `docs/DESIGN.md`.

mod adopt;
mod fetch;
mod plan;
mod select;
mod single_writer;
mod state;
mod upload;

use adopt::*;
use fetch::*;
pub(crate) use upload::segment_file;
use upload::*;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kbs_format::{Compression, Header, ReadLimits, Record, SegmentSummary, SegmentWriter, WriterOptions};
use kbs_kafka::{ErrorCode, FetchPosition, FetchRequest, KafkaClient, OffsetSpec, PartitionError, PartitionFetch};
use kbs_manifest::{
    BackupId, CommittedOffset, CompressionAlgorithm, ConsumerGroups, Crc64, Gap, SegmentFile, SegmentName,
    SourceCluster, TopicName, layout,
};
use kbs_storage::{ObjectStorage, ObjectStorageExt};
use serde::Serialize;
use tokio::sync::{Mutex, Semaphore, oneshot, watch};
use tokio::task::JoinHandle;

pub use select::{TopicFilter, glob_match};
pub(crate) use state::now_utc;

use crate::error::CliError;
use crate::lease::Lease;
use crate::metrics::BackupMetrics;
pub(crate) use plan::capture_consumer_groups;
pub(crate) use state::BackupState;

/// What `kbs backup` is asked to do.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// The backup id (its folder under the storage root).
    pub backup_id: BackupId,
    /// How to reach the cluster.
    pub kafka: kbs_kafka::ClientConfig,
    /// Which topics.
    pub topics: TopicFilter,
    /// Segment codec.
    pub compression: Compression,
    /// zstd level (1–22).
    pub compression_level: i32,
    /// Roll a segment when it reaches this many bytes.
    pub segment_max_bytes: u64,
    /// Roll a segment when it holds this many records.
    pub segment_max_records: u64,
    /// Roll a segment when it has been open this long (continuous mode).
    pub segment_max_interval: Duration,
    /// Keep following new data and new topics until shutdown.
    pub continuous: bool,
    /// Snapshot committed consumer-group offsets of the selected topics.
    pub consumer_groups: bool,
    /// Follow every record with its own CRC-32.
    pub per_record_crc: bool,
    /// Bytes of fetched, encoded and not-yet-uploaded data held at once.
    pub memory_budget: u64,
    /// Run on a store without conditional writes (no fencing).
    pub unsafe_single_writer: bool,
    /// Longest a fetch may wait for data while catching up.
    pub fetch_max_wait: Duration,
    /// How often continuous mode looks for new topics and partitions.
    pub topic_refresh_interval: Duration,
    /// How often continuous mode captures consumer-group offsets again.
    pub consumer_groups_interval: Duration,
    /// How long a snapshot waits for partitions without a leader (all their replicas down)
    /// before backing up the others and leaving the backup incomplete.
    pub leader_wait: Duration,
    /// Lease time-to-live.
    pub lease_ttl: Duration,
    /// Uploads in flight at once.
    pub max_uploads: usize,
    /// Serve Prometheus metrics at this address while the backup runs.
    pub metrics_addr: Option<String>,
    /// Most bytes one fetch returns per partition.
    pub fetch_max_partition_bytes: i32,
    /// Most key and value bytes read per second (`None`: as fast as it goes). Each worker of a
    /// shared backup limits itself.
    pub max_bytes_per_sec: Option<u64>,
    /// Encrypt every segment to these age recipients (`None`: plain segments).
    pub encrypt_to: Option<kbs_format::Recipients>,
}

impl BackupOptions {
    /// The size at which a segment is rolled: `segment_max_bytes`, but at most an eighth of
    /// the memory budget, since a segment is built in memory (its buffer grows ahead of its
    /// content) before it is uploaded.
    pub fn effective_segment_max_bytes(&self) -> u64 {
        self.segment_max_bytes.min((self.memory_budget / 8).max(1 << 20))
    }

    /// The part of the memory budget data may take: the budget bounds the whole process, so
    /// an eighth of it, at most 32 MiB, is kept for kbs itself (code, runtime, TLS, tables).
    pub fn data_budget(&self) -> u64 {
        self.memory_budget - (self.memory_budget / 8).min(32 << 20)
    }

    /// Options with the documented defaults.
    pub fn new(backup_id: BackupId, kafka: kbs_kafka::ClientConfig) -> Self {
        BackupOptions {
            backup_id,
            kafka,
            topics: TopicFilter::default(),
            compression: Compression::Zstd,
            compression_level: 3,
            segment_max_bytes: 128 << 20,
            segment_max_records: u64::MAX,
            segment_max_interval: Duration::from_secs(300),
            continuous: false,
            consumer_groups: false,
            per_record_crc: false,
            memory_budget: 256 << 20,
            unsafe_single_writer: false,
            encrypt_to: None,
            fetch_max_wait: Duration::from_millis(10),
            topic_refresh_interval: Duration::from_secs(30),
            consumer_groups_interval: Duration::from_secs(60),
            leader_wait: Duration::from_secs(60),
            lease_ttl: crate::lease::DEFAULT_TTL,
            max_uploads: 4,
            metrics_addr: None,
            fetch_max_partition_bytes: 2 << 20,
            max_bytes_per_sec: None,
        }
    }
}

/// A gap recorded by this run.
#[derive(Debug, Clone, Serialize)]
pub struct GapReport {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// First missing offset.
    pub from_offset: i64,
    /// Last missing offset.
    pub to_offset: i64,
}

/// What a backup run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackupReport {
    /// The backup.
    pub backup_id: String,
    /// Whether the run continued an existing backup.
    pub resumed: bool,
    /// Topics selected.
    pub topics: u64,
    /// Partitions selected (including empty ones).
    pub partitions: u64,
    /// Records stored by this run.
    pub records: u64,
    /// Record bytes read (uncompressed segment payload).
    pub bytes_in: u64,
    /// Segment bytes written.
    pub bytes_out: u64,
    /// Segments written by this run.
    pub segments: u64,
    /// Segments found from an interrupted earlier run and adopted.
    pub adopted_segments: u64,
    /// Gaps (offsets deleted by retention before they were read).
    pub gaps: Vec<GapReport>,
    /// Wall time in seconds.
    pub duration_secs: f64,
    /// Records in the whole backup after this run.
    pub total_records: u64,
}

/// A progress snapshot, reported about once a second.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Records stored so far by this run.
    pub records: u64,
    /// Record bytes read so far.
    pub bytes_in: u64,
    /// Segment bytes written so far.
    pub bytes_out: u64,
    /// Snapshot mode: offsets still to read over all partitions (an upper bound on records).
    pub remaining_offsets: Option<u64>,
    /// Partitions finished (snapshot mode).
    pub partitions_done: u64,
    /// Partitions selected.
    pub partitions_total: u64,
    /// Time since the run started.
    pub elapsed: Duration,
}

/// Receives progress; the CLI renders it (bar on a TTY, log lines otherwise).
pub trait ProgressSink: Send + Sync {
    /// Called about once a second and once at the end.
    fn report(&self, progress: &Progress);

    /// A one-off message for the operator at a step of the job (e.g. which restore id runs and
    /// how to resume it). Ignored by default.
    fn note(&self, message: &str) {
        let _ = message;
    }
}

/// A sink that ignores progress.
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn report(&self, _: &Progress) {}
}

pub(crate) fn manifest_compression(options: &BackupOptions) -> kbs_manifest::Compression {
    let algorithm = match options.compression {
        Compression::Lz4 => CompressionAlgorithm::Lz4,
        Compression::None => CompressionAlgorithm::None,
        _ => CompressionAlgorithm::Zstd,
    };
    let level = if options.compression == Compression::Zstd {
        options.compression_level
    } else {
        0
    };
    kbs_manifest::Compression { algorithm, level }
}

/// Runs a backup until it is complete (snapshot) or `shutdown` turns true (continuous).
pub async fn run(
    storage: Arc<dyn ObjectStorage>,
    options: BackupOptions,
    progress: Arc<dyn ProgressSink>,
    shutdown: watch::Receiver<bool>,
) -> Result<BackupReport, CliError> {
    run_with_metrics(storage, options, Arc::new(BackupMetrics::default()), progress, shutdown).await
}

/// [`run`], counting into `metrics` (served at `--metrics-addr`); pass the same metrics as the
/// storage's retry observer to count its retries too.
pub async fn run_with_metrics(
    storage: Arc<dyn ObjectStorage>,
    options: BackupOptions,
    metrics: Arc<BackupMetrics>,
    progress: Arc<dyn ProgressSink>,
    shutdown: watch::Receiver<bool>,
) -> Result<BackupReport, CliError> {
    let started = Instant::now();
    let capabilities = storage.capabilities();
    let conditional = capabilities.conditional_create && capabilities.conditional_update;
    if !conditional && !options.unsafe_single_writer {
        return Err(CliError::InvalidArgument {
            flag: "storage",
            message: format!(
                "{} does not honour conditional writes (create-only: {}, compare-and-swap: {}), so kbs cannot keep a \
                 second writer from clobbering this backup or guarantee segments are never overwritten. Use a store \
                 that does, or pass --unsafe-single-writer if you are sure only one kbs writes this backup",
                storage.describe(),
                capabilities.conditional_create,
                capabilities.conditional_update
            ),
        });
    }
    let metrics_server = crate::metrics::serve_if_asked(options.metrics_addr.as_deref(), metrics.clone()).await?;
    let storage: Arc<dyn ObjectStorage> = if conditional {
        storage
    } else {
        tracing::warn!(
            "{}: conditional writes are not honoured; --unsafe-single-writer: emulating them with a read before each \
             write, which cannot stop a second writer",
            storage.describe()
        );
        Arc::new(single_writer::SingleWriter(storage))
    };
    let client = KafkaClient::connect(options.kafka.clone().with_events(metrics.client.clone())).await?;
    let lease = Arc::new(Mutex::new(Some(
        Lease::acquire(storage.clone(), &options.backup_id, options.lease_ttl).await?,
    )));
    let lease_lost = Arc::new(AtomicBool::new(false));
    let renewer = crate::lease::spawn_renewal(
        lease.clone(),
        lease_lost.clone(),
        Arc::new(std::sync::atomic::AtomicI64::new(0)),
    );

    let result = async {
        // Under the lease, so a deletion cannot start meanwhile: a backup being deleted is gone.
        crate::prune::refuse_if_deleted(&storage, &options.backup_id).await?;
        if storage.exists(&crate::workers::cut_key(&options.backup_id)).await? {
            return Err(CliError::Locked(format!(
                "backup {} is written by workers (it has a cut.json): run it with --workers and the group the \
                 others use, so that they share its partitions",
                options.backup_id
            )));
        }
        let metadata = client.metadata(None).await?;
        let source = SourceCluster {
            cluster_id: metadata.cluster_id.clone().unwrap_or_default(),
            bootstrap_servers: options.kafka.bootstrap_servers.clone(),
        };
        let state = BackupState::open(
            storage.clone(),
            &options.backup_id,
            source,
            manifest_compression(&options),
            options.encrypt_to.as_ref(),
        )
        .await?;
        let mut engine = Engine::new(
            storage.clone(),
            client,
            options,
            state,
            progress,
            lease_lost.clone(),
            metrics.clone(),
        );
        engine.started = started;
        engine.add_topics(&metadata).await?;
        if engine.options.consumer_groups {
            engine.snapshot_consumer_groups().await?;
        }
        let result = engine.run(shutdown).await;
        if let Err(e) = &result {
            // Record why the run stopped, unless another writer owns the manifest now (lost
            // lease) or the backup is merely interrupted (in_progress, resumable).
            if !matches!(
                e,
                CliError::Locked(_) | CliError::Interrupted { .. } | CliError::PartitionsWithoutLeader { .. }
            ) && !lease_lost.load(Ordering::SeqCst)
                && let Err(write) = engine.state.write_manifest_failed(&e.to_string()).await
            {
                tracing::warn!("could not record the failure in the manifest: {write}");
            }
        }
        result
    }
    .await;

    renewer.abort();
    if result.is_err() {
        metrics.errors.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(server) = metrics_server {
        server.abort();
    }
    let lost = lease_lost.load(Ordering::SeqCst);
    if let Some(held) = lease.lock().await.take()
        && !lost
        && let Err(e) = held.release().await
    {
        tracing::warn!("could not release the lease: {e}");
    }
    result
}

struct Partition {
    topic: TopicName,
    partition: i32,
    /// Next offset to fetch.
    position: i64,
    /// Snapshot end (exclusive), known after the first fetch.
    end: Option<i64>,
    done: bool,
    next_sequence: u64,
    open: Option<OpenSegment>,
    queue: VecDeque<CommitItem>,
    /// Completion of this partition's latest upload. Uploads of one partition happen strictly
    /// in sequence order, so a segment is durable only if every earlier one is: an interrupted
    /// run leaves a contiguous run of orphans, never one after a missing segment.
    upload_chain: Option<oneshot::Receiver<bool>>,
    /// When `position` last moved (or the last stall warning was logged).
    last_progress: Instant,
    /// The fetch lane this partition is read on (see [`FETCH_LANES`]).
    lane: usize,
}

impl Partition {
    fn open_bytes(&self) -> u64 {
        self.open
            .as_ref()
            .map_or(0, |o| o.writer.allocated_bytes().max(o.writer.estimated_size()))
    }

    fn queued_bytes(&self) -> u64 {
        self.queue
            .iter()
            .map(|i| {
                if let CommitItem::Segment { bytes, .. } = i {
                    *bytes
                } else {
                    0
                }
            })
            .sum()
    }
}

struct Engine {
    storage: Arc<dyn ObjectStorage>,
    client: KafkaClient,
    options: BackupOptions,
    state: BackupState,
    progress: Arc<dyn ProgressSink>,
    lease_lost: Arc<AtomicBool>,
    uploads: Arc<Semaphore>,
    partitions: BTreeMap<(TopicName, i32), Partition>,
    report: BackupReport,
    started: Instant,
    last_checkpoint: Instant,
    last_manifest: Instant,
    checkpoint_dirty: bool,
    manifest_dirty: bool,
    /// The last fetch returned no records (continuous mode then waits longer per fetch).
    idle: bool,
    /// Fetches in flight, oldest first: at most one per lane, started while earlier
    /// responses are decoded and encoded.
    inflight: VecDeque<InflightFetch>,
    /// Per lane: the last response covering the lane's partitions held no records.
    lane_idle: [bool; FETCH_LANES],
    metrics: Arc<BackupMetrics>,
    /// A fetch answered UNKNOWN_TOPIC_OR_PARTITION: check the topics before the next fetch.
    topics_to_check: bool,
    /// Partitions left out because they had no leader (with their replicas): a snapshot that
    /// has any stays incomplete; continuous mode tries them again at each topic refresh.
    leaderless: BTreeMap<(TopicName, i32), Vec<i32>>,
    /// A worker's run: only these partitions, up to their ends in the cut.
    assignment: Option<Assignment>,
}

/// The partitions a worker (`--workers`) backs up in one generation of its group.
pub(crate) struct Assignment {
    /// Each partition with its end in the snapshot cut (exclusive); none in continuous mode.
    pub(crate) partitions: BTreeMap<(TopicName, i32), Option<i64>>,
    /// Set when the worker learnt it was fenced (dropped from the group): stopping then drops
    /// open segments instead of uploading segments another worker now writes.
    pub(crate) fenced: Arc<AtomicBool>,
}

/// Backs up the partitions of `assignment` into `state` (a worker's, see
/// [`BackupState::for_worker`]) until each reached its end in the cut, or `stop` turns true:
/// what was read is then rolled, uploaded and committed (or dropped, if the worker was
/// fenced) and [`CliError::Interrupted`] says how much was left.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_assignment(
    storage: Arc<dyn ObjectStorage>,
    client: KafkaClient,
    options: BackupOptions,
    state: BackupState,
    assignment: Assignment,
    progress: Arc<dyn ProgressSink>,
    metrics: Arc<BackupMetrics>,
    stop: watch::Receiver<bool>,
) -> Result<BackupReport, CliError> {
    let mut engine = Engine::new(
        storage,
        client,
        options,
        state,
        progress,
        Arc::new(AtomicBool::new(false)),
        metrics,
    );
    engine.assignment = Some(assignment);
    let metadata = engine.client.metadata(None).await?;
    engine.add_topics(&metadata).await?;
    engine.run(stop).await
}

impl Engine {
    fn new(
        storage: Arc<dyn ObjectStorage>,
        client: KafkaClient,
        options: BackupOptions,
        state: BackupState,
        progress: Arc<dyn ProgressSink>,
        lease_lost: Arc<AtomicBool>,
        metrics: Arc<BackupMetrics>,
    ) -> Engine {
        let report = BackupReport {
            backup_id: options.backup_id.to_string(),
            resumed: state.resumed,
            ..Default::default()
        };
        Engine {
            storage,
            client,
            uploads: Arc::new(Semaphore::new(options.max_uploads.max(1))),
            options,
            state,
            progress,
            lease_lost,
            partitions: BTreeMap::new(),
            report,
            started: Instant::now(),
            last_checkpoint: Instant::now(),
            last_manifest: Instant::now(),
            checkpoint_dirty: false,
            manifest_dirty: false,
            idle: false,
            inflight: VecDeque::new(),
            lane_idle: [false; FETCH_LANES],
            topics_to_check: false,
            leaderless: BTreeMap::new(),
            metrics,
            assignment: None,
        }
    }

    fn check_lease(&self) -> Result<(), CliError> {
        if self.lease_lost.load(Ordering::SeqCst) {
            return Err(CliError::Locked(format!(
                "lost the lease of backup {}: another writer took over; stopping without committing",
                self.options.backup_id
            )));
        }
        Ok(())
    }

    async fn run(&mut self, mut shutdown: watch::Receiver<bool>) -> Result<BackupReport, CliError> {
        let mut last_progress = Instant::now();
        let mut last_refresh = Instant::now();
        let mut last_groups = Instant::now();
        let mut stopping = false;
        // Snapshot partitions a shutdown stopped before their end: the backup stays incomplete.
        let mut interrupted: Vec<(TopicName, i32, u64)> = Vec::new();
        let rate = self.options.max_bytes_per_sec.map(crate::rate::ByteRateLimit::new);
        loop {
            self.check_lease()?;
            if !stopping && *shutdown.borrow() {
                stopping = true;
                for fetch in self.inflight.drain(..) {
                    fetch.handle.abort();
                }
                let fenced = self
                    .assignment
                    .as_ref()
                    .is_some_and(|a| a.fenced.load(Ordering::SeqCst));
                if fenced {
                    tracing::info!("fenced: dropping open segments, committing what is uploaded");
                } else {
                    tracing::info!("shutdown requested: finishing open segments");
                }
                for (key, part) in self.partitions.iter_mut() {
                    if fenced {
                        part.open = None;
                    }
                    if !self.options.continuous && !part.done {
                        let left = part.end.map_or(0, |end| (end - part.position).max(0) as u64);
                        interrupted.push((key.0.clone(), key.1, left));
                    }
                    part.done = true;
                }
            }
            // Finished partitions: roll what is open.
            let finished: Vec<(TopicName, i32)> = self
                .partitions
                .iter()
                .filter(|(_, p)| p.done && p.open.is_some())
                .map(|(k, _)| k.clone())
                .collect();
            for key in finished {
                self.roll(&key).await?;
            }
            // Time-based rolling.
            let stale: Vec<(TopicName, i32)> = self
                .partitions
                .iter()
                .filter(|(_, p)| {
                    p.open
                        .as_ref()
                        .is_some_and(|o| o.opened.elapsed() >= self.options.segment_max_interval)
                })
                .map(|(k, _)| k.clone())
                .collect();
            for key in stale {
                self.roll(&key).await?;
            }
            self.commit(false).await?;

            if last_progress.elapsed() >= Duration::from_secs(1) {
                self.progress.report(&self.progress_snapshot());
                last_progress = Instant::now();
            }
            let active: Vec<FetchPosition> = self
                .partitions
                .values()
                .filter(|p| !p.done)
                .map(|p| FetchPosition::new(p.topic.as_str(), p.partition, p.position))
                .collect();
            if active.is_empty() {
                if self.options.continuous && !stopping {
                    // Nothing to read until new topics appear.
                    tokio::select! {
                        _ = shutdown.changed() => {}
                        _ = tokio::time::sleep(self.options.topic_refresh_interval.saturating_sub(last_refresh.elapsed())) => {}
                    }
                } else {
                    break;
                }
            } else {
                let fetched = match self.inflight.pop_front() {
                    // A fetch started while earlier responses were being handled.
                    Some(fetch) => tokio::select! {
                        fetched = fetch.handle => Some(fetched.map_err(|e| CliError::Locked(format!("fetch task failed: {e}")))??),
                        _ = shutdown.changed(), if self.options.continuous => None,
                    },
                    None => {
                        let budget = self.make_room().await?;
                        let request = self.fetch_request(active, budget);
                        tokio::select! {
                            fetched = self.client.fetch(&request) => Some(fetched?),
                            _ = shutdown.changed(), if self.options.continuous => None,
                        }
                    }
                };
                if let Some(fetched) = fetched {
                    self.idle = fetched.iter().all(|pf| pf.records.is_empty());
                    self.note_lane_activity(&fetched);
                    let bytes = self.absorb(fetched, !stopping && !*shutdown.borrow()).await?;
                    // Under a byte-rate limit, wait before taking in the next response.
                    let wait = match &rate {
                        Some(rate) if !stopping => rate.reserve(bytes).await,
                        _ => Duration::ZERO,
                    };
                    if !wait.is_zero() {
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            Ok(()) = shutdown.changed() => {}
                        }
                    }
                }
            }
            if self.options.continuous
                && !stopping
                && (self.topics_to_check || last_refresh.elapsed() >= self.options.topic_refresh_interval)
            {
                let metadata = self.client.metadata(None).await?;
                self.check_known_topics(&metadata)?;
                self.add_topics(&metadata).await?;
                last_refresh = Instant::now();
            }
            if self.options.continuous
                && self.options.consumer_groups
                && !self.state.is_worker()
                && !stopping
                && last_groups.elapsed() >= self.options.consumer_groups_interval
            {
                self.snapshot_consumer_groups().await?;
                last_groups = Instant::now();
            }
        }
        if self.options.continuous && self.options.consumer_groups && !self.state.is_worker() {
            // The offsets as they are when the backup stops (workers: their catalogue's).
            self.snapshot_consumer_groups().await?;
        }
        // Everything rolled; wait for every upload and commit.
        self.commit(true).await?;
        self.check_lease()?;
        if self.state.is_worker() {
            self.state.touch_all();
            // A worker's partitions that reached their end are done (committed with them); a
            // continuous backup's never are.
            for ((topic, partition), part) in self.partitions.iter().filter(|_| !self.options.continuous) {
                let stopped = interrupted.iter().any(|(t, p, _)| t == topic && p == partition);
                if part.done && !stopped {
                    self.state.mark_done(topic, *partition, part.position)?;
                }
            }
        }
        self.state.write_checkpoint().await?;
        if !interrupted.is_empty() {
            // What was read is durable and checkpointed; the manifest stays in_progress so that
            // list, validate and restore see an incomplete backup, and a rerun resumes it.
            self.state.write_manifest_in_progress().await?;
            self.progress.report(&self.progress_snapshot());
            return Err(CliError::Interrupted {
                backup_id: self.options.backup_id.to_string(),
                partitions: interrupted.len(),
                total_partitions: self.partitions.len(),
                records_left: interrupted.iter().map(|(_, _, left)| left).sum(),
            });
        }
        if !self.options.continuous && !self.leaderless.is_empty() {
            // Every partition with a leader is backed up and committed; the manifest stays
            // in_progress, and a rerun backs up the others once they have leaders.
            self.state.write_manifest_in_progress().await?;
            self.progress.report(&self.progress_snapshot());
            return Err(CliError::PartitionsWithoutLeader {
                backup_id: self.options.backup_id.to_string(),
                partitions: self.leaderless_names(),
                waited_secs: self.options.leader_wait.as_secs(),
            });
        }
        if self.state.is_worker() {
            // The workers' merge writes the manifest.
            self.report.duration_secs = self.started.elapsed().as_secs_f64();
            return Ok(self.report.clone());
        }
        let manifest = self.state.write_manifest_complete().await?;
        self.report.total_records = manifest.statistics.records;
        self.report.duration_secs = self.started.elapsed().as_secs_f64();
        self.progress.report(&self.progress_snapshot());
        Ok(self.report.clone())
    }

    fn progress_snapshot(&self) -> Progress {
        let remaining = if self.options.continuous {
            None
        } else {
            Some(
                self.partitions
                    .values()
                    .map(|p| p.end.map_or(0, |e| (e - p.position).max(0) as u64))
                    .sum(),
            )
        };
        Progress {
            records: self.report.records,
            bytes_in: self.report.bytes_in,
            bytes_out: self.report.bytes_out,
            remaining_offsets: remaining,
            partitions_done: self.partitions.values().filter(|p| p.done).count() as u64,
            partitions_total: self.partitions.len() as u64,
            elapsed: self.started.elapsed(),
        }
    }
}
