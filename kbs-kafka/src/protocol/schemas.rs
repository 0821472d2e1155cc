//! The wire layout of every response this client decodes, transcribed from Kafka's message
//! definitions (`clients/src/main/resources/common/message/*Response.json`, Apache Kafka
//! 4.1), for [`shape`](super::shape) to check a body against before it is decoded.
//!
//! Each field lists the versions it is on the wire in; a tagged field has its tag (and is
//! only ever inside the tagged-field section of flexible versions). Fields are in wire order.
//! Only the versions in each API's range in [`Api`](super::Api) matter; fields of versions
//! Kafka 4 removed are left out where no version in range has them. The unit tests encode
//! filled-in messages with kafka-protocol at every version in range and check that the walk
//! takes exactly their bytes, so a field missing here fails a test.

/// A value type of Kafka's message definitions, as far as its encoding goes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ty {
    /// `BOOLEAN`, one byte.
    Bool,
    /// `INT8`.
    Int8,
    /// `INT16`.
    Int16,
    /// `INT32`.
    Int32,
    /// `INT64`.
    Int64,
    /// `UUID`, 16 bytes.
    Uuid,
    /// `STRING` (nullable or not).
    String,
    /// `BYTES` or `RECORDS`.
    Bytes,
    /// `[]int32`.
    Int32s,
    /// `[]string`.
    Strings,
    /// An array of structs with these fields.
    Structs(&'static [Field]),
    /// One struct with these fields (tagged fields only, here).
    Struct(&'static [Field]),
}

/// One field of a message or struct.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Field {
    pub(crate) ty: Ty,
    min: i16,
    max: i16,
    pub(crate) tag: Option<u32>,
}

impl Field {
    /// Whether the field is on the wire at `version`.
    pub(crate) fn present_in(&self, version: i16) -> bool {
        (self.min..=self.max).contains(&version)
    }
}

/// A response message: its fields and the first flexible version.
#[derive(Debug)]
pub(crate) struct Schema {
    pub(crate) flexible_from: i16,
    pub(crate) fields: &'static [Field],
}

const ALL: i16 = i16::MAX;
const NEVER: i16 = i16::MAX;

/// A field in versions `min` and up.
const fn from(min: i16, ty: Ty) -> Field {
    Field {
        ty,
        min,
        max: ALL,
        tag: None,
    }
}

/// A field in versions `min..=max`.
const fn between(min: i16, max: i16, ty: Ty) -> Field {
    Field {
        ty,
        min,
        max,
        tag: None,
    }
}

/// A tagged field with `tag`, in versions `min` and up.
const fn tagged(tag: u32, min: i16, ty: Ty) -> Field {
    Field {
        ty,
        min,
        max: ALL,
        tag: Some(tag),
    }
}

use Ty::{Bool, Bytes, Int8, Int16, Int32, Int32s, Int64, Strings, Struct, Structs, Uuid};
const STRING: Ty = Ty::String;

// Shared structs.

static NODE_ENDPOINT: &[Field] = &[from(0, Int32), from(0, STRING), from(0, Int32), from(0, STRING)];
static LEADER_ID_AND_EPOCH: &[Field] = &[from(0, Int32), from(0, Int32)];

// Produce.

static BATCH_INDEX_AND_ERROR_MESSAGE: &[Field] = &[from(0, Int32), from(0, STRING)];
static PARTITION_PRODUCE_RESPONSE: &[Field] = &[
    from(0, Int32),                                  // Index
    from(0, Int16),                                  // ErrorCode
    from(0, Int64),                                  // BaseOffset
    from(2, Int64),                                  // LogAppendTimeMs
    from(5, Int64),                                  // LogStartOffset
    from(8, Structs(BATCH_INDEX_AND_ERROR_MESSAGE)), // RecordErrors
    from(8, STRING),                                 // ErrorMessage
    tagged(0, 10, Struct(LEADER_ID_AND_EPOCH)),      // CurrentLeader
];
static TOPIC_PRODUCE_RESPONSE: &[Field] = &[
    between(0, 12, STRING),                       // Name
    from(13, Uuid),                               // TopicId
    from(0, Structs(PARTITION_PRODUCE_RESPONSE)), // PartitionResponses
];
pub(crate) static PRODUCE_RESPONSE: Schema = Schema {
    flexible_from: 9,
    fields: &[
        from(0, Structs(TOPIC_PRODUCE_RESPONSE)), // Responses
        from(1, Int32),                           // ThrottleTimeMs
        tagged(0, 10, Structs(NODE_ENDPOINT)),    // NodeEndpoints
    ],
};

