//! `kbs backup --workers GROUP`: one of several processes sharing a snapshot or continuous
//! backup through a Kafka group (docs/DESIGN.md, "Scale-out workers").
//!
//! A snapshot worker's life:
//! 1. Take the cut, or read the one the first worker stored ([`SnapshotCut`]).
//! 2. Join the group. The leader assigns the partitions not done yet, by bytes left, sticky.
//! 3. Take its partitions over (their progress objects, compare-and-swap) and back them up to
//!    their ends. A rebalance stops the run (open segments are uploaded and committed) and the
//!    worker joins again; a fenced worker drops its open segments, and its commits are
//!    refused.
//! 4. With nothing (left) to do, wait; the group's leader merges the progress objects into the
//!    manifest every few seconds, and the merge that finds every partition done writes it
//!    complete. Every worker then leaves the group and exits.
//!
//! A continuous worker (`--continuous`) shares the cut as the backup's catalogue, which has no
//! end: the leader adds topics and partitions created later to it (and the group rebalances),
//! the manifest stays `in_progress` while workers run, and a worker stopped with SIGTERM
//! commits, leaves the group, and seals the manifest `complete` if it was the last one in it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kbs_kafka::KafkaClient;
use kbs_manifest::{BackupId, Manifest, TopicName};
use kbs_storage::ObjectStorage;
use tokio::sync::watch;

use super::group::{Beat, Ended, GroupJob, Heartbeats, Item, Next, WorkerOptions, run_in_group};
use super::ledger::WorkerLedger;
use super::merge::{self, Merged};
use super::records::{Owner, PartitionProgress, SnapshotCut};
use crate::backup::{Assignment, BackupOptions, BackupReport, BackupState, ProgressSink};
use crate::error::CliError;
use crate::metrics::BackupMetrics;

/// The group protocol type of backup workers (a consumer can never join their group).
pub const BACKUP_PROTOCOL_TYPE: &str = "kbs-backup";

/// How often a working worker merges, so `kbs describe` shows the backup's progress.
const WORKING_MERGE_INTERVAL: Duration = Duration::from_secs(30);

/// The partitions not done, each weighted by the bytes left: offsets left times the topic's
/// mean record size so far (1 byte before any segment), at least 1.
fn weights(cut: &SnapshotCut, progress: &BTreeMap<(TopicName, i32), PartitionProgress>) -> BTreeMap<Item, u64> {
    let mut mean: BTreeMap<&TopicName, (u64, u64)> = BTreeMap::new();
    for ((topic, _), p) in progress {
        let entry = mean.entry(topic).or_default();
        for s in &p.segment_files {
            entry.0 += s.uncompressed_bytes;
            entry.1 += s.records;
        }
    }
    cut.partitions()
        .filter_map(|(topic, partition, start, end)| {
            let p = progress.get(&(topic.clone(), partition));
            if p.is_some_and(|p| p.done) {
                return None;
            }
            let next = p.and_then(|p| p.next_offset).unwrap_or(start);
            let left = u64::try_from(end - next).unwrap_or(0);
            let bytes_per_record = mean
                .get(topic)
                .map_or(1, |(bytes, records)| (bytes / (*records).max(1)).max(1));
            Some((
                (topic.to_string(), partition),
                left.saturating_mul(bytes_per_record).max(1),
            ))
        })
        .collect()
}

/// A continuous backup's partitions (all of the catalogue, never done), each weighted by the
/// bytes stored of it so far (plus one): where data came in, it will likely go on coming.
fn continuous_weights(
    catalogue: &SnapshotCut,
    progress: &BTreeMap<(TopicName, i32), PartitionProgress>,
) -> BTreeMap<Item, u64> {
    catalogue
        .partitions()
        .map(|(topic, partition, _, _)| {
            let stored: u64 = progress
                .get(&(topic.clone(), partition))
                .map_or(0, |p| p.segment_files.iter().map(|s| s.uncompressed_bytes).sum());
            ((topic.to_string(), partition), stored.saturating_add(1))
        })
        .collect()
}

