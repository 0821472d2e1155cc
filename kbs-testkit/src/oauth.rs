//! OAUTHBEARER test helpers: unsecured JWS tokens as Kafka's test validator accepts them, and
//! a local OAuth 2.0 token endpoint for the client-credentials grant.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::http::HttpStub;

/// An unsecured JWS (`alg: none`) for subject `kbs`, expiring `lifetime_secs` from now (negative:
/// already expired), as the broker's unsecured validator (`KafkaCluster`'s SASL listeners)
/// accepts.
pub fn unsecured_jwt(lifetime_secs: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    let claims = format!(r#"{{"sub":"kbs","iat":{},"exp":{}}}"#, now - 10, now + lifetime_secs);
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(claims)
    )
}

/// A local OAuth 2.0 token endpoint (`POST /oauth2/token`, client-credentials grant) that
/// checks HTTP Basic client authentication and answers unsecured JWS tokens valid for an hour;
/// a wrong client gets `401 {"error":"invalid_client"}`. Serves on a thread until the process
/// ends.
#[derive(Debug)]
pub struct TokenEndpoint {
    /// The endpoint's URL (`http://127.0.0.1:PORT/oauth2/token`).
    pub url: String,
}

impl TokenEndpoint {
    /// Starts an endpoint for one client.
    pub fn start(client_id: &str, client_secret: &str) -> TokenEndpoint {
        let expected = format!("Basic {}", STANDARD.encode(format!("{client_id}:{client_secret}")));
        let stub = HttpStub::start(move |request| {
            let grant = request.body.split('&').any(|p| p == "grant_type=client_credentials");
            if request.method != "POST" || request.path != "/oauth2/token" || !grant {
                (400, r#"{"error":"invalid_request"}"#.to_owned())
            } else if request.header("authorization") != Some(expected.as_str()) {
                (401, r#"{"error":"invalid_client"}"#.to_owned())
            } else {
                (
                    200,
                    format!(
                        r#"{{"access_token":"{}","token_type":"Bearer","expires_in":3600}}"#,
                        unsecured_jwt(3600)
                    ),
                )
            }
        });
        TokenEndpoint {
            url: stub.url("/oauth2/token"),
        }
    }
}
