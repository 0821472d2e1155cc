//! A tansu broker (Kafka-compatible, in-memory storage).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::server::{Server, free_port, start_with_retries};
use crate::tools::{cache_dir, find_program, python, require};

/// A tansu broker with in-memory storage, killed on drop. Tests that need it also get the
/// venv's Python (confluent-kafka), checked by the same skip rule.
#[derive(Debug)]
pub struct Tansu {
    server: Server,
    /// The port it listens on.
    pub port: u16,
    /// The port it advertises in metadata: a front proxy's, or [`Tansu::port`].
    pub advertised_port: u16,
}

impl Tansu {
    /// Starts tansu on a free port and waits until it answers ApiVersions; `None` when tansu
    /// or the venv is missing and `KBS_SKIP_KAFKA=1`.
    pub fn start() -> Option<Tansu> {
        let program = tansu_program()?;
        Some(start_with_retries("tansu", || {
            let port = free_port();
            Tansu::try_start(&program, port, port)
        }))
    }

    /// Starts tansu listening on `port` and advertising `advertised_port` (where a front proxy
    /// that relays to `port` listens), and waits until it answers ApiVersions on `port`; `None`
    /// when tansu or the venv is missing and `KBS_SKIP_KAFKA=1`.
    pub fn start_advertising(port: u16, advertised_port: u16) -> Option<Tansu> {
        let program = tansu_program()?;
        Some(Tansu::try_start(&program, port, advertised_port).unwrap_or_else(|e| panic!("{e}")))
    }

    fn try_start(program: &std::path::Path, port: u16, advertised_port: u16) -> Result<Tansu, String> {
        let mut command = Command::new(program);
        command
            .args(["broker", "--storage-engine", "memory://tansu/"])
            .arg("--listener-url")
            .arg(format!("tcp://127.0.0.1:{port}"))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://127.0.0.1:{advertised_port}"))
            .env("RUST_LOG", "warn");
        let mut server = Server::spawn(command);
        server.wait_ready("tansu", Duration::from_millis(20), || kafka_answers(port))?;
        Ok(Tansu {
            server,
            port,
            advertised_port,
        })
    }

    /// `127.0.0.1:PORT` for clients to bootstrap from (the advertised port).
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.advertised_port)
    }

    /// The broker's log.
    pub fn log_text(&self) -> String {
        self.server.log_text()
    }
}

/// tansu's path once tansu and the venv's Python are known to be there.
fn tansu_program() -> Option<std::path::PathBuf> {
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
    tansu
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_listening_is_not_a_broker() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        assert!(!kafka_answers(port));
    }

    #[test]
    fn a_server_answering_the_wrong_correlation_id_is_not_a_broker() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            for correlation in [7u8, 8] {
                let (mut stream, _) = listener.accept().unwrap();
                let mut request = [0u8; 19];
                stream.read_exact(&mut request).unwrap();
                assert_eq!(&request[4..6], &[0, 18], "ApiVersions");
                stream.write_all(&[0, 0, 0, 6, 0, 0, 0, correlation, 0, 0]).unwrap();
            }
        });
        assert!(kafka_answers(port));
        assert!(!kafka_answers(port));
        server.join().unwrap();
    }
}
