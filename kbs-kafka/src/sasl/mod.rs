//! SASL authentication over SaslHandshake v1 + SaslAuthenticate: PLAIN (RFC 4616),
//! SCRAM-SHA-256 / SCRAM-SHA-512 (`scram`), OAUTHBEARER (`oauth`) and Amazon MSK's AWS_MSK_IAM
//! (see `crate::aws::msk`), when a connection opens and again on the live connection before
//! the session the broker granted ends (KIP-368, see `crate::connection`). Passwords, tokens and keys never
//! reach errors or logs.

mod oauth;
mod scram;

use bytes::Bytes;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;

use crate::config::{Sasl, SaslMechanism};
use crate::error::{Error, ErrorCode, Result};
use crate::metadata::host_of;
use crate::protocol::Api;

pub(crate) use oauth::oauth_bearer_message;
use oauth::read_token;
use scram::{ScramClient, random_nonce};

/// Where a SASL exchange runs: the fresh stream of a connection being set up, or a live
/// connection re-authenticating.
pub(crate) trait SaslChannel {
    /// `host:port` of the broker.
    fn broker(&self) -> &str;
    /// The version of `R` to use.
    fn version<R: Api>(&self) -> Result<i16>;
    /// Sends one request and waits for its response.
    async fn call<R: Api>(&mut self, request: &R, version: i16) -> Result<R::Response>;
}

/// Authenticates over `channel`. Returns the session lifetime the broker granted
/// (SaslAuthenticate v1+ `session_lifetime_ms`; `None` when it sets none): before it ends, the
/// connection must authenticate again or be closed by the broker (KIP-368).
pub(crate) async fn authenticate<C: SaslChannel>(channel: &mut C, sasl: &Sasl) -> Result<Option<std::time::Duration>> {
    let mut session_ms = 0i64;
    let mechanism = sasl.mechanism.name();
    let failed = |broker: &str, reason: String| Error::Authentication {
        broker: broker.to_owned(),
        mechanism: mechanism.to_owned(),
        reason,
    };
    let version = channel.version::<SaslHandshakeRequest>()?;
    let mut request = SaslHandshakeRequest::default();
    request.mechanism = StrBytes::from_static_str(mechanism);
    let response = channel.call(&request, version).await?;
    if let Some(code) = ErrorCode::check(response.error_code) {
        let offered: Vec<&str> = response.mechanisms.iter().map(|m| m.as_str()).collect();
        return Err(failed(
            channel.broker(),
            format!("SaslHandshake: {code}; the broker offers {offered:?}"),
        ));
    }
    let version = channel.version::<SaslAuthenticateRequest>()?;
    match sasl.mechanism {
        SaslMechanism::Plain => {
            let mut message = Vec::with_capacity(2 + sasl.username.len() + sasl.password.len());
            message.push(0);
            message.extend_from_slice(sasl.username.as_bytes());
            message.push(0);
            message.extend_from_slice(sasl.password.as_bytes());
            exchange(channel, &mut session_ms, version, message, mechanism).await?;
        }
        SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
            let mut scram = ScramClient::new(sasl, random_nonce());
            let server_first = exchange(channel, &mut session_ms, version, scram.client_first(), mechanism).await?;
            let client_final = scram
                .client_final(&server_first)
                .map_err(|r| failed(channel.broker(), r))?;
            let server_final = exchange(channel, &mut session_ms, version, client_final, mechanism).await?;
            scram
                .verify_server_final(&server_final)
                .map_err(|r| failed(channel.broker(), r))?;
        }
        SaslMechanism::OAuthBearer => {
            let source = sasl
                .token
                .as_ref()
                .ok_or_else(|| failed(channel.broker(), "no token source is configured".into()))?;
            let token = read_token(source, host_of(channel.broker()))
                .await
                .map_err(|r| failed(channel.broker(), r))?;
            let challenge = exchange(
                channel,
                &mut session_ms,
                version,
                oauth_bearer_message(&token),
                mechanism,
            )
            .await?;
            if !challenge.is_empty() {
                // RFC 7628 3.2.3: the server's error, answered with a lone %x01 before it ends
                // the exchange. The error is JSON such as {"status":"invalid_token"}.
                let _ = exchange(channel, &mut session_ms, version, vec![0x01], mechanism).await;
                let status: String = String::from_utf8_lossy(&challenge).chars().take(300).collect();
                return Err(failed(
                    channel.broker(),
                    format!("the broker refused the token: {status}"),
                ));
            }
        }
        SaslMechanism::AwsMskIam => {
            let aws = sasl
                .aws
                .as_ref()
                .ok_or_else(|| failed(channel.broker(), "no AWS settings are configured".into()))?;
            let host = host_of(channel.broker()).to_owned();
            let region = aws.region_for(&host).map_err(|r| failed(channel.broker(), r))?;
            let credentials = aws
                .credentials
                .credentials()
                .await
                .map_err(|r| failed(channel.broker(), r))?;
            let payload = crate::aws::msk::auth_payload(&host, &region, &credentials, std::time::SystemTime::now());
            let answer = exchange(channel, &mut session_ms, version, payload, mechanism).await?;
            // A successful answer is a JSON object with the broker's request id.
            let request_id = serde_json::from_slice::<serde_json::Value>(&answer)
                .ok()
                .and_then(|json| json.get("request-id").and_then(|id| id.as_str()).map(str::to_owned))
                .ok_or_else(|| failed(channel.broker(), "the broker's answer is not MSK IAM's JSON".into()))?;
            tracing::debug!(
                broker = channel.broker(),
                access_key_id = %credentials.access_key_id,
                %region,
                %request_id,
                "MSK IAM accepted"
            );
        }
    }
    tracing::debug!(broker = channel.broker(), mechanism, user = %sasl.username, session_ms, "authenticated");
    Ok((session_ms > 0).then(|| std::time::Duration::from_millis(session_ms as u64)))
}

/// One SaslAuthenticate round; notes the session lifetime the broker grants.
async fn exchange<C: SaslChannel>(
    channel: &mut C,
    session_ms: &mut i64,
    version: i16,
    message: Vec<u8>,
    mechanism: &str,
) -> Result<Bytes> {
    let mut request = SaslAuthenticateRequest::default();
    request.auth_bytes = Bytes::from(message);
    let response = channel.call(&request, version).await?;
    if let Some(code) = ErrorCode::check(response.error_code) {
        let detail = response
            .error_message
            .as_ref()
            .map(|m| format!(": {}", m.as_str()))
            .unwrap_or_default();
        return Err(Error::Authentication {
            broker: channel.broker().to_owned(),
            mechanism: mechanism.to_owned(),
            reason: format!("{code}{detail}"),
        });
    }
    *session_ms = response.session_lifetime_ms;
    Ok(response.auth_bytes)
}
