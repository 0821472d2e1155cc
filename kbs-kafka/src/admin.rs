//! Topic administration: CreateTopics, DescribeConfigs, DeleteTopics.

use std::collections::BTreeMap;
use std::time::Instant;

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest, TopicName};

use crate::client::KafkaClient;
use crate::error::{Error, ErrorCode, Result};
use crate::protocol::str_bytes;

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewTopic {
    /// Topic name.
    pub name: String,
    /// Number of partitions.
    pub partitions: i32,
    /// Replication factor; `None` uses the broker's `default.replication.factor`.
    pub replication_factor: Option<i16>,
    /// Topic configs (`cleanup.policy`, `retention.ms`, ...).
    pub configs: BTreeMap<String, String>,
}

impl NewTopic {
    /// A topic with `partitions` partitions, the broker's default replication factor and no
    /// configs.
    pub fn new(name: impl Into<String>, partitions: i32) -> NewTopic {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor: None,
            configs: BTreeMap::new(),
        }
    }

    /// Sets the replication factor.
    pub fn with_replication_factor(mut self, replication_factor: i16) -> NewTopic {
        self.replication_factor = Some(replication_factor);
        self
    }

    /// Adds a topic config.
    pub fn with_config(mut self, name: impl Into<String>, value: impl Into<String>) -> NewTopic {
        self.configs.insert(name.into(), value.into());
        self
    }
}

/// `DYNAMIC_TOPIC_CONFIG`: a config set on the topic itself.
const SOURCE_TOPIC: i8 = 1;
/// `DEFAULT_CONFIG`: the broker's default.
const SOURCE_DEFAULT: i8 = 5;
/// DescribeConfigs resource type of a topic.
const RESOURCE_TOPIC: i8 = 2;

impl KafkaClient {
    /// Creates topics, then waits (up to the request timeout) until the cluster's metadata shows
    /// every partition with a leader. If a topic fails (e.g. `TOPIC_ALREADY_EXISTS`, see
    /// [`Error::code`]), the error names the first failing topic; the call's other topics may
    /// have been created.
    pub async fn create_topics(&self, topics: &[NewTopic]) -> Result<()> {
        if topics.is_empty() {
            return Ok(());
        }
        let timeout = self.inner.config.request_timeout;
        self.retry("CreateTopics", |_| async {
            let connection = self.controller_connection().await?;
            let version = connection.version::<CreateTopicsRequest>()?;
            let mut request = CreateTopicsRequest::default();
            request.timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
            request.topics = topics
                .iter()
                .map(|t| {
                    let mut creatable = CreatableTopic::default();
                    creatable.name = TopicName(str_bytes(&t.name));
                    creatable.num_partitions = t.partitions;
                    creatable.replication_factor = t.replication_factor.unwrap_or(-1);
                    creatable.configs = t
                        .configs
                        .iter()
                        .map(|(k, v)| {
                            let mut c = CreatableTopicConfig::default();
                            c.name = str_bytes(k);
                            c.value = Some(str_bytes(v));
                            c
                        })
                        .collect();
                    creatable
                })
                .collect();
            let response = connection.call(&request, version).await?;
            for topic in topics {
                let Some(result) = response.topics.iter().find(|r| r.name.0.as_str() == topic.name) else {
                    return Err(Error::Protocol {
                        broker: connection.broker().to_owned(),
                        api: "CreateTopics",
                        reason: format!("no answer for topic {:?}", topic.name),
                    });
                };
                if let Some(code) = ErrorCode::check(result.error_code) {
                    return Err(Error::Topic {
                        api: "CreateTopics",
                        topic: topic.name.clone(),
                        code,
                        message: result.error_message.as_ref().map(|m| m.to_string()),
                    });
                }
            }
            Ok(())
        })
        .await?;
        let names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
        let deadline = Instant::now() + timeout;
        loop {
            let ready = match self.refresh_metadata(Some(&names)).await {
                Ok(response) => topics.iter().all(|t| {
                    response.topics.iter().any(|r| {
                        r.name.as_ref().is_some_and(|n| n.0.as_str() == t.name)
                            && r.partitions.len() == usize::try_from(t.partitions).unwrap_or(0)
                            && r.partitions.iter().all(|p| p.error_code == 0 && p.leader_id.0 >= 0)
                    })
                }),
                Err(e) if e.is_retriable() || matches!(e, Error::UnknownTopic { .. }) => false,
                Err(e) => return Err(e),
            };
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    broker: "the cluster".into(),
                    api: "CreateTopics (waiting for partition leaders)",
                    timeout,
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Deletes topics. A topic that does not exist fails the call with
    /// `UNKNOWN_TOPIC_OR_PARTITION`.
    pub async fn delete_topics(&self, topics: &[&str]) -> Result<()> {
        if topics.is_empty() {
            return Ok(());
        }
        let timeout = self.inner.config.request_timeout;
        self.retry("DeleteTopics", |_| async {
            let connection = self.controller_connection().await?;
            let version = connection.version::<DeleteTopicsRequest>()?;
            let mut request = DeleteTopicsRequest::default();
            request.timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
            if version >= 6 {
                request.topics = topics
                    .iter()
                    .map(|name| {
                        let mut state = DeleteTopicState::default();
                        state.name = Some(TopicName(str_bytes(name)));
                        state
                    })
                    .collect();
            } else {
                request.topic_names = topics.iter().map(|name| TopicName(str_bytes(name))).collect();
            }
            let response = connection.call(&request, version).await?;
            for name in topics {
                let result = response
                    .responses
                    .iter()
                    .find(|r| r.name.as_ref().is_some_and(|n| n.0.as_str() == *name));
                let Some(result) = result else {
                    return Err(Error::Protocol {
                        broker: connection.broker().to_owned(),
                        api: "DeleteTopics",
                        reason: format!("no answer for topic {name:?}"),
                    });
                };
                if let Some(code) = ErrorCode::check(result.error_code) {
                    return Err(Error::Topic {
                        api: "DeleteTopics",
                        topic: (*name).to_owned(),
                        code,
                        message: result.error_message.as_ref().map(|m| m.to_string()),
                    });
                }
                self.invalidate(name);
            }
            Ok(())
        })
        .await
    }

    /// The configs set on each topic itself (source `DYNAMIC_TOPIC_CONFIG`): broker defaults,
    /// static and dynamic broker configs are left out, and so are sensitive configs whose value
    /// the broker hides. Exactly what a restore must set again.
    ///
    /// tansu 0.6 labels a topic's own configs `DEFAULT_CONFIG` (it stores no others); such
    /// answers are recognised (see the source) and its configs returned.
    pub async fn describe_topic_configs(&self, topics: &[&str]) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        self.describe_configs_of(topics, false).await
    }

    /// Every config in effect for each topic, whatever its source (the topic's own, a dynamic
    /// or static broker setting, or the default): e.g. the `max.message.bytes` a produce to the
    /// topic must respect. Sensitive configs whose value the broker hides are left out.
    pub async fn describe_effective_topic_configs(
        &self,
        topics: &[&str],
    ) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        self.describe_configs_of(topics, true).await
    }

