//! A front proxy the tests put between the client and tansu (which advertises the proxy's
//! port): it terminates TLS (tansu 0.6 accepts `--cert/--key` but never uses them), performs
//! the SASL exchange itself (tansu's in-memory storage cannot hold SCRAM users) and can drop
//! a connection right after a Produce was written, to force the producer to resend. Everything
//! else is relayed frame by frame to the real broker.
//!
//! The SASL side is an independent server implementation of RFC 4616 (PLAIN) and RFC 5802 /
//! RFC 7677 (SCRAM): it derives the stored key from the password and checks the client proof.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, FetchResponse, RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes, decode_request_header_from_buffer};
use ring::{digest, hmac, pbkdf2};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;

/// What the proxy does besides relaying.
#[derive(Clone, Default)]
pub(crate) struct ProxyOptions {
    /// Terminate TLS with this configuration.
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    /// Require SASL; these `(user, password)` pairs are accepted.
    pub(crate) users: Option<Arc<Vec<(String, String)>>>,
    /// Relay this many Produce requests to the broker but drop the connection instead of
    /// returning their responses.
    pub(crate) drop_produce_responses: Arc<AtomicUsize>,
    /// Faults for the next Fetch responses, one per relayed Fetch.
    pub(crate) fetch_faults: Arc<std::sync::Mutex<std::collections::VecDeque<FetchFault>>>,
    /// Counts SASL authentications that succeeded.
    pub(crate) authenticated: Arc<AtomicUsize>,
}

/// How the proxy alters one Fetch response.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FetchFault {
    /// Every partition answers this error code, log start and high watermark unknown (-1): e.g.
    /// OFFSET_OUT_OF_RANGE as Kafka sends it when retention deleted the fetch offset, or
    /// NOT_LEADER_OR_FOLLOWER as during a leader change.
    Error(i16),
    /// Every partition but the first gets only the first 30 bytes of its records, as Kafka
    /// sends when the response's byte budget runs out inside a partition's first batch.
    CutAllButFirst,
}

/// A running proxy; stops when dropped.
pub(crate) struct FrontProxy {
    pub(crate) port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FrontProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FrontProxy {
    /// Listens on a free port, relaying to `127.0.0.1:upstream_port`.
    pub(crate) async fn start(upstream_port: u16, options: ProxyOptions) -> FrontProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let options = options.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, upstream_port, options).await;
                });
            }
        });
        FrontProxy { port, task }
    }
}

trait Duplex: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Duplex for T {}

async fn read_frame<S: AsyncRead + Unpin + ?Sized>(stream: &mut S) -> std::io::Result<Bytes> {
    let size = stream.read_u32().await? as usize;
    if size > 64 << 20 {
        return Err(std::io::Error::other("frame too large"));
    }
    let mut body = BytesMut::zeroed(size);
    stream.read_exact(&mut body).await?;
    Ok(body.freeze())
}

async fn write_frame<S: AsyncWrite + Unpin + ?Sized>(stream: &mut S, body: &[u8]) -> std::io::Result<()> {
    stream.write_u32(body.len() as u32).await?;
    stream.write_all(body).await?;
    stream.flush().await
}

fn response<R: Encodable + HeaderVersion>(correlation_id: i32, version: i16, body: &R) -> Vec<u8> {
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    let mut out = BytesMut::new();
    header.encode(&mut out, R::header_version(version)).unwrap();
    body.encode(&mut out, version).unwrap();
    out.to_vec()
}

