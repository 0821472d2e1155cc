//! Request framing and the API versions this client speaks, on top of kafka-protocol's
//! generated messages.
//!
//! A request frame is `[i32 size][request header][body]`; the header is v1 (`api_key i16,
//! api_version i16, correlation_id i32, client_id nullable string`) or, for flexible versions,
//! v2 (v1 plus tagged fields). A response frame is `[i32 size][response header][body]`, the
//! header v0 (`correlation_id i32`) or v1 (plus tagged fields); ApiVersions responses always use
//! v0. kafka-protocol's `header_version` tells which header each API version uses.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiVersionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest, DescribeGroupsRequest,
    DescribeProducersRequest, FetchRequest, FindCoordinatorRequest, HeartbeatRequest, InitProducerIdRequest,
    JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest,
    OffsetFetchRequest, ProduceRequest, RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslHandshakeRequest,
    SyncGroupRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

mod schemas;
mod shape;
#[cfg(test)]
mod tests;

use schemas::Schema;

/// A response's quota throttle time (0 for the responses that have none).
pub(crate) trait ThrottleTime {
    /// `throttle_time_ms`.
    fn throttle_time_ms(&self) -> i32;
}

macro_rules! throttle_time {
    ($($ty:ident),*) => {$(
        impl ThrottleTime for kafka_protocol::messages::$ty {
            fn throttle_time_ms(&self) -> i32 {
                self.throttle_time_ms
            }
        }
    )*};
}

throttle_time!(
    ProduceResponse,
    FetchResponse,
    ListOffsetsResponse,
    MetadataResponse,
    OffsetCommitResponse,
    OffsetFetchResponse,
    FindCoordinatorResponse,
    ListGroupsResponse,
    DescribeGroupsResponse,
    ApiVersionsResponse,
    CreateTopicsResponse,
    DeleteTopicsResponse,
    InitProducerIdResponse,
    DescribeConfigsResponse,
    DescribeProducersResponse,
    JoinGroupResponse,
    SyncGroupResponse,
    HeartbeatResponse,
    LeaveGroupResponse
);

impl ThrottleTime for kafka_protocol::messages::SaslHandshakeResponse {
    fn throttle_time_ms(&self) -> i32 {
        0
    }
}

impl ThrottleTime for kafka_protocol::messages::SaslAuthenticateResponse {
    fn throttle_time_ms(&self) -> i32 {
        0
    }
}

/// A request this client sends, with the range of versions it implements.
pub(crate) trait Api: Request<Response: Send + ThrottleTime + 'static> + Send + Sync + 'static {
    /// Kafka's name for the API.
    const NAME: &'static str;
    /// Lowest version this client implements.
    const MIN: i16;
    /// Highest version this client implements.
    const MAX: i16;
    /// The wire layout of the response, checked before decoding ([`shape`]).
    const RESPONSE: &'static Schema;
}

macro_rules! api {
    ($($ty:ty => $name:literal, $min:literal..=$max:literal, $schema:ident;)*) => {
        $(impl Api for $ty {
            const NAME: &'static str = $name;
            const MIN: i16 = $min;
            const MAX: i16 = $max;
            const RESPONSE: &'static Schema = &schemas::$schema;
        })*
    };
}

