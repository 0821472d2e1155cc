//! Consumer-group offsets: FindCoordinator, ListGroups, DescribeGroups, OffsetFetch and
//! OffsetCommit.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    DescribeGroupsRequest, FindCoordinatorRequest, GroupId, ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest,
    TopicName,
};

use crate::client::KafkaClient;
use crate::connection::Connection;
use crate::error::{Error, ErrorCode, Result};
use crate::protocol::str_bytes;

/// A consumer group as listed by [`KafkaClient::list_groups`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// Protocol type, `consumer` for consumer groups.
    pub protocol_type: String,
    /// State (ListGroups v4+), e.g. `Stable` or `Empty`.
    pub state: Option<String>,
}

/// A member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupMember {
    /// Member id.
    pub member_id: String,
    /// Client id of the member.
    pub client_id: String,
    /// Host of the member.
    pub client_host: String,
}

/// A consumer group as described by [`KafkaClient::describe_groups`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// State: `Empty`, `Stable`, `PreparingRebalance`, `CompletingRebalance` or `Dead` (also
    /// what an unknown group reports).
    pub state: String,
    /// Protocol type, `consumer` for consumer groups.
    pub protocol_type: String,
    /// The assignment protocol in use, e.g. `range`.
    pub protocol: String,
    /// Active members.
    pub members: Vec<GroupMember>,
}

/// A committed offset of one partition for a group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommittedOffset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The committed offset (the next record the group will read).
    pub offset: i64,
    /// Metadata string stored with the commit.
    pub metadata: Option<String>,
}

impl CommittedOffset {
    /// Offset `offset` of `topic`/`partition`, without metadata.
    pub fn new(topic: impl Into<String>, partition: i32, offset: i64) -> CommittedOffset {
        CommittedOffset {
            topic: topic.into(),
            partition,
            offset,
            metadata: None,
        }
    }
}

/// FindCoordinator key type of a consumer group.
const KEY_TYPE_GROUP: i8 = 0;

impl KafkaClient {
    /// The connection to `group`'s coordinator (FindCoordinator).
    pub(crate) async fn coordinator(&self, group: &str) -> Result<Arc<Connection>> {
        let connection = self.any_connection().await?;
        let version = connection.version::<FindCoordinatorRequest>()?;
        let mut request = FindCoordinatorRequest::default();
        request.key_type = KEY_TYPE_GROUP;
        if version >= 4 {
            request.coordinator_keys = vec![str_bytes(group)];
        } else {
            request.key = str_bytes(group);
        }
        let response = connection.call(&request, version).await?;
        let (code, host, port) = if version >= 4 {
            let Some(c) = response.coordinators.iter().find(|c| c.key.as_str() == group) else {
                return Err(Error::Protocol {
                    broker: connection.broker().to_owned(),
                    api: "FindCoordinator",
                    reason: format!("no coordinator for group {group:?} in the answer"),
                });
            };
            (c.error_code, c.host.to_string(), c.port)
        } else {
            (response.error_code, response.host.to_string(), response.port)
        };
        if let Some(code) = ErrorCode::check(code) {
            return Err(Error::Group {
                api: "FindCoordinator",
                group: group.to_owned(),
                code,
            });
        }
        self.connection_at(&format!("{host}:{port}")).await
    }

