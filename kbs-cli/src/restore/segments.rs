//! Reading backed-up segments for a restore: a source partition's selected records, each segment
//! verified before any of its records is used: whole in memory when it fits the
//! partition's memory share, else spooled to a temporary file, verified in one streaming pass
//! and read in a second.

use super::*;

/// Records of a verified in-memory segment, decoded on the blocking pool.
pub(super) fn records_from_memory(
    bytes: Bytes,
    identities: Option<kbs_format::Identities>,
) -> tokio::sync::mpsc::Receiver<Result<kbs_format::Record, kbs_format::FormatError>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    tokio::task::spawn_blocking(move || {
        let reader = match crate::encryption::open_segment(bytes, identities.as_ref()) {
            Ok(reader) => reader,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        for record in reader.records() {
            if tx.blocking_send(record).is_err() {
                return;
            }
        }
    });
    rx
}

/// Downloads a segment into an anonymous temporary file, chunk by chunk.
pub(super) async fn spool(storage: &Arc<dyn ObjectStorage>, key: &str) -> Result<std::fs::File, CliError> {
    use futures::StreamExt as _;
    use tokio::io::AsyncWriteExt as _;
    let spool_error = |e: std::io::Error| CliError::Spool {
        key: key.to_string(),
        source: e,
    };
    let mut stream = storage.get_stream(key).await?;
    let mut file = tokio::fs::File::from_std(tempfile::tempfile().map_err(spool_error)?);
    while let Some(chunk) = stream.chunks.next().await {
        file.write_all(&chunk?).await.map_err(spool_error)?;
    }
    file.flush().await.map_err(spool_error)?;
    Ok(file.into_std().await)
}

/// Reads a spooled segment from the start with the streaming reader.
pub(super) fn stream_reader(file: &std::fs::File) -> std::io::Result<std::io::BufReader<std::fs::File>> {
    use std::io::Seek as _;
    let mut file = file.try_clone()?;
    file.rewind()?;
    Ok(std::io::BufReader::with_capacity(1 << 20, file))
}

/// Verifies a spooled segment in one streaming pass (every batch, then footer and CRC-64) and
/// returns what it holds.
pub(super) async fn verify_spooled(
    file: &std::fs::File,
    identities: Option<kbs_format::Identities>,
) -> Result<Result<kbs_format::SegmentSummary, kbs_format::FormatError>, CliError> {
    let reader = stream_reader(file).map_err(|e| CliError::Spool {
        key: "spooled segment".into(),
        source: e,
    })?;
    tokio::task::spawn_blocking(move || {
        let mut segment = crate::encryption::open_stream(reader, identities.as_ref())?;
        while segment.next_batch()?.is_some() {}
        segment
            .summary()
            .cloned()
            .ok_or_else(|| kbs_format::FormatError::Io(std::io::Error::other("the segment ended without a summary")))
    })
    .await
    .map_err(|e| CliError::Locked(format!("verification task failed: {e}")))
}

/// Whether a verified segment is the one the manifest names: its offsets, record count, size
/// and CRC-64 must all match (a valid segment swapped for another, or replaced by an older
/// one, verifies on its own). `None` when it matches, else what differs.
pub(super) fn differs_from_manifest(summary: &kbs_format::SegmentSummary, file: &SegmentFile) -> Option<String> {
    let mut differences = Vec::new();
    let mut check = |what: &str, found: String, recorded: String| {
        if found != recorded {
            differences.push(format!("{what} {found} (the manifest says {recorded})"));
        }
    };
    check(
        "first offset",
        summary.first_offset.to_string(),
        file.first_offset.to_string(),
    );
    check(
        "last offset",
        summary.last_offset.to_string(),
        file.last_offset.to_string(),
    );
    check("records", summary.record_count.to_string(), file.records.to_string());
    check("size", summary.size_bytes.to_string(), file.size_bytes.to_string());
    check("CRC-64", format!("{:016x}", summary.crc64), file.crc64.to_string());
    (!differences.is_empty()).then(|| differences.join(", "))
}

