//! The test harness: locating tansu and the Python venv, starting a tansu broker per test on a
//! free loopback port (killed on drop), running the confluent-kafka scripts, and reading their
//! JSON output.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use kbs_kafka::{ClientConfig, KafkaClient, Record, RecordHeader, RetryConfig, TimestampType};

/// The external tools the tests need.
pub(crate) struct Tools {
    pub(crate) tansu: PathBuf,
    pub(crate) python: PathBuf,
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The tools, or `None` when they are missing and `KBS_SKIP_KAFKA=1` says to skip. Missing tools
/// without that variable fail the test loudly.
#[allow(clippy::print_stderr)]
pub(crate) fn tools() -> Option<Tools> {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let tansu = find_on_path("tansu").or_else(|| Some(home.join(".cargo/bin/tansu")).filter(|p| p.is_file()));
    let cache = std::env::var_os("KBS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".cache/kbs"));
    let python = Some(cache.join("venv/bin/python")).filter(|p| p.is_file());
    match (tansu, python) {
        (Some(tansu), Some(python)) => Some(Tools { tansu, python }),
        (tansu, python) => {
            let missing = format!(
                "{}{}",
                if tansu.is_none() {
                    "tansu (PATH or ~/.cargo/bin) "
                } else {
                    ""
                },
                if python.is_none() {
                    "the venv python ($KBS_CACHE/venv/bin/python) "
                } else {
                    ""
                }
            );
            if std::env::var("KBS_SKIP_KAFKA").as_deref() == Ok("1") {
                eprintln!("KBS_SKIP_KAFKA=1: skipping a Kafka integration test; missing {missing}");
                return None;
            }
            panic!(
                "missing {missing}: run scripts/setup.sh (or set KBS_SKIP_KAFKA=1 to skip the Kafka integration tests)"
            );
        }
    }
}

/// A free loopback port (bound then released; tansu binds it right after).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A tansu broker with in-memory storage, killed on drop.
pub(crate) struct Tansu {
    child: Child,
    /// Port tansu listens on.
    pub(crate) port: u16,
    /// Port tansu advertises in metadata (a front proxy's, or its own).
    pub(crate) advertised_port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tansu {
    /// Starts tansu on a free port.
    pub(crate) fn start(tools: &Tools) -> Tansu {
        let port = free_port();
        Tansu::start_advertising(tools, port, port)
    }

    /// Starts tansu listening on `port`, advertising `advertised_port` (where a front proxy
    /// listens), and waits until it answers ApiVersions.
    pub(crate) fn start_advertising(tools: &Tools, port: u16, advertised_port: u16) -> Tansu {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("tansu.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(&tools.tansu)
            .args(["broker", "--storage-engine", "memory://tansu/"])
            .arg("--listener-url")
            .arg(format!("tcp://127.0.0.1:{port}"))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://127.0.0.1:{advertised_port}"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", tools.tansu.display()));
        let mut tansu = Tansu {
            child,
            port,
            advertised_port,
            log,
            _dir: dir,
        };
        tansu.wait_ready();
        tansu
    }

    /// `127.0.0.1:port` clients bootstrap from (the advertised port).
    pub(crate) fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.advertised_port)
    }

    /// Polls with an ApiVersions v0 request until tansu answers (30 s deadline).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("tansu exited with {status}: {}", self.log_text());
            }
            if probe(self.port) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "tansu did not answer within 30 s: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What tansu wrote so far.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A client with test-friendly timeouts.
    pub(crate) async fn client(&self) -> KafkaClient {
        KafkaClient::connect(test_config(&self.bootstrap())).await.unwrap()
    }
}

/// Client settings for tests: short timeouts, quick retries.
pub(crate) fn test_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new([bootstrap]);
    config.client_id = "kbs-kafka-tests".into();
    config.connect_timeout = Duration::from_secs(5);
    config.request_timeout = Duration::from_secs(20);
    config.retry = RetryConfig::new(8, Duration::from_millis(50), Duration::from_millis(500));
    config
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends ApiVersions v0 and reads a complete answer.
fn probe(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    // size, api_key 18, api_version 0, correlation_id 7, client_id "probe"
    let mut frame = vec![0, 0, 0, 15, 0, 18, 0, 0, 0, 0, 0, 7, 0, 5];
    frame.extend_from_slice(b"probe");
    if stream.write_all(&frame).is_err() {
        return false;
    }
    let mut size = [0u8; 4];
    if stream.read_exact(&mut size).is_err() {
        return false;
    }
    let mut body = vec![0u8; u32::from_be_bytes(size).min(1 << 20) as usize];
    stream.read_exact(&mut body).is_ok() && body.get(..4) == Some(&[0, 0, 0, 7][..])
}

/// Path of a script under `tests/kafka/py`.
pub(crate) fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kafka/py").join(name)
}

/// Runs a Python script with the venv's interpreter; panics with its stderr on failure.
pub(crate) fn run_python(tools: &Tools, name: &str, args: &[&str]) {
    let output = Command::new(&tools.python)
        .arg(script(name))
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{name} {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

fn bytes_of(value: &serde_json::Value) -> Option<Bytes> {
    value
        .as_str()
        .map(|s| Bytes::from(BASE64.decode(s).expect("base64 in script output")))
}

fn headers_of(value: &serde_json::Value) -> Vec<RecordHeader> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|h| RecordHeader {
            key: bytes_of(&h[0]).unwrap(),
            value: bytes_of(&h[1]),
        })
        .collect()
}

/// Reads produce.py output: `(partition, record)` pairs, CreateTime.
pub(crate) fn read_produced(path: &Path) -> Vec<(i32, Record)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let record = Record {
                offset: v[1].as_i64().unwrap(),
                timestamp: v[2].as_i64().unwrap(),
                timestamp_type: TimestampType::CreateTime,
                key: bytes_of(&v[3]),
                value: bytes_of(&v[4]),
                headers: headers_of(&v[5]),
            };
            (v[0].as_i64().unwrap() as i32, record)
        })
        .collect()
}

/// Reads consume.py output: `(partition, record)` pairs.
pub(crate) fn read_consumed(path: &Path) -> Vec<(i32, Record)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let record = Record {
                offset: v[1].as_i64().unwrap(),
                timestamp_type: if v[2].as_i64() == Some(2) {
                    TimestampType::LogAppendTime
                } else {
                    TimestampType::CreateTime
                },
                timestamp: v[3].as_i64().unwrap(),
                key: bytes_of(&v[4]),
                value: bytes_of(&v[5]),
                headers: headers_of(&v[6]),
            };
            (v[0].as_i64().unwrap() as i32, record)
        })
        .collect()
}

/// Bytes as base64 for the JSON fixtures.
pub(crate) fn base64_of(bytes: &Option<Bytes>) -> serde_json::Value {
    match bytes {
        None => serde_json::Value::Null,
        Some(b) => serde_json::Value::String(BASE64.encode(b)),
    }
}
