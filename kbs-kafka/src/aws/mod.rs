//! Amazon MSK IAM authentication: the `AWS_MSK_IAM` SASL mechanism and MSK's OAUTHBEARER
//! tokens, both signed with AWS Signature Version 4 from credentials found the way the AWS SDKs
//! find them.
//!
//! No AWS account is used by the tests: the signatures are checked against AWS's published
//! SigV4 examples and, end to end, by a local endpoint that verifies them with botocore (the
//! library under AWS's own MSK signer) before it lets a connection through to Kafka.

mod credentials;
pub(crate) mod msk;
pub(crate) mod sigv4;

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

pub(crate) use credentials::Environment;

/// AWS credentials. `Debug` shows the access key id only.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AwsCredentials {
    /// The access key id (`AKIA…`, `ASIA…`).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// The session token of temporary credentials.
    pub session_token: Option<String>,
    /// When temporary credentials expire (`None`: long-term keys).
    pub expires_at: Option<SystemTime>,
}

impl AwsCredentials {
    /// Credentials from their parts; `session_token` for temporary credentials.
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
    ) -> AwsCredentials {
        AwsCredentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token,
            expires_at: None,
        }
    }
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &self.session_token.as_ref().map(|_| "<redacted>"))
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Where AWS credentials come from. Clones share one cache: temporary credentials are reused
/// until five minutes before they expire, then fetched again.
#[derive(Clone)]
pub struct AwsCredentialsProvider {
    inner: Arc<credentials::Provider>,
}

impl AwsCredentialsProvider {
    /// The AWS SDKs' default chain, first that answers:
    /// 1. `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`;
    /// 2. web identity (EKS IRSA): `AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN`
    ///    (`AWS_ROLE_SESSION_NAME`), exchanged with STS `AssumeRoleWithWebIdentity`;
    /// 3. the profile `AWS_PROFILE` (else `default`) of `~/.aws/credentials` and `~/.aws/config`
    ///    (`AWS_SHARED_CREDENTIALS_FILE`, `AWS_CONFIG_FILE`): static keys or `credential_process`;
    /// 4. container credentials (ECS, EKS Pod Identity): `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`
    ///    or `AWS_CONTAINER_CREDENTIALS_FULL_URI`, with `AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE)`;
    /// 5. the EC2 instance role through IMDSv2 (`AWS_EC2_METADATA_DISABLED=true` skips it,
    ///    `AWS_EC2_METADATA_SERVICE_ENDPOINT` moves it).
    ///
    /// STS is reached at `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`, or
    /// `https://sts.<region>.amazonaws.com`. Profiles that assume roles or use SSO are not read
    /// directly: point `credential_process` at `aws configure export-credentials --format
    /// process` for them.
    pub fn default_chain() -> AwsCredentialsProvider {
        AwsCredentialsProvider::with_source(credentials::Source::Chain { profile: None }, Environment::process())
    }

    /// Only the named profile of the shared files (static keys or `credential_process`).
    pub fn profile(name: impl Into<String>) -> AwsCredentialsProvider {
        AwsCredentialsProvider::with_source(
            credentials::Source::Chain {
                profile: Some(name.into()),
            },
            Environment::process(),
        )
    }

    /// Always these credentials.
    pub fn fixed(credentials: AwsCredentials) -> AwsCredentialsProvider {
        AwsCredentialsProvider::with_source(credentials::Source::Fixed(credentials), Environment::process())
    }

    pub(crate) fn with_source(source: credentials::Source, env: Environment) -> AwsCredentialsProvider {
        AwsCredentialsProvider {
            inner: Arc::new(credentials::Provider::new(source, env)),
        }
    }

    /// The current credentials, from the cache while they are fresh. Errors say which sources
    /// were tried and why each gave nothing; they never contain a secret.
    pub async fn credentials(&self) -> Result<AwsCredentials, String> {
        self.inner.credentials().await
    }

    /// The region the environment names (`AWS_REGION`, else `AWS_DEFAULT_REGION`), if any.
    pub fn environment_region(&self) -> Option<String> {
        self.inner.env.region()
    }
}

impl PartialEq for AwsCredentialsProvider {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for AwsCredentialsProvider {}

impl fmt::Debug for AwsCredentialsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner.source, f)
    }
}

