//! `kbs backup --workers GROUP`: one of several processes sharing a snapshot backup through a
//! Kafka group (docs/DESIGN.md, "Scale-out workers").
//!
//! A worker's life:
//! 1. Take the cut, or read the one the first worker stored ([`SnapshotCut`]).
//! 2. Join the group. The leader assigns the partitions not done yet, by bytes left, sticky.
//! 3. Take its partitions over (their progress objects, compare-and-swap) and back them up to
//!    their ends, heartbeating meanwhile. A rebalance stops the run (open segments are
//!    uploaded and committed) and the worker joins again; a fenced worker drops its open
//!    segments, and its commits are refused.
//! 4. With nothing (left) to do, merge the progress objects into the manifest every few
//!    seconds; the merge that finds every partition done writes it complete, and every worker
//!    then leaves the group and exits.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kbs_kafka::{Assignor, HeartbeatOutcome, JoinedMember, KafkaClient, Membership, MembershipConfig, OffsetSpec};
use kbs_manifest::{BackupId, Encryption, Manifest, SourceCluster, TopicName};
use kbs_storage::ObjectStorage;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::ledger::WorkerLedger;
use super::merge::{self, Merged};
use super::records::{CutTopic, Owner, PartitionProgress, SnapshotCut};
use crate::backup::{Assignment, BackupOptions, BackupReport, BackupState, ProgressSink};
use crate::error::CliError;
use crate::metrics::BackupMetrics;

/// The group protocol type of backup workers (a consumer can never join their group).
pub const BACKUP_PROTOCOL_TYPE: &str = "kbs-backup";

/// How often an idle worker merges the progress objects into the manifest.
const IDLE_MERGE_INTERVAL: Duration = Duration::from_secs(2);

/// How often a working worker merges, so `kbs describe` shows the backup's progress.
const WORKING_MERGE_INTERVAL: Duration = Duration::from_secs(30);

/// Fencings in a row, without a partition finishing in between, after which a worker gives up.
const MAX_FENCINGS: u32 = 20;

/// How a worker takes part in its group.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The Kafka group the workers of one backup share (`--workers`).
    pub group: String,
    /// The coordinator drops a worker whose heartbeats stop for this long; its partitions go
    /// to the others (`--worker-session-timeout`, within the broker's
    /// `group.min.session.timeout.ms`..`group.max.session.timeout.ms`).
    pub session_timeout: Duration,
    /// How long a rebalance waits for every worker to finish its open segments and join again.
    pub rebalance_timeout: Duration,
}

impl WorkerOptions {
    /// Options with the documented defaults: a 10 s session, a 60 s rebalance.
    pub fn new(group: impl Into<String>) -> Self {
        WorkerOptions {
            group: group.into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(60),
        }
    }

    fn heartbeat_interval(&self) -> Duration {
        (self.session_timeout / 5).clamp(Duration::from_millis(200), Duration::from_secs(3))
    }
}

/// A member's metadata: the partitions it holds, so that the assignment stays sticky.
#[derive(Debug, Default, Serialize, Deserialize)]
struct MemberMetadata {
    held: Vec<(String, i32)>,
}

/// A member's assignment.
#[derive(Debug, Default, Serialize, Deserialize)]
struct MemberAssignment {
    partitions: Vec<(String, i32)>,
}

/// The leader's assignor: the partitions not done, weighted by the bytes left to back up.
struct BackupAssignor {
    items: BTreeMap<(String, i32), u64>,
}

impl Assignor for BackupAssignor {
    fn assign(&self, members: &[JoinedMember]) -> BTreeMap<String, Bytes> {
        let held: BTreeMap<String, Vec<(String, i32)>> = members
            .iter()
            .map(|m| {
                // A member whose metadata cannot be read holds nothing: it gets new work.
                let metadata: MemberMetadata = serde_json::from_slice(&m.metadata).unwrap_or_default();
                (m.member_id.clone(), metadata.held)
            })
            .collect();
        super::assign(&held, &self.items)
            .into_iter()
            .map(|(member, partitions)| {
                let body = serde_json::to_vec(&MemberAssignment { partitions }).expect("assignment serialises");
                (member, Bytes::from(body))
            })
            .collect()
    }
}

