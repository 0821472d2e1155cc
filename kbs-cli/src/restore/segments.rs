//! Reading backed-up segments for a restore: verified whole in memory when they fit the
//! partition's memory share, else spooled to a temporary file, verified in one streaming pass
//! and read in a second.

use super::*;

/// Records of a verified in-memory segment, decoded on the blocking pool.
pub(super) fn records_from_memory(
    bytes: Bytes,
) -> tokio::sync::mpsc::Receiver<Result<kbs_format::Record, kbs_format::FormatError>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    tokio::task::spawn_blocking(move || {
        let reader = match SegmentReader::new(bytes) {
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
) -> Result<Result<kbs_format::SegmentSummary, kbs_format::FormatError>, CliError> {
    let reader = stream_reader(file).map_err(|e| CliError::Spool {
        key: "spooled segment".into(),
        source: e,
    })?;
    tokio::task::spawn_blocking(move || {
        let mut segment = kbs_format::SegmentStreamReader::new(reader)?;
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
) -> tokio::sync::mpsc::Receiver<Result<kbs_format::Record, kbs_format::FormatError>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    tokio::task::spawn_blocking(move || {
        let mut segment = match stream_reader(&file)
            .map_err(kbs_format::FormatError::Io)
            .and_then(kbs_format::SegmentStreamReader::new)
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
