//! Prometheus metrics of a running backup or restore, served as text at
//! `http://HOST:PORT/metrics`.

mod backup;
mod client;
mod restore;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub use backup::BackupMetrics;
pub use client::ClientMetrics;
pub use restore::RestoreMetrics;

/// Serves `metrics` at `addr`, if one is given, for the command line's `--metrics-addr`.
pub async fn serve_if_asked(
    addr: Option<&str>,
    metrics: Arc<dyn Exposition>,
) -> Result<Option<tokio::task::JoinHandle<()>>, crate::error::CliError> {
    let Some(addr) = addr else { return Ok(None) };
    serve(addr, metrics)
        .await
        .map(Some)
        .map_err(|e| crate::error::CliError::InvalidArgument {
            flag: "metrics-addr",
            message: format!("cannot listen on {addr}: {e}"),
        })
}

/// Metrics that render as Prometheus text.
pub trait Exposition: Send + Sync + 'static {
    /// The Prometheus text exposition of the current values.
    fn render(&self) -> String;
}

/// A Prometheus label value: backslash and double quote escaped.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Serves `metrics` at `addr` until the task is dropped or aborted. Answers `GET /metrics`
/// (and `/`) with the text exposition, anything else with 404.
pub async fn serve(addr: &str, metrics: Arc<dyn Exposition>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                // Read the request head (it may arrive in several segments), at most 8 KiB.
                let mut request = Vec::with_capacity(1024);
                let mut chunk = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
                    match tokio::time::timeout(Duration::from_secs(5), socket.read(&mut chunk)).await {
                        Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                        Ok(Ok(n)) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&request);
                let path = line.split_whitespace().nth(1).unwrap_or("");
                let response = if path == "/metrics" || path == "/" {
                    let body = metrics.render();
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
                };
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    }))
}
