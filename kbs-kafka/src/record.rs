//! Records as read from and written to Kafka.

use bytes::Bytes;

/// How a record's timestamp was assigned (batch attributes bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TimestampType {
    /// Set by the producer (`CreateTime`).
    #[default]
    CreateTime,
    /// Set by the broker when it appended the batch (`LogAppendTime`); every record of the batch
    /// carries the batch's max timestamp.
    LogAppendTime,
}

/// One record header. Keys are kept as raw bytes (Kafka calls them strings but never checks
/// UTF-8); duplicate keys and their order are preserved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordHeader {
    /// Header key.
    pub key: Bytes,
    /// Header value; `None` is a null value, distinct from an empty one.
    pub value: Option<Bytes>,
}

/// A record fetched from Kafka, exactly as stored: control records and records of aborted
/// transactions never appear (they are dropped while decoding).
///
/// The byte fields are zero-copy slices of the fetch response (uncompressed batches) or of the
/// batch's decompressed payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Record {
    /// Offset in the partition.
    pub offset: i64,
    /// Timestamp in milliseconds since the Unix epoch (`-1` when the producer set none).
    pub timestamp: i64,
    /// Who assigned the timestamp.
    pub timestamp_type: TimestampType,
    /// Key; `None` is a null key, distinct from an empty one.
    pub key: Option<Bytes>,
    /// Value; `None` is a null value (a tombstone), distinct from an empty one.
    pub value: Option<Bytes>,
    /// Headers in wire order, duplicates kept.
    pub headers: Vec<RecordHeader>,
}

/// A record to produce. The timestamp is written as `CreateTime` and kept by the broker unless
/// the topic uses `message.timestamp.type=LogAppendTime`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ProduceRecord {
    /// Timestamp in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Key; `None` is a null key.
    pub key: Option<Bytes>,
    /// Value; `None` is a null value (a tombstone).
    pub value: Option<Bytes>,
    /// Headers, written in this order.
    pub headers: Vec<RecordHeader>,
}

impl From<&Record> for ProduceRecord {
    /// The record as it would be written back: same timestamp, key, value and headers (the
    /// offset is assigned by the target broker).
    fn from(record: &Record) -> Self {
        ProduceRecord {
            timestamp: record.timestamp,
            key: record.key.clone(),
            value: record.value.clone(),
            headers: record.headers.clone(),
        }
    }
}

impl From<Record> for ProduceRecord {
    fn from(record: Record) -> Self {
        ProduceRecord {
            timestamp: record.timestamp,
            key: record.key,
            value: record.value,
            headers: record.headers,
        }
    }
}