/// The partitions not done, each weighted by the bytes left: offsets left times the topic's
/// mean record size so far (1 byte before any segment), at least 1.
fn weights(
    cut: &SnapshotCut,
    progress: &BTreeMap<(TopicName, i32), PartitionProgress>,
) -> BTreeMap<(String, i32), u64> {
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

/// What the heartbeat task heard from the coordinator.
#[derive(Debug, Clone)]
enum Beat {
    /// The group is rebalancing: join again.
    Rebalance,
    /// This member was dropped (why).
    Fenced(String),
}

/// The heartbeat task of one stretch of membership (one generation's assignment).
struct Heartbeats {
    task: tokio::task::JoinHandle<()>,
    heard: tokio::sync::mpsc::Receiver<Beat>,
}

impl Heartbeats {
    fn spawn(membership: Arc<Membership>, every: Duration, group: &str) -> Heartbeats {
        let (tell, heard) = tokio::sync::mpsc::channel(4);
        let group = group.to_string();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let beat = match membership.heartbeat().await {
                    Ok(HeartbeatOutcome::Stable) => continue,
                    Ok(HeartbeatOutcome::Rebalance) => Beat::Rebalance,
                    Err(e) if e.is_fenced_member() => Beat::Fenced(e.to_string()),
                    Err(e) => {
                        tracing::warn!("heartbeat to group {group} failed: {e}; trying again");
                        continue;
                    }
                };
                let fenced = matches!(beat, Beat::Fenced(_));
                // Full: the worker has not taken the last ones in yet, and it acts on the first.
                let _ = tell.try_send(beat);
                if fenced {
                    return;
                }
            }
        });
        Heartbeats { task, heard }
    }

    /// The next thing heard (never returns while all is stable).
    async fn next(&mut self) -> Beat {
        match self.heard.recv().await {
            Some(beat) => beat,
            None => std::future::pending().await,
        }
    }

    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
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

/// What a worker does after one stretch of work.
enum Next {
    /// Every partition is done and the manifest is complete.
    Complete,
    /// Join the group again (a rebalance), keeping the partitions held.
    Rejoin,
    /// This worker was fenced: join again holding nothing.
    Fenced,
    /// Nothing left for this worker: wait for the others (or a rebalance).
    Idle,
    /// Shutdown was asked (SIGTERM).
    Shutdown,
}

/// Runs one worker of a snapshot backup shared through the group `workers.group`, until the
/// backup is complete or `shutdown` turns true. Returns what this worker stored, and the
/// backup's total records once complete.
pub async fn run(
    storage: Arc<dyn ObjectStorage>,
    options: BackupOptions,
    workers: WorkerOptions,
    metrics: Arc<BackupMetrics>,
    progress: Arc<dyn ProgressSink>,
    shutdown: watch::Receiver<bool>,
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
    if options.continuous {
        return Err(CliError::InvalidArgument {
            flag: "workers",
            message: "--workers shares a snapshot backup; --continuous with --workers is not supported yet".into(),
        });
    }
    let metrics_server = crate::metrics::serve_if_asked(options.metrics_addr.as_deref(), metrics.clone()).await?;
    let client = KafkaClient::connect(options.kafka.clone().with_events(metrics.client.clone())).await?;
    let mut worker = Worker {
        storage,
        client,
        options,
        workers,
        metrics: metrics.clone(),
        progress,
        shutdown,
        report: BackupReport::default(),
        backed_up: BTreeSet::new(),
        started: Instant::now(),
    };
    let result = worker.run().await;
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
    workers: WorkerOptions,
    metrics: Arc<BackupMetrics>,
    progress: Arc<dyn ProgressSink>,
    shutdown: watch::Receiver<bool>,
    report: BackupReport,
    /// Partitions this worker backed up some of.
    backed_up: BTreeSet<(TopicName, i32)>,
    started: Instant,
}

