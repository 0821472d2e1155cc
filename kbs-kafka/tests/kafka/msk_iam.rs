//! Amazon MSK IAM without an AWS account: `AWS_MSK_IAM` and MSK OAUTHBEARER tokens against
//! kbs-testkit's `MskIamEndpoint`, which recomputes every signature with botocore (the library
//! under AWS's own MSK signer) before it lets the connection through to a real Kafka node. Long-
//! term and temporary keys are accepted; a wrong secret, a token that is not the key's and the
//! wrong region are refused with errors that name the mechanism and never a secret.

use kbs_kafka::{AwsCredentials, AwsCredentialsProvider, AwsMskIam, Error, KafkaClient, Sasl, Security, TokenSource};
use kbs_testkit::{AwsKey, KafkaCluster, KafkaOptions, MskAuthentication, MskIamEndpoint, free_port};

use crate::harness::test_config;
use crate::tls::round_trip;

const REGION: &str = "eu-west-1";

fn keys() -> Vec<AwsKey> {
    vec![
        AwsKey {
            access_key_id: "AKIAKBSTESTLONGTERM".into(),
            secret_access_key: "long-term-secret-key".into(),
            session_token: None,
        },
        AwsKey {
            access_key_id: "ASIAKBSTESTTEMPORARY".into(),
            secret_access_key: "temporary-secret-key".into(),
            session_token: Some("FwoGZXIvYXdzE/session+token==".into()),
        },
    ]
}

fn msk(credentials: AwsCredentials, region: &str) -> AwsMskIam {
    AwsMskIam::new()
        .with_credentials(AwsCredentialsProvider::fixed(credentials))
        .with_region(region)
}

fn long_term(secret: &str) -> AwsCredentials {
    AwsCredentials::new("AKIAKBSTESTLONGTERM", secret, None)
}

async fn connect(kafka: &KafkaCluster, sasl: Sasl) -> kbs_kafka::Result<KafkaClient> {
    KafkaClient::connect(test_config(&kafka.bootstrap()).with_security(Security::SaslPlaintext(sasl))).await
}

fn assert_refused(result: kbs_kafka::Result<KafkaClient>, mechanism: &str, why: &str) {
    match result {
        Err(e @ Error::Authentication { .. }) => {
            let text = format!("{e} {e:?}");
            assert!(text.contains(mechanism) && text.contains(why), "{text}");
            for secret in [
                "long-term-secret-key",
                "temporary-secret-key",
                "not-the-secret",
                "session+token",
            ] {
                assert!(!text.contains(secret), "{text}");
            }
        }
        Err(other) => panic!("{mechanism}: expected an authentication error, got {other}"),
        Ok(_) => panic!("{mechanism}: a bad signature was let in"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msk_iam_signatures_are_accepted_by_a_verifying_endpoint_and_bad_ones_refused() {
    let kafka_port = free_port();
    let endpoint = MskIamEndpoint::start(kafka_port, REGION, &keys());
    let Some(kafka) = KafkaCluster::start_with(KafkaOptions::behind_proxy(kafka_port, endpoint.port())) else {
        return;
    };

    // AWS_MSK_IAM with long-term and temporary keys, and MSK's OAUTHBEARER token.
    let temporary = AwsCredentials::new(
        "ASIAKBSTESTTEMPORARY",
        "temporary-secret-key",
        Some("FwoGZXIvYXdzE/session+token==".into()),
    );
    let accepted = [
        Sasl::aws_msk_iam(msk(long_term("long-term-secret-key"), REGION)),
        Sasl::aws_msk_iam(msk(temporary.clone(), REGION)),
        Sasl::oauth_bearer(TokenSource::AwsMskIam(msk(temporary, REGION))),
    ];
    for (i, sasl) in accepted.into_iter().enumerate() {
        let client = connect(&kafka, sasl).await.unwrap();
        round_trip(&client, &format!("msk-iam-{i}")).await;
    }
    let log = endpoint.authentications();
    for (mechanism, key) in [
        ("AWS_MSK_IAM", "AKIAKBSTESTLONGTERM"),
        ("AWS_MSK_IAM", "ASIAKBSTESTTEMPORARY"),
        ("OAUTHBEARER", "ASIAKBSTESTTEMPORARY"),
    ] {
        assert!(
            log.contains(&MskAuthentication::Accepted(mechanism.into(), key.into())),
            "{log:?}"
        );
    }
    assert!(
        !log.iter().any(|a| matches!(a, MskAuthentication::Refused(..))),
        "{log:?}"
    );

    // A wrong secret, a session token that is not the key's, the wrong region.
    assert_refused(
        connect(&kafka, Sasl::aws_msk_iam(msk(long_term("not-the-secret"), REGION))).await,
        "AWS_MSK_IAM",
        "signature does not match",
    );
    let stolen_token = AwsCredentials::new(
        "ASIAKBSTESTTEMPORARY",
        "temporary-secret-key",
        Some("another-session".into()),
    );
    assert_refused(
        connect(&kafka, Sasl::aws_msk_iam(msk(stolen_token, REGION))).await,
        "AWS_MSK_IAM",
        "security token",
    );
    assert_refused(
        connect(
            &kafka,
            Sasl::aws_msk_iam(msk(long_term("long-term-secret-key"), "us-east-1")),
        )
        .await,
        "AWS_MSK_IAM",
        "scope",
    );
    assert_refused(
        connect(
            &kafka,
            Sasl::oauth_bearer(TokenSource::AwsMskIam(msk(long_term("not-the-secret"), REGION))),
        )
        .await,
        "OAUTHBEARER",
        "signature does not match",
    );
    // 127.0.0.1 names no region and none is given: a clear error before anything is sent.
    let no_region = AwsMskIam::new().with_credentials(AwsCredentialsProvider::fixed(long_term("x")));
    let unnamed = connect(&kafka, Sasl::aws_msk_iam(no_region)).await;
    assert!(
        matches!(&unnamed, Err(Error::Authentication { reason, .. }) if reason.contains("no AWS region")),
        "{:?}",
        unnamed.err()
    );
}
