//! Client configuration.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::aws::AwsMskIam;

/// How to reach and authenticate to the cluster. Start from [`ClientConfig::new`] and change
/// fields as needed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientConfig {
    /// `host:port` of one or more brokers to bootstrap from.
    pub bootstrap_servers: Vec<String>,
    /// Client id sent with every request (shows up in broker logs and quotas).
    pub client_id: String,
    /// Transport security and authentication.
    pub security: Security,
    /// Limit on opening a TCP connection (and the TLS and SASL handshakes).
    pub connect_timeout: Duration,
    /// Limit on waiting for one response. Fetches add their `max_wait` on top.
    pub request_timeout: Duration,
    /// Retries of retriable failures (connection loss, leader changes, timeouts).
    pub retry: RetryConfig,
    /// Largest response frame accepted; a bigger announced size fails the connection instead of
    /// allocating.
    pub max_response_bytes: usize,
    /// Largest decompressed size of one record batch.
    pub max_decompressed_batch_bytes: usize,
    /// TCP keepalive idle time; `None` turns keepalive off.
    pub tcp_keepalive: Option<Duration>,
    /// Who hears of retries and broker throttling (none by default).
    pub events: Option<crate::events::EventsHook>,
}

impl ClientConfig {
    /// A plaintext configuration for the given bootstrap brokers, with defaults: client id
    /// `kbs`, 10 s connect timeout, 30 s request timeout, 256 MiB response and batch limits,
    /// 60 s keepalive.
    pub fn new<S: Into<String>>(bootstrap_servers: impl IntoIterator<Item = S>) -> ClientConfig {
        ClientConfig {
            bootstrap_servers: bootstrap_servers.into_iter().map(Into::into).collect(),
            client_id: "kbs".to_owned(),
            security: Security::Plaintext,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            retry: RetryConfig::default(),
            max_response_bytes: 256 << 20,
            max_decompressed_batch_bytes: 256 << 20,
            tcp_keepalive: Some(Duration::from_secs(60)),
            events: None,
        }
    }

    /// Sets the security settings.
    pub fn with_security(mut self, security: Security) -> ClientConfig {
        self.security = security;
        self
    }

    /// Sends retries and broker throttling to `events`.
    pub fn with_events(mut self, events: std::sync::Arc<dyn crate::events::ClientEvents>) -> ClientConfig {
        self.events = Some(crate::events::EventsHook(events));
        self
    }
}

/// Transport security and authentication, as Kafka's `security.protocol`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Security {
    /// No TLS, no authentication (`PLAINTEXT`).
    #[default]
    Plaintext,
    /// TLS, optionally with a client certificate (`SSL`).
    Tls(TlsConfig),
    /// SASL over plain TCP (`SASL_PLAINTEXT`).
    SaslPlaintext(Sasl),
    /// SASL over TLS (`SASL_SSL`).
    SaslTls(Sasl, TlsConfig),
}

/// TLS settings. Certificates are always verified; there is deliberately no way to skip that.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TlsConfig {
    /// PEM file of the CA certificates to trust; `None` trusts the operating system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate chain, for mutual TLS.
    pub client_cert_file: Option<PathBuf>,
    /// PEM file of the client's private key (PKCS#8, PKCS#1 or SEC1), for mutual TLS.
    pub client_key_file: Option<PathBuf>,
    /// Name to verify every broker's certificate against instead of the host name of its
    /// address (useful when brokers are reached by IP address).
    pub server_name: Option<String>,
}

impl TlsConfig {
    /// TLS trusting the CA certificates in `ca_file`.
    pub fn with_ca_file(ca_file: impl Into<PathBuf>) -> TlsConfig {
        TlsConfig {
            ca_file: Some(ca_file.into()),
            ..TlsConfig::default()
        }
    }

    /// Adds a client certificate and key for mutual TLS.
    pub fn with_client_cert(mut self, cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> TlsConfig {
        self.client_cert_file = Some(cert_file.into());
        self.client_key_file = Some(key_file.into());
        self
    }

    /// Verifies broker certificates against `server_name`.
    pub fn with_server_name(mut self, server_name: impl Into<String>) -> TlsConfig {
        self.server_name = Some(server_name.into());
        self
    }
}

/// A SASL mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaslMechanism {
    /// `PLAIN` (RFC 4616): the password travels as is, so use it over TLS.
    Plain,
    /// `SCRAM-SHA-256` (RFC 5802, RFC 7677).
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
    /// `OAUTHBEARER` (RFC 7628, KIP-255): a bearer token from the [`Sasl::token`] source, read
    /// again at every authentication.
    OAuthBearer,
    /// `AWS_MSK_IAM`: Amazon MSK's IAM access control, a SigV4-signed payload made from the
    /// [`Sasl::aws`] settings at every authentication.
    AwsMskIam,
}

impl SaslMechanism {
    /// The mechanism's IANA name, as sent in SaslHandshake.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
            SaslMechanism::AwsMskIam => "AWS_MSK_IAM",
        }
    }
}

/// SASL credentials. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Sasl {
    /// The mechanism.
    pub mechanism: SaslMechanism,
    /// User name (PLAIN, SCRAM).
    pub username: String,
    /// Password (PLAIN, SCRAM).
    pub password: String,
    /// Where the bearer token comes from (OAUTHBEARER).
    pub token: Option<TokenSource>,
    /// Credentials and region (AWS_MSK_IAM).
    pub aws: Option<AwsMskIam>,
}

