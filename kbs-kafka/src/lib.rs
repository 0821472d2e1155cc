//! A pure-Rust Kafka client for kbs: it reads and writes records byte-faithfully.
//!
//! * [`KafkaClient`] — bootstrap, metadata and leader routing, [`fetch`](KafkaClient::fetch)
//!   of many partitions per request, [`list_offsets`](KafkaClient::list_offsets), topic
//!   administration and consumer-group offsets. TLS (rustls) and SASL PLAIN / SCRAM / OAUTHBEARER / AWS_MSK_IAM.
//! * [`Membership`] ([`KafkaClient::join_group`]) — membership of a classic group under a
//!   protocol of the caller's own, its [`Assignor`] run on the elected leader; the generation
//!   fences a member the coordinator dropped.
//! * [`IdempotentProducer`] — batches with sequence numbers, pipelined, retried without
//!   duplicates.
//! * [`default_partition`] — where Kafka's default partitioner puts a key (murmur2).
//!
//! Records keep exactly what Kafka stores: offset, timestamp and its type, null vs empty key
//! and value, headers in order with duplicate keys and null values. Control records and
//! aborted transactions never reach the caller, compacted and empty batches do not stall the
//! fetch loop ([`PartitionFetch::next_offset`]), and an offset that fell out of the log comes
//! back as [`PartitionError::OffsetOutOfRange`] with the new log start.
//!
//! Messages are encoded with the `kafka-protocol` crate; record batches (Kafka's message
//! format v2) with this crate's own codec, documented in its source (`src/batch.rs`). Every
//! connection negotiates API versions (the highest both sides speak; none in common is
//! [`Error::UnsupportedVersion`] naming the API).
//!
//! Nothing a broker sends is trusted: a response frame is capped at
//! [`ClientConfig`]'s `max_response_bytes`, and every response body is walked against its
//! schema before it is decoded, so a count or length that its bytes cannot back is an
//! [`Error::Protocol`] naming its position, never an allocation of what it claims.
//!
//! # Brokers
//!
//! The integration tests run against Apache Kafka 4.1 in KRaft mode (one node, and three for
//! failover), over PLAINTEXT, TLS, mTLS and SASL (PLAIN, SCRAM-SHA-256/512, OAUTHBEARER, with
//! sessions renewed in place), and `AWS_MSK_IAM` against a local endpoint that verifies the
//! signatures with botocore. Kafka 4 removed
//! old request versions (KIP-896); the versions this client negotiates are at or above
//! Kafka 4's minimums. The client also copes with what some Kafka-compatible brokers do
//! differently (e.g. labelling a topic's own configs `DEFAULT_CONFIG`, serving a batch twice in
//! one response, holding every Fetch for its full `max_wait`), from the first releases' tests
//! against tansu 0.6.
//!
//! ```no_run
//! use std::time::Duration;
//! use kbs_kafka::{ClientConfig, FetchPosition, FetchRequest, KafkaClient};
//!
//! # async fn example() -> kbs_kafka::Result<()> {
//! let client = KafkaClient::connect(ClientConfig::new(["localhost:9092"])).await?;
//! let mut position = FetchPosition::new("orders", 0, 0);
//! loop {
//!     let request = FetchRequest::new(vec![position.clone()]).with_max_wait(Duration::from_millis(50));
//!     let partition = client.fetch(&request).await?.remove(0);
//!     for record in &partition.records {
//!         // record.offset, record.timestamp, record.key, record.value, record.headers
//!     }
//!     position.offset = partition.next_offset;
//!     if position.offset >= partition.high_watermark {
//!         break;
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod admin;
mod aws;
pub(crate) mod batch;
mod client;
mod config;
pub(crate) mod connection;
mod error;
mod events;
mod fetch;
#[cfg(test)]
mod golden_tests;
mod groups;
mod membership;
mod metadata;
mod partitioner;
mod producer;
mod producer_state;
pub(crate) mod protocol;
mod record;
mod sasl;
mod tls;
mod urls;

pub use admin::NewTopic;
pub use aws::{AwsCredentials, AwsCredentialsProvider, AwsMskIam};
pub use client::KafkaClient;
pub use config::{ClientConfig, ClientCredentials, RetryConfig, Sasl, SaslMechanism, Security, TlsConfig, TokenSource};
pub use error::{Error, ErrorCode, PartitionError, Result};
pub use events::{ClientEvents, EventsHook};
pub use fetch::{FetchPosition, FetchRequest, IsolationLevel, OffsetSpec, PartitionFetch, PartitionOffset};
pub use groups::{CommittedOffset, GroupDescription, GroupListing, GroupMember};
pub use membership::{Assignor, HeartbeatOutcome, JoinedMember, Membership, MembershipConfig};
pub use metadata::{BrokerMetadata, ClusterMetadata, PartitionMetadata, TopicMetadata};
pub use partitioner::{default_partition, murmur2};
pub use producer::{Acks, IdempotentProducer, ProduceAck, ProducerCompression, ProducerConfig};
pub use producer_state::ActiveProducer;
pub use record::{ProduceRecord, Record, RecordHeader, TimestampType};

#[cfg(test)]
mod tests {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    fn sendable<T: Send + Sync + std::error::Error + 'static>() {}

    #[test]
    fn handles_are_send_sync_and_cheap_to_clone() {
        shareable::<crate::KafkaClient>();
        shareable::<crate::IdempotentProducer>();
        sendable::<crate::Error>();
        sendable::<crate::PartitionError>();
    }
}

/// The README's examples, compiled and run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
