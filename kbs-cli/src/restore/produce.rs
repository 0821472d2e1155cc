//! Producing one partition: segments verified before any record is produced, records matched
//! against what an interrupted run already wrote, batches pipelined through the idempotent
//! producer, and the progress document (compare-and-swap) that makes resume exact.

use super::*;

/// What keeps two runs of one restore id from producing at once: the run's lease (renewed in
/// the background) and its progress document (compare-and-swap). Every batch is produced only
/// after [`Fence::check`] passed.
pub(super) struct Fence {
    /// Set when another run took the lease or the progress document.
    pub(super) lost: Arc<std::sync::atomic::AtomicBool>,
    /// When the lease was last renewed (Unix ms).
    pub(super) renewed_at_ms: Arc<std::sync::atomic::AtomicI64>,
    /// The lease's time-to-live: a run whose lease was not renewed for half of it stops
    /// producing, since another run may take it over once it expires.
    pub(super) ttl: Duration,
    /// Set when the run must stop for another reason (progress that cannot be saved).
    pub(super) fatal: std::sync::Mutex<Option<String>>,
    /// Set when the run must stop at its next batch: SIGINT/SIGTERM, or a worker's group
    /// rebalancing.
    pub(super) stopping: Arc<std::sync::atomic::AtomicBool>,
    /// This is a worker's fence (`--workers`): renewed by its group heartbeats.
    pub(super) worker: bool,
}

impl Fence {
    pub(super) fn new(ttl: Duration) -> Fence {
        Fence {
            lost: Arc::default(),
            renewed_at_ms: Arc::default(),
            ttl,
            fatal: std::sync::Mutex::new(None),
            stopping: Arc::default(),
            worker: false,
        }
    }

    /// Whether this run may still produce. A worker's fencing is [`CliError::Fenced`] (it
    /// joins its group again); a single run's is [`CliError::Locked`].
    pub(super) fn check(&self, restore_id: &str) -> Result<(), CliError> {
        use std::sync::atomic::Ordering;
        let fenced = |message: String| {
            if self.worker {
                CliError::Fenced(message)
            } else {
                CliError::Locked(message)
            }
        };
        if self.lost.load(Ordering::SeqCst) {
            return Err(fenced(format!(
                "restore {restore_id}: another run (or worker) took over its lease or progress; this run stopped \
                 producing"
            )));
        }
        let silent = crate::lease::unix_now_ms() - self.renewed_at_ms.load(Ordering::SeqCst);
        if silent > (self.ttl / 2).as_millis() as i64 {
            return Err(fenced(format!(
                "restore {restore_id}: its lease (or a worker's group membership) could not be renewed for {:.1} s, \
                 so another run (or worker) may take it over; this run stopped producing (rerun the same command \
                 to resume)",
                silent as f64 / 1000.0
            )));
        }
        if self.stopping.load(Ordering::SeqCst) {
            return Err(CliError::Locked(format!(
                "restore {restore_id}: stopping as asked (SIGINT/SIGTERM, or a worker's group rebalancing)"
            )));
        }
        if let Some(reason) = self.fatal.lock().ok().and_then(|f| f.clone()) {
            return Err(CliError::Locked(format!("restore {restore_id}: {reason}")));
        }
        Ok(())
    }
}

