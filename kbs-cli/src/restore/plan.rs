//! The restore plan, made from the manifest alone: for each selected source partition, the
//! segments whose offset range and min/max timestamps can hold selected records, its target
//! topic and partition, and the offsets at which produced batches are split for consumer groups.

use super::*;

/// One source partition's plan.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionPlan {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Target topic.
    pub target_topic: String,
    /// Target partition (`-1` when the topic is repartitioned: its records spread over the
    /// target's partitions).
    pub target_partition: i32,
    /// Segments that can hold selected records.
    pub segments: Vec<String>,
    /// Records in those segments (an upper bound of what is restored).
    pub estimated_records: u64,
    /// Bytes of those segments.
    pub estimated_bytes: u64,
    /// First source offset to restore.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_offset: Option<i64>,
    /// Last source offset to restore.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_offset: Option<i64>,
    #[serde(skip)]
    pub(super) files: Vec<SegmentFile>,
    /// Source offsets where a produced batch must start: the committed offsets of the consumer
    /// groups being moved, so each group resumes at a batch boundary (some brokers, tansu among
    /// them, serve nothing when asked to fetch from the middle of a batch).
    #[serde(skip)]
    pub(super) split_points: std::collections::BTreeSet<i64>,
}

/// Chooses, from the manifest alone, the segments that can hold selected records.
pub fn plan(manifest: &Manifest, options: &RestoreOptions) -> Vec<PartitionPlan> {
    let mut plans = Vec::new();
    for topic in &manifest.topics {
        if !options.topics.selects(topic.name.as_str(), false) {
            continue;
        }
        let target_topic = options
            .topic_map
            .get(topic.name.as_str())
            .cloned()
            .unwrap_or_else(|| topic.name.to_string());
        for partition in &topic.partitions {
            let key = (topic.name.to_string(), partition.partition);
            let start = options.start_offsets.get(&key).copied();
            let end = options.end_offsets.get(&key).copied();
            let files: Vec<SegmentFile> = partition
                .segment_files
                .iter()
                .filter(|f| start.is_none_or(|s| f.last_offset >= s))
                .filter(|f| end.is_none_or(|e| f.first_offset <= e))
                .filter(|f| options.start_time.is_none_or(|t| f.max_timestamp >= t))
                .filter(|f| options.end_time.is_none_or(|t| f.min_timestamp <= t))
                .cloned()
                .collect();
            if files.is_empty() {
                continue;
            }
            plans.push(PartitionPlan {
                topic: topic.name.to_string(),
                partition: partition.partition,
                target_partition: if options.repartition.reshapes() {
                    -1
                } else {
                    options.partition_map.get(&key).copied().unwrap_or(partition.partition)
                },
                target_topic: target_topic.clone(),
                segments: files.iter().map(|f| f.name.to_string()).collect(),
                estimated_records: files.iter().map(|f| f.records).sum(),
                estimated_bytes: files.iter().map(|f| f.size_bytes).sum(),
                start_offset: start,
                end_offset: end,
                files,
                // A repartitioned topic's groups resume at any record (Kafka serves a fetch from
                // inside a batch).
                split_points: if options.repartition.reshapes() {
                    Default::default()
                } else {
                    group_offsets(manifest, options, topic.name.as_str(), partition.partition)
                },
            });
        }
    }
    plans
}
