//! The writer of one target partition of a reshaped topic: it takes the records the merge
//! routed to its partition, in sequence order, skips (after matching them) those an interrupted
//! run already wrote, cuts them into batches at places that depend only on the sequence, and
//! produces them pipelined, reporting each record's target offset to the topic's [`Sequence`].
//!
//! [`Sequence`]: super::sequence::Sequence

use super::*;

/// A record routed to a target partition.
pub(super) struct RoutedRecord {
    /// Its sequence index.
    pub(super) index: u64,
    /// Where it comes from, for errors.
    pub(super) source_partition: i32,
    /// Its source offset.
    pub(super) source_offset: i64,
    /// The record as it is produced.
    pub(super) record: ProduceRecord,
}

/// What the merge sends a target partition's writer.
pub(super) enum Routed {
    /// The partition's next records, in sequence order.
    Records(Vec<RoutedRecord>),
    /// The sequence's bytes passed a multiple of [`cut_bytes`]: the open batch is produced now.
    Cut,
}

/// A batch on the wire.
struct Flight {
    indexes: Vec<u64>,
    bytes: u64,
    ack: std::pin::Pin<Box<dyn std::future::Future<Output = kbs_kafka::Result<kbs_kafka::ProduceAck>> + Send>>,
    _in_flight: tokio::sync::OwnedSemaphorePermit,
}

/// Writes target partition `partition`: `tail` is what an interrupted run wrote past the
/// acknowledged prefix, `next_offset` the partition's end (where the first produced record goes).
pub(super) async fn write_target(
    topic: Arc<TopicWrite>,
    partition: i32,
    producer: IdempotentProducer,
    mut tail: TargetTail,
    next_offset: i64,
    mut input: tokio::sync::mpsc::Receiver<Routed>,
) -> Result<(), CliError> {
    let mut writer = PartitionWriter {
        topic,
        partition,
        producer,
        in_flight: VecDeque::new(),
        next_offset,
        batch: OpenBatch::new(),
    };
    loop {
        // Acknowledgements are taken as they come, so the acknowledged prefix moves on while
        // this partition waits for its next records.
        let routed = writer.acknowledging(input.recv()).await?;
        let Some(routed) = routed else { break };
        let Routed::Records(records) = routed else {
            writer.flush().await?;
            continue;
        };
        for routed in records {
            writer.take(routed, &mut tail).await?;
        }
    }
    // The sequence ended (an aborted merge aborts this task instead, so this last cut is the
    // sequence's end in every run).
    writer.flush().await?;
    while let Some(mut flight) = writer.in_flight.pop_front() {
        let ack = flight.ack.as_mut().await?;
        writer.acknowledged(ack, flight.indexes, flight.bytes).await;
    }
    let left = tail.remaining(&writer.topic.client).await?;
    if left > 0 {
        return Err(CliError::Locked(format!(
            "target {}/{partition} holds up to {left} records after what restore {} wrote that match no remaining \
             source record",
            writer.topic.target_topic, writer.topic.shared.options.restore_id
        )));
    }
    Ok(())
}

/// One target partition's producing side: its open batch and its batches on the wire.
struct PartitionWriter {
    topic: Arc<TopicWrite>,
    partition: i32,
    producer: IdempotentProducer,
    in_flight: VecDeque<Flight>,
    /// Where the next produced record goes (for an answer without an offset).
    next_offset: i64,
    batch: OpenBatch<u64>,
}

impl PartitionWriter {
    /// Takes the partition's next record: matched against what an interrupted run left past the
    /// prefix (`tail`), or added to the open batch (produced first when it is full).
    async fn take(&mut self, routed: RoutedRecord, tail: &mut TargetTail) -> Result<(), CliError> {
        let RoutedRecord {
            index,
            source_partition,
            source_offset,
            record,
        } = routed;
        let (topic, partition) = (&self.topic, self.partition);
        if let Some(written) = tail.next(&topic.client).await? {
            // Written by the interrupted run: it must be exactly this record.
            if !same_record(&written, &record) {
                return Err(CliError::Locked(format!(
                    "target {}/{partition} offset {} does not hold source record {}/{source_partition}@{source_offset} \
                     that restore {} wrote there; something else writes to the target partition",
                    topic.target_topic, written.offset, topic.topic, topic.shared.options.restore_id
                )));
            }
            topic.written(&[index], written.offset).await;
            return Ok(());
        }
        let size = checked_wire_size(&record, topic.max_message_bytes, || {
            (
                format!("{}/{source_partition}@{source_offset}", topic.topic),
                format!("{}/{partition}", topic.target_topic),
            )
        })?;
        if self.batch.is_full_for(size, topic.batch_limit) {
            self.flush().await?;
        }
        self.batch.push(record, index, size);
        Ok(())
    }

