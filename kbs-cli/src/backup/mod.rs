//! `kbs backup`: copies Kafka topics into a backup, crash-safe and resumable.
//!
//! The commit protocol (create-only segments, checkpoint after durability, manifest last,
//! lease fencing, adoption of orphaned segments) is described in `docs/DESIGN.md`.

mod select;
mod single_writer;
mod state;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kbs_format::{Compression, Header, ReadLimits, Record, SegmentSummary, SegmentWriter, WriterOptions};
use kbs_kafka::{FetchPosition, FetchRequest, KafkaClient, OffsetSpec, PartitionError, PartitionFetch};
use kbs_manifest::{
    BackupId, CommittedOffset, CompressionAlgorithm, ConsumerGroups, Crc64, Gap, SegmentFile, SegmentName,
    SourceCluster, TopicName, layout,
};
use kbs_storage::ObjectStorage;
use serde::Serialize;
use tokio::sync::{Mutex, Semaphore, oneshot, watch};
use tokio::task::JoinHandle;

pub use select::{TopicFilter, glob_match};

use crate::error::CliError;
use crate::lease::Lease;
use crate::metrics::BackupMetrics;
use state::BackupState;

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
    /// Lease time-to-live.
    pub lease_ttl: Duration,
    /// Uploads in flight at once.
    pub max_uploads: usize,
    /// Serve Prometheus metrics at this address while the backup runs.
    pub metrics_addr: Option<String>,
    /// Most bytes one fetch returns per partition.
    pub fetch_max_partition_bytes: i32,
}

impl BackupOptions {
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
            fetch_max_wait: Duration::from_millis(10),
            topic_refresh_interval: Duration::from_secs(30),
            lease_ttl: crate::lease::DEFAULT_TTL,
            max_uploads: 4,
            metrics_addr: None,
            fetch_max_partition_bytes: 1 << 20,
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

fn manifest_compression(options: &BackupOptions) -> kbs_manifest::Compression {
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
    let metrics = Arc::new(BackupMetrics::default());
    let metrics_server = match &options.metrics_addr {
        Some(addr) => {
            Some(
                crate::metrics::serve(addr, metrics.clone())
                    .await
                    .map_err(|e| CliError::InvalidArgument {
                        flag: "metrics-addr",
                        message: format!("cannot listen on {addr}: {e}"),
                    })?,
            )
        }
        None => None,
    };
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
    let client = KafkaClient::connect(options.kafka.clone()).await?;
    let lease = Arc::new(Mutex::new(Some(
        Lease::acquire(storage.clone(), &options.backup_id, options.lease_ttl).await?,
    )));
    let lease_lost = Arc::new(AtomicBool::new(false));
    let renewer = spawn_lease_renewal(lease.clone(), lease_lost.clone());

    let result = async {
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
        engine.run(shutdown).await
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

fn spawn_lease_renewal(lease: Arc<Mutex<Option<Lease>>>, lost: Arc<AtomicBool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let interval = match lease.lock().await.as_ref() {
                Some(l) => l.renew_interval(),
                None => return,
            };
            tokio::time::sleep(interval).await;
            let mut guard = lease.lock().await;
            let Some(held) = guard.as_mut() else { return };
            if let Err(e) = held.renew().await {
                tracing::error!("lease renewal failed: {e}");
                if matches!(e, CliError::Locked(_)) {
                    lost.store(true, Ordering::SeqCst);
                    return;
                }
            }
        }
    })
}

/// A segment being filled.
struct OpenSegment {
    writer: SegmentWriter<Cursor<Vec<u8>>>,
    opened: Instant,
    last_timestamp: i64,
}

/// A durable (or being-made-durable) segment or a gap, in partition order.
enum CommitItem {
    Segment {
        handle: JoinHandle<Result<Uploaded, CliError>>,
        bytes: u64,
    },
    Gap(Gap),
}

