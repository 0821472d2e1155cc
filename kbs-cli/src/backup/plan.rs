//! Planning a run: selecting topics and partitions, where each starts (checkpoint or log start)
//! and, in snapshot mode, ends (the last stable offset at start); consumer-group offsets.

use super::*;

impl Engine {
    /// In continuous mode, compares the topics being followed with `metadata`: a topic that is
    /// gone was deleted, so its partitions are finished (what was read stays backed up) and the
    /// backup goes on with the others; a topic with another id was deleted and created again,
    /// which is refused (its offsets start over).
    pub(super) fn check_known_topics(&mut self, metadata: &kbs_kafka::ClusterMetadata) -> Result<(), CliError> {
        let known: std::collections::BTreeSet<TopicName> = self.partitions.keys().map(|(t, _)| t.clone()).collect();
        for topic in known {
            let followed = self.partitions.iter().any(|((t, _), p)| *t == topic && !p.done);
            match metadata.topics.iter().find(|t| t.name == topic.as_str()) {
                None if !followed => {}
                None => {
                    tracing::warn!(
                        topic = %topic,
                        "topic deleted: its backup ends with what was read; the other topics go on"
                    );
                    for ((name, _), part) in self.partitions.iter_mut() {
                        if *name == topic {
                            part.done = true;
                        }
                    }
                }
                Some(now) => {
                    if let (Some(recorded), Some(id)) = (self.state.topic_id(&topic), now.topic_id.as_deref())
                        && recorded != id
                    {
                        return Err(state::topic_recreated(&self.options.backup_id, &topic, recorded, id));
                    }
                }
            }
        }
        self.topics_to_check = false;
        Ok(())
    }

