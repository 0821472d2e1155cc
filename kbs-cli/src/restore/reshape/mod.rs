//! Restoring a topic into another partitioning (`--repartition key|round-robin`), exactly
//! once across interruptions.
//!
//! A one-to-one restore resumes exactly once because each target partition is written by one
//! ordered stream whose position the progress document records. A repartitioned topic keeps
//! that property by writing **one deterministic sequence per source topic**:
//!
//! 1. **Merge.** The selected records of all the topic's source partitions are merged into one
//!    sequence by `(timestamp, source partition, source offset)` of each partition's next record
//!    (`merge.rs`). The order within a source partition is kept, so the records of a key (which
//!    the source's producer put in one partition) keep their order.
//! 2. **Route.** Each record goes to a target partition by [`Repartition`]: its key's murmur2
//!    partition, or round robin by its source position (`route.rs`). Each target partition
//!    receives the subsequence routed to it, in sequence order, from one writer (`writer.rs`).
//! 3. **Cut.** A target's produce batches are cut where their size reaches the batch limit
//!    (counted from the batch's first record), wherever the sequence's key and value bytes
//!    (counted from its start) pass a multiple of [`cut_bytes`] (512 KiB per target partition,
//!    1 to 64 MiB), and at its end: places that depend only on the sequence, so a rerun cuts
//!    where the interrupted run cut and can continue its idempotent producer (see
//!    `restore/writer.rs`).
//! 4. **Commit.** The progress document records the longest prefix of the sequence whose every
//!    record the targets acknowledged (`sequence.rs`): the last source offset the prefix took
//!    from each source partition, and each target partition's end at the prefix.
//!
//! A rerun restarts the merge after those source offsets. The merge's choices depend only on
//! the next record of each source, so it produces exactly the rest of the sequence, and routes
//! every record where the interrupted run did. Each target partition then holds, past its end
//! at the prefix, a prefix of what the rerun routes to it (written in order by one producer): it
//! is read back and matched record by record before anything new is produced, as in a one-to-one
//! restore. Nothing is skipped and nothing is written twice.
//!
//! Memory: the source partitions of a topic are read at once, each with an equal share of the
//! partition's memory budget (larger segments are spooled to temporary files); the batches
//! being filled are at most [`BATCH_BYTES`] together and those on the wire at most
//! [`IN_FLIGHT_BYTES`].

mod groups;
mod merge;
mod plan;
mod report;
mod route;
mod sequence;
mod writer;

pub(crate) use groups::{group_commits, planned_group_moves, translated_offset};
pub(crate) use plan::{ReshapePlan, record_start_positions, reshape_plans, target_partition_count};
pub use report::{ReshapedTopic, TargetShare};
pub(crate) use report::{planned_shares, restored_shares};
pub use route::Repartition;

use super::*;
use merge::Merge;
use progress::{ReshapedProgress, Slot};
use sequence::{Entry, Sequence};
use writer::{Routed, RoutedRecord, write_target};

/// Every this many key and value bytes of the sequence, every target's open batch is produced,
/// so records reach the targets steadily and the acknowledged prefix moves on even for a target
/// that receives few records: 512 KiB per target partition (batches of about that size when
/// keys spread evenly), at least 1 MiB and at most 64 MiB. It depends only on the shape, so
/// every run of a restore cuts alike.
pub(super) fn cut_bytes(target_partitions: i32) -> u64 {
    (u64::from(target_partitions.max(1).unsigned_abs()) << 19).clamp(1 << 20, 64 << 20)
}

/// Records the merge routes at once: their entries join the sequence under one lock, and each
/// target partition's share of them travels in one message.
const ROUTE_CHUNK: usize = 512;

/// The open batches of one reshaped topic's target partitions hold at most this much together
/// (a batch is at most 1 MiB and at least 16 KiB).
pub(super) const BATCH_BYTES: usize = 32 << 20;

/// The batches of one reshaped topic on the wire hold at most this much.
pub(super) const IN_FLIGHT_BYTES: usize = 32 << 20;

/// One reshaped topic being written: what its target writers share.
pub(super) struct TopicWrite {
    shared: Arc<Shared>,
    client: KafkaClient,
    /// The source topic (the progress document's key).
    topic: String,
    target_topic: String,
    sequence: Mutex<Sequence>,
    /// Moved group → source partition → committed offset.
    group_commits: BTreeMap<String, BTreeMap<i32, i64>>,
    in_flight: Arc<Semaphore>,
    batch_limit: usize,
    max_message_bytes: usize,
}

