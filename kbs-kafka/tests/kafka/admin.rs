//! Metadata and topic administration against Apache Kafka.

use kbs_kafka::{Error, ErrorCode, NewTopic};

use kbs_testkit::{KafkaCluster, free_port};

use crate::harness::{client, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_describe_and_delete_topics_with_configs() {
    let Some(kafka) = KafkaCluster::start() else { return };
    let client = client(&kafka).await;
    let compacted = NewTopic::new("compacted", 3)
        .with_config("cleanup.policy", "compact")
        .with_config("retention.ms", "86400000")
        .with_config("max.message.bytes", "2097152");
    let plain = NewTopic::new("plain", 1);
    client.create_topics(&[compacted.clone(), plain]).await.unwrap();

    let metadata = client.metadata(Some(&["compacted", "plain"])).await.unwrap();
    assert_eq!(metadata.cluster_id.as_deref(), Some(kafka.cluster_id()));
    assert_eq!(metadata.brokers.len(), 1);
    assert_eq!(
        metadata.brokers[0].port,
        i32::from(kafka.nodes()[0].advertised_client_port)
    );
    let names: Vec<&str> = metadata.topics.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["compacted", "plain"]);
    let partitions = &metadata.topics[0].partitions;
    assert_eq!(partitions.iter().map(|p| p.partition).collect::<Vec<_>>(), [0, 1, 2]);
    assert!(partitions.iter().all(|p| p.leader == metadata.brokers[0].node_id));
    assert!(!metadata.topics[0].is_internal);

    let all = client.metadata(None).await.unwrap();
    assert!(all.topics.iter().any(|t| t.name == "plain"));

    let configs = client.describe_topic_configs(&["compacted", "plain"]).await.unwrap();
    assert_eq!(
        configs["compacted"], compacted.configs,
        "only the configs set on the topic"
    );
    assert!(configs["plain"].is_empty(), "{:?}", configs["plain"]);

    let again = client.create_topics(&[NewTopic::new("plain", 1)]).await.unwrap_err();
    assert_eq!(again.code(), Some(ErrorCode::TOPIC_ALREADY_EXISTS), "{again}");
    assert!(again.to_string().contains("\"plain\""), "{again}");

    client.delete_topics(&["plain"]).await.unwrap();
    // DeleteTopics answers once the controller has committed the deletion; the broker's
    // metadata follows within moments (it lagged once in CI).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match client.metadata(Some(&["plain"])).await {
            Err(Error::UnknownTopic { topic }) => {
                assert_eq!(topic, "plain");
                break;
            }
            Ok(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            other => panic!("{other:?}"),
        }
    }
    match client.describe_topic_configs(&["plain"]).await {
        Err(Error::UnknownTopic { topic }) => assert_eq!(topic, "plain"),
        Ok(configs) => assert!(configs["plain"].is_empty()),
        Err(other) => panic!("{other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_brokers_fail_with_a_typed_error() {
    let mut config = test_config(&format!("127.0.0.1:{}", free_port()));
    config.retry = kbs_kafka::RetryConfig::new(
        2,
        std::time::Duration::from_millis(10),
        std::time::Duration::from_millis(10),
    );
    match kbs_kafka::KafkaClient::connect(config).await {
        Err(Error::RetriesExhausted { attempts: 2, last, .. }) => {
            assert!(matches!(*last, Error::Connect { .. }), "{last}");
        }
        other => panic!("{other:?}"),
    }
    let empty = kbs_kafka::ClientConfig::new(Vec::<String>::new());
    assert!(matches!(
        kbs_kafka::KafkaClient::connect(empty).await,
        Err(Error::Config { .. })
    ));
}
