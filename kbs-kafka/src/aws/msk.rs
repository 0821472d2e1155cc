//! What MSK IAM sends: the `AWS_MSK_IAM` authentication payload and MSK's OAUTHBEARER token.
//!
//! Both are a SigV4-presigned `GET https://<host>/?Action=kafka-cluster%3AConnect` (service
//! `kafka-cluster`, valid 900 s, only `host` signed, empty payload; see [`super::sigv4`]).
//!
//! `AWS_MSK_IAM` sends it in a single SaslAuthenticate as a JSON object whose keys are the
//! lower-cased query parameter names, their values not URL-encoded, plus `version` and
//! `user-agent` and the signed `host` (the broker's host name):
//!
//! ```text
//! {"version":"2020_10_22","host":"b-1.c.x.c2.kafka.us-east-1.amazonaws.com","user-agent":"kbs/0.1.0",
//!  "action":"kafka-cluster:Connect","x-amz-algorithm":"AWS4-HMAC-SHA256",
//!  "x-amz-credential":"AKID/20261202/us-east-1/kafka-cluster/aws4_request","x-amz-date":"20261202T050000Z",
//!  "x-amz-expires":"900","x-amz-signedheaders":"host","x-amz-security-token":"…","x-amz-signature":"<hex>"}
//! ```
//!
//! The broker answers a non-empty JSON (`{"version":"2020_10_22","request-id":"…"}`) on success.
//!
//! The OAUTHBEARER token signs host `kafka.<region>.amazonaws.com`; it is that presigned URL
//! with `User-Agent` appended after the signature, base64url-encoded without padding.

use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::AwsCredentials;
use super::sigv4::{self, Presign};

/// The payload format's version.
pub(crate) const PAYLOAD_VERSION: &str = "2020_10_22";
/// The SigV4 service name.
pub(crate) const SERVICE: &str = "kafka-cluster";
/// The one action signed.
pub(crate) const ACTION: &str = "kafka-cluster:Connect";
/// How long a signature stays valid, as the MSK signer libraries use.
pub(crate) const EXPIRES_SECS: u32 = 900;

fn user_agent() -> String {
    format!("kbs/{}", env!("CARGO_PKG_VERSION"))
}

fn presign(host: &str, region: &str, credentials: &AwsCredentials, at: SystemTime) -> Vec<(String, String)> {
    let amz_date = sigv4::amz_date(at);
    sigv4::presign(
        &Presign {
            host,
            path: "/",
            params: &[("Action".to_owned(), ACTION.to_owned())],
            amz_date: &amz_date,
            expires_secs: EXPIRES_SECS,
            region,
            service: SERVICE,
            payload_hash: sigv4::EMPTY_PAYLOAD_SHA256,
        },
        credentials,
    )
}

/// The `AWS_MSK_IAM` client message for the broker `host` (no port).
pub(crate) fn auth_payload(host: &str, region: &str, credentials: &AwsCredentials, at: SystemTime) -> Vec<u8> {
    let mut payload = serde_json::Map::new();
    payload.insert("version".into(), PAYLOAD_VERSION.into());
    payload.insert("host".into(), host.into());
    payload.insert("user-agent".into(), user_agent().into());
    for (name, value) in presign(host, region, credentials, at) {
        payload.insert(name.to_ascii_lowercase(), value.into());
    }
    serde_json::Value::Object(payload).to_string().into_bytes()
}

/// MSK's OAUTHBEARER token for `region`.
pub(crate) fn oauth_token(region: &str, credentials: &AwsCredentials, at: SystemTime) -> String {
    let host = format!("kafka.{region}.amazonaws.com");
    let mut query: Vec<String> = presign(&host, region, credentials, at)
        .iter()
        .map(|(name, value)| format!("{name}={}", crate::urls::percent_encode(value, false)))
        .collect();
    query.push(format!(
        "User-Agent={}",
        crate::urls::percent_encode(&user_agent(), false)
    ));
    URL_SAFE_NO_PAD.encode(format!("https://{host}/?{}", query.join("&")))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at() -> SystemTime {
        // 2026-12-02T05:00:00Z
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_187_600)
    }

    #[test]
    fn the_payload_carries_the_presigned_parameters_unencoded() {
        let credentials = AwsCredentials::new("AKIDEXAMPLE", "secret", Some("FwoG/token+=".into()));
        let payload = auth_payload(
            "b-1.c.x.c2.kafka.us-east-1.amazonaws.com",
            "us-east-1",
            &credentials,
            at(),
        );
        let json: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        let get = |k: &str| json[k].as_str().unwrap().to_owned();
        assert_eq!(get("version"), "2020_10_22");
        assert_eq!(get("host"), "b-1.c.x.c2.kafka.us-east-1.amazonaws.com");
        assert_eq!(get("action"), "kafka-cluster:Connect");
        assert_eq!(get("x-amz-algorithm"), "AWS4-HMAC-SHA256");
        assert_eq!(
            get("x-amz-credential"),
            "AKIDEXAMPLE/20261202/us-east-1/kafka-cluster/aws4_request"
        );
        assert_eq!(get("x-amz-date"), "20261202T050000Z");
        assert_eq!(get("x-amz-expires"), "900");
        assert_eq!(get("x-amz-signedheaders"), "host");
        assert_eq!(get("x-amz-security-token"), "FwoG/token+=");
        assert_eq!(get("x-amz-signature").len(), 64);
        assert!(get("user-agent").starts_with("kbs/"));
        assert!(!String::from_utf8(payload).unwrap().contains("secret\""));
    }

    #[test]
    fn the_oauth_token_is_a_base64url_presigned_url() {
        let credentials = AwsCredentials::new("AKIDEXAMPLE", "secret", None);
        let token = oauth_token("eu-west-1", &credentials, at());
        assert!(!token.contains('=') && !token.contains('+') && !token.contains('/'));
        let url = String::from_utf8(URL_SAFE_NO_PAD.decode(&token).unwrap()).unwrap();
        assert!(
            url.starts_with(
                "https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect&X-Amz-Algorithm=AWS4-HMAC-SHA256\
                 &X-Amz-Credential=AKIDEXAMPLE%2F20261202%2Feu-west-1%2Fkafka-cluster%2Faws4_request\
                 &X-Amz-Date=20261202T050000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature="
            ),
            "{url}"
        );
        assert!(url.contains("&User-Agent=kbs%2F"), "{url}");
    }
}
