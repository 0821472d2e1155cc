//! The shape check against kafka-protocol's own encoder: filled-in responses of every API at
//! every version this client speaks must be walked to their last byte, and no corruption of
//! their counts may reach the decoder with a count the bytes cannot back.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::shape::check_response;
use super::{Api, decode_response};

fn s(text: &'static str) -> StrBytes {
    StrBytes::from_static_str(text)
}

fn uuid() -> uuid::Uuid {
    uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef)
}

fn node_endpoint() -> produce_response::NodeEndpoint {
    produce_response::NodeEndpoint::default()
        .with_node_id(BrokerId(1))
        .with_host(s("broker-1"))
        .with_port(9092)
        .with_rack(Some(s("rack-a")))
}

fn produce(v: i16) -> ProduceResponse {
    let partition = produce_response::PartitionProduceResponse::default()
        .with_index(3)
        .with_base_offset(42)
        .with_log_append_time_ms(7)
        .with_log_start_offset(1)
        .with_record_errors(if v >= 8 {
            vec![
                produce_response::BatchIndexAndErrorMessage::default()
                    .with_batch_index(2)
                    .with_batch_index_error_message(Some(s("bad record"))),
            ]
        } else {
            vec![]
        })
        .with_error_message(if v >= 8 { Some(s("oops")) } else { None })
        .with_current_leader(
            produce_response::LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(2))
                .with_leader_epoch(5),
        );
    let topic = produce_response::TopicProduceResponse::default()
        .with_name(TopicName(s("orders")))
        .with_partition_responses(vec![partition.clone(), partition]);
    ProduceResponse::default()
        .with_responses(vec![topic])
        .with_throttle_time_ms(1)
        .with_node_endpoints(if v >= 10 { vec![node_endpoint()] } else { vec![] })
}

fn fetch(v: i16) -> FetchResponse {
    let partition = fetch_response::PartitionData::default()
        .with_partition_index(1)
        .with_high_watermark(100)
        .with_last_stable_offset(90)
        .with_log_start_offset(3)
        .with_diverging_epoch(
            fetch_response::EpochEndOffset::default()
                .with_epoch(4)
                .with_end_offset(80),
        )
        .with_current_leader(
            fetch_response::LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(2))
                .with_leader_epoch(9),
        )
        .with_snapshot_id(fetch_response::SnapshotId::default().with_end_offset(70).with_epoch(3))
        .with_aborted_transactions(Some(vec![
            fetch_response::AbortedTransaction::default()
                .with_producer_id(ProducerId(11))
                .with_first_offset(12),
        ]))
        .with_preferred_read_replica(BrokerId(if v >= 11 { 2 } else { -1 }))
        .with_records(Some(Bytes::from_static(b"not really a batch")));
    let partition = if v >= 12 {
        partition
    } else {
        partition
            .with_diverging_epoch(Default::default())
            .with_current_leader(Default::default())
            .with_snapshot_id(Default::default())
    };
    let topic = fetch_response::FetchableTopicResponse::default()
        .with_topic(if v <= 12 {
            TopicName(s("orders"))
        } else {
            TopicName::default()
        })
        .with_topic_id(if v >= 13 { uuid() } else { Default::default() })
        .with_partitions(vec![partition.clone(), partition]);
    FetchResponse::default()
        .with_throttle_time_ms(1)
        .with_session_id(if v >= 7 { 77 } else { 0 })
        .with_responses(vec![topic.clone(), topic])
        .with_node_endpoints(if v >= 16 {
            vec![
                fetch_response::NodeEndpoint::default()
                    .with_node_id(BrokerId(1))
                    .with_host(s("broker-1"))
                    .with_port(9092),
            ]
        } else {
            vec![]
        })
}

fn list_offsets(v: i16) -> ListOffsetsResponse {
    let partition = list_offsets_response::ListOffsetsPartitionResponse::default()
        .with_partition_index(1)
        .with_timestamp(5)
        .with_offset(6)
        .with_leader_epoch(if v >= 4 { 7 } else { -1 });
    ListOffsetsResponse::default()
        .with_throttle_time_ms(if v >= 2 { 1 } else { 0 })
        .with_topics(vec![
            list_offsets_response::ListOffsetsTopicResponse::default()
                .with_name(TopicName(s("orders")))
                .with_partitions(vec![partition.clone(), partition]),
        ])
}

