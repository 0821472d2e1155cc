//! What a reshaped topic's restore planned (a dry run reads the segments and routes every
//! record) or wrote, per target partition.

use super::*;

/// What a repartitioned topic's restore planned or did, per target partition.
#[derive(Debug, Clone, Serialize)]
pub struct ReshapedTopic {
    /// Source topic.
    pub topic: String,
    /// Target topic.
    pub target_topic: String,
    /// How records are placed.
    pub repartition: Repartition,
    /// Source partitions with selected records.
    pub source_partitions: usize,
    /// The target topic's partition count.
    pub target_partitions: i32,
    /// Per target partition, in partition order: records and key and value bytes. In a dry run,
    /// what the restore will write (counted by reading the segments); after a restore, what the
    /// restore (all its runs) wrote.
    pub per_target: Vec<TargetShare>,
}

/// Records and bytes of one target partition.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct TargetShare {
    /// The target partition.
    pub partition: i32,
    /// Records.
    pub records: u64,
    /// Key and value bytes.
    pub bytes: u64,
}

/// What a dry run shows of a reshaped topic: every selected record routed (the segments are
/// read and verified), counted per target partition.
pub(crate) async fn planned_shares(shared: &Shared, plan: &ReshapePlan) -> Result<ReshapedTopic, CliError> {
    let options = &shared.options;
    let mut per_target: Vec<TargetShare> = (0..plan.target_partitions)
        .map(|partition| TargetShare {
            partition,
            ..Default::default()
        })
        .collect();
    let share = options.memory_budget / options.parallelism.max(1) as u64;
    for source in &plan.sources {
        let mut records = SourceRecords::new(shared, source, i64::MIN, share)?;
        while let Some(item) = records.next().await? {
            let SourceItem::Record(record) = item else { continue };
            let target = options.repartition.target_partition(
                record.key.as_deref(),
                source.partition,
                record.offset,
                plan.target_partitions,
            );
            let produced = produce_record(&record, source.partition, options.include_offset_headers);
            let t = &mut per_target[target as usize];
            t.records += 1;
            t.bytes += record_bytes(&produced);
        }
    }
    Ok(reshaped_topic(plan, options, per_target))
}

/// What the restore of a reshaped topic wrote, from its progress.
pub(crate) fn restored_shares(
    progress: &RestoreProgress,
    plan: &ReshapePlan,
    options: &RestoreOptions,
) -> ReshapedTopic {
    let per_target = (0..plan.target_partitions)
        .map(|partition| {
            let t = progress
                .reshaped
                .get(&plan.topic)
                .and_then(|r| r.targets.get(&partition));
            TargetShare {
                partition,
                records: t.map_or(0, |t| t.records),
                bytes: t.map_or(0, |t| t.bytes),
            }
        })
        .collect();
    reshaped_topic(plan, options, per_target)
}

fn reshaped_topic(plan: &ReshapePlan, options: &RestoreOptions, per_target: Vec<TargetShare>) -> ReshapedTopic {
    ReshapedTopic {
        topic: plan.topic.clone(),
        target_topic: plan.target_topic.clone(),
        repartition: options.repartition,
        source_partitions: plan.sources.len(),
        target_partitions: plan.target_partitions,
        per_target,
    }
}
