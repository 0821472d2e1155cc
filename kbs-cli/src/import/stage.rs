//! Staging: envelope objects turned into a kbs backup, which `kbs restore` then produces.
//!
//! 1. **List** the objects of the format under `--from` (names with a folder or file starting
//!    with `_` or `.` are left out: `_kbs_export.json`, hidden files).
//! 2. **Index**: read every object once and note, per source partition, the offset range
//!    each object holds.
//! 3. **Write** each partition's segments in offset order. Objects whose ranges overlap (an
//!    export laid out with `--partition-by`, or a connector that wrote a range twice) are
//!    merged; a record found twice is kept once (two different records at one offset are
//!    refused).
//! 4. **Commit** the manifest, complete. `<backup-id>/import-sources.json` records which
//!    objects (names and sizes) and decoding made the backup: a rerun over the same objects
//!    skips staging, a rerun over changed objects is refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt as _;
use kbs_format::{Compression, Record, WriterOptions, encode_segment};
use kbs_manifest::{
    BackupId, CompressionAlgorithm, Manifest, ManifestBuilder, SegmentName, SourceCluster, TopicName, UtcTimestamp,
    layout,
};
use kbs_storage::{ObjectStorage, ObjectStorageExt as _};
use serde_json::{Value, json};

use super::read::{EnvelopeRecord, TextDecoding, read_avro, read_jsonl, read_parquet};
use super::{ImportFormat, ImportOptions};
use crate::CliError;

/// Records per staged segment at most.
const SEGMENT_RECORDS: usize = 100_000;
/// Key, value and header bytes per staged segment at most.
const SEGMENT_BYTES: u64 = 64 << 20;

/// What staging did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StageReport {
    /// The staged backup's id.
    pub backup_id: String,
    /// Envelope objects read.
    pub objects: u64,
    /// Records staged (each once).
    pub records: u64,
    /// Records found more than once (an overlapping object) and kept once.
    pub duplicates: u64,
    /// Partitions staged.
    pub partitions: u64,
    /// True when an earlier run had staged the same objects already.
    pub already_staged: bool,
}

/// The key of the sources record.
fn sources_key(backup_id: &BackupId) -> String {
    format!("{backup_id}/import-sources.json")
}

/// One object's records in one partition: its offset range.
#[derive(Debug, Clone, Copy)]
struct Run {
    object: usize,
    first: i64,
    last: i64,
}

