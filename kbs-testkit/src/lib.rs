//! Test harness shared by the kbs integration tests: real servers on loopback, started per
//! test and killed on drop, and the independent Python clients (confluent-kafka, boto3/moto)
//! from the venv that `scripts/setup.sh` creates.
//!
//! A missing tool fails the test with a message naming `scripts/setup.sh`, unless the
//! variable named by the caller (e.g. `KBS_SKIP_KAFKA=1`) says to skip; tests are never
//! skipped silently.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn home() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default()
}

/// The cache folder outside the clone where set-up installs things (`$KBS_CACHE`, default
/// `~/.cache/kbs`).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("KBS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/kbs"))
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A program from PATH or `~/.cargo/bin`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    find_on_path(name).or_else(|| Some(home().join(".cargo/bin").join(name)).filter(|p| p.is_file()))
}

/// The venv's Python interpreter.
pub fn python() -> Option<PathBuf> {
    Some(cache_dir().join("venv/bin/python")).filter(|p| p.is_file())
}

/// Returns `Some(())` when every named tool is present; `None` when some is missing and
/// `skip_var=1` is set (printing what is skipped); panics otherwise.
#[allow(clippy::print_stderr)]
pub fn require(skip_var: &str, missing: &[String]) -> Option<()> {
    if missing.is_empty() {
        return Some(());
    }
    let what = missing.join(", ");
    if std::env::var(skip_var).as_deref() == Ok("1") {
        eprintln!("{skip_var}=1: skipping a test that needs {what}");
        return None;
    }
    panic!("missing {what}: run scripts/setup.sh (or set {skip_var}=1 to skip these tests)");
}

/// A free loopback port (bound, then released for the server to bind).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind loopback")
        .local_addr()
        .expect("local addr")
        .port()
}

/// Polls `ready` every 20 ms until it is true, panicking after `timeout` with `what` and the
/// server's log.
pub fn wait_until(what: &str, timeout: Duration, child: &mut Child, log: &Path, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited with {status}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if ready() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not ready within {timeout:?}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A server process killed on drop, with its log in a temporary folder.
pub struct Server {
    child: Child,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl Server {
    fn spawn(mut command: Command) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("server.log");
        let file = std::fs::File::create(&log).expect("log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        Server { child, log, dir }
    }

    /// What the server logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The server's temporary folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tansu broker with in-memory storage.
pub struct Tansu {
    server: Server,
    /// The port it listens on.
    pub port: u16,
}

impl Tansu {
    /// Starts tansu on a free port and waits until it answers ApiVersions; `None` when tansu
    /// or the venv is missing and `KBS_SKIP_KAFKA=1`.
    pub fn start() -> Option<Tansu> {
        let tansu = find_program("tansu");
        let mut missing = Vec::new();
        if tansu.is_none() {
            missing.push("tansu (PATH or ~/.cargo/bin)".to_string());
        }
        if python().is_none() {
            missing.push(format!(
                "the venv python ({})",
                cache_dir().join("venv/bin/python").display()
            ));
        }
        require("KBS_SKIP_KAFKA", &missing)?;
        let port = free_port();
        let mut command = Command::new(tansu.expect("checked"));
        command
            .args(["broker", "--storage-engine", "memory://tansu/"])
            .arg("--listener-url")
            .arg(format!("tcp://127.0.0.1:{port}"))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://127.0.0.1:{port}"))
            .env("RUST_LOG", "warn");
        let mut server = Server::spawn(command);
        let log = server.log.clone();
        wait_until("tansu", Duration::from_secs(30), &mut server.child, &log, || {
            kafka_answers(port)
        });
        Some(Tansu { server, port })
    }

    /// `127.0.0.1:PORT`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's log.
    pub fn log_text(&self) -> String {
        self.server.log_text()
    }
}

/// Whether a Kafka broker on `port` answers an ApiVersions v0 request.
pub fn kafka_answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    // size 15, api_key 18 (ApiVersions), version 0, correlation id 7, client id "probe"
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

/// A moto S3 server (honours If-None-Match / If-Match like AWS).
pub struct Moto {
    _server: Server,
    /// The port it listens on.
    pub port: u16,
}

impl Moto {
    /// Starts `moto_server` on a free port; `None` when it is missing and `KBS_SKIP_MOTO=1`.
    pub fn start() -> Option<Moto> {
        let program = cache_dir().join("venv/bin/moto_server");
        let missing = if program.is_file() {
            vec![]
        } else {
            vec![format!("moto_server ({})", program.display())]
        };
        require("KBS_SKIP_MOTO", &missing)?;
        let port = free_port();
        let mut command = Command::new(program);
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let mut server = Server::spawn(command);
        let log = server.log.clone();
        wait_until("moto_server", Duration::from_secs(30), &mut server.child, &log, || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Some(Moto { _server: server, port })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket with boto3 from the venv.
    pub fn create_bucket(&self, bucket: &str) {
        let code = format!(
            "import boto3; boto3.client('s3', endpoint_url='{}', region_name='us-east-1', \
             aws_access_key_id='test', aws_secret_access_key='test').create_bucket(Bucket='{bucket}')",
            self.endpoint()
        );
        let out = Command::new(python().expect("venv python"))
            .args(["-c", &code])
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "create bucket: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Path of a script shipped in `kbs-testkit/py`.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("py").join(name)
}

/// Runs a script from `kbs-testkit/py` with the venv's Python; panics with its stderr on failure.
pub fn run_script(name: &str, args: &[&str]) -> Output {
    let output = Command::new(python().expect("venv python"))
        .arg(script(name))
        .args(args)
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "{name} {args:?} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
