//! What the target cluster already holds: a target partition's bounds, the records an
//! interrupted run wrote past its checkpoint, and which other restores wrote a topic.

use super::*;

/// The ids of other restores of this backup whose progress names `target_topic` (best effort:
/// unreadable progress documents are left out).
pub(super) async fn restores_into(
    storage: &Arc<dyn ObjectStorage>,
    options: &RestoreOptions,
    target_topic: &str,
) -> Vec<String> {
    let prefix = format!("{}/restores/", options.backup_id);
    let Ok(listing) = storage.list_with_delimiter(&prefix).await else {
        return Vec::new();
    };
    let mut ids = Vec::new();
    for dir in listing.common_prefixes {
        let id = dir
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        if id.is_empty() || id == options.restore_id {
            continue;
        }
        let key = format!("{prefix}{id}/progress.json");
        let progress = match storage.get(&key).await {
            Ok(got) => match serde_json::from_slice::<RestoreProgress>(&got.bytes) {
                Ok(progress) => progress,
                Err(_) => continue,
            },
            // A restore shared by workers keeps one object per partition.
            Err(_) => match super::partitions::load_all(storage, &options.backup_id, &id).await {
                Ok(objects) => super::partitions::as_document(&options.backup_id, &id, &objects),
                Err(_) => continue,
            },
        };
        if progress.writes_to(target_topic) {
            ids.push(id);
        }
    }
    ids
}

/// The end (high watermark) and start of a target partition, from a Fetch response (some
/// brokers answer ListOffsets(latest) wrongly).
///
/// Asked with ListOffsets (earliest and latest), whose partition errors fail the call with their
/// name after the client's retries (authorization, a leader missing): a target that cannot be
/// read is never taken for an empty one.
pub(super) async fn target_bounds(client: &KafkaClient, topic: &str, partition: i32) -> Result<(i64, i64), CliError> {
    let offsets = client
        .list_offsets(&[
            (topic, partition, OffsetSpec::Earliest),
            (topic, partition, OffsetSpec::Latest),
        ])
        .await?;
    let missing = || CliError::MissingAnswer {
        api: "ListOffsets",
        topic: topic.to_owned(),
        partition,
    };
    let start = offsets.first().and_then(|o| o.offset).ok_or_else(missing)?;
    let end = offsets.get(1).and_then(|o| o.offset).ok_or_else(missing)?;
    Ok((end.max(start), start))
}

/// The records of a target partition from one offset up to an end, read one fetch (at most
/// 1 MiB) at a time as they are taken: what an interrupted run wrote past its last checkpoint,
/// however much that is, without holding it all in memory.
pub(super) struct TargetTail {
    topic: String,
    partition: i32,
    position: i64,
    end: i64,
    buffer: VecDeque<kbs_kafka::Record>,
    exhausted: bool,
}

impl TargetTail {
    /// The tail of `topic`/`partition` from `from` to `to` (exclusive); nothing is read yet.
    pub(super) fn new(topic: &str, partition: i32, from: i64, to: i64) -> TargetTail {
        TargetTail {
            topic: topic.to_owned(),
            partition,
            position: from,
            end: to,
            buffer: VecDeque::new(),
            exhausted: from >= to,
        }
    }

    /// The next record of the tail, or `None` when it is all taken.
    pub(super) async fn next(&mut self, client: &KafkaClient) -> Result<Option<kbs_kafka::Record>, CliError> {
        while self.buffer.is_empty() && !self.exhausted {
            self.fill(client).await?;
        }
        Ok(self.buffer.pop_front())
    }

    /// How many offsets of the tail are not taken yet (an upper bound of its records).
    pub(super) async fn remaining(&mut self, client: &KafkaClient) -> Result<u64, CliError> {
        while self.buffer.is_empty() && !self.exhausted {
            self.fill(client).await?;
        }
        let first = self.buffer.front().map_or(self.position, |r| r.offset);
        Ok(if self.buffer.is_empty() && self.exhausted {
            0
        } else {
            (self.end - first).max(0) as u64
        })
    }

    async fn fill(&mut self, client: &KafkaClient) -> Result<(), CliError> {
        let mut request = FetchRequest::new(vec![FetchPosition::new(&self.topic, self.partition, self.position)])
            .with_max_wait(Duration::from_millis(10));
        request.max_bytes = 1 << 20;
        request.partition_max_bytes = 1 << 20;
        let pf = client
            .fetch(&request)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| CliError::MissingAnswer {
                api: "Fetch",
                topic: self.topic.clone(),
                partition: self.partition,
            })?;
        if let Some(error) = pf.error {
            return Err(CliError::Fetch {
                topic: self.topic.clone(),
                partition: self.partition,
                error,
            });
        }
        let before = self.position;
        for r in pf.records {
            if r.offset >= self.position && r.offset < self.end {
                self.position = r.offset + 1;
                self.buffer.push_back(r);
            }
        }
        if self.position == before && pf.next_offset <= self.position {
            // Nothing more can be read below the end (e.g. only transaction markers remain).
            self.exhausted = true;
        }
        self.position = self.position.max(pf.next_offset);
        if self.position >= self.end {
            self.exhausted = true;
        }
        Ok(())
    }
}

/// Checks that the target partition a rerun resumes (or reports done) is still the one this
/// restore wrote: the same topic id, and a log that still reaches the offset after its last
/// acknowledged record. A target deleted and created again, or truncated, is refused with what
/// happened and how to restore again, never trusted (its records are gone).
pub(super) async fn check_target_unchanged(
    client: &KafkaClient,
    options: &RestoreOptions,
    (topic, partition): (&str, i32),
    recorded: &PartitionProgress,
    now_id: Option<&str>,
) -> Result<(), CliError> {
    let again = format!(
        "its earlier records are gone. To restore again, run with a new --restore-id (restore {} keeps its \
         progress under {}/restores/{})",
        options.restore_id, options.backup_id, options.restore_id
    );
    if let (Some(then), Some(now)) = (recorded.target_topic_id.as_deref(), now_id)
        && then != now
    {
        return Err(CliError::TargetChanged(format!(
            "target topic {topic} is not the one restore {} wrote (topic id {then} then, {now} now: it was \
             deleted and created again); {again}",
            options.restore_id
        )));
    }
    let (end, _) = target_bounds(client, topic, partition).await?;
    if end < recorded.next_target_offset {
        return Err(CliError::TargetChanged(format!(
            "target partition {topic}/{partition} ends at offset {end}, but restore {} had written it up to offset \
             {}: it was truncated or recreated; {again}",
            options.restore_id, recorded.next_target_offset
        )));
    }
    Ok(())
}
