//! Fetching: two lanes with a Fetch in flight each, the memory budget that paces them, and
//! taking each response in (gaps, the snapshot end, records into open segments).

use super::*;

/// Fetches kept in flight at once while catching up, each for its own share of the partitions
/// ("lane").
///
/// A broker answers one connection's requests in order; with a single fetch in flight it sits
/// idle while the client decodes and checks each response. With two lanes the next request is
/// already queued, so the broker prepares one lane's response while the other is decoded.
///
/// The same ordering makes lanes harmful once a lane has nothing to read: its fetch waits up
/// to the max-wait for data, and the other lane's fetch waits behind it. So in continuous mode
/// a lane whose last response was empty switches the engine to one fetch for all partitions
/// until every lane returns records again.
pub(super) const FETCH_LANES: usize = 2;

/// Which fetches to start: `Some(lane)` for each lane with no fetch in flight, or `None` for
/// one fetch of every partition not in flight when continuous mode has an idle lane (and
/// nothing is in flight: one fetch at a time then).
pub(super) fn lanes_to_fetch(
    continuous: bool,
    lane_idle: &[bool; FETCH_LANES],
    inflight: &[Option<usize>],
) -> Vec<Option<usize>> {
    if continuous && lane_idle.iter().any(|&idle| idle) {
        return if inflight.is_empty() { vec![None] } else { Vec::new() };
    }
    (0..FETCH_LANES)
        .map(Some)
        .filter(|lane| !inflight.contains(lane))
        .collect()
}

/// A fetch in flight.
pub(super) struct InflightFetch {
    /// The lane it reads, or `None` for a fetch of every lane.
    pub(super) lane: Option<usize>,
    /// The partitions it covers.
    pub(super) keys: Vec<(TopicName, i32)>,
    /// Most bytes the response may hold (counted against the memory budget).
    pub(super) bytes: u64,
    pub(super) handle: JoinHandle<kbs_kafka::Result<Vec<PartitionFetch>>>,
}

pub(super) fn to_format_record(r: kbs_kafka::Record) -> Record {
    Record {
        offset: r.offset,
        timestamp: r.timestamp,
        key: r.key,
        value: r.value,
        headers: r
            .headers
            .into_iter()
            .map(|h| Header {
                key: h.key,
                value: h.value,
            })
            .collect(),
    }
}

impl Engine {
    pub(super) fn held_bytes(&self) -> u64 {
        self.partitions
            .values()
            .map(|p| p.open_bytes() + p.queued_bytes())
            .sum()
    }

    /// The fetch size that keeps everything held within the budget, after making room by
    /// waiting for uploads or rolling the largest open segments.
    pub(super) async fn make_room(&mut self) -> Result<u64, CliError> {
        let budget = self.options.data_budget();
        let want = (budget / 4).clamp(1 << 20, 64 << 20);
        loop {
            // Responses of the fetches in flight count against the budget too.
            let held = self.held_bytes() + self.inflight.iter().map(|f| f.bytes).sum::<u64>();
            if held + want <= budget {
                return Ok(want);
            }
            let has_uploads = self.partitions.values().any(|p| !p.queue.is_empty());
            if has_uploads {
                self.commit(true).await?;
                continue;
            }
            // Roll the largest open segment; if there is none, fetch what fits.
            let largest = self
                .partitions
                .iter()
                .filter(|(_, p)| p.open.is_some())
                .max_by_key(|(_, p)| p.open_bytes())
                .map(|(k, _)| k.clone());
            match largest {
                Some(key) => self.roll(&key).await?,
                None => return Ok(want.min(budget.saturating_sub(held)).max(1 << 20)),
            }
        }
    }

