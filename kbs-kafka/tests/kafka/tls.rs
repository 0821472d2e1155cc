//! TLS against Apache Kafka's own SSL listener, with certificates made by rcgen for the test
//! (kbs-testkit's `Pki`): a CA file, refusals of an untrusted CA and a wrong name, and mutual
//! TLS with a client certificate.

use std::time::Duration;

use kbs_kafka::{
    ClientConfig, Error, FetchPosition, FetchRequest, IdempotentProducer, KafkaClient, NewTopic, ProduceRecord,
    ProducerConfig, Security, TlsConfig,
};
use kbs_testkit::{KafkaCluster, KafkaOptions, Listener, Pki};

use crate::harness::test_config;

/// One Kafka node whose client listener is SSL (requiring client certificates when
/// `client_auth`); `None` when the test is skipped.
pub(crate) fn tls_broker(client_auth: bool) -> Option<KafkaCluster> {
    KafkaCluster::start_with(KafkaOptions::default().with_listener(Listener::Ssl { client_auth }))
}

fn config(kafka: &KafkaCluster, tls: TlsConfig) -> ClientConfig {
    test_config(&kafka.bootstrap()).with_security(Security::Tls(tls))
}

fn pki(kafka: &KafkaCluster) -> &Pki {
    kafka.pki().expect("an SSL listener has certificates")
}

/// Creates a topic, produces a record and reads it back: every kind of request kbs makes.
pub(crate) async fn round_trip(client: &KafkaClient, topic: &str) {
    client.create_topics(&[NewTopic::new(topic, 1)]).await.unwrap();
    let producer = IdempotentProducer::new(client.clone(), ProducerConfig::default())
        .await
        .unwrap();
    let record = ProduceRecord {
        timestamp: 1_700_000_000_000,
        value: Some("over the wire".into()),
        ..Default::default()
    };
    assert_eq!(
        producer.produce(topic, 0, &[record]).await.unwrap().base_offset,
        Some(0)
    );
    let request = FetchRequest::new(vec![FetchPosition::new(topic, 0, 0)]).with_max_wait(Duration::from_millis(10));
    let fetched = client.fetch(&request).await.unwrap().remove(0);
    assert_eq!(fetched.records.len(), 1);
    assert_eq!(fetched.records[0].value.as_deref(), Some(&b"over the wire"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_ca_file_and_refusals_of_untrusted_certificates_and_wrong_names() {
    let Some(kafka) = tls_broker(false) else { return };
    let client = KafkaClient::connect(config(&kafka, TlsConfig::with_ca_file(&pki(&kafka).ca_file)))
        .await
        .unwrap();
    round_trip(&client, "secure").await;

    let other_dir = tempfile::tempdir().unwrap();
    let other = Pki::new(other_dir.path());
    match KafkaClient::connect(config(&kafka, TlsConfig::with_ca_file(&other.ca_file))).await {
        Err(Error::Tls { reason, .. }) => assert!(reason.to_lowercase().contains("certificate"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let wrong_name = TlsConfig::with_ca_file(&pki(&kafka).ca_file).with_server_name("kafka.example.com");
    match KafkaClient::connect(config(&kafka, wrong_name)).await {
        Err(Error::Tls { reason, .. }) => assert!(reason.to_lowercase().contains("certificate"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let missing = TlsConfig::with_ca_file("/nonexistent/ca.pem");
    assert!(matches!(
        KafkaClient::connect(config(&kafka, missing)).await,
        Err(Error::Tls { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_a_client_certificate() {
    let Some(kafka) = tls_broker(true) else { return };
    let pki = pki(&kafka);
    let with_cert = TlsConfig::with_ca_file(&pki.ca_file).with_client_cert(&pki.client_cert_file, &pki.client_key_file);
    let client = KafkaClient::connect(config(&kafka, with_cert)).await.unwrap();
    round_trip(&client, "mutual").await;

    let mut without = config(&kafka, TlsConfig::with_ca_file(&pki.ca_file));
    without.retry = kbs_kafka::RetryConfig::new(2, Duration::from_millis(10), Duration::from_millis(10));
    let refused = KafkaClient::connect(without).await.unwrap_err();
    assert!(
        matches!(&refused, Error::Tls { .. } | Error::RetriesExhausted { .. }),
        "the broker requires a client certificate: {refused}"
    );
}