impl Worker {
    async fn run(&mut self) -> Result<BackupReport, CliError> {
        let backup_id = self.options.backup_id.clone();
        self.report.backup_id = backup_id.to_string();
        crate::prune::refuse_if_deleted(&self.storage, &backup_id).await?;
        refuse_if_single_writer(&self.storage, &backup_id).await?;
        let base = merge::load_manifest(&self.storage, &backup_id).await?.map(|(m, _)| m);
        let cut = match SnapshotCut::load(&self.storage, &backup_id).await? {
            Some(cut) => cut,
            None => self.take_cut(base.as_ref()).await?,
        };
        self.report.resumed = base.is_some();
        let merged = merge::merge(&self.storage, &cut).await?;
        if merged.complete {
            return Ok(self.finish(&merged));
        }
        let mut held: Vec<(String, i32)> = Vec::new();
        let config = MembershipConfig {
            group: self.workers.group.clone(),
            protocol_type: BACKUP_PROTOCOL_TYPE.into(),
            // Workers of another backup in the same group are refused by the coordinator
            // (INCONSISTENT_GROUP_PROTOCOL) instead of being handed this backup's partitions.
            protocol_name: format!("sticky-bytes/{backup_id}"),
            metadata: member_metadata(&held),
            session_timeout: self.workers.session_timeout,
            rebalance_timeout: self.workers.rebalance_timeout,
        };
        let assignor = self.assignor(&cut).await?;
        let mut membership = self
            .client
            .join_group(config, &assignor)
            .await
            .map_err(|e| group_error(&self.workers.group, e))?;
        let mut fencings = 0;
        loop {
            let assigned = assigned_partitions(&membership, &cut);
            held = assigned.iter().map(|(t, p)| (t.to_string(), *p)).collect();
            tracing::info!(
                member = membership.member_id(),
                generation = membership.generation(),
                leader = membership.is_leader(),
                "assigned {} partitions",
                assigned.len()
            );
            let leader = membership.is_leader();
            let owner = Owner {
                member_id: membership.member_id().to_string(),
                generation: membership.generation(),
                host: crate::lease::host_name(),
                pid: std::process::id(),
            };
            // Heartbeats run on a task of their own, so that no storage call of the work (a
            // slow store, a takeover) keeps them back past the session timeout.
            let shared = Arc::new(membership);
            let mut beats = Heartbeats::spawn(shared.clone(), self.workers.heartbeat_interval(), &self.workers.group);
            let mut next = if assigned.is_empty() {
                Ok(Next::Idle)
            } else {
                self.work(&mut beats, owner, &cut, base.as_ref(), &assigned).await
            };
            if matches!(next, Ok(Next::Idle)) {
                next = self.idle(&mut beats, &cut, leader).await;
            }
            beats.stop().await;
            membership = Arc::try_unwrap(shared).expect("the heartbeat task has stopped");
            let next = match next {
                Ok(next) => next,
                Err(e) => {
                    // The others take this worker's partitions at once instead of after the
                    // session timeout.
                    if let Err(leave) = membership.leave().await {
                        tracing::warn!("could not leave group {}: {leave}", self.workers.group);
                    }
                    return Err(e);
                }
            };
            match next {
                Next::Complete => {
                    let merged = merge::merge(&self.storage, &cut).await?;
                    if let Err(e) = membership.leave().await {
                        tracing::warn!("could not leave group {}: {e}", self.workers.group);
                    }
                    return Ok(self.finish(&merged));
                }
                Next::Shutdown => {
                    if let Err(e) = membership.leave().await {
                        tracing::warn!("could not leave group {}: {e}", self.workers.group);
                    }
                    let merged = merge::merge(&self.storage, &cut).await?;
                    if merged.complete {
                        return Ok(self.finish(&merged));
                    }
                    let progress = PartitionProgress::load_all(&self.storage, &backup_id).await?;
                    return Err(CliError::Interrupted {
                        backup_id: backup_id.to_string(),
                        partitions: merged.total - merged.done,
                        total_partitions: merged.total,
                        records_left: offsets_left(&cut, &progress),
                    });
                }
                Next::Fenced => {
                    fencings += 1;
                    if fencings > MAX_FENCINGS {
                        return Err(CliError::Fenced(format!(
                            "worker fenced {MAX_FENCINGS} times in a row in group {}: stopping",
                            self.workers.group
                        )));
                    }
                    held.clear();
                }
                Next::Rejoin | Next::Idle => fencings = 0,
            }
            membership.set_metadata(member_metadata(&held));
            let assignor = self.assignor(&cut).await?;
            membership
                .rejoin(&assignor)
                .await
                .map_err(|e| group_error(&self.workers.group, e))?;
        }
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

    /// The assignor with the current weights (used only if this member is elected leader).
    async fn assignor(&self, cut: &SnapshotCut) -> Result<BackupAssignor, CliError> {
        let progress = PartitionProgress::load_all(&self.storage, &cut.backup_id).await?;
        Ok(BackupAssignor {
            items: weights(cut, &progress),
        })
    }

    /// Takes the snapshot cut: the selected topics, each partition's log start and last stable
    /// offset, the consumer groups if asked; stored create-only, so the first worker's wins.
    async fn take_cut(&self, base: Option<&Manifest>) -> Result<SnapshotCut, CliError> {
        let metadata = self.client.metadata(None).await?;
        let source_cluster = SourceCluster {
            cluster_id: metadata.cluster_id.clone().unwrap_or_default(),
            bootstrap_servers: self.options.kafka.bootstrap_servers.clone(),
        };
        if let Some(base) = base {
            let (then, now) = (&base.source_cluster.cluster_id, &source_cluster.cluster_id);
            if !then.is_empty() && !now.is_empty() && then != now {
                return Err(CliError::SourceChanged(format!(
                    "backup {} holds cluster {then}, but this is cluster {now}: back it up under a new --backup-id",
                    self.options.backup_id
                )));
            }
            crate::encryption::check_continuation(
                self.options.backup_id.as_str(),
                base.encryption.as_ref(),
                self.options.encrypt_to.as_ref(),
            )?;
        }
        let selected: Vec<&kbs_kafka::TopicMetadata> = metadata
            .topics
            .iter()
            .filter(|t| self.options.topics.selects(&t.name, t.is_internal))
            .collect();
        let leaderless: Vec<String> = selected
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .filter(|p| p.leader < 0)
                    .map(|p| format!("{}/{}", t.name, p.partition))
            })
            .collect();
        if !leaderless.is_empty() {
            return Err(CliError::PartitionsWithoutLeader {
                backup_id: self.options.backup_id.to_string(),
                partitions: leaderless,
                waited_secs: 0,
            });
        }
        let names: Vec<&str> = selected.iter().map(|t| t.name.as_str()).collect();
        let configs = if names.is_empty() {
            BTreeMap::new()
        } else {
            self.client.describe_topic_configs(&names).await?
        };
        let partitions: Vec<(&str, i32)> = selected
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.name.as_str(), p.partition)))
            .collect();
        let query = |spec: OffsetSpec| partitions.iter().map(move |(t, p)| (*t, *p, spec)).collect::<Vec<_>>();
        let (starts, ends) = if partitions.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            (
                self.client.list_offsets(&query(OffsetSpec::Earliest)).await?,
                self.client.list_offsets(&query(OffsetSpec::LastStable)).await?,
            )
        };
        let offset = |answers: &[kbs_kafka::PartitionOffset], topic: &str, partition: i32| -> Result<i64, CliError> {
            answers
                .iter()
                .find(|o| o.topic == topic && o.partition == partition)
                .and_then(|o| o.offset)
                .ok_or_else(|| CliError::MissingAnswer {
                    api: "ListOffsets",
                    topic: topic.to_string(),
                    partition,
                })
        };
        let mut topics = Vec::new();
        for t in &selected {
            let mut numbers: Vec<i32> = t.partitions.iter().map(|p| p.partition).collect();
            numbers.sort_unstable();
            let mut cut_topic = CutTopic {
                name: TopicName::new(&t.name)?,
                topic_id: t.topic_id.clone(),
                configs: configs.get(&t.name).cloned().unwrap_or_default(),
                starts: Vec::new(),
                ends: Vec::new(),
            };
            for (index, partition) in numbers.into_iter().enumerate() {
                if partition != index as i32 {
                    return Err(CliError::Locked(format!(
                        "the cluster's metadata lists the partitions of {} with a hole at {index}; try again",
                        t.name
                    )));
                }
                cut_topic.starts.push(offset(&starts, &t.name, partition)?);
                cut_topic.ends.push(offset(&ends, &t.name, partition)?);
            }
            topics.push(cut_topic);
        }
        let consumer_groups = if self.options.consumer_groups {
            Some(crate::backup::capture_consumer_groups(&self.client, &names).await?)
        } else {
            None
        };
        let cut = SnapshotCut {
            backup_id: self.options.backup_id.clone(),
            created_at: base.map_or_else(crate::backup::now_utc, |m| m.created_at.clone()),
            source_cluster,
            compression: crate::backup::manifest_compression(&self.options),
            encryption: self
                .options
                .encrypt_to
                .as_ref()
                .map(|r| Encryption::to_recipients(r.to_strings())),
            consumer_groups,
            topics,
        };
        let stored = cut.store_once(&self.storage).await?;
        tracing::info!(
            "snapshot cut of backup {}: {} topics, {} partitions",
            stored.backup_id,
            stored.topics.len(),
            stored.partitions().count()
        );
        Ok(stored)
    }

    /// Backs up `assigned` while `beats` heartbeat; returns what to do next.
    async fn work(
        &mut self,
        beats: &mut Heartbeats,
        owner: Owner,
        cut: &SnapshotCut,
        base: Option<&Manifest>,
        assigned: &[(TopicName, i32)],
    ) -> Result<Next, CliError> {
        let ledger = match WorkerLedger::take_over(self.storage.clone(), &cut.backup_id, owner, assigned, base).await {
            Ok(ledger) => ledger,
            Err(CliError::Fenced(message)) => {
                tracing::warn!("{message}");
                return Ok(Next::Fenced);
            }
            Err(e) => return Err(e),
        };
        let ends: BTreeMap<(TopicName, i32), i64> = ledger
            .progress()
            .filter(|p| !p.done)
            .filter_map(|p| {
                cut.end(p.topic.as_str(), p.partition)
                    .map(|end| ((p.topic.clone(), p.partition), end))
            })
            .collect();
        if ends.is_empty() {
            return Ok(Next::Idle);
        }
        self.backed_up.extend(ends.keys().cloned());
        let state = BackupState::for_worker(self.storage.clone(), cut, ledger)?;
        let (stop, stopped) = watch::channel(false);
        let fenced = Arc::new(AtomicBool::new(false));
        let run = crate::backup::run_assignment(
            self.storage.clone(),
            self.client.clone(),
            self.options.clone(),
            state,
            Assignment {
                ends,
                fenced: fenced.clone(),
            },
            self.progress.clone(),
            self.metrics.clone(),
            stopped,
        );
        tokio::pin!(run);
        let mut merge_tick = tokio::time::interval(WORKING_MERGE_INTERVAL);
        merge_tick.tick().await;
        let mut next: Option<Next> = None;
        let mut listening = true;
        let result = loop {
            tokio::select! {
                result = &mut run => break result,
                beat = beats.next() => match beat {
                    Beat::Rebalance => {
                        if next.is_none() {
                            tracing::info!("group {} is rebalancing: finishing open segments", self.workers.group);
                            next = Some(Next::Rejoin);
                            let _ = stop.send(true);
                        }
                    }
                    Beat::Fenced(why) => {
                        if !matches!(next, Some(Next::Fenced) | Some(Next::Shutdown)) {
                            tracing::warn!(
                                "dropped from group {} ({why}): its partitions are another worker's now; stopping",
                                self.workers.group
                            );
                            fenced.store(true, Ordering::SeqCst);
                            next = Some(Next::Fenced);
                            let _ = stop.send(true);
                        }
                    }
                },
                _ = merge_tick.tick() => {
                    if let Err(e) = merge::merge(&self.storage, cut).await {
                        tracing::warn!("could not merge progress into the manifest: {e}");
                    }
                }
                changed = self.shutdown.changed(), if listening => {
                    if changed.is_err() || *self.shutdown.borrow() {
                        listening = changed.is_ok();
                        if changed.is_ok() && next.is_none() {
                            tracing::info!("shutdown requested: finishing open segments and leaving the group");
                            next = Some(Next::Shutdown);
                            let _ = stop.send(true);
                        }
                    }
                }
            }
        };
        match result {
            Ok(report) => self.add_report(&report),
            Err(CliError::Interrupted { .. }) if next.is_some() => {}
            // Refused commits: another worker owns (some of) these partitions now.
            Err(CliError::Fenced(message)) | Err(CliError::Locked(message)) => {
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
                let merged = merge::merge(&self.storage, cut).await?;
                if merged.complete { Next::Complete } else { Next::Idle }
            }
        })
    }

    /// Waits with nothing to do: heartbeats, and merges every few seconds until the backup is
    /// complete or the group rebalances.
    ///
    /// The group's leader merges at every tick; the others only read the manifest's status,
    /// and merge at every tenth tick (so that a backup whose last worker died right after its
    /// last commit still completes, while the leader is being replaced). Merging reads every
    /// progress object, so it is left to one worker.
    async fn idle(&mut self, beats: &mut Heartbeats, cut: &SnapshotCut, leader: bool) -> Result<Next, CliError> {
        let mut merge_tick = tokio::time::interval(IDLE_MERGE_INTERVAL);
        let mut ticks: u64 = 0;
        let mut listening = true;
        loop {
            tokio::select! {
                beat = beats.next() => return Ok(match beat {
                    Beat::Rebalance => Next::Rejoin,
                    Beat::Fenced(_) => Next::Fenced,
                }),
                _ = merge_tick.tick() => {
                    ticks += 1;
                    if !leader && ticks % 10 != 1 {
                        let complete = merge::load_manifest(&self.storage, &cut.backup_id)
                            .await?
                            .is_some_and(|(m, _)| m.is_complete());
                        if complete {
                            return Ok(Next::Complete);
                        }
                        continue;
                    }
                    let merged = merge::merge(&self.storage, cut).await?;
                    self.progress.report(&crate::backup::Progress {
                        records: self.report.records,
                        bytes_in: self.report.bytes_in,
                        bytes_out: self.report.bytes_out,
                        remaining_offsets: None,
                        partitions_done: merged.done as u64,
                        partitions_total: merged.total as u64,
                        elapsed: self.started.elapsed(),
                    });
                    if merged.complete {
                        return Ok(Next::Complete);
                    }
                }
                changed = self.shutdown.changed(), if listening => {
                    listening = changed.is_ok();
                    if changed.is_ok() && *self.shutdown.borrow() {
                        return Ok(Next::Shutdown);
                    }
                }
            }
        }
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

fn member_metadata(held: &[(String, i32)]) -> Bytes {
    Bytes::from(serde_json::to_vec(&MemberMetadata { held: held.to_vec() }).expect("metadata serialises"))
}

/// This member's partitions (those of the cut; an assignment that cannot be read is none).
fn assigned_partitions(membership: &Membership, cut: &SnapshotCut) -> Vec<(TopicName, i32)> {
    let assignment: MemberAssignment = match serde_json::from_slice(membership.assignment()) {
        Ok(a) => a,
        Err(e) => {
            if !membership.assignment().is_empty() {
                tracing::warn!("unreadable assignment from the group's leader ({e}): taking none");
            }
            return Vec::new();
        }
    };
    assignment
        .partitions
        .into_iter()
        .filter(|(t, p)| cut.end(t, *p).is_some())
        .filter_map(|(t, p)| TopicName::new(&t).ok().map(|t| (t, p)))
        .collect()
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

fn group_error(group: &str, e: kbs_kafka::Error) -> CliError {
    if let kbs_kafka::Error::Group { code, .. } = &e
        && code.0 == 23
    {
        return CliError::Locked(format!(
            "group {group} is used by workers of another backup (or by consumers): give each backup's workers a \
             group of their own ({e})"
        ));
    }
    e.into()
}