/// A segment that is durable in storage.
struct Uploaded {
    file: SegmentFile,
    last_timestamp: i64,
    adopted: bool,
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

/// Fetches kept in flight at once while catching up, each for its own share of the partitions
/// ("lane").
///
/// A broker answers one connection's requests in order; with a single fetch in flight it sits
/// idle while the client decodes and checks each response. With two lanes the next request is
/// already queued, so the broker prepares one lane's response while the other is decoded.
///
/// The same ordering makes lanes harmful once a lane has nothing to read: its fetch waits up
/// to the max-wait for data, and the other lane's fetch waits behind it. So in continuous mode
/// a lane whose last response was empty switches the engine to one fetch for all partitions
/// until every lane returns records again.
const FETCH_LANES: usize = 2;

/// Which fetches to start: `Some(lane)` for each lane with no fetch in flight, or `None` for
/// one fetch of every partition not in flight when continuous mode has an idle lane (and
/// nothing is in flight: one fetch at a time then).
fn lanes_to_fetch(continuous: bool, lane_idle: &[bool; FETCH_LANES], inflight: &[Option<usize>]) -> Vec<Option<usize>> {
    if continuous && lane_idle.iter().any(|&idle| idle) {
        return if inflight.is_empty() { vec![None] } else { Vec::new() };
    }
    (0..FETCH_LANES)
        .map(Some)
        .filter(|lane| !inflight.contains(lane))
        .collect()
}

/// A fetch in flight.
struct InflightFetch {
    /// The lane it reads, or `None` for a fetch of every lane.
    lane: Option<usize>,
    /// The partitions it covers.
    keys: Vec<(TopicName, i32)>,
    /// Most bytes the response may hold (counted against the memory budget).
    bytes: u64,
    handle: JoinHandle<kbs_kafka::Result<Vec<PartitionFetch>>>,
}

impl Partition {
    fn open_bytes(&self) -> u64 {
        self.open.as_ref().map_or(0, |o| o.writer.estimated_size())
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
}

fn to_format_record(r: kbs_kafka::Record) -> Record {
    Record {
        offset: r.offset,
        timestamp: r.timestamp,
        key: r.key,
        value: r.value,
        headers: r
            .headers
            .into_iter()
            .map(|h| Header {
                key: h.key,
                value: h.value,
            })
            .collect(),
    }
}

fn segment_file(name: SegmentName, s: &SegmentSummary) -> SegmentFile {
    SegmentFile {
        name,
        first_offset: s.first_offset,
        last_offset: s.last_offset,
        records: s.record_count,
        min_timestamp: s.min_timestamp,
        max_timestamp: s.max_timestamp,
        size_bytes: s.size_bytes,
        uncompressed_bytes: s.uncompressed_bytes,
        crc64: Crc64(s.crc64),
    }
}

/// Reads back and verifies a segment found at `key`; returns its summary and last timestamp.
async fn verify_existing(storage: &Arc<dyn ObjectStorage>, key: &str) -> Result<(SegmentSummary, i64), CliError> {
    let bytes = storage.get(key).await?.bytes;
    let key_owned = key.to_string();
    tokio::task::spawn_blocking(move || {
        let summary =
            kbs_format::verify_segment(&bytes, ReadLimits::default()).map_err(|source| CliError::Segment {
                key: key_owned.clone(),
                source,
            })?;
        let reader = kbs_format::SegmentReader::new(bytes).map_err(|source| CliError::Segment {
            key: key_owned.clone(),
            source,
        })?;
        let mut last_timestamp = summary.max_timestamp;
        for record in reader.records() {
            last_timestamp = record
                .map_err(|source| CliError::Segment {
                    key: key_owned.clone(),
                    source,
                })?
                .timestamp;
        }
        Ok((summary, last_timestamp))
    })
    .await
    .map_err(|e| CliError::Locked(format!("verification task failed: {e}")))?
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
            metrics,
        }
    }