// Fetch.

static EPOCH_END_OFFSET: &[Field] = &[from(0, Int32), from(0, Int64)];
static SNAPSHOT_ID: &[Field] = &[from(0, Int64), from(0, Int32)];
static ABORTED_TRANSACTION: &[Field] = &[from(0, Int64), from(0, Int64)];
static PARTITION_DATA: &[Field] = &[
    from(0, Int32),                             // PartitionIndex
    from(0, Int16),                             // ErrorCode
    from(0, Int64),                             // HighWatermark
    from(4, Int64),                             // LastStableOffset
    from(5, Int64),                             // LogStartOffset
    tagged(0, 12, Struct(EPOCH_END_OFFSET)),    // DivergingEpoch
    tagged(1, 12, Struct(LEADER_ID_AND_EPOCH)), // CurrentLeader
    tagged(2, 12, Struct(SNAPSHOT_ID)),         // SnapshotId
    from(4, Structs(ABORTED_TRANSACTION)),      // AbortedTransactions
    from(11, Int32),                            // PreferredReadReplica
    from(0, Bytes),                             // Records
];
static FETCHABLE_TOPIC_RESPONSE: &[Field] = &[
    between(0, 12, STRING),           // Topic
    from(13, Uuid),                   // TopicId
    from(0, Structs(PARTITION_DATA)), // Partitions
];
pub(crate) static FETCH_RESPONSE: Schema = Schema {
    flexible_from: 12,
    fields: &[
        from(1, Int32),                             // ThrottleTimeMs
        from(7, Int16),                             // ErrorCode
        from(7, Int32),                             // SessionId
        from(0, Structs(FETCHABLE_TOPIC_RESPONSE)), // Responses
        tagged(0, 16, Structs(NODE_ENDPOINT)),      // NodeEndpoints
    ],
};

// ListOffsets.

static LIST_OFFSETS_PARTITION_RESPONSE: &[Field] = &[
    from(0, Int32), // PartitionIndex
    from(0, Int16), // ErrorCode
    from(1, Int64), // Timestamp
    from(1, Int64), // Offset
    from(4, Int32), // LeaderEpoch
];
static LIST_OFFSETS_TOPIC_RESPONSE: &[Field] = &[
    from(0, STRING),                                   // Name
    from(0, Structs(LIST_OFFSETS_PARTITION_RESPONSE)), // Partitions
];
pub(crate) static LIST_OFFSETS_RESPONSE: Schema = Schema {
    flexible_from: 6,
    fields: &[
        from(2, Int32),                                // ThrottleTimeMs
        from(0, Structs(LIST_OFFSETS_TOPIC_RESPONSE)), // Topics
    ],
};

// Metadata.

static METADATA_RESPONSE_BROKER: &[Field] = &[
    from(0, Int32),  // NodeId
    from(0, STRING), // Host
    from(0, Int32),  // Port
    from(1, STRING), // Rack
];
static METADATA_RESPONSE_PARTITION: &[Field] = &[
    from(0, Int16),  // ErrorCode
    from(0, Int32),  // PartitionIndex
    from(0, Int32),  // LeaderId
    from(7, Int32),  // LeaderEpoch
    from(0, Int32s), // ReplicaNodes
    from(0, Int32s), // IsrNodes
    from(5, Int32s), // OfflineReplicas
];
static METADATA_RESPONSE_TOPIC: &[Field] = &[
    from(0, Int16),                                // ErrorCode
    from(0, STRING),                               // Name
    from(10, Uuid),                                // TopicId
    from(1, Bool),                                 // IsInternal
    from(0, Structs(METADATA_RESPONSE_PARTITION)), // Partitions
    from(8, Int32),                                // TopicAuthorizedOperations
];
pub(crate) static METADATA_RESPONSE: Schema = Schema {
    flexible_from: 9,
    fields: &[
        from(3, Int32),                             // ThrottleTimeMs
        from(0, Structs(METADATA_RESPONSE_BROKER)), // Brokers
        from(2, STRING),                            // ClusterId
        from(1, Int32),                             // ControllerId
        from(0, Structs(METADATA_RESPONSE_TOPIC)),  // Topics
        between(8, 10, Int32),                      // ClusterAuthorizedOperations
        from(13, Int16),                            // ErrorCode
    ],
};

// OffsetCommit.