/// Offsets left to back up over the partitions not done (an upper bound of the records).
fn offsets_left(cut: &SnapshotCut, progress: &BTreeMap<(TopicName, i32), PartitionProgress>) -> u64 {
    cut.partitions()
        .map(
            |(topic, partition, start, end)| match progress.get(&(topic.clone(), partition)) {
                Some(p) if p.done => 0,
                p => u64::try_from(end - p.and_then(|p| p.next_offset).unwrap_or(start)).unwrap_or(0),
            },
        )
        .sum()
}

/// Runs one worker of a backup shared through the group `workers.group`: a snapshot until it
/// is complete or `shutdown` turns true, a continuous one (`options.continuous`) until
/// `shutdown`. Returns what this worker stored, and the backup's total records.
pub async fn run(
    storage: Arc<dyn ObjectStorage>,
    options: BackupOptions,
    workers: WorkerOptions,
    metrics: Arc<BackupMetrics>,
    progress: Arc<dyn ProgressSink>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<BackupReport, CliError> {
    let capabilities = storage.capabilities();
    if !(capabilities.conditional_create && capabilities.conditional_update) || options.unsafe_single_writer {
        return Err(CliError::InvalidArgument {
            flag: "workers",
            message: format!(
                "workers fence each other with conditional writes, which {} does not honour (or \
                 --unsafe-single-writer was given): use a store that does",
                storage.describe()
            ),
        });
    }
    let metrics_server = crate::metrics::serve_if_asked(options.metrics_addr.as_deref(), metrics.clone()).await?;
    let client = KafkaClient::connect(options.kafka.clone().with_events(metrics.client.clone())).await?;
    let presence = super::Presence::start(storage.clone(), &options.backup_id).await?;
    let mut worker = Worker {
        storage,
        client,
        options,
        group: workers.group.clone(),
        metrics: metrics.clone(),
        progress,
        report: BackupReport::default(),
        backed_up: BTreeSet::new(),
        started: Instant::now(),
        cut: None,
        base: None,
        last_refresh: Instant::now(),
        last_groups: Instant::now(),
    };
    let result = worker.run(&workers, &mut shutdown).await;
    presence.end().await;
    if result.is_err() {
        metrics.errors.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(server) = metrics_server {
        server.abort();
    }
    result
}

struct Worker {
    storage: Arc<dyn ObjectStorage>,
    client: KafkaClient,
    options: BackupOptions,
    group: String,
    metrics: Arc<BackupMetrics>,
    progress: Arc<dyn ProgressSink>,
    report: BackupReport,
    /// Partitions this worker backed up some of.
    backed_up: BTreeSet<(TopicName, i32)>,
    started: Instant,
    /// The snapshot cut, once read or taken.
    cut: Option<SnapshotCut>,
    /// The manifest of the backup this one continues, if any.
    base: Option<Manifest>,
    /// When the catalogue of a continuous backup was last grown (the leader's).
    last_refresh: Instant,
    /// When the consumer groups' offsets were last captured into it (the leader's).
    last_groups: Instant,
}

impl Worker {
    async fn run(
        &mut self,
        workers: &WorkerOptions,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<BackupReport, CliError> {
        let backup_id = self.options.backup_id.clone();
        self.report.backup_id = backup_id.to_string();
        crate::prune::refuse_if_deleted(&self.storage, &backup_id).await?;
        refuse_if_single_writer(&self.storage, &backup_id).await?;
        self.base = merge::load_manifest(&self.storage, &backup_id).await?.map(|(m, _)| m);
        let cut = match SnapshotCut::load(&self.storage, &backup_id).await? {
            Some(cut) => cut,
            None => super::cut::take_cut(&self.storage, &self.client, &self.options, self.base.as_ref()).await?,
        };
        refuse_other_mode(&cut, self.options.continuous)?;
        self.report.resumed = self.base.is_some();
        let merged = merge::merge(&self.storage, &cut).await?;
        self.cut = Some(cut);
        if merged.complete {
            return Ok(self.finish(&merged));
        }
        let client = self.client.clone();
        // Workers of another backup in the same group are refused by the coordinator
        // (INCONSISTENT_GROUP_PROTOCOL) instead of being handed this backup's partitions; so
        // are a snapshot's and a continuous backup's workers of the same id.
        let protocol = if self.options.continuous {
            format!("continuous/{backup_id}")
        } else {
            format!("sticky-bytes/{backup_id}")
        };
        let ended = run_in_group(self, &client, workers, BACKUP_PROTOCOL_TYPE, protocol, shutdown).await?;
        if self.options.continuous {
            let merged = self.leave_continuous(&workers.group).await?;
            return Ok(self.finish(&merged));
        }
        let cut = self.cut();
        let merged = merge::merge(&self.storage, cut).await?;
        match ended {
            Ended::Complete => Ok(self.finish(&merged)),
            Ended::Shutdown if merged.complete => Ok(self.finish(&merged)),
            Ended::Shutdown => {
                let progress = PartitionProgress::load_all(&self.storage, &backup_id).await?;
                Err(CliError::Interrupted {
                    backup_id: backup_id.to_string(),
                    partitions: merged.total - merged.done,
                    total_partitions: merged.total,
                    records_left: offsets_left(cut, &progress),
                })
            }
        }
    }

    fn cut(&self) -> &SnapshotCut {
        self.cut.as_ref().expect("the cut is read before the worker joins")
    }

    /// A continuous worker that left its group (SIGTERM): what it read is committed. If no
    /// member is left, it was the last one, and it seals the manifest `complete` (with the
    /// consumer groups' offsets as they are now, if asked); otherwise it writes nothing more
    /// (a merge of its could land after the last one's seal) and the manifest stays
    /// `in_progress` for the others. Every worker commits, then leaves, then looks: the last
    /// to leave finds the group empty, and sees everyone's commits.
    async fn leave_continuous(&mut self, group: &str) -> Result<Merged, CliError> {
        let described = self.client.describe_groups(&[group]).await;
        let others = match &described {
            Ok(groups) => groups.iter().map(|g| g.members.len()).sum::<usize>(),
            Err(e) => {
                tracing::warn!("could not describe group {group} ({e}): leaving the backup in progress");
                1
            }
        };
        if others > 0 {
            tracing::info!(
                "{others} workers still in group {group}: backup {} stays in progress until the last one stops",
                self.options.backup_id
            );
            return merge::preview(&self.storage, self.cut()).await;
        }
        if self.options.consumer_groups {
            let (catalogue, _) = super::cut::grow_catalogue(&self.storage, &self.client, &self.options, true).await?;
            self.cut = Some(catalogue);
        }
        let merged = merge::seal(&self.storage, self.cut()).await?;
        tracing::info!(
            "last worker of group {group} stopped: backup {} is complete ({} records)",
            self.options.backup_id,
            merged.records
        );
        Ok(merged)
    }

    /// Reads a continuous backup's catalogue again (the leader may have grown it).
    async fn reload_catalogue(&mut self) -> Result<(), CliError> {
        if let Some(catalogue) = SnapshotCut::load(&self.storage, &self.options.backup_id).await? {
            self.cut = Some(catalogue);
        }
        Ok(())
    }

    /// The report once the backup is complete.
    fn finish(&mut self, merged: &Merged) -> BackupReport {
        let mut report = self.report.clone();
        report.partitions = self.backed_up.len() as u64;
        report.topics = self.backed_up.iter().map(|(t, _)| t).collect::<BTreeSet<_>>().len() as u64;
        report.total_records = merged.records;
        report.duration_secs = self.started.elapsed().as_secs_f64();
        report
    }

    fn add_report(&mut self, run: &BackupReport) {
        let r = &mut self.report;
        r.records += run.records;
        r.bytes_in += run.bytes_in;
        r.bytes_out += run.bytes_out;
        r.segments += run.segments;
        r.adopted_segments += run.adopted_segments;
        r.gaps.extend(run.gaps.iter().cloned());
    }
}

impl GroupJob for Worker {
    async fn items(&mut self) -> Result<BTreeMap<Item, u64>, CliError> {
        let progress = PartitionProgress::load_all(&self.storage, &self.options.backup_id).await?;
        if self.options.continuous {
            self.reload_catalogue().await?;
            return Ok(continuous_weights(self.cut(), &progress));
        }
        Ok(weights(self.cut(), &progress))
    }

    async fn find_new_items(&mut self) -> Result<bool, CliError> {
        if !self.options.continuous || self.last_refresh.elapsed() < self.options.topic_refresh_interval {
            return Ok(false);
        }
        let groups =
            self.options.consumer_groups && self.last_groups.elapsed() >= self.options.consumer_groups_interval;
        let (catalogue, added) = super::cut::grow_catalogue(&self.storage, &self.client, &self.options, groups).await?;
        self.cut = Some(catalogue);
        self.last_refresh = Instant::now();
        if groups {
            self.last_groups = Instant::now();
        }
        Ok(added)
    }

    async fn check_complete(&mut self, full: bool) -> Result<bool, CliError> {
        if self.options.continuous {
            // Never complete while workers run; the leader's merges keep the manifest fresh.
            if full {
                merge::merge(&self.storage, self.cut()).await?;
            }
            return Ok(false);
        }
        if !full {
            return Ok(merge::load_manifest(&self.storage, &self.options.backup_id)
                .await?
                .is_some_and(|(m, _)| m.is_complete()));
        }
        let merged = merge::merge(&self.storage, self.cut()).await?;
        self.progress.report(&crate::backup::Progress {
            records: self.report.records,
            bytes_in: self.report.bytes_in,
            bytes_out: self.report.bytes_out,
            remaining_offsets: None,
            partitions_done: merged.done as u64,
            partitions_total: merged.total as u64,
            elapsed: self.started.elapsed(),
        });
        Ok(merged.complete)
    }

    /// Backs up `assigned` while `beats` heartbeat; returns what to do next.
    async fn work(
        &mut self,
        owner: &Owner,
        assigned: &[Item],
        leader: bool,
        beats: &mut Heartbeats,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Next, CliError> {
        if self.options.continuous && assigned.iter().any(|(t, p)| !self.cut().contains(t, *p)) {
            // Assigned from a catalogue the leader grew after this worker last read it.
            self.reload_catalogue().await?;
        }
        let cut = self.cut.clone().expect("the cut is read before the worker joins");
        let assigned: Vec<(TopicName, i32)> = assigned
            .iter()
            .filter(|(t, p)| cut.contains(t, *p))
            .filter_map(|(t, p)| TopicName::new(t).ok().map(|t| (t, *p)))
            .collect();
        let taken = WorkerLedger::take_over(
            self.storage.clone(),
            &cut.backup_id,
            owner.clone(),
            &assigned,
            self.base.as_ref(),
        )
        .await;
        let ledger = match taken {
            Ok(ledger) => ledger,
            Err(CliError::Fenced(message)) => {
                tracing::warn!("{message}");
                return Ok(Next::Fenced);
            }
            Err(e) => return Err(e),
        };
        // A snapshot's partitions end where the cut says; a continuous backup's never do.
        let partitions: BTreeMap<(TopicName, i32), Option<i64>> = ledger
            .progress()
            .filter(|p| !p.done)
            .filter_map(|p| {
                cut.end(p.topic.as_str(), p.partition)
                    .map(|end| ((p.topic.clone(), p.partition), (!cut.continuous).then_some(end)))
            })
            .collect();
        if partitions.is_empty() {
            return Ok(Next::Idle);
        }
        self.backed_up.extend(partitions.keys().cloned());
        let state = BackupState::for_worker(self.storage.clone(), &cut, ledger)?;
        let (stop, stopped) = watch::channel(false);
        let fenced = Arc::new(AtomicBool::new(false));
        let run = crate::backup::run_assignment(
            self.storage.clone(),
            self.client.clone(),
            self.options.clone(),
            state,
            Assignment {
                partitions,
                fenced: fenced.clone(),
            },
            self.progress.clone(),
            self.metrics.clone(),
            stopped,
        );
        tokio::pin!(run);
        let mut merge_tick = tokio::time::interval(WORKING_MERGE_INTERVAL);
        merge_tick.tick().await;
        // The leader of a continuous backup's workers looks for new topics as it works.
        let mut refresh_tick = tokio::time::interval(Duration::from_millis(500));
        let refreshing = leader && cut.continuous;
        let mut next: Option<Next> = None;
        let mut listening = true;
        let result = loop {
            tokio::select! {
                result = &mut run => break result,
                beat = beats.next() => match beat {
                    Beat::Rebalance => {
                        if next.is_none() {
                            tracing::info!("group {} is rebalancing: finishing open segments", self.group);
                            next = Some(Next::Rejoin);
                            let _ = stop.send(true);
                        }
                    }
                    Beat::Fenced(why) => {
                        if !matches!(next, Some(Next::Fenced) | Some(Next::Shutdown)) {
                            tracing::warn!(
                                "dropped from group {} ({why}): its partitions are another worker's now; stopping",
                                self.group
                            );
                            fenced.store(true, Ordering::SeqCst);
                            next = Some(Next::Fenced);
                            let _ = stop.send(true);
                        }
                    }
                },
                _ = merge_tick.tick() => {
                    if let Err(e) = merge::merge(&self.storage, self.cut()).await {
                        tracing::warn!("could not merge progress into the manifest: {e}");
                    }
                }
                _ = refresh_tick.tick(), if refreshing && next.is_none() => {
                    match self.find_new_items().await {
                        Ok(true) => {
                            tracing::info!("new partitions to back up: rebalancing group {}", self.group);
                            next = Some(Next::Rejoin);
                            let _ = stop.send(true);
                        }
                        Ok(false) => {}
                        Err(e) => tracing::warn!("could not look for new topics: {e}"),
                    }
                }
                changed = shutdown.changed(), if listening => {
                    listening = changed.is_ok();
                    if changed.is_ok() && *shutdown.borrow() && next.is_none() {
                        tracing::info!("shutdown requested: finishing open segments and leaving the group");
                        next = Some(Next::Shutdown);
                        let _ = stop.send(true);
                    }
                }
            }
        };
        match result {
            Ok(report) => self.add_report(&report),
            Err(CliError::Interrupted { .. }) if next.is_some() => {}
            // Refused commits or uploads: another worker owns (some of) these partitions now.
            Err(CliError::Fenced(message)) => {
                tracing::warn!("{message}");
                return Ok(match next {
                    Some(Next::Shutdown) => Next::Shutdown,
                    _ => Next::Fenced,
                });
            }
            Err(e) => return Err(e),
        }
        Ok(match next {
            Some(next) => next,
            None => {
                let merged = merge::merge(&self.storage, &cut).await?;
                if merged.complete { Next::Complete } else { Next::Idle }
            }
        })
    }
}

/// Refuses workers of a snapshot on a continuous backup's catalogue, and the other way round:
/// each mode's workers would read the shared objects differently.
fn refuse_other_mode(cut: &SnapshotCut, continuous: bool) -> Result<(), CliError> {
    match (cut.continuous, continuous) {
        (true, false) => Err(CliError::InvalidArgument {
            flag: "continuous",
            message: format!(
                "backup {} is a continuous backup shared by workers (its cut.json is their catalogue): start this \
                 worker with --continuous too",
                cut.backup_id
            ),
        }),
        (false, true) => Err(CliError::InvalidArgument {
            flag: "continuous",
            message: format!(
                "backup {} is a snapshot shared by workers (its cut.json has ends): finish it without --continuous, \
                 or back up continuously under a new --backup-id",
                cut.backup_id
            ),
        }),
        _ => Ok(()),
    }
}

/// Refuses while a single `kbs backup` (without `--workers`) holds the backup's lease.
async fn refuse_if_single_writer(storage: &Arc<dyn ObjectStorage>, backup_id: &BackupId) -> Result<(), CliError> {
    let key = kbs_manifest::layout::lease_key(backup_id);
    let got = match storage.get(&key).await {
        Ok(got) => got,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let held: crate::lease::LeaseRecord = serde_json::from_slice(&got.bytes).map_err(|e| CliError::Unparsable {
        key: key.clone(),
        message: e.to_string(),
    })?;
    if held
        .staleness(crate::lease::unix_now_ms(), &crate::lease::host_name())
        .is_none()
    {
        return Err(CliError::Locked(format!(
            "backup {backup_id} is being written by a single kbs backup ({}); workers start once it is done",
            held.holder()
        )));
    }
    Ok(())
}
