//! A local Amazon MSK IAM endpoint: a front proxy that authenticates `AWS_MSK_IAM` and MSK
//! OAUTHBEARER clients itself, verifying each signature with botocore (`py/msk_iam_verify.py`),
//! and then relays the connection to a PLAINTEXT Kafka node that advertises the proxy's port.
//!
//! Before authentication it relays ApiVersions, answers SaslHandshake and SaslAuthenticate
//! (v0–v2) itself and closes the connection on anything else, as a SASL listener does.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::python::{python_command, script};

/// Requests larger than this before authentication end the connection.
const MAX_HANDSHAKE_FRAME: usize = 1 << 20;

const SASL_AUTHENTICATION_FAILED: i16 = 58;
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;

/// Known AWS keys: access key id, secret, and the session token that goes with temporary keys.
#[derive(Clone, Debug)]
pub struct AwsKey {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// The session token (temporary credentials).
    pub session_token: Option<String>,
}

/// What the endpoint decided, per authentication, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MskAuthentication {
    /// Accepted: the mechanism and the access key id.
    Accepted(String, String),
    /// Refused: the mechanism and why.
    Refused(String, String),
}

/// A running endpoint; serves on threads until the process ends.
pub struct MskIamEndpoint {
    port: u16,
    log: Arc<Mutex<Vec<MskAuthentication>>>,
    _verifier: Arc<Mutex<Verifier>>,
}

struct Verifier {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Drop for Verifier {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Verifier {
    fn verify(&mut self, mechanism: &str, auth: &[u8], host: &str) -> Result<String, String> {
        let request = serde_json::json!({"mechanism": mechanism, "auth": STANDARD.encode(auth), "host": host});
        writeln!(self.stdin, "{request}").map_err(|e| format!("verifier: {e}"))?;
        let mut line = String::new();
        self.stdout.read_line(&mut line).map_err(|e| format!("verifier: {e}"))?;
        let answer: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| format!("verifier said {line:?}: {e}"))?;
        if answer["ok"].as_bool() == Some(true) {
            Ok(answer["access_key_id"].as_str().unwrap_or_default().to_owned())
        } else {
            Err(answer["reason"].as_str().unwrap_or("refused").to_owned())
        }
    }
}

impl MskIamEndpoint {
    /// Listens on a free loopback port and relays authenticated connections to
    /// `127.0.0.1:kafka_port`; signatures must be scoped to `region` and made with one of
    /// `keys`. Panics if the venv's Python (botocore) is missing.
    pub fn start(kafka_port: u16, region: &str, keys: &[AwsKey]) -> MskIamEndpoint {
        let known: serde_json::Map<String, serde_json::Value> = keys
            .iter()
            .map(|k| {
                (
                    k.access_key_id.clone(),
                    serde_json::json!({"secret": k.secret_access_key, "token": k.session_token}),
                )
            })
            .collect();
        let mut child = python_command(&script("msk_iam_verify.py"))
            .arg(region)
            .arg(serde_json::Value::Object(known).to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start msk_iam_verify.py");
        let verifier = Arc::new(Mutex::new(Verifier {
            stdin: child.stdin.take().expect("piped stdin"),
            stdout: BufReader::new(child.stdout.take().expect("piped stdout")),
            child,
        }));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local address").port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (shared_log, shared_verifier) = (log.clone(), verifier.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (log, verifier) = (shared_log.clone(), shared_verifier.clone());
                std::thread::spawn(move || {
                    let _ = serve(client, kafka_port, &verifier, &log);
                });
            }
        });
        MskIamEndpoint {
            port,
            log,
            _verifier: verifier,
        }
    }

    /// The port clients connect to (the Kafka node advertises it).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every authentication so far, in order.
    pub fn authentications(&self) -> Vec<MskAuthentication> {
        self.log.lock().expect("log lock").clone()
    }
}

fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let size = i32::from_be_bytes(size);
    if size < 8 || size as usize > MAX_HANDSHAKE_FRAME {
        return Err(std::io::Error::other(format!("frame of {size} bytes")));
    }
    let mut frame = vec![0u8; size as usize];
    stream.read_exact(&mut frame)?;
    Ok(frame)
}

fn write_frame(stream: &mut TcpStream, body: &[u8]) -> std::io::Result<()> {
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    stream.write_all(&frame)
}