    /// Adds the selected topics (and new partitions of known ones) from `metadata`: records
    /// their partition count and configs, finds where each partition resumes, and adopts
    /// segments an interrupted run left behind.
    pub(super) async fn add_topics(&mut self, metadata: &kbs_kafka::ClusterMetadata) -> Result<(), CliError> {
        let selected: Vec<&kbs_kafka::TopicMetadata> = metadata
            .topics
            .iter()
            .filter(|t| self.options.topics.selects(&t.name, t.is_internal))
            .collect();
        let new: Vec<&kbs_kafka::TopicMetadata> = selected
            .into_iter()
            .filter(|t| {
                t.partitions.iter().any(|p| {
                    self.is_assigned(&t.name, p.partition)
                        && !self
                            .partitions
                            .keys()
                            .any(|(name, n)| name.as_str() == t.name && *n == p.partition)
                })
            })
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = new.iter().map(|t| t.name.as_str()).collect();
        let leaders = self.wait_for_leaders(&names, metadata).await?;
        let configs = self.client.describe_topic_configs(&names).await?;
        let mut starts = Vec::new();
        let mut manifest = None;
        for topic in new {
            let name = TopicName::new(&topic.name)?;
            let count = topic.partitions.len() as u32;
            self.state.add_topic(
                name.clone(),
                count,
                configs.get(&topic.name).cloned().unwrap_or_default(),
                topic.topic_id.as_deref(),
            )?;
            for p in &topic.partitions {
                if self.partitions.contains_key(&(name.clone(), p.partition))
                    || !self.is_assigned(&topic.name, p.partition)
                {
                    continue;
                }
                if let Some(replicas) = leaders.without.get(&(topic.name.clone(), p.partition)) {
                    self.leaderless.insert((name.clone(), p.partition), replicas.clone());
                    continue;
                }
                self.leaderless.remove(&(name.clone(), p.partition));
                let manifest = manifest.get_or_insert_with(|| self.state.builder.build_in_progress());
                let (resume, next_sequence) = BackupState::resume_point(manifest, &name, p.partition);
                starts.push((name.clone(), p.partition, resume, next_sequence));
            }
        }
        // Where partitions without a resume point start: the log start.
        let queries: Vec<(&str, i32, OffsetSpec)> = starts
            .iter()
            .filter(|(_, _, resume, _)| resume.is_none())
            .map(|(t, p, _, _)| (t.as_str(), *p, OffsetSpec::Earliest))
            .collect();
        let earliest = if queries.is_empty() {
            Vec::new()
        } else {
            self.client.list_offsets(&queries).await?
        };
        // A snapshot ends where a read_committed consumer's log ends now: the last stable
        // offset (the high watermark when no transaction is open). Records written after this
        // moment, and an open transaction's records, are left for the next backup.
        let snapshot_ends: BTreeMap<(TopicName, i32), i64> = if let Some(assignment) = &self.assignment {
            // A worker's ends are the cut's, the same for every worker.
            assignment
                .partitions
                .iter()
                .filter_map(|(key, end)| end.map(|end| (key.clone(), end)))
                .collect()
        } else if self.options.continuous || starts.is_empty() {
            BTreeMap::new()
        } else {
            let queries: Vec<(&str, i32, OffsetSpec)> = starts
                .iter()
                .map(|(t, p, _, _)| (t.as_str(), *p, OffsetSpec::LastStable))
                .collect();
            let mut ends = BTreeMap::new();
            for o in self.client.list_offsets(&queries).await? {
                if let (Ok(topic), Some(offset)) = (TopicName::new(&o.topic), o.offset) {
                    ends.insert((topic, o.partition), offset);
                }
            }
            ends
        };
        for (topic, partition, resume, next_sequence) in starts {
            let end = snapshot_ends.get(&(topic.clone(), partition)).copied();
            let position = match resume {
                Some(offset) => offset,
                None => earliest
                    .iter()
                    .find(|o| o.topic == topic.as_str() && o.partition == partition)
                    .and_then(|o| o.offset)
                    .unwrap_or(0),
            };
            let mut part = Partition {
                topic: topic.clone(),
                partition,
                position,
                end,
                done: end.is_some_and(|end| position >= end),
                next_sequence,
                open: None,
                queue: VecDeque::new(),
                upload_chain: None,
                last_progress: Instant::now(),
                lane: self.partitions.len() % FETCH_LANES,
            };
            self.adopt_orphans(&mut part).await?;
            let covered = if part.next_sequence > 0 || resume.is_some() {
                Some(part.position)
            } else {
                None
            };
            self.state.check_checkpoint(&topic, partition, covered)?;
            self.partitions.insert((topic, partition), part);
        }
        self.report.topics = self
            .partitions
            .keys()
            .map(|(t, _)| t)
            .collect::<std::collections::BTreeSet<_>>()
            .len() as u64;
        self.report.partitions = self.partitions.len() as u64;
        self.state.write_manifest_in_progress().await?;
        self.state.write_checkpoint().await?;
        Ok(())
    }

    /// Whether this run backs up `topic`/`partition`: every selected partition, or only a
    /// worker's assigned ones.
    pub(super) fn is_assigned(&self, topic: &str, partition: i32) -> bool {
        self.assignment
            .as_ref()
            .is_none_or(|a| TopicName::new(topic).is_ok_and(|name| a.partitions.contains_key(&(name, partition))))
    }