    /// Takes in one fetch: gaps, the snapshot end, records into open segments (encoded on the
    /// blocking pool, all partitions at once), and rolling of full segments. Returns the key
    /// and value bytes of the records taken in.
    pub(super) async fn absorb(&mut self, fetched: Vec<PartitionFetch>, prefetch: bool) -> Result<u64, CliError> {
        let mut encode = Vec::new();
        for pf in fetched {
            let Ok(topic) = TopicName::new(&pf.topic) else { continue };
            let key = (topic, pf.partition);
            let Some(part) = self.partitions.get_mut(&key) else {
                continue;
            };
            if part.done {
                continue;
            }
            if !self.options.continuous && part.end.is_none() {
                part.end = Some(match &pf.error {
                    Some(PartitionError::OffsetOutOfRange { high_watermark, .. }) => *high_watermark,
                    _ => pf.high_watermark,
                });
            }
            match pf.error {
                None => {}
                Some(PartitionError::OffsetOutOfRange {
                    requested,
                    log_start_offset,
                    high_watermark,
                }) => {
                    if log_start_offset > part.position {
                        let gap = Gap {
                            from_offset: part.position,
                            to_offset: log_start_offset - 1,
                            reason: Gap::RETENTION.into(),
                        };
                        tracing::warn!(topic = %part.topic, partition = part.partition, from = gap.from_offset, to = gap.to_offset, "offsets deleted by retention before they were read: recording a gap");
                        self.metrics.gaps.fetch_add(1, Ordering::Relaxed);
                        self.report.gaps.push(GapReport {
                            topic: part.topic.to_string(),
                            partition: part.partition,
                            from_offset: gap.from_offset,
                            to_offset: gap.to_offset,
                        });
                        part.position = log_start_offset;
                        // The open segment ends before the gap.
                        if let Some(open) = part.open.take() {
                            let item = self.start_upload(&key, open).await?;
                            let part = self.partitions.get_mut(&key).expect("present");
                            part.queue.push_back(item);
                        }
                        let part = self.partitions.get_mut(&key).expect("present");
                        part.queue.push_back(CommitItem::Gap(gap));
                        if part.end.is_some_and(|end| part.position >= end) {
                            part.done = true;
                        }
                        continue;
                    }
                    return Err(CliError::Fetch {
                        topic: pf.topic.clone(),
                        partition: pf.partition,
                        error: PartitionError::OffsetOutOfRange {
                            requested,
                            log_start_offset,
                            high_watermark,
                        },
                    });
                }
                Some(PartitionError::Broker { code })
                    if self.options.continuous && code == ErrorCode::UNKNOWN_TOPIC_OR_PARTITION =>
                {
                    // The topic may have been deleted (or deleted and created again): the next
                    // metadata check decides; until then the partition waits.
                    self.topics_to_check = true;
                    continue;
                }
                Some(error) => {
                    return Err(CliError::Fetch {
                        topic: pf.topic.clone(),
                        partition: pf.partition,
                        error,
                    });
                }
            }
            let end = part.end;
            // Only records after what this partition already holds, in strictly increasing
            // offset order, and (snapshot) before the end captured at start.
            let mut last = part.position - 1;
            let mut records = Vec::with_capacity(pf.records.len());
            // Where Kafka batches end, as indexes into `records`.
            let mut batch_ends = Vec::with_capacity(pf.batch_ends.len());
            let mut next_end = pf.batch_ends.iter().copied().peekable();
            for (index, r) in pf.records.into_iter().enumerate() {
                if r.offset <= last {
                    // kbs-kafka already drops a batch a broker sends twice; anything else going
                    // back would be a reordering: refuse it rather than lose records.
                    if r.offset >= part.position {
                        return Err(CliError::Fetch {
                            topic: pf.topic.clone(),
                            partition: pf.partition,
                            error: PartitionError::CorruptBatch {
                                offset: r.offset,
                                reason: format!("offset {} arrived after offset {last}", r.offset),
                            },
                        });
                    }
                } else if end.is_some_and(|e| r.offset >= e) {
                    break;
                } else {
                    last = r.offset;
                    records.push(to_format_record(r));
                }
                while next_end.next_if(|&e| e <= index + 1).is_some() {
                    if batch_ends.last() != Some(&records.len()) && !records.is_empty() {
                        batch_ends.push(records.len());
                    }
                }
            }
            if batch_ends.last() != Some(&records.len()) && !records.is_empty() {
                // The snapshot end cut a batch, or the response ended: the segment may end here.
                batch_ends.push(records.len());
            }
            if let Ok(mut gauges) = self.metrics.partitions.lock() {
                gauges.insert(
                    (pf.topic.clone(), pf.partition),
                    (pf.next_offset.max(part.position), pf.high_watermark),
                );
            }
            if pf.next_offset > part.position {
                part.position = pf.next_offset;
                part.last_progress = Instant::now();
            } else if !part.done && part.last_progress.elapsed() >= Duration::from_secs(30) {
                part.last_progress = Instant::now();
                tracing::warn!(
                    topic = %part.topic, partition = part.partition, offset = part.position, end = ?part.end,
                    last_stable_offset = pf.last_stable_offset,
                    "no progress for 30 s: the broker returns no records at this offset (an open transaction keeps the last stable offset back?)"
                );
            }
            if end.is_some_and(|end| part.position >= end) {
                part.done = true;
            }
            if !records.is_empty() {
                encode.push((key, records, batch_ends));
            }
        }
        // Encode on the blocking pool, every partition in parallel.
        let mut jobs = Vec::new();
        let mut encoding = 0u64;
        for (key, records, batch_ends) in encode {
            encoding += records
                .iter()
                .map(|r| (r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len())) as u64)
                .sum::<u64>();
            let part = self.partitions.get_mut(&key).expect("present");
            let open = match part.open.take() {
                Some(open) => open,
                None => OpenSegment {
                    writer: new_segment_writer(
                        WriterOptions::new(self.options.compression)
                            .zstd_level(self.options.compression_level)
                            .per_record_crc(self.options.per_record_crc),
                        self.options.encrypt_to.as_ref(),
                    )
                    .map_err(|source| CliError::Segment {
                        key: part.topic.to_string(),
                        source,
                    })?,
                    opened: Instant::now(),
                    last_timestamp: 0,
                },
            };
            let max_records = self.options.segment_max_records;
            let max_bytes = self.options.effective_segment_max_bytes();
            let encrypt_to = self.options.encrypt_to.clone();
            jobs.push((
                key,
                tokio::task::spawn_blocking(move || {
                    encode_records(open, records, &batch_ends, max_records, max_bytes, encrypt_to.as_ref())
                }),
            ));
        }
        // The next offsets are known: fetch again while this response is encoded.
        if prefetch {
            self.start_prefetches(encoding);
        }
        for (key, job) in jobs {
            let (open, full, bytes) = job
                .await
                .map_err(|e| CliError::Locked(format!("encoding task failed: {e}")))??;
            self.report.bytes_in += bytes;
            self.metrics.bytes_in.fetch_add(bytes, Ordering::Relaxed);
            for segment in full {
                let item = self.start_upload(&key, segment).await?;
                self.partitions.get_mut(&key).expect("present").queue.push_back(item);
            }
            self.partitions.get_mut(&key).expect("present").open = open;
        }
        Ok(encoding)
    }

    /// A fetch request for `active` partitions returning at most `budget` bytes, and at most
    /// one second's bytes under a byte-rate limit.
    pub(super) fn fetch_request(&self, active: Vec<FetchPosition>, budget: u64) -> FetchRequest {
        let budget = budget.min(self.options.max_bytes_per_sec.unwrap_or(u64::MAX).max(1));
        let max_wait = if self.options.continuous && self.idle {
            Duration::from_millis(500).max(self.options.fetch_max_wait)
        } else {
            self.options.fetch_max_wait
        };
        let mut request = FetchRequest::new(active).with_max_wait(max_wait);
        request.max_bytes = i32::try_from(budget).unwrap_or(i32::MAX);
        request.partition_max_bytes = self.options.fetch_max_partition_bytes.min(request.max_bytes);
        request
    }

    /// Records, per lane, whether a response held records for the lane's partitions.
    pub(super) fn note_lane_activity(&mut self, fetched: &[PartitionFetch]) {
        let mut seen = [false; FETCH_LANES];
        let mut records = [false; FETCH_LANES];
        for pf in fetched {
            let Ok(topic) = TopicName::new(&pf.topic) else { continue };
            if let Some(part) = self.partitions.get(&(topic, pf.partition)) {
                seen[part.lane] = true;
                records[part.lane] |= !pf.records.is_empty();
            }
        }
        for lane in 0..FETCH_LANES {
            if seen[lane] {
                self.lane_idle[lane] = !records[lane];
            }
        }
    }

    /// Starts fetches in the background while the current response is encoded: one per lane
    /// that has none in flight or, in continuous mode with an idle lane, one for every
    /// partition (see [`FETCH_LANES`]). Only as far as the memory budget has room for them
    /// besides `encoding` bytes of records being encoded now and what fetches in flight may
    /// return; otherwise the loop makes room first.
    pub(super) fn start_prefetches(&mut self, encoding: u64) {
        let inflight_lanes: Vec<Option<usize>> = self.inflight.iter().map(|f| f.lane).collect();
        let lanes = lanes_to_fetch(self.options.continuous, &self.lane_idle, &inflight_lanes);
        let share = if lanes == [None] { 1 } else { FETCH_LANES as u64 };
        let budget = self.options.data_budget();
        let want = ((budget / 4) / share).clamp(1 << 20, 64 << 20);
        for lane in lanes {
            let busy: HashSet<&(TopicName, i32)> = self.inflight.iter().flat_map(|f| &f.keys).collect();
            let keys: Vec<(TopicName, i32)> = self
                .partitions
                .iter()
                .filter(|(k, p)| !p.done && !busy.contains(k) && lane.is_none_or(|l| p.lane == l))
                .map(|(k, _)| k.clone())
                .collect();
            let inflight: u64 = self.inflight.iter().map(|f| f.bytes).sum();
            if keys.is_empty() || self.held_bytes() + encoding + inflight + want > budget {
                continue;
            }
            let active: Vec<FetchPosition> = keys
                .iter()
                .map(|k| FetchPosition::new(k.0.as_str(), k.1, self.partitions[k].position))
                .collect();
            let request = self.fetch_request(active, want);
            let client = self.client.clone();
            self.inflight.push_back(InflightFetch {
                lane,
                keys,
                bytes: want,
                handle: tokio::spawn(async move { client.fetch(&request).await }),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use kbs_manifest::BackupId;

    #[test]
    fn segments_are_rolled_within_an_eighth_of_the_memory_budget() {
        let mut options = BackupOptions::new(BackupId::new("b").unwrap(), kbs_kafka::ClientConfig::new(["k:9092"]));
        assert_eq!(options.memory_budget, 256 << 20);
        assert_eq!(options.segment_max_bytes, 128 << 20);
        assert_eq!(options.effective_segment_max_bytes(), 32 << 20);
        options.memory_budget = 1 << 30;
        assert_eq!(options.effective_segment_max_bytes(), 128 << 20);
        options.segment_max_bytes = 4 << 20;
        assert_eq!(options.effective_segment_max_bytes(), 4 << 20);
        options.memory_budget = 1 << 20;
        assert_eq!(options.effective_segment_max_bytes(), 1 << 20, "never below 1 MiB");
    }

    #[test]
    fn data_takes_the_budget_but_what_kbs_itself_needs() {
        let mut options = BackupOptions::new(BackupId::new("b").unwrap(), kbs_kafka::ClientConfig::new(["k:9092"]));
        assert_eq!(options.data_budget(), 224 << 20);
        options.memory_budget = 1 << 30;
        assert_eq!(options.data_budget(), (1 << 30) - (32 << 20), "at most 32 MiB kept");
        options.memory_budget = 16 << 20;
        assert_eq!(options.data_budget(), 14 << 20, "an eighth of a small budget");
    }

    use super::*;

    #[test]
    fn snapshot_keeps_every_lane_busy() {
        assert_eq!(lanes_to_fetch(false, &[false, false], &[]), vec![Some(0), Some(1)]);
        assert_eq!(lanes_to_fetch(false, &[false, false], &[Some(0)]), vec![Some(1)]);
        assert_eq!(lanes_to_fetch(false, &[false, false], &[Some(1), Some(0)]), vec![]);
        // Idle lanes do not matter in a snapshot: partitions past their end are not fetched.
        assert_eq!(lanes_to_fetch(false, &[true, false], &[Some(1)]), vec![Some(0)]);
    }

    #[test]
    fn continuous_mode_with_an_idle_lane_fetches_everything_at_once() {
        assert_eq!(lanes_to_fetch(true, &[false, false], &[Some(0)]), vec![Some(1)]);
        assert_eq!(lanes_to_fetch(true, &[true, false], &[]), vec![None]);
        assert_eq!(lanes_to_fetch(true, &[false, true], &[]), vec![None]);
        // A lane's fetch still in flight finishes first: no fetch queues behind a long poll.
        assert_eq!(lanes_to_fetch(true, &[true, false], &[Some(1)]), vec![]);
        assert_eq!(lanes_to_fetch(true, &[true, true], &[None]), vec![]);
    }
}