    /// Adds the selected topics (and new partitions of known ones) from `metadata`: records
    /// their partition count and configs, finds where each partition resumes, and adopts
    /// segments an interrupted run left behind.
    async fn add_topics(&mut self, metadata: &kbs_kafka::ClusterMetadata) -> Result<(), CliError> {
        let selected: Vec<&kbs_kafka::TopicMetadata> = metadata
            .topics
            .iter()
            .filter(|t| self.options.topics.selects(&t.name, t.is_internal))
            .collect();
        let new: Vec<&kbs_kafka::TopicMetadata> = selected
            .into_iter()
            .filter(|t| {
                t.partitions.iter().any(|p| {
                    !self
                        .partitions
                        .keys()
                        .any(|(name, n)| name.as_str() == t.name && *n == p.partition)
                })
            })
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = new.iter().map(|t| t.name.as_str()).collect();
        let configs = self.client.describe_topic_configs(&names).await?;
        let mut starts = Vec::new();
        let mut manifest = None;
        for topic in new {
            let name = TopicName::new(&topic.name)?;
            let count = topic.partitions.len() as u32;
            self.state.add_topic(
                name.clone(),
                count,
                configs.get(&topic.name).cloned().unwrap_or_default(),
            )?;
            for p in &topic.partitions {
                if self.partitions.contains_key(&(name.clone(), p.partition)) {
                    continue;
                }
                let manifest = manifest.get_or_insert_with(|| self.state.builder.build_in_progress());
                let (resume, next_sequence) = BackupState::resume_point(manifest, &name, p.partition);
                starts.push((name.clone(), p.partition, resume, next_sequence));
            }
        }
        // Where partitions without a resume point start: the log start.
        let queries: Vec<(&str, i32, OffsetSpec)> = starts
            .iter()
            .filter(|(_, _, resume, _)| resume.is_none())
            .map(|(t, p, _, _)| (t.as_str(), *p, OffsetSpec::Earliest))
            .collect();
        let earliest = if queries.is_empty() {
            Vec::new()
        } else {
            self.client.list_offsets(&queries).await?
        };
        // A snapshot ends where a read_committed consumer's log ends now: the last stable
        // offset (the high watermark when no transaction is open). Records written after this
        // moment, and an open transaction's records, are left for the next backup.
        let snapshot_ends = if self.options.continuous || starts.is_empty() {
            Vec::new()
        } else {
            let queries: Vec<(&str, i32, OffsetSpec)> = starts
                .iter()
                .map(|(t, p, _, _)| (t.as_str(), *p, OffsetSpec::LastStable))
                .collect();
            self.client.list_offsets(&queries).await?
        };
        for (topic, partition, resume, next_sequence) in starts {
            let end = snapshot_ends
                .iter()
                .find(|o| o.topic == topic.as_str() && o.partition == partition)
                .and_then(|o| o.offset);
            let position = match resume {
                Some(offset) => offset,
                None => earliest
                    .iter()
                    .find(|o| o.topic == topic.as_str() && o.partition == partition)
                    .and_then(|o| o.offset)
                    .unwrap_or(0),
            };
            let mut part = Partition {
                topic: topic.clone(),
                partition,
                position,
                end,
                done: end.is_some_and(|end| position >= end),
                next_sequence,
                open: None,
                queue: VecDeque::new(),
                upload_chain: None,
                last_progress: Instant::now(),
                lane: self.partitions.len() % FETCH_LANES,
            };
            self.adopt_orphans(&mut part).await?;
            let covered = if part.next_sequence > 0 || resume.is_some() {
                Some(part.position)
            } else {
                None
            };
            self.state.check_checkpoint(&topic, partition, covered)?;
            self.partitions.insert((topic, partition), part);
        }
        self.report.topics = self
            .partitions
            .keys()
            .map(|(t, _)| t)
            .collect::<std::collections::BTreeSet<_>>()
            .len() as u64;
        self.report.partitions = self.partitions.len() as u64;
        self.state.write_manifest_in_progress().await?;
        self.state.write_checkpoint().await?;
        Ok(())
    }

    /// Adopts segments with the next sequence numbers that an interrupted run made durable
    /// before recording them.
    async fn adopt_orphans(&mut self, part: &mut Partition) -> Result<(), CliError> {
        loop {
            let key = layout::segment_key(
                &self.options.backup_id,
                &part.topic,
                part.partition,
                SegmentName::new(part.next_sequence),
            )?;
            match self.storage.head(&key).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            let (summary, last_timestamp) = verify_existing(&self.storage, &key).await?;
            if summary.first_offset < part.position {
                return Err(CliError::Locked(format!(
                    "{key} holds offsets {}..{} but the backup already covers up to {}; it was not written by this \
                     backup's sequence of runs. Move it away to continue",
                    summary.first_offset,
                    summary.last_offset,
                    part.position - 1
                )));
            }
            if summary.first_offset > part.position {
                self.check_hole(part, summary.first_offset, &key).await?;
            }
            tracing::info!(%key, first = summary.first_offset, last = summary.last_offset, "adopting a segment left by an interrupted run");
            let file = segment_file(SegmentName::new(part.next_sequence), &summary);
            self.state
                .add_segment(&part.topic, part.partition, file, last_timestamp)?;
            self.report.adopted_segments += 1;
            part.position = summary.last_offset + 1;
            part.next_sequence += 1;
            self.checkpoint_dirty = true;
            self.manifest_dirty = true;
        }
    }

    /// Before adopting a segment that starts after `part.position`, makes sure Kafka holds no
    /// readable record in between (compaction and transaction markers leave such holes);
    /// otherwise adopting would skip records.
    async fn check_hole(&mut self, part: &Partition, first_offset: i64, key: &str) -> Result<(), CliError> {
        let mut request = FetchRequest::new(vec![FetchPosition::new(
            part.topic.as_str(),
            part.partition,
            part.position,
        )])
        .with_max_wait(self.options.fetch_max_wait);
        request.max_bytes = 1 << 20;
        request.partition_max_bytes = 1 << 20;
        let fetched = self.client.fetch(&request).await?;
        let Some(pf) = fetched.into_iter().next() else {
            return Err(CliError::MissingAnswer {
                api: "Fetch",
                topic: part.topic.to_string(),
                partition: part.partition,
            });
        };
        match &pf.error {
            None | Some(PartitionError::OffsetOutOfRange { .. }) => {}
            // Any other error says nothing about the hole: it is never read as "no records".
            Some(error) => {
                return Err(CliError::Fetch {
                    topic: part.topic.to_string(),
                    partition: part.partition,
                    error: error.clone(),
                });
            }
        }
        if let Some(PartitionError::OffsetOutOfRange { log_start_offset, .. }) = pf.error {
            // Retention removed the start of the hole: what it removed is a gap.
            let to = log_start_offset.min(first_offset) - 1;
            if to >= part.position {
                self.state.add_gap(
                    &part.topic,
                    part.partition,
                    Gap {
                        from_offset: part.position,
                        to_offset: to,
                        reason: Gap::RETENTION.into(),
                    },
                )?;
                self.manifest_dirty = true;
            }
            return Ok(());
        }
        if let Some(r) = pf
            .records
            .iter()
            .find(|r| r.offset >= part.position && r.offset < first_offset)
        {
            return Err(CliError::Locked(format!(
                "{key} starts at offset {first_offset}, but Kafka still holds offset {} after the backup's last \
                 segment: adopting it would skip records. Move it away to continue",
                r.offset
            )));
        }
        Ok(())
    }

