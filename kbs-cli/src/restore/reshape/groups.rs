//! Consumer groups of a reshaped topic: their committed source offsets, the moves a restore
//! plans, and the target offset each commits (the first record of the target partition the
//! group had not consumed).

use super::*;

/// Per moved group, its committed offsets on `topic`'s source partitions.
pub(crate) fn group_commits(
    manifest: &Manifest,
    options: &RestoreOptions,
    topic: &str,
) -> BTreeMap<String, BTreeMap<i32, i64>> {
    let (Some(wanted), Some(groups)) = (&options.consumer_groups, &manifest.consumer_groups) else {
        return BTreeMap::new();
    };
    groups
        .iter()
        .filter(|(group, _)| wanted.is_empty() || wanted.contains(group))
        .filter_map(|(group, topics)| {
            let commits: BTreeMap<i32, i64> = topics.get(topic)?.iter().map(|(p, c)| (*p, c.offset)).collect();
            Some((group.clone(), commits))
        })
        .collect()
}

/// The group moves of the reshaped topics: per moved group with offsets on the source topic,
/// one per target partition.
pub(crate) fn planned_group_moves(
    manifest: &Manifest,
    options: &RestoreOptions,
    reshapes: &[ReshapePlan],
) -> Vec<GroupMove> {
    let mut moves = Vec::new();
    for r in reshapes {
        for group in group_commits(manifest, options, &r.topic).into_keys() {
            for partition in 0..r.target_partitions {
                moves.push(GroupMove {
                    group: group.clone(),
                    source: format!("{}/*", r.topic),
                    source_offset: -1,
                    target: partition_key(&r.target_topic, partition),
                    target_offset: None,
                    status: "planned".into(),
                });
            }
        }
    }
    moves
}

/// The target offset a reshaped topic's group move commits: the first record of the target
/// partition that the group had not consumed in the source, or the partition's end when it
/// consumed everything restored there. `None` for a move of a one-to-one topic.
pub(crate) fn translated_offset(progress: &RestoreProgress, m: &GroupMove) -> Option<i64> {
    let topic = m.source.strip_suffix("/*")?;
    let r = progress.reshaped.get(topic)?;
    let partition: i32 = m.target.rsplit_once('/')?.1.parse().ok()?;
    let first_unconsumed = r.groups.get(&m.group).and_then(|g| g.get(&partition)).copied();
    first_unconsumed.or_else(|| r.targets.get(&partition).map(|t| t.next_target_offset))
}