impl TopicWrite {
    /// Records that the records at `indexes` (one batch, in order) were written at `first`,
    /// `first + 1`, …, and moves the acknowledged prefix in the progress document.
    async fn written(&self, indexes: &[u64], first: i64) {
        let mut sequence = self.sequence.lock().await;
        for (i, index) in indexes.iter().enumerate() {
            sequence.written(*index, first + i as i64);
        }
        let entries = sequence.take_written();
        if entries.is_empty() {
            return;
        }
        tracing::debug!(
            topic = self.topic,
            records = entries.len(),
            "acknowledged prefix moved on"
        );
        let mut guard = self.shared.progress.lock().await;
        let r = guard
            .0
            .reshaped
            .get_mut(&self.topic)
            .expect("prepared before the tasks");
        for e in entries {
            let target_offset = e.target_offset.expect("taken when written");
            r.sequenced += 1;
            r.sources.insert(e.source_partition, e.source_offset);
            let t = r.targets.get_mut(&e.target_partition).expect("every target prepared");
            t.next_target_offset = target_offset + 1;
            t.records += 1;
            t.bytes += e.bytes;
            for (group, commits) in &self.group_commits {
                let unconsumed = commits.get(&e.source_partition).is_none_or(|c| e.source_offset >= *c);
                if unconsumed {
                    r.groups
                        .entry(group.clone())
                        .or_default()
                        .entry(e.target_partition)
                        .or_insert(target_offset);
                }
            }
        }
    }
}

