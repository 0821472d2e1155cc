//! [`KafkaClient`]: bootstrap, metadata cache, leader routing, connections and retries.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};

use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName, metadata_request::MetadataRequestTopic};
use uuid::Uuid;

use crate::config::{ClientConfig, Security};
use crate::connection::{ConnectOptions, Connection};
use crate::error::{Error, ErrorCode, Result};
use crate::metadata::{BrokerMetadata, ClusterMetadata, PartitionMetadata, TopicMetadata};
use crate::protocol::str_bytes;

/// A connection to a Kafka cluster. Cheap to clone (an `Arc` inside), `Send + Sync`; clones
/// share connections and the metadata cache.
///
/// One TCP connection per broker carries any number of concurrent requests. Retriable failures
/// (lost connections, timeouts, leader changes, `NOT_LEADER_OR_FOLLOWER`,
/// `UNKNOWN_TOPIC_OR_PARTITION`, `FENCED_LEADER_EPOCH`, ...) refresh metadata and are retried
/// with backoff per [`RetryConfig`](crate::RetryConfig); everything else comes back as a typed
/// [`Error`].
#[derive(Clone)]
pub struct KafkaClient {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for KafkaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaClient")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Arc<Connection>>>>;

pub(crate) struct Inner {
    pub(crate) config: ClientConfig,
    options: ConnectOptions,
    cache: RwLock<Cache>,
    slots: Mutex<HashMap<String, Slot>>,
}

#[derive(Default)]
struct Cache {
    cluster_id: Option<String>,
    controller_id: i32,
    brokers: BTreeMap<i32, BrokerMetadata>,
    topics: HashMap<String, CachedTopic>,
}

#[derive(Clone)]
struct CachedTopic {
    id: Uuid,
    is_internal: bool,
    partitions: BTreeMap<i32, PartitionMetadata>,
}

/// Where to send requests for one partition.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route {
    pub(crate) leader: i32,
    pub(crate) leader_epoch: i32,
    pub(crate) topic_id: Uuid,
}

impl KafkaClient {
    /// Connects to the cluster: opens a connection to the first reachable bootstrap broker
    /// (TLS and SASL per the configuration) and loads the broker list.
    pub async fn connect(config: ClientConfig) -> Result<KafkaClient> {
        if config.bootstrap_servers.is_empty() {
            return Err(Error::Config {
                reason: "no bootstrap servers".into(),
            });
        }
        if config.retry.attempts == 0 {
            return Err(Error::Config {
                reason: "retry.attempts must be at least 1".into(),
            });
        }
        let (tls, sasl) = match &config.security {
            Security::Plaintext => (None, None),
            Security::Tls(tls) => (Some(tls), None),
            Security::SaslPlaintext(sasl) => (None, Some(sasl)),
            Security::SaslTls(sasl, tls) => (Some(tls), Some(sasl)),
        };
        let tls = match tls {
            Some(tls) => Some((crate::tls::client_config(tls)?, tls.clone())),
            None => None,
        };
        let options = ConnectOptions {
            client_id: str_bytes(&config.client_id),
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
            keepalive: config.tcp_keepalive,
            max_response_bytes: config.max_response_bytes,
            tls,
            sasl: sasl.cloned(),
            events: config.events.clone(),
        };
        let client = KafkaClient {
            inner: Arc::new(Inner {
                config,
                options,
                cache: RwLock::new(Cache {
                    controller_id: -1,
                    ..Cache::default()
                }),
                slots: Mutex::new(HashMap::new()),
            }),
        };
        client
            .retry("bootstrap", |_| client.refresh_metadata(Some(&[])))
            .await?;
        Ok(client)
    }

