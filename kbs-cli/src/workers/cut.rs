//! Taking the snapshot cut of a backup shared by workers: the selected topics, each
//! partition's log start and last stable offset, the consumer groups if asked, stored
//! create-only so that the first worker's cut is every worker's (see `records.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use kbs_kafka::{KafkaClient, OffsetSpec};
use kbs_manifest::{Encryption, Manifest, SourceCluster, TopicName};
use kbs_storage::ObjectStorage;

use super::records::{CutTopic, SnapshotCut};
use crate::backup::BackupOptions;
use crate::error::CliError;

pub(crate) async fn take_cut(
    storage: &Arc<dyn ObjectStorage>,
    client: &KafkaClient,
    options: &BackupOptions,
    base: Option<&Manifest>,
) -> Result<SnapshotCut, CliError> {
    let metadata = client.metadata(None).await?;
    let source_cluster = SourceCluster {
        cluster_id: metadata.cluster_id.clone().unwrap_or_default(),
        bootstrap_servers: options.kafka.bootstrap_servers.clone(),
    };
    if let Some(base) = base {
        let (then, now) = (&base.source_cluster.cluster_id, &source_cluster.cluster_id);
        if !then.is_empty() && !now.is_empty() && then != now {
            return Err(CliError::SourceChanged(format!(
                "backup {} holds cluster {then}, but this is cluster {now}: back it up under a new --backup-id",
                options.backup_id
            )));
        }
        crate::encryption::check_continuation(
            options.backup_id.as_str(),
            base.encryption.as_ref(),
            options.encrypt_to.as_ref(),
        )?;
    }
    let selected: Vec<&kbs_kafka::TopicMetadata> = metadata
        .topics
        .iter()
        .filter(|t| options.topics.selects(&t.name, t.is_internal))
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
            backup_id: options.backup_id.to_string(),
            partitions: leaderless,
            waited_secs: 0,
        });
    }
    let names: Vec<&str> = selected.iter().map(|t| t.name.as_str()).collect();
    let configs = if names.is_empty() {
        BTreeMap::new()
    } else {
        client.describe_topic_configs(&names).await?
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
            client.list_offsets(&query(OffsetSpec::Earliest)).await?,
            client.list_offsets(&query(OffsetSpec::LastStable)).await?,
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
    let consumer_groups = if options.consumer_groups {
        Some(crate::backup::capture_consumer_groups(client, &names).await?)
    } else {
        None
    };
    let cut = SnapshotCut {
        backup_id: options.backup_id.clone(),
        created_at: base.map_or_else(crate::backup::now_utc, |m| m.created_at.clone()),
        source_cluster,
        compression: crate::backup::manifest_compression(options),
        encryption: options
            .encrypt_to
            .as_ref()
            .map(|r| Encryption::to_recipients(r.to_strings())),
        consumer_groups,
        topics,
    };
    let stored = cut.store_once(storage).await?;
    tracing::info!(
        "snapshot cut of backup {}: {} topics, {} partitions",
        stored.backup_id,
        stored.topics.len(),
        stored.partitions().count()
    );
    Ok(stored)
}