fn metadata(v: i16) -> MetadataResponse {
    let partition = metadata_response::MetadataResponsePartition::default()
        .with_partition_index(1)
        .with_leader_id(BrokerId(1))
        .with_leader_epoch(if v >= 7 { 4 } else { -1 })
        .with_replica_nodes(vec![BrokerId(1), BrokerId(2)])
        .with_isr_nodes(vec![BrokerId(1)])
        .with_offline_replicas(if v >= 5 { vec![BrokerId(2)] } else { vec![] });
    let topic = metadata_response::MetadataResponseTopic::default()
        .with_name(Some(TopicName(s("orders"))))
        .with_topic_id(if v >= 10 { uuid() } else { Default::default() })
        .with_is_internal(false)
        .with_partitions(vec![partition.clone(), partition])
        .with_topic_authorized_operations(if v >= 8 { 8 } else { i32::MIN });
    MetadataResponse::default()
        .with_brokers(vec![
            metadata_response::MetadataResponseBroker::default()
                .with_node_id(BrokerId(1))
                .with_host(s("broker-1"))
                .with_port(9092)
                .with_rack(if v >= 1 { Some(s("rack-a")) } else { None }),
        ])
        .with_cluster_id(if v >= 2 { Some(s("cluster")) } else { None })
        .with_controller_id(BrokerId(if v >= 1 { 1 } else { -1 }))
        .with_topics(vec![topic])
}

fn offset_commit(v: i16) -> OffsetCommitResponse {
    let partition = offset_commit_response::OffsetCommitResponsePartition::default().with_partition_index(2);
    OffsetCommitResponse::default().with_topics(vec![
        offset_commit_response::OffsetCommitResponseTopic::default()
            .with_name(if v <= 9 {
                TopicName(s("orders"))
            } else {
                TopicName::default()
            })
            .with_topic_id(if v >= 10 { uuid() } else { Default::default() })
            .with_partitions(vec![partition.clone(), partition]),
    ])
}

fn offset_fetch(v: i16) -> OffsetFetchResponse {
    if v <= 7 {
        let partition = offset_fetch_response::OffsetFetchResponsePartition::default()
            .with_partition_index(1)
            .with_committed_offset(10)
            .with_committed_leader_epoch(if v >= 5 { 3 } else { -1 })
            .with_metadata(Some(s("meta")));
        return OffsetFetchResponse::default().with_topics(vec![
            offset_fetch_response::OffsetFetchResponseTopic::default()
                .with_name(TopicName(s("orders")))
                .with_partitions(vec![partition.clone(), partition]),
        ]);
    }
    let partition = offset_fetch_response::OffsetFetchResponsePartitions::default()
        .with_partition_index(1)
        .with_committed_offset(10)
        .with_committed_leader_epoch(3)
        .with_metadata(Some(s("meta")));
    OffsetFetchResponse::default().with_groups(vec![
        offset_fetch_response::OffsetFetchResponseGroup::default()
            .with_group_id(GroupId(s("group")))
            .with_topics(vec![
                offset_fetch_response::OffsetFetchResponseTopics::default()
                    .with_name(if v <= 9 {
                        TopicName(s("orders"))
                    } else {
                        TopicName::default()
                    })
                    .with_topic_id(if v >= 10 { uuid() } else { Default::default() })
                    .with_partitions(vec![partition.clone(), partition]),
            ]),
    ])
}

fn find_coordinator(v: i16) -> FindCoordinatorResponse {
    if v <= 3 {
        return FindCoordinatorResponse::default()
            .with_error_message(if v >= 1 { Some(s("none")) } else { None })
            .with_node_id(BrokerId(1))
            .with_host(s("broker-1"))
            .with_port(9092);
    }
    FindCoordinatorResponse::default().with_coordinators(vec![
        find_coordinator_response::Coordinator::default()
            .with_key(s("group"))
            .with_node_id(BrokerId(1))
            .with_host(s("broker-1"))
            .with_port(9092)
            .with_error_message(Some(s("none"))),
    ])
}

