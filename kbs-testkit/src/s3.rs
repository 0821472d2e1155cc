//! S3 servers: moto (AWS conditional-write semantics) and Garage (a real S3-compatible store
//! that ignores conditional headers), each with a bucket ready.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::server::{Server, free_port, start_with_retries};
use crate::tools::{cache_dir, find_on_path, find_program, require, venv_program};

/// The bucket [`Moto::start`] and [`Garage::start`] create.
const BUCKET: &str = "kbs-test";

/// Sends one raw, unsigned HTTP/1.1 request with an empty body to `addr` and returns the status
/// code and the body (2 s to connect, 5 s to answer).
pub fn http_request(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    // One write: a request split over several segments is legal, but servers that read once
    // are common enough in tests.
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
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

fn loopback(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

/// A moto S3 server (honours If-None-Match / If-Match like AWS; accepts any credentials) with
/// the bucket `kbs-test`, killed on drop.
#[derive(Debug)]
pub struct Moto {
    _server: Server,
    /// The port it listens on.
    pub port: u16,
    /// The bucket made at start (`kbs-test`).
    pub bucket: String,
}

impl Moto {
    /// Starts `moto_server` (from the venv, else PATH) on a free port, waits until it answers
    /// HTTP and creates the bucket; `None` when it is missing and `KBS_SKIP_MOTO=1`.
    pub fn start() -> Option<Moto> {
        let program = venv_program("moto_server").or_else(|| find_on_path("moto_server"));
        let missing = match program {
            Some(_) => vec![],
            None => vec![format!(
                "moto_server ({} or PATH)",
                cache_dir().join("venv/bin/moto_server").display()
            )],
        };
        require("KBS_SKIP_MOTO", &missing)?;
        let program = program.expect("checked");
        let moto = start_with_retries("moto_server", || {
            let port = free_port();
            // moto's own launcher serves requests concurrently and its conditional writes are
            // not atomic; this launcher serializes them, as AWS's are (see the script).
            let mut command = Command::new(crate::python().unwrap_or_else(|| program.with_file_name("python")));
            command
                .arg(crate::script("moto_serialized.py"))
                .args(["127.0.0.1", &port.to_string()]);
            let mut server = Server::spawn(command);
            server.wait_ready("moto_server", Duration::from_millis(50), || {
                http_request(loopback(port), "GET", "/").is_ok()
            })?;
            Ok(Moto {
                _server: server,
                port,
                bucket: BUCKET.to_owned(),
            })
        });
        moto.create_bucket(BUCKET);
        Some(moto)
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        loopback(self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Creates another bucket (moto takes unsigned requests); panics if moto refuses.
    pub fn create_bucket(&self, bucket: &str) {
        let (status, body) = http_request(self.addr(), "PUT", &format!("/{bucket}")).expect("moto answers");
        assert_eq!(status, 200, "moto did not create bucket {bucket}: {body}");
    }
}

/// A single-node Garage cluster, killed on drop, with the bucket `kbs-test` and a key
/// allowed to read, write and own it.
#[derive(Debug)]
pub struct Garage {
    _server: Server,
    /// The port of its S3 API.
    pub port: u16,
    /// The bucket made at start (`kbs-test`).
    pub bucket: String,
    /// The access key id of the key allowed on the bucket.
    pub key_id: String,
    /// The secret of that key.
    pub secret: String,
}

impl Garage {
    /// The S3 region Garage is configured with.
    pub const REGION: &str = "garage";

    /// Starts Garage (PATH or `~/.cargo/bin`) with its RPC and S3 API on free ports, assigns
    /// the layout, creates the bucket and the key, and waits until the S3 API answers; `None`
    /// when garage is missing and `KBS_SKIP_GARAGE=1`.
    pub fn start() -> Option<Garage> {
        let program = find_program("garage");
        let missing = match program {
            Some(_) => vec![],
            None => vec!["garage (PATH or ~/.cargo/bin)".to_owned()],
        };
        require("KBS_SKIP_GARAGE", &missing)?;
        let program = program.expect("checked");
        Some(start_with_retries("garage", || Garage::try_start(&program)))
    }

    fn try_start(program: &Path) -> Result<Garage, String> {
        let (rpc_port, s3_port) = (free_port(), free_port());
        let mut config = PathBuf::new();
        let mut server = Server::spawn_in(|dir| {
            config = dir.join("garage.toml");
            std::fs::write(&config, garage_config(dir, rpc_port, s3_port)).expect("write garage.toml");
            let mut command = Command::new(program);
            command.arg("-c").arg(&config).arg("server").env("RUST_LOG", "warn");
            command
        });
        let cli = |args: &[&str]| -> Result<String, String> {
            let output = Command::new(program)
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
        server.wait_ready("garage server", Duration::from_millis(50), || cli(&["status"]).is_ok())?;
        let node = cli(&["node", "id", "-q"])?;
        let node_id = node.trim().split('@').next().unwrap_or("").to_owned();
        if node_id.len() < 16 {
            return Err(format!("cannot read the node id from {node:?}"));
        }
        cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node_id])?;
        cli(&["layout", "apply", "--version", "1"])?;
        cli(&["bucket", "create", BUCKET])?;
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
            BUCKET,
            "--key",
            "kbs-test-key",
        ])?;
        server.wait_ready("garage S3 API", Duration::from_millis(50), || {
            http_request(loopback(s3_port), "GET", "/").is_ok()
        })?;
        Ok(Garage {
            _server: server,
            port: s3_port,
            bucket: BUCKET.to_owned(),
            key_id,
            secret,
        })
    }

    /// `127.0.0.1:PORT` of the S3 API.
    pub fn addr(&self) -> SocketAddr {
        loopback(self.port)
    }

    /// `http://127.0.0.1:PORT` of the S3 API.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr())
    }
}