static OFFSET_COMMIT_RESPONSE_PARTITION: &[Field] = &[from(0, Int32), from(0, Int16)];
static OFFSET_COMMIT_RESPONSE_TOPIC: &[Field] = &[
    between(0, 9, STRING),                              // Name
    from(10, Uuid),                                     // TopicId
    from(0, Structs(OFFSET_COMMIT_RESPONSE_PARTITION)), // Partitions
];
pub(crate) static OFFSET_COMMIT_RESPONSE: Schema = Schema {
    flexible_from: 8,
    fields: &[
        from(3, Int32),                                 // ThrottleTimeMs
        from(0, Structs(OFFSET_COMMIT_RESPONSE_TOPIC)), // Topics
    ],
};

// OffsetFetch: versions 0-7 answer for one group, 8 and up for many.

static OFFSET_FETCH_RESPONSE_PARTITION: &[Field] = &[
    from(0, Int32),       // PartitionIndex
    from(0, Int64),       // CommittedOffset
    between(5, 7, Int32), // CommittedLeaderEpoch
    from(0, STRING),      // Metadata
    from(0, Int16),       // ErrorCode
];
static OFFSET_FETCH_RESPONSE_TOPIC: &[Field] = &[
    from(0, STRING),                                   // Name
    from(0, Structs(OFFSET_FETCH_RESPONSE_PARTITION)), // Partitions
];
static OFFSET_FETCH_RESPONSE_PARTITIONS: &[Field] = &[
    from(0, Int32),  // PartitionIndex
    from(0, Int64),  // CommittedOffset
    from(0, Int32),  // CommittedLeaderEpoch
    from(0, STRING), // Metadata
    from(0, Int16),  // ErrorCode
];
static OFFSET_FETCH_RESPONSE_TOPICS: &[Field] = &[
    between(8, 9, STRING),                              // Name
    from(10, Uuid),                                     // TopicId
    from(0, Structs(OFFSET_FETCH_RESPONSE_PARTITIONS)), // Partitions
];
static OFFSET_FETCH_RESPONSE_GROUP: &[Field] = &[
    from(0, STRING),                                // GroupId
    from(0, Structs(OFFSET_FETCH_RESPONSE_TOPICS)), // Topics
    from(0, Int16),                                 // ErrorCode
];
pub(crate) static OFFSET_FETCH_RESPONSE: Schema = Schema {
    flexible_from: 6,
    fields: &[
        from(3, Int32),                                      // ThrottleTimeMs
        between(0, 7, Structs(OFFSET_FETCH_RESPONSE_TOPIC)), // Topics
        between(2, 7, Int16),                                // ErrorCode
        from(8, Structs(OFFSET_FETCH_RESPONSE_GROUP)),       // Groups
    ],
};

// FindCoordinator: versions 0-3 answer for one key, 4 and up for many.

static COORDINATOR: &[Field] = &[
    from(0, STRING), // Key
    from(0, Int32),  // NodeId
    from(0, STRING), // Host
    from(0, Int32),  // Port
    from(0, Int16),  // ErrorCode
    from(0, STRING), // ErrorMessage
];
pub(crate) static FIND_COORDINATOR_RESPONSE: Schema = Schema {
    flexible_from: 3,
    fields: &[
        from(1, Int32),                // ThrottleTimeMs
        between(0, 3, Int16),          // ErrorCode
        between(1, 3, STRING),         // ErrorMessage
        between(0, 3, Int32),          // NodeId
        between(0, 3, STRING),         // Host
        between(0, 3, Int32),          // Port
        from(4, Structs(COORDINATOR)), // Coordinators
    ],
};

// ListGroups.

static LISTED_GROUP: &[Field] = &[
    from(0, STRING), // GroupId
    from(0, STRING), // ProtocolType
    from(4, STRING), // GroupState
    from(5, STRING), // GroupType
];
pub(crate) static LIST_GROUPS_RESPONSE: Schema = Schema {
    flexible_from: 3,
    fields: &[
        from(1, Int32),                 // ThrottleTimeMs
        from(0, Int16),                 // ErrorCode
        from(0, Structs(LISTED_GROUP)), // Groups
    ],
};

// DescribeGroups.

static DESCRIBED_GROUP_MEMBER: &[Field] = &[
    from(0, STRING), // MemberId
    from(4, STRING), // GroupInstanceId
    from(0, STRING), // ClientId
    from(0, STRING), // ClientHost
    from(0, Bytes),  // MemberMetadata
    from(0, Bytes),  // MemberAssignment
];
static DESCRIBED_GROUP: &[Field] = &[
    from(0, Int16),                           // ErrorCode
    from(6, STRING),                          // ErrorMessage
    from(0, STRING),                          // GroupId
    from(0, STRING),                          // GroupState
    from(0, STRING),                          // ProtocolType
    from(0, STRING),                          // ProtocolData
    from(0, Structs(DESCRIBED_GROUP_MEMBER)), // Members
    from(3, Int32),                           // AuthorizedOperations
];
pub(crate) static DESCRIBE_GROUPS_RESPONSE: Schema = Schema {
    flexible_from: 5,
    fields: &[
        from(1, Int32),                    // ThrottleTimeMs
        from(0, Structs(DESCRIBED_GROUP)), // Groups
    ],
};

