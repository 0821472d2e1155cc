//! `kbs validate`: proves a backup is complete and intact, or lists every problem.
//!
//! * quick: the manifest parses and is consistent; every segment exists with its recorded
//!   size; each segment's header and footer (two ranged reads) match the manifest's offsets,
//!   record count and CRC-64.
//! * deep: additionally reads every segment and checks every checksum and invariant
//!   ([`kbs_format::verify_segment`]), and that its offsets, timestamps and counts equal the
//!   manifest's.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use kbs_format::layout::{SEGMENT_FOOTER_LEN, SEGMENT_HEADER_LEN};
use kbs_manifest::{BackupId, Manifest, SegmentFile, TopicName, layout};
use kbs_storage::ObjectStorage;
use serde::Serialize;

use crate::error::CliError;

/// How thoroughly to validate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Manifest, object sizes, headers and footers.
    Quick,
    /// Everything in every segment.
    Deep,
}

/// One thing wrong with a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The object the problem is in.
    pub key: String,
    /// Byte position in the object, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    /// What is wrong.
    pub what: String,
}

/// The outcome of a validation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ValidationReport {
    /// The backup validated.
    pub backup_id: String,
    /// Whether segments were read in full.
    pub deep: bool,
    /// Segments checked.
    pub segments_checked: u64,
    /// Records counted (deep) or declared by checked segment headers (quick).
    pub records_checked: u64,
    /// Bytes of segments read.
    pub bytes_read: u64,
    /// Every problem found; empty means the backup is intact.
    pub problems: Vec<Problem>,
}

impl ValidationReport {
    /// True when no problem was found.
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }
}

/// How many segments are checked at once.
const CONCURRENCY: usize = 8;

