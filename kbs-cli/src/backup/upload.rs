//! Segments: encoding records, rolling a segment at a Kafka batch boundary, create-only
//! uploads in sequence order per partition, and the commit that advances the checkpoint.

use super::*;

/// A segment being filled.
pub(super) struct OpenSegment {
    pub(super) writer: SegmentWriter<Cursor<Vec<u8>>>,
    pub(super) opened: Instant,
    pub(super) last_timestamp: i64,
}

/// A durable (or being-made-durable) segment or a gap, in partition order.
pub(super) enum CommitItem {
    Segment {
        handle: JoinHandle<Result<Uploaded, CliError>>,
        bytes: u64,
    },
    Gap(Gap),
}

/// A segment that is durable in storage.
pub(super) struct Uploaded {
    pub(super) file: SegmentFile,
    pub(super) last_timestamp: i64,
    pub(super) adopted: bool,
}

/// The manifest entry of a finished segment.
pub(crate) fn segment_file(name: SegmentName, s: &SegmentSummary) -> SegmentFile {
    SegmentFile {
        name,
        first_offset: s.first_offset,
        last_offset: s.last_offset,
        records: s.record_count,
        min_timestamp: s.min_timestamp,
        max_timestamp: s.max_timestamp,
        size_bytes: s.size_bytes,
        uncompressed_bytes: s.uncompressed_bytes,
        crc64: Crc64(s.crc64),
    }
}