/// Restores one reshaped topic (see the module docs): merges its source partitions, routes
/// every record to its target partition's writer, and marks the topic done once the whole
/// sequence is acknowledged.
pub(super) async fn restore_topic(
    shared: Arc<Shared>,
    client: KafkaClient,
    fresh: IdempotentProducer,
    plan: ReshapePlan,
    max_message_bytes: usize,
    group_commits: BTreeMap<String, BTreeMap<i32, i64>>,
) -> Result<(), CliError> {
    let options = &shared.options;
    let recorded = shared
        .progress
        .lock()
        .await
        .0
        .reshaped
        .get(&plan.topic)
        .cloned()
        .expect("prepared before the tasks");
    if recorded.done {
        return Ok(());
    }
    let partitions = plan.target_partitions;
    let batch_limit = max_message_bytes
        .clamp(1024, 1 << 20)
        .min((BATCH_BYTES / partitions as usize).max(16 << 10));
    let topic = Arc::new(TopicWrite {
        shared: shared.clone(),
        client: client.clone(),
        topic: plan.topic.clone(),
        target_topic: plan.target_topic.clone(),
        sequence: Mutex::new(Sequence::starting_at(recorded.sequenced)),
        group_commits,
        in_flight: Arc::new(Semaphore::new(IN_FLIGHT_BYTES >> 10)),
        batch_limit,
        max_message_bytes,
    });
    // One writer per target partition, continuing an interrupted run's producer where there
    // was one, after matching what it wrote past the prefix.
    // About 16,384 records between the merge and the writers, however they spread.
    let capacity = (16_384 / ROUTE_CHUNK).max(2);
    let mut senders = Vec::new();
    let mut writers = Vec::new();
    for partition in 0..partitions {
        let target = recorded.targets.get(&partition).expect("every target prepared");
        let (target_end, _) = target_bounds(&client, &plan.target_topic, partition).await?;
        let slot = Slot::Reshaped {
            topic: plan.topic.clone(),
            partition,
        };
        let target_of = (plan.target_topic.as_str(), partition);
        let producer = choose_writer(&shared, &client, &fresh, target_of, &slot, target.writer, target_end).await?;
        let tail = TargetTail::new(&plan.target_topic, partition, target.next_target_offset, target_end);
        let (tx, rx) = tokio::sync::mpsc::channel(capacity);
        senders.push(tx);
        writers.push(tokio::spawn(write_target(
            topic.clone(),
            partition,
            producer,
            tail,
            target_end,
            rx,
        )));
    }
    let merged = merge_and_route(&shared, &plan, &recorded, &topic, &senders).await;
    drop(senders);
    if !matches!(merged, Ok(true)) {
        // Not the sequence's end (the merge failed, or a writer stopped): the open batches
        // must not be cut here.
        for writer in &writers {
            writer.abort();
        }
    }
    let mut first_error = merged.err();
    for writer in writers {
        match writer.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) if e.is_cancelled() => {}
            Err(e) => {
                first_error.get_or_insert(CliError::Locked(format!("restore task failed: {e}")));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let pending = topic.sequence.lock().await.pending();
    if pending > 0 {
        return Err(CliError::Locked(format!(
            "restore {}: {pending} records of {} were routed but never acknowledged",
            options.restore_id, plan.topic
        )));
    }
    let mut guard = shared.progress.lock().await;
    let r = guard
        .0
        .reshaped
        .get_mut(&plan.topic)
        .expect("prepared before the tasks");
    r.done = true;
    for t in r.targets.values_mut() {
        t.done = true;
    }
    shared
        .metrics
        .partitions_done
        .fetch_add(partitions as u64, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// The merge loop: every record of the rest of the sequence, routed to its target's writer.
/// `Ok(true)` at the sequence's end; `Ok(false)` early when a writer stopped (the writer's
/// error is reported).
async fn merge_and_route(
    shared: &Shared,
    plan: &ReshapePlan,
    recorded: &ReshapedProgress,
    topic: &TopicWrite,
    senders: &[tokio::sync::mpsc::Sender<Routed>],
) -> Result<bool, CliError> {
    let options = &shared.options;
    let share = options.memory_budget / (options.parallelism.max(1) * plan.sources.len().max(1)) as u64;
    let mut sources = Vec::new();
    for source in &plan.sources {
        let from = recorded.sources.get(&source.partition).map_or(i64::MIN, |o| o + 1);
        sources.push((source.partition, SourceRecords::new(shared, source, from, share)?));
    }
    let mut merge = Merge::new(sources).await?;
    let mut index = recorded.sequenced;
    // The sequence's bytes up to the prefix: what its records brought to the targets.
    let mut sequence_bytes: u64 = recorded.targets.values().map(|t| t.bytes).sum();
    let mut chunk: Vec<(Entry, RoutedRecord)> = Vec::with_capacity(ROUTE_CHUNK);
    let cut_every = cut_bytes(plan.target_partitions);
    loop {
        let next = merge.next().await?;
        let mut cut = false;
        if let Some((source_partition, record)) = &next {
            let target = options.repartition.target_partition(
                record.key.as_deref(),
                *source_partition,
                record.offset,
                plan.target_partitions,
            );
            let produced = produce_record(record, *source_partition, options.include_offset_headers);
            let bytes = record_bytes(&produced);
            let entry = Entry {
                source_partition: *source_partition,
                source_offset: record.offset,
                target_partition: target,
                bytes,
                target_offset: None,
            };
            chunk.push((
                entry,
                RoutedRecord {
                    index,
                    source_partition: *source_partition,
                    source_offset: record.offset,
                    record: produced,
                },
            ));
            index += 1;
            cut = (sequence_bytes + bytes) / cut_every > sequence_bytes / cut_every;
            sequence_bytes += bytes;
        }
        if (cut || next.is_none() || chunk.len() >= ROUTE_CHUNK) && !route_chunk(topic, senders, &mut chunk).await {
            return Ok(false);
        }
        if cut {
            for sender in senders {
                if sender.send(Routed::Cut).await.is_err() {
                    return Ok(false);
                }
            }
        }
        if next.is_none() {
            return Ok(true);
        }
    }
}

/// Puts `chunk`'s records into the sequence (before any writer can report them written), then
/// sends each target partition its share, in order. `false` when a writer stopped.
async fn route_chunk(
    topic: &TopicWrite,
    senders: &[tokio::sync::mpsc::Sender<Routed>],
    chunk: &mut Vec<(Entry, RoutedRecord)>,
) -> bool {
    let mut shares: Vec<Vec<RoutedRecord>> = senders.iter().map(|_| Vec::new()).collect();
    {
        let mut sequence = topic.sequence.lock().await;
        for (entry, routed) in chunk.drain(..) {
            let pushed = sequence.push(entry);
            debug_assert_eq!(pushed, routed.index);
            shares[entry.target_partition as usize].push(routed);
        }
    }
    for (sender, share) in senders.iter().zip(shares) {
        if !share.is_empty() && sender.send(Routed::Records(share)).await.is_err() {
            return false;
        }
    }
    true
}