impl Sasl {
    /// Credentials for PLAIN or SCRAM.
    pub fn new(mechanism: SaslMechanism, username: impl Into<String>, password: impl Into<String>) -> Sasl {
        Sasl {
            mechanism,
            username: username.into(),
            password: password.into(),
            token: None,
            aws: None,
        }
    }

    /// OAUTHBEARER with a token from `token`.
    pub fn oauth_bearer(token: TokenSource) -> Sasl {
        Sasl {
            mechanism: SaslMechanism::OAuthBearer,
            username: String::new(),
            password: String::new(),
            token: Some(token),
            aws: None,
        }
    }

    /// `AWS_MSK_IAM` with these settings.
    pub fn aws_msk_iam(aws: AwsMskIam) -> Sasl {
        Sasl {
            mechanism: SaslMechanism::AwsMskIam,
            username: String::new(),
            password: String::new(),
            token: None,
            aws: Some(aws),
        }
    }
}

impl fmt::Debug for Sasl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("token", &self.token)
            .field("aws", &self.aws)
            .finish()
    }
}

/// Where an OAUTHBEARER token comes from. It is read again at every authentication (each new
/// connection, and each renewal of a session the broker limits, KIP-368), so a token refreshed
/// in its file or by its command keeps a long run going.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenSource {
    /// A fixed token.
    Static(String),
    /// A file holding the token; surrounding whitespace is ignored.
    File(std::path::PathBuf),
    /// A program (the first element) and its arguments, run without a shell; its standard
    /// output, trimmed, is the token.
    Command(Vec<String>),
    /// A token from an OAuth 2.0 / OIDC token endpoint with the client-credentials grant
    /// (RFC 6749 4.4), as Kafka's `sasl.oauthbearer.token.endpoint.url` and
    /// `sasl.oauthbearer.client.credentials.*` settings do.
    ClientCredentials(ClientCredentials),
    /// Amazon MSK's OAUTHBEARER token: a SigV4-presigned URL made from these settings at every
    /// authentication, as AWS's `aws-msk-iam-sasl-signer` libraries make it.
    AwsMskIam(AwsMskIam),
}

/// The client-credentials grant: the client authenticates to the token endpoint with HTTP
/// Basic (RFC 6749 2.3.1) and gets an access token.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientCredentials {
    /// The token endpoint (`https://…`; `http://` only for loopback addresses).
    pub token_endpoint: String,
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: String,
    /// The scope to ask for, if any.
    pub scope: Option<String>,
}

impl ClientCredentials {
    /// Credentials for `token_endpoint`, without a scope.
    pub fn new(
        token_endpoint: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> ClientCredentials {
        ClientCredentials {
            token_endpoint: token_endpoint.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            scope: None,
        }
    }
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("token_endpoint", &self.token_endpoint)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("scope", &self.scope)
            .finish()
    }
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::Static(_) => f.write_str("Static(<redacted>)"),
            TokenSource::File(path) => f.debug_tuple("File").field(path).finish(),
            TokenSource::Command(argv) => f.debug_tuple("Command").field(&argv.first()).finish(),
            TokenSource::ClientCredentials(c) => f.debug_tuple("ClientCredentials").field(c).finish(),
            TokenSource::AwsMskIam(aws) => f.debug_tuple("AwsMskIam").field(aws).finish(),
        }
    }
}

/// Retry policy for retriable failures: exponential backoff from `backoff`, doubling up to
/// `max_backoff`, for at most `attempts` attempts in total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryConfig {
    /// Attempts in total, the first included (at least 1).
    pub attempts: u32,
    /// Wait before the first retry.
    pub backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
}

impl RetryConfig {
    /// A policy of `attempts` attempts with backoff from `backoff` up to `max_backoff`.
    pub fn new(attempts: u32, backoff: Duration, max_backoff: Duration) -> RetryConfig {
        RetryConfig {
            attempts,
            backoff,
            max_backoff,
        }
    }

    /// The wait before retry number `retry` (1-based).
    pub(crate) fn delay(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.saturating_sub(1).min(20)).unwrap_or(u32::MAX);
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

impl Default for RetryConfig {
    /// 16 attempts, 100 ms doubling to 2 s: about 23 s of waiting in all, longer than a
    /// cluster takes to notice a dead broker (Kafka's `broker.session.timeout.ms`, 9 s by
    /// default) and elect new leaders.
    fn default() -> Self {
        RetryConfig {
            attempts: 16,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_debug_redacts_the_password() {
        let sasl = Sasl::new(SaslMechanism::ScramSha512, "alice", "hunter2-secret");
        let security = Security::SaslTls(sasl, TlsConfig::default());
        let config = ClientConfig::new(["b:9092"]).with_security(security);
        let shown = format!("{config:?} {config:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("alice") && shown.contains("<redacted>"));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let retry = RetryConfig::default();
        assert_eq!(retry.delay(1), Duration::from_millis(100));
        assert_eq!(retry.delay(2), Duration::from_millis(200));
        assert_eq!(retry.delay(5), Duration::from_millis(1600));
        assert_eq!(retry.delay(6), Duration::from_secs(2));
        assert_eq!(retry.delay(60), Duration::from_secs(2));
    }
}
