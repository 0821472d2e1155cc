//! Which producer writes a target partition, so that a rerun never writes twice what an
//! interrupted run sent but never saw acknowledged.
//!
//! Every acknowledged batch is below the high watermark (the producer asks for acks=all), and
//! a rerun matches the records between its last saved progress and the high watermark against
//! the source. But a batch the interrupted run sent and never saw acknowledged may be
//!
//! * in the leader's log above the high watermark: appended, not yet copied by every in-sync
//!   replica (a lagging follower, a partition below `min.insync.replicas`); or
//! * still queued at the broker: Kafka reads a connection's next request only once it has
//!   answered the previous one, and an acks=all answer waits for the replicas, so the requests
//!   behind it wait in the socket and are appended later, after the sender is dead.
//!
//! Either kind becomes visible after the rerun read the target's end. Written again by a new
//! producer, it would be there twice. So the rerun writes with the interrupted run's producer:
//! the progress document names the producer each run writes a partition with and the offset of
//! its first record there ([`TargetWriter`], saved before that run's first batch), and the
//! rerun continues that producer id and epoch (`IdempotentProducer::resume`) with the sequence
//! number of the first record above the high watermark: `high watermark - first offset`, as an
//! idempotent producer numbers a partition's records from 0 and writes them at contiguous
//! offsets. The rerun cuts batches where the interrupted run cut them (the cut depends only on
//! the records from the batch's first one), so a batch of the interrupted run and the rerun's
//! copy carry the same sequence numbers, and the leader writes whichever arrives first and
//! answers the other as a duplicate. A batch cut differently (a rerun with other options) is
//! refused with OUT_OF_ORDER_SEQUENCE_NUMBER, never written twice.
//!
//! A partition's leader forgets a producer `producer.id.expiration.ms` (a day by default) after
//! its last write. A forgotten producer whose records are in the log can then no longer be
//! continued, and nothing of it can still be waiting: the rerun writes with a new producer.

use super::*;
use progress::{Slot, TargetWriter};

/// The producer to write target partition `topic`/`partition` with (its progress at `slot`),
/// `target_end` being its high watermark: the interrupted run's producer when there was one, else `fresh` (this run's own),
/// recorded durably in the progress document before anything is produced.
pub(super) async fn choose_writer(
    shared: &Shared,
    client: &KafkaClient,
    fresh: &IdempotentProducer,
    (topic, partition): (&str, i32),
    slot: &Slot,
    interrupted: Option<TargetWriter>,
    target_end: i64,
) -> Result<IdempotentProducer, CliError> {
    if let Some(writer) = interrupted
        && target_end >= writer.first_offset
        && still_known(client, topic, partition, writer, target_end).await?
    {
        let written = target_end - writer.first_offset;
        let sequence = (written % (1i64 << 31)) as i32;
        let producer = resumed_producer(shared, client, writer).await?;
        producer.continue_sequence(topic, partition, sequence)?;
        tracing::info!(
            "target {topic}/{partition}: continuing the interrupted run's producer {} at sequence {sequence}",
            writer.producer_id
        );
        return Ok(producer);
    }
    record_writer(
        shared,
        slot,
        TargetWriter {
            producer_id: fresh.producer_id(),
            producer_epoch: fresh.producer_epoch(),
            first_offset: target_end,
        },
    )
    .await?;
    Ok(fresh.clone())
}

/// Whether the interrupted run's producer can be continued on the partition: its leader still
/// has state for it, or the producer has no records there yet (sequence 0 is always taken).
async fn still_known(
    client: &KafkaClient,
    topic: &str,
    partition: i32,
    writer: TargetWriter,
    target_end: i64,
) -> Result<bool, CliError> {
    if target_end == writer.first_offset {
        return Ok(true);
    }
    match client.describe_producers(topic, partition).await {
        Ok(producers) => Ok(producers.iter().any(|p| p.producer_id == writer.producer_id)),
        // A broker without DescribeProducers (before Kafka 2.8): the producer was most likely
        // active within the day.
        Err(kbs_kafka::Error::UnsupportedVersion { .. }) => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// This run's handle on an interrupted run's producer (one per producer id, shared by the
/// partitions it wrote).
async fn resumed_producer(
    shared: &Shared,
    client: &KafkaClient,
    writer: TargetWriter,
) -> Result<IdempotentProducer, CliError> {
    let mut producers = shared.resumed_producers.lock().await;
    if let Some(producer) = producers.get(&writer.producer_id) {
        return Ok(producer.clone());
    }
    let config = ProducerConfig::default().with_compression(shared.options.compression);
    let producer = IdempotentProducer::resume(client.clone(), config, writer.producer_id, writer.producer_epoch)?;
    producers.insert(writer.producer_id, producer.clone());
    Ok(producer)
}

/// Records in the progress document, durably and before this run's first batch to the
/// partition, which producer writes it and where its first record goes. One save covers every
/// partition that recorded its writer before the save began.
async fn record_writer(shared: &Shared, slot: &Slot, writer: TargetWriter) -> Result<(), CliError> {
    use std::sync::atomic::Ordering;
    let mark = {
        let mut guard = shared.progress.lock().await;
        let p = guard.0.slot_mut(slot).expect("prepared before the tasks");
        p.writer = Some(writer);
        shared.writers_marked.fetch_add(1, Ordering::SeqCst) + 1
    };
    if shared.writers_saved.load(Ordering::SeqCst) < mark {
        shared.save_progress().await?;
    }
    Ok(())
}