// SaslHandshake (never flexible).

pub(crate) static SASL_HANDSHAKE_RESPONSE: Schema = Schema {
    flexible_from: NEVER,
    fields: &[
        from(0, Int16),   // ErrorCode
        from(0, Strings), // Mechanisms
    ],
};

// ApiVersions.

static API_VERSION: &[Field] = &[from(0, Int16), from(0, Int16), from(0, Int16)];
static SUPPORTED_FEATURE_KEY: &[Field] = &[from(0, STRING), from(0, Int16), from(0, Int16)];
static FINALIZED_FEATURE_KEY: &[Field] = &[from(0, STRING), from(0, Int16), from(0, Int16)];
pub(crate) static API_VERSIONS_RESPONSE: Schema = Schema {
    flexible_from: 3,
    fields: &[
        from(0, Int16),                               // ErrorCode
        from(0, Structs(API_VERSION)),                // ApiKeys
        from(1, Int32),                               // ThrottleTimeMs
        tagged(0, 3, Structs(SUPPORTED_FEATURE_KEY)), // SupportedFeatures
        tagged(1, 3, Int64),                          // FinalizedFeaturesEpoch
        tagged(2, 3, Structs(FINALIZED_FEATURE_KEY)), // FinalizedFeatures
        tagged(3, 3, Bool),                           // ZkMigrationReady
    ],
};

// CreateTopics.

static CREATABLE_TOPIC_CONFIGS: &[Field] = &[
    from(0, STRING), // Name
    from(0, STRING), // Value
    from(0, Bool),   // ReadOnly
    from(0, Int8),   // ConfigSource
    from(0, Bool),   // IsSensitive
];
static CREATABLE_TOPIC_RESULT: &[Field] = &[
    from(0, STRING),                           // Name
    from(7, Uuid),                             // TopicId
    from(0, Int16),                            // ErrorCode
    from(1, STRING),                           // ErrorMessage
    tagged(0, 5, Int16),                       // TopicConfigErrorCode
    from(5, Int32),                            // NumPartitions
    from(5, Int16),                            // ReplicationFactor
    from(5, Structs(CREATABLE_TOPIC_CONFIGS)), // Configs
];
pub(crate) static CREATE_TOPICS_RESPONSE: Schema = Schema {
    flexible_from: 5,
    fields: &[
        from(2, Int32),                           // ThrottleTimeMs
        from(0, Structs(CREATABLE_TOPIC_RESULT)), // Topics
    ],
};

// DeleteTopics.

static DELETABLE_TOPIC_RESULT: &[Field] = &[
    from(0, STRING), // Name
    from(6, Uuid),   // TopicId
    from(0, Int16),  // ErrorCode
    from(5, STRING), // ErrorMessage
];
pub(crate) static DELETE_TOPICS_RESPONSE: Schema = Schema {
    flexible_from: 4,
    fields: &[
        from(1, Int32),                           // ThrottleTimeMs
        from(0, Structs(DELETABLE_TOPIC_RESULT)), // Responses
    ],
};

// InitProducerId.

pub(crate) static INIT_PRODUCER_ID_RESPONSE: Schema = Schema {
    flexible_from: 2,
    fields: &[
        from(0, Int32), // ThrottleTimeMs
        from(0, Int16), // ErrorCode
        from(0, Int64), // ProducerId
        from(0, Int16), // ProducerEpoch
        from(6, Int64), // OngoingTxnProducerId
        from(6, Int16), // OngoingTxnProducerEpoch
    ],
};

// DescribeConfigs.