    /// The partitions of `names` that have no leader in `metadata`. A snapshot waits up to
    /// `--leader-wait` for them (all their replicas down: a restart, a rolling upgrade),
    /// asking the cluster again every second and saying what it waits for; continuous mode
    /// does not wait, as it asks again at every topic refresh. Whatever still has no leader
    /// is left out of this plan.
    async fn wait_for_leaders(
        &mut self,
        names: &[&str],
        metadata: &kbs_kafka::ClusterMetadata,
    ) -> Result<Leaders, CliError> {
        let leaderless = |metadata: &kbs_kafka::ClusterMetadata| -> BTreeMap<(String, i32), Vec<i32>> {
            metadata
                .topics
                .iter()
                .filter(|t| names.contains(&t.name.as_str()))
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .filter(|p| p.leader < 0)
                        .map(|p| ((t.name.clone(), p.partition), p.replicas.clone()))
                })
                .collect()
        };
        let mut without = leaderless(metadata);
        if without.is_empty() {
            return Ok(Leaders { without });
        }
        let listed = |without: &BTreeMap<(String, i32), Vec<i32>>| {
            without
                .iter()
                .map(|((t, p), replicas)| format!("{t}/{p} (replicas {replicas:?})"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if self.options.continuous {
            tracing::warn!(
                "no leader for {}: left out until a topic refresh finds one",
                listed(&without)
            );
            return Ok(Leaders { without });
        }
        let started = Instant::now();
        tracing::warn!(
            "no leader for {}: waiting up to {} s for one (--leader-wait)",
            listed(&without),
            self.options.leader_wait.as_secs()
        );
        let mut last_said = Instant::now();
        while !without.is_empty() && started.elapsed() < self.options.leader_wait {
            let pause = Duration::from_secs(1).min(self.options.leader_wait);
            tokio::time::sleep(pause).await;
            self.metrics
                .leader_wait_micros
                .fetch_add(pause.as_micros() as u64, std::sync::atomic::Ordering::Relaxed);
            self.check_lease()?;
            let topics: Vec<&str> = without.keys().map(|(t, _)| t.as_str()).collect();
            without = leaderless(&self.client.metadata(Some(&topics)).await?)
                .into_iter()
                .filter(|(key, _)| without.contains_key(key))
                .collect();
            if !without.is_empty() && last_said.elapsed() >= Duration::from_secs(10) {
                tracing::warn!(
                    "still no leader for {} after {} s",
                    listed(&without),
                    started.elapsed().as_secs()
                );
                last_said = Instant::now();
            }
        }
        if without.is_empty() {
            tracing::info!(
                "every partition has a leader again after {:.1} s",
                started.elapsed().as_secs_f64()
            );
        } else {
            tracing::warn!(
                "no leader for {} after {} s: backing up the other partitions; the backup will stay incomplete",
                listed(&without),
                started.elapsed().as_secs()
            );
        }
        Ok(Leaders { without })
    }

    /// `topic/partition` of the partitions left out for want of a leader.
    pub(super) fn leaderless_names(&self) -> Vec<String> {
        self.leaderless.keys().map(|(t, p)| format!("{t}/{p}")).collect()
    }

    pub(super) async fn snapshot_consumer_groups(&mut self) -> Result<(), CliError> {
        let topics: Vec<String> = self
            .partitions
            .keys()
            .map(|(t, _)| t.to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        let groups = capture_consumer_groups(&self.client, &topic_refs).await?;
        self.state.builder.set_consumer_groups(groups);
        self.manifest_dirty = true;
        Ok(())
    }
}

/// Partitions found without a leader when topics were planned, with their replicas.
struct Leaders {
    without: BTreeMap<(String, i32), Vec<i32>>,
}

/// The committed offsets of every consumer group on `topics`.
pub(crate) async fn capture_consumer_groups(client: &KafkaClient, topics: &[&str]) -> Result<ConsumerGroups, CliError> {
    let mut groups: ConsumerGroups = BTreeMap::new();
    for listing in client.list_groups().await? {
        let offsets = client.fetch_committed_offsets(&listing.group_id, Some(topics)).await?;
        for o in offsets {
            if o.offset < 0 {
                continue;
            }
            let topic = TopicName::new(&o.topic)?;
            groups
                .entry(listing.group_id.clone())
                .or_default()
                .entry(topic)
                .or_default()
                .insert(
                    o.partition,
                    CommittedOffset {
                        offset: o.offset,
                        metadata: o.metadata.unwrap_or_default(),
                    },
                );
        }
    }
    Ok(groups)
}
