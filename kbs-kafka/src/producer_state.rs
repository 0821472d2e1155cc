//! DescribeProducers (KIP-664): the producers a partition leader knows, with the last sequence
//! each has appended to the leader's log, replicated or not.

use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::{DescribeProducersRequest, TopicName};

use crate::client::KafkaClient;
use crate::error::{Error, ErrorCode, Result};
use crate::protocol::str_bytes;

/// One producer with state in a partition, as its leader reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ActiveProducer {
    /// The producer id.
    pub producer_id: i64,
    /// The producer epoch.
    pub producer_epoch: i32,
    /// The sequence number of the last record this producer appended to the leader's log:
    /// records above the high watermark (not replicated yet) count. An idempotent producer
    /// numbers a partition's records from 0, so `last_sequence + 1` records of it are in the
    /// log (modulo 2^31). -1 when none.
    pub last_sequence: i32,
    /// The timestamp of its last batch (ms), -1 when unknown.
    pub last_timestamp: i64,
    /// The offset where its open transaction starts, if it has one.
    pub current_txn_start_offset: Option<i64>,
}

impl KafkaClient {
    /// The producers `topic`/`partition`'s leader holds state for (DescribeProducers, Kafka
    /// 2.8 and later). Leader changes are retried like other partition requests; a broker
    /// without the API gives [`Error::UnsupportedVersion`].
    pub async fn describe_producers(&self, topic: &str, partition: i32) -> Result<Vec<ActiveProducer>> {
        self.retry("DescribeProducers", |_| self.describe_producers_once(topic, partition))
            .await
    }

    async fn describe_producers_once(&self, topic: &str, partition: i32) -> Result<Vec<ActiveProducer>> {
        let route = self.route(topic, partition).await?;
        let connection = self.connection_to(route.leader).await?;
        let version = connection.version::<DescribeProducersRequest>()?;
        let mut wanted = TopicRequest::default();
        wanted.name = TopicName(str_bytes(topic));
        wanted.partition_indexes = vec![partition];
        let mut request = DescribeProducersRequest::default();
        request.topics = vec![wanted];
        let response = connection.call(&request, version).await?;
        let answer = response
            .topics
            .iter()
            .filter(|t| t.name.0.as_str() == topic)
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == partition)
            .ok_or_else(|| Error::Protocol {
                broker: connection.broker().to_owned(),
                api: "DescribeProducers",
                reason: format!("no answer for {topic}/{partition}"),
            })?;
        if let Some(code) = ErrorCode::check(answer.error_code) {
            return Err(self.partition_error("DescribeProducers", topic, partition, code));
        }
        Ok(answer
            .active_producers
            .iter()
            .map(|p| ActiveProducer {
                producer_id: p.producer_id.0,
                producer_epoch: p.producer_epoch,
                last_sequence: p.last_sequence,
                last_timestamp: p.last_timestamp,
                current_txn_start_offset: (p.current_txn_start_offset >= 0).then_some(p.current_txn_start_offset),
            })
            .collect())
    }
}
