//! What the target cluster already holds: a target partition's bounds, the records an
//! interrupted run wrote past its checkpoint, and which other restores wrote a topic.

use super::*;

/// The ids of other restores of this backup whose progress names `target_topic` (best effort:
/// unreadable progress documents are left out).
pub(super) async fn restores_into(
    storage: &Arc<dyn ObjectStorage>,
    options: &RestoreOptions,
    target_topic: &str,
) -> Vec<String> {
    let prefix = format!("{}/restores/", options.backup_id);
    let Ok(listing) = storage.list_with_delimiter(&prefix).await else {
        return Vec::new();
    };
    let mut ids = Vec::new();
    for dir in listing.common_prefixes {
        let id = dir
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        if id.is_empty() || id == options.restore_id {
            continue;
        }
        let key = format!("{prefix}{id}/progress.json");
        let Ok(got) = storage.get(&key).await else { continue };
        let Ok(progress) = serde_json::from_slice::<RestoreProgress>(&got.bytes) else {
            continue;
        };
        if progress.partitions.values().any(|p| p.target_topic == target_topic) {
            ids.push(id);
        }
    }
    ids
}

/// The end (high watermark) and start of a target partition, from a Fetch response (some
/// brokers answer ListOffsets(latest) wrongly).
///
/// Asked with ListOffsets (earliest and latest), whose partition errors fail the call with their
/// name after the client's retries (authorization, a leader missing): a target that cannot be
/// read is never taken for an empty one.
pub(super) async fn target_bounds(client: &KafkaClient, topic: &str, partition: i32) -> Result<(i64, i64), CliError> {
    let offsets = client
        .list_offsets(&[
            (topic, partition, OffsetSpec::Earliest),
            (topic, partition, OffsetSpec::Latest),
        ])
        .await?;
    let missing = || CliError::MissingAnswer {
        api: "ListOffsets",
        topic: topic.to_owned(),
        partition,
    };
    let start = offsets.first().and_then(|o| o.offset).ok_or_else(missing)?;
    let end = offsets.get(1).and_then(|o| o.offset).ok_or_else(missing)?;
    Ok((end.max(start), start))
}

/// Reads target records `from..to`.
pub(super) async fn read_target(
    client: &KafkaClient,
    topic: &str,
    partition: i32,
    from: i64,
    to: i64,
) -> Result<VecDeque<kbs_kafka::Record>, CliError> {
    let mut out = VecDeque::new();
    let mut position = from;
    while position < to {
        let request = FetchRequest::new(vec![FetchPosition::new(topic, partition, position)])
            .with_max_wait(Duration::from_millis(10));
        let pf = client
            .fetch(&request)
            .await?
            .into_iter()
            .next()
            .expect("one partition asked");
        if let Some(error) = pf.error {
            return Err(CliError::Fetch {
                topic: topic.to_string(),
                partition,
                error,
            });
        }
        let before = position;
        for r in pf.records {
            if r.offset >= position && r.offset < to {
                position = r.offset + 1;
                out.push_back(r);
            }
        }
        if position == before && pf.next_offset <= position {
            // Nothing more can be read below `to` (e.g. only transaction markers remain).
            break;
        }
        position = position.max(pf.next_offset);
    }
    Ok(out)
}
