//! What a restore reports: the target topics, the per-partition plan results, the consumer-group
//! moves, and the text rendering of it all.

use super::*;

/// A target topic of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct TargetTopic {
    /// Name.
    pub name: String,
    /// Partitions the restore needs.
    pub partitions_needed: i32,
    /// Partitions the backup says the source had.
    pub source_partition_count: Option<u32>,
    /// Whether it exists in the target cluster.
    pub exists: bool,
    /// Its partition count there, when it exists.
    pub existing_partitions: Option<i32>,
}

/// A consumer-group offset translation.
#[derive(Debug, Clone, Serialize)]
pub struct GroupMove {
    /// Group.
    pub group: String,
    /// Source topic and partition.
    pub source: String,
    /// The committed source offset (next record the group would read); `-1` for a
    /// repartitioned topic (`source` is then `topic/*`: the group's offsets on every source
    /// partition are translated together).
    pub source_offset: i64,
    /// Target topic and partition.
    pub target: String,
    /// The offset committed in the target (absent in a dry run).
    pub target_offset: Option<i64>,
    /// `committed`, `planned`, or why it was not committed.
    pub status: String,
}

/// What a restore did (or, with `--dry-run`, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreReport {
    /// The restore id.
    pub restore_id: String,
    /// The backup.
    pub backup_id: String,
    /// Only planned.
    pub dry_run: bool,
    /// The plan per source partition.
    pub partitions: Vec<PartitionPlan>,
    /// Target topics.
    pub targets: Vec<TargetTopic>,
    /// Records produced per source partition (`topic/partition` → records, bytes).
    pub restored: BTreeMap<String, (u64, u64)>,
    /// Segments skipped as corrupt (`--skip-corrupt`), with the reason.
    pub skipped_segments: Vec<String>,
    /// Consumer-group translations.
    pub groups: Vec<GroupMove>,
    /// Repartitioned topics: planned (dry run) or restored records per target partition.
    pub reshaped: Vec<ReshapedTopic>,
    /// Records produced by this run.
    pub records: u64,
    /// Key and value bytes produced by this run.
    pub bytes: u64,
    /// Wall time in seconds.
    pub duration_secs: f64,
}

/// Renders a plan or report as text.
pub fn report_text(r: &RestoreReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {} of backup {}",
        if r.dry_run { "restore plan" } else { "restore" },
        r.restore_id,
        r.backup_id
    );
    for t in &r.targets {
        let _ = writeln!(
            out,
            "target topic {}: needs {} partitions, {}",
            t.name,
            t.partitions_needed,
            match t.existing_partitions {
                Some(n) => format!("exists with {n} partitions"),
                None => "does not exist".to_string(),
            }
        );
    }
    for p in &r.partitions {
        let target = if p.target_partition < 0 {
            format!("{} (repartitioned)", p.target_topic)
        } else {
            format!("{}/{}", p.target_topic, p.target_partition)
        };
        let _ = writeln!(
            out,
            "  {}/{} -> {target}: {} segments, up to {} records, {} bytes{}",
            p.topic,
            p.partition,
            p.segments.len(),
            p.estimated_records,
            p.estimated_bytes,
            match (p.start_offset, p.end_offset) {
                (None, None) => String::new(),
                (s, e) => format!(
                    " (offsets {}..{})",
                    s.map_or("start".into(), |v| v.to_string()),
                    e.map_or("end".into(), |v| v.to_string())
                ),
            }
        );
        if let Some((records, bytes)) = r.restored.get(&partition_key(&p.topic, p.partition)) {
            let _ = writeln!(out, "      restored {records} records, {bytes} bytes");
        }
    }
    for t in &r.reshaped {
        let _ = writeln!(
            out,
            "repartitioned {} ({} source partitions) -> {} ({} partitions) by {}{}:",
            t.topic,
            t.source_partitions,
            t.target_topic,
            t.target_partitions,
            t.repartition.name(),
            if r.dry_run { ", planned" } else { ", restored" }
        );
        for share in &t.per_target {
            let _ = writeln!(
                out,
                "  -> {}/{}: {} records, {} bytes",
                t.target_topic, share.partition, share.records, share.bytes
            );
        }
    }
    for s in &r.skipped_segments {
        let _ = writeln!(out, "SKIPPED corrupt segment {s}");
    }
    for g in &r.groups {
        let source = if g.source_offset < 0 {
            g.source.clone()
        } else {
            format!("{}@{}", g.source, g.source_offset)
        };
        let _ = writeln!(
            out,
            "group {}: {source} -> {}@{} {}",
            g.group,
            g.target,
            g.target_offset.map_or("?".to_string(), |o| o.to_string()),
            g.status
        );
    }
    if !r.dry_run {
        let secs = r.duration_secs.max(1e-9);
        let _ = writeln!(
            out,
            "restored {} records, {} bytes in {secs:.1} s ({:.0} records/s, {:.1} MiB/s)",
            r.records,
            r.bytes,
            r.records as f64 / secs,
            r.bytes as f64 / secs / (1 << 20) as f64
        );
    }
    out
}
