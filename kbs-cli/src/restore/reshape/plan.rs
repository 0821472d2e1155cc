//! Planning a reshaped topic: which source topics are repartitioned into which target, the
//! target's partition count, and where each target partition starts (or what an earlier run
//! recorded of it).

use super::*;

/// A source topic restored into another partitioning.
#[derive(Debug, Clone)]
pub(crate) struct ReshapePlan {
    /// The source topic.
    pub(crate) topic: String,
    /// The target topic.
    pub(crate) target_topic: String,
    /// The target topic's partition count.
    pub(crate) target_partitions: i32,
    /// The plans of the source partitions that hold selected records.
    pub(crate) sources: Vec<PartitionPlan>,
}

/// The source topics the plans restore into another partitioning (target partition counts
/// still unknown: `0`). Two source topics into one target topic are refused: each target
/// partition must be written by one sequence.
pub(crate) fn reshape_plans(plans: &[PartitionPlan], options: &RestoreOptions) -> Result<Vec<ReshapePlan>, CliError> {
    if !options.repartition.reshapes() {
        return Ok(Vec::new());
    }
    let mut by_topic: BTreeMap<String, ReshapePlan> = BTreeMap::new();
    for p in plans {
        by_topic
            .entry(p.topic.clone())
            .or_insert_with(|| ReshapePlan {
                topic: p.topic.clone(),
                target_topic: p.target_topic.clone(),
                target_partitions: 0,
                sources: Vec::new(),
            })
            .sources
            .push(p.clone());
    }
    let mut targets: BTreeMap<&str, &str> = BTreeMap::new();
    for r in by_topic.values() {
        if let Some(other) = targets.insert(&r.target_topic, &r.topic) {
            return Err(CliError::InvalidArgument {
                flag: "topic-map",
                message: format!(
                    "{other} and {} would both be repartitioned into {}: a repartitioned target takes one source \
                     topic (restore them into different topics)",
                    r.topic, r.target_topic
                ),
            });
        }
    }
    Ok(by_topic.into_values().collect())
}

/// The partition count of a repartitioned target topic: the existing topic's, or
/// `--partitions` for one `--create-topics` creates.
pub(crate) fn target_partition_count(
    options: &RestoreOptions,
    target_topic: &str,
    existing: Option<i32>,
) -> Result<i32, CliError> {
    match (existing, options.target_partitions) {
        (Some(have), Some(wanted)) if have != wanted => Err(CliError::InvalidArgument {
            flag: "partitions",
            message: format!(
                "target topic {target_topic} exists with {have} partitions, not {wanted}; leave --partitions out to \
                 repartition into its {have}, or restore into another topic"
            ),
        }),
        (Some(have), _) => Ok(have),
        (None, Some(wanted)) => Ok(wanted),
        (None, None) => Err(CliError::InvalidArgument {
            flag: "partitions",
            message: format!(
                "target topic {target_topic} does not exist: repartitioning needs its partition count; pass \
                 --partitions N with --create-topics, or create it first"
            ),
        }),
    }
}

/// Records where each target partition of the reshaped topics starts before anything is
/// produced, or checks an earlier run's record against the targets (the same shape, the same
/// topic, logs that still reach what was written). A non-empty target this restore did not
/// write is refused unless `--allow-non-empty`.
pub(crate) async fn record_start_positions(
    shared: &Shared,
    client: &KafkaClient,
    reshapes: &[ReshapePlan],
    target_ids: &BTreeMap<String, Option<String>>,
) -> Result<(), CliError> {
    let options = &shared.options;
    for r in reshapes {
        let now_id = target_ids.get(&r.target_topic).cloned().flatten();
        let recorded = shared.progress.lock().await.0.reshaped.get(&r.topic).cloned();
        if let Some(recorded) = recorded {
            let shape = (
                recorded.repartition.as_str(),
                recorded.target_partitions,
                recorded.target_topic.as_str(),
            );
            if shape != (options.repartition.name(), r.target_partitions, r.target_topic.as_str()) {
                return Err(CliError::InvalidArgument {
                    flag: "restore-id",
                    message: format!(
                        "restore {} wrote {} into {} repartitioned by {} into {} partitions; this run asks for {} by \
                         {} into {} partitions. Resume it with the same options, or restore with a new --restore-id",
                        options.restore_id,
                        r.topic,
                        recorded.target_topic,
                        recorded.repartition,
                        recorded.target_partitions,
                        r.target_topic,
                        options.repartition.name(),
                        r.target_partitions
                    ),
                });
            }
            for (partition, target) in &recorded.targets {
                check_target_unchanged(
                    client,
                    options,
                    (&r.target_topic, *partition),
                    target,
                    now_id.as_deref(),
                )
                .await?;
            }
            continue;
        }
        let mut targets = BTreeMap::new();
        for partition in 0..r.target_partitions {
            let (target_end, target_start) = target_bounds(client, &r.target_topic, partition).await?;
            if target_end > target_start && !options.allow_non_empty {
                let partition_of = (r.target_topic.as_str(), partition);
                return Err(non_empty_target(&shared.storage, options, partition_of, target_start, target_end).await);
            }
            targets.insert(
                partition,
                PartitionProgress {
                    target_topic: r.target_topic.clone(),
                    target_partition: partition,
                    target_topic_id: now_id.clone(),
                    next_target_offset: target_end,
                    ..Default::default()
                },
            );
        }
        shared.progress.lock().await.0.reshaped.insert(
            r.topic.clone(),
            ReshapedProgress {
                target_topic: r.target_topic.clone(),
                repartition: options.repartition.name().to_owned(),
                target_partitions: r.target_partitions,
                targets,
                ..Default::default()
            },
        );
    }
    Ok(())
}
