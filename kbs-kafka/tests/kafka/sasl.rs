//! SASL PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 against Apache Kafka's own SASL listener, over
//! plaintext and over TLS: the broker checks the exchange (SCRAM users are created through the
//! admin API by kbs-testkit), and a wrong password fails with an error that names the mechanism
//! and never the password. The client side is also checked against the RFC 7677 test vector in
//! the unit tests. OAUTHBEARER against the broker's unsecured-JWS validator (the one Kafka
//! ships for tests): a token given as is, read from a file and printed by a command, and an
//! expired one refused.

use kbs_kafka::{ClientCredentials, Error, KafkaClient, Sasl, SaslMechanism, Security, TlsConfig, TokenSource};
use kbs_testkit::{KafkaCluster, KafkaOptions, Listener, SASL_PASSWORD, SASL_USER, unsecured_jwt};

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

    // OAUTHBEARER: the same token three ways.
    let dir = tempfile::tempdir().unwrap();
    let token = unsecured_jwt(3600);
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let sources = [
        TokenSource::Static(token.clone()),
        TokenSource::File(file.clone()),
        TokenSource::Command(vec!["cat".into(), file.display().to_string()]),
    ];
    for (i, source) in sources.into_iter().enumerate() {
        let config = test_config(&kafka.bootstrap()).with_security(security(&kafka, Sasl::oauth_bearer(source)));
        let client = KafkaClient::connect(config).await.unwrap();
        round_trip(&client, &format!("oauth-{i}")).await;
    }
    let expired = unsecured_jwt(-60);
    let config = test_config(&kafka.bootstrap()).with_security(security(
        &kafka,
        Sasl::oauth_bearer(TokenSource::Static(expired.clone())),
    ));
    match KafkaClient::connect(config).await {
        Err(e @ Error::Authentication { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("OAUTHBEARER") && text.contains("refused the token"),
                "{text}"
            );
            assert!(
                !text.contains(&expired) && !format!("{e:?}").contains(&expired),
                "{e:?}"
            );
        }
        other => panic!("an expired token: {other:?}"),
    }
    // The client-credentials grant against a local token endpoint, and a wrong secret.
    let endpoint = kbs_testkit::TokenEndpoint::start("kbs-client", "s3cr3t-of-the-client").url;
    let credentials = ClientCredentials::new(&endpoint, "kbs-client", "s3cr3t-of-the-client");
    let sasl = Sasl::oauth_bearer(TokenSource::ClientCredentials(credentials));
    let client = KafkaClient::connect(test_config(&kafka.bootstrap()).with_security(security(&kafka, sasl)))
        .await
        .unwrap();
    round_trip(&client, "oauth-oidc").await;
    let wrong = ClientCredentials::new(&endpoint, "kbs-client", "not-the-client-secret");
    let sasl = Sasl::oauth_bearer(TokenSource::ClientCredentials(wrong));
    match KafkaClient::connect(test_config(&kafka.bootstrap()).with_security(security(&kafka, sasl))).await {
        Err(e @ Error::Authentication { .. }) => {
            let text = format!("{e} {e:?}");
            assert!(text.contains("401") && text.contains("invalid_client"), "{text}");
            assert!(!text.contains("not-the-client-secret"), "{text}");
        }
        other => panic!("a wrong client secret: {other:?}"),
    }

    let broken = TokenSource::Command(vec!["false".into()]);
    let config = test_config(&kafka.bootstrap()).with_security(security(&kafka, Sasl::oauth_bearer(broken)));
    match KafkaClient::connect(config).await {
        Err(e @ Error::Authentication { .. }) => assert!(e.to_string().contains("token command false failed"), "{e}"),
        other => panic!("a failing token command: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_plaintext_plain_scram_and_oauthbearer() {
    every_mechanism_authenticates_and_a_wrong_password_is_refused(Listener::SaslPlaintext).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_plain_scram_and_oauthbearer() {
    every_mechanism_authenticates_and_a_wrong_password_is_refused(Listener::SaslSsl).await;
}
