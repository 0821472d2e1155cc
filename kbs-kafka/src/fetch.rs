//! The read path: Fetch and ListOffsets.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{FetchRequest as WireFetchRequest, ListOffsetsRequest, TopicName};
use uuid::Uuid;

use crate::batch::{self, AbortedTransaction, BatchFault, DecodeOptions};
use crate::client::KafkaClient;
use crate::error::{Error, ErrorCode, PartitionError, Result};
use crate::protocol::str_bytes;
use crate::record::Record;

/// Which records a fetch may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IsolationLevel {
    /// Only committed records: aborted transactions are dropped and nothing past the last
    /// stable offset is returned.
    #[default]
    ReadCommitted,
    /// Everything up to the high watermark, records of aborted transactions included
    /// (control records are still dropped).
    ReadUncommitted,
}

/// Where to read one partition from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FetchPosition {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// First offset wanted.
    pub offset: i64,
}

impl FetchPosition {
    /// `topic`/`partition` from `offset`.
    pub fn new(topic: impl Into<String>, partition: i32, offset: i64) -> FetchPosition {
        FetchPosition {
            topic: topic.into(),
            partition,
            offset,
        }
    }
}

/// A fetch of many partitions. Partitions are grouped by leader: one Fetch request per broker
/// carries all of that broker's partitions, and brokers are asked concurrently.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetchRequest {
    /// The partitions and offsets to read (each partition at most once).
    pub partitions: Vec<FetchPosition>,
    /// How long a broker may wait for `min_bytes` to accumulate. Keep it small while catching
    /// up: some brokers (tansu) hold every fetch for the full wait.
    pub max_wait: Duration,
    /// Bytes a broker should gather before answering early.
    pub min_bytes: i32,
    /// Limit on the bytes of one broker's response (the first batch is returned even if larger).
    pub max_bytes: i32,
    /// Limit on the bytes of one partition in a response.
    pub partition_max_bytes: i32,
    /// Isolation level.
    pub isolation: IsolationLevel,
}

impl FetchRequest {
    /// A read-committed fetch of `partitions` with 100 ms max wait, 1 byte min, 50 MiB per
    /// response and 10 MiB per partition.
    pub fn new(partitions: Vec<FetchPosition>) -> FetchRequest {
        FetchRequest {
            partitions,
            max_wait: Duration::from_millis(100),
            min_bytes: 1,
            max_bytes: 50 << 20,
            partition_max_bytes: 10 << 20,
            isolation: IsolationLevel::ReadCommitted,
        }
    }

    /// Sets the maximum wait.
    pub fn with_max_wait(mut self, max_wait: Duration) -> FetchRequest {
        self.max_wait = max_wait;
        self
    }

    /// Sets the isolation level.
    pub fn with_isolation(mut self, isolation: IsolationLevel) -> FetchRequest {
        self.isolation = isolation;
        self
    }
}

/// What one partition returned.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionFetch {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Records at or after the fetch offset, in offset order, control records and aborted
    /// transactional records removed.
    pub records: Vec<Record>,
    /// Where to fetch next: one past the last complete batch read, even when all its records
    /// were filtered out (control batches, aborted transactions, compacted batches). Equal to
    /// the fetch offset when nothing complete arrived.
    pub next_offset: i64,
    /// The partition's high watermark (end of the committed log), `-1` if not sent.
    pub high_watermark: i64,
    /// The last stable offset (end of what read-committed readers may see), `-1` if not sent.
    pub last_stable_offset: i64,
    /// The first offset still in the log, `-1` if not sent.
    pub log_start_offset: i64,
    /// A problem with this partition; `records` still holds what came before it.
    pub error: Option<PartitionError>,
    /// Where Kafka's record batches end in `records`: for each batch that contributed records,
    /// the index one past its last record. Splitting `records` only at these points keeps
    /// batches whole, so a later fetch can start at a batch boundary.
    pub batch_ends: Vec<usize>,
}

