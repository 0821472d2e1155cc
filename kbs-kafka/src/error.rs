//! The one error type of this crate, and Kafka's error codes.

use std::fmt;
use std::time::Duration;

use kafka_protocol::ResponseError;

/// Result of this crate's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A Kafka protocol error code (`error_code` in responses), displayed with its name, e.g.
/// `NOT_LEADER_OR_FOLLOWER (6)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub i16);

impl ErrorCode {
    /// `OFFSET_OUT_OF_RANGE`.
    pub const OFFSET_OUT_OF_RANGE: ErrorCode = ErrorCode(1);
    /// `UNKNOWN_TOPIC_OR_PARTITION`.
    pub const UNKNOWN_TOPIC_OR_PARTITION: ErrorCode = ErrorCode(3);
    /// `NOT_LEADER_OR_FOLLOWER`.
    pub const NOT_LEADER_OR_FOLLOWER: ErrorCode = ErrorCode(6);
    /// `TOPIC_ALREADY_EXISTS`.
    pub const TOPIC_ALREADY_EXISTS: ErrorCode = ErrorCode(36);
    /// `OUT_OF_ORDER_SEQUENCE_NUMBER`.
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: ErrorCode = ErrorCode(45);
    /// `DUPLICATE_SEQUENCE_NUMBER`.
    pub const DUPLICATE_SEQUENCE_NUMBER: ErrorCode = ErrorCode(46);
    /// `UNKNOWN_PRODUCER_ID`.
    pub const UNKNOWN_PRODUCER_ID: ErrorCode = ErrorCode(59);
    /// `NON_EMPTY_GROUP`.
    pub const NON_EMPTY_GROUP: ErrorCode = ErrorCode(68);
    /// `GROUP_ID_NOT_FOUND`.
    pub const GROUP_ID_NOT_FOUND: ErrorCode = ErrorCode(69);

    /// The numeric code.
    pub fn code(self) -> i16 {
        self.0
    }

    /// Kafka's name for the code (`UNKNOWN_SERVER_ERROR`, `NOT_LEADER_OR_FOLLOWER`, ...), or
    /// `UNKNOWN_CODE` for codes this crate does not know.
    pub fn name(self) -> String {
        match ResponseError::try_from_code(self.0) {
            None => "NONE".to_owned(),
            Some(ResponseError::Unknown(_)) => "UNKNOWN_CODE".to_owned(),
            Some(e) => screaming_snake(&format!("{e:?}")),
        }
    }

    /// Whether Kafka documents the error as retriable.
    pub fn is_retriable(self) -> bool {
        ResponseError::try_from_code(self.0).is_some_and(|e| e.is_retriable())
    }

    /// `None` for code 0 (no error).
    pub(crate) fn check(code: i16) -> Option<ErrorCode> {
        (code != 0).then_some(ErrorCode(code))
    }
}

fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    // Kafka's names drop the `Exception` suffix the generated names keep in two places.
    out.strip_suffix("_EXCEPTION").map(str::to_owned).unwrap_or(out)
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A problem with one partition of a fetch. Records decoded before the problem are still
/// returned beside it; `next_offset` then points at the batch that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PartitionError {
    /// The fetch offset is outside the log, e.g. because retention deleted it. The caller records
    /// a gap and continues from `log_start_offset` (or gives up).
    #[error(
        "offset {requested} is out of range: the log starts at {log_start_offset}, high watermark {high_watermark}"
    )]
    OffsetOutOfRange {
        /// The offset that was asked for.
        requested: i64,
        /// The first offset in the log now.
        log_start_offset: i64,
        /// The high watermark now.
        high_watermark: i64,
    },
    /// The broker answered with a non-retriable error code for this partition, or a retriable
    /// one kept coming back until the retries ran out.
    #[error("broker error {code}")]
    Broker {
        /// The error code.
        code: ErrorCode,
    },
    /// A batch failed its CRC-32C or does not parse.
    #[error("corrupt record batch at offset {offset}: {reason}")]
    CorruptBatch {
        /// Base offset of the batch.
        offset: i64,
        /// What is wrong.
        reason: String,
    },
    /// A batch uses a legacy message format (magic 0 or 1), which this client does not decode.
    #[error("record batch at offset {offset} has message format magic {magic}; only magic 2 is supported")]
    UnsupportedMagic {
        /// Base offset of the batch.
        offset: i64,
        /// The magic byte.
        magic: i8,
    },
    /// A batch is bigger than allowed: it decompresses to more than
    /// `ClientConfig::max_decompressed_batch_bytes`, or it does not fit the fetch's size limits
    /// (`size` is then its full size, which never arrived).
    #[error("record batch at offset {offset} is too large ({size} bytes, limit {limit})")]
    BatchTooLarge {
        /// Base offset of the batch.
        offset: i64,
        /// Size of the batch in bytes, when known (0 otherwise).
        size: usize,
        /// The limit that was hit.
        limit: usize,
    },
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is unusable.
    #[error("invalid configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// A TCP connection could not be opened.
    #[error("cannot connect to {broker}: {source}")]
    Connect {
        /// `host:port` of the broker.
        broker: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Opening a TCP connection took longer than the connect timeout.
    #[error("connecting to {broker} timed out after {timeout:?}")]
    ConnectTimeout {
        /// `host:port` of the broker.
        broker: String,
        /// The connect timeout.
        timeout: Duration,
    },
    /// An established connection failed (reset, closed, write error).
    #[error("connection to {broker} failed: {reason}")]
    Connection {
        /// `host:port` of the broker.
        broker: String,
        /// What happened.
        reason: String,
    },
    /// The TLS handshake or TLS configuration failed.
    #[error("TLS {}: {reason}", if broker.is_empty() { "configuration".to_owned() } else { format!("with {broker}") })]
    Tls {
        /// `host:port` of the broker (empty for configuration errors).
        broker: String,
        /// What failed.
        reason: String,
    },
    /// SASL authentication failed.
    #[error("SASL {mechanism} authentication with {broker} failed: {reason}")]
    Authentication {
        /// `host:port` of the broker.
        broker: String,
        /// The mechanism, e.g. `SCRAM-SHA-512`.
        mechanism: String,
        /// Why (never contains the password).
        reason: String,
    },
    /// A request got no response within the request timeout.
    #[error("{api} request to {broker} timed out after {timeout:?}")]
    Timeout {
        /// `host:port` of the broker.
        broker: String,
        /// The API, e.g. `Fetch`.
        api: &'static str,
        /// The timeout.
        timeout: Duration,
    },
    /// The broker and this client share no version of an API.
    #[error(
        "broker {broker} supports {api} versions {broker_versions}, kbs-kafka supports {client_min}..={client_max}: no common version"
    )]
    UnsupportedVersion {
        /// `host:port` of the broker.
        broker: String,
        /// The API, e.g. `Fetch`.
        api: &'static str,
        /// What the broker supports, e.g. `0..=12`, or `none`.
        broker_versions: String,
        /// Lowest version this client speaks.
        client_min: i16,
        /// Highest version this client speaks.
        client_max: i16,
    },
    /// A response frame is larger than `ClientConfig::max_response_bytes`.
    #[error("response of {size} bytes from {broker} exceeds the {limit}-byte limit")]
    ResponseTooLarge {
        /// `host:port` of the broker.
        broker: String,
        /// Size announced by the frame.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A response could not be decoded or does not match its request.
    #[error("malformed {api} response from {broker}: {reason}")]
    Protocol {
        /// `host:port` of the broker.
        broker: String,
        /// The API.
        api: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A topic does not exist.
    #[error("unknown topic {topic:?}")]
    UnknownTopic {
        /// The topic.
        topic: String,
    },
    /// A partition does not exist.
    #[error("topic {topic:?} has no partition {partition}")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// The broker returned an error code for a whole request (no topic or partition involved),
    /// e.g. for InitProducerId.
    #[error("{api} failed: {code}{}", message_suffix(message))]
    Broker {
        /// The API.
        api: &'static str,
        /// The error code.
        code: ErrorCode,
        /// The broker's error message, when it sent one.
        message: Option<String>,
    },
    /// The broker returned an error code for a topic.
    #[error("{api} failed for topic {topic:?}: {code}{}", message_suffix(message))]
    Topic {
        /// The API.
        api: &'static str,
        /// The topic.
        topic: String,
        /// The error code.
        code: ErrorCode,
        /// The broker's error message, when it sent one.
        message: Option<String>,
    },
    /// The broker returned an error code for one partition.
    #[error("{api} failed for {topic}/{partition}: {code}")]
    Partition {
        /// The API.
        api: &'static str,
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The error code.
        code: ErrorCode,
    },
    /// The broker returned an error code for a consumer group.
    #[error("{api} failed for group {group:?}: {code}")]
    Group {
        /// The API.
        api: &'static str,
        /// The group.
        group: String,
        /// The error code.
        code: ErrorCode,
    },
    /// Offsets of a group with active members cannot be committed from outside the group.
    #[error("group {group:?} is {state} with {members} active member(s); stop its consumers before committing offsets")]
    GroupActive {
        /// The group.
        group: String,
        /// The group state, e.g. `Stable`.
        state: String,
        /// Number of members.
        members: usize,
    },
    /// The records given to the producer cannot form a record batch.
    #[error("cannot encode a record batch for {topic}/{partition}: {reason}")]
    InvalidBatch {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// What is wrong.
        reason: String,
    },
    /// A produced batch failed in a way that leaves the partition's idempotent sequence
    /// unusable (e.g. `OUT_OF_ORDER_SEQUENCE_NUMBER`, `UNKNOWN_PRODUCER_ID`, retries exhausted).
    /// Every later produce call for this partition on the same producer fails with this error;
    /// whether the failed batch was written is unknown. Create a new producer and check the
    /// partition's end offset before producing again.
    #[error("producer failed for {topic}/{partition}: {reason}")]
    ProducerFailed {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// What happened first.
        reason: String,
        /// The Kafka error code behind the first failure, if a broker sent one.
        code: Option<ErrorCode>,
    },
    /// The client's retries ran out; `last` is the last error seen.
    #[error("{operation} failed after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// What was being done.
        operation: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        last: Box<Error>,
    },
}

