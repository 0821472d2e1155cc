//! The AWS SDKs' default credential chain (see [`AwsCredentialsProvider::default_chain`]) and
//! its cache. Errors name the source and what it answered, never a secret.
//!
//! [`AwsCredentialsProvider::default_chain`]: super::AwsCredentialsProvider::default_chain

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::AwsCredentials;

/// Temporary credentials are fetched again this long before they expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

/// The largest answer read from a credential endpoint or `credential_process`.
const MAX_ANSWER_BYTES: usize = 64 << 10;

/// Where the provider's credentials come from.
#[derive(Clone)]
pub(crate) enum Source {
    /// The default chain, or only the named profile.
    Chain { profile: Option<String> },
    /// Fixed credentials.
    Fixed(AwsCredentials),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Chain { profile: None } => f.write_str("AwsCredentialsProvider(default chain)"),
            Source::Chain { profile: Some(p) } => write!(f, "AwsCredentialsProvider(profile {p})"),
            Source::Fixed(c) => write!(f, "AwsCredentialsProvider(fixed {})", c.access_key_id),
        }
    }
}

/// The environment variables the chain reads: the process's, or a fixed set (tests).
#[derive(Clone, Debug)]
pub(crate) enum Environment {
    Process,
    #[cfg(test)]
    Fixed(HashMap<String, String>),
}

impl Environment {
    pub(crate) fn process() -> Environment {
        Environment::Process
    }

    #[cfg(test)]
    pub(crate) fn from_pairs<I, K, V>(pairs: I) -> Environment
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Environment::Fixed(pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }

    /// A variable's value; unset and empty are the same.
    fn get(&self, name: &str) -> Option<String> {
        let value = match self {
            Environment::Process => std::env::var(name).ok(),
            #[cfg(test)]
            Environment::Fixed(vars) => vars.get(name).cloned(),
        };
        value.filter(|v| !v.trim().is_empty())
    }

    pub(crate) fn region(&self) -> Option<String> {
        self.get("AWS_REGION").or_else(|| self.get("AWS_DEFAULT_REGION"))
    }

    fn home(&self) -> Option<PathBuf> {
        self.get("HOME").or_else(|| self.get("USERPROFILE")).map(PathBuf::from)
    }
}

/// A source of credentials with its cache.
pub(crate) struct Provider {
    pub(crate) source: Source,
    pub(crate) env: Environment,
    cache: tokio::sync::Mutex<Option<AwsCredentials>>,
}

impl Provider {
    pub(crate) fn new(source: Source, env: Environment) -> Provider {
        Provider {
            source,
            env,
            cache: tokio::sync::Mutex::new(None),
        }
    }

    pub(crate) async fn credentials(&self) -> Result<AwsCredentials, String> {
        let profile = match &self.source {
            Source::Fixed(credentials) => return Ok(credentials.clone()),
            Source::Chain { profile } => profile,
        };
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache.as_ref() {
            let fresh = match cached.expires_at {
                None => true,
                Some(at) => at
                    .duration_since(SystemTime::now())
                    .is_ok_and(|left| left > REFRESH_BEFORE_EXPIRY),
            };
            if fresh {
                return Ok(cached.clone());
            }
        }
        let credentials = match profile {
            Some(name) => from_profile(&self.env, name)
                .await?
                .ok_or_else(|| format!("AWS profile {name}: not found in the shared credentials or config file"))?,
            None => self.chain().await?,
        };
        *cache = Some(credentials.clone());
        Ok(credentials)
    }