/// Lists, indexes and writes the staged backup (see the module docs).
pub(super) async fn stage(
    from: &Arc<dyn ObjectStorage>,
    staging: &Arc<dyn ObjectStorage>,
    options: &ImportOptions,
    progress: &dyn crate::backup::ProgressSink,
) -> Result<StageReport, CliError> {
    let decoding = decoding(from, options).await?;
    let mut objects: Vec<(String, u64)> = from
        .list_all("")
        .await?
        .into_iter()
        .filter(|meta| {
            !meta
                .key
                .split('/')
                .any(|part| part.starts_with('_') || part.starts_with('.'))
        })
        .filter(|meta| options.format.reads(&meta.key))
        .map(|meta| (meta.key, meta.size))
        .collect();
    objects.sort();
    if objects.is_empty() {
        return Err(CliError::InvalidArgument {
            flag: "from",
            message: format!(
                "{} holds no {} objects ({})",
                from.describe(),
                options.format.name(),
                options.format.extensions().join(", ")
            ),
        });
    }
    if let Some((key, size)) = objects.iter().find(|(_, size)| *size > options.memory_budget) {
        return Err(CliError::Import {
            object: key.clone(),
            message: format!(
                "{size} bytes, more than --memory-budget {}: an object is read whole; raise the budget",
                options.memory_budget
            ),
        });
    }
    let backup_id = &options.staged_backup_id;
    let sources = json!({
        "format": options.format.name(),
        "key_as": decoding.key_as,
        "value_as": decoding.value_as,
        "objects": objects.iter().map(|(key, size)| json!([key, size])).collect::<Vec<_>>(),
    });
    let mut report = StageReport {
        backup_id: backup_id.to_string(),
        objects: objects.len() as u64,
        ..StageReport::default()
    };
    if let Some(staged) = already_staged(staging, backup_id, &sources).await? {
        report.records = staged.statistics.records;
        report.partitions = staged.topics.iter().map(|t| t.partitions.len() as u64).sum();
        report.already_staged = true;
        return Ok(report);
    }
    progress.note(&format!(
        "staging {} envelope objects ({} bytes) as backup {backup_id} in {}",
        objects.len(),
        objects.iter().map(|(_, size)| size).sum::<u64>(),
        staging.describe()
    ));
    staging
        .put(
            &sources_key(backup_id),
            Bytes::from(serde_json::to_vec_pretty(&sources).expect("json")),
        )
        .await?;

    // Index: every object once, its offset range per partition.
    let read = |index: usize| read_object(from, &objects[index].0, options.format, decoding);
    let mut runs: BTreeMap<(String, i32), Vec<Run>> = BTreeMap::new();
    let mut indexed = futures::stream::iter(0..objects.len())
        .map(|i| async move { read(i).await.map(|records| (i, records)) })
        .buffered(2);
    while let Some(next) = indexed.next().await {
        let (object, records) = next?;
        let mut ranges: BTreeMap<(String, i32), (i64, i64)> = BTreeMap::new();
        for r in records {
            let range = ranges
                .entry((r.topic, r.partition))
                .or_insert((r.record.offset, r.record.offset));
            range.0 = range.0.min(r.record.offset);
            range.1 = range.1.max(r.record.offset);
        }
        for (partition, (first, last)) in ranges {
            runs.entry(partition).or_default().push(Run { object, first, last });
        }
    }
    drop(indexed);

    let created = UtcTimestamp::from_unix_millis(crate::lease::unix_now_ms()).map_err(CliError::Manifest)?;
    let mut builder = ManifestBuilder::new(
        backup_id.clone(),
        created.clone(),
        SourceCluster {
            cluster_id: format!("import of {}", from.describe()),
            bootstrap_servers: Vec::new(),
        },
        kbs_manifest::Compression {
            algorithm: CompressionAlgorithm::Lz4,
            level: 0,
        },
    );
    let mut partition_counts: BTreeMap<String, i32> = BTreeMap::new();
    for (topic, partition) in runs.keys() {
        if *partition < 0 {
            return Err(CliError::Import {
                object: format!("{topic}/{partition}"),
                message: "a negative partition".into(),
            });
        }
        let count = partition_counts.entry(topic.clone()).or_default();
        *count = (*count).max(partition + 1);
    }
    for (topic, count) in &partition_counts {
        let name = TopicName::new(topic.clone()).map_err(|e| CliError::Import {
            object: topic.clone(),
            message: format!("not a Kafka topic name: {e}"),
        })?;
        builder.add_topic(name, *count as u32, BTreeMap::new())?;
    }
    for ((topic, partition), mut partition_runs) in runs {
        partition_runs.sort_by_key(|run| (run.first, run.last, run.object));
        let topic_name = TopicName::new(topic.clone()).expect("checked above");
        let mut sequence = SegmentName::FIRST;
        for cluster in overlapping(&partition_runs) {
            let records = merged(
                from,
                &objects,
                cluster,
                &topic,
                partition,
                options,
                decoding,
                &mut report,
            )
            .await?;
            for chunk in segments(&records) {
                let chunk = chunk.to_vec();
                let (bytes, summary) = tokio::task::spawn_blocking(move || {
                    encode_segment(chunk.iter(), WriterOptions::new(Compression::Lz4))
                })
                .await
                .map_err(|e| CliError::Import {
                    object: format!("{topic}/{partition}"),
                    message: format!("encoding task failed: {e}"),
                })?
                .map_err(|source| CliError::Segment {
                    key: format!("{topic}/{partition}"),
                    source,
                })?;
                let key = layout::segment_key(backup_id, &topic_name, partition, sequence)?;
                staging.put(&key, Bytes::from(bytes)).await?;
                builder.add_segment(&topic_name, partition, crate::backup::segment_file(sequence, &summary))?;
                sequence = sequence.next().expect("fewer than 2^64 segments");
                report.records += summary.record_count;
            }
        }
        report.partitions += 1;
    }
    let completed = UtcTimestamp::from_unix_millis(crate::lease::unix_now_ms().max(created.unix_millis()))
        .map_err(CliError::Manifest)?;
    let manifest = builder.build_complete(completed)?;
    staging
        .put(&layout::manifest_key(backup_id), Bytes::from(manifest.to_json_pretty()))
        .await?;
    Ok(report)
}