/// Which offset [`KafkaClient::list_offsets`] looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OffsetSpec {
    /// The first offset in the log.
    Earliest,
    /// The end of the log (the high watermark; the next offset to be written).
    Latest,
    /// The end of the log as a `read_committed` consumer sees it: the last stable offset, below
    /// the first record of any transaction still open (equal to [`OffsetSpec::Latest`] when
    /// none is). Asked with ListOffsets' `isolation_level` 1 (READ_COMMITTED, version 2+).
    LastStable,
    /// The first offset whose timestamp is at or after this one (milliseconds).
    Timestamp(i64),
}

/// The answer for one partition of [`KafkaClient::list_offsets`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionOffset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// What was asked.
    pub spec: OffsetSpec,
    /// The offset; `None` when no record has a timestamp at or after the one asked.
    pub offset: Option<i64>,
    /// For a timestamp query, the timestamp of the record found; `-1` otherwise.
    pub timestamp: i64,
}

/// One partition of a broker's fetch.
struct Item {
    index: usize,
    topic: String,
    partition: i32,
    offset: i64,
    leader_epoch: i32,
    topic_id: Uuid,
}

enum Outcome {
    Done(PartitionFetch),
    Retry(Error),
    /// Only part of the first batch arrived because the response's byte budget ran out before
    /// this partition; asked alone (first in its request) the broker must send a whole batch.
    AskAlone(PartitionFetch),
}

impl KafkaClient {
    /// Fetches records from many partitions at once; see [`FetchRequest`]. Retriable problems
    /// (leader moved, connection lost, ...) are retried inside; per-partition problems that
    /// remain come back in [`PartitionFetch::error`]. Results are in request order.
    pub async fn fetch(&self, request: &FetchRequest) -> Result<Vec<PartitionFetch>> {
        let mut seen = std::collections::HashSet::new();
        for p in &request.partitions {
            if !seen.insert((p.topic.as_str(), p.partition)) {
                return Err(Error::Config {
                    reason: format!("{}/{} appears twice in one fetch", p.topic, p.partition),
                });
            }
        }
        let mut results: Vec<Option<PartitionFetch>> = vec![None; request.partitions.len()];
        let mut pending: Vec<usize> = (0..request.partitions.len()).collect();
        let policy = self.inner.config.retry;
        let mut attempt = 1;
        let mut alone: std::collections::HashSet<usize> = std::collections::HashSet::new();
        loop {
            let mut retry: Vec<(usize, Error)> = Vec::new();
            let mut next_round: Vec<usize> = Vec::new();
            // Requests: one per broker, plus one per partition to be asked alone.
            let mut by_broker: BTreeMap<(i32, usize), Vec<Item>> = BTreeMap::new();
            for &index in &pending {
                let position = &request.partitions[index];
                let key = |leader: i32| (leader, if alone.contains(&index) { index + 1 } else { 0 });
                match self.route(&position.topic, position.partition).await {
                    Ok(route) => by_broker.entry(key(route.leader)).or_default().push(Item {
                        index,
                        topic: position.topic.clone(),
                        partition: position.partition,
                        offset: position.offset,
                        leader_epoch: route.leader_epoch,
                        topic_id: route.topic_id,
                    }),
                    Err(e) if e.is_retriable() => retry.push((index, e)),
                    Err(Error::UnknownTopic { .. } | Error::UnknownPartition { .. }) => {
                        results[index] = Some(failed(position, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION));
                    }
                    Err(e) => return Err(e),
                }
            }
            let mut tasks = Vec::new();
            for ((node, _), items) in by_broker {
                let client = self.clone();
                let params = Params::from(request, self.inner.config.max_decompressed_batch_bytes);
                let indexes: Vec<usize> = items.iter().map(|i| i.index).collect();
                tasks.push((
                    indexes,
                    tokio::spawn(async move { client.fetch_from(node, items, params).await }),
                ));
            }
            for (indexes, task) in tasks {
                let outcome = task.await.unwrap_or_else(|e| {
                    Err(Error::Connection {
                        broker: "fetch task".into(),
                        reason: format!("panicked: {e}"),
                    })
                });
                match outcome {
                    Ok(outcomes) => {
                        for (index, outcome) in outcomes {
                            match outcome {
                                Outcome::Done(fetch) => results[index] = Some(fetch),
                                Outcome::Retry(e) => retry.push((index, e)),
                                Outcome::AskAlone(fetch) if alone.contains(&index) => results[index] = Some(fetch),
                                Outcome::AskAlone(fetch) => {
                                    // Kept in case the retries run out before it is asked again.
                                    results[index] = Some(fetch);
                                    alone.insert(index);
                                    next_round.push(index);
                                }
                            }
                        }
                    }
                    Err(e) if e.is_retriable() => retry.extend(indexes.into_iter().map(|i| (i, clone_error(&e)))),
                    Err(e) => return Err(e),
                }
            }
            if retry.is_empty() {
                if next_round.is_empty() {
                    break;
                }
                pending = next_round;
                continue;
            }
            if attempt >= policy.attempts {
                let (index, last) = retry.swap_remove(0);
                if let Some(code) = last.code() {
                    results[index] = Some(failed(&request.partitions[index], code));
                    for (index, e) in retry {
                        results[index] = Some(failed(&request.partitions[index], e.code().unwrap_or(code)));
                    }
                    break;
                }
                return Err(Error::RetriesExhausted {
                    operation: "Fetch".into(),
                    attempts: attempt,
                    last: Box::new(last),
                });
            }
            tracing::debug!(attempt, partitions = retry.len(), "retrying fetch");
            self.note_retry("Fetch", &retry[0].1, attempt, policy.delay(attempt));
            for (index, _) in &retry {
                self.invalidate(&request.partitions[*index].topic);
            }
            tokio::time::sleep(policy.delay(attempt)).await;
            attempt += 1;
            pending = retry.into_iter().map(|(i, _)| i).chain(next_round).collect();
        }
        // Fill in log start / high watermark for out-of-range partitions when the broker
        // did not send them (Kafka sends -1 with OFFSET_OUT_OF_RANGE).
        for result in results.iter_mut().flatten() {
            if let Some(PartitionError::OffsetOutOfRange {
                log_start_offset,
                high_watermark,
                ..
            }) = &mut result.error
                && (*log_start_offset < 0 || *high_watermark < 0)
            {
                let (topic, partition) = (result.topic.as_str(), result.partition);
                let offsets = self
                    .list_offsets(&[
                        (topic, partition, OffsetSpec::Earliest),
                        (topic, partition, OffsetSpec::Latest),
                    ])
                    .await?;
                *log_start_offset = offsets[0].offset.unwrap_or(-1);
                *high_watermark = offsets[1].offset.unwrap_or(-1);
                result.log_start_offset = *log_start_offset;
                result.high_watermark = *high_watermark;
            }
        }

        // Every index got a result: routing failures, outcomes and exhausted retries all set one.
        Ok(results
            .into_iter()
            .zip(&request.partitions)
            .map(|(r, p)| r.unwrap_or_else(|| failed(p, ErrorCode(-1))))
            .collect())
    }

