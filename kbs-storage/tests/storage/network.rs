//! Network faults between the S3 backend and a real server: a loopback HTTP proxy in front of
//! moto fails scripted requests (reset, HTTP 503, a hang, a 403) and forwards the others. These
//! check that object_store's real errors are classified (retriable or permanent) and that the
//! retry layer recovers, with object_store's own retries switched off.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kbs_storage::{ConditionalWrites, Error, ObjectStorage, ObjectStorageExt, RetryConfig, StorageOptions};

use crate::servers::{Moto, S3Server};

/// What the proxy does with one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectionFault {
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
pub(crate) struct FaultProxy {
    pub(crate) addr: SocketAddr,
    plan: Arc<Mutex<Vec<ConnectionFault>>>,
    pub(crate) connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    pub(crate) fn start(target: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let plan: Arc<Mutex<Vec<ConnectionFault>>> = Arc::default();
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (plan2, connections2, stop2) = (Arc::clone(&plan), Arc::clone(&connections), Arc::clone(&stop));
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
                std::thread::spawn(move || handle(client, target, fault));
            }
        });
        FaultProxy {
            addr,
            plan,
            connections,
            stop,
        }
    }

    /// Queues faults for the next connections.
    pub(crate) fn fail_next(&self, faults: &[ConnectionFault]) {
        self.plan.lock().unwrap().extend_from_slice(faults);
    }

    pub(crate) fn pending_faults(&self) -> usize {
        self.plan.lock().unwrap().len()
    }
}

impl Drop for FaultProxy {
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
fn handle(client: TcpStream, target: SocketAddr, fault: Option<ConnectionFault>) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let Ok((head, length)) = read_head(&mut reader) else {
        return;
    };
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
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
            let _ = std::io::copy(&mut response, &mut client);
        }
        Some(ConnectionFault::Reset) => {}
        Some(ConnectionFault::Unavailable) => {
            let _ = client.write_all(answer("503 Service Unavailable", "SlowDown").as_bytes());
        }
        Some(ConnectionFault::Forbidden) => {
            let _ = client.write_all(answer("403 Forbidden", "AccessDenied").as_bytes());
        }
        Some(ConnectionFault::Hang) => std::thread::sleep(Duration::from_secs(5)),
    }
    let _ = client.shutdown(std::net::Shutdown::Both);
}

/// Options for the store behind the proxy: conditional writes declared (no probe, so the
/// scripted faults hit the operations under test), short timeouts, fast retries.
fn proxied_options(moto: &Moto, proxy: &FaultProxy, retry: RetryConfig) -> StorageOptions {
    let mut options = moto
        .options()
        .with_s3_endpoint(format!("http://{}", proxy.addr))
        .with_retry(retry);
    options.conditional_writes = ConditionalWrites::Enabled;
    options.request_timeout = Duration::from_millis(700);
    options
}

fn fast_retries() -> RetryConfig {
    RetryConfig::default()
        .with_backoff(Duration::from_millis(5), Duration::from_millis(50))
        .with_limits(8, Duration::from_secs(30))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_operations_recover_from_resets_throttling_and_timeouts() {
    let Some(moto) = Moto::start() else { return };
    let proxy = FaultProxy::start(moto.addr());
    let store = kbs_storage::open(
        &format!("s3://{}/net", moto.bucket),
        &proxied_options(&moto, &proxy, fast_retries()),
    )
    .await
    .unwrap();

    use ConnectionFault::*;
    proxy.fail_next(&[Reset, Unavailable, Hang, Unavailable]);
    let data = Bytes::from_static(b"through a flaky network");
    store.put("k", data.clone()).await.unwrap();
    assert_eq!(proxy.pending_faults(), 0, "every fault was hit");
    assert!(proxy.connections.load(Ordering::SeqCst) >= 5);

    proxy.fail_next(&[Unavailable, Reset]);
    assert_eq!(store.get("k").await.unwrap().bytes, data);
    proxy.fail_next(&[Reset]);
    let head = store.head("k").await.unwrap();
    proxy.fail_next(&[Unavailable]);
    store
        .put_if_match("k", Bytes::from_static(b"v2"), &head.version)
        .await
        .unwrap();
    proxy.fail_next(&[Reset, Unavailable]);
    assert_eq!(store.list_all("").await.unwrap().len(), 1);
    proxy.fail_next(&[Unavailable]);
    store.delete("k").await.unwrap();
    assert_eq!(proxy.pending_faults(), 0);
    assert!(!store.exists("k").await.unwrap());

    // Multipart parts (5 MiB) through resets.
    let mut writer = store.put_multipart_with_part_size("mp", 5 << 20).await.unwrap();
    proxy.fail_next(&[Reset, Unavailable]);
    let big = crate::conformance::content(11, (5 << 20) + 100);
    writer.write(big.clone()).await.unwrap();
    writer.complete().await.unwrap();
    assert!(store.get("mp").await.unwrap().bytes == big);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_errors_are_classified() {
    let Some(moto) = Moto::start() else { return };
    let proxy = FaultProxy::start(moto.addr());
    let store = kbs_storage::open_without_retries(
        &format!("s3://{}/net", moto.bucket),
        &proxied_options(&moto, &proxy, RetryConfig::no_retries()),
    )
    .await
    .unwrap();
    store.put("k", Bytes::from_static(b"x")).await.unwrap();

    use ConnectionFault::*;
    for (fault, what) in [(Reset, "reset"), (Unavailable, "503"), (Hang, "timeout")] {
        proxy.fail_next(&[fault]);
        let error = store.get("k").await.unwrap_err();
        assert!(error.is_retriable(), "{what} must be retriable: {error:?}");
        assert!(matches!(error, Error::Backend { .. }), "{what}: {error:?}");
        assert_eq!(error.key(), Some("k"));
    }
    proxy.fail_next(&[Forbidden]);
    let error = store.get("k").await.unwrap_err();
    assert!(matches!(error, Error::AccessDenied { .. }), "403: {error:?}");
    assert!(!error.is_retriable());
    let error = store.get("missing").await.unwrap_err();
    assert!(matches!(error, Error::NotFound { .. }), "{error:?}");

    // With the retry layer, a 403 is tried exactly once.
    let retrying = kbs_storage::open(
        &format!("s3://{}/net", moto.bucket),
        &proxied_options(&moto, &proxy, fast_retries()),
    )
    .await
    .unwrap();
    let before = proxy.connections.load(Ordering::SeqCst);
    proxy.fail_next(&[Forbidden]);
    let error = retrying.head("k").await.unwrap_err();
    assert!(matches!(error, Error::AccessDenied { .. }), "{error:?}");
    // One connection for the failed attempt; no retry opened another.
    assert_eq!(proxy.connections.load(Ordering::SeqCst) - before, 1);
}