fn list_groups(v: i16) -> ListGroupsResponse {
    ListGroupsResponse::default().with_groups(vec![
        list_groups_response::ListedGroup::default()
            .with_group_id(GroupId(s("group")))
            .with_protocol_type(s("consumer"))
            .with_group_state(if v >= 4 { s("Stable") } else { StrBytes::default() })
            .with_group_type(if v >= 5 { s("classic") } else { StrBytes::default() }),
    ])
}

fn describe_groups(v: i16) -> DescribeGroupsResponse {
    let member = describe_groups_response::DescribedGroupMember::default()
        .with_member_id(s("member"))
        .with_group_instance_id(if v >= 4 { Some(s("instance")) } else { None })
        .with_client_id(s("client"))
        .with_client_host(s("/127.0.0.1"))
        .with_member_metadata(Bytes::from_static(b"metadata"))
        .with_member_assignment(Bytes::from_static(b"assignment"));
    DescribeGroupsResponse::default().with_groups(vec![
        describe_groups_response::DescribedGroup::default()
            .with_group_id(GroupId(s("group")))
            .with_group_state(s("Stable"))
            .with_protocol_type(s("consumer"))
            .with_protocol_data(s("range"))
            .with_members(vec![member.clone(), member])
            .with_authorized_operations(if v >= 3 { 5 } else { i32::MIN }),
    ])
}

fn sasl_handshake(_v: i16) -> SaslHandshakeResponse {
    SaslHandshakeResponse::default().with_mechanisms(vec![s("PLAIN"), s("SCRAM-SHA-512")])
}

fn api_versions(v: i16) -> ApiVersionsResponse {
    let key = api_versions_response::ApiVersion::default()
        .with_api_key(1)
        .with_min_version(4)
        .with_max_version(17);
    let flexible = v >= 3;
    ApiVersionsResponse::default()
        .with_api_keys(vec![key.clone(), key])
        .with_supported_features(if flexible {
            vec![
                api_versions_response::SupportedFeatureKey::default()
                    .with_name(s("metadata.version"))
                    .with_min_version(1)
                    .with_max_version(27),
            ]
        } else {
            vec![]
        })
        .with_finalized_features_epoch(if flexible { 12 } else { -1 })
        .with_finalized_features(if flexible {
            vec![
                api_versions_response::FinalizedFeatureKey::default()
                    .with_name(s("metadata.version"))
                    .with_max_version_level(27)
                    .with_min_version_level(27),
            ]
        } else {
            vec![]
        })
        .with_zk_migration_ready(flexible)
}

fn create_topics(v: i16) -> CreateTopicsResponse {
    let config = create_topics_response::CreatableTopicConfigs::default()
        .with_name(s("cleanup.policy"))
        .with_value(Some(s("compact")));
    CreateTopicsResponse::default().with_topics(vec![
        create_topics_response::CreatableTopicResult::default()
            .with_name(TopicName(s("orders")))
            .with_topic_id(if v >= 7 { uuid() } else { Default::default() })
            .with_error_message(if v >= 1 { Some(s("none")) } else { None })
            .with_topic_config_error_code(if v >= 5 { 3 } else { 0 })
            .with_num_partitions(if v >= 5 { 4 } else { -1 })
            .with_replication_factor(if v >= 5 { 1 } else { -1 })
            .with_configs(if v >= 5 {
                Some(vec![config.clone(), config])
            } else {
                None
            }),
    ])
}

fn delete_topics(v: i16) -> DeleteTopicsResponse {
    DeleteTopicsResponse::default().with_responses(vec![
        delete_topics_response::DeletableTopicResult::default()
            .with_name(Some(TopicName(s("orders"))))
            .with_topic_id(if v >= 6 { uuid() } else { Default::default() })
            .with_error_message(if v >= 5 { Some(s("none")) } else { None }),
    ])
}

fn init_producer_id(_v: i16) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_producer_id(ProducerId(1000))
        .with_producer_epoch(2)
}