    async fn fetch_from(&self, node: i32, items: Vec<Item>, params: Params) -> Result<Vec<(usize, Outcome)>> {
        let connection = self.connection_to(node).await?;
        let mut version = connection.version::<WireFetchRequest>()?;
        if version >= 13 && items.iter().any(|i| i.topic_id.is_nil()) {
            // Topic ids unknown (metadata older than v10): names work up to Fetch v12.
            version = 12;
        }
        let mut request = WireFetchRequest::default();
        request.max_wait_ms = i32::try_from(params.max_wait.as_millis()).unwrap_or(i32::MAX);
        request.min_bytes = params.min_bytes;
        request.max_bytes = params.max_bytes;
        request.isolation_level = match params.isolation {
            IsolationLevel::ReadCommitted => 1,
            IsolationLevel::ReadUncommitted => 0,
        };
        let mut topics: Vec<FetchTopic> = Vec::new();
        for item in &items {
            let mut partition = FetchPartition::default();
            partition.partition = item.partition;
            partition.fetch_offset = item.offset;
            partition.partition_max_bytes = params.partition_max_bytes;
            if version >= 9 {
                partition.current_leader_epoch = item.leader_epoch;
            }
            let same = |t: &FetchTopic| {
                if version >= 13 {
                    t.topic_id == item.topic_id
                } else {
                    t.topic.0.as_str() == item.topic
                }
            };
            match topics.iter_mut().find(|t| same(t)) {
                Some(t) => t.partitions.push(partition),
                None => {
                    let mut t = FetchTopic::default();
                    if version >= 13 {
                        t.topic_id = item.topic_id;
                    } else {
                        t.topic = TopicName(str_bytes(&item.topic));
                    }
                    t.partitions.push(partition);
                    topics.push(t);
                }
            }
        }
        request.topics = topics;
        let timeout = self.inner.config.request_timeout + params.max_wait;
        connection.throttle_pause().await;
        let response = connection.send(&request, version, timeout)?.wait().await?;
        if let Some(code) = ErrorCode::check(response.error_code) {
            return Err(Error::Broker {
                api: "Fetch",
                code,
                message: None,
            });
        }
        let broker = connection.broker().to_owned();
        let mut by_key: HashMap<(&str, i32), &PartitionData> = HashMap::new();
        let mut names: HashMap<Uuid, &str> = HashMap::new();
        for item in &items {
            names.insert(item.topic_id, &item.topic);
        }
        for topic in &response.responses {
            let name: &str = if version >= 13 {
                match names.get(&topic.topic_id) {
                    Some(n) => n,
                    None => continue,
                }
            } else {
                topic.topic.0.as_str()
            };
            for p in &topic.partitions {
                by_key.insert((name, p.partition_index), p);
            }
        }
        let mut out = Vec::with_capacity(items.len());
        for (position, item) in items.iter().enumerate() {
            let outcome = match by_key.get(&(item.topic.as_str(), item.partition)) {
                // items[0] opened the request's first topic, so it is the first partition.
                Some(data) => partition_outcome(&item.topic, item.partition, item.offset, data, &params, position == 0),
                None => Outcome::Retry(Error::Protocol {
                    broker: broker.clone(),
                    api: "Fetch",
                    reason: format!("no answer for {}/{}", item.topic, item.partition),
                }),
            };
            out.push((item.index, outcome));
        }
        Ok(out)
    }