async fn serve(stream: TcpStream, upstream_port: u16, options: ProxyOptions) -> std::io::Result<()> {
    let mut client: Box<dyn Duplex> = match &options.tls {
        Some(config) => Box::new(tokio_rustls::TlsAcceptor::from(config.clone()).accept(stream).await?),
        None => Box::new(stream),
    };
    let mut upstream = TcpStream::connect(("127.0.0.1", upstream_port)).await?;
    let mut authenticated = options.users.is_none();
    let mut sasl: Option<SaslSession> = None;
    loop {
        let frame = read_frame(&mut client).await?;
        let mut buf = frame.clone();
        let header: RequestHeader = decode_request_header_from_buffer(&mut buf).map_err(bad)?;
        let (api, version, correlation) = (
            header.request_api_key,
            header.request_api_version,
            header.correlation_id,
        );
        if api == ApiKey::SaslHandshake as i16 && options.users.is_some() {
            let request = SaslHandshakeRequest::decode(&mut buf, version).map_err(bad)?;
            let mechanism = request.mechanism.to_string();
            let mut answer = SaslHandshakeResponse::default();
            answer.mechanisms = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
                .map(StrBytes::from_static_str)
                .to_vec();
            match SaslSession::new(&mechanism) {
                Some(session) => sasl = Some(session),
                None => answer.error_code = 33, // UNSUPPORTED_SASL_MECHANISM
            }
            write_frame(&mut client, &response(correlation, version, &answer)).await?;
            continue;
        }
        if let Some(users) = options
            .users
            .as_ref()
            .filter(|_| api == ApiKey::SaslAuthenticate as i16)
        {
            let request = SaslAuthenticateRequest::decode(&mut buf, version).map_err(bad)?;
            let outcome = match sasl.as_mut() {
                Some(session) => session.step(&request.auth_bytes, users),
                None => Err("SaslAuthenticate before SaslHandshake".to_owned()),
            };
            let mut answer = SaslAuthenticateResponse::default();
            match outcome {
                Ok(Step::Continue(bytes)) => answer.auth_bytes = Bytes::from(bytes),
                Ok(Step::Done(bytes)) => {
                    answer.auth_bytes = Bytes::from(bytes);
                    authenticated = true;
                    options.authenticated.fetch_add(1, Ordering::SeqCst);
                }
                Err(reason) => {
                    answer.error_code = 58; // SASL_AUTHENTICATION_FAILED
                    answer.error_message = Some(StrBytes::from_string(reason));
                }
            }
            let failed = answer.error_code != 0;
            write_frame(&mut client, &response(correlation, version, &answer)).await?;
            if failed {
                return Ok(());
            }
            continue;
        }
        if !authenticated && api != ApiKey::ApiVersions as i16 {
            return Ok(()); // like Kafka: anything else before authentication closes the connection
        }
        write_frame(&mut upstream, &frame).await?;
        let answer = read_frame(&mut upstream).await?;
        if api == ApiKey::Produce as i16 && take(&options.drop_produce_responses) {
            return Ok(()); // the broker wrote the batch; the client never hears of it
        }
        let injected = if api == ApiKey::Fetch as i16 {
            options.fetch_faults.lock().unwrap().pop_front()
        } else {
            None
        };
        let answer = match injected {
            Some(fault) => fetch_fault(answer, version, fault)?,
            None => answer,
        };
        write_frame(&mut client, &answer).await?;
    }
}

