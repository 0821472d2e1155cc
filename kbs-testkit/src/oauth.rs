//! OAUTHBEARER test helpers: unsecured JWS tokens as Kafka's test validator accepts them, and
//! a local OAuth 2.0 token endpoint for the client-credentials grant.

use std::io::{Read, Write};
use std::net::TcpListener;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

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
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let url = format!("http://{}/oauth2/token", listener.local_addr().expect("local address"));
        let expected = format!("Basic {}", STANDARD.encode(format!("{client_id}:{client_secret}")));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let expected = expected.clone();
                std::thread::spawn(move || answer(stream, &expected));
            }
        });
        TokenEndpoint { url }
    }
}

fn answer(mut stream: std::net::TcpStream, expected_authorization: &str) {
    let mut request = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).unwrap_or(0);
        if n == 0 {
            return;
        }
        request.extend_from_slice(&chunk[..n]);
        if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if request.len() > 64 << 10 {
            return;
        }
    };
    let head = String::from_utf8_lossy(&request[..head_end]).to_string();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_owned())
        })
    };
    let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while request.len() < head_end + length.min(64 << 10) {
        let n = stream.read(&mut chunk).unwrap_or(0);
        if n == 0 {
            break;
        }
        request.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&request[head_end..]).to_string();
    let grant = body.split('&').any(|p| p == "grant_type=client_credentials");
    let (status, json) = if !head.starts_with("POST /oauth2/token ") || !grant {
        ("400 Bad Request", r#"{"error":"invalid_request"}"#.to_owned())
    } else if header("authorization").as_deref() != Some(expected_authorization) {
        ("401 Unauthorized", r#"{"error":"invalid_client"}"#.to_owned())
    } else {
        (
            "200 OK",
            format!(
                r#"{{"access_token":"{}","token_type":"Bearer","expires_in":3600}}"#,
                unsecured_jwt(3600)
            ),
        )
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    );
}