/// Records of a verified spooled segment, read one batch at a time.
pub(super) fn records_from_file(
    file: std::fs::File,
    identities: Option<kbs_format::Identities>,
) -> tokio::sync::mpsc::Receiver<Result<kbs_format::Record, kbs_format::FormatError>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    tokio::task::spawn_blocking(move || {
        let mut segment = match stream_reader(&file)
            .map_err(kbs_format::FormatError::Io)
            .and_then(|reader| crate::encryption::open_stream(reader, identities.as_ref()))
        {
            Ok(segment) => segment,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        loop {
            match segment.next_batch() {
                Ok(Some(batch)) => {
                    for record in batch.into_records() {
                        if tx.blocking_send(Ok(record)).is_err() {
                            return;
                        }
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    rx
}

/// What a source partition's reader yields: a selected record, or the end of a segment (where
/// a one-to-one restore cuts its produce batch).
pub(super) enum SourceItem {
    /// A record inside the restore's offset and time windows.
    Record(kbs_format::Record),
    /// The segment the records came from ended.
    SegmentEnd,
}

/// The selected records of one source partition from a start offset on, segment by segment.
/// Every checksum and invariant of a segment is verified before any record of it is yielded. A
/// segment that fits `memory_share` is held in memory (counted against the restore's memory
/// pool); a larger one is spooled to a temporary file, verified in one streaming pass and read
/// in a second, one batch at a time. A corrupt segment, or one that is not the segment the
/// manifest records, stops the reader with an error, or is skipped and reported with
/// `--skip-corrupt`.
pub(super) struct SourceRecords<'a> {
    shared: &'a Shared,
    plan: &'a PartitionPlan,
    topic: TopicName,
    files: std::slice::Iter<'a, SegmentFile>,
    start: i64,
    end: i64,
    memory_share: u64,
    current: Option<OpenSegment>,
}

/// A verified segment whose records are not read yet.
enum Unread {
    /// Held in memory, with its share of the memory pool.
    Memory(Bytes, tokio::sync::OwnedSemaphorePermit),
    /// Spooled to a temporary file.
    Spooled(std::fs::File),
}

struct OpenSegment {
    key: String,
    records: tokio::sync::mpsc::Receiver<Result<kbs_format::Record, kbs_format::FormatError>>,
    _memory: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl<'a> SourceRecords<'a> {
    /// The records of `plan`'s partition at or after `from` (and inside the plan's windows).
    pub(super) fn new(
        shared: &'a Shared,
        plan: &'a PartitionPlan,
        from: i64,
        memory_share: u64,
    ) -> Result<SourceRecords<'a>, CliError> {
        Ok(SourceRecords {
            shared,
            plan,
            topic: TopicName::new(&plan.topic)?,
            files: plan.files.iter(),
            start: plan.start_offset.unwrap_or(i64::MIN).max(from),
            end: plan.end_offset.unwrap_or(i64::MAX),
            memory_share,
            current: None,
        })
    }

    /// The next selected record or segment end; `None` after the last segment.
    pub(super) async fn next(&mut self) -> Result<Option<SourceItem>, CliError> {
        let options = &self.shared.options;
        loop {
            let Some(segment) = &mut self.current else {
                if !self.open_next().await? {
                    return Ok(None);
                }
                continue;
            };
            let Some(record) = segment.records.recv().await else {
                self.current = None;
                return Ok(Some(SourceItem::SegmentEnd));
            };
            let record = record.map_err(|source| CliError::Segment {
                key: segment.key.clone(),
                source,
            })?;
            if record.offset < self.start || record.offset > self.end {
                continue;
            }
            if options.start_time.is_some_and(|t| record.timestamp < t)
                || options.end_time.is_some_and(|t| record.timestamp > t)
            {
                continue;
            }
            return Ok(Some(SourceItem::Record(record)));
        }
    }

    /// Opens the next segment that can hold selected records and verifies it; `false` when
    /// none is left.
    async fn open_next(&mut self) -> Result<bool, CliError> {
        let shared = self.shared;
        for file in self.files.by_ref() {
            if file.last_offset < self.start {
                continue;
            }
            let key = layout::segment_key(&shared.options.backup_id, &self.topic, self.plan.partition, file.name)?;
            // Verified whole before any record is read: in memory, or spooled.
            let (verified, opened) = if file.size_bytes <= self.memory_share {
                let permits = (file.size_bytes >> 10).clamp(1, shared.memory_permits) as u32;
                let memory = shared
                    .memory
                    .clone()
                    .acquire_many_owned(permits)
                    .await
                    .map_err(|_| CliError::Locked("memory pool closed".into()))?;
                let bytes = shared.storage.get(&key).await?.bytes;
                let checked = bytes.clone();
                let identities = shared.options.identities.clone();
                let verified = tokio::task::spawn_blocking(move || {
                    crate::encryption::verify_segment(&checked, identities.as_ref())
                })
                .await
                .map_err(|e| CliError::Locked(format!("verification task failed: {e}")))?;
                (verified, Unread::Memory(bytes, memory))
            } else {
                let spooled = spool(&shared.storage, &key).await?;
                (
                    verify_spooled(&spooled, shared.options.identities.clone()).await?,
                    Unread::Spooled(spooled),
                )
            };
            match verified {
                Ok(summary) => {
                    if let Some(what) = differs_from_manifest(&summary, file) {
                        not_the_recorded_segment(shared, &key, what).await?;
                        continue;
                    }
                    let (records, memory) = match opened {
                        Unread::Memory(bytes, memory) => (
                            records_from_memory(bytes, shared.options.identities.clone()),
                            Some(memory),
                        ),
                        Unread::Spooled(file) => (records_from_file(file, shared.options.identities.clone()), None),
                    };
                    self.current = Some(OpenSegment {
                        key,
                        records,
                        _memory: memory,
                    });
                    return Ok(true);
                }
                Err(source) => skip_or_fail(shared, &key, source).await?,
            }
        }
        Ok(false)
    }
}

/// With `--skip-corrupt`, records a segment that failed verification; otherwise the error.
pub(super) async fn skip_or_fail(shared: &Shared, key: &str, source: kbs_format::FormatError) -> Result<(), CliError> {
    if !shared.options.skip_corrupt {
        return Err(CliError::Segment {
            key: key.to_string(),
            source,
        });
    }
    let position = crate::validate::error_position(&source).map_or(String::new(), |p| format!(" (byte {p})"));
    shared.skipped.lock().await.push(format!("{key}{position}: {source}"));
    tracing::error!("skipping corrupt segment {key}: {source}");
    Ok(())
}

/// A segment that verifies but is not the one the manifest records: an error, or skipped
/// (and reported) with `--skip-corrupt`.
pub(super) async fn not_the_recorded_segment(shared: &Shared, key: &str, what: String) -> Result<(), CliError> {
    if !shared.options.skip_corrupt {
        return Err(CliError::SegmentMismatch {
            key: key.to_owned(),
            what,
        });
    }
    shared
        .skipped
        .lock()
        .await
        .push(format!("{key}: not the segment the manifest records: {what}"));
    tracing::error!("skipping {key}: not the segment the manifest records: {what}");
    Ok(())
}
