//! The request versions kbs-kafka negotiates with Apache Kafka 4.1, as the wire shows them (the
//! front proxy records every request header). Kafka 4 removed old versions (KIP-896), so each
//! must be at or above Kafka 4's minimum, and the client uses the highest version both sides
//! speak.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use kbs_kafka::{
    CommittedOffset, FetchPosition, FetchRequest, IdempotentProducer, NewTopic, OffsetSpec, ProduceRecord,
    ProducerConfig,
};
use kbs_testkit::{KafkaCluster, KafkaOptions, free_port};

use crate::harness::client;
use crate::proxy::{FrontProxy, ProxyOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_used_with_kafka_4() {
    let broker_port = free_port();
    let options = ProxyOptions::default();
    let seen = options.seen.clone();
    let proxy = FrontProxy::start(broker_port, options).await;
    let Some(kafka) = KafkaCluster::start_with(KafkaOptions::behind_proxy(broker_port, proxy.port)) else {
        return;
    };
    let client = client(&kafka).await;
    client.create_topics(&[NewTopic::new("versions", 1)]).await.unwrap();
    let producer = IdempotentProducer::new(client.clone(), ProducerConfig::default())
        .await
        .unwrap();
    let record = ProduceRecord {
        timestamp: 1_700_000_000_000,
        value: Some("v".into()),
        ..Default::default()
    };
    producer.produce("versions", 0, &[record]).await.unwrap();
    let request =
        FetchRequest::new(vec![FetchPosition::new("versions", 0, 0)]).with_max_wait(Duration::from_millis(10));
    assert_eq!(client.fetch(&request).await.unwrap()[0].records.len(), 1);
    client
        .list_offsets(&[("versions", 0, OffsetSpec::Latest)])
        .await
        .unwrap();
    client
        .commit_offsets("versions-group", &[CommittedOffset::new("versions", 0, 1)])
        .await
        .unwrap();
    client.fetch_committed_offsets("versions-group", None).await.unwrap();
    struct Nothing;
    impl kbs_kafka::Assignor for Nothing {
        fn assign(&self, _: &[kbs_kafka::JoinedMember]) -> BTreeMap<String, bytes::Bytes> {
            BTreeMap::new()
        }
    }
    let member = client
        .join_group(
            kbs_kafka::MembershipConfig {
                group: "versions-workers".into(),
                protocol_type: "kbs".into(),
                protocol_name: "kbs-none".into(),
                metadata: bytes::Bytes::new(),
                session_timeout: Duration::from_secs(10),
                rebalance_timeout: Duration::from_secs(10),
            },
            &Nothing,
        )
        .await
        .unwrap();
    member.heartbeat().await.unwrap();
    member.leave().await.unwrap();

    let mut used: BTreeMap<String, Vec<i16>> = BTreeMap::new();
    for &(key, version) in seen.lock().unwrap().iter() {
        let name = format!(
            "{:?}",
            ApiKey::try_from(key).unwrap_or_else(|_| panic!("unknown API key {key}"))
        );
        used.entry(name).or_default().push(version);
    }
    // One version per API (ApiVersions: the first request, then the one negotiated), each the
    // highest that both Kafka 4.1 and kbs-kafka speak, and none below Kafka 4's minimum.
    let expected: BTreeMap<String, Vec<i16>> = [
        ("ApiVersions", vec![3]),
        ("CreateTopics", vec![7]),
        ("DescribeGroups", vec![5]),
        ("Fetch", vec![17]),
        ("FindCoordinator", vec![6]),
        ("Heartbeat", vec![4]),
        ("InitProducerId", vec![5]),
        ("JoinGroup", vec![9]),
        ("LeaveGroup", vec![5]),
        ("ListOffsets", vec![9]),
        ("Metadata", vec![12]),
        ("OffsetCommit", vec![9]),
        ("OffsetFetch", vec![9]),
        ("Produce", vec![11]),
        ("SyncGroup", vec![5]),
    ]
    .into_iter()
    .map(|(api, versions)| (api.to_owned(), versions))
    .collect();
    assert_eq!(used, expected);
    let kafka4_minimum = [
        ("Produce", 3),
        ("Fetch", 4),
        ("ListOffsets", 1),
        ("Metadata", 0),
        ("OffsetCommit", 2),
        ("OffsetFetch", 1),
    ];
    for (api, minimum) in kafka4_minimum {
        assert!(used[api].iter().all(|&v| v >= minimum), "{api}: {:?}", used[api]);
    }
}
