//! Real S3 servers on loopback for the tests: moto (AWS conditional-write semantics) and Garage
//! (a real S3-compatible store that ignores conditional headers). Each is started on free ports,
//! polled until it answers (with a deadline) and killed when its guard drops.
//!
//! A missing tool fails the test with a message pointing at `scripts/setup.sh`, unless
//! `KBS_SKIP_MOTO=1` / `KBS_SKIP_GARAGE=1` asks to skip (with a printed note).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kbs_storage::{ObjectStorage, StorageOptions};
use std::sync::Arc;

/// How long a server may take to start answering.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// Writes a note to stderr (shown by `cargo test` for failing tests and with `--nocapture`).
pub(crate) fn note(message: &str) {
    let _ = writeln!(std::io::stderr(), "note: {message}");
}

fn cache_dir() -> PathBuf {
    std::env::var_os("KBS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/kbs"))
}

/// Finds `name` in the preferred places (the project's own installs), then on PATH.
fn find_tool(name: &str, preferred: &[PathBuf]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    preferred
        .iter()
        .cloned()
        .chain(std::env::split_paths(&path).map(|dir| dir.join(name)))
        .find(|p| p.is_file())
}

fn skip_requested(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}

/// A port that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Sends one raw, unsigned HTTP/1.1 request and returns the status code and the body.
pub(crate) fn http_request(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Sends one raw, unsigned HTTP/1.1 request and returns the status code.
pub(crate) fn http_status(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<u16> {
    http_request(addr, method, path).map(|(status, _)| status)
}

/// Polls `ready` until it holds or the deadline passes; fails if `child` exits first.
fn wait_until(child: &mut Child, what: &str, log: &Path, mut ready: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if ready() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("{what} exited with {status} before answering; log:\n{log}"));
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("{what} did not answer within {START_DEADLINE:?}; log:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills the child when dropped.
#[derive(Debug)]
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running moto S3 server with one bucket.
#[derive(Debug)]
pub(crate) struct Moto {
    _child: ChildGuard,
    _dir: tempfile::TempDir,
    pub(crate) addr: SocketAddr,
    pub(crate) bucket: String,
}

impl Moto {
    /// Starts moto, or returns `None` (after a note) if `KBS_SKIP_MOTO=1`.
    pub(crate) fn start() -> Option<Moto> {
        if skip_requested("KBS_SKIP_MOTO") {
            note("KBS_SKIP_MOTO=1: skipping the moto runs");
            return None;
        }
        let venv = cache_dir().join("venv/bin/moto_server");
        let Some(binary) = find_tool("moto_server", std::slice::from_ref(&venv)) else {
            panic!(
                "moto_server not found at {} or on PATH — run scripts/setup.sh (or set KBS_SKIP_MOTO=1 to skip)",
                venv.display()
            );
        };
        let mut last_error = String::new();
        // A port can be taken between choosing and binding it: try a few.
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let log = dir.path().join("moto.log");
            let port = free_port();
            let mut child = Command::new(&binary)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(std::fs::File::create(dir.path().join("moto.err")).unwrap())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            match wait_until(&mut child, "moto_server", &dir.path().join("moto.err"), || {
                http_status(addr, "GET", "/").is_ok()
            }) {
                Ok(()) => {
                    let bucket = "kbs-test".to_owned();
                    let status = http_status(addr, "PUT", &format!("/{bucket}")).unwrap();
                    assert_eq!(status, 200, "moto did not create the bucket");
                    return Some(Moto {
                        _child: ChildGuard(child),
                        _dir: dir,
                        addr,
                        bucket,
                    });
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_error = e;
                }
            }
        }
        panic!("moto_server did not start: {last_error}");
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Options for this server (moto accepts any credentials).
    pub(crate) fn options(&self) -> StorageOptions {
        StorageOptions::default()
            .with_s3_endpoint(self.endpoint())
            .with_s3_credentials("testing-key-id", "testing-secret")
    }

    /// Opens `s3://bucket/<prefix>` on this server.
    pub(crate) async fn open(&self, prefix: &str, options: &StorageOptions) -> Arc<dyn ObjectStorage> {
        kbs_storage::open(&format!("s3://{}/{prefix}", self.bucket), options)
            .await
            .unwrap()
    }
}

/// A running single-node Garage cluster with one bucket and a key allowed on it.
#[derive(Debug)]
pub(crate) struct Garage {
    _child: ChildGuard,
    _dir: tempfile::TempDir,
    pub s3_addr: SocketAddr,
    pub(crate) bucket: String,
    pub(crate) key_id: String,
    pub(crate) secret: String,
}

impl Garage {
    /// Starts Garage, or returns `None` (after a note) if `KBS_SKIP_GARAGE=1`.
    pub(crate) fn start() -> Option<Garage> {
        if skip_requested("KBS_SKIP_GARAGE") {
            note("KBS_SKIP_GARAGE=1: skipping the Garage runs");
            return None;
        }
        let home_bin = PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cargo/bin/garage");
        let Some(binary) = find_tool("garage", &[home_bin]) else {
            panic!(
                "garage not found in ~/.cargo/bin or on PATH — run scripts/setup.sh (or set KBS_SKIP_GARAGE=1 to skip)"
            );
        };
        let mut last_error = String::new();
        for _ in 0..3 {
            match Garage::try_start(&binary) {
                Ok(garage) => return Some(garage),
                Err(e) => last_error = e,
            }
        }
        panic!("garage did not start: {last_error}");
    }

    fn try_start(binary: &Path) -> Result<Garage, String> {
        let dir = tempfile::tempdir().unwrap();
        let (rpc_port, s3_port) = (free_port(), free_port());
        let secret: String = (0..32).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
        let config = dir.path().join("garage.toml");
        std::fs::write(
            &config,
            format!(
                "metadata_dir = \"{meta}\"\n\
                 data_dir = \"{data}\"\n\
                 db_engine = \"sqlite\"\n\
                 replication_factor = 1\n\
                 rpc_bind_addr = \"127.0.0.1:{rpc_port}\"\n\
                 rpc_public_addr = \"127.0.0.1:{rpc_port}\"\n\
                 rpc_secret = \"{secret}\"\n\
                 \n\
                 [s3_api]\n\
                 s3_region = \"garage\"\n\
                 api_bind_addr = \"127.0.0.1:{s3_port}\"\n\
                 root_domain = \".s3.garage.localhost\"\n",
                meta = dir.path().join("meta").display(),
                data = dir.path().join("data").display(),
            ),
        )
        .unwrap();
        let log = dir.path().join("garage.log");
        let mut child = Command::new(binary)
            .arg("-c")
            .arg(&config)
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("garage.err")).unwrap())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let cli = |args: &[&str]| -> Result<String, String> {
            let output = Command::new(binary)
                .arg("-c")
                .arg(&config)
                .args(args)
                .env("RUST_LOG", "warn")
                .output()
                .map_err(|e| format!("cannot run garage {args:?}: {e}"))?;
            if !output.status.success() {
                return Err(format!(
                    "garage {args:?} failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        };
        let result = (|| {
            let err_log = dir.path().join("garage.err");
            wait_until(&mut child, "garage server", &err_log, || cli(&["status"]).is_ok())?;
            let node = cli(&["node", "id", "-q"])?;
            let node_id = node.trim().split('@').next().unwrap_or("").to_owned();
            if node_id.len() < 16 {
                return Err(format!("cannot read the node id from {node:?}"));
            }
            cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node_id])?;
            cli(&["layout", "apply", "--version", "1"])?;
            let bucket = "kbs-test".to_owned();
            cli(&["bucket", "create", &bucket])?;
            let key = cli(&["key", "create", "kbs-test-key"])?;
            let field = |name: &str| {
                key.lines()
                    .find_map(|line| line.strip_prefix(name).map(|v| v.trim().to_owned()))
                    .ok_or_else(|| format!("no {name:?} in the output of key create: {key}"))
            };
            let key_id = field("Key ID:")?;
            let secret = field("Secret key:")?;
            cli(&[
                "bucket",
                "allow",
                "--read",
                "--write",
                "--owner",
                &bucket,
                "--key",
                "kbs-test-key",
            ])?;
            let s3_addr: SocketAddr = ([127, 0, 0, 1], s3_port).into();
            wait_until(&mut child, "garage S3 API", &err_log, || {
                http_status(s3_addr, "GET", "/").is_ok()
            })?;
            Ok((s3_addr, bucket, key_id, secret))
        })();
        match result {
            Ok((s3_addr, bucket, key_id, secret)) => Ok(Garage {
                _child: ChildGuard(child),
                _dir: dir,
                s3_addr,
                bucket,
                key_id,
                secret,
            }),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// Options for this server.
    pub(crate) fn options(&self) -> StorageOptions {
        let mut options = StorageOptions::default()
            .with_s3_endpoint(format!("http://{}", self.s3_addr))
            .with_s3_credentials(self.key_id.as_str(), self.secret.as_str());
        options.s3_region = Some("garage".to_owned());
        options
    }

    /// Opens `s3://bucket/<prefix>` on this server.
    pub(crate) async fn open(&self, prefix: &str, options: &StorageOptions) -> Arc<dyn ObjectStorage> {
        kbs_storage::open(&format!("s3://{}/{prefix}", self.bucket), options)
            .await
            .unwrap()
    }
}