static DESCRIBE_CONFIGS_SYNONYM: &[Field] = &[from(0, STRING), from(0, STRING), from(0, Int8)];
static DESCRIBE_CONFIGS_RESOURCE_RESULT: &[Field] = &[
    from(0, STRING),                            // Name
    from(0, STRING),                            // Value
    from(0, Bool),                              // ReadOnly
    from(1, Int8),                              // ConfigSource
    from(0, Bool),                              // IsSensitive
    from(1, Structs(DESCRIBE_CONFIGS_SYNONYM)), // Synonyms
    from(3, Int8),                              // ConfigType
    from(3, STRING),                            // Documentation
];
static DESCRIBE_CONFIGS_RESULT: &[Field] = &[
    from(0, Int16),                                     // ErrorCode
    from(0, STRING),                                    // ErrorMessage
    from(0, Int8),                                      // ResourceType
    from(0, STRING),                                    // ResourceName
    from(0, Structs(DESCRIBE_CONFIGS_RESOURCE_RESULT)), // Configs
];
pub(crate) static DESCRIBE_CONFIGS_RESPONSE: Schema = Schema {
    flexible_from: 4,
    fields: &[
        from(0, Int32),                            // ThrottleTimeMs
        from(0, Structs(DESCRIBE_CONFIGS_RESULT)), // Results
    ],
};

// SaslAuthenticate.

pub(crate) static SASL_AUTHENTICATE_RESPONSE: Schema = Schema {
    flexible_from: 2,
    fields: &[
        from(0, Int16),  // ErrorCode
        from(0, STRING), // ErrorMessage
        from(0, Bytes),  // AuthBytes
        from(1, Int64),  // SessionLifetimeMs
    ],
};

// DescribeProducers (flexible from its first version).

static PRODUCER_STATE: &[Field] = &[
    from(0, Int64), // ProducerId
    from(0, Int32), // ProducerEpoch
    from(0, Int32), // LastSequence
    from(0, Int64), // LastTimestamp
    from(0, Int32), // CoordinatorEpoch
    from(0, Int64), // CurrentTxnStartOffset
];
static DESCRIBE_PRODUCERS_PARTITION_RESPONSE: &[Field] = &[
    from(0, Int32),                   // PartitionIndex
    from(0, Int16),                   // ErrorCode
    from(0, STRING),                  // ErrorMessage
    from(0, Structs(PRODUCER_STATE)), // ActiveProducers
];
static DESCRIBE_PRODUCERS_TOPIC_RESPONSE: &[Field] = &[
    from(0, STRING),                                         // Name
    from(0, Structs(DESCRIBE_PRODUCERS_PARTITION_RESPONSE)), // Partitions
];
pub(crate) static DESCRIBE_PRODUCERS_RESPONSE: Schema = Schema {
    flexible_from: 0,
    fields: &[
        from(0, Int32),                                      // ThrottleTimeMs
        from(0, Structs(DESCRIBE_PRODUCERS_TOPIC_RESPONSE)), // Topics
    ],
};

// JoinGroup (versions 2 and up on Kafka 4; this client speaks 4 and up, where a new member
// is handed its id with MEMBER_ID_REQUIRED).

static JOIN_GROUP_MEMBER: &[Field] = &[
    from(0, STRING), // MemberId
    from(5, STRING), // GroupInstanceId
    from(0, Bytes),  // Metadata
];
pub(crate) static JOIN_GROUP_RESPONSE: Schema = Schema {
    flexible_from: 6,
    fields: &[
        from(2, Int32),                      // ThrottleTimeMs
        from(0, Int16),                      // ErrorCode
        from(0, Int32),                      // GenerationId
        from(7, STRING),                     // ProtocolType
        from(0, STRING),                     // ProtocolName
        from(0, STRING),                     // Leader
        from(9, Bool),                       // SkipAssignment
        from(0, STRING),                     // MemberId
        from(0, Structs(JOIN_GROUP_MEMBER)), // Members
    ],
};

// SyncGroup.

pub(crate) static SYNC_GROUP_RESPONSE: Schema = Schema {
    flexible_from: 4,
    fields: &[
        from(1, Int32),  // ThrottleTimeMs
        from(0, Int16),  // ErrorCode
        from(5, STRING), // ProtocolType
        from(5, STRING), // ProtocolName
        from(0, Bytes),  // Assignment
    ],
};

// Heartbeat.

pub(crate) static HEARTBEAT_RESPONSE: Schema = Schema {
    flexible_from: 4,
    fields: &[
        from(1, Int32), // ThrottleTimeMs
        from(0, Int16), // ErrorCode
    ],
};

// LeaveGroup (3 and up: members leave in a batch).

static LEAVE_GROUP_MEMBER: &[Field] = &[
    from(3, STRING), // MemberId
    from(3, STRING), // GroupInstanceId
    from(3, Int16),  // ErrorCode
];
pub(crate) static LEAVE_GROUP_RESPONSE: Schema = Schema {
    flexible_from: 4,
    fields: &[
        from(1, Int32),                       // ThrottleTimeMs
        from(0, Int16),                       // ErrorCode
        from(3, Structs(LEAVE_GROUP_MEMBER)), // Members
    ],
};