/// Uploads a finished segment create-only; if the key exists, adopts the object only when it
/// holds exactly the same offsets (an interrupted run made it durable before recording it).
pub(super) async fn upload_segment(
    storage: &Arc<dyn ObjectStorage>,
    object_key: &str,
    bytes: Bytes,
    name: SegmentName,
    summary: &SegmentSummary,
    last_timestamp: i64,
) -> Result<Uploaded, CliError> {
    match storage.put_if_absent(object_key, bytes).await {
        Ok(_) => Ok(Uploaded {
            file: segment_file(name, summary),
            last_timestamp,
            adopted: false,
        }),
        Err(kbs_storage::Error::AlreadyExists { .. }) => {
            let existing = verify_existing(storage, object_key).await?;
            if (existing.first_offset, existing.last_offset, existing.record_count)
                == (summary.first_offset, summary.last_offset, summary.record_count)
            {
                Ok(Uploaded {
                    file: segment_file(name, &existing),
                    last_timestamp: existing.last_timestamp,
                    adopted: true,
                })
            } else {
                Err(CliError::Locked(format!(
                    "{object_key} already exists with offsets {}..{} where this run wrote {}..{}: another writer is \
                     producing this backup. Nothing was overwritten",
                    existing.first_offset, existing.last_offset, summary.first_offset, summary.last_offset
                )))
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// A new in-memory segment writer, encrypting to `encrypt_to` when given.
pub(super) fn new_segment_writer(
    options: WriterOptions,
    encrypt_to: Option<&kbs_format::Recipients>,
) -> Result<SegmentWriter<Cursor<Vec<u8>>>, kbs_format::FormatError> {
    match encrypt_to {
        Some(recipients) => SegmentWriter::in_memory_encrypted(options, recipients),
        None => SegmentWriter::in_memory(options),
    }
}

/// Appends the records of one fetch response to a partition's open segment, closing the
/// segment when it is full, but only where a Kafka batch ends (`batch_ends`, indexes one past
/// each batch's last record): a later run then resumes at the start of a batch, which matters
/// because some brokers (tansu among them) skip the rest of a batch when asked to fetch from
/// its middle. A segment may exceed its size or record limit by up to one batch.
pub(super) fn encode_records(
    mut open: OpenSegment,
    records: Vec<Record>,
    batch_ends: &[usize],
    max_records: u64,
    max_bytes: u64,
    encrypt_to: Option<&kbs_format::Recipients>,
) -> Result<(Option<OpenSegment>, Vec<OpenSegment>, u64), CliError> {
    let mut full = Vec::new();
    let mut bytes = 0u64;
    let options = open.writer.options();
    let mut ends = batch_ends.iter().copied().peekable();
    for (index, record) in records.into_iter().enumerate() {
        bytes += record.key.as_ref().map_or(0, |k| k.len() as u64)
            + record.value.as_ref().map_or(0, |v| v.len() as u64)
            + record
                .headers
                .iter()
                .map(|h| h.key.len() as u64 + h.value.as_ref().map_or(0, |v| v.len() as u64))
                .sum::<u64>();
        open.writer.append(&record).map_err(|source| CliError::Segment {
            key: format!("offset {}", record.offset),
            source,
        })?;
        open.last_timestamp = record.timestamp;
        let at_batch_end = ends.next_if_eq(&(index + 1)).is_some();
        if at_batch_end && (open.writer.record_count() >= max_records || open.writer.estimated_size() >= max_bytes) {
            let next = OpenSegment {
                writer: new_segment_writer(options, encrypt_to).map_err(|source| CliError::Segment {
                    key: String::new(),
                    source,
                })?,
                opened: Instant::now(),
                last_timestamp: 0,
            };
            full.push(std::mem::replace(&mut open, next));
        }
    }
    let open = if open.writer.record_count() > 0 {
        Some(open)
    } else {
        None
    };
    Ok((open, full, bytes))
}

impl Engine {
    /// Closes the open segment of `key` and starts its upload.
    pub(super) async fn roll(&mut self, key: &(TopicName, i32)) -> Result<(), CliError> {
        let Some(part) = self.partitions.get_mut(key) else {
            return Ok(());
        };
        let Some(open) = part.open.take() else { return Ok(()) };
        let item = self.start_upload(key, open).await?;
        self.partitions.get_mut(key).expect("present").queue.push_back(item);
        Ok(())
    }

    /// Finishes a segment (on the blocking pool) and uploads it create-only in the background.
    pub(super) async fn start_upload(
        &mut self,
        key: &(TopicName, i32),
        open: OpenSegment,
    ) -> Result<CommitItem, CliError> {
        let part = self.partitions.get_mut(key).expect("present");
        let name = SegmentName::new(part.next_sequence);
        part.next_sequence += 1;
        let object_key = layout::segment_key(&self.options.backup_id, &part.topic, part.partition, name)?;
        let last_timestamp = open.last_timestamp;
        let finished = tokio::task::spawn_blocking(move || open.writer.finish())
            .await
            .map_err(|e| CliError::Locked(format!("encoding task failed: {e}")))?
            .map_err(|source| CliError::Segment {
                key: object_key.clone(),
                source,
            })?;
        let (cursor, summary) = finished;
        let bytes = Bytes::from(cursor.into_inner());
        let size = bytes.len() as u64;
        let storage = self.storage.clone();
        let uploads = self.uploads.clone();
        let metrics = self.metrics.clone();
        let (done, chain) = oneshot::channel();
        let previous = self
            .partitions
            .get_mut(key)
            .expect("present")
            .upload_chain
            .replace(chain);
        let handle = tokio::spawn(async move {
            if let Some(previous) = previous
                && !previous.await.unwrap_or(false)
            {
                let _ = done.send(false);
                return Err(CliError::Locked(format!(
                    "{object_key} not uploaded: the segment before it failed"
                )));
            }
            let _permit = uploads
                .acquire_owned()
                .await
                .map_err(|_| CliError::Locked("upload pool closed".into()))?;
            let started = Instant::now();
            let result = upload_segment(&storage, &object_key, bytes, name, &summary, last_timestamp).await;
            metrics.observe_storage_write(started.elapsed());
            let _ = done.send(result.is_ok());
            result
        });
        Ok(CommitItem::Segment { handle, bytes: size })
    }

    /// Records every finished upload and gap, in partition order; writes the checkpoint (and
    /// the manifest when a gap was recorded or a while has passed). With `wait`, waits for
    /// every upload in flight.
    pub(super) async fn commit(&mut self, wait: bool) -> Result<(), CliError> {
        let mut committed = false;
        let keys: Vec<(TopicName, i32)> = self.partitions.keys().cloned().collect();
        for key in keys {
            loop {
                let part = self.partitions.get_mut(&key).expect("present");
                let ready = match part.queue.front() {
                    None => false,
                    Some(CommitItem::Gap(_)) => true,
                    Some(CommitItem::Segment { handle, .. }) => wait || handle.is_finished(),
                };
                if !ready {
                    break;
                }
                match part.queue.pop_front().expect("checked") {
                    CommitItem::Gap(gap) => {
                        self.state.add_gap(&key.0, key.1, gap)?;
                        self.manifest_dirty = true;
                    }
                    CommitItem::Segment { handle, .. } => {
                        let uploaded = match handle
                            .await
                            .map_err(|e| CliError::Locked(format!("upload task failed: {e}")))?
                        {
                            Ok(uploaded) => uploaded,
                            // A worker's segment number taken by another worker (the partition's
                            // previous owner finishing a late upload): the partition changed hands.
                            Err(CliError::Locked(message)) if self.state.is_worker() => {
                                return Err(CliError::Fenced(message));
                            }
                            Err(e) => return Err(e),
                        };
                        self.report.segments += u64::from(!uploaded.adopted);
                        self.report.adopted_segments += u64::from(uploaded.adopted);
                        self.report.records += uploaded.file.records;
                        self.report.bytes_out += uploaded.file.size_bytes;
                        self.metrics.records.fetch_add(uploaded.file.records, Ordering::Relaxed);
                        self.metrics
                            .bytes_out
                            .fetch_add(uploaded.file.size_bytes, Ordering::Relaxed);
                        self.metrics.segments.fetch_add(1, Ordering::Relaxed);

                        self.state
                            .add_segment(&key.0, key.1, uploaded.file, uploaded.last_timestamp)?;
                    }
                }
                committed = true;
            }
        }
        if committed {
            self.checkpoint_dirty = true;
        }
        self.check_lease()?;
        // A gap (or an adoption, or the group snapshot) is written to the manifest before
        // anything after it is checkpointed; otherwise the in-progress manifest is refreshed
        // every 30 s so `kbs describe` shows progress.
        if self.manifest_dirty || (committed && self.last_manifest.elapsed() >= Duration::from_secs(30)) {
            let started = Instant::now();
            self.state.write_manifest_in_progress().await?;
            self.metrics.observe_storage_write(started.elapsed());
            self.manifest_dirty = false;
            self.last_manifest = Instant::now();
        }
        if self.checkpoint_dirty && (wait || self.last_checkpoint.elapsed() >= Duration::from_secs(1)) {
            let started = Instant::now();
            self.state.write_checkpoint().await?;
            self.metrics.observe_storage_write(started.elapsed());
            self.checkpoint_dirty = false;
            self.last_checkpoint = Instant::now();
        }
        Ok(())
    }
}