/// Validates the backup `backup_id` under `storage`.
pub async fn validate(
    storage: Arc<dyn ObjectStorage>,
    backup_id: &BackupId,
    depth: Depth,
    identities: Option<&kbs_format::Identities>,
) -> Result<ValidationReport, CliError> {
    let mut report = ValidationReport {
        backup_id: backup_id.to_string(),
        deep: depth == Depth::Deep,
        ..Default::default()
    };
    crate::prune::refuse_if_deleted(&storage, backup_id).await?;
    let manifest_key = layout::manifest_key(backup_id);
    let manifest = match storage.get(&manifest_key).await {
        Ok(got) => match Manifest::from_json(&got.bytes) {
            Ok(m) => m,
            Err(e) => {
                report.problems.push(Problem {
                    key: manifest_key,
                    position: None,
                    what: format!("cannot parse: {e}"),
                });
                return Ok(report);
            }
        },
        Err(e) if e.is_not_found() => {
            report.problems.push(Problem {
                key: manifest_key,
                position: None,
                what: "manifest not found".into(),
            });
            return Ok(report);
        }
        Err(e) => return Err(e.into()),
    };
    if manifest.backup_id != *backup_id {
        report.problems.push(Problem {
            key: manifest_key.clone(),
            position: None,
            what: format!(
                "manifest names backup {:?}, not {:?}",
                manifest.backup_id.as_str(),
                backup_id.as_str()
            ),
        });
    }
    if !manifest.is_complete() {
        report.problems.push(Problem {
            key: manifest_key.clone(),
            position: None,
            what: format!(
                "backup is not complete (status {})",
                manifest
                    .status
                    .map_or_else(|| "absent".to_string(), |s| format!("{s:?}").to_lowercase())
            ),
        });
    }
    for problem in manifest.validate() {
        report.problems.push(Problem {
            key: manifest_key.clone(),
            position: None,
            what: problem.to_string(),
        });
    }

    // Every segment the manifest names, in order, with what the manifest says about it.
    let mut checks = Vec::new();
    for topic in &manifest.topics {
        for partition in &topic.partitions {
            let mut expected_sequence = partition.segment_files.first().map(|s| s.name.sequence());
            for file in &partition.segment_files {
                if let Some(expected) = expected_sequence
                    && file.name.sequence() != expected
                {
                    report.problems.push(Problem {
                        key: manifest_key.clone(),
                        position: None,
                        what: format!(
                            "topic {} partition {}: segment {} follows sequence {} (a segment is missing from the manifest)",
                            topic.name,
                            partition.partition,
                            file.name,
                            expected.saturating_sub(1)
                        ),
                    });
                }
                expected_sequence = Some(file.name.sequence().saturating_add(1));
                checks.push((topic.name.clone(), partition.partition, file.clone()));
            }
        }
    }

    // Deep checks of an encrypted backup open every segment: they need one of its recipients'
    // keys. Quick checks read headers and footers, which need none.
    let identities = match depth {
        Depth::Deep => crate::encryption::identities_for(&manifest, identities)?.cloned(),
        Depth::Quick => None,
    };
    let results: Vec<SegmentCheck> = futures::stream::iter(checks)
        .map(|(topic, partition, file)| {
            let storage = storage.clone();
            let backup_id = backup_id.clone();
            let identities = identities.clone();
            async move { check_segment(storage, &backup_id, &topic, partition, &file, depth, identities).await }
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    for result in results {
        report.segments_checked += 1;
        report.records_checked += result.records;
        report.bytes_read += result.bytes_read;
        report.problems.extend(result.problems);
    }
    Ok(report)
}

#[derive(Default)]
struct SegmentCheck {
    records: u64,
    bytes_read: u64,
    problems: Vec<Problem>,
}

async fn check_segment(
    storage: Arc<dyn ObjectStorage>,
    backup_id: &BackupId,
    topic: &TopicName,
    partition: i32,
    file: &SegmentFile,
    depth: Depth,
    identities: Option<kbs_format::Identities>,
) -> SegmentCheck {
    let mut check = SegmentCheck::default();
    let key = match layout::segment_key(backup_id, topic, partition, file.name) {
        Ok(key) => key,
        Err(e) => {
            check.problems.push(Problem {
                key: format!("{backup_id}/topics/{topic}/{partition}/{}", file.name),
                position: None,
                what: e.to_string(),
            });
            return check;
        }
    };
    let problem = |position: Option<u64>, what: String| Problem {
        key: key.clone(),
        position,
        what,
    };
    let meta = match storage.head(&key).await {
        Ok(meta) => meta,
        Err(e) if e.is_not_found() => {
            check.problems.push(problem(None, "segment missing".into()));
            return check;
        }
        Err(e) => {
            check.problems.push(problem(None, format!("cannot read: {e}")));
            return check;
        }
    };
    if meta.size != file.size_bytes {
        check.problems.push(problem(
            None,
            format!("size is {} bytes, manifest says {}", meta.size, file.size_bytes),
        ));
    }
    match depth {
        Depth::Quick => {
            let min = (SEGMENT_HEADER_LEN + SEGMENT_FOOTER_LEN) as u64;
            if meta.size < min {
                check.problems.push(problem(
                    Some(0),
                    format!("{} bytes is too short for a segment", meta.size),
                ));
                return check;
            }
            let head = storage.get_range(&key, 0..SEGMENT_HEADER_LEN as u64).await;
            let tail = storage
                .get_range(&key, meta.size - SEGMENT_FOOTER_LEN as u64..meta.size)
                .await;
            let (head, tail) = match (head, tail) {
                (Ok(h), Ok(t)) => (h, t),
                (Err(e), _) | (_, Err(e)) => {
                    check
                        .problems
                        .push(problem(None, format!("cannot read header or footer: {e}")));
                    return check;
                }
            };
            check.bytes_read += (head.len() + tail.len()) as u64;
            let (Ok(head), Ok(tail)) = (
                <[u8; SEGMENT_HEADER_LEN]>::try_from(&head[..]),
                <[u8; SEGMENT_FOOTER_LEN]>::try_from(&tail[..]),
            ) else {
                check
                    .problems
                    .push(problem(None, "short read of header or footer".into()));
                return check;
            };
            match kbs_format::decode_header_and_footer(&head, &tail, meta.size) {
                Ok((header, footer)) => {
                    check.records = header.record_count;
                    compare(
                        &mut check.problems,
                        &key,
                        "first offset",
                        file.first_offset,
                        header.first_offset,
                    );
                    compare(
                        &mut check.problems,
                        &key,
                        "last offset",
                        file.last_offset,
                        footer.last_offset,
                    );
                    compare(
                        &mut check.problems,
                        &key,
                        "record count",
                        file.records,
                        header.record_count,
                    );
                    compare(&mut check.problems, &key, "CRC-64", file.crc64.0, header.crc64);
                }
                Err(e) => check.problems.push(problem(error_position(&e), e.to_string())),
            }
        }
        Depth::Deep => {
            let bytes: Bytes = match storage.get(&key).await {
                Ok(got) => got.bytes,
                Err(e) => {
                    check.problems.push(problem(None, format!("cannot read: {e}")));
                    return check;
                }
            };
            check.bytes_read += bytes.len() as u64;
            let verified =
                tokio::task::spawn_blocking(move || crate::encryption::verify_segment(&bytes, identities.as_ref()))
                    .await;
            match verified {
                Ok(Ok(summary)) => {
                    check.records = summary.record_count;
                    compare(
                        &mut check.problems,
                        &key,
                        "first offset",
                        file.first_offset,
                        summary.first_offset,
                    );
                    compare(
                        &mut check.problems,
                        &key,
                        "last offset",
                        file.last_offset,
                        summary.last_offset,
                    );
                    compare(
                        &mut check.problems,
                        &key,
                        "record count",
                        file.records,
                        summary.record_count,
                    );
                    compare(
                        &mut check.problems,
                        &key,
                        "smallest timestamp",
                        file.min_timestamp,
                        summary.min_timestamp,
                    );
                    compare(
                        &mut check.problems,
                        &key,
                        "largest timestamp",
                        file.max_timestamp,
                        summary.max_timestamp,
                    );
                    compare(
                        &mut check.problems,
                        &key,
                        "uncompressed bytes",
                        file.uncompressed_bytes,
                        summary.uncompressed_bytes,
                    );
                    compare(&mut check.problems, &key, "CRC-64", file.crc64.0, summary.crc64);
                    compare(&mut check.problems, &key, "size", file.size_bytes, summary.size_bytes);
                }
                Ok(Err(e)) => check.problems.push(problem(error_position(&e), e.to_string())),
                Err(e) => check
                    .problems
                    .push(problem(None, format!("verification task failed: {e}"))),
            }
        }
    }
    check
}

fn compare<T: PartialEq + std::fmt::Display>(
    problems: &mut Vec<Problem>,
    key: &str,
    what: &str,
    manifest: T,
    segment: T,
) {
    if manifest != segment {
        problems.push(Problem {
            key: key.to_string(),
            position: None,
            what: format!("{what} is {segment} in the segment, manifest says {manifest}"),
        });
    }
}

/// The byte position a format error points at, when it names one.
pub fn error_position(e: &kbs_format::FormatError) -> Option<u64> {
    use kbs_format::FormatError as F;
    match e {
        F::BadMagic { .. } | F::UnsupportedVersion { .. } | F::UnknownCompression { .. } | F::UnknownFlags { .. } => {
            Some(0)
        }
        F::BadEndMagic { position, .. }
        | F::HeaderChecksumMismatch { position, .. }
        | F::UnexpectedEnd { position, .. }
        | F::BatchChecksumMismatch { position, .. }
        | F::InvalidBatch { position, .. }
        | F::BatchTooLarge { position, .. }
        | F::Decompress { position, .. }
        | F::TrailingBytes { position, .. } => Some(*position),
        F::InvalidRecord { batch_position, .. } | F::OffsetOrder { batch_position, .. } => Some(*batch_position),
        F::SegmentChecksumMismatch { .. } => Some(24),
        _ => None,
    }
}
