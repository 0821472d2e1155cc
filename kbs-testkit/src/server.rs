//! Server processes: free ports, waiting until a server answers, killing it on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to start answering.
pub(crate) const START_DEADLINE: Duration = Duration::from_secs(60);

/// How many times a server whose free port was taken meanwhile is started on other ports.
const START_ATTEMPTS: usize = 3;

/// A free loopback port (bound, then released for the server to bind).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind loopback")
        .local_addr()
        .expect("local addr")
        .port()
}

/// Polls `ready` every `interval` until it is true; an error with `what` and the server's log
/// when `child` exits first or `timeout` passes.
pub(crate) fn poll_until(
    what: &str,
    timeout: Duration,
    interval: Duration,
    child: &mut Child,
    log: &Path,
    mut ready: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("{what} exited with {status} before answering; log:\n{log}"));
        }
        if ready() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("{what} not ready within {timeout:?}; log:\n{log}"));
        }
        std::thread::sleep(interval);
    }
}

/// Polls `ready` every 20 ms until it is true, panicking with `what` and the server's log when
/// `child` exits first or `timeout` passes.
pub fn wait_until(what: &str, timeout: Duration, child: &mut Child, log: &Path, ready: impl FnMut() -> bool) {
    if let Err(e) = poll_until(what, timeout, Duration::from_millis(20), child, log, ready) {
        panic!("{e}");
    }
}

/// Runs `attempt` (which starts a server on freshly chosen free ports) until it succeeds, at
/// most [`START_ATTEMPTS`] times: a port can be taken between choosing and binding it.
pub(crate) fn start_with_retries<T>(what: &str, mut attempt: impl FnMut() -> Result<T, String>) -> T {
    let mut errors = Vec::new();
    for _ in 0..START_ATTEMPTS {
        match attempt() {
            Ok(server) => return server,
            Err(e) => errors.push(e),
        }
    }
    panic!(
        "{what} did not start in {START_ATTEMPTS} attempts: {}",
        errors.join("\n---\n")
    );
}

/// A server process killed on drop, with its output (stdout and stderr) logged in a temporary
/// folder that lives as long as it.
#[derive(Debug)]
pub struct Server {
    child: Child,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts `command` in a new temporary folder (made by `prepare`, which may write config
    /// files there and returns the command).
    pub(crate) fn spawn_in(prepare: impl FnOnce(&Path) -> Command) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut command = prepare(dir.path());
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

    /// Starts `command` with a new temporary folder.
    pub(crate) fn spawn(command: Command) -> Server {
        Server::spawn_in(|_| command)
    }

    /// Polls `ready` every `interval` until it is true (see [`poll_until`]), within
    /// [`START_DEADLINE`].
    pub(crate) fn wait_ready(
        &mut self,
        what: &str,
        interval: Duration,
        ready: impl FnMut() -> bool,
    ) -> Result<(), String> {
        poll_until(what, START_DEADLINE, interval, &mut self.child, &self.log, ready)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    #[test]
    fn a_server_that_exits_is_reported_with_its_log() {
        let mut server = Server::spawn(sh("echo starting up; echo bad config >&2; exit 3"));
        let error = server
            .wait_ready("the test server", Duration::from_millis(5), || false)
            .unwrap_err();
        assert!(error.contains("the test server exited with exit status: 3"), "{error}");
        assert!(error.contains("starting up") && error.contains("bad config"), "{error}");
    }

    #[test]
    fn waiting_ends_at_the_deadline_and_the_server_is_killed_on_drop() {
        let mut server = Server::spawn(sh("exec sleep 600"));
        let mut polls = 0;
        let error = poll_until(
            "sleep",
            Duration::from_millis(100),
            Duration::from_millis(10),
            &mut server.child,
            &server.log,
            || {
                polls += 1;
                false
            },
        )
        .unwrap_err();
        assert!(error.contains("sleep not ready within 100ms"), "{error}");
        assert!(polls >= 2, "{polls} polls");
        let pid = server.child.id();
        let dir = server.dir().to_owned();
        drop(server);
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "killed and reaped");
        assert!(!dir.exists(), "temporary folder removed");
    }

    #[test]
    fn starting_is_retried_and_fails_with_every_error() {
        let mut attempts = 0;
        let started = start_with_retries("flaky", || {
            attempts += 1;
            if attempts < 3 {
                Err(format!("port taken ({attempts})"))
            } else {
                Ok(attempts)
            }
        });
        assert_eq!(started, 3);
        let failed = std::panic::catch_unwind(|| start_with_retries::<()>("broken", || Err("no".to_owned())));
        let message = failed.unwrap_err().downcast::<String>().unwrap();
        assert_eq!(*message, "broken did not start in 3 attempts: no\n---\nno\n---\nno");
    }
}
