//! Adopting orphans: segments an interrupted run made durable but never checkpointed are
//! verified and recorded, after checking with Kafka that no readable record lies before them.

use super::*;

/// Reads back and verifies a segment found at `key`; returns its summary.
///
/// An encrypted segment is checked without its key (the backup host holds none): its
/// structure, every batch CRC-32 and the CRC-64; its timestamps come from its trailer.
pub(super) async fn verify_existing(storage: &Arc<dyn ObjectStorage>, key: &str) -> Result<SegmentSummary, CliError> {
    let bytes = storage.get(key).await?.bytes;
    let key_owned = key.to_string();
    tokio::task::spawn_blocking(move || {
        kbs_format::verify_segment_keyless(&bytes, ReadLimits::default())
            .map_err(|source| CliError::Segment { key: key_owned, source })
    })
    .await
    .map_err(|e| CliError::Locked(format!("verification task failed: {e}")))?
}

impl Engine {
    /// Adopts segments with the next sequence numbers that an interrupted run made durable
    /// before recording them.
    pub(super) async fn adopt_orphans(&mut self, part: &mut Partition) -> Result<(), CliError> {
        loop {
            let key = layout::segment_key(
                &self.options.backup_id,
                &part.topic,
                part.partition,
                SegmentName::new(part.next_sequence),
            )?;
            match self.storage.head(&key).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            let summary = verify_existing(&self.storage, &key).await?;
            if summary.encrypted != self.options.encrypt_to.is_some() {
                return Err(CliError::Locked(format!(
                    "{key} is {} but this backup's segments are {}; it was not written by this backup's sequence of \
                     runs. Move it away to continue",
                    if summary.encrypted {
                        "encrypted"
                    } else {
                        "not encrypted"
                    },
                    if summary.encrypted { "not" } else { "encrypted" },
                )));
            }
            if summary.first_offset < part.position {
                return Err(CliError::Locked(format!(
                    "{key} holds offsets {}..{} but the backup already covers up to {}; it was not written by this \
                     backup's sequence of runs. Move it away to continue",
                    summary.first_offset,
                    summary.last_offset,
                    part.position - 1
                )));
            }
            if summary.first_offset > part.position {
                self.check_hole(part, summary.first_offset, &key).await?;
            }
            tracing::info!(%key, first = summary.first_offset, last = summary.last_offset, "adopting a segment left by an interrupted run");
            let file = segment_file(SegmentName::new(part.next_sequence), &summary);
            self.state
                .add_segment(&part.topic, part.partition, file, summary.last_timestamp)?;
            self.report.adopted_segments += 1;
            part.position = summary.last_offset + 1;
            part.next_sequence += 1;
            self.checkpoint_dirty = true;
            self.manifest_dirty = true;
        }
    }

    /// Before adopting a segment that starts after `part.position`, makes sure Kafka holds no
    /// readable record in between (compaction and transaction markers leave such holes);
    /// otherwise adopting would skip records.
    pub(super) async fn check_hole(&mut self, part: &Partition, first_offset: i64, key: &str) -> Result<(), CliError> {
        let mut request = FetchRequest::new(vec![FetchPosition::new(
            part.topic.as_str(),
            part.partition,
            part.position,
        )])
        .with_max_wait(self.options.fetch_max_wait);
        request.max_bytes = 1 << 20;
        request.partition_max_bytes = 1 << 20;
        let fetched = self.client.fetch(&request).await?;
        let Some(pf) = fetched.into_iter().next() else {
            return Err(CliError::MissingAnswer {
                api: "Fetch",
                topic: part.topic.to_string(),
                partition: part.partition,
            });
        };
        match &pf.error {
            None | Some(PartitionError::OffsetOutOfRange { .. }) => {}
            // Any other error says nothing about the hole: it is never read as "no records".
            Some(error) => {
                return Err(CliError::Fetch {
                    topic: part.topic.to_string(),
                    partition: part.partition,
                    error: error.clone(),
                });
            }
        }
        if let Some(PartitionError::OffsetOutOfRange { log_start_offset, .. }) = pf.error {
            // Retention removed the start of the hole: what it removed is a gap.
            let to = log_start_offset.min(first_offset) - 1;
            if to >= part.position {
                self.state.add_gap(
                    &part.topic,
                    part.partition,
                    Gap {
                        from_offset: part.position,
                        to_offset: to,
                        reason: Gap::RETENTION.into(),
                    },
                )?;
                self.manifest_dirty = true;
            }
            return Ok(());
        }
        if let Some(r) = pf
            .records
            .iter()
            .find(|r| r.offset >= part.position && r.offset < first_offset)
        {
            return Err(CliError::Locked(format!(
                "{key} starts at offset {first_offset}, but Kafka still holds offset {} after the backup's last \
                 segment: adopting it would skip records. Move it away to continue",
                r.offset
            )));
        }
        Ok(())
    }
}