    /// Looks up offsets: earliest, latest (the high watermark) or by timestamp, for many
    /// partitions at once (one request per leader). Retriable errors are retried; a
    /// partition that keeps failing fails the call with [`Error::Partition`].
    /// Some Kafka-compatible brokers (tansu 0.6) answer `Latest` with the last batch's base
    /// offset + 1, not the end of the log; [`PartitionFetch::high_watermark`] is right there.
    pub async fn list_offsets(&self, queries: &[(&str, i32, OffsetSpec)]) -> Result<Vec<PartitionOffset>> {
        self.retry("ListOffsets", |_| self.list_offsets_once(queries)).await
    }

    async fn list_offsets_once(&self, queries: &[(&str, i32, OffsetSpec)]) -> Result<Vec<PartitionOffset>> {
        let mut by_broker: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        for (index, (topic, partition, _)) in queries.iter().enumerate() {
            let route = self.route(topic, *partition).await?;
            by_broker.entry(route.leader).or_default().push(index);
        }
        let mut results: Vec<Option<PartitionOffset>> = vec![None; queries.len()];
        for (node, indexes) in by_broker {
            // ListOffsets accepts each partition once per request, and one isolation level per
            // request: split repeated partitions, and LastStable from the others.
            let committed = |spec: OffsetSpec| spec == OffsetSpec::LastStable;
            let mut rounds: Vec<Vec<usize>> = Vec::new();
            for index in indexes {
                let (topic, partition, spec) = queries[index];
                let round = rounds.iter_mut().find(|r| {
                    committed(queries[r[0]].2) == committed(spec)
                        && !r.iter().any(|&i| queries[i].0 == topic && queries[i].1 == partition)
                });
                match round {
                    Some(r) => r.push(index),
                    None => rounds.push(vec![index]),
                }
            }
            let connection = self.connection_to(node).await?;
            let version = connection.version::<ListOffsetsRequest>()?;
            for round in rounds {
                let mut request = ListOffsetsRequest::default();
                request.replica_id = (-1).into();
                if committed(queries[round[0]].2) {
                    if version < 2 {
                        return Err(Error::UnsupportedVersion {
                            broker: connection.broker().to_owned(),
                            api: "ListOffsets (READ_COMMITTED)",
                            broker_versions: format!("up to {version}"),
                            client_min: 2,
                            client_max: 9,
                        });
                    }
                    request.isolation_level = 1;
                }
                let mut topics: Vec<ListOffsetsTopic> = Vec::new();
                for &index in &round {
                    let (topic, partition, spec) = queries[index];
                    let mut p = ListOffsetsPartition::default();
                    p.partition_index = partition;
                    p.timestamp = match spec {
                        OffsetSpec::Earliest => -2,
                        OffsetSpec::Latest | OffsetSpec::LastStable => -1,
                        OffsetSpec::Timestamp(ts) => ts,
                    };
                    if version >= 4 {
                        p.current_leader_epoch = -1;
                    }
                    match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
                        Some(t) => t.partitions.push(p),
                        None => {
                            let mut t = ListOffsetsTopic::default();
                            t.name = TopicName(str_bytes(topic));
                            t.partitions.push(p);
                            topics.push(t);
                        }
                    }
                }
                request.topics = topics;
                let response = connection.call(&request, version).await?;
                for &index in &round {
                    let (topic, partition, spec) = queries[index];
                    let answer = response
                        .topics
                        .iter()
                        .filter(|t| t.name.0.as_str() == topic)
                        .flat_map(|t| t.partitions.iter())
                        .find(|p| p.partition_index == partition)
                        .ok_or_else(|| Error::Protocol {
                            broker: connection.broker().to_owned(),
                            api: "ListOffsets",
                            reason: format!("no answer for {topic}/{partition}"),
                        })?;
                    if let Some(code) = ErrorCode::check(answer.error_code) {
                        return Err(self.partition_error("ListOffsets", topic, partition, code));
                    }
                    results[index] = Some(PartitionOffset {
                        topic: topic.to_owned(),
                        partition,
                        spec,
                        offset: (answer.offset >= 0).then_some(answer.offset),
                        timestamp: answer.timestamp,
                    });
                }
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.ok_or_else(|| Error::Config {
                    reason: "a ListOffsets query was not sent (internal error)".into(),
                })
            })
            .collect()
    }
}