/// Shared state of a running restore.
pub(super) struct Shared {
    pub(super) storage: Arc<dyn ObjectStorage>,
    pub(super) options: RestoreOptions,
    pub(super) progress: Mutex<(RestoreProgress, Option<ObjectVersion>)>,
    pub(super) memory: Arc<Semaphore>,
    pub(super) memory_permits: u64,
    /// The byte-rate limit, when one is set.
    pub(super) rate: Option<crate::rate::ByteRateLimit>,
    pub(super) skipped: Mutex<Vec<String>>,
    pub(super) produced: Mutex<(u64, u64)>,
    pub(super) fence: Fence,
    /// How many partitions recorded this run's writer in the progress (under its lock) ...
    pub(super) writers_marked: std::sync::atomic::AtomicU64,
    /// ... and how many of those marks the last successful save covered.
    pub(super) writers_saved: std::sync::atomic::AtomicU64,
    /// Producers of interrupted runs this run continues, by producer id.
    pub(super) resumed_producers: Mutex<BTreeMap<i64, IdempotentProducer>>,
    /// What the metrics endpoint serves.
    pub(super) metrics: Arc<crate::metrics::RestoreMetrics>,
    /// A worker of a shared restore saves its partitions' progress objects instead of the
    /// progress document (see `partitions.rs`).
    pub(super) ledger: Option<Mutex<super::partitions::RestoreLedger>>,
}

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Shared {
    /// The state of a restore that starts from `progress` (at `version` in the store, `None`
    /// when not stored yet).
    pub(super) fn new(
        storage: Arc<dyn ObjectStorage>,
        options: RestoreOptions,
        progress: RestoreProgress,
        version: Option<ObjectVersion>,
        fence: Fence,
        metrics: Arc<crate::metrics::RestoreMetrics>,
    ) -> Shared {
        let memory_permits = (options.memory_budget >> 10).clamp(1, u64::from(u32::MAX >> 4));
        Shared {
            storage,
            memory: Arc::new(Semaphore::new(memory_permits as usize)),
            memory_permits,
            rate: options.max_bytes_per_sec.map(crate::rate::ByteRateLimit::new),
            options,
            progress: Mutex::new((progress, version)),
            skipped: Mutex::new(Vec::new()),
            produced: Mutex::new((0, 0)),
            fence,
            writers_marked: Default::default(),
            writers_saved: Default::default(),
            resumed_producers: Mutex::new(BTreeMap::new()),
            metrics,
            ledger: None,
        }
    }

    /// A worker's state: its progress is saved to `ledger`'s objects.
    pub(super) fn with_ledger(mut self, ledger: super::partitions::RestoreLedger) -> Shared {
        self.ledger = Some(Mutex::new(ledger));
        self
    }

    pub(super) fn progress_key(&self) -> String {
        format!(
            "{}restores/{}/progress.json",
            layout::backup_prefix(&self.options.backup_id),
            self.options.restore_id
        )
    }

    /// Writes the progress document (compare-and-swap, so two runs of one restore id cannot
    /// both write it).
    pub(super) async fn save_progress(&self) -> Result<(), CliError> {
        let mut guard = self.progress.lock().await;
        let covering = self.writers_marked.load(std::sync::atomic::Ordering::SeqCst);
        if let Some(ledger) = &self.ledger {
            return match ledger.lock().await.save(&guard.0).await {
                Ok(()) => {
                    self.writers_saved
                        .fetch_max(covering, std::sync::atomic::Ordering::SeqCst);
                    Ok(())
                }
                Err(e) => {
                    if matches!(e, CliError::Fenced(_)) {
                        self.fence.lost.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    Err(e)
                }
            };
        }
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
                self.writers_saved
                    .fetch_max(covering, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            }
            Err(kbs_storage::Error::Precondition { .. } | kbs_storage::Error::AlreadyExists { .. }) => {
                self.fence.lost.store(true, std::sync::atomic::Ordering::SeqCst);
                Err(CliError::Locked(format!(
                    "{key} was changed by another run of restore {}; stopping",
                    self.options.restore_id
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until `bytes` may be produced under the byte-rate limit (see
    /// [`crate::rate::ByteRateLimit`]).
    pub(super) async fn throttle(&self, bytes: u64) {
        let wait = self.reserve_rate(bytes).await;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Reserves `bytes` under the byte-rate limit and returns how long the caller must wait
    /// before producing them.
    pub(super) async fn reserve_rate(&self, bytes: u64) -> Duration {
        match &self.rate {
            Some(rate) => rate.reserve(bytes).await,
            None => Duration::ZERO,
        }
    }
}

/// Saves the progress document every second in the background. A failed write is retried at
/// the next tick; only another run's takeover, or a store that refuses every write for a
/// minute, ends the saving (and, through the fence, the producing).
pub(super) fn spawn_progress_saver(shared: Arc<Shared>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // A failed write is retried at the next tick; only another run's takeover, or a
        // store that refuses every write for a minute, ends the saving (and the producing).
        let mut failures = 0u32;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            match shared.save_progress().await {
                Ok(()) => failures = 0,
                Err(e) if shared.fence.lost.load(std::sync::atomic::Ordering::SeqCst) => {
                    tracing::error!("restore progress taken over: {e}");
                    return;
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(failures, "saving restore progress failed (retried in 1 s): {e}");
                    if failures >= 60 {
                        if let Ok(mut fatal) = shared.fence.fatal.lock() {
                            *fatal = Some(format!("its progress could not be saved for 60 s ({e})"));
                        }
                        return;
                    }
                }
            }
        }
    })
}

/// The record as it is produced: same timestamp, key, value and headers, plus the offset
/// headers when asked.
pub(super) fn produce_record(r: &kbs_format::Record, source_partition: i32, offset_headers: bool) -> ProduceRecord {
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

pub(super) fn record_bytes(r: &ProduceRecord) -> u64 {
    (r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len())) as u64
}

/// Rough size of a record inside a Kafka batch, for batch sizing and max.message.bytes.
pub(super) fn wire_size(r: &ProduceRecord) -> usize {
    24 + r.key.as_ref().map_or(0, |k| k.len())
        + r.value.as_ref().map_or(0, |v| v.len())
        + r.headers
            .iter()
            .map(|h| 10 + h.key.len() + h.value.as_ref().map_or(0, |v| v.len()))
            .sum::<usize>()
}

/// Whether `written`, a record an interrupted run left in the target, is `produced`, as far
/// as the broker keeps it (a LogAppendTime topic replaces the timestamp with its own).
pub(super) fn same_record(written: &kbs_kafka::Record, produced: &ProduceRecord) -> bool {
    let same_time =
        written.timestamp_type == kbs_kafka::TimestampType::LogAppendTime || written.timestamp == produced.timestamp;
    written.key == produced.key && written.value == produced.value && same_time && written.headers == produced.headers
}

/// The record's [`wire_size`], or an error naming it (`what()`: the source record and the
/// target partition) when it cannot fit the target's `max.message.bytes`.
pub(super) fn checked_wire_size(
    produced: &ProduceRecord,
    max_message_bytes: usize,
    what: impl FnOnce() -> (String, String),
) -> Result<usize, CliError> {
    let size = wire_size(produced);
    if size + 70 > max_message_bytes {
        let (record, target) = what();
        return Err(CliError::InvalidArgument {
            flag: "topic-map",
            message: format!(
                "record {record} is {size} bytes, over {target}'s max.message.bytes of {max_message_bytes}; raise \
                 it on the target topic"
            ),
        });
    }
    Ok(size)
}

/// The produce batch being filled: its records, what identifies each (a source offset, or a
/// sequence index), and its size on the wire.
pub(super) struct OpenBatch<Id> {
    records: Vec<ProduceRecord>,
    ids: Vec<Id>,
    size: usize,
}

impl<Id> OpenBatch<Id> {
    pub(super) fn new() -> Self {
        OpenBatch {
            records: Vec::new(),
            ids: Vec::new(),
            size: 0,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Whether a record of wire size `size` no longer fits under `limit` (a first record
    /// always fits).
    pub(super) fn is_full_for(&self, size: usize, limit: usize) -> bool {
        !self.is_empty() && self.size + size > limit
    }

    pub(super) fn last_id(&self) -> Option<&Id> {
        self.ids.last()
    }

    pub(super) fn push(&mut self, record: ProduceRecord, id: Id, size: usize) {
        self.records.push(record);
        self.ids.push(id);
        self.size += size;
    }

    /// The records and their ids, leaving the batch empty.
    pub(super) fn take(&mut self) -> (Vec<ProduceRecord>, Vec<Id>) {
        self.size = 0;
        (std::mem::take(&mut self.records), std::mem::take(&mut self.ids))
    }
}

/// A batch on the wire: its source offsets, bytes, and the broker's answer to come.
pub(super) struct InFlight {
    pub(super) sources: Vec<i64>,
    pub(super) bytes: u64,
    pub(super) ack:
        std::pin::Pin<Box<dyn std::future::Future<Output = kbs_kafka::Result<kbs_kafka::ProduceAck>> + Send>>,
}

pub(super) async fn restore_partition(
    shared: &Shared,
    client: &KafkaClient,
    producer: &IdempotentProducer,
    plan: &PartitionPlan,
    max_message_bytes: usize,
) -> Result<(), CliError> {
    let options = &shared.options;
    let key = partition_key(&plan.topic, plan.partition);
    // Where this partition stands (recorded before any task started), and what the target
    // holds beyond it.
    let (next_source, next_target, interrupted_writer) = {
        let guard = shared.progress.lock().await;
        let p = guard.0.partitions.get(&key).expect("prepared before the tasks");
        if p.done {
            return Ok(());
        }
        (
            p.last_source_offset.map_or(i64::MIN, |o| o + 1),
            p.next_target_offset,
            p.writer,
        )
    };
    let (target_end, _) = target_bounds(client, &plan.target_topic, plan.target_partition).await?;
    // The interrupted run's producer, continued where its records in the log end, so that a
    // batch of it still above the high watermark or queued at the broker is written once.
    let target = (plan.target_topic.as_str(), plan.target_partition);
    let slot = progress::Slot::Source(key.clone());
    let producer = &choose_writer(shared, client, producer, target, &slot, interrupted_writer, target_end).await?;
    // Records an interrupted run wrote after its last checkpoint: matched against the source
    // below, then skipped.
    let mut unacknowledged = TargetTail::new(&plan.target_topic, plan.target_partition, next_target, target_end);

    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let batch_limit = max_message_bytes.clamp(1024, 1 << 20);
    let share = options.memory_budget / options.parallelism.max(1) as u64;
    let mut source = SourceRecords::new(shared, plan, next_source, share)?;
    let mut batch = OpenBatch::new();
    while let Some(item) = source.next().await? {
        let record = match item {
            SourceItem::Record(record) => record,
            // A batch never spans two segments.
            SourceItem::SegmentEnd => {
                if !batch.is_empty() {
                    let (records, sources) = batch.take();
                    send(shared, producer, plan, &mut in_flight, records, sources, &key).await?;
                }
                continue;
            }
        };
        let produced = produce_record(&record, plan.partition, options.include_offset_headers);
        if let Some(written) = unacknowledged.next(client).await? {
            // Written by the interrupted run: it must be exactly this record.
            if !same_record(&written, &produced) {
                return Err(CliError::Locked(format!(
                    "target {}/{} offset {} does not hold source record {key}@{} that restore {} wrote there; \
                     something else writes to the target partition",
                    plan.target_topic, plan.target_partition, written.offset, record.offset, options.restore_id
                )));
            }
            let mut guard = shared.progress.lock().await;
            let p = guard.0.partitions.get_mut(&key).expect("inserted");
            p.map(record.offset, written.offset, &plan.split_points);
            p.last_source_offset = Some(record.offset);
            p.next_target_offset = written.offset + 1;
            p.records += 1;
            p.bytes += record_bytes(&produced);
            continue;
        }
        let size = checked_wire_size(&produced, max_message_bytes, || {
            (
                format!("{key}@{}", record.offset),
                format!("{}/{}", plan.target_topic, plan.target_partition),
            )
        })?;
        let split = batch
            .last_id()
            .is_some_and(|&previous| plan.split_points.range(previous + 1..=record.offset).next().is_some());
        if batch.is_full_for(size, batch_limit) || (split && !batch.is_empty()) {
            let (records, sources) = batch.take();
            send(shared, producer, plan, &mut in_flight, records, sources, &key).await?;
        }
        batch.push(produced, record.offset, size);
    }
    if !batch.is_empty() {
        let (records, sources) = batch.take();
        send(shared, producer, plan, &mut in_flight, records, sources, &key).await?;
    }
    while let Some(flight) = in_flight.pop_front() {
        acknowledge(shared, plan, flight, &key).await?;
    }
    let left = unacknowledged.remaining(client).await?;
    if left > 0 {
        return Err(CliError::Locked(format!(
            "target {}/{} holds up to {left} records after what restore {} wrote that match no remaining source \
             record",
            plan.target_topic, plan.target_partition, options.restore_id
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
    shared
        .metrics
        .partitions_done
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

pub(super) async fn send(
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
        acknowledge(shared, plan, oldest, key).await?;
    }
    // Checked right before each batch leaves: a run that lost its lease or progress, or could
    // not renew its lease lately, never produces again.
    shared.fence.check(&shared.options.restore_id)?;
    let ack = producer.produce(&plan.target_topic, plan.target_partition, &batch);
    in_flight.push_back(InFlight {
        sources,
        bytes,
        ack: Box::pin(ack),
    });
    Ok(())
}

pub(super) async fn acknowledge(
    shared: &Shared,
    plan: &PartitionPlan,
    flight: InFlight,
    key: &str,
) -> Result<(), CliError> {
    let ack = flight.ack.await?;
    let mut guard = shared.progress.lock().await;
    let p = guard.0.partitions.get_mut(key).expect("inserted");
    // Offsets of one partition written by one idempotent producer are contiguous; a resend
    // answered DUPLICATE_SEQUENCE_NUMBER without its offset continues from the last one.
    let base = ack.base_offset.unwrap_or(p.next_target_offset);
    for (i, source) in flight.sources.iter().enumerate() {
        p.map(*source, base + i as i64, &plan.split_points);
    }
    p.last_source_offset = flight.sources.last().copied().or(p.last_source_offset);
    p.next_target_offset = base + flight.sources.len() as i64;
    p.records += flight.sources.len() as u64;
    p.bytes += flight.bytes;
    drop(guard);
    let mut produced = shared.produced.lock().await;
    produced.0 += flight.sources.len() as u64;
    produced.1 += flight.bytes;
    drop(produced);
    let counted = std::sync::atomic::Ordering::Relaxed;
    shared.metrics.records.fetch_add(flight.sources.len() as u64, counted);
    shared.metrics.bytes.fetch_add(flight.bytes, counted);
    Ok(())
}
