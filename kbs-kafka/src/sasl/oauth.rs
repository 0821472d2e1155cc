//! OAUTHBEARER (RFC 7628) tokens: the client's message, and reading a token from its source
//! (as is, a file, a command, an OAuth 2.0 token endpoint, or an MSK IAM signature). A token or
//! client secret never reaches an error.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::config::{ClientCredentials, TokenSource};
use crate::urls::{may_carry_secrets, percent_encode};

/// The OAUTHBEARER client's first message (RFC 7628 3.1): GS2 header without authorization
/// id, then `auth=Bearer <token>`, each key-value pair ended by %x01, and a final %x01.
pub(crate) fn oauth_bearer_message(token: &str) -> Vec<u8> {
    format!("n,,\x01auth=Bearer {token}\x01\x01").into_bytes()
}

/// Reads the token from its source; `host` is the broker's (MSK tokens may take their region
/// from it). Errors never contain the token.
pub(crate) async fn read_token(source: &TokenSource, host: &str) -> std::result::Result<String, String> {
    let token = match source {
        TokenSource::Static(token) => token.trim().to_owned(),
        TokenSource::File(path) => tokio::fs::read_to_string(path)
            .await
            .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?
            .trim()
            .to_owned(),
        TokenSource::Command(argv) => {
            let (program, args) = argv
                .split_first()
                .ok_or_else(|| "the token command is empty".to_owned())?;
            let out = tokio::process::Command::new(program)
                .args(args)
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .output()
                .await
                .map_err(|e| format!("cannot run the token command {program}: {e}"))?;
            if !out.status.success() {
                return Err(format!("the token command {program} failed ({})", out.status));
            }
            String::from_utf8(out.stdout)
                .map_err(|_| format!("the token command {program} printed something that is not UTF-8"))?
                .trim()
                .to_owned()
        }
        TokenSource::ClientCredentials(credentials) => client_credentials_token(credentials).await?,
        TokenSource::AwsMskIam(aws) => {
            let region = aws.region_for(host)?;
            let credentials = aws.credentials.credentials().await?;
            crate::aws::msk::oauth_token(&region, &credentials, std::time::SystemTime::now())
        }
    };
    if token.is_empty() {
        return Err("the token is empty".into());
    }
    // RFC 6750's b64token: no spaces or control characters (they would break the message).
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the token contains spaces or control characters".into());
    }
    Ok(token)
}

/// Asks the token endpoint for an access token with the client-credentials grant. Errors name
/// the endpoint and its answer, never the secret.
async fn client_credentials_token(credentials: &ClientCredentials) -> std::result::Result<String, String> {
    let endpoint = &credentials.token_endpoint;
    let url = reqwest::Url::parse(endpoint).map_err(|e| format!("token endpoint {endpoint}: {e}"))?;
    if !may_carry_secrets(&url, &[]) {
        return Err(format!(
            "token endpoint {endpoint}: use https (http only on loopback), the client secret would travel in clear"
        ));
    }
    let basic = BASE64.encode(format!(
        "{}:{}",
        percent_encode(&credentials.client_id, false),
        percent_encode(&credentials.client_secret, false)
    ));
    let mut body = "grant_type=client_credentials".to_owned();
    if let Some(scope) = &credentials.scope {
        body.push_str("&scope=");
        body.push_str(&percent_encode(scope, false));
    }
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| format!("token endpoint {endpoint}: {e}"))?;
    let response = client
        .post(url)
        .header("Authorization", format!("Basic {basic}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Accept", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("token endpoint {endpoint}: {}", e.without_url()))?;
    let status = response.status();
    // A token response is small; a larger answer is not one.
    let text = response
        .text()
        .await
        .map_err(|e| format!("token endpoint {endpoint}: {}", e.without_url()))?;
    let shown: String = text.chars().take(300).collect();
    if !status.is_success() {
        return Err(format!("token endpoint {endpoint} answered {status}: {shown}"));
    }
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|_| format!("token endpoint {endpoint} answered no JSON"))?;
    json.get("access_token")
        .and_then(|t| t.as_str())
        .map(str::to_owned)
        .ok_or_else(|| format!("token endpoint {endpoint} answered no access_token"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oauth_bearer_first_message_follows_rfc_7628() {
        assert_eq!(
            oauth_bearer_message("eyJhbGciOiJub25lIn0.e30."),
            b"n,,\x01auth=Bearer eyJhbGciOiJub25lIn0.e30.\x01\x01".to_vec()
        );
    }

    #[tokio::test]
    async fn bad_tokens_are_refused_without_being_echoed() {
        for bad in ["", "  ", "two words", "a\x01b"] {
            let error = read_token(&TokenSource::Static(bad.into()), "h").await.unwrap_err();
            assert!(bad.trim().is_empty() || !error.contains(bad), "{error}");
        }
        assert_eq!(
            read_token(&TokenSource::Static(" t.k.n \n".into()), "h").await.unwrap(),
            "t.k.n"
        );
        let missing = read_token(&TokenSource::File("/nonexistent/token".into()), "h")
            .await
            .unwrap_err();
        assert!(missing.contains("/nonexistent/token"), "{missing}");
        let failing = read_token(&TokenSource::Command(vec!["false".into()]), "h")
            .await
            .unwrap_err();
        assert!(failing.contains("failed"), "{failing}");
    }
}