fn clone_error(e: &Error) -> Error {
    match e {
        Error::Connect { broker, source } => Error::Connect {
            broker: broker.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        Error::ConnectTimeout { broker, timeout } => Error::ConnectTimeout {
            broker: broker.clone(),
            timeout: *timeout,
        },
        Error::Connection { broker, reason } => Error::Connection {
            broker: broker.clone(),
            reason: reason.clone(),
        },
        Error::Timeout { broker, api, timeout } => Error::Timeout {
            broker: broker.clone(),
            api,
            timeout: *timeout,
        },
        Error::Broker { api, code, message } => Error::Broker {
            api,
            code: *code,
            message: message.clone(),
        },
        other => Error::Connection {
            broker: "fetch".into(),
            reason: other.to_string(),
        },
    }
}

fn failed(position: &FetchPosition, code: ErrorCode) -> PartitionFetch {
    PartitionFetch {
        topic: position.topic.clone(),
        partition: position.partition,
        records: Vec::new(),
        batch_ends: Vec::new(),
        next_offset: position.offset,
        high_watermark: -1,
        last_stable_offset: -1,
        log_start_offset: -1,
        error: Some(PartitionError::Broker { code }),
    }
}

/// The parts of a [`FetchRequest`] a broker task needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Params {
    pub(crate) max_wait: Duration,
    pub(crate) min_bytes: i32,
    pub(crate) max_bytes: i32,
    pub(crate) partition_max_bytes: i32,
    pub(crate) isolation: IsolationLevel,
    pub(crate) max_decompressed: usize,
}

impl Params {
    pub(crate) fn from(request: &FetchRequest, max_decompressed: usize) -> Params {
        Params {
            max_wait: request.max_wait,
            min_bytes: request.min_bytes,
            max_bytes: request.max_bytes,
            partition_max_bytes: request.partition_max_bytes,
            isolation: request.isolation,
            max_decompressed,
        }
    }
}

