//! Taking the snapshot cut of a backup shared by workers: the selected topics, each
//! partition's log start and last stable offset, the consumer groups if asked, stored
//! create-only so that the first worker's cut is every worker's (see `records.rs`). A
//! continuous backup's cut is its catalogue, which the group's leader grows
//! ([`grow_catalogue`]).

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
    let leaderless: Vec<String> = selected.iter().flat_map(|t| leaderless_partitions(t)).collect();
    let selected: Vec<&kbs_kafka::TopicMetadata> = if leaderless.is_empty() {
        selected
    } else if options.continuous {
        // The catalogue grows: the leader adds these topics once their partitions have leaders.
        tracing::warn!(
            "no leader for {}: their topics join the backup once every partition has one",
            leaderless.join(", ")
        );
        selected
            .into_iter()
            .filter(|t| leaderless_partitions(t).is_empty())
            .collect()
    } else {
        return Err(CliError::PartitionsWithoutLeader {
            backup_id: options.backup_id.to_string(),
            partitions: leaderless,
            waited_secs: 0,
        });
    };
    let names: Vec<&str> = selected.iter().map(|t| t.name.as_str()).collect();
    let topics = cut_topics(client, &selected).await?;
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
        continuous: options.continuous,
    };
    let stored = cut.store_once(storage).await?;
    tracing::info!(
        "{} of backup {}: {} topics, {} partitions",
        if stored.continuous { "catalogue" } else { "snapshot cut" },
        stored.backup_id,
        stored.topics.len(),
        stored.partitions().count()
    );
    Ok(stored)
}

/// `topic/partition` of the partitions of `topic` without a leader.
fn leaderless_partitions(topic: &kbs_kafka::TopicMetadata) -> Vec<String> {
    topic
        .partitions
        .iter()
        .filter(|p| p.leader < 0)
        .map(|p| format!("{}/{}", topic.name, p.partition))
        .collect()
}

/// The cut's entries of `selected`: configs, and each partition's log start and last stable
/// offset now.
async fn cut_topics(client: &KafkaClient, selected: &[&kbs_kafka::TopicMetadata]) -> Result<Vec<CutTopic>, CliError> {
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
    for t in selected {
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
    Ok(topics)
}

/// Rounds lost to another worker's write of the catalogue before giving up until the next
/// refresh.
const CATALOGUE_ROUNDS: u32 = 10;

/// A continuous backup's catalogue, grown by the topics and partitions selected that it does
/// not hold yet (created since), and by fresh consumer-group offsets when `groups` is set.
/// Returns the catalogue as stored, and whether partitions were added (the group must then
/// rebalance). Topics with a partition without a leader wait for the next refresh; a topic
/// whose id changed (deleted and created again) is left as it is, and its worker reports it.
pub(crate) async fn grow_catalogue(
    storage: &Arc<dyn ObjectStorage>,
    client: &KafkaClient,
    options: &BackupOptions,
    groups: bool,
) -> Result<(SnapshotCut, bool), CliError> {
    for _ in 0..CATALOGUE_ROUNDS {
        let Some((mut catalogue, version)) = SnapshotCut::load_versioned(storage, &options.backup_id).await? else {
            return Err(CliError::Locked(format!(
                "{} is gone: the workers' catalogue was deleted while they ran",
                super::records::cut_key(&options.backup_id)
            )));
        };
        let metadata = client.metadata(None).await?;
        let grown: Vec<&kbs_kafka::TopicMetadata> = metadata
            .topics
            .iter()
            .filter(|t| options.topics.selects(&t.name, t.is_internal))
            .filter(|t| leaderless_partitions(t).is_empty())
            .filter(|t| match catalogue.topics.iter().find(|c| c.name.as_str() == t.name) {
                None => true,
                Some(known) => {
                    known
                        .topic_id
                        .as_deref()
                        .is_none_or(|id| t.topic_id.as_deref().is_none_or(|now| now == id))
                        && t.partitions.len() > known.starts.len()
                }
            })
            .collect();
        let added = !grown.is_empty();
        for fresh in cut_topics(client, &grown).await? {
            match catalogue.topics.iter_mut().find(|c| c.name == fresh.name) {
                Some(known) => {
                    let from = known.starts.len();
                    known.starts.extend_from_slice(&fresh.starts[from..]);
                    known.ends.extend_from_slice(&fresh.ends[from..]);
                    known.configs = fresh.configs;
                }
                None => {
                    tracing::info!(
                        "new topic {} ({} partitions) joins backup {}",
                        fresh.name,
                        fresh.starts.len(),
                        options.backup_id
                    );
                    catalogue.topics.push(fresh);
                }
            }
        }
        if groups {
            let names: Vec<&str> = catalogue.topics.iter().map(|t| t.name.as_str()).collect();
            catalogue.consumer_groups = Some(crate::backup::capture_consumer_groups(client, &names).await?);
        }
        if !added && !groups {
            return Ok((catalogue, false));
        }
        if catalogue.replace(storage, &version).await? {
            return Ok((catalogue, added));
        }
    }
    Err(CliError::Locked(format!(
        "{}: other workers kept replacing it; {CATALOGUE_ROUNDS} updates in a row lost the compare-and-swap",
        super::records::cut_key(&options.backup_id)
    )))
}
