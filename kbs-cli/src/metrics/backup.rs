//! The metrics of a running backup.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{ClientMetrics, Exposition, label};

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
    /// The Kafka client's and the store's retries and throttling.
    pub client: Arc<ClientMetrics>,
    /// Time spent waiting for partitions without a leader, in microseconds.
    pub leader_wait_micros: AtomicU64,
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
        self.client.render_into(&mut out);
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

impl Exposition for BackupMetrics {
    fn render(&self) -> String {
        BackupMetrics::render(self)
    }
}