fn bad<E: std::fmt::Display>(e: E) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn take(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// Rewrites a Fetch response frame.
fn fetch_fault(frame: Bytes, version: i16, fault: FetchFault) -> std::io::Result<Bytes> {
    let mut buf = frame;
    let header = ResponseHeader::decode(&mut buf, FetchResponse::header_version(version)).map_err(bad)?;
    let mut body = FetchResponse::decode(&mut buf, version).map_err(bad)?;
    let mut first = true;
    for topic in &mut body.responses {
        for partition in &mut topic.partitions {
            match fault {
                FetchFault::Error(code) => {
                    partition.error_code = code;
                    partition.high_watermark = -1;
                    partition.last_stable_offset = -1;
                    partition.log_start_offset = -1;
                    partition.records = None;
                }
                FetchFault::CutAllButFirst if !first => {
                    partition.records = partition.records.take().map(|r| r.slice(..r.len().min(30)));
                }
                FetchFault::CutAllButFirst => {}
            }
            first = false;
        }
    }
    let mut out = BytesMut::new();
    header
        .encode(&mut out, FetchResponse::header_version(version))
        .map_err(bad)?;
    body.encode(&mut out, version).map_err(bad)?;
    Ok(out.freeze())
}

enum Step {
    Continue(Vec<u8>),
    Done(Vec<u8>),
}

enum SaslSession {
    Plain,
    Scram { sha512: bool, state: Option<ScramState> },
}

struct ScramState {
    password: String,
    salted: Vec<u8>,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl SaslSession {
    fn new(mechanism: &str) -> Option<SaslSession> {
        match mechanism {
            "PLAIN" => Some(SaslSession::Plain),
            "SCRAM-SHA-256" => Some(SaslSession::Scram {
                sha512: false,
                state: None,
            }),
            "SCRAM-SHA-512" => Some(SaslSession::Scram {
                sha512: true,
                state: None,
            }),
            _ => None,
        }
    }

    fn step(&mut self, message: &[u8], users: &[(String, String)]) -> Result<Step, String> {
        let text = std::str::from_utf8(message).map_err(|_| "not UTF-8".to_owned())?;
        let password_of = |user: &str| users.iter().find(|(u, _)| u == user).map(|(_, p)| p.clone());
        match self {
            SaslSession::Plain => {
                // [authzid] NUL authcid NUL passwd
                let parts: Vec<&str> = text.split('\0').collect();
                let [_, user, password] = parts[..] else {
                    return Err("malformed PLAIN message".into());
                };
                if password_of(user).as_deref() == Some(password) {
                    Ok(Step::Done(Vec::new()))
                } else {
                    Err("Authentication failed: invalid credentials".into())
                }
            }
            SaslSession::Scram { sha512, state } => {
                let (dig, mac, kdf): (&'static digest::Algorithm, hmac::Algorithm, pbkdf2::Algorithm) = if *sha512 {
                    (&digest::SHA512, hmac::HMAC_SHA512, pbkdf2::PBKDF2_HMAC_SHA512)
                } else {
                    (&digest::SHA256, hmac::HMAC_SHA256, pbkdf2::PBKDF2_HMAC_SHA256)
                };
                match state.take() {
                    None => {
                        let bare = text.strip_prefix("n,,").ok_or("channel binding header must be n,,")?;
                        let mut user = None;
                        let mut client_nonce = None;
                        for attribute in bare.split(',') {
                            match attribute.split_once('=') {
                                Some(("n", v)) => user = Some(v.replace("=2C", ",").replace("=3D", "=")),
                                Some(("r", v)) => client_nonce = Some(v.to_owned()),
                                _ => {}
                            }
                        }
                        let (user, client_nonce) = user.zip(client_nonce).ok_or("client-first lacks n= or r=")?;
                        let password = password_of(&user).ok_or("unknown user")?;
                        let salt = b"kbs-test-salt".to_vec();
                        let mut salted = vec![0u8; dig.output_len()];
                        pbkdf2::derive(kdf, 4096.try_into().unwrap(), &salt, password.as_bytes(), &mut salted);
                        let nonce = format!("{client_nonce}proxy-nonce-7f3a");
                        let server_first = format!("r={nonce},s={},i=4096", BASE64.encode(&salt));
                        *state = Some(ScramState {
                            password,
                            salted,
                            client_first_bare: bare.to_owned(),
                            server_first: server_first.clone(),
                            nonce,
                        });
                        Ok(Step::Continue(server_first.into_bytes()))
                    }
                    Some(s) => {
                        let _ = &s.password;
                        let (without_proof, proof) = text.rsplit_once(",p=").ok_or("client-final lacks p=")?;
                        if without_proof != format!("c=biws,r={}", s.nonce) {
                            return Err("channel binding or nonce mismatch".into());
                        }
                        let proof = BASE64.decode(proof).map_err(|_| "proof is not base64")?;
                        let auth_message = format!("{},{},{}", s.client_first_bare, s.server_first, without_proof);
                        let salted_key = hmac::Key::new(mac, &s.salted);
                        let client_key = hmac::sign(&salted_key, b"Client Key");
                        let stored_key = digest::digest(dig, client_key.as_ref());
                        let signature = hmac::sign(&hmac::Key::new(mac, stored_key.as_ref()), auth_message.as_bytes());
                        if proof.len() != signature.as_ref().len() {
                            return Err("proof has the wrong length".into());
                        }
                        let recovered: Vec<u8> = proof.iter().zip(signature.as_ref()).map(|(p, s)| p ^ s).collect();
                        if digest::digest(dig, &recovered).as_ref() != stored_key.as_ref() {
                            return Err("Authentication failed during authentication due to invalid credentials".into());
                        }
                        let server_key = hmac::sign(&salted_key, b"Server Key");
                        let server_signature =
                            hmac::sign(&hmac::Key::new(mac, server_key.as_ref()), auth_message.as_bytes());
                        Ok(Step::Done(
                            format!("v={}", BASE64.encode(server_signature.as_ref())).into_bytes(),
                        ))
                    }
                }
            }
        }
    }
}