/// MSK IAM settings: where the credentials come from and which region signs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AwsMskIam {
    /// The credentials.
    pub credentials: AwsCredentialsProvider,
    /// The region; `None` takes it from the broker's host name
    /// (`b-1.<cluster>.<id>.c2.kafka.<region>.amazonaws.com`), else from `AWS_REGION` /
    /// `AWS_DEFAULT_REGION`.
    pub region: Option<String>,
}

impl AwsMskIam {
    /// MSK IAM with the default credential chain and the region found from the brokers.
    pub fn new() -> AwsMskIam {
        AwsMskIam {
            credentials: AwsCredentialsProvider::default_chain(),
            region: None,
        }
    }

    /// The same settings with these credentials.
    pub fn with_credentials(mut self, credentials: AwsCredentialsProvider) -> AwsMskIam {
        self.credentials = credentials;
        self
    }

    /// The same settings signing for `region`.
    pub fn with_region(mut self, region: impl Into<String>) -> AwsMskIam {
        self.region = Some(region.into());
        self
    }

    /// The region to sign for when talking to `host`.
    pub(crate) fn region_for(&self, host: &str) -> Result<String, String> {
        if let Some(region) = &self.region {
            return Ok(region.clone());
        }
        if let Some(region) = region_of_host(host) {
            return Ok(region);
        }
        self.credentials.environment_region().ok_or_else(|| {
            format!(
                "no AWS region: {host} is not an MSK host name that names one; give the region \
                 (--aws-region) or set AWS_REGION"
            )
        })
    }
}

impl Default for AwsMskIam {
    fn default() -> Self {
        AwsMskIam::new()
    }
}

/// The region in an AWS host name: the label before `amazonaws.com` (or `amazonaws.com.cn`),
/// as in `b-1.c.abc123.c2.kafka.us-east-1.amazonaws.com` or
/// `boot-x.c1.kafka-serverless.eu-west-1.amazonaws.com`.
pub(crate) fn region_of_host(host: &str) -> Option<String> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    let at = labels.iter().rposition(|l| *l == "amazonaws")?;
    let region = labels.get(at.checked_sub(1)?)?;
    let looks_like_region = region.split('-').count() >= 3
        && region.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && region.chars().last().is_some_and(|c| c.is_ascii_digit());
    looks_like_region.then(|| (*region).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_come_from_msk_host_names() {
        for (host, region) in [
            (
                "b-1.mycluster.abc123.c2.kafka.us-east-1.amazonaws.com",
                Some("us-east-1"),
            ),
            (
                "boot-abcd.c1.kafka-serverless.eu-west-1.amazonaws.com",
                Some("eu-west-1"),
            ),
            ("b-2.x.y.c3.kafka.cn-north-1.amazonaws.com.cn", Some("cn-north-1")),
            ("B-1.X.KAFKA.AP-SOUTHEAST-2.AMAZONAWS.COM.", Some("ap-southeast-2")),
            ("127.0.0.1", None),
            ("kafka.internal.example.com", None),
            ("amazonaws.com", None),
        ] {
            assert_eq!(region_of_host(host).as_deref(), region, "{host}");
        }
        let iam = AwsMskIam::new().with_credentials(AwsCredentialsProvider::with_source(
            credentials::Source::Chain { profile: None },
            Environment::from_pairs([("AWS_REGION", "eu-central-1")]),
        ));
        assert_eq!(iam.region_for("127.0.0.1").unwrap(), "eu-central-1");
        assert_eq!(
            iam.region_for("b-1.c.x.c2.kafka.us-west-2.amazonaws.com").unwrap(),
            "us-west-2"
        );
        assert_eq!(
            iam.clone().with_region("sa-east-1").region_for("x").unwrap(),
            "sa-east-1"
        );
        let none = AwsMskIam::new().with_credentials(AwsCredentialsProvider::with_source(
            credentials::Source::Chain { profile: None },
            Environment::from_pairs::<[(&str, &str); 0], _, _>([]),
        ));
        assert!(none.region_for("127.0.0.1").unwrap_err().contains("--aws-region"));
    }

    #[test]
    fn debug_never_shows_secrets() {
        let credentials = AwsCredentials::new("AKIDEXAMPLE", "the-secret-key", Some("the-session-token".into()));
        let shown = format!(
            "{credentials:?} {:?}",
            AwsCredentialsProvider::fixed(credentials.clone())
        );
        assert!(shown.contains("AKIDEXAMPLE"), "{shown}");
        assert!(
            !shown.contains("the-secret-key") && !shown.contains("the-session-token"),
            "{shown}"
        );
    }
}
