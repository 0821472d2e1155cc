//! Before anything is produced: the target topics created or checked, the progress of an
//! earlier run loaded, and where each partition starts in its target recorded (or the target
//! checked against what an earlier run recorded).

use super::*;

/// Creates the target topics that are missing (with `--create-topics`) or checks that the
/// existing ones have the partitions the restore needs, and returns the configs in effect on
/// every target (broker-wide defaults included). Warns when restored records are older than a
/// target keeps.
pub(super) async fn prepare_targets(
    client: &KafkaClient,
    options: &RestoreOptions,
    plans: &[PartitionPlan],
    needed: &BTreeMap<String, Needs>,
    existing: &BTreeMap<String, i32>,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, CliError> {
    // Preflight: create or check target topics.
    let mut to_create = Vec::new();
    for (name, (partitions_needed, source_count, configs)) in needed {
        match existing.get(name) {
            Some(&have) if have < *partitions_needed => {
                return Err(CliError::InvalidArgument {
                    flag: "partition-map",
                    message: format!(
                        "target topic {name} has {have} partitions; the restore needs {partitions_needed}"
                    ),
                });
            }
            Some(_) => {}
            None if options.create_topics => {
                let count = (*partitions_needed).max(source_count.map_or(0, |c| c as i32));
                let mut topic = NewTopic::new(name.clone(), count);
                topic.replication_factor = options.replication_factor;
                topic.configs = configs.clone();
                to_create.push(topic);
            }
            None => {
                return Err(CliError::InvalidArgument {
                    flag: "create-topics",
                    message: format!("target topic {name} does not exist; create it or pass --create-topics"),
                });
            }
        }
    }
    if !to_create.is_empty() {
        client.create_topics(&to_create).await?;
    }
    // The configs in effect on the targets (a broker-wide message.max.bytes included).
    let names: Vec<&str> = needed.keys().map(String::as_str).collect();
    let configs = if names.is_empty() {
        BTreeMap::new()
    } else {
        client.describe_effective_topic_configs(&names).await?
    };
    warn_of_retention(plans, &configs, now_ms());
    Ok(configs)
}

/// The progress document of an earlier run of this restore id (and its version, for
/// compare-and-swap), or a new one.
pub(super) async fn load_progress(
    storage: &Arc<dyn ObjectStorage>,
    options: &RestoreOptions,
) -> Result<(RestoreProgress, Option<ObjectVersion>), CliError> {
    // Progress of an earlier run of this restore id.
    let progress_key = format!(
        "{}restores/{}/progress.json",
        layout::backup_prefix(&options.backup_id),
        options.restore_id
    );
    Ok(match storage.get(&progress_key).await {
        Ok(got) => {
            let progress: RestoreProgress = serde_json::from_slice(&got.bytes).map_err(|e| CliError::Unparsable {
                key: progress_key.clone(),
                message: e.to_string(),
            })?;
            (progress, Some(got.meta.version))
        }
        Err(e) if e.is_not_found() => (
            RestoreProgress {
                restore_id: options.restore_id.clone(),
                backup_id: options.backup_id.to_string(),
                ..Default::default()
            },
            None,
        ),
        Err(e) => return Err(e.into()),
    })
}

/// Records where each partition starts in its target before anything is produced, so an
/// interrupted run is always resumed from the progress document; a partition an earlier run
/// recorded is checked against its target instead. A non-empty target this restore did not
/// write is refused unless `--allow-non-empty`.
pub(super) async fn record_start_positions(
    shared: &Shared,
    client: &KafkaClient,
    storage: &Arc<dyn ObjectStorage>,
    options: &RestoreOptions,
    plans: &[PartitionPlan],
    reshapes: &[reshape::ReshapePlan],
) -> Result<(), CliError> {
    // The target topics as they are now: a rerun must find the topics it wrote, as long as it
    // left them.
    let target_names: Vec<&str> = plans.iter().map(|p| p.target_topic.as_str()).collect();
    let target_ids: BTreeMap<String, Option<String>> = if target_names.is_empty() {
        BTreeMap::new()
    } else {
        client
            .metadata(Some(&target_names))
            .await?
            .topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    };
    // Where each partition starts in its target, recorded before anything is produced, so an
    // interrupted run is always resumed from the progress document.
    reshape::record_start_positions(shared, client, reshapes, &target_ids).await?;
    for p in plans.iter().filter(|_| !options.repartition.reshapes()) {
        let key = partition_key(&p.topic, p.partition);
        let now_id = target_ids.get(&p.target_topic).cloned().flatten();
        let recorded = shared.progress.lock().await.0.partitions.get(&key).cloned();
        if let Some(recorded) = recorded {
            check_target_unchanged(
                client,
                options,
                (&p.target_topic, p.target_partition),
                &recorded,
                now_id.as_deref(),
            )
            .await?;
            continue;
        }
        let (target_end, target_start) = target_bounds(client, &p.target_topic, p.target_partition).await?;
        if target_end > target_start && !options.allow_non_empty {
            let partition_of = (p.target_topic.as_str(), p.target_partition);
            return Err(non_empty_target(storage, options, partition_of, target_start, target_end).await);
        }
        shared.progress.lock().await.0.partitions.insert(
            key,
            PartitionProgress {
                target_topic: p.target_topic.clone(),
                target_partition: p.target_partition,
                target_topic_id: now_id,
                next_target_offset: target_end,
                ..Default::default()
            },
        );
    }
    Ok(())
}

/// The refusal of a target partition that holds records (offsets `start..end`) this restore did
/// not write, naming earlier restores of the backup into the topic that could be resumed.
pub(super) async fn non_empty_target(
    storage: &Arc<dyn ObjectStorage>,
    options: &RestoreOptions,
    (topic, partition): (&str, i32),
    start: i64,
    end: i64,
) -> CliError {
    let others = restores_into(storage, options, topic).await;
    let resume = if others.is_empty() {
        String::new()
    } else {
        format!(
            " Earlier restores of this backup wrote to {topic}: {} — to resume one, rerun it with --restore-id ID.",
            others.join(", ")
        )
    };
    CliError::InvalidArgument {
        flag: "allow-non-empty",
        message: format!(
            "target partition {topic}/{partition} already holds records (offsets {start}..{}) that restore {} did not \
             write.{resume} Otherwise restore into an empty topic. (--allow-non-empty appends the backup's records \
             after what is there: any of them already in the topic are then written twice.)",
            end - 1,
            options.restore_id
        ),
    }
}