/// garage.toml for a one-node cluster keeping everything in `dir`, with a random RPC secret.
fn garage_config(dir: &Path, rpc_port: u16, s3_port: u16) -> String {
    let secret: String = (0..4)
        .map(|_| format!("{:016x}", RandomState::new().build_hasher().finish()))
        .collect();
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
         s3_region = \"{region}\"\n\
         api_bind_addr = \"127.0.0.1:{s3_port}\"\n\
         root_domain = \".s3.garage.localhost\"\n",
        meta = dir.join("meta").display(),
        data = dir.join("data").display(),
        region = Garage::REGION,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_request_returns_status_and_body() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut byte = [0u8];
            while !request.ends_with(b"\r\n\r\n") {
                stream.read_exact(&mut byte).unwrap();
                request.push(byte[0]);
            }
            stream
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nNoSuchKey")
                .unwrap();
            String::from_utf8(request).unwrap()
        });
        let (status, body) = http_request(addr, "GET", "/bucket?list-type=2").unwrap();
        assert_eq!((status, body.as_str()), (404, "NoSuchKey"));
        let request = server.join().unwrap();
        assert!(request.starts_with("GET /bucket?list-type=2 HTTP/1.1\r\n"), "{request}");
    }

    #[test]
    fn garage_config_uses_the_ports_and_a_fresh_secret() {
        let dir = Path::new("/tmp/garage-test");
        let config = garage_config(dir, 4001, 4002);
        assert!(config.contains("rpc_bind_addr = \"127.0.0.1:4001\""), "{config}");
        assert!(config.contains("api_bind_addr = \"127.0.0.1:4002\""), "{config}");
        assert!(config.contains("metadata_dir = \"/tmp/garage-test/meta\""), "{config}");
        let secret = |c: &str| c.lines().find(|l| l.starts_with("rpc_secret")).unwrap().to_owned();
        assert_eq!(secret(&config).len(), "rpc_secret = \"\"".len() + 64);
        assert_ne!(secret(&config), secret(&garage_config(dir, 4001, 4002)));
    }
}
