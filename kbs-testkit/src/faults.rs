//! A fault-injecting HTTP proxy for S3 servers: every connection carries one request, and the
//! faults queued with [`S3FaultProxy::fail_next`] are applied to the next connections, one each
//! (a reset, S3's `503 SlowDown`, a `403`, a hang); the others are forwarded, request bodies
//! at most at the rate [`S3FaultProxy::slow_uploads`] sets (a store that writes slowly).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the proxy does with one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Fault {
    /// Read the request, then close the connection without answering.
    Reset,
    /// Answer `503 Slow Down` (S3's throttling answer).
    Unavailable,
    /// Answer `403 Access Denied`.
    Forbidden,
    /// Read the request and never answer.
    Hang,
}

/// A TCP proxy to `target` that applies scripted faults to its first connections.
#[derive(Debug)]
pub struct S3FaultProxy {
    /// Where the proxy listens.
    pub addr: SocketAddr,
    plan: Arc<Mutex<Vec<S3Fault>>>,
    /// Connections accepted so far (one per request).
    pub connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    pacing: Arc<Pacing>,
    download_pacing: Arc<Pacing>,
    request_lines: Arc<Mutex<Vec<String>>>,
}

/// A rate limit, shared by every connection: each chunk of a request body takes its
/// turn on one clock.
#[derive(Debug, Default)]
struct Pacing {
    bytes_per_sec: AtomicUsize,
    next: Mutex<Option<Instant>>,
}

impl Pacing {
    /// Waits until `bytes` more may pass.
    fn take(&self, bytes: usize) {
        let rate = self.bytes_per_sec.load(Ordering::SeqCst);
        if rate == 0 {
            return;
        }
        let cost = Duration::from_secs_f64(bytes as f64 / rate as f64);
        let due = {
            let mut next = self.next.lock().unwrap();
            let now = Instant::now();
            let start = next.filter(|n| *n > now).unwrap_or(now);
            *next = Some(start + cost);
            start + cost
        };
        // Rate limiting, not synchronisation: this is how slow the store is.
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
}

impl S3FaultProxy {
    /// Listens on a free loopback port, forwarding to `target` (an S3 server).
    pub fn start(target: SocketAddr) -> S3FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let plan: Arc<Mutex<Vec<S3Fault>>> = Arc::default();
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let pacing = Arc::new(Pacing::default());
        let download_pacing = Arc::new(Pacing::default());
        let (plan2, connections2, stop2) = (Arc::clone(&plan), Arc::clone(&connections), Arc::clone(&stop));
        let (pacing2, download_pacing2) = (Arc::clone(&pacing), Arc::clone(&download_pacing));
        let request_lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let request_lines2 = Arc::clone(&request_lines);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = stream else { continue };
                connections2.fetch_add(1, Ordering::SeqCst);
                let fault = {
                    let mut plan = plan2.lock().unwrap();
                    if plan.is_empty() { None } else { Some(plan.remove(0)) }
                };
                let pacing = (Arc::clone(&pacing2), Arc::clone(&download_pacing2));
                let lines = Arc::clone(&request_lines2);
                std::thread::spawn(move || handle(client, target, fault, &pacing.0, &pacing.1, &lines));
            }
        });
        S3FaultProxy {
            addr,
            plan,
            connections,
            stop,
            pacing,
            download_pacing,
            request_lines,
        }
    }

    /// The request line (`POST /bucket?delete HTTP/1.1`) of every request the proxy read, in
    /// the order read.
    pub fn request_lines(&self) -> Vec<String> {
        self.request_lines.lock().unwrap().clone()
    }

    /// From now on, response bodies pass at most at `bytes_per_sec` in all (0: unlimited), as
    /// from a store that reads slowly.
    pub fn slow_downloads(&self, bytes_per_sec: usize) {
        self.download_pacing
            .bytes_per_sec
            .store(bytes_per_sec, Ordering::SeqCst);
    }

    /// From now on, request bodies pass at most at `bytes_per_sec` in all (0: unlimited), as
    /// through a store that writes slowly.
    pub fn slow_uploads(&self, bytes_per_sec: usize) {
        self.pacing.bytes_per_sec.store(bytes_per_sec, Ordering::SeqCst);
    }

    /// Queues faults for the next connections.
    pub fn fail_next(&self, faults: &[S3Fault]) {
        self.plan.lock().unwrap().extend_from_slice(faults);
    }

    /// Drops the faults not applied yet: the store is healthy again.
    pub fn heal(&self) {
        self.plan.lock().unwrap().clear();
    }

    /// `http://ADDR`, the endpoint to give S3 clients.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Faults queued and not yet applied.
    pub fn pending_faults(&self) -> usize {
        self.plan.lock().unwrap().len()
    }
}

impl Drop for S3FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Reads an HTTP message head (up to the blank line), dropping any `Connection` header, and
/// returns it with its `Content-Length`.
fn read_head(reader: &mut BufReader<TcpStream>) -> std::io::Result<(String, usize)> {
    let mut head = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            return Ok((head, length));
        }
        if let Some((name, value)) = trimmed.split_once(':') {
            if name.eq_ignore_ascii_case("connection") {
                continue;
            }
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        head.push_str(trimmed);
        head.push_str("\r\n");
    }
}

/// Handles one connection, which carries exactly one request: every forwarded request and
/// response gets `Connection: close`, so the client opens a new connection per request and each
/// scripted fault hits exactly one request.
fn handle(
    client: TcpStream,
    target: SocketAddr,
    fault: Option<S3Fault>,
    pacing: &Pacing,
    download_pacing: &Pacing,
    request_lines: &Mutex<Vec<String>>,
) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let Ok((head, length)) = read_head(&mut reader) else {
        return;
    };
    request_lines
        .lock()
        .unwrap()
        .push(head.lines().next().unwrap_or_default().to_owned());
    let mut body = vec![0; length];
    for chunk in body.chunks_mut(64 << 10) {
        pacing.take(chunk.len());
        if reader.read_exact(chunk).is_err() {
            return;
        }
    }
    let mut client = client;
    let answer = |status: &str, code: &str| {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected</Message></Error>"
        );
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    match fault {
        None => {
            let Ok(mut server) = TcpStream::connect(target) else {
                return;
            };
            let request = format!("{head}Connection: close\r\n\r\n");
            if server
                .write_all(request.as_bytes())
                .and_then(|()| server.write_all(&body))
                .is_err()
            {
                return;
            }
            let mut response = BufReader::new(server);
            let Ok((head, _)) = read_head(&mut response) else {
                return;
            };
            let _ = client.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes());
            let mut chunk = vec![0u8; 64 << 10];
            loop {
                let n = match response.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                download_pacing.take(n);
                if client.write_all(&chunk[..n]).is_err() {
                    break;
                }
            }
        }
        Some(S3Fault::Reset) => {}
        Some(S3Fault::Unavailable) => {
            let _ = client.write_all(answer("503 Service Unavailable", "SlowDown").as_bytes());
        }
        Some(S3Fault::Forbidden) => {
            let _ = client.write_all(answer("403 Forbidden", "AccessDenied").as_bytes());
        }
        Some(S3Fault::Hang) => std::thread::sleep(Duration::from_secs(5)),
    }
    let _ = client.shutdown(std::net::Shutdown::Both);
}