// Ranges: every version whose fields the code sets and reads. Lower bounds are where the
// semantics we need start (e.g. Produce v3 = record batch v2, Fetch v4 = isolation level and
// aborted transactions, SaslHandshake v1 = SaslAuthenticate framing).
api! {
    ProduceRequest => "Produce", 3..=11, PRODUCE_RESPONSE;
    FetchRequest => "Fetch", 4..=17, FETCH_RESPONSE;
    ListOffsetsRequest => "ListOffsets", 1..=9, LIST_OFFSETS_RESPONSE;
    MetadataRequest => "Metadata", 1..=12, METADATA_RESPONSE;
    OffsetCommitRequest => "OffsetCommit", 2..=9, OFFSET_COMMIT_RESPONSE;
    OffsetFetchRequest => "OffsetFetch", 1..=9, OFFSET_FETCH_RESPONSE;
    FindCoordinatorRequest => "FindCoordinator", 0..=6, FIND_COORDINATOR_RESPONSE;
    ListGroupsRequest => "ListGroups", 0..=5, LIST_GROUPS_RESPONSE;
    DescribeGroupsRequest => "DescribeGroups", 0..=5, DESCRIBE_GROUPS_RESPONSE;
    SaslHandshakeRequest => "SaslHandshake", 1..=1, SASL_HANDSHAKE_RESPONSE;
    ApiVersionsRequest => "ApiVersions", 0..=3, API_VERSIONS_RESPONSE;
    CreateTopicsRequest => "CreateTopics", 2..=7, CREATE_TOPICS_RESPONSE;
    DeleteTopicsRequest => "DeleteTopics", 1..=6, DELETE_TOPICS_RESPONSE;
    InitProducerIdRequest => "InitProducerId", 0..=5, INIT_PRODUCER_ID_RESPONSE;
    DescribeConfigsRequest => "DescribeConfigs", 1..=4, DESCRIBE_CONFIGS_RESPONSE;
    SaslAuthenticateRequest => "SaslAuthenticate", 0..=2, SASL_AUTHENTICATE_RESPONSE;
    DescribeProducersRequest => "DescribeProducers", 0..=0, DESCRIBE_PRODUCERS_RESPONSE;
    JoinGroupRequest => "JoinGroup", 4..=9, JOIN_GROUP_RESPONSE;
    SyncGroupRequest => "SyncGroup", 3..=5, SYNC_GROUP_RESPONSE;
    HeartbeatRequest => "Heartbeat", 3..=4, HEARTBEAT_RESPONSE;
    LeaveGroupRequest => "LeaveGroup", 3..=5, LEAVE_GROUP_RESPONSE;
}

/// Encodes `[size][header][body]` for `request` at `version`.
pub(crate) fn encode_request<R: Api>(
    request: &R,
    version: i16,
    correlation_id: i32,
    client_id: &StrBytes,
) -> Result<Bytes, String> {
    let mut header = RequestHeader::default();
    header.request_api_key = R::KEY;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(client_id.clone());
    let header_version = R::header_version(version);
    let size = header.compute_size(header_version).map_err(|e| e.to_string())?
        + request.compute_size(version).map_err(|e| e.to_string())?;
    let size32 = i32::try_from(size).map_err(|_| format!("request of {size} bytes is too large"))?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.extend_from_slice(&size32.to_be_bytes());
    header.encode(&mut buf, header_version).map_err(|e| e.to_string())?;
    request.encode(&mut buf, version).map_err(|e| e.to_string())?;
    if buf.len() != 4 + size {
        return Err(format!("encoded {} bytes but computed {}", buf.len() - 4, size));
    }
    Ok(buf.freeze())
}

/// Strips the response header (whose correlation id the caller already matched) off a frame.
pub(crate) fn strip_response_header(frame: &mut Bytes, header_version: i16) -> Result<ResponseHeader, String> {
    ResponseHeader::decode(frame, header_version).map_err(|e| e.to_string())
}

/// The response header version of `R` at `version`.
pub(crate) fn response_header_version<R: Api>(version: i16) -> i16 {
    <R::Response as HeaderVersion>::header_version(version)
}

/// Decodes a response body, requiring it to be consumed exactly. The body's shape is checked
/// first ([`shape`]), so a count read off the wire never makes the decoder reserve more than the
/// body's bytes can hold.
pub(crate) fn decode_response<R: Api>(mut body: Bytes, version: i16) -> Result<R::Response, String> {
    shape::check_response(R::RESPONSE, &body, version)?;
    let response = <R::Response as Decodable>::decode(&mut body, version).map_err(|e| e.to_string())?;
    if !body.is_empty() {
        return Err(format!(
            "{} bytes left over after a version {version} response",
            body.len()
        ));
    }
    Ok(response)
}

/// Turns a string into kafka-protocol's string type.
pub(crate) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}
