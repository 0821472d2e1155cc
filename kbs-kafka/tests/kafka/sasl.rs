//! SASL PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 against Apache Kafka's own SASL listener, over
//! plaintext and over TLS: the broker checks the exchange (SCRAM users are created through the
//! admin API by kbs-testkit), and a wrong password fails with an error that names the mechanism
//! and never the password. The client side is also checked against the RFC 7677 test vector in
//! the unit tests.

use kbs_kafka::{Error, KafkaClient, Sasl, SaslMechanism, Security, TlsConfig};
use kbs_testkit::{KafkaCluster, KafkaOptions, Listener, SASL_PASSWORD, SASL_USER};

use crate::harness::test_config;
use crate::tls::round_trip;

const MECHANISMS: [SaslMechanism; 3] = [
    SaslMechanism::Plain,
    SaslMechanism::ScramSha256,
    SaslMechanism::ScramSha512,
];

/// Security for `sasl` on `kafka`'s client listener (TLS with the test CA when it has one).
fn security(kafka: &KafkaCluster, sasl: Sasl) -> Security {
    match kafka.pki() {
        Some(pki) => Security::SaslTls(sasl, TlsConfig::with_ca_file(&pki.ca_file)),
        None => Security::SaslPlaintext(sasl),
    }
}

async fn every_mechanism_authenticates_and_a_wrong_password_is_refused(listener: Listener) {
    let Some(kafka) = KafkaCluster::start_with(KafkaOptions::default().with_listener(listener)) else {
        return;
    };
    for (i, mechanism) in MECHANISMS.into_iter().enumerate() {
        let sasl = Sasl::new(mechanism, SASL_USER, SASL_PASSWORD);
        let config = test_config(&kafka.bootstrap()).with_security(security(&kafka, sasl));
        let client = KafkaClient::connect(config).await.unwrap();
        round_trip(&client, &format!("sasl-{i}")).await;

        let wrong = Sasl::new(mechanism, SASL_USER, "not-the-password");
        let config = test_config(&kafka.bootstrap()).with_security(security(&kafka, wrong));
        match KafkaClient::connect(config).await {
            Err(e @ Error::Authentication { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains(mechanism.name()) && text.contains("SASL_AUTHENTICATION_FAILED"),
                    "{text}"
                );
                assert!(!text.contains("not-the-password"), "{text}");
                assert!(!format!("{e:?}").contains("not-the-password"), "{e:?}");
            }
            other => panic!("{mechanism:?}: {other:?}"),
        }
    }
    let unknown = Sasl::new(SaslMechanism::ScramSha256, "nobody", SASL_PASSWORD);
    let config = test_config(&kafka.bootstrap()).with_security(security(&kafka, unknown));
    assert!(matches!(
        KafkaClient::connect(config).await,
        Err(Error::Authentication { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_plaintext_plain_and_scram() {
    every_mechanism_authenticates_and_a_wrong_password_is_refused(Listener::SaslPlaintext).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_plain_and_scram() {
    every_mechanism_authenticates_and_a_wrong_password_is_refused(Listener::SaslSsl).await;
}
