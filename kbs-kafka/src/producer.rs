//! The write path: an idempotent producer (see [`IdempotentProducer`]).

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest, TopicName};
use tokio::sync::{Notify, Semaphore};

use crate::batch::{self, Codec};
use crate::client::KafkaClient;
use crate::config::RetryConfig;
use crate::error::{Error, ErrorCode, Result};
use crate::protocol::str_bytes;
use crate::record::ProduceRecord;

/// Acknowledgement level (Kafka's `acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Acks {
    /// The write is acknowledged once every in-sync replica has it (`acks=all`).
    #[default]
    All,
    /// The write is acknowledged once the leader has it (`acks=1`); weaker durability.
    Leader,
}

/// Compression of produced batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ProducerCompression {
    /// No compression.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// snappy (xerial framing, as the Java client writes).
    Snappy,
    /// LZ4 frame.
    Lz4,
    /// zstd.
    Zstd,
}

impl ProducerCompression {
    fn codec(self) -> Codec {
        match self {
            ProducerCompression::None => Codec::None,
            ProducerCompression::Gzip => Codec::Gzip,
            ProducerCompression::Snappy => Codec::Snappy,
            ProducerCompression::Lz4 => Codec::Lz4,
            ProducerCompression::Zstd => Codec::Zstd,
        }
    }
}

/// Producer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProducerConfig {
    /// Acknowledgement level; default [`Acks::All`].
    pub acks: Acks,
    /// Batch compression; default none.
    pub compression: ProducerCompression,
    /// Batches of one partition on the wire at once, 1 to 5 (Kafka deduplicates the last five
    /// batches per producer and partition); default 5.
    pub max_in_flight_per_partition: usize,
    /// How long the broker may take to replicate a write, and how long to wait for its answer
    /// (plus the client's request timeout); default 30 s.
    pub request_timeout: Duration,
    /// Retries of retriable failures; default [`RetryConfig::default`].
    pub retry: RetryConfig,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::All,
            compression: ProducerCompression::None,
            max_in_flight_per_partition: 5,
            request_timeout: Duration::from_secs(30),
            retry: RetryConfig::default(),
        }
    }
}

impl ProducerConfig {
    /// Sets the compression.
    pub fn with_compression(mut self, compression: ProducerCompression) -> ProducerConfig {
        self.compression = compression;
        self
    }
}

/// The broker's acknowledgement of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProduceAck {
    /// Offset of the batch's first record; `None` only when a resend was answered
    /// `DUPLICATE_SEQUENCE_NUMBER` without the original offset.
    pub base_offset: Option<i64>,
    /// Records in the batch (the offsets are `base_offset..base_offset + record_count`).
    pub record_count: usize,
    /// The broker's append time, when the topic uses `LogAppendTime`.
    pub log_append_time: Option<i64>,
}

/// An idempotent Kafka producer. Cheap to clone; clones share the producer id and sequences.
///
/// # Ordering and retries
///
/// Every [`IdempotentProducer::produce`] call becomes one record batch with the partition's
/// next sequence number, assigned when the call is made. Batches of a partition go on the wire
/// in call order, up to `max_in_flight_per_partition` at a time. A batch that fails with a
/// retriable error (connection lost, timeout, leader change, or `OUT_OF_ORDER_SEQUENCE_NUMBER`
/// caused by an earlier batch that failed) waits until every earlier batch of its partition has
/// finished, then resends the *same bytes with the same sequence* to the current leader, so the
/// broker writes it exactly once. `DUPLICATE_SEQUENCE_NUMBER` on a resend means the first send
/// was written: the call succeeds, with the offset unknown if the broker did not report it.
///
/// # Failures
///
/// A batch the broker rejects for good (`OUT_OF_ORDER_SEQUENCE_NUMBER` with nothing earlier in
/// flight, `UNKNOWN_PRODUCER_ID`, `INVALID_PRODUCER_EPOCH`, `PRODUCER_FENCED`, any other
/// non-retriable code, or retries exhausted) leaves a hole in the partition's sequence. The
/// partition then *fails*: that call and every later call for the partition on this producer
/// return [`Error::ProducerFailed`]; nothing is reordered or written twice. Batches that
/// already succeeded stay acknowledged. To continue, create a new producer (new producer id,
/// sequences from 0) and read the partition's end offset to learn what was written.
#[derive(Clone)]
pub struct IdempotentProducer {
    inner: Arc<ProducerInner>,
}

