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

/// Counts re-authentications and retries.
#[derive(Default)]
struct Renewals {
    reauthenticated: std::sync::atomic::AtomicUsize,
    retried: std::sync::Mutex<Vec<String>>,
}

impl kbs_kafka::ClientEvents for Renewals {
    fn retrying(&self, operation: &str, error: &Error, _attempt: u32, _delay: std::time::Duration) {
        self.retried.lock().unwrap().push(format!("{operation}: {error}"));
    }
    fn reauthenticated(&self, _broker: &str, _session: Option<std::time::Duration>) {
        self.reauthenticated.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// KIP-368: the broker ends every SASL session after 1.5 s (`connections.max.reauth.ms`), and
/// an OAUTHBEARER token lives 4 s (its file is replaced every second). Clients keep producing and
/// fetching for 6 s: each session is renewed on the live connection (SCRAM with its password,
/// OAUTHBEARER with the file's current token), so no request fails and nothing is retried.
/// Then the file holds an expired token: the next renewal is refused, and the error says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_sessions_are_renewed_on_the_live_connection() {
    use kbs_kafka::{FetchPosition, FetchRequest, IdempotentProducer, NewTopic, ProduceRecord, ProducerConfig};
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    let options = KafkaOptions::default()
        .with_listener(Listener::SaslPlaintext)
        .with_config("connections.max.reauth.ms", "1500");
    let Some(kafka) = KafkaCluster::start_with(options) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    let write_token = |lifetime: i64| {
        let next = dir.path().join("token.next");
        std::fs::write(&next, unsecured_jwt(lifetime)).unwrap();
        std::fs::rename(&next, &token_file).unwrap();
    };
    write_token(4);
    let mechanisms = [
        Sasl::new(SaslMechanism::ScramSha512, SASL_USER, SASL_PASSWORD),
        Sasl::oauth_bearer(TokenSource::File(token_file.clone())),
    ];
    let mut clients = Vec::new();
    for (i, sasl) in mechanisms.into_iter().enumerate() {
        let events = Arc::new(Renewals::default());
        let config = test_config(&kafka.bootstrap())
            .with_security(Security::SaslPlaintext(sasl))
            .with_events(events.clone());
        let client = KafkaClient::connect(config).await.unwrap();
        let topic = format!("renewed-{i}");
        client.create_topics(&[NewTopic::new(&topic, 1)]).await.unwrap();
        let producer = IdempotentProducer::new(client.clone(), ProducerConfig::default())
            .await
            .unwrap();
        clients.push((client, producer, topic, events));
    }
    // Set-up retries (a fresh broker's transaction coordinator still loading) do not count.
    for (_, _, _, events) in &clients {
        events.retried.lock().unwrap().clear();
    }
    let started = Instant::now();
    let mut produced = 0i64;
    let mut last_token = Instant::now();
    // A steady workload, a request every 50 ms per client, for four session lifetimes.
    let mut ticks = tokio::time::interval(Duration::from_millis(50));
    while started.elapsed() < Duration::from_secs(6) {
        ticks.tick().await;
        if last_token.elapsed() >= Duration::from_secs(1) {
            write_token(4);
            last_token = Instant::now();
        }
        for (client, producer, topic, _) in &clients {
            let record = ProduceRecord {
                timestamp: 1_700_000_000_000,
                value: Some(format!("record {produced}").into()),
                ..Default::default()
            };
            producer.produce(topic, 0, &[record]).await.unwrap();
            let request = FetchRequest::new(vec![FetchPosition::new(topic, 0, produced)])
                .with_max_wait(Duration::from_millis(10));
            let fetched = client.fetch(&request).await.unwrap().remove(0);
            assert_eq!(fetched.records.first().map(|r| r.offset), Some(produced));
        }
        produced += 1;
    }
    for (_, _, topic, events) in &clients {
        let renewals = events.reauthenticated.load(Ordering::SeqCst);
        assert!(
            renewals >= 3,
            "{topic}: {renewals} sessions renewed in 6 s of 1.5 s sessions"
        );
        let retried = events.retried.lock().unwrap();
        assert!(
            retried.is_empty(),
            "{topic}: requests failed and were retried: {retried:?}"
        );
    }

    // An expired token: the next renewal is refused and the failure names the token's refusal.
    write_token(-60);
    let (client, _, topic, _) = &clients[1];
    let deadline = Instant::now() + Duration::from_secs(20);
    let error = loop {
        assert!(Instant::now() < deadline, "the expired token was never refused");
        ticks.tick().await;
        let request = FetchRequest::new(vec![FetchPosition::new(topic, 0, 0)]).with_max_wait(Duration::from_millis(10));
        if let Err(e) = client.fetch(&request).await {
            break e;
        }
    };
    let text = error.to_string();
    assert!(
        text.contains("OAUTHBEARER") && text.contains("refused the token"),
        "{text}"
    );
}
