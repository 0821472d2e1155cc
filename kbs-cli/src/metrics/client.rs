//! What the Kafka client and the store report (retries, throttling, session renewals), for
//! every command that serves metrics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::label;

/// Counters of the Kafka client's and the store's retries and of broker throttling.
#[derive(Debug, Default)]
pub struct ClientMetrics {
    /// Kafka requests retried, by operation and error kind.
    pub kafka_retries: Mutex<BTreeMap<(String, String), u64>>,
    /// Time brokers throttled the client for (quota), in microseconds.
    pub kafka_throttle_micros: AtomicU64,
    /// Throttled responses.
    pub kafka_throttles: AtomicU64,
    /// SASL sessions renewed on live connections (KIP-368).
    pub kafka_reauthentications: AtomicU64,
    /// Storage operations retried, by operation.
    pub storage_retries: Mutex<BTreeMap<String, u64>>,
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

impl kbs_kafka::ClientEvents for ClientMetrics {
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

impl kbs_storage::RetryObserver for ClientMetrics {
    fn retrying(&self, error: &kbs_storage::Error, _attempt: u32, _delay: Duration) {
        let operation = error.operation().map_or("unknown", |o| o.as_str());
        if let Ok(mut retries) = self.storage_retries.lock() {
            *retries.entry(operation.to_owned()).or_default() += 1;
        }
    }
}

impl ClientMetrics {
    /// Appends the Prometheus text exposition of these counters to `out`.
    pub fn render_into(&self, out: &mut String) {
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
            "# HELP kbs_storage_retries_total Storage operations retried, by operation.\n\
             # TYPE kbs_storage_retries_total counter"
        );
        if let Ok(retries) = self.storage_retries.lock() {
            for (operation, n) in retries.iter() {
                let _ = writeln!(out, "kbs_storage_retries_total{{operation=\"{operation}\"}} {n}");
            }
        }
    }
}
