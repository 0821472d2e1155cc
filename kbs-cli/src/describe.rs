//! `kbs describe`: everything the manifest says about a backup.

use std::sync::Arc;

use kbs_manifest::{BackupId, Manifest, layout};
use kbs_storage::ObjectStorage;

use crate::error::CliError;

/// Reads and parses a backup's manifest.
pub async fn load_manifest(storage: &Arc<dyn ObjectStorage>, backup_id: &BackupId) -> Result<Manifest, CliError> {
    let key = layout::manifest_key(backup_id);
    let got = match storage.get(&key).await {
        Ok(got) => got,
        Err(e) if e.is_not_found() => {
            return Err(CliError::BackupNotFound {
                backup_id: backup_id.to_string(),
                storage: storage.describe().to_string(),
                key,
            });
        }
        Err(e) => return Err(e.into()),
    };
    Manifest::from_json(&got.bytes).map_err(|e| CliError::Unparsable {
        key,
        message: e.to_string(),
    })
}

/// A text description of a manifest.
pub fn describe_text(manifest: &Manifest) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let s = &manifest.statistics;
    let _ = writeln!(out, "backup      {}", manifest.backup_id);
    let _ = writeln!(out, "status      {}", crate::list::status_name(manifest));
    let _ = writeln!(out, "created     {}", manifest.created_at.as_str());
    if let Some(done) = &manifest.completed_at {
        let _ = writeln!(out, "completed   {}", done.as_str());
    }
    let _ = writeln!(
        out,
        "source      cluster {} via {}",
        manifest.source_cluster.cluster_id,
        manifest.source_cluster.bootstrap_servers.join(",")
    );
    let _ = writeln!(
        out,
        "compression {:?} level {}",
        manifest.compression.algorithm, manifest.compression.level
    );
    let _ = writeln!(
        out,
        "totals      {} topics, {} partitions, {} segments, {} records, {} bytes stored ({} uncompressed)",
        s.topics, s.partitions, s.segments, s.records, s.compressed_bytes, s.uncompressed_bytes
    );
    if let Some(range) = &manifest.time_range {
        let _ = writeln!(
            out,
            "time range  {} .. {} (ms)",
            range.earliest_timestamp, range.latest_timestamp
        );
    }
    for topic in &manifest.topics {
        let count = topic.partition_count.map_or_else(|| "?".to_string(), |c| c.to_string());
        let _ = writeln!(out, "\ntopic {} ({count} partitions)", topic.name);
        if let Some(configs) = &topic.configs
            && !configs.is_empty()
        {
            let list: Vec<String> = configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(out, "  configs: {}", list.join(", "));
        }
        for p in &topic.partitions {
            let _ = writeln!(
                out,
                "  partition {:>4}: offsets {}..{}, {} records in {} segments",
                p.partition, p.first_offset, p.last_offset, p.records, p.segments
            );
            for f in &p.segment_files {
                let _ = writeln!(
                    out,
                    "    {} offsets {}..{} records {} time {}..{} bytes {} crc64 {:016x}",
                    f.name,
                    f.first_offset,
                    f.last_offset,
                    f.records,
                    f.min_timestamp,
                    f.max_timestamp,
                    f.size_bytes,
                    f.crc64.0
                );
            }
            for g in &p.gaps {
                let _ = writeln!(out, "    gap {}..{} ({})", g.from_offset, g.to_offset, g.reason);
            }
        }
    }
    if let Some(groups) = &manifest.consumer_groups {
        let _ = writeln!(out, "\nconsumer groups");
        for (group, topics) in groups {
            for (topic, partitions) in topics {
                for (partition, committed) in partitions {
                    let _ = writeln!(out, "  {group} {topic}/{partition} offset {}", committed.offset);
                }
            }
        }
    }
    out
}