    /// The configuration the client was created with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Fetches metadata for `topics` (`None`: every topic). Topics are never auto-created; a
    /// topic that does not exist is [`Error::UnknownTopic`]. Partitions without a leader right
    /// now are reported with `leader == -1`.
    pub async fn metadata(&self, topics: Option<&[&str]>) -> Result<ClusterMetadata> {
        let wanted: Option<Vec<String>> = topics.map(|t| t.iter().map(|s| (*s).to_owned()).collect());
        let response = self
            .retry("Metadata", |_| self.refresh_metadata(wanted.as_deref()))
            .await?;
        let cache = self.read_cache();
        let mut names: Vec<String> = match &wanted {
            Some(list) => list.clone(),
            None => response
                .topics
                .iter()
                .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
                .collect(),
        };
        names.sort();
        names.dedup();
        let topics = names
            .into_iter()
            .filter_map(|name| {
                let topic = cache.topics.get(&name)?;
                Some(TopicMetadata {
                    name,
                    is_internal: topic.is_internal,
                    topic_id: (!topic.id.is_nil()).then(|| {
                        use base64::Engine as _;
                        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(topic.id.as_bytes())
                    }),
                    partitions: topic.partitions.values().cloned().collect(),
                })
            })
            .collect();
        Ok(ClusterMetadata {
            cluster_id: cache.cluster_id.clone(),
            controller_id: cache.controller_id,
            brokers: cache.brokers.values().cloned().collect(),
            topics,
        })
    }

    fn read_cache(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.inner.cache.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_cache(&self) -> std::sync::RwLockWriteGuard<'_, Cache> {
        self.inner.cache.write().unwrap_or_else(|p| p.into_inner())
    }