    async fn chain(&self) -> Result<AwsCredentials, String> {
        let env = &self.env;
        let mut skipped = Vec::new();
        match from_environment(env)? {
            Some(c) => return Ok(c),
            None => skipped.push("environment: AWS_ACCESS_KEY_ID is not set".to_owned()),
        }
        match from_web_identity(env).await? {
            Some(c) => return Ok(c),
            None => skipped.push("web identity: AWS_WEB_IDENTITY_TOKEN_FILE is not set".to_owned()),
        }
        let profile = env.get("AWS_PROFILE").unwrap_or_else(|| "default".to_owned());
        match from_profile(env, &profile).await? {
            Some(c) => return Ok(c),
            None => skipped.push(format!(
                "profile {profile}: not in the shared credentials or config file"
            )),
        }
        match from_container(env).await? {
            Some(c) => return Ok(c),
            None => skipped.push("container: AWS_CONTAINER_CREDENTIALS_*_URI is not set".to_owned()),
        }
        match from_instance_metadata(env).await {
            Ok(c) => return Ok(c),
            Err(why) => skipped.push(format!("EC2 instance metadata: {why}")),
        }
        Err(format!("no AWS credentials found ({})", skipped.join("; ")))
    }
}

fn from_environment(env: &Environment) -> Result<Option<AwsCredentials>, String> {
    let Some(access_key_id) = env.get("AWS_ACCESS_KEY_ID") else {
        return Ok(None);
    };
    let secret = env
        .get("AWS_SECRET_ACCESS_KEY")
        .ok_or("environment: AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not")?;
    Ok(Some(AwsCredentials::new(
        access_key_id,
        secret,
        env.get("AWS_SESSION_TOKEN"),
    )))
}

fn http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(2)))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))
}

/// Reads an answer, bounded; the text is returned for parsing, never put in an error.
async fn read_answer(response: reqwest::Response, what: &str) -> Result<(reqwest::StatusCode, String), String> {
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| format!("{what}: {}", e.without_url()))?;
    if bytes.len() > MAX_ANSWER_BYTES {
        return Err(format!("{what}: the answer is over {MAX_ANSWER_BYTES} bytes"));
    }
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

fn parse_expiration(text: &str, what: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(text.trim()).map_err(|e| format!("{what}: Expiration {text:?}: {e}"))
}

/// `{"AccessKeyId", "SecretAccessKey", "Token" or "SessionToken", "Expiration"}`, as the
/// container and instance endpoints and `credential_process` answer.
fn from_json(text: &str, what: &str) -> Result<AwsCredentials, String> {
    let json: serde_json::Value = serde_json::from_str(text).map_err(|_| format!("{what}: the answer is not JSON"))?;
    let field = |name: &str| json.get(name).and_then(|v| v.as_str()).filter(|v| !v.is_empty());
    let (Some(access_key_id), Some(secret)) = (field("AccessKeyId"), field("SecretAccessKey")) else {
        return Err(format!("{what}: the answer has no AccessKeyId and SecretAccessKey"));
    };
    let mut credentials = AwsCredentials::new(
        access_key_id,
        secret,
        field("Token").or_else(|| field("SessionToken")).map(str::to_owned),
    );
    if let Some(expiration) = field("Expiration") {
        credentials.expires_at = Some(parse_expiration(expiration, what)?);
    }
    Ok(credentials)
}

/// STS `AssumeRoleWithWebIdentity` with the token in `AWS_WEB_IDENTITY_TOKEN_FILE` (read at
/// every refresh: Kubernetes rotates it).
async fn from_web_identity(env: &Environment) -> Result<Option<AwsCredentials>, String> {
    let Some(token_file) = env.get("AWS_WEB_IDENTITY_TOKEN_FILE") else {
        return Ok(None);
    };
    let what = "web identity";
    let role_arn = env.get("AWS_ROLE_ARN").ok_or(format!(
        "{what}: AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not"
    ))?;
    let token = tokio::fs::read_to_string(&token_file)
        .await
        .map_err(|e| format!("{what}: cannot read {token_file}: {e}"))?;
    let session_name = env.get("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        format!("kbs-{}", now.as_millis())
    });
    let endpoint = env
        .get("AWS_ENDPOINT_URL_STS")
        .or_else(|| env.get("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|| match env.region() {
            Some(region) => format!("https://sts.{region}.amazonaws.com"),
            None => "https://sts.amazonaws.com".to_owned(),
        });
    let form = [
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", "2011-06-15"),
        ("RoleArn", role_arn.as_str()),
        ("RoleSessionName", session_name.as_str()),
        ("WebIdentityToken", token.trim()),
    ];
    let body = form
        .iter()
        .map(|(k, v)| format!("{k}={}", crate::urls::percent_encode(v, false)))
        .collect::<Vec<_>>()
        .join("&");
    let response = http_client(Duration::from_secs(30))?
        .post(&endpoint)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("{what}: STS {endpoint}: {}", e.without_url()))?;
    let (status, text) = read_answer(response, what).await?;
    if !status.is_success() {
        let code = xml_text(&text, "Code").unwrap_or_default();
        let message = xml_text(&text, "Message").unwrap_or_default();
        return Err(format!(
            "{what}: STS {endpoint} refused AssumeRoleWithWebIdentity for {role_arn}: {status} {code} {message}"
        ));
    }
    let field = |name: &str| xml_text(&text, name).filter(|v| !v.is_empty());
    let (Some(access_key_id), Some(secret)) = (field("AccessKeyId"), field("SecretAccessKey")) else {
        return Err(format!("{what}: STS answered without AccessKeyId and SecretAccessKey"));
    };
    let mut credentials = AwsCredentials::new(access_key_id, secret, field("SessionToken"));
    if let Some(expiration) = field("Expiration") {
        credentials.expires_at = Some(parse_expiration(&expiration, what)?);
    }
    Ok(Some(credentials))
}

