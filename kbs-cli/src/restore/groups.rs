//! Consumer-group offsets: which committed source offsets a restore moves, how each translates
//! to the target offset of the first restored record at or after it, and committing them.

use super::*;

/// The committed offsets of the groups being moved, for one source partition.
pub(super) fn group_offsets(
    manifest: &Manifest,
    options: &RestoreOptions,
    topic: &str,
    partition: i32,
) -> std::collections::BTreeSet<i64> {
    let (Some(wanted), Some(groups)) = (&options.consumer_groups, &manifest.consumer_groups) else {
        return Default::default();
    };
    groups
        .iter()
        .filter(|(group, _)| wanted.is_empty() || wanted.contains(group))
        .filter_map(|(_, topics)| topics.get(topic)?.get(&partition).map(|c| c.offset))
        .collect()
}

/// The group offsets of the manifest that this restore moves, before translation.
pub(super) fn planned_group_moves(
    manifest: &Manifest,
    options: &RestoreOptions,
    plans: &[PartitionPlan],
) -> Vec<GroupMove> {
    let Some(wanted) = &options.consumer_groups else {
        return Vec::new();
    };
    let Some(groups) = &manifest.consumer_groups else {
        return Vec::new();
    };
    let mut moves = Vec::new();
    for (group, topics) in groups {
        if !wanted.is_empty() && !wanted.contains(group) {
            continue;
        }
        for (topic, partitions) in topics {
            for (partition, committed) in partitions {
                let Some(p) = plans
                    .iter()
                    .find(|p| p.topic == topic.as_str() && p.partition == *partition)
                else {
                    continue;
                };
                moves.push(GroupMove {
                    group: group.clone(),
                    source: partition_key(topic.as_str(), *partition),
                    source_offset: committed.offset,
                    target: partition_key(&p.target_topic, p.target_partition),
                    target_offset: None,
                    status: "planned".into(),
                });
            }
        }
    }
    moves
}

pub(super) async fn commit_groups(
    shared: &Shared,
    client: &KafkaClient,
    moves: Vec<GroupMove>,
) -> Result<Vec<GroupMove>, CliError> {
    let mut by_group: BTreeMap<String, Vec<GroupMove>> = BTreeMap::new();
    {
        let guard = shared.progress.lock().await;
        for mut m in moves {
            if let Some(offset) = reshape::translated_offset(&guard.0, &m) {
                m.target_offset = Some(offset);
                by_group.entry(m.group.clone()).or_default().push(m);
                continue;
            }
            let Some(p) = guard.0.partitions.get(&m.source) else {
                continue;
            };
            // The first restored record at or after the committed offset; past the last restored
            // record, the partition's end.
            m.target_offset = Some(
                p.first_target_at_or_after(m.source_offset)
                    .unwrap_or(p.next_target_offset),
            );
            by_group.entry(m.group.clone()).or_default().push(m);
        }
    }
    let mut done = Vec::new();
    for (group, mut moves) in by_group {
        let offsets: Vec<kbs_kafka::CommittedOffset> = moves
            .iter()
            .map(|m| {
                let (topic, partition) = m.target.rsplit_once('/').expect("topic/partition");
                kbs_kafka::CommittedOffset::new(topic, partition.parse().unwrap_or(0), m.target_offset.unwrap_or(0))
            })
            .collect();
        let status = match client.commit_offsets(&group, &offsets).await {
            Ok(()) => {
                let mut guard = shared.progress.lock().await;
                let entry = guard.0.groups.entry(group.clone()).or_default();
                for m in &moves {
                    entry.insert(m.target.clone(), m.target_offset.unwrap_or(0));
                }
                "committed".to_string()
            }
            Err(kbs_kafka::Error::GroupActive { state, members, .. }) => {
                format!("not touched: the group is {state} with {members} active member(s)")
            }
            Err(e) => return Err(e.into()),
        };
        for m in &mut moves {
            m.status = status.clone();
        }
        done.extend(moves);
    }
    Ok(done)
}
