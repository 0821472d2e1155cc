//! `kbs describe`: everything the manifest says about a backup.

use std::sync::Arc;

use kbs_manifest::{BackupId, Manifest, layout};
use kbs_storage::ObjectStorage;

use crate::error::CliError;
use crate::running::BackupActivity;

/// Reads and parses a backup's manifest.
pub async fn load_manifest(storage: &Arc<dyn ObjectStorage>, backup_id: &BackupId) -> Result<Manifest, CliError> {
    crate::prune::refuse_if_deleted(storage, backup_id).await?;
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

/// A text description of a manifest. `activity` is what runs the backup now
/// ([`crate::running::backup_activity`]): an `in_progress` backup is then described as running
/// or interrupted; without it, as possibly either.
pub fn describe_text(manifest: &Manifest, activity: Option<&BackupActivity>) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let s = &manifest.statistics;
    let _ = writeln!(out, "backup      {}", manifest.backup_id);
    let status = crate::list::status_name(manifest);
    if status == "in_progress" {
        let line = match activity {
            Some(activity) => activity.describe(crate::lease::unix_now_ms()),
            None => "INCOMPLETE (interrupted, or a continuous backup still running; rerun its backup command to \
                     finish it)"
                .to_owned(),
        };
        let _ = writeln!(out, "status      in_progress: {line}");
    } else if let Some(failure) = manifest.failure.as_deref().filter(|_| status == "failed") {
        let _ = writeln!(out, "status      failed: {failure}");
    } else {
        let _ = writeln!(out, "status      {status}");
    }
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
    if let Some(encryption) = &manifest.encryption {
        let _ = writeln!(
            out,
            "encryption  {} to {}",
            encryption.scheme,
            encryption.recipients.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "totals      {} topics, {} partitions, {} segments, {} records, {} bytes stored ({} uncompressed)",
        s.topics, s.partitions, s.segments, s.records, s.compressed_bytes, s.uncompressed_bytes
    );
    if let Some(range) = &manifest.time_range {
        let iso = |ms: i64| {
            kbs_manifest::UtcTimestamp::from_unix_millis(ms)
                .map_or_else(|_| "out of range".to_owned(), |t| t.as_str().to_owned())
        };
        let _ = writeln!(
            out,
            "time range  {} .. {} ({} .. {} ms)",
            iso(range.earliest_timestamp),
            iso(range.latest_timestamp),
            range.earliest_timestamp,
            range.latest_timestamp
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

/// Restores recorded under a backup (`<backup-id>/restores/<restore-id>/progress.json`).
pub async fn load_restores(
    storage: &Arc<dyn ObjectStorage>,
    backup_id: &BackupId,
) -> Result<Vec<crate::restore::RestoreProgress>, CliError> {
    let prefix = format!("{}restores/", layout::backup_prefix(backup_id));
    let listing = storage.list_with_delimiter(&prefix).await?;
    let mut restores = Vec::new();
    for restore in listing.common_prefixes {
        let key = format!(
            "{}progress.json",
            if restore.ends_with('/') {
                restore.clone()
            } else {
                format!("{restore}/")
            }
        );
        match storage.get(&key).await {
            Ok(got) => match serde_json::from_slice(&got.bytes) {
                Ok(progress) => restores.push(progress),
                Err(e) => tracing::warn!("{key}: cannot parse: {e}"),
            },
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(restores)
}

/// A text description of the restores of a backup, with their consumer-group translations.
pub fn restores_text(restores: &[crate::restore::RestoreProgress]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if restores.is_empty() {
        return out;
    }
    let _ = writeln!(out, "\nrestores");
    for r in restores {
        let targets = r.target_partitions();
        let done = targets.iter().filter(|(_, p)| p.done).count();
        let records: u64 = targets.iter().map(|(_, p)| p.records).sum();
        let _ = writeln!(
            out,
            "  {}: {done}/{} partitions done, {records} records",
            r.restore_id,
            targets.len()
        );
        for (source, p) in &targets {
            let _ = writeln!(
                out,
                "    {source} -> {}/{}: {} records, next target offset {}",
                p.target_topic, p.target_partition, p.records, p.next_target_offset
            );
        }
        for (group, offsets) in &r.groups {
            for (target, offset) in offsets {
                let _ = writeln!(out, "    group {group}: committed {target}@{offset}");
            }
        }
    }
    out
}