    async fn snapshot_consumer_groups(&mut self) -> Result<(), CliError> {
        let topics: Vec<String> = self
            .partitions
            .keys()
            .map(|(t, _)| t.to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        let mut groups: ConsumerGroups = BTreeMap::new();
        for listing in self.client.list_groups().await? {
            let offsets = self
                .client
                .fetch_committed_offsets(&listing.group_id, Some(&topic_refs))
                .await?;
            for o in offsets {
                if o.offset < 0 {
                    continue;
                }
                let topic = TopicName::new(&o.topic)?;
                groups
                    .entry(listing.group_id.clone())
                    .or_default()
                    .entry(topic)
                    .or_default()
                    .insert(
                        o.partition,
                        CommittedOffset {
                            offset: o.offset,
                            metadata: o.metadata.unwrap_or_default(),
                        },
                    );
            }
        }
        self.state.builder.set_consumer_groups(groups);
        self.manifest_dirty = true;
        Ok(())
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

    fn held_bytes(&self) -> u64 {
        self.partitions
            .values()
            .map(|p| p.open_bytes() + p.queued_bytes())
            .sum()
    }

    /// The fetch size that keeps everything held within the budget, after making room by
    /// waiting for uploads or rolling the largest open segments.
    async fn make_room(&mut self) -> Result<u64, CliError> {
        let want = (self.options.memory_budget / 4).clamp(1 << 20, 64 << 20);
        loop {
            let held = self.held_bytes();
            if held + want <= self.options.memory_budget {
                return Ok(want);
            }
            let has_uploads = self.partitions.values().any(|p| !p.queue.is_empty());
            if has_uploads {
                self.commit(true).await?;
                continue;
            }
            // Roll the largest open segment; if there is none, fetch what fits.
            let largest = self
                .partitions
                .iter()
                .filter(|(_, p)| p.open.is_some())
                .max_by_key(|(_, p)| p.open_bytes())
                .map(|(k, _)| k.clone());
            match largest {
                Some(key) => self.roll(&key).await?,
                None => return Ok(want.min(self.options.memory_budget.saturating_sub(held)).max(1 << 20)),
            }
        }
    }

    async fn run(&mut self, mut shutdown: watch::Receiver<bool>) -> Result<BackupReport, CliError> {
        let mut last_progress = Instant::now();
        let mut last_refresh = Instant::now();
        let mut stopping = false;
        // Snapshot partitions a shutdown stopped before their end: the backup stays incomplete.
        let mut interrupted: Vec<(TopicName, i32, u64)> = Vec::new();
        loop {
            self.check_lease()?;
            if !stopping && *shutdown.borrow() {
                stopping = true;
                for fetch in self.inflight.drain(..) {
                    fetch.handle.abort();
                }
                tracing::info!("shutdown requested: finishing open segments");
                for (key, part) in self.partitions.iter_mut() {
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
                    self.absorb(fetched, !stopping && !*shutdown.borrow()).await?;
                }
            }
            if self.options.continuous && !stopping && last_refresh.elapsed() >= self.options.topic_refresh_interval {
                let metadata = self.client.metadata(None).await?;
                self.add_topics(&metadata).await?;
                last_refresh = Instant::now();
            }
        }
        // Everything rolled; wait for every upload and commit.
        self.commit(true).await?;
        self.check_lease()?;
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

    /// Takes in one fetch: gaps, the snapshot end, records into open segments (encoded on the
    /// blocking pool, all partitions at once), and rolling of full segments.
    async fn absorb(&mut self, fetched: Vec<PartitionFetch>, prefetch: bool) -> Result<(), CliError> {
        let mut encode = Vec::new();
        for pf in fetched {
            let Ok(topic) = TopicName::new(&pf.topic) else { continue };
            let key = (topic, pf.partition);
            let Some(part) = self.partitions.get_mut(&key) else {
                continue;
            };
            if part.done {
                continue;
            }
            if !self.options.continuous && part.end.is_none() {
                part.end = Some(match &pf.error {
                    Some(PartitionError::OffsetOutOfRange { high_watermark, .. }) => *high_watermark,
                    _ => pf.high_watermark,
                });
            }
            match pf.error {
                None => {}
                Some(PartitionError::OffsetOutOfRange {
                    requested,
                    log_start_offset,
                    high_watermark,
                }) => {
                    if log_start_offset > part.position {
                        let gap = Gap {
                            from_offset: part.position,
                            to_offset: log_start_offset - 1,
                            reason: Gap::RETENTION.into(),
                        };
                        tracing::warn!(topic = %part.topic, partition = part.partition, from = gap.from_offset, to = gap.to_offset, "offsets deleted by retention before they were read: recording a gap");
                        self.metrics.gaps.fetch_add(1, Ordering::Relaxed);
                        self.report.gaps.push(GapReport {
                            topic: part.topic.to_string(),
                            partition: part.partition,
                            from_offset: gap.from_offset,
                            to_offset: gap.to_offset,
                        });
                        part.position = log_start_offset;
                        // The open segment ends before the gap.
                        if let Some(open) = part.open.take() {
                            let item = self.start_upload(&key, open).await?;
                            let part = self.partitions.get_mut(&key).expect("present");
                            part.queue.push_back(item);
                        }
                        let part = self.partitions.get_mut(&key).expect("present");
                        part.queue.push_back(CommitItem::Gap(gap));
                        if part.end.is_some_and(|end| part.position >= end) {
                            part.done = true;
                        }
                        continue;
                    }
                    return Err(CliError::Fetch {
                        topic: pf.topic.clone(),
                        partition: pf.partition,
                        error: PartitionError::OffsetOutOfRange {
                            requested,
                            log_start_offset,
                            high_watermark,
                        },
                    });
                }
                Some(error) => {
                    return Err(CliError::Fetch {
                        topic: pf.topic.clone(),
                        partition: pf.partition,
                        error,
                    });
                }
            }
            let end = part.end;
            // Only records after what this partition already holds, in strictly increasing
            // offset order, and (snapshot) before the end captured at start.
            let mut last = part.position - 1;
            let mut records = Vec::with_capacity(pf.records.len());
            // Where Kafka batches end, as indexes into `records`.
            let mut batch_ends = Vec::with_capacity(pf.batch_ends.len());
            let mut next_end = pf.batch_ends.iter().copied().peekable();
            for (index, r) in pf.records.into_iter().enumerate() {
                if r.offset <= last {
                    // kbs-kafka already drops a batch a broker sends twice; anything else going
                    // back would be a reordering: refuse it rather than lose records.
                    if r.offset >= part.position {
                        return Err(CliError::Fetch {
                            topic: pf.topic.clone(),
                            partition: pf.partition,
                            error: PartitionError::CorruptBatch {
                                offset: r.offset,
                                reason: format!("offset {} arrived after offset {last}", r.offset),
                            },
                        });
                    }
                } else if end.is_some_and(|e| r.offset >= e) {
                    break;
                } else {
                    last = r.offset;
                    records.push(to_format_record(r));
                }
                while next_end.next_if(|&e| e <= index + 1).is_some() {
                    if batch_ends.last() != Some(&records.len()) && !records.is_empty() {
                        batch_ends.push(records.len());
                    }
                }
            }
            if batch_ends.last() != Some(&records.len()) && !records.is_empty() {
                // The snapshot end cut a batch, or the response ended: the segment may end here.
                batch_ends.push(records.len());
            }
            if let Ok(mut gauges) = self.metrics.partitions.lock() {
                gauges.insert(
                    (pf.topic.clone(), pf.partition),
                    (pf.next_offset.max(part.position), pf.high_watermark),
                );
            }
            if pf.next_offset > part.position {
                part.position = pf.next_offset;
                part.last_progress = Instant::now();
            } else if !part.done && part.last_progress.elapsed() >= Duration::from_secs(30) {
                part.last_progress = Instant::now();
                tracing::warn!(
                    topic = %part.topic, partition = part.partition, offset = part.position, end = ?part.end,
                    last_stable_offset = pf.last_stable_offset,
                    "no progress for 30 s: the broker returns no records at this offset (an open transaction keeps the last stable offset back?)"
                );
            }
            if end.is_some_and(|end| part.position >= end) {
                part.done = true;
            }
            if !records.is_empty() {
                encode.push((key, records, batch_ends));
            }
        }
        // Encode on the blocking pool, every partition in parallel.
        let mut jobs = Vec::new();
        let mut encoding = 0u64;
        for (key, records, batch_ends) in encode {
            encoding += records
                .iter()
                .map(|r| (r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len())) as u64)
                .sum::<u64>();
            let part = self.partitions.get_mut(&key).expect("present");
            let open = match part.open.take() {
                Some(open) => open,
                None => OpenSegment {
                    writer: SegmentWriter::in_memory(
                        WriterOptions::new(self.options.compression)
                            .zstd_level(self.options.compression_level)
                            .per_record_crc(self.options.per_record_crc),
                    )
                    .map_err(|source| CliError::Segment {
                        key: part.topic.to_string(),
                        source,
                    })?,
                    opened: Instant::now(),
                    last_timestamp: 0,
                },
            };
            let max_records = self.options.segment_max_records;
            let max_bytes = self.options.segment_max_bytes;
            jobs.push((
                key,
                tokio::task::spawn_blocking(move || encode_records(open, records, &batch_ends, max_records, max_bytes)),
            ));
        }
        // The next offsets are known: fetch again while this response is encoded.
        if prefetch {
            self.start_prefetches(encoding);
        }
        for (key, job) in jobs {
            let (open, full, bytes) = job
                .await
                .map_err(|e| CliError::Locked(format!("encoding task failed: {e}")))??;
            self.report.bytes_in += bytes;
            self.metrics.bytes_in.fetch_add(bytes, Ordering::Relaxed);
            for segment in full {
                let item = self.start_upload(&key, segment).await?;
                self.partitions.get_mut(&key).expect("present").queue.push_back(item);
            }
            self.partitions.get_mut(&key).expect("present").open = open;
        }
        Ok(())
    }

    /// A fetch request for `active` partitions returning at most `budget` bytes.
    fn fetch_request(&self, active: Vec<FetchPosition>, budget: u64) -> FetchRequest {
        let max_wait = if self.options.continuous && self.idle {
            Duration::from_millis(500).max(self.options.fetch_max_wait)
        } else {
            self.options.fetch_max_wait
        };
        let mut request = FetchRequest::new(active).with_max_wait(max_wait);
        request.max_bytes = i32::try_from(budget).unwrap_or(i32::MAX);
        request.partition_max_bytes = self.options.fetch_max_partition_bytes.min(request.max_bytes);
        request
    }

    /// Records, per lane, whether a response held records for the lane's partitions.
    fn note_lane_activity(&mut self, fetched: &[PartitionFetch]) {
        let mut seen = [false; FETCH_LANES];
        let mut records = [false; FETCH_LANES];
        for pf in fetched {
            let Ok(topic) = TopicName::new(&pf.topic) else { continue };
            if let Some(part) = self.partitions.get(&(topic, pf.partition)) {
                seen[part.lane] = true;
                records[part.lane] |= !pf.records.is_empty();
            }
        }
        for lane in 0..FETCH_LANES {
            if seen[lane] {
                self.lane_idle[lane] = !records[lane];
            }
        }
    }

    /// Starts fetches in the background while the current response is encoded: one per lane
    /// that has none in flight or, in continuous mode with an idle lane, one for every
    /// partition (see [`FETCH_LANES`]). Only as far as the memory budget has room for them
    /// besides `encoding` bytes of records being encoded now and what fetches in flight may
    /// return; otherwise the loop makes room first.
    fn start_prefetches(&mut self, encoding: u64) {
        let inflight_lanes: Vec<Option<usize>> = self.inflight.iter().map(|f| f.lane).collect();
        let lanes = lanes_to_fetch(self.options.continuous, &self.lane_idle, &inflight_lanes);
        let share = if lanes == [None] { 1 } else { FETCH_LANES as u64 };
        let want = ((self.options.memory_budget / 4) / share).clamp(1 << 20, 64 << 20);
        for lane in lanes {
            let busy: HashSet<&(TopicName, i32)> = self.inflight.iter().flat_map(|f| &f.keys).collect();
            let keys: Vec<(TopicName, i32)> = self
                .partitions
                .iter()
                .filter(|(k, p)| !p.done && !busy.contains(k) && lane.is_none_or(|l| p.lane == l))
                .map(|(k, _)| k.clone())
                .collect();
            let inflight: u64 = self.inflight.iter().map(|f| f.bytes).sum();
            if keys.is_empty() || self.held_bytes() + encoding + inflight + want > self.options.memory_budget {
                continue;
            }
            let active: Vec<FetchPosition> = keys
                .iter()
                .map(|k| FetchPosition::new(k.0.as_str(), k.1, self.partitions[k].position))
                .collect();
            let request = self.fetch_request(active, want);
            let client = self.client.clone();
            self.inflight.push_back(InflightFetch {
                lane,
                keys,
                bytes: want,
                handle: tokio::spawn(async move { client.fetch(&request).await }),
            });
        }
    }

    /// Closes the open segment of `key` and starts its upload.
    async fn roll(&mut self, key: &(TopicName, i32)) -> Result<(), CliError> {
        let Some(part) = self.partitions.get_mut(key) else {
            return Ok(());
        };
        let Some(open) = part.open.take() else { return Ok(()) };
        let item = self.start_upload(key, open).await?;
        self.partitions.get_mut(key).expect("present").queue.push_back(item);
        Ok(())
    }

    /// Finishes a segment (on the blocking pool) and uploads it create-only in the background.
    async fn start_upload(&mut self, key: &(TopicName, i32), open: OpenSegment) -> Result<CommitItem, CliError> {
        let part = self.partitions.get_mut(key).expect("present");
        let name = SegmentName::new(part.next_sequence);
        part.next_sequence += 1;
        let object_key = layout::segment_key(&self.options.backup_id, &part.topic, part.partition, name)?;
        let last_timestamp = open.last_timestamp;
        let finished = tokio::task::spawn_blocking(move || open.writer.finish())
            .await
            .map_err(|e| CliError::Locked(format!("encoding task failed: {e}")))?
            .map_err(|source| CliError::Segment {
                key: object_key.clone(),
                source,
            })?;
        let (cursor, summary) = finished;
        let bytes = Bytes::from(cursor.into_inner());
        let size = bytes.len() as u64;
        let storage = self.storage.clone();
        let uploads = self.uploads.clone();
        let metrics = self.metrics.clone();
        let (done, chain) = oneshot::channel();
        let previous = self
            .partitions
            .get_mut(key)
            .expect("present")
            .upload_chain
            .replace(chain);
        let handle = tokio::spawn(async move {
            if let Some(previous) = previous
                && !previous.await.unwrap_or(false)
            {
                let _ = done.send(false);
                return Err(CliError::Locked(format!(
                    "{object_key} not uploaded: the segment before it failed"
                )));
            }
            let _permit = uploads
                .acquire_owned()
                .await
                .map_err(|_| CliError::Locked("upload pool closed".into()))?;
            let started = Instant::now();
            let result = upload_segment(&storage, &object_key, bytes, name, &summary, last_timestamp).await;
            metrics.observe_storage_write(started.elapsed());
            let _ = done.send(result.is_ok());
            result
        });
        Ok(CommitItem::Segment { handle, bytes: size })
    }

    /// Records every finished upload and gap, in partition order; writes the checkpoint (and
    /// the manifest when a gap was recorded or a while has passed). With `wait`, waits for
    /// every upload in flight.
    async fn commit(&mut self, wait: bool) -> Result<(), CliError> {
        let mut committed = false;
        let keys: Vec<(TopicName, i32)> = self.partitions.keys().cloned().collect();
        for key in keys {
            loop {
                let part = self.partitions.get_mut(&key).expect("present");
                let ready = match part.queue.front() {
                    None => false,
                    Some(CommitItem::Gap(_)) => true,
                    Some(CommitItem::Segment { handle, .. }) => wait || handle.is_finished(),
                };
                if !ready {
                    break;
                }
                match part.queue.pop_front().expect("checked") {
                    CommitItem::Gap(gap) => {
                        self.state.add_gap(&key.0, key.1, gap)?;
                        self.manifest_dirty = true;
                    }
                    CommitItem::Segment { handle, .. } => {
                        let uploaded = handle
                            .await
                            .map_err(|e| CliError::Locked(format!("upload task failed: {e}")))??;
                        self.report.segments += u64::from(!uploaded.adopted);
                        self.report.adopted_segments += u64::from(uploaded.adopted);
                        self.report.records += uploaded.file.records;
                        self.report.bytes_out += uploaded.file.size_bytes;
                        self.metrics.records.fetch_add(uploaded.file.records, Ordering::Relaxed);
                        self.metrics
                            .bytes_out
                            .fetch_add(uploaded.file.size_bytes, Ordering::Relaxed);
                        self.metrics.segments.fetch_add(1, Ordering::Relaxed);

                        self.state
                            .add_segment(&key.0, key.1, uploaded.file, uploaded.last_timestamp)?;
                    }
                }
                committed = true;
            }
        }
        if committed {
            self.checkpoint_dirty = true;
        }
        self.check_lease()?;
        // A gap (or an adoption, or the group snapshot) is written to the manifest before
        // anything after it is checkpointed; otherwise the in-progress manifest is refreshed
        // every 30 s so `kbs describe` shows progress.
        if self.manifest_dirty || (committed && self.last_manifest.elapsed() >= Duration::from_secs(30)) {
            let started = Instant::now();
            self.state.write_manifest_in_progress().await?;
            self.metrics.observe_storage_write(started.elapsed());
            self.manifest_dirty = false;
            self.last_manifest = Instant::now();
        }
        if self.checkpoint_dirty && (wait || self.last_checkpoint.elapsed() >= Duration::from_secs(1)) {
            let started = Instant::now();
            self.state.write_checkpoint().await?;
            self.metrics.observe_storage_write(started.elapsed());
            self.checkpoint_dirty = false;
            self.last_checkpoint = Instant::now();
        }
        Ok(())
    }
}

/// Uploads a finished segment create-only; if the key exists, adopts the object only when it
/// holds exactly the same offsets (an interrupted run made it durable before recording it).
async fn upload_segment(
    storage: &Arc<dyn ObjectStorage>,
    object_key: &str,
    bytes: Bytes,
    name: SegmentName,
    summary: &SegmentSummary,
    last_timestamp: i64,
) -> Result<Uploaded, CliError> {
    match storage.put_if_absent(object_key, bytes).await {
        Ok(_) => Ok(Uploaded {
            file: segment_file(name, summary),
            last_timestamp,
            adopted: false,
        }),
        Err(kbs_storage::Error::AlreadyExists { .. }) => {
            let (existing, existing_last_ts) = verify_existing(storage, object_key).await?;
            if (existing.first_offset, existing.last_offset, existing.record_count)
                == (summary.first_offset, summary.last_offset, summary.record_count)
            {
                Ok(Uploaded {
                    file: segment_file(name, &existing),
                    last_timestamp: existing_last_ts,
                    adopted: true,
                })
            } else {
                Err(CliError::Locked(format!(
                    "{object_key} already exists with offsets {}..{} where this run wrote {}..{}: another writer is \
                     producing this backup. Nothing was overwritten",
                    existing.first_offset, existing.last_offset, summary.first_offset, summary.last_offset
                )))
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Appends the records of one fetch response to a partition's open segment, closing the
/// segment when it is full, but only where a Kafka batch ends (`batch_ends`, indexes one past
/// each batch's last record): a later run then resumes at the start of a batch, which matters
/// because some brokers (tansu among them) skip the rest of a batch when asked to fetch from
/// its middle. A segment may exceed its size or record limit by up to one batch.
fn encode_records(
    mut open: OpenSegment,
    records: Vec<Record>,
    batch_ends: &[usize],
    max_records: u64,
    max_bytes: u64,
) -> Result<(Option<OpenSegment>, Vec<OpenSegment>, u64), CliError> {
    let mut full = Vec::new();
    let mut bytes = 0u64;
    let options = open.writer.options();
    let mut ends = batch_ends.iter().copied().peekable();
    for (index, record) in records.into_iter().enumerate() {
        bytes += record.key.as_ref().map_or(0, |k| k.len() as u64)
            + record.value.as_ref().map_or(0, |v| v.len() as u64)
            + record
                .headers
                .iter()
                .map(|h| h.key.len() as u64 + h.value.as_ref().map_or(0, |v| v.len() as u64))
                .sum::<u64>();
        open.writer.append(&record).map_err(|source| CliError::Segment {
            key: format!("offset {}", record.offset),
            source,
        })?;
        open.last_timestamp = record.timestamp;
        let at_batch_end = ends.next_if_eq(&(index + 1)).is_some();
        if at_batch_end && (open.writer.record_count() >= max_records || open.writer.estimated_size() >= max_bytes) {
            let next = OpenSegment {
                writer: SegmentWriter::in_memory(options).map_err(|source| CliError::Segment {
                    key: String::new(),
                    source,
                })?,
                opened: Instant::now(),
                last_timestamp: 0,
            };
            full.push(std::mem::replace(&mut open, next));
        }
    }
    let open = if open.writer.record_count() > 0 {
        Some(open)
    } else {
        None
    };
    Ok((open, full, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_keeps_every_lane_busy() {
        assert_eq!(lanes_to_fetch(false, &[false, false], &[]), vec![Some(0), Some(1)]);
        assert_eq!(lanes_to_fetch(false, &[false, false], &[Some(0)]), vec![Some(1)]);
        assert_eq!(lanes_to_fetch(false, &[false, false], &[Some(1), Some(0)]), vec![]);
        // Idle lanes do not matter in a snapshot: partitions past their end are not fetched.
        assert_eq!(lanes_to_fetch(false, &[true, false], &[Some(1)]), vec![Some(0)]);
    }

    #[test]
    fn continuous_mode_with_an_idle_lane_fetches_everything_at_once() {
        assert_eq!(lanes_to_fetch(true, &[false, false], &[Some(0)]), vec![Some(1)]);
        assert_eq!(lanes_to_fetch(true, &[true, false], &[]), vec![None]);
        assert_eq!(lanes_to_fetch(true, &[false, true], &[]), vec![None]);
        // A lane's fetch still in flight finishes first: no fetch queues behind a long poll.
        assert_eq!(lanes_to_fetch(true, &[true, false], &[Some(1)]), vec![]);
        assert_eq!(lanes_to_fetch(true, &[true, true], &[None]), vec![]);
    }
}
