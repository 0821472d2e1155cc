//! Cluster metadata as returned by [`KafkaClient::metadata`](crate::KafkaClient::metadata).

/// Brokers, topics and partitions of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterMetadata {
    /// The cluster id (Metadata v2+), if the broker sent one.
    pub cluster_id: Option<String>,
    /// Node id of the controller, `-1` if unknown.
    pub controller_id: i32,
    /// Live brokers.
    pub brokers: Vec<BrokerMetadata>,
    /// The topics asked for (or all topics), sorted by name.
    pub topics: Vec<TopicMetadata>,
}

/// One broker.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerMetadata {
    /// Node id.
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// Rack, if configured.
    pub rack: Option<String>,
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicMetadata {
    /// Topic name.
    pub name: String,
    /// Whether this is an internal topic such as `__consumer_offsets`.
    pub is_internal: bool,
    /// The topic id (Kafka 2.8+, Metadata v10+), as Kafka prints it: the 16 bytes in
    /// base64url without padding. A topic deleted and created again under the same name gets a
    /// new id. `None` when the broker does not report ids.
    pub topic_id: Option<String>,
    /// Partitions, sorted by partition id.
    pub partitions: Vec<PartitionMetadata>,
}

/// One partition.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionMetadata {
    /// Partition id.
    pub partition: i32,
    /// Node id of the leader, `-1` while there is none.
    pub leader: i32,
    /// Leader epoch (Metadata v7+), `-1` if unknown.
    pub leader_epoch: i32,
    /// Replica node ids.
    pub replicas: Vec<i32>,
    /// In-sync replica node ids.
    pub isr: Vec<i32>,
}

/// The host part of `host:port` (`[v6]:port` too).
pub(crate) fn host_of(broker: &str) -> &str {
    let host = broker.rsplit_once(':').map_or(broker, |(host, _)| host);
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_handles_names_ipv4_and_ipv6() {
        assert_eq!(host_of("broker-1.example.com:9092"), "broker-1.example.com");
        assert_eq!(host_of("127.0.0.1:9092"), "127.0.0.1");
        assert_eq!(host_of("[::1]:9092"), "::1");
        assert_eq!(host_of("plainhost"), "plainhost");
    }
}