/// The staged backup, when an earlier run staged exactly these sources; an error when it
/// staged others.
async fn already_staged(
    staging: &Arc<dyn ObjectStorage>,
    backup_id: &BackupId,
    sources: &Value,
) -> Result<Option<Manifest>, CliError> {
    let key = sources_key(backup_id);
    let recorded = match staging.get(&key).await {
        Ok(got) => serde_json::from_slice::<Value>(&got.bytes).map_err(|e| CliError::Unparsable {
            key: key.clone(),
            message: e.to_string(),
        })?,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if recorded != *sources {
        return Err(CliError::SourceChanged(format!(
            "{key} records other envelope objects or decoding than these: the objects changed since they were \
             staged. Import them under another --backup-id, or delete that backup first"
        )));
    }
    match staging.get(&layout::manifest_key(backup_id)).await {
        Ok(got) => {
            let manifest = Manifest::from_json(&got.bytes).map_err(|e| CliError::Unparsable {
                key: layout::manifest_key(backup_id),
                message: e.to_string(),
            })?;
            Ok(manifest.is_complete().then_some(manifest))
        }
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// How the text formats' keys and values are read: as asked, else as the export recorded in
/// `_kbs_export.json`, else as text.
async fn decoding(from: &Arc<dyn ObjectStorage>, options: &ImportOptions) -> Result<TextDecoding, CliError> {
    let recorded = match from.get(crate::export::EXPORT_RECORD_KEY).await {
        Ok(got) => Some(
            serde_json::from_slice::<Value>(&got.bytes).map_err(|e| CliError::Unparsable {
                key: crate::export::EXPORT_RECORD_KEY.into(),
                message: e.to_string(),
            })?,
        ),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    let pick = |asked: Option<crate::export::BytesAs>, field: &str| {
        asked
            .or_else(|| {
                recorded
                    .as_ref()
                    .and_then(|r| r[field].as_str())
                    .and_then(|s| s.parse().ok())
            })
            .unwrap_or(crate::export::BytesAs::String)
    };
    Ok(TextDecoding {
        key_as: pick(options.key_as, "key_as"),
        value_as: pick(options.value_as, "value_as"),
    })
}

async fn read_object(
    from: &Arc<dyn ObjectStorage>,
    key: &str,
    format: ImportFormat,
    decoding: TextDecoding,
) -> Result<Vec<EnvelopeRecord>, CliError> {
    let bytes = from.get(key).await?.bytes;
    let key = key.to_owned();
    tokio::task::spawn_blocking(move || match format {
        ImportFormat::Jsonl => read_jsonl(&key, &bytes, decoding),
        ImportFormat::Parquet => read_parquet(&key, bytes),
        ImportFormat::Avro => read_avro(&key, &bytes),
    })
    .await
    .map_err(|e| CliError::Import {
        object: "an envelope object".into(),
        message: format!("reading task failed: {e}"),
    })?
}

/// Groups of runs whose offset ranges overlap (runs sorted by first offset).
fn overlapping(runs: &[Run]) -> Vec<&[Run]> {
    let mut clusters = Vec::new();
    let mut start = 0;
    let mut reach = i64::MIN;
    for (i, run) in runs.iter().enumerate() {
        if i > start && run.first > reach {
            clusters.push(&runs[start..i]);
            start = i;
        }
        reach = if i == start { run.last } else { reach.max(run.last) };
    }
    if start < runs.len() {
        clusters.push(&runs[start..]);
    }
    clusters
}

/// One cluster's records of one partition, in offset order, each offset once.
#[allow(clippy::too_many_arguments)]
async fn merged(
    from: &Arc<dyn ObjectStorage>,
    objects: &[(String, u64)],
    cluster: &[Run],
    topic: &str,
    partition: i32,
    options: &ImportOptions,
    decoding: TextDecoding,
    report: &mut StageReport,
) -> Result<Vec<Record>, CliError> {
    let held: u64 = cluster.iter().map(|run| objects[run.object].1).sum();
    if cluster.len() > 1 && held > options.memory_budget {
        return Err(CliError::Import {
            object: format!("{topic}/{partition}"),
            message: format!(
                "{} objects hold overlapping offsets {}..={} in {held} bytes, more than --memory-budget {}; raise it",
                cluster.len(),
                cluster[0].first,
                cluster.iter().map(|r| r.last).max().unwrap_or_default(),
                options.memory_budget
            ),
        });
    }
    let mut records = Vec::new();
    for run in cluster {
        let (key, _) = &objects[run.object];
        let read = read_object(from, key, options.format, decoding).await?;
        records.extend(
            read.into_iter()
                .filter(|r| r.topic == topic && r.partition == partition)
                .map(|r| r.record),
        );
    }
    records.sort_by_key(|r| r.offset);
    let before = records.len();
    let mut conflict = None;
    records.dedup_by(|later, earlier| {
        let same_offset = later.offset == earlier.offset;
        if same_offset && later != earlier && conflict.is_none() {
            conflict = Some(later.offset);
        }
        same_offset
    });
    if let Some(offset) = conflict {
        return Err(CliError::Import {
            object: format!("{topic}/{partition}"),
            message: format!("two different records at offset {offset}; which one Kafka held is unknown"),
        });
    }
    report.duplicates += (before - records.len()) as u64;
    Ok(records)
}

/// Cuts a partition's records into segments of bounded count and size.
fn segments(records: &[Record]) -> Vec<&[Record]> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, record) in records.iter().enumerate() {
        let size = record.key.as_ref().map_or(0, |k| k.len() as u64)
            + record.value.as_ref().map_or(0, |v| v.len() as u64)
            + 64;
        if i > start && (i - start >= SEGMENT_RECORDS || bytes + size > SEGMENT_BYTES) {
            chunks.push(&records[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < records.len() {
        chunks.push(&records[start..]);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_grouped_where_their_ranges_overlap() {
        let run = |object, first, last| Run { object, first, last };
        let runs = [
            run(0, 0, 9),
            run(1, 5, 20),
            run(2, 21, 30),
            run(3, 30, 30),
            run(4, 40, 41),
        ];
        let clusters: Vec<Vec<usize>> = overlapping(&runs)
            .iter()
            .map(|c| c.iter().map(|r| r.object).collect())
            .collect();
        assert_eq!(clusters, vec![vec![0, 1], vec![2, 3], vec![4]]);
        assert!(overlapping(&[]).is_empty());
    }
}