    /// Produces the open batch, if it holds records.
    async fn flush(&mut self) -> Result<(), CliError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let (batch, indexes) = self.batch.take();
        let shared = self.topic.shared.clone();
        let bytes: u64 = batch.iter().map(record_bytes).sum();
        // Every wait below takes acknowledgements as they come: the acknowledged prefix moves
        // on, and the in-flight bytes this partition holds are given back while it waits.
        let wait = shared.reserve_rate(bytes).await;
        self.acknowledging(tokio::time::sleep(wait)).await?;
        while self.in_flight.len() >= 5 {
            let mut oldest = self.in_flight.pop_front().expect("non-empty");
            let ack = oldest.ack.as_mut().await?;
            self.acknowledged(ack, oldest.indexes, oldest.bytes).await;
        }
        // The batches of all the topic's partitions on the wire hold at most IN_FLIGHT_BYTES.
        let wire: usize = batch.iter().map(wire_size).sum();
        let permits = (wire >> 10).clamp(1, IN_FLIGHT_BYTES >> 10) as u32;
        let pool = self.topic.in_flight.clone();
        let permit = self
            .acknowledging(pool.acquire_many_owned(permits))
            .await?
            .map_err(|_| CliError::Locked("in-flight pool closed".into()))?;
        // Checked right before each batch leaves, as for a one-to-one restore.
        shared.fence.check(&shared.options.restore_id)?;
        let ack = self.producer.produce(&self.topic.target_topic, self.partition, &batch);
        self.in_flight.push_back(Flight {
            indexes,
            bytes,
            ack: Box::pin(ack),
            _in_flight: permit,
        });
        Ok(())
    }

    /// Runs `work` to its end, taking the answers to the batches on the wire as they come.
    async fn acknowledging<T>(&mut self, work: impl std::future::Future<Output = T>) -> Result<T, CliError> {
        tokio::pin!(work);
        loop {
            let ack = tokio::select! {
                biased;
                ack = oldest_ack(&mut self.in_flight) => ack?,
                done = &mut work => return Ok(done),
            };
            let flight = self.in_flight.pop_front().expect("an acknowledged flight");
            self.acknowledged(ack, flight.indexes, flight.bytes).await;
        }
    }

    /// Takes the broker's answer `ack` to the batch of the records at `indexes` (`bytes` of
    /// keys and values).
    async fn acknowledged(&mut self, ack: kbs_kafka::ProduceAck, indexes: Vec<u64>, bytes: u64) {
        // Offsets of one partition written by one idempotent producer are contiguous; a resend
        // answered DUPLICATE_SEQUENCE_NUMBER without its offset continues from the last one.
        let base = ack.base_offset.unwrap_or(self.next_offset);
        self.next_offset = base + indexes.len() as i64;
        self.topic.written(&indexes, base).await;
        let shared = &self.topic.shared;
        let mut produced = shared.produced.lock().await;
        produced.0 += indexes.len() as u64;
        produced.1 += bytes;
        drop(produced);
        let counted = std::sync::atomic::Ordering::Relaxed;
        shared.metrics.records.fetch_add(indexes.len() as u64, counted);
        shared.metrics.bytes.fetch_add(bytes, counted);
    }
}

/// The answer to the oldest batch on the wire (pending while none is).
async fn oldest_ack(in_flight: &mut VecDeque<Flight>) -> kbs_kafka::Result<kbs_kafka::ProduceAck> {
    match in_flight.front_mut() {
        Some(flight) => flight.ack.as_mut().await,
        None => std::future::pending().await,
    }
}