/// The text of the first `<name>…</name>` element, with XML's five entities decoded.
fn xml_text(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    Some(
        xml[start..end]
            .trim()
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// One profile's keys from an INI file: `[name]` in the credentials file, `[profile name]`
/// (or `[default]`) in the config file.
fn ini_section(text: &str, section: &str) -> Option<HashMap<String, String>> {
    let mut found = None;
    let mut current = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.split_whitespace().collect::<Vec<_>>().join(" ") == section;
            if current {
                found.get_or_insert_with(HashMap::new);
            }
            continue;
        }
        if current && let Some((key, value)) = line.split_once('=') {
            found
                .get_or_insert_with(HashMap::new)
                .insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    found
}

async fn read_optional(path: &PathBuf) -> Result<Option<String>, String> {
    match tokio::fs::read_to_string(path).await {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// A profile of the shared files: static keys, else `credential_process`.
async fn from_profile(env: &Environment, name: &str) -> Result<Option<AwsCredentials>, String> {
    let home = env.home();
    let file = |var: &str, default: &str| -> Option<PathBuf> {
        env.get(var)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
    };
    let mut keys = HashMap::new();
    if let Some(path) = file("AWS_CONFIG_FILE", "config")
        && let Some(text) = read_optional(&path).await?
    {
        let section = if name == "default" {
            "default".to_owned()
        } else {
            format!("profile {name}")
        };
        keys.extend(ini_section(&text, &section).unwrap_or_default());
    }
    if let Some(path) = file("AWS_SHARED_CREDENTIALS_FILE", "credentials")
        && let Some(text) = read_optional(&path).await?
    {
        keys.extend(ini_section(&text, name).unwrap_or_default());
    }
    if keys.is_empty() {
        return Ok(None);
    }
    let what = format!("profile {name}");
    if let Some(access_key_id) = keys.get("aws_access_key_id") {
        let secret = keys
            .get("aws_secret_access_key")
            .ok_or(format!("{what}: aws_access_key_id without aws_secret_access_key"))?;
        return Ok(Some(AwsCredentials::new(
            access_key_id.clone(),
            secret.clone(),
            keys.get("aws_session_token").cloned(),
        )));
    }
    if let Some(command) = keys.get("credential_process") {
        return credential_process(command, &what).await.map(Some);
    }
    if keys.contains_key("role_arn") || keys.keys().any(|k| k.starts_with("sso_")) {
        return Err(format!(
            "{what} assumes a role or uses SSO, which kbs does not read directly; add \
             credential_process = aws configure export-credentials --profile {name} --format process"
        ));
    }
    Ok(None)
}

/// Runs a profile's `credential_process` through the shell; its output is never shown.
async fn credential_process(command: &str, what: &str) -> Result<AwsCredentials, String> {
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .map_err(|e| format!("{what}: cannot run credential_process: {e}"))?;
    if !out.status.success() {
        return Err(format!("{what}: credential_process failed ({})", out.status));
    }
    if out.stdout.len() > MAX_ANSWER_BYTES {
        return Err(format!(
            "{what}: credential_process printed over {MAX_ANSWER_BYTES} bytes"
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let what = format!("{what}: credential_process");
    let version = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|j| j.get("Version").and_then(|v| v.as_i64()));
    if version != Some(1) {
        return Err(format!("{what}: the output is not JSON with \"Version\": 1"));
    }
    from_json(&text, &what)
}

/// ECS task roles and EKS Pod Identity.
async fn from_container(env: &Environment) -> Result<Option<AwsCredentials>, String> {
    let what = "container credentials";
    let url = if let Some(relative) = env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
        format!("http://169.254.170.2{relative}")
    } else if let Some(full) = env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
        let parsed = reqwest::Url::parse(&full).map_err(|e| format!("{what}: {full}: {e}"))?;
        let agents: Vec<std::net::IpAddr> = ["169.254.170.2", "169.254.170.23", "fd00:ec2::23"]
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        if !crate::urls::may_carry_secrets(&parsed, &agents) {
            return Err(format!(
                "{what}: {full} must be https, or http on loopback or the ECS/EKS link-local addresses"
            ));
        }
        full
    } else {
        return Ok(None);
    };
    let authorization = match env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
        Some(file) => Some(
            tokio::fs::read_to_string(&file)
                .await
                .map_err(|e| format!("{what}: cannot read {file}: {e}"))?
                .trim()
                .to_owned(),
        ),
        None => env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
    };
    let mut request = http_client(Duration::from_secs(5))?.get(&url);
    if let Some(authorization) = authorization {
        request = request.header("Authorization", authorization);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("{what}: {url}: {}", e.without_url()))?;
    let (status, text) = read_answer(response, what).await?;
    if !status.is_success() {
        return Err(format!("{what}: {url} answered {status}"));
    }
    from_json(&text, what).map(Some)
}

/// The EC2 instance role, through IMDSv2 (a session token first).
async fn from_instance_metadata(env: &Environment) -> Result<AwsCredentials, String> {
    if env
        .get("AWS_EC2_METADATA_DISABLED")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return Err("AWS_EC2_METADATA_DISABLED is true".into());
    }
    let base = env
        .get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .unwrap_or_else(|| "http://169.254.169.254".to_owned());
    let base = base.trim_end_matches('/');
    let client = http_client(Duration::from_secs(2))?;
    let unreachable = |e: reqwest::Error| format!("no answer from {base}: {}", e.without_url());
    let token_response = client
        .put(format!("{base}/latest/api/token"))
        .header("X-aws-ec2-metadata-token-ttl-seconds", "21600")
        .send()
        .await
        .map_err(unreachable)?;
    let (status, token) = read_answer(token_response, "IMDS token").await?;
    if !status.is_success() {
        return Err(format!("{base} refused a session token: {status}"));
    }
    let list = format!("{base}/latest/meta-data/iam/security-credentials/");
    let get = |url: String| client.get(url).header("X-aws-ec2-metadata-token", token.trim()).send();
    let (status, roles) = read_answer(get(list.clone()).await.map_err(unreachable)?, "IMDS").await?;
    if !status.is_success() {
        return Err(format!("{list} answered {status} (no instance role?)"));
    }
    let role = roles
        .lines()
        .next()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .ok_or("the instance has no IAM role")?;
    let (status, text) = read_answer(get(format!("{list}{role}")).await.map_err(unreachable)?, "IMDS").await?;
    if !status.is_success() {
        return Err(format!("{list}{role} answered {status}"));
    }
    from_json(&text, "EC2 instance metadata")
}

#[cfg(test)]
mod tests {
    use kbs_testkit::HttpStub;

    use super::*;
    use crate::aws::AwsCredentialsProvider;

    fn chain(pairs: &[(&str, &str)]) -> AwsCredentialsProvider {
        let mut vars: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        // Never reach a real instance metadata service from a test.
        if !pairs.iter().any(|(k, _)| *k == "AWS_EC2_METADATA_SERVICE_ENDPOINT") {
            vars.push(("AWS_EC2_METADATA_DISABLED".into(), "true".into()));
        }
        vars.push(("HOME".into(), "/nonexistent-home".into()));
        AwsCredentialsProvider::with_source(Source::Chain { profile: None }, Environment::from_pairs(vars))
    }

    #[tokio::test]
    async fn environment_keys_come_first() {
        let credentials = chain(&[
            ("AWS_ACCESS_KEY_ID", "AKIDENV"),
            ("AWS_SECRET_ACCESS_KEY", "env-secret"),
            ("AWS_SESSION_TOKEN", "env-token"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent"),
        ])
        .credentials()
        .await
        .unwrap();
        assert_eq!(credentials.access_key_id, "AKIDENV");
        assert_eq!(credentials.session_token.as_deref(), Some("env-token"));
        let half = chain(&[("AWS_ACCESS_KEY_ID", "AKIDENV")])
            .credentials()
            .await
            .unwrap_err();
        assert!(half.contains("AWS_SECRET_ACCESS_KEY"), "{half}");
    }

    #[tokio::test]
    async fn nothing_configured_names_every_source_tried() {
        let error = chain(&[]).credentials().await.unwrap_err();
        for source in [
            "environment",
            "web identity",
            "profile default",
            "container",
            "EC2 instance metadata",
        ] {
            assert!(error.contains(source), "{error}");
        }
    }

    #[tokio::test]
    async fn profiles_give_keys_or_run_credential_process() {
        let dir = tempfile::tempdir().unwrap();
        let credentials_file = dir.path().join("credentials");
        let config_file = dir.path().join("config");
        std::fs::write(
            &credentials_file,
            "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = default-secret\n\n\
             [ops]\n# a comment\naws_access_key_id=AKIDOPS\naws_secret_access_key=ops-secret\naws_session_token=ops-token\n",
        )
        .unwrap();
        std::fs::write(
            &config_file,
            "[profile proc]\ncredential_process = printf '{\"Version\": 1, \"AccessKeyId\": \"AKIDPROC\", \
             \"SecretAccessKey\": \"proc-secret\", \"SessionToken\": \"proc-token\", \"Expiration\": \"2999-01-01T00:00:00Z\"}'\n\
             [profile sso]\nsso_start_url = https://example.awsapps.com/start\n\
             [profile broken]\ncredential_process = printf 'AKIDLEAK proc-secret-leak'\n",
        )
        .unwrap();
        let files = [
            ("AWS_SHARED_CREDENTIALS_FILE", credentials_file.to_str().unwrap()),
            ("AWS_CONFIG_FILE", config_file.to_str().unwrap()),
        ];
        let with = |profile: &str| {
            let mut pairs = files.to_vec();
            pairs.push(("AWS_PROFILE", profile));
            chain(&pairs)
        };
        assert_eq!(chain(&files).credentials().await.unwrap().access_key_id, "AKIDDEFAULT");
        let ops = with("ops").credentials().await.unwrap();
        assert_eq!(
            (ops.access_key_id.as_str(), ops.session_token.as_deref()),
            ("AKIDOPS", Some("ops-token"))
        );
        let proc = with("proc").credentials().await.unwrap();
        assert_eq!(proc.access_key_id, "AKIDPROC");
        assert!(proc.expires_at.is_some());
        let sso = with("sso").credentials().await.unwrap_err();
        assert!(sso.contains("export-credentials --profile sso"), "{sso}");
        let broken = with("broken").credentials().await.unwrap_err();
        assert!(broken.contains("Version") && !broken.contains("leak"), "{broken}");
        let missing = with("nope").credentials().await.unwrap_err();
        assert!(missing.contains("profile nope"), "{missing}");
    }

    #[tokio::test]
    async fn web_identity_is_exchanged_with_sts_and_cached_until_near_expiry() {
        let sts = HttpStub::start(|request| {
            let form = &request.body;
            if !form.contains("Action=AssumeRoleWithWebIdentity") || !form.contains("WebIdentityToken=jwt.from.k8s") {
                return (
                    400,
                    "<ErrorResponse><Error><Code>InvalidParameterValue</Code></Error></ErrorResponse>".into(),
                );
            }
            if form.contains("RoleArn=arn%3Aaws%3Aiam%3A%3A123%3Arole%2Fdenied") {
                return (
                    403,
                    "<ErrorResponse><Error><Code>AccessDenied</Code><Message>Not authorized</Message></Error></ErrorResponse>"
                        .into(),
                );
            }
            let expiration = humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(3600));
            (
                200,
                format!(
                    "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>\
                     <AccessKeyId>ASIASTS</AccessKeyId><SecretAccessKey>sts-secret</SecretAccessKey>\
                     <SessionToken>sts/token+&amp;=</SessionToken><Expiration>{expiration}</Expiration>\
                     </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
                ),
            )
        });
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "jwt.from.k8s\n").unwrap();
        let endpoint = sts.url("");
        let provider = |role: &str| {
            chain(&[
                ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_str().unwrap()),
                ("AWS_ROLE_ARN", role),
                ("AWS_ENDPOINT_URL_STS", &endpoint),
            ])
        };
        let allowed = provider("arn:aws:iam::123:role/backup");
        let credentials = allowed.credentials().await.unwrap();
        assert_eq!(credentials.access_key_id, "ASIASTS");
        assert_eq!(credentials.session_token.as_deref(), Some("sts/token+&="));
        allowed.clone().credentials().await.unwrap();
        assert_eq!(sts.requests().len(), 1, "an hour-long credential is fetched once");
        let denied = provider("arn:aws:iam::123:role/denied")
            .credentials()
            .await
            .unwrap_err();
        assert!(
            denied.contains("AccessDenied") && denied.contains("Not authorized"),
            "{denied}"
        );
    }

    #[tokio::test]
    async fn container_credentials_send_the_authorization_token() {
        let agent = HttpStub::start(|request| {
            if request.header("authorization") != Some("pod-identity-token") {
                return (401, String::new());
            }
            (
                200,
                r#"{"AccessKeyId":"ASIAPOD","SecretAccessKey":"pod-secret","Token":"pod-token","Expiration":"2999-01-01T00:00:00Z"}"#.into(),
            )
        });
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "pod-identity-token\n").unwrap();
        let url = agent.url("/v1/credentials");
        let credentials = chain(&[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &url),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token_file.to_str().unwrap()),
        ])
        .credentials()
        .await
        .unwrap();
        assert_eq!(credentials.access_key_id, "ASIAPOD");
        let first = &agent.requests()[0];
        assert_eq!((first.method.as_str(), first.path.as_str()), ("GET", "/v1/credentials"));
        let refused = chain(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", &url)])
            .credentials()
            .await
            .unwrap_err();
        assert!(refused.contains("401"), "{refused}");
        let remote = chain(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://example.com/creds")])
            .credentials()
            .await
            .unwrap_err();
        assert!(remote.contains("must be https"), "{remote}");
    }

    #[tokio::test]
    async fn the_instance_role_comes_through_imdsv2() {
        let imds = HttpStub::start(|request| {
            let has_token = request.header("x-aws-ec2-metadata-token") == Some("imds-session");
            match [request.method.as_str(), request.path.as_str()] {
                ["PUT", "/latest/api/token"] => (200, "imds-session".into()),
                ["GET", "/latest/meta-data/iam/security-credentials/"] if has_token => (200, "backup-role\n".into()),
                ["GET", "/latest/meta-data/iam/security-credentials/backup-role"] if has_token => (
                    200,
                    r#"{"Code":"Success","AccessKeyId":"ASIAEC2","SecretAccessKey":"ec2-secret","Token":"ec2-token","Expiration":"2999-01-01T00:00:00Z"}"#.into(),
                ),
                _ => (401, String::new()),
            }
        });
        let endpoint = imds.url("");
        let credentials = chain(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &endpoint)])
            .credentials()
            .await
            .unwrap();
        assert_eq!(credentials.access_key_id, "ASIAEC2");
        assert_eq!(imds.requests().len(), 3);
    }
}
