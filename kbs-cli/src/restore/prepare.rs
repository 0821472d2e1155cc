//! Everything a restore decides before it writes: the manifest read and checked, the plan, the
//! restore id, the target topics needed, and the consumer-group offsets to move. A single run
//! and every worker of a shared restore prepare alike.

use super::*;

/// A restore planned and connected, ready to produce (or to report, for a dry run).
pub(crate) struct Prepared {
    /// The options, with the restore id settled.
    pub(super) options: RestoreOptions,
    /// What to restore, per source partition.
    pub(super) plans: Vec<PartitionPlan>,
    /// Topics restored into another partitioning.
    pub(super) reshapes: Vec<reshape::ReshapePlan>,
    /// Per reshaped topic, the group offsets to move.
    pub(super) group_commits: GroupCommits,
    /// What each target topic needs.
    pub(super) needed: BTreeMap<String, Needs>,
    /// The target topics that exist, with their partition counts.
    pub(super) existing: BTreeMap<String, i32>,
    /// The target cluster.
    pub(super) client: KafkaClient,
    /// The consumer-group offsets to move.
    pub(super) group_moves: Vec<GroupMove>,
    /// The report so far.
    pub(super) report: RestoreReport,
    /// When the restore started.
    pub(super) started: Instant,
}

/// Prepares a restore of `options.backup_id` (see the module docs).
pub(super) async fn prepare(
    storage: &Arc<dyn ObjectStorage>,
    mut options: RestoreOptions,
    metrics: &Arc<RestoreMetrics>,
    progress: &Arc<dyn crate::backup::ProgressSink>,
) -> Result<Prepared, CliError> {
    let started = Instant::now();
    crate::prune::refuse_if_deleted(storage, &options.backup_id).await?;
    let manifest_key = layout::manifest_key(&options.backup_id);
    let manifest = match storage.get(&manifest_key).await {
        Ok(got) => load_manifest_sync(&got.bytes, &manifest_key)?,
        Err(e) if e.is_not_found() => {
            return Err(CliError::BackupNotFound {
                backup_id: options.backup_id.to_string(),
                storage: storage.describe().to_string(),
                key: manifest_key,
            });
        }
        Err(e) => return Err(e.into()),
    };
    if !manifest.is_complete() {
        if !options.allow_incomplete {
            return Err(CliError::Incomplete {
                backup_id: options.backup_id.to_string(),
                status: crate::list::status_name(&manifest).to_owned(),
            });
        }
        tracing::warn!(
            "backup {} is not complete (--allow-incomplete); restoring what it holds so far",
            options.backup_id
        );
    }
    // An encrypted backup needs one of its recipients' keys: say so before any work (a dry
    // run reads only the manifest, which needs none).
    if !options.dry_run {
        crate::encryption::identities_for(&manifest, options.identities.as_ref())?;
    }
    let plans = plan(&manifest, &options);
    let mut report = RestoreReport {
        restore_id: options.restore_id.clone(),
        backup_id: options.backup_id.to_string(),
        dry_run: options.dry_run,
        partitions: plans.clone(),
        ..Default::default()
    };
    // One source partition per target partition: resuming without duplicates relies on each
    // target partition being written by one ordered stream.
    let mut targets_seen = BTreeMap::new();
    for p in plans.iter().filter(|_| !options.repartition.reshapes()) {
        if let Some(other) = targets_seen.insert(
            (p.target_topic.clone(), p.target_partition),
            (p.topic.clone(), p.partition),
        ) {
            return Err(CliError::InvalidArgument {
                flag: "partition-map",
                message: format!(
                    "{}/{} and {}/{} would both be restored into {}/{}; map them to different partitions",
                    other.0, other.1, p.topic, p.partition, p.target_topic, p.target_partition
                ),
            });
        }
    }
    for (topic, partition) in options.start_offsets.keys().chain(options.end_offsets.keys()) {
        if manifest.topic(topic).and_then(|t| t.partition(*partition)).is_none() {
            return Err(CliError::InvalidArgument {
                flag: "start-offset",
                message: format!("the backup holds no partition {topic}:{partition}"),
            });
        }
    }

    let client = KafkaClient::connect(options.kafka.clone().with_events(metrics.client.clone())).await?;
    let cluster_id = client.metadata(Some(&[])).await?.cluster_id.unwrap_or_default();
    if options.restore_id.is_empty() {
        options.restore_id = default_restore_id(&options, &cluster_id);
        report.restore_id = options.restore_id.clone();
    }
    progress.note(&format!(
        "restore {} of backup {} into cluster {}{}",
        options.restore_id,
        options.backup_id,
        if cluster_id.is_empty() { "(no id)" } else { &cluster_id },
        if options.dry_run {
            String::new()
        } else {
            format!(
                "; rerunning this command (or one with --restore-id {}) resumes it",
                options.restore_id
            )
        }
    ));
    // Target topics: which exist, how many partitions they need.
    let mut needed: BTreeMap<String, Needs> = BTreeMap::new();
    // Every selected topic, even one without records (an empty topic is restored empty).
    for topic in manifest
        .topics
        .iter()
        .filter(|t| options.topics.selects(t.name.as_str(), false))
    {
        let target = options
            .topic_map
            .get(topic.name.as_str())
            .cloned()
            .unwrap_or_else(|| topic.name.to_string());
        needed.entry(target).or_insert_with(|| {
            (
                topic.partition_count.map_or(0, |c| c as i32),
                topic.partition_count,
                topic.configs.clone().unwrap_or_default(),
            )
        });
    }
    let mut reshapes = reshape::reshape_plans(&plans, &options)?;
    for p in plans.iter().filter(|_| !options.repartition.reshapes()) {
        let source = manifest.topic(&p.topic);
        let entry = needed.entry(p.target_topic.clone()).or_insert_with(|| {
            (
                0,
                source.and_then(|t| t.partition_count),
                source.and_then(|t| t.configs.clone()).unwrap_or_default(),
            )
        });
        entry.0 = entry.0.max(p.target_partition + 1);
    }
    let names: Vec<&str> = needed.keys().map(String::as_str).collect();
    let mut existing: BTreeMap<String, i32> = BTreeMap::new();
    if !names.is_empty() {
        let metadata = client.metadata(None).await?;
        for t in metadata.topics {
            if needed.contains_key(&t.name) {
                existing.insert(t.name.clone(), t.partitions.len() as i32);
            }
        }
    }
    // A repartitioned target has the partitions it has, or `--partitions` when created; its
    // topic selected without records too.
    if options.repartition.reshapes() {
        for (name, needs) in needed.iter_mut() {
            needs.0 = reshape::target_partition_count(&options, name, existing.get(name).copied())?;
            needs.1 = None;
        }
        for r in &mut reshapes {
            r.target_partitions = needed[&r.target_topic].0;
        }
    }
    for (name, (partitions_needed, source_count, _)) in &needed {
        report.targets.push(TargetTopic {
            name: name.clone(),
            partitions_needed: *partitions_needed,
            source_partition_count: *source_count,
            exists: existing.contains_key(name),
            existing_partitions: existing.get(name).copied(),
        });
    }
    let mut group_moves = planned_group_moves(&manifest, &options, &plans);
    group_moves.extend(reshape::planned_group_moves(&manifest, &options, &reshapes));
    let group_commits: BTreeMap<String, _> = reshapes
        .iter()
        .map(|r| (r.topic.clone(), reshape::group_commits(&manifest, &options, &r.topic)))
        .collect();
    Ok(Prepared {
        options,
        plans,
        reshapes,
        group_commits,
        needed,
        existing,
        client,
        group_moves,
        report,
        started,
    })
}