fn message_suffix(message: &Option<String>) -> String {
    match message {
        Some(m) if !m.is_empty() => format!(": {m}"),
        _ => String::new(),
    }
}

impl Error {
    /// The Kafka error code behind this error, if it came from a broker.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Broker { code, .. }
            | Error::Topic { code, .. }
            | Error::Partition { code, .. }
            | Error::Group { code, .. } => Some(*code),
            Error::RetriesExhausted { last, .. } => last.code(),
            Error::ProducerFailed { code, .. } => *code,
            _ => None,
        }
    }

    /// Whether retrying the same operation later can succeed: transport failures, timeouts and
    /// retriable Kafka codes.
    pub(crate) fn is_retriable(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::ConnectTimeout { .. } | Error::Connection { .. } | Error::Timeout { .. } => {
                true
            }
            Error::Broker { code, .. }
            | Error::Topic { code, .. }
            | Error::Partition { code, .. }
            | Error::Group { code, .. } => code.is_retriable(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_kafka_names() {
        assert_eq!(ErrorCode(6).to_string(), "NOT_LEADER_OR_FOLLOWER (6)");
        assert_eq!(ErrorCode(1).name(), "OFFSET_OUT_OF_RANGE");
        assert_eq!(ErrorCode(-1).name(), "UNKNOWN_SERVER_ERROR");
        assert_eq!(ErrorCode(17).name(), "INVALID_TOPIC");
        assert_eq!(ErrorCode(9999).to_string(), "UNKNOWN_CODE (9999)");
        assert!(ErrorCode(6).is_retriable());
        assert!(!ErrorCode(36).is_retriable());
    }

    #[test]
    fn errors_name_what_failed() {
        let e = Error::Partition {
            api: "Fetch",
            topic: "orders".into(),
            partition: 3,
            code: ErrorCode::NOT_LEADER_OR_FOLLOWER,
        };
        assert_eq!(e.to_string(), "Fetch failed for orders/3: NOT_LEADER_OR_FOLLOWER (6)");
        assert_eq!(e.code(), Some(ErrorCode(6)));
        assert!(e.is_retriable());
    }
}
