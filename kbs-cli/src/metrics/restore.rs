//! The metrics of a running restore.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{ClientMetrics, Exposition};

/// Counters of a restore run, updated by the engine and read by the metrics endpoint.
#[derive(Debug, Default)]
pub struct RestoreMetrics {
    /// Records produced and acknowledged.
    pub records: AtomicU64,
    /// Record bytes (keys, values, headers) produced and acknowledged.
    pub bytes: AtomicU64,
    /// Partitions restored to their end.
    pub partitions_done: AtomicU64,
    /// Errors that ended the run.
    pub errors: AtomicU64,
    /// The Kafka client's and the store's retries and throttling.
    pub client: Arc<ClientMetrics>,
}

impl Exposition for RestoreMetrics {
    fn render(&self) -> String {
        let mut out = String::new();
        for (name, help, value) in [
            (
                "kbs_restore_records_total",
                "Records produced and acknowledged.",
                &self.records,
            ),
            (
                "kbs_restore_bytes_total",
                "Record bytes produced and acknowledged.",
                &self.bytes,
            ),
            (
                "kbs_restore_partitions_done_total",
                "Partitions restored to their end.",
                &self.partitions_done,
            ),
            (
                "kbs_restore_errors_total",
                "Errors that stopped the restore.",
                &self.errors,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        self.client.render_into(&mut out);
        out
    }
}