impl std::fmt::Debug for IdempotentProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotentProducer")
            .field("producer_id", &self.inner.producer_id)
            .field("producer_epoch", &self.inner.producer_epoch)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

struct ProducerInner {
    client: KafkaClient,
    config: ProducerConfig,
    producer_id: i64,
    producer_epoch: i16,
    lanes: Mutex<HashMap<(String, i32), Arc<Lane>>>,
}

/// The ordering state of one partition.
struct Lane {
    state: Mutex<LaneState>,
    changed: Notify,
    in_flight: Semaphore,
}

struct LaneState {
    next_sequence: i32,
    next_ticket: u64,
    /// The ticket whose turn it is to go on the wire.
    sending: u64,
    /// Tickets not finished yet.
    unfinished: BTreeSet<u64>,
    /// Why the partition failed, once it has.
    failed: Option<Failure>,
}

/// The first failure of a partition, repeated to every later call.
#[derive(Debug, Clone)]
struct Failure {
    reason: String,
    code: Option<ErrorCode>,
}

impl Failure {
    fn error(&self, topic: &str, partition: i32) -> Error {
        Error::ProducerFailed {
            topic: topic.to_owned(),
            partition,
            reason: self.reason.clone(),
            code: self.code,
        }
    }
}

impl Lane {
    fn lock(&self) -> std::sync::MutexGuard<'_, LaneState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `condition` holds for the lane state.
    async fn wait_until(&self, condition: impl Fn(&LaneState) -> bool) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if condition(&self.lock()) {
                return;
            }
            notified.await;
        }
    }
}

fn check_config(config: &ProducerConfig) -> Result<()> {
    if !(1..=5).contains(&config.max_in_flight_per_partition) {
        return Err(Error::Config {
            reason: format!(
                "max_in_flight_per_partition is {}; idempotence allows 1 to 5",
                config.max_in_flight_per_partition
            ),
        });
    }
    if config.retry.attempts == 0 {
        return Err(Error::Config {
            reason: "retry.attempts must be at least 1".into(),
        });
    }
    Ok(())
}

/// Kafka's sequence arithmetic: sequences wrap from `i32::MAX` to 0.
fn next_sequence(sequence: i32, count: i32) -> i32 {
    ((i64::from(sequence) + i64::from(count)) % (i64::from(i32::MAX) + 1)) as i32
}

impl IdempotentProducer {
    /// Creates a producer: gets a producer id (InitProducerId) from the cluster.
    pub async fn new(client: KafkaClient, config: ProducerConfig) -> Result<IdempotentProducer> {
        check_config(&config)?;
        let (producer_id, producer_epoch) = client
            .retry("InitProducerId", |_| async {
                let connection = client.any_connection().await?;
                let version = connection.version::<InitProducerIdRequest>()?;
                let mut request = InitProducerIdRequest::default();
                request.transactional_id = None;
                request.transaction_timeout_ms = i32::MAX;
                let response = connection.call(&request, version).await?;
                if let Some(code) = ErrorCode::check(response.error_code) {
                    return Err(Error::Broker {
                        api: "InitProducerId",
                        code,
                        message: None,
                    });
                }
                Ok((response.producer_id.0, response.producer_epoch))
            })
            .await?;
        tracing::debug!(producer_id, producer_epoch, "idempotent producer ready");
        Ok(IdempotentProducer::with_identity(
            client,
            config,
            producer_id,
            producer_epoch,
        ))
    }