fn describe_configs(v: i16) -> DescribeConfigsResponse {
    let synonym = describe_configs_response::DescribeConfigsSynonym::default()
        .with_name(s("log.retention.ms"))
        .with_value(Some(s("-1")))
        .with_source(5);
    let config = describe_configs_response::DescribeConfigsResourceResult::default()
        .with_name(s("retention.ms"))
        .with_value(Some(s("-1")))
        .with_config_source(1)
        .with_synonyms(vec![synonym.clone(), synonym])
        .with_config_type(if v >= 3 { 5 } else { 0 })
        .with_documentation(if v >= 3 { Some(s("docs")) } else { None });
    DescribeConfigsResponse::default().with_results(vec![
        describe_configs_response::DescribeConfigsResult::default()
            .with_error_message(Some(s("none")))
            .with_resource_type(2)
            .with_resource_name(s("orders"))
            .with_configs(vec![config.clone(), config]),
    ])
}

fn sasl_authenticate(v: i16) -> SaslAuthenticateResponse {
    SaslAuthenticateResponse::default()
        .with_error_message(Some(s("none")))
        .with_auth_bytes(Bytes::from_static(b"server-final"))
        .with_session_lifetime_ms(if v >= 1 { 60_000 } else { 0 })
}

fn describe_producers(_v: i16) -> DescribeProducersResponse {
    let producer = describe_producers_response::ProducerState::default()
        .with_producer_id(ProducerId(5))
        .with_producer_epoch(1)
        .with_last_sequence(99)
        .with_last_timestamp(1_700_000_000_000)
        .with_current_txn_start_offset(12);
    DescribeProducersResponse::default().with_topics(vec![
        describe_producers_response::TopicResponse::default()
            .with_name(TopicName(s("orders")))
            .with_partitions(vec![
                describe_producers_response::PartitionResponse::default()
                    .with_partition_index(0)
                    .with_error_message(Some(s("none")))
                    .with_active_producers(vec![producer.clone(), producer]),
            ]),
    ])
}

fn join_group(v: i16) -> JoinGroupResponse {
    let member = join_group_response::JoinGroupResponseMember::default()
        .with_member_id(s("kbs-1-abc"))
        .with_group_instance_id(if v >= 5 { Some(s("host-a")) } else { None })
        .with_metadata(Bytes::from_static(b"subscription"));
    JoinGroupResponse::default()
        .with_generation_id(7)
        .with_protocol_type(if v >= 7 { Some(s("kbs")) } else { None })
        .with_protocol_name(Some(s("kbs-bytes")))
        .with_leader(s("kbs-1-abc"))
        .with_skip_assignment(v >= 9)
        .with_member_id(s("kbs-1-abc"))
        .with_members(vec![member.clone(), member])
}

fn sync_group(v: i16) -> SyncGroupResponse {
    SyncGroupResponse::default()
        .with_protocol_type(if v >= 5 { Some(s("kbs")) } else { None })
        .with_protocol_name(if v >= 5 { Some(s("kbs-bytes")) } else { None })
        .with_assignment(Bytes::from_static(b"assignment"))
}

fn heartbeat(_v: i16) -> HeartbeatResponse {
    HeartbeatResponse::default().with_error_code(27)
}

fn leave_group(_v: i16) -> LeaveGroupResponse {
    let member = leave_group_response::MemberResponse::default()
        .with_member_id(s("kbs-1-abc"))
        .with_group_instance_id(Some(s("host-a")));
    LeaveGroupResponse::default().with_members(vec![member.clone(), member])
}

/// Every version of `R` this client speaks, with the encoding of a filled-in response.
fn encodings<R: Api>(fill: fn(i16) -> R::Response) -> Vec<(i16, Bytes)>
where
    R::Response: Encodable,
{
    (R::MIN..=R::MAX)
        .map(|version| {
            let mut buf = BytesMut::new();
            fill(version)
                .encode(&mut buf, version)
                .unwrap_or_else(|e| panic!("{} v{version}: {e}", R::NAME));
            (version, buf.freeze())
        })
        .collect()
}

/// Decodes a body at a version with the decoder of one API.
type Decode<'a> = &'a dyn Fn(Bytes, i16) -> Result<(), String>;

/// One API as the checks see it: its name, its response schema and its decoder.
struct Under<'a> {
    name: &'static str,
    schema: &'static super::Schema,
    decode: Decode<'a>,
}