    /// One Metadata request (no retries), merged into the cache. `Some(&[])` asks for brokers
    /// only. Requested topics must come back without error.
    pub(crate) async fn refresh_metadata(&self, topics: Option<&[String]>) -> Result<MetadataResponse> {
        let connection = self.any_connection().await?;
        let version = connection.version::<MetadataRequest>()?;
        let mut request = MetadataRequest::default();
        request.topics = topics.map(|names| {
            names
                .iter()
                .map(|name| {
                    let mut t = MetadataRequestTopic::default();
                    t.name = Some(TopicName(str_bytes(name)));
                    t
                })
                .collect()
        });
        if version >= 4 {
            request.allow_auto_topic_creation = false;
        }
        let response = connection.call(&request, version).await?;
        if let Some(code) = ErrorCode::check(response.error_code) {
            return Err(Error::Broker {
                api: "Metadata",
                code,
                message: None,
            });
        }
        let mut first_error = None;
        {
            let mut cache = self.write_cache();
            if version >= 2 {
                cache.cluster_id = response.cluster_id.as_ref().map(|c| c.to_string());
            }
            cache.controller_id = response.controller_id.0;
            cache.brokers = response
                .brokers
                .iter()
                .map(|b| {
                    let broker = BrokerMetadata {
                        node_id: b.node_id.0,
                        host: b.host.to_string(),
                        port: b.port,
                        rack: b.rack.as_ref().map(|r| r.to_string()),
                    };
                    (b.node_id.0, broker)
                })
                .collect();
            if topics.is_none() {
                cache.topics.clear();
            }
            for topic in &response.topics {
                let Some(name) = topic.name.as_ref().map(|n| n.0.to_string()) else {
                    continue;
                };
                if let Some(code) = ErrorCode::check(topic.error_code) {
                    cache.topics.remove(&name);
                    if first_error.is_none() && topics.is_some() {
                        first_error = Some(if code == ErrorCode::UNKNOWN_TOPIC_OR_PARTITION {
                            Error::UnknownTopic { topic: name }
                        } else {
                            Error::Topic {
                                api: "Metadata",
                                topic: name,
                                code,
                                message: None,
                            }
                        });
                    }
                    continue;
                }
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|p| {
                        let partition = PartitionMetadata {
                            partition: p.partition_index,
                            leader: if p.error_code == 5 { -1 } else { p.leader_id.0 },
                            leader_epoch: if version >= 7 { p.leader_epoch } else { -1 },
                            replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                            isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                        };
                        (p.partition_index, partition)
                    })
                    .collect();
                cache.topics.insert(
                    name,
                    CachedTopic {
                        id: if version >= 10 { topic.topic_id } else { Uuid::nil() },
                        is_internal: topic.is_internal,
                        partitions,
                    },
                );
            }
            if let Some(wanted) = topics {
                for name in wanted {
                    let returned = response
                        .topics
                        .iter()
                        .any(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == name));
                    if !returned {
                        cache.topics.remove(name);
                        if first_error.is_none() {
                            first_error = Some(Error::UnknownTopic { topic: name.clone() });
                        }
                    }
                }
            }
        }
        match first_error {
            // An unknown topic is final for `metadata()`; routing treats it the same way.
            Some(error) => Err(error),
            None => Ok(response),
        }
    }

    /// The error for a partition's error `code` in an `api` answer, forgetting the topic's
    /// cached metadata first when the code is retriable (a leader change, mostly).
    pub(crate) fn partition_error(&self, api: &'static str, topic: &str, partition: i32, code: ErrorCode) -> Error {
        if code.is_retriable() {
            self.invalidate(topic);
        }
        Error::Partition {
            api,
            topic: topic.to_owned(),
            partition,
            code,
        }
    }

    /// Forgets what the cache knows about `topic`, so the next lookup asks the cluster.
    pub(crate) fn invalidate(&self, topic: &str) {
        self.write_cache().topics.remove(topic);
    }

    /// The leader of `topic`/`partition`, loading metadata when the cache does not know it.
    pub(crate) async fn route(&self, topic: &str, partition: i32) -> Result<Route> {
        let cached = self.cached_route(topic, partition);
        let route = match cached {
            Some(route) => route,
            None => {
                self.refresh_metadata(Some(&[topic.to_owned()])).await?;
                match self.cached_route(topic, partition) {
                    Some(route) => route,
                    None => {
                        return Err(Error::UnknownPartition {
                            topic: topic.to_owned(),
                            partition,
                        });
                    }
                }
            }
        };
        if route.leader < 0 {
            self.invalidate(topic);
            return Err(Error::Partition {
                api: "Metadata",
                topic: topic.to_owned(),
                partition,
                code: ErrorCode(5),
            });
        }
        Ok(route)
    }

    fn cached_route(&self, topic: &str, partition: i32) -> Option<Route> {
        let cache = self.read_cache();
        let t = cache.topics.get(topic)?;
        let p = t.partitions.get(&partition)?;
        Some(Route {
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            topic_id: t.id,
        })
    }

    /// Partition ids of `topic` known to the cache (loading it if needed).
    pub(crate) async fn partitions_of(&self, topic: &str) -> Result<Vec<i32>> {
        if let Some(t) = self.read_cache().topics.get(topic) {
            return Ok(t.partitions.keys().copied().collect());
        }
        self.refresh_metadata(Some(&[topic.to_owned()])).await?;
        let cache = self.read_cache();
        Ok(cache
            .topics
            .get(topic)
            .map(|t| t.partitions.keys().copied().collect())
            .unwrap_or_default())
    }

    /// Node ids of all known brokers.
    pub(crate) fn broker_ids(&self) -> Vec<i32> {
        self.read_cache().brokers.keys().copied().collect()
    }

    /// The connection to broker `node`.
    pub(crate) async fn connection_to(&self, node: i32) -> Result<Arc<Connection>> {
        let address = self
            .read_cache()
            .brokers
            .get(&node)
            .map(|b| format!("{}:{}", b.host, b.port));
        let address = match address {
            Some(a) => a,
            None => {
                self.refresh_metadata(Some(&[])).await?;
                self.read_cache()
                    .brokers
                    .get(&node)
                    .map(|b| format!("{}:{}", b.host, b.port))
                    .ok_or_else(|| Error::Connection {
                        broker: format!("node {node}"),
                        reason: "broker is not in the metadata".into(),
                    })?
            }
        };
        match self.connection_at(&address).await {
            Ok(connection) => Ok(connection),
            Err(e) => {
                // A broker that is down still leads its partitions in the cached metadata (and
                // in the cluster's, until the controller notices): forget those routes, so the
                // next attempt asks who leads them now.
                self.forget_routes_to(node);
                Err(e)
            }
        }
    }

    /// Forgets the cached metadata of every topic with a partition led by `node`.
    fn forget_routes_to(&self, node: i32) {
        self.write_cache()
            .topics
            .retain(|_, topic| !topic.partitions.values().any(|p| p.leader == node));
    }

    /// The connection to the controller (after refreshing who that is), or to any broker when
    /// the cluster does not say (KRaft brokers forward controller requests).
    pub(crate) async fn controller_connection(&self) -> Result<Arc<Connection>> {
        self.refresh_metadata(Some(&[])).await?;
        let controller = self.read_cache().controller_id;
        if controller >= 0 && self.read_cache().brokers.contains_key(&controller) {
            return self.connection_to(controller).await;
        }
        self.any_connection().await
    }

    /// A connection to any broker: an open one if there is one, else the first that connects
    /// (known brokers first, then the bootstrap list).
    pub(crate) async fn any_connection(&self) -> Result<Arc<Connection>> {
        let slots: Vec<Slot> = self
            .inner
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for slot in slots {
            if let Ok(guard) = slot.try_lock()
                && let Some(connection) = guard.as_ref()
                && !connection.is_closed()
            {
                return Ok(connection.clone());
            }
        }
        let mut candidates: Vec<String> = self
            .read_cache()
            .brokers
            .values()
            .map(|b| format!("{}:{}", b.host, b.port))
            .collect();
        for server in &self.inner.config.bootstrap_servers {
            if !candidates.contains(server) {
                candidates.push(server.clone());
            }
        }
        let mut last = None;
        for address in candidates {
            match self.connection_at(&address).await {
                Ok(connection) => return Ok(connection),
                Err(e) => {
                    tracing::debug!(broker = %address, error = %e, "broker unreachable");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::Config {
            reason: "no brokers to connect to".into(),
        }))
    }

    /// The connection to `address`, opened (or reopened) if needed.
    pub(crate) async fn connection_at(&self, address: &str) -> Result<Arc<Connection>> {
        let slot = self
            .inner
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(address.to_owned())
            .or_default()
            .clone();
        let mut guard = slot.lock().await;
        if let Some(connection) = guard.as_ref()
            && !connection.is_closed()
        {
            return Ok(connection.clone());
        }
        *guard = None;
        let connection = Connection::connect(address, &self.inner.options).await?;
        *guard = Some(connection.clone());
        Ok(connection)
    }

    /// Runs `attempt` until it succeeds, fails with a non-retriable error, or the retry budget
    /// is spent (then [`Error::RetriesExhausted`]).
    /// Logs a retry and tells the events hook.
    pub(crate) fn note_retry(&self, operation: &str, error: &Error, attempt: u32, delay: std::time::Duration) {
        tracing::debug!(operation, attempt, error = %error, "retrying");
        if let Some(events) = &self.inner.config.events {
            events.0.retrying(operation, error, attempt, delay);
        }
    }

    pub(crate) async fn retry<T, F, Fut>(&self, operation: &str, mut attempt: F) -> Result<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let policy = self.inner.config.retry;
        let mut n = 1;
        loop {
            match attempt(n).await {
                Ok(value) => return Ok(value),
                Err(e) if e.is_retriable() && n < policy.attempts => {
                    let delay = policy.delay(n);
                    self.note_retry(operation, &e, n, delay);
                    tokio::time::sleep(delay).await;
                    n += 1;
                }
                Err(e) if e.is_retriable() => {
                    return Err(Error::RetriesExhausted {
                        operation: operation.to_owned(),
                        attempts: n,
                        last: Box::new(e),
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }
}