/// A cursor over a request's bytes.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> std::io::Result<&[u8]> {
        if self.0.len() < n {
            return Err(std::io::Error::other("short request"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn i16(&mut self) -> std::io::Result<i16> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn i32(&mut self) -> std::io::Result<i32> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn uvarint(&mut self) -> std::io::Result<u64> {
        let mut value = 0u64;
        for shift in (0..35).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(std::io::Error::other("varint too long"))
    }
    fn string(&mut self) -> std::io::Result<String> {
        let len = self.i16()?;
        let bytes = self.take(len.max(0) as usize)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }
    fn tagged_fields(&mut self) -> std::io::Result<()> {
        for _ in 0..self.uvarint()? {
            self.uvarint()?;
            let size = self.uvarint()? as usize;
            self.take(size)?;
        }
        Ok(())
    }
}

fn uvarint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn serve(
    mut client: TcpStream,
    kafka_port: u16,
    verifier: &Mutex<Verifier>,
    log: &Mutex<Vec<MskAuthentication>>,
) -> std::io::Result<()> {
    let mut upstream = TcpStream::connect(("127.0.0.1", kafka_port))?;
    let host = "127.0.0.1";
    let mut mechanism = None::<String>;
    loop {
        let frame = read_frame(&mut client)?;
        let mut reader = Reader(&frame);
        let (api_key, version, correlation) = (reader.i16()?, reader.i16()?, reader.i32()?);
        match api_key {
            // ApiVersions: the broker's own answer.
            18 => {
                write_frame(&mut upstream, &frame)?;
                let answer = read_frame(&mut upstream)?;
                write_frame(&mut client, &answer)?;
            }
            // SaslHandshake v0/v1 (request header v1).
            17 => {
                reader.string()?;
                let asked = reader.string()?;
                let known = asked == "AWS_MSK_IAM" || asked == "OAUTHBEARER";
                let mut body = correlation.to_be_bytes().to_vec();
                body.extend_from_slice(&(if known { 0 } else { UNSUPPORTED_SASL_MECHANISM }).to_be_bytes());
                body.extend_from_slice(&2i32.to_be_bytes());
                for name in ["AWS_MSK_IAM", "OAUTHBEARER"] {
                    body.extend_from_slice(&(name.len() as i16).to_be_bytes());
                    body.extend_from_slice(name.as_bytes());
                }
                write_frame(&mut client, &body)?;
                if !known {
                    return Ok(());
                }
                mechanism = Some(asked);
            }
            // SaslAuthenticate v0–v2 (v2 is flexible: header v2, compact fields).
            36 if mechanism.is_some() && (0..=2).contains(&version) => {
                reader.string()?;
                let auth = if version >= 2 {
                    reader.tagged_fields()?;
                    let len = reader.uvarint()?.saturating_sub(1) as usize;
                    reader.take(len)?.to_vec()
                } else {
                    let len = reader.i32()?.max(0) as usize;
                    reader.take(len)?.to_vec()
                };
                let mechanism = mechanism.clone().expect("checked");
                let verdict = verifier.lock().expect("verifier lock").verify(&mechanism, &auth, host);
                let (error, message, answer) = match &verdict {
                    Ok(key) => {
                        log.lock()
                            .expect("log lock")
                            .push(MskAuthentication::Accepted(mechanism.clone(), key.clone()));
                        let answer = if mechanism == "AWS_MSK_IAM" {
                            br#"{"version":"2020_10_22","request-id":"a1b2c3d4-0000-4000-8000-000000000001"}"#.to_vec()
                        } else {
                            Vec::new()
                        };
                        (0i16, None, answer)
                    }
                    Err(why) => {
                        log.lock()
                            .expect("log lock")
                            .push(MskAuthentication::Refused(mechanism.clone(), why.clone()));
                        (
                            SASL_AUTHENTICATION_FAILED,
                            Some(format!("Access denied: {why}")),
                            Vec::new(),
                        )
                    }
                };
                let mut body = correlation.to_be_bytes().to_vec();
                if version >= 2 {
                    body.push(0); // response header tagged fields
                }
                body.extend_from_slice(&error.to_be_bytes());
                match (&message, version >= 2) {
                    (None, true) => body.push(0),
                    (Some(m), true) => {
                        uvarint(&mut body, m.len() as u64 + 1);
                        body.extend_from_slice(m.as_bytes());
                    }
                    (None, false) => body.extend_from_slice(&(-1i16).to_be_bytes()),
                    (Some(m), false) => {
                        body.extend_from_slice(&(m.len() as i16).to_be_bytes());
                        body.extend_from_slice(m.as_bytes());
                    }
                }
                if version >= 2 {
                    uvarint(&mut body, answer.len() as u64 + 1);
                } else {
                    body.extend_from_slice(&(answer.len() as i32).to_be_bytes());
                }
                body.extend_from_slice(&answer);
                if version >= 1 {
                    body.extend_from_slice(&0i64.to_be_bytes()); // session_lifetime_ms
                }
                if version >= 2 {
                    body.push(0);
                }
                write_frame(&mut client, &body)?;
                if verdict.is_err() {
                    return Ok(());
                }
                break;
            }
            // Anything else before authentication ends the connection, as Kafka's SASL
            // listeners do.
            _ => {
                let _ = client.shutdown(Shutdown::Both);
                return Ok(());
            }
        }
    }
    let mut client_to_kafka = (client.try_clone()?, upstream.try_clone()?);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_to_kafka.0, &mut client_to_kafka.1);
        let _ = client_to_kafka.1.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut upstream, &mut client);
    let _ = client.shutdown(Shutdown::Both);
    Ok(())
}
