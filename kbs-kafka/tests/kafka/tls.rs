//! TLS against tansu behind a TLS-terminating front proxy (tansu 0.6 parses `--cert/--key`
//! but never wraps its connections), with certificates made by rcgen for the test.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kbs_kafka::{
    ClientConfig, Error, FetchPosition, FetchRequest, IdempotentProducer, KafkaClient, NewTopic, ProduceRecord,
    ProducerConfig, Security, TlsConfig,
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls;

use kbs_testkit::{Tansu, free_port};

use crate::harness::test_config;
use crate::proxy::{FrontProxy, ProxyOptions};

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as files and as rustls
/// server configurations.
pub(crate) struct Pki {
    _dir: tempfile::TempDir,
    pub(crate) ca_file: PathBuf,
    pub(crate) client_cert_file: PathBuf,
    pub(crate) client_key_file: PathBuf,
    pub(crate) server: Arc<rustls::ServerConfig>,
    pub(crate) server_requiring_client_cert: Arc<rustls::ServerConfig>,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

pub(crate) fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca("kbs test CA");
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params.distinguished_name.push(DnType::CommonName, "kbs-client");
    let client_cert = client_params.signed_by(&client_key, &ca).unwrap();

    let ca_file = dir.path().join("ca.pem");
    let client_cert_file = dir.path().join("client.pem");
    let client_key_file = dir.path().join("client.key");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    std::fs::write(&client_cert_file, client_cert.pem()).unwrap();
    std::fs::write(&client_key_file, client_key.serialize_pem()).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = vec![server_cert.der().clone()];
    let key = || PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain.clone(), key())
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.der().to_vec())).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let server_requiring_client_cert = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key())
        .unwrap();
    Pki {
        _dir: dir,
        ca_file,
        client_cert_file,
        client_key_file,
        server: Arc::new(server),
        server_requiring_client_cert: Arc::new(server_requiring_client_cert),
    }
}

/// tansu behind a TLS proxy using `server`; `None` when the test is skipped.
async fn tls_broker(server: Arc<rustls::ServerConfig>) -> Option<(FrontProxy, Tansu)> {
    let broker_port = free_port();
    let proxy = FrontProxy::start(
        broker_port,
        ProxyOptions {
            tls: Some(server),
            ..ProxyOptions::default()
        },
    )
    .await;
    let tansu = Tansu::start_advertising(broker_port, proxy.port)?;
    Some((proxy, tansu))
}

fn config(tansu: &Tansu, tls: TlsConfig) -> ClientConfig {
    test_config(&tansu.bootstrap()).with_security(Security::Tls(tls))
}

/// Creates a topic, produces a record and reads it back: every kind of request over TLS.
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
async fn tls_with_a_ca_file() {
    let pki = pki();
    let Some((_proxy, tansu)) = tls_broker(pki.server.clone()).await else {
        return;
    };
    let client = KafkaClient::connect(config(&tansu, TlsConfig::with_ca_file(&pki.ca_file)))
        .await
        .unwrap();
    round_trip(&client, "secure").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_refuses_untrusted_certificates_and_wrong_names() {
    let pki = pki();
    let other = self::pki();
    let Some((_proxy, tansu)) = tls_broker(pki.server.clone()).await else {
        return;
    };
    match KafkaClient::connect(config(&tansu, TlsConfig::with_ca_file(&other.ca_file))).await {
        Err(Error::Tls { reason, .. }) => assert!(reason.to_lowercase().contains("certificate"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let wrong_name = TlsConfig::with_ca_file(&pki.ca_file).with_server_name("kafka.example.com");
    match KafkaClient::connect(config(&tansu, wrong_name)).await {
        Err(Error::Tls { reason, .. }) => assert!(reason.to_lowercase().contains("certificate"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let missing = TlsConfig::with_ca_file("/nonexistent/ca.pem");
    assert!(matches!(
        KafkaClient::connect(config(&tansu, missing)).await,
        Err(Error::Tls { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_a_client_certificate() {
    let pki = pki();
    let Some((_proxy, tansu)) = tls_broker(pki.server_requiring_client_cert.clone()).await else {
        return;
    };
    let with_cert = TlsConfig::with_ca_file(&pki.ca_file).with_client_cert(&pki.client_cert_file, &pki.client_key_file);
    let client = KafkaClient::connect(config(&tansu, with_cert)).await.unwrap();
    round_trip(&client, "mutual").await;

    let mut without = config(&tansu, TlsConfig::with_ca_file(&pki.ca_file));
    without.retry = kbs_kafka::RetryConfig::new(2, Duration::from_millis(10), Duration::from_millis(10));
    let refused = KafkaClient::connect(without).await.unwrap_err();
    assert!(
        matches!(&refused, Error::Tls { .. } | Error::RetriesExhausted { .. }),
        "the server requires a client certificate: {refused}"
    );
}
