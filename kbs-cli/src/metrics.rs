//! Prometheus metrics of a running backup, served as text at `http://HOST:PORT/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Counters of a backup run, updated by the engine and read by the metrics endpoint.
#[derive(Debug, Default)]
pub struct BackupMetrics {
    /// Records stored.
    pub records: AtomicU64,
    /// Record bytes read from Kafka.
    pub bytes_in: AtomicU64,
    /// Segment bytes written.
    pub bytes_out: AtomicU64,
    /// Segments written.
    pub segments: AtomicU64,
    /// Gaps recorded.
    pub gaps: AtomicU64,
    /// Errors that ended the run.
    pub errors: AtomicU64,
    /// Storage writes (segments, checkpoints, manifests) and their total duration.
    pub storage_writes: AtomicU64,
    /// Sum of storage write durations, in microseconds.
    pub storage_write_micros: AtomicU64,
    /// Per partition: (next offset to read, high watermark).
    pub partitions: Mutex<BTreeMap<(String, i32), (i64, i64)>>,
    /// Kafka requests retried, by operation and error kind.
    pub kafka_retries: Mutex<BTreeMap<(String, String), u64>>,
    /// Time brokers throttled the client for (quota), in microseconds, and how many times.
    pub kafka_throttle_micros: AtomicU64,
    /// Throttled responses.
    pub kafka_throttles: AtomicU64,
    /// Time spent waiting for partitions without a leader, in microseconds.
    pub leader_wait_micros: AtomicU64,
    /// SASL sessions renewed on live connections (KIP-368).
    pub kafka_reauthentications: AtomicU64,
    /// Storage operations retried, by operation.
    pub storage_retries: Mutex<BTreeMap<String, u64>>,
}

impl kbs_storage::RetryObserver for BackupMetrics {
    fn retrying(&self, error: &kbs_storage::Error, _attempt: u32, _delay: Duration) {
        let operation = error.operation().map_or("unknown", |o| o.as_str());
        if let Ok(mut retries) = self.storage_retries.lock() {
            *retries.entry(operation.to_owned()).or_default() += 1;
        }
    }
}

/// The kind of a Kafka client error, for metric labels: the broker's error name when it sent
/// one, else the error's variant.
fn error_kind(error: &kbs_kafka::Error) -> String {
    if let Some(code) = error.code() {
        return code.name();
    }
    let debug = format!("{error:?}");
    debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or("Other")
        .to_owned()
}

impl kbs_kafka::ClientEvents for BackupMetrics {
    fn retrying(&self, operation: &str, error: &kbs_kafka::Error, _attempt: u32, _delay: Duration) {
        if let Ok(mut retries) = self.kafka_retries.lock() {
            *retries.entry((operation.to_owned(), error_kind(error))).or_default() += 1;
        }
    }

    fn throttled(&self, _broker: &str, _api: &str, throttle: Duration) {
        self.kafka_throttles.fetch_add(1, Ordering::Relaxed);
        self.kafka_throttle_micros
            .fetch_add(throttle.as_micros() as u64, Ordering::Relaxed);
    }

    fn reauthenticated(&self, _broker: &str, _session: Option<Duration>) {
        self.kafka_reauthentications.fetch_add(1, Ordering::Relaxed);
    }
}

impl BackupMetrics {
    /// Records one storage write's duration.
    pub fn observe_storage_write(&self, took: Duration) {
        self.storage_writes.fetch_add(1, Ordering::Relaxed);
        self.storage_write_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of the current values.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        };
        counter(
            &mut out,
            "kbs_backup_records_total",
            "Records stored.",
            self.records.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "kbs_backup_read_bytes_total",
            "Record bytes read from Kafka.",
            self.bytes_in.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "kbs_backup_written_bytes_total",
            "Segment bytes written.",
            self.bytes_out.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "kbs_backup_segments_total",
            "Segments written.",
            self.segments.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "kbs_backup_gaps_total",
            "Offset ranges lost to retention before they were read.",
            self.gaps.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "kbs_backup_errors_total",
            "Errors that stopped the backup.",
            self.errors.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP kbs_storage_retries_total Storage operations retried, by operation.\n\
             # TYPE kbs_storage_retries_total counter"
        );
        if let Ok(retries) = self.storage_retries.lock() {
            for (operation, n) in retries.iter() {
                let _ = writeln!(out, "kbs_storage_retries_total{{operation=\"{operation}\"}} {n}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP kbs_storage_write_seconds Storage write latency.\n# TYPE kbs_storage_write_seconds summary\n\
             kbs_storage_write_seconds_sum {}\nkbs_storage_write_seconds_count {}",
            self.storage_write_micros.load(Ordering::Relaxed) as f64 / 1e6,
            self.storage_writes.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP kbs_backup_leader_wait_seconds_total Time spent waiting for partitions without a leader.\n\
             # TYPE kbs_backup_leader_wait_seconds_total counter\nkbs_backup_leader_wait_seconds_total {}",
            self.leader_wait_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "# HELP kbs_kafka_retries_total Kafka requests retried, by operation and error.\n# TYPE kbs_kafka_retries_total counter"
        );
        if let Ok(retries) = self.kafka_retries.lock() {
            for ((operation, error), n) in retries.iter() {
                let _ = writeln!(
                    out,
                    "kbs_kafka_retries_total{{operation=\"{}\",error=\"{}\"}} {n}",
                    label(operation),
                    label(error)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP kbs_kafka_throttle_seconds Time brokers throttled kbs for (quotas).\n# TYPE kbs_kafka_throttle_seconds summary\n\
             kbs_kafka_throttle_seconds_sum {}\nkbs_kafka_throttle_seconds_count {}",
            self.kafka_throttle_micros.load(Ordering::Relaxed) as f64 / 1e6,
            self.kafka_throttles.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP kbs_kafka_reauthentications_total SASL sessions renewed on live connections (KIP-368).\n\
             # TYPE kbs_kafka_reauthentications_total counter\nkbs_kafka_reauthentications_total {}",
            self.kafka_reauthentications.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP kbs_backup_partition_lag Offsets between the next offset to read and the high watermark.\n# TYPE kbs_backup_partition_lag gauge"
        );
        if let Ok(partitions) = self.partitions.lock() {
            for ((topic, partition), (position, high)) in partitions.iter() {
                let _ = writeln!(
                    out,
                    "kbs_backup_partition_lag{{topic=\"{}\",partition=\"{partition}\"}} {}",
                    label(topic),
                    (high - position).max(0)
                );
            }
        }
        out
    }
}

/// A Prometheus label value: backslash and double quote escaped.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Serves `metrics` at `addr` until the task is dropped or aborted. Answers `GET /metrics`
/// (and `/`) with the text exposition, anything else with 404.
pub async fn serve(addr: &str, metrics: std::sync::Arc<BackupMetrics>) -> std::io::Result<tokio::task::JoinHandle<()>> {
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