    /// Every group of the cluster (ListGroups to each broker).
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        self.retry("ListGroups", |_| async {
            let mut groups: BTreeMap<String, GroupListing> = BTreeMap::new();
            let brokers = self.broker_ids();
            let brokers = if brokers.is_empty() {
                self.refresh_metadata(Some(&[])).await?;
                self.broker_ids()
            } else {
                brokers
            };
            for node in brokers {
                let connection = self.connection_to(node).await?;
                let version = connection.version::<ListGroupsRequest>()?;
                let response = connection.call(&ListGroupsRequest::default(), version).await?;
                if let Some(code) = ErrorCode::check(response.error_code) {
                    return Err(Error::Broker {
                        api: "ListGroups",
                        code,
                        message: None,
                    });
                }
                for g in response.groups {
                    let group_id = g.group_id.0.to_string();
                    groups.insert(
                        group_id.clone(),
                        GroupListing {
                            group_id,
                            protocol_type: g.protocol_type.to_string(),
                            state: (version >= 4).then(|| g.group_state.to_string()),
                        },
                    );
                }
            }
            Ok(groups.into_values().collect())
        })
        .await
    }

    /// Describes groups: state, protocol and members.
    pub async fn describe_groups(&self, groups: &[&str]) -> Result<Vec<GroupDescription>> {
        let mut out = Vec::with_capacity(groups.len());
        for group in groups {
            out.push(self.retry("DescribeGroups", |_| self.describe_group(group)).await?);
        }
        Ok(out)
    }

    async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let connection = self.coordinator(group).await?;
        let version = connection.version::<DescribeGroupsRequest>()?;
        let mut request = DescribeGroupsRequest::default();
        request.groups = vec![GroupId(str_bytes(group))];
        let response = connection.call(&request, version).await?;
        let Some(g) = response.groups.into_iter().find(|g| g.group_id.0.as_str() == group) else {
            return Err(Error::Protocol {
                broker: connection.broker().to_owned(),
                api: "DescribeGroups",
                reason: format!("no answer for group {group:?}"),
            });
        };
        if let Some(code) = ErrorCode::check(g.error_code) {
            return Err(Error::Group {
                api: "DescribeGroups",
                group: group.to_owned(),
                code,
            });
        }
        Ok(GroupDescription {
            group_id: group.to_owned(),
            state: g.group_state.to_string(),
            protocol_type: g.protocol_type.to_string(),
            protocol: g.protocol_data.to_string(),
            members: g
                .members
                .iter()
                .map(|m| GroupMember {
                    member_id: m.member_id.to_string(),
                    client_id: m.client_id.to_string(),
                    client_host: m.client_host.to_string(),
                })
                .collect(),
        })
    }

    /// The offsets `group` has committed, for `topics` (`None`: every topic). Partitions
    /// without a committed offset are left out. Sorted by topic and partition.
    pub async fn fetch_committed_offsets(&self, group: &str, topics: Option<&[&str]>) -> Result<Vec<CommittedOffset>> {
        self.retry("OffsetFetch", |_| self.fetch_committed_once(group, topics))
            .await
    }

    async fn fetch_committed_once(&self, group: &str, topics: Option<&[&str]>) -> Result<Vec<CommittedOffset>> {
        // OffsetFetch wants partition lists for named topics.
        let mut wanted: Vec<(String, Vec<i32>)> = Vec::new();
        if let Some(topics) = topics {
            for topic in topics {
                wanted.push(((*topic).to_owned(), self.partitions_of(topic).await?));
            }
        }
        let connection = self.coordinator(group).await?;
        let version = connection.version::<OffsetFetchRequest>()?;
        let mut request = OffsetFetchRequest::default();
        if version >= 8 {
            let mut g = OffsetFetchRequestGroup::default();
            g.group_id = GroupId(str_bytes(group));
            if version >= 9 {
                g.member_id = None;
                g.member_epoch = -1;
            }
            g.topics = topics.map(|_| {
                wanted
                    .iter()
                    .map(|(name, partitions)| {
                        let mut t = OffsetFetchRequestTopics::default();
                        t.name = TopicName(str_bytes(name));
                        t.partition_indexes = partitions.clone();
                        t
                    })
                    .collect()
            });
            request.groups = vec![g];
        } else {
            request.group_id = GroupId(str_bytes(group));
            request.topics = topics.map(|_| {
                wanted
                    .iter()
                    .map(|(name, partitions)| {
                        let mut t = OffsetFetchRequestTopic::default();
                        t.name = TopicName(str_bytes(name));
                        t.partition_indexes = partitions.clone();
                        t
                    })
                    .collect()
            });
        }
        let response = connection.call(&request, version).await?;
        let mut out = Vec::new();
        let group_error = |code: ErrorCode| Error::Group {
            api: "OffsetFetch",
            group: group.to_owned(),
            code,
        };
        let mut push = |topic: &str, partition: i32, offset: i64, metadata: Option<String>, code: i16| -> Result<()> {
            if let Some(code) = ErrorCode::check(code) {
                return Err(Error::Partition {
                    api: "OffsetFetch",
                    topic: topic.to_owned(),
                    partition,
                    code,
                });
            }
            if offset >= 0 {
                out.push(CommittedOffset {
                    topic: topic.to_owned(),
                    partition,
                    offset,
                    metadata,
                });
            }
            Ok(())
        };
        if version >= 8 {
            let Some(g) = response.groups.iter().find(|g| g.group_id.0.as_str() == group) else {
                return Err(Error::Protocol {
                    broker: connection.broker().to_owned(),
                    api: "OffsetFetch",
                    reason: format!("no answer for group {group:?}"),
                });
            };
            if let Some(code) = ErrorCode::check(g.error_code) {
                return Err(group_error(code));
            }
            for t in &g.topics {
                for p in &t.partitions {
                    let metadata = p.metadata.as_ref().map(|m| m.to_string());
                    push(
                        t.name.0.as_str(),
                        p.partition_index,
                        p.committed_offset,
                        metadata,
                        p.error_code,
                    )?;
                }
            }
        } else {
            if let Some(code) = ErrorCode::check(response.error_code) {
                return Err(group_error(code));
            }
            for t in &response.topics {
                for p in &t.partitions {
                    let metadata = p.metadata.as_ref().map(|m| m.to_string());
                    push(
                        t.name.0.as_str(),
                        p.partition_index,
                        p.committed_offset,
                        metadata,
                        p.error_code,
                    )?;
                }
            }
        }
        out.sort_by(|a, b| (a.topic.as_str(), a.partition).cmp(&(b.topic.as_str(), b.partition)));
        Ok(out)
    }

    /// Commits offsets for `group` from outside the group, like `kafka-consumer-groups
    /// --reset-offsets`. Refused with [`Error::GroupActive`] while the group has members:
    /// their commits would overwrite these.
    pub async fn commit_offsets(&self, group: &str, offsets: &[CommittedOffset]) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        self.retry("OffsetCommit", |_| self.commit_once(group, offsets)).await
    }

    async fn commit_once(&self, group: &str, offsets: &[CommittedOffset]) -> Result<()> {
        let description = self.describe_group(group).await?;
        if !description.members.is_empty() {
            return Err(Error::GroupActive {
                group: group.to_owned(),
                state: description.state,
                members: description.members.len(),
            });
        }
        let connection = self.coordinator(group).await?;
        let version = connection.version::<OffsetCommitRequest>()?;
        let mut request = OffsetCommitRequest::default();
        request.group_id = GroupId(str_bytes(group));
        request.generation_id_or_member_epoch = -1;
        request.member_id = str_bytes("");
        if (2..=4).contains(&version) {
            request.retention_time_ms = -1;
        }
        let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
        for o in offsets {
            let mut p = OffsetCommitRequestPartition::default();
            p.partition_index = o.partition;
            p.committed_offset = o.offset;
            if version >= 6 {
                p.committed_leader_epoch = -1;
            }
            p.committed_metadata = Some(str_bytes(o.metadata.as_deref().unwrap_or("")));
            match topics.iter_mut().find(|t| t.name.0.as_str() == o.topic) {
                Some(t) => t.partitions.push(p),
                None => {
                    let mut t = OffsetCommitRequestTopic::default();
                    t.name = TopicName(str_bytes(&o.topic));
                    t.partitions.push(p);
                    topics.push(t);
                }
            }
        }
        request.topics = topics;
        let response = connection.call(&request, version).await?;
        for o in offsets {
            let code = response
                .topics
                .iter()
                .filter(|t| t.name.0.as_str() == o.topic)
                .flat_map(|t| t.partitions.iter())
                .find(|p| p.partition_index == o.partition)
                .map(|p| p.error_code);
            match code {
                None => {
                    return Err(Error::Protocol {
                        broker: connection.broker().to_owned(),
                        api: "OffsetCommit",
                        reason: format!("no answer for {}/{}", o.topic, o.partition),
                    });
                }
                // The group gained members between the check and the commit.
                Some(22 | 25 | 27) => {
                    let now = self.describe_group(group).await?;
                    return Err(Error::GroupActive {
                        group: group.to_owned(),
                        state: now.state,
                        members: now.members.len(),
                    });
                }
                Some(code) => {
                    if let Some(code) = ErrorCode::check(code) {
                        return Err(Error::Partition {
                            api: "OffsetCommit",
                            topic: o.topic.clone(),
                            partition: o.partition,
                            code,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}