    async fn describe_configs_of(
        &self,
        topics: &[&str],
        effective: bool,
    ) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        if topics.is_empty() {
            return Ok(BTreeMap::new());
        }
        self.retry("DescribeConfigs", |_| async {
            let connection = self.any_connection().await?;
            let version = connection.version::<DescribeConfigsRequest>()?;
            let mut request = DescribeConfigsRequest::default();
            request.resources = topics
                .iter()
                .map(|name| {
                    let mut resource = DescribeConfigsResource::default();
                    resource.resource_type = RESOURCE_TOPIC;
                    resource.resource_name = str_bytes(name);
                    resource.configuration_keys = None;
                    resource
                })
                .collect();
            let response = connection.call(&request, version).await?;
            let mut out = BTreeMap::new();
            for name in topics {
                let Some(result) = response.results.iter().find(|r| r.resource_name.as_str() == *name) else {
                    return Err(Error::Protocol {
                        broker: connection.broker().to_owned(),
                        api: "DescribeConfigs",
                        reason: format!("no answer for topic {name:?}"),
                    });
                };
                if let Some(code) = ErrorCode::check(result.error_code) {
                    if code == ErrorCode::UNKNOWN_TOPIC_OR_PARTITION {
                        return Err(Error::UnknownTopic {
                            topic: (*name).to_owned(),
                        });
                    }
                    return Err(Error::Topic {
                        api: "DescribeConfigs",
                        topic: (*name).to_owned(),
                        code,
                        message: result.error_message.as_ref().map(|m| m.to_string()),
                    });
                }
                // tansu 0.6 stores only the configs set on the topic but labels them
                // DEFAULT_CONFIG; it is recognisable by the empty (not null) documentation it
                // sends although none was asked for. Kafka sends null there.
                let tansu_style = version >= 3
                    && !result.configs.is_empty()
                    && result.configs.iter().all(|c| {
                        c.config_source == SOURCE_DEFAULT && c.documentation.as_ref().is_some_and(|d| d.is_empty())
                    });
                let configs = result
                    .configs
                    .iter()
                    .filter(|c| (effective || tansu_style || c.config_source == SOURCE_TOPIC) && !c.is_sensitive)
                    .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
                    .collect();
                out.insert((*name).to_owned(), configs);
            }
            Ok(out)
        })
        .await
    }
}