/// Error codes after which the partition is retried once metadata is refreshed.
fn is_retriable_partition_code(code: ErrorCode) -> bool {
    code.is_retriable() || matches!(code.0, 100 | 103) // UNKNOWN_TOPIC_ID, INCONSISTENT_TOPIC_ID
}

/// Turns one partition of a Fetch response into the caller's view.
fn partition_outcome(
    topic: &str,
    partition: i32,
    fetch_offset: i64,
    data: &PartitionData,
    params: &Params,
    first_in_request: bool,
) -> Outcome {
    match process_partition(topic, partition, fetch_offset, data, params) {
        Ok((fetch, true)) if !first_in_request => Outcome::AskAlone(fetch),
        Ok((fetch, _)) => Outcome::Done(fetch),
        Err(code) => Outcome::Retry(Error::Partition {
            api: "Fetch",
            topic: topic.to_owned(),
            partition,
            code,
        }),
    }
}

/// Decodes one partition of a Fetch response; `Err` is a retriable error code. The flag says
/// that only part of the first batch arrived (reported as [`PartitionError::BatchTooLarge`]).
pub(crate) fn process_partition(
    topic: &str,
    partition: i32,
    fetch_offset: i64,
    data: &PartitionData,
    params: &Params,
) -> std::result::Result<(PartitionFetch, bool), ErrorCode> {
    let mut fetch = PartitionFetch {
        topic: topic.to_owned(),
        partition,
        records: Vec::new(),
        batch_ends: Vec::new(),
        next_offset: fetch_offset,
        high_watermark: data.high_watermark,
        last_stable_offset: data.last_stable_offset,
        log_start_offset: data.log_start_offset,
        error: None,
    };
    if let Some(code) = ErrorCode::check(data.error_code) {
        if code == ErrorCode::OFFSET_OUT_OF_RANGE {
            fetch.error = Some(PartitionError::OffsetOutOfRange {
                requested: fetch_offset,
                log_start_offset: data.log_start_offset,
                high_watermark: data.high_watermark,
            });
            return Ok((fetch, false));
        }
        if is_retriable_partition_code(code) {
            return Err(code);
        }
        fetch.error = Some(PartitionError::Broker { code });
        return Ok((fetch, false));
    }
    let Some(records) = &data.records else {
        return Ok((fetch, false));
    };
    let aborted: Vec<AbortedTransaction> = data
        .aborted_transactions
        .iter()
        .flatten()
        .map(|a| AbortedTransaction {
            producer_id: a.producer_id.0,
            first_offset: a.first_offset,
        })
        .collect();
    let options = DecodeOptions {
        read_committed: params.isolation == IsolationLevel::ReadCommitted,
        max_decompressed: params.max_decompressed,
    };
    let decoded = batch::decode_records(records, fetch_offset, &aborted, options);
    fetch.records = decoded.records;
    fetch.batch_ends = decoded.batch_ends;
    if let Some(next) = decoded.next_offset {
        fetch.next_offset = next;
    }
    fetch.error = decoded.fault.map(|fault| match fault {
        BatchFault::UnsupportedMagic { base_offset, magic } => PartitionError::UnsupportedMagic {
            offset: base_offset,
            magic,
        },
        BatchFault::Corrupt { base_offset, reason } => PartitionError::CorruptBatch {
            offset: base_offset,
            reason,
        },
        BatchFault::TooLarge { base_offset, limit } => PartitionError::BatchTooLarge {
            offset: base_offset,
            size: 0,
            limit,
        },
    });
    let partial_only = fetch.error.is_none() && decoded.batches == 0 && decoded.partial.is_some();
    if partial_only && let Some(partial) = decoded.partial {
        // Nothing complete arrived: the first batch is bigger than the broker would send.
        fetch.error = Some(PartitionError::BatchTooLarge {
            offset: fetch_offset,
            size: partial.size.unwrap_or(0),
            limit: usize::try_from(params.partition_max_bytes.min(params.max_bytes)).unwrap_or(0),
        });
    }
    Ok((fetch, partial_only))
}