    /// Continues an earlier producer, typically one of a process that was killed: the same
    /// producer id and epoch, without asking the cluster for a new one. With
    /// [`continue_sequence`](Self::continue_sequence) set to where the earlier producer's
    /// records in a partition's log end (the high watermark), a batch it sent but never saw
    /// acknowledged (appended above the high watermark, or still queued at the broker) and
    /// the same batch sent again by this producer are written once: the leader recognises the
    /// sequence numbers (it remembers each producer's last five batches per partition).
    /// Batches must then be cut at the same records as the earlier producer cut them; one that
    /// is not is refused (OUT_OF_ORDER_SEQUENCE_NUMBER), never written twice.
    ///
    /// A producer id the partition's leader no longer knows (its state expires after the
    /// broker's `producer.id.expiration.ms`) takes only sequence 0 there.
    pub fn resume(
        client: KafkaClient,
        config: ProducerConfig,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<IdempotentProducer> {
        check_config(&config)?;
        tracing::debug!(producer_id, producer_epoch, "idempotent producer resumed");
        Ok(IdempotentProducer::with_identity(
            client,
            config,
            producer_id,
            producer_epoch,
        ))
    }

    fn with_identity(client: KafkaClient, config: ProducerConfig, producer_id: i64, producer_epoch: i16) -> Self {
        IdempotentProducer {
            inner: Arc::new(ProducerInner {
                client,
                config,
                producer_id,
                producer_epoch,
                lanes: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Sets the sequence number of this producer's next record to `topic`/`partition` (0 by
    /// default): for a [`resume`](Self::resume)d producer, the number of its records already in
    /// the partition's log. Only before the first batch to that partition.
    pub fn continue_sequence(&self, topic: &str, partition: i32, next_sequence: i32) -> Result<()> {
        if next_sequence < 0 {
            return Err(Error::Config {
                reason: format!("sequence {next_sequence} for {topic}/{partition} is negative"),
            });
        }
        let lane = self.lane(topic, partition);
        let mut state = lane.lock();
        if state.next_ticket > 0 {
            return Err(Error::Config {
                reason: format!("{topic}/{partition} already has batches; its sequence cannot be set"),
            });
        }
        state.next_sequence = next_sequence;
        Ok(())
    }

    /// The ordering state of `topic`/`partition`, made on first use.
    fn lane(&self, topic: &str, partition: i32) -> Arc<Lane> {
        let mut lanes = self.inner.lanes.lock().unwrap_or_else(|p| p.into_inner());
        lanes
            .entry((topic.to_owned(), partition))
            .or_insert_with(|| {
                Arc::new(Lane {
                    state: Mutex::new(LaneState {
                        next_sequence: 0,
                        next_ticket: 0,
                        sending: 0,
                        unfinished: BTreeSet::new(),
                        failed: None,
                    }),
                    changed: Notify::new(),
                    in_flight: Semaphore::new(self.inner.config.max_in_flight_per_partition),
                })
            })
            .clone()
    }

    /// The producer id the cluster assigned.
    pub fn producer_id(&self) -> i64 {
        self.inner.producer_id
    }

    /// The producer epoch the cluster assigned.
    pub fn producer_epoch(&self) -> i16 {
        self.inner.producer_epoch
    }

    /// Writes `records` to `topic`/`partition` as one batch. The sequence number is taken when
    /// this function is called (not when the future is first polled), so calls for the same
    /// partition are written in call order; the returned futures may be awaited in any order,
    /// concurrently. The batch is sent even if the future is dropped. Must be called within a
    /// tokio runtime.
    pub fn produce(
        &self,
        topic: &str,
        partition: i32,
        records: &[ProduceRecord],
    ) -> impl Future<Output = Result<ProduceAck>> + Send + 'static {
        let started = self.start(topic, partition, records);
        async move {
            match started {
                Ok(task) => task.await.unwrap_or_else(|e| {
                    Err(Error::Connection {
                        broker: "produce task".into(),
                        reason: format!("ended: {e}"),
                    })
                }),
                Err(e) => Err(e),
            }
        }
    }

    fn start(
        &self,
        topic: &str,
        partition: i32,
        records: &[ProduceRecord],
    ) -> Result<tokio::task::JoinHandle<Result<ProduceAck>>> {
        let invalid = |reason: String| Error::InvalidBatch {
            topic: topic.to_owned(),
            partition,
            reason,
        };
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| invalid("IdempotentProducer::produce must be called within a tokio runtime".into()))?;
        let unsealed = batch::encode_batch(records, self.inner.config.compression.codec())
            .map_err(|fault| invalid(fault.to_string()))?;
        let lane = self.lane(topic, partition);
        let record_count = unsealed.record_count();
        let (ticket, sequence) = {
            let mut state = lane.lock();
            if let Some(failure) = &state.failed {
                return Err(failure.error(topic, partition));
            }
            let ticket = state.next_ticket;
            state.next_ticket += 1;
            let sequence = state.next_sequence;
            state.next_sequence = next_sequence(sequence, record_count);
            state.unfinished.insert(ticket);
            (ticket, sequence)
        };
        let batch = unsealed.seal(self.inner.producer_id, self.inner.producer_epoch, sequence);
        let job = Job {
            producer: self.inner.clone(),
            lane,
            ticket,
            topic: topic.to_owned(),
            partition,
            batch,
            record_count: record_count as usize,
            failure: None,
            finished: false,
        };
        Ok(runtime.spawn(job.run()))
    }
}

/// One produce call on its way.
struct Job {
    producer: Arc<ProducerInner>,
    lane: Arc<Lane>,
    ticket: u64,
    topic: String,
    partition: i32,
    batch: Bytes,
    record_count: usize,
    /// Why the job failed, once it has.
    failure: Option<Failure>,
    /// Whether `run` completed (a job dropped unfinished fails its partition).
    finished: bool,
}

/// How an attempt ended.
enum Attempt {
    Acked(ProduceAck),
    /// Worth resending once earlier batches are done.
    Retry(Error),
    /// The partition's sequence is broken.
    Fatal(Error),
}

impl Drop for Job {
    /// Releases the job's place in its lane however it ended (a panic included), so later
    /// batches are never left waiting for it.
    fn drop(&mut self) {
        {
            let mut state = self.lane.lock();
            state.unfinished.remove(&self.ticket);
            if state.sending == self.ticket {
                // Never went on the wire: let the next batch have its turn.
                state.sending += 1;
            }
            if state.failed.is_none() {
                state.failed = match (&self.failure, self.finished) {
                    (Some(failure), _) => Some(failure.clone()),
                    (None, false) => Some(Failure {
                        reason: "the produce task stopped unexpectedly".to_owned(),
                        code: None,
                    }),
                    (None, true) => None,
                };
            }
        }
        self.lane.changed.notify_waiters();
    }
}

impl Job {
    async fn run(mut self) -> Result<ProduceAck> {
        let result = self.drive().await;
        self.finished = true;
        match result {
            Ok(ack) => Ok(ack),
            Err(e) => {
                let failure = match e {
                    Error::ProducerFailed { reason, code, .. } => Failure { reason, code },
                    e => Failure {
                        reason: e.to_string(),
                        code: e.code(),
                    },
                };
                let error = failure.error(&self.topic, self.partition);
                self.failure = Some(failure);
                Err(error)
            }
        }
    }

    /// The partition's failure, if it has failed.
    fn failed(&self) -> Option<Error> {
        self.lane
            .lock()
            .failed
            .as_ref()
            .map(|f| f.error(&self.topic, self.partition))
    }

    async fn drive(&self) -> Result<ProduceAck> {
        let ticket = self.ticket;
        self.lane.wait_until(|s| s.sending == ticket).await;
        // Acquired in turn order; released when this job ends.
        let _permit = self.lane.in_flight.acquire().await.map_err(|_| {
            Failure {
                reason: "lane closed".into(),
                code: None,
            }
            .error(&self.topic, self.partition)
        })?;
        if let Some(failed) = self.failed() {
            return Err(failed);
        }
        let policy = self.producer.config.retry;
        // First send, still holding the turn so nothing later overtakes it.
        let mut attempt = 1;
        let mut pending = loop {
            match self.send().await {
                Ok(pending) => break pending,
                Err(e) if e.is_retriable() && attempt < policy.attempts => {
                    tokio::time::sleep(policy.delay(attempt)).await;
                    self.producer.client.invalidate(&self.topic);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        };
        {
            let mut state = self.lane.lock();
            state.sending += 1;
        }
        self.lane.changed.notify_waiters();
        loop {
            let outcome = self.outcome(pending.await).await;
            let error = match outcome {
                Attempt::Acked(ack) => return Ok(ack),
                Attempt::Fatal(e) => return Err(e),
                Attempt::Retry(e) => e,
            };
            if attempt >= policy.attempts {
                return Err(Error::RetriesExhausted {
                    operation: format!("Produce to {}/{}", self.topic, self.partition),
                    attempts: attempt,
                    last: Box::new(error),
                });
            }
            tracing::debug!(topic = %self.topic, partition = self.partition, "resending batch");
            self.producer
                .client
                .note_retry("Produce", &error, attempt, policy.delay(attempt));
            // Resend only once every earlier batch of the partition has finished, so resends
            // reach the broker in sequence order.
            self.lane.wait_until(|s| s.unfinished.first() == Some(&ticket)).await;
            if let Some(failed) = self.failed() {
                return Err(failed);
            }
            tokio::time::sleep(policy.delay(attempt)).await;
            self.producer.client.invalidate(&self.topic);
            attempt += 1;
            pending = match self.send().await {
                Ok(pending) => pending,
                Err(e) => Box::pin(std::future::ready(Err(e))),
            };
        }
    }

    /// Puts the batch on the wire to the current leader; the future waits for the answer.
    async fn send(&self) -> Result<PendingProduce> {
        let client = &self.producer.client;
        let route = client.route(&self.topic, self.partition).await?;
        let connection = client.connection_to(route.leader).await?;
        let version = connection.version::<ProduceRequest>()?;
        let config = &self.producer.config;
        let mut partition = PartitionProduceData::default();
        partition.index = self.partition;
        partition.records = Some(self.batch.clone());
        let mut topic = TopicProduceData::default();
        topic.name = TopicName(str_bytes(&self.topic));
        topic.partition_data = vec![partition];
        let mut request = ProduceRequest::default();
        request.acks = match config.acks {
            Acks::All => -1,
            Acks::Leader => 1,
        };
        request.timeout_ms = i32::try_from(config.request_timeout.as_millis()).unwrap_or(i32::MAX);
        request.topic_data = vec![topic];
        let timeout = config.request_timeout + client.inner.config.request_timeout;
        connection.throttle_pause().await;
        let pending = connection.send(&request, version, timeout)?;
        tracing::debug!(
            topic = %self.topic,
            partition = self.partition,
            producer_id = self.producer.producer_id,
            records = self.record_count,
            "batch sent"
        );
        Ok(Box::pin(pending.wait()))
    }

    async fn outcome(&self, response: Result<kafka_protocol::messages::ProduceResponse>) -> Attempt {
        let response = match response {
            Ok(r) => r,
            Err(e) if e.is_retriable() => return Attempt::Retry(e),
            Err(e) => return Attempt::Fatal(e),
        };
        let answer = response
            .responses
            .iter()
            .filter(|t| t.name.0.as_str() == self.topic)
            .flat_map(|t| t.partition_responses.iter())
            .find(|p| p.index == self.partition);
        let Some(answer) = answer else {
            return Attempt::Retry(Error::Protocol {
                broker: "the partition leader".into(),
                api: "Produce",
                reason: format!("no answer for {}/{}", self.topic, self.partition),
            });
        };
        let ack = ProduceAck {
            base_offset: (answer.base_offset >= 0).then_some(answer.base_offset),
            record_count: self.record_count,
            log_append_time: (answer.log_append_time_ms >= 0).then_some(answer.log_append_time_ms),
        };
        let Some(code) = ErrorCode::check(answer.error_code) else {
            return Attempt::Acked(ack);
        };
        let error = Error::Partition {
            api: "Produce",
            topic: self.topic.clone(),
            partition: self.partition,
            code,
        };
        match code {
            ErrorCode::DUPLICATE_SEQUENCE_NUMBER => Attempt::Acked(ack),
            ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER => {
                // Expected while an earlier batch of the partition is being resent.
                let earlier_unfinished = self.lane.lock().unfinished.first().is_some_and(|&t| t < self.ticket);
                if earlier_unfinished {
                    Attempt::Retry(error)
                } else {
                    Attempt::Fatal(error)
                }
            }
            code if code.is_retriable() => Attempt::Retry(error),
            _ => Attempt::Fatal(error),
        }
    }
}

type PendingProduce = std::pin::Pin<Box<dyn Future<Output = Result<kafka_protocol::messages::ProduceResponse>> + Send>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_wrap_like_kafka() {
        assert_eq!(next_sequence(0, 5), 5);
        assert_eq!(next_sequence(i32::MAX - 1, 1), i32::MAX);
        assert_eq!(next_sequence(i32::MAX, 1), 0);
        assert_eq!(next_sequence(i32::MAX - 2, 5), 2);
    }
}