/// Runs `check` on every API's filled-in responses: the API, the version and the body.
fn for_every_api(check: &mut dyn FnMut(&Under<'_>, i16, Bytes)) {
    macro_rules! each {
        ($($request:ty => $fill:ident,)*) => {$(
            let under = Under {
                name: <$request as Api>::NAME,
                schema: <$request as Api>::RESPONSE,
                decode: &|body, version| decode_response::<$request>(body, version).map(drop),
            };
            for (version, body) in encodings::<$request>($fill) {
                check(&under, version, body);
            }
        )*};
    }
    each! {
        ProduceRequest => produce,
        FetchRequest => fetch,
        ListOffsetsRequest => list_offsets,
        MetadataRequest => metadata,
        OffsetCommitRequest => offset_commit,
        OffsetFetchRequest => offset_fetch,
        FindCoordinatorRequest => find_coordinator,
        ListGroupsRequest => list_groups,
        DescribeGroupsRequest => describe_groups,
        SaslHandshakeRequest => sasl_handshake,
        ApiVersionsRequest => api_versions,
        CreateTopicsRequest => create_topics,
        DeleteTopicsRequest => delete_topics,
        InitProducerIdRequest => init_producer_id,
        DescribeConfigsRequest => describe_configs,
        SaslAuthenticateRequest => sasl_authenticate,
        DescribeProducersRequest => describe_producers,
        JoinGroupRequest => join_group,
        SyncGroupRequest => sync_group,
        HeartbeatRequest => heartbeat,
        LeaveGroupRequest => leave_group,
    }
}

#[test]
fn every_version_of_every_response_is_walked_to_its_last_byte_and_decodes() {
    let mut checked = 0;
    for_every_api(&mut |under, version, body| {
        let api = under.name;
        let walked = check_response(under.schema, &body, version).unwrap_or_else(|e| panic!("{api} v{version}: {e}"));
        assert_eq!(
            walked,
            body.len(),
            "{api} v{version}: the walk took {walked} of {} bytes",
            body.len()
        );
        (under.decode)(body, version).unwrap_or_else(|e| panic!("{api} v{version} does not decode: {e}"));
        checked += 1;
    });
    assert_eq!(checked, 125, "versions checked");
}

/// Every byte position of every filled-in response, overwritten with the largest classic count
/// and, separately, with a five-byte compact count of 2^32 - 2: the decode must return (an
/// error, or a response whose counts its bytes back). Without the shape check, kafka-protocol
/// reserves the counted elements first, and the test process aborts on the failed allocation.
#[test]
fn hostile_counts_anywhere_give_errors_not_huge_allocations() {
    let mut refused = 0usize;
    for_every_api(&mut |under, version, body| {
        let api = under.name;
        for at in 0..body.len() {
            let mut classic = body.to_vec();
            let end = (at + 4).min(classic.len());
            classic.splice(at..end, 0x7fff_ffffu32.to_be_bytes());
            let mut compact = body.to_vec();
            compact.splice(at..at + 1, [0xff, 0xff, 0xff, 0xff, 0x0f]);
            for hostile in [classic, compact] {
                if let Err(reason) = (under.decode)(Bytes::from(hostile), version) {
                    assert!(!reason.is_empty(), "{api} v{version}");
                    refused += 1;
                }
            }
        }
    });
    assert!(refused > 1000, "only {refused} corrupted responses were refused");
}

#[test]
fn a_huge_count_is_refused_with_its_position_and_need() {
    // Metadata v12: throttle time, then the brokers' compact count 2^32 - 2 in five bytes.
    let mut body = vec![0, 0, 0, 0];
    body.extend([0xff, 0xff, 0xff, 0xff, 0x0f]);
    body.extend([0u8; 20]);
    let reason = decode_response::<MetadataRequest>(Bytes::from(body), 12).unwrap_err();
    assert!(
        reason.contains("the array at byte 4 declares 4294967294 elements") && reason.contains("only 20 bytes remain"),
        "{reason}"
    );
}

#[test]
fn a_tagged_field_whose_size_lies_is_refused() {
    // ApiVersions v3: error code, no api keys, throttle time, one tagged field: tag 1
    // (FinalizedFeaturesEpoch, an INT64) declared as 2 bytes.
    let body = vec![0, 0, 1, 0, 0, 0, 0, 1, 1, 2, 0, 0];
    let reason = decode_response::<ApiVersionsRequest>(Bytes::from(body), 3).unwrap_err();
    assert!(reason.contains("tagged field 1"), "{reason}");
}
